// Out of descriptors (src/main.c fit_descriptors, src/server.c shed_waiting
// and FILTER_NETWORK_CONNECTION, src/log.c rate limit): the daemon runs
// under `prlimit --nofile=64` with max_connections 10000 and 80 clients.
// Before the fix it logged ~150,000 "accept: errno 24" lines a second and
// pinned a core. Now max_connections is lowered to what fits (with a
// warning), connections past the descriptors left are closed at accept,
// the log stays small, the CPU idle, /healthz answers and SIGTERM stops it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withDaemon, withTimeout, httpRequest, Client, BIN, TIMEOUT, waitFor } from './lib.mjs';
import { healthy } from './rawhttp.mjs';

const CONF = 'log_level info\nmax_connections 10000\nroom default {\n    create_on_subscribe yes\n}\n';
const TICKS = 100; // USER_HZ: /proc/PID/stat counts CPU time in 1/100 s

// A wrapper that runs movexd with 64 descriptors (prlimit execs it: same pid).
function limitedBin(dir) {
  const w = join(dir, 'movexd-nofile64');
  writeFileSync(w, `#!/bin/sh\nexec prlimit --nofile=64:64 -- ${BIN} "$@"\n`);
  chmodSync(w, 0o755);
  return w;
}

// CPU seconds the process has used.
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / TICKS; // utime, stime
}

async function withLimitedDaemon(fn) {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-nofile-'));
  try {
    await withDaemon({ conf: CONF, bin: limitedBin(dir) }, fn);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('max_connections that the descriptor limit cannot hold is lowered at start, with a warning naming both', async () => {
  await withLimitedDaemon(async (d) => {
    const m = await d.waitLog(/warn event=max_connections_lowered configured=10000 effective=(\d+) nofile=64 nofile_hard=64/);
    const effective = Number(m[1]);
    assert.ok(effective >= 1 && effective < 64, `effective ${effective}`);
  });
});

test('a reload of the same conf under the same descriptor limit says changed=none (the lowered max_connections is not a change)', async () => {
  await withLimitedDaemon(async (d) => {
    await d.waitLog(/event=max_connections_lowered/);
    d.proc.kill('SIGHUP');
    const m = await d.waitLog(/event=reloaded config=\S+ changed=(\S+)/);
    assert.equal(m[1], 'none', 'nothing in the conf changed');
  });
});

test('80 WebSocket clients under 64 descriptors: some served, the rest closed; the log stays small, the CPU idle, /healthz answers', async () => {
  await withLimitedDaemon(async (d) => {
    const effective = Number((await d.waitLog(/effective=(\d+)/))[1]);
    const cpu0 = cpuSeconds(d.pid);
    const t0 = Date.now();
    const clients = [];
    const results = await Promise.allSettled(Array.from({ length: 80 }, async (_, i) => {
      const c = new Client(d.url);
      clients.push(c);
      await c.opened;
      c.send({ type: 'hello', client: `c${i}` });
      return await Promise.race([c.next((m) => m.type === 'welcome'), c.closed.then((x) => { throw new Error(`closed ${x.code}`); })]);
    }));
    const served = results.filter((r) => r.status === 'fulfilled').length;
    assert.ok(served >= 1 && served <= effective, `served ${served}, effective max_connections ${effective}`);
    // the others were closed (1013 at max_connections, or at accept)
    for (let i = 0; i < clients.length; i++) {
      if (results[i].status === 'rejected') await withTimeout(clients[i].closed, TIMEOUT, 'the refused client is closed');
    }
    assert.ok(await healthy(d.port), '/healthz answers while the served clients stay connected');
    const cpu = cpuSeconds(d.pid) - cpu0;
    const wall = (Date.now() - t0) / 1000;
    assert.ok(cpu < wall * 0.5 + 0.5, `CPU ${cpu.toFixed(2)} s in ${wall.toFixed(2)} s: not pinned`);
    const lines = d.stderr.split('\n').length;
    assert.ok(lines < 200, `the log stays small: ${lines} lines`);
    for (const c of clients) c.close();
  });
});

test('80 idle TCP connections under 64 descriptors: no accept storm; /healthz answers once lws drops the idle ones', async () => {
  await withLimitedDaemon(async (d) => {
    const cpu0 = cpuSeconds(d.pid);
    const t0 = Date.now();
    const socks = [];
    let closedByServer = 0;
    for (let i = 0; i < 80; i++) {
      const s = net.connect(d.port, '127.0.0.1');
      s.on('error', () => {});
      s.on('close', () => { closedByServer++; });
      socks.push(s);
    }
    // connections past the descriptors left are closed at accept at once
    await waitFor(() => closedByServer >= 80 - 64 + 8, 'connections past the limit closed at accept');
    // the idle ones are dropped by lws's timeout; then /healthz is served
    await waitFor(async () => healthy(d.port, 2000).catch(() => false), '/healthz answers', 3 * TIMEOUT);
    const cpu = cpuSeconds(d.pid) - cpu0;
    const wall = (Date.now() - t0) / 1000;
    assert.ok(cpu < wall * 0.5 + 0.5, `CPU ${cpu.toFixed(2)} s in ${wall.toFixed(2)} s: not pinned`);
    const lines = d.stderr.split('\n').length;
    assert.ok(lines < 200, `the log stays small: ${lines} lines\n${d.stderr.slice(-2000)}`);
    assert.match(d.stderr, /warn event=connection_refused reason="too few descriptors left"/);
    const m = /^movexd_descriptor_refusals_total (\d+)$/m.exec((await httpRequest(d, { path: '/metrics' })).body);
    assert.ok(m && Number(m[1]) >= 80 - 64 + 8, `movexd_descriptor_refusals_total counts them: ${m && m[1]}`);
    for (const s of socks) s.destroy();
  });
});
