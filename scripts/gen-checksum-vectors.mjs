#!/usr/bin/env node
// Generates test/vectors/checksum.json, the checksum vectors shared by the C
// and JS implementations (PROTOCOL.md "Checksum").
//
// The expected values come from an implementation independent of the C
// code: JavaScript itself supplies the parts of the definition that are
// JavaScript's (JSON.parse, Number.prototype.toString for number text, the
// default string sort for UTF-16 key order), and Python's hashlib supplies
// BLAKE2b-128 (digest_size=16, no key). This script turns each value into
// the tagged tree of PROTOCOL.md and pipes it to python3, which hashes it
// and cross-checks the key order with its own UTF-16 sort.
//
// Before writing anything it checks every reference vector of PROTOCOL.md's
// table (copied below; pass --protocol path/to/PROTOCOL.md to also check
// against the table in that file) and refuses to write if one differs.
//
// Each vector: {"json": JSON text, "checksum": 32 hex, "comment": ...,
// "canonical": JSON.stringify of the value with keys in checksum order}
// (the canonical text is what mx_json_dump must print for the same value).
//
// Usage: node scripts/gen-checksum-vectors.mjs [--protocol FILE] [out.json]
// Needs Node >= 18 and python3; no npm packages.

import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

// ---- Reference vectors: PROTOCOL.md "Checksum" table, verbatim ----------
const REFERENCE = [
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

// ---- Further cases: [JSON text, comment] --------------------------------
// String.raw keeps JSON escapes readable: String.raw`"a\n"` is the JSON text
// "a\n" (a backslash-n escape inside the JSON string).
const R = String.raw;
const CASES = [
  // numbers: one value, many spellings
  ['1.0', 'integer written as 1.0 is the number 1'],
  ['1.000', 'trailing zeros do not matter'],
  ['10e-1', 'exponent spelling of 1'],
  ['-0', 'negative zero prints as 0'],
  ['-0.0', 'negative zero as a real prints as 0'],
  ['0.0', 'zero as a real'],
  ['1e21', '1e21 without a plus sign prints as 1e+21'],
  ['1E21', 'capital E'],
  ['1e20', 'largest power of ten printed plainly: 100000000000000000000'],
  ['100', 'plain integer'],
  ['100.0', '100 written as a real'],
  ['0.000001', '1e-6 prints in fixed notation'],
  ['1e-6', '1e-6 in exponent spelling prints as 0.000001'],
  ['0.0000001', '1e-7 written in fixed notation prints as 1e-7'],
  ['123.456', 'fixed notation'],
  ['-1.5', 'negative real'],
  ['1.7976931348623157e308', 'largest double: 1.7976931348623157e+308'],
  ['2.2250738585072014e-308', 'smallest normal double'],
  ['4.9406564584124654e-324', 'smallest subnormal in long spelling prints as 5e-324'],
  ['9007199254740993', '2^53+1 rounds to 2^53'],
  ['9007199254740991', '2^53-1, largest safe integer'],
  ['-9007199254740992', '-2^53'],
  ['123456789012345678901', 'integer beyond 64 bits rounds to 123456789012345680000'],
  ['12345678901234567890123', 'more than 21 digits prints in exponent form'],
  ['18446744073709551616', '2^64'],
  ['-9223372036854775808', '-2^63'],
  ['9223372036854775807', '2^63-1 rounds to 2^63'],
  ['0.30000000000000004', '0.1+0.2'],
  ['4.35', 'shortest digits'],
  ['0.3333333333333333', '1/3'],
  ['1e300', 'large power of ten'],
  ['-1e-300', 'small negative power of ten'],
  ['5e-7', 'just below the fixed-notation limit'],
  ['0.00001', '1e-5 in fixed notation'],
  ['1.5e300', 'exponent form with a fraction'],
  ['[0.1,1e21,1e-7,1.5e-7,-0,5e-324,100,1e20,0.000001,123.456,-1.5,1.0]', 'the special numbers in one array'],
  // strings
  ['"a"', 'one-letter string'],
  ['"hello world"', 'ASCII string with a space'],
  ['"null"', 'a string that looks like null differs from null'],
  ['"1"', 'a string that looks like a number differs from 1'],
  [R`"line1\nline2\ttab"`, 'newline and tab escapes'],
  [R`"\"quoted\" and \\ backslash"`, 'quote and backslash escapes'],
  [R`"\b\f\r"`, 'backspace, form feed, carriage return'],
  [R`"\u0001"`, 'U+0001, the control character next to the forbidden U+0000'],
  [R`"a\u0001b\u001fc"`, 'control characters U+0001 and U+001F inside text'],
  [R`"\u007f"`, 'DEL is not escaped by JSON.stringify'],
  [R`"\u00e9"`, 'escaped é hashes like the raw UTF-8'],
  ['"é"', 'raw é'],
  [R`"e\u0301"`, 'e + combining acute is not é'],
  [R`"\ud83d\ude00"`, 'escaped surrogate pair for U+1F600'],
  ['"😀"', 'astral character U+1F600 raw (4 UTF-8 bytes)'],
  [R`"\u2028\u2029"`, 'line and paragraph separators'],
  [R`"\uffff"`, 'U+FFFF, last BMP code point'],
  [R`"\ue000"`, 'U+E000, first private use code point'],
  ['"\u{10ffff}"', 'U+10FFFF, last code point'],
  [R`"\/"`, 'escaped solidus is a plain /'],
  ['"日本語のテキスト"', 'CJK text'],
  // arrays
  ['[null]', 'array of null'],
  ['[[]]', 'nested empty array'],
  ['[[],[]]', 'two empty arrays'],
  ['[{}]', 'array holding an empty object'],
  ['[1,"1",true,false,null,{},[]]', 'every type in one array'],
  ['[1,1.0]', '1 and 1.0 are the same element'],
  ['[0,-0]', '0 and -0 are the same element'],
  ['[2,1]', 'array order matters'],
  ['[1,2]', 'array order matters (other order)'],
  ['[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]', 'sixteen levels of arrays'],
  ['["a",["b",["c",["d"]]]]', 'nested strings'],
  // objects
  ['{"a":1}', 'one member'],
  ['{"":null}', 'empty key'],
  ['{"a":2,"b":1}', 'members in order'],
  ['{"b":1,"a":2}', 'members out of order: same as previous'],
  ['{"0":1}', 'object with key "0" differs from [1]'],
  ['[1]', 'array [1]'],
  ['{"x":[]}', 'empty array member'],
  ['{"x":{}}', 'empty object member'],
  ['{"a":{"b":{"c":{"d":{}}}}}', 'nested objects'],
  ['{"a":1,"A":2,"_":3,"0":4,"~":5}', 'ASCII key order: 0 < A < _ < a < ~'],
  ['{"aa":1,"a":2,"ab":3,"b":4,"":5}', 'a key sorts after its prefixes'],
  ['{"1":1,"01":2,"1.0":3,"10":4,"2":5}', 'numeric-looking keys sort as strings'],
  [R`{"\ue000":1,"😀":2}`, 'U+E000 sorts after U+1F600 in UTF-16 order (byte order says before)'],
  [R`{"\ud7ff":1,"😀":2}`, 'U+D7FF sorts before U+1F600'],
  [R`{"\uffff":1,"\ud800\udc00":2,"\uff01":3}`, 'U+FFFF and U+FF01 after U+10000'],
  ['{"ａ":1,"a":2,"á":3}', 'fullwidth a, ASCII a, a-acute'],
  [R`{"a\nb":1,"a\u0001":2,"a\"":3,"a\\":4}`, 'keys with escapes'],
  ['{"😀":{"😀":"😀"}}', 'astral characters as keys and values, nested'],
  ['{"é":3,"😀":2,"！":1}', 'same members as the reference in sorted order'],
  [R`{"\u00e9":3,"\ud83d\ude00":2,"\uff01":1}`, 'same members with escaped keys'],
  ['{"n":null,"t":true,"f":false,"d":1.5,"s":"x","a":[1],"o":{"k":"v"}}', 'one member of each type'],
  [
    '{"room":"lobby","tick":1e21,"players":[{"id":"p1","pos":[1.5,-2.25],"alive":true,"name":"Zoë"},{"id":"p2","pos":[0.1,1e-7],"alive":false,"name":null}],"meta":{"version":3,"tags":["a","b"]}}',
    'state-like document',
  ],
  [
    '{"matrix":[[1,0,0],[0,1,0],[0,0,1]],"scale":0.000001,"offset":[-0,123456789012345680000]}',
    'nested arrays of numbers in an object',
  ],
  // long containers: many children per hash state
  [`[${Array.from({ length: 100 }, (_, i) => i).join(',')}]`, 'array of 100 integers'],
  [`{${Array.from({ length: 50 }, (_, i) => `"k${49 - i}":${(49 - i) / 8}`).join(',')}}`, 'object of 50 members, inserted in reverse'],
  [`[${Array.from({ length: 30 }, (_, i) => `{"i":${i},"s":"${'x'.repeat(i)}"}`).join(',')}]`, 'array of 30 objects'],
];

// ---- JavaScript side: value -> tagged tree ------------------------------
// ["n"] ["t"] ["f"] ["d", text] ["s", string] ["a", [items]]
// ["o", [[key, value], ...]] with members in JavaScript's default sort
// order (UTF-16 code units).
function tagged(v) {
  if (v === null) return ['n'];
  if (v === true) return ['t'];
  if (v === false) return ['f'];
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`non-finite number ${v}`);
    return ['d', String(v)];
  }
  if (typeof v === 'string') return ['s', v];
  if (Array.isArray(v)) return ['a', v.map(tagged)];
  const keys = Object.keys(v).sort();
  return ['o', keys.map((k) => [k, tagged(v[k])])];
}

