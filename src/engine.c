/* engine.c - request dispatch, the room registry and the outbox.
 *
 * Each inbound message is parsed (json_parse.c, else jansson), decoded into a typed request
 * (proto.c), checked against the connection's state, and carried out on a
 * room (room.c). Every reply and fwd is encoded once into a refcounted
 * frame and appended to the outbox; mx_engine_commit() flushes storage and
 * only then hands the frames to the connections, in order. A fwd frame is
 * shared by all its recipients.
 */
#include "movexd/engine.h"
#include "movexd/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "movexd/cluster_node.h"
#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/json_parse.h"
#include "movexd/log.h"
#include "movexd/map.h"
#include "movexd/metrics.h"
#include "movexd/presence.h"
#include "movexd/reducer.h"
#include "movexd/room.h"
#include "movexd/version.h"

struct outbox_entry {
    struct mx_conn *conn; /* NULL once the connection closed */
    mx_frame *frame;
    uint64_t ack_t_us; /* an ack: when its request arrived (ack latency); else 0 */
    int free;          /* depends on no unflushed decision (pong, error, unavailable) */
    struct mx_gate *gate; /* cluster mode: leaves when it passes, dropped when it fails */
    size_t next_own;      /* the next entry for the same conn, as index + 1 (0: none) */
};

struct mx_engine {
    const struct mx_config *cfg;
    const struct mx_request *cur; /* the request being handled (its room names log lines) */
    const struct mx_storage *st;
    mx_map *rooms;
    struct outbox_entry *out;
    size_t nout, capout;
    struct mx_engine_stats stats;
    int storage_error; /* a decision could not be logged: nothing may be released */
    size_t refused_bytes; /* the last reservation, refused (disk full); 0 once one succeeds */
    uint64_t cur_t_us;  /* when the message being handled arrived */
    uint64_t now_us;    /* a clock read while handling it (mx_now_us) */
    uint64_t wall_ms;   /* wall clock while handling it, 0 until read: ctx.time of app reducers */
    int unflushed;      /* records appended since the last flush (even with no reply) */
    uint64_t rejects_by_code[MX_ERR_COUNT];
    struct mx_jwt_keys keys;
    int evict_backlog; /* the last eviction batch was full: more idle rooms may wait */
    uint64_t last_conn_id; /* conn ids are never reused */
    char **pres_rooms;     /* ids of rooms whose presence table has changes to announce */
    size_t npres, cappres;
    /* cluster mode (cluster_node.h): the node, the gate of the request being
     * handled (its outbox entries are held behind it), and whether the
     * request is handled again only to be answered `unavailable` */
    struct mx_cnode *cl;
    struct mx_gate *gate;
    int unavailable;
    struct mx_engine_presence_hook ph; /* cluster presence; all NULL when single-node */
    int relinking; /* the outbox is being compacted: the conns' chains are stale */
    void (*released)(void *ctx); /* mx_engine_set_released */
    void *released_ctx;
};


mx_engine *mx_engine_new(const struct mx_config *cfg, const struct mx_storage *st, mx_map *rooms)
{
    /* jansson through the project's allocator: its failures are counted
     * (it reports them as syntax errors) and can be injected in tests */
    json_set_alloc_funcs(mx_json_malloc, mx_block_free);
    mx_engine *e = mx_calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->cfg = cfg;
    e->st = st;
    e->rooms = rooms ? rooms : mx_map_new();
    if (!e->rooms) {
        free(e);
        return NULL;
    }
    return e;
}

#define MX_EVICT_BATCH 256

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Now, for a room's last activity: while a request is handled, the clock
 * read for it (the same monotonic clock), else a fresh reading. */
static uint64_t active_ms(const mx_engine *e) { return e->cur ? e->now_us / 1000 : now_ms(); }

/* The wall clock for ctx.time, read once per message and only by what
 * needs it (app reducers, initial states): a clock read per action was
 * ~0.5% of W4's CPU. */
static uint64_t wall_ms(mx_engine *e)
{
    if (!e->cur || !e->wall_ms) { /* kept only while a request is handled */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        e->wall_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    }
    return e->wall_ms;
}

/* A room in memory, or brought back from storage. NULL when it does not
 * exist (*err = MX_ENO_SUCH_ROOM) or cannot be loaded (*err set). */
static struct mx_room *find_room(mx_engine *e, const char *id, size_t len, int *err)
{
    struct mx_room *r = mx_map_get(e->rooms, id, len);
    if (!r) {
        int rc = e->st->load(e->st->ctx, id, len, &r);
        if (rc) {
            *err = rc;
            return NULL;
        }
        if (mx_map_put(e->rooms, r->id, r->idlen, r)) {
            mx_room_free(r);
            *err = MX_ENOMEM;
            return NULL;
        }
        mx_debug("event=room_loaded room=%s seq=%llu", r->id, (unsigned long long)r->seq);
    }
    r->last_active_ms = active_ms(e);
    return r;
}

static void free_room(void *r) { mx_room_free(r); }

/* A decision was made in memory but its record could not be appended. Its
 * reply must never go out (the outbox is held for good) and the daemon must
 * stop: recovery then brings the room back to its last logged decision and
 * the client resends. */
static void storage_broken(mx_engine *e, const char *op, const struct mx_room *r, int rc)
{
    mx_err("event=storage_error op=%s room=%s code=%s note=\"decision not logged; stopping\"", op,
           r->id, mx_err_code(rc));
    e->storage_error = rc;
}
static void conn_forget_room(struct mx_conn *c, const struct mx_room *r);

void mx_engine_free(mx_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->nout; i++) {
        mx_frame_unref(e->out[i].frame);
        mx_gate_unref(e->out[i].gate);
    }
    free(e->out);
    for (size_t i = 0; i < e->npres; i++)
        free(e->pres_rooms[i]);
    free(e->pres_rooms);
    mx_map_free(e->rooms, free_room);
    free(e);
}

const struct mx_config *mx_engine_config(const mx_engine *e) { return e->cfg; }

void mx_engine_set_keys(mx_engine *e, const struct mx_jwt_keys *keys) { e->keys = *keys; }

void mx_engine_metrics(const mx_engine *e, mx_buf *b)
{
    const struct mx_engine_stats *st = &e->stats;
    mx_metrics_gauge(b, "movexd_connections", "WebSocket connections open", (double)st->connections);
    mx_metrics_gauge(b, "movexd_rooms_loaded", "rooms in memory", (double)mx_map_len(e->rooms));
    mx_metrics_gauge(b, "movexd_lua_vms", "Lua reducer VMs (at most one per lua room block)",
                     (double)mx_reducers_vms());
    struct mx_storage_stats ss;
    e->st->stats(e->st->ctx, &ss);
    size_t it = 0, len, unsnapped = 0;
    const char *key;
    void *val;
    while (mx_map_next(e->rooms, &it, &key, &len, &val))
        unsnapped += ((struct mx_room *)val)->disk_snap_lsn == 0;
    mx_metrics_gauge(b, "movexd_rooms_total", "rooms that exist (in memory or on disk)",
                     (double)(ss.rooms_on_disk + unsnapped));
    mx_buf_puts(b, "# HELP movexd_actions_total actions decided, by outcome\n"
                   "# TYPE movexd_actions_total counter\n");
    mx_buf_printf(b, "movexd_actions_total{outcome=\"applied\"} %llu\n", (unsigned long long)st->actions_applied);
    mx_buf_printf(b, "movexd_actions_total{outcome=\"rejected\"} %llu\n", (unsigned long long)st->actions_rejected);
    mx_buf_printf(b, "movexd_actions_total{outcome=\"duplicate\"} %llu\n", (unsigned long long)st->actions_duplicate);
    mx_buf_printf(b, "movexd_actions_total{outcome=\"unavailable\"} %llu\n",
                  (unsigned long long)st->actions_unavailable);
    mx_buf_puts(b, "# HELP movexd_rejects_total rejects sent, by code\n# TYPE movexd_rejects_total counter\n");
    for (int i = 1; i < MX_ERR_COUNT; i++)
        if (e->rejects_by_code[i])
            mx_buf_printf(b, "movexd_rejects_total{code=\"%s\"} %llu\n", mx_err_code(-i),
                          (unsigned long long)e->rejects_by_code[i]);
    mx_metrics_counter(b, "movexd_messages_in_total", "WebSocket messages received", st->messages_in);
    mx_metrics_counter(b, "movexd_errors_sent_total", "error replies sent", st->errors_sent);
    mx_metrics_counter(b, "movexd_auth_failures_total", "refused tokens (bad or expired)", st->auth_failures);
    mx_metrics_counter(b, "movexd_forbidden_total", "requests refused for lack of a right", st->forbidden);
    mx_metrics_counter(b, "movexd_rooms_evicted_total", "rooms moved out of memory", st->rooms_evicted);
    if (e->cl)
        mx_cnode_metrics(e->cl, b);
    if (e->ph.metrics)
        e->ph.metrics(e->ph.priv, b);
    mx_metrics_hist(b, "movexd_ack_latency_seconds", "from receiving an action to releasing its durable ack",
                    &mx_metric_ack_latency);
    mx_metrics_hist(b, "movexd_fsync_seconds", "one fdatasync of the write-ahead log", &mx_metric_fsync_latency);
    mx_metrics_gauge(b, "movexd_wal_bytes", "bytes of write-ahead-log segment files", (double)ss.wal_bytes);
    mx_metrics_counter(b, "movexd_wal_fsyncs_total", "fdatasync calls on the WAL", ss.fsyncs);
    mx_metrics_counter(b, "movexd_snapshots_written_total", "room snapshots written", ss.snapshots_written);
    mx_metrics_counter(b, "movexd_snapshot_bytes_written_total", "bytes of room snapshots written",
                       ss.snapshot_bytes);
    mx_metrics_counter(b, "movexd_storage_flush_failures_total", "WAL flushes that failed", ss.flush_failures);
    mx_metrics_gauge(b, "movexd_storage_unlinks_pending",
                     "snapshot files of deleted rooms not unlinked yet (a failed unlink is retried at each flush)",
                     (double)ss.unlinks_pending);
    mx_metrics_gauge(b, "movexd_storage_failing", "1 while the disk refuses writes (acks held)", ss.failed);
    mx_metrics_gauge(b, "movexd_recovery_rooms_pending",
                     "rooms indexed at start-up and not rebuilt yet (rebuilt on first use or in the background)",
                     (double)ss.rooms_unreplayed);
    mx_metrics_counter(b, "movexd_recovery_records_replayed_total", "WAL records replayed since start-up",
                       ss.recovery_records_replayed);
    mx_metrics_gauge(b, "movexd_rooms_unrecoverable",
                     "rooms whose WAL records could not be replayed (refused with internal; see the log)",
                     (double)ss.rooms_unrecoverable);
}

