/* storage_wal.c - durable storage: the write-ahead log plus per-room
 * snapshots, behind the storage seam (storage.h) - the run-time side:
 * records appended, flushed and synced, snapshots and checkpoints written.
 * Start-up (indexing the WAL, rebuilding rooms) is recovery.c; both share
 * struct mx_walstore (storage_wal.h).
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
 *    that no snapshot covers (rooms leave memory only with a snapshot);
 *  - a deleted room's snapshot is unlinked after the flush that makes its
 *    DELETE record durable; while it is still on disk (the unlink failed:
 *    it stays queued and is retried after every flush) no segment at or
 *    after that DELETE record is removed, by trimming or a checkpoint
 *    (unlink_keep), or the next start-up would load the room again. A new
 *    snapshot under the same name (the room made again) replaces the file
 *    and ends the retries (drop_unlink).
 *
 * Off the loop: the snapshot a room owes after snapshot_every records is
 * encoded here, on the loop, and its file work (WAL fdatasync, wal/STATE,
 * write, fsync, rename, directory fsync) goes to the writer thread
 * (snapshot_writer.c), one job at a time; a room that comes due while one
 * is in flight waits in `due` (coalesced: the next job covers all its
 * records). While a job is in flight its room's disk_* fields still say
 * what the disk held before it (so it looks dirty and pins its segments);
 * they change only when the loop collects the finished job
 * (mx_swal_collect: after each commit, each tick, /metrics), and records
 * appended meanwhile are counted aside (job_after_*). Every other path that
 * writes snapshot files or STATE, removes segments, or frees a room waits
 * for the job first (or, eviction and checkpoints, tries again later).
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
#include "movexd/alloc.h"
#include "movexd/digest.h"
#include "movexd/dircheck.h"
#include "movexd/err.h"
#include "movexd/fault.h"
#include "movexd/log.h"
#include "movexd/metrics.h"
#include "movexd/proto.h"
#include "movexd/room.h"
#include "movexd/snapshot.h"
#include "movexd/snapshot_writer.h"
#include "movexd/storage.h"
#include "movexd/storage_wal.h"
#include "movexd/wal.h"


static void snap_name(const struct mx_room *r, char *out, size_t n)
{
    snprintf(out, n, "%s.snap", r->id);
}

/* ---- appending ---- */

static void rec_begin(struct mx_walstore *s, enum mx_rec_type t, const struct mx_room *r)
{
    mx_buf_reset(&s->rec);
    mx_put_u8(&s->rec, (uint8_t)t);
    mx_put_bytes(&s->rec, r->id, r->idlen);
}

static void queue_due(struct mx_walstore *s, struct mx_room *r)
{
    if (r->disk_due)
        return;
    if (s->ndue == s->capdue) {
        size_t ncap = s->capdue ? s->capdue * 2 : 16;
        struct mx_room **n = mx_realloc(s->due, ncap * sizeof(*n));
        if (!n)
            return; /* the checkpoint will still cover it */
        s->due = n;
        s->capdue = ncap;
    }
    s->due[s->ndue++] = r;
    r->disk_due = 1;
}

static void unqueue_due(struct mx_walstore *s, struct mx_room *r)
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

static int rec_end(struct mx_walstore *s, struct mx_room *r)
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
    if (r == s->job_room) { /* not covered by the snapshot in flight */
        if (!s->job_after_first)
            s->job_after_first = lsn;
        s->job_after_records++;
    }
    if (++r->disk_records >= s->cfg->snapshot_every)
        queue_due(s, r);
    return 0;
}

static int st_reserve(void *ctx, size_t bytes)
{
    struct mx_walstore *s = ctx;
    if (s->failed)
        return MX_EUNAVAILABLE;
    if (bytes > MX_WAL_MAX_RECORD)
        return MX_ETOO_LARGE; /* no free space would help */
    return mx_wal_reserve(s->wal, bytes) ? MX_EUNAVAILABLE : 0;
}

