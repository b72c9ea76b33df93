// The tic-tac-toe demo (client/demo/tictactoe.html on examples/tictactoe.lua,
// as conf/lua-demo.conf runs it) in two Chromium windows: both take a seat
// by clicking, play by clicking squares until X wins, and both pages show
// the same board, the win and the server's seq; a move out of turn is
// refused by the server (not_your_turn) and the page shows the refusal
// while the board stays as it was; after the win no square is clickable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { e2e, TEST_TIMEOUT, WAIT, until, ROOT } from './helpers.mjs';
import { makeConf } from '../integration/lib.mjs';

const ROOM = 'ttt:e2e';
const TTT_CONF = makeConf({
  global: [`client_dir ${join(ROOT, 'client')}`],
  extra: `room ttt {\n    reducer lua:${join(ROOT, 'examples/tictactoe.lua')}\n    create_on_subscribe yes\n}\n`,
});

async function open(env, client) {
  const context = await env.browser.newContext({ viewport: { width: 700, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  env.watch(page, client);
  await page.goto(`${env.d.http}/demo/tictactoe.html?client=${client}#room=${encodeURIComponent(ROOM)}`);
  await page.waitForFunction(() => window.ttt && window.ttt.room && window.ttt.room.seq >= 0, null, { timeout: WAIT });
  return page;
}

// What the page shows.
const board = (page) => page.$$eval('#board button', (bs) => bs.map((b) => b.textContent));
const shown = async (page) => ({
  board: (await board(page)).join(','),
  turn: await page.textContent('#turn'),
  players: await page.textContent('#players'),
  seq: await page.textContent('#seq'),
  notice: await page.$eval('#notice', (n) => (n.hidden ? '' : n.textContent)),
});

// Wait until both pages show `seq` confirmed (nothing pending).
async function settled(pages, seq) {
  await until(async () => {
    for (const p of pages) {
      const ok = await p.evaluate((s) => window.ttt.room.seq === s && window.ttt.room.pendingCount === 0, seq);
      if (!ok || (await p.textContent('#seq')) !== String(seq)) return false;
    }
    return true;
  }, `both pages at seq ${seq}`, WAIT, async () => JSON.stringify(await Promise.all(pages.map(shown))));
}

test('tic-tac-toe: two windows play to a win; a move out of turn is refused and shown', { timeout: TEST_TIMEOUT }, (t) => e2e(t, async (env) => {
  await env.daemon(0, TTT_CONF);
  const alice = await open(env, 'alice');
  const bob = await open(env, 'bob');
  const pages = [alice, bob];

  await alice.click('#join');
  await settled(pages, 1);
  await bob.click('#join');
  await settled(pages, 2);
  for (const p of pages) assert.equal(await p.textContent('#players'), 'X: alice · O: bob');
  assert.equal(await alice.textContent('#turn'), 'X to move (you).');

  // X: 0, 1, 2 (the top row); O: 3, 4
  const moves = [[alice, 0], [bob, 3], [alice, 1], [bob, 4]];
  let seq = 2;
  for (const [p, sq] of moves) {
    await p.click(`#board button[aria-label="square ${sq}"]`);
    await settled(pages, ++seq);
  }

  // bob moves out of turn (the page disables his squares, so this is the
  // request a stale or modified client would send): the server refuses it
  // and bob's page shows why; nothing changes on either page
  const before = await Promise.all(pages.map(board));
  await bob.evaluate(() => window.ttt.room.dispatch({ type: 'move', payload: { square: 8 } }, { dep: false }).catch(() => {}));
  await until(async () => /not_your_turn/.test((await shown(bob)).notice), 'bob sees not_your_turn',
    WAIT, async () => JSON.stringify(await shown(bob)));
  await settled(pages, seq);
  assert.deepEqual(await Promise.all(pages.map(board)), before, 'the refused move changed no board');
  assert.equal(await bob.isDisabled('#board button[aria-label="square 8"]'), true, 'bob cannot click out of turn');

  await alice.click('#board button[aria-label="square 2"]');
  await settled(pages, ++seq);
  for (const p of pages) {
    const v = await shown(p);
    assert.equal(v.board, 'X,X,X,O,O,,,,');
    assert.equal(v.turn, 'X wins!');
    for (let i = 0; i < 9; i++) assert.equal(await p.isDisabled(`#board button[aria-label="square ${i}"]`), true, `square ${i} after the win`);
    assert.equal(await p.isDisabled('#reset'), false, 'a player can start a new game');
  }
  // the server agrees
  const snap = await env.serverState(ROOM);
  assert.equal(snap.seq, seq);
  assert.deepEqual(snap.state.board, ['X', 'X', 'X', 'O', 'O', '', '', '', '']);
  assert.equal(snap.state.winner, 'X');
}));