int mx_engine_ready(mx_engine *e)
{
    if (e->cl)
        return mx_cnode_ready(e->cl) ? 1 : -2;
    struct mx_storage_stats ss;
    e->st->stats(e->st->ctx, &ss);
    if (ss.failed || e->storage_error)
        return 0;
    /* A full disk also shows at reserve time, with nothing held: actions
     * are refused `unavailable` while every flush succeeds. Until one is
     * accepted again, ask the storage the question that was refused, so
     * readiness comes back as soon as the space does. */
    if (e->refused_bytes && e->st->reserve(e->st->ctx, e->refused_bytes))
        return -1;
    e->refused_bytes = 0;
    return 1;
}

void mx_engine_config_changed(mx_engine *e)
{
    mx_reducers_reload(e->cfg);
    size_t it = 0, len;
    const char *key;
    void *val;
    while (mx_map_next(e->rooms, &it, &key, &len, &val)) {
        struct mx_room *r = val;
        size_t tl = mx_proto_room_type_len(r->id, r->idlen);
        char type[MX_ROOM_TYPE_MAX + 1];
        memcpy(type, r->id, tl);
        type[tl] = '\0';
        const struct mx_room_type *t = mx_config_room_type(e->cfg, type, tl);
        char reducer[sizeof(r->type.reducer)];
        memcpy(reducer, r->type.reducer, sizeof(reducer));
        r->type = *t;
        memcpy(r->type.reducer, reducer, sizeof(reducer));
        mx_oplog_set_capacity(r->log, t->history);
    }
}

static void evict_batch(mx_engine *e);
static void conn_forget_room(struct mx_conn *c, const struct mx_room *r);
static void drop_room(mx_engine *e, struct mx_room *r, const char *why);
static void push_buf(mx_engine *e, struct mx_conn *c, mx_buf *b);
static void fan_out(mx_engine *e, struct mx_conn *sender, struct mx_room *r,
                    const struct mx_action_out *o);

struct mx_room *mx_engine_room(mx_engine *e, const char *id, size_t len)
{
    return mx_map_get(e->rooms, id, len);
}

struct mx_room *mx_engine_room_load(mx_engine *e, const char *id, size_t len, int *err)
{
    *err = 0;
    return find_room(e, id, len, err);
}

/* ---- cluster mode's side of the seam (cluster_node.h) ---- */

