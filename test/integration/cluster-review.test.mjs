// Cluster mode under hostile review (issue #14, brief r1): each test is a
// finding that was broken on main, with the exact scenario that showed it.
// One redis-server (no replica, no Sentinel) on a free loopback port and
// movexd nodes over it, stopped by PID in after().
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { startRedisGroup, startNode, stopAll, checkInvariants, waitConverged, missingAcks, redisAt, PREFIX } from './cluster-lib.mjs';
import { connectHello, httpRequest, waitFor, patchAction, TIMEOUT } from './lib.mjs';

after(stopAll);

async function node(g, id, opts) {
  const d = await startNode(g, id, opts);
  await waitFor(async () => (await httpRequest(d, { path: '/readyz' })).status === 200, `${id} ready`);
  return d;
}

// A Lua reducer with a reject code of its own (docs/REDUCERS.md).
function luaRoom() {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-review-'));
  const path = join(dir, 'say.lua');
  writeFileSync(path, `local M = {}
function M.reduce(state, action, ctx)
  local text = type(action.payload) == "table" and action.payload.text
  if type(text) ~= "string" or #text == 0 then return nil, "empty_text2", "say something" end
  return {{op = "add", path = "/last", value = {text = text, seq = ctx.seq, t = ctx.time}}}
end
return M
`);
  return { global: ['room say {', `    reducer lua:${path}`, '    history 100', '}'] };
}

test('a Lua reducer\'s own reject code is the same on every node: the deciding one, another, and after a reload', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1', luaRoom());
  const b = await node(g, 'n2', luaRoom());
  const room = 'say:1';
  const ca = await connectHello(a, 'alice');
  await ca.request({ type: 'subscribe', room });
  const cb = await connectHello(b, 'bob');
  await cb.request({ type: 'subscribe', room });
  const say = (n, text) => ({ type: 'action', room, n, action: { type: 'say', payload: { text } } });
  const r1 = await ca.request(say(1, ''));
  assert.equal(r1.type, 'reject');
  assert.equal(r1.code, 'empty_text2');
  const ok = await ca.request(say(2, 'hi'));
  assert.equal(ok.type, 'ack', JSON.stringify(ok));
  // bob's node applied both entries (the reject, then the apply at seq 1)
  await waitConverged(g.primary.port, [a, b], [room]);
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
  // alice resends n=1 through the other node: the original reject, same code
  const c2 = await connectHello(b, 'alice');
  await c2.request({ type: 'subscribe', room });
  const d1 = await c2.request(say(1, ''));
  assert.equal(d1.type, 'reject', JSON.stringify(d1));
  assert.equal(d1.code, 'empty_text2', `resent on another node: ${JSON.stringify(d1)}`);
  // and bob's later actions still go through on that node (its replica took the entry)
  const ob = await cb.request(say(1, 'yo'));
  assert.equal(ob.type, 'ack', JSON.stringify(ob));
  assert.equal(ob.seq, 2);
  // a write on a that has to be re-decided (moved -> reload from Redis)
  // keeps the code too: alice's resend on her own node after that reload
  const again = await ca.request(say(3, 'x'));
  assert.equal(again.type, 'ack', JSON.stringify(again));
  const d2 = await ca.request(say(1, ''));
  assert.equal(d2.code, 'empty_text2', `resent after a reload: ${JSON.stringify(d2)}`);
  await waitConverged(g.primary.port, [a, b], [room]);
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
});

// fn() runs while the group's primary is SIGSTOPped; the primary runs
// again afterwards, whether fn passed or threw.
async function whileStopped(g, fn) {
  g.primary.proc.kill('SIGSTOP');
  try {
    await fn();
  } finally {
    g.primary.proc.kill('SIGCONT');
  }
}

// Once the node is ready again, alice's n=2 in room is resent until it is
// decided: acked at seq 2 (from Redis's memory if a stale call landed).
async function resendN2(a, c, room) {
  await waitFor(async () => (await httpRequest(a, { path: '/readyz' })).status === 200, 'ready again');
  let again;
  await waitFor(async () => {
    again = await c.request(patchAction(room, 2, [{ op: 'add', path: '/b', value: 2 }]));
    return again.code !== 'unavailable';
  }, 'the resend is decided');
  assert.equal(again.type, 'ack', JSON.stringify(again));
  assert.equal(again.seq, 2);
}

