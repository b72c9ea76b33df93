#define _GNU_SOURCE /* syncfs */
/* atomic.c - atomic files (snapshots): a whole file is written to
 * NAME.tmp, fsynced, renamed over NAME, and the directory fsynced, so a
 * reader sees either the old NAME or the new one, never a mix; the content
 * is framed (magic, len, crc) so a damaged file is told from a good one
 * (docs/STORAGE.md, "Atomic files"). mx_atomic_write_many shares the syncs
 * among many files (one syncfs, one directory fsync) for batches.
 */
#include "movexd/wal.h"
#include "movexd/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "movexd/err.h"
#include "movexd/fault.h"
#include "movexd/log.h"
#include "movexd/wal_common.h"

#define ATOMIC_HEADER 16 /* magic[8], u32 len, u32 crc */
#define DIR_FAULT(dir) MX_FAULT_DIR(dir)
#define ATOMIC_PATH_MAX 4096

/* pwrite() all of p at file offset off, consulting the fault file
 * first. 0 or an errno value. */
static int write_at(int fd, const char *dir, const void *p, size_t n, off_t off)
{
    const uint8_t *b = p;
    while (n > 0) {
        int e = DIR_FAULT(dir);
        if (e)
            return e;
        ssize_t k = pwrite(fd, b, n, off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? errno : ENOSPC;
        b += k;
        n -= (size_t)k;
        off += k;
    }
    return 0;
}

/* The payload iov[0..niov) at offset ATOMIC_HEADER, through stage (a
 * buffer of stagecap bytes, hot in cache, reused): the pieces - hundreds
 * of bytes each for a room's log - are copied into it and written a stage
 * at a time, the CRC taken over the stage as it fills (one pass over the
 * cold pieces; a writev of thousands of small pieces cost the kernel more
 * than these copies). *crc goes in and out. 0 or an errno value. */
static int write_staged(int fd, const char *dir, const struct iovec *iov, size_t niov, char *stage,
                        size_t stagecap, uint32_t *crc)
{
    off_t off = ATOMIC_HEADER;
    size_t at = 0;
    for (size_t i = 0; i < niov; i++) {
        const char *p = iov[i].iov_base;
        size_t n = iov[i].iov_len;
        while (n > 0) {
            size_t k = stagecap - at < n ? stagecap - at : n;
            memcpy(stage + at, p, k);
            at += k;
            p += k;
            n -= k;
            if (at == stagecap) {
                *crc = mx_crc32c(*crc, stage, at);
                int e = write_at(fd, dir, stage, at, off);
                if (e)
                    return e;
                off += (off_t)at;
                at = 0;
            }
        }
    }
    *crc = mx_crc32c(*crc, stage, at);
    return at ? write_at(fd, dir, stage, at, off) : 0;
}

static int valid_name(const char *name)
{
    return name && name[0] && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* The file work of mx_atomic_write, with no allocation and no logging, so
 * the snapshot writer's thread may run it (alloc.c's counter and log.c's
 * table of recent lines belong to the loop thread). Returns 0 or an errno
 * value; *op and *file say which step failed. */
static int write_file(const char *dir, const char *name, const char magic[8], const struct iovec *iov,
                      size_t niov, size_t len, char *stage, size_t stagecap, const char **op,
                      const char **file, char *tmp, char *path)
{
    *op = "open";
    *file = tmp;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    uint8_t h[ATOMIC_HEADER];
    memcpy(h, magic, 8);
    mx_le32_put(h + 8, (uint32_t)len);
    uint32_t crc = mx_crc32c(0, h + 8, 4); /* mx_wal_frame_crc over the pieces */
    *op = "write";
    int e;
    if (stage && niov > 1) {
        /* the payload first, then the header with its CRC */
        e = write_staged(fd, dir, iov, niov, stage, stagecap, &crc);
        mx_le32_put(h + 12, crc);
        if (!e)
            e = write_at(fd, dir, h, sizeof h, 0);
    } else {
        for (size_t i = 0; i < niov; i++)
            crc = mx_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
        mx_le32_put(h + 12, crc);
        e = write_at(fd, dir, h, sizeof h, 0);
        off_t off = ATOMIC_HEADER;
        for (size_t i = 0; !e && i < niov; off += (off_t)iov[i].iov_len, i++)
            e = write_at(fd, dir, iov[i].iov_base, iov[i].iov_len, off);
    }
    if (!e) {
        *op = "fsync";
        e = DIR_FAULT(dir);
        if (!e && fsync(fd) != 0)
            e = errno;
    }
    if (close(fd) != 0 && !e) {
        *op = "close";
        e = errno;
    }
    if (e) {
        unlink(tmp);
        return e;
    }
    *op = "rename";
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return e;
    }
    *op = "fsync";
    *file = dir;
    e = DIR_FAULT(dir);
    return e ? e : mx_fsync_dir(dir);
}

