/* cluster_commit.c - cluster mode's commit path (issue #14, docs/CLUSTER.md,
 * the flow in include/movexd/cluster_node.h): the node's two Redis links,
 * the gate in front of every request naming a room, each room's queue and
 * batches, FCALL movexd_append / movexd_create and what their answers do
 * to the gates.
 *
 * Invariants, per room:
 * - at most one call of the room in flight (busy != CN_IDLE); while busy,
 *   or while anything of the room is queued, new requests of the room are
 *   queued, so the room's requests are handled in arrival order;
 * - the forming batch holds the actions decided in this loop turn on the
 *   confirmed head; a request that depends on the room's state (get,
 *   subscribe, sync, unsubscribe) is never handled on top of it: it waits
 *   for the batch's answer, so no reply ever shows unconfirmed state;
 * - every reply to an action of a batch is held behind its slot's gate
 *   until Redis answered: an ack leaves only once Redis has the entry;
 * - a batch's decisions stay undoable (mx_room_batch_begin at its first
 *   slot) until the answer: confirmed whole, they are committed; otherwise
 *   the whole batch is rolled back before anything else touches the room;
 * - slots pass in order up to the first one Redis did not confirm; that one
 *   and the later ones fail, and their messages are handled again first, on
 *   the fresh head (the rolled-back replica brought forward, or reloaded
 *   after a fork, a rollback or a failed call);
 * - the engine is called (handling messages again, forgetting a room) only
 *   from cn_drain, at mx_cnode_flush: callbacks may run inside the engine
 *   (a command that fails at once), see cluster_room.h;
 * - a room's bookkeeping is freed (mx_cnode_evict, drain) only when none
 *   of the above is in motion for it.
 */
#include "movexd/cluster_node.h"
#include "movexd/alloc.h"
#include "movexd/cluster_journal.h"
#include "movexd/cluster_room.h"
#include "movexd/digest.h"
#include "movexd/engine.h"
#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/metrics.h"
#include "movexd/proto.h"
#include "movexd/redis_adapter.h"
#include "movexd/reducer.h"
#include "movexd/room.h"

#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One FCALL carries at most this many actions / about this many bytes of
 * their messages (at least one action): what arrives beyond waits in the
 * room's queue for the next batch. Unbounded, a room flooded by pipelining
 * clients sent everything one turn read as one call - past 100,000
 * actions mx_cluster_append_wait refuses it (every action `unavailable`,
 * and the resends the same again), past Redis's client-query-buffer-limit
 * (1 GB) Redis drops the link; and one huge call blocks Redis and
 * publishes past the pub/sub output limit of every subscriber node. */
#define BATCH_MAX_ACTIONS 1024
#define BATCH_MAX_BYTES (16u << 20)

static int batch_full(const struct cn_room *cr)
{
    return cr->nforming >= BATCH_MAX_ACTIONS || (cr->nforming && cr->forming_bytes >= BATCH_MAX_BYTES);
}

/* ---- gates ---- */

static struct mx_gate *gate_new(void)
{
    struct mx_gate *g = mx_calloc(1, sizeof *g);
    if (g)
        g->refs = 1;
    return g;
}

struct mx_gate *mx_gate_ref(struct mx_gate *g)
{
    g->refs++;
    return g;
}

void mx_gate_unref(struct mx_gate *g)
{
    if (g && --g->refs == 0)
        free(g);
}

/* ---- rooms, queues, slots ---- */

static struct cn_room *room_get(struct mx_cnode *n, const char *id, size_t len, int make)
{
    struct cn_room *cr = mx_map_get(n->rooms, id, len);
    if (cr || !make)
        return cr;
    cr = mx_calloc(1, sizeof *cr);
    const char *p = n->cfg->cluster.key_prefix;
    size_t chlen = strlen(p) + len + 6;
    if (cr) {
        cr->id = mx_malloc(len + 1);
        cr->channel = mx_malloc(chlen);
    }
    if (!cr || !cr->id || !cr->channel || mx_map_put(n->rooms, id, len, cr)) {
        if (cr) {
            free(cr->id);
            free(cr->channel);
        }
        free(cr);
        return NULL;
    }
    cr->node = n;
    memcpy(cr->id, id, len);
    cr->id[len] = '\0';
    cr->idlen = len;
    snprintf(cr->channel, chlen, "%s{%s}:ch", p, cr->id);
    return cr;
}

static void msg_free(struct mx_cnode *n, struct cn_msg *m)
{
    if (m->msg)
        n->live_msgs--;
    free(m->msg);
    m->msg = NULL;
}

void cn_msg_free(struct mx_cnode *n, struct cn_msg *m) { msg_free(n, m); }

/* A copy of msg (counted in live_msgs). 0 or -1 (OOM). */
static int msg_copy(struct mx_cnode *n, struct cn_msg *m, struct mx_conn *c, const char *msg,
                    size_t len, uint64_t t_us, int type)
{
    memset(m, 0, sizeof *m);
    m->msg = mx_malloc(len + 1);
    if (!m->msg)
        return -1;
    memcpy(m->msg, msg, len);
    m->msg[len] = '\0';
    m->len = len;
    m->conn = c;
    m->t_us = t_us;
    m->type = type;
    n->live_msgs++;
    return 0;
}

int cn_msg_copy(struct mx_cnode *n, struct cn_msg *m, struct mx_conn *c, const char *msg, size_t len,
                uint64_t t_us, int type)
{
    return msg_copy(n, m, c, msg, len, t_us, type);
}

struct cn_room *cn_room_get(struct mx_cnode *n, const char *id, size_t len, int make)
{
    return room_get(n, id, len, make);
}

#define QAT(cr, i) (&(cr)->q[(cr)->qh + (i)])

