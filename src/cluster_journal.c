/* cluster_journal.c - a node's in-memory journal of the append batches it
 * had acknowledged, per room (include/movexd/cluster_journal.h says what
 * it is for; cluster_journal_file.c keeps it on disk through the sink).
 *
 * What it owns: deep copies of batches (the actions' strings and deps in
 * one allocation per batch), kept on two lists - the room's, in the order
 * of their heads, and one global list in the order they were added, whose
 * front is evicted first when a bound is passed.
 *
 * Invariants:
 * - in a room's list, `after` IDs strictly increase front to back (add
 *   refuses a batch that is not beyond the last one), and every batch is
 *   of one incarnation of the room (a batch of a newer one - the room was
 *   deleted and created again - replaces the old ones: they can never be
 *   appended again);
 * - every batch is on both lists; st.batches / st.bytes are their totals;
 * - a room entry exists only while it holds at least one batch.
 */
#include "movexd/cluster_journal.h"
#include "movexd/alloc.h"
#include "movexd/err.h"
#include "movexd/map.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

struct jb {
    struct mx_journal_batch b;
    struct jroom *room;
    struct jb *rprev, *rnext; /* the room's list */
    struct jb *gprev, *gnext; /* the global list, oldest first */
};

struct jroom {
    char *name;
    size_t len;
    struct jb *first, *last;
};

struct replay;

struct mx_journal {
    size_t max_batches, max_bytes;
    mx_map *rooms;
    struct jb *oldest, *newest;
    struct mx_journal_stats st;
    struct lws_context *ctx; /* replays wait on its timers (patience_ms > 0) */
    int patience_ms;
    struct replay *waiting;  /* replays with a retry timer pending */
    struct mx_journal_sink sink;
    uint64_t tag;            /* given to batches added now */
};

int mx_cluster_id_cmp(const struct mx_cluster_head *a, const struct mx_cluster_head *b)
{
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    if (a->sub != b->sub)
        return a->sub < b->sub ? -1 : 1;
    return 0;
}

struct mx_journal *mx_journal_new(size_t max_batches, size_t max_bytes)
{
    struct mx_journal *j = mx_calloc(1, sizeof *j);
    if (!j || !(j->rooms = mx_map_new())) {
        free(j);
        return NULL;
    }
    j->max_batches = max_batches ? max_batches : 1;
    j->max_bytes = max_bytes;
    return j;
}

static void free_room(void *p)
{
    struct jroom *r = p;
    free(r->name);
    free(r);
}

/* Unlink b from both lists and free it (and its room when it empties). */
static void remove_batch(struct mx_journal *j, struct jb *b)
{
    struct jroom *r = b->room;
    *(b->rprev ? &b->rprev->rnext : &r->first) = b->rnext;
    *(b->rnext ? &b->rnext->rprev : &r->last) = b->rprev;
    *(b->gprev ? &b->gprev->gnext : &j->oldest) = b->gnext;
    *(b->gnext ? &b->gnext->gprev : &j->newest) = b->gprev;
    j->st.batches--;
    j->st.bytes -= b->b.bytes;
    free(b); /* the actions live in the same allocation */
    if (!r->first) {
        mx_map_del(j->rooms, r->name, r->len);
        free_room(r);
    }
}

static void replay_end(struct replay *p, int ok, size_t lost);
static void unwait(struct replay *p);

void mx_journal_free(struct mx_journal *j)
{
    if (!j)
        return;
    while (j->waiting) { /* replays waiting for other nodes: over */
        struct replay *p = j->waiting;
        unwait(p);
        replay_end(p, 0, 0);
    }
    while (j->oldest)
        remove_batch(j, j->oldest);
    mx_map_free(j->rooms, free_room);
    free(j);
}

