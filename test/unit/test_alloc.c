/* Unit tests for alloc.c's jansson allocator pair (mx_json_malloc /
 * mx_jansson_free): in normal builds freed small blocks are reused for the
 * next allocation of their size; blocks stay ordinary malloc blocks, so
 * either function may be paired with the C library's; big blocks and
 * sanitizer builds are never cached. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "movexd/alloc.h"

START_TEST(small_blocks_are_reused)
{
    void *a = mx_json_malloc(40);
    ck_assert_ptr_nonnull(a);
    memset(a, 0xab, 40);
    mx_jansson_free(a);
    void *b = mx_json_malloc(40);
    ck_assert_ptr_nonnull(b);
#if !defined(MX_FAULT_INJECTION) && !defined(__SANITIZE_ADDRESS__) && defined(__GLIBC__)
    ck_assert_ptr_eq(a, b); /* the cached block, not a new one */
#endif
    memset(b, 0xcd, 40); /* the whole requested size is usable */
    mx_jansson_free(b);
}
END_TEST

START_TEST(pairs_with_the_c_library)
{
    /* allocated by malloc, freed into the cache, handed out again */
    for (size_t n = 1; n <= 300; n += 7) {
        void *p = malloc(n);
        ck_assert_ptr_nonnull(p);
        mx_jansson_free(p);
        void *q = mx_json_malloc(n);
        ck_assert_ptr_nonnull(q);
        memset(q, 1, n);
        free(q); /* and a cached block freed by free() */
    }
    mx_jansson_free(NULL);
}
END_TEST

START_TEST(many_values_through_jansson)
{
    /* jansson on the pair: build and free many trees; every size class is
     * taken from and given back to the cache, beyond its bound */
    json_set_alloc_funcs(mx_json_malloc, mx_jansson_free);
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
    mx_jansson_free(big);
    json_set_alloc_funcs(malloc, free);
}
END_TEST

Suite *mx_suite_alloc(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, small_blocks_are_reused);
    tcase_add_test(tc, pairs_with_the_c_library);
    tcase_add_test(tc, many_values_through_jansson);
    suite_add_tcase(s, tc);
    return s;
}
