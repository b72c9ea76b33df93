// What the periodic head check (docs/CLUSTER.md "The head check") costs an
// idle cluster node and its Redis: one node whose clients subscribe to
// ROOMS rooms (10 connections, ROOMS/10 rooms each) and then send nothing
// for SECS seconds; the node's and redis-server's CPU over that window
// (/proc/PID/stat), for two binaries interleaved in one run, each
// repeated; medians and [min..max].
//   node bench/cluster_headcheck.mjs OLD_BIN NEW_BIN [rooms, default 1000] [seconds, default 10] [repeats, default 3]
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { startRedisGroup, startNode, stopAll, nodeMetric } from '../test/integration/cluster-lib.mjs';
import { Client, httpRequest, waitFor } from '../test/integration/lib.mjs';

const [oldBin, newBin] = process.argv.slice(2, 4).map((b) => resolve(b));
const ROOMS = Number(process.argv[4] || 1000);
const SECS = Number(process.argv[5] || 10);
const REPEATS = Number(process.argv[6] || 3);
const CONNS = 10;
const tick = 100; // USER_HZ

const cpuTicks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
};

async function run(g, bin, label) {
  const d = await startNode(g, `h${label}`, { bin });
  await waitFor(async () => (await httpRequest(d, { path: '/readyz' })).status === 200, 'ready');
  const cs = [];
  for (let i = 0; i < CONNS; i++) {
    const c = await Client.connect(d.url);
    await c.hello(`c${i}`);
    const rs = [];
    for (let k = i; k < ROOMS; k += CONNS) rs.push(c.request({ type: 'subscribe', room: `idle:${label}-${k}` }));
    await Promise.all(rs);
    cs.push(c);
  }
  const checks0 = await nodeMetric(d, 'movexd_cluster_head_checks_total');
  const n0 = cpuTicks(d.pid), r0 = cpuTicks(g.primary.proc.pid), t0 = Date.now();
  await new Promise((res) => setTimeout(res, SECS * 1000)); // the idle window being measured
  const el = (Date.now() - t0) / 1000;
  const node = (cpuTicks(d.pid) - n0) / tick / el, redis = (cpuTicks(g.primary.proc.pid) - r0) / tick / el;
  const checks = ((await nodeMetric(d, 'movexd_cluster_head_checks_total')) - checks0) / el;
  for (const c of cs) await c.close();
  await d.stop();
  return { node_ms_s: node * 1000, redis_ms_s: redis * 1000, checks_s: checks };
}

const med = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const fmt = (v) => `${med(v).toFixed(1)} [${Math.min(...v).toFixed(1)}..${Math.max(...v).toFixed(1)}]`;

const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
const out = { old: [], new: [] };
try {
  for (let r = 0; r < REPEATS; r++) {
    for (const [name, bin] of r % 2 ? [['new', newBin], ['old', oldBin]] : [['old', oldBin], ['new', newBin]]) {
      out[name].push(await run(g, bin, `${name}${r}`));
    }
  }
} finally {
  await stopAll();
}
console.log(`${ROOMS} rooms with a local subscriber, idle ${SECS} s, ${REPEATS} runs per binary, medians [min..max]`);
for (const name of ['old', 'new']) {
  const v = out[name];
  console.log(`${name}: node CPU ms/s ${fmt(v.map((x) => x.node_ms_s))}, redis-server CPU ms/s ${fmt(v.map((x) => x.redis_ms_s))}, head checks/s ${fmt(v.map((x) => x.checks_s || 0))}`);
}
