// "Clear completed" removes each done item with an independent action
// ({dep: false}): when another window removed one of them first, only that
// removal is rejected, the others still apply (with the default dep chain
// the ones after it would be rejected too, after_reject).
//
// Staged deterministically: window A's WebSocket goes through a Playwright
// route that holds what A sends while window B deletes the middle item; the
// held removals then reach the server in their order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e2e, TEST_TIMEOUT, WAIT, addViaUi, converged, view, until, waitReady } from './helpers.mjs';

const ROOM = 'todo:e2e-clear';

test('clear completed: an item deleted meanwhile by another window fails alone', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  const d = await env.daemon();
  const context = await env.browser.newContext();
  let hold = false;
  const held = []; // sends to do later
  const sentByA = []; // every message A sent, parsed
  await context.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => {
      try { sentByA.push(JSON.parse(m)); } catch { /* not JSON */ }
      if (hold) held.push(() => server.send(m)); else server.send(m);
    });
    server.onMessage((m) => ws.send(m));
    ws.onClose(() => server.close());
    server.onClose(() => ws.close());
  });
  const a = await context.newPage();
  a.setDefaultTimeout(WAIT);
  env.watch(a, 'alice');
  await a.goto(`${d.http}/?client=alice#room=${ROOM}`);
  await waitReady(a);
  const b = await env.window({ client: 'bob', room: ROOM });

  for (const text of ['x', 'y', 'z', 'w']) await addViaUi(a, text);
  for (const text of ['x', 'y', 'z']) await a.getByLabel(`Done: ${text}`, { exact: true }).check();
  await converged(env, [a, b], ROOM);

  // A clears the three done items; its messages are held
  hold = true;
  const before = sentByA.length;
  await a.getByRole('button', { name: 'Clear completed', exact: true }).click();
  const removes = await until(() => {
    const acts = sentByA.slice(before).filter((m) => m.type === 'action');
    return acts.length === 3 && held.length >= 3 ? acts : null;
  }, 'A to send three removals');
  assert.deepEqual(removes.map((m) => m.action.payload[0].op), ['remove', 'remove', 'remove']);
  assert.deepEqual(removes.map((m) => m.dep), [undefined, undefined, undefined], 'independent actions: no dep');

  // meanwhile B deletes y, the middle one
  await b.getByRole('button', { name: 'Delete “y”', exact: true }).click();
  await until(async () => {
    const snap = await env.serverState(ROOM);
    return !Object.values(snap.state.items).some((it) => it.text === 'y') && (await view(b)).pending === 0;
  }, 'B to delete y');

  // A's removals reach the server now: x applies, y is rejected, z applies
  hold = false;
  for (const send of held.splice(0)) send();
  const snap = await converged(env, [a, b], ROOM);
  assert.deepEqual(Object.values(snap.state.items).map((it) => it.text), ['w']);
  assert.equal(snap.seq, 10, '4 adds, 3 toggles, B\'s delete, 2 of A\'s 3 removals');
  const failures = await a.evaluate(() => window.demo.failures());
  assert.equal(failures.length, 1, JSON.stringify(failures));
  assert.equal(failures[0].code, 'bad_patch');
  assert.match(failures[0].text, /Deleting an item failed: the item is gone/);
}));
