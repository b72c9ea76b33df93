// movexctl against a real daemon (man/movexctl.1): get, dispatch (n from
// next_n, ack/reject and exit codes), watch (snapshot then fwd lines),
// presence, token (HS256 and EdDSA tokens the daemon accepts, a mismatched
// key caught), check-data (rooms, seqs and checksums of a stopped daemon's
// directory; damaged WAL and snapshot files reported), usage and
// connection errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BIN, ROOT, TIMEOUT, startDaemon, makeConf, connectHello, withTimeout } from './lib.mjs';

const CTL = process.env.MOVEXCTL_BIN || join(dirname(BIN), 'movexctl');

// Run movexctl to its end; resolves {code, out, err, lines}.
function ctl(args, { onLine, env } = {}) {
  return new Promise((res, rej) => {
    const p = spawn(CTL, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '', err = '', seen = 0;
    p.stdout.on('data', (d) => {
      out += d;
      const lines = out.split('\n');
      while (seen < lines.length - 1) {
        const line = lines[seen++];
        if (onLine) onLine(line, p);
      }
    });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', rej);
    const t = setTimeout(() => { p.kill('SIGKILL'); rej(new Error(`movexctl ${args.join(' ')} hung; stderr: ${err}`)); }, TIMEOUT);
    p.on('close', (code) => {
      clearTimeout(t);
      const parse = (l) => { try { return JSON.parse(l); } catch { return { text: l }; } };
      res({ code, out, err, lines: out.split('\n').filter(Boolean).map(parse) });
    });
  });
}

const inc = (v = 1) => JSON.stringify([{ op: 'inc', path: '/n', value: v }]);

test('get, dispatch and n from next_n', async () => {
  const d = await startDaemon();
  try {
    const url = ['--url', d.url];
    let r = await ctl([...url, 'get', 'todo:none']);
    // startDaemon's conf has create_on_subscribe yes: get still does not create (man/movexctl.1)
    assert.equal(r.code, 1, 'get of a missing room fails (get never creates)');
    assert.match(r.err, /no_such_room/);

    r = await ctl([...url, '--client', 'ops', 'dispatch', 'todo:a', inc(2)]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.lines[0].type, 'ack');
    assert.equal(r.lines[0].n, 1);
    assert.equal(r.lines[0].seq, 1);

    // a second run with the same client continues above the server's next_n
    r = await ctl([...url, '--client', 'ops', 'dispatch', 'todo:a', inc(3)]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.lines[0].n, 2);
    assert.equal(r.lines[0].seq, 2);

    r = await ctl([...url, '--client', 'ops', 'dispatch', 'todo:a', JSON.stringify([{ op: 'test', path: '/n', value: 1 }])]);
    assert.equal(r.code, 1, 'a reject exits 1');
    assert.equal(r.lines[0].type, 'reject');
    assert.equal(r.lines[0].code, 'test_failed');

    r = await ctl([...url, '--strict', '--client', 'ops', 'dispatch', 'todo:a', inc(1)]);
    assert.equal(r.code, 0, 'strict with base = the head seq it just read');

    r = await ctl([...url, 'get', 'todo:a']);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.lines[0].type, 'snapshot');
    assert.deepEqual(r.lines[0].state, { n: 6 });
    assert.equal(r.lines[0].seq, 3);

    // what a WebSocket client sees agrees
    const c = await connectHello(d, 'check');
    const snap = await c.request({ type: 'get', room: 'todo:a' });
    assert.equal(snap.checksum, r.lines[0].checksum);
    await c.close();
  } finally {
    await d.stop();
  }
});

