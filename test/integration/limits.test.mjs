// Per-connection and per-server bounds: max_rooms_per_conn (error limit)
// and max_connections (close 1013).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withDaemon, connectHello, Client, makeConf, TIMEOUT } from './lib.mjs';

test('max_rooms_per_conn 2: a third subscription -> error limit; resubscribe and unsubscribe free no/one slot', async () => {
  await withDaemon({ conf: makeConf({ global: ['max_rooms_per_conn 2'] }) }, async (d) => {
    const a = await connectHello(d, 'rooms');
    assert.equal((await a.request({ type: 'subscribe', room: 'r:1' })).type, 'snapshot');
    assert.equal((await a.request({ type: 'subscribe', room: 'r:2' })).type, 'snapshot');
    const e = await a.request({ type: 'subscribe', room: 'r:3' });
    assert.equal(e.type, 'error', JSON.stringify(e));
    assert.equal(e.code, 'limit');
    assert.equal((await a.request({ type: 'subscribe', room: 'r:2' })).type, 'snapshot', 'resubscribing does not count twice');
    assert.equal((await a.request({ type: 'unsubscribe', room: 'r:2' })).type, 'unsubscribed');
    assert.equal((await a.request({ type: 'subscribe', room: 'r:3' })).type, 'snapshot', 'a freed slot can be reused');
    // Another connection has its own count.
    const b = await connectHello(d, 'rooms2');
    for (const r of ['r:1', 'r:2']) assert.equal((await b.request({ type: 'subscribe', room: r })).type, 'snapshot');
    assert.equal(a.all.filter((m) => m.type === 'welcome').length, 1);
    await a.close();
    await b.close();
  });
});

test('max_connections 2: a third connection is closed with 1013; a freed slot is usable again', async () => {
  await withDaemon({ conf: makeConf({ global: ['max_connections 2'] }) }, async (d) => {
    const a = await connectHello(d, 'c1');
    const b = await connectHello(d, 'c2');
    const c = await Client.connect(d.url);
    const closed = await c.closed;
    assert.equal(closed.code, 1013, JSON.stringify(closed));
    // The two served connections are unaffected.
    for (const x of [a, b]) assert.equal((await x.request({ type: 'ping' })).type, 'pong');
    await b.close();
    // The server notices b's close asynchronously: retry a bounded number of times.
    const end = Date.now() + TIMEOUT;
    let e = null;
    while (!e && Date.now() < end) {
      const t = await Client.connect(d.url);
      t.send({ type: 'hello', client: 'c3' });
      const r = await Promise.race([t.next((m) => m.type === 'welcome'), t.closed.then((x) => ({ closed: x.code }))]);
      if (r.type === 'welcome') e = t;
      else assert.equal(r.closed, 1013);
    }
    assert.ok(e, 'a new connection is served once one closed');
    assert.equal((await e.request({ type: 'ping' })).type, 'pong');
    await e.close();
    await a.close();
  });
});