/* Room for one more message at the queue's end. */
static int queue_grow(struct cn_room *cr)
{
    if (cr->qh + cr->nq < cr->capq)
        return 0;
    if (cr->qh) { /* popped slots at the front: slide down (amortized O(1)) */
        memmove(cr->q, cr->q + cr->qh, cr->nq * sizeof *cr->q);
        cr->qh = 0;
        return 0;
    }
    size_t ncap = cr->capq ? cr->capq * 2 : 8;
    struct cn_msg *q = mx_realloc(cr->q, ncap * sizeof *q);
    if (!q)
        return -1;
    cr->q = q;
    cr->capq = ncap;
    return 0;
}

/* A queued message counts in its connection's pending_bytes, like the
 * replies it will cause: the edge stops reading a connection whose held
 * bytes pass half of max_queue_bytes (session.c flow_check), so a client
 * cannot pile up messages behind a slow room without bound. */
static void q_count(const struct cn_msg *m, int add)
{
    if (!m->conn)
        return;
    if (add)
        m->conn->pending_bytes += m->len;
    else
        m->conn->pending_bytes -= m->len < m->conn->pending_bytes ? m->len : m->conn->pending_bytes;
}

/* Put m (taken over) first in the queue: a failed slot goes before what
 * arrived after it. */
int cn_queue_front(struct mx_cnode *n, struct cn_room *cr, const struct cn_msg *m)
{
    (void)n;
    if (cr->qh) {
        cr->qh--;
    } else {
        if (queue_grow(cr))
            return -1;
        memmove(cr->q + 1, cr->q, cr->nq * sizeof *cr->q);
    }
    cr->q[cr->qh] = *m;
    cr->nq++;
    q_count(m, 1);
    return 0;
}

/* Every queued message is answered `unavailable` when drained. */
void cn_fail_queue(struct cn_room *cr)
{
    for (size_t i = 0; i < cr->nq; i++)
        QAT(cr, i)->unavailable = 1;
}

void cn_due(struct mx_cnode *n, struct cn_room *cr)
{
    if (cr->due)
        return;
    if (n->ndue == n->capdue) {
        size_t ncap = n->capdue ? n->capdue * 2 : 16;
        struct cn_room **d = mx_realloc(n->duel, ncap * sizeof *d);
        if (!d) {
            cn_fail_queue(cr); /* cannot come back to it: nothing may wait forever */
            return;
        }
        n->duel = d;
        n->capdue = ncap;
    }
    cr->due = 1;
    n->duel[n->ndue++] = cr;
    if (n->ctx)
        lws_cancel_service(n->ctx); /* the loop turns and flushes */
}

static int mark_dirty(struct mx_cnode *n, struct cn_room *cr)
{
    if (cr->dirty)
        return 0;
    if (n->ndirty == n->capdirty) {
        size_t ncap = n->capdirty ? n->capdirty * 2 : 16;
        struct cn_room **d = mx_realloc(n->dirty, ncap * sizeof *d);
        if (!d)
            return -1;
        n->dirty = d;
        n->capdirty = ncap;
    }
    n->dirty[n->ndirty++] = cr;
    cr->dirty = 1;
    return 0;
}

int cn_mark_dirty(struct mx_cnode *n, struct cn_room *cr) { return mark_dirty(n, cr); }

static void slot_free(struct mx_cnode *n, struct cn_slot *s)
{
    msg_free(n, &s->m);
    mx_gate_unref(s->gate);
    free(s->client);
    free(s->body);
    memset(s, 0, sizeof *s);
}

int mx_cnode_head(const struct mx_cnode *n, const char *room, size_t len, uint64_t *seq, uint8_t sum[16])
{
    const struct cn_room *cr = mx_map_get(n->rooms, room, len);
    if (!cr || !cr->head.sum[0] || mx_digest_parse_hex(cr->head.sum, strlen(cr->head.sum), sum))
        return -1;
    *seq = cr->head.seq;
    return 0;
}

/* ---- the gate (cluster_node.h step 1) ---- */

int mx_cnode_ready(const struct mx_cnode *n)
{
    return n->cmd && mx_redis_is_up(n->cmd) && n->lib_ok;
}

enum mx_cnode_verdict mx_cnode_gate(struct mx_cnode *n, struct mx_conn *c, const struct mx_request *q,
                                    const char *msg, size_t len, uint64_t t_us,
                                    struct mx_gate **gate)
{
    *gate = NULL;
    struct cn_room *cr = n->pass;
    n->pass = NULL;
    n->cur = NULL;
    n->cur_slot = -1;
    if (!cr) {
        if (!mx_cnode_ready(n)) {
            if (q->type == MX_REQ_ACTION)
                n->st.refused_down++;
            return MX_CNODE_DOWN;
        }
        cr = room_get(n, q->room, q->roomlen, 1);
        if (!cr)
            return MX_CNODE_DOWN;
        int state_dep = q->type != MX_REQ_ACTION && q->type != MX_REQ_PRESENCE;
        if (cr->busy || cr->nq || !cr->known || (cr->nforming && state_dep) ||
            (q->type == MX_REQ_ACTION && batch_full(cr)) || cn_del_pending(cr)) {
            if (queue_grow(cr))
                return MX_CNODE_DOWN;
            if (msg_copy(n, QAT(cr, cr->nq), c, msg, len, t_us, (int)q->type))
                return MX_CNODE_DOWN;
            q_count(QAT(cr, cr->nq), 1);
            cr->nq++;
            if (!cr->known && !cr->busy && !cn_del_pending(cr))
                cn_replica_load(n, cr);
            return MX_CNODE_QUEUED;
        }
    }
    n->cur = cr;
    n->cur_msg = msg;
    n->cur_len = len;
    n->cur_conn = c;
    n->cur_t_us = t_us;
    n->cur_type = (int)q->type;
    if (q->type != MX_REQ_ACTION)
        return MX_CNODE_PASS;
    if (cr->nforming == cr->capforming) {
        size_t ncap = cr->capforming ? cr->capforming * 2 : 8;
        struct cn_slot *f = mx_realloc(cr->forming, ncap * sizeof *f);
        if (!f)
            return MX_CNODE_DOWN;
        cr->forming = f;
        cr->capforming = ncap;
    }
    struct cn_slot *s = &cr->forming[cr->nforming];
    memset(s, 0, sizeof *s);
    if (mark_dirty(n, cr) || !(s->gate = gate_new()))
        return MX_CNODE_DOWN;
    if (msg_copy(n, &s->m, c, msg, len, t_us, (int)q->type)) {
        mx_gate_unref(s->gate);
        return MX_CNODE_DOWN;
    }
    s->m.retries = n->pass_retries;
    if (!cr->nforming) {
        /* the batch's decisions stay undoable until Redis answers: a
         * `moved` rolls them back in place (on_appended) */
        struct mx_room *r = mx_engine_room(n->e, cr->id, cr->idlen);
        if (r && mx_room_batch_begin(r)) {
            slot_free(n, s);
            return MX_CNODE_DOWN;
        }
    }
    cr->forming_bytes += len;
    n->cur_slot = (long)cr->nforming++;
    *gate = mx_gate_ref(s->gate);
    return MX_CNODE_PASS;
}