test('watch prints the snapshot, then each fwd as one JSON line; --count stops it', async () => {
  const d = await startDaemon();
  try {
    let writer;
    const r = await ctl(['--url', d.url, '--count', '2', 'watch', 'todo:w'], {
      onLine: (line) => {
        const m = JSON.parse(line);
        if (m.type === 'snapshot') {
          writer = (async () => {
            const c = await connectHello(d, 'w1');
            await c.request({ type: 'subscribe', room: 'todo:w' });
            for (let n = 1; n <= 2; n++) {
              const a = await c.request({ type: 'action', room: 'todo:w', n, action: { type: 'patch', payload: [{ op: 'inc', path: '/n', value: n }] } });
              assert.equal(a.type, 'ack');
            }
            await c.close();
          })();
        }
      },
    });
    await writer;
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.lines.map((m) => m.type), ['snapshot', 'fwd', 'fwd']);
    assert.deepEqual(r.lines.slice(1).map((m) => [m.seq, m.client, m.n]), [[1, 'w1', 1], [2, 'w1', 2]]);
  } finally {
    await d.stop();
  }
});

test('watch runs until SIGTERM and then exits 0', async () => {
  const d = await startDaemon();
  try {
    const r = await ctl(['--url', d.url, 'watch', 'todo:s'], {
      onLine: (line, p) => { if (JSON.parse(line).type === 'snapshot') p.kill('SIGTERM'); },
    });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.lines.length, 1);
  } finally {
    await d.stop();
  }
});

test('presence lists the others; watch prints presence changes as lines', async () => {
  const d = await startDaemon();
  try {
    let r = await ctl(['--url', d.url, 'presence', 'todo:p']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.lines[0], [], 'nobody there yet');

    const ann = await connectHello(d, 'ann');
    await ann.request({ type: 'subscribe', room: 'todo:p' });
    const ok = await ann.request({ type: 'presence', room: 'todo:p', state: { editing: 'a1' } });
    assert.equal(ok.type, 'presence_ok');
    r = await ctl(['--url', d.url, 'presence', 'todo:p']);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.lines[0].length, 1);
    assert.equal(r.lines[0][0].client, 'ann');
    assert.deepEqual(r.lines[0][0].state, { editing: 'a1' });

    // watch: ann's next change, then her leaving, arrive as presence lines
    r = await ctl(['--url', d.url, '--count', '2', 'watch', 'todo:p'], {
      // each change waits until watch has printed the one before: presence
      // is coalesced per connection (the latest wins), so two changes sent
      // back to back may legitimately arrive as one
      onLine: (line) => {
        const m = JSON.parse(line);
        if (m.type === 'snapshot') ann.request({ type: 'presence', room: 'todo:p', state: { editing: 'b2' } });
        else if (m.type === 'presence' && m.state?.editing === 'b2') ann.request({ type: 'presence', room: 'todo:p', state: null });
      },
    });
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.lines[0].presence.map((p) => p.client), ['ann'], 'the snapshot line carries the list');
    assert.deepEqual(r.lines.slice(1).map((m) => [m.type, m.client, m.state ?? null, m.left ?? false]),
      [['presence', 'ann', { editing: 'b2' }, false], ['presence', 'ann', null, true]]);
    await ann.close();
  } finally {
    await d.stop();
  }
});

test('usage errors exit 2, an unreachable server exits 3', async () => {
  for (const args of [[], ['frobnicate', 'x'], ['get'], ['get', 'bad room'], ['dispatch', 'todo:a', 'not json'],
    ['dispatch', 'todo:a', '{"op":"add"}'], ['--timeout', 'x', 'get', 'todo:a'], ['token']]) {
    const r = await ctl(args);
    assert.equal(r.code, 2, `movexctl ${args.join(' ')}: ${r.err}`);
    assert.ok(r.err.length > 0, 'says why');
  }
  // a port nothing listens on: take a free one from a daemon, then stop it
  const d = await startDaemon();
  const url = d.url;
  await d.stop();
  const r = await ctl(['--url', url, 'get', 'todo:a']);
  assert.equal(r.code, 3);
  assert.match(r.err, /cannot connect/);
});

