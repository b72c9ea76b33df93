// The Redis Function library of cluster mode (src/cluster_fn.lua, issue
// #14, docs/CLUSTER.md) against a real redis-server: the per-room append
// that gives a room one order however many nodes write to it. Each test
// proves one rule: gap-free seq with stream IDs seq-0 and recorded rejects
// at seq-k; the hash chain over exactly the published bytes; effects stored
// verbatim; refusal when the head moved; exactly-once answered from the
// library's own memory; dep and strict decided here; the memory window;
// argument checks before any write (a failed function keeps its writes).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './lib.mjs';
import { startRedis } from './redis-lib.mjs';

const LIB = readFileSync(join(ROOT, 'src/cluster_fn.lua'), 'utf8');
let redis, r;

before(async () => {
  redis = await startRedis();
  r = await redis.connect();
  assert.equal(await r.ok('FUNCTION', 'LOAD', 'REPLACE', LIB), 'movexd');
});
after(async () => {
  r?.close();
  await redis?.stop();
});

let roomNo = 0;
function room() {
  const R = `t:r${++roomNo}`;
  const k = (s) => `movexd:{${R}}:${s}`;
  return { keys: [k('head'), k('log'), k('hi'), k('dd')], ch: k('ch'), head: k('head'), log: k('log'), snap: k('snap') };
}

const act = (client, n, kind, what, body = '', { deps = '', strict = '0', base = 0 } = {}) =>
  [client, n, deps, strict, base, kind, what, body];

async function append(rm, [seq, sub, sum], actions, { window = 1024, now = 1700000000000, inc, turn } = {}) {
  return r.cmd('FCALL', 'movexd_append', 4, ...rm.keys, rm.ch, window, seq, sub, sum, now,
    actions.length, ...actions.flat(), ...(inc !== undefined ? [inc] : []), ...(turn !== undefined ? [turn] : []));
}

async function created(sum = 'S0') {
  const rm = room();
  assert.deepEqual(await r.ok('FCALL', 'movexd_create', 1, rm.head, sum), ['created', '0', '0', sum, '']);
  return rm;
}

const sha1 = (s) => createHash('sha1').update(s).digest('hex');

test('create makes seq 0 once; a second create answers the existing head', async () => {
  const rm = await created('S0');
  assert.deepEqual(await r.ok('FCALL', 'movexd_create', 1, rm.head, 'OTHER'), ['exists', '0', '0', 'S0', '']);
  // the initial state is kept verbatim (nodes that load the room start from it); "{}" when not given
  assert.equal(await r.ok('HGET', rm.head, 'init'), '{}');
  const withInit = room();
  await r.ok('FCALL', 'movexd_create', 1, withInit.head, 'S9', '{"a":[1,2.5e300]}');
  assert.equal(await r.ok('HGET', withInit.head, 'init'), '{"a":[1,2.5e300]}');
  const none = room();
  const e = await append(none, [0, 0, 'S0'], [act('c1', 1, 'a', 'S1', '[]')]);
  assert.ok(e instanceof Error && /no_room/.test(e.message), String(e));
});

// A room's incarnation (docs/CLUSTER.md "Incarnations"): given at create,
// kept in the head; an append that names it must name the head's, else
// every action is "moved" and nothing is written (a journal's batch of a
// room deleted and created again at the same seq and checksum); the reply
// then ends with the head's incarnation. Without it (callers before
// incarnations) nothing is checked and the reply is as before.
test('incarnation: set at create, checked by an append that names it, answered at the reply\'s end', async () => {
  const rm = room();
  assert.deepEqual(await r.ok('FCALL', 'movexd_create', 1, rm.head, 'S0', '{}', 'aa11'), ['created', '0', '0', 'S0', '']);
  assert.equal(await r.ok('HGET', rm.head, 'inc'), 'aa11');
  const one = [act('c1', 1, 'a', 'S1', '[]')];
  const withInc = (inc, acts) => r.cmd('FCALL', 'movexd_append', 4, ...rm.keys, rm.ch, 1024, 0, 0, 'S0', 1700000000000,
    acts.length, ...acts.flat(), inc);
  for (const other of ['bb22', '']) assert.deepEqual(await withInc(other, one), ['0', '0', 'S0', '', 'moved', 'aa11']);
  assert.equal(await r.ok('XLEN', rm.log), 0);
  const ok = await withInc('aa11', one);
  assert.deepEqual([ok.slice(0, 3), ok.slice(4)], [['1', '0', 'S1'], ['ack 1', 'aa11']]);
  // a room without one (created before incarnations) is incarnation ""
  const old = await created();
  const rep = await r.cmd('FCALL', 'movexd_append', 4, ...old.keys, old.ch, 1024, 0, 0, 'S0', 1700000000000, 1, ...one.flat(), '');
  assert.deepEqual(rep.slice(4), ['ack 1', '']);
  for (const bad of ['XYZ', 'a'.repeat(33), '']) {
    const e = await r.cmd('FCALL', 'movexd_create', 1, room().head, 'S0', '{}', bad);
    assert.ok(e instanceof Error && /bad incarnation/.test(e.message), `${bad}: ${e}`);
  }
});

