// The client library against the real movexd (build it first:
// `make VARIANT=release all`): two clients converging under concurrent
// edits, offline edits across a daemon restart and a stopped daemon
// (nothing lost, nothing applied twice), and flush() waiting for acks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from '../../test/node_modules/ws/index.js';
import { startDaemon, connectHello, makeConf, BIN, TIMEOUT } from '../../test/integration/lib.mjs';
import { connect, memoryStorage, checksum } from '../movex.js';

const T = { timeout: 60000 };
const FAST = { backoff: { base: 20, cap: 200 }, ping: { interval: 200, timeout: 300 }, connectTimeout: 1000 };

function client(url, id, extra = {}) {
  return connect(url, { WebSocket, client: id, storage: memoryStorage(), ...FAST, ...extra });
}

async function waitFor(cond, what, ms = TIMEOUT) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// The server's view of a room, from an independent raw connection.
async function serverState(url, room) {
  const c = await connectHello({ url }, 'inspector');
  const g = await c.request({ type: 'get', room });
  await c.close();
  assert.equal(g.type, 'snapshot', JSON.stringify(g));
  return g;
}

// A daemon on a fixed port and data dir, so it can be restarted in place
// (lib.mjs's startDaemon picks a new port and dir each time).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

class Daemon {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'movex-client-test-'));
    this.conf = join(this.dir, 'movexd.conf');
    writeFileSync(this.conf, makeConf());
  }
  async start() {
    this.port ??= await freePort();
    this.url = `ws://127.0.0.1:${this.port}/ws`;
    const proc = spawn(BIN, ['-c', this.conf, '--listen', `127.0.0.1:${this.port}`, '--data-dir', join(this.dir, 'data')], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    let err = '';
    this.exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`movexd did not start:\n${err}`)), TIMEOUT);
      proc.stderr.on('data', (d) => {
        err += d;
        if (/event=listening/.test(err)) { clearTimeout(t); resolve(); }
      });
      proc.on('exit', (code) => { clearTimeout(t); reject(new Error(`movexd exited ${code}:\n${err}`)); });
    });
    proc.stderr.resume();
  }
  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGCONT');
    this.proc.kill('SIGTERM');
    const r = await Promise.race([this.exited, new Promise((res) => setTimeout(() => res(null), TIMEOUT))]);
    if (!r) { this.proc.kill('SIGKILL'); throw new Error('movexd did not stop'); }
    assert.equal(r.code, 0, `movexd exit ${JSON.stringify(r)}`);
  }
  pause() { this.proc.kill('SIGSTOP'); }
  resume() { this.proc.kill('SIGCONT'); }
  async dispose() {
    try { await this.stop(); } finally { rmSync(this.dir, { recursive: true, force: true }); }
  }
}

test('two clients converge under concurrent edits (and independent rejects)', T, async () => {
  const d = await startDaemon();
  const a = client(d.url, 'alice');
  const b = client(d.url, 'bob');
  try {
    const init = { count: 0, items: [], last: null };
    const [ra, rb] = await Promise.all([a.join('todo:conv', { create: init }), b.join('todo:conv', { create: init })]);
    assert.deepEqual(ra.state, init);
    assert.deepEqual(rb.state, init);
    const settle = (p) => p.then((r) => ({ ok: true, r }), (e) => ({ ok: false, code: e.code }));
    const tag = (who, i) => `${who}${i}`;

    // phase 1: plain concurrent edits, all of them apply
    const edits = async (room, who, from, count, cas) => {
      const out = [];
      for (let i = from; i < from + count; i++) {
        const ops = [{ op: 'inc', path: '/count', value: 1 }, { op: 'add', path: '/items/-', value: tag(who, i) }];
        // compare-and-set on /last: may lose against the other client, and
        // then every action built on it (dep) is rejected as well
        if (cas) ops.push({ op: 'test', path: '/last', value: room.state.last }, { op: 'replace', path: '/last', value: tag(who, i) });
        out.push(settle(room.patch(ops)));
        if (i % 3 === 0) await new Promise((r) => setImmediate(r));
      }
      return Promise.all(out);
    };
    const [pa, pb] = await Promise.all([edits(ra, 'alice', 0, 60, false), edits(rb, 'bob', 0, 60, false)]);
    assert.ok([...pa, ...pb].every((o) => o.ok), 'every plain edit applies');

    // phase 2: compare-and-set edits racing each other
    const [ca, cb] = await Promise.all([edits(ra, 'alice', 60, 20, true), edits(rb, 'bob', 60, 20, true)]);
    await Promise.all([a.flush(), b.flush()]);
    const head = await serverState(d.url, 'todo:conv');
    await waitFor(() => ra.seq === head.seq && rb.seq === head.seq, 'both clients at the head');
    assert.deepEqual(ra.state, head.state);
    assert.deepEqual(rb.state, head.state);
    assert.equal(ra.checksum, head.checksum);
    assert.equal(rb.checksum, head.checksum);
    assert.equal(checksum(ra.state), head.checksum);

    let applied = 0;
    for (const [who, outcomes] of [['alice', [...pa, ...ca]], ['bob', [...pb, ...cb]]]) {
      let rejectedBefore = false;
      for (const [i, o] of outcomes.entries()) {
        if (o.ok) applied++;
        else if (o.code === 'after_reject') assert.ok(rejectedBefore, `${who}${i}: after_reject follows a reject`);
        else assert.equal(o.code, 'test_failed', `${who}${i}`);
        if (!o.ok) rejectedBefore = true;
        assert.equal(head.state.items.filter((x) => x === tag(who, i)).length, o.ok ? 1 : 0, `${who}${i} exactly once iff acked`);
      }
      // one client's applied actions keep their order
      const mine = head.state.items.filter((x) => x.startsWith(who));
      assert.deepEqual(mine, [...mine].sort((x, y) => Number(x.slice(who.length)) - Number(y.slice(who.length))));
    }
    assert.equal(head.state.count, applied);
    assert.equal(head.seq, applied);
    assert.ok(applied >= 121, `plain edits plus at least one compare-and-set (${applied})`);
  } finally {
    await Promise.all([a.close(), b.close()]);
    await d.stop();
  }
});

