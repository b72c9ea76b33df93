// systemd integration without a running systemd:
//  - `make systemd-verify`: systemd-analyze verify passes with no warnings,
//    and the exposure score stays under the Makefile's threshold;
//  - the sd_notify protocol: a python3 receiver on an AF_UNIX datagram
//    socket stands in for systemd ($NOTIFY_SOCKET) and records READY=1
//    (only once the port accepts connections), WATCHDOG=1 keep-alives
//    (more often than $WATCHDOG_USEC), RELOADING=1 then READY=1 around
//    SIGHUP, and STOPPING=1 on SIGTERM;
//  - the unit's sandbox: the daemon runs a full workload (WAL rotation and
//    deletion, snapshots, HTTP, reload, stop, recovery) under a seccomp
//    filter built from the unit's own SystemCallFilter=,
//    RestrictAddressFamilies= and MemoryDenyWriteExecute= lines, expanded
//    with `systemd-analyze syscall-filter`, so a syscall the daemon needs
//    but the unit forbids fails here rather than in production (SIGSYS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { ASAN, BIN, ROOT, SECCOMP_DECLS, TIMEOUT, connectHello, patchAction, runDaemonToExit, startDaemon, waitFor, withTimeout } from './lib.mjs';

const VARIANT = process.env.VARIANT
  || (/^build\/([^/]+)\/movexd$/.exec(relative(ROOT, BIN)) || [])[1]
  || 'release';
const UNIT = join(ROOT, 'systemd/movexd.service');

const has = (cmd) => !spawnSync('sh', ['-c', `command -v ${cmd}`]).status;

function cleanEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  for (const k of ['MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES']) delete env[k];
  return env;
}

// ------------------------------------------------------- systemd-verify --

test('make systemd-verify: the unit verifies with no warnings and a low exposure score', (t) => {
  if (!has('systemd-analyze')) {
    t.skip('systemd-analyze is not installed (Debian: apt-get install systemd)');
    return;
  }
  const built = join('build', VARIANT, 'movexd');
  assert.ok(existsSync(join(ROOT, built)), `${built} is missing: build it first`);
  // -o: verify against the binary the test run built, never relink it
  const r = spawnSync('make', ['--no-print-directory', '-o', built, `VARIANT=${VARIANT}`, 'systemd-verify'], {
    cwd: ROOT, env: cleanEnv(), encoding: 'utf8', timeout: 10 * TIMEOUT,
  });
  assert.equal(r.error, undefined, `make systemd-verify: ${r.error}`);
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, `make systemd-verify failed:\n${out}`);
  const verify = readFileSync(join(ROOT, 'build', VARIANT, 'systemd/verify.txt'), 'utf8');
  assert.equal(verify, '', `systemd-analyze verify printed warnings:\n${verify}`);
  // nothing but the target's own lines: the command, the verdict, the
  // security findings (✗ lines) and the score
  const other = out.split('\n').filter((l) => l.trim() && !/^systemd-analyze verify |^systemd-verify: unit OK|^✗ |Overall exposure level/.test(l));
  assert.deepEqual(other, [], `unexpected output (warnings?) from make systemd-verify:\n${out}`);
  const m = /Overall exposure level for movexd\.service: (\d+\.\d+)/.exec(out);
  assert.ok(m, `no exposure score in the output:\n${out}`);
  t.diagnostic(`exposure level ${m[1]}`);
});

// ------------------------------------------------------------ sd_notify --

// A stand-in for systemd's notification socket: binds SOCK (a path, or
// @name for the abstract namespace) and prints one JSON line per datagram
// {t: monotonic seconds, msg, connect?}. With PORT set, on a datagram with
// READY=1 it first tries to connect to 127.0.0.1:PORT and reports whether
// the daemon was already accepting connections.
const RECEIVER = `
import json, os, socket, sys, time
path = sys.argv[1]
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + path[1:] if path.startswith("@") else path)
print(json.dumps({"bound": True}), flush=True)
while True:
    data = s.recv(65536)
    rec = {"t": time.monotonic(), "msg": data.decode("utf-8", "replace")}
    if port and "READY=1" in rec["msg"].split("\\n"):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            rec["connect"] = True
        except OSError as e:
            rec["connect"] = str(e)
    print(json.dumps(rec), flush=True)
`;

