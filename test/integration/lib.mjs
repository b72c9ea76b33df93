// Test harness: start the real movexd on a free loopback port and talk to it
// over real WebSockets (package `ws`). Everything waits on conditions with
// generous timeouts; nothing sleeps for a fixed time.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { request as nodeHttpRequest } from 'node:http';
import { get as nodeHttpsGet } from 'node:https';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';
import WebSocket from '../node_modules/ws/index.js';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const BIN = resolve(ROOT, process.env.MOVEXD_BIN || 'build/release/movexd');
// MOVEXD_ASAN=1: a sanitizer build with -DMX_FAULT_INJECTION (the asan or
// the tsan variant): slower, and the FAULT file works.
export const ASAN = !!process.env.MOVEXD_ASAN;
// Sanitizer builds are several times slower: scale every timeout.
export const SLOW = ASAN ? 4 : 1;
export const TIMEOUT = 10000 * SLOW;

const DEFAULT_CONF = `
log_level info
room default {
    reducer json
    history 1000
    create_on_subscribe yes
}
`;

// Start a daemon. `conf` is the text of a conf file (listen is forced to
// 127.0.0.1:0 on the command line). Resolves once it prints its port.
// The daemon gets `--data-dir DIR/data`. By default DIR is a fresh temporary
// directory removed by stop(). To restart a daemon on the same data, pass
// `dir` (an existing or new directory, e.g. the `dir` of an earlier daemon):
// then DIR is never removed by the harness (call d.cleanup() or rmSync it
// yourself). `keepDir: true` keeps a fresh temporary DIR past stop()/kill().
// `env` adds environment variables for the daemon; `bin` overrides MOVEXD_BIN.
// `port` listens on that port instead of a free one (e.g. to restart a daemon
// where its clients will reconnect: pass the `port` of the earlier one).
// `listenArg: false` passes no --listen at all, so the conf's `listen` is
// used (it must then name a loopback address, e.g. `listen 127.0.0.1:0`).
export async function startDaemon({ conf = DEFAULT_CONF, args = [], dir, keepDir = false, env, bin = BIN, port: listenPort = 0, listenArg = true } = {}) {
  const keep = keepDir || !!dir;
  if (dir) mkdirSync(dir, { recursive: true });
  else dir = mkdtempSync(join(tmpdir(), 'movexd-test-'));
  const confPath = join(dir, 'movexd.conf');
  writeFileSync(confPath, conf);
  const dataDir = join(dir, 'data');
  const proc = spawn(bin, ['-c', confPath, ...(listenArg ? ['--listen', `127.0.0.1:${listenPort}`] : []), '--data-dir', dataDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  let stderr = '';
  const logWaiters = new Set();
  // 'close' rather than 'exit': by then stderr has been read to its end
  const exited = new Promise((res) => proc.on('close', (code, signal) => res({ code, signal })));
  const port = await new Promise((res, rej) => {
    proc.on('error', (e) => rej(new Error(`cannot start ${bin}: ${e.message}`)));
    const timer = setTimeout(() => rej(new Error(`daemon did not start in time; stderr:\n${stderr}`)), TIMEOUT);
    proc.stderr.on('data', (d) => {
      stderr += d;
      for (const w of [...logWaiters]) w();
      const m = /event=listening .*port=(\d+)/.exec(stderr);
      if (m) { clearTimeout(timer); res(Number(m[1])); }
    });
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      const e = new Error(`daemon exited ${code}${signal ? `/${signal}` : ''} before listening:\n${stderr}`);
      e.code = code;
      e.signal = signal;
      e.stderr = stderr;
      rej(e);
    });
  }).catch((e) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    if (!keep) rmSync(dir, { recursive: true, force: true });
    throw e;
  });
  const d = {
    proc, port, dir, dataDir, confPath,
    pid: proc.pid,
    url: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    get stderr() { return stderr; },
    exited,
    // SIGTERM and wait; asserts a clean exit (sanitizer reports make it non-zero).
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      let r;
      try {
        r = await withTimeout(exited, TIMEOUT, 'daemon did not stop');
      } catch (e) {
        proc.kill('SIGKILL'); // never leave a hung daemon behind
        throw new Error(`${e.message}; stderr:\n${stderr.slice(-4000)}`);
      }
      if (!keep) rmSync(dir, { recursive: true, force: true });
      if (r.code !== 0) throw new Error(`daemon exited with ${r.code}/${r.signal}; stderr:\n${stderr.slice(-4000)}`);
      return r;
    },
    // Send `signal` (default SIGKILL: a crash) and wait for the exit; returns
    // {code, signal}. Never removes DIR and asserts nothing about the exit.
    async kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      try {
        return await withTimeout(exited, TIMEOUT, `daemon did not exit on ${signal}`);
      } catch (e) {
        proc.kill('SIGKILL');
        throw e;
      }
    },
    // Wait for the daemon to exit on its own; returns {code, signal}.
    waitExit(ms = TIMEOUT) { return withTimeout(exited, ms, 'daemon exit'); },
    // Wait until the log (stderr) matches re (searched from byte `from`);
    // resolves with the match.
    waitLog(re, ms = TIMEOUT, from = 0) {
      return new Promise((res, rej) => {
        let timer;
        const check = () => {
          const m = re.exec(stderr.slice(from));
          if (!m) return false;
          logWaiters.delete(check);
          clearTimeout(timer);
          res(m);
          return true;
        };
        if (check()) return;
        logWaiters.add(check);
        timer = setTimeout(() => {
          logWaiters.delete(check);
          rej(new Error(`timeout: log line ${re}; stderr tail:\n${stderr.slice(-2000)}`));
        }, ms);
        timer.unref?.();
      });
    },
    // Remove DIR (for callers that passed `dir` or keepDir).
    cleanup() { rmSync(dir, { recursive: true, force: true }); },
  };
  return d;
}

