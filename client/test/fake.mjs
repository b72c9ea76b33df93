// A scriptable fake WebSocket network for the client's unit tests. The test
// plays the server: it accepts sockets, waits for what the client sends and
// answers by hand, so every ordering, loss and duplicate can be staged.
// ServerRoom keeps a room's state/seq/checksum the way movexd does, to build
// correct acks, fwds and catch-up replies.
//
// Run directly (node --test picks up every file in client/test/), this file
// tests itself; imported, it only exports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';
import { applyPatch, checksum, cachedChecksum } from '../movex.js';

const TIMEOUT = 5000;

function waitFor(list, pred, what, waiters) {
  const i = list.findIndex(pred);
  if (i >= 0) return Promise.resolve(list.splice(i, 1)[0]);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${what}`)), TIMEOUT);
    waiters.push({ pred, resolve: (v) => { clearTimeout(t); resolve(v); } });
  });
}

function wake(list, waiters) {
  for (const w of [...waiters]) {
    const i = list.findIndex(w.pred);
    if (i >= 0) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(list.splice(i, 1)[0]);
    }
  }
}

export class FakeNet {
  constructor() {
    this.sockets = [];
    this.pendingSockets = [];
    this.socketWaiters = [];
    const net = this;
    // The WebSocket class handed to connect().
    this.WebSocket = class FakeWebSocket {
      constructor(url, protocols) {
        this.url = url;
        this.protocols = protocols;
        this.readyState = 0;
        this.inbox = []; // unconsumed client messages
        this.log = []; // every client message
        this.waiters = [];
        this.onopen = this.onmessage = this.onclose = this.onerror = null;
        net.sockets.push(this);
        net.pendingSockets.push(this);
        wake(net.pendingSockets, net.socketWaiters);
      }
      send(text) {
        if (this.readyState !== 1) throw new Error('send on a socket that is not open');
        const m = JSON.parse(text);
        this.inbox.push(m);
        this.log.push(m);
        wake(this.inbox, this.waiters);
      }
      close(code = 1000) {
        if (this.readyState === 3) return;
        this.readyState = 3;
        queueMicrotask(() => this.onclose?.({ code }));
      }
      // ---- the server's side ----
      accept() { this.readyState = 1; this.onopen?.({}); return this; }
      expect(pred = () => true, what = 'a client message') {
        const p = typeof pred === 'string' ? (m) => m.type === pred : pred;
        return waitFor(this.inbox, p, typeof pred === 'string' ? pred : what, this.waiters);
      }
      push(obj) { if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(obj) }); }
      reply(req, obj) { this.push({ ...obj, id: req.id }); }
      drop(code = 1006) { if (this.readyState === 3) return; this.readyState = 3; this.onclose?.({ code }); }
      // accept, read hello, answer welcome
      async handshake(limits = { max_message_bytes: 1 << 20 }) {
        this.accept();
        const h = await this.expect('hello');
        this.client = h.client;
        this.push({ type: 'welcome', client: h.client, server: 'fake', limits });
        return h;
      }
    };
  }
  nextSocket() { return waitFor(this.pendingSockets, () => true, 'a new socket', this.socketWaiters); }
}

// A room as the server holds it: applies patches, keeps the log and the
// exactly-once outcomes, and builds wire messages.
export class ServerRoom {
  // fast: checksum with the per-subtree cache (for big states; the client
  // never sees these objects, it parses its own copies).
  constructor(name, state = {}, { fast = false } = {}) {
    this.name = name;
    this.state = state;
    this.seq = 0;
    this.sum = fast ? cachedChecksum : checksum;
    this.checksum = this.sum(state);
    this.log = []; // entries {seq, checksum, prev, action, client, n}
    this.decided = new Map(); // `${client}/${n}` -> ack or reject message (without id)
  }
  // Apply an action from client/n; returns the ack (without id) or throws.
  apply(action, client, n, effects) {
    const ops = effects || action.payload;
    const prev = this.checksum;
    this.state = applyPatch(this.state, ops);
    this.seq++;
    this.checksum = this.sum(this.state);
    const entry = { seq: this.seq, checksum: this.checksum, action, client, n, ...(effects ? { effects } : {}) };
    this.log.push({ ...entry, prev });
    const ack = { type: 'ack', room: this.name, n, seq: this.seq, prev, checksum: this.checksum };
    this.decided.set(`${client}/${n}`, ack);
    return ack;
  }
  // Decide an action message the way movexd does (without dep/strict rules
  // beyond after_reject): ack, duplicate ack, or reject.
  decide(msg, client) {
    const key = `${client}/${msg.n}`;
    if (this.decided.has(key)) return { ...this.decided.get(key), duplicate: true };
    if (msg.n < this.nextN(client)) {
      // not above the highest decided n and never decided: never applied
      return { type: 'reject', room: this.name, n: msg.n, code: 'too_old', message: 'not above the highest decided n', seq: this.seq, checksum: this.checksum };
    }
    // dep: one n or an array of them (any rejected decides; then any undecided)
    const deps = [].concat(msg.dep ?? []);
    const failed = deps.find((d) => this.decided.get(`${client}/${d}`)?.type === 'reject');
    if (failed !== undefined) return this.reject(msg, client, 'after_reject', `dep n=${failed} was rejected`);
    const missing = deps.find((d) => !this.decided.has(`${client}/${d}`));
    if (missing !== undefined) return this.reject(msg, client, 'bad_dep', `dep n=${missing} was never received`);
    try {
      return this.apply(msg.action, client, msg.n);
    } catch (e) {
      return this.reject(msg, client, e.code || 'bad_patch', e.message);
    }
  }
  reject(msg, client, code, message) {
    const r = { type: 'reject', room: this.name, n: msg.n, code, message, seq: this.seq, checksum: this.checksum };
    this.decided.set(`${client}/${msg.n}`, r);
    return r;
  }
  fwdOf(entry) {
    const { prev, ...rest } = entry;
    return { type: 'fwd', room: this.name, prev, ...rest };
  }
  lastFwd() { return this.fwdOf(this.log[this.log.length - 1]); }
  // Another client's action, as the fwd everyone else gets.
  external(ops, client = 'other', n = this.seq + 1) {
    this.apply({ type: 'patch', payload: ops }, client, n);
    return this.lastFwd();
  }
  nextN(client) {
    let max = 0;
    for (const k of this.decided.keys()) {
      const [c, n] = [k.slice(0, k.lastIndexOf('/')), Number(k.slice(k.lastIndexOf('/') + 1))];
      if (c === client && n > max) max = n;
    }
    return max + 1;
  }
  snapshot(client) {
    return { type: 'snapshot', room: this.name, seq: this.seq, checksum: this.checksum, next_n: this.nextN(client), state: this.state };
  }
  actionsSince(since, client) {
    const entries = this.log.filter((e) => e.seq > since).map(({ prev, ...e }) => e);
    return { type: 'actions', room: this.name, from: since, to: this.seq, next_n: this.nextN(client), actions: entries };
  }
}

export const tick = () => new Promise((r) => setTimeout(r, 0));
export async function until(cond, what = 'condition', ms = TIMEOUT) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  test('fake network: messages are delivered and awaited in order', async () => {
    const net = new FakeNet();
    const ws = new net.WebSocket('ws://x/ws', ['movex.v1']);
    const s = await net.nextSocket();
    assert.equal(s, ws);
    const got = [];
    ws.onmessage = (e) => got.push(JSON.parse(e.data));
    s.accept();
    ws.send(JSON.stringify({ type: 'a' }));
    ws.send(JSON.stringify({ type: 'b' }));
    assert.equal((await s.expect('b')).type, 'b');
    assert.equal((await s.expect()).type, 'a');
    s.push({ x: 1 });
    assert.deepEqual(got, [{ x: 1 }]);
  });
  test('ServerRoom: acks, duplicates, after_reject, catch-up', () => {
    const r = new ServerRoom('t:a', { c: 0 });
    const a = r.decide({ n: 1, action: { type: 'patch', payload: [{ op: 'inc', path: '/c', value: 1 }] } }, 'me');
    assert.equal(a.type, 'ack');
    assert.equal(r.decide({ n: 1, action: {} }, 'me').duplicate, true);
    const rj = r.decide({ n: 2, action: { type: 'patch', payload: [{ op: 'test', path: '/c', value: 9 }] } }, 'me');
    assert.equal(rj.code, 'test_failed');
    assert.equal(r.decide({ n: 3, dep: 2, action: { type: 'patch', payload: [] } }, 'me').code, 'after_reject');
    assert.equal(r.nextN('me'), 4);
    assert.equal(r.actionsSince(0, 'me').actions.length, 1);
  });
}
