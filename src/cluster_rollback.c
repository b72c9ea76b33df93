/* cluster_rollback.c - cluster mode noticing that Redis lost data it had
 * acknowledged, and what the node does about it (issue #14,
 * docs/CLUSTER.md "Rollback, epoch and the journal").
 *
 * What it owns: the node's journal of its own confirmed batches
 * (cluster_journal.c), the epoch it last saw, and the three checks:
 * - the epoch (PREFIX"epoch", set NX each time the command link comes up):
 *   another value than the one the node knew means Redis lost its data
 *   (restarted without persistence, flushed): every room the node holds is
 *   forgotten with its subscribers told, and loaded again when used;
 * - an append answered with a head behind the room's confirmed head, or at
 *   the same ID with another hash (a fork): Redis rolled back (a failover
 *   promoted a replica that missed writes). The journal's batches past
 *   that head are sent again verbatim (same seqs, checksums, hashes as
 *   their acks), waiting a while for other nodes' lost entries that come
 *   first (cluster_journal.c) and, once all of ours are back, holding the
 *   room until the others restored theirs (a new decision would take their
 *   place); if the room's head is then where it was, nothing changed for
 *   anyone; otherwise subscribers saw entries the log no
 *   longer has, so the room is forgotten with its subscribers told (they
 *   subscribe again with `since` and get what the log has now);
 * - a reload of a room that brings a head behind what local subscribers
 *   were sent: the same resync, for nodes that only read the room.
 *
 * Invariants: while a replay runs the room is busy (CN_LOADING), so its
 * requests queue; the room is touched in the engine only through
 * drop_room in cn_drain (cluster_room.h's threading rule).
 */
#include "movexd/alloc.h"
#include "movexd/cluster.h"
#include "movexd/cluster_journal.h"
#include "movexd/cluster_journal_file.h"
#include "movexd/cluster_room.h"
#include "movexd/digest.h"
#include "movexd/oplog.h"
#include "movexd/room.h"
#include "movexd/engine.h"
#include "movexd/log.h"
#include "movexd/redis_adapter.h"
#include "movexd/metrics.h"

#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The journal's bounds: enough for the batches of the last seconds of a
 * busy node, which is what a failover can lose. On disk: segments of an
 * eighth of that, at most twice that in all (cluster_journal_file.c). */
#define JOURNAL_BATCHES 65536
#define JOURNAL_BYTES (64u << 20)
#define JOURNAL_SEGMENT (JOURNAL_BYTES / 8)

/* A replay of one room's journal, then maybe a hold (see on_replayed). */
struct replay {
    struct mx_cnode *n;
    struct cn_room *cr;
    struct mx_cluster_head before; /* the confirmed head when the rollback showed */
    size_t restored, lost;
    lws_usec_t deadline;           /* holding: other nodes' restores awaited until then */
    lws_sorted_usec_list_t sul;
};

int cn_rb_init(struct mx_cnode *n)
{
    n->journal = mx_journal_new(JOURNAL_BATCHES, JOURNAL_BYTES);
    if (!n->journal)
        return -1;
    /* a replay waits for other nodes' lost entries as long as a command may
     * take: they find the rollback on their next append */
    mx_journal_set_patience(n->journal, n->ctx, n->cfg->cluster.command_timeout_ms);
    /* what a previous run of this node confirmed: its epoch too, so a Redis
     * that lost its data meanwhile is told apart from one that did not */
    char dir[1100], err[1400];
    mx_config_journal_dir(n->cfg, dir, sizeof dir);
    if (mx_jfile_open(dir, JOURNAL_SEGMENT, 2 * (size_t)JOURNAL_BYTES, n->journal, n->epoch, sizeof n->epoch,
                      &n->jfile, err, sizeof err)) {
        mx_err("event=start_failed reason=\"cluster journal\" error=\"%s\"", err);
        return -1;
    }
    struct mx_journal_stats js;
    mx_journal_stats(n->journal, &js);
    mx_info("event=cluster_journal dir=%s batches=%llu bytes=%llu epoch=%s", dir,
            (unsigned long long)js.batches, (unsigned long long)js.bytes, n->epoch[0] ? n->epoch : "-");
    return 0;
}