test('token: HS256 and EdDSA tokens from the conf\'s key files are accepted by the daemon', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexctl-keys-'));
  try {
    const mk = join(ROOT, 'scripts/make-token.mjs');
    execFileSync(process.execPath, [mk, '--gen-secret', join(dir, 'secret')]);
    execFileSync(process.execPath, [mk, '--gen-ed25519', join(dir, 'ed')]);
    execFileSync(process.execPath, [mk, '--gen-ed25519', join(dir, 'other')]);
    const conf = makeConf({
      global: ['auth jwt', `auth_hs256_secret_file ${join(dir, 'secret')}`,
        `auth_ed25519_public_key_file ${join(dir, 'ed/ed25519-public.pem')}`],
      room: ['create_on_subscribe yes'],
    });
    const d = await startDaemon({ conf });
    try {
      const grant = ['--rooms', 'todo:*=read,write,create'];
      const hs = await ctl(['token', '-c', d.confPath, '--sub', 'alice', ...grant]);
      assert.equal(hs.code, 0, hs.err);
      const tokHs = hs.out.trim();
      assert.equal(JSON.parse(Buffer.from(tokHs.split('.')[0], 'base64url')).alg, 'HS256');

      const ed = await ctl(['token', '-c', d.confPath, '--ed25519-private-key-file', join(dir, 'ed/ed25519-private.pem'), '--sub', 'bob', ...grant]);
      assert.equal(ed.code, 0, ed.err);
      const tokEd = ed.out.trim();
      assert.equal(JSON.parse(Buffer.from(tokEd.split('.')[0], 'base64url')).alg, 'EdDSA');

      let r = await ctl(['--url', d.url, '--token', tokHs, 'dispatch', 'todo:t', inc(1)]);
      assert.equal(r.code, 0, r.err);
      writeFileSync(join(dir, 'tok'), `${tokEd}\n`);
      r = await ctl(['--url', d.url, '--token-file', join(dir, 'tok'), 'dispatch', 'todo:t', inc(1)]);
      assert.equal(r.code, 0, r.err);
      r = await ctl(['--url', d.url, '--token', tokEd, 'get', 'todo:t']);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(r.lines[0].state, { n: 2 });

      // without a token under auth jwt: refused
      r = await ctl(['--url', d.url, 'get', 'todo:t']);
      assert.equal(r.code, 1);
      assert.match(r.err, /forbidden/);

      // a private key that is not the conf's public key's pair is caught
      r = await ctl(['token', '-c', d.confPath, '--ed25519-private-key-file', join(dir, 'other/ed25519-private.pem'), '--sub', 'eve']);
      assert.equal(r.code, 1);
      assert.match(r.err, /would refuse this token: bad signature/);
      assert.equal(r.out, '');

      // a bad grant spec is a usage error
      r = await ctl(['token', '-c', d.confPath, '--sub', 'x', '--rooms', 'todo:*=fly']);
      assert.equal(r.code, 2);
    } finally {
      await d.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('check-data lists rooms with seq and checksum, read-only, and reports damage', async () => {
  const d = await startDaemon({ keepDir: true });
  const sums = {};
  try {
    for (const room of ['todo:x', 'todo:y']) {
      for (let i = 0; i < 3; i++) {
        const r = await ctl(['--url', d.url, '--client', 'c', 'dispatch', room, inc(i)]);
        assert.equal(r.code, 0, r.err);
        sums[room] = r.lines[0];
      }
    }
    await d.kill('SIGKILL'); // no shutdown snapshot: the rooms live in the WAL only
    const walDir = join(d.dataDir, 'wal');
    const before = readdirSync(walDir).map((f) => [f, statSync(join(walDir, f)).mtimeMs]);

    let r = await ctl(['check-data', d.dataDir]);
    assert.equal(r.code, 0, r.err + r.out);
    const rooms = Object.fromEntries(r.lines.filter((l) => l.room).map((l) => [l.room, l]));
    for (const room of ['todo:x', 'todo:y']) {
      assert.equal(rooms[room].seq, 3);
      assert.equal(rooms[room].checksum, sums[room].checksum, 'the checksum the ack named');
    }
    assert.deepEqual(r.lines.at(-1), { rooms: 2, wal_records: 8, damage: 0, torn_tail: false });
    assert.deepEqual(readdirSync(walDir).map((f) => [f, statSync(join(walDir, f)).mtimeMs]), before, 'nothing written');

    // flip a byte inside the first record's payload: corruption in the middle
    const seg = readdirSync(walDir).filter((f) => f.endsWith('.log')).sort()[0];
    const buf = readFileSync(join(walDir, seg));
    buf[12] ^= 0xff;
    writeFileSync(join(walDir, seg), buf);
    r = await ctl(['check-data', d.dataDir]);
    assert.equal(r.code, 1);
    assert.ok(r.lines.some((l) => l.damage && /offset/.test(l.damage)), r.out);
    assert.equal(r.lines.at(-1).damage >= 1, true);
    buf[12] ^= 0xff;
    writeFileSync(join(walDir, seg), buf);

    // start and stop cleanly: snapshots now hold the rooms
    const d2 = await startDaemon({ dir: d.dir, keepDir: true });
    for (const room of ['todo:x', 'todo:y']) { // rebuilt now, so the stop snapshots them
      const g = await ctl(['--url', d2.url, 'get', room]);
      assert.equal(g.code, 0, g.err);
    }
    await d2.stop();
    r = await ctl(['check-data', d.dataDir]);
    assert.equal(r.code, 0, r.out);
    const snapRooms = r.lines.filter((l) => l.room);
    assert.deepEqual(snapRooms.map((l) => [l.room, l.seq, l.checksum, l.snapshot_seq]),
      ['todo:x', 'todo:y'].map((room) => [room, 3, sums[room].checksum, 3]));

    // a damaged snapshot is reported with its room
    const snap = join(d.dataDir, 'rooms', 'todo:y.snap');
    const sb = readFileSync(snap);
    sb[sb.length - 2] ^= 0xff;
    writeFileSync(snap, sb);
    r = await ctl(['check-data', d.dataDir]);
    assert.equal(r.code, 1);
    assert.ok(r.lines.some((l) => l.damage && l.room === 'todo:y'), r.out);

    r = await ctl(['check-data', join(d.dir, 'nowhere')]);
    assert.equal(r.code, 2);
  } finally {
    rmSync(d.dir, { recursive: true, force: true });
  }
});

test('--help and --version', async () => {
  const r = await withTimeout(ctl(['--help']), TIMEOUT, 'help');
  assert.equal(r.code, 0);
  const v = await new Promise((res) => {
    const p = spawn(CTL, ['--version']);
    let out = '';
    p.stdout.on('data', (x) => { out += x; });
    p.on('close', (code) => res({ code, out }));
  });
  assert.equal(v.code, 0);
  assert.match(v.out, /^movexctl \d+\.\d+\.\d+/);
});

test('wss://: --insecure accepts a self-signed certificate; without it the connection fails', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexctl-tls-'));
  try {
    const cert = join(dir, 'cert.pem'), key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const d = await startDaemon({ conf: makeConf({ global: [`tls_cert_file ${cert}`, `tls_key_file ${key}`] }) });
    try {
      const url = `wss://127.0.0.1:${d.port}/ws`;
      let r = await ctl(['--url', url, '--insecure', 'dispatch', 'todo:tls', inc(1)]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.lines[0].type, 'ack');
      r = await ctl(['--url', url, '--timeout', '5', 'get', 'todo:tls']);
      assert.equal(r.code, 3, 'an unknown CA is refused without --insecure');
      // and the refusal says what to do, not only OpenSSL's "lib(0)::reason(1)"
      assert.match(r.err, /TLS handshake failed.*SSL_CERT_FILE=CA\.pem \(or --insecure/, r.err);
      r = await ctl(['--url', url, '--timeout', '5', 'get', 'todo:tls'], { env: { SSL_CERT_FILE: cert } });
      assert.equal(r.code, 0, `SSL_CERT_FILE naming the certificate is the other way past it: ${r.err}`);
    } finally {
      await d.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
