// Cluster mode under failures (issue #14, docs/CLUSTER.md), with the
// multi-node harness (cluster-lib.mjs): movexd nodes over Redis, clients
// that keep writing through the failure and come back on another node with
// `since`, resending what was not answered (the same n: exactly-once makes
// that safe). After each failure the invariant checker reads every room's
// stream: gap-free seqs, each (client, n) once, the hash chain, every
// node's checksum at its seq = the log's; and every acked action is in the
// log. Everything is started on free loopback ports and stopped by PID.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startRedisGroup, startNode, stopAll, checkInvariants, waitConverged, missingAcks, until,
} from './cluster-lib.mjs';
import { Client, TIMEOUT, patchAction, httpRequest, waitFor } from './lib.mjs';

after(stopAll);

async function ready(d) {
  await waitFor(async () => (await httpRequest(d, { path: '/readyz' }).catch(() => ({}))).status === 200, `/readyz of ${d.id}`, 3 * TIMEOUT);
}

async function nodes(g, n, opts) {
  const out = [];
  for (let i = 1; i <= n; i++) {
    const d = await startNode(g, `n${i}`, opts);
    await ready(d);
    out.push(d);
  }
  return out;
}

const alive = (d) => d.proc.exitCode === null && d.proc.signalCode === null && !d.stopped;

// A client that writes n = 1, 2, ... to one room and survives its node:
// on a close, a timeout or `unavailable` it moves to the next live node,
// subscribes with since = the last (seq, checksum) it saw and resends the
// action it had no answer for. acks: {client, n, seq} of each ack.
class Writer {
  constructor(name, room, nodeList, at) {
    Object.assign(this, { name, room, nodeList, at, n: 0, acks: [], since: null, moves: 0, c: null });
  }

