// Never lose a write: backoff with full jitter, resubscribe with `since`,
// resend of unacked actions with the same n, duplicate acks, catch-up
// entries confirming pending actions, in-doubt actions after a snapshot,
// storage across reloads, next_n, liveness pings, client ids.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectRaw, memoryStorage, backoffDelay, randomClientId, MovexError } from '../movex.js';
import { FakeNet, ServerRoom, tick, until } from './fake.mjs';


// Every connection a test opens is closed at the end, even when the test
// failed half-way (a live connection would keep reconnecting for ever).
const opened = [];
const connect = (...args) => { const c = connectRaw(...args); opened.push(c); return c; };
after(() => Promise.all(opened.map((c) => c.close())));

const ROOM = 'todo:a';
const inc = (v = 1, path = '/c') => [{ op: 'inc', path, value: v }];

function open(net, storage, opts = {}) {
  return connect('ws://fake/ws', {
    WebSocket: net.WebSocket, storage, ping: false, backoff: { base: 1, cap: 4 }, ...opts,
  });
}

// A fresh socket from the client: handshake, then answer the subscribe with
// a catch-up (actions when since is usable, else snapshot) like movexd does.
async function reconnect(net, server, { client = 'me', forceSnapshot = false } = {}) {
  const sock = await net.nextSocket();
  await sock.handshake();
  const sub = await sock.expect('subscribe');
  const since = sub.since;
  const usable = since && !forceSnapshot && since.seq <= server.seq &&
    (since.seq === server.seq ? since.checksum === server.checksum : server.log.find((e) => e.seq === since.seq + 1)?.prev === since.checksum);
  sock.reply(sub, usable ? server.actionsSince(since.seq, client) : server.snapshot(client));
  return { sock, sub };
}

async function joined(net, storage, server, opts = {}) {
  const conn = open(net, storage, { client: 'me', ...opts });
  const p = conn.join(ROOM);
  const { sock } = await reconnect(net, server);
  return { conn, sock, room: await p };
}

test('backoffDelay: full jitter in [0, min(cap, base * 2^k))', () => {
  const opts = { base: 250, cap: 10000 };
  for (let k = 0; k < 40; k++) {
    const ceiling = Math.min(10000, 250 * 2 ** k);
    assert.equal(backoffDelay(k, opts, () => 0), 0);
    assert.ok(backoffDelay(k, opts, () => 0.999999) < ceiling);
    assert.ok(backoffDelay(k, opts, () => 0.999999) >= ceiling - 1);
    assert.equal(backoffDelay(k, opts, () => 0.5), Math.floor(ceiling / 2));
  }
  assert.equal(backoffDelay(0, undefined, () => 0.999999), 249, 'defaults: base 250');
  assert.equal(backoffDelay(100, undefined, () => 0.999999), 9999, 'defaults: cap 10 s');
  // real randomness: everything within bounds and spread over the range
  const xs = Array.from({ length: 2000 }, () => backoffDelay(3, opts));
  assert.ok(xs.every((x) => x >= 0 && x < 2000));
  assert.ok(Math.min(...xs) < 200 && Math.max(...xs) > 1800, 'full jitter spans the whole interval');
});

test('reconnect waits a jittered delay: random 0 reconnects at once, random ~1 waits ~the ceiling', async () => {
  const net = new FakeNet();
  const fast = open(net, memoryStorage(), { client: 'me', backoff: { base: 100000, cap: 100000 }, random: () => 0 });
  const s1 = await net.nextSocket();
  await s1.handshake();
  s1.drop();
  const s2 = await net.nextSocket(); // delay 0 despite a huge base
  assert.notEqual(s2, s1);
  await fast.close();

  const net2 = new FakeNet();
  const slow = open(net2, memoryStorage(), { client: 'me', backoff: { base: 300, cap: 300 }, random: () => 0.999 });
  const statuses = [];
  slow.on('status', (s) => statuses.push(s));
  const t1 = await net2.nextSocket();
  await t1.handshake();
  const t0 = Date.now();
  t1.drop();
  await net2.nextSocket();
  const waited = Date.now() - t0;
  assert.ok(waited >= 250, `waited ${waited} ms`);
  assert.deepEqual(statuses, ['open', 'reconnecting']);
  await slow.close();
});

