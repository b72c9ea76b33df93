/* alloc.h - the project's own heap allocations, behind one seam.
 *
 * Every malloc/calloc/realloc/strdup in src/ goes through mx_malloc,
 * mx_calloc, mx_realloc and mx_strdup (release memory with free() as
 * usual). In a normal build they are the C library's functions, inlined.
 * In a build with -DMX_FAULT_INJECTION (the asan variant) they are
 * out-of-line and can be told to fail: while counting is enabled every
 * allocation is numbered from 1, and the one numbered `fail_at` returns
 * NULL (once), as SQLite's malloc tests do. That is how the ENOMEM branches
 * are run (test/unit/test_alloc_fail.c). Hand jansson the same allocator
 * with json_set_alloc_funcs(mx_json_malloc, mx_block_free) to count its allocations
 * too. Not thread-safe: only the event-loop thread is counted.
 */
#ifndef MOVEXD_ALLOC_H
#define MOVEXD_ALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#ifdef MX_FAULT_INJECTION
void *mx_malloc(size_t n);
void *mx_calloc(size_t n, size_t size);
void *mx_realloc(void *p, size_t n);
char *mx_strdup(const char *s);

/* Start a fresh count: the allocation numbered fail_at (1-based) fails;
 * 0 = none fails, only count. Counting starts disabled. */
void mx_alloc_fault_reset(uint64_t fail_at);
/* Count (and fail) allocations only while enabled, so a test harness's
 * own allocations between calls into the code under test stay out. */
void mx_alloc_fault_enable(int on);
uint64_t mx_alloc_fault_count(void); /* allocations counted since the reset */
int mx_alloc_fault_fired(void);      /* 1 once the numbered one has failed */
#else
static inline void *mx_malloc(size_t n) { return malloc(n); }
static inline void *mx_calloc(size_t n, size_t size) { return calloc(n, size); }
static inline void *mx_realloc(void *p, size_t n) { return realloc(p, n); }
static inline char *mx_strdup(const char *s) { return strdup(s); }
#endif

/* Small blocks, reused. In normal builds mx_block_free keeps freed blocks
 * of at most MX_BLOCK_MAX usable bytes on per-thread free lists by size (up
 * to MX_BLOCK_CACHE blocks per size and MX_BLOCK_CACHE_BYTES in all) and
 * mx_block_alloc hands them out again: an action's parsed tree is ~30 small
 * jansson allocations, and its message buffers, frames and log entry are a
 * few hundred bytes each; they are freed at the end of the message, the
 * turn, or when the log drops its oldest entry, and the next action wants
 * the same sizes (glibc's own per-size cache holds 7; past it a free
 * consolidates with cold neighbours). The blocks are plain malloc blocks,
 * sorted by malloc_usable_size(), so either function may be paired with
 * the C library's (a block from mx_block_alloc may be realloc'd or freed
 * with free(), and mx_block_free takes any malloc block). Sanitizer /
 * fault-injection builds cache nothing (every allocation is real, counted
 * and checked). */
void *mx_block_alloc(size_t n);
void mx_block_free(void *p);
/* 1 when this process caches small blocks: a normal build (MX_BLOCK_CACHING)
 * whose malloc is glibc's own; 0 under an interposed allocator (jemalloc,
 * valgrind, ...), where the blocks go straight back to free(). Decided once
 * before main (alloc.c). */
int mx_block_caching(void);

/* MX_BLOCK_CACHING: 1 when mx_block_free caches. Never under a sanitizer -
 * a cached block handed out again is never freed as far as ASan knows (a
 * use after free of it goes unseen), and under TSan/MSan's own malloc
 * malloc_usable_size() is the requested size, not glibc's chunk - nor in a
 * fault-injection build. GCC names a sanitizer with __SANITIZE_*__; clang
 * (the fuzz build's compiler) only answers __has_feature. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(__SANITIZE_HWADDRESS__)
#define MX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer) || __has_feature(hwaddress_sanitizer)
#define MX_SANITIZED 1
#endif
#endif
#if !defined(MX_FAULT_INJECTION) && !defined(MX_SANITIZED) && defined(__GLIBC__)
#define MX_BLOCK_CACHING 1
#else
#define MX_BLOCK_CACHING 0
#endif
#define MX_BLOCK_MAX 1032
#define MX_BLOCK_CACHE 4096
#define MX_BLOCK_CACHE_BYTES (4u << 20)
#if MX_BLOCK_CACHING
/* The free list a malloc block belongs on: (malloc_usable_size(p) + 8) /
 * 16, read from glibc's chunk header; >= (MX_BLOCK_MAX + 8) / 16 + 1 for
 * blocks too big to cache (exposed for its unit test). */
size_t mx_block_class(const void *p);
#endif

/* jansson's allocator, for json_set_alloc_funcs(mx_json_malloc,
 * mx_block_free) (a function pointer, also in normal builds): mx_block_alloc
 * that counts failures, since jansson reports a failed allocation as a
 * syntax error: a parse that fails while the count moves ran out of
 * memory. */
void *mx_json_malloc(size_t n);
uint64_t mx_json_alloc_failures(void);

/* json_loadb that tells running out of memory apart from bad input: NULL
 * with *oom = 1 when any allocation failed during the parse. jansson (2.14)
 * reports those as syntax errors, and when the allocation that grows a
 * string's buffer fails it drops that byte and parses on, returning a
 * value whose text differs from the input; this never returns one. Needs
 * jansson on mx_json_malloc (mx_engine_new sets it). */
json_t *mx_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err, int *oom);

#endif