void mx_engine_set_cluster(mx_engine *e, struct mx_cnode *n)
{
    e->cl = n;
    if (!n)
        return;
    /* conn ids unique across nodes: 20 bits of the node id's hash above a
     * 32-bit counter (below 2^53, so JSON numbers keep them exact) */
    uint32_t h = 2166136261u;
    for (const char *p = e->cfg->cluster.node_id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    e->last_conn_id = (uint64_t)(h & 0xFFFFF) << 32;
}

int mx_engine_adopt_room(mx_engine *e, struct mx_room *r)
{
    if (mx_map_put(e->rooms, r->id, r->idlen, r))
        return -1;
    r->last_active_ms = now_ms();
    return 0;
}

static void cluster_room_gone(mx_engine *e, struct mx_room *r);

void mx_engine_forget_room(mx_engine *e, struct mx_room *r, int tell)
{
    drop_room(e, r, tell == MX_FORGET_DELETED ? "the room was deleted"
                    : tell                    ? "the room is gone from the cluster"
                                              : NULL);
}

void mx_engine_fwd(mx_engine *e, struct mx_room *r, const uint8_t *prev, const char *entry, size_t len)
{
    struct mx_action_out o = {.entry_text = (char *)entry, .entry_len = len};
    memcpy(o.prev, prev, MX_DIGEST_LEN);
    fan_out(e, NULL, r, &o);
}

int mx_engine_background(mx_engine *e, uint64_t budget_us)
{
    if (e->storage_error)
        return 0;
    if (e->evict_backlog)
        evict_batch(e);
    int more = e->st->background ? e->st->background(e->st->ctx, budget_us) : 0;
    return e->evict_backlog ? 1 : more;
}

void mx_engine_stats(const mx_engine *e, struct mx_engine_stats *out)
{
    *out = e->stats;
    out->rooms = mx_map_len(e->rooms);
}

/* Ask the edge to close c; nothing c sends from now on is handled (its
 * replies already decided still go out first, unless the code says now). */
static void close_conn(struct mx_conn *c, int code, const char *reason)
{
    c->closed = 1;
    c->close(c, code, reason);
}

/* ---- outbox ---- */

/* Entry i (the newest of its conn) at the end of its conn's chain. */
static void link_own(mx_engine *e, size_t i)
{
    struct mx_conn *c = e->out[i].conn;
    e->out[i].next_own = 0;
    if (c->out_last)
        e->out[c->out_last - 1].next_own = i + 1;
    else
        c->out_first = i + 1;
    c->out_last = i + 1;
}

/* Queue frame f (one reference is taken over) for c. */
static void push(mx_engine *e, struct mx_conn *c, mx_frame *f)
{
    if (!f)
        return;
    if (e->nout == e->capout) {
        size_t ncap = e->capout ? e->capout * 2 : 64;
        struct outbox_entry *n = mx_realloc(e->out, ncap * sizeof(*n));
        if (!n) {
            /* cannot queue: the connection would miss a message, so it must
             * not go on as if it had not */
            mx_frame_unref(f);
            close_conn(c, 1011, "server out of memory");
            return;
        }
        e->out = n;
        e->capout = ncap;
    }
    e->out[e->nout++] = (struct outbox_entry){
        .conn = c, .frame = f, .ack_t_us = 0, .free = 0, .gate = e->gate ? mx_gate_ref(e->gate) : NULL};
    link_own(e, e->nout - 1);
    c->pending++;
    c->pending_bytes += f->len;
}

/* After the outbox was compacted (entries moved): chain each connection's
 * entries again. Connections whose entries all left had their chain
 * cleared when the last one left. */
static void relink_all(mx_engine *e)
{
    for (size_t i = 0; i < e->nout; i++)
        if (e->out[i].conn)
            e->out[i].conn->out_first = e->out[i].conn->out_last = 0;
    for (size_t i = 0; i < e->nout; i++)
        if (e->out[i].conn)
            link_own(e, i);
    e->relinking = 0;
}

/* Encode b into a frame and queue it for c. */
static void push_buf(mx_engine *e, struct mx_conn *c, mx_buf *b)
{
    mx_frame *f = mx_frame_from_buf(b);
    if (!f) {
        close_conn(c, 1011, "server out of memory");
        return;
    }
    push(e, c, f);
}

int mx_engine_has_pending(const mx_engine *e) { return e->nout > 0; }

/* The storage cannot flush (full disk): everything that depends on an
 * unwritten decision stays held. Messages that depend on none (pong, errors,
 * `unavailable` rejects) still go out, to connections that have nothing held
 * before them, so the per-connection order is kept and clients are not left
 * guessing whether the server is alive. */
static void release_free(mx_engine *e)
{
    size_t keep = 0;
    e->relinking = 1;
    for (size_t i = 0; i < e->nout; i++) {
        struct outbox_entry o = e->out[i];
        struct mx_conn *c = o.conn;
        if (c && o.free && !c->held) {
            c->pending--;
            c->pending_bytes -= o.frame->len;
            c->out_first = c->out_last = 0; /* relink_all chains what stays */
            e->out[i].conn = NULL;
            c->deliver(c, o.frame);
            mx_frame_unref(o.frame);
            continue;
        }
        if (c && !o.free)
            c->held = 1;
        if (!c) {
            mx_frame_unref(o.frame);
            mx_gate_unref(o.gate);
            continue;
        }
        e->out[keep++] = e->out[i];
    }
    e->nout = keep;
    for (size_t i = 0; i < e->nout; i++)
        if (e->out[i].conn)
            e->out[i].conn->held = 0;
    relink_all(e);
}

/* Mark the entry just queued as independent of unflushed decisions. */
static void mark_free(mx_engine *e, size_t before)
{
    if (e->nout > before)
        e->out[e->nout - 1].free = 1;
}

/* A reply that depends on no decision (error, pong, presence_ok): queued
 * and marked free to leave while earlier decisions are still held. */
static void push_free_buf(mx_engine *e, struct mx_conn *c, mx_buf *b)
{
    size_t before = e->nout;
    push_buf(e, c, b);
    mark_free(e, before);
}

static void flush_presence(mx_engine *e);

/* Cluster mode: an entry leaves once its gate passed (or it has none), in
 * order per connection: one behind a pending gate holds the later entries
 * of its connection; one whose gate failed is dropped (its request is
 * handled again, cluster_node.h). A moved entry's old slot loses its conn,
 * so a connection closed by a deliver is counted off once. */
static void release_gated(mx_engine *e)
{
    size_t keep = 0;
    e->relinking = 1;
    for (size_t i = 0; i < e->nout; i++) {
        struct outbox_entry *o = &e->out[i];
        struct mx_conn *c = o->conn;
        int st = o->gate ? o->gate->state : MX_GATE_PASSED;
        if (c && st == MX_GATE_FAILED) {
            c->pending--;
            c->pending_bytes -= o->frame->len;
            c->out_first = c->out_last = 0; /* relink_all chains what stays */
            o->conn = c = NULL;
        }
        if (!c) {
            mx_frame_unref(o->frame);
            mx_gate_unref(o->gate);
            continue;
        }
        if (st == MX_GATE_PENDING)
            c->held = 1;
        if (c->held) {
            struct outbox_entry t = *o;
            o->conn = NULL;
            e->out[keep++] = t;
            continue;
        }
        if (o->ack_t_us)
            mx_hist_observe(&mx_metric_ack_latency, (double)(mx_now_us() - o->ack_t_us) / 1e6);
        mx_frame *f = o->frame;
        struct mx_gate *g = o->gate;
        c->pending--;
        c->pending_bytes -= f->len;
        c->out_first = c->out_last = 0; /* relink_all chains what stays */
        o->conn = NULL;
        c->deliver(c, f);
        mx_frame_unref(f);
        mx_gate_unref(g);
    }
    e->nout = keep;
    for (size_t i = 0; i < e->nout; i++)
        if (e->out[i].conn)
            e->out[i].conn->held = 0;
    relink_all(e);
}

void mx_engine_set_released(mx_engine *e, void (*fn)(void *ctx), void *ctx)
{
    e->released = fn;
    e->released_ctx = ctx;
}

static void released(mx_engine *e)
{
    if (e->released)
        e->released(e->released_ctx);
}

int mx_engine_commit(mx_engine *e)
{
    if (e->storage_error)
        return MX_EINTERNAL;
    flush_presence(e);
    if (e->cl) {
        mx_cnode_flush(e->cl); /* the turn's batches to Redis */
        release_gated(e);
        released(e);
        return 0;
    }
    if (!e->nout && !e->unflushed)
        return 0;
    int rc = e->st->flush(e->st->ctx);
    if (!rc)
        e->unflushed = 0;
    if (rc) {
        release_free(e);
        released(e);
        return rc;
    }
    /* deliver may close a connection (send queue over its bound), which
     * calls back into mx_engine_conn_closed and nulls its later entries; so
     * walk by index and never cache the array */
    for (size_t i = 0; i < e->nout; i++) {
        struct outbox_entry *o = &e->out[i];
        if (o->ack_t_us)
            mx_hist_observe(&mx_metric_ack_latency, (double)(mx_now_us() - o->ack_t_us) / 1e6);
        if (o->conn) {
            struct mx_conn *c = o->conn;
            c->pending--;
            c->pending_bytes -= o->frame->len;
            /* entries leave in index order: this one heads c's chain */
            c->out_first = o->next_own;
            if (!c->out_first)
                c->out_last = 0;
            o->conn = NULL;
            c->deliver(c, o->frame);
        }
        mx_frame_unref(o->frame);
        o->frame = NULL;
    }
    e->nout = 0;
    /* the replies leave before the housekeeping: a snapshot written here
     * (an fdatasync of the WAL, the file, its fsync: ~15 ms on a busy disk)
     * used to hold every reply of the turn (docs/PERFORMANCE.md) */
    released(e);
    e->st->after_commit(e->st->ctx, e->rooms);
    return 0;
}

/* One batch of idle rooms out of memory. Only right after a commit (outbox
 * empty): a room leaves memory with a snapshot, and a snapshot must not
 * cover unwritten records. Idle rooms leave in batches of at most
 * MX_EVICT_BATCH, their snapshots written together (one sync for the
 * batch), so a burst of idle rooms never keeps clients waiting long; a full
 * batch sets evict_backlog and the next one follows after one turn of the
 * event loop (mx_engine_background), so eviction keeps up with any rate at
 * which rooms go idle. */
static void evict_batch(mx_engine *e)
{
    e->evict_backlog = 0;
    if (e->nout || e->cfg->evict_idle_ms <= 0)
        return;
    uint64_t now = now_ms(), idle = (uint64_t)e->cfg->evict_idle_ms;
    struct mx_room *batch[MX_EVICT_BATCH];
    size_t n = 0, it = 0, len;
    const char *key;
    void *val;
    while (n < MX_EVICT_BATCH && mx_map_next(e->rooms, &it, &key, &len, &val)) {
        struct mx_room *r = val;
        if (!r->nsubs && now - r->last_active_ms >= idle)
            batch[n++] = r;
    }
    size_t gone = 0;
    if (e->cl) {
        /* cluster mode: Redis keeps the room; the node decides whether its
         * replica may go now (cluster_node.h), those that stay move to the
         * batch's tail */
        for (size_t i = 0; i < n; i++)
            if (mx_cnode_evict(e->cl, batch[i])) {
                struct mx_room *t = batch[gone];
                batch[gone++] = batch[i];
                batch[i] = t;
            }
    } else if (n) {
        gone = e->st->evict(e->st->ctx, batch, n);
    }
    for (size_t i = 0; i < gone; i++) {
        struct mx_room *r = batch[i];
        mx_map_del(e->rooms, r->id, r->idlen);
        e->stats.rooms_evicted++;
        mx_debug("event=room_evicted room=%s seq=%llu", r->id, (unsigned long long)r->seq);
        mx_room_free(r);
    }
    /* a full batch that all went: look again soon (a refused one waits for
     * the next tick: the storage cannot write snapshots now) */
    e->evict_backlog = n == MX_EVICT_BATCH && gone == n;
}

int mx_engine_tick(mx_engine *e)
{
    if (e->cl)
        mx_cnode_tick(e->cl);
    int rc = e->st->tick(e->st->ctx);
    if (rc)
        return rc;
    evict_batch(e);
    return 0;
}

void mx_engine_close(mx_engine *e)
{
    mx_engine_commit(e);
    e->st->close(e->st->ctx, e->rooms);
}

int mx_engine_delete_room(mx_engine *e, const char *id, size_t len)
{
    if (e->cl)
        return MX_EUNAVAILABLE; /* not in cluster mode yet (docs/CLUSTER.md) */
    int err = 0;
    struct mx_room *r = find_room(e, id, len, &err);
    if (!r && err == MX_EINTERNAL && e->st->drop_unrecoverable) {
        /* a room that cannot be loaded (logged room_unrecoverable): the
         * operator's way out is to delete it */
        int rc = e->st->drop_unrecoverable(e->st->ctx, id, len);
        if (rc)
            return rc;
        e->unflushed = 1;
        mx_info("event=room_deleted room=%.*s note=\"was unrecoverable\"", (int)len, id);
        return 0;
    }
    if (!r)
        return err;
    int rc = e->st->room_deleted(e->st->ctx, r);
    if (rc)
        return rc;
    e->unflushed = 1;
    mx_info("event=room_deleted room=%s", r->id);
    drop_room(e, r, "the room was deleted");
    return 0;
}

static void reply_error(mx_engine *e, struct mx_conn *c, int has_id, uint64_t id, int err,
                        const char *message);

int mx_engine_delete_room_cluster(mx_engine *e, struct mx_conn *c, const char *id, size_t len)
{
    if (!e->cl)
        return MX_EINTERNAL;
    if (!mx_proto_room_type_len(id, len))
        return MX_EBAD_ROOM;
    return mx_cnode_delete(e->cl, c, id, len);
}

void mx_engine_admin_deleted(mx_engine *e, struct mx_conn *c, int err)
{
    if (err) {
        reply_error(e, c, 0, 0, err, mx_err_message(err));
        return;
    }
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    mx_buf_puts(&b, "{\"deleted\":true}\n");
    push_buf(e, c, &b);
}

/* r leaves memory for good (deleted, or gone from the cluster): its
 * subscribers are unsubscribed and, with a `why`, told (error
 * no_such_room naming the room). */
static void drop_room(mx_engine *e, struct mx_room *r, const char *why)
{
    cluster_room_gone(e, r);
    for (size_t i = 0; i < r->nsubs; i++) {
        struct mx_conn *c = r->subs[i];
        if (why) {
            mx_buf b;
            mx_buf_init(&b, MX_FRAME_PRE);
            mx_proto_error_msg(&b, &(struct mx_msg_error){.h = {.room = r->id, .roomlen = r->idlen},
                                                          .code = MX_ENO_SUCH_ROOM, .message = why});
            push_buf(e, c, &b);
        }
        conn_forget_room(c, r);
    }
    r->nsubs = 0;
    mx_map_del(e->rooms, r->id, r->idlen);
    mx_room_free(r);
}

/* ---- connections ---- */

void mx_engine_conn_open(mx_engine *e, struct mx_conn *c)
{
    c->hello = 0;
    c->clientlen = 0;
    c->client[0] = '\0';
    c->rooms = NULL;
    c->room_pos = NULL;
    c->nrooms = c->caprooms = 0;
    c->pending = 0;
    c->pending_bytes = 0;
    c->out_first = c->out_last = 0;
    c->authed = 0;
    c->closed = 0;
    c->admin = 0;
    c->conn_id = mx_engine_new_conn_id(e);
    memset(&c->token, 0, sizeof(c->token));
    e->stats.connections++;
}

static int conn_subscribed(const struct mx_conn *c, const struct mx_room *r)
{
    for (size_t i = 0; i < c->nrooms; i++)
        if (c->rooms[i] == r)
            return 1;
    return 0;
}

static void conn_forget_room(struct mx_conn *c, const struct mx_room *r)
{
    for (size_t i = 0; i < c->nrooms; i++) {
        if (c->rooms[i] == r) {
            c->nrooms--;
            c->rooms[i] = c->rooms[c->nrooms];
            c->room_pos[i] = c->room_pos[c->nrooms];
            return;
        }
    }
}

/* Take c out of r's subscribers in O(1) (c->rooms[k] == r); the subscriber
 * that took its place learns its new index. The connection's own list is
 * left to the caller. */
static void room_unsubscribe(mx_engine *e, struct mx_conn *c, size_t k)
{
    struct mx_room *r = c->rooms[k];
    size_t at = c->room_pos[k];
    struct mx_conn *moved = mx_room_sub_del_at(r, at);
    if (r->nsubs == 0 && e->ph.held)
        e->ph.held(e->ph.priv, r->id, r->idlen, 0);
    if (!moved)
        return;
    for (size_t j = 0; j < moved->nrooms; j++) {
        if (moved->rooms[j] == r) {
            moved->room_pos[j] = at;
            return;
        }
    }
}

static void presence_leave(mx_engine *e, struct mx_conn *c, struct mx_room *r);

void mx_engine_conn_closed(mx_engine *e, struct mx_conn *c)
{
    if (e->cl)
        mx_cnode_conn_closed(e->cl, c);
    for (size_t i = 0; i < c->nrooms; i++) {
        room_unsubscribe(e, c, i);
        presence_leave(e, c, c->rooms[i]);
    }
    free(c->rooms);
    c->rooms = NULL;
    free(c->room_pos);
    c->room_pos = NULL;
    c->nrooms = c->caprooms = 0;
    if (e->relinking) {
        /* closed from a deliver while the outbox is compacted (the edges
         * close from their loop, so not expected): the chain is stale */
        for (size_t i = 0; c->pending && i < e->nout; i++) {
            if (e->out[i].conn == c) {
                e->out[i].conn = NULL;
                c->pending--;
            }
        }
    } else {
        /* its own entries only: a storm of closes is not O(outbox) each */
        for (size_t i = c->out_first; i; i = e->out[i - 1].next_own) {
            if (e->out[i - 1].conn == c) {
                e->out[i - 1].conn = NULL;
                c->pending--;
            }
        }
    }
    c->out_first = c->out_last = 0;
    c->pending_bytes = 0;
    mx_token_free(&c->token);
    c->authed = 0;
    if (e->stats.connections)
        e->stats.connections--;
}

/* ---- replies ---- */

/* A reply's head: the request's id (if any) and the room (if any). */
static struct mx_msg_head reply_head(const struct mx_request *q, const struct mx_room *r)
{
    struct mx_msg_head h = {0};
    if (q) {
        h.has_id = q->has_id;
        h.id = q->id;
    }
    if (r) {
        h.room = r->id;
        h.roomlen = r->idlen;
        h.room_field = r->room_field;
        h.room_fieldlen = r->room_fieldlen;
    }
    return h;
}

static void reply_error(mx_engine *e, struct mx_conn *c, int has_id, uint64_t id, int err,
                        const char *message)
{
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    mx_proto_error(&b, has_id, id, err, message);
    e->stats.errors_sent++;
    const struct mx_request *q = e->cur;
    if (q && q->room && q->roomlen)
        mx_debug("event=error client=%s room=%.*s code=%s message=\"%s\"", c->clientlen ? c->client : "-",
                 (int)q->roomlen, q->room, mx_err_code(err), message ? message : "");
    else
        mx_debug("event=error client=%s code=%s message=\"%s\"", c->clientlen ? c->client : "-",
                 mx_err_code(err), message ? message : "");
    push_free_buf(e, c, &b);
}

void mx_engine_send_error(mx_engine *e, struct mx_conn *c, int err, const char *message)
{
    reply_error(e, c, 0, 0, err, message);
}

static void presence_entry_cb(void *ctx, const struct mx_presence_entry *en)
{
    mx_buf *b = ctx;
    if (b->len > 1)
        mx_buf_putc(b, ',');
    mx_proto_presence_entry(b, &(struct mx_msg_presence){.client = en->client, .clientlen = en->clientlen,
                                                         .conn = en->conn, .state = en->state,
                                                         .statelen = en->statelen});
}

/* A subscribe reply carries the presence of the room's other connections
 * (a JSON array into b); sync and get replies do not (b stays empty). */
static void presence_of_others(const struct mx_conn *c, const struct mx_request *q,
                               const struct mx_room *r, mx_buf *b)
{
    mx_buf_init(b, 0);
    if (q->type != MX_REQ_SUBSCRIBE)
        return;
    mx_buf_putc(b, '[');
    mx_presence_each(r->presence, c, presence_entry_cb, b);
    mx_buf_putc(b, ']');
}

static void reply_snapshot(mx_engine *e, struct mx_conn *c, const struct mx_request *q,
                           struct mx_room *r)
{
    mx_buf b, pres;
    mx_buf_init(&b, MX_FRAME_PRE);
    presence_of_others(c, q, r, &pres);
    mx_proto_snapshot(&b, &(struct mx_msg_snapshot){
                              .h = reply_head(q, r), .seq = r->seq, .checksum = r->checksum,
                              .next_n = mx_room_next_n(r, c->client, c->clientlen), .state = r->state,
                              .presence = pres.len ? mx_buf_data(&pres) : NULL, .presencelen = pres.len});
    if (pres.oom)
        b.oom = 1;
    mx_buf_free(&pres);
    push_buf(e, c, &b);
}

/* `actions` from since to head, or a snapshot when the log cannot cover it. */
static void reply_catch_up(mx_engine *e, struct mx_conn *c, const struct mx_request *q,
                           struct mx_room *r)
{
    if (!mx_room_can_catch_up(r, q->since.seq, q->since.checksum)) {
        reply_snapshot(e, c, q, r);
        return;
    }
    /* A catch-up bigger than the connection's whole send-queue bound would
     * get the connection closed as a slow consumer on every retry; the
     * snapshot carries the same state, so send it when it is smaller. */
    size_t bytes = 0, limit = e->cfg->max_queue_bytes;
    for (uint64_t s = q->since.seq + 1; s <= r->seq && bytes <= limit; s++)
        bytes += mx_oplog_get(r->log, s)->len + 1;
    if (bytes > limit && r->state->jsize < bytes) {
        reply_snapshot(e, c, q, r);
        return;
    }
    mx_buf b, pres;
    mx_buf_init(&b, MX_FRAME_PRE);
    presence_of_others(c, q, r, &pres);
    mx_proto_actions(&b, &(struct mx_msg_actions){
                             .h = reply_head(q, r), .from = q->since.seq, .to = r->seq,
                             .next_n = mx_room_next_n(r, c->client, c->clientlen), .log = r->log,
                             .presence = pres.len ? mx_buf_data(&pres) : NULL, .presencelen = pres.len});
    if (pres.oom)
        b.oom = 1;
    mx_buf_free(&pres);
    push_buf(e, c, &b);
}

/* ---- requests ---- */

/* Rights of c on room id (type = its prefix). */
static unsigned rights(const mx_engine *e, const struct mx_conn *c, const struct mx_request *q)
{
    if (e->cfg->auth == MX_AUTH_NONE || c->admin)
        return MX_RIGHT_READ | MX_RIGHT_WRITE | MX_RIGHT_CREATE;
    char type[MX_ROOM_TYPE_MAX + 1];
    memcpy(type, q->room, q->typelen);
    type[q->typelen] = '\0';
    const struct mx_room_type *t = mx_config_room_type(e->cfg, type, q->typelen);
    if (!c->authed)
        return t->anonymous;
    return t->authenticated | mx_token_rights(&c->token, q->room, q->roomlen);
}

/* 1 (after replying forbidden) when c lacks `need` on the request's room. */
static int denied(mx_engine *e, struct mx_conn *c, const struct mx_request *q, unsigned need)
{
    if ((rights(e, c, q) & need) == need)
        return 0;
    e->stats.forbidden++;
    const char *what = need & MX_RIGHT_CREATE ? "create" : need & MX_RIGHT_WRITE ? "write" : "read";
    char msg[80];
    snprintf(msg, sizeof(msg), "no %s right on this room", what);
    reply_error(e, c, q->has_id, q->id, MX_EFORBIDDEN, msg);
    return 1;
}

static void do_hello(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    if (c->hello) {
        reply_error(e, c, q->has_id, q->id, MX_EBAD_REQUEST, "hello was already received");
        return;
    }
    if (e->cfg->auth == MX_AUTH_JWT && q->token) {
        char why[120];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int rc = mx_jwt_verify(q->token, strlen(q->token), &e->keys, (int64_t)ts.tv_sec,
                               e->cfg->auth_leeway_ms / 1000, &c->token, why, sizeof(why));
        if (rc) {
            e->stats.auth_failures++;
            mx_warn("event=auth_failed reason=\"%s\"", why);
            reply_error(e, c, q->has_id, q->id, MX_EUNAUTHORIZED, why);
            close_conn(c, MX_CLOSE_UNAUTHORIZED, "unauthorized");
            return;
        }
        c->authed = 1;
        /* the token's subject is the client id: nobody picks another's */
        c->clientlen = strlen(c->token.sub);
        memcpy(c->client, c->token.sub, c->clientlen);
    } else if (q->client && e->cfg->auth == MX_AUTH_NONE) {
        memcpy(c->client, q->client, q->clientlen);
        c->clientlen = q->clientlen;
    } else {
        /* no token under auth jwt: an anonymous connection gets an id of
         * its own, so it cannot reach anyone's exactly-once memory */
        unsigned char rnd[8];
        randombytes_buf(rnd, sizeof(rnd));
        /* in cluster mode the node's id is part of it (unique across nodes) */
        int at = e->cl ? snprintf(c->client, sizeof(c->client), "anon-%s-", e->cfg->cluster.node_id)
                       : snprintf(c->client, sizeof(c->client), "anon-");
        for (size_t i = 0; i < sizeof(rnd); i++)
            snprintf(c->client + at + 2 * i, 3, "%02x", rnd[i]);
        c->clientlen = strlen(c->client);
    }
    c->client[c->clientlen] = '\0';
    c->hello = 1;
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    mx_proto_welcome(&b, &(struct mx_msg_welcome){
                             .h = reply_head(q, NULL), .client = c->client, .clientlen = c->clientlen,
                             .conn = c->conn_id, .server = "movexd/" MOVEXD_VERSION,
                             .max_message_bytes = e->cfg->max_message_bytes,
                             .max_depth = (uint64_t)e->cfg->max_depth,
                             .max_queue_bytes = e->cfg->max_queue_bytes,
                             .max_rooms = e->cfg->max_rooms_per_conn,
                             .dedup_window = e->cfg->dedup_window});
    push_buf(e, c, &b);
    mx_info("event=hello client=%s", c->client);
}

/* Create room q->room with `state` (taken). Returns the room or NULL after
 * replying with an error. */
static struct mx_room *create_room(mx_engine *e, struct mx_conn *c, const struct mx_request *q,
                                   mx_val *state)
{
    char type[MX_ROOM_TYPE_MAX + 1];
    memcpy(type, q->room, q->typelen);
    type[q->typelen] = '\0';
    const struct mx_room_type *t = mx_config_room_type(e->cfg, type, q->typelen);
    if (mx_digest_refresh(state)) {
        mx_json_free(state);
        reply_error(e, c, q->has_id, q->id, MX_ENOMEM, NULL);
        return NULL;
    }
    if (t->max_state_bytes && state->jsize > t->max_state_bytes) {
        char msg[160];
        snprintf(msg, sizeof(msg), "initial state is %zu bytes, over max_state_bytes %zu",
                 state->jsize, t->max_state_bytes);
        mx_json_free(state);
        reply_error(e, c, q->has_id, q->id, MX_ETOO_LARGE, msg);
        return NULL;
    }
    int err;
    struct mx_room *r = mx_room_new(q->room, q->roomlen, t, state, e->cfg->dedup_window, &err);
    if (!r) {
        reply_error(e, c, q->has_id, q->id, err, "could not create the room");
        return NULL;
    }
    if (mx_map_put(e->rooms, r->id, r->idlen, r)) {
        mx_room_free(r);
        reply_error(e, c, q->has_id, q->id, MX_ENOMEM, NULL);
        return NULL;
    }
    r->last_active_ms = now_ms();
    if (e->cl) {
        /* created in Redis first: the replies wait behind the create's gate */
        struct mx_gate *g = mx_cnode_created(e->cl, r);
        if (!g) {
            mx_map_del(e->rooms, r->id, r->idlen);
            mx_room_free(r);
            reply_error(e, c, q->has_id, q->id, MX_ENOMEM, NULL);
            return NULL;
        }
        mx_gate_unref(e->gate);
        e->gate = g;
    }
    e->unflushed = 1;
    int rc = e->st->room_created(e->st->ctx, r);
    if (rc)
        storage_broken(e, "room_created", r, rc);
    mx_info("event=room_created room=%s by=%s", r->id, c->client);
    return r;
}

/* The state a new room starts with: params (NULL: {}) through the room
 * type's reducer init. NULL after replying with the error. */
static mx_val *initial_state(mx_engine *e, struct mx_conn *c, const struct mx_request *q,
                             const json_t *params)
{
    char type[MX_ROOM_TYPE_MAX + 1];
    memcpy(type, q->room, q->typelen);
    type[q->typelen] = '\0';
    const struct mx_room_type *t = mx_config_room_type(e->cfg, type, q->typelen);
    struct mx_action_in in = {.client = c->client, .clientlen = c->clientlen,
                              .max_depth = e->cfg->max_depth, .time_ms = wall_ms(e)};
    randombytes_buf(&in.seed, sizeof(in.seed));
    char msg[256];
    mx_val *state = NULL;
    int rc = mx_room_initial_state(t, q->room, q->roomlen, params, &in, &state, msg, sizeof(msg));
    if (rc) {
        reply_error(e, c, q->has_id, q->id, rc, msg);
    }
    return state;
}

static void do_create(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    if (denied(e, c, q, MX_RIGHT_CREATE))
        return;
    int err = 0;
    if (find_room(e, q->room, q->roomlen, &err)) {
        reply_error(e, c, q->has_id, q->id, MX_EROOM_EXISTS, "a room with this id already exists");
        return;
    }
    if (err != MX_ENO_SUCH_ROOM) {
        reply_error(e, c, q->has_id, q->id, err, "the room could not be loaded");
        return;
    }
    mx_val *state = initial_state(e, c, q, q->state);
    if (!state)
        return;
    struct mx_room *r = create_room(e, c, q, state);
    if (!r)
        return;
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    mx_proto_created(&b, &(struct mx_msg_created){.h = reply_head(q, r), .seq = r->seq,
                                                  .checksum = r->checksum});
    push_buf(e, c, &b);
}

static void do_subscribe(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    if (denied(e, c, q, MX_RIGHT_READ))
        return;
    int err = 0;
    struct mx_room *r = find_room(e, q->room, q->roomlen, &err);
    if (!r && err != MX_ENO_SUCH_ROOM) {
        reply_error(e, c, q->has_id, q->id, err, "the room could not be loaded");
        return;
    }
    if (!r) {
        char type[MX_ROOM_TYPE_MAX + 1];
        memcpy(type, q->room, q->typelen);
        type[q->typelen] = '\0';
        if (!mx_config_room_type(e->cfg, type, q->typelen)->create_on_subscribe) {
            reply_error(e, c, q->has_id, q->id, MX_ENO_SUCH_ROOM, "no such room");
            return;
        }
        if (denied(e, c, q, MX_RIGHT_CREATE))
            return;
    }
    if (!(r && conn_subscribed(c, r)) && c->nrooms >= e->cfg->max_rooms_per_conn) {
        char msg[96];
        snprintf(msg, sizeof(msg), "at most %zu rooms per connection", e->cfg->max_rooms_per_conn);
        reply_error(e, c, q->has_id, q->id, MX_ELIMIT, msg);
        return;
    }
    if (!r) {
        mx_val *empty = initial_state(e, c, q, NULL);
        if (!empty || !(r = create_room(e, c, q, empty)))
            return;
    }
    if (!conn_subscribed(c, r)) {
        if (c->nrooms == c->caprooms) {
            size_t ncap = c->caprooms ? c->caprooms * 2 : 4;
            struct mx_room **n = mx_realloc(c->rooms, ncap * sizeof(*n));
            if (n)
                c->rooms = n;
            size_t *np = n ? mx_realloc(c->room_pos, ncap * sizeof(*np)) : NULL;
            if (!np) {
                reply_error(e, c, q->has_id, q->id, MX_ENOMEM, NULL);
                return;
            }
            c->room_pos = np;
            c->caprooms = ncap;
        }
        long at = mx_room_sub_add(r, c);
        if (at < 0) {
            reply_error(e, c, q->has_id, q->id, MX_ENOMEM, NULL);
            return;
        }
        c->rooms[c->nrooms] = r;
        c->room_pos[c->nrooms++] = (size_t)at;
        if (r->nsubs == 1 && e->ph.held)
            e->ph.held(e->ph.priv, r->id, r->idlen, 1);
    }
    if (q->since.present)
        reply_catch_up(e, c, q, r);
    else
        reply_snapshot(e, c, q, r);
}

static struct mx_room *existing_room(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    int err = 0;
    struct mx_room *r = find_room(e, q->room, q->roomlen, &err);
    if (!r)
        reply_error(e, c, q->has_id, q->id, err,
                    err == MX_ENO_SUCH_ROOM ? "no such room" : "the room could not be loaded");
    return r;
}

static void do_unsubscribe(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    struct mx_room *r = existing_room(e, c, q);
    if (!r)
        return;
    if (!conn_subscribed(c, r)) {
        reply_error(e, c, q->has_id, q->id, MX_ENOT_SUBSCRIBED, "not subscribed to this room");
        return;
    }
    for (size_t k = 0; k < c->nrooms; k++) {
        if (c->rooms[k] == r) {
            room_unsubscribe(e, c, k);
            break;
        }
    }
    conn_forget_room(c, r);
    presence_leave(e, c, r);
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    struct mx_msg_head h = reply_head(q, r);
    mx_proto_unsubscribed(&b, &h);
    push_buf(e, c, &b);
}

static void reply_ack(mx_engine *e, struct mx_conn *c, const struct mx_request *q,
                      const struct mx_room *r, uint64_t seq, const uint8_t *prev,
                      const uint8_t *sum, int duplicate, const json_t *effects)
{
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    mx_proto_ack(&b, &(struct mx_msg_ack){.h = reply_head(q, r), .n = q->n, .seq = seq, .prev = prev,
                                          .checksum = sum, .duplicate = duplicate,
                                          .effects = effects});
    size_t before = e->nout;
    push_buf(e, c, &b);
    if (e->nout > before)
        e->out[e->nout - 1].ack_t_us = e->cur_t_us;
}

static void reply_reject(mx_engine *e, struct mx_conn *c, const struct mx_request *q,
                         const struct mx_room *r, int code, const char *message, uint64_t seq,
                         const uint8_t *sum, int duplicate)
{
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    if (!duplicate)
        e->rejects_by_code[mx_err_index(code)]++;
    mx_debug("event=reject client=%s room=%s n=%llu code=%s%s", c->clientlen ? c->client : "-", r->id,
             (unsigned long long)q->n, mx_err_code(code), duplicate ? " duplicate=true" : "");
    mx_proto_reject(&b, &(struct mx_msg_reject){.h = reply_head(q, r), .n = q->n, .code = code,
                                                .message = message, .seq = seq, .checksum = sum,
                                                .duplicate = duplicate});
    push_buf(e, c, &b);
}

static void fan_out(mx_engine *e, struct mx_conn *sender, struct mx_room *r,
                    const struct mx_action_out *o)
{
    if (r->nsubs <= 1 && (r->nsubs == 0 || r->subs[0] == sender))
        return;
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    mx_proto_fwd(&b, &(struct mx_msg_fwd){.h = reply_head(NULL, r), .prev = o->prev,
                                          .entry = o->entry_text, .entrylen = o->entry_len});
    mx_frame *f = mx_frame_from_buf(&b);
    if (!f) {
        /* subscribers that miss a fwd would go on with a wrong state */
        for (size_t i = 0; i < r->nsubs; i++)
            if (r->subs[i] != sender)
                close_conn(r->subs[i], 1011, "server out of memory");
        return;
    }
    for (size_t i = 0; i < r->nsubs; i++)
        if (r->subs[i] != sender)
            push(e, r->subs[i], mx_frame_ref(f));
    mx_frame_unref(f);
}

/* The room a request writes to (action, presence): it needs the write
 * right, an existing room and a subscription (so the writer sees what its
 * writes are ordered among; the admin API needs none). NULL after the
 * error reply; `what` completes "subscribe to the room before ...". */
static struct mx_room *room_to_write(mx_engine *e, struct mx_conn *c, const struct mx_request *q,
                                     const char *what)
{
    if (denied(e, c, q, MX_RIGHT_WRITE))
        return NULL;
    struct mx_room *r = existing_room(e, c, q);
    if (r && !c->admin && !conn_subscribed(c, r)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "subscribe to the room before %s", what);
        reply_error(e, c, q->has_id, q->id, MX_ENOT_SUBSCRIBED, msg);
        return NULL;
    }
    return r;
}

