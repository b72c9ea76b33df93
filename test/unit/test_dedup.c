/* Unit tests for dedup.c: highest n, find (remembered / never decided /
 * too old) across window eviction and skipped n's, non-increasing records
 * refused, reject messages copied, lazy ring growth, foreach order and many
 * clients. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/dedup.h"

#define C1 "c1", 2
#define C2 "c2", 2

static struct mx_outcome ack(uint64_t n, uint64_t seq)
{
    struct mx_outcome o;
    memset(&o, 0, sizeof o);
    o.n = n;
    o.kind = MX_OUTCOME_ACK;
    o.seq = seq;
    memset(o.prev, (int)(seq - 1) & 0xff, MX_DIGEST_LEN);
    memset(o.checksum, (int)seq & 0xff, MX_DIGEST_LEN);
    return o;
}

static struct mx_outcome rej(uint64_t n, int code, const char *msg)
{
    struct mx_outcome o;
    memset(&o, 0, sizeof o);
    o.n = n;
    o.kind = MX_OUTCOME_REJECT;
    o.code = code;
    o.seq = 9;
    o.message = (char *)msg;
    return o;
}

static int rec(mx_dedup *d, const char *c, size_t clen, struct mx_outcome o)
{
    return mx_dedup_record(d, c, clen, &o);
}

static int find(const mx_dedup *d, const char *c, size_t clen, uint64_t n)
{
    const struct mx_outcome *o = NULL;
    int r = mx_dedup_find(d, c, clen, n, &o);
    if (r == 1) {
        ck_assert_ptr_nonnull(o);
        ck_assert_uint_eq(o->n, n);
    }
    return r;
}

/* The last record looked up is remembered (dedup.c lookup): a record a
 * rewind removes must be forgotten with it, and a remembered client must
 * not answer for another (same length, other bytes; a prefix). */
START_TEST(remembered_record_never_outlives_it)
{
    mx_dedup *d = mx_dedup_new(4);
    ck_assert_int_eq(rec(d, "alice", 5, ack(1, 10)), 0);
    ck_assert_uint_eq(mx_dedup_highest(d, "alice", 5), 1);
    ck_assert_uint_eq(mx_dedup_highest(d, "alicf", 5), 0);
    ck_assert_uint_eq(mx_dedup_highest(d, "alic", 4), 0);
    ck_assert_uint_eq(mx_dedup_highest(d, "alice", 5), 1);
    mx_dedup_hold(d);
    ck_assert_int_eq(rec(d, "bob", 3, ack(1, 11)), 0); /* a new record, under a hold */
    ck_assert_uint_eq(mx_dedup_highest(d, "bob", 3), 1); /* now remembered */
    mx_dedup_rewind(d);                                  /* removes bob's record */
    ck_assert_uint_eq(mx_dedup_highest(d, "bob", 3), 0);
    ck_assert_int_eq(find(d, "bob", 3, 1), 0);
    ck_assert_uint_eq(mx_dedup_clients(d), 1);
    ck_assert_int_eq(rec(d, "bob", 3, ack(1, 12)), 0);
    ck_assert_uint_eq(mx_dedup_highest(d, "bob", 3), 1);
    ck_assert_uint_eq(mx_dedup_highest(d, "alice", 5), 1);
    mx_dedup_free(d);
}
END_TEST