int mx_atomic_write_quiet(const char *dir, const char *name, const char magic[8], const void *payload,
                          size_t len, char *err, size_t errlen)
{
    struct iovec one = {.iov_base = (void *)payload, .iov_len = len};
    return mx_atomic_writev_quiet(dir, name, magic, &one, 1, NULL, 0, err, errlen);
}

int mx_atomic_writev_quiet(const char *dir, const char *name, const char magic[8], const struct iovec *iov,
                           size_t niov, char *stage, size_t stagecap, char *err, size_t errlen)
{
    size_t len = 0;
    for (size_t i = 0; i < niov; i++)
        len += iov[i].iov_len;
    if (!valid_name(name)) {
        mx_wal_errf(err, errlen, "%s: bad file name", name ? name : "(null)");
        return MX_EINTERNAL;
    }
    if ((uint64_t)len > UINT32_MAX) {
        mx_wal_errf(err, errlen, "%s/%s: %zu bytes is more than a file can frame", dir, name, len);
        return MX_ETOO_LARGE;
    }
    char path[ATOMIC_PATH_MAX], tmp[ATOMIC_PATH_MAX];
    const char *op = "open", *file = dir;
    int e = 0;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name) >= (int)sizeof tmp)
        e = ENAMETOOLONG;
    else
        e = write_file(dir, name, magic, iov, niov, len, stage, stagecap, &op, &file, tmp, path);
    if (!e)
        return 0;
    mx_wal_errf(err, errlen, "%s: %s: %s", file, op, strerror(e));
    return mx_retry_later(e) ? MX_EUNAVAILABLE : MX_EINTERNAL;
}

