// Exactly-once bookkeeping, the rejection cascade and strict actions
// (docs/PROTOCOL.md "How an action is decided").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checksum } from '../../client/movex.js';
import { withDaemon, connectHello, patchAction } from './lib.mjs';

const INC = [{ op: 'inc', path: '/c', value: 1 }];

async function setup(d, room, names = ['eo']) {
  const cs = [];
  for (const n of names) {
    const c = await connectHello(d, n);
    const s = await c.request({ type: 'subscribe', room });
    assert.equal(s.type, 'snapshot', JSON.stringify(s));
    cs.push(c);
  }
  return cs;
}

async function head(c, room) {
  const g = await c.request({ type: 'get', room });
  assert.equal(g.type, 'snapshot');
  return g;
}

test('resend of an applied n: duplicate ack with the same seq/prev/checksum, applied once, no second fwd', async () => {
  await withDaemon({}, async (d) => {
    const room = 'eo:dup';
    const [a, b] = await setup(d, room, ['dupa', 'dupb']);
    const first = await a.request(patchAction(room, 1, INC));
    assert.equal(first.type, 'ack');
    assert.equal(first.duplicate, undefined);
    await b.next((m) => m.type === 'fwd' && m.seq === 1);
    for (let k = 0; k < 3; k++) {
      const again = await a.request(patchAction(room, 1, INC));
      assert.equal(again.type, 'ack', JSON.stringify(again));
      assert.equal(again.duplicate, true, 'resent ack says duplicate:true');
      assert.equal(again.n, 1);
      assert.equal(again.seq, first.seq);
      assert.equal(again.prev, first.prev);
      assert.equal(again.checksum, first.checksum);
    }
    // A resend with a different action under the same n is still the original.
    const other = await a.request(patchAction(room, 1, [{ op: 'add', path: '/evil', value: 1 }]));
    assert.equal(other.type, 'ack');
    assert.equal(other.duplicate, true);
    assert.equal(other.seq, 1);
    const g = await head(b, room);
    assert.deepEqual(g.state, { c: 1 }, 'applied exactly once');
    assert.equal(g.seq, 1);
    assert.equal(b.all.filter((m) => m.type === 'fwd').length, 1, 'duplicates are not forwarded');
    await a.close();
    await b.close();
  });
});

test('resend of a rejected n gets the same reject; a later n still applies', async () => {
  await withDaemon({}, async (d) => {
    const room = 'eo:rej';
    const [a] = await setup(d, room, ['rej']);
    const rj = await a.request(patchAction(room, 1, [{ op: 'test', path: '/c', value: 5 }]));
    assert.equal(rj.type, 'reject', JSON.stringify(rj));
    assert.equal(rj.code, 'test_failed');
    assert.equal(rj.n, 1);
    assert.equal(rj.seq, 0);
    assert.equal(rj.checksum, checksum({}));
    // Resend n=1, now with a patch that would succeed: never applied later.
    const again = await a.request(patchAction(room, 1, INC));
    assert.equal(again.type, 'reject', JSON.stringify(again));
    assert.equal(again.code, 'test_failed', 'the original reject code');
    assert.equal(again.duplicate, true, 'a repeated reject says duplicate:true (docs/PROTOCOL.md rule 3)');
    assert.equal(again.message, rj.message, 'the original reject message');
    assert.equal(rj.duplicate, undefined, 'the first reject is not a duplicate');
    assert.equal(again.n, 1);
    assert.equal(again.seq, rj.seq);
    assert.equal(again.checksum, rj.checksum);
    assert.deepEqual((await head(a, room)).state, {}, 'a rejected n is never applied later');
    const ok = await a.request(patchAction(room, 2, INC));
    assert.equal(ok.type, 'ack');
    assert.equal(ok.seq, 1);
    await a.close();
  });
});

test('n below the highest decided that was never sent -> too_old, never applied, not recorded', async () => {
  await withDaemon({}, async (d) => {
    const room = 'eo:old';
    const [a] = await setup(d, room, ['old']);
    assert.equal((await a.request(patchAction(room, 5, INC))).type, 'ack');
    const before = await head(a, room);
    for (const n of [4, 1, 3, 4]) {
      const r = await a.request(patchAction(room, n, INC));
      assert.equal(r.type, 'reject', `n=${n}: ${JSON.stringify(r)}`);
      assert.equal(r.code, 'too_old', `n=${n}`);
      assert.equal(r.n, n);
      assert.equal(r.seq, before.seq);
      assert.equal(r.checksum, before.checksum);
      assert.equal(r.duplicate, undefined, 'too_old is not a duplicate');
    }
    const after = await head(a, room);
    assert.equal(after.seq, before.seq);
    assert.deepEqual(after.state, { c: 1 });
    assert.equal(after.next_n, 6);
    await a.close();
  });
});

