// movexctl against a hostile or broken server (a fake one on 127.0.0.1:0
// built with the ws package): a reply missing fields or carrying numbers out
// of range gets a clear message and an exit code, never garbage sent on or
// undefined behaviour (an out-of-range float-to-integer cast for next_n).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { WebSocketServer } from 'ws';
import { BIN, TIMEOUT } from './lib.mjs';

const CTL = process.env.MOVEXCTL_BIN || join(dirname(BIN), 'movexctl');

// A fake server: answers hello with a welcome and each request by reply(req);
// records every message it got.
async function fakeServer(reply) {
  const got = [];
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => [...p][0] });
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      got.push(m);
      if (m.type === 'hello') ws.send(JSON.stringify({ type: 'welcome', client: 'x', conn: 1, server: 'fake' }));
      else for (const r of [].concat(reply(m))) ws.send(typeof r === 'string' ? r : JSON.stringify(r));
    });
  });
  await new Promise((res) => wss.on('listening', res));
  return { got, url: `ws://127.0.0.1:${wss.address().port}/ws`, close: () => new Promise((res) => { for (const c of wss.clients) c.terminate(); wss.close(res); }) };
}

function ctl(args) {
  return new Promise((res, rej) => {
    const p = spawn(CTL, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', rej);
    const t = setTimeout(() => { p.kill('SIGKILL'); rej(new Error(`movexctl ${args.join(' ')} hung; stderr: ${err}`)); }, TIMEOUT);
    p.on('close', (code, signal) => { clearTimeout(t); res({ code, signal, out, err }); });
  });
}

test('dispatch refuses a next_n that is not a valid n instead of sending a cast of it', async () => {
  for (const nextN of [1e300, -5, 2.5, 2 ** 60, 'seven']) {
    const s = await fakeServer((m) => m.type === 'subscribe'
      ? { type: 'snapshot', id: m.id, room: m.room, seq: 0, checksum: '0'.repeat(32), next_n: nextN, state: {} }
      : { type: 'ack', id: m.id, room: m.room, n: m.n, seq: 1 });
    try {
      const r = await ctl(['--url', s.url, 'dispatch', 'r:1', '[]']);
      assert.equal(r.signal, null, `next_n ${nextN}: killed by ${r.signal}`);
      assert.equal(r.code, 3, `next_n ${nextN}: exit ${r.code}; stderr ${r.err}`);
      assert.match(r.err, /no valid next_n/);
      assert.equal(s.got.filter((m) => m.type === 'action').length, 0, `next_n ${nextN}: an action was sent: ${JSON.stringify(s.got)}`);
    } finally { await s.close(); }
  }
});

test('an error reply without code or message is reported, not printed as (null)', async () => {
  const s = await fakeServer((m) => ({ type: 'error', id: m.id }));
  try {
    const r = await ctl(['--url', s.url, 'get', 'r:1']);
    assert.equal(r.code, 1, r.err);
    assert.equal(r.err.trim(), 'movexctl: (none): (none)');
  } finally { await s.close(); }
});

test('a reply that is not JSON ends with exit 3 and a message', async () => {
  const s = await fakeServer(() => ['{"type":', '[1,2']);
  try {
    const r = await ctl(['--url', s.url, 'get', 'r:1']);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /not a message/);
  } finally { await s.close(); }
});

// A server sending one endless message (fragments with no end, or one huge
// frame) used to grow movexctl's buffer without a bound. --max-message
// (default 64m) bounds it: exit 3 naming the bound.
test('a message larger than --max-message ends with exit 3 and a message, not unbounded memory', async () => {
  const big = 'x'.repeat(300 * 1024);
  // a reply of ~1.2 MB (a snapshot with a big state) in one frame, and the
  // same as an endless run of fragments
  const s = await fakeServer((m) => ({ type: 'snapshot', id: m.id, room: m.room, seq: 0, checksum: '0'.repeat(32), next_n: 1, state: { a: big, b: big, c: big, d: big } }));
  try {
    let r = await ctl(['--url', s.url, '--max-message', '1m', 'get', 'r:1']);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /larger than --max-message \(1048576 bytes\)/);
    r = await ctl(['--url', s.url, '--max-message', '2m', 'get', 'r:1']);
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).state.a.length, big.length);
    r = await ctl(['--url', s.url, '--max-message', '1x', 'get', 'r:1']);
    assert.equal(r.code, 2, r.err);
  } finally { await s.close(); }

  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => [...p][0] });
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      if (m.type === 'hello') { ws.send(JSON.stringify({ type: 'welcome', client: 'x', conn: 1, server: 'fake' })); return; }
      // fragments of 64 KiB, never the final one: 8 MiB in all, then stop
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      for (let i = 0; i < 128 && ws.readyState === 1; i++) ws.send(chunk, { fin: false, binary: false });
    });
  });
  await new Promise((res) => wss.on('listening', res));
  try {
    const r = await ctl(['--url', `ws://127.0.0.1:${wss.address().port}/ws`, '--max-message', '1m', 'get', 'r:1']);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /larger than --max-message/);
  } finally {
    await new Promise((res) => { for (const c of wss.clients) c.terminate(); wss.close(res); });
  }
});
