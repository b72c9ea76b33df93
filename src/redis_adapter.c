/* redis_adapter.c - one hiredis 0.14 async link on the libwebsockets loop.
 *
 * What it owns: the hiredis async context, an lws "raw file" wsi that
 * watches the same socket (through a dup() of its descriptor: hiredis closes
 * its own, lws closes its own, so neither closes the other's), three lws
 * timers (connect timeout, command timeout, reconnect), and the callbacks of
 * commands in flight.
 *
 * Invariants:
 * - r->ac is the live context or NULL. hiredis frees a context itself after
 *   an error (calling every pending callback with NULL, then onDisconnect or
 *   onConnect(ERR), then ev.cleanup); we free it ourselves only outside
 *   hiredis callbacks (timers, mx_redis_free). Either way every command's fn
 *   runs exactly once.
 * - r->pending counts commands in flight (PING included). While it is non-
 *   zero the command timer is armed for command_timeout_ms after the last
 *   reply (or the first command): no progress for that long drops the link.
 * - up = 1 only after the connect's PING was answered, so a peer that
 *   accepts TCP and never answers is caught by the connect timeout.
 * - While not up, a reconnect is scheduled (backoff 50 ms doubling up to
 *   reconnect_max_ms, reset once up) unless the link is being freed.
 *
 * Sentinel mode (mx_redis_new_sentinel): the primary's address is not
 * configured but asked for. Each attempt first connects to a Sentinel
 * (phase ASK: SENTINEL get-master-addr-by-name, within connect_timeout_ms),
 * then to the address it names (phase PRIMARY), which must answer ROLE
 * with "master" - a Sentinel's view can be stale, and a demoted primary
 * still accepts connections. A Sentinel that fails or does not know the
 * name passes the turn to the next one at once; only when every Sentinel
 * of the round failed does the backoff apply. Whenever the link goes down
 * the address is forgotten, so every reconnect asks again; a -READONLY
 * reply (the node was demoted under us) drops the link to get there. A
 * watcher link (its own Sentinel connection, rotating over the list)
 * subscribes to +switch-master, so a failover also drops a link whose old
 * primary is alive but cut off, without waiting for a command timeout.
 */
#include "movexd/redis_adapter.h"
#include "movexd/alloc.h"
#include "movexd/config.h"

#include <fcntl.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 50

struct mx_redis {
    struct lws_context *ctx;
    struct lws_vhost *vh;
    char host[256];
    int port, connect_ms, command_ms, reconnect_max_ms, backoff_ms;
    mx_redis_state_fn on_state;
    mx_redis_message_fn on_message;
    mx_redis_subscribed_fn on_subscribed;
    void *priv;
    char **channels; /* subscribed again each time the link comes up */
    size_t nchannels;

    redisAsyncContext *ac;
    struct lws *wsi;
    int up, freeing;
    size_t pending;
    struct mx_redis_stats st;

    lws_sorted_usec_list_t t_connect, t_command, t_retry;

    /* Sentinel mode: nsentinels > 0; host/port above are then the primary
     * the last Sentinel named, valid while have_addr */
    struct mx_endpoint *sentinels;
    size_t nsentinels, si, tried; /* the Sentinel asked next; failed this round */
    char master_name[256];
    int have_addr, asking;        /* asking: the live context is a Sentinel */
    struct mx_redis *watch;       /* subscribed to +switch-master on a Sentinel */
    /* a watcher: connects to ring[ri] (its parent's Sentinels), the next
     * one after each drop */
    const struct mx_endpoint *ring;
    size_t nring, ri;
};

/* What a command in flight is: the caller's, or one of the link's own
 * probes while it comes up. */
enum probe { P_NONE, P_PING, P_ROLE, P_ASK };

struct pend {
    struct mx_redis *r;
    mx_redis_reply_fn fn; /* the caller's (P_NONE) */
    enum probe probe;
    void *priv;
};

static void connect_now(struct mx_redis *r);
static void send_subscribe(struct mx_redis *r, const char *channel);
static int send_probe(struct mx_redis *r, enum probe probe, int argc, const char **argv);

static void timer(struct mx_redis *r, lws_sorted_usec_list_t *t, sul_cb_t cb, int ms)
{
    lws_sul_schedule(r->ctx, 0, t, cb, ms < 0 ? LWS_SET_TIMER_USEC_CANCEL : (lws_usec_t)ms * 1000);
}

static void on_retry(lws_sorted_usec_list_t *sul)
{
    connect_now(lws_container_of(sul, struct mx_redis, t_retry));
}

