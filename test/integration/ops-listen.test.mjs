// The listening socket.
//  - event=listening names the address and port really bound (127.0.0.1,
//    ::1, an interface name, every address), and the kernel agrees
//    (/proc/net/tcp, tcp6);
//  - bind_mismatch: when libwebsockets cannot look the configured address
//    up (socket(AF_NETLINK) refused, as under a RestrictAddressFamilies=
//    without AF_NETLINK) it binds every address; the daemon notices, logs
//    event=bind_mismatch and exits 2 instead of serving there;
//  - socket activation: started by `systemd-socket-activate -l ADDR:PORT`,
//    the daemon serves the inherited socket (WebSocket hello, subscribe,
//    action; /healthz; also over TLS) and binds nothing itself; auth none
//    is refused on an inherited socket that is not loopback; a passed
//    descriptor that is not a listening socket stops the start (exit 2).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import WebSocket from '../node_modules/ws/index.js';
import {
  BIN, SECCOMP_DECLS, TIMEOUT, Client, makeConf, patchAction, runDaemonToExit, startDaemon, waitFor, withDaemon, withTimeout,
} from './lib.mjs';

const has = (cmd) => !spawnSync('sh', ['-c', `command -v ${cmd}`]).status;

let DIR;
before(() => { DIR = mkdtempSync(join(tmpdir(), 'movexd-listen-')); });
after(() => rmSync(DIR, { recursive: true, force: true }));

// Local addresses in LISTEN state on `port`, as /proc/net/tcp{,6} spell
// them (hex, e.g. 0100007F = 127.0.0.1).
function listening(port) {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const addrs = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(f)) continue;
    for (const l of readFileSync(f, 'utf8').split('\n').slice(1)) {
      const c = l.trim().split(/\s+/);
      if (c.length > 3 && c[3] === '0A' && c[1].endsWith(`:${hexPort}`)) addrs.push(c[1].split(':')[0]);
    }
  }
  return addrs;
}
const V4_LOOPBACK = '0100007F';
const V6_LOOPBACK = '00000000000000000000000001000000';

