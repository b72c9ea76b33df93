// Catch-up after a gap: subscribe/sync with `since` answers with exactly the
// missed actions (`actions`), or a `snapshot` when the log cannot cover the
// gap or the client's history differs from the server's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checksum } from '../../client/movex.js';
import { withDaemon, connectHello, patchAction, applyPatch, makeConf } from './lib.mjs';

// Apply k actions from `w` (n = firstN..), returning their acks.
async function applyK(w, room, k, firstN, mk = (i) => [{ op: 'add', path: `/k${i}`, value: i }]) {
  const acks = [];
  for (let i = 0; i < k; i++) {
    const n = firstN + i;
    const ack = await w.request(patchAction(room, n, mk(n)));
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    acks.push({ ack, action: { type: 'patch', payload: mk(n) } });
  }
  return acks;
}

function assertActionsReply(r, { room, from, acks, client, nextN }) {
  assert.equal(r.type, 'actions', `expected actions, got ${JSON.stringify(r).slice(0, 300)}`);
  assert.equal(r.room, room);
  assert.equal(r.from, from, 'actions.from = since.seq');
  assert.equal(r.to, from + acks.length, 'actions.to = head seq');
  assert.equal(r.next_n, nextN, 'next_n');
  assert.equal(r.actions.length, acks.length, `exactly ${acks.length} actions`);
  for (let i = 0; i < acks.length; i++) {
    const e = r.actions[i];
    const { ack, action } = acks[i];
    assert.equal(e.seq, ack.seq, `entry ${i}: seq`);
    assert.equal(e.checksum, ack.checksum, `entry ${i}: checksum after the action`);
    assert.equal(e.client, client, `entry ${i}: client`);
    assert.equal(e.n, ack.n, `entry ${i}: n`);
    assert.deepEqual(e.action, action, `entry ${i}: action`);
  }
}

test('catch-up: unsubscribe, k actions by others, subscribe with since -> exactly those k actions', async () => {
  await withDaemon({}, async (d) => {
    const room = 'todo:catch';
    const w = await connectHello(d, 'writer');
    const c = await connectHello(d, 'late');
    assert.equal((await w.request({ type: 'subscribe', room })).type, 'snapshot');
    await applyK(w, room, 3, 1);
    const s = await c.request({ type: 'subscribe', room });
    assert.equal(s.seq, 3);
    const since = { seq: s.seq, checksum: s.checksum };
    let state = s.state;
    assert.equal((await c.request({ type: 'unsubscribe', room })).type, 'unsubscribed');
    const acks = await applyK(w, room, 5, 4);
    const r = await c.request({ type: 'subscribe', room, since });
    assertActionsReply(r, { room, from: 3, acks, client: 'writer', nextN: 1 });
    // Replaying the entries on the recorded state reaches the head checksum.
    for (const e of r.actions) {
      state = applyPatch(state, e.action.payload);
      assert.equal(checksum(state), e.checksum, `replayed state checksum at seq ${e.seq}`);
    }
    // Subscribed again: the next action is forwarded.
    const ack = await w.request(patchAction(room, 9, [{ op: 'remove', path: '/k1' }]));
    const f = await c.next((m) => m.type === 'fwd', 'fwd after catch-up');
    assert.equal(f.seq, 9);
    assert.equal(f.prev, r.actions[r.actions.length - 1].checksum);
    assert.equal(f.checksum, ack.checksum);
    await w.close();
    await c.close();
  });
});

test('catch-up after a disconnect: same client id, new connection, subscribe with since', async () => {
  await withDaemon({}, async (d) => {
    const room = 'todo:reconnect';
    const w = await connectHello(d, 'w2');
    let c = await connectHello(d, 'roamer');
    for (const x of [w, c]) await x.request({ type: 'subscribe', room });
    // The roamer writes too, so its own entries come back with client/n.
    const a1 = await c.request(patchAction(room, 1, [{ op: 'add', path: '/mine', value: 1 }]));
    assert.equal(a1.type, 'ack');
    const since = { seq: a1.seq, checksum: a1.checksum };
    await c.close();
    const acks = await applyK(w, room, 4, 1);
    c = await connectHello(d, 'roamer');
    const r = await c.request({ type: 'subscribe', room, since });
    assertActionsReply(r, { room, from: 1, acks, client: 'w2', nextN: 2 });
    // since = 0 (the created state) includes the roamer's own action.
    const g0 = checksum({});
    const r0 = await c.request({ type: 'sync', room, since: { seq: 0, checksum: g0 } });
    assert.equal(r0.type, 'actions', JSON.stringify(r0));
    assert.equal(r0.actions.length, 5);
    assert.equal(r0.actions[0].client, 'roamer');
    assert.equal(r0.actions[0].n, 1);
    assert.equal(r0.next_n, 2);
    await w.close();
    await c.close();
  });
});

