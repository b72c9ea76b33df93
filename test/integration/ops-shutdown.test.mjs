// SIGTERM while clients pipeline actions (src/main.c, mx_server_shutdown):
// every decided action's reply goes out before the close, clients see 1001,
// snapshots are written, the exit code is 0, and after a restart on the same
// data directory the state holds exactly the acked actions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { checksum } from '../../client/movex.js';
import {
  startDaemon, withDaemon, connectHello, Client, makeConf, patchAction, httpRequest, waitFor, withTimeout, TIMEOUT,
} from './lib.mjs';

// `W` writers subscribed to `room` each keep WINDOW actions in flight (one
// more per ack, until the connection closes). Returns their bookkeeping.
async function startWriters(d, room, W, WINDOW = 64) {
  const writers = [];
  for (let i = 0; i < W; i++) {
    const c = await connectHello(d, `term-${i}`);
    assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    writers.push(c);
  }
  const st = writers.map(() => ({ sent: 0, acks: [], other: [] }));
  writers.forEach((c, i) => {
    const s = st[i];
    const sendOne = () => {
      if (c.ws.readyState !== 1) return;
      s.sent++;
      c.send({ ...patchAction(room, s.sent, [{ op: 'inc', path: `/w${i}`, value: 1 }]), id: 100000 + s.sent });
    };
    c.ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      if (m.type === 'ack') { s.acks.push(m); sendOne(); } else if (m.id >= 100000) s.other.push(m);
    });
    for (let k = 0; k < WINDOW; k++) sendOne();
  });
  const totalAcks = () => st.reduce((t, s) => t + s.acks.length, 0);
  return { writers, st, totalAcks };
}

test('SIGTERM with actions in flight: every acked action is durable after a restart, exit 0, stop sequence logged', async () => {
  const conf = makeConf({ global: ['fsync always'] });
  const d = await startDaemon({ conf, keepDir: true });
  let d2;
  try {
    const room = 'todo:term';
    const W = 4;
    const { writers, st, totalAcks } = await startWriters(d, room, W);
    await waitFor(() => totalAcks() >= 300, '300 acks before SIGTERM');
    const mark = d.stderr.length;
    d.proc.kill('SIGTERM');
    // Each writer's connection ends (the close code is checked in the next test).
    await Promise.all(writers.map((c) => withTimeout(c.closed, TIMEOUT, 'writer closed')));
    const exit = await d.waitExit();
    assert.deepEqual(exit, { code: 0, signal: null }, `exit status; log tail:\n${d.stderr.slice(-2000)}`);
    // The stop sequence in the log, in order.
    const tail = d.stderr.slice(mark);
    const iStopping = tail.indexOf('info event=stopping');
    const iStopped = tail.indexOf('info event=stopped');
    assert.ok(iStopping >= 0 && iStopped > iStopping, `stopping then stopped:\n${tail}`);
    assert.doesNotMatch(tail, /event=(fatal|storage_error|shutdown_timeout|snapshot_failed)/);
    assert.ok(readdirSync(join(d.dataDir, 'rooms')).includes(`${room}.snap`), 'a snapshot of the room was written at stop');

    // The SIGTERM landed mid-stream: actions were still unanswered.
    const sent = st.reduce((t, s) => t + s.sent, 0);
    const acked = totalAcks();
    assert.ok(acked < sent, `SIGTERM landed with actions in flight (sent ${sent}, acked ${acked})`);
    for (const [i, s] of st.entries()) {
      assert.deepEqual(s.other, [], `writer ${i}: nothing but acks for its actions`);
      s.acks.forEach((a, k) => assert.equal(a.n, k + 1, `writer ${i}: acks in n order, gap-free`));
    }

    // Restart on the same data directory.
    d2 = await startDaemon({ conf, dir: d.dir });
    const v = await connectHello(d2, 'term-verify');
    const g = await v.request({ type: 'get', room });
    assert.equal(g.type, 'snapshot');
    // No ack lost: every acked action is in the state (actions are applied
    // in n order per writer, so "acked n <= applied count" is the check);
    // whether each decided action's ack also went out is the next test's.
    for (let i = 0; i < W; i++) {
      assert.ok((g.state[`w${i}`] ?? 0) >= st[i].acks.length,
        `writer ${i}: the state counts ${g.state[`w${i}`]} >= its ${st[i].acks.length} acked actions`);
    }
    assert.ok(g.seq >= acked, `head seq ${g.seq} >= ${acked} acked actions`);
    // Every acked (seq, checksum) is in the room's history, as acked.
    const sy = await v.request({ type: 'sync', room, since: { seq: 0, checksum: checksum({}) } });
    assert.equal(sy.type, 'actions', 'the whole history is kept (history 1000)');
    const bySeq = new Map(sy.actions.map((e) => [e.seq, e]));
    for (const [i, s] of st.entries()) {
      for (const a of s.acks) {
        const e = bySeq.get(a.seq);
        assert.equal(e?.checksum, a.checksum, `acked seq ${a.seq} is in the history with its checksum`);
        assert.equal(e.client, `term-${i}`);
        assert.equal(e.n, a.n);
      }
    }
    // The exactly-once memory survived too: a writer's last acked n is a
    // duplicate after the restart.
    for (let i = 0; i < W; i++) {
      if (!st[i].acks.length) continue;
      const c = await connectHello(d2, `term-${i}`);
      const s = await c.request({ type: 'subscribe', room });
      assert.ok(s.next_n > st[i].acks.length, `writer ${i} next_n`);
      const lastAck = st[i].acks[st[i].acks.length - 1];
      const dup = await c.request(patchAction(room, lastAck.n, [{ op: 'inc', path: `/w${i}`, value: 1 }]));
      assert.equal(dup.type, 'ack');
      assert.equal(dup.duplicate, true, 'the last acked n is a duplicate after the restart');
      assert.equal(dup.seq, lastAck.seq);
      await c.close();
    }
    await v.close();
  } finally {
    if (d2) await d2.stop();
    if (d.proc.exitCode === null && d.proc.signalCode === null) await d.kill('SIGKILL');
    rmSync(d.dir, { recursive: true, force: true });
  }
});

