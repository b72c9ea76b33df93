// Tabs of one browser: two tabs without ?client= are two clients (movex.js
// gives each live tab its own id); a second tab with the same ?client= name
// waits until the first is closed instead of sharing its action counter.
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
  assert.equal(await n2.evaluate(() => window.demo.conn), null, 'it has not connected');
  await addViaUi(n1, 'from zed');
  await n1.close();
  await waitReady(n2);
  await addViaUi(n2, 'from zed again');
  const snap = await converged(env, [t1, t2, n2], ROOM);
  assert.deepEqual(Object.values(snap.state.items).map((it) => it.text).sort(),
    ['from tab 1', 'from tab 2', 'from zed', 'from zed again']);
  assert.equal(snap.seq, 4);
}));
