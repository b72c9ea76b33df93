/* Unit tests for oplog.c: append/get, eviction on wraparound, seq gaps,
 * capacity 0, capacity changes, bytes accounting, clear, and a pin's texts
 * across rewinds. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/oplog.h"

static void dig(uint8_t out[MX_DIGEST_LEN], uint64_t seq)
{
    memset(out, 0, MX_DIGEST_LEN);
    memcpy(out, &seq, sizeof seq);
}

/* Append seq with prev = dig(seq-1), checksum = dig(seq), text "a<seq>". */
static int add(mx_oplog *l, uint64_t seq)
{
    uint8_t p[MX_DIGEST_LEN], c[MX_DIGEST_LEN];
    char text[32];
    dig(p, seq - 1);
    dig(c, seq);
    int len = snprintf(text, sizeof text, "a%llu", (unsigned long long)seq);
    return mx_oplog_append(l, seq, p, c, text, (size_t)len);
}

static size_t text_len(uint64_t seq)
{
    char text[32];
    return (size_t)snprintf(text, sizeof text, "a%llu", (unsigned long long)seq);
}

/* Every seq in [first, last] is held with the right contents, none outside. */
static void check_range(const mx_oplog *l, uint64_t first, uint64_t last)
{
    size_t bytes = 0;
    ck_assert_uint_eq(mx_oplog_count(l), last >= first ? last - first + 1 : 0);
    ck_assert_uint_eq(mx_oplog_first_seq(l), last >= first ? first : 0);
    ck_assert_uint_eq(mx_oplog_last_seq(l), last >= first ? last : 0);
    if (first > 0)
        ck_assert_ptr_null(mx_oplog_get(l, first - 1));
    ck_assert_ptr_null(mx_oplog_get(l, last + 1));
    for (uint64_t s = first; s <= last; s++) {
        const struct mx_oplog_entry *e = mx_oplog_get(l, s);
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(e->seq, s);
        uint8_t p[MX_DIGEST_LEN], c[MX_DIGEST_LEN];
        dig(p, s - 1);
        dig(c, s);
        ck_assert_int_eq(memcmp(e->prev, p, MX_DIGEST_LEN), 0);
        ck_assert_int_eq(memcmp(e->checksum, c, MX_DIGEST_LEN), 0);
        char text[32];
        snprintf(text, sizeof text, "a%llu", (unsigned long long)s);
        ck_assert_str_eq(e->text, text);
        ck_assert_uint_eq(e->len, strlen(text));
        bytes += e->len;
    }
    ck_assert_uint_eq(mx_oplog_bytes(l), bytes);
}

START_TEST(append_get)
{
    mx_oplog *l = mx_oplog_new(100);
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_eq(mx_oplog_count(l), 0);
    ck_assert_uint_eq(mx_oplog_first_seq(l), 0);
    ck_assert_uint_eq(mx_oplog_last_seq(l), 0);
    ck_assert_uint_eq(mx_oplog_bytes(l), 0);
    ck_assert_ptr_null(mx_oplog_get(l, 0));
    ck_assert_ptr_null(mx_oplog_get(l, 1));
    for (uint64_t s = 1; s <= 50; s++)
        ck_assert_int_eq(add(l, s), 0);
    check_range(l, 1, 50);
    ck_assert_ptr_null(mx_oplog_get(l, 0));
    ck_assert_ptr_null(mx_oplog_get(l, UINT64_MAX));
    mx_oplog_free(l);
    mx_oplog_free(NULL);
}
END_TEST

