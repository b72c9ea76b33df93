// movex.js - the movex browser client library (protocol v1, PROTOCOL.md).
// One dependency-free ES module for browsers and Node >= 18.
//
//   import { connect } from './movex.js';
//   const conn = connect('wss://host/ws', { WebSocket, storage, client, token });
//   const room = await conn.join('todo:a', { create: { items: [] } });
//   room.subscribe((state) => render(state));
//   await room.patch([{ op: 'add', path: '/items/-', value: 'milk' }]); // resolves at the durable ack
//   await conn.close({ flush: true });
//
// API (types and docs in movex.d.ts):
//   connect(url, options) -> Connection: join(room, {create, reducer, predict}),
//     room(id), flush(), close({flush}), status, client, limits,
//     on('status' | 'error' | 'welcome', fn) -> off()
//   Room: state, confirmedState, seq, checksum, pendingCount, status,
//     presence.{set(v), state, others},
//     subscribe(fn) -> unsubscribe, dispatch(action, {strict, dep: bool | n | [n]}), patch(ops, opts),
//     flush(), leave({flush}), on('change' | 'reject' | 'resync' | 'presence' | 'error', fn)
//   building blocks: applyPatch, validatePatch, pathsOf, pathsOverlap, checksum, cachedChecksum,
//     digest, blake2b, toHex, backoffDelay, randomClientId, memoryStorage,
//     MovexError, PatchError
//
// ---- Design ---------------------------------------------------------------
//
// Layers, bottom up:
//   1. BLAKE2b and the state checksum (PROTOCOL.md "Checksum"; checksum()
//      and digest() are exported for apps and tests), plus a digest
//      cache keyed by object identity (WeakMap). States are immutable, so a
//      subtree's digest never changes; after a patch only the containers
//      along the changed paths are new and get re-digested: verifying a
//      message costs O(changed paths x their fan-out), not O(state).
//   2. JSON Patch (RFC 6902 + `inc`), applied immutably with structural
//      sharing: containers on a changed path are shallow-copied (once per
//      patch: copies made by this patch are mutated in place), everything else
//      is shared. Atomic for free: the input document is never touched. Same
//      results and error codes as the server's patch.c (shape of the whole
//      patch checked first; `test` on a missing path is test_failed).
//   3. Room: the optimistic state machine for one room.
//   4. Connection: one WebSocket, hello/welcome, request ids, liveness pings,
//      reconnect with exponential backoff and full jitter, flush/close.
//
// Room model. A room keeps
//   confirmed = { state, seq, checksum }   the last state reconciled with the
//                                          server (its checksum verified);
//   pending   = [ action, ... ]            this client's actions not yet folded
//                                          into `confirmed`, ascending n;
//   state     = confirmed.state with every pending action applied on top
//               (an action that fails to apply locally is kept, skipped).
// Server messages for a room arrive in seq order on one connection. A `fwd`
// or our own `ack` whose seq is confirmed.seq + 1 is applied to `confirmed`
// (effects when present, else the patch payload), its `prev` and resulting
// checksum verified; then pending actions are re-applied on top (rebase).
// A mismatch or a seq gap sends `sync` with `since` = confirmed (the last
// reconciled point); until the reply, fwds are ignored (the reply covers
// them) and acks only mark their action as acked. The reply (`actions` or
// `snapshot`) is applied as one batch; the view is recomputed and published
// once per incoming message, so the app never sees a half-applied state.
//
// Invariants:
//   - confirmed.checksum is always the server's checksum of confirmed.state at
//     confirmed.seq (verified locally, except right after a snapshot whose own
//     checksum we fail to reproduce - reported as an error event).
//   - States handed to the app are never mutated (optionally deep-frozen).
//   - n is strictly increasing per (client, room); the counter and every
//     unacked action are written to storage before the action is sent, so a
//     reload, crash or reconnect resends them with the SAME n (the server
//     answers an already decided n from its exactly-once memory). Actions are
//     always (re)sent in ascending n. Other storage writes (removing acked or
//     rejected actions) are coalesced: losing one only means a resend that
//     the server answers from memory.
//   - An action the server explicitly did not decide (`unavailable`: n not
//     used up) is retried after a backoff, holding later actions back; if a
//     higher n was decided meanwhile, it and the actions after it get fresh
//     n (above every decided n), keeping their order and dep < n.
//   - `dep` lists the unsettled actions of this client in the room whose
//     JSON Pointers (what the patch reads or writes) overlap the action's
//     own (one a prefix of the other), leaving out those implied by another
//     (of a run of actions on one path, only the latest); an action that is
//     not a patch overlaps everything (omitted when none, or when the app dispatched
//     with {dep: false}: an independent action). A reject removes the action
//     and, transitively, every pending action depending on it (the server
//     rejects those with after_reject too); unrelated pending actions stay.
//   - After a (re)subscribe, `next_n` tells which n the server has decided: an
//     unacked action with n < next_n that the catch-up did not confirm is "in
//     doubt" - it is left out of the view (the server state already holds it
//     if it was applied) and resent to learn its outcome (duplicate ack or
//     the original reject).
//   - An action is settled (its promise resolved or rejected) exactly once;
//     `flush()` resolves when every dispatched action is settled.
//   - A client id is generated once and persisted. In browsers with Web
//     Locks, each tab holds a lock on the id it uses, so two tabs never share
//     an id (they would share n counters); a tab that finds every stored id
//     locked takes a new one, and a later tab adopts (and resends the pending
//     actions of) an id whose tab is gone. An id the app passes (`client`)
//     is locked the same way: while another tab (or connection) of the
//     origin holds it, the connection fails with client_in_use (option
//     clientLock "fail", the default) or waits, in status "waiting", until
//     the lock is free ("wait").

// ---- BLAKE2b (RFC 7693) -------------------------------------------------
//
// Tuned for speed without BigInt: 64-bit words are (low, high) pairs of
// int32 halves in an Int32Array, every sum is truncated with |0 and carries
// come from unsigned comparisons, so V8 stays on its int32 fast paths (no
// doubles stored into typed arrays); G keeps its four words in locals; and
// unkeyed hashing reuses scratch buffers, allocating only the output.

