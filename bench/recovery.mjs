#!/usr/bin/env node
// recovery.mjs - how long movexd takes to start on a data dir with many
// logged actions (crash recovery: WAL replay, snapshot loading).
//
// For each variant, build/release/bench/wal_gen writes a data dir through
// the real engine and WAL storage (ROOMS rooms, ACTIONS actions round-robin
// over them, fsync no, closed like a crash: no final snapshots), then the
// release daemon is started REPS times on a fresh copy of that dir, and the
// time from spawn until it prints `event=listening` is measured (recovery
// runs before the daemon listens). The `event=recovered` line's counts, the
// daemon's CPU time and resident memory at that point are reported too.
//
// Variants (--snapshots, comma-separated snapshot_every values):
//   1000000  no snapshot is ever due: every record is replayed from the WAL
//            (what the default snapshot_every 10000 gives a server whose rooms
//            have fewer than 10000 records each, until wal_max_bytes forces a
//            checkpoint)
//   50       snapshots written during generation as the daemon would: recovery
//            loads one snapshot per room and replays only the records after it
//
// Every start of a variant uses the same generated dir (wal_gen syncs it
// before it exits). Once listening, the daemon is stopped with SIGKILL, which
// leaves the dir as it was: recovery only reads the segments and snapshots and
// opens a new, empty WAL segment after the last record (the first start
// creates it, later starts reuse it). The script checks this: it lists every
// file's size and mtime before the first start and after each one, and
// reports any other change. (A SIGTERM would first write a snapshot of every
// dirty room - a clean shutdown, not part of start-up; --shutdown times one
// SIGTERM stop per variant, on its last start.) With --cold the copy's pages are dropped from the page
// cache (posix_fadvise DONTNEED by `wal_gen --drop-cache`, only those files)
// before each start, so recovery reads from the disk.
//
// Usage: node bench/recovery.mjs [--rooms 10000] [--actions 1000000]
//          [--snapshots 1000000,50] [--reps 5] [--dir /tmp] [--cold 0|1]
//          [--shutdown 0|1] [--max-seconds S [--min-reps 3]] [--json FILE]
//
// --max-seconds bounds the run time: a variant stops after --min-reps starts once
// its starts have taken more than S seconds in total (the number of starts
// made is printed).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const BIN = join(ROOT, 'build/release/movexd');
const GEN = join(ROOT, 'build/release/bench/wal_gen');
const CLK_TCK = 100;

function parseArgs(argv) {
  const o = { rooms: 10000, actions: 1000000, snapshots: '1000000,50', reps: 5, minReps: 3, maxSeconds: 0, dir: tmpdir(), cold: 0, shutdown: 0, json: '' };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '').replace(/-(\w)/g, (_, c) => c.toUpperCase());
    if (!(k in o)) { console.error(`unknown option ${argv[i]}`); process.exit(1); }
    const v = argv[++i];
    o[k] = typeof o[k] === 'number' ? Number(v) : v;
  }
  o.snapshots = String(o.snapshots).split(',').map(Number);
  return o;
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const median = (a) => { const s = [...a].sort((x, y) => x - y); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const mib = (b) => (b / 1048576).toFixed(0);

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

// apparent and allocated bytes of every file under dir, per top-level entry
function sizes(dir) {
  const out = {};
  const walk = (p, top) => {
    for (const e of readdirSync(p, { withFileTypes: true })) {
      const q = join(p, e.name);
      if (e.isDirectory()) walk(q, top ?? e.name);
      else {
        const s = statSync(q);
        const k = top ?? e.name;
        out[k] ??= { files: 0, bytes: 0, allocated: 0 };
        out[k].files++; out[k].bytes += s.size; out[k].allocated += s.blocks * 512;
      }
    }
  };
  walk(dir, null);
  return out;
}

// name -> size and mtime of every file under dir (except LOCK)
function manifest(dir) {
  const out = new Map();
  const walk = (p) => {
    for (const e of readdirSync(p, { withFileTypes: true })) {
      const q = join(p, e.name);
      if (e.isDirectory()) walk(q);
      else if (e.name !== 'LOCK') { const s = statSync(q); out.set(q, `${s.size}/${s.mtimeMs}`); }
    }
  };
  walk(dir);
  return out;
}

// Files a start changed, besides the new WAL segment recovery opens after
// the last record (an empty, preallocated wal-N.log, reused by later starts).
function manifestDiff(a, b) {
  const out = [];
  for (const [k, v] of b) if (a.get(k) !== v && !(!a.has(k) && /\/wal-\d{20}\.log$/.test(k))) out.push(k);
  for (const k of a.keys()) if (!b.has(k)) out.push(`${k} (removed)`);
  return out;
}

function procStat(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  return { cpu_s: (Number(f[11]) + Number(f[12])) / CLK_TCK, rss_mib: Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024 };
}

// Interrupted (Ctrl-C, SIGTERM): kill the daemon being timed, remove the
// temporary directory.
const live = { proc: null, base: null };
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (live.proc && live.proc.exitCode === null) live.proc.kill('SIGKILL');
    if (live.base) rmSync(live.base, { recursive: true, force: true });
    process.exit(130);
  });
}

