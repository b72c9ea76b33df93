#!/usr/bin/env node
// crash.mjs - crash-recovery tester for movexd (PROTOCOL.md "Durability and
// recovery", "Exactly-once bookkeeping").
//
// One cycle: writers (each its own client id) pipeline `inc` and `add`
// actions into several rooms and record every ack; the daemon is SIGKILLed
// at a seeded random moment (after a random number of acks, or after a
// random short delay); it is restarted on the same data directory; every
// writer reconnects with the SAME client id, resubscribes and resends each
// action it sent but never saw acked, with the same n (as the client library
// does). Each resend must be acked (duplicate:true when it was applied before
// the crash) - never rejected, never applied twice. Then every room is
// verified from scratch:
//   - `get`: the head checksum equals checksum() of the returned state;
//   - `sync` since {seq 0, checksum({})} returns `actions` with seqs
//     1..head without gaps; replaying them locally reproduces every entry's
//     checksum; each (client, n) appears exactly once; every ack ever
//     received (across all cycles) is there at its seq with its prev and
//     checksum; the set of applied (client, n) equals the set of actions sent;
//     entries verified in an earlier cycle are still the same (client, n,
//     checksum) at the same seq. (Long runs, > 50 cycles, sync from seq 0
//     only every 25th cycle - `fullEvery` - and otherwise since the last
//     verified {seq, checksum}, which the server only answers with `actions`
//     when its checksum there is unchanged; so the cost stays linear.)
//   - counters: state.c_<writer> is the number of distinct inc actions that
//     writer sent to the room; state.last_<writer> is the n of its last
//     applied add.
// The conf makes snapshots (snapshot_every 50), segment rotation
// (wal_segment_bytes 256k), segment deletion (wal_max_bytes 1m) and, in
// about a quarter of the cycles, eviction of every room (evict_idle_ms 300)
// happen during the run. Everything random comes from one seed, printed on failure.
//
// Module:  runCrashCycles({bin, cycles, seed, fsync}) -> stats (throws on failure)
// CLI:     node test/integration/crash.mjs --cycles N [--seed S] [--fsync always|everysec|no]
//                [--bin PATH] [--rooms R] [--writers W] [--full-every K] [--quiet]
//          (bin defaults to $MOVEXD_BIN, else build/release/movexd; set
//          MOVEXD_ASAN=1 for a sanitizer build so timeouts are scaled)
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from '../node_modules/ws/index.js';
import { checksum } from '../../client/movex.js';
import { startDaemon, withTimeout, applyPatch, BIN, ROOT, TIMEOUT, SLOW } from './lib.mjs';

const HISTORY = 100000;
const INITIAL = checksum({});

// ---- seeded PRNG (mulberry32) --------------------------------------------
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)); // inclusive
  next.pick = (arr) => arr[Math.floor(next() * arr.length)];
  return next;
}

export function crashConf({ fsync = 'always', snapshotEvery = 50, segment = '256k', walMax = '1m', evictIdleMs = 300 } = {}) {
  return `log_level info
fsync ${fsync}
evict_idle_ms ${evictIdleMs}
snapshot_every ${snapshotEvery}
wal_segment_bytes ${segment}
wal_max_bytes ${walMax}
max_queue_bytes 256m
room default {
    reducer json
    history ${HISTORY}
    create_on_subscribe yes
}
`;
}

class CrashFailure extends Error {}
function fail(msg) { throw new CrashFailure(msg); }
function check(cond, msg) { if (!cond) fail(typeof msg === 'function' ? msg() : msg); }
const J = (v) => JSON.stringify(v);

