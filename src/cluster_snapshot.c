/* cluster_snapshot.c - a room's snapshot in Redis (issue #14,
 * docs/CLUSTER.md "Snapshots in Redis and trimming"): taking one and
 * reading one back for a load.
 *
 * Taking: when a room is settled (known, idle, no batch forming: the
 * replica is exactly the confirmed head) and its head has passed a
 * multiple of the room type's history (at least MIN_EVERY) since the last
 * snapshot this node knows of, the replica is encoded as a single-node
 * snapshot is (src/snapshot.c: state, the last `history` entries, the
 * exactly-once memory) and sent with FCALL movexd_snapshot naming its ID
 * and chain hash. The library stores it only if it is newer than the
 * stored one and matches the stream at that ID, then trims the stream:
 * nodes need no agreement about who snapshots. At most one call per room
 * is in flight (cr->snapping).
 *
 * Reading: HMGET P{R}:snap for a load; a snapshot that decodes becomes the
 * room the load starts from (cr->loaded at cr->loaded_head), and the load
 * reads the stream after its ID. A snapshot that does not decode is
 * ignored with a warning (the load then replays the whole stream, which
 * fails loudly if it was trimmed).
 */
#include "movexd/alloc.h"
#include "movexd/cluster_room.h"
#include "movexd/engine.h"
#include "movexd/log.h"
#include "movexd/metrics.h"
#include "movexd/redis_adapter.h"
#include "movexd/room.h"
#include "movexd/snapshot.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIN_EVERY 64 /* a small history must not mean a snapshot per action */

static uint64_t every_of(const struct mx_room *r)
{
    return r->type.history > MIN_EVERY ? r->type.history : MIN_EVERY;
}

static void on_stored(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct cn_room *cr = priv;
    struct mx_cnode *n = cr->node;
    cr->snapping = 0;
    uint64_t seq;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING ||
        mx_cluster_parse_u64(rep->element[1]->str, rep->element[1]->len, &seq)) {
        n->st.snapshots_failed++; /* tried again at the next settle */
        if (rep && rep->type == REDIS_REPLY_ERROR)
            mx_warn("event=cluster_snapshot_failed room=%s error=\"%s\"", cr->id, rep->str);
        return;
    }
    if (seq > cr->snap_seq)
        cr->snap_seq = seq; /* ours, or a newer one another node stored */
    if (!strcmp(rep->element[0]->str, "stored")) {
        n->st.snapshots_stored++;
        mx_debug("event=cluster_snapshot room=%s seq=%" PRIu64 " trimmed=%lld", cr->id, seq,
                 rep->element[3]->type == REDIS_REPLY_INTEGER ? rep->element[3]->integer : 0);
    } else {
        n->st.snapshots_refused++; /* stale, mismatch or gone: the function decided */
        mx_debug("event=cluster_snapshot_refused room=%s answer=%s", cr->id, rep->element[0]->str);
    }
}

void cn_snap_maybe(struct mx_cnode *n, struct cn_room *cr)
{
    if (cr->snapping || cr->busy || !cr->known || cr->nforming || !mx_redis_is_up(n->cmd))
        return;
    struct mx_room *r = mx_engine_room(n->e, cr->id, cr->idlen);
    if (!r || r->seq != cr->head.seq || cr->head.seq / every_of(r) <= cr->snap_seq / every_of(r))
        return;
    mx_buf data;
    mx_buf_init(&data, 0);
    if (mx_snapshot_encode(r, 0, &data) || data.oom) {
        mx_buf_free(&data);
        n->st.snapshots_failed++;
        return;
    }
    const char *p = n->cfg->cluster.key_prefix;
    char keys[3][300], seq[24], sub[24], keep[24], now[24];
    snprintf(keys[0], sizeof keys[0], "%s{%s}:head", p, cr->id);
    snprintf(keys[1], sizeof keys[1], "%s{%s}:log", p, cr->id);
    snprintf(keys[2], sizeof keys[2], "%s{%s}:snap", p, cr->id);
    snprintf(seq, sizeof seq, "%" PRIu64, cr->head.seq);
    snprintf(sub, sizeof sub, "%" PRIu64, cr->head.sub);
    snprintf(keep, sizeof keep, "%zu", r->type.history);
    snprintf(now, sizeof now, "%" PRIu64, (uint64_t)time(NULL) * 1000);
    const char *argv[] = { "FCALL", "movexd_snapshot", "3", keys[0], keys[1], keys[2], seq, sub,
                           cr->head.hash, cr->head.sum, keep, mx_buf_data(&data), now };
    size_t lens[13];
    for (int i = 0; i < 13; i++)
        lens[i] = strlen(argv[i]);
    lens[11] = data.len; /* binary */
    cr->snapping = 1;
    mx_redis_command(n->cmd, 13, argv, lens, on_stored, cr);
    mx_buf_free(&data);
}