// Initialisation vector, as (low, high) pairs.
const IV = new Int32Array([
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

// Scratch space shared by all calls (JS is single-threaded per realm, and
// nothing here re-enters blake2b).
const V = new Int32Array(32);
const M = new Int32Array(32);
const H = new Int32Array(16);
const BLOCK = new Uint8Array(128);

// The mixing function G on words a, b, c, d (indices into V, already x2)
// with message words M[x], M[y].
function G(a, b, c, d, x, y) {
  const v = V;
  let al = v[a], ah = v[a + 1], bl = v[b], bh = v[b + 1];
  let cl = v[c], ch = v[c + 1], dl = v[d], dh = v[d + 1];
  let l, xl, xh;
  // a = a + b + m[x]
  l = (al + bl) | 0; ah = (ah + bh + ((l >>> 0) < (al >>> 0) ? 1 : 0)) | 0; al = l;
  l = (al + M[x]) | 0; ah = (ah + M[x + 1] + ((l >>> 0) < (al >>> 0) ? 1 : 0)) | 0; al = l;
  // d = rotr64(d ^ a, 32)
  xl = dl ^ al; dl = dh ^ ah; dh = xl;
  // c = c + d
  l = (cl + dl) | 0; ch = (ch + dh + ((l >>> 0) < (cl >>> 0) ? 1 : 0)) | 0; cl = l;
  // b = rotr64(b ^ c, 24)
  xl = bl ^ cl; xh = bh ^ ch;
  bl = (xl >>> 24) | (xh << 8); bh = (xh >>> 24) | (xl << 8);
  // a = a + b + m[y]
  l = (al + bl) | 0; ah = (ah + bh + ((l >>> 0) < (al >>> 0) ? 1 : 0)) | 0; al = l;
  l = (al + M[y]) | 0; ah = (ah + M[y + 1] + ((l >>> 0) < (al >>> 0) ? 1 : 0)) | 0; al = l;
  // d = rotr64(d ^ a, 16)
  xl = dl ^ al; xh = dh ^ ah;
  dl = (xl >>> 16) | (xh << 16); dh = (xh >>> 16) | (xl << 16);
  // c = c + d
  l = (cl + dl) | 0; ch = (ch + dh + ((l >>> 0) < (cl >>> 0) ? 1 : 0)) | 0; cl = l;
  // b = rotr64(b ^ c, 63) = rotl64(b ^ c, 1)
  xl = bl ^ cl; xh = bh ^ ch;
  bl = (xl << 1) | (xh >>> 31); bh = (xh << 1) | (xl >>> 31);
  v[a] = al; v[a + 1] = ah; v[b] = bl; v[b + 1] = bh;
  v[c] = cl; v[c + 1] = ch; v[d] = dl; v[d + 1] = dh;
}

// Compress one 128-byte block buf[off..off+128) into state h; t = bytes so
// far (including this block; < 2^53), last = final block.
function compress(h, buf, off, t, last) {
  for (let i = 0; i < 16; i++) { V[i] = h[i]; V[i + 16] = IV[i]; }
  V[24] ^= t | 0;
  V[25] ^= Math.floor(t / 0x100000000) | 0;
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
  return hash(bytes, bytes.length, outlen, key, keylen);
}

// BLAKE2b of bytes[0..n) (arguments already checked).
function hash(bytes, n, outlen, key, keylen = 0) {
  const h = H;
  for (let i = 0; i < 16; i++) h[i] = IV[i];
  h[0] ^= 0x01010000 ^ (keylen << 8) ^ outlen;
  let t = 0;
  if (keylen) {
    BLOCK.fill(0);
    BLOCK.set(key);
    t = 128;
    compress(h, BLOCK, 0, t, n === 0);
    if (n === 0) return output(h, outlen);
  }
  // All full blocks except the last (the last block, even a full one, is
  // compressed with the final flag).
  let off = 0;
  while (n - off > 128) {
    t += 128;
    compress(h, bytes, off, t, false);
    off += 128;
  }
  if (n > 0 || keylen === 0) {
    const rest = n - off;
    BLOCK.fill(0, rest);
    for (let i = 0; i < rest; i++) BLOCK[i] = bytes[off + i];
    t += rest;
    compress(h, BLOCK, 0, t, true);
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

// Scratch for tag + UTF-8 text, grown on demand.
let TEXT = new Uint8Array(256);

// D of a scalar: BLAKE2b-128 of the tag byte followed by text as UTF-8.
function tagged(tag, text) {
  if (TEXT.length < 1 + 3 * text.length) TEXT = new Uint8Array(1 + 3 * text.length);
  TEXT[0] = tag;
  const { written } = enc.encodeInto(text, TEXT.subarray(1));
  return hash(TEXT, 1 + written, DIGEST_LEN);
}

const D_NULL = blake2b(Uint8Array.of(TAG_N), DIGEST_LEN);
const D_FALSE = blake2b(Uint8Array.of(TAG_F), DIGEST_LEN);
const D_TRUE = blake2b(Uint8Array.of(TAG_T), DIGEST_LEN);

function digestString(s) { return tagged(TAG_S, s); }

function D(value) {
  if (value === null) return D_NULL;
  switch (typeof value) {
    case 'boolean':
      return value ? D_TRUE : D_FALSE;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`checksum: ${value} is not a JSON number`);
      // Number.prototype.toString; String(-0) is already "0".
      return tagged(TAG_D, String(value));
    case 'string':
      return digestString(value);
    case 'object': {
      if (Array.isArray(value)) {
        const b = new Uint8Array(1 + DIGEST_LEN * value.length);
        b[0] = TAG_A;
        for (let i = 0; i < value.length; i++) b.set(D(value[i]), 1 + DIGEST_LEN * i);
        return hash(b, b.length, DIGEST_LEN);
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
      return hash(b, b.length, DIGEST_LEN);
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

// ---- cached digests of immutable states -------------------------------------

// Digest of every container seen, by identity. Only for values the library
// owns and never mutates (room states); the exported checksum() does not
// cache, since callers may mutate their own values.
const containerDigests = new WeakMap();
// Digests of primitives (keys, strings, numbers), bounded.
const primDigests = new Map();
const PRIM_CACHE_MAX = 50000;

function primDigest(tag, key, text) {
  let d = primDigests.get(key);
  if (d === undefined) {
    d = tagged(tag, text);
    if (primDigests.size >= PRIM_CACHE_MAX) primDigests.clear();
    primDigests.set(key, d);
  }
  return d;
}

function cachedD(value) {
  if (value === null) return D_NULL;
  switch (typeof value) {
    case 'boolean':
      return value ? D_TRUE : D_FALSE;
    case 'number': {
      if (!Number.isFinite(value)) throw new TypeError(`checksum: ${value} is not a JSON number`);
      const s = String(value);
      return primDigest(TAG_D, `d${s}`, s);
    }
    case 'string':
      return value.length > 256 ? digestString(value) : primDigest(TAG_S, `s${value}`, value);
    case 'object': {
      let d = containerDigests.get(value);
      if (d) return d;
      if (Array.isArray(value)) {
        const b = new Uint8Array(1 + DIGEST_LEN * value.length);
        b[0] = TAG_A;
        for (let i = 0; i < value.length; i++) b.set(cachedD(value[i]), 1 + DIGEST_LEN * i);
        d = hash(b, b.length, DIGEST_LEN);
      } else {
        const keys = Object.keys(value).sort();
        const b = new Uint8Array(1 + 2 * DIGEST_LEN * keys.length);
        b[0] = TAG_O;
        let p = 1;
        for (const k of keys) {
          b.set(k.length > 256 ? digestString(k) : primDigest(TAG_S, `s${k}`, k), p);
          b.set(cachedD(value[k]), p + DIGEST_LEN);
          p += 2 * DIGEST_LEN;
        }
        d = hash(b, b.length, DIGEST_LEN);
      }
      containerDigests.set(value, d);
      return d;
    }
    default:
      throw new TypeError(`checksum: a ${typeof value} is not a JSON value`);
  }
}

/**
 * The checksum of a value that is never mutated afterwards (such as a room
 * state): the digest of every object and array is cached by identity, so
 * after a patch only the new containers on the changed paths are hashed.
 */
export function cachedChecksum(state) {
  return toHex(cachedD(state));
}
const stateChecksum = cachedChecksum;

// ---- JSON Patch (RFC 6902 + inc), immutable ------------------------------

/** A patch that cannot apply: code is "bad_patch" or "test_failed". */
export class PatchError extends Error {
  constructor(code, message, opIndex = 0) {
    super(message);
    this.name = 'PatchError';
    this.code = code;
    this.opIndex = opIndex;
  }
}

const OPS = {
  add: { value: true, from: false },
  remove: { value: false, from: false },
  replace: { value: true, from: false },
  move: { value: false, from: true },
  copy: { value: false, from: true },
  test: { value: true, from: false },
  inc: { value: true, from: false },
};

const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isContainer = (v) => v !== null && typeof v === 'object';

function pointerOk(p) {
  if (p.length && p[0] !== '/') return false;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '~' && p[i + 1] !== '0' && p[i + 1] !== '1') return false;
  }
  return true;
}

function checkPointer(op, name, i) {
  const p = op[name];
  if (typeof p !== 'string' || p.includes('\0')) {
    throw new PatchError('bad_patch', `op ${i} (${op.op}): "${name}" is missing or not a string`, i);
  }
  if (!pointerOk(p)) throw new PatchError('bad_patch', `op ${i} (${op.op}): ${name} "${p}" is not a JSON pointer`, i);
}

/**
 * Check the shape of a whole patch (op names, member types, pointer syntax)
 * without a document; throws PatchError("bad_patch"). Array index syntax is
 * judged while applying (it depends on the document).
 */
export function validatePatch(ops) {
  if (!Array.isArray(ops)) throw new PatchError('bad_patch', 'patch is not an array');
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    if (!isObj(op)) throw new PatchError('bad_patch', `op ${i}: operation is not an object`, i);
    if (typeof op.op !== 'string') throw new PatchError('bad_patch', `op ${i}: "op" is missing or not a string`, i);
    const def = hasOwn(OPS, op.op) ? OPS[op.op] : null;
    if (!def) throw new PatchError('bad_patch', `op ${i} (${op.op}): unknown op`, i);
    checkPointer(op, 'path', i);
    if (def.from) checkPointer(op, 'from', i);
    if (def.value && (!hasOwn(op, 'value') || op.value === undefined)) {
      throw new PatchError('bad_patch', `op ${i} (${op.op}): "value" is missing`, i);
    }
    if (op.op === 'inc' && typeof op.value !== 'number') {
      throw new PatchError('bad_patch', `op ${i} (inc): "value" must be a number`, i);
    }
  }
}

function tokens(path) {
  if (path === '') return [];
  const parts = path.slice(1).split('/');
  for (let i = 0; i < parts.length; i++) {
    if (parts[i].includes('~')) parts[i] = parts[i].replace(/~[01]/g, (m) => (m === '~0' ? '~' : '/'));
  }
  return parts;
}

// An array index: decimal digits without leading zeros; "-" is END.
const IX_BAD = -1, IX_END = -2;
function parseIndex(t) {
  if (t === '-') return IX_END;
  if (!/^(0|[1-9][0-9]*)$/.test(t)) return IX_BAD;
  return Number(t);
}

// Own-property write that also works for the key "__proto__".
function setKey(o, k, v) {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
  else o[k] = v;
}

function deepEqual(a, b) {
  if (a === b) return true;
  if (!isContainer(a) || !isContainer(b)) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!hasOwn(b, k) || !deepEqual(a[k], b[k])) return false;
  return true;
}

// One patch application. Containers created by this application (`owned`)
// may be mutated in place; everything else is shared and never touched.
class Patcher {
  constructor(doc) {
    this.root = doc;
    this.owned = new WeakSet();
    this.i = 0;
    this.name = '';
    this.missing = 'bad_patch'; // code for "does not resolve"
  }

  fail(code, what, path, tail) {
    const q = path.length > 48 ? `${path.slice(0, 48)}...` : path;
    throw new PatchError(code, `op ${this.i} (${this.name}): ${what} "${q}"${tail}`, this.i);
  }

  // Descend one token from cur (read only).
  child(cur, t, label, path) {
    if (Array.isArray(cur)) {
      const i = parseIndex(t);
      if (i < 0) this.fail('bad_patch', label, path, ': invalid array index');
      if (i >= cur.length) this.fail(this.missing, label, path, ': parent does not exist');
      return cur[i];
    }
    if (isObj(cur) && hasOwn(cur, t)) return cur[t];
    return this.fail(this.missing, label, path, ': parent does not exist');
  }

  // The container that holds (or would hold) the target; null = the root.
  parentOf(toks, label, path) {
    if (!toks.length) return null;
    let cur = this.root;
    for (let k = 0; k < toks.length - 1; k++) cur = this.child(cur, toks[k], label, path);
    return cur;
  }

  // The existing value at toks (parent from parentOf).
  target(parent, toks, label, path) {
    if (!toks.length) return this.root;
    const t = toks[toks.length - 1];
    if (Array.isArray(parent)) {
      const i = parseIndex(t);
      if (i < 0) this.fail('bad_patch', label, path, ': invalid array index');
      if (i >= parent.length) this.fail(this.missing, label, path, ' does not exist');
      return parent[i];
    }
    if (isObj(parent) && hasOwn(parent, t)) return parent[t];
    return this.fail(this.missing, label, path, ' does not exist');
  }

  // The container at toks[0..depth), made writable: every container from the
  // root down to it is copied unless this application created it.
  writable(toks, depth) {
    let node = this.root;
    if (!this.owned.has(node)) {
      node = Array.isArray(node) ? node.slice() : { ...node };
      this.owned.add(node);
      this.root = node;
    }
    for (let k = 0; k < depth; k++) {
      const key = Array.isArray(node) ? Number(toks[k]) : toks[k];
      let c = node[key];
      if (!this.owned.has(c)) {
        c = Array.isArray(c) ? c.slice() : { ...c };
        this.owned.add(c);
        if (Array.isArray(node)) node[key] = c; else setKey(node, key, c);
      }
      node = c;
    }
    return node;
  }

  // Place v at toks with `add` semantics (parent already resolved).
  put(parent, toks, v, path) {
    if (!toks.length) { this.root = v; return; }
    const t = toks[toks.length - 1];
    if (Array.isArray(parent)) {
      let i = parseIndex(t);
      if (i === IX_BAD) this.fail('bad_patch', 'path', path, ': invalid array index');
      if (i === IX_END) i = parent.length;
      if (i > parent.length) this.fail('bad_patch', 'path', path, ': index out of range');
      this.writable(toks, toks.length - 1).splice(i, 0, v);
      return;
    }
    if (isObj(parent)) {
      setKey(this.writable(toks, toks.length - 1), t, v);
      return;
    }
    this.fail('bad_patch', 'path', path, ': parent is not an object or array');
  }

  // Replace the existing value at toks (target already checked).
  swap(toks, v) {
    if (!toks.length) { this.root = v; return; }
    const box = this.writable(toks, toks.length - 1);
    const t = toks[toks.length - 1];
    if (Array.isArray(box)) box[Number(t)] = v; else setKey(box, t, v);
  }

  // Remove the existing value at toks (target already checked).
  detach(toks) {
    const box = this.writable(toks, toks.length - 1);
    const t = toks[toks.length - 1];
    if (Array.isArray(box)) box.splice(Number(t), 1); else delete box[t];
  }

  apply(op) {
    const path = op.path;
    const toks = tokens(path);
    this.missing = 'bad_patch';
    switch (op.op) {
      case 'add': {
        const parent = this.parentOf(toks, 'path', path);
        this.put(parent, toks, op.value, path);
        break;
      }
      case 'remove': {
        if (!toks.length) this.fail('bad_patch', 'path', path, ': cannot remove the whole document');
        const parent = this.parentOf(toks, 'path', path);
        this.target(parent, toks, 'path', path);
        this.detach(toks);
        break;
      }
      case 'replace': {
        const parent = this.parentOf(toks, 'path', path);
        this.target(parent, toks, 'path', path);
        this.swap(toks, op.value);
        break;
      }
      case 'move': {
        const from = op.from;
        const ftoks = tokens(from);
        const v = this.target(this.parentOf(ftoks, 'from', from), ftoks, 'from', from);
        if (from === path) break; // moving a value onto itself changes nothing
        if (path.startsWith(from) && path[from.length] === '/') {
          this.fail('bad_patch', 'path', path, ': cannot move a value into its own child');
        }
        this.detach(ftoks);
        this.put(this.parentOf(toks, 'path', path), toks, v, path);
        break;
      }
      case 'copy': {
        const from = op.from;
        const ftoks = tokens(from);
        const v = this.target(this.parentOf(ftoks, 'from', from), ftoks, 'from', from);
        this.put(this.parentOf(toks, 'path', path), toks, v, path);
        // v is now reachable twice; containers inside it that this
        // application created must not be mutated in place any more.
        if (isContainer(v)) this.owned = new WeakSet();
        break;
      }
      case 'test': {
        this.missing = 'test_failed';
        const have = this.target(this.parentOf(toks, 'path', path), toks, 'path', path);
        if (!deepEqual(have, op.value)) this.fail('test_failed', 'path', path, ': value differs');
        break;
      }
      case 'inc': {
        const parent = this.parentOf(toks, 'path', path);
        const t = toks[toks.length - 1];
        if (toks.length && isObj(parent) && !hasOwn(parent, t)) {
          this.put(parent, toks, op.value === 0 ? 0 : op.value, path);
          break;
        }
        const cur = this.target(parent, toks, 'path', path);
        if (typeof cur !== 'number') this.fail('bad_patch', 'path', path, ' is not a number');
        const r = cur + op.value;
        if (!Number.isFinite(r)) this.fail('bad_patch', 'path', path, ': result is not a finite number');
        this.swap(toks, r === 0 ? 0 : r);
        break;
      }
      default:
        throw new PatchError('bad_patch', `op ${this.i}: unknown op`, this.i); // validated before
    }
  }
}

/** Deep-freeze v, stopping at subtrees that are frozen already. */
function deepFreeze(v) {
  if (!isContainer(v) || Object.isFrozen(v)) return v;
  Object.freeze(v);
  for (const k of Object.keys(v)) deepFreeze(v[k]);
  return v;
}

/**
 * Apply a JSON Patch (RFC 6902 plus `inc`) to doc and return the new
 * document. doc is never modified: containers on changed paths are copied,
 * the rest is shared. Throws PatchError (code "bad_patch" or "test_failed")
 * and then nothing was applied. Option freeze: deep-freeze the new nodes.
 */
export function applyPatch(doc, ops, { freeze = false } = {}) {
  validatePatch(ops);
  const p = new Patcher(doc);
  for (let i = 0; i < ops.length; i++) {
    p.i = i;
    p.name = ops[i].op;
    p.apply(ops[i]);
  }
  return freeze ? deepFreeze(p.root) : p.root;
}

// ---- small utilities ---------------------------------------------------------

/** An error from the server or the library: code is a protocol error code. */
export class MovexError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = 'MovexError';
    this.code = code;
    Object.assign(this, extra);
  }
}

class Emitter {
  constructor() { this._handlers = new Map(); }
  /** Listen to an event; returns a function that removes the listener. */
  on(event, fn) {
    let set = this._handlers.get(event);
    if (!set) this._handlers.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) { this._handlers.get(event)?.delete(fn); }
  _emit(event, ...args) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) callSafely(fn, args);
  }
}