test('attempts grow while the server is away and reset after a welcome', async () => {
  const net = new FakeNet();
  const ceilings = [];
  const conn = open(net, memoryStorage(), { client: 'me', backoff: { base: 4, cap: 64 }, random: () => 0.999 });
  // record each reconnect delay's ceiling through the timers the library sets
  const origSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = (fn, ms, ...rest) => { if (ms >= 3) ceilings.push(ms); return origSetTimeout(fn, ms, ...rest); };
  try {
    let s = await net.nextSocket();
    for (let i = 0; i < 5; i++) {
      s.drop(); // refused before any welcome
      s = await net.nextSocket();
    }
    await s.handshake();
    s.drop(); // after a welcome: back to the first ceiling
    await net.nextSocket();
  } finally {
    globalThis.setTimeout = origSetTimeout;
  }
  const reconnectDelays = ceilings.filter((ms) => ms < 1000); // (not connect timeouts or the fake's waits)
  assert.deepEqual(reconnectDelays, [3, 7, 15, 31, 63, 3], 'floor(0.999 * min(64, 4 * 2^k)), reset after open');
  await conn.close();
});

test('reconnect: resubscribe with since = last reconciled, then resend unacked actions with the same n, in order', async () => {
  const net = new FakeNet();
  const storage = memoryStorage();
  const server = new ServerRoom(ROOM, { c: 0, log: [] });
  const { conn, sock, room } = await joined(net, storage, server);
  sock.push(server.external(inc(1))); // seq 1
  const p1 = room.patch([{ op: 'add', path: '/log/-', value: 1 }]);
  const p2 = room.patch([{ op: 'add', path: '/log/-', value: 2 }]);
  const m1 = await sock.expect('action');
  const m2 = await sock.expect('action');
  sock.drop(); // nothing decided
  assert.equal(room.status, 'idle');
  assert.deepEqual(room.state, { c: 1, log: [1, 2] }, 'still shown while offline');
  const p3 = room.patch([{ op: 'add', path: '/log/-', value: 3 }]); // offline edit
  server.external(inc(10)); // seq 2, missed
  const { sock: s2, sub } = await reconnect(net, server);
  assert.deepEqual(sub.since, { seq: 1, checksum: server.log[0].checksum });
  const r1 = await s2.expect('action');
  const r2 = await s2.expect('action');
  const r3 = await s2.expect('action');
  assert.deepEqual([r1.n, r2.n, r3.n], [m1.n, m2.n, 3]);
  assert.deepEqual(r1.action, m1.action);
  assert.equal(r2.dep, m2.dep);
  assert.equal(r3.dep, 2);
  for (const r of [r1, r2, r3]) s2.reply(r, server.decide(r, 'me'));
  await Promise.all([p1, p2, p3]);
  assert.deepEqual(room.state, { c: 11, log: [1, 2, 3] });
  assert.deepEqual(server.state, room.state);
  assert.equal(room.checksum, server.checksum);
  await conn.close();
});

test('actions applied while we were away are confirmed by the catch-up entries, not resent', async () => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, memoryStorage(), server);
  const p1 = room.patch(inc(1));
  const p2 = room.patch(inc(2));
  const m1 = await sock.expect('action');
  const m2 = await sock.expect('action');
  server.decide(m1, 'me'); // applied (seq 1) but the ack never arrives
  sock.drop();
  assert.deepEqual(room.state, { c: 3 });
  const { sock: s2 } = await reconnect(net, server);
  // the actions reply carried our n=1: confirmed; only n=2 is resent
  assert.equal((await p1).seq, 1);
  const r = await s2.expect('action');
  assert.equal(r.n, m2.n);
  assert.equal(s2.log.filter((x) => x.type === 'action').length, 1);
  s2.reply(r, server.decide(r, 'me'));
  await p2;
  assert.deepEqual(room.state, { c: 3 }, 'applied once each');
  assert.equal(server.state.c, 3);
  await conn.close();
});

