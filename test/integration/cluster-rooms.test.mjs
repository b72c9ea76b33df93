// Cluster mode: a room's life across nodes (issue #14, docs/CLUSTER.md
// "Deleting a room", "Incarnations", "The head check"). One redis-server
// (no replica, no Sentinel) on a free loopback port and movexd nodes over
// it, stopped by PID in after().
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedisGroup, startNode, stopAll, checkInvariants, nodeMetric, redisAt, PREFIX } from './cluster-lib.mjs';
import { connectHello, httpRequest, waitFor, patchAction } from './lib.mjs';
import { RawConn } from './rawhttp.mjs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './lib.mjs';

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
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });  for (const d of [a, b]) await d.stop();
});

const adminDelete = (d, room) => httpRequest(d, {
  method: 'DELETE', path: `/admin/rooms/${encodeURIComponent(room)}`, headers: { authorization: `Bearer ${d.token}` },
});
const DELETED = (room) => (m) => m.type === 'error' && m.room === room && m.code === 'no_such_room';

// DELETE /admin/rooms/R on one node of a cluster (on old main: 503
// unavailable, the room untouched): one FCALL removes every key of the
// room, each node holding it drops it and tells its subscribers exactly
// as single-node deletion does, the presence of the room goes with it, a
// second DELETE is 404, and the room created again starts at seq 0 with
// nothing of the old one (history, exactly-once memory, presence).
test('the admin API deletes a room across the cluster: keys, every node\'s subscribers told, presence gone', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const b = await node(g, 'n2');
  const c = await node(g, 'n3'); // never had the room
  const room = 'del:1';
  const sa = await connectHello(a, 'ann');
  await sa.request({ type: 'subscribe', room });
  const sb = await connectHello(b, 'bob');
  await sb.request({ type: 'subscribe', room });
  assert.equal((await sa.request(add(room, 1, 'a1'))).type, 'ack');
  assert.equal((await sb.request(add(room, 1, 'b1'))).type, 'ack');
  assert.equal((await sa.request({ type: 'presence', room, state: { at: 'a' } })).type, 'presence_ok');
  await sb.next((m) => m.type === 'presence' && m.client === 'ann', 'bob sees ann\'s presence');
  await sa.next((m) => m.type === 'fwd' && m.seq === 2, 'ann has bob\'s entry');
  const keys = async () => redisAt(g.primary.port, 'KEYS', `${PREFIX}{${room}}:*`);
  assert.ok((await keys()).length >= 4, String(await keys()));

  const r = await adminDelete(b, room);
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(JSON.parse(r.body), { deleted: true });
  // the notice of docs/PROTOCOL.md, byte for byte the single-node one
  for (const s of [sa, sb]) {
    const m = await s.next(DELETED(room), `${s === sa ? 'ann' : 'bob'} told`);
    assert.deepEqual(m, { type: 'error', room, code: 'no_such_room', message: 'the room was deleted' });
  }
  assert.deepEqual(await keys(), []);
  // the refusal Redis answers has single-node mode's DELETE body
  for (const d of [a, c]) {
    const gone = await adminDelete(d, room);
    assert.equal(gone.status, 404);
    assert.equal(gone.body, '{"code":"no_such_room","message":"no such room"}\n');
  }
  // unsubscribed: an action there is refused, nothing reaches the log
  const late = await sa.request(add(room, 2, 'late'));
  assert.equal(late.type, 'error', JSON.stringify(late));
  assert.deepEqual(await keys(), []);
  // created again (create_on_subscribe): a new room, nothing of the old
  const again = await sb.request({ type: 'subscribe', room });
  assert.equal(again.seq, 0);
  assert.deepEqual(again.state, {});
  assert.deepEqual(again.presence, []);
  assert.equal(again.next_n, 1);
  const ann2 = await sa.request({ type: 'subscribe', room });
  assert.equal(ann2.seq, 0);
  assert.deepEqual(ann2.presence, []);
  assert.equal((await sa.request(add(room, 1, 'new'))).type, 'ack');
  await sb.next((m) => m.type === 'fwd' && m.seq === 1, 'bob has the new room\'s first entry');
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
  for (const d of [a, b, c]) await d.stop(); // a clean exit (under ASan: no leak)
});

