// client/movex.js's BLAKE2b (RFC 7693) and movex checksum, against the
// shared vectors (test/vectors/checksum.json) and PROTOCOL.md's table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { blake2b, checksum, digest, toHex } from '../../client/movex.js';
import { ROOT } from './lib.mjs';

const te = new TextEncoder();
const seq = (n) => Uint8Array.from({ length: n }, (_, i) => i & 255);

// Expected values computed with Python's hashlib (CPython 3, reference
// BLAKE2 code), e.g.
//   python3 -c "import hashlib;print(hashlib.blake2b(b'abc',digest_size=16).hexdigest())"
// The 64-byte 'abc' and '' digests also appear in RFC 7693 Appendix A and
// the BLAKE2 reference test vectors.
const BLAKE2B_CASES = [
  { what: "'abc', 16 bytes", input: te.encode('abc'), outlen: 16, hex: 'cf4ab791c62b8d2b2109c90275287816' },
  { what: "'abc', 64 bytes (RFC 7693 Appendix A)", input: te.encode('abc'), outlen: 64,
    hex: 'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923' },
  { what: "'', 64 bytes", input: new Uint8Array(0), outlen: 64,
    hex: '786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce' },
  { what: "'', 16 bytes", input: new Uint8Array(0), outlen: 16, hex: 'cae66941d9efbd404e4d88758ea67670' },
  { what: 'exactly one block (bytes 0..127), 16 bytes', input: seq(128), outlen: 16, hex: 'a74787004ef589e31149183900d0294a' },
  { what: 'one block + 1 byte (bytes 0..128), 20 bytes', input: seq(129), outlen: 20, hex: 'a7bf25f1599102ab631e3052e8303a2c097d1a7e' },
  { what: "bytes 0..255 twice + 'x' (513 bytes), 32 bytes",
    input: Uint8Array.from([...seq(256), ...seq(256), 0x78]), outlen: 32,
    hex: '52fde97e5b78a95fde3d3f1c39b9cb798927e3568418aef1f5c596eea0b082f0' },
  { what: "'The quick brown fox jumps over the lazy dog', 1 byte",
    input: te.encode('The quick brown fox jumps over the lazy dog'), outlen: 1, hex: 'b5' },
];

test('blake2b matches hashlib / RFC 7693 values', () => {
  for (const c of BLAKE2B_CASES) {
    assert.equal(toHex(blake2b(c.input, c.outlen)), c.hex, c.what);
    assert.equal(blake2b(c.input, c.outlen).length, c.outlen, `${c.what}: output length`);
  }
});

test('blake2b with a key (hashlib values)', () => {
  // python3 -c "import hashlib;print(hashlib.blake2b(bytes(range(64)),key=bytes(range(64))).hexdigest())"
  assert.equal(toHex(blake2b(seq(64), 64, seq(64))),
    '65676d800617972fbd87e4b9514e1c67402b7a331096d3bfac22f1abb95374abc942f16e9ab0ead33b87c91968a6e509e119ff07787b3ef483e1dcdccf6e3022');
  // python3 -c "import hashlib;print(hashlib.blake2b(b'',key=bytes(range(64))).hexdigest())"
  assert.equal(toHex(blake2b(new Uint8Array(0), 64, seq(64))),
    '10ebb67700b1868efb4417987acf4690ae9d972fb7a590c2f02871799aaa4786b5e996e8f0f4eb981fc214b005f42d2ff4233499391653df7aefcbc13fc51568');
  // python3 -c "import hashlib;print(hashlib.blake2b(b'abc',key=b'k',digest_size=16).hexdigest())"
  assert.equal(toHex(blake2b(te.encode('abc'), 16, te.encode('k'))), '6858b7b52110e28dc8e99bd7c341f05e');
});

test('blake2b rejects bad arguments', () => {
  assert.throws(() => blake2b(te.encode('a'), 0), RangeError);
  assert.throws(() => blake2b(te.encode('a'), 65), RangeError);
  assert.throws(() => blake2b('abc', 16), TypeError);
});

test('blake2b does not depend on the input view offset', () => {
  const big = seq(300);
  const view = big.subarray(7, 7 + 200);
  assert.equal(toHex(blake2b(view, 16)), toHex(blake2b(Uint8Array.from(view), 16)));
});

