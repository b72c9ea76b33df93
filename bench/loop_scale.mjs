#!/usr/bin/env node
// loop_scale.mjs - what the event loop costs per turn as connections grow
// (issue #12, "connections at scale"). For each count N of idle
// connections (upgrade + hello + subscribe, spread over 100 rooms nobody
// writes to) held by one loadgen, against a fresh release daemon:
//
//   idle CPU   the daemon's CPU over 3 s with nothing happening but the N
//              idle connections (/proc/PID/stat): the loop's floor;
//   W1         one W1 run (1 writer, 64 in flight, 10 subscribers of
//              another room) by a second loadgen alongside: acked/s and
//              server CPU per ack, where every loop turn now also polls N
//              descriptors.
//
// Binaries (--bins a,b: e.g. an old and a new build) are interleaved per N
// and repeated; medians and min..max. The hard RLIMIT_NOFILE caps N (see
// targets.mjs): counts above it are reported as not run.
//
// Usage: node bench/loop_scale.mjs [--counts 0,1000,5000,18000] [--reps 3]
//   [--bins build/release/movexd] [--duration 3] [--json FILE]
import { readFileSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { startMovexd, runDriver, median, range, fmt } from './compare.mjs';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const LOADGEN = join(ROOT, 'build/release/bench/loadgen');

function parseArgs(argv) {
  const o = { counts: '0,1000,5000,18000', reps: 3, bins: join(ROOT, 'build/release/movexd'), duration: 3, json: '' };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o)) { console.error(`unknown option ${argv[i]}`); process.exit(2); }
    const v = argv[++i];
    o[k] = typeof o[k] === 'number' ? Number(v) : v;
  }
  o.counts = o.counts.split(',').map(Number);
  o.bins = o.bins.split(',').map((b) => resolve(b));
  return o;
}

const hardNofile = () => Number(spawnSync('/bin/sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || 1024;
const cpuTicks = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(f[11]) + Number(f[12]); };
const TICK = 100; // USER_HZ
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function connections(port) {
  const m = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => '');
  const x = /^movexd_connections (\d+)/m.exec(m);
  return x ? Number(x[1]) : -1;
}

async function cell(o, bin, n) {
  const nofile = Math.min(hardNofile(), n + 1000);
  const d = await startMovexd({ fsync: 'no', bin: '/bin/sh', prefixArgs: ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, bin] });
  const r = { bin, n, load: loadavg()[0] };
  let idle = null;
  try {
    if (n > 0) {
      // the idle holders: no writer, subscribers over 100 rooms, held long enough
      idle = spawn(LOADGEN, ['--quiet', '--port', String(d.port), '--prefix', 'idle', '--writers', '0', '--subscribers', String(n), '--rooms', '100', '--warmup', '0', '--duration', '600', '--ready-timeout', '600'], { stdio: 'ignore' });
      const t0 = Date.now();
      while ((await connections(d.port)) < n) {
        if (Date.now() - t0 > 600000) throw new Error(`only ${await connections(d.port)} of ${n} connections after 600 s`);
        await sleep(200);
      }
      r.connect_s = (Date.now() - t0) / 1000;
      await sleep(1000); // let the last subscribes settle
    }
    const c0 = cpuTicks(d.pid), t0 = Date.now();
    await sleep(o.duration * 1000);
    r.idle_cpu_pct = ((cpuTicks(d.pid) - c0) / TICK / ((Date.now() - t0) / 1000)) * 100;
    const w = await runDriver(LOADGEN, ['--quiet', '--port', String(d.port), '--server-pid', String(d.pid), '--prefix', 'w1', '--writers', '1', '--window', '64', '--subscribers', '10', '--warmup', '1', '--duration', String(o.duration)], 300000);
    r.w1_acked_per_s = w.acked_per_s;
    r.w1_us_per_ack = w.server_cpu_us_per_ack;
    r.w1_ok = w.final_ok;
    r.w1_error = w.error;
  } catch (e) {
    r.error = String(e.message || e);
  } finally {
    if (idle) idle.kill('SIGKILL');
    await d.stop();
  }
  return r;
}

async function main() {
  const o = parseArgs(process.argv);
  const cap = hardNofile() - 1000;
  const out = [];
  const report = [];
  for (const n of o.counts) {
    if (n > cap) { report.push(`${fmt(n)} idle connections: NOT RUN (hard RLIMIT_NOFILE ${fmt(hardNofile())})`); continue; }
    const by = new Map(o.bins.map((b) => [b, []]));
    for (let i = 0; i < o.reps; i++) {
      for (const b of i % 2 ? [...o.bins].reverse() : o.bins) {
        const r = await cell(o, b, n);
        console.log(JSON.stringify(r));
        by.get(b).push(r);
        out.push(r);
      }
    }
    for (const [b, rs] of by) {
      const span = (k) => { const [lo, hi] = range(rs.map((r) => r[k])); return `${fmt(median(rs.map((r) => r[k])), 1)} [${fmt(lo, 1)}..${fmt(hi, 1)}]`; };
      report.push(`${fmt(n)} idle, ${b}: idle CPU ${span('idle_cpu_pct')} % of a core; W1 ${span('w1_acked_per_s')} acked/s, ${span('w1_us_per_ack')} us/ack; connect ${span('connect_s')} s; W1 correct ${rs.every((r) => r.w1_ok)}${rs.some((r) => r.error) ? `; errors: ${rs.filter((r) => r.error).map((r) => r.error).join('; ')}` : ''}`);
    }
  }
  console.log('\nsummary (medians of %d, load %s):\n%s', o.reps, loadavg().map((x) => x.toFixed(1)).join(' '), report.join('\n'));
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, results: out, summary: report }, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
