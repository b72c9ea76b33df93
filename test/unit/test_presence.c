/* Unit tests for presence.c: set/replace/clear, coalescing (one
 * announcement with the latest state), the rate-limit interval, removal,
 * listing without the asking owner, and that an empty table frees itself. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "movexd/presence.h"

static int owner_a, owner_b;

struct seen {
    int n;
    const void *owner[8];
    char state[8][32]; /* "" = left */
};

static void record(void *ctx, const struct mx_presence_entry *en)
{
    struct seen *s = ctx;
    ck_assert_int_lt(s->n, 8);
    s->owner[s->n] = en->owner;
    snprintf(s->state[s->n], sizeof(s->state[0]), "%.*s", (int)en->statelen, en->state ? en->state : "");
    s->n++;
}

static int set(mx_presence **pp, const void *owner, uint64_t conn, const char *text)
{
    return mx_presence_set(pp, owner, conn, "c", 1, text, text ? strlen(text) : 0);
}
#define SET set

START_TEST(set_coalesce_clear)
{
    mx_presence *p = NULL;
    ck_assert_int_eq(SET(&p, &owner_a, 1, NULL), 0);
    ck_assert_ptr_null(p); /* clearing nothing creates nothing */
    ck_assert_int_eq(SET(&p, &owner_a, 1, "1"), 0);
    ck_assert_int_eq(SET(&p, &owner_a, 1, "2"), 0);
    ck_assert_int_eq(SET(&p, &owner_b, 2, "{\"x\":1}"), 0);
    ck_assert_uint_eq(mx_presence_count(p), 2);
    struct seen s = {0};
    ck_assert_int_eq(mx_presence_flush(&p, 1000, 50, record, &s), 0);
    ck_assert_int_eq(s.n, 2); /* one announcement per owner, the latest state */
    ck_assert_ptr_eq(s.owner[0], &owner_a);
    ck_assert_str_eq(s.state[0], "2");
    ck_assert_str_eq(s.state[1], "{\"x\":1}");
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(mx_presence_flush(&p, 2000, 50, record, &s), 0);
    ck_assert_int_eq(s.n, 0); /* nothing changed */

    /* within the interval: deferred, then the latest goes out */
    ck_assert_int_eq(SET(&p, &owner_a, 1, "3"), 0);
    ck_assert_int_eq(mx_presence_flush(&p, 2010, 50, record, &s), 0);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(SET(&p, &owner_a, 1, "4"), 0);
    ck_assert_int_eq(SET(&p, &owner_a, 1, "5"), 0);
    ck_assert_int_eq(mx_presence_flush(&p, 2020, 50, record, &s), 1);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(mx_presence_flush(&p, 2060, 50, record, &s), 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_str_eq(s.state[1], "5");

    /* clear: announced as left once, then gone; the last one frees the table */
    ck_assert_int_eq(SET(&p, &owner_a, 1, NULL), 0);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(mx_presence_flush(&p, 3000, 50, record, &s), 0);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.state[0], "");
    ck_assert_uint_eq(mx_presence_count(p), 1);
    ck_assert_int_eq(SET(&p, &owner_b, 2, NULL), 0);
    ck_assert_int_eq(mx_presence_flush(&p, 4000, 50, record, &s), 0);
    ck_assert_ptr_null(p);
}
END_TEST

static void list(void *ctx, const struct mx_presence_entry *en) { record(ctx, en); }

START_TEST(remove_and_each)
{
    mx_presence *p = NULL;
    ck_assert_int_eq(SET(&p, &owner_a, 1, "\"a\""), 0);
    ck_assert_int_eq(SET(&p, &owner_b, 2, "\"b\""), 0);
    struct seen s = {0};
    mx_presence_each(p, &owner_a, list, &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_ptr_eq(s.owner[0], &owner_b);
    /* a cleared entry (left not announced yet) is not listed */
    ck_assert_int_eq(SET(&p, &owner_b, 2, NULL), 0);
    memset(&s, 0, sizeof(s));
    mx_presence_each(p, NULL, list, &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_ptr_eq(s.owner[0], &owner_a);

    struct mx_presence_entry gone;
    ck_assert_int_eq(mx_presence_remove(&p, &owner_a, &gone), 1);
    ck_assert_uint_eq(gone.conn, 1);
    ck_assert_ptr_null(gone.state);
    ck_assert_int_eq(mx_presence_remove(&p, &owner_a, &gone), 0);
    ck_assert_int_eq(mx_presence_remove(&p, &owner_b, &gone), 1);
    ck_assert_ptr_null(p); /* empty: freed */
    mx_presence_each(NULL, NULL, list, &s); /* a room without presence */
    mx_presence_free(NULL);
}
END_TEST

START_TEST(many_owners_grow)
{
    mx_presence *p = NULL;
    static int owners[100];
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(SET(&p, &owners[i], (uint64_t)i + 1, "1"), 0);
    ck_assert_uint_eq(mx_presence_count(p), 100);
    *mx_presence_listed(p) = 1;
    ck_assert_int_eq(*mx_presence_listed(p), 1);
    mx_presence_free(p); /* frees every state (ASan checks) */
}
END_TEST

/* The running total behind max_presence_room_bytes: set, replace, clear,
 * the flush that drops a cleared entry, and remove all keep it exact. */
START_TEST(bytes_total)
{
    mx_presence *p = NULL;
    static int o1, o2, o3;
    ck_assert_uint_eq(mx_presence_bytes_without(NULL, &o1), 0);
    ck_assert_int_eq(SET(&p, &o1, 1, "\"abc\""), 0);  /* 5 */
    ck_assert_int_eq(SET(&p, &o2, 2, "[1,2,3]"), 0);   /* 7 */
    ck_assert_uint_eq(mx_presence_bytes_without(p, &o3), 12);
    ck_assert_uint_eq(mx_presence_bytes_without(p, &o1), 7);
    ck_assert_int_eq(SET(&p, &o1, 1, "1"), 0); /* replaced: 1 + 7 */
    ck_assert_uint_eq(mx_presence_bytes_without(p, &o3), 8);
    ck_assert_int_eq(SET(&p, &o2, 2, NULL), 0); /* cleared, not yet announced */
    ck_assert_uint_eq(mx_presence_bytes_without(p, &o3), 1);
    struct seen s = {0};
    mx_presence_flush(&p, 1000, 0, list, &s); /* drops o2's entry */
    ck_assert_uint_eq(mx_presence_count(p), 1);
    ck_assert_uint_eq(mx_presence_bytes_without(p, &o3), 1);
    struct mx_presence_entry gone;
    ck_assert_int_eq(SET(&p, &o3, 3, "{}"), 0);
    ck_assert_int_eq(mx_presence_remove(&p, &o1, &gone), 1);
    ck_assert_uint_eq(mx_presence_bytes_without(p, NULL), 2);
    mx_presence_free(p);
}
END_TEST

Suite *mx_suite_presence(void)
{
    Suite *s = suite_create("presence");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, set_coalesce_clear);
    tcase_add_test(tc, remove_and_each);
    tcase_add_test(tc, many_owners_grow);
    tcase_add_test(tc, bytes_total);
    suite_add_tcase(s, tc);
    return s;
}