void cn_rb_free(struct mx_cnode *n)
{
    mx_jfile_close(n->jfile); /* first: freeing the journal writes nothing */
    n->jfile = NULL;
    mx_journal_free(n->journal);
    n->journal = NULL;
    /* rooms holding after a replay: their poll timer goes with them */
    size_t it = 0, len;
    const char *key;
    void *val;
    while (n->rooms && mx_map_next(n->rooms, &it, &key, &len, &val)) {
        struct cn_room *cr = val;
        if (cr->rb_hold) {
            struct replay *p = cr->rb_hold;
            lws_sul_schedule(n->ctx, 0, &p->sul, NULL, LWS_SET_TIMER_USEC_CANCEL);
            cr->rb_hold = NULL;
            free(p);
        }
    }
}

/* The room's subscribers were sent what the log no longer has: forget the
 * room in the engine (they are told, and subscribe again), load it afresh
 * when it is next used. */
static void resync_room(struct mx_cnode *n, struct cn_room *cr)
{
    if (mx_engine_room(n->e, cr->id, cr->idlen)) {
        cr->drop_room = 1;
        cr->drop_tell = 1;
    }
    cr->known = 0;
    cr->fwd_seq = 0;
    memset(&cr->head, 0, sizeof cr->head);
    n->st.resyncs++;
    cn_due(n, cr);
}

int cn_rb_resync(struct mx_cnode *n, struct cn_room *cr)
{
    mx_warn("event=cluster_resync room=%s sent_to_subscribers=%llu note=\"what they miss is no longer "
            "in the log or history: subscribers resync\"",
            cr->id, (unsigned long long)cr->fwd_seq);
    cr->busy = CN_IDLE; /* the load that found it is over (on_range_full leaves busy to us) */
    resync_room(n, cr);
    return 1;
}

static void on_epoch(int ok, const char *epoch, void *priv)
{
    struct mx_cnode *n = priv;
    if (!ok || n->closing)
        return; /* the link went: the next link-up asks again */
    if (n->epoch[0] && strcmp(n->epoch, epoch) != 0) {
        mx_warn("event=cluster_epoch_changed old=%s new=%s note=\"Redis lost its data: every room "
                "is reloaded and its subscribers resync\"",
                n->epoch, epoch);
        n->st.epoch_changes++;
        /* every room's batches, loaded here or not: they were for the data
         * Redis lost, and must never be replayed into rooms made anew */
        mx_journal_forget(n->journal, NULL, UINT64_MAX, 0);
        size_t it = 0, len;
        const char *key;
        void *val;
        while (mx_map_next(n->rooms, &it, &key, &len, &val)) {
            struct cn_room *cr = val;
            if (cr->busy == CN_IDLE)
                resync_room(n, cr);
            else
                cr->epoch_stale = 1; /* after its call: see cn_rb_settled */
        }
    }
    snprintf(n->epoch, sizeof n->epoch, "%s", epoch);
    if (n->jfile)
        mx_jfile_epoch(n->jfile, n->epoch);
}

void cn_rb_link_up(struct mx_cnode *n, struct mx_redis *r)
{
    unsigned char raw[16];
    char cand[33];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(cand, sizeof cand, raw, sizeof raw);
    mx_cluster_epoch(r, n->cfg->cluster.key_prefix, cand, on_epoch, n);
}

int cn_rb_settled(struct mx_cnode *n, struct cn_room *cr)
{
    if (!cr->epoch_stale)
        return 0;
    cr->epoch_stale = 0;
    resync_room(n, cr);
    return 1;
}

void cn_rb_confirmed(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *expected,
                     const struct mx_cluster_head *after)
{
    struct mx_cluster_action *a = mx_calloc(cr->ninflight ? cr->ninflight : 1, sizeof *a);
    size_t k = a ? cn_batch_actions(cr->inflight, cr->ninflight, a) : 0;
    if (k && mx_journal_add(n->journal, cr->id, expected, after, n->cfg->dedup_window, cr->sent_ms, a, k))
        n->st.journal_failures++; /* out of memory: this batch cannot be restored */
    free(a);
}

