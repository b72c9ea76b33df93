// digest.mjs - the movex state checksum (PROTOCOL.md "Checksum") and the
// BLAKE2b hash it is built on (RFC 7693). Dependency-free ES module for
// browsers and Node >= 18.
//
//   blake2b(bytes, outlen = 64, key?) -> Uint8Array(outlen)
//   digest(value)   -> Uint8Array(16): D(value), BLAKE2b-128 of the tagged encoding
//   checksum(value) -> 32 lowercase hex characters: hex(D(value))
//
// BLAKE2b works on 64-bit words; to stay fast without BigInt, each word is a
// pair of 32-bit halves in a Uint32Array (index 2i = low, 2i+1 = high).

// ---- BLAKE2b (RFC 7693) -------------------------------------------------

// Initialisation vector, as (low, high) pairs.
const IV = new Uint32Array([
  0xf3bcc908, 0x6a09e667, 0x84caa73b, 0xbb67ae85,
  0xfe94f82b, 0x3c6ef372, 0x5f1d36f1, 0xa54ff53a,
  0xade682d1, 0x510e527f, 0x2b3e6c1f, 0x9b05688c,
  0xfb41bd6b, 0x1f83d9ab, 0x137e2179, 0x5be0cd19,
]);

// Message schedule; rounds 10 and 11 repeat rounds 0 and 1. Stored premultiplied
// by 2 so entries index straight into the (low, high) message array.
const SIGMA = new Uint8Array([
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
  14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
  11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4,
  7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8,
  9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13,
  2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9,
  12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11,
  13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10,
  6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5,
  10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0,
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
  14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
].map((x) => x * 2));

// Scratch space shared by all calls (JS is single-threaded per realm).
const V = new Uint32Array(32);
const M = new Uint32Array(32);

// The mixing function G on words a, b, c, d (indices into V, already x2)
// with message words at M[x], M[y].
function G(a, b, c, d, x, y) {
  const v = V;
  // a = a + b + m[x]
  let lo = v[a] + v[b];
  let hi = v[a + 1] + v[b + 1] + (lo >= 0x100000000 ? 1 : 0);
  lo >>>= 0;
  let lo2 = lo + M[x];
  hi = hi + M[x + 1] + (lo2 >= 0x100000000 ? 1 : 0);
  v[a] = lo2; v[a + 1] = hi;
  // d = rotr64(d ^ a, 32)
  let xl = v[d] ^ v[a], xh = v[d + 1] ^ v[a + 1];
  v[d] = xh; v[d + 1] = xl;
  // c = c + d
  lo = v[c] + v[d];
  v[c + 1] = v[c + 1] + v[d + 1] + (lo >= 0x100000000 ? 1 : 0);
  v[c] = lo;
  // b = rotr64(b ^ c, 24)
  xl = v[b] ^ v[c]; xh = v[b + 1] ^ v[c + 1];
  v[b] = (xl >>> 24) ^ (xh << 8); v[b + 1] = (xh >>> 24) ^ (xl << 8);
  // a = a + b + m[y]
  lo = v[a] + v[b];
  hi = v[a + 1] + v[b + 1] + (lo >= 0x100000000 ? 1 : 0);
  lo >>>= 0;
  lo2 = lo + M[y];
  hi = hi + M[y + 1] + (lo2 >= 0x100000000 ? 1 : 0);
  v[a] = lo2; v[a + 1] = hi;
  // d = rotr64(d ^ a, 16)
  xl = v[d] ^ v[a]; xh = v[d + 1] ^ v[a + 1];
  v[d] = (xl >>> 16) ^ (xh << 16); v[d + 1] = (xh >>> 16) ^ (xl << 16);
  // c = c + d
  lo = v[c] + v[d];
  v[c + 1] = v[c + 1] + v[d + 1] + (lo >= 0x100000000 ? 1 : 0);
  v[c] = lo;
  // b = rotr64(b ^ c, 63) = rotl64(b ^ c, 1)
  xl = v[b] ^ v[c]; xh = v[b + 1] ^ v[c + 1];
  v[b] = (xl << 1) ^ (xh >>> 31); v[b + 1] = (xh << 1) ^ (xl >>> 31);
}

// Compress one 128-byte block buf[off..off+128) into state h; t = bytes so
// far (including this block; < 2^53), last = final block.
function compress(h, buf, off, t, last) {
  for (let i = 0; i < 16; i++) { V[i] = h[i]; V[i + 16] = IV[i]; }
  V[24] ^= t >>> 0;
  V[25] ^= Math.floor(t / 0x100000000) >>> 0;
  if (last) { V[28] = ~V[28]; V[29] = ~V[29]; }
  for (let i = 0; i < 32; i++) {
    const p = off + 4 * i;
    M[i] = buf[p] | (buf[p + 1] << 8) | (buf[p + 2] << 16) | (buf[p + 3] << 24);
  }
  for (let r = 0; r < 12; r++) {
    const s = r * 16;
    G(0, 8, 16, 24, SIGMA[s + 0], SIGMA[s + 1]);
    G(2, 10, 18, 26, SIGMA[s + 2], SIGMA[s + 3]);
    G(4, 12, 20, 28, SIGMA[s + 4], SIGMA[s + 5]);
    G(6, 14, 22, 30, SIGMA[s + 6], SIGMA[s + 7]);
    G(0, 10, 20, 30, SIGMA[s + 8], SIGMA[s + 9]);
    G(2, 12, 22, 24, SIGMA[s + 10], SIGMA[s + 11]);
    G(4, 14, 16, 26, SIGMA[s + 12], SIGMA[s + 13]);
    G(6, 8, 18, 28, SIGMA[s + 14], SIGMA[s + 15]);
  }
  for (let i = 0; i < 16; i++) h[i] = h[i] ^ V[i] ^ V[i + 16];
}

