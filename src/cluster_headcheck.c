/* cluster_headcheck.c - the periodic head check of cluster mode (issue #14,
 * docs/CLUSTER.md "The head check"): a node that only reads a room (its
 * clients subscribe, none writes) learns of entries through the channel and
 * of everything else - a rollback that lost the tail it forwarded, a room
 * deleted or created again while its subscriber link was down - only when
 * it next writes or reloads. So once a tick (about a second) it reads
 * Redis's head of the rooms its local subscribers are in (and of the rooms
 * in memory it wrote itself, with batches in its journal: nobody may write
 * there again soon, and rooms not in memory are checked at each link-up,
 * cluster_rollback.c) and compares it
 * with its confirmed head: the same ID, hash and incarnation - nothing to
 * do; ahead - a catch-up (a published entry was missed); anything else
 * (behind, a fork at the same ID, another incarnation, no head at all) -
 * the room is reloaded, and the reload's checks (cluster_replica.c,
 * cluster_rollback.c) do what a writing node's refused append would:
 * replay this node's journal, resync the subscribers, or drop the room.
 *
 * What it owns: the check's round-robin position and the rooms' check in
 * flight (cr->hc_inflight, cr->hc_head: the confirmed head when it was
 * sent).
 *
 * Invariants:
 * - bounded cost: at most HC_PER_TICK head reads per tick, pipelined on
 *   the command link (one HMGET each, no reply waited for before the
 *   next), over the eligible rooms in turn - so a rollback is noticed
 *   within ceil(rooms with local subscribers / HC_PER_TICK) ticks;
 * - only a settled room is checked (known, idle, nothing forming, queued
 *   or pending), and an answer counts only if the room is still settled at
 *   the same confirmed head: a head read that crossed an entry applied
 *   from the channel (two links) is not mistaken for a rollback;
 * - a room with a check in flight keeps its bookkeeping (eviction and
 *   drain wait for the answer).
 */
#include "movexd/cluster_room.h"
#include "movexd/cluster_journal.h"
#include "movexd/engine.h"
#include "movexd/log.h"
#include "movexd/metrics.h"
#include "movexd/redis_adapter.h"
#include "movexd/room.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Head reads per tick: 256 small HMGETs a second cost Redis about as much
 * as one busy room's appends, and cover 256 rooms a second. */
#define HC_PER_TICK 256

static int settled(const struct mx_cnode *n, const struct cn_room *cr)
{
    return cr->known && !cr->busy && !cr->nforming && !cr->nq && !cr->ninflight && !cr->rb_hold &&
           !cr->create_due && !cr->drop_room && !cr->epoch_stale && !cn_del_pending(cr) && !n->closing;
}

/* A room without subscribers that eviction takes this tick: not checked
 * (a check in flight would hold it back, tick after tick); once evicted,
 * the link-up and load checks of its journal batches cover it. The
 * engine's clock for last_active_ms. */
static int evicting(const struct mx_cnode *n, const struct mx_room *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    return n->cfg->evict_idle_ms > 0 && now - r->last_active_ms >= (uint64_t)n->cfg->evict_idle_ms;
}

static int same_head(const struct mx_cluster_head *a, const struct mx_cluster_head *b)
{
    return !mx_cluster_id_cmp(a, b) && !strcmp(a->hash, b->hash) && !strcmp(a->inc, b->inc);
}

