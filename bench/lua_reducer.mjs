#!/usr/bin/env node
// lua_reducer.mjs - what a Lua reducer costs (docs/REDUCERS.md, issue #11).
//
// One release daemon (fsync no, snapshots out of the way) serves four room
// types side by side:
//   json    the built-in reducer; actions are {type:"patch", payload:[inc /c]}
//   lua     a trivial Lua reducer emitting the same patch for {type:"inc"}
//   small   a Lua reducer that reads three fields of the state (a top-level
//           number, a nested string, an array item) and emits inc /n; its
//           rooms hold a ~1 KB state
//   big     the same reducer on rooms holding a ~1 MB state
// and tic-tac-toe rooms (examples/tictactoe.lua) where two clients play full
// games (join, join, 5 moves, reset) as fast as acks come back.
//
// Each run drives one kind for --duration seconds: W writers (one room
// each) keep --window actions in flight; the daemon's CPU time (utime +
// stime from /proc) over the window divided by the acks gives the server
// CPU per acked action, the steadiest number on a shared machine. Kinds are
// interleaved (json, lua, small, big, ttt, json, ...) --reps times and
// medians reported.
//
// Usage: node bench/lua_reducer.mjs [--reps 5] [--duration 3] [--writers 8]
//          [--window 16] [--bin build/release/movexd] [--json FILE]
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const { default: WebSocket } = await import(join(ROOT, 'test/node_modules/ws/index.js'));

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (v.startsWith('--') ? [...a, [v.slice(2), all[i + 1]]] : a), []));
const REPS = Number(args.reps || 5);
const DURATION = Number(args.duration || 3) * 1000;
const WRITERS = Number(args.writers || 8);
const WINDOW = Number(args.window || 16);
const BIN = resolve(ROOT, args.bin || 'build/release/movexd');
const TICK = 1000 / 100; // /proc times are in clock ticks of 10 ms (USER_HZ 100)

const dir = mkdtempSync(join(tmpdir(), 'movexd-lua-bench-'));
writeFileSync(join(dir, 'inc.lua'), 'return {reduce = function() return {{op = "inc", path = "/c", value = 1}} end}\n');
writeFileSync(join(dir, 'read3.lua'), `local M = {}
function M.reduce(state, action, ctx)
  local a, b, c = state.a, state.nested.b, state.list[5]
  if a == nil or b == nil or c == nil then return nil, "missing", "state lacks a field" end
  return {{op = "inc", path = "/n", value = 1}}
end
return M
`);
writeFileSync(join(dir, 'movexd.conf'), `log_level info
fsync no
snapshot_every 100000000
wal_max_bytes 1024g
max_message_bytes 8m
room default {
    reducer json
    create_on_subscribe yes
    max_state_bytes 64m
}
room lua {
    reducer lua:inc.lua
    create_on_subscribe yes
}
room small {
    reducer lua:read3.lua
}
room big {
    reducer lua:read3.lua
    max_state_bytes 64m
}
room ttt {
    reducer lua:${join(ROOT, 'examples/tictactoe.lua')}
    create_on_subscribe yes
}
`);

function stateOf(bytes) {
  const list = [];
  let size = 0;
  while (size < bytes) {
    const item = { id: list.length, text: 'x'.repeat(40), done: list.length % 2 === 0 };
    list.push(item);
    size += JSON.stringify(item).length + 1;
  }
  return { a: 1, n: 0, nested: { b: 'here' }, list };
}

