/* Unit tests for cluster.c: the Function library built into the binary is
 * byte for byte src/cluster_fn.lua, and mx_cluster_load_library loads it
 * into a real redis-server over the adapter (idempotently, so a node can
 * load it on every reconnect), after which FCALL movexd_create answers;
 * over a link that is down it reports "link down". */
#include <check.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/cluster.h"
#include "movexd/redis_adapter.h"
#include "redis_util.h"

START_TEST(embedded_library_is_the_source_file)
{
    FILE *f = fopen("src/cluster_fn.lua", "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    ck_assert_uint_eq(strlen(mx_cluster_fn_source()), n);
    ck_assert_int_eq(memcmp(mx_cluster_fn_source(), buf, n), 0);
}
END_TEST

struct loaded {
    int done, ok;
    char err[128];
};

static void on_loaded(int ok, const char *err, void *priv)
{
    struct loaded *l = priv;
    l->done++;
    l->ok = ok;
    snprintf(l->err, sizeof l->err, "%s", err ? err : "");
}

struct reply {
    int done, type;
    size_t elements;
    char first[32];
};

static void on_reply(struct mx_redis *r, redisReply *rep, void *priv)
{
    struct reply *x = priv;
    x->done++;
    x->type = rep ? rep->type : -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        x->elements = rep->elements;
        if (rep->elements && rep->element[0]->str)
            snprintf(x->first, sizeof x->first, "%s", rep->element[0]->str);
    }
}

/* A loop, a redis-server on a free port, and a link to it (not yet up). */
static int redis_port;
static struct mx_redis *redis_and_link(pid_t *pid)
{
    loop_setup();
    int port = redis_port = free_port();
    *pid = start_redis(port);
    struct mx_redis_opts o = { "127.0.0.1", port, 500, 5000, 200, NULL, NULL, NULL };
    return mx_redis_new(ctx, vh, &o);
}

