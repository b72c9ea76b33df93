/* cluster_presence.c - presence across the nodes of a cluster; see
 * cluster_presence.h and docs/CLUSTER.md ("Presence across nodes").
 *
 * What it owns: a copy of this node's local presence entries per room (to
 * answer "who is here" and to re-announce after a lost publish), the
 * remote entries other nodes announced in the rooms this node joined, the
 * table of nodes heard from (id, boot, when last heard), a subscriber link
 * of its own and a command link of its own, and two lws timers (the heartbeat tick, the per-turn flush).
 *
 * Wire (JSON, on P{R}:pr and Pnodes):
 *   {"o":NODE,"b":BOOT,"t":"d","e":[[CONN,CLIENT,STATE|null],...]}  changes
 *   {"o":NODE,"b":BOOT,"t":"f","e":[...]}  NODE's complete list in the room
 *   {"o":NODE,"b":BOOT,"t":"q"}            who is here? (answered with "f")
 *   {"o":NODE,"b":BOOT,"t":"hb"} / "bye"   on Pnodes: alive / leaving
 * BOOT is random per process, so a node restarted under the same id
 * (whose connection numbers start again at 1) is a new node: the entries
 * of its previous life are reported as left when BOOT changes.
 *
 * Invariants:
 * - a remote entry is (node, room, conn) and exists at most once; each was
 *   reported to on_remote with a state, and is reported as left exactly
 *   once, before it is freed (its address is the owner the caller keys on);
 * - remote entries are kept only for joined rooms;
 * - a room record exists while it is joined, has local entries, or has
 *   changes waiting for the flush (it is then on the dirty list);
 * - stale_until != 0: the entry predates our last resubscribe and goes
 *   unless its node confirms it (a "d" or "f" naming it) by then;
 * - node silence is judged only while our subscriber link is up (a deaf
 *   node cannot tell a dead peer from its own outage).
 * Publishes that fail set `republish`: at the next tick every room with
 * local entries is published in full, since a lost change cannot be
 * named. The command link is ours: freeing it runs the callbacks of
 * publishes in flight while cp is still whole.
 */
#include "movexd/cluster_presence.h"
#include "movexd/alloc.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/buf.h"
#include "movexd/config.h"
#include "movexd/engine.h"
#include "movexd/json.h"
#include "movexd/log.h"
#include "movexd/map.h"
#include "movexd/metrics.h"
#include "movexd/proto.h"
#include "movexd/redis_adapter.h"

#define BOOT_LEN 16

struct node {
    char id[MX_CLUSTER_NODE_ID_MAX + 1];
    char boot[BOOT_LEN + 1];
    uint64_t heard_ms;
};

struct lent { /* a local connection's entry */
    uint64_t conn;
    char *client, *state; /* state NULL: left, not published yet */
    size_t clientlen, statelen;
    int dirty;
};

struct rent { /* a remote connection's entry (its address is the owner) */
    struct node *node;
    uint64_t conn, alias;
    char *client, *state;
    size_t clientlen, statelen;
    uint64_t stale_until;
    int seen; /* scratch: named by the full list being applied */
};

struct room {
    char *name, *channel;
    size_t len;
    int joined, dirty, full;
    struct lent *loc;
    size_t nloc, caploc;
    struct rent **rem;
    size_t nrem, caprem;
};

struct mx_cpres {
    struct lws_context *ctx;
    struct mx_redis *cmd, *sub;
    char *prefix, node_id[MX_CLUSTER_NODE_ID_MAX + 1], boot[BOOT_LEN + 1], *nodes_ch;
    char twin_boot[BOOT_LEN + 1]; /* the last other process heard under our node_id (logged once) */
    int heartbeat_ms, dead_ms;
    mx_cpres_remote_fn on_remote;
    uint64_t (*new_conn)(void *priv);
    void *priv;
    mx_map *rooms;
    struct room **dirty;
    size_t ndirty, capdirty;
    struct node **nodes;
    size_t nnodes;
    int sub_up, republish, stale_pending, flush_armed;
    struct mx_cpres_stats st;
    lws_sorted_usec_list_t t_tick, t_flush;
};

