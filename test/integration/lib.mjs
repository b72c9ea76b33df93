// Test harness: start the real movexd on a free loopback port and talk to it
// over real WebSockets (package `ws`). Everything waits on conditions with
// generous timeouts; nothing sleeps for a fixed time.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import WebSocket from '../node_modules/ws/index.js';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const BIN = resolve(ROOT, process.env.MOVEXD_BIN || 'build/release/movexd');
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
export async function startDaemon({ conf = DEFAULT_CONF, args = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-test-'));
  const confPath = join(dir, 'movexd.conf');
  writeFileSync(confPath, conf);
  const proc = spawn(BIN, ['-c', confPath, '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  const port = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`daemon did not start in time; stderr:\n${stderr}`)), TIMEOUT);
    proc.stderr.on('data', (d) => {
      stderr += d;
      const m = /event=listening .*port=(\d+)/.exec(stderr);
      if (m) { clearTimeout(timer); res(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); rej(new Error(`daemon exited ${code} before listening:\n${stderr}`)); });
  });
  const d = {
    proc, port, dir, confPath,
    url: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    get stderr() { return stderr; },
    exited,
    // SIGTERM and wait; asserts a clean exit (sanitizer reports make it non-zero).
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const r = await withTimeout(exited, TIMEOUT, 'daemon did not stop');
      rmSync(dir, { recursive: true, force: true });
      if (r.code !== 0) throw new Error(`daemon exited with ${r.code}/${r.signal}; stderr:\n${stderr.slice(-4000)}`);
      return r;
    },
  };
  return d;
}

export function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms); }),
  ]);
}

// A protocol client: collects every message; `next(pred)` waits for the next
// matching one (in arrival order), `request(msg)` sends with a fresh id and
// waits for the reply carrying that id.
export class Client {
  constructor(url, { protocol = 'movex.v1' } = {}) {
    this.ws = new WebSocket(url, protocol ? [protocol] : []);
    this.msgs = [];
    this.waiters = [];
    this.nextId = 1;
    this.closed = new Promise((res) => this.ws.on('close', (code, reason) => res({ code, reason: String(reason) })));
    this.ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      this.msgs.push(m);
      this._wake();
    });
    this.ws.on('error', () => {});
  }
  static async connect(url, opts) {
    const c = new Client(url, opts);
    await withTimeout(new Promise((res, rej) => { c.ws.once('open', res); c.ws.once('error', rej); }), TIMEOUT, 'connect');
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
