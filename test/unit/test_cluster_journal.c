/* Unit tests for cluster_journal.c: which batches count as lost past a
 * head; deep copies; order enforced; the bounds (batches, bytes) evict the
 * oldest first; forget. And the replay against real redis-servers: a
 * rollback made by promoting a replica that missed the last batch - the
 * batch sent again verbatim gets back the very same head (seq, sum, hash),
 * so acks stay true; when another node appended first, the batch is
 * reported lost (moved) and forgotten. */
#include <check.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/cluster.h"
#include "movexd/cluster_journal.h"
#include "movexd/err.h"
#include "redis_util.h"

static struct mx_cluster_head H(uint64_t seq, uint64_t sub, const char *sum)
{
    struct mx_cluster_head h;
    memset(&h, 0, sizeof h);
    h.seq = seq;
    h.sub = sub;
    snprintf(h.sum, sizeof h.sum, "%s", sum);
    return h;
}

START_TEST(lost_past_a_head)
{
    struct mx_journal *j = mx_journal_new(100, 1 << 20);
    char client[8] = "c1", body[16] = "[1]";
    uint64_t deps[2] = { 1, 2 };
    struct mx_cluster_action a = { client, 3, deps, 2, 1, 7, 1, "S1", body, 3 };
    struct mx_cluster_head h0 = H(0, 0, "S0"), h1 = H(1, 0, "S1"), h21 = H(2, 1, "S2"), h4 = H(4, 0, "S4");
    ck_assert_int_eq(mx_journal_add(j, "t:a", &h0, &h1, 64, 5, &a, 1), 0);
    ck_assert_int_eq(mx_journal_add(j, "t:a", &h1, &h21, 64, 6, &a, 1), 0);
    ck_assert_int_eq(mx_journal_add(j, "t:a", &h21, &h4, 64, 7, &a, 1), 0);
    ck_assert_int_eq(mx_journal_add(j, "t:b", &h0, &h1, 64, 8, &a, 1), 0);
    /* not beyond the room's last batch: refused */
    ck_assert_int_eq(mx_journal_add(j, "t:a", &h21, &h4, 64, 9, &a, 1), MX_EINTERNAL);
    /* the journal keeps its own copies */
    strcpy(client, "XX");
    strcpy(body, "[9]");
    deps[0] = 99;
    const struct mx_journal_batch *out[4];
    struct mx_cluster_head at = H(2, 0, "S2");
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &at, out, 4), 2); /* 2-1 and 4-0 */
    ck_assert_uint_eq(out[0]->after.seq, 2);
    ck_assert_uint_eq(out[0]->after.sub, 1);
    ck_assert_uint_eq(out[0]->now_ms, 6);
    ck_assert_uint_eq(out[0]->window, 64);
    ck_assert_str_eq(out[0]->expected.sum, "S1");
    ck_assert_uint_eq(out[1]->after.seq, 4);
    ck_assert_str_eq(out[1]->a[0].client, "c1");
    ck_assert_int_eq(memcmp(out[1]->a[0].body, "[1]", 3), 0);
    ck_assert_uint_eq(out[1]->a[0].body_len, 3);
    ck_assert_uint_eq(out[1]->a[0].deps[0], 1);
    ck_assert_uint_eq(out[1]->a[0].deps[1], 2);
    ck_assert_uint_eq(out[1]->a[0].base, 7);
    ck_assert_int_eq(out[1]->a[0].strict, 1);
    ck_assert_str_eq(out[1]->a[0].what, "S1");
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &h4, out, 4), 0);
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &h0, out, 1), 3); /* counts past max */
    ck_assert_uint_eq(mx_journal_lost(j, "t:none", &h0, out, 4), 0);
    /* forget up to 2-1: 4-0 is left; forget all: the room is gone */
    mx_journal_forget(j, "t:a", 2, 1);
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &h0, out, 4), 1);
    ck_assert_uint_eq(out[0]->after.seq, 4);
    mx_journal_forget(j, "t:a", UINT64_MAX, 0);
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &h0, out, 4), 0);
    ck_assert_int_eq(mx_journal_add(j, "t:a", &h0, &h1, 64, 5, &a, 1), 0); /* starts over */
    struct mx_journal_stats st;
    mx_journal_stats(j, &st);
    ck_assert_uint_eq(st.batches, 2);
    ck_assert_uint_eq(st.added, 5);
    ck_assert_uint_eq(st.evicted, 0);
    mx_journal_free(j);
}
END_TEST

