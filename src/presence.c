/* presence.c - one room's ephemeral presence table; see presence.h.
 *
 * Entries live in a small array in the order they were first set (a room
 * has as many entries as connections that set a presence, typically a
 * handful; lookups are linear). Invariants:
 *   - at most one entry per owner;
 *   - an entry with state NULL is dirty (it waits to be announced as left)
 *     and is removed by the flush that announces it;
 *   - an empty table does not exist: whoever removes the last entry frees
 *     it and sets the room's pointer to NULL, so a room without presence
 *     costs one pointer and an idle room can leave memory as before;
 *   - bytes is the sum of statelen over the entries, so the per-room bound
 *     (max_presence_room_bytes) is checked without walking the table.
 * Nothing here is written to storage or feeds the checksum.
 */
#include "movexd/presence.h"
#include "movexd/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "movexd/err.h"

struct mx_presence {
    struct mx_presence_entry *v;
    size_t n, cap;
    size_t bytes; /* sum of the entries' statelen */
    int listed; /* the engine's flag: on its list of tables to flush */
};

static struct mx_presence_entry *find(const mx_presence *p, const void *owner)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (p->v[i].owner == owner)
            return &p->v[i];
    return NULL;
}

/* Drop entry i (its state freed); frees the table when it is empty. */
static void drop(mx_presence **pp, size_t i)
{
    mx_presence *p = *pp;
    p->bytes -= p->v[i].statelen;
    free(p->v[i].state);
    memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof(p->v[0]));
    if (--p->n == 0) {
        mx_presence_free(p);
        *pp = NULL;
    }
}

int mx_presence_set(mx_presence **pp, const void *owner, uint64_t conn, const char *client,
                    size_t clientlen, const char *state, size_t len)
{
    struct mx_presence_entry *en = find(*pp, owner);
    if (!state) {
        if (en) {
            (*pp)->bytes -= en->statelen;
            free(en->state);
            en->state = NULL;
            en->statelen = 0;
            en->dirty = 1;
        }
        return 0;
    }
    char *copy = mx_malloc(len + 1);
    if (!copy)
        return MX_ENOMEM;
    memcpy(copy, state, len);
    copy[len] = '\0';
    if (!en) {
        mx_presence *p = *pp;
        if (!p && !(p = mx_calloc(1, sizeof(*p)))) {
            free(copy);
            return MX_ENOMEM;
        }
        if (p->n == p->cap) {
            size_t ncap = p->cap ? p->cap * 2 : 4;
            struct mx_presence_entry *nv = mx_realloc(p->v, ncap * sizeof(*nv));
            if (!nv) {
                free(copy);
                if (!*pp)
                    mx_presence_free(p);
                return MX_ENOMEM;
            }
            p->v = nv;
            p->cap = ncap;
        }
        *pp = p;
        en = &p->v[p->n++];
        memset(en, 0, sizeof(*en));
        en->owner = owner;
        en->conn = conn;
        if (clientlen > MX_CLIENT_ID_MAX)
            clientlen = MX_CLIENT_ID_MAX;
        memcpy(en->client, client, clientlen);
        en->clientlen = clientlen;
    }
    (*pp)->bytes = (*pp)->bytes - en->statelen + len;
    free(en->state);
    en->state = copy;
    en->statelen = len;
    en->dirty = 1;
    return 0;
}

int mx_presence_set_remote(mx_presence **pp, const void *owner, uint64_t conn, const char *client,
                           size_t clientlen, const char *state, size_t len)
{
    int rc = mx_presence_set(pp, owner, conn, client, clientlen, state, len);
    struct mx_presence_entry *en = rc ? NULL : find(*pp, owner);
    if (en)
        en->remote = 1;
    return rc;
}

int mx_presence_remove(mx_presence **pp, const void *owner, struct mx_presence_entry *gone)
{
    mx_presence *p = *pp;
    for (size_t i = 0; p && i < p->n; i++) {
        if (p->v[i].owner != owner)
            continue;
        *gone = p->v[i];
        gone->state = NULL;
        gone->statelen = 0;
        drop(pp, i);
        return 1;
    }
    return 0;
}

void mx_presence_each(const mx_presence *p, const void *except,
                      void (*fn)(void *ctx, const struct mx_presence_entry *en), void *ctx)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (p->v[i].owner != except && p->v[i].state)
            fn(ctx, &p->v[i]);
}

int mx_presence_flush(mx_presence **pp, uint64_t now_ms, uint64_t interval_ms,
                      void (*fn)(void *ctx, const struct mx_presence_entry *en), void *ctx)
{
    int waiting = 0;
    size_t i = 0;
    while (*pp && i < (*pp)->n) {
        struct mx_presence_entry *en = &(*pp)->v[i];
        if (!en->dirty) {
            i++;
            continue;
        }
        if (en->sent_ms && now_ms - en->sent_ms < interval_ms) {
            waiting = 1; /* rate limit: the latest state goes out later */
            i++;
            continue;
        }
        fn(ctx, en);
        if (!en->state) {
            drop(pp, i); /* announced as left */
            continue;
        }
        en->dirty = 0;
        en->sent_ms = now_ms ? now_ms : 1;
        i++;
    }
    return waiting;
}

int *mx_presence_listed(mx_presence *p) { return &p->listed; }

size_t mx_presence_count(const mx_presence *p) { return p ? p->n : 0; }

size_t mx_presence_bytes_without(const mx_presence *p, const void *owner)
{
    if (!p)
        return 0;
    const struct mx_presence_entry *en = find(p, owner);
    return p->bytes - (en ? en->statelen : 0);
}

void mx_presence_free(mx_presence *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].state);
    free(p->v);
    free(p);
}
