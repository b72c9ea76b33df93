/* map.c - byte-string keyed hash map; see map.h.
 *
 * Layout: a dense array of entries (key copy, length, hash, value) plus an
 * open-addressed index of 32-bit slots (linear probing) pointing into it.
 * Keeping the entries dense is what makes iteration with deletion simple:
 * mx_map_next walks the array from the end towards index 0, and mx_map_del
 * fills the hole with the *last* entry (swap-remove). The entry moved into
 * the hole has therefore already been visited, and nothing below the hole
 * moves, so deleting the entry just returned never skips or repeats one.
 * It also makes iteration O(len) however large the map once was.
 *
 * Invariants:
 *   - ents[0..len) are the live entries; no tombstones anywhere.
 *   - idx has icap slots (a power of two, >= MIN_ICAP); a slot holds 0 when
 *     empty, else entry index + 1. Every live entry has exactly one slot, and
 *     every slot between an entry's home (hash & mask) and its slot is
 *     occupied (the linear-probing invariant), which deletion keeps by
 *     backward shift rather than tombstones, so lookups never slow down as
 *     keys churn.
 *   - len <= icap * 3/4 (the growth bound); the index shrinks again when a
 *     map empties, so a room registry that once held many rooms gives the
 *     memory back.
 *
 * The hash is SipHash-2-4 (crypto_shorthash) under one random key per
 * process: keys come from remote clients, and an unkeyed hash would let them
 * pile every key into one probe run.
 */
#include "movexd/map.h"
#include "movexd/alloc.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_ICAP 8u
#define MAX_ENTRIES ((size_t)UINT32_MAX - 1) /* slot values are index + 1 */

struct ent {
    uint64_t hash;
    char *key; /* owned, NUL-terminated for the caller's convenience */
    size_t len;
    void *val;
};

struct mx_map {
    struct ent *ents;
    size_t len, ecap; /* live entries, allocated entries */
    uint32_t *idx;
    size_t icap; /* power of two */
};

static unsigned char hash_key[crypto_shorthash_KEYBYTES];
static int hash_keyed;

static int hash_init(void)
{
    if (hash_keyed)
        return 0;
    if (sodium_init() < 0)
        return -1;
    randombytes_buf(hash_key, sizeof hash_key);
    hash_keyed = 1;
    return 0;
}

static uint64_t hash_of(const char *key, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, (const unsigned char *)(len ? key : ""), len, hash_key);
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return h;
}

static int key_eq(const struct ent *e, uint64_t hash, const char *key, size_t len)
{
    return e->hash == hash && e->len == len && (len == 0 || memcmp(e->key, key, len) == 0);
}

/* Slot holding key, or the empty slot where the probe ended (*found = 0). */
static size_t find_slot(const mx_map *m, uint64_t hash, const char *key, size_t len, int *found)
{
    size_t mask = m->icap - 1;
    for (size_t s = (size_t)hash & mask;; s = (s + 1) & mask) {
        uint32_t v = m->idx[s];
        if (v == 0) {
            *found = 0;
            return s;
        }
        if (key_eq(&m->ents[v - 1], hash, key, len)) {
            *found = 1;
            return s;
        }
    }
}

/* Slot pointing at entry i (which must be indexed). */
static size_t slot_of_entry(const mx_map *m, size_t i)
{
    size_t mask = m->icap - 1;
    size_t s = (size_t)m->ents[i].hash & mask;
    while (m->idx[s] != (uint32_t)(i + 1))
        s = (s + 1) & mask;
    return s;
}

/* Replace the index by one of icap slots built from ents; -1 leaves the map
 * as it was. */
static int reindex(mx_map *m, size_t icap)
{
    uint32_t *idx = mx_calloc(icap, sizeof *idx);
    if (!idx)
        return -1;
    size_t mask = icap - 1;
    for (size_t i = 0; i < m->len; i++) {
        size_t s = (size_t)m->ents[i].hash & mask;
        while (idx[s])
            s = (s + 1) & mask;
        idx[s] = (uint32_t)(i + 1);
    }
    free(m->idx);
    m->idx = idx;
    m->icap = icap;
    return 0;
}

mx_map *mx_map_new(void)
{
    if (hash_init() < 0)
        return NULL;
    mx_map *m = mx_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->idx = mx_calloc(MIN_ICAP, sizeof *m->idx);
    if (!m->idx) {
        free(m);
        return NULL;
    }
    m->icap = MIN_ICAP;
    return m;
}