/* The next connect attempt after the current backoff, which then doubles. */
static void schedule_retry(struct mx_redis *r)
{
    timer(r, &r->t_retry, on_retry, r->backoff_ms);
    r->backoff_ms = r->backoff_ms * 2 > r->reconnect_max_ms ? r->reconnect_max_ms : r->backoff_ms * 2;
}

/* The context is gone (freed by us or by hiredis): say so, plan the next try. */
static void went_down(struct mx_redis *r)
{
    r->ac = NULL;
    r->pending = 0;
    timer(r, &r->t_command, NULL, -1);
    timer(r, &r->t_connect, NULL, -1);
    int was_up = r->up, was_asking = r->asking;
    r->up = 0;
    r->asking = 0;
    r->have_addr = 0; /* Sentinel mode: ask again where the primary is */
    if (r->nring)
        r->ri = (r->ri + 1) % r->nring;
    r->st.drops++;
    if (r->freeing)
        return;
    if (was_asking && ++r->tried < r->nsentinels) {
        r->si = (r->si + 1) % r->nsentinels; /* the next Sentinel, at once */
        timer(r, &r->t_retry, on_retry, 0);
    } else {
        r->tried = 0;
        if (was_asking)
            r->si = (r->si + 1) % r->nsentinels;
        schedule_retry(r);
    }
    if (was_up && r->on_state)
        r->on_state(r, 0, r->priv);
}

/* Drop the live context from outside hiredis's callbacks. */
static void drop(struct mx_redis *r)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    r->ac = NULL; /* its onDisconnect, if any, now sees a stranger */
    redisAsyncFree(ac);
    went_down(r);
}

static void on_connect_timeout(lws_sorted_usec_list_t *sul)
{
    struct mx_redis *r = lws_container_of(sul, struct mx_redis, t_connect);
    r->st.timeouts++;
    drop(r);
}

static void on_command_timeout(lws_sorted_usec_list_t *sul)
{
    struct mx_redis *r = lws_container_of(sul, struct mx_redis, t_command);
    r->st.timeouts++;
    drop(r);
}

static void on_drop_now(lws_sorted_usec_list_t *sul)
{
    drop(lws_container_of(sul, struct mx_redis, t_connect));
}

/* Drop the link from inside a hiredis callback: on the next loop turn. */
static void drop_soon(struct mx_redis *r)
{
    timer(r, &r->t_connect, on_drop_now, 0);
}

/* A Sentinel named the primary: close the Sentinel's context and connect
 * there (outside hiredis's callback, like drop_soon). */
static void on_primary_named(lws_sorted_usec_list_t *sul)
{
    struct mx_redis *r = lws_container_of(sul, struct mx_redis, t_connect);
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->pending = 0;
    r->asking = 0;
    timer(r, &r->t_command, NULL, -1);
    if (ac)
        redisAsyncFree(ac);
    connect_now(r);
}

/* The link is up: the probe (PING, or ROLE in Sentinel mode) was answered. */
static void came_up(struct mx_redis *r)
{
    timer(r, &r->t_connect, NULL, -1);
    r->up = 1;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->tried = 0;
    r->st.connects++;
    for (size_t i = 0; i < r->nchannels; i++)
        send_subscribe(r, r->channels[i]);
    if (r->on_state)
        r->on_state(r, 1, r->priv);
}

/* A probe's answer, on the live context. Anything but the expected answer
 * ends this attempt (at once; the connect timeout would do it later). */
