/* cluster.h - cluster mode's side of Redis (issue #14, docs/CLUSTER.md).
 * So far: the Redis Function library the daemon ships (src/cluster_fn.lua,
 * built into the binary) and loading it over a link. */
#ifndef MOVEXD_CLUSTER_H
#define MOVEXD_CLUSTER_H

struct mx_redis;

/* The text of src/cluster_fn.lua as built into this binary. */
const char *mx_cluster_fn_source(void);

/* done(ok, err, priv): ok = 1 when Redis answered "movexd"; otherwise err
 * says why (Redis's error text, or "link down"), valid during the call. */
typedef void (*mx_cluster_loaded_fn)(int ok, const char *err, void *priv);

/* FUNCTION LOAD REPLACE the library over r (a command link that is up);
 * done runs exactly once. Loading is idempotent: every node does it each
 * time its link comes up, so a Redis restarted empty gets it back. */
void mx_cluster_load_library(struct mx_redis *r, mx_cluster_loaded_fn done, void *priv);

/* ---- the epoch of the data under a key prefix ---- */

/* done(ok, epoch, priv): ok = 0 when the link failed (epoch NULL);
 * otherwise epoch is the value of PREFIX"epoch" after the call, valid
 * during it. */
typedef void (*mx_cluster_epoch_fn)(int ok, const char *epoch, void *priv);

/* SET PREFIX"epoch" candidate NX GET: one round trip that reads the epoch,
 * setting it to candidate (a fresh random id) when there is none. A node
 * does it each time its command link comes up: an epoch other than the one
 * it knew means Redis lost its data (restarted without persistence,
 * flushed, or another Redis), so every room must be resynced. done runs
 * exactly once. */
void mx_cluster_epoch(struct mx_redis *r, const char *prefix, const char *candidate,
                      mx_cluster_epoch_fn done, void *priv);

/* ---- the per-room append (FCALL movexd_append, docs/CLUSTER.md) ---- */

#include <stddef.h>
#include <stdint.h>

#define MX_CLUSTER_SUM_MAX 128
#define MX_CLUSTER_CODE_MAX 64 /* a reducer's own code (MX_REDUCER_CODE_MAX) travels as it is */

#define MX_CLUSTER_INC_MAX 32 /* hex digits of a room's incarnation id */

/* A room's head in Redis: the last entry's ID (seq-sub), the checksum
 * after it, the hash chain and the room's incarnation (a random id given
 * when the room was created: a room deleted and created again has another
 * one, so nothing decided on the old room - a journal's batch - is ever
 * appended to the new one; "" for a room created before incarnations). */
struct mx_cluster_head {
    uint64_t seq, sub;
    char sum[MX_CLUSTER_SUM_MAX + 1];
    char hash[41]; /* sha1 hex, "" before the first entry */
    char inc[MX_CLUSTER_INC_MAX + 1];
};

/* A fresh random incarnation id (MX_CLUSTER_INC_MAX hex digits). */
void mx_cluster_new_inc(char out[MX_CLUSTER_INC_MAX + 1]);

/* One decided action of a batch. */
struct mx_cluster_action {
    const char *client;
    uint64_t n;
    const uint64_t *deps; /* this client's earlier n it was built on */
    size_t ndeps;
    int strict;
    uint64_t base;
    int applied;          /* 1: applied (what = checksum after, body = effects JSON); 0: rejected (what = code) */
    const char *what;
    const char *body;
    size_t body_len;
};

enum mx_cluster_verdict {
    MX_CLUSTER_ACK,        /* appended as seq */
    MX_CLUSTER_REJECT,     /* recorded reject, code */
    MX_CLUSTER_DUP_ACK,    /* decided before: ack at seq */
    MX_CLUSTER_DUP_REJECT, /* decided before: reject code */
    MX_CLUSTER_TOO_OLD,
    MX_CLUSTER_BAD_DEP,    /* not recorded: n not used up */
    MX_CLUSTER_MOVED,      /* head moved: catch up, decide again */
};

struct mx_cluster_outcome {
    enum mx_cluster_verdict verdict;
    uint64_t seq;
    char code[MX_CLUSTER_CODE_MAX + 1];
};

/* ok = 0: the link failed or Redis refused the call (err says why; head
 * and out are NULL). ok = 1: head after the batch and one outcome per
 * action, valid during the call. */
typedef void (*mx_cluster_appended_fn)(int ok, const char *err, const struct mx_cluster_head *head,
                                       const struct mx_cluster_outcome *out, size_t n, void *priv);

/* Submit a batch decided on `expected` (its ID, checksum and incarnation)
 * for room (keys prefix{room}:...); the head in the answer carries the
 * room's incarnation.
 * done runs exactly once. 0, or -1 when out of memory or the batch is too
 * large (done has then run with ok = 0). */
int mx_cluster_append(struct mx_redis *r, const char *prefix, const char *room,
                      const struct mx_cluster_head *expected, size_t window, uint64_t now_ms,
                      const struct mx_cluster_action *a, size_t n, mx_cluster_appended_fn done,
                      void *priv);

/* As mx_cluster_append, and when wait_replicas > 0 the FCALL is followed,
 * pipelined on the same link, by WAIT wait_replicas wait_timeout_ms (group
 * commit: one WAIT per batch). The batch counts as done only if WAIT
 * reports at least wait_replicas replicas; otherwise done runs with ok = 0
 * and err "WAIT: K of N replicas" - the entries may well be in the primary,
 * their outcome is unknown, which is safe to answer `unavailable` because
 * a resend of the same (client, n) is answered from Redis's memory. WAIT
 * blocks the link meanwhile: wait_timeout_ms must stay below the link's
 * command timeout (the conf checks it). */
int mx_cluster_append_wait(struct mx_redis *r, const char *prefix, const char *room,
                           const struct mx_cluster_head *expected, size_t window, uint64_t now_ms,
                           const struct mx_cluster_action *a, size_t n, int wait_replicas,
                           int wait_timeout_ms, mx_cluster_appended_fn done, void *priv);

/* As mx_cluster_append_wait, taking turns (src/cluster_fn.lua): turn is
 * the calling node's id (non-empty). A batch refused because the head
 * moved gives the node the room's turn for a moment, during which the
 * other nodes' batches are answered "moved" with the head unchanged (a
 * yield), so a node that lost a race appends next. NULL: no turns. */
int mx_cluster_append_turn(struct mx_redis *r, const char *prefix, const char *room,
                           const struct mx_cluster_head *expected, size_t window, uint64_t now_ms,
                           const struct mx_cluster_action *a, size_t n, int wait_replicas,
                           int wait_timeout_ms, const char *turn, mx_cluster_appended_fn done,
                           void *priv);

/* A decimal uint64 with nothing else (no sign, no spaces, no overflow)
 * from Redis's reply text. 0, or -1. */
int mx_cluster_parse_u64(const char *s, size_t len, uint64_t *out);

/* Parse one outcome string of the library ("ack 7", "dup reject stale",
 * "moved", ...). 0, or -1 when it is none of them. */
int mx_cluster_parse_outcome(const char *s, struct mx_cluster_outcome *out);

#endif