void mx_map_free(mx_map *m, void (*free_val)(void *))
{
    if (!m)
        return;
    for (size_t i = 0; i < m->len; i++) {
        if (free_val)
            free_val(m->ents[i].val);
        free(m->ents[i].key);
    }
    free(m->ents);
    free(m->idx);
    free(m);
}

void *mx_map_get(const mx_map *m, const char *key, size_t len)
{
    int found;
    size_t s = find_slot(m, hash_of(key, len), key, len, &found);
    return found ? m->ents[m->idx[s] - 1].val : NULL;
}

int mx_map_put(mx_map *m, const char *key, size_t len, void *val)
{
    uint64_t hash = hash_of(key, len);
    int found;
    size_t s = find_slot(m, hash, key, len, &found);
    if (found) {
        m->ents[m->idx[s] - 1].val = val;
        return 0;
    }
    if (m->len >= MAX_ENTRIES)
        return -1;
    /* Reserve everything before changing anything, so failure leaves the
     * map untouched. */
    char *copy = mx_malloc(len + 1);
    if (!copy)
        return -1;
    if (len)
        memcpy(copy, key, len);
    copy[len] = '\0';
    if (m->len == m->ecap) {
        size_t ecap = m->ecap ? m->ecap * 2 : 4;
        struct ent *ents = mx_realloc(m->ents, ecap * sizeof *ents);
        if (!ents) {
            free(copy);
            return -1;
        }
        m->ents = ents;
        m->ecap = ecap;
    }
    if ((m->len + 1) * 4 > m->icap * 3) {
        if (reindex(m, m->icap * 2) < 0) {
            free(copy);
            return -1;
        }
        s = find_slot(m, hash, key, len, &found);
    }
    m->ents[m->len] = (struct ent){.hash = hash, .key = copy, .len = len, .val = val};
    m->idx[s] = (uint32_t)(m->len + 1);
    m->len++;
    return 0;
}

/* Empty slot s, then pull later entries of the probe run back so that none
 * sits behind a hole between its home and its slot. */
static void unlink_slot(mx_map *m, size_t s)
{
    size_t mask = m->icap - 1;
    size_t hole = s;
    m->idx[hole] = 0;
    for (size_t k = (hole + 1) & mask; m->idx[k]; k = (k + 1) & mask) {
        size_t home = (size_t)m->ents[m->idx[k] - 1].hash & mask;
        /* Movable when the hole lies cyclically within [home, k). */
        if (((k - home) & mask) >= ((k - hole) & mask)) {
            m->idx[hole] = m->idx[k];
            m->idx[k] = 0;
            hole = k;
        }
    }
}

void *mx_map_del(mx_map *m, const char *key, size_t len)
{
    int found;
    size_t s = find_slot(m, hash_of(key, len), key, len, &found);
    if (!found)
        return NULL;
    size_t i = m->idx[s] - 1;
    void *val = m->ents[i].val;
    free(m->ents[i].key);
    unlink_slot(m, s);
    size_t last = m->len - 1;
    if (i != last) {
        m->idx[slot_of_entry(m, last)] = (uint32_t)(i + 1);
        m->ents[i] = m->ents[last];
    }
    m->len--;

    /* Give memory back once the map is mostly empty. Both are optional:
     * on allocation failure the larger arrays simply stay. Iteration only
     * depends on entry order, which neither step changes. */
    if (m->icap > MIN_ICAP && m->len * 8 < m->icap) {
        size_t icap = m->icap;
        while (icap > MIN_ICAP && m->len * 8 < icap)
            icap /= 2;
        (void)reindex(m, icap);
    }
    if (m->ecap > 4 && m->len * 4 < m->ecap) {
        size_t ecap = m->ecap / 2;
        struct ent *ents = mx_realloc(m->ents, ecap * sizeof *ents);
        if (ents) {
            m->ents = ents;
            m->ecap = ecap;
        }
    }
    return val;
}

size_t mx_map_len(const mx_map *m)
{
    return m->len;
}

/* *it is 0 at the start, then one more than the index of the entry last
 * returned; entries are returned from the highest index down (see top). */
int mx_map_next(const mx_map *m, size_t *it, const char **key, size_t *len, void **val)
{
    size_t pos = *it == 0 ? m->len : *it - 1;
    if (pos > m->len)
        pos = m->len;
    if (pos == 0) {
        *it = 1;
        return 0;
    }
    const struct ent *e = &m->ents[pos - 1];
    *it = pos;
    if (key)
        *key = e->key;
    if (len)
        *len = e->len;
    if (val)
        *val = e->val;
    return 1;
}