static int st_room_created(void *ctx, struct mx_room *r)
{
    struct mx_walstore *s = ctx;
    rec_begin(s, MX_REC_CREATE, r);
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
    struct mx_walstore *s = ctx;
    rec_begin(s, MX_REC_ACTION, r);
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
    struct mx_walstore *s = ctx;
    rec_begin(s, MX_REC_REJECT, r);
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
    struct mx_walstore *s = ctx;
    if (r == s->job_room)
        mx_swal_collect(s, 1); /* the room is freed next; its file must be final */
    unqueue_due(s, r);
    rec_begin(s, MX_REC_DELETE, r);
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
    return mx_swal_queue_unlink(s, name, mx_wal_next_lsn(s->wal) - 1);
}

int mx_swal_queue_unlink(struct mx_walstore *s, const char *name, uint64_t delete_lsn)
{
    if (s->nunlink == s->capunlink) {
        size_t ncap = s->capunlink ? s->capunlink * 2 : 8;
        struct mx_unlink *n = mx_realloc(s->unlink_after_flush, ncap * sizeof(*n));
        if (!n)
            return MX_ENOMEM;
        s->unlink_after_flush = n;
        s->capunlink = ncap;
    }
    char *copy = mx_strdup(name);
    if (!copy)
        return MX_ENOMEM;
    s->unlink_after_flush[s->nunlink++] = (struct mx_unlink){copy, delete_lsn, 0};
    s->st.unlinks_pending = s->nunlink;
    return 0;
}

/* A new snapshot of the same name replaced the deleted room's file (the
 * room was made again): nothing is left to unlink, and unlinking later
 * would remove the new room's snapshot. */
static void drop_unlink(struct mx_walstore *s, const char *name)
{
    for (size_t i = 0; i < s->nunlink; i++)
        if (!strcmp(s->unlink_after_flush[i].name, name)) {
            free(s->unlink_after_flush[i].name);
            s->unlink_after_flush[i--] = s->unlink_after_flush[--s->nunlink];
        }
    s->st.unlinks_pending = s->nunlink;
}

/* The lowest LSN the WAL must keep for the deleted rooms whose snapshot is
 * still on disk: their DELETE records. Without its DELETE record a
 * left-over snapshot would bring the room back at the next start-up. */
static uint64_t unlink_keep(const struct mx_walstore *s, uint64_t keep)
{
    for (size_t i = 0; i < s->nunlink; i++)
        if (s->unlink_after_flush[i].lsn < keep)
            keep = s->unlink_after_flush[i].lsn;
    return keep;
}

void mx_swal_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Rename a damaged ROOM.snap to ROOM.snap.damaged (kept for the operator;
 * no longer counted or loaded). 0 or an errno value. */
int mx_swal_set_aside_snapshot(struct mx_walstore *s, const char *id, size_t len)
{
    char path[2400], aside[2500];
    mx_swal_collect(s, 1);
    snprintf(path, sizeof(path), "%s/%.*s.snap", s->snapdir, (int)len, id);
    snprintf(aside, sizeof(aside), "%s.damaged", path);
    if (rename(path, aside) != 0)
        return errno;
    mx_swal_sync_dir(s->snapdir);
    if (s->st.rooms_on_disk)
        s->st.rooms_on_disk--;
    mx_warn("event=snapshot_set_aside file=%s room=%.*s", aside, (int)len, id);
    return 0;
}

static int st_flush(void *ctx)
{
    struct mx_walstore *s = ctx;
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
    /* no rename may land after an unlink: a job in flight for a listed
     * name (the room made again while its old file's unlink keeps
     * failing) is waited for first; its success drops the entry */
    for (size_t i = 0; s->job && i < s->nunlink; i++)
        if (!strcmp(s->jobmem.name, s->unlink_after_flush[i].name))
            mx_swal_collect(s, 1);
    if (s->nunlink) {
        size_t kept = 0;
        for (size_t i = 0; i < s->nunlink; i++) {
            struct mx_unlink u = s->unlink_after_flush[i];
            char path[2400];
            snprintf(path, sizeof(path), "%s/%s", s->snapdir, u.name);
            int e = MX_FAULT_UNLINK(s->snapdir);
            if (!e && unlink(path) == 0) {
                if (s->st.rooms_on_disk)
                    s->st.rooms_on_disk--;
            } else if (e || errno != ENOENT) {
                /* kept: retried at the next flush, and its DELETE record
                 * stays in the WAL until then (unlink_keep) */
                if (!u.warned)
                    mx_warn("event=unlink_failed file=%s error=\"%s\" note=\"retried at each flush; "
                            "the WAL is kept from lsn %llu until it succeeds\"",
                            path, strerror(e ? e : errno), (unsigned long long)u.lsn);
                u.warned = 1;
                s->unlink_after_flush[kept++] = u;
                continue;
            }
            free(u.name);
        }
        int removed = kept < s->nunlink;
        s->nunlink = kept;
        s->st.unlinks_pending = kept;
        if (removed)
            mx_swal_sync_dir(s->snapdir);
    }
    return 0;
}

