// The HTTP side of the listener and WebSocket handshake variants.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { withDaemon, connectHello, Client, patchAction, withTimeout, TIMEOUT } from './lib.mjs';

function get(d, path, headers = {}) {
  return withTimeout(new Promise((res, rej) => {
    const req = httpRequest({ host: '127.0.0.1', port: d.port, path, method: 'GET', headers, agent: false }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c) => { body += c; });
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body }));
    });
    req.on('error', rej);
    req.end();
  }), TIMEOUT, `GET ${path}`);
}

test('GET /healthz -> 200 ok; other paths -> 404', async () => {
  await withDaemon({}, async (d) => {
    const h = await get(d, '/healthz');
    assert.equal(h.status, 200);
    assert.equal(h.body.trim(), 'ok');
    for (const p of ['/nope', '/ws', '/healthz/x', '/healthzz', '/demo/.hidden', '/demo/nope.js', '/movex.jsx']) {
      const r = await get(d, p);
      assert.equal(r.status, 404, `GET ${p}`);
    }
    // the client library and the demo, from client_dir (./client here)
    const js = await get(d, '/movex.js');
    assert.equal(js.status, 200);
    assert.match(js.body, /export function connect/);
    const home = await get(d, '/');
    assert.equal(home.status, 200);
    assert.match(home.body, /<html/i);
    // Repeated requests keep working, and WebSockets still do.
    for (let i = 0; i < 5; i++) assert.equal((await get(d, '/healthz')).status, 200);
    const c = await connectHello(d, 'after-http');
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    await c.close();
  });
});

test('WebSocket upgrade on a path other than /ws -> closed with 1008', async () => {
  await withDaemon({}, async (d) => {
    for (const path of ['/other', '/', '/ws/x', '/wss']) {
      const c = await Client.connect(`ws://127.0.0.1:${d.port}${path}`);
      c.send({ type: 'hello', client: 'lost' });
      const closed = await c.closed;
      assert.equal(closed.code, 1008, `path ${path}: close ${JSON.stringify(closed)}`);
      assert.ok(!c.all.some((m) => m.type === 'welcome'), `path ${path}: no welcome`);
    }
    const ok = await connectHello(d, 'right-path');
    assert.equal((await ok.request({ type: 'ping' })).type, 'pong');
    await ok.close();
  });
});

test('a WebSocket client offering no subprotocol is served fully', async () => {
  await withDaemon({}, async (d) => {
    const a = await Client.connect(d.url, { protocol: null });
    const b = await Client.connect(d.url); // movex.v1
    assert.equal(b.ws.protocol, 'movex.v1', 'the offered movex.v1 is accepted');
    const w = await a.hello('noproto');
    assert.equal(w.type, 'welcome');
    assert.equal(w.client, 'noproto');
    await b.hello('proto');
    const room = 'todo:noproto';
    for (const c of [a, b]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    const ack = await a.request(patchAction(room, 1, [{ op: 'add', path: '/x', value: 1 }]));
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    const f = await b.next((m) => m.type === 'fwd');
    assert.equal(f.client, 'noproto');
    const ack2 = await b.request(patchAction(room, 1, [{ op: 'inc', path: '/x', value: 1 }]));
    const f2 = await a.next((m) => m.type === 'fwd');
    assert.equal(f2.checksum, ack2.checksum, 'the no-subprotocol client receives fwds');
    assert.deepEqual((await a.request({ type: 'get', room })).state, { x: 2 });
    await a.close();
    await b.close();
  });
});

test('a connection that never sends hello is dropped after hello_timeout_ms', async () => {
  const conf = 'log_level info\nhello_timeout_ms 1s\nroom default {\n    create_on_subscribe yes\n}\n';
  await withDaemon({ conf }, async (d) => {
    const idle = await Client.connect(d.url);
    const started = Date.now();
    const closed = await idle.closed;
    assert.ok(Date.now() - started >= 500, 'not dropped immediately');
    assert.ok(typeof closed.code === 'number');
    // A connection that did send hello in time stays.
    const c = await connectHello(d, 'prompt');
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    await c.close();
  });
});
