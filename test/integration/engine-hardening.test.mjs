// Issue #10, engine part, over real sockets: the admin: client-id namespace
// is the admin API's alone (hello and token sub refuse it, so a client can
// never answer an admin action's idempotency key in its place); tokens with
// a far-future exp (1e15, 1e300) are valid, not "expired" through an
// overflow; a request whose key holds U+0000 is refused with its id; n is
// bounded so next_n stays exact, and every integer field above 2^53-1 is
// refused with bad_request. docs/SECURITY.md and docs/PROTOCOL.md.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ROOT, Client, withDaemon, connectHello, patchAction, httpRequest, makeConf,
} from './lib.mjs';

const MAKE_TOKEN = join(ROOT, 'scripts', 'make-token.mjs');
let KEYS, SECRET_FILE, ADMIN_FILE;
const ADMIN_TOKEN = 'engine-hardening-admin-token-0123456789';

before(() => {
  KEYS = mkdtempSync(join(tmpdir(), 'movexd-engine-hard-'));
  SECRET_FILE = join(KEYS, 'hs256.secret');
  execFileSync(process.execPath, [MAKE_TOKEN, '--gen-secret', SECRET_FILE]);
  ADMIN_FILE = join(KEYS, 'admin-token');
  writeFileSync(ADMIN_FILE, `${ADMIN_TOKEN}\n`);
  chmodSync(ADMIN_FILE, 0o600);
});
after(() => rmSync(KEYS, { recursive: true, force: true }));

const token = (sub, claims = {}) => execFileSync(process.execPath, [MAKE_TOKEN, '--hs256-secret-file', SECRET_FILE,
  '--sub', sub, '--rooms', '*=read,write,create', '--claims', JSON.stringify(claims)], { encoding: 'utf8' }).trim();

const jwtConf = `log_level info\nauth jwt\nauth_hs256_secret_file ${SECRET_FILE}\nauth_leeway_ms 30s\n` +
  'room default {\n    reducer json\n    create_on_subscribe yes\n    anonymous none\n    authenticated none\n}\n';

// The first welcome or error for a hello, or {closed} when the server closed first.
async function hello(c, msg) {
  c.send({ type: 'hello', ...msg });
  return Promise.race([
    c.next((m) => m.type === 'welcome' || m.type === 'error', 'welcome or error'),
    c.closed.then((x) => ({ closed: x })),
  ]);
}

const adminPost = (d, room, body) => httpRequest(d, {
  method: 'POST', path: `/admin/rooms/${room}/actions`, body,
  headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
}).then((r) => ({ ...r, json: JSON.parse(r.body) }));

test('admin: namespace: a hello client "admin:K" is refused, and the admin\'s later action with key K is applied, not a duplicate', async () => {
  await withDaemon({ conf: makeConf({ global: [`admin_token_file ${ADMIN_FILE}`] }) }, async (d) => {
    const owner = await connectHello(d, 'owner');
    assert.equal((await owner.request({ type: 'subscribe', room: 'todo:ops' })).type, 'snapshot');

    // the take-over attempt of the issue: hello as admin:nightly-reset, then n = 1
    const mallory = await Client.connect(d.url);
    const r = await hello(mallory, { id: 9, client: 'admin:nightly-reset' });
    assert.equal(r.type, 'error', `hello with an admin: client id: ${JSON.stringify(r)}`);
    assert.equal(r.code, 'bad_request');
    assert.equal(r.id, 9, 'the refusal names the hello');
    assert.match(r.message, /reserved for the admin API/);
    const sub = await mallory.request({ type: 'subscribe', room: 'todo:ops' });
    assert.equal(sub.code, 'hello_first', 'no hello was accepted');
    const act = await mallory.request(patchAction('todo:ops', 1, [{ op: 'add', path: '/owned', value: 'mallory' }]));
    assert.equal(act.code, 'hello_first', `the action is not served: ${JSON.stringify(act)}`);
    // a case variant is a different id (ids are bytes) and stays allowed
    assert.equal((await hello(mallory, { client: 'Admin:nightly-reset' })).type, 'welcome');

    const post = await adminPost(d, 'todo:ops', { key: 'nightly-reset', action: { type: 'patch', payload: [{ op: 'add', path: '/reset', value: true }] } });
    assert.equal(post.status, 200, post.body);
    assert.equal(post.json.type, 'ack');
    assert.equal(post.json.duplicate, undefined, `the admin's action was applied, not answered from a client's outcome: ${post.body}`);
    const fwd = await owner.next((m) => m.type === 'fwd', 'fwd of the admin action');
    assert.equal(fwd.client, 'admin:nightly-reset');
    assert.deepEqual(fwd.action.payload, [{ op: 'add', path: '/reset', value: true }]);
    assert.ok(!owner.all.some((m) => m.type === 'fwd' && m.client !== 'admin:nightly-reset'), 'no fwd from a client named admin:');
    const again = await adminPost(d, 'todo:ops', { key: 'nightly-reset', action: { type: 'patch', payload: [] } });
    assert.equal(again.json.duplicate, true, 'the key is still exactly-once for the admin');
  });
});

