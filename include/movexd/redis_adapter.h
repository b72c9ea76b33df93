/* redis_adapter.h - one Redis link (hiredis 0.14 async) driven by the
 * libwebsockets event loop, with the timeouts and reconnects hiredis 0.14
 * lacks (cluster mode, docs/CLUSTER.md).
 *
 * The link is "up" once TCP is connected and a PING has been answered; it
 * goes down on an error, a closed socket, a connect that is not up within
 * connect_timeout_ms, or commands that get no reply for command_timeout_ms
 * (the link is dropped: a stuck Redis and a dead one look the same). While
 * down it reconnects with a backoff from 50 ms doubling up to
 * reconnect_max_ms. Commands sent while down, and commands pending when the
 * link drops, complete at once with reply NULL: the caller decides (cluster
 * mode answers `unavailable`, which does not use up n).
 */
#ifndef MOVEXD_REDIS_ADAPTER_H
#define MOVEXD_REDIS_ADAPTER_H

#include <stddef.h>

struct lws_context;
struct lws_vhost;
struct lws_protocols;
struct redisReply;
struct mx_redis;
struct mx_endpoint;
struct mx_cluster_config;

/* reply: NULL when the link failed or was down; otherwise owned by hiredis
 * and valid only during the call (REDIS_REPLY_ERROR replies included). */
typedef void (*mx_redis_reply_fn)(struct mx_redis *r, struct redisReply *reply, void *priv);
/* up: 1 when the link has just come up, 0 when it has just gone down. */
typedef void (*mx_redis_state_fn)(struct mx_redis *r, int up, void *priv);
/* A pub/sub message on a subscribed channel (binary safe, valid during the call). */
typedef void (*mx_redis_message_fn)(struct mx_redis *r, const char *channel, size_t clen,
                                    const char *msg, size_t mlen, void *priv);
/* Redis confirmed a SUBSCRIBE of channel (each time the link subscribes it,
 * so also after every reconnect): from now on its messages arrive. */
typedef void (*mx_redis_subscribed_fn)(struct mx_redis *r, const char *channel, size_t clen,
                                       void *priv);

struct mx_redis_opts {
    const char *host;
    int port;
    int connect_timeout_ms;
    int command_timeout_ms;
    int reconnect_max_ms;
    mx_redis_state_fn on_state;     /* may be NULL */
    mx_redis_message_fn on_message; /* subscriber links (mx_redis_subscribe) */
    void *priv;
};

/* The lws protocol the Redis socket is adopted under: add it to the
 * vhost's protocol list (before the terminating empty entry). */
extern const struct lws_protocols mx_redis_protocol;

/* A link that starts connecting at once. NULL when out of memory. The
 * vhost must list mx_redis_protocol. */
struct mx_redis *mx_redis_new(struct lws_context *ctx, struct lws_vhost *vh,
                              const struct mx_redis_opts *o);

/* Send one command (argv with lengths, binary safe); fn runs exactly once.
 * 0, or -1 when the link is down (fn has then already run with NULL). */
/* A link whose primary is found through Sentinel (o->host and o->port are
 * not used): each connect asks the sentinels in turn (SENTINEL
 * get-master-addr-by-name master_name, each within connect_timeout_ms)
 * and the link is up once the server they name answers ROLE with
 * "master". Whenever the link goes down (error, timeout, or a -READONLY
 * reply: the primary was demoted) the next connect asks again. A second,
 * internal link to a Sentinel subscribes to +switch-master: a failover
 * drops a link still up to the old primary at once. NULL when
 * out of memory, n is 0 or master_name is too long. */
struct mx_redis *mx_redis_new_sentinel(struct lws_context *ctx, struct lws_vhost *vh,
                                       const struct mx_redis_opts *o,
                                       const struct mx_endpoint *sentinels, size_t n,
                                       const char *master_name);

/* The link the cluster block describes: `redis` (o->host/port replaced)
 * or `sentinels` + `master_name`. */
struct mx_redis *mx_redis_new_cluster(struct lws_context *ctx, struct lws_vhost *vh,
                                      const struct mx_redis_opts *o,
                                      const struct mx_cluster_config *cl);

/* The port of the server the link is up to, its host into host; 0 while
 * down. */
int mx_redis_peer(const struct mx_redis *r, char *host, size_t hostlen);

int mx_redis_command(struct mx_redis *r, int argc, const char **argv, const size_t *lens,
                     mx_redis_reply_fn fn, void *priv);

int mx_redis_is_up(const struct mx_redis *r);

/* Make this a subscriber link and subscribe to channel (plain SUBSCRIBE:
 * hiredis 0.14 asserts on SSUBSCRIBE). The link remembers its channels and
 * subscribes them again each time it comes up; messages published while it
 * was down are lost, so the caller catches up (XRANGE) on on_state(up). A
 * subscriber link carries nothing else, and has no command timeout (a
 * closed socket still drops it). 0, or -1 when out of memory. */
int mx_redis_subscribe(struct mx_redis *r, const char *channel);

/* Have fn (with opts.priv) told of each SUBSCRIBE confirmation. A setter,
 * not an opts field, so the existing positional initialisers stay whole. */
void mx_redis_on_subscribed(struct mx_redis *r, mx_redis_subscribed_fn fn);

/* Forget channel (UNSUBSCRIBE when the link is up): it is not subscribed
 * again on reconnect. Messages already on their way may still arrive.
 * Unknown channels are ignored. */
void mx_redis_unsubscribe(struct mx_redis *r, const char *channel);

/* Counters for tests and metrics. */
struct mx_redis_stats {
    unsigned long connects;     /* links that came up */
    unsigned long drops;        /* links that went down (any cause) */
    unsigned long timeouts;     /* of which: connect or command timeouts */
    unsigned long subscribed;   /* SUBSCRIBE confirmations received */
    unsigned long messages;     /* pub/sub messages delivered */
    unsigned long resolves;     /* Sentinel mode: a Sentinel named the primary */
    unsigned long wrong_role;   /* ... and it did not answer ROLE "master" */
    unsigned long readonly;     /* ... -READONLY replies (each drops the link) */
    unsigned long switches;     /* ... +switch-master notices of our master_name */
};
void mx_redis_stats(const struct mx_redis *r, struct mx_redis_stats *out);

/* Every pending fn runs with NULL, then the link is freed. */
void mx_redis_free(struct mx_redis *r);

#endif