/* The log has no room for the action's record (`bytes`): reject it
 * `unavailable` without using up n, so the client can resend, and keep
 * /readyz not ready until that much fits again. */
static void refuse_unavailable(mx_engine *e, struct mx_conn *c, const struct mx_request *q,
                               struct mx_room *r, size_t bytes)
{
    e->refused_bytes = bytes;
    e->stats.actions_unavailable++;
    size_t before = e->nout;
    reply_reject(e, c, q, r, MX_EUNAVAILABLE,
                 "the server cannot make actions durable right now (disk full?); resend later",
                 r->seq, r->checksum, 0);
    mark_free(e, before);
}

static void do_action(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    struct mx_room *r = room_to_write(e, c, q, "sending actions to it");
    if (!r)
        return;
    struct mx_action_in in = {.client = c->client, .clientlen = c->clientlen, .n = q->n,
                              .has_base = q->has_base, .base = q->base, .ndeps = q->ndeps,
                              .deps = q->deps, .strict = q->strict, .action = q->action, .patch = q->patch,
                              .action_text = q->action_text, .action_len = q->action_len,
                              .max_depth = e->cfg->max_depth};
    if (r->reducer->uses_ctx) { /* only these see ctx (and log it) */
        in.time_ms = wall_ms(e);
        randombytes_buf(&in.seed, sizeof(in.seed));
    }
    in.reserve = e->st->reserve;
    in.reserve_ctx = e->st->ctx;
    struct mx_action_out o;
    /* Room in the log for the record first: a full disk is refused before
     * anything is applied, and n stays unused so the client can resend. The
     * bound covers the entry's re-encoding (numbers such as 1e20 grow). */
    /* (mx_room_decide reserves again with the record's real size once the
     * reducer has run: effects can be far larger than the message.) */
    size_t need = q->msglen * 6 + 4096;
    if (e->st->reserve(e->st->ctx, need)) {
        refuse_unavailable(e, c, q, r, need);
        return;
    }
    e->refused_bytes = 0;
    if (mx_room_decide(r, &in, &o)) {
        reply_error(e, c, q->has_id, q->id, MX_ENOMEM, "out of memory; the action was not applied");
        return;
    }
    switch (o.decision) {
    case MX_DECIDED_UNAVAILABLE:
        refuse_unavailable(e, c, q, r, o.entry_len);
        break;
    case MX_DECIDED_APPLIED: {
        e->stats.actions_applied++;
        struct mx_storage_action sa = {.seq = o.seq, .prev = o.prev, .checksum = o.checksum,
                                       .client = c->client, .clientlen = c->clientlen, .n = q->n,
                                       .entry = o.entry_text, .entrylen = o.entry_len};
        e->unflushed = 1;
        int rc = e->st->action(e->st->ctx, r, &sa);
        if (rc)
            storage_broken(e, "action", r, rc);
        if (e->cl) /* out of memory fails the slot: answered unavailable */
            mx_cnode_decided(e->cl, r, c, q, &o);
        reply_ack(e, c, q, r, o.seq, o.prev, o.checksum, 0, o.effects);
        fan_out(e, c, r, &o);
        free(o.entry_owned);
        json_decref(o.effects);
        break;
    }
    case MX_DECIDED_REJECTED: {
        e->stats.actions_rejected++;
        const struct mx_outcome *rec = NULL;
        mx_dedup_find(r->dedup, c->client, c->clientlen, q->n, &rec);
        if (rec) {
            e->unflushed = 1;
            int rc = e->st->reject(e->st->ctx, r, c->client, c->clientlen, rec);
            if (rc)
                storage_broken(e, "reject", r, rc);
            if (e->cl)
                mx_cnode_decided(e->cl, r, c, q, &o);
        }
        reply_reject(e, c, q, r, o.code, o.message, o.seq, o.checksum, 0);
        break;
    }
    case MX_DECIDED_DUPLICATE:
        e->stats.actions_duplicate++;
        if (o.prior->kind == MX_OUTCOME_ACK) {
            /* an app reducer's effects, so a resending client can follow */
            json_t *eff = r->reducer->uses_ctx ? mx_room_logged_effects(r, o.prior->seq) : NULL;
            reply_ack(e, c, q, r, o.prior->seq, o.prior->prev, o.prior->checksum, 1, eff);
            json_decref(eff);
        } else
            reply_reject(e, c, q, r, o.prior->code, o.prior->message, o.prior->seq,
                         o.prior->checksum, 1);
        break;
    case MX_DECIDED_TOO_OLD:
        e->stats.actions_rejected++;
        reply_reject(e, c, q, r, o.code, o.message, o.seq, o.checksum, 0);
        break;
    }
}

