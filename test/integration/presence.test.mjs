// Presence (docs/PROTOCOL.md "Presence"): ephemeral state per connection
// per room - announced to the room's other subscribers, listed in the
// subscribe reply, gone (left:true) on clear, unsubscribe and disconnect,
// coalesced and rate-limited, bounded by max_presence_bytes, set with the
// write right and seen with read; never in seq, checksum or storage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { ROOT, Client, withDaemon, connectHello, makeConf, patchAction, startDaemon } from './lib.mjs';

const presence = (room, state) => ({ type: 'presence', room, state });

async function join(d, client, room) {
  const c = await connectHello(d, client);
  const s = await c.request({ type: 'subscribe', room });
  assert.equal(s.type, 'snapshot', JSON.stringify(s));
  return { c, sub: s };
}

test('welcome carries a conn id unique per connection, also for the same client id', async () => {
  await withDaemon({}, async (d) => {
    const a = await Client.connect(d.url);
    const b = await Client.connect(d.url);
    const wa = await a.hello('same');
    const wb = await b.hello('same');
    assert.ok(Number.isInteger(wa.conn) && wa.conn > 0, JSON.stringify(wa));
    assert.ok(Number.isInteger(wb.conn) && wb.conn > 0);
    assert.notEqual(wa.conn, wb.conn);
    await a.close();
    await b.close();
  });
});

test('set, see, list in the subscribe reply, clear, unsubscribe and disconnect', async () => {
  await withDaemon({}, async (d) => {
    const room = 'pres:a';
    const { c: a } = await join(d, 'alice', room);
    const { c: b, sub: bsub } = await join(d, 'bob', room);
    assert.deepEqual(bsub.presence, [], 'a subscribe reply always lists the others (none yet)');
    const ok = await a.request(presence(room, { editing: 'x', cursor: [1, 2] }));
    assert.deepEqual(ok, { type: 'presence_ok', id: ok.id, room });
    const seen = await b.next((m) => m.type === 'presence');
    assert.equal(seen.room, room);
    assert.equal(seen.client, 'alice');
    assert.ok(Number.isInteger(seen.conn));
    assert.deepEqual(seen.state, { editing: 'x', cursor: [1, 2] });
    assert.equal(a.all.filter((m) => m.type === 'presence').length, 0, 'the sender is not told about itself');

    // a newcomer gets the others' presence in its subscribe reply (snapshot and actions)
    const { c: c3, sub } = await join(d, 'carol', room);
    assert.deepEqual(sub.presence, [{ client: 'alice', conn: seen.conn, state: { editing: 'x', cursor: [1, 2] } }]);
    const since = { seq: sub.seq, checksum: sub.checksum };
    const again = await c3.request({ type: 'subscribe', room, since });
    assert.equal(again.type, 'actions');
    assert.equal(again.presence.length, 1);
    const viaSync = await c3.request({ type: 'sync', room, since });
    assert.equal(viaSync.presence, undefined, 'sync replies carry no presence');
    const viaGet = await c3.request({ type: 'get', room });
    assert.equal(viaGet.presence, undefined, 'get replies carry no presence');

    // presence is not state: seq and checksum do not move
    const g = await b.request({ type: 'get', room });
    assert.equal(g.seq, 0);
    assert.deepEqual(g.state, {});

    // clear: left:true
    await a.request(presence(room, null));
    const left = await b.next((m) => m.type === 'presence');
    assert.deepEqual(left, { type: 'presence', room, client: 'alice', conn: seen.conn, left: true });
    await c3.next((m) => m.type === 'presence' && m.left);

    // unsubscribe: left:true
    await b.request(presence(room, 'here'));
    const bseen = await a.next((m) => m.type === 'presence' && m.client === 'bob');
    await c3.next((m) => m.type === 'presence' && m.client === 'bob' && !m.left);
    assert.equal((await b.request({ type: 'unsubscribe', room })).type, 'unsubscribed');
    const bleft = await a.next((m) => m.type === 'presence' && m.client === 'bob');
    assert.deepEqual(bleft, { type: 'presence', room, client: 'bob', conn: bseen.conn, left: true });

    // disconnect: left:true
    await c3.request(presence(room, { n: 1 }));
    const cseen = await a.next((m) => m.type === 'presence' && m.client === 'carol');
    c3.ws.terminate();
    const cleft = await a.next((m) => m.type === 'presence' && m.client === 'carol');
    assert.deepEqual(cleft, { type: 'presence', room, client: 'carol', conn: cseen.conn, left: true });
    const { sub: late } = await join(d, 'dave', room);
    assert.deepEqual(late.presence, [], 'nobody left with a presence');
    await a.close();
    await b.close();
  });
});

