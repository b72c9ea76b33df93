// Two clients on one room: ack to the sender, fwd to the others, and a
// checksum chain that matches both the server's state and a locally tracked
// copy (client/movex.js's checksum). Then 2 x 1000 pipelined actions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checksum } from '../../client/movex.js';
import { withDaemon, connectHello, patchAction, applyPatch, waitFor, TIMEOUT, ROOT } from './lib.mjs';

test('the daemon and client/movex.js agree on every checksum vector (create as sent, get, re-digest)', async () => {
  const vectors = JSON.parse(readFileSync(join(ROOT, 'test/vectors/checksum.json'), 'utf8'));
  await withDaemon({}, async (d) => {
    const c = await connectHello(d, 'vectors');
    for (let i = 0; i < vectors.length; i++) {
      const v = vectors[i];
      const id = 1000 + i;
      // the state is sent as the vector's own text (1.0, -0, 1E21, ... as written)
      c.send(`{"type":"create","id":${id},"room":"vec:${i}","state":${v.json}}`);
      const cr = await c.next((m) => m.id === id, `created vec:${i}`);
      assert.equal(cr.type, 'created', `${v.json}: ${JSON.stringify(cr)}`);
      assert.equal(cr.checksum, v.checksum, `server checksum of ${v.json} (${v.comment})`);
      const g = await c.request({ type: 'get', room: `vec:${i}` });
      assert.equal(g.checksum, v.checksum);
      assert.equal(checksum(g.state), v.checksum, `checksum() of the state the server returns for ${v.json}`);
    }
    await c.close();
  });
});

test('two clients: ack + fwd, prev/checksum chain equals local and server state', async () => {
  await withDaemon({}, async (d) => {
    const a = await connectHello(d, 'alice');
    const b = await connectHello(d, 'bob');
    const room = 'todo:chain';
    const init = { items: [], count: 0, 'ключ': 'значение', '😀': true };
    const cr = await a.request({ type: 'create', room, state: init });
    assert.equal(cr.type, 'created', JSON.stringify(cr));
    assert.equal(cr.seq, 0);
    assert.equal(cr.checksum, checksum(init), 'created checksum = checksum(initial state)');
    for (const c of [a, b]) {
      const s = await c.request({ type: 'subscribe', room });
      assert.equal(s.type, 'snapshot', JSON.stringify(s));
      assert.equal(s.seq, 0);
      assert.deepEqual(s.state, init);
      assert.equal(s.checksum, cr.checksum);
      assert.equal(s.next_n, 1, 'next_n starts at 1');
    }
    const steps = [
      [{ op: 'add', path: '/items/-', value: 'milk' }],
      [{ op: 'inc', path: '/count', value: 2 }],
      [{ op: 'add', path: '/meta', value: { tags: ['x', 'y'], ratio: 0.1 } }],
      [{ op: 'inc', path: '/meta/ratio', value: 0.2 }], // 0.30000000000000004
      [{ op: 'add', path: '/items/0', value: { name: 'eggs', qty: 12 } }],
      [{ op: 'replace', path: '/items/1', value: 'bread' }],
      [{ op: 'copy', from: '/items/0', path: '/first' }],
      [{ op: 'move', from: '/meta/tags', path: '/tags' }],
      [{ op: 'test', path: '/count', value: 2 }, { op: 'remove', path: '/first/qty' }],
      [{ op: 'inc', path: '/fresh', value: -1.5e-7 }], // inc creates a missing member
      [{ op: 'add', path: '/big', value: 123456789012345680000 }],
      [{ op: 'add', path: '/neg0', value: -0 }],
      [{ op: 'remove', path: '/items/0' }, { op: 'add', path: '/ｚ', value: [null, false, '𝄞'] }],
    ];
    let local = init;
    let head = { seq: 0, checksum: cr.checksum };
    const nOf = new Map([[a, 0], [b, 0]]);
    for (let i = 0; i < steps.length; i++) {
      const [sender, other] = i % 2 ? [b, a] : [a, b];
      const n = nOf.get(sender) + 1;
      nOf.set(sender, n);
      let ack;
      if (steps[i][0].path === '/neg0') {
        // JSON.stringify writes -0 as 0: send the text -0 itself.
        const id = 5000 + i;
        sender.send(`{"type":"action","id":${id},"room":"${room}","n":${n},"base":${head.seq},` +
          `"action":{"type":"patch","payload":[{"op":"add","path":"/neg0","value":-0}]}}`);
        ack = await sender.next((m) => m.id === id, 'ack of -0');
      } else {
        ack = await sender.request(patchAction(room, n, steps[i], { base: head.seq }));
      }
      assert.equal(ack.type, 'ack', `step ${i}: ${JSON.stringify(ack)}`);
      assert.equal(ack.room, room);
      assert.equal(ack.n, n);
      assert.equal(ack.seq, head.seq + 1, `step ${i}: seq increments by one`);
      assert.equal(ack.prev, head.checksum, `step ${i}: ack.prev is the previous checksum`);
      assert.equal(ack.duplicate, undefined, 'a first ack is not a duplicate');
      local = applyPatch(local, steps[i]);
      assert.equal(ack.checksum, checksum(local), `step ${i}: ack.checksum = checksum(locally patched state)`);
      const fwd = await other.next((m) => m.type === 'fwd' && m.seq === ack.seq, `fwd seq ${ack.seq}`);
      assert.equal(fwd.id, undefined, 'fwd carries no id');
      assert.equal(fwd.room, room);
      assert.equal(fwd.prev, ack.prev);
      assert.equal(fwd.checksum, ack.checksum);
      assert.equal(fwd.client, sender.client);
      assert.equal(fwd.n, n);
      assert.deepEqual(fwd.action, JSON.parse(JSON.stringify({ type: 'patch', payload: steps[i] })));
      assert.equal(fwd.effects, undefined, 'json reducer: no effects (the payload is the patch)');
      head = { seq: ack.seq, checksum: ack.checksum };
    }
    for (const c of [a, b]) {
      const g = await c.request({ type: 'get', room });
      assert.equal(g.type, 'snapshot');
      assert.equal(g.seq, head.seq);
      assert.equal(g.checksum, head.checksum, 'get checksum = last ack checksum');
      assert.equal(checksum(g.state), g.checksum, 'checksum() over the state returned by get');
      assert.deepEqual(g.state, local, 'server state = locally tracked state');
    }
    // The sender never receives a fwd of its own action.
    for (const c of [a, b])
      assert.ok(!c.all.some((m) => m.type === 'fwd' && m.client === c.client), `${c.client} got a fwd of its own action`);
    // And each connection saw every seq exactly once (ack or fwd).
    for (const c of [a, b]) {
      const seqs = c.all.filter((m) => m.type === 'ack' || m.type === 'fwd').map((m) => m.seq);
      assert.deepEqual(seqs, steps.map((_, i) => i + 1), `${c.client} sees seqs in order`);
    }
    await a.close();
    await b.close();
  });
});

