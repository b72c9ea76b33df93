/* cluster_replica.c - each node's replica of the rooms its clients use
 * (issue #14, docs/CLUSTER.md): loading a room from Redis, applying the
 * entries other nodes append (from the room's channel, or fetched with
 * XRANGE), and catch-up after a gap or a link that was down.
 *
 * Invariants:
 * - entries are applied strictly in stream-ID order: an applied action
 *   only as seq = head.seq + 1 (sub 0), a recorded reject only as the next
 *   sub of the same seq; anything further ahead is a gap and is fetched
 *   with XRANGE, anything at or below the head is already applied;
 * - each entry extends the hash chain (sha1(prev + " " + ID + " " +
 *   entry)); a published entry whose hash differs is a fork: the room is
 *   reloaded, never patched up;
 * - an applied entry's logged effects are re-applied (mx_room_replay,
 *   checksum verified); no reducer runs for another node's action, so
 *   replicas cannot diverge; rejects go into the exactly-once memory;
 * - a room is loaded as: the head's initial state, then every stream
 *   entry in order (k3 will start from a snapshot instead of the initial
 *   state: on_head is the place), and replaces the engine's room contents
 *   only once the whole load succeeded; local subscribers then get fwds of
 *   what they had not seen.
 */
#include "movexd/alloc.h"
#include "movexd/cluster_journal.h"
#include "movexd/cluster_room.h"
#include "movexd/digest.h"
#include "movexd/engine.h"
#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/redis_adapter.h"
#include "movexd/reducer.h"
#include "movexd/room.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* "SEQ-SUB" */
static int parse_id(const char *s, size_t len, uint64_t *seq, uint64_t *sub)
{
    const char *dash = memchr(s, '-', len);
    if (!dash || parse_u64(s, (size_t)(dash - s), seq) ||
        parse_u64(dash + 1, len - (size_t)(dash - s) - 1, sub))
        return -1;
    return 0;
}

