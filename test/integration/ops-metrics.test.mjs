// GET /metrics (src/engine.c mx_engine_metrics, src/http.c http_metrics):
// strict Prometheus text format, and counters that move by exactly what the
// test did. Also /healthz and /readyz.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ROOT, withDaemon, connectHello, Client, makeConf, patchAction, httpRequest, waitFor, withTimeout, TIMEOUT,
} from './lib.mjs';

// ---- a strict parser of the Prometheus text exposition format 0.0.4 ----

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*';
const VALUE_RE = /^(?:[+-]?Inf|NaN|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s, where) {
  if (!VALUE_RE.test(s)) throw new Error(`${where}: bad value '${s}'`);
  return s === '+Inf' || s === 'Inf' ? Infinity : s === '-Inf' ? -Infinity : Number(s);
}

function parseLabels(s, where) {
  // s is the text between { and }; label values are "..." with \\ \" \n escapes
  const labels = {};
  let i = 0;
  while (i < s.length) {
    const m = new RegExp(`^(${LABEL})="`).exec(s.slice(i));
    if (!m) throw new Error(`${where}: bad label at '${s.slice(i)}'`);
    i += m[0].length;
    let v = '';
    for (;;) {
      if (i >= s.length) throw new Error(`${where}: unterminated label value`);
      const ch = s[i++];
      if (ch === '"') break;
      if (ch === '\\') {
        const e = s[i++];
        if (e === '\\') v += '\\'; else if (e === '"') v += '"'; else if (e === 'n') v += '\n';
        else throw new Error(`${where}: bad escape \\${e}`);
      } else if (ch === '\n') throw new Error(`${where}: newline in a label value`);
      else v += ch;
    }
    if (Object.hasOwn(labels, m[1])) throw new Error(`${where}: duplicate label ${m[1]}`);
    labels[m[1]] = v;
    if (i < s.length) {
      if (s[i] !== ',') throw new Error(`${where}: expected ',' between labels`);
      i++;
    }
  }
  return labels;
}

// The family a sample belongs to, given the declared types.
function familyOf(name, families) {
  if (families.has(name) && families.get(name).type !== 'histogram') return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      if (families.get(base)?.type === 'histogram') return base;
    }
  }
  return null;
}