/* One allocation: the node, the action array, then deps and strings. */
static struct jb *copy_batch(const struct mx_cluster_head *expected, const struct mx_cluster_head *after,
                             size_t window, uint64_t now_ms, const struct mx_cluster_action *a, size_t n)
{
    size_t text = 0, deps = 0;
    for (size_t i = 0; i < n; i++) {
        text += strlen(a[i].client) + 1 + strlen(a[i].what) + 1 + (a[i].body ? a[i].body_len : 0) + 1;
        deps += a[i].ndeps;
    }
    size_t size = sizeof(struct jb) + n * sizeof *a + deps * sizeof(uint64_t) + text;
    struct jb *b = mx_calloc(1, size);
    if (!b)
        return NULL;
    struct mx_cluster_action *acts = (struct mx_cluster_action *)(b + 1);
    uint64_t *dp = (uint64_t *)(acts + n);
    char *w = (char *)(dp + deps);
    for (size_t i = 0; i < n; i++) {
        acts[i] = a[i];
        acts[i].deps = dp;
        if (a[i].ndeps)
            memcpy(dp, a[i].deps, a[i].ndeps * sizeof *dp);
        dp += a[i].ndeps;
        size_t l = strlen(a[i].client) + 1;
        acts[i].client = memcpy(w, a[i].client, l);
        w += l;
        l = strlen(a[i].what) + 1;
        acts[i].what = memcpy(w, a[i].what, l);
        w += l;
        size_t bl = a[i].body ? a[i].body_len : 0;
        if (bl)
            memcpy(w, a[i].body, bl);
        w[bl] = '\0';
        acts[i].body = a[i].body ? w : NULL;
        w += bl + 1;
    }
    b->b.expected = *expected;
    b->b.after = *after;
    b->b.a = acts;
    b->b.n = n;
    b->b.window = window;
    b->b.now_ms = now_ms;
    b->b.bytes = size;
    return b;
}

int mx_journal_add(struct mx_journal *j, const char *room, const struct mx_cluster_head *expected,
                   const struct mx_cluster_head *after, size_t window, uint64_t now_ms,
                   const struct mx_cluster_action *a, size_t n)
{
    size_t len = strlen(room);
    struct jroom *r = mx_map_get(j->rooms, room, len);
    if (r && strcmp(r->last->b.expected.inc, expected->inc)) {
        /* another incarnation: the old room's batches are of no use */
        while (r) {
            int last = r->first == r->last;
            remove_batch(j, r->first); /* frees r with its last batch */
            j->st.superseded++;
            if (last)
                r = NULL;
        }
    }
    if (r && mx_cluster_id_cmp(after, &r->last->b.after) <= 0)
        return MX_EINTERNAL; /* a caller bug: batches come in head order */
    struct jb *b = copy_batch(expected, after, window, now_ms, a, n);
    if (!b)
        return MX_ENOMEM;
    if (!r) {
        if (!(r = mx_calloc(1, sizeof *r)) || !(r->name = mx_strdup(room)) ||
            mx_map_put(j->rooms, room, len, r) < 0) {
            if (r)
                free(r->name);
            free(r);
            free(b);
            return MX_ENOMEM;
        }
        r->len = len;
    }
    b->room = r;
    b->rprev = r->last;
    *(r->last ? &r->last->rnext : &r->first) = b;
    r->last = b;
    b->gprev = j->newest;
    *(j->newest ? &j->newest->gnext : &j->oldest) = b;
    j->newest = b;
    b->b.tag = j->tag;
    j->st.batches++;
    j->st.bytes += b->b.bytes;
    j->st.added++;
    /* the bounds: the oldest batches go first (never the one just added) */
    while (j->oldest != b && (j->st.batches > j->max_batches || j->st.bytes > j->max_bytes)) {
        remove_batch(j, j->oldest);
        j->st.evicted++;
    }
    if (j->sink.added) /* last: the sink may evict older tags, never b's */
        j->sink.added(j->sink.priv, room, &b->b);
    return 0;
}

