#!/usr/bin/env node
// compare.mjs - movexd, the ceiling relay and the peer servers side by side
// on the same counter workloads (every action is `inc /count` by 1):
//
//   W1  1 writer, 64 actions in flight, 10 subscribers, 1 room
//   W2  1 writer, 64 in flight, 100 subscribers
//   W3  1 writer, 64 in flight, 1000 subscribers
//   W4  64 writers over 8 rooms, 16 in flight each, no other subscribers
//
// Each cell (server x workload) starts a fresh server, drives it for
// --warmup + --duration seconds, stops it (SIGTERM, by PID) and records the
// driver's JSON result line: acked/s, deliveries/s, latencies, the server's
// CPU per ack (from /proc/PID/stat), the generator's CPU, and the
// correctness check (final counter read back == acked increments: lost
// updates are reported for every server). Cells are interleaved (rep 1: W1
// on every server, W2 on every server, ...; rep 2 the same in rotated server
// order) so that drift in the machine's load hits every server alike;
// medians and min..max per cell are printed at the end.
//
// movexd and the ceiling are driven by bench/loadgen (C); the peers by
// bench/peers/driver.mjs (Node, the same workload through each peer's own
// client protocol; see bench/peers/README.md), which prints the same JSON
// fields. The peers' npm packages are installed by scripts/run-bench.sh.
//
// Usage: node bench/compare.mjs [--reps 3] [--duration 5] [--warmup 1]
//   [--servers movexd,ceiling,ceiling-per-frame,movex-server,sharedb,colyseus,y-websocket]
//   [--workloads W1,W2,W3,W4] [--fsync no] [--dir /tmp] [--json FILE]
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const LOADGEN = join(ROOT, 'build/release/bench/loadgen');
const CEILING = join(ROOT, 'build/release/bench/ceiling');
const MOVEXD = join(ROOT, 'build/release/movexd');
const PEERS = join(ROOT, 'bench/peers');

export const WORKLOADS = {
  W1: { writers: 1, window: 64, subscribers: 10, rooms: 1 },
  W2: { writers: 1, window: 64, subscribers: 100, rooms: 1 },
  W3: { writers: 1, window: 64, subscribers: 1000, rooms: 1 },
  W4: { writers: 64, window: 16, subscribers: 0, rooms: 8 },
};

// The movexd conf of every benchmark: the bench's own limits (a bench
// writer sends far more than the default per-connection message rate, and
// all connections come from a few loopback addresses).
export function movexdConf(fsync, extra = '') {
  return `log_level warn
fsync ${fsync}
max_connections 1000000
max_connections_per_ip 1000000
rate_messages_per_sec 1000000
rate_burst 10000000
idle_timeout_ms 0
hello_timeout_ms 600s
max_queue_bytes 64m
${extra}
room default {
    reducer json
    history 10000
    create_on_subscribe yes
}
`;
}

// Spawns a server that prints its port on stderr (matched by re); resolves
// {proc, pid, port, stop()}.
export function startServer(cmd, args, re, { env, cleanup } = {}) {
  return new Promise((res, rej) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let err = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); rej(new Error(`${cmd} did not start:\n${err}`)); }, 30000);
    const exited = new Promise((r) => proc.on('close', (code, signal) => r({ code, signal })));
    const onData = (d) => {
      err += d;
      if (err.length > 100000) err = err.slice(-50000);
      const m = re.exec(err);
      if (m && timer) {
        clearTimeout(timer);
        res({
          proc, pid: proc.pid, port: Number(m[1]), get log() { return err; },
          async stop() {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
            const t = setTimeout(() => proc.kill('SIGKILL'), 20000);
            const r = await exited;
            clearTimeout(t);
            if (cleanup) cleanup();
            return r;
          },
        });
      }
    };
    proc.stderr.on('data', onData);
    proc.stdout.on('data', onData);
    proc.on('error', (e) => { clearTimeout(timer); rej(e); });
    exited.then((r) => { clearTimeout(timer); rej(new Error(`${cmd} exited ${r.code}/${r.signal} before listening:\n${err}`)); });
  });
}