/* ---- what the engine decided (step 2) ---- */

int mx_cnode_decided(struct mx_cnode *n, struct mx_room *r, struct mx_conn *c,
                     const struct mx_request *q, const struct mx_action_out *o)
{
    struct cn_room *cr = n->cur;
    if (!cr || n->cur_slot < 0)
        return 0;
    struct cn_slot *s = &cr->forming[n->cur_slot];
    s->client = mx_strdup(c->client);
    if (o->decision == MX_DECIDED_APPLIED) {
        s->body = mx_malloc(o->entry_len + 1);
        if (s->body) {
            memcpy(s->body, o->entry_text, o->entry_len);
            s->body[o->entry_len] = '\0';
        }
    }
    if (!s->client || (o->decision == MX_DECIDED_APPLIED && !s->body) ||
        q->ndeps > sizeof s->deps / sizeof s->deps[0]) {
        /* the replica holds a decision Redis will not get: answer
         * unavailable and reload before the room is used again */
        s->m.unavailable = 1;
        s->kind = 0;
        cr->known = 0;
        return MX_ENOMEM;
    }
    s->n = q->n;
    s->strict = q->strict;
    s->base = q->has_base ? q->base : 0;
    s->ndeps = q->ndeps;
    memcpy(s->deps, q->deps, q->ndeps * sizeof q->deps[0]);
    s->seq = o->seq;
    if (o->decision == MX_DECIDED_APPLIED) {
        s->kind = 'a';
        s->body_len = o->entry_len;
        mx_digest_hex(o->checksum, s->what);
    } else {
        s->kind = 'r';
        if (o->code == MX_EAPP_REJECT) {
            /* a reducer's own code is what the client was told: it goes
             * to Redis as it is, so every node's exactly-once memory (and
             * a reload's) answers a resend with that code, not
             * "app_reject" (which replicas turned into reducer_error) */
            const char *code, *text;
            size_t clen;
            mx_reducer_reject_code(o->message, &code, &clen, &text);
            snprintf(s->what, sizeof s->what, "%.*s", (int)clen, code);
        } else {
            snprintf(s->what, sizeof s->what, "%s", mx_err_code(o->code));
        }
    }
    (void)r;
    return 0;
}

struct mx_gate *mx_cnode_created(struct mx_cnode *n, struct mx_room *r)
{
    struct cn_room *cr = n->cur;
    if (!cr || cr->busy || cr->create_gate)
        return NULL;
    mx_buf b;
    mx_buf_init(&b, 0);
    if (mx_json_dump(r->state, &b) || b.oom || mark_dirty(n, cr) || !(cr->create_gate = gate_new()) ||
        msg_copy(n, &cr->create_msg, n->cur_conn, n->cur_msg, n->cur_len, n->cur_t_us, n->cur_type)) {
        mx_buf_free(&b);
        mx_gate_unref(cr->create_gate);
        cr->create_gate = NULL;
        return NULL;
    }
    free(cr->init);
    cr->init = mx_buf_steal(&b);
    mx_digest_hex(r->checksum, cr->head.sum);
    cr->head.seq = cr->head.sub = 0;
    cr->head.hash[0] = '\0';
    mx_cluster_new_inc(cr->head.inc); /* a room created again is another incarnation */
    cr->busy = CN_CREATING;
    cr->create_due = 1;
    n->st.creates++;
    return mx_gate_ref(cr->create_gate);
}

/* ---- answers ---- */