START_TEST(highest_and_find_basic)
{
    mx_dedup *d = mx_dedup_new(1024);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(mx_dedup_clients(d), 0);
    ck_assert_uint_eq(mx_dedup_highest(d, C1), 0);
    ck_assert_int_eq(find(d, C1, 1), 0); /* unknown client: never decided */

    ck_assert_int_eq(rec(d, C1, ack(1, 10)), 0);
    ck_assert_int_eq(rec(d, C1, rej(2, -7, "nope")), 0);
    ck_assert_int_eq(rec(d, C1, ack(3, 11)), 0);
    ck_assert_uint_eq(mx_dedup_highest(d, C1), 3);
    ck_assert_uint_eq(mx_dedup_highest(d, C2), 0);
    ck_assert_uint_eq(mx_dedup_clients(d), 1);

    const struct mx_outcome *o;
    ck_assert_int_eq(mx_dedup_find(d, C1, 1, &o), 1);
    ck_assert_uint_eq(o->kind, MX_OUTCOME_ACK);
    ck_assert_uint_eq(o->seq, 10);
    uint8_t p[MX_DIGEST_LEN], c[MX_DIGEST_LEN];
    memset(p, 9, sizeof p);
    memset(c, 10, sizeof c);
    ck_assert_int_eq(memcmp(o->prev, p, MX_DIGEST_LEN), 0);
    ck_assert_int_eq(memcmp(o->checksum, c, MX_DIGEST_LEN), 0);
    ck_assert_ptr_null(o->message);

    ck_assert_int_eq(mx_dedup_find(d, C1, 2, &o), 1);
    ck_assert_uint_eq(o->kind, MX_OUTCOME_REJECT);
    ck_assert_int_eq(o->code, -7);
    ck_assert_str_eq(o->message, "nope");

    ck_assert_int_eq(find(d, C1, 3), 1);
    ck_assert_int_eq(find(d, C1, 4), 0);          /* above highest */
    ck_assert_int_eq(find(d, C1, UINT64_MAX), 0);
    ck_assert_int_eq(find(d, C1, 0), 0);          /* below oldest, nothing dropped */
    ck_assert_int_eq(find(d, C2, 1), 0);
    ck_assert_int_eq(mx_dedup_find(d, C1, 3, NULL), 1); /* out is optional */
    mx_dedup_free(d);
    mx_dedup_free(NULL);
}
END_TEST

START_TEST(skipped_n)
{
    mx_dedup *d = mx_dedup_new(8);
    ck_assert_int_eq(rec(d, C1, ack(5, 1)), 0); /* first n need not be 1 */
    ck_assert_int_eq(rec(d, C1, ack(7, 2)), 0);
    ck_assert_int_eq(rec(d, C1, ack(20, 3)), 0);
    ck_assert_uint_eq(mx_dedup_highest(d, C1), 20);
    /* below the oldest, but nothing was ever dropped: never decided */
    for (uint64_t n = 1; n < 5; n++)
        ck_assert_int_eq(find(d, C1, n), 0);
    ck_assert_int_eq(find(d, C1, 5), 1);
    ck_assert_int_eq(find(d, C1, 6), 0); /* skipped, inside the range */
    ck_assert_int_eq(find(d, C1, 7), 1);
    for (uint64_t n = 8; n < 20; n++)
        ck_assert_int_eq(find(d, C1, n), 0);
    ck_assert_int_eq(find(d, C1, 20), 1);
    ck_assert_int_eq(find(d, C1, 21), 0);
    mx_dedup_free(d);
}
END_TEST

