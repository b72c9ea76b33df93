#!/usr/bin/env node
// driver.mjs - bench/loadgen's workload for a peer server, through the
// peer's own client protocol: node bench/peers/driver.mjs PEER --port P
// [--server-pid PID] [--writers 1] [--window 64] [--subscribers 10]
// [--rooms 1] [--duration 5] [--warmup 1]. Prints one JSON line with the
// same fields as loadgen (acked/s, deliveries/s, send->ack and send->fwd
// latency percentiles, the server's CPU per ack from /proc/PID/stat, this
// process's CPU, lost updates, final_ok).
//
// PEER names a module here (movex-server.mjs, sharedb.mjs, colyseus.mjs,
// y-websocket.mjs) that exports
//   prepare({port, rooms})                     create the rooms if needed
//   connect({port, room, client, index, role, onAck(n), onFwd(w, n)})
//       -> {send(n), close()}                  one connection; send() issues
//                                              action n (`inc /count` by 1)
//   readCount({port, room})                    the room's counter, read back
// A writer's action n is acknowledged through onAck(n) (whatever the peer
// offers as an acknowledgement: see each module's header); a delivery to
// any other connection through onFwd(writer index, n).
//
// Correctness, as in loadgen: after the window, writers stop, the driver
// waits for every outstanding ack (bounded), then reads every room's counter:
// lost_updates = acked increments - final counter (when positive). Writer i
// is client `w<i>` in room i mod rooms; subscriber j is `s<j>` in j mod rooms.
import { loadavg } from 'node:os';
import { readFileSync } from 'node:fs';

const CLK_TCK = 100; // Linux USER_HZ

function parseArgs(argv) {
  const o = { port: 0, 'server-pid': 0, writers: 1, window: 64, subscribers: 10, rooms: 1, duration: 5, warmup: 1, 'drain-timeout': 20 };
  for (let i = 3; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (k === 'quiet') continue;
    if (!(k in o)) throw new Error(`unknown option ${argv[i]}`);
    o[k] = Number(argv[++i]);
  }
  return o;
}

function procTicks(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch { return NaN; }
}

const now = () => Number(process.hrtime.bigint()) / 1e3; // µs
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (a, p) => (a.length ? a[Math.min(a.length - 1, Math.max(0, Math.ceil(p * a.length) - 1))] : -1);

