// The event loop (src/server.c, src/evloop.c, docs/PERFORMANCE.md "An epoll
// loop through libuv"): by default libwebsockets runs on a libuv loop the
// daemon owns, whose Linux backend is epoll (a turn costs O(ready
// descriptors), not O(connections) as lws's poll() loop does). The conf key
// `event_loop auto|uv|poll` chooses; MOVEXD_EVLIB overrides it. The start
// line names the loop, and the daemon's descriptors show the epoll instance,
// so a build that silently fell back to poll fails.
//
// The fallback: lws 4.1.6 dlopen()s its libuv plugin from a directory fixed
// at its build (LWS_INSTALL_LIBDIR), so the test cannot point it at an empty
// one; an LD_PRELOAD shim (built here with cc) makes dlopen() of any path
// naming evlib_uv open a path that does not exist instead - the daemon's own
// check and lws's lookup see the same missing plugin, as on a host without
// the package libwebsockets-evlib-uv.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withDaemon, connectHello, runDaemonToExit, makeConf, makeTestCert, buildPreloadShim, BIN, ASAN, TIMEOUT } from './lib.mjs';

function holdsEpoll(pid) {
  return readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[eventpoll]';
    } catch {
      return false; // closed meanwhile
    }
  });
}

async function roundTrip(d) {
  const c = await connectHello(d);
  try {
    const r = await c.request({ type: 'subscribe', room: 'evloop' });
    assert.equal(r.type, 'snapshot', JSON.stringify(r));
  } finally {
    c.close();
  }
}

const HIDDEN = '/nonexistent/movexd-test-no-plugin/libwebsockets-evlib_uv.so';
const SHIM = String.raw`#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
/* dlopen() of lws's libuv plugin opens a path that does not exist */
void *dlopen(const char *file, int flags)
{
    static void *(*real)(const char *, int);
    if (!real)
        real = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    if (file && strstr(file, "evlib_uv"))
        file = "${HIDDEN}";
    return real(file, flags);
}
`;

let shimDir;
let noPlugin; // the environment that hides the plugin from the daemon

before(() => {
  const { dir, so } = buildPreloadShim('evloop-hide', SHIM);
  shimDir = dir;
  noPlugin = { LD_PRELOAD: so };
  if (ASAN) {
    // ASan wants its runtime first among the loaded libraries; the shim is
    // preloaded before it (dlopen still reaches ASan's interceptor, then libc)
    noPlugin.ASAN_OPTIONS = `${process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : ''}verify_asan_link_order=0`;
    // lws 4.1.6's lws_dir() (lib/misc/dir.c) does not free the scandir()
    // entry whose callback stops the scan, and its plugin callback stops it
    // when dlopen() fails: 48 bytes, once, inside lws, only when the plugin
    // file exists but cannot be loaded (here: always). Not the daemon's.
    const supp = join(shimDir, 'lsan.supp');
    writeFileSync(supp, 'leak:*scandir*\n');
    noPlugin.LSAN_OPTIONS = `${process.env.LSAN_OPTIONS ? `${process.env.LSAN_OPTIONS}:` : ''}suppressions=${supp}`;
  }
});

after(() => { if (shimDir) rmSync(shimDir, { recursive: true, force: true }); });

function count(re, s) { return (s.match(new RegExp(re.source, 'gm')) || []).length; }

test('by default the daemon runs on the libuv (epoll) loop: the start line says loop=uv and it holds an eventpoll descriptor', async () => {
  await withDaemon({}, async (d) => {
    assert.match(d.stderr, /event=listening .* loop=uv$/m);
    assert.ok(holdsEpoll(d.proc.pid), 'no anon_inode:[eventpoll] among the daemon\'s descriptors');
    assert.doesNotMatch(d.stderr, /evlib_fallback/);
    await roundTrip(d);
  });
});

test('MOVEXD_EVLIB=poll keeps libwebsockets\' poll loop: loop=poll and no eventpoll descriptor', async () => {
  await withDaemon({ env: { MOVEXD_EVLIB: 'poll' } }, async (d) => {
    assert.match(d.stderr, /event=listening .* loop=poll$/m);
    assert.ok(!holdsEpoll(d.proc.pid), 'an eventpoll descriptor on the poll loop');
    await roundTrip(d);
  });
});

test('event_loop poll in the conf runs the poll loop without a warning; MOVEXD_EVLIB=uv overrides the conf', async () => {
  const conf = makeConf({ global: ['event_loop poll'] });
  await withDaemon({ conf }, async (d) => {
    assert.match(d.stderr, /event=listening .* loop=poll$/m);
    assert.ok(!holdsEpoll(d.proc.pid), 'an eventpoll descriptor on the poll loop');
    assert.doesNotMatch(d.stderr, /evlib_fallback/);
    await roundTrip(d);
  });
  await withDaemon({ conf, env: { MOVEXD_EVLIB: 'uv' } }, async (d) => {
    assert.match(d.stderr, /event=listening .* loop=uv$/m);
    assert.ok(holdsEpoll(d.proc.pid), 'no eventpoll descriptor with MOVEXD_EVLIB=uv');
    await roundTrip(d);
  });
});

