// A page reloads while some of its actions are unacknowledged (the daemon is
// stopped, so they are sent but never answered). The reloaded page finds
// them in localStorage, resends them with the same n, and each is applied
// exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e2e, TEST_TIMEOUT, WAIT, addViaUi, converged, view, until, waitReady } from './helpers.mjs';

const ROOM = 'todo:e2e-reload';
const CLIENT = 'dave';

test('unacked actions survive a reload and are applied exactly once', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  const d = await env.daemon();
  const page = await env.window({ client: CLIENT, room: ROOM });
  const show = async () => JSON.stringify(await view(page));

  await addViaUi(page, 'acked-1');
  await addViaUi(page, 'acked-2');
  await converged(env, [page], ROOM);

  process.kill(d.pid, 'SIGSTOP');
  for (let i = 1; i <= 5; i++) await addViaUi(page, `unacked-${i}`);
  await until(async () => (await view(page)).pending === 5, '5 pending', WAIT, show);

  // they are in localStorage (written before they were sent)
  const key = `movex:${CLIENT}:${ROOM}`;
  const stored = await until(async () => {
    const rec = JSON.parse(await page.evaluate((k) => localStorage.getItem(k), key) || 'null');
    return rec && rec.pending && rec.pending.length === 5 ? rec : null;
  }, `5 pending actions in localStorage[${key}]`);
  const storedN = stored.pending.map((p) => p.n);
  assert.deepEqual(stored.pending.map((p) => p.action.payload[0].value.text), [1, 2, 3, 4, 5].map((i) => `unacked-${i}`));

  // watch what the reloaded page sends and receives
  const sent = [], received = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => { try { sent.push(JSON.parse(f.payload)); } catch { /* not JSON */ } });
    ws.on('framereceived', (f) => { try { received.push(JSON.parse(f.payload)); } catch { /* not JSON */ } });
  });

  // reload while the daemon is still stopped: the request waits in the
  // listen backlog until SIGCONT
  const docRequest = page.waitForRequest((r) => r.isNavigationRequest(), { timeout: WAIT });
  const reloaded = page.reload({ waitUntil: 'load', timeout: WAIT });
  await docRequest;
  process.kill(d.pid, 'SIGCONT');
  await reloaded;
  await waitReady(page);

  const snap = await converged(env, [page], ROOM);
  const texts = Object.values(snap.state.items).map((it) => it.text).sort();
  assert.deepEqual(texts, ['acked-1', 'acked-2', ...[1, 2, 3, 4, 5].map((i) => `unacked-${i}`)].sort(), 'each item exactly once');
  assert.equal(snap.seq, 7, 'each action applied exactly once');

  // the new page resent the stored actions, with their n, and got acks
  const resent = sent.filter((m) => m.type === 'action').map((m) => m.n);
  assert.deepEqual(resent, storedN, 'the reloaded page resends the stored actions with the same n');
  const acks = received.filter((m) => m.type === 'ack');
  assert.deepEqual(acks.map((m) => m.n), storedN);
  // The old page's socket delivered them before it closed (the daemon reads
  // its buffered input after SIGCONT), so the resends are normally answered
  // from the exactly-once memory; either way nothing applies twice (seq 7).
  t.diagnostic(`resent n=${resent.join(',')}; duplicate acks: ${acks.filter((m) => m.duplicate).length}/${acks.length}`);

  // and localStorage is clean again
  await until(async () => {
    const rec = JSON.parse(await page.evaluate((k) => localStorage.getItem(k), key) || 'null');
    return rec && rec.pending.length === 0;
  }, 'no pending actions left in storage');
}));