test('admin: namespace: a validly signed token whose sub starts with admin: is refused (unauthorized, close 4001)', async () => {
  await withDaemon({ conf: jwtConf }, async (d) => {
    const c = await Client.connect(d.url);
    const r = await hello(c, { id: 3, token: token('admin:nightly-reset') });
    assert.equal(r.type, 'error', JSON.stringify(r));
    assert.equal(r.code, 'unauthorized');
    assert.equal(r.id, 3);
    assert.match(r.message, /admin:/);
    assert.equal((await c.closed).code, 4001);
    // a sub that merely contains it elsewhere is fine
    const ok = await Client.connect(d.url);
    assert.equal((await hello(ok, { token: token('ops-admin:x') })).type, 'welcome');
    await ok.close();
  });
});

test('far-future exp (1e15, 1e300, 2^63): the token is valid, requests are served, the connection stays open', async () => {
  await withDaemon({ conf: jwtConf }, async (d) => {
    for (const exp of [1e15, 1e300, 2 ** 63, Number.MAX_VALUE]) {
      const c = await Client.connect(d.url);
      const w = await hello(c, { token: token(`far-${String(exp).length}`, { exp }) });
      assert.equal(w.type, 'welcome', `exp ${exp}: ${JSON.stringify(w)}`);
      // each request re-checks expiry; the timer was armed at hello
      assert.equal((await c.request({ type: 'subscribe', room: 'todo:far' })).type, 'snapshot', `exp ${exp}: subscribe`);
      const a = await c.request(patchAction('todo:far', 1, [{ op: 'inc', path: '/n', value: 1 }]));
      assert.equal(a.type, 'ack', `exp ${exp}: action ${JSON.stringify(a)}`);
      assert.equal((await c.request({ type: 'ping' })).type, 'pong');
      assert.ok(!c.all.some((m) => m.type === 'error'), `exp ${exp}: no error: ${JSON.stringify(c.all)}`);
      await c.close();
    }
    assert.doesNotMatch(d.stderr, /token_expired|auth_failed/);
  });
});

test('an object key holding U+0000 is refused with bad_json carrying the request id; the connection goes on', async () => {
  await withDaemon({}, async (d) => {
    const c = await connectHello(d, 'nul');
    assert.equal((await c.request({ type: 'subscribe', room: 'todo:nul' })).type, 'snapshot');
    c.send('{"type":"action","id":41,"room":"todo:nul","n":1,"action":{"type":"patch","payload":[{"op":"add","path":"/a","value":{"k\\u0000":1}}]}}');
    const r = await c.next((m) => m.type === 'error' || m.id === 41, 'reply to the U+0000 request');
    assert.equal(r.id, 41, `the error names the request: ${JSON.stringify(r)}`);
    assert.equal(r.code, 'bad_json');
    // the top-level key itself
    c.send('{"type":"ping","id":42,"\\u0000":true}');
    const r2 = await c.next((m) => m.id === 42, 'reply to a NUL top-level key');
    assert.equal(r2.code, 'bad_json');
    // nothing was used up: n = 1 is still free
    const ok = await c.request(patchAction('todo:nul', 1, [{ op: 'add', path: '/a', value: 1 }]));
    assert.equal(ok.type, 'ack', JSON.stringify(ok));
    assert.equal(ok.seq, 1);
  });
});

