// Rooms whose reducer is not json (Lua reducers, docs/REDUCERS.md): an
// action without a prediction stays pending with no visible change and the
// state moves by the effects of acks and fwds; connect({predict}) and
// join(room, {predict}) show a guess at once, rebased on fwds and replaced by
// the server's effects. The server is played by hand (fake.mjs).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectRaw, memoryStorage } from '../movex.js';
import { FakeNet, ServerRoom, tick } from './fake.mjs';

const opened = [];
const connect = (...args) => { const c = connectRaw(...args); opened.push(c); return c; };
after(() => Promise.all(opened.map((c) => c.close())));

const ROOM = 'ttt:a';
const EMPTY = { board: ['', '', '', '', '', '', '', '', ''], turn: 'X' };
// what the server's tictactoe.lua emits for a move by X
const moveEffects = (sq, mark = 'X') => [
  { op: 'replace', path: `/board/${sq}`, value: mark },
  { op: 'replace', path: '/turn', value: mark === 'X' ? 'O' : 'X' },
];

async function setup({ connectOpts = {}, joinOpts = {} } = {}) {
  const net = new FakeNet();
  const conn = connect('ws://fake/ws', {
    WebSocket: net.WebSocket, storage: memoryStorage(), client: 'me', ping: false, backoff: { base: 1, cap: 2 }, ...connectOpts,
  });
  const sock = await net.nextSocket();
  await sock.handshake();
  const server = new ServerRoom(ROOM, EMPTY);
  const joined = conn.join(ROOM, joinOpts);
  sock.reply(await sock.expect('subscribe'), server.snapshot('me'));
  const room = await joined;
  return { net, conn, sock, server, room };
}

// The server decides m with `effects`; the ack carries them (as movexd's does).
function ackWith(server, m, effects) {
  const ack = server.apply(m.action, 'me', m.n, effects);
  return { ...ack, effects };
}

test('no prediction: the action stays pending without a change; the ack\'s effects move the state (no resync)', async () => {
  const { conn, sock, server, room } = await setup();
  const p = room.dispatch({ type: 'move', payload: { square: 4 } });
  await tick();
  assert.deepEqual(room.state, EMPTY, 'no optimistic change');
  assert.equal(room.pendingCount, 1);
  const m = await sock.expect('action');
  sock.reply(m, ackWith(server, m, moveEffects(4)));
  await p;
  assert.equal(room.state.board[4], 'X');
  assert.equal(room.state.turn, 'O');
  assert.equal(room.checksum, server.checksum);
  assert.equal(room.pendingCount, 0);
  await tick();
  assert.equal(sock.log.filter((x) => x.type === 'sync').length, 0, 'followed by effects, no sync');
  await conn.close();
});

test('connect({predict}): the guess shows at once; the server\'s different effects replace it', async () => {
  const predict = { move: (state, action) => moveEffects(action.payload.square) };
  const { conn, sock, server, room } = await setup({ connectOpts: { predict } });
  const p = room.dispatch({ type: 'move', payload: { square: 0 } });
  assert.equal(room.state.board[0], 'X', 'predicted');
  const m = await sock.expect('action');
  // the server decided otherwise (another rule): its effects win
  const eff = [{ op: 'replace', path: '/board/0', value: 'O' }, { op: 'replace', path: '/turn', value: 'X' }];
  sock.reply(m, ackWith(server, m, eff));
  await p;
  assert.equal(room.state.board[0], 'O');
  assert.equal(room.checksum, server.checksum);
  await tick();
  assert.equal(sock.log.filter((x) => x.type === 'sync').length, 0);
  await conn.close();
});

test('join(room, {predict}) overrides the connection\'s; a prediction is rebased on a fwd that lands first', async () => {
  const { conn, sock, server, room } = await setup({
    connectOpts: { predict: { move: () => { throw new Error('the room\'s predict is used'); } } },
    joinOpts: { predict: { move: (state, action) => moveEffects(action.payload.square, state.turn) } },
  });
  const p = room.dispatch({ type: 'move', payload: { square: 8 } });
  assert.equal(room.state.board[8], 'X');
  const m = await sock.expect('action');
  // another player's move is decided first and forwarded
  server.apply({ type: 'move', payload: { square: 2 } }, 'other', 1, moveEffects(2, 'X'));
  sock.push(server.lastFwd());
  await tick();
  // rebased: the guess now runs on the new state (O to move)
  assert.equal(room.state.board[2], 'X');
  assert.equal(room.state.board[8], 'O');
  sock.reply(m, ackWith(server, m, moveEffects(8, 'O')));
  await p;
  assert.deepEqual(room.state, server.state);
  assert.equal(room.checksum, server.checksum);
  await conn.close();
});