test('after a snapshot catch-up, decided-but-unknown actions are in doubt: hidden, resent, answered from the server memory', async () => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, memoryStorage(), server);
  const states = [];
  room.subscribe((s) => states.push(s));
  const p1 = room.patch(inc(1));
  const m1 = await sock.expect('action');
  sock.reply(m1, server.decide(m1, 'me')); // acked: p2 is independent of it
  await p1;
  const p2 = room.patch(inc(10)); // applied, ack lost
  const p3 = room.patch([{ op: 'test', path: '/c', value: 99 }]); // rejected, reject lost (dep n=2)
  const p4 = room.patch(inc(100)); // never reaches the server (dep n=3)
  const m2 = await sock.expect('action');
  const m3 = await sock.expect('action');
  await sock.expect('action');
  server.decide(m2, 'me');
  server.decide(m3, 'me');
  sock.drop();
  states.length = 0;
  const { sock: s2 } = await reconnect(net, server, { forceSnapshot: true });
  // the snapshot (c=11) holds n=2; n=2 and n=3 are below next_n=4: in doubt,
  // so n=2 is not applied a second time on top (that would show c=21);
  // n=4 is still shown on top
  assert.deepEqual(room.state, { c: 111 });
  for (const s of states) assert.ok(s.c !== 21 && s.c !== 121, `never applied twice: ${JSON.stringify(s)}`);
  const rs = [await s2.expect('action'), await s2.expect('action'), await s2.expect('action')];
  assert.deepEqual(rs.map((r) => r.n), [2, 3, 4]);
  const answers = rs.map((r) => server.decide(r, 'me'));
  assert.equal(answers[0].duplicate, true);
  assert.equal(answers[1].duplicate, true);
  assert.equal(answers[1].code, 'test_failed');
  assert.equal(answers[2].code, 'after_reject', 'the server cascades too');
  rs.forEach((r, i) => s2.reply(r, answers[i]));
  const a2 = await p2;
  assert.equal(a2.duplicate, true);
  assert.equal(a2.seq, 2);
  await assert.rejects(p3, (e) => e.code === 'test_failed');
  await assert.rejects(p4, (e) => e.code === 'after_reject');
  assert.deepEqual(room.state, { c: 11 });
  assert.deepEqual(server.state, { c: 11 });
  await conn.close();
});

test('an ack that arrives after a catch-up already confirmed the action changes nothing', async () => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, memoryStorage(), server);
  const p = room.patch(inc(1));
  const m = await sock.expect('action');
  const ack = server.decide(m, 'me'); // seq 1, ack held back
  server.external(inc(5)); // seq 2, its fwd lost
  sock.push(server.external(inc(5))); // seq 3: a gap -> sync
  const sync = await sock.expect('sync');
  sock.reply(sync, server.actionsSince(0, 'me')); // carries our n=1 at seq 1
  assert.equal((await p).seq, 1, 'confirmed by the catch-up entry');
  sock.reply(m, ack); // the (late) ack: ignored
  sock.reply(m, { ...ack, duplicate: true }); // and a duplicate of it
  assert.deepEqual(room.state, { c: 11 });
  assert.equal(room.seq, 3);
  assert.equal(room.pendingCount, 0);
  assert.equal(room.checksum, server.checksum);
  await conn.close();
});

test('a reload resends stored actions with the same client id and n; next_n continues numbering', async () => {
  const net = new FakeNet();
  const storage = memoryStorage();
  const server = new ServerRoom(ROOM, { c: 0 });
  // no client option: an id is generated and persisted
  const c1 = open(net, storage);
  const j1 = c1.join(ROOM);
  const { sock: s1 } = await reconnect(net, server, { client: undefined }).catch((e) => { throw e; });
  const room1 = await j1;
  const id = c1.client;
  assert.match(id, /^c-[0-9a-f]{32}$/);
  assert.equal(s1.client, id);
  room1.patch(inc(1));
  room1.patch(inc(2));
  const m1 = await s1.expect('action');
  await s1.expect('action');
  server.decide(m1, id); // n=1 applied, ack lost; n=2 never arrived
  // the tab crashes: no close; a new page load with the same storage
  s1.drop();
  await c1.close();
  const net2 = new FakeNet();
  const c2 = open(net2, storage);
  const j2 = c2.join(ROOM);
  const s2 = await net2.nextSocket();
  const hello = await s2.handshake();
  assert.equal(hello.client, id, 'same client id after the reload');
  const sub = await s2.expect('subscribe');
  assert.equal(sub.since, undefined, 'no confirmed state survives a reload: snapshot');
  s2.reply(sub, server.snapshot(id));
  const room2 = await j2;
  assert.deepEqual(room2.state, { c: 3 }, 'n=1 in the snapshot (in doubt, hidden), n=2 pending on top');
  const r1 = await s2.expect('action');
  const r2 = await s2.expect('action');
  assert.deepEqual([r1.n, r2.n], [1, 2]);
  s2.reply(r1, server.decide(r1, id));
  s2.reply(r2, server.decide(r2, id));
  await room2.flush();
  assert.deepEqual(server.state, { c: 3 });
  assert.equal(room2.pendingCount, 0);
  // a third action numbers on
  room2.patch(inc(1));
  assert.equal((await s2.expect('action')).n, 3);
  await c2.close();

  // a device that lost its storage but reuses the id continues above next_n
  const net3 = new FakeNet();
  const c3 = open(net3, memoryStorage(), { client: id });
  const j3 = c3.join(ROOM);
  const s3 = await net3.nextSocket();
  await s3.handshake();
  s3.reply(await s3.expect('subscribe'), { ...server.snapshot(id), next_n: 8 });
  const room3 = await j3;
  room3.patch(inc(1));
  assert.equal((await s3.expect('action')).n, 8);
  await c3.close();
});