static void do_sync(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    if (denied(e, c, q, MX_RIGHT_READ))
        return;
    struct mx_room *r = existing_room(e, c, q);
    if (r)
        reply_catch_up(e, c, q, r);
}

static void do_get(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    if (denied(e, c, q, MX_RIGHT_READ))
        return;
    struct mx_room *r = existing_room(e, c, q);
    if (r)
        reply_snapshot(e, c, q, r);
}

/* ---- presence (presence.h): ephemeral, never logged, never in seq or
 * checksum; its messages depend on no storage decision (free) ---- */

struct announce {
    mx_engine *e;
    struct mx_room *r;
};

/* Tell every other subscriber of r about en (its state, or that it left). */
static void presence_announce_cb(void *ctx, const struct mx_presence_entry *en)
{
    struct announce *a = ctx;
    struct mx_room *r = a->r;
    if (!en->remote && a->e->ph.local)
        a->e->ph.local(a->e->ph.priv, r->id, r->idlen, en->conn, en->client, en->clientlen, en->state,
                       en->statelen);
    if (r->nsubs == 0 || (r->nsubs == 1 && r->subs[0] == en->owner))
        return;
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    mx_proto_presence(&b, &(struct mx_msg_presence){
                              .h = {.room = r->id, .roomlen = r->idlen}, .client = en->client,
                              .clientlen = en->clientlen, .conn = en->conn, .state = en->state,
                              .statelen = en->statelen});
    mx_frame *f = mx_frame_from_buf(&b);
    for (size_t i = 0; i < r->nsubs; i++) {
        struct mx_conn *s = r->subs[i];
        if (s == en->owner)
            continue;
        if (!f) { /* a subscriber that misses it would show a stale presence */
            close_conn(s, 1011, "server out of memory");
            continue;
        }
        size_t before = a->e->nout;
        push(a->e, s, mx_frame_ref(f));
        mark_free(a->e, before);
    }
    mx_frame_unref(f);
}

