// Bad input: each malformed or disallowed request gets the documented error
// code (docs/PROTOCOL.md "Error codes"), the connection and the daemon keep
// serving, and no room changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withDaemon, connectHello, Client, patchAction, makeConf } from './lib.mjs';

const CONF = makeConf({
  global: ['max_depth 16', 'max_message_bytes 65536'],
  extra: 'room closed {\n    create_on_subscribe no\n}\n',
});
const ROOM = 'todo:keep';

// A daemon with one room holding some state, a writer and an observer.
async function fixture(d) {
  const w = await connectHello(d, 'writer');
  const obs = await connectHello(d, 'observer');
  assert.equal((await w.request({ type: 'create', room: ROOM, state: { a: 1 } })).type, 'created');
  for (const c of [w, obs]) assert.equal((await c.request({ type: 'subscribe', room: ROOM })).type, 'snapshot');
  assert.equal((await w.request(patchAction(ROOM, 1, [{ op: 'add', path: '/b', value: [1, 2] }]))).type, 'ack');
  await obs.next((m) => m.type === 'fwd');
  const head = await obs.request({ type: 'get', room: ROOM });
  return { w, obs, head };
}

// After a bad input: the connection answers ping, the room is unchanged,
// nothing else arrived on the connection, the observer saw no fwd.
async function assertServing(c, fx, what) {
  const p = await c.request({ type: 'ping' });
  assert.equal(p.type, 'pong', `${what}: ping after the bad input`);
  assert.deepEqual(c.msgs, [], `${what}: no unexpected messages: ${JSON.stringify(c.msgs).slice(0, 300)}`);
  const g = await fx.obs.request({ type: 'get', room: ROOM });
  assert.equal(g.seq, fx.head.seq, `${what}: room seq unchanged`);
  assert.equal(g.checksum, fx.head.checksum, `${what}: room checksum unchanged`);
  assert.ok(!fx.obs.msgs.some((m) => m.type === 'fwd'), `${what}: no fwd`);
}

// Send `raw` (string, or [data, opts] for ws.send) and expect an error with `code`.
async function expectError(c, raw, code, what, id) {
  if (Array.isArray(raw)) c.sendRaw(raw[0], raw[1]);
  else c.send(raw);
  const e = await c.next((m) => m.type === 'error' || m.type === 'reject', `error for ${what}`);
  assert.equal(e.type, 'error', `${what}: ${JSON.stringify(e)}`);
  assert.equal(e.code, code, `${what}: code (${JSON.stringify(e)})`);
  assert.equal(typeof e.message, 'string', `${what}: message`);
  if (id !== undefined) assert.equal(e.id, id, `${what}: the error echoes id`);
  return e;
}

test('not a JSON object, invalid JSON, invalid UTF-8, binary frames, duplicate keys -> bad_json', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const fx = await fixture(d);
    const c = await connectHello(d, 'bad');
    const cases = [
      ['hello world', 'non-JSON text'],
      ['', 'empty text message'],
      ['{"type":"ping","id":1', 'truncated JSON'],
      ['{"type":"ping","id":1} {}', 'two JSON values'],
      ["{'type':'ping'}", 'single quotes'],
      ['[1,2]', 'top-level array'],
      ['[{"type":"ping","id":1}]', 'request wrapped in an array'],
      ['42', 'top-level number'],
      ['"ping"', 'top-level string'],
      ['null', 'top-level null'],
      ['true', 'top-level true'],
      ['{"type":"ping","id":1,"id":2}', 'duplicate key id'],
      ['{"type":"get","id":3,"room":"todo:keep","room":"todo:keep"}', 'duplicate key room'],
      ['{"type":"create","id":4,"room":"todo:dupstate","state":{"a":1,"a":2}}', 'duplicate key in a nested object'],
      [[Buffer.from('{"type":"ping","id":5,"x":"\xff"}', 'latin1'), { binary: false }], 'invalid UTF-8 byte 0xff in a text frame'],
      [[Buffer.from([0x7b, 0x22, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d]), { binary: false }], 'overlong UTF-8 (c0 af)'],
      [[Buffer.from('{"type":"ping","id":6,"x":"\xed\xa0\x80"}', 'latin1'), { binary: false }], 'UTF-8 encoded surrogate (ed a0 80)'],
      [[Buffer.from('{"type":"ping","id":7,"x":"\xe2\x82"}', 'latin1'), { binary: false }], 'truncated UTF-8 sequence'],
      [[Buffer.from('{"type":"ping","id":8}'), { binary: true }], 'binary frame'],
      [[Buffer.from([0, 1, 2, 255]), { binary: true }], 'binary garbage'],
    ];
    for (const [raw, what] of cases) {
      await expectError(c, raw, 'bad_json', what);
      await assertServing(c, fx, what);
    }
    // The duplicate-key create did not create the room.
    const g = await c.request({ type: 'get', room: 'todo:dupstate' });
    assert.equal(g.code, 'no_such_room');
    await c.close();
    await fx.w.close();
    await fx.obs.close();
  });
});