test('storage holds exactly the unacked actions and the counter', async () => {
  const net = new FakeNet();
  const storage = memoryStorage();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, storage, server);
  const key = `movex:me:${ROOM}`;
  room.patch(inc(1));
  room.patch(inc(2));
  const m = await sock.expect('action');
  let rec = JSON.parse(storage.getItem(key)); // written before anything was sent
  assert.deepEqual(rec.pending.map((p) => p.n), [1, 2]);
  assert.equal(rec.next, 3);
  assert.deepEqual(rec.pending[1].dep, [1], 'both touch /c: the second depends on the first');
  sock.reply(m, server.decide(m, 'me'));
  await until(() => JSON.parse(storage.getItem(key)).pending.length === 1, 'the ack is saved (within 50 ms)');
  rec = JSON.parse(storage.getItem(key));
  assert.deepEqual(rec.pending.map((p) => p.n), [2]);
  await conn.close();
  rec = JSON.parse(storage.getItem(key));
  assert.deepEqual(rec.pending.map((p) => p.n), [2], 'close without flush keeps it queued');
});

test('a burst of offline dispatches costs one storage write, and every action is stored before it is sent', async () => {
  const net = new FakeNet();
  const mem = memoryStorage();
  let writes = 0;
  const storage = { ...mem, setItem: (k, v) => { writes++; mem.setItem(k, v); } };
  const server = new ServerRoom(ROOM, { list: [] }, { fast: true });
  const { conn, sock, room } = await joined(net, storage, server);
  sock.drop();
  writes = 0;
  const t0 = performance.now();
  for (let i = 0; i < 1000; i++) room.patch([{ op: 'add', path: '/list/-', value: i }]);
  const dt = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 80));
  assert.ok(writes <= 2, `${writes} writes`);
  assert.equal(JSON.parse(mem.getItem(`movex:me:${ROOM}`)).pending.length, 1000);
  assert.equal(room.state.list.length, 1000);
  console.log(`# 1000 offline dispatches: ${dt.toFixed(0)} ms, ${writes} storage write(s)`);
  // online: each action is in storage when it goes out (the 1000 queued
  // ones are; a new one is checked as it is sent)
  const s2 = await net.nextSocket();
  const stored = () => new Set(JSON.parse(mem.getItem(`movex:me:${ROOM}`)).pending.map((p) => p.n));
  const origSend = s2.send.bind(s2);
  let unstored = 0;
  s2.send = (text) => { const m = JSON.parse(text); if (m.type === 'action' && m.n > 1000 && !stored().has(m.n)) unstored++; origSend(text); };
  await s2.handshake();
  const sub = await s2.expect('subscribe');
  s2.reply(sub, server.actionsSince(sub.since.seq, 'me'));
  for (let i = 0; i < 1000; i++) { const m = await s2.expect('action'); s2.reply(m, server.decide(m, 'me')); }
  room.patch([{ op: 'add', path: '/list/-', value: 'last' }]);
  const last = await s2.expect('action');
  s2.reply(last, server.decide(last, 'me'));
  await room.flush();
  assert.equal(unstored, 0);
  assert.equal(room.state.list.length, 1001);
  await conn.close();
});

test('close({flush: true}) waits for acks; close() settles the rest as "closed" (kept in storage)', async () => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, memoryStorage(), server);
  const p = room.patch(inc(1));
  let closed = false;
  const c = conn.close({ flush: true }).then(() => { closed = true; });
  await tick();
  assert.equal(closed, false);
  const m = await sock.expect('action');
  sock.reply(m, server.decide(m, 'me'));
  await c;
  assert.equal((await p).seq, 1);
  assert.equal(conn.status, 'closed');

  const net2 = new FakeNet();
  const b = await joined(net2, memoryStorage(), new ServerRoom(ROOM, {}));
  const q = b.room.patch([{ op: 'add', path: '/a', value: 1 }]);
  await b.conn.close();
  await assert.rejects(q, (e) => e.code === 'closed');
  await assert.rejects(b.conn.flush(), (e) => e.code === 'closed');
});