START_TEST(text_is_copied)
{
    mx_oplog *l = mx_oplog_new(4);
    uint8_t z[MX_DIGEST_LEN] = {0};
    char text[] = "{\"seq\":1}";
    ck_assert_int_eq(mx_oplog_append(l, 1, z, z, text, strlen(text)), 0);
    text[1] = 'X';
    ck_assert_str_eq(mx_oplog_get(l, 1)->text, "{\"seq\":1}");
    /* only len bytes are taken, and the copy is NUL-terminated */
    ck_assert_int_eq(mx_oplog_append(l, 2, z, z, "abcdef", 3), 0);
    ck_assert_str_eq(mx_oplog_get(l, 2)->text, "abc");
    ck_assert_uint_eq(mx_oplog_get(l, 2)->len, 3);
    ck_assert_int_eq(mx_oplog_append(l, 3, z, z, "", 0), 0);
    ck_assert_str_eq(mx_oplog_get(l, 3)->text, "");
    ck_assert_uint_eq(mx_oplog_bytes(l), strlen(text) + 3);
    mx_oplog_free(l);
}
END_TEST

/* append_take keeps the caller's block itself (no copy) when the log keeps
 * entries, and leaves it with the caller otherwise (ASan: no double free,
 * no leak). */
START_TEST(append_take_keeps_the_block)
{
    uint8_t z[MX_DIGEST_LEN] = {0};
    mx_oplog *l = mx_oplog_new(2);
    char *t1 = strdup("{\"seq\":1}"), *t2 = strdup("two"), *t3 = strdup("three");
    ck_assert_int_eq(mx_oplog_append_take(l, 1, z, z, t1, strlen(t1)), 0);
    ck_assert_ptr_eq(mx_oplog_get(l, 1)->text, t1);
    ck_assert_int_eq(mx_oplog_append_take(l, 2, z, z, t2, 3), 0);
    /* a gap: refused, the block is still the caller's */
    char *gap = strdup("gap");
    ck_assert_int_eq(mx_oplog_append_take(l, 9, z, z, gap, 3), -1);
    free(gap);
    /* full: the oldest (t1) is freed by the log */
    ck_assert_int_eq(mx_oplog_append_take(l, 3, z, z, t3, 5), 0);
    ck_assert_ptr_null(mx_oplog_get(l, 1));
    ck_assert_ptr_eq(mx_oplog_get(l, 3)->text, t3);
    ck_assert_uint_eq(mx_oplog_bytes(l), 3 + 5);
    mx_oplog_free(l);
    /* capacity 0 keeps nothing: the block stays the caller's */
    mx_oplog *none = mx_oplog_new(0);
    char *t = strdup("x");
    ck_assert_int_eq(mx_oplog_append_take(none, 1, z, z, t, 1), 1);
    ck_assert_uint_eq(mx_oplog_count(none), 0);
    free(t);
    mx_oplog_free(none);
}
END_TEST

START_TEST(first_seq_anywhere)
{
    /* a log rebuilt after a restart starts at the room's seq, not 1 */
    mx_oplog *l = mx_oplog_new(5);
    ck_assert_int_eq(add(l, 1000), 0);
    ck_assert_int_eq(add(l, 1001), 0);
    check_range(l, 1000, 1001);
    mx_oplog_free(l);
}
END_TEST

START_TEST(wraparound_eviction)
{
    mx_oplog *l = mx_oplog_new(10);
    for (uint64_t s = 1; s <= 10; s++)
        ck_assert_int_eq(add(l, s), 0);
    check_range(l, 1, 10);
    ck_assert_int_eq(add(l, 11), 0);
    check_range(l, 2, 11);
    for (uint64_t s = 12; s <= 1234; s++) {
        ck_assert_int_eq(add(l, s), 0);
        ck_assert_uint_eq(mx_oplog_count(l), 10);
        ck_assert_uint_eq(mx_oplog_first_seq(l), s - 9);
        ck_assert_ptr_null(mx_oplog_get(l, s - 10));
        ck_assert_ptr_nonnull(mx_oplog_get(l, s - 9));
    }
    check_range(l, 1225, 1234);
    /* capacity not a power of two or of the growth step */
    mx_oplog *m = mx_oplog_new(13);
    for (uint64_t s = 1; s <= 100; s++)
        ck_assert_int_eq(add(m, s), 0);
    check_range(m, 88, 100);
    mx_oplog_free(m);
    mx_oplog_free(l);
}
END_TEST

