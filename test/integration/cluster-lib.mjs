// The multi-node harness of cluster mode (issue #14, docs/CLUSTER.md).
//
// startRedisGroup() starts, on free loopback ports and each in a temporary
// directory of its own, a redis-server primary, its replicas (`replicaof`)
// and Sentinels (`redis-server --sentinel`: Debian's redis-server binary
// runs as a Sentinel with that flag), and waits until the Sentinels know
// the primary, its replicas and each other (so a failover can happen).
// startNodes() starts movexd nodes whose `cluster` block points at the
// group. Every process is registered and stopAll() kills what is left by
// PID (call it from after(): it runs when a test failed too).
//
// checkInvariants() reads every room's stream (XRANGE) and asserts what
// must hold whatever failed: IDs strictly increasing with gap-free seqs
// (applied entries seq-0, recorded rejects seq-1, seq-2, ...), each
// (client, room, n) logged once, the hash chain verifies up to the head,
// and each node's (seq, checksum) of a room is the log's checksum at that
// seq (so nodes agree with each other and with the log, and none is ahead
// of it). Nothing here sleeps for a fixed time: waits poll a condition
// with a generous bound.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SLOW, TIMEOUT, startDaemon, httpRequest, withTimeout } from './lib.mjs';
import { RedisConn } from './redis-lib.mjs';

export const MASTER_NAME = 'movexd';
export const PREFIX = 'movexd:';
const live = new Set(); // every process started here and not yet reaped

const delay = (ms) => new Promise((r) => setTimeout(r, ms));

// Poll cond() (async) until it returns a truthy value; fails after ms.
export async function until(cond, what, ms = 3 * TIMEOUT) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timeout waiting for: ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await delay(25);
  }
}

// A free TCP port on 127.0.0.1 (the kernel picks it; closed again at once).
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// One command on a fresh connection to 127.0.0.1:port; resolves with the
// reply (an Error object for an error reply or a connection that failed).
export async function redisAt(port, ...args) {
  let c;
  try {
    c = await withTimeout(RedisConn.open(port), TIMEOUT, `connect to redis :${port}`);
    return await withTimeout(c.cmd(...args), TIMEOUT, `${args[0]} on redis :${port}`);
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  } finally {
    c?.close();
  }
}

// A redis-server or Sentinel process: start (and start again on the same
// port and directory), signal, wait for its exit.
class RedisProc {
  constructor(kind, port, dir, args) {
    Object.assign(this, { kind, port, dir, args, proc: null, log: '' });
  }