START_TEST(window_eviction)
{
    enum { W = 16 };
    mx_dedup *d = mx_dedup_new(W);
    /* n = 2, 4, 6, ...: every odd n is skipped */
    for (uint64_t n = 2; n <= 2 * W; n += 2)
        ck_assert_int_eq(rec(d, C1, ack(n, n)), 0);
    /* exactly the window: nothing dropped yet */
    ck_assert_int_eq(find(d, C1, 1), 0);
    ck_assert_int_eq(find(d, C1, 2), 1);
    ck_assert_uint_eq(mx_dedup_slots(d), W);

    ck_assert_int_eq(rec(d, C1, ack(2 * W + 2, 99)), 0); /* drops n = 2 */
    ck_assert_int_eq(find(d, C1, 1), -1);
    ck_assert_int_eq(find(d, C1, 2), -1);
    ck_assert_int_eq(find(d, C1, 3), -1); /* below the oldest: unknowable */
    ck_assert_int_eq(find(d, C1, 4), 1);  /* oldest remembered */
    ck_assert_int_eq(find(d, C1, 5), 0);  /* skipped inside the range */
    ck_assert_int_eq(find(d, C1, 2 * W + 1), 0);
    ck_assert_int_eq(find(d, C1, 2 * W + 2), 1);
    ck_assert_int_eq(find(d, C1, 2 * W + 3), 0);
    ck_assert_uint_eq(mx_dedup_slots(d), W);

    /* long run: always exactly the last W remembered, in order */
    for (uint64_t n = 2 * W + 3; n <= 5000; n++)
        ck_assert_int_eq(rec(d, C1, ack(n, n)), 0);
    ck_assert_int_eq(find(d, C1, 5000 - W), -1);
    for (uint64_t n = 5000 - W + 1; n <= 5000; n++) {
        const struct mx_outcome *o;
        ck_assert_int_eq(mx_dedup_find(d, C1, n, &o), 1);
        ck_assert_uint_eq(o->seq, n);
    }
    ck_assert_int_eq(find(d, C1, 5001), 0);
    ck_assert_uint_eq(mx_dedup_slots(d), W);
    mx_dedup_free(d);
}
END_TEST

START_TEST(window_one)
{
    mx_dedup *d = mx_dedup_new(1);
    ck_assert_int_eq(rec(d, C1, ack(3, 1)), 0);
    ck_assert_int_eq(find(d, C1, 2), 0);
    ck_assert_int_eq(find(d, C1, 3), 1);
    ck_assert_int_eq(rec(d, C1, rej(4, -1, "x")), 0);
    ck_assert_int_eq(find(d, C1, 3), -1);
    ck_assert_int_eq(find(d, C1, 4), 1);
    ck_assert_int_eq(rec(d, C1, rej(9, -1, "y")), 0);
    ck_assert_int_eq(find(d, C1, 4), -1);
    ck_assert_int_eq(find(d, C1, 8), -1);
    ck_assert_int_eq(find(d, C1, 9), 1);
    ck_assert_uint_eq(mx_dedup_slots(d), 1);
    mx_dedup_free(d);
}
END_TEST

START_TEST(record_not_increasing)
{
    mx_dedup *d = mx_dedup_new(4);
    ck_assert_int_eq(rec(d, C1, ack(0, 1)), -1); /* n must be > 0 (highest) */
    ck_assert_uint_eq(mx_dedup_clients(d), 0);
    ck_assert_int_eq(rec(d, C1, ack(5, 1)), 0);
    ck_assert_int_eq(rec(d, C1, ack(5, 2)), -1);
    ck_assert_int_eq(rec(d, C1, rej(4, -1, "m")), -1);
    ck_assert_int_eq(rec(d, C1, ack(1, 3)), -1);
    ck_assert_uint_eq(mx_dedup_highest(d, C1), 5);
    const struct mx_outcome *o;
    ck_assert_int_eq(mx_dedup_find(d, C1, 5, &o), 1);
    ck_assert_uint_eq(o->seq, 1); /* unchanged */
    ck_assert_int_eq(find(d, C1, 4), 0);
    /* another client's n are independent */
    ck_assert_int_eq(rec(d, C2, ack(1, 4)), 0);
    ck_assert_uint_eq(mx_dedup_highest(d, C2), 1);
    ck_assert_uint_eq(mx_dedup_clients(d), 2);
    mx_dedup_free(d);
}
END_TEST

