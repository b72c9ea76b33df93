// The JS checksum against the shared vectors (test/vectors/checksum.json),
// PROTOCOL.md's reference table, and the library's cached (per-subtree)
// digest against the plain one on states built by many patches. BLAKE2b is
// checked against independent implementations: OpenSSL (node:crypto) and,
// when python3 is installed, Python's hashlib.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { checksum, cachedChecksum, digest, toHex, applyPatch, blake2b } from '../movex.js';

const ROOT = new URL('../../', import.meta.url);
const vectors = JSON.parse(readFileSync(new URL('test/vectors/checksum.json', ROOT), 'utf8'));
const numbers = JSON.parse(readFileSync(new URL('test/vectors/numbers.json', ROOT), 'utf8'));

test('every shared checksum vector', () => {
  assert.ok(vectors.length > 50);
  for (const v of vectors) {
    const value = JSON.parse(v.json);
    assert.equal(checksum(value), v.checksum, `${v.comment}: ${v.json.slice(0, 80)}`);
    assert.equal(toHex(digest(value)), v.checksum);
    // the canonical form is the same value
    assert.equal(checksum(JSON.parse(v.canonical)), v.checksum, `${v.comment} (canonical)`);
  }
});

test('PROTOCOL.md reference table', () => {
  const table = [
    ['null', '4ee3fdf7a7a38af04951408152eaad1f'], ['true', '883e609a05d85c187a019cad93c12237'],
    ['false', '178ae0acf7f5c5ab692c698ac329d4fd'], ['0', '25ac9bf16d258838b5c610ca9cb65e58'],
    ['1', '70216ddf1d2e2c57a587dfaad501dc76'], ['-1', 'da9541d10a9983cdee4a174895f8cd57'],
    ['1.5', 'c570ccdd04bce8e8db0307452f8ff934'], ['0.1', '8da802d9952c28b5eb2b8a06f6263871'],
    ['1e+21', '6f0d51be25781bf6a8408aec9e3def2b'], ['1e-7', 'eec57aadb9cad71a892060371c33e9f0'],
    ['1.5e-7', '354e6469bd5d316cabb60300ed6bf70f'], ['9007199254740992', '7fd5f04f4890b8b34987a15b546c5232'],
    ['5e-324', '752a53a7668753bb516ef42df6a29464'], ['123456789012345680000', '643eaab3368cd97659332d89b162f9cf'],
    ['""', 'bbf7769fea5c8d41a9068bd6edbb2c13'], ['"héllo"', '10f29da4fb3ed3235d6b932d1fcc37a5'],
    ['"𝄞"', 'b98f44b507183a41fe6f93bbad9fb992'], ['[]', '27c35e6e9373877f29e562464e46497e'],
    ['{}', '4ccbe3a80f8112da36171794db81f2d5'], ['[1,[2]]', '15013f84c11459a35ef2f3d16e912c7c'],
    ['{"b":1,"a":[null]}', 'a6b3463d2cf4b3687e768e7432db89f6'], ['{"9":2,"10":1,"a":3}', '900981d188517a00b7aefddb98f13199'],
    ['{"！":1,"😀":2,"é":3}', '4df9674110b5b5ca18f14dd83791204f'],
  ];
  for (const [json, sum] of table) assert.equal(checksum(JSON.parse(json)), sum, json);
});

test('number text: Number.prototype.toString of every double in numbers.json', () => {
  const dv = new DataView(new ArrayBuffer(8));
  for (const [hex, text] of numbers) {
    dv.setBigUint64(0, BigInt(`0x${hex}`));
    assert.equal(String(dv.getFloat64(0)), text, hex);
  }
});

test('non-JSON values are refused', () => {
  assert.throws(() => checksum(NaN), TypeError);
  assert.throws(() => checksum(Infinity), TypeError);
  assert.throws(() => checksum(undefined), TypeError);
  assert.throws(() => checksum({ a: () => 1 }), TypeError);
});

