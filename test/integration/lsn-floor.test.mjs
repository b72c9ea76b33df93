// The LSN rule (docs/STORAGE.md "The LSN rule"): the next LSN is above
// every LSN on disk, snapshots included, so a record acked after a restart
// is never skipped by the next recovery as "covered by a snapshot".
//
// Issue #10 defect 3: following the documented answer to a damaged segment
// (move it and every later one out of wal/) left no segment, recovery
// started again at LSN 1 while snapshots covered LSNs far above, and the
// actions acked after that were skipped (lsn <= snapshot lsn) by the next
// recovery: lost without an error. These tests run the real daemon, kill it
// with SIGKILL and restart it on the same data directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, connectHello, makeConf, patchAction, runDaemonToExit, waitFor } from './lib.mjs';

const conf = (extra = []) => makeConf({ global: ['fsync always', 'snapshot_every 10', ...extra] });

// Send `count` inc actions to room from client `cl` starting at n `from`;
// every one must be acked. Returns the last ack.
async function incs(d, cl, room, from, count, pad = 0) {
  const c = await connectHello(d, cl);
  const s = await c.request({ type: 'subscribe', room });
  assert.equal(s.type, 'snapshot', JSON.stringify(s));
  let last;
  for (let n = from; n < from + count; n++) {
    const ops = [{ op: 'inc', path: '/c', value: 1 }];
    if (pad) ops.push({ op: 'add', path: '/pad', value: 'x'.repeat(pad) });
    last = await c.request(patchAction(room, n, ops));
    assert.equal(last.type, 'ack', JSON.stringify(last));
  }
  await c.close();
  return last;
}

async function head(d, room) {
  const c = await connectHello(d, 'lsn-reader');
  const g = await c.request({ type: 'get', room });
  await c.close();
  return g;
}

// The LSN a room's snapshot covers (its first payload word, after the
// 16-byte atomic-file header: docs/STORAGE.md), 0 when there is none.
function snapLsn(dataDir, room) {
  try {
    return Number(readFileSync(join(dataDir, 'rooms', `${room}.snap`)).readBigUInt64LE(16));
  } catch {
    return 0;
  }
}

// Snapshots are written by the writer thread, one at a time, the last one
// some time after the last ack (src/snapshot_writer.c): wait until room's
// snapshot leaves fewer than snapshot_every (10) of its records up to
// lastLsn uncovered, as it eventually must.
function snapshotsSettled(d, room, lastLsn) {
  return waitFor(() => snapLsn(d.dataDir, room) > lastLsn - 10, `${room}'s snapshot within 10 records of LSN ${lastLsn}`);
}

// The documented procedure for a damaged segment: move it and every later
// one out of the way. `from` picks the first segment to move (0: all).
function moveSegments(dataDir, dest, from = 0) {
  const segs = readdirSync(join(dataDir, 'wal')).filter((f) => /^wal-\d{20}\.log$/.test(f)).sort();
  mkdirSync(dest, { recursive: true });
  for (const f of segs.slice(from)) renameSync(join(dataDir, 'wal', f), join(dest, f));
  return segs.slice(from);
}