// movexd_delete (docs/CLUSTER.md "Deleting a room"): every key of the
// room in one call, "delete INC" published on its channel; "none" and no
// message when there is no such room.
test('delete: removes head, log, hi, dd and snap at once and publishes the incarnation deleted', async () => {
  const rm = room();
  await r.ok('FCALL', 'movexd_create', 1, rm.head, 'S0', '{}', 'cc33');
  await r.cmd('FCALL', 'movexd_append', 4, ...rm.keys, rm.ch, 1024, 0, 0, 'S0', 1700000000000, 1, ...act('c1', 1, 'a', 'S1', '[]'), 'cc33');
  await r.ok('HSET', rm.snap, 'seq', '1');
  const sub = await redis.connect();
  await sub.subscribe(rm.ch);
  const del = (x) => r.cmd('FCALL', 'movexd_delete', 5, x.head, x.log, x.keys[2], x.keys[3], x.snap, x.ch);
  assert.deepEqual(await del(rm), ['deleted', 'cc33']);
  assert.equal(await sub.nextMessage(), 'delete cc33');
  for (const k of [rm.head, rm.log, rm.keys[2], rm.keys[3], rm.snap]) assert.equal(await r.ok('EXISTS', k), 0, k);
  assert.deepEqual(await del(rm), ['none']);
  // a room from before incarnations: "delete " + nothing
  const old = await created();
  assert.deepEqual(await del(old), ['deleted', '']);
  sub.close();
  const e = await r.cmd('FCALL', 'movexd_delete', 1, rm.head, rm.ch);
  assert.ok(e instanceof Error && /bad arguments/.test(e.message), String(e));
});

test('applies get gap-free seqs (IDs seq-0), effects verbatim, a hash chain over the published bytes', async () => {
  const rm = await created();
  const sub = await redis.connect();
  await sub.subscribe(rm.ch);
  // 2^53+ digits and a long fraction: a decode/encode would change them
  const body = '[{"op":"replace","path":"/x","value":12345678901234567890123.000000000001}]';
  const rep = await append(rm, [0, 0, 'S0'], [act('c1', 1, 'a', 'S1', body), act('c2', 9007199254740990, 'a', 'S2', '[]')]);
  const e1 = `{"c":"c1","n":1,"k":"a","sum":"S1","t":1700000000000,"e":${body}}`;
  const e2 = '{"c":"c2","n":9007199254740990,"k":"a","sum":"S2","t":1700000000000,"e":[]}';
  const h1 = sha1(` 1-0 ${e1}`), h2 = sha1(`${h1} 2-0 ${e2}`);
  assert.deepEqual(rep, ['2', '0', 'S2', h2, 'ack 1', 'ack 2']);
  assert.deepEqual(await r.ok('XRANGE', rm.log, '-', '+'), [['1-0', ['e', e1, 'h', h1]], ['2-0', ['e', e2, 'h', h2]]]);
  assert.equal(await sub.nextMessage(), `1-0 ${h1} ${e1}`);
  assert.equal(await sub.nextMessage(), `2-0 ${h2} ${e2}`);
  sub.close();
  // the next batch must name the new head
  assert.deepEqual(await append(rm, [2, 0, 'S2'], [act('c1', 2, 'a', 'S3', '[]')]), ['3', '0', 'S3', sha1(`${h2} 3-0 {"c":"c1","n":2,"k":"a","sum":"S3","t":1700000000000,"e":[]}`), 'ack 3']);
});

