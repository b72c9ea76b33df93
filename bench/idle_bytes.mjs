#!/usr/bin/env node
// idle_bytes.mjs - where the daemon's memory per idle connection goes
// (issue #12): live heap bytes by allocation site at 0 connections and at
// each --counts N idle connections (upgrade + hello + subscribe over 100
// rooms, bench/loadgen), from bench/allocsites.so preloaded into a release
// daemon. loadgen signals the daemon (SIGUSR2) once every connection is
// ready; the shim then writes its table. Each site's growth per connection
// is (bytes at the largest N - bytes at the smallest) / (difference in N),
// so the one-time growth (tables, arenas) does not count. The shim's own
// tables inflate RSS, so resident memory comes from bench/targets.mjs
// (--only idle), not from here.
//
// Usage: node bench/idle_bytes.mjs [--counts 1000,10000] [--bin build/release/movexd]
//   [--top 25] [--tls no|yes (a TLS daemon, loadgen --tls batch; throwaway
//   certificate from the openssl CLI)]
import { readFileSync, existsSync, rmSync, mkdtempSync } from 'node:fs';
import { spawnSync, execFileSync } from 'node:child_process';
import { tmpdir, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { startMovexd, runDriver, fmt } from './compare.mjs';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const o = { counts: '1000,10000', bin: join(ROOT, 'build/release/movexd'), top: 25, tls: 'no' };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in o)) { console.error(`unknown option ${process.argv[i]}`); process.exit(2); }
  o[k] = typeof o[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
const counts = o.counts.split(',').map(Number).sort((a, b) => a - b);
const SHIM = join(ROOT, 'build/release/bench/allocsites.so');
const LOADGEN = join(ROOT, 'build/release/bench/loadgen');
for (const f of [SHIM, LOADGEN, o.bin]) if (!existsSync(f)) { console.error(`${f} missing: make VARIANT=release all bench-bin`); process.exit(2); }

const tmp = mkdtempSync(join(tmpdir(), 'idle-bytes-'));
const out = join(tmp, 'sites.txt');

// the tables written so far: [{site -> {count, bytes, usable}}]
function tables() {
  if (!existsSync(out)) return [];
  const res = [];
  let cur = new Map();
  for (const l of readFileSync(out, 'utf8').split('\n')) {
    if (l === 'end') { res.push(cur); cur = new Map(); continue; }
    const f = l.split(' ');
    if (f.length < 3) continue;
    cur.set(f.slice(3).join(' '), { count: Number(f[0]), bytes: Number(f[1]), usable: Number(f[2]) });
  }
  return res;
}
async function waitTables(n) {
  for (let i = 0; i < 600 && tables().length < n; i++) await new Promise((r) => setTimeout(r, 100));
  if (tables().length < n) throw new Error('the shim wrote no table');
  return tables()[n - 1];
}

const nofile = counts[counts.length - 1] + 1000;
process.env.LD_PRELOAD = SHIM;
process.env.ALLOCSITES_OUT = out;
let extra = '';
if (o.tls === 'yes') {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-keyout', join(tmp, 'key.pem'), '-out', join(tmp, 'cert.pem')], { stdio: 'pipe' });
  extra = `tls_cert_file ${join(tmp, 'cert.pem')}\ntls_key_file ${join(tmp, 'key.pem')}\n`;
}
const d = await startMovexd({ fsync: 'no', extra, bin: '/bin/sh', prefixArgs: ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, o.bin] });
delete process.env.LD_PRELOAD; // loadgen runs without the shim
delete process.env.ALLOCSITES_OUT;
const snaps = [];
try {
  process.kill(d.pid, 'SIGUSR2');
  snaps.push({ n: 0, t: await waitTables(1) });
  for (const n of counts) {
    const r = await runDriver(LOADGEN, ['--quiet', '--port', String(d.port), '--server-pid', String(d.pid), '--ready-signal', '12',
      '--writers', '0', '--subscribers', String(n), '--rooms', '100', '--warmup', '3', '--duration', '1', '--ready-timeout', '600',
      ...(o.tls === 'yes' ? ['--tls', 'batch'] : [])], 900000);
    if (!r.final_ok) throw new Error(`loadgen ${n}: ${r.error || r.problem}`);
    snaps.push({ n, t: await waitTables(snaps.length + 1) });
  }
} finally {
  await d.stop();
}

// module+offset -> function (file:line) through addr2line, one call per module
function resolveFrames(keys) {
  const byMod = new Map();
  for (const k of keys) for (const fr of k.split(' ')) {
    const m = /^(.*)\+(0x[0-9a-f]+)$/.exec(fr);
    if (!m) continue;
    if (!byMod.has(m[1])) byMod.set(m[1], new Set());
    byMod.get(m[1]).add(m[2]);
  }
  const names = new Map();
  for (const [mod, offs] of byMod) {
    const list = [...offs].map((x) => '0x' + (BigInt(x) - 1n).toString(16)); // the call, not the return address
    const r = spawnSync('addr2line', ['-f', '-s', '-e', mod, ...list], { encoding: 'utf8' });
    const lines = (r.stdout || '').split('\n');
    list.forEach((x, i) => {
      const fn = lines[2 * i] || '??';
      const at = lines[2 * i + 1] || '';
      const base = mod.split('/').pop();
      names.set(`${mod}+${[...offs][i]}`, fn !== '??' ? `${fn}${at.startsWith('??') ? '' : ` (${at})`}` : `${base}+${[...offs][i]}`);
    });
  }
  return names;
}

const [lo, hi] = [snaps[1], snaps[snaps.length - 1]];
const dn = hi.n - lo.n;
const keys = new Set([...lo.t.keys(), ...hi.t.keys()]);
const rows = [];
for (const k of keys) {
  const a = lo.t.get(k) || { count: 0, bytes: 0, usable: 0 };
  const b = hi.t.get(k) || { count: 0, bytes: 0, usable: 0 };
  rows.push({ k, count: (b.count - a.count) / dn, bytes: (b.bytes - a.bytes) / dn, usable: (b.usable - a.usable) / dn });
}
rows.sort((x, y) => y.usable - x.usable);
const names = resolveFrames(rows.slice(0, o.top).map((r) => r.k));
const total = (t) => [...t.values()].reduce((s, v) => s + v.usable, 0);
console.log(`live heap (usable bytes): ${snaps.map((s) => `${fmt(s.n)} connections ${fmt(total(s.t))} B`).join(', ')}; load ${loadavg()[0].toFixed(1)}`);
console.log(`per connection (${fmt(lo.n)} -> ${fmt(hi.n)}): ${fmt(rows.reduce((s, r) => s + r.usable, 0))} B usable in ${rows.reduce((s, r) => s + r.count, 0).toFixed(2)} blocks (+8 B of chunk header each)`);
console.log('| blocks/conn | requested B/conn | usable B/conn | call chain (innermost first) |');
console.log('|---|---|---|---|');
for (const r of rows.slice(0, o.top)) {
  if (Math.abs(r.usable) < 0.5) continue;
  const chain = r.k.split(' ').map((f) => names.get(f) || f).filter((f) => !/allocsites|libc\.so|^\?/.test(f)).slice(0, 4).join(' < ');
  console.log(`| ${r.count.toFixed(2)} | ${r.bytes.toFixed(0)} | ${r.usable.toFixed(0)} | ${chain} |`);
}
rmSync(tmp, { recursive: true, force: true });
