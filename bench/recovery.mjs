#!/usr/bin/env node
// recovery.mjs - how long movexd takes to start on a data dir with many
// logged actions (crash recovery), and how long until every room is rebuilt.
//
// For each variant, build/release/bench/wal_gen writes a data dir through
// the real engine and WAL storage (ROOMS rooms, ACTIONS actions round-robin
// over them, fsync no, closed like a crash: no final snapshots). Then the
// release daemon is started REPS times, each time on a fresh copy of that
// dir (cp -a; the background pass writes snapshots, so a start changes the
// dir), and three moments are timed from spawn:
//   ready     `event=listening`: recovery read and checked every WAL record
//             (CRC, each room's checksum chain) and indexed it; /readyz is
//             200 from here and any room is served (rebuilt on first use)
//   first     a room far from the background pass's start (the last one
//             created) answered over the admin API (GET /admin/rooms/ROOM):
//             one on-demand rebuild, measured from spawn
//   complete  `event=recovery_complete`: the background pass rebuilt every
//             room (replayed all their records, verified each final state
//             against its logged checksum) and snapshotted them
// The daemon's CPU time and anonymous RSS (RssAnon: its own memory, without
// the page-cache pages of the mapped WAL segments) at `ready` and at
// `complete` are reported.
// The daemon is then stopped with SIGKILL.
//
// Variants (--snapshots, comma-separated snapshot_every values):
//   1000000  no snapshot is ever due: every record is in the WAL tail
//            (what the default snapshot_every 10000 gives a server whose rooms
//            have fewer than 10000 records each, until wal_max_bytes forces a
//            checkpoint)
//   50       snapshots written during generation as the daemon would: a
//            room's rebuild loads its snapshot and replays only the records
//            after it
//
// With --cold the copy's pages are dropped from the page cache
// (posix_fadvise DONTNEED by `wal_gen --drop-cache`, only those files)
// before each start, so recovery reads from the disk.
//
// Usage: node bench/recovery.mjs [--rooms 10000] [--actions 1000000]
//          [--snapshots 1000000,50] [--reps 5] [--dir /tmp] [--cold 0|1]
//          [--max-seconds S [--min-reps 3]] [--json FILE]
//
// --max-seconds bounds the run time: a variant stops after --min-reps starts once
// its starts have taken more than S seconds in total (the number of starts
// made is printed).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const BIN = join(ROOT, 'build/release/movexd');
const GEN = join(ROOT, 'build/release/bench/wal_gen');
const CLK_TCK = 100;

function parseArgs(argv) {
  const o = { rooms: 10000, actions: 1000000, snapshots: '1000000,50', reps: 5, minReps: 3, maxSeconds: 0, dir: tmpdir(), cold: 0, json: '' };
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

function procStat(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  // RssAnon: the daemon's own memory; VmRSS also counts the mapped WAL
  // segments' page-cache pages (file-backed, reclaimable)
  return { cpu_s: (Number(f[11]) + Number(f[12])) / CLK_TCK, rss_mib: Number(/RssAnon:\s+(\d+)/.exec(status)[1]) / 1024 };
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

function httpGet(port, path, token) {
  return new Promise((resolveP, rej) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolveP({ status: res.statusCode, body }));
    });
    req.on('error', rej);
    req.end();
  });
}

const TOKEN = 'bench-admin-token-0123456789abcdef';

