// The command line: -t, --version, --help, bad confs, --listen, signals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ROOT, TIMEOUT, startDaemon, connectHello, patchAction, withTimeout, withDaemon } from './lib.mjs';

function run(args, opts = {}) {
  const r = spawnSync(BIN, args, { cwd: ROOT, encoding: 'utf8', timeout: TIMEOUT, ...opts });
  assert.equal(r.error, undefined, `spawn ${args.join(' ')}: ${r.error}`);
  return r;
}

function tmpConf(text) {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-cli-'));
  const path = join(dir, 'bad.conf');
  writeFileSync(path, text);
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

test('movexd -t -c conf/movexd.conf exits 0', () => {
  const r = run(['-t', '-c', 'conf/movexd.conf']);
  assert.equal(r.status, 0, `stderr: ${r.stderr}`);
  assert.match(r.stdout + r.stderr, /valid/);
  const long = run(['--test-config', '--config', 'conf/movexd.conf']);
  assert.equal(long.status, 0, `long options; stderr: ${long.stderr}`);
});

test('a conf with an unknown key exits 1 with FILE:LINE: in stderr', () => {
  const { path, cleanup } = tmpConf('# comment\nlog_level info\nmax_dept 5\n');
  try {
    for (const args of [['-t', '-c', path], ['-c', path, '--listen', '127.0.0.1:0']]) {
      const r = run(args);
      assert.equal(r.status, 1, `${args.join(' ')}: exit status (stderr: ${r.stderr})`);
      assert.ok(r.stderr.includes(`${path}:3:`), `stderr names FILE:LINE: ${r.stderr}`);
      assert.match(r.stderr, /max_dept/);
    }
  } finally { cleanup(); }
});

test('other conf errors also exit 1 with FILE:LINE:', () => {
  const cases = [
    ['room todo {\n    histroy 5\n}\n', 2],
    ['max_depth 0\n', 1],
    ['log_level info\nlog_level warn\n', 2],
    ['room todo {\n    history 5\n', 1],
  ];
  for (const [text, line] of cases) {
    const { path, cleanup } = tmpConf(text);
    try {
      const r = run(['-t', '-c', path]);
      assert.equal(r.status, 1, `${JSON.stringify(text)}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`${path}:${line}:`), `${JSON.stringify(text)}: expected ${path}:${line}: in ${r.stderr}`);
    } finally { cleanup(); }
  }
  const missing = run(['-t', '-c', '/nonexistent/movexd.conf']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /\/nonexistent\/movexd\.conf/);
});

test('--version and --help exit 0', () => {
  for (const a of ['--version', '-V']) {
    const r = run([a]);
    assert.equal(r.status, 0, a);
    assert.match(r.stdout, /movexd \d+\.\d+/, `${a} prints the version`);
  }
  for (const a of ['--help', '-h']) {
    const r = run([a]);
    assert.equal(r.status, 0, a);
    assert.match(r.stdout, /usage: movexd/);
    assert.match(r.stdout, /--listen/);
  }
  const bad = run(['--no-such-option']);
  assert.equal(bad.status, 1, 'unknown option exits 1');
  const extra = run(['-t', 'stray-argument']);
  assert.equal(extra.status, 1, 'stray argument exits 1');
});

test('--listen overrides the conf listen address', async () => {
  // Hold a port so the conf's address cannot be bound: the daemon only starts
  // if it really uses --listen.
  const blocker = createServer();
  await new Promise((res) => blocker.listen(0, '127.0.0.1', res));
  const held = blocker.address().port;
  try {
    const conf = `listen 127.0.0.1:${held}\nlog_level info\nroom default {\n    create_on_subscribe yes\n}\n`;
    await withDaemon({ conf }, async (d) => {
      assert.notEqual(d.port, held, 'listening on the --listen port, not the conf one');
      assert.match(d.stderr, new RegExp(`event=listening addr=127\\.0\\.0\\.1 port=${d.port}`));
      const c = await connectHello(d, 'listen');
      assert.equal((await c.request({ type: 'ping' })).type, 'pong');
      await c.close();
    });
  } finally {
    await new Promise((res) => blocker.close(res));
  }
});

test('a --listen port that is taken: exit 2 (start-up failure)', async () => {
  const blocker = createServer();
  await new Promise((res) => blocker.listen(0, '127.0.0.1', res));
  const held = blocker.address().port;
  const dir = mkdtempSync(join(tmpdir(), 'movexd-cli-'));
  try {
    // libwebsockets leaks 72 bytes inside lws_create_context() when binding
    // fails (a library bug on a path that ends the process): do not let
    // LeakSanitizer turn exit 2 into 86 here.
    const env = { ...process.env, ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || ''}:detect_leaks=0` };
    const r = run(['--listen', `127.0.0.1:${held}`, '--data-dir', join(dir, 'data')], { env });
    assert.equal(r.status, 2, `exit status; stderr: ${r.stderr}`);
    assert.match(r.stderr, /listen_failed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await new Promise((res) => blocker.close(res));
  }
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  test(`${sig} with live connections and rooms -> exit 0`, async () => {
    const d = await startDaemon();
    try {
      const a = await connectHello(d, 'sig-a');
      const b = await connectHello(d, 'sig-b');
      const room = 'todo:signal';
      for (const c of [a, b]) await c.request({ type: 'subscribe', room });
      assert.equal((await a.request(patchAction(room, 1, [{ op: 'add', path: '/x', value: 1 }]))).type, 'ack');
      // leave some actions in flight
      for (let n = 2; n <= 50; n++) a.send(patchAction(room, n, [{ op: 'inc', path: '/x', value: 1 }]));
      d.proc.kill(sig);
      const r = await withTimeout(d.exited, TIMEOUT, `daemon did not exit on ${sig}`);
      assert.deepEqual(r, { code: 0, signal: null }, `${sig}: exit status; stderr: ${d.stderr.slice(-2000)}`);
      assert.match(d.stderr, /event=stopped/);
      const ca = await withTimeout(a.closed, TIMEOUT, 'client a sees the close');
      assert.ok(typeof ca.code === 'number');
      await withTimeout(b.closed, TIMEOUT, 'client b sees the close');
    } finally {
      await d.stop(); // asserts exit code 0, removes the temp dir
    }
  });
}

// data_dir: -t runs start-up's own check (dircheck.c) and says what
// start-up would say; -t used to call a data directory on /proc, or below
// a file, valid. Start-up makes every missing level.
test('movexd -t refuses a data_dir start-up would refuse, with start-up\'s message; a nested new one is created at start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-datadir-'));
  try {
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    const cases = [
      ['/proc/movexd-test-data', /data directory \/proc\/movexd-test-data: \/proc is on a proc filesystem, which cannot hold files/],
      [join(file, 'data'), /data directory .*file\/data: .*file is not a writable directory/],
    ];
    for (const [dd, want] of cases) {
      const t = run(['-t', '--data-dir', dd]);
      assert.equal(t.status, 1, t.stdout);
      assert.match(t.stderr, want);
      const s = run(['--listen', '127.0.0.1:0', '--data-dir', dd]); // refused before it listens
      assert.equal(s.status, 1, s.stderr);
      assert.equal(s.stderr, t.stderr);
    }
    // from the conf: FILE:LINE
    const conf = join(dir, 'movexd.conf');
    writeFileSync(conf, 'log_level info\ndata_dir /proc/movexd-test-data\n');
    const c = run(['-t', '-c', conf]);
    assert.equal(c.status, 1, c.stdout);
    assert.ok(c.stderr.includes(`${conf}:2: data directory /proc/movexd-test-data: `), c.stderr);
    // three missing levels: -t accepts (and creates nothing), start-up makes them
    const deep = join(dir, 'a', 'b', 'c');
    assert.equal(run(['-t', '--data-dir', deep]).status, 0);
    await withDaemon({ args: ['--data-dir', deep] }, async (d) => {
      await d.waitLog(/event=started /);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
