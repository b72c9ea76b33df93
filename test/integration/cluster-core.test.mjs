// Cluster mode's core (issue #14, docs/CLUSTER.md): several movexd nodes on
// one redis-server (started by the test on a free loopback port, stopped by
// PID). Clients of one room on different nodes converge; every acked action
// is in the room's stream exactly once, seqs gap-free; fwds arrive on every
// node in seq order; duplicates and `since` catch-up work on any node; a
// restarted node serves the room from Redis; contention shows as `moved`
// retries in /metrics; Redis going away answers `unavailable` and /readyz
// 503, and everything works again once it is back, without a restart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedisGroup, startNode, stopAll, checkInvariants, waitConverged, redisAt, PREFIX } from './cluster-lib.mjs';
import { Client, connectHello, patchAction, httpRequest, waitFor } from './lib.mjs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

after(stopAll);

// One redis-server, no replica, no Sentinel (appendonly: an acked entry
// survives a kill -9 and a restart on the same directory).
const redis = (appendonly = false) => startRedisGroup({ replicas: 0, sentinels: 0, appendonly });

async function ready(d, want = 200) {
  await waitFor(async () => (await httpRequest(d, { path: '/readyz' })).status === want, `/readyz ${want}`);
}

async function node(g, id, opts) {
  const d = await startNode(g, id, opts);
  await ready(d);
  return d;
}

async function metric(d, name) {
  const { body } = await httpRequest(d, { path: '/metrics' });
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(body);
  return m ? Number(m[1]) : NaN;
}

// The room's stream: [{id, seq, sub, e}] with e the parsed entry.
async function stream(g, room) {
  const x = await redisAt(g.primary.port, 'XRANGE', `${PREFIX}{${room}}:log`, '-', '+');
  return x.map(([id, f]) => {
    const [seq, sub] = id.split('-').map(Number);
    return { id, seq, sub, e: JSON.parse(f[1]) };
  });
}

// Every applied entry once per (client, n), seqs without a gap (from 1,
// or from where a snapshot trimmed the stream).
function checkStream(entries) {
  const applied = entries.filter((x) => x.e.k === 'a');
  const first = applied.length ? applied[0].seq : 1;
  applied.forEach((x, i) => assert.equal(x.seq, first + i, `seq gap at ${x.id}`));
  const keys = entries.map((x) => `${x.e.c}:${x.e.n}`);
  assert.equal(new Set(keys).size, keys.length, 'a (client, n) twice in the stream');
  return applied;
}

// The seqs a connection learned of room (its own acks and fwds), in arrival order.
function seqsSeen(c, room) {
  return c.all.filter((m) => m.room === room && ((m.type === 'ack' && !m.duplicate) || m.type === 'fwd')).map((m) => m.seq);
}

test('two nodes: clients of one room on different nodes see each other, same seq and checksum; ids unique across nodes', async () => {
  const r = await redis();
  const a = await node(r, 'n1');
  const b = await node(r, 'n2');
  const c1 = await connectHello(a, 'alice');
  const c2 = await connectHello(b, 'bob');
  const s1 = await c1.request({ type: 'subscribe', room: 'two' });
  assert.equal(s1.type, 'snapshot');
  const s2 = await c2.request({ type: 'subscribe', room: 'two' });
  assert.equal(s2.seq, 0);
  assert.equal(s2.checksum, s1.checksum);
  const ack1 = await c1.request(patchAction('two', 1, [{ op: 'add', path: '/x', value: 1 }]));
  assert.equal(ack1.type, 'ack');
  assert.equal(ack1.seq, 1);
  const f = await c2.next((m) => m.type === 'fwd');
  assert.equal(f.seq, 1);
  assert.equal(f.client, 'alice');
  const ack2 = await c2.request(patchAction('two', 1, [{ op: 'add', path: '/y', value: 2 }]));
  assert.equal(ack2.seq, 2);
  await c1.next((m) => m.type === 'fwd' && m.seq === 2);
  const g1 = await c1.request({ type: 'get', room: 'two' });
  const g2 = await c2.request({ type: 'get', room: 'two' });
  assert.deepEqual(g1.state, { x: 1, y: 2 });
  assert.deepEqual([g1.seq, g1.checksum], [g2.seq, g2.checksum]);
  // a create of the same room on the other node: it exists in Redis
  const ex = await c2.request({ type: 'create', room: 'two' });
  assert.equal(ex.code, 'room_exists');
  // a room nobody created: no_such_room on any node
  const none = await c1.request({ type: 'get', room: 'nobody' });
  assert.equal(none.code, 'no_such_room');
  // ids stay unique across nodes: an anonymous client id and the welcome's
  // conn carry the node
  const [x1, x2] = [await Client.connect(a.url), await Client.connect(b.url)];
  const [w1, w2] = [await x1.hello(), await x2.hello()];
  assert.match(w1.client, /^anon-n1-[0-9a-f]{16}$/);
  assert.match(w2.client, /^anon-n2-[0-9a-f]{16}$/);
  assert.notEqual(w1.conn, w2.conn);
  assert.ok(Number.isSafeInteger(w1.conn) && Number.isSafeInteger(w2.conn));
  await x1.close();
  await x2.close();
  checkStream(await stream(r, 'two'));
  await checkInvariants(r.primary.port, { rooms: ['two'], nodes: [a, b] });
  await c1.close();
  await c2.close();
});

