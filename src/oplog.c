/* oplog.c - a room's bounded action log as a ring of entries; see oplog.h.
 *
 * Invariants:
 *   - ring[head], ring[head+1], ... (mod alloc) are the count held entries,
 *     oldest first, with consecutive seqs; so entry(seq) is
 *     ring[(head + seq - first) % alloc], O(1) for since-lookups.
 *   - count <= alloc <= capacity. The ring is allocated lazily and doubles
 *     up to capacity: most rooms see few actions, and a configured capacity
 *     of thousands should not cost every idle room thousands of slots.
 *   - bytes is the sum of the held entries' text lengths.
 * When count == capacity an append overwrites the oldest entry. Capacity 0
 * keeps nothing: appends succeed and are dropped at once.
 */
#include "movexd/oplog.h"
#include "movexd/alloc.h"

#include <stdlib.h>
#include <string.h>

#define MIN_ALLOC 8u

struct mx_oplog {
    struct mx_oplog_entry *ring;
    size_t alloc, capacity;
    size_t head, count;
    size_t bytes;
};

mx_oplog *mx_oplog_new(size_t capacity)
{
    mx_oplog *l = mx_calloc(1, sizeof *l);
    if (l)
        l->capacity = capacity;
    return l;
}

static struct mx_oplog_entry *at(const mx_oplog *l, size_t i)
{
    return &l->ring[(l->head + i) % l->alloc];
}

/* Free the oldest k entries. */
static void drop_oldest(mx_oplog *l, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        struct mx_oplog_entry *e = at(l, 0);
        l->bytes -= e->len;
        mx_block_free(e->text); /* the next entry's buffer (alloc.h) */
        e->text = NULL;
        l->head = (l->head + 1) % l->alloc;
        l->count--;
    }
    if (l->count == 0)
        l->head = 0;
}

/* Move the entries (oldest first) into a fresh ring of n >= count slots. */
static int realloc_ring(mx_oplog *l, size_t n)
{
    struct mx_oplog_entry *ring = NULL;
    if (n) {
        ring = mx_calloc(n, sizeof *ring);
        if (!ring)
            return -1;
        for (size_t i = 0; i < l->count; i++)
            ring[i] = *at(l, i);
    }
    free(l->ring);
    l->ring = ring;
    l->alloc = n;
    l->head = 0;
    return 0;
}

void mx_oplog_clear(mx_oplog *l)
{
    drop_oldest(l, l->count);
    /* An emptied room gives its ring back; it regrows on the next append. */
    free(l->ring);
    l->ring = NULL;
    l->alloc = 0;
}

void mx_oplog_free(mx_oplog *l)
{
    if (!l)
        return;
    mx_oplog_clear(l);
    free(l);
}

int mx_oplog_append_take(mx_oplog *l, uint64_t seq, const uint8_t prev[MX_DIGEST_LEN],
                         const uint8_t checksum[MX_DIGEST_LEN], char *text, size_t len)
{
    if (l->count && seq != mx_oplog_last_seq(l) + 1)
        return -1;
    if (l->capacity == 0)
        return 1;
    if (l->count == l->alloc && l->alloc < l->capacity) {
        size_t n = l->alloc ? l->alloc * 2 : MIN_ALLOC;
        if (n > l->capacity || n < l->alloc)
            n = l->capacity;
        if (realloc_ring(l, n) < 0)
            return -1;
    }
    if (l->count == l->capacity)
        drop_oldest(l, 1);
    struct mx_oplog_entry *e = at(l, l->count);
    e->seq = seq;
    memcpy(e->prev, prev, MX_DIGEST_LEN);
    memcpy(e->checksum, checksum, MX_DIGEST_LEN);
    e->text = text;
    e->len = len;
    l->count++;
    l->bytes += len;
    return 0;
}

int mx_oplog_append(mx_oplog *l, uint64_t seq, const uint8_t prev[MX_DIGEST_LEN],
                    const uint8_t checksum[MX_DIGEST_LEN], const char *text, size_t len)
{
    if (l->count && seq != mx_oplog_last_seq(l) + 1)
        return -1;
    if (l->capacity == 0)
        return 0;
    char *copy = mx_malloc(len + 1);
    if (!copy)
        return -1;
    if (len)
        memcpy(copy, text, len);
    copy[len] = '\0';
    if (mx_oplog_append_take(l, seq, prev, checksum, copy, len)) {
        free(copy);
        return -1;
    }
    return 0;
}

const struct mx_oplog_entry *mx_oplog_get(const mx_oplog *l, uint64_t seq)
{
    if (l->count == 0)
        return NULL;
    uint64_t first = at(l, 0)->seq;
    if (seq < first || seq - first >= l->count)
        return NULL;
    return at(l, (size_t)(seq - first));
}

size_t mx_oplog_count(const mx_oplog *l)
{
    return l->count;
}

uint64_t mx_oplog_first_seq(const mx_oplog *l)
{
    return l->count ? at(l, 0)->seq : 0;
}

uint64_t mx_oplog_last_seq(const mx_oplog *l)
{
    return l->count ? at(l, l->count - 1)->seq : 0;
}

size_t mx_oplog_bytes(const mx_oplog *l)
{
    return l->bytes;
}

int mx_oplog_set_capacity(mx_oplog *l, size_t capacity)
{
    if (capacity < l->alloc) {
        /* Shrink the ring first (it can fail), then drop: a failure leaves
         * the log as it was. The new ring takes the newest entries. */
        size_t keep = l->count < capacity ? l->count : capacity;
        size_t extra = l->count - keep;
        struct mx_oplog_entry *ring = NULL;
        if (capacity) {
            ring = mx_calloc(capacity, sizeof *ring);
            if (!ring)
                return -1;
        }
        drop_oldest(l, extra);
        for (size_t i = 0; i < keep; i++)
            ring[i] = *at(l, i);
        free(l->ring);
        l->ring = ring;
        l->alloc = capacity;
        l->head = 0;
    }
    l->capacity = capacity;
    return 0;
}
