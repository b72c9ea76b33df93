// The snapshot writer thread (src/snapshot_writer.c, docs/STORAGE.md "Off
// the loop"): a snapshot's file work - the WAL fdatasync, wal/STATE, the
// file, its fsync and rename - runs off the event loop. A -DMX_FAULT_INJECTION
// build (the ASan variant) parks that thread where DIR/FAULT says "pause"
// (it creates DIR/FAULT.paused while parked; the loop's own checks ignore
// "pause"). So these tests hold a snapshot half done, show that acks keep
// coming meanwhile, kill -9 the daemon there, and check after the restart
// that every acked action is in place; that a SIGTERM then waits for the
// job and still snapshots everything; and that a room deleted while its
// snapshot is in flight stays deleted. One test (any build) runs the W4
// shape under load with snapshots due every few actions and a short log, so
// the thread keeps writing pinned log texts while the loop appends and trims:
// `make test` runs this file on the ThreadSanitizer build too
// (scripts/run-tests.sh), where a race between the two fails it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checksum } from '../../client/movex.js';
import { startDaemon, connectHello, makeConf, patchAction, waitFor, httpRequest, ASAN, LOADGEN, runLoadgen, assertLoadgenGood } from './lib.mjs';

const skip = ASAN ? false : 'needs a build with -DMX_FAULT_INJECTION (MOVEXD_ASAN=1)';
const EVERY = 20;
const ACT = [{ op: 'inc', path: '/count', value: 1 }];

async function ackAll(c, room, from, to) {
  for (let n = from; n <= to; n++) {
    const r = await c.request(patchAction(room, n, ACT));
    assert.equal(r.type, 'ack', JSON.stringify(r));
  }
}

// Run fn(live) on a daemon whose directory outlives its restarts (each
// restart replaces live.d); always kill what is left and remove the dir.
async function withKept(opts, fn) {
  const live = { d: await startDaemon({ keepDir: true, ...opts }) };
  try {
    await fn(live);
  } finally {
    const { d } = live;
    if (d.proc.exitCode === null && d.proc.signalCode === null) await d.kill().catch(() => {});
    d.cleanup();
  }
}

// Subscribe c to room, park the writer thread at DIR/FAULT (where: rooms or
// wal), ack actions 1..n (the room comes due on the way, its snapshot goes
// to the thread) and wait until the thread is parked. Returns FAULT's path.
async function parkWriter(d, c, room, where, n) {
  assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
  const fault = join(d.dataDir, where, 'FAULT');
  writeFileSync(fault, 'pause\n');
  await ackAll(c, room, 1, n);
  await waitFor(() => existsSync(`${fault}.paused`), `the writer thread parked at ${where}/FAULT`);
  return fault;
}

async function get(c, room) {
  const g = await c.request({ type: 'get', room });
  assert.equal(g.type, 'snapshot', JSON.stringify(g));
  assert.equal(checksum(g.state), g.checksum);
  return g;
}

// Park the writer at `where` (wal: before the WAL fdatasync; rooms: before
// the snapshot file's first write), keep acking, kill -9, restart.
for (const [where, fsync] of [['rooms', 'no'], ['rooms', 'always'], ['wal', 'no']]) {
  test(`kill -9 while the writer thread is parked in a snapshot (${where}/FAULT pause, fsync ${fsync}): acks go on meanwhile, every acked action survives`, { skip }, async () => {
    const conf = makeConf({ global: [`fsync ${fsync}`, `snapshot_every ${EVERY}`] });
    await withKept({ conf }, async (live) => {
      let { d } = live;
      const c = await connectHello(d, 'w');
      const fault = await parkWriter(d, c, 'sw:a', where, EVERY + 5);
      // the loop is not waiting for the thread: more actions are acked,
      // the room comes due again (coalesced with the one in flight)
      await ackAll(c, 'sw:a', EVERY + 6, 3 * EVERY);
      const before = await get(c, 'sw:a');
      assert.equal(before.seq, 3 * EVERY);
      assert.ok(existsSync(`${fault}.paused`), 'still parked: everything above was acked while a snapshot was half done');
      assert.ok(!existsSync(join(d.dataDir, 'rooms', 'sw:a.snap')), 'the snapshot was not written');
      await c.close();
      await d.kill('SIGKILL');
      rmSync(fault, { force: true });
      rmSync(`${fault}.paused`, { force: true });
      d = live.d = await startDaemon({ conf, dir: d.dir });
      const c2 = await connectHello(d, 'w');
      const after = await get(c2, 'sw:a');
      assert.equal(after.seq, before.seq);
      assert.equal(after.checksum, before.checksum);
      assert.deepEqual(after.state, { count: 3 * EVERY });
      assert.equal((await c2.request({ type: 'subscribe', room: 'sw:a' })).type, 'snapshot');
      const dup = await c2.request(patchAction('sw:a', 3 * EVERY, ACT));
      assert.equal(dup.duplicate, true, JSON.stringify(dup));
      // and snapshots work again after the restart
      await ackAll(c2, 'sw:a', 3 * EVERY + 1, 4 * EVERY + 1);
      await waitFor(() => existsSync(join(d.dataDir, 'rooms', 'sw:a.snap')), 'a snapshot after the restart');
      await c2.close();
      await d.stop();
    });
  });
}