// A TCP proxy in front of Redis for one node that stops at the first
// command naming `marker` once armed: it holds that chunk (and what
// follows on its link) and tells; release() sends it on. Until then Redis
// answers everything: with marker 'movexd_append', no earlier read (a
// catch-up, a head check) can hold the room or time the link out before
// the append is sent; after release() all passes. cutSubscribers() drops
// the node's subscriber links (those that sent SUBSCRIBE).
function holdGate(redisPort, marker) {
  const st = { armed: false, seen: false, released: false, held: [], subs: new Set() };
  const srv = net.createServer((cl) => {
    const up = net.connect(redisPort, '127.0.0.1');
    let tail = '', hold = false;
    cl.on('data', (d) => {
      const s = tail + d.toString('latin1');
      tail = s.slice(-32); // a name split across two reads is still seen
      if (s.includes('SUBSCRIBE')) st.subs.add(cl);
      if (!hold && st.armed && !st.seen && s.includes(marker)) { hold = true; st.seen = true; }
      if (hold && !st.released) { st.held.push(() => up.write(d)); return; }
      up.write(d);
    });
    up.on('data', (d) => cl.write(d));
    const end = () => { cl.destroy(); up.destroy(); st.subs.delete(cl); };
    cl.on('error', end); up.on('error', end); cl.on('close', end); up.on('close', end);
  });
  st.listen = () => new Promise((r) => srv.listen(0, '127.0.0.1', () => r(srv.address().port)));
  st.cutSubscribers = () => { for (const c of st.subs) c.destroy(); };
  st.release = () => { st.released = true; for (const f of st.held.splice(0)) f(); };
  st.close = () => srv.close();
  return st;
}

// One node behind holdGate(marker) over a fresh Redis; alice subscribed
// to room and acked at seq 1.
async function gatedWriter(marker, room) {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const px = holdGate(g.primary.port, marker);
  const pport = await px.listen();
  after(() => px.close());
  const a = await node({ ...g, primary: { ...g.primary, port: pport } }, 'n1');
  const c = await connectHello(a, 'alice');
  await c.request({ type: 'subscribe', room });
  const r1 = await c.request(patchAction(room, 1, [{ op: 'add', path: '/a', value: 1 }]));
  assert.equal(r1.type, 'ack');
  return { g, px, a, c, r1 };
}

// Evidence for "a call that times out after Redis applied it": a Redis
// that accepts and never answers (SIGSTOP). The node answers `unavailable`
// after command_timeout_ms naming the confirmed head, /readyz says 503 and
// /metrics counts the failure; once Redis runs again the FCALL it had
// buffered is applied after the node gave up on it, so the resend of the
// same n is answered from Redis's memory - once in the log, never twice.
// Redis is stopped only once the node has sent the append (holdGate).
// Stopped before, the ASan run saw another path (catchups_total 1,
// head_checks_total 0, calls_total 1): the catch-up that the channel's
// SUBSCRIBE confirmation asks for, done at the next tick once the room is
// idle, went to the stopped Redis first; the action queued behind that
// XRANGE and was answered unavailable when it timed the link out, without
// a call (now counted in movexd_cluster_refused_down_total) and with no
// stale call to land.
test('a Redis that never answers: unavailable, 503; the stale call lands later and the resend is a duplicate', async () => {
  const room = 'stop';
  const { g, px, a, c, r1 } = await gatedWriter('movexd_append', room);
  px.armed = true;
  const p2 = c.request(patchAction(room, 2, [{ op: 'add', path: '/b', value: 2 }]));
  await waitFor(() => px.seen, 'the node sends the append');
  await whileStopped(g, async () => {
    px.release();
    const r2 = await p2;
    assert.equal(r2.type, 'reject');
    assert.equal(r2.code, 'unavailable');
    assert.equal(r2.seq, 1, 'unavailable names the confirmed head');
    assert.equal(r2.checksum, r1.checksum);
    assert.equal((await httpRequest(a, { path: '/readyz' })).status, 503);
    const { body } = await httpRequest(a, { path: '/metrics' });
    assert.match(body, /^movexd_cluster_redis_up 0$/m);
    assert.match(body, /^movexd_cluster_calls_total 2$/m);
    assert.match(body, /^movexd_cluster_call_failures_total 1$/m);
  });
  await resendN2(a, c, room);
  await waitConverged(g.primary.port, [a], [room]);
  const r = await checkInvariants(g.primary.port, { rooms: [room], nodes: [a] });
  assert.equal(r.rooms.get(room).byAction.get('alice 2').seq, 2, 'n=2 once in the log');
  // the subscriber's view: every seq once, in order (its own stale n=2 as a
  // fwd when the call landed after the node gave up, or as the resend's ack)
  const seen = c.all.filter((m) => m.room === room && ((m.type === 'ack' && !m.duplicate) || m.type === 'fwd')).map((m) => m.seq);
  assert.deepEqual(seen, [1, 2]);
});