test('sync: since in the past -> those actions; since at head -> empty actions; no subscription needed', async () => {
  await withDaemon({}, async (d) => {
    const room = 'todo:sync';
    const w = await connectHello(d, 'sw');
    const c = await connectHello(d, 'sc');
    await w.request({ type: 'subscribe', room });
    await applyK(w, room, 2, 1);
    const g = await c.request({ type: 'get', room });
    assert.equal(g.seq, 2);
    const acks = await applyK(w, room, 3, 3);
    const r = await c.request({ type: 'sync', room, since: { seq: g.seq, checksum: g.checksum } });
    assertActionsReply(r, { room, from: 2, acks, client: 'sw', nextN: 1 });
    assert.ok(!c.all.some((m) => m.type === 'fwd'), 'sync does not subscribe');
    const head = acks[acks.length - 1].ack;
    const e = await c.request({ type: 'sync', room, since: { seq: head.seq, checksum: head.checksum } });
    assert.equal(e.type, 'actions', JSON.stringify(e));
    assert.equal(e.from, head.seq);
    assert.equal(e.to, head.seq);
    assert.deepEqual(e.actions, [], 'since at head -> empty actions list');
    // The writer's own sync carries its next_n.
    const ws = await w.request({ type: 'sync', room, since: { seq: head.seq, checksum: head.checksum } });
    assert.equal(ws.next_n, 6);
    // sync without since is a bad request.
    const bad = await c.request({ type: 'sync', room });
    assert.equal(bad.type, 'error');
    assert.equal(bad.code, 'bad_request');
    await w.close();
    await c.close();
  });
});

test('snapshot fallback: history 5, wrong checksum, future seq', async () => {
  const conf = makeConf({ room: ['history 5'] });
  await withDaemon({ conf }, async (d) => {
    const room = 'todo:short';
    const w = await connectHello(d, 'hw');
    const c = await connectHello(d, 'hc');
    const s0 = await w.request({ type: 'subscribe', room });
    assert.equal(s0.seq, 0);
    const acks = await applyK(w, room, 8, 1);
    const sumAt = (seq) => (seq === 0 ? s0.checksum : acks[seq - 1].ack.checksum);
    const head = await w.request({ type: 'get', room });
    assert.equal(head.seq, 8);
    const isSnapshot = (r, what) => {
      assert.equal(r.type, 'snapshot', `${what}: expected snapshot, got ${JSON.stringify(r).slice(0, 200)}`);
      assert.equal(r.seq, 8, `${what}: snapshot at head`);
      assert.equal(r.checksum, head.checksum);
      assert.deepEqual(r.state, head.state);
      assert.equal(r.next_n, 1, `${what}: next_n`);
    };
    // The log keeps the last 5 actions (seqs 4..8): since 3 is covered, since 2 is not.
    const ok = await c.request({ type: 'sync', room, since: { seq: 3, checksum: sumAt(3) } });
    assertActionsReply(ok, { room, from: 3, acks: acks.slice(3), client: 'hw', nextN: 1 });
    isSnapshot(await c.request({ type: 'sync', room, since: { seq: 2, checksum: sumAt(2) } }), 'since 2 (older than the log), sync');
    isSnapshot(await c.request({ type: 'sync', room, since: { seq: 0, checksum: sumAt(0) } }), 'since 0, sync');
    isSnapshot(await c.request({ type: 'subscribe', room, since: { seq: 1, checksum: sumAt(1) } }), 'since 1, subscribe');
    // Wrong checksum at a held seq (the client's history is not the server's).
    const wrong = checksum({ not: 'this' });
    isSnapshot(await c.request({ type: 'sync', room, since: { seq: 5, checksum: wrong } }), 'wrong checksum at seq 5');
    isSnapshot(await c.request({ type: 'sync', room, since: { seq: 5, checksum: sumAt(6) } }), 'checksum of another seq at seq 5');
    isSnapshot(await c.request({ type: 'sync', room, since: { seq: 8, checksum: wrong } }), 'wrong checksum at head');
    // since.seq in the future.
    isSnapshot(await c.request({ type: 'sync', room, since: { seq: 9, checksum: sumAt(8) } }), 'since.seq = head + 1');
    isSnapshot(await c.request({ type: 'subscribe', room, since: { seq: 1000, checksum: sumAt(8) } }), 'since.seq far in the future');
    // The fallback subscribe did subscribe.
    await w.request(patchAction(room, 9, [{ op: 'add', path: '/z', value: 0 }]));
    const f = await c.next((m) => m.type === 'fwd');
    assert.equal(f.seq, 9);
    await w.close();
    await c.close();
  });
});

test('history 0: a resync from an older seq is a snapshot', async () => {
  const conf = makeConf({ room: ['history 0'] });
  await withDaemon({ conf }, async (d) => {
    const room = 'todo:nohist';
    const w = await connectHello(d, 'h0');
    const s0 = await w.request({ type: 'subscribe', room });
    const acks = await applyK(w, room, 2, 1);
    const r = await w.request({ type: 'sync', room, since: { seq: s0.seq, checksum: s0.checksum } });
    assert.equal(r.type, 'snapshot', JSON.stringify(r));
    assert.equal(r.seq, 2);
    assert.equal(r.checksum, acks[1].ack.checksum);
    await w.close();
  });
});
