#!/usr/bin/env node
// targets.mjs - the connection-scale and latency targets of issue #12 on
// movexd alone, each driven by bench/loadgen against a fresh release daemon
// (the conf of bench/compare.mjs: the bench's own rate and connection
// limits, history 10000), repeated, medians and min..max:
//
//   idle     N idle connections (upgrade + hello + subscribe, spread over 100
//            rooms; several 127.0.0.x source addresses): the daemon's RSS
//            growth per connection once all are subscribed (target <= 4 KiB
//            at 100k), and the time to connect them. File descriptor limits
//            are raised for the daemon (`ulimit -n` in its shell; we are
//            root) and by loadgen for itself.
//   storm    S subscribers over 10 rooms and 1 writer at 1000 actions/s; all
//            subscribers drop their TCP connections at once and reconnect
//            with `since`: time until every one has seen the head seq of the
//            moment of the drop (target < 5 s), and no gap or repeated seq on
//            any connection (nothing lost or duplicated).
//   p99      W1 shape (1 writer, 10 subscribers) paced at a steady 10,000
//            actions/s: send -> ack p99 (target < 2 ms), fsync always and no;
//            then at the lower --rates (2,000 by default), where a loaded
//            machine keeps up, for the latency itself.
//   fsync    W4 (64 writers over 8 rooms, 16 in flight each) under fsync
//            `always` and `no`, interleaved: ratio of the medians (target
//            >= 0.8).
//
// Usage: node bench/targets.mjs [--reps 3] [--fsync-reps 5] [--only idle,storm,p99,fsync]
//   [--idle 10000,100000] [--storm 10000] [--rates 10000,2000] [--duration 5]
//   [--dir /tmp] [--json FILE] [--bins A,B]
// --bins: daemon binaries to compare in the p99 cells (default
// build/release/movexd), interleaved within each repetition.
import { writeFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { startMovexd, runDriver, median, range, fmt } from './compare.mjs';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const LOADGEN = join(ROOT, 'build/release/bench/loadgen');
const MOVEXD = join(ROOT, 'build/release/movexd');

function parseArgs(argv) {
  const o = { reps: 3, 'fsync-reps': 5, only: 'idle,storm,p99,fsync', idle: '10000,100000', storm: 10000, rates: '10000,2000', duration: 5, dir: tmpdir(), json: '', bins: '' };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o)) { console.error(`unknown option ${argv[i]}`); process.exit(2); }
    const v = argv[++i];
    o[k] = typeof o[k] === 'number' ? Number(v) : v;
  }
  o.only = o.only.split(',');
  o.idle = o.idle.split(',').map(Number);
  o.rates = o.rates.split(',').map(Number);
  o.bins = o.bins ? o.bins.split(',').map((b) => resolve(b)) : [MOVEXD];
  return o;
}

const span = (a) => { const [lo, hi] = range(a); return Number.isFinite(lo) ? `${fmt(lo)}..${fmt(hi)}` : '-'; };