// Start the daemon on dataDir; resolve at `event=listening` with timings.
async function startOnce(conf, dataDir, { shutdown = false } = {}) {
  const t0 = nowMs();
  const proc = spawn(BIN, ['-c', conf, '--listen', '127.0.0.1:0', '--data-dir', dataDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.proc = proc;
  let stderr = '';
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  const res = await new Promise((resolveP, rej) => {
    const timer = setTimeout(() => rej(new Error(`daemon did not listen within 300 s:\n${stderr}`)), 300000);
    let done = false;
    proc.stderr.on('data', (d) => {
      stderr += d;
      if (!done && /event=listening /.test(stderr)) {
        done = true;
        clearTimeout(timer);
        const t = nowMs() - t0;
        const st = procStat(proc.pid);
        const m = /event=recovered rooms=(\d+) records_replayed=(\d+) records_in_snapshots=(\d+)/.exec(stderr);
        resolveP({ start_s: t / 1000, cpu_s: st.cpu_s, rss_mib: st.rss_mib,
          rooms: m ? Number(m[1]) : NaN, replayed: m ? Number(m[2]) : NaN, in_snapshots: m ? Number(m[3]) : NaN });
      }
    });
    proc.on('exit', (c) => { if (done) return; clearTimeout(timer); rej(new Error(`daemon exited ${c} before listening:\n${stderr}`)); });
  });
  if (shutdown) {
    const t1 = nowMs();
    proc.kill('SIGTERM');
    const r = await exited;
    res.shutdown_s = (nowMs() - t1) / 1000;
    if (r.code !== 0) throw new Error(`daemon exited ${r.code}/${r.sig} on SIGTERM:\n${stderr.slice(-2000)}`);
  } else {
    proc.kill('SIGKILL');
    await exited;
  }
  return res;
}

async function main() {
  const o = parseArgs(process.argv);
  for (const f of [BIN, GEN]) if (!existsSync(f)) { console.error(`missing ${f}: run make VARIANT=release all bench-bin`); process.exit(1); }
  const base = mkdtempSync(join(o.dir, 'movexd-recovery-'));
  live.base = base;
  const results = {};
  console.log(`recovery: ${o.actions} actions over ${o.rooms} rooms, ${o.reps} starts per variant${o.cold ? ', page cache dropped before each start' : ', page cache warm'}`);
  try {
    for (const every of o.snapshots) {
      const gen = join(base, `gen-${every}`);
      const t0 = nowMs();
      const line = run(GEN, [gen, '--rooms', String(o.rooms), '--actions', String(o.actions), '--snapshot-every', String(every)]).trim();
      const genS = (nowMs() - t0) / 1000;
      const sz = sizes(gen);
      const wal = sz.wal ?? { files: 0, bytes: 0, allocated: 0 }, snaps = sz.rooms ?? { files: 0, bytes: 0, allocated: 0 };
      const conf = join(base, `movexd-${every}.conf`);
      writeFileSync(conf, `log_level info\nsnapshot_every ${every}\nroom default {\n    reducer json\n    history 1000\n    create_on_subscribe yes\n}\n`);
      console.log(`  snapshot_every ${every}: generated in ${genS.toFixed(1)} s (${line})`);
      console.log(`    data dir: wal ${mib(wal.bytes)} MiB in ${wal.files} segments (allocated ${mib(wal.allocated)} MiB), ` +
        `snapshots ${mib(snaps.bytes)} MiB in ${snaps.files} files (allocated ${mib(snaps.allocated)} MiB)`);
      const before = manifest(gen);
      const runs = [];
      let spent = 0;
      for (let r = 0; r < o.reps; r++) {
        if (o.maxSeconds && r >= o.minReps && spent > o.maxSeconds) {
          console.log(`    (stopping after ${r} starts: they took ${spent.toFixed(0)} s, over the ${o.maxSeconds} s budget)`);
          break;
        }
        // wal_gen synced the dir (syncfs) when it finished; with --cold, drop
        // its pages from the page cache
        if (o.cold) run(GEN, ['--drop-cache', gen]);
        const last = r === o.reps - 1 || (o.maxSeconds && r + 1 >= o.minReps && spent > o.maxSeconds);
        // a SIGTERM stop writes snapshots (changes the dir): only at the end
        const res = await startOnce(conf, gen, { shutdown: o.shutdown && last });
        spent += res.start_s;
        runs.push(res);
        if (!res.shutdown_s) {
          const changed = manifestDiff(before, manifest(gen));
          if (changed.length) console.log(`    !! start ${r + 1} changed the data dir: ${changed.slice(0, 5).join(', ')}`);
        }
        console.log(`    start ${r + 1}: listening after ${res.start_s.toFixed(2)} s (cpu ${res.cpu_s.toFixed(2)} s, rss ${res.rss_mib.toFixed(0)} MiB; ` +
          `rooms=${res.rooms} replayed=${res.replayed} in_snapshots=${res.in_snapshots})` +
          (res.shutdown_s !== undefined ? `; SIGTERM shutdown took ${res.shutdown_s.toFixed(1)} s` : ''));
      }
      rmSync(gen, { recursive: true, force: true });
      const t = runs.map((x) => x.start_s);
      results[every] = {
        generate_s: genS, gen_output: line, wal, snapshots: snaps,
        start_s: median(t), min: Math.min(...t), max: Math.max(...t),
        cpu_s: median(runs.map((x) => x.cpu_s)), rss_mib: median(runs.map((x) => x.rss_mib)),
        runs,
      };
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
  console.log('summary (median [min..max]; target < 3 s):');
  for (const every of o.snapshots) {
    const s = results[every];
    console.log(`  snapshot_every ${String(every).padEnd(8)} start-up ${s.start_s.toFixed(2)} s [${s.min.toFixed(2)}..${s.max.toFixed(2)}]  ` +
      `(${s.runs.length} starts)  cpu ${s.cpu_s.toFixed(2)} s  rss ${s.rss_mib.toFixed(0)} MiB  replayed ${s.runs[0].replayed} records, ${s.runs[0].in_snapshots} covered by snapshots  ` +
      `data dir ${mib(s.wal.bytes + s.snapshots.bytes)} MiB`);
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, results }, null, 2));
}

main().catch((e) => { console.error(e.stack || e); process.exit(1); });
