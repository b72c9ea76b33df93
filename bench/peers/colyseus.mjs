// colyseus.mjs - Colyseus 0.16 (@colyseus/core + @colyseus/ws-transport +
// @colyseus/schema 3) for bench/compare.mjs; see driver.mjs for the
// interface. One room type `counter`, matched by its `room` option
// (filterBy), state {count: number}. Colyseus has no acknowledgement per
// message, so the room adds one: on an `inc` message it adds 1 to
// state.count, sends `ack` {n} to the sender and broadcasts `fwd` {w, n} to
// the other clients - a broadcast per action, the mode comparable to the
// others (the periodic state patch, 50 ms by default, which would coalesce
// increments, is turned off). A `get` message answers `count`. The client is
// colyseus.js 0.16 (HTTP seat reservation, then its WebSocket).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export async function startServer() {
  const { Server, Room } = require('@colyseus/core');
  const { WebSocketTransport } = require('@colyseus/ws-transport');
  const { Schema, defineTypes } = require('@colyseus/schema');
  class State extends Schema {
    constructor() { super(); this.count = 0; }
  }
  defineTypes(State, { count: 'number' });
  class CounterRoom extends Room {
    onCreate() {
      this.maxClients = 1000000;
      this.autoDispose = false;
      this.setState(new State());
      this.setPatchRate(null);
      this.onMessage('inc', (client, m) => {
        this.state.count += 1;
        client.send('ack', { n: m.n });
        this.broadcast('fwd', { w: m.w, n: m.n }, { except: client });
      });
      this.onMessage('get', (client) => client.send('count', { count: this.state.count }));
    }
  }
  const transport = new WebSocketTransport({ perMessageDeflate: false });
  const server = new Server({ transport, greet: false });
  server.define('counter', CounterRoom).filterBy(['room']);
  await server.listen(0, '127.0.0.1');
  return transport.server.address().port;
}

let Client;
async function join(port, room) {
  Client ??= (await import('colyseus.js')).Client;
  const c = new Client(`ws://127.0.0.1:${port}`);
  return c.joinOrCreate('counter', { room });
}

export async function prepare() {}

export async function connect({ port, room, index, onAck, onFwd }) {
  const r = await join(port, room);
  r.onMessage('ack', (m) => onAck(m.n));
  r.onMessage('fwd', (m) => onFwd(m.w, m.n));
  r.onMessage('count', () => {});
  return {
    send(n) { r.send('inc', { w: index, n }); },
    close() { r.leave(); },
  };
}

export async function readCount({ port, room }) {
  const r = await join(port, room);
  try {
    return await new Promise((res) => { r.onMessage('count', (m) => res(m.count)); r.send('get'); });
  } finally {
    r.leave();
  }
}
