// The daemon restarts (SIGTERM, then started again on the same port and data
// dir) in the middle of a session; both windows reconnect by themselves and
// keep syncing with each other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e2e, TEST_TIMEOUT, WAIT, addViaUi, converged, view, until } from './helpers.mjs';

const ROOM = 'todo:e2e-restart';

test('both windows keep syncing across a daemon restart', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  const d1 = await env.daemon();
  const a = await env.window({ client: 'erin', room: ROOM });
  const b = await env.window({ client: 'frank', room: ROOM });

  await Promise.all([
    (async () => { for (let i = 1; i <= 5; i++) await addViaUi(a, `a-before-${i}`); })(),
    (async () => { for (let i = 1; i <= 5; i++) await addViaUi(b, `b-before-${i}`); })(),
  ]);
  const before = await converged(env, [a, b], ROOM);
  assert.equal(before.seq, 10);

  await d1.stop(); // SIGTERM; asserts a clean exit
  for (const p of [a, b]) {
    await until(async () => (await view(p)).status !== 'open', 'the pages to notice the restart', WAIT,
      async () => JSON.stringify(await view(p)));
  }
  // an edit and a toggle while it is down
  await addViaUi(a, 'a-during');
  await b.getByLabel('Done: a-before-1', { exact: true }).check();
  assert.equal((await view(b)).pending, 1);

  await env.daemon(d1.port); // same port and data dir
  const mid = await converged(env, [a, b], ROOM, 60000);
  assert.equal(mid.seq, 12);
  // and they keep syncing with each other
  await Promise.all([
    (async () => { for (let i = 1; i <= 5; i++) await addViaUi(a, `a-after-${i}`); })(),
    (async () => { for (let i = 1; i <= 5; i++) await addViaUi(b, `b-after-${i}`); })(),
  ]);
  await until(async () => (await view(a)).items.some((it) => it.text === 'b-after-5')
    && (await view(b)).items.some((it) => it.text === 'a-after-5'), 'each window to see the other\'s new items');
  const snap = await converged(env, [a, b], ROOM);
  assert.equal(snap.seq, 22);
  const texts = Object.values(snap.state.items).map((it) => it.text);
  assert.equal(new Set(texts).size, 21);
  assert.equal(texts.length, 21);
  assert.equal(snap.state.items[Object.keys(snap.state.items).find((k) => snap.state.items[k].text === 'a-before-1')].done, true);
}));