test('updates are coalesced per connection (the latest wins) and rate-limited', async () => {
  await withDaemon({}, async (d) => {
    const room = 'pres:burst';
    const { c: a } = await join(d, 'fast', room);
    const { c: b } = await join(d, 'watcher', room);
    const N = 200;
    for (let i = 1; i <= N; i++) a.send({ ...presence(room, { i }), id: 1000 + i });
    await a.next((m) => m.id === 1000 + N, 'the last presence_ok');
    assert.equal(a.all.filter((m) => m.type === 'presence_ok').length, N, 'every request is answered');
    await b.next((m) => m.type === 'presence' && m.state.i === N, 'the latest state reaches the watcher');
    const got = b.all.filter((m) => m.type === 'presence');
    assert.ok(got.length < N / 2, `${got.length} announcements for ${N} updates`);
    const order = got.map((m) => m.state.i);
    assert.deepEqual(order, [...order].sort((x, y) => x - y), 'never an older state after a newer one');
    await a.close();
    await b.close();
  });
});

test('bounds: max_presence_room_bytes caps the room total (too_large), so the subscribe reply stays bounded', async () => {
  const conf = makeConf({ room: ['max_presence_bytes 100', 'max_presence_room_bytes 250'] });
  await withDaemon({ conf }, async (d) => {
    const room = 'pres:roomcap';
    const str = (n) => 'x'.repeat(n - 2); // a JSON string of n bytes with its quotes
    const { c: a } = await join(d, 'ra', room);
    const { c: b } = await join(d, 'rb', room);
    const { c: c } = await join(d, 'rc', room);
    assert.equal((await a.request(presence(room, str(100)))).type, 'presence_ok');
    assert.equal((await b.request(presence(room, str(100)))).type, 'presence_ok');
    const over = await c.request(presence(room, str(51))); // request() matches the reply by its id
    assert.equal(over.type, 'error');
    assert.equal(over.code, 'too_large');
    assert.match(over.message, /251 bytes.*max_presence_room_bytes 250/);
    assert.equal((await c.request(presence(room, str(50)))).type, 'presence_ok', 'exactly at the cap fits');
    // replacing one's own state counts its new size only, not both
    assert.equal((await b.request(presence(room, str(100)))).type, 'presence_ok');
    assert.equal((await b.request(presence(room, str(99)))).type, 'presence_ok');
    assert.equal((await b.request(presence(room, str(100)))).type, 'presence_ok');
    assert.equal((await b.request(presence(room, str(1 + 100)))).code, 'too_large', 'max_presence_bytes still applies');
    // the newcomer's subscribe reply lists at most the cap
    const { c: n, sub } = await join(d, 'rn', room);
    const listed = sub.presence.reduce((t, p) => t + JSON.stringify(p.state).length, 0);
    assert.equal(listed, 250);
    assert.equal((await n.request(presence(room, 1))).code, 'too_large', 'the room is full');
    // clearing and disconnecting give the bytes back
    assert.equal((await a.request(presence(room, null))).type, 'presence_ok');
    assert.equal((await n.request(presence(room, str(100)))).type, 'presence_ok');
    assert.equal((await c.request(presence(room, str(51)))).code, 'too_large');
    await b.close();
    await n.next((m) => m.type === 'presence' && m.client === 'rb' && m.left === true);
    assert.equal((await c.request(presence(room, str(100)))).type, 'presence_ok');
    const { sub: sub2, c: n2 } = await join(d, 'rn2', room);
    assert.deepEqual(sub2.presence.map((p) => p.client).sort(), ['rc', 'rn']);
    await a.close();
    await c.close();
    await n.close();
    await n2.close();
  });
});

