// Requests libwebsockets 4.1.6 cannot parse (src/httpfail.c): its parser
// used to close the connection without any reply. Each now gets one JSON
// error with "connection: close" - 431 when the request line and headers
// outgrow lws's header space, else 400 - over plain TCP and TLS; a reply
// lws writes itself (its 403 page) is not followed by a second one; a peer
// that closes mid-request gets nothing; the daemon serves on throughout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { withDaemon, makeConf, makeTestCert, httpRequest, httpsGet, connectHello } from './lib.mjs';
import { rawConnect, rawConnectTls } from './rawhttp.mjs';

const WS = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n';

// Send text on a fresh connection, wait for the server's close; the
// responses and the raw text received.
async function exchange(open, text) {
  const c = await open();
  c.write(text);
  const responses = await c.waitClosed();
  return { responses, raw: c.buf.toString('latin1') };
}

function assertJsonError({ responses, raw }, status, code, what) {
  assert.equal(responses.length, 1, `${what}: ${JSON.stringify(raw.slice(0, 300))}`);
  const r = responses[0];
  assert.equal(r.status, status, what);
  assert.equal(r.headers['content-type'], 'application/json', what);
  assert.equal(r.headers.connection, 'close', what);
  const json = JSON.parse(r.body.toString());
  assert.equal(json.code, code, what);
  assert.ok(json.message.length > 10, what);
}

const CASES = [
  ['a %-escape decoding to NUL', 'GET /healthz%00 HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bad_request'],
  ['a NUL in a WebSocket path', `GET /ws%00 HTTP/1.1\r\nHost: x\r\n${WS}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, 400, 'bad_request'],
  ['a 64 KiB header', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(65536)}\r\n\r\n`, 431, 'too_large'],
  ['a 5 KB URL', `GET /${'a'.repeat(5000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431, 'too_large'],
  ['a WebSocket upgrade without Sec-WebSocket-Key', `GET /ws HTTP/1.1\r\nHost: x\r\n${WS}\r\n`, 400, 'bad_request'],
  ['a WebSocket upgrade over HTTP/1.0', `GET /ws HTTP/1.0\r\n${WS}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, 400, 'bad_request'],
  ['empty lines only', '\r\n\r\n', 400, 'bad_request'],
];

test('requests lws cannot parse get one JSON 400/431 and a close, not an empty reply; the daemon serves on', async () => {
  await withDaemon({ conf: makeConf() }, async (d) => {
    for (const [what, text, status, code] of CASES) {
      assertJsonError(await exchange(() => rawConnect(d.port), text), status, code, what);
      assert.equal((await httpRequest(d, { path: '/healthz' })).status, 200, `healthz after ${what}`);
    }
    // lws answers a bad %-escape itself (403): nothing is added behind it
    const own = await exchange(() => rawConnect(d.port), 'GET /healthz%zz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((own.raw.match(/HTTP\/1\.[01] /g) || []).length, 1, own.raw);
    assert.match(own.raw, /^HTTP\/1\.[01] 403 /);
    // a peer that sends half a request and leaves gets nothing (and no crash)
    const half = await rawConnect(d.port);
    half.write('GET /heal');
    half.destroy();
    // a kept-alive connection: a request served, then a second one that
    // cannot be parsed arrives in a read of its own
    const c = await rawConnect(d.port);
    c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.waitResponses(1);
    c.write('GET /healthz%00 HTTP/1.1\r\nHost: x\r\n\r\n');
    const both = await c.waitClosed();
    assert.deepEqual(both.map((r) => r.status), [200, 400]);
    // WebSocket clients are unaffected
    const ws = await connectHello(d, 'after');
    assert.equal((await ws.request({ type: 'subscribe', room: 'todo:after' })).type, 'snapshot');
    ws.close();
  });
});

test('over TLS too: a %00 URL and a 64 KiB header get their JSON error', async () => {
  const cert = makeTestCert();
  try {
    await withDaemon({ conf: makeConf({ global: [`tls_cert_file ${cert.cert}`, `tls_key_file ${cert.key}`] }) }, async (d) => {
      for (const [what, text, status, code] of [CASES[0], CASES[2]]) {
        assertJsonError(await exchange(() => rawConnectTls(d.port, cert.ca), text), status, code, `TLS: ${what}`);
      }
      assert.equal((await httpsGet(d, '/healthz', cert.ca)).status, 200);
    });
  } finally {
    rmSync(cert.dir, { recursive: true, force: true });
  }
});

// RFC 6455 4.2.2: a handshake for a version the server does not speak is
// refused with an HTTP error naming the version it does. lws 4.1.6 answered
// 101 to any Sec-WebSocket-Version (or none) and spoke 13 anyway.
test('a WebSocket upgrade for a version other than 13 (or none) gets 426 with Sec-WebSocket-Version: 13; 13 is upgraded', async () => {
  await withDaemon({ conf: makeConf() }, async (d) => {
    const up = (v) => `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${v === null ? '' : `Sec-WebSocket-Version: ${v}\r\n`}\r\n`;
    for (const v of ['99', '8', '', null]) {
      const { responses, raw } = await exchange(() => rawConnect(d.port), up(v));
      assert.equal(responses.length, 1, raw);
      assert.equal(responses[0].status, 426, raw);
      assert.equal(responses[0].headers['sec-websocket-version'], '13', raw);
      assert.equal(JSON.parse(responses[0].body).code, 'bad_request');
    }
    const ws = await connectHello(d, 'v13');
    assert.equal((await ws.request({ type: 'ping' })).type, 'pong');
    ws.close();
  });
});