function canListen(host) {
  return new Promise((res) => {
    const s = createServer();
    s.on('error', () => res(false));
    s.listen(0, host, () => s.close(() => res(true)));
  });
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

// GET over https:// (TLS options in opts); {status, body}.
function httpsGet(url, opts = {}) {
  return withTimeout(new Promise((res, rej) => {
    const req = https.get(url, opts, (r) => {
      let body = '';
      r.on('data', (x) => { body += x; });
      r.on('end', () => res({ status: r.statusCode, body }));
    });
    req.on('error', rej);
  }), TIMEOUT, `GET ${url}`);
}

// ---------------------------------------------- the address in the log --

test('event=listening names the bound address: 127.0.0.1, and the kernel has the socket on 127.0.0.1 only', async () => {
  await withDaemon({}, async (d) => {
    assert.match(d.stderr, new RegExp(`info event=listening addr=127\\.0\\.0\\.1 port=${d.port} listen=127\\.0\\.0\\.1:0 tls=off ws=ws://127\\.0\\.0\\.1:${d.port}/ws`));
    assert.deepEqual(listening(d.port), [V4_LOOPBACK]);
    const c = await Client.connect(d.url);
    await c.hello('v4');
    await c.close();
  });
});

test('event=listening names the bound address: [::1], served over IPv6 only', async (t) => {
  if (!(await canListen('::1'))) {
    t.skip('no IPv6 loopback on this host');
    return;
  }
  await withDaemon({ args: ['--listen', '[::1]:0'] }, async (d) => {
    assert.match(d.stderr, new RegExp(`info event=listening addr=::1 port=${d.port} listen=\\[::1\\]:0 tls=off ws=ws://\\[::1\\]:${d.port}/ws`));
    assert.deepEqual(listening(d.port), [V6_LOOPBACK]);
    const c = await Client.connect(`ws://[::1]:${d.port}/ws`);
    assert.equal((await c.hello('v6')).client, 'v6');
    assert.notEqual((await c.request({ type: 'subscribe', room: 'six:one' })).type, 'error');
    await c.close();
    const r = await fetch(`http://[::1]:${d.port}/healthz`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'ok\n');
  });
});

test('event=listening for an interface name (lo) and for every address (*)', async () => {
  await withDaemon({ args: ['--listen', 'lo:0'] }, async (d) => {
    assert.match(d.stderr, new RegExp(`event=listening addr=127\\.0\\.0\\.1 port=${d.port} listen=lo:0 `));
    assert.deepEqual(listening(d.port), [V4_LOOPBACK]);
  });
  const conf = makeConf({ global: ['allow_insecure_listen yes'] });
  await withDaemon({ conf, args: ['--listen', '*:0'] }, async (d) => {
    // lws binds the IPv6 wildcard (dual stack) for every address
    const m = new RegExp(`event=listening addr=(::|0\\.0\\.0\\.0) port=${d.port} listen=\\*:0 tls=off ws=ws://localhost:${d.port}/ws`).exec(d.stderr);
    assert.ok(m, `listening line for *:\n${d.stderr}`);
    assert.match(d.stderr, /warn event=insecure /);
  });
});

// ------------------------------------------------------- bind_mismatch --

// Runs CMD with socket(AF_NETLINK, ...) failing with EAFNOSUPPORT, as
// RestrictAddressFamilies= without AF_NETLINK does: getifaddrs() fails.
// libseccomp.so.2 is used without its headers.
const NO_NETLINK_C = String.raw`
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
${SECCOMP_DECLS}
int main(int argc, char **argv)
{
    if (argc < 2) return 121;
    scmp_filter_ctx c = seccomp_init(0x7fff0000U); /* allow */
    struct scmp_arg_cmp cmp = {0, 4 /* EQ */, 16 /* AF_NETLINK */, 0};
    if (!c || seccomp_rule_add_array(c, 0x00050000U | EAFNOSUPPORT, seccomp_syscall_resolve_name("socket"), 1, &cmp))
        return 122;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || seccomp_load(c)) return 123;
    execv(argv[1], argv + 1);
    fprintf(stderr, "no-netlink: execv %s: %s\n", argv[1], strerror(errno));
    return 126;
}
`;

test('bind_mismatch: without netlink, libwebsockets binds every address; the daemon refuses to serve there (exit 2)', async (t) => {
  if (!has('cc')) {
    t.skip('needs a C compiler');
    return;
  }
  const dir = join(DIR, 'mismatch');
  execFileSync('mkdir', ['-p', dir]);
  writeFileSync(join(dir, 'no-netlink.c'), NO_NETLINK_C);
  const cc = spawnSync('cc', ['-O1', '-o', join(dir, 'no-netlink'), join(dir, 'no-netlink.c'), '-l:libseccomp.so.2'], { encoding: 'utf8' });
  if (cc.status !== 0) {
    t.skip(`cannot build the seccomp helper (libseccomp2 missing?): ${cc.stderr.trim().split('\n').pop()}`);
    return;
  }
  const wrapper = join(dir, 'movexd-no-netlink');
  writeFileSync(wrapper, `#!/bin/sh\nexec '${join(dir, 'no-netlink')}' '${BIN}' "$@"\n`);
  chmodSync(wrapper, 0o755);
  const cases = [
    ['127.0.0.1:0', /event=bind_mismatch listen=127\.0\.0\.1:0 bound=0\.0\.0\.0 port=\d+ /],
    ['lo:0', /event=bind_mismatch listen=lo:0 bound=0\.0\.0\.0 port=\d+ /],
  ];
  if (await canListen('::1')) cases.push(['[::1]:0', /event=bind_mismatch listen=\[::1\]:0 bound=:: port=\d+ /]);
  for (const [i, [listen, re]] of cases.entries()) {
    const r = await runDaemonToExit({ dir: join(dir, `run-${i}`), bin: wrapper, args: ['--listen', listen] });
    assert.equal(r.code, 2, `--listen ${listen}: exit status (2: start-up failure); stderr:\n${r.stderr}`);
    assert.match(r.stderr, re, `--listen ${listen}`);
    assert.match(r.stderr, /AF_NETLINK/, 'the message names the likely cause');
    assert.doesNotMatch(r.stderr, /event=(listening|started)/, 'it never served');
  }
  // the same sandbox with an explicit every-address listen is fine
  const conf = makeConf({ global: ['allow_insecure_listen yes'] });
  const d = await startDaemon({ conf, bin: wrapper, args: ['--listen', '*:0'] });
  assert.match(d.stderr, /event=listening addr=(::|0\.0\.0\.0) /);
  await d.stop();
});

// --------------------------------------------------- socket activation --

// `systemd-socket-activate -l 127.0.0.1:PORT movexd ...`: it binds, and
// execs the daemon (same pid) with LISTEN_FDS=1 on the first connection.
// Resolves once it is listening; the daemon itself starts when a client
// connects. A port taken between freePort() and the bind is retried.
async function startActivated({ conf, host = '127.0.0.1', name }) {
  const dir = join(DIR, name);
  execFileSync('mkdir', ['-p', dir]);
  const confPath = join(dir, 'movexd.conf');
  writeFileSync(confPath, conf);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    // --listen names another port: served only if the inherited socket is
    const proc = spawn('systemd-socket-activate', ['-l', `${host}:${port}`, BIN, '-c', confPath,
      '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (x) => { stderr += x; });
    proc.stdout.on('data', (x) => { stderr += x; });
    const exited = new Promise((res) => proc.on('close', (code, signal) => res({ code, signal })));
    let gone = null;
    exited.then((r) => { gone = r; });
    try {
      await waitFor(() => {
        if (gone) throw new Error(`systemd-socket-activate exited ${gone.code}: ${stderr}`);
        return stderr.includes(`Listening on ${host}:${port}`);
      }, 'systemd-socket-activate to listen');
    } catch (e) {
      if (!gone) proc.kill('SIGKILL');
      if (attempt < 3 && /Address already in use/.test(stderr)) continue;
      throw e;
    }
    return {
      proc, port, dir,
      get stderr() { return stderr; },
      exited,
      waitLog(re) { return waitFor(() => re.exec(stderr), `log ${re}; stderr:\n${stderr}`); },
      async stop() {
        if (!gone) proc.kill('SIGTERM');
        let r;
        try {
          r = await withTimeout(exited, TIMEOUT, 'daemon did not stop');
        } catch (e) {
          proc.kill('SIGKILL');
          throw e;
        }
        assert.equal(r.code, 0, `exit ${r.code}/${r.signal}; stderr:\n${stderr.slice(-4000)}`);
      },
      kill() { if (!gone) proc.kill('SIGKILL'); return exited; },
    };
  }
}

// hello, subscribe, action (acked to the sender, forwarded to a second
// client), on `url` with WebSocket options wsOpts.
async function exercise(url, wsOpts) {
  const open = (u) => {
    const c = Object.create(Client.prototype);
    Object.assign(c, { msgs: [], all: [], waiters: [], nextId: 1 });
    c.ws = new WebSocket(u, ['movex.v1'], wsOpts);
    c.closed = new Promise((res) => c.ws.on('close', (code, reason) => res({ code, reason: String(reason) })));
    c.ws.on('message', (data) => { const m = JSON.parse(String(data)); c.msgs.push(m); c.all.push(m); c._wake(); });
    c.opened = withTimeout(new Promise((res, rej) => { c.ws.once('open', res); c.ws.once('error', rej); }), TIMEOUT, `connect ${u}`);
    c.ws.on('error', () => {});
    return c;
  };
  const a = open(url);
  await a.opened;
  assert.equal((await a.hello('activated-a')).client, 'activated-a');
  const b = open(url);
  await b.opened;
  await b.hello('activated-b');
  const room = 'sock:one';
  assert.equal((await a.request({ type: 'subscribe', room })).type, 'snapshot');
  assert.equal((await b.request({ type: 'subscribe', room })).type, 'snapshot');
  const ack = await a.request(patchAction(room, 1, [{ op: 'add', path: '/x', value: 42 }]));
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  const fwd = await b.next((m) => m.type === 'fwd', 'fwd to the second client');
  assert.deepEqual(fwd.action.payload, [{ op: 'add', path: '/x', value: 42 }]);
  await a.close();
  await b.close();
}

test('socket activation: serves the socket systemd-socket-activate passes (WebSocket, /healthz), binds nothing itself', async (t) => {
  if (!has('systemd-socket-activate')) {
    t.skip('systemd-socket-activate is not installed (Debian: apt-get install systemd)');
    return;
  }
  const d = await startActivated({ conf: makeConf(), name: 'plain' });
  try {
    // the first connection makes systemd-socket-activate exec the daemon;
    // it waits in the socket's backlog until the daemon accepts it
    const first = fetch(`http://127.0.0.1:${d.port}/healthz`);
    await d.waitLog(new RegExp(`info event=listening addr=127\\.0\\.0\\.1 port=${d.port} listen=systemd tls=off ws=ws://127\\.0\\.0\\.1:${d.port}/ws`));
    const r = await withTimeout(first, TIMEOUT, 'the connection that started the daemon is served');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'ok\n');
    assert.match(d.stderr, /Execing /, 'started by systemd-socket-activate');
    await exercise(`ws://127.0.0.1:${d.port}/ws`);
    for (const path of ['/healthz', '/readyz']) {
      const x = await fetch(`http://127.0.0.1:${d.port}${path}`);
      assert.equal(x.status, 200, path);
      await x.text();
    }
    // the inherited socket is the only listening socket of the process
    const pid = d.proc.pid;
    const sockets = readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').slice(1)
      .map((l) => l.trim().split(/\s+/)).filter((c) => c.length > 9 && c[3] === '0A');
    const inodes = new Set(sockets.map((c) => c[9]));
    const mine = spawnSync('ls', ['-l', `/proc/${pid}/fd`], { encoding: 'utf8' }).stdout
      .split('\n').map((l) => (/socket:\[(\d+)\]/.exec(l) || [])[1]).filter((i) => i && inodes.has(i));
    assert.equal(mine.length, 1, `one listening socket, the inherited one; /proc/${pid}/fd:\n${mine}`);
    assert.deepEqual(listening(d.port), [V4_LOOPBACK]);
    await d.stop();
    assert.match(d.stderr, /event=stopped/);
  } finally {
    await d.kill();
  }
});

test('socket activation with TLS: wss:// and https:// on the inherited socket', async (t) => {
  if (!has('systemd-socket-activate') || !has('openssl')) {
    t.skip('needs systemd-socket-activate and openssl');
    return;
  }
  const dir = join(DIR, 'certs');
  execFileSync('mkdir', ['-p', dir]);
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'pipe' });
  const ca = readFileSync(cert);
  const d = await startActivated({ conf: makeConf({ global: [`tls_cert_file ${cert}`, `tls_key_file ${key}`] }), name: 'tls' });
  try {
    const first = httpsGet(`https://127.0.0.1:${d.port}/healthz`, { ca, servername: 'localhost' });
    await d.waitLog(new RegExp(`event=listening addr=127\\.0\\.0\\.1 port=${d.port} listen=systemd tls=on ws=wss://`));
    assert.deepEqual(await first, { status: 200, body: 'ok\n' });
    await exercise(`wss://127.0.0.1:${d.port}/ws`, { ca, servername: 'localhost' });
    // plain HTTP on the TLS socket is not served
    await assert.rejects(withTimeout(fetch(`http://127.0.0.1:${d.port}/healthz`), TIMEOUT, 'plain http'));
    await d.stop();
  } finally {
    await d.kill();
  }
});