// A deterministic PRNG so failures reproduce.
function rng(seed) {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x80000000;
  };
}

test('structural sharing does not change checksums; cachedChecksum equals checksum on every state', () => {
  // every intermediate state, checksummed through the per-subtree cache
  // (as room states are) and plainly, matches a state rebuilt from scratch
  const r = rng(42);
  let s = { items: [], counters: {}, meta: { title: 'x' } };
  for (let i = 0; i < 500; i++) {
    const k = Math.floor(r() * 5);
    let ops;
    if (k === 0) ops = [{ op: 'add', path: '/items/-', value: { id: i, done: false, tags: ['a'] } }];
    else if (k === 1 && s.items.length) ops = [{ op: 'replace', path: `/items/${Math.floor(r() * s.items.length)}/done`, value: true }];
    else if (k === 2) ops = [{ op: 'inc', path: `/counters/c${Math.floor(r() * 20)}`, value: r() < 0.5 ? 1 : 0.5 }];
    else if (k === 3 && s.items.length > 2) ops = [{ op: 'move', from: '/items/0', path: '/items/-' }];
    else ops = [{ op: 'copy', from: '/meta', path: `/copies${i % 3}` }, { op: 'add', path: `/copies${i % 3}/n`, value: i }];
    const before = JSON.stringify(s);
    const next = applyPatch(s, ops);
    assert.equal(JSON.stringify(s), before, 'input untouched');
    const fresh = checksum(JSON.parse(JSON.stringify(next)));
    assert.equal(cachedChecksum(next), fresh);
    assert.equal(checksum(next), fresh);
    s = next;
  }
});

// BLAKE2b: movex.js's own implementation (int32 halves, scratch buffers).
const te = new TextEncoder();
const seq = (n) => Uint8Array.from({ length: n }, (_, i) => i & 255);

test('blake2b: RFC 7693 / hashlib values', () => {
  // python3 -c "import hashlib;print(hashlib.blake2b(b'abc',digest_size=16).hexdigest())" etc.
  assert.equal(toHex(blake2b(te.encode('abc'), 16)), 'cf4ab791c62b8d2b2109c90275287816');
  assert.equal(toHex(blake2b(te.encode('abc'), 64)),
    'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923');
  assert.equal(toHex(blake2b(new Uint8Array(0), 64)),
    '786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce');
  assert.equal(toHex(blake2b(new Uint8Array(0), 16)), 'cae66941d9efbd404e4d88758ea67670');
  assert.equal(toHex(blake2b(seq(128), 16)), 'a74787004ef589e31149183900d0294a');
  assert.equal(toHex(blake2b(seq(129), 20)), 'a7bf25f1599102ab631e3052e8303a2c097d1a7e');
  assert.equal(toHex(blake2b(Uint8Array.from([...seq(256), ...seq(256), 0x78]), 32)),
    '52fde97e5b78a95fde3d3f1c39b9cb798927e3568418aef1f5c596eea0b082f0');
  assert.equal(toHex(blake2b(seq(64), 64, seq(64))),
    '65676d800617972fbd87e4b9514e1c67402b7a331096d3bfac22f1abb95374abc942f16e9ab0ead33b87c91968a6e509e119ff07787b3ef483e1dcdccf6e3022');
  assert.equal(toHex(blake2b(new Uint8Array(0), 64, seq(64))),
    '10ebb67700b1868efb4417987acf4690ae9d972fb7a590c2f02871799aaa4786b5e996e8f0f4eb981fc214b005f42d2ff4233499391653df7aefcbc13fc51568');
  assert.equal(toHex(blake2b(te.encode('abc'), 16, te.encode('k'))), '6858b7b52110e28dc8e99bd7c341f05e');
  assert.throws(() => blake2b(te.encode('a'), 0), RangeError);
  assert.throws(() => blake2b('abc', 16), TypeError);
});

