/* storage_wal.c - durable storage: the write-ahead log plus per-room
 * snapshots, behind the storage seam (storage.h); recovery at start-up.
 *
 * Layout under data_dir: wal/ (segments, wal.c) and rooms/<room id>.snap
 * (snapshot.c encoding, written with mx_atomic_write). LOCK keeps a second
 * daemon out of the same directory.
 *
 * Invariants:
 *  - every decision (create, action, reject, delete) is appended to the WAL
 *    before the engine's outbox can release anything that depends on it;
 *  - a snapshot is written only when everything appended so far is written
 *    and synced (after a successful flush + mx_wal_sync), and it records the
 *    last LSN it covers; recovery skips a room's records up to that LSN. So
 *    a snapshot never covers a record that a crash could still take away,
 *    and LSNs after recovery never fall below a snapshot's;
 *  - a room's records stay in the WAL until a snapshot covers them; old
 *    segments are deleted only when no room in memory has records in them
 *    that no snapshot covers (rooms leave memory only with a snapshot).
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "movexd/codec.h"
#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/metrics.h"
#include "movexd/proto.h"
#include "movexd/room.h"
#include "movexd/snapshot.h"
#include "movexd/storage.h"
#include "movexd/wal.h"

enum rec_type { REC_CREATE = 1, REC_ACTION = 2, REC_REJECT = 3, REC_DELETE = 4 };

struct wal_st {
    struct mx_storage iface;
    const struct mx_config *cfg;
    char waldir[1100], snapdir[1100];
    int lockfd;
    mx_wal *wal;
    mx_buf rec;
    struct mx_room **due; /* rooms whose snapshot is due */
    size_t ndue, capdue;
    char **unlink_after_flush; /* snapshot files of deleted rooms */
    size_t nunlink, capunlink;
    int failed; /* a flush failed for lack of space; cleared by the next good one */
    struct mx_storage_stats st;
    /* recovery: rooms whose WAL records are indexed but not replayed yet */
    mx_map *pending;          /* room id -> struct pending; NULL when none is left */
    struct pending **pq;      /* every entry, in the background pass's order */
    size_t npq, cappq, pqpos;
    struct pending **done;    /* rebuilt by the background pass, snapshot due */
    size_t ndone;
    uint64_t pending_rooms, pending_nosnap, rebuilt_rooms, recovery_start_us;
    int recovery_done;        /* recovery_complete logged */
    size_t bg_batch;          /* snapshots per background batch (halved after a failure) */
    uint64_t checkpoint_floor; /* see st_after_commit */
    mx_wal_reader *rd;        /* keeps the indexed segments mapped */
};

static void snap_name(const struct mx_room *r, char *out, size_t n)
{
    snprintf(out, n, "%s.snap", r->id);
}

/* ---- appending ---- */

static void rec_begin(struct wal_st *s, enum rec_type t, const struct mx_room *r)
{
    mx_buf_reset(&s->rec);
    mx_put_u8(&s->rec, (uint8_t)t);
    mx_put_bytes(&s->rec, r->id, r->idlen);
}

static void queue_due(struct wal_st *s, struct mx_room *r)
{
    if (r->disk_due)
        return;
    if (s->ndue == s->capdue) {
        size_t ncap = s->capdue ? s->capdue * 2 : 16;
        struct mx_room **n = realloc(s->due, ncap * sizeof(*n));
        if (!n)
            return; /* the checkpoint will still cover it */
        s->due = n;
        s->capdue = ncap;
    }
    s->due[s->ndue++] = r;
    r->disk_due = 1;
}

static void unqueue_due(struct wal_st *s, struct mx_room *r)
{
    if (!r->disk_due)
        return;
    for (size_t i = 0; i < s->ndue; i++) {
        if (s->due[i] == r) {
            s->due[i] = s->due[--s->ndue];
            break;
        }
    }
    r->disk_due = 0;
}

static int rec_end(struct wal_st *s, struct mx_room *r)
{
    if (s->rec.oom)
        return MX_ENOMEM;
    if (mx_wal_reserve(s->wal, s->rec.len))
        mx_warn("event=wal_reserve_failed room=%s bytes=%zu note=\"appending beyond the reservation\"",
                r->id, s->rec.len);
    uint64_t lsn = mx_wal_append(s->wal, mx_buf_data(&s->rec), s->rec.len);
    if (!lsn)
        return MX_ENOMEM;
    if (!r->disk_first_lsn)
        r->disk_first_lsn = lsn;
    if (++r->disk_records >= s->cfg->snapshot_every)
        queue_due(s, r);
    return 0;
}

static int st_reserve(void *ctx, size_t bytes)
{
    struct wal_st *s = ctx;
    if (s->failed)
        return MX_EUNAVAILABLE;
    return mx_wal_reserve(s->wal, bytes) ? MX_EUNAVAILABLE : 0;
}

static int st_room_created(void *ctx, struct mx_room *r)
{
    struct wal_st *s = ctx;
    rec_begin(s, REC_CREATE, r);
    size_t at = s->rec.len;
    mx_put_u32(&s->rec, 0);
    mx_json_dump(r->state, &s->rec);
    if (!s->rec.oom) {
        uint32_t n = (uint32_t)(s->rec.len - at - 4);
        unsigned char *p = (unsigned char *)mx_buf_data(&s->rec) + at;
        p[0] = (unsigned char)n;
        p[1] = (unsigned char)(n >> 8);
        p[2] = (unsigned char)(n >> 16);
        p[3] = (unsigned char)(n >> 24);
    }
    return rec_end(s, r);
}

static int st_action(void *ctx, struct mx_room *r, const struct mx_storage_action *a)
{
    struct wal_st *s = ctx;
    rec_begin(s, REC_ACTION, r);
    mx_put_u64(&s->rec, a->seq);
    mx_buf_append(&s->rec, a->prev, MX_DIGEST_LEN);
    mx_buf_append(&s->rec, a->checksum, MX_DIGEST_LEN);
    mx_put_bytes(&s->rec, a->client, a->clientlen);
    mx_put_u64(&s->rec, a->n);
    mx_put_bytes(&s->rec, a->entry, a->entrylen);
    return rec_end(s, r);
}

