// Snapshots in Redis and trimming (issue #14, docs/CLUSTER.md "Snapshots in
// Redis and trimming"), with real daemons on one redis-server (started by
// the test on a free loopback port, stopped by PID). A room with 10k actions
// (room type t, history 100: a snapshot every 100 applied entries) keeps its stream
// bounded; a node that joins late loads the room from the snapshot plus
// the stream after it and agrees on seq and checksum; `since` catch-up
// within the history works on that node; the invariants of the log hold.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedisGroup, startReadyNode, stopAll, checkInvariants, redisAt, nodeMetric as metric, PREFIX } from './cluster-lib.mjs';
import { connectHello, patchAction, waitFor } from './lib.mjs';

after(stopAll);

// room type t: history 100, so a snapshot every 100 applied entries
const node = (g, id) => startReadyNode(g, id, { global: ['room t {', '    reducer json', '    history 100', '    create_on_subscribe yes', '}'] });


test('10k actions: the stream stays bounded; a node joining late loads the snapshot and agrees', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const c = await connectHello(a, 'w');
  const room = 't:big';
  assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
  const N = 10000, CHUNK = 500;
  const sums = new Map(); // seq -> checksum (from the acks)
  for (let from = 1; from <= N; from += CHUNK) {
    const replies = [];
    for (let n = from; n < from + CHUNK; n++) {
      c.send({ ...patchAction(room, n, [{ op: 'inc', path: `/k${n % 50}`, value: 1 }]), id: n });
      replies.push(c.next((m) => m.id === n, `reply ${n}`));
    }
    for (const m of await Promise.all(replies)) {
      assert.equal(m.type, 'ack', JSON.stringify(m));
      sums.set(m.seq, m.checksum);
    }
  }
  const key = (s) => `${PREFIX}{${room}}:${s}`;
  // the last snapshot lands once the room settles at its head
  await waitFor(async () => Number(await redisAt(g.primary.port, 'HGET', key('snap'), 'seq')) === N, 'snapshot at the head');
  const len = await redisAt(g.primary.port, 'XLEN', key('log'));
  // keep 100 behind the snapshot + at most one stream node (100) more
  assert.ok(len <= 200, `XLEN ${len} after ${N} actions`);
  // one per settle that crossed a multiple of 100 (a batch may cross several)
  assert.ok(await metric(a, 'movexd_cluster_snapshots_total') >= 1);
  // a node that joins late: from the snapshot, not from 10k entries
  const b = await node(g, 'n2');
  const c2 = await connectHello(b, 'r');
  const s = await c2.request({ type: 'subscribe', room });
  assert.equal(s.type, 'snapshot');
  assert.equal(s.seq, N);
  assert.equal(s.checksum, sums.get(N));
  assert.equal(s.state.k0, N / 50);
  assert.equal(await metric(b, 'movexd_cluster_snapshot_loads_total'), 1);
  // catch-up from a seq within the history, on the late node
  const since = N - 40;
  const cu = await c2.request({ type: 'sync', room, since: { seq: since, checksum: sums.get(since) } });
  assert.equal(cu.type, 'actions', JSON.stringify(cu).slice(0, 200));
  assert.equal(cu.actions.length, 40);
  assert.equal(cu.actions[39].checksum, sums.get(N));
  // writes keep working on both nodes, and the log's invariants hold
  const ack = await c2.request(patchAction(room, 1, [{ op: 'add', path: '/late', value: true }]));
  assert.equal(ack.seq, N + 1);
  await c.next((m) => m.type === 'fwd' && m.seq === N + 1);
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
  await c.close();
  await c2.close();
});

test('a node whose replica is behind the trimmed part reloads from the snapshot', async () => {
  // a small pub/sub buffer: Redis drops the stopped node's subscriber link
  // instead of keeping every entry for it
  const g = await startRedisGroup({ replicas: 0, sentinels: 0, primaryExtra: ['--client-output-buffer-limit', 'pubsub 16kb 8kb 1'] });
  const a = await node(g, 'n1');
  const b = await node(g, 'n2');
  const room = 't:lag';
  const w = await connectHello(a, 'w');
  const r = await connectHello(b, 'r');
  await w.request({ type: 'subscribe', room });
  await r.request({ type: 'subscribe', room });
  b.signal('SIGSTOP'); // n2 misses everything from here
  let last;
  for (let from = 1; from <= 1000; from += 250) {
    const replies = [];
    for (let n = from; n < from + 250; n++) {
      w.send({ ...patchAction(room, n, [{ op: 'inc', path: '/n', value: 1 }]), id: n });
      replies.push(w.next((m) => m.id === n, `reply ${n}`));
    }
    last = (await Promise.all(replies)).at(-1);
  }
  const key = (s) => `${PREFIX}{${room}}:${s}`;
  await waitFor(async () => Number(await redisAt(g.primary.port, 'HGET', key('snap'), 'seq')) === 1000, 'snapshot at 1000');
  const first = (await redisAt(g.primary.port, 'XRANGE', key('log'), '-', '+', 'COUNT', '1'))[0][0];
  assert.ok(Number(first.split('-')[0]) > 1, `the stream was trimmed (first entry ${first})`);
  b.signal('SIGCONT');
  // n2 catches up (XRANGE finds a gap, so it loads the snapshot) and tells r
  const got = await r.request({ type: 'get', room });
  await waitFor(async () => {
    const x = await r.request({ type: 'get', room });
    return x.seq === 1000 && x.checksum === last.checksum;
  }, 'n2 at seq 1000 with the same checksum');
  assert.equal(got.type, 'snapshot');
  assert.ok(await metric(b, 'movexd_cluster_snapshot_loads_total') >= 1, 'n2 did not load a snapshot');
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
  await w.close();
  await r.close();
});
