// A client's close frame (RFC 6455 5.5.1, 7.1.6): empty, or a code and a
// UTF-8 reason. libwebsockets 4.1.6 maps a code that is not allowed to
// 1002 but echoed a 1-byte payload and a reason that is not UTF-8 back as
// they came; server.c answers those 1002 and 1007. A well-formed close is
// still answered with its own code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withDaemon, httpRequest } from './lib.mjs';
import { wsFrame, parseFrames, rawWebSocket } from './rawhttp.mjs';

async function closeAnswer(d, payload) {
  const { c, start } = await rawWebSocket(d);
  c.write(wsFrame(1, JSON.stringify({ type: 'hello', client: 'close' })));
  await c.until((x) => parseFrames(x.buf, start).some((f) => f.opcode === 1), 'welcome');
  c.write(wsFrame(8, payload));
  await c.waitClosed('the server closes the connection');
  const close = parseFrames(c.buf, start).find((f) => f.opcode === 8);
  assert.ok(close, 'a close frame');
  return close.payload.length >= 2 ? close.payload.readUInt16BE(0) : null;
}

test('close frames: a 1-byte payload is answered 1002, a reason that is not UTF-8 1007, a bad code 1002, a good one echoed', async () => {
  await withDaemon({}, async (d) => {
    const code = (n, reason = Buffer.alloc(0)) => Buffer.concat([Buffer.from([n >> 8, n & 255]), reason]);
    assert.equal(await closeAnswer(d, Buffer.from([3])), 1002, '1-byte payload');
    assert.equal(await closeAnswer(d, code(1000, Buffer.from([0xff, 0xfe]))), 1007, 'reason not UTF-8');
    assert.equal(await closeAnswer(d, code(1000, Buffer.from([0xc3]))), 1007, 'reason cut mid-character');
    assert.equal(await closeAnswer(d, code(0)), 1002, 'code 0');
    assert.equal(await closeAnswer(d, code(1000, Buffer.from('bye \u00e9'))), 1000, 'a good close');
    assert.equal(await closeAnswer(d, Buffer.alloc(0)), null, 'an empty close is answered empty');
    assert.equal((await httpRequest(d, { path: '/healthz' })).status, 200);
  });
});
