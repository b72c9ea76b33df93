// Smoke run of the benchmark programs (bench/loadgen.c, bench/ceiling.c) so
// that they cannot rot: each runs for about a second against the real daemon
// and against the ceiling relay, and must report a correct final counter,
// nonzero rates and no protocol problem. The load generator's own checks
// (final counter = acked increments; seq order on every connection; the
// reconnect storm's catch-up) are what `make bench` relies on, so one test
// also shows that a wrong counter is caught.
//
// The binaries come from `make VARIANT=release bench-bin` (part of
// `make test`); the daemon is MOVEXD_BIN (release or ASan).
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, TIMEOUT, startDaemon, makeConf, makeTestCert, withTimeout, LOADGEN, runLoadgen, assertLoadgenGood as assertGood } from './lib.mjs';

const CEILING = join(ROOT, 'build/release/bench/ceiling');
const missing = !existsSync(LOADGEN) || !existsSync(CEILING)
  ? 'build/release/bench/{loadgen,ceiling} missing: make VARIANT=release bench-bin' : false;

// the benchmark's own limits: a bench writer sends far more than the
// default per-connection rate
const CONF = makeConf({ global: ['rate_messages_per_sec 1000000', 'rate_burst 10000000', 'max_connections_per_ip 100000'] });

test('loadgen against movexd: W1 and W4 shapes, correct counters, nonzero rates', { skip: missing }, async () => {
  const d = await startDaemon({ conf: CONF });
  try {
    const w1 = await runLoadgen(['--port', String(d.port), '--server-pid', String(d.pid), '--writers', '1', '--window', '16', '--subscribers', '4']);
    assertGood(w1, 'W1');
    assert.ok(w1.result.acked_per_s > 0 && w1.result.deliveries_per_s > 0, JSON.stringify(w1.result));
    assert.ok(w1.result.ack_p50_us > 0 && w1.result.fwd_p50_us > 0, 'latencies measured');
    assert.ok(w1.result.server_cpu_us_per_ack > 0, 'server CPU read from /proc');
    const w4 = await runLoadgen(['--port', String(d.port), '--writers', '8', '--rooms', '2', '--window', '4', '--subscribers', '0']);
    assertGood(w4, 'W4');
    assert.ok(w4.result.deliveries_per_s > 0, 'writers of a room see each other');
    // paced: 200 actions/s in total over 2 writers
    const paced = await runLoadgen(['--port', String(d.port), '--writers', '2', '--subscribers', '1', '--rate', '200']);
    assertGood(paced, 'paced');
    assert.ok(paced.result.acked_per_s > 100 && paced.result.acked_per_s < 300, JSON.stringify(paced.result));
  } finally {
    await d.stop();
  }
});

test('loadgen over TLS (--tls batch and --tls frame: a record per turn or per frame) against a TLS daemon: correct counters', { skip: missing }, async () => {
  const cert = makeTestCert();
  const d = await startDaemon({ conf: makeConf({ global: ['rate_messages_per_sec 1000000', 'rate_burst 10000000', `tls_cert_file ${cert.cert}`, `tls_key_file ${cert.key}`] }) });
  try {
    for (const mode of ['batch', 'frame']) {
      const r = await runLoadgen(['--port', String(d.port), '--server-pid', String(d.pid), '--tls', mode, '--writers', '1', '--window', '16', '--subscribers', '4']);
      assertGood(r, `W1 --tls ${mode}`);
      assert.equal(r.result.tls, mode);
      assert.ok(r.result.deliveries_per_s > 0, JSON.stringify(r.result));
    }
  } finally {
    await d.stop();
    rmSync(cert.dir, { recursive: true, force: true });
  }
});

test('loadgen reconnect storm against movexd: every subscriber catches up with since, nothing lost or repeated', { skip: missing }, async () => {
  const d = await startDaemon({ conf: CONF });
  try {
    const r = await runLoadgen(['--port', String(d.port), '--writers', '1', '--subscribers', '20', '--rate', '300', '--storm-at', '0.3']);
    assertGood(r, 'storm');
    assert.equal(r.result.storm_clients, 20, JSON.stringify(r.result));
    assert.ok(r.result.storm_catchup_ms >= 0, JSON.stringify(r.result));
    assert.equal(r.result.gaps, 0);
    assert.equal(r.result.dups, 0);
  } finally {
    await d.stop();
  }
});

test('loadgen catches a counter that differs from the acked increments', { skip: missing }, async () => {
  const d = await startDaemon({ conf: CONF });
  try {
    // the same rooms twice: the second run finds the first run's increments
    const prefix = `smoke${process.pid}`;
    const first = await runLoadgen(['--port', String(d.port), '--prefix', prefix, '--subscribers', '1', '--window', '4']);
    assertGood(first, 'first run');
    const second = await runLoadgen(['--port', String(d.port), '--prefix', prefix, '--subscribers', '1', '--window', '4']);
    assert.equal(second.code, 1, second.out);
    assert.equal(second.result.final_ok, false);
    assert.equal(second.result.surplus_updates, first.result.acked, JSON.stringify(second.result));
  } finally {
    await d.stop();
  }
});

test('ceiling relay: loadgen W1 and W4 against it, correct counters, clean exit', { skip: missing }, async () => {
  const p = spawn(CEILING, ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((res) => p.on('close', (code, signal) => res({ code, signal })));
  try {
    let err = '';
    const port = await withTimeout(new Promise((res, rej) => {
      p.stderr.on('data', (d) => { err += d; const m = /ceiling port=(\d+)/.exec(err); if (m) res(Number(m[1])); });
      p.on('error', rej);
    }), TIMEOUT, 'ceiling did not start');
    const w1 = await runLoadgen(['--port', String(port), '--server-pid', String(p.pid), '--subscribers', '4']);
    assertGood(w1, 'ceiling W1');
    assert.ok(w1.result.acked_per_s > 0 && w1.result.deliveries_per_s > 0);
    const w4 = await runLoadgen(['--port', String(port), '--writers', '8', '--rooms', '2', '--window', '4', '--subscribers', '0']);
    assertGood(w4, 'ceiling W4');
    p.kill('SIGTERM');
    const r = await withTimeout(exited, TIMEOUT, 'ceiling did not stop');
    assert.equal(r.code, 0);
  } finally {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
});

const ENGINE_BENCH = join(ROOT, 'build/release/bench/engine_bench');
test('engine_bench: W4 and W1 through the engine and the WAL, every action acked, one JSON line', {
  skip: existsSync(ENGINE_BENCH) ? false : 'build/release/bench/engine_bench missing: make VARIANT=release bench-bin',
}, async () => {
  for (const [wl, perRep] of [['w4', 64 * 16 * 3], ['w1', 64 * 3]]) {
    // 2 reps of 3 turns: it exits 1 unless every action got its ack
    const p = spawn(ENGINE_BENCH, [wl, '2', '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    const code = await withTimeout(new Promise((res) => p.on('close', res)), 6 * TIMEOUT, 'engine_bench did not finish')
      .catch((e) => { p.kill('SIGKILL'); throw e; });
    assert.equal(code, 0, err);
    const r = JSON.parse(out.trim());
    assert.equal(r.workload, wl);
    assert.equal(r.actions_per_rep, perRep);
    assert.ok(r.ns_per_ack > 0 && r.min <= r.ns_per_ack && r.ns_per_ack <= r.max, out);
  }
});
