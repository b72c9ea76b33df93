/* Unit tests for idle.c: connections quiet for the ping delay are pinged
 * once, those quiet for the hang-up delay are hung up, a sign of life (a
 * message, a pong) resets both, and the cost does not depend on how many
 * connections there are (100,000 nodes added, touched and expired in
 * linear time). */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "movexd/idle.h"

#define S 1000000ull /* one second in us */

struct rec {
    int pings[8], hangups[8];
    size_t npings, nhangups;
    struct mx_idle_node *base;
};

static void on_ping(struct mx_idle_node *n, void *ctx)
{
    struct rec *r = ctx;
    r->pings[r->npings++ % 8] = (int)(n - r->base);
}

static void on_hangup(struct mx_idle_node *n, void *ctx)
{
    struct rec *r = ctx;
    r->hangups[r->nhangups++ % 8] = (int)(n - r->base);
}

START_TEST(ping_then_hangup_unless_alive)
{
    struct mx_idle w = {0};
    struct mx_idle_node n[3];
    memset(n, 0, sizeof(n));
    struct rec r = {.base = n};
    mx_idle_add(&w, &n[0], 0);
    mx_idle_add(&w, &n[1], 0);
    mx_idle_add(&w, &n[2], 1 * S);
    ck_assert_uint_eq(w.n, 3);
    /* nothing due before the ping delay */
    ck_assert_uint_eq(mx_idle_expire(&w, 59 * S, 60 * S, 120 * S, on_ping, on_hangup, &r), 0);
    ck_assert_uint_eq(r.npings, 0);
    /* n[1] talks at 30 s: at 60 s only n[0] is pinged, at 61 s n[2] too */
    mx_idle_alive(&w, &n[1], 30 * S);
    mx_idle_expire(&w, 60 * S, 60 * S, 120 * S, on_ping, on_hangup, &r);
    ck_assert_uint_eq(r.npings, 1);
    ck_assert_int_eq(r.pings[0], 0);
    mx_idle_expire(&w, 61 * S, 60 * S, 120 * S, on_ping, on_hangup, &r);
    ck_assert_uint_eq(r.npings, 2);
    ck_assert_int_eq(r.pings[1], 2);
    /* pinged once only; n[1], quiet since 30 s, at 90 s */
    mx_idle_expire(&w, 89 * S, 60 * S, 120 * S, on_ping, on_hangup, &r);
    ck_assert_uint_eq(r.npings, 2);
    mx_idle_expire(&w, 90 * S, 60 * S, 120 * S, on_ping, on_hangup, &r);
    ck_assert_uint_eq(r.npings, 3);
    ck_assert_int_eq(r.pings[2], 1);
    /* n[2] answers its ping (a pong: a sign of life, even within the grain) */
    mx_idle_alive(&w, &n[2], 90 * S + 1);
    ck_assert_int_eq(n[2].pinged, 0);
    /* at 120 s n[0] (quiet since 0) is hung up and leaves the list */
    ck_assert_uint_eq(mx_idle_expire(&w, 120 * S, 60 * S, 120 * S, on_ping, on_hangup, &r), 1);
    ck_assert_int_eq(r.hangups[0], 0);
    ck_assert_int_eq(n[0].linked, 0);
    ck_assert_uint_eq(w.n, 2);
    ck_assert_uint_eq(r.npings, 3);
    /* n[1] (quiet since 30 s) at 150 s; n[2] pinged again at 151 s, hung up at 211 s */
    ck_assert_uint_eq(mx_idle_expire(&w, 150 * S, 60 * S, 120 * S, on_ping, on_hangup, &r), 1);
    ck_assert_int_eq(r.hangups[1], 1);
    ck_assert_uint_eq(r.npings, 3);
    mx_idle_expire(&w, 151 * S + 1, 60 * S, 120 * S, on_ping, on_hangup, &r);
    ck_assert_uint_eq(r.npings, 4);
    ck_assert_int_eq(r.pings[3], 2);
    ck_assert_uint_eq(mx_idle_expire(&w, 210 * S, 60 * S, 120 * S, on_ping, on_hangup, &r), 0);
    ck_assert_uint_eq(mx_idle_expire(&w, 210 * S + 1, 60 * S, 120 * S, on_ping, on_hangup, &r), 1);
    ck_assert_int_eq(r.hangups[2], 2);
    ck_assert_uint_eq(w.n, 0);
    ck_assert_ptr_null(w.list.head);
    ck_assert_ptr_null(w.list.tail);
    ck_assert_ptr_null(w.unpinged);
}
END_TEST

