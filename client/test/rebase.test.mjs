// Optimistic updates and rebase: pending actions on top of fwds, acks
// confirming, the reject cascade, checksum/gap resync, batching,
// immutability and structural sharing. The server is played by hand
// (fake.mjs).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectRaw, memoryStorage, checksum, MovexError } from '../movex.js';
import { FakeNet, ServerRoom, tick } from './fake.mjs';


// Every connection a test opens is closed at the end, even when the test
// failed half-way (a live connection would keep reconnecting for ever).
const opened = [];
const connect = (...args) => { const c = connectRaw(...args); opened.push(c); return c; };
after(() => Promise.all(opened.map((c) => c.close())));

const ROOM = 'todo:a';

async function setup(initial = { c: 0 }, opts = {}) {
  const net = new FakeNet();
  const storage = opts.storage || memoryStorage();
  const conn = connect('ws://fake/ws', {
    WebSocket: net.WebSocket, storage, client: 'me', ping: false, backoff: { base: 1, cap: 2 }, freeze: opts.freeze,
  });
  const sock = await net.nextSocket();
  await sock.handshake();
  const server = new ServerRoom(ROOM, initial, opts.server);
  const joined = conn.join(ROOM, opts.join || {});
  const sub = await sock.expect('subscribe');
  sock.reply(sub, server.snapshot('me'));
  const room = await joined;
  const states = [];
  room.subscribe((s) => states.push(s));
  assert.deepEqual(states, [room.state], 'subscribe() calls back with the current state first');
  states.length = 0; // the tests count the changes after that
  return { net, conn, sock, server, room, storage, states };
}

// Read the next action the client sends, decide it on the server, answer.
async function serve(sock, server, { client = 'me' } = {}) {
  const m = await sock.expect('action');
  const res = server.decide(m, client);
  sock.reply(m, res);
  return { m, res };
}

const inc = (v = 1, path = '/c') => [{ op: 'inc', path, value: v }];

test('join: create then subscribe; room_exists is fine', async () => {
  const net = new FakeNet();
  const conn = connect('ws://fake/ws', { WebSocket: net.WebSocket, storage: memoryStorage(), client: 'me', ping: false });
  const statuses = [];
  conn.on('status', (s) => statuses.push(s));
  const sock = await net.nextSocket();
  const hello = await sock.handshake();
  assert.equal(hello.client, 'me');
  assert.deepEqual(sock.protocols, ['movex.v1']);
  const p = conn.join(ROOM, { create: { items: [] } });
  const cr = await sock.expect('create');
  assert.deepEqual(cr.state, { items: [] });
  sock.reply(cr, { type: 'error', code: 'room_exists', message: 'exists' });
  const sub = await sock.expect('subscribe');
  assert.equal(sub.since, undefined);
  const server = new ServerRoom(ROOM, { items: ['x'] });
  sock.reply(sub, server.snapshot('me'));
  const room = await p;
  assert.deepEqual(room.state, { items: ['x'] });
  assert.equal(room.seq, 0);
  assert.equal(room.checksum, server.checksum);
  assert.equal(await conn.join(ROOM), room, 'joining again returns the same room');
  assert.deepEqual(statuses, ['open']);
  await conn.close();
  assert.deepEqual(statuses, ['open', 'closed']);
});

test('join fails on a create error other than room_exists, and on a subscribe error', async () => {
  const net = new FakeNet();
  const conn = connect('ws://fake/ws', { WebSocket: net.WebSocket, storage: memoryStorage(), client: 'me', ping: false });
  const sock = await net.nextSocket();
  await sock.handshake();
  const p = conn.join(ROOM, { create: { big: 1 } });
  const cr = await sock.expect('create');
  sock.reply(cr, { type: 'error', code: 'too_large', message: 'too big' });
  await assert.rejects(p, (e) => e instanceof MovexError && e.code === 'too_large');
  const p2 = conn.join('todo:b');
  sock.reply(await sock.expect('subscribe'), { type: 'error', code: 'no_such_room', message: 'no' });
  await assert.rejects(p2, (e) => e.code === 'no_such_room');
  assert.equal(conn.room('todo:b'), undefined);
  await assert.rejects(conn.join('bad room!'), (e) => e.code === 'bad_room');
  await conn.close();
});

