/* Unit tests for cluster_presence.c against a real redis-server on a free
 * loopback port: two presence layers on one loop are two nodes. A node's
 * local changes reach the other node's joined rooms only; a node that
 * joins later learns who is there; a node that says bye is cleared at
 * once; a node that falls silent (a fake node publishing by hand, then
 * nothing) is cleared within dead_ms + one heartbeat, and not before; a
 * node restarted under the same id (new boot) ends its old entries; bad
 * messages are counted and ignored; a Redis restart loses no entry. */
#include <check.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/cluster_presence.h"
#include "movexd/config.h"
#include "movexd/engine.h"
#include "movexd/frame.h"
#include "movexd/log.h"
#include "movexd/redis_adapter.h"
#include "movexd/storage.h"
#include "redis_util.h"

#define MAXEV 64

struct ev {
    char room[32], client[32], state[64]; /* state "" = left */
    const void *owner;
    uint64_t conn;
};

struct node {
    struct mx_cpres *cp;
    struct ev ev[MAXEV];
    int nev;
    uint64_t next_conn;
};

static void on_remote(void *priv, const char *room, size_t roomlen, const void *owner, uint64_t conn,
                      const char *client, size_t clientlen, const char *state, size_t statelen)
{
    struct node *n = priv;
    ck_assert_int_lt(n->nev, MAXEV);
    struct ev *e = &n->ev[n->nev++];
    snprintf(e->room, sizeof e->room, "%.*s", (int)roomlen, room);
    snprintf(e->client, sizeof e->client, "%.*s", (int)clientlen, client);
    snprintf(e->state, sizeof e->state, "%.*s", state ? (int)statelen : 0, state ? state : "");
    e->owner = owner;
    e->conn = conn;
}

static uint64_t new_conn(void *priv)
{
    struct node *n = priv;
    return ++n->next_conn;
}

static int port;

/* The cluster block of node id against our redis-server. */
static struct mx_cluster_config conf_of(const char *id)
{
    struct mx_cluster_config cc;
    memset(&cc, 0, sizeof cc);
    cc.enabled = 1;
    snprintf(cc.node_id, sizeof cc.node_id, "%s", id);
    snprintf(cc.redis.host, sizeof cc.redis.host, "127.0.0.1");
    cc.redis.port = port;
    snprintf(cc.key_prefix, sizeof cc.key_prefix, "mx:");
    cc.connect_timeout_ms = 500;
    cc.command_timeout_ms = 5000;
    cc.reconnect_max_ms = 200;
    return cc;
}

static void node_start(struct node *n, const char *id, int hb_ms, int dead_ms)
{
    memset(n, 0, sizeof *n);
    n->next_conn = 1000;
    struct mx_cluster_config cc = conf_of(id);
    struct mx_cpres_opts po = { hb_ms, dead_ms, on_remote, new_conn, n };
    n->cp = mx_cpres_new(ctx, vh, &cc, &po);
    ck_assert_ptr_nonnull(n->cp);
}

static void node_stop(struct node *n) { mx_cpres_free(n->cp); }

static pid_t setup(void)
{
    loop_setup();
    port = free_port();
    return start_redis(port);
}

static void teardown(pid_t pid)
{
    spin(20);
    stop_redis(pid);
    loop_teardown();
}

/* Redis counts a subscriber of channel (our SUBSCRIBE went through). */
static void wait_subscribers(redisContext *rc, const char *channel, long long want)
{
    long long until = now_ms() + WAIT_MS, got = -1;
    while (now_ms() < until) {
        redisReply *r = redisCommand(rc, "PUBSUB NUMSUB %s", channel);
        got = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? r->element[1]->integer : -1;
        freeReplyObject(r);
        if (got >= want)
            return;
        spin(5);
    }
    ck_abort_msg("%s: %lld subscribers, wanted %lld", channel, got, want);
}

static redisContext *sync_link(void)
{
    long long until = now_ms() + WAIT_MS;
    for (;;) {
        redisContext *rc = redisConnect("127.0.0.1", port);
        if (rc && !rc->err)
            return rc;
        redisFree(rc);
        ck_assert_msg(now_ms() < until, "redis-server did not listen");
        spin(5);
    }
}