/* A batch of another incarnation of the room (deleted and created again)
 * replaces the room's batches: they could never be appended again, and
 * the new room's seqs start over below theirs (on old main that add was
 * refused as out of order and the old batches stayed, replayable). */
START_TEST(another_incarnation_supersedes)
{
    struct mx_journal *j = mx_journal_new(100, 1 << 20);
    struct mx_cluster_action a = { "c1", 1, NULL, 0, 0, 0, 1, "S1", "[]", 2 };
    struct mx_cluster_head h0 = H(0, 0, "S0"), h1 = H(1, 0, "S1"), h2 = H(2, 0, "S2");
    snprintf(h0.inc, sizeof h0.inc, "aa");
    snprintf(h1.inc, sizeof h1.inc, "aa");
    snprintf(h2.inc, sizeof h2.inc, "aa");
    ck_assert_int_eq(mx_journal_add(j, "t:a", &h0, &h1, 64, 5, &a, 1), 0);
    ck_assert_int_eq(mx_journal_add(j, "t:a", &h1, &h2, 64, 6, &a, 1), 0);
    ck_assert_int_eq(mx_journal_add(j, "t:b", &h0, &h1, 64, 6, &a, 1), 0);
    struct mx_cluster_head n0 = H(0, 0, "S0"), n1 = H(1, 0, "S1");
    snprintf(n0.inc, sizeof n0.inc, "bb");
    snprintf(n1.inc, sizeof n1.inc, "bb");
    ck_assert_int_eq(mx_journal_add(j, "t:a", &n0, &n1, 64, 7, &a, 1), 0);
    const struct mx_journal_batch *out[4];
    struct mx_cluster_head zero = H(0, 0, "");
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &zero, out, 4), 1);
    ck_assert_str_eq(out[0]->expected.inc, "bb");
    ck_assert_uint_eq(out[0]->now_ms, 7);
    ck_assert_uint_eq(mx_journal_lost(j, "t:b", &zero, out, 4), 1); /* other rooms untouched */
    struct mx_journal_stats st;
    mx_journal_stats(j, &st);
    ck_assert_uint_eq(st.batches, 2);
    ck_assert_uint_eq(st.superseded, 2);
    mx_journal_free(j);
}
END_TEST

START_TEST(bounds_evict_the_oldest)
{
    struct mx_cluster_action a = { "c1", 1, NULL, 0, 0, 0, 0, "stale", NULL, 0 };
    struct mx_journal *j = mx_journal_new(3, 1 << 20);
    for (uint64_t i = 1; i <= 5; i++) {
        struct mx_cluster_head e = H(i - 1, 0, "S"), f = H(i, 0, "S");
        ck_assert_int_eq(mx_journal_add(j, i % 2 ? "t:a" : "t:b", &e, &f, 64, i, &a, 1), 0);
    }
    struct mx_journal_stats st;
    mx_journal_stats(j, &st);
    ck_assert_uint_eq(st.batches, 3);
    ck_assert_uint_eq(st.evicted, 2);
    const struct mx_journal_batch *out[4];
    struct mx_cluster_head h0 = H(0, 0, "S");
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &h0, out, 4), 2); /* 3 and 5; 1 evicted */
    ck_assert_uint_eq(out[0]->after.seq, 3);
    ck_assert_uint_eq(mx_journal_lost(j, "t:b", &h0, out, 4), 1); /* 4; 2 evicted */
    ck_assert_uint_eq(out[0]->after.seq, 4);
    mx_journal_free(j);

    /* bytes: a bound smaller than two batches keeps only the newest */
    j = mx_journal_new(100, 1);
    for (uint64_t i = 1; i <= 3; i++) {
        struct mx_cluster_head e = H(i - 1, 0, "S"), f = H(i, 0, "S");
        ck_assert_int_eq(mx_journal_add(j, "t:a", &e, &f, 64, i, &a, 1), 0);
    }
    mx_journal_stats(j, &st);
    ck_assert_uint_eq(st.batches, 1);
    ck_assert_uint_eq(st.evicted, 2);
    ck_assert_uint_gt(st.bytes, 1);
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &h0, out, 4), 1);
    ck_assert_uint_eq(out[0]->after.seq, 3);
    mx_journal_free(j);
}
END_TEST

