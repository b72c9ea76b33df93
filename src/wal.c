/* wal.c - the write-ahead log's writer: segments, group commit, deleting
 * old segments (docs/STORAGE.md is the on-disk reference; the verifying
 * reader is wal_reader.c, atomic files atomic.c).
 *
 * Records are framed (u32 len, u32 crc32c, payload) into an append
 * buffer; mx_wal_flush hands the whole buffer to one pwrite() at the end of
 * the current segment's written data and then, per policy, one fdatasync()
 * (group commit: one sync per event-loop turn, however many records).
 * Invariants:
 *   - the buffer belongs to the current segment: before a segment is closed
 *     the buffer is written to it and synced (whatever the policy), so a
 *     record never moves between files and only the current segment can
 *     hold unsynced data - one fdatasync makes the whole log durable, and a
 *     power cut can only tear the last segment;
 *   - written + buffered <= cap: every buffered record was reserved in the
 *     current segment, which was preallocated (posix_fallocate) when it was
 *     created, so a full disk shows up at reserve time, before the engine
 *     applies anything;
 *   - bytes [0, written) of the current segment are records; past that the
 *     file is zeros or absent (after ENOSPC the file is cut back to written);
 *   - segments[] lists every segment file by LSN; when fd >= 0 the current
 *     one is the last entry, and the newest file is never deleted (its name
 *     is how recovery learns the next LSN when it holds no records);
 *   - once an fsync (of a segment or the directory) or a write fails with
 *     anything but ENOSPC/EDQUOT, `failed` is set and every call fails: after
 *     a failed fsync the kernel may have dropped the dirty pages and marked
 *     them clean, so a retry could "succeed" without the data (PostgreSQL's
 *     fsyncgate, 2018). ENOSPC is different: the write did not happen, the
 *     partial bytes are cut off with ftruncate, and the same buffer is
 *     written again later (Redis does the same with its AOF).
 * Under `no` and `everysec` the kernel is asked to start writing each MiB
 * of records out as soon as it is written (sync_file_range, no wait; what
 * RocksDB calls wal_bytes_per_sync): it changes nothing about durability,
 * but the fdatasync that a snapshot (storage_wal.c) or the everysec tick
 * needs later then finds little left to write, and it holds the event loop
 * for less - under `no` at 10,000 actions/s it was a second of records,
 * 7.5 ms, once a second (docs/PERFORMANCE.md).
 */
#define _GNU_SOURCE /* sync_file_range */
#include "movexd/wal.h"
#include "movexd/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "movexd/err.h"
#include "movexd/fault.h"
#include "movexd/log.h"
#include "movexd/metrics.h"
#include "movexd/wal_common.h"

#define SEG_DEFAULT ((uint64_t)64 << 20)
#define SEG_MIN 64
#define BUF_MIN ((size_t)64 << 10)
#define BUF_KEEP ((size_t)4 << 20) /* a larger buffer is released after its write */
#define WAL_FAULT(w) MX_FAULT_FD((w)->dirfd)
#define WRITEBACK_BYTES ((uint64_t)1 << 20) /* start writeback per this much (not under always) */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* After mkdir: make the new directory's own name durable (best effort). */
static void sync_parent(const char *dir)
{
    char *parent = mx_strdup(dir);
    if (!parent)
        return;
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    const char *p = parent;
    if (!slash)
        p = ".";
    else if (slash == parent)
        p = "/";
    else
        *slash = '\0';
    int e = mx_fsync_dir(p);
    if (e)
        mx_warn("event=wal_fsync_failed file=\"%s\" error=\"%s\"", p, strerror(e));
    free(parent);
}

struct mx_wal {
    char *dir;
    int dirfd;
    enum mx_fsync_policy policy;
    uint64_t seg_bytes;
    int failed;
    int nospace; /* in an ENOSPC episode: log its start and end once */
    char errmsg[256];

    struct mx_wal_seg *segs; /* every segment file, by LSN */
    size_t nsegs, capsegs;

    int fd; /* current segment, or -1 (disk was full when one was needed) */
    char name[MX_WAL_SEG_NAME_LEN];
    uint64_t cap;     /* record bytes the current segment may hold */
    uint64_t written; /* record bytes written to it */
    uint64_t fsize;   /* its file size */

    uint8_t *buf; /* framed records not yet written */
    size_t len, bufcap;

