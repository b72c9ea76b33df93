// TLS: with tls_cert_file/tls_key_file the port serves wss:// and https://
// only, TLS 1.2 or newer. A throwaway self-signed P-256 certificate is made
// with the openssl CLI for each run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import https from 'node:https';
import http from 'node:http';
import tls from 'node:tls';
import WebSocket from '../node_modules/ws/index.js';
import { TIMEOUT, Client, withDaemon, withTimeout, makeConf, patchAction, makeTestCert } from './lib.mjs';

let DIR, CERT, KEY, CA;
before(() => {
  ({ dir: DIR, cert: CERT, key: KEY, ca: CA } = makeTestCert());
});
after(() => rmSync(DIR, { recursive: true, force: true }));

const tlsConf = (extra = []) => makeConf({ global: [`tls_cert_file ${CERT}`, `tls_key_file ${KEY}`, ...extra] });

// A lib.mjs Client over wss:// (extra ws options: the CA, or none at all).
function wssClient(url, wsOpts) {
  return new Client(url, { wsOpts });
}

function get(mod, url, opts) {
  return withTimeout(new Promise((res, rej) => {
    const req = mod.get(url, opts, (r) => {
      let body = '';
      r.on('data', (x) => { body += x; });
      r.on('end', () => res({ status: r.statusCode, body, socket: r.socket }));
    });
    req.on('error', rej);
  }), TIMEOUT, `GET ${url}`);
}

// Resolves with the outcome of a TLS handshake with the given options.
function handshake(port, opts) {
  return withTimeout(new Promise((res) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: CA, servername: 'localhost', ...opts });
    s.once('secureConnect', () => {
      const r = { ok: true, protocol: s.getProtocol(), cipher: s.getCipher(), alpn: s.alpnProtocol };
      s.end();
      res(r);
    });
    s.once('error', (e) => res({ ok: false, error: e.code || e.message }));
  }), TIMEOUT, 'TLS handshake');
}