static void submit_snapshot(struct mx_walstore *s, struct mx_room *r);

/* A room that came due while a snapshot was in flight goes at the next
 * commit; with no more commits (traffic stopped), from the tick. */
static void submit_due(struct mx_walstore *s)
{
    if (s->ndue && !s->job && !s->failed && !mx_wal_pending_bytes(s->wal))
        submit_snapshot(s, s->due[s->ndue - 1]);
}

static int st_tick(void *ctx)
{
    struct mx_walstore *s = ctx;
    mx_swal_collect(s, 0);
    submit_due(s);
    if (s->failed)
        return st_flush(s);
    return mx_wal_tick(s->wal);
}

/* ---- snapshots ---- */

/* The LSN a snapshot written now covers: the last record appended (all of
 * them are durable when snapshots are written), or, while recovery folds
 * the WAL before the writer opens, the LSN the writer will continue after. */
static uint64_t covered_lsn(const struct mx_walstore *s)
{
    return s->wal ? mx_wal_next_lsn(s->wal) - 1 : s->fold_lsn;
}

/* wal/STATE must say no snapshot covers more than snap_max before one
 * covering lsn is written (wal_state.c): raise it first when needed. Its
 * end-zeros flag goes on once the writer has its own segment (every older
 * one is then followed by it, so only segments of this writer can be
 * last). 0 or a negative mx_err (the snapshot must not be written). */
static int state_needed(const struct mx_walstore *s, uint64_t lsn, struct mx_wal_state *n)
{
    if (s->state_known && lsn <= s->state.snap_max &&
        (!s->wal || !mx_wal_has_segment(s->wal) || (s->state.flags & MX_WAL_STATE_END_ZEROS)))
        return 0;
    *n = s->state;
    if (s->wal && mx_wal_has_segment(s->wal))
        n->flags |= MX_WAL_STATE_END_ZEROS;
    n->snap_max = lsn;
    return 1;
}

int mx_swal_state_cover(struct mx_walstore *s, uint64_t lsn)
{
    mx_swal_collect(s, 1); /* the writer may be replacing STATE */
    struct mx_wal_state n;
    if (!state_needed(s, lsn, &n))
        return 0;
    char err[300];
    int rc = mx_wal_state_write(s->waldir, &n, err, sizeof(err));
    if (rc) {
        mx_err("event=wal_state_failed error=\"%s\"", err);
        return rc;
    }
    s->state = n;
    s->state_known = 1;
    return 0;
}