test('a third subscriber and an unsubscribed client: fwd only to current subscribers', async () => {
  await withDaemon({}, async (d) => {
    const [a, b, c] = await Promise.all(['a1', 'b1', 'c1'].map((n) => connectHello(d, n)));
    const room = 'todo:fan';
    for (const x of [a, b, c]) assert.equal((await x.request({ type: 'subscribe', room })).type, 'snapshot');
    const u = await c.request({ type: 'unsubscribe', room });
    assert.deepEqual(u, { type: 'unsubscribed', id: u.id, room });
    const ack = await a.request(patchAction(room, 1, [{ op: 'add', path: '/x', value: 1 }]));
    assert.equal(ack.type, 'ack');
    const fb = await b.next((m) => m.type === 'fwd');
    assert.equal(fb.seq, 1);
    const pong = await c.request({ type: 'ping' });
    assert.equal(pong.type, 'pong');
    assert.ok(!c.all.some((m) => m.type === 'fwd'), 'an unsubscribed connection gets no fwd');
    for (const x of [a, b, c]) await x.close();
  });
});

test('2 clients x 1000 pipelined inc on one counter: all acked, seqs 1..2000, chains and checksums agree', async () => {
  await withDaemon({}, async (d) => {
    const N = 1000;
    const room = 'count:pipelined';
    const a = await connectHello(d, 'pa');
    const b = await connectHello(d, 'pb');
    assert.equal((await a.request({ type: 'create', room, state: { counter: 0 } })).type, 'created');
    for (const c of [a, b]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    const op = [{ op: 'inc', path: '/counter', value: 1 }];
    // Interleave the two senders; nothing waits for an ack.
    for (let n = 1; n <= N; n++) {
      for (const c of [a, b]) c.send({ ...patchAction(room, n, op), id: 100000 + n });
    }
    const acks = (c) => c.all.filter((m) => m.type === 'ack');
    const fwds = (c) => c.all.filter((m) => m.type === 'fwd');
    await waitFor(() => acks(a).length >= N && acks(b).length >= N && fwds(a).length >= N && fwds(b).length >= N,
      'every action acked and forwarded', TIMEOUT * 6);
    for (const c of [a, b]) {
      assert.ok(!c.all.some((m) => m.type === 'reject' || m.type === 'error'),
        `${c.client}: no reject/error: ${JSON.stringify(c.all.find((m) => m.type === 'reject' || m.type === 'error'))}`);
      const ak = acks(c);
      assert.equal(ak.length, N, `${c.client}: exactly ${N} acks`);
      assert.deepEqual(ak.map((m) => m.n), Array.from({ length: N }, (_, i) => i + 1), `${c.client}: acks in n order`);
      assert.ok(ak.every((m) => m.id === 100000 + m.n), 'each ack echoes its request id');
    }
    const all = [...acks(a), ...acks(b)].map((m) => m.seq).sort((x, y) => x - y);
    assert.deepEqual(all, Array.from({ length: 2 * N }, (_, i) => i + 1), 'ack seqs are unique and exactly 1..2000');
    // Every connection sees the whole history in seq order, and the chain links.
    const expect = [checksum({ counter: 0 })];
    for (let k = 1; k <= 2 * N; k++) expect.push(checksum({ counter: k }));
    for (const c of [a, b]) {
      const seen = c.all.filter((m) => m.type === 'ack' || m.type === 'fwd');
      assert.equal(seen.length, 2 * N);
      for (let i = 0; i < seen.length; i++) {
        const m = seen[i];
        assert.equal(m.seq, i + 1, `${c.client}: message ${i} has seq ${m.seq}, expected ${i + 1} (seq order on one connection)`);
        assert.equal(m.prev, expect[i], `${c.client}: prev of seq ${m.seq}`);
        assert.equal(m.checksum, expect[i + 1], `${c.client}: checksum of seq ${m.seq} = checksum({counter:${i + 1}})`);
      }
      const g = await c.request({ type: 'get', room });
      assert.deepEqual(g.state, { counter: 2 * N }, 'final counter is exactly 2000');
      assert.equal(g.seq, 2 * N);
      assert.equal(seen[seen.length - 1].checksum, g.checksum, `${c.client}: last seen checksum = server checksum`);
      assert.equal(checksum(g.state), g.checksum);
      assert.equal(g.next_n, N + 1, 'next_n = highest n + 1');
    }
    await a.close();
    await b.close();
  });
});
