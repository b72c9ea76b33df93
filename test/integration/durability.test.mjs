// Durability and recovery (PROTOCOL.md "Durability and recovery",
// "Exactly-once bookkeeping"; docs/STORAGE.md): restarts after SIGTERM and
// SIGKILL, torn WAL tails, corruption in the middle of the WAL, damaged
// snapshots, snapshots and segment deletion, eviction, many rooms, and a
// full or failing disk (fault injection, sanitizer builds only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checksum } from '../../client/movex.js';
import {
  startDaemon, runDaemonToExit, connectHello, makeConf, patchAction, applyPatch, waitFor, withTimeout,
  httpRequest, walRecords, ASAN, SLOW, TIMEOUT,
} from './lib.mjs';

// ---- helpers ---------------------------------------------------------------

const conf = (global = [], room = []) => makeConf({ global: ['fsync always', ...global], room: ['history 100000', ...room] });

function walFiles(dataDir) {
  return readdirSync(join(dataDir, 'wal')).filter((f) => /^wal-\d{20}\.log$/.test(f)).sort();
}
// Every file under dir (relative path -> contents), to prove nothing changed.
function readTree(dir, base = dir, out = new Map()) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) readTree(p, base, out);
    else out.set(p.slice(base.length + 1), readFileSync(p));
  }
  return out;
}
function assertSameTree(before, after, what) {
  assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort(), `${what}: the same files`);
  for (const [k, v] of before) assert.ok(v.equals(after.get(k)), `${what}: ${k} unchanged`);
}
// Count log lines matching re as they arrive (cheaper than re-scanning a
// stderr of many MB in a polling loop).
function countLines(d, re) {
  const counter = { n: 0 };
  let rest = '';
  d.proc.stderr.on('data', (chunk) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop();
    for (const l of lines) if (re.test(l)) counter.n++;
  });
  return counter;
}
const rssMB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

// Send k actions without waiting (pipelined), then collect the replies.
// mk(n) -> patch payload. Returns the replies in n order.
async function pipeline(c, room, firstN, k, mk) {
  const ps = [];
  for (let i = 0; i < k; i++) ps.push(c.request(patchAction(room, firstN + i, mk(firstN + i))));
  return Promise.all(ps);
}
// Subscribe to every room of `rooms` on c, at most WINDOW requests
// outstanding. Each request waits at most TIMEOUT for its reply, so one
// burst of thousands would time out at its tail on a loaded machine (the
// last reply waits for all the others), while the server works correctly.
const WINDOW = 256;
async function subscribeMany(c, rooms) {
  const out = [];
  for (let i = 0; i < rooms.length; i += WINDOW)
    out.push(...await Promise.all(rooms.slice(i, i + WINDOW).map((room) => c.request({ type: 'subscribe', room }))));
  return out;
}
async function subscribe(c, room, extra = {}) {
  const s = await c.request({ type: 'subscribe', room, ...extra });
  assert.ok(s.type === 'snapshot' || s.type === 'actions', `subscribe ${room}: ${JSON.stringify(s)}`);
  return s;
}
async function head(c, room) {
  const g = await c.request({ type: 'get', room });
  assert.equal(g.type, 'snapshot', `get ${room}: ${JSON.stringify(g)}`);
  assert.equal(checksum(g.state), g.checksum, `get ${room}: checksum(state) = head checksum`);
  return g;
}
function assertSameHead(got, want, what) {
  assert.equal(got.seq, want.seq, `${what}: seq`);
  assert.equal(got.checksum, want.checksum, `${what}: checksum`);
  assert.deepEqual(got.state, want.state, `${what}: state`);
  if (want.next_n !== undefined) assert.equal(got.next_n, want.next_n, `${what}: next_n`);
}
// Run fn(d) on a daemon whose dir outlives it; always kill and clean up.
async function withKeptDaemon(opts, fn) {
  const d = await startDaemon({ ...opts, keepDir: true });
  const live = { d };
  try {
    return await fn(live);
  } finally {
    if (live.d && live.d.proc.exitCode === null && live.d.proc.signalCode === null) await live.d.kill().catch(() => {});
    d.cleanup();
  }
}
const ACT = (n) => [{ op: 'add', path: `/k${n % 7}`, value: n }, { op: 'inc', path: '/count', value: 1 }];

// ---- restart: everything survives -----------------------------------------

for (const how of ['SIGTERM', 'SIGKILL']) {
  for (const snapshotEvery of [10000, 3]) {
    test(`restart after ${how} (snapshot_every ${snapshotEvery}): rooms, seq, checksum, state, next_n, exactly-once memory; sync since an old seq gets exactly the missed actions`, async () => {
      const cf = conf([`snapshot_every ${snapshotEvery}`]);
      await withKeptDaemon({ conf: cf }, async (live) => {
        let d = live.d;
        const room = 'dur:doc', other = 'dur:other';
        const a = await connectHello(d, 'alice');
        const b = await connectHello(d, 'bob');
        const initial = { items: [], title: 'x', count: 0 };
        const cr = await a.request({ type: 'create', room, state: initial });
        assert.equal(cr.type, 'created');
        assert.equal(cr.checksum, checksum(initial));
        await subscribe(a, room);
        await subscribe(b, room);
        await subscribe(a, other);
        const log = []; // every applied action of `room`, in seq order: {seq, checksum, client, n, payload}
        let state = initial;
        const apply = async (c, client, n, payload) => {
          const r = await c.request(patchAction(room, n, payload));
          if (r.type === 'ack') {
            state = applyPatch(state, payload);
            assert.equal(r.checksum, checksum(state));
            log.push({ seq: r.seq, checksum: r.checksum, client, n, payload });
          }
          return r;
        };
        const acks = {};
        for (let n = 1; n <= 3; n++) acks[n] = await apply(a, 'alice', n, [{ op: 'add', path: '/items/-', value: `a${n}` }]);
        const since = { seq: acks[3].seq, checksum: acks[3].checksum }; // a client saw up to here
        for (let n = 1; n <= 3; n++) assert.equal((await apply(b, 'bob', n, [{ op: 'inc', path: '/count', value: n }])).type, 'ack');
        // bob's highest decided n is a reject
        assert.equal((await apply(b, 'bob', 4, [{ op: 'remove', path: '/nope' }])).type, 'reject');
        for (let n = 4; n <= 5; n++) acks[n] = await apply(a, 'alice', n, [{ op: 'add', path: '/items/0', value: `a${n}` }]);
        const rej = await apply(a, 'alice', 6, [{ op: 'test', path: '/title', value: 'not x' }]);
        assert.equal(rej.type, 'reject');
        assert.equal(rej.code, 'test_failed');
        acks[7] = await apply(a, 'alice', 7, [{ op: 'replace', path: '/title', value: 'y' }]);
        const otherAcks = await pipeline(a, other, 1, 4, (n) => [{ op: 'inc', path: '/c', value: n }]);
        assert.ok(otherAcks.every((r) => r.type === 'ack'));
        const before = await head(a, room);
        const beforeOther = await head(a, other);
        const bobNext = (await head(b, room)).next_n;
        assert.equal(before.seq, 9);
        assert.equal(before.next_n, 8);
        assert.equal(bobNext, 5);
        // a room that was only created (seq 0, non-trivial initial state)
        const quietState = { a: [1, 2, { b: null }], s: 'héllo' };
        assert.equal((await b.request({ type: 'create', room: 'dur:quiet', state: quietState })).type, 'created');
        assert.equal(beforeOther.seq, 4);
        await a.close();
        await b.close();

        if (how === 'SIGTERM') await d.stop();
        else assert.equal((await d.kill('SIGKILL')).signal, 'SIGKILL');
        d = live.d = await startDaemon({ conf: cf, dir: d.dir });
        assert.match(d.stderr, /event=recovered rooms_to_rebuild=3 /);
        const dan = await connectHello(d, 'dan');
        const q = await head(dan, 'dur:quiet');
        await dan.close();
        assert.equal(q.seq, 0);
        assert.deepEqual(q.state, quietState);
        assert.equal(q.checksum, checksum(quietState));

        const a2 = await connectHello(d, 'alice');
        assertSameHead(await subscribe(a2, room), before, `${room} after restart`);
        assertSameHead(await subscribe(a2, other), { ...beforeOther, next_n: 5 }, `${other} after restart`);
        const b2 = await connectHello(d, 'bob');
        assert.equal((await subscribe(b2, room)).next_n, bobNext, 'bob next_n after restart');
        // an acked n resent: the original ack, duplicate:true, not applied again
        for (const n of [2, 7]) {
          const dup = await a2.request(patchAction(room, n, [{ op: 'add', path: '/evil', value: n }]));
          assert.equal(dup.type, 'ack', JSON.stringify(dup));
          assert.equal(dup.duplicate, true);
          assert.equal(dup.seq, acks[n].seq);
          assert.equal(dup.prev, acks[n].prev);
          assert.equal(dup.checksum, acks[n].checksum);
        }
        const bdup = await b2.request(patchAction(room, 3, [{ op: 'inc', path: '/count', value: 100 }]));
        assert.equal(bdup.type, 'ack');
        assert.equal(bdup.duplicate, true);
        const brej = await b2.request(patchAction(room, 4, [{ op: 'inc', path: '/count', value: 100 }]));
        assert.equal(brej.type, 'reject');
        assert.equal(brej.code, 'bad_patch');
        assert.equal(brej.duplicate, true);
        // the rejected n resent: the same reject
        const rej2 = await a2.request(patchAction(room, 6, [{ op: 'add', path: '/fine', value: 1 }]));
        assert.equal(rej2.type, 'reject', JSON.stringify(rej2));
        assert.equal(rej2.code, 'test_failed');
        assert.equal(rej2.duplicate, true);
        assert.equal(rej2.message, rej.message);
        assert.equal(rej2.seq, rej.seq);
        assert.equal(rej2.checksum, rej.checksum);
        assertSameHead(await head(a2, room), before, 'nothing applied by the resends');
        // a client that saw up to `since` gets exactly the missed actions
        const c2 = await connectHello(d, 'carol');
        for (const r of [await c2.request({ type: 'sync', room, since }), await c2.request({ type: 'subscribe', room, since })]) {
          assert.equal(r.type, 'actions', `catch-up after restart: ${JSON.stringify(r).slice(0, 200)}`);
          assert.equal(r.from, since.seq);
          assert.equal(r.to, before.seq);
          const missed = log.filter((e) => e.seq > since.seq);
          assert.equal(r.actions.length, missed.length);
          r.actions.forEach((e, i) => {
            assert.equal(e.seq, missed[i].seq);
            assert.equal(e.checksum, missed[i].checksum);
            assert.equal(e.client, missed[i].client);
            assert.equal(e.n, missed[i].n);
            assert.deepEqual(e.action, { type: 'patch', payload: missed[i].payload });
          });
        }
        // and the room goes on from its head
        const next = await a2.request(patchAction(room, 8, [{ op: 'inc', path: '/count', value: 1 }]));
        assert.equal(next.type, 'ack');
        assert.equal(next.seq, before.seq + 1);
        assert.equal(next.prev, before.checksum);
        assert.equal(next.checksum, checksum(applyPatch(before.state, [{ op: 'inc', path: '/count', value: 1 }])));
        await a2.close();
        await b2.close();
        await c2.close();
        await d.stop();
      });
    });
  }
}

