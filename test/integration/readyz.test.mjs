// /readyz says why it is not ready (src/http.c, mx_engine_ready): a full
// disk that refuses new actions at reserve time, with nothing held and
// every flush succeeding, used to answer "200 ready" while every action was
// rejected `unavailable`. The full disk is faked as the durability tests do
// it: a file named FAULT in the WAL directory (builds with
// -DMX_FAULT_INJECTION, i.e. MOVEXD_ASAN=1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDaemon, connectHello, httpRequest, patchAction, waitFor, ASAN } from './lib.mjs';

const skipNoFault = ASAN ? false : 'needs a build with -DMX_FAULT_INJECTION (MOVEXD_ASAN=1)';

// Each action is bigger than a segment's worth of reservation (6 x the
// message + 4 KiB > 64 KiB), so every one opens a new WAL segment: with
// FAULT=enospc the next one is refused at reserve time, before anything is
// written, and no flush ever fails.
const CONF = 'log_level info\nwal_segment_bytes 64k\nroom default {\n    create_on_subscribe yes\n}\n';
const big = (n) => [{ op: 'add', path: `/k${n}`, value: 'x'.repeat(12000) }];

test('/readyz is 503 with its reason while a full disk refuses every action (unavailable), 200 once space is back', { skip: skipNoFault }, async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const readyz = () => httpRequest(d, { path: '/readyz' });
    const c = await connectHello(d, 'alice');
    assert.equal((await c.request({ type: 'subscribe', room: 'todo:full' })).type, 'snapshot');
    assert.equal((await c.request(patchAction('todo:full', 1, big(1)))).type, 'ack');
    let r = await readyz();
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ready\n');
    const fault = join(d.dataDir, 'wal', 'FAULT');
    writeFileSync(fault, 'enospc\n');
    try {
      const rej = await c.request(patchAction('todo:full', 2, big(2)));
      assert.equal(rej.type, 'reject', JSON.stringify(rej));
      assert.equal(rej.code, 'unavailable');
      r = await readyz();
      assert.equal(r.status, 503, `/readyz while every action is refused: ${JSON.stringify(r)}`);
      assert.equal(r.body, 'disk full: new actions are refused (unavailable)\n');
      assert.equal((await httpRequest(d, { path: '/healthz' })).status, 200, 'alive all the same');
    } finally {
      rmSync(fault, { force: true });
    }
    // the probe notices the space by itself: no action needed first
    await waitFor(async () => (await readyz()).status === 200, '/readyz 200 after the space returned');
    assert.equal((await c.request(patchAction('todo:full', 2, big(2)))).type, 'ack');
    await c.close();
  });
});

test('/readyz says "storage failing" while a failed flush holds acks', { skip: skipNoFault }, async () => {
  await withDaemon({ conf: CONF.replace('wal_segment_bytes 64k\n', '') }, async (d) => {
    const c = await connectHello(d, 'bob');
    assert.equal((await c.request({ type: 'subscribe', room: 'todo:held' })).type, 'snapshot');
    const fault = join(d.dataDir, 'wal', 'FAULT');
    writeFileSync(fault, 'enospc\n');
    let held;
    try {
      held = c.request(patchAction('todo:held', 1, [{ op: 'add', path: '/a', value: 1 }]));
      held.catch(() => {});
      await d.waitLog(/event=(disk_full|wal_unavailable)/);
      const r = await httpRequest(d, { path: '/readyz' });
      assert.equal(r.status, 503);
      assert.match(r.body, /^storage failing: acks are held/);
    } finally {
      rmSync(fault, { force: true });
    }
    assert.equal((await held).type, 'ack', 'the held ack goes once the write succeeds');
    await waitFor(async () => (await httpRequest(d, { path: '/readyz' })).status === 200, '/readyz 200 again');
    await c.close();
  });
});
