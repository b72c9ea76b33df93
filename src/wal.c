#define _GNU_SOURCE /* syncfs */
/* wal.c - the write-ahead log and atomic files: everything that turns bytes
 * into durable files (docs/STORAGE.md is the on-disk reference).
 *
 * Writer. Records are framed (u32 len, u32 crc32c, payload) into an append
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
 *
 * Reader. Segments are mapped read-only and walked in LSN order; each
 * consecutive pair must be contiguous. A bad record is a torn write only when
 * it is in the last segment and no valid record decodes at any later byte
 * offset of it (a crash can only tear the end of the last write); anything
 * else is corruption and stops recovery with "FILE: offset N: what", because
 * silently cutting it off would drop records that were acknowledged.
 *
 * Atomic files are written to NAME.tmp, fsynced, renamed, and the directory
 * fsynced; a reader never sees a half-written NAME.
 */
#include "movexd/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/metrics.h"

#define SEG_DEFAULT ((uint64_t)64 << 20)
#define SEG_MIN 64
#define BUF_MIN ((size_t)64 << 10)
#define BUF_KEEP ((size_t)4 << 20) /* a larger buffer is released after its write */
#define SEG_NAME_LEN 32            /* "wal-" + 20 digits + ".log" + NUL = 29 */
#define ATOMIC_HEADER 16           /* magic[8], u32 len, u32 crc */

/* ---- small helpers ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The CRC covers the length word too, so a flipped length is caught even
 * when the new length happens to fit in the file. */
static uint32_t frame_crc(const uint8_t len4[4], const void *payload, size_t len)
{
    return mx_crc32c(mx_crc32c(0, len4, 4), payload, len);
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
                                                          const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *join_path(const char *dir, const char *name, const char *suffix)
{
    size_t a = strlen(dir), b = strlen(name), c = strlen(suffix);
    char *p = malloc(a + 1 + b + c + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b);
    memcpy(p + a + 1 + b, suffix, c + 1);
    return p;
}

static void seg_name(char out[SEG_NAME_LEN], uint64_t lsn)
{
    snprintf(out, SEG_NAME_LEN, "wal-%020" PRIu64 ".log", lsn);
}

/* "wal-" + exactly 20 digits + ".log"; anything else is not a segment. */
static int parse_seg_name(const char *s, uint64_t *lsn)
{
    if (strlen(s) != 28 || strncmp(s, "wal-", 4) != 0 || strcmp(s + 24, ".log") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 4; i < 24; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *lsn = v;
    return 1;
}

static int retry_later(int e) { return e == ENOSPC || e == EDQUOT; }

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* fsync a directory by path (atomic files, a newly made WAL directory). */
static int fsync_dir_path(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int e = fsync(fd) != 0 ? errno : 0;
    close(fd);
    return e;
}

/* After mkdir: make the new directory's own name durable (best effort). */
static void sync_parent(const char *dir)
{
    char *parent = strdup(dir);
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
    int e = fsync_dir_path(p);
    if (e)
        mx_warn("event=wal_fsync_failed file=\"%s\" error=\"%s\"", p, strerror(e));
    free(parent);
}

/* ---- fault injection ---- */

#ifdef MX_FAULT_INJECTION
static int fault_from_fd(int fd)
{
    if (fd < 0)
        return 0;
    char text[32];
    ssize_t n;
    do
        n = read(fd, text, sizeof text - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return 0;
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' ||
                     text[n - 1] == '\t'))
        n--;
    text[n] = '\0';
    if (strcmp(text, "enospc") == 0)
        return ENOSPC;
    if (strcmp(text, "edquot") == 0)
        return EDQUOT;
    if (strcmp(text, "eio") == 0)
        return EIO;
    return 0;
}

int mx_wal_fault(const char *dir)
{
    char *p = join_path(dir, "FAULT", "");
    if (!p)
        return 0;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    free(p);
    return fault_from_fd(fd);
}

#define WAL_FAULT(w) fault_from_fd(openat((w)->dirfd, "FAULT", O_RDONLY | O_CLOEXEC))
#define DIR_FAULT(dir) mx_wal_fault(dir)
#else
#define WAL_FAULT(w) 0
#define DIR_FAULT(dir) 0
#endif

/* ---- segment listing (writer and reader) ---- */

struct seg {
    uint64_t lsn;   /* first LSN, from the name */
    uint64_t bytes; /* file size */
};

static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct seg *)a)->lsn, y = ((const struct seg *)b)->lsn;
    return x < y ? -1 : x > y;
}

