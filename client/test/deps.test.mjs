// Precise dependencies: dep derived from the JSON Pointers a patch reads and
// writes, so that a reject cascades only to the pending actions built on
// the failed one. The server is played by hand (fake.mjs).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectRaw, memoryStorage, pathsOf, pathsOverlap } from '../movex.js';
import { FakeNet, ServerRoom, tick } from './fake.mjs';

const opened = [];
const connect = (...args) => { const c = connectRaw(...args); opened.push(c); return c; };
after(() => Promise.all(opened.map((c) => c.close())));

const ROOM = 'todo:deps';

async function setup(initial) {
  const net = new FakeNet();
  const storage = memoryStorage();
  const conn = connect('ws://fake/ws', { WebSocket: net.WebSocket, storage, client: 'me', ping: false, backoff: { base: 1, cap: 2 } });
  const sock = await net.nextSocket();
  await sock.handshake();
  const server = new ServerRoom(ROOM, initial);
  const joined = conn.join(ROOM);
  sock.reply(await sock.expect('subscribe'), server.snapshot('me'));
  return { conn, sock, server, room: await joined, storage };
}

const patch = (payload) => ({ type: 'patch', payload });

test('pathsOf: path and from (move, copy); array indexes stand for the array; non-patch actions touch everything', () => {
  assert.deepEqual(pathsOf(patch([{ op: 'replace', path: '/items/a/text', value: 'x' }])), ['/items/a/text']);
  assert.deepEqual(pathsOf(patch([{ op: 'move', from: '/a/b', path: '/c' }, { op: 'test', path: '/d', value: 1 }])).sort(), ['/a/b', '/c', '/d']);
  assert.deepEqual(pathsOf(patch([{ op: 'copy', from: '/x', path: '/x' }])), ['/x']);
  assert.deepEqual(pathsOf(patch([{ op: 'add', path: '/list/-', value: 1 }])), ['/list']);
  assert.deepEqual(pathsOf(patch([{ op: 'replace', path: '/list/3/done', value: true }])), ['/list']);
  assert.deepEqual(pathsOf(patch([{ op: 'replace', path: '/0', value: 1 }])), ['']);
  assert.deepEqual(pathsOf({ type: 'move', payload: { piece: 'e2' } }), ['']);
  assert.deepEqual(pathsOf(patch([])), ['']);
  assert.ok(pathsOverlap('/a', '/a/b'));
  assert.ok(pathsOverlap('/a/b', '/a'));
  assert.ok(pathsOverlap('', '/anything'));
  assert.ok(pathsOverlap('/a', '/a'));
  assert.ok(!pathsOverlap('/a', '/ab'), 'a prefix by tokens, not by characters');
  assert.ok(!pathsOverlap('/a/b', '/a/c'));
});

test('dep lists the pending actions whose paths overlap, without those implied by another', async () => {
  const { conn, sock, room } = await setup({ items: { x: { text: 'x', done: false }, y: { text: 'y', done: false } } });
  room.patch([{ op: 'replace', path: '/items/x/text', value: 'X' }]); // 1
  room.patch([{ op: 'replace', path: '/items/y/done', value: true }]); // 2: independent of 1
  room.patch([{ op: 'replace', path: '/items/x/text', value: 'XX' }]); // 3: dep 1
  room.patch([{ op: 'remove', path: '/items/x' }]); // 4: dep 3 (1 is implied by 3)
  room.patch([{ op: 'add', path: '/items/z', value: {} }, { op: 'test', path: '/items/y/done', value: true }]); // 5: dep 2
  room.patch([{ op: 'replace', path: '/items', value: {} }]); // 6: dep 4 and 5 (both under /items)
  room.patch([{ op: 'add', path: '/other', value: 1 }]); // 7: none
  room.dispatch({ type: 'custom' }); // 8: not a patch - everything pending: 6 and 7
  room.patch([{ op: 'add', path: '/other2', value: 1 }], { dep: [2, 5] }); // 9: explicit list
  room.patch([{ op: 'add', path: '/other3', value: 1 }], { dep: 7 }); // 10: explicit n
  const ms = [];
  for (let i = 0; i < 10; i++) ms.push(await sock.expect('action'));
  assert.deepEqual(ms.map((m) => m.dep), [undefined, undefined, 1, 3, 2, [4, 5], undefined, [6, 7], [2, 5], 7]);
  await conn.close();
});