/* c leaves r (unsubscribe, disconnect): its presence, if any, is gone and
 * the others are told at once. */
static void presence_leave(mx_engine *e, struct mx_conn *c, struct mx_room *r)
{
    struct mx_presence_entry gone;
    if (!mx_presence_remove(&r->presence, c, &gone))
        return;
    struct announce a = {e, r};
    presence_announce_cb(&a, &gone);
}

/* Announce the presence changes that are due (once per loop turn). */
static void flush_presence(mx_engine *e)
{
    if (!e->npres)
        return;
    uint64_t now = now_ms();
    size_t keep = 0;
    for (size_t i = 0; i < e->npres; i++) {
        char *id = e->pres_rooms[i];
        /* by id, not pointer: the room may have been deleted or evicted */
        struct mx_room *r = mx_map_get(e->rooms, id, strlen(id));
        int waiting = 0;
        if (r && r->presence) {
            struct announce a = {e, r};
            waiting = mx_presence_flush(&r->presence, now, MX_PRESENCE_INTERVAL_MS,
                                        presence_announce_cb, &a);
            if (r->presence)
                *mx_presence_listed(r->presence) = waiting;
        }
        if (waiting)
            e->pres_rooms[keep++] = id;
        else
            free(id);
    }
    e->npres = keep;
}

int mx_engine_presence_waiting(const mx_engine *e) { return e->npres > 0; }

/* Set (or clear, state NULL) owner's presence in r and put r on the list
 * of tables to flush. The list has room before the change, so a failure
 * (MX_ENOMEM) leaves nothing half done. */
