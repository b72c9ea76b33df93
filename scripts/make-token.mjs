#!/usr/bin/env node
// Mints movexd access tokens (compact JWS, HS256 or EdDSA) for development
// and tests, and makes the key files the daemon reads. It is a second,
// independent implementation of the token format that src/jwt.c verifies
// (node:crypto for HMAC-SHA-256 and Ed25519), so a token it prints is also
// a cross-check of the C code. No npm packages; Node >= 18.
//
// Mint a token (printed on stdout):
//   node scripts/make-token.mjs --hs256-secret-file FILE --sub alice \
//        --rooms 'todo:*=read,write,create' --exp-in 3600
//   node scripts/make-token.mjs --ed25519-private-key-file DIR/ed25519-private.pem \
//        --sub bob --rooms 'chat:team-*=read;chat:team-a=read,write'
//
//   --sub ID          the client id (1..128 bytes of A-Z a-z 0-9 _ . : @ -)
//   --rooms SPEC      grants, PATTERN=RIGHT[,RIGHT...]; several separated by
//                     ';' or by repeating --rooms. RIGHT: read|write|create.
//                     PATTERN: a room id where '*' matches any run.
//   --exp-in SECONDS  exp = now + SECONDS (default 3600)
//   --no-exp          no exp claim (the token never expires: careful)
//   --nbf-in SECONDS  nbf = now + SECONDS (may be negative)
//   --now SECONDS     the clock to use, seconds since the epoch (default:
//                     the real clock), for reproducible tokens
//   --claims JSON     extra payload members, merged last (may override any
//                     of the above, e.g. to make deliberately bad tokens)
//
// Key files (never overwritten; created mode 0600 where secret):
//   --gen-secret FILE   64 random base64url characters and a newline. The
//                       daemon (auth_hs256_secret_file) uses the file's
//                       bytes minus one trailing newline as the HMAC key,
//                       as this script does.
//   --gen-ed25519 DIR   DIR/ed25519-private.pem (PKCS#8, for this script)
//                       and DIR/ed25519-public.pem (SPKI, for the daemon's
//                       auth_ed25519_public_key_file)

