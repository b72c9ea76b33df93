// Presence across cluster nodes (issue #14, docs/CLUSTER.md "Presence
// across nodes"): two movexd nodes on one redis-server (started by the
// test on a free loopback port, stopped by PID). A connection's presence
// reaches the room's subscribers on the other node, a later subscriber
// there finds it in its subscribe reply, clearing and disconnecting are
// announced as left; a node killed with SIGKILL has its connections
// announced as left on the other node within the documented bound
// (heartbeat 1 s, given up after 3 s of silence: 4 s, plus slack here for
// a loaded machine).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedisGroup, startReadyNode, stopAll, nodeMetric } from './cluster-lib.mjs';
import { connectHello, SLOW } from './lib.mjs';

after(stopAll);

const node = (g, id) => startReadyNode(g, id);

const isPresence = (client, pred = () => true) => (m) => m.type === 'presence' && m.client === client && pred(m);

test('presence set on one node is seen on the other; clear and disconnect are left', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const b = await node(g, 'n2');
  const ann = await connectHello(a, 'ann');
  const bob = await connectHello(b, 'bob');
  assert.equal((await ann.request({ type: 'subscribe', room: 'p1' })).type, 'snapshot');
  assert.equal((await bob.request({ type: 'subscribe', room: 'p1' })).type, 'snapshot');
  assert.equal((await ann.request({ type: 'presence', room: 'p1', state: { at: 'x' } })).type, 'presence_ok');
  const seen = await bob.next(isPresence('ann'), 'ann on n2');
  assert.deepEqual(seen.state, { at: 'x' });
  assert.equal(seen.room, 'p1');
  // a later subscriber on n2 finds ann in its subscribe reply
  const cy = await connectHello(b, 'cy');
  const snap = await cy.request({ type: 'subscribe', room: 'p1' });
  const listed = snap.presence.find((p) => p.client === 'ann');
  assert.deepEqual(listed, { client: 'ann', conn: seen.conn, state: { at: 'x' } });
  // and a presence set on n2 reaches ann on n1
  assert.equal((await cy.request({ type: 'presence', room: 'p1', state: 7 })).type, 'presence_ok');
  assert.equal((await ann.next(isPresence('cy'), 'cy on n1')).state, 7);
  // clear: left
  await ann.request({ type: 'presence', room: 'p1', state: null });
  const gone = await bob.next(isPresence('ann', (m) => m.left), 'ann left');
  assert.equal(gone.conn, seen.conn);
  // set again, then disconnect: left
  await ann.request({ type: 'presence', room: 'p1', state: 1 });
  await bob.next(isPresence('ann', (m) => m.state === 1), 'ann again');
  await ann.close();
  await bob.next(isPresence('ann', (m) => m.left), 'ann left on close');
  await bob.close();
  await cy.close();
});

test('a node killed with SIGKILL: its connections leave on the other node within the bound', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const b = await node(g, 'n2');
  const ann = await connectHello(a, 'ann');
  const bob = await connectHello(b, 'bob');
  await ann.request({ type: 'subscribe', room: 'p2' });
  await bob.request({ type: 'subscribe', room: 'p2' });
  await ann.request({ type: 'presence', room: 'p2', state: { here: true } });
  await bob.next(isPresence('ann'), 'ann on n2');
  assert.equal(await nodeMetric(b, 'movexd_cluster_presence_remote'), 1);
  const t0 = Date.now();
  a.signal('SIGKILL');
  await bob.next(isPresence('ann', (m) => m.left), 'ann left after n1 was killed');
  const ms = Date.now() - t0;
  // 1 s heartbeat + 3 s silence = 4 s; slack for a loaded machine
  assert.ok(ms <= (4000 + 4000) * SLOW, `left after ${ms} ms`);
  assert.equal(await nodeMetric(b, 'movexd_cluster_presence_nodes_gone_total'), 1);
  assert.equal(await nodeMetric(b, 'movexd_cluster_presence_remote'), 0);
  assert.equal(await nodeMetric(b, 'movexd_cluster_presence_up'), 1);
  // the room itself is unaffected: bob keeps working on n2
  const s = await bob.request({ type: 'presence', room: 'p2', state: 2 });
  assert.equal(s.type, 'presence_ok');
  await bob.close();
  await ann.close();
});