test('unavailable: the action is not decided; it is resent later (same n when nothing else was decided)', async () => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, memoryStorage(), server);
  const errors = [];
  conn.on('error', (e) => errors.push(e.code));
  const p = room.patch(inc(1));
  const m = await sock.expect('action');
  sock.reply(m, { type: 'reject', room: ROOM, n: m.n, code: 'unavailable', message: 'disk full', seq: 0, checksum: server.checksum });
  const again = await sock.expect('action');
  assert.equal(again.n, m.n);
  sock.reply(again, server.decide(again, 'me'));
  assert.equal((await p).seq, 1);
  assert.deepEqual(errors, ['unavailable']);
  await conn.close();
});

test('an unavailable action is renumbered when a later n was decided meanwhile', async () => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, memoryStorage(), server);
  const pa = room.patch(inc(1));
  const pb = room.patch([{ op: 'replace', path: '/c', value: 5 }]); // dep a (both touch /c)
  const ma = await sock.expect('action');
  const mb = await sock.expect('action');
  sock.reply(ma, { type: 'reject', room: ROOM, n: ma.n, code: 'unavailable', message: 'x', seq: 0, checksum: server.checksum });
  // b was decided while a was not: movexd rejects it (its dep was never decided)
  sock.reply(mb, server.decide(mb, 'me'));
  await assert.rejects(pb, (e) => e.code === 'bad_dep');
  const retry = await sock.expect('action');
  assert.equal(retry.n, 3, 'n=1 can no longer be applied: renumbered above the decided n=2');
  assert.equal(retry.dep, undefined);
  sock.reply(retry, server.decide(retry, 'me'));
  assert.equal((await pa).n, 3);
  assert.deepEqual(room.state, { c: 1 });
  await conn.close();
});

test('an unavailable action is not "in doubt" after a reconnect: it is renumbered, not lost as too_old', async () => {
  const net = new FakeNet();
  const storage = memoryStorage();
  const server = new ServerRoom(ROOM, { c: 0 });
  // the first delay (the retry of the unavailable action) is long; the
  // reconnect after it is immediate
  let calls = 0;
  const { conn, sock, room } = await joined(net, storage, server, { backoff: { base: 10000, cap: 10000 }, random: () => (calls++ === 0 ? 0.99 : 0) });
  const pa = room.patch(inc(1));
  const pb = room.patch([{ op: 'replace', path: '/c', value: 5 }]); // dep a
  const ma = await sock.expect('action');
  const mb = await sock.expect('action');
  sock.reply(ma, { type: 'reject', room: ROOM, n: ma.n, code: 'unavailable', message: 'disk full', seq: 0, checksum: server.checksum });
  sock.reply(mb, server.decide(mb, 'me')); // bad_dep: n=2 decided
  await assert.rejects(pb, (e) => e.code === 'bad_dep');
  await until(() => JSON.parse(storage.getItem(`movex:me:${ROOM}`)).pending[0].u === true, 'persisted as undecided');
  sock.drop(); // before the (long) retry
  const { sock: s2 } = await reconnect(net, server); // next_n = 3 > 1
  const r = await s2.expect('action');
  assert.equal(r.n, 3, 'renumbered above next_n instead of resent as n=1 (which would be too_old)');
  s2.reply(r, server.decide(r, 'me'));
  assert.equal((await pa).n, 3);
  assert.deepEqual(room.state, { c: 1 });
  await conn.close();
});

test('while an unavailable action waits for its retry, later actions wait behind it (order kept)', async () => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, memoryStorage(), server, { backoff: { base: 40, cap: 40 }, random: () => 0.99 });
  const pa = room.patch(inc(1));
  const ma = await sock.expect('action');
  sock.reply(ma, { type: 'reject', room: ROOM, n: ma.n, code: 'unavailable', message: 'x', seq: 0, checksum: server.checksum });
  const pb = room.patch(inc(2));
  await tick();
  assert.equal(sock.inbox.length, 0, 'nothing sent before the retry');
  const r1 = await sock.expect('action');
  const r2 = await sock.expect('action');
  assert.deepEqual([r1.n, r2.n, r2.dep], [1, 2, 1]);
  sock.reply(r1, server.decide(r1, 'me'));
  sock.reply(r2, server.decide(r2, 'me'));
  await Promise.all([pa, pb]);
  assert.deepEqual(room.state, { c: 3 });
  await conn.close();
});

test('a silent server is detected by ping timeouts and the client reconnects', async () => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const conn = open(net, memoryStorage(), { client: 'me', ping: { interval: 20, timeout: 30 } });
  const j = conn.join(ROOM);
  const { sock } = await reconnect(net, server);
  const room = await j;
  const ping = await sock.expect('ping');
  sock.reply(ping, { type: 'pong' });
  await sock.expect('ping'); // never answered: the socket is given up
  const { sock: s2 } = await reconnect(net, server);
  assert.notEqual(s2, sock);
  assert.equal(room.status, 'live');
  await conn.close();
});