// ---- a minimal connection: replies by id; every other message is ignored
class Conn {
  static open(url) {
    return withTimeout(new Promise((res, rej) => {
      const c = new Conn();
      c.ws = new WebSocket(url, ['movex.v1']);
      c.waiters = new Map();
      c.nextId = 1;
      c.isClosed = false;
      c.closed = new Promise((r) => c.ws.on('close', () => {
        c.isClosed = true;
        for (const w of c.waiters.values()) w.rej(new Error('connection closed'));
        c.waiters.clear();
        r();
      }));
      c.ws.on('error', () => {});
      c.ws.on('message', (data) => {
        const m = JSON.parse(String(data));
        if (m.id === undefined) return; // fwd
        const w = c.waiters.get(m.id);
        if (w) { c.waiters.delete(m.id); w.res(m); }
      });
      c.ws.once('open', () => res(c));
      c.ws.once('error', rej);
    }), TIMEOUT, `connect ${url}`);
  }
  // Send msg with a fresh id; the reply resolves the returned promise (which
  // rejects when the connection closes first).
  send(msg) {
    const id = this.nextId++;
    const p = new Promise((res, rej) => this.waiters.set(id, { res, rej }));
    if (this.isClosed) { this.waiters.get(id).rej(new Error('connection closed')); this.waiters.delete(id); }
    else this.ws.send(J({ ...msg, id }));
    return p;
  }
  request(msg, what = msg.type) { return withTimeout(this.send(msg), TIMEOUT, `reply to ${what}`); }
  close() { try { this.ws.close(); } catch { /* closed */ } return this.closed; }
  terminate() { try { this.ws.terminate(); } catch { /* closed */ } return this.closed; }
}

