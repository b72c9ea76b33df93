#!/usr/bin/env node
// ack_throughput.mjs - acknowledged actions per second under each fsync policy.
//
// For every policy (fsync no, everysec, always) the release daemon is started
// on a fresh temporary data dir (conf: that policy, `room default` with
// create_on_subscribe yes and history 1000), W writers connect over real
// WebSockets on 127.0.0.1 (each with its own client id), writer i subscribes
// to room `bench:r<i mod ROOMS>` and keeps WINDOW pipelined `inc` actions in
// flight: a new action is sent as soon as an ack comes back. After a warm-up
// the acks received during a fixed window are counted, together with the
// latency of each (send -> ack). Policies are interleaved
// (no, everysec, always, no, everysec, always, ...) so drift in the machine's
// load hits them alike; medians are reported.
//
// The load generator runs on the same machine as the daemon. It can be split
// over several worker threads (--gens) so that one Node event loop is not the
// bottleneck; the daemon's and the generator's CPU use over the measurement
// window are reported (from /proc) to tell who is saturated, with the daemon's
// CPU time per ack (steadier than acks/s on a shared machine).
//
// --syscalls 1 also counts the daemon's system calls during the window with
// `perf stat` (syscalls:sys_enter_* tracepoints; needs perf and permission):
// acks per WAL write and per fdatasync show the group commit, send()/poll()
// per ack the cost of the send path. Counting adds a little overhead, so the
// throughput runs leave it off.
//
// Any reject, error or unexpected close (e.g. `rate_limited` if a run ever
// exceeds the daemon's per-connection message rate) is printed with the run.
//
// Usage: node bench/ack_throughput.mjs [--reps 5] [--duration 5] [--warmup 1]
//          [--writers 64] [--rooms 8] [--window 16] [--gens 1] [--syscalls 0|1]
//          [--policies no,everysec,always] [--dir /tmp] [--json FILE]
//          [--bin build/release/movexd]
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync, openSync, closeSync, writeSync, fdatasyncSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const WS_PATH = join(ROOT, 'test/node_modules/ws/index.js');

// ---------------------------------------------------------------- worker --
// One generator thread: drives writers [from, to).
async function workerMain() {
  const { default: WebSocket } = await import(WS_PATH);
  const { port, from, to, rooms, window: W } = workerData;
  const url = `ws://127.0.0.1:${port}/ws`;
  const now = () => Number(process.hrtime.bigint()) / 1e6; // ms, process-wide monotonic
  let measureFrom = Infinity, measureTo = Infinity, stopAt = Infinity;
  let acks = 0, acksTotal = 0, rejects = 0, errors = 0, closes = 0;
  const lat = [];
  const writers = [];
  let firstError = null;

  function open(i) {
    return new Promise((res, rej) => {
      const room = `bench:r${i % rooms}`;
      const ws = new WebSocket(url, ['movex.v1'], { perMessageDeflate: false });
      const w = { ws, room, n: 0, sent: new Map(), ready: false };
      ws.on('error', (e) => { if (!w.ready) rej(e); });
      ws.on('close', (code) => {
        if (!w.done) { closes++; firstError ??= `writer ${i} closed with ${code}`; }
      });
      ws.on('open', () => {
        ws.send(JSON.stringify({ type: 'hello', client: `bench-w${i}` }));
        ws.send(JSON.stringify({ type: 'subscribe', id: 0, room }));
      });
      ws.on('message', (data) => {
        // fwds (the other writers' actions in the room) dominate the traffic:
        // recognise them by their prefix without parsing.
        if (data[9] === 0x66 /* f */ && data.toString('latin1', 0, 13) === '{"type":"fwd"') return;
        const m = JSON.parse(data);
        if (m.type === 'ack') {
          const t = now();
          const t0 = w.sent.get(m.n);
          w.sent.delete(m.n);
          acksTotal++;
          if (t >= measureFrom && t < measureTo) { acks++; lat.push(t - t0); }
          if (t < stopAt) send(w);
        } else if (m.type === 'reject') {
          rejects++; firstError ??= JSON.stringify(m);
          w.sent.delete(m.n);
          if (now() < stopAt) send(w);
        } else if (m.type === 'snapshot' && !w.ready) {
          w.n = m.next_n - 1;
          w.ready = true;
          res(w);
        } else if (m.type === 'error') {
          errors++; firstError ??= JSON.stringify(m);
          if (!w.ready) rej(new Error(JSON.stringify(m)));
        }
      });
    });
  }

  function send(w) {
    const n = ++w.n;
    w.sent.set(n, now());
    w.ws.send(`{"type":"action","id":${n},"room":"${w.room}","n":${n},"action":{"type":"patch","payload":[{"op":"inc","path":"/count","value":1}]}}`);
  }

  for (let i = from; i < to; i++) writers.push(await open(i));
  parentPort.postMessage({ type: 'ready' });
  parentPort.on('message', async (msg) => {
    if (msg.type === 'go') {
      measureFrom = msg.measureFrom; measureTo = msg.measureTo; stopAt = msg.measureTo;
      for (const w of writers) for (let k = 0; k < W; k++) send(w);
    } else if (msg.type === 'report') {
      const cpu = process.cpuUsage();
      parentPort.postMessage({ type: 'report', acks, acksTotal, rejects, errors, closes, firstError,
        lat: Float64Array.from(lat), cpu });
      for (const w of writers) { w.done = true; w.ws.close(); }
      setTimeout(() => process.exit(0), 200).unref();
    }
  });
}

