/* wal_reader.c - the write-ahead log's verifying reader, used once at
 * start-up by recovery (docs/STORAGE.md, "Recovery: a torn tail or
 * corruption").
 *
 * Segments are mapped read-only and walked in LSN order; each consecutive
 * pair must be contiguous. A bad record is a torn write only when it is in
 * the last segment and no valid record decodes at any later byte offset of
 * it (a crash can only tear the end of the last write); anything else is
 * corruption and stops recovery with "FILE: offset N: what", because
 * silently cutting it off would drop records that were acknowledged. The
 * reader changes nothing on disk except when asked to cut a torn tail
 * (mx_wal_reader_truncate_tail) or to sync what it read.
 */
#include "movexd/wal.h"
#include "movexd/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/wal_common.h"

enum { REC_OK, REC_EOF, REC_ZERO, REC_BAD };
enum { RD_READING, RD_END, RD_ERROR };

struct mx_wal_reader {
    char *dir;
    struct mx_wal_seg *segs;
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
    int end_zeros; /* mx_wal_reader_require_end_zeros */
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
                mx_wal_errf(why, whylen, "partial record header (%" PRIu64 " bytes)", rem);
                return REC_BAD;
            }
        return REC_ZERO;
    }
    uint32_t l = mx_le32_get(m + off);
    if (l == 0)
        return REC_ZERO;
    if (rem < MX_WAL_HEADER) {
        mx_wal_errf(why, whylen, "partial record header (%" PRIu64 " bytes)", rem);
        return REC_BAD;
    }
    if (l > MX_WAL_MAX_RECORD) {
        mx_wal_errf(why, whylen, "record length %" PRIu32 " exceeds the maximum %u", l,
                MX_WAL_MAX_RECORD);
        return REC_BAD;
    }
    if (l > rem - MX_WAL_HEADER) {
        mx_wal_errf(why, whylen,
                "record of %" PRIu32 " bytes runs past the end of the file (%" PRIu64
                " bytes left)",
                l, rem - MX_WAL_HEADER);
        return REC_BAD;
    }
    uint32_t want = mx_le32_get(m + off + 4);
    uint32_t got = mx_wal_frame_crc(m + off, m + off + MX_WAL_HEADER, l);
    if (want != got) {
        mx_wal_errf(why, whylen,
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
        uint32_t l = mx_le32_get(m + o);
        if (l == 0 || l > MX_WAL_MAX_RECORD || l > size - o - MX_WAL_HEADER)
            continue;
        if (mx_le32_get(m + o + 4) == mx_wal_frame_crc(m + o, m + o + MX_WAL_HEADER, l))
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

/* What to do when records that may have been acknowledged are missing
 * (docs/STORAGE.md, "What to do about a damaged segment"). */
#define RD_ADVICE                                                                              \
    "acknowledged records may be missing, so movexd does not start. Keep the daemon stopped, " \
    "copy the data directory, and restore this segment from a backup; or, accepting the loss, " \
    "move it and every later wal-*.log out of the wal directory (docs/STORAGE.md, \"What to do "  \
    "about a damaged segment\")"

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
            struct kept_map *n = mx_realloc(r->kept, ncap * sizeof(*n));
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
    char name[MX_WAL_SEG_NAME_LEN];
    mx_wal_seg_name(name, r->segs[r->cur].lsn);
    r->path = mx_path_join(r->dir, name, "");
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

/* A torn record at r->off of the last segment is a crash's only if the
 * whole record and the zero length word after it fit in the file: the
 * writer reserved that space in the file before writing (sector writes do
 * not tear a 4-byte length word, so its length is the one written). */
static int torn_fits(const mx_wal_reader *r)
{
    uint64_t rem = r->size - r->off;
    if (rem < MX_WAL_HEADER)
        return 0;
    uint32_t l = mx_le32_get(r->map + r->off);
    if (l == 0)
        return rem >= MX_WAL_END_ZEROS; /* zero word then stray bytes */
    if (l > MX_WAL_MAX_RECORD)
        return 1; /* no length the writer wrote: damage, not evidence of a cut */
    return (uint64_t)l + MX_WAL_HEADER + MX_WAL_END_ZEROS <= rem;
}

int mx_wal_reader_open(mx_wal_reader **out, const char *dir, char *err, size_t errlen)
{
    *out = NULL;
    mx_wal_reader *r = mx_calloc(1, sizeof *r);
    if (!r || !(r->dir = mx_strdup(dir))) {
        free(r);
        mx_wal_errf(err, errlen, "wal: out of memory");
        return MX_ENOMEM;
    }
    int e = mx_wal_list_segments(dir, &r->segs, &r->nsegs);
    if (e) {
        mx_wal_errf(err, errlen, "%s: listing segments: %s", dir, strerror(e));
        mx_wal_reader_close(r);
        return e == ENOMEM ? MX_ENOMEM : MX_EINTERNAL;
    }
    if (r->nsegs && r->segs[0].lsn == 0) {
        mx_wal_errf(err, errlen, "%s/wal-%020d.log: LSN 0 is not a valid segment name", dir, 0);
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
            mx_wal_errf(err, errlen, "%s", r->errmsg);
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
                char name[MX_WAL_SEG_NAME_LEN];
                mx_wal_seg_name(name, r->segs[r->cur].lsn);
                if (r->segs[r->cur].lsn > r->next_lsn)
                    rd_fail(r,
                            "%s: its records end at offset %" PRIu64 " (LSN %" PRIu64
                            " next) but the next segment, %s/%s, starts at LSN %" PRIu64
                            ": LSNs %" PRIu64 "..%" PRIu64 " are missing (segments not "
                            "contiguous; %s%s); " RD_ADVICE,
                            r->prev_path, r->prev_end, r->next_lsn, r->dir, name,
                            r->segs[r->cur].lsn, r->next_lsn, r->segs[r->cur].lsn - 1,
                            r->prev_end == 0 ? "the segment is empty" : "the segment was cut short",
                            r->prev_end == 0 ? " but is not the last one" : "");
                else
                    rd_fail(r,
                            "%s/%s: offset 0: segment starts at LSN %" PRIu64 " but %s ended at "
                            "offset %" PRIu64 " with LSN %" PRIu64
                            " next (segments not contiguous: records duplicated; a segment put "
                            "back after the daemon went on without it?)",
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
            if (last && r->end_zeros && r->size - r->off < MX_WAL_END_ZEROS) {
                char at[64];
                if (r->size)
                    snprintf(at, sizeof at, "ends at offset %" PRIu64 " right after its records",
                             r->size);
                else
                    snprintf(at, sizeof at, "is empty (0 bytes)");
                rd_fail(r,
                        "%s: the last segment %s (LSN %" PRIu64 " next), without the zero "
                        "length word movexd keeps after them: the file was cut short "
                        "(truncated, or copied incompletely), not torn by a crash; " RD_ADVICE,
                        r->path, at, r->next_lsn);
                continue;
            }
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
        if (r->end_zeros && !torn_fits(r)) {
            rd_fail(r,
                    "%s: offset %" PRIu64 ": %s, and the file ends at offset %" PRIu64
                    " inside that record: a crash leaves a torn record inside the "
                    "preallocated file, so the file was cut short, not torn; " RD_ADVICE,
                    r->path, r->off, why, r->size);
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
        mx_wal_errf(err, errlen, "%s: open: %s", r->torn_path, strerror(errno));
        return -1;
    }
    struct stat st;
    uint64_t before = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    /* Keep a zero length word after the records (MX_WAL_END_ZEROS): zero
     * it first, then cut after it; a crash in between leaves a zero word
     * followed by the torn bytes, which reads as the same torn tail. */
    static const uint8_t zeros[MX_WAL_END_ZEROS];
    uint64_t end = r->torn_off + MX_WAL_END_ZEROS;
    if (pwrite(fd, zeros, sizeof zeros, (off_t)r->torn_off) != (ssize_t)sizeof zeros ||
        fsync(fd) != 0 || (before > end && ftruncate(fd, (off_t)end) != 0) || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        mx_wal_errf(err, errlen, "%s: truncating at offset %" PRIu64 ": %s", r->torn_path,
                r->torn_off, strerror(e));
        mx_err("event=wal_truncate_failed file=\"%s\" offset=%" PRIu64 " error=\"%s\"",
               r->torn_path, r->torn_off, strerror(e));
        return -1;
    }
    close(fd);
    r->truncated = 1;
    mx_warn("event=wal_torn_tail_cut file=\"%s\" offset=%" PRIu64 " bytes_cut=%" PRIu64,
            r->torn_path, r->torn_off, before > end ? before - end : 0);
    return 0;
}

uint64_t mx_wal_reader_next_lsn(const mx_wal_reader *r) { return r->next_lsn; }

int mx_wal_reader_sync(mx_wal_reader *r, char *err, size_t errlen)
{
    for (size_t i = 0; i < r->nsegs; i++) {
        char name[MX_WAL_SEG_NAME_LEN];
        mx_wal_seg_name(name, r->segs[i].lsn);
        char *path = mx_path_join(r->dir, name, "");
        if (!path) {
            mx_wal_errf(err, errlen, "out of memory");
            return -1;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fdatasync(fd) != 0) {
            mx_wal_errf(err, errlen, "%s: %s: %s", path, fd < 0 ? "open" : "fdatasync", strerror(errno));
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

void mx_wal_reader_require_end_zeros(mx_wal_reader *r) { r->end_zeros = 1; }

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
