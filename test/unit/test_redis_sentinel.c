/* Unit tests for the adapter's Sentinel mode (redis_adapter.c,
 * mx_redis_new_sentinel) against real processes on free loopback ports,
 * stopped by PID: a redis-server primary, and Sentinels
 * (`redis-server CONF --sentinel`) monitoring it. The link finds the
 * primary through the Sentinels, passing over one that does not answer;
 * a primary demoted under the link (-READONLY) drops it, a server a
 * Sentinel names that is not a primary (ROLE) is refused, and the link
 * comes back once there is a primary again; a Sentinel failover moves the
 * link to the promoted replica. */
#include <check.h>
#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "movexd/config.h"
#include "movexd/redis_adapter.h"
#include "redis_util.h"

#define NAME "movexd"

/* A Sentinel on port monitoring primary_port as NAME (quorum 1), its conf
 * in a fresh directory dir (it rewrites the file: it must be its own). */
static pid_t start_sentinel(int port, int primary_port, char *dir, size_t dirlen)
{
    snprintf(dir, dirlen, "/tmp/movexd-sentinel-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char conf[512];
    snprintf(conf, sizeof conf, "%s/sentinel.conf", dir);
    FILE *f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor " NAME " 127.0.0.1 %d 1\n"
            "sentinel down-after-milliseconds " NAME " 5000\nsentinel failover-timeout " NAME
            " 10000\n",
            port, dir, primary_port);
    fclose(f);
    char *argv[] = { "redis-server", conf, "--sentinel", NULL };
    return spawn_quiet(argv);
}

static void stop_sentinel(pid_t pid, const char *dir)
{
    stop_redis(pid);
    char path[600];
    snprintf(path, sizeof path, "%s/sentinel.conf", dir);
    unlink(path);
    rmdir(dir);
}

/* One command on a blocking connection (retried until the server listens);
 * the reply (freeReplyObject it). */
static redisReply *sync_cmd(int port, const char *fmt, ...)
{
    long long until = now_ms() + WAIT_MS;
    for (;;) {
        redisContext *c = redisConnect("127.0.0.1", port);
        if (c && !c->err) {
            va_list ap;
            va_start(ap, fmt);
            redisReply *rep = redisvCommand(c, fmt, ap);
            va_end(ap);
            redisFree(c);
            if (rep)
                return rep;
        } else if (c) {
            redisFree(c);
        }
        ck_assert_msg(now_ms() < until, "no answer on port %d", port);
        usleep(20 * 1000); /* the server is starting: poll, bounded by WAIT_MS */
    }
}