/* Write r's snapshot. Only called when the WAL holds nothing unwritten. */
static int write_snapshot(struct mx_walstore *s, struct mx_room *r)
{
    uint64_t lsn = covered_lsn(s);
    int src = mx_swal_state_cover(s, lsn);
    if (src)
        return src;
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
    drop_unlink(s, name);
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
int mx_swal_ready_for_snapshots(struct mx_walstore *s)
{
    if (!s->wal)
        return 1; /* recovery folding the WAL: the reader synced what it read */
    if (s->failed || mx_wal_pending_bytes(s->wal))
        return 0;
    return mx_wal_sync(s->wal) == 0;
}

static uint64_t snapshot_all_dirty(struct mx_walstore *s, mx_map *rooms, uint64_t limit);

void mx_swal_collect(struct mx_walstore *s, int wait)
{
    if (!s->job)
        return;
    struct mx_snapjob *j = mx_snapwriter_done(s->writer, wait);
    if (!j)
        return;
    struct mx_room *r = s->job_room;
    s->job = NULL;
    s->job_room = NULL;
    if (j->niov) {
        mx_oplog_unpin(r->log); /* the thread is done with its texts */
        j->niov = 0;
    }
    if (j->wal_seg[0])
        mx_wal_sync_done(s->wal, j->wal_seg, j->sync_us, j->sync_errno); /* fails the WAL on error */
    if (j->sync_errno) {
        /* nothing was written; the WAL is failed and the next flush says so */
    } else if (j->state_rc) {
        mx_err("event=wal_state_failed error=\"%s\"", j->err);
    } else {
        if (j->write_state) {
            s->state = j->state;
            s->state_known = 1;
        }
        if (j->rc) {
            mx_err("event=snapshot_failed room=%s error=\"%s\"", r->id, j->err);
        } else {
            drop_unlink(s, j->name);
            s->st.snapshots_written++;
            s->st.snapshot_bytes += j->bytes;
            if (!r->disk_snap_lsn)
                s->st.rooms_on_disk++;
            r->disk_first_lsn = s->job_after_first;
            r->disk_records = s->job_after_records;
            r->disk_snap_lsn = s->job_lsn;
            if (r->disk_records < s->cfg->snapshot_every)
                unqueue_due(s, r);
            mx_debug("event=snapshot_written room=%s lsn=%llu bytes=%zu encode_us=%llu "
                     "wal_sync_us=%llu write_us=%llu",
                     r->id, (unsigned long long)s->job_lsn, j->bytes,
                     (unsigned long long)s->job_encode_us, (unsigned long long)j->sync_us,
                     (unsigned long long)j->write_us);
        }
    }
    /* a failure leaves the room due (it is still dirty): the next commit
     * tries again, one job at a time */
    mx_buf_free(&j->payload);
}

/* Encode r's snapshot here and hand its file work to the writer thread.
 * The WAL holds nothing unwritten (after a successful flush). */
static void submit_snapshot(struct mx_walstore *s, struct mx_room *r)
{
    if (!s->writer && !(s->writer = mx_snapwriter_new())) {
        if (mx_swal_ready_for_snapshots(s))
            write_snapshot(s, r); /* out of memory: the old way, on the loop */
        return;
    }
    struct mx_snapjob *j = &s->jobmem;
    j->wal_fd = -1;
    j->wal_seg[0] = '\0';
    int rc = mx_wal_sync_handle(s->wal, &j->wal_fd, j->wal_seg);
    if (rc == MX_EUNAVAILABLE && !s->failed)
        rc = mx_wal_sync(s->wal); /* no descriptor for the thread: sync here */
    if (rc)
        return;
    uint64_t lsn = covered_lsn(s);
    j->write_state = state_needed(s, lsn, &j->state);
    mx_buf_init(&j->payload, 0);
    uint64_t t0 = mx_now_us();
    /* the log's texts (most of a room's bytes, cold) are not copied here:
     * the thread writes them from where the log keeps them, pinned until
     * the job is collected; the whole encoding is the fallback */
    j->niov = 0;
    int erc = -1;
    if (!j->stage)
        j->stage = mx_malloc(MX_SNAPJOB_STAGE); /* kept for the next jobs */
    if (j->stage && mx_oplog_pin(r->log) == 0) {
        erc = mx_snapshot_encode_gather(r, lsn, &j->payload, &j->iov, &j->niov, &j->iovcap);
        if (erc) {
            mx_oplog_unpin(r->log);
            j->niov = 0;
            mx_buf_free(&j->payload);
            mx_buf_init(&j->payload, 0);
        }
    }
    if (erc)
        erc = mx_snapshot_encode(r, lsn, &j->payload);
    j->bytes = j->payload.len;
    if (j->niov) {
        j->bytes = 0;
        for (size_t i = 0; i < j->niov; i++)
            j->bytes += j->iov[i].iov_len;
    }
    s->job_encode_us = mx_now_us() - t0;
    if (erc) {
        mx_buf_free(&j->payload);
        if (j->wal_fd >= 0)
            close(j->wal_fd);
        return;
    }
    snap_name(r, j->name, sizeof(j->name));
    j->waldir = s->waldir;
    j->snapdir = s->snapdir;
    s->job = j;
    s->job_room = r;
    s->job_lsn = lsn;
    s->job_after_first = 0;
    s->job_after_records = 0;
    mx_snapwriter_submit(s->writer, j);
}

/* The lowest LSN a record still needs: the first record no snapshot
 * covers of any room in memory (rooms leave memory only with a snapshot),
 * or of a room recovery has not rebuilt yet; the next LSN when none. */
static uint64_t oldest_needed_lsn(const struct mx_walstore *s, mx_map *rooms)
{
    uint64_t keep = mx_wal_next_lsn(s->wal);
    size_t it = 0, len;
    const char *key;
    void *val;
    while (mx_map_next(rooms, &it, &key, &len, &val)) {
        const struct mx_room *r = val;
        if (r->disk_first_lsn && r->disk_first_lsn < keep)
            keep = r->disk_first_lsn;
    }
    return unlink_keep(s, mx_recovery_keep(s, keep));
}

/* Delete the segments whose every record a snapshot on disk already
 * covers - what a checkpoint ends with, without its snapshots. With the
 * rooms snapshotted by the writer thread every snapshot_every records,
 * this alone keeps the WAL under wal_max_bytes, and the checkpoint (every
 * dirty room encoded and written on the loop: a stall of milliseconds per
 * room) runs only when a room pins old records. Called with no job in
 * flight, so every room's disk_* fields say what the disk holds. Returns
 * whether the WAL is still over bound. */
static int trim_segments(struct mx_walstore *s, mx_map *rooms, uint64_t bound)
{
    int n = mx_wal_remove_before(s->wal, oldest_needed_lsn(s, rooms));
    uint64_t left = mx_wal_disk_bytes(s->wal);
    if (n > 0) {
        mx_info("event=wal_trimmed segments_removed=%d wal_bytes=%llu", n, (unsigned long long)left);
    }
    return left > bound;
}

static void st_after_commit(void *ctx, mx_map *rooms)
{
    struct mx_walstore *s = ctx;
    mx_swal_collect(s, 0);
    /* over wal_max_bytes (or, after a checkpoint that could not get under
     * it, over the size it left plus a quarter of the bound) */
    uint64_t bound = s->cfg->wal_max_bytes > s->checkpoint_floor ? s->cfg->wal_max_bytes : s->checkpoint_floor;
    int need_checkpoint = mx_wal_disk_bytes(s->wal) > bound;
    if (!s->ndue && !need_checkpoint)
        return;
    if (s->job)
        return; /* one snapshot at a time; the due rooms wait for the next commit */
    if (need_checkpoint)
        need_checkpoint = trim_segments(s, rooms, bound);
    if (!need_checkpoint) {
        submit_due(s);
        return;
    }
    /* the checkpoint stays on the loop (rare: once per wal_max_bytes) */
    if (!mx_swal_ready_for_snapshots(s))
        return;
    while (s->ndue)
        if (write_snapshot(s, s->due[s->ndue - 1]))
            return;
    if (!need_checkpoint)
        return;
    /* WAL over its bound: snapshot every dirty room, then drop the
     * segments no remaining record needs. */
    uint64_t keep = snapshot_all_dirty(s, rooms, mx_wal_next_lsn(s->wal));
    keep = mx_recovery_keep(s, keep); /* rooms not rebuilt since start-up */
    keep = unlink_keep(s, keep);        /* deleted rooms' snapshots still on disk */
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
 * synced: mx_swal_ready_for_snapshots). Returns how many, from the first on, are
 * now loadable from disk. */
size_t mx_swal_snapshot_batch(struct mx_walstore *s, struct mx_room **rooms, size_t n)
{
    mx_swal_collect(s, 1);
    uint64_t lsn = covered_lsn(s);
    char **names = mx_calloc(n, sizeof(char *));
    const void **payloads = mx_calloc(n, sizeof(void *));
    size_t *lens = mx_calloc(n, sizeof(size_t));
    mx_buf *bufs = mx_calloc(n, sizeof(mx_buf));
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
        names[ndirty] = mx_malloc(MX_ROOM_ID_MAX + 8);
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
    size_t written = ndirty && mx_swal_state_cover(s, lsn) == 0
                         ? (size_t)mx_atomic_write_many(s->snapdir, ndirty, names, MX_SNAPSHOT_MAGIC,
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
        drop_unlink(s, names[d]);
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
    struct mx_walstore *s = ctx;
    mx_swal_collect(s, 0);
    if (s->job)
        return 0; /* a snapshot in flight: the next tick tries again */
    return mx_swal_ready_for_snapshots(s) ? mx_swal_snapshot_batch(s, rooms, n) : 0;
}

/* Snapshot every dirty room in the map, in batches. Returns the lowest
 * disk_first_lsn left among rooms that could not be written (or limit). */
static uint64_t snapshot_all_dirty(struct mx_walstore *s, mx_map *rooms, uint64_t limit)
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
            size_t done = mx_swal_snapshot_batch(s, batch, n);
            for (size_t i = done; i < n; i++)
                if (batch[i]->disk_first_lsn && batch[i]->disk_first_lsn < keep)
                    keep = batch[i]->disk_first_lsn;
            n = 0;
        }
    }
    return keep;
}