static void replayed_end(struct replay *p, int ok, const struct mx_cluster_head *head);
static void poll_head(struct replay *p);

static void on_poll_timer(lws_sorted_usec_list_t *sul)
{
    struct replay *p = lws_container_of(sul, struct replay, sul);
    p->cr->rb_hold = NULL;
    poll_head(p);
}

/* HMGET of the room's head while holding: at or past `before` (the other
 * nodes restored theirs) or past the deadline ends the hold. */
static void on_polled(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct replay *p = priv;
    struct mx_cluster_head h = p->before;
    int ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
             rep->element[0]->type == REDIS_REPLY_STRING && rep->element[1]->type == REDIS_REPLY_STRING &&
             rep->element[2]->type == REDIS_REPLY_STRING && rep->element[2]->len < sizeof h.hash;
    if (ok) {
        h.seq = strtoull(rep->element[0]->str, NULL, 10);
        h.sub = strtoull(rep->element[1]->str, NULL, 10);
        memcpy(h.hash, rep->element[2]->str, rep->element[2]->len + 1);
    }
    if (ok && !p->n->closing && mx_cluster_id_cmp(&h, &p->before) < 0 && lws_now_usecs() < p->deadline) {
        p->cr->rb_hold = p;
        lws_sul_schedule(p->n->ctx, 0, &p->sul, on_poll_timer, 50 * 1000);
        return;
    }
    replayed_end(p, ok, &h);
}

static void poll_head(struct replay *p)
{
    char key[300];
    snprintf(key, sizeof key, "%s{%s}:head", p->n->cfg->cluster.key_prefix, p->cr->id);
    const char *argv[] = { "HMGET", key, "seq", "sub", "hash" };
    size_t lens[] = { 5, strlen(key), 3, 3, 4 };
    mx_redis_command(p->n->cmd, 5, argv, lens, on_polled, p);
}

static void on_replayed(int ok, size_t restored, size_t lost, const struct mx_cluster_head *head,
                        void *priv)
{
    struct replay *p = priv;
    p->n->st.restored_batches += restored;
    p->n->st.lost_batches += lost;
    p->restored = restored;
    p->lost = lost;
    /* all of ours is back but the head is still behind where it was: other
     * nodes' entries follow ours - hold the room (no new decision takes
     * their place) until they restored them, as long as a command may take */
    if (ok && lost == 0 && !p->n->closing && mx_cluster_id_cmp(head, &p->before) < 0) {
        p->deadline = lws_now_usecs() + (lws_usec_t)p->n->cfg->cluster.command_timeout_ms * 1000;
        poll_head(p);
        return;
    }
    replayed_end(p, ok, head);
}

static void replayed_end(struct replay *p, int ok, const struct mx_cluster_head *head)
{
    struct mx_cnode *n = p->n;
    struct cn_room *cr = p->cr;
    size_t restored = p->restored, lost = p->lost;
    cr->busy = CN_IDLE;
    /* back at (or, other nodes restoring theirs, past) the head the node
     * had: reload quietly - the reload compares the checksum at the seq
     * subscribers are at (cn_rb_check_reload), so a fork is still caught */
    int cmp = mx_cluster_id_cmp(head, &p->before);
    int whole = ok && (cmp > 0 || (cmp == 0 && strcmp(head->hash, p->before.hash) == 0));
    mx_warn("event=cluster_rollback_replayed room=%s restored=%zu lost=%zu head=%llu-%llu "
            "was=%llu-%llu result=%s",
            cr->id, restored, lost, (unsigned long long)head->seq, (unsigned long long)head->sub,
            (unsigned long long)p->before.seq, (unsigned long long)p->before.sub,
            !ok ? "call_failed" : whole ? "log_restored" : "subscribers_resync");
    free(p);
    if (n->closing)
        return;
    if (whole) {
        cr->known = 0; /* the same log as before: reload quietly */
        cn_due(n, cr);
    } else {
        resync_room(n, cr);
    }
}

/* Send the journal's batches of the room past `from` again; the room is
 * busy until on_replayed. */
