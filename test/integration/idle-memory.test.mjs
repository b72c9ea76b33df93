// Daemon memory per idle connection (issue #12). N clients connect, say
// hello and subscribe, then stay idle; the daemon's RssAnon may grow by at
// most BOUND_B per connection: the target, 4 KiB. History here (this N):
// ~10.9 KB while every connection kept a 4 KiB reassembly buffer; ~6.3 KB
// once a one-chunk message was decoded in libwebsockets' buffer and no
// reassembly buffer outlived a message; ~3.3 KB now that lws's per-
// connection receive buffer is 1 KiB instead of 32 KiB (src/server.c;
// src/readmore.c keeps the large reads). The bound leaves ~25% for
// allocator noise at this smaller N and fails the 6.3 KB code. Memory is
// not comparable under ASan (redzones, quarantine), so that variant only
// checks that all connections work. A message in several WebSocket
// fragments still arrives whole: it is reassembled, then the buffer is
// dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { withDaemon, makeConf, Client, ASAN, TIMEOUT } from './lib.mjs';

const N = 1500;
const WARM = 100; // first connections: one-time growth (arenas, tables)
const BOUND_B = 4096;

function rssAnonKb(pid) {
  const m = /^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'RssAnon in /proc/PID/status');
  return Number(m[1]);
}

async function openIdle(d, count, from) {
  const out = [];
  const BATCH = 100; // a bounded number of handshakes in flight
  for (let i = 0; i < count; i += BATCH) {
    out.push(...await Promise.all(Array.from({ length: Math.min(BATCH, count - i) }, async (_, k) => {
      const c = await Client.connect(d.url);
      await c.hello(`idle${from + i + k}`);
      const r = await c.request({ type: 'subscribe', room: `idle:r${(from + i + k) % 20}` });
      assert.equal(r.type, 'snapshot', JSON.stringify(r));
      c.msgs.length = 0; // keep the test's own memory small
      c.all.length = 0;
      return c;
    })));
  }
  return out;
}

const conf = makeConf({ global: ['max_connections 5000', 'max_connections_per_ip 5000'] });

test(`daemon memory per idle connection (hello + subscribe) stays under ${BOUND_B} B`, { timeout: 120000 * (ASAN ? 4 : 1) }, async (t) => {
  await withDaemon({ conf }, async (d) => {
    const clients = await openIdle(d, WARM, 0);
    const before = rssAnonKb(d.pid);
    clients.push(...await openIdle(d, N, WARM));
    const grewB = (rssAnonKb(d.pid) - before) * 1024;
    const per = Math.round(grewB / N);
    t.diagnostic(`${per} B per idle connection (${N} connections)`);
    if (!ASAN)
      assert.ok(per <= BOUND_B, `daemon RssAnon grew ${grewB} B for ${N} idle connections: ${per} B each (bound ${BOUND_B})`);

    // in three WebSocket fragments, each longer than lws's 1 KiB receive
    // buffer: reassembled and answered as one message
    const c = clients[0];
    const big = 'x'.repeat(100000);
    const msg = JSON.stringify({ type: 'action', id: 999, room: 'idle:r0', n: 1, action: { type: 'patch', payload: [{ op: 'add', path: '/big', value: big }] } });
    c.ws.send(msg.slice(0, 10), { fin: false });
    c.ws.send(msg.slice(10, 50000), { fin: false });
    c.ws.send(msg.slice(50000), { fin: true });
    const ack = await c.next((m) => m.id === 999, 'ack of the fragmented action');
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    const g = await c.request({ type: 'get', room: 'idle:r0' });
    assert.equal(g.state.big, big);
    // and a short one after it still decodes (straight from the lws buffer)
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    await Promise.all(clients.map((x) => x.close()));
  });
});
