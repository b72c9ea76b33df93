/* Unit tests for alloc.c's small-block cache (mx_block_alloc /
 * mx_block_free, and jansson's pair mx_json_malloc / mx_block_free): in
 * normal builds freed small blocks are reused for the next allocation of
 * their size - jansson values, message buffers, frames, log entries; blocks
 * stay ordinary malloc blocks, so either function may be paired with the C
 * library's; big blocks and sanitizer builds are never cached. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "movexd/alloc.h"

#include <malloc.h>
#include "movexd/buf.h"
#include "movexd/frame.h"
#include "movexd/oplog.h"

#define CACHED MX_BLOCK_CACHING

START_TEST(small_blocks_are_reused)
{
    void *a = mx_json_malloc(40);
    ck_assert_ptr_nonnull(a);
    memset(a, 0xab, 40);
    mx_block_free(a);
    void *b = mx_json_malloc(40);
    ck_assert_ptr_nonnull(b);
#if CACHED
    ck_assert_ptr_eq(a, b); /* the cached block, not a new one */
#endif
    memset(b, 0xcd, 40); /* the whole requested size is usable */
    mx_block_free(b);
}
END_TEST

START_TEST(pairs_with_the_c_library)
{
    /* allocated by malloc, freed into the cache, handed out again */
    for (size_t n = 1; n <= 300; n += 7) {
        void *p = malloc(n);
        ck_assert_ptr_nonnull(p);
        mx_block_free(p);
        void *q = mx_json_malloc(n);
        ck_assert_ptr_nonnull(q);
        memset(q, 1, n);
        free(q); /* and a cached block freed by free() */
    }
    mx_block_free(NULL);
}
END_TEST

START_TEST(many_values_through_jansson)
{
    /* jansson on the pair: build and free many trees; every size class is
     * taken from and given back to the cache, beyond its bound */
    json_set_alloc_funcs(mx_json_malloc, mx_block_free);
    for (int round = 0; round < 3; round++) {
        json_t *all = json_array();
        for (int i = 0; i < 3000; i++) {
            json_t *o = json_pack("{s:s, s:i, s:[f, b, n]}", "name", "value that is a bit longer", "i", i, "a",
                                  1.5, 1);
            ck_assert_ptr_nonnull(o);
            ck_assert_int_eq(json_array_append_new(all, o), 0);
        }
        ck_assert_uint_eq(json_array_size(all), 3000);
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(all, 2999), "i")), 2999);
        json_decref(all);
    }
    void *big = mx_json_malloc(4096); /* never cached */
    ck_assert_ptr_nonnull(big);
    mx_block_free(big);
    json_set_alloc_funcs(malloc, free);
}
END_TEST

/* The hot path's buffers go through the cache: a reply buffer, a frame
 * (its struct lives in the buffer) and a log entry dropped as the log
 * wraps each give their block to the next one of that size. */
START_TEST(buffers_frames_and_log_entries_reuse_blocks)
{
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    ck_assert_int_eq(mx_buf_puts(&b, "{\"type\":\"ack\"}"), 0);
    void *first = b.mem;
    mx_buf_free(&b);
    mx_buf_init(&b, MX_FRAME_PRE);
    ck_assert_int_eq(mx_buf_puts(&b, "{\"type\":\"fwd\"}"), 0);
    if (CACHED)
        ck_assert_ptr_eq(b.mem, first);
    /* a frame made of it frees into the cache when its last ref goes */
    mx_frame *f = mx_frame_from_buf(&b);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->len, strlen("{\"type\":\"fwd\"}"));
    ck_assert_int_eq(memcmp(mx_frame_data(f), "{\"type\":\"fwd\"}", f->len), 0);
    void *fm = f->mem;
    mx_frame_unref(f);
    mx_buf_init(&b, MX_FRAME_PRE);
    ck_assert_int_eq(mx_buf_putc(&b, 'x'), 0);
    if (CACHED)
        ck_assert_ptr_eq(b.mem, fm);
    mx_buf_free(&b);

    /* a log of 2: the third entry drops the first, whose block is next */
    mx_oplog *l = mx_oplog_new(2);
    ck_assert_ptr_nonnull(l);
    uint8_t d[16] = {0};
    char *text[3];
    for (int i = 0; i < 3; i++) {
        mx_buf e;
        mx_buf_init(&e, 0);
        ck_assert_int_eq(mx_buf_printf(&e, "{\"seq\":%d}", i + 1), 0);
        size_t len = e.len;
        text[i] = mx_buf_steal(&e);
        ck_assert_int_eq(mx_oplog_append_take(l, (uint64_t)i + 1, d, d, text[i], len), 0);
    }
    ck_assert_uint_eq(mx_oplog_count(l), 2);
    ck_assert_str_eq(mx_oplog_get(l, 3)->text, "{\"seq\":3}");
    void *again = mx_block_alloc(257); /* the size a log entry's buffer starts at */
    ck_assert_ptr_nonnull(again);
    if (CACHED)
        ck_assert_ptr_eq(again, text[0]);
    memset(again, 0, 257);
    mx_block_free(again);
    mx_oplog_free(l);
}
END_TEST

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* Past the per-size bound the blocks go back to the C library; the cache
 * hands out no block twice. */