static uint64_t now_ms(void) { return (uint64_t)(lws_now_usecs() / 1000); }

/* ---- publishing ---- */

static void on_published(struct mx_redis *r, redisReply *rep, void *priv)
{
    struct mx_cpres *cp = priv;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        cp->republish = 1; /* a change may be lost: the next tick sends full lists */
}

static void publish(struct mx_cpres *cp, const char *channel, const mx_buf *msg)
{
    if (msg->oom) {
        cp->republish = 1;
        return;
    }
    const char *argv[3] = { "PUBLISH", channel, mx_buf_data(msg) };
    size_t lens[3] = { 7, strlen(channel), msg->len };
    cp->st.published++;
    mx_redis_command(cp->cmd, 3, argv, lens, on_published, cp);
}

/* {"o":NODE,"b":BOOT,"t":TYPE and, unless closed, the caller goes on. */
static void msg_head(const struct mx_cpres *cp, mx_buf *b, const char *type)
{
    mx_buf_init(b, 0);
    mx_buf_printf(b, "{\"o\":\"%s\",\"b\":\"%s\",\"t\":\"%s\"", cp->node_id, cp->boot, type);
}

static void publish_simple(struct mx_cpres *cp, const char *channel, const char *type)
{
    mx_buf b;
    msg_head(cp, &b, type);
    mx_buf_putc(&b, '}');
    publish(cp, channel, &b);
    mx_buf_free(&b);
}

static void put_entry(mx_buf *b, int first, uint64_t conn, const char *client, size_t clientlen,
                      const char *state, size_t statelen)
{
    if (!first)
        mx_buf_putc(b, ',');
    mx_buf_putc(b, '[');
    mx_buf_put_u64(b, conn);
    mx_buf_putc(b, ',');
    mx_json_dump_string(client, clientlen, b);
    mx_buf_putc(b, ',');
    if (state)
        mx_buf_append(b, state, statelen);
    else
        mx_buf_puts(b, "null");
    mx_buf_putc(b, ']');
}

/* ---- rooms ---- */

typedef void (*room_fn)(struct mx_cpres *cp, struct room *rm, void *arg);

/* fn for every room record; fn may drop remote entries, not rooms. */
static void each_room(struct mx_cpres *cp, room_fn fn, void *arg)
{
    size_t it = 0;
    const char *k;
    size_t kl;
    void *v;
    while (mx_map_next(cp->rooms, &it, &k, &kl, &v))
        fn(cp, v, arg);
}

static struct room *room_get(struct mx_cpres *cp, const char *name, size_t len)
{
    return mx_map_get(cp->rooms, name, len);
}

static void room_free(struct room *rm)
{
    for (size_t i = 0; i < rm->nloc; i++) {
        free(rm->loc[i].client);
        free(rm->loc[i].state);
    }
    free(rm->loc);
    free(rm->rem); /* remote entries are gone before (reported as left) */
    free(rm->name);
    free(rm->channel);
    free(rm);
}

static struct room *room_make(struct mx_cpres *cp, const char *name, size_t len)
{
    struct room *rm = room_get(cp, name, len);
    if (rm)
        return rm;
    if (!(rm = mx_calloc(1, sizeof *rm)))
        return NULL;
    size_t chlen = strlen(cp->prefix) + len + 5; /* "{" "}:pr" */
    rm->name = mx_malloc(len + 1);
    rm->channel = mx_malloc(chlen + 1);
    if (!rm->name || !rm->channel || mx_map_put(cp->rooms, name, len, rm)) {
        room_free(rm);
        return NULL;
    }
    memcpy(rm->name, name, len);
    rm->name[len] = '\0';
    rm->len = len;
    snprintf(rm->channel, chlen + 1, "%s{%.*s}:pr", cp->prefix, (int)len, name);
    return rm;
}

