// "dep" as an array (docs/PROTOCOL.md "Dependencies"): an action may name
// up to 16 earlier actions of its client; all must be decided, any rejected
// one makes it after_reject, one never decided makes it bad_dep (n not used
// up), and a single integer stays valid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withDaemon, connectHello, patchAction } from './lib.mjs';

const add = (k, v = 1) => [{ op: 'add', path: `/${k}`, value: v }];
const FAIL = [{ op: 'test', path: '/missing', value: true }];

async function setup(d, room, client) {
  const c = await connectHello(d, client);
  const s = await c.request({ type: 'subscribe', room });
  assert.equal(s.type, 'snapshot', JSON.stringify(s));
  return c;
}

test('dep array: all acked applies; any rejected is after_reject naming it; the integer form still works', async () => {
  await withDaemon({}, async (d) => {
    const room = 'deps:a';
    const c = await setup(d, room, 'deps-a');
    assert.equal((await c.request(patchAction(room, 1, add('x')))).type, 'ack');
    const r2 = await c.request(patchAction(room, 2, FAIL));
    assert.equal(r2.code, 'test_failed');
    assert.equal((await c.request(patchAction(room, 3, add('y')))).type, 'ack');
    const a4 = await c.request(patchAction(room, 4, add('z'), { dep: [1, 3] }));
    assert.equal(a4.type, 'ack', `dep [1,3] both acked: ${JSON.stringify(a4)}`);
    const r5 = await c.request(patchAction(room, 5, add('w'), { dep: [3, 2, 1] }));
    assert.equal(r5.type, 'reject', JSON.stringify(r5));
    assert.equal(r5.code, 'after_reject');
    assert.match(r5.message, /n=2/, 'the message names the rejected dep');
    // the cascade goes on through array deps, and the outcome is remembered
    const r6 = await c.request(patchAction(room, 6, add('v'), { dep: [4, 5] }));
    assert.equal(r6.code, 'after_reject');
    const r5again = await c.request(patchAction(room, 5, add('w'), { dep: [3, 2, 1] }));
    assert.equal(r5again.code, 'after_reject');
    assert.equal(r5again.duplicate, true);
    assert.equal((await c.request(patchAction(room, 7, add('u'), { dep: 4 }))).type, 'ack', 'integer dep');
    assert.equal((await c.request(patchAction(room, 8, add('t'), { dep: [] }))).type, 'ack', 'an empty array is no dep');
    const g = await c.request({ type: 'get', room });
    assert.deepEqual(g.state, { x: 1, y: 1, z: 1, u: 1, t: 1 });
    await c.close();
  });
});

test('dep array: a dep never decided is bad_dep (n not used up); once decided the same n applies', async () => {
  await withDaemon({}, async (d) => {
    const room = 'deps:b';
    const c = await setup(d, room, 'deps-b');
    assert.equal((await c.request(patchAction(room, 1, add('a')))).type, 'ack');
    // n=3 depends on 1 (acked) and 2 (not sent yet)
    const r3 = await c.request(patchAction(room, 3, add('c'), { dep: [1, 2] }));
    assert.equal(r3.code, 'bad_dep', JSON.stringify(r3));
    assert.match(r3.message, /n=2/);
    const again = await c.request(patchAction(room, 3, add('c'), { dep: [1, 2] }));
    assert.equal(again.code, 'bad_dep');
    assert.notEqual(again.duplicate, true, 'bad_dep is not remembered');
    assert.equal((await c.request(patchAction(room, 2, add('b')))).type, 'ack');
    const a3 = await c.request(patchAction(room, 3, add('c'), { dep: [1, 2] }));
    assert.equal(a3.type, 'ack', JSON.stringify(a3));
    // a rejected dep decides at once even when another dep is undecided
    assert.equal((await c.request(patchAction(room, 4, FAIL))).code, 'test_failed');
    const r6 = await c.request(patchAction(room, 6, add('f'), { dep: [5, 4] }));
    assert.equal(r6.code, 'after_reject', JSON.stringify(r6));
    await c.close();
  });
});

test('dep array: bounds and types are bad_request with the id, n not used up', async () => {
  await withDaemon({}, async (d) => {
    const room = 'deps:c';
    const c = await setup(d, room, 'deps-c');
    const seventeen = Array.from({ length: 17 }, (_, i) => i + 1);
    const cases = [
      [{ dep: seventeen }, /at most 16/],
      [{ dep: [1, 'x'] }, /positive integer/],
      [{ dep: [0] }, /positive integer/],
      [{ dep: [1.5] }, /positive integer/],
      [{ dep: [[1]] }, /positive integer/],
      [{ dep: [30, 1] }, /dep < n/],
      [{ dep: [20] }, /dep < n/],
      [{ dep: {} }, /positive integer/],
    ];
    for (const [extra, re] of cases) {
      const r = await c.request(patchAction(room, 20, add('k'), extra));
      assert.equal(r.type, 'error', JSON.stringify(r));
      assert.equal(r.code, 'bad_request');
      assert.match(r.message, re, JSON.stringify(extra));
      assert.ok(Number.isInteger(r.id));
    }
    // sixteen is fine (all undecided: bad_dep, not bad_request)
    const sixteen = Array.from({ length: 16 }, (_, i) => i + 1);
    assert.equal((await c.request(patchAction(room, 20, add('k'), { dep: sixteen }))).code, 'bad_dep');
    const a = await c.request(patchAction(room, 20, add('k')));
    assert.equal(a.type, 'ack', 'n=20 was never used up');
    await c.close();
  });
});