test('dispatch is optimistic; the ack confirms it without a new state object', async () => {
  const { conn, sock, server, room, states } = await setup();
  const p = room.patch(inc(5));
  assert.deepEqual(room.state, { c: 5 }, 'visible at once');
  assert.deepEqual(room.confirmedState, { c: 0 });
  assert.equal(room.pendingCount, 1);
  const { m } = await serve(sock, server);
  assert.equal(m.n, 1);
  assert.equal(m.dep, undefined, 'no dep when nothing is pending');
  assert.equal(m.base, 0);
  assert.deepEqual(m.action, { type: 'patch', payload: inc(5) });
  const ack = await p;
  assert.deepEqual(ack, { n: 1, seq: 1, checksum: server.checksum, duplicate: false });
  assert.equal(room.seq, 1);
  assert.equal(room.checksum, server.checksum);
  assert.equal(room.pendingCount, 0);
  assert.equal(states.length, 1, 'one change for the app: the optimistic one; the ack changes nothing visible');
  assert.equal(room.state, room.confirmedState, 'the confirmed state is the very object the app already has');
  await conn.close();
});

test('pending actions are rebased on top of fwds; acks and fwds interleave by seq', async () => {
  const { conn, sock, server, room, states } = await setup({ c: 0, log: [] });
  const p1 = room.patch([...inc(1), { op: 'add', path: '/log/-', value: 'me1' }]);
  const p2 = room.patch([...inc(10), { op: 'add', path: '/log/-', value: 'me2' }]);
  assert.deepEqual(room.state, { c: 11, log: ['me1', 'me2'] });
  // another client's action lands first (seq 1)
  sock.push(server.external([{ op: 'add', path: '/log/-', value: 'other' }, ...inc(100)]));
  assert.deepEqual(room.confirmedState, { c: 100, log: ['other'] });
  assert.deepEqual(room.state, { c: 111, log: ['other', 'me1', 'me2'] }, 'pending re-applied on top');
  const a1 = await serve(sock, server); // seq 2
  assert.equal(a1.m.dep, undefined);
  const a2 = await serve(sock, server); // seq 3
  assert.equal(a2.m.dep, 1, 'dep = latest unacked action');
  assert.equal((await p1).seq, 2);
  assert.equal((await p2).seq, 3);
  sock.push(server.external(inc(1000))); // seq 4
  assert.deepEqual(room.state, server.state);
  assert.equal(room.seq, 4);
  assert.equal(room.checksum, server.checksum);
  assert.equal(states.at(-1), room.state);
  assert.equal(sock.log.filter((x) => x.type === 'sync').length, 0, 'no resync needed');
  await conn.close();
});

test('a reject drops the action and every pending action depending on it, and tells the app', async () => {
  const { conn, sock, server, room } = await setup({ c: 0 });
  const rejects = [];
  room.on('reject', (e) => rejects.push(e));
  const pA = room.patch([{ op: 'test', path: '/c', value: 0 }, { op: 'replace', path: '/c', value: 10 }]);
  const pB = room.patch(inc(1)); // dep A
  const pC = room.patch(inc(1)); // dep B
  assert.deepEqual(room.state, { c: 12 });
  // someone else changes c first: A's test fails on the server
  sock.push(server.external([{ op: 'replace', path: '/c', value: 5 }]));
  assert.deepEqual(room.state, { c: 7 }, 'A fails locally now (skipped), B and C still apply');
  const mA = await sock.expect('action');
  const mB = await sock.expect('action');
  const mC = await sock.expect('action');
  assert.deepEqual([mA.dep, mB.dep, mC.dep], [undefined, mA.n, mB.n]);
  sock.reply(mA, server.decide(mA, 'me'));
  await assert.rejects(pA, (e) => e.code === 'test_failed' && e.n === mA.n);
  await assert.rejects(pB, (e) => e.code === 'after_reject' && e.n === mB.n);
  await assert.rejects(pC, (e) => e.code === 'after_reject');
  assert.deepEqual(room.state, { c: 5 }, 'dependents dropped at once');
  assert.equal(room.pendingCount, 0);
  assert.deepEqual(rejects.map((e) => e.code), ['test_failed', 'after_reject', 'after_reject']);
  // the server's own after_reject answers arrive later and change nothing
  sock.reply(mB, server.decide(mB, 'me'));
  sock.reply(mC, server.decide(mC, 'me'));
  assert.equal(server.decided.get(`me/${mC.n}`).code, 'after_reject');
  // an action dispatched after the reject is independent
  const pD = room.patch(inc(1));
  const { m: mD } = await serve(sock, server);
  assert.equal(mD.dep, undefined);
  assert.equal((await pD).seq, 2);
  assert.deepEqual(room.state, { c: 6 });
  await conn.close();
});

