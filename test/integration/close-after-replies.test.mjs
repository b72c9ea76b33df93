// A close the server decides because of what the client sent (1009 for a
// message over max_message_bytes, 1002 for an unmasked frame, 4029 for a
// flood past the rate limit) comes after
// every reply decided before that message: the acks of committed actions
// are not dropped with the queue. Raw sockets: the reader stays paused while
// megabytes of snapshots are queued ahead of the acks, so the daemon still
// holds them when the offending frame arrives; then it reads everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { withDaemon, connectHello, makeConf, patchAction, withTimeout, TIMEOUT } from './lib.mjs';
import { RawConn, upgradeRequest, wsFrame, parseFrames } from './rawhttp.mjs';

const GETS = 150; // x ~100 KB snapshots: far more than the kernel buffers hold
const ACTIONS = 20;

async function closeAfterReplies(offending, extra = []) {
  const conf = makeConf({ global: ['max_queue_bytes 64m', 'max_message_bytes 32k', ...extra] });
  let code;
  await withDaemon({ conf }, async (d) => {
    const w = await connectHello(d, 'filler');
    await w.request({ type: 'subscribe', room: 'todo:big' });
    for (let i = 0; i < 5; i++) {
      const a = await w.request(patchAction('todo:big', i + 1, [{ op: 'add', path: `/k${i}`, value: 'x'.repeat(20000) }]));
      assert.equal(a.type, 'ack');
    }
    // w stays subscribed: its fwds show when the daemon has taken the actions

    const chunks = [];
    const sock = net.connect(d.port, '127.0.0.1');
    sock.on('error', () => {});
    const closed = new Promise((res) => sock.on('close', res));
    await withTimeout(new Promise((res) => sock.once('connect', res)), TIMEOUT, 'connect');
    let head = Buffer.alloc(0);
    sock.on('data', (b) => chunks.push(b));
    sock.write(upgradeRequest());
    await withTimeout(new Promise((res) => {
      const t = setInterval(() => { head = Buffer.concat(chunks); if (head.indexOf('\r\n\r\n') > 0) { clearInterval(t); res(); } }, 5);
    }), TIMEOUT, '101');
    const send = (m) => sock.write(wsFrame(1, JSON.stringify(m)));
    send({ type: 'hello', client: 'closer', id: 1 });
    send({ type: 'subscribe', id: 2, room: 'todo:big' });
    sock.pause(); // from here the daemon's queue fills
    for (let i = 0; i < GETS; i++) send({ type: 'get', id: 100 + i, room: 'todo:big' });
    for (let i = 0; i < ACTIONS; i++) send({ ...patchAction('todo:big', i + 1, [{ op: 'add', path: `/z${i}`, value: i }]), id: 1000 + i });
    // the daemon has committed every action (and so queued its ack) before
    // the offending frame is on the wire: it reads ahead, so it must not
    // arrive in the same read as the actions
    for (let i = 0; i < ACTIONS; i++) await w.next((m) => m.type === 'fwd' && m.client === 'closer', `fwd ${i}`);
    sock.write(offending);
    sock.resume();
    await withTimeout(closed, TIMEOUT, 'the server closes the connection');
    const buf = Buffer.concat(chunks);
    const frames = parseFrames(buf, buf.indexOf('\r\n\r\n') + 4);
    const last = frames[frames.length - 1];
    assert.equal(last && last.opcode, 8, 'the connection ends with a close frame');
    const msgs = frames.filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString('utf8')));
    const snapshots = msgs.filter((m) => m.type === 'snapshot' && m.id >= 100 && m.id < 100 + GETS);
    const acks = msgs.filter((m) => m.id >= 1000 && m.id < 1000 + ACTIONS);
    assert.equal(snapshots.length, GETS, 'every snapshot decided before the offending frame arrives');
    assert.deepEqual(acks.map((m) => m.type), Array(ACTIONS).fill('ack'), 'every ack arrives before the close');
    await w.close();
    code = last.payload.readUInt16BE(0);
  });
  return code;
}

test('a message over max_message_bytes closes with 1009 after every reply decided before it', async () => {
  const big = wsFrame(1, JSON.stringify({ type: 'ping', pad: 'y'.repeat(40000) }));
  assert.equal(await closeAfterReplies(big), 1009);
});

test('an unmasked frame closes with 1002 after every reply decided before it', async () => {
  const bare = wsFrame(1, JSON.stringify({ type: 'ping', id: 5 }), { mask: false });
  assert.equal(await closeAfterReplies(bare), 1002);
});

test('a flood past the rate limit closes with 4029 after every reply decided before it', async () => {
  // the burst takes hello, subscribe, the gets and the actions; then ten
  // pings in a row: the first ones refused rate_limited, then the close
  const pings = Buffer.concat(Array.from({ length: 10 }, (_, i) => wsFrame(1, JSON.stringify({ type: 'ping', id: 9000 + i }))));
  const burst = 2 + GETS + ACTIONS;
  assert.equal(await closeAfterReplies(pings, ['rate_messages_per_sec 1', `rate_burst ${burst}`, 'rate_close_after 1']), 4029);
});

// RFC 6455 5.5.1: after its close frame an endpoint sends no more data. A
// graceful close (1009 here) waits for the peer's close frame with the
// connection still subscribed; what the room does meanwhile must not reach
// the wire after the close frame. The raw client answers the close only
// once the writer's actions are all acked: their fwds were decided in the
// same turns, so whatever the daemon wrote for them precedes our close.
test('no data frames follow the close frame while the server waits for the peer\'s close', async () => {
  const conf = makeConf({ global: ['max_message_bytes 32k'] });
  await withDaemon({ conf }, async (d) => {
    const w = await connectHello(d, 'writer');
    await w.request({ type: 'subscribe', room: 'todo:after' });
    const raw = await RawConn.open(d.port);
    raw.attach();
    raw.write(upgradeRequest());
    await raw.until((c) => c.buf.indexOf('\r\n\r\n') > 0, '101');
    const start = raw.buf.indexOf('\r\n\r\n') + 4;
    const frames = () => parseFrames(raw.buf, start);
    const msgs = () => frames().filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString('utf8')));
    raw.write(wsFrame(1, JSON.stringify({ type: 'hello', client: 'reader', id: 1 })));
    raw.write(wsFrame(1, JSON.stringify({ type: 'subscribe', id: 2, room: 'todo:after' })));
    await raw.until(() => msgs().some((m) => m.id === 2), 'subscribed');
    raw.write(wsFrame(1, JSON.stringify({ type: 'ping', pad: 'y'.repeat(40000) })));
    await raw.until(() => frames().some((f) => f.opcode === 8), 'the close frame');
    for (let i = 0; i < 10; i++) {
      const a = await w.request(patchAction('todo:after', i + 1, [{ op: 'add', path: `/k${i}`, value: i }]));
      assert.equal(a.type, 'ack');
    }
    raw.write(wsFrame(8, Buffer.from([0x03, 0xe9]))); // our close (1001)
    await raw.closed;
    const all = frames();
    const at = all.findIndex((f) => f.opcode === 8);
    assert.equal(all[at].payload.readUInt16BE(0), 1009);
    assert.deepEqual(all.slice(at + 1).map((f) => f.opcode), [], 'nothing after the close frame');
    await w.close();
  });
});