test('a moved head refuses the whole batch and writes nothing; two nodes racing: one wins', async () => {
  const rm = await created();
  await append(rm, [0, 0, 'S0'], [act('c1', 1, 'a', 'S1', '[]')]);
  for (const stale of [[0, 0, 'S0'], [1, 0, 'SX'], [1, 1, 'S1']]) {
    const rep = await append(rm, stale, [act('c2', 1, 'a', 'S2', '[]'), act('c2', 2, 'r', 'test_failed')]);
    assert.deepEqual(rep.slice(4), ['moved', 'moved']);
    assert.deepEqual(rep.slice(0, 3), ['1', '0', 'S1']);
  }
  assert.equal(await r.ok('XLEN', rm.log), 1);
  // both decided on head 1: pipelined on one link, so both reach Redis
  const [a, b] = await Promise.all([
    append(rm, [1, 0, 'S1'], [act('nodeA', 1, 'a', 'SA', '[]')]),
    append(rm, [1, 0, 'S1'], [act('nodeB', 1, 'a', 'SB', '[]')]),
  ]);
  assert.deepEqual([a[4], b[4]], ['ack 2', 'moved']);
  assert.equal(await r.ok('XLEN', rm.log), 2);
});

// Taking turns (cluster_fn.lua): a node refused because the head moved
// gets the room's turn; another node's batch on the current head is then
// answered moved with the head unchanged and nothing written (a yield);
// the holder's append goes in and ends the turn, or hands it to the node
// refused meanwhile (next in line); a turn older than
// TURN_MS is not honoured; callers that do not name a node never yield.
// (The turn's time is set by hand where the test needs it fresh or stale.)
test('turns: the node that lost a race appends next; the others yield meanwhile', async () => {
  const rm = await created();
  const t = { inc: '' };
  assert.deepEqual((await append(rm, [0, 0, 'S0'], [act('a', 1, 'a', 'S1', '[]')], { ...t, turn: 'nA' })).slice(4, 5), ['ack 1']);
  // nB decided on 0: refused, and takes the turn
  assert.deepEqual((await append(rm, [0, 0, 'S0'], [act('b', 1, 'a', 'SB', '[]')], { ...t, turn: 'nB' })).slice(4, 5), ['moved']);
  assert.equal(await r.ok('HGET', rm.head, 'turn'), 'nB');
  // (kept fresh for the test whatever the machine's speed: TURN_MS is short)
  await r.ok('HSET', rm.head, 'turn_ms', String(Date.now() + 3600e3));
  // nA's next batch on the current head yields: head unchanged, nothing written
  const y = await append(rm, [1, 0, 'S1'], [act('a', 2, 'a', 'S2', '[]'), act('a', 3, 'a', 'S3', '[]')], { ...t, turn: 'nA' });
  assert.deepEqual(y.slice(0, 3), ['1', '0', 'S1']);
  assert.deepEqual(y.slice(4, 6), ['moved', 'moved']);
  assert.equal(await r.ok('XLEN', rm.log), 1);
  // a third node refused meanwhile does not take nB's fresh turn: it is
  // next in line
  await append(rm, [0, 0, 'S0'], [act('c', 1, 'a', 'SC', '[]')], { ...t, turn: 'nC' });
  assert.deepEqual(await r.ok('HMGET', rm.head, 'turn', 'next'), ['nB', 'nC']);
  // nB on the fresh head: appended, its turn passes to nC at once
  assert.deepEqual((await append(rm, [1, 0, 'S1'], [act('b', 1, 'a', 'S2', '[]')], { ...t, turn: 'nB' })).slice(4, 5), ['ack 2']);
  assert.deepEqual(await r.ok('HMGET', rm.head, 'turn', 'next'), ['nC', null]);
  await r.ok('HSET', rm.head, 'turn_ms', String(Date.now() + 3600e3));
  // so nA, whose next batch raced nC's, yields again; nC appends, the turn ends
  assert.deepEqual((await append(rm, [2, 0, 'S2'], [act('a', 2, 'a', 'S3', '[]')], { ...t, turn: 'nA' })).slice(4, 5), ['moved']);
  assert.deepEqual((await append(rm, [2, 0, 'S2'], [act('c', 1, 'a', 'S3', '[]')], { ...t, turn: 'nC' })).slice(4, 5), ['ack 3']);
  assert.deepEqual(await r.ok('HMGET', rm.head, 'turn', 'turn_ms', 'next'), [null, null, null]);
  assert.deepEqual((await append(rm, [3, 0, 'S3'], [act('a', 2, 'a', 'S4', '[]')], { ...t, turn: 'nA' })).slice(4, 5), ['ack 4']);
  // a stale turn (its holder never came back) is not honoured, nor is its line
  await append(rm, [0, 0, 'S0'], [act('b', 2, 'a', 'SX', '[]')], { ...t, turn: 'nB' });
  assert.equal(await r.ok('HGET', rm.head, 'turn'), 'nB');
  await r.ok('HSET', rm.head, 'turn_ms', String(Date.now() + 3600e3));
  await append(rm, [0, 0, 'S0'], [act('c', 2, 'a', 'SX', '[]')], { ...t, turn: 'nC' });
  assert.equal(await r.ok('HGET', rm.head, 'next'), 'nC');
  await r.ok('HSET', rm.head, 'turn_ms', '0');
  assert.deepEqual((await append(rm, [4, 0, 'S4'], [act('a', 3, 'a', 'S5', '[]')], { ...t, turn: 'nA' })).slice(4, 5), ['ack 5']);
  assert.deepEqual(await r.ok('HMGET', rm.head, 'turn', 'next'), [null, null]);
  // without a node named, no turn is taken and none is honoured
  await append(rm, [0, 0, 'S0'], [act('b', 2, 'a', 'SX', '[]')], { ...t, turn: 'nB' });
  assert.deepEqual((await append(rm, [5, 0, 'S5'], [act('a', 4, 'a', 'S6', '[]')], t)).slice(4, 5), ['ack 6']);
  await append(rm, [0, 0, 'S0'], [act('b', 2, 'a', 'SX', '[]')], t);
  assert.equal(await r.ok('HGET', rm.head, 'turn'), 'nB'); // (untouched by a caller without turns)
  const e = await append(rm, [6, 0, 'S6'], [act('a', 5, 'a', 'S7', '[]')], { ...t, turn: '' });
  assert.ok(e instanceof Error && /bad arguments/.test(e.message), String(e));
});