test('the cascade follows dep chains only: an action dispatched after its predecessor was acked is independent', async () => {
  const { conn, sock, server, room } = await setup({ c: 0 });
  const p1 = room.patch(inc(1));
  await serve(sock, server);
  await p1;
  const p2 = room.patch([{ op: 'test', path: '/c', value: 42 }]); // will be rejected (fails locally too)
  const p3 = room.patch(inc(1)); // dep p2
  assert.deepEqual(room.state, { c: 2 }, 'p2 fails locally: kept but skipped for the view');
  assert.equal(room.pendingCount, 2);
  const { m: m2 } = await serve(sock, server);
  await assert.rejects(p2, (e) => e.code === 'test_failed');
  await assert.rejects(p3, (e) => e.code === 'after_reject');
  assert.equal(m2.dep, undefined);
  assert.deepEqual(room.state, { c: 1 });
  await conn.close();
});

test('states are immutable: old states never change, unchanged subtrees are shared', async () => {
  const init = { a: { deep: { list: [1, 2, 3] } }, b: { n: 0 }, items: [{ id: 1 }, { id: 2 }] };
  const { conn, sock, server, room, states } = await setup(init);
  const s0 = room.state;
  const frozen0 = JSON.stringify(s0);
  room.patch([{ op: 'inc', path: '/b/n', value: 1 }]);
  const s1 = room.state;
  assert.notEqual(s1, s0);
  assert.equal(s1.a, s0.a, 'untouched subtree shared');
  assert.equal(s1.items, s0.items);
  assert.notEqual(s1.b, s0.b);
  sock.push(server.external([{ op: 'add', path: '/items/1/done', value: true }]));
  const s2 = room.state;
  assert.equal(s2.a, s0.a);
  assert.equal(s2.items[0], s0.items[0], 'sibling array item shared');
  assert.notEqual(s2.items[1], s0.items[1]);
  await serve(sock, server);
  await room.flush();
  assert.equal(JSON.stringify(s0), frozen0, 'the first state never changed');
  assert.deepEqual(s1, { ...init, b: { n: 1 } });
  assert.deepEqual(room.state, server.state);
  assert.equal(states.length, 2);
  await conn.close();
});

test('freeze option: every state handed out is deep-frozen', async () => {
  const { conn, sock, server, room } = await setup({ a: { b: [1] } }, { freeze: true });
  assert.ok(Object.isFrozen(room.state) && Object.isFrozen(room.state.a.b));
  room.patch([{ op: 'add', path: '/a/c', value: { d: 1 } }]);
  assert.ok(Object.isFrozen(room.state.a.c));
  sock.push(server.external([{ op: 'add', path: '/x', value: [{}] }]));
  assert.ok(Object.isFrozen(room.state.x[0]));
  await conn.close();
});