// ------------------------------------------------------------------ main --
function parseArgs(argv) {
  const o = { reps: 5, duration: 5, warmup: 1, writers: 64, rooms: 8, window: 16, gens: 1,
    policies: 'no,everysec,always', dir: tmpdir(), json: '', bin: join(ROOT, 'build/release/movexd'), syscalls: 0 };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o)) { console.error(`unknown option ${argv[i]}`); process.exit(1); }
    const v = argv[++i];
    o[k] = typeof o[k] === 'number' ? Number(v) : v;
  }
  o.policies = o.policies.split(',');
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const median = (a) => { const s = [...a].sort((x, y) => x - y); const n = s.length; return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : NaN; };
const pct = (sorted, p) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN;
const CLK_TCK = 100; // Linux USER_HZ

function procCpuTicks(pid) {
  // fields after the ")" : state(3) ... utime(14) stime(15)
  const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}
function procCtxt(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'latin1');
  return { vol: Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)[1]), invol: Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)[1]) };
}
function machineTicks() {
  const f = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  return { total: f.reduce((a, b) => a + b, 0), idle };
}

// Interrupted (Ctrl-C, SIGTERM): stop the daemon, remove its directory.
const live = { proc: null, dir: null };
if (isMainThread) {
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      if (live.proc && live.proc.exitCode === null) live.proc.kill('SIGKILL');
      if (live.dir) rmSync(live.dir, { recursive: true, force: true });
      process.exit(130);
    });
  }
}

async function startDaemon(bin, baseDir, policy) {
  const dir = mkdtempSync(join(baseDir, 'movexd-bench-'));
  const conf = join(dir, 'movexd.conf');
  writeFileSync(conf, `log_level warn\nfsync ${policy}\nroom default {\n    reducer json\n    history 1000\n    create_on_subscribe yes\n}\n`);
  const proc = spawn(bin, ['-c', conf, '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.proc = proc; live.dir = dir;
  let stderr = '';
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  const port = await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`daemon did not start:\n${stderr}`)), 10000);
    proc.stderr.on('data', (d) => {
      stderr += d;
      if (stderr.length > 1 << 20) stderr = stderr.slice(-65536);
      const m = /event=listening .*port=(\d+)/.exec(stderr);
      if (m) { clearTimeout(t); res(Number(m[1])); }
    });
    proc.on('exit', (c) => { clearTimeout(t); rej(new Error(`daemon exited ${c}:\n${stderr}`)); });
  }).catch((e) => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw e;
  });
  return {
    proc, port, dir,
    get stderr() { return stderr; },
    async stop() {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
      const r = await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
      if (r.code !== 0) throw new Error(`daemon exited ${r.code}/${r.sig}:\n${stderr.slice(-2000)}`);
    },
  };
}