    uint64_t next_lsn, written_lsn;
    int dirty; /* written to fd since its last fdatasync */
    int64_t last_sync_ms;
    uint64_t fsyncs;
    uint64_t wb_from;    /* offset in the current segment from which no writeback was started */
    uint64_t writebacks; /* sync_file_range calls (mx_wal_writebacks) */
};

/* Mark the WAL failed (sticky) and say so loudly. */
static int wal_fail(mx_wal *w, const char *op, const char *file, int e)
{
    w->failed = 1;
    snprintf(w->errmsg, sizeof w->errmsg, "%s/%s: %s: %s", w->dir, file, op, strerror(e));
    mx_err("event=wal_failed op=%s file=\"%s/%s\" error=\"%s\" note=\"durability lost; "
           "restart after checking the disk\"",
           op, w->dir, file, strerror(e));
    return MX_EINTERNAL;
}

static void nospace_begin(mx_wal *w, const char *op, const char *file, int e)
{
    snprintf(w->errmsg, sizeof w->errmsg, "%s/%s: %s: %s", w->dir, file, op, strerror(e));
    if (!w->nospace)
        mx_err("event=wal_unavailable op=%s file=\"%s/%s\" error=\"%s\" note=\"writes refused "
               "until space is freed\"",
               op, w->dir, file, strerror(e));
    w->nospace = 1;
}

static void nospace_end(mx_wal *w)
{
    if (w->nospace)
        mx_warn("event=wal_space_recovered dir=\"%s\"", w->dir);
    w->nospace = 0;
}

static struct mx_wal_seg *seg_find(mx_wal *w, uint64_t lsn)
{
    for (size_t i = w->nsegs; i-- > 0;)
        if (w->segs[i].lsn == lsn)
            return &w->segs[i];
    return NULL;
}

/* Record a segment of `bytes` at `lsn` (new ones are always the newest). */
static int seg_note(mx_wal *w, uint64_t lsn, uint64_t bytes)
{
    struct mx_wal_seg *s = seg_find(w, lsn);
    if (s) {
        s->bytes = bytes;
        return 0;
    }
    if (w->nsegs == w->capsegs) {
        size_t nc = w->capsegs ? w->capsegs * 2 : 16;
        struct mx_wal_seg *nv = mx_realloc(w->segs, nc * sizeof *nv);
        if (!nv)
            return -1;
        w->segs = nv;
        w->capsegs = nc;
    }
    w->segs[w->nsegs].lsn = lsn;
    w->segs[w->nsegs].bytes = bytes;
    w->nsegs++;
    return 0;
}

/* The current segment's file size changed (it is the newest entry). */
static void set_fsize(mx_wal *w, uint64_t size)
{
    w->fsize = size;
    if (w->fd >= 0 && w->nsegs > 0)
        w->segs[w->nsegs - 1].bytes = size;
}

static int sync_current(mx_wal *w)
{
    w->fsyncs++;
    int e = WAL_FAULT(w);
    uint64_t t0 = mx_now_us();
    if (!e && MX_FDATASYNC(w->fd) != 0)
        e = errno;
    mx_hist_observe(&mx_metric_fsync_latency, (double)(mx_now_us() - t0) / 1e6);
    if (e)
        return wal_fail(w, "fdatasync", w->name, e);
    w->dirty = 0;
    w->last_sync_ms = now_ms();
    return 0;
}

/* 1 if the segment file holds a record (its first length word is not zero),
 * 0 if not, -1 (errno set) if it cannot be read. */