const proc = spawn(BIN, ['-c', join(dir, 'movexd.conf'), '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')], { stdio: ['ignore', 'ignore', 'pipe'] });
let stderr = '';
const port = await new Promise((res, rej) => {
  proc.stderr.on('data', (d) => {
    stderr += d;
    const m = /event=listening .*port=(\d+)/.exec(stderr);
    if (m) res(Number(m[1]));
  });
  proc.on('close', (code) => rej(new Error(`daemon exited ${code}: ${stderr}`)));
});
const cpuNow = () => {
  const f = readFileSync(`/proc/${proc.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK; // utime + stime, ms
};

function client(id) {
  return new Promise((res, rej) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, ['movex.v1'], { perMessageDeflate: false });
    const c = { ws, id, next: 1, waiters: new Map(), onmsg: null };
    ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      if (m.id !== undefined && c.waiters.has(m.id)) {
        const w = c.waiters.get(m.id);
        c.waiters.delete(m.id);
        w(m);
      }
    });
    ws.on('open', () => {
      c.req = (msg) => new Promise((r) => { const rid = c.next++; c.waiters.set(rid, r); ws.send(JSON.stringify({ ...msg, id: rid })); });
      c.req({ type: 'hello', client: id }).then(() => res(c));
    });
    ws.on('error', rej);
  });
}

const kinds = {
  json: { room: (i) => `json:r${i}`, action: () => ({ type: 'patch', payload: [{ op: 'inc', path: '/c', value: 1 }] }) },
  lua: { room: (i) => `lua:r${i}`, action: () => ({ type: 'inc' }) },
  small: { room: (i) => `small:r${i}`, action: () => ({ type: 'read' }), state: stateOf(1024) },
  big: { room: (i) => `big:r${i}`, action: () => ({ type: 'read' }), state: stateOf(1 << 20) },
};

// Pipelined writers: returns acks counted during [t0, t0 + DURATION).
async function pipelined(kind, rep) {
  const k = kinds[kind];
  const cs = await Promise.all(Array.from({ length: WRITERS }, (_, i) => client(`w${kind}${rep}-${i}`)));
  await Promise.all(cs.map(async (c, i) => {
    c.room = k.room(i);
    if (k.state && rep === 0) await c.req({ type: 'create', room: c.room, state: k.state });
    const s = await c.req({ type: 'subscribe', room: c.room });
    if (s.type !== 'snapshot') throw new Error(JSON.stringify(s).slice(0, 300));
    c.n = s.next_n;
  }));
  let counting = false, acks = 0, bad = null, stop = false;
  const pump = (c) => {
    if (stop) return;
    c.req({ type: 'action', room: c.room, n: c.n++, action: k.action() }).then((m) => {
      if (m.type !== 'ack') bad = bad || m;
      else if (counting) acks++;
      pump(c);
    });
  };
  for (const c of cs) for (let w = 0; w < WINDOW; w++) pump(c);
  const m = await measure((on) => { counting = on; }, () => acks);
  stop = true;
  await new Promise((r) => setTimeout(r, 200));
  for (const c of cs) c.ws.close();
  if (bad) console.error(`${kind}: unexpected reply ${JSON.stringify(bad).slice(0, 300)}`);
  return m;
}

// After a warm-up, count for DURATION: acks/s and the daemon's CPU per ack.
async function measure(setCounting, counted) {
  await new Promise((r) => setTimeout(r, 500));
  const cpu0 = cpuNow(), t0 = performance.now();
  setCounting(true);
  await new Promise((r) => setTimeout(r, DURATION));
  setCounting(false);
  const cpu1 = cpuNow(), t1 = performance.now();
  const acks = counted();
  return { acks, perSec: acks / ((t1 - t0) / 1000), cpuUsPerAck: ((cpu1 - cpu0) * 1000) / acks };
}

// Tic-tac-toe: per room two players play X wins in 5 moves, then reset.
async function ttt(rep) {
  const ROOMS = WRITERS;
  const games = await Promise.all(Array.from({ length: ROOMS }, async (_, i) => {
    const room = `ttt:b${rep}-${i}`;
    const x = await client(`x${rep}-${i}`), o = await client(`o${rep}-${i}`);
    for (const c of [x, o]) c.n = (await c.req({ type: 'subscribe', room })).next_n;
    await x.req({ type: 'action', room, n: x.n++, action: { type: 'join' } });
    await o.req({ type: 'action', room, n: o.n++, action: { type: 'join' } });
    return { room, x, o };
  }));
  let counting = false, moves = 0, stop = false, bad = null;
  const script = [['x', 0], ['o', 3], ['x', 1], ['o', 4], ['x', 2]];
  const play = async (g) => {
    while (!stop) {
      for (const [who, sq] of script) {
        const c = g[who];
        const m = await c.req({ type: 'action', room: g.room, n: c.n++, action: { type: 'move', payload: { square: sq } } });
        if (m.type !== 'ack') bad = bad || m;
        else if (counting) moves++;
      }
      const c = g.x;
      const r = await c.req({ type: 'action', room: g.room, n: c.n++, action: { type: 'reset' } });
      if (r.type !== 'ack') bad = bad || r;
    }
  };
  const runs = games.map(play);
  const m = await measure((on) => { counting = on; }, () => moves);
  stop = true;
  await Promise.all(runs);
  for (const g of games) { g.x.ws.close(); g.o.ws.close(); }
  if (bad) console.error(`ttt: unexpected reply ${JSON.stringify(bad).slice(0, 300)}`);
  return m;
}

const results = { json: [], lua: [], small: [], big: [], ttt: [] };
try {
  for (let rep = 0; rep < REPS; rep++) {
    for (const kind of ['json', 'lua', 'small', 'big']) results[kind].push(await pipelined(kind, rep));
    results.ttt.push(await ttt(rep));
    console.error(`rep ${rep + 1}/${REPS}: ${Object.entries(results).map(([k, v]) => `${k} ${v.at(-1).cpuUsPerAck.toFixed(1)}us/ack ${Math.round(v.at(-1).perSec)}/s`).join(', ')}`);
  }
} finally {
  proc.kill('SIGTERM');
  await new Promise((r) => proc.on('close', r));
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const summary = {};
for (const [k, v] of Object.entries(results)) {
  summary[k] = { cpuUsPerAck: median(v.map((r) => r.cpuUsPerAck)), perSec: median(v.map((r) => r.perSec)), runs: v.length };
}
summary.ratio_lua_vs_json = summary.lua.cpuUsPerAck / summary.json.cpuUsPerAck;
summary.ratio_big_vs_small = summary.big.cpuUsPerAck / summary.small.cpuUsPerAck;
console.log(JSON.stringify(summary, null, 2));
if (args.json) writeFileSync(args.json, JSON.stringify({ summary, results }, null, 2));
