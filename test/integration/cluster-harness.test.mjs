// The multi-node harness itself (test/integration/cluster-lib.mjs), with
// Redis only: a primary, a replica and three Sentinels come up on free
// loopback ports; kill -9 of the primary makes the Sentinels fail over to
// the replica, which has what WAIT 1 acknowledged and takes writes; the
// old primary restarted is turned into a replica of the new one. And the
// invariant checker: it passes a log the library wrote, and names each
// broken invariant (a gap, a (client, n) twice, a hash chain that does not
// verify, a head that is not the last entry, a node ahead of the log or
// with another checksum at a seq).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, ASAN, TIMEOUT } from './lib.mjs';
import {
  startRedisGroup, startRedisServer, stopAll, until, redisAt, checkInvariants, checkRoomLog,
  listRooms, missingAcks, PREFIX,
} from './cluster-lib.mjs';

after(stopAll);
// Redis only: nothing of movexd's runs here, so the sanitizer run skips it
const opts = { skip: ASAN && 'no movexd process: covered by the release run' };

test('Sentinel fails over when the primary is killed; the old primary comes back as a replica', opts, async () => {
  const g = await startRedisGroup({ replicas: 1, sentinels: 3 });
  try {
    const old = g.primary, rep = g.replicas[0];
    assert.equal(await g.masterPort(), old.port);
    assert.equal(await old.role(), 'master');
    assert.equal(await rep.role(), 'slave');
    assert.equal(await old.cmd('SET', 'k', 'v1'), 'OK');
    assert.equal(await old.cmd('WAIT', 1, 10000), 1); // the replica has it
    await old.kill('SIGKILL');
    const np = await g.waitFailover(old.port);
    assert.equal(np, rep);
    assert.equal(g.primary.port, rep.port);
    assert.equal(await np.cmd('GET', 'k'), 'v1');
    assert.equal(await np.cmd('SET', 'k', 'v2'), 'OK');
    // the old primary restarted (same port and directory) is told by the
    // Sentinels to follow the new one, and gets its data. Sentinel waits on
    // purpose before it converts a returning master: the instance must be
    // up and report its role for 8 s (4 publish periods), and Sentinel
    // reads a replica's INFO every 10 s - about 20 s on an idle machine
    // (24 s measured for the whole test), so the wait is generous
    await old.start();
    await until(async () => (await old.role()) === 'slave' && (await old.cmd('GET', 'k')) === 'v2', 'old primary becomes a replica of the new one', 9 * TIMEOUT);
    assert.equal(await g.masterPort(), rep.port);
  } finally {
    await g.stop();
  }
});

test('SENTINEL FAILOVER moves the primary without a failure; SIGSTOP/SIGCONT of a replica', opts, async () => {
  const g = await startRedisGroup({ replicas: 1, sentinels: 3 });
  try {
    const old = g.primary.port;
    const np = await g.forceFailover();
    assert.notEqual(np.port, old);
    assert.equal(await np.role(), 'master');
    await until(async () => (await redisAt(old, 'ROLE'))[0] === 'slave', 'the old primary follows');
    const r = g.replicas[0];
    r.signal('SIGSTOP');
    assert.ok((await np.cmd('SET', 'x', '1')) === 'OK');
    r.signal('SIGCONT');
    await until(async () => (await r.cmd('GET', 'x')) === '1', 'the replica catches up after SIGCONT');
  } finally {
    await g.stop();
  }
});

const LIB = readFileSync(join(ROOT, 'src/cluster_fn.lua'), 'utf8');

// FCALL movexd_append of one action on the room's current head.
async function append(port, room, client, n, kind, what, body = '[]') {
  const k = (s) => `${PREFIX}{${room}}:${s}`;
  const h = await redisAt(port, 'HMGET', k('head'), 'seq', 'sub', 'sum');
  return redisAt(port, 'FCALL', 'movexd_append', 4, k('head'), k('log'), k('hi'), k('dd'), k('ch'), 1024,
    h[0], h[1], h[2], 1700000000000, 1, client, n, '', '0', 0, kind, what, kind === 'a' ? body : '');
}

