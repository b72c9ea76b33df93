// A redis-server of a test's own, on a Unix socket in a temporary directory
// (no port to collide with), stopped by PID; and a minimal RESP2 client for
// it (commands as arrays of strings, replies as strings, numbers, arrays,
// null, or Error objects for error replies). Shared by the cluster tests.
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TIMEOUT } from './lib.mjs';

function encode(args) {
  let s = `*${args.length}\r\n`;
  for (const a of args) {
    const b = Buffer.from(String(a));
    s += `$${b.length}\r\n${b.toString('latin1')}\r\n`;
  }
  return Buffer.from(s, 'latin1');
}

// One reply from buf at off: [value, next offset], or null if incomplete.
function parse(buf, off) {
  const eol = buf.indexOf('\r\n', off);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[off]);
  const line = buf.toString('utf8', off + 1, eol);
  const next = eol + 2;
  if (type === '+') return [line, next];
  if (type === '-') return [new Error(line), next];
  if (type === ':') return [Number(line), next];
  if (type === '$') {
    const len = Number(line);
    if (len < 0) return [null, next];
    if (buf.length < next + len + 2) return null;
    return [buf.toString('utf8', next, next + len), next + len + 2];
  }
  if (type === '*') {
    const n = Number(line);
    if (n < 0) return [null, next];
    const arr = [];
    let o = next;
    for (let i = 0; i < n; i++) {
      const r = parse(buf, o);
      if (!r) return null;
      arr.push(r[0]);
      o = r[1];
    }
    return [arr, o];
  }
  throw new Error(`RESP: unexpected type byte ${type}`);
}

export class RedisConn {
  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.waiting = []; // resolvers of commands, in order
    this.pushes = [];  // pub/sub messages once subscribed
    this.onPush = null;
    this.subscribed = false;
    this.closed = false;
    // a Redis killed under a test must not crash it: every command still
    // waiting, and every later one, resolves with an Error
    const gone = (why) => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w(new Error(`redis connection ${why}`));
    };
    sock.on('error', (e) => gone(`error: ${e.message}`));
    sock.on('close', () => gone('closed'));
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        const r = parse(this.buf, 0);
        if (!r) break;
        this.buf = this.buf.subarray(r[1]);
        const v = r[0];
        if (this.subscribed && Array.isArray(v) && v[0] === 'message') {
          this.pushes.push(v);
          if (this.onPush) this.onPush();
          continue;
        }
        const w = this.waiting.shift();
        if (w) w(v);
      }
    });
  }

  // path: a Unix socket's path, or a TCP port on 127.0.0.1.
  static open(path) {
    return new Promise((resolve, reject) => {
      const s = typeof path === 'number' ? connect({ host: '127.0.0.1', port: path }) : connect({ path });
      s.once('connect', () => { s.removeListener('error', reject); resolve(new RedisConn(s)); });
      s.once('error', reject);
    });
  }

  // Resolves with the reply (an Error object for an error reply, or when
  // the connection is gone).
  cmd(...args) {
    if (this.closed) return Promise.resolve(new Error('redis connection closed'));
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.sock.write(encode(args));
    });
  }

  // As cmd, but an error reply rejects.
  async ok(...args) {
    const v = await this.cmd(...args);
    if (v instanceof Error) throw v;
    return v;
  }

  async subscribe(channel) {
    const v = await this.ok('SUBSCRIBE', channel);
    this.subscribed = true;
    return v;
  }

  // The next pub/sub message's payload, within ms.
  nextMessage(ms = TIMEOUT) {
    if (this.pushes.length) return Promise.resolve(this.pushes.shift()[2]);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no pub/sub message in time')), ms);
      this.onPush = () => {
        clearTimeout(t);
        this.onPush = null;
        resolve(this.pushes.shift()[2]);
      };
    });
  }

  close() { this.sock.destroy(); }
}

// Start redis-server (no persistence) on a Unix socket; resolves once it
// answers PING. stop() kills it by PID and removes its directory.
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-redis-'));
  const path = join(dir, 'redis.sock');
  const proc = spawn('redis-server', ['--port', '0', '--unixsocket', path, '--unixsocketperm', '700',
    '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`redis-server exited: ${stderr}`);
    }
    try {
      const c = await RedisConn.open(path);
      const pong = await c.cmd('PING');
      c.close();
      if (pong === 'PONG') break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      await stop();
      throw new Error('redis-server did not answer PING in time');
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { path, pid: proc.pid, stop, connect: () => RedisConn.open(path) };
}
