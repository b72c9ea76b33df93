// Raw-socket HTTP and WebSocket framing for the tests that must control the
// bytes on the wire (pipelining, bodies, unmasked frames): node's http and
// ws modules would refuse or normalise what these tests send.
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { httpRequest, withTimeout, TIMEOUT } from './lib.mjs';

// One TCP connection to 127.0.0.1:port. Everything received is kept in
// `buf`; `closed` resolves when the server closes (or resets) it.
export class RawConn {
  static open(port) {
    return withTimeout(new Promise((res, rej) => {
      const c = new RawConn();
      c.sock = net.connect(port, '127.0.0.1', () => res(c));
      c.sock.on('error', (e) => { if (!c.connected) rej(e); });
      c.sock.once('connect', () => { c.connected = true; });
    }), TIMEOUT, 'raw connect');
  }

  constructor() {
    this.buf = Buffer.alloc(0);
    this.waiters = new Set();
    this.isClosed = false;
    this.closed = new Promise((res) => { this.onClosed = res; });
    this.sock = null;
    this.connected = false;
  }

  attach() {
    this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake(); });
    this.sock.on('error', () => {}); // a reset counts as a close
    this.sock.on('close', () => { this.isClosed = true; this.onClosed(); this.wake(); });
  }

  wake() { for (const w of [...this.waiters]) w(); }

  write(data) { this.sock.write(data); }

  // Wait until cond(this) is truthy; fails after ms.
  until(cond, what, ms = TIMEOUT) {
    return withTimeout(new Promise((res) => {
      const check = () => {
        const v = cond(this);
        if (!v) return;
        this.waiters.delete(check);
        res(v);
      };
      this.waiters.add(check);
      check();
    }), ms, what);
  }

  // The complete HTTP responses received so far (after any 1xx).
  responses() { return parseResponses(this.buf).responses; }

  // Wait for n complete responses, or the close; resolves the responses.
  async waitResponses(n, what = `${n} responses`) {
    await this.until((c) => c.isClosed || c.responses().length >= n, what);
    return this.responses();
  }

  async waitClosed(what = 'the server closes the connection') {
    await withTimeout(this.closed, TIMEOUT, what);
    return this.responses();
  }

  destroy() { this.sock.destroy(); }
}

// Open and start collecting.
export async function rawConnect(port) {
  const c = await RawConn.open(port);
  c.attach();
  return c;
}

// The same over TLS, trusting the certificate `ca` (PEM).
export async function rawConnectTls(port, ca) {
  const c = new RawConn();
  await withTimeout(new Promise((res, rej) => {
    c.sock = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, res);
    c.sock.once('error', rej);
  }), TIMEOUT, 'TLS connect');
  c.connected = true;
  c.attach();
  return c;
}

// Parse as many whole HTTP/1.1 responses (Content-Length framed) as buf
// holds. 1xx interim responses are returned apart in `interim`.
export function parseResponses(buf) {
  const responses = [];
  const interim = [];
  let off = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const head = buf.subarray(off, end).toString('latin1');
    const [statusLine, ...lines] = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
    if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(head.slice(0, 200))}`);
    const headers = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const status = Number(m[1]);
    if (status >= 100 && status < 200) {
      interim.push({ status, headers });
      off = end + 4;
      continue;
    }
    const len = Number(headers['content-length'] ?? 0);
    if (buf.length < end + 4 + len) break;
    responses.push({ status, headers, body: buf.subarray(end + 4, end + 4 + len).toString('utf8') });
    off = end + 4 + len;
  }
  return { responses, interim, rest: buf.length - off };
}

// A request's text. body: string; headers: [name, value] pairs in order.
export function req(method, path, { headers = [], body = '', contentLength = true } = {}) {
  const h = [['Host', '127.0.0.1'], ...headers];
  if (body && contentLength && !h.some(([k]) => /^(content-length|transfer-encoding)$/i.test(k))) {
    h.push(['Content-Length', String(Buffer.byteLength(body))]);
  }
  return `${method} ${path} HTTP/1.1\r\n${h.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`;
}

// The body in chunked transfer coding, in pieces of n bytes.
export function chunked(body, n = 3) {
  let out = '';
  for (let i = 0; i < body.length; i += n) {
    const p = body.slice(i, i + n);
    out += `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`;
  }
  return `${out}0\r\n\r\n`;
}

// GET /healthz on a fresh connection answers 200 "ok".
export async function healthy(port, ms = TIMEOUT) {
  const r = await httpRequest(port, { path: '/healthz', ms });
  return r.status === 200 && r.body === 'ok\n';
}

// The WebSocket upgrade request for /ws with a fresh key.
export function upgradeRequest() {
  const key = randomBytes(16).toString('base64');
  return req('GET', '/ws', {
    headers: [['Upgrade', 'websocket'], ['Connection', 'Upgrade'], ['Sec-WebSocket-Key', key],
      ['Sec-WebSocket-Version', '13'], ['Sec-WebSocket-Protocol', 'movex.v1']],
  });
}

// One WebSocket frame. mask: true (a client's frames must be masked, RFC
// 6455 5.1) or false (what a broken or hostile client sends); fin: false
// for a fragment that is not a message's last (opcode 0 = continuation).
export function wsFrame(opcode, payload, { mask = true, fin = true } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = data.length;
  const head = [(fin ? 0x80 : 0) | opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 255);
  else if (len < 2 ** 32) head.push(m | 127, 0, 0, 0, 0, len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255);
  else throw new Error('test frames stay under 4 GiB');
  if (!mask) return Buffer.concat([Buffer.from(head), data]);
  const key = randomBytes(4);
  const body = Buffer.from(data.map((b, i) => b ^ key[i % 4]));
  return Buffer.concat([Buffer.from(head), key, body]);
}

// Server frames (never masked) in buf from offset off: [{opcode, payload}].
export function parseFrames(buf, off = 0) {
  const frames = [];
  while (off + 2 <= buf.length) {
    const opcode = buf[off] & 15;
    let len = buf[off + 1] & 127;
    let p = off + 2;
    if (len === 126) { if (p + 2 > buf.length) break; len = buf.readUInt16BE(p); p += 2; }
    else if (len === 127) { if (p + 8 > buf.length) break; len = Number(buf.readBigUInt64BE(p)); p += 8; }
    if (p + len > buf.length) break;
    frames.push({ opcode, payload: buf.subarray(p, p + len) });
    off = p + len;
  }
  return frames;
}

// A raw connection upgraded to a WebSocket; resolves { c, start } with the
// offset in c.buf where the server's frames begin. ca: over TLS, trusting it.
export async function rawWebSocket(d, ca) {
  const c = ca ? await rawConnectTls(d.port, ca) : await rawConnect(d.port);
  c.write(upgradeRequest());
  await c.until((x) => x.buf.indexOf('\r\n\r\n') > 0, '101 Switching Protocols');
  const start = c.buf.indexOf('\r\n\r\n') + 4;
  const head = c.buf.subarray(0, start).toString('latin1');
  if (!/^HTTP\/1\.1 101 /.test(head)) throw new Error(`not a 101 answer: ${JSON.stringify(head.slice(0, 200))}`);
  return { c, start };
}
