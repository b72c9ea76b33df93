/* cluster_room.h - what src/cluster_commit.c (the gate, per-room batches,
 * FCALLs) and src/cluster_replica.c (loading rooms from Redis, applying
 * entries, catch-up) share. Private to those two files; the engine sees
 * only cluster_node.h.
 *
 * Threading rule: Redis callbacks that carry a reply run inside
 * lws_service (never inside mx_engine_handle); a command that fails at
 * once runs its callback synchronously, possibly inside the engine. So a
 * callback only changes this module's state, opens or fails gates and
 * sends commands; handling queued messages again (the engine) happens in
 * cn_drain, from mx_cnode_flush, for the rooms on the due list. Only
 * callbacks with a real reply (never synchronous) may push fwds.
 */
#ifndef MOVEXD_CLUSTER_ROOM_H
#define MOVEXD_CLUSTER_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/cluster.h"
#include "movexd/cluster_node.h"
#include "movexd/map.h"

struct mx_redis;
struct mx_journal;
struct mx_journal_batch;
struct mx_jfile;

/* A message published on a room's channel while the room was busy
 * ("ID HASH ENTRY"): applied from here once the room settles, so a
 * `moved` batch or a batch that had others' entries appended behind it
 * needs no XRANGE when the channel already brought what it missed. */
struct cn_pub {
    char *msg;
    size_t len;
};

/* A message waiting for its room, or the message of a slot. */
struct cn_msg {
    struct mx_conn *conn; /* NULL once its connection closed */
    char *msg;
    size_t len;
    uint64_t t_us;
    int type;             /* enum mx_req_type */
    unsigned retries;     /* times decided again after `moved` */
    int unavailable;      /* handle again only to answer `unavailable` */
};

/* One action of a batch. kind 0: decided without a record (duplicate,
 * too_old, refused): not sent, but its replies rest on the batch's
 * speculative state, so it shares the fate of the slots before it. */
struct cn_slot {
    struct cn_msg m;
    struct mx_gate *gate;
    char kind;            /* 0, 'a' applied, 'r' recorded reject */
    char *client;
    uint64_t n, base, seq;
    uint64_t deps[16];
    size_t ndeps;
    int strict;
    char what[MX_CLUSTER_SUM_MAX + 1]; /* 'a': checksum after (hex); 'r': reject code */
    char *body;           /* 'a': the log entry text */
    size_t body_len;
};

/* CN_YIELDING: the room's last batch yielded to another node's turn; it
 * waits for that node's entries on the channel (or CN_TURN_MS) before
 * deciding again (cluster_commit.c). */
enum cn_busy { CN_IDLE = 0, CN_LOADING, CN_CATCHUP, CN_CREATING, CN_APPENDING, CN_DELETING, CN_YIELDING };

/* How long a turn lasts (cluster_fn.lua TURN_MS): a yielding room waits at
 * most this long for the holder's entries. */
#define CN_TURN_MS 100

struct cn_room {
    struct mx_cnode *node;
    char *id;
    size_t idlen;
    char *channel;
    int known;       /* the engine's room is a replica of Redis's: head is valid */
    int absent;      /* the last load found no such room (the queue is handled once so) */
    enum cn_busy busy;
    int subscribed;
    int recheck;     /* catch up at the next tick (a message may have been missed) */
    int epoch_stale; /* Redis's epoch changed while busy: resync once idle (cluster_rollback.c) */
    void *rb_hold;   /* cluster_rollback.c: a replay's hold waiting on a timer */
    uint64_t sent_ms; /* the in-flight batch's time (the journal resends it byte for byte) */
    int due;         /* on the node's due list */
    int dirty;       /* on the node's dirty list */
    int drop_room;   /* drain: forget the engine's room (a lost create, a room gone) */
    int drop_tell;
    struct mx_cluster_head head; /* confirmed */
    uint64_t fwd_seq;            /* local subscribers have had fwds up to here */
    uint64_t seen_seq, seen_sub; /* highest ID published while busy */
    void *yield_timer;           /* CN_YIELDING: its timer (cluster_commit.c), else NULL */
    struct cn_pub *pub;          /* what was published while busy, in order (cluster_replica.c) */
    size_t npub, cappub, pub_bytes;
    int pub_lost;                /* a message was not kept: only XRANGE can catch up */
    char *init;                  /* loading: the room's initial state (JSON) */
    char load_inc[MX_CLUSTER_INC_MAX + 1]; /* loading: the room's incarnation in Redis */
    struct cn_msg *q;            /* the queue: q[qh .. qh + nq) */
    size_t qh, nq, capq;
    struct cn_slot *forming, *inflight;
    size_t nforming, capforming, ninflight;
    size_t forming_bytes;        /* the forming batch's messages (the batch bound) */
    uint64_t snap_seq;           /* the newest snapshot this node knows of (cluster_snapshot.c) */
    int snapping;                /* a movexd_snapshot call in flight */
    struct mx_room *loaded;      /* loading: the room decoded from the snapshot, at loaded_head */
    struct mx_cluster_head loaded_head;
    unsigned load_gaps;          /* loads redone because a trim raced the snapshot read */
    int create_due;              /* a create to send at the next flush */
    struct mx_gate *create_gate;
    struct cn_msg create_msg;
    /* deletion (cluster_delete.c) */
    int delete_due;              /* an admin delete to send once the room is idle */
    struct cn_msg del_msg;       /* its requester (conn NULL once gone); msg set while pending */
    int del_done, del_err;       /* answered: 0 or a negative mx_err, given back at drain */
    int deleted_seen;            /* "delete INC" heard on the channel: drop at drain */
    char deleted_inc[MX_CLUSTER_INC_MAX + 1];
    /* the periodic head check (cluster_headcheck.c) */
    int hc_inflight;             /* a head read in flight */
    struct mx_cluster_head hc_head; /* the confirmed head when it was sent */
};