test('offline edits survive a daemon restart: resent with the same n, nothing lost or duplicated', T, async () => {
  const d = new Daemon();
  await d.start();
  const a = client(d.url, 'alice');
  const statuses = [];
  a.on('status', (s) => statuses.push(s));
  try {
    const room = await a.join('todo:off', { create: { n: 0, list: [] } });
    const add = (tag) => room.patch([{ op: 'inc', path: '/n', value: 1 }, { op: 'add', path: '/list/-', value: tag }]);
    const online = [];
    for (let i = 0; i < 10; i++) online.push(add(`on${i}`));
    await Promise.all(online);
    await d.stop();
    await waitFor(() => a.status === 'reconnecting', 'the client notices');
    const offline = [];
    for (let i = 0; i < 20; i++) offline.push(add(`off${i}`));
    assert.equal(room.state.n, 30, 'offline edits show at once');
    assert.equal(room.confirmedState.n, 10);
    await d.start(); // same port, same data
    const acks = await Promise.all(offline);
    assert.deepEqual(acks.map((x) => x.seq), Array.from({ length: 20 }, (_, i) => 11 + i));
    const head = await serverState(d.url, 'todo:off');
    assert.equal(head.state.n, 30);
    assert.deepEqual(head.state.list, [...Array.from({ length: 10 }, (_, i) => `on${i}`), ...Array.from({ length: 20 }, (_, i) => `off${i}`)]);
    assert.deepEqual(room.state, head.state);
    assert.equal(room.checksum, head.checksum);
    assert.ok(statuses.includes('reconnecting') && statuses.at(-1) === 'open', statuses.join());
  } finally {
    await a.close();
    await d.dispose();
  }
});

test('actions sent into a stopped daemon: applied while the client was away, confirmed on reconnect, never twice', T, async () => {
  const d = new Daemon();
  await d.start();
  // record what the server sends, to see which path confirmed the actions
  const seen = [];
  class Spy extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => seen.push(JSON.parse(String(ev.data))));
    }
  }
  const a = client(d.url, 'alice', { WebSocket: Spy });
  const b = client(d.url, 'bob');
  try {
    const room = await a.join('todo:away', { create: { n: 0, list: [] } });
    const other = await b.join('todo:away');
    const add = (tag) => room.patch([{ op: 'inc', path: '/n', value: 1 }, { op: 'add', path: '/list/-', value: tag }]);
    d.pause(); // SIGSTOP: the socket stays open, nothing answers
    const sentWhileStopped = [];
    for (let i = 0; i < 10; i++) sentWhileStopped.push(add(`s${i}`));
    await waitFor(() => a.status === 'reconnecting', 'ping timeout', 5000);
    const offline = [];
    for (let i = 0; i < 5; i++) offline.push(add(`o${i}`));
    d.resume(); // the daemon reads the 10 buffered actions (their acks go nowhere)
    const acks = await Promise.all([...sentWhileStopped, ...offline]);
    await a.flush();
    const head = await serverState(d.url, 'todo:away');
    const expected = [...Array.from({ length: 10 }, (_, i) => `s${i}`), ...Array.from({ length: 5 }, (_, i) => `o${i}`)];
    assert.deepEqual(head.state.list, expected, 'each action exactly once, in order');
    assert.equal(head.state.n, 15);
    assert.equal(head.seq, 15);
    assert.deepEqual(acks.map((x) => x.seq), Array.from({ length: 15 }, (_, i) => i + 1));
    assert.deepEqual(room.state, head.state);
    await waitFor(() => other.seq === 15, 'the other client follows');
    assert.deepEqual(other.state, head.state);
    const viaCatchUp = seen.filter((m) => m.type === 'actions').flatMap((m) => m.actions).filter((e) => e.client === 'alice').length;
    const viaFwd = seen.filter((m) => m.type === 'fwd' && m.client === 'alice').length;
    const dupAcks = seen.filter((m) => m.type === 'ack' && m.duplicate).length;
    console.log(`# confirmed after reconnect: ${viaCatchUp} by catch-up entries, ${viaFwd} by fwd, ${dupAcks} by duplicate acks`);
    assert.ok(viaCatchUp + viaFwd + dupAcks >= 1, 'some actions were applied while the client was away');
  } finally {
    await Promise.all([a.close(), b.close()]);
    await d.dispose();
  }
});