/* Free the record once nothing keeps it (see the invariants). */
static void room_release(struct mx_cpres *cp, struct room *rm)
{
    if (rm->joined || rm->nloc || rm->nrem || rm->dirty)
        return;
    mx_map_del(cp->rooms, rm->name, rm->len);
    room_free(rm);
}

static void on_flush(lws_sorted_usec_list_t *sul);

/* Put rm on the dirty list; the flush runs on the next loop turn. */
static int mark_dirty(struct mx_cpres *cp, struct room *rm)
{
    if (!rm->dirty) {
        if (cp->ndirty == cp->capdirty) {
            size_t ncap = cp->capdirty ? cp->capdirty * 2 : 16;
            struct room **n = mx_realloc(cp->dirty, ncap * sizeof *n);
            if (!n)
                return -1;
            cp->dirty = n;
            cp->capdirty = ncap;
        }
        cp->dirty[cp->ndirty++] = rm;
        rm->dirty = 1;
    }
    if (!cp->flush_armed) {
        cp->flush_armed = 1;
        lws_sul_schedule(cp->ctx, 0, &cp->t_flush, on_flush, 1);
    }
    return 0;
}

static int has_local_state(const struct room *rm)
{
    for (size_t i = 0; i < rm->nloc; i++)
        if (rm->loc[i].state)
            return 1;
    return 0;
}

/* One message for rm: its full list, or its changes. Left entries go. */
static void flush_room(struct mx_cpres *cp, struct room *rm)
{
    mx_buf b;
    msg_head(cp, &b, rm->full ? "f" : "d");
    mx_buf_puts(&b, ",\"e\":[");
    int first = 1, any = rm->full;
    for (size_t i = 0; i < rm->nloc; i++) {
        struct lent *l = &rm->loc[i];
        if (rm->full ? l->state != NULL : l->dirty) {
            put_entry(&b, first, l->conn, l->client, l->clientlen, l->state, l->statelen);
            first = 0;
            any = 1;
        }
        l->dirty = 0;
    }
    mx_buf_puts(&b, "]}");
    if (any)
        publish(cp, rm->channel, &b);
    mx_buf_free(&b);
    size_t keep = 0;
    for (size_t i = 0; i < rm->nloc; i++) {
        if (rm->loc[i].state) {
            rm->loc[keep++] = rm->loc[i];
        } else {
            free(rm->loc[i].client);
        }
    }
    rm->nloc = keep;
    rm->full = 0;
    rm->dirty = 0;
}

static void flush(struct mx_cpres *cp)
{
    cp->flush_armed = 0;
    lws_sul_schedule(cp->ctx, 0, &cp->t_flush, NULL, LWS_SET_TIMER_USEC_CANCEL);
    size_t n = cp->ndirty;
    cp->ndirty = 0;
    for (size_t i = 0; i < n; i++)
        flush_room(cp, cp->dirty[i]);
    for (size_t i = 0; i < n; i++)
        room_release(cp, cp->dirty[i]);
}

static void on_flush(lws_sorted_usec_list_t *sul)
{
    flush(lws_container_of(sul, struct mx_cpres, t_flush));
}

/* Every room with local entries goes out in full (after a lost publish,
 * a missed query, or when asked). */
static void want_full(struct mx_cpres *cp, struct room *rm, void *unused)
{
    if (has_local_state(rm) && mark_dirty(cp, rm) == 0)
        rm->full = 1;
}

/* ---- remote entries ---- */

static void rent_gone(struct mx_cpres *cp, struct room *rm, size_t i)
{
    struct rent *e = rm->rem[i];
    rm->rem[i] = rm->rem[--rm->nrem];
    cp->st.remote--;
    cp->on_remote(cp->priv, rm->name, rm->len, e, e->alias, e->client, e->clientlen, NULL, 0);
    free(e->client);
    free(e->state);
    free(e);
}