// Run the daemon on DIR (conf written to DIR/movexd.conf, data in DIR/data)
// until it exits by itself; for start-ups that must fail. Resolves with
// {code, signal, stderr}; kills it and rejects if it is still running
// after `ms` (e.g. because it started listening). `env` adds environment
// variables, as in startDaemon.
export async function runDaemonToExit({ dir, conf = DEFAULT_CONF, args = [], ms = TIMEOUT, bin = BIN, env } = {}) {
  mkdirSync(dir, { recursive: true });
  const confPath = join(dir, 'movexd.conf');
  writeFileSync(confPath, conf);
  const proc = spawn(bin, ['-c', confPath, '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((res, rej) => {
    proc.on('error', rej);
    // 'close' (not 'exit'): stderr has been read to its end
    proc.on('close', (code, signal) => res({ code, signal }));
  });
  try {
    const r = await withTimeout(exited, ms, 'daemon was expected to exit');
    return { ...r, stderr };
  } catch (e) {
    proc.kill('SIGKILL');
    throw new Error(`${e.message}; stderr:\n${stderr.slice(-4000)}`);
  }
}

export function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    // unref: a wait that lost a race must not keep the test process alive
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms); t.unref?.(); }),
  ]);
}

// A protocol client: collects every message; `next(pred)` waits for the next
// matching one (in arrival order), `request(msg)` sends with a fresh id and
// waits for the reply carrying that id.
export class Client {
  // wsOpts: extra options for the ws WebSocket (an Origin, a TLS CA, ...)
  constructor(url, { protocol = 'movex.v1', wsOpts } = {}) {
    this.ws = new WebSocket(url, protocol ? [protocol] : [], wsOpts);
    // settles when the handshake is done or failed; never an unhandled rejection
    this.opened = withTimeout(new Promise((res, rej) => { this.ws.once('open', res); this.ws.once('error', rej); }), TIMEOUT, 'connect');
    this.opened.catch(() => {});
    this.msgs = [];
    this.all = []; // every message received, in arrival order (never consumed)
    this.waiters = [];
    this.nextId = 1;
    this.closed = new Promise((res) => this.ws.on('close', (code, reason) => res({ code, reason: String(reason) })));
    this.ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      this.msgs.push(m);
      this.all.push(m);
      this._wake();
    });
    this.ws.on('error', () => {});
  }
  static async connect(url, opts) {
    const c = new Client(url, opts);
    await c.opened;
    return c;
  }
  _wake() {
    for (const w of [...this.waiters]) {
      const i = this.msgs.findIndex(w.pred);
      if (i >= 0) {
        const [m] = this.msgs.splice(i, 1);
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.res(m);
      }
    }
  }
  next(pred = () => true, what = 'message') {
    const i = this.msgs.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.msgs.splice(i, 1)[0]);
    return withTimeout(new Promise((res) => this.waiters.push({ pred, res })), TIMEOUT, what);
  }
  send(msg) { this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg)); }
  // Send raw bytes/text as one message; opts as ws.send ({binary: false}
  // sends a Buffer as a text frame, whatever its bytes).
  sendRaw(data, opts = {}) { this.ws.send(data, opts); }
  request(msg) {
    const id = this.nextId++;
    this.send({ ...msg, id });
    return this.next((m) => m.id === id, `reply to ${msg.type} id=${id}`);
  }
  async hello(client) {
    this.send({ type: 'hello', ...(client ? { client } : {}) });
    const w = await this.next((m) => m.type === 'welcome' || m.type === 'error', 'welcome');
    if (w.type !== 'welcome') throw new Error(`hello failed: ${JSON.stringify(w)}`);
    this.client = w.client;
    return w;
  }
  close() { try { this.ws.close(); } catch { /* already closed */ } return this.closed; }
}