test('without the libuv plugin, event_loop auto falls back to the poll loop: one evlib_fallback warning with dlopen\'s reason, loop=poll, and it serves', async () => {
  await withDaemon({ env: noPlugin }, async (d) => {
    assert.match(d.stderr, /event=listening .* loop=poll$/m);
    assert.equal(count(/event=evlib_fallback loop=poll /, d.stderr), 1, d.stderr);
    // the reason is the plugin's, found the way lws looks for it
    assert.match(d.stderr, /event=evlib_fallback .*libwebsockets-evlib-uv.*cannot open shared object file/);
    assert.ok(d.stderr.includes(HIDDEN), 'the warning names the path dlopen failed on');
    assert.ok(!holdsEpoll(d.proc.pid), 'an eventpoll descriptor on the poll loop');
    await roundTrip(d);
  });
});

test('event_loop uv without the libuv plugin: the daemon refuses to start (exit 1) naming the conf line and the package; movexd -t refuses it too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-evloop-uv-'));
  try {
    const conf = makeConf({ global: ['event_loop uv'] });
    const r = await runDaemonToExit({ dir, conf, env: noPlugin });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /movexd\.conf:\d+: event_loop uv: the libuv plugin of libwebsockets cannot be loaded \(.*cannot open shared object file.*\); install the package libwebsockets-evlib-uv/);
    assert.doesNotMatch(r.stderr, /event=listening|evlib_fallback/);
    const t = spawnSync(BIN, ['-t', '-c', join(dir, 'movexd.conf')], { encoding: 'utf8', timeout: TIMEOUT, env: { ...process.env, ...noPlugin } });
    assert.equal(t.status, 1, t.stderr);
    assert.match(t.stderr, /event_loop uv: the libuv plugin of libwebsockets cannot be loaded/);
    // the same demand through the environment (no conf line to name)
    const e = await runDaemonToExit({ dir, conf: makeConf(), env: { ...noPlugin, MOVEXD_EVLIB: 'uv' } });
    assert.equal(e.code, 1, e.stderr);
    assert.match(e.stderr, /event_loop uv: the libuv plugin of libwebsockets cannot be loaded/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failure of the uv context that is not the plugin (an unusable certificate) stops the start with the real error, without a fallback to poll', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-evloop-cert-'));
  const cert = makeTestCert();
  try {
    const bad = join(dir, 'not-a-cert.pem');
    writeFileSync(bad, 'this is not PEM\n');
    const conf = makeConf({ global: [`tls_cert_file ${bad}`, `tls_key_file ${cert.key}`] });
    const r = await runDaemonToExit({ dir, conf });
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stderr, /evlib_fallback|event=listening/);
    assert.match(r.stderr, /problem getting cert/);
    assert.match(r.stderr, /event=listen_failed .*reason="libwebsockets could not create the listener \(see its lines above\)"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(cert.dir, { recursive: true, force: true });
  }
});

// movexd -t names the loop start-up would run, by start-up's own check:
// the same loop the start line then reports, in each environment.
test('movexd -t says which loop would run (auto: uv with the plugin, poll without) and what chose it; start-up runs that loop', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-evloop-t-'));
  try {
    const cases = [
      [makeConf(), {}, /^movexd: event loop uv \(event_loop auto: the libuv plugin of libwebsockets loads\)$/m, 'uv'],
      [makeConf(), noPlugin, /^movexd: event loop poll \(event_loop auto: the libuv plugin of libwebsockets cannot be loaded/m, 'poll'],
      [makeConf({ global: ['event_loop poll'] }), {}, /^movexd: event loop poll \(event_loop poll\)$/m, 'poll'],
      [makeConf({ global: ['event_loop poll'] }), { MOVEXD_EVLIB: 'uv' }, /^movexd: event loop uv \(MOVEXD_EVLIB uv\)$/m, 'uv'],
    ];
    for (const [conf, env, want, loop] of cases) {
      writeFileSync(join(dir, 'movexd.conf'), conf);
      const t = spawnSync(BIN, ['-t', '-c', join(dir, 'movexd.conf')], { encoding: 'utf8', timeout: TIMEOUT, env: { ...process.env, ...env } });
      assert.equal(t.status, 0, t.stderr);
      assert.match(t.stdout, want);
      await withDaemon({ conf, env }, async (d) => {
        assert.match(d.stderr, new RegExp(`event=listening .* loop=${loop}$`, 'm'));
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('MOVEXD_EVLIB with a value that is not a loop is refused (exit 1), by movexd -t too', () => {
  const t = spawnSync(BIN, ['-t'], { encoding: 'utf8', timeout: TIMEOUT, env: { ...process.env, MOVEXD_EVLIB: 'epoll' } });
  assert.equal(t.status, 1, t.stderr);
  assert.match(t.stderr, /MOVEXD_EVLIB: expected auto\|uv\|poll, got 'epoll'/);
});

test('a reload cannot switch the loop: event_loop needs a restart (reload_ignored), the running loop stays', async () => {
  await withDaemon({}, async (d) => {
    writeFileSync(d.confPath, makeConf({ global: ['event_loop poll'] }));
    const from = d.stderr.length;
    d.proc.kill('SIGHUP');
    await d.waitLog(/event=reloaded /, TIMEOUT, from);
    assert.match(d.stderr.slice(from), /event=reload_ignored key=event_loop note="needs a restart"/);
    assert.ok(holdsEpoll(d.proc.pid), 'the uv loop is still there');
    await roundTrip(d);
  });
});