// A listener that throws must not break protocol processing: report it
// asynchronously, as an event-loop error, and go on.
function callSafely(fn, args) {
  try {
    fn(...args);
  } catch (e) {
    queueMicrotask(() => { throw e; });
  }
}

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  promise.catch(() => {}); // settled through events too: never an unhandled rejection
  return { promise, resolve, reject };
}

/** Storage kept in memory (the default when localStorage is unavailable). */
export function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => { m.set(k, String(v)); },
    removeItem: (k) => { m.delete(k); },
  };
}

function defaultStorage() {
  try {
    const ls = globalThis.localStorage;
    if (ls && typeof ls.getItem === 'function') {
      const probe = '__movex_probe__';
      ls.setItem(probe, '1');
      ls.removeItem(probe);
      return ls;
    }
  } catch { /* disabled, sandboxed or full: fall back to memory */ }
  return memoryStorage();
}

/**
 * Reconnect delay for attempt k (0-based): exponential backoff with full
 * jitter, uniform in [0, min(cap, base * 2^k)).
 */
export function backoffDelay(attempt, { base = 250, cap = 10000 } = {}, random = Math.random) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 52));
  return Math.floor(random() * ceiling);
}

// Web Crypto: global in browsers and Node >= 19; Node 18 has it in
// node:crypto (loaded on demand by ensureCrypto, never in a browser).
let webCrypto = globalThis.crypto;
async function ensureCrypto() {
  if (webCrypto && webCrypto.getRandomValues) return;
  const name = 'node:crypto'; // (not a literal: bundlers leave it alone)
  webCrypto = (await import(name)).webcrypto;
}

/** A new random client id ("c-" and 32 hex digits, crypto.getRandomValues). */
export function randomClientId() {
  const b = new Uint8Array(16);
  webCrypto.getRandomValues(b);
  return `c-${toHex(b)}`;
}

// The `exp` claim of a compact JWS, in ms since the epoch, or null.
function tokenExpiry(token) {
  if (typeof token !== 'string') return null;
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const text = typeof atob === 'function' ? atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)) : null;
    const exp = text && JSON.parse(text).exp;
    return Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

const ROOM_RE = /^[A-Za-z0-9_.:-]{1,200}$/;
const CLIENT_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;
const utf8Length = (s) => enc.encode(s).length;
const noop = () => {};
// Codes after which an action was not decided and may be sent again.
const TRANSIENT = new Set(['unavailable', 'no_memory', 'rate_limited']);

// ---- dependencies ------------------------------------------------------------

const DEPS_MAX = 16; // entries of a "dep" array (docs/PROTOCOL.md)

/**
 * The JSON Pointers an action reads or writes: `path` of every patch
 * operation, and `from` for move and copy. An array index (digits or "-")
 * stands for its whole array: inserting or removing shifts every later
 * index, so /a/0 and /a/3 are related. An action that is not a JSON Patch
 * (a reducer's) may touch anything: [""] (the root overlaps every path).
 */
export function pathsOf(action) {
  if (!action || action.type !== 'patch' || !Array.isArray(action.payload)) return [''];
  const out = new Set();
  for (const op of action.payload) {
    for (const p of [op && op.path, op && (op.op === 'move' || op.op === 'copy') ? op.from : undefined]) {
      if (typeof p !== 'string') continue;
      if (p !== '' && p[0] !== '/') return ['']; // malformed: assume the worst
      const toks = p === '' ? [] : p.slice(1).split('/');
      const cut = toks.findIndex((t) => t === '-' || /^[0-9]+$/.test(t));
      out.add(cut < 0 ? p : toks.length && cut === 0 ? '' : `/${toks.slice(0, cut).join('/')}`);
    }
  }
  return out.size ? [...out] : [''];
}

/** 1 when one JSON Pointer is a prefix of the other (token-wise). */
export function pathsOverlap(a, b) {
  if (a.length > b.length) [a, b] = [b, a];
  return b === a || (b.startsWith(a) && b[a.length] === '/');
}

// The dispatch option dep: true, false, an n or a list of n's (each a
// positive integer below the new action's n). A TypeError when malformed.
function depOption(dep, n) {
  if (typeof dep === 'boolean') return dep;
  const list = Array.isArray(dep) ? dep : [dep];
  if (list.length > DEPS_MAX || !list.every((d) => Number.isSafeInteger(d) && d > 0 && d < n)) {
    return new TypeError(`the dep option is true, false, or up to ${DEPS_MAX} earlier n's of this room (each below ${n})`);
  }
  return [...new Set(list)].sort((a, b) => a - b);
}

// ---- Room ------------------------------------------------------------------

