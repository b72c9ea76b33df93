/* room.h - one room: its master state, seq and checksum, the action log,
 * the exactly-once memory and its subscribers.
 *
 * mx_room_decide() is the authoritative step: it answers duplicates from
 * the exactly-once memory, applies the rejection cascade and compare-and-
 * set, asks the room's reducer for effects, applies them atomically, checks
 * the state-size bound, and on success advances seq, computes the new
 * checksum (re-digesting only changed paths) and appends to the log. It
 * neither encodes replies nor touches sockets; the engine does.
 */
#ifndef MOVEXD_ROOM_H
#define MOVEXD_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "movexd/buf.h"
#include "movexd/config.h"
#include "movexd/dedup.h"
#include "movexd/json.h"
#include "movexd/oplog.h"
#include "movexd/reducer.h"

struct mx_conn;

struct mx_room {
    char *id;
    size_t idlen;
    /* `,"room":"<id>"` as the encoders write it, made once (every ack and
     * fwd of the room carries it: mx_msg_head.room_field) */
    char *room_field;
    size_t room_fieldlen;
    struct mx_room_type type; /* settings copied from the config */
    const struct mx_reducer *reducer;
    mx_val *state;
    uint64_t seq;
    uint8_t checksum[MX_DIGEST_LEN];
    mx_oplog *log;
    mx_dedup *dedup;
    struct mx_conn **subs;
    size_t nsubs, capsubs;
    struct mx_presence *presence; /* ephemeral, never stored (presence.h); NULL: none */
    struct mx_room_batch *batch;  /* an open batch (mx_room_batch_begin), else NULL */

    /* Kept for the storage: */
    uint64_t disk_first_lsn; /* first WAL record not in a snapshot (0: none) */
    uint64_t disk_records;   /* WAL records since the last snapshot */
    uint64_t disk_snap_lsn;  /* WAL position its last snapshot covers */
    int disk_due;            /* queued for a snapshot */
    uint64_t last_active_ms; /* for eviction of idle rooms */
};

/* Creates a room at seq 0 owning `state` (freed on failure). NULL on OOM or
 * unknown reducer (*err set). */
struct mx_room *mx_room_new(const char *id, size_t idlen, const struct mx_room_type *t,
                            mx_val *state, size_t dedup_window, int *err);
void mx_room_free(struct mx_room *r);

/* Subscribers, unordered. add appends c (the caller knows it is not
 * subscribed: no scan) and returns its index, or -1 on OOM. del_at removes
 * the subscriber at index i in O(1) by moving the last one there, and
 * returns the subscriber now at i (whose index changed), or NULL. The
 * engine keeps each connection's index per room (mx_conn.room_pos), so a
 * disconnect storm in a big room costs O(subscribers), not O(n^2). */
long mx_room_sub_add(struct mx_room *r, struct mx_conn *c);
struct mx_conn *mx_room_sub_del_at(struct mx_room *r, size_t i);

/* A storage record of an applied action holds its log entry, the client
 * and the room id plus fixed fields (type, seq, two checksums, n, length
 * prefixes: ~110 bytes in storage_wal.c); this bounds the fixed part. */
#define MX_ROOM_RECORD_OVERHEAD 256

struct mx_patch_view; /* patch.h */

struct mx_action_in {
    const char *client;
    size_t clientlen;
    uint64_t n;
    int has_base, strict;
    uint64_t base;
    size_t ndeps;         /* the actions this one depends on (0: none) */
    const uint64_t *deps;
    const json_t *action;
    /* or, when action is NULL, the action read as a patch view
     * (json_parse.h): a json room applies it as it is, any other reducer
     * (or a log entry that cannot copy action_text) gets its tree */
    const struct mx_patch_view *patch;
    int max_depth;
    const char *action_text; /* NULL, or action's text exactly as mx_proto_entry
                              * encodes it (the log entry copies it) */
    size_t action_len;
    uint64_t time_ms; /* ctx.time for app reducers (the engine's clock, read once) */
    uint64_t seed;    /* ctx.random's seed for this action */
    /* Optional (NULL: no check). Called once the action is decided and its
     * log entry is built, before anything is committed, with the size of
     * the storage record it will take (effects included): 0, or an error
     * that refuses it as MX_DECIDED_UNAVAILABLE with the room unchanged and
     * n not used up (MX_ETOO_LARGE: rejected `too_large` instead). The
     * engine passes the storage's reserve. */
    int (*reserve)(void *ctx, size_t bytes);
    void *reserve_ctx;
};