test('socket activation: auth none on an inherited socket that is not loopback -> exit 1 explaining why', async (t) => {
  if (!has('systemd-socket-activate')) {
    t.skip('systemd-socket-activate is not installed');
    return;
  }
  const d = await startActivated({ conf: makeConf(), host: '0.0.0.0', name: 'insecure' });
  try {
    // connect (to trigger the start) and wait for the exit
    const s = connect(d.port, '127.0.0.1');
    s.on('error', () => {});
    const r = await withTimeout(d.exited, TIMEOUT, 'the daemon to refuse and exit');
    s.destroy();
    assert.equal(r.code, 1, `exit status; stderr:\n${d.stderr}`);
    assert.match(d.stderr, /refusing to serve the socket passed by systemd \(0\.0\.0\.0 port \d+\) with auth none/);
    assert.match(d.stderr, /auth jwt/);
    assert.match(d.stderr, /allow_insecure_listen/);
    assert.doesNotMatch(d.stderr, /event=listening/);
  } finally {
    await d.kill();
  }
});

test('socket activation: a passed descriptor that is not a listening socket -> exit 2', async () => {
  // LISTEN_PID must be the daemon's pid: a shell sets it to its own and
  // execs the daemon with /dev/null as descriptor 3
  const dir = join(DIR, 'notsocket');
  execFileSync('mkdir', ['-p', dir]);
  writeFileSync(join(dir, 'movexd.conf'), makeConf());
  const r = spawnSync('sh', ['-c', 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3</dev/null', 'sh', BIN, '-c', join(dir, 'movexd.conf'),
    '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')], { encoding: 'utf8', timeout: TIMEOUT });
  assert.equal(r.status, 2, `exit status; stderr:\n${r.stderr}`);
  assert.match(r.stderr, /socket activation: descriptor 3 is not a listening TCP socket/);
  assert.doesNotMatch(r.stderr, /event=listening/);
  // LISTEN_PID of another process: ignored, the daemon binds `listen`
  const d = await startDaemon({ env: { LISTEN_PID: '1', LISTEN_FDS: '1' } });
  assert.match(d.stderr, /event=listening addr=127\.0\.0\.1 port=\d+ listen=127\.0\.0\.1:0 /);
  await d.stop();
});