// BUG: on SIGTERM the server sends its close frame (1001) and then closes
// the socket at once (shutdown(SHUT_WR) + close, seen with strace), without
// waiting for the client's close frame and with the client's later actions
// unread in the socket. Closing a socket with unread input makes the kernel
// send a TCP RST and drop what is still in the send buffer: the client sees
// ECONNRESET/EPIPE and close code 1006 instead of 1001, and acks of actions
// that were decided and made durable never reach it (they are in the state
// after the restart, so the client must resend to learn their outcome).
test('SIGTERM while clients are still sending: every client sees 1001 and the ack of every decided action', async () => {
  // The outcome depends on timing, so up to 3 rounds; one bad round fails.
  const conf = makeConf({ global: ['fsync always'] });
  for (let round = 1; round <= 3; round++) {
    const d = await startDaemon({ conf, keepDir: true });
    let d2;
    try {
      const room = 'todo:term-codes';
      const W = 6;
      const { writers, st, totalAcks } = await startWriters(d, room, W);
      await waitFor(() => totalAcks() >= 300, '300 acks before SIGTERM');
      d.proc.kill('SIGTERM');
      const closes = await Promise.all(writers.map((c) => withTimeout(c.closed, TIMEOUT, 'writer closed')));
      assert.deepEqual(await d.waitExit(), { code: 0, signal: null });
      d2 = await startDaemon({ conf, dir: d.dir });
      const v = await connectHello(d2, 'term-verify');
      const g = await v.request({ type: 'get', room });
      await v.close();
      const problems = [];
      closes.forEach((cl, i) => {
        if (cl.code !== 1001 || cl.reason !== 'server shutting down') problems.push(`writer ${i}: close ${cl.code} ${JSON.stringify(cl.reason)}`);
        const applied = g.state[`w${i}`] ?? 0;
        if (applied !== st[i].acks.length) problems.push(`writer ${i}: ${applied} actions decided and durable, only ${st[i].acks.length} acks received`);
      });
      assert.deepEqual(problems, [], `round ${round}: each writer: close 1001 after the acks of all its decided actions`);
    } finally {
      if (d2) await d2.stop();
      if (d.proc.exitCode === null && d.proc.signalCode === null) await d.kill('SIGKILL');
      rmSync(d.dir, { recursive: true, force: true });
    }
  }
});

