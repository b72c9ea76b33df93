// Lua reducers (issue #11, docs/REDUCERS.md) over real sockets: legal and
// illegal moves, effects in ack / fwd / catch-up, the rejection cascade,
// exactly-once on resend, init, and the shipped examples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checksum } from '../../client/movex.js';
import { withDaemon, connectHello, applyPatch, startDaemon } from './lib.mjs';
import { TTT, CHAT, luaFiles, luaConf, follower, caughtUp } from './lua-lib.mjs';

test('tictactoe: init, join, legal and illegal moves, effects in ack and fwd, win, game_over', async () => {
  await withDaemon({ conf: luaConf({ ttt: TTT }) }, async (d) => {
    const room = 'ttt:g1';
    const x = await follower(d, 'alice', room);
    assert.deepEqual(x.state.board, ['', '', '', '', '', '', '', '', '']);
    assert.equal(x.state.turn, 'X');
    assert.equal(x.state.winner, null);
    const o = await follower(d, 'bob', room);
    assert.equal((await x.act({ type: 'join' })).type, 'ack');
    assert.equal((await o.act({ type: 'join' })).type, 'ack');
    await caughtUp([x], o.seq);
    assert.deepEqual(x.state.players, { X: 'alice', O: 'bob' });
    const eve = await follower(d, 'eve', room);
    let r = await eve.act({ type: 'join' });
    assert.equal(r.type, 'reject');
    assert.equal(r.code, 'room_full');
    assert.equal(r.message, 'both seats are taken');

    r = await o.act({ type: 'move', payload: { square: 4 } });
    assert.equal(r.code, 'not_your_turn');
    assert.equal(r.message, "it is X's turn");
    r = await x.act({ type: 'move', payload: { square: 4 } });
    assert.equal(r.type, 'ack');
    assert.deepEqual(r.effects, [
      { op: 'replace', path: '/board/4', value: 'X' },
      { op: 'inc', path: '/moves', value: 1 },
      { op: 'replace', path: '/turn', value: 'O' },
    ]);
    r = await o.act({ type: 'move', payload: { square: 4 } });
    assert.equal(r.code, 'square_taken');
    r = await o.act({ type: 'move', payload: { square: 9 } });
    assert.equal(r.code, 'bad_square');
    for (const [p, sq] of [[o, 0], [x, 3], [o, 1], [x, 5]]) {
      assert.equal((await p.act({ type: 'move', payload: { square: sq } })).type, 'ack');
    }
    await caughtUp([x, o], Math.max(x.seq, o.seq));
    assert.equal(x.state.winner, 'X');
    r = await o.act({ type: 'move', payload: { square: 8 } });
    assert.equal(r.code, 'game_over');
    // everyone followed by effects alone and agrees with the server
    const head = await eve.request({ type: 'get', room });
    await caughtUp([x, o, eve], head.seq);
    for (const c of [x, o, eve]) assert.deepEqual(c.state, head.state);
    assert.ok(eve.fwds.length >= 5);
    for (const c of [x, o, eve]) c.close();
  });
});

test('catch-up (actions) carries effects, time and seed; resend is exactly-once; cascade after a reducer reject', async () => {
  await withDaemon({ conf: luaConf({ chat: CHAT }) }, async (d) => {
    const room = 'chat:c1';
    const a = await follower(d, 'ann', room);
    const before = { seq: a.seq, checksum: checksum(a.state) };
    const t0 = Date.now();
    const r1 = await a.act({ type: 'say', payload: { text: 'hello' } });
    assert.equal(r1.type, 'ack');
    const msg = a.state.messages[0];
    assert.equal(msg.id, r1.seq);
    assert.equal(msg.from, 'ann');
    assert.ok(Math.abs(msg.time - t0) < 60000, `time stamped by the server: ${msg.time}`);
    // the same n again: the original ack, nothing applied twice
    const dup = await a.request({ type: 'action', room, n: a.n - 1, action: { type: 'say', payload: { text: 'hello' } } });
    assert.equal(dup.type, 'ack');
    assert.equal(dup.duplicate, true);
    assert.equal(dup.seq, r1.seq);
    assert.deepEqual(dup.effects, r1.effects, 'a duplicate ack repeats the effects while the log holds them');
    // a reducer reject uses up n; an action depending on it is after_reject
    const bad = await a.act({ type: 'say', payload: { text: '' } });
    assert.equal(bad.type, 'reject');
    assert.equal(bad.code, 'empty_message');
    const dep = await a.act({ type: 'say', payload: { text: 'after' } }, { dep: a.n - 1 });
    assert.equal(dep.code, 'after_reject');
    // resending the rejected n answers the same reject
    const again = await a.request({ type: 'action', room, n: a.n - 2, action: { type: 'say', payload: { text: '' } } });
    assert.equal(again.type, 'reject');
    assert.equal(again.code, 'empty_message');
    assert.equal(again.duplicate, true);
    assert.equal((await a.act({ type: 'say', payload: { text: 'two' } })).type, 'ack');
    // a client that was at `before` catches up by the logged effects
    const b = await connectHello(d, 'late');
    const cu = await b.request({ type: 'sync', room, since: { seq: before.seq, checksum: before.checksum } });
    assert.equal(cu.type, 'actions', JSON.stringify(cu));
    let st = { messages: [] };
    for (const e of cu.actions) {
      assert.ok(Array.isArray(e.effects));
      assert.equal(typeof e.time, 'number');
      assert.match(e.seed, /^[0-9a-f]{16}$/);
      st = applyPatch(st, e.effects);
      assert.equal(checksum(st), e.checksum);
    }
    assert.deepEqual(st, a.state);
    a.close();
    b.close();
  });
});