// docs/CLUSTER.md "Trying it on one machine" starts two nodes from one
// conf, so with one data_dir: the journal's default directory is per node
// (DATA_DIR/cluster-journal-NODE_ID). It was DATA_DIR/cluster-journal, whose
// LOCK the first node held: the second exited at start ("another movexd is
// using this journal directory").
test('two nodes sharing a data_dir both start, each with its own journal directory, and serve one room', async () => {
  const r = await redis();
  const a = await node(r, 'n1');
  const b = await node(r, 'n2', { dir: a.dir }); // the same DIR/data
  assert.equal(b.dataDir, a.dataDir);
  for (const id of ['n1', 'n2']) assert.ok(existsSync(join(a.dataDir, `cluster-journal-${id}`, 'LOCK')), id);
  const c1 = await connectHello(a, 'alice');
  const c2 = await connectHello(b, 'bob');
  for (const c of [c1, c2]) assert.equal((await c.request({ type: 'subscribe', room: 'shared' })).type, 'snapshot');
  const ack = await c1.request(patchAction('shared', 1, [{ op: 'add', path: '/x', value: 1 }]));
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  assert.equal((await c2.next((m) => m.type === 'fwd')).seq, ack.seq);
  await c1.close();
  await c2.close();
});

test('three nodes, concurrent writers on every node: one order, each action once, fwds in seq order, moved retries counted', async () => {
  const r = await redis();
  const nodes = [await node(r, 'n1'), await node(r, 'n2'), await node(r, 'n3')];
  const room = 'hot';
  const clients = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let k = 0; k < 2; k++) {
      const c = await connectHello(nodes[i], `w${i}${k}`);
      const s = await c.request({ type: 'subscribe', room });
      assert.equal(s.type, 'snapshot');
      clients.push(c);
    }
  }
  const acked = new Map(); // "client:n" -> seq
  const PER = 30;
  let round = 0;
  let moved = 0;
  // rounds of pipelined writes from every client at once until `moved`
  // shows (bounded: contention makes it near-certain in the first round)
  for (; round < 10 && moved === 0; round++) {
    await Promise.all(clients.map(async (c) => {
      const replies = [];
      for (let j = 1; j <= PER; j++) {
        const n = round * PER + j;
        c.send({ ...patchAction(room, n, [{ op: 'add', path: `/k_${c.client}_${n}`, value: n }]), id: n });
        replies.push(c.next((m) => m.id === n && m.room === room, `reply ${n}`));
      }
      for (const m of await Promise.all(replies)) {
        assert.equal(m.type, 'ack', JSON.stringify(m));
        acked.set(`${c.client}:${m.n}`, m.seq);
      }
    }));
    moved = 0;
    for (const d of nodes) moved += await metric(d, 'movexd_cluster_moved_total');
  }
  assert.ok(moved > 0, `no moved retry in ${round} rounds`);
  const total = clients.length * PER * round;
  assert.equal(acked.size, total);
  // every node's replica converges on the same head
  const heads = await Promise.all(clients.map(async (c) => {
    await waitFor(() => { const s = seqsSeen(c, room); return s.length && s[s.length - 1] === total; }, `${c.client} reaches seq ${total}`);
    return c.request({ type: 'get', room });
  }));
  for (const h of heads) assert.deepEqual([h.seq, h.checksum], [heads[0].seq, heads[0].checksum]);
  assert.equal(Object.keys(heads[0].state).length, total);
  // fwds and acks on every connection: exactly 1..total, in order
  for (const c of clients) assert.deepEqual(seqsSeen(c, room), Array.from({ length: total }, (_, i) => i + 1), c.client);
  // the stream: each acked action exactly once, at the seq its ack named
  // (a snapshot may have trimmed the stream: what is left ends at total)
  const applied = checkStream(await stream(r, room));
  assert.equal(applied[applied.length - 1].seq, total);
  for (const x of applied) assert.equal(acked.get(`${x.e.c}:${x.e.n}`), x.seq);
  await waitConverged(r.primary.port, nodes, [room]);
  await checkInvariants(r.primary.port, { rooms: [room], nodes });
  for (const c of clients) await c.close();
});