test('ill-typed fields -> bad_request (id echoed when valid), n not used up', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const fx = await fixture(d);
    const c = fx.w; // subscribed writer whose highest n is 1
    const act = (extra) => ({ type: 'action', room: ROOM, n: 2, action: { type: 'patch', payload: [{ op: 'add', path: '/z', value: 1 }] }, ...extra });
    const cases = [
      [{ type: 'ping', id: '5' }, 'id as string', undefined],
      [{ type: 'ping', id: -1 }, 'id negative', undefined],
      [{ type: 'ping', id: 1.5 }, 'id fractional', undefined],
      [{ type: 'get', id: 2 ** 53, room: ROOM }, 'id above 2^53-1', undefined],
      [{ type: 'get', room: ROOM }, 'get without id', undefined],
      [{ type: 7, id: 11 }, 'type as number', 11],
      [{ id: 12 }, 'no type', 12],
      [{ ...act({ n: -1 }), id: 13 }, 'n = -1', 13],
      [{ ...act({ n: 1.5 }), id: 14 }, 'n = 1.5', 14],
      [{ ...act({ n: '1' }), id: 15 }, 'n = "1"', 15],
      [{ ...act({ n: 0 }), id: 16 }, 'n = 0', 16],
      [{ ...act({ n: 2 ** 53 }), id: 17 }, 'n = 2^53', 17],
      [{ ...act({ n: undefined }), id: 18 }, 'n missing', 18],
      [{ ...act({ n: null }), id: 19 }, 'n null', 19],
      [{ type: 'get', id: 20, room: 5 }, 'room as number', 20],
      [{ type: 'subscribe', id: 21, room: ['todo:keep'] }, 'room as array', 21],
      [{ type: 'subscribe', id: 22 }, 'room missing', 22],
      [{ ...act({ action: 'patch' }), id: 23 }, 'action as string', 23],
      [{ ...act({ action: { payload: [] } }), id: 24 }, 'action without type', 24],
      [{ ...act({ action: { type: 1, payload: [] } }), id: 25 }, 'action.type as number', 25],
      [{ ...act({ dep: 2 }), id: 26 }, 'dep = n', 26],
      [{ ...act({ dep: 5 }), id: 27 }, 'dep > n', 27],
      [{ ...act({ dep: 0 }), id: 28 }, 'dep = 0', 28],
      [{ ...act({ dep: '1' }), id: 29 }, 'dep as string', 29],
      [{ ...act({ base: -1 }), id: 30 }, 'base negative', 30],
      [{ ...act({ base: 'x' }), id: 31 }, 'base as string', 31],
      [{ ...act({ strict: 'yes', base: 1 }), id: 32 }, 'strict as string', 32],
      [{ ...act({ strict: true }), id: 33 }, 'strict without base', 33],
      [{ type: 'sync', id: 34, room: ROOM, since: 5 }, 'since as number', 34],
      [{ type: 'sync', id: 35, room: ROOM, since: { seq: 1 } }, 'since without checksum', 35],
      [{ type: 'sync', id: 36, room: ROOM, since: { seq: 1, checksum: 'abc' } }, 'since.checksum too short', 36],
      [{ type: 'sync', id: 37, room: ROOM, since: { seq: 1, checksum: 'z'.repeat(32) } }, 'since.checksum not hex', 37],
      [{ type: 'sync', id: 38, room: ROOM, since: { seq: -1, checksum: '0'.repeat(32) } }, 'since.seq negative', 38],
      [{ type: 'subscribe', id: 39, room: ROOM, since: { seq: 0.5, checksum: '0'.repeat(32) } }, 'since.seq fractional', 39],
      [{ type: 'hello', id: 40 }, 'second hello', 40],
      [{ type: 'hello', id: 41, client: 'someone-else' }, 'second hello with another client', 41],
    ];
    for (const [msg, what, id] of cases) {
      await expectError(c, msg, 'bad_request', what, id);
      await assertServing(c, fx, what);
    }
    // None of the bad actions used up n=2, and the client id did not change.
    const ok = await c.request(act({}));
    assert.equal(ok.type, 'ack', `n=2 after envelope errors: ${JSON.stringify(ok)}`);
    const f = await fx.obs.next((m) => m.type === 'fwd');
    assert.equal(f.client, 'writer', 'a second hello does not change the client id');
    await fx.obs.close();
    await c.close();
  });
});

