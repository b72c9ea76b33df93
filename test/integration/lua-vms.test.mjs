// Lua VMs are bounded by the conf, not by clients (docs/REDUCERS.md): every
// room type that only `room default` covers shares the default block's one
// VM, while a type with its own block keeps a VM of its own. A client that
// creates rooms of many distinct types over real sockets makes no new VMs
// (movexd_lua_vms stays at the number of Lua blocks) and the daemon's peak
// RSS (VmHWM) stays bounded; SIGHUP reloads each block's VM. Each VM here
// holds a 1 MiB ballast string, so a VM per type (the old design) would add
// >= TYPES MiB.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { withDaemon, connectHello, httpRequest } from './lib.mjs';
import { luaFiles } from './lua-lib.mjs';

const TYPES = 150;
const PER_CONN = 50;
const BALLAST = 'local pad = string.rep("x", 1024 * 1024)\n';
// an upvalue counter shows which rooms share a VM (upvalues live in the VM)
const R = `${BALLAST}local calls = 0\nlocal M = {}\nfunction M.reduce(state, action, ctx)\n`
  + '  calls = calls + 1\n  return {{op = "add", path = "/calls", value = calls + #pad - #pad}}\nend\nreturn M\n';

const hwmKiB = (pid) => Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const vms = async (d) => {
  const m = /^movexd_lua_vms (\d+)$/m.exec((await httpRequest(d, { path: '/metrics' })).body);
  assert.ok(m, 'movexd_lua_vms is in /metrics');
  return Number(m[1]);
};

test('room types under a default Lua block share one VM: VMs and RSS bounded by the conf, not by clients', async (t) => {
  const files = luaFiles({ 'r.lua': R });
  const f = files.paths['r.lua'];
  const conf = `room default {\n    reducer lua:${f}\n    create_on_subscribe yes\n}\n`
    + `room own {\n    reducer lua:${f}\n    create_on_subscribe yes\n}\n`;
  try {
    await withDaemon({ conf }, async (d) => {
      assert.equal(await vms(d), 0, 'no VM before the first Lua room');
      const own = await connectHello(d, 'olga');
      assert.equal((await own.request({ type: 'subscribe', room: 'own:1' })).type, 'snapshot');
      const c0 = await connectHello(d, 'mallory0');
      assert.equal((await c0.request({ type: 'subscribe', room: 't0:1' })).type, 'snapshot');
      assert.equal(await vms(d), 2, 'one VM for `room own`, one for `room default`');
      const base = hwmKiB(d.proc.pid);

      const conns = [c0];
      for (let i = 1; i < TYPES; i++) {
        if (i % PER_CONN === 0) conns.push(await connectHello(d, `mallory${i / PER_CONN}`));
        const s = await conns[conns.length - 1].request({ type: 'subscribe', room: `t${i}:1` });
        assert.equal(s.type, 'snapshot', JSON.stringify(s));
      }
      assert.equal(await vms(d), 2, `${TYPES} types under room default still make one VM`);
      const grown = hwmKiB(d.proc.pid) - base;
      t.diagnostic(`VmHWM growth for ${TYPES} types: ${grown} KiB`);
      assert.ok(grown < 48 * 1024, `VmHWM grew by ${grown} KiB for ${TYPES} types (a VM each would be >= ${TYPES} MiB)`);

      // types under default share the VM (one global counter); `own` has its own
      let n = 0;
      for (const [c, room] of [[c0, 't0:1'], [conns[1], 't50:1'], [conns[2], 't100:1']]) {
        const a = await c.request({ type: 'action', room, n: 1, action: { type: 'x' } });
        assert.equal(a.type, 'ack', JSON.stringify(a));
        assert.equal(a.effects[0].value, ++n, `${room} runs in the shared default VM`);
      }
      const o = await own.request({ type: 'action', room: 'own:1', n: 1, action: { type: 'x' } });
      assert.equal(o.effects[0].value, 1, 'the type with its own block has a separate VM');

      // SIGHUP reloads each block's one VM (the default block's included)
      writeFileSync(f, R.replace('value = calls +', 'value = 1000 + calls +'));
      const from = d.stderr.length;
      d.proc.kill('SIGHUP');
      await d.waitLog(/event=reducer_reloaded block=default /, undefined, from);
      await d.waitLog(/event=reducer_reloaded block=own /, undefined, from);
      const after = await conns[2].request({ type: 'action', room: 't120:1', n: 1, action: { type: 'x' } });
      assert.equal(after.effects[0].value, 1001, 'a type under default runs the reloaded file');
      assert.equal(await vms(d), 2, 'a reload makes no new VM');
      for (const c of [own, ...conns]) c.close();
    });
  } finally {
    files.cleanup();
  }
});
