import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, connectHello } from './lib.mjs';

test('hello, create, subscribe, action -> ack + fwd, get', async () => {
  const d = await startDaemon();
  try {
    const a = await connectHello(d, 'alice');
    const b = await connectHello(d, 'bob');
    const cr = await a.request({ type: 'create', room: 'todo:smoke', state: { items: [] } });
    assert.equal(cr.type, 'created');
    assert.equal(cr.seq, 0);
    const sa = await a.request({ type: 'subscribe', room: 'todo:smoke' });
    assert.equal(sa.type, 'snapshot');
    assert.deepEqual(sa.state, { items: [] });
    assert.equal(sa.checksum, cr.checksum);
    const sb = await b.request({ type: 'subscribe', room: 'todo:smoke' });
    assert.equal(sb.seq, 0);
    const ack = await a.request({ type: 'action', room: 'todo:smoke', n: 1, base: 0,
      action: { type: 'patch', payload: [{ op: 'add', path: '/items/-', value: 'milk' }] } });
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.equal(ack.seq, 1);
    assert.equal(ack.prev, cr.checksum);
    const fwd = await b.next((m) => m.type === 'fwd');
    assert.equal(fwd.seq, 1);
    assert.equal(fwd.checksum, ack.checksum);
    assert.equal(fwd.client, 'alice');
    assert.equal(fwd.n, 1);
    const g = await b.request({ type: 'get', room: 'todo:smoke' });
    assert.deepEqual(g.state, { items: ['milk'] });
    assert.equal(g.checksum, ack.checksum);
    await a.close();
    await b.close();
  } finally {
    await d.stop();
  }
});