/* ---- replay against real redis-servers ---- */

static void on_loaded(int ok, const char *err, void *priv) { *(int *)priv = ok ? 1 : -1; }

struct appended {
    int done, ok;
    char err[128];
    struct mx_cluster_head head;
    enum mx_cluster_verdict v;
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
        x->v = out[0].verdict;
    }
}

struct replayed {
    int done, ok;
    size_t restored, lost;
    struct mx_cluster_head head;
};

static void on_replayed(int ok, size_t restored, size_t lost, const struct mx_cluster_head *head,
                        void *priv)
{
    struct replayed *x = priv;
    x->done++;
    x->ok = ok;
    x->restored = restored;
    x->lost = lost;
    x->head = *head;
}

static struct mx_redis *up_link(int port, int load)
{
    struct mx_redis_opts o = { "127.0.0.1", port, 500, 5000, 200, NULL, NULL, NULL };
    struct mx_redis *r = mx_redis_new(ctx, vh, &o);
    RUN_UNTIL(mx_redis_is_up(r));
    if (!load)
        return r; /* a replica: it has the library from its primary */
    int lib = 0;
    mx_cluster_load_library(r, on_loaded, &lib);
    RUN_UNTIL(lib != 0);
    ck_assert_int_eq(lib, 1);
    return r;
}

static int got_reply;
static void on_any(struct mx_redis *r, redisReply *rep, void *priv) { got_reply++; }

static void cmd_wait(struct mx_redis *r, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    int before = got_reply;
    mx_redis_command(r, argc, argv, lens, on_any, NULL);
    RUN_UNTIL(got_reply > before);
}

static long long seq_got;
static void on_seq(struct mx_redis *r, redisReply *rep, void *priv)
{
    seq_got = rep && rep->type == REDIS_REPLY_STRING ? atoll(rep->str) : -1;
    got_reply++;
}

/* The room's head seq on r (one round trip). */
static long long head_seq(struct mx_redis *r)
{
    const char *argv[] = { "HGET", "movexd:{t:j}:head", "seq" };
    size_t lens[] = { 4, 17, 3 };
    int before = got_reply;
    mx_redis_command(r, 3, argv, lens, on_seq, NULL);
    RUN_UNTIL(got_reply > before);
    return seq_got;
}

/* Append one action on head h with the journal keeping it (as the commit
 * path does); the head after it. */
static struct mx_cluster_head append_kept(struct mx_redis *r, struct mx_journal *j,
                                          const struct mx_cluster_head *h, const char *client,
                                          uint64_t n, const char *sum, uint64_t now)
{
    struct mx_cluster_action a = { client, n, NULL, 0, 0, 0, 1, sum, "[]", 2 };
    struct appended x = { 0 };
    mx_cluster_append(r, "movexd:", "t:j", h, 64, now, &a, 1, on_appended, &x);
    RUN_UNTIL(x.done);
    ck_assert_msg(x.ok, "%s", x.err);
    ck_assert_int_eq(x.v, MX_CLUSTER_ACK);
    if (j)
        ck_assert_int_eq(mx_journal_add(j, "t:j", h, &x.head, 64, now, &a, 1), 0);
    return x.head;
}

/* A loop, a primary (library loaded, room t:j created at S0) and its
 * replica; the link to the primary. */
