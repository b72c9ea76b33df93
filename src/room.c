/* room.c - the authoritative order of one room.
 *
 * Invariants kept here:
 *  - r->checksum is always D(r->state) at r->seq; every applied action gets
 *    seq = previous seq + 1 and is appended to the log with the checksums
 *    before and after it;
 *  - an (client, n) is decided at most once: duplicates are answered from
 *    the exactly-once memory, and an n not above the client's highest
 *    decided n is never applied;
 *  - a rejected action leaves the state, seq and checksum untouched (the
 *    patch engine's undo restores the tree; only digest caches along the
 *    touched paths are recomputed);
 *  - with a batch open (cluster mode), the patch undos of its applied
 *    actions are kept newest last and the log and the exactly-once memory
 *    are held, so the batch can be taken back newest first: LIFO keeps
 *    every undo step's pointers and indexes valid, as within one patch.
 */
#include "movexd/presence.h"
#include "movexd/room.h"
#include "movexd/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/json_parse.h"
#include "movexd/patch.h"
#include "movexd/proto.h"

struct mx_room *mx_room_new(const char *id, size_t idlen, const struct mx_room_type *t,
                            mx_val *state, size_t dedup_window, int *err)
{
    *err = MX_ENOMEM;
    struct mx_room *r = mx_calloc(1, sizeof(*r));
    if (!r) {
        mx_json_free(state);
        return NULL;
    }
    r->type = *t;
    r->state = state;
    char why[512];
    r->reducer = mx_reducer_for(t, why, sizeof(why));
    if (!r->reducer) {
        mx_err("event=reducer_unavailable room=%.*s reason=\"%s\"", (int)idlen, id, why);
        *err = MX_EINTERNAL;
        goto fail;
    }
    r->id = mx_malloc(idlen + 1);
    r->log = mx_oplog_new(t->history);
    r->dedup = mx_dedup_new(dedup_window ? dedup_window : 1024);
    if (!r->id || !r->log || !r->dedup || mx_digest_of(r->state, r->checksum))
        goto fail;
    memcpy(r->id, id, idlen);
    r->id[idlen] = '\0';
    r->idlen = idlen;
    mx_buf f;
    mx_buf_init(&f, 0);
    mx_proto_field_str(&f, "room", id, idlen);
    r->room_fieldlen = f.len;
    if (f.oom || !(r->room_field = mx_malloc(f.len))) {
        mx_buf_free(&f);
        goto fail;
    }
    memcpy(r->room_field, mx_buf_data(&f), f.len);
    mx_buf_free(&f);
    *err = 0;
    return r;
fail:
    mx_room_free(r);
    return NULL;
}

/* A batch's undo: the head at begin and the patch undos of its applied
 * actions, oldest first. */
struct mx_room_batch {
    uint64_t seq;
    uint8_t checksum[MX_DIGEST_LEN];
    mx_patch_undo **undo;
    size_t n, cap;
};

int mx_room_batch_begin(struct mx_room *r)
{
    if (r->batch)
        return 0;
    r->batch = mx_calloc(1, sizeof *r->batch);
    if (!r->batch)
        return MX_ENOMEM;
    r->batch->seq = r->seq;
    memcpy(r->batch->checksum, r->checksum, MX_DIGEST_LEN);
    mx_oplog_hold(r->log);
    mx_dedup_hold(r->dedup);
    return 0;
}

static void batch_close(struct mx_room *r)
{
    free(r->batch->undo);
    free(r->batch);
    r->batch = NULL;
}

void mx_room_batch_commit(struct mx_room *r)
{
    if (!r->batch)
        return;
    for (size_t i = 0; i < r->batch->n; i++)
        mx_patch_commit(r->batch->undo[i]);
    mx_oplog_release(r->log);
    mx_dedup_release(r->dedup);
    batch_close(r);
}

void mx_room_batch_rollback(struct mx_room *r)
{
    struct mx_room_batch *b = r->batch;
    if (!b)
        return;
    for (size_t i = b->n; i-- > 0;)
        mx_patch_rollback(&r->state, b->undo[i]);
    if (b->n)
        mx_digest_refresh(r->state); /* only the paths the undo marked stale */
    r->seq = b->seq;
    memcpy(r->checksum, b->checksum, MX_DIGEST_LEN);
    mx_oplog_rewind(r->log);
    mx_dedup_rewind(r->dedup);
    batch_close(r);
}