static int st_reject(void *ctx, struct mx_room *r, const char *client, size_t clen,
                     const struct mx_outcome *o)
{
    struct wal_st *s = ctx;
    rec_begin(s, REC_REJECT, r);
    mx_put_bytes(&s->rec, client, clen);
    mx_put_u64(&s->rec, o->n);
    mx_put_u32(&s->rec, (uint32_t)o->code);
    mx_put_u64(&s->rec, o->seq);
    mx_buf_append(&s->rec, o->checksum, MX_DIGEST_LEN);
    const char *m = o->message ? o->message : "";
    mx_put_bytes(&s->rec, m, strlen(m));
    return rec_end(s, r);
}

static int st_room_deleted(void *ctx, struct mx_room *r)
{
    struct wal_st *s = ctx;
    unqueue_due(s, r);
    rec_begin(s, REC_DELETE, r);
    int rc = rec_end(s, r);
    /* the room is about to be freed: rec_end may have queued it for a
     * snapshot (its record count reached snapshot_every), and a snapshot
     * written after the DELETE would bring the room back */
    unqueue_due(s, r);
    r->disk_records = 0;
    if (rc)
        return rc;
    /* the snapshot goes only once the DELETE record is durable */
    char name[MX_ROOM_ID_MAX + 8];
    snap_name(r, name, sizeof(name));
    if (s->nunlink == s->capunlink) {
        size_t ncap = s->capunlink ? s->capunlink * 2 : 8;
        char **n = realloc(s->unlink_after_flush, ncap * sizeof(*n));
        if (!n)
            return MX_ENOMEM;
        s->unlink_after_flush = n;
        s->capunlink = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return MX_ENOMEM;
    s->unlink_after_flush[s->nunlink++] = copy;
    return 0;
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Rename a damaged ROOM.snap to ROOM.snap.damaged (kept for the operator;
 * no longer counted or loaded). 0 or an errno value. */
static int set_aside_snapshot(struct wal_st *s, const char *id, size_t len)
{
    char path[2400], aside[2500];
    snprintf(path, sizeof(path), "%s/%.*s.snap", s->snapdir, (int)len, id);
    snprintf(aside, sizeof(aside), "%s.damaged", path);
    if (rename(path, aside) != 0)
        return errno;
    sync_dir(s->snapdir);
    if (s->st.rooms_on_disk)
        s->st.rooms_on_disk--;
    mx_warn("event=snapshot_set_aside file=%s room=%.*s", aside, (int)len, id);
    return 0;
}

static int st_flush(void *ctx)
{
    struct wal_st *s = ctx;
    s->st.flushes++;
    int rc = mx_wal_flush(s->wal);
    if (rc) {
        s->st.flush_failures++;
        if (!s->failed)
            mx_err("event=disk_full op=flush dir=%s note=\"acks are held until the write succeeds\"",
                   s->waldir);
        if (rc == MX_EUNAVAILABLE)
            s->failed = 1;
        return rc;
    }
    if (s->failed) {
        mx_warn("event=disk_recovered dir=%s", s->waldir);
        s->failed = 0;
    }
    if (s->nunlink) {
        for (size_t i = 0; i < s->nunlink; i++) {
            char path[2400];
            snprintf(path, sizeof(path), "%s/%s", s->snapdir, s->unlink_after_flush[i]);
            if (unlink(path) == 0) {
                if (s->st.rooms_on_disk)
                    s->st.rooms_on_disk--;
            } else if (errno != ENOENT) {
                mx_warn("event=unlink_failed file=%s error=\"%s\"", path, strerror(errno));
            }
            free(s->unlink_after_flush[i]);
        }
        s->nunlink = 0;
        sync_dir(s->snapdir);
    }
    return 0;
}

static int st_tick(void *ctx)
{
    struct wal_st *s = ctx;
    if (s->failed)
        return st_flush(s);
    return mx_wal_tick(s->wal);
}

/* ---- snapshots ---- */

/* Write r's snapshot. Only called when the WAL holds nothing unwritten. */
static int write_snapshot(struct wal_st *s, struct mx_room *r)
{
    uint64_t lsn = mx_wal_next_lsn(s->wal) - 1;
    mx_buf b;
    mx_buf_init(&b, 0);
    if (mx_snapshot_encode(r, lsn, &b)) {
        mx_buf_free(&b);
        return MX_ENOMEM;
    }
    char name[MX_ROOM_ID_MAX + 8], err[300];
    snap_name(r, name, sizeof(name));
    int rc = mx_atomic_write(s->snapdir, name, MX_SNAPSHOT_MAGIC, mx_buf_data(&b), b.len, err, sizeof(err));
    size_t len = b.len;
    mx_buf_free(&b);
    if (rc) {
        mx_err("event=snapshot_failed room=%s error=\"%s\"", r->id, err);
        return rc;
    }
    s->st.snapshots_written++;
    s->st.snapshot_bytes += len;
    if (!r->disk_snap_lsn)
        s->st.rooms_on_disk++;
    r->disk_first_lsn = 0;
    r->disk_records = 0;
    r->disk_snap_lsn = lsn;
    unqueue_due(s, r);
    return 0;
}

/* Snapshots need every record they cover to be durable first. */
static int ready_for_snapshots(struct wal_st *s)
{
    if (s->failed || mx_wal_pending_bytes(s->wal))
        return 0;
    return mx_wal_sync(s->wal) == 0;
}

static uint64_t snapshot_all_dirty(struct wal_st *s, mx_map *rooms, uint64_t limit);
static uint64_t pending_keep(const struct wal_st *s, uint64_t limit);
static int flush_done(struct wal_st *s);
static void pending_free_all(struct wal_st *s);

static void st_after_commit(void *ctx, mx_map *rooms)
{
    struct wal_st *s = ctx;
    /* over wal_max_bytes (or, after a checkpoint that could not get under
     * it, over the size it left plus a quarter of the bound) */
    uint64_t bound = s->cfg->wal_max_bytes > s->checkpoint_floor ? s->cfg->wal_max_bytes : s->checkpoint_floor;
    int need_checkpoint = mx_wal_disk_bytes(s->wal) > bound;
    if (!s->ndue && !need_checkpoint)
        return;
    if (!ready_for_snapshots(s))
        return;
    while (s->ndue)
        if (write_snapshot(s, s->due[s->ndue - 1]))
            return;
    if (!need_checkpoint)
        return;
    /* WAL over its bound: snapshot every dirty room, then drop the
     * segments no remaining record needs. */
    uint64_t keep = snapshot_all_dirty(s, rooms, mx_wal_next_lsn(s->wal));
    keep = pending_keep(s, keep); /* rooms not rebuilt since start-up */
    int n = mx_wal_remove_before(s->wal, keep);
    uint64_t left = mx_wal_disk_bytes(s->wal);
    mx_info("event=checkpoint segments_removed=%d wal_bytes=%llu", n, (unsigned long long)left);
    if (left > s->cfg->wal_max_bytes) {
        /* something pins old records (a room not rebuilt yet, or one that
         * cannot be): do not checkpoint again on every commit */
        s->checkpoint_floor = left + s->cfg->wal_max_bytes / 4;
        mx_warn("event=checkpoint_pinned wal_bytes=%llu wal_max_bytes=%llu keep_lsn=%llu "
                "note=\"records of a room not rebuilt yet (or unrecoverable) are kept; next "
                "checkpoint past %llu bytes\"",
                (unsigned long long)left, (unsigned long long)s->cfg->wal_max_bytes,
                (unsigned long long)keep, (unsigned long long)s->checkpoint_floor);
    } else {
        s->checkpoint_floor = 0;
    }
}

/* Snapshot every dirty room of rooms[0..n) as one batch (the WAL must be
 * synced: ready_for_snapshots). Returns how many, from the first on, are
 * now loadable from disk. */
static size_t snapshot_batch(struct wal_st *s, struct mx_room **rooms, size_t n)
{
    uint64_t lsn = mx_wal_next_lsn(s->wal) - 1;
    char **names = calloc(n, sizeof(char *));
    const void **payloads = calloc(n, sizeof(void *));
    size_t *lens = calloc(n, sizeof(size_t));
    mx_buf *bufs = calloc(n, sizeof(mx_buf));
    size_t ndirty = 0, ok = 0;
    if (!names || !payloads || !lens || !bufs)
        goto out;
    /* dirty rooms need a snapshot; clean ones are loadable already */
    size_t upto = 0;
    for (; upto < n; upto++) {
        struct mx_room *r = rooms[upto];
        if (!r->disk_first_lsn && !r->disk_records)
            continue;
        mx_buf_init(&bufs[ndirty], 0);
        names[ndirty] = malloc(MX_ROOM_ID_MAX + 8);
        if (!names[ndirty] || mx_snapshot_encode(r, lsn, &bufs[ndirty])) {
            mx_buf_free(&bufs[ndirty]);
            free(names[ndirty]);
            names[ndirty] = NULL;
            break;
        }
        snap_name(r, names[ndirty], MX_ROOM_ID_MAX + 8);
        payloads[ndirty] = mx_buf_data(&bufs[ndirty]);
        lens[ndirty] = bufs[ndirty].len;
        ndirty++;
    }
    char err[300];
    size_t written = ndirty ? (size_t)mx_atomic_write_many(s->snapdir, ndirty, names, MX_SNAPSHOT_MAGIC,
                                                           payloads, lens, err, sizeof(err))
                            : 0;
    size_t d = 0;
    for (; ok < upto; ok++) {
        struct mx_room *r = rooms[ok];
        if (!r->disk_first_lsn && !r->disk_records) {
            unqueue_due(s, r);
            continue;
        }
        if (d >= written)
            break;
        s->st.snapshots_written++;
        s->st.snapshot_bytes += lens[d];
        if (!r->disk_snap_lsn)
            s->st.rooms_on_disk++;
        r->disk_first_lsn = 0;
        r->disk_records = 0;
        r->disk_snap_lsn = lsn;
        unqueue_due(s, r);
        d++;
    }
out:
    for (size_t i = 0; bufs && i < ndirty; i++) {
        mx_buf_free(&bufs[i]);
        free(names[i]);
    }
    free(names);
    free(payloads);
    free(lens);
    free(bufs);
    return ok;
}

static size_t st_evict(void *ctx, struct mx_room **rooms, size_t n)
{
    struct wal_st *s = ctx;
    return ready_for_snapshots(s) ? snapshot_batch(s, rooms, n) : 0;
}

/* Snapshot every dirty room in the map, in batches. Returns the lowest
 * disk_first_lsn left among rooms that could not be written (or limit). */
static uint64_t snapshot_all_dirty(struct wal_st *s, mx_map *rooms, uint64_t limit)
{
    enum { BATCH = 512 };
    struct mx_room *batch[BATCH];
    size_t n = 0, it = 0, len;
    const char *key;
    void *val;
    uint64_t keep = limit;
    for (int more = 1; more;) {
        more = mx_map_next(rooms, &it, &key, &len, &val);
        if (more && ((struct mx_room *)val)->disk_first_lsn)
            batch[n++] = val;
        if (n == BATCH || (!more && n)) {
            size_t done = snapshot_batch(s, batch, n);
            for (size_t i = done; i < n; i++)
                if (batch[i]->disk_first_lsn && batch[i]->disk_first_lsn < keep)
                    keep = batch[i]->disk_first_lsn;
            n = 0;
        }
    }
    return keep;
}

struct pending;
static int pending_replay(struct wal_st *s, struct pending *pe, uint64_t deadline_us);
static void pending_consume(struct wal_st *s, struct pending *pe);
static struct mx_room *pending_take(struct wal_st *s, struct pending *pe);

static int load_snapshot(struct wal_st *s, const char *id, size_t len, struct mx_room **out);

static int st_load(void *ctx, const char *id, size_t len, struct mx_room **out)
{
    struct wal_st *s = ctx;
    struct pending *pe = s->pending ? mx_map_get(s->pending, id, len) : NULL;
    if (pe) {
        /* not rebuilt since start-up: do it now */
        int k = pending_replay(s, pe, 0);
        if (k == -2)
            return MX_EUNAVAILABLE;
        if (k < 0)
            return MX_EINTERNAL;
        *out = pending_take(s, pe);
        return 0;
    }
    return load_snapshot(s, id, len, out);
}

static int load_snapshot(struct wal_st *s, const char *id, size_t len, struct mx_room **out)
{
    char name[MX_ROOM_ID_MAX + 8], err[300];
    snprintf(name, sizeof(name), "%.*s.snap", (int)len, id);
    /* deleted, its snapshot not yet unlinked (waits for the next flush) */
    for (size_t i = 0; i < s->nunlink; i++)
        if (!strcmp(s->unlink_after_flush[i], name))
            return MX_ENO_SUCH_ROOM;
    void *p = NULL;
    size_t plen = 0;
    int rc = mx_atomic_read(s->snapdir, name, MX_SNAPSHOT_MAGIC, &p, &plen, err, sizeof(err));
    if (rc == MX_ENO_SUCH_ROOM)
        return rc;
    if (rc == MX_EUNAVAILABLE || rc == MX_ENOMEM) {
        mx_warn("event=snapshot_read_deferred file=%s/%s error=\"%s\"", s->snapdir, name, err);
        return MX_EUNAVAILABLE; /* transient: the caller tries again */
    }
    if (rc) {
        mx_err("event=snapshot_unreadable file=%s/%s error=\"%s\"", s->snapdir, name, err);
        return MX_EINTERNAL;
    }
    uint64_t lsn;
    rc = mx_snapshot_decode(p, plen, s->cfg, out, &lsn, err, sizeof(err));
    free(p);
    if (rc == MX_ENOMEM) {
        mx_warn("event=snapshot_read_deferred file=%s/%s error=\"out of memory\"", s->snapdir, name);
        return MX_EUNAVAILABLE;
    }
    if (rc) {
        mx_err("event=snapshot_invalid file=%s/%s error=\"%s\"", s->snapdir, name, err);
        return MX_EINTERNAL;
    }
    (*out)->disk_snap_lsn = lsn;
    return 0;
}

static void st_stats(void *ctx, struct mx_storage_stats *out)
{
    struct wal_st *s = ctx;
    *out = s->st;
    out->rooms_on_disk += s->pending_nosnap; /* created in the WAL tail, not rebuilt yet */
    out->rooms_unreplayed = s->pending_rooms;
    out->wal_bytes = mx_wal_disk_bytes(s->wal);
    out->fsyncs = mx_wal_fsyncs(s->wal);
    out->failed = s->failed;
}

static void st_close(void *ctx, mx_map *rooms)
{
    struct wal_st *s = ctx;
    if (rooms && st_flush(s) == 0 && ready_for_snapshots(s)) {
        snapshot_all_dirty(s, rooms, 0);
        if (s->pending)
            flush_done(s); /* rooms not rebuilt yet keep their WAL records */
    }
    if (s->pending || s->rd)
        pending_free_all(s);
    mx_wal_close(s->wal);
    for (size_t i = 0; i < s->nunlink; i++)
        free(s->unlink_after_flush[i]);
    free(s->unlink_after_flush);
    free(s->due);
    mx_buf_free(&s->rec);
    if (s->lockfd >= 0)
        close(s->lockfd);
    free(s);
}

/* ---- recovery ----
 *
 * Start-up reads every WAL record once: the reader checks its framing and
 * CRC, and the scan checks each room's chain of logged checksums (every
 * action's seq follows the one before and its `prev` is the checksum the
 * record before it logged). Records are not applied then: each room's
 * records are indexed (pointers into the segments, which stay mapped), and
 * the room is rebuilt (snapshot + its records, with the final state's digest
 * compared to the last logged checksum) when it is first needed, or earlier
 * by the background pass (st_background), which rebuilds rooms a slice at
 * a time between client messages and snapshots them in batches. A room that
 * is not rebuilt yet keeps its records: checkpoints never remove a segment
 * one of them needs.
 */

struct prec {
    const uint8_t *p;
    uint32_t len;
    uint64_t lsn;
};

enum { P_WAITING, P_DONE, P_GONE };

struct pending {
    struct prec *recs;
    size_t n, cap, next;    /* next: replay cursor */
    struct mx_room *room;   /* being rebuilt, or rebuilt (P_DONE) */
    uint64_t first_lsn;     /* the WAL must keep everything from here */
    int state, has_snap, broken;
    int linked;             /* last_seq/last_sum are known */
    uint64_t last_seq;
    uint8_t last_sum[MX_DIGEST_LEN];
    size_t idlen;
    char id[];
};

struct scan {
    struct wal_st *s;
    mx_map *snaps;  /* ids with a snapshot file at start-up */
    uint64_t records, deleted;
    char *err;
    size_t errlen;
};

#define SFAIL(...)                                                             \
    do {                                                                       \
        snprintf(sc->err, sc->errlen, __VA_ARGS__);                            \
        return -1;                                                             \
    } while (0)

static struct pending *pending_get(struct scan *sc, const char *id, size_t len)
{
    struct wal_st *s = sc->s;
    struct pending *pe = mx_map_get(s->pending, id, len);
    if (pe)
        return pe;
    pe = calloc(1, sizeof(*pe) + len + 1);
    if (!pe)
        return NULL;
    memcpy(pe->id, id, len);
    pe->idlen = len;
    pe->has_snap = mx_map_get(sc->snaps, id, len) != NULL;
    if (s->npq == s->cappq) {
        size_t ncap = s->cappq ? s->cappq * 2 : 256;
        struct pending **n = realloc(s->pq, ncap * sizeof(*n));
        if (!n) {
            free(pe);
            return NULL;
        }
        s->pq = n;
        s->cappq = ncap;
    }
    if (mx_map_put(s->pending, id, len, pe)) {
        free(pe);
        return NULL;
    }
    s->pq[s->npq++] = pe;
    return pe;
}

static void pending_clear(struct pending *pe)
{
    free(pe->recs);
    pe->recs = NULL;
    pe->n = pe->cap = pe->next = 0;
    pe->first_lsn = 0;
    pe->linked = 0;
}

/* The LSN a snapshot file covers (read in full: only for deletes). */
static int snapshot_lsn(struct wal_st *s, const char *id, size_t len, uint64_t *lsn);

/* One record of the start-up scan: check it and index it under its room. */
static int scan_record(struct scan *sc, const uint8_t *payload, size_t plen, uint64_t lsn)
{
    struct wal_st *s = sc->s;
    mx_cursor c = mx_cursor_of(payload, plen);
    uint8_t type = mx_get_u8(&c);
    size_t idlen;
    const char *id = mx_get_bytes(&c, &idlen);
    if (c.bad || !mx_proto_room_type_len(id, idlen) || idlen > MX_ROOM_ID_MAX)
        SFAIL("WAL record %llu: bad header", (unsigned long long)lsn);
    if (type < REC_CREATE || type > REC_DELETE)
        SFAIL("WAL record %llu: unknown type %u", (unsigned long long)lsn, type);
    struct pending *pe = pending_get(sc, id, idlen);
    if (!pe)
        SFAIL("out of memory indexing the WAL (record %llu)", (unsigned long long)lsn);
    sc->records++;
    if (type == REC_DELETE) {
        if (pe->has_snap) {
            uint64_t snap = 0;
            char path[2400];
            snprintf(path, sizeof(path), "%s/%.*s.snap", s->snapdir, (int)idlen, id);
            int src = snapshot_lsn(s, id, idlen, &snap);
            if (src == MX_EUNAVAILABLE)
                SFAIL("WAL record %llu: room %.*s: its snapshot cannot be read now (out of "
                      "descriptors or memory)",
                      (unsigned long long)lsn, (int)idlen, id);
            if (src) {
                /* Damaged: of the deleted room, or of a later incarnation
                 * whose records (from its create, which follows this
                 * delete) are all in the WAL: neither needs it.
                 * Kept aside for the operator. */
                int e = set_aside_snapshot(s, id, idlen);
                if (e)
                    SFAIL("WAL record %llu: room %.*s: its damaged snapshot cannot be moved aside: %s",
                          (unsigned long long)lsn, (int)idlen, id, strerror(e));
                pe->has_snap = 0;
                mx_map_del(sc->snaps, id, idlen);
                pending_clear(pe);
                sc->deleted++;
                return 0;
            }
            if (snap >= lsn) {
                /* the snapshot is of a later incarnation: everything up to
                 * here is history it replaces */
                pending_clear(pe);
                return 0;
            }
            if (unlink(path) == 0) {
                sync_dir(s->snapdir);
                if (s->st.rooms_on_disk)
                    s->st.rooms_on_disk--;
            }
            pe->has_snap = 0;
            mx_map_del(sc->snaps, id, idlen);
        }
        pending_clear(pe);
        sc->deleted++;
        return 0;
    }
    if (type == REC_CREATE) {
        /* a create after records of the same incarnation is impossible */
        if (pe->n)
            SFAIL("WAL record %llu: create of existing room %.*s", (unsigned long long)lsn,
                  (int)idlen, id);
        pe->linked = 0;
    } else if (type == REC_ACTION) {
        uint64_t seq = mx_get_u64(&c);
        uint8_t prev[MX_DIGEST_LEN], sum[MX_DIGEST_LEN];
        mx_get_raw(&c, prev, MX_DIGEST_LEN);
        mx_get_raw(&c, sum, MX_DIGEST_LEN);
        if (c.bad)
            SFAIL("WAL record %llu: truncated action", (unsigned long long)lsn);
        if (pe->linked && seq != pe->last_seq + 1)
            SFAIL("WAL record %llu: room %.*s: seq %llu does not follow seq %llu",
                  (unsigned long long)lsn, (int)idlen, id, (unsigned long long)seq,
                  (unsigned long long)pe->last_seq);
        if (pe->linked && memcmp(prev, pe->last_sum, MX_DIGEST_LEN) != 0)
            SFAIL("WAL record %llu: room %.*s: seq %llu: its prev checksum is not the checksum "
                  "logged for seq %llu (broken chain)",
                  (unsigned long long)lsn, (int)idlen, id, (unsigned long long)seq,
                  (unsigned long long)pe->last_seq);
        memcpy(pe->last_sum, sum, MX_DIGEST_LEN);
        pe->last_seq = seq;
        pe->linked = 1;
    }
    if (pe->n == pe->cap) {
        size_t ncap = pe->cap ? pe->cap * 2 : 8;
        struct prec *n = realloc(pe->recs, ncap * sizeof(*n));
        if (!n)
            SFAIL("out of memory indexing the WAL (record %llu)", (unsigned long long)lsn);
        pe->recs = n;
        pe->cap = ncap;
    }
    pe->recs[pe->n++] = (struct prec){payload, (uint32_t)plen, lsn};
    if (!pe->first_lsn)
        pe->first_lsn = lsn;
    return 0;
}

#define RFAIL(...)                                                             \
    do {                                                                       \
        snprintf(err, errlen, __VA_ARGS__);                                    \
        return -1;                                                             \
    } while (0)

/* Apply one indexed record to pe->room (records its snapshot covers are
 * skipped). 0, or -1 with err. */
static int replay_record(struct wal_st *s, struct pending *pe, const struct prec *pr, char *err,
                         size_t errlen)
{
    mx_cursor c = mx_cursor_of(pr->p, pr->len);
    uint8_t type = mx_get_u8(&c);
    size_t idlen;
    const char *id = mx_get_bytes(&c, &idlen);
    uint64_t lsn = pr->lsn;
    struct mx_room *r = pe->room;
    if (r && lsn <= r->disk_snap_lsn) {
        s->st.recovery_records_skipped++;
        return 0; /* its snapshot already holds it */
    }
    if (type == REC_CREATE) {
        if (r)
            RFAIL("WAL record %llu: create of existing room", (unsigned long long)lsn);
        size_t slen;
        const char *stext = mx_get_bytes(&c, &slen);
        json_t *j = c.bad ? NULL : json_loadb(stext, slen, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
        mx_val *state = j ? mx_json_from_jansson(j, 0, NULL) : NULL;
        json_decref(j);
        if (!state)
            RFAIL("WAL record %llu: bad initial state", (unsigned long long)lsn);
        size_t typelen = mx_proto_room_type_len(id, idlen);
        char tname[MX_ROOM_TYPE_MAX + 1];
        memcpy(tname, id, typelen);
        tname[typelen] = '\0';
        int e;
        r = mx_room_new(id, idlen, mx_config_room_type(s->cfg, tname, typelen), state,
                        s->cfg->dedup_window, &e);
        if (!r)
            RFAIL("WAL record %llu: cannot rebuild the room", (unsigned long long)lsn);
        pe->room = r;
    } else if (!r) {
        RFAIL("WAL record %llu: the room has no create record or snapshot", (unsigned long long)lsn);
    } else if (type == REC_ACTION) {
        uint64_t seq = mx_get_u64(&c);
        uint8_t prev[MX_DIGEST_LEN], sum[MX_DIGEST_LEN];
        mx_get_raw(&c, prev, MX_DIGEST_LEN);
        mx_get_raw(&c, sum, MX_DIGEST_LEN);
        size_t clen, elen;
        const char *client = mx_get_bytes(&c, &clen);
        uint64_t n = mx_get_u64(&c);
        const char *entry = mx_get_bytes(&c, &elen);
        if (c.bad)
            RFAIL("WAL record %llu: truncated action", (unsigned long long)lsn);
        char why[300];
        if (mx_room_replay(r, seq, prev, sum, client, clen, n, entry, elen, 0, why, sizeof(why)))
            RFAIL("WAL record %llu: %s", (unsigned long long)lsn, why);
    } else if (type == REC_REJECT) {
        size_t clen, mlen;
        const char *client = mx_get_bytes(&c, &clen);
        struct mx_outcome o;
        memset(&o, 0, sizeof(o));
        o.kind = MX_OUTCOME_REJECT;
        o.n = mx_get_u64(&c);
        o.code = (int)mx_get_u32(&c);
        o.seq = mx_get_u64(&c);
        mx_get_raw(&c, o.checksum, MX_DIGEST_LEN);
        const char *m = mx_get_bytes(&c, &mlen);
        if (c.bad)
            RFAIL("WAL record %llu: truncated reject", (unsigned long long)lsn);
        char msg[256];
        snprintf(msg, sizeof(msg), "%.*s", (int)mlen, m ? m : "");
        o.message = msg;
        if (mx_dedup_record(r->dedup, client, clen, &o))
            RFAIL("WAL record %llu: reject n=%llu is not above the client's highest n",
                  (unsigned long long)lsn, (unsigned long long)o.n);
    } else {
        RFAIL("WAL record %llu: unknown type %u", (unsigned long long)lsn, type);
    }
    s->st.recovery_records_replayed++;
    if (!r->disk_first_lsn)
        r->disk_first_lsn = lsn;
    r->disk_records++;
    return 0;
}

static int load_snapshot(struct wal_st *s, const char *id, size_t len, struct mx_room **out);

/* Rebuild pe->room: its snapshot, then its records, until deadline_us
 * (mx_now_us; 0 = no limit). 1 when rebuilt and verified, 0 when the time
 * ran out (call again), -1 when the room cannot be rebuilt (logged; it is
 * marked broken and its records stay in the WAL), -2 when its snapshot
 * cannot be read now (out of descriptors or memory; nothing changed). */
static int pending_replay(struct wal_st *s, struct pending *pe, uint64_t deadline_us)
{
    if (pe->broken)
        return -1;
    char err[600];
    if (pe->state == P_DONE)
        return 1;
    if (!pe->room && pe->next == 0 && pe->has_snap) {
        int rc = load_snapshot(s, pe->id, pe->idlen, &pe->room);
        if (rc == MX_EUNAVAILABLE)
            return -2; /* nothing changed: try again later */
        if (rc && pe->n && pe->recs[0].p[0] == REC_CREATE) {
            /* the WAL still holds the room's whole life: rebuild from it */
            mx_warn("event=snapshot_ignored room=%.*s note=\"rebuilt from its WAL records, which "
                    "start at its create record\"",
                    (int)pe->idlen, pe->id);
            /* counted at start-up; counted again when its new one is written */
            if (s->st.rooms_on_disk)
                s->st.rooms_on_disk--;
        } else if (rc) {
            snprintf(err, sizeof(err), "its snapshot cannot be loaded (%s)", mx_err_code(rc));
            goto broken;
        }
    }
    while (pe->next < pe->n) {
        if (replay_record(s, pe, &pe->recs[pe->next], err, sizeof(err)))
            goto broken;
        pe->next++;
        if (deadline_us && (pe->next & 63) == 0 && pe->next < pe->n && mx_now_us() >= deadline_us)
            return 0;
    }
    struct mx_room *r = pe->room;
    if (!r) {
        snprintf(err, sizeof(err), "no create record and no snapshot");
        goto broken;
    }
    /* the recomputed state must be the one its last record says (the
     * chain of logged checksums was checked by the scan) */
    uint8_t got[MX_DIGEST_LEN];
    if (r->disk_records && (mx_digest_of(r->state, got) || memcmp(got, r->checksum, MX_DIGEST_LEN) != 0)) {
        snprintf(err, sizeof(err),
                 "the state rebuilt from the WAL does not match the checksum of its last record (seq %llu)",
                 (unsigned long long)r->seq);
        goto broken;
    }
    pe->state = P_DONE;
    s->rebuilt_rooms++;
    return 1;
broken:
    mx_err("event=room_unrecoverable room=%.*s error=\"%s\" note=\"the room is refused with "
           "`internal`; its WAL records are kept\"",
           (int)pe->idlen, pe->id, err);
    pe->broken = 1;
    s->st.rooms_unrecoverable++;
    mx_room_free(pe->room);
    pe->room = NULL;
    return -1;
}

/* The room is in memory now (handed to the engine) or snapshotted: forget
 * its index entry. The entry itself stays in s->pq until recovery ends. */
static void pending_consume(struct wal_st *s, struct pending *pe)
{
    mx_map_del(s->pending, pe->id, pe->idlen);
    if (!pe->has_snap && s->pending_nosnap)
        s->pending_nosnap--;
    pending_clear(pe);
    pe->room = NULL;
    pe->state = P_GONE;
    if (s->pending_rooms)
        s->pending_rooms--;
}

/* Delete a room marked unrecoverable: a DELETE record (its records before
 * it are then history, dropped by the next start's scan), the damaged
 * snapshot moved aside as NAME.snap.damaged, the index entry gone (it no
 * longer pins the WAL). */
static int st_drop_unrecoverable(void *ctx, const char *id, size_t len)
{
    struct wal_st *s = ctx;
    struct pending *pe = s->pending ? mx_map_get(s->pending, id, len) : NULL;
    if (!pe || !pe->broken)
        return MX_ENO_SUCH_ROOM;
    mx_buf_reset(&s->rec);
    mx_put_u8(&s->rec, (uint8_t)REC_DELETE);
    mx_put_bytes(&s->rec, id, len);
    if (s->rec.oom)
        return MX_ENOMEM;
    if (mx_wal_reserve(s->wal, s->rec.len))
        return MX_EUNAVAILABLE;
    if (!mx_wal_append(s->wal, mx_buf_data(&s->rec), s->rec.len))
        return MX_ENOMEM;
    if (pe->has_snap)
        set_aside_snapshot(s, id, len); /* a failure leaves the file: logged at load */
    pe->broken = 0;
    if (s->st.rooms_unrecoverable)
        s->st.rooms_unrecoverable--;
    pending_consume(s, pe);
    return 0;
}

/* Hand a rebuilt room over to the engine. */
static struct mx_room *pending_take(struct wal_st *s, struct pending *pe)
{
    struct mx_room *r = pe->room;
    pe->room = NULL;
    pending_consume(s, pe);
    return r;
}

static int snapshot_lsn(struct wal_st *s, const char *id, size_t len, uint64_t *lsn)
{
    struct mx_room *r = NULL;
    int rc = load_snapshot(s, id, len, &r);
    if (rc)
        return rc;
    *lsn = r->disk_snap_lsn;
    mx_room_free(r);
    return 0;
}

/* Lowest LSN a room not rebuilt yet needs (limit when none). */
static uint64_t pending_keep(const struct wal_st *s, uint64_t limit)
{
    for (size_t i = 0; i < s->npq; i++) {
        const struct pending *pe = s->pq[i];
        if (pe->state == P_GONE || !pe->first_lsn)
            continue;
        if (pe->state == P_DONE && pe->room && !pe->room->disk_first_lsn)
            continue; /* rebuilt from its snapshot alone */
        if (pe->first_lsn < limit)
            limit = pe->first_lsn;
    }
    return limit;
}

static void pending_free_all(struct wal_st *s)
{
    for (size_t i = 0; i < s->npq; i++) {
        pending_clear(s->pq[i]);
        mx_room_free(s->pq[i]->room);
        free(s->pq[i]);
    }
    free(s->pq);
    s->pq = NULL;
    s->npq = s->cappq = s->pqpos = 0;
    free(s->done);
    s->done = NULL;
    s->ndone = 0;
    mx_map_free(s->pending, NULL);
    s->pending = NULL;
    mx_wal_reader_close(s->rd);
    s->rd = NULL;
}

/* Snapshot the rebuilt rooms waiting in s->done (one batch). 1 when none
 * is left waiting. */
enum { DONE_BATCH = 256 };

static int flush_done(struct wal_st *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->ndone; i++)
        if (s->done[i]->state == P_DONE)
            s->done[n++] = s->done[i];
    s->ndone = n;
    if (!n)
        return 1;
    if (!ready_for_snapshots(s))
        return 0;
    /* a batch is written all or nothing: after a failure (a nearly full
     * disk) try smaller ones, so what fits still goes */
    if (!s->bg_batch)
        s->bg_batch = DONE_BATCH;
    size_t m = n < s->bg_batch ? n : s->bg_batch;
    struct mx_room **rooms = malloc(m * sizeof(*rooms));
    if (!rooms)
        return 0;
    for (size_t i = 0; i < m; i++)
        rooms[i] = s->done[i]->room;
    size_t ok = snapshot_batch(s, rooms, m);
    free(rooms);
    if (ok < m)
        s->bg_batch = s->bg_batch > 1 ? s->bg_batch / 2 : 1;
    else if (s->bg_batch < DONE_BATCH)
        s->bg_batch *= 2;
    for (size_t i = 0; i < ok; i++) {
        struct pending *pe = s->done[i];
        struct mx_room *r = pe->room;
        pending_consume(s, pe);
        mx_room_free(r);
    }
    memmove(s->done, s->done + ok, (n - ok) * sizeof(*s->done));
    s->ndone = n - ok;
    return s->ndone == 0;
}

static int st_background(void *ctx, uint64_t budget_us)
{
    struct wal_st *s = ctx;
    if (!s->pending || s->recovery_done)
        return 0;
    if (s->failed)
        return 2; /* the tick retries the disk; nothing can be snapshotted now */
    uint64_t deadline = mx_now_us() + (budget_us ? budget_us : 1);
    while (s->pqpos < s->npq) {
        if (s->ndone >= DONE_BATCH && !flush_done(s))
            return 2;
        struct pending *pe = s->pq[s->pqpos];
        if (pe->state != P_WAITING || pe->broken) {
            s->pqpos++;
            continue;
        }
        int k = pending_replay(s, pe, deadline);
        if (k == 0)
            return 1;
        if (k == -2)
            return 2; /* a transient failure (descriptors, memory): in a second */
        s->pqpos++;
        if (k > 0)
            s->done[s->ndone++] = pe;
        if (mx_now_us() >= deadline)
            return 1;
    }
    if (!flush_done(s))
        return 2;
    uint64_t broken = s->st.rooms_unrecoverable;
    s->recovery_done = 1;
    mx_info("event=recovery_complete rooms_rebuilt=%llu records_replayed=%llu records_in_snapshots=%llu "
            "rooms_unrecoverable=%llu seconds=%.3f",
            (unsigned long long)s->rebuilt_rooms, (unsigned long long)s->st.recovery_records_replayed,
            (unsigned long long)s->st.recovery_records_skipped, (unsigned long long)broken,
            (double)(mx_now_us() - s->recovery_start_us) / 1e6);
    if (!broken) {
        pending_free_all(s);
    } else {
        /* broken rooms keep their entries (refused, records kept); the
         * mapped segments are no longer read */
        mx_wal_reader_close(s->rd);
        s->rd = NULL;
    }
    s->pqpos = s->npq;
    return 0;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void free_room(void *r) { mx_room_free(r); }

int mx_storage_wal_open(const struct mx_config *cfg, const struct mx_storage **out, mx_map **rooms,
                        char *err, size_t errlen)
{
    struct wal_st *s = calloc(1, sizeof(*s));
    mx_map *map = mx_map_new();
    mx_wal_reader *rd = NULL;
    mx_map *snaps = NULL;
    if (!s || !map) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->lockfd = -1;
    s->cfg = cfg;
    mx_buf_init(&s->rec, 0);
    snprintf(s->waldir, sizeof(s->waldir), "%s/wal", cfg->data_dir);
    snprintf(s->snapdir, sizeof(s->snapdir), "%s/rooms", cfg->data_dir);
    if (make_dir(cfg->data_dir, err, errlen) || make_dir(s->waldir, err, errlen) ||
        make_dir(s->snapdir, err, errlen))
        goto fail;
    char lockpath[1100];
    snprintf(lockpath, sizeof(lockpath), "%s/LOCK", cfg->data_dir);
    s->lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lockfd < 0 || flock(s->lockfd, LOCK_EX | LOCK_NB)) {
        snprintf(err, errlen, "%s: %s", lockpath,
                 s->lockfd < 0 ? strerror(errno) : "another movexd is using this data directory");
        goto fail;
    }

    s->recovery_start_us = mx_now_us();
    snaps = mx_map_new();
    s->pending = mx_map_new();
    if (!snaps || !s->pending) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    DIR *dh = opendir(s->snapdir);
    if (dh) {
        struct dirent *de;
        while ((de = readdir(dh))) {
            size_t l = strlen(de->d_name);
            if (l > 5 && !strcmp(de->d_name + l - 5, ".snap")) {
                s->st.rooms_on_disk++;
                if (mx_map_put(snaps, de->d_name, l - 5, s)) {
                    closedir(dh);
                    snprintf(err, errlen, "out of memory");
                    goto fail;
                }
            }
        }
        closedir(dh);
    }
    if (mx_wal_reader_open(&rd, s->waldir, err, errlen))
        goto fail;
    mx_wal_reader_keep_maps(rd);
    struct scan sc = {.s = s, .snaps = snaps, .err = err, .errlen = errlen};
    const void *payload;
    size_t plen;
    uint64_t lsn;
    int r;
    while ((r = mx_wal_reader_next(rd, &payload, &plen, &lsn, err, errlen)) == 1) {
        if (scan_record(&sc, payload, plen, lsn))
            goto fail;
    }
    if (r < 0)
        goto fail;
    if (!mx_wal_reader_keep_maps_ok(rd)) {
        snprintf(err, errlen, "out of memory keeping the WAL segments mapped");
        goto fail;
    }
    /* entries left without records (deleted, or covered by a later
     * snapshot) need nothing: such rooms load from their snapshot */
    {
        size_t keep = 0;
        for (size_t i = 0; i < s->npq; i++) {
            struct pending *pe = s->pq[i];
            if (!pe->n) {
                mx_map_del(s->pending, pe->id, pe->idlen);
                free(pe);
                continue;
            }
            s->pq[keep++] = pe;
            s->pending_rooms++;
            if (!pe->has_snap)
                s->pending_nosnap++;
        }
        s->npq = keep;
    }
    mx_map_free(snaps, NULL);
    snaps = NULL;
    const char *tfile;
    uint64_t toff;
    if (mx_wal_reader_torn(rd, &tfile, &toff)) {
        mx_warn("event=wal_torn_tail file=%s offset=%llu note=\"a record cut by a crash was dropped; it was never acknowledged\"",
                tfile, (unsigned long long)toff);
        if (mx_wal_reader_truncate_tail(rd, err, errlen))
            goto fail;
    }
    /* the records just read may still be only in the page cache (a crash
     * of a daemon running fsync no/everysec): make them durable before
     * snapshots or new records build on them */
    if (mx_wal_reader_sync(rd, err, errlen))
        goto fail;
    uint64_t next = mx_wal_reader_next_lsn(rd);
    if (s->npq) {
        s->rd = rd; /* the index points into its mapped segments */
        rd = NULL;
        s->done = malloc(DONE_BATCH * sizeof(*s->done));
        if (!s->done) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    } else {
        mx_wal_reader_close(rd);
        mx_map_free(s->pending, NULL);
        s->pending = NULL;
        free(s->pq);
        s->pq = NULL;
        s->cappq = 0;
    }
    rd = NULL;
    struct mx_wal_opts o = {.dir = s->waldir, .fsync = cfg->fsync, .segment_bytes = cfg->wal_segment_bytes};
    if (mx_wal_open(&s->wal, &o, next, err, errlen))
        goto fail;
    mx_info("event=recovered rooms_to_rebuild=%llu records_indexed=%llu rooms_deleted=%llu "
            "rooms_on_disk=%llu next_lsn=%llu seconds=%.3f",
            (unsigned long long)s->pending_rooms, (unsigned long long)sc.records,
            (unsigned long long)sc.deleted, (unsigned long long)s->st.rooms_on_disk,
            (unsigned long long)next, (double)(mx_now_us() - s->recovery_start_us) / 1e6);
    s->iface = (struct mx_storage){
        .ctx = s,
        .name = "wal",
        .reserve = st_reserve,
        .room_created = st_room_created,
        .action = st_action,
        .reject = st_reject,
        .room_deleted = st_room_deleted,
        .drop_unrecoverable = st_drop_unrecoverable,
        .flush = st_flush,
        .load = st_load,
        .evict = st_evict,
        .after_commit = st_after_commit,
        .tick = st_tick,
        .stats = st_stats,
        .background = st_background,
        .close = st_close,
    };
    *out = &s->iface;
    *rooms = map;
    return 0;
fail:
    if (rd)
        mx_wal_reader_close(rd);
    if (map)
        mx_map_free(map, free_room);
    if (snaps)
        mx_map_free(snaps, NULL);
    if (s) {
        if (s->pending || s->rd)
            pending_free_all(s);
        free(s->done);
        mx_buf_free(&s->rec);
        if (s->lockfd >= 0)
            close(s->lockfd);
        free(s);
    }
    return -1;
}
