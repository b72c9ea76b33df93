#!/usr/bin/env node
// Generates test/vectors/numbers.json: [hexbits, String(x)] pairs, where
// hexbits is the IEEE-754 bit pattern of the double x (16 hex digits,
// big-endian) and String(x) is what this JavaScript engine prints for it.
// The C suite (test/unit/test_numfmt.c) checks mx_numfmt against every pair,
// so the expected text comes from a real ECMAScript implementation, never
// from the C code.
//
// Deterministic: a fixed-seed PRNG, so rerunning gives the same file (as long
// as the engine's Number::toString is correct, which is the point).
//
// Usage: node scripts/gen-number-vectors.mjs [out.json] [count]
//        (defaults: test/vectors/numbers.json, 20000)

import { writeFileSync } from 'node:fs';

const out = process.argv[2] ?? new URL('../test/vectors/numbers.json', import.meta.url).pathname;
const target = Number(process.argv[3] ?? 20000);

// splitmix64 over BigInt: simple, well-distributed and seedable.
let state = 0x6d6f766578640001n; // "movexd" + 1
const M64 = (1n << 64n) - 1n;
function next64() {
  state = (state + 0x9e3779b97f4a7c15n) & M64;
  let z = state;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}
const rand = () => Number(next64() >> 11n) / 2 ** 53; // [0, 1)
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)); // inclusive

const dv = new DataView(new ArrayBuffer(8));
const bitsOf = (x) => {
  dv.setFloat64(0, x);
  return dv.getBigUint64(0);
};
const fromBits = (b) => {
  dv.setBigUint64(0, b & M64);
  return dv.getFloat64(0);
};
const hex = (x) => bitsOf(x).toString(16).padStart(16, '0');
// neighbours in the bit pattern: nextUp / nextDown for positive finite x
const nextUp = (x) => (x === 0 ? Number.MIN_VALUE : fromBits(bitsOf(x) + 1n));
const nextDown = (x) => (x === Number.MIN_VALUE ? 0 : fromBits(bitsOf(x) - 1n));

const seen = new Set();
const pairs = [];
function add(x) {
  if (!Number.isFinite(x)) return;
  const h = hex(x);
  if (seen.has(h)) return;
  seen.add(h);
  pairs.push([h, String(x)]);
}
const addSigned = (x) => {
  add(x);
  add(-x);
};
const addAround = (x, k = 2) => {
  // x, its k neighbours either side, both signs
  let lo = x;
  let hi = x;
  addSigned(x);
  for (let i = 0; i < k; i++) {
    lo = nextDown(lo);
    hi = nextUp(hi);
    addSigned(lo);
    addSigned(hi);
  }
};

// 1. Boundaries of the ECMAScript layout rules and of the double format.
add(0);
add(-0);
for (const x of [
  1e21, 1e-7, 1e-6, 1e20, 1e22, 1e23, 1e-5, 1e-8, 0.1, 0.2, 0.3, 1, 2, 10, 100,
  5e-324, 1e-323, 2.2250738585072014e-308, 2.225073858507201e-308, // min normal, max subnormal
  1.7976931348623157e308, 2 ** 53, 2 ** 53 - 1, 2 ** 52, 2 ** 63, 2 ** 64, 2 ** 31, 2 ** 32,
  9007199254740993, 123456789012345680000, 1.5e-7, 123.456, 1.5, 4.35, 0.000001,
  Math.PI, Math.E, 1 / 3, 2 / 3,
]) addAround(x);
add(Number.MAX_SAFE_INTEGER + 2);

// 2. Powers of ten across the whole range, and 2^k for every exponent.
for (let e = -323; e <= 308; e++) addAround(Number(`1e${e}`), 1);
for (let e = -1074; e <= 1023; e++) addSigned(2 ** e);

// 3. Fills the rest in equal shares: random bit patterns, random integers,
//    random short decimals.
const kinds = [
  () => {
    // any finite double: random sign, exponent and mantissa
    for (;;) {
      const x = fromBits(next64());
      if (Number.isFinite(x)) return x;
    }
  },
  () => {
    // integers of 1..22 digits, exactly typed or rounded to a double
    const digits = randInt(1, 22);
    let s = String(randInt(1, 9));
    for (let i = 1; i < digits; i++) s += randInt(0, 9);
    return (rand() < 0.5 ? -1 : 1) * Number(s);
  },
  () => {
    // integers up to 2^53 from uniform bits
    return (rand() < 0.5 ? -1 : 1) * Math.floor(rand() * 2 ** randInt(1, 53));
  },
  () => {
    // decimals with 1..6 significant digits and a scale of 10^-30..10^30
    const digits = randInt(1, 6);
    let s = String(randInt(1, 9));
    for (let i = 1; i < digits; i++) s += randInt(0, 9);
    return (rand() < 0.5 ? -1 : 1) * Number(`${s}e${randInt(-30, 30)}`);
  },
  () => {
    // money-like and human numbers: up to 3 decimals
    return Number((rand() * 10 ** randInt(0, 9)).toFixed(randInt(0, 3)));
  },
  () => {
    // 15..17 significant digits near the layout switch points
    const e = [-8, -7, -6, 19, 20, 21, 22][randInt(0, 6)];
    const m = 1 + rand() * 9;
    return Number(`${m.toPrecision(randInt(15, 17))}e${e}`);
  },
];
let k = 0;
while (pairs.length < target) add(kinds[k++ % kinds.length]());

// One pair a line keeps diffs of regenerations readable.
const body = pairs.map((p) => JSON.stringify(p)).join(',\n');
writeFileSync(out, `[\n${body}\n]\n`);
console.log(`${out}: ${pairs.length} numbers`);
