// Tabs of one browser: two tabs without ?client= are two clients (movex.js
// gives each live tab its own id); a second tab with the same ?client= name
// waits until the first is closed instead of sharing its action counter
// (movex.js's clientLock "wait"). And movex.js itself, with real Web Locks:
// a second connection with a client id in use fails with client_in_use
// (the default) or waits for it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e2e, TEST_TIMEOUT, WAIT, addViaUi, converged, view, until, waitReady } from './helpers.mjs';

const ROOM = 'todo:e2e-tabs';

test('tabs of one browser are distinct clients; a duplicate ?client waits', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  await env.daemon();
  const context = await env.browser.newContext();
  const open = async (q) => {
    const p = await context.newPage();
    p.setDefaultTimeout(WAIT);
    env.watch(p, q || 'tab');
    await p.goto(`${env.d.http}/${q}#room=${ROOM}`);
    return p;
  };

  const t1 = await open('');
  const t2 = await open('');
  await waitReady(t1);
  await waitReady(t2);
  const [c1, c2] = await Promise.all([t1, t2].map((p) => p.evaluate(() => window.demo.conn.client)));
  assert.notEqual(c1, c2, 'two tabs, two client ids');
  await addViaUi(t1, 'from tab 1');
  await addViaUi(t2, 'from tab 2');
  await converged(env, [t1, t2], ROOM);

  const n1 = await open('?client=zed');
  await waitReady(n1);
  const n2 = await open('?client=zed');
  await until(async () => /client zed is open in another tab/.test((await view(n2)).statusText), 'the second zed tab to wait');
  assert.equal(await n2.evaluate(() => window.demo.conn.status), 'waiting', 'it has not connected');
  assert.equal((await view(n2)).status, 'waiting');
  await addViaUi(n1, 'from zed');
  await n1.close();
  await waitReady(n2);
  await addViaUi(n2, 'from zed again');
  const snap = await converged(env, [t1, t2, n2], ROOM);
  assert.deepEqual(Object.values(snap.state.items).map((it) => it.text).sort(),
    ['from tab 1', 'from tab 2', 'from zed', 'from zed again']);
  assert.equal(snap.seq, 4);
}));

test('movex.js in two tabs with one explicit client id: client_in_use, or clientLock "wait"', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  const d = await env.daemon();
  const context = await env.browser.newContext();
  // plain pages of the daemon's origin (a 404 page) that import /movex.js
  const tab = async (name) => {
    const p = await context.newPage();
    p.setDefaultTimeout(WAIT);
    env.watch(p, name);
    await p.goto(`${d.http}/blank`);
    await p.evaluate(async () => { window.movex = await import('/movex.js'); });
    return p;
  };
  const url = `ws://127.0.0.1:${d.port}/ws`;
  const t1 = await tab('one');
  const t2 = await tab('two');
  assert.equal(await t1.evaluate(async ([u, room]) => {
    window.conn = window.movex.connect(u, { client: 'kim' });
    const r = await window.conn.join(room, { create: { n: 0 } });
    await r.patch([{ op: 'inc', path: '/n', value: 1 }]);
    return window.conn.status;
  }, [url, ROOM]), 'open');

  // default: the second tab's connection fails at once, without connecting
  const failed = await t2.evaluate(async ([u, room]) => {
    const c = window.movex.connect(u, { client: 'kim' });
    const errors = [];
    c.on('error', (e) => errors.push(e.code));
    const code = await c.join(room).then(() => 'joined', (e) => e.code);
    return { code, errors, status: c.status };
  }, [url, ROOM]);
  assert.deepEqual(failed, { code: 'client_in_use', errors: ['client_in_use'], status: 'closed' });

  // "wait": it waits while the first tab holds the id, then goes on
  await t2.evaluate(([u, room]) => {
    window.conn = window.movex.connect(u, { client: 'kim', clientLock: 'wait' });
    window.statuses = [];
    window.conn.on('status', (s) => window.statuses.push(s));
    window.joined = window.conn.join(room).then(async (r) => { await r.patch([{ op: 'inc', path: '/n', value: 1 }]); return r.state; });
  }, [url, ROOM]);
  await until(async () => (await t2.evaluate(() => window.conn.status)) === 'waiting', 'the second tab to wait');
  const before = await env.serverState(ROOM);
  assert.equal(before.seq, 1, 'nothing from the waiting tab');
  await t1.evaluate(() => window.conn.close());
  assert.deepEqual(await t2.evaluate(() => window.joined), { n: 2 });
  assert.deepEqual(await t2.evaluate(() => window.statuses), ['waiting', 'connecting', 'open']);
  const after = await env.serverState(ROOM);
  assert.deepEqual([after.seq, after.state], [2, { n: 2 }]);
  await t2.evaluate(() => window.conn.close());
}));