// Random inputs: lengths around the block boundaries, offset views, every
// output length, keys of 0..64 bytes.
function blakeCases() {
  const r = rng(7);
  const cases = [];
  for (let i = 0; i < 400; i++) {
    const len = i < 300 ? i : Math.floor(r() * 2000);
    const buf = new Uint8Array(len + 5).map(() => Math.floor(r() * 256));
    const view = buf.subarray(3, 3 + len);
    const outlen = 1 + Math.floor(r() * 64);
    const key = r() < 0.3 ? buf.slice(0, Math.floor(r() * 65)) : undefined;
    cases.push({ view, outlen, key });
  }
  return cases;
}

test('blake2b: same output as OpenSSL (node:crypto blake2b512) for random inputs and views', () => {
  for (const { view } of blakeCases()) {
    const want = createHash('blake2b512').update(view).digest('hex');
    assert.equal(toHex(blake2b(view, 64)), want, `len ${view.length}`);
  }
});

const python = spawnSync('python3', ['-c', 'import hashlib'], { encoding: 'utf8' }).status === 0;

test('blake2b: same output as Python hashlib for random inputs, output lengths and keys', { skip: !python && 'python3 is not installed' }, () => {
  const cases = blakeCases();
  const py = `import hashlib, json, sys
print(json.dumps([hashlib.blake2b(bytes.fromhex(c['in']), digest_size=c['out'], key=bytes.fromhex(c['key'])).hexdigest() for c in json.load(sys.stdin)]))`;
  const input = JSON.stringify(cases.map((c) => ({ in: toHex(c.view), out: c.outlen, key: c.key ? toHex(c.key) : '' })));
  const res = spawnSync('python3', ['-c', py], { input, encoding: 'utf8' });
  assert.equal(res.status, 0, res.stderr);
  const want = JSON.parse(res.stdout);
  cases.forEach(({ view, outlen, key }, i) => {
    assert.equal(toHex(blake2b(view, outlen, key)), want[i], `len ${view.length} out ${outlen} key ${key?.length}`);
  });
});

// PROTOCOL.md "Checksum" written out plainly, without the library's scratch
// buffers, text encoder reuse or caches: D(v) = BLAKE2b-128(tag || payload).
function referenceDigest(v) {
  const h = (tag, bytes) => blake2b(Uint8Array.from([tag.charCodeAt(0), ...bytes]), 16);
  if (v === null) return h('n', []);
  if (v === true) return h('t', []);
  if (v === false) return h('f', []);
  if (typeof v === 'number') return h('d', te.encode(String(v)));
  if (typeof v === 'string') return h('s', te.encode(v));
  if (Array.isArray(v)) return h('a', v.flatMap((x) => [...referenceDigest(x)]));
  return h('o', Object.keys(v).sort().flatMap((k) => [...referenceDigest(k), ...referenceDigest(v[k])]));
}

test('checksum and cachedChecksum: same as the plain definition on random JSON values', () => {
  const r = rng(99);
  const gen = (depth) => {
    const k = Math.floor(r() * (depth > 3 ? 5 : 7));
    if (k === 0) return null;
    if (k === 1) return r() < 0.5;
    if (k === 2) return [r() * 1e6, -r(), Math.floor(r() * 1e9), 1e21 * r(), 5e-324][Math.floor(r() * 5)];
    if (k === 3) return String.fromCharCode(...Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 0xd7ff)));
    if (k === 4) return 'x'.repeat(Math.floor(r() * 300));
    if (k === 5) return Array.from({ length: Math.floor(r() * 6) }, () => gen(depth + 1));
    return Object.fromEntries(Array.from({ length: Math.floor(r() * 6) }, (_, j) => [`k${Math.floor(r() * 50)}${'é😀'[j % 2]}`, gen(depth + 1)]));
  };
  for (let i = 0; i < 300; i++) {
    const v = gen(0);
    const want = toHex(referenceDigest(v));
    assert.equal(checksum(v), want);
    assert.equal(cachedChecksum(v), want);
  }
});