// Restoring after a rollback (cluster_fn.lua RESTORE_MS): a batch decided
// on a head Redis no longer has marks that head; until the log is back
// there, batches naming a node yield (all moved, nothing written) while
// the journals' replays (naming none) append; a mark past RESTORE_MS is
// not honoured. The lost tail is played by hand: the room is at 1, a node
// "had" 3 (seqs 2 and 3 lost, one from each of two nodes).
test('restoring: a head Redis lost holds new decisions until the replays are back there', async () => {
  const rm = await created();
  const t = { inc: '' };
  assert.deepEqual((await append(rm, [0, 0, 'S0'], [act('a', 1, 'a', 'S1', '[]')], t)).slice(4, 5), ['ack 1']);
  // nB's batch on 3-0 (it had acks at 2 and 3): refused, the mark is 3-0
  assert.deepEqual((await append(rm, [3, 0, 'S3'], [act('b', 9, 'a', 'S4', '[]')], { ...t, turn: 'nB' })).slice(4, 5), ['moved']);
  assert.deepEqual(await r.ok('HMGET', rm.head, 'restore_seq', 'restore_sub'), ['3', '0']);
  // a lower head of another node does not lower it
  await append(rm, [2, 0, 'S2'], [act('a', 9, 'a', 'SX', '[]')], { ...t, turn: 'nA' });
  assert.deepEqual(await r.ok('HMGET', rm.head, 'restore_seq', 'restore_sub'), ['3', '0']);
  const noTurn = () => r.ok('HDEL', rm.head, 'turn', 'turn_ms', 'next'); // (only the mark is tested)
  await noTurn();
  // nA restored its part (a replay names no node): at 2
  assert.deepEqual((await append(rm, [1, 0, 'S1'], [act('a', 2, 'a', 'S2', '[]')], t)).slice(4, 5), ['ack 2']);
  // nA's new decision on 2 yields: seq 3 is nB's to restore
  const y = await append(rm, [2, 0, 'S2'], [act('a', 3, 'a', 'S3x', '[]')], { ...t, turn: 'nA' });
  assert.deepEqual(y.slice(0, 5), ['2', '0', 'S2', y[3], 'moved']);
  assert.equal(await r.ok('XLEN', rm.log), 2);
  // nB's replay puts 3 back; then new decisions go on, and the mark goes
  assert.deepEqual((await append(rm, [2, 0, 'S2'], [act('b', 1, 'a', 'S3', '[]')], t)).slice(4, 5), ['ack 3']);
  assert.deepEqual((await append(rm, [3, 0, 'S3'], [act('a', 3, 'a', 'S4', '[]')], { ...t, turn: 'nA' })).slice(4, 5), ['ack 4']);
  assert.deepEqual(await r.ok('HMGET', rm.head, 'restore_seq', 'restore_sub', 'restore_ms'), [null, null, null]);
  // a mark nobody restores holds for RESTORE_MS only
  await append(rm, [9, 0, 'S9'], [act('b', 9, 'a', 'SX', '[]')], { ...t, turn: 'nB' });
  assert.equal(await r.ok('HGET', rm.head, 'restore_seq'), '9');
  await noTurn();
  assert.deepEqual((await append(rm, [4, 0, 'S4'], [act('a', 4, 'a', 'S5', '[]')], { ...t, turn: 'nA' })).slice(4, 5), ['moved']);
  await r.ok('HSET', rm.head, 'restore_ms', '0');
  assert.deepEqual((await append(rm, [4, 0, 'S4'], [act('a', 4, 'a', 'S5', '[]')], { ...t, turn: 'nA' })).slice(4, 5), ['ack 5']);
  assert.equal(await r.ok('HGET', rm.head, 'restore_seq'), null);
});