test('a connection attempt that never gets a welcome is abandoned after connectTimeout', async () => {
  const net = new FakeNet();
  const conn = open(net, memoryStorage(), { client: 'me', connectTimeout: 30 });
  const s1 = await net.nextSocket();
  s1.accept(); // TCP + upgrade ok, then silence (e.g. a stopped server)
  await s1.expect('hello');
  const s2 = await net.nextSocket();
  await s2.handshake();
  assert.equal(conn.status, 'open');
  await conn.close();
});

// The connection stopped for good after `sockets` sockets: closed, no retry.
async function assertStopped(conn, net, sockets) {
  assert.equal(conn.status, 'closed');
  await tick();
  assert.equal(net.sockets.length, sockets, 'never retried with a refused token');
}

test('hello refused with a static token: error event, no retry, status closed, join rejects with unauthorized', async () => {
  const net = new FakeNet();
  const conn = open(net, memoryStorage(), { client: 'me', token: 'bad' });
  const errors = [];
  conn.on('error', (e) => errors.push(e.code));
  const joined = conn.join(ROOM);
  const s1 = await net.nextSocket();
  s1.accept();
  await s1.expect('hello');
  s1.push({ type: 'error', code: 'unauthorized', message: 'bad token' });
  await assert.rejects(joined, (e) => e instanceof MovexError && e.code === 'unauthorized' && /bad token/.test(e.message));
  assert.deepEqual(errors, ['unauthorized']);
  await assertStopped(conn, net, 1);
  await assert.rejects(conn.join('todo:other'), (e) => e.code === 'unauthorized', 'later joins get the same error');
  await conn.close();
});

test('a 4001 close with a static token stops and reports (the token expired on a live connection)', async () => {
  const net = new FakeNet();
  const conn = open(net, memoryStorage(), { client: 'me', token: 'static' });
  const errors = [];
  conn.on('error', (e) => errors.push(`${e.code}:${e.closeCode}`));
  const s1 = await net.nextSocket();
  await s1.handshake();
  s1.drop(4001);
  await until(() => conn.status === 'closed', 'closed for good');
  assert.deepEqual(errors, ['unauthorized:4001']);
  await assertStopped(conn, net, 1);
  await conn.close();
});

test('a token function is called again after a refusal and a 4001; refused twice in a row it stops', async () => {
  const net = new FakeNet();
  let k = 0;
  const conn = open(net, memoryStorage(), { client: 'me', token: async () => `t${++k}` });
  const errors = [];
  conn.on('error', (e) => errors.push(e.code));
  const s1 = await net.nextSocket();
  s1.accept();
  assert.equal((await s1.expect('hello')).token, 't1');
  s1.push({ type: 'error', code: 'unauthorized', message: 'expired' });
  const s2 = await net.nextSocket();
  await s2.handshake();
  assert.equal(s2.log[0].token, 't2');
  s2.drop(4001); // on a live connection
  const s3 = await net.nextSocket();
  s3.accept();
  assert.equal((await s3.expect('hello')).token, 't3');
  const joined = conn.join(ROOM);
  // the fresh token is refused too (two refusals without a welcome between)
  s3.push({ type: 'error', code: 'unauthorized', message: 'still bad' });
  await assert.rejects(joined, (e) => e.code === 'unauthorized' && /still bad/.test(e.message));
  assert.deepEqual(errors, ['unauthorized', 'unauthorized', 'unauthorized']);
  await assertStopped(conn, net, 3);
  await conn.close();
});

test('a token function is called again before the token expires, and the connection renewed with it', async () => {
  const net = new FakeNet();
  let k = 0;
  const b64u = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  // exp 2 s ahead: renewed at 90% of the remaining lifetime (about 1.8 s)
  const token = async () => `${b64u({ alg: 'HS256' })}.${b64u({ sub: 'me', exp: Math.floor(Date.now() / 1000) + 2, k: ++k })}.sig`;
  const conn = open(net, memoryStorage(), { client: 'me', token });
  const s1 = await net.nextSocket();
  await s1.handshake();
  const s2 = await net.nextSocket();
  const hello = await s2.handshake();
  assert.equal(JSON.parse(Buffer.from(hello.token.split('.')[1], 'base64url')).k, 2);
  assert.equal(k, 2, 'called once for the renewal (not again by the new socket)');
  await conn.close();
});