static void on_checked(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct cn_room *cr = priv;
    struct mx_cnode *n = cr->node;
    (void)rd;
    cr->hc_inflight = 0;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 || !settled(n, cr) ||
        !same_head(&cr->head, &cr->hc_head)) {
        cn_due(n, cr); /* the link went, or the room moved meanwhile: the next tick looks again
                        * (and drain may let go of a room the check held) */
        return;
    }
    struct mx_cluster_head h;
    memset(&h, 0, sizeof h);
    redisReply **e = rep->element;
    int gone = e[0]->type != REDIS_REPLY_STRING;
    int ok = gone || (e[1]->type == REDIS_REPLY_STRING && e[2]->type == REDIS_REPLY_STRING &&
                      !mx_cluster_parse_u64(e[0]->str, e[0]->len, &h.seq) &&
                      !mx_cluster_parse_u64(e[1]->str, e[1]->len, &h.sub) && e[2]->len < sizeof h.hash &&
                      (e[3]->type != REDIS_REPLY_STRING || e[3]->len < sizeof h.inc));
    if (!ok)
        return; /* not a head: the load would refuse it too; looked at again next tick */
    if (!gone) {
        memcpy(h.hash, e[2]->str, e[2]->len + 1);
        if (e[3]->type == REDIS_REPLY_STRING)
            memcpy(h.inc, e[3]->str, e[3]->len + 1);
    }
    int cmp = gone ? -1 : mx_cluster_id_cmp(&h, &cr->head);
    if (!gone && !strcmp(h.inc, cr->head.inc) &&
        (cmp > 0 || (cmp == 0 && !strcmp(h.hash, cr->head.hash)))) {
        if (cmp > 0)
            cn_replica_catch_up(n, cr); /* a published entry went missing */
        return;
    }
    n->st.head_mismatches++;
    mx_warn("event=cluster_head_check room=%s redis_head=%s%llu-%llu confirmed=%llu-%llu note=\"%s: reloading\"",
            cr->id, gone ? "none:" : "", (unsigned long long)h.seq, (unsigned long long)h.sub,
            (unsigned long long)cr->head.seq, (unsigned long long)cr->head.sub,
            gone                            ? "the room is gone from Redis"
            : strcmp(h.inc, cr->head.inc) ? "another incarnation"
            : cmp < 0                       ? "Redis is behind this node"
                                            : "another hash at the same ID");
    cn_replica_load(n, cr);
    cn_due(n, cr);
}

static void check(struct mx_cnode *n, struct cn_room *cr)
{
    char key[300];
    snprintf(key, sizeof key, "%s{%s}:head", n->cfg->cluster.key_prefix, cr->id);
    const char *argv[] = { "HMGET", key, "seq", "sub", "hash", "inc" };
    size_t lens[] = { 5, strlen(key), 3, 3, 4, 3 };
    cr->hc_inflight = 1;
    cr->hc_head = cr->head;
    n->st.head_checks++;
    mx_redis_command(n->cmd, 6, argv, lens, on_checked, cr);
}

void cn_hc_tick(struct mx_cnode *n)
{
    if (!mx_cnode_ready(n))
        return;
    /* the eligible rooms in map order; this tick checks [hc_next,
     * hc_next + HC_PER_TICK) of them, the next tick the following ones */
    size_t it = 0, len, k = 0, sent = 0;
    const char *key;
    void *val;
    while (mx_map_next(n->rooms, &it, &key, &len, &val) && sent < HC_PER_TICK) {
        struct cn_room *cr = val;
        if (cr->hc_inflight || !settled(n, cr))
            continue;
        /* rooms with local subscribers, and rooms this node wrote (its
         * journal has batches of them: a lost tail is theirs to restore) */
        const struct mx_room *r = mx_engine_room(n->e, cr->id, cr->idlen);
        if (!r || (!r->nsubs && (!mx_journal_newest(n->journal, cr->id) || evicting(n, r))))
            continue;
        if (k++ < n->hc_next)
            continue;
        check(n, cr);
        sent++;
    }
    n->hc_next = sent < HC_PER_TICK ? 0 : n->hc_next + sent; /* a short turn: the next one starts over */
}

void cn_hc_metrics(const struct mx_cnode *n, mx_buf *b)
{
    mx_metrics_counter(b, "movexd_cluster_head_checks_total",
                       "head reads of rooms with local subscribers (the periodic head check)", n->st.head_checks);
    mx_metrics_counter(b, "movexd_cluster_head_check_mismatches_total",
                       "head checks that found Redis behind this node, forked, of another incarnation or without "
                       "the room: the room was reloaded",
                       n->st.head_mismatches);
}