test('a checksum mismatch triggers sync from the last reconciled point; fwds during sync are ignored', async () => {
  const { conn, sock, server, room, states } = await setup({ c: 0 });
  const resyncs = [];
  room.on('resync', (e) => resyncs.push(e));
  sock.push(server.external(inc(1))); // seq 1, fine
  const good = { seq: room.seq, checksum: room.checksum };
  const bad = server.external(inc(1)); // seq 2
  sock.push({ ...bad, checksum: '0'.repeat(32) });
  const sync = await sock.expect('sync');
  assert.deepEqual(sync.since, good, 'since = last reconciled seq/checksum');
  assert.equal(room.status, 'syncing');
  sock.push(server.external(inc(1))); // seq 3 arrives before the reply: ignored
  assert.equal(room.seq, 1);
  const n0 = states.length;
  sock.reply(sync, server.actionsSince(sync.since.seq, 'me'));
  assert.equal(states.length, n0 + 1, 'the whole catch-up is one update');
  assert.deepEqual(room.state, { c: 3 });
  assert.equal(room.seq, 3);
  assert.equal(room.checksum, server.checksum);
  assert.deepEqual(resyncs, [{ reason: 'checksum_mismatch', kind: 'actions', seq: 3, from: 1, to: 3 }]);
  sock.push(server.external(inc(1))); // seq 4 continues normally
  assert.equal(room.seq, 4);
  await conn.close();
});

test('a seq gap triggers sync; a snapshot reply replaces the confirmed state and pending stays on top', async () => {
  const { conn, sock, server, room } = await setup({ c: 0, s: '' });
  const p = room.patch([{ op: 'replace', path: '/s', value: 'mine' }]);
  const mine = await sock.expect('action');
  server.external(inc(1)); // seq 1 never reaches us
  sock.push(server.external(inc(1))); // seq 2: gap
  const sync = await sock.expect('sync');
  assert.equal(sync.since.seq, 0);
  // our action is decided (seq 3) and acked before the sync reply
  sock.reply(mine, server.decide(mine, 'me'));
  assert.equal((await p).seq, 3, 'the promise resolves at the ack');
  assert.deepEqual(room.state, { c: 0, s: 'mine' }, 'still shown while the sync runs');
  sock.reply(sync, server.snapshot('me'));
  assert.deepEqual(room.state, { c: 2, s: 'mine' });
  assert.equal(room.seq, 3);
  assert.equal(room.pendingCount, 0);
  assert.equal(room.confirmedState, room.state);
  await conn.close();
});

test('the view never loses an acked action while its seq is not yet confirmed', async () => {
  const { conn, sock, server, room, states } = await setup({ list: [] });
  room.patch([{ op: 'add', path: '/list/-', value: 'a' }]);
  const m = await sock.expect('action');
  server.external([{ op: 'add', path: '/list/-', value: 'x' }]); // seq 1 (lost)
  sock.reply(m, server.decide(m, 'me')); // ack seq 2: gap -> sync
  const sync = await sock.expect('sync');
  for (const s of states) assert.ok(s.list.includes('a'), JSON.stringify(s));
  sock.reply(sync, server.actionsSince(0, 'me'));
  assert.deepEqual(room.state, { list: ['x', 'a'] });
  for (const s of states) assert.ok(s.list.includes('a'), 'never a state without the action');
  await conn.close();
});

test('an actions reply that does not apply falls back to a snapshot (get)', async () => {
  const { conn, sock, server, room } = await setup({ c: 0 });
  sock.push({ ...server.external(inc(1)), checksum: 'f'.repeat(32) });
  const sync = await sock.expect('sync');
  const reply = server.actionsSince(0, 'me');
  reply.actions[0] = { ...reply.actions[0], checksum: 'e'.repeat(32) }; // cannot verify
  sock.reply(sync, reply);
  const get = await sock.expect('get');
  sock.reply(get, server.snapshot('me'));
  assert.deepEqual(room.state, { c: 1 });
  assert.equal(room.checksum, server.checksum);
  await conn.close();
});

test('fwd effects are applied instead of the action payload', async () => {
  const { conn, sock, server, room } = await setup({ score: 0 });
  server.apply({ type: 'score', payload: { points: 3 } }, 'other', 1, [{ op: 'inc', path: '/score', value: 3 }]);
  sock.push(server.lastFwd());
  assert.deepEqual(room.state, { score: 3 });
  assert.equal(room.checksum, server.checksum);
  await conn.close();
});

