#!/usr/bin/env node
// rooms.mjs - memory of the daemon as the number of rooms grows: 100,000
// rooms touched in turn, with idle-room eviction on and (the reference) off.
//
// Workload: CONNS WebSocket clients on 127.0.0.1 go through ROOMS rooms
// `mem:r<i>` in waves of WAVE rooms, at most RATE rooms per second: each room is subscribed (created, since
// the room type has create_on_subscribe), gets ACTIONS small actions (acked:
// durable), and is unsubscribed, so it has no subscriber and becomes idle.
// RSS of the daemon is sampled every 200 ms (VmRSS) the whole time.
//
//   evict     evict_idle_ms 1s: idle rooms leave memory (a snapshot is
//             written, batches of 256 per tick) and memory should stay
//             bounded by the rooms touched in the last second or so
//   reference evict_idle_ms 0: nothing leaves memory; RSS grows with ROOMS
//
// Reported per variant: RSS at start, peak, at the end of the workload and
// after a settle time; rooms in memory (movexd_rooms_loaded) at the end; the
// workload's wall time. Then one room of every 1000 is read back with `get`
// and checked (seq = ACTIONS) - from disk in the evict variant.
//
// Usage: node bench/rooms.mjs [--rooms 100000] [--wave 500] [--rate 2000] [--conns 4]
//          [--actions 2] [--settle 3] [--dir /tmp] [--json FILE]
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const BIN = resolve(ROOT, process.env.MOVEXD_BIN || 'build/release/movexd');
const WS_PATH = join(ROOT, 'test/node_modules/ws/index.js');

function parseArgs(argv) {
  const o = { rooms: 100000, wave: 500, rate: 2000, conns: 4, actions: 2, settle: 3, dir: tmpdir(), json: '' };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o)) { console.error(`unknown option ${argv[i]}`); process.exit(1); }
    const v = argv[++i];
    o[k] = typeof o[k] === 'number' ? Number(v) : v;
  }
  return o;
}

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))[1]) / 1024;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function httpGet(port, path) {
  return new Promise((res, rej) => {
    const rq = request({ host: '127.0.0.1', port, path }, (r) => {
      let body = '';
      r.on('data', (d) => { body += d; });
      r.on('end', () => res(body));
    });
    rq.on('error', rej);
    rq.end();
  });
}

// A minimal request/reply client (ids) for the workload.
async function connect(WebSocket, port, client) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, ['movex.v1'], { perMessageDeflate: false });
  const waiting = new Map();
  let nextId = 1;
  ws.on('message', (data) => {
    const m = JSON.parse(data);
    if (m.id !== undefined && waiting.has(m.id)) {
      const w = waiting.get(m.id);
      waiting.delete(m.id);
      w(m);
    }
  });
  await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  const c = {
    request(msg) {
      const id = nextId++;
      return new Promise((res) => { waiting.set(id, res); ws.send(JSON.stringify({ ...msg, id })); });
    },
    close() { ws.close(); },
  };
  const w = await c.request({ type: 'hello', client });
  if (w.type !== 'welcome') throw new Error(`hello: ${JSON.stringify(w)}`);
  return c;
}