test('rejects are recorded at seq-k without moving seq; the next apply is seq+1-0', async () => {
  const rm = await created();
  await append(rm, [0, 0, 'S0'], [act('c1', 1, 'a', 'S1', '[]')]);
  const rep = await append(rm, [1, 0, 'S1'], [act('c1', 2, 'r', 'test_failed'), act('c2', 1, 'r', 'too_large'), act('c1', 3, 'a', 'S2', '[]')]);
  assert.deepEqual(rep.slice(0, 3), ['2', '0', 'S2']);
  assert.deepEqual(rep.slice(4), ['reject test_failed', 'reject too_large', 'ack 2']);
  const ids = (await r.ok('XRANGE', rm.log, '-', '+')).map((x) => x[0]);
  assert.deepEqual(ids, ['1-0', '1-1', '1-2', '2-0']);
  assert.equal((await r.ok('XRANGE', rm.log, '1-1', '1-1'))[0][1][1], '{"c":"c1","n":2,"k":"r","code":"test_failed","t":1700000000000}');
});

test('exactly-once across nodes: a resent (client, n) gets its first outcome, whichever node asks', async () => {
  const rm = await created();
  await append(rm, [0, 0, 'S0'], [act('c1', 1, 'a', 'S1', '[]'), act('c1', 3, 'r', 'bad_patch')]);
  const head = [1, 1, 'S1'];
  // another node, not knowing, decided the resend as new: the library's memory wins,
  // and what that node chained after it is moved
  let rep = await append(rm, head, [act('c1', 1, 'a', 'S9', '[]'), act('c2', 1, 'a', 'S10', '[]')]);
  assert.deepEqual(rep.slice(4), ['dup ack 1', 'moved']);
  rep = await append(rm, head, [act('c1', 3, 'a', 'S9', '[]')]);
  assert.deepEqual(rep.slice(4), ['dup reject bad_patch']);
  // n 2 was skipped (never decided, at or below the highest): too_old
  rep = await append(rm, head, [act('c1', 2, 'a', 'S9', '[]')]);
  assert.deepEqual(rep.slice(4), ['too_old']);
  assert.equal(await r.ok('XLEN', rm.log), 2);
  assert.deepEqual(rep.slice(0, 3), ['1', '1', 'S1']);
});

