/* engine.h - the protocol engine: turns each request of a connection into
 * room operations and replies, and holds replies in an outbox until the
 * storage has made the decisions behind them durable.
 *
 * The engine is pure: it knows connections only as struct mx_conn, whose
 * deliver/close hooks the network edge (session.c) provides.
 *
 * Ordering: every message for a connection - replies and fwds alike - goes
 * through one FIFO outbox, released in order by mx_engine_commit() after a
 * successful storage flush. So on one connection everything about a room
 * arrives in seq order, and a reply never overtakes a fwd of a lower seq.
 */
#ifndef MOVEXD_ENGINE_H
#define MOVEXD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/config.h"
#include "movexd/frame.h"
#include "movexd/jwt.h"
#include "movexd/map.h"
#include "movexd/proto.h"
#include "movexd/storage.h"

struct mx_room;
typedef struct mx_engine mx_engine;

struct mx_conn {
    /* Set by the edge before mx_engine_conn_open(). deliver takes its own
     * reference to f (or drops it); close asks the edge to close the
     * connection with a WebSocket close code. */
    void (*deliver)(struct mx_conn *c, mx_frame *f);
    void (*close)(struct mx_conn *c, int code, const char *reason);
    void *edge; /* the edge's own pointer */

    /* Owned by the engine. */
    uint64_t conn_id; /* unique per connection (welcome "conn"; presence) */
    int hello;
    char client[MX_CLIENT_ID_MAX + 1];
    size_t clientlen;
    struct mx_room **rooms; /* subscriptions */
    size_t *room_pos;       /* room_pos[k]: this connection's index in rooms[k]->subs */
    size_t nrooms, caprooms;
    size_t pending; /* outbox entries addressed to this connection */
    size_t pending_bytes; /* their bytes: what this connection's requests made
                             the server hold until the commit (the edge stops
                             reading from it when this and its send queue
                             reach max_queue_bytes) */
    size_t out_first, out_last; /* its outbox entries, as index + 1 (0: none), chained
                                   in order, so closing it costs its own entries only */
    int held;       /* scratch: an entry for it is held by a failed flush */
    int closed;             /* the engine asked the edge to close it */
    int admin;              /* the admin API: every right, no subscription needed */
    int authed;             /* auth jwt: hello carried a valid token */
    struct mx_token token;  /* its claims (sub, exp, grants) */
};

/* Close codes the engine asks for. */
#define MX_CLOSE_UNAUTHORIZED 4001 /* bad token at hello, or the token expired */

struct mx_engine_stats {
    uint64_t rooms, connections;
    uint64_t actions_applied, actions_rejected, actions_duplicate;
    uint64_t actions_unavailable, rooms_evicted, auth_failures, forbidden;
    uint64_t messages_in, errors_sent;
};

/* rooms: rooms recovered by the storage (taken over), or NULL. */
mx_engine *mx_engine_new(const struct mx_config *cfg, const struct mx_storage *st, mx_map *rooms);
void mx_engine_free(mx_engine *e);

void mx_engine_conn_open(mx_engine *e, struct mx_conn *c);
/* The connection is gone: unsubscribe it and drop its outbox entries. */
void mx_engine_conn_closed(mx_engine *e, struct mx_conn *c);

/* Handle one complete inbound text message. Replies are queued in the
 * outbox; nothing is delivered until mx_engine_commit(). */
void mx_engine_handle(mx_engine *e, struct mx_conn *c, const char *msg, size_t len);
/* The same for a message that arrived at t_us (mx_now_us's clock), so
 * the edge's clock read serves both (the engine reads none per message). */
void mx_engine_handle_at(mx_engine *e, struct mx_conn *c, const char *msg, size_t len, uint64_t t_us);

/* Refuse a message without handling it (rate limit): an error reply that
 * echoes the message's top-level id when it has one. */
void mx_engine_refuse(mx_engine *e, struct mx_conn *c, const char *msg, size_t len, int err,
                      const char *message);