static void on_created(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct cn_room *cr = priv;
    struct mx_cnode *n = cr->node;
    (void)rd;
    int created = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 5 &&
                  rep->element[0]->type == REDIS_REPLY_STRING && !strcmp(rep->element[0]->str, "created");
    int exists = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
                 rep->element[0]->type == REDIS_REPLY_STRING && !strcmp(rep->element[0]->str, "exists");
    free(cr->init);
    cr->init = NULL;
    cr->busy = CN_IDLE;
    if (created) {
        cr->known = 1;
        cr->fwd_seq = 0;
        cr->create_gate->state = MX_GATE_PASSED;
        msg_free(n, &cr->create_msg);
        if (!cr->subscribed && !mx_redis_subscribe(n->sub, cr->channel))
            cr->subscribed = 1;
        cr->recheck = 1;
    } else {
        /* another node created it first (exists), or the outcome is
         * unknown: the local room goes, the request is handled again on
         * the room loaded from Redis, or answered unavailable */
        cr->create_gate->state = MX_GATE_FAILED;
        cr->known = 0;
        cr->drop_room = 1;
        cr->drop_tell = 0;
        if (exists) {
            n->st.create_lost++;
        } else {
            cr->create_msg.unavailable = 1;
            mx_warn("event=cluster_create_failed room=%s error=\"%s\"", cr->id,
                    !rep ? "link down" : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        }
        if (cn_queue_front(n, cr, &cr->create_msg))
            msg_free(n, &cr->create_msg);
        memset(&cr->create_msg, 0, sizeof cr->create_msg);
    }
    mx_gate_unref(cr->create_gate);
    cr->create_gate = NULL;
    cn_due(n, cr);
}

/* Slots from `from` on failed: their replies are dropped, their messages
 * handled again first. After `moved`, a refusal that came with progress
 * (other nodes appended: the room is busy, not stuck) costs no retry - a
 * hot room written from several nodes must not answer `unavailable`
 * because its writers take turns - but every action is answered
 * `unavailable` once it has waited command_timeout_ms since it arrived
 * (the patience of one call); a refusal without progress (Redis's memory
 * answered otherwise, a head that does not match) counts, up to
 * append_retries. */
static void fail_slots(struct mx_cnode *n, struct cn_room *cr, size_t from, int unavailable, int progress)
{
    uint64_t now = mx_now_us(), patience = (uint64_t)n->cfg->cluster.command_timeout_ms * 1000;
    for (size_t i = cr->ninflight; i > from; i--) {
        struct cn_slot *s = &cr->inflight[i - 1];
        s->gate->state = MX_GATE_FAILED;
        if (s->m.conn) {
            if (!progress)
                s->m.retries++;
            s->m.unavailable |= unavailable || s->m.retries > n->cfg->cluster.append_retries ||
                                now - s->m.t_us > patience;
            if (!cn_queue_front(n, cr, &s->m))
                s->m.msg = NULL; /* taken over by the queue */
        }
    }
}

static void free_inflight(struct mx_cnode *n, struct cn_room *cr)
{
    for (size_t i = 0; i < cr->ninflight; i++)
        slot_free(n, &cr->inflight[i]);
    free(cr->inflight);
    cr->inflight = NULL;
    cr->ninflight = 0;
}

/* ---- yields: waiting for the node whose turn it is ---- */

struct yield_timer {
    lws_sorted_usec_list_t sul;
    struct cn_room *cr;
    uint64_t since_us; /* when the wait began: the time yields cost, in /metrics */
};

static void on_yield_timer(lws_sorted_usec_list_t *sul)
{
    struct yield_timer *t = lws_container_of(sul, struct yield_timer, sul);
    t->cr->node->st.yield_timeouts++;
    cn_yield_end(t->cr->node, t->cr); /* the holder did not append in time */
}

static void yield_timer_stop(struct cn_room *cr)
{
    struct yield_timer *t = cr->yield_timer;
    if (!t)
        return;
    cr->node->st.yield_wait_us += mx_now_us() - t->since_us;
    lws_sul_schedule(cr->node->ctx, 0, &t->sul, NULL, LWS_SET_TIMER_USEC_CANCEL);
    free(t);
    cr->yield_timer = NULL;
}

/* The channel brought entries past the confirmed head while the call was
 * in flight (after a yield: the holder's, already here). */
static int published_past_head(const struct cn_room *cr)
{
    return cr->seen_seq > cr->head.seq || (cr->seen_seq == cr->head.seq && cr->seen_sub > cr->head.sub);
}

/* The room waits (CN_YIELDING) for the channel or CN_TURN_MS: 1, or 0 when
 * out of memory (then it decides again at once). */
static int yield_wait(struct mx_cnode *n, struct cn_room *cr)
{
    struct yield_timer *t = mx_calloc(1, sizeof *t);
    if (!t)
        return 0;
    t->cr = cr;
    t->since_us = mx_now_us();
    cr->yield_timer = t;
    cr->busy = CN_YIELDING;
    lws_sul_schedule(n->ctx, 0, &t->sul, on_yield_timer, (lws_usec_t)CN_TURN_MS * 1000);
    return 1;
}

void cn_yield_end(struct mx_cnode *n, struct cn_room *cr)
{
    if (cr->busy != CN_YIELDING)
        return;
    yield_timer_stop(cr);
    cr->busy = CN_IDLE;
    cn_replica_forward(n, cr, NULL); /* what the channel brought meanwhile */
    cn_due(n, cr);
}

static void on_appended(int ok, const char *err, const struct mx_cluster_head *head,
                        const struct mx_cluster_outcome *out, size_t nout, void *priv)
{
    struct cn_room *cr = priv;
    struct mx_cnode *n = cr->node;
    cr->busy = CN_IDLE;
    struct mx_room *r = mx_engine_room(n->e, cr->id, cr->idlen);
    if (!ok) {
        if (r)
            mx_room_batch_rollback(r); /* back to the confirmed head; reloaded before use */
        /* the outcome is unknown (the call may have been applied): every
         * action is answered unavailable; a resend of the same (client, n)
         * is answered from Redis's exactly-once memory */
        n->st.call_failures++;
        mx_warn("event=cluster_append_failed room=%s actions=%zu error=\"%s\"", cr->id, cr->ninflight, err);
        cn_library_check(n, err);
        fail_slots(n, cr, 0, 1, 0);
        free_inflight(n, cr);
        cr->known = 0;
        cn_due(n, cr);
        return;
    }
    size_t j = 0, bad = cr->ninflight;
    for (size_t i = 0; i < cr->ninflight && bad == cr->ninflight; i++) {
        struct cn_slot *s = &cr->inflight[i];
        if (!s->kind)
            continue;
        const struct mx_cluster_outcome *o = j < nout ? &out[j++] : NULL;
        int same = o && ((s->kind == 'a' && o->verdict == MX_CLUSTER_ACK && o->seq == s->seq) ||
                         (s->kind == 'r' && o->verdict == MX_CLUSTER_REJECT && !strcmp(o->code, s->what)));
        if (!same)
            bad = i;
    }
    for (size_t i = 0; i < bad; i++) {
        struct cn_slot *s = &cr->inflight[i];
        s->gate->state = MX_GATE_PASSED;
        if (s->kind == 'a' && s->seq > cr->fwd_seq)
            cr->fwd_seq = s->seq;
    }
    if (bad == cr->ninflight) {
        if (r)
            mx_room_batch_commit(r);
        cn_rb_confirmed(n, cr, &cr->head, head); /* the journal, for a rollback */
        cr->head = *head;
        free_inflight(n, cr);
        cn_replica_settled(n, cr);
        cn_due(n, cr);
        return;
    }
    /* the head moved (or Redis's memory knew better): the whole batch is
     * taken back in place - its confirmed prefix, if any, comes back from
     * the log with the entries that moved the head, in Redis's order and
     * checked by the hash chain - and the rest is decided again on the
     * fresh head */
    n->st.moved++;
    /* progress: other nodes appended; or a yield to the node whose turn
     * it is (every action moved, the head as the batch expected it) */
    int cmp = mx_cluster_id_cmp(head, &cr->head);
    int yield = cmp == 0 && !strcmp(head->hash, cr->head.hash) && nout > 0;
    for (size_t i = 0; i < nout && yield; i++)
        yield = out[i].verdict == MX_CLUSTER_MOVED;
    if (yield)
        n->st.yields++;
    fail_slots(n, cr, bad, 0, cmp > 0 || yield);
    free_inflight(n, cr);
    int in_place = cr->known && r;
    if (r)
        mx_room_batch_rollback(r);
    cr->known = 0;
    /* a head behind the confirmed one is a rollback: the journal first */
    if (cn_rb_check_append(n, cr, head)) {
        cn_due(n, cr);
        return;
    }
    if (!in_place) {
        cn_replica_load(n, cr); /* the replica was not the batch's (out of memory mid-decision) */
    } else if (yield && n->ctx && !published_past_head(cr) && yield_wait(n, cr)) {
        /* the turn's holder appends next: deciding again before its
         * entries are here would only be refused again */
        cr->known = 1;
        n->st.rolled_back++;
        return;
    } else {
        cr->known = 1;
        n->st.rolled_back++;
        cn_replica_forward(n, cr, head); /* from the channel, else one XRANGE */
    }
    cn_due(n, cr);
}

/* ---- flush (step 3) ---- */

static void send_create(struct mx_cnode *n, struct cn_room *cr)
{
    cr->create_due = 0;
    char key[300];
    snprintf(key, sizeof key, "%s{%s}:head", n->cfg->cluster.key_prefix, cr->id);
    const char *argv[] = {"FCALL", "movexd_create", "1", key, cr->head.sum, cr->init, cr->head.inc};
    size_t lens[] = {5, 13, 1, strlen(key), strlen(cr->head.sum), strlen(cr->init), strlen(cr->head.inc)};
    mx_redis_command(n->cmd, 7, argv, lens, on_created, cr);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

size_t cn_batch_actions(const struct cn_slot *s, size_t n, struct mx_cluster_action *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!s[i].kind)
            continue;
        out[k++] = (struct mx_cluster_action){
            .client = s[i].client, .n = s[i].n, .deps = s[i].deps, .ndeps = s[i].ndeps,
            .strict = s[i].strict, .base = s[i].base, .applied = s[i].kind == 'a', .what = s[i].what,
            .body = s[i].body, .body_len = s[i].body_len};
    }
    return k;
}