size_t mx_journal_lost(const struct mx_journal *j, const char *room, const struct mx_cluster_head *head,
                       const struct mx_journal_batch **out, size_t max)
{
    const struct jroom *r = mx_map_get(j->rooms, room, strlen(room));
    size_t k = 0;
    for (const struct jb *b = r ? r->first : NULL; b; b = b->rnext) {
        if (mx_cluster_id_cmp(&b->b.after, head) <= 0)
            continue;
        if (k < max)
            out[k] = &b->b;
        k++;
    }
    return k;
}

void mx_journal_forget(struct mx_journal *j, const char *room, uint64_t seq, uint64_t sub)
{
    struct jroom *r = room ? mx_map_get(j->rooms, room, strlen(room)) : NULL;
    int any = r || (!room && j->oldest);
    if (!room) {
        while (j->oldest)
            remove_batch(j, j->oldest);
    }
    struct mx_cluster_head upto = { .seq = seq, .sub = sub };
    while (r && r->first && (seq == UINT64_MAX || mx_cluster_id_cmp(&r->first->b.after, &upto) <= 0)) {
        int last = r->first == r->last;
        remove_batch(j, r->first); /* frees r with its last batch */
        if (last)
            break;
    }
    if (any && j->sink.forgot) /* after: the sink sees what is left */
        j->sink.forgot(j->sink.priv, room, seq, sub);
}

/* One replay in flight: the next batch is always looked up again from the
 * journal (the first one past `head`), so evictions meanwhile are safe. */
struct replay {
    struct mx_journal *j;
    struct mx_redis *r;
    char *prefix, *room;
    struct mx_cluster_head head;
    int wait_replicas, wait_timeout_ms;
    size_t restored;
    mx_journal_replayed_fn done;
    void *priv;
    lws_usec_t deadline;              /* waiting for other nodes ends then */
    lws_sorted_usec_list_t sul;
    struct replay *wnext, **wprev;    /* on j->waiting while the timer is on */
};

static void replay_step(struct replay *p);

void mx_journal_set_patience(struct mx_journal *j, struct lws_context *ctx, int patience_ms)
{
    j->ctx = ctx;
    j->patience_ms = ctx ? patience_ms : 0;
}

static void unwait(struct replay *p)
{
    if (!p->wprev)
        return;
    lws_sul_schedule(p->j->ctx, 0, &p->sul, NULL, LWS_SET_TIMER_USEC_CANCEL);
    *p->wprev = p->wnext;
    if (p->wnext)
        p->wnext->wprev = p->wprev;
    p->wprev = NULL;
}

static void on_retry(lws_sorted_usec_list_t *sul)
{
    struct replay *p = lws_container_of(sul, struct replay, sul);
    unwait(p);
    replay_step(p);
}

static void replay_end(struct replay *p, int ok, size_t lost)
{
    p->done(ok, p->restored, lost, &p->head, p->priv);
    free(p->prefix);
    free(p->room);
    free(p);
}

static void on_replayed(int ok, const char *err, const struct mx_cluster_head *head,
                        const struct mx_cluster_outcome *out, size_t n, void *priv)
{
    struct replay *p = priv;
    if (!ok) {
        replay_end(p, 0, 0);
        return;
    }
    const struct mx_journal_batch *b = NULL;
    mx_journal_lost(p->j, p->room, &p->head, &b, 1);
    /* the same batch on the same head gives the same head after it */
    int moved = n > 0 && out[0].verdict == MX_CLUSTER_MOVED;
    if (b && !moved && mx_cluster_id_cmp(head, &b->after) >= 0) {
        p->restored++;
        p->head = *head;
        p->deadline = lws_now_usecs() + (lws_usec_t)p->j->patience_ms * 1000; /* progress */
        replay_step(p);
        return;
    }
    /* Redis is behind the head this batch was decided on: another node's
     * lost entries come first - wait for its replay, a while */
    if (b && moved && p->j->patience_ms > 0 && mx_cluster_id_cmp(head, &b->expected) < 0 &&
        lws_now_usecs() < p->deadline) {
        p->wnext = p->j->waiting;
        if (p->wnext)
            p->wnext->wprev = &p->wnext;
        p->wprev = &p->j->waiting;
        p->j->waiting = p;
        lws_sul_schedule(p->j->ctx, 0, &p->sul, on_retry, 50 * 1000);
        return;
    }
    /* Redis went another way: what is left cannot come back verbatim */
    size_t lost = mx_journal_lost(p->j, p->room, &p->head, NULL, 0);
    p->head = *head;
    mx_journal_forget(p->j, p->room, UINT64_MAX, 0);
    replay_end(p, 1, lost);
}

