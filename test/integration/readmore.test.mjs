// The 1 KiB receive buffer and reading again in the same loop turn
// (src/readmore.c, issue #12). libwebsockets reads at most its receive
// buffer per POLLIN; movexd keeps that buffer at 1 KiB (memory per idle
// connection) and has lws read a connection again while its reads fill the
// buffer. These tests pipeline far more than 1 KiB in one write - small
// requests, messages longer than the buffer (delivered in 1 KiB chunks and
// reassembled), a message in fragments with a ping control frame between
// them, one with a 64-bit length - over plain TCP and TLS, and check that
// every request is answered exactly once, nothing is corrupted, and the
// extra reads happened (movexd_reads_again_total). Run under ASan by
// `make test` too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { withDaemon, makeConf, httpRequest, httpsGet, makeTestCert, withTimeout, TIMEOUT } from './lib.mjs';
import { wsFrame, parseFrames, rawWebSocket, RawConn, upgradeRequest } from './rawhttp.mjs';

let CERT;
before(() => { CERT = makeTestCert(); });
after(() => rmSync(CERT.dir, { recursive: true, force: true }));

const text = (o) => wsFrame(1, JSON.stringify(o));
const inc = (id, n, pad = '') => ({ type: 'action', id, room: 'rm:burst', n, action: { type: 'patch', payload: [{ op: 'inc', path: '/count', value: 1 }] }, ...(pad ? { pad } : {}) });

async function readsAgain(d, ca) {
  const r = ca ? await httpsGet(d, '/metrics', ca) : await httpRequest(d, { path: '/metrics' });
  const m = /^movexd_reads_again_total (\d+)$/m.exec(r.body);
  assert.ok(m, 'movexd_reads_again_total is exported');
  return Number(m[1]);
}

// One write: hello, subscribe, then `small` pipelined actions with pings
// between them, a 5 KB action, a 70 KB action whose frame has a 64-bit
// length, and an action in three fragments with a ping control frame
// between the fragments. Returns what the server answered.
async function burst(d, ca, small) {
  const { c, start } = await rawWebSocket(d, ca);
  const parts = [text({ type: 'hello', client: `burst-${ca ? 'tls' : 'tcp'}` }), text({ type: 'subscribe', id: 1, room: 'rm:burst' })];
  let id = 10;
  let n = 0;
  const want = new Map(); // id -> reply type
  const add = (o, type) => { want.set(o.id, type); return o; };
  for (let i = 0; i < small; i++) {
    parts.push(text(add(inc(id++, ++n), 'ack')));
    if (i % 7 === 0) parts.push(text(add({ type: 'ping', id: id++ }, 'pong')));
  }
  const mid = add(inc(id++, ++n, 'm'.repeat(5000)), 'ack');
  parts.push(text(mid));
  const big = JSON.stringify(add({ type: 'action', id: id++, room: 'rm:burst', n: ++n, action: { type: 'patch', payload: [{ op: 'add', path: '/big', value: 'b'.repeat(70000) }] } }, 'ack'));
  parts.push(wsFrame(1, big));
  const frag = JSON.stringify(add(inc(id++, ++n, 'f'.repeat(3000)), 'ack'));
  parts.push(wsFrame(1, frag.slice(0, 1500), { fin: false }));
  parts.push(wsFrame(9, 'mid-message ping')); // control frames may come between fragments
  parts.push(wsFrame(0, frag.slice(1500, 2500), { fin: false }));
  parts.push(wsFrame(0, frag.slice(2500), { fin: true }));
  parts.push(text(add({ type: 'get', id: id++, room: 'rm:burst' }, 'snapshot')));
  const bytes = Buffer.concat(parts);
  assert.ok(bytes.length > 40 * 1024, `the burst is ${bytes.length} B, far more than one 1 KiB read`);
  c.write(bytes);
  const lastId = id - 1;
  const replies = () => parseFrames(c.buf, start).filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString('utf8')));
  await c.until(() => replies().some((m) => m.id === lastId), `the reply to the last request (${want.size} requests)`, TIMEOUT * 3);
  const frames = parseFrames(c.buf, start);
  c.sock.destroy();
  return { frames, replies: replies(), want, count: n, lastId };
}

function check({ frames, replies, want, count, lastId }) {
  assert.equal(replies[0].type, 'welcome', JSON.stringify(replies[0]));
  const byId = new Map();
  for (const m of replies) {
    if (m.id === undefined) continue;
    assert.ok(!byId.has(m.id), `one reply for id ${m.id}`);
    byId.set(m.id, m);
  }
  for (const [id, type] of want) assert.equal(byId.get(id)?.type, type, `id ${id}: ${JSON.stringify(byId.get(id))}`);
  // acked in order: seq 1..count on this connection's room
  const acks = replies.filter((m) => m.type === 'ack').map((m) => m.seq);
  assert.deepEqual(acks, Array.from({ length: count }, (_, i) => i + 1));
  const state = byId.get(lastId).state;
  assert.equal(state.count, count - 1, 'every inc applied once (one action was the big add)');
  assert.equal(state.big, 'b'.repeat(70000), 'the 70 KB value arrived intact');
  assert.ok(frames.some((f) => f.opcode === 10 && f.payload.toString() === 'mid-message ping'), 'the ping between fragments is answered with its payload');
}