// The other path to `unavailable`: an action that arrives once the link
// is already down is refused without a call - counted apart from the
// calls that failed (movexd_cluster_refused_down_total), so /metrics
// accounts for every action answered unavailable for a link failure.
test('an action while the link to Redis is down: unavailable without a call, counted as refused_down', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const room = 'down';
  const c = await connectHello(a, 'alice');
  await c.request({ type: 'subscribe', room });
  const r1 = await c.request(patchAction(room, 1, [{ op: 'add', path: '/a', value: 1 }]));
  assert.equal(r1.type, 'ack');
  await whileStopped(g, async () => {
    // the head check's read of the subscribed room times the link out
    await waitFor(async () => (await httpRequest(a, { path: '/readyz' })).status === 503, 'the link is down', TIMEOUT * 3);
    const r2 = await c.request(patchAction(room, 2, [{ op: 'add', path: '/b', value: 2 }]));
    assert.equal(r2.type, 'reject');
    assert.equal(r2.code, 'unavailable');
    const { body } = await httpRequest(a, { path: '/metrics' });
    assert.match(body, /^movexd_cluster_calls_total 1$/m);
    assert.match(body, /^movexd_cluster_call_failures_total 0$/m);
    assert.match(body, /^movexd_cluster_refused_down_total 1$/m);
    assert.match(body, /^movexd_actions_total\{outcome="unavailable"\} 1$/m);
  });
  await resendN2(a, c, room);
});

// The path the ASan run took, made deterministic: the room is busy with a
// read Redis never answers (the catch-up a returning subscriber link asks
// for, its XRANGE held by the proxy), the action queues behind it and is
// answered unavailable when that read times the link out - never sent as
// a call, counted in movexd_cluster_refused_down_total.
test('an action queued behind a read that times the link out: unavailable without a call, counted as refused_down', async () => {
  const room = 'behind';
  const { px, a, c } = await gatedWriter('XRANGE', room);
  px.armed = true;
  px.cutSubscribers();
  await waitFor(() => px.seen, 'the catch-up XRANGE is sent (and held)');
  const r2 = await c.request(patchAction(room, 2, [{ op: 'add', path: '/b', value: 2 }]));
  assert.equal(r2.type, 'reject');
  assert.equal(r2.code, 'unavailable');
  assert.equal(r2.seq, 1);
  const { body } = await httpRequest(a, { path: '/metrics' });
  assert.match(body, /^movexd_cluster_calls_total 1$/m);
  assert.match(body, /^movexd_cluster_call_failures_total 0$/m);
  assert.match(body, /^movexd_cluster_refused_down_total 1$/m);
  px.release();
  await resendN2(a, c, room);
});

// Evidence for "clean shutdown while calls are in flight": SIGTERM with
// hundreds of pipelined actions exits 0 promptly, every ack the client got
// is in the log, and what it did not get an ack for is at most applied
// once (its resend would be a duplicate).
test('SIGTERM with calls in flight: exit 0, every ack in the log, nothing twice', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const room = 'term';
  const c = await connectHello(a, 'alice');
  await c.request({ type: 'subscribe', room });
  for (let n = 1; n <= 400; n++) c.send({ ...patchAction(room, n, [{ op: 'add', path: `/k${n}`, value: n }]), id: 1000 + n });
  await c.next((m) => m.type === 'ack', 'a first ack');
  const closed = new Promise((res) => a.proc.on('close', (code, signal) => res({ code, signal })));
  a.proc.kill('SIGTERM');
  const ex = await closed;
  assert.deepEqual(ex, { code: 0, signal: null });
  const acks = c.all.filter((m) => m.type === 'ack').map((m) => ({ client: 'alice', n: m.n, seq: m.seq }));
  assert.ok(acks.length >= 1);
  const r = await checkInvariants(g.primary.port, { rooms: [room] });
  assert.deepEqual(missingAcks(r, room, acks, { sameSeq: true }), []);
});