static void start_replay(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *from)
{
    struct replay *p = mx_calloc(1, sizeof *p);
    if (!p) {
        resync_room(n, cr);
        return;
    }
    p->n = n;
    p->cr = cr;
    p->before = cr->head;
    cr->busy = CN_LOADING; /* the room's requests queue until the replay is done */
    cr->known = 0;
    const struct mx_cluster_config *cc = &n->cfg->cluster;
    if (mx_journal_replay(n->journal, n->cmd, cc->key_prefix, cr->id, from, cc->wait_replicas,
                          cc->wait_timeout_ms, on_replayed, p)) {
        free(p);
        cr->busy = CN_IDLE;
        resync_room(n, cr);
    }
}

/* Every journal batch of the room, given up (counted lost): how many. */
static size_t give_up_journal(struct mx_cnode *n, const char *room)
{
    static const struct mx_cluster_head zero;
    size_t mine = mx_journal_lost(n->journal, room, &zero, NULL, 0);
    n->st.lost_batches += mine;
    mx_journal_forget(n->journal, room, UINT64_MAX, 0);
    return mine;
}

void cn_rb_gone(struct mx_cnode *n, struct cn_room *cr)
{
    size_t mine = give_up_journal(n, cr->id);
    if (mine)
        mx_warn("event=cluster_room_gone room=%s journal_batches_lost=%zu note=\"no such room in Redis: "
                "its batches cannot be appended again\"",
                cr->id, mine);
}

int cn_rb_check_inc(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *redis)
{
    if (!strcmp(redis->inc, cr->head.inc))
        return 0;
    size_t mine = give_up_journal(n, cr->id);
    mx_warn("event=cluster_incarnation_changed room=%s was=%s now=%s journal_batches_lost=%zu "
            "note=\"the room was deleted and created again: its subscribers resync\"",
            cr->id, cr->head.inc[0] ? cr->head.inc : "-", redis->inc[0] ? redis->inc : "-", mine);
    cr->busy = CN_IDLE;
    resync_room(n, cr);
    return 1;
}

int cn_rb_check_append(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *redis)
{
    if (cn_rb_check_inc(n, cr, redis))
        return 1; /* not a rollback: another room under the same name */
    int cmp = mx_cluster_id_cmp(redis, &cr->head);
    if (cmp > 0 || (cmp == 0 && strcmp(redis->hash, cr->head.hash) == 0))
        return 0; /* Redis is at or ahead of what the node confirmed: no rollback */
    n->st.rollbacks++;
    mx_warn("event=cluster_rollback room=%s redis_head=%llu-%llu confirmed=%llu-%llu%s", cr->id,
            (unsigned long long)redis->seq, (unsigned long long)redis->sub,
            (unsigned long long)cr->head.seq, (unsigned long long)cr->head.sub,
            cmp == 0 ? " note=\"same ID, another hash: a fork\"" : "");
    /* a fork at the same ID: everything of ours past the previous ID */
    struct mx_cluster_head from = *redis;
    if (cmp == 0 && from.sub > 0)
        from.sub--;
    else if (cmp == 0 && from.seq > 0)
        from.seq--, from.sub = UINT64_MAX;
    start_replay(n, cr, &from);
    return 1;
}

/* The checksum of room r's state at seq (after that entry), or NULL when
 * r's history no longer has it. */
static const uint8_t *sum_at(const struct mx_room *r, uint64_t seq)
{
    if (seq == r->seq)
        return r->checksum;
    const struct mx_oplog_entry *e = seq < r->seq ? mx_oplog_get(r->log, seq + 1) : NULL;
    return e ? e->prev : NULL;
}