// ---- the tester ------------------------------------------------------------
// powercut: instead of a SIGKILL from outside, arm the daemon's simulated
// power cut (a -DMX_FAULT_INJECTION build; docs/STORAGE.md "Fault
// injection"): wal/FAULT holds "powercut SEED COUNT", and at the COUNT-th
// durable-file operation (1..maxCountdown) the daemon drops or tears every
// WAL write not yet fdatasync'ed and kills itself. Unlike a kill -9 this
// loses what only the page cache held, so a missing fdatasync shows up as a
// lost ack. Only meaningful with fsync always (the policy that promises it).
export async function runCrashCycles({
  bin = BIN, cycles = 20, seed, fsync = 'always', rooms: nRooms = 6, writers: nWriters = 4,
  window = 8, maxKillAcks = 400, maxKillDelayMs = 250, fullEvery, idleChance = 0.25, log = () => {}, keepOnFailure = true,
  powercut = false, maxCountdown = 300,
} = {}) {
  if (seed === undefined) seed = (Date.now() ^ (process.pid << 10)) >>> 0;
  seed >>>= 0;
  const rnd = prng(seed);
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'movexd-crash-'));
  const conf = crashConf({ fsync });
  const roomIds = Array.from({ length: nRooms }, (_, i) => `crash:r${i}`);
  const writerIds = Array.from({ length: nWriters }, (_, i) => `w${i}`);

  // What was sent and acked, per room: key `${client} ${n}`.
  const sent = new Map(roomIds.map((r) => [r, new Map()])); // -> {client, n, kind, payload, dep}
  const acks = new Map(roomIds.map((r) => [r, new Map()])); // -> {seq, prev, checksum}
  // Verified prefix per room (for incremental verification of long runs).
  // keys[seq] = `${client} ${n}`, sums[seq] = checksum at seq (sums[0] the
  // initial state's), applied: key -> seq, incs/lastAdd per writer.
  const verified = new Map(roomIds.map((r) => [r, {
    seq: 0, state: {}, keys: [null], sums: [INITIAL], applied: new Map(), incs: new Map(), lastAdd: new Map(), lastFull: -Infinity,
  }]));
  const sentIncs = new Map(roomIds.map((r) => [r, new Map()]));
  if (fullEvery === undefined) fullEvery = cycles <= 50 ? 1 : 25;
  const writerState = writerIds.map((id) => ({
    id, nextN: new Map(roomIds.map((r) => [r, 1])), pending: new Map(), // key `${room} ${n}` -> entry
  }));
  const stats = {
    seed, cycles: 0, acks: 0, duplicateAcks: 0, resent: 0, resentApplied: 0, resentDuplicate: 0,
    tornTails: 0, idleEvictions: 0, killsDuringEviction: 0, killsAfterAcks: 0, killsAfterDelay: 0, maxWalFiles: 0, maxSnapshots: 0,
    checkpoints: 0, maxHeadSeq: 0, fullVerifications: 0, incrementalVerifications: 0, durationMs: 0,
    powercuts: 0, unsyncedWrites: 0, writesLost: 0, writesTorn: 0, writesKept: 0,
  };
  let d = null;
  let cycle = -1;

  const recordAck = (room, client, m, what) => {
    const key = `${client} ${m.n}`;
    check(m.type === 'ack', () => `${what}: expected ack for ${room} ${key}, got ${J(m)}`);
    check(m.room === room, () => `${what}: ack for the wrong room: ${J(m)}`);
    const prev = acks.get(room).get(key);
    if (prev) {
      check(m.duplicate === true, () => `${what}: ${room} ${key} acked twice without duplicate:true: first ${J(prev)}, now ${J(m)}`);
      check(prev.seq === m.seq && prev.prev === m.prev && prev.checksum === m.checksum,
        () => `${what}: duplicate ack of ${room} ${key} differs from the original: first ${J(prev)}, now ${J(m)}`);
      stats.duplicateAcks++;
      return false;
    }
    check(Number.isInteger(m.seq) && m.seq >= 1, () => `${what}: bad ack seq ${J(m)}`);
    acks.get(room).set(key, { seq: m.seq, prev: m.prev, checksum: m.checksum });
    stats.acks++;
    return true;
  };

  const connectWriter = async (w) => {
    const c = await Conn.open(d.url);
    const wel = await c.request({ type: 'hello', client: w.id }, 'hello');
    check(wel.type === 'welcome' && wel.client === w.id, () => `hello ${w.id}: ${J(wel)}`);
    const nextNs = {};
    for (const room of roomIds) {
      const s = await c.request({ type: 'subscribe', room }, `subscribe ${room}`);
      check(s.type === 'snapshot', () => `subscribe ${room} by ${w.id}: ${J(s)}`);
      check(checksum(s.state) === s.checksum, () => `subscribe ${room}: checksum ${s.checksum} != checksum(state) ${checksum(s.state)}`);
      nextNs[room] = s.next_n;
    }
    return { c, nextNs };
  };

  const newAction = (w, room) => {
    const n = w.nextN.get(room);
    w.nextN.set(room, n + 1);
    const kind = rnd() < 0.7 ? 'inc' : 'add';
    const payload = kind === 'inc' ? [{ op: 'inc', path: `/c_${w.id}`, value: 1 }] : [{ op: 'add', path: `/last_${w.id}`, value: n }];
    // dep: the writer's latest unacknowledged action in this room, as the
    // client library sets it
    let dep;
    for (const p of w.pending.values()) if (p.room === room && (dep === undefined || p.n > dep)) dep = p.n;
    const a = { room, client: w.id, n, kind, payload, dep };
    sent.get(room).set(`${w.id} ${n}`, a);
    if (kind === 'inc') sentIncs.get(room).set(w.id, (sentIncs.get(room).get(w.id) ?? 0) + 1);
    w.pending.set(`${room} ${n}`, a);
    return a;
  };
  const actionMsg = (a) => ({ type: 'action', room: a.room, n: a.n, ...(a.dep !== undefined ? { dep: a.dep } : {}), action: { type: 'patch', payload: a.payload } });

  // ---- one room's verification --------------------------------------------
  // Full: sync since seq 0. Entries up to the previously verified seq must be
  // exactly what was verified before (same (client, n) and checksum at every
  // seq); entries after it are checked and replayed locally. Incremental:
  // sync since the last verified {seq, checksum} (an `actions` reply proves
  // the server's checksum there is unchanged) and check the new entries.
  const verifyRoom = async (vc, room, forceFull) => {
    const g = await vc.request({ type: 'get', room }, `get ${room}`);
    check(g.type === 'snapshot', () => `get ${room}: ${J(g)}`);
    check(checksum(g.state) === g.checksum, () => `get ${room}: head checksum ${g.checksum} != checksum(state) ${checksum(g.state)} (seq ${g.seq})`);
    stats.maxHeadSeq = Math.max(stats.maxHeadSeq, g.seq);
    const v = verified.get(room);
    check(g.seq >= v.seq, () => `${room}: head seq ${g.seq} is below the verified seq ${v.seq} (acked actions lost)`);
    const full = g.seq <= HISTORY && (forceFull || cycle - v.lastFull >= fullEvery);
    const from = full ? 0 : v.seq;
    const r = await vc.request({ type: 'sync', room, since: { seq: from, checksum: v.sums[from] } }, `sync ${room}`);
    check(r.type === 'actions', () => `sync ${room} since ${from}: expected actions, got ${J(r).slice(0, 300)}`);
    check(r.from === from && r.to === g.seq, () => `sync ${room}: from/to ${r.from}/${r.to}, expected ${from}/${g.seq}`);
    check(r.actions.length === g.seq - from, () => `sync ${room}: ${r.actions.length} actions for ${from}..${g.seq}`);
    const sentHere = sent.get(room);
    let state = v.state;
    for (let i = 0; i < r.actions.length; i++) {
      const e = r.actions[i];
      const seq = from + 1 + i;
      check(e.seq === seq, () => `${room}: entry ${i} has seq ${e.seq}, expected ${seq} (gap or reorder)`);
      const key = `${e.client} ${e.n}`;
      if (seq <= v.seq) {
        check(v.keys[seq] === key && v.sums[seq] === e.checksum,
          () => `${room}: seq ${seq} is now ${key} checksum ${e.checksum}; an earlier verification saw ${v.keys[seq]} checksum ${v.sums[seq]}`);
        continue;
      }
      check(!v.applied.has(key), () => `${room}: action ${key} applied twice: seq ${v.applied.get(key)} and ${seq}`);
      const a = sentHere.get(key);
      check(a, () => `${room}: seq ${seq} is ${key}, which no writer sent`);
      check(J(e.action) === J({ type: 'patch', payload: a.payload }), () => `${room}: seq ${seq} (${key}) carries ${J(e.action)}, sent ${J(a.payload)}`);
      try { state = applyPatch(state, e.action.payload); } catch (err) { fail(`${room}: seq ${seq} does not apply locally: ${err.message}`); }
      const sum = checksum(state);
      check(sum === e.checksum, () => `${room}: seq ${seq}: entry checksum ${e.checksum}, local replay gives ${sum}`);
      v.applied.set(key, seq);
      v.keys[seq] = key;
      v.sums[seq] = sum;
      if (a.kind === 'inc') v.incs.set(a.client, (v.incs.get(a.client) ?? 0) + 1);
      else v.lastAdd.set(a.client, a.n);
    }
    v.seq = g.seq;
    v.state = state;
    check(v.sums[g.seq] === g.checksum, () => `${room}: replayed head ${v.sums[g.seq]} != get checksum ${g.checksum}`);
    // every ack ever received is in the log at its seq, with its prev
    for (const [key, ak] of acks.get(room)) {
      check(v.keys[ak.seq] === key && v.sums[ak.seq] === ak.checksum && v.sums[ak.seq - 1] === ak.prev,
        () => `${room}: acked action ${key} ${J(ak)} is not in the log as acked: seq ${ak.seq} holds ${v.keys[ak.seq]} prev ${v.sums[ak.seq - 1]} checksum ${v.sums[ak.seq]}`);
    }
    // every action sent was applied (all have been acked by now), exactly once
    check(v.applied.size === sentHere.size, () => {
      const missing = [...sentHere.keys()].filter((k) => !v.applied.has(k));
      return `${room}: ${sentHere.size} actions sent, ${v.applied.size} applied; not applied: ${missing.slice(0, 10).join(', ')}`;
    });
    // counters and last-writer values
    for (const wid of writerIds) {
      const incs = v.incs.get(wid) ?? 0;
      check(incs === (sentIncs.get(room).get(wid) ?? 0), () => `${room}: ${incs} inc actions of ${wid} applied, ${sentIncs.get(room).get(wid)} sent`);
      check((g.state[`c_${wid}`] ?? 0) === incs, () => `${room}: counter c_${wid} is ${g.state[`c_${wid}`]}, ${incs} distinct inc actions were sent (each must apply once)`);
      check(g.state[`last_${wid}`] === v.lastAdd.get(wid), () => `${room}: last_${wid} is ${g.state[`last_${wid}`]}, expected ${v.lastAdd.get(wid)}`);
    }
    if (full) { v.lastFull = cycle; stats.fullVerifications++; } else stats.incrementalVerifications++;
  };

  const verifyAll = async (forceFull = false) => {
    const vc = await Conn.open(d.url);
    const wel = await vc.request({ type: 'hello', client: 'crash-verifier' }, 'hello');
    check(wel.type === 'welcome', () => `verifier hello: ${J(wel)}`);
    for (const room of roomIds) await verifyRoom(vc, room, forceFull);
    await vc.close();
  };

  const observeDir = () => {
    try {
      const wal = readdirSync(join(dir, 'data', 'wal')).filter((f) => /^wal-\d{20}\.log$/.test(f));
      const snaps = readdirSync(join(dir, 'data', 'rooms')).filter((f) => f.endsWith('.snap'));
      stats.maxWalFiles = Math.max(stats.maxWalFiles, wal.length);
      stats.maxSnapshots = Math.max(stats.maxSnapshots, snaps.length);
    } catch { /* not there yet */ }
  };

  const countLogs = () => {
    if (!d) return;
    stats.checkpoints += (d.stderr.match(/event=checkpoint/g) || []).length;
    if (/event=wal_torn_tail/.test(d.stderr)) stats.tornTails++;
  };
  const restart = async () => {
    countLogs();
    // debug: event=room_evicted / room_loaded lines
    d = await startDaemon({ conf, dir, bin, args: ['--log-level', 'debug'] });
  };
  // Wait until every room has been evicted (no subscribers, idle longer
  // than evict_idle_ms): the next cycle then loads them from snapshots.
  // killMidway: SIGKILL as soon as the first eviction is logged (snapshots
  // of the others may be in progress), restart and verify.
  // `from`: where in the log to look (rooms may go idle and be evicted
  // while the verifier still reads them, before this is called).
  const waitEvicted = async (killMidway, from) => {
    const end = Date.now() + 10000 * SLOW;
    for (;;) {
      const seen = new Set([...d.stderr.slice(from).matchAll(/event=room_evicted room=(\S+)/g)].map((m) => m[1]));
      if (killMidway && seen.size) {
        await d.kill('SIGKILL');
        stats.killsDuringEviction++;
        await restart();
        await verifyAll();
        break;
      }
      if (roomIds.every((r) => seen.has(r))) break;
      if (Date.now() > end) fail(`cycle ${cycle}: idle rooms were not evicted within ${10000 * SLOW} ms (evicted: ${[...seen]})`);
      await new Promise((r) => setTimeout(r, 20));
    }
    stats.idleEvictions++;
  };

  try {
    await restart();
    for (cycle = 0; cycle < cycles; cycle++) {
      // ---- write phase: pipelined writers until the kill -------------------
      const conns = [];
      for (const w of writerState) {
        const { c } = await connectWriter(w);
        conns.push(c);
      }
      let cycleAcks = 0, killed = false;
      const faultFile = join(d.dataDir, 'wal', 'FAULT');
      if (powercut) writeFileSync(faultFile, `powercut ${rnd.int(1, 0x7fffffff)} ${rnd.int(1, maxCountdown)}\n`);
      const killByAcks = !powercut && rnd() < 0.5;
      const killAt = killByAcks ? rnd.int(0, maxKillAcks) : rnd.int(0, maxKillDelayMs);
      const kill = () => { if (!killed) { killed = true; d.proc.kill('SIGKILL'); } };
      if (killByAcks) stats.killsAfterAcks++; else if (!powercut) stats.killsAfterDelay++;
      let fatal = null;
      const pump = (w, c) => {
        if (killed || c.isClosed) return;
        const a = newAction(w, rnd.pick(roomIds));
        c.send(actionMsg(a)).then((m) => {
          try {
            recordAck(a.room, w.id, m, `cycle ${cycle} write`);
          } catch (e) { fatal ??= e; kill(); return; }
          w.pending.delete(`${a.room} ${a.n}`);
          cycleAcks++;
          if (killByAcks && cycleAcks >= killAt) kill();
          pump(w, c);
        }, () => { /* connection closed by the crash: stays pending */ });
      };
      let timer;
      if (powercut) d.exited.then(() => { killed = true; }); // it cuts its own power
      else if (killByAcks && killAt === 0) kill();
      else if (!killByAcks) timer = setTimeout(kill, killAt);
      // a safety net: an acks-triggered kill that never comes (stall)
      const stall = setTimeout(kill, 5000 * SLOW);
      for (let i = 0; i < writerState.length; i++) for (let k = 0; k < window; k++) pump(writerState[i], conns[i]);
      const ex = await d.exited;
      clearTimeout(timer);
      clearTimeout(stall);
      if (!killed) fail(`cycle ${cycle}: the daemon exited by itself (${J(ex)}); stderr:\n${d.stderr.slice(-3000)}`);
      check(ex.signal === 'SIGKILL', () => `cycle ${cycle}: daemon exit ${J(ex)}`);
      await withTimeout(Promise.all(conns.map((c) => c.closed)), TIMEOUT, 'writer connections closing after the crash');
      if (fatal) throw fatal;
      if (powercut) {
        rmSync(faultFile, { force: true });
        const m = /event=fault_powercut unsynced_writes=(\d+) lost=(\d+) torn=(\d+) kept=(\d+)/.exec(d.stderr);
        if (m) {
          stats.powercuts++;
          stats.unsyncedWrites += Number(m[1]);
          stats.writesLost += Number(m[2]);
          stats.writesTorn += Number(m[3]);
          stats.writesKept += Number(m[4]);
        }
      }
      observeDir();

      // ---- restart, reconnect, resend -------------------------------------
      await restart();
      for (const w of writerState) {
        const { c, nextNs } = await connectWriter(w);
        for (const room of roomIds) {
          let maxAcked = 0;
          for (const [key] of acks.get(room)) {
            const [cl, n] = key.split(' ');
            if (cl === w.id) maxAcked = Math.max(maxAcked, Number(n));
          }
          const sentNext = w.nextN.get(room);
          check(nextNs[room] > maxAcked, () => `cycle ${cycle}: ${w.id} ${room}: next_n ${nextNs[room]} after restart, but n ${maxAcked} was acked (the exactly-once memory lost it)`);
          check(nextNs[room] <= sentNext, () => `cycle ${cycle}: ${w.id} ${room}: next_n ${nextNs[room]} is above every n sent (${sentNext - 1})`);
        }
        const resend = [...w.pending.values()].sort((a, b) => (a.room < b.room ? -1 : a.room > b.room ? 1 : a.n - b.n));
        const replies = resend.map((a) => c.send(actionMsg(a)));
        // plus one already-acked action per room (if any): must come back as
        // the same ack with duplicate:true
        const dupChecks = [];
        for (const room of roomIds) {
          const mine = [...acks.get(room)].filter(([k]) => k.startsWith(`${w.id} `));
          if (!mine.length) continue;
          const recent = mine.slice(-50);
          const [key] = rnd.pick(recent);
          const a = sent.get(room).get(key);
          dupChecks.push({ a, p: c.send(actionMsg(a)) });
        }
        for (let i = 0; i < resend.length; i++) {
          const a = resend[i];
          const m = await withTimeout(replies[i], TIMEOUT, `reply to resent ${a.room} ${w.id} n=${a.n}`);
          check(m.type === 'ack', () => `cycle ${cycle}: resent ${a.room} ${w.id} n=${a.n} (dep ${a.dep}) got ${J(m)}; an unacked action must be acked on resend (applied now or duplicate)`);
          recordAck(a.room, w.id, m, `cycle ${cycle} resend`);
          stats.resent++;
          if (m.duplicate) stats.resentDuplicate++; else stats.resentApplied++;
          w.pending.delete(`${a.room} ${a.n}`);
        }
        for (const { a, p } of dupChecks) {
          const m = await withTimeout(p, TIMEOUT, `reply to resent acked ${a.room} ${w.id} n=${a.n}`);
          check(m.type === 'ack' && m.duplicate === true, () => `cycle ${cycle}: resend of acked ${a.room} ${w.id} n=${a.n} got ${J(m)}`);
          recordAck(a.room, w.id, m, `cycle ${cycle} duplicate`);
        }
        await c.close();
      }
      // ---- verify ---------------------------------------------------------
      const idleFrom = d.stderr.length; // the writers are gone: rooms may be evicted from here on
      await verifyAll();
      observeDir();
      // now and then let every room go idle and leave memory, so the next
      // cycle loads them back from their snapshots (and a kill may hit
      // rooms just loaded)
      if (rnd() < idleChance) await waitEvicted(rnd() < 0.3, idleFrom);
      stats.cycles++;
      log(`cycle ${cycle}: kill after ${killByAcks ? `${killAt} acks` : `${killAt} ms`} (${cycleAcks} acked in the cycle); total acks ${stats.acks}, resent ${stats.resent} (${stats.resentDuplicate} duplicate), head seq max ${stats.maxHeadSeq}`);
    }
    // ---- a clean stop at the end, then one more recovery --------------------
    cycle = cycles;
    await d.stop();
    await restart();
    await verifyAll(true);
    await d.stop();
    countLogs();
    d = null;
    observeDir();
    rmSync(dir, { recursive: true, force: true });
    stats.durationMs = Date.now() - started;
    return stats;
  } catch (e) {
    const tail = d ? d.stderr.slice(-3000) : '';
    if (d && d.proc.exitCode === null && d.proc.signalCode === null) await d.kill('SIGKILL').catch(() => {});
    if (!keepOnFailure) rmSync(dir, { recursive: true, force: true });
    const err = new Error(`crash test failed (seed ${seed}, cycle ${cycle}${keepOnFailure ? `, data dir kept at ${dir}` : ''}; reproduce: node test/integration/crash.mjs --cycles ${Math.max(cycle + 1, 1)} --seed ${seed} --fsync ${fsync}): ${e.message}${tail ? `\ndaemon stderr tail:\n${tail}` : ''}`);
    err.seed = seed;
    err.cause = e;
    throw err;
  }
}