  async start() {
    const proc = spawn('redis-server', this.args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.pid = proc.pid;
    live.add(this);
    this.exited = new Promise((res) => proc.once('exit', (code, signal) => {
      if (this.proc === proc) live.delete(this);
      res({ code, signal });
    }));
    const keep = (d) => { this.log = (this.log + d).slice(-20000); };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    await until(async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${this.kind} :${this.port} exited: ${this.log.slice(-2000)}`);
      return (await redisAt(this.port, 'PING')) === 'PONG';
    }, `${this.kind} on :${this.port} answers PING`, 3 * TIMEOUT).catch((e) => { this.kill('SIGKILL'); throw e; });
    return this;
  }

  get running() { return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null; }

  signal(sig) { if (this.running) this.proc.kill(sig); }

  // Send sig (default SIGKILL) and wait for the exit (a stopped process is
  // continued first so a SIGTERM can be handled).
  async kill(sig = 'SIGKILL') {
    if (!this.proc) return null;
    if (this.running) {
      this.proc.kill(sig);
      if (sig !== 'SIGKILL') this.proc.kill('SIGCONT');
    }
    try {
      return await withTimeout(this.exited, TIMEOUT, `${this.kind} :${this.port} exit on ${sig}`);
    } catch (e) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw e;
    }
  }

  cmd(...args) { return redisAt(this.port, ...args); }

  // The first word of ROLE: 'master', 'slave' or 'sentinel' (or an Error).
  async role() {
    const r = await this.cmd('ROLE');
    return Array.isArray(r) ? r[0] : r;
  }

  async cleanup() {
    await this.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Start a redis-server on a free port in a fresh directory. replicaOf: the
// port of its primary. appendonly: 'yes' makes it persist (appendfsync
// always: an acked write survives a kill -9); otherwise nothing is saved.
export async function startRedisServer({ replicaOf, appendonly = false, extra = [] } = {}) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'movexd-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', appendonly ? 'yes' : 'no', '--appendfsync', 'always',
    // a replica promoted by Sentinel answers like a primary, and an old
    // primary restarted empty is told to follow the new one
    ...(replicaOf ? ['--replicaof', '127.0.0.1', String(replicaOf)] : []),
    ...extra];
  return new RedisProc('redis-server', port, dir, args).start();
}

async function startSentinel(masterPort, { downAfterMs, failoverTimeoutMs, quorum }) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'movexd-sentinel-'));
  const conf = join(dir, 'sentinel.conf'); // Sentinel rewrites it: it must be its own
  writeFileSync(conf, [
    `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
    `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} ${quorum}`,
    `sentinel down-after-milliseconds ${MASTER_NAME} ${downAfterMs}`,
    `sentinel failover-timeout ${MASTER_NAME} ${failoverTimeoutMs}`,
    `sentinel parallel-syncs ${MASTER_NAME} 1`, ''].join('\n'));
  return new RedisProc('sentinel', port, dir, [conf, '--sentinel']).start();
}

// A reply of field/value pairs ([f1, v1, f2, v2, ...]) as an object.
const pairs = (a) => Object.fromEntries(Array.from({ length: a.length / 2 }, (_, i) => [a[2 * i], a[2 * i + 1]]));

// Start a primary, `replicas` replicas and `sentinels` Sentinels (quorum:
// a majority). Resolves once every replica's link is up and, with
// Sentinels, each of them sees the primary, every replica and every other
// Sentinel, and CKQUORUM says a failover can be authorized.
export async function startRedisGroup({ replicas = 1, sentinels = 3, appendonly = false, downAfterMs = 1000 * SLOW,
  failoverTimeoutMs = 6000 * SLOW, replicaExtra = [], primaryExtra = [] } = {}) {
  const g = { primary: null, replicas: [], sentinels: [], masterName: MASTER_NAME };
  try {
    g.primary = await startRedisServer({ appendonly, extra: primaryExtra });
    for (let i = 0; i < replicas; i++) g.replicas.push(await startRedisServer({ replicaOf: g.primary.port, appendonly, extra: replicaExtra }));
    for (const r of g.replicas) {
      await until(async () => /master_link_status:up/.test(String(await r.cmd('INFO', 'replication'))), `replica :${r.port} in sync`);
    }
    const quorum = Math.floor(sentinels / 2) + 1;
    for (let i = 0; i < sentinels; i++) g.sentinels.push(await startSentinel(g.primary.port, { downAfterMs, failoverTimeoutMs, quorum }));
    for (const s of g.sentinels) {
      await until(async () => {
        const m = await s.cmd('SENTINEL', 'MASTER', MASTER_NAME);
        if (!Array.isArray(m)) return false;
        const f = pairs(m);
        const ok = Number(f['num-slaves']) >= replicas && Number(f['num-other-sentinels']) === sentinels - 1;
        return ok && /^OK/.test(String(await s.cmd('SENTINEL', 'CKQUORUM', MASTER_NAME)));
      }, `sentinel :${s.port} sees ${replicas} replicas and ${sentinels - 1} other sentinels`, 6 * TIMEOUT);
    }
  } catch (e) {
    await stopGroup(g);
    throw e;
  }
  Object.assign(g, {
    // "127.0.0.1:P1, 127.0.0.1:P2, ..." for the cluster block's `sentinels`
    get sentinelAddrs() { return g.sentinels.map((s) => `127.0.0.1:${s.port}`).join(', '); },
    // Every redis-server of the group (primary first).
    get servers() { return [g.primary, ...g.replicas]; },
    // The primary's port as the Sentinels that answer name it (null if
    // they disagree or none answers).
    async masterPort() {
      const ports = new Set();
      for (const s of g.sentinels) {
        const a = await s.cmd('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME);
        if (Array.isArray(a)) ports.add(Number(a[1]));
      }
      return ports.size === 1 ? [...ports][0] : null;
    },
    // Wait until every Sentinel names a primary other than oldPort and that
    // server says ROLE master; g.primary and g.replicas follow. Resolves
    // with the new primary.
    async waitFailover(oldPort = g.primary.port, ms = 6 * TIMEOUT) {
      const port = await until(async () => {
        const p = await g.masterPort();
        return p && p !== oldPort && (await redisAt(p, 'ROLE'))[0] === 'master' ? p : null;
      }, `Sentinel failover away from :${oldPort}`, ms);
      const all = g.servers;
      g.primary = all.find((r) => r.port === port);
      g.replicas = all.filter((r) => r.port !== port);
      return g.primary;
    },
    // A failover without a failure (SENTINEL FAILOVER on the first one).
    async forceFailover() {
      const old = g.primary.port;
      const r = await g.sentinels[0].cmd('SENTINEL', 'FAILOVER', MASTER_NAME);
      if (r instanceof Error) throw r;
      return g.waitFailover(old);
    },
    stop: () => stopGroup(g),
  });
  return g;
}

async function stopGroup(g) {
  for (const p of [...g.sentinels, ...(g.replicas || []), g.primary]) if (p) await p.cleanup();
}

// ---- movexd nodes ---------------------------------------------------------

// The cluster block for a node: over Sentinels when the group has them,
// otherwise straight to the primary.
export function clusterBlock(g, nodeId, extra = []) {
  const where = g.sentinels.length
    ? [`sentinels ${g.sentinelAddrs}`, `master_name ${g.masterName}`]
    : [`redis 127.0.0.1:${g.primary.port}`];
  return ['cluster {', `    node_id ${nodeId}`, ...where.map((l) => `    ${l}`), `    key_prefix "${PREFIX}"`,
    '    connect_timeout_ms 1000', `    command_timeout_ms ${3000 * SLOW}`, '    reconnect_max_ms 500',
    ...extra.map((l) => `    ${l}`), '}'].join('\n');
}

// Start n movexd nodes (n1, n2, ...) over the group, each with the admin
// API on (token in its directory). room: lines of `room default`; cluster:
// extra lines of the cluster block; global: extra top-level lines.
export async function startNodes(g, n, { room = [], cluster = [], global = [], idBase = 0 } = {}) {
  const nodes = [];
  try {
    for (let i = 1; i <= n; i++) nodes.push(await startNode(g, `n${idBase + i}`, { room, cluster, global }));
  } catch (e) {
    for (const d of nodes) await d.kill().catch(() => {});
    throw e;
  }
  return nodes;
}

// dir: the daemon's directory (conf, data dir, the journal under it) - pass
// the `dir` of an earlier node to restart it on its data.
export async function startNode(g, id, { room = [], cluster = [], global = [], dir, bin } = {}) {
  const tdir = mkdtempSync(join(tmpdir(), 'movexd-token-'));
  const token = createHash('sha256').update(`${id}${Math.random()}`).digest('hex');
  const tokenFile = join(tdir, 'token');
  writeFileSync(tokenFile, `${token}\n`);
  chmodSync(tokenFile, 0o600);
  const conf = ['log_level info', `admin_token_file ${tokenFile}`, ...global, 'room default {',
    ...['reducer json', 'history 1000', 'create_on_subscribe yes', ...room].map((l) => `    ${l}`), '}',
    clusterBlock(g, id, cluster), ''].join('\n');
  let d;
  try {
    d = await startDaemon({ conf, dir, bin }); // bin: another binary (benchmarks interleave two)
  } finally {
    if (!d) rmSync(tdir, { recursive: true, force: true });
  }
  const node = Object.assign(d, {
    id, token,
    signal(sig) { if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill(sig); },
    // GET /admin/rooms/ROOM: {seq, checksum, ...}, or null when the node
    // does not have the room (404) or does not answer.
    async room(name) {
      const r = await httpRequest(d, { path: `/admin/rooms/${encodeURIComponent(name)}`, headers: { authorization: `Bearer ${token}` } }).catch(() => null);
      return r && r.status === 200 ? JSON.parse(r.body) : null;
    },
  });
  live.add({
    kill: async () => {
      d.proc.kill('SIGCONT');
      await d.kill().catch(() => {});
      // MOVEXD_CLUSTER_LOGS=DIR keeps each node's log (a flaky run's evidence)
      if (process.env.MOVEXD_CLUSTER_LOGS) writeFileSync(join(process.env.MOVEXD_CLUSTER_LOGS, `${id}-${d.proc.pid}.log`), d.stderr);
      d.cleanup();
      rmSync(tdir, { recursive: true, force: true });
    },
  });
  return node;
}

// startNode, then wait until its /readyz says 200 (Redis link up, library loaded).
export async function startReadyNode(g, id, opts = {}) {
  const d = await startNode(g, id, opts);
  await until(async () => (await httpRequest(d, { path: '/readyz' }).catch(() => ({}))).status === 200, `${id} /readyz 200`);
  return d;
}

// A node's metric: the value of a plain `name VALUE` line of /metrics (NaN if absent).
export async function nodeMetric(d, name) {
  const { body } = await httpRequest(d, { path: '/metrics' });
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(body);
  return m ? Number(m[1]) : NaN;
}

// Kill every process the harness started that is still running (by PID).
export async function stopAll() {
  for (const p of [...live]) {
    live.delete(p);
    await (p instanceof RedisProc ? p.cleanup() : p.kill()).catch(() => {});
  }
}

// ---- the invariant checker ---------------------------------------------

const sha1 = (s) => createHash('sha1').update(s).digest('hex');

// The rooms that have a head in Redis (keys PREFIX{ROOM}:head).
export async function listRooms(port, prefix = PREFIX) {
  const rooms = [];
  let cursor = '0';
  do {
    const r = await redisAt(port, 'SCAN', cursor, 'MATCH', `${prefix}{*}:head`, 'COUNT', 1000);
    if (r instanceof Error) throw r;
    cursor = r[0];
    for (const k of r[1]) rooms.push(k.slice(prefix.length + 1, -'}:head'.length));
  } while (cursor !== '0');
  return rooms.sort();
}

// Check one room's log in Redis at port. Returns {head, seq, entries,
// byAction: Map "client n" -> {id, seq, kind, code}, sumAt: Map seq -> sum,
// trimmed}; throws an Error naming the first broken invariant.
export async function checkRoomLog(port, room, prefix = PREFIX) {
  const key = (s) => `${prefix}{${room}}:${s}`;
  const h = await redisAt(port, 'HGETALL', key('head'));
  if (!Array.isArray(h) || h.length === 0) throw new Error(`room ${room}: no head in Redis`);
  const head = pairs(h);
  const log = await redisAt(port, 'XRANGE', key('log'), '-', '+');
  if (!Array.isArray(log)) throw new Error(`room ${room}: XRANGE failed: ${log}`);
  // entries-added counts every XADD ever: more than the length = trimmed
  const info = log.length ? pairs(await redisAt(port, 'XINFO', 'STREAM', key('log'))) : { 'entries-added': 0 };
  const trimmed = Number(info['entries-added']) > log.length;
  const fail = (m) => { throw new Error(`room ${room}: ${m}`); };
  const byAction = new Map();
  const sumAt = new Map();
  let seq = null, sub = 0, hash = trimmed ? null : '', sum = null;
  // a trimmed log can only be chained from an entry's own h field
  for (const [id, fields] of log) {
    const m = /^(\d+)-(\d+)$/.exec(id);
    const f = pairs(fields);
    if (!m || typeof f.e !== 'string') fail(`malformed entry ${id}`);
    const [s, k] = [Number(m[1]), Number(m[2])];
    let e;
    try { e = JSON.parse(f.e); } catch { fail(`entry ${id} is not JSON`); }
    if (seq === null && !trimmed && !((s === 1 && k === 0) || (s === 0 && k === 1))) fail(`untrimmed log starts at ${id}`);
    if (seq !== null) {
      if (k === 0 && s !== seq + 1) fail(`gap: ${id} after ${seq}-${sub}`);
      if (k !== 0 && (s !== seq || k !== sub + 1)) fail(`reject ${id} out of order after ${seq}-${sub}`);
    }
    if ((k === 0) !== (e.k === 'a')) fail(`entry ${id} is kind ${e.k}`);
    const a = `${e.c} ${e.n}`;
    if (byAction.has(a)) fail(`(client ${e.c}, n ${e.n}) logged twice: ${byAction.get(a).id} and ${id}`);
    byAction.set(a, { id, seq: s, kind: e.k, code: e.code });
    if (e.k === 'a') { sum = e.sum; sumAt.set(s, e.sum); }
    // each entry may carry the chain hash after it (field h): verified
    // from the previous one; a trimmed log's first entry is taken on trust
    if (hash !== null) hash = sha1(`${hash} ${id} ${f.e}`);
    if (f.h !== undefined) {
      if (hash !== null && f.h !== hash) fail(`hash chain: entry ${id} carries ${f.h}, the chain gives ${hash}`);
      hash = f.h;
    }
    [seq, sub] = [s, k];
  }
  if (seq !== null) {
    if (Number(head.seq) !== seq || Number(head.sub) !== sub) fail(`head ${head.seq}-${head.sub} is not the last entry ${seq}-${sub}`);
    if (hash !== null && head.hash !== hash) fail(`hash chain: head says ${head.hash}, entries give ${hash}`);
    if (sum !== null && head.sum !== sum) fail(`head sum ${head.sum} is not the last applied entry's ${sum}`);
  } else if (!trimmed) {
    if (head.seq !== '0' || head.sub !== '0' || head.hash !== '') fail(`empty log but head ${head.seq}-${head.sub}`);
  }
  // the empty state's checksum is known only while the head is still at 0
  if (Number(head.seq) === 0) sumAt.set(0, head.sum);
  return { room, head, seq: Number(head.seq), entries: log.length, byAction, sumAt, trimmed };
}

// Check every room (or the given ones) in the Redis at port, and each
// node's view of each room against the log: its seq is at most the head's
// and its checksum is the log's at that seq (when the log still has it).
// Nodes that do not have a room (404) are skipped for it. Returns
// {rooms: Map room -> checkRoomLog's result}.
export async function checkInvariants(port, { rooms, nodes = [], prefix = PREFIX } = {}) {
  const names = rooms || await listRooms(port, prefix);
  const out = new Map();
  for (const room of names) {
    const r = await checkRoomLog(port, room, prefix);
    for (const n of nodes) {
      const v = await n.room(room);
      if (!v) continue;
      if (v.seq > r.seq) throw new Error(`room ${room}: node ${n.id} is at seq ${v.seq}, beyond the log's head ${r.seq}`);
      const want = r.sumAt.get(v.seq);
      if (want !== undefined && want !== v.checksum) {
        throw new Error(`room ${room}: node ${n.id} has checksum ${v.checksum} at seq ${v.seq}, the log has ${want}`);
      }
    }
    out.set(room, r);
  }
  return { rooms: out };
}

// Wait until every node that has the room reports the log's head seq
// (then checkInvariants compares their checksums at that seq).
export async function waitConverged(port, nodes, rooms, prefix = PREFIX) {
  for (const room of rooms) {
    await until(async () => {
      const { seq } = await checkRoomLog(port, room, prefix);
      for (const n of nodes) {
        const v = await n.room(room);
        if (!v || v.seq !== seq) return false;
      }
      return true;
    }, `every node at the head of ${room}`);
  }
}

// Every acked action ({client, n, seq}) is in the log as applied; with
// sameSeq also at the seq its ack named (not after a rollback: a
// re-submitted action gets a new seq). Returns the missing ones.
export function missingAcks(result, room, acks, { sameSeq = false } = {}) {
  const r = result.rooms.get(room);
  return acks.filter((a) => {
    const e = r?.byAction.get(`${a.client} ${a.n}`);
    return !e || e.kind !== 'a' || (sameSeq && e.seq !== a.seq);
  });
}
