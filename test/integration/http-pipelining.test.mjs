// HTTP requests as raw bytes: pipelined requests with and without bodies,
// chunked bodies, bodies on GET/HEAD, Expect: 100-continue, keep-alive then
// a WebSocket upgrade on one connection, pipelined admin POSTs (src/http.c,
// "Requests with a body"). Every request must be answered or its connection
// closed; after each case /healthz answers on a new connection, a WebSocket
// client is served, and SIGTERM stops the daemon (withDaemon's stop()).
// Before the fix, a GET and a POST with a 2-byte body in one write hung the
// whole daemon in libwebsockets (LWS_CALLBACK_HTTP_BODY_COMPLETION, forever).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'node:http';
import { withDaemon, connectHello, httpRequest } from './lib.mjs';
import { rawConnect, req, chunked, healthy, upgradeRequest, wsFrame, parseFrames, parseResponses } from './rawhttp.mjs';

const TOKEN = randomBytes(32).toString('base64');
const auth = ['Authorization', `Bearer ${TOKEN}`];

// A daemon with the admin API on; fn(d) runs the case, then the daemon must
// still serve HTTP and WebSockets and stop on SIGTERM.
async function withAdminDaemon(fn) {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-pipe-'));
  const file = join(dir, 'admin-token');
  writeFileSync(file, `${TOKEN}\n`);
  chmodSync(file, 0o600);
  const conf = `log_level info\nadmin_token_file ${file}\nroom default {\n    create_on_subscribe yes\n}\n`;
  try {
    await withDaemon({ conf }, async (d) => {
      await fn(d);
      assert.ok(await healthy(d.port), '/healthz answers afterwards');
      const c = await connectHello(d, 'after');
      assert.equal((await c.request({ type: 'ping' })).type, 'pong', 'WebSockets are served afterwards');
      await c.close();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Send `text` in one write; wait for the server to close the connection;
// the statuses of the answers received, in order.
async function sendExpectClose(d, text) {
  const c = await rawConnect(d.port);
  c.write(text);
  const rs = await c.waitClosed();
  return rs.map((r) => r.status);
}

// Admin actions need the room to exist: a WebSocket client creates it.
async function createRoom(d, room) {
  const c = await connectHello(d, `creator-${room}`);
  assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
  await c.close();
}

const body2 = req('POST', '/nope', { body: 'ab' });
const adminAction = (room, key) => req('POST', `/admin/rooms/${room}/actions`, {
  headers: [auth, ['Content-Type', 'application/json']],
  body: JSON.stringify({ key, action: { type: 'patch', payload: [{ op: 'inc', path: '/n', value: 1 }] } }),
});

// Each case: the bytes sent in one write, and the answers before the close.
const closeCases = [
  ['GET /healthz, then a pipelined POST with a 2-byte body (the reported hang)',
    req('GET', '/healthz') + body2, [200, 400]],
  ['POST, then a pipelined POST', body2 + body2, [404]],
  ['POST /healthz with a body', req('POST', '/healthz', { body: 'ab' }), [200]],
  ['GET /healthz, then a pipelined POST /healthz', req('GET', '/healthz') + req('POST', '/healthz', { body: 'ab' }), [200, 400]],
  ['an admin POST without a token (401), then a pipelined GET',
    req('POST', '/admin/rooms/todo:x/actions', { body: '{}' }) + req('GET', '/healthz'), [401]],
  ['GET /healthz, then a pipelined admin POST without a token',
    req('GET', '/healthz') + req('POST', '/admin/rooms/todo:x/actions', { body: '{}' }), [200, 400]],
  ['a chunked POST', req('POST', '/nope', { headers: [['Transfer-Encoding', 'chunked']], body: chunked('hello world') }), [404]],
  ['a chunked POST, then a pipelined GET',
    req('POST', '/nope', { headers: [['Transfer-Encoding', 'chunked']], body: chunked('hello') }) + req('GET', '/healthz'), [404]],
  ['GET /healthz, then a pipelined chunked POST',
    req('GET', '/healthz') + req('POST', '/nope', { headers: [['Transfer-Encoding', 'chunked']], body: chunked('hi') }), [200, 400]],
  ['GET with a body, then a pipelined GET', req('GET', '/healthz', { body: 'ab' }) + req('GET', '/healthz'), [200]],
  ['GET /healthz, then a pipelined GET with a body', req('GET', '/healthz') + req('GET', '/readyz', { body: 'xyz' }), [200, 400]],
  ['GET /movex.js with a body (no file for a request with a body)', req('GET', '/movex.js', { body: 'ab' }), [400]],
  ['DELETE with a body, then a pipelined POST', req('DELETE', '/nope', { body: 'abc' }) + body2, [404]],
  ['a POST with Content-Length 0, then a pipelined POST', req('POST', '/nope', { headers: [['Content-Length', '0']] }) + body2, [404]],
];

for (const [name, text, statuses] of closeCases) {
  test(`pipelining: ${name}: answered, then closed`, async () => {
    await withAdminDaemon(async (d) => {
      assert.deepEqual(await sendExpectClose(d, text), statuses);
    });
  });
}

test('pipelining: HEAD with a body is answered (no body) and the connection closed', async () => {
  await withAdminDaemon(async (d) => {
    const c = await rawConnect(d.port);
    c.write(req('HEAD', '/healthz', { body: 'ab' }) + req('GET', '/healthz'));
    await c.waitClosed();
    const text = c.buf.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.equal(text.match(/HTTP\/1\.1 /g).length, 1, text);
  });
});

test('pipelining: requests without a body stay pipelined on one kept-alive connection', async () => {
  await withAdminDaemon(async (d) => {
    const c = await rawConnect(d.port);
    c.write(req('GET', '/healthz') + req('GET', '/nope') + req('GET', '/readyz') + req('GET', '/healthz'));
    const rs = await c.waitResponses(4);
    assert.deepEqual(rs.map((r) => r.status), [200, 404, 200, 200]);
    assert.equal(rs[3].body, 'ok\n');
    assert.equal(c.isClosed, false, 'the connection stays open');
    // and it takes more
    c.write(req('GET', '/healthz'));
    assert.equal((await c.waitResponses(5))[4].status, 200);
    c.destroy();
  });
});

test('pipelining: two admin POSTs in one write: the first is applied once and answered, the second is not applied; sent alone it is', async () => {
  await withAdminDaemon(async (d) => {
    const room = 'todo:pipe';
    await createRoom(d, room);
    const statuses = await sendExpectClose(d, adminAction(room, 'k1') + adminAction(room, 'k2'));
    assert.deepEqual(statuses, [200]);
    const get = async () => JSON.parse((await httpRequest(d, { path: `/admin/rooms/${room}`, headers: { authorization: `Bearer ${TOKEN}` } })).body);
    assert.deepEqual((await get()).state, { n: 1 }, 'only the first action is applied');
    assert.deepEqual(await sendExpectClose(d, adminAction(room, 'k2')), [200]);
    assert.deepEqual((await get()).state, { n: 2 });
  });
});

test('pipelining: GET, then a pipelined authorized admin POST: 400, not applied, connection closed', async () => {
  await withAdminDaemon(async (d) => {
    const room = 'todo:pipe2';
    await createRoom(d, room);
    assert.deepEqual(await sendExpectClose(d, req('GET', '/healthz') + adminAction(room, 'k1')), [200, 400]);
    const r = await httpRequest(d, { path: `/admin/rooms/${room}`, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.deepEqual(JSON.parse(r.body).state, {}, 'the action was not applied');
  });
});

test('Expect: 100-continue: an admin POST gets 100 Continue, then its answer after the body', async () => {
  await withAdminDaemon(async (d) => {
    await createRoom(d, 'todo:exp');
    const body = JSON.stringify({ key: 'e1', action: { type: 'patch', payload: [{ op: 'add', path: '/x', value: 1 }] } });
    const c = await rawConnect(d.port);
    c.write(req('POST', '/admin/rooms/todo:exp/actions', {
      headers: [auth, ['Content-Length', String(body.length)], ['Expect', '100-continue']],
    }));
    await c.until((x) => parseResponses(x.buf).interim.length === 1, '100 Continue');
    assert.equal(parseResponses(c.buf).interim[0].status, 100);
    c.write(body);
    const rs = await c.waitClosed();
    assert.deepEqual(rs.map((r) => r.status), [200]);
    assert.equal(JSON.parse(rs[0].body).type, 'ack');
  });
});

test('Expect: 100-continue on a route that reads no body: the final answer at once, then the close', async () => {
  await withAdminDaemon(async (d) => {
    const c = await rawConnect(d.port);
    c.write(req('POST', '/nope', { headers: [['Content-Length', '5'], ['Expect', '100-continue']] }));
    const rs = await c.waitClosed();
    assert.deepEqual(rs.map((r) => r.status), [404]);
  });
});

test('keep-alive, then a WebSocket upgrade on the same connection: the session is served', async () => {
  await withAdminDaemon(async (d) => {
    const c = await rawConnect(d.port);
    c.write(req('GET', '/healthz'));
    await c.waitResponses(1);
    const before = c.buf.length;
    c.write(upgradeRequest());
    await c.until((x) => x.buf.indexOf('\r\n\r\n', before) > 0, '101 Switching Protocols');
    const end = c.buf.indexOf('\r\n\r\n', before) + 4;
    assert.match(c.buf.subarray(before, end).toString('latin1'), /^HTTP\/1\.1 101 /);
    c.write(wsFrame(1, JSON.stringify({ type: 'hello', client: 'raw' })));
    const frames = await c.until((x) => {
      const f = parseFrames(x.buf, end);
      return f.some((m) => m.opcode === 1) && f;
    }, 'welcome');
    const welcome = JSON.parse(frames.find((m) => m.opcode === 1).payload.toString('utf8'));
    assert.equal(welcome.type, 'welcome');
    assert.equal(welcome.client, 'raw');
    c.destroy();
  });
});

test('a keep-alive HTTP client: admin GET, then admin POST, then /healthz all succeed (each admin answer closes its connection)', async () => {
  await withAdminDaemon(async (d) => {
    await createRoom(d, 'todo:ka');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const headers = { authorization: `Bearer ${TOKEN}` };
      const g = await httpRequest(d, { path: '/admin/rooms', headers, agent });
      assert.equal(g.status, 200);
      assert.equal(g.headers.connection, 'close');
      const p = await httpRequest(d, {
        method: 'POST', path: '/admin/rooms/todo:ka/actions', headers, agent,
        body: { key: 'ka', action: { type: 'patch', payload: [{ op: 'add', path: '/x', value: 1 }] } },
      });
      assert.equal(p.status, 200, p.body);
      const h = await httpRequest(d, { path: '/healthz', agent });
      assert.equal(h.status, 200);
      const h2 = await httpRequest(d, { path: '/healthz', agent });
      assert.equal(h2.status, 200);
      assert.notEqual(h2.headers.connection, 'close', '/healthz keeps the connection alive');
    } finally {
      agent.destroy();
    }
  });
});
