// The library's presence API (room.presence.set/others, the "presence"
// event) and the browser's online/offline events, against a server played
// by hand (fake.mjs).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectRaw, memoryStorage, MovexError } from '../movex.js';
import { FakeNet, ServerRoom, tick, until } from './fake.mjs';

const opened = [];
const connect = (...args) => { const c = connectRaw(...args); opened.push(c); return c; };
after(() => Promise.all(opened.map((c) => c.close())));

const ROOM = 'todo:p';

// A subscribe reply with the others' presence.
async function subscribed(sock, server, presence = []) {
  const sub = await sock.expect('subscribe');
  sock.reply(sub, { ...server.snapshot('me'), presence });
}

async function setup(opts = {}) {
  const net = new FakeNet();
  const conn = connect('ws://fake/ws', {
    WebSocket: net.WebSocket, storage: memoryStorage(), client: 'me', ping: false, backoff: { base: 1, cap: 2 }, ...opts,
  });
  const sock = await net.nextSocket();
  sock.accept();
  await sock.expect('hello');
  sock.push({ type: 'welcome', client: 'me', conn: 5, server: 'fake', limits: {} });
  const server = new ServerRoom(ROOM, {});
  const joined = conn.join(ROOM);
  await subscribed(sock, server, [{ client: 'bob', conn: 2, state: { editing: 'x' } }]);
  return { net, conn, sock, server, room: await joined };
}

test('others come with the subscribe reply, then presence messages; the event reports the list', async () => {
  const { conn, sock, room } = await setup();
  assert.equal(conn.connId, 5, 'welcome.conn');
  assert.deepEqual(room.presence.others, [{ client: 'bob', conn: 2, state: { editing: 'x' } }]);
  const events = [];
  room.on('presence', (list) => events.push(list.map((p) => `${p.client}/${p.conn}:${JSON.stringify(p.state)}`)));
  sock.push({ type: 'presence', room: ROOM, client: 'carol', conn: 3, state: 1 });
  sock.push({ type: 'presence', room: ROOM, client: 'bob', conn: 2, state: { editing: 'y' } });
  sock.push({ type: 'presence', room: ROOM, client: 'bob', conn: 2, left: true });
  assert.deepEqual(events, [
    ['bob/2:{"editing":"x"}', 'carol/3:1'],
    ['bob/2:{"editing":"y"}', 'carol/3:1'],
    ['carol/3:1'],
  ]);
  await conn.close();
});

test('set: one request in flight, the latest value next; resolves at presence_ok; null clears', async () => {
  const { conn, sock, room } = await setup();
  const p1 = room.presence.set({ editing: 'a' });
  const p2 = room.presence.set({ editing: 'b' });
  const p3 = room.presence.set({ editing: 'c' });
  assert.deepEqual(room.presence.state, { editing: 'c' });
  const m1 = await sock.expect('presence');
  assert.deepEqual(m1.state, { editing: 'a' });
  assert.equal(m1.room, ROOM);
  await tick();
  assert.equal(sock.inbox.filter((m) => m.type === 'presence').length, 0, 'nothing else while one is in flight');
  sock.reply(m1, { type: 'presence_ok', room: ROOM });
  await p1;
  const m2 = await sock.expect('presence');
  assert.deepEqual(m2.state, { editing: 'c' }, 'b was superseded: only the latest goes');
  sock.reply(m2, { type: 'presence_ok', room: ROOM });
  await Promise.all([p2, p3]);
  const p4 = room.presence.set(null);
  const m3 = await sock.expect('presence');
  assert.equal(m3.state, null);
  sock.reply(m3, { type: 'presence_ok', room: ROOM });
  await p4;
  assert.equal(room.presence.state, null);
  await conn.close();
});

test('a refused presence rejects with the server\'s code; a value that is not JSON is a TypeError', async () => {
  const { conn, sock, room } = await setup();
  const p = room.presence.set('x'.repeat(10));
  const m = await sock.expect('presence');
  sock.reply(m, { type: 'error', code: 'too_large', message: 'over max_presence_bytes' });
  await assert.rejects(p, (e) => e instanceof MovexError && e.code === 'too_large');
  await assert.rejects(room.presence.set(10n), TypeError);
  await conn.close();
});

test('after a reconnect the others are cleared, then listed again, and our presence is shown again', async () => {
  const { net, conn, sock, server, room } = await setup();
  const p = room.presence.set({ here: true });
  sock.reply(await sock.expect('presence'), { type: 'presence_ok', room: ROOM });
  await p;
  const events = [];
  room.on('presence', (list) => events.push(list.length));
  sock.drop();
  assert.deepEqual(room.presence.others, [], 'nobody is known to be here while disconnected');
  const s2 = await net.nextSocket();
  await s2.handshake();
  await subscribed(s2, server, [{ client: 'dan', conn: 9, state: 'hi' }]);
  const again = await s2.expect('presence');
  assert.deepEqual(again.state, { here: true }, 'the server forgot it with the old connection');
  assert.deepEqual(room.presence.others, [{ client: 'dan', conn: 9, state: 'hi' }]);
  assert.deepEqual(events, [0, 1]);
  await conn.close();
});

test('subscribe(fn) calls fn with the current state first', async () => {
  const { conn, room } = await setup();
  const seen = [];
  room.subscribe((s) => seen.push(s));
  assert.deepEqual(seen, [room.state]);
  await conn.close();
});

// A stand-in for window's online/offline events.
function fakeNetwork() {
  const t = new EventTarget();
  let online = true;
  return {
    target: t,
    onLine: () => online,
    set(v) { online = v; t.dispatchEvent(new Event(v ? 'online' : 'offline')); },
  };
}

test('offline: the socket is dropped at once and the status says offline; online: reconnects at once', async () => {
  const network = fakeNetwork();
  const net = new FakeNet();
  const conn = connect('ws://fake/ws', {
    WebSocket: net.WebSocket, storage: memoryStorage(), client: 'me', ping: false,
    backoff: { base: 60000, cap: 60000 }, random: () => 0.99, network,
  });
  const statuses = [];
  conn.on('status', (s) => statuses.push(s));
  const s1 = await net.nextSocket();
  await s1.handshake();
  await until(() => conn.status === 'open', 'open');
  network.set(false);
  assert.equal(conn.status, 'offline');
  assert.equal(s1.readyState, 3, 'the old socket is closed');
  network.set(true);
  const s2 = await net.nextSocket(); // not after the one-minute backoff
  await s2.handshake();
  await until(() => conn.status === 'open', 'open again');
  assert.deepEqual(statuses, ['open', 'offline', 'reconnecting', 'open']);
  await conn.close();
  network.set(false);
  assert.equal(conn.status, 'closed', 'listeners removed at close');
});
