// What `wait_replicas 1` (WAIT after each append batch, docs/CLUSTER.md
// "What an ack means") costs one movexd node over Redis with one replica:
// acked actions/s of one hot room, ack latency p50/p99, and the node's CPU
// per ack (/proc/PID/stat), with wait_replicas 0 and 1 interleaved in one
// run, each repeated; medians and [min..max].
//   node bench/cluster_wait.mjs [seconds per run, default 3] [repeats, default 3]
// Two shapes: 8 connections on the node each keeping 16 actions in flight
// (throughput: batches form), and 1 connection with 1 action in flight
// (latency: one round trip, plus WAIT's to the replica).
import { readFileSync } from 'node:fs';
import { startRedisGroup, startNode, stopAll } from '../test/integration/cluster-lib.mjs';
import { Client, httpRequest, patchAction, waitFor } from '../test/integration/lib.mjs';

const secs = Number(process.argv[2] || 3);
const repeats = Number(process.argv[3] || 3);
const tick = 100; // USER_HZ

const cpuTicks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
};

async function run(g, wait, rep, CONNS, INFLIGHT) {
  const d = await startNode(g, `b${wait}${rep}`, { cluster: wait ? ['wait_replicas 1', 'wait_timeout_ms 1000'] : [] });
  await waitFor(async () => (await httpRequest(d, { path: '/readyz' })).status === 200, 'ready');
  const room = `hot${wait}-${rep}-${CONNS}`;
  const cs = [];
  for (let i = 0; i < CONNS; i++) {
    const c = await Client.connect(d.url);
    await c.hello(`c${i}`);
    await c.request({ type: 'subscribe', room });
    cs.push(c);
  }
  let acked = 0;
  const lat = [];
  const end = Date.now() + secs * 1000;
  const t0 = cpuTicks(d.pid);
  await Promise.all(cs.map(async (c) => {
    let n = 0;
    const one = async () => {
      while (Date.now() < end) {
        const id = ++n;
        const t = process.hrtime.bigint();
        c.send({ ...patchAction(room, id, [{ op: 'inc', path: '/n', value: 1 }]), id });
        const r = await c.next((m) => m.id === id, `ack ${id}`);
        if (r.type !== 'ack') throw new Error(JSON.stringify(r));
        lat.push(Number(process.hrtime.bigint() - t) / 1e6);
        acked++;
        c.msgs.length = 0; // fwds of the others: not kept
      }
    };
    await Promise.all(Array.from({ length: INFLIGHT }, one));
  }));
  const cpu = (cpuTicks(d.pid) - t0) / tick;
  for (const c of cs) await c.close();
  await d.stop();
  lat.sort((a, b) => a - b);
  return { acks_s: acked / secs, p50: lat[Math.floor(lat.length / 2)], p99: lat[Math.floor(lat.length * 0.99)], us_per_ack: (cpu * 1e6) / acked };
}

const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs, d = 0) => `${med(xs).toFixed(d)} [${Math.min(...xs).toFixed(d)}..${Math.max(...xs).toFixed(d)}]`;

const g = await startRedisGroup({ replicas: 1, sentinels: 0 });
try {
  for (const [conns, inflight] of [[8, 16], [1, 1]]) {
   const res = { 0: [], 1: [] };
   for (let rep = 0; rep < repeats; rep++) for (const w of [0, 1]) res[w].push(await run(g, w, rep, conns, inflight));
   for (const w of [0, 1]) {
    const r = res[w];
    console.log(`${conns}x${inflight} in flight, wait_replicas ${w}: acked/s ${fmt(r.map((x) => x.acks_s))}  p50 ms ${fmt(r.map((x) => x.p50), 2)}  p99 ms ${fmt(r.map((x) => x.p99), 2)}  node CPU us/ack ${fmt(r.map((x) => x.us_per_ack), 1)}`);
   }
  }
} finally {
  await stopAll();
}
