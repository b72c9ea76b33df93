// Cluster mode under hostile review (issue #14, brief r1): each test is a
// finding that was broken on main, with the exact scenario that showed it.
// One redis-server (no replica, no Sentinel) on a free loopback port and
// movexd nodes over it, stopped by PID in after().
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedisGroup, startNode, stopAll, checkInvariants, waitConverged } from './cluster-lib.mjs';
import { connectHello, httpRequest, waitFor } from './lib.mjs';

after(stopAll);

async function node(g, id, opts) {
  const d = await startNode(g, id, opts);
  await waitFor(async () => (await httpRequest(d, { path: '/readyz' })).status === 200, `${id} ready`);
  return d;
}

// A Lua reducer with a reject code of its own (docs/REDUCERS.md).
function luaRoom() {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-review-'));
  const path = join(dir, 'say.lua');
  writeFileSync(path, `local M = {}
function M.reduce(state, action, ctx)
  local text = type(action.payload) == "table" and action.payload.text
  if type(text) ~= "string" or #text == 0 then return nil, "empty_text2", "say something" end
  return {{op = "add", path = "/last", value = {text = text, seq = ctx.seq, t = ctx.time}}}
end
return M
`);
  return { global: ['room say {', `    reducer lua:${path}`, '    history 100', '}'] };
}

test('a Lua reducer\'s own reject code is the same on every node: the deciding one, another, and after a reload', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1', luaRoom());
  const b = await node(g, 'n2', luaRoom());
  const room = 'say:1';
  const ca = await connectHello(a, 'alice');
  await ca.request({ type: 'subscribe', room });
  const cb = await connectHello(b, 'bob');
  await cb.request({ type: 'subscribe', room });
  const say = (n, text) => ({ type: 'action', room, n, action: { type: 'say', payload: { text } } });
  const r1 = await ca.request(say(1, ''));
  assert.equal(r1.type, 'reject');
  assert.equal(r1.code, 'empty_text2');
  const ok = await ca.request(say(2, 'hi'));
  assert.equal(ok.type, 'ack', JSON.stringify(ok));
  // bob's node applied both entries (the reject, then the apply at seq 1)
  await waitConverged(g.primary.port, [a, b], [room]);
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
  // alice resends n=1 through the other node: the original reject, same code
  const c2 = await connectHello(b, 'alice');
  await c2.request({ type: 'subscribe', room });
  const d1 = await c2.request(say(1, ''));
  assert.equal(d1.type, 'reject', JSON.stringify(d1));
  assert.equal(d1.code, 'empty_text2', `resent on another node: ${JSON.stringify(d1)}`);
  // and bob's later actions still go through on that node (its replica took the entry)
  const ob = await cb.request(say(1, 'yo'));
  assert.equal(ob.type, 'ack', JSON.stringify(ob));
  assert.equal(ob.seq, 2);
  // a write on a that has to be re-decided (moved -> reload from Redis)
  // keeps the code too: alice's resend on her own node after that reload
  const again = await ca.request(say(3, 'x'));
  assert.equal(again.type, 'ack', JSON.stringify(again));
  const d2 = await ca.request(say(1, ''));
  assert.equal(d2.code, 'empty_text2', `resent after a reload: ${JSON.stringify(d2)}`);
  await waitConverged(g.primary.port, [a, b], [room]);
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
});