// A peer that stops answering (movex-server stalls after ~200 subscribe
// calls) must end the run with an error, not leave a promise that nothing
// will settle (Node would then exit 0 without a result).
function within(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: no answer in ${ms / 1000} s`)), ms); })])
    .finally(() => clearTimeout(t));
}

async function main() {
  const name = process.argv[2];
  const o = parseArgs(process.argv);
  const loaded = await import(`./${name}.mjs`);
  const peer = {
    prepare: (a) => within(loaded.prepare(a), 60000, 'prepare'),
    connect: (a) => within(loaded.connect(a), 60000, `connect ${a.client}`),
    readCount: (a) => within(loaded.readCount(a), 60000, `read ${a.room}`),
  };
  const rooms = Array.from({ length: o.rooms }, (_, r) => `b${process.pid}r${r}`);
  let measuring = false;
  let stopping = false;
  let acksWin = 0;
  let fwdsWin = 0;
  const latAck = [];
  const latFwd = [];
  const RING = 1 << 16;
  const problems = [];
  const writers = [];
  const ackedByRoom = new Map(rooms.map((r) => [r, 0]));
  let rejects = 0;

  const tStart = now();
  await peer.prepare({ port: o.port, rooms });
  const conns = [];
  for (let i = 0; i < o.writers; i++) {
    const w = { i, room: rooms[i % o.rooms], next: 1, inflight: 0, acked: 0, t: new Float64Array(RING), tn: new Float64Array(RING) };
    writers.push(w);
    const send = () => {
      const n = w.next++;
      w.t[n & (RING - 1)] = now();
      w.tn[n & (RING - 1)] = n;
      w.inflight++;
      w.conn.send(n);
    };
    w.top = () => { while (!stopping && w.inflight < o.window) send(); };
    w.conn = await peer.connect({
      port: o.port, room: w.room, client: `w${i}`, index: i, role: 'writer',
      onAck(n, ok = true) {
        w.inflight--;
        if (!ok) { rejects++; if (problems.length < 3) problems.push(`reject of n ${n}`); } else {
          w.acked++;
          ackedByRoom.set(w.room, ackedByRoom.get(w.room) + 1);
        }
        if (measuring) {
          acksWin++;
          if (w.tn[n & (RING - 1)] === n) latAck.push(now() - w.t[n & (RING - 1)]);
        }
        w.top();
      },
      onFwd: (wi, n) => fwd(wi, n),
    });
    conns.push(w.conn);
  }
  function fwd(wi, n) {
    if (!measuring) return;
    fwdsWin++;
    const w = writers[wi];
    if (w && w.tn[n & (RING - 1)] === n) latFwd.push(now() - w.t[n & (RING - 1)]);
  }
  // subscribers connect a few hundred at a time
  for (let j = 0; j < o.subscribers; j += 200) {
    const batch = [];
    for (let k = j; k < Math.min(o.subscribers, j + 200); k++) {
      batch.push(peer.connect({ port: o.port, room: rooms[k % o.rooms], client: `s${k}`, index: k, role: 'sub', onAck() {}, onFwd: fwd }));
    }
    conns.push(...(await Promise.all(batch)));
  }
  const tReady = now();
  for (const w of writers) w.top();
  await sleep(o.warmup * 1000);
  measuring = true;
  const t0 = now();
  const srv0 = o['server-pid'] ? procTicks(o['server-pid']) : NaN;
  const cpu0 = process.cpuUsage();
  await sleep(o.duration * 1000);
  measuring = false;
  const t1 = now();
  const srv1 = o['server-pid'] ? procTicks(o['server-pid']) : NaN;
  const cpu1 = process.cpuUsage(cpu0);
  stopping = true;
  const drainEnd = Date.now() + o['drain-timeout'] * 1000;
  while (writers.some((w) => w.inflight > 0) && Date.now() < drainEnd) await sleep(20);
  const left = writers.reduce((a, w) => a + w.inflight, 0);
  if (left) problems.push(`${left} actions unanswered after the drain`);
  // let the last deliveries arrive before reading back
  await sleep(300);
  let lost = 0;
  let surplus = 0;
  let counted = true;
  for (const r of rooms) {
    let c;
    try { c = await peer.readCount({ port: o.port, room: r }); } catch (e) { counted = false; problems.push(`read ${r}: ${e.message}`); continue; }
    const a = ackedByRoom.get(r);
    if (c < a) lost += a - c; else if (c > a) surplus += c - a;
  }
  for (const c of conns) try { c.close(); } catch { /* closing anyway */ }
  const win = (t1 - t0) / 1e6;
  latAck.sort((a, b) => a - b);
  latFwd.sort((a, b) => a - b);
  const srvS = (srv1 - srv0) / CLK_TCK;
  const genS = (cpu1.user + cpu1.system) / 1e6;
  const acked = writers.reduce((a, w) => a + w.acked, 0);
  const r = {
    peer: name, writers: o.writers, subscribers: o.subscribers, rooms: o.rooms, window: o.window,
    connections: o.writers + o.subscribers, connect_s: (tReady - tStart) / 1e6, window_s: win,
    acked, acked_per_s: acksWin / win, deliveries_per_s: fwdsWin / win,
    ack_p50_us: pct(latAck, 0.5), ack_p99_us: pct(latAck, 0.99), ack_p999_us: pct(latAck, 0.999),
    fwd_p50_us: pct(latFwd, 0.5), fwd_p99_us: pct(latFwd, 0.99), fwd_p999_us: pct(latFwd, 0.999),
    server_cpu_cores: srvS / win, server_cpu_us_per_ack: acksWin ? (srvS * 1e6) / acksWin : -1,
    gen_cpu_cores: genS / win, gen_cpu_us_per_ack: acksWin ? (genS * 1e6) / acksWin : -1,
    generator_bound: genS / win >= 0.9, // one event loop: at ~0.9 of a core it is the limit
    rejects, lost_updates: lost, surplus_updates: surplus,
    final_ok: counted && !lost && !surplus && !rejects && !left, loadavg: loadavg()[0],
  };
  if (problems.length) r.problem = problems.join('; ');

  console.log(JSON.stringify(r));
  process.exit(r.final_ok ? 0 : 1);
}

main().catch((e) => { console.log(JSON.stringify({ error: String(e && e.stack || e).slice(0, 400) })); process.exit(2); });
