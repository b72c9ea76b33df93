// A WAL segment cut short by something other than a crash (truncated, an
// incomplete copy) must stop start-up, naming the file and what to do,
// whenever acknowledged records could be missing (docs/STORAGE.md, "Which
// cuts are a crash"). Before this, a last segment truncated to 0 bytes or
// at a record boundary after a SIGKILL read as a shorter log: the daemon
// started and the acked actions in it were gone without an error.
// Also: wal/STATE lets start-up settle the LSN rule without reading every
// snapshot header, and older data directories without it still start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  closeSync, existsSync, mkdtempSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync,
  truncateSync, unlinkSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, runDaemonToExit, connectHello, makeConf, patchAction, walRecords } from './lib.mjs';

// small segments: several files; no snapshot before the end
const conf = makeConf({ global: ['fsync always', 'snapshot_every 1000000', 'wal_segment_bytes 64k'] });

const segments = (dataDir) => readdirSync(join(dataDir, 'wal')).filter((f) => /^wal-\d{20}\.log$/.test(f)).sort();

// 60 acked actions of ~3 KB each: 4-5 segments
async function fill(d, room = 'cut:a') {
  const c = await connectHello(d, 'w');
  await c.request({ type: 'subscribe', room });
  for (let n = 1; n <= 60; n++) {
    const a = await c.request(patchAction(room, n, [{ op: 'add', path: `/p${n}`, value: 'x'.repeat(3000) }]));
    assert.equal(a.type, 'ack', JSON.stringify(a));
  }
  await c.close();
}

// Where each record of a segment file ends.
const recordEnds = (buf) => walRecords(buf).recs.map((r) => r.off + 8 + r.len);

async function crashedDir() {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-cut-'));
  const d = await startDaemon({ conf, dir });
  await fill(d);
  await d.kill('SIGKILL');
  const segs = segments(d.dataDir);
  assert.ok(segs.length >= 3, `several segments: ${segs}`);
  return { dir, dataDir: d.dataDir, segs, wal: join(d.dataDir, 'wal') };
}

for (const [what, cut] of [
  ['truncated to 0 bytes', () => 0],
  ['cut at a record boundary (its last record gone)', (buf) => recordEnds(buf).at(-2)],
  ['cut inside its last record', (buf) => recordEnds(buf).at(-2) + 100],
]) {
  test(`the last segment ${what} after a crash: start-up refuses (exit 2) naming it`, { timeout: 120000 }, async () => {
    const { dir, segs, wal } = await crashedDir();
    try {
      const last = join(wal, segs.at(-1));
      const at = cut(readFileSync(last));
      assert.ok(at !== undefined, 'the last segment holds two records or more');
      truncateSync(last, at);
      const r = await runDaemonToExit({ dir, conf });
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(segs.at(-1)), r.stderr);
      assert.match(r.stderr, /cut short/);
      assert.match(r.stderr, /acknowledged records may be missing/);
      assert.match(r.stderr, /restore this segment from a backup/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('a segment before the last one emptied: refused naming it and the missing LSNs; the documented way out then starts', { timeout: 120000 }, async () => {
  const { dir, segs, wal } = await crashedDir();
  let d;
  try {
    truncateSync(join(wal, segs[1]), 0);
    const r = await runDaemonToExit({ dir, conf });
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(segs[1]) && r.stderr.includes(segs[2]), r.stderr);
    assert.match(r.stderr, /LSNs \d+\.\.\d+ are missing/);
    assert.match(r.stderr, /the segment is empty but is not the last one/);
    // accepting the loss: that segment and every later one moved out
    mkdirSync(join(dir, 'moved'));
    for (const f of segs.slice(1)) renameSync(join(wal, f), join(dir, 'moved', f));
    d = await startDaemon({ conf, dir });
    const c = await connectHello(d, 'r');
    const g = await c.request({ type: 'get', room: 'cut:a' });
    assert.equal(g.type, 'snapshot', JSON.stringify(g));
    assert.ok(g.seq >= 1 && g.seq < 60, `what the first segment held: seq ${g.seq}`);
    await c.close();
  } finally {
    if (d) await d.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a crash\'s torn tail still recovers, and every acked action is there', { timeout: 120000 }, async () => {
  const { dir, segs, wal } = await crashedDir();
  let d;
  try {
    // a torn write: the next record's header and part of its payload in
    // the preallocated space after the last record
    const last = join(wal, segs.at(-1));
    const buf = readFileSync(last);
    const end = recordEnds(buf).at(-1);
    const fd = openSync(last, 'r+');
    const torn = Buffer.alloc(40, 7);
    torn.writeUInt32LE(3000, 0);
    writeSync(fd, torn, 0, torn.length, end);
    closeSync(fd);
    d = await startDaemon({ conf, dir });
    assert.match(d.stderr, /event=wal_torn_tail_cut/);
    const c = await connectHello(d, 'r');
    const g = await c.request({ type: 'get', room: 'cut:a' });
    assert.equal(g.seq, 60);
    await c.close();
    await d.kill('SIGKILL');
    // cut after a zero length word: the next start reads it as a crash's end too
    d = await startDaemon({ conf, dir });
    assert.doesNotMatch(d.stderr, /event=wal_torn_tail_cut/);
  } finally {
    if (d) await d.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('wal/STATE: a restart reads it instead of every snapshot header; without it (an older data directory) the headers are read and a clean-stop segment ending at its records is accepted', { timeout: 120000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-state-'));
  const sconf = makeConf({ global: ['fsync always', 'snapshot_every 5'] });
  let d;
  try {
    d = await startDaemon({ conf: sconf, dir });
    assert.match(d.stderr, /event=recovered .*lsn_floor=(scan|state)/);
    const c = await connectHello(d, 'w');
    for (const room of ['st:a', 'st:b', 'st:c']) {
      await c.request({ type: 'subscribe', room });
      for (let n = 1; n <= 12; n++) {
        const a = await c.request(patchAction(room, n, [{ op: 'inc', path: '/c', value: 1 }]));
        assert.equal(a.type, 'ack', JSON.stringify(a));
      }
    }
    await c.close();
    await d.kill('SIGKILL');
    const state = join(d.dataDir, 'wal', 'STATE');
    assert.ok(existsSync(state), 'wal/STATE written');
    d = await startDaemon({ conf: sconf, dir });
    assert.match(d.stderr, /event=recovered .*lsn_floor=state/);
    await d.stop();
    // as an older movexd leaves it: no STATE, the last segment cut at the
    // end of its records by the clean stop
    unlinkSync(state);
    const segs = segments(d.dataDir);
    const last = join(d.dataDir, 'wal', segs.at(-1));
    const ends = recordEnds(readFileSync(last));
    truncateSync(last, ends.length ? ends.at(-1) : 0);
    assert.equal(statSync(last).size, ends.length ? ends.at(-1) : 0);
    d = await startDaemon({ conf: sconf, dir });
    assert.match(d.stderr, /event=recovered .*lsn_floor=scan/);
    const c2 = await connectHello(d, 'r');
    for (const room of ['st:a', 'st:b', 'st:c']) {
      const g = await c2.request({ type: 'get', room });
      assert.equal(g.seq, 12, `${room}: ${JSON.stringify(g)}`);
    }
    await c2.close();
    await d.stop();
    d = null;
    assert.ok(existsSync(state), 'wal/STATE written again');
  } finally {
    if (d) await d.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