int cn_rb_check_reload(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *h,
                       const struct mx_room *have, const struct mx_room *loaded)
{
    /* subscribers are at fwd_seq with the engine's room's checksum there */
    const uint8_t *seen = sum_at(have, cr->fwd_seq), *now = sum_at(loaded, cr->fwd_seq);
    int behind = h->seq < cr->fwd_seq;
    int forked = !behind && seen && now && memcmp(seen, now, MX_DIGEST_LEN) != 0;
    if (!behind && !forked)
        return 0;
    n->st.rollbacks++;
    size_t mine = mx_journal_lost(n->journal, cr->id, h, NULL, 0);
    mx_warn("event=cluster_rollback room=%s redis_head=%llu-%llu sent_to_subscribers=%llu "
            "journal_batches_past_it=%zu note=\"%s\"",
            cr->id, (unsigned long long)h->seq, (unsigned long long)h->sub,
            (unsigned long long)cr->fwd_seq, mine,
            behind ? "the log is behind what subscribers saw" : "another history at the seq subscribers are at");
    cr->busy = CN_IDLE;
    /* batches of this node among what was lost: the journal first (a node
     * can see the rollback here before its own next append does) */
    if (mine)
        start_replay(n, cr, h);
    else
        resync_room(n, cr);
    return 1;
}

int cn_rb_check_load(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *h,
                     const struct mx_journal_batch *forked)
{
    const struct mx_journal_batch *newest = mx_journal_newest(n->journal, cr->id);
    if (!newest)
        return 0;
    cr->head = newest->after; /* what this node had confirmed: the replay's goal */
    if (cn_rb_check_inc(n, cr, h))
        return 1; /* the room was created again: its batches are lost, not replayed */
    if (!forked)
        return cn_rb_check_append(n, cr, h); /* behind it, or another hash at its ID */
    n->st.rollbacks++;
    mx_warn("event=cluster_rollback room=%s redis_head=%llu-%llu confirmed=%llu-%llu note=\"the log has "
            "another hash at %llu-%llu, a batch of this node's journal\"",
            cr->id, (unsigned long long)h->seq, (unsigned long long)h->sub,
            (unsigned long long)newest->after.seq, (unsigned long long)newest->after.sub,
            (unsigned long long)forked->after.seq, (unsigned long long)forked->after.sub);
    struct mx_cluster_head from = forked->expected;
    start_replay(n, cr, &from);
    return 1;
}

/* The link-up check of one journal room (see cn_rb_check_journal). */
struct jcheck {
    struct mx_cnode *n;
    char room[];
};

static void on_jcheck(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct jcheck *c = priv;
    struct mx_cnode *n = c->n;
    (void)rd;
    const struct mx_journal_batch *newest = n->closing ? NULL : mx_journal_newest(n->journal, c->room);
    size_t len = strlen(c->room);
    int ok = newest && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 4;
    /* a room loaded meanwhile is checked by its load */
    if (!ok || mx_map_get(n->rooms, c->room, len)) {
        free(c);
        return;
    }
    if (rep->element[0]->type != REDIS_REPLY_STRING) {
        /* the room is gone from Redis (deleted, or its creation lost too):
         * its batches cannot be appended without it */
        size_t lost = give_up_journal(n, c->room);
        mx_warn("event=cluster_journal_room_gone room=%s lost=%zu note=\"the room has no head in Redis: "
                "this node's acked batches of it cannot come back\"",
                c->room, lost);
        free(c);
        return;
    }
    struct mx_cluster_head h = { 0 };
    h.seq = strtoull(rep->element[0]->str, NULL, 10);
    h.sub = rep->element[1]->type == REDIS_REPLY_STRING ? strtoull(rep->element[1]->str, NULL, 10) : 0;
    if (rep->element[2]->type == REDIS_REPLY_STRING && rep->element[2]->len < sizeof h.hash)
        memcpy(h.hash, rep->element[2]->str, rep->element[2]->len + 1);
    if (rep->element[3]->type == REDIS_REPLY_STRING && rep->element[3]->len < sizeof h.inc)
        memcpy(h.inc, rep->element[3]->str, rep->element[3]->len + 1);
    if (strcmp(h.inc, newest->after.inc)) {
        /* deleted and created again: nothing of the old room goes into it */
        const char *was = newest->after.inc[0] ? newest->after.inc : "-"; /* newest goes with the journal */
        char wasbuf[MX_CLUSTER_INC_MAX + 1];
        snprintf(wasbuf, sizeof wasbuf, "%s", was);
        size_t lost = give_up_journal(n, c->room);
        mx_warn("event=cluster_incarnation_changed room=%s was=%s now=%s journal_batches_lost=%zu", c->room,
                wasbuf, h.inc[0] ? h.inc : "-", lost);
        free(c);
        return;
    }
    int cmp = mx_cluster_id_cmp(&h, &newest->after);
    if (cmp > 0 || (cmp == 0 && !strcmp(h.hash, newest->after.hash))) {
        free(c); /* at or past it: a fork further back shows when the room is loaded */
        return;
    }
    struct cn_room *cr = cn_room_get(n, c->room, len, 1);
    free(c);
    if (!cr)
        return;
    cr->head = newest->after;
    if (!cn_rb_check_append(n, cr, &h))
        cn_due(n, cr); /* cannot happen (checked above); the drain lets the room go */
}

