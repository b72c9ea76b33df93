// The Lua sandbox over real sockets (docs/REDUCERS.md "Sandbox"): each
// attack in test/lua/attacks.lua is stopped with its code while the daemon,
// other rooms and other room types keep serving; effects that do not apply
// are bad_effects naming the op; SIGHUP reloads a changed file and refuses
// a broken one; movexd -t reports FILE:LINE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDaemon, connectHello, runDaemonToExit, ROOT, BIN } from './lib.mjs';
import { luaConf, luaFiles, follower, TTT } from './lua-lib.mjs';
import { spawnSync } from 'node:child_process';

const ATTACKS = join(ROOT, 'test/lua/attacks.lua');

const CASES = [
  ['loop', 'reducer_budget'], ['pcall_loop', 'reducer_budget'], ['xpcall_loop', 'reducer_budget'],
  ['coroutine_loop', 'reducer_budget'], ['index_loop', 'reducer_budget'], ['memory', 'reducer_memory'],
  ['rep', 'reducer_memory'], ['pattern', 'reducer_budget'], ['load', 'reducer_error'],
  ['require', 'reducer_error'], ['os_execute', 'reducer_error'], ['io_open', 'reducer_error'],
  ['debug_sethook', 'reducer_error'], ['string_dump', 'reducer_error'], ['gc', 'reducer_error'],
  ['write_state', 'reducer_error'], ['ret_function', 'bad_effects'], ['ret_nan', 'bad_effects'],
  ['ret_huge', 'bad_effects'], ['ret_cycle', 'bad_effects'],
  ['ret_bad_path', 'bad_effects'], ['ret_second_bad', 'bad_effects'], ['error', 'reducer_error'],
];

test('attacks are stopped with their code; the daemon, other rooms and room types are unaffected', async () => {
  // `many` may build a 10^6-op list (max_ops refuses it, not the budget)
  const conf = luaConf({ attack: ATTACKS, many: ATTACKS, ttt: TTT },
    { attack: ['reducer_memory 4m'], many: ['reducer_budget 100000000', 'reducer_memory 64m'] });
  await withDaemon({ conf }, async (d) => {
    const a = await follower(d, 'mallory', 'attack:1');
    // the room needs /n for the effects of "ok"
    const j = await connectHello(d, 'jay');
    assert.equal((await j.request({ type: 'subscribe', room: 'todo:1' })).type, 'snapshot');
    const t = await follower(d, 'tim', 'ttt:1');
    assert.equal((await t.act({ type: 'join' })).type, 'ack');
    let jn = 1;
    for (const [type, code] of CASES) {
      const r = await a.act({ type });
      assert.equal(r.type, 'reject', `${type}: ${JSON.stringify(r)}`);
      assert.equal(r.code, code, `${type}: ${JSON.stringify(r)}`);
      assert.ok(!r.message.includes(ROOT), `${type}: the message names no path: ${r.message}`);
      // a json room and another Lua room type still serve between attacks
      const p = await j.request({ type: 'action', room: 'todo:1', n: jn++, action: { type: 'patch', payload: [{ op: 'add', path: `/${type}`, value: 1 }] } });
      assert.equal(p.type, 'ack', JSON.stringify(p));
    }
    const m = await follower(d, 'mallory', 'many:1');
    const many = await m.act({ type: 'ret_many' });
    assert.equal(many.code, 'bad_effects');
    assert.match(many.message, /1000000 effects, over this room type's max_ops 1000/);
    m.close();
    const bad = await a.act({ type: 'ret_second_bad' });
    assert.match(bad.message, /op 1/, 'bad_effects names the failing op');
    // the attacked room's state is untouched and its VM still works
    const g = await a.request({ type: 'get', room: 'attack:1' });
    assert.equal(g.seq, 0);
    // a reject of the reducer cascades like any reject
    const loop = await a.act({ type: 'loop' });
    const dep = await a.act({ type: 'ok' }, { dep: a.n - 1 });
    assert.equal(loop.code, 'reducer_budget');
    assert.equal(dep.code, 'after_reject');
    assert.equal((await t.act({ type: 'move', payload: { square: 0 } })).type, 'ack');
    for (const c of [a, j, t]) c.close();
  });
});

const V1 = 'local M = {}\nfunction M.reduce() return {{op = "add", path = "/v", value = 1}} end\nreturn M\n';
const V2 = 'local M = {}\nfunction M.reduce() return {{op = "add", path = "/v", value = 2}} end\nreturn M\n';
const BROKEN = 'local M = {}\n\nfunction M.reduce(\nreturn M\n';

test('SIGHUP reloads a changed reducer file and refuses a broken one (the old reducer stays)', async () => {
  const files = luaFiles({ 'r.lua': V1 });
  try {
    await withDaemon({ conf: luaConf({ r: files.paths['r.lua'] }) }, async (d) => {
      const c = await follower(d, 'rita', 'r:1');
      assert.equal((await c.act({ type: 'x' })).effects[0].value, 1);
      writeFileSync(files.paths['r.lua'], BROKEN);
      let from = d.stderr.length;
      d.proc.kill('SIGHUP');
      await d.waitLog(/event=reload_refused .*r\.lua:4:/, undefined, from);
      assert.equal((await c.act({ type: 'x' })).effects[0].value, 1, 'the old reducer stays');
      writeFileSync(files.paths['r.lua'], V2);
      from = d.stderr.length;
      d.proc.kill('SIGHUP');
      await d.waitLog(/event=reducer_reloaded block=r /, undefined, from);
      assert.equal((await c.act({ type: 'x' })).effects[0].value, 2, 'the new file runs');
      c.close();
    });
  } finally {
    files.cleanup();
  }
});

test('movexd -t checks every reducer file and reports FILE:LINE; a broken file stops start-up', async () => {
  const files = luaFiles({ 'good.lua': V1, 'bad.lua': BROKEN });
  try {
    const confPath = join(files.dir, 'movexd.conf');
    writeFileSync(confPath, 'room a {\n    reducer lua:good.lua\n}\nroom b {\n    reducer lua:bad.lua\n}\n');
    const r = spawnSync(BIN, ['-t', '-c', confPath], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.ok(r.stderr.includes(`${files.paths['bad.lua']}:4:`), r.stderr);
    writeFileSync(confPath, 'room a {\n    reducer lua:good.lua\n}\n');
    const ok = spawnSync(BIN, ['-t', '-c', confPath], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    const start = await runDaemonToExit({ dir: join(files.dir, 'd'), conf: luaConf({ b: files.paths['bad.lua'] }) });
    assert.equal(start.code, 1);
    assert.ok(start.stderr.includes('bad.lua:4:'), start.stderr);
  } finally {
    files.cleanup();
  }
});
