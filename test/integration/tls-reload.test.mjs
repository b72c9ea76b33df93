// TLS certificate reload on SIGHUP (src/tls.c mx_tls_reload): the
// certificate and key files named in the conf are read again; new
// connections get the new certificate, connections already open keep
// theirs and keep working. A certificate or key that cannot be used (not a
// certificate, a key that does not match, a switch of key type that the
// TLS context cannot make) is refused with a logged reason and the running
// certificate stays. Throwaway self-signed certificates (P-256, and one
// RSA) are made with the openssl CLI for each run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { TIMEOUT, Client, withDaemon, withTimeout, makeConf, patchAction } from './lib.mjs';

let DIR;
const PAIRS = {}; // name -> { cert, key (paths), pem (Buffer), fp (SHA-256 fingerprint) }

function makePair(name, serial, keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']) {
  const cert = join(DIR, `${name}-cert.pem`);
  const key = join(DIR, `${name}-key.pem`);
  execFileSync('openssl', [
    'req', '-x509', ...keyArgs, '-nodes', '-days', '1',
    '-subj', `/CN=movexd-reload-${name}`, '-set_serial', serial,
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'pipe' });
  const pem = readFileSync(cert);
  PAIRS[name] = { cert, key, pem, fp: new X509Certificate(pem).fingerprint256 };
}

before(() => {
  DIR = mkdtempSync(join(tmpdir(), 'movexd-tls-reload-'));
  makePair('a', '0x0a');
  makePair('b', '0x0b');
  makePair('rsa', '0x0c', ['-newkey', 'rsa:2048']);
  assert.notEqual(PAIRS.a.fp, PAIRS.b.fp);
});
after(() => rmSync(DIR, { recursive: true, force: true }));

// The files the daemon is configured with, in a directory of their own per
// test; `install` replaces them the way an operator (or certbot) would:
// write a new file, then rename it over the old one (null: remove it).
function liveFiles(tag) {
  const dir = mkdtempSync(join(DIR, `${tag}-`));
  return { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
}
function install(live, { cert, key }) {
  if (cert === null) rmSync(live.cert);
  else if (cert !== undefined) {
    writeFileSync(`${live.cert}.new`, cert);
    renameSync(`${live.cert}.new`, live.cert);
  }
  if (key !== undefined) {
    writeFileSync(`${live.key}.new`, key);
    renameSync(`${live.key}.new`, live.key);
  }
}
const tlsConf = (live) => makeConf({ global: [`tls_cert_file ${live.cert}`, `tls_key_file ${live.key}`] });

// SIGHUP; resolves with the log from the signal to the end of the reload.
async function sighup(d) {
  const from = d.stderr.length;
  d.proc.kill('SIGHUP');
  await d.waitLog(/event=(reloaded|reload_refused)[^\n]*\n/, TIMEOUT, from);
  return d.stderr.slice(from);
}

// A fresh TLS handshake (no verification): the certificate the server
// presents to a new connection.
function servedFingerprint(port) {
  return withTimeout(new Promise((res, rej) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' });
    s.once('secureConnect', () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      res(fp);
    });
    s.once('error', rej);
  }), TIMEOUT, 'TLS handshake');
}

// A lib.mjs Client over wss:// that records the certificate its TLS
// connection was set up with (c.fp).
function wssClient(url, wsOpts) {
  const c = new Client(url, { wsOpts });
  c.ws.on('upgrade', (r) => { c.fp = r.socket.getPeerCertificate().fingerprint256; });
  return c;
}

// Connect verifying against `pair` only (so this also proves which
// certificate is served), hello and subscribe.
async function verifiedClient(d, pair, name, room) {
  const c = wssClient(`wss://127.0.0.1:${d.port}/ws`, { ca: pair.pem, servername: 'localhost' });
  await c.opened;
  assert.equal((await c.hello(name)).client, name);
  assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
  return c;
}

