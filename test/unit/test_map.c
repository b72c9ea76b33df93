/* Unit tests for map.c: put/get/replace/del, growth and shrink, binary keys,
 * iteration with deletion of the returned entry, and a long random run
 * checked against a plain array reference. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/map.h"
#include "test_rand.h"

static int vals[16];

START_TEST(put_get_replace_del)
{
    mx_map *m = mx_map_new();
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(mx_map_len(m), 0);
    ck_assert_ptr_null(mx_map_get(m, "a", 1));
    ck_assert_ptr_null(mx_map_del(m, "a", 1));

    ck_assert_int_eq(mx_map_put(m, "a", 1, &vals[0]), 0);
    ck_assert_int_eq(mx_map_put(m, "ab", 2, &vals[1]), 0);
    ck_assert_uint_eq(mx_map_len(m), 2);
    ck_assert_ptr_eq(mx_map_get(m, "a", 1), &vals[0]);
    ck_assert_ptr_eq(mx_map_get(m, "ab", 2), &vals[1]);
    ck_assert_ptr_null(mx_map_get(m, "abc", 3));
    ck_assert_ptr_eq(mx_map_get(m, "ab", 1), &vals[0]); /* length decides */

    /* replace keeps the count */
    ck_assert_int_eq(mx_map_put(m, "a", 1, &vals[2]), 0);
    ck_assert_uint_eq(mx_map_len(m), 2);
    ck_assert_ptr_eq(mx_map_get(m, "a", 1), &vals[2]);

    ck_assert_ptr_eq(mx_map_del(m, "a", 1), &vals[2]);
    ck_assert_uint_eq(mx_map_len(m), 1);
    ck_assert_ptr_null(mx_map_get(m, "a", 1));
    ck_assert_ptr_null(mx_map_del(m, "a", 1));
    ck_assert_ptr_eq(mx_map_get(m, "ab", 2), &vals[1]);

    /* NULL values are allowed; get cannot tell them from absent */
    ck_assert_int_eq(mx_map_put(m, "n", 1, NULL), 0);
    ck_assert_uint_eq(mx_map_len(m), 2);
    mx_map_free(m, NULL);
    mx_map_free(NULL, NULL);
}
END_TEST

START_TEST(keys_are_copied)
{
    mx_map *m = mx_map_new();
    char k[8] = "room:1";
    ck_assert_int_eq(mx_map_put(m, k, 6, &vals[0]), 0);
    k[5] = '2';
    ck_assert_ptr_null(mx_map_get(m, k, 6));
    ck_assert_ptr_eq(mx_map_get(m, "room:1", 6), &vals[0]);
    size_t it = 0, len;
    const char *key;
    void *v;
    ck_assert_int_eq(mx_map_next(m, &it, &key, &len, &v), 1);
    ck_assert_ptr_ne(key, k);
    ck_assert_uint_eq(len, 6);
    ck_assert_int_eq(memcmp(key, "room:1", 6), 0);
    ck_assert_int_eq(key[6], '\0'); /* copies are NUL-terminated */
    mx_map_free(m, NULL);
}
END_TEST

START_TEST(binary_keys)
{
    mx_map *m = mx_map_new();
    const char k1[] = {'a', 0, 'b'};
    const char k2[] = {'a', 0, 'c'};
    const char k3[] = {0};
    const char k4[] = {0, 0};
    ck_assert_int_eq(mx_map_put(m, k1, 3, &vals[1]), 0);
    ck_assert_int_eq(mx_map_put(m, k2, 3, &vals[2]), 0);
    ck_assert_int_eq(mx_map_put(m, k3, 1, &vals[3]), 0);
    ck_assert_int_eq(mx_map_put(m, k4, 2, &vals[4]), 0);
    ck_assert_int_eq(mx_map_put(m, "", 0, &vals[5]), 0); /* empty key */
    ck_assert_int_eq(mx_map_put(m, "\xff\xfe", 2, &vals[6]), 0);
    ck_assert_uint_eq(mx_map_len(m), 6);
    ck_assert_ptr_eq(mx_map_get(m, k1, 3), &vals[1]);
    ck_assert_ptr_eq(mx_map_get(m, k2, 3), &vals[2]);
    ck_assert_ptr_eq(mx_map_get(m, k3, 1), &vals[3]);
    ck_assert_ptr_eq(mx_map_get(m, k4, 2), &vals[4]);
    ck_assert_ptr_eq(mx_map_get(m, "", 0), &vals[5]);
    ck_assert_ptr_eq(mx_map_get(m, NULL, 0), &vals[5]);
    ck_assert_ptr_eq(mx_map_get(m, "\xff\xfe", 2), &vals[6]);
    ck_assert_ptr_null(mx_map_get(m, "a", 1));
    ck_assert_ptr_eq(mx_map_del(m, "", 0), &vals[5]);
    ck_assert_ptr_null(mx_map_get(m, "", 0));
    ck_assert_ptr_eq(mx_map_get(m, k3, 1), &vals[3]);
    mx_map_free(m, NULL);
}
END_TEST