async function startReceiver(sock, port) {
  const proc = spawn('python3', ['-c', RECEIVER, sock, ...(port ? [String(port)] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const msgs = [];
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const lines = createInterface({ input: proc.stdout });
  const bound = new Promise((res, rej) => {
    proc.on('error', rej);
    proc.on('close', (code) => rej(new Error(`notify receiver exited ${code}: ${stderr}`)));
    lines.on('line', (l) => {
      const j = JSON.parse(l);
      if (j.bound) res();
      else msgs.push({ ...j, fields: j.msg.split('\n') });
    });
  });
  await withTimeout(bound, TIMEOUT, 'notify receiver to bind');
  return {
    msgs,
    // index of the first message at or after `from` carrying `field`
    find(field, from = 0) { return msgs.findIndex((m, i) => i >= from && m.fields.includes(field)); },
    async waitFor(field, from = 0, what = field) {
      await waitFor(() => this.find(field, from) >= 0, `notify ${what}; got ${JSON.stringify(msgs.map((m) => m.msg))}`);
      return this.find(field, from);
    },
    stop() { proc.kill('SIGKILL'); },
  };
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

test('sd_notify: READY=1 once listening, WATCHDOG=1 keep-alives, RELOADING=1/READY=1 on SIGHUP, STOPPING=1 on SIGTERM', async (t) => {
  if (!has('python3')) {
    t.skip('python3 is not installed (it stands in for systemd\'s notify socket)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'movexd-notify-'));
  const port = await freePort();
  const rx = await startReceiver(join(dir, 'notify'), port);
  const WATCHDOG_USEC = 2000000;
  let d;
  try {
    d = await startDaemon({
      args: ['--listen', `127.0.0.1:${port}`], // wins over the harness's 127.0.0.1:0
      env: { NOTIFY_SOCKET: join(dir, 'notify'), WATCHDOG_USEC: String(WATCHDOG_USEC) },
    });
    assert.equal(d.port, port);

    // READY=1: first, and only once the port accepts connections
    const ready = await rx.waitFor('READY=1');
    assert.equal(ready, 0, `READY=1 is the first notification; got ${JSON.stringify(rx.msgs.map((m) => m.msg))}`);
    assert.equal(rx.msgs[ready].connect, true, `the port accepted connections when READY=1 arrived: ${rx.msgs[ready].connect}`);
    assert.ok(rx.msgs[ready].fields.some((f) => f.startsWith('STATUS=')), 'READY=1 comes with a STATUS= line');
    const rz = await fetch(`${d.http}/readyz`);
    assert.equal(rz.status, 200, 'GET /readyz after READY=1');
    await rz.text();

    // WATCHDOG=1, repeatedly, each within WATCHDOG_USEC of the previous
    await waitFor(() => rx.msgs.filter((m) => m.fields.includes('WATCHDOG=1')).length >= 4,
      'four WATCHDOG=1 keep-alives', 4 * TIMEOUT);
    const dogs = rx.msgs.filter((m) => m.fields.includes('WATCHDOG=1')).map((m) => m.t);
    const gaps = dogs.slice(1).map((x, i) => x - dogs[i]);
    t.diagnostic(`WATCHDOG=1 gaps (s): ${gaps.map((g) => g.toFixed(3)).join(' ')}`);
    assert.ok(dogs[0] - rx.msgs[ready].t < WATCHDOG_USEC / 1e6, 'the first keep-alive within WATCHDOG_USEC of READY=1');
    for (const g of gaps) assert.ok(g < WATCHDOG_USEC / 1e6, `keep-alive gap ${g.toFixed(3)} s >= WATCHDOG_USEC ${WATCHDOG_USEC} us`);

    // SIGHUP: RELOADING=1, then READY=1 after it
    const before = rx.msgs.length;
    d.proc.kill('SIGHUP');
    const reloading = await rx.waitFor('RELOADING=1', before);
    await rx.waitFor('READY=1', reloading + 1, 'READY=1 after RELOADING=1');
    await d.waitLog(/event=reloaded/);

    // SIGTERM: STOPPING=1, and a clean exit
    const beforeStop = rx.msgs.length;
    await d.stop();
    d = null;
    const stopping = await rx.waitFor('STOPPING=1', beforeStop);
    assert.equal(rx.find('READY=1', stopping), -1, 'no READY=1 after STOPPING=1');
  } finally {
    if (d) await d.kill('SIGKILL').catch(() => {});
    if (d) d.cleanup();
    rx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

// READY=1 and event=listening mean the same: start-up succeeded as a whole.
// A start that fails after its port is bound - here a cluster node whose
// journal directory another node holds - sends no READY=1 (systemd would
// count the unit as started) and logs no listening line.
test('sd_notify: a start that fails after binding sends no READY=1', async (t) => {
  if (!has('python3')) {
    t.skip('python3 is not installed (it stands in for systemd\'s notify socket)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'movexd-notify-fail-'));
  const sock = join(dir, 'notify');
  const rx = await startReceiver(sock);
  let first;
  try {
    // Redis on port 1: nothing answers; the node starts and keeps retrying
    const conf = `cluster {\n  node_id n1\n  redis 127.0.0.1:1\n  journal_dir ${join(dir, 'journal')}\n}\n`;
    first = await startDaemon({ conf, dir: join(dir, 'first') });
    await first.waitLog(/event=started /);
    const r = await runDaemonToExit({ dir: join(dir, 'second'), conf, env: { NOTIFY_SOCKET: sock } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /event=start_failed reason="cluster journal"/);
    assert.doesNotMatch(r.stderr, /event=listening/);
    // datagrams arrive in order: a marker sent after the exit comes after
    // anything the failed daemon sent
    const mark = spawnSync('python3', ['-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b"MARK=1", sys.argv[1])', sock], { timeout: TIMEOUT });
    assert.equal(mark.status, 0, String(mark.stderr));
    const at = await rx.waitFor('MARK=1');
    assert.equal(rx.find('READY=1'), -1, `no READY=1 before the mark: ${JSON.stringify(rx.msgs.slice(0, at + 1).map((m) => m.msg))}`);
  } finally {
    if (first) await first.stop();
    rx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sd_notify: abstract socket; no WATCHDOG=1 without $WATCHDOG_USEC or when $WATCHDOG_PID names another process', async (t) => {
  if (!has('python3')) {
    t.skip('python3 is not installed');
    return;
  }
  for (const env of [{}, { WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' }]) {
    const sock = `@movexd-test-${process.pid}-${Date.now()}`;
    const rx = await startReceiver(sock);
    try {
      const d = await startDaemon({ env: { NOTIFY_SOCKET: sock, ...env } });
      try {
        await rx.waitFor('READY=1');
        await new Promise((r) => setTimeout(r, 1500)); // several loop ticks
        assert.equal(rx.find('WATCHDOG=1'), -1, `no WATCHDOG=1 with ${JSON.stringify(env)}`);
      } finally {
        await d.stop();
      }
      await rx.waitFor('STOPPING=1');
    } finally {
      rx.stop();
    }
  }
});

// ------------------------------------------------------ the unit's sandbox --

// Runs CMD under a seccomp filter equivalent to the unit's SystemCallFilter=
// (an allow list; any other syscall kills the process, as systemd does
// without SystemCallErrorNumber=), RestrictAddressFamilies= (socket() of
// another family: EAFNOSUPPORT) and MemoryDenyWriteExecute= (W+X mmap or
// PROT_EXEC mprotect: EPERM). libseccomp.so.2 is used without its headers.
const SANDBOX_C = String.raw`
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>
${SECCOMP_DECLS}
#define ACT_KILL_PROCESS 0x80000000U
#define ACT_ALLOW 0x7fff0000U
#define ACT_ERRNO(x) (0x00050000U | ((x) & 0xffffU))
enum { CMP_EQ = 4, CMP_MASKED_EQ = 7 };
static void rule(scmp_filter_ctx c, uint32_t act, int nr, int argn, int op, uint64_t a, uint64_t b)
{
    struct scmp_arg_cmp cmp = {(unsigned)argn, op, a, b};
    int rc = seccomp_rule_add_array(c, act, nr, argn < 0 ? 0 : 1, &cmp);
    if (rc) { fprintf(stderr, "sandbox: rule for syscall %d: %s\n", nr, strerror(-rc)); exit(120); }
}
int main(int argc, char **argv)
{
    if (argc < 6 || strcmp(argv[4], "--")) { fprintf(stderr, "usage: sandbox ALLOWFILE FAMILIES MDWE -- CMD...\n"); return 121; }
    int fams[64], nfam = 0, mdwe = atoi(argv[3]), restrict_fam = strcmp(argv[2], "-") != 0;
    if (restrict_fam)
        for (char *p = strtok(argv[2], ","); p && nfam < 64; p = strtok(NULL, ",")) fams[nfam++] = atoi(p);
    int nr_socket = seccomp_syscall_resolve_name("socket");
    int nr_mmap = seccomp_syscall_resolve_name("mmap");
    int nr_mprotect = seccomp_syscall_resolve_name("mprotect");
    scmp_filter_ctx c = seccomp_init(ACT_KILL_PROCESS);
    FILE *f = fopen(argv[1], "r");
    if (!c || !f) return 122;
    char name[128];
    int allow_socket = 0, allow_mmap = 0, allow_mprotect = 0;
    while (fscanf(f, "%127s", name) == 1) {
        int nr = seccomp_syscall_resolve_name(name);
        if (nr < 0) continue; /* not a syscall of this architecture */
        if (nr == nr_socket) { allow_socket = 1; continue; }
        if (nr == nr_mmap) { allow_mmap = 1; continue; }
        if (nr == nr_mprotect) { allow_mprotect = 1; continue; }
        seccomp_rule_add_array(c, ACT_ALLOW, nr, 0, NULL); /* a duplicate fails harmlessly */
    }
    fclose(f);
    if (allow_socket) {
        if (!restrict_fam) rule(c, ACT_ALLOW, nr_socket, -1, 0, 0, 0);
        else for (int fam = 0; fam < 64; fam++) { /* AF_MAX is below 64 */
            int ok = 0;
            for (int k = 0; k < nfam; k++) ok |= fams[k] == fam;
            rule(c, ok ? ACT_ALLOW : ACT_ERRNO(EAFNOSUPPORT), nr_socket, 0, CMP_EQ, (uint64_t)fam, 0);
        }
    }
    uint64_t wx = PROT_WRITE | PROT_EXEC;
    if (allow_mmap) {
        if (!mdwe) rule(c, ACT_ALLOW, nr_mmap, -1, 0, 0, 0);
        else {
            rule(c, ACT_ALLOW, nr_mmap, 2, CMP_MASKED_EQ, wx, 0);
            rule(c, ACT_ALLOW, nr_mmap, 2, CMP_MASKED_EQ, wx, PROT_WRITE);
            rule(c, ACT_ALLOW, nr_mmap, 2, CMP_MASKED_EQ, wx, PROT_EXEC);
            rule(c, ACT_ERRNO(EPERM), nr_mmap, 2, CMP_MASKED_EQ, wx, wx);
        }
    }
    if (allow_mprotect) {
        if (!mdwe) rule(c, ACT_ALLOW, nr_mprotect, -1, 0, 0, 0);
        else {
            rule(c, ACT_ALLOW, nr_mprotect, 2, CMP_MASKED_EQ, PROT_EXEC, 0);
            rule(c, ACT_ERRNO(EPERM), nr_mprotect, 2, CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC);
        }
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return 124;
    int rc = seccomp_load(c);
    if (rc) { fprintf(stderr, "sandbox: seccomp_load: %s\n", strerror(-rc)); return 125; }
    execv(argv[5], argv + 5);
    fprintf(stderr, "sandbox: execv %s: %s\n", argv[5], strerror(errno));
    return 126;
}
`;

// Address family numbers (linux/socket.h) for the names a unit may use.
const AF = { AF_UNIX: 1, AF_LOCAL: 1, AF_INET: 2, AF_INET6: 10, AF_NETLINK: 16, AF_PACKET: 17 };

// `systemd-analyze syscall-filter` lists every group: "@name", then
// indented members (syscalls or @groups) and "# comments".
function syscallGroups() {
  const r = spawnSync('systemd-analyze', ['syscall-filter', '--no-pager'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `systemd-analyze syscall-filter: ${r.stderr}`);
  const groups = {};
  let cur = null;
  for (const line of r.stdout.split('\n')) {
    if (/^@\S+$/.test(line)) groups[(cur = line)] = [];
    else if (cur && /^\s+[@a-z0-9_-]+$/.test(line)) groups[cur].push(line.trim());
  }
  return groups;
}

function expand(groups, item, seen = new Set()) {
  if (!item.startsWith('@')) return [item];
  assert.ok(groups[item], `unknown syscall group ${item}`);
  if (seen.has(item)) return [];
  seen.add(item);
  return groups[item].flatMap((x) => expand(groups, x, seen));
}

// The unit's policy: [allowed syscall names, families or null, mdwe].
function unitPolicy() {
  const unit = readFileSync(UNIT, 'utf8');
  const values = (key) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1].trim());
  const groups = syscallGroups();
  const filters = values('SystemCallFilter');
  assert.ok(filters.length && !filters[0].startsWith('~'), 'the unit uses an allow list (first SystemCallFilter= without ~)');
  const allow = new Set();
  for (const f of filters) {
    const deny = f.startsWith('~');
    for (const item of f.replace(/^~/, '').split(/\s+/).filter(Boolean)) {
      for (const sc of expand(groups, item)) (deny ? allow.delete(sc) : allow.add(sc));
    }
  }
  const famLines = values('RestrictAddressFamilies');
  assert.ok(famLines.length === 1 && !famLines[0].startsWith('~'), 'one RestrictAddressFamilies= allow list');
  const fams = famLines[0].split(/\s+/).map((n) => {
    assert.ok(n in AF, `address family ${n}: add its number to AF in this test`);
    return AF[n];
  });
  const mdwe = values('MemoryDenyWriteExecute').includes('yes');
  return { allow: [...allow].sort(), fams, mdwe };
}

// 127.0.0.1:PORT is in LISTEN state in /proc/net/tcp, and not 0.0.0.0:PORT.
function listenAddrs(port) {
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

test('the daemon runs a full workload under the unit\'s syscall filter, address families and W^X', async (t) => {
  if (!has('systemd-analyze') || !has('cc')) {
    t.skip('needs systemd-analyze and a C compiler');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'movexd-sandbox-'));
  try {
    writeFileSync(join(dir, 'sandbox.c'), SANDBOX_C);
    const cc = spawnSync('cc', ['-O1', '-o', join(dir, 'sandbox'), join(dir, 'sandbox.c'), '-l:libseccomp.so.2'], { encoding: 'utf8' });
    if (cc.status !== 0) {
      t.skip(`cannot build the seccomp helper (libseccomp2 missing?): ${cc.stderr.trim().split('\n').pop()}`);
      return;
    }
    const policy = unitPolicy();
    t.diagnostic(`${policy.allow.length} syscalls allowed, families ${policy.fams.join(',')}, MemoryDenyWriteExecute=${policy.mdwe}`);
    for (const sc of ['fallocate', 'fdatasync', 'fsync', 'syncfs', 'flock', 'ftruncate', 'renameat', 'unlinkat',
      'mmap', 'epoll_wait', 'eventfd2', 'getrandom', 'prlimit64', 'sendto', 'accept4']) {
      assert.ok(policy.allow.includes(sc), `the unit's SystemCallFilter= forbids ${sc}, which movexd uses`);
    }
    writeFileSync(join(dir, 'allow.txt'), `${policy.allow.join('\n')}\n`);
    // startDaemon runs `bin ARGS`: a wrapper that execs the sandbox, which
    // execs movexd (same pid, so signals reach the daemon)
    const wrapper = join(dir, 'movexd-sandboxed');
    writeFileSync(wrapper, `#!/bin/sh\nexec '${join(dir, 'sandbox')}' '${join(dir, 'allow.txt')}' '${policy.fams.join(',')}' ${policy.mdwe ? 1 : 0} -- '${BIN}' "$@"\n`);
    chmodSync(wrapper, 0o755);
    // LeakSanitizer stops the world with ptrace at exit, which no service
    // filter allows; the rest of a sanitizer build runs under the filter
    const env = ASAN ? { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || ''}:detect_leaks=0` } : undefined;
    const conf = `log_level info
client_dir ${join(ROOT, 'client')}
snapshot_every 20
wal_segment_bytes 64k
wal_max_bytes 1m
room default {
    create_on_subscribe yes
}
`;
    const data = join(dir, 'd');
    const room = 'box:one';
    const N = 700;
    const big = 'x'.repeat(2000); // 700 x ~2 KB: segments rotate and the WAL passes wal_max_bytes
    let d = await startDaemon({ conf, dir: data, bin: wrapper, env });
    try {
      // bound to the configured address (without AF_NETLINK, libwebsockets
      // cannot look it up and binds every address instead)
      const addrs = listenAddrs(d.port);
      assert.deepEqual(addrs, ['0100007F'], `listening on 127.0.0.1 only; /proc/net/tcp has ${JSON.stringify(addrs)}`);
      const c = await connectHello(d, 'sandboxed');
      const sub = await c.request({ type: 'subscribe', room });
      assert.notEqual(sub.type, 'error', JSON.stringify(sub));
      for (let n = 1; n <= N; n++) c.send(patchAction(room, n, [{ op: 'add', path: `/k${n % 40}`, value: `${n}${big}` }], { id: 1000 + n }));
      for (let n = 1; n <= N; n++) {
        const a = await c.next((m) => m.id === 1000 + n, `ack ${n}`);
        assert.equal(a.type, 'ack', `action ${n}: ${JSON.stringify(a).slice(0, 300)}`);
      }
      await c.close();
      for (const path of ['/healthz', '/readyz', '/metrics', '/movex.js']) {
        const r = await fetch(`${d.http}${path}`);
        assert.equal(r.status, 200, `GET ${path}`);
        await r.text();
      }
      d.proc.kill('SIGHUP');
      await d.waitLog(/event=reloaded/);
      await d.stop(); // asserts exit 0: not killed by SIGSYS
      // recovery (snapshots + WAL replay) under the same filter
      d = await startDaemon({ conf, dir: data, bin: wrapper, env });
      const c2 = await connectHello(d, 'sandboxed-2');
      const snap = await c2.request({ type: 'subscribe', room });
      assert.equal(snap.type, 'snapshot', JSON.stringify(snap).slice(0, 300));
      assert.equal(snap.seq, N, 'every action recovered');
      await c2.close();
      await d.stop();
      d = null;
    } finally {
      if (d) await d.kill('SIGKILL').catch(() => {});
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