enum mx_decision {
    MX_DECIDED_APPLIED = 1,  /* new seq; out.entry holds the log entry text */
    MX_DECIDED_REJECTED,     /* new reject, recorded in the exactly-once memory */
    MX_DECIDED_DUPLICATE,    /* n decided before: out.prior is its outcome */
    MX_DECIDED_TOO_OLD,      /* refused without using up n (too_old, bad_dep): not recorded */
    MX_DECIDED_UNAVAILABLE,  /* in.reserve refused the record: not recorded, n not used up;
                              * out.entry_len is the size that was refused */
};

struct mx_action_out {
    enum mx_decision decision;
    int code;                /* reject code */
    char message[200];       /* reject message */
    const struct mx_outcome *prior; /* DUPLICATE */
    uint64_t seq;            /* APPLIED: new seq; reject: head seq */
    uint8_t prev[MX_DIGEST_LEN];
    uint8_t checksum[MX_DIGEST_LEN];
    /* APPLIED: the log entry's text (NUL-terminated). It is the log's own
     * copy, valid until the room's next decision - or, when the log keeps
     * nothing (history 0), the caller's: then entry_owned is the same
     * pointer, to free. */
    const char *entry_text;
    char *entry_owned;
    size_t entry_len;
    json_t *effects;         /* APPLIED: owned reference to the effects when they
                              * are not the action's payload (else NULL) */
};

/* Decide one action. Returns 0 (out filled) or MX_ENOMEM (nothing changed).
 * The caller frees out->entry_owned and json_decref()s out->effects. */
int mx_room_decide(struct mx_room *r, const struct mx_action_in *in, struct mx_action_out *out);

/* A batch of decisions that can be taken back whole (cluster mode: the
 * actions decided on the confirmed head and sent to Redis as one append;
 * docs/CLUSTER.md). While a batch is open, every mx_room_decide keeps its
 * patch undo instead of committing it, and the log and the exactly-once
 * memory hold what the batch's entries and outcomes replaced.
 * mx_room_batch_rollback puts the room back exactly as it was at begin -
 * state (the same nodes, digests refreshed), seq, checksum, log, memory -
 * with no reducer run and no allocation; mx_room_batch_commit keeps the
 * decisions and frees the undo. Both close the batch; begin on an open
 * batch keeps it. Nothing but mx_room_decide may change the room while a
 * batch is open (mx_room_replay refuses). mx_room_free drops an open batch
 * with the room. begin: 0 or MX_ENOMEM. */
int mx_room_batch_begin(struct mx_room *r);
void mx_room_batch_commit(struct mx_room *r);
void mx_room_batch_rollback(struct mx_room *r);

/* 1 when the log can bring a client at `since` up to the head (then every
 * entry from since_seq + 1 to r->seq is in the log), else 0. */
int mx_room_can_catch_up(const struct mx_room *r, uint64_t since_seq,
                         const uint8_t since_checksum[MX_DIGEST_LEN]);

/* Recovery: re-apply an action from the log. Its effects (the entry's
 * "effects", else its action's payload) are applied without the reducer;
 * the room must be at seq - 1 with checksum prev, and the result must have
 * checksum sum. The entry goes to the log and the ack to the exactly-once
 * memory. With verify 0 the recomputed checksum is not compared here: the
 * caller must compare mx_digest_of(state) with r->checksum after the room's
 * last record. Returns 0, or -1 with err filled (the room is then unchanged),
 * or MX_ENOMEM (also unchanged: out of memory, not a bad record; the same
 * call may succeed later). */
int mx_room_replay(struct mx_room *r, uint64_t seq, const uint8_t prev[MX_DIGEST_LEN],
                   const uint8_t sum[MX_DIGEST_LEN], const char *client, size_t clen, uint64_t n,
                   const char *entry, size_t elen, int verify, char *err, size_t errlen);

/* The initial state of a new room of type t: params (NULL: {}) passed
 * through the reducer's init when it has one (in gives client, time, seed
 * and max_depth). 0 with *state, or a negative mx_err with msg (the
 * reducer's refusal, MX_EAPP_REJECT included). */
int mx_room_initial_state(const struct mx_room_type *t, const char *id, size_t idlen,
                          const json_t *params, const struct mx_action_in *in, mx_val **state,
                          char *msg, size_t msglen);

/* The "effects" of the logged action at seq (a new reference), or NULL
 * when the log no longer holds it or it has none (its payload was the
 * patch): a duplicate ack repeats them when it still can. */
json_t *mx_room_logged_effects(const struct mx_room *r, uint64_t seq);

/* next_n for client in this room. */
uint64_t mx_room_next_n(const struct mx_room *r, const char *client, size_t clen);

#endif