/* Redis, nodes a and b, and a plain link to Redis. */
static pid_t two_nodes(struct node *a, struct node *b, int hb_ms, int dead_ms, redisContext **rc)
{
    pid_t pid = setup();
    node_start(a, "na", hb_ms, dead_ms);
    node_start(b, "nb", hb_ms, dead_ms);
    *rc = sync_link();
    return pid;
}

static void finish_two(struct node *a, struct node *b, redisContext *rc, pid_t pid)
{
    redisFree(rc);
    node_stop(a);
    node_stop(b);
    teardown(pid);
}

/* Redis, node b joined to room r, and a plain link to Redis. */
static pid_t one_node_in_r(struct node *b, int hb_ms, int dead_ms, redisContext **rc)
{
    pid_t pid = setup();
    node_start(b, "nb", hb_ms, dead_ms);
    *rc = sync_link();
    ck_assert_int_eq(mx_cpres_join(b->cp, "r", 1), 0);
    wait_subscribers(*rc, "mx:{r}:pr", 1);
    return pid;
}

START_TEST(changes_reach_joined_rooms_only)
{
    struct node a, b;
    redisContext *rc;
    pid_t pid = two_nodes(&a, &b, 1000, 3000, &rc);
    ck_assert_int_eq(mx_cpres_join(a.cp, "r", 1), 0);
    ck_assert_int_eq(mx_cpres_join(b.cp, "r", 1), 0);
    ck_assert_int_eq(mx_cpres_join(b.cp, "r", 1), 0); /* twice is once */
    wait_subscribers(rc, "mx:{r}:pr", 2);
    /* "other" is not joined by b: never reported, though a publishes it first */
    ck_assert_int_eq(mx_cpres_local(a.cp, "other", 5, 7, "zed", 3, "1", 1), 0);
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 7, "ann", 3, "{\"x\":1}", 7), 0);
    RUN_UNTIL(b.nev == 1);
    ck_assert_str_eq(b.ev[0].room, "r");
    ck_assert_str_eq(b.ev[0].client, "ann");
    ck_assert_str_eq(b.ev[0].state, "{\"x\":1}");
    ck_assert_uint_eq(b.ev[0].conn, 1001); /* b's own number for it */
    /* two changes in one turn: one message, the latest state */
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 7, "ann", 3, "{\"x\":2}", 7), 0);
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 7, "ann", 3, "{\"x\":3}", 7), 0);
    RUN_UNTIL(b.nev == 2);
    ck_assert_str_eq(b.ev[1].state, "{\"x\":3}");
    ck_assert_ptr_eq(b.ev[1].owner, b.ev[0].owner);
    ck_assert_uint_eq(b.ev[1].conn, 1001);
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 7, "ann", 3, NULL, 0), 0);
    RUN_UNTIL(b.nev == 3);
    ck_assert_str_eq(b.ev[2].state, "");
    ck_assert_ptr_eq(b.ev[2].owner, b.ev[0].owner);
    struct mx_cpres_stats st;
    mx_cpres_stats(b.cp, &st);
    ck_assert_uint_eq(st.remote, 0);
    ck_assert_int_eq(a.nev, 0); /* a never hears itself */
    /* a leave reports b's remote entries of the room as left */
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 8, "bob", 3, "[]", 2), 0);
    RUN_UNTIL(b.nev == 4);
    mx_cpres_leave(b.cp, "r", 1);
    ck_assert_int_eq(b.nev, 5);
    ck_assert_str_eq(b.ev[4].client, "bob");
    ck_assert_str_eq(b.ev[4].state, "");
    wait_subscribers(rc, "mx:{r}:pr", 1);
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 8, "bob", 3, "[1]", 3), 0);
    /* b hears nothing of r now: a message on a channel b still holds comes
     * through, the one on r does not */
    ck_assert_int_eq(mx_cpres_join(b.cp, "s", 1), 0);
    wait_subscribers(rc, "mx:{s}:pr", 1);
    ck_assert_int_eq(mx_cpres_local(a.cp, "s", 1, 9, "cy", 2, "true", 4), 0);
    RUN_UNTIL(b.nev == 6);
    ck_assert_str_eq(b.ev[5].room, "s");
    finish_two(&a, &b, rc, pid);
}
END_TEST