static struct rent *rent_find(const struct room *rm, const struct node *nd, uint64_t conn, size_t *at)
{
    for (size_t i = 0; i < rm->nrem; i++)
        if (rm->rem[i]->node == nd && rm->rem[i]->conn == conn) {
            *at = i;
            return rm->rem[i];
        }
    return NULL;
}

static char *dup_bytes(const char *s, size_t len)
{
    char *d = mx_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* node says conn in rm has state (NULL: left). Out of memory: the entry is
 * dropped (reported as left), never half updated. */
static void rent_set(struct mx_cpres *cp, struct room *rm, struct node *nd, uint64_t conn,
                     const char *client, size_t clientlen, const char *state, size_t statelen)
{
    size_t at;
    struct rent *e = rent_find(rm, nd, conn, &at);
    if (!state) {
        if (e)
            rent_gone(cp, rm, at);
        return;
    }
    if (e) {
        e->stale_until = 0;
        e->seen = 1;
        if (e->statelen == statelen && memcmp(e->state, state, statelen) == 0)
            return; /* a full list repeating what we know: nothing to announce */
        char *s = dup_bytes(state, statelen);
        if (!s) {
            rent_gone(cp, rm, at);
            return;
        }
        free(e->state);
        e->state = s;
        e->statelen = statelen;
    } else {
        if (rm->nrem == rm->caprem) {
            size_t ncap = rm->caprem ? rm->caprem * 2 : 4;
            struct rent **n = mx_realloc(rm->rem, ncap * sizeof *n);
            if (!n)
                return;
            rm->rem = n;
            rm->caprem = ncap;
        }
        if (!(e = mx_calloc(1, sizeof *e)) || !(e->client = dup_bytes(client, clientlen)) ||
            !(e->state = dup_bytes(state, statelen))) {
            if (e)
                free(e->client);
            free(e);
            return;
        }
        e->node = nd;
        e->conn = conn;
        e->alias = cp->new_conn(cp->priv);
        e->clientlen = clientlen;
        e->statelen = statelen;
        e->seen = 1;
        rm->rem[rm->nrem++] = e;
        cp->st.remote++;
    }
    cp->on_remote(cp->priv, rm->name, rm->len, e, e->alias, e->client, e->clientlen, e->state,
                  e->statelen);
}

static void drop_node_entries(struct mx_cpres *cp, struct room *rm, void *nd)
{
    for (size_t i = rm->nrem; i-- > 0;)
        if (rm->rem[i]->node == nd)
            rent_gone(cp, rm, i);
}

static void node_gone(struct mx_cpres *cp, struct node *nd)
{
    each_room(cp, drop_node_entries, nd);
    for (size_t i = 0; i < cp->nnodes; i++)
        if (cp->nodes[i] == nd) {
            cp->nodes[i] = cp->nodes[--cp->nnodes];
            break;
        }
    free(nd);
    cp->st.nodes_gone++;
}

/* The node a message comes from (made on first sight; a new boot of a known
 * id ends the old one first). NULL: out of memory. */
static struct node *node_of(struct mx_cpres *cp, const char *id, const char *boot)
{
    for (size_t i = 0; i < cp->nnodes; i++) {
        struct node *nd = cp->nodes[i];
        if (strcmp(nd->id, id) != 0)
            continue;
        if (strcmp(nd->boot, boot) == 0)
            return nd;
        node_gone(cp, nd); /* restarted: its old connections are gone */
        break;
    }
    struct node **nn = mx_realloc(cp->nodes, (cp->nnodes + 1) * sizeof *nn);
    if (!nn)
        return NULL;
    cp->nodes = nn;
    struct node *nd = mx_calloc(1, sizeof *nd);
    if (!nd)
        return NULL;
    snprintf(nd->id, sizeof nd->id, "%s", id);
    snprintf(nd->boot, sizeof nd->boot, "%s", boot);
    cp->nodes[cp->nnodes++] = nd;
    return nd;
}

/* Apply "d" or "f" entries of nd to rm. 0, or -1 when an entry is malformed
 * (the ones before it are applied: each stands alone). */
static int apply_entries(struct mx_cpres *cp, struct room *rm, struct node *nd, json_t *e, int full)
{
    if (!json_is_array(e))
        return -1;
    if (full)
        for (size_t i = 0; i < rm->nrem; i++)
            rm->rem[i]->seen = 0;
    int rc = 0;
    size_t i;
    json_t *x;
    json_array_foreach(e, i, x)
    {
        json_t *jc = json_array_get(x, 0), *jcl = json_array_get(x, 1), *js = json_array_get(x, 2);
        if (json_array_size(x) != 3 || !json_is_integer(jc) || json_integer_value(jc) < 0 ||
            !json_is_string(jcl) || json_string_length(jcl) == 0 ||
            json_string_length(jcl) > MX_CLIENT_ID_MAX) {
            rc = -1;
            break;
        }
        mx_buf s;
        mx_buf_init(&s, 0);
        if (!json_is_null(js) && (mx_json_dump_jansson(js, &s) || s.oom)) {
            mx_buf_free(&s);
            rc = -1;
            break;
        }
        rent_set(cp, rm, nd, (uint64_t)json_integer_value(jc), json_string_value(jcl),
                 json_string_length(jcl), json_is_null(js) ? NULL : mx_buf_data(&s), s.len);
        mx_buf_free(&s);
    }
    if (full && rc == 0)
        for (size_t j = rm->nrem; j-- > 0;)
            if (rm->rem[j]->node == nd && !rm->rem[j]->seen)
                rent_gone(cp, rm, j); /* not on its complete list: gone */
    return rc;
}

static int valid_id(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* The room a channel P{R}:pr names, if we keep a record of it. */
static struct room *room_of_channel(struct mx_cpres *cp, const char *ch, size_t clen)
{
    size_t pl = strlen(cp->prefix);
    if (clen < pl + 5 || memcmp(ch, cp->prefix, pl) != 0 || ch[pl] != '{' ||
        memcmp(ch + clen - 4, "}:pr", 4) != 0)
        return NULL;
    return room_get(cp, ch + pl + 1, clen - pl - 5);
}

static void on_message(struct mx_redis *r, const char *ch, size_t clen, const char *msg,
                       size_t mlen, void *priv)
{
    struct mx_cpres *cp = priv;
    int nodes = clen == strlen(cp->nodes_ch) && memcmp(ch, cp->nodes_ch, clen) == 0;
    struct room *rm = nodes ? NULL : room_of_channel(cp, ch, clen);
    if (!nodes && (!rm || !rm->joined))
        return; /* a room we left: a message already on its way */
    json_t *j = json_loadb(msg, mlen, 0, NULL);
    json_t *o = json_object_get(j, "o"), *b = json_object_get(j, "b"), *t = json_object_get(j, "t");
    const char *type = json_string_value(t);
    if (!json_is_object(j) || !json_is_string(o) || !json_is_string(b) || !type ||
        !valid_id(json_string_value(o), json_string_length(o), MX_CLUSTER_NODE_ID_MAX) ||
        json_string_length(b) != BOOT_LEN ||
        !valid_id(json_string_value(b), BOOT_LEN, BOOT_LEN)) {
        cp->st.bad++;
        json_decref(j);
        return;
    }
    if (strcmp(json_string_value(o), cp->node_id) == 0) {
        /* our own, or a misconfigured twin's (ignored: its connections
         * stay invisible here) - which an operator must hear about */
        if (strcmp(json_string_value(b), cp->boot) && strcmp(json_string_value(b), cp->twin_boot)) {
            snprintf(cp->twin_boot, sizeof cp->twin_boot, "%s", json_string_value(b));
            mx_err("event=cluster_duplicate_node_id node=%s other_boot=%s note=\"another running node "
                   "has this node_id: presence between the two is lost; give each node its own\"",
                   cp->node_id, cp->twin_boot);
        }
        json_decref(j);
        return;
    }
    struct node *nd = node_of(cp, json_string_value(o), json_string_value(b));
    if (!nd) {
        json_decref(j);
        return;
    }
    nd->heard_ms = now_ms();
    cp->st.received++;
    int bad = 0;
    if (nodes) {
        if (strcmp(type, "bye") == 0)
            node_gone(cp, nd);
        else
            bad = strcmp(type, "hb") != 0;
    } else if (strcmp(type, "q") == 0) {
        want_full(cp, rm, NULL);
    } else if (strcmp(type, "d") == 0 || strcmp(type, "f") == 0) {
        bad = apply_entries(cp, rm, nd, json_object_get(j, "e"), type[0] == 'f') != 0;
    } else {
        bad = 1;
    }
    if (bad)
        cp->st.bad++;
    json_decref(j);
}

/* Redis confirmed a room channel: from now on we hear it, so ask. */
static void on_subscribed(struct mx_redis *r, const char *ch, size_t clen, void *priv)
{
    struct mx_cpres *cp = priv;
    struct room *rm = room_of_channel(cp, ch, clen);
    if (rm && rm->joined)
        publish_simple(cp, rm->channel, "q");
}

static void mark_unconfirmed(struct mx_cpres *cp, struct room *rm, void *now)
{
    for (size_t i = 0; i < rm->nrem; i++)
        rm->rem[i]->stale_until = *(uint64_t *)now + (uint64_t)cp->dead_ms;
    cp->stale_pending |= rm->nrem > 0;
}

static void on_sub_state(struct mx_redis *r, int up, void *priv)
{
    struct mx_cpres *cp = priv;
    cp->sub_up = up;
    if (!up)
        return;
    /* we may have missed anything: what the others do not confirm within
     * dead_ms goes; we may have missed queries: ours go out in full */
    uint64_t now = now_ms();
    for (size_t i = 0; i < cp->nnodes; i++)
        cp->nodes[i]->heard_ms = now;
    each_room(cp, mark_unconfirmed, &now);
    each_room(cp, want_full, NULL);
}

/* ---- the heartbeat tick ---- */

/* Unconfirmed entries past their time go; stale_pending stays set while
 * others wait. */
static void sweep_stale(struct mx_cpres *cp, struct room *rm, void *now)
{
    for (size_t i = rm->nrem; i-- > 0;) {
        uint64_t until = rm->rem[i]->stale_until;
        if (until && *(uint64_t *)now >= until)
            rent_gone(cp, rm, i);
        else if (until)
            cp->stale_pending = 1;
    }
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
    struct mx_cpres *cp = lws_container_of(sul, struct mx_cpres, t_tick);
    uint64_t now = now_ms();
    publish_simple(cp, cp->nodes_ch, "hb");
    if (cp->republish && mx_redis_is_up(cp->cmd)) {
        cp->republish = 0;
        each_room(cp, want_full, NULL);
    }
    if (cp->sub_up) {
        for (size_t i = cp->nnodes; i-- > 0;)
            if (now - cp->nodes[i]->heard_ms > (uint64_t)cp->dead_ms)
                node_gone(cp, cp->nodes[i]);
        if (cp->stale_pending) {
            cp->stale_pending = 0;
            each_room(cp, sweep_stale, &now);
        }
    }
    lws_sul_schedule(cp->ctx, 0, &cp->t_tick, on_tick, (lws_usec_t)cp->heartbeat_ms * 1000);
}

/* ---- the interface ---- */

struct mx_cpres *mx_cpres_new(struct lws_context *ctx, struct lws_vhost *vh,
                              const struct mx_cluster_config *cc, const struct mx_cpres_opts *o)
{
    struct mx_cpres *cp = mx_calloc(1, sizeof *cp);
    if (!cp)
        return NULL;
    cp->ctx = ctx;
    cp->heartbeat_ms = o->heartbeat_ms > 0 ? o->heartbeat_ms : 1000;
    cp->dead_ms = o->dead_ms > 0 ? o->dead_ms : 3000;
    cp->on_remote = o->on_remote;
    cp->new_conn = o->new_conn;
    cp->priv = o->priv;
    snprintf(cp->node_id, sizeof cp->node_id, "%s", cc->node_id);
    unsigned char rnd[BOOT_LEN / 2];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(cp->boot, sizeof cp->boot, rnd, sizeof rnd);
    size_t nl = strlen(cc->key_prefix) + 6;
    cp->prefix = mx_strdup(cc->key_prefix);
    cp->nodes_ch = mx_malloc(nl);
    cp->rooms = mx_map_new();
    if (!cp->prefix || !cp->nodes_ch || !cp->rooms)
        goto fail;
    snprintf(cp->nodes_ch, nl, "%snodes", cc->key_prefix);
    struct mx_redis_opts lo = {.connect_timeout_ms = cc->connect_timeout_ms,
                               .command_timeout_ms = cc->command_timeout_ms,
                               .reconnect_max_ms = cc->reconnect_max_ms};
    if (!(cp->cmd = mx_redis_new_cluster(ctx, vh, &lo, cc)))
        goto fail;
    lo.on_state = on_sub_state;
    lo.on_message = on_message;
    lo.priv = cp;
    if (!(cp->sub = mx_redis_new_cluster(ctx, vh, &lo, cc)))
        goto fail;
    mx_redis_on_subscribed(cp->sub, on_subscribed);
    if (mx_redis_subscribe(cp->sub, cp->nodes_ch))
        goto fail;
    lws_sul_schedule(ctx, 0, &cp->t_tick, on_tick, (lws_usec_t)cp->heartbeat_ms * 1000);
    return cp;
fail:
    mx_cpres_free(cp);
    return NULL;
}

void mx_cpres_stop(struct mx_cpres *cp)
{
    lws_sul_schedule(cp->ctx, 0, &cp->t_tick, NULL, LWS_SET_TIMER_USEC_CANCEL);
    publish_simple(cp, cp->nodes_ch, "bye");
}

int mx_cpres_up(const struct mx_cpres *cp) { return mx_redis_is_up(cp->cmd) && cp->sub_up; }

int mx_cpres_join(struct mx_cpres *cp, const char *room, size_t roomlen)
{
    struct room *rm = room_make(cp, room, roomlen);
    if (!rm)
        return -1;
    if (rm->joined)
        return 0;
    if (mx_redis_subscribe(cp->sub, rm->channel)) {
        room_release(cp, rm);
        return -1;
    }
    rm->joined = 1;
    return 0;
}

void mx_cpres_leave(struct mx_cpres *cp, const char *room, size_t roomlen)
{
    struct room *rm = room_get(cp, room, roomlen);
    if (!rm || !rm->joined)
        return;
    mx_redis_unsubscribe(cp->sub, rm->channel);
    rm->joined = 0;
    while (rm->nrem)
        rent_gone(cp, rm, rm->nrem - 1);
    room_release(cp, rm);
}

int mx_cpres_local(struct mx_cpres *cp, const char *room, size_t roomlen, uint64_t conn,
                   const char *client, size_t clientlen, const char *state, size_t statelen)
{
    struct room *rm = state ? room_make(cp, room, roomlen) : room_get(cp, room, roomlen);
    if (!rm)
        return state ? -1 : 0;
    struct lent *l = NULL;
    for (size_t i = 0; i < rm->nloc && !l; i++)
        if (rm->loc[i].conn == conn)
            l = &rm->loc[i];
    if (!l && !state)
        return 0;
    char *s = state ? dup_bytes(state, statelen) : NULL;
    if (state && !s)
        goto oom;
    if (!l) {
        if (rm->nloc == rm->caploc) {
            size_t ncap = rm->caploc ? rm->caploc * 2 : 4;
            struct lent *n = mx_realloc(rm->loc, ncap * sizeof *n);
            if (!n)
                goto oom;
            rm->loc = n;
            rm->caploc = ncap;
        }
        char *c = dup_bytes(client, clientlen);
        if (!c)
            goto oom;
        l = &rm->loc[rm->nloc++];
        memset(l, 0, sizeof *l);
        l->conn = conn;
        l->client = c;
        l->clientlen = clientlen;
    }
    free(l->state);
    l->state = s;
    l->statelen = s ? statelen : 0;
    l->dirty = 1;
    if (mark_dirty(cp, rm)) {
        cp->republish = 1; /* it goes out with the next full list */
        return -1;
    }
    return 0;
oom:
    free(s);
    room_release(cp, rm);
    return -1;
}

static void hook_local(void *priv, const char *room, size_t roomlen, uint64_t conn,
                       const char *client, size_t clientlen, const char *state, size_t statelen)
{
    mx_cpres_local(priv, room, roomlen, conn, client, clientlen, state, statelen);
}

static void hook_held(void *priv, const char *room, size_t roomlen, int held)
{
    if (held)
        mx_cpres_join(priv, room, roomlen); /* out of memory: this node sees only its own */
    else
        mx_cpres_leave(priv, room, roomlen);
}

static void hook_metrics(void *priv, mx_buf *b)
{
    const struct mx_cpres *cp = priv;
    mx_metrics_gauge(b, "movexd_cluster_presence_up", "1 while both presence links to Redis are up",
                     mx_cpres_up(cp));
    mx_metrics_gauge(b, "movexd_cluster_presence_remote", "presence entries of other nodes' connections held",
                     (double)cp->st.remote);
    mx_metrics_counter(b, "movexd_cluster_presence_published_total",
                       "presence messages published (changes, full lists, queries)", cp->st.published);
    mx_metrics_counter(b, "movexd_cluster_presence_received_total", "presence messages of other nodes taken",
                       cp->st.received);
    mx_metrics_counter(b, "movexd_cluster_presence_bad_total", "presence messages that did not parse (ignored)",
                       cp->st.bad);
    mx_metrics_counter(b, "movexd_cluster_presence_nodes_gone_total",
                       "nodes given up (silent past the bound, said bye, or restarted): their entries left",
                       cp->st.nodes_gone);
}

void mx_cpres_engine_hook(struct mx_cpres *cp, struct mx_engine_presence_hook *out)
{
    out->local = hook_local;
    out->held = hook_held;
    out->priv = cp;
    out->metrics = hook_metrics;
}

void mx_cpres_stats(const struct mx_cpres *cp, struct mx_cpres_stats *out) { *out = cp->st; }

/* Free a room with its remote entries, reporting nothing (mx_cpres_free). */
static void forget_room(struct mx_cpres *cp, struct room *rm, void *unused)
{
    for (size_t i = 0; i < rm->nrem; i++) {
        free(rm->rem[i]->client);
        free(rm->rem[i]->state);
        free(rm->rem[i]);
    }
    room_free(rm);
}

void mx_cpres_free(struct mx_cpres *cp)
{
    if (!cp)
        return;
    if (cp->ctx) {
        lws_sul_schedule(cp->ctx, 0, &cp->t_tick, NULL, LWS_SET_TIMER_USEC_CANCEL);
        lws_sul_schedule(cp->ctx, 0, &cp->t_flush, NULL, LWS_SET_TIMER_USEC_CANCEL);
    }
    mx_redis_free(cp->sub);
    mx_redis_free(cp->cmd); /* runs the callbacks of what is in flight (cp still valid) */
    if (cp->rooms) {
        each_room(cp, forget_room, NULL);
        mx_map_free(cp->rooms, NULL);
    }
    for (size_t i = 0; i < cp->nnodes; i++)
        free(cp->nodes[i]);
    free(cp->nodes);
    free(cp->dirty);
    free(cp->prefix);
    free(cp->nodes_ch);
    free(cp);
}