// A TCP proxy in front of Redis for one node: it can cut the node's
// subscriber links (those that sent SUBSCRIBE) and hold what a new one
// sends from its SUBSCRIBE on, and it tells when an XRANGE went through
// and was answered.
function subProxy(redisPort) {
  const st = { hold: false, held: [], subs: new Set(), xrange: 0, xrangeAnswered: 0 };
  const srv = net.createServer((cl) => {
    const up = net.connect(redisPort, '127.0.0.1');
    let isSub = false, held = false, waitX = 0;
    cl.on('data', (d) => {
      const s = d.toString('latin1');
      if (s.includes('SUBSCRIBE')) { isSub = true; st.subs.add(cl); }
      if (!held && st.hold && isSub) held = true;
      if (held) { st.held.push(() => up.write(d)); return; }
      if (s.includes('XRANGE')) { st.xrange++; waitX++; }
      up.write(d);
    });
    up.on('data', (d) => {
      if (waitX) { waitX = 0; st.xrangeAnswered = st.xrange; }
      cl.write(d);
    });
    const end = () => { cl.destroy(); up.destroy(); st.subs.delete(cl); };
    cl.on('error', end); up.on('error', end); cl.on('close', end); up.on('close', end);
  });
  st.listen = () => new Promise((r) => srv.listen(0, '127.0.0.1', () => r(srv.address().port)));
  st.cutSubscribers = () => { for (const c of st.subs) c.destroy(); };
  st.release = () => { st.hold = false; for (const f of st.held.splice(0)) f(); };
  st.close = () => { for (const c of st.subs) c.destroy(); srv.close(); };
  return st;
}

// The subscriber link comes back: the catch-up must read the stream only
// once the channel is subscribed again. On old main it ran at link-up,
// racing the SUBSCRIBE on the other link: an entry appended between the
// two was in neither, and a room nobody wrote to again stayed behind on
// that node for good (its readers served a stale state).
test('after the subscriber link returns, an entry appended before the SUBSCRIBE took effect is caught up', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const px = subProxy(g.primary.port);
  const pport = await px.listen();
  after(() => px.close());
  const a = await node({ ...g, primary: { ...g.primary, port: pport } }, 'n1');
  const b = await node(g, 'n2');
  const room = 'late';
  const ca = await connectHello(a, 'reader');
  await ca.request({ type: 'subscribe', room });
  const cb = await connectHello(b, 'writer');
  await cb.request({ type: 'subscribe', room });
  assert.equal((await cb.request(patchAction(room, 1, [{ op: 'add', path: '/a', value: 1 }]))).type, 'ack');
  await waitConverged(g.primary.port, [a, b], [room]);
  // cut node a's subscriber links; hold their SUBSCRIBEs when they return
  const x0 = px.xrange;
  px.hold = true;
  px.cutSubscribers();
  // the link is back (its PING answered): the node reads the stream ...
  await waitFor(() => px.xrange > x0 && px.xrangeAnswered === px.xrange, 'the catch-up XRANGE answered');
  // ... and only then is an entry appended, before the SUBSCRIBE is live
  const ack = await cb.request(patchAction(room, 2, [{ op: 'add', path: '/b', value: 2 }]));
  assert.equal(ack.type, 'ack');
  px.release();
  await waitConverged(g.primary.port, [a, b], [room]);
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
  await ca.next((m) => m.type === 'fwd' && m.seq === 2, 'the reader gets seq 2');
});

// Two misconfigurations that silently split a cluster's behaviour by node
// are named in the log: another running node with this node_id (their
// presence is lost to each other: a node ignores its own id's messages),
// and a dedup_window other than the cluster's (the exactly-once memory of
// a room then differs by node: one answers a resend as a duplicate, the
// other as too_old).
test('a twin node_id and a different dedup_window are logged as errors', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1');
  const twin = await node(g, 'n1');
  await Promise.all([a, twin].map((d) => d.waitLog(/event=cluster_duplicate_node_id node=n1 /)));
  const w = await node(g, 'n3', { global: ['dedup_window 2048'] });
  await w.waitLog(/event=cluster_config_mismatch key=dedup_window node=2048 cluster=1024 /);
  assert.doesNotMatch(a.stderr, /cluster_config_mismatch/);
  assert.doesNotMatch(w.stderr, /cluster_duplicate_node_id/);
});