START_TEST(seq_gap_rejected)
{
    mx_oplog *l = mx_oplog_new(10);
    ck_assert_int_eq(add(l, 5), 0);
    ck_assert_int_eq(add(l, 7), -1); /* gap */
    ck_assert_int_eq(add(l, 5), -1); /* repeat */
    ck_assert_int_eq(add(l, 4), -1); /* backwards */
    check_range(l, 5, 5);
    ck_assert_int_eq(add(l, 6), 0);
    check_range(l, 5, 6);
    mx_oplog_free(l);
}
END_TEST

START_TEST(capacity_zero)
{
    mx_oplog *l = mx_oplog_new(0);
    for (uint64_t s = 1; s <= 5; s++)
        ck_assert_int_eq(add(l, s), 0);
    ck_assert_uint_eq(mx_oplog_count(l), 0);
    ck_assert_uint_eq(mx_oplog_bytes(l), 0);
    ck_assert_uint_eq(mx_oplog_first_seq(l), 0);
    ck_assert_uint_eq(mx_oplog_last_seq(l), 0);
    ck_assert_ptr_null(mx_oplog_get(l, 5));
    /* and it can be given a capacity later */
    ck_assert_int_eq(mx_oplog_set_capacity(l, 3), 0);
    for (uint64_t s = 6; s <= 10; s++)
        ck_assert_int_eq(add(l, s), 0);
    check_range(l, 8, 10);
    mx_oplog_free(l);
}
END_TEST

START_TEST(set_capacity_shrink_grow)
{
    mx_oplog *l = mx_oplog_new(100);
    for (uint64_t s = 1; s <= 150; s++) /* wrapped: head is not slot 0 */
        ck_assert_int_eq(add(l, s), 0);
    check_range(l, 51, 150);

    /* shrink keeps the newest */
    ck_assert_int_eq(mx_oplog_set_capacity(l, 30), 0);
    check_range(l, 121, 150);
    ck_assert_int_eq(add(l, 151), 0);
    check_range(l, 122, 151);

    /* shrink to more than held: nothing dropped */
    ck_assert_int_eq(mx_oplog_set_capacity(l, 40), 0);
    check_range(l, 122, 151);
    ck_assert_int_eq(mx_oplog_set_capacity(l, 35), 0);
    check_range(l, 122, 151);

    /* grow: later appends fill the new room before evicting */
    ck_assert_int_eq(mx_oplog_set_capacity(l, 200), 0);
    check_range(l, 122, 151);
    for (uint64_t s = 152; s <= 321; s++)
        ck_assert_int_eq(add(l, s), 0);
    check_range(l, 122, 321);
    ck_assert_int_eq(add(l, 322), 0);
    check_range(l, 123, 322);

    /* to 0: everything goes, appends keep nothing */
    ck_assert_int_eq(mx_oplog_set_capacity(l, 0), 0);
    check_range(l, 1, 0);
    ck_assert_int_eq(add(l, 323), 0);
    ck_assert_uint_eq(mx_oplog_count(l), 0);

    /* to 1 */
    ck_assert_int_eq(mx_oplog_set_capacity(l, 1), 0);
    ck_assert_int_eq(add(l, 324), 0);
    ck_assert_int_eq(add(l, 325), 0);
    check_range(l, 325, 325);
    mx_oplog_free(l);
}
END_TEST

START_TEST(shrink_while_growing)
{
    /* capacity change while the ring is smaller than the capacity */
    mx_oplog *l = mx_oplog_new(1000);
    for (uint64_t s = 1; s <= 20; s++)
        ck_assert_int_eq(add(l, s), 0);
    ck_assert_int_eq(mx_oplog_set_capacity(l, 500), 0);
    check_range(l, 1, 20);
    ck_assert_int_eq(mx_oplog_set_capacity(l, 7), 0);
    check_range(l, 14, 20);
    for (uint64_t s = 21; s <= 30; s++)
        ck_assert_int_eq(add(l, s), 0);
    check_range(l, 24, 30);
    mx_oplog_free(l);
}
END_TEST