export async function connectHello(d, client) {
  const c = await Client.connect(d.url);
  await c.hello(client);
  return c;
}

// ---- helpers shared by the integration tests ----------------------------

// A conf text: `global` lines at top level, `room` lines inside
// `room default { ... }` (after reducer/history/create_on_subscribe, which
// can be overridden by passing them), plus any extra raw text.
export function makeConf({ global = [], room = [], extra = '' } = {}) {
  const roomKeys = new Set(room.map((l) => l.trim().split(/\s+/)[0]));
  const base = ['reducer json', 'history 1000', 'create_on_subscribe yes'].filter((l) => !roomKeys.has(l.split(' ')[0]));
  return `log_level info\n${global.join('\n')}\nroom default {\n${[...base, ...room].map((l) => `    ${l}`).join('\n')}\n}\n${extra}\n`;
}

// Wait until cond() is truthy (polled), or fail with `what`.
export async function waitFor(cond, what, ms = TIMEOUT) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timeout waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// The load generator (bench/loadgen.c) from `make VARIANT=release bench-bin`
// (part of `make test`). runLoadgen(args) runs it for about a second and
// resolves {code, result (its JSON line), out, stderr}; assertLoadgenGood
// fails unless its own checks passed (final counters = acked increments,
// seq order, nothing lost).
export const LOADGEN = join(ROOT, 'build/release/bench/loadgen');
export function runLoadgen(args) {
  const p = spawn(LOADGEN, ['--warmup', '0.2', '--duration', '1', '--quiet', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { err += d; });
  const done = new Promise((res) => p.on('close', (code) => {
    let result = null;
    try { result = JSON.parse(out.trim().split('\n').pop()); } catch { /* asserted by the caller */ }
    res({ code, result, out, stderr: err });
  }));
  return withTimeout(done, 6 * TIMEOUT, 'loadgen did not finish').catch((e) => { p.kill('SIGKILL'); throw e; });
}
export function assertLoadgenGood(r, what) {
  assert.ok(r.result, `${what}: no JSON result line; stdout ${r.out} stderr ${r.stderr}`);
  assert.equal(r.result.final_ok, true, `${what}: ${JSON.stringify(r.result)}`);
  assert.equal(r.code, 0, what);
  assert.equal(r.result.lost_updates, 0, what);
  assert.ok(r.result.acked > 0, `${what}: nothing acked`);
}

// Start a daemon, run fn(d), always stop it (asserting a clean exit).
export async function withDaemon(opts, fn) {
  const d = await startDaemon(opts);
  let failed = true;
  try {
    const r = await fn(d);
    failed = false;
    return r;
  } finally {
    try { await d.stop(); } catch (e) { if (!failed) throw e; }
  }
}

// One HTTP request to the daemon `d` (or to a port number), a fresh
// connection unless `agent` is given. `body`: a string/Buffer sent as is, or
// any other value sent as JSON. Resolves {status, headers, body (string)}.
export function httpRequest(d, { method = 'GET', path = '/', headers = {}, body, agent = false, ms = TIMEOUT } = {}) {
  const port = typeof d === 'number' ? d : d.port;
  const data = body === undefined ? undefined
    : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const h = { ...headers };
  // a Content-Length unless the caller chose one or Transfer-Encoding
  if (data !== undefined && !Object.keys(h).some((k) => ['content-length', 'transfer-encoding'].includes(k.toLowerCase()))) {
    h['content-length'] = Buffer.byteLength(data);
  }
  return withTimeout(new Promise((res, rej) => {
    const req = nodeHttpRequest({ host: '127.0.0.1', port, path, method, headers: h, agent }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks).toString('utf8') }));
      r.on('error', rej);
    });
    req.on('error', rej);
    req.end(data);
  }), ms, `${method} ${path}`);
}