  async connect() {
    for (let tries = 0; ; tries++) {
      const d = this.nodeList[this.at % this.nodeList.length];
      if (alive(d)) {
        try {
          const c = await Client.connect(d.url);
          await c.hello(this.name);
          const s = await c.request({ type: 'subscribe', room: this.room, ...(this.since ? { since: this.since } : {}) });
          if (s.type === 'snapshot' || s.type === 'actions') {
            this.c = c;
            this.node = d;
            this.c.ws.on('message', (data) => this.saw(JSON.parse(String(data))));
            this.saw(s);
            return;
          }
          c.close();
        } catch { /* that node is going: try the next */ }
      }
      this.at++;
      this.moves++;
      if (tries > 50) throw new Error(`${this.name}: no node to connect to`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  saw(m) {
    if (m.room !== this.room) return;
    if (m.type === 'snapshot' || ((m.type === 'ack' || m.type === 'fwd') && (!this.since || m.seq > this.since.seq))) {
      this.since = { seq: m.seq, checksum: m.checksum };
    } else if (m.type === 'actions' && m.actions.length) {
      const last = m.actions[m.actions.length - 1];
      this.since = { seq: last.seq, checksum: last.checksum };
    }
  }

  // Write the next action until it is acked (any node); pad: a string of
  // that many bytes as the value.
  async write(pad = 0) {
    const n = ++this.n;
    const value = pad ? 'x'.repeat(pad) : n;
    for (let attempt = 0; attempt < 200; attempt++) {
      if (!this.c) await this.connect();
      const id = this.c.nextId++;
      this.c.send({ ...patchAction(this.room, n, [{ op: 'add', path: `/${this.name}_${n}`, value }]), id });
      const r = await Promise.race([
        this.c.next((m) => m.id === id, `reply ${n}`).catch(() => null),
        this.c.closed.then(() => null),
      ]);
      if (r && r.type === 'ack') {
        this.acks.push({ client: this.name, n, seq: r.seq });
        return r;
      }
      if (r && !(r.type === 'reject' && r.code === 'unavailable')) throw new Error(`${this.name} n=${n}: ${JSON.stringify(r)}`);
      // no answer, closed or unavailable: another node (or this one again)
      this.c.close();
      this.c = null;
      this.at++;
      this.moves++;
    }
    throw new Error(`${this.name}: n=${n} never acked`);
  }

  close() { return this.c?.close(); }
}

// Every writer writes count actions; during() runs once, right after the
// first writer sent its action number count/3 (so that one is in flight:
// its ack may or may not have left the node).
async function writeAll(writers, count, during) {
  await Promise.all(writers.map(async (w, i) => {
    for (let k = 0; k < count; k++) {
      const p = w.write();
      if (i === 0 && k === Math.floor(count / 3)) await during();
      await p;
    }
  }));
}

// The final check: invariants over the rooms, every node converged to the
// head (same checksum as the log there), every ack in the log.
async function checkAll(g, liveNodes, room, writers, { sameSeq = true } = {}) {
  await waitConverged(g.primary.port, liveNodes, [room]);
  const res = await checkInvariants(g.primary.port, { rooms: [room], nodes: liveNodes });
  const acks = writers.flatMap((w) => w.acks);
  assert.deepEqual(missingAcks(res, room, acks, { sameSeq }), [], 'every acked action is in the log');
  const r = res.rooms.get(room);
  assert.equal(r.seq, acks.length, 'one entry per acked action, no more');
  return res;
}

test('kill -9 a node: its clients resume on another node with since; nothing lost or duplicated', async () => {
  const g = await startRedisGroup({ replicas: 0, sentinels: 0 });
  const ns = await nodes(g, 3);
  const room = 'kill';
  const writers = [0, 1, 2].map((i) => new Writer(`w${i}`, room, ns, i)); // w0 on n1, ...
  for (const w of writers) await w.connect();
  await writeAll(writers, 30, async () => { await ns[0].kill('SIGKILL'); });
  assert.ok(writers[0].moves >= 1, 'the killed node\'s client moved');
  assert.notEqual(writers[0].node, ns[0]);
  await checkAll(g, ns.slice(1), room, writers);
  // the moved client's view is the room's
  const view = await writers[0].c.request({ type: 'get', room });
  const other = await writers[1].c.request({ type: 'get', room });
  assert.deepEqual([view.seq, view.checksum], [other.seq, other.checksum]);
  for (const w of writers) await w.close();
});

test('SIGSTOP a node past its subscription buffer, SIGCONT: it catches up or resyncs; checksums agree', async () => {
  // a tiny pub/sub output buffer: the stopped node's subscriber link is cut
  const g = await startRedisGroup({ replicas: 0, sentinels: 0, primaryExtra: ['--client-output-buffer-limit', 'pubsub 4kb 2kb 1'] });
  const ns = await nodes(g, 2);
  const room = 'stop';
  const reader = new Writer('r', room, [ns[1]], 0);
  await reader.connect();
  const writers = [new Writer('w0', room, [ns[0]], 0)];
  await writers[0].connect();
  for (let k = 0; k < 5; k++) await writers[0].write();
  const subscribers = async () => {
    const l = await g.primary.cmd('CLIENT', 'LIST', 'TYPE', 'pubsub');
    return typeof l === 'string' ? l.split('\n').filter(Boolean).length : -1;
  };
  const before = await subscribers(); // every node's subscriber links (rooms, presence)
  assert.ok(before >= 2, `${before} pub/sub clients`);
  ns[1].signal('SIGSTOP');
  try {
    // published bytes until the kernel's socket buffers are full and
    // Redis's pub/sub buffer passes 4 kB: it disconnects the stopped
    // node's subscriber link (bounded: 4000 x 4 kB)
    let cut = false;
    for (let k = 0; k < 4000 && !cut; k++) {
      await writers[0].write(4096);
      if (k % 10 === 9) cut = (await subscribers()) < before;
    }
    assert.ok(cut, 'Redis cut the stopped node\'s subscriber link');
  } finally {
    ns[1].signal('SIGCONT');
  }
  for (let k = 0; k < 5; k++) await writers[0].write();
  await checkAll(g, ns, room, writers);
  // the reader on the stopped node is at the head, by fwds or a resync
  const head = writers[0].acks.length;
  await until(() => reader.since && reader.since.seq === head, 'the stopped node\'s client is at the head');
  const a = await reader.c.request({ type: 'get', room });
  const b = await writers[0].c.request({ type: 'get', room });
  assert.deepEqual([a.seq, a.checksum], [b.seq, b.checksum]);
  await reader.close();
  await writers[0].close();
});