void mx_room_free(struct mx_room *r)
{
    if (!r)
        return;
    /* the tree goes too: commit only frees what the undos own */
    mx_room_batch_commit(r);
    free(r->id);
    free(r->room_field);
    mx_json_free(r->state);
    mx_oplog_free(r->log);
    mx_dedup_free(r->dedup);
    mx_presence_free(r->presence);
    free(r->subs);
    free(r);
}

long mx_room_sub_add(struct mx_room *r, struct mx_conn *c)
{
    if (r->nsubs == r->capsubs) {
        size_t ncap = r->capsubs ? r->capsubs * 2 : 4;
        struct mx_conn **n = mx_realloc(r->subs, ncap * sizeof(*n));
        if (!n)
            return -1;
        r->subs = n;
        r->capsubs = ncap;
    }
    r->subs[r->nsubs] = c;
    return (long)r->nsubs++;
}

struct mx_conn *mx_room_sub_del_at(struct mx_room *r, size_t i)
{
    if (i >= r->nsubs)
        return NULL;
    /* fan-out order across connections is no guarantee (each connection's
     * own order is), so the last subscriber simply takes the hole */
    r->subs[i] = r->subs[--r->nsubs];
    return i < r->nsubs ? r->subs[i] : NULL;
}

uint64_t mx_room_next_n(const struct mx_room *r, const char *client, size_t clen)
{
    return mx_dedup_highest(r->dedup, client, clen) + 1;
}

int mx_room_can_catch_up(const struct mx_room *r, uint64_t since_seq,
                         const uint8_t since_checksum[MX_DIGEST_LEN])
{
    if (since_seq > r->seq)
        return 0; /* the client claims a future the server never had */
    if (since_seq == r->seq)
        return memcmp(since_checksum, r->checksum, MX_DIGEST_LEN) == 0;
    const struct mx_oplog_entry *e = mx_oplog_get(r->log, since_seq + 1);
    if (!e || memcmp(e->prev, since_checksum, MX_DIGEST_LEN) != 0)
        return 0;
    /* the log holds consecutive seqs, so reaching since+1 and the head means
     * everything in between is there too */
    return mx_oplog_get(r->log, r->seq) != NULL;
}

/* Record a new reject in the exactly-once memory and fill out. */
static int reject(struct mx_room *r, const struct mx_action_in *in, struct mx_action_out *out,
                  int code)
{
    struct mx_outcome o = {.n = in->n, .kind = MX_OUTCOME_REJECT, .code = code, .seq = r->seq,
                           .message = out->message};
    memcpy(o.checksum, r->checksum, MX_DIGEST_LEN);
    if (mx_dedup_record(r->dedup, in->client, in->clientlen, &o))
        return MX_ENOMEM;
    out->decision = MX_DECIDED_REJECTED;
    out->code = code;
    out->seq = r->seq;
    memcpy(out->checksum, r->checksum, MX_DIGEST_LEN);
    return 0;
}

/* Answer an n that is not above the client's highest decided n. */
static int decide_old(struct mx_room *r, const struct mx_action_in *in, struct mx_action_out *out)
{
    const struct mx_outcome *prior = NULL;
    int found = mx_dedup_find(r->dedup, in->client, in->clientlen, in->n, &prior);
    if (found == 1) {
        out->decision = MX_DECIDED_DUPLICATE;
        out->prior = prior;
        return 0;
    }
    out->decision = MX_DECIDED_TOO_OLD;
    out->code = MX_ETOO_OLD;
    out->seq = r->seq;
    memcpy(out->checksum, r->checksum, MX_DIGEST_LEN);
    snprintf(out->message, sizeof(out->message),
             "n=%llu is not above the highest decided n=%llu and its outcome is not remembered",
             (unsigned long long)in->n,
             (unsigned long long)mx_dedup_highest(r->dedup, in->client, in->clientlen));
    return 0;
}

/* The rejection cascade: 0 when every dep allows applying, else a reject
 * code with out->message filled. A final answer wins over a provisional
 * one: any rejected dep is after_reject, else any forgotten dep is too_old,
 * and only then is a dep never decided bad_dep (resendable). */