// A JSON Patch action request body (the caller adds n/base/dep/strict).
export function patchAction(room, n, payload, extra = {}) {
  return { type: 'action', room, n, action: { type: 'patch', payload }, ...extra };
}

// ---- a local JSON Patch (RFC 6902 + inc), to track state independently ----

function unescapeToken(t) { return t.replace(/~1/g, '/').replace(/~0/g, '~'); }
function parsePointer(p) {
  if (p === '') return [];
  if (p[0] !== '/') throw new Error(`bad pointer ${p}`);
  return p.slice(1).split('/').map(unescapeToken);
}
function arrIndex(arr, tok, forAdd) {
  if (forAdd && tok === '-') return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(tok)) throw new Error(`bad index ${tok}`);
  const i = Number(tok);
  if (i > arr.length || (!forAdd && i === arr.length)) throw new Error(`index ${tok} out of range`);
  return i;
}
function resolve2(doc, toks) {
  let cur = doc;
  for (const t of toks) {
    if (Array.isArray(cur)) cur = cur[arrIndex(cur, t, false)];
    else if (cur !== null && typeof cur === 'object' && Object.hasOwn(cur, t)) cur = cur[t];
    else throw new Error(`path does not exist at ${t}`);
  }
  return cur;
}
function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
}
const clone = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