test('actions acked after every WAL segment was moved away survive the next crash (next LSN above every snapshot)', { timeout: 120000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-lsn-'));
  try {
    let d = await startDaemon({ conf: conf(), dir });
    // 35 actions: snapshots every 10 records (LSN 1 is the create: seq = LSN - 1)
    let ack = await incs(d, 'w', 'lsn:a', 1, 35);
    assert.equal(ack.seq, 35);
    // snapshots are written by the writer thread (src/snapshot_writer.c),
    // one at a time: wait until one covers seq 20 or more
    await waitFor(() => snapLsn(d.dataDir, 'lsn:a') >= 21, 'a snapshot covering LSN 21 (seq 20)');
    const covered = snapLsn(d.dataDir, 'lsn:a');
    await d.kill('SIGKILL');
    const moved = moveSegments(d.dataDir, join(dir, 'moved'));
    assert.ok(moved.length >= 1, 'there was a segment to move');

    d = await startDaemon({ conf: conf(), dir });
    const m = /event=recovered .*next_lsn=(\d+)/.exec(d.stderr);
    assert.ok(m && Number(m[1]) > covered, `next_lsn must be above the snapshot's LSN ${covered}; log: ${m && m[0]}`);
    let g = await head(d, 'lsn:a');
    const base = g.seq; // what the snapshot holds (the unsnapshotted tail went with the moved segments)
    assert.ok(base >= 20, `the snapshot holds seq ${base}`);
    ack = await incs(d, 'w2', 'lsn:a', 1, 5);
    assert.equal(ack.seq, base + 5);
    await d.kill('SIGKILL');

    d = await startDaemon({ conf: conf(), dir });
    g = await head(d, 'lsn:a');
    assert.equal(g.seq, base + 5, `the 5 actions acked after the move are lost: head seq ${g.seq}, acked up to ${base + 5}`);
    assert.equal(g.state.c, base + 5);
    await d.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('only the later segments moved: the rest of the WAL is folded into snapshots and acked actions of every room survive', { timeout: 120000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-lsn-'));
  // small segments: several files; a room with few records is never snapshotted
  const c = conf(['wal_segment_bytes 64k', 'wal_max_bytes 64m']);
  try {
    let d = await startDaemon({ conf: c, dir });
    await incs(d, 'w', 'lsn:b', 1, 3); // no snapshot: lives only in the first segments
    await incs(d, 'w', 'lsn:a', 1, 80, 3000); // ~4 segments; snapshots up to near the end
    await snapshotsSettled(d, 'lsn:a', 85); // 4 records of lsn:b, then lsn:a's create and 80 actions
    await d.kill('SIGKILL');
    const segs = readdirSync(join(d.dataDir, 'wal')).filter((f) => f.endsWith('.log'));
    assert.ok(segs.length >= 3, `several segments: ${segs}`);
    moveSegments(d.dataDir, join(dir, 'moved'), segs.length - 1); // the newest one "damaged"

    d = await startDaemon({ conf: c, dir });
    assert.match(d.stderr, /event=wal_folded /);
    let ga = await head(d, 'lsn:a');
    let gb = await head(d, 'lsn:b');
    assert.equal(gb.seq, 3, 'room b, only in the remaining segments, is intact');
    const baseA = ga.seq;
    await incs(d, 'w2', 'lsn:a', 1, 4);
    await incs(d, 'w2', 'lsn:b', 1, 4);
    await d.kill('SIGKILL');

    d = await startDaemon({ conf: c, dir });
    ga = await head(d, 'lsn:a');
    gb = await head(d, 'lsn:b');
    assert.equal(ga.seq, baseA + 4);
    assert.equal(gb.seq, 3 + 4);
    assert.equal(gb.state.c, 7);
    await d.stop();
    // and once more after a clean stop
    d = await startDaemon({ conf: c, dir });
    assert.equal((await head(d, 'lsn:b')).seq, 7);
    await d.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('moved segments put back after the daemon went on are refused (exit 2), not replayed out of order', { timeout: 120000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-lsn-'));
  try {
    let d = await startDaemon({ conf: conf(), dir });
    await incs(d, 'w', 'lsn:a', 1, 25);
    await snapshotsSettled(d, 'lsn:a', 26);
    // the moved segments must hold a record no snapshot covers (then the
    // LSNs handed out after the move overlap them); a snapshot written late
    // may cover all 26
    if (snapLsn(d.dataDir, 'lsn:a') >= 26) await incs(d, 'w', 'lsn:a', 26, 1);
    await d.kill('SIGKILL');
    const moved = moveSegments(d.dataDir, join(dir, 'moved'));
    d = await startDaemon({ conf: conf(), dir });
    await incs(d, 'w2', 'lsn:a', 1, 3);
    await d.kill('SIGKILL');
    for (const f of moved) renameSync(join(dir, 'moved', f), join(d.dataDir, 'wal', f));
    const r = await runDaemonToExit({ dir, conf: conf() });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /not contiguous|overlap/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
