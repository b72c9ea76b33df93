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

struct mx_dedup {
    mx_map *clients; /* client id -> struct record */
    size_t window;
    size_t slots; /* sum of alloc over records */
};

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
    mx_map_free(d->clients, record_free);
    free(d);
}

uint64_t mx_dedup_highest(const mx_dedup *d, const char *client, size_t clen)
{
    const struct record *r = mx_map_get(d->clients, client, clen);
    return r ? r->highest : 0;
}

int mx_dedup_find(const mx_dedup *d, const char *client, size_t clen, uint64_t n,
                  const struct mx_outcome **out)
{
    const struct record *r = mx_map_get(d->clients, client, clen);
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

int mx_dedup_record(mx_dedup *d, const char *client, size_t clen, const struct mx_outcome *o)
{
    struct record *r = mx_map_get(d->clients, client, clen);
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
    int fresh = 0;
    if (!r) {
        r = mx_calloc(1, sizeof *r);
        if (!r || mx_map_put(d->clients, client, clen, r) < 0) {
            free(r);
            free(msg);
            return -1;
        }
        fresh = 1;
    }
    if (r->count == r->alloc && r->alloc < d->window && grow(d, r) < 0) {
        if (fresh) {
            mx_map_del(d->clients, client, clen);
            free(r);
        }
        free(msg);
        return -1;
    }
    struct mx_outcome *slot;
    if (r->count == r->alloc) {
        /* At the window: the oldest outcome makes way. */
        slot = &r->ring[r->head];
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
