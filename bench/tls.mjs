#!/usr/bin/env node
// tls.mjs - what TLS costs the daemon: W1 (1 writer, 64 in flight, 10
// subscribers) over plain TCP, over TLS with one record per loop turn
// (`loadgen --tls batch`, a batching client) and over TLS with one record
// per frame (`--tls frame`, as browsers send), and the daemon's memory per
// idle connection plain vs TLS (N subscribed connections, RSS growth).
// Every binary of --bins runs every cell; cells and binaries are
// interleaved and the order rotates each repetition; medians [min..max] of
// the server's CPU per acked action (/proc/PID/stat), acked/s and the idle
// bytes. A throwaway certificate is made with the openssl CLI.
//
// Usage: node bench/tls.mjs [--bins A,B] [--reps 3] [--duration 3]
//   [--idle 2000] [--cells plain,batch,frame,idle-plain,idle-tls]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startMovexd, runDriver, median, range, fmt } from './compare.mjs';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const LOADGEN = join(ROOT, 'build/release/bench/loadgen');
const o = { bins: join(ROOT, 'build/release/movexd'), reps: 3, duration: 3, idle: 2000, cells: 'plain,batch,frame,idle-plain,idle-tls' };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in o)) { console.error(`unknown option ${process.argv[i]}`); process.exit(2); }
  o[k] = typeof o[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
const bins = o.bins.split(',').filter(Boolean).map((b) => resolve(b));
const cells = o.cells.split(',').filter(Boolean);

const certDir = mkdtempSync(join(tmpdir(), 'movexd-tls-bench-'));
const cert = join(certDir, 'cert.pem');
const key = join(certDir, 'key.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
  '-subj', '/CN=localhost', '-keyout', key, '-out', cert], { stdio: 'pipe' });
const TLS_CONF = `tls_cert_file ${cert}\ntls_key_file ${key}\n`;

const W1 = ['--writers', '1', '--window', '64', '--subscribers', '10', '--rooms', '1'];
const CELLS = {
  plain: { tls: false, args: [...W1] },
  batch: { tls: true, args: [...W1, '--tls', 'batch'] },
  frame: { tls: true, args: [...W1, '--tls', 'frame'] },
  'idle-plain': { tls: false, idle: true },
  'idle-tls': { tls: true, idle: true },
};

async function run(bin, name) {
  const c = CELLS[name];
  const d = await startMovexd({ fsync: 'no', bin, extra: c.tls ? TLS_CONF : '' });
  const args = c.idle
    ? ['--writers', '0', '--subscribers', String(o.idle), '--rooms', '100', '--warmup', '1', '--duration', '1', '--ready-timeout', '600', ...(c.tls ? ['--tls', 'batch'] : [])]
    : [...c.args, '--warmup', '1', '--duration', String(o.duration)];
  const x = await runDriver(LOADGEN, ['--quiet', '--port', String(d.port), '--server-pid', String(d.pid), ...args], 600000);
  await d.stop();
  x.load = loadavg()[0];
  return x;
}

const res = {};
const runs = [];
for (const b of bins) for (const c of cells) runs.push([b, c]);
for (let r = 0; r < o.reps; r++) {
  for (let k = 0; k < runs.length; k++) {
    const [b, c] = runs[(k + r) % runs.length];
    const x = await run(b, c);
    (res[`${b} ${c}`] ??= []).push(x);
    const what = CELLS[c].idle
      ? `${fmt(x.server_bytes_per_conn)} B per idle connection`
      : `${fmt(x.acked_per_s)} acked/s, ${x.server_cpu_us_per_ack?.toFixed(2)} us/ack, generator ${x.gen_cpu_us_per_ack?.toFixed(2)} us/ack`;
    console.log(`#${r + 1} ${c} ${b}: ${x.error ? `ERROR ${x.error}` : `${what}, final_ok ${x.final_ok}, load ${x.load.toFixed(1)}`}`);
  }
}
rmSync(certDir, { recursive: true, force: true });
const span = (a, d) => { const [lo, hi] = range(a); return `${fmt(lo, d)}..${fmt(hi, d)}`; };
console.log(`\nmedians [min..max] of ${o.reps} (load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
for (const [k, xs] of Object.entries(res)) {
  const ok = xs.filter((x) => !x.error && x.final_ok);
  if (k.endsWith('idle-plain') || k.endsWith('idle-tls')) {
    const b = ok.map((x) => x.server_bytes_per_conn);
    console.log(`${k}: ${fmt(median(b))} B per idle connection [${span(b, 0)}] at ${o.idle} (${ok.length}/${xs.length} runs ok)`);
  } else {
    const us = ok.map((x) => x.server_cpu_us_per_ack);
    const ps = ok.map((x) => x.acked_per_s);
    console.log(`${k}: server CPU ${fmt(median(us), 2)} us/ack [${span(us, 2)}], ${fmt(median(ps))} acked/s [${span(ps, 0)}] (${ok.length}/${xs.length} runs correct)`);
  }
}