static void send_batch(struct mx_cnode *n, struct cn_room *cr)
{
    struct mx_cluster_action *a = mx_calloc(cr->nforming, sizeof *a);
    size_t k = a ? cn_batch_actions(cr->forming, cr->nforming, a) : 0;
    cr->inflight = cr->forming;
    cr->ninflight = cr->nforming;
    cr->forming = NULL;
    cr->nforming = cr->capforming = 0;
    cr->forming_bytes = 0;
    cr->busy = CN_APPENDING;
    if (!a) {
        on_appended(0, "out of memory", NULL, NULL, 0, cr);
        return;
    }
    if (k == 0) {
        /* nothing to record (duplicates, refusals): decided on the
         * confirmed head, nothing to wait for */
        struct mx_cluster_head h = cr->head;
        free(a);
        on_appended(1, NULL, &h, NULL, 0, cr);
        return;
    }
    n->st.calls++;
    n->st.batched_actions += k;
    /* with wait_replicas, WAIT N follows the FCALL (group commit to the
     * replicas too): fewer replicas in time fails the call - unavailable */
    const struct mx_cluster_config *cc = &n->cfg->cluster;
    cr->sent_ms = wall_ms();
    mx_cluster_append_turn(n->cmd, cc->key_prefix, cr->id, &cr->head, n->cfg->dedup_window, cr->sent_ms, a, k,
                           cc->wait_replicas, cc->wait_timeout_ms, cc->node_id, on_appended, cr);
    free(a);
}

static void drain(struct mx_cnode *n, struct cn_room *cr);

void mx_cnode_flush(struct mx_cnode *n)
{
    for (int round = 0; round < 8; round++) {
        while (n->ndue) {
            struct cn_room *cr = n->duel[--n->ndue];
            cr->due = 0;
            drain(n, cr);
        }
        if (!n->ndirty)
            break;
        /* drains above may have formed batches; send them (a call that
         * fails at once puts its room back on the due list) */
        size_t nd = n->ndirty;
        struct cn_room **d = n->dirty;
        n->dirty = NULL;
        n->ndirty = n->capdirty = 0;
        for (size_t i = 0; i < nd; i++)
            d[i]->dirty = 0;
        for (size_t i = 0; i < nd; i++) {
            struct cn_room *cr = d[i];
            if (cr->create_due)
                send_create(n, cr);
            else if (cr->nforming && !cr->busy)
                send_batch(n, cr);
            else if (cr->delete_due && !cr->busy)
                cn_del_send(n, cr); /* after the batches decided before it */
            else if (cr->nforming)
                mark_dirty(n, cr); /* cannot happen: the gate queues while busy */
        }
        free(d);
        if (!n->ndue)
            break;
    }
}

