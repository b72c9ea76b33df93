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
 *   - under a pin (mx_oplog_pin) no text of an entry with seq <= pin_seq is
 *     freed: whatever path lets go of one (dropped, cleared, released from
 *     a hold) moves it to pinned[], reserved at the pin, and the unpin
 *     frees them. Every text goes through let_go() for this. A rewind
 *     lowers pin_seq to the hold's seq: the seqs after it are reused by
 *     texts the pin never saw.
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
    /* a hold (mx_oplog_hold): the last seq then, and the entries of that
     * time the ring dropped since, oldest first (kept for a rewind) */
    int held;
    uint64_t hold_seq;
    size_t hold_count;
    struct mx_oplog_entry *kept;
    size_t nkept, capkept;
    /* a pin (mx_oplog_pin): texts of seq <= pin_seq let go meanwhile */
    int pinned_on;
    uint64_t pin_seq;
    char **pinned;
    size_t npinned, cappinned;
};

/* A text the log no longer holds: freed, or kept for the pin's reader. */
static void let_go(mx_oplog *l, uint64_t seq, char *text)
{
    if (text && l->pinned_on && seq <= l->pin_seq && l->npinned < l->cappinned) {
        l->pinned[l->npinned++] = text;
        return;
    }
    mx_block_free(text); /* the next entry's buffer (alloc.h) */
}

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

/* Free the oldest k entries (under a hold, those of the hold's time go to
 * kept instead: room for them was reserved before the append). */
static void drop_oldest(mx_oplog *l, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        struct mx_oplog_entry *e = at(l, 0);
        l->bytes -= e->len;
        if (l->held && e->seq <= l->hold_seq && l->nkept < l->capkept)
            l->kept[l->nkept++] = *e;
        else
            let_go(l, e->seq, e->text);
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

static void kept_free(mx_oplog *l)
{
    for (size_t i = 0; i < l->nkept; i++)
        let_go(l, l->kept[i].seq, l->kept[i].text);
    free(l->kept);
    l->kept = NULL;
    l->nkept = l->capkept = 0;
}

void mx_oplog_clear(mx_oplog *l)
{
    /* nothing of before a hold can come back after this */
    int held = l->held;
    l->held = 0;
    drop_oldest(l, l->count);
    kept_free(l);
    l->held = held;
    l->hold_seq = 0;
    l->hold_count = 0;
    /* An emptied room gives its ring back; it regrows on the next append. */
    free(l->ring);
    l->ring = NULL;
    l->alloc = 0;
}

void mx_oplog_free(mx_oplog *l)
{
    if (!l)
        return;
    l->held = 0;
    mx_oplog_clear(l);
    mx_oplog_unpin(l); /* no reader may be left by now (storage_wal.c) */
    free(l);
}

int mx_oplog_pin(mx_oplog *l)
{
    if (l->pinned_on)
        return -1;
    /* every text there is now: the ring's and a hold's kept ones */
    size_t n = l->count + l->nkept;
    char **p = n ? mx_malloc(n * sizeof *p) : NULL;
    if (n && !p)
        return -1;
    l->pinned = p;
    l->npinned = 0;
    l->cappinned = n;
    l->pin_seq = mx_oplog_last_seq(l);
    for (size_t i = 0; i < l->nkept; i++)
        if (l->kept[i].seq > l->pin_seq)
            l->pin_seq = l->kept[i].seq;
    l->pinned_on = 1;
    return 0;
}

void mx_oplog_unpin(mx_oplog *l)
{
    if (!l->pinned_on)
        return;
    l->pinned_on = 0;
    for (size_t i = 0; i < l->npinned; i++)
        mx_block_free(l->pinned[i]);
    free(l->pinned);
    l->pinned = NULL;
    l->npinned = l->cappinned = 0;
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
    if (l->count == l->capacity) {
        /* a dropped entry of the hold's time is kept: reserve its slot
         * first, so the append still fails with the log unchanged */
        if (l->held && at(l, 0)->seq <= l->hold_seq && l->nkept == l->capkept) {
            size_t ncap = l->capkept ? l->capkept * 2 : 8;
            if (ncap > l->hold_count)
                ncap = l->hold_count;
            struct mx_oplog_entry *k = mx_realloc(l->kept, ncap * sizeof *k);
            if (!k)
                return -1;
            l->kept = k;
            l->capkept = ncap;
        }
        drop_oldest(l, 1);
    }
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

void mx_oplog_hold(mx_oplog *l)
{
    kept_free(l);
    l->held = 1;
    l->hold_seq = mx_oplog_last_seq(l);
    l->hold_count = l->count;
}

void mx_oplog_release(mx_oplog *l)
{
    kept_free(l);
    l->held = 0;
}

void mx_oplog_rewind(mx_oplog *l)
{
    if (!l->held)
        return;
    /* the newest entries, appended under the hold, go */
    while (l->count && at(l, l->count - 1)->seq > l->hold_seq) {
        struct mx_oplog_entry *e = at(l, l->count - 1);
        l->bytes -= e->len;
        let_go(l, e->seq, e->text);
        e->text = NULL;
        l->count--;
    }
    /* the texts of after the hold that a pin saw are in pinned[] now;
     * appends from here reuse their seqs with texts no reader saw, which
     * must not take the slots kept for the ones still in the ring */
    if (l->pinned_on && l->pin_seq > l->hold_seq)
        l->pin_seq = l->hold_seq;
    /* the dropped ones of before come back at the front, newest first:
     * the ring had held them all at once, and it never shrinks under a
     * hold (mx_oplog_set_capacity releases it) */
    for (size_t i = l->nkept; i-- > 0;) {
        if (l->count == l->alloc) {
            let_go(l, l->kept[i].seq, l->kept[i].text);
            continue;
        }
        l->head = (l->head + l->alloc - 1) % l->alloc;
        *at(l, 0) = l->kept[i];
        l->bytes += l->kept[i].len;
        l->count++;
    }
    l->nkept = 0;
    if (l->count == 0)
        l->head = 0;
    mx_oplog_release(l);
}

int mx_oplog_set_capacity(mx_oplog *l, size_t capacity)
{
    /* a capacity change is not undone: what a hold kept is let go */
    mx_oplog_release(l);
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