test('bad hello: client id with bad characters or too long -> bad_request, then a good hello works', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const c = await Client.connect(d.url);
    for (const client of ['', 'a b', 'x'.repeat(129), 'é', 7, ['a']])
      await expectError(c, { type: 'hello', id: 1, client }, 'bad_request', `hello client ${JSON.stringify(client).slice(0, 20)}`, 1);
    await expectError(c, { type: 'hello', id: 2, client: 'ok', token: 5 }, 'bad_request', 'token as number', 2);
    const w = await c.hello('x'.repeat(128));
    assert.equal(w.client, 'x'.repeat(128), '128-byte client id is fine');
    await c.close();
    const anon = await Client.connect(d.url);
    anon.send({ type: 'hello', id: 9 });
    const wa = await anon.next((m) => m.type === 'welcome');
    assert.equal(wa.id, 9, 'welcome echoes the hello id');
    assert.match(wa.client, /^anon-[0-9a-f]{16}$/, 'server-picked client id');
    assert.match(wa.server, /^movexd\//);
    for (const k of ['max_message_bytes', 'max_depth', 'max_queue_bytes', 'max_rooms', 'dedup_window'])
      assert.equal(typeof wa.limits[k], 'number', `welcome.limits.${k}`);
    assert.equal(wa.limits.max_message_bytes, 65536);
    assert.equal(wa.limits.max_depth, 16);
    await anon.close();
  });
});

test('unknown message type -> unknown_type; requests before hello -> hello_first', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const fx = await fixture(d);
    const c = await Client.connect(d.url);
    const early = [
      [{ type: 'action', id: 1, room: ROOM, n: 1, action: { type: 'patch', payload: [{ op: 'add', path: '/x', value: 1 }] } }, 'action before hello'],
      [{ type: 'subscribe', id: 2, room: ROOM }, 'subscribe before hello'],
      [{ type: 'create', id: 3, room: 'todo:early' }, 'create before hello'],
      [{ type: 'get', id: 4, room: ROOM }, 'get before hello'],
      [{ type: 'sync', id: 5, room: ROOM, since: { seq: 0, checksum: '0'.repeat(32) } }, 'sync before hello'],
      [{ type: 'ping', id: 6 }, 'ping before hello'],
    ];
    for (const [msg, what] of early) await expectError(c, msg, 'hello_first', what, msg.id);
    await c.hello('late-hello');
    await assertServing(c, fx, 'after hello_first');
    const g = await c.request({ type: 'get', room: 'todo:early' });
    assert.equal(g.code, 'no_such_room', 'create before hello did not create');
    for (const type of ['frobnicate', 'Ping', 'snapshot', 'ack', '']) {
      await expectError(c, { type, id: 50 }, 'unknown_type', `type ${JSON.stringify(type)}`, 50);
      await assertServing(c, fx, `type ${type}`);
    }
    await c.close();
    await fx.w.close();
    await fx.obs.close();
  });
});