static void probe_answered(struct mx_redis *r, enum probe probe, redisReply *rep)
{
    if (probe == P_PING) {
        if (rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0)
            came_up(r);
        /* any other answer: the connect timeout drops the link */
        return;
    }
    if (probe == P_ROLE) {
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
            rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "master") == 0) {
            came_up(r);
        } else {
            r->st.wrong_role++; /* a stale answer of a Sentinel: ask again */
            drop_soon(r);
        }
        return;
    }
    /* P_ASK: [host, port], or nil when this Sentinel does not know the name */
    uint64_t port = 0;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING && rep->element[1]->type == REDIS_REPLY_STRING &&
        rep->element[0]->len > 0 && rep->element[0]->len < sizeof r->host) {
        char *end;
        port = strtoull(rep->element[1]->str, &end, 10);
        if (*end || port == 0 || port > 65535)
            port = 0;
    }
    if (!port) {
        drop_soon(r); /* went_down passes the turn to the next Sentinel */
        return;
    }
    memcpy(r->host, rep->element[0]->str, rep->element[0]->len + 1);
    r->port = (int)port;
    r->have_addr = 1;
    r->st.resolves++;
    timer(r, &r->t_connect, on_primary_named, 0);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pend *p = privdata;
    struct mx_redis *r = p->r;
    if (reply && ac == r->ac) {
        if (r->pending)
            r->pending--;
        timer(r, &r->t_command, on_command_timeout, r->pending ? r->command_ms : -1);
    }
    if (p->probe == P_NONE) {
        redisReply *rep = reply;
        /* Sentinel mode: a demoted primary refuses writes; find the new one */
        if (rep && ac == r->ac && r->nsentinels && rep->type == REDIS_REPLY_ERROR &&
            strncmp(rep->str, "READONLY", 8) == 0) {
            r->st.readonly++;
            drop_soon(r);
        }
        p->fn(r, reply, p->priv);
    } else if (reply && ac == r->ac) {
        probe_answered(r, p->probe, reply);
    }
    free(p);
}

static int send_argv(struct mx_redis *r, int argc, const char **argv, const size_t *lens,
                     mx_redis_reply_fn fn, enum probe probe, void *priv)
{
    struct pend *p = mx_malloc(sizeof *p);
    if (!p)
        return -1;
    p->r = r;
    p->fn = fn;
    p->probe = probe;
    p->priv = priv;
    if (redisAsyncCommandArgv(r->ac, on_reply, p, argc, argv, lens) != REDIS_OK) {
        free(p);
        return -1;
    }
    if (r->pending++ == 0)
        timer(r, &r->t_command, on_command_timeout, r->command_ms);
    return 0;
}

/* A subscriber link's callback: hiredis keeps it for the channel and calls
 * it for the confirmation, for each message, and with NULL when freed. */
static void on_sub(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct mx_redis *r = privdata;
    redisReply *rep = reply;
    if (!rep || ac != r->ac || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(rep->element[0]->str, "subscribe") == 0) {
        r->st.subscribed++;
        if (r->on_subscribed && rep->element[1]->type == REDIS_REPLY_STRING)
            r->on_subscribed(r, rep->element[1]->str, rep->element[1]->len, r->priv);
    } else if (strcmp(rep->element[0]->str, "message") == 0 &&
               rep->element[1]->type == REDIS_REPLY_STRING &&
               rep->element[2]->type == REDIS_REPLY_STRING) {
        r->st.messages++;
        if (r->on_message)
            r->on_message(r, rep->element[1]->str, rep->element[1]->len, rep->element[2]->str,
                          rep->element[2]->len, r->priv);
    }
}

static void send_subscribe(struct mx_redis *r, const char *channel)
{
    const char *argv[2] = { "SUBSCRIBE", channel };
    size_t lens[2] = { 9, strlen(channel) };
    if (redisAsyncCommandArgv(r->ac, on_sub, r, 2, argv, lens) != REDIS_OK)
        timer(r, &r->t_connect, on_connect_timeout, 0); /* drop and retry, outside hiredis */
}

int mx_redis_subscribe(struct mx_redis *r, const char *channel)
{
    char **nc = mx_realloc(r->channels, (r->nchannels + 1) * sizeof *nc);
    if (!nc)
        return -1;
    r->channels = nc;
    if (!(nc[r->nchannels] = mx_strdup(channel)))
        return -1;
    r->nchannels++;
    if (r->up && r->ac)
        send_subscribe(r, channel);
    return 0;
}

void mx_redis_on_subscribed(struct mx_redis *r, mx_redis_subscribed_fn fn) { r->on_subscribed = fn; }

void mx_redis_unsubscribe(struct mx_redis *r, const char *channel)
{
    for (size_t i = 0; i < r->nchannels; i++) {
        if (strcmp(r->channels[i], channel) != 0)
            continue;
        free(r->channels[i]);
        r->channels[i] = r->channels[--r->nchannels];
        /* no callback of its own: hiredis hands the confirmation to the
         * channel's subscribe callback (on_sub ignores it) and forgets it */
        const char *argv[2] = { "UNSUBSCRIBE", channel };
        size_t lens[2] = { 11, strlen(channel) };
        if (r->up && r->ac && redisAsyncCommandArgv(r->ac, NULL, NULL, 2, argv, lens) != REDIS_OK)
            timer(r, &r->t_connect, on_connect_timeout, 0); /* drop and retry, outside hiredis */
        return;
    }
}

