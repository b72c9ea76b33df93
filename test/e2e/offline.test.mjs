// The server goes away under an open page (stopped, then killed); the page
// keeps taking edits and shows them as waiting; the daemon comes back on the
// same port and data; the page reconnects by itself and every edit lands
// exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e2e, TEST_TIMEOUT, WAIT, addViaUi, converged, view, until } from './helpers.mjs';

const ROOM = 'todo:e2e-offline';

test('a page keeps editing while the daemon is down and loses nothing', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  const d1 = await env.daemon();
  const page = await env.window({ client: 'carol', room: ROOM });
  const show = async () => JSON.stringify(await view(page));

  for (let i = 1; i <= 5; i++) await addViaUi(page, `before-${i}`);
  await converged(env, [page], ROOM);

  // stopped: these three go out on the socket but are never answered
  process.kill(d1.pid, 'SIGSTOP');
  for (let i = 1; i <= 3; i++) await addViaUi(page, `in-flight-${i}`);
  await until(async () => (await view(page)).pending === 3, '3 pending while the daemon is stopped', WAIT, show);

  // killed: the connection drops; the page notices by itself
  await d1.kill('SIGKILL');
  await until(async () => ['reconnecting', 'offline'].includes((await view(page)).status), 'the page to notice', WAIT, show);
  for (let i = 1; i <= 7; i++) await addViaUi(page, `offline-${i}`);
  const v = await until(async () => {
    const x = await view(page);
    return x.pending === 10 && x.status === 'offline' ? x : null;
  }, 'offline with 10 changes waiting', WAIT, show);
  assert.match(v.statusText, /Offline .*10 changes waiting/);
  assert.equal(v.items.length, 15, 'the optimistic view shows every edit');
  assert.equal(v.unsaved, 10, 'the 10 waiting items are marked unsaved');

  // back on the same port and data dir: the page reconnects and resends
  const d2 = await env.daemon(d1.port);
  assert.equal(d2.port, d1.port);
  const snap = await converged(env, [page], ROOM, 60000);
  const texts = Object.values(snap.state.items).map((it) => it.text).sort();
  const want = [1, 2, 3, 4, 5].map((i) => `before-${i}`)
    .concat([1, 2, 3].map((i) => `in-flight-${i}`), [1, 2, 3, 4, 5, 6, 7].map((i) => `offline-${i}`)).sort();
  assert.deepEqual(texts, want, 'each item exactly once');
  assert.equal(snap.seq, 15, 'each action applied exactly once');
}));
