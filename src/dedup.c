/* dedup.c - per-room exactly-once memory; see dedup.h.
 *
 * One record per client id (in an mx_map): the highest decided n and a ring
 * of the newest outcomes, oldest first, strictly increasing in n.
 *
 * Invariants per record:
 *   - count >= 1 (a record exists only once something was decided) and
 *     ring[(head + count - 1) % alloc].n == highest.
 *   - count <= alloc <= window. The ring starts at one slot and doubles up to
 *     the window: most clients decide a handful of actions in a room, and
 *     a window of 1024 per client would otherwise dominate a room's memory.
 *   - dropped is set once an outcome has been overwritten. Only then can an
 *     n below the oldest remembered one have been decided and forgotten
 *     (too_old, find returns -1); before that such an n was simply never
 *     decided (find returns 0), because every decision was recorded.
 * Outcome messages are owned copies, freed when their slot is overwritten.
 */
#include "movexd/dedup.h"
#include "movexd/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "movexd/map.h"

struct record {
    uint64_t highest;
    struct mx_outcome *ring;
    size_t alloc, head, count;
    int dropped;
};

/* What one mx_dedup_record did under a hold, to undo it (mx_dedup_rewind). */
struct undo {
    struct record *rec;
    char *client;         /* a record made by it: its key, to remove it again */
    size_t clen;
    uint64_t highest;     /* the record's before */
    int dropped;
    int overwrote;        /* the ring was at the window: old made way */
    struct mx_outcome old;
};

struct mx_dedup {
    mx_map *clients; /* client id -> struct record */
    size_t window;
    size_t slots; /* sum of alloc over records */
    int held;     /* records are undoable (mx_dedup_hold) */
    struct undo *undo;
    size_t nundo, capundo;
    /* The record looked up last and its client id (lookup): a decision
     * asks for the same client's record twice (highest, then record), and
     * a map look-up is a SipHash of the id. Forgotten before any record
     * leaves the map. */
    struct record *last;
    size_t last_clen;
    char last_client[128];
};

/* client's record, or NULL. d is not changed but for the one-entry
 * memory of the last look-up (a cache: d is const to callers). */
static struct record *lookup(const mx_dedup *d, const char *client, size_t clen)
{
    mx_dedup *m = (mx_dedup *)d;
    if (m->last && m->last_clen == clen && memcmp(m->last_client, client, clen) == 0)
        return m->last;
    struct record *r = mx_map_get(d->clients, client, clen);
    if (r && clen <= sizeof(m->last_client)) {
        m->last = r;
        m->last_clen = clen;
        memcpy(m->last_client, client, clen);
    }
    return r;
}

mx_dedup *mx_dedup_new(size_t window)
{
    mx_dedup *d = mx_calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->clients = mx_map_new();
    if (!d->clients) {
        free(d);
        return NULL;
    }
    d->window = window ? window : 1; /* the header asks for >= 1; be lenient */
    return d;
}

static const struct mx_outcome *rec_at(const struct record *r, size_t i)
{
    return &r->ring[(r->head + i) % r->alloc];
}

static void record_free(void *p)
{
    struct record *r = p;
    for (size_t i = 0; i < r->count; i++)
        free(r->ring[(r->head + i) % r->alloc].message);
    free(r->ring);
    free(r);
}

void mx_dedup_free(mx_dedup *d)
{
    if (!d)
        return;
    mx_dedup_release(d);
    mx_map_free(d->clients, record_free);
    free(d);
}

uint64_t mx_dedup_highest(const mx_dedup *d, const char *client, size_t clen)
{
    const struct record *r = lookup(d, client, clen);
    return r ? r->highest : 0;
}

int mx_dedup_find(const mx_dedup *d, const char *client, size_t clen, uint64_t n,
                  const struct mx_outcome **out)
{
    const struct record *r = lookup(d, client, clen);
    if (!r || n > r->highest)
        return 0;
    if (n < rec_at(r, 0)->n)
        return r->dropped ? -1 : 0;
    /* Binary search over the ring's logical order; n lies within
     * [oldest, highest] here. */
    size_t lo = 0, hi = r->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t m = rec_at(r, mid)->n;
        if (m == n) {
            if (out)
                *out = rec_at(r, mid);
            return 1;
        }
        if (m < n)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0; /* skipped by the client */
}

/* Make room for one more outcome in a ring that is not at the window yet:
 * double it (at most to the window), unrolling it so head is 0. */
static int grow(mx_dedup *d, struct record *r)
{
    size_t n = r->alloc ? r->alloc * 2 : 1;
    if (n > d->window || n < r->alloc)
        n = d->window;
    struct mx_outcome *ring = mx_malloc(n * sizeof *ring);
    if (!ring)
        return -1;
    for (size_t i = 0; i < r->count; i++)
        ring[i] = *rec_at(r, i);
    free(r->ring);
    d->slots += n - r->alloc;
    r->ring = ring;
    r->alloc = n;
    r->head = 0;
    return 0;
}