// PROTOCOL.md "Checksum" reference table, copied verbatim.
const PROTOCOL_TABLE = [
  ['null', '4ee3fdf7a7a38af04951408152eaad1f'],
  ['true', '883e609a05d85c187a019cad93c12237'],
  ['false', '178ae0acf7f5c5ab692c698ac329d4fd'],
  ['0', '25ac9bf16d258838b5c610ca9cb65e58'],
  ['1', '70216ddf1d2e2c57a587dfaad501dc76'],
  ['-1', 'da9541d10a9983cdee4a174895f8cd57'],
  ['1.5', 'c570ccdd04bce8e8db0307452f8ff934'],
  ['0.1', '8da802d9952c28b5eb2b8a06f6263871'],
  ['1e+21', '6f0d51be25781bf6a8408aec9e3def2b'],
  ['1e-7', 'eec57aadb9cad71a892060371c33e9f0'],
  ['1.5e-7', '354e6469bd5d316cabb60300ed6bf70f'],
  ['9007199254740992', '7fd5f04f4890b8b34987a15b546c5232'],
  ['5e-324', '752a53a7668753bb516ef42df6a29464'],
  ['123456789012345680000', '643eaab3368cd97659332d89b162f9cf'],
  ['""', 'bbf7769fea5c8d41a9068bd6edbb2c13'],
  ['"héllo"', '10f29da4fb3ed3235d6b932d1fcc37a5'],
  ['"𝄞"', 'b98f44b507183a41fe6f93bbad9fb992'],
  ['[]', '27c35e6e9373877f29e562464e46497e'],
  ['{}', '4ccbe3a80f8112da36171794db81f2d5'],
  ['[1,[2]]', '15013f84c11459a35ef2f3d16e912c7c'],
  ['{"b":1,"a":[null]}', 'a6b3463d2cf4b3687e768e7432db89f6'],
  ['{"9":2,"10":1,"a":3}', '900981d188517a00b7aefddb98f13199'],
  ['{"！":1,"😀":2,"é":3}', '4df9674110b5b5ca18f14dd83791204f'],
];

test('checksum: PROTOCOL.md reference table', () => {
  for (const [json, want] of PROTOCOL_TABLE)
    assert.equal(checksum(JSON.parse(json)), want, `checksum(${json})`);
});

test('checksum: every vector in test/vectors/checksum.json', () => {
  const vectors = JSON.parse(readFileSync(join(ROOT, 'test/vectors/checksum.json'), 'utf8'));
  assert.ok(Array.isArray(vectors) && vectors.length >= PROTOCOL_TABLE.length, 'vectors file is an array');
  let n = 0;
  for (const v of vectors) {
    const value = JSON.parse(v.json);
    assert.match(v.checksum, /^[0-9a-f]{32}$/, `vector ${v.json}: checksum format`);
    assert.equal(checksum(value), v.checksum, `checksum(${v.json}) — ${v.comment}`);
    if (v.canonical !== undefined)
      assert.equal(checksum(JSON.parse(v.canonical)), v.checksum, `canonical form of ${v.json}`);
    n++;
  }
  assert.equal(n, vectors.length);
});

test('digest is the 16 raw bytes of checksum, and is a fresh copy', () => {
  const d = digest({ a: [1, 'x'] });
  assert.ok(d instanceof Uint8Array);
  assert.equal(d.length, 16);
  assert.equal(toHex(d), checksum({ a: [1, 'x'] }));
  d.fill(0);
  assert.equal(toHex(digest(null)), '4ee3fdf7a7a38af04951408152eaad1f', 'cached constants are not exposed');
  d.set(digest(null));
  d.fill(0);
  assert.equal(checksum(null), '4ee3fdf7a7a38af04951408152eaad1f');
});

test('checksum structure: tagged encoding, key order, -0', () => {
  // D(value) is BLAKE2b-128 of a tag plus the payload.
  const h = (s) => toHex(blake2b(te.encode(s), 16));
  assert.equal(checksum(null), h('n'));
  assert.equal(checksum(true), h('t'));
  assert.equal(checksum(false), h('f'));
  assert.equal(checksum(1e21), h('d1e+21'));
  assert.equal(checksum('héllo'), h('shéllo'));
  assert.equal(checksum(-0), checksum(0));
  const arr = new Uint8Array(33);
  arr[0] = 0x61; arr.set(digest(1), 1); arr.set(digest('x'), 17);
  assert.equal(checksum([1, 'x']), toHex(blake2b(arr, 16)));
  const obj = new Uint8Array(33);
  obj[0] = 0x6f; obj.set(digest('k'), 1); obj.set(digest(null), 17);
  assert.equal(checksum({ k: null }), toHex(blake2b(obj, 16)));
  // Member order in the source object does not matter.
  assert.equal(checksum({ a: 1, b: 2 }), checksum({ b: 2, a: 1 }));
  // A key is hashed as a string: {"1":..} is not [..].
  assert.notEqual(checksum({ 0: 1 }), checksum([1]));
  assert.notEqual(checksum('1'), checksum(1));
});

test('checksum rejects values that are not JSON', () => {
  assert.throws(() => checksum(NaN), TypeError);
  assert.throws(() => checksum(Infinity), TypeError);
  assert.throws(() => checksum(undefined), TypeError);
  assert.throws(() => checksum({ a: () => 1 }), TypeError);
  assert.throws(() => checksum(1n), TypeError);
});
