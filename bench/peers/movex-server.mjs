// movex-server.mjs - movex-server 0.1.6 (the seed's own server: Express +
// socket.io 4, in-memory store) for bench/compare.mjs; see driver.mjs for
// the interface. The resource type `counter` has a reducer that adds 1 to
// `count` for an `inc` action (its payload {w, n} only names the action for
// the latency measurement). The client speaks the socket.io events of the
// movex client: `createResource`, `addResourceSubscriber`,
// `emitActionDispatch` (its socket.io acknowledgement is the ack),
// forwards arrive as `onFwdAction`, `getResourceState` reads the counter.
// The handshake carries `clientId` and the `clientInfo` query the server
// requires; a connection is used after the server's `onReady`.
import http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export async function startServer() {
  // movex-server logs every connection and subscription on the console;
  // that is not part of the work being compared
  console.info = console.log = console.debug = () => {};
  const { movexServer } = require('movex-server');
  process.env.port = '0';
  const httpServer = http.createServer();
  const port = new Promise((res) => httpServer.on('listening', () => res(httpServer.address().port)));
  const counter = (state = { count: 0 }, action) => (action.type === 'inc' ? { ...state, count: state.count + 1 } : state);
  movexServer({ httpServer }, { resources: { counter } });
  return port;
}

let ioClient;
async function open(port, client) {
  ioClient ??= (await import('socket.io-client')).io;
  const s = ioClient(`http://127.0.0.1:${port}`, {
    transports: ['websocket'], reconnection: false, forceNew: true,
    query: { clientId: `${client}-${process.pid}`, clientInfo: '{}' },
  });
  await new Promise((res, rej) => {
    s.on('onReady', () => res());
    s.on('connect_error', (e) => rej(e));
  });
  return s;
}

function call(s, event, payload) {
  return new Promise((res, rej) => s.emit(event, payload, (r) => (r && r.ok ? res(r.val) : rej(new Error(`${event}: ${JSON.stringify(r)}`)))));
}

export async function prepare({ port, rooms }) {
  const s = await open(port, 'prep');
  for (const r of rooms) await call(s, 'createResource', { resourceType: 'counter', resourceState: { count: 0 }, resourceId: r });
  s.close();
}

export async function connect({ port, room, client, index, onAck, onFwd }) {
  const s = await open(port, client);
  const rid = `counter:${room}`;
  s.on('onFwdAction', (p) => { const a = p.action && p.action.payload; if (a) onFwd(a.w, a.n); });
  await call(s, 'addResourceSubscriber', { rid });
  return {
    send(n) {
      s.emit('emitActionDispatch', { rid, action: { type: 'inc', payload: { w: index, n } } }, (r) => onAck(n, !!(r && r.ok)));
    },
    close() { s.close(); },
  };
}

export async function readCount({ port, room }) {
  const s = await open(port, `check${room}`);
  try {
    const st = await call(s, 'getResourceState', { rid: `counter:${room}` });
    return st[0].count;
  } finally {
    s.close();
  }
}