START_TEST(messages_copied)
{
    mx_dedup *d = mx_dedup_new(2);
    char msg[32];
    strcpy(msg, "test failed at /a");
    ck_assert_int_eq(rec(d, C1, rej(1, -3, msg)), 0);
    strcpy(msg, "overwritten");
    ck_assert_int_eq(rec(d, C1, rej(2, -4, NULL)), 0);
    const struct mx_outcome *o;
    ck_assert_int_eq(mx_dedup_find(d, C1, 1, &o), 1);
    ck_assert_ptr_ne(o->message, msg);
    ck_assert_str_eq(o->message, "test failed at /a");
    ck_assert_int_eq(mx_dedup_find(d, C1, 2, &o), 1);
    ck_assert_ptr_null(o->message);
    /* an ack with a stray message pointer keeps a copy too (freed later) */
    struct mx_outcome a = ack(3, 1);
    a.message = msg;
    ck_assert_int_eq(mx_dedup_record(d, C1, &a), 0);
    ck_assert_int_eq(mx_dedup_find(d, C1, 3, &o), 1);
    ck_assert_str_eq(o->message, "overwritten");
    /* evictions free messages (checked by ASan's leak detector) */
    ck_assert_int_eq(rec(d, C1, rej(4, -3, "four")), 0);
    ck_assert_int_eq(rec(d, C1, rej(5, -3, "five")), 0);
    ck_assert_int_eq(find(d, C1, 3), -1);
    mx_dedup_free(d);
}
END_TEST

START_TEST(lazy_growth)
{
    mx_dedup *d = mx_dedup_new(1024);
    ck_assert_uint_eq(mx_dedup_slots(d), 0);
    ck_assert_int_eq(rec(d, C1, ack(1, 1)), 0);
    ck_assert_uint_eq(mx_dedup_slots(d), 1);
    ck_assert_int_eq(rec(d, C1, ack(2, 2)), 0);
    ck_assert_int_eq(rec(d, C1, ack(3, 3)), 0);
    ck_assert_uint_le(mx_dedup_slots(d), 4); /* memory for ~3, not 1024 */
    for (uint64_t n = 4; n <= 100; n++)
        ck_assert_int_eq(rec(d, C1, ack(n, n)), 0);
    ck_assert_uint_le(mx_dedup_slots(d), 200);
    ck_assert_uint_ge(mx_dedup_slots(d), 100);
    for (uint64_t n = 1; n <= 100; n++)
        ck_assert_int_eq(find(d, C1, n), 1);
    /* growth stops at the window even when it is not a power of two */
    mx_dedup *e = mx_dedup_new(100);
    for (uint64_t n = 1; n <= 1000; n++)
        ck_assert_int_eq(rec(e, C1, ack(n, n)), 0);
    ck_assert_uint_eq(mx_dedup_slots(e), 100);
    ck_assert_int_eq(find(e, C1, 900), -1);
    ck_assert_int_eq(find(e, C1, 901), 1);
    mx_dedup_free(e);
    mx_dedup_free(d);
}
END_TEST

struct visit {
    char client[16];
    uint64_t highest, n;
};

struct visits {
    struct visit v[64];
    int len, stop_at;
};

static int collect(void *arg, const char *client, size_t clen, uint64_t highest,
                   const struct mx_outcome *o)
{
    struct visits *vs = arg;
    ck_assert_int_lt(vs->len, 64);
    struct visit *v = &vs->v[vs->len++];
    ck_assert_uint_lt(clen, sizeof v->client);
    memcpy(v->client, client, clen);
    v->client[clen] = '\0';
    v->highest = highest;
    v->n = o->n;
    return vs->len == vs->stop_at ? 42 : 0;
}