// Parse `text`; throws on anything the format (or this strict reading of it)
// does not allow. Returns { families: Map(name -> {help, type, samples}),
// get(name, labels) }.
export function parsePrometheus(text) {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const families = new Map();
  const series = new Set();
  const closed = new Set(); // families whose samples are over
  let current = null;
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, idx) => {
    const where = `line ${idx + 1} '${line}'`;
    if (line === '') throw new Error(`${where}: empty line`);
    if (line.startsWith('#')) {
      const m = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
      if (!m) throw new Error(`${where}: a comment line must be '# HELP name text' or '# TYPE name type'`);
      const [, kind, name, rest] = m;
      const f = families.get(name) ?? { help: undefined, type: undefined, samples: [] };
      families.set(name, f);
      if (f.samples.length || closed.has(name)) throw new Error(`${where}: ${kind} after the family's samples`);
      if (kind === 'HELP') {
        if (f.help !== undefined) throw new Error(`${where}: second HELP for ${name}`);
        if (/\\(?![\\n])/.test(rest)) throw new Error(`${where}: bad escape in HELP`);
        f.help = rest;
      } else {
        if (f.type !== undefined) throw new Error(`${where}: second TYPE for ${name}`);
        if (!TYPES.has(rest)) throw new Error(`${where}: unknown type '${rest}'`);
        f.type = rest;
      }
      if (current && current !== name) closed.add(current);
      current = name;
      return;
    }
    const m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`).exec(line);
    if (!m) throw new Error(`${where}: not a sample line 'name{labels} value'`);
    const [, name, rawLabels, rawValue] = m;
    const labels = rawLabels === undefined ? {} : parseLabels(rawLabels, where);
    const value = parseValue(rawValue, where);
    const fam = familyOf(name, families);
    if (!fam || !families.get(fam).type) throw new Error(`${where}: sample without a TYPE for its family`);
    if (closed.has(fam)) throw new Error(`${where}: samples of ${fam} are not contiguous`);
    if (current && current !== fam) closed.add(current);
    current = fam;
    const key = `${name}{${Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(',')}}`;
    if (series.has(key)) throw new Error(`${where}: duplicate series ${key}`);
    series.add(key);
    families.get(fam).samples.push({ name, labels, value });
  });
  for (const [name, f] of families) {
    if (f.type === undefined) throw new Error(`${name}: HELP without TYPE`);
    if (f.type === 'counter') {
      if (!name.endsWith('_total')) throw new Error(`counter ${name} should end in _total`);
      // counts are integers; a counter of seconds (process_cpu_seconds_total) is not
      for (const s of f.samples) if (!(s.value >= 0) || !(Number.isInteger(s.value) || name.endsWith('_seconds_total'))) throw new Error(`counter ${name} value ${s.value}`);
    }
    if (f.type === 'histogram') checkHistogram(name, f.samples);
  }
  const get = (name, labels = {}) => {
    for (const f of families.values()) {
      for (const s of f.samples) {
        if (s.name === name && Object.keys(labels).length === Object.keys(s.labels).length &&
          Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
      }
    }
    return undefined;
  };
  return { families, get };
}

function checkHistogram(name, samples) {
  const buckets = samples.filter((s) => s.name === `${name}_bucket`);
  const sum = samples.filter((s) => s.name === `${name}_sum`);
  const count = samples.filter((s) => s.name === `${name}_count`);
  if (sum.length !== 1 || count.length !== 1) throw new Error(`histogram ${name}: needs one _sum and one _count`);
  if (!buckets.length) throw new Error(`histogram ${name}: no buckets`);
  let prevLe = -Infinity, prevV = 0;
  for (const b of buckets) {
    if (Object.keys(b.labels).join() !== 'le') throw new Error(`histogram ${name}: bucket labels ${JSON.stringify(b.labels)}`);
    const le = parseValue(b.labels.le, `${name} le`);
    if (!(le > prevLe)) throw new Error(`histogram ${name}: le ${b.labels.le} not increasing`);
    if (b.value < prevV) throw new Error(`histogram ${name}: buckets not cumulative at le=${b.labels.le}`);
    if (!Number.isInteger(b.value)) throw new Error(`histogram ${name}: bucket count ${b.value}`);
    prevLe = le;
    prevV = b.value;
  }
  const last = buckets[buckets.length - 1];
  if (last.labels.le !== '+Inf') throw new Error(`histogram ${name}: the last bucket must be le="+Inf"`);
  if (last.value !== count[0].value) throw new Error(`histogram ${name}: +Inf bucket ${last.value} != _count ${count[0].value}`);
  if (!(sum[0].value >= 0)) throw new Error(`histogram ${name}: _sum ${sum[0].value}`);
  if (count[0].value === 0 && sum[0].value !== 0) throw new Error(`histogram ${name}: _sum without observations`);
}

async function scrape(d) {
  const r = await httpRequest(d, { path: '/metrics' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheus(r.body);
}

// Every metric the daemon documents (docs/ADMIN.md), with its type.
const EXPECTED = {
  movexd_connections: 'gauge',
  movexd_rooms_loaded: 'gauge',
  movexd_lua_vms: 'gauge',
  movexd_rooms_total: 'gauge',
  movexd_actions_total: 'counter',
  movexd_rejects_total: 'counter',
  movexd_messages_in_total: 'counter',
  movexd_errors_sent_total: 'counter',
  movexd_auth_failures_total: 'counter',
  movexd_forbidden_total: 'counter',
  movexd_rooms_evicted_total: 'counter',
  movexd_ack_latency_seconds: 'histogram',
  movexd_fsync_seconds: 'histogram',
  movexd_wal_bytes: 'gauge',
  movexd_wal_fsyncs_total: 'counter',
  movexd_snapshots_written_total: 'counter',
  movexd_snapshot_bytes_written_total: 'counter',
  movexd_storage_flush_failures_total: 'counter',
  movexd_storage_unlinks_pending: 'gauge',
  movexd_storage_failing: 'gauge',
  movexd_recovery_rooms_pending: 'gauge',
  movexd_recovery_records_replayed_total: 'counter',
  movexd_rooms_unrecoverable: 'gauge',
  movexd_bytes_in_total: 'counter',
  movexd_bytes_out_total: 'counter',
  movexd_frames_out_total: 'counter',
  movexd_send_calls_total: 'counter',
  movexd_send_partials_total: 'counter',
  movexd_heap_trims_total: 'counter',
  movexd_read_pauses_total: 'counter',
  movexd_reads_again_total: 'counter',
  movexd_slow_consumer_closes_total: 'counter',
  movexd_too_large_closes_total: 'counter',
  movexd_origin_refusals_total: 'counter',
  movexd_address_limit_refusals_total: 'counter',
  movexd_rate_limited_total: 'counter',
  movexd_rate_limit_closes_total: 'counter',
  movexd_descriptor_refusals_total: 'counter',
  movexd_build_info: 'gauge',
  process_cpu_seconds_total: 'counter',
  process_resident_memory_bytes: 'gauge',
  process_virtual_memory_bytes: 'gauge',
  process_open_fds: 'gauge',
  process_max_fds: 'gauge',
  process_start_time_seconds: 'gauge',
};

test('the parser itself refuses what the format does not allow', () => {
  const ok = '# HELP a_total x\n# TYPE a_total counter\na_total 1\n';
  assert.equal(parsePrometheus(ok).get('a_total'), 1);
  for (const bad of [
    'a_total 1\n', // no TYPE
    '# TYPE a_total counter\na_total 1', // no final newline
    '# TYPE a_total counter\na_total one\n',
    '# TYPE a_total counter\na_total{x="1} 1\n',
    '# TYPE a_total counter\na_total{x="1"} 1\na_total{x="1"} 2\n', // duplicate series
    '# TYPE a counter\na 1\n', // counter without _total
    '# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n',
    '# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 1\na_total{x="2"} 1\n', // not contiguous
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', // not cumulative
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', // no +Inf
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', // +Inf != count
    '# random comment\n',
  ]) assert.throws(() => parsePrometheus(bad), undefined, JSON.stringify(bad));
});

test('/metrics parses strictly and lists every documented metric; /healthz and /readyz answer', async () => {
  await withDaemon({ conf: makeConf({}) }, async (d) => {
    const h = await httpRequest(d, { path: '/healthz' });
    assert.equal(h.status, 200);
    assert.equal(h.body, 'ok\n');
    const r = await httpRequest(d, { path: '/readyz' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ready\n');
    const m = await scrape(d);
    for (const [name, type] of Object.entries(EXPECTED)) {
      assert.ok(m.families.has(name), `metric ${name} is exported`);
      assert.equal(m.families.get(name).type, type, `${name} is a ${type}`);
      assert.ok(m.families.get(name).help, `${name} has a HELP text`);
    }
    assert.deepEqual([...m.families.keys()].filter((n) => !EXPECTED[n]), [], 'no undocumented metric');
    for (const o of ['applied', 'rejected', 'duplicate', 'unavailable']) assert.equal(m.get('movexd_actions_total', { outcome: o }), 0);
    assert.equal(m.get('movexd_connections'), 0);
    assert.equal(m.get('movexd_rooms_loaded'), 0);
    assert.equal(m.get('movexd_storage_failing'), 0);
    assert.ok(m.get('movexd_wal_bytes') > 0, 'a preallocated WAL segment');
    // Scrapes are not WebSocket traffic.
    const again = await scrape(d);
    assert.equal(again.get('movexd_bytes_in_total'), 0);
    assert.equal(again.get('movexd_messages_in_total'), 0);
  });
});

test('counters move by exactly what happened: actions, rejects, acks, fsyncs, bytes, connections, rooms', async () => {
  const conf = makeConf({ global: ['fsync always'] });
  await withDaemon({ conf }, async (d) => {
    const m0 = await scrape(d);
    assert.equal(m0.get('movexd_connections'), 0);
    const a = await connectHello(d, 'ma');
    const b = await connectHello(d, 'mb');
    const m1 = await scrape(d);
    assert.equal(m1.get('movexd_connections'), 2, 'two WebSocket connections open');

    // From here on count every byte and message both ways.
    let bytesIn = 0, msgsIn = 0, bytesOut = 0;
    for (const c of [a, b]) {
      const send = c.ws.send.bind(c.ws);
      c.ws.send = (data, ...rest) => { bytesIn += Buffer.byteLength(data); msgsIn++; return send(data, ...rest); };
      c.ws.on('message', (data) => { bytesOut += data.length; });
    }
    const room = 'todo:metrics';
    for (const c of [a, b]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    for (let n = 1; n <= 5; n++) assert.equal((await a.request(patchAction(room, n, [{ op: 'inc', path: '/count', value: 1 }]))).type, 'ack');
    for (let n = 6; n <= 8; n++) {
      const r = await a.request(patchAction(room, n, [{ op: 'test', path: '/count', value: 999 }]));
      assert.equal(r.code, 'test_failed');
    }
    assert.equal((await a.request(patchAction(room, 9, [{ op: 'remove', path: '/nope' }]))).code, 'bad_patch');
    const dup = await a.request(patchAction(room, 1, [{ op: 'inc', path: '/count', value: 1 }]));
    assert.equal(dup.duplicate, true);
    assert.equal((await a.request({ type: 'nope' })).code, 'unknown_type');
    await waitFor(() => b.all.filter((m) => m.type === 'fwd').length === 5, 'b has 5 fwds');
    const m2 = await scrape(d);
    const delta = (name, labels) => (m2.get(name, labels) ?? 0) - (m1.get(name, labels) ?? 0);

    assert.equal(delta('movexd_actions_total', { outcome: 'applied' }), 5, 'applied');
    assert.equal(delta('movexd_actions_total', { outcome: 'rejected' }), 4, 'rejected');
    assert.equal(delta('movexd_actions_total', { outcome: 'duplicate' }), 1, 'duplicate');
    assert.equal(delta('movexd_actions_total', { outcome: 'unavailable' }), 0);
    assert.equal(delta('movexd_rejects_total', { code: 'test_failed' }), 3, 'rejects by code: test_failed');
    assert.equal(delta('movexd_rejects_total', { code: 'bad_patch' }), 1, 'rejects by code: bad_patch');
    // a duplicate reject is not counted again: the rejects sum equals the rejected outcomes
    const rejectsSum = [...m2.families.get('movexd_rejects_total').samples].reduce((t, s) => t + s.value, 0);
    assert.equal(rejectsSum, 4);
    // ack latency: one observation per ack released (5 acks + the duplicate's ack)
    assert.equal(delta('movexd_ack_latency_seconds_count'), 6, 'ack latency observations');
    assert.ok(delta('movexd_ack_latency_seconds_sum') > 0);
    assert.ok(delta('movexd_fsync_seconds_count') >= 1, 'fsync always: WAL syncs observed');
    assert.equal(delta('movexd_fsync_seconds_count'), delta('movexd_wal_fsyncs_total'), 'one fsync observation per WAL fdatasync');
    assert.equal(delta('movexd_errors_sent_total'), 1, 'one error reply');
    assert.equal(delta('movexd_messages_in_total'), msgsIn, `messages in (${msgsIn} sent)`);
    assert.equal(delta('movexd_bytes_in_total'), bytesIn, `payload bytes in (${bytesIn} sent)`);
    assert.equal(delta('movexd_bytes_out_total'), bytesOut, `payload bytes out (${bytesOut} received)`);
    assert.equal(m2.get('movexd_rooms_loaded'), 1, 'one room in memory');
    assert.equal(m2.get('movexd_rooms_total'), 1, 'one room exists');
    assert.equal(m2.get('movexd_connections'), 2);

    await b.close();
    await waitFor(async () => (await scrape(d)).get('movexd_connections') === 1, 'movexd_connections drops to 1');
    await a.close();
    await waitFor(async () => (await scrape(d)).get('movexd_connections') === 0, 'movexd_connections drops to 0');
  });
});

test('rooms leave memory: movexd_rooms_evicted_total, rooms_loaded drops, rooms_total stays, snapshot written', async () => {
  const conf = makeConf({ global: ['evict_idle_ms 200ms'] });
  await withDaemon({ conf }, async (d) => {
    const a = await connectHello(d, 'ev');
    await a.request({ type: 'subscribe', room: 'todo:ev' });
    await a.request(patchAction('todo:ev', 1, [{ op: 'add', path: '/x', value: 1 }]));
    const m1 = await scrape(d);
    assert.equal(m1.get('movexd_rooms_loaded'), 1);
    await a.close();
    await waitFor(async () => (await scrape(d)).get('movexd_rooms_evicted_total') === 1, 'the idle room is evicted', TIMEOUT);
    const m2 = await scrape(d);
    assert.equal(m2.get('movexd_rooms_loaded'), 0);
    assert.equal(m2.get('movexd_rooms_total'), 1, 'the room still exists, on disk');
    assert.ok(m2.get('movexd_snapshots_written_total') > m1.get('movexd_snapshots_written_total'), 'eviction writes its snapshot');
    assert.ok(m2.get('movexd_snapshot_bytes_written_total') > 0);
    // loading it again brings rooms_loaded back
    const c = await connectHello(d, 'ev2');
    assert.deepEqual((await c.request({ type: 'get', room: 'todo:ev' })).state, { x: 1 });
    assert.equal((await scrape(d)).get('movexd_rooms_loaded'), 1);
    await c.close();
  });
});

let KEYS, SECRET_FILE, OTHER_SECRET_FILE;
const makeToken = (args) => execFileSync(process.execPath, [join(ROOT, 'scripts', 'make-token.mjs'), ...args], { encoding: 'utf8' }).trim();
before(() => {
  KEYS = mkdtempSync(join(tmpdir(), 'movexd-ops-keys-'));
  SECRET_FILE = join(KEYS, 'hs256.secret');
  OTHER_SECRET_FILE = join(KEYS, 'other.secret');
  makeToken(['--gen-secret', SECRET_FILE]);
  makeToken(['--gen-secret', OTHER_SECRET_FILE]);
});
after(() => rmSync(KEYS, { recursive: true, force: true }));

test('movexd_auth_failures_total counts refused tokens (auth jwt), movexd_forbidden_total refused rights', async () => {
  const conf = `log_level info\nauth jwt\nauth_hs256_secret_file ${SECRET_FILE}\nroom default {\n    create_on_subscribe yes\n    anonymous none\n    authenticated none\n}\n`;
  await withDaemon({ conf }, async (d) => {
    const m0 = await scrape(d);
    assert.equal(m0.get('movexd_auth_failures_total'), 0);
    const good = makeToken(['--hs256-secret-file', SECRET_FILE, '--sub', 'alice', '--rooms', 'todo:*=read,write,create']);
    const bad = [
      'not-a-token',
      makeToken(['--hs256-secret-file', OTHER_SECRET_FILE, '--sub', 'mallory']), // wrong key
      makeToken(['--hs256-secret-file', SECRET_FILE, '--sub', 'late', '--exp-in', '-3600']), // expired
    ];
    for (const token of bad) {
      const c = await Client.connect(d.url);
      c.send({ type: 'hello', id: 1, token });
      const r = await c.next((m) => m.id === 1);
      assert.equal(r.code, 'unauthorized');
      assert.equal((await c.closed).code, 4001);
    }
    const ok = await Client.connect(d.url);
    ok.send({ type: 'hello', id: 1, token: good });
    assert.equal((await ok.next((m) => m.id === 1)).client, 'alice');
    assert.equal((await ok.request({ type: 'subscribe', room: 'todo:a' })).type, 'snapshot');
    assert.equal((await ok.request({ type: 'subscribe', room: 'news:a' })).code, 'forbidden');
    const anon = await Client.connect(d.url);
    anon.send({ type: 'hello', id: 1 });
    assert.equal((await anon.next((m) => m.id === 1)).type, 'welcome');
    assert.equal((await anon.request({ type: 'get', room: 'todo:a' })).code, 'forbidden');
    const m1 = await scrape(d);
    assert.equal(m1.get('movexd_auth_failures_total') - m0.get('movexd_auth_failures_total'), 3, 'three refused tokens');
    assert.equal(m1.get('movexd_forbidden_total') - m0.get('movexd_forbidden_total'), 2, 'two refused rights');
    assert.equal(m1.get('movexd_connections'), 2, 'the refused connections are gone');
    await ok.close();
    await anon.close();
  });
});

test('close counters: movexd_slow_consumer_closes_total after a 4008, movexd_too_large_closes_total after a 1009', async () => {
  const conf = makeConf({ global: ['max_queue_bytes 64k', 'max_message_bytes 16k'] });
  await withDaemon({ conf }, async (d) => {
    const m0 = await scrape(d);
    assert.equal(m0.get('movexd_slow_consumer_closes_total'), 0);
    // A subscriber that stops reading while another client writes ~13 KB
    // actions: once the kernel's buffers are full its queue passes 64 KB.
    // (A burst of its own requests would not do it: the daemon stops reading
    // a connection whose replies fill half the bound - backpressure.)
    const room = 'todo:burst';
    const a = await connectHello(d, 'slow');
    const w = await connectHello(d, 'writer');
    for (const c of [a, w]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    a.ws._socket.pause();
    for (let n = 1; n <= 3000 && !/event=slow_consumer/.test(d.stderr); n++) {
      const r = await w.request({ type: 'action', room, n, action: { type: 'patch', payload: [{ op: 'add', path: '/s', value: `${n}${'x'.repeat(13000)}` }] } });
      assert.equal(r.type, 'ack');
    }
    assert.match(d.stderr, /event=slow_consumer client=slow /);
    a.ws._socket.resume();
    const closed = await withTimeout(a.closed, TIMEOUT, 'slow consumer closed');
    assert.ok([4008, 1006].includes(closed.code), `close code ${closed.code} (4008, or 1006 when too stalled for the close frame)`);
    const m1 = await scrape(d);
    assert.equal(m1.get('movexd_slow_consumer_closes_total'), 1, 'one slow-consumer close');
    assert.equal(m1.get('movexd_too_large_closes_total'), 0);
    await w.close();

    const b = await connectHello(d, 'big');
    b.send({ type: 'ping', pad: 'x'.repeat(20000) });
    assert.equal((await b.closed).code, 1009);
    const m2 = await scrape(d);
    assert.equal(m2.get('movexd_too_large_closes_total'), 1, 'one 1009 close');
    assert.equal(m2.get('movexd_slow_consumer_closes_total'), 1);
    await waitFor(async () => (await scrape(d)).get('movexd_connections') === 0, 'no connection left');
  });
});

test('rate limit counters: movexd_rate_limited_total and movexd_rate_limit_closes_total', async () => {
  const conf = makeConf({ global: ['rate_messages_per_sec 1', 'rate_burst 3', 'rate_close_after 5'] });
  await withDaemon({ conf }, async (d) => {
    const a = await connectHello(d, 'rl'); // hello takes 1 of the 3 tokens
    for (let i = 0; i < 20; i++) a.send({ type: 'ping', id: 10 + i });
    const closed = await withTimeout(a.closed, TIMEOUT, 'rate limit close');
    // 1006 possible: a close while the client is still sending ends in a TCP
    // reset (the known limitation the security-limits tests accept too)
    assert.ok([4029, 1006].includes(closed.code), JSON.stringify(closed));
    const limitedReplies = a.all.filter((m) => m.code === 'rate_limited').length;
    assert.ok(limitedReplies <= 5);
    const m = await scrape(d);
    assert.equal(m.get('movexd_rate_limit_closes_total'), 1);
    // refused: rate_close_after (5) answered rate_limited, then the one that
    // closed; what arrives after the close is not counted
    assert.equal(m.get('movexd_rate_limited_total'), 6);
  });
});