import { createHmac, createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ID_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;
const PATTERN_RE = /^[A-Za-z0-9_.:*-]{1,200}$/;
const RIGHTS = new Set(['read', 'write', 'create']);

function die(msg) {
  process.stderr.write(`make-token: ${msg}\n`);
  process.exit(2);
}

function usage() {
  const lines = readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(1);
  const end = lines.findIndex((l) => !l.startsWith('//'));
  const text = lines
    .slice(0, end)
    .map((l) => l.replace(/^\/\/ ?/, ''))
    .join('\n');
  process.stdout.write(text + '\n');
  process.exit(0);
}

function parseArgs(argv) {
  const flags = new Set(['--no-exp', '--help', '-h']);
  const opts = { rooms: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (flags.has(a)) {
      opts[a.replace(/^-+/, '')] = true;
      continue;
    }
    if (!a.startsWith('--')) die(`unexpected argument ${JSON.stringify(a)} (try --help)`);
    if (i + 1 >= argv.length) die(`${a} needs a value`);
    const v = argv[++i];
    if (a === '--rooms') opts.rooms.push(v);
    else opts[a.slice(2)] = v;
  }
  return opts;
}

function seconds(name, v) {
  const n = Number(v);
  if (v === undefined || v === '' || !Number.isFinite(n)) die(`${name} must be a number of seconds`);
  return n;
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

// The secret exactly as the daemon reads it: raw bytes, one trailing
// "\n" (or "\r\n") removed, 32..128 bytes.
function readSecret(path) {
  let s = readFileSync(path);
  if (s.length && s[s.length - 1] === 0x0a) {
    s = s.subarray(0, s.length - 1);
    if (s.length && s[s.length - 1] === 0x0d) s = s.subarray(0, s.length - 1);
  }
  if (s.length < 32 || s.length > 128) die(`${path}: HS256 secret must be 32..128 bytes`);
  return s;
}

function parseRooms(specs) {
  const grants = [];
  for (const spec of specs) {
    for (const part of spec.split(';')) {
      if (part.trim() === '') continue;
      const eq = part.lastIndexOf('=');
      if (eq < 0) die(`--rooms ${JSON.stringify(part)}: expected PATTERN=RIGHT[,RIGHT...]`);
      const match = part.slice(0, eq).trim();
      const rights = part
        .slice(eq + 1)
        .split(',')
        .map((r) => r.trim())
        .filter((r) => r !== '');
      if (!PATTERN_RE.test(match))
        die(`--rooms: pattern ${JSON.stringify(match)} must be 1..200 of A-Z a-z 0-9 _ . : - *`);
      for (const r of rights) if (!RIGHTS.has(r)) die(`--rooms: unknown right ${JSON.stringify(r)}`);
      grants.push({ match, rights });
    }
  }
  return grants;
}

function genSecret(file) {
  const secret = randomBytes(48).toString('base64url'); // 64 characters
  writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' });
  process.stdout.write(`${file}\n`);
}

function genEd25519(dir) {
  mkdirSync(dir, { recursive: true });
  const { publicKey, privateKey } = generateKeyPairSync('ed25519', {
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const priv = join(dir, 'ed25519-private.pem');
  const pub = join(dir, 'ed25519-public.pem');
  writeFileSync(priv, privateKey, { mode: 0o600, flag: 'wx' });
  writeFileSync(pub, publicKey, { mode: 0o644, flag: 'wx' });
  process.stdout.write(`${priv}\n${pub}\n`);
}

function mint(opts) {
  const hsFile = opts['hs256-secret-file'];
  const edFile = opts['ed25519-private-key-file'];
  if (!!hsFile === !!edFile) die('give exactly one of --hs256-secret-file, --ed25519-private-key-file');
  if (opts.sub === undefined) die('--sub is required');
  if (!ID_RE.test(opts.sub)) die('--sub must be 1..128 bytes of A-Z a-z 0-9 _ . : @ -');

  const now = opts.now !== undefined ? seconds('--now', opts.now) : Math.floor(Date.now() / 1000);
  const payload = { sub: opts.sub };
  if (!opts['no-exp'])
    payload.exp = now + (opts['exp-in'] !== undefined ? seconds('--exp-in', opts['exp-in']) : 3600);
  else if (opts['exp-in'] !== undefined) die('--exp-in and --no-exp conflict');
  if (opts['nbf-in'] !== undefined) payload.nbf = now + seconds('--nbf-in', opts['nbf-in']);
  const grants = parseRooms(opts.rooms);
  if (grants.length) payload.movex = { rooms: grants };
  if (opts.claims !== undefined) {
    let extra;
    try {
      extra = JSON.parse(opts.claims);
    } catch (e) {
      die(`--claims: ${e.message}`);
    }
    if (extra === null || typeof extra !== 'object' || Array.isArray(extra))
      die('--claims must be a JSON object');
    Object.assign(payload, extra);
  }

  const header = { alg: hsFile ? 'HS256' : 'EdDSA', typ: 'JWT' };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  let sig;
  if (hsFile) {
    sig = createHmac('sha256', readSecret(hsFile)).update(signingInput, 'ascii').digest();
  } else {
    const key = createPrivateKey(readFileSync(edFile));
    if (key.asymmetricKeyType !== 'ed25519') die(`${edFile}: not an Ed25519 private key`);
    sig = sign(null, Buffer.from(signingInput, 'ascii'), key);
  }
  process.stdout.write(`${signingInput}.${b64url(sig)}\n`);
}

const opts = parseArgs(process.argv.slice(2));
try {
  if (opts.help || opts.h) usage();
  else if (opts['gen-secret'] !== undefined) genSecret(opts['gen-secret']);
  else if (opts['gen-ed25519'] !== undefined) genEd25519(opts['gen-ed25519']);
  else mint(opts);
} catch (e) {
  die(e.code === 'EEXIST' ? `${e.path}: exists; not overwriting` : e.message);
}
