#!/usr/bin/env node
// ab.mjs - two (or more) movexd binaries side by side on one loadgen
// workload, interleaved (the order rotates every repetition), each run on a
// fresh daemon with the bench conf of compare.mjs; medians and [min..max]
// of the server's CPU per acked action (/proc/PID/stat), acked/s and
// recv/send system calls are not counted here (use strace -c on one run).
// The CPU per ack is the number to compare on a shared machine; the load
// average at each run is printed with it.
//
// Usage: node bench/ab.mjs --bins OLD,NEW [--reps 3] [--duration 3]
//   [--workload w1|w4|w2] [--fsync no]
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { startMovexd, runDriver, median, range, fmt } from './compare.mjs';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const LOADGEN = join(ROOT, 'build/release/bench/loadgen');
const WORKLOADS = {
  w1: ['--writers', '1', '--window', '64', '--subscribers', '10', '--rooms', '1'],
  w2: ['--writers', '1', '--window', '64', '--subscribers', '100', '--rooms', '1'],
  w4: ['--writers', '64', '--window', '16', '--subscribers', '0', '--rooms', '8'],
};
const o = { bins: '', reps: 3, duration: 3, workload: 'w1', fsync: 'no' };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in o)) { console.error(`unknown option ${process.argv[i]}`); process.exit(2); }
  o[k] = typeof o[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
const bins = o.bins.split(',').filter(Boolean).map((b) => resolve(b));
if (bins.length < 2 || !WORKLOADS[o.workload]) { console.error('usage: --bins OLD,NEW [--workload w1|w2|w4]'); process.exit(2); }

const res = bins.map(() => []);
for (let r = 0; r < o.reps; r++) {
  for (let k = 0; k < bins.length; k++) {
    const i = (k + r) % bins.length;
    const d = await startMovexd({ fsync: o.fsync, bin: bins[i] });
    const x = await runDriver(LOADGEN, ['--quiet', '--port', String(d.port), '--server-pid', String(d.pid), ...WORKLOADS[o.workload],
      '--warmup', '1', '--duration', String(o.duration)], 120000);
    await d.stop();
    x.load = loadavg()[0];
    console.log(`${o.workload} #${r + 1} ${bins[i]}: ${x.error ? `ERROR ${x.error}` : `${fmt(x.acked_per_s)} acked/s, ${x.server_cpu_us_per_ack?.toFixed(2)} us/ack, final_ok ${x.final_ok}, load ${x.load.toFixed(1)}`}`);
    res[i].push(x);
  }
}
const span = (a) => { const [lo, hi] = range(a); return `${fmt(lo, 2)}..${fmt(hi, 2)}`; };
for (let i = 0; i < bins.length; i++) {
  const ok = res[i].filter((x) => !x.error);
  const us = ok.map((x) => x.server_cpu_us_per_ack);
  const ps = ok.map((x) => x.acked_per_s);
  console.log(`${bins[i]}: server CPU ${fmt(median(us), 2)} us/ack [${span(us)}], ${fmt(median(ps))} acked/s [${span(ps)}], all correct ${ok.every((x) => x.final_ok)} (${ok.length}/${res[i].length} runs)`);
}
