#!/usr/bin/env node
// ratio.mjs - the issue #12 target "server CPU per ack <= 3x the batched
// relay", for one or more movexd binaries in the same run: each repetition
// runs the workload on every binary and on bench/ceiling, interleaved with
// the order rotating, fresh server per run; prints each binary's CPU per
// ack, the ceiling's, and each binary's ratio (median of the per-repetition
// ratios, [min..max]), so a before/after comparison of the ratio sees the
// same machine load on both sides.
//
// Usage: node bench/ratio.mjs --bins OLD,NEW [--workload W4] [--reps 5]
//   [--duration 3]
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { startMovexd, startServer, runDriver, median, range, fmt, WORKLOADS } from './compare.mjs';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const LOADGEN = join(ROOT, 'build/release/bench/loadgen');
const CEILING = join(ROOT, 'build/release/bench/ceiling');
const o = { bins: '', workload: 'W4', reps: 5, duration: 3 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in o)) { console.error(`unknown option ${process.argv[i]}`); process.exit(2); }
  o[k] = typeof o[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
const bins = o.bins.split(',').filter(Boolean).map((b) => resolve(b));
const w = WORKLOADS[o.workload];
if (!bins.length || !w) { console.error('usage: --bins A[,B...] [--workload W1|W2|W3|W4]'); process.exit(2); }
const wl = ['--writers', String(w.writers), '--window', String(w.window), '--subscribers', String(w.subscribers), '--rooms', String(w.rooms)];
const servers = [...bins.map((b) => ({ name: b, start: () => startMovexd({ bin: b }) })),
  { name: 'ceiling', start: () => startServer(CEILING, ['--listen', '127.0.0.1:0'], /ceiling port=(\d+)/) }];
const us = servers.map(() => []);
const ratios = bins.map(() => []);
for (let r = 0; r < o.reps; r++) {
  const got = [];
  for (let k = 0; k < servers.length; k++) {
    const i = (k + r) % servers.length;
    const d = await servers[i].start();
    const x = await runDriver(LOADGEN, ['--quiet', '--port', String(d.port), '--server-pid', String(d.pid), ...wl,
      '--warmup', '1', '--duration', String(o.duration)], 120000);
    await d.stop();
    if (x.error || !x.final_ok) { console.log(`${o.workload} #${r + 1} ${servers[i].name}: ${x.error || 'NOT correct'}`); continue; }
    got[i] = x.server_cpu_us_per_ack;
    us[i].push(got[i]);
    console.log(`${o.workload} #${r + 1} ${servers[i].name}: ${fmt(x.acked_per_s)} acked/s, ${got[i].toFixed(2)} us/ack, load ${loadavg()[0].toFixed(1)}`);
  }
  const c = got[servers.length - 1];
  for (let b = 0; b < bins.length; b++) if (c && got[b]) ratios[b].push(got[b] / c);
}
const span = (a) => { const [lo, hi] = range(a); return `${fmt(lo, 2)}..${fmt(hi, 2)}`; };
for (let i = 0; i < servers.length; i++) console.log(`${servers[i].name}: ${fmt(median(us[i]), 2)} us/ack [${span(us[i])}]`);
for (let b = 0; b < bins.length; b++) console.log(`${bins[b]} / ceiling: x${fmt(median(ratios[b]), 2)} [${span(ratios[b])}] (${ratios[b].length} reps)`);