static void replay_step(struct replay *p)
{
    const struct mx_journal_batch *b = NULL;
    if (mx_journal_lost(p->j, p->room, &p->head, &b, 1) == 0) {
        replay_end(p, 1, 0);
        return;
    }
    if (strcmp(b->expected.inc, p->head.inc)) {
        /* Redis's room is another incarnation (deleted and created
         * again): nothing of the old one is ever replayed into it, even
         * where seq and checksum match (a new room at seq 0 with the same
         * initial state took the old batches on old main) */
        size_t lost = mx_journal_lost(p->j, p->room, &p->head, NULL, 0);
        mx_journal_forget(p->j, p->room, UINT64_MAX, 0);
        replay_end(p, 1, lost);
        return;
    }
    mx_cluster_append_wait(p->r, p->prefix, p->room, &b->expected, b->window, b->now_ms, b->a, b->n,
                           p->wait_replicas, p->wait_timeout_ms, on_replayed, p);
}

int mx_journal_replay(struct mx_journal *j, struct mx_redis *r, const char *prefix, const char *room,
                      const struct mx_cluster_head *head, int wait_replicas, int wait_timeout_ms,
                      mx_journal_replayed_fn done, void *priv)
{
    struct replay *p = mx_calloc(1, sizeof *p);
    if (!p || !(p->prefix = mx_strdup(prefix)) || !(p->room = mx_strdup(room))) {
        if (p)
            free(p->prefix);
        free(p);
        return MX_ENOMEM;
    }
    p->j = j;
    p->r = r;
    p->head = *head;
    p->wait_replicas = wait_replicas;
    p->wait_timeout_ms = wait_timeout_ms;
    p->done = done;
    p->priv = priv;
    p->deadline = lws_now_usecs() + (lws_usec_t)j->patience_ms * 1000;
    replay_step(p);
    return 0;
}

void mx_journal_stats(const struct mx_journal *j, struct mx_journal_stats *out) { *out = j->st; }

void mx_journal_set_sink(struct mx_journal *j, const struct mx_journal_sink *s)
{
    if (s)
        j->sink = *s;
    else
        memset(&j->sink, 0, sizeof j->sink);
}

void mx_journal_set_tag(struct mx_journal *j, uint64_t tag) { j->tag = tag; }

uint64_t mx_journal_oldest_tag(const struct mx_journal *j) { return j->oldest ? j->oldest->b.tag : UINT64_MAX; }

void mx_journal_evict_tag(struct mx_journal *j, uint64_t tag)
{
    /* tags grow with the global list, so the ones at or below are its front */
    while (j->oldest && j->oldest->b.tag <= tag) {
        remove_batch(j, j->oldest);
        j->st.evicted++;
    }
}

const struct mx_journal_batch *mx_journal_newest(const struct mx_journal *j, const char *room)
{
    const struct jroom *r = mx_map_get(j->rooms, room, strlen(room));
    return r ? &r->last->b : NULL;
}

int mx_journal_next_room(const struct mx_journal *j, size_t *it, const char **room,
                         const struct mx_journal_batch **newest)
{
    const char *key;
    size_t len;
    void *val;
    if (!mx_map_next(j->rooms, it, &key, &len, &val))
        return 0;
    const struct jroom *r = val;
    *room = r->name;
    *newest = &r->last->b;
    return 1;
}