static int check_deps(struct mx_room *r, const struct mx_action_in *in, struct mx_action_out *out)
{
    int code = 0;
    for (size_t i = 0; i < in->ndeps; i++) {
        uint64_t n = in->deps[i];
        const struct mx_outcome *dep = NULL;
        int found = mx_dedup_find(r->dedup, in->client, in->clientlen, n, &dep);
        if (found == 1 && dep->kind == MX_OUTCOME_ACK)
            continue;
        if (found == 1) {
            snprintf(out->message, sizeof(out->message), "dep n=%llu was rejected (%s)",
                     (unsigned long long)n, mx_err_code(dep->code));
            return MX_EAFTER_REJECT;
        }
        if (found < 0 && code != MX_ETOO_OLD) {
            snprintf(out->message, sizeof(out->message),
                     "dep n=%llu is older than the server remembers", (unsigned long long)n);
            code = MX_ETOO_OLD;
        } else if (found == 0 && !code) {
            snprintf(out->message, sizeof(out->message), "dep n=%llu was never received",
                     (unsigned long long)n);
            code = MX_EBAD_DEP;
        }
    }
    return code;
}

/* Encode the log entry (the wire form of an applied action); a reducer
 * that uses ctx has ctx.time and the seed logged with its effects. */
static int encode_entry(const struct mx_room *r, const struct mx_action_in *in, const json_t *action,
                        const json_t *effects, int effects_is_payload, mx_buf *b)
{
    struct mx_msg_entry m = {.seq = r->seq, .checksum = r->checksum, .action = action,
                             .action_text = in->action_text, .action_len = in->action_len,
                             .client = in->client, .clientlen = in->clientlen, .n = in->n,
                             .effects = effects_is_payload ? NULL : effects,
                             .has_ctx = r->reducer->uses_ctx, .time_ms = in->time_ms,
                             .seed = in->seed};
    return mx_proto_entry(b, &m);
}

/* Undo a decision that was applied in memory but not committed: the room's
 * seq, checksum and state are as they were before it. */
static void uncommit(struct mx_room *r, uint64_t oldseq, const uint8_t *prev, mx_patch_undo *undo,
                     json_t *effects, mx_buf *b)
{
    r->seq = oldseq;
    memcpy(r->checksum, prev, MX_DIGEST_LEN);
    mx_patch_rollback(&r->state, undo);
    mx_digest_refresh(r->state);
    json_decref(effects);
    mx_buf_free(b);
}

static int decide_new(struct mx_room *r, const struct mx_action_in *in, const json_t *action,
                      struct mx_action_out *out);

int mx_room_decide(struct mx_room *r, const struct mx_action_in *in, struct mx_action_out *out)
{
    if (in->action || !in->patch)
        return decide_new(r, in, in->action, out);
    /* A patch view (json_parse.h): a json room applies it as it is; any
     * other reducer sees the very tree the parser would have built, and so
     * does the log entry when it cannot copy the client's text. */
    if (r->reducer == &mx_reducer_json && in->action_text)
        return decide_new(r, in, NULL, out);
    json_t *tree = NULL;
    int depth;
    if (mx_json_parse(in->patch->src, in->patch->srclen, &tree, &depth, NULL) != MX_JP_OK) {
        memset(out, 0, sizeof(*out));
        return MX_ENOMEM; /* the text parsed once already: only memory can fail */
    }
    int rc = decide_new(r, in, tree, out);
    json_decref(tree);
    return rc;
}

/* Decide with the action's tree, or (action NULL) with in->patch applied
 * by the json reducer's rule: its ops are the effects. */
static int decide_new(struct mx_room *r, const struct mx_action_in *in, const json_t *action,
                      struct mx_action_out *out)
{
    memset(out, 0, sizeof(*out));
    if (in->n <= mx_dedup_highest(r->dedup, in->client, in->clientlen))
        return decide_old(r, in, out);

