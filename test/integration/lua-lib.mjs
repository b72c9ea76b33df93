// Helpers of the Lua reducer tests (lua.test.mjs, lua-sandbox.test.mjs).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checksum } from '../../client/movex.js';
import { connectHello, applyPatch, waitFor, ROOT } from './lib.mjs';

export const TTT = join(ROOT, 'examples/tictactoe.lua');
export const CHAT = join(ROOT, 'examples/chat.lua');

// A directory of reducer files for one test; removed by cleanup().
export function luaFiles(files) {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-lua-'));
  const paths = {};
  for (const [name, text] of Object.entries(files)) {
    paths[name] = join(dir, name);
    writeFileSync(paths[name], text);
  }
  return { dir, paths, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

// A conf with room types `types` ({ttt: '/abs/file.lua', ...}; extra lines
// per type in `lines`) and a json default.
export function luaConf(types, lines = {}) {
  let s = 'log_level info\nroom default {\n    reducer json\n    create_on_subscribe yes\n}\n';
  for (const [type, file] of Object.entries(types)) {
    s += `room ${type} {\n    reducer lua:${file}\n    create_on_subscribe yes\n${(lines[type] || []).map((l) => `    ${l}\n`).join('')}}\n`;
  }
  return s;
}

// A client that follows a room by applying the effects of its own acks and
// of fwds, checking every checksum.
export async function follower(d, id, room) {
  const c = await connectHello(d, id);
  const snap = await c.request({ type: 'subscribe', room });
  assert.equal(snap.type, 'snapshot', JSON.stringify(snap));
  c.state = snap.state;
  c.seq = snap.seq;
  c.n = snap.next_n;
  c.fwds = [];
  c.ws.on('message', (data) => {
    const m = JSON.parse(String(data));
    if (m.type !== 'fwd' || m.room !== room) return;
    assert.ok(Array.isArray(m.effects), `fwd carries effects: ${JSON.stringify(m)}`);
    assert.equal(m.seq, c.seq + 1);
    c.state = applyPatch(c.state, m.effects);
    c.seq = m.seq;
    assert.equal(checksum(c.state), m.checksum);
    c.fwds.push(m);
  });
  c.act = async (action, extra = {}) => {
    const n = extra.n ?? c.n++;
    const r = await c.request({ type: 'action', room, n, action, ...extra });
    if (r.type === 'ack' && !r.duplicate) {
      assert.ok(Array.isArray(r.effects), `ack carries effects: ${JSON.stringify(r)}`);
      assert.equal(r.seq, c.seq + 1);
      c.state = applyPatch(c.state, r.effects);
      c.seq = r.seq;
      assert.equal(checksum(c.state), r.checksum);
    }
    return r;
  };
  return c;
}

// Wait until every follower has applied seq (fwds are in flight).
export async function caughtUp(clients, seq) {
  await waitFor(() => clients.every((c) => c.seq >= seq), `followers at seq ${seq}`);
}