async function runOne(o, policy) {
  const d = await startDaemon(o.bin, o.dir, policy);
  const workers = [];
  try {
    const per = Math.ceil(o.writers / o.gens);
    const ready = [];
    for (let g = 0; g < o.gens; g++) {
      const from = g * per, to = Math.min(o.writers, from + per);
      if (from >= to) break;
      const w = new Worker(new URL(import.meta.url), { workerData: { port: d.port, from, to, rooms: o.rooms, window: o.window } });
      w.on('error', (e) => { console.error(`generator thread failed: ${e.stack}`); process.exit(1); });
      workers.push(w);
      ready.push(new Promise((r) => w.once('message', r)));
    }
    await Promise.all(ready);
    const t0 = nowMs();
    const measureFrom = t0 + o.warmup * 1000, measureTo = measureFrom + o.duration * 1000;
    for (const w of workers) w.postMessage({ type: 'go', measureFrom, measureTo });
    await sleep(measureFrom - nowMs());
    const c0 = procCpuTicks(d.proc.pid), m0 = machineTicks(), x0 = procCtxt(d.proc.pid), u0 = process.cpuUsage();
    const tA = nowMs();
    const sys = o.syscalls ? countSyscalls(d.proc.pid, (measureTo - tA) / 1000) : null;
    await sleep(measureTo - nowMs());
    const c1 = procCpuTicks(d.proc.pid), m1 = machineTicks(), x1 = procCtxt(d.proc.pid), u1 = process.cpuUsage(u0);
    const dt = (nowMs() - tA) / 1000;
    const reports = await Promise.all(workers.map((w) => new Promise((r) => {
      w.on('message', (m) => { if (m.type === 'report') r(m); });
      w.postMessage({ type: 'report' });
    })));
    let acks = 0, rejects = 0, errors = 0, closes = 0, firstError = null, lat = [];
    for (const r of reports) {
      acks += r.acks; rejects += r.rejects; errors += r.errors; closes += r.closes;
      firstError ??= r.firstError;
      for (const x of r.lat) lat.push(x);
    }
    lat.sort((a, b) => a - b);
    const sc = sys ? await sys : null;
    const res = {
      policy,
      acks_per_s: acks / o.duration,
      p50_ms: pct(lat, 0.5), p99_ms: pct(lat, 0.99),
      daemon_cpu: (c1 - c0) / CLK_TCK / dt,                   // 1.0 = one core busy
      daemon_us_per_ack: acks ? ((c1 - c0) / CLK_TCK) / (acks * dt / o.duration) * 1e6 : NaN, // CPU cost of one ack (and its fwds)
      gen_cpu: (u1.user + u1.system) / 1e6 / dt,               // all generator threads + main
      machine_busy: 1 - (m1.idle - m0.idle) / (m1.total - m0.total), // of all cores
      ncpu: cpus().length,
      daemon_vol_ctxt_per_s: (x1.vol - x0.vol) / dt,
      rejects, errors, closes, firstError,
    };
    if (sc) {
      // per second of the window, and per ack: how many actions one fdatasync
      // covers (group commit), how many send()/poll() one ack costs
      const acked = acks;
      res.syscalls = sc;
      res.acks_per_fdatasync = sc.fdatasync ? acked / sc.fdatasync : null;
      res.acks_per_flush = sc.pwrite64 ? acked / sc.pwrite64 : null;
      res.sendto_per_ack = sc.sendto / acked;
      res.poll_per_ack = sc.poll / acked;
      res.recvfrom_per_ack = sc.recvfrom / acked;
    }
    return res;
  } finally {
    for (const w of workers) w.terminate();
    await d.stop();
  }
}