// ---- torn tail ---------------------------------------------------------------

const TORN = {
  // a valid-looking header (length 200) with only 20 payload bytes
  'half a record': () => Buffer.concat([Buffer.from([200, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde]), Buffer.alloc(20, 0x78)]),
  // two bytes of a length word (the rest reads as zeros)
  'part of a length word': () => Buffer.from([0x10, 0x02]),
  // a whole record whose checksum does not match (payload not fully on disk)
  'a complete record with a bad crc': () => Buffer.concat([Buffer.from([30, 0, 0, 0, 1, 2, 3, 4]), Buffer.alloc(30, 0x79)]),
};
for (const [what, garbage] of Object.entries(TORN)) {
  test(`torn tail (${what}) after SIGKILL: starts, logs wal_torn_tail at the end of the data, cuts it, all acked data there`, async () => {
    const cf = conf(['wal_segment_bytes 1m']);
    await withKeptDaemon({ conf: cf }, async (live) => {
      let d = live.d;
      const room = 'torn:a';
      const a = await connectHello(d, 'alice');
      await subscribe(a, room);
      const acks = await pipeline(a, room, 1, 10, ACT);
      assert.ok(acks.every((r) => r.type === 'ack'));
      const before = await head(a, room);
      await a.close();
      await d.kill('SIGKILL');
      const files = walFiles(d.dataDir);
      const newest = files[files.length - 1];
      const path = join(d.dataDir, 'wal', newest);
      const buf = readFileSync(path);
      const { recs, end } = walRecords(buf);
      assert.ok(recs.length >= 10, `newest segment ${newest} holds the records (${recs.length})`);
      assert.ok(buf.subarray(end).every((x) => x === 0), 'preallocated zeros after the data');
      const g = garbage();
      assert.ok(end + g.length < buf.length);
      const fd = openSync(path, 'r+');
      writeSync(fd, g, 0, g.length, end);
      closeSync(fd);

      d = live.d = await startDaemon({ conf: cf, dir: d.dir });
      const m = new RegExp(`warn event=wal_torn_tail file=\\S*${newest} offset=(\\d+)`).exec(d.stderr);
      assert.ok(m, `wal_torn_tail warning in the log:\n${d.stderr}`);
      assert.equal(Number(m[1]), end, 'the torn tail starts where the valid data ends');
      // cut after one zero length word at the end of the valid data (a
      // last segment never ends with its records: docs/STORAGE.md)
      assert.equal(statSync(path).size, end + 4, 'the segment is cut after a zero word at the end of the valid data');
      const a2 = await connectHello(d, 'alice');
      assertSameHead(await subscribe(a2, room), before, 'after the torn tail');
      const next = await a2.request(patchAction(room, 11, ACT(11)));
      assert.equal(next.type, 'ack');
      assert.equal(next.seq, before.seq + 1);
      // crash again: the cut segment and the new one recover cleanly
      await a2.close();
      await d.kill('SIGKILL');
      d = live.d = await startDaemon({ conf: cf, dir: d.dir });
      assert.doesNotMatch(d.stderr, /wal_torn_tail/);
      const a3 = await connectHello(d, 'alice');
      const h = await head(a3, room);
      assert.equal(h.seq, before.seq + 1);
      assert.equal(h.checksum, next.checksum);
      await a3.close();
      await d.stop();
    });
  });
}

// ---- corruption in the middle ------------------------------------------------

// Two segments: the first from a run stopped with SIGTERM (cut to its data),
// the second from a run killed with SIGKILL (preallocated, zeros after data).
async function twoSegments(cf) {
  let d = await startDaemon({ conf: cf, keepDir: true });
  const room = 'corrupt:a';
  let a = await connectHello(d, 'alice');
  await subscribe(a, room);
  assert.ok((await pipeline(a, room, 1, 8, ACT)).every((r) => r.type === 'ack'));
  await a.close();
  await d.stop();
  d = await startDaemon({ conf: cf, dir: d.dir });
  a = await connectHello(d, 'alice');
  await subscribe(a, room);
  assert.ok((await pipeline(a, room, 9, 8, ACT)).every((r) => r.type === 'ack'));
  await a.close();
  await d.kill('SIGKILL');
  const files = walFiles(d.dataDir);
  assert.ok(files.length >= 2, `two segments: ${files}`);
  return { dir: d.dir, dataDir: d.dataDir, files };
}

