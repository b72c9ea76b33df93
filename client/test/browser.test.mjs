// movex.js in a real browser (Chromium driven by playwright-core), against
// the real daemon. The page and /movex.js come from a small HTTP server here
// (loopback, so Chromium's Local Network Access checks allow the WebSocket),
// so pages can load and reload while the daemon is stopped.
// Checks the native WebSocket, localStorage, crypto and Web Locks paths:
// two tabs get different client ids; unacked actions survive a page reload
// while the daemon is stopped and are resent (once) by the reloaded page.
//
// Skipped unless playwright-core and a Chromium are available:
//   PLAYWRIGHT_CORE=/path/to/node_modules/playwright-core CHROMIUM=/usr/bin/chromium node --test client/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { startDaemon, connectHello } from '../../test/integration/lib.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
let chromium = null;
try {
  if (process.env.PLAYWRIGHT_CORE && existsSync(CHROMIUM)) ({ chromium } = await import(process.env.PLAYWRIGHT_CORE));
} catch { chromium = null; }

const PAGE = `<!doctype html><meta charset="utf-8"><title>movex browser test</title>
<script type="module">
  import * as movex from '/movex.js';
  window.movex = movex;
  window.ready = true;
</script>`;

test('movex.js in Chromium: Web Locks ids per tab, localStorage queue survives a reload', { skip: !chromium && 'set PLAYWRIGHT_CORE (and CHROMIUM) to run', timeout: 90000 }, async () => {
  const lib = readFileSync(new URL('../movex.js', import.meta.url));
  const web = createServer((req, res) => {
    if (req.url === '/movex.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(lib);
    else if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
    else res.writeHead(404).end();
  });
  await new Promise((r) => web.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${web.address().port}`;
  const d = await startDaemon();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  try {
    const ctx = await browser.newContext();
    const open = async () => {
      const page = await ctx.newPage();
      page.on('pageerror', (e) => console.log('# page error:', e.message));
      await page.goto(`${origin}/`);
      await page.waitForFunction(() => window.ready === true);
      return page;
    };
    const a = await open();
    const b = await open();
    const join = (page) => page.evaluate(async (url) => {
      window.conn = window.movex.connect(url, { backoff: { base: 50, cap: 300 }, ping: { interval: 300, timeout: 400 }, connectTimeout: 1500 });
      window.room = await window.conn.join('todo:web', { create: { n: 0, list: [] } });
      return { client: window.conn.client, state: window.room.state };
    }, d.url);
    const ja = await join(a);
    const jb = await join(b);
    assert.match(ja.client, /^c-[0-9a-f]{32}$/);
    assert.notEqual(ja.client, jb.client, 'two tabs, two client ids (Web Locks)');
    assert.deepEqual(ja.state, { n: 0, list: [] });

    // concurrent edits from both tabs converge
    const edit = (page, tag, k) => page.evaluate(async ([tag, k]) => {
      const ps = [];
      for (let i = 0; i < k; i++) ps.push(window.room.patch([{ op: 'inc', path: '/n', value: 1 }, { op: 'add', path: '/list/-', value: `${tag}${i}` }]));
      await Promise.all(ps);
      await window.conn.flush();
    }, [tag, k]);
    await Promise.all([edit(a, 'a', 20), edit(b, 'b', 20)]);
    const stateOf = (page) => page.evaluate(() => ({ seq: window.room.seq, state: window.room.state, checksum: window.room.checksum }));
    let sa, sb;
    for (let i = 0; i < 200; i++) {
      [sa, sb] = [await stateOf(a), await stateOf(b)];
      if (sa.seq === 40 && sb.seq === 40) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(sa.seq, 40);
    assert.deepEqual(sa.state, sb.state);
    assert.equal(sa.checksum, sb.checksum);

    // tab a: edits sent into a stopped daemon, then the page is reloaded
    // before any ack; the reloaded page resends from localStorage and the
    // daemon, resumed, applies each action once (the old page's copies may
    // land first: the resends then get duplicate acks)
    await b.close();
    d.proc.kill('SIGSTOP');
    await a.evaluate(() => { for (let i = 0; i < 5; i++) window.room.patch([{ op: 'inc', path: '/n', value: 1 }, { op: 'add', path: '/list/-', value: `off${i}` }]); });
    const stored = await a.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('movex:')).map((k) => [k, localStorage.getItem(k)]));
    const rec = stored.find(([k]) => k === `movex:${ja.client}:todo:web`);
    assert.ok(rec, JSON.stringify(stored));
    assert.equal(JSON.parse(rec[1]).pending.length, 5, 'the 5 unacked actions are in localStorage');
    await a.reload();
    await a.waitForFunction(() => window.ready === true);
    const joining = a.evaluate(async (url) => {
      window.conn = window.movex.connect(url, { backoff: { base: 50, cap: 300 } });
      window.room = await window.conn.join('todo:web');
      await window.conn.flush();
      return { client: window.conn.client, state: window.room.state, pending: window.room.pendingCount };
    }, d.url);
    await new Promise((r) => setTimeout(r, 300));
    d.proc.kill('SIGCONT');
    const after = await joining;
    assert.equal(after.client, ja.client, 'the reloaded tab takes its id back (the old page released its lock)');
    assert.equal(after.pending, 0);
    assert.equal(after.state.n, 45);
    assert.deepEqual(after.state.list.filter((x) => x.startsWith('off')), ['off0', 'off1', 'off2', 'off3', 'off4']);
    const c = await connectHello(d, 'inspector');
    const g = await c.request({ type: 'get', room: 'todo:web' });
    await c.close();
    assert.deepEqual(g.state, after.state, 'the server holds each action exactly once');
  } finally {
    d.proc.kill('SIGCONT');
    await browser.close();
    web.close();
    await d.stop();
  }
});
