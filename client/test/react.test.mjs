// react.js (useRoom, usePresence) under a tiny fake of React's hooks
// (fake-react.mjs, mapped to 'react' by react-loader.mjs), against a server
// played by hand (fake.mjs).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { connect as connectRaw, memoryStorage } from '../movex.js';
import { FakeNet, ServerRoom, tick, until } from './fake.mjs';

register('./react-loader.mjs', import.meta.url);
const { useRoom, usePresence } = await import('../react.js');
const { mount } = await import('react');

const opened = [];
const connect = (...args) => { const c = connectRaw(...args); opened.push(c); return c; };
after(() => Promise.all(opened.map((c) => c.close())));

const ROOM = 'todo:react';

async function open() {
  const net = new FakeNet();
  const conn = connect('ws://fake/ws', { WebSocket: net.WebSocket, storage: memoryStorage(), client: 'me', ping: false, backoff: { base: 1, cap: 2 } });
  const sock = await net.nextSocket();
  await sock.handshake();
  return { net, conn, sock };
}

test('useRoom: joins, renders the state, re-renders on dispatch, ack (pendingCount) and fwd', async () => {
  const { conn, sock } = await open();
  const server = new ServerRoom(ROOM, { c: 0 });
  const app = mount(() => useRoom(conn, ROOM));
  assert.equal(app.result.room, null);
  assert.equal(app.result.state, undefined);
  const sub = await sock.expect('subscribe');
  sock.reply(sub, server.snapshot('me'));
  await until(() => app.result.room, 'joined');
  assert.deepEqual(app.result.state, { c: 0 });
  assert.equal(app.result.status, 'live');
  const p = app.result.room.patch([{ op: 'inc', path: '/c', value: 1 }]);
  await until(() => app.result.pendingCount === 1, 'pending shown');
  assert.deepEqual(app.result.state, { c: 1 }, 'optimistic');
  const m = await sock.expect('action');
  sock.reply(m, server.decide(m, 'me'));
  await p;
  await until(() => app.result.pendingCount === 0 && app.result.seq === 1, 'ack shown');
  sock.push(server.external([{ op: 'inc', path: '/c', value: 10 }]));
  await until(() => app.result.state.c === 11, 'fwd shown');
  app.unmount();
  await conn.close();
});

test('useRoom: a refused join shows the typed error', async () => {
  const { conn, sock } = await open();
  const app = mount(() => useRoom(conn, 'todo:missing'));
  const sub = await sock.expect('subscribe');
  sock.reply(sub, { type: 'error', code: 'no_such_room', message: 'no such room' });
  await until(() => app.result.error, 'error shown');
  assert.equal(app.result.error.code, 'no_such_room');
  assert.equal(app.result.room, null);
  app.unmount();
  await conn.close();
});

test('usePresence: the others as they come and go; the setter sends ours; unmount unsubscribes', async () => {
  const { conn, sock } = await open();
  const server = new ServerRoom(ROOM, {});
  const joined = conn.join(ROOM);
  const sub = await sock.expect('subscribe');
  sock.reply(sub, { ...server.snapshot('me'), presence: [{ client: 'ann', conn: 1, state: { editing: 'a' } }] });
  const room = await joined;
  const app = mount(() => usePresence(room));
  assert.deepEqual(app.result[0], [{ client: 'ann', conn: 1, state: { editing: 'a' } }]);
  sock.push({ type: 'presence', room: ROOM, client: 'bo', conn: 2, state: 'hi' });
  await until(() => app.result[0].length === 2, 'bo arrives');
  sock.push({ type: 'presence', room: ROOM, client: 'ann', conn: 1, left: true });
  await until(() => app.result[0].length === 1, 'ann leaves');
  assert.equal(app.result[0][0].client, 'bo');
  const done = app.result[1]({ editing: 'b' });
  const m = await sock.expect('presence');
  assert.deepEqual(m.state, { editing: 'b' });
  sock.reply(m, { type: 'presence_ok', room: ROOM });
  await done;
  const renders = app.renders;
  app.unmount();
  sock.push({ type: 'presence', room: ROOM, client: 'cy', conn: 3, state: 1 });
  await tick();
  assert.equal(app.renders, renders, 'no render after unmount');
  await conn.close();
});
