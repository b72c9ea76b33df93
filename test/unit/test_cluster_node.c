/* Unit tests for cluster mode's commit path and replicas (cluster_commit.c,
 * cluster_replica.c, the engine's seam cluster_node.h): two engines - two
 * nodes - in one process on one lws loop, each with its cnode, against a
 * real redis-server on a free loopback port; connections are fakes that
 * record what is delivered.
 *  - group commit: actions decided in one loop turn go as ONE FCALL, and
 *    no ack is delivered before Redis answered;
 *  - a get sent while a batch is in flight waits and shows the state after
 *    it; replies come in request order;
 *  - two nodes writing the same room in the same turn: one call is
 *    `moved`, that node reloads and decides again, both actions are acked
 *    once, at seqs 1 and 2, and both replicas end at the same checksum;
 *  - a reload that brings more entries than the room's history forwards
 *    every one to local subscribers, in order;
 *  - Redis gone: a call in flight and an action sent then are answered
 *    `reject unavailable` naming the last confirmed head; not ready.
 *  - one call carries at most 1024 actions: 2500 read in one turn go as
 *    three calls, acked in order;
 *  - the reload after `moved` forwards every entry it brought to the
 *    node's subscribers in seq order, also in a room with history 0 (whose
 *    log keeps none of them). */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/cluster_node.h"
#include "movexd/config.h"
#include "movexd/engine.h"
#include "movexd/log.h"
#include "movexd/room.h"
#include "movexd/storage.h"
#include "redis_util.h"

#define MAXMSG 512
struct fake {
    struct mx_conn conn;
    json_t *got[MAXMSG];
    size_t n, seen;
};

static void fake_deliver(struct mx_conn *c, mx_frame *f)
{
    struct fake *fk = c->edge;
    json_t *j = json_loadb(mx_frame_data(f), f->len, JSON_DECODE_INT_AS_REAL, NULL);
    ck_assert_msg(j != NULL, "delivered: %.*s", (int)f->len, mx_frame_data(f));
    ck_assert_uint_lt(fk->n, MAXMSG);
    fk->got[fk->n++] = j;
}

static void fake_close(struct mx_conn *c, int code, const char *reason)
{
    (void)c;
    (void)code;
    (void)reason;
}

struct nodex {
    char jdir[64]; /* its own journal directory (two nodes in one process) */
    struct mx_config cfg;
    mx_engine *e;
    struct mx_cnode *cn;
    struct fake f[2];
};

static struct nodex nx[2];
static pid_t redis_pid;
static int rport;

