// The small-block cache (src/alloc.c) files a freed block by the size word
// glibc keeps just before it. Under another allocator (jemalloc or tcmalloc
// by LD_PRELOAD, valgrind's memcheck, a tracing shim) that word is not a
// chunk header, and trusting it hands a small block out for a large
// request: a heap overflow. The daemon decides before main whether malloc
// is glibc's own; if not, it caches nothing (the start line says
// block_cache=off).
//
// The shim built here is a legal interposed allocator (every malloc-family
// call, malloc_usable_size answering the caller's own size) whose blocks
// carry a word that reads like glibc's header of a 272-byte chunk: a daemon
// that trusted it crashed within the first few hundred actions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withDaemon, connectHello, patchAction, buildPreloadShim, ASAN, BIN } from './lib.mjs';

const SHIM = String.raw`#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
extern void *__libc_malloc(size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
/* a block: [its offset from glibc's block][a word like glibc's size word of a 272-byte chunk][the caller's bytes] */
static const size_t LIE = 0x111;
static size_t (*real_usable)(void *);
static void *wrap(char *r, size_t off)
{
    if (!r)
        return NULL;
    memcpy(r + off - 16, &off, 8);
    memcpy(r + off - 8, &LIE, 8);
    return r + off;
}
static char *base(void *p, size_t *off)
{
    memcpy(off, (char *)p - 16, 8);
    return (char *)p - *off;
}
void *malloc(size_t n) { return wrap(__libc_malloc(n + 16), 16); }
void *memalign(size_t a, size_t n)
{
    size_t off = a < 16 ? 16 : (a + 15) / a * a;
    return wrap(__libc_memalign(a < 16 ? 16 : a, n + off), off);
}
void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n)
{
    void *p = memalign(a, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
void *valloc(size_t n) { return memalign(4096, n); }
void *pvalloc(size_t n) { return memalign(4096, (n + 4095) & ~(size_t)4095); }
void *calloc(size_t a, size_t b)
{
    if (b && a > SIZE_MAX / b)
        return NULL;
    void *p = malloc(a * b);
    if (p)
        memset(p, 0, a * b);
    return p;
}
void free(void *p)
{
    size_t off;
    if (p)
        __libc_free(base(p, &off));
}
size_t malloc_usable_size(void *p)
{
    size_t off;
    if (!p)
        return 0;
    if (!real_usable)
        real_usable = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    return real_usable(base(p, &off)) - off;
}
void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (!n) {
        free(p);
        return NULL;
    }
    size_t have = malloc_usable_size(p);
    void *q = malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, have < n ? have : n);
    free(p);
    return q;
}
`;

let shimDir;
let shimEnv;

before(() => {
  if (ASAN) return; // the ASan build caches nothing and owns malloc itself
  const { dir, so } = buildPreloadShim('alloc-lie', SHIM);
  shimDir = dir;
  shimEnv = { LD_PRELOAD: so };
});

after(() => { if (shimDir) rmSync(shimDir, { recursive: true, force: true }); });

// Two writers pipeline `inc`s and long strings (buffers past 256 bytes: the
// sizes a lying header would mix up) into one room a third client
// subscribes to; the state read back has every one.
async function workload(d) {
  const room = 'alloc:one';
  const sub = await connectHello(d);
  const w = [await connectHello(d), await connectHello(d)];
  try {
    for (const c of [sub, ...w]) assert.equal((await c.request({ type: 'subscribe', room })).type, 'snapshot');
    const N = 300;
    const long = 'x'.repeat(400);
    const acks = [];
    for (const [k, c] of w.entries()) {
      for (let n = 1; n <= N; n++) {
        const payload = n % 3 ? [{ op: 'inc', path: '/count', value: 1 }] : [{ op: 'inc', path: '/count', value: 1 }, { op: 'add', path: `/s${k}`, value: `${long}${n}` }];
        acks.push(c.request(patchAction(room, n, payload)));
      }
    }
    for (const r of await Promise.all(acks)) assert.equal(r.type, 'ack', JSON.stringify(r));
    const fresh = await connectHello(d);
    try {
      const s = await fresh.request({ type: 'subscribe', room });
      assert.equal(s.type, 'snapshot');
      assert.equal(s.state.count, 2 * N);
      assert.equal(s.state.s0, `${long}${N}`);
      assert.equal(s.state.s1, `${long}${N}`);
    } finally {
      fresh.close();
    }
  } finally {
    sub.close();
    for (const c of w) c.close();
  }
}

test('with glibc\'s own malloc the release daemon caches small blocks (block_cache=on)', { skip: ASAN && 'the ASan build caches nothing' }, async () => {
  await withDaemon({}, async (d) => {
    assert.match(d.stderr, /event=listening .* block_cache=on /);
    await workload(d);
  });
});

test('under an interposed allocator whose blocks carry a header-like word the daemon caches nothing (block_cache=off) and serves correctly', { skip: ASAN && 'the shim cannot sit under ASan\'s allocator' }, async () => {
  await withDaemon({ env: shimEnv }, async (d) => {
    assert.match(d.stderr, /event=listening .* block_cache=off /);
    await workload(d);
  });
});

// valgrind's memcheck replaces malloc by redirecting libc's own symbol, so
// malloc still looks like libc's: the probe (a constructor, run before main
// in every start) must not read the word before a block there - memcheck
// reported that read as an error, so `valgrind --error-exitcode` failed
// every run. `movexd -t` runs the same constructor and exits.
const VALGRIND = spawnSync('valgrind', ['--version']).status === 0;
test('under valgrind memcheck the block-cache probe reads nothing it does not own', { skip: (ASAN && 'ASan and valgrind do not mix') || (!VALGRIND && 'valgrind is not installed') }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-vg-'));
  try {
    const conf = join(dir, 'movexd.conf');
    writeFileSync(conf, 'log_level info\n');
    const r = spawnSync('valgrind', ['-q', '--error-exitcode=99', BIN, '-t', '-c', conf], { encoding: 'utf8', timeout: 120000 });
    assert.equal(r.status, 0, `valgrind movexd -t: ${r.status}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /Invalid read|uninitialised/, r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