static int st_load(void *ctx, const char *id, size_t len, struct mx_room **out)
{
    struct mx_walstore *s = ctx;
    int rc = mx_recovery_load(s, id, len, out); /* not rebuilt since start-up */
    return rc == 1 ? mx_swal_load_snapshot(s, id, len, out) : rc;
}

int mx_swal_load_snapshot(struct mx_walstore *s, const char *id, size_t len, struct mx_room **out)
{
    char name[MX_ROOM_ID_MAX + 8], err[300];
    snprintf(name, sizeof(name), "%.*s.snap", (int)len, id);
    /* deleted, its snapshot not yet unlinked (waits for the next flush) */
    for (size_t i = 0; i < s->nunlink; i++)
        if (!strcmp(s->unlink_after_flush[i].name, name))
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
    struct mx_walstore *s = ctx;
    mx_swal_collect(s, 0);
    *out = s->st;
    out->rooms_on_disk += s->pending_nosnap; /* created in the WAL tail, not rebuilt yet */
    out->rooms_unreplayed = s->pending_rooms;
    out->wal_bytes = mx_wal_disk_bytes(s->wal);
    out->fsyncs = mx_wal_fsyncs(s->wal);
    out->failed = s->failed;
}

static void st_close(void *ctx, mx_map *rooms)
{
    struct mx_walstore *s = ctx;
    mx_swal_collect(s, 1);
    mx_snapwriter_free(s->writer);
    s->writer = NULL;
    free(s->jobmem.iov);
    s->jobmem.iov = NULL;
    s->jobmem.iovcap = 0;
    free(s->jobmem.stage);
    s->jobmem.stage = NULL;
    if (rooms && st_flush(s) == 0 && mx_swal_ready_for_snapshots(s)) {
        snapshot_all_dirty(s, rooms, 0);
        if (s->pending)
            mx_recovery_flush_done(s); /* rooms not rebuilt yet keep their WAL records */
    }
    if (s->pending || s->rd)
        mx_recovery_free(s);
    mx_wal_close(s->wal);
    for (size_t i = 0; i < s->nunlink; i++)
        free(s->unlink_after_flush[i].name);
    free(s->unlink_after_flush);
    free(s->due);
    mx_buf_free(&s->rec);
    if (s->lockfd >= 0)
        close(s->lockfd);
    free(s);
}