// The daemon and loadgen each need one descriptor per connection (plus a
// margin). Root can raise the hard limit only with CAP_SYS_RESOURCE; where
// it cannot, the count is capped to what the hard limit allows.
const hardNofile = () => Number(spawnSync('/bin/sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || 1024;
function fdCap(n) {
  if (spawnSync('/bin/sh', ['-c', `ulimit -n ${n + 1000}`]).status === 0) return n;
  return Math.max(100, hardNofile() - 1000);
}

// One fresh daemon (fd limit raised through a shell that execs it, so the
// PID is the daemon's), one loadgen run against it.
async function cell(o, fsync, args, nofile = 0, daemon = MOVEXD) {
  const bin = nofile ? '/bin/sh' : daemon;
  const pre = nofile ? ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, daemon] : [];
  const d = await startMovexd({ fsync, dir: o.dir, bin, prefixArgs: pre });
  const r = await runDriver(LOADGEN, ['--quiet', '--port', String(d.port), '--server-pid', String(d.pid), ...args], 900000);
  r.load = loadavg()[0];
  const st = await d.stop();
  if (st.code !== 0) r.server_exit = `${st.code}/${st.signal}`;
  return r;
}

function line(name, r) {
  if (r.error) return `${name}: ERROR ${r.error}`;
  return `${name}: ${JSON.stringify(r)}`;
}

async function main() {
  const o = parseArgs(process.argv);
  for (const f of [LOADGEN, MOVEXD, ...o.bins]) if (!existsSync(f)) { console.error(`${f} missing: make VARIANT=release all bench-bin`); process.exit(2); }
  const out = {};
  const report = [];

  if (o.only.includes('idle')) {
    for (const asked of o.idle) {
      const n = fdCap(asked);
      if (n !== asked) report.push(`idle ${fmt(asked)} connections: NOT RUN - the hard file descriptor limit here is ${fmt(hardNofile())} and cannot be raised (no CAP_SYS_RESOURCE); measured ${fmt(n)} instead`);
      const rs = [];
      for (let i = 0; i < o.reps; i++) {
        const r = await cell(o, 'no', ['--writers', '0', '--subscribers', String(n), '--rooms', '100', '--warmup', '1', '--duration', '1', '--ready-timeout', '600'], n + 1000);
        console.log(line(`idle ${n} #${i + 1}`, r));
        rs.push(r);
      }
      out[`idle_${n}`] = rs;
      // a run that did not get every connection up measures nothing
      const good = rs.filter((r) => r.final_ok);
      const per = good.map((r) => r.server_bytes_per_conn);
      const anon = good.map((r) => ((r.server_anon_kb_ready - r.server_anon_kb_before) * 1024) / n);
      report.push(`idle ${fmt(n)} connections: daemon RSS growth ${fmt(median(per))} B per connection [${span(per)}] (RssAnon ${fmt(median(anon))} B); connected+subscribed in ${fmt(median(good.map((r) => r.connect_s)), 1)} s; RSS at ${fmt(median(good.map((r) => r.server_rss_kb_ready / 1024)), 0)} MiB; ${good.length} of ${rs.length} runs got every connection up${good.length < rs.length ? ` (${rs.filter((r) => !r.final_ok).map((r) => r.problem || r.error).join('; ')})` : ''} (target <= 4096 B at 100k)`);
    }
  }
  if (o.only.includes('storm')) {
    o.storm = fdCap(o.storm);
    const rs = [];
    for (let i = 0; i < o.reps; i++) {
      const r = await cell(o, 'no', ['--writers', '1', '--rate', '1000', '--subscribers', String(o.storm), '--rooms', '10', '--warmup', '1', '--duration', '4', '--storm-at', '1', '--ready-timeout', '300'], o.storm + 1000);
      console.log(line(`storm #${i + 1}`, r));
      rs.push(r);
    }
    out.storm = rs;
    const ms = rs.map((r) => r.storm_catchup_ms);
    // on a shared machine the wall time follows the load; the daemon's CPU
    // time over the window (drop to caught up, plus the writer's load) does not
    const cpu = rs.map((r) => r.server_cpu_cores * r.window_s);
    report.push(`reconnect storm of ${fmt(o.storm)} subscribers: all caught up in ${fmt(median(ms))} ms [${span(ms)}] (daemon CPU over the window ${fmt(median(cpu), 2)} s); replies actions/snapshot ${rs.map((r) => `${r.storm_actions_replies}/${r.storm_snapshots}`).join(', ')}; gaps ${rs.map((r) => r.gaps).join(',')}, repeats ${rs.map((r) => r.dups).join(',')}, lost updates ${rs.map((r) => r.lost_updates).join(',')}; all correct: ${rs.every((r) => r.final_ok)} (target < 5000 ms, 0 lost, 0 duplicated)`);
  }
  // the target's rate first; lower ones show the latency where the daemon keeps up
  for (const rate of o.only.includes('p99') ? o.rates : []) {
    for (const fsync of ['always', 'no']) {
      const by = o.bins.map(() => []);
      for (let i = 0; i < o.reps; i++) {
        for (let b = 0; b < o.bins.length; b++) {
          const r = await cell(o, fsync, ['--writers', '1', '--window', '64', '--subscribers', '10', '--rate', String(rate), '--warmup', '1', '--duration', String(o.duration)], 0, o.bins[b]);
          console.log(line(`p99 ${rate}/s fsync ${fsync} ${o.bins.length > 1 ? `${o.bins[b]} ` : ''}#${i + 1}`, r));
          by[b].push(r);
        }
      }
      for (let b = 0; b < o.bins.length; b++) {
        const rs = by[b];
        out[`p99_${rate}_${fsync}${b ? `_${b}` : ''}`] = rs;
        const ms = (k) => rs.map((r) => r[k] / 1000);
        const p99 = ms('ack_p99_us');
        report.push(`W1 at a steady ${fmt(rate)} actions/s, fsync ${fsync}${o.bins.length > 1 ? ` (${o.bins[b]})` : ''}: achieved ${fmt(median(rs.map((r) => r.acked_per_s)))}/s, ack p50 ${fmt(median(ms('ack_p50_us')), 2)} ms, p99 ${fmt(median(p99), 2)} ms [${span(p99.map((x) => x * 1000))} µs], p999 ${fmt(median(ms('ack_p999_us')), 2)} ms [${span(rs.map((r) => r.ack_p999_us))} µs], max ${fmt(median(ms('ack_max_us')), 2)} ms [${span(rs.map((r) => r.ack_max_us))} µs]; fwd p99 ${fmt(median(ms('fwd_p99_us')), 2)} ms; server ${fmt(median(rs.map((r) => r.server_cpu_us_per_ack)), 1)} µs CPU/ack; load ${rs.map((r) => fmt(r.load, 1)).join('/')}; all correct: ${rs.every((r) => r.final_ok)} (target p99 < 2 ms)`);
      }
    }
  }
  if (o.only.includes('fsync')) {
    const by = { always: [], no: [] };
    for (let i = 0; i < o['fsync-reps']; i++) {
      for (const fsync of i % 2 ? ['no', 'always'] : ['always', 'no']) {
        const r = await cell(o, fsync, ['--writers', '64', '--rooms', '8', '--window', '16', '--subscribers', '0', '--warmup', '1', '--duration', String(o.duration)]);
        console.log(line(`W4 fsync ${fsync} #${i + 1}`, r));
        by[fsync].push(r);
      }
    }
    out.fsync = by;
    const a = median(by.always.map((r) => r.acked_per_s));
    const n = median(by.no.map((r) => r.acked_per_s));
    report.push(`W4 fsync always ${fmt(a)} acked/s [${span(by.always.map((r) => r.acked_per_s))}] (${fmt(median(by.always.map((r) => r.server_cpu_us_per_ack)), 1)} µs/ack), no ${fmt(n)} [${span(by.no.map((r) => r.acked_per_s))}] (${fmt(median(by.no.map((r) => r.server_cpu_us_per_ack)), 1)} µs/ack): always/no = ${fmt(a / n, 2)}; all correct: ${[...by.always, ...by.no].every((r) => r.final_ok)} (target >= 0.80)`);
  }
  console.log('\nsummary (medians of %d):\n%s', o.reps, report.join('\n'));
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, results: out, summary: report }, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