test('non-patch actions: predicted with the room reducer; a wrong prediction is repaired by sync', async () => {
  const reducer = (state, action) => (action.type === 'add' ? [{ op: 'inc', path: '/c', value: action.payload }] : null);
  const { conn, sock, server, room } = await setup({ c: 0 }, { join: { reducer } });
  const p = room.dispatch({ type: 'add', payload: 2 });
  assert.deepEqual(room.state, { c: 2 });
  const m = await sock.expect('action');
  // the server's reducer doubles it: effects differ from the prediction
  const ack = server.apply(m.action, 'me', m.n, [{ op: 'inc', path: '/c', value: 4 }]);
  sock.reply(m, ack);
  await p;
  const sync = await sock.expect('sync');
  sock.reply(sync, server.actionsSince(sync.since.seq, 'me'));
  assert.deepEqual(room.state, { c: 4 });
  assert.equal(room.pendingCount, 0);
  await conn.close();
});

test('flush resolves only after every dispatched action is acked', async () => {
  const { conn, sock, server, room } = await setup({ c: 0 });
  let flushed = false;
  const ps = [room.patch(inc(1)), room.patch(inc(1)), room.patch(inc(1))];
  const f = conn.flush().then(() => { flushed = true; });
  await serve(sock, server);
  await serve(sock, server);
  await tick();
  assert.equal(flushed, false);
  await serve(sock, server);
  await f;
  assert.equal(flushed, true);
  for (const p of ps) await p;
  assert.equal(room.seq, 3);
  await conn.flush(); // nothing pending: at once
  await conn.close();
});

test('strict actions carry base = confirmed seq + own pending ahead', async () => {
  const { conn, sock, server, room } = await setup({ c: 0 });
  sock.push(server.external(inc(1)));
  room.patch(inc(1));
  room.patch(inc(1), { strict: true });
  const m1 = await sock.expect('action');
  const m2 = await sock.expect('action');
  assert.equal(m1.strict, undefined);
  assert.equal(m2.strict, true);
  assert.equal(m2.base, 2);
  await conn.close();
});

test('actions over max_message_bytes are refused locally (the server would close the connection)', async () => {
  const net = new FakeNet();
  const conn = connect('ws://fake/ws', { WebSocket: net.WebSocket, storage: memoryStorage(), client: 'me', ping: false });
  const sock = await net.nextSocket();
  await sock.handshake({ max_message_bytes: 200 });
  const server = new ServerRoom(ROOM, {});
  const j = conn.join(ROOM);
  sock.reply(await sock.expect('subscribe'), server.snapshot('me'));
  const room = await j;
  await assert.rejects(room.patch([{ op: 'add', path: '/x', value: 'y'.repeat(300) }]), (e) => e.code === 'too_large');
  const ok = room.patch([{ op: 'add', path: '/x', value: 1 }]);
  const { m } = await serve(sock, server);
  assert.equal(m.n, 1, 'the refused action used no n');
  await ok;
  await conn.close();
});

test('checksums of large states are incremental: 300 verified fwds on a 20000-row state', async () => {
  const big = { items: Array.from({ length: 200 }, (_, i) => ({ id: i, rows: Array.from({ length: 100 }, (_, j) => ({ j, v: `x${j}` })) })), n: 0 };
  const { conn, sock, server, room } = await setup(big, { server: { fast: true } });
  const fwds = [];
  for (let k = 0; k < 300; k++) {
    fwds.push(server.external([{ op: 'replace', path: `/items/${k % 200}/rows/${k % 100}/v`, value: `k${k}` }, { op: 'inc', path: '/n', value: 1 }]));
  }
  const t0 = performance.now();
  for (const f of fwds) sock.push(f);
  const t = performance.now() - t0;
  assert.equal(room.seq, 300);
  assert.equal(room.checksum, server.checksum);
  assert.equal(room.state.n, 300);
  assert.equal(sock.log.filter((x) => x.type === 'sync').length, 0, 'every fwd verified');
  // a full checksum of this state, for comparison
  const t1 = performance.now();
  checksum(room.state);
  const full = performance.now() - t1;
  console.log(`# 300 verified fwds on 20000 rows: ${t.toFixed(0)} ms in all; one full checksum: ${full.toFixed(0)} ms`);
  assert.ok(t < full * 30, `300 incremental checks (${t} ms) should cost far less than 300 full ones (${full * 300} ms)`);
  await conn.close();
});