/* ---- opening: directories, the lock, recovery, the writer ---- */

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* data_dir: movexd -t's check first (the same message), then every
 * missing level */
static int make_data_dir(const char *path, char *err, size_t errlen)
{
    return mx_dir_check("data directory", path, err, errlen) || mx_dir_make(path, err, errlen) ? -1 : 0;
}

static void free_room(void *r) { mx_room_free(r); }

static int make_dirs(struct mx_walstore *s, char *err, size_t errlen)
{
    snprintf(s->waldir, sizeof(s->waldir), "%s/wal", s->cfg->data_dir);
    snprintf(s->snapdir, sizeof(s->snapdir), "%s/rooms", s->cfg->data_dir);
    return make_data_dir(s->cfg->data_dir, err, errlen) || make_dir(s->waldir, err, errlen) ||
                   make_dir(s->snapdir, err, errlen)
               ? -1
               : 0;
}

/* One daemon per data directory: flock(LOCK), held until close. */
static int lock_data_dir(struct mx_walstore *s, char *err, size_t errlen)
{
    char lockpath[1100];
    snprintf(lockpath, sizeof(lockpath), "%s/LOCK", s->cfg->data_dir);
    s->lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lockfd < 0 || flock(s->lockfd, LOCK_EX | LOCK_NB)) {
        snprintf(err, errlen, "%s: %s", lockpath,
                 s->lockfd < 0 ? strerror(errno) : "another movexd is using this data directory");
        return -1;
    }
    return 0;
}