int mx_atomic_write(const char *dir, const char *name, const char magic[8], const void *payload,
                    size_t len, char *err, size_t errlen)
{
    char buf[ATOMIC_PATH_MAX + 64];
    int rc = mx_atomic_write_quiet(dir, name, magic, payload, len, buf, sizeof buf);
    if (rc && rc != MX_ETOO_LARGE && valid_name(name))
        mx_err("event=atomic_write_failed error=\"%s\"", buf);
    if (rc)
        mx_wal_errf(err, errlen, "%s", buf);
    return rc;
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
        tmp = mx_path_join(dir, names[done], ".tmp");
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
        mx_le32_put(h + 8, (uint32_t)lens[done]);
        mx_le32_put(h + 12, mx_wal_frame_crc(h + 8, payloads[done], lens[done]));
        op = "write";
        e = write_at(fd, dir, h, sizeof h, 0);
        if (!e)
            e = write_at(fd, dir, payloads[done], lens[done], ATOMIC_HEADER);
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
            tmp = mx_path_join(dir, names[renamed], ".tmp");
            path = mx_path_join(dir, names[renamed], "");
            if (!tmp || !path || rename(tmp, path) != 0) {
                e = tmp && path ? errno : ENOMEM;
                break;
            }
        }
        if (renamed) {
            int de = mx_fsync_dir(dir);
            if (!e && de) {
                op = "fsync";
                e = de;
                renamed = 0; /* not durable: report nothing written */
            }
        }
    } else {
        for (size_t i = 0; i < done; i++) { /* leave no temp files behind */
            free(tmp);
            tmp = mx_path_join(dir, names[i], ".tmp");
            if (tmp)
                unlink(tmp);
        }
    }
    if (dfd >= 0)
        close(dfd);
    if (e) {
        mx_wal_errf(err, errlen, "%s: %s: %s", dir, op, strerror(e));
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

/* Open DIR/NAME for reading: a descriptor (*path set, caller frees), or a
 * negative mx_err with err filled - MX_ENO_SUCH_ROOM when missing,
 * MX_EUNAVAILABLE when out of descriptors or memory (the file is fine, try
 * again later). */
static int open_for_read(const char *dir, const char *name, char **path, char *err, size_t errlen)
{
    *path = NULL;
    if (!valid_name(name)) {
        mx_wal_errf(err, errlen, "%s: bad file name", name ? name : "(null)");
        return MX_EINTERNAL;
    }
    *path = mx_path_join(dir, name, "");
    if (!*path) {
        mx_wal_errf(err, errlen, "out of memory");
        return MX_ENOMEM;
    }
    int fd = open(*path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    int e = errno;
    mx_wal_errf(err, errlen, "%s: %s", *path, strerror(e));
    free(*path);
    *path = NULL;
    return e == ENOENT                                   ? MX_ENO_SUCH_ROOM
           : (e == EMFILE || e == ENFILE || e == ENOMEM) ? MX_EUNAVAILABLE
                                                         : MX_EINTERNAL;
}

int mx_atomic_read(const char *dir, const char *name, const char magic[8], void **payload,
                   size_t *len, char *err, size_t errlen)
{
    *payload = NULL;
    *len = 0;
    char *path;
    int fd = open_for_read(dir, name, &path, err, errlen);
    if (fd < 0)
        return fd;
    int rc = MX_EINTERNAL;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        mx_wal_errf(err, errlen, "%s: stat: %s", path, strerror(errno));
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < ATOMIC_HEADER) {
        mx_wal_errf(err, errlen, "%s: %" PRIu64 " bytes is shorter than the %d-byte header", path,
                size, ATOMIC_HEADER);
        goto out;
    }
    if (size - ATOMIC_HEADER > UINT32_MAX || size - ATOMIC_HEADER > SIZE_MAX - 1) {
        mx_wal_errf(err, errlen, "%s: %" PRIu64 " bytes is too large", path, size);
        goto out;
    }
    size_t plen = (size_t)(size - ATOMIC_HEADER);
    uint8_t h[ATOMIC_HEADER];
    buf = mx_malloc(plen ? plen : 1);
    if (!buf) {
        mx_wal_errf(err, errlen, "%s: out of memory", path);
        rc = MX_ENOMEM;
        goto out;
    }
    int e = read_all(fd, h, sizeof h);
    if (!e)
        e = read_all(fd, buf, plen);
    if (e) {
        mx_wal_errf(err, errlen, "%s: read: %s", path, strerror(e));
        goto out;
    }
    if (memcmp(h, magic, 8) != 0) {
        mx_wal_errf(err, errlen, "%s: bad magic (not a %.8s file)", path, magic);
        goto out;
    }
    if (mx_le32_get(h + 8) != plen) {
        mx_wal_errf(err, errlen, "%s: length field says %" PRIu32 " bytes, file holds %zu", path,
                mx_le32_get(h + 8), plen);
        goto out;
    }
    uint32_t got = mx_wal_frame_crc(h + 8, buf, plen);
    if (mx_le32_get(h + 12) != got) {
        mx_wal_errf(err, errlen, "%s: checksum mismatch (stored %08" PRIx32 ", computed %08" PRIx32 ")",
                path, mx_le32_get(h + 12), got);
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

int mx_atomic_peek(const char *dir, const char *name, const char magic[8], void *out, size_t n,
                   char *err, size_t errlen)
{
    char *path;
    int fd = open_for_read(dir, name, &path, err, errlen);
    if (fd < 0)
        return fd;
    int rc = MX_EINTERNAL;
    uint8_t h[ATOMIC_HEADER];
    struct stat st;
    int e = fstat(fd, &st) != 0 ? errno : read_all(fd, h, sizeof h);
    if (e)
        mx_wal_errf(err, errlen, "%s: %s", path, strerror(e));
    else if (memcmp(h, magic, 8) != 0)
        mx_wal_errf(err, errlen, "%s: bad magic (not a %.8s file)", path, magic);
    else if ((uint64_t)st.st_size != ATOMIC_HEADER + (uint64_t)mx_le32_get(h + 8) ||
             mx_le32_get(h + 8) < n)
        mx_wal_errf(err, errlen, "%s: length field says %" PRIu32 " bytes, file holds %lld", path,
                    mx_le32_get(h + 8), (long long)st.st_size - ATOMIC_HEADER);
    else if ((e = read_all(fd, out, n)) != 0)
        mx_wal_errf(err, errlen, "%s: read: %s", path, strerror(e));
    else
        rc = 0;
    close(fd);
    free(path);
    return rc;
}
