// Lua reducers (issue #11, docs/REDUCERS.md) over real sockets: legal and
// illegal moves, effects in ack / fwd / catch-up, the rejection cascade,
// exactly-once on resend, init, and the shipped examples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checksum } from '../../client/movex.js';
import { withDaemon, connectHello, applyPatch, waitFor, ROOT } from './lib.mjs';

export const TTT = join(ROOT, 'examples/tictactoe.lua');
export const CHAT = join(ROOT, 'examples/chat.lua');

// A directory of reducer files for one test; removed by cleanup().
export function luaFiles(files) {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-lua-'));
  const paths = {};
  for (const [name, text] of Object.entries(files)) {
    paths[name] = join(dir, name);
    writeFileSync(paths[name], text);
  }
  return { dir, paths, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

// A conf with room types `types` ({ttt: '/abs/file.lua', ...}; extra lines
// per type in `lines`) and a json default.
export function luaConf(types, lines = {}) {
  let s = 'log_level info\nroom default {\n    reducer json\n    create_on_subscribe yes\n}\n';
  for (const [type, file] of Object.entries(types)) {
    s += `room ${type} {\n    reducer lua:${file}\n    create_on_subscribe yes\n${(lines[type] || []).map((l) => `    ${l}\n`).join('')}}\n`;
  }
  return s;
}

// A client that follows a room by applying the effects of its own acks and
// of fwds, checking every checksum.
export async function follower(d, id, room) {
  const c = await connectHello(d, id);
  const snap = await c.request({ type: 'subscribe', room });
  assert.equal(snap.type, 'snapshot', JSON.stringify(snap));
  c.state = snap.state;
  c.seq = snap.seq;
  c.n = snap.next_n;
  c.fwds = [];
  c.ws.on('message', (data) => {
    const m = JSON.parse(String(data));
    if (m.type !== 'fwd' || m.room !== room) return;
    assert.ok(Array.isArray(m.effects), `fwd carries effects: ${JSON.stringify(m)}`);
    assert.equal(m.seq, c.seq + 1);
    c.state = applyPatch(c.state, m.effects);
    c.seq = m.seq;
    assert.equal(checksum(c.state), m.checksum);
    c.fwds.push(m);
  });
  c.act = async (action, extra = {}) => {
    const n = extra.n ?? c.n++;
    const r = await c.request({ type: 'action', room, n, action, ...extra });
    if (r.type === 'ack' && !r.duplicate) {
      assert.ok(Array.isArray(r.effects), `ack carries effects: ${JSON.stringify(r)}`);
      assert.equal(r.seq, c.seq + 1);
      c.state = applyPatch(c.state, r.effects);
      c.seq = r.seq;
      assert.equal(checksum(c.state), r.checksum);
    }
    return r;
  };
  return c;
}

// Wait until every follower has applied seq (fwds are in flight).
export async function caughtUp(clients, seq) {
  await waitFor(() => clients.every((c) => c.seq >= seq), `followers at seq ${seq}`);
}

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