test('SIGTERM while the writer thread is parked in a snapshot: the shutdown waits for it, then snapshots the rest (covering the last record); the restart has every action', { skip }, async () => {
  const conf = makeConf({ global: ['fsync no', `snapshot_every ${EVERY}`] });
  await withKept({ conf }, async (live) => {
    let { d } = live;
    const c = await connectHello(d, 'w');
    const fault = await parkWriter(d, c, 'sw:t', 'rooms', EVERY + 2);
    await ackAll(c, 'sw:t', EVERY + 3, 2 * EVERY + 7); // due again meanwhile
    const before = await get(c, 'sw:t');
    await c.close();
    d.proc.kill('SIGTERM');
    rmSync(fault, { force: true }); // the stop cannot finish before this
    const st = await d.waitExit();
    assert.equal(st.code, 0, d.stderr.slice(-2000));
    // the stop's own snapshot covers every record (the 16-byte file header,
    // then the LSN it covers: docs/STORAGE.md)
    const lsn = Number(readFileSync(join(d.dataDir, 'rooms', 'sw:t.snap')).readBigUInt64LE(16));
    d = live.d = await startDaemon({ conf, dir: d.dir });
    const next = Number(/event=recovered .*next_lsn=(\d+)/.exec(d.stderr)[1]);
    assert.equal(lsn, next - 1, 'the snapshot written at the stop covers the last record');
    const c2 = await connectHello(d, 'w');
    const after = await get(c2, 'sw:t');
    assert.equal(after.seq, before.seq);
    assert.equal(after.checksum, before.checksum);
    assert.deepEqual(after.state, { count: 2 * EVERY + 7 });
    await c2.close();
    await d.stop();
  });
});

test('a room deleted while its snapshot is in flight stays deleted after kill -9 (the delete waits for the writer; the file is unlinked after it)', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-sw-'));
  const token = 'sw-admin-token-0123456789abcdef0123';
  const tokenFile = join(dir, 'admin.token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const conf = makeConf({ global: ['fsync always', `snapshot_every ${EVERY}`, `admin_token_file ${tokenFile}`] });
  await withKept({ conf, dir }, async (live) => {
    let { d } = live;
    const c = await connectHello(d, 'w');
    const fault = await parkWriter(d, c, 'sw:d', 'rooms', EVERY + 2);
    await c.close();
    const del = httpRequest(d, {
      method: 'DELETE', path: '/admin/rooms/sw:d', headers: { authorization: `Bearer ${token}` },
    });
    rmSync(fault, { force: true }); // the writer goes on; the delete completes after it
    const r = await del;
    assert.equal(r.status, 200, r.body);
    // the job's outcome is applied (collected) by /metrics at the latest:
    // the room it names is gone by then, and the daemon must not touch it
    const written = async () => {
      const m = await httpRequest(d, { path: '/metrics' });
      return Number((/^movexd_snapshots_written_total (\d+)$/m.exec(m.body) || [])[1]) >= 1;
    };
    await waitFor(written, 'the snapshot job collected');
    assert.ok(!existsSync(join(d.dataDir, 'rooms', 'sw:d.snap')), 'the snapshot written in flight is unlinked');
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf, dir });
    const c2 = await connectHello(d, 'w');
    const g = await c2.request({ type: 'get', room: 'sw:d' });
    assert.equal(g.type, 'error', JSON.stringify(g));
    assert.equal(g.code, 'no_such_room', JSON.stringify(g));
    await c2.close();
    await d.stop();
  });
});

test('W4 shape under load (loadgen: 8 writers over 2 rooms) with snapshot_every 20 and history 8: the writer thread writes from pinned log texts while the loop appends and trims; counters correct, clean SIGTERM, the restart has the same rooms', {
  skip: existsSync(LOADGEN) ? false : 'build/release/bench/loadgen missing: make VARIANT=release bench-bin',
}, async () => {
  const conf = makeConf({
    global: ['rate_messages_per_sec 1000000', 'rate_burst 10000000', 'max_connections_per_ip 100000', `snapshot_every ${EVERY}`],
    room: ['history 8'],
  });
  await withKept({ conf }, async (live) => {
    let { d } = live;
    const r = await runLoadgen(['--port', String(d.port), '--writers', '8', '--rooms', '2', '--window', '4', '--subscribers', '0', '--prefix', 'sw4']);
    assertLoadgenGood(r, 'W4');
    const m = await httpRequest(d, { path: '/metrics' });
    const written = Number((/^movexd_snapshots_written_total (\d+)$/m.exec(m.body) || [])[1]);
    // one job at a time; at least a few ran while the writers went on
    assert.ok(written >= 3, `${written} snapshots for ${r.result.acked} acks`);
    const rooms = ['sw4:r0', 'sw4:r1'];
    const c = await connectHello(d, 'w');
    const before = [];
    for (const room of rooms) before.push(await get(c, room));
    await c.close();
    await d.stop(); // a clean exit: a sanitizer report makes it non-zero
    d = live.d = await startDaemon({ conf, dir: d.dir });
    const c2 = await connectHello(d, 'w');
    for (const [i, room] of rooms.entries()) {
      const after = await get(c2, room);
      assert.equal(after.seq, before[i].seq, room);
      assert.equal(after.checksum, before[i].checksum, room);
    }
    await c2.close();
    await d.stop();
  });
});
