/* Unit tests for redis_adapter.c against a real redis-server (started here
 * on a free loopback port, stopped by PID) on a real lws loop: the link
 * comes up and carries binary-safe commands; a command without reply past
 * command_timeout_ms drops the link and it comes back; a killed Redis fails
 * pending and new commands at once and the link returns when Redis does; a
 * peer that accepts TCP but never answers is caught by the connect timeout;
 * nothing listening means retries; freeing leaks no descriptor. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "movexd/redis_adapter.h"
#include "redis_util.h"

struct got {
    int done, null, type;
    long long integer;
    char str[64];
    size_t len;
};

static void on_got(struct mx_redis *r, redisReply *rep, void *priv)
{
    struct got *g = priv;
    g->done++;
    g->null = rep == NULL;
    if (rep) {
        g->type = rep->type;
        g->integer = rep->integer;
        g->len = rep->str ? rep->len : 0;
        if (rep->str)
            memcpy(g->str, rep->str, rep->len < sizeof g->str ? rep->len : sizeof g->str);
    }
}

static int ups, downs;
static void on_state(struct mx_redis *r, int up, void *priv)
{
    if (up)
        ups++;
    else
        downs++;
}

static char last_msg[64], last_ch[64];
static size_t last_len;
static void on_message(struct mx_redis *r, const char *ch, size_t clen, const char *msg,
                       size_t mlen, void *priv)
{
    snprintf(last_ch, sizeof last_ch, "%.*s", (int)clen, ch);
    last_len = mlen;
    memcpy(last_msg, msg, mlen < sizeof last_msg ? mlen : sizeof last_msg);
}

static struct mx_redis *link_to(int port, int cmd_ms)
{
    struct mx_redis_opts o = { "127.0.0.1", port, 500, cmd_ms, 200, on_state, on_message, NULL };
    ups = downs = 0;
    return mx_redis_new(ctx, vh, &o);
}

/* A loop, a redis-server on a free port and a link to it that is up. */
static struct mx_redis *start_up(int cmd_ms, pid_t *pid, int *port)
{
    loop_setup();
    *port = free_port();
    *pid = start_redis(*port);
    struct mx_redis *r = link_to(*port, cmd_ms);
    long long until = now_ms() + WAIT_MS; /* retries until redis-server listens */
    while (!mx_redis_is_up(r) && now_ms() < until)
        lws_service(ctx, 0);
    ck_assert_msg(mx_redis_is_up(r), "the link did not come up");
    return r;
}

/* Free the link, let its wsi close, stop Redis and the loop. */
static void finish(struct mx_redis *r, pid_t pid)
{
    mx_redis_free(r);
    spin(20);
    stop_redis(pid);
    loop_teardown();
}

static void cmd(struct mx_redis *r, struct got *g, int argc, const char **argv, const size_t *lens)
{
    memset(g, 0, sizeof *g);
    mx_redis_command(r, argc, argv, lens, on_got, g);
}

START_TEST(up_and_binary_safe)
{
    int fds = count_fds();
    pid_t pid;
    int port;
    struct mx_redis *r = start_up(5000, &pid, &port);
    ck_assert_int_eq(ups, 1);
    struct got g;
    const char *set[] = { "SET", "k", "a\0b" };
    size_t setl[] = { 3, 1, 3 };
    cmd(r, &g, 3, set, setl);
    const char *get[] = { "GET", "k" };
    size_t getl[] = { 3, 1 };
    struct got g2;
    cmd(r, &g2, 2, get, getl);
    RUN_UNTIL(g2.done);
    ck_assert_int_eq(g.done, 1);
    ck_assert_int_eq(g.type, REDIS_REPLY_STATUS);
    ck_assert_int_eq(g2.type, REDIS_REPLY_STRING);
    ck_assert_uint_eq(g2.len, 3);
    ck_assert_int_eq(memcmp(g2.str, "a\0b", 3), 0);
    /* an error reply is a reply */
    const char *bad[] = { "NOSUCHCOMMAND" };
    size_t badl[] = { 13 };
    cmd(r, &g, 1, bad, badl);
    RUN_UNTIL(g.done);
    ck_assert_int_eq(g.type, REDIS_REPLY_ERROR);
    /* pending commands complete with NULL when the link is freed */
    const char *blk[] = { "BLPOP", "nolist", "0" };
    size_t blkl[] = { 5, 6, 1 };
    cmd(r, &g, 3, blk, blkl);
    spin(20);
    mx_redis_free(r);
    ck_assert_int_eq(g.done, 1);
    ck_assert_int_eq(g.null, 1);
    spin(20);
    stop_redis(pid);
    loop_teardown();
    ck_assert_int_eq(count_fds(), fds);
}
END_TEST