START_TEST(bounded_and_never_twice)
{
    enum { N = MX_BLOCK_CACHE + 100 };
    void **p = malloc(N * sizeof(void *));
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < N; i++) {
        p[i] = mx_block_alloc(100);
        ck_assert_ptr_nonnull(p[i]);
        memset(p[i], i & 0xff, 100);
    }
    for (int i = 0; i < N; i++)
        mx_block_free(p[i]);
    for (int i = 0; i < N; i++) {
        p[i] = mx_block_alloc(100);
        ck_assert_ptr_nonnull(p[i]);
        memset(p[i], 0x5a, 100);
    }
    /* all distinct: a block on the list twice would come out twice */
    qsort(p, N, sizeof(void *), cmp_ptr);
    int twice = 0;
    for (int i = 1; i < N; i++)
        twice += p[i] == p[i - 1];
    ck_assert_int_eq(twice, 0);
    for (int i = 0; i < N; i++)
        free(p[i]);
    free(p);
}
END_TEST

/* A size whose glibc chunk size does not fit in size_t is refused like
 * malloc refuses it: n + 23 wrapped to a small number, so a request near
 * SIZE_MAX was handed a cached 24-byte block. */
START_TEST(an_impossible_size_is_refused)
{
    if (!CACHED)
        return; /* plain malloc (and ASan would abort on the size instead of answering NULL) */
    for (size_t n = 24; n <= 72; n += 16) /* blocks of the small classes, cached */
        mx_block_free(mx_block_alloc(n));
    for (size_t k = 0; k < 24; k++) {
        void *p = mx_block_alloc(SIZE_MAX - k);
        ck_assert_msg(p == NULL, "mx_block_alloc(SIZE_MAX - %zu) gave a block", k);
    }
}
END_TEST

#if MX_BLOCK_CACHING
/* mx_block_free files a block by glibc's chunk header; that must be the
 * class malloc_usable_size() gives, for every size the cache holds and
 * past it, for blocks from malloc, calloc and realloc (grown and shrunk,
 * so chunks are split and reused), and for an mmapped block (never
 * cached). */
START_TEST(size_class_is_malloc_usable_size)
{
    enum { MAXN = 2 * MX_BLOCK_MAX };
    void **p = calloc(MAXN + 1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t n = 0; n <= MAXN; n++) {
        p[n] = (n % 3 == 0) ? calloc(1, n ? n : 1) : malloc(n ? n : 1);
        ck_assert_ptr_nonnull(p[n]);
    }
    for (size_t n = 0; n <= MAXN; n++) {
        size_t want = (malloc_usable_size(p[n]) + 8) / 16;
        ck_assert_msg(mx_block_class(p[n]) == want, "size %zu: class %zu, malloc_usable_size says %zu", n,
                      mx_block_class(p[n]), want);
    }
    for (size_t n = 0; n <= MAXN; n++) {
        size_t to = (n * 7) % (MAXN + 1) + 1;
        void *q = realloc(p[n], to);
        ck_assert_ptr_nonnull(q);
        p[n] = q;
        ck_assert_uint_eq(mx_block_class(q), (malloc_usable_size(q) + 8) / 16);
    }
    for (size_t n = 0; n <= MAXN; n++)
        free(p[n]);
    free(p);
    void *big = malloc(4u << 20); /* mmapped by glibc */
    ck_assert_ptr_nonnull(big);
    ck_assert_uint_ge(mx_block_class(big), (MX_BLOCK_MAX + 8) / 16 + 1);
    /* this test's malloc is glibc's: the probe before main agreed */
    ck_assert_int_eq(mx_block_caching(), 1);
    mx_block_free(big); /* back to the C library, not cached */
}
END_TEST
#endif

Suite *mx_suite_alloc(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, small_blocks_are_reused);
    tcase_add_test(tc, pairs_with_the_c_library);
    tcase_add_test(tc, many_values_through_jansson);
    tcase_add_test(tc, buffers_frames_and_log_entries_reuse_blocks);
    tcase_add_test(tc, bounded_and_never_twice);
    tcase_add_test(tc, an_impossible_size_is_refused);
#if MX_BLOCK_CACHING
    tcase_add_test(tc, size_class_is_malloc_usable_size);
#endif
    suite_add_tcase(s, tc);
    return s;
}
