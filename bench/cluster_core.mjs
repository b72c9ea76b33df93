#!/usr/bin/env node
// cluster_core.mjs - movexd in cluster mode (issue #14, docs/CLUSTER.md)
// with 1, 2 and 3 nodes on one redis-server (7.0, no persistence), against
// single-node WAL mode (fsync no and always), on the same loadgen
// workloads, interleaved (the order of the configurations rotates every
// repetition), a fresh Redis and fresh daemons per run:
//
//   hot    one room: 3 writers with 32 actions in flight each, 6 subscribers
//   rooms  48 writers over 16 rooms, 8 in flight each, no other subscribers
//
// bench/loadgen spreads its connections over the nodes (--ports: writer i
// and subscriber i on node i % N) and checks the result (final counter ==
// acked increments, every connection at the final seq). Reported per cell:
// acked/s, ack p50/p99, and CPU per ack of the nodes (summed) and of
// redis-server, from /proc/PID/stat over the measurement window; medians
// and [min..max] of the repetitions, the load average of each run.
//
// Usage: node bench/cluster_core.mjs [--reps 3] [--duration 3] [--configs wal-no,wal-always,c1,c2,c3]
//   [--workloads hot,rooms] [--bins old=PATH,new=PATH]
//
// --bins: every configuration runs with each movexd binary, all
// interleaved in one rotation (old and new builds side by side); a cell
// is then "config@name". Reported too: rejects (in these workloads every
// reject is `unavailable`: loadgen's actions always apply) and the nodes'
// movexd_cluster_{moved,reloads,yields}_total at the end of the run.
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { startMovexd, runDriver, median, range, fmt } from './compare.mjs';
import { startRedisServer } from '../test/integration/cluster-lib.mjs';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const LOADGEN = join(ROOT, 'build/release/bench/loadgen');
const WORKLOADS = {
  hot: ['--writers', '3', '--window', '32', '--subscribers', '6', '--rooms', '1'],
  rooms: ['--writers', '48', '--window', '8', '--subscribers', '0', '--rooms', '16'],
};
const o = { reps: 3, duration: 3, configs: 'wal-no,wal-always,c1,c2,c3', workloads: 'hot,rooms', bins: '' };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in o)) { console.error(`unknown option ${process.argv[i]}`); process.exit(2); }
  o[k] = typeof o[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
const bins = o.bins ? o.bins.split(',').map((x) => x.split('=')) : [['', undefined]];
const configs = o.configs.split(',').flatMap((c) => bins.map(([name, bin]) => ({ c, name, bin, key: name ? `${c}@${name}` : c })));
const workloads = o.workloads.split(',');

// One run: the servers of config, loadgen over them, everything stopped.
async function metricSum(procs, name) {
  let sum = 0;
  for (const d of procs) {
    const r = await fetch(`http://127.0.0.1:${d.port}/metrics`).catch(() => null);
    const m = r && new RegExp(`^${name} (\\d+)`, 'm').exec(await r.text());
    sum += m ? Number(m[1]) : NaN;
  }
  return sum;
}

async function run({ c: config, bin }, wl) {
  const procs = [];
  let redis = null;
  try {
    if (config.startsWith('wal-')) {
      procs.push(await startMovexd({ fsync: config.slice(4), bin }));
    } else {
      redis = await startRedisServer();
      const n = Number(config.slice(1));
      for (let i = 1; i <= n; i++) {
        const block = `cluster {\n    node_id b${i}\n    redis 127.0.0.1:${redis.port}\n}\n`;
        procs.push(await startMovexd({ fsync: 'no', extra: block, bin }));
      }
      // ready: the library loaded on every node
      for (const d of procs) {
        for (let t = 0; ; t++) {
          const r = await fetch(`http://127.0.0.1:${d.port}/readyz`).catch(() => null);
          if (r && r.status === 200) break;
          if (t > 1000) throw new Error('node not ready');
          await new Promise((res) => setTimeout(res, 10));
        }
      }
    }
    const ports = procs.map((d) => d.port).join(',');
    const others = [...procs.slice(1).map((d) => d.pid), ...(redis ? [redis.pid] : [])];
    const x = await runDriver(LOADGEN, ['--quiet', '--ports', ports, '--server-pid', String(procs[0].pid),
      ...(others.length ? ['--cpu-pids', others.join(',')] : []), ...WORKLOADS[wl],
      '--warmup', '1', '--duration', String(o.duration)], 120000);
    x.load = loadavg()[0];
    if (redis) {
      x.moved = await metricSum(procs, 'movexd_cluster_moved_total');
      x.reloads = await metricSum(procs, 'movexd_cluster_reloads_total');
      x.yields = await metricSum(procs, 'movexd_cluster_yields_total');
      // NaN for builds before these counters
      x.yield_timeouts = await metricSum(procs, 'movexd_cluster_yield_timeouts_total');
      x.yield_wait_ms = (await metricSum(procs, 'movexd_cluster_yield_wait_us_total')) / 1000;
    }
    if (!x.error) {
      const by = x.cpu_us_per_ack_by_pid || {};
      x.node_us = x.server_cpu_us_per_ack + procs.slice(1).reduce((s, d) => s + (by[d.pid] || 0), 0);
      x.redis_us = redis ? by[redis.pid] : NaN;
    }
    return x;
  } finally {
    for (const d of procs) await d.stop();
    if (redis) await redis.cleanup();
  }
}

const res = {};
for (let r = 0; r < o.reps; r++) {
  for (const wl of workloads) {
    for (let k = 0; k < configs.length; k++) {
      const c = configs[(k + r) % configs.length];
      const x = await run(c, wl);
      (res[`${wl} ${c.key}`] ||= []).push(x);
      console.log(`${wl} ${c.key} #${r + 1}: ${x.error ? `ERROR ${x.error}` : `${fmt(x.acked_per_s)} acked/s, rejects ${x.rejects}, moved/reloads/yields ${x.moved}/${x.reloads}/${x.yields}, yield timeouts ${x.yield_timeouts} wait ${Number.isFinite(x.yield_wait_ms) ? x.yield_wait_ms.toFixed(0) : '-'} ms, ack p50/p99 ${(x.ack_p50_us / 1000).toFixed(2)}/${(x.ack_p99_us / 1000).toFixed(2)} ms, nodes ${x.node_us.toFixed(2)} us/ack, redis ${Number.isFinite(x.redis_us) ? x.redis_us.toFixed(2) : '-'} us/ack, final_ok ${x.final_ok}${x.final_ok ? "" : ` (${x.problem}; rejects ${x.rejects} errors ${x.errors} gaps ${x.gaps} dups ${x.dups} lost ${x.lost_updates} behind ${x.behind})`}, load ${x.load.toFixed(1)}`}`);
    }
  }
}
const span = (a, d = 0) => { const [lo, hi] = range(a); return `${fmt(lo, d)}..${fmt(hi, d)}`; };
console.log('\n| workload | config | acked/s median [min..max] | unavailable per run median [min..max] | ack p50 / p99 ms | nodes µs/ack | redis µs/ack | moved / reloads / yields (median) | correct runs |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const wl of workloads) {
  for (const { key: c } of configs) {
    const all = res[`${wl} ${c}`] || [];
    const ok = all.filter((x) => !x.error);
    const ps = ok.map((x) => x.acked_per_s);
    const p50 = median(ok.map((x) => x.ack_p50_us / 1000));
    const p99 = median(ok.map((x) => x.ack_p99_us / 1000));
    const nu = ok.map((x) => x.node_us);
    const ru = ok.map((x) => x.redis_us);
    const rj = ok.map((x) => x.rejects);
    const mv = ['moved', 'reloads', 'yields'].map((f) => fmt(median(ok.map((x) => x[f])))).join(' / ');
    console.log(`| ${wl} | ${c} | ${fmt(median(ps))} [${span(ps)}] | ${fmt(median(rj))} [${span(rj)}] | ${fmt(p50, 2)} / ${fmt(p99, 2)} | ${fmt(median(nu), 1)} [${span(nu, 1)}] | ${fmt(median(ru), 1)} | ${mv} | ${ok.filter((x) => x.final_ok).length}/${all.length} |`);
  }
}