test('next_n: highest decided + 1 in snapshot/actions, kept across reconnects of the same client id', async () => {
  await withDaemon({}, async (d) => {
    const room = 'eo:nextn';
    let [a] = await setup(d, room, ['nn']);
    assert.equal((await a.request(patchAction(room, 1, INC))).type, 'ack');
    assert.equal((await a.request(patchAction(room, 2, [{ op: 'test', path: '/c', value: 9 }]))).type, 'reject');
    assert.equal((await a.request(patchAction(room, 7, INC))).type, 'ack');
    const again = await a.request({ type: 'subscribe', room });
    assert.equal(again.type, 'snapshot');
    assert.equal(again.next_n, 8, 'resubscribe on the same connection');
    const since = { seq: again.seq, checksum: again.checksum };
    await a.close();
    a = await connectHello(d, 'nn');
    const s = await a.request({ type: 'subscribe', room });
    assert.equal(s.next_n, 8, 'snapshot next_n after reconnect (same hello client)');
    const sy = await a.request({ type: 'sync', room, since });
    assert.equal(sy.type, 'actions');
    assert.equal(sy.next_n, 8, 'actions next_n after reconnect');
    assert.equal((await a.request({ type: 'get', room })).next_n, 8);
    // A resend from the new connection is still answered from memory.
    const dup = await a.request(patchAction(room, 1, INC));
    assert.equal(dup.type, 'ack');
    assert.equal(dup.duplicate, true);
    assert.equal(dup.seq, 1);
    const rdup = await a.request(patchAction(room, 2, INC));
    assert.equal(rdup.type, 'reject');
    assert.equal(rdup.code, 'test_failed');
    // Another client id has its own counter; another room too.
    const b = await connectHello(d, 'other');
    assert.equal((await b.request({ type: 'subscribe', room })).next_n, 1);
    assert.equal((await a.request({ type: 'subscribe', room: 'eo:elsewhere' })).next_n, 1);
    assert.equal((await a.request(patchAction(room, 8, INC))).type, 'ack');
    assert.deepEqual((await head(a, room)).state, { c: 3 });
    await a.close();
    await b.close();
  });
});

test('two connections with the same client id share the exactly-once memory', async () => {
  await withDaemon({}, async (d) => {
    const room = 'eo:twins';
    const [a1, a2] = await setup(d, room, ['twin', 'twin']);
    const ack = await a1.request(patchAction(room, 1, INC));
    assert.equal(ack.type, 'ack');
    const dup = await a2.request(patchAction(room, 1, INC));
    assert.equal(dup.type, 'ack');
    assert.equal(dup.duplicate, true);
    assert.equal(dup.seq, ack.seq);
    assert.deepEqual((await head(a1, room)).state, { c: 1 });
    await a1.close();
    await a2.close();
  });
});

test('rejection cascade: test_failed -> after_reject (transitive); independent actions apply; bad_dep', async () => {
  await withDaemon({}, async (d) => {
    const room = 'eo:cascade';
    const [a, b] = await setup(d, room, ['casc', 'watch']);
    const r1 = await a.request(patchAction(room, 1, [{ op: 'test', path: '/exists', value: true }, { op: 'add', path: '/one', value: 1 }]));
    assert.equal(r1.type, 'reject', JSON.stringify(r1));
    assert.equal(r1.code, 'test_failed');
    const r2 = await a.request(patchAction(room, 2, [{ op: 'add', path: '/two', value: 2 }], { dep: 1 }));
    assert.equal(r2.type, 'reject', `n=2 dep=1: ${JSON.stringify(r2)}`);
    assert.equal(r2.code, 'after_reject');
    assert.equal(r2.seq, 0);
    const r3 = await a.request(patchAction(room, 3, [{ op: 'add', path: '/three', value: 3 }], { dep: 2 }));
    assert.equal(r3.type, 'reject', `n=3 dep=2: ${JSON.stringify(r3)}`);
    assert.equal(r3.code, 'after_reject', 'the cascade is transitive');
    const a4 = await a.request(patchAction(room, 4, [{ op: 'add', path: '/four', value: 4 }]));
    assert.equal(a4.type, 'ack', `n=4 without dep: ${JSON.stringify(a4)}`);
    assert.equal(a4.seq, 1);
    const a5 = await a.request(patchAction(room, 5, [{ op: 'add', path: '/five', value: 5 }], { dep: 4 }));
    assert.equal(a5.type, 'ack', `n=5 dep=4: ${JSON.stringify(a5)}`);
    assert.equal(a5.seq, 2);
    // dep naming an n that was never sent (6 is skipped; 7 is the new highest).
    const r7 = await a.request(patchAction(room, 7, [{ op: 'add', path: '/seven', value: 7 }], { dep: 6 }));
    assert.equal(r7.type, 'reject', `n=7 dep=6: ${JSON.stringify(r7)}`);
    assert.equal(r7.code, 'bad_dep');
    // bad_dep does not use up n (the dep may still come, e.g. after an
    // `unavailable`): a resend is refused the same way, not from memory.
    const r7b = await a.request(patchAction(room, 7, [{ op: 'add', path: '/seven', value: 7 }], { dep: 6 }));
    assert.equal(r7b.code, 'bad_dep');
    assert.notEqual(r7b.duplicate, true, 'bad_dep is not an outcome remembered for n');
    // A dep on an after_reject is after_reject too; resends repeat the outcome.
    const r8 = await a.request(patchAction(room, 8, [{ op: 'add', path: '/eight', value: 8 }], { dep: 3 }));
    assert.equal(r8.code, 'after_reject');
    const r2again = await a.request(patchAction(room, 2, [{ op: 'add', path: '/two', value: 2 }], { dep: 1 }));
    assert.equal(r2again.type, 'reject');
    assert.equal(r2again.code, 'after_reject', 'resend of a cascaded reject gets it again');
    const r7again = await a.request(patchAction(room, 7, [{ op: 'add', path: '/seven', value: 7 }], { dep: 6 }));
    assert.equal(r7again.code, 'too_old', 'once a higher n is decided, the never-applied n=7 can no longer apply');
    // dep on a rejected action that is not the latest.
    const a9 = await a.request(patchAction(room, 9, [{ op: 'add', path: '/nine', value: 9 }], { dep: 5 }));
    assert.equal(a9.type, 'ack', `n=9 dep=5: ${JSON.stringify(a9)}`);
    const g = await b.request({ type: 'get', room });
    assert.deepEqual(g.state, { four: 4, five: 5, nine: 9 }, 'only n=4, 5, 9 applied');
    assert.equal(g.seq, 3);
    assert.deepEqual(b.all.filter((m) => m.type === 'fwd').map((m) => m.n), [4, 5, 9], 'only applied actions are forwarded');
    await a.close();
    await b.close();
  });
});

