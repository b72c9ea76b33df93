// The client library is importable from any origin (docs/PROTOCOL.md "HTTP
// on the same port"): /movex.js and /movex.d.ts carry
// access-control-allow-origin: *, and a CORS preflight for them is answered
// 204 on a connection that stays usable; other paths share nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { withDaemon, httpRequest, makeConf, ROOT } from './lib.mjs';

const conf = makeConf({ global: [`client_dir ${ROOT}/client`] });

test('the library files carry access-control-allow-origin: *; the demo and /healthz do not', async () => {
  await withDaemon({ conf }, async (d) => {
    for (const path of ['/movex.js', '/movex.d.ts']) {
      const r = await httpRequest(d, { path, headers: { origin: 'http://app.example' } });
      assert.equal(r.status, 200, path);
      assert.equal(r.headers['access-control-allow-origin'], '*', path);
      assert.ok(r.body.length > 1000);
    }
    for (const path of ['/', '/demo/app.js', '/healthz']) {
      const r = await httpRequest(d, { path, headers: { origin: 'http://app.example' } });
      assert.equal(r.status, 200, path);
      assert.equal(r.headers['access-control-allow-origin'], undefined, path);
    }
  });
});

test('OPTIONS (a CORS preflight) on the library: 204, no body, methods allowed; keep-alive goes on', async () => {
  await withDaemon({ conf }, async (d) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const headers = { origin: 'http://app.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-app' };
      for (const path of ['/movex.js', '/movex.d.ts']) {
        const r = await httpRequest(d, { method: 'OPTIONS', path, headers, agent });
        assert.equal(r.status, 204, path);
        assert.equal(r.body, '');
        assert.equal(r.headers['access-control-allow-origin'], '*');
        assert.match(r.headers['access-control-allow-methods'], /GET/);
        assert.equal(r.headers['access-control-allow-headers'], '*');
      }
      const after = await httpRequest(d, { path: '/movex.js', agent });
      assert.equal(after.status, 200, 'the same connection serves the next request');
      assert.match(after.body, /export function connect/);
    } finally {
      agent.destroy();
    }
  });
});