test('unknown rooms -> no_such_room; not subscribed -> not_subscribed; create existing -> room_exists', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const fx = await fixture(d);
    const c = await connectHello(d, 'rooms');
    const since = { seq: 0, checksum: '0'.repeat(32) };
    const missing = [
      [{ type: 'get', room: 'todo:nope' }, 'get'],
      [{ type: 'sync', room: 'todo:nope', since }, 'sync'],
      [{ type: 'action', room: 'todo:nope', n: 1, action: { type: 'patch', payload: [] } }, 'action'],
      [{ type: 'unsubscribe', room: 'todo:nope' }, 'unsubscribe'],
      [{ type: 'subscribe', room: 'closed:nope' }, 'subscribe to a missing room (create_on_subscribe no)'],
    ];
    for (const [msg, what] of missing) {
      await expectError(c, { ...msg, id: 70 }, 'no_such_room', `${what} of an unknown room`, 70);
      await assertServing(c, fx, what);
    }
    // the closed: type still allows explicit create
    assert.equal((await c.request({ type: 'create', room: 'closed:made' })).type, 'created');
    assert.equal((await c.request({ type: 'subscribe', room: 'closed:made' })).type, 'snapshot');
    await expectError(c, { type: 'create', id: 71, room: ROOM, state: { other: true } }, 'room_exists', 'create of an existing room', 71);
    await assertServing(c, fx, 'room_exists');
    await expectError(c, { ...patchAction(ROOM, 1, [{ op: 'add', path: '/x', value: 1 }]), id: 72 }, 'not_subscribed', 'action without subscription', 72);
    await assertServing(c, fx, 'not_subscribed action');
    await expectError(c, { type: 'unsubscribe', id: 73, room: ROOM }, 'not_subscribed', 'unsubscribe without subscription', 73);
    await assertServing(c, fx, 'not_subscribed unsubscribe');
    // not_subscribed does not use up n
    assert.equal((await c.request({ type: 'subscribe', room: ROOM })).type, 'snapshot');
    const ok = await c.request(patchAction(ROOM, 1, [{ op: 'add', path: '/x', value: 1 }]));
    assert.equal(ok.type, 'ack', JSON.stringify(ok));
    await c.close();
    await fx.w.close();
    await fx.obs.close();
  });
});

test('bad room ids -> bad_room', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const fx = await fixture(d);
    const c = await connectHello(d, 'ids');
    const bad = ['', 'a'.repeat(201), `todo:${'x'.repeat(196)}`, 'todo:a b', 'todo:é', 'todo/x', 'todo:"x"', ':x', ':', 'todo:x\n', 'todo:\t'];
    for (const room of bad) {
      for (const type of ['subscribe', 'create', 'get']) {
        const what = `${type} ${JSON.stringify(room).slice(0, 30)} (${Buffer.byteLength(room)} bytes)`;
        await expectError(c, { type, id: 80, room }, 'bad_room', what, 80);
        await assertServing(c, fx, what);
      }
    }
    // Boundaries that are fine: 200 bytes, a type without ':', dots, dashes, more colons.
    for (const room of [`todo:${'y'.repeat(195)}`, 'plain', 'a.b-c_d:E:F:9']) {
      const s = await c.request({ type: 'subscribe', room });
      assert.equal(s.type, 'snapshot', `subscribe ${room.slice(0, 30)}: ${JSON.stringify(s)}`);
      assert.equal(s.room, room);
    }
    // A NUL in a room id is refused, as bad_room or (a \u0000 anywhere) bad_json.
    c.send({ type: 'get', id: 81, room: 'to\u0000do:x' });
    const nul = await c.next((m) => m.type === 'error', 'error for a NUL in a room id');
    assert.ok(['bad_room', 'bad_json'].includes(nul.code), `room id with NUL: ${JSON.stringify(nul)}`);
    await assertServing(c, fx, 'room id with NUL');
    await c.close();
    await fx.w.close();
    await fx.obs.close();
  });
});

function nested(depth, leaf = 1) {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 ? { k: v } : [v];
  return v;
}

test('nesting deeper than max_depth 16 -> too_deep (id echoed), nothing created or applied', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const fx = await fixture(d);
    const c = await connectHello(d, 'deep');
    await expectError(c, { type: 'create', id: 90, room: 'todo:deep', state: nested(20) }, 'too_deep', 'create, state nested 20 deep', 90);
    await assertServing(c, fx, 'too_deep create');
    assert.equal((await c.request({ type: 'get', room: 'todo:deep' })).code, 'no_such_room', 'too_deep create did not create');
    await expectError(c, { type: 'ping', id: 91, x: nested(40) }, 'too_deep', 'ping with a deep extra field', 91);
    await assertServing(c, fx, 'too_deep ping');
    // An action whose payload nests too deep: too_deep, nothing applied.
    c.send({ ...patchAction(ROOM, 1, [{ op: 'add', path: '/deep', value: nested(30) }]), id: 92 });
    const r = await c.next((m) => m.id === 92);
    assert.equal(r.code, 'too_deep', `deep action: ${JSON.stringify(r)}`);
    await assertServing(c, fx, 'too_deep action');
    await c.close();
    await fx.w.close();
    await fx.obs.close();
  });
});