test('a refused message names its id however the parser would have read it: escaped key, 1.0 or 1e2, whitespace after it, the last of duplicates', async () => {
  await withDaemon({}, async (d) => {
    const c = await connectHello(d, 'nulid');
    const bad = '"x":{"k\\u0000":1}';
    // each: the raw text and the id mx_proto_decode would have taken from it
    const cases = [
      [`{"type":"ping",${bad},"i\\u0064":51}`, 51],
      [`{"type":"ping",${bad},"\\u0069\\u0044":99,"\\u0069\\u0064":52}`, 52],
      [`{"type":"ping",${bad},"id":53.0}`, 53],
      [`{"type":"ping",${bad},"id":5.4e1}`, 54],
      [`{"type":"ping",${bad},"id":55\n}`, 55],
      [`{"type":"ping",${bad},"id":55\t,"y":1}`.replace('55', '56'), 56],
      [`{"id":1,"type":"ping",${bad},"id":57}`, 57],
    ];
    for (const [text, id] of cases) {
      c.send(text);
      const r = await c.next((m) => m.type === 'error', `error for ${text}`);
      assert.equal(r.id, id, `${text}: ${JSON.stringify(r)}`);
      assert.equal(r.code, 'bad_json');
    }
    // not an id the parser would take: no id, still an error, the connection goes on
    for (const text of [`{"type":"ping",${bad},"id":"58"}`, `{"type":"ping",${bad},"id":58.5}`, `{"type":"ping",${bad},"i\\u0064x":58}`]) {
      c.send(text);
      const r = await c.next((m) => m.type === 'error', `error for ${text}`);
      assert.equal(r.id, undefined, `${text}: ${JSON.stringify(r)}`);
    }
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
  });
});

test('n is at most 2^53-2 so next_n stays exact; id, n, base, dep and since.seq above 2^53-1 are bad_request', async () => {
  await withDaemon({}, async (d) => {
    const MAX_N = 2 ** 53 - 2;
    const c = await connectHello(d, 'big');
    assert.equal((await c.request({ type: 'subscribe', room: 'todo:big' })).type, 'snapshot');
    const over = await c.request(patchAction('todo:big', MAX_N + 1, [{ op: 'add', path: '/x', value: 1 }]));
    assert.equal(over.type, 'error', JSON.stringify(over));
    assert.equal(over.code, 'bad_request');
    assert.match(over.message, /2\^53-2/);
    const top = await c.request(patchAction('todo:big', MAX_N, [{ op: 'add', path: '/x', value: 1 }]));
    assert.equal(top.type, 'ack', JSON.stringify(top));
    assert.equal(top.n, MAX_N);
    const snap = await c.request({ type: 'get', room: 'todo:big' });
    assert.equal(snap.next_n, 2 ** 53 - 1, 'next_n is exactly 2^53-1');
    assert.ok(Number.isSafeInteger(snap.next_n));
    const dup = await c.request(patchAction('todo:big', MAX_N, [{ op: 'add', path: '/x', value: 1 }]));
    assert.equal(dup.duplicate, true);

    // every other integer field: 2^53 (and 2^53 + 2, which JSON text can
    // hold but a double cannot tell apart) is refused, and the message names
    // the bound (not "must be a positive integer", which 2^53 is)
    const checksum = snap.checksum;
    const atMost = /must be at most 2\^53-1 \(9007199254740991\)/;
    const bad = {
      n: [patchAction('todo:big', 2 ** 53, []), /"n" must be at most 2\^53-2/],
      base: [patchAction('todo:big', 5, [], { base: 2 ** 53 }), atMost],
      dep: [patchAction('todo:big', MAX_N, [], { dep: 2 ** 53 }), atMost],
      'dep[]': [patchAction('todo:big', MAX_N, [], { dep: [1, 2 ** 53 + 2] }), atMost],
      'since.seq': [{ type: 'sync', room: 'todo:big', since: { seq: 2 ** 53, checksum } }, atMost],
    };
    for (const [field, [msg, message]] of Object.entries(bad)) {
      const r = await c.request(msg);
      assert.equal(r.type, 'error', `${field}: ${JSON.stringify(r)}`);
      assert.equal(r.code, 'bad_request', `${field}: ${JSON.stringify(r)}`);
      assert.match(r.message, message, `${field}: ${JSON.stringify(r)}`);
      assert.ok(r.message.startsWith(`"${field.replace('[]', '')}"`), `${field} names itself: ${r.message}`);
      assert.doesNotMatch(r.message, /positive|non-negative/, `${field}: ${r.message}`);
    }
    // the integer past 2^53-1 is told apart from a value that is not one at all
    const frac = await c.request(patchAction('todo:big', MAX_N, [], { dep: 1.5 }));
    assert.match(frac.message, /"dep" must be a positive integer/);
    c.send('{"type":"ping","id":9007199254740994}');
    const idr = await c.next((m) => m.type === 'error' || m.type === 'pong', 'reply to an id over 2^53-1');
    assert.equal(idr.code, 'bad_request', JSON.stringify(idr));
    assert.match(idr.message, /"id" must be at most 2\^53-1/);
    assert.equal(idr.id, undefined, 'an id that cannot be held exactly is not echoed');
    // the room is unchanged by the refusals
    const after = await c.request({ type: 'get', room: 'todo:big' });
    assert.equal(after.seq, snap.seq);
    assert.equal(after.checksum, snap.checksum);
  });
});
