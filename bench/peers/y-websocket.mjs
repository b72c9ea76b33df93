// y-websocket.mjs - y-websocket 1.5.4's own server (bin/utils
// setupWSConnection on a `ws` server, in-memory documents, gc on) with yjs
// 13.6, for bench/compare.mjs; see driver.mjs for the interface. A room is
// a document named by the room; its map `m` holds `count`. An action is one
// Yjs transaction by the writer's own document: count = count + 1, and
// `w<i>` = n (which action it was, for the latency measurement), sent by
// its WebsocketProvider as one update. y-websocket has no authoritative
// acknowledgement at all: the server relays updates and never answers the
// sender. So each writer also opens a mirror connection to the same
// document, and action n counts as acknowledged when the mirror sees `w<i>`
// reach n (the server has relayed it). Counts are last-writer-wins map
// sets: with several writers in a room, concurrent increments are lost,
// which the final check reports.
import http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');

export async function startServer() {
  const { setupWSConnection } = require('y-websocket/bin/utils');
  const server = http.createServer();
  const wss = new WebSocket.Server({ server, perMessageDeflate: false });
  wss.on('connection', (conn, req) => setupWSConnection(conn, req));
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return server.address().port;
}

let Y;
let WebsocketProvider;
async function open(port, room) {
  Y ??= await import('yjs');
  WebsocketProvider ??= (await import('y-websocket')).WebsocketProvider;
  const doc = new Y.Doc();
  const p = new WebsocketProvider(`ws://127.0.0.1:${port}`, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true });
  await new Promise((res) => { if (p.synced) res(); else p.once('sync', (s) => s && res()); });
  return { doc, p, m: doc.getMap('m') };
}

export async function prepare() {}

export async function connect({ port, room, index, role, onAck, onFwd }) {
  const c = await open(port, room);
  const closers = [() => { c.p.destroy(); c.doc.destroy(); }];
  // deliveries: every writer key that changed in an update from the server
  c.m.observe((ev) => {
    if (ev.transaction.local) return;
    for (const k of ev.keysChanged) if (k[0] === 'w') onFwd(Number(k.slice(1)), c.m.get(k));
  });
  if (role !== 'writer') return { send() {}, close() { for (const f of closers) f(); } };
  const mirror = await open(port, room);
  closers.push(() => { mirror.p.destroy(); mirror.doc.destroy(); });
  const key = `w${index}`;
  let acked = 0;
  mirror.m.observe((ev) => {
    if (!ev.keysChanged.has(key)) return;
    const n = mirror.m.get(key);
    while (acked < n) onAck(++acked);
  });
  return {
    send(n) {
      c.doc.transact(() => {
        c.m.set('count', (c.m.get('count') || 0) + 1);
        c.m.set(key, n);
      });
    },
    close() { for (const f of closers) f(); },
  };
}

export async function readCount({ port, room }) {
  const c = await open(port, room);
  try {
    return c.m.get('count') || 0;
  } finally {
    c.p.destroy();
    c.doc.destroy();
  }
}