test('token may be a function (called for every connection)', async () => {
  const net = new FakeNet();
  let k = 0;
  const conn = open(net, memoryStorage(), { client: 'me', token: async () => `t${++k}` });
  const s1 = await net.nextSocket();
  s1.accept();
  assert.equal((await s1.expect('hello')).token, 't1');
  s1.drop();
  const s2 = await net.nextSocket();
  s2.accept();
  assert.equal((await s2.expect('hello')).token, 't2');
  await conn.close();
});

test('a room deleted on the server: pending actions rejected, room left', async () => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, memoryStorage(), server);
  const p = room.patch(inc(1));
  await sock.expect('action');
  sock.push({ type: 'error', room: ROOM, code: 'no_such_room', message: 'the room was deleted' });
  await assert.rejects(p, (e) => e.code === 'no_such_room');
  assert.equal(room.status, 'left');
  assert.equal(conn.room(ROOM), undefined);
  await conn.close();
});

test('leave() unsubscribes; unacked actions are resent at the next join', async () => {
  const net = new FakeNet();
  const storage = memoryStorage();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn, sock, room } = await joined(net, storage, server);
  const p = room.patch(inc(1));
  const m = await sock.expect('action');
  await room.leave();
  await assert.rejects(p, (e) => e.code === 'left');
  assert.equal((await sock.expect('unsubscribe')).room, ROOM);
  server.decide(m, 'me'); // it was applied after all; the ack is ignored
  const j = conn.join(ROOM);
  const sub = await sock.expect('subscribe');
  sock.reply(sub, server.snapshot('me'));
  const again = await j;
  assert.notEqual(again, room);
  assert.deepEqual(again.state, { c: 1 }, 'n=1 in doubt: not applied twice');
  const r = await sock.expect('action');
  assert.equal(r.n, m.n);
  sock.reply(r, server.decide(r, 'me'));
  await again.flush();
  assert.deepEqual(again.state, { c: 1 });
  await conn.close();
});

test('client ids: one per live tab with Web Locks; a closed tab\'s id is adopted', async () => {
  // a minimal LockManager (ifAvailable only)
  const held = new Set();
  const locks = {
    request(name, opts, cb) {
      if (held.has(name)) return Promise.resolve(cb(null));
      held.add(name);
      return Promise.resolve(cb({ name })).finally(() => held.delete(name));
    },
  };
  const hadNavigator = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  Object.defineProperty(globalThis, 'navigator', { value: { locks }, configurable: true, writable: true });
  try {
    const storage = memoryStorage();
    const net = new FakeNet();
    const a = open(net, storage);
    const sa = await net.nextSocket();
    await sa.handshake();
    const b = open(net, storage);
    const sb = await net.nextSocket();
    await sb.handshake();
    assert.notEqual(a.client, b.client, 'two live tabs never share an id');
    assert.deepEqual(JSON.parse(storage.getItem('movex:clients')), [a.client, b.client]);
    await a.close();
    await tick();
    const c = open(net, storage);
    const sc = await net.nextSocket();
    await sc.handshake();
    assert.equal(c.client, a.client, 'the free id is reused (and its stored actions resent)');
    await b.close();
    await c.close();
  } finally {
    if (hadNavigator) Object.defineProperty(globalThis, 'navigator', hadNavigator);
    else delete globalThis.navigator;
  }
});

// A LockManager with what movex.js uses: exclusive locks, ifAvailable, a
// queue of waiters, AbortSignal. A lock is held until its callback's promise
// settles.
function fakeLocks() {
  const holders = new Set();
  const queues = new Map();
  const grant = (name, w) => {
    holders.add(name);
    Promise.resolve().then(() => w.cb({ name })).then(
      (v) => { release(name); w.resolve(v); },
      (e) => { release(name); w.reject(e); });
  };
  const release = (name) => {
    holders.delete(name);
    const next = queues.get(name)?.shift();
    if (next) grant(name, next);
  };
  return {
    holders,
    queues,
    request(name, opts, cb) {
      return new Promise((resolve, reject) => {
        const w = { cb, resolve, reject };
        if (!holders.has(name)) return grant(name, w);
        if (opts.ifAvailable) return Promise.resolve().then(() => cb(null)).then(resolve, reject);
        if (!queues.has(name)) queues.set(name, []);
        queues.get(name).push(w);
        opts.signal?.addEventListener('abort', () => {
          const q = queues.get(name);
          if (q.includes(w)) { q.splice(q.indexOf(w), 1); reject(new Error('AbortError')); }
        });
        return undefined;
      });
    },
  };
}