/* hiredis -> lws: it wants to write (or to learn that connect finished). */
static void ev_add_write(void *data)
{
    struct mx_redis *r = data;
    if (r->wsi)
        lws_callback_on_writable(r->wsi);
}

static void ev_noop(void *data) { (void)data; }

/* hiredis frees the context: let go of our wsi (and with it our dup). */
static void ev_cleanup(void *data)
{
    struct mx_redis *r = data;
    if (r->wsi) {
        lws_set_opaque_user_data(r->wsi, NULL);
        lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        r->wsi = NULL;
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct mx_redis *r = ac->data;
    if (r && ac == r->ac)
        went_down(r);
}

static void on_connected(const redisAsyncContext *ac, int status)
{
    struct mx_redis *r = ac->data;
    if (status != REDIS_OK && r && ac == r->ac)
        went_down(r); /* hiredis frees this context after we return */
}

static int send_probe(struct mx_redis *r, enum probe probe, int argc, const char **argv)
{
    size_t lens[4];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return send_argv(r, argc, argv, lens, NULL, probe, NULL);
}

static void connect_now(struct mx_redis *r)
{
    int ask = r->nsentinels && !r->have_addr;
    const struct mx_endpoint *s = ask ? &r->sentinels[r->si] : r->nring ? &r->ring[r->ri] : NULL;
    redisAsyncContext *ac = redisAsyncConnect(s ? s->host : r->host, s ? s->port : r->port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        r->st.drops++;
        schedule_retry(r);
        return;
    }
    int fd = fcntl(ac->c.fd, F_DUPFD_CLOEXEC, 0);
    lws_sock_file_fd_type d;
    memset(&d, 0, sizeof d);
    d.filefd = fd;
    struct lws *wsi = fd < 0 ? NULL
                             : lws_adopt_descriptor_vhost(r->vh, LWS_ADOPT_RAW_FILE_DESC, d,
                                                          mx_redis_protocol.name, NULL);
    if (!wsi) {
        if (fd >= 0)
            close(fd);
        redisAsyncFree(ac);
        r->st.drops++;
        schedule_retry(r);
        return;
    }
    lws_set_opaque_user_data(wsi, r);
    r->wsi = wsi;
    r->ac = ac;
    ac->data = r;
    ac->ev.data = r;
    ac->ev.addRead = ev_noop; /* lws watches POLLIN all the time */
    ac->ev.delRead = ev_noop;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_noop; /* lws's writable requests are one-shot */
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connected); /* asks for the first POLLOUT */
    timer(r, &r->t_connect, on_connect_timeout, r->connect_ms);
    r->asking = ask; /* a watcher (nring) never asks: it PINGs, then subscribes */
    static const char *const ping[] = { "PING" }, *const role[] = { "ROLE" };
    const char *askv[] = { "SENTINEL", "get-master-addr-by-name", r->master_name };
    int rc = ask              ? send_probe(r, P_ASK, 3, askv)
             : r->nsentinels ? send_probe(r, P_ROLE, 1, (const char **)role)
                             : send_probe(r, P_PING, 1, (const char **)ping);
    if (rc < 0)
        drop(r);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct mx_redis *r = lws_get_opaque_user_data(wsi);
    if (!r || r->wsi != wsi || !r->ac)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        redisAsyncHandleRead(r->ac);
        break;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        redisAsyncHandleWrite(r->ac);
        break;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        /* lws gave up the descriptor (hang-up): the link is over */
        lws_set_opaque_user_data(wsi, NULL);
        r->wsi = NULL;
        drop(r);
        break;
    default:
        break;
    }
    return 0;
}

const struct lws_protocols mx_redis_protocol = { "mx-redis", callback, 0, 0, 0, NULL, 0 };

/* The link without its first connect attempt. */
static struct mx_redis *link_new(struct lws_context *ctx, struct lws_vhost *vh,
                                 const struct mx_redis_opts *o)
{
    struct mx_redis *r = mx_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->ctx = ctx;
    r->vh = vh;
    snprintf(r->host, sizeof r->host, "%s", o->host);
    r->port = o->port;
    r->connect_ms = o->connect_timeout_ms;
    r->command_ms = o->command_timeout_ms;
    r->reconnect_max_ms = o->reconnect_max_ms < BACKOFF_MIN_MS ? BACKOFF_MIN_MS : o->reconnect_max_ms;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->on_state = o->on_state;
    r->on_message = o->on_message;
    r->priv = o->priv;
    return r;
}