/**
 * One joined room: confirmed state + pending actions = the optimistic view.
 * Created by Connection.join(); see the top of this file for the model.
 */
class Room extends Emitter {
  constructor(conn, name, opts) {
    super();
    this.conn = conn;
    this.name = name;
    this._create = opts.create;
    this._needCreate = opts.create !== undefined;
    this._reducer = opts.reducer;
    // predict[type](state, action) -> ops: optimistic guesses for a room
    // whose reducer is not json (the server's effects replace them)
    this._predict = opts.predict || conn._predict;
    this._freeze = opts.freeze ?? conn._freeze;
    this._phase = 'idle'; // idle | creating | subscribing | live | syncing | left
    this._confirmed = null; // { state, seq, checksum }
    this._view = undefined;
    this._subs = new Set();
    this._ready = deferred();
    this._joined = false;
    this._highestDecided = 0; // highest n the server decided (that we know of)
    this._inFlight = new Set(); // n sent on this connection, not answered yet
    this._resendTimer = null; // one retry timer per room ...
    this._laterFns = []; // ... running these
    this._resendAttempt = 0;
    this._syncReason = null;
    this._key = `${conn._prefix}${conn.client}:${name}`;
    this._pending = [];
    this._nextN = 1;
    this._dirty = false; // storage record out of date
    this._saveTimer = null;
    this._sendQueued = false;
    this._changeQueued = false; // a "change" check is queued (microtask)
    this._lastChange = null; // what the last "change" event reported
    // presence (ephemeral, never stored): ours and the other connections'
    this._presenceValue = undefined; // what this connection shows (undefined: nothing)
    this._presenceVersion = 0; // bumped by each presence.set()
    this._presenceSent = 0; // the version the server has (0: none on this connection)
    this._presenceInFlight = false; // one request at a time; later values wait
    this._presenceWaiters = []; // { version, d }
    this._others = new Map(); // conn id -> { client, conn, state }
    const room = this;
    /** This connection's presence in the room and the others'. */
    this.presence = {
      /** Show v (any JSON value; null clears) to the room's other
       * connections; resolves when the server took it (or a later value). */
      set: (v) => room._setPresence(v),
      /** The other connections' presence: [{client, conn, state}]. */
      get others() { return [...room._others.values()]; },
      /** What this connection shows (null: nothing). */
      get state() { return room._presenceValue === undefined ? null : room._presenceValue; },
    };
    this._load();
  }

  /** The current state: confirmed + pending actions (never mutated in place). */
  get state() { return this._view; }
  /** The last confirmed seq (-1 before the first snapshot). */
  get seq() { return this._confirmed ? this._confirmed.seq : -1; }
  /** The checksum of the confirmed state. */
  get checksum() { return this._confirmed ? this._confirmed.checksum : null; }
  /** The confirmed state (what the server has acknowledged). */
  get confirmedState() { return this._confirmed ? this._confirmed.state : undefined; }
  /** Number of unsettled (not yet acked or rejected) actions. */
  get pendingCount() { return this._pending.filter((p) => !p.settled).length; }
  /** "idle" | "creating" | "subscribing" | "live" | "syncing" | "left" */
  get status() { return this._phase; }

  /** Call fn(state) after every change of state; returns an unsubscribe function.
   * (For everything else a UI shows - pendingCount, seq, status - listen to
   * the "change" event.) */
  subscribe(fn) {
    this._subs.add(fn);
    if (this._view !== undefined) callSafely(fn, [this._view]); // the current state first
    return () => this._subs.delete(fn);
  }

  /** Send a JSON Patch; resolves at the durable ack, rejects on reject. */
  patch(ops, opts) {
    return this.dispatch({ type: 'patch', payload: ops }, opts);
  }

  /**
   * Dispatch an action ({type, payload}). It shows in `state` at once
   * (optimistically), is queued in storage, and is sent (and resent after
   * reconnects) until the server decides it. Resolves with {n, seq,
   * checksum, duplicate} at the ack; rejects with a MovexError on reject.
   * opts.strict: compare-and-set, rejected with "stale" unless nothing else
   * was applied to the room since the state this action was built on.
   * opts.dep (default true): derive `dep` from the paths the patch reads
   * and writes - the pending actions whose paths overlap its own (see
   * pathsOf; of a chain of such actions, the latest) - so that the server rejects this one
   * (after_reject) when an action it builds on is rejected, and only then.
   * false: an independent action. An n or an array of n's: exactly those
   * (earlier n's of this client in this room).
   */
  dispatch(action, { strict = false, dep = true } = {}) {
    if (this._phase === 'left') return Promise.reject(new MovexError('left', 'the room was left'));
    if (!isObj(action) || typeof action.type !== 'string') {
      return Promise.reject(new TypeError('an action is an object with a string "type"'));
    }
    const given = depOption(dep, this._nextN);
    if (given instanceof TypeError) return Promise.reject(given);
    let copy;
    try {
      copy = JSON.parse(JSON.stringify(action));
    } catch (e) {
      return Promise.reject(new TypeError(`the action is not JSON: ${e.message}`));
    }
    const p = this._newPending(copy, strict, given);
    const tooBig = this._tooLarge(p);
    if (tooBig) {
      this._nextN--; // never sent, never stored: n is reused
      return Promise.reject(tooBig);
    }
    this._pending.push(p);
    this._save();
    this._recompute();
    // Send in a microtask: a burst of dispatches costs one storage write
    // (written before anything is sent) and then one message each.
    if (!this._sendQueued) {
      this._sendQueued = true;
      queueMicrotask(() => {
        this._sendQueued = false;
        this._sendPending();
      });
    }
    return p.d.promise;
  }

  /** Resolves when every action dispatched to this room so far is settled. */
  flush() {
    return this.conn._whenSettled(() => this._pending.every((p) => p.settled));
  }

  /**
   * Unsubscribe and forget the room. Unacked actions stay in storage and are
   * resent the next time this client joins the room (pass {flush: true} to
   * wait for them first).
   */
  async leave({ flush = false } = {}) {
    if (flush) await this.flush();
    if (this._phase === 'left') return;
    if (this.conn._isOpen() && this._phase !== 'idle') {
      this.conn._request({ type: 'unsubscribe', room: this.name }, noop);
    }
    this._shutdown(new MovexError('left', 'the room was left before the action was acknowledged; it stays queued in storage'));
  }

  // ---- storage ----

  _load() {
    let rec = null;
    try {
      rec = JSON.parse(this.conn._storage.getItem(this._key) || 'null');
    } catch (e) {
      this.conn._emit('error', new MovexError('storage', `cannot read ${this._key}: ${e.message}`));
    }
    if (!rec) return;
    this._nextN = Number.isInteger(rec.next) && rec.next > 0 ? rec.next : 1;
    for (const s of rec.pending || []) {
      // (records written before dep arrays hold one integer)
      const p = this._makePending(s.n, [].concat(s.dep ?? []), s.base, s.strict, s.action);
      p.undecided = !!s.u;
      this._pending.push(p);
      if (p.n >= this._nextN) this._nextN = p.n + 1;
    }
  }

  // Mark the record dirty; it is written before the next send (so an action
  // is in storage before it is on the wire) or within 50 ms. A write lost
  // to a crash in between only keeps already-decided actions, whose resend
  // the server answers from its memory.
  _save() {
    this._dirty = true;
    if (!this._saveTimer) this._saveTimer = setTimeout(() => this._flushSave(), 50);
  }

  _flushSave() {
    clearTimeout(this._saveTimer);
    this._saveTimer = null;
    if (!this._dirty) return;
    this._dirty = false;
    const rec = {
      next: this._nextN,
      pending: this._pending.filter((p) => !p.settled).map((p) => ({
        n: p.n, ...(p.deps.length ? { dep: p.deps } : {}), base: p.base, ...(p.strict ? { strict: true } : {}),
        ...(p.undecided ? { u: true } : {}), action: p.action,
      })),
    };
    try {
      this.conn._storage.setItem(this._key, JSON.stringify(rec));
    } catch (e) {
      this.conn._emit('error', new MovexError('storage', `cannot write ${this._key}: ${e.message}`));
    }
  }

  // ---- pending actions ----

  _makePending(n, deps, base, strict, action) {
    return {
      n, deps, base: base ?? 0, strict: !!strict, action,
      paths: pathsOf(action), // JSON Pointers it reads or writes (dependencies)
      d: deferred(),
      sent: false, // sent on the current connection
      settled: false, // promise resolved or rejected
      ackSeq: undefined, // acked at this seq, not yet folded into confirmed
      inDoubt: false, // decided by the server, outcome unknown (after resubscribe)
      undecided: false, // the server said it did not decide it (n not used up)
      input: undefined, after: undefined, failed: false, // view cache
    };
  }

  // given: true (derive deps from paths), false (none) or a list of n's.
  _newPending(action, strict, given) {
    let ahead = 0;
    for (const q of this._pending) if (!q.settled && !q.inDoubt) ahead++;
    const base = (this._confirmed ? this._confirmed.seq : 0) + ahead;
    const p = this._makePending(this._nextN++, [], base, strict, action);
    if (given === true) p.deps = this._derivedDeps(p.paths);
    else if (given) p.deps = given;
    return p;
  }

  // Every unsettled action with a path overlapping one of `paths`, less
  // those another of them depends on (the server's cascade is transitive:
  // of a run of actions on one path only the latest remains). Past
  // DEPS_MAX the latest are kept.
  _derivedDeps(paths) {
    const live = this._pending.filter((q) => !q.settled);
    const deps = live.filter((q) => q.paths.some((x) => paths.some((y) => pathsOverlap(x, y)))).map((q) => q.n);
    const byN = new Map(live.map((q) => [q.n, q]));
    const implied = new Set();
    const visit = (n) => {
      for (const d of byN.get(n)?.deps || []) if (!implied.has(d)) { implied.add(d); visit(d); }
    };
    for (const n of deps) visit(n);
    return deps.filter((n) => !implied.has(n)).sort((a, b) => a - b).slice(-DEPS_MAX);
  }