START_TEST(command_timeout_drops_and_reconnects)
{
    pid_t pid;
    int port;
    struct mx_redis *r = start_up(300, &pid, &port);
    struct got g;
    const char *blk[] = { "BLPOP", "nolist", "0" }; /* never answered */
    size_t blkl[] = { 5, 6, 1 };
    long long t0 = now_ms();
    cmd(r, &g, 3, blk, blkl);
    RUN_UNTIL(g.done);
    ck_assert_int_eq(g.null, 1);
    ck_assert_int_ge(now_ms() - t0, 250);
    ck_assert_int_eq(downs, 1);
    struct mx_redis_stats st;
    mx_redis_stats(r, &st);
    ck_assert_uint_eq(st.timeouts, 1);
    RUN_UNTIL(mx_redis_is_up(r));
    ck_assert_int_eq(ups, 2);
    const char *ping[] = { "PING" };
    size_t pingl[] = { 4 };
    cmd(r, &g, 1, ping, pingl);
    RUN_UNTIL(g.done);
    ck_assert_int_eq(g.null, 0);
    ck_assert_str_eq(g.str, "PONG");
    finish(r, pid);
}
END_TEST

START_TEST(redis_killed_and_back)
{
    pid_t pid;
    int port;
    struct mx_redis *r = start_up(5000, &pid, &port);
    struct got g;
    const char *blk[] = { "BLPOP", "nolist", "0" };
    size_t blkl[] = { 5, 6, 1 };
    cmd(r, &g, 3, blk, blkl);
    spin(10);
    stop_redis(pid);
    RUN_UNTIL(g.done);
    ck_assert_int_eq(g.null, 1);
    RUN_UNTIL(downs == 1);
    ck_assert_int_eq(mx_redis_is_up(r), 0);
    /* while down: failed at once, not queued */
    const char *ping[] = { "PING" };
    size_t pingl[] = { 4 };
    memset(&g, 0, sizeof g);
    ck_assert_int_eq(mx_redis_command(r, 1, ping, pingl, on_got, &g), -1);
    ck_assert_int_eq(g.done, 1);
    ck_assert_int_eq(g.null, 1);
    pid = start_redis(port);
    RUN_UNTIL(mx_redis_is_up(r));
    ck_assert_int_eq(ups, 2);
    finish(r, pid);
}
END_TEST

START_TEST(silent_peer_hits_connect_timeout)
{
    int fds = count_fds();
    loop_setup();
    /* accepts TCP (the kernel's backlog), never answers PING */
    int port;
    int s = loopback_socket(1, &port);
    struct mx_redis *r = link_to(port, 5000);
    struct mx_redis_stats st;
    long long t0 = now_ms();
    WAIT_STAT(r, timeouts, 2, st);
    ck_assert_uint_ge(st.timeouts, 2); /* and it kept trying */
    ck_assert_int_ge(now_ms() - t0, 450);
    ck_assert_int_eq(ups, 0);
    ck_assert_int_eq(mx_redis_is_up(r), 0);
    mx_redis_free(r);
    spin(20);
    close(s);
    loop_teardown();
    ck_assert_int_eq(count_fds(), fds);
}
END_TEST

START_TEST(nothing_listening_retries)
{
    loop_setup();
    int port = free_port();
    struct mx_redis *r = link_to(port, 5000);
    struct mx_redis_stats st;
    WAIT_STAT(r, drops, 3, st);
    ck_assert_uint_ge(st.drops, 3);
    ck_assert_uint_eq(st.connects, 0);
    mx_redis_free(r);
    loop_teardown();
}
END_TEST

/* A subscriber link gets published messages (binary safe) and subscribes
 * again after Redis comes back. */
START_TEST(subscriber_resubscribes)
{
    pid_t pid;
    int port;
    struct mx_redis *pub = start_up(5000, &pid, &port);
    struct mx_redis_opts o = { "127.0.0.1", port, 500, 5000, 200, NULL, on_message, NULL };
    struct mx_redis *sub = mx_redis_new(ctx, vh, &o);
    ck_assert_int_eq(mx_redis_subscribe(sub, "ch:1"), 0);
    struct mx_redis_stats st;
    WAIT_STAT(sub, subscribed, 1, st);
    ck_assert_uint_eq(st.subscribed, 1);
    struct got g;
    const char *p1[] = { "PUBLISH", "ch:1", "x\0y" };
    size_t p1l[] = { 7, 4, 3 };
    cmd(pub, &g, 3, p1, p1l);
    WAIT_STAT(sub, messages, 1, st);
    ck_assert_uint_eq(st.messages, 1);
    ck_assert_str_eq(last_ch, "ch:1");
    ck_assert_uint_eq(last_len, 3);
    ck_assert_int_eq(memcmp(last_msg, "x\0y", 3), 0);
    ck_assert_int_eq(g.type, REDIS_REPLY_INTEGER); /* one receiver */

    stop_redis(pid);
    RUN_UNTIL(!mx_redis_is_up(sub) && !mx_redis_is_up(pub));
    pid = start_redis(port);
    WAIT_STAT(sub, subscribed, 2, st);
    ck_assert_uint_eq(st.subscribed, 2);
    RUN_UNTIL(mx_redis_is_up(pub));
    const char *p2[] = { "PUBLISH", "ch:1", "again" };
    size_t p2l[] = { 7, 4, 5 };
    cmd(pub, &g, 3, p2, p2l);
    WAIT_STAT(sub, messages, 2, st);
    ck_assert_uint_eq(st.messages, 2);
    ck_assert_int_eq(memcmp(last_msg, "again", 5), 0);
    mx_redis_free(sub);
    finish(pub, pid);
}
END_TEST