// `bin` + `prefixArgs` put something in front of the daemon (targets.mjs:
// a shell that raises the fd limit, then execs it, so the PID stays its).
export async function startMovexd({ fsync = 'no', dir = tmpdir(), extra = '', bin = MOVEXD, prefixArgs = [] } = {}) {
  const d = mkdtempSync(join(dir, 'movexd-bench-'));
  writeFileSync(join(d, 'movexd.conf'), movexdConf(fsync, extra));
  return startServer(bin, [...prefixArgs, '-c', join(d, 'movexd.conf'), '--listen', '127.0.0.1:0', '--data-dir', join(d, 'data'), '--log-level', 'info'],
    /event=listening .*port=(\d+)/, { cleanup: () => rmSync(d, { recursive: true, force: true }) });
}

// Runs a driver; resolves its JSON result (with `exit`), or {error}.
export function runDriver(cmd, args, ms) {
  return new Promise((res) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; if (err.length > 20000) err = err.slice(-10000); });
    const t = setTimeout(() => p.kill('SIGKILL'), ms);
    p.on('close', (code) => {
      clearTimeout(t);
      try {
        const r = JSON.parse(out.trim().split('\n').pop());
        r.exit = code;
        res(r);
      } catch {
        res({ error: `driver exit ${code}: ${err.slice(-500)}`, exit: code });
      }
    });
  });
}

const SERVERS = {
  movexd: { start: (o) => startMovexd({ fsync: o.fsync, dir: o.dir }), driver: 'loadgen' },
  ceiling: { start: () => startServer(CEILING, ['--listen', '127.0.0.1:0'], /ceiling port=(\d+)/), driver: 'loadgen' },
  'ceiling-per-frame': { start: () => startServer(CEILING, ['--listen', '127.0.0.1:0', '--per-frame'], /ceiling port=(\d+)/), driver: 'loadgen' },
  'movex-server': { peer: 'movex-server' },
  sharedb: { peer: 'sharedb' },
  colyseus: { peer: 'colyseus' },
  'y-websocket': { peer: 'y-websocket' },
};

function wlArgs(w) {
  return ['--writers', String(w.writers), '--window', String(w.window), '--subscribers', String(w.subscribers), '--rooms', String(w.rooms)];
}

async function runCell(name, wl, o) {
  const s = SERVERS[name];
  let srv;
  try {
    srv = s.peer
      ? await startServer(process.execPath, [join(PEERS, 'servers.mjs'), s.peer], /peer port=(\d+)/)
      : await s.start(o);
  } catch (e) {
    return { error: `start: ${e.message.slice(0, 300)}` };
  }
  const args = ['--port', String(srv.port), '--server-pid', String(srv.pid), '--duration', String(o.duration),
    '--warmup', String(o.warmup), ...wlArgs(WORKLOADS[wl])];
  const limit = (o.warmup + o.duration + 120) * 1000;
  const r = s.peer
    ? await runDriver(process.execPath, [join(PEERS, 'driver.mjs'), s.peer, ...args], limit)
    : await runDriver(LOADGEN, ['--quiet', ...args], limit);
  const st = await srv.stop();
  if (!s.peer && st.code !== 0 && !r.error) r.server_exit = `${st.code}/${st.signal}`;
  return r;
}

export const median = (a) => { const s = a.filter((x) => Number.isFinite(x)).sort((x, y) => x - y); const n = s.length; return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : NaN; };
export const range = (a) => { const s = a.filter((x) => Number.isFinite(x)); return s.length ? [Math.min(...s), Math.max(...s)] : [NaN, NaN]; };
export const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '-');