  _message(p) {
    const m = { type: 'action', room: this.name, n: p.n, base: p.base, action: p.action };
    // one n as an integer (the form every v1 server knows), several as an array
    if (p.deps.length) m.dep = p.deps.length === 1 ? p.deps[0] : p.deps;
    if (p.strict) m.strict = true;
    return m;
  }

  // A MovexError when the action message would pass the server's limit.
  _tooLarge(p) {
    const max = this.conn.limits?.max_message_bytes;
    if (!max) return null;
    const bytes = utf8Length(JSON.stringify({ ...this._message(p), id: Number.MAX_SAFE_INTEGER }));
    if (bytes <= max) return null;
    return new MovexError('too_large', `the action message is ${bytes} bytes, over the server's max_message_bytes ${max}`, { n: p.n, action: p.action, room: this.name });
  }

  // Local effects of a pending action on state s: ops, or null when unknown.
  _opsFor(p, s) {
    if (p.action.type === 'patch') return p.action.payload;
    if (this._reducer) return this._reducer(s, p.action);
    const guess = this._predict && Object.hasOwn(this._predict, p.action.type) ? this._predict[p.action.type] : null;
    if (typeof guess === 'function') return guess(s, p.action);
    return null;
  }

  _sendPending() {
    if (!(this._phase === 'live' || this._phase === 'syncing') || !this.conn._isOpen()) return;
    if (this._resendTimer) return; // waiting to retry: keep the order, send nothing yet
    this._flushSave(); // (renumbering below saves again, and flushes before sending)
    for (let i = 0; i < this._pending.length; i++) {
      const p = this._pending[i];
      if (p.sent || p.settled) continue;
      // The server answers an n that is not above its highest decided one
      // from memory and never applies it. Only an action the server did not
      // decide (`unavailable`) can fall behind like this: renumber it and
      // everything after it (keeping the order and dep < n).
      if (!p.inDoubt && (p.n <= this._highestDecided || Math.max(0, ...this._inFlight) > p.n)) {
        this._renumberFrom(i);
        this._flushSave();
      }
      const tooBig = this._tooLarge(p);
      if (tooBig) {
        this._drop(p, tooBig.code, tooBig.message);
        i = -1; // the list changed; start over (sent ones are skipped)
        continue;
      }
      p.sent = true;
      if (p.undecided) { p.undecided = false; this._save(); }
      const n = p.n;
      this._inFlight.add(n);
      this.conn._request(this._message(p), (m) => {
        this._inFlight.delete(n);
        this._onActionReply(p, m);
      });
    }
  }

  _renumberFrom(i) {
    const map = new Map();
    this._nextN = Math.max(this._nextN, this._highestDecided + 1, ...[...this._inFlight].map((n) => n + 1));
    for (let k = i; k < this._pending.length; k++) {
      const q = this._pending[k];
      if (q.settled || q.sent) continue;
      const n = this._nextN++;
      map.set(q.n, n);
      q.n = n;
      q.deps = q.deps.map((d) => map.get(d) ?? d);
    }
    this._save();
  }

  // Run fn after a backoff delay. One timer per room runs every fn queued
  // meanwhile; a connection drop cancels them (reconnecting redoes it all).
  _later(fn) {
    this._laterFns.push(fn);
    if (this._resendTimer) return;
    const delay = backoffDelay(this._resendAttempt++, this.conn._backoff, this.conn._random);
    this._resendTimer = setTimeout(() => {
      this._resendTimer = null;
      const fns = this._laterFns.splice(0);
      if (this._phase === 'left' || !this.conn._isOpen()) return;
      for (const f of fns) f();
    }, delay);
  }

  _cancelLater() {
    clearTimeout(this._resendTimer);
    this._resendTimer = null;
    this._laterFns = [];
  }

  // Settle p as acked.
  _resolve(p, m) {
    if (p.settled) return;
    p.settled = true;
    p.d.resolve({ n: p.n, seq: m.seq, checksum: m.checksum, duplicate: !!m.duplicate });
    this._notify();
    this.conn._checkSettled();
  }

  // Remove p and every pending action depending on it (transitively),
  // settling each as rejected; tell the app.
  _drop(p, code, message) {
    // too_old on a resend means "outcome forgotten", not "rejected": the
    // actions built on it have outcomes of their own.
    const gone = new Set(code === 'too_old' ? [] : [p.n]);
    const dropped = [];
    for (const q of this._pending) {
      if (q === p) { dropped.push([q, code, message]); continue; }
      const failed = q.settled ? undefined : q.deps.find((d) => gone.has(d));
      if (failed !== undefined) {
        gone.add(q.n);
        dropped.push([q, 'after_reject', `depends on n=${failed}, which was rejected`]);
      }
    }
    this._pending = this._pending.filter((q) => !dropped.some(([x]) => x === q));
    this._save();
    this._recompute(); // listeners of "reject" see the state without them
    for (const [q, c, msg] of dropped) {
      if (q.settled) continue;
      q.settled = true;
      const err = new MovexError(c, msg, { n: q.n, action: q.action, room: this.name });
      q.d.reject(err);
      this._emit('reject', err);
    }
    this._notify();
    this.conn._checkSettled();
  }

  // ---- connection events ----

  _onConnected() {
    if (this._phase === 'left') return;
    if (this._needCreate) {
      this._setPhase('creating');
      this.conn._request({ type: 'create', room: this.name, state: this._create }, (m) => {
        if (m.type === 'created' || (m.type === 'error' && m.code === 'room_exists')) {
          this._needCreate = false;
          this._subscribe();
        } else {
          this._fail(m, 'create');
        }
      });
    } else {
      this._subscribe();
    }
  }

  _subscribe() {
    this._setPhase('subscribing');
    const msg = { type: 'subscribe', room: this.name };
    if (this._confirmed) msg.since = { seq: this._confirmed.seq, checksum: this._confirmed.checksum };
    this.conn._request(msg, (m) => {
      if (m.type === 'snapshot' || m.type === 'actions') {
        this._takeOthers(m.presence);
        this._onCatchUp(m, true);
      } else {
        this._fail(m, 'subscribe');
      }
    });
  }

  _onDisconnected() {
    if (this._phase === 'left') return;
    this._setPhase('idle');
    this._inFlight.clear();
    for (const p of this._pending) p.sent = false;
    this._cancelLater();
    // the server forgets a connection's presence with it: ours is shown
    // again after the next subscribe, the others' list comes with it
    this._presenceInFlight = false;
    if (this._presenceValue === undefined) this._settlePresence(this._presenceVersion, null);
    this._presenceSent = this._presenceValue === undefined ? this._presenceVersion : 0;
    this._takeOthers([]);
  }

  // ---- presence ----

  _setPresence(v) {
    if (this._phase === 'left') return Promise.reject(new MovexError('left', 'the room was left'));
    let copy = null;
    if (v !== null && v !== undefined) {
      try {
        copy = JSON.parse(JSON.stringify(v));
      } catch (e) {
        return Promise.reject(new TypeError(`the presence is not JSON: ${e.message}`));
      }
    }
    this._presenceValue = copy === null ? undefined : copy;
    const version = ++this._presenceVersion;
    const d = deferred();
    this._presenceWaiters.push({ version, d });
    this._sendPresence();
    return d.promise;
  }

  // One presence request in flight; a value set meanwhile goes next (only
  // the latest: the server would coalesce the rest anyway).
  _sendPresence() {
    if (this._presenceInFlight || this._presenceSent === this._presenceVersion) return;
    if (!(this._phase === 'live' || this._phase === 'syncing') || !this.conn._isOpen()) return;
    const version = this._presenceVersion;
    this._presenceInFlight = true;
    const state = this._presenceValue === undefined ? null : this._presenceValue;
    this.conn._request({ type: 'presence', room: this.name, state }, (m) => {
      this._presenceInFlight = false;
      this._presenceSent = version; // (a refused value is not sent again)
      if (m.type === 'presence_ok') {
        this._settlePresence(version, null);
      } else {
        const err = new MovexError(m.code || 'bad_reply', m.message || `unexpected ${m.type}`, { room: this.name });
        if (!this._settlePresence(version, err)) this._emitError(err);
      }
      this._sendPresence();
    });
  }

  // Settle presence.set() promises up to version; returns how many.
  _settlePresence(version, err) {
    const done = this._presenceWaiters.filter((w) => w.version <= version);
    this._presenceWaiters = this._presenceWaiters.filter((w) => w.version > version);
    for (const w of done) if (err) w.d.reject(err); else w.d.resolve();
    return done.length;
  }

  // The others' presence as listed by a subscribe reply (or [] when gone).
  _takeOthers(list) {
    if (!Array.isArray(list)) return;
    if (!list.length && !this._others.size) return;
    this._others = new Map(list.filter(isObj).map((p) => [p.conn, { client: p.client, conn: p.conn, state: p.state }]));
    this._emit('presence', this.presence.others);
  }

  _onPresence(m) {
    if (this._phase === 'left') return;
    if (m.left) this._others.delete(m.conn);
    else this._others.set(m.conn, { client: m.client, conn: m.conn, state: m.state });
    this._emit('presence', this.presence.others);
  }

  // An error reply to create/subscribe/sync/get (stage), or a room-level
  // error the server pushed (stage "push": the room was deleted).
  _fail(m, stage) {
    const err = new MovexError(m.code || 'bad_reply', m.message || `unexpected ${m.type}`, { room: this.name });
    if (!this._joined) {
      this._shutdown(err, false); // the first join failed: not joined
      return;
    }
    this._emitError(err);
    if (m.code === 'no_such_room') {
      // The room was deleted: nothing pending can ever apply.
      for (const p of [...this._pending]) if (!p.settled) this._drop(p, 'no_such_room', 'the room no longer exists');
      this._shutdown(err);
      return;
    }
    if (this._phase === 'left') return;
    if (stage === 'sync') {
      this._setPhase('live');
      const reason = this._syncReason;
      this._later(() => this._sync(reason));
    } else {
      this._setPhase('idle'); // (re)subscribe again later
      this._later(() => { if (this._phase === 'idle') this._onConnected(); });
    }
  }