test('SIGHUP after the certificate files change: new connections get the new certificate, an open connection keeps working', async () => {
  const live = liveFiles('ok');
  copyFileSync(PAIRS.a.cert, live.cert);
  copyFileSync(PAIRS.a.key, live.key);
  await withDaemon({ conf: tlsConf(live) }, async (d) => {
    const room = 'todo:tls-reload';
    assert.equal(await servedFingerprint(d.port), PAIRS.a.fp, 'certificate A before the reload');
    const old = await verifiedClient(d, PAIRS.a, 'old', room);
    assert.equal(old.fp, PAIRS.a.fp);
    let closedEarly = null;
    old.closed.then((e) => { closedEarly = e; });
    const ack1 = await old.request(patchAction(room, 1, [{ op: 'inc', path: '/n', value: 1 }]));
    assert.equal(ack1.type, 'ack', JSON.stringify(ack1));

    install(live, { cert: readFileSync(PAIRS.b.cert), key: readFileSync(PAIRS.b.key) });
    const log = await sighup(d);
    assert.match(log, /event=tls_reloaded cert=\S*cert\.pem/, `tls_reloaded logged:\n${log}`);
    assert.doesNotMatch(log, /tls_reload_failed/);

    // a new connection is served certificate B (and verifies against B only)
    assert.equal(await servedFingerprint(d.port), PAIRS.b.fp, 'certificate B after the reload');
    const fresh = await verifiedClient(d, PAIRS.b, 'fresh', room);
    assert.equal(fresh.fp, PAIRS.b.fp);
    // a client that trusts only A cannot connect any more
    const stale = wssClient(`wss://127.0.0.1:${d.port}/ws`, { ca: PAIRS.a.pem, servername: 'localhost' });
    await assert.rejects(stale.opened, /self[- ]signed|certificate|verify/i);

    // the connection opened before the reload is still open and served:
    // its action is acked and forwarded to the new connection
    assert.equal(closedEarly, null, 'the old connection was not closed');
    const ack2 = await old.request(patchAction(room, 2, [{ op: 'inc', path: '/n', value: 1 }]));
    assert.equal(ack2.type, 'ack', JSON.stringify(ack2));
    const f = await fresh.next((m) => m.type === 'fwd' && m.seq === ack2.seq, 'fwd of the old connection\'s action');
    assert.equal(f.checksum, ack2.checksum);
    assert.deepEqual((await old.request({ type: 'get', room })).state, { n: 2 });
    await old.close();
    await fresh.close();
  });
});

test('SIGHUP with an unusable certificate or key: refused with a logged reason, the running certificate keeps being served', async () => {
  const live = liveFiles('bad');
  copyFileSync(PAIRS.a.cert, live.cert);
  copyFileSync(PAIRS.a.key, live.key);
  await withDaemon({ conf: tlsConf(live) }, async (d) => {
    const room = 'todo:tls-bad';
    const old = await verifiedClient(d, PAIRS.a, 'old', room);
    let n = 0;
    const cases = [
      ['a certificate file that is not a certificate',
        { cert: '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n' }],
      ['an empty certificate file', { cert: '' }],
      ['a new certificate whose key has not been replaced yet (key does not match)',
        { cert: readFileSync(PAIRS.b.cert) }],
      ['a key file that is not a key', { cert: readFileSync(PAIRS.a.cert), key: 'garbage\n' }],
      ['a new key whose certificate has not been replaced yet (key does not match)',
        { key: readFileSync(PAIRS.b.key) }],
      ['a missing certificate file', { cert: null, key: readFileSync(PAIRS.a.key) }],
      // OpenSSL keeps one certificate per key type: taking the RSA pair
      // would leave the EC certificate A in place and still served
      ['a certificate of another key type (EC to RSA)',
        { cert: readFileSync(PAIRS.rsa.cert), key: readFileSync(PAIRS.rsa.key) }, /key type changes from EC to RSA/],
    ];
    for (const [what, files, reason = /./] of cases) {
      install(live, files);
      const log = await sighup(d);
      assert.match(log, /event=tls_reload_failed cert=\S+ .*reason="[^"]+"/, `${what}: a logged refusal with a reason:\n${log}`);
      assert.match(log, reason, what);
      assert.doesNotMatch(log, /event=tls_reloaded/, `${what}: not reported as reloaded`);
      // still certificate A, and a full verified session works on it
      assert.equal(await servedFingerprint(d.port), PAIRS.a.fp, `${what}: certificate A is still served`);
      const c = await verifiedClient(d, PAIRS.a, `new${n}`, room);
      const ack = await c.request(patchAction(room, 1, [{ op: 'inc', path: '/n', value: 1 }]));
      assert.equal(ack.type, 'ack', `${what}: ${JSON.stringify(ack)}`);
      await c.close();
      // the connection from before is untouched
      const ack0 = await old.request(patchAction(room, ++n, [{ op: 'inc', path: '/old', value: 1 }]));
      assert.equal(ack0.type, 'ack', `${what}: old connection: ${JSON.stringify(ack0)}`);
    }
    // a good pair after the failures is taken
    install(live, { cert: readFileSync(PAIRS.b.cert), key: readFileSync(PAIRS.b.key) });
    const log = await sighup(d);
    assert.match(log, /event=tls_reloaded/, log);
    assert.equal(await servedFingerprint(d.port), PAIRS.b.fp, 'certificate B after a good reload');
    await old.close();
  });
});