static char confirmed[4][16];
static int nconfirmed;
static void on_subscribed(struct mx_redis *r, const char *ch, size_t clen, void *priv)
{
    if (nconfirmed < 4)
        snprintf(confirmed[nconfirmed++], sizeof confirmed[0], "%.*s", (int)clen, ch);
}

/* on_subscribed names each confirmed channel; after mx_redis_unsubscribe a
 * channel's messages stop (PUBLISH counts no receiver) while the others
 * still arrive, and a reconnect subscribes only what is left. */
START_TEST(unsubscribe_forgets_the_channel)
{
    pid_t pid;
    int port;
    struct mx_redis *pub = start_up(5000, &pid, &port);
    struct mx_redis_opts o = { "127.0.0.1", port, 500, 5000, 200, NULL, on_message, NULL };
    struct mx_redis *sub = mx_redis_new(ctx, vh, &o);
    mx_redis_on_subscribed(sub, on_subscribed);
    nconfirmed = 0;
    ck_assert_int_eq(mx_redis_subscribe(sub, "ch:a"), 0);
    ck_assert_int_eq(mx_redis_subscribe(sub, "ch:b"), 0);
    RUN_UNTIL(nconfirmed == 2);
    ck_assert_str_eq(confirmed[0], "ch:a");
    ck_assert_str_eq(confirmed[1], "ch:b");
    mx_redis_unsubscribe(sub, "ch:a");
    mx_redis_unsubscribe(sub, "ch:unknown"); /* ignored */
    /* the UNSUBSCRIBE travels on another connection than our commands:
     * ask Redis until it counts no subscriber of ch:a (one of ch:b stays) */
    struct got g;
    const char *pa[] = { "PUBLISH", "ch:a", "x" };
    size_t pal[] = { 7, 4, 1 };
    const char *pb[] = { "PUBLISH", "ch:b", "yes" };
    size_t pbl[] = { 7, 4, 3 };
    long long until = now_ms() + WAIT_MS;
    int receivers = -1;
    while (receivers != 0 && now_ms() < until) {
        cmd(pub, &g, 3, pa, pal);
        RUN_UNTIL(g.done);
        receivers = g.type == REDIS_REPLY_INTEGER ? (int)g.integer : -1;
        spin(2);
    }
    ck_assert_int_eq(receivers, 0);
    struct mx_redis_stats st;
    spin(5);
    mx_redis_stats(sub, &st);
    unsigned long before = st.messages; /* an "x" that beat the UNSUBSCRIBE */
    cmd(pub, &g, 3, pb, pbl);
    RUN_UNTIL(g.done);
    ck_assert_int_eq(g.integer, 1);
    WAIT_STAT(sub, messages, before + 1, st);
    ck_assert_str_eq(last_ch, "ch:b");
    /* a reconnect subscribes ch:b only */
    stop_redis(pid);
    RUN_UNTIL(!mx_redis_is_up(sub) && !mx_redis_is_up(pub));
    nconfirmed = 0;
    pid = start_redis(port);
    RUN_UNTIL(nconfirmed == 1 && mx_redis_is_up(pub));
    ck_assert_str_eq(confirmed[0], "ch:b");
    mx_redis_free(sub);
    finish(pub, pid);
}
END_TEST

Suite *mx_suite_redis_adapter(void)
{
    Suite *s = suite_create("redis_adapter");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, up_and_binary_safe);
    tcase_add_test(tc, command_timeout_drops_and_reconnects);
    tcase_add_test(tc, redis_killed_and_back);
    tcase_add_test(tc, silent_peer_hits_connect_timeout);
    tcase_add_test(tc, nothing_listening_retries);
    tcase_add_test(tc, subscriber_resubscribes);
    tcase_add_test(tc, unsubscribe_forgets_the_channel);
    suite_add_tcase(s, tc);
    return s;
}