START_TEST(bytes_accounting)
{
    mx_oplog *l = mx_oplog_new(50);
    size_t want = 0;
    for (uint64_t s = 1; s <= 50; s++) {
        ck_assert_int_eq(add(l, s), 0);
        want += text_len(s);
        ck_assert_uint_eq(mx_oplog_bytes(l), want);
    }
    for (uint64_t s = 51; s <= 200; s++) {
        ck_assert_int_eq(add(l, s), 0);
        want += text_len(s) - text_len(s - 50);
        ck_assert_uint_eq(mx_oplog_bytes(l), want);
    }
    mx_oplog_free(l);
}
END_TEST

START_TEST(clear)
{
    mx_oplog *l = mx_oplog_new(8);
    for (uint64_t s = 1; s <= 20; s++)
        ck_assert_int_eq(add(l, s), 0);
    mx_oplog_clear(l);
    check_range(l, 1, 0);
    ck_assert_ptr_null(mx_oplog_get(l, 20));
    /* empty again: any seq may start it */
    ck_assert_int_eq(add(l, 3), 0);
    ck_assert_int_eq(add(l, 4), 0);
    check_range(l, 3, 4);
    mx_oplog_clear(l);
    mx_oplog_clear(l);
    check_range(l, 1, 0);
    mx_oplog_free(l);
}
END_TEST

/* A pin's texts outlive rewinds that reuse their seqs (mx_room_batch_rollback
 * in cluster mode rewinds a hold): pinned under a hold at seq 6 with 1..10
 * held, the log is rewound, refilled with new texts for 7..10 and rewound
 * again, several times, then cleared. Every text the pin saw must still be
 * there at the unpin; the refills' texts, which no reader saw, must not use
 * up the slots the pin reserved (they did: the clear then freed 1..6 under
 * the reader). */
START_TEST(pinned_texts_outlive_rewinds)
{
    mx_oplog *l = mx_oplog_new(16);
    for (uint64_t s = 1; s <= 6; s++)
        ck_assert_int_eq(add(l, s), 0);
    mx_oplog_hold(l);
    for (uint64_t s = 7; s <= 10; s++)
        ck_assert_int_eq(add(l, s), 0);
    const char *seen[10];
    for (uint64_t s = 1; s <= 10; s++)
        seen[s - 1] = mx_oplog_get(l, s)->text;
    ck_assert_int_eq(mx_oplog_pin(l), 0);
    for (int round = 0; round < 4; round++) {
        mx_oplog_rewind(l);
        check_range(l, 1, 6);
        mx_oplog_hold(l);
        for (uint64_t s = 7; s <= 10; s++)
            ck_assert_int_eq(add(l, s), 0);
    }
    mx_oplog_rewind(l);
    mx_oplog_clear(l);
    for (uint64_t s = 1; s <= 10; s++) {
        char text[32];
        snprintf(text, sizeof text, "a%llu", (unsigned long long)s);
        ck_assert_str_eq(seen[s - 1], text);
    }
    mx_oplog_unpin(l);
    /* and the log goes on */
    ck_assert_int_eq(add(l, 1), 0);
    check_range(l, 1, 1);
    mx_oplog_free(l);
}
END_TEST

Suite *mx_suite_oplog(void)
{
    Suite *s = suite_create("oplog");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, append_get);
    tcase_add_test(tc, text_is_copied);
    tcase_add_test(tc, append_take_keeps_the_block);
    tcase_add_test(tc, first_seq_anywhere);
    tcase_add_test(tc, wraparound_eviction);
    tcase_add_test(tc, seq_gap_rejected);
    tcase_add_test(tc, capacity_zero);
    tcase_add_test(tc, set_capacity_shrink_grow);
    tcase_add_test(tc, shrink_while_growing);
    tcase_add_test(tc, bytes_accounting);
    tcase_add_test(tc, clear);
    tcase_add_test(tc, pinned_texts_outlive_rewinds);
    suite_add_tcase(s, tc);
    return s;
}