  _shutdown(err, keepStorage = true) {
    this._setPhase('left');
    this._settlePresence(Infinity, err);
    this._others.clear();
    this._cancelLater();
    this._flushSave();
    this.conn._rooms.delete(this.name);
    if (!keepStorage && !this._pending.length) {
      try { this.conn._storage.removeItem(this._key); } catch { /* ignore */ }
    }
    for (const p of this._pending) {
      if (!p.settled) { p.settled = true; p.d.reject(err); }
    }
    if (!this._joined) this._ready.reject(err);
    this._notify();
    this.conn._checkSettled();
  }

  _onRoomError(m) {
    this._fail(m, 'push');
  }

  // ---- server messages ----

  // Ask the server for everything after our confirmed point.
  _sync(reason) {
    if (this._phase !== 'live') return;
    this._setPhase('syncing');
    this._syncReason = reason;
    const c = this._confirmed;
    this.conn._request({ type: 'sync', room: this.name, since: { seq: c.seq, checksum: c.checksum } }, (m) => {
      if (m.type === 'snapshot' || m.type === 'actions') this._onCatchUp(m, false);
      else this._fail(m, 'sync');
    });
  }

  // Fall back to a full snapshot (an `actions` reply we cannot apply);
  // isSubscribe: it stands in for the reply to a (re)subscribe.
  _get(reason, isSubscribe) {
    this._setPhase(isSubscribe ? 'subscribing' : 'syncing');
    this._syncReason = reason;
    this.conn._request({ type: 'get', room: this.name }, (m) => {
      if (m.type === 'snapshot') this._onCatchUp(m, isSubscribe);
      else this._fail(m, isSubscribe ? 'subscribe' : 'sync');
    });
  }

  // A snapshot or actions reply to subscribe, sync or get.
  _onCatchUp(m, isSubscribe) {
    if (this._phase === 'left') return;
    const hadState = !!this._confirmed;
    const confirmedByEntries = new Set();
    if (m.type === 'snapshot') {
      let state = m.state;
      if (this._freeze) deepFreeze(state);
      const mine = stateChecksum(state);
      if (mine !== m.checksum) {
        this._emitError(new MovexError('checksum_mismatch',
          `snapshot of ${this.name} at seq ${m.seq}: the server says ${m.checksum}, this client computes ${mine}`, { room: this.name }));
      }
      this._confirmed = { state, seq: m.seq, checksum: m.checksum };
    } else {
      const c = this._confirmed;
      const entries = Array.isArray(m.actions) ? m.actions : [];
      if (!c || m.from !== c.seq) return this._get('bad_catch_up', isSubscribe);
      let state = c.state, seq = c.seq, sum = c.checksum;
      for (const e of entries) {
        const ops = e.effects !== undefined ? e.effects : e.action && e.action.type === 'patch' ? e.action.payload : null;
        let next;
        try {
          if (ops === null || e.seq !== seq + 1) throw new Error('cannot apply');
          next = applyPatch(state, ops, { freeze: this._freeze });
        } catch {
          return this._get('apply_failed', isSubscribe);
        }
        if (stateChecksum(next) !== e.checksum) return this._get('checksum_mismatch', isSubscribe);
        state = next; seq = e.seq; sum = e.checksum;
        if (e.client === this.conn.client) confirmedByEntries.add(e.n);
      }
      this._confirmed = { state, seq, checksum: sum };
      // settle our own actions the catch-up carried
      for (const p of [...this._pending]) {
        if (confirmedByEntries.has(p.n)) {
          this._resolve(p, entries.find((e) => e.client === this.conn.client && e.n === p.n));
        }
      }
      this._pending = this._pending.filter((p) => !confirmedByEntries.has(p.n));
    }
    const head = this._confirmed.seq;
    this._pending = this._pending.filter((p) => !(p.ackSeq !== undefined && p.ackSeq <= head));
    if (Number.isInteger(m.next_n)) {
      this._highestDecided = Math.max(this._highestDecided, m.next_n - 1);
      if (isSubscribe) {
        // (an action the server said it did not decide is not in doubt: it
        // is renumbered above next_n when sent)
        for (const p of this._pending) if (!p.settled && !p.undecided && p.n < m.next_n) p.inDoubt = true;
      }
      if (m.next_n > this._nextN) this._nextN = m.next_n;
    }
    this._save();
    this._setPhase('live');
    this._resendAttempt = 0;
    this._recompute();
    if (hadState) {
      const reason = isSubscribe ? 'reconnect' : this._syncReason;
      this._emit('resync', { reason, kind: m.type, seq: head, ...(m.type === 'actions' ? { from: m.from, to: m.to } : {}) });
    }
    this._syncReason = null;
    if (!this._joined) {
      this._joined = true;
      this._ready.resolve(this);
    }
    this._sendPending();
    this._sendPresence();
    this.conn._checkSettled();
  }

  _emitError(err) {
    this._emit('error', err);
    this.conn._emit('error', err);
  }

  _findPending(n) {
    return this._pending.find((p) => p.n === n);
  }

  _onFwd(m) {
    if (this._phase !== 'live') return; // subscribing/syncing: the reply covers it
    const c = this._confirmed;
    if (m.seq <= c.seq) return;
    if (m.seq !== c.seq + 1) return this._sync('gap');
    if (m.prev !== undefined && m.prev !== c.checksum) return this._sync('checksum_mismatch');
    const ops = m.effects !== undefined ? m.effects : m.action && m.action.type === 'patch' ? m.action.payload : null;
    let next;
    try {
      if (ops === null) throw new Error('no effects');
      next = applyPatch(c.state, ops, { freeze: this._freeze });
    } catch {
      return this._sync('apply_failed');
    }
    if (stateChecksum(next) !== m.checksum) return this._sync('checksum_mismatch');
    this._confirmed = { state: next, seq: m.seq, checksum: m.checksum };
    if (m.client === this.conn.client) {
      // our own action, applied through another connection with our id
      const p = this._findPending(m.n);
      if (p) {
        this._resolve(p, m);
        this._pending = this._pending.filter((q) => q !== p);
        this._save();
      }
    }
    this._recompute();
  }

  _onActionReply(p, m) {
    if (this._phase === 'left') return;
    if (m.type === 'ack') {
      this._highestDecided = Math.max(this._highestDecided, m.n);
      if (!this._pending.includes(p)) return; // confirmed already (catch-up, fwd)
      this._resendAttempt = 0;
      p.inDoubt = false;
      this._resolve(p, m);
      p.ackSeq = m.seq;
      this._save();
      const c = this._confirmed;
      if (m.seq <= c.seq) {
        this._pending = this._pending.filter((q) => q !== p); // already in confirmed
      } else if (this._phase === 'live' && m.seq === c.seq + 1) {
        this._confirmOwn(p, m);
      } else if (this._phase === 'live') {
        this._sync('gap');
      } // else syncing: the reply folds it in
      this._recompute();
      return;
    }
    if (m.type === 'reject') {
      if (TRANSIENT.has(m.code)) return this._retryLater(p, m);
      this._highestDecided = Math.max(this._highestDecided, m.n);
      if (!this._pending.includes(p)) return;
      if (!m.duplicate && this._phase === 'live' && m.seq === this._confirmed.seq && m.checksum !== this._confirmed.checksum) {
        this._sync('checksum_mismatch');
      }
      this._drop(p, m.code, m.message);
      this._recompute();
      return;
    }
    // an `error` reply: the action was not decided (n not used up)
    if (!this._pending.includes(p)) return;
    if (TRANSIENT.has(m.code)) return this._retryLater(p, m);
    if (m.code === 'unauthorized') {
      p.sent = false; // the token expired: the server closes (4001); resent after reconnecting
      return;
    }
    if (m.code === 'not_subscribed') {
      // the server lost our subscription: subscribe again, then resend
      p.sent = false;
      this._emitError(new MovexError(m.code, m.message, { room: this.name }));
      if (this._phase === 'live' || this._phase === 'syncing') {
        for (const q of this._pending) q.sent = false;
        this._subscribe();
      }
      return;
    }
    if (m.code === 'no_such_room') return this._fail(m, 'push');
    this._drop(p, m.code || 'bad_reply', m.message);
    this._recompute();
  }

  _retryLater(p, m) {
    this._emitError(new MovexError(m.code, m.message, { room: this.name, n: p.n }));
    p.sent = false;
    p.undecided = true;
    this._save();
    this._later(() => this._sendPending());
  }

  // Fold our own acked action p (at seq confirmed.seq + 1) into confirmed.
  _confirmOwn(p, m) {
    const c = this._confirmed;
    if (m.prev !== undefined && m.prev !== c.checksum) return this._sync('checksum_mismatch');
    let next;
    if (Array.isArray(m.effects)) {
      // the server's own effects (a reducer other than json): they replace
      // whatever was predicted
      try {
        next = applyPatch(c.state, m.effects, { freeze: this._freeze });
      } catch {
        return this._sync('apply_failed');
      }
    } else if (p.input === c.state && !p.failed) {
      next = p.after; // the view already computed exactly this
    } else {
      try {
        const ops = this._opsFor(p, c.state);
        if (ops == null) throw new Error('unknown effects');
        next = applyPatch(c.state, ops, { freeze: this._freeze });
      } catch {
        return this._sync('apply_failed');
      }
    }
    // (an ack without effects and a wrong prediction: the checksum catches
    // it and sync repairs it)
    if (stateChecksum(next) !== m.checksum) return this._sync('checksum_mismatch');
    this._confirmed = { state: next, seq: m.seq, checksum: m.checksum };
    this._pending = this._pending.filter((q) => q !== p);
  }

  // ---- the view ----

  // state = confirmed + pending (in doubt and already-confirmed ones skipped);
  // each action's result is cached by the state it was applied to, so an
  // unchanged prefix costs nothing. Publishes when the state changed.
  _recompute() {
    this._notify();
    if (!this._confirmed) return;
    let s = this._confirmed.state;
    const head = this._confirmed.seq;
    for (const p of this._pending) {
      if (p.inDoubt || (p.ackSeq !== undefined && p.ackSeq <= head)) continue;
      if (p.input !== s) {
        p.input = s;
        try {
          const ops = this._opsFor(p, s);
          if (ops == null) throw new Error('no local effects');
          p.after = applyPatch(s, ops, { freeze: this._freeze });
          p.failed = false;
        } catch {
          p.after = s;
          p.failed = true;
        }
      }
      s = p.after;
    }
    if (s !== this._view) {
      this._view = s;
      for (const fn of [...this._subs]) callSafely(fn, [s]);
    }
  }