struct mx_redis *mx_redis_new(struct lws_context *ctx, struct lws_vhost *vh,
                              const struct mx_redis_opts *o)
{
    struct mx_redis *r = link_new(ctx, vh, o);
    if (r)
        connect_now(r);
    return r;
}

/* +switch-master NAME OLDIP OLDPORT NEWIP NEWPORT on the watcher: a link up
 * to another server than NEWIP:NEWPORT leaves it now instead of when a
 * command times out (a partitioned or stopped old primary never closes
 * the socket); a link waiting out its backoff tries again at once. */
static void on_switch(struct mx_redis *w, const char *ch, size_t clen, const char *msg, size_t mlen,
                      void *priv)
{
    struct mx_redis *r = priv;
    char name[256], oldip[256], newip[256], text[1024];
    int oldport, newport;
    if (mlen >= sizeof text)
        return;
    memcpy(text, msg, mlen);
    text[mlen] = '\0';
    if (sscanf(text, "%255s %255s %d %255s %d", name, oldip, &oldport, newip, &newport) != 5 ||
        strcmp(name, r->master_name) != 0)
        return;
    r->st.switches++;
    if (r->up && (strcmp(newip, r->host) != 0 || newport != r->port))
        drop_soon(r);
    else if (!r->ac && !r->freeing)
        timer(r, &r->t_retry, on_retry, 0);
}

struct mx_redis *mx_redis_new_sentinel(struct lws_context *ctx, struct lws_vhost *vh,
                                       const struct mx_redis_opts *o,
                                       const struct mx_endpoint *sentinels, size_t n,
                                       const char *master_name)
{
    if (n == 0 || strlen(master_name) >= sizeof ((struct mx_redis *)0)->master_name)
        return NULL;
    struct mx_redis *r = link_new(ctx, vh, o);
    if (!r)
        return NULL;
    if (!(r->sentinels = mx_calloc(n, sizeof *r->sentinels))) {
        free(r);
        return NULL;
    }
    memcpy(r->sentinels, sentinels, n * sizeof *sentinels);
    r->nsentinels = n;
    snprintf(r->master_name, sizeof r->master_name, "%s", master_name);
    struct mx_redis_opts wo = *o;
    wo.on_state = NULL;
    wo.on_message = on_switch;
    wo.priv = r;
    if (!(r->watch = link_new(ctx, vh, &wo)) || mx_redis_subscribe(r->watch, "+switch-master")) {
        mx_redis_free(r->watch);
        r->watch = NULL;
        free(r->sentinels);
        free(r);
        return NULL;
    }
    r->watch->ring = r->sentinels;
    r->watch->nring = n;
    connect_now(r->watch);
    connect_now(r);
    return r;
}

struct mx_redis *mx_redis_new_cluster(struct lws_context *ctx, struct lws_vhost *vh,
                                      const struct mx_redis_opts *o,
                                      const struct mx_cluster_config *cl)
{
    if (cl->nsentinels)
        return mx_redis_new_sentinel(ctx, vh, o, cl->sentinels, cl->nsentinels, cl->master_name);
    struct mx_redis_opts d = *o;
    d.host = cl->redis.host;
    d.port = cl->redis.port;
    return mx_redis_new(ctx, vh, &d);
}

int mx_redis_peer(const struct mx_redis *r, char *host, size_t hostlen)
{
    if (!r->up)
        return 0;
    snprintf(host, hostlen, "%s", r->host);
    return r->port;
}

int mx_redis_command(struct mx_redis *r, int argc, const char **argv, const size_t *lens,
                     mx_redis_reply_fn fn, void *priv)
{
    if (!r->up || !r->ac || send_argv(r, argc, argv, lens, fn, P_NONE, priv) < 0) {
        fn(r, NULL, priv);
        return -1;
    }
    return 0;
}

int mx_redis_is_up(const struct mx_redis *r) { return r->up; }

void mx_redis_stats(const struct mx_redis *r, struct mx_redis_stats *out) { *out = r->st; }

void mx_redis_free(struct mx_redis *r)
{
    if (!r)
        return;
    mx_redis_free(r->watch); /* its ring is our sentinels: first */
    r->freeing = 1;
    timer(r, &r->t_retry, NULL, -1);
    drop(r);
    timer(r, &r->t_connect, NULL, -1);
    timer(r, &r->t_command, NULL, -1);
    for (size_t i = 0; i < r->nchannels; i++)
        free(r->channels[i]);
    free(r->channels);
    free(r->sentinels);
    free(r);
}