test('a subscriber that throws does not break processing (the error is rethrown asynchronously)', async () => {
  const { conn, sock, server, room } = await setup({ c: 0 });
  const seen = [];
  const orig = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (fn) => orig(() => { try { fn(); } catch (e) { seen.push(e.message); } });
  try {
    room.subscribe(() => { throw new Error('app bug'); }); // (called at once with the current state)
    sock.push(server.external(inc(1)));
    sock.push(server.external(inc(1)));
    await tick();
  } finally {
    globalThis.queueMicrotask = orig;
  }
  assert.equal(room.seq, 2);
  assert.deepEqual(seen, ['app bug', 'app bug', 'app bug']);
  await conn.close();
});

// ---- the "change" event: everything a UI shows besides the state ----

test('change: an ack changes pendingCount, seq and checksum but not the state; "change" reports it', async () => {
  const { conn, sock, server, room, states } = await setup({ c: 0 });
  const changes = [];
  room.on('change', (c) => changes.push(c));
  const p = room.patch(inc(1));
  assert.equal(changes.length, 0, 'emitted in a microtask, not inside dispatch');
  await tick();
  assert.equal(changes.length, 1);
  assert.deepEqual(changes[0], { state: { c: 1 }, confirmedState: { c: 0 }, seq: 0, checksum: checksum({ c: 0 }), pendingCount: 1, status: 'live' });
  await serve(sock, server);
  await p;
  await tick();
  assert.equal(states.length, 1, 'subscribe() heard only the optimistic change');
  assert.equal(changes.length, 2, 'the ack is a change');
  const c = changes[1];
  assert.equal(c.state, changes[0].state, 'same state object');
  assert.deepEqual({ seq: c.seq, checksum: c.checksum, pendingCount: c.pendingCount, status: c.status },
    { seq: 1, checksum: server.checksum, pendingCount: 0, status: 'live' });
  // a message that changes nothing (an old fwd) emits nothing
  sock.push(server.lastFwd());
  await tick();
  assert.equal(changes.length, 2);
  await conn.close();
});

test('change: one event per burst of dispatches; a reject lowers pendingCount', async () => {
  const { conn, sock, server, room } = await setup({ c: 0 });
  const changes = [];
  room.on('change', (c) => changes.push(c));
  const pA = room.patch([{ op: 'test', path: '/c', value: 1 }]); // fails locally: the state does not change
  const pB = room.patch(inc(1));
  const pC = room.patch(inc(1));
  await tick();
  assert.deepEqual(changes.map((c) => c.pendingCount), [3], 'three dispatches, one event');
  const mA = await sock.expect('action');
  sock.reply(mA, server.decide(mA, 'me'));
  await assert.rejects(pA);
  await assert.rejects(pB);
  await assert.rejects(pC);
  await tick();
  assert.deepEqual(changes.map((c) => c.pendingCount), [3, 0]);
  assert.deepEqual(changes[1].state, { c: 0 });
  await conn.close();
});

test('change: a pending action that does not change the state still changes pendingCount', async () => {
  // an action the client cannot predict (no reducer): the view is unchanged
  const { conn, sock, server, room, states } = await setup({ c: 0 });
  const changes = [];
  room.on('change', (c) => changes.push(c));
  const p = room.dispatch({ type: 'custom', payload: 1 });
  await tick();
  assert.equal(states.length, 0, 'no new state');
  assert.deepEqual(changes.map((c) => c.pendingCount), [1]);
  const m = await sock.expect('action');
  sock.reply(m, server.apply({ type: 'custom' }, 'me', m.n, inc(1)));
  await p;
  const sync = await sock.expect('sync'); // the ack has no effects: the client catches up
  sock.reply(sync, server.actionsSince(sync.since.seq, 'me'));
  await tick();
  assert.deepEqual(changes.map((c) => [c.pendingCount, c.seq, c.status]), [[1, 0, 'live'], [0, 0, 'syncing'], [0, 1, 'live']]);
  await conn.close();
});

