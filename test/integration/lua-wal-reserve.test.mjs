// The WAL space reserved for an action covers its real record, effects
// included (docs/REDUCERS.md "Effects and the log"): a reducer whose effects
// are far larger than the action's message must not be acked on log space
// that was never reserved. With the disk full (FAULT=enospc; fault builds
// only) and the current segment too small for the record, the action is
// rejected `unavailable` with the room unchanged and n not used up; once
// the disk is back the same n is acked, and the effects survive kill -9.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, connectHello, withTimeout, ASAN, SLOW } from './lib.mjs';
import { luaFiles } from './lua-lib.mjs';

const BIG = 200000; // bytes of effects: far past the 64 KiB segment, from a ~100-byte message
const R = 'local M = {}\nfunction M.reduce(state, action, ctx)\n'
  + `  if action.type == "big" then return {{op = "add", path = "/big", value = string.rep("x", ${BIG})}} end\n`
  + '  return {{op = "add", path = "/small", value = 1}}\nend\nreturn M\n';

const skip = ASAN ? false : 'needs a build with -DMX_FAULT_INJECTION (MOVEXD_ASAN=1)';

test('effects larger than the message reserve WAL space for the real record: full disk -> unavailable, n kept, room unchanged', { skip }, async () => {
  const files = luaFiles({ 'r.lua': R });
  const conf = `wal_segment_bytes 64k\nfsync always\nroom big {\n    reducer lua:${files.paths['r.lua']}\n    create_on_subscribe yes\n}\n`;
  let d = await startDaemon({ conf, keepDir: true });
  try {
    let a = await connectHello(d, 'alice');
    assert.equal((await a.request({ type: 'subscribe', room: 'big:1' })).type, 'snapshot');
    assert.equal((await a.request({ type: 'action', room: 'big:1', n: 1, action: { type: 'small' } })).type, 'ack');
    const fault = join(d.dataDir, 'wal', 'FAULT');
    writeFileSync(fault, 'enospc\n');
    const from = d.stderr.length;
    let r;
    try {
      // (before the fix: decided and applied, then its ack waited forever on
      // a log append beyond the reservation)
      const p = a.request({ type: 'action', room: 'big:1', n: 2, action: { type: 'big' } });
      p.catch(() => {});
      const died = d.exited.then((x) => { throw new Error(`the daemon exited ${JSON.stringify(x)}:\n${d.stderr.slice(-3000)}`); });
      died.catch(() => {});
      r = await Promise.race([withTimeout(p, 5000 * SLOW, 'the big action is answered while the disk is full'), died]);
    } finally {
      rmSync(fault, { force: true });
    }
    assert.equal(r.type, 'reject', JSON.stringify(r).slice(0, 300));
    assert.equal(r.code, 'unavailable');
    assert.equal(r.seq, 1, 'the room did not move');
    assert.doesNotMatch(d.stderr.slice(from), /wal_reserve_failed/, 'nothing appended beyond a reservation');
    const g = await a.request({ type: 'get', room: 'big:1' });
    assert.equal(g.seq, 1);
    assert.equal(g.state.big, undefined, 'the refused effects were not applied');

    // the disk is back: the same n applies (it was not used up)
    const ok = await a.request({ type: 'action', room: 'big:1', n: 2, action: { type: 'big' } });
    assert.equal(ok.type, 'ack', JSON.stringify(ok).slice(0, 300));
    assert.equal(ok.seq, 2);
    a.close();

    // acked means durable: the record is in the log
    await d.kill();
    d = await startDaemon({ conf, dir: d.dir });
    a = await connectHello(d, 'alice');
    const after = await a.request({ type: 'get', room: 'big:1' });
    assert.equal(after.seq, 2);
    assert.equal(after.state.big.length, BIG);
    a.close();
  } finally {
    await d.stop().catch(() => {});
    d.cleanup();
    files.cleanup();
  }
});