/* Wait until `cmd` on port answers a reply whose text form contains want. */
static void wait_reply(int port, const char *cmd, const char *want)
{
    long long until = now_ms() + WAIT_MS;
    for (;;) {
        redisReply *rep = sync_cmd(port, cmd);
        int ok = 0;
        if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
            ok = strstr(rep->str, want) != NULL;
        for (size_t i = 0; !ok && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
            ok = rep->element[i]->type == REDIS_REPLY_STRING && strstr(rep->element[i]->str, want);
        freeReplyObject(rep);
        if (ok)
            return;
        ck_assert_msg(now_ms() < until, "'%s' on port %d never answered '%s'", cmd, port, want);
        lws_service(ctx, 0); /* keeps the links of the test going meanwhile */
        usleep(20 * 1000);
    }
}

struct got {
    int done, null, type;
    char str[128];
};

static void on_got(struct mx_redis *r, redisReply *rep, void *priv)
{
    struct got *g = priv;
    g->done++;
    g->null = rep == NULL;
    g->type = rep ? rep->type : 0;
    if (rep && rep->str)
        snprintf(g->str, sizeof g->str, "%s", rep->str);
}

/* SET k v over the link; waits for the answer. */
static void set_k(struct mx_redis *r, struct got *g, const char *v)
{
    const char *argv[] = { "SET", "k", v };
    size_t lens[] = { 3, 1, strlen(v) };
    memset(g, 0, sizeof *g);
    mx_redis_command(r, 3, argv, lens, on_got, g);
    RUN_UNTIL(g->done);
}

static struct mx_redis *sentinel_link(const int *ports, size_t n)
{
    struct mx_endpoint ep[4];
    for (size_t i = 0; i < n; i++) {
        snprintf(ep[i].host, sizeof ep[i].host, "127.0.0.1");
        ep[i].port = ports[i];
    }
    struct mx_redis_opts o = { "unused", 0, 500, 2000, 200, NULL, NULL, NULL };
    struct mx_redis *r = mx_redis_new_sentinel(ctx, vh, &o, ep, n, NAME);
    ck_assert_ptr_nonnull(r);
    return r;
}

static int peer_port(struct mx_redis *r)
{
    char host[64];
    return mx_redis_peer(r, host, sizeof host);
}

START_TEST(resolves_through_sentinels_skipping_a_dead_one)
{
    int fds = count_fds();
    loop_setup();
    int pport = free_port(), sport = free_port(), dead = free_port();
    pid_t p = start_redis(pport);
    char sdir[64];
    pid_t s = start_sentinel(sport, pport, sdir, sizeof sdir);
    int sentinels[] = { dead, sport }; /* the first one never answers */
    struct mx_redis *r = sentinel_link(sentinels, 2);
    RUN_UNTIL(mx_redis_is_up(r));
    ck_assert_int_eq(peer_port(r), pport);
    struct got g;
    set_k(r, &g, "v");
    ck_assert_int_eq(g.type, REDIS_REPLY_STATUS);
    struct mx_redis_stats st;
    mx_redis_stats(r, &st);
    ck_assert_uint_ge(st.resolves, 1);
    ck_assert_uint_eq(st.connects, 1);
    ck_assert_uint_eq(st.wrong_role, 0);
    mx_redis_free(r);
    spin(20);
    stop_sentinel(s, sdir);
    stop_redis(p);
    loop_teardown();
    ck_assert_int_eq(count_fds(), fds);
}
END_TEST

/* The primary is demoted under the link (REPLICAOF, as a failover does to
 * a primary that comes back): the next write gets -READONLY, which drops
 * the link; while the Sentinel still names the demoted server, ROLE
 * refuses it; once it is a primary again the link returns to it. */
START_TEST(demoted_primary_is_left_and_refused)
{
    loop_setup();
    int pport = free_port(), sport = free_port(), nowhere = free_port();
    pid_t p = start_redis(pport);
    char sdir[64];
    pid_t s = start_sentinel(sport, pport, sdir, sizeof sdir);
    struct mx_redis *r = sentinel_link(&sport, 1);
    RUN_UNTIL(mx_redis_is_up(r));
    redisReply *rep = sync_cmd(pport, "REPLICAOF 127.0.0.1 %d", nowhere);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    struct got g;
    set_k(r, &g, "v");
    ck_assert_int_eq(g.type, REDIS_REPLY_ERROR); /* the caller sees the refusal */
    ck_assert_msg(strncmp(g.str, "READONLY", 8) == 0, "%s", g.str);
    struct mx_redis_stats st;
    mx_redis_stats(r, &st);
    ck_assert_uint_eq(st.readonly, 1);
    RUN_UNTIL(!mx_redis_is_up(r));
    WAIT_STAT(r, wrong_role, 1, st);
    ck_assert_uint_ge(st.wrong_role, 1);
    ck_assert_int_eq(mx_redis_is_up(r), 0);
    rep = sync_cmd(pport, "REPLICAOF NO ONE");
    freeReplyObject(rep);
    RUN_UNTIL(mx_redis_is_up(r));
    ck_assert_int_eq(peer_port(r), pport);
    set_k(r, &g, "w");
    ck_assert_int_eq(g.type, REDIS_REPLY_STATUS);
    mx_redis_stats(r, &st);
    ck_assert_uint_eq(st.connects, 2);
    mx_redis_free(r);
    spin(20);
    stop_sentinel(s, sdir);
    stop_redis(p);
    loop_teardown();
}
END_TEST

/* A primary, its replica (in sync), a Sentinel and a link up to the
 * primary; stopped by stop_group. */
struct group {
    int pport, rport, sport;
    pid_t p, rp, s;
    char sdir[64];
    struct mx_redis *r;
};

static void start_group(struct group *gr)
{
    loop_setup();
    gr->pport = free_port();
    gr->rport = free_port();
    gr->sport = free_port();
    gr->p = start_redis(gr->pport);
    gr->rp = start_redis_of(gr->rport, gr->pport);
    wait_reply(gr->rport, "INFO replication", "master_link_status:up");
    gr->s = start_sentinel(gr->sport, gr->pport, gr->sdir, sizeof gr->sdir);
    gr->r = sentinel_link(&gr->sport, 1);
    RUN_UNTIL(mx_redis_is_up(gr->r));
    ck_assert_int_eq(peer_port(gr->r), gr->pport);
}

static void stop_group(struct group *gr)
{
    mx_redis_free(gr->r);
    spin(20);
    stop_sentinel(gr->s, gr->sdir);
    stop_redis(gr->rp);
    stop_redis(gr->p);
    loop_teardown();
}

/* SENTINEL FAILOVER, retried until the Sentinel knows the replica and
 * accepts; then the link must come up on the promoted replica. */
static void fail_over(struct group *gr)
{
    long long until = now_ms() + WAIT_MS;
    for (;;) {
        redisReply *rep = sync_cmd(gr->sport, "SENTINEL FAILOVER " NAME);
        int ok = rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        if (ok)
            break;
        ck_assert_msg(now_ms() < until, "the Sentinel never accepted a failover");
        spin(2);
        usleep(50 * 1000);
    }
    RUN_UNTIL(mx_redis_is_up(gr->r) && peer_port(gr->r) == gr->rport);
}

/* A Sentinel failover (SENTINEL FAILOVER): the link leaves the old
 * primary (the Sentinel kills its clients when it demotes it) and comes up
 * on the promoted replica, which has the data. */
START_TEST(follows_a_failover)
{
    struct group gr;
    start_group(&gr);
    struct got g;
    set_k(gr.r, &g, "before");
    fail_over(&gr);
    set_k(gr.r, &g, "after");
    ck_assert_int_eq(g.type, REDIS_REPLY_STATUS);
    struct mx_redis_stats st;
    mx_redis_stats(gr.r, &st);
    ck_assert_uint_ge(st.drops, 1);
    ck_assert_uint_ge(st.resolves, 2);
    stop_group(&gr);
}
END_TEST

/* The old primary is stopped (SIGSTOP: its socket stays open, nothing is
 * pending on the link, so no timeout fires) and the Sentinel fails over:
 * +switch-master on the watcher link drops the link, which comes up on the
 * promoted replica. Without the watcher the link would stay "up" on the
 * stopped server. */
START_TEST(switch_master_leaves_a_stopped_primary)
{
    struct group gr;
    start_group(&gr);
    kill(gr.p, SIGSTOP);
    fail_over(&gr);
    struct mx_redis_stats st;
    mx_redis_stats(gr.r, &st);
    ck_assert_uint_ge(st.switches, 1);
    ck_assert_uint_eq(st.timeouts, 0); /* not a command timeout: the notice */
    kill(gr.p, SIGCONT);
    stop_group(&gr);
}
END_TEST

Suite *mx_suite_redis_sentinel(void)
{
    Suite *s = suite_create("redis_sentinel");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, resolves_through_sentinels_skipping_a_dead_one);
    tcase_add_test(tc, demoted_primary_is_left_and_refused);
    tcase_add_test(tc, follows_a_failover);
    tcase_add_test(tc, switch_master_leaves_a_stopped_primary);
    suite_add_tcase(s, tc);
    return s;
}
