// The demo's status bar follows movex.js's events (Room "change", Connection
// "status"), not a polling timer. Every short interval timer is taken away
// from the page (setInterval under 5 s does nothing; movex.js's own 15 s
// liveness ping is not affected), and the bar still shows an action that the
// page did not send through its own code (dispatched on window.demo.room, as
// actions resent from storage after a reload are): "saving 1 change", then,
// at the ack, "all changes saved" with the new seq and checksum and no
// unsaved mark.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e2e, TEST_TIMEOUT, WAIT, converged, view, until, waitReady } from './helpers.mjs';

const ROOM = 'todo:e2e-status';

test('the status bar is driven by events: no polling timer, yet it shows acks it did not ask for', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  const d = await env.daemon();
  const context = await env.browser.newContext();
  await context.addInitScript(() => {
    const setInterval = window.setInterval;
    window.shortIntervals = [];
    window.setInterval = function (fn, ms, ...args) {
      if (!(ms >= 5000)) { window.shortIntervals.push(ms); return 0; }
      return setInterval.call(window, fn, ms, ...args);
    };
  });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  env.watch(page, 'status');
  await page.goto(`${d.http}/?client=stat#room=${ROOM}`);
  await waitReady(page);
  const show = async () => JSON.stringify(await view(page));
  await converged(env, [page], ROOM);

  // the daemon is stopped, so the action stays pending for now
  process.kill(d.pid, 'SIGSTOP');
  await page.evaluate(() => {
    window.demo.room.patch([{ op: 'add', path: '/items/direct', value: { text: 'direct', done: false, created: 1 } }]);
  });
  const pending = await until(async () => {
    const v = await view(page);
    return v.pending === 1 && v.unsaved === 1 && /saving 1 change/.test(v.statusText) ? v : null;
  }, 'the bar to show 1 change being saved', WAIT, show);
  assert.equal(pending.seq, '0');
  process.kill(d.pid, 'SIGCONT');

  // the ack changes pendingCount, seq and checksum, not the state
  const snap = await converged(env, [page], ROOM);
  assert.equal(snap.seq, 1);
  const v = await view(page);
  assert.equal(v.statusText, 'Online · all changes saved');
  assert.deepEqual(v.items.map((it) => it.text), ['direct']);
  assert.deepEqual(await page.evaluate(() => window.shortIntervals), [], 'the page set no polling timer');
}));