// ---- CLI -------------------------------------------------------------------
const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url) && !process.env.NODE_TEST_CONTEXT;
if (isMain) {
  const args = process.argv.slice(2);
  const opt = { cycles: 1000 };
  let quiet = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i], v = () => {
      if (i + 1 >= args.length) { console.error(`crash.mjs: ${a} needs a value`); process.exit(1); }
      return args[++i];
    };
    if (a === '--cycles') opt.cycles = Number(v());
    else if (a === '--seed') opt.seed = Number(v());
    else if (a === '--fsync') opt.fsync = v();
    else if (a === '--bin') opt.bin = resolve(v());
    else if (a === '--rooms') opt.rooms = Number(v());
    else if (a === '--writers') opt.writers = Number(v());
    else if (a === '--full-every') opt.fullEvery = Number(v());
    else if (a === '--quiet') quiet = true;
    else if (a === '-h' || a === '--help') {
      console.log('usage: node test/integration/crash.mjs --cycles N [--seed S] [--fsync always|everysec|no] [--bin PATH] [--rooms R] [--writers W] [--full-every K] [--quiet]');
      process.exit(0);
    } else { console.error(`crash.mjs: unknown argument ${a}`); process.exit(1); }
  }
  if (!Number.isInteger(opt.cycles) || opt.cycles < 1) { console.error('crash.mjs: --cycles must be a positive integer'); process.exit(1); }
  if (opt.seed !== undefined && !Number.isInteger(opt.seed)) { console.error('crash.mjs: --seed must be an integer'); process.exit(1); }
  opt.seed ??= (Date.now() ^ (process.pid << 10)) >>> 0;
  const bin = opt.bin || BIN;
  console.log(`crash.mjs: ${opt.cycles} cycles, seed ${opt.seed}, fsync ${opt.fsync || 'always'}, bin ${bin.startsWith(ROOT) ? bin.slice(ROOT.length + 1) : bin}`);
  const t0 = Date.now();
  runCrashCycles({ ...opt, log: quiet ? () => {} : (s) => console.log(s) }).then((st) => {
    console.log(`crash.mjs: PASS ${st.cycles} cycles in ${((Date.now() - t0) / 1000).toFixed(1)} s (seed ${st.seed}): ${JSON.stringify(st)}`);
  }, (e) => {
    console.error(`crash.mjs: FAIL (seed ${e.seed ?? opt.seed}): ${e.message}`);
    process.exit(1);
  });
}