  _setPhase(phase) {
    this._phase = phase;
    this._notify();
  }

  // Something the app can read may have changed: in a microtask (so once
  // per message, dispatch burst or timer), emit "change" when the view, the
  // confirmed point (seq, checksum), pendingCount or status differs from
  // what the last "change" reported. Subscribers of subscribe() hear about
  // the view at once; "change" is for everything a UI shows besides it.
  _notify() {
    if (this._changeQueued) return;
    this._changeQueued = true;
    queueMicrotask(() => {
      this._changeQueued = false;
      const last = this._lastChange;
      const now = { view: this._view, confirmed: this._confirmed, pending: this.pendingCount, phase: this._phase };
      if (last && last.view === now.view && last.confirmed === now.confirmed &&
          last.pending === now.pending && last.phase === now.phase) return;
      this._lastChange = now;
      this._emit('change', {
        state: this._view, confirmedState: this.confirmedState, seq: this.seq, checksum: this.checksum,
        pendingCount: now.pending, status: now.phase,
      });
    });
  }
}

// ---- Connection ------------------------------------------------------------

/**
 * A connection to movexd: one WebSocket, reconnected for ever (until close)
 * with exponential backoff and full jitter.
 * Events: "status" (status), "error" (MovexError), "welcome" (welcome message).
 */
class Connection extends Emitter {
  constructor(url, opts = {}) {
    super();
    this.url = url;
    this._WS = opts.WebSocket || globalThis.WebSocket;
    if (!this._WS) throw new TypeError('no WebSocket implementation: pass connect(url, { WebSocket })');
    if (opts.client !== undefined && !CLIENT_RE.test(opts.client)) {
      throw new TypeError('client must be 1..128 characters of A-Z a-z 0-9 _ . : @ -');
    }
    this._clientLock = opts.clientLock ?? 'fail';
    if (!['fail', 'wait', false].includes(this._clientLock)) {
      throw new TypeError('clientLock must be "fail", "wait" or false');
    }
    this._storage = opts.storage || defaultStorage();
    this._prefix = opts.storagePrefix ?? 'movex:';
    this._token = opts.token;
    this._backoff = { base: 250, cap: 10000, ...(opts.backoff || {}) };
    this._random = opts.random || Math.random;
    this._predict = opts.predict;
    this._ping = opts.ping === false ? null : { interval: 15000, timeout: 10000, ...(opts.ping || {}) };
    this._connectTimeout = opts.connectTimeout ?? 10000;
    this._protocols = opts.protocols || ['movex.v1'];
    this._freeze = !!opts.freeze;
    this._rooms = new Map();
    this._reqs = new Map();
    this._nextId = 1;
    this._ws = null;
    this._welcomed = false;
    this._attempt = 0;
    this._closed = false;
    this._timers = { retry: null, ping: null, deadline: null, refresh: null };
    this._settledWaiters = [];
    this._releaseLock = null;
    this._lockAbort = null; // aborts a "wait" for the client id's lock
    this._failure = null; // why the connection stopped for good (client_in_use, unauthorized)
    this._authRefusals = 0; // refused tokens since the last welcome
    this._nextToken = undefined; // a fresh token fetched ahead, for the next hello
    // The browser's online/offline events (or options.network in tests):
    // offline drops the socket at once, online reconnects at once.
    this._network = opts.network !== undefined ? opts.network
      : typeof globalThis.addEventListener === 'function' && globalThis.navigator && 'onLine' in globalThis.navigator
        ? { target: globalThis, onLine: () => globalThis.navigator.onLine !== false } : null;
    this._onOffline = () => this._wentOffline();
    this._onOnline = () => this._cameOnline();
    if (this._network) {
      this._network.target.addEventListener('offline', this._onOffline);
      this._network.target.addEventListener('online', this._onOnline);
    }
    /** The server's limits for this connection (from welcome), or null. */
    this.limits = null;
    /** The server's id for the current connection (welcome "conn"), or null. */
    this.connId = null;
    /** "waiting" | "connecting" | "open" | "reconnecting" | "offline" | "closed" */
    this.status = 'connecting';
    /** This client's id (resolved before the first hello). */
    this.client = null;
    this._clientGiven = !!opts.client; // an id the app chose (see _onWelcome)
    this._ready = this._resolveClient(opts.client).then(() => {
      if (!this._closed) this._open();
      else if (this._releaseLock) this._releaseLock(); // closed meanwhile
    }, (e) => {
      // no client id to use (client_in_use): this connection never starts
      if (this._closed) return;
      this._failure = e;
      this._closed = true;
      this._emit('error', e);
      this._setStatus('closed');
      throw e;
    });
    this._ready.catch(noop); // (join() reports it)
  }

  /** Join a room: create it first when opts.create is given (an existing
   * room is fine), then subscribe. Resolves with the Room once its state is
   * known. opts.reducer(state, action) -> ops predicts non-patch actions. */
  async join(name, opts = {}) {
    if (typeof name !== 'string' || !ROOM_RE.test(name) || name[0] === ':') {
      throw new MovexError('bad_room', `invalid room id ${JSON.stringify(name)}`);
    }
    if (this._closed) throw this._failure || new MovexError('closed', 'the connection is closed');
    await this._ready;
    if (this._closed) throw this._failure || new MovexError('closed', 'the connection is closed');
    let room = this._rooms.get(name);
    if (!room) {
      room = new Room(this, name, opts);
      this._rooms.set(name, room);
      if (this._isOpen()) room._onConnected();
    }
    return room._ready.promise;
  }

  /** The joined room with this name, or undefined. */
  room(name) { return this._rooms.get(name); }

  /** Resolves when every action dispatched on this connection is settled
   * (acked or rejected); rejects if the connection is closed first. */
  flush() {
    return this._whenSettled(() => [...this._rooms.values()].every((r) => r._pending.every((p) => p.settled)));
  }

  /** Close for good. With {flush: true}, first wait for every ack
   * (optionally at most `timeout` ms). Unacked actions stay in storage. */
  async close({ flush = false, timeout } = {}) {
    if (flush && !this._closed) {
      const f = this.flush();
      if (timeout === undefined) await f;
      else await Promise.race([f, new Promise((res) => setTimeout(res, timeout))]);
    }
    if (this._closed) return;
    this._stop(new MovexError('closed', 'the connection was closed before the action was acknowledged; it stays queued in storage'),
      new MovexError('closed', 'the connection was closed'));
  }