/* ---- reading one for a load ---- */

struct snap_read {
    struct cn_room *cr;
    cn_snap_read_fn done;
};

static void on_read(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct snap_read sr = *(struct snap_read *)priv;
    free(priv);
    struct cn_room *cr = sr.cr;
    struct mx_cnode *n = cr->node;
    mx_room_free(cr->loaded);
    cr->loaded = NULL;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 5) {
        sr.done(n, cr, !rep ? "link down" : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        return;
    }
    redisReply **e = rep->element;
    if (e[0]->type != REDIS_REPLY_STRING) {
        sr.done(n, cr, NULL); /* no snapshot: from the initial state */
        return;
    }
    struct mx_cluster_head h;
    memset(&h, 0, sizeof h);
    char err[200];
    uint64_t lsn;
    struct mx_room *r = NULL;
    int ok = e[1]->type == REDIS_REPLY_STRING && e[2]->type == REDIS_REPLY_STRING &&
             e[3]->type == REDIS_REPLY_STRING && e[4]->type == REDIS_REPLY_STRING &&
             !mx_cluster_parse_u64(e[0]->str, e[0]->len, &h.seq) &&
             !mx_cluster_parse_u64(e[1]->str, e[1]->len, &h.sub) &&
             e[2]->len == 40 && e[3]->len <= MX_CLUSTER_SUM_MAX;
    if (ok && mx_snapshot_decode(e[4]->str, e[4]->len, n->cfg, &r, &lsn, err, sizeof err) == 0 &&
        r->seq == h.seq && r->idlen == cr->idlen && !memcmp(r->id, cr->id, cr->idlen)) {
        memcpy(h.hash, e[2]->str, 41);
        memcpy(h.sum, e[3]->str, e[3]->len + 1);
        cr->loaded = r;
        cr->loaded_head = h;
        n->st.snapshot_loads++;
    } else {
        mx_room_free(r);
        mx_warn("event=cluster_snapshot_unusable room=%s note=\"loading from the whole stream\"", cr->id);
    }
    sr.done(n, cr, NULL);
}

void cn_snap_read(struct mx_cnode *n, struct cn_room *cr, cn_snap_read_fn done)
{
    struct snap_read *sr = mx_malloc(sizeof *sr);
    if (!sr) {
        done(n, cr, "out of memory");
        return;
    }
    sr->cr = cr;
    sr->done = done;
    char key[300];
    snprintf(key, sizeof key, "%s{%s}:snap", n->cfg->cluster.key_prefix, cr->id);
    const char *argv[] = { "HMGET", key, "seq", "sub", "hash", "sum", "data" };
    size_t lens[] = { 5, strlen(key), 3, 3, 4, 3, 4 };
    mx_redis_command(n->cmd, 7, argv, lens, on_read, sr);
}

void cn_snap_metrics(const struct mx_cnode *n, mx_buf *b)
{
    const struct mx_cnode_stats *s = &n->st;
    mx_metrics_counter(b, "movexd_cluster_snapshots_total", "room snapshots this node stored in Redis",
                       s->snapshots_stored);
    mx_metrics_counter(b, "movexd_cluster_snapshots_refused_total",
                       "snapshots the library refused (another node's was newer, or the stream moved on)",
                       s->snapshots_refused);
    mx_metrics_counter(b, "movexd_cluster_snapshot_loads_total", "room loads that started from a snapshot",
                       s->snapshot_loads);
}