/* Room for one more undo step (a hold): 0 or -1. */
static int undo_reserve(mx_dedup *d)
{
    if (d->nundo < d->capundo)
        return 0;
    size_t ncap = d->capundo ? d->capundo * 2 : 16;
    struct undo *u = mx_realloc(d->undo, ncap * sizeof *u);
    if (!u)
        return -1;
    d->undo = u;
    d->capundo = ncap;
    return 0;
}

int mx_dedup_record(mx_dedup *d, const char *client, size_t clen, const struct mx_outcome *o)
{
    struct record *r = lookup(d, client, clen);
    if (o->n <= (r ? r->highest : 0))
        return -1;
    char *msg = NULL;
    if (o->message) {
        size_t mlen = strlen(o->message);
        msg = mx_malloc(mlen + 1);
        if (!msg)
            return -1;
        memcpy(msg, o->message, mlen + 1);
    }
    struct undo *u = NULL;
    if (d->held) {
        if (undo_reserve(d) || (!r && !(d->undo[d->nundo].client = mx_malloc(clen + 1)))) {
            free(msg);
            return -1;
        }
        u = &d->undo[d->nundo];
        if (r)
            u->client = NULL;
        else
            memcpy(u->client, client, clen);
        u->clen = clen;
    }
    int fresh = 0;
    if (!r) {
        r = mx_calloc(1, sizeof *r);
        if (!r || mx_map_put(d->clients, client, clen, r) < 0) {
            free(r);
            free(msg);
            if (u)
                free(u->client);
            return -1;
        }
        fresh = 1;
    }
    if (r->count == r->alloc && r->alloc < d->window && grow(d, r) < 0) {
        if (fresh) {
            d->last = NULL; /* lookup() may hold it */
            mx_map_del(d->clients, client, clen);
            free(r);
        }
        free(msg);
        if (u)
            free(u->client);
        return -1;
    }
    if (u) { /* nothing fails from here on: the step is recorded */
        u->rec = r;
        u->highest = r->highest;
        u->dropped = r->dropped;
        u->overwrote = r->count == r->alloc;
        d->nundo++;
    }
    struct mx_outcome *slot;
    if (r->count == r->alloc) {
        /* At the window: the oldest outcome makes way (kept under a hold). */
        slot = &r->ring[r->head];
        if (u)
            u->old = *slot;
        else
            free(slot->message);
        r->head = (r->head + 1) % r->alloc;
        r->dropped = 1;
    } else {
        slot = &r->ring[(r->head + r->count) % r->alloc];
        r->count++;
    }
    *slot = *o;
    slot->message = msg;
    r->highest = o->n;
    return 0;
}

void mx_dedup_hold(mx_dedup *d)
{
    mx_dedup_release(d);
    d->held = 1;
}

void mx_dedup_release(mx_dedup *d)
{
    for (size_t i = 0; i < d->nundo; i++) {
        if (d->undo[i].overwrote)
            free(d->undo[i].old.message);
        free(d->undo[i].client);
    }
    free(d->undo);
    d->undo = NULL;
    d->nundo = d->capundo = 0;
    d->held = 0;
}

void mx_dedup_rewind(mx_dedup *d)
{
    /* newest first: each step finds its record as that step left it */
    for (size_t i = d->nundo; i-- > 0;) {
        struct undo *u = &d->undo[i];
        struct record *r = u->rec;
        size_t last = (r->head + r->count - 1) % r->alloc;
        free(r->ring[last].message);
        if (u->overwrote) {
            /* the newest slot is the one the oldest gave up */
            r->ring[last] = u->old;
            r->head = last;
            u->overwrote = 0; /* its message is the ring's again */
        } else {
            r->count--;
        }
        r->highest = u->highest;
        r->dropped = u->dropped;
        if (u->client) {
            /* made by this step, the newest of the map's dense array:
             * removing it restores the map's order too */
            d->last = NULL; /* lookup() may hold it */
            mx_map_del(d->clients, u->client, u->clen);
            d->slots -= r->alloc;
            free(r->ring);
            free(r);
        }
    }
    mx_dedup_release(d);
}

size_t mx_dedup_clients(const mx_dedup *d)
{
    return mx_map_len(d->clients);
}

size_t mx_dedup_slots(const mx_dedup *d)
{
    return d->slots;
}

int mx_dedup_foreach(const mx_dedup *d,
                     int (*fn)(void *arg, const char *client, size_t clen, uint64_t highest,
                               const struct mx_outcome *o),
                     void *arg)
{
    size_t it = 0;
    const char *client;
    size_t clen;
    void *v;
    while (mx_map_next(d->clients, &it, &client, &clen, &v)) {
        const struct record *r = v;
        for (size_t i = 0; i < r->count; i++) {
            int rc = fn(arg, client, clen, r->highest, rec_at(r, i));
            if (rc)
                return rc;
        }
    }
    return 0;
}
