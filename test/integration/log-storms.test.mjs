// A client cannot drive the log volume (src/log.c rate limit): a snapshot
// that fails on every action (snapshot_every 1, the rooms directory "full"
// through the FAULT file of the sanitizer build) logged its error lines for
// every action a client sent; now identical lines come at most once a
// second, with the count of the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDaemon, connectHello, patchAction, ASAN } from './lib.mjs';

const skipNoFault = ASAN ? false : 'needs a build with -DMX_FAULT_INJECTION (MOVEXD_ASAN=1)';
const CONF = 'log_level info\nsnapshot_every 1\nroom default {\n    create_on_subscribe yes\n}\n';
const N = 300;

test(`${N} actions whose snapshots all fail: a few log lines, not one or two per action`, { skip: skipNoFault }, async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const c = await connectHello(d, 'storm');
    assert.equal((await c.request({ type: 'subscribe', room: 'todo:storm' })).type, 'snapshot');
    const fault = join(d.dataDir, 'rooms', 'FAULT');
    writeFileSync(fault, 'enospc\n');
    const from = d.stderr.length;
    const t0 = Date.now();
    try {
      for (let n = 1; n <= N; n++) {
        const r = await c.request(patchAction('todo:storm', n, [{ op: 'inc', path: '/n', value: 1 }]));
        assert.equal(r.type, 'ack', JSON.stringify(r));
      }
    } finally {
      rmSync(fault, { force: true });
    }
    const secs = (Date.now() - t0) / 1000;
    const log = d.stderr.slice(from);
    const failed = (log.match(/event=snapshot_failed/g) || []).length;
    assert.ok(failed >= 1, `the failure is logged:\n${log.slice(0, 2000)}`);
    // at most one line a second per distinct line, and a few distinct ones
    assert.ok(failed <= 2 * (Math.ceil(secs) + 1), `${failed} snapshot_failed lines in ${secs.toFixed(1)} s for ${N} actions`);
    const lines = log.split('\n').filter(Boolean).length;
    assert.ok(lines < N / 2, `${lines} log lines for ${N} failing snapshots`);
    await c.close();
  });
});