/* The hash chain of cluster_fn.lua: sha1(prev .. " " .. ID .. " " .. entry). */
static int chain(const char *prev, const char *id, size_t idlen, const char *entry, size_t elen,
                 char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    int ok = x && EVP_DigestInit_ex(x, EVP_sha1(), NULL) && EVP_DigestUpdate(x, prev, strlen(prev)) &&
             EVP_DigestUpdate(x, " ", 1) && EVP_DigestUpdate(x, id, idlen) &&
             EVP_DigestUpdate(x, " ", 1) && EVP_DigestUpdate(x, entry, elen) &&
             EVP_DigestFinal_ex(x, md, &mdlen) && mdlen == 20;
    EVP_MD_CTX_free(x);
    if (!ok)
        return -1;
    for (unsigned i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The first occurrence of lit in s[0..len) (memmem is a GNU extension). */
static const char *find(const char *s, size_t len, const char *lit)
{
    size_t l = strlen(lit);
    for (size_t i = 0; i + l <= len; i++)
        if (s[i] == lit[0] && !memcmp(s + i, lit, l))
            return s + i;
    return NULL;
}

/* The applied entries a (re)load went through, for the fwds local
 * subscribers have not had: the room's history may keep fewer of them
 * (history 0 keeps none), and skipping any would break the per-room seq
 * order of every subscriber (docs/PROTOCOL.md). Bodies point into the
 * XRANGE reply, valid during its callback. */
struct fwd_list {
    struct fwd_item {
        uint64_t seq;
        uint8_t prev[MX_DIGEST_LEN];
        const char *body;
        size_t len;
    } *v;
    size_t n, cap;
    uint8_t last[MX_DIGEST_LEN]; /* keep_old: the checksum after the last entry read */
    int have_last;
};

/* A reload read from what local subscribers saw, behind the snapshot it
 * starts from: an applied entry at or below the snapshot's head is not
 * applied again, only kept for its fwd (its prev: the checksum after the
 * applied entry before it, read first). */
static void keep_old(struct fwd_list *fl, uint64_t from, const char *id, size_t idlen, const char *entry,
                     size_t elen)
{
    uint64_t seq, sub;
    const char *e = find(entry, elen, ",\"e\":");
    json_t *j = parse_id(id, idlen, &seq, &sub) || sub || !e ? NULL
                                                              : json_loadb(entry, elen, JSON_DECODE_INT_AS_REAL, NULL);
    const char *sum = json_string_value(json_object_get(j, "sum"));
    uint8_t sumb[MX_DIGEST_LEN];
    if (sum && !mx_digest_parse_hex(sum, strlen(sum), sumb)) {
        if (seq > from && fl->have_last && fl->n < fl->cap &&
            (!fl->n || fl->v[fl->n - 1].seq + 1 == seq)) {
            struct fwd_item *it = &fl->v[fl->n++];
            it->seq = seq;
            memcpy(it->prev, fl->last, MX_DIGEST_LEN);
            it->body = e + 5;
            it->len = (size_t)(entry + elen - 1 - (e + 5));
        }
        memcpy(fl->last, sumb, MX_DIGEST_LEN);
        fl->have_last = 1;
    }
    json_decref(j);
}

/* Apply one stream entry to r on top of head h. 0: applied (fwd: its fwd
 * pushed to local subscribers; fl: remembered there instead); 1: at or
 * below the head (already had); -2: a gap (an entry before it is
 * missing); -1: refused (broken entry, hash differs from `hash`, or its
 * effects do not reproduce its checksum). */
static int apply_entry(struct mx_cnode *n, struct cn_room *cr, struct mx_cluster_head *h, struct mx_room *r,
                       const char *id, size_t idlen, const char *entry, size_t elen, const char *hash,
                       size_t hashlen, int fwd, struct fwd_list *fl)
{
    uint64_t seq, sub;
    if (parse_id(id, idlen, &seq, &sub))
        return -1;
    if (seq == h->seq && sub == h->sub && hash && h->hash[0] && (hashlen != 40 || memcmp(hash, h->hash, 40))) {
        /* our very head, published with another chain hash: the log went
         * another way (a room deleted and created again, a failover that
         * lost our head and was written past it) - a replica that only
         * reads would otherwise stay on the old history until the next
         * entry's chain failed */
        mx_warn("event=cluster_fork room=%s id=%.*s note=\"the head's hash differs; reloading\"", cr->id,
                (int)idlen, id);
        return -1;
    }
    if (seq < h->seq || (seq == h->seq && sub <= h->sub))
        return 1;
    if (!((seq == h->seq + 1 && sub == 0) || (seq == h->seq && sub == h->sub + 1)))
        return -2;
    char hx[41];
    if (chain(h->hash, id, idlen, entry, elen, hx) || (hash && (hashlen != 40 || memcmp(hx, hash, 40)))) {
        mx_warn("event=cluster_fork room=%s id=%.*s note=\"hash chain differs; reloading\"", cr->id,
                (int)idlen, id);
        return -1;
    }
    json_t *j = json_loadb(entry, elen, JSON_DECODE_INT_AS_REAL, NULL);
    const char *c = json_string_value(json_object_get(j, "c"));
    const char *k = json_string_value(json_object_get(j, "k"));
    json_t *jn = json_object_get(j, "n");
    double dn = json_number_value(jn);
    int rc = -1;
    char why[300] = "malformed entry";
    if (!c || !k || !json_is_number(jn) || dn < 1 || dn > 9007199254740991.0)
        goto out;
    if (!strcmp(k, "a") && sub == 0) {
        const char *sum = json_string_value(json_object_get(j, "sum"));
        const char *e = find(entry, elen, ",\"e\":");
        uint8_t sumb[MX_DIGEST_LEN], prev[MX_DIGEST_LEN];
        if (!sum || strlen(sum) > MX_CLUSTER_SUM_MAX || !e || entry[elen - 1] != '}' ||
            mx_digest_parse_hex(sum, strlen(sum), sumb))
            goto out;
        const char *body = e + 5;
        size_t blen = (size_t)(entry + elen - 1 - body);
        memcpy(prev, r->checksum, MX_DIGEST_LEN);
        if (mx_room_replay(r, seq, prev, sumb, c, strlen(c), (uint64_t)dn, body, blen, 1, why, sizeof why))
            goto out;
        snprintf(h->sum, sizeof h->sum, "%s", sum);
        if (fwd) {
            /* at or below fwd_seq: an entry of this node's own batch,
             * confirmed and forwarded, applied again after the rollback of
             * the batch's refused rest */
            if (seq > cr->fwd_seq) {
                mx_engine_fwd(n->e, r, prev, body, blen);
                cr->fwd_seq = seq;
                n->st.applied_foreign++;
            }
        } else if (fl && seq > cr->fwd_seq && fl->n < fl->cap) {
            struct fwd_item *it = &fl->v[fl->n++];
            it->seq = seq;
            memcpy(it->prev, prev, MX_DIGEST_LEN);
            it->body = body;
            it->len = blen;
        }
    } else if (!strcmp(k, "r") && sub > 0) {
        const char *code = json_string_value(json_object_get(j, "code"));
        int ec = code ? mx_err_from_code(code, strlen(code)) : 0;
        /* any other code is a reducer's own (cluster_commit.c sends it as
         * it is): kept as single-node mode keeps it, "CODE MESSAGE"
         * (reducer.h); the reducer's message is not in the log */
        char app[MX_CLUSTER_CODE_MAX + 64];
        if (!ec && code && mx_reducer_valid_code(code, strlen(code))) {
            ec = MX_EAPP_REJECT;
            snprintf(app, sizeof app, "%s %s", code, mx_err_message(MX_EAPP_REJECT));
        }
        struct mx_outcome o = {.n = (uint64_t)dn, .kind = MX_OUTCOME_REJECT, .code = ec, .seq = r->seq,
                               .message = ec == MX_EAPP_REJECT ? app : NULL};
        memcpy(o.checksum, r->checksum, MX_DIGEST_LEN);
        if (!ec || mx_dedup_record(r->dedup, c, strlen(c), &o)) {
            snprintf(why, sizeof why, "reject of %s n=%.0f not recordable", c, dn);
            goto out;
        }
    } else {
        goto out;
    }
    h->seq = seq;
    h->sub = sub;
    memcpy(h->hash, hx, 41);
    rc = 0;
out:
    if (rc)
        mx_warn("event=cluster_entry_refused room=%s id=%.*s reason=\"%s\"", cr->id, (int)idlen, id, why);
    json_decref(j);
    return rc;
}

/* The value of field "e" of an XRANGE element [id, [field, value, ...]]. */
static int stream_entry(const redisReply *el, const char **id, size_t *idlen, const char **e, size_t *elen)
{
    if (el->type != REDIS_REPLY_ARRAY || el->elements != 2 || el->element[0]->type != REDIS_REPLY_STRING ||
        el->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    const redisReply *f = el->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        if (f->element[i]->type == REDIS_REPLY_STRING && f->element[i]->len == 1 &&
            f->element[i]->str[0] == 'e' && f->element[i + 1]->type == REDIS_REPLY_STRING) {
            *id = el->element[0]->str;
            *idlen = el->element[0]->len;
            *e = f->element[i + 1]->str;
            *elen = f->element[i + 1]->len;
            return *elen ? 0 : -1;
        }
    }
    return -1;
}

static void load_failed(struct mx_cnode *n, struct cn_room *cr, const char *why)
{
    mx_warn("event=cluster_load_failed room=%s reason=\"%s\"", cr->id, why);
    mx_room_free(cr->loaded);
    cr->loaded = NULL;
    free(cr->init);
    cr->init = NULL;
    cr->busy = CN_IDLE;
    cr->known = 0;
    cn_fail_queue(cr);
    cn_due(n, cr);
}

static void on_range_full(struct mx_redis *rd, redisReply *rep, void *priv);
static void on_snap_read(struct mx_cnode *n, struct cn_room *cr, const char *err);

static void on_head(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct cn_room *cr = priv;
    struct mx_cnode *n = cr->node;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
        load_failed(n, cr, !rep ? "link down" : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        return;
    }
    if (rep->element[0]->type != REDIS_REPLY_STRING) {
        /* no such room in Redis: the queue is handled once as such
         * (create, or no_such_room); a room this node had is gone */
        cr->busy = CN_IDLE;
        cr->absent = 1;
        cn_rb_gone(n, cr);
        if (mx_engine_room(n->e, cr->id, cr->idlen)) {
            cr->drop_room = 1;
            cr->drop_tell = 1;
        }
        cn_due(n, cr);
        return;
    }
    if (rep->element[1]->type != REDIS_REPLY_STRING) {
        load_failed(n, cr, "the room's head has no initial state");
        return;
    }
    /* no incarnation: a room created before incarnations ("") */
    const redisReply *inc = rep->element[2];
    if (inc->type == REDIS_REPLY_STRING && inc->len > MX_CLUSTER_INC_MAX) {
        load_failed(n, cr, "the room's incarnation is too long");
        return;
    }
    snprintf(cr->load_inc, sizeof cr->load_inc, "%s", inc->type == REDIS_REPLY_STRING ? inc->str : "");
    free(cr->init);
    cr->init = mx_strdup(rep->element[1]->str);
    if (!cr->init) {
        load_failed(n, cr, "out of memory");
        return;
    }
    /* subscribed before the stream is read: what is appended meanwhile
     * arrives on the channel (and a tick's recheck covers the race
     * between the two links) */
    if (!cr->subscribed && !mx_redis_subscribe(n->sub, cr->channel))
        cr->subscribed = 1;
    cn_snap_read(n, cr, on_snap_read);
}

/* The snapshot (if any) is in cr->loaded: read the stream after it, or
 * all of it. */
static void on_snap_read(struct mx_cnode *n, struct cn_room *cr, const char *err)
{
    if (err) {
        load_failed(n, cr, err);
        return;
    }
    char key[300], from[48] = "-";
    snprintf(key, sizeof key, "%s{%s}:log", n->cfg->cluster.key_prefix, cr->id);
    if (cr->loaded && cr->fwd_seq && cr->fwd_seq < cr->loaded_head.seq &&
        mx_engine_room(n->e, cr->id, cr->idlen))
        /* local subscribers are behind the snapshot: read from what they
         * saw, so what they missed can still be forwarded while the stream
         * has it (keep_old) */
        snprintf(from, sizeof from, "%llu-0", (unsigned long long)cr->fwd_seq);
    else if (cr->loaded)
        snprintf(from, sizeof from, "(%llu-%llu", (unsigned long long)cr->loaded_head.seq,
                 (unsigned long long)cr->loaded_head.sub);
    const char *argv[] = {"XRANGE", key, from, "+"};
    size_t lens[] = {6, strlen(key), strlen(from), 1};
    mx_redis_command(n->cmd, 4, argv, lens, on_range_full, cr);
}

/* A new room at seq 0 from the initial state text. */
static struct mx_room *initial_room(struct mx_cnode *n, struct cn_room *cr)
{
    size_t tl = mx_proto_room_type_len(cr->id, cr->idlen);
    char type[MX_ROOM_TYPE_MAX + 1];
    memcpy(type, cr->id, tl);
    type[tl] = '\0';
    const struct mx_room_type *t = mx_config_room_type(n->cfg, type, tl);
    json_t *j = json_loads(cr->init, JSON_DECODE_INT_AS_REAL, NULL);
    const char *why = "bad initial state";
    mx_val *state = j ? mx_json_from_jansson(j, 0, &why) : NULL;
    json_decref(j);
    if (!state || mx_digest_refresh(state)) {
        mx_json_free(state);
        return NULL;
    }
    int err;
    return mx_room_new(cr->id, cr->idlen, t, state, n->cfg->dedup_window, &err);
}

static void swap_contents(struct mx_room *a, struct mx_room *b)
{
#define SWAP(f)                                                                                    \
    do {                                                                                           \
        __typeof__(a->f) t_ = a->f;                                                                \
        a->f = b->f;                                                                               \
        b->f = t_;                                                                                 \
    } while (0)
    SWAP(state);
    SWAP(seq);
    SWAP(log);
    SWAP(dedup);
    SWAP(batch); /* an open batch belongs to the contents it would undo */
    uint8_t sum[MX_DIGEST_LEN];
    memcpy(sum, a->checksum, MX_DIGEST_LEN);
    memcpy(a->checksum, b->checksum, MX_DIGEST_LEN);
    memcpy(b->checksum, sum, MX_DIGEST_LEN);
#undef SWAP
}

static void on_range_full(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct cn_room *cr = priv;
    struct mx_cnode *n = cr->node;
    (void)rd;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        load_failed(n, cr, !rep ? "link down" : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        return;
    }
    /* from the snapshot (cluster_snapshot.c) at its ID, or from the
     * initial state at 0 */
    struct mx_room *r = cr->loaded;
    struct mx_cluster_head h = {0};
    if (r) {
        h = cr->loaded_head;
        cr->loaded = NULL;
        if (h.seq > cr->snap_seq)
            cr->snap_seq = h.seq; /* the next one is due a history later */
    } else if (!(r = initial_room(n, cr))) {
        load_failed(n, cr, "cannot build the room from its initial state");
        return;
    } else {
        mx_digest_hex(r->checksum, h.sum);
    }
    memcpy(h.inc, cr->load_inc, sizeof h.inc);
    struct mx_room *had = mx_engine_room(n->e, cr->id, cr->idlen);
    if (had && cn_rb_check_inc(n, cr, &h)) {
        /* the room was deleted and created again: nothing of the old one
         * is forwarded, its subscribers resync */
        mx_room_free(r);
        free(cr->init);
        cr->init = NULL;
        return;
    }
    struct fwd_list fl = {0};
    if (had && rep->elements && !(fl.v = mx_malloc(rep->elements * sizeof *fl.v))) {
        mx_room_free(r);
        load_failed(n, cr, "out of memory");
        return;
    }
    fl.cap = had ? rep->elements : 0;
    /* a fresh load: this node's journal batches of the room, to compare
     * the hash at each one's `after` ID with the log's (a fork) */
    const struct mx_journal_batch **jb = NULL, *forked = NULL;
    size_t njb = had ? 0 : mx_journal_lost(n->journal, cr->id, &(struct mx_cluster_head){ 0 }, NULL, 0), ji = 0;
    if (njb && (jb = mx_malloc(njb * sizeof *jb)))
        mx_journal_lost(n->journal, cr->id, &(struct mx_cluster_head){ 0 }, jb, njb);
    else
        njb = 0; /* out of memory: only the newest batch is compared (cn_rb_check_load) */
    for (size_t i = 0; i < rep->elements; i++) {
        const char *id, *e;
        size_t idlen, elen;
        int rc = stream_entry(rep->element[i], &id, &idlen, &e, &elen)
                     ? -1
                     : apply_entry(n, cr, &h, r, id, idlen, e, elen, NULL, 0, 0, &fl);
        if (rc == 1 && had) { /* behind the snapshot: read only for the fwds */
            keep_old(&fl, cr->fwd_seq, id, idlen, e, elen);
            continue;
        }
        while (rc == 0 && !forked && ji < njb && mx_cluster_id_cmp(&jb[ji]->after, &h) <= 0) {
            if (mx_cluster_id_cmp(&jb[ji]->after, &h) == 0 && strcmp(jb[ji]->after.hash, h.hash))
                forked = jb[ji];
            ji++;
        }
        if (rc == -2 && cr->load_gaps < 3) {
            /* another node stored a newer snapshot and trimmed between our
             * two reads: read both again */
            cr->load_gaps++;
            mx_room_free(r);
            free(fl.v);
            free(jb);
            cn_replica_load(n, cr);
            return;
        }
        if (rc != 0) {
            mx_room_free(r);
            free(fl.v);
            free(jb);
            load_failed(n, cr, "an entry of the stream does not apply (see cluster_entry_refused)");
            return;
        }
    }
    cr->load_gaps = 0;
    free(jb);
    if (!had && cn_rb_check_load(n, cr, &h, forked)) {
        /* Redis lost batches this node had acked (while the room was not
         * here): they are sent again, then the room is loaded anew */
        free(fl.v);
        mx_room_free(r);
        free(cr->init);
        cr->init = NULL;
        return;
    }
    struct mx_room *have = had;
    /* what local subscribers have not had must be forwardable, from this
     * load's entries or the loaded history; if not (a snapshot taken past
     * them), they resync like after a rollback - never a silent gap */
    int unforwardable = 0;
    for (uint64_t s = cr->fwd_seq + 1; have && s <= r->seq && !unforwardable; s++)
        unforwardable = !(fl.n && s >= fl.v[0].seq) && !mx_oplog_get(r->log, s);
    if (have && (cn_rb_check_reload(n, cr, &h, have, r) || (unforwardable && cn_rb_resync(n, cr)))) {
        /* the log is behind what subscribers were sent, or what they miss
         * is gone from it: they resync */
        free(fl.v);
        mx_room_free(r);
        free(cr->init);
        cr->init = NULL;
        return; /* busy: a journal replay, or idle and due (cluster_rollback.c) */
    }
    if (have) {
        swap_contents(have, r);
        mx_room_free(r);
        /* local subscribers have seen up to fwd_seq: the rest as fwds */
        for (uint64_t s = cr->fwd_seq + 1; s <= have->seq && cr->fwd_seq < have->seq; s++) {
            if (fl.n && s >= fl.v[0].seq) {
                const struct fwd_item *it = &fl.v[s - fl.v[0].seq];
                mx_engine_fwd(n->e, have, it->prev, it->body, it->len);
                continue;
            }
            const struct mx_oplog_entry *le = mx_oplog_get(have->log, s);
            if (le)
                mx_engine_fwd(n->e, have, le->prev, le->text, le->len);
        }
        cr->fwd_seq = have->seq;
    } else if (mx_engine_adopt_room(n->e, r)) {
        mx_room_free(r);
        load_failed(n, cr, "out of memory");
        return;
    } else {
        cr->fwd_seq = r->seq;
    }
    free(fl.v);
    n->st.reloads++;
    free(cr->init);
    cr->init = NULL;
    cr->head = h;
    cr->known = 1;
    cr->busy = CN_IDLE;
    cr->recheck = 1;
    cn_replica_settled(n, cr);
    cn_due(n, cr);
}

void cn_replica_load(struct mx_cnode *n, struct cn_room *cr)
{
    cr->busy = CN_LOADING;
    cr->known = 0;
    cr->seen_seq = cr->seen_sub = 0;
    cn_replica_pub_clear(cr); /* the load reads the stream after them */
    char key[300];
    snprintf(key, sizeof key, "%s{%s}:head", n->cfg->cluster.key_prefix, cr->id);
    const char *argv[] = {"HMGET", key, "seq", "init", "inc"};
    size_t lens[] = {5, strlen(key), 3, 4, 3};
    mx_redis_command(n->cmd, 5, argv, lens, on_head, cr);
}

static void on_range_more(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct cn_room *cr = priv;
    struct mx_cnode *n = cr->node;
    (void)rd;
    cr->busy = CN_IDLE;
    struct mx_room *r = mx_engine_room(n->e, cr->id, cr->idlen);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || !r) {
        cr->recheck = 1; /* the replica is still consistent, only maybe behind: try later */
        cn_due(n, cr);
        return;
    }
    for (size_t i = 0; i < rep->elements; i++) {
        const char *id, *e;
        size_t idlen, elen;
        int rc = stream_entry(rep->element[i], &id, &idlen, &e, &elen)
                     ? -1
                     : apply_entry(n, cr, &cr->head, r, id, idlen, e, elen, NULL, 0, 1, NULL);
        if (rc < 0) {
            cn_replica_load(n, cr);
            break;
        }
    }
    cn_due(n, cr);
}

void cn_replica_catch_up(struct mx_cnode *n, struct cn_room *cr)
{
    /* the XRANGE reads everything published before it runs; what comes
     * after arrives on the channel later */
    cn_replica_pub_clear(cr);
    cr->busy = CN_CATCHUP;
    n->st.catchups++;
    char key[300], from[48];
    snprintf(key, sizeof key, "%s{%s}:log", n->cfg->cluster.key_prefix, cr->id);
    snprintf(from, sizeof from, "(%llu-%llu", (unsigned long long)cr->head.seq,
             (unsigned long long)cr->head.sub);
    const char *argv[] = {"XRANGE", key, from, "+"};
    size_t lens[] = {6, strlen(key), strlen(from), 1};
    mx_redis_command(n->cmd, 4, argv, lens, on_range_more, cr);
}

void cn_replica_settled(struct mx_cnode *n, struct cn_room *cr)
{
    if (cr->busy || !cr->known)
        return;
    if (cr->seen_seq > cr->head.seq || (cr->seen_seq == cr->head.seq && cr->seen_sub > cr->head.sub))
        cn_replica_forward(n, cr, NULL);
    else
        cn_replica_pub_clear(cr);
    cr->seen_seq = cr->seen_sub = 0;
    if (!cr->busy)
        cn_snap_maybe(n, cr); /* only while the replica is exactly the head */
}

/* What the channel may keep for a busy room: beyond, the room catches up
 * with XRANGE (a hot room writes far fewer entries per round trip). */
#define PUB_MAX 4096
#define PUB_MAX_BYTES (8u << 20)

void cn_replica_pub_clear(struct cn_room *cr)
{
    for (size_t i = 0; i < cr->npub; i++)
        free(cr->pub[i].msg);
    cr->npub = 0;
    cr->pub_bytes = 0;
    cr->pub_lost = 0;
    if (cr->cappub > 64) { /* a burst's array is not kept */
        free(cr->pub);
        cr->pub = NULL;
        cr->cappub = 0;
    }
}

static void pub_keep(struct cn_room *cr, const char *msg, size_t mlen)
{
    if (cr->pub_lost)
        return;
    if (cr->npub == cr->cappub) {
        size_t ncap = cr->cappub ? cr->cappub * 2 : 16;
        struct cn_pub *p = ncap <= PUB_MAX ? mx_realloc(cr->pub, ncap * sizeof *p) : NULL;
        if (!p)
            goto lost;
        cr->pub = p;
        cr->cappub = ncap;
    }
    char *c = cr->pub_bytes + mlen <= PUB_MAX_BYTES ? mx_malloc(mlen + 1) : NULL;
    if (!c)
        goto lost;
    memcpy(c, msg, mlen);
    c[mlen] = '\0';
    cr->pub[cr->npub++] = (struct cn_pub){.msg = c, .len = mlen};
    cr->pub_bytes += mlen;
    return;
lost:
    cn_replica_pub_clear(cr);
    cr->pub_lost = 1;
}

/* "ID HASH ENTRY" */
static int split_pub(const char *msg, size_t mlen, const char **id, size_t *idlen, const char **hash,
                     size_t *hashlen, const char **entry, size_t *elen)
{
    const char *sp1 = memchr(msg, ' ', mlen);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', mlen - (size_t)(sp1 + 1 - msg)) : NULL;
    if (!sp2)
        return -1;
    *id = msg;
    *idlen = (size_t)(sp1 - msg);
    *hash = sp1 + 1;
    *hashlen = (size_t)(sp2 - *hash);
    *entry = sp2 + 1;
    *elen = mlen - (size_t)(*entry - msg);
    return 0;
}

void cn_replica_forward(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *to)
{
    struct mx_room *r = mx_engine_room(n->e, cr->id, cr->idlen);
    int gap = cr->pub_lost || !r;
    for (size_t i = 0; i < cr->npub && !gap; i++) {
        const char *id, *hash, *entry;
        size_t idlen, hashlen, elen;
        int rc = split_pub(cr->pub[i].msg, cr->pub[i].len, &id, &idlen, &hash, &hashlen, &entry, &elen)
                     ? -2
                     : apply_entry(n, cr, &cr->head, r, id, idlen, entry, elen, hash, hashlen, 1, NULL);
        if (rc == -1) { /* a fork: only a reload is sure */
            cn_replica_load(n, cr);
            return;
        }
        gap = rc == -2;
    }
    cn_replica_pub_clear(cr);
    struct mx_cluster_head seen = {.seq = cr->seen_seq, .sub = cr->seen_sub};
    cr->seen_seq = cr->seen_sub = 0;
    int cmp = to ? mx_cluster_id_cmp(&cr->head, to) : 0;
    if (to && cmp == 0 && strcmp(cr->head.hash, to->hash)) {
        mx_warn("event=cluster_fork room=%s note=\"Redis's head has another hash; reloading\"", cr->id);
        cn_replica_load(n, cr);
        return;
    }
    if (cmp < 0 || mx_cluster_id_cmp(&cr->head, &seen) < 0) {
        cn_replica_catch_up(n, cr);
        return;
    }
    n->st.forwarded_from_channel++;
}

struct cn_room *cn_room_of_channel(struct mx_cnode *n, const char *channel, size_t clen)
{
    const char *p = n->cfg->cluster.key_prefix;
    size_t plen = strlen(p);
    if (clen < plen + 5 || memcmp(channel, p, plen) || channel[plen] != '{' ||
        memcmp(channel + clen - 4, "}:ch", 4))
        return NULL;
    return mx_map_get(n->rooms, channel + plen + 1, clen - plen - 5);
}

void cn_replica_message(struct mx_cnode *n, const char *channel, size_t clen, const char *msg, size_t mlen)
{
    struct cn_room *cr = cn_room_of_channel(n, channel, clen);
    if (cr && mlen >= 7 && !memcmp(msg, "delete ", 7)) { /* movexd_delete's notice */
        cn_del_message(n, cr, msg + 7, mlen - 7);
        return;
    }
    const char *id, *hash, *entry;
    size_t idlen, hashlen, elen;
    if (!cr || split_pub(msg, mlen, &id, &idlen, &hash, &hashlen, &entry, &elen))
        return;
    if (cr->busy || cr->nforming || !cr->known) {
        /* the replica holds a call's or a batch's state, or is being
         * (re)loaded: look again once it is settled (a message published
         * after the load's XRANGE was served would otherwise wait for the
         * next tick's recheck) - from the message itself, kept for then */
        uint64_t s, b;
        if (!parse_id(id, idlen, &s, &b) &&
            (s > cr->seen_seq || (s == cr->seen_seq && b > cr->seen_sub))) {
            cr->seen_seq = s;
            cr->seen_sub = b;
            if (s > cr->head.seq || (s == cr->head.seq && b > cr->head.sub))
                pub_keep(cr, msg, mlen);
        }
        if (cr->busy == CN_YIELDING)
            cn_yield_end(n, cr); /* the turn's holder appended: decide on its entries */
        return;
    }
    struct mx_room *r = mx_engine_room(n->e, cr->id, cr->idlen);
    if (!r || !elen)
        return;
    int rc = apply_entry(n, cr, &cr->head, r, id, idlen, entry, elen, hash, hashlen, 1, NULL);
    if (rc == -2)
        cn_replica_catch_up(n, cr);
    else if (rc == -1)
        cn_replica_load(n, cr);
    if (rc < 0)
        cn_due(n, cr);
}