test('dep: after a rejected dep the action is rejected after_reject (recorded); an undecided dep is bad_dep (n not used)', async () => {
  const rm = await created();
  await append(rm, [0, 0, 'S0'], [act('c1', 1, 'r', 'test_failed'), act('c1', 2, 'a', 'S1', '[]')]);
  let h = [1, 0, 'S1'];
  // the node applied n 3 built on the rejected n 1: the library rejects it
  let rep = await append(rm, h, [act('c1', 3, 'a', 'SX', '[]', { deps: '2,1' }), act('c1', 4, 'a', 'SY', '[]')]);
  assert.deepEqual(rep.slice(4), ['reject after_reject', 'moved']);
  assert.deepEqual(rep.slice(0, 3), ['1', '1', 'S1']);
  h = [1, 1, 'S1'];
  // the node agreeing is fine, and a dep on n 6 not decided yet is bad_dep, not recorded
  rep = await append(rm, h, [act('c1', 4, 'r', 'after_reject', '', { deps: '3' }), act('c1', 7, 'a', 'SZ', '[]', { deps: '6' })]);
  assert.deepEqual(rep.slice(4), ['reject after_reject', 'bad_dep']);
  h = rep.slice(0, 3);
  assert.deepEqual(h, ['1', '2', 'S1']);
  // once 6 is decided, 7 goes through with the same n
  rep = await append(rm, h, [act('c1', 6, 'a', 'S2', '[]'), act('c1', 7, 'a', 'S3', '[]', { deps: '6' })]);
  assert.deepEqual(rep.slice(4), ['ack 2', 'ack 3']);
});

test('strict: a base that is not the head seq is rejected stale', async () => {
  const rm = await created();
  await append(rm, [0, 0, 'S0'], [act('c1', 1, 'a', 'S1', '[]')]);
  let rep = await append(rm, [1, 0, 'S1'], [act('c2', 1, 'a', 'SX', '[]', { strict: '1', base: 0 })]);
  assert.deepEqual(rep.slice(4), ['reject stale']);
  rep = await append(rm, rep.slice(0, 3), [act('c2', 2, 'a', 'S2', '[]', { strict: '1', base: 1 })]);
  assert.deepEqual(rep.slice(4), ['ack 2']);
});

test('the exactly-once memory keeps the last `window` outcomes per client', async () => {
  const rm = await created();
  const acts = [1, 2, 3, 4].map((n) => act('c1', n, 'r', 'test_failed'));
  let rep = await append(rm, [0, 0, 'S0'], acts, { window: 2 });
  assert.deepEqual(rep.slice(0, 2), ['0', '4']);
  const h = rep.slice(0, 3);
  // one per call: a verdict that differs from the node's moves the rest of a batch
  assert.deepEqual((await append(rm, h, [act('c1', 2, 'r', 'x')], { window: 2 })).slice(4), ['too_old']);
  assert.deepEqual((await append(rm, h, [act('c1', 3, 'r', 'x')], { window: 2 })).slice(4), ['dup reject test_failed']);
});

test('the memory stays within the window when a client skips ahead', async () => {
  const rm = await created();
  const dd = rm.keys[3];
  let rep = await append(rm, [0, 0, 'S0'], [1, 2, 3].map((n) => act('c1', n, 'r', 'test_failed')), { window: 3 });
  // a jump from 3 to 10: 1, 2 and 3 are all at or below 10 - 3 and go
  rep = await append(rm, rep.slice(0, 3), [act('c1', 10, 'r', 'test_failed'), act('c2', 1, 'r', 'x')], { window: 3 });
  assert.deepEqual((await r.ok('HKEYS', dd)).sort(), ['c1:10', 'c2:1']);
  rep = await append(rm, rep.slice(0, 3), [11, 12, 13].map((n) => act('c1', n, 'r', 'test_failed')), { window: 3 });
  assert.deepEqual((await r.ok('HKEYS', dd)).sort(), ['c1:11', 'c1:12', 'c1:13', 'c2:1']);
  assert.deepEqual((await append(rm, rep.slice(0, 3), [act('c1', 10, 'r', 'x')], { window: 3 })).slice(4), ['too_old']);
});