static int freed;
static void count_free(void *p)
{
    freed++;
    free(p);
}

START_TEST(growth_many_keys)
{
    enum { N = 20000 };
    mx_map *m = mx_map_new();
    char k[32];
    for (int i = 0; i < N; i++) {
        int len = snprintf(k, sizeof k, "client-%d", i);
        int *v = malloc(sizeof *v);
        *v = i;
        ck_assert_int_eq(mx_map_put(m, k, (size_t)len, v), 0);
        ck_assert_uint_eq(mx_map_len(m), (size_t)i + 1);
    }
    for (int i = 0; i < N; i++) {
        int len = snprintf(k, sizeof k, "client-%d", i);
        int *v = mx_map_get(m, k, (size_t)len);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(*v, i);
    }
    ck_assert_ptr_null(mx_map_get(m, "client-20000", 12));
    /* delete most of them: lookups of the rest stay right through shrinks */
    for (int i = 0; i < N; i++) {
        if (i % 100 == 7)
            continue;
        int len = snprintf(k, sizeof k, "client-%d", i);
        int *v = mx_map_del(m, k, (size_t)len);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(*v, i);
        free(v);
    }
    ck_assert_uint_eq(mx_map_len(m), N / 100);
    for (int i = 7; i < N; i += 100) {
        int len = snprintf(k, sizeof k, "client-%d", i);
        int *v = mx_map_get(m, k, (size_t)len);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(*v, i);
    }
    /* and the map grows again */
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(k, sizeof k, "again-%d", i);
        ck_assert_int_eq(mx_map_put(m, k, (size_t)len, malloc(1)), 0);
    }
    ck_assert_uint_eq(mx_map_len(m), N / 100 + 1000);
    freed = 0;
    mx_map_free(m, count_free);
    ck_assert_int_eq(freed, N / 100 + 1000);
}
END_TEST

START_TEST(iterate_all)
{
    enum { N = 500 };
    mx_map *m = mx_map_new();
    static int v[N];
    char k[16];
    for (int i = 0; i < N; i++) {
        v[i] = i;
        int len = snprintf(k, sizeof k, "%d", i);
        ck_assert_int_eq(mx_map_put(m, k, (size_t)len, &v[i]), 0);
    }
    char seen[N] = {0};
    size_t it = 0, len, n = 0;
    const char *key;
    void *val;
    while (mx_map_next(m, &it, &key, &len, &val)) {
        int i = *(int *)val;
        ck_assert_int_eq(atoi(key), i);
        ck_assert_int_eq(seen[i], 0);
        seen[i] = 1;
        n++;
    }
    ck_assert_uint_eq(n, N);
    /* the end is sticky */
    ck_assert_int_eq(mx_map_next(m, &it, &key, &len, &val), 0);
    ck_assert_int_eq(mx_map_next(m, &it, NULL, NULL, NULL), 0);
    mx_map_free(m, NULL);

    /* empty map */
    m = mx_map_new();
    it = 0;
    ck_assert_int_eq(mx_map_next(m, &it, &key, &len, &val), 0);
    mx_map_free(m, NULL);
}
END_TEST

