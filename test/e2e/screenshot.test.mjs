// Two clients side by side (client/demo/split.html: two iframes of the demo)
// edit one room; once converged the page is saved as one screenshot,
// test/artifacts/demo-two-windows.png.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { e2e, TEST_TIMEOUT, WAIT, addViaUi, converged, view, until, waitReady, mkArtifacts } from './helpers.mjs';

const ROOM = 'todo:e2e-screenshot';

test('screenshot of two windows converged', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  await env.daemon();
  const context = await env.browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  env.watch(page, 'split');
  await page.goto(`${env.d.http}/demo/split.html?left=alice&right=bob#room=${encodeURIComponent(ROOM)}`);
  const left = await (await page.$('#left')).contentFrame();
  const right = await (await page.$('#right')).contentFrame();
  await waitReady(left);
  await waitReady(right);

  for (const text of ['Book the meeting room', 'Write the release notes', 'Order coffee beans']) await addViaUi(left, text);
  for (const text of ['Review pull request #42', 'Water the plants']) await addViaUi(right, text);
  await until(async () => (await view(left)).items.length === 5 && (await view(right)).items.length === 5, 'both frames to show 5 items');
  await right.getByLabel('Done: Order coffee beans', { exact: true }).check();
  await left.getByLabel('Done: Water the plants', { exact: true }).check();

  const snap = await converged(env, [left, right], ROOM);
  assert.equal(snap.seq, 7);
  const [vl, vr] = [await view(left), await view(right)];
  assert.equal(vl.shortChecksum, vr.shortChecksum);

  // the status dot pulses only while connecting; nothing moves now
  const path = join(mkArtifacts(), 'demo-two-windows.png');
  await page.screenshot({ path, animations: 'disabled' });
  assert.ok(statSync(path).size > 10000, 'a real image was written');
  t.diagnostic(`screenshot: ${path}`);
}));
