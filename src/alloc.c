/* alloc.c - the allocation seam (alloc.h): plain libc in normal builds; in
 * MX_FAULT_INJECTION builds, a counter that makes one chosen allocation
 * fail, so tests can walk every ENOMEM branch the code under test reaches.
 * Small freed blocks - jansson's values, message buffers, frames, log
 * entries - are kept for reuse in normal builds (alloc.h, mx_block_free).
 *
 * Invariants: a failed allocation changes nothing (a failed mx_realloc
 * leaves the block as it was, like realloc); at most one allocation fails
 * per reset; nothing is counted while counting is disabled.
 */
#define _GNU_SOURCE /* dladdr, Dl_info */
#include "movexd/alloc.h"

static uint64_t json_failures;

/* no cache under a sanitizer: it would hide a use after free of a block
 * (alloc.h, MX_BLOCK_CACHING) */
#if MX_BLOCK_CACHING
#include <dlfcn.h>
#include <malloc.h>

/* Free lists of small blocks by glibc chunk size (16-byte steps up to
 * MX_BLOCK_MAX usable bytes). A free block's first word links the list.
 * Chunk size of a request: glibc's request2size; a block's: its usable size
 * + 8. The lists are per thread (the loop thread does all the hot work; a
 * block freed on another thread stays there), so no lock is needed. */
#define JC_CLASSES ((MX_BLOCK_MAX + 8) / 16 + 1)
static _Thread_local struct {
    void *head;
    unsigned n;
} jcache[JC_CLASSES];
static _Thread_local size_t jcache_bytes;

static size_t chunk_of_request(size_t n) { return n + 8 + 15 < 32 ? 32 : (n + 8 + 15) & ~(size_t)15; }

void *mx_block_alloc(size_t n)
{
    /* n first: chunk_of_request(n) wraps for n near SIZE_MAX */
    size_t c = n <= MX_BLOCK_MAX ? chunk_of_request(n) / 16 : JC_CLASSES;
    if (c < JC_CLASSES && jcache[c].head) {
        void *p = jcache[c].head;
        memcpy(&jcache[c].head, p, sizeof(void *));
        jcache[c].n--;
        jcache_bytes -= c * 16;
        return p;
    }
    return mx_malloc(n);
}

/* 1 when malloc is glibc's own, so the word before a block is its chunk
 * header. A process may run with another allocator interposed (jemalloc
 * or tcmalloc by LD_PRELOAD, valgrind's memcheck, a tracing shim): then
 * that word is someone else's bytes, and filing a block by it would hand a
 * small block out for a large request. So it is decided once, before main
 * and before any thread: the malloc this process calls must live in
 * libc.so, and for every size up to past MX_BLOCK_MAX the header must agree
 * with malloc_usable_size(). Otherwise nothing is cached: mx_block_alloc
 * and mx_block_free are malloc and free. */
static int glibc_chunks;

/* the chunk size / 16 in the size word before p (low 3 bits are flags;
 * IS_MMAPPED, 2, gives a class past every list); out of line so the
 * compiler does not see a read before a block it just got from malloc */
__attribute__((noinline)) static size_t header_class(const void *p)
{
    size_t h;
    memcpy(&h, (const char *)p - sizeof h, sizeof h);
    return (h & 2) ? JC_CLASSES : (h & ~(size_t)7) / 16;
}

static int probe_glibc_chunks(void)
{
    Dl_info info;
    void *(*m)(size_t) = malloc;
    if (!dladdr(*(void **)&m, &info) || !info.dli_fname || !strstr(info.dli_fname, "/libc.so"))
        return 0;
    /* valgrind replaces malloc by redirecting libc's own symbol, so the
     * check above passes; the header read below would then be a read of
     * its red zone, reported as an error at every start. Its preloaded
     * core library says it is there. */
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload_"))
        return 0;
    for (size_t n = 1; n <= MX_BLOCK_MAX + 64; n += 5) {
        void *p = malloc(n);
        if (!p)
            return 0;
        int same = header_class(p) == (malloc_usable_size(p) + 8) / 16;
        free(p);
        if (!same)
            return 0;
    }
    return 1;
}

__attribute__((constructor)) static void decide_glibc_chunks(void) { glibc_chunks = probe_glibc_chunks(); }

int mx_block_caching(void) { return glibc_chunks; }

/* The block's size class: its glibc chunk size / 16, read from the size
 * word just before the block (its low 3 bits are flags; IS_MMAPPED is 2).
 * The same number as (malloc_usable_size(p) + 8) / 16 for every block we
 * may be given (an in-use chunk's usable size is its size - 8), without
 * the library call and its read of the next chunk's header (the in-use
 * bit: a block being freed is in use) - a cache miss when the block is a
 * cold log entry. An mmapped chunk gets a class past every list. */
size_t mx_block_class(const void *p)
{
    return glibc_chunks ? header_class(p) : (malloc_usable_size((void *)p) + 8) / 16;
}

void mx_block_free(void *p)
{
    if (!p)
        return;
    if (!glibc_chunks) {
        free(p);
        return;
    }
    size_t c = mx_block_class(p);
    if (c < JC_CLASSES && jcache[c].n < MX_BLOCK_CACHE && jcache_bytes + c * 16 <= MX_BLOCK_CACHE_BYTES) {
        memcpy(p, &jcache[c].head, sizeof(void *));
        jcache[c].head = p;
        jcache[c].n++;
        jcache_bytes += c * 16;
        return;
    }
    free(p);
}
#else
void *mx_block_alloc(size_t n) { return mx_malloc(n); }
void mx_block_free(void *p) { free(p); }
int mx_block_caching(void) { return 0; }
#endif

void *mx_json_malloc(size_t n)
{
    void *p = mx_block_alloc(n);
    json_failures += !p;
    return p;
}

uint64_t mx_json_alloc_failures(void) { return json_failures; }

json_t *mx_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err, int *oom)
{
    uint64_t before = json_failures;
    json_t *j = json_loadb(buf, len, flags, err);
    *oom = json_failures != before || (!j && json_error_code(err) == json_error_out_of_memory);
    if (*oom) {
        json_decref(j);
        return NULL;
    }
    return j;
}

#ifdef MX_FAULT_INJECTION
static uint64_t fail_at, counted;
static int enabled, fired;

void mx_alloc_fault_reset(uint64_t n)
{
    fail_at = n;
    counted = 0;
    enabled = 0;
    fired = 0;
}

void mx_alloc_fault_enable(int on) { enabled = on; }
uint64_t mx_alloc_fault_count(void) { return counted; }
int mx_alloc_fault_fired(void) { return fired; }

/* 1 when this allocation is the one to fail. */
static int fail_now(void)
{
    if (!enabled)
        return 0;
    if (++counted != fail_at)
        return 0;
    fired = 1;
    return 1;
}

void *mx_malloc(size_t n) { return fail_now() ? NULL : malloc(n); }
void *mx_calloc(size_t n, size_t size) { return fail_now() ? NULL : calloc(n, size); }
void *mx_realloc(void *p, size_t n) { return fail_now() ? NULL : realloc(p, n); }
char *mx_strdup(const char *s) { return fail_now() ? NULL : strdup(s); }
#endif