/* Every wal-*.log in dir, sorted by LSN. A missing dir is an empty list.
 * Returns 0 or an errno value. */
static int list_segments(const char *dir, struct seg **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : errno;
    struct seg *v = NULL;
    size_t n = 0, cap = 0;
    int e = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            e = errno;
            break;
        }
        uint64_t lsn;
        if (!parse_seg_name(de->d_name, &lsn))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, 0) != 0) {
            e = errno;
            break;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct seg *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                e = ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        v[n].lsn = lsn;
        v[n].bytes = (uint64_t)st.st_size;
        n++;
    }
    closedir(d);
    if (e) {
        free(v);
        return e;
    }
    if (n > 1)
        qsort(v, n, sizeof *v, seg_cmp);
    *out = v;
    *count = n;
    return 0;
}

/* ================= writer ================= */

struct mx_wal {
    char *dir;
    int dirfd;
    enum mx_fsync_policy policy;
    uint64_t seg_bytes;
    int failed;
    int nospace; /* in an ENOSPC episode: log its start and end once */
    char errmsg[256];

    struct seg *segs; /* every segment file, by LSN */
    size_t nsegs, capsegs;

    int fd; /* current segment, or -1 (disk was full when one was needed) */
    char name[SEG_NAME_LEN];
    uint64_t cap;     /* record bytes the current segment may hold */
    uint64_t written; /* record bytes written to it */
    uint64_t fsize;   /* its file size */

    uint8_t *buf; /* framed records not yet written */
    size_t len, bufcap;