// max_depth counts arrays and objects ("Deepest JSON nesting accepted in an
// inbound message (arrays and objects)", conf/movexd.conf; "the message
// object is depth 1", docs/PROTOCOL.md): 16 nested containers are accepted
// whatever scalars they hold, 17 are not.
test('max_depth 16 counts containers: 16 levels (message + 15) with scalar leaves are accepted', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const fx = await fixture(d);
    const c = await connectHello(d, 'limit');
    const empty = await c.request({ type: 'ping', x: nested(14, []) });
    assert.equal(empty.type, 'pong', 'message + 15 arrays, innermost empty');
    const withLeaf = await c.request({ type: 'ping', x: nested(15) });
    assert.equal(withLeaf.type, 'pong', `message + 15 containers holding a number: ${JSON.stringify(withLeaf)}`);
    const ok = await c.request({ type: 'create', room: 'todo:deep-ok', state: nested(15) });
    assert.equal(ok.type, 'created', `create with a state 15 containers deep (message depth 16): ${JSON.stringify(ok)}`);
    await expectError(c, { type: 'create', id: 95, room: 'todo:deep-no', state: nested(16) }, 'too_deep', 'state 16 containers deep (message depth 17)', 95);
    await assertServing(c, fx, 'depth 17');
    await c.close();
    await fx.w.close();
    await fx.obs.close();
  });
});

test('max_depth 1 (the documented minimum): flat messages such as hello, ping, subscribe work', async () => {
  await withDaemon({ conf: makeConf({ global: ['max_depth 1'] }) }, async (d) => {
    const c = await Client.connect(d.url);
    c.send({ type: 'hello', client: 'flat' });
    const w = await c.next((m) => m.type === 'welcome' || m.type === 'error', 'welcome');
    assert.equal(w.type, 'welcome', `hello with max_depth 1: ${JSON.stringify(w)}`);
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    assert.equal((await c.request({ type: 'subscribe', room: 'todo:flat' })).type, 'snapshot');
    const deep = await c.request({ type: 'ping', x: [] });
    assert.equal(deep.code, 'too_deep', 'an array inside the message is depth 2');
    await c.close();
  });
});

test('nesting far beyond max_depth (5000 levels, past the parser\'s own limit) -> too_deep', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const fx = await fixture(d);
    const c = await connectHello(d, 'deeper');
    const huge = `{"type":"ping","id":93,"x":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    await expectError(c, huge, 'too_deep', 'nesting 5000 deep', 93);
    await assertServing(c, fx, 'nesting 5000 deep');
    await c.close();
    await fx.w.close();
    await fx.obs.close();
  });
});

test('oversized message (100 KB > max_message_bytes 64k) -> close 1009; other connections keep working', async () => {
  await withDaemon({ conf: CONF }, async (d) => {
    const fx = await fixture(d);
    const big = await connectHello(d, 'big');
    assert.equal((await big.request({ type: 'subscribe', room: ROOM })).type, 'snapshot');
    big.send(patchAction(ROOM, 1, [{ op: 'add', path: '/huge', value: 'x'.repeat(100 * 1024) }]));
    const closed = await big.closed;
    assert.equal(closed.code, 1009, `close code: ${JSON.stringify(closed)}`);
    // Just under the limit is fine.
    const under = await fx.w.request(patchAction(ROOM, 2, [{ op: 'add', path: '/s', value: 'y'.repeat(60000) }]));
    assert.equal(under.type, 'ack', 'a 60 KB message is accepted');
    const f = await fx.obs.next((m) => m.type === 'fwd' && m.seq === under.seq);
    assert.equal(f.client, 'writer');
    const g = await fx.obs.request({ type: 'get', room: ROOM });
    assert.equal(g.state.huge, undefined, 'the oversized action was not applied');
    assert.equal(g.seq, fx.head.seq + 1);
    assert.match(d.stderr, /event=message_too_large/);
    // A fresh connection works too.
    const again = await connectHello(d, 'big');
    assert.equal((await again.request({ type: 'ping' })).type, 'pong');
    await again.close();
    await fx.w.close();
    await fx.obs.close();
  });
});