// The value with keys re-inserted in checksum order, so JSON.stringify
// prints the canonical text. (Integer-like keys such as "10" would be
// enumerated first by JavaScript regardless of insertion order, so build
// the text by hand instead.)
function canonical(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
}

// JSON.parse accepts duplicate keys (last wins); the protocol rejects them,
// so refuse a vector with duplicates rather than encode a value the C parser
// would refuse. A string literal followed by ':' is a key of the innermost
// open object.
function checkNoDuplicates(text) {
  const stack = [];
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const lit = text.slice(i, j + 1);
      i = j + 1;
      while (/\s/.test(text[i] ?? '')) i++;
      if (text[i] === ':') {
        const keys = stack[stack.length - 1];
        const key = JSON.parse(lit);
        if (keys.has(key)) throw new Error(`duplicate key ${lit} in ${text}`);
        keys.add(key);
      }
      continue;
    }
    if (c === '{') stack.push(new Set());
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
    i++;
  }
}

// ---- Python side: hashing -----------------------------------------------
const PY = `
import hashlib, json, sys

def d(t):
    h = hashlib.blake2b(digest_size=16)
    tag = t[0]
    h.update(tag.encode())
    if tag in ('n', 't', 'f'):
        pass
    elif tag == 'd':
        h.update(t[1].encode('ascii'))
    elif tag == 's':
        h.update(t[1].encode('utf-8'))  # fails on lone surrogates, as it should
    elif tag == 'a':
        for e in t[1]:
            h.update(d(e))
    elif tag == 'o':
        keys = [k for k, _ in t[1]]
        # independent check of JavaScript's order: UTF-16BE bytes compare
        # like UTF-16 code units
        if keys != sorted(keys, key=lambda k: k.encode('utf-16-be')):
            raise SystemExit('key order differs from UTF-16 order: %r' % keys)
        if len(set(keys)) != len(keys):
            raise SystemExit('duplicate keys: %r' % keys)
        for k, v in t[1]:
            h.update(d(['s', k]))
            h.update(d(v))
    else:
        raise SystemExit('bad tag %r' % tag)
    return h.digest()

sys.setrecursionlimit(10000)
trees = json.load(sys.stdin)
json.dump([d(t).hex() for t in trees], sys.stdout)
`;