const conf = (extra = []) => makeConf({ global: ['max_message_bytes 1m', ...extra] });

test('plain TCP: a 100 KB pipelined burst in one write is read past the 1 KiB buffer; every request answered once, intact', async () => {
  await withDaemon({ conf: conf() }, async (d) => {
    const before0 = await readsAgain(d);
    check(await burst(d, null, 300));
    assert.ok(await readsAgain(d) > before0, 'lws was asked to read again after full reads');
  });
});

test('TLS: the same burst through SSL_read', async () => {
  await withDaemon({ conf: conf([`tls_cert_file ${CERT.cert}`, `tls_key_file ${CERT.key}`]) }, async (d) => {
    check(await burst(d, CERT.ca, 300));
  });
});

// A TLS client whose TCP bytes the test holds back: `hold()`, then
// writes (each c.write is one TLS record, as browsers send a record per
// WebSocket message), then `release()` sends every held record in one TCP
// write, so they are all in the daemon's socket when it reads.
async function heldTls(port, ca) {
  const tcp = await withTimeout(new Promise((res, rej) => {
    const s = net.connect(port, '127.0.0.1', () => res(s));
    s.once('error', rej);
  }), TIMEOUT, 'TCP connect');
  let held = null;
  const wire = new Duplex({
    read() {},
    write(chunk, enc, cb) {
      if (held) held.push(chunk);
      else tcp.write(chunk);
      cb();
    },
  });
  tcp.on('data', (d) => wire.push(d));
  tcp.on('end', () => wire.push(null));
  tcp.on('error', () => wire.destroy());
  const c = new RawConn();
  await withTimeout(new Promise((res, rej) => {
    c.sock = tls.connect({ socket: wire, ca, servername: 'localhost' }, res);
    c.sock.once('error', rej);
  }), TIMEOUT, 'TLS connect');
  c.connected = true;
  c.attach();
  c.write(upgradeRequest());
  await c.until((x) => x.buf.indexOf('\r\n\r\n') > 0, '101 Switching Protocols');
  const start = c.buf.indexOf('\r\n\r\n') + 4;
  return {
    c, start, tcp,
    hold() { held = []; },
    // each write gives its record to the wire before its callback runs
    async writeRecords(frames) { for (const f of frames) await new Promise((res) => c.sock.write(f, res)); },
    release() { const all = Buffer.concat(held); held = null; tcp.write(all); return all.length; },
  };
}

// OpenSSL returns one record per SSL_read; lws reads on only while
// SSL_pending() (the rest of that record). Records of one message each
// used to be read one per loop turn, each decided and answered alone
// (10x the CPU per action, docs/PERFORMANCE.md "TLS"); readmore.c fills
// lws's buffer from the records already in the socket. Filling it is what
// movexd_reads_again_total counts: with ~100 B records it never grows
// unless several records go into one read.
test('TLS with one record per message: records already arrived are read together (lws\'s buffer filled), every request answered once, in order', async () => {
  await withDaemon({ conf: conf([`tls_cert_file ${CERT.cert}`, `tls_key_file ${CERT.key}`]) }, async (d) => {
    const h = await heldTls(d.port, CERT.ca);
    const { c, start } = h;
    const replies = () => parseFrames(c.buf, start).filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString('utf8')));
    await h.writeRecords([text({ type: 'hello', client: 'records' }), text({ type: 'subscribe', id: 1, room: 'rm:records' })]);
    await c.until(() => replies().some((m) => m.id === 1), 'the snapshot');
    const before0 = await readsAgain(d, CERT.ca);
    const N = 200;
    h.hold();
    await h.writeRecords(Array.from({ length: N }, (_, i) => text({ ...inc(10 + i, i + 1), room: 'rm:records' })));
    const bytes = h.release();
    assert.ok(bytes > 10 * 1024, `${N} records in one TCP write: ${bytes} B`);
    await c.until(() => replies().filter((m) => m.id >= 10).length >= N, `${N} acks`, TIMEOUT * 3);
    const acks = replies().filter((m) => m.id >= 10);
    assert.deepEqual(acks.map((m) => m.id), Array.from({ length: N }, (_, i) => 10 + i), 'one reply per request, in order');
    assert.ok(acks.every((m, i) => m.type === 'ack' && m.seq === i + 1), JSON.stringify(acks.find((m, i) => m.type !== 'ack' || m.seq !== i + 1)));
    assert.ok(await readsAgain(d, CERT.ca) > before0, 'several records went into one of lws\'s 1 KiB reads');
    c.sock.destroy();
    h.tcp.destroy();
  });
});