test('the invariant checker passes a log the library wrote and names each broken invariant', opts, async () => {
  const rs = await startRedisServer();
  try {
    const p = rs.port;
    assert.equal(await rs.cmd('FUNCTION', 'LOAD', 'REPLACE', LIB), 'movexd');
    const k = (room, s) => `${PREFIX}{${room}}:${s}`;
    for (const room of ['t:ok', 't:gap', 't:dup', 't:hash', 't:head', 't:hf']) {
      assert.equal((await redisAt(p, 'FCALL', 'movexd_create', 1, k(room, 'head'), 'S0'))[0], 'created');
      assert.equal((await append(p, room, 'c1', 1, 'a', 'S1'))[4], 'ack 1');
      assert.equal((await append(p, room, 'c2', 1, 'r', 'stale'))[4], 'reject stale');
      assert.equal((await append(p, room, 'c1', 2, 'a', 'S2'))[4], 'ack 2');
    }
    assert.equal((await redisAt(p, 'FCALL', 'movexd_create', 1, k('t:empty', 'head'), 'S0'))[0], 'created');
    assert.deepEqual(await listRooms(p), ['t:dup', 't:empty', 't:gap', 't:hash', 't:head', 't:hf', 't:ok']);

    const good = await checkInvariants(p, { rooms: ['t:ok', 't:empty'] });
    const ok = good.rooms.get('t:ok');
    assert.equal(ok.seq, 2);
    assert.equal(ok.entries, 3);
    assert.deepEqual([...ok.sumAt], [[1, 'S1'], [2, 'S2']]);
    assert.deepEqual(ok.byAction.get('c2 1'), { id: '1-1', seq: 1, kind: 'r', code: 'stale' });
    assert.deepEqual(missingAcks(good, 't:ok', [{ client: 'c1', n: 1, seq: 1 }, { client: 'c1', n: 2, seq: 2 }], { sameSeq: true }), []);
    assert.deepEqual(missingAcks(good, 't:ok', [{ client: 'c1', n: 3 }, { client: 'c2', n: 1 }]), [{ client: 'c1', n: 3 }, { client: 'c2', n: 1 }]);
    assert.deepEqual([...good.rooms.get('t:empty').sumAt], [[0, 'S0']]);

    // nodes: stand-ins answering what GET /admin/rooms/ROOM would
    const node = (id, seq, checksum) => ({ id, room: async (r) => (r === 't:ok' ? { seq, checksum } : null) });
    await checkInvariants(p, { rooms: ['t:ok'], nodes: [node('a', 1, 'S1'), node('b', 2, 'S2'), node('c', 0, 'X')] });
    await assert.rejects(checkInvariants(p, { rooms: ['t:ok'], nodes: [node('a', 2, 'S2'), node('b', 2, 'SX')] }),
      /node b has checksum SX at seq 2, the log has S2/);
    await assert.rejects(checkInvariants(p, { rooms: ['t:ok'], nodes: [node('a', 3, 'S3')] }),
      /node a is at seq 3, beyond the log's head 2/);

    // each broken invariant, made by writing around the library
    await redisAt(p, 'XADD', k('t:gap', 'log'), '4-0', 'e', '{"c":"c1","n":3,"k":"a","sum":"S4","t":1,"e":[]}');
    await assert.rejects(checkRoomLog(p, 't:gap'), /gap: 4-0 after 2-0/);
    await redisAt(p, 'XADD', k('t:dup', 'log'), '3-0', 'e', '{"c":"c1","n":2,"k":"a","sum":"S3","t":1,"e":[]}');
    await assert.rejects(checkRoomLog(p, 't:dup'), /\(client c1, n 2\) logged twice: 2-0 and 3-0/);
    await redisAt(p, 'HSET', k('t:hash', 'head'), 'hash', '0'.repeat(40));
    await assert.rejects(checkRoomLog(p, 't:hash'), /hash chain/);
    // an entry whose own h field is not the chain (the head agrees with it)
    await redisAt(p, 'XADD', k('t:hf', 'log'), '3-0', 'e', '{"c":"c1","n":3,"k":"a","sum":"S3","t":1,"e":[]}', 'h', 'f'.repeat(40));
    await redisAt(p, 'HSET', k('t:hf', 'head'), 'seq', '3', 'sum', 'S3', 'hash', 'f'.repeat(40));
    await assert.rejects(checkRoomLog(p, 't:hf'), /hash chain: entry 3-0 carries f{40}, the chain gives/);
    await redisAt(p, 'HSET', k('t:head', 'head'), 'seq', '1');
    await assert.rejects(checkRoomLog(p, 't:head'), /head 1-0 is not the last entry 2-0/);
    await assert.rejects(checkInvariants(p), /room t:dup: .* logged twice/); // all rooms, in order
  } finally {
    await rs.cleanup();
  }
});
