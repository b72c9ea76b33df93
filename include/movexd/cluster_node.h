/* cluster_node.h - the seam between the engine and cluster mode (issue #14,
 * docs/CLUSTER.md). The engine knows nothing of Redis: it asks this module
 * whether a request may be handled now, tells it what it decided, and holds
 * replies behind gates that this module opens or fails.
 *
 * The flow of one action, node side:
 *  1. mx_engine_handle decodes a request naming a room and calls
 *     mx_cnode_gate(). The room must be *ready* here: its replica loaded
 *     from Redis (cluster_replica.c), no call of it in flight, nothing of it
 *     queued, and - for anything but an action - no action of it decided
 *     and not yet confirmed. Otherwise the message is copied into the
 *     room's queue (MX_CNODE_QUEUED) and handled again, in arrival order,
 *     when the room is ready (mx_engine_handle_again). Without a usable
 *     Redis link: MX_CNODE_DOWN (the engine answers `unavailable`).
 *  2. MX_CNODE_PASS for an action: the action gets a *slot* in the room's
 *     forming batch and a gate; every outbox entry the engine pushes while
 *     handling it (ack, reject, fwds to local subscribers) is held behind
 *     that gate. The engine decides it on the replica exactly as in
 *     single-node mode (mx_room_decide) and reports a recorded outcome
 *     (applied, or a reject that uses up n) with mx_cnode_decided().
 *  3. mx_cnode_flush() (every mx_engine_commit) sends each forming batch as
 *     one FCALL movexd_append (cluster_commit.c), naming the confirmed head
 *     it was decided on: at most one call in flight per room, and what
 *     arrives for the room meanwhile waits in its queue (group commit).
 *  4. The answer opens the gates of the slots Redis confirmed, in order. At
 *     the first slot whose verdict differs (`moved`: another node appended
 *     first; or Redis's dedup memory knew better) that slot and all later
 *     ones fail: their held replies are dropped, the whole batch is rolled
 *     back in place (mx_room_batch_rollback: the replica is at the
 *     confirmed head again), the entries that moved the head are applied
 *     (from the channel, else one XRANGE) and their messages are handled
 *     again, first in the queue, on the fresh head (a refusal without
 *     progress at most append_retries times; any action not appended
 *     within command_timeout_ms is answered `reject unavailable`). A failed
 *     call (link down, timeout, error) fails every slot: each action is
 *     answered `unavailable` - safe only because a resend with the same
 *     (client, n) is answered from Redis's exactly-once memory, so an action
 *     the call did append is never applied twice.
 *  5. Entries other nodes append reach the replica through the room's
 *     channel (cluster_replica.c) and go to local subscribers as fwds.
 *
 * A create is a call of its own (FCALL movexd_create) with a gate on the
 * `created` (or subscribe) reply; `exists` means another node won: the
 * local room is dropped and the request handled again on the loaded one.
 */
#ifndef MOVEXD_CLUSTER_NODE_H
#define MOVEXD_CLUSTER_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/buf.h"
#include "movexd/config.h"

struct mx_conn;
struct mx_room;
struct mx_request;
struct mx_action_out;
struct lws_context;
struct lws_vhost;
typedef struct mx_engine mx_engine;

/* A gate: outbox entries behind it leave when it passes, are dropped when
 * it fails. Refcounted: the slot and each held entry hold a reference. */
enum { MX_GATE_PENDING = 0, MX_GATE_PASSED = 1, MX_GATE_FAILED = -1 };
struct mx_gate {
    unsigned refs;
    int state;
};
struct mx_gate *mx_gate_ref(struct mx_gate *g);
void mx_gate_unref(struct mx_gate *g);

struct mx_cnode;

/* The node: its command and subscriber links to Redis on the lws loop of
 * ctx (vh lists mx_redis_protocol). NULL when out of memory. */
struct mx_cnode *mx_cnode_new(const struct mx_config *cfg, mx_engine *e, struct lws_context *ctx,
                              struct lws_vhost *vh);
void mx_cnode_free(struct mx_cnode *n);