test('bad arguments are refused before any write', async () => {
  const rm = await created();
  const good = act('c1', 1, 'a', 'S1', '[]');
  for (const bad of [act('', 2, 'a', 'S', '[]'), act('c1', 0, 'a', 'S', '[]'), act('c1', 2.5, 'a', 'S', '[]'),
    act('c1', 2, 'x', 'S', '[]'), act('c1', 2, 'a', 'S', ''), act('c1', 2, 'a', '', '[]'),
    act('c1', 2, 'a', 'S', '[]', { deps: '2' }), act('c1', 2, 'a', 'S', '[]', { deps: 'x' }),
    act('c1', 2, 'a', 'S', '[]', { strict: 'yes' })]) {
    const e = await append(rm, [0, 0, 'S0'], [good, bad]);
    assert.ok(e instanceof Error && /bad (action|dep) 2/.test(e.message), `${bad} => ${e}`);
  }
  const e = await r.cmd('FCALL', 'movexd_append', 4, ...rm.keys, rm.ch, 1024, 0, 0, 'S0', 1, 2, ...good);
  assert.ok(e instanceof Error && /bad arguments/.test(e.message));
  assert.equal(await r.ok('XLEN', rm.log), 0);
  assert.deepEqual(await r.ok('HGETALL', rm.head), ['seq', '0', 'sub', '0', 'sum', 'S0', 'hash', '', 'init', '{}']);
});

// ---- snapshots (movexd_snapshot) ----

// A room with `count` applied entries (sums S1..Scount) and, after entry
// `rejectAt`, one recorded reject; resolves with the head reply.
async function grown(count, { rejectAt = 0 } = {}) {
  const rm = await created();
  const acts = [];
  for (let i = 1; i <= count; i++) {
    acts.push(act('c1', acts.length + 1, 'a', `S${i}`, '[]'));
    if (i === rejectAt) acts.push(act('c1', acts.length + 1, 'r', 'test_failed'));
  }
  let head = ['0', '0', 'S0'];
  for (let i = 0; i < acts.length; i += 500) {
    const rep = await append(rm, head, acts.slice(i, i + 500));
    head = rep.slice(0, 4);
  }
  return { rm, head };
}

// The chain hash the stream holds after entry id (field h).
async function hashAt(rm, id) {
  const [[, f]] = await r.ok('XRANGE', rm.log, id, id);
  return f[f.indexOf('h') + 1];
}

const snap = (rm, seq, sub, hash, sum, { keep = 10, data = 'DATA', now = 1 } = {}) =>
  r.cmd('FCALL', 'movexd_snapshot', 3, rm.head, rm.log, rm.snap, seq, sub, hash, sum, keep, data, now);

test('snapshot: stored at an ID whose hash and sum match the stream; the stored data is verbatim', async () => {
  const { rm } = await grown(30);
  const data = 'bytes \u0000\u0001\r\n\u00ff and {"json": true}';
  assert.deepEqual(await snap(rm, 20, 0, await hashAt(rm, '20-0'), 'S20', { keep: 100, data }), ['stored', '20', '0', 0]);
  const got = await r.ok('HGETALL', rm.snap);
  const f = Object.fromEntries(got.map((v, i) => [v, got[i + 1]]).filter((_, i) => i % 2 === 0));
  assert.equal(f.seq, '20');
  assert.equal(f.sub, '0');
  assert.equal(f.sum, 'S20');
  assert.equal(f.hash, await hashAt(rm, '20-0'));
  assert.equal(f.data, data);
  assert.equal(await r.ok('XLEN', rm.log), 30); // keep 100: nothing to trim
});