// More records at once than one loop turn reads (32 reads of 1 KiB), and
// records that wait while the connection is paused by backpressure: every
// request is still answered (none may wait in OpenSSL's buffers unseen).
test('TLS: a burst of records larger than a turn\'s reads, and bursts that wait out a backpressure pause (a record per message, then one record for all), are answered in full', async () => {
  await withDaemon({ conf: conf([`tls_cert_file ${CERT.cert}`, `tls_key_file ${CERT.key}`, 'max_queue_bytes 256k']) }, async (d) => {
    const h = await heldTls(d.port, CERT.ca);
    const { c, start } = h;
    const replies = () => parseFrames(c.buf, start).filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString('utf8')));
    await h.writeRecords([text({ type: 'hello', client: 'records2' }), text({ type: 'subscribe', id: 1, room: 'rm:big' })]);
    await c.until(() => replies().some((m) => m.id === 1), 'the snapshot');
    for (const N of [290, 300, 310, 330, 370]) { // ~32-41 KB: the end of a turn's reads falls in different records
      const base = 1000 * N;
      h.hold();
      await h.writeRecords(Array.from({ length: N }, (_, i) => text({ type: 'ping', id: base + i })));
      h.release();
      await c.until(() => replies().filter((m) => m.id >= base && m.id < base + N).length >= N, `${N} pongs`, TIMEOUT * 3);
    }
    // a 50 KB room, then 60 gets (~3 MB of replies) as 60 records in one write
    await h.writeRecords([text({ type: 'action', id: 2, room: 'rm:big', n: 1, action: { type: 'patch', payload: [{ op: 'add', path: '/big', value: 'z'.repeat(50000) }] } })]);
    await c.until(() => replies().some((m) => m.id === 2), 'the ack of the 50 KB state');
    const GETS = 60;
    h.hold();
    await h.writeRecords(Array.from({ length: GETS }, (_, i) => text({ type: 'get', id: 100 + i, room: 'rm:big' })));
    h.release();
    await c.until(() => replies().filter((m) => m.id >= 100 && m.id < 100 + GETS).length >= GETS, `${GETS} snapshots`, TIMEOUT * 3);
    const got = replies().filter((m) => m.id >= 100 && m.id < 100 + GETS);
    assert.deepEqual(got.map((m) => m.id), Array.from({ length: GETS }, (_, i) => 100 + i));
    assert.ok(got.every((m) => m.type === 'snapshot' && m.state.big.length === 50000));
    // the same 60 gets in ONE record (4 KB, more than lws's 1 KiB read):
    // the pause comes with plaintext left in OpenSSL (SSL_pending > 0) -
    // lws 4.1.6 spun on that before the SSL_pending wrapper, whatever the
    // read size
    await h.writeRecords([Buffer.concat(Array.from({ length: GETS }, (_, i) => text({ type: 'get', id: 200 + i, room: 'rm:big' })))]);
    await c.until(() => replies().filter((m) => m.id >= 200 && m.id < 200 + GETS).length >= GETS, `${GETS} snapshots (one record)`, TIMEOUT * 3);
    assert.ok(replies().filter((m) => m.id >= 200 && m.id < 200 + GETS).every((m) => m.type === 'snapshot' && m.state.big.length === 50000));
    c.sock.destroy();
    h.tcp.destroy();
  });
});

// A connection paused by backpressure (its replies fill half of
// max_queue_bytes) stops being read by lws, while the rest of its
// requests may already be read ahead out of the socket (the socket is
// then empty, so poll will not report it again). Once its replies drain
// it must be served from what was read ahead: all gets answered.
test('paused by backpressure with requests read ahead: resumes when the replies drain, every get answered', async () => {
  await withDaemon({ conf: conf(['max_queue_bytes 256k']) }, async (d) => {
    const { c, start } = await rawWebSocket(d);
    c.write(Buffer.concat([text({ type: 'hello', client: 'paused' }), text({ type: 'subscribe', id: 1, room: 'rm:big' }),
      text({ type: 'action', id: 2, room: 'rm:big', n: 1, action: { type: 'patch', payload: [{ op: 'add', path: '/big', value: 'z'.repeat(50000) }] } })]));
    const replies = () => parseFrames(c.buf, start).filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString('utf8')));
    await c.until(() => replies().some((m) => m.id === 2), 'the ack of the 50 KB state');
    assert.equal(replies().find((m) => m.id === 2).type, 'ack');
    const pauses0 = Number(/^movexd_read_pauses_total (\d+)$/m.exec((await httpRequest(d, { path: '/metrics' })).body)[1]);
    const GETS = 60; // ~3 KB of requests, ~3 MB of replies
    c.write(Buffer.concat(Array.from({ length: GETS }, (_, i) => text({ type: 'get', id: 100 + i, room: 'rm:big' }))));
    await c.until(() => parseFrames(c.buf, start).filter((f) => f.opcode === 1).length >= GETS + 3, `${GETS} snapshots`, TIMEOUT * 3);
    const got = replies().filter((m) => m.id >= 100);
    assert.deepEqual(got.map((m) => m.id), Array.from({ length: GETS }, (_, i) => 100 + i));
    assert.ok(got.every((m) => m.type === 'snapshot' && m.state.big.length === 50000));
    const pauses = Number(/^movexd_read_pauses_total (\d+)$/m.exec((await httpRequest(d, { path: '/metrics' })).body)[1]);
    assert.ok(pauses > pauses0, 'the connection was paused (backpressure) on the way');
    c.sock.destroy();
  });
});