export function summarize(cells, servers, workloads) {
  const lines = [];
  const sum = {};
  for (const wl of workloads) {
    lines.push(`\n${wl} (${JSON.stringify(WORKLOADS[wl])})`);
    lines.push('| server | acked/s median [min..max] | deliveries/s | server µs/ack | server cores | gen cores | ack p50/p99 ms | fwd p99 ms | lost updates | correct runs |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|');
    sum[wl] = {};
    for (const s of servers) {
      const rs = cells.filter((c) => c.wl === wl && c.server === s).map((c) => c.r);
      const ok = rs.filter((r) => !r.error);
      const a = ok.map((r) => r.acked_per_s);
      const [lo, hi] = range(a);
      const m = {
        acked: median(a), lo, hi,
        deliv: median(ok.map((r) => r.deliveries_per_s)),
        us: median(ok.map((r) => r.server_cpu_us_per_ack)),
        cores: median(ok.map((r) => r.server_cpu_cores)),
        gen: median(ok.map((r) => r.gen_cpu_cores)),
        p50: median(ok.map((r) => r.ack_p50_us)) / 1000,
        p99: median(ok.map((r) => r.ack_p99_us)) / 1000,
        fp99: median(ok.map((r) => r.fwd_p99_us)) / 1000,
        lost: ok.reduce((x, r) => x + (r.lost_updates || 0), 0),
        correct: ok.filter((r) => r.final_ok).length, runs: rs.length,
        genBound: ok.filter((r) => r.generator_bound).length,
        errors: rs.filter((r) => r.error).map((r) => r.error),
        problems: ok.filter((r) => r.problem).map((r) => r.problem).slice(0, 2),
      };
      sum[wl][s] = m;
      lines.push(`| ${s} | ${fmt(m.acked)} [${fmt(lo)}..${fmt(hi)}] | ${fmt(m.deliv)} | ${fmt(m.us, 1)} | ${fmt(m.cores, 2)} | ${fmt(m.gen, 2)}${m.genBound ? ` (bound in ${m.genBound})` : ''} | ${fmt(m.p50, 2)} / ${fmt(m.p99, 2)} | ${fmt(m.fp99, 2)} | ${m.lost} | ${m.correct}/${m.runs} |`);
    }
    for (const s of servers) {
      const m = sum[wl][s];
      for (const e of m.errors.slice(0, 2)) lines.push(`  ${s}: ${e}`);
      for (const p of m.problems) lines.push(`  ${s}: ${p}`);
    }
    const mx = sum[wl].movexd;
    if (mx) {
      for (const ref of ['movex-server', 'ceiling']) {
        const r = sum[wl][ref];
        if (r && r.acked > 0) lines.push(`  movexd / ${ref}: acked/s x${fmt(mx.acked / r.acked, 2)}, server CPU per ack x${fmt(mx.us / r.us, 2)}`);
      }
    }
  }
  return { text: lines.join('\n'), sum };
}

function parseArgs(argv) {
  const o = { reps: 3, duration: 5, warmup: 1, servers: 'movexd,ceiling,movex-server,sharedb,colyseus,y-websocket', workloads: 'W1,W2,W3,W4', fsync: 'no', dir: tmpdir(), json: '' };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o)) { console.error(`unknown option ${argv[i]}`); process.exit(2); }
    const v = argv[++i];
    o[k] = typeof o[k] === 'number' ? Number(v) : v;
  }
  o.servers = o.servers.split(',').filter(Boolean);
  o.workloads = o.workloads.split(',').filter(Boolean);
  for (const s of o.servers) if (!SERVERS[s]) { console.error(`unknown server ${s}`); process.exit(2); }
  for (const w of o.workloads) if (!WORKLOADS[w]) { console.error(`unknown workload ${w}`); process.exit(2); }
  return o;
}

async function main() {
  const o = parseArgs(process.argv);
  for (const f of [LOADGEN, CEILING, MOVEXD]) if (!existsSync(f)) { console.error(`${f} missing: make VARIANT=release all bench-bin`); process.exit(2); }
  const cells = [];
  const t0 = Date.now();
  for (let rep = 0; rep < o.reps; rep++) {
    for (const wl of o.workloads) {
      const order = o.servers.map((_, i) => o.servers[(i + rep) % o.servers.length]);
      for (const s of order) {
        const load = (await import('node:os')).loadavg()[0];
        const r = await runCell(s, wl, o);
        cells.push({ rep, wl, server: s, load, r });
        const brief = r.error ? `ERROR ${r.error.slice(0, 200)}`
          : `${fmt(r.acked_per_s)} acked/s, ${fmt(r.deliveries_per_s)} deliveries/s, ${fmt(r.server_cpu_us_per_ack, 1)} µs/ack, ack p99 ${fmt(r.ack_p99_us / 1000, 2)} ms, server ${fmt(r.server_cpu_cores, 2)} / gen ${fmt(r.gen_cpu_cores, 2)} cores, lost ${r.lost_updates}, ${r.final_ok ? 'correct' : `NOT CORRECT${r.problem ? ': ' + r.problem : ''}`}`;
        console.log(`rep ${rep + 1} ${wl} ${s.padEnd(17)} load ${load.toFixed(2)}: ${brief}`);
      }
    }
  }
  const { text, sum } = summarize(cells, o.servers, o.workloads);
  console.log(`\nmedians over ${o.reps} interleaved repetitions (${((Date.now() - t0) / 1000).toFixed(0)} s):`);
  console.log(text);
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, cells, summary: sum }, null, 1));
}

if (import.meta.url === `file://${process.argv[1]}`) main().catch((e) => { console.error(e); process.exit(1); });