void cn_rb_check_journal(struct mx_cnode *n)
{
    size_t it = 0, k = 0, cap = 0;
    const char *room;
    const struct mx_journal_batch *newest;
    struct jcheck **v = NULL;
    /* collected first: a command failing at once runs its callback now */
    while (mx_journal_next_room(n->journal, &it, &room, &newest)) {
        if (mx_map_get(n->rooms, room, strlen(room)))
            continue; /* in memory: its next append or reload compares */
        if (k == cap) {
            cap = cap ? cap * 2 : 64;
            struct jcheck **nv = mx_realloc(v, cap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
        }
        size_t len = strlen(room);
        if (!(v[k] = mx_malloc(sizeof **v + len + 1)))
            break;
        v[k]->n = n;
        memcpy(v[k]->room, room, len + 1);
        k++;
    }
    for (size_t i = 0; i < k; i++) {
        char key[1100];
        snprintf(key, sizeof key, "%s{%s}:head", n->cfg->cluster.key_prefix, v[i]->room);
        const char *argv[] = { "HMGET", key, "seq", "sub", "hash", "inc" };
        size_t lens[] = { 5, strlen(key), 3, 3, 4, 3 };
        mx_redis_command(n->cmd, 6, argv, lens, on_jcheck, v[i]);
    }
    if (k)
        mx_info("event=cluster_journal_check rooms=%zu", k);
    free(v);
}

void cn_rb_metrics(const struct mx_cnode *n, mx_buf *b)
{
    const struct mx_cnode_stats *s = &n->st;
    struct mx_journal_stats js = { 0 };
    if (n->journal)
        mx_journal_stats(n->journal, &js);
    mx_metrics_counter(b, "movexd_cluster_rollbacks_total",
                       "times Redis's head of a room was found behind what this node had confirmed or sent", s->rollbacks);
    mx_metrics_counter(b, "movexd_cluster_epoch_changes_total", "times Redis's epoch changed (its data was lost)",
                       s->epoch_changes);
    mx_metrics_counter(b, "movexd_cluster_journal_restored_total",
                       "batches sent again after a rollback and appended with their original seqs", s->restored_batches);
    mx_metrics_counter(b, "movexd_cluster_journal_lost_total",
                       "batches that could not be restored after a rollback (the log went another way, or the room "
                       "was created again: another incarnation)",
                       s->lost_batches + js.superseded);
    mx_metrics_counter(b, "movexd_cluster_resyncs_total", "rooms whose subscribers were told to resync", s->resyncs);
    mx_metrics_gauge(b, "movexd_cluster_journal_batches", "batches in the journal", js.batches);
    mx_metrics_gauge(b, "movexd_cluster_journal_bytes", "bytes of the journal", js.bytes);
    struct mx_jfile_stats fs = { 0 };
    if (n->jfile)
        mx_jfile_stats(n->jfile, &fs);
    mx_metrics_gauge(b, "movexd_cluster_journal_disk_bytes", "bytes of the journal's segments on disk", fs.bytes);
    mx_metrics_gauge(b, "movexd_cluster_journal_segments", "the journal's segment files", fs.segments);
    mx_metrics_counter(b, "movexd_cluster_journal_write_failures_total",
                       "journal records that could not be written to disk", fs.write_failures);
}