/* Entries were published while the room was busy (a call, a load, a
 * snapshot, a replay): once it is idle, fetch what follows its head - the
 * channel will not bring them again, and readers must not wait for the
 * next message to notice. */
static void catch_up_seen(struct mx_cnode *n, struct cn_room *cr)
{
    if (!cr->known || cr->busy || cr->nforming)
        return;
    if (cr->seen_seq > cr->head.seq || (cr->seen_seq == cr->head.seq && cr->seen_sub > cr->head.sub))
        cn_replica_forward(n, cr, NULL);
}

/* A room's memory (its messages and slots already released). */
static void free_room(void *p)
{
    struct cn_room *cr = p;
    yield_timer_stop(cr);
    cn_replica_pub_clear(cr);
    free(cr->pub);
    mx_room_free(cr->loaded);
    free(cr->q);
    free(cr->forming);
    free(cr->inflight);
    free(cr->id);
    free(cr->channel);
    free(cr->init);
    free(cr);
}

/* Hand the room's queue back to the engine while the room is ready. */
static void drain(struct mx_cnode *n, struct cn_room *cr)
{
    if (!cr->busy)
        cn_rb_settled(n, cr); /* an epoch change seen while busy */
    cn_del_drain(n, cr);          /* a delete: asked, answered, or heard */
    if (cr->drop_room) {
        cr->drop_room = 0;
        struct mx_room *r = mx_engine_room(n->e, cr->id, cr->idlen);
        if (r)
            mx_engine_forget_room(n->e, r, cr->drop_tell);
    }
    while (cr->nq && !cr->busy && !n->closing && !cn_del_pending(cr)) {
        struct cn_msg *m = QAT(cr, 0);
        if (m->conn && !m->unavailable) {
            if (!mx_cnode_ready(n)) {
                m->unavailable = 1;
                if (m->type == MX_REQ_ACTION)
                    n->st.refused_down++; /* queued while the link was up, never sent */
            } else if (!cr->known && !cr->absent) {
                cn_replica_load(n, cr);
                if (cr->busy)
                    break;
                continue; /* failed at once: the queue is now unavailable */
            } else if (cr->nforming && m->type != MX_REQ_ACTION && m->type != MX_REQ_PRESENCE) {
                break; /* waits for the batch's answer */
            } else if (m->type == MX_REQ_ACTION && batch_full(cr)) {
                break; /* the next batch */
            }
        }
        struct cn_msg t = *m;
        cr->qh++;
        if (--cr->nq == 0)
            cr->qh = 0;
        q_count(&t, 0);
        if (t.conn) {
            n->pass = cr;
            n->pass_retries = t.retries;
            mx_engine_handle_again(n->e, t.conn, t.msg, t.len, t.t_us, t.unavailable);
            n->pass = NULL;
            n->pass_retries = 0;
        }
        msg_free(n, &t);
    }
    cr->absent = 0;
    catch_up_seen(n, cr);
    if (!cr->known && !cr->busy && !cr->nq && !cr->nforming && !cr->subscribed && !cr->due &&
        !cr->dirty && !cn_del_pending(cr) && !cr->hc_inflight && !mx_engine_room(n->e, cr->id, cr->idlen)) {
        mx_map_del(n->rooms, cr->id, cr->idlen);
        free_room(cr);
    }
}

/* Eviction (docs/CLUSTER.md "Eviction"): the replica leaves memory only
 * when nothing of the room is in motion here - no call, queue, batch,
 * create, snapshot call, rollback hold or pending resync, nothing published
 * past the confirmed head. This node's journal batches of it may stay
 * behind: a fresh load compares them with Redis's head (cn_rb_check_load),
 * so does each link-up for rooms not in memory (cn_rb_check_journal), and
 * an epoch change forgets the whole journal. */
int mx_cnode_evict(struct mx_cnode *n, struct mx_room *r)
{
    struct cn_room *cr = mx_map_get(n->rooms, r->id, r->idlen);
    if (!cr)
        return 1; /* nothing of it here (never loaded through the node) */
    if (!cr->known || cr->busy || cr->nq || cr->nforming || cr->ninflight || cr->due || cr->dirty ||
        cr->rb_hold || cr->snapping || cr->epoch_stale || cr->create_due || cr->drop_room ||
        cr->recheck || cr->loaded || n->pass == cr || r->seq != cr->head.seq || cn_del_pending(cr) ||
        cr->hc_inflight || cr->seen_seq > cr->head.seq)
        return 0;
    if (n->cur == cr) {
        n->cur = NULL; /* it only names the room between a gate and its decision */
        n->cur_slot = -1;
    }
    if (cr->subscribed)
        mx_redis_unsubscribe(n->sub, cr->channel); /* late messages find no room: ignored */
    mx_map_del(n->rooms, cr->id, cr->idlen);
    free_room(cr);
    n->st.evicted++;
    return 1;
}

/* ---- connections, links, node ---- */

void mx_cnode_conn_closed(struct mx_cnode *n, struct mx_conn *c)
{
    if (!n->live_msgs)
        return;
    size_t it = 0, len;
    const char *key;
    void *val;
    while (mx_map_next(n->rooms, &it, &key, &len, &val)) {
        struct cn_room *cr = val;
        for (size_t i = 0; i < cr->nq; i++)
            if (QAT(cr, i)->conn == c)
                QAT(cr, i)->conn = NULL;
        for (size_t i = 0; i < cr->nforming; i++)
            if (cr->forming[i].m.conn == c)
                cr->forming[i].m.conn = NULL;
        for (size_t i = 0; i < cr->ninflight; i++)
            if (cr->inflight[i].m.conn == c)
                cr->inflight[i].m.conn = NULL;
        if (cr->create_msg.conn == c)
            cr->create_msg.conn = NULL;
        if (cr->del_msg.conn == c)
            cr->del_msg.conn = NULL;
    }
}