static int presence_change(mx_engine *e, struct mx_room *r, const void *owner, int remote,
                           uint64_t conn, const char *client, size_t clientlen, const char *state,
                           size_t len)
{
    int listed = r->presence && *mx_presence_listed(r->presence);
    if (!listed && e->npres == e->cappres) {
        size_t ncap = e->cappres ? e->cappres * 2 : 16;
        char **n = mx_realloc(e->pres_rooms, ncap * sizeof(*n));
        if (!n)
            return MX_ENOMEM;
        e->pres_rooms = n;
        e->cappres = ncap;
    }
    char *id = listed ? NULL : mx_strdup(r->id);
    if (!listed && !id)
        return MX_ENOMEM;
    int rc = remote ? mx_presence_set_remote(&r->presence, owner, conn, client, clientlen, state, len)
                    : mx_presence_set(&r->presence, owner, conn, client, clientlen, state, len);
    if (rc) {
        free(id);
        return MX_ENOMEM;
    }
    if (id && r->presence) {
        e->pres_rooms[e->npres++] = id;
        *mx_presence_listed(r->presence) = 1;
    } else {
        free(id); /* cleared without an entry: nothing to announce */
    }
    return 0;
}

void mx_engine_set_presence_hook(mx_engine *e, const struct mx_engine_presence_hook *h) { e->ph = *h; }

static void local_gone_cb(void *ctx, const struct mx_presence_entry *en)
{
    struct announce *a = ctx;
    if (!en->remote)
        a->e->ph.local(a->e->ph.priv, a->r->id, a->r->idlen, en->conn, en->client, en->clientlen, NULL, 0);
}

/* r goes away with its subscribers (deleted, or gone from the cluster):
 * the other nodes learn that its local connections left (its subscribers
 * are told by an error, not by presence messages) and that this node no
 * longer holds it. */
static void cluster_room_gone(mx_engine *e, struct mx_room *r)
{
    if (!e->ph.held || !r->nsubs)
        return;
    struct announce a = {e, r};
    /* changes held back by the rate limit first (a clear among them has
     * no state left for the walk below to find) */
    mx_presence_flush(&r->presence, now_ms(), 0, presence_announce_cb, &a);
    mx_presence_each(r->presence, NULL, local_gone_cb, &a);
    e->ph.held(e->ph.priv, r->id, r->idlen, 0);
}

uint64_t mx_engine_new_conn_id(void *engine)
{
    mx_engine *e = engine;
    return ++e->last_conn_id;
}

void mx_engine_presence_remote(void *engine, const char *room, size_t roomlen, const void *owner,
                               uint64_t conn, const char *client, size_t clientlen, const char *state,
                               size_t statelen)
{
    mx_engine *e = engine;
    struct mx_room *r = mx_map_get(e->rooms, room, roomlen);
    if (!r)
        return;
    if (!state) { /* gone: the others are told at once, as for a disconnect */
        struct mx_presence_entry gone;
        if (mx_presence_remove(&r->presence, owner, &gone)) {
            struct announce a = {e, r};
            presence_announce_cb(&a, &gone);
        }
        return;
    }
    if (presence_change(e, r, owner, 1, conn, client, clientlen, state, statelen))
        mx_warn("event=presence_dropped room=%s client=%.*s reason=\"out of memory\"", r->id,
                (int)clientlen, client);
}

static void do_presence(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    struct mx_room *r = room_to_write(e, c, q, "setting a presence in it");
    if (!r)
        return;
    mx_buf v;
    mx_buf_init(&v, 0);
    int clear = json_is_null(q->presence);
    if (!clear && (mx_json_dump_jansson(q->presence, &v) || v.oom)) {
        if (v.oom)
            goto oom; /* not the client's fault */
        mx_buf_free(&v);
        reply_error(e, c, q->has_id, q->id, MX_EBAD_REQUEST, "the state must be JSON of finite numbers");
        return;
    }
    if (!clear && v.len > r->type.max_presence_bytes) {
        char msg[120];
        snprintf(msg, sizeof(msg), "the presence state is %zu bytes, over this room type's max_presence_bytes %zu",
                 v.len, r->type.max_presence_bytes);
        mx_buf_free(&v);
        reply_error(e, c, q->has_id, q->id, MX_ETOO_LARGE, msg);
        return;
    }
    /* the room's total bounds the presence list of a subscribe reply, which
     * must fit a connection's max_queue_bytes for newcomers to join */
    size_t others = mx_presence_bytes_without(r->presence, c);
    if (!clear && others + v.len > r->type.max_presence_room_bytes) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "the room's presence states would total %zu bytes, over this room type's "
                 "max_presence_room_bytes %zu; the presence was not set",
                 others + v.len, r->type.max_presence_room_bytes);
        mx_buf_free(&v);
        reply_error(e, c, q->has_id, q->id, MX_ETOO_LARGE, msg);
        return;
    }
    if (presence_change(e, r, c, 0, c->conn_id, c->client, c->clientlen,
                        clear ? NULL : mx_buf_data(&v), v.len))
        goto oom;
    mx_buf_free(&v);
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    struct mx_msg_head h = reply_head(q, r);
    mx_proto_presence_ok(&b, &h);
    push_free_buf(e, c, &b);
    return;
oom:
    mx_buf_free(&v);
    reply_error(e, c, q->has_id, q->id, MX_ENOMEM, "out of memory; the presence was not set");
}

static void do_ping(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    struct mx_msg_head h = reply_head(q, NULL);
    mx_proto_pong(&b, &h);
    push_free_buf(e, c, &b);
}

/* The top-level "id" of a message the parser refused (nesting past its own
 * limit, a key holding U+0000, broken JSON), so the error can still name
 * the request. A plain scan: strings and depth are tracked, nothing else is
 * interpreted. It must find the id wherever the parser would have: a key
 * spelled with escapes ("i\u0064") is "id", any JSON number that
 * mx_proto_decode takes as an id (1, 1.0, 1e2) counts, JSON whitespace may
 * follow it, and of duplicate keys the last one wins, as in jansson. */
static int key_is_id_text(const char *k, size_t n)
{
    char want[2] = {'i', 'd'};
    size_t got = 0;
    for (size_t i = 0; i < n; got++) {
        char ch = k[i];
        if (ch == '\\' && i + 5 < n && k[i + 1] == 'u') {
            unsigned v = 0;
            for (size_t h = i + 2; h < i + 6; h++) {
                char x = k[h];
                v = v * 16 + (unsigned)(x >= '0' && x <= '9'   ? x - '0'
                                        : x >= 'a' && x <= 'f' ? x - 'a' + 10
                                        : x >= 'A' && x <= 'F' ? x - 'A' + 10
                                                               : 0x10000);
            }
            if (v > 0x7f)
                return 0;
            ch = (char)v;
            i += 6;
        } else if (ch == '\\') {
            return 0; /* \n, \" ...: no such character in "id" */
        } else {
            i++;
        }
        if (got >= 2 || ch != want[got])
            return 0;
    }
    return got == 2;
}

/* A JSON number at m[j..len) that is an integer in 0..MX_MAX_SAFE_INT,
 * ended by whitespace, ',' or '}'. The value is read with strtod, as
 * jansson reads reals, so 1.0 and 1e2 give what the parser gives. */
static int scan_number_id(const char *m, size_t j, size_t len, uint64_t *id)
{
    size_t s = j;
    while (j < len && ((m[j] >= '0' && m[j] <= '9') || m[j] == '.' || m[j] == 'e' || m[j] == 'E' ||
                       m[j] == '+' || m[j] == '-'))
        j++;
    if (j == s || j - s > 40 || m[s] < '0' || m[s] > '9')
        return 0;
    if (j < len && m[j] != ',' && m[j] != '}' && m[j] != ' ' && m[j] != '\t' && m[j] != '\n' && m[j] != '\r')
        return 0;
    char num[41];
    memcpy(num, m + s, j - s);
    num[j - s] = '\0';
    char *end;
    double d = strtod(num, &end);
    if (*end || !(d >= 0) || d > MX_MAX_SAFE_INT || floor(d) != d)
        return 0;
    *id = (uint64_t)d;
    return 1;
}

static int scan_id(const char *m, size_t len, uint64_t *id)
{
    int depth = 0, in_str = 0, key_is_id = 0, found = 0;
    size_t str_start = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = m[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"') {
                in_str = 0;
                key_is_id = depth == 1 && key_is_id_text(m + str_start, i - str_start);
            }
            continue;
        }
        if (ch == '"') {
            in_str = 1;
            str_start = i + 1;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            depth--;
        } else if (ch == ':' && key_is_id) {
            size_t j = i + 1;
            while (j < len && (m[j] == ' ' || m[j] == '\t' || m[j] == '\n' || m[j] == '\r'))
                j++;
            found = scan_number_id(m, j, len, id);
            key_is_id = 0;
        } else if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            key_is_id = 0;
        }
    }
    return found;
}

void mx_engine_admin_action(mx_engine *e, struct mx_conn *c, const char *room, size_t roomlen,
                            const char *key, size_t keylen, const json_t *action)
{
    c->admin = 1;
    c->hello = 1;
    c->clientlen = (size_t)snprintf(c->client, sizeof(c->client), "admin:%.*s", (int)keylen, key);
    if (!keylen || c->clientlen >= sizeof(c->client) || !mx_proto_client_ok(c->client, c->clientlen)) {
        reply_error(e, c, 0, 0, MX_EBAD_REQUEST,
                    "the idempotency key must be 1..122 bytes of A-Z a-z 0-9 _ . : @ -");
        return;
    }
    json_t *msg = json_pack("{s:s, s:i, s:s%, s:i, s:O}", "type", "action", "id", 0, "room", room, roomlen,
                            "n", 1, "action", action);
    mx_buf b;
    mx_buf_init(&b, 0);
    if (!msg || mx_json_dump_jansson(msg, &b)) {
        json_decref(msg);
        mx_buf_free(&b);
        reply_error(e, c, 0, 0, MX_EBAD_REQUEST, "the action must be a JSON object of finite numbers");
        return;
    }
    json_decref(msg);
    mx_engine_handle(e, c, mx_buf_data(&b), b.len);
    mx_buf_free(&b);
}