test('strict: base == head applies; stale base -> stale (state unchanged); no base -> bad_request, n not used up', async () => {
  await withDaemon({}, async (d) => {
    const room = 'eo:strict';
    const [a, b] = await setup(d, room, ['st', 'st2']);
    assert.equal((await b.request(patchAction(room, 1, INC))).type, 'ack');
    const ok = await a.request(patchAction(room, 1, [{ op: 'add', path: '/x', value: 1 }], { strict: true, base: 1 }));
    assert.equal(ok.type, 'ack', `strict on head: ${JSON.stringify(ok)}`);
    assert.equal(ok.seq, 2);
    const before = await a.request({ type: 'get', room });
    const st = await a.request(patchAction(room, 2, [{ op: 'add', path: '/y', value: 2 }], { strict: true, base: 1 }));
    assert.equal(st.type, 'reject', JSON.stringify(st));
    assert.equal(st.code, 'stale');
    assert.equal(st.seq, 2, 'reject carries the head seq');
    assert.equal(st.checksum, before.checksum);
    const future = await a.request(patchAction(room, 3, [{ op: 'add', path: '/y', value: 2 }], { strict: true, base: 7 }));
    assert.equal(future.code, 'stale', 'a base above head is stale too');
    const after = await a.request({ type: 'get', room });
    assert.deepEqual(after.state, before.state, 'stale: state unchanged');
    assert.equal(after.seq, before.seq);
    const nb = await a.request(patchAction(room, 4, [{ op: 'add', path: '/z', value: 3 }], { strict: true }));
    assert.equal(nb.type, 'error', `strict without base: ${JSON.stringify(nb)}`);
    assert.equal(nb.code, 'bad_request');
    // Envelope errors do not use up n: the same n with a base goes through.
    const ok4 = await a.request(patchAction(room, 4, [{ op: 'add', path: '/z', value: 3 }], { strict: true, base: 2 }));
    assert.equal(ok4.type, 'ack', JSON.stringify(ok4));
    assert.equal(ok4.duplicate, undefined);
    // Non-strict with a stale base still applies.
    const loose = await a.request(patchAction(room, 5, INC, { base: 0 }));
    assert.equal(loose.type, 'ack');
    assert.deepEqual((await a.request({ type: 'get', room })).state, { c: 2, x: 1, z: 3 });
    await a.close();
    await b.close();
  });
});

test('exactly-once memory covers at least the last dedup_window (1024) outcomes', async () => {
  await withDaemon({}, async (d) => {
    const room = 'eo:window';
    const [a] = await setup(d, room, ['win']);
    const N = 1100;
    for (let n = 1; n <= N; n++) a.send({ ...patchAction(room, n, INC), id: 10000 + n });
    const last = await a.next((m) => m.id === 10000 + N, 'last ack');
    assert.equal(last.type, 'ack');
    assert.equal(last.seq, N);
    assert.equal(a.all.filter((m) => m.type === 'ack').length, N, 'every action acked');
    for (const n of [N - 1023, 500, N]) {
      const r = await a.request(patchAction(room, n, INC));
      assert.equal(r.type, 'ack', `n=${n} within the window: ${JSON.stringify(r)}`);
      assert.equal(r.duplicate, true);
      assert.equal(r.seq, n);
    }
    // Older than the window: remembered (duplicate) or too_old, never applied.
    const r1 = await a.request(patchAction(room, 1, INC));
    assert.ok((r1.type === 'ack' && r1.duplicate === true && r1.seq === 1) || (r1.type === 'reject' && r1.code === 'too_old'),
      `n=1 beyond the window: ${JSON.stringify(r1)}`);
    const g = await a.request({ type: 'get', room });
    assert.deepEqual(g.state, { c: N });
    assert.equal(g.seq, N);
    await a.close();
  });
});
