// Memory bounds per connection (issue #10, defect 2: `get` amplification).
// One anonymous connection pipelines many requests of one type in a single
// burst; the daemon must never hold much more than max_queue_bytes of
// answers for it: replies are counted as they are produced (conn
// pending_bytes + the send queue) and the daemon stops reading from a
// connection whose replies fill half of max_queue_bytes (backpressure,
// src/session.c flow_check) instead of answering everything first. The
// daemon's peak RSS (VmHWM, reset through /proc/PID/clear_refs before each
// burst) may grow by at most BOUND_MB. Before the fix, 800 `get`s of a 1 MB
// state (32 KB on the wire) grew it by 250 MB here, and the reading client
// was closed with 4008.
// The client reads everything and every request gets its answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import WebSocket from '../node_modules/ws/index.js';
import { withDaemon, makeConf, waitFor, withTimeout, connectHello, ASAN, TIMEOUT } from './lib.mjs';

const BOUND_MB = 48; // max_queue_bytes is 4 MiB: 12x slack for allocator and kernel buffers
const STATE_BYTES = 1 << 20;

function statusKb(pid, key) {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `${key} in /proc/${pid}/status`);
  return Number(m[1]);
}

// A raw connection that counts replies without keeping them (a 1 MB
// snapshot times hundreds would otherwise fill the test's own memory).
async function rawClient(url) {
  const ws = new WebSocket(url, ['movex.v1'], { perMessageDeflate: false, maxPayload: 64 << 20 });
  await withTimeout(new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); }), TIMEOUT, 'connect');
  const c = { ws, replies: 0, types: new Map(), closed: null };
  c.closedP = new Promise((res) => ws.on('close', (code) => { c.closed = code; res(code); }));
  ws.on('message', (data) => {
    c.replies++;
    // the type is in the first bytes of every server message
    const t = /"type":"([a-z_]+)"/.exec(data.subarray(0, 40).toString())?.[1] ?? '?';
    c.types.set(t, (c.types.get(t) || 0) + 1);
  });
  return c;
}

const conf = makeConf({
  global: ['max_queue_bytes 4m', 'max_message_bytes 2m', 'rate_messages_per_sec 1000000', 'rate_burst 10000000',
    'max_rooms_per_conn 100000'],
  room: ['max_state_bytes 2m'],
});

// type: request name; count: how many; make(i): the request i; expect: reply type
const BURSTS = [
  { type: 'get', count: 800, make: (i) => ({ type: 'get', id: i, room: 'big:r' }), expect: 'snapshot' },
  { type: 'subscribe', count: 300, make: (i) => ({ type: 'subscribe', id: i, room: 'big:r' }), expect: 'snapshot' },
  { type: 'sync', count: 300, make: (i) => ({ type: 'sync', id: i, room: 'big:r', since: { seq: 0, checksum: '0'.repeat(32) } }), expect: 'snapshot' },
  { type: 'create', count: 1000, make: (i) => ({ type: 'create', id: i, room: `small:c${i}` }), expect: 'created' },
  { type: 'action', count: 5000, make: (i) => ({ type: 'action', id: i, room: 'small:a', n: i, action: { type: 'patch', payload: [{ op: 'inc', path: '/x', value: 1 }] } }), expect: 'ack', subscribe: 'small:a' },
  { type: 'ping', count: 30000, make: (i) => ({ type: 'ping', id: i }), expect: 'pong' },
  { type: 'unknown (errors)', count: 20000, make: (i) => ({ type: `nope-${'z'.repeat(30)}`, id: i }), expect: 'error' },
];

test('pipelined requests of every type from one anonymous connection: peak memory bounded, every request answered', async () => {
  const env = ASAN ? { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || ''}:quarantine_size_mb=4` } : undefined;
  await withDaemon({ conf, env }, async (d) => {
    // the 1 MB room, made by another connection
    const owner = await connectHello(d, 'owner');
    const big = { blob: 'b'.repeat(STATE_BYTES) };
    assert.equal((await owner.request({ type: 'create', room: 'big:r', state: big })).type, 'created');
    await owner.close();
    for (const b of BURSTS) {
      const c = await rawClient(d.url);
      c.ws.send(JSON.stringify({ type: 'hello' })); // anonymous
      if (b.subscribe) c.ws.send(JSON.stringify({ type: 'subscribe', id: 0, room: b.subscribe }));
      await waitFor(() => c.replies === (b.subscribe ? 2 : 1), 'welcome');
      writeFileSync(`/proc/${d.pid}/clear_refs`, '5'); // VmHWM := VmRSS
      const rss0 = statusKb(d.pid, 'VmRSS');
      const burst = [];
      for (let i = 1; i <= b.count; i++) burst.push(JSON.stringify(b.make(i)));
      for (const m of burst) c.ws.send(m); // one burst: the daemon reads them as fast as it likes
      const want = c.replies + b.count;
      await waitFor(() => c.replies >= want || c.closed !== null, `${b.count} ${b.type} replies (got ${c.replies})`, TIMEOUT * 6);
      const grewMb = (statusKb(d.pid, 'VmHWM') - rss0) / 1024;
      assert.ok(grewMb <= BOUND_MB, `${b.type} x${b.count}: peak RSS grew by ${grewMb.toFixed(1)} MB (bound ${BOUND_MB} MB)`);
      assert.equal(c.closed, null, `${b.type}: the connection stays open (closed with ${c.closed})`);
      assert.equal(c.types.get(b.expect), b.count, `${b.type}: ${b.count} ${b.expect} replies (${JSON.stringify([...c.types])})`);
      c.ws.close();
      await c.closedP;
    }
  });
});