// Count the daemon's system calls for `secs` seconds with `perf stat`
// (tracepoints; needs perf and permission). Resolves to {name: count} or null.
const SYSCALLS = ['fdatasync', 'pwrite64', 'sendto', 'poll', 'recvfrom'];
function countSyscalls(pid, secs) {
  return new Promise((res) => {
    const ev = SYSCALLS.map((n) => `syscalls:sys_enter_${n}`).join(',');
    let p;
    try {
      p = spawn('perf', ['stat', '-x', ',', '-e', ev, '-p', String(pid), '--', 'sleep', secs.toFixed(3)], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch { res(null); return; }
    let err = '';
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', () => res(null));
    p.on('exit', (code) => {
      if (code !== 0) { res(null); return; }
      const out = {};
      for (const line of err.split('\n')) {
        const f = line.split(',');
        const m = /sys_enter_(\w+)/.exec(line);
        if (m && /^\d+$/.test(f[0])) out[m[1]] = Number(f[0]);
      }
      res(Object.keys(out).length ? out : null);
    });
  });
}

// What one fdatasync costs on this file system: append 512 bytes to a file
// and fdatasync, N times (roughly what a lightly loaded `fsync always`
// flush does).
function fsyncProbe(baseDir, n = 200) {
  const dir = mkdtempSync(join(baseDir, 'movexd-fsync-'));
  const fd = openSync(join(dir, 'probe'), 'w');
  const buf = Buffer.alloc(512, 0x61);
  const t = [];
  try {
    for (let i = 0; i < n; i++) {
      const a = nowMs();
      writeSync(fd, buf);
      fdatasyncSync(fd);
      t.push(nowMs() - a);
    }
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  t.sort((a, b) => a - b);
  return { p50_ms: pct(t, 0.5), p99_ms: pct(t, 0.99) };
}

async function main() {
  const o = parseArgs(process.argv);
  const f = fsyncProbe(o.dir);
  console.log(`ack_throughput: ${o.writers} writers over ${o.rooms} rooms, window ${o.window} actions in flight per writer, ` +
    `${o.gens} generator thread(s), ${o.warmup} s warm-up + ${o.duration} s measured, ${o.reps} reps interleaved`);
  console.log(`fsync probe (${o.dir}): write 512 B + fdatasync: p50 ${f.p50_ms.toFixed(2)} ms, p99 ${f.p99_ms.toFixed(2)} ms`);
  const runs = [];
  for (let r = 0; r < o.reps; r++) {
    for (const p of o.policies) {
      const res = await runOne(o, p);
      runs.push(res);
      console.log(`  rep ${r + 1} fsync ${p.padEnd(8)} ${res.acks_per_s.toFixed(0).padStart(7)} acks/s  ` +
        `p50 ${res.p50_ms.toFixed(1)} ms  p99 ${res.p99_ms.toFixed(1)} ms  ` +
        `cpu (100% = 1 core): daemon ${(res.daemon_cpu * 100).toFixed(0)}% generator ${(res.gen_cpu * 100).toFixed(0)}% ` +
        `other processes ${(Math.max(0, res.machine_busy * res.ncpu - res.daemon_cpu - res.gen_cpu) * 100).toFixed(0)}% idle ${((1 - res.machine_busy) * res.ncpu * 100).toFixed(0)}%; ` +
        `daemon ${res.daemon_us_per_ack.toFixed(0)} us cpu/ack` +
        (res.syscalls ? `  per ack: ${res.sendto_per_ack.toFixed(1)} send ${res.poll_per_ack.toFixed(1)} poll ${res.recvfrom_per_ack.toFixed(3)} recv; acks per WAL write ${res.acks_per_flush?.toFixed(0)} per fdatasync ${res.acks_per_fdatasync?.toFixed(0) ?? '-'}` : '') +
        (res.rejects || res.errors || res.closes ? `  !! rejects ${res.rejects} errors ${res.errors} closes ${res.closes}: ${res.firstError}` : ''));
    }
  }
  const summary = {};
  console.log('summary (median [min..max] over reps):');
  for (const p of o.policies) {
    const rs = runs.filter((x) => x.policy === p);
    const a = rs.map((x) => x.acks_per_s);
    summary[p] = {
      acks_per_s: median(a), min: Math.min(...a), max: Math.max(...a),
      p50_ms: median(rs.map((x) => x.p50_ms)), p99_ms: median(rs.map((x) => x.p99_ms)),
      daemon_cpu: median(rs.map((x) => x.daemon_cpu)), gen_cpu: median(rs.map((x) => x.gen_cpu)),
      daemon_us_per_ack: median(rs.map((x) => x.daemon_us_per_ack)),
      runs: rs,
    };
    const s = summary[p];
    const sc = rs.filter((x) => x.syscalls);
    if (sc.length) {
      s.acks_per_flush = median(sc.map((x) => x.acks_per_flush ?? NaN));
      s.acks_per_fdatasync = p === 'no' ? null : median(sc.map((x) => x.acks_per_fdatasync ?? NaN));
      s.sendto_per_ack = median(sc.map((x) => x.sendto_per_ack));
      s.poll_per_ack = median(sc.map((x) => x.poll_per_ack));
    }
    console.log(`  fsync ${p.padEnd(8)} ${s.acks_per_s.toFixed(0).padStart(7)} acks/s [${s.min.toFixed(0)}..${s.max.toFixed(0)}]  ` +
      `latency p50 ${s.p50_ms.toFixed(1)} ms p99 ${s.p99_ms.toFixed(1)} ms  daemon cpu ${(s.daemon_cpu * 100).toFixed(0)}% (${s.daemon_us_per_ack.toFixed(0)} us/ack)  generator cpu ${(s.gen_cpu * 100).toFixed(0)}%` +
      (s.sendto_per_ack !== undefined ? `  acks per WAL write ${s.acks_per_flush.toFixed(0)}, per fdatasync ${s.acks_per_fdatasync ? s.acks_per_fdatasync.toFixed(0) : '-'}; send() per ack ${s.sendto_per_ack.toFixed(1)}, poll() per ack ${s.poll_per_ack.toFixed(1)}` : ''));
  }
  if (summary.always && summary.no) {
    // ratio of medians, and the spread of per-rep ratios (always_i / no_i)
    const pr = summary.always.runs.map((x, i) => x.acks_per_s / summary.no.runs[i].acks_per_s);
    summary.ratio_always_no = summary.always.acks_per_s / summary.no.acks_per_s;
    summary.ratio_per_rep = pr;
    console.log(`  ratio always/no: ${summary.ratio_always_no.toFixed(2)} (per rep ${pr.map((x) => x.toFixed(2)).join(' ')}; target >= 0.5)`);
  }
  if (summary.everysec && summary.no)
    console.log(`  ratio everysec/no: ${(summary.everysec.acks_per_s / summary.no.acks_per_s).toFixed(2)}`);
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, fsync_probe: f, summary }, null, 2));
  process.exit(0);
}

if (isMainThread) main().catch((e) => { console.error(e.stack || e); process.exit(1); });
else workerMain().catch((e) => { console.error(e.stack || e); process.exit(1); });