// A chat variant whose rules differ: another id scheme and text in capitals.
const CHAT_V2 = `
local M = {}
function M.init() return {messages = movex.array()} end
function M.reduce(state, action, ctx)
  return {{op = "add", path = "/messages/-", value = {id = "v2-" .. ctx.seq, text = string.upper(action.payload.text), r = ctx.random(1, 1000000)}}}
end
return M
`;

test('recovery after kill -9 applies the logged effects: the reducer file changed in between cannot change history', async () => {
  const files = luaFiles({ 'chat.lua': readFileSync(CHAT, 'utf8') });
  const dir = mkdtempSync(join(tmpdir(), 'movexd-lua-rec-'));
  const conf = luaConf({ chat: files.paths['chat.lua'] }).replace('log_level info', 'log_level info\nfsync always');
  try {
    let d = await startDaemon({ conf, dir });
    const room = 'chat:r1';
    const a = await follower(d, 'ann', room);
    for (let i = 0; i < 20; i++) assert.equal((await a.act({ type: 'say', payload: { text: `m${i}` } })).type, 'ack');
    const before = await a.request({ type: 'get', room });
    await d.kill('SIGKILL');
    // a different (valid) reducer now: replay must not run it
    writeFileSync(files.paths['chat.lua'], CHAT_V2);
    d = await startDaemon({ conf, dir });
    const b = await connectHello(d, 'ann');
    const after = await b.request({ type: 'get', room });
    assert.equal(after.seq, before.seq);
    assert.equal(after.checksum, before.checksum);
    assert.deepEqual(after.state, before.state);
    // new actions run the new file, and ann's n continues above the old ones
    const snap = await b.request({ type: 'subscribe', room });
    const r = await b.request({ type: 'action', room, n: snap.next_n, action: { type: 'say', payload: { text: 'new' } } });
    assert.equal(r.type, 'ack');
    assert.equal(r.effects[0].value.id, `v2-${before.seq + 1}`);
    assert.equal(r.effects[0].value.text, 'NEW');
    b.close();
    await d.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    files.cleanup();
  }
});

test('the tic-tac-toe demo page is served, and conf/lua-demo.conf (the examples) is valid', async () => {
  const { spawnSync } = await import('node:child_process');
  const { BIN, ROOT, httpRequest } = await import('./lib.mjs');
  const t = spawnSync(BIN, ['-t', '-c', join(ROOT, 'conf/lua-demo.conf')], { encoding: 'utf8' });
  assert.equal(t.status, 0, t.stderr);
  const conf = luaConf({ ttt: TTT }).replace('log_level info', `log_level info\nclient_dir ${join(ROOT, 'client')}`);
  await withDaemon({ conf }, async (d) => {
    const page = await httpRequest(d, { path: '/demo/tictactoe.html' });
    assert.equal(page.status, 200);
    assert.match(page.body, /\/demo\/tictactoe\.js/);
    const js = await httpRequest(d, { path: '/demo/tictactoe.js' });
    assert.equal(js.status, 200);
    assert.match(js.body, /predict:/);
  });
});

const INIT = `local M = {}
function M.init(params, ctx)
  if params.refuse then return nil, "no_thanks", "refused by init" end
  if params.boom then error("init failed") end
  return {size = params.size or 3, by = ctx.client}
end
function M.reduce() return {} end
return M
`;

test('init: create passes its state as params and gets the returned state; a refusal is an error with the reducer code', async () => {
  const files = luaFiles({ 'init.lua': INIT });
  try {
    await withDaemon({ conf: luaConf({ g: files.paths['init.lua'] }) }, async (d) => {
      const c = await connectHello(d, 'ivy');
      const made = await c.request({ type: 'create', room: 'g:1', state: { size: 5 } });
      assert.equal(made.type, 'created', JSON.stringify(made));
      const g = await c.request({ type: 'get', room: 'g:1' });
      assert.deepEqual(g.state, { size: 5, by: 'ivy' });
      assert.equal(g.checksum, checksum({ size: 5, by: 'ivy' }));
      const sub = await c.request({ type: 'subscribe', room: 'g:2' }); // create_on_subscribe: init({})
      assert.deepEqual(sub.state, { size: 3, by: 'ivy' });
      const no = await c.request({ type: 'create', room: 'g:3', state: { refuse: true } });
      assert.equal(no.type, 'error');
      assert.equal(no.code, 'no_thanks');
      assert.equal(no.message, 'refused by init');
      const boom = await c.request({ type: 'create', room: 'g:4', state: { boom: true } });
      assert.equal(boom.code, 'reducer_error');
      assert.match(boom.message, /^init\.lua:4: init failed/);
      assert.equal((await c.request({ type: 'get', room: 'g:3' })).code, 'no_such_room');
      c.close();
    });
  } finally {
    files.cleanup();
  }
});
