// Slow consumers: a connection that stops reading is closed once its send
// queue passes max_queue_bytes (4008, or 1006 when it is too stalled to read
// the close frame), while other readers get every fwd, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checksum } from '../../client/movex.js';
import { withDaemon, connectHello, patchAction, makeConf, waitFor, withTimeout, TIMEOUT } from './lib.mjs';

test('a paused reader is closed (slow_consumer); a normal reader receives every fwd in order', async () => {
  const conf = makeConf({ global: ['max_queue_bytes 262144'] });
  await withDaemon({ conf }, async (d) => {
    const room = 'todo:firehose';
    const w = await connectHello(d, 'writer');
    const slow = await connectHello(d, 'slow');
    const fast = await connectHello(d, 'fast');
    for (const c of [w, slow, fast]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    slow.ws._socket.pause(); // stop reading: kernel buffers fill, then the server's queue
    // Batches of 10 x 20 KB; the next batch goes only once the fast reader
    // has every fwd so far, so it never has more than ~200 KB in flight
    // (below max_queue_bytes even with empty kernel buffers) and is never
    // itself a slow consumer, however loaded the machine.
    const BATCH = 10, MAX = 2000; // at most 2000 x 20 KB = 40 MB through loopback
    const fastFwds = () => fast.all.filter((m) => m.type === 'fwd').length;
    let n = 0;
    let closedAt = 0;
    while (n < MAX) {
      const from = n + 1;
      for (let i = 0; i < BATCH; i++) {
        n++;
        // add on an existing member replaces it: the state stays ~20 KB
        w.send({ ...patchAction(room, n, [{ op: 'add', path: '/blob', value: `${n}:${'x'.repeat(20000)}` }]), id: n });
      }
      await w.next((m) => m.id === n, `ack of n=${n}`);
      assert.equal(w.all.filter((m) => m.type === 'ack').length, n, `all of ${from}..${n} acked`);
      await waitFor(() => fastFwds() >= n, `fast reader has ${n} fwds`);
      if (/event=slow_consumer/.test(d.stderr)) { closedAt = n; break; }
    }
    assert.ok(closedAt, `the server never logged event=slow_consumer after ${n} actions of 20 KB`);
    assert.match(d.stderr, /event=slow_consumer client=slow /, 'the slow connection is the one closed');
    // The fast reader got every fwd, in order, with a linked chain.
    await waitFor(() => fast.all.filter((m) => m.type === 'fwd').length >= n, `fast reader gets ${n} fwds`, TIMEOUT * 3);
    const fwds = fast.all.filter((m) => m.type === 'fwd');
    assert.equal(fwds.length, n);
    for (let i = 0; i < n; i++) {
      assert.equal(fwds[i].seq, i + 1, `fwd ${i} seq`);
      assert.equal(fwds[i].n, i + 1);
      if (i) assert.equal(fwds[i].prev, fwds[i - 1].checksum, `fwd ${i + 1} links to ${i}`);
    }
    assert.equal(fwds[n - 1].checksum, checksum({ blob: `${n}:${'x'.repeat(20000)}` }));
    assert.ok(!fast.all.some((m) => m.type === 'error'), 'no errors for the fast reader');
    // Once resumed, the slow reader drains what the kernel held and sees the close.
    slow.ws._socket.resume();
    const closed = await slow.closed;
    assert.ok([4008, 1006].includes(closed.code), `slow reader close code ${closed.code} (expected 4008, or 1006 when stalled)`);
    const got = slow.all.filter((m) => m.type === 'fwd');
    assert.ok(got.length < n, 'the slow reader did not get everything');
    got.forEach((m, i) => assert.equal(m.seq, i + 1, 'what the slow reader got is a gap-free prefix'));
    // The server keeps serving: the writer and the fast reader go on; the
    // slow client reconnects and gets a snapshot of the head.
    const more = await w.request(patchAction(room, n + 1, [{ op: 'remove', path: '/blob' }]));
    assert.equal(more.type, 'ack');
    const last = await fast.next((m) => m.type === 'fwd' && m.seq === n + 1, 'fwd after the close');
    assert.equal(last.checksum, checksum({}));
    const back = await connectHello(d, 'slow');
    const r = await back.request({ type: 'subscribe', room });
    assert.equal(r.type, 'snapshot');
    assert.equal(r.seq, n + 1, 'the reconnected reader reaches the head');
    assert.deepEqual(r.state, {});
    for (const c of [w, fast, back]) await c.close();
  });
});

// A reconnecting client whose missed actions add up to more than
// max_queue_bytes must still be able to catch up: the state itself (a
// snapshot) fits in the queue, so closing the connection as a slow consumer
// would only make it reconnect and be closed again, forever.
test('catch-up whose actions exceed max_queue_bytes still reaches the head (e.g. as a snapshot)', async () => {
  const conf = makeConf({ global: ['max_queue_bytes 262144'] });
  await withDaemon({ conf }, async (d) => {
    const room = 'todo:bigcatchup';
    const w = await connectHello(d, 'bw');
    let c = await connectHello(d, 'away');
    for (const x of [w, c]) assert.equal((await x.request({ type: 'subscribe', room })).type, 'snapshot');
    const s = await c.request({ type: 'get', room });
    await c.close();
    const K = 30; // 30 x 20 KB = 600 KB of actions; the state stays ~20 KB
    for (let n = 1; n <= K; n++) w.send({ ...patchAction(room, n, [{ op: 'add', path: '/blob', value: `${n}:${'x'.repeat(20000)}` }]), id: n });
    const lastAck = await w.next((m) => m.id === K, 'last ack');
    assert.equal(lastAck.seq, K);
    for (const type of ['subscribe', 'sync']) {
      c = await connectHello(d, 'away');
      c.send({ type, id: 7, room, since: { seq: s.seq, checksum: s.checksum } });
      const r = await Promise.race([
        c.next((m) => m.id === 7, `${type} reply`),
        c.closed.then((cl) => ({ closedWith: cl.code })),
      ]);
      assert.ok(r.type === 'actions' || r.type === 'snapshot',
        `${type} with since ${K} big actions ago: expected actions or snapshot, got ${JSON.stringify(r).slice(0, 200)} (stderr: ${d.stderr.split('\n').filter((l) => /slow_consumer/.test(l)).join(' | ')})`);
      assert.equal(r.type === 'actions' ? r.to : r.seq, K);
      assert.equal((await c.request({ type: 'ping' })).type, 'pong', 'the connection stays open');
      await c.close();
    }
    await w.close();
  });
});

// docs/PROTOCOL.md close codes: 4008 when the send queue passes
// max_queue_bytes; only "a reader too stalled to receive the close frame
// sees 1006". Here the reader keeps reading: a burst of replies in one
// event-loop turn (20 gets of a 40 KB state, sent in one TCP write) passes a
// 64 KB queue bound.
test('send queue over max_queue_bytes -> close code 4008 once the reader reads again; the daemon keeps serving', async () => {
  const conf = makeConf({ global: ['max_queue_bytes 64k'] });
  await withDaemon({ conf }, async (d) => {
    // Another client's actions fill the reader's queue while it does not
    // read. (A burst of the reader's own requests would not: the daemon
    // stops reading a connection whose replies fill half the bound -
    // backpressure, memory-bounds.test.mjs.)
    const a = await connectHello(d, 'burst');
    const w = await connectHello(d, 'burst-writer');
    const room = 'todo:burst';
    for (const c of [a, w]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    a.ws._socket.pause();
    for (let n = 1; n <= 3000 && !/event=slow_consumer/.test(d.stderr); n++) {
      const r = await w.request(patchAction(room, n, [{ op: 'add', path: '/s', value: `${n}${'x'.repeat(20000)}` }]));
      assert.equal(r.type, 'ack');
    }
    assert.match(d.stderr, /event=slow_consumer client=burst /, 'closed as a slow consumer');
    a.ws._socket.resume();
    const closed = await withTimeout(a.closed, TIMEOUT, 'close');
    assert.ok([4008, 1006].includes(closed.code), `close code ${closed.code} (4008, or 1006 when too stalled for the close frame)`);
    // The daemon keeps serving.
    const b = await connectHello(d, 'after');
    assert.equal((await b.request({ type: 'ping' })).type, 'pong');
    await b.close();
    await w.close();
  });
});