struct mx_cnode {
    const struct mx_config *cfg;
    mx_engine *e;
    struct lws_context *ctx;
    struct mx_redis *cmd, *sub;
    int lib_ok;                /* the function library is loaded on the current link */
    mx_map *rooms;             /* room id -> struct cn_room */
    struct cn_room **duel;     /* rooms to drain at the next flush */
    size_t ndue, capdue;
    struct cn_room **dirty;    /* rooms with a forming batch or a create to send */
    size_t ndirty, capdirty;
    struct cn_room *pass;      /* the room of the message being handled again */
    unsigned pass_retries;
    struct cn_room *cur;       /* the room of the request that passed the gate last */
    long cur_slot;             /* its slot in cur->forming, -1: none */
    const char *cur_msg;
    size_t cur_len;
    struct mx_conn *cur_conn;
    uint64_t cur_t_us;
    int cur_type;
    size_t live_msgs;          /* queued messages + slots + creates (conn_closed scans only then) */
    int closing;
    struct mx_cnode_stats st;
    struct mx_journal *journal; /* this node's confirmed batches (cluster_rollback.c) */
    struct mx_jfile *jfile;     /* ... on disk */
    char epoch[64];             /* Redis's epoch as last seen; "" before the first link */
    int lib_reloading;          /* cn_library_check: a FUNCTION LOAD in flight */
    size_t hc_next;             /* cluster_headcheck.c: the eligible room this tick's check starts at */
};

/* cluster_commit.c */
void cn_due(struct mx_cnode *n, struct cn_room *cr);
/* A yielding room heard from the channel, or its wait ran out: it is idle
 * again and catches up (cn_replica_forward) before deciding again. */
void cn_yield_end(struct mx_cnode *n, struct cn_room *cr);
struct cn_room *cn_room_get(struct mx_cnode *n, const char *id, size_t len, int make);
int cn_msg_copy(struct mx_cnode *n, struct cn_msg *m, struct mx_conn *c, const char *msg, size_t len,
                uint64_t t_us, int type);
void cn_msg_free(struct mx_cnode *n, struct cn_msg *m);
int cn_mark_dirty(struct mx_cnode *n, struct cn_room *cr);
/* A call failed with Redis's error err: when it says the library is not
 * this node's (an older node's replaced it), load ours again. */
void cn_library_check(struct mx_cnode *n, const char *err);
int cn_queue_front(struct mx_cnode *n, struct cn_room *cr, const struct cn_msg *m);
void cn_fail_queue(struct cn_room *cr);

/* cluster_replica.c */
/* Load (or reload) the room from Redis: busy = CN_LOADING until done. */
void cn_replica_load(struct mx_cnode *n, struct cn_room *cr);
/* Fetch and apply what follows the confirmed head: busy = CN_CATCHUP. */
void cn_replica_catch_up(struct mx_cnode *n, struct cn_room *cr);
/* The room whose channel (PREFIX{R}:ch) this is, or NULL. */
struct cn_room *cn_room_of_channel(struct mx_cnode *n, const char *channel, size_t clen);
/* A message on a room's channel. */
void cn_replica_message(struct mx_cnode *n, const char *channel, size_t clen, const char *msg,
                        size_t mlen);
/* After a call of the room finished: catch up when something newer was
 * published meanwhile. */
void cn_replica_settled(struct mx_cnode *n, struct cn_room *cr);
/* The room is idle at its confirmed head (a `moved` batch rolled back):
 * bring it to `to` (Redis's head; NULL: what was published) from the
 * messages the channel brought while it was busy, or, when they do not
 * reach it, with one XRANGE (busy = CN_CATCHUP). A fork reloads. */
