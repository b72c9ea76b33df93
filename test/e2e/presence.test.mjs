// Presence in the demo, two windows: each shows who else is here and which
// item they are editing; a window that closes is gone from the other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e2e, TEST_TIMEOUT, WAIT, converged, until } from './helpers.mjs';

const ROOM = 'todo:e2e-presence';

const presenceText = (page) => page.evaluate(() => document.getElementById('presence').textContent);

test('two windows see each other, and which item the other is editing', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  await env.daemon();
  const a = await env.window({ client: 'ann', room: ROOM });
  const b = await env.window({ client: 'bob', room: ROOM });
  const id = await a.evaluate(() => window.demo.add('milk'));
  await converged(env, [a, b], ROOM);
  await until(async () => /Also here: ann$/.test(await presenceText(b)), 'B to see ann', WAIT, () => presenceText(b));
  await until(async () => /Also here: bob$/.test(await presenceText(a)), 'A to see bob', WAIT, () => presenceText(a));

  // A starts renaming "milk": B sees it in the list and on the row
  await a.locator(`li.item[data-id="${id}"] button.rename`).click();
  await until(async () => /ann \(editing “milk”\)/.test(await presenceText(b)), 'B to see what ann edits', WAIT, () => presenceText(b));
  assert.equal(await b.locator(`li.item[data-id="${id}"] .editors`).textContent(), '✎ ann');
  assert.equal(await a.locator(`li.item[data-id="${id}"] .editors`).textContent(), '', 'nobody else edits it');
  await a.keyboard.press('Escape');
  await until(async () => /Also here: ann$/.test(await presenceText(b)), 'B to see ann stop editing', WAIT, () => presenceText(b));
  assert.equal(await b.locator(`li.item[data-id="${id}"] .editors`).textContent(), '');
  const others = await b.evaluate(() => window.demo.presence());
  assert.equal(others.length, 1);
  assert.equal(others[0].client, 'ann');
  assert.ok(Number.isInteger(others[0].conn));

  // A's window closes: B sees it leave
  await a.context().close();
  await until(async () => (await presenceText(b)) === 'Only you here.', 'B to see ann leave', WAIT, () => presenceText(b));
}));