/* Queue an error reply (used by the edge for frames it refuses itself). */
void mx_engine_send_error(mx_engine *e, struct mx_conn *c, int err, const char *message);

/* Flush storage and deliver the outbox in order. Called once per event-loop
 * turn. Returns 0, or the storage's error (then nothing was delivered). */
int mx_engine_commit(mx_engine *e);

/* Called by mx_engine_commit() once the turn's frames are handed to the
 * connections (deliver) and before the storage's after-commit housekeeping
 * (snapshots, checkpoints): the edge writes them to the sockets there, so
 * replies never wait for that work nor for another turn of the loop. NULL
 * (the default): nothing is called. */
void mx_engine_set_released(mx_engine *e, void (*fn)(void *ctx), void *ctx);

/* About once a second, right after a commit: storage housekeeping (fsync
 * everysec, retry after a full disk) and eviction of idle rooms. Returns
 * the storage's error, as mx_engine_commit. */
int mx_engine_tick(mx_engine *e);

/* Work that runs between event-loop turns: further batches of idle rooms
 * to evict when the tick found more than one batch, and recovery work left
 * from start-up (storage.h `background`, for about budget_us). Call after a
 * tick and again while it returns 1 (2: it waits for the disk, call again
 * in a second). 0 when none is left. */
int mx_engine_background(mx_engine *e, uint64_t budget_us);

/* Final commit and clean storage shutdown (snapshots). */
void mx_engine_close(mx_engine *e);

/* Delete a room: logged, subscribers told (error no_such_room with the room)
 * and unsubscribed. 0 or a negative mx_err. */
int mx_engine_delete_room(mx_engine *e, const char *id, size_t len);

/* Presence (presence.h): at most one announcement per connection and room
 * in this interval; later changes are coalesced (the latest wins) and go
 * out at the first commit after it. */
#define MX_PRESENCE_INTERVAL_MS 50
/* 1 while presence changes wait for their interval: the loop must commit
 * again within MX_PRESENCE_INTERVAL_MS even if nothing else happens. */
int mx_engine_presence_waiting(const mx_engine *e);

/* Cluster mode's presence seam (cluster_presence.c, docs/CLUSTER.md): told
 * of every announced presence change of a local connection (state NULL:
 * it left) and of each room gaining its first local subscriber (held 1)
 * or losing its last (held 0). The hooks must not call back into the
 * engine. Unset (all NULL): single-node mode. */
struct mx_engine_presence_hook {
    void (*local)(void *priv, const char *room, size_t roomlen, uint64_t conn, const char *client,
                  size_t clientlen, const char *state, size_t statelen);
    void (*held)(void *priv, const char *room, size_t roomlen, int held);
    void *priv;
    void (*metrics)(void *priv, mx_buf *b); /* its /metrics lines; may be NULL */
};
void mx_engine_set_presence_hook(mx_engine *e, const struct mx_engine_presence_hook *h);

/* A connection of another node (owner: its identity, conn: the number
 * shown for it) set its presence in room to state, or left (state NULL).
 * Announced to the room's subscribers like a local one (a set coalesced
 * and rate-limited, a leave at once) and listed in subscribe replies.
 * Ignored when the room is not in memory. engine is the mx_engine (the
 * signature is cluster_presence.h's mx_cpres_remote_fn). */
void mx_engine_presence_remote(void *engine, const char *room, size_t roomlen, const void *owner,
                               uint64_t conn, const char *client, size_t clientlen, const char *state,
                               size_t statelen);

/* A fresh connection number (welcome "conn"), also for the connections of
 * other nodes, so the numbers a client sees never collide. */
uint64_t mx_engine_new_conn_id(void *engine);

/* 1 when the outbox holds undelivered messages. */
int mx_engine_has_pending(const mx_engine *e);

void mx_engine_stats(const mx_engine *e, struct mx_engine_stats *out);

/* Welcome limits as a JSON object text (for tests and the welcome message). */
const struct mx_config *mx_engine_config(const mx_engine *e);