    int code;
    if (in->ndeps && (code = check_deps(r, in, out))) {
        if (code != MX_EBAD_DEP)
            return reject(r, in, out, code);
        /* dep not decided (yet): maybe refused `unavailable` and resent
         * later. Not recorded, so this n can still apply once the dep has. */
        out->decision = MX_DECIDED_TOO_OLD;
        out->code = code;
        out->seq = r->seq;
        memcpy(out->checksum, r->checksum, MX_DIGEST_LEN);
        return 0;
    }
    if (in->strict && in->base != r->seq) {
        snprintf(out->message, sizeof(out->message), "strict action on base %llu, head is %llu",
                 (unsigned long long)in->base, (unsigned long long)r->seq);
        return reject(r, in, out, MX_ESTALE);
    }

    if (r->batch && r->batch->n == r->batch->cap) {
        /* room for this action's undo before anything changes */
        size_t ncap = r->batch->cap ? r->batch->cap * 2 : 16;
        mx_patch_undo **u = mx_realloc(r->batch->undo, ncap * sizeof *u);
        if (!u)
            return MX_ENOMEM;
        r->batch->undo = u;
        r->batch->cap = ncap;
    }

    json_t *effects = NULL;
    int is_payload = 0;
    struct mx_reduce_ctx ctx = {.client = in->client, .clientlen = in->clientlen, .room = r->id,
                                .roomlen = r->idlen, .seq = r->seq + 1, .time_ms = in->time_ms,
                                .seed = in->seed, .max_depth = in->max_depth,
                                .max_ops = r->type.max_ops,
                                .max_bytes = r->type.max_state_bytes};
    if (action) {
        code = r->reducer->reduce(r->reducer, r->state, action, &ctx, &effects, &is_payload,
                                  out->message, sizeof(out->message));
        if (code == MX_ENOMEM)
            return MX_ENOMEM;
        if (code)
            return reject(r, in, out, code);
    } else {
        is_payload = 1; /* json reducer: type "patch", payload an array */
    }

    mx_patch_limits lim = {.max_depth = in->max_depth, .max_ops = r->type.max_ops};
    mx_patch_undo *undo = NULL;
    mx_patch_error perr;
    code = action ? mx_patch_apply(&r->state, effects, &lim, &undo, &perr)
                  : mx_patch_apply_view(&r->state, in->patch, &lim, &undo, &perr);
    if (code) {
        json_decref(effects);
        if (code == MX_ENOMEM)
            return MX_ENOMEM;
        if (!is_payload) {
            /* the client sent a valid action; the reducer's output is wrong */
            snprintf(out->message, sizeof(out->message), "effects: %s", perr.message);
            return reject(r, in, out, MX_EBAD_EFFECTS);
        }
        snprintf(out->message, sizeof(out->message), "%s", perr.message);
        return reject(r, in, out, code);
    }
    uint8_t newsum[MX_DIGEST_LEN];
    if (mx_digest_of(r->state, newsum)) {
        mx_patch_rollback(&r->state, undo);
        json_decref(effects);
        return MX_ENOMEM;
    }
    if (r->type.max_state_bytes && r->state->jsize > r->type.max_state_bytes) {
        size_t size = r->state->jsize;
        mx_patch_rollback(&r->state, undo);
        json_decref(effects);
        mx_digest_refresh(r->state);
        snprintf(out->message, sizeof(out->message),
                 "the state would be %zu bytes, over this room type's max_state_bytes %zu", size,
                 r->type.max_state_bytes);
        return reject(r, in, out, MX_ETOO_LARGE);
    }