static void on_library_again(int ok, const char *err, void *priv)
{
    struct mx_cnode *n = priv;
    n->lib_reloading = 0;
    if (!ok)
        mx_warn("event=cluster_library_failed error=\"%s\"", err);
}

/* A call refused as if Redis had another library than this binary's: a
 * node of another version loaded its own after ours (FUNCTION LOAD
 * REPLACE at each link-up; the last one wins). Ours is loaded again - the
 * previous version's nodes work with it, this version's not with theirs
 * (docs/OPERATIONS.md) - one load at a time. */
void cn_library_check(struct mx_cnode *n, const char *err)
{
    if (!err || n->lib_reloading || !mx_cnode_ready(n) ||
        (!strstr(err, "movexd: bad arguments") && !strstr(err, "Function not found")))
        return;
    n->lib_reloading = 1;
    n->st.library_reloads++;
    mx_warn("event=cluster_library_reload reason=\"%s\" note=\"another library than this node's: loading "
            "ours again\"",
            err);
    mx_cluster_load_library(n->cmd, on_library_again, n);
}

static void on_library(int ok, const char *err, void *priv)
{
    struct mx_cnode *n = priv;
    n->lib_ok = ok;
    if (ok) {
        mx_info("event=cluster_ready node=%s", n->cfg->cluster.node_id);
        cn_rb_check_journal(n); /* after the epoch: its reply came first */
    } else {
        mx_warn("event=cluster_library_failed error=\"%s\"", err);
    }
}

/* Every room's replica may have missed entries: each catches up at the
 * next tick it is ready (calls in flight fail on their own). */
static void recheck_all(struct mx_cnode *n)
{
    size_t it = 0, len;
    const char *key;
    void *val;
    while (mx_map_next(n->rooms, &it, &key, &len, &val))
        ((struct cn_room *)val)->recheck = 1;
}

static void on_window(struct mx_redis *r, redisReply *rep, void *priv)
{
    struct mx_cnode *n = priv;
    (void)r;
    char mine[32];
    snprintf(mine, sizeof mine, "%zu", n->cfg->dedup_window);
    if (rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, mine))
        mx_err("event=cluster_config_mismatch key=dedup_window node=%s cluster=%s note=\"nodes of one "
               "cluster must share dedup_window: the exactly-once memory of a room differs by node "
               "(a resend is a duplicate on one and too_old on another)\"",
               mine, rep->str);
}

/* The first node to reach Redis records its dedup_window there; every
 * other one compares (a warning, not a refusal: a rolling change of the
 * setting passes through a mixed cluster). */
static void check_window(struct mx_cnode *n, struct mx_redis *r)
{
    char key[128], val[32];
    int kl = snprintf(key, sizeof key, "%sdedup_window", n->cfg->cluster.key_prefix);
    int vl = snprintf(val, sizeof val, "%zu", n->cfg->dedup_window);
    const char *argv[] = {"SET", key, val, "NX", "GET"};
    size_t lens[] = {3, (size_t)kl, (size_t)vl, 2, 3};
    mx_redis_command(r, 5, argv, lens, on_window, n);
}

static void on_cmd_state(struct mx_redis *r, int up, void *priv)
{
    struct mx_cnode *n = priv;
    n->lib_ok = 0;
    if (up) {
        cn_rb_link_up(n, r); /* answered before the library: ready implies the epoch is known */
        check_window(n, r);
        mx_cluster_load_library(r, on_library, n);
    } else {
        mx_warn("event=cluster_redis_down link=command");
        recheck_all(n);
    }
}

static void on_sub_state(struct mx_redis *r, int up, void *priv)
{
    struct mx_cnode *n = priv;
    (void)r;
    if (!up)
        return;
    /* messages published while the link was down are lost: catch up */
    recheck_all(n);
    mx_cnode_tick(n);
}

/* A room's channel is subscribed (again): what was appended before this
 * moment is in the stream, what comes after will be published to us, so
 * the catch-up must read the stream now, not at link-up. At link-up the
 * SUBSCRIBE (this link) and the XRANGE (the command link) raced, and an
 * entry appended between the two was in neither: the replica stayed
 * behind until the room's next entry, for good in a quiet room. */
static void on_sub_confirmed(struct mx_redis *r, const char *channel, size_t clen, void *priv)
{
    struct mx_cnode *n = priv;
    (void)r;
    struct cn_room *cr = cn_room_of_channel(n, channel, clen);
    if (!cr || !cr->known)
        return; /* a load reads the stream after subscribing, and the tick checks again */
    cr->recheck = 1;
    if (mx_cnode_ready(n) && !cr->busy && !cr->nforming) {
        cr->recheck = 0;
        cn_replica_catch_up(n, cr);
    } /* else the tick does it once the room is idle */
}

static void on_sub_message(struct mx_redis *r, const char *channel, size_t clen, const char *msg,
                           size_t mlen, void *priv)
{
    (void)r;
    cn_replica_message(priv, channel, clen, msg, mlen);
}

struct mx_cnode *mx_cnode_new(const struct mx_config *cfg, mx_engine *e, struct lws_context *ctx,
                              struct lws_vhost *vh)
{
    struct mx_cnode *n = mx_calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->cfg = cfg;
    n->e = e;
    n->ctx = ctx;
    n->cur_slot = -1;
    n->rooms = mx_map_new();
    if (n->rooms && cn_rb_init(n)) {
        mx_map_free(n->rooms, NULL);
        n->rooms = NULL;
    }
    const struct mx_cluster_config *cc = &cfg->cluster;
    struct mx_redis_opts o = {.connect_timeout_ms = cc->connect_timeout_ms,
                              .command_timeout_ms = cc->command_timeout_ms,
                              .reconnect_max_ms = cc->reconnect_max_ms, .on_state = on_cmd_state,
                              .priv = n};
    /* `redis` or `sentinels` (the adapter finds the primary) */
    if (n->rooms)
        n->cmd = mx_redis_new_cluster(ctx, vh, &o, cc);
    o.on_state = on_sub_state;
    o.on_message = on_sub_message;
    if (n->cmd)
        n->sub = mx_redis_new_cluster(ctx, vh, &o, cc);
    if (n->sub)
        mx_redis_on_subscribed(n->sub, on_sub_confirmed);
    if (!n->sub) {
        mx_cnode_free(n);
        return NULL;
    }
    return n;
}