START_TEST(load_library_then_fcall)
{
    pid_t pid;
    struct mx_redis *r = redis_and_link(&pid);
    struct loaded l = { 0 };
    /* down (not connected yet): refused at once */
    mx_cluster_load_library(r, on_loaded, &l);
    ck_assert_int_eq(l.done, 1);
    ck_assert_int_eq(l.ok, 0);
    ck_assert_str_eq(l.err, "link down");
    RUN_UNTIL(mx_redis_is_up(r));
    for (int round = 1; round <= 2; round++) { /* REPLACE: a second load is fine */
        memset(&l, 0, sizeof l);
        mx_cluster_load_library(r, on_loaded, &l);
        RUN_UNTIL(l.done);
        ck_assert_msg(l.ok, "round %d: %s", round, l.err);
    }
    const char *argv[] = { "FCALL", "movexd_create", "1", "movexd:{t:1}:head", "S0" };
    size_t lens[] = { 5, 13, 1, 17, 2 };
    struct reply x = { 0 };
    mx_redis_command(r, 5, argv, lens, on_reply, &x);
    RUN_UNTIL(x.done);
    ck_assert_int_eq(x.type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(x.elements, 5);
    ck_assert_str_eq(x.first, "created");
    mx_redis_free(r);
    spin(20);
    stop_redis(pid);
    loop_teardown();
}
END_TEST

START_TEST(parse_outcomes)
{
    struct mx_cluster_outcome o;
    ck_assert_int_eq(mx_cluster_parse_outcome("ack 9007199254740990", &o), 0);
    ck_assert_int_eq(o.verdict, MX_CLUSTER_ACK);
    ck_assert_uint_eq(o.seq, 9007199254740990ull);
    ck_assert_int_eq(mx_cluster_parse_outcome("dup ack 3", &o), 0);
    ck_assert_int_eq(o.verdict, MX_CLUSTER_DUP_ACK);
    ck_assert_uint_eq(o.seq, 3);
    ck_assert_int_eq(mx_cluster_parse_outcome("reject after_reject", &o), 0);
    ck_assert_int_eq(o.verdict, MX_CLUSTER_REJECT);
    ck_assert_str_eq(o.code, "after_reject");
    ck_assert_int_eq(mx_cluster_parse_outcome("dup reject stale", &o), 0);
    ck_assert_int_eq(o.verdict, MX_CLUSTER_DUP_REJECT);
    ck_assert_int_eq(mx_cluster_parse_outcome("reject aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa9", &o), 0); /* 64: a reducer's own code */
    ck_assert_uint_eq(strlen(o.code), MX_CLUSTER_CODE_MAX);
    ck_assert_int_eq(mx_cluster_parse_outcome("too_old", &o), 0);
    ck_assert_int_eq(o.verdict, MX_CLUSTER_TOO_OLD);
    ck_assert_int_eq(mx_cluster_parse_outcome("bad_dep", &o), 0);
    ck_assert_int_eq(o.verdict, MX_CLUSTER_BAD_DEP);
    ck_assert_int_eq(mx_cluster_parse_outcome("moved", &o), 0);
    ck_assert_int_eq(o.verdict, MX_CLUSTER_MOVED);
    const char *bad[] = { "", "ack", "ack ", "ack -1", "ack 1x", "ack 18446744073709551616",
                          "reject ", "reject Stale", "reject a b", "dup moved", "dup too_old",
                          "moved ", "dup  ack 1",
                          "reject aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* MX_CLUSTER_CODE_MAX + 1 */ };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(mx_cluster_parse_outcome(bad[i], &o) == -1, "accepted '%s'", bad[i]);
}
END_TEST

struct appended {
    int done, ok;
    char err[128];
    struct mx_cluster_head head;
    struct mx_cluster_outcome out[4];
    size_t n;
};

static void on_appended(int ok, const char *err, const struct mx_cluster_head *h,
                        const struct mx_cluster_outcome *out, size_t n, void *priv)
{
    struct appended *x = priv;
    x->done++;
    x->ok = ok;
    snprintf(x->err, sizeof x->err, "%s", err ? err : "");
    if (ok) {
        x->head = *h;
        x->n = n;
        memcpy(x->out, out, (n < 4 ? n : 4) * sizeof *out);
    }
}

static void append_wait(struct mx_redis *r, const struct mx_cluster_head *exp,
                        const struct mx_cluster_action *a, size_t n, struct appended *x)
{
    memset(x, 0, sizeof *x);
    mx_cluster_append(r, "movexd:", "t:a", exp, 1024, 1700000000000ull, a, n, on_appended, x);
    RUN_UNTIL(x->done);
    ck_assert_int_eq(x->done, 1);
}

/* A redis-server with the library loaded and room t:a created at S0, and
 * a link to it that is up. */
static struct mx_redis *room_created(pid_t *pid)
{
    struct mx_redis *r = redis_and_link(pid);
    RUN_UNTIL(mx_redis_is_up(r));
    struct loaded l = { 0 };
    mx_cluster_load_library(r, on_loaded, &l);
    RUN_UNTIL(l.done);
    ck_assert(l.ok);
    const char *argv[] = { "FCALL", "movexd_create", "1", "movexd:{t:a}:head", "S0" };
    size_t lens[] = { 5, 13, 1, 17, 2 };
    struct reply y = { 0 };
    mx_redis_command(r, 5, argv, lens, on_reply, &y);
    RUN_UNTIL(y.done);
    ck_assert_str_eq(y.first, "created");
    return r;
}

/* The batch's arguments as the library expects them, its reply parsed. */
START_TEST(append_round_trip)
{
    pid_t pid;
    struct mx_redis *r = room_created(&pid);

    struct mx_cluster_head h0 = { 0, 0, "S0", "", "" };
    const char *body = "[{\"op\":\"add\",\"path\":\"/a\",\"value\":1}]";
    struct mx_cluster_action a[2] = {
        { "c1", 1, NULL, 0, 0, 0, 1, "S1", body, strlen(body) },
        { "c2", 1, NULL, 0, 0, 0, 0, "test_failed", NULL, 0 },
    };
    struct appended x;
    append_wait(r, &h0, a, 2, &x);
    ck_assert_msg(x.ok, "%s", x.err);
    ck_assert_uint_eq(x.n, 2);
    ck_assert_int_eq(x.out[0].verdict, MX_CLUSTER_ACK);
    ck_assert_uint_eq(x.out[0].seq, 1);
    ck_assert_int_eq(x.out[1].verdict, MX_CLUSTER_REJECT);
    ck_assert_str_eq(x.out[1].code, "test_failed");
    ck_assert_uint_eq(x.head.seq, 1);
    ck_assert_uint_eq(x.head.sub, 1);
    ck_assert_str_eq(x.head.sum, "S1");
    ck_assert_uint_eq(strlen(x.head.hash), 40);
    struct mx_cluster_head h1 = x.head;

    /* the old head: moved */
    append_wait(r, &h0, a, 1, &x);
    ck_assert(x.ok);
    ck_assert_int_eq(x.out[0].verdict, MX_CLUSTER_MOVED);
    /* a resend on the fresh head: the first outcome */
    append_wait(r, &h1, a, 1, &x);
    ck_assert_int_eq(x.out[0].verdict, MX_CLUSTER_DUP_ACK);
    ck_assert_uint_eq(x.out[0].seq, 1);
    /* deps travel as a list: n 5 built on 3 and 4, neither decided */
    uint64_t deps[2] = { 3, 4 };
    struct mx_cluster_action b = { "c1", 5, deps, 2, 1, 1, 1, "S2", "[]", 2 };
    append_wait(r, &h1, &b, 1, &x);
    ck_assert_int_eq(x.out[0].verdict, MX_CLUSTER_BAD_DEP);
    /* a refused call: the library's error */
    struct mx_cluster_action bad = { "", 9, NULL, 0, 0, 0, 1, "S", "[]", 2 };
    append_wait(r, &h1, &bad, 1, &x);
    ck_assert_int_eq(x.ok, 0);
    ck_assert_msg(strstr(x.err, "bad action 1") != NULL, "%s", x.err);
    mx_redis_free(r);
    spin(20);
    stop_redis(pid);
    loop_teardown();
}
END_TEST

struct epoch_got {
    int done, ok;
    char epoch[64];
};

static void on_epoch_got(int ok, const char *epoch, void *priv)
{
    struct epoch_got *x = priv;
    x->done++;
    x->ok = ok;
    snprintf(x->epoch, sizeof x->epoch, "%s", ok ? epoch : "");
}

static void epoch_of(struct mx_redis *r, const char *candidate, struct epoch_got *x)
{
    memset(x, 0, sizeof *x);
    mx_cluster_epoch(r, "movexd:", candidate, on_epoch_got, x);
    RUN_UNTIL(x->done);
    ck_assert_int_eq(x->done, 1);
}

/* The epoch is set once (the first candidate wins, later ones read it);
 * a Redis restarted without persistence has a new one; down: ok = 0. */
START_TEST(epoch_set_once_new_after_data_loss)
{
    pid_t pid;
    struct mx_redis *r = redis_and_link(&pid);
    struct epoch_got x;
    epoch_of(r, "aaaa", &x); /* not up yet */
    ck_assert_int_eq(x.ok, 0);
    RUN_UNTIL(mx_redis_is_up(r));
    epoch_of(r, "aaaa", &x);
    ck_assert_int_eq(x.ok, 1);
    ck_assert_str_eq(x.epoch, "aaaa");
    epoch_of(r, "bbbb", &x);
    ck_assert_str_eq(x.epoch, "aaaa");
    stop_redis(pid);
    RUN_UNTIL(!mx_redis_is_up(r));
    pid = start_redis(redis_port);
    RUN_UNTIL(mx_redis_is_up(r));
    epoch_of(r, "cccc", &x);
    ck_assert_int_eq(x.ok, 1);
    ck_assert_str_eq(x.epoch, "cccc");
    mx_redis_free(r);
    spin(20);
    stop_redis(pid);
    loop_teardown();
}
END_TEST

/* Group commit with WAIT: without a replica the batch is appended but not
 * acknowledged (WAIT reports 0 of 1: outcome unknown, the caller answers
 * unavailable); the resend of the same (client, n) is answered from
 * Redis's memory - `dup ack` - once a replica has it; then a new batch
 * with WAIT is acknowledged. */
START_TEST(append_wait_replicas)
{
    pid_t pid;
    struct mx_redis *r = room_created(&pid);

    struct mx_cluster_head h0 = { 0, 0, "S0", "", "" };
    struct mx_cluster_action a = { "c1", 1, NULL, 0, 0, 0, 1, "S1", "[]", 2 };
    struct appended x = { 0 };
    mx_cluster_append_wait(r, "movexd:", "t:a", &h0, 1024, 1, &a, 1, 1, 100, on_appended, &x);
    RUN_UNTIL(x.done);
    ck_assert_int_eq(x.ok, 0);
    ck_assert_str_eq(x.err, "WAIT: 0 of 1 replicas");
    /* it is in the primary all the same: the old head has moved */
    append_wait(r, &h0, &a, 1, &x);
    ck_assert_int_eq(x.out[0].verdict, MX_CLUSTER_MOVED);
    struct mx_cluster_head h1 = x.head;
    ck_assert_uint_eq(h1.seq, 1);

    int rport = free_port();
    pid_t rp = start_redis_of(rport, redis_port);
    long long until = now_ms() + WAIT_MS;
    do { /* the replica's initial sync: WAIT reports it once it has the entry */
        memset(&x, 0, sizeof x);
        mx_cluster_append_wait(r, "movexd:", "t:a", &h1, 1024, 1, &a, 1, 1, 200, on_appended, &x);
        RUN_UNTIL(x.done);
    } while (!x.ok && now_ms() < until);
    ck_assert_msg(x.ok, "%s", x.err);
    ck_assert_int_eq(x.out[0].verdict, MX_CLUSTER_DUP_ACK);
    ck_assert_uint_eq(x.out[0].seq, 1);
    struct mx_cluster_action b = { "c1", 2, NULL, 0, 0, 0, 1, "S2", "[]", 2 };
    memset(&x, 0, sizeof x);
    mx_cluster_append_wait(r, "movexd:", "t:a", &h1, 1024, 1, &b, 1, 1, 5000, on_appended, &x);
    RUN_UNTIL(x.done);
    ck_assert_msg(x.ok, "%s", x.err);
    ck_assert_int_eq(x.out[0].verdict, MX_CLUSTER_ACK);
    ck_assert_uint_eq(x.out[0].seq, 2);
    /* the link goes while both are in flight: one completion, a failure */
    struct mx_cluster_action c = { "c1", 3, NULL, 0, 0, 0, 1, "S3", "[]", 2 };
    memset(&x, 0, sizeof x);
    mx_cluster_append_wait(r, "movexd:", "t:a", &x.head, 1024, 1, &c, 1, 1, 5000, on_appended, &x);
    mx_redis_free(r);
    ck_assert_int_eq(x.done, 1);
    ck_assert_int_eq(x.ok, 0);
    ck_assert_str_eq(x.err, "link down");
    spin(20);
    stop_redis(rp);
    stop_redis(pid);
    loop_teardown();
}
END_TEST

Suite *mx_suite_cluster(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, embedded_library_is_the_source_file);
    tcase_add_test(tc, load_library_then_fcall);
    tcase_add_test(tc, parse_outcomes);
    tcase_add_test(tc, append_round_trip);
    tcase_add_test(tc, append_wait_replicas);
    tcase_add_test(tc, epoch_set_once_new_after_data_loss);
    suite_add_tcase(s, tc);
    return s;
}