// A node's subscribers behind what a snapshot trimmed away: the reload
// cannot forward those entries any more, so the subscribers are told to
// resync (error no_such_room, as after a rollback). On old main the
// reload skipped them silently (event=cluster_fwd_gap): a subscriber got
// e.g. seq 1 and then seq 300, on a state it could not have.
test('subscribers behind a trimmed part are told to resync, never sent a gap', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0, primaryExtra: ['--client-output-buffer-limit', 'pubsub 16kb 8kb 1'] });
  const short = { global: ['room h10 {', '    history 10', '}'] };
  const a = await node(g, 'n1', short);
  const b = await node(g, 'n2', short);
  const room = 'h10:lag';
  const w = await connectHello(a, 'w');
  const r = await connectHello(b, 'r');
  await w.request({ type: 'subscribe', room });
  await r.request({ type: 'subscribe', room });
  assert.equal((await w.request(patchAction(room, 1, [{ op: 'add', path: '/n', value: 0 }]))).type, 'ack');
  await r.next((m) => m.type === 'fwd' && m.seq === 1, 'fwd 1');
  b.signal('SIGSTOP'); // n2 misses what follows: Redis drops its subscriber link
  let last;
  try {
    const replies = [];
    for (let n = 2; n <= 300; n++) {
      w.send({ ...patchAction(room, n, [{ op: 'inc', path: '/n', value: 1 }]), id: 1000 + n });
      replies.push(w.next((m) => m.id === 1000 + n, `reply ${n}`));
    }
    last = (await Promise.all(replies)).at(-1);
    assert.equal(last.seq, 300);
    const first = (await redisAt(g.primary.port, 'XRANGE', `${PREFIX}{${room}}:log`, '-', '+', 'COUNT', '1'))[0][0];
    assert.ok(Number(first.split('-')[0]) > 2, `the stream was trimmed (first entry ${first})`);
  } finally {
    b.signal('SIGCONT');
  }
  // r either gets every seq in order, or is told to resync - no gap
  const notice = await r.next((m) => (m.type === 'error' && m.code === 'no_such_room') || (m.type === 'fwd' && m.seq === 300), 'a resync notice or the head');
  const seqs = r.all.filter((m) => m.type === 'fwd').map((m) => m.seq);
  seqs.forEach((s, i) => assert.equal(s, i + 1, `fwd ${s} where ${i + 1} was due`));
  if (notice.type === 'error') {
    const again = await r.request({ type: 'subscribe', room });
    assert.equal(again.seq, 300);
    assert.equal(again.checksum, last.checksum);
  }
  await waitConverged(g.primary.port, [a, b], [room]);
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
});

// A room deleted from Redis and created again by another node, whose new
// history reaches the same ID as a reading node's head: the published
// entry at that ID has another chain hash - a fork. On old main the reader
// ignored it (at or below its head) and kept serving the old history at
// the same seq, checksum differing from the log's, until the next entry.
test('a published entry at a reader\'s head ID with another hash is a fork: the reader resyncs', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const a = await node(g, 'n1'); // reads only
  const c = await node(g, 'n3'); // writes the first history
  const room = 'again';
  const ra = await connectHello(a, 'reader');
  await ra.request({ type: 'subscribe', room });
  const wc = await connectHello(c, 'w1');
  await wc.request({ type: 'subscribe', room });
  for (let n = 1; n <= 3; n++) assert.equal((await wc.request(patchAction(room, n, [{ op: 'add', path: `/old${n}`, value: n }]))).type, 'ack');
  await ra.next((m) => m.type === 'fwd' && m.seq === 3, 'fwd 3');
  for (const s of ['head', 'log', 'hi', 'dd', 'snap']) await redisAt(g.primary.port, 'DEL', `${PREFIX}{${room}}:${s}`);
  // a node that never had the room creates it again and writes 3 others
  const b = await node(g, 'n2');
  const wb = await connectHello(b, 'w2');
  await wb.request({ type: 'subscribe', room });
  for (let n = 1; n <= 3; n++) assert.equal((await wb.request(patchAction(room, n, [{ op: 'add', path: `/new${n}`, value: n }]))).type, 'ack');
  // the reader is told to resync, and then reads the new history
  await ra.next((m) => m.type === 'error' && m.code === 'no_such_room', 'a resync notice');
  const s = await ra.request({ type: 'subscribe', room });
  assert.deepEqual(s.state, { new1: 1, new2: 2, new3: 3 });
  await checkInvariants(g.primary.port, { rooms: [room], nodes: [a, b] });
});