int mx_engine_room_json(mx_engine *e, const char *room, size_t roomlen, mx_buf *out)
{
    int err = 0;
    if (!mx_proto_room_type_len(room, roomlen))
        return MX_EBAD_ROOM;
    struct mx_room *r = find_room(e, room, roomlen, &err);
    if (!r)
        return err;
    mx_buf_puts(out, "{\"room\":");
    mx_json_dump_string(r->id, r->idlen, out);
    mx_proto_field_u64(out, "seq", r->seq);
    mx_proto_field_hex(out, "checksum", r->checksum);
    mx_proto_field_u64(out, "subscribers", r->nsubs);
    mx_buf_puts(out, ",\"state\":");
    mx_json_dump(r->state, out);
    mx_buf_puts(out, "}\n");
    return out->oom ? MX_ENOMEM : 0;
}

void mx_engine_rooms_json(mx_engine *e, mx_buf *out)
{
    size_t it = 0, len;
    const char *key;
    void *val;
    int first = 1;
    mx_buf_puts(out, "{\"loaded\":[");
    while (mx_map_next(e->rooms, &it, &key, &len, &val)) {
        struct mx_room *r = val;
        mx_buf_puts(out, first ? "{\"room\":" : ",{\"room\":");
        first = 0;
        mx_json_dump_string(r->id, r->idlen, out);
        mx_proto_field_u64(out, "seq", r->seq);
        mx_proto_field_u64(out, "subscribers", r->nsubs);
        mx_buf_putc(out, '}');
    }
    struct mx_storage_stats ss;
    e->st->stats(e->st->ctx, &ss);
    mx_buf_puts(out, "]");
    mx_proto_field_u64(out, "on_disk", ss.rooms_on_disk);
    mx_buf_puts(out, "}\n");
}

void mx_engine_refuse(mx_engine *e, struct mx_conn *c, const char *msg, size_t len, int err,
                      const char *message)
{
    uint64_t id = 0;
    int has_id = scan_id(msg, len, &id);
    reply_error(e, c, has_id, id, err, message);
}

/* Cluster mode without a usable Redis (or a request handled again only to
 * be refused): an action gets `reject unavailable` (n not used up) when
 * its room is in memory, anything else an error `unavailable`. */
static void cluster_unavailable(mx_engine *e, struct mx_conn *c, const struct mx_request *q)
{
    struct mx_room *r = mx_map_get(e->rooms, q->room, q->roomlen);
    const char *why = "the cluster's Redis is not reachable or the outcome of the call is unknown; "
                      "resend (a resend of the same n is answered exactly once)";
    if (q->type == MX_REQ_ACTION && r) {
        e->stats.actions_unavailable++;
        /* the head Redis confirmed: the replica may hold decisions whose
         * outcome is unknown */
        uint64_t seq = r->seq;
        uint8_t sum[MX_DIGEST_LEN];
        memcpy(sum, r->checksum, MX_DIGEST_LEN);
        mx_cnode_head(e->cl, r->id, r->idlen, &seq, sum);
        size_t before = e->nout;
        reply_reject(e, c, q, r, MX_EUNAVAILABLE, why, seq, sum, 0);
        mark_free(e, before);
        return;
    }
    if (q->type == MX_REQ_ACTION)
        e->stats.actions_unavailable++;
    reply_error(e, c, q->has_id, q->id, MX_EUNAVAILABLE, why);
}

static void handle(mx_engine *e, struct mx_conn *c, const char *msg, size_t len);

void mx_engine_handle_at(mx_engine *e, struct mx_conn *c, const char *msg, size_t len, uint64_t t_us)
{
    if (c->closed)
        return; /* closing: what a refused client still sends is not served */
    e->stats.messages_in++;
    e->cur_t_us = e->now_us = t_us;
    handle(e, c, msg, len);
}

void mx_engine_handle(mx_engine *e, struct mx_conn *c, const char *msg, size_t len)
{
    mx_engine_handle_at(e, c, msg, len, mx_now_us());
}

void mx_engine_handle_again(mx_engine *e, struct mx_conn *c, const char *msg, size_t len,
                            uint64_t t_us, int unavailable)
{
    if (c->closed)
        return;
    e->cur_t_us = t_us; /* when it first arrived (ack latency) */
    e->now_us = mx_now_us();
    e->unavailable = unavailable;
    handle(e, c, msg, len);
    e->unavailable = 0;
}

static void handle(mx_engine *e, struct mx_conn *c, const char *msg, size_t len)
{
    e->wall_ms = 0; /* read when a reducer needs it (wall_ms) */
    json_error_t jerr;
    /* running out of memory is not the client's fault: no_memory, not bad_json */
    int oom = 0;
    /* the fast parser builds jansson's tree for ordinary messages; anything
     * else (errors included) goes to jansson, whose answer stands */
    json_t *j = NULL;
    int depth = -1;
    /* the action's source text, when the log entry can copy it as is */
    struct mx_json_raw raw = {.key = "action", .keylen = 6};
    /* an ordinary request: its members as a flat list, no top-level
     * object built (json_parse.h); else the whole tree */
    struct mx_json_top top;
    /* an action's patch straight from the bytes, no tree (patch.h) */
    struct mx_patch_view view;
    int fast = mx_json_parse_action(msg, len, &top, &depth, &raw, &view);
    int flat = fast == MX_JP_OK;
    if (fast == MX_JP_FALLBACK)
        fast = mx_json_parse(msg, len, &j, &depth, &raw);
    if (fast == MX_JP_OOM)
        oom = 1;
    else if (fast == MX_JP_FALLBACK)
        j = mx_json_loadb(msg, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr, &oom);
    if (!flat && !j && (oom || json_error_code(&jerr) == json_error_stack_overflow)) {
        char why[120];
        snprintf(why, sizeof(why), "message nests deeper than max_depth %d", e->cfg->max_depth);
        uint64_t id = 0;
        int has_id = scan_id(msg, len, &id);
        reply_error(e, c, has_id, id, oom ? MX_ENOMEM : MX_ETOO_DEEP,
                    oom ? "out of memory; the message was not handled" : why);
        return;
    }
    if (!flat && (!j || !json_is_object(j))) {
        char why[220];
        if (j)
            snprintf(why, sizeof(why), "a message must be a JSON object");
        else
        {
            /* jansson quotes the offending input, which may be invalid
             * UTF-8: keep the reply valid JSON text */
            for (char *t = jerr.text; *t; t++)
                if ((unsigned char)*t < 0x20 || (unsigned char)*t >= 0x7f)
                    *t = '?';
            snprintf(why, sizeof(why), "invalid JSON at byte %d: %s", jerr.position, jerr.text);
        }
        json_decref(j);
        /* echo the request's id when the text shows one, so the client
         * is not left waiting for an answer (a key holding U+0000, which
         * jansson cannot parse, in an otherwise valid request) */
        uint64_t id = 0;
        int has_id = !j && scan_id(msg, len, &id);
        reply_error(e, c, has_id, id, MX_EBAD_JSON, why);
        return;
    }
    struct mx_request q;
    char why[200] = "";
    int rc;
    if (depth < 0)
        depth = mx_json_depth(j, e->cfg->max_depth);
    if (depth > e->cfg->max_depth) {
        snprintf(why, sizeof(why), "message nests deeper than max_depth %d", e->cfg->max_depth);
        /* only to echo a valid id */
        if (flat)
            mx_proto_decode_top(&top, &q, why + strlen(why), 0);
        else
            mx_proto_decode(j, &q, why + strlen(why), 0);
        reply_error(e, c, q.has_id, q.id, MX_ETOO_DEEP, why);
        goto done;
    }
    rc = flat ? mx_proto_decode_top(&top, &q, why, sizeof(why)) : mx_proto_decode(j, &q, why, sizeof(why));
    q.msglen = len;
    q.action_text = raw.text;
    q.action_len = raw.len;
    if (rc) {
        reply_error(e, c, q.has_id, q.id, rc, why);
        goto done;
    }
    if (!c->hello && q.type != MX_REQ_HELLO) {
        reply_error(e, c, q.has_id, q.id, MX_EHELLO_FIRST, "the first message must be hello");
        goto done;
    }
    if (c->authed && c->token.exp) {
        /* checked on every request, not only at hello */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (!mx_token_left(&c->token, (int64_t)ts.tv_sec, e->cfg->auth_leeway_ms / 1000)) {
            e->stats.auth_failures++;
            reply_error(e, c, q.has_id, q.id, MX_EUNAUTHORIZED, "the token expired");
            close_conn(c, MX_CLOSE_UNAUTHORIZED, "token expired");
            goto done;
        }
    }
    if (e->cl && q.room) {
        /* cluster mode: the room must be ready (cluster_node.h) */
        struct mx_gate *g = NULL;
        enum mx_cnode_verdict v =
            e->unavailable ? MX_CNODE_DOWN : mx_cnode_gate(e->cl, c, &q, msg, len, e->cur_t_us, &g);
        if (v == MX_CNODE_QUEUED)
            goto done;
        if (v == MX_CNODE_DOWN) {
            e->cur = &q;
            cluster_unavailable(e, c, &q);
            e->cur = NULL;
            goto done;
        }
        e->gate = g;
    }
    e->cur = &q;
    switch (q.type) {
    case MX_REQ_HELLO: do_hello(e, c, &q); break;
    case MX_REQ_CREATE: do_create(e, c, &q); break;
    case MX_REQ_SUBSCRIBE: do_subscribe(e, c, &q); break;
    case MX_REQ_UNSUBSCRIBE: do_unsubscribe(e, c, &q); break;
    case MX_REQ_ACTION: do_action(e, c, &q); break;
    case MX_REQ_SYNC: do_sync(e, c, &q); break;
    case MX_REQ_GET: do_get(e, c, &q); break;
    case MX_REQ_PING: do_ping(e, c, &q); break;
    case MX_REQ_PRESENCE: do_presence(e, c, &q); break;
    }
    e->cur = NULL;
done:
    mx_gate_unref(e->gate);
    e->gate = NULL;
    json_decref(j);
    mx_json_top_free(&top);
}