static void set_iface(struct mx_walstore *s)
{
    s->iface = (struct mx_storage){
        .ctx = s,
        .name = "wal",
        .reserve = st_reserve,
        .room_created = st_room_created,
        .action = st_action,
        .reject = st_reject,
        .room_deleted = st_room_deleted,
        .drop_unrecoverable = mx_recovery_drop_unrecoverable,
        .flush = st_flush,
        .load = st_load,
        .evict = st_evict,
        .after_commit = st_after_commit,
        .tick = st_tick,
        .stats = st_stats,
        .background = mx_recovery_background,
        .close = st_close,
    };
}

int mx_storage_wal_open(const struct mx_config *cfg, const struct mx_storage **out, mx_map **rooms,
                        char *err, size_t errlen)
{
    struct mx_walstore *s = mx_calloc(1, sizeof(*s));
    mx_map *map = mx_map_new();
    if (!s || !map) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->lockfd = -1;
    s->cfg = cfg;
    mx_buf_init(&s->rec, 0);
    /* recovery parses JSON before the engine exists: jansson through the
     * counting allocator, so mx_json_loadb tells out of memory from damage */
    json_set_alloc_funcs(mx_json_malloc, free);
    uint64_t next;
    struct mx_recovery_counts rc;
    if (make_dirs(s, err, errlen) || lock_data_dir(s, err, errlen) ||
        mx_recovery_start(s, &next, &rc, err, errlen))
        goto fail;
    struct mx_wal_opts o = {.dir = s->waldir, .fsync = cfg->fsync, .segment_bytes = cfg->wal_segment_bytes};
    if (mx_wal_open(&s->wal, &o, next, err, errlen))
        goto fail;
    /* every snapshot covers at most next - 1 (the LSN rule): STATE says so,
     * and, now that the writer has its segment, that segments keep their
     * end zeros. A full disk leaves the old file (still an upper bound);
     * the next snapshot tries again. */
    s->state_known = 0;
    if (mx_swal_state_cover(s, next - 1))
        mx_warn("event=wal_state_deferred note=\"wal/STATE could not be written; retried before "
                "the next snapshot\"");
    mx_info("event=recovered rooms_to_rebuild=%llu records_indexed=%llu rooms_deleted=%llu "
            "rooms_on_disk=%llu next_lsn=%llu lsn_floor=%s seconds=%.3f",
            (unsigned long long)s->pending_rooms, (unsigned long long)rc.records,
            (unsigned long long)rc.deleted, (unsigned long long)s->st.rooms_on_disk,
            (unsigned long long)next, s->floor_scanned ? "scan" : "state",
            (double)(mx_now_us() - s->recovery_start_us) / 1e6);
    set_iface(s);
    *out = &s->iface;
    *rooms = map;
    return 0;
fail:
    if (map)
        mx_map_free(map, free_room);
    if (s) {
        if (s->pending || s->rd)
            mx_recovery_free(s);
        free(s->done);
        mx_buf_free(&s->rec);
        if (s->lockfd >= 0)
            close(s->lockfd);
        free(s);
    }
    return -1;
}
