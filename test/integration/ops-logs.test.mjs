// log_file: with it set, every event line goes to that file (timestamp,
// level, key=value) and nothing to stderr; logrotate's "rename, then
// SIGHUP" makes the daemon reopen the path, so the next lines (the reload's
// own first) go to the new file and none to the renamed one, also when the
// reloaded conf is refused; a log_file that cannot be opened at start-up
// stops the daemon with exit 1 and a message naming the file and the
// reason; and bearer credentials (JWTs in hello, the admin token) never
// reach the file, even at log_level debug.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BIN, TIMEOUT, Client, connectHello, httpRequest, makeConf, patchAction, runDaemonToExit, waitFor, withTimeout,
} from './lib.mjs';

const read = (p) => (existsSync(p) ? readFileSync(p, 'utf8') : '');

// A log line as log.c writes it to a file: UTC timestamp, level, event=NAME.
const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) event=[a-z_]+( |$)/;

// Start the daemon on DIR/movexd.conf with `conf`; it logs to a file, so
// (unlike lib.mjs's startDaemon, which reads the port from stderr) the
// port comes from the event=listening line of `logPath`.
async function startLogging({ conf, logPath, dir, env }) {
  const confPath = join(dir, 'movexd.conf');
  writeFileSync(confPath, conf);
  const proc = spawn(BIN, ['-c', confPath, '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((res) => proc.on('close', (code, signal) => res({ code, signal })));
  let gone = null;
  exited.then((r) => { gone = r; });
  let port;
  try {
    port = Number(await waitFor(() => {
      if (gone) throw new Error(`daemon exited ${gone.code}/${gone.signal} before listening; stderr:\n${stderr}\nlog:\n${read(logPath)}`);
      return (/event=listening .*port=(\d+)/.exec(read(logPath)) || [])[1];
    }, `event=listening in ${logPath}`));
  } catch (e) {
    if (!gone) proc.kill('SIGKILL');
    throw e;
  }
  return {
    proc, port, confPath,
    url: `ws://127.0.0.1:${port}/ws`,
    get stderr() { return stderr; },
    // SIGTERM, wait, assert exit 0
    async stop() {
      if (!gone) proc.kill('SIGTERM');
      let r;
      try {
        r = await withTimeout(exited, TIMEOUT, 'daemon did not stop');
      } catch (e) {
        proc.kill('SIGKILL');
        throw e;
      }
      assert.equal(r.code, 0, `exit ${r.code}/${r.signal}; stderr:\n${stderr}\nlog tail:\n${read(logPath).slice(-3000)}`);
    },
    kill() { if (!gone) proc.kill('SIGKILL'); return exited; },
  };
}

// Run fn(d) against a daemon logging to DIR/log/movexd.log; always stop it.
async function withLogging({ conf, env }, fn) {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-logs-'));
  const logDir = join(dir, 'log');
  mkdirSync(logDir);
  const logPath = join(logDir, 'movexd.log');
  let d;
  try {
    d = await startLogging({ conf: conf(logPath), logPath, dir, env });
    await fn(d, logPath, dir);
    await d.stop();
    d = null;
  } finally {
    if (d) await d.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('log_file: event lines (timestamp, level, key=value) go to the file, none to stderr', async () => {
  // JOURNAL_STREAM set as under systemd: the file still gets timestamps and
  // no "<6>" priority prefix (that is for the journal on stderr only)
  await withLogging({ conf: (p) => makeConf({ global: [`log_file ${p}`] }), env: { JOURNAL_STREAM: '8:12345' } }, async (d, logPath) => {
    const c = await connectHello(d, 'log-writer');
    assert.notEqual((await c.request({ type: 'subscribe', room: 'logs:one' })).type, 'error');
    assert.equal((await c.request(patchAction('logs:one', 1, [{ op: 'add', path: '/a', value: 1 }]))).type, 'ack');
    await c.close();
    await waitFor(() => /event=hello client=log-writer/.test(read(logPath)), 'event=hello in the log file');
    const text = read(logPath);
    for (const ev of ['recovered', 'listening', 'started', 'hello', 'room_created']) {
      assert.match(text, new RegExp(`event=${ev}( |$)`, 'm'), `event=${ev} in the file:\n${text}`);
    }
    const lines = text.split('\n').filter(Boolean);
    for (const l of lines) assert.match(l, LINE, `a log line of the file: ${JSON.stringify(l)}`);
    assert.equal(d.stderr, '', 'nothing on stderr while logging to a file');
    await d.stop();
    assert.match(read(logPath), /info event=stopped$/m, 'the last lines reach the file too');
    assert.equal(d.stderr, '', 'nothing on stderr, up to the exit');
  });
});

test('logrotate: rename the file, SIGHUP: the reload\'s lines and all later ones go to a new file at the path, none to the renamed one', async () => {
  await withLogging({ conf: (p) => makeConf({ global: [`log_file ${p}`] }) }, async (d, logPath) => {
    await connectHello(d, 'before-rotation').then((c) => c.close());
    await waitFor(() => /client=before-rotation/.test(read(logPath)), 'first hello logged');

    // rotation 1: a good conf
    const rotated1 = `${logPath}.1`;
    renameSync(logPath, rotated1);
    const frozen1 = read(rotated1);
    d.proc.kill('SIGHUP');
    await waitFor(() => /event=reloaded /.test(read(logPath)), 'event=reloaded in a new file at the log_file path');
    assert.match(read(logPath), /^\S+ info event=reload config=/m, 'the reload\'s first line is in the new file');
    const c = await connectHello(d, 'after-rotation');
    await waitFor(() => /client=after-rotation/.test(read(logPath)), 'a later event in the new file');
    await c.close();
    assert.equal(read(rotated1), frozen1, 'the renamed file got no line after the rename');

    // rotation 2: the reloaded conf is refused; the log is reopened anyway
    const rotated2 = `${logPath}.2`;
    renameSync(logPath, rotated2);
    const frozen2 = read(rotated2);
    writeFileSync(d.confPath, `${readFileSync(d.confPath, 'utf8')}\nmax_dept 5\n`);
    d.proc.kill('SIGHUP');
    await waitFor(() => /event=reload_refused /.test(read(logPath)), 'event=reload_refused in a new file');
    assert.match(read(logPath), /unknown key 'max_dept'/);
    await connectHello(d, 'after-refused').then((x) => x.close());
    await waitFor(() => /client=after-refused/.test(read(logPath)), 'a later event in the new file');
    assert.equal(read(rotated2), frozen2, 'the second renamed file got no line after the rename');
    assert.equal(read(rotated1), frozen1, 'the first renamed file is still untouched');
    for (const l of read(logPath).split('\n').filter(Boolean)) assert.match(l, LINE);
    assert.equal(d.stderr, '', 'nothing on stderr');
  });
});

test('a log_file that cannot be opened at start-up: exit 1, the message names the file and the reason', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-logs-'));
  try {
    writeFileSync(join(dir, 'a-file'), 'x');
    mkdirSync(join(dir, 'a-dir'));
    const cases = [
      [join(dir, 'missing-dir', 'movexd.log'), /No such file or directory/],
      [join(dir, 'a-dir'), /Is a directory/],
      [join(dir, 'a-file', 'movexd.log'), /Not a directory/],
    ];
    if (process.getuid && process.getuid() !== 0) {
      mkdirSync(join(dir, 'read-only'), { mode: 0o555 });
      cases.push([join(dir, 'read-only', 'movexd.log'), /Permission denied/]);
    }
    for (const [path, why] of cases) {
      const r = await runDaemonToExit({ dir: join(dir, 'run'), conf: makeConf({ global: [`log_file ${path}`] }) });
      assert.equal(r.code, 1, `log_file ${path}: exit status; stderr:\n${r.stderr}`);
      const msg = r.stderr.trim();
      assert.ok(msg.includes(`log_file ${path}: cannot open for appending`), `message names the file: ${msg}`);
      assert.match(msg, why, `message gives the reason: ${msg}`);
      assert.doesNotMatch(msg, /event=listening/, 'it never listened');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// HS256 compact JWS, minted here with node:crypto.
const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
function hs256(secret, payload) {
  const si = `${b64u({ alg: 'HS256', typ: 'JWT' })}.${b64u(payload)}`;
  return `${si}.${createHmac('sha256', secret).update(si).digest('base64url')}`;
}

test('tokens and secrets never reach the log file (auth jwt, admin API, log_level debug)', async () => {
  const keys = mkdtempSync(join(tmpdir(), 'movexd-logs-keys-'));
  try {
    const secret = randomBytes(48).toString('base64url');
    writeFileSync(join(keys, 'hs256.secret'), `${secret}\n`, { mode: 0o600 });
    const adminToken = randomBytes(32).toString('base64url');
    writeFileSync(join(keys, 'admin-token'), `${adminToken}\n`, { mode: 0o600 });
    const now = Math.floor(Date.now() / 1000);
    const grants = { rooms: [{ match: 'logs:*', rights: ['read', 'write', 'create'] }] };
    const good = hs256(secret, { sub: 'alice', exp: now + 3600, movex: grants });
    const expired = hs256(secret, { sub: 'bob', exp: now - 3600 });
    const forged = hs256(randomBytes(48), { sub: 'mallory', exp: now + 3600, movex: grants });
    const wrongAdmin = randomBytes(32).toString('base64url');
    const conf = (p) => `log_level debug
log_file ${p}
auth jwt
auth_hs256_secret_file ${join(keys, 'hs256.secret')}
admin_token_file ${join(keys, 'admin-token')}
room default {
    create_on_subscribe yes
}
`;
    await withLogging({ conf }, async (d, logPath) => {
      // a client that authenticates and works
      const a = await Client.connect(d.url);
      a.send({ type: 'hello', token: good });
      assert.equal((await a.next((m) => m.type === 'welcome' || m.type === 'error')).type, 'welcome');
      assert.notEqual((await a.request({ type: 'subscribe', room: 'logs:t' })).type, 'error');
      assert.equal((await a.request(patchAction('logs:t', 1, [{ op: 'add', path: '/x', value: 1 }]))).type, 'ack');
      // refused tokens: expired, bad signature
      for (const tok of [expired, forged]) {
        const b = await Client.connect(d.url);
        b.send({ type: 'hello', token: tok });
        assert.equal((await b.next((m) => m.type === 'welcome' || m.type === 'error')).type, 'error');
        await withTimeout(b.closed, TIMEOUT, 'refused connection closes');
      }
      // the admin API with the right and a wrong bearer token
      assert.equal((await httpRequest(d.port, { path: '/admin/rooms', headers: { authorization: `Bearer ${adminToken}` } })).status, 200);
      assert.equal((await httpRequest(d.port, { path: '/admin/rooms', headers: { authorization: `Bearer ${wrongAdmin}` } })).status, 401);
      // a reload re-reads both key files
      d.proc.kill('SIGHUP');
      await waitFor(() => /event=reloaded /.test(read(logPath)), 'reload logged');
      await a.close();
      await waitFor(() => /event=admin_unauthorized/.test(read(logPath)) && /event=auth_failed/.test(read(logPath)),
        'the refusals are logged (so the log was written while the tokens were in use)');
      await d.stop();
      const text = read(logPath);
      assert.match(text, /event=hello client=alice/, 'the authenticated client is logged by its id');
      const secrets = {
        'the valid JWT': good,
        'the valid JWT\'s signature': good.split('.')[2],
        'the expired JWT': expired,
        'the expired JWT\'s signature': expired.split('.')[2],
        'the forged JWT': forged,
        'the forged JWT\'s signature': forged.split('.')[2],
        'the HS256 secret': secret,
        'the admin token': adminToken,
        'the wrong admin token': wrongAdmin,
      };
      for (const [what, s] of Object.entries(secrets)) {
        assert.ok(!text.includes(s), `${what} appears in the log file`);
        assert.ok(!d.stderr.includes(s), `${what} appears on stderr`);
      }
    });
  } finally {
    rmSync(keys, { recursive: true, force: true });
  }
});