// A delete that lands among pipelined actions: every action is answered
// (acked before the delete, or refused after it: never lost silently), the
// writer is told, and nothing recreates the room behind the delete.
test('a delete among pipelined writes: every action answered, the room stays deleted', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const room = 'del:busy';
  const w = await connectHello(a, 'w');
  await w.request({ type: 'subscribe', room });
  const replies = [];
  for (let n = 1; n <= 60; n++) {
    w.send({ ...add(room, n, `k${n}`), id: 100 + n });
    replies.push(w.next((m) => m.id === 100 + n, `reply ${n}`));
    if (n === 20) replies.push(adminDelete(a, room));
  }
  const all = await Promise.all(replies);
  const del = all.find((x) => x.status !== undefined);
  assert.equal(del.status, 200, del.body);
  const acks = all.filter((x) => x.type === 'ack').map((x) => x.seq);
  acks.forEach((s, i) => assert.equal(s, i + 1, `acks in order: ${acks}`));
  for (const x of all) if (x.type && x.type !== 'ack') assert.match(`${x.type} ${x.code}`, /^(error|reject) /, JSON.stringify(x));
  await w.next(DELETED(room), 'the writer is told');
  assert.deepEqual(await redisAt(g.primary.port, 'KEYS', `${PREFIX}{${room}}:*`), []);
  const s = await stateOn(a, room);
  assert.equal(s.seq, 0);
  assert.deepEqual(s.state, {});
});

// The admin client goes away while its delete waits for Redis (stopped):
// the answer finds no connection (under ASan: no use after free), the
// delete still happens once Redis answers, and the node goes on.
test('a delete whose HTTP client left before Redis answered still deletes; the node goes on', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const room = 'del:left';
  const reader = await connectHello(a, 'reader');
  await reader.request({ type: 'subscribe', room });
  assert.equal((await reader.request(add(room, 1, 'x'))).type, 'ack');
  g.primary.proc.kill('SIGSTOP');
  let resumed = false;
  try {
    const raw = await RawConn.open(a.port);
    raw.sock.write(`DELETE /admin/rooms/${room} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${a.token}\r\n\r\n`);
    await waitFor(() => a.stderr.includes(`event=admin_delete room=${room}`), 'the delete is under way');
    raw.sock.destroy(); // gone before Redis (stopped) answers the delete
    g.primary.proc.kill('SIGCONT');
    resumed = true;
  } finally {
    if (!resumed) g.primary.proc.kill('SIGCONT');
  }
  // answered deleted (Redis in time) or unavailable (the link timed out):
  // either way, once Redis answers again the room is gone or goes
  await waitFor(async () => (await httpRequest(a, { path: '/readyz' })).status === 200, 'ready again');
  const gone = await reader.next(DELETED(room), 'the reader is told');
  assert.equal(gone.id, undefined);
  if ((await redisAt(g.primary.port, 'EXISTS', `${PREFIX}{${room}}:head`)) === 1) {
    assert.equal((await adminDelete(a, room)).status, 200); /* the first one timed out before Redis ran it */
  }
  assert.deepEqual(await redisAt(g.primary.port, 'KEYS', `${PREFIX}{${room}}:*`), []);
  await a.stop();
});

