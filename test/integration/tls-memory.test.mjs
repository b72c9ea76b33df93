// Memory after a storm of TLS connections (src/heaptrim.c, docs/PERFORMANCE.md
// "TLS"). A TLS handshake frees ~35 KB between the blocks that stay live for
// the connection; 200 handshakes at once left the daemon at their peak, ~55 KB
// of RssAnon per idle TLS connection, for good (glibc cannot shrink its heap
// from the top). Once the storm is over (a second without a connection
// opened or closed), the daemon trims its heap: ~23 KB per connection
// remains, OpenSSL's live state of the connection and ours. The bound, 36 KB,
// sits between the two. Memory is not comparable under ASan (its own
// allocator, redzones, quarantine): that variant checks the trim happens and
// the connections still work.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { withDaemon, makeConf, makeTestCert, httpsGet, waitFor, ASAN, TIMEOUT } from './lib.mjs';
import { rawWebSocket, wsFrame, parseFrames } from './rawhttp.mjs';

const N = 200;
const BOUND_B = 36000;

let CERT;
before(() => { CERT = makeTestCert(); });
after(() => rmSync(CERT.dir, { recursive: true, force: true }));

const rssAnon = (pid) => Number(/^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;

async function metric(d, name) {
  const { body } = await httpsGet(d, '/metrics', CERT.ca);
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(body);
  if (!m) throw new Error(`${name} not in /metrics`);
  return Number(m[1]);
}

test(`${N} TLS connections at once: once the storm is over the heap is trimmed, and each idle connection keeps less than ${BOUND_B} B`, async (t) => {
  const conf = makeConf({ global: ['max_connections_per_ip 10000', 'hello_timeout_ms 600s', `tls_cert_file ${CERT.cert}`, `tls_key_file ${CERT.key}`] });
  await withDaemon({ conf }, async (d) => {
    const trims0 = await metric(d, 'movexd_heap_trims_total');
    const a0 = rssAnon(d.pid);
    const conns = await Promise.all(Array.from({ length: N }, () => rawWebSocket(d, CERT.ca)));
    await waitFor(async () => {
      if (await metric(d, 'movexd_heap_trims_total') > trims0) return true;
      await new Promise((r) => setTimeout(r, 100)); // a /metrics request is a handshake too
      return false;
    }, 'a heap trim after the storm', TIMEOUT * 2);
    const perConn = (rssAnon(d.pid) - a0) / N;
    t.diagnostic(`RssAnon growth after the trim: ${Math.round(perConn)} B per idle TLS connection`);
    // every connection still serves
    const { c, start } = conns[N - 1];
    c.write(wsFrame(1, JSON.stringify({ type: 'hello', client: 'after-trim' })));
    await c.until(() => parseFrames(c.buf, start).some((f) => f.opcode === 1), 'welcome after the trim');
    for (const x of conns) x.c.sock.destroy();
    if (!ASAN) assert.ok(perConn < BOUND_B, `RssAnon growth ${Math.round(perConn)} B per idle TLS connection after the trim`);
  });
});