void cn_replica_forward(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *to);
/* Forget what the channel brought while busy (a load reads it all). */
void cn_replica_pub_clear(struct cn_room *cr);
/* The recorded actions of slots (kind 'a' or 'r') as the append's
 * arguments, into out (room for n); how many. */
size_t cn_batch_actions(const struct cn_slot *s, size_t n, struct mx_cluster_action *out);

/* cluster_delete.c: the admin API's room deletion across the cluster */
/* Send the room's pending delete (the room is idle, nothing forming). */
void cn_del_send(struct mx_cnode *n, struct cn_room *cr);
/* A "delete INC" message on the room's channel (msg after "delete "). */
void cn_del_message(struct mx_cnode *n, struct cn_room *cr, const char *inc, size_t len);
/* From drain, the room idle: act on a delete heard and answer the
 * requester of one that was answered. */
void cn_del_drain(struct mx_cnode *n, struct cn_room *cr);
/* 1 while a delete is pending for the room (asked, in flight, heard or
 * not yet answered): the room's requests wait, its bookkeeping stays. */
int cn_del_pending(const struct cn_room *cr);

/* cluster_headcheck.c: Redis's head of the rooms with local subscribers,
 * read once a tick (bounded) and compared with the confirmed head */
void cn_hc_tick(struct mx_cnode *n);
void cn_hc_metrics(const struct mx_cnode *n, mx_buf *b);

/* cluster_snapshot.c */
/* The room is settled at its confirmed head: store a snapshot when one is
 * due (the library decides whether it is kept). */
void cn_snap_maybe(struct mx_cnode *n, struct cn_room *cr);
/* Read the room's snapshot for a load: done with err NULL and cr->loaded
 * set (at cr->loaded_head) or NULL (none, or unusable); err set when the
 * read failed. */
typedef void (*cn_snap_read_fn)(struct mx_cnode *n, struct cn_room *cr, const char *err);
void cn_snap_read(struct mx_cnode *n, struct cn_room *cr, cn_snap_read_fn done);
void cn_snap_metrics(const struct mx_cnode *n, mx_buf *b);

/* cluster_rollback.c: the journal, the epoch, rollback detection */
int cn_rb_init(struct mx_cnode *n);
void cn_rb_free(struct mx_cnode *n);
/* The command link came up: read (or set) Redis's epoch. */
void cn_rb_link_up(struct mx_cnode *n, struct mx_redis *r);
/* The in-flight batch was confirmed whole: journal it. */
void cn_rb_confirmed(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *expected,
                     const struct mx_cluster_head *after);
/* An append was refused on head redis: 1 when that is a rollback (the
 * journal replay has started, the room is busy until it ends). */
int cn_rb_check_append(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *redis);
/* The room's local subscribers miss entries nothing can forward any more:
 * forget the room, tell them (they subscribe again). Returns 1. */
int cn_rb_resync(struct mx_cnode *n, struct cn_room *cr);
/* A reload built `loaded` (head h) for the engine's room `have`: 1 when
 * subscribers were sent what the log no longer has - a head behind what
 * they saw, or another checksum at the seq they are at (a fork); then the
 * journal's batches past h are replayed (the room busy meanwhile) or, with
 * none, the room is resynced; the caller drops what it loaded. */
int cn_rb_check_reload(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *h,
                       const struct mx_room *have, const struct mx_room *loaded);
/* Redis's head of the room (an append's answer, a reload) names another
 * incarnation than the node's confirmed head: the room was deleted and
 * created again. 1 then: the journal's batches of the room are given up
 * (counted lost: they belong to the old room), the room is forgotten with
 * its subscribers told (they subscribe again) and the room idle. */
int cn_rb_check_inc(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *redis);
/* A fresh load (no replica here before) ended at head h: 1 when the
 * journal has this node's batches past h, or forked - one whose `after`
 * ID the load found with another hash (NULL: none) - then they are
 * replayed (the room busy meanwhile) and the caller drops what it loaded. */
int cn_rb_check_load(struct mx_cnode *n, struct cn_room *cr, const struct mx_cluster_head *h,
                     const struct mx_journal_batch *forked);
/* The command link is up with the library loaded: compare Redis's head of
 * every journal room not in memory (evicted, or from before a restart)
 * with the journal's newest batch of it, and replay what Redis lost. */
void cn_rb_check_journal(struct mx_cnode *n);
/* A load found no such room in Redis: the journal's batches of it are
 * given up (counted lost: a room created again is another incarnation). */
void cn_rb_gone(struct mx_cnode *n, struct cn_room *cr);
/* The room is idle again: 1 when an epoch change made it resync. */
int cn_rb_settled(struct mx_cnode *n, struct cn_room *cr);
void cn_rb_metrics(const struct mx_cnode *n, mx_buf *b);

#endif