// Apply ops to a deep copy of doc and return the new document; throws on
// any failure (the original is untouched, so the patch is atomic).
export function applyPatch(doc, ops) {
  let root = clone(doc);
  const add = (toks, value) => {
    if (!toks.length) { root = value; return; }
    const parent = resolve2(root, toks.slice(0, -1));
    const last = toks[toks.length - 1];
    if (Array.isArray(parent)) parent.splice(arrIndex(parent, last, true), 0, value);
    else if (parent !== null && typeof parent === 'object') parent[last] = value;
    else throw new Error('parent is not a container');
  };
  const remove = (toks) => {
    if (!toks.length) throw new Error('cannot remove the root');
    const parent = resolve2(root, toks.slice(0, -1));
    const last = toks[toks.length - 1];
    if (Array.isArray(parent)) { const v = parent[arrIndex(parent, last, false)]; parent.splice(Number(last), 1); return v; }
    if (parent === null || typeof parent !== 'object' || !Object.hasOwn(parent, last)) throw new Error('no such member');
    const v = parent[last];
    delete parent[last];
    return v;
  };
  if (!Array.isArray(ops)) throw new Error('a patch is an array');
  for (const op of ops) {
    if (op === null || typeof op !== 'object' || Array.isArray(op)) throw new Error('an op is an object');
    if (typeof op.path !== 'string') throw new Error('path must be a string');
    if (['add', 'replace', 'test', 'inc'].includes(op.op) && !Object.hasOwn(op, 'value')) throw new Error(`${op.op} needs a value`);
    if (op.op === 'inc' && typeof op.value !== 'number') throw new Error('inc needs a number');
    if (['move', 'copy'].includes(op.op) && typeof op.from !== 'string') throw new Error(`${op.op} needs from`);
    if (op.op === 'move' && op.path.startsWith(`${op.from}/`)) throw new Error('move into its own child');
    const toks = parsePointer(op.path);
    switch (op.op) {
      case 'add': add(toks, clone(op.value)); break;
      case 'remove': remove(toks); break;
      case 'replace': resolve2(root, toks); if (!toks.length) root = clone(op.value); else { remove(toks); add(toks, clone(op.value)); } break;
      case 'move': { const v = remove(parsePointer(op.from)); add(toks, v); break; }
      case 'copy': add(toks, clone(resolve2(root, parsePointer(op.from)))); break;
      case 'test': if (!deepEqual(resolve2(root, toks), op.value)) throw new Error('test failed'); break;
      case 'inc': {
        const parent = resolve2(root, toks.slice(0, -1));
        const last = toks[toks.length - 1];
        if (parent !== null && typeof parent === 'object' && !Array.isArray(parent) && !Object.hasOwn(parent, last)) parent[last] = op.value;
        else {
          const cur = resolve2(root, toks);
          if (typeof cur !== 'number') throw new Error('inc on a non-number');
          const v = cur + op.value;
          if (!Number.isFinite(v)) throw new Error('non-finite');
          if (Array.isArray(parent)) parent[Number(last)] = v; else parent[last] = v;
        }
        break;
      }
      default: throw new Error(`unknown op ${op.op}`);
    }
  }
  return root;
}

// The libseccomp declarations the tests' small seccomp helpers (C source in
// a String.raw template, built with cc and -l:libseccomp.so.2) need: the
// library is there (systemd depends on it), its -dev headers may not be.
export const SECCOMP_DECLS = `typedef void *scmp_filter_ctx;
struct scmp_arg_cmp { unsigned int arg; int op; uint64_t datum_a, datum_b; };
scmp_filter_ctx seccomp_init(uint32_t def_action);
int seccomp_rule_add_array(scmp_filter_ctx, uint32_t action, int syscall, unsigned int n, const struct scmp_arg_cmp *a);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_load(scmp_filter_ctx);`;

// GET path from a TLS daemon (d.port), trusting `ca` (PEM, makeTestCert's):
// resolves {status, body}.
export function httpsGet(d, path, ca) {
  return withTimeout(new Promise((res, rej) => {
    nodeHttpsGet({ host: '127.0.0.1', port: d.port, path, ca, servername: 'localhost', agent: false }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (x) => { body += x; });
      r.on('end', () => res({ status: r.statusCode, body }));
    }).on('error', rej);
  }), TIMEOUT, `GET ${path}`);
}

// A throwaway self-signed P-256 certificate for localhost/127.0.0.1 in a
// fresh temporary dir (openssl CLI): {dir, cert, key (paths), ca (the PEM)}.
export function makeTestCert() {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'pipe' });
  return { dir, cert, key, ca: readFileSync(cert) };
}

// The records of a segment: [{off, len}] up to the first zero length word
// (preallocated space) or the end of the file; `end` is where data ends.
export function walRecords(buf) {
  const recs = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len === 0 || off + 8 + len > buf.length) break;
    recs.push({ off, len });
    off += 8 + len;
  }
  return { recs, end: off };
}

// An LD_PRELOAD shim: C source compiled with cc into a fresh temporary
// directory as NAME.so. Returns { dir, so }; the caller removes dir.
export function buildPreloadShim(name, source) {
  const dir = mkdtempSync(join(tmpdir(), `movexd-${name}-`));
  writeFileSync(join(dir, `${name}.c`), source);
  const so = join(dir, `${name}.so`);
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', so, join(dir, `${name}.c`), '-ldl'], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`cannot build the ${name} shim: ${cc.stderr}`);
  return { dir, so };
}
