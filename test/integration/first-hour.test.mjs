// Issue #13 item 6, the first hour of a new user: each test names the
// fix it holds in place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ROOT, startDaemon, makeConf, httpRequest } from './lib.mjs';

test('serve_demo no: / and /demo/* answer 404, the library is still served', async () => {
  const conf = makeConf({ global: [`client_dir ${join(ROOT, 'client')}`, 'serve_demo no'] });
  const d = await startDaemon({ conf });
  try {
    for (const path of ['/', '/index.html', '/demo/app.js']) {
      const r = await httpRequest(d, { path });
      assert.equal(r.status, 404, `${path} with serve_demo no`);
    }
    const lib = await httpRequest(d, { path: '/movex.js' });
    assert.equal(lib.status, 200);
  } finally {
    await d.stop();
  }
  // the default (and conf/movexd.conf for make run) serves it
  const d2 = await startDaemon({ conf: makeConf({ global: [`client_dir ${join(ROOT, 'client')}`] }) });
  try {
    assert.equal((await httpRequest(d2, { path: '/' })).status, 200);
  } finally {
    await d2.stop();
  }
});

test('/metrics: movexd_build_info and the process_* series (CPU, RSS, fds)', async () => {
  const d = await startDaemon();
  const read = async () => {
    const r = await httpRequest(d, { path: '/metrics' });
    assert.equal(r.status, 200);
    const v = {};
    for (const l of r.body.split('\n')) {
      const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(l);
      if (m) v[m[1]] = Number(m[2]);
    }
    return { v, text: r.body };
  };
  try {
    const { v, text } = await read();
    assert.match(text, /^# TYPE movexd_build_info gauge$/m);
    assert.equal(v['movexd_build_info{version="0.1.0"}'], 1, text);
    assert.match(text, /^# TYPE process_cpu_seconds_total counter$/m);
    assert.ok(v.process_cpu_seconds_total >= 0);
    assert.ok(v.process_resident_memory_bytes > 1e6, `rss ${v.process_resident_memory_bytes}`);
    assert.ok(v.process_virtual_memory_bytes >= v.process_resident_memory_bytes);
    assert.ok(v.process_max_fds >= 64);
    const now = Date.now() / 1000;
    assert.ok(v.process_start_time_seconds > now - 600 && v.process_start_time_seconds <= now + 1,
      `start ${v.process_start_time_seconds} vs now ${now}`);
    // each WebSocket is a descriptor of the daemon
    const before = v.process_open_fds;
    const { connectHello } = await import('./lib.mjs');
    const conns = await Promise.all([1, 2, 3, 4, 5].map((i) => connectHello(d, `fd${i}`)));
    const after = (await read()).v.process_open_fds;
    assert.ok(after >= before + 5, `open fds ${before} -> ${after} with 5 more connections`);
    await Promise.all(conns.map((c) => c.close()));
  } finally {
    await d.stop();
  }
});

test('movexd -t: TLS files must exist and be readable; every error names FILE:LINE', async () => {
  const { spawnSync } = await import('node:child_process');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { BIN } = await import('./lib.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'movexd-t-'));
  try {
    const cases = [
      ['# tls\ntls_cert_file /nonexistent/cert.pem\ntls_key_file /nonexistent/key.pem\n', /^movexd: .*c\.conf:2: tls_cert_file \/nonexistent\/cert\.pem: No such file or directory$/m],
      [`tls_cert_file ${join(ROOT, 'README.md')}\n\ntls_key_file ${dir}\n`, /c\.conf:3: tls_key_file .*: Is a directory$/m],
      [`log_level info\ntls_cert_file ${join(ROOT, 'README.md')}\n`, /c\.conf:2: tls_cert_file is set but tls_key_file is not/],
      ['auth jwt\n\nauth_hs256_secret_file /nonexistent/secret\n', /c\.conf:3: \/nonexistent\/secret: No such file or directory/],
      ['auth jwt\n', /c\.conf:1: auth jwt needs/],
      ['\nadmin_token_file /nonexistent/token\n', /c\.conf:2: \/nonexistent\/token: cannot read the admin token/],
      ['log_level info\nlisten *:8080\n', /c\.conf:2: refusing to listen on every address with auth none/],
    ];
    for (const [text, re] of cases) {
      const conf = join(dir, 'c.conf');
      writeFileSync(conf, text);
      const r = spawnSync(BIN, ['-t', '-c', conf], { encoding: 'utf8' });
      assert.equal(r.status, 1, `${JSON.stringify(text)}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, re, JSON.stringify(text));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a port in use: exit 2 saying "Address already in use"', async () => {
  const { spawnSync } = await import('node:child_process');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { BIN, TIMEOUT } = await import('./lib.mjs');
  const d = await startDaemon();
  const dir = mkdtempSync(join(tmpdir(), 'movexd-inuse-'));
  try {
    // libwebsockets 4.1.6 leaks 72 bytes when it cannot create its context
    // (inside lws, on this exit path only): no leak check for this run
    const env = { ...process.env, ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || ''}:detect_leaks=0` };
    const s = spawnSync(BIN, ['--listen', `127.0.0.1:${d.port}`, '--data-dir', join(dir, 'data')],
      { encoding: 'utf8', env, timeout: TIMEOUT });
    const r = { code: s.status, stderr: s.stderr };
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /event=listen_failed addr=127\.0\.0\.1 port=\d+ reason="Address already in use"/);
    assert.match(r.stderr, /^movexd: cannot listen on 127\.0\.0\.1:\d+: Address already in use \(another movexd/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await d.stop();
  }
});

test('a reload logs the keys that changed, by their conf names', async () => {
  const { writeFileSync } = await import('node:fs');
  const base = (extra = '', todo = '') => `log_level info\n${extra}room default {\n    create_on_subscribe yes\n}\nroom todo {\n${todo}}\nroom old {\n}\n`;
  const d = await startDaemon({ conf: base() });
  try {
    const reload = async (text) => {
      writeFileSync(d.confPath, text);
      const from = d.stderr.length;
      d.proc.kill('SIGHUP');
      const m = await d.waitLog(/event=reloaded config=\S+ changed=(\S+)/, undefined, from);
      return m[1];
    };
    assert.equal(await reload(base()), 'none');
    const text = `log_level info\nmax_depth 32\nrate_burst 500\nroom default {\n    create_on_subscribe yes\n}\nroom todo {\n    history 7\n}\nroom chat {\n}\n`;
    assert.equal(await reload(text), 'max_depth,rate_burst,+room:chat,todo.history,-room:old');
  } finally {
    await d.stop();
  }
});

test('make run: no compiler lines, and the demo URL is printed', { skip: process.env.VARIANT === 'asan' && 'make run builds the release variant' }, async () => {
  const { spawn } = await import('node:child_process');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { TIMEOUT } = await import('./lib.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'movexd-makerun-'));
  const conf = join(dir, 'run.conf');
  writeFileSync(conf, `listen 127.0.0.1:0\ndata_dir ${join(dir, 'data')}\nclient_dir ${join(ROOT, 'client')}\nserve_demo yes\n`);
  // its own process group, so the make, its shell and the daemon stop together
  const p = spawn('make', ['--no-print-directory', 'run', `CONF=${conf}`], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  try {
    const url = await new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`no demo url; output:\n${out}`)), 6 * TIMEOUT);
      const check = () => {
        const m = /event=demo url=(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
        if (m) { clearTimeout(t); res(m[1]); }
      };
      p.stdout.on('data', check);
      p.stderr.on('data', check);
      p.on('close', () => { clearTimeout(t); rej(new Error(`make run exited; output:\n${out}`)); });
    });
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.doesNotMatch(out, /^(cc|gcc|clang) |-Werror|\.o\b/m, `compiler lines in make run's output:\n${out}`);
  } finally {
    try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ }
    await new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.on('close', r)));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('error and reject log lines name the room', async () => {
  const { connectHello, patchAction } = await import('./lib.mjs');
  const d = await startDaemon({ args: ['--log-level', 'debug'] });
  try {
    const c = await connectHello(d, 'eve');
    const e = await c.request({ type: 'unsubscribe', room: 'todo:nowhere' });
    assert.equal(e.type, 'error');
    await d.waitLog(new RegExp(`debug event=error client=eve room=todo:nowhere code=${e.code} `));
    await c.request({ type: 'subscribe', room: 'todo:r' });
    const r = await c.request(patchAction('todo:r', 1, [{ op: 'test', path: '/x', value: 1 }]));
    assert.equal(r.type, 'reject');
    await d.waitLog(/debug event=reject client=eve room=todo:r n=1 code=(test_failed|bad_patch)/);
    await c.close();
  } finally {
    await d.stop();
  }
});