static struct mx_redis *primary_and_replica(pid_t *p, pid_t *rp, int *rport)
{
    loop_setup();
    int pport = free_port();
    *rport = free_port();
    *p = start_redis(pport);
    *rp = start_redis_of(*rport, pport);
    struct mx_redis *a = up_link(pport, 1);
    const char *create[] = { "FCALL", "movexd_create", "1", "movexd:{t:j}:head", "S0" };
    cmd_wait(a, 5, create);
    return a;
}

/* The replica gets what the primary has (WAIT), then is cut off and
 * promoted (REPLICAOF NO ONE), as a failover would; a link to it. */
static struct mx_redis *promote(struct mx_redis *a, int rport)
{
    const char *wait[] = { "WAIT", "1", "10000" };
    cmd_wait(a, 3, wait);
    struct mx_redis *b = up_link(rport, 0);
    const char *noone[] = { "REPLICAOF", "NO", "ONE" };
    cmd_wait(b, 3, noone);
    return b;
}

START_TEST(replay_restores_a_rolled_back_batch)
{
    int rport;
    pid_t p, rp;
    struct mx_redis *a = primary_and_replica(&p, &rp, &rport);
    struct mx_journal *j = mx_journal_new(100, 1 << 20);
    struct mx_cluster_head h0 = H(0, 0, "S0");
    struct mx_cluster_head h1 = append_kept(a, j, &h0, "c1", 1, "S1", 1000);
    /* the replica has batch 1 (WAIT), then is cut off and promoted: it
     * will miss batch 2, as a replica promoted by a failover can */
    struct mx_redis *b = promote(a, rport);
    struct mx_cluster_head h2 = append_kept(a, j, &h1, "c2", 1, "S2", 2000);
    struct mx_cluster_head h3 = append_kept(a, j, &h2, "c1", 2, "S3", 3000);
    ck_assert_uint_eq(h3.seq, 3);

    /* on the promoted one the head is 1: batches 2 and 3 are lost */
    const struct mx_journal_batch *lost[4];
    ck_assert_uint_eq(mx_journal_lost(j, "t:j", &h1, lost, 4), 2);
    struct replayed x = { 0 };
    ck_assert_int_eq(mx_journal_replay(j, b, "movexd:", "t:j", &h1, 0, 0, on_replayed, &x), 0);
    RUN_UNTIL(x.done);
    ck_assert_int_eq(x.ok, 1);
    ck_assert_uint_eq(x.restored, 2);
    ck_assert_uint_eq(x.lost, 0);
    /* byte for byte the same history: the same head, hash chain included */
    ck_assert_uint_eq(x.head.seq, h3.seq);
    ck_assert_str_eq(x.head.sum, h3.sum);
    ck_assert_str_eq(x.head.hash, h3.hash);
    /* a resend of an action answers its original outcome there now */
    struct mx_cluster_action again = { "c2", 1, NULL, 0, 0, 0, 1, "S9", "[]", 2 };
    struct appended y = { 0 };
    mx_cluster_append(b, "movexd:", "t:j", &x.head, 64, 1, &again, 1, on_appended, &y);
    RUN_UNTIL(y.done);
    ck_assert_int_eq(y.v, MX_CLUSTER_DUP_ACK);

    /* a fork: the promoted one moves on with another node's batch before
     * the replay - the lost batch cannot come back verbatim */
    struct mx_cluster_head h4 = append_kept(a, j, &h3, "c1", 3, "S4", 4000); /* only on a */
    (void)h4;
    append_kept(b, NULL, &x.head, "c3", 1, "X4", 4500);                      /* another node, on b */
    struct replayed z = { 0 };
    ck_assert_int_eq(mx_journal_replay(j, b, "movexd:", "t:j", &h3, 0, 0, on_replayed, &z), 0);
    RUN_UNTIL(z.done);
    ck_assert_int_eq(z.ok, 1);
    ck_assert_uint_eq(z.restored, 0);
    ck_assert_uint_eq(z.lost, 1);
    ck_assert_uint_eq(z.head.seq, 4);
    ck_assert_str_eq(z.head.sum, "X4");
    ck_assert_uint_eq(mx_journal_lost(j, "t:j", &h0, lost, 4), 0); /* given up: forgotten */

    mx_journal_free(j);
    mx_redis_free(a);
    mx_redis_free(b);
    spin(20);
    stop_redis(rp);
    stop_redis(p);
    loop_teardown();
}
END_TEST

