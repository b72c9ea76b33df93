// Two windows edit one room at the same time and end up identical to the
// server: same items, same seq, same checksum shown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e2e, TEST_TIMEOUT, addViaUi, converged, view, until } from './helpers.mjs';

const ROOM = 'todo:e2e-converge';
const N = 20;

test('two windows edit concurrently and converge on the server state', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  await env.daemon();
  const a = await env.window({ client: 'alice', room: ROOM });
  const b = await env.window({ client: 'bob', room: ROOM });

  // both type 20 items as fast as the UI takes them, at the same time
  await Promise.all([
    (async () => { for (let i = 1; i <= N; i++) await addViaUi(a, `A-${i}`); })(),
    (async () => { for (let i = 1; i <= N; i++) await addViaUi(b, `B-${i}`); })(),
  ]);
  // each sees the other's items
  await until(async () => (await view(a)).items.length === 2 * N && (await view(b)).items.length === 2 * N,
    'both windows to show 40 items');

  // concurrent toggles (on distinct items, so the expected result is known),
  // a rename and a delete, both windows at once
  const expectDone = new Set();
  const togglesA = [], togglesB = [];
  for (let i = 1; i <= N; i++) {
    if (i % 3 === 0) { togglesA.push(`A-${i}`); expectDone.add(`A-${i}`); }
    if (i % 3 === 1) { togglesB.push(`A-${i}`); expectDone.add(`A-${i}`); }
    if (i % 2 === 0) { togglesB.push(`B-${i}`); expectDone.add(`B-${i}`); }
  }
  expectDone.delete('A-20'); // deleted below
  await Promise.all([
    (async () => {
      for (const name of togglesA) await a.getByLabel(`Done: ${name}`, { exact: true }).check();
      await a.getByRole('button', { name: 'Rename “B-5”', exact: true }).click();
      const box = a.getByLabel('New text for “B-5”', { exact: true });
      await box.fill('B-5 renamed by alice');
      await box.press('Enter');
    })(),
    (async () => {
      for (const name of togglesB) await b.getByLabel(`Done: ${name}`, { exact: true }).check();
      await b.getByRole('button', { name: 'Delete “A-20”', exact: true }).click();
    })(),
  ]);

  const snap = await converged(env, [a, b], ROOM);
  const items = Object.values(snap.state.items);
  const texts = items.map((it) => it.text).sort();
  const want = [];
  for (let i = 1; i <= N; i++) {
    if (i !== 20) want.push(`A-${i}`);
    want.push(i === 5 ? 'B-5 renamed by alice' : `B-${i}`);
  }
  assert.deepEqual(texts, want.sort(), 'every item exactly once on the server');
  for (const it of items) {
    assert.equal(it.done, expectDone.has(it.text), `done flag of ${it.text}`);
  }
  // 40 adds + toggles + 1 rename + 1 delete, each applied once
  assert.equal(snap.seq, 2 * N + togglesA.length + togglesB.length + 2);

  // the short checksum shown is the server's
  const va = await view(a);
  assert.equal(va.shortChecksum, snap.checksum.slice(0, 8));
  assert.match(va.statusText, /Online · all changes saved/);
}));
