// sharedb.mjs - ShareDB 5.2.2 (in-memory backend, json0 type) behind a
// `ws` server with @teamwork/websocket-json-stream, for bench/compare.mjs;
// see driver.mjs for the interface. Every room is a document
// `counters/<room>` created as {count: 0} (prepare, with ShareDB's own
// client) and read back with its client (`fetch`). Writers and subscribers
// speak ShareDB's wire protocol directly, because its client keeps one op in
// flight per document and composes the rest: handshake `hs`, subscribe `s`,
// then each action is `{a:'op', v, seq:n, op:[{p:['count'], na:1}]}`
// (json0 number add); the server's acknowledgement is the `op` message back
// with our `src` and `seq` and no `op`, and the other subscribers receive
// the op with the writer's `src` and `seq` (so seq = the action's n).
// `v` is the version the op is based on: the highest version this
// connection has seen. The server transforms the op against the ones
// committed after it and sends those back with the acknowledgement (at most
// about one window of ops). Exact versions cannot be pipelined: the server
// handles a connection's submits concurrently, so op k+1 arrives before op k
// is committed and is refused as "newer than current snapshot"; and
// `v: null` makes the server send back the document's whole history with
// every acknowledgement.
import http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');

export async function startServer() {
  const ShareDB = require('sharedb');
  const WebSocketJSONStream = require('@teamwork/websocket-json-stream');
  const backend = new ShareDB();
  const server = http.createServer();
  const wss = new WebSocket.Server({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => backend.listen(new WebSocketJSONStream(ws)));
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return server.address().port;
}

function open(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  return new Promise((res, rej) => { ws.on('open', () => res(ws)); ws.on('error', rej); });
}

// ShareDB's own client, for creating and reading documents
async function withDoc(port, room, fn) {
  const { Connection } = require('sharedb/lib/client');
  const ws = await open(port);
  const conn = new Connection(ws);
  const doc = conn.get('counters', room);
  try {
    return await fn(doc);
  } finally {
    conn.close();
  }
}

export async function prepare({ port, rooms }) {
  for (const r of rooms) {
    await withDoc(port, r, (doc) => new Promise((res, rej) => doc.create({ count: 0 }, (e) => (e ? rej(e) : res()))));
  }
}

const writerBySrc = new Map(); // src (connection id) -> writer index

export async function connect({ port, room, index, role, onAck, onFwd }) {
  const ws = await open(port);
  let src = null;
  let seen = 0; // versions below this are applied and known here
  let subscribed;
  const ready = new Promise((res) => { subscribed = res; });
  ws.on('message', (data) => {
    const m = JSON.parse(data);
    if (m.a === 'op') {
      // an op of a version already seen here is one the server sent back
      // with an ack (see above): not a new delivery
      const fresh = typeof m.v === 'number' && m.v + 1 > seen;
      if (fresh && !m.error) seen = m.v + 1;
      if (m.src === src && !m.op) onAck(m.seq, !m.error); else if (m.op) {
        if (m.src !== src && fresh) onFwd(writerBySrc.get(m.src), m.seq);
      } else if (m.error) onAck(m.seq, false);
    } else if (m.a === 'hs') {
      src = m.id;
      if (role === 'writer') writerBySrc.set(src, index);
      ws.send(JSON.stringify({ a: 's', c: 'counters', d: room, v: null }));
    } else if (m.a === 's') {
      seen = m.data.v;
      subscribed();
    }
  });
  ws.send(JSON.stringify({ a: 'hs', id: null, protocol: 1, protocolMinor: 1 }));
  await ready;
  return {
    send(n) {
      ws.send(JSON.stringify({ a: 'op', c: 'counters', d: room, v: seen, seq: n, op: [{ p: ['count'], na: 1 }] }));
    },
    close() { ws.close(); },
  };
}

export async function readCount({ port, room }) {
  return withDoc(port, room, (doc) => new Promise((res, rej) => doc.fetch((e) => (e ? rej(e) : res(doc.data.count)))));
}
