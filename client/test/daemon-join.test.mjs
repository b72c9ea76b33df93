// join() against the real movexd rejects with a typed MovexError - code
// "unauthorized" (a refused static token: no retry), "forbidden" (no read
// right), "no_such_room" (not created on subscribe) - and presence between
// two library connections: set, others, the event, leaving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from '../../test/node_modules/ws/index.js';
import { startDaemon, makeConf, ROOT, TIMEOUT } from '../../test/integration/lib.mjs';
import { connect, memoryStorage, MovexError } from '../movex.js';

const T = { timeout: 60000 };
const FAST = { backoff: { base: 20, cap: 200 }, ping: false, connectTimeout: 2000 };
const client = (url, extra = {}) => connect(url, { WebSocket, storage: memoryStorage(), ...FAST, ...extra });
const MAKE_TOKEN = join(ROOT, 'scripts', 'make-token.mjs');

async function waitFor(cond, what, ms = TIMEOUT) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('join() rejects with unauthorized, forbidden and no_such_room', T, async () => {
  const keys = mkdtempSync(join(tmpdir(), 'movex-join-keys-'));
  const secret = join(keys, 'hs256.secret');
  execFileSync(process.execPath, [MAKE_TOKEN, '--gen-secret', secret]);
  const token = (sub, rooms) => execFileSync(process.execPath, [MAKE_TOKEN, '--hs256-secret-file', secret, '--sub', sub, '--rooms', rooms], { encoding: 'utf8' }).trim();
  const conf = makeConf({ global: ['auth jwt', `auth_hs256_secret_file ${secret}`], room: ['create_on_subscribe no'] });
  const d = await startDaemon({ conf });
  const conns = [];
  try {
    const bad = client(d.url, { token: 'not.a.token' });
    conns.push(bad);
    await assert.rejects(bad.join('todo:a'), (e) => e instanceof MovexError && e.code === 'unauthorized');
    assert.equal(bad.status, 'closed');

    const ann = client(d.url, { client: 'ann', token: token('ann', 'todo:*=read,write,create') });
    conns.push(ann);
    await assert.rejects(ann.join('secret:x'), (e) => e instanceof MovexError && e.code === 'forbidden' && e.room === 'secret:x');
    await assert.rejects(ann.join('todo:missing'), (e) => e instanceof MovexError && e.code === 'no_such_room');
    const room = await ann.join('todo:made', { create: { v: 1 } });
    assert.deepEqual(room.state, { v: 1 }, 'the connection goes on after refused joins');
    assert.equal(ann.status, 'open');
  } finally {
    for (const c of conns) await c.close();
    await d.stop();
    rmSync(keys, { recursive: true, force: true });
  }
});

test('presence between two library connections: set, others, event, leave', T, async () => {
  const d = await startDaemon({});
  const a = client(d.url, { client: 'ann' });
  const b = client(d.url, { client: 'bob' });
  try {
    const ra = await a.join('todo:pres');
    const rb = await b.join('todo:pres');
    assert.ok(Number.isInteger(a.connId) && Number.isInteger(b.connId) && a.connId !== b.connId);
    const seen = [];
    rb.on('presence', (list) => seen.push(list.map((p) => p.client)));
    await ra.presence.set({ editing: 'x' });
    await waitFor(() => rb.presence.others.length === 1, 'bob to see ann');
    assert.deepEqual(rb.presence.others, [{ client: 'ann', conn: a.connId, state: { editing: 'x' } }]);
    assert.deepEqual(ra.presence.others, [], 'bob shows nothing');
    await ra.leave();
    await waitFor(() => rb.presence.others.length === 0, 'ann to leave');
    assert.deepEqual(seen, [['ann'], []]);
    assert.equal(rb.seq, 0, 'presence is not state');
  } finally {
    await a.close();
    await b.close();
    await d.stop();
  }
});
