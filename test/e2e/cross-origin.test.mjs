// An app served from another origin (a second local HTTP server, another
// port) imports /movex.js from the daemon - allowed by its CORS header -
// and uses it: join, patch, presence. With auth jwt, join() with a bad
// static token rejects with code "unauthorized" (it used to hang while the
// library retried the same token), and the connection stops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { e2e, TEST_TIMEOUT, WAIT, ROOT } from './helpers.mjs';
import { startDaemon, makeConf } from '../integration/lib.mjs';

// The app's page: imports the library from `lib` (the daemon's origin).
const PAGE = `<!doctype html><meta charset="utf-8"><title>app</title>
<script type="module">
  window.run = async (lib, url, token, room) => {
    const { connect } = await import(lib + '/movex.js');
    const conn = connect(url, { token, client: token ? undefined : 'x-origin', clientLock: false });
    try {
      const r = await conn.join(room);
      const ack = await r.patch([{ op: 'inc', path: '/n', value: 1 }]);
      await r.presence.set({ from: location.origin });
      return { ok: true, seq: ack.seq, state: r.state, status: conn.status };
    } catch (e) {
      return { ok: false, name: e.name, code: e.code, message: e.message, status: conn.status };
    } finally {
      await conn.close();
    }
  };
  window.ready = true;
</script>`;

// A second origin: 127.0.0.1 on another port, serving PAGE.
async function appServer() {
  const srv = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${srv.address().port}/`, close: () => new Promise((r) => srv.close(r)) };
}

async function openApp(env, app) {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  env.watch(page, 'app');
  await page.goto(app.url);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

test('a page on another origin imports /movex.js and works with it', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  const d = await env.daemon();
  const app = await appServer();
  try {
    const page = await openApp(env, app);
    assert.notEqual(new URL(app.url).origin, new URL(d.http).origin);
    const r = await page.evaluate(([lib, url]) => window.run(lib, url, undefined, 'x:origin'), [d.http, d.url]);
    assert.deepEqual(r, { ok: true, seq: 1, state: { n: 1 }, status: 'open' });
    assert.deepEqual((await env.serverState('x:origin')).state, { n: 1 });
  } finally {
    await app.close();
  }
}));

test('join() rejects with "unauthorized" on a bad token, and the connection stops', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  const keys = mkdtempSync(join(tmpdir(), 'movex-e2e-keys-'));
  const app = await appServer();
  try {
    const secret = join(keys, 'hs256.secret');
    execFileSync(process.execPath, [join(ROOT, 'scripts', 'make-token.mjs'), '--gen-secret', secret]);
    const conf = makeConf({
      global: [`client_dir ${join(ROOT, 'client')}`, 'auth jwt', `auth_hs256_secret_file ${secret}`],
      room: ['authenticated read,write,create'],
    });
    const d = await startDaemon({ conf, dir: env.dir });
    env.daemons.push(d);
    env.d = d;
    const page = await openApp(env, app);
    const t0 = Date.now();
    const bad = await page.evaluate(([lib, url]) => window.run(lib, url, 'not.a.token', 'x:auth'), [d.http, d.url]);
    assert.equal(bad.ok, false, JSON.stringify(bad));
    assert.equal(bad.name, 'MovexError');
    assert.equal(bad.code, 'unauthorized');
    assert.equal(bad.status, 'closed', 'no retry with the same token');
    t.diagnostic(`join() rejected ${Date.now() - t0} ms after it was called`);
    // the same page with a good token works
    const good = execFileSync(process.execPath, [join(ROOT, 'scripts', 'make-token.mjs'), '--hs256-secret-file', secret, '--sub', 'ann'], { encoding: 'utf8' }).trim();
    const ok = await page.evaluate(([lib, url, tok]) => window.run(lib, url, tok, 'x:auth'), [d.http, d.url, good]);
    assert.equal(ok.ok, true, JSON.stringify(ok));
  } finally {
    await app.close();
    rmSync(keys, { recursive: true, force: true });
  }
}));
