/* allocsites.c - an LD_PRELOAD shim for bench/idle_bytes.mjs: live heap
 * bytes of a process by call site, to account for what each idle
 * connection holds (issue #12).
 *
 * malloc, calloc, realloc, free, posix_memalign, aligned_alloc and
 * memalign are defined here and forward to glibc's __libc_* entry points;
 * every live block is remembered with its size and the call site (the
 * first ALLOCSITES_DEPTH return addresses above the allocator, from
 * backtrace()). On SIGUSR2 a helper thread writes one line per site with
 * live blocks to $ALLOCSITES_OUT (appending): count, bytes, the usable size
 * glibc gave (malloc_usable_size: what the heap really spends, without the
 * 8-byte chunk header) and the frames as module+offset (addr2line-ready),
 * then a line "end". Nothing is allocated with malloc inside the shim (its
 * tables are mmap'ed), and an allocation made while the shim itself runs
 * (backtrace's first call loads libgcc_s) is forwarded untracked.
 *
 * Invariant: every tracked block is in the live table exactly once, under
 * the table lock; its site's count and bytes include it.
 *
 * A benchmark tool, not part of the daemon: slow (a backtrace per
 * allocation) and meant for counting, not for timing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

#define ALLOCSITES_DEPTH 6
#define LIVE_BITS 23 /* 8M slots: enough for ~4M live blocks */
#define SITE_BITS 16

struct site {
    void *pc[ALLOCSITES_DEPTH];
    size_t count, bytes, usable;
};
struct live {
    void *p; /* NULL: empty; TOMB: deleted */
    uint32_t site;
    size_t size;
};

#define TOMB ((void *)1)
static struct live *live;
static struct site *sites;
static uint32_t nsites;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int inside;
static volatile sig_atomic_t dump_asked;
static int ready;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static uint32_t site_of(void **pc)
{
    uint64_t h = 0;
    for (int i = 0; i < ALLOCSITES_DEPTH; i++)
        h = mix(h ^ (uint64_t)(uintptr_t)pc[i]);
    uint32_t mask = (1u << SITE_BITS) - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        if (!sites[i].pc[0] && !sites[i].count && !sites[i].bytes) {
            memcpy(sites[i].pc, pc, sizeof(sites[i].pc));
            if (!pc[0])
                sites[i].pc[0] = (void *)2; /* no frames: still a key */
            nsites++;
            return i;
        }
        if (!memcmp(sites[i].pc, pc, sizeof(sites[i].pc)))
            return i;
    }
}

static void track(void *p, size_t size)
{
    if (!p || !ready || inside)
        return;
    inside = 1;
    void *frames[ALLOCSITES_DEPTH + 2] = {0};
    int n = backtrace(frames, ALLOCSITES_DEPTH + 2);
    void *pc[ALLOCSITES_DEPTH] = {0};
    for (int i = 2; i < n && i - 2 < ALLOCSITES_DEPTH; i++) /* skip backtrace's caller and us */
        pc[i - 2] = frames[i];
    size_t usable = malloc_usable_size(p);
    pthread_mutex_lock(&lock);
    if (nsites < (1u << SITE_BITS) / 2) {
        uint32_t s = site_of(pc);
        uint32_t mask = (1u << LIVE_BITS) - 1;
        for (uint32_t i = (uint32_t)mix((uintptr_t)p) & mask;; i = (i + 1) & mask)
            if (live[i].p == NULL || live[i].p == TOMB) {
                live[i] = (struct live){.p = p, .site = s, .size = size};
                break;
            }
        sites[s].count++;
        sites[s].bytes += size;
        sites[s].usable += usable;
    }
    pthread_mutex_unlock(&lock);
    inside = 0;
}

static void untrack(void *p)
{
    if (!p || !ready)
        return;
    size_t usable = malloc_usable_size(p);
    pthread_mutex_lock(&lock);
    uint32_t mask = (1u << LIVE_BITS) - 1;
    for (uint32_t i = (uint32_t)mix((uintptr_t)p) & mask; live[i].p; i = (i + 1) & mask)
        if (live[i].p == p) {
            struct site *s = &sites[live[i].site];
            s->count--;
            s->bytes -= live[i].size;
            s->usable -= usable;
            live[i].p = TOMB;
            break;
        }
    pthread_mutex_unlock(&lock);
}

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    track(p, n);
    return p;
}

void *calloc(size_t a, size_t b)
{
    void *p = __libc_calloc(a, b);
    track(p, a * b);
    return p;
}

void *realloc(void *old, size_t n)
{
    untrack(old);
    void *p = __libc_realloc(old, n);
    if (!p && old && n)
        track(old, 0); /* failed: the old block lives on (its size is lost) */
    track(p, n);
    return p;
}

void free(void *p)
{
    untrack(p);
    __libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    if (!p)
        return 12; /* ENOMEM */
    track(p, n);
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    track(p, n);
    return p;
}

void *memalign(size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    track(p, n);
    return p;
}

static void put(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return;
        s += w, n -= (size_t)w;
    }
}

static void dump(void)
{
    const char *path = getenv("ALLOCSITES_OUT");
    int fd = open(path ? path : "/dev/stderr", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        return;
    char line[2048];
    pthread_mutex_lock(&lock);
    for (uint32_t i = 0; i < (1u << SITE_BITS); i++) {
        struct site *s = &sites[i];
        if (!s->count)
            continue;
        int k = snprintf(line, sizeof(line), "%zu %zu %zu", s->count, s->bytes, s->usable);
        for (int f = 0; f < ALLOCSITES_DEPTH && s->pc[f]; f++) {
            Dl_info di;
            if (dladdr(s->pc[f], &di) && di.dli_fname)
                k += snprintf(line + k, sizeof(line) - (size_t)k, " %s+0x%lx", di.dli_fname,
                              (unsigned long)((uintptr_t)s->pc[f] - (uintptr_t)di.dli_fbase));
            else
                k += snprintf(line + k, sizeof(line) - (size_t)k, " ?%p", s->pc[f]);
            if (k >= (int)sizeof(line) - 2)
                break;
        }
        snprintf(line + k, sizeof(line) - (size_t)k, "\n");
        put(fd, line);
    }
    pthread_mutex_unlock(&lock);
    put(fd, "end\n");
    close(fd);
}

static void *dumper(void *arg)
{
    (void)arg;
    inside = 1; /* this thread's own allocations are not the process's */
    for (;;) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (dump_asked) {
            dump();
            dump_asked = 0;
        }
    }
    return NULL;
}

static void on_usr2(int sig)
{
    (void)sig;
    dump_asked = 1;
}

__attribute__((constructor)) static void init(void)
{
    live = mmap(NULL, sizeof(*live) << LIVE_BITS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    sites = mmap(NULL, sizeof(*sites) << SITE_BITS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (live == MAP_FAILED || sites == MAP_FAILED)
        return;
    inside = 1;
    void *warm[4];
    backtrace(warm, 4); /* loads libgcc_s now, untracked */
    inside = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
    pthread_t t;
    inside = 1;
    pthread_create(&t, NULL, dumper, NULL);
    pthread_detach(t);
    inside = 0;
    ready = 1;
}
