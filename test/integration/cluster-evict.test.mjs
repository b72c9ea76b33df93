// Eviction of idle rooms in cluster mode (issue #14, docs/CLUSTER.md
// "Eviction"), with real daemons on one redis-server (started by the test
// on a free loopback port, stopped by PID). n1 evicts rooms idle for
// 300 ms; n2 keeps them (the default 300 s). Rooms n2 wrote and n1 only
// read leave n1's memory (movexd_rooms_loaded, movexd_cluster_rooms fall
// back, RSS stays bounded over a second round of as many rooms); an
// evicted room comes back from Redis current - with what n2 wrote while it
// was away - with the right seq, checksum and `since` catch-up. A room n1
// wrote itself stays while its journal keeps the batches (a rollback
// found later must still replay them).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startRedisGroup, startReadyNode, stopAll, nodeMetric as metric, checkInvariants, until } from './cluster-lib.mjs';
import { connectHello, patchAction, ASAN } from './lib.mjs';

after(stopAll);

const rssKiB = (d) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${d.pid ?? d.proc.pid}/status`, 'utf8'))[1]);

// each of `rooms` is created by w (n2), gets one action from it and is read once by r (n1):
// subscribe, check the snapshot, unsubscribe. Windows of 128 requests.
async function touch(w, r, rooms, sums) {
  const W = 128;
  for (let i = 0; i < rooms.length; i += W) {
    const part = rooms.slice(i, i + W);
    const made = await Promise.all(part.map((room) => w.request({ type: 'subscribe', room })));
    made.forEach((m) => assert.equal(m.type, 'snapshot', JSON.stringify(m)));
    const acks = await Promise.all(part.map((room) => w.request(patchAction(room, 1, [{ op: 'add', path: '/v', value: room }]))));
    acks.forEach((a, k) => { assert.equal(a.type, 'ack', JSON.stringify(a)); sums.set(part[k], a); });
    await Promise.all(part.map((room) => w.request({ type: 'unsubscribe', room })));
    const snaps = await Promise.all(part.map((room) => r.request({ type: 'subscribe', room })));
    snaps.forEach((s, k) => {
      assert.equal(s.type, 'snapshot', JSON.stringify(s));
      assert.equal(s.seq, sums.get(part[k]).seq);
      assert.equal(s.checksum, sums.get(part[k]).checksum);
    });
    const un = await Promise.all(part.map((room) => r.request({ type: 'unsubscribe', room })));
    un.forEach((u) => assert.equal(u.type, 'unsubscribed', JSON.stringify(u)));
  }
}

test('idle rooms leave a node\'s memory and come back current from Redis', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const n1 = await startReadyNode(g, 'n1', { global: ['evict_idle_ms 300ms'] });
  const n2 = await startReadyNode(g, 'n2');
  const r = await connectHello(n1, 'r');
  const w = await connectHello(n2, 'w');
  const sums = new Map();
  const N = 600;
  const round = (k) => Array.from({ length: N }, (_, i) => `ev${k}:${i}`);

  // a room n1 writes itself: its batch is in n1's journal, so it stays
  assert.equal((await r.request({ type: 'subscribe', room: 'mine:1' })).type, 'snapshot');
  const own = await r.request(patchAction('mine:1', 1, [{ op: 'add', path: '/x', value: 1 }]));
  assert.equal(own.type, 'ack', JSON.stringify(own));
  assert.equal((await r.request({ type: 'unsubscribe', room: 'mine:1' })).type, 'unsubscribed');

  await touch(w, r, round(1), sums);
  await until(async () => await metric(n1, 'movexd_rooms_loaded') <= 1, 'n1 evicts round 1');
  assert.equal(await metric(n1, 'movexd_rooms_loaded'), 1); // mine:1
  await until(async () => await metric(n1, 'movexd_cluster_rooms') <= 1, 'n1 lets go of the replicas');
  assert.ok(await metric(n1, 'movexd_cluster_rooms_evicted_total') >= N);
  assert.ok(await metric(n1, 'movexd_rooms_evicted_total') >= N);
  assert.equal(await metric(n2, 'movexd_rooms_loaded'), N); // n2 does not evict (300 s)
  const rss1 = rssKiB(n1);

  // as many other rooms again: memory follows the live rooms, not the ones touched
  await touch(w, r, round(2), sums);
  await until(async () => await metric(n1, 'movexd_rooms_loaded') <= 1, 'n1 evicts round 2');
  const rss2 = rssKiB(n1);
  // never freed, N rooms cost ~4.6 KB each (2.7 MB here): allow half of it
  // (not under ASan: its quarantine keeps freed memory resident on purpose)
  if (!ASAN) assert.ok(rss2 - rss1 < (N * 4.6) / 2, `RSS ${rss1} -> ${rss2} KiB over ${N} more rooms`);
  console.log(`n1 RSS after round 1 ${rss1} KiB, after round 2 ${rss2} KiB`);

  // an evicted room, written by n2 while it is away from n1, comes back current
  const room = 'ev1:7';
  assert.equal((await w.request({ type: 'subscribe', room })).type, 'snapshot');
  const a2 = await w.request(patchAction(room, 2, [{ op: 'add', path: '/w', value: 2 }]));
  const a3 = await w.request(patchAction(room, 3, [{ op: 'add', path: '/w', value: 3 }]));
  assert.equal(a3.type, 'ack', JSON.stringify(a3));
  assert.equal(a3.seq, sums.get(room).seq + 2);
  const s = await r.request({ type: 'subscribe', room });
  assert.equal(s.type, 'snapshot');
  assert.equal(s.seq, a3.seq);
  assert.equal(s.checksum, a3.checksum);
  assert.deepEqual(s.state, { v: room, w: 3 });
  // `since` catch-up from before the eviction
  const first = sums.get(room);
  const cu = await r.request({ type: 'sync', room, since: { seq: first.seq, checksum: first.checksum } });
  assert.equal(cu.type, 'actions', JSON.stringify(cu));
  assert.deepEqual(cu.actions.map((x) => x.seq), [a2.seq, a3.seq]);
  assert.equal(cu.actions[1].checksum, a3.checksum);
  // subscribed again: fwds of what n2 writes now
  const a4 = await w.request(patchAction(room, 4, [{ op: 'add', path: '/w', value: 4 }]));
  const f = await r.next((m) => m.type === 'fwd' && m.room === room && m.seq === a4.seq, 'fwd after the reload');
  assert.equal(f.checksum, a4.checksum);
  // and n1 writes to it
  const a5 = await r.request(patchAction(room, 5, [{ op: 'add', path: '/w', value: 5 }]));
  assert.equal(a5.type, 'ack', JSON.stringify(a5));
  assert.equal(a5.seq, a4.seq + 1);
  await checkInvariants(g.primary.port, { rooms: [room, 'mine:1', 'ev2:0'], nodes: [n1, n2] });
  await r.close();
  await w.close();
  // a clean shutdown after evictions and reloads (under ASan: no leak, exit 0)
  await n1.stop();
  await n2.stop();
});