START_TEST(late_joiner_learns_who_is_here)
{
    struct node a, b;
    redisContext *rc;
    pid_t pid = two_nodes(&a, &b, 1000, 3000, &rc);
    ck_assert_int_eq(mx_cpres_join(a.cp, "r", 1), 0);
    wait_subscribers(rc, "mx:{r}:pr", 1); /* a is up: its changes go out now */
    struct mx_cpres_stats st;
    mx_cpres_stats(a.cp, &st);
    unsigned long published = st.published;
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 1, "ann", 3, "\"here\"", 6), 0);
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 2, "bob", 3, "\"too\"", 5), 0);
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 3, "cy", 2, "\"gone\"", 6), 0);
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 3, "cy", 2, NULL, 0), 0);
    long long until = now_ms() + WAIT_MS;
    do { /* one message for the four changes */
        lws_service(ctx, 0);
        mx_cpres_stats(a.cp, &st);
    } while (st.published == published && now_ms() < until);
    ck_assert_uint_gt(st.published, published);
    ck_assert_int_eq(mx_cpres_join(b.cp, "r", 1), 0); /* after the changes went out */
    RUN_UNTIL(b.nev == 2);
    int ann = strcmp(b.ev[0].client, "ann") == 0 ? 0 : 1;
    ck_assert_str_eq(b.ev[ann].client, "ann");
    ck_assert_str_eq(b.ev[ann].state, "\"here\"");
    ck_assert_str_eq(b.ev[1 - ann].client, "bob");
    ck_assert_str_eq(b.ev[1 - ann].state, "\"too\"");
    mx_cpres_stats(b.cp, &st);
    ck_assert_uint_eq(st.remote, 2);
    ck_assert_uint_eq(st.bad, 0);
    finish_two(&a, &b, rc, pid);
}
END_TEST

START_TEST(bye_clears_at_once)
{
    pid_t pid = setup();
    struct node a, b;
    node_start(&a, "na", 1000, 600000); /* silence alone would take ten minutes */
    node_start(&b, "nb", 1000, 600000);
    redisContext *rc = sync_link();
    ck_assert_int_eq(mx_cpres_join(b.cp, "r", 1), 0);
    wait_subscribers(rc, "mx:{r}:pr", 1);
    RUN_UNTIL(mx_cpres_up(a.cp));
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 1, "ann", 3, "1", 1), 0);
    RUN_UNTIL(b.nev == 1);
    mx_cpres_stop(a.cp);
    RUN_UNTIL(b.nev == 2);
    ck_assert_str_eq(b.ev[1].state, "");
    struct mx_cpres_stats st;
    mx_cpres_stats(b.cp, &st);
    ck_assert_uint_eq(st.nodes_gone, 1);
    redisFree(rc);
    node_stop(&a);
    node_stop(&b);
    teardown(pid);
}
END_TEST

static void pub(redisContext *rc, const char *channel, const char *msg)
{
    redisReply *r = redisCommand(rc, "PUBLISH %s %s", channel, msg);
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
}

#define FAKE(boot, type, rest) "{\"o\":\"ghost\",\"b\":\"" boot "\",\"t\":\"" type "\"" rest "}"

/* A node that publishes and then falls silent (a kill -9): its entries are
 * reported as left after dead_ms, within dead_ms + a heartbeat. */