const CORRUPT = {
  // a bit flip inside the payload of the 2nd record of the last segment,
  // followed by valid records
  'a flipped payload byte in the middle of the last segment': (files, data) => {
    const f = files[files.length - 1];
    const { recs } = walRecords(data(f));
    return { file: f, rec: recs[1], at: recs[1].off + 8 + Math.floor(recs[1].len / 2), xor: 0x20 };
  },
  // a length word zeroed in the middle of the last segment: "end of data"
  // followed by valid records
  'a zeroed length word in the middle of the last segment': (files, data) => {
    const f = files[files.length - 1];
    const { recs } = walRecords(data(f));
    return { file: f, rec: recs[2], zero: [recs[2].off, 4] };
  },
  // the last record of a segment that is not the last one
  'a flipped byte in the last record of an older segment': (files, data) => {
    const f = files[files.length - 2];
    const { recs } = walRecords(data(f));
    const r = recs[recs.length - 1];
    return { file: f, rec: r, at: r.off + 8 + r.len - 1, xor: 0x01 };
  },
};
for (const [what, damage] of Object.entries(CORRUPT)) {
  test(`WAL corruption (${what}): start-up fails with exit 2 naming the file and offset; nothing is modified`, async (t) => {
    const cf = conf(['wal_segment_bytes 1m']);
    const { dir, dataDir, files } = await twoSegments(cf);
    try {
      const data = (f) => readFileSync(join(dataDir, 'wal', f));
      const dmg = damage(files, data);
      const path = join(dataDir, 'wal', dmg.file);
      const buf = data(dmg.file);
      if (dmg.zero) buf.fill(0, dmg.zero[0], dmg.zero[0] + dmg.zero[1]);
      else buf[dmg.at] ^= dmg.xor;
      writeFileSync(path, buf);
      const before = readTree(dataDir);
      const r = await runDaemonToExit({ dir, conf: cf });
      assert.equal(r.code, 2, `exit code 2 (start-up failure); stderr:\n${r.stderr}`);
      t.diagnostic(`damaged ${dmg.file} record at ${dmg.rec.off}: ${r.stderr.split('\n').find((l) => /start_failed/.test(l))}`);
      const m = new RegExp(`${dmg.file}: offset (\\d+)`).exec(r.stderr);
      assert.ok(m, `the error names ${dmg.file} and an offset:\n${r.stderr}`);
      const off = Number(m[1]);
      assert.ok(off >= dmg.rec.off && off < dmg.rec.off + 8 + dmg.rec.len,
        `offset ${off} is within the damaged record [${dmg.rec.off}, ${dmg.rec.off + 8 + dmg.rec.len}):\n${r.stderr}`);
      assertSameTree(before, readTree(dataDir), 'data dir after the refused start');
      // and a second attempt refuses the same way
      const r2 = await runDaemonToExit({ dir, conf: cf });
      assert.equal(r2.code, 2);
      assertSameTree(before, readTree(dataDir), 'data dir after a second refused start');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

// ---- damaged snapshots -----------------------------------------------------

// Observed behaviour (documented here, see the final report):
//  A. the room's WAL records are all gone (a checkpoint deleted their
//     segments), so it lives only in its snapshot: the daemon starts;
//     subscribe/get/create of that room -> error `internal` ("the room could
//     not be loaded", logged as event=snapshot_unreadable naming the file);
//     it is NOT silently re-created empty; other rooms work.
//  B. the WAL still holds the room's create record (no checkpoint since):
//     recovery rebuilds the room from the WAL and the damaged snapshot is not
//     needed; the room works with all its data.
//  C. the WAL holds later records of the room but not its create record:
//     start-up fails with exit 2 (the room can be neither loaded nor rebuilt).
const SNAPCONF = conf(['wal_segment_bytes 64k', 'wal_max_bytes 1m', 'snapshot_every 20']);
const BIG = 'x'.repeat(400);
// Write to `filler` until the daemon logs a checkpoint (or a trim: the
// rooms' snapshots covered every old record already) that removed
// segments after `fromLog` (so every record written before is gone from
// the WAL).
async function pushPastCheckpoint(d, c, filler, firstN) {
  const from = d.stderr.length;
  let n = firstN;
  for (let round = 0; round < 100; round++) {
    const rs = await pipeline(c, filler, n, 200, (k) => [{ op: 'replace', path: '/big', value: `${BIG}${k}` }]);
    assert.ok(rs.every((r) => r.type === 'ack'), JSON.stringify(rs.find((r) => r.type !== 'ack')));
    n += 200;
    if (/event=(checkpoint|wal_trimmed) segments_removed=[1-9]/.test(d.stderr.slice(from))) return n;
  }
  assert.fail('no checkpoint removed segments');
}

test('damaged snapshot of a room that lives only in its snapshot: that room answers error internal (no crash, not re-created), other rooms work', async () => {
  await withKeptDaemon({ conf: SNAPCONF }, async (live) => {
    let d = live.d;
    const a = await connectHello(d, 'alice');
    await subscribe(a, 'snap:a');
    await subscribe(a, 'snap:b');
    await a.request({ type: 'create', room: 'snap:big', state: { big: '' } });
    await subscribe(a, 'snap:big');
    assert.ok((await pipeline(a, 'snap:a', 1, 30, ACT)).every((r) => r.type === 'ack'));
    assert.ok((await pipeline(a, 'snap:b', 1, 30, ACT)).every((r) => r.type === 'ack'));
    const hb = await head(a, 'snap:b');
    await pushPastCheckpoint(d, a, 'snap:big', 1);
    const hbig = await head(a, 'snap:big');
    await a.close();
    await d.stop();
    const snap = join(d.dataDir, 'rooms', 'snap:a.snap');
    assert.ok(existsSync(snap), 'snap:a has a snapshot');
    const buf = readFileSync(snap);
    buf[buf.length - 3] ^= 0x40;
    writeFileSync(snap, buf);

    d = live.d = await startDaemon({ conf: SNAPCONF, dir: d.dir });
    const c = await connectHello(d, 'alice');
    for (const req of [{ type: 'subscribe', room: 'snap:a' }, { type: 'get', room: 'snap:a' }, { type: 'create', room: 'snap:a' },
      { type: 'subscribe', room: 'snap:a' }]) {
      const r = await c.request(req);
      assert.equal(r.type, 'error', `${req.type} of the damaged room: ${JSON.stringify(r)}`);
      assert.equal(r.code, 'internal', `${req.type}: ${JSON.stringify(r)}`);
    }
    assert.match(d.stderr, /event=snapshot_unreadable file=\S*snap:a\.snap/);
    assertSameHead(await subscribe(c, 'snap:b'), hb, 'snap:b');
    assertSameHead(await head(c, 'snap:big'), hbig, 'snap:big');
    const ok = await c.request(patchAction('snap:b', 31, ACT(31)));
    assert.equal(ok.type, 'ack');
    // the damaged file is left alone (for the operator), not replaced
    assert.ok(readFileSync(snap).equals(buf), 'the damaged snapshot is not overwritten');
    await c.close();
    await d.stop();
  });
});

test('damaged snapshot while the WAL still holds the room from its create record: rebuilt from the WAL, all data there', async () => {
  const cf = conf(['snapshot_every 5']);
  await withKeptDaemon({ conf: cf }, async (live) => {
    let d = live.d;
    const a = await connectHello(d, 'alice');
    await subscribe(a, 'snapw:a');
    await subscribe(a, 'snapw:b');
    assert.ok((await pipeline(a, 'snapw:a', 1, 12, ACT)).every((r) => r.type === 'ack'));
    assert.ok((await pipeline(a, 'snapw:b', 1, 12, ACT)).every((r) => r.type === 'ack'));
    const ha = await head(a, 'snapw:a');
    const hb = await head(a, 'snapw:b');
    await a.close();
    const snap = join(d.dataDir, 'rooms', 'snapw:a.snap');
    // the writer thread renames it into place (src/snapshot_writer.c)
    await waitFor(() => existsSync(snap), 'a snapshot was written (snapshot_every 5)');
    await d.kill('SIGKILL');
    const buf = readFileSync(snap);
    buf[buf.length - 3] ^= 0x40;
    writeFileSync(snap, buf);
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    const c = await connectHello(d, 'alice');
    assertSameHead(await subscribe(c, 'snapw:a'), ha, 'snapw:a rebuilt from the WAL');
    assertSameHead(await subscribe(c, 'snapw:b'), hb, 'snapw:b');
    const dup = await c.request(patchAction('snapw:a', 12, ACT(12)));
    assert.equal(dup.type, 'ack');
    assert.equal(dup.duplicate, true, 'the exactly-once memory was rebuilt too');
    await c.close();
    await d.stop();
  });
});

test('damaged snapshot of a room whose create record is gone but later records are in the WAL: that room answers internal (logged, naming the snapshot); its snapshot and WAL records are kept; other rooms work', async () => {
  await withKeptDaemon({ conf: SNAPCONF }, async (live) => {
    let d = live.d;
    const a = await connectHello(d, 'alice');
    await subscribe(a, 'snapc:a');
    await a.request({ type: 'create', room: 'snapc:big', state: { big: '' } });
    await subscribe(a, 'snapc:big');
    assert.ok((await pipeline(a, 'snapc:a', 1, 10, ACT)).every((r) => r.type === 'ack'));
    await pushPastCheckpoint(d, a, 'snapc:big', 1);
    // later records of snapc:a, after the checkpoint removed its create record
    assert.ok((await pipeline(a, 'snapc:a', 11, 3, ACT)).every((r) => r.type === 'ack'));
    const hbig = await head(a, 'snapc:big');
    await a.close();
    await d.kill('SIGKILL');
    const snap = join(d.dataDir, 'rooms', 'snapc:a.snap');
    const buf = readFileSync(snap);
    buf[buf.length - 3] ^= 0x40;
    writeFileSync(snap, buf);
    for (let round = 0; round < 2; round++) {
      d = live.d = await startDaemon({ conf: SNAPCONF, dir: d.dir });
      const c = await connectHello(d, 'alice');
      const r = await c.request({ type: 'subscribe', room: 'snapc:a' });
      assert.equal(r.type, 'error', JSON.stringify(r));
      assert.equal(r.code, 'internal', JSON.stringify(r));
      assert.match(d.stderr, /event=snapshot_unreadable file=\S*snapc:a\.snap/, 'the log names the damaged snapshot');
      assert.match(d.stderr, /event=room_unrecoverable room=snapc:a /);
      assertSameHead(await head(c, 'snapc:big'), hbig, 'snapc:big');
      const m = await httpRequest(d, { path: '/metrics' });
      assert.match(m.body, /^movexd_rooms_unrecoverable 1$/m);
      assert.ok(readFileSync(snap).equals(buf), 'the damaged snapshot is left for the operator');
      await c.close();
      // a clean stop keeps the room's WAL records: the next start still knows them
      await d.stop();
    }
    // the operator deletes it over the admin API: the damaged file is kept
    // aside, the room can be made again, and that survives a crash
    const tokenFile = join(d.dir, 'admin.token');
    writeFileSync(tokenFile, 'snapc-admin-token-0123456789abcdef\n', { mode: 0o600 });
    const adminConf = SNAPCONF.replace(/^/, `admin_token_file ${tokenFile}\n`);
    d = live.d = await startDaemon({ conf: adminConf, dir: d.dir });
    const auth = { authorization: 'Bearer snapc-admin-token-0123456789abcdef' };
    const del = await httpRequest(d, { method: 'DELETE', path: '/admin/rooms/snapc:a', headers: auth });
    assert.equal(del.status, 200, del.body);
    assert.ok(existsSync(`${snap}.damaged`), 'the damaged snapshot is kept aside');
    assert.ok(!existsSync(snap));
    assert.match((await httpRequest(d, { path: '/metrics' })).body, /^movexd_rooms_unrecoverable 0$/m);
    const c = await connectHello(d, 'alice');
    const fresh = await subscribe(c, 'snapc:a');
    assert.equal(fresh.seq, 0, JSON.stringify(fresh));
    assert.equal((await c.request(patchAction('snapc:a', 1, ACT(1)))).type, 'ack');
    const h = await head(c, 'snapc:a');
    await c.close();
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf: adminConf, dir: d.dir });
    const c2 = await connectHello(d, 'alice');
    assertSameHead(await head(c2, 'snapc:a'), h, 'the new snapc:a after a crash');
    assertSameHead(await head(c2, 'snapc:big'), hbig, 'snapc:big');
    assert.doesNotMatch(d.stderr, /room_unrecoverable/);
    await c2.close();
    await d.stop();
  });
});

// ---- start-up: index, rebuild on use, background pass -------------------------

test('restart on many WAL-only rooms: every record indexed at start-up, a room served on demand, the background pass rebuilds and snapshots the rest (recovery_complete), all data intact', async () => {
  const ROOMS = 60, PER = 15;
  const cf = conf(['snapshot_every 1000000']); // nothing snapshotted before the crash
  await withKeptDaemon({ conf: cf }, async (live) => {
    let d = live.d;
    const a = await connectHello(d, 'alice');
    const names = Array.from({ length: ROOMS }, (_, i) => `lazy:r${i}`);
    for (const r of names) await subscribe(a, r);
    await Promise.all(names.map(async (r) => {
      assert.ok((await pipeline(a, r, 1, PER, ACT)).every((x) => x.type === 'ack'));
    }));
    const heads = {};
    for (const r of names) heads[r] = await head(a, r);
    await a.close();
    await d.kill('SIGKILL');
    assert.equal(readdirSync(join(d.dataDir, 'rooms')).length, 0, 'no snapshot before the restart');

    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    const rec = /event=recovered rooms_to_rebuild=(\d+) records_indexed=(\d+)/.exec(d.stderr);
    assert.ok(rec, d.stderr);
    assert.equal(Number(rec[1]), ROOMS);
    assert.equal(Number(rec[2]), ROOMS * (PER + 1), 'a create record and PER actions per room');
    const c = await connectHello(d, 'alice');
    // the last room is the background pass's last: usually served on demand
    // (the unit tests pin that order down; here the pass may win the race)
    const last = names[ROOMS - 1];
    assertSameHead(await subscribe(c, last), heads[last], last);
    await waitFor(() => /event=recovery_complete /.test(d.stderr), 'event=recovery_complete', TIMEOUT);
    const done = /event=recovery_complete rooms_rebuilt=(\d+) records_replayed=(\d+) records_in_snapshots=(\d+) rooms_unrecoverable=(\d+)/.exec(d.stderr);
    assert.ok(done, d.stderr);
    assert.equal(Number(done[2]), ROOMS * (PER + 1), 'every record replayed once');
    assert.equal(Number(done[4]), 0);
    const m = await httpRequest(d, { path: '/metrics' });
    assert.match(m.body, /^movexd_recovery_rooms_pending 0$/m);
    assert.match(m.body, new RegExp(`^movexd_recovery_records_replayed_total ${ROOMS * (PER + 1)}$`, 'm'));
    // every room the pass rebuilt was snapshotted (a room rebuilt on
    // demand stays in memory, unsnapshotted, like any active room)
    const snaps = readdirSync(join(d.dataDir, 'rooms')).filter((f) => f.endsWith('.snap'));
    assert.ok(snaps.length >= ROOMS - 1, snaps.join(' '));
    for (const r of names.slice(0, ROOMS - 1)) assert.ok(snaps.includes(`${r}.snap`), `${r} snapshotted`);
    for (const r of names) assertSameHead(await head(c, r), heads[r], r);
    // an action on a rebuilt room continues the chain; a resend is a duplicate
    await subscribe(c, 'lazy:r3');
    await subscribe(c, 'lazy:r4');
    const ok = await c.request(patchAction('lazy:r3', PER + 1, ACT(PER + 1)));
    assert.equal(ok.type, 'ack', JSON.stringify(ok));
    assert.equal(ok.seq, PER + 1);
    const dup = await c.request(patchAction('lazy:r4', PER, ACT(PER)));
    assert.equal(dup.duplicate, true, JSON.stringify(dup));
    await c.close();
    await d.kill('SIGKILL');
    // and after another crash the snapshots serve: nothing replayed twice
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    const c2 = await connectHello(d, 'alice');
    for (const r of names.slice(5)) assertSameHead(await head(c2, r), heads[r], `${r} after the second restart`);
    await c2.close();
    await d.stop();
  });
});

// ---- snapshots and segment deletion ----------------------------------------

test('snapshots and WAL segment deletion: wal-*.log files stay bounded past wal_max_bytes; all data intact after restart', async () => {
  const cf = conf(['wal_segment_bytes 64k', 'wal_max_bytes 1m', 'snapshot_every 20']);
  await withKeptDaemon({ conf: cf }, async (live) => {
    let d = live.d;
    const rooms = ['seg:a', 'seg:b', 'seg:c'];
    const a = await connectHello(d, 'alice');
    for (const r of rooms) await subscribe(a, r);
    let maxFiles = 0, written = 0;
    const n = Object.fromEntries(rooms.map((r) => [r, 1]));
    // ~1.5 KB records: 2 MB of WAL (twice wal_max_bytes) in ~1400 actions
    const pad = 'p'.repeat(1400);
    while (written < 2.2 * 1024 * 1024) {
      const batch = await Promise.all(rooms.map((r) => {
        const first = n[r];
        n[r] += 40;
        return pipeline(a, r, first, 40, (k) => [{ op: 'add', path: `/v${k % 5}`, value: `${pad}${k}` }, { op: 'inc', path: '/count', value: 1 }]);
      }));
      assert.ok(batch.flat().every((r) => r.type === 'ack'));
      written += batch.flat().length * 1500;
      maxFiles = Math.max(maxFiles, walFiles(d.dataDir).length);
    }
    // the WAL passed 1m at 16 segments of 64k; a checkpoint (after the
    // commit that crossed it) snapshots every dirty room and deletes all but
    // the current segment. So at most ~17 exist at once; 24 leaves slack for
    // the commit that crosses the bound and for the commits that pass while
    // a snapshot is in flight on the writer thread (both the trim and the
    // checkpoint wait for it; seconds under ASan on a loaded machine).
    // (or the trim before it found every old record covered already: then
    // no room is snapshotted on the loop; see the next test)
    assert.match(d.stderr, /event=(checkpoint|wal_trimmed) segments_removed=[1-9]/, 'segments were removed');
    assert.ok(maxFiles <= 24, `at most 24 wal segments at a time (saw ${maxFiles})`);
    const names = walFiles(d.dataDir);
    const lastLsn = Number(names[names.length - 1].slice(4, 24));
    assert.ok(lastLsn > 1000, `segments were deleted: ${names.length} files, newest starts at LSN ${lastLsn}`);
    for (const r of rooms) assert.ok(existsSync(join(d.dataDir, 'rooms', `${r}.snap`)), `${r}.snap exists`);
    const heads = {};
    for (const r of rooms) heads[r] = await head(a, r);
    await a.close();
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    const c = await connectHello(d, 'alice');
    for (const r of rooms) {
      assertSameHead(await subscribe(c, r), heads[r], `${r} after restart`);
      assert.equal(heads[r].state.count, n[r] - 1, `${r}: every action applied once`);
    }
    // catch-up across the snapshot boundary still works (history 100000)
    const sy = await c.request({ type: 'sync', room: 'seg:a', since: { seq: 0, checksum: checksum({}) } });
    assert.equal(sy.type, 'actions');
    assert.equal(sy.actions.length, heads['seg:a'].seq);
    await c.close();
    await d.stop();
    assert.ok(walFiles(d.dataDir).length <= 24);
  });
});

const snapshotsWritten = async (d) => Number(/^movexd_snapshots_written_total (\d+)$/m.exec((await httpRequest(d, { path: '/metrics' })).body)[1]);

test('WAL past wal_max_bytes whose old records are all in snapshots: its segments are deleted without a checkpoint (no room snapshotted on the loop); all data intact after SIGKILL', async () => {
  // one room, a snapshot (by the writer thread) after every batch of 40
  // actions; each batch waits for its snapshot, so when the WAL passes 1m
  // every record before the current batch is covered on disk
  const cf = conf(['wal_segment_bytes 64k', 'wal_max_bytes 1m', 'snapshot_every 40']);
  await withKeptDaemon({ conf: cf }, async (live) => {
    let d = live.d;
    const room = 'trim:a';
    const a = await connectHello(d, 'alice');
    await subscribe(a, room);
    const pad = 'p'.repeat(1400);
    let n = 1, maxFiles = 0;
    for (let batch = 1; batch <= 24; batch++) { // 960 records of ~1.5 KB: ~1.4 MB
      const rs = await pipeline(a, room, n, 40, (k) => [{ op: 'add', path: `/v${k % 5}`, value: `${pad}${k}` }, { op: 'inc', path: '/count', value: 1 }]);
      assert.ok(rs.every((r) => r.type === 'ack'), JSON.stringify(rs.find((r) => r.type !== 'ack')));
      n += 40;
      await waitFor(async () => (await snapshotsWritten(d)) >= batch, `snapshot ${batch} written`);
      maxFiles = Math.max(maxFiles, walFiles(d.dataDir).length);
    }
    assert.match(d.stderr, /event=wal_trimmed segments_removed=[1-9]/, 'old segments were deleted');
    assert.doesNotMatch(d.stderr, /event=checkpoint /, 'no checkpoint was needed');
    assert.ok(maxFiles <= 18, `at most 18 wal segments at a time (saw ${maxFiles})`);
    assert.ok(Number(walFiles(d.dataDir)[0].slice(4, 24)) > 1, 'the first segment is gone');
    const before = await head(a, room);
    assert.equal(before.state.count, n - 1);
    await a.close();
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    const c = await connectHello(d, 'alice');
    assertSameHead(await subscribe(c, room), before, 'after restart');
    const sy = await c.request({ type: 'sync', room, since: { seq: 0, checksum: checksum({}) } });
    assert.equal(sy.type, 'actions');
    assert.equal(sy.actions.length, before.seq, 'the whole history is still there (history 100000)');
    const dup = await c.request(patchAction(room, n - 1, [{ op: 'inc', path: '/count', value: 1 }]));
    assert.equal(dup.duplicate, true, 'the exactly-once memory survived');
    assert.equal((await c.request(patchAction(room, n, ACT(n)))).type, 'ack');
    await c.close();
    await d.stop();
  });
});

test('a second daemon on the same data dir refuses to start (exit 2, LOCK); the first keeps working', async () => {
  const cf = conf();
  await withKeptDaemon({ conf: cf }, async (live) => {
    const d = live.d;
    const a = await connectHello(d, 'alice');
    await subscribe(a, 'lock:a');
    assert.equal((await a.request(patchAction('lock:a', 1, ACT(1)))).type, 'ack');
    const r = await runDaemonToExit({ dir: d.dir, conf: cf });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /LOCK: another movexd is using this data directory/);
    assert.equal((await a.request(patchAction('lock:a', 2, ACT(2)))).seq, 2);
    await a.close();
    await d.stop();
  });
});

test('records larger than wal_segment_bytes: acked, survive SIGKILL and restart, the log goes on', async () => {
  const cf = conf(['wal_segment_bytes 64k', 'max_message_bytes 4m']);
  await withKeptDaemon({ conf: cf }, async (live) => {
    let d = live.d;
    const room = 'huge:a';
    const a = await connectHello(d, 'alice');
    await subscribe(a, room);
    const sizes = [100000, 10, 300000, 10, 70000];
    const acks = [];
    for (let i = 0; i < sizes.length; i++) acks.push(await a.request(patchAction(room, i + 1, [{ op: 'add', path: `/s${i}`, value: 'z'.repeat(sizes[i]) }])));
    assert.ok(acks.every((r) => r.type === 'ack'), JSON.stringify(acks.find((r) => r.type !== 'ack')));
    const before = await head(a, room);
    await a.close();
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    const c = await connectHello(d, 'alice');
    assertSameHead(await subscribe(c, room), before, 'after restart');
    assert.equal((await c.request(patchAction(room, 6, ACT(6)))).seq, before.seq + 1);
    await c.close();
    await d.stop();
  });
});

// ---- eviction ----------------------------------------------------------------

test('eviction: a room without subscribers leaves memory after evict_idle_ms and loads again with the same seq/checksum/state/next_n and exactly-once memory', async () => {
  const cf = conf(['evict_idle_ms 200']);
  await withKeptDaemon({ conf: cf, args: ['--log-level', 'debug'] }, async (live) => {
    const d = live.d;
    const room = 'ev:a', busy = 'ev:busy';
    const a = await connectHello(d, 'alice');
    const w = await connectHello(d, 'watcher');
    await subscribe(a, room);
    await subscribe(w, busy); // a room with a subscriber is never evicted
    const acks = await pipeline(a, room, 1, 5, ACT);
    const since = { seq: acks[1].seq, checksum: acks[1].checksum };
    const rej = await a.request(patchAction(room, 6, [{ op: 'test', path: '/count', value: -1 }]));
    assert.equal(rej.type, 'reject');
    const before = await head(a, room);
    assert.equal(before.next_n, 7);
    assert.equal((await a.request({ type: 'unsubscribe', room })).type, 'unsubscribed');
    const from = d.stderr.length;
    // wall-clock timer: poll the log (the daemon checks once a second)
    await d.waitLog(new RegExp(`event=room_evicted room=${room} seq=${before.seq}`), 5000 * SLOW, from);
    assert.ok(existsSync(join(d.dataDir, 'rooms', `${room}.snap`)), 'evicted with a snapshot');
    assert.doesNotMatch(d.stderr.slice(from), new RegExp(`room_evicted room=${busy}`));
    const loaded = d.stderr.length;
    assertSameHead(await subscribe(a, room), before, 'reloaded room');
    assert.match(d.stderr.slice(loaded), new RegExp(`event=room_loaded room=${room} seq=${before.seq}`));
    const dup = await a.request(patchAction(room, 3, ACT(3)));
    assert.equal(dup.type, 'ack');
    assert.equal(dup.duplicate, true);
    assert.equal(dup.seq, acks[2].seq);
    assert.equal(dup.checksum, acks[2].checksum);
    const rej2 = await a.request(patchAction(room, 6, ACT(6)));
    assert.equal(rej2.type, 'reject');
    assert.equal(rej2.code, rej.code);
    assert.equal(rej2.duplicate, true);
    const sy = await a.request({ type: 'sync', room, since });
    assert.equal(sy.type, 'actions', 'the log survives eviction');
    assert.deepEqual(sy.actions.map((e) => e.n), [3, 4, 5]);
    assert.equal((await a.request(patchAction(room, 7, ACT(7)))).seq, before.seq + 1);
    // evicted again, then a crash: still all there
    assert.equal((await a.request({ type: 'unsubscribe', room })).type, 'unsubscribed');
    const from2 = d.stderr.length;
    await d.waitLog(new RegExp(`event=room_evicted room=${room} seq=${before.seq + 1}`), 5000 * SLOW, from2);
    const h2 = await head(w, room); // a `get` loads it again without subscribing
    assert.equal(h2.seq, before.seq + 1);
    await a.close();
    await w.close();
    await d.kill('SIGKILL');
    live.d = await startDaemon({ conf: cf, dir: d.dir });
    const c = await connectHello(live.d, 'alice');
    assertSameHead(await subscribe(c, room), { ...h2, next_n: 8 }, 'after eviction and a crash');
    await c.close();
    await live.d.stop();
  });
});

// Eviction writes snapshots inside a tick of the event loop. Before batched
// eviction (one fsync'd snapshot per room, all idle rooms in one tick) the
// server stopped answering for rooms x 2 fsyncs: 2000 rooms -> 4-11 s
// without a reply (ext4), 20000 rooms -> ~110 s. Now at most 256 rooms leave
// per tick with one syncfs. That stall is I/O: one syncfs waits for whatever
// the whole file system has dirty, so on a shared disk a single batch took
// 0.7-1.3 s (load 13), and a fixed bound on the ping latency measured the
// machine. The bound is relative instead: first, in the same daemon, the
// worst ping latency while REF_N rooms (less than one batch) are evicted is
// the cost of one batch on this disk right now; then while N = 3000 rooms
// (12 batches) leave, no ping may wait much longer than that: at most 2x
// the reference plus an allowance for scheduling and disk noise (5 s,
// 7.5 s under ASan: one reference batch is one sample of a shared disk's
// syncfs, the 12 batches are 12, and with another process writing 256 MB
// files at load 18 the worst of 12 exceeded 2x the one by up to 3.2 s), so
// this bound catches per-room fsyncs (6000 here), not a batch size. What
// catches the batch size: pongs must arrive at 3 or more distinct eviction
// counts while it goes on - the loop turns between batches, which a noisy
// disk does not change. All N in one tick holds a
// ping for N snapshot writes (~1 ms each in release: ~3 s, while one batch
// took 0.1-0.9 s), or 2N fsyncs with per-room syncing. Checked with
// MX_EVICT_BATCH 4096 in a
// scratch build: this test fails.
const REF_N = 200, STALL_N = 3000;
const STALL_SLACK_MS = ASAN ? 7500 : 5000; // I/O, not CPU: barely slower under ASan
async function evictionPingLatency(d, ev, prefix, n) {
  const before = ev.n;
  const c = await connectHello(d, `maker-${prefix}`);
  const rs = await subscribeMany(c, Array.from({ length: n }, (_, k) => `stall:${prefix}${k}`));
  assert.ok(rs.every((r) => r.type === 'snapshot'));
  const p = await connectHello(d, `pinger-${prefix}`);
  await c.close();
  let maxLatency = 0, pings = 0;
  const between = new Set(); // eviction counts seen when a pong arrived mid-eviction
  const end = Date.now() + 120000 * SLOW;
  while (ev.n - before < n && Date.now() < end) {
    const t0 = Date.now();
    // bounded only so that a hung server fails here, not at the suite timeout
    const pong = await withTimeout(p.request({ type: 'ping' }), TIMEOUT,
      `pong while idle rooms are evicted (${ev.n - before}/${n} evicted so far)`);
    assert.equal(pong.type, 'pong');
    maxLatency = Math.max(maxLatency, Date.now() - t0);
    pings++;
    if (ev.n - before > 0 && ev.n - before < n) between.add(ev.n - before);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(ev.n - before, n, `every idle ${prefix} room was evicted`);
  await p.close();
  return { maxLatency, pings, between: between.size };
}
test(`eviction of ${STALL_N} idle rooms does not stall the server: another connection's ping waits at most 2x as long as during the eviction of ${REF_N} (one batch) + ${STALL_SLACK_MS} ms`, async (t) => {
  const cf = conf(['evict_idle_ms 200', 'max_rooms_per_conn 100000']);
  await withKeptDaemon({ conf: cf, args: ['--log-level', 'debug'] }, async (live) => {
    const d = live.d;
    const ev = countLines(d, /event=room_evicted room=stall:/);
    const ref = await evictionPingLatency(d, ev, 'ref', REF_N);
    const big = await evictionPingLatency(d, ev, 'big', STALL_N);
    const bound = 2 * ref.maxLatency + STALL_SLACK_MS;
    t.diagnostic(`max ping latency: ${ref.maxLatency} ms evicting ${REF_N} rooms (${ref.pings} pings), ${big.maxLatency} ms evicting ${STALL_N} (${big.pings} pings, answered at ${big.between} eviction counts between 0 and ${STALL_N}); bound ${bound} ms`);
    // the server answers between batches: pongs arrive while the eviction is
    // under way (all rooms in one tick: at most one or two, lagging log lines)
    assert.ok(big.between >= 3, `pongs arrived at only ${big.between} distinct eviction counts between 0 and ${STALL_N}: the loop did not turn between batches`);
    assert.ok(big.maxLatency <= bound,
      `a ping waited ${big.maxLatency} ms while ${STALL_N} rooms were evicted, more than 2 x ${ref.maxLatency} ms (while ${REF_N} were) + ${STALL_SLACK_MS} ms`);
    await d.stop();
  });
});

// MOVEXD_MANY_ROOMS overrides the 20000 (rooms leave memory in batches of
// MX_EVICT_BATCH = 256, one batch per turn of the loop while a backlog
// lasts: 20000 took ~2 s to evict on tmpfs, release and ASan alike).
const MANY = Number(process.env.MOVEXD_MANY_ROOMS || 20000);
test(`${MANY} rooms: created via subscribe, evicted after evict_idle_ms 1s, RSS bounded, a sample still answers correctly`, { timeout: 400000 * SLOW }, async (t) => {
  const N = MANY - (MANY % 4), CONNS = 4, SAMPLE = 50;
  // tmpfs when there is one: this test is about memory, and every eviction
  // fsyncs a snapshot (the stall test above covers that cost on a disk)
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'movexd-many-'));
  const cf = conf(['evict_idle_ms 1s', 'max_rooms_per_conn 100000']);
  try {
    const d = await startDaemon({ conf: cf, dir, args: ['--log-level', 'debug'] });
    const ev = countLines(d, /event=room_evicted room=many:/);
    try {
      const rssStart = rssMB(d.pid);
      const t0 = Date.now();
      const cs = [];
      for (let i = 0; i < CONNS; i++) cs.push(await connectHello(d, `many${i}`));
      await withTimeout(Promise.all(cs.map(async (c, ci) => {
        const rs = await subscribeMany(c, Array.from({ length: N / CONNS }, (_, k) => `many:r${k * CONNS + ci}`));
        assert.ok(rs.every((r) => r.type === 'snapshot' && r.seq === 0));
      })), 120000 * SLOW, 'creating the rooms'); // bounds a hang only
      const createMs = Date.now() - t0;
      // a sample gets some actions, so the check after eviction is not trivial
      const sample = Array.from({ length: SAMPLE }, (_, i) => (i * 7919) % N);
      const heads = new Map();
      for (const k of sample) {
        const c = cs[k % CONNS];
        const rs = await pipeline(c, `many:r${k}`, 1, 3, (n) => [{ op: 'add', path: `/v${n}`, value: k }]);
        assert.ok(rs.every((r) => r.type === 'ack'));
        heads.set(k, await head(c, `many:r${k}`));
      }
      const rssFull = rssMB(d.pid);
      await Promise.all(cs.map((c) => c.close()));
      const t1 = Date.now();
      // a wall-clock timer (evict_idle_ms, once-a-second ticks): poll
      await waitFor(() => ev.n >= N, `eviction of ${N} rooms (${ev.n} so far)`, 200000 * SLOW);
      const evictMs = Date.now() - t1;
      const rssAfter = rssMB(d.pid);
      t.diagnostic(`RSS MB: start ${rssStart.toFixed(1)}, ${N} rooms in memory ${rssFull.toFixed(1)}, after eviction ${rssAfter.toFixed(1)}; create ${createMs} ms, evict ${evictMs} ms`);
      // Measured (release): ~5 MB idle, ~22 MB with 20000 empty rooms, about
      // the same after eviction (malloc keeps freed pages). The sanitizer
      // build keeps freed memory in quarantine and shadow memory, so its
      // numbers are several times larger. The bound only has to catch a
      // leak or per-room memory that eviction does not release: 200 MB
      // (release) is ~10 KB per room, 4x that under ASan.
      const bound = ASAN ? 800 : 200;
      assert.ok(rssAfter < bound, `RSS after eviction ${rssAfter.toFixed(1)} MB < ${bound} MB`);
      const c = await connectHello(d, 'checker');
      for (const k of sample) assertSameHead(await head(c, `many:r${k}`), { ...heads.get(k), next_n: undefined }, `many:r${k}`);
      for (let i = 0; i < SAMPLE; i++) {
        const k = (i * 104729 + 13) % N;
        if (heads.has(k)) continue;
        const g = await head(c, `many:r${k}`);
        assert.equal(g.seq, 0);
        assert.deepEqual(g.state, {});
      }
      await c.close();
    } finally {
      await d.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- disk full and disk failure (fault injection: sanitizer builds) ----------

const skipNoFault = ASAN ? false : 'needs a build with -DMX_FAULT_INJECTION (MOVEXD_ASAN=1)';

test('disk full (FAULT=enospc): ack held while full, later actions rejected unavailable, ack released after the space returns; all acked data survives a crash', { skip: skipNoFault }, async (t) => {
  const cf = conf();
  await withKeptDaemon({ conf: cf }, async (live) => {
    let d = live.d;
    const room = 'full:a';
    const a = await connectHello(d, 'alice');
    const reader = await connectHello(d, 'reader');
    await subscribe(a, room);
    const acks = await pipeline(a, room, 1, 3, ACT);
    assert.ok(acks.every((r) => r.type === 'ack'));
    const fault = join(d.dataDir, 'wal', 'FAULT');
    writeFileSync(fault, 'enospc\n');
    const from = d.stderr.length;
    const held = a.request(patchAction(room, 4, ACT(4)));
    held.catch(() => {});
    await d.waitLog(/event=(disk_full|wal_unavailable|wal_no_space)/, TIMEOUT, from);
    const heldId = a.nextId - 1;
    // more actions while the disk is full: rejected `unavailable` (n not used up)
    const later = [a.request(patchAction(room, 5, ACT(5))), a.request(patchAction(room, 6, ACT(6)))];
    later.forEach((p) => p.catch(() => {}));
    // and a request on another connection
    const pingId = reader.nextId;
    const ping = reader.request({ type: 'ping' });
    ping.catch(() => {});
    // the daemon retries once a second: give it two tries while FAULT exists
    // the daemon retries the write once a second (a wall-clock timer): stay
    // across at least one retry with FAULT present
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(a.all.filter((m) => m.id === heldId).length, 0, 'no ack while the disk is full');
    const laterSeen = a.all.filter((m) => m.id > heldId);
    const pongSeen = reader.all.some((m) => m.id === pingId);
    const http = (path) => fetch(`${d.http}${path}`).then(async (r) => ({ status: r.status, text: (await r.text()).trim() }), (e) => ({ status: 0, text: e.message }));
    const health = await http('/healthz');
    const ready = await http('/readyz');
    t.diagnostic(`while full: ${laterSeen.length} replies to later actions arrived, pong from another connection ${pongSeen ? 'arrived' : 'held'}, /healthz: ${health.status} ${health.text}, /readyz: ${ready.status} ${ready.text}`);
    // docs/OPERATIONS.md: /readyz is 200 only when the daemon can durably log actions
    assert.equal(ready.status, 503, `/readyz while the disk is full: ${JSON.stringify(ready)}`);
    assert.equal(d.proc.exitCode, null, 'still running');
    rmSync(fault);
    const t0 = Date.now();
    const ack = await withTimeout(held, 5000 * SLOW, 'held ack after the space returned');
    const releaseMs = Date.now() - t0;
    t.diagnostic(`held ack released ${releaseMs} ms after FAULT was removed`);
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.equal(ack.seq, acks[2].seq + 1);
    const rs = await Promise.all(later);
    for (const r of rs) {
      assert.equal(r.type, 'reject', JSON.stringify(r));
      assert.equal(r.code, 'unavailable');
    }
    assert.equal((await ping).type, 'pong');
    // n 5 and 6 were not used up: resend them now
    const r5 = await a.request(patchAction(room, 5, ACT(5)));
    const r6 = await a.request(patchAction(room, 6, ACT(6)));
    assert.equal(r5.type, 'ack', JSON.stringify(r5));
    assert.equal(r6.type, 'ack', JSON.stringify(r6));
    assert.equal(r6.seq, ack.seq + 2);
    assert.match(d.stderr.slice(from), /event=(disk_recovered|wal_space_recovered)/);
    assert.equal((await fetch(`${d.http}/readyz`)).status, 200, '/readyz after the space returned');
    const before = await head(a, room);
    await a.close();
    await reader.close();
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    const c = await connectHello(d, 'alice');
    assertSameHead(await subscribe(c, room), before, 'after the disk-full episode and a crash');
    for (const [n, r] of [[4, ack], [5, r5], [6, r6]]) {
      const dup = await c.request(patchAction(room, n, ACT(n)));
      assert.equal(dup.duplicate, true);
      assert.equal(dup.seq, r.seq);
    }
    await c.close();
    await d.stop();
  });
});

test('disk failure (FAULT=eio): the daemon exits 3 without acking; after restart every acked action is there and the unacked one is not', { skip: skipNoFault }, async () => {
  const cf = conf();
  await withKeptDaemon({ conf: cf }, async (live) => {
    let d = live.d;
    const room = 'eio:a';
    const a = await connectHello(d, 'alice');
    await subscribe(a, room);
    const acks = await pipeline(a, room, 1, 5, ACT);
    assert.ok(acks.every((r) => r.type === 'ack'));
    const before = await head(a, room);
    writeFileSync(join(d.dataDir, 'wal', 'FAULT'), 'eio\n');
    const p = a.request(patchAction(room, 6, ACT(6)));
    p.catch(() => {});
    const id = a.nextId - 1;
    const ex = await d.waitExit(TIMEOUT);
    assert.equal(ex.code, 3, `exit code 3; stderr:\n${d.stderr.slice(-3000)}`);
    assert.match(d.stderr, /event=(wal_failed|fatal)/);
    await a.closed;
    assert.equal(a.all.filter((m) => m.id === id && m.type === 'ack').length, 0, 'the failed action was not acked');
    rmSync(join(d.dataDir, 'wal', 'FAULT'));
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    const c = await connectHello(d, 'alice');
    const s = await subscribe(c, room);
    assertSameHead(s, { ...before, next_n: 6 }, 'every acked action, nothing more');
    for (const r of acks) {
      const dup = await c.request(patchAction(room, r.n, ACT(r.n)));
      assert.equal(dup.duplicate, true);
      assert.equal(dup.seq, r.seq);
      assert.equal(dup.checksum, r.checksum);
    }
    const again = await c.request(patchAction(room, 6, ACT(6)));
    assert.equal(again.type, 'ack');
    assert.equal(again.duplicate, undefined, 'the unacked action was never applied: applied now');
    assert.equal(again.seq, before.seq + 1);
    await c.close();
    await d.stop();
  });
});

// While the disk is full, everything the server decides waits in one outbox
// behind the held ack - even replies to connections that have nothing held
// and need nothing durable (a ping; an action refused `unavailable`, which
// exists to tell the client to resend later). Per-connection ordering does
// not require that; a client only learns of the refusal once the disk is
// back, when it no longer applies.
test('disk full: a connection with nothing held still gets its pong and `unavailable` rejects while the disk is full', { skip: skipNoFault }, async () => {
  const cf = conf();
  await withKeptDaemon({ conf: cf }, async (live) => {
    const d = live.d;
    const a = await connectHello(d, 'alice');
    const b = await connectHello(d, 'bob');
    await subscribe(a, 'full2:a');
    await subscribe(b, 'full2:b');
    assert.equal((await a.request(patchAction('full2:a', 1, ACT(1)))).type, 'ack');
    assert.equal((await b.request(patchAction('full2:b', 1, ACT(1)))).type, 'ack');
    const fault = join(d.dataDir, 'wal', 'FAULT');
    writeFileSync(fault, 'enospc\n');
    try {
      const from = d.stderr.length;
      const held = a.request(patchAction('full2:a', 2, ACT(2)));
      held.catch(() => {});
      await d.waitLog(/event=(disk_full|wal_unavailable)/, TIMEOUT, from);
      const pong = await withTimeout(b.request({ type: 'ping' }), 3000 * SLOW, 'pong on a connection with nothing held, while the disk is full');
      assert.equal(pong.type, 'pong');
      const r = await withTimeout(b.request(patchAction('full2:b', 2, ACT(2))), 3000 * SLOW, 'reject unavailable while the disk is full');
      assert.equal(r.type, 'reject', JSON.stringify(r));
      assert.equal(r.code, 'unavailable');
    } finally {
      rmSync(fault, { force: true });
    }
    await a.close();
    await b.close();
    await d.stop();
  });
});

// docs/STORAGE.md "Deleting a room": a deleted room's snapshot is unlinked
// after the flush that makes its DELETE record durable. When that unlink
// fails (rooms/FAULT = unlink-eio: only this unlink fails, snapshots are
// still written), the file stays queued and is retried at each flush, and
// the WAL keeps the DELETE record's segment meanwhile - trimming and
// checkpoints alike, in the run that deleted the room and in the next one
// (start-up meets the same failure). Without that, the segment goes, and
// the next start-up loads the deleted room from its old snapshot.
// ~2.5 x wal_max_bytes (1m) of ~450-byte records to `filler`: past the
// bound, so trimming and checkpoints run; returns the next n.
async function pushBytes(c, filler, firstN) {
  let n = firstN;
  for (let round = 0; round < 30; round++) {
    const rs = await pipeline(c, filler, n, 200, (k) => [{ op: 'replace', path: '/big', value: `${BIG}${k}` }]);
    assert.ok(rs.every((r) => r.type === 'ack'), JSON.stringify(rs.find((r) => r.type !== 'ack')));
    n += 200;
  }
  return n;
}

const UNLINK_AUTH = { authorization: 'Bearer unlink-admin-token-0123456789abcdef' };
const unlinksPending = async (d) => Number(/^movexd_storage_unlinks_pending (\d+)$/m.exec((await httpRequest(d, { path: '/metrics' })).body)[1]);
// Restart live.d with the admin API and no rate limit (the filler writes
// ~4 MB in bursts); give `room` a snapshot (45 actions); with
// rooms/FAULT = unlink-eio delete it and wait until its unlink failed.
// Returns the conf, an open connection subscribed to `filler` (its n 1
// used), the snapshot's and the FAULT file's paths.
async function deleteWithFailingUnlink(live, room, filler) {
  const tokenFile = join(live.d.dir, 'admin.token');
  writeFileSync(tokenFile, 'unlink-admin-token-0123456789abcdef\n', { mode: 0o600 });
  const cf = SNAPCONF.replace(/^/, `admin_token_file ${tokenFile}\nrate_messages_per_sec 1000000\nrate_burst 1000000\n`);
  await live.d.stop();
  const d = live.d = await startDaemon({ conf: cf, dir: live.d.dir });
  const snap = join(d.dataDir, 'rooms', `${room}.snap`);
  const fault = join(d.dataDir, 'rooms', 'FAULT');
  const c = await connectHello(d, 'alice');
  await subscribe(c, room);
  const rs = await pipeline(c, room, 1, 45, ACT);
  assert.ok(rs.every((r) => r.type === 'ack'));
  await waitFor(() => existsSync(snap), 'the room has a snapshot');
  await subscribe(c, filler);
  writeFileSync(fault, 'unlink-eio\n');
  const from = d.stderr.length;
  const del = await httpRequest(d, { method: 'DELETE', path: `/admin/rooms/${room}`, headers: UNLINK_AUTH });
  assert.equal(del.status, 200, del.body);
  // the unlink follows the next flush: one more write makes sure there was one
  assert.equal((await c.request(patchAction(filler, 1, [{ op: 'add', path: '/big', value: 'x' }]))).type, 'ack');
  await d.waitLog(new RegExp(`event=unlink_failed file=\\S*${room}\\.snap`), TIMEOUT, from);
  assert.ok(existsSync(snap), 'the snapshot is still there');
  assert.equal(await unlinksPending(d), 1);
  return { cf, c, snap, fault };
}

test('deleted room whose snapshot unlink fails (FAULT=unlink-eio): retried at each flush, its DELETE record outlives segment trimming, the room never comes back across restarts', { skip: skipNoFault }, async () => {
  await withKeptDaemon({ conf: SNAPCONF }, async (live) => {
    const room = 'gone:a', filler = 'gone:filler';
    const { cf, snap, fault, ...r } = await deleteWithFailingUnlink(live, room, filler);
    let c = r.c;
    let d = live.d;
    const getRoom = async () => (await httpRequest(d, { path: `/admin/rooms/${room}`, headers: UNLINK_AUTH })).status;
    const pending = () => unlinksPending(d);
    // enough writes that every older segment would be trimmed twice over
    let n = await pushBytes(c, filler, 2);
    assert.equal(await getRoom(), 404, 'deleted while the daemon runs');
    await c.close();
    // a crash with the file still there: start-up sees the DELETE record
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    assert.equal(await getRoom(), 404, 'not back after the first restart');
    await d.waitLog(/event=unlink_failed file=\S*gone:a\.snap/, TIMEOUT, 0);
    assert.equal(await pending(), 1, 'start-up queued the failed unlink again');
    c = await connectHello(d, 'alice');
    await subscribe(c, filler);
    n = await pushBytes(c, filler, n);
    await c.close();
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    assert.equal(await getRoom(), 404, 'not back after trimming in the second run either');
    // the disk recovers: the next flush's retry removes the file
    rmSync(fault);
    c = await connectHello(d, 'alice');
    await subscribe(c, filler);
    assert.equal((await c.request(patchAction(filler, n, [{ op: 'add', path: '/x', value: n }]))).type, 'ack');
    await waitFor(async () => (await pending()) === 0, 'the retried unlink succeeded');
    assert.ok(!existsSync(snap), 'the snapshot is gone');
    await c.close();
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    assert.equal(await getRoom(), 404, 'still deleted');
    await d.stop();
  });
});

// The same room made again while the old snapshot's unlink keeps failing:
// the new incarnation's first snapshot replaces the file and ends the
// retries. A retry after it (once the disk recovers) would unlink the new
// room's snapshot, and with its records trimmed from the WAL the new room
// would be lost at the next start-up.
test('a room made again while its old snapshot cannot be unlinked (FAULT=unlink-eio): its new snapshot ends the retries; the new room survives trimming and a restart', { skip: skipNoFault }, async () => {
  await withKeptDaemon({ conf: SNAPCONF }, async (live) => {
    const room = 'again:a', filler = 'again:filler';
    const { cf, snap, fault, ...r } = await deleteWithFailingUnlink(live, room, filler);
    let c = r.c;
    let d = live.d;
    const pending = () => unlinksPending(d);
    await c.close();
    // made again (create_on_subscribe): 40 actions, snapshot_every 20
    c = await connectHello(d, 'bob');
    const fresh = await subscribe(c, room);
    assert.equal(fresh.seq, 0, JSON.stringify(fresh));
    assert.ok((await pipeline(c, room, 1, 40, ACT)).every((r) => r.type === 'ack'));
    await waitFor(async () => (await pending()) === 0, 'the new snapshot ended the retries');
    const h = await head(c, room);
    assert.equal(h.seq, 40);
    // the disk recovers; flushes and trimming go on
    rmSync(fault);
    await subscribe(c, filler);
    await pushBytes(c, filler, 2);
    assert.ok(existsSync(snap), 'the new room\'s snapshot is still there');
    await c.close();
    await d.kill('SIGKILL');
    d = live.d = await startDaemon({ conf: cf, dir: d.dir });
    const c2 = await connectHello(d, 'bob');
    assertSameHead(await head(c2, room), h, 'the new room after a restart');
    await c2.close();
    await d.stop();
  });
});
