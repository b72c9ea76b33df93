// Cluster mode's ceiling per hot room (issue #14, docs/CLUSTER.md): how many
// entries/s one redis-server appends through the Function library
// (src/cluster_fn.lua) when a node keeps one FCALL in flight per room and
// batches what queued meanwhile. No movexd involved: this is the Redis side
// alone, the upper bound the commit path can reach for one room.
//   node bench/cluster_fn.mjs [seconds per run, default 3]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../test/integration/lib.mjs';
import { startRedis } from '../test/integration/redis-lib.mjs';

const secs = Number(process.argv[2] || 3);
const redis = await startRedis();
const r = await redis.connect();
await r.ok('FUNCTION', 'LOAD', 'REPLACE', readFileSync(join(ROOT, 'src/cluster_fn.lua'), 'utf8'));
const body = '[{"op":"inc","path":"/count","value":1}]';

async function run(batch, rooms) {
  const state = [];
  for (let i = 0; i < rooms; i++) {
    const R = `b${batch}-${rooms}-${i}`;
    const k = (s) => `movexd:{${R}}:${s}`;
    await r.ok('FCALL', 'movexd_create', 1, k('head'), 'S0');
    state.push({ keys: [k('head'), k('log'), k('hi'), k('dd')], ch: k('ch'), head: ['0', '0', 'S0'], n: 0 });
  }
  let entries = 0;
  const lat = [];
  const end = Date.now() + secs * 1000;
  await Promise.all(state.map(async (st) => {
    while (Date.now() < end) {
      const acts = [];
      for (let j = 0; j < batch; j++) {
        st.n++;
        acts.push(['c1', st.n, '', '0', 0, 'a', `S${st.n}`, body]);
      }
      const t0 = process.hrtime.bigint();
      const rep = await r.ok('FCALL', 'movexd_append', 4, ...st.keys, st.ch, 1024, ...st.head, Date.now(), batch, ...acts.flat());
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (rep[4 + batch - 1] !== `ack ${rep[0]}`) throw new Error(`unexpected ${rep}`);
      st.head = rep.slice(0, 3);
      entries += batch;
    }
  }));
  lat.sort((a, b) => a - b);
  return { batch, rooms, entries_per_s: Math.round(entries / secs), call_p50_ms: lat[Math.floor(lat.length / 2)].toFixed(2), call_p99_ms: lat[Math.floor(lat.length * 0.99)].toFixed(2) };
}

try {
  for (const [batch, rooms] of [[1, 1], [8, 1], [32, 1], [1, 16], [32, 16]])
    console.log(JSON.stringify(await run(batch, rooms)));
} finally {
  r.close();
  await redis.stop();
}