START_TEST(iterate_deleting)
{
    enum { N = 3000 };
    mx_map *m = mx_map_new();
    static int v[N];
    char k[16];
    for (int i = 0; i < N; i++) {
        v[i] = i;
        int len = snprintf(k, sizeof k, "k%d", i);
        ck_assert_int_eq(mx_map_put(m, k, (size_t)len, &v[i]), 0);
    }
    /* delete every other entry as it is returned: each entry is still
     * visited exactly once, and shrinking underneath does not disturb it */
    char seen[N] = {0};
    size_t it = 0, len, n = 0;
    const char *key;
    void *val;
    while (mx_map_next(m, &it, &key, &len, &val)) {
        int i = *(int *)val;
        ck_assert_int_eq(seen[i], 0);
        seen[i] = 1;
        n++;
        if (i % 2 == 0) {
            char copy[16];
            memcpy(copy, key, len);
            ck_assert_ptr_eq(mx_map_del(m, copy, len), val);
        }
    }
    ck_assert_uint_eq(n, N);
    ck_assert_uint_eq(mx_map_len(m), N / 2);
    for (int i = 0; i < N; i++) {
        int l = snprintf(k, sizeof k, "k%d", i);
        ck_assert_ptr_eq(mx_map_get(m, k, (size_t)l), i % 2 ? &v[i] : NULL);
    }
    /* delete everything while iterating */
    it = 0;
    n = 0;
    while (mx_map_next(m, &it, &key, &len, &val)) {
        char copy[16];
        memcpy(copy, key, len);
        ck_assert_ptr_eq(mx_map_del(m, copy, len), val);
        n++;
    }
    ck_assert_uint_eq(n, N / 2);
    ck_assert_uint_eq(mx_map_len(m), 0);
    ck_assert_int_eq(mx_map_put(m, "x", 1, &v[0]), 0);
    ck_assert_ptr_eq(mx_map_get(m, "x", 1), &v[0]);
    mx_map_free(m, NULL);
}
END_TEST

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) { return mx_test_xorshift(&rng_state); }

START_TEST(random_against_reference)
{
    /* Keys from a small universe so puts, replaces and deletes of present
     * keys all happen often; the reference is a plain array by key number. */
    enum { U = 4096, OPS = 300000 };
    static void *ref[U];
    static char slots[U];
    memset(ref, 0, sizeof ref);
    size_t ref_len = 0;
    mx_map *m = mx_map_new();
    char k[24];
    for (int op = 0; op < OPS; op++) {
        uint64_t r = rng();
        unsigned key = (unsigned)(r >> 8) % U;
        int len = snprintf(k, sizeof k, "%u", key);
        k[len++] = '\0'; /* a NUL byte inside every key */
        k[len++] = (char)(key & 0xff);
        /* alternate filling and draining phases so the map grows and
         * shrinks many times: put-heavy, then delete-heavy */
        unsigned dice = (unsigned)(r % 8);
        int filling = (op / 10000) % 2 == 0;
        int put = filling ? dice < 5 : dice < 2;
        int del = filling ? dice == 5 : dice >= 2 && dice < 6;
        if (put) {
            void *v = &slots[(r >> 32) % U];
            ck_assert_int_eq(mx_map_put(m, k, (size_t)len, v), 0);
            if (!ref[key])
                ref_len++;
            ref[key] = v;
        } else if (del) {
            void *got = mx_map_del(m, k, (size_t)len);
            ck_assert_ptr_eq(got, ref[key]);
            if (ref[key])
                ref_len--;
            ref[key] = NULL;
        } else {
            ck_assert_ptr_eq(mx_map_get(m, k, (size_t)len), ref[key]);
        }
        ck_assert_uint_eq(mx_map_len(m), ref_len);
        if (op % 10000 == 9999) {
            for (unsigned i = 0; i < U; i++) {
                int l = snprintf(k, sizeof k, "%u", i);
                k[l++] = '\0';
                k[l++] = (char)(i & 0xff);
                ck_assert_ptr_eq(mx_map_get(m, k, (size_t)l), ref[i]);
            }
            size_t it = 0, n = 0, kl;
            const char *kk;
            void *v;
            while (mx_map_next(m, &it, &kk, &kl, &v)) {
                unsigned i = (unsigned)strtoul(kk, NULL, 10);
                ck_assert_ptr_eq(v, ref[i]);
                n++;
            }
            ck_assert_uint_eq(n, ref_len);
        }
    }
    mx_map_free(m, NULL);
}
END_TEST

Suite *mx_suite_map(void)
{
    Suite *s = suite_create("map");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, put_get_replace_del);
    tcase_add_test(tc, keys_are_copied);
    tcase_add_test(tc, binary_keys);
    tcase_add_test(tc, growth_many_keys);
    tcase_add_test(tc, iterate_all);
    tcase_add_test(tc, iterate_deleting);
    tcase_add_test(tc, random_against_reference);
    suite_add_tcase(s, tc);
    return s;
}