test('bounds: max_presence_bytes (too_large), state required, must be subscribed, room must exist', async () => {
  const conf = makeConf({ room: ['max_presence_bytes 100'], extra: 'room off {\n    max_presence_bytes 0\n}' });
  await withDaemon({ conf }, async (d) => {
    const room = 'pres:bounds';
    const { c: a } = await join(d, 'bounded', room);
    const { c: b } = await join(d, 'other', room);
    const fits = 'x'.repeat(98); // "xxx..." with quotes: 100 bytes
    assert.equal((await a.request(presence(room, fits))).type, 'presence_ok');
    await b.next((m) => m.type === 'presence');
    const big = await a.request(presence(room, `${fits}x`));
    assert.equal(big.type, 'error');
    assert.equal(big.code, 'too_large');
    assert.match(big.message, /101 bytes.*max_presence_bytes 100/);
    const noState = await a.request({ type: 'presence', room });
    assert.equal(noState.code, 'bad_request');
    assert.match(noState.message, /"state" is required/);
    const notSub = await a.request(presence('pres:elsewhere', 1));
    assert.equal(notSub.code, 'no_such_room');
    await a.request({ type: 'subscribe', room: 'pres:two' });
    await a.request({ type: 'unsubscribe', room: 'pres:two' });
    assert.equal((await a.request(presence('pres:two', 1))).code, 'not_subscribed');
    await a.request({ type: 'subscribe', room: 'off:x' });
    assert.equal((await a.request(presence('off:x', 1))).code, 'too_large', 'max_presence_bytes 0: presence off');
    assert.equal((await a.request(presence('off:x', null))).type, 'presence_ok', 'clearing is always fine');
    assert.equal((await a.request(presence(room, { deep: [[[[1]]]] }))).type, 'presence_ok');
    // refused updates changed nothing: the watcher saw only the accepted ones
    const last = await b.next((m) => m.type === 'presence' && typeof m.state === 'object');
    assert.deepEqual(last.state, { deep: [[[[1]]]] });
    assert.equal(b.all.filter((m) => m.type === 'presence').length, 2);
    await a.close();
    await b.close();
  });
});

test('presence is never stored: after a restart nobody has one', async () => {
  const dir = mkdtempSync(pathJoin(tmpdir(), 'movexd-pres-'));
  try {
    let d = await startDaemon({ dir, keepDir: true });
    const room = 'pres:restart';
    const { c: a } = await join(d, 'p1', room);
    await a.request(presence(room, { here: true }));
    assert.equal((await a.request(patchAction(room, 1, [{ op: 'add', path: '/x', value: 1 }]))).type, 'ack');
    await a.close();
    await d.stop();
    d = await startDaemon({ dir, keepDir: true });
    const { c: b, sub } = await join(d, 'p2', room);
    assert.deepEqual(sub.presence, []);
    assert.equal(sub.seq, 1);
    await b.close();
    await d.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- rights (auth jwt) ----

let KEYS, SECRET_FILE;
const MAKE_TOKEN = pathJoin(ROOT, 'scripts', 'make-token.mjs');
const token = (sub, rooms) => execFileSync(process.execPath, [MAKE_TOKEN, '--hs256-secret-file', SECRET_FILE, '--sub', sub, '--rooms', rooms], { encoding: 'utf8' }).trim();
before(() => {
  KEYS = mkdtempSync(pathJoin(tmpdir(), 'movexd-pres-keys-'));
  SECRET_FILE = pathJoin(KEYS, 'hs256.secret');
  execFileSync(process.execPath, [MAKE_TOKEN, '--gen-secret', SECRET_FILE]);
});
after(() => rmSync(KEYS, { recursive: true, force: true }));

test('rights: setting needs write (forbidden otherwise), seeing needs read', async () => {
  const conf = `log_level info
auth jwt
auth_hs256_secret_file ${SECRET_FILE}
room default {
    create_on_subscribe yes
    anonymous read
}
`;
  await withDaemon({ conf }, async (d) => {
    const room = 'pub:lobby';
    const connect = async (tok) => {
      const c = await Client.connect(d.url);
      c.send({ type: 'hello', ...(tok ? { token: tok } : {}) });
      const w = await c.next((m) => m.type === 'welcome');
      const s = await c.request({ type: 'subscribe', room });
      assert.equal(s.type, 'snapshot', JSON.stringify(s));
      return { c, w };
    };
    const { c: writer } = await connect(token('writer', 'pub:*=read,write,create'));
    const { c: reader } = await connect(token('reader', 'pub:*=read'));
    const { c: anon } = await connect(null);
    for (const c of [reader, anon]) {
      const r = await c.request(presence(room, 'me'));
      assert.equal(r.type, 'error');
      assert.equal(r.code, 'forbidden', JSON.stringify(r));
    }
    assert.equal((await writer.request(presence(room, { at: 1 }))).type, 'presence_ok');
    for (const c of [reader, anon]) {
      const m = await c.next((x) => x.type === 'presence');
      assert.equal(m.client, 'writer');
      assert.deepEqual(m.state, { at: 1 });
    }
    assert.equal(writer.all.filter((m) => m.type === 'presence').length, 0, 'refused presence is never announced');
    for (const c of [writer, reader, anon]) await c.close();
  });
});