START_TEST(silent_node_cleared_within_bound)
{
    struct node b;
    redisContext *rc;
    pid_t pid = one_node_in_r(&b, 100, 1000, &rc);
    wait_subscribers(rc, "mx:nodes", 1);
    /* malformed messages: counted, ignored */
    pub(rc, "mx:{r}:pr", "not json");
    pub(rc, "mx:{r}:pr", "{\"o\":\"bad id!\",\"b\":\"0123456789abcdef\",\"t\":\"d\",\"e\":[]}");
    pub(rc, "mx:{r}:pr", FAKE("0123456789abcdef", "d", ",\"e\":[[\"x\",\"c\",1]]"));
    pub(rc, "mx:{r}:pr", FAKE("0123456789abcdef", "zz", ""));
    pub(rc, "mx:{r}:pr", FAKE("0123456789abcdef", "d", ",\"e\":[[1,\"ann\",{\"a\":[1,2.5]}]]"));
    RUN_UNTIL(b.nev == 1);
    long long seen = now_ms();
    ck_assert_str_eq(b.ev[0].state, "{\"a\":[1,2.5]}");
    struct mx_cpres_stats st;
    mx_cpres_stats(b.cp, &st);
    ck_assert_uint_eq(st.bad, 4);
    RUN_UNTIL(b.nev == 2);
    long long gone = now_ms() - seen;
    ck_assert_str_eq(b.ev[1].state, "");
    ck_assert_msg(gone >= 900, "cleared after %lld ms, before dead_ms", gone);
    ck_assert_msg(gone <= 1100 + 2000, "cleared after %lld ms", gone); /* + slack for a loaded machine */
    redisFree(rc);
    node_stop(&b);
    teardown(pid);
}
END_TEST

/* The same node id with another boot is a restarted node: the entries of
 * its previous life are reported as left, the new ones as new. */
START_TEST(new_boot_ends_old_entries)
{
    struct node b;
    redisContext *rc;
    pid_t pid = one_node_in_r(&b, 1000, 60000, &rc);
    pub(rc, "mx:{r}:pr", FAKE("aaaaaaaaaaaaaaaa", "d", ",\"e\":[[1,\"ann\",1]]"));
    RUN_UNTIL(b.nev == 1);
    pub(rc, "mx:{r}:pr", FAKE("bbbbbbbbbbbbbbbb", "d", ",\"e\":[[1,\"bob\",2]]"));
    RUN_UNTIL(b.nev == 3);
    ck_assert_str_eq(b.ev[1].client, "ann");
    ck_assert_str_eq(b.ev[1].state, "");
    ck_assert_str_eq(b.ev[2].client, "bob");
    ck_assert_str_eq(b.ev[2].state, "2");
    ck_assert_ptr_ne(b.ev[2].owner, NULL);
    ck_assert_uint_ne(b.ev[2].conn, b.ev[0].conn);
    /* a full list without bob: bob left */
    pub(rc, "mx:{r}:pr", FAKE("bbbbbbbbbbbbbbbb", "f", ",\"e\":[[2,\"cy\",3]]"));
    RUN_UNTIL(b.nev == 5);
    ck_assert_str_eq(b.ev[3].client, "cy");
    ck_assert_str_eq(b.ev[4].client, "bob");
    ck_assert_str_eq(b.ev[4].state, "");
    redisFree(rc);
    node_stop(&b);
    teardown(pid);
}
END_TEST

/* Redis restarts empty: both nodes resubscribe; b's entry of a is
 * confirmed by a's full list and never reported as left. */
START_TEST(redis_restart_keeps_entries)
{
    struct node a, b;
    redisContext *rc;
    pid_t pid = two_nodes(&a, &b, 100, 500, &rc);
    ck_assert_int_eq(mx_cpres_join(a.cp, "r", 1), 0);
    ck_assert_int_eq(mx_cpres_join(b.cp, "r", 1), 0);
    wait_subscribers(rc, "mx:{r}:pr", 2);
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 1, "ann", 3, "1", 1), 0);
    RUN_UNTIL(b.nev == 1);
    redisFree(rc);
    stop_redis(pid);
    RUN_UNTIL(!mx_cpres_up(a.cp) && !mx_cpres_up(b.cp));
    pid = start_redis(port);
    rc = sync_link();
    wait_subscribers(rc, "mx:{r}:pr", 2);
    /* let more than dead_ms pass in heartbeats: b hears a's, so a stays */
    struct mx_cpres_stats st;
    mx_cpres_stats(b.cp, &st);
    unsigned long base = st.received;
    long long until = now_ms() + WAIT_MS;
    do {
        lws_service(ctx, 0);
        mx_cpres_stats(b.cp, &st);
    } while (st.received < base + 15 && now_ms() < until);
    ck_assert_uint_ge(st.received, base + 15);
    ck_assert_int_eq(b.nev, 1);
    ck_assert_uint_eq(st.remote, 1);
    /* and the link carries changes again */
    ck_assert_int_eq(mx_cpres_local(a.cp, "r", 1, 1, "ann", 3, "2", 1), 0);
    RUN_UNTIL(b.nev == 2);
    ck_assert_str_eq(b.ev[1].state, "2");
    ck_assert_ptr_eq(b.ev[1].owner, b.ev[0].owner);
    finish_two(&a, &b, rc, pid);
}
END_TEST