test('during shutdown: /readyz is 503 stopping and a new WebSocket is closed with 1001, never served', async () => {
  // A reader that stopped reading with megabytes queued keeps the shutdown
  // waiting (up to its 3 s timeout): the window in which to connect.
  const conf = makeConf({ global: ['max_queue_bytes 64m', 'max_message_bytes 2m'] });
  await withDaemon({ conf }, async (d) => {
    const laggard = await connectHello(d, 'laggard');
    const big = { s: 'x'.repeat(512 * 1024) };
    assert.equal((await laggard.request({ type: 'create', room: 'todo:big', state: big })).type, 'created');
    const other = await connectHello(d, 'other');
    assert.equal((await other.request({ type: 'subscribe', room: 'todo:small' })).type, 'snapshot');
    laggard.ws._socket.pause();
    for (let i = 0; i < 48; i++) laggard.send({ type: 'get', id: 500 + i, room: 'todo:big' }); // 24 MB of replies
    // all 48 gets were received (and answered into the queue) before the stop
    await waitFor(async () => {
      const m = (await httpRequest(d, { path: '/metrics' })).body;
      return Number(/^movexd_messages_in_total (\d+)/m.exec(m)[1]) >= 2 + 2 + 48;
    }, 'the daemon has read the 48 gets');
    assert.equal((await httpRequest(d, { path: '/readyz' })).status, 200);

    const mark = d.stderr.length;
    d.proc.kill('SIGTERM');
    await d.waitLog(/event=stopping/, TIMEOUT, mark);
    const oc = await withTimeout(other.closed, TIMEOUT, 'idle client closed');
    assert.equal(oc.code, 1001, 'a reading client is closed with 1001');

    const ready = await httpRequest(d, { path: '/readyz' }).catch((e) => {
      throw new Error(`${e.message}: the daemon was expected to still be shutting down (held by the stalled reader); log:\n${d.stderr.slice(mark)}`);
    });
    assert.equal(ready.status, 503, `/readyz while stopping: ${JSON.stringify(ready)}`);
    assert.equal(ready.body, 'stopping\n');
    assert.equal((await httpRequest(d, { path: '/healthz' })).status, 200, '/healthz still 200 while stopping');

    const late = new Client(d.url);
    const opened = await new Promise((res) => {
      late.ws.once('open', () => res(true));
      late.ws.once('error', () => res(false));
    });
    if (opened) late.send({ type: 'hello', client: 'late' });
    const lc = await withTimeout(late.closed, TIMEOUT, 'late connection closed');
    assert.ok(opened, 'the listener still accepts while stopping (so the close code can be checked)');
    assert.equal(lc.code, 1001, `a connection opened during shutdown is closed with 1001: ${JSON.stringify(lc)}`);
    assert.ok(!late.all.some((m) => m.type === 'welcome'), 'and never served');

    laggard.ws._socket.resume();
    const lg = await withTimeout(laggard.closed, TIMEOUT, 'laggard closed');
    assert.ok([1001, 1006].includes(lg.code), `the stalled reader: ${lg.code}`);
  });
});

test('SIGTERM on an idle daemon: clients get 1001 promptly, exit 0, the next start sees the rooms', async () => {
  const conf = makeConf({});
  const d = await startDaemon({ conf, keepDir: true });
  let d2;
  try {
    const a = await connectHello(d, 'idle-a');
    const b = await connectHello(d, 'idle-b');
    for (const c of [a, b]) await c.request({ type: 'subscribe', room: 'todo:idle' });
    assert.equal((await a.request(patchAction('todo:idle', 1, [{ op: 'add', path: '/k', value: 'v' }]))).type, 'ack');
    await b.next((m) => m.type === 'fwd');
    const t0 = Date.now();
    d.proc.kill('SIGTERM');
    const [ca, cb] = await Promise.all([a.closed, b.closed]);
    assert.equal(ca.code, 1001);
    assert.equal(cb.code, 1001);
    assert.deepEqual(await d.waitExit(), { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 3000, `an idle daemon stops at once (${Date.now() - t0} ms)`);
    assert.match(d.stderr, /event=stopping[\s\S]*event=stopped/);
    d2 = await startDaemon({ conf, dir: d.dir });
    const c = await connectHello(d2, 'idle-c');
    const g = await c.request({ type: 'get', room: 'todo:idle' });
    assert.deepEqual(g.state, { k: 'v' });
    assert.equal(g.seq, 1);
    await c.close();
  } finally {
    if (d2) await d2.stop();
    if (d.proc.exitCode === null && d.proc.signalCode === null) await d.kill('SIGKILL');
    rmSync(d.dir, { recursive: true, force: true });
  }
});