async function withLocks(fn) {
  const locks = fakeLocks();
  const hadNavigator = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  Object.defineProperty(globalThis, 'navigator', { value: { locks }, configurable: true, writable: true });
  try {
    await fn(locks);
  } finally {
    if (hadNavigator) Object.defineProperty(globalThis, 'navigator', hadNavigator);
    else delete globalThis.navigator;
  }
}

test('an explicit client id in use by another tab: the second connection fails with client_in_use (default)', () => withLocks(async (locks) => {
  const net = new FakeNet();
  const a = open(net, memoryStorage(), { client: 'zed' });
  const sa = await net.nextSocket();
  await sa.handshake();
  assert.ok(locks.holders.has('movex-client:zed'), 'the first holds the id\'s lock');
  const b = open(net, memoryStorage(), { client: 'zed' });
  const errors = [], statuses = [];
  b.on('error', (e) => errors.push(e.code));
  b.on('status', (s) => statuses.push(s));
  await until(() => b.status === 'closed', 'the second connection to give up');
  await assert.rejects(b.join(ROOM), (e) => e.code === 'client_in_use' && /zed/.test(e.message));
  assert.deepEqual(errors, ['client_in_use']);
  assert.deepEqual(statuses, ['closed']);
  await tick();
  assert.equal(net.sockets.length, 1, 'the second never opened a socket');
  // another id is not affected
  const other = open(net, memoryStorage(), { client: 'amy' });
  assert.equal((await (await net.nextSocket()).handshake()).client, 'amy');
  await other.close();
  // once the first is closed, the id is free again
  await a.close();
  await tick();
  const c = open(net, memoryStorage(), { client: 'zed' });
  assert.equal((await (await net.nextSocket()).handshake()).client, 'zed');
  await c.close();
}));

test('clientLock "wait": the second connection waits (status "waiting", no socket) until the first is closed', () => withLocks(async (locks) => {
  const net = new FakeNet();
  const server = new ServerRoom(ROOM, { c: 0 });
  const { conn: a } = await joined(net, memoryStorage(), server, { client: 'zed' });
  server.external(inc(1)); // the room moves on meanwhile
  const b = open(net, memoryStorage(), { client: 'zed', clientLock: 'wait' });
  const statuses = [];
  b.on('status', (s) => statuses.push(s));
  await until(() => b.status === 'waiting', 'the second connection to wait');
  const jb = b.join(ROOM);
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(net.sockets.length, 1, 'no socket while waiting');
  assert.equal(locks.queues.get('movex-client:zed').length, 1);
  await a.close();
  const { sock } = await reconnect(net, server, { client: 'zed' });
  const rb = await jb;
  assert.equal(sock.client, 'zed');
  assert.equal(rb.seq, server.seq);
  assert.deepEqual(statuses, ['waiting', 'connecting', 'open']);
  await b.close();
  await tick();
  assert.equal(locks.holders.size, 0, 'released at close');
}));

test('clientLock "wait": close() while waiting stops the wait quietly', () => withLocks(async (locks) => {
  const net = new FakeNet();
  const a = open(net, memoryStorage(), { client: 'zed' });
  await (await net.nextSocket()).handshake();
  const b = open(net, memoryStorage(), { client: 'zed', clientLock: 'wait' });
  const errors = [];
  b.on('error', (e) => errors.push(e));
  await until(() => b.status === 'waiting', 'the second connection to wait');
  await b.close();
  assert.equal(b.status, 'closed');
  assert.equal(locks.queues.get('movex-client:zed').length, 0, 'no longer queued for the lock');
  await a.close();
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(net.sockets.length, 1, 'the closed connection never opens a socket');
  assert.deepEqual(errors, []);
  assert.equal(locks.holders.size, 0);
}));

test('clientLock false: no lock is taken (two connections may use the id; the app answers for it)', () => withLocks(async (locks) => {
  const net = new FakeNet();
  const a = open(net, memoryStorage(), { client: 'zed' });
  await (await net.nextSocket()).handshake();
  const b = open(net, memoryStorage(), { client: 'zed', clientLock: false });
  assert.equal((await (await net.nextSocket()).handshake()).client, 'zed');
  assert.equal(b.status, 'open');
  assert.throws(() => open(net, memoryStorage(), { client: 'zed', clientLock: 'maybe' }), TypeError);
  await a.close();
  await b.close();
  await tick();
  assert.equal(locks.holders.size, 0);
}));

test('randomClientId: 16 random bytes as hex, valid for hello', () => {
  const ids = new Set(Array.from({ length: 100 }, randomClientId));
  assert.equal(ids.size, 100);
  for (const id of ids) assert.match(id, /^[A-Za-z0-9_.:@-]{1,128}$/);
});