    /* Decided: build the entry before touching seq so a failure here can
     * still roll back. */
    uint8_t prev[MX_DIGEST_LEN];
    memcpy(prev, r->checksum, MX_DIGEST_LEN);
    uint64_t oldseq = r->seq;
    r->seq++;
    memcpy(r->checksum, newsum, MX_DIGEST_LEN);
    mx_buf b;
    mx_buf_init(&b, 0);
    struct mx_outcome o = {.n = in->n, .kind = MX_OUTCOME_ACK, .seq = r->seq};
    memcpy(o.prev, prev, MX_DIGEST_LEN);
    memcpy(o.checksum, newsum, MX_DIGEST_LEN);
    int enc = encode_entry(r, in, action, effects, is_payload, &b);
    /* The record's real size is known only now (a reducer's effects may be
     * far larger than the message the engine reserved for): reserve it
     * before committing, so an ack never rests on unreserved log space. The
     * record is the entry plus the client, the room id and fixed fields. */
    size_t recbytes = b.len + in->clientlen + r->idlen + MX_ROOM_RECORD_OVERHEAD;
    int rsv = !enc && in->reserve ? in->reserve(in->reserve_ctx, recbytes) : 0;
    if (rsv) {
        uncommit(r, oldseq, prev, undo, effects, &b);
        if (rsv == MX_ETOO_LARGE) {
            /* no disk space would ever hold it (max_state_bytes 0 lets
             * effects grow past a log record's limit): a plain reject */
            snprintf(out->message, sizeof(out->message),
                     "the action's log record would be %zu bytes, over the log's record limit",
                     recbytes);
            return reject(r, in, out, MX_ETOO_LARGE);
        }
        out->decision = MX_DECIDED_UNAVAILABLE;
        out->code = MX_EUNAVAILABLE;
        out->seq = r->seq;
        memcpy(out->checksum, r->checksum, MX_DIGEST_LEN);
        out->entry_len = recbytes;
        return 0;
    }
    /* the encoded entry goes into the log as it is (no copy); the caller
     * borrows it from there (out->entry_text), or owns it when the log
     * keeps nothing (history 0) */
    size_t elen = b.len;
    char *text = enc ? NULL : mx_buf_steal(&b);
    int kept = text ? mx_oplog_append_take(r->log, r->seq, prev, newsum, text, elen) : -1;
    if (kept < 0 || mx_dedup_record(r->dedup, in->client, in->clientlen, &o)) {
        /* Out of memory mid-commit: undo everything so the room is as it was. */
        if (kept == 0) {
            /* the log append went through (and owns text); a log cannot
             * pop, so rebuild it */
            mx_oplog_clear(r->log);
        } else {
            free(text);
        }
        uncommit(r, oldseq, prev, undo, effects, &b);
        return MX_ENOMEM;
    }
    if (r->batch)
        r->batch->undo[r->batch->n++] = undo; /* kept until the batch ends */
    else
        mx_patch_commit(undo);
    if (is_payload)
        json_decref(effects);
    else
        out->effects = effects; /* the ack repeats them */
    out->decision = MX_DECIDED_APPLIED;
    out->seq = r->seq;
    memcpy(out->prev, prev, MX_DIGEST_LEN);
    memcpy(out->checksum, newsum, MX_DIGEST_LEN);
    out->entry_len = elen;
    out->entry_text = text;
    out->entry_owned = kept == 1 ? text : NULL;
    return 0;
}

json_t *mx_room_logged_effects(const struct mx_room *r, uint64_t seq)
{
    const struct mx_oplog_entry *e = mx_oplog_get(r->log, seq);
    if (!e)
        return NULL;
    json_error_t jerr;
    int oom;
    json_t *j = mx_json_loadb(e->text, e->len, JSON_DECODE_INT_AS_REAL, &jerr, &oom);
    json_t *eff = json_incref(json_object_get(j, "effects"));
    json_decref(j);
    return eff;
}

int mx_room_initial_state(const struct mx_room_type *t, const char *id, size_t idlen,
                          const json_t *params, const struct mx_action_in *in, mx_val **state,
                          char *msg, size_t msglen)
{
    *state = NULL;
    char why[512];
    const struct mx_reducer *red =
        mx_reducer_for(t, why, sizeof(why));
    if (!red) {
        mx_err("event=reducer_unavailable room=%.*s reason=\"%s\"", (int)idlen, id, why);
        snprintf(msg, msglen, "the room type's reducer is unavailable");
        return MX_EINTERNAL;
    }
    json_t *owned = NULL;
    if (!params)
        params = owned = json_object();
    if (!params)
        return MX_ENOMEM;
    json_t *init = NULL;
    int rc = 0;
    if (red->init) {
        struct mx_reduce_ctx ctx = {.client = in->client, .clientlen = in->clientlen, .room = id,
                                    .roomlen = idlen, .seq = 0, .time_ms = in->time_ms,
                                    .seed = in->seed, .max_depth = in->max_depth,
                                    .max_bytes = t->max_state_bytes};
        rc = red->init(red, params, &ctx, &init, msg, msglen);
    } else {
        init = json_incref((json_t *)params);
    }
    json_decref(owned);
    if (rc)
        return rc;
    const char *bad = "out of memory";
    *state = mx_json_from_jansson(init, in->max_depth, &bad);
    json_decref(init);
    if (!*state) {
        snprintf(msg, msglen, "%s", bad);
        return strcmp(bad, "out of memory") ? MX_EBAD_REQUEST : MX_ENOMEM;
    }
    return 0;
}