void mx_cnode_free(struct mx_cnode *n)
{
    if (!n)
        return;
    n->closing = 1;
    /* pending callbacks run (with no reply) while the rooms still exist */
    mx_redis_free(n->cmd);
    mx_redis_free(n->sub);
    cn_rb_free(n); /* after the links: a replay's last callback has run */
    size_t it = 0, len;
    const char *key;
    void *val;
    while (n->rooms && mx_map_next(n->rooms, &it, &key, &len, &val)) {
        struct cn_room *cr = val;
        for (size_t i = 0; i < cr->nq; i++)
            msg_free(n, QAT(cr, i));
        for (size_t i = 0; i < cr->nforming; i++)
            slot_free(n, &cr->forming[i]);
        free_inflight(n, cr);
        msg_free(n, &cr->create_msg);
        msg_free(n, &cr->del_msg);
        mx_gate_unref(cr->create_gate);
    }
    if (n->rooms)
        mx_map_free(n->rooms, free_room);
    free(n->duel);
    free(n->dirty);
    free(n);
}

void mx_cnode_tick(struct mx_cnode *n)
{
    if (!mx_cnode_ready(n))
        return;
    size_t it = 0, len;
    const char *key;
    void *val;
    while (mx_map_next(n->rooms, &it, &key, &len, &val)) {
        struct cn_room *cr = val;
        if (cr->busy || cr->nforming)
            continue;
        catch_up_seen(n, cr);
        if (cr->busy)
            continue;
        if (cr->known && cr->recheck) {
            cr->recheck = 0;
            cn_replica_catch_up(n, cr);
        } else if (!cr->known && mx_engine_room(n->e, cr->id, cr->idlen)) {
            cn_replica_load(n, cr); /* a replica left stale by a failed call: readers need it too */
        }
    }
    cn_hc_tick(n); /* rollbacks and deletions a reading node would not see otherwise */
}

void mx_cnode_stats(const struct mx_cnode *n, struct mx_cnode_stats *out) { *out = n->st; }

void mx_cnode_metrics(const struct mx_cnode *n, mx_buf *b)
{
    const struct mx_cnode_stats *s = &n->st;
    mx_metrics_gauge(b, "movexd_cluster_redis_up", "1 while the command link to Redis is up and the library loaded",
                     mx_cnode_ready(n));
    mx_metrics_counter(b, "movexd_cluster_calls_total", "FCALL movexd_append calls sent", s->calls);
    mx_metrics_counter(b, "movexd_cluster_batched_actions_total", "actions sent in those calls",
                       s->batched_actions);
    mx_metrics_counter(b, "movexd_cluster_moved_total",
                       "batches Redis refused in part (the head moved): rolled back, the rest decided again on the fresh head",
                       s->moved);
    mx_metrics_counter(b, "movexd_cluster_call_failures_total",
                       "calls that failed (link down, timeout, error): their actions answered unavailable",
                       s->call_failures);
    mx_metrics_counter(b, "movexd_cluster_refused_down_total",
                       "actions answered unavailable without a call: the command link to Redis was down or the "
                       "library not loaded when they came to be sent",
                       s->refused_down);
    mx_metrics_counter(b, "movexd_cluster_rolled_back_total",
                       "moved batches taken back in place (undo), the rest decided again on the fresh head",
                       s->rolled_back);
    mx_metrics_counter(b, "movexd_cluster_yields_total",
                       "batches answered moved on an unchanged head: another node's turn after it lost a race",
                       s->yields);
    mx_metrics_counter(b, "movexd_cluster_yield_timeouts_total",
                       "yields whose wait ran out (CN_TURN_MS) before the turn's holder appended", s->yield_timeouts);
    mx_metrics_counter(b, "movexd_cluster_yield_wait_us_total",
                       "microseconds rooms spent waiting after a yield (for the holder's entries or the timer)",
                       s->yield_wait_us);
    mx_metrics_counter(b, "movexd_cluster_forwarded_from_channel_total",
                       "catch-ups done from the entries the channel brought while busy (no XRANGE)",
                       s->forwarded_from_channel);
    mx_metrics_counter(b, "movexd_cluster_reloads_total", "rooms (re)loaded from Redis", s->reloads);
    mx_metrics_counter(b, "movexd_cluster_catchups_total", "XRANGE catch-ups of a room", s->catchups);
    mx_metrics_counter(b, "movexd_cluster_applied_foreign_total", "entries of other nodes applied",
                       s->applied_foreign);
    mx_metrics_counter(b, "movexd_cluster_creates_total", "rooms created in Redis by this node", s->creates);
    mx_metrics_counter(b, "movexd_cluster_creates_lost_total", "creates another node won", s->create_lost);
    mx_metrics_gauge(b, "movexd_cluster_rooms", "rooms this node tracks (replicas, loads, queues)",
                     mx_map_len(n->rooms));
    mx_metrics_counter(b, "movexd_cluster_library_reloads_total",
                       "calls refused by another library than this node's (a node of another version loaded it): "
                       "ours loaded again",
                       s->library_reloads);
    mx_metrics_counter(b, "movexd_cluster_rooms_evicted_total",
                       "idle replicas let go (channel unsubscribed; the next use loads from Redis)", s->evicted);
    cn_rb_metrics(n, b);
    cn_snap_metrics(n, b);
    cn_hc_metrics(n, b);
}
