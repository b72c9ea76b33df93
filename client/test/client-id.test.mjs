// The id the server names in welcome (a token's subject, or anon-... for a
// connection without a token under auth jwt) is adopted silently when the
// app did not choose an id: client_mismatch is only for an app that passed
// `client` and got another (issue #13: no client_mismatch in normal use).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectRaw, memoryStorage } from '../movex.js';
import { FakeNet, until } from './fake.mjs';

const opened = [];
const connect = (...args) => { const c = connectRaw(...args); opened.push(c); return c; };
after(() => Promise.all(opened.map((c) => c.close())));

async function welcomeAs(opts, serverId) {
  const net = new FakeNet();
  const conn = connect('ws://fake/ws', { WebSocket: net.WebSocket, storage: memoryStorage(), ping: false, ...opts });
  const errors = [];
  conn.on('error', (e) => errors.push(e.code));
  const sock = await net.nextSocket();
  sock.accept();
  await sock.expect('hello');
  sock.push({ type: 'welcome', client: serverId, server: 'fake', limits: { max_message_bytes: 1 << 20 } });
  await until(() => conn.status === 'open', 'open');
  return { conn, errors };
}

test('a token user without a client option: the subject is adopted, no client_mismatch', async () => {
  const { conn, errors } = await welcomeAs({ token: 'header.payload.sig' }, 'alice');
  assert.equal(conn.client, 'alice');
  assert.deepEqual(errors, []);
});

test('an anonymous connection under auth jwt: the anon id is adopted, no client_mismatch', async () => {
  const { conn, errors } = await welcomeAs({}, 'anon-0123456789abcdef');
  assert.equal(conn.client, 'anon-0123456789abcdef');
  assert.deepEqual(errors, []);
});

test('an app-chosen client id the server replaces: client_mismatch tells the app', async () => {
  const { conn, errors } = await welcomeAs({ client: 'bob', token: 't' }, 'alice');
  assert.equal(conn.client, 'alice');
  assert.deepEqual(errors, ['client_mismatch']);
});