async function runVariant(name, evictMs, o, WebSocket) {
  const dir = mkdtempSync(join(o.dir, 'movexd-rooms-'));
  const conf = join(dir, 'movexd.conf');
  writeFileSync(conf, `log_level warn\nfsync no\nevict_idle_ms ${evictMs}\nmax_rooms_per_conn ${o.rooms + 10}\nrate_messages_per_sec 1000000\nrate_burst 1000000\n` +
    `room default {\n    reducer json\n    history 100\n    create_on_subscribe yes\n}\n`);
  const proc = spawn(BIN, ['-c', conf, '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--log-level', 'info'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  try {
    const port = await new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`no listening line:\n${stderr}`)), 30000);
      const check = () => { const m = /event=listening addr=\S+ port=(\d+)/.exec(stderr); if (m) { clearTimeout(t); res(Number(m[1])); } };
      proc.stderr.on('data', check);
      proc.once('exit', (c) => rej(new Error(`exited ${c}:\n${stderr}`)));
    });
    const start = rssMiB(proc.pid);
    let peak = start;
    const sampler = setInterval(() => { peak = Math.max(peak, rssMiB(proc.pid)); }, 200);
    const cs = [];
    for (let i = 0; i < o.conns; i++) cs.push(await connect(WebSocket, port, `mem${i}`));
    const t0 = Date.now();
    for (let base = 0; base < o.rooms; base += o.wave) {
      // paced: wave k starts no earlier than k * wave / rate seconds in
      const due = t0 + (base / o.rate) * 1000;
      if (Date.now() < due) await sleep(due - Date.now());
      const end = Math.min(o.rooms, base + o.wave);
      await Promise.all(cs.map(async (c, ci) => {
        const mine = [];
        for (let k = base + ci; k < end; k += o.conns) mine.push(`mem:r${k}`);
        const subs = await Promise.all(mine.map((room) => c.request({ type: 'subscribe', room })));
        for (const s of subs) if (s.type !== 'snapshot') throw new Error(`subscribe: ${JSON.stringify(s)}`);
        const acts = [];
        for (const room of mine) {
          for (let n = 1; n <= o.actions; n++) {
            acts.push(c.request({ type: 'action', room, n, action: { type: 'patch', payload: [{ op: 'add', path: `/k${n}`, value: { n, room } }] } }));
          }
        }
        for (const a of await Promise.all(acts)) if (a.type !== 'ack') throw new Error(`action: ${JSON.stringify(a)}`);
        const uns = await Promise.all(mine.map((room) => c.request({ type: 'unsubscribe', room })));
        for (const u of uns) if (u.type === 'error') throw new Error(`unsubscribe: ${JSON.stringify(u)}`);
      }));
      peak = Math.max(peak, rssMiB(proc.pid));
    }
    const workS = (Date.now() - t0) / 1000;
    const atEnd = rssMiB(proc.pid);
    await sleep(o.settle * 1000);
    const settled = rssMiB(proc.pid);
    peak = Math.max(peak, settled);
    clearInterval(sampler);
    const metrics = await httpGet(port, '/metrics');
    const gauge = (k) => Number(new RegExp(`^${k} (\\S+)$`, 'm').exec(metrics)?.[1]);
    const loaded = gauge('movexd_rooms_loaded'), total = gauge('movexd_rooms_total');
    // read back one room in 1000 (from disk when it was evicted)
    let checked = 0;
    for (let k = 0; k < o.rooms; k += 1000) {
      const g = await cs[0].request({ type: 'get', room: `mem:r${k}` });
      if (g.type !== 'snapshot' || g.seq !== o.actions || g.state.k1?.room !== `mem:r${k}`) throw new Error(`get mem:r${k}: ${JSON.stringify(g)}`);
      checked++;
    }
    for (const c of cs) c.close();
    const r = { name, evict_idle_ms: evictMs, rss_start_mib: start, rss_peak_mib: peak, rss_end_mib: atEnd, rss_settled_mib: settled,
      rooms_loaded: loaded, rooms_total: total, work_s: workS, checked };
    console.log(`  ${name.padEnd(9)} evict_idle_ms ${String(evictMs).padEnd(5)} RSS start ${start.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB, ` +
      `end ${atEnd.toFixed(0)} MiB, after ${o.settle} s ${settled.toFixed(0)} MiB; rooms in memory ${loaded} of ${total}; ` +
      `workload ${workS.toFixed(1)} s (${(o.rooms / workS).toFixed(0)} rooms/s); ${checked} rooms read back`);
    return r;
  } finally {
    proc.kill('SIGKILL');
    await new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const o = parseArgs(process.argv);
  for (const f of [BIN, WS_PATH]) if (!existsSync(f)) { console.error(`missing ${f}: make VARIANT=release all; scripts/install-deps.sh --test`); process.exit(1); }
  const { default: WebSocket } = await import(WS_PATH);
  console.log(`rooms: ${o.rooms} rooms in waves of ${o.wave}, at most ${o.rate} rooms/s, over ${o.conns} connections, ${o.actions} actions each, then unsubscribed`);
  const evict = await runVariant('evict', 1000, o, WebSocket);
  const ref = await runVariant('reference', 0, o, WebSocket);
  const grow = (r) => r.rss_peak_mib - r.rss_start_mib;
  console.log(`summary: peak RSS growth with eviction ${grow(evict).toFixed(0)} MiB vs ${grow(ref).toFixed(0)} MiB without ` +
    `(ratio ${(grow(evict) / grow(ref)).toFixed(2)}); per room without eviction ${(grow(ref) * 1024 / o.rooms).toFixed(1)} KiB`);
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, evict, reference: ref }, null, 2));
}

main().catch((e) => { console.error(e.stack || e); process.exit(1); });