function hashAll(trees) {
  const r = spawnSync('python3', ['-c', PY], { input: JSON.stringify(trees), encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// ---- main ---------------------------------------------------------------
const args = process.argv.slice(2);
let protocolPath = null;
let out = new URL('../test/vectors/checksum.json', import.meta.url).pathname;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--protocol') protocolPath = args[++i];
  else out = args[i];
}

const reference = REFERENCE.slice();
if (protocolPath) {
  // rows look like: | `JSON` | `hex` |
  const rows = [...readFileSync(protocolPath, 'utf8').matchAll(/^\| `([^`]+)` \| `([0-9a-f]{32})` \|$/gm)];
  if (rows.length === 0) throw new Error(`no reference rows found in ${protocolPath}`);
  for (const [, text, hex] of rows) {
    const mine = REFERENCE.find(([t]) => t === text);
    if (!mine || mine[1] !== hex) throw new Error(`${protocolPath} row ${text} ${hex} differs from this script's copy`);
  }
  if (rows.length !== REFERENCE.length) throw new Error(`${protocolPath} has ${rows.length} rows, script has ${REFERENCE.length}`);
  console.log(`${protocolPath}: ${rows.length} reference rows match this script's copy`);
}

const all = [
  ...reference.map(([json]) => [json, 'PROTOCOL.md reference vector']),
  ...CASES,
];
const seenText = new Set();
for (const [json] of all) {
  if (seenText.has(json)) throw new Error(`case listed twice: ${json}`);
  seenText.add(json);
  checkNoDuplicates(json);
  if (json.includes('\\u0000') || json.includes('\0')) throw new Error(`U+0000 is not allowed: ${json}`);
}
const values = all.map(([json]) => JSON.parse(json));
const sums = hashAll(values.map(tagged));

// reference vectors first: the generator must reproduce them exactly
let bad = 0;
reference.forEach(([json, want], i) => {
  if (sums[i] !== want) {
    console.error(`reference vector ${json}: got ${sums[i]}, PROTOCOL.md says ${want}`);
    bad++;
  }
});
if (bad) {
  console.error(`${bad} reference vectors differ; not writing ${out}`);
  process.exit(1);
}
console.log(`all ${reference.length} PROTOCOL.md reference vectors reproduced`);

const vectors = all.map(([json, comment], i) => ({
  json,
  checksum: sums[i],
  comment,
  canonical: canonical(values[i]),
}));
writeFileSync(out, `[\n${vectors.map((v) => '  ' + JSON.stringify(v)).join(',\n')}\n]\n`);
console.log(`${out}: ${vectors.length} vectors`);