START_TEST(foreach_order)
{
    mx_dedup *d = mx_dedup_new(4);
    struct visits vs = {.len = 0, .stop_at = -1};
    ck_assert_int_eq(mx_dedup_foreach(d, collect, &vs), 0);
    ck_assert_int_eq(vs.len, 0);

    /* c1 wraps its ring (n 1..6 with window 4 keeps 3..6); interleave c2 */
    for (uint64_t n = 1; n <= 6; n++) {
        ck_assert_int_eq(rec(d, C1, ack(n, n)), 0);
        if (n % 2 == 0)
            ck_assert_int_eq(rec(d, C2, ack(n * 10, n)), 0);
    }
    ck_assert_int_eq(mx_dedup_foreach(d, collect, &vs), 0);
    ck_assert_int_eq(vs.len, 4 + 3);
    /* client by client (whichever comes first), each oldest first */
    int c1_first = strcmp(vs.v[0].client, "c1") == 0;
    int c1_at = c1_first ? 0 : 3, c2_at = c1_first ? 4 : 0;
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(vs.v[c1_at + i].client, "c1");
        ck_assert_uint_eq(vs.v[c1_at + i].n, (uint64_t)i + 3);
        ck_assert_uint_eq(vs.v[c1_at + i].highest, 6);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(vs.v[c2_at + i].client, "c2");
        ck_assert_uint_eq(vs.v[c2_at + i].n, (uint64_t)(i + 1) * 20);
        ck_assert_uint_eq(vs.v[c2_at + i].highest, 60);
    }

    /* a non-zero return stops the walk and is passed on */
    vs.len = 0;
    vs.stop_at = 2;
    ck_assert_int_eq(mx_dedup_foreach(d, collect, &vs), 42);
    ck_assert_int_eq(vs.len, 2);
    mx_dedup_free(d);
}
END_TEST

START_TEST(many_clients)
{
    enum { CLIENTS = 2000, PER = 40, W = 32 };
    mx_dedup *d = mx_dedup_new(W);
    char c[32];
    /* round-robin so every client's ring grows interleaved with the others */
    for (uint64_t n = 1; n <= PER; n++) {
        for (int i = 0; i < CLIENTS; i++) {
            int len = snprintf(c, sizeof c, "client-%d", i);
            /* client i uses only n divisible by (i % 3 + 1) */
            if (n % (uint64_t)(i % 3 + 1))
                continue;
            struct mx_outcome o = n % 5 ? ack(n, (uint64_t)i) : rej(n, -2, c);
            ck_assert_int_eq(mx_dedup_record(d, c, (size_t)len, &o), 0);
        }
    }
    ck_assert_uint_eq(mx_dedup_clients(d), CLIENTS);
    for (int i = 0; i < CLIENTS; i++) {
        int len = snprintf(c, sizeof c, "client-%d", i);
        uint64_t step = (uint64_t)(i % 3 + 1);
        uint64_t highest = PER / step * step;
        ck_assert_uint_eq(mx_dedup_highest(d, c, (size_t)len), highest);
        uint64_t decided = PER / step;
        uint64_t oldest = decided > W ? highest - (W - 1) * step : step;
        for (uint64_t n = 1; n <= PER + 1; n++) {
            const struct mx_outcome *o;
            int r = mx_dedup_find(d, c, (size_t)len, n, &o);
            if (n > highest)
                ck_assert_int_eq(r, 0);
            else if (n < oldest)
                ck_assert_int_eq(r, decided > W ? -1 : 0);
            else if (n % step)
                ck_assert_int_eq(r, 0);
            else {
                ck_assert_int_eq(r, 1);
                if (n % 5) {
                    ck_assert_uint_eq(o->kind, MX_OUTCOME_ACK);
                    ck_assert_uint_eq(o->seq, (uint64_t)i);
                } else {
                    ck_assert_uint_eq(o->kind, MX_OUTCOME_REJECT);
                    ck_assert_str_eq(o->message, c);
                }
            }
        }
    }
    mx_dedup_free(d);
}
END_TEST

Suite *mx_suite_dedup(void)
{
    Suite *s = suite_create("dedup");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, highest_and_find_basic);
    tcase_add_test(tc, skipped_n);
    tcase_add_test(tc, window_eviction);
    tcase_add_test(tc, window_one);
    tcase_add_test(tc, record_not_increasing);
    tcase_add_test(tc, messages_copied);
    tcase_add_test(tc, lazy_growth);
    tcase_add_test(tc, foreach_order);
    tcase_add_test(tc, many_clients);
    tcase_add_test(tc, remembered_record_never_outlives_it);
    suite_add_tcase(s, tc);
    return s;
}
