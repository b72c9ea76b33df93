/* cluster_presence.h - presence across the nodes of a cluster (issue #14,
 * docs/CLUSTER.md "Presence across nodes").
 *
 * Each node publishes the presence changes of its own connections, one
 * message per room and loop turn, on the room's presence channel
 * (P{R}:pr), and listens on the channels of the rooms it holds (joined).
 * What other nodes publish comes back through on_remote: a remote
 * connection's state, or that it left. Every node heartbeats on the nodes
 * channel (Pnodes); a node not heard for dead_ms has all its entries
 * reported as left. A node that (re)subscribes a room's channel asks "who
 * is here" and the nodes with connections there answer with their full
 * list; what the answers do not confirm within dead_ms is reported as left.
 * Nothing is stored in Redis: presence is soft state that its owners
 * re-announce.
 */
#ifndef MOVEXD_CLUSTER_PRESENCE_H
#define MOVEXD_CLUSTER_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

struct lws_context;
struct lws_vhost;
struct mx_cpres;

/* A remote connection's presence in room changed. owner identifies it (a
 * stable address while it is present, never dereferenced by the caller);
 * conn is the number this node shows for it (from new_conn, fresh for each
 * remote connection and room). state: encoded JSON, or NULL when it left
 * (owner is invalid after the call). */
typedef void (*mx_cpres_remote_fn)(void *priv, const char *room, size_t roomlen, const void *owner,
                                   uint64_t conn, const char *client, size_t clientlen,
                                   const char *state, size_t statelen);

struct mx_cpres_opts {
    int heartbeat_ms; /* heartbeat period; 0: 1000 */
    int dead_ms;      /* a node silent this long is gone; 0: 3000 */
    mx_cpres_remote_fn on_remote;
    uint64_t (*new_conn)(void *priv);
    void *priv;
};

struct mx_cluster_config;

/* The presence layer of node cc->node_id: keys under cc->key_prefix, two
 * Redis links of its own (a command link to publish, a subscriber link),
 * made like the node's other links (`redis` or `sentinels`, timeouts), so
 * presence never waits behind a room's FCALL. NULL when out of memory. */
struct mx_cpres *mx_cpres_new(struct lws_context *ctx, struct lws_vhost *vh,
                              const struct mx_cluster_config *cc, const struct mx_cpres_opts *o);

/* 1 while both links are up. */
int mx_cpres_up(const struct mx_cpres *cp);

/* This node holds room: listen on its channel and learn who is there. 0,
 * or -1 when out of memory. Joining twice is one join. */
int mx_cpres_join(struct mx_cpres *cp, const char *room, size_t roomlen);

/* This node no longer holds room: stop listening; every remote entry of
 * the room is reported as left first. */
void mx_cpres_leave(struct mx_cpres *cp, const char *room, size_t roomlen);

/* A local connection's presence in room changed (state NULL: it left).
 * Published within a loop turn, batched per room. 0, or -1 when out of
 * memory (the change is not published). */
int mx_cpres_local(struct mx_cpres *cp, const char *room, size_t roomlen, uint64_t conn,
                   const char *client, size_t clientlen, const char *state, size_t statelen);

struct mx_cpres_stats {
    unsigned long published;  /* messages published (changes, full lists, queries) */
    unsigned long received;   /* messages from other nodes taken */
    unsigned long bad;        /* messages that did not parse (ignored) */
    unsigned long nodes_gone; /* nodes given up (silent past dead_ms, or said bye) */
    size_t remote;            /* remote entries now */
};
void mx_cpres_stats(const struct mx_cpres *cp, struct mx_cpres_stats *out);

/* The engine's presence seam (engine.h) served by cp: the engine's local
 * changes are published, rooms it holds are joined and left. With
 * opts.on_remote = mx_engine_presence_remote, opts.new_conn =
 * mx_engine_new_conn_id and opts.priv = the engine, that is the whole
 * wiring:
 *     mx_cpres_engine_hook(cp, &h); mx_engine_set_presence_hook(e, &h); */
struct mx_engine_presence_hook;
void mx_cpres_engine_hook(struct mx_cpres *cp, struct mx_engine_presence_hook *out);

/* The node stops: tell the others ("bye", so they need not wait for its
 * silence) and stop the heartbeat. The bye leaves with the next turns of
 * the loop (a daemon calls this before its shutdown drain). */
void mx_cpres_stop(struct mx_cpres *cp);

/* Report nothing, free (links included). */
void mx_cpres_free(struct mx_cpres *cp);

#endif
