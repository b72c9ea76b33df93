// RFC 6455 5.1: a client's frames are masked, and a server closes the
// connection with 1002 on an unmasked one (src/wsmask.c). libwebsockets
// 4.1.6 accepted unmasked frames. Raw sockets, since a WebSocket library
// always masks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withDaemon, connectHello, makeConf } from './lib.mjs';
import { wsFrame, parseFrames, rawWebSocket } from './rawhttp.mjs';

const textOf = (f) => f.payload.toString('utf8');
const closeCode = (f) => (f.payload.length >= 2 ? f.payload.readUInt16BE(0) : null);

async function expectClose1002(d, send) {
  const { c, start } = await rawWebSocket(d);
  send(c);
  await c.waitClosed('the server closes the connection');
  const frames = parseFrames(c.buf, start);
  const close = frames.find((f) => f.opcode === 8);
  assert.ok(close, `a close frame: ${JSON.stringify(frames.map((f) => [f.opcode, textOf(f)]))}`);
  assert.equal(closeCode(close), 1002);
  return frames;
}

test('an unmasked text frame is answered with close 1002, and its message is not processed', async () => {
  await withDaemon({}, async (d) => {
    const frames = await expectClose1002(d, (c) => c.write(wsFrame(1, JSON.stringify({ type: 'hello', client: 'bare' }), { mask: false })));
    assert.ok(!frames.some((f) => f.opcode === 1 && /welcome/.test(textOf(f))), 'no welcome for the unmasked hello');
    // others are served
    const ok = await connectHello(d, 'masked');
    assert.equal((await ok.request({ type: 'ping' })).type, 'pong');
    await ok.close();
  });
});

test('an unmasked close frame is answered with 1002, not echoed as a normal close', async () => {
  await withDaemon({}, async (d) => {
    await expectClose1002(d, (c) => c.write(Buffer.concat([
      wsFrame(1, JSON.stringify({ type: 'hello', client: 'closer' })),
      wsFrame(8, Buffer.from([0x03, 0xe8]), { mask: false }), // 1000, unmasked
    ])));
  });
});

test('an unmasked frame after masked ones (hello answered first) closes with 1002', async () => {
  await withDaemon({}, async (d) => {
    const { c, start } = await rawWebSocket(d);
    c.write(wsFrame(1, JSON.stringify({ type: 'hello', client: 'mixed' })));
    await c.until((x) => parseFrames(x.buf, start).some((f) => f.opcode === 1), 'welcome');
    // a long one (16-bit length), unmasked
    c.write(wsFrame(1, JSON.stringify({ type: 'ping', id: 1, pad: 'x'.repeat(300) }), { mask: false }));
    await c.waitClosed();
    const frames = parseFrames(c.buf, start);
    assert.equal(closeCode(frames.find((f) => f.opcode === 8)), 1002);
    assert.ok(!frames.some((f) => f.opcode === 1 && /pong/.test(textOf(f))), 'the unmasked ping is not answered');
  });
});

// One write - so one read by the server - of masked hello, masked ping and
// an unmasked ping: the two valid messages came first and are answered
// (docs/PROTOCOL.md, close 1002: replies already decided go out first),
// then the close; the unmasked one never is. The old watcher marked the
// descriptor as soon as the read held the unmasked frame, and the hello and
// the first ping got no answer.
test('masked messages read together with a later unmasked frame are answered before the 1002', async () => {
  await withDaemon({}, async (d) => {
    const frames = await expectClose1002(d, (c) => c.write(Buffer.concat([
      wsFrame(1, JSON.stringify({ type: 'hello', client: 'batched' })),
      wsFrame(1, JSON.stringify({ type: 'ping', id: 1 })),
      wsFrame(1, JSON.stringify({ type: 'ping', id: 2, pad: 'y'.repeat(200) }), { mask: false }),
    ])));
    const texts = frames.filter((f) => f.opcode === 1).map(textOf);
    assert.ok(texts.some((t) => /"welcome"/.test(t)), `the hello answered: ${texts}`);
    assert.ok(texts.some((t) => /"pong"/.test(t) && /"id":1\b/.test(t)), `ping 1 answered: ${texts}`);
    assert.ok(!texts.some((t) => /"id":2\b/.test(t)), `the unmasked ping 2 is not answered: ${texts}`);
    const closeAt = frames.findIndex((f) => f.opcode === 8);
    assert.ok(frames.findIndex((f) => f.opcode === 1 && /"pong"/.test(textOf(f))) < closeAt, 'the pong before the close');
  });
});

test('masked frames split at every byte are served (the watcher follows frame boundaries)', async () => {
  await withDaemon({}, async (d) => {
    const { c, start } = await rawWebSocket(d);
    const bytes = Buffer.concat([
      wsFrame(1, JSON.stringify({ type: 'hello', client: 'split' })),
      wsFrame(1, JSON.stringify({ type: 'ping', id: 7, pad: 'y'.repeat(200) })),
      wsFrame(9, 'are you there'), // a ping frame
      wsFrame(1, JSON.stringify({ type: 'ping', id: 8 })),
    ]);
    for (let i = 0; i < bytes.length; i++) c.write(bytes.subarray(i, i + 1));
    // libwebsockets writes the control pong when the socket is next
    // writable, so it may come after the second text pong: wait for all three
    const frames = await c.until((x) => {
      const f = parseFrames(x.buf, start);
      return f.filter((m) => m.opcode === 1 && /"pong"/.test(textOf(m))).length === 2 && f.some((m) => m.opcode === 10) && f;
    }, 'two pongs and the ping frame\'s pong frame');
    assert.ok(!frames.some((f) => f.opcode === 8), 'no close');
    c.destroy();
  });
});

test('over TLS too: an unmasked frame closes with 1002 (frames are watched after decryption)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-mask-tls-'));
  try {
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert,
    ], { stdio: 'pipe' });
    const ca = readFileSync(cert);
    await withDaemon({ conf: makeConf({ global: [`tls_cert_file ${cert}`, `tls_key_file ${key}`] }) }, async (d) => {
      const { c, start } = await rawWebSocket(d, ca);
      c.write(wsFrame(1, JSON.stringify({ type: 'hello', client: 'tls' })));
      await c.until((x) => parseFrames(x.buf, start).some((f) => f.opcode === 1), 'welcome over TLS');
      c.write(wsFrame(1, JSON.stringify({ type: 'ping', id: 1 }), { mask: false }));
      await c.waitClosed();
      const frames = parseFrames(c.buf, start);
      assert.equal(closeCode(frames.find((f) => f.opcode === 8)), 1002);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