test('change: room status follows the connection (idle while away, live again after the catch-up)', async () => {
  const { conn, net, sock, server, room } = await setup({ c: 0 });
  const changes = [];
  room.on('change', (c) => changes.push(c));
  sock.drop();
  await tick();
  assert.deepEqual(changes.map((c) => c.status), ['idle']);
  const s2 = await net.nextSocket();
  await s2.handshake();
  const sub = await s2.expect('subscribe');
  await tick();
  assert.deepEqual(changes.map((c) => c.status), ['idle', 'subscribing']);
  server.external(inc(5));
  s2.reply(sub, server.actionsSince(sub.since.seq, 'me'));
  await tick();
  assert.deepEqual(changes.map((c) => [c.status, c.seq]), [['idle', 0], ['subscribing', 0], ['live', 1]]);
  await room.leave();
  await tick();
  assert.equal(changes.at(-1).status, 'left');
  await conn.close();
});

// ---- independent actions: dispatch(action, {dep: false}) ----

test('dep: false sends no dep: the action survives the reject of an earlier one; later actions depend on it', async () => {
  const { conn, sock, server, room, storage } = await setup({ c: 0, s: '' });
  const rejects = [];
  room.on('reject', (e) => rejects.push(`${e.n}:${e.code}`));
  const pA = room.patch([{ op: 'test', path: '/t', value: 'x' }]); // rejected: test_failed
  const pB = room.patch([{ op: 'replace', path: '/s', value: 'b' }], { dep: false }); // independent
  const pC = room.patch([{ op: 'replace', path: '/s', value: 'c' }]); // dep B (the latest on /s)
  const pD = room.patch(inc(10)); // nothing pending touches /c: no dep
  await tick();
  const stored = JSON.parse(storage.getItem(`movex:me:${ROOM}`)).pending;
  assert.deepEqual(stored.map((p) => p.dep), [undefined, undefined, [2], undefined], 'stored without dep too (a reload resends it as sent)');
  const mA = await sock.expect('action');
  const mB = await sock.expect('action');
  const mC = await sock.expect('action');
  const mD = await sock.expect('action');
  assert.deepEqual([mA.dep, mB.dep, mC.dep, mD.dep], [undefined, undefined, mB.n, undefined]);
  assert.equal('dep' in mB, false);
  sock.reply(mA, server.decide(mA, 'me'));
  await assert.rejects(pA, (e) => e.code === 'test_failed');
  assert.equal(room.pendingCount, 3, 'B, C and D are still pending: nothing cascades from A');
  assert.deepEqual(room.state, { c: 10, s: 'c' });
  for (const m of [mB, mC, mD]) sock.reply(m, server.decide(m, 'me'));
  assert.deepEqual((await Promise.all([pB, pC, pD])).map((a) => a.seq), [1, 2, 3]);
  assert.deepEqual(rejects, ['1:test_failed']);
  assert.deepEqual(room.state, { c: 10, s: 'c' });
  assert.equal(room.checksum, server.checksum);
  await conn.close();
});

test('dep: false actions are not dropped locally when an earlier one is rejected; default ones after them still are', async () => {
  const { conn, sock, server, room } = await setup({ c: 0 });
  const pA = room.patch([{ op: 'test', path: '/c', value: 1 }]);
  const pB = room.patch(inc(1)); // dep A: cascades
  const pC = room.patch(inc(2), { dep: false });
  const mA = await sock.expect('action');
  sock.reply(mA, server.decide(mA, 'me'));
  await assert.rejects(pA);
  await assert.rejects(pB, (e) => e.code === 'after_reject');
  assert.equal(room.pendingCount, 1);
  assert.deepEqual(room.state, { c: 2 });
  await sock.expect('action'); // B (the server rejects it too)
  const mC = await sock.expect('action');
  assert.equal(mC.dep, undefined);
  sock.reply(mC, server.decide(mC, 'me'));
  assert.equal((await pC).seq, 1);
  await assert.rejects(room.patch(inc(1), { dep: 'no' }), TypeError);
  await conn.close();
});