/* After b resubscribes (Redis restarted), an entry its node does not
 * confirm goes within dead_ms although the node keeps heartbeating: b may
 * have missed its "left". */
START_TEST(unconfirmed_entries_go_after_resubscribe)
{
    struct node b;
    redisContext *rc;
    pid_t pid = one_node_in_r(&b, 100, 500, &rc);
    pub(rc, "mx:{r}:pr", FAKE("aaaaaaaaaaaaaaaa", "d", ",\"e\":[[1,\"ann\",1]]"));
    RUN_UNTIL(b.nev == 1);
    redisFree(rc);
    stop_redis(pid);
    RUN_UNTIL(!mx_cpres_up(b.cp));
    pid = start_redis(port);
    rc = sync_link();
    wait_subscribers(rc, "mx:{r}:pr", 1);
    long long until = now_ms() + WAIT_MS;
    while (b.nev == 1 && now_ms() < until) { /* alive, silent about ann */
        pub(rc, "mx:nodes", FAKE("aaaaaaaaaaaaaaaa", "hb", ""));
        spin(5);
    }
    ck_assert_int_eq(b.nev, 2);
    ck_assert_str_eq(b.ev[1].client, "ann");
    ck_assert_str_eq(b.ev[1].state, "");
    struct mx_cpres_stats st;
    mx_cpres_stats(b.cp, &st);
    ck_assert_uint_eq(st.nodes_gone, 0);
    redisFree(rc);
    node_stop(&b);
    teardown(pid);
}
END_TEST

/* ---- two engines wired through the seam (what a daemon does) ---- */

struct eng {
    mx_engine *e;
    struct mx_cpres *cp;
    struct mx_conn conn;
    char got[16][256]; /* delivered messages */
    int n;
};

static void deliver(struct mx_conn *c, mx_frame *f)
{
    struct eng *g = c->edge;
    ck_assert_int_lt(g->n, 16);
    snprintf(g->got[g->n++], sizeof g->got[0], "%.*s", (int)f->len, mx_frame_data(f));
}

static void closed(struct mx_conn *c, int code, const char *reason) {}

static struct mx_config ecfg;

static void eng_start(struct eng *g, const char *id)
{
    memset(g, 0, sizeof *g);
    g->e = mx_engine_new(&ecfg, mx_storage_mem(), NULL);
    ck_assert_ptr_nonnull(g->e);
    struct mx_cluster_config cc = conf_of(id);
    struct mx_cpres_opts po = { 100, 500, mx_engine_presence_remote, mx_engine_new_conn_id, g->e };
    g->cp = mx_cpres_new(ctx, vh, &cc, &po);
    struct mx_engine_presence_hook h;
    mx_cpres_engine_hook(g->cp, &h);
    mx_engine_set_presence_hook(g->e, &h);
    g->conn.deliver = deliver;
    g->conn.close = closed;
    g->conn.edge = g;
    mx_engine_conn_open(g->e, &g->conn);
}

static void eng_send(struct eng *g, const char *msg)
{
    mx_engine_handle(g->e, &g->conn, msg, strlen(msg));
}

/* One turn of the daemon's loop for both engines. */
static void turn(struct eng *a, struct eng *b)
{
    lws_service(ctx, 0);
    mx_engine_commit(a->e);
    mx_engine_commit(b->e);
}

