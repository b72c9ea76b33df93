// Precise dependencies in the demo (docs/PROTOCOL.md "The rejection
// cascade"): window A goes offline (the browser's offline event, which
// movex.js turns into status "offline" at once), renames item X and ticks
// item Y; window B deletes X; A comes back online (reconnecting at once):
// the rename is rejected (bad_patch) and listed with its reason, the tick
// survives - it never depended on the rename.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e2e, TEST_TIMEOUT, WAIT, converged, view, until } from './helpers.mjs';

const ROOM = 'todo:e2e-deps';

test('offline: an unrelated tick survives the rejected rename of a deleted item', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  await env.daemon();
  const a = await env.window({ client: 'ann', room: ROOM });
  const b = await env.window({ client: 'bob', room: ROOM });
  const show = async () => JSON.stringify({ a: await view(a), b: await view(b) });
  const x = await a.evaluate(() => window.demo.add('item X'));
  const y = await a.evaluate(() => window.demo.add('item Y'));
  await converged(env, [a, b], ROOM);

  const t0 = Date.now();
  await a.context().setOffline(true);
  await until(async () => (await view(a)).status === 'offline', 'A to show offline', WAIT, show);
  const offlineMs = Date.now() - t0;
  await a.evaluate(([ix, iy]) => {
    window.demo.rename(ix, 'item X renamed');
    window.demo.setDone(iy, true);
  }, [x, y]);
  await until(async () => (await view(a)).pending === 2, 'two changes waiting in A', WAIT, show);

  await b.evaluate((ix) => window.demo.remove(ix), x);
  await until(async () => !(await env.serverState(ROOM)).state.items[x], 'B\'s delete to land', WAIT, show);

  const t1 = Date.now();
  await a.context().setOffline(false);
  await until(async () => (await view(a)).status === 'open', 'A back online', WAIT, show);
  const onlineMs = Date.now() - t1;
  const snap = await converged(env, [a, b], ROOM);
  assert.deepEqual(Object.keys(snap.state.items), [y]);
  assert.equal(snap.state.items[y].done, true, 'the tick of Y survived');
  assert.equal(snap.state.items[y].text, 'item Y');
  const failures = await until(async () => {
    const f = await a.evaluate(() => window.demo.failures());
    return f.length ? f : null;
  }, 'the failure list in A', WAIT, show);
  assert.equal(failures.length, 1, JSON.stringify(failures));
  assert.equal(failures[0].code, 'bad_patch');
  assert.match(failures[0].text, /Renaming an item to “item X renamed” failed: the item is gone/);
  assert.equal(await a.locator('#failures').isVisible(), true);
  t.diagnostic(`offline shown after ${offlineMs} ms; open again ${onlineMs} ms after the online event`);
  assert.ok(offlineMs < 5000 && onlineMs < 5000, `offline ${offlineMs} ms, online ${onlineMs} ms`);
}));