  // Stop for good: rooms are shut down with err (joins not done yet reject
  // with it; unacked actions stay in storage), flush() waiters get flushErr.
  _stop(err, flushErr = err) {
    this._closed = true;
    if (this._lockAbort) this._lockAbort.abort(); // stop waiting for the client id
    if (this._network) {
      this._network.target.removeEventListener('offline', this._onOffline);
      this._network.target.removeEventListener('online', this._onOnline);
    }
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      try { ws.close(1000, 'bye'); } catch { /* not open yet */ }
    }
    this._reqs.clear();
    for (const r of [...this._rooms.values()]) r._shutdown(err);
    for (const w of this._settledWaiters.splice(0)) w.reject(flushErr);
    if (this._releaseLock) this._releaseLock();
    this._setStatus('closed');
  }

  // The server refused the token (an error before welcome, or close 4001
  // when it expired). A static token would be refused again: stop and
  // report (joins reject with it). A token function is asked again (after
  // the backoff delay), once: refused twice in a row, it stops the same way.
  _unauthorized(err) {
    if (this._closed) return;
    this._emit('error', err);
    if (typeof this._token !== 'function' || this._authRefusals++ >= 1) {
      this._failure = err;
      this._stop(err);
      return;
    }
    // after the usual backoff: a token that is accepted at hello but refused
    // right after (a clock far off) must not make a tight reconnect loop
    this._drop(err.message);
  }

  _wentOffline() {
    if (this._closed || this.status === 'waiting') return; // (waiting for a lock, not the network)
    if (this._ws) this._drop('the browser went offline');
    else this._setStatus('offline');
  }

  _cameOnline() {
    if (this._closed || this._isOpen() || this.status === 'waiting') return;
    if (this.status === 'connecting' && !this._ws) return; // resolving the client id
    // a socket opened while offline may be stuck: start afresh, now
    if (this._ws) this._drop('the browser came online', undefined, { now: true });
    else this._scheduleReconnect({ now: true });
  }

  _isOffline() { return !!this._network && !this._network.onLine(); }

  // ---- client id ----

  async _resolveClient(given) {
    if (given) return this._lockGiven(given);
    await ensureCrypto();
    const key = `${this._prefix}clients`;
    let pool = [];
    try {
      pool = JSON.parse(this._storage.getItem(key) || '[]');
      if (!Array.isArray(pool)) pool = [];
    } catch { pool = []; }
    const locks = globalThis.navigator?.locks;
    if (locks && typeof locks.request === 'function') {
      // one id per live tab: take the first id whose lock is free
      for (const id of [...pool, null]) {
        const candidate = id || randomClientId();
        if (await this._tryLock(locks, candidate)) {
          if (!id) this._addToPool(key, candidate);
          this.client = candidate;
          return;
        }
      }
    }
    if (pool.length) { this.client = pool[0]; return; }
    this.client = randomClientId();
    this._addToPool(key, this.client);
  }

  // An id the app chose: hold its lock like a generated one, so two tabs
  // (or two connections) of this origin never use it at once. Taken: fail
  // with client_in_use, or wait for it (status "waiting").
  async _lockGiven(id) {
    this.client = id;
    const locks = globalThis.navigator?.locks;
    if (this._clientLock === false || !locks || typeof locks.request !== 'function') return;
    if (await this._tryLock(locks, id)) return;
    if (this._clientLock === 'fail') {
      throw new MovexError('client_in_use', `client ${id} is in use by another tab or connection of this browser ` +
        `(Web Lock movex-client:${id}); pass clientLock: "wait" to wait for it`);
    }
    if (this._closed) return;
    this._setStatus('waiting');
    const abort = typeof AbortController === 'function' ? new AbortController() : null;
    this._lockAbort = abort;
    try {
      await new Promise((resolve, reject) => {
        locks.request(`movex-client:${id}`, abort ? { signal: abort.signal } : {}, () => {
          resolve();
          return new Promise((release) => { this._releaseLock = release; });
        }).catch(reject);
      });
    } catch (e) {
      if (!this._closed) throw e; // (closed while waiting: the wait was aborted)
    } finally {
      this._lockAbort = null;
    }
    if (!this._closed) this._setStatus('connecting');
  }

  _tryLock(locks, id) {
    return new Promise((resolve, reject) => {
      locks.request(`movex-client:${id}`, { ifAvailable: true }, (lock) => {
        if (!lock) { resolve(false); return undefined; }
        resolve(true);
        // hold the lock until close (or until the page goes away)
        return new Promise((release) => { this._releaseLock = release; });
      }).catch(reject);
    });
  }

  // Read-modify-write right away: another tab may have added its id since.
  _addToPool(key, id) {
    try {
      let pool = [];
      try { pool = JSON.parse(this._storage.getItem(key) || '[]'); } catch { /* rewrite it */ }
      if (!Array.isArray(pool)) pool = [];
      if (!pool.includes(id)) pool.push(id);
      this._storage.setItem(key, JSON.stringify(pool));
    } catch (e) {
      this._emit('error', new MovexError('storage', `cannot write ${key}: ${e.message}`));
    }
  }

  // ---- socket life cycle ----

  _setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this._emit('status', s);
  }

  _isOpen() { return !!this._ws && this._welcomed; }

  _open() {
    this._welcomed = false;
    let ws;
    try {
      ws = new this._WS(this.url, this._protocols);
    } catch (e) {
      this._emit('error', new MovexError('connect_failed', e.message));
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      const ahead = this._nextToken;
      this._nextToken = undefined;
      Promise.resolve(ahead !== undefined ? ahead : typeof this._token === 'function' ? this._token() : this._token).then((token) => {
        if (this._ws !== ws) return;
        this._helloToken = token;
        const hello = { type: 'hello', client: this.client };
        if (token) hello.token = token;
        this._sendRaw(hello);
      }, (e) => {
        this._emit('error', new MovexError('token', `the token function failed: ${e && e.message}`));
        this._drop(`token: ${e && e.message}`);
      });
    };
    ws.onmessage = (ev) => this._onMessage(typeof ev.data === 'string' ? ev.data : String(ev.data));
    ws.onclose = (ev) => this._drop(`closed ${ev && ev.code}`, ev && ev.code);
    ws.onerror = noop; // a close event follows
    this._armDeadline(this._connectTimeout);
  }

  _detach(ws) {
    ws.onopen = noop;
    ws.onmessage = noop;
    ws.onclose = noop;
    ws.onerror = noop;
  }

  // The socket is gone (closed, failed, or silent for too long): forget it
  // and reconnect.
  _drop(reason, code, { now = false } = {}) {
    const ws = this._ws;
    if (!ws) return;
    if (code === 4001 && !this._closed) {
      // the token expired on a live connection (or was refused)
      this._unauthorized(new MovexError('unauthorized', `the server closed the connection: the token was refused or expired (${reason})`, { closeCode: code }));
      return;
    }
    this._ws = null;
    this._welcomed = false;
    this._detach(ws);
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close();
    } catch { /* already closed */ }
    this._clearTimers();
    this._reqs.clear();
    for (const r of this._rooms.values()) r._onDisconnected();
    if (code && code !== 1000 && code !== 1001 && code !== 1005 && code !== 1006) {
      this._emit('error', new MovexError('closed', `the server closed the connection (${reason})`, { closeCode: code }));
    }
    this._scheduleReconnect({ now });
  }

  // now: at once (the browser came online, a fresh token), else after the
  // backoff delay.
  _scheduleReconnect({ now = false } = {}) {
    if (this._closed) return;
    clearTimeout(this._timers.retry);
    this._setStatus(this._isOffline() ? 'offline' : 'reconnecting');
    const delay = now ? 0 : backoffDelay(this._attempt++, this._backoff, this._random);
    this._timers.retry = setTimeout(() => {
      this._timers.retry = null;
      this._open();
    }, delay);
  }

  _clearTimers() {
    for (const k of Object.keys(this._timers)) {
      clearTimeout(this._timers[k]);
      clearInterval(this._timers[k]);
      this._timers[k] = null;
    }
  }

  // Drop the socket unless some message arrives within ms.
  _armDeadline(ms) {
    clearTimeout(this._timers.deadline);
    this._timers.deadline = ms > 0 ? setTimeout(() => this._drop('no answer'), ms) : null;
  }

  _startPing() {
    if (!this._ping) return;
    clearInterval(this._timers.ping);
    this._timers.ping = setInterval(() => {
      if (!this._isOpen()) return;
      if (!this._timers.deadline) this._armDeadline(this._ping.timeout);
      this._request({ type: 'ping' }, noop);
    }, this._ping.interval);
  }

  _sendRaw(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(msg));
      return true;
    } catch {
      this._drop('send failed');
      return false;
    }
  }

  // Send a request with a fresh id; handler(reply) gets the reply with that
  // id (never called when the connection drops first).
  _request(msg, handler) {
    const id = this._nextId++;
    this._reqs.set(id, handler);
    if (!this._sendRaw({ ...msg, id })) this._reqs.delete(id);
  }

  _onMessage(text) {
    if (this._timers.deadline) { clearTimeout(this._timers.deadline); this._timers.deadline = null; }
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      this._emit('error', new MovexError('bad_json', 'the server sent invalid JSON'));
      return;
    }
    if (!isObj(m)) return;
    if (m.type === 'welcome') return this._onWelcome(m);
    if (m.type === 'fwd') {
      this._rooms.get(m.room)?._onFwd(m);
      return;
    }
    if (m.type === 'presence' && m.id === undefined) {
      this._rooms.get(m.room)?._onPresence(m);
      return;
    }
    if (m.id !== undefined && this._reqs.has(m.id)) {
      const handler = this._reqs.get(m.id);
      this._reqs.delete(m.id);
      handler(m);
      return;
    }
    if (m.type === 'error') {
      if (m.room && this._rooms.has(m.room)) {
        this._rooms.get(m.room)._onRoomError(m); // e.g. the room was deleted
        return;
      }
      const err = new MovexError(m.code, m.message);
      if (!this._welcomed && m.code === 'unauthorized') return this._unauthorized(err);
      this._emit('error', err);
      if (!this._welcomed) this._drop(`hello refused: ${m.code}`); // retried with backoff
    }
  }

  _onWelcome(m) {
    if (this._welcomed) return;
    this._welcomed = true;
    this._attempt = 0;
    this._authRefusals = 0;
    this.limits = m.limits || null;
    this.connId = Number.isInteger(m.conn) ? m.conn : null;
    this._scheduleTokenRefresh();
    if (m.client && m.client !== this.client) {
      // The server names the client whenever it has the authority to: the
      // token's subject under auth jwt, a fresh anon-... id for a
      // connection without a token. That is normal, not an error, unless
      // the app chose an id itself and expected to keep it.
      if (this._clientGiven) {
        this._emit('error', new MovexError('client_mismatch',
          `the server named this client ${m.client}, not ${this.client}; pass the token's subject as the client option`));
      }
      this.client = m.client;
    }
    this._startPing();
    this._setStatus('open');
    this._emit('welcome', m);
    for (const r of [...this._rooms.values()]) r._onConnected();
  }

  // A token from a function is fetched again before it expires (at 90% of
  // its remaining lifetime, from its `exp` claim), and the connection is
  // renewed with it at once: the server checks expiry on every request and
  // would close the connection with 4001.
  _scheduleTokenRefresh() {
    clearTimeout(this._timers.refresh);
    this._timers.refresh = null;
    if (typeof this._token !== 'function') return;
    const exp = tokenExpiry(this._helloToken);
    if (exp === null) return;
    const delay = Math.max(1000, Math.floor((exp - Date.now()) * 0.9));
    this._timers.refresh = setTimeout(() => {
      this._timers.refresh = null;
      const ws = this._ws;
      Promise.resolve(this._token()).then((token) => {
        if (this._closed || this._ws !== ws) return; // reconnected meanwhile: that fetched its own
        this._nextToken = token;
        this._drop('renewing the token', undefined, { now: true });
      }, (e) => this._emit('error', new MovexError('token', `the token function failed: ${e && e.message}`)));
    }, Math.min(delay, 2 ** 31 - 1));
  }

  // ---- flush ----

  _whenSettled(done) {
    if (this._closed) return Promise.reject(new MovexError('closed', 'the connection is closed'));
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => this._settledWaiters.push({ done, resolve, reject }));
  }

  _checkSettled() {
    if (!this._settledWaiters.length) return;
    this._settledWaiters = this._settledWaiters.filter((w) => {
      if (!w.done()) return true;
      w.resolve();
      return false;
    });
  }
}

/**
 * Connect to a movexd WebSocket endpoint (ws[s]://host/ws).
 * options: client (id; default: generated once and persisted), clientLock
 * ("fail" (default) | "wait" | false: what to do when another tab or
 * connection of this origin holds the Web Lock of the given client id), token (string,
 * or a function returning one or a promise of one: called for every connect,
 * before the token's exp and after a refusal; a refused static token stops
 * the connection and join() rejects "unauthorized"), network (online/offline
 * events; default window's), WebSocket (implementation; default the global
 * one), storage (getItem/setItem/removeItem; default localStorage when
 * available, else memory), storagePrefix ("movex:"), backoff ({base: 250,
 * cap: 10000} ms), ping ({interval: 15000, timeout: 10000} or false),
 * connectTimeout (10000 ms), freeze (deep-freeze states), random (for tests).
 */
export function connect(url, options = {}) {
  return new Connection(url, options);
}

export { Connection, Room };