test('the offline scenario: a rename of an item another window deleted is rejected, the tick of another item is not', async () => {
  const { conn, sock, server, room } = await setup({ items: { x: { text: 'x', done: false }, y: { text: 'y', done: false } } });
  const rejects = [];
  room.on('reject', (e) => rejects.push(`${e.n}:${e.code}`));
  const rename = room.patch([{ op: 'replace', path: '/items/x/text', value: 'renamed' }]);
  const tickY = room.patch([{ op: 'replace', path: '/items/y/done', value: true }]);
  const mRename = await sock.expect('action');
  const mTick = await sock.expect('action');
  assert.equal(mTick.dep, undefined);
  // another client removed x first
  const fwd = server.apply({ type: 'patch', payload: [{ op: 'remove', path: '/items/x' }] }, 'other', 1);
  sock.push({ ...fwd, type: 'fwd', client: 'other', n: 1, action: { type: 'patch', payload: [{ op: 'remove', path: '/items/x' }] } });
  sock.reply(mRename, server.decide(mRename, 'me'));
  sock.reply(mTick, server.decide(mTick, 'me'));
  await assert.rejects(rename, (e) => e.code === 'bad_patch');
  assert.equal((await tickY).seq, 2);
  assert.deepEqual(rejects, ['1:bad_patch']);
  assert.deepEqual(room.state, { items: { y: { text: 'y', done: true } } });
  assert.equal(room.checksum, server.checksum);
  await conn.close();
});

test('a reject drops only the pending actions depending on it (transitively, through arrays of deps)', async () => {
  const { conn, sock, server, room } = await setup({ a: 0, b: 0, c: 0 });
  const rejects = [];
  room.on('reject', (e) => rejects.push(`${e.n}:${e.code}`));
  const p1 = room.patch([{ op: 'test', path: '/a', value: 99 }]); // fails
  const p2 = room.patch([{ op: 'inc', path: '/b', value: 1 }]); // independent
  const p3 = room.patch([{ op: 'inc', path: '/a', value: 1 }, { op: 'inc', path: '/b', value: 1 }]); // dep [1, 2]
  const p4 = room.patch([{ op: 'inc', path: '/c', value: 1 }], { dep: 3 }); // dep 3
  const p5 = room.patch([{ op: 'inc', path: '/c', value: 5 }], { dep: false });
  await tick();
  const m1 = await sock.expect('action');
  sock.reply(m1, server.decide(m1, 'me'));
  await assert.rejects(p1, (e) => e.code === 'test_failed');
  await assert.rejects(p3, (e) => e.code === 'after_reject' && /n=1/.test(e.message));
  await assert.rejects(p4, (e) => e.code === 'after_reject');
  assert.equal(room.pendingCount, 2, 'n=2 and n=5 stay');
  for (let i = 0; i < 4; i++) {
    const m = await sock.expect('action');
    sock.reply(m, server.decide(m, 'me'));
  }
  assert.deepEqual([(await p2).n, (await p5).n], [2, 5]);
  assert.deepEqual(rejects, ['1:test_failed', '3:after_reject', '4:after_reject']);
  assert.deepEqual(room.state, { a: 0, b: 1, c: 5 });
  await conn.close();
});

test('dispatch rejects a malformed dep option without using up n', async () => {
  const { conn, sock, room } = await setup({});
  for (const dep of [0, 1, 'x', [1, 2.5], Array.from({ length: 17 }, (_, i) => i + 1), null]) {
    await assert.rejects(room.patch([{ op: 'add', path: '/k', value: 1 }], { dep }), TypeError, JSON.stringify(dep));
  }
  room.patch([{ op: 'add', path: '/k', value: 1 }]);
  assert.equal((await sock.expect('action')).n, 1);
  await conn.close();
});