// Start the daemon on dataDir; time `ready`, `first` and `complete`.
async function startOnce(conf, dataDir, room) {
  const t0 = nowMs();
  const proc = spawn(BIN, ['-c', conf, '--listen', '127.0.0.1:0', '--data-dir', dataDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.proc = proc;
  let stderr = '';
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  const res = {};
  let onLine = () => {};
  proc.stderr.on('data', (d) => { stderr += d; onLine(); });
  const waitFor = (re, what) => new Promise((resolveP, rej) => {
    const timer = setTimeout(() => rej(new Error(`no ${what} within 600 s:\n${stderr.slice(-3000)}`)), 600000);
    const check = () => { const m = re.exec(stderr); if (m) { clearTimeout(timer); onLine = () => {}; resolveP(m); } };
    onLine = check;
    proc.once('exit', (c) => { clearTimeout(timer); rej(new Error(`daemon exited ${c} before ${what}:\n${stderr.slice(-3000)}`)); });
    check();
  });
  const ready = await waitFor(/event=listening addr=\S+ port=(\d+)/, 'event=listening');
  res.ready_s = (nowMs() - t0) / 1000;
  Object.assign(res, { ready_cpu_s: procStat(proc.pid).cpu_s, ready_rss_mib: procStat(proc.pid).rss_mib });
  const m = /event=recovered rooms_to_rebuild=(\d+) records_indexed=(\d+)/.exec(stderr);
  res.rooms_to_rebuild = m ? Number(m[1]) : NaN;
  res.records_indexed = m ? Number(m[2]) : NaN;
  const r = await httpGet(Number(ready[1]), `/admin/rooms/${encodeURIComponent(room)}`, TOKEN);
  if (r.status !== 200) throw new Error(`GET room ${room}: ${r.status} ${r.body}`);
  res.first_s = (nowMs() - t0) / 1000;
  const c = await waitFor(/event=recovery_complete rooms_rebuilt=(\d+) records_replayed=(\d+) records_in_snapshots=(\d+) rooms_unrecoverable=(\d+)/, 'event=recovery_complete');
  res.complete_s = (nowMs() - t0) / 1000;
  const st = procStat(proc.pid);
  Object.assign(res, { complete_cpu_s: st.cpu_s, complete_rss_mib: st.rss_mib,
    rebuilt: Number(c[1]), replayed: Number(c[2]), in_snapshots: Number(c[3]), unrecoverable: Number(c[4]) });
  if (res.unrecoverable) throw new Error(`unrecoverable rooms:\n${stderr.slice(-3000)}`);
  proc.kill('SIGKILL');
  await exited;
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
      const tokenFile = join(base, 'admin.token');
      writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
      writeFileSync(conf, `log_level info\nsnapshot_every ${every}\nadmin_token_file ${tokenFile}\nroom default {\n    reducer json\n    history 1000\n    create_on_subscribe yes\n}\n`);
      console.log(`  snapshot_every ${every}: generated in ${genS.toFixed(1)} s (${line})`);
      console.log(`    data dir: wal ${mib(wal.bytes)} MiB in ${wal.files} segments (allocated ${mib(wal.allocated)} MiB), ` +
        `snapshots ${mib(snaps.bytes)} MiB in ${snaps.files} files (allocated ${mib(snaps.allocated)} MiB)`);
      const runs = [];
      let spent = 0;
      const copy = join(base, 'run');
      for (let r = 0; r < o.reps; r++) {
        if (o.maxSeconds && r >= o.minReps && spent > o.maxSeconds) {
          console.log(`    (stopping after ${r} starts: they took ${spent.toFixed(0)} s, over the ${o.maxSeconds} s budget)`);
          break;
        }
        rmSync(copy, { recursive: true, force: true });
        run('cp', ['-a', gen, copy]);
        run('sync', []);
        if (o.cold) run(GEN, ['--drop-cache', copy]);
        const res = await startOnce(conf, copy, `doc:r${o.rooms - 1}`);
        spent += res.complete_s;
        runs.push(res);
        console.log(`    start ${r + 1}: ready ${res.ready_s.toFixed(2)} s (cpu ${res.ready_cpu_s.toFixed(2)} s, rss ${res.ready_rss_mib.toFixed(0)} MiB; ` +
          `${res.records_indexed} records indexed for ${res.rooms_to_rebuild} rooms), first room served ${res.first_s.toFixed(2)} s, ` +
          `all rebuilt ${res.complete_s.toFixed(2)} s (cpu ${res.complete_cpu_s.toFixed(2)} s, rss ${res.complete_rss_mib.toFixed(0)} MiB; ` +
          `replayed=${res.replayed} in_snapshots=${res.in_snapshots})`);
      }
      rmSync(copy, { recursive: true, force: true });
      rmSync(gen, { recursive: true, force: true });
      const med = (k) => median(runs.map((x) => x[k]));
      results[every] = {
        generate_s: genS, gen_output: line, wal, snapshots: snaps,
        ready_s: med('ready_s'), ready_min: Math.min(...runs.map((x) => x.ready_s)), ready_max: Math.max(...runs.map((x) => x.ready_s)),
        first_s: med('first_s'), complete_s: med('complete_s'),
        ready_cpu_s: med('ready_cpu_s'), ready_rss_mib: med('ready_rss_mib'),
        complete_cpu_s: med('complete_cpu_s'), complete_rss_mib: med('complete_rss_mib'),
        runs,
      };
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
  console.log('summary (medians; ready [min..max]; target: ready < 3 s):');
  for (const every of o.snapshots) {
    const s = results[every];
    console.log(`  snapshot_every ${String(every).padEnd(8)} ready ${s.ready_s.toFixed(2)} s [${s.ready_min.toFixed(2)}..${s.ready_max.toFixed(2)}] ` +
      `(cpu ${s.ready_cpu_s.toFixed(2)} s, rss ${s.ready_rss_mib.toFixed(0)} MiB)  first room ${s.first_s.toFixed(2)} s  ` +
      `all rebuilt ${s.complete_s.toFixed(2)} s (cpu ${s.complete_cpu_s.toFixed(2)} s, rss ${s.complete_rss_mib.toFixed(0)} MiB)  ` +
      `(${s.runs.length} starts; replayed ${s.runs[0].replayed} records, ${s.runs[0].in_snapshots} covered by snapshots; ` +
      `data dir ${mib(s.wal.bytes + s.snapshots.bytes)} MiB)`);
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, results }, null, 2));
}

main().catch((e) => { console.error(e.stack || e); process.exit(1); });