test('flush() resolves only after every action is acked (and waits across a stopped daemon)', T, async () => {
  const d = new Daemon();
  await d.start();
  const a = client(d.url, 'alice');
  try {
    const room = await a.join('todo:flush', { create: { n: 0 } });
    const acked = [];
    for (let i = 0; i < 50; i++) room.patch([{ op: 'inc', path: '/n', value: 1 }]).then(() => acked.push(i));
    await a.flush();
    assert.equal(acked.length, 50, 'every dispatch promise resolved before flush');
    assert.equal((await serverState(d.url, 'todo:flush')).state.n, 50, 'and the server has them all');

    d.pause();
    for (let i = 0; i < 5; i++) room.patch([{ op: 'inc', path: '/n', value: 1 }]).then(() => acked.push(i));
    let flushed = false;
    const f = a.flush().then(() => { flushed = true; });
    await new Promise((r) => setTimeout(r, 700)); // past the ping timeout: disconnected
    assert.equal(flushed, false, 'no acks, no flush');
    assert.equal(a.status, 'reconnecting');
    d.resume();
    await f;
    assert.equal(acked.length, 55);
    assert.equal((await serverState(d.url, 'todo:flush')).state.n, 55);
    // close({flush: true}) likewise
    room.patch([{ op: 'inc', path: '/n', value: 1 }]);
    await a.close({ flush: true });
    assert.equal((await serverState(d.url, 'todo:flush')).state.n, 56);
  } finally {
    await a.close();
    await d.dispose();
  }
});

test('a reject from the real server: test_failed, the cascade, and a later independent action', T, async () => {
  const d = await startDaemon();
  const a = client(d.url, 'alice');
  try {
    const room = await a.join('todo:rej', { create: { v: 1 } });
    const events = [];
    room.on('reject', (e) => events.push(`${e.n}:${e.code}`));
    const p1 = room.patch([{ op: 'test', path: '/v', value: 2 }]);
    const p2 = room.patch([{ op: 'inc', path: '/v', value: 1 }]); // dep 1
    await assert.rejects(p1, (e) => e.code === 'test_failed');
    await assert.rejects(p2, (e) => e.code === 'after_reject');
    const p3 = room.patch([{ op: 'inc', path: '/v', value: 10 }]);
    assert.equal((await p3).seq, 1);
    await a.flush();
    assert.deepEqual(room.state, { v: 11 });
    assert.deepEqual(events, ['1:test_failed', '2:after_reject']);
    const head = await serverState(d.url, 'todo:rej');
    assert.deepEqual(head.state, { v: 11 });
  } finally {
    await a.close();
    await d.stop();
  }
});

test('dep: false against the real server: an independent action is applied although an earlier one was rejected', T, async () => {
  const d = await startDaemon();
  const a = client(d.url, 'alice');
  try {
    const room = await a.join('todo:nodep', { create: { v: 1, s: '' } });
    const events = [];
    room.on('reject', (e) => events.push(`${e.n}:${e.code}`));
    const p1 = room.patch([{ op: 'test', path: '/v', value: 2 }]); // test_failed
    const p2 = room.patch([{ op: 'replace', path: '/s', value: 'kept' }], { dep: false });
    const p3 = room.patch([{ op: 'inc', path: '/w', value: 1 }]); // touches nothing pending: no dep
    const p4 = room.patch([{ op: 'inc', path: '/w', value: 10 }], { dep: true }); // dep 3
    await assert.rejects(p1, (e) => e.code === 'test_failed');
    assert.deepEqual([(await p2).seq, (await p3).seq, (await p4).seq], [1, 2, 3]);
    await a.flush();
    assert.deepEqual(events, ['1:test_failed']);
    assert.deepEqual(room.state, { v: 1, s: 'kept', w: 11 });
    const head = await serverState(d.url, 'todo:nodep');
    assert.deepEqual(head.state, { v: 1, s: 'kept', w: 11 });
    assert.equal(head.checksum, room.checksum);
  } finally {
    await a.close();
    await d.stop();
  }
});