/* Append the engine's and storage's metrics (Prometheus text). */
void mx_engine_metrics(const mx_engine *e, mx_buf *b);
/* For /readyz: 1 while decisions can be made durable; 0 while the storage
 * is failing (a write or flush failed: acks are held); -1 while actions are
 * refused `unavailable` (the storage refused the last reservation, and
 * still refuses it: disk full); -2 in cluster mode while Redis is not
 * usable (room requests are answered `unavailable` at once, nothing held). */
int mx_engine_ready(mx_engine *e);

/* The configuration changed (reload): rooms take their type's new
 * settings (history length, limits); the reducer of a live room stays. */
void mx_engine_config_changed(mx_engine *e);

/* Keys for verifying tokens (auth jwt); copied. */
void mx_engine_set_keys(mx_engine *e, const struct mx_jwt_keys *keys);

/* Admin API: dispatch `action` into room as the server. The idempotency key
 * is the client id ("admin:" + key, n = 1), so a repeated request gets the
 * original ack (duplicate) instead of applying twice. The reply (ack,
 * reject or error) reaches c->deliver after the commit, like any reply.
 * c must have been opened with mx_engine_conn_open. */
void mx_engine_admin_action(mx_engine *e, struct mx_conn *c, const char *room, size_t roomlen,
                            const char *key, size_t keylen, const json_t *action);

/* Admin API: a room as JSON {"room","seq","checksum","state"} into out (loads
 * it from disk if needed). 0 or a negative mx_err. */
int mx_engine_room_json(mx_engine *e, const char *room, size_t roomlen, mx_buf *out);

/* Admin API: JSON {"rooms":[{"room","seq","subscribers"}...],"on_disk":N}. */
void mx_engine_rooms_json(mx_engine *e, mx_buf *out);

/* ---- cluster mode (cluster_node.h): what the node calls ---- */
struct mx_cnode;
/* Cluster mode on: requests naming a room pass mx_cnode_gate first, the
 * outbox releases entries by their gates, storage is only memory. */
void mx_engine_set_cluster(mx_engine *e, struct mx_cnode *n);
/* Handle a message the node queued (t_us: when it arrived); unavailable=1
 * answers it `unavailable` without handling it. */
void mx_engine_handle_again(mx_engine *e, struct mx_conn *c, const char *msg, size_t len,
                            uint64_t t_us, int unavailable);
/* A room loaded from Redis joins the rooms in memory: 0, or -1 (OOM). */
int mx_engine_adopt_room(mx_engine *e, struct mx_room *r);
/* Drop a room from memory; its subscribers are unsubscribed, and told
 * (error no_such_room) unless tell is MX_FORGET_QUIET: "the room is gone
 * from the cluster" (a resync), or "the room was deleted" - the words of
 * single-node deletion (docs/PROTOCOL.md "Deletion notice"). */
enum { MX_FORGET_QUIET = 0, MX_FORGET_GONE = 1, MX_FORGET_DELETED = 2 };
void mx_engine_forget_room(mx_engine *e, struct mx_room *r, int tell);
/* Cluster mode: the admin API deletes a room through the cluster node;
 * 0 when its answer comes to c later (mx_engine_admin_deleted), else a
 * negative mx_err to answer now. */
int mx_engine_delete_room_cluster(mx_engine *e, struct mx_conn *c, const char *id, size_t len);
/* The answer to that delete for c: {"deleted":true}, or the error. */
void mx_engine_admin_deleted(mx_engine *e, struct mx_conn *c, int err);
/* An entry applied from Redis goes to the room's local subscribers. */
void mx_engine_fwd(mx_engine *e, struct mx_room *r, const uint8_t *prev, const char *entry, size_t len);

/* Look a room up in memory (tests, admin). */
struct mx_room *mx_engine_room(mx_engine *e, const char *id, size_t len);
/* The same, loading it from storage when needed; NULL with *err set. */
struct mx_room *mx_engine_room_load(mx_engine *e, const char *id, size_t len, int *err);

#endif