int mx_room_replay(struct mx_room *r, uint64_t seq, const uint8_t prev[MX_DIGEST_LEN],
                   const uint8_t sum[MX_DIGEST_LEN], const char *client, size_t clen, uint64_t n,
                   const char *entry, size_t elen, int verify, char *err, size_t errlen)
{
    if (r->batch) {
        /* a replayed entry would be taken back with the batch */
        snprintf(err, errlen, "room %s: a batch is open", r->id);
        return -1;
    }
    if (seq != r->seq + 1 || memcmp(prev, r->checksum, MX_DIGEST_LEN) != 0) {
        snprintf(err, errlen, "room %s: record seq %llu does not follow seq %llu (checksum chain broken)",
                 r->id, (unsigned long long)seq, (unsigned long long)r->seq);
        return -1;
    }
    json_error_t jerr;
    int oom;
    json_t *e = mx_json_loadb(entry, elen, JSON_DECODE_INT_AS_REAL, &jerr, &oom);
    if (oom) {
        snprintf(err, errlen, "room %s seq %llu: out of memory reading its entry", r->id,
                 (unsigned long long)seq);
        return MX_ENOMEM;
    }
    json_t *effects = e ? json_object_get(e, "effects") : NULL;
    if (e && !effects)
        effects = json_object_get(json_object_get(e, "action"), "payload");
    if (!effects) {
        snprintf(err, errlen, "room %s seq %llu: entry has no effects (%s)", r->id,
                 (unsigned long long)seq, e ? "no payload" : jerr.text);
        json_decref(e);
        return -1;
    }
    mx_patch_limits lim = {0};
    mx_patch_undo *undo = NULL;
    mx_patch_error perr;
    uint8_t got[MX_DIGEST_LEN];
    if (mx_patch_apply(&r->state, effects, &lim, &undo, &perr)) {
        snprintf(err, errlen, "room %s seq %llu: logged effects do not apply: %s", r->id,
                 (unsigned long long)seq, perr.message);
        json_decref(e);
        return perr.code == MX_ENOMEM ? MX_ENOMEM : -1;
    }
    json_decref(e);
    struct mx_outcome o = {.n = n, .kind = MX_OUTCOME_ACK, .seq = seq};
    memcpy(o.prev, prev, MX_DIGEST_LEN);
    memcpy(o.checksum, sum, MX_DIGEST_LEN);
    /* verify: recompute the state's checksum now; otherwise the caller
     * verifies once after the room's last replayed record (recovery: the
     * logged chain prev -> checksum is checked record by record above, and
     * the recomputed final state must match the last logged checksum) */
    if (verify)
        mx_digest_of(r->state, got);
    else
        memcpy(got, sum, MX_DIGEST_LEN);
    if (memcmp(got, sum, MX_DIGEST_LEN) != 0 ||
        mx_oplog_append(r->log, seq, prev, sum, entry, elen) ||
        mx_dedup_record(r->dedup, client, clen, &o)) {
        int chain = memcmp(got, sum, MX_DIGEST_LEN) != 0;
        mx_patch_rollback(&r->state, undo);
        mx_digest_refresh(r->state);
        if (mx_oplog_last_seq(r->log) == seq)
            mx_oplog_clear(r->log);
        snprintf(err, errlen, "room %s seq %llu: %s", r->id, (unsigned long long)seq,
                 chain ? "state checksum after the action differs from the logged one"
                       : "out of memory or n not increasing");
        /* the scan checked n per client, so this is memory unless chain */
        return chain || n <= mx_dedup_highest(r->dedup, client, clen) ? -1 : MX_ENOMEM;
    }
    mx_patch_commit(undo);
    r->seq = seq;
    memcpy(r->checksum, sum, MX_DIGEST_LEN);
    return 0;
}
