// A bounded HTTP fuzzer against the real daemon: random sequences of
// pipelined requests (methods, paths, Content-Length right/short/long/bogus,
// chunked bodies, Expect, Connection, Upgrade, admin tokens right or wrong),
// sent in one write or split at random points, each on a new connection.
// After each sequence /healthz must answer on another connection; at the
// end a WebSocket client is served and SIGTERM stops the daemon.
// Seeded and bounded: MOVEXD_HTTP_FUZZ_SEED (default 1), MOVEXD_HTTP_FUZZ_MS
// (default 30000) and at most MOVEXD_HTTP_FUZZ_MAX sequences (default 3000).
// A failure prints the seed and the last sequences sent, to replay them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withDaemon, connectHello } from './lib.mjs';
import { rawConnect, req, chunked, healthy } from './rawhttp.mjs';

const SEED = Number(process.env.MOVEXD_HTTP_FUZZ_SEED || 1);
const BUDGET_MS = Number(process.env.MOVEXD_HTTP_FUZZ_MS || 30000);
const MAX = Number(process.env.MOVEXD_HTTP_FUZZ_MAX || 3000);
const TOKEN = 'fuzz-admin-token-0123456789abcdef';

// mulberry32: small, seeded, the same sequence on every machine
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generator(rand) {
  const int = (n) => Math.floor(rand() * n);
  const pick = (a) => a[int(a.length)];
  const chance = (p) => rand() < p;
  const methods = ['GET', 'GET', 'GET', 'HEAD', 'POST', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'BREW'];
  const paths = ['/healthz', '/readyz', '/metrics', '/nope', '/', '/movex.js', '/demo/nope.js', '/admin/rooms',
    '/admin/rooms/todo:f', '/admin/rooms/todo:f/actions', '/ws', '/healthz?x=1', `/${'a'.repeat(300)}`];
  const bodies = () => pick(['', 'ab', '{}', JSON.stringify({ key: `k${int(5)}`, action: { type: 'patch', payload: [{ op: 'inc', path: '/n', value: 1 }] } }),
    'x'.repeat(int(64)), '{"key":', '\r\n\r\n', 'GET /healthz HTTP/1.1\r\n\r\n']);
  function request() {
    const method = pick(methods);
    const path = pick(paths);
    const body = chance(0.5) ? bodies() : '';
    const headers = [];
    let text = body;
    let contentLength = true;
    if (chance(0.15)) {
      headers.push(['Transfer-Encoding', 'chunked']);
      text = chance(0.8) ? chunked(body || 'z', 1 + int(4)) : `${(body.length + 3).toString(16)}\r\n${body}`;
      contentLength = false;
    } else if (chance(0.3)) {
      const n = Buffer.byteLength(body);
      headers.push(['Content-Length', String(pick([n, n, n + 1, Math.max(0, n - 1), 0, 'abc', '-1', '99999999999']))]);
      contentLength = false;
    } else if (!body) {
      contentLength = false;
    }
    if (chance(0.1)) headers.push(['Expect', '100-continue']);
    if (chance(0.15)) headers.push(['Connection', pick(['close', 'keep-alive', 'Upgrade'])]);
    if (chance(0.1)) headers.push(['Upgrade', pick(['websocket', 'h2c'])]);
    if (chance(0.3)) headers.push(['Authorization', `Bearer ${chance(0.7) ? TOKEN : 'wrong-token-wrong-token'}`]);
    const version = chance(0.1) ? 'HTTP/1.0' : 'HTTP/1.1';
    return req(method, path, { headers, body: text, contentLength }).replace(' HTTP/1.1\r\n', ` ${version}\r\n`);
  }
  return () => {
    let seq = '';
    for (let i = 1 + int(4); i > 0; i--) seq += request();
    const cuts = [];
    for (let i = int(3); i > 0; i--) cuts.push(int(seq.length));
    return { seq, cuts: cuts.sort((x, y) => x - y) };
  };
}

test(`HTTP fuzz: random pipelined request sequences never stop /healthz (seed ${SEED}, ${BUDGET_MS} ms)`, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-hfuzz-'));
  const file = join(dir, 'admin-token');
  writeFileSync(file, `${TOKEN}\n`);
  chmodSync(file, 0o600);
  const conf = `log_level info\nadmin_token_file ${file}\nroom default {\n    create_on_subscribe yes\n}\n`;
  const next = generator(prng(SEED));
  const recent = [];
  let n = 0;
  try {
    await withDaemon({ conf }, async (d) => {
      // the admin actions in the sequences need their room
      const creator = await connectHello(d, 'creator');
      assert.equal((await creator.request({ type: 'subscribe', room: 'todo:f' })).type, 'snapshot');
      await creator.close();
      const end = Date.now() + BUDGET_MS;
      while (Date.now() < end && n < MAX) {
        const { seq, cuts } = next();
        recent.push(JSON.stringify(seq));
        if (recent.length > 3) recent.shift();
        n++;
        const c = await rawConnect(d.port);
        let at = 0;
        for (const cut of [...cuts, seq.length]) {
          if (cut > at) c.write(seq.slice(at, cut));
          at = Math.max(at, cut);
        }
        let ok = false;
        try {
          ok = await healthy(d.port, 5000);
        } catch { /* timed out: reported below */ }
        c.destroy();
        assert.ok(ok, `/healthz after sequence #${n} (seed ${SEED}); last sequences:\n${recent.join('\n')}`);
        const head = c.buf.subarray(0, 12).toString('latin1');
        if (c.buf.length >= 12) assert.match(head, /^HTTP\/1\.[01] \d{3}/, `answer to sequence #${n}: ${JSON.stringify(head)}`);
      }
      const ws = await connectHello(d, 'after-fuzz');
      assert.equal((await ws.request({ type: 'ping' })).type, 'pong');
      await ws.close();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`# http fuzz: ${n} sequences, seed ${SEED}`);
});
