// Actions that cannot apply: invalid patches, failed tests, unknown action
// types and state-size limits are rejected with the documented code, nothing
// is applied (all ops or none), n is used up, and the room keeps serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checksum } from '../../client/movex.js';
import { withDaemon, connectHello, patchAction, applyPatch, makeConf } from './lib.mjs';

const INIT = { s: 'str', num: 1, big: 1e308, arr: [1, 2, 3], obj: { k: 'v' }, 'a/b': 1, 'm~n': 2 };

async function setup(d, room, state = INIT) {
  const a = await connectHello(d, 'pw');
  const obs = await connectHello(d, 'pobs');
  assert.equal((await a.request({ type: 'create', room, state })).type, 'created');
  for (const c of [a, obs]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
  return { a, obs };
}

test('invalid patches -> reject bad_patch / test_failed / bad_action, state unchanged, n used up', async () => {
  await withDaemon({}, async (d) => {
    const room = 'todo:patch';
    const { a, obs } = await setup(d, room);
    const head0 = await obs.request({ type: 'get', room });
    const cases = [
      [[{ op: 'frob', path: '/s', value: 1 }], 'bad_patch', 'unknown op'],
      [[{ path: '/s', value: 1 }], 'bad_patch', 'missing op'],
      [[{ op: 'add', path: 's', value: 1 }], 'bad_patch', 'path without leading /'],
      [[{ op: 'add', path: '/obj/k/deeper', value: 1 }], 'bad_patch', 'path through a string'],
      [[{ op: 'add', path: '/missing/x', value: 1 }], 'bad_patch', 'parent missing'],
      [[{ op: 'add', path: '/s' }], 'bad_patch', 'add without value'],
      [[{ op: 'replace', path: '/s' }], 'bad_patch', 'replace without value'],
      [[{ op: 'add', value: 1 }], 'bad_patch', 'add without path'],
      [[{ op: 'add', path: 5, value: 1 }], 'bad_patch', 'path as number'],
      [[{ op: 'remove', path: '/nope' }], 'bad_patch', 'remove missing member'],
      [[{ op: 'remove', path: '/arr/3' }], 'bad_patch', 'remove index past the end'],
      [[{ op: 'replace', path: '/arr/-', value: 1 }], 'bad_patch', '- in replace'],
      [[{ op: 'remove', path: '/arr/-' }], 'bad_patch', '- in remove'],
      [[{ op: 'add', path: '/arr/01', value: 1 }], 'bad_patch', 'leading zero index'],
      [[{ op: 'add', path: '/arr/4', value: 1 }], 'bad_patch', 'add index past the end'],
      [[{ op: 'add', path: '/arr/x', value: 1 }], 'bad_patch', 'non-numeric array index'],
      [[{ op: 'move', from: '/obj', path: '/obj/inner' }], 'bad_patch', 'move into its own child'],
      [[{ op: 'move', from: '/nope', path: '/x' }], 'bad_patch', 'move from missing'],
      [[{ op: 'copy', from: '/nope', path: '/x' }], 'bad_patch', 'copy from missing'],
      [[{ op: 'move', path: '/x' }], 'bad_patch', 'move without from'],
      [[{ op: 'inc', path: '/s', value: 1 }], 'bad_patch', 'inc on a string'],
      [[{ op: 'inc', path: '/arr', value: 1 }], 'bad_patch', 'inc on an array'],
      [[{ op: 'inc', path: '/num', value: '1' }], 'bad_patch', 'inc by a string'],
      [[{ op: 'inc', path: '/num' }], 'bad_patch', 'inc without value'],
      [[{ op: 'inc', path: '/big', value: 1e308 }], 'bad_patch', 'inc to a non-finite result (1e308 + 1e308)'],
      [[{ op: 'inc', path: '/big', value: -1.7976931348623157e308 }, { op: 'inc', path: '/big', value: -1.7976931348623157e308 }], 'bad_patch', 'inc to -Infinity in two steps'],
      [[{ op: 'inc', path: '/missing/deep', value: 1 }], 'bad_patch', 'inc under a missing parent'],
      [[{ op: 'test', path: '/s', value: 'other' }], 'test_failed', 'test with a different value'],
      [[{ op: 'test', path: '/num', value: '1' }], 'test_failed', 'test 1 against "1"'],
      [[{ op: 'test', path: '/nope', value: null }], 'test_failed', 'test of a missing path'],
      [[{ op: 'test', path: '/arr', value: [1, 2] }], 'test_failed', 'test of an array prefix'],
      // atomicity: earlier ops that succeeded are undone
      [[{ op: 'add', path: '/new', value: 1 }, { op: 'remove', path: '/s' }, { op: 'inc', path: '/num', value: 5 }, { op: 'remove', path: '/nope' }], 'bad_patch', 'fourth op fails after three good ones'],
      [[{ op: 'replace', path: '', value: { all: 'gone' } }, { op: 'test', path: '/all', value: 'here' }], 'test_failed', 'root replaced then test fails'],
      [[{ op: 'remove', path: '/arr/0' }, { op: 'move', from: '/obj', path: '/arr/9' }], 'bad_patch', 'remove then bad move'],
    ];
    let n = 0;
    for (const [payload, code, what] of cases) {
      n++;
      const r = await a.request(patchAction(room, n, payload));
      assert.equal(r.type, 'reject', `${what}: ${JSON.stringify(r)}`);
      assert.equal(r.code, code, `${what}: ${JSON.stringify(r)}`);
      assert.equal(r.n, n);
      assert.equal(r.seq, head0.seq, `${what}: reject carries the head seq`);
      assert.equal(r.checksum, head0.checksum, `${what}: reject carries the head checksum`);
      const g = await obs.request({ type: 'get', room });
      assert.deepEqual(g.state, INIT, `${what}: state unchanged`);
      assert.equal(g.checksum, head0.checksum, `${what}: checksum unchanged`);
      assert.equal(checksum(g.state), g.checksum, `${what}: checksum() of the state`);
      assert.throws(() => applyPatch(INIT, payload), `${what}: the local patcher agrees it fails`);
    }
    // Reducer-level refusals.
    for (const [action, code, what] of [
      [{ type: 'set', payload: [] }, 'bad_action', 'json reducer refuses action type "set"'],
      [{ type: 'patch', payload: { op: 'add' } }, 'bad_patch', 'payload not an array'],
      [{ type: 'patch' }, 'bad_patch', 'payload missing'],
      [{ type: 'patch', payload: [1] }, 'bad_patch', 'op not an object'],
    ]) {
      n++;
      const r = await a.request({ type: 'action', room, n, action });
      assert.equal(r.type, 'reject', `${what}: ${JSON.stringify(r)}`);
      assert.equal(r.code, code, `${what}: ${JSON.stringify(r)}`);
    }
    // Rejected n are used up: a resend repeats the reject even with a good patch.
    const again = await a.request(patchAction(room, 1, [{ op: 'add', path: '/ok', value: 1 }]));
    assert.equal(again.type, 'reject');
    assert.equal(again.code, 'bad_patch');
    assert.ok(!obs.all.some((m) => m.type === 'fwd'), 'rejected actions are not forwarded');
    // And the room still applies good actions; the local patcher agrees.
    n++;
    const good = [{ op: 'move', from: '/a~1b', path: '/m~0n' }, { op: 'inc', path: '/num', value: 0.5 }, { op: 'add', path: '/arr/-', value: 4 }];
    const ack = await a.request(patchAction(room, n, good));
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    const expect = applyPatch(INIT, good);
    assert.deepEqual(expect, { s: 'str', num: 1.5, big: 1e308, arr: [1, 2, 3, 4], obj: { k: 'v' }, 'm~n': 1 });
    assert.equal(ack.checksum, checksum(expect));
    assert.deepEqual((await obs.request({ type: 'get', room })).state, expect);
    await a.close();
    await obs.close();
  });
});

test('an empty patch applies as a new seq with an unchanged checksum', async () => {
  await withDaemon({}, async (d) => {
    const room = 'todo:empty';
    const { a, obs } = await setup(d, room);
    const ack = await a.request(patchAction(room, 1, []));
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.equal(ack.seq, 1);
    assert.equal(ack.prev, ack.checksum);
    assert.equal(ack.checksum, checksum(INIT));
    await a.close();
    await obs.close();
  });
});

test('max_ops: more operations than max_ops -> bad_patch', async () => {
  await withDaemon({ conf: makeConf({ room: ['max_ops 3'] }) }, async (d) => {
    const room = 'todo:ops';
    const { a, obs } = await setup(d, room, {});
    const op = (i) => ({ op: 'add', path: `/k${i}`, value: i });
    const ok = await a.request(patchAction(room, 1, [0, 1, 2].map(op)));
    assert.equal(ok.type, 'ack', `3 ops with max_ops 3: ${JSON.stringify(ok)}`);
    const r = await a.request(patchAction(room, 2, [3, 4, 5, 6].map(op)));
    assert.equal(r.type, 'reject');
    assert.equal(r.code, 'bad_patch', `4 ops with max_ops 3: ${JSON.stringify(r)}`);
    assert.deepEqual((await obs.request({ type: 'get', room })).state, { k0: 0, k1: 1, k2: 2 });
    await a.close();
    await obs.close();
  });
});

test('max_state_bytes: initial state too big -> error too_large; growing action -> reject too_large, state unchanged', async () => {
  const conf = makeConf({ extra: 'room small {\n    max_state_bytes 1k\n    create_on_subscribe yes\n}\n' });
  await withDaemon({ conf }, async (d) => {
    const a = await connectHello(d, 'big');
    const cr = await a.request({ type: 'create', room: 'small:init', state: { s: 'x'.repeat(2000) } });
    assert.equal(cr.type, 'error', JSON.stringify(cr));
    assert.equal(cr.code, 'too_large');
    assert.equal((await a.request({ type: 'get', room: 'small:init' })).code, 'no_such_room', 'the room was not created');
    const room = 'small:grow';
    const s = await a.request({ type: 'subscribe', room });
    assert.equal(s.type, 'snapshot');
    const fill = await a.request(patchAction(room, 1, [{ op: 'add', path: '/s', value: 'y'.repeat(900) }]));
    assert.equal(fill.type, 'ack', `900 bytes under a 1k bound: ${JSON.stringify(fill)}`);
    const before = await a.request({ type: 'get', room });
    const r = await a.request(patchAction(room, 2, [{ op: 'add', path: '/t', value: 'z'.repeat(200) }]));
    assert.equal(r.type, 'reject', JSON.stringify(r));
    assert.equal(r.code, 'too_large');
    assert.equal(r.seq, before.seq);
    assert.equal(r.checksum, before.checksum);
    const r2 = await a.request(patchAction(room, 3, [{ op: 'replace', path: '/s', value: 'w'.repeat(2000) }]));
    assert.equal(r2.code, 'too_large', 'replace that grows past the bound');
    const after = await a.request({ type: 'get', room });
    assert.deepEqual(after.state, before.state, 'state unchanged');
    assert.equal(after.checksum, before.checksum);
    assert.equal(checksum(after.state), after.checksum, 'the cached checksum is right after the rollback');
    // Shrinking and then growing within the bound works; the resend of 2 is still a reject.
    const shrink = await a.request(patchAction(room, 4, [{ op: 'replace', path: '/s', value: 'small' }, { op: 'add', path: '/t', value: 'z'.repeat(200) }]));
    assert.equal(shrink.type, 'ack', JSON.stringify(shrink));
    assert.equal(shrink.checksum, checksum({ s: 'small', t: 'z'.repeat(200) }));
    const dup = await a.request(patchAction(room, 2, [{ op: 'add', path: '/u', value: 1 }]));
    assert.equal(dup.code, 'too_large', 'the rejected n keeps its reject');
    await a.close();
  });
});
