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

START_TEST(load_library_then_fcall)
{
    loop_setup();
    int port = free_port();
    pid_t pid = start_redis(port);
    struct mx_redis_opts o = { "127.0.0.1", port, 500, 5000, 200, NULL, NULL, NULL };
    struct mx_redis *r = mx_redis_new(ctx, vh, &o);
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

Suite *mx_suite_cluster(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, embedded_library_is_the_source_file);
    tcase_add_test(tc, load_library_then_fcall);
    suite_add_tcase(s, tc);
    return s;
}
