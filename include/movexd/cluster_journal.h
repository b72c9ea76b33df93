/* cluster_journal.h - a node's journal of its own acknowledged append
 * batches, per room, in memory and bounded (cluster mode, issue #14,
 * docs/CLUSTER.md "Rollback and the journal").
 *
 * Redis can lose writes it acknowledged: a Sentinel failover promotes a
 * replica that had not received them, or a Redis without persistence
 * restarts empty. A node keeps, for each room, the last batches it had
 * appended - exactly as sent (the head they were decided on and every
 * action's arguments) with the head Redis answered after them. When the
 * node finds Redis's head of a room behind what it knows (a rollback), the
 * batches past that head are sent again verbatim, in order: the function
 * appends them only on the very head they were first decided on, so they
 * get back the same seqs and checksums their acks carried (clients stay
 * valid), and a batch that is in fact there is answered from Redis's
 * exactly-once memory. A batch answered `moved` cannot be restored so
 * (another node appended first): it and the later ones are reported lost.
 *
 * This is the journal in memory: what a replay reads. Its changes also go
 * to a sink (mx_journal_set_sink): cluster_journal_file.c writes them to
 * local disk, so a node killed during a failover reads them back at start
 * (docs/CLUSTER.md "The journal on disk"). Bounded: at most max_batches
 * and max_bytes in all (the oldest batches go first, evictions counted); a
 * rollback deeper than what is kept loses acks.
 */
#ifndef MOVEXD_CLUSTER_JOURNAL_H
#define MOVEXD_CLUSTER_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/cluster.h"

struct mx_journal;
struct lws_context;

/* One batch as it was appended. The actions' strings and deps are the
 * journal's own copies. */
struct mx_journal_batch {
    struct mx_cluster_head expected; /* the head it was decided on */
    struct mx_cluster_head after;    /* the head Redis answered after it */
    struct mx_cluster_action *a;
    size_t n;
    uint64_t now_ms;                 /* the call's time and dedup window: */
    size_t window;                   /* a resend must be byte for byte the same */
    size_t bytes;                    /* what it costs the journal */
    uint64_t tag;                    /* the tag current when it was added (the file's segment) */
};

struct mx_journal_stats {
    uint64_t batches, bytes;   /* kept now */
    uint64_t added, evicted;   /* evicted: dropped for the bounds */
    uint64_t superseded;       /* dropped by a batch of a newer incarnation of their room */
};

/* NULL when out of memory. */
struct mx_journal *mx_journal_new(size_t max_batches, size_t max_bytes);
void mx_journal_free(struct mx_journal *j);

/* Remember a batch of room that Redis appended (after = the head in its
 * reply). Batches of a room must be added in the order of their heads; a
 * batch whose `after` is not beyond the room's last one replaces nothing
 * and is refused. A batch of another incarnation (expected.inc) than the
 * room's batches replaces them all (counted `superseded`): the room was
 * created again. 0, MX_ENOMEM, or MX_EINTERNAL (out of order). */
int mx_journal_add(struct mx_journal *j, const char *room, const struct mx_cluster_head *expected,
                   const struct mx_cluster_head *after, size_t window, uint64_t now_ms,
                   const struct mx_cluster_action *a, size_t n);

/* The batches of room whose `after` ID is beyond head's ID (seq, sub) -
 * what Redis lost when its head is `head` - oldest first, into out (at
 * most max). Returns how many there are (may exceed max). Valid until the
 * journal changes. */
size_t mx_journal_lost(const struct mx_journal *j, const char *room, const struct mx_cluster_head *head,
                       const struct mx_journal_batch **out, size_t max);

/* Forget every batch of room up to and including ID (seq, sub) (they are
 * safe, or given up), or all of them with seq = UINT64_MAX; room NULL:
 * every batch of every room (Redis lost its data). */
void mx_journal_forget(struct mx_journal *j, const char *room, uint64_t seq, uint64_t sub);

void mx_journal_stats(const struct mx_journal *j, struct mx_journal_stats *out);

/* Where the journal's changes go besides memory: added after a batch is
 * kept (not for one mx_journal_add refuses), forgot for every
 * mx_journal_forget (room NULL: every room, seq UINT64_MAX: all of the
 * room). Evictions for the bounds are not reported: the file drops whole
 * segments by tag instead. s NULL: none. The sink is copied. */
struct mx_journal_sink {
    void (*added)(void *priv, const char *room, const struct mx_journal_batch *b);
    void (*forgot)(void *priv, const char *room, uint64_t seq, uint64_t sub);
    void *priv;
};
void mx_journal_set_sink(struct mx_journal *j, const struct mx_journal_sink *s);

/* Batches added from now on carry tag (it only ever grows); the tag of the
 * oldest batch kept (UINT64_MAX when empty); evict every batch whose tag
 * is at or below tag (counted as evictions). */
void mx_journal_set_tag(struct mx_journal *j, uint64_t tag);
uint64_t mx_journal_oldest_tag(const struct mx_journal *j);
void mx_journal_evict_tag(struct mx_journal *j, uint64_t tag);

/* The newest batch of room, or NULL when it has none. */
const struct mx_journal_batch *mx_journal_newest(const struct mx_journal *j, const char *room);

/* The rooms with batches: *it = 0 first; 1 with room and its newest batch
 * while there is one. The journal must not change during the walk. */
int mx_journal_next_room(const struct mx_journal *j, size_t *it, const char **room,
                         const struct mx_journal_batch **newest);

/* done(ok, restored, lost, head, priv): ok = 0 when a call failed (the
 * link; what is left stays in the journal for the next try); restored =
 * batches Redis appended again with the very head they had (or answered
 * as present); lost = batches given up (`moved`: Redis's log went another
 * way) and forgotten; head = the room's head after the last answer. */
typedef void (*mx_journal_replayed_fn)(int ok, size_t restored, size_t lost,
                                       const struct mx_cluster_head *head, void *priv);

/* Send room's batches lost past head again over r, one call at a time in
 * their order, each exactly as first sent (same expected head, time,
 * window, actions, incarnation; with WAIT as given). A batch of another
 * incarnation than head's (head.inc: Redis's room was deleted and created
 * again) is never sent: it and every later one are lost. done runs
 * exactly once. The
 * journal must outlive the replay; batches added meanwhile are beyond
 * what is replayed only if they follow it. 0, or MX_ENOMEM (done not run). */
int mx_journal_replay(struct mx_journal *j, struct mx_redis *r, const char *prefix, const char *room,
                      const struct mx_cluster_head *head, int wait_replicas, int wait_timeout_ms,
                      mx_journal_replayed_fn done, void *priv);

/* Let replays wait for other nodes (0 ms: they never wait). A replayed
 * batch answered `moved` while Redis's head is still *behind* the head the
 * batch was decided on means another node's lost entries come first: the
 * replay tries again every 50 ms on ctx's loop until that node has
 * restored them, or patience_ms pass without progress (then the rest is
 * lost as above). Interleaved tails of several writing nodes so come back
 * whole. Replays still waiting when the journal is freed end with ok = 0;
 * free the replays' link and the journal in the same loop turn (a call in
 * flight ends with the link, a pending retry with the journal). */
void mx_journal_set_patience(struct mx_journal *j, struct lws_context *ctx, int patience_ms);

/* -1, 0, 1 as ID (seq, sub) of a is before, equal to, after b's. */
int mx_cluster_id_cmp(const struct mx_cluster_head *a, const struct mx_cluster_head *b);

#endif