enum mx_cnode_verdict { MX_CNODE_PASS = 0, MX_CNODE_QUEUED = 1, MX_CNODE_DOWN = 2 };

/* Step 1 above. q is decoded (q->room set); msg/len the raw message,
 * t_us when it arrived. On PASS for an action, *gate is the gate for its
 * replies (a new reference for the engine), else NULL. */
enum mx_cnode_verdict mx_cnode_gate(struct mx_cnode *n, struct mx_conn *c, const struct mx_request *q,
                                    const char *msg, size_t len, uint64_t t_us,
                                    struct mx_gate **gate);

/* Step 2: the action that passed the gate last was decided with a recorded
 * outcome (o->decision APPLIED or REJECTED). 0, or MX_ENOMEM (the engine
 * then answers `unavailable`: nothing was sent). */
int mx_cnode_decided(struct mx_cnode *n, struct mx_room *r, struct mx_conn *c,
                     const struct mx_request *q, const struct mx_action_out *o);

/* The engine created room r locally (create, or subscribe with
 * create_on_subscribe) for the request that passed the gate last. Returns
 * the gate for its replies (a new reference), or NULL when out of memory
 * (the engine drops the room and answers the error). */
struct mx_gate *mx_cnode_created(struct mx_cnode *n, struct mx_room *r);

/* Step 3: send the forming batches (called by mx_engine_commit). */
void mx_cnode_flush(struct mx_cnode *n);

/* c is gone: its queued messages are dropped, its slots keep going (their
 * outcomes are recorded in Redis either way) without a reply. */
void mx_cnode_conn_closed(struct mx_cnode *n, struct mx_conn *c);

/* The room's last head confirmed by Redis (the replica may hold more, not
 * yet confirmed, after a failed call): 0 with *seq and sum, or -1 when
 * the node has none. Replies that name a head without a decision
 * (`unavailable`) use it. */
int mx_cnode_head(const struct mx_cnode *n, const char *room, size_t len, uint64_t *seq,
                  uint8_t sum[16]);

/* The engine's room r (no local subscribers, idle for evict_idle_ms) may
 * leave memory: 1 when the node let go of it (its channel unsubscribed,
 * its replica state freed; the next use loads it from Redis as on first
 * use) and the engine must free r now; 0 when it must stay for now. */
int mx_cnode_evict(struct mx_cnode *n, struct mx_room *r);

/* The admin API deletes room across the cluster (docs/CLUSTER.md
 * "Deleting a room"): 0 when the delete is under way - its answer comes
 * to c through mx_engine_admin_deleted, the room's requests wait
 * meanwhile; or a negative mx_err to answer now (MX_EUNAVAILABLE: Redis
 * not reachable, or a delete of the room already pending). */
int mx_cnode_delete(struct mx_cnode *n, struct mx_conn *c, const char *room, size_t len);

/* 1 while the command link is up and the library loaded (/readyz). */
int mx_cnode_ready(const struct mx_cnode *n);

/* About once a second: rooms due for a check against Redis catch up. */
void mx_cnode_tick(struct mx_cnode *n);

/* Prometheus lines: movexd_cluster_* counters and gauges. */
void mx_cnode_metrics(const struct mx_cnode *n, mx_buf *b);

struct mx_cnode_stats {
    uint64_t calls, batched_actions, moved, reloads, catchups, applied_foreign, call_failures;
    uint64_t refused_down; /* actions answered unavailable without a call: the link was down */
    uint64_t creates, create_lost;
    uint64_t rollbacks, epoch_changes, restored_batches, lost_batches, resyncs, journal_failures;
    uint64_t snapshots_stored, snapshots_refused, snapshots_failed, snapshot_loads;
    uint64_t evicted;
    uint64_t rolled_back, forwarded_from_channel, yields, yield_timeouts, yield_wait_us;
    uint64_t head_checks, head_mismatches, library_reloads;
};
void mx_cnode_stats(const struct mx_cnode *n, struct mx_cnode_stats *out);

#endif