test('snapshot: a stale one (older or the same ID) is refused whichever node sends it, the newer stays', async () => {
  const { rm } = await grown(50);
  const [h30, h40] = [await hashAt(rm, '30-0'), await hashAt(rm, '40-0')];
  // two nodes race: the one at 40 lands first; the one at 30 is refused
  const [x, y] = await Promise.all([snap(rm, 40, 0, h40, 'S40', { data: 'forty' }), snap(rm, 30, 0, h30, 'S30', { data: 'thirty' })]);
  assert.deepEqual(x.slice(0, 3), ['stored', '40', '0']);
  assert.deepEqual(y.slice(0, 3), ['stale', '40', '0']);
  assert.deepEqual((await snap(rm, 40, 0, h40, 'S40', { data: 'again' })).slice(0, 3), ['stale', '40', '0']);
  assert.equal(await r.ok('HGET', rm.snap, 'data'), 'forty');
});

test('snapshot: a hash or sum that is not the stream\'s, or an ID not in it, stores nothing', async () => {
  const { rm } = await grown(20, { rejectAt: 10 });
  const h10 = await hashAt(rm, '10-0');
  assert.deepEqual(await snap(rm, 10, 0, 'a'.repeat(40), 'S10'), ['mismatch', '0', '0', 0]);
  assert.deepEqual(await snap(rm, 10, 0, h10, 'S9'), ['mismatch', '0', '0', 0]); // a forked replica's state
  assert.deepEqual(await snap(rm, 10, 5, h10, 'S10'), ['gone', '0', '0', 0]);
  assert.deepEqual(await snap(rm, 99, 0, h10, 'S10'), ['gone', '0', '0', 0]);
  assert.equal(await r.ok('EXISTS', rm.snap), 0);
  // at a recorded reject's ID (10-1) the hash is what counts
  assert.deepEqual((await snap(rm, 10, 1, await hashAt(rm, '10-1'), 'S10')).slice(0, 3), ['stored', '10', '1']);
  for (const bad of [[0, 0, h10, 'S'], [10, 0, 'xyz', 'S10'], [10, 0, h10, ''], [1.5, 0, h10, 'S1']]) {
    const e = await snap(rm, ...bad);
    assert.ok(e instanceof Error && /bad arguments/.test(e.message), `${bad} => ${e}`);
  }
  const e = await r.cmd('FCALL', 'movexd_snapshot', 3, rm.head, rm.log, rm.snap, 10, 0, h10, 'S10', 10, '', 1);
  assert.ok(e instanceof Error && /bad arguments/.test(e.message));
  assert.deepEqual((await r.ok('HMGET', rm.snap, 'seq', 'sub')), ['10', '1']);
});

test('snapshot: XTRIM MINID ~ keeps at least `keep` applied entries behind it, and the stream stays bounded', async () => {
  const { rm } = await grown(3000);
  const rep = await snap(rm, 2500, 0, await hashAt(rm, '2500-0'), 'S2500', { keep: 200 });
  assert.deepEqual(rep.slice(0, 3), ['stored', '2500', '0']);
  const first = (await r.ok('XRANGE', rm.log, '-', '+', 'COUNT', 1))[0][0];
  const firstSeq = Number(first.split('-')[0]);
  // never past MINID (2301): every entry from there on is still there
  assert.ok(firstSeq <= 2301, `first entry ${first}`);
  const len = await r.ok('XLEN', rm.log);
  assert.equal(len, 3000 - rep[3]);
  // ~ trims whole stream nodes (stream-node-max-entries, 100 by default): at most one node more
  const nodeMax = Number((await r.ok('CONFIG', 'GET', 'stream-node-max-entries'))[1]);
  assert.ok(firstSeq > 2301 - nodeMax, `first entry ${first}: trimmed too little`);
  assert.ok(len <= 3000 - 2300 + nodeMax, `XLEN ${len}`);
  // the entries from the snapshot on are whole: a loader reads (2500-0 .. + and finds 2501..3000
  const after = await r.ok('XRANGE', rm.log, '(2500-0', '+');
  assert.equal(after.length, 500);
  assert.equal(after[0][0], '2501-0');
});