test('a resend to another node is a duplicate with the original seq; since catch-up on another node', async () => {
  const r = await redis();
  const a = await node(r, 'n1');
  const b = await node(r, 'n2');
  const c1 = await connectHello(a, 'carol');
  await c1.request({ type: 'subscribe', room: 'dup' });
  const first = await c1.request(patchAction('dup', 1, [{ op: 'add', path: '/a', value: 1 }]));
  assert.equal(first.seq, 1);
  const mid = await c1.request({ type: 'get', room: 'dup' });
  await c1.request(patchAction('dup', 2, [{ op: 'add', path: '/b', value: 2 }]));
  await c1.request(patchAction('dup', 3, [{ op: 'add', path: '/c', value: 3 }]));
  await c1.close();
  // carol reconnects to the other node
  const c2 = await connectHello(b, 'carol');
  const cu = await c2.request({ type: 'subscribe', room: 'dup', since: { seq: mid.seq, checksum: mid.checksum } });
  assert.equal(cu.type, 'actions', JSON.stringify(cu));
  assert.deepEqual(cu.actions.map((x) => x.seq), [2, 3]);
  assert.equal(cu.next_n, 4);
  const again = await c2.request(patchAction('dup', 1, [{ op: 'add', path: '/a', value: 1 }]));
  assert.equal(again.type, 'ack');
  assert.equal(again.duplicate, true);
  assert.equal(again.seq, 1);
  assert.equal(again.checksum, first.checksum);
  assert.equal((await c2.request({ type: 'get', room: 'dup' })).seq, 3);
  await c2.close();
});

test('a restarted node serves the room from Redis', async () => {
  const r = await redis();
  const a = await node(r, 'n1');
  const c1 = await connectHello(a, 'dave');
  await c1.request({ type: 'create', room: 'keep', state: { list: [] } });
  await c1.request({ type: 'subscribe', room: 'keep' });
  for (let n = 1; n <= 5; n++) {
    const m = await c1.request(patchAction('keep', n, [{ op: 'add', path: '/list/-', value: n }]));
    assert.equal(m.type, 'ack');
  }
  const before = await c1.request({ type: 'get', room: 'keep' });
  await c1.close();
  await a.stop();
  const a2 = await node(r, 'n1');
  const c2 = await connectHello(a2, 'dave');
  const g = await c2.request({ type: 'get', room: 'keep' });
  assert.deepEqual(g.state, { list: [1, 2, 3, 4, 5] });
  assert.deepEqual([g.seq, g.checksum, g.next_n], [before.seq, before.checksum, 6]);
  await c2.request({ type: 'subscribe', room: 'keep' });
  const m = await c2.request(patchAction('keep', 6, [{ op: 'add', path: '/list/-', value: 6 }]));
  assert.equal(m.seq, 6);
  await c2.close();
});

test('Redis gone: actions answered unavailable, /readyz 503; back: works again without a restart', async () => {
  const r = await redis(true);
  const a = await node(r, 'n1');
  const c = await connectHello(a, 'erin');
  await c.request({ type: 'subscribe', room: 'down' });
  assert.equal((await c.request(patchAction('down', 1, [{ op: 'add', path: '/a', value: 1 }]))).seq, 1);
  await r.primary.kill('SIGKILL');
  await ready(a, 503);
  // the reason names Redis (before: "storage failing: acks are held", which
  // is the WAL's case and wrong here - nothing is held, actions are refused)
  assert.match((await httpRequest(a, { path: '/readyz' })).body, /^cluster: Redis not reachable/);
  const u = await c.request(patchAction('down', 2, [{ op: 'add', path: '/b', value: 2 }]));
  assert.equal(u.type, 'reject');
  assert.equal(u.code, 'unavailable');
  assert.ok((await metric(a, 'movexd_cluster_redis_up')) === 0);
  await r.primary.start(); // same port, same directory: the append-only file brings every entry back
  await ready(a);
  // n was not used up: the same n is applied now
  const ok = await c.request(patchAction('down', 2, [{ op: 'add', path: '/b', value: 2 }]));
  assert.equal(ok.type, 'ack', JSON.stringify(ok));
  assert.equal(ok.seq, 2);
  assert.deepEqual((await c.request({ type: 'get', room: 'down' })).state, { a: 1, b: 2 });
  await c.close();
  await checkInvariants(r.primary.port, { rooms: ['down'], nodes: [a] });
});
