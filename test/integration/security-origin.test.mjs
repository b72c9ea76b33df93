// Where the daemon listens and which browser pages may talk to it:
// auth none is refused on a non-loopback address unless
// allow_insecure_listen yes (then a warning is logged); the Origin check
// (allowed_origins, the loopback default, the off-loopback same-origin
// default) closes unwanted pages with 4003 before any message is handled.
// Every connection goes to 127.0.0.1, also when the daemon binds 0.0.0.0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TIMEOUT, Client, withDaemon, runDaemonToExit, withTimeout, makeConf } from './lib.mjs';

// A lib.mjs Client whose WebSocket gets extra options (here: an Origin).
function clientWith(url, wsOpts) {
  return new Client(url, { wsOpts });
}
async function connectOrigin(d, origin, url = d.url) {
  const c = clientWith(url, origin === undefined ? {} : { origin });
  await withTimeout(c.opened, TIMEOUT, 'connect');
  return c;
}

// An origin that may talk: hello works, ping works.
async function expectServed(d, origin, what) {
  const c = await connectOrigin(d, origin);
  const w = await c.hello();
  assert.equal(w.type, 'welcome', `${what}: ${JSON.stringify(w)}`);
  assert.equal((await c.request({ type: 'ping' })).type, 'pong', what);
  await c.close();
}
// An origin that may not: closed with 4003. With `sendHello` a hello goes
// out as soon as the socket opens and must not be answered.
async function expectRefused(d, origin, what, { sendHello = false } = {}) {
  const c = await connectOrigin(d, origin);
  if (sendHello) c.send({ type: 'hello', client: 'victim', id: 1 });
  const closed = await c.closed;
  assert.deepEqual(c.all, [], `${what}: nothing is answered: ${JSON.stringify(c.all)}`);
  assert.equal(closed.code, 4003, `${what}: ${JSON.stringify(closed)}`);
  return closed;
}

let KEYS, SECRET_FILE;
before(() => {
  KEYS = mkdtempSync(join(tmpdir(), 'movexd-sec-origin-'));
  SECRET_FILE = join(KEYS, 'secret');
  writeFileSync(SECRET_FILE, randomBytes(48).toString('base64url'), { mode: 0o600 });
});
after(() => rmSync(KEYS, { recursive: true, force: true }));

test('auth none on a non-loopback address (--listen 0.0.0.0:0) -> exit 1 explaining why', async () => {
  for (const listen of ['0.0.0.0:0', '*:0']) {
    const dir = mkdtempSync(join(tmpdir(), 'movexd-sec-listen-'));
    try {
      const r = await runDaemonToExit({ dir, conf: makeConf(), args: ['--listen', listen] });
      assert.equal(r.code, 1, `${listen}: ${r.stderr}`);
      assert.match(r.stderr, /auth none/, 'the message says what is wrong');
      assert.match(r.stderr, /non-loopback|refusing to listen|0\.0\.0\.0|\*/, 'the message names the address problem');
      assert.match(r.stderr, /auth jwt/, 'the message names the way out');
      assert.match(r.stderr, /allow_insecure_listen/);
      assert.doesNotMatch(r.stderr, /event=listening/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('auth none + allow_insecure_listen yes on 0.0.0.0: starts, logs event=insecure, serves', async () => {
  const conf = makeConf({ global: ['allow_insecure_listen yes'] });
  await withDaemon({ conf, args: ['--listen', '0.0.0.0:0'] }, async (d) => {
    assert.match(d.stderr, /warn event=insecure /);
    assert.match(d.stderr, /event=listening addr=0\.0\.0\.0 /);
    const c = await Client.connect(d.url); // 127.0.0.1 only
    assert.equal((await c.hello('lan')).client, 'lan');
    assert.equal((await c.request({ type: 'subscribe', room: 'todo:lan' })).type, 'snapshot');
    await c.close();
  });
  // On loopback nothing is refused and nothing is logged about it.
  await withDaemon({ conf: makeConf() }, async (d) => {
    assert.doesNotMatch(d.stderr, /event=insecure|event=refused/);
  });
});

test('allowed_origins http://good.example: good and no Origin work; evil, look-alikes and "null" are closed with 4003 and never answered', async () => {
  const conf = makeConf({ global: ['allowed_origins http://good.example'] });
  await withDaemon({ conf }, async (d) => {
    await expectServed(d, 'http://good.example', 'listed origin');
    await expectServed(d, undefined, 'no Origin (not a browser)');
    const refused = [
      'http://evil.example',
      'http://good.example.evil.example', // prefix match must not pass
      'http://good.exampl',
      'https://good.example', // other scheme: another origin
      'http://good.example:8080', // other port: another origin
      'null', // sandboxed iframes, file:// pages
    ];
    for (const o of refused) await expectRefused(d, o, `Origin ${o}`);
    // A hello sent at once is not processed: no welcome, no event=hello.
    const before_ = (d.stderr.match(/event=hello /g) || []).length;
    await expectRefused(d, 'http://evil.example', 'evil origin sending hello', { sendHello: true });
    assert.equal((d.stderr.match(/event=hello /g) || []).length, before_, 'the refused connection\'s hello was not handled');
    assert.match(d.stderr, /event=origin_refused/);
    // the good page still works afterwards
    await expectServed(d, 'http://good.example', 'listed origin, again');
  });
});

test('allowed_origins with a list, and with *', async () => {
  const conf = makeConf({ global: ['allowed_origins "https://app.example.com, https://admin.example.com http://localhost:3000"'] });
  await withDaemon({ conf }, async (d) => {
    for (const o of ['https://app.example.com', 'https://admin.example.com', 'http://localhost:3000'])
      await expectServed(d, o, `listed ${o}`);
    for (const o of ['https://evil.example.com', 'https://app.example.co', 'http://localhost:3001', 'https://app.example.com,'])
      await expectRefused(d, o, `unlisted ${o}`);
  });
  await withDaemon({ conf: makeConf({ global: ['allowed_origins *'] }) }, async (d) => {
    for (const o of ['http://evil.example', 'null', 'https://anything.example:1234'])
      await expectServed(d, o, `* allows ${o}`);
  });
});

test('default policy on loopback: any Origin is allowed', async () => {
  await withDaemon({ conf: makeConf() }, async (d) => {
    for (const o of ['http://evil.example', 'null', `http://127.0.0.1:${d.port}`, undefined])
      await expectServed(d, o, `loopback default, Origin ${o}`);
  });
});

test('default policy off loopback (0.0.0.0 with auth jwt): same origin only', async () => {
  const conf = `log_level info\nauth jwt\nauth_hs256_secret_file ${SECRET_FILE}\nroom default {\n    create_on_subscribe yes\n}\n`;
  await withDaemon({ conf, args: ['--listen', '0.0.0.0:0'] }, async (d) => {
    assert.doesNotMatch(d.stderr, /event=insecure/);
    // ws sends Host: 127.0.0.1:PORT
    await expectServed(d, `http://127.0.0.1:${d.port}`, 'the page\'s own origin');
    await expectServed(d, undefined, 'no Origin');
    for (const o of [
      'http://evil.example',
      `http://127.0.0.1:${d.port + 1 > 65535 ? 1 : d.port + 1}`, // other port
      `http://127.0.0.1:${d.port}.evil.example`,
      `http://evil.example/127.0.0.1:${d.port}`,
      `http://localhost:${d.port}`, // same machine, but another origin than the Host the page used
      'null',
    ]) await expectRefused(d, o, `off-loopback default, Origin ${o}`);
    await expectRefused(d, 'http://evil.example', 'evil origin sending hello', { sendHello: true });
  });
});