test('wss://: hello/create/subscribe/action/fwd over TLS, verified against the certificate', async () => {
  await withDaemon({ conf: tlsConf() }, async (d) => {
    assert.match(d.stderr, /event=listening .*tls=on ws=wss:\/\//);
    const url = `wss://127.0.0.1:${d.port}/ws`;
    const a = wssClient(url, { ca: CA, servername: 'localhost' }); // full verification
    const b = wssClient(url, { rejectUnauthorized: false });
    await a.opened;
    await b.opened;
    assert.equal((await a.hello('tls-a')).client, 'tls-a');
    assert.equal((await b.hello('tls-b')).client, 'tls-b');
    const room = 'todo:tls';
    const cr = await a.request({ type: 'create', room, state: { items: [] } });
    assert.equal(cr.type, 'created', JSON.stringify(cr));
    for (const c of [a, b]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    const ack = await a.request(patchAction(room, 1, [{ op: 'add', path: '/items/-', value: 'over tls' }]));
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    const f = await b.next((m) => m.type === 'fwd');
    assert.equal(f.checksum, ack.checksum);
    assert.deepEqual((await b.request({ type: 'get', room })).state, { items: ['over tls'] });
    // a message bigger than one TLS record (16 KiB) arrives whole
    const big = 'x'.repeat(100 * 1024);
    const ack2 = await b.request(patchAction(room, 1, [{ op: 'add', path: '/big', value: big }]));
    assert.equal(ack2.type, 'ack');
    const f2 = await a.next((m) => m.type === 'fwd' && m.seq === ack2.seq);
    assert.equal(f2.action.payload[0].value.length, big.length);
    await a.close();
    await b.close();
  });
});

test('https://.../healthz answers 200 over TLS; the handshake is TLS 1.2+ with an AEAD suite and ALPN http/1.1', async () => {
  await withDaemon({ conf: tlsConf() }, async (d) => {
    const r = await get(https, `https://127.0.0.1:${d.port}/healthz`, { ca: CA, servername: 'localhost', agent: false });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok\n');
    const h = await handshake(d.port, { ALPNProtocols: ['h2', 'http/1.1'] });
    assert.ok(h.ok, JSON.stringify(h));
    assert.ok(['TLSv1.2', 'TLSv1.3'].includes(h.protocol), h.protocol);
    assert.match(h.cipher.name, /GCM|CHACHA20/, `AEAD suite: ${h.cipher.name}`);
    assert.equal(h.alpn, 'http/1.1', 'no h2');
    // TLS 1.2 (forced) gets a forward-secret ECDHE AEAD suite
    const h12 = await handshake(d.port, { maxVersion: 'TLSv1.2' });
    assert.ok(h12.ok, JSON.stringify(h12));
    assert.equal(h12.protocol, 'TLSv1.2');
    assert.match(h12.cipher.name, /^ECDHE-ECDSA-(AES\d+-GCM|CHACHA20-POLY1305)/, h12.cipher.name);
    // CBC-only and non-forward-secret suites are refused
    for (const ciphers of ['ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA', 'AES128-GCM-SHA256:AES256-GCM-SHA384']) {
      const w = await handshake(d.port, { maxVersion: 'TLSv1.2', ciphers });
      assert.equal(w.ok, false, `TLS 1.2 with only ${ciphers} must fail: ${JSON.stringify(w)}`);
    }
  });
});

test('TLS 1.1 and 1.0 are refused; plain ws:// and http:// to the TLS port fail; the daemon keeps serving', async () => {
  await withDaemon({ conf: tlsConf() }, async (d) => {
    // node's own default minimum is 1.2: lower it so the client offers v
    const old = (v) => ({ minVersion: 'TLSv1', maxVersion: v, ciphers: 'DEFAULT:@SECLEVEL=0' });
    // control: this client does complete a TLS 1.1 handshake with a server
    // that allows it, so a failure below is the daemon's refusal
    const ctl = tls.createServer({ key: readFileSync(KEY), cert: CA, ...old('TLSv1.3') }, (s) => s.end());
    await new Promise((r) => ctl.listen(0, '127.0.0.1', r));
    const hc = await handshake(ctl.address().port, old('TLSv1.1'));
    ctl.close();
    assert.ok(hc.ok && hc.protocol === 'TLSv1.1', `control handshake: ${JSON.stringify(hc)}`);
    for (const v of ['TLSv1.1', 'TLSv1']) {
      const h = await handshake(d.port, old(v));
      assert.equal(h.ok, false, `${v} must be refused: ${JSON.stringify(h)}`);
    }
    // plain WebSocket to the TLS port
    const plain = new WebSocket(`ws://127.0.0.1:${d.port}/ws`, ['movex.v1']);
    const outcome = await withTimeout(new Promise((res) => {
      plain.once('open', () => res('open'));
      plain.once('error', (e) => res(`error: ${e.message}`));
      plain.once('unexpected-response', (_req, r) => res(`http ${r.statusCode}`));
    }), TIMEOUT, 'plain ws to the TLS port');
    assert.notEqual(outcome, 'open', 'a plain ws:// connection must not open');
    plain.terminate();
    // plain HTTP
    const ph = await get(http, `http://127.0.0.1:${d.port}/healthz`, { agent: false }).then((r) => `status ${r.status}`, (e) => `error ${e.code || e.message}`);
    assert.doesNotMatch(ph, /status 200/, `plain http must not be served: ${ph}`);
    // wss:// with an unverifiable certificate is refused by a verifying client
    const v = wssClient(`wss://127.0.0.1:${d.port}/ws`, {});
    await assert.rejects(v.opened, /self[- ]signed|certificate/i);
    // still serving
    const c = wssClient(`wss://127.0.0.1:${d.port}/ws`, { ca: CA, servername: 'localhost' });
    await c.opened;
    assert.equal((await c.hello('after')).client, 'after');
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    await c.close();
  });
});

test('tls_cert_file that does not exist, or a key that does not match: the daemon does not start', async () => {
  const other = join(DIR, 'other-key.pem');
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', other], { stdio: 'pipe' });
  for (const [conf, what] of [
    [makeConf({ global: [`tls_cert_file ${join(DIR, 'missing.pem')}`, `tls_key_file ${KEY}`] }), 'missing certificate'],
    [makeConf({ global: [`tls_cert_file ${CERT}`, `tls_key_file ${join(DIR, 'missing-key.pem')}`] }), 'missing key'],
    [makeConf({ global: [`tls_cert_file ${CERT}`, `tls_key_file ${other}`] }), 'key does not match the certificate'],
  ]) {
    let started = null;
    try {
      started = await withDaemon({ conf }, async (d) => d.port);
    } catch (e) {
      assert.ok(e.code !== 0 && e.code !== undefined, `${what}: exits non-zero (${e.code}): ${e.message.slice(0, 300)}`);
      continue;
    }
    assert.fail(`${what}: the daemon started (port ${started})`);
  }
});

// A conf with tls_cert_file but no tls_key_file must not produce a daemon
// that says tls=on and then fails every handshake: either it refuses to
// start (naming the missing key), or it serves TLS.
test('tls_cert_file without tls_key_file: refused at start, or a working TLS port; never a listening port that fails every handshake', async () => {
  const combined = join(DIR, 'cert-and-key.pem');
  execFileSync('sh', ['-c', `cat "${CERT}" "${KEY}" > "${combined}"`]);
  for (const [cert, what] of [[CERT, 'certificate only'], [combined, 'certificate and key in one file']]) {
    let outcome;
    try {
      outcome = await withDaemon({ conf: makeConf({ global: [`tls_cert_file ${cert}`] }) }, async (d) => {
        const h = await handshake(d.port, {});
        return { started: true, handshake: h, log: d.stderr.split('\n').filter((l) => /listening|tls/.test(l)).join(' | ') };
      });
    } catch (e) {
      outcome = { started: false, code: e.code, stderr: e.stderr };
    }
    if (!outcome.started) {
      assert.ok(outcome.code !== 0, `${what}: refused with a non-zero exit`);
      assert.match(outcome.stderr, /tls_key_file|key/i, `${what}: the message names the missing key: ${outcome.stderr}`);
    } else {
      assert.ok(outcome.handshake.ok, `${what}: the daemon started (${outcome.log}) but a TLS handshake fails: ${JSON.stringify(outcome.handshake)}`);
    }
  }
});