const ZERO_BLOCK = new Uint8Array(128);

/**
 * BLAKE2b of `bytes` (Uint8Array, or an ArrayBuffer view) with an output of
 * `outlen` bytes (1..64) and an optional key (Uint8Array, 0..64 bytes).
 */
export function blake2b(bytes, outlen = 64, key) {
  if (!(bytes instanceof Uint8Array)) {
    if (ArrayBuffer.isView(bytes)) bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    else if (bytes instanceof ArrayBuffer) bytes = new Uint8Array(bytes);
    else throw new TypeError('blake2b: input must be a Uint8Array');
  }
  if (!Number.isInteger(outlen) || outlen < 1 || outlen > 64) throw new RangeError('blake2b: outlen must be 1..64');
  const keylen = key ? key.length : 0;
  if (keylen > 64) throw new RangeError('blake2b: key must be at most 64 bytes');
  const h = new Uint32Array(16);
  for (let i = 0; i < 16; i++) h[i] = IV[i];
  h[0] ^= 0x01010000 ^ (keylen << 8) ^ outlen;

  let t = 0;
  if (keylen) {
    const kb = new Uint8Array(128);
    kb.set(key);
    t = 128;
    if (bytes.length === 0) {
      compress(h, kb, 0, t, true);
      return output(h, outlen);
    }
    compress(h, kb, 0, t, false);
  }
  const n = bytes.length;
  // All full blocks except the last (the last block, even a full one, is
  // compressed with the final flag).
  let off = 0;
  while (n - off > 128) {
    t += 128;
    compress(h, bytes, off, t, false);
    off += 128;
  }
  if (n === 0 && keylen === 0) {
    compress(h, ZERO_BLOCK, 0, 0, true);
  } else {
    const rest = n - off;
    const last = new Uint8Array(128);
    last.set(bytes.subarray(off, n));
    t += rest;
    compress(h, last, 0, t, true);
  }
  return output(h, outlen);
}

function output(h, outlen) {
  const out = new Uint8Array(outlen);
  for (let i = 0; i < outlen; i++) out[i] = h[i >> 2] >>> (8 * (i & 3));
  return out;
}

// ---- the movex checksum -------------------------------------------------

const DIGEST_LEN = 16;
const enc = new TextEncoder();
const TAG_N = 0x6e, TAG_F = 0x66, TAG_T = 0x74, TAG_D = 0x64, TAG_S = 0x73, TAG_A = 0x61, TAG_O = 0x6f;

function tagged(tag, payload) {
  const b = new Uint8Array(1 + payload.length);
  b[0] = tag;
  b.set(payload, 1);
  return blake2b(b, DIGEST_LEN);
}

const D_NULL = blake2b(Uint8Array.of(TAG_N), DIGEST_LEN);
const D_FALSE = blake2b(Uint8Array.of(TAG_F), DIGEST_LEN);
const D_TRUE = blake2b(Uint8Array.of(TAG_T), DIGEST_LEN);

function digestString(s) { return tagged(TAG_S, enc.encode(s)); }

function D(value) {
  if (value === null) return D_NULL;
  switch (typeof value) {
    case 'boolean':
      return value ? D_TRUE : D_FALSE;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`checksum: ${value} is not a JSON number`);
      // Number.prototype.toString; String(-0) is already "0".
      return tagged(TAG_D, enc.encode(String(value)));
    case 'string':
      return digestString(value);
    case 'object': {
      if (Array.isArray(value)) {
        const b = new Uint8Array(1 + DIGEST_LEN * value.length);
        b[0] = TAG_A;
        for (let i = 0; i < value.length; i++) b.set(D(value[i]), 1 + DIGEST_LEN * i);
        return blake2b(b, DIGEST_LEN);
      }
      // The default sort compares UTF-16 code units, as the protocol says.
      const keys = Object.keys(value).sort();
      const b = new Uint8Array(1 + 2 * DIGEST_LEN * keys.length);
      b[0] = TAG_O;
      let p = 1;
      for (const k of keys) {
        b.set(digestString(k), p);
        b.set(D(value[k]), p + DIGEST_LEN);
        p += 2 * DIGEST_LEN;
      }
      return blake2b(b, DIGEST_LEN);
    }
    default:
      throw new TypeError(`checksum: a ${typeof value} is not a JSON value`);
  }
}

/** D(value): the 16-byte digest of a JSON value (as JSON.parse returns it). */
export function digest(value) {
  return D(value).slice();
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function toHex(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

/** The checksum of a JSON value: 32 lowercase hex characters. */
export function checksum(value) {
  return toHex(D(value));
}