#define TURN_UNTIL(a, b, cond)                                                                     \
    do {                                                                                           \
        long long until_ = now_ms() + WAIT_MS;                                                     \
        while (!(cond) && now_ms() < until_)                                                       \
            turn(a, b);                                                                            \
        ck_assert_msg((cond), "timed out waiting for: %s", #cond);                                \
    } while (0)

/* A subscriber on node b sees the presence a connection on node a sets,
 * and that it left when it disconnects; a later subscriber on b gets it in
 * its subscribe reply. */
START_TEST(two_engines_share_presence)
{
    pid_t pid = setup();
    char err[256];
    ck_assert_msg(mx_config_parse(&ecfg, "room default {\n    create_on_subscribe yes\n}\n", "t.conf", err,
                                  sizeof err) == 0, "%s", err);
    mx_log_set_level(MX_LOG_ERROR);
    struct eng a, b;
    eng_start(&a, "na");
    eng_start(&b, "nb");
    redisContext *rc = sync_link();
    eng_send(&a, "{\"type\":\"hello\",\"client\":\"ann\"}");
    eng_send(&a, "{\"type\":\"subscribe\",\"id\":1,\"room\":\"t:a\"}");
    eng_send(&b, "{\"type\":\"hello\",\"client\":\"bob\"}");
    eng_send(&b, "{\"type\":\"subscribe\",\"id\":1,\"room\":\"t:a\"}");
    turn(&a, &b);
    wait_subscribers(rc, "mx:{t:a}:pr", 2);
    eng_send(&a, "{\"type\":\"presence\",\"id\":2,\"room\":\"t:a\",\"state\":{\"at\":5}}");
    TURN_UNTIL(&a, &b, b.n == 3);
    ck_assert_msg(strstr(b.got[2], "\"type\":\"presence\"") && strstr(b.got[2], "\"client\":\"ann\"") &&
                  strstr(b.got[2], "\"state\":{\"at\":5}"), "%s", b.got[2]);
    /* a second connection on b: the subscribe reply lists ann */
    struct mx_conn c2 = b.conn;
    mx_engine_conn_open(b.e, &c2);
    const char *hello = "{\"type\":\"hello\",\"client\":\"cy\"}";
    const char *sub = "{\"type\":\"subscribe\",\"id\":1,\"room\":\"t:a\"}";
    mx_engine_handle(b.e, &c2, hello, strlen(hello));
    mx_engine_handle(b.e, &c2, sub, strlen(sub));
    TURN_UNTIL(&a, &b, b.n == 5);
    ck_assert_msg(strstr(b.got[4], "\"presence\":[{\"client\":\"ann\""), "%s", b.got[4]);
    mx_engine_conn_closed(a.e, &a.conn);
    TURN_UNTIL(&a, &b, b.n == 7);
    ck_assert_msg(strstr(b.got[5], "\"left\":true") && strstr(b.got[6], "\"left\":true"), "%s %s",
                  b.got[5], b.got[6]);
    mx_engine_conn_closed(b.e, &c2);
    mx_engine_conn_closed(b.e, &b.conn);
    redisFree(rc);
    for (struct eng *g = &a; g; g = g == &a ? &b : NULL) {
        mx_cpres_free(g->cp);
        mx_engine_free(g->e);
    }
    mx_config_free(&ecfg);
    teardown(pid);
}
END_TEST

Suite *mx_suite_cluster_presence(void)
{
    Suite *s = suite_create("cluster_presence");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, changes_reach_joined_rooms_only);
    tcase_add_test(tc, late_joiner_learns_who_is_here);
    tcase_add_test(tc, bye_clears_at_once);
    tcase_add_test(tc, silent_node_cleared_within_bound);
    tcase_add_test(tc, new_boot_ends_old_entries);
    tcase_add_test(tc, redis_restart_keeps_entries);
    tcase_add_test(tc, unconfirmed_entries_go_after_resubscribe);
    tcase_add_test(tc, two_engines_share_presence);
    suite_add_tcase(s, tc);
    return s;
}
