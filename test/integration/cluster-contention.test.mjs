// A hot room written from three nodes at once (issue #14, docs/CLUSTER.md
// "Contention, honestly"): writers on every node keep a window of actions
// in flight into ONE room for a bounded count. A node whose batch is
// answered `moved` rolls it back in place and decides it again on the
// fresh head; it never reloads the room, and no client is answered
// `unavailable`. Every ack is in the room's log once, at the seq it named;
// every subscriber sees 1..total in order; the harness's invariant checker
// passes (gap-free seqs, each (client, n) once, the hash chain, every
// node's checksum at its seq = the log's).
//
// On the old commit path (reload on `moved`, retries bounded by
// append_retries) the same load answered actions `unavailable`.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedisGroup, startReadyNode, stopAll, checkInvariants, waitConverged, nodeMetric, missingAcks } from './cluster-lib.mjs';
import { connectHello, patchAction, waitFor, TIMEOUT } from './lib.mjs';

after(stopAll);

test('three nodes pipelining into one room: no unavailable, no reload, every ack once in the log, invariants hold', async () => {
  const r = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const nodes = [];
  // a history above the total: no snapshot trims the stream, so the
  // checker sees every entry
  const global = ['room big {', '    reducer json', '    history 4096', '    create_on_subscribe yes', '}'];
  for (let i = 1; i <= 3; i++) nodes.push(await startReadyNode(r, `n${i}`, { global }));
  const room = 'big:hot';
  const writers = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let k = 0; k < 2; k++) {
      const c = await connectHello(nodes[i], `w${i}${k}`);
      assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
      writers.push(c);
    }
  }
  // the room exists and every node has loaded it: from here on, a load
  // would be a reload
  const loads0 = await Promise.all(nodes.map((d) => nodeMetric(d, 'movexd_cluster_reloads_total')));
  const PER = 500; // actions per writer
  const WINDOW = 32; // kept in flight per writer: each reply sends the next
  const acks = [];
  const bad = [];
  let finished = 0;
  for (const c of writers) {
    let sent = 0;
    let answered = 0;
    const send = () => {
      sent++;
      c.send({ ...patchAction(room, sent, [{ op: 'add', path: `/k_${c.client}_${sent}`, value: sent }]), id: 1000 + sent });
    };
    // replies are counted as they arrive (not through next(): thousands
    // of unconsumed fwds would make each lookup slow)
    c.ws.on('message', (d) => {
      const m = JSON.parse(String(d));
      if (m.room !== room || !(m.id > 1000)) return;
      if (m.type === 'ack') acks.push({ client: c.client, n: m.n, seq: m.seq });
      else bad.push(m);
      if (sent < PER) send();
      if (++answered === PER) finished++;
    });
    while (sent < WINDOW) send();
  }
  // bounded: 3,000 actions; generous for ASan on a loaded machine
  await waitFor(() => finished === writers.length, 'every action answered', 12 * TIMEOUT);
  const total = writers.length * PER;
  assert.deepEqual(bad.slice(0, 5), [], `${bad.length} actions not acked`);
  assert.equal(acks.length, total);
  const moved = (await Promise.all(nodes.map((d) => nodeMetric(d, 'movexd_cluster_moved_total')))).reduce((a, b) => a + b, 0);
  const rolled = (await Promise.all(nodes.map((d) => nodeMetric(d, 'movexd_cluster_rolled_back_total')))).reduce((a, b) => a + b, 0);
  const loads = await Promise.all(nodes.map((d) => nodeMetric(d, 'movexd_cluster_reloads_total')));
  assert.ok(moved > 0, 'the nodes contended (moved > 0)');
  assert.deepEqual(loads, loads0, 'no node reloaded the room');
  assert.equal(rolled, moved, 'every moved batch was rolled back in place');
  // every subscriber (one per writer) saw exactly 1..total, in order
  for (const c of writers) {
    await waitFor(() => {
      const s = c.all.filter((m) => m.room === room && ((m.type === 'ack' && !m.duplicate) || m.type === 'fwd'));
      return s.length && s[s.length - 1].seq === total;
    }, `${c.client} reaches seq ${total}`);
    const seqs = c.all.filter((m) => m.room === room && ((m.type === 'ack' && !m.duplicate) || m.type === 'fwd')).map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => i + 1), c.client);
  }
  const heads = await Promise.all(writers.map((c) => c.request({ type: 'get', room })));
  for (const h of heads) assert.deepEqual([h.seq, h.checksum, Object.keys(h.state).length], [total, heads[0].checksum, total]);
  await waitConverged(r.primary.port, nodes, [room]);
  const res = await checkInvariants(r.primary.port, { rooms: [room], nodes });
  assert.deepEqual(missingAcks(res, room, acks, { sameSeq: true }), [], 'every ack in the log at its seq');
  assert.equal(res.rooms.get(room).seq, total);
  for (const c of writers) await c.close();
});