static void node_up(struct nodex *x, const char *id)
{
    char conf[640], err[256];
    snprintf(x->jdir, sizeof x->jdir, "/tmp/mx-cnode-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(x->jdir));
    snprintf(conf, sizeof conf,
             "evict_idle_ms 0\ndedup_window 1024\nroom default {\n reducer json\n history 100\n"
             " create_on_subscribe yes\n}\nroom h0 {\n reducer json\n history 0\n create_on_subscribe yes\n}\n"
             "room s {\n reducer json\n history 4\n create_on_subscribe yes\n}\n"
             "cluster {\n node_id %s\n redis 127.0.0.1:%d\n"
             " connect_timeout_ms 500\n command_timeout_ms 2000\n reconnect_max_ms 100\n journal_dir %s\n}\n",
             id, rport, x->jdir);
    ck_assert_msg(mx_config_parse(&x->cfg, conf, "test_cluster_node.conf", err, sizeof err) == 0, "%s", err);
    x->e = mx_engine_new(&x->cfg, mx_storage_mem(), NULL);
    ck_assert_ptr_nonnull(x->e);
    x->cn = mx_cnode_new(&x->cfg, x->e, ctx, vh);
    ck_assert_ptr_nonnull(x->cn);
    mx_engine_set_cluster(x->e, x->cn);
    memset(x->f, 0, sizeof x->f);
    for (int i = 0; i < 2; i++) {
        x->f[i].conn.deliver = fake_deliver;
        x->f[i].conn.close = fake_close;
        x->f[i].conn.edge = &x->f[i];
        mx_engine_conn_open(x->e, &x->f[i].conn);
    }
}

static void node_down(struct nodex *x)
{
    for (int i = 0; i < 2; i++) {
        mx_engine_conn_closed(x->e, &x->f[i].conn);
        for (size_t k = 0; k < x->f[i].n; k++)
            json_decref(x->f[i].got[k]);
    }
    mx_engine_set_cluster(x->e, NULL);
    mx_cnode_free(x->cn);
    mx_engine_free(x->e);
    mx_config_free(&x->cfg);
    DIR *d = opendir(x->jdir); /* the journal's files, then the directory */
    for (struct dirent *de; d && (de = readdir(d));) {
        char p[sizeof x->jdir + 256];
        snprintf(p, sizeof p, "%s/%s", x->jdir, de->d_name);
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(x->jdir);
}

/* One loop turn and both nodes' commits (as server.c's loop does). */
static void turn(void)
{
    lws_service(ctx, 0);
    for (int i = 0; i < 2; i++)
        if (nx[i].e)
            mx_engine_commit(nx[i].e);
}

#define TURN_UNTIL(cond)                                                                           \
    do {                                                                                           \
        long long until_ = now_ms() + WAIT_MS;                                                     \
        while (!(cond) && now_ms() < until_)                                                       \
            turn();                                                                                \
        ck_assert_msg((cond), "timed out waiting for: %s", #cond);                                \
    } while (0)

static void setup(void)
{
    mx_log_set_level(MX_LOG_ERROR);
    loop_setup();
    rport = free_port();
    redis_pid = start_redis(rport);
    memset(nx, 0, sizeof nx);
    node_up(&nx[0], "a");
    node_up(&nx[1], "b");
    TURN_UNTIL(mx_cnode_ready(nx[0].cn) && mx_cnode_ready(nx[1].cn));
}

static void teardown(void)
{
    node_down(&nx[0]);
    node_down(&nx[1]);
    spin(10);
    if (redis_pid)
        stop_redis(redis_pid);
    loop_teardown();
}

static void sendf(struct fake *fk, mx_engine *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sendf(struct fake *fk, mx_engine *e, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mx_engine_handle(e, &fk->conn, buf, strlen(buf));
}

static const char *s_of(const json_t *m, const char *k)
{
    const char *s = json_string_value(json_object_get(m, k));
    return s ? s : "";
}
static uint64_t u_of(const json_t *m, const char *k) { return (uint64_t)json_number_value(json_object_get(m, k)); }

/* The next message delivered to fk, waiting for it. */
static json_t *next(struct fake *fk)
{
    TURN_UNTIL(fk->seen < fk->n);
    return fk->got[fk->seen++];
}

static void join(struct nodex *x, int i, const char *client, const char *room)
{
    sendf(&x->f[i], x->e, "{\"type\":\"hello\",\"client\":\"%s\"}", client);
    sendf(&x->f[i], x->e, "{\"type\":\"subscribe\",\"id\":1,\"room\":\"%s\"}", room);
    ck_assert_str_eq(s_of(next(&x->f[i]), "type"), "welcome");
    json_t *s = next(&x->f[i]);
    ck_assert_msg(!strcmp(s_of(s, "type"), "snapshot"), "got %s %s", s_of(s, "type"), s_of(s, "message"));
}

#define ACT(id, n, room, patch)                                                                    \
    "{\"type\":\"action\",\"id\":" #id ",\"room\":\"" room "\",\"n\":" #n                          \
    ",\"action\":{\"type\":\"patch\",\"payload\":" patch "}}"
#define INC "[{\"op\":\"inc\",\"path\":\"/n\",\"value\":1}]"

START_TEST(batch_is_one_call_and_acks_wait_for_redis)
{
    struct nodex *a = &nx[0];
    join(a, 0, "c1", "g");
    sendf(&a->f[0], a->e, ACT(2, 1, "g", "[{\"op\":\"add\",\"path\":\"/n\",\"value\":0}]"));
    for (int n = 2; n <= 20; n++) {
        char m[256];
        snprintf(m, sizeof m, "{\"type\":\"action\",\"id\":%d,\"room\":\"g\",\"n\":%d,\"action\":"
                              "{\"type\":\"patch\",\"payload\":" INC "}}", n + 1, n);
        mx_engine_handle(a->e, &a->f[0].conn, m, strlen(m));
    }
    struct mx_cnode_stats st0;
    mx_cnode_stats(a->cn, &st0);
    size_t before = a->f[0].n;
    mx_engine_commit(a->e); /* sends the batch; nothing may be delivered yet */
    ck_assert_uint_eq(a->f[0].n, before);
    struct mx_cnode_stats st;
    mx_cnode_stats(a->cn, &st);
    ck_assert_uint_eq(st.calls - st0.calls, 1);
    ck_assert_uint_eq(st.batched_actions - st0.batched_actions, 20);
    for (uint64_t s = 1; s <= 20; s++) {
        json_t *m = next(&a->f[0]);
        ck_assert_str_eq(s_of(m, "type"), "ack");
        ck_assert_uint_eq(u_of(m, "seq"), s);
    }
    mx_cnode_stats(a->cn, &st);
    ck_assert_uint_eq(st.calls - st0.calls, 1);
}
END_TEST

START_TEST(get_waits_for_the_batch_in_flight)
{
    struct nodex *a = &nx[0];
    join(a, 0, "c1", "w");
    sendf(&a->f[0], a->e, ACT(2, 1, "w", "[{\"op\":\"add\",\"path\":\"/n\",\"value\":1}]"));
    mx_engine_commit(a->e); /* in flight now */
    sendf(&a->f[0], a->e, "{\"type\":\"get\",\"id\":3,\"room\":\"w\"}");
    sendf(&a->f[0], a->e, ACT(4, 2, "w", INC));
    sendf(&a->f[0], a->e, "{\"type\":\"get\",\"id\":5,\"room\":\"w\"}");
    json_t *m = next(&a->f[0]);
    ck_assert_str_eq(s_of(m, "type"), "ack");
    ck_assert_uint_eq(u_of(m, "id"), 2);
    m = next(&a->f[0]);
    ck_assert_str_eq(s_of(m, "type"), "snapshot");
    ck_assert_uint_eq(u_of(m, "id"), 3);
    ck_assert_uint_eq(u_of(m, "seq"), 1);
    m = next(&a->f[0]);
    ck_assert_str_eq(s_of(m, "type"), "ack");
    ck_assert_uint_eq(u_of(m, "seq"), 2);
    m = next(&a->f[0]);
    ck_assert_uint_eq(u_of(m, "id"), 5);
    ck_assert_uint_eq(u_of(m, "seq"), 2);
    ck_assert_uint_eq((uint64_t)json_number_value(json_object_get(json_object_get(m, "state"), "n")), 2);
}
END_TEST

START_TEST(same_turn_on_two_nodes_one_is_moved)
{
    struct nodex *a = &nx[0], *b = &nx[1];
    join(a, 0, "ca", "m");
    join(b, 0, "cb", "m");
    struct mx_cnode_stats s1, s2;
    mx_cnode_stats(a->cn, &s1);
    mx_cnode_stats(b->cn, &s2);
    uint64_t loads = s1.reloads + s2.reloads;
    /* both decided on seq 0 in the same turn: Redis takes one first */
    sendf(&a->f[0], a->e, ACT(2, 1, "m", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":1}]"));
    sendf(&b->f[0], b->e, ACT(2, 1, "m", "[{\"op\":\"add\",\"path\":\"/b\",\"value\":2}]"));
    turn();
    json_t *x = next(&a->f[0]);
    json_t *y = next(&b->f[0]);
    /* each sees its own ack and the other's fwd, in seq order */
    json_t *ack_a = !strcmp(s_of(x, "type"), "ack") ? x : next(&a->f[0]);
    json_t *ack_b = !strcmp(s_of(y, "type"), "ack") ? y : next(&b->f[0]);
    ck_assert_str_eq(s_of(ack_a, "type"), "ack");
    ck_assert_str_eq(s_of(ack_b, "type"), "ack");
    uint64_t sa = u_of(ack_a, "seq"), sb = u_of(ack_b, "seq");
    ck_assert_msg((sa == 1 && sb == 2) || (sa == 2 && sb == 1), "seqs %llu %llu", (unsigned long long)sa,
                  (unsigned long long)sb);
    mx_cnode_stats(a->cn, &s1);
    mx_cnode_stats(b->cn, &s2);
    ck_assert_uint_eq(s1.moved + s2.moved, 1);
    /* the loser took its batch back in place and decided again: no reload */
    ck_assert_uint_eq(s1.rolled_back + s2.rolled_back, 1);
    ck_assert_uint_eq(s1.reloads + s2.reloads, loads);
    /* both replicas at seq 2 with one checksum */
    TURN_UNTIL(mx_engine_room(a->e, "m", 1)->seq == 2 && mx_engine_room(b->e, "m", 1)->seq == 2);
    ck_assert_int_eq(memcmp(mx_engine_room(a->e, "m", 1)->checksum, mx_engine_room(b->e, "m", 1)->checksum,
                            MX_DIGEST_LEN), 0);
}
END_TEST

/* Both nodes send a batch of 10 on the same head in the same turn: the
 * loser rolls back and brings the winner's 10 entries, more than the room's
 * history (4) holds; its other local subscriber still gets all of them as
 * fwds, in order, before the loser's own entries. */
START_TEST(reload_forwards_more_than_history)
{
    struct nodex *a = &nx[0], *b = &nx[1];
    join(a, 0, "wa", "s:x");
    join(a, 1, "ra", "s:x");
    join(b, 0, "wb", "s:x");
    join(b, 1, "rb", "s:x");
    for (int k = 1; k <= 10; k++) {
        char m[256];
        snprintf(m, sizeof m, "{\"type\":\"action\",\"id\":%d,\"room\":\"s:x\",\"n\":%d,\"action\":"
                              "{\"type\":\"patch\",\"payload\":[{\"op\":\"add\",\"path\":\"/k%d\",\"value\":%d}]}}",
                 k + 1, k, k, k);
        mx_engine_handle(a->e, &a->f[0].conn, m, strlen(m));
        mx_engine_handle(b->e, &b->f[0].conn, m, strlen(m));
    }
    turn();
    for (int i = 0; i < 2; i++) {
        struct fake *rd = &nx[i].f[1];
        for (uint64_t s = 1; s <= 20; s++) {
            json_t *m = next(rd);
            ck_assert_str_eq(s_of(m, "type"), "fwd");
            ck_assert_uint_eq(u_of(m, "seq"), s);
        }
    }
    struct mx_cnode_stats s1, s2;
    mx_cnode_stats(a->cn, &s1);
    mx_cnode_stats(b->cn, &s2);
    ck_assert_uint_ge(s1.moved + s2.moved, 1);
}
END_TEST

START_TEST(redis_gone_answers_unavailable)
{
    struct nodex *a = &nx[0];
    join(a, 0, "c1", "u");
    sendf(&a->f[0], a->e, ACT(2, 1, "u", INC));
    json_t *ack = next(&a->f[0]);
    ck_assert_str_eq(s_of(ack, "type"), "ack");
    /* a call in flight when Redis dies: its outcome is unknown, the action
     * is answered unavailable naming the last head Redis confirmed (the
     * replica holds the unconfirmed decision) */
    sendf(&a->f[0], a->e, ACT(3, 2, "u", INC));
    mx_engine_commit(a->e);
    stop_redis(redis_pid);
    redis_pid = 0;
    json_t *m = next(&a->f[0]);
    ck_assert_str_eq(s_of(m, "type"), "reject");
    ck_assert_str_eq(s_of(m, "code"), "unavailable");
    ck_assert_uint_eq(u_of(m, "seq"), 1);
    ck_assert_str_eq(s_of(m, "checksum"), s_of(ack, "checksum"));
    TURN_UNTIL(!mx_cnode_ready(a->cn));
    ck_assert_int_eq(mx_engine_ready(a->e), -2); /* /readyz names Redis, not the storage */
    sendf(&a->f[0], a->e, ACT(4, 2, "u", INC));
    m = next(&a->f[0]);
    ck_assert_str_eq(s_of(m, "type"), "reject");
    ck_assert_str_eq(s_of(m, "code"), "unavailable");
    ck_assert_uint_eq(u_of(m, "seq"), 1);
}
END_TEST

/* The seqs of acks (not duplicates) and fwds delivered to fk, in order. */
static size_t seqs_seen(const struct fake *fk, uint64_t *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < fk->n && k < cap; i++) {
        const json_t *m = fk->got[i];
        if ((!strcmp(s_of(m, "type"), "ack") && !json_is_true(json_object_get(m, "duplicate"))) ||
            !strcmp(s_of(m, "type"), "fwd"))
            out[k++] = u_of(m, "seq");
    }
    return k;
}

START_TEST(moved_reload_forwards_everything_with_history_0)
{
    struct nodex *a = &nx[0], *b = &nx[1];
    const char *room = "h0:r";
    join(a, 0, "ca", room);
    join(a, 1, "ra", room); /* a reader on each node */
    join(b, 0, "cb", room);
    join(b, 1, "rb", room);
    /* one action on a, five on b, decided on seq 0 in the same turn: one
     * node is moved and reloads a room whose history keeps nothing */
    sendf(&a->f[0], a->e, "{\"type\":\"action\",\"id\":2,\"room\":\"%s\",\"n\":1,\"action\":"
                          "{\"type\":\"patch\",\"payload\":[{\"op\":\"add\",\"path\":\"/a\",\"value\":1}]}}", room);
    for (int n = 1; n <= 5; n++)
        sendf(&b->f[0], b->e, "{\"type\":\"action\",\"id\":%d,\"room\":\"%s\",\"n\":%d,\"action\":"
                              "{\"type\":\"patch\",\"payload\":[{\"op\":\"add\",\"path\":\"/b%d\",\"value\":%d}]}}",
              n + 1, room, n, n, n);
    turn();
    TURN_UNTIL(mx_engine_room(a->e, room, strlen(room))->seq == 6 && mx_engine_room(b->e, room, strlen(room))->seq == 6);
    struct mx_cnode_stats s1, s2;
    mx_cnode_stats(a->cn, &s1);
    mx_cnode_stats(b->cn, &s2);
    ck_assert_uint_ge(s1.moved + s2.moved, 1);
    /* a last action from b: once every reader has its fwd (seq 7),
     * everything before it has been delivered too */
    sendf(&b->f[0], b->e, "{\"type\":\"action\",\"id\":9,\"room\":\"%s\",\"n\":6,\"action\":"
                          "{\"type\":\"patch\",\"payload\":[{\"op\":\"add\",\"path\":\"/z\",\"value\":0}]}}", room);
    struct fake *all[4] = {&a->f[0], &a->f[1], &b->f[0], &b->f[1]};
    for (int i = 0; i < 4; i++) {
        uint64_t s[16];
        TURN_UNTIL(seqs_seen(all[i], s, 16) > 0 && s[seqs_seen(all[i], s, 16) - 1] == 7);
        size_t k = seqs_seen(all[i], s, 16);
        for (size_t j = 0; j < k; j++)
            ck_assert_msg(s[j] == j + 1, "connection %d: seq %llu where %zu was due (of %zu seen)", i,
                          (unsigned long long)s[j], j + 1, k);
        ck_assert_uint_eq(k, 7);
    }
}
END_TEST

/* Counts acks in seq order (2500 do not fit the fake's array). */
static uint64_t flood_acked;
static int flood_bad;
static void flood_deliver(struct mx_conn *c, mx_frame *f)
{
    (void)c;
    json_t *j = json_loadb(mx_frame_data(f), f->len, JSON_DECODE_INT_AS_REAL, NULL);
    if (!j || strcmp(s_of(j, "type"), "ack") || u_of(j, "seq") != flood_acked + 1)
        flood_bad = 1;
    else
        flood_acked++;
    json_decref(j);
}

START_TEST(a_flooded_room_sends_bounded_batches)
{
    struct nodex *a = &nx[0];
    join(a, 0, "c1", "fl");
    flood_acked = 0;
    flood_bad = 0;
    a->f[0].conn.deliver = flood_deliver;
    struct mx_cnode_stats st0, st;
    mx_cnode_stats(a->cn, &st0);
    enum { N = 2500 };
    for (int n = 1; n <= N; n++) {
        char m[256];
        snprintf(m, sizeof m, "{\"type\":\"action\",\"id\":%d,\"room\":\"fl\",\"n\":%d,\"action\":"
                              "{\"type\":\"patch\",\"payload\":[{\"op\":\"add\",\"path\":\"/k%d\",\"value\":%d}]}}",
                 n + 1, n, n, n);
        mx_engine_handle(a->e, &a->f[0].conn, m, strlen(m));
    }
    mx_engine_commit(a->e); /* one turn read them all: the first batch goes */
    mx_cnode_stats(a->cn, &st);
    ck_assert_uint_eq(st.calls - st0.calls, 1);
    ck_assert_uint_eq(st.batched_actions - st0.batched_actions, 1024);
    TURN_UNTIL(flood_acked == N || flood_bad);
    ck_assert_msg(!flood_bad, "ack %llu out of order or not an ack", (unsigned long long)flood_acked + 1);
    mx_cnode_stats(a->cn, &st);
    ck_assert_uint_eq(st.calls - st0.calls, 3);
    ck_assert_uint_eq(st.batched_actions - st0.batched_actions, N);
}
END_TEST

Suite *mx_suite_cluster_node(void)
{
    Suite *s = suite_create("cluster_node");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, batch_is_one_call_and_acks_wait_for_redis);
    tcase_add_test(tc, get_waits_for_the_batch_in_flight);
    tcase_add_test(tc, same_turn_on_two_nodes_one_is_moved);
    tcase_add_test(tc, reload_forwards_more_than_history);
    tcase_add_test(tc, redis_gone_answers_unavailable);
    tcase_add_test(tc, moved_reload_forwards_everything_with_history_0);
    tcase_add_test(tc, a_flooded_room_sends_bounded_batches);
    suite_add_tcase(s, tc);
    return s;
}