// The head check (docs/CLUSTER.md "The head check"): a node whose clients
// only read a room learns of a rollback without writing. n2 writes 5
// entries and dies (its journal with it); Redis then loses the tail 4..5
// (the head set back to entry 3, entries 4 and 5 deleted - what a
// failover to a replica that missed them leaves). n1 forwarded 4 and 5 to
// its reader and never writes: on old main it noticed nothing and kept
// serving seq 5; now its head check (once a tick) finds Redis behind,
// reloads, and the reader is told to resync, then reads seq 3.
test('a node with only readers notices a lost tail by its head check: its subscribers resync, no write needed', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const b = await node(g, 'n2');
  const room = 'hc:tail';
  const reader = await connectHello(a, 'reader');
  await reader.request({ type: 'subscribe', room });
  const w = await connectHello(b, 'w');
  await w.request({ type: 'subscribe', room });
  for (let n = 1; n <= 5; n++) assert.equal((await w.request(add(room, n, `k${n}`))).type, 'ack');
  await reader.next((m) => m.type === 'fwd' && m.seq === 5, 'the reader has seq 5');
  await b.kill();
  const k = (s) => `${PREFIX}{${room}}:${s}`;
  const [[, fields]] = await redisAt(g.primary.port, 'XRANGE', k('log'), '3-0', '3-0');
  const f = Object.fromEntries([[fields[0], fields[1]], [fields[2], fields[3]]]);
  await redisAt(g.primary.port, 'XDEL', k('log'), '4-0', '5-0');
  await redisAt(g.primary.port, 'HSET', k('head'), 'seq', '3', 'sub', '0', 'sum', JSON.parse(f.e).sum, 'hash', f.h);
  const t0 = Date.now();
  await reader.next(DELETED(room), 'the reader is told to resync');
  const took = Date.now() - t0;
  const again = await reader.request({ type: 'subscribe', room });
  assert.equal(again.seq, 3);
  assert.deepEqual(Object.keys(again.state).sort(), ['k1', 'k2', 'k3']);
  assert.ok(await nodeMetric(a, 'movexd_cluster_head_check_mismatches_total') >= 1);
  assert.ok(await nodeMetric(a, 'movexd_cluster_rollbacks_total') >= 1);
  assert.ok(await nodeMetric(a, 'movexd_cluster_head_checks_total') >= 1);
  console.log(`# the reader was told after ${took} ms`);
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a] });
  await a.stop();
});

// A node that missed a room's deletion (here: its keys deleted by hand,
// no message) drops it at its next head check and tells its subscribers;
// on old main its readers kept the room until they wrote.
test('a room gone from Redis without a message is dropped by the head check: its subscribers are told', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const room = 'hc:gone';
  const reader = await connectHello(a, 'reader');
  await reader.request({ type: 'subscribe', room });
  assert.equal((await reader.request(add(room, 1, 'x'))).type, 'ack');
  for (const s of KEYS) await redisAt(g.primary.port, 'DEL', `${PREFIX}{${room}}:${s}`);
  const m = await reader.next(DELETED(room), 'the reader is told');
  assert.equal(m.id, undefined);
  assert.ok(await nodeMetric(a, 'movexd_cluster_head_check_mismatches_total') >= 1);
  await a.stop();
});

// A node of the previous version connecting after this one loads its own
// library (FUNCTION LOAD REPLACE, the last one wins): one whose append
// takes no incarnation and has no movexd_delete - built here from this
// one's text. This node's appends are then refused ("bad arguments"):
// it loads its library again, and the resend is acked (on old main
// - before incarnations - there was nothing to reload for).
test('a library replaced by an older one is loaded again at the first refused call; writes and deletes go on', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const room = 'lib:again';
  const w = await connectHello(a, 'w');
  await w.request({ type: 'subscribe', room });
  assert.equal((await w.request(add(room, 1, 'k1'))).type, 'ack');
  const lib = readFileSync(join(ROOT, 'src/cluster_fn.lua'), 'utf8');
  // the previous version: no argument after the actions, no delete
  const older = lib.replace("redis.register_function('movexd_append', append)",
    "redis.register_function('movexd_append', function(keys, args) if #args > 7 + (tonumber(args[7]) or 0) * 8 then " +
    "return redis.error_reply('ERR movexd: bad arguments') end return append(keys, args) end)")
    .replace("redis.register_function('movexd_delete', delete)", '');
  assert.equal(older.includes('movexd_delete\''), false);
  assert.ok(older.includes('#args > 7 +'));
  assert.equal(await redisAt(g.primary.port, 'FUNCTION', 'LOAD', 'REPLACE', older), 'movexd');
  const r2 = await w.request(add(room, 2, 'k2'));
  assert.equal(r2.type, 'reject', JSON.stringify(r2));
  assert.equal(r2.code, 'unavailable');
  await waitFor(async () => (await nodeMetric(a, 'movexd_cluster_library_reloads_total')) === 1, 'the library loaded again');
  let again;
  await waitFor(async () => (again = await w.request(add(room, 2, 'k2'))).code !== 'unavailable', 'the resend is decided');
  assert.equal(again.type, 'ack', JSON.stringify(again));
  assert.equal(again.seq, 2);
  assert.equal((await adminDelete(a, room)).status, 200);
  await a.stop();
});
