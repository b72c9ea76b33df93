// Cluster mode: what a snapshot saves a node that joins a busy room late,
// and how fast presence crosses nodes (docs/CLUSTER.md, BENCHMARKS.md).
// One redis-server and movexd nodes started here (loopback, stopped by
// PID). Per round: a writer on n1 puts N actions into two rooms - s:R
// (history 100: snapshots every 100 entries) and u:R (history 20000: no
// snapshot before 20000) - then a fresh node n2 starts and a client there
// subscribes to each; the subscribe round trip (the room's load from Redis
// included) and the stream length are printed. Rounds interleave the two
// rooms; medians [min..max] over ROUNDS. Then presence: K connections on
// n1 each set a presence once; the time until an observer on n2 sees it.
//   MOVEXD_BIN=build/release/movexd node bench/cluster_join.mjs [N] [ROUNDS]
import { startRedisGroup, startReadyNode, stopAll, redisAt, PREFIX } from '../test/integration/cluster-lib.mjs';
import { connectHello, patchAction, waitFor } from '../test/integration/lib.mjs';

const N = Number(process.argv[2] || 10000);
const ROUNDS = Number(process.argv[3] || 3);
const types = ['room s {', '    reducer json', '    history 100', '    create_on_subscribe yes', '}',
  'room u {', '    reducer json', '    history 20000', '    create_on_subscribe yes', '}'];

const node = (g, id) => startReadyNode(g, id, { global: types });

async function fill(c, room) {
  await c.request({ type: 'subscribe', room });
  for (let from = 1; from <= N; from += 500) {
    const rs = [];
    for (let n = from; n < Math.min(from + 500, N + 1); n++) {
      c.send({ ...patchAction(room, n, [{ op: 'inc', path: `/k${n % 50}`, value: 1 }]), id: n });
      rs.push(c.next((m) => m.id === n));
    }
    const bad = (await Promise.all(rs)).find((m) => m.type !== 'ack');
    if (bad) throw new Error(`${room}: ${JSON.stringify(bad)}`);
  }
}

const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const fmt = (a) => `${med(a).toFixed(1)} [${Math.min(...a).toFixed(1)}..${Math.max(...a).toFixed(1)}]`;

const join = { s: [], u: [] }, xlen = { s: [], u: [] };
const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
try {
  const a = await node(g, 'n1');
  for (let r = 0; r < ROUNDS; r++) {
    // a connection per room: the per-connection message rate limit
    for (const t of ['s', 'u']) {
      const w = await connectHello(a, `w${t}${r}`);
      await fill(w, `${t}:r${r}`);
      await w.close();
    }
    for (const t of ['s', 'u']) {
      const room = `${t}:r${r}`;
      if (t === 's') await waitFor(async () => Number(await redisAt(g.primary.port, 'HGET', `${PREFIX}{${room}}:snap`, 'seq')) === N, 'snapshot');
      xlen[t].push(Number(await redisAt(g.primary.port, 'XLEN', `${PREFIX}{${room}}:log`)));
    }
    const b = await node(g, `j${r}`);
    const c = await connectHello(b, 'late');
    for (const t of (r % 2 ? ['u', 's'] : ['s', 'u'])) {
      const t0 = process.hrtime.bigint();
      const s = await c.request({ type: 'subscribe', room: `${t}:r${r}` });
      join[t].push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (s.seq !== N) throw new Error(`late node at ${s.seq} in ${t}:r${r}`);
    }
    await c.close();
    await b.kill();
  }
  console.log(`N=${N} actions per room, ${ROUNDS} rounds`);
  console.log(`late node's subscribe (load included), ms: snapshot ${fmt(join.s)}; whole stream ${fmt(join.u)}`);
  console.log(`stream length after N: snapshot ${fmt(xlen.s)}; no snapshot ${fmt(xlen.u)}`);
  // presence across nodes
  const b = await node(g, 'n2');
  const obs = await connectHello(b, 'obs');
  await obs.request({ type: 'subscribe', room: 's:p' });
  const lat = [];
  for (let i = 0; i < 50; i++) {
    const c = await connectHello(a, `p${i}`);
    await c.request({ type: 'subscribe', room: 's:p' });
    const t0 = process.hrtime.bigint();
    const ok = c.request({ type: 'presence', room: 's:p', state: i });
    await obs.next((m) => m.type === 'presence' && m.client === `p${i}`, `p${i} seen on n2`);
    lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if ((await ok).type !== 'presence_ok') throw new Error('presence refused');
    await c.close();
    await obs.next((m) => m.type === 'presence' && m.client === `p${i}` && m.left, `p${i} left on n2`);
  }
  const s = [...lat].sort((x, y) => x - y);
  console.log(`presence n1 -> n2 (first set of a connection), ms: median ${med(lat).toFixed(2)}, p90 ${s[Math.floor(s.length * 0.9)].toFixed(2)}, max ${s[s.length - 1].toFixed(2)} (50 samples)`);
} finally {
  await stopAll();
}
