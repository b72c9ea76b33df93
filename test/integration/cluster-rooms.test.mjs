// Cluster mode: a room's life across nodes (issue #14, docs/CLUSTER.md
// "Deleting a room", "Incarnations", "The head check"). One redis-server
// (no replica, no Sentinel) on a free loopback port and movexd nodes over
// it, stopped by PID in after().
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedisGroup, startNode, stopAll, checkInvariants, nodeMetric, redisAt, PREFIX } from './cluster-lib.mjs';
import { connectHello, httpRequest, waitFor, patchAction } from './lib.mjs';

after(stopAll);

async function node(g, id, opts) {
  const d = await startNode(g, id, opts);
  await waitFor(async () => (await httpRequest(d, { path: '/readyz' })).status === 200, `${id} ready`);
  return d;
}

const KEYS = ['head', 'log', 'hi', 'dd', 'snap'];
const add = (room, n, key) => patchAction(room, n, [{ op: 'add', path: `/${key}`, value: n }]);

// The room's state as a client newly subscribing on node d sees it.
async function stateOn(d, room) {
  const c = await connectHello(d, `look-${Math.random().toString(36).slice(2)}`);
  const s = await c.request({ type: 'subscribe', room });
  c.close();
  return s;
}

// A room deleted by hand in Redis and created again (same initial state,
// so the new room's seq 0 has the old one's checksum) by another node. The
// node that wrote the old room still has its batches in its journal: its
// next write is refused (the head is behind its own), which looks like a
// rollback. On old main it replayed its journal into the new room - the
// old room's entries came back at seq 1..3 of a room that never had them.
// With incarnations the new room is another incarnation: nothing of the
// old one is replayed (counted lost), the writer's subscribers resync.
test('a room deleted and created again never takes the old room\'s entries from a journal', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const b = await node(g, 'n2');
  const room = 'inc:again';
  const wa = await connectHello(a, 'w1');
  await wa.request({ type: 'subscribe', room });
  for (let n = 1; n <= 3; n++) assert.equal((await wa.request(add(room, n, `old${n}`))).type, 'ack');
  for (const s of KEYS) await redisAt(g.primary.port, 'DEL', `${PREFIX}{${room}}:${s}`);
  const wb = await connectHello(b, 'w2');
  const created = await wb.request({ type: 'subscribe', room });
  assert.equal(created.seq, 0);
  // n1 writes on its old replica: refused by Redis, found out
  wa.send({ ...add(room, 4, 'mine'), id: 777 });
  await wa.next((m) => m.type === 'error' && m.code === 'no_such_room' && m.room === room && m.id === undefined,
    'the writer is told to resync');
  await waitFor(async () => (await nodeMetric(a, 'movexd_cluster_journal_lost_total')) >= 1, 'n1 counts its old batches lost');
  const s = await stateOn(b, room);
  for (let n = 1; n <= 3; n++) assert.equal(s.state[`old${n}`], undefined, `old${n} came back: ${JSON.stringify(s.state)}`);
  assert.equal(await nodeMetric(a, 'movexd_cluster_journal_restored_total'), 0);
  // the new room goes on, on both nodes, one log
  assert.equal((await wb.request(add(room, 1, 'new1'))).type, 'ack');
  const again = await wa.request({ type: 'subscribe', room });
  assert.equal(again.state.old1, undefined);
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
});