    uint64_t next_lsn, written_lsn;
    int dirty; /* written to fd since its last fdatasync */
    int64_t last_sync_ms;
    uint64_t fsyncs;
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

static struct seg *seg_find(mx_wal *w, uint64_t lsn)
{
    for (size_t i = w->nsegs; i-- > 0;)
        if (w->segs[i].lsn == lsn)
            return &w->segs[i];
    return NULL;
}

/* Record a segment of `bytes` at `lsn` (new ones are always the newest). */
static int seg_note(mx_wal *w, uint64_t lsn, uint64_t bytes)
{
    struct seg *s = seg_find(w, lsn);
    if (s) {
        s->bytes = bytes;
        return 0;
    }
    if (w->nsegs == w->capsegs) {
        size_t nc = w->capsegs ? w->capsegs * 2 : 16;
        struct seg *nv = realloc(w->segs, nc * sizeof *nv);
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
    if (!e && fdatasync(w->fd) != 0)
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
    return get32(b) != 0;
}

/* Create (or reuse, when it holds no records) the segment named `lsn`,
 * preallocated to `size` bytes, and make its name durable. On success *out
 * is its descriptor. A full disk leaves no new file behind. */
static int create_segment(mx_wal *w, uint64_t lsn, uint64_t size, int *out)
{
    char name[SEG_NAME_LEN];
    seg_name(name, lsn);
    int reused = 0;
    int fd = openat(w->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        fd = openat(w->dirfd, name, O_RDWR | O_CLOEXEC);
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
            if (ftruncate(fd, 0) != 0) {
                int e = errno;
                close(fd);
                return wal_fail(w, "ftruncate", name, e);
            }
            reused = 1;
        }
    }
    if (fd < 0) {
        int e = errno;
        if (retry_later(e) || e == EMFILE || e == ENFILE) {
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
    if (e) {
        if (reused) {
            /* keep the empty file: its name still tells recovery the LSN */
            if (ftruncate(fd, 0) != 0)
                mx_warn("event=wal_truncate_failed file=\"%s/%s\" error=\"%s\"", w->dir, name,
                        strerror(errno));
            close(fd);
            seg_note(w, lsn, 0);
        } else if (close(fd), unlinkat(w->dirfd, name, 0) == 0 && fsync(w->dirfd) != 0) {
            /* a lost unlink would leave an overlapping empty segment */
            return wal_fail(w, "fsync", ".", errno);
        }
        if (retry_later(e)) {
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
    size_t done = 0;
    while (done < w->len) {
        int e = WAL_FAULT(w);
        if (!e) {
            ssize_t n = pwrite(w->fd, w->buf + done, w->len - done, (off_t)(w->written + done));
            if (n > 0) {
                done += (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            e = n == 0 ? ENOSPC : errno; /* no progress: treat as a full disk */
        }
        if (retry_later(e)) {
            /* Cut off whatever part did land so the segment ends at the last
             * whole record; the buffer is written again later. */
            if (ftruncate(w->fd, (off_t)w->written) != 0)
                return wal_fail(w, "ftruncate", w->name, errno);
            set_fsize(w, w->written);
            /* the preallocation is gone: the next new record goes to a new
             * preallocated segment, once the disk has room for one */
            w->cap = w->written + w->len;
            nospace_begin(w, "write", w->name, e);
            return MX_EUNAVAILABLE;
        }
        return wal_fail(w, "write", w->name, e);
    }
    w->written += w->len;
    if (w->written > w->fsize)
        set_fsize(w, w->written);
    w->written_lsn = w->next_lsn - 1;
    w->len = 0;
    w->dirty = 1;
    nospace_end(w);
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
    seg_name(w->name, w->next_lsn);
    w->cap = size;
    w->written = 0;
    w->fsize = size;
    w->dirty = 0;
    return 0;
}

int mx_wal_open(mx_wal **out, const struct mx_wal_opts *o, uint64_t next_lsn, char *err,
                size_t errlen)
{
    *out = NULL;
    if (!o || !o->dir || !o->dir[0]) {
        set_err(err, errlen, "wal: no directory given");
        return MX_EINTERNAL;
    }
    if (next_lsn == 0) {
        set_err(err, errlen, "wal: LSNs start at 1");
        return MX_EINTERNAL;
    }
    if (o->fsync != MX_FSYNC_ALWAYS && o->fsync != MX_FSYNC_EVERYSEC && o->fsync != MX_FSYNC_NO) {
        set_err(err, errlen, "wal: unknown fsync policy %d", (int)o->fsync);
        return MX_EINTERNAL;
    }
    uint64_t segb = o->segment_bytes ? (uint64_t)o->segment_bytes : SEG_DEFAULT;
    if (segb < SEG_MIN) {
        set_err(err, errlen, "wal: segment_bytes %" PRIu64 " is below the minimum %d", segb,
                SEG_MIN);
        return MX_EINTERNAL;
    }
    mx_wal *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(o->dir))) {
        free(w);
        set_err(err, errlen, "wal: out of memory");
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
        set_err(err, errlen, "%s: mkdir: %s", w->dir, strerror(errno));
        goto fail;
    }
    w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        set_err(err, errlen, "%s: open: %s", w->dir, strerror(errno));
        goto fail;
    }
    int e = list_segments(w->dir, &w->segs, &w->nsegs);
    if (e) {
        set_err(err, errlen, "%s: listing segments: %s", w->dir, strerror(e));
        rc = e == ENOMEM ? MX_ENOMEM : MX_EINTERNAL;
        goto fail;
    }
    w->capsegs = w->nsegs;
    if (w->nsegs && w->segs[w->nsegs - 1].lsn > next_lsn) {
        char name[SEG_NAME_LEN];
        seg_name(name, w->segs[w->nsegs - 1].lsn);
        set_err(err, errlen,
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
        set_err(err, errlen, "%s", w->errmsg);
        goto fail;
    } else {
        seg_name(w->name, next_lsn);
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
        } else if (w->fsize > w->written) {
            /* give back the unused preallocation; the reader takes the end of
             * the file as the end of the segment */
            if (ftruncate(w->fd, (off_t)w->written) == 0)
                set_fsize(w, w->written);
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
    if (w->fd >= 0 && w->written + w->len + need <= w->cap)
        return 0;
    return rotate(w, need);
}

uint64_t mx_wal_append(mx_wal *w, const void *payload, size_t len)
{
    if (w->failed || len == 0 || len > MX_WAL_MAX_RECORD || mx_wal_reserve(w, len) != 0)
        return 0;
    size_t need = w->len + MX_WAL_HEADER + len;
    if (need > w->bufcap) {
        size_t nc = w->bufcap > BUF_MIN ? w->bufcap : BUF_MIN;
        while (nc < need)
            nc *= 2;
        uint8_t *nb = realloc(w->buf, nc);
        if (!nb)
            return 0;
        w->buf = nb;
        w->bufcap = nc;
    }
    uint8_t *h = w->buf + w->len;
    put32(h, (uint32_t)len);
    put32(h + 4, frame_crc(h, payload, len));
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

int mx_wal_tick(mx_wal *w)
{
    if (w->failed)
        return MX_EINTERNAL;
    if (w->policy == MX_FSYNC_EVERYSEC && w->dirty && w->fd >= 0)
        return sync_current(w);
    return 0;
}

uint64_t mx_wal_next_lsn(const mx_wal *w) { return w->next_lsn; }
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
        char name[SEG_NAME_LEN];
        seg_name(name, w->segs[done].lsn);
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

/* ================= reader ================= */

enum { REC_OK, REC_EOF, REC_ZERO, REC_BAD };
enum { RD_READING, RD_END, RD_ERROR };

struct mx_wal_reader {
    char *dir;
    struct seg *segs;
    size_t nsegs;
    size_t cur;   /* segment being read */
    char *path;   /* its path, or NULL when none is mapped */
    const uint8_t *map;
    uint64_t size, off;
    uint64_t next_lsn;
    char prev_path[4096]; /* the segment before, for gap messages */
    uint64_t prev_end;
    int state;
    char errmsg[512];
    int torn, truncated;
    char *torn_path;
    uint64_t torn_off;
    int keep; /* mx_wal_reader_keep_maps: segments stay mapped until close */
    struct kept_map {
        const uint8_t *map;
        uint64_t size;
    } *kept;
    size_t nkept, capkept;
};

/* Decode the record at off. REC_OK sets *len; REC_BAD fills why. */
static int decode_at(const uint8_t *m, uint64_t size, uint64_t off, uint32_t *len, char *why,
                     size_t whylen)
{
    uint64_t rem = size - off;
    if (rem == 0)
        return REC_EOF;
    if (rem < 4) {
        for (uint64_t i = 0; i < rem; i++)
            if (m[off + i]) {
                set_err(why, whylen, "partial record header (%" PRIu64 " bytes)", rem);
                return REC_BAD;
            }
        return REC_ZERO;
    }
    uint32_t l = get32(m + off);
    if (l == 0)
        return REC_ZERO;
    if (rem < MX_WAL_HEADER) {
        set_err(why, whylen, "partial record header (%" PRIu64 " bytes)", rem);
        return REC_BAD;
    }
    if (l > MX_WAL_MAX_RECORD) {
        set_err(why, whylen, "record length %" PRIu32 " exceeds the maximum %u", l,
                MX_WAL_MAX_RECORD);
        return REC_BAD;
    }
    if (l > rem - MX_WAL_HEADER) {
        set_err(why, whylen,
                "record of %" PRIu32 " bytes runs past the end of the file (%" PRIu64
                " bytes left)",
                l, rem - MX_WAL_HEADER);
        return REC_BAD;
    }
    uint32_t want = get32(m + off + 4);
    uint32_t got = frame_crc(m + off, m + off + MX_WAL_HEADER, l);
    if (want != got) {
        set_err(why, whylen,
                "checksum mismatch in a %" PRIu32 "-byte record (stored %08" PRIx32
                ", computed %08" PRIx32 ")",
                l, want, got);
        return REC_BAD;
    }
    *len = l;
    return REC_OK;
}

/* First offset >= from where a whole valid record decodes, or UINT64_MAX. */
static uint64_t find_valid_record(const uint8_t *m, uint64_t size, uint64_t from)
{
    for (uint64_t o = from; size >= MX_WAL_HEADER + 1 && o <= size - MX_WAL_HEADER - 1; o++) {
        uint32_t l = get32(m + o);
        if (l == 0 || l > MX_WAL_MAX_RECORD || l > size - o - MX_WAL_HEADER)
            continue;
        if (get32(m + o + 4) == frame_crc(m + o, m + o + MX_WAL_HEADER, l))
            return o;
    }
    return UINT64_MAX;
}

static int all_zero(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

__attribute__((format(printf, 2, 3))) static int rd_fail(mx_wal_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
    r->state = RD_ERROR;
    return -1;
}

static void rd_unmap(mx_wal_reader *r)
{
    if (r->map && r->keep) {
        if (r->nkept == r->capkept) {
            size_t ncap = r->capkept ? r->capkept * 2 : 16;
            struct kept_map *n = realloc(r->kept, ncap * sizeof(*n));
            if (n) {
                r->kept = n;
                r->capkept = ncap;
            }
        }
        if (r->nkept < r->capkept) {
            r->kept[r->nkept].map = r->map;
            r->kept[r->nkept++].size = r->size;
            r->map = NULL; /* kept: not unmapped below */
        } else {
            r->keep = -1; /* out of memory: the caller learns it from keep_maps_ok */
        }
    }
    if (r->map)
        munmap((void *)r->map, (size_t)r->size);
    r->map = NULL;
    r->size = 0;
    r->off = 0;
    free(r->path);
    r->path = NULL;
}

/* Map segment r->cur. 0, or -1 with the error set. */
static int rd_map(mx_wal_reader *r)
{
    char name[SEG_NAME_LEN];
    seg_name(name, r->segs[r->cur].lsn);
    r->path = join_path(r->dir, name, "");
    if (!r->path)
        return rd_fail(r, "out of memory");
    int fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rd_fail(r, "%s: open: %s", r->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rd_fail(r, "%s: stat: %s", r->path, strerror(e));
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return rd_fail(r, "%s: file too large to map", r->path);
    }
    r->size = (uint64_t)st.st_size;
    r->off = 0;
    if (r->size > 0) {
        void *m = mmap(NULL, (size_t)r->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            r->size = 0;
            return rd_fail(r, "%s: mmap: %s", r->path, strerror(e));
        }
        r->map = m;
    }
    close(fd);
    return 0;
}

int mx_wal_reader_open(mx_wal_reader **out, const char *dir, char *err, size_t errlen)
{
    *out = NULL;
    mx_wal_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->dir = strdup(dir))) {
        free(r);
        set_err(err, errlen, "wal: out of memory");
        return MX_ENOMEM;
    }
    int e = list_segments(dir, &r->segs, &r->nsegs);
    if (e) {
        set_err(err, errlen, "%s: listing segments: %s", dir, strerror(e));
        mx_wal_reader_close(r);
        return e == ENOMEM ? MX_ENOMEM : MX_EINTERNAL;
    }
    if (r->nsegs && r->segs[0].lsn == 0) {
        set_err(err, errlen, "%s/wal-%020d.log: LSN 0 is not a valid segment name", dir, 0);
        mx_wal_reader_close(r);
        return MX_EINTERNAL;
    }
    r->next_lsn = r->nsegs ? r->segs[0].lsn : 1;
    *out = r;
    return 0;
}

int mx_wal_reader_next(mx_wal_reader *r, const void **payload, size_t *len, uint64_t *lsn,
                       char *err, size_t errlen)
{
    for (;;) {
        if (r->state == RD_ERROR) {
            set_err(err, errlen, "%s", r->errmsg);
            return -1;
        }
        if (r->state == RD_END)
            return 0;
        if (!r->path) {
            if (r->cur >= r->nsegs) {
                r->state = RD_END;
                return 0;
            }
            if (r->cur > 0 && r->segs[r->cur].lsn != r->next_lsn) {
                char name[SEG_NAME_LEN];
                seg_name(name, r->segs[r->cur].lsn);
                rd_fail(r,
                        "%s/%s: offset 0: segment starts at LSN %" PRIu64 " but %s ended at "
                        "offset %" PRIu64 " with LSN %" PRIu64
                        " next (segments not contiguous: records missing or duplicated)",
                        r->dir, name, r->segs[r->cur].lsn, r->prev_path, r->prev_end,
                        r->next_lsn);
                continue;
            }
            if (rd_map(r) != 0)
                continue;
        }
        uint32_t l = 0;
        char why[200] = "";
        int k = decode_at(r->map, r->size, r->off, &l, why, sizeof why);
        int last = r->cur + 1 == r->nsegs;
        if (k == REC_OK) {
            *payload = r->map + r->off + MX_WAL_HEADER;
            *len = l;
            *lsn = r->next_lsn++;
            r->off += MX_WAL_HEADER + (uint64_t)l;
            return 1;
        }
        /* End of this segment's data: end of file, or a zero length word.
         * Zeros are preallocated space; in the last segment everything after
         * them must be zeros too. Non-last segments are checked by the LSN
         * contiguity of the next segment instead. */
        if (k == REC_EOF || (k == REC_ZERO && (!last || all_zero(r->map + r->off,
                                                                  r->size - r->off)))) {
            snprintf(r->prev_path, sizeof r->prev_path, "%s", r->path);
            r->prev_end = r->off;
            rd_unmap(r);
            r->cur++;
            continue;
        }
        if (k == REC_ZERO)
            snprintf(why, sizeof why, "zero length word followed by non-zero bytes");
        if (!last) {
            rd_fail(r, "%s: offset %" PRIu64 ": %s (not the last segment)", r->path, r->off, why);
            continue;
        }
        uint64_t v = find_valid_record(r->map, r->size, r->off + 1);
        if (v != UINT64_MAX) {
            rd_fail(r,
                    "%s: offset %" PRIu64 ": %s; a valid record follows at offset %" PRIu64
                    ", so this is not a torn write",
                    r->path, r->off, why, v);
            continue;
        }
        r->torn = 1;
        r->torn_off = r->off;
        r->torn_path = r->path;
        r->path = NULL;
        rd_unmap(r);
        r->state = RD_END;
        return 0;
    }
}

int mx_wal_reader_torn(const mx_wal_reader *r, const char **file, uint64_t *offset)
{
    if (!r->torn)
        return 0;
    if (file)
        *file = r->torn_path;
    if (offset)
        *offset = r->torn_off;
    return 1;
}

int mx_wal_reader_truncate_tail(mx_wal_reader *r, char *err, size_t errlen)
{
    if (!r->torn || r->truncated)
        return 0;
    int fd = open(r->torn_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "%s: open: %s", r->torn_path, strerror(errno));
        return -1;
    }
    struct stat st;
    uint64_t before = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (ftruncate(fd, (off_t)r->torn_off) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        set_err(err, errlen, "%s: truncating at offset %" PRIu64 ": %s", r->torn_path,
                r->torn_off, strerror(e));
        mx_err("event=wal_truncate_failed file=\"%s\" offset=%" PRIu64 " error=\"%s\"",
               r->torn_path, r->torn_off, strerror(e));
        return -1;
    }
    close(fd);
    r->truncated = 1;
    mx_warn("event=wal_torn_tail_cut file=\"%s\" offset=%" PRIu64 " bytes_cut=%" PRIu64,
            r->torn_path, r->torn_off, before > r->torn_off ? before - r->torn_off : 0);
    return 0;
}

uint64_t mx_wal_reader_next_lsn(const mx_wal_reader *r) { return r->next_lsn; }

int mx_wal_reader_sync(mx_wal_reader *r, char *err, size_t errlen)
{
    for (size_t i = 0; i < r->nsegs; i++) {
        char name[SEG_NAME_LEN];
        seg_name(name, r->segs[i].lsn);
        char *path = join_path(r->dir, name, "");
        if (!path) {
            set_err(err, errlen, "out of memory");
            return -1;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fdatasync(fd) != 0) {
            set_err(err, errlen, "%s: %s: %s", path, fd < 0 ? "open" : "fdatasync", strerror(errno));
            if (fd >= 0)
                close(fd);
            free(path);
            return -1;
        }
        close(fd);
        free(path);
    }
    return 0;
}

void mx_wal_reader_keep_maps(mx_wal_reader *r) { r->keep = 1; }

int mx_wal_reader_keep_maps_ok(const mx_wal_reader *r) { return r->keep == 1; }

void mx_wal_reader_close(mx_wal_reader *r)
{
    if (!r)
        return;
    r->keep = 0;
    rd_unmap(r);
    for (size_t i = 0; i < r->nkept; i++)
        munmap((void *)r->kept[i].map, (size_t)r->kept[i].size);
    free(r->kept);
    free(r->torn_path);
    free(r->segs);
    free(r->dir);
    free(r);
}

/* ================= atomic files ================= */

/* write() all of p, consulting the fault file first. 0 or an errno value. */
static int write_all(int fd, const char *dir, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        int e = DIR_FAULT(dir);
        if (e)
            return e;
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? errno : ENOSPC;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int valid_name(const char *name)
{
    return name && name[0] && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

int mx_atomic_write(const char *dir, const char *name, const char magic[8], const void *payload,
                    size_t len, char *err, size_t errlen)
{
    if (!valid_name(name)) {
        set_err(err, errlen, "%s: bad file name", name ? name : "(null)");
        return MX_EINTERNAL;
    }
    if ((uint64_t)len > UINT32_MAX) {
        set_err(err, errlen, "%s/%s: %zu bytes is more than a file can frame", dir, name, len);
        return MX_ETOO_LARGE;
    }
    char *path = join_path(dir, name, "");
    char *tmp = join_path(dir, name, ".tmp");
    if (!path || !tmp) {
        free(path);
        free(tmp);
        set_err(err, errlen, "out of memory");
        return MX_ENOMEM;
    }
    const char *op = "open";
    const char *file = tmp;
    int e = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        e = errno;
        goto out;
    }
    uint8_t h[ATOMIC_HEADER];
    memcpy(h, magic, 8);
    put32(h + 8, (uint32_t)len);
    put32(h + 12, frame_crc(h + 8, payload, len));
    op = "write";
    e = write_all(fd, dir, h, sizeof h);
    if (!e)
        e = write_all(fd, dir, payload, len);
    if (!e) {
        op = "fsync";
        e = DIR_FAULT(dir);
        if (!e && fsync(fd) != 0)
            e = errno;
    }
    if (close(fd) != 0 && !e) {
        op = "close";
        e = errno;
    }
    if (e) {
        unlink(tmp);
        goto out;
    }
    op = "rename";
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        goto out;
    }
    op = "fsync";
    file = dir;
    e = DIR_FAULT(dir);
    if (!e)
        e = fsync_dir_path(dir);
out:
    if (e) {
        set_err(err, errlen, "%s: %s: %s", file, op, strerror(e));
        mx_err("event=atomic_write_failed op=%s file=\"%s\" error=\"%s\"", op, file, strerror(e));
    }
    free(path);
    free(tmp);
    return !e ? 0 : retry_later(e) ? MX_EUNAVAILABLE : MX_EINTERNAL;
}

int mx_atomic_write_many(const char *dir, size_t n, char *const names[], const char magic[8],
                         const void *const payloads[], const size_t lens[], char *err, size_t errlen)
{
    /* Same files as mx_atomic_write, with the syncs shared: write every
     * NAME.tmp, one syncfs() for all of them, then the renames, then one
     * fsync of the directory. Returns how many files were written (all, or
     * none when the syncfs fails: then no rename happened). */
    size_t done = 0;
    int e = 0, dfd = -1;
    const char *op = "open";
    char *tmp = NULL, *path = NULL;
    for (; done < n; done++) {
        if (!valid_name(names[done]) || (uint64_t)lens[done] > UINT32_MAX) {
            e = EINVAL;
            break;
        }
        free(tmp);
        tmp = join_path(dir, names[done], ".tmp");
        if (!tmp) {
            e = ENOMEM;
            break;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            e = errno;
            break;
        }
        uint8_t h[ATOMIC_HEADER];
        memcpy(h, magic, 8);
        put32(h + 8, (uint32_t)lens[done]);
        put32(h + 12, frame_crc(h + 8, payloads[done], lens[done]));
        op = "write";
        e = write_all(fd, dir, h, sizeof h);
        if (!e)
            e = write_all(fd, dir, payloads[done], lens[done]);
        if (close(fd) != 0 && !e)
            e = errno;
        if (e) {
            unlink(tmp);
            break;
        }
    }
    if (!e && n) {
        op = "syncfs";
        e = DIR_FAULT(dir);
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (!e && (dfd < 0 || syncfs(dfd) != 0))
            e = errno ? errno : EIO;
    }
    size_t renamed = 0;
    if (!e) {
        op = "rename";
        for (; renamed < n; renamed++) {
            free(tmp);
            free(path);
            tmp = join_path(dir, names[renamed], ".tmp");
            path = join_path(dir, names[renamed], "");
            if (!tmp || !path || rename(tmp, path) != 0) {
                e = tmp && path ? errno : ENOMEM;
                break;
            }
        }
        if (renamed) {
            int de = fsync_dir_path(dir);
            if (!e && de) {
                op = "fsync";
                e = de;
                renamed = 0; /* not durable: report nothing written */
            }
        }
    } else {
        for (size_t i = 0; i < done; i++) { /* leave no temp files behind */
            free(tmp);
            tmp = join_path(dir, names[i], ".tmp");
            if (tmp)
                unlink(tmp);
        }
    }
    if (dfd >= 0)
        close(dfd);
    if (e) {
        set_err(err, errlen, "%s: %s: %s", dir, op, strerror(e));
        mx_err("event=atomic_write_failed op=%s dir=\"%s\" error=\"%s\"", op, dir, strerror(e));
    }
    free(tmp);
    free(path);
    return (int)renamed;
}

static int read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = read(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? errno : EIO; /* shrank underneath us */
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

int mx_atomic_read(const char *dir, const char *name, const char magic[8], void **payload,
                   size_t *len, char *err, size_t errlen)
{
    *payload = NULL;
    *len = 0;
    if (!valid_name(name)) {
        set_err(err, errlen, "%s: bad file name", name ? name : "(null)");
        return MX_EINTERNAL;
    }
    char *path = join_path(dir, name, "");
    if (!path) {
        set_err(err, errlen, "out of memory");
        return MX_ENOMEM;
    }
    int rc = MX_EINTERNAL;
    uint8_t *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        set_err(err, errlen, "%s: %s", path, strerror(e));
        /* out of descriptors or memory: the file is fine, try again later */
        rc = e == ENOENT                                       ? MX_ENO_SUCH_ROOM
             : (e == EMFILE || e == ENFILE || e == ENOMEM) ? MX_EUNAVAILABLE
                                                              : MX_EINTERNAL;
        free(path);
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "%s: stat: %s", path, strerror(errno));
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < ATOMIC_HEADER) {
        set_err(err, errlen, "%s: %" PRIu64 " bytes is shorter than the %d-byte header", path,
                size, ATOMIC_HEADER);
        goto out;
    }
    if (size - ATOMIC_HEADER > UINT32_MAX || size - ATOMIC_HEADER > SIZE_MAX - 1) {
        set_err(err, errlen, "%s: %" PRIu64 " bytes is too large", path, size);
        goto out;
    }
    size_t plen = (size_t)(size - ATOMIC_HEADER);
    uint8_t h[ATOMIC_HEADER];
    buf = malloc(plen ? plen : 1);
    if (!buf) {
        set_err(err, errlen, "%s: out of memory", path);
        rc = MX_ENOMEM;
        goto out;
    }
    int e = read_all(fd, h, sizeof h);
    if (!e)
        e = read_all(fd, buf, plen);
    if (e) {
        set_err(err, errlen, "%s: read: %s", path, strerror(e));
        goto out;
    }
    if (memcmp(h, magic, 8) != 0) {
        set_err(err, errlen, "%s: bad magic (not a %.8s file)", path, magic);
        goto out;
    }
    if (get32(h + 8) != plen) {
        set_err(err, errlen, "%s: length field says %" PRIu32 " bytes, file holds %zu", path,
                get32(h + 8), plen);
        goto out;
    }
    uint32_t got = frame_crc(h + 8, buf, plen);
    if (get32(h + 12) != got) {
        set_err(err, errlen, "%s: checksum mismatch (stored %08" PRIx32 ", computed %08" PRIx32 ")",
                path, get32(h + 12), got);
        goto out;
    }
    *payload = buf;
    *len = plen;
    buf = NULL;
    rc = 0;
out:
    close(fd);
    free(buf);
    free(path);
    return rc;
}