START_TEST(grain_and_remove)
{
    struct mx_idle w = {0};
    struct mx_idle_node n[3];
    memset(n, 0, sizeof(n));
    struct rec r = {.base = n};
    for (int i = 0; i < 3; i++)
        mx_idle_add(&w, &n[i], 0);
    /* within the grain: not recorded, n[0] stays first */
    mx_idle_alive(&w, &n[0], MX_IDLE_GRAIN_US - 1);
    ck_assert_ptr_eq(w.list.head, &n[0].link);
    mx_idle_alive(&w, &n[0], MX_IDLE_GRAIN_US);
    ck_assert_ptr_eq(w.list.tail, &n[0].link);
    ck_assert_ptr_eq(w.list.head, &n[1].link);
    /* removing the first unpinged node moves the cursor on */
    mx_idle_expire(&w, 10 * S, 10 * S, 20 * S, on_ping, on_hangup, &r); /* pings n[1], n[2] */
    ck_assert_uint_eq(r.npings, 2);
    ck_assert_ptr_eq(w.unpinged, &n[0]);
    mx_idle_remove(&w, &n[0]);
    mx_idle_remove(&w, &n[0]); /* twice: harmless */
    ck_assert_ptr_null(w.unpinged);
    ck_assert_uint_eq(w.n, 2);
    /* a node added again after a removal is fresh */
    mx_idle_add(&w, &n[0], 15 * S);
    ck_assert_ptr_eq(w.unpinged, &n[0]);
    ck_assert_uint_eq(mx_idle_expire(&w, 20 * S, 10 * S, 20 * S, on_ping, on_hangup, &r), 2);
    ck_assert_ptr_eq(w.list.head, &n[0].link);
    ck_assert_uint_eq(w.n, 1);
}
END_TEST

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void count_ping(struct mx_idle_node *n, void *ctx) { ++*(size_t *)ctx; }
static void count_hangup(struct mx_idle_node *n, void *ctx) { ++*((size_t *)ctx + 1); }

/* Adding, touching and expiring N nodes; returns the CPU seconds. */
static double churn(size_t count)
{
    struct mx_idle w = {0};
    struct mx_idle_node *n = calloc(count, sizeof(*n));
    ck_assert_ptr_nonnull(n);
    size_t seen[2] = {0, 0};
    double t0 = cpu_s();
    for (size_t i = 0; i < count; i++)
        mx_idle_add(&w, &n[i], i);
    for (size_t i = 0; i < count; i += 2)
        mx_idle_alive(&w, &n[i], count + S);
    mx_idle_expire(&w, count + 60 * S, 60 * S, 120 * S, count_ping, count_hangup, seen);
    mx_idle_expire(&w, count + 120 * S, 60 * S, 120 * S, count_ping, count_hangup, seen);
    ck_assert_uint_eq(seen[1], count - count / 2); /* the untouched half */
    mx_idle_expire(&w, 2 * count + 200 * S, 60 * S, 120 * S, count_ping, count_hangup, seen);
    ck_assert_uint_eq(seen[1], count);
    ck_assert_uint_eq(seen[0], count);
    ck_assert_uint_eq(w.n, 0);
    double t = cpu_s() - t0;
    free(n);
    return t;
}

START_TEST(cost_is_linear)
{
    /* a sorted insert per node (what lws does per timer) would make 10x
     * the nodes cost ~100x; linear costs ~10x. Generous bound for ASan and
     * a loaded machine: 10x the nodes within 40x the time. */
    double small = churn(10000), big = churn(100000);
    if (small < 1e-4)
        small = 1e-4;
    ck_assert_msg(big < 40 * small, "10k nodes %.4f s, 100k nodes %.4f s", small, big);
}
END_TEST

Suite *mx_suite_idle(void)
{
    Suite *s = suite_create("idle");
    TCase *tc = tcase_create("idle");
    tcase_add_test(tc, ping_then_hangup_unless_alive);
    tcase_add_test(tc, grain_and_remove);
    tcase_add_test(tc, cost_is_linear);
    suite_add_tcase(s, tc);
    return s;
}