static int has_records(int fd)
{
    uint8_t b[4] = {0, 0, 0, 0};
    ssize_t n;
    do
        n = pread(fd, b, sizeof b, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    return mx_le32_get(b) != 0;
}

/* Create (or reuse, when it holds no records) the segment named `lsn`,
 * preallocated to `size` bytes, and make its name durable. On success *out
 * is its descriptor. A full disk leaves no new file behind. A new segment
 * is preallocated and synced under a temporary name and only then renamed:
 * a file under a segment name always has its preallocated size, so one
 * that ends right after its records was cut short (MX_WAL_END_ZEROS). */
static int create_segment(mx_wal *w, uint64_t lsn, uint64_t size, int *out)
{
    char name[MX_WAL_SEG_NAME_LEN], tmp[MX_WAL_SEG_NAME_LEN + 4];
    mx_wal_seg_name(name, lsn);
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int reused = 0;
    int fd = openat(w->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        int r = has_records(fd);
        if (r != 0) {
            int e = errno;
            close(fd);
            if (r < 0)
                return wal_fail(w, "read", name, e);
            snprintf(w->errmsg, sizeof w->errmsg,
                     "%s/%s: segment already holds records; run recovery "
                     "(mx_wal_reader) and open at its next LSN",
                     w->dir, name);
            mx_err("event=wal_segment_exists file=\"%s/%s\"", w->dir, name);
            return MX_EINTERNAL;
        }
        /* no records: its bytes are zeros (recovery checked), so it is
         * extended in place, never shortened */
        reused = 1;
    } else if (errno == ENOENT) {
        fd = openat(w->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        int e = errno;
        if (mx_retry_later(e) || e == EMFILE || e == ENFILE) {
            nospace_begin(w, "open", name, e);
            return MX_EUNAVAILABLE;
        }
        return wal_fail(w, "open", name, e);
    }
    int e = WAL_FAULT(w);
    if (!e) {
        do
            e = posix_fallocate(fd, 0, (off_t)size);
        while (e == EINTR);
        if (e == EOPNOTSUPP || e == EINVAL) {
            /* No preallocation here: a full disk then shows up as ENOSPC
             * on write, which flush handles too. */
            mx_warn("event=wal_no_fallocate file=\"%s/%s\" error=\"%s\"", w->dir, name,
                    strerror(e));
            e = ftruncate(fd, (off_t)size) != 0 ? errno : 0;
        }
    }
    /* the size is durable before the name is */
    if (!e && !reused && fsync(fd) != 0)
        e = errno;
    if (!e && !reused && renameat(w->dirfd, tmp, w->dirfd, name) != 0)
        e = errno;
    if (e) {
        close(fd);
        if (reused) {
            /* keep the file: its name still tells recovery the LSN */
            seg_note(w, lsn, 0);
        } else if (unlinkat(w->dirfd, tmp, 0) != 0 && errno != ENOENT) {
            mx_warn("event=wal_tmp_left file=\"%s/%s\" error=\"%s\"", w->dir, tmp, strerror(errno));
        }
        if (mx_retry_later(e)) {
            nospace_begin(w, "fallocate", name, e);
            return MX_EUNAVAILABLE;
        }
        return wal_fail(w, "fallocate", name, e);
    }
    if (fsync(w->dirfd) != 0) {
        e = errno;
        close(fd);
        return wal_fail(w, "fsync", ".", e);
    }
    if (seg_note(w, lsn, size) != 0) {
        close(fd);
        snprintf(w->errmsg, sizeof w->errmsg, "out of memory");
        return MX_ENOMEM;
    }
    nospace_end(w);
    *out = fd;
    return 0;
}

/* Write the whole buffer at the end of the current segment's records: one
 * pwrite() unless the kernel returns short. */
static int write_buffer(mx_wal *w)
{
    if (w->len == 0)
        return 0;
    /* the file must not end with the records (MX_WAL_END_ZEROS): zeros go
     * with them when the preallocation does not reach past them (after a
     * cut-back on ENOSPC, or without fallocate); the buffer has room */
    size_t total = w->len;
    if (w->written + w->len + MX_WAL_END_ZEROS > w->fsize) {
        memset(w->buf + w->len, 0, MX_WAL_END_ZEROS);
        total += MX_WAL_END_ZEROS;
    }
    size_t done = 0;
    while (done < total) {
        int e = WAL_FAULT(w);
        if (!e) {
            ssize_t n = pwrite(w->fd, w->buf + done, total - done, (off_t)(w->written + done));
            if (n > 0) {
                MX_FAULT_WROTE(w->fd, w->written + done, (uint64_t)n);
                done += (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            e = n == 0 ? ENOSPC : errno; /* no progress: treat as a full disk */
        }
        if (mx_retry_later(e)) {
            /* Cut off whatever part did land so the segment ends at the last
             * whole record; the buffer is written again later. */
            if (ftruncate(w->fd, (off_t)w->written) != 0 ||
                ftruncate(w->fd, (off_t)(w->written + MX_WAL_END_ZEROS)) != 0)
                return wal_fail(w, "ftruncate", w->name, errno);
            set_fsize(w, w->written + MX_WAL_END_ZEROS);
            /* the preallocation is gone: the next new record goes to a new
             * preallocated segment, once the disk has room for one */
            w->cap = w->written + w->len;
            nospace_begin(w, "write", w->name, e);
            return MX_EUNAVAILABLE;
        }
        return wal_fail(w, "write", w->name, e);
    }
    w->written += w->len;
    if (w->written + (total - w->len) > w->fsize)
        set_fsize(w, w->written + (total - w->len));
    w->written_lsn = w->next_lsn - 1;
    w->len = 0;
    w->dirty = 1;
    nospace_end(w);
    if (w->policy != MX_FSYNC_ALWAYS && w->written - w->wb_from >= WRITEBACK_BYTES) {
        /* a hint: a failure (or an old kernel) only means the later
         * fdatasync writes more */
        if (sync_file_range(w->fd, (off_t)w->wb_from, (off_t)(w->written - w->wb_from),
                            SYNC_FILE_RANGE_WRITE) == 0)
            w->writebacks++;
        w->wb_from = w->written;
    }
    if (w->bufcap > BUF_KEEP) {
        free(w->buf);
        w->buf = NULL;
        w->bufcap = 0;
    }
    return 0;
}

/* Close the current segment and start one named next_lsn that can hold
 * `need` bytes. The old segment gets the buffer and a sync first, under
 * every policy (once per segment, so cheap even for `no`): then only the
 * current segment can hold unsynced data, which is what lets mx_wal_sync
 * and everysec's tick cover the whole log with one fdatasync, and a power
 * cut can only tear the last segment. If the new segment cannot be made,
 * the old one stays current. */
static int rotate(mx_wal *w, uint64_t need)
{
    need += MX_WAL_END_ZEROS;
    uint64_t size = need > w->seg_bytes ? need : w->seg_bytes;
    if (w->fd >= 0 && w->written + w->len == 0) {
        /* The current segment holds no records, so it has the new one's
         * name: recreate it at the needed size. */
        close(w->fd);
        w->fd = -1;
    }
    if (w->fd >= 0) {
        int rc = write_buffer(w);
        if (rc == 0 && w->dirty)
            rc = sync_current(w);
        if (rc != 0)
            return rc;
    }
    int fd;
    int rc = create_segment(w, w->next_lsn, size, &fd);
    if (rc != 0)
        return rc;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = fd;
    mx_wal_seg_name(w->name, w->next_lsn);
    w->cap = size;
    w->written = 0;
    w->wb_from = 0;
    w->fsize = size;
    w->dirty = 0;
    return 0;
}

int mx_wal_open(mx_wal **out, const struct mx_wal_opts *o, uint64_t next_lsn, char *err,
                size_t errlen)
{
    *out = NULL;
    if (!o || !o->dir || !o->dir[0]) {
        mx_wal_errf(err, errlen, "wal: no directory given");
        return MX_EINTERNAL;
    }
    if (next_lsn == 0) {
        mx_wal_errf(err, errlen, "wal: LSNs start at 1");
        return MX_EINTERNAL;
    }
    if (o->fsync != MX_FSYNC_ALWAYS && o->fsync != MX_FSYNC_EVERYSEC && o->fsync != MX_FSYNC_NO) {
        mx_wal_errf(err, errlen, "wal: unknown fsync policy %d", (int)o->fsync);
        return MX_EINTERNAL;
    }
    uint64_t segb = o->segment_bytes ? (uint64_t)o->segment_bytes : SEG_DEFAULT;
    if (segb < SEG_MIN) {
        mx_wal_errf(err, errlen, "wal: segment_bytes %" PRIu64 " is below the minimum %d", segb,
                SEG_MIN);
        return MX_EINTERNAL;
    }
    mx_wal *w = mx_calloc(1, sizeof *w);
    if (!w || !(w->dir = mx_strdup(o->dir))) {
        free(w);
        mx_wal_errf(err, errlen, "wal: out of memory");
        return MX_ENOMEM;
    }
    w->fd = -1;
    w->dirfd = -1;
    w->policy = o->fsync;
    w->seg_bytes = segb;
    w->next_lsn = next_lsn;
    w->written_lsn = next_lsn - 1;
    w->last_sync_ms = now_ms();

    int rc = MX_EINTERNAL;
    if (mkdir(w->dir, 0700) == 0) {
        sync_parent(w->dir);
    } else if (errno != EEXIST) {
        mx_wal_errf(err, errlen, "%s: mkdir: %s", w->dir, strerror(errno));
        goto fail;
    }
    w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        mx_wal_errf(err, errlen, "%s: open: %s", w->dir, strerror(errno));
        goto fail;
    }
    int e = mx_wal_list_segments(w->dir, &w->segs, &w->nsegs);
    if (e) {
        mx_wal_errf(err, errlen, "%s: listing segments: %s", w->dir, strerror(e));
        rc = e == ENOMEM ? MX_ENOMEM : MX_EINTERNAL;
        goto fail;
    }
    w->capsegs = w->nsegs;
    if (w->nsegs && w->segs[w->nsegs - 1].lsn > next_lsn) {
        char name[MX_WAL_SEG_NAME_LEN];
        mx_wal_seg_name(name, w->segs[w->nsegs - 1].lsn);
        mx_wal_errf(err, errlen,
                "%s/%s: segment starts after LSN %" PRIu64 " the log would continue at; run "
                "recovery first",
                w->dir, name, next_lsn);
        goto fail;
    }
    rc = create_segment(w, next_lsn, segb, &w->fd);
    if (rc == MX_EUNAVAILABLE) {
        w->fd = -1;
        mx_warn("event=wal_open_without_segment dir=\"%s\" note=\"disk full; writes retry\"",
                w->dir);
    } else if (rc != 0) {
        w->fd = -1;
        mx_wal_errf(err, errlen, "%s", w->errmsg);
        goto fail;
    } else {
        mx_wal_seg_name(w->name, next_lsn);
        w->cap = segb;
        w->fsize = segb;
    }
    *out = w;
    return 0;
fail:
    if (w->dirfd >= 0)
        close(w->dirfd);
    free(w->segs);
    free(w->dir);
    free(w);
    return rc;
}

void mx_wal_close(mx_wal *w)
{
    if (!w)
        return;
    if (!w->failed && w->fd >= 0) {
        uint64_t pending = w->len;
        int rc = write_buffer(w);
        if (rc != 0) {
            mx_warn("event=wal_close_unflushed dir=\"%s\" bytes=%" PRIu64, w->dir, pending);
        } else if (w->fsize > w->written + MX_WAL_END_ZEROS) {
            /* give back the unused preallocation but one zero length word:
             * a last segment never ends with its records (MX_WAL_END_ZEROS) */
            if (ftruncate(w->fd, (off_t)(w->written + MX_WAL_END_ZEROS)) == 0)
                set_fsize(w, w->written + MX_WAL_END_ZEROS);
        }
        /* whatever the policy: the next open starts a new segment, and only
         * the current one may hold unsynced data (see rotate) */
        if (rc == 0 && w->dirty)
            sync_current(w);
    }
    if (w->fd >= 0)
        close(w->fd);
    if (w->dirfd >= 0)
        close(w->dirfd);
    free(w->buf);
    free(w->segs);
    free(w->dir);
    free(w);
}

int mx_wal_reserve(mx_wal *w, size_t len)
{
    if (w->failed)
        return MX_EINTERNAL;
    if (len > MX_WAL_MAX_RECORD)
        return MX_ETOO_LARGE;
    if (len == 0) {
        mx_err("event=wal_empty_record dir=\"%s\" note=\"records are 1 byte or more\"", w->dir);
        return MX_EINTERNAL;
    }
    uint64_t need = MX_WAL_HEADER + (uint64_t)len;
    if (w->fd >= 0 && w->written + w->len + need + MX_WAL_END_ZEROS <= w->cap)
        return 0;
    return rotate(w, need);
}

uint64_t mx_wal_append(mx_wal *w, const void *payload, size_t len)
{
    if (w->failed || len == 0 || len > MX_WAL_MAX_RECORD || mx_wal_reserve(w, len) != 0)
        return 0;
    size_t need = w->len + MX_WAL_HEADER + len;
    if (need + MX_WAL_END_ZEROS > w->bufcap) {
        size_t nc = w->bufcap > BUF_MIN ? w->bufcap : BUF_MIN;
        while (nc < need + MX_WAL_END_ZEROS)
            nc *= 2;
        uint8_t *nb = mx_realloc(w->buf, nc);
        if (!nb)
            return 0;
        w->buf = nb;
        w->bufcap = nc;
    }
    uint8_t *h = w->buf + w->len;
    mx_le32_put(h, (uint32_t)len);
    mx_le32_put(h + 4, mx_wal_frame_crc(h, payload, len));
    memcpy(h + MX_WAL_HEADER, payload, len);
    w->len = need;
    return w->next_lsn++;
}

int mx_wal_flush(mx_wal *w)
{
    if (w->failed)
        return MX_EINTERNAL;
    if (w->fd < 0)
        return 0; /* no segment, so nothing can be buffered */
    int rc = write_buffer(w);
    if (rc != 0)
        return rc;
    if (!w->dirty)
        return 0;
    if (w->policy == MX_FSYNC_ALWAYS ||
        (w->policy == MX_FSYNC_EVERYSEC && now_ms() - w->last_sync_ms >= 1000))
        return sync_current(w);
    return 0;
}

int mx_wal_sync(mx_wal *w)
{
    if (w->failed)
        return MX_EINTERNAL;
    if (w->fd < 0)
        return 0;
    int rc = write_buffer(w);
    if (rc == 0 && w->dirty)
        rc = sync_current(w);
    return rc;
}

int mx_wal_sync_handle(mx_wal *w, int *fd, char name[MX_WAL_SEG_NAME_LEN])
{
    *fd = -1;
    if (w->failed)
        return MX_EINTERNAL;
    if (w->fd < 0)
        return 0; /* older segments were synced when they were closed */
    int rc = write_buffer(w);
    if (rc != 0 || !w->dirty)
        return rc;
    /* a new description, not dup(): see wal.h */
    int d = openat(w->dirfd, w->name, O_RDONLY | O_CLOEXEC);
    if (d < 0)
        return MX_EUNAVAILABLE;
    memcpy(name, w->name, MX_WAL_SEG_NAME_LEN);
    *fd = d;
    return 0;
}

void mx_wal_sync_done(mx_wal *w, const char *name, uint64_t us, int e)
{
    w->fsyncs++;
    mx_hist_observe(&mx_metric_fsync_latency, (double)us / 1e6);
    /* dirty stays set: writes may have followed the handle, and an extra
     * fdatasync is only slower, never wrong */
    if (e && !w->failed)
        wal_fail(w, "fdatasync", name, e);
}

int mx_wal_tick(mx_wal *w)
{
    if (w->failed)
        return MX_EINTERNAL;
    if (w->policy == MX_FSYNC_EVERYSEC && w->dirty && w->fd >= 0)
        return sync_current(w);
    return 0;
}

uint64_t mx_wal_next_lsn(const mx_wal *w) { return w->next_lsn; }
uint64_t mx_wal_writebacks(const mx_wal *w) { return w->writebacks; }
int mx_wal_has_segment(const mx_wal *w) { return w->fd >= 0; }
uint64_t mx_wal_written_lsn(const mx_wal *w) { return w->written_lsn; }
size_t mx_wal_pending_bytes(const mx_wal *w) { return w->len; }
uint64_t mx_wal_fsyncs(const mx_wal *w) { return w->fsyncs; }

uint64_t mx_wal_disk_bytes(const mx_wal *w)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < w->nsegs; i++)
        sum += w->segs[i].bytes;
    return sum;
}

int mx_wal_remove_before(mx_wal *w, uint64_t lsn)
{
    if (w->failed)
        return -1;
    /* segment i ends at LSN segs[i+1].lsn - 1; the newest is never removed */
    size_t n = 0;
    while (n + 1 < w->nsegs && w->segs[n + 1].lsn <= lsn)
        n++;
    size_t done = 0;
    int rc = 0;
    for (; done < n; done++) {
        char name[MX_WAL_SEG_NAME_LEN];
        mx_wal_seg_name(name, w->segs[done].lsn);
        if (unlinkat(w->dirfd, name, 0) != 0 && errno != ENOENT) {
            mx_err("event=wal_remove_failed file=\"%s/%s\" error=\"%s\"", w->dir, name,
                   strerror(errno));
            rc = -1;
            break;
        }
    }
    if (done > 0) {
        memmove(w->segs, w->segs + done, (w->nsegs - done) * sizeof *w->segs);
        w->nsegs -= done;
        if (fsync(w->dirfd) != 0) {
            wal_fail(w, "fsync", ".", errno);
            return -1;
        }
    }
    return rc ? -1 : (int)done;
}

int mx_wal_remove_all(const char *dir, char *err, size_t errlen)
{
    struct mx_wal_seg *segs;
    size_t n;
    int e = mx_wal_list_segments(dir, &segs, &n);
    for (size_t i = 0; !e && i < n; i++) {
        char name[MX_WAL_SEG_NAME_LEN];
        mx_wal_seg_name(name, segs[i].lsn);
        char *path = mx_path_join(dir, name, "");
        if (!path || (unlink(path) != 0 && errno != ENOENT))
            e = path ? errno : ENOMEM;
        free(path);
    }
    if (!e && n)
        e = mx_fsync_dir(dir);
    free(segs);
    if (e) {
        mx_wal_errf(err, errlen, "%s: removing segments: %s", dir, strerror(e));
        return -1;
    }
    return 0;
}