/* Two nodes' batches interleave in the lost tail (X: 2 and 4, Y: 3).
 * X's replay restores 2 and waits (Redis is behind the head its batch 4
 * was decided on); Y's replay restores 3; X's retry then restores 4: the
 * whole tail is back, the same head hash. Without patience X would give 4
 * up at once. */
START_TEST(replays_of_two_nodes_interleave)
{
    int rport;
    pid_t p, rp;
    struct mx_redis *a = primary_and_replica(&p, &rp, &rport);
    struct mx_journal *jx = mx_journal_new(100, 1 << 20), *jy = mx_journal_new(100, 1 << 20);
    mx_journal_set_patience(jx, ctx, 10000);
    mx_journal_set_patience(jy, ctx, 10000);
    struct mx_cluster_head h0 = H(0, 0, "S0");
    struct mx_cluster_head h1 = append_kept(a, jx, &h0, "x", 1, "S1", 1000);
    struct mx_redis *b = promote(a, rport);
    struct mx_cluster_head h2 = append_kept(a, jx, &h1, "x", 2, "S2", 2000);
    struct mx_cluster_head h3 = append_kept(a, jy, &h2, "y", 1, "S3", 3000);
    struct mx_cluster_head h4 = append_kept(a, jx, &h3, "x", 3, "S4", 4000);

    struct replayed x = { 0 }, y = { 0 };
    ck_assert_int_eq(mx_journal_replay(jx, b, "movexd:", "t:j", &h1, 0, 0, on_replayed, &x), 0);
    RUN_UNTIL(head_seq(b) == 2); /* X restored 2; it waits on 4 */
    ck_assert_int_eq(x.done, 0);
    ck_assert_int_eq(mx_journal_replay(jy, b, "movexd:", "t:j", &h1, 0, 0, on_replayed, &y), 0);
    RUN_UNTIL(x.done && y.done);
    ck_assert_int_eq(x.ok, 1);
    ck_assert_uint_eq(x.restored, 2);
    ck_assert_uint_eq(x.lost, 0);
    ck_assert_uint_eq(y.restored, 1);
    ck_assert_uint_eq(y.lost, 0);
    ck_assert_uint_eq(x.head.seq, 4);
    ck_assert_str_eq(x.head.hash, h4.hash);

    /* the journal freed while a replay waits (for 5, which nobody will
     * restore): the replay ends with ok = 0 */
    struct mx_cluster_head h5 = append_kept(a, NULL, &h4, "y", 2, "S5", 5000);
    append_kept(a, jx, &h5, "x", 4, "S6", 6000);
    struct replayed z = { 0 };
    ck_assert_int_eq(mx_journal_replay(jx, b, "movexd:", "t:j", &h4, 0, 0, on_replayed, &z), 0);
    spin(20);
    ck_assert_int_eq(z.done, 0);
    /* as the node does: the link (a call in flight ends) and the journal
     * (a retry timer pending ends) in the same loop turn */
    mx_redis_free(b);
    mx_journal_free(jx);
    ck_assert_int_eq(z.done, 1);
    ck_assert_int_eq(z.ok, 0);

    mx_journal_free(jy);
    mx_redis_free(a);
    spin(20);
    stop_redis(rp);
    stop_redis(p);
    loop_teardown();
}
END_TEST

Suite *mx_suite_cluster_journal(void)
{
    Suite *s = suite_create("cluster_journal");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, lost_past_a_head);
    tcase_add_test(tc, another_incarnation_supersedes);
    tcase_add_test(tc, bounds_evict_the_oldest);
    tcase_add_test(tc, replay_restores_a_rolled_back_batch);
    tcase_add_test(tc, replays_of_two_nodes_interleave);
    suite_add_tcase(s, tc);
    return s;
}
