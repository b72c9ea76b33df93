// The batched send path (src/session.c, docs/PERFORMANCE.md): each frame
// carries its WebSocket header from the start, and a writable connection's
// queued frames leave in one gathered write; when the socket takes only part
// of it, the rest of the frame in progress is handed to libwebsockets, so its
// own frames (pongs, the close) never land inside ours. These tests check
// what a client sees: every frame whole and in order, over plain TCP and TLS,
// with pings answered while the socket is full (a Python reader with a tiny
// receive window); and that writes are really gathered
// (movexd_send_calls_total far below movexd_frames_out_total).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checksum } from '../../client/movex.js';
import https from 'node:https';
import { Client, withDaemon, withTimeout, makeTestCert, connectHello, patchAction, makeConf, waitFor, httpRequest, TIMEOUT } from './lib.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
let DIR, CERT, KEY, CA;
before(() => {
  ({ dir: DIR, cert: CERT, key: KEY, ca: CA } = makeTestCert());
});
after(() => rmSync(DIR, { recursive: true, force: true }));

// A counter from /metrics (over https when the daemon serves TLS).
async function metric(d, name) {
  const r = d.ca ? await httpsGet(`https://localhost:${d.port}/metrics`, d.ca) : await httpRequest(d, { path: '/metrics' });
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(r.body);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

function httpsGet(url, ca) {
  return withTimeout(new Promise((res, rej) => {
    https.get(url, { ca, agent: false }, (r) => {
      let body = '';
      r.on('data', (x) => { body += x; });
      r.on('end', () => res({ status: r.statusCode, body }));
    }).on('error', rej);
  }), TIMEOUT, `GET ${url}`);
}

// fwds of one room, as received: seq 1..n, each linked to the one before.
function assertChain(fwds, n, what) {
  assert.equal(fwds.length, n, `${what}: ${n} fwds`);
  for (let i = 0; i < n; i++) {
    assert.equal(fwds[i].seq, i + 1, `${what}: fwd ${i} seq`);
    if (i) assert.equal(fwds[i].prev, fwds[i - 1].checksum, `${what}: fwd ${i + 1} links to ${i}`);
  }
}

test('a burst of fwds to 10 subscribers leaves in gathered writes, complete and in order', async () => {
  await withDaemon({ conf: makeConf({ global: ['rate_burst 100000', 'rate_messages_per_sec 100000'] }) }, async (d) => {
    const room = 'todo:burst';
    const w = await connectHello(d, 'writer');
    const subs = [];
    for (let i = 0; i < 10; i++) subs.push(await connectHello(d, `sub${i}`));
    for (const c of [w, ...subs]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    const frames0 = await metric(d, 'movexd_frames_out_total');
    const calls0 = await metric(d, 'movexd_send_calls_total');
    const N = 400;
    for (let n = 1; n <= N; n++) w.send({ ...patchAction(room, n, [{ op: 'inc', path: '/count', value: 1 }]), id: n });
    await waitFor(() => w.all.filter((m) => m.type === 'ack').length === N, `${N} acks`, TIMEOUT * 3);
    for (const s of subs) await waitFor(() => s.all.filter((m) => m.type === 'fwd').length === N, `${N} fwds`, TIMEOUT * 3);
    const acks = w.all.filter((m) => m.type === 'ack');
    acks.forEach((a, i) => assert.equal(a.n, i + 1, 'acks in the order sent'));
    for (const s of subs) assertChain(s.all.filter((m) => m.type === 'fwd'), N, s.client);
    assert.equal(acks[N - 1].checksum, checksum({ count: N }));
    const frames = (await metric(d, 'movexd_frames_out_total')) - frames0;
    const calls = (await metric(d, 'movexd_send_calls_total')) - calls0;
    assert.ok(frames >= 11 * N, `${frames} frames counted (>= ${11 * N})`);
    // One write per frame was the old path; a burst like this one is
    // gathered into writes of many frames each.
    assert.ok(calls * 4 <= frames, `${calls} writes carried ${frames} frames (expected at least 4 per write)`);
    for (const c of [w, ...subs]) await c.close();
  });
});

// A reader on a connection with a small MSS (small-mss-reader.py: Node
// cannot set TCP_MAXSEG) that stops reading while 16 fwds of 300 KB are
// queued for it: the server's
// socket fills and its writes end inside frames (movexd_send_partials_total
// moves). Then the reader sends pings, which lws answers with pongs it
// writes itself, while our frames are half sent. When it reads again it must
// get every fwd whole and in order, and the pongs between frames (a pong
// written inside a half-sent fwd would corrupt the stream).
async function smallMssReader(d, { tls = false } = {}) {
  const room = 'todo:bulk';
  const url = tls ? `wss://localhost:${d.port}/ws` : d.url;
  const w = await Client.connect(url, tls ? { wsOpts: { ca: CA } } : {});
  await w.hello('bulk-writer');
  assert.equal((await w.request({ type: 'subscribe', room })).type, 'snapshot');
  const py = spawn('python3', [join(HERE, 'small-mss-reader.py'), String(d.port), room, 'bulk-reader',
    ...(tls ? [CERT] : [])], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  py.stdout.on('data', (x) => { out += x; });
  py.stderr.on('data', (x) => { err += x; });
  const exited = new Promise((res) => py.on('close', res));
  const line = (n) => waitFor(() => out.split('\n').length > n && out.split('\n')[n - 1], `reader line ${n} (stderr: ${err})`, TIMEOUT * 3);
  try {
    assert.equal(await line(1), 'ready');
    const partials0 = await metric(d, 'movexd_send_partials_total');
    const N = 16, BLOB = 300000, PINGS = 20;
    for (let n = 1; n <= N; n++) {
      w.send({ ...patchAction(room, n, [{ op: 'add', path: '/blob', value: `${n}:${'y'.repeat(BLOB)}` }]), id: n });
      if (n % 4 === 0) await w.next((m) => m.id === n, `ack ${n}`);
    }
    await waitFor(async () => (await metric(d, 'movexd_send_partials_total')) > partials0,
      'a write to the reader that ended inside a frame', TIMEOUT * 3);
    const in0 = await metric(d, 'movexd_messages_in_total');
    py.stdin.write(`ping ${PINGS}\n`);
    assert.equal(await line(2), 'pinged');
    // the reader's message after its pings was handled: lws has the pings
    await waitFor(async () => (await metric(d, 'movexd_messages_in_total')) > in0, 'the pings reached the server');
    py.stdin.write(`read ${N}\n`);
    const res = JSON.parse(await line(3));
    assert.deepEqual(res.errors, [], 'every frame whole and well-formed');
    // lws answers the first ping at once and drops those that arrive while
    // a pong is pending (RFC 6455 5.5.3 allows skipping)
    assert.equal(res.pongs[0], 'p0', `pongs ${res.pongs}`);
    res.pongs.forEach((p, i) => i && assert.ok(Number(p.slice(1)) > Number(res.pongs[i - 1].slice(1)), 'pongs in ping order'));
    assert.ok(res.order.indexOf('pong') < res.order.lastIndexOf('fwd'), 'a pong arrived between fwds (written while a fwd was half sent)');
    assert.equal(res.fwds.length, N);
    res.fwds.forEach(([seq, prev, sum, len], i) => {
      assert.equal(seq, i + 1, `fwd ${i + 1} in order`);
      if (i) assert.equal(prev, res.fwds[i - 1][2], `fwd ${i + 1} links to ${i}`);
      assert.equal(len, String(i + 1).length + 1 + BLOB, `fwd ${i + 1} whole`);
    });
    assert.equal(res.fwds[N - 1][2], checksum({ blob: `${N}:${'y'.repeat(BLOB)}` }));
    assert.equal(await exited, 0, `reader exit (stderr: ${err})`);
  } finally {
    py.kill('SIGKILL');
    await w.close();
  }
}

const bulkConf = (extra = []) => makeConf({ global: ['max_queue_bytes 64m', ...extra], room: ['max_state_bytes 1m'] });

test('plain TCP: writes that end inside a frame; every frame arrives whole, in order, with pongs between frames', async () => {
  await withDaemon({ conf: bulkConf() }, (d) => smallMssReader(d));
});

test('TLS: the same through gathered SSL_writes', async () => {
  await withDaemon({ conf: bulkConf([`tls_cert_file ${CERT}`, `tls_key_file ${KEY}`]) }, async (d) => {
    d.ca = CA;
    await smallMssReader(d, { tls: true });
  });
});
