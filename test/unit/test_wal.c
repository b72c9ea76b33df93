/* Unit tests for crc32c.c and wal.c: CRC-32C vectors, WAL framing round
 * trips across rotation and reopen, the reader's torn-tail versus corruption
 * rule (crafted damage at known offsets), remove_before, fsync counts per
 * policy, fault injection (asan builds, -DMX_FAULT_INJECTION) and atomic
 * files. Every test works in its own mkdtemp directory under /tmp and checks
 * that it leaves no descriptor open. */
#include <check.h>
#include <sys/uio.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "movexd/err.h"
#include "movexd/wal.h"

/* ---- helpers ---- */

static char *make_tmpdir(void)
{
    char t[] = "/tmp/mx-wal-test-XXXXXX";
    char *d = mkdtemp(t);
    ck_assert_ptr_nonnull(d);
    char *p = strdup(d);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                rm_tree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

static void drop_tmpdir(char *d)
{
    rm_tree(d);
    free(d);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* The payload of a record is a function of its LSN, so any reader can
 * check it. */
static void fill(uint8_t *p, size_t n, uint64_t lsn)
{
    uint64_t s = mix(lsn * 0x9E3779B97F4A7C15ULL + 1);
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            s = mix(s + i);
        p[i] = (uint8_t)(s >> (8 * (i % 8)));
    }
}

typedef size_t (*size_fn)(uint64_t lsn);

/* mostly small, some 1-byte, some larger than a 4 KiB segment */
static size_t mixed_size(uint64_t lsn)
{
    uint64_t h = mix(lsn * 7919 + 3);
    switch (h % 16) {
    case 0:
        return 1;
    case 1:
        return 4096 + (h >> 8) % 12000;
    case 2:
        return 500 + (h >> 8) % 3000;
    default:
        return 1 + (h >> 8) % 300;
    }
}

static size_t fixed100(uint64_t lsn) { return (void)lsn, 100; }
static size_t small_size(uint64_t lsn) { return 10 + lsn % 50; }

static uint64_t frame_bytes(uint64_t first, uint64_t last, size_fn f)
{
    uint64_t n = 0;
    for (uint64_t l = first; l <= last; l++)
        n += MX_WAL_HEADER + f(l);
    return n;
}

/* Append [first, last]; reserves before even LSNs only, so append's own
 * reservation is exercised too. NULL or a message. */
static const char *append_range(mx_wal *w, uint64_t first, uint64_t last, size_fn f,
                                unsigned flush_every)
{
    static char msg[256];
    uint8_t *p = malloc(20000);
    if (!p)
        return "oom";
    for (uint64_t l = first; l <= last; l++) {
        size_t n = f(l);
        fill(p, n, l);
        if (l % 2 == 0 && mx_wal_reserve(w, n) != 0) {
            snprintf(msg, sizeof msg, "reserve failed at LSN %" PRIu64, l);
            free(p);
            return msg;
        }
        uint64_t got = mx_wal_append(w, p, n);
        if (got != l) {
            snprintf(msg, sizeof msg, "append returned %" PRIu64 " for LSN %" PRIu64, got, l);
            free(p);
            return msg;
        }
        if (flush_every && l % flush_every == 0) {
            int rc = mx_wal_flush(w);
            if (rc != 0) {
                snprintf(msg, sizeof msg, "flush failed (%d) at LSN %" PRIu64, rc, l);
                free(p);
                return msg;
            }
        }
    }
    free(p);
    return NULL;
}

#define APPEND(w, a, b, f, every)                                                              \
    do {                                                                                       \
        const char *m_ = append_range((w), (a), (b), (f), (every));                            \
        ck_assert_msg(m_ == NULL, "%s", m_);                                                   \
    } while (0)

static mx_wal *open_wal(const char *dir, enum mx_fsync_policy pol, size_t seg, uint64_t next)
{
    struct mx_wal_opts o = {.dir = dir, .fsync = pol, .segment_bytes = seg};
    mx_wal *w = NULL;
    char err[512] = "";
    int rc = mx_wal_open(&w, &o, next, err, sizeof err);
    ck_assert_msg(rc == 0, "open: %s", err);
    ck_assert_ptr_nonnull(w);
    return w;
}

enum end_kind { END_CLEAN, END_TORN };

/* Read the whole log: records [first, last] in order with the right
 * payloads, then the given end. NULL or a message. */
static const char *verify(const char *dir, uint64_t first, uint64_t last, size_fn f,
                          enum end_kind end)
{
    static char msg[1024];
    mx_wal_reader *r = NULL;
    char err[512] = "";
    if (mx_wal_reader_open(&r, dir, err, sizeof err) != 0) {
        snprintf(msg, sizeof msg, "reader_open: %s", err);
        return msg;
    }
    /* every directory here is written by this writer: the end-zeros rule
     * holds whatever happened (crash, torn write, full disk) */
    mx_wal_reader_require_end_zeros(r);
    uint8_t *want = malloc(20000);
    const void *p;
    size_t len;
    uint64_t lsn, expect = first;
    int rc;
    const char *res = NULL;
    while ((rc = mx_wal_reader_next(r, &p, &len, &lsn, err, sizeof err)) == 1) {
        if (lsn != expect || expect > last) {
            snprintf(msg, sizeof msg, "got LSN %" PRIu64 ", expected %" PRIu64 " (last %" PRIu64 ")",
                     lsn, expect, last);
            res = msg;
            break;
        }
        size_t n = f(lsn);
        fill(want, n, lsn);
        if (len != n || memcmp(p, want, n) != 0) {
            snprintf(msg, sizeof msg, "LSN %" PRIu64 ": %zu bytes, expected %zu, or content differs",
                     lsn, len, n);
            res = msg;
            break;
        }
        expect++;
    }
    if (!res && rc < 0) {
        snprintf(msg, sizeof msg, "reader error after LSN %" PRIu64 ": %s", expect - 1, err);
        res = msg;
    }
    if (!res && expect != last + 1) {
        snprintf(msg, sizeof msg, "log ended at LSN %" PRIu64 ", expected %" PRIu64, expect - 1,
                 last);
        res = msg;
    }
    if (!res && (mx_wal_reader_torn(r, NULL, NULL) != (end == END_TORN))) {
        snprintf(msg, sizeof msg, "torn=%d, expected %d", mx_wal_reader_torn(r, NULL, NULL),
                 end == END_TORN);
        res = msg;
    }
    if (!res && mx_wal_reader_next_lsn(r) != last + 1 && last >= first) {
        snprintf(msg, sizeof msg, "next_lsn %" PRIu64 ", expected %" PRIu64,
                 mx_wal_reader_next_lsn(r), last + 1);
        res = msg;
    }
    if (!res && end == END_TORN && mx_wal_reader_truncate_tail(r, err, sizeof err) != 0) {
        snprintf(msg, sizeof msg, "truncate_tail: %s", err);
        res = msg;
    }
    free(want);
    mx_wal_reader_close(r);
    return res;
}

#define VERIFY(dir, a, b, f, end)                                                              \
    do {                                                                                       \
        const char *m_ = verify((dir), (a), (b), (f), (end));                                  \
        ck_assert_msg(m_ == NULL, "%s", m_);                                                   \
    } while (0)

/* Read until the reader stops; returns its last result (0 or -1), the
 * number of records and the error text. */
static int read_records(const char *dir, int end_zeros, uint64_t *count, char *err, size_t errlen)
{
    mx_wal_reader *r = NULL;
    ck_assert_int_eq(mx_wal_reader_open(&r, dir, err, errlen), 0);
    if (end_zeros)
        mx_wal_reader_require_end_zeros(r);
    const void *p;
    size_t len;
    uint64_t lsn;
    int rc;
    *count = 0;
    while ((rc = mx_wal_reader_next(r, &p, &len, &lsn, err, errlen)) == 1)
        (*count)++;
    if (rc < 0) {
        /* stays failed */
        char again[512];
        ck_assert_int_eq(mx_wal_reader_next(r, &p, &len, &lsn, again, sizeof again), -1);
        ck_assert_str_eq(again, err);
    }
    mx_wal_reader_close(r);
    return rc;
}

static int read_all_records(const char *dir, uint64_t *count, char *err, size_t errlen)
{
    return read_records(dir, 0, count, err, errlen);
}

static void seg_path(char *out, size_t n, const char *dir, uint64_t lsn)
{
    snprintf(out, n, "%s/wal-%020" PRIu64 ".log", dir, lsn);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
    return (uint64_t)st.st_size;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void put_at(const char *path, uint64_t off, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void flip_bit(const char *path, uint64_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    uint8_t b;
    ck_assert_int_eq(pread(fd, &b, 1, (off_t)off), 1);
    b ^= mask;
    ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void append_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* A correctly framed record with the payload of `lsn`. */
static size_t make_frame(uint8_t *out, uint64_t lsn, size_t n)
{
    out[0] = (uint8_t)n;
    out[1] = (uint8_t)(n >> 8);
    out[2] = (uint8_t)(n >> 16);
    out[3] = (uint8_t)(n >> 24);
    fill(out + 8, n, lsn);
    uint32_t c = mx_crc32c(mx_crc32c(0, out, 4), out + 8, n);
    for (int i = 0; i < 4; i++)
        out[4 + i] = (uint8_t)(c >> (8 * i));
    return n + 8;
}

/* Sorted first LSNs of the segment files in dir. */
static size_t list_segs(const char *dir, uint64_t *out, size_t max)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        unsigned long long v;
        char tail[8];
        if (strlen(de->d_name) == 28 && sscanf(de->d_name, "wal-%20llu%7s", &v, tail) == 2 &&
            !strcmp(tail, ".log") && n < max)
            out[n++] = v;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
            uint64_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

/* Write [first, last] in a child that then dies without closing: the
 * segment keeps its preallocated zeros, as after a crash. */
static void write_then_crash(const char *dir, size_t seg, uint64_t first, uint64_t last,
                             size_fn f)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct mx_wal_opts o = {.dir = dir, .fsync = MX_FSYNC_ALWAYS, .segment_bytes = seg};
        mx_wal *w = NULL;
        char err[256];
        if (mx_wal_open(&w, &o, first, err, sizeof err) != 0)
            _exit(2);
        if (append_range(w, first, last, f, 7) != NULL)
            _exit(3);
        if (mx_wal_flush(w) != 0)
            _exit(4);
        _exit(0);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
}

#define FD_BEGIN int fds_at_start_ = count_fds()
#define FD_END ck_assert_int_eq(count_fds(), fds_at_start_)

/* ---- CRC-32C ---- */

static uint32_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

START_TEST(crc_known_values)
{
    ck_assert_uint_eq(mx_crc32c(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(mx_crc32c_portable(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(mx_crc32c(0, "", 0), 0);
    ck_assert_uint_eq(mx_crc32c(0, NULL, 0), 0);
    /* RFC 3720 (iSCSI) B.4 */
    uint8_t b[32];
    memset(b, 0, sizeof b);
    ck_assert_uint_eq(mx_crc32c(0, b, 32), 0x8A9136AAu);
    memset(b, 0xff, sizeof b);
    ck_assert_uint_eq(mx_crc32c(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    ck_assert_uint_eq(mx_crc32c(0, b, 32), 0x46DD794Eu);
    ck_assert_uint_eq(mx_crc32c_portable(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(31 - i);
    ck_assert_uint_eq(mx_crc32c(0, b, 32), 0x113FDB5Cu);
    /* chaining */
    for (size_t k = 0; k <= 9; k++)
        ck_assert_uint_eq(mx_crc32c(mx_crc32c(0, "123456789", k), "123456789" + k, 9 - k),
                          0xE3069283u);
}
END_TEST

START_TEST(crc_paths_agree)
{
    static uint8_t buf[70000];
    fill(buf, sizeof buf, 42);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n < 600; n++) {
            uint32_t want = crc_bitwise(buf + off, n);
            ck_assert_uint_eq(mx_crc32c(0, buf + off, n), want);
            ck_assert_uint_eq(mx_crc32c_portable(0, buf + off, n), want);
            size_t cut = n / 3;
            ck_assert_uint_eq(mx_crc32c(mx_crc32c(0, buf + off, cut), buf + off + cut, n - cut),
                              want);
        }
    size_t big[] = {4095, 4096, 65536, 69999};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
        uint32_t want = crc_bitwise(buf + 1, big[i]);
        ck_assert_uint_eq(mx_crc32c(0, buf + 1, big[i]), want);
        ck_assert_uint_eq(mx_crc32c_portable(0, buf + 1, big[i]), want);
    }
}
END_TEST

/* ---- writer and reader ---- */

START_TEST(roundtrip_many)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_NO, 4096, 1);
    ck_assert_uint_eq(mx_wal_next_lsn(w), 1);
    ck_assert_uint_eq(mx_wal_written_lsn(w), 0);
    APPEND(w, 1, 3000, mixed_size, 17);
    ck_assert_uint_eq(mx_wal_next_lsn(w), 3001);
    ck_assert_uint_ge(mx_wal_written_lsn(w), 2992); /* the last multiple of 17 */
    ck_assert_uint_gt(mx_wal_pending_bytes(w), 0);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    ck_assert_uint_eq(mx_wal_written_lsn(w), 3000);
    ck_assert_uint_eq(mx_wal_pending_bytes(w), 0);
    ck_assert_uint_ge(mx_wal_disk_bytes(w), frame_bytes(1, 3000, mixed_size));
    mx_wal_close(w);
    VERIFY(dir, 1, 3000, mixed_size, END_CLEAN);

    /* every record larger than a segment got a segment of exactly its size
     * and the zero length word kept after it */
    uint64_t segs[4096];
    size_t n = list_segs(dir, segs, 4096);
    ck_assert_uint_gt(n, 100);
    ck_assert_uint_eq(segs[0], 1);
    for (size_t i = 0; i + 1 < n; i++) {
        char p[512];
        seg_path(p, sizeof p, dir, segs[i]);
        uint64_t sz = file_size(p);
        if (mixed_size(segs[i]) + 8 + MX_WAL_END_ZEROS > 4096) {
            ck_assert_uint_eq(segs[i + 1], segs[i] + 1);
            ck_assert_uint_eq(sz, mixed_size(segs[i]) + 8 + MX_WAL_END_ZEROS);
        } else {
            ck_assert_uint_eq(sz, 4096);
            ck_assert_uint_le(frame_bytes(segs[i], segs[i + 1] - 1, mixed_size) + MX_WAL_END_ZEROS, 4096);
        }
    }
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

/* Under `no` and `everysec` each MiB of records written starts its
 * writeback at once (so a later fdatasync holds the loop for less); never
 * under `always` (each flush syncs anyway); the log reads back the same. */
static size_t fixed_1k(uint64_t lsn)
{
    (void)lsn;
    return 1000;
}

START_TEST(early_writeback_per_mib)
{
    FD_BEGIN;
    enum mx_fsync_policy pols[] = {MX_FSYNC_NO, MX_FSYNC_EVERYSEC, MX_FSYNC_ALWAYS};
    for (int k = 0; k < 3; k++) {
        char *dir = make_tmpdir();
        mx_wal *w = open_wal(dir, pols[k], 64 << 20, 1);
        /* 5,000 records of 1,000 bytes, a flush every 10: ~5 MB */
        APPEND(w, 1, 5000, fixed_1k, 10);
        ck_assert_int_eq(mx_wal_flush(w), 0);
        if (pols[k] == MX_FSYNC_ALWAYS)
            ck_assert_uint_eq(mx_wal_writebacks(w), 0);
        else
            ck_assert_msg(mx_wal_writebacks(w) >= 4 && mx_wal_writebacks(w) <= 5,
                          "policy %d: %llu writebacks for ~5 MB", k,
                          (unsigned long long)mx_wal_writebacks(w));
        mx_wal_close(w);
        VERIFY(dir, 1, 5000, fixed_1k, END_CLEAN);
        drop_tmpdir(dir);
    }
    FD_END;
}
END_TEST

/* The snapshot writer thread syncs the WAL through mx_wal_sync_handle: no
 * descriptor when nothing is unsynced; otherwise one of its own (an
 * independent file offset shows it is not a dup of the writer's), of the
 * current segment; a failure reported back fails the WAL for good. */
START_TEST(sync_handle_for_the_writer_thread)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_NO, 64 << 10, 1);
    int fd = 123;
    char name[32] = "";
    ck_assert_int_eq(mx_wal_sync_handle(w, &fd, name), 0);
    ck_assert_int_eq(fd, -1); /* nothing written yet */
    APPEND(w, 1, 20, fixed100, 0); /* buffered, not flushed */
    ck_assert_int_eq(mx_wal_sync_handle(w, &fd, name), 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(mx_wal_pending_bytes(w), 0); /* the handle wrote the buffer first */
    ck_assert_str_eq(name, "wal-00000000000000000001.log");
    ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 0);
    ck_assert_int_eq(lseek(fd, 100, SEEK_SET), 100);
    int again;
    ck_assert_int_eq(mx_wal_sync_handle(w, &again, name), 0);
    ck_assert_int_eq(lseek(again, 0, SEEK_CUR), 0); /* its own description */
    close(again);
    ck_assert_int_eq(fdatasync(fd), 0);
    close(fd);
    uint64_t before = mx_wal_fsyncs(w);
    mx_wal_sync_done(w, name, 10, 0);
    ck_assert_uint_eq(mx_wal_fsyncs(w), before + 1);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    mx_wal_sync_done(w, name, 10, EIO); /* as a failed fdatasync of its own */
    ck_assert_int_eq(mx_wal_flush(w), MX_EINTERNAL);
    ck_assert_int_eq(mx_wal_sync_handle(w, &fd, name), MX_EINTERNAL);
    mx_wal_close(w);
    VERIFY(dir, 1, 20, fixed100, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(rotation_names_follow_lsns)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    /* 108-byte frames, 1000-byte segments: 9 records per segment */
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1000, 1);
    APPEND(w, 1, 50, fixed100, 1);
    uint64_t segs[16];
    size_t n = list_segs(dir, segs, 16);
    ck_assert_uint_eq(n, 6);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(segs[i], 1 + 9 * i);
    ck_assert_uint_eq(mx_wal_disk_bytes(w), 6 * 1000);
    mx_wal_close(w);
    /* close gives the current segment's unused space back, but for the
     * zero length word after the records */
    char p[512];
    seg_path(p, sizeof p, dir, 46);
    ck_assert_uint_eq(file_size(p), 5 * 108 + MX_WAL_END_ZEROS);
    VERIFY(dir, 1, 50, fixed100, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(reopen_starts_new_segment)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 20, 1);
    APPEND(w, 1, 10, small_size, 0);
    mx_wal_close(w); /* close flushes */
    w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 20, 11);
    ck_assert_uint_eq(mx_wal_next_lsn(w), 11);
    APPEND(w, 11, 20, small_size, 3);
    mx_wal_close(w);
    uint64_t segs[8];
    ck_assert_uint_eq(list_segs(dir, segs, 8), 2);
    ck_assert_uint_eq(segs[0], 1);
    ck_assert_uint_eq(segs[1], 11);
    VERIFY(dir, 1, 20, small_size, END_CLEAN);

    /* opened and closed without a record: a file of one zero length word
     * keeps the LSN */
    w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 20, 21);
    mx_wal_close(w);
    char p[512];
    seg_path(p, sizeof p, dir, 21);
    ck_assert_uint_eq(file_size(p), MX_WAL_END_ZEROS);
    VERIFY(dir, 1, 20, small_size, END_CLEAN);
    /* and is reused by the next open */
    w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 20, 21);
    APPEND(w, 21, 25, small_size, 0);
    mx_wal_close(w);
    ck_assert_uint_eq(list_segs(dir, segs, 8), 3);
    VERIFY(dir, 1, 25, small_size, END_CLEAN);

    /* recovery skipped: the writer refuses to write over or behind records */
    struct mx_wal_opts o = {.dir = dir, .fsync = MX_FSYNC_ALWAYS, .segment_bytes = 1 << 20};
    char err[512];
    w = NULL;
    ck_assert_int_eq(mx_wal_open(&w, &o, 21, err, sizeof err), MX_EINTERNAL);
    ck_assert_ptr_null(w);
    ck_assert_msg(strstr(err, "wal-00000000000000000021.log") != NULL, "%s", err);
    ck_assert_int_eq(mx_wal_open(&w, &o, 5, err, sizeof err), MX_EINTERNAL);
    ck_assert_msg(strstr(err, "wal-00000000000000000021.log") != NULL, "%s", err);
    ck_assert_int_eq(mx_wal_open(&w, &o, 0, err, sizeof err), MX_EINTERNAL);
    VERIFY(dir, 1, 25, small_size, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(open_creates_dir)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    char sub[256];
    snprintf(sub, sizeof sub, "%s/wal", dir);
    mx_wal *w = open_wal(sub, MX_FSYNC_EVERYSEC, 0, 1);
    struct stat st;
    ck_assert_int_eq(stat(sub, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 0777, 0700);
    /* 0 = the 64 MiB default, preallocated */
    ck_assert_uint_eq(mx_wal_disk_bytes(w), (uint64_t)64 << 20);
    char p[512];
    seg_path(p, sizeof p, sub, 1);
    ck_assert_uint_eq(file_size(p), (uint64_t)64 << 20);
    APPEND(w, 1, 3, small_size, 0);
    mx_wal_close(w);
    VERIFY(sub, 1, 3, small_size, END_CLEAN);

    struct mx_wal_opts o = {.dir = sub, .fsync = MX_FSYNC_NO, .segment_bytes = 63};
    char err[256];
    w = NULL;
    ck_assert_int_eq(mx_wal_open(&w, &o, 4, err, sizeof err), MX_EINTERNAL);
    ck_assert_ptr_null(w);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(reader_empty_and_missing)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    char missing[256];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    const char *dirs[] = {missing, dir};
    for (int i = 0; i < 2; i++) {
        mx_wal_reader *r = NULL;
        char err[256];
        ck_assert_int_eq(mx_wal_reader_open(&r, dirs[i], err, sizeof err), 0);
        const void *p;
        size_t len;
        uint64_t lsn;
        ck_assert_int_eq(mx_wal_reader_next(r, &p, &len, &lsn, err, sizeof err), 0);
        ck_assert_int_eq(mx_wal_reader_next(r, &p, &len, &lsn, err, sizeof err), 0);
        ck_assert_int_eq(mx_wal_reader_torn(r, NULL, NULL), 0);
        ck_assert_int_eq(mx_wal_reader_truncate_tail(r, err, sizeof err), 0);
        ck_assert_uint_eq(mx_wal_reader_next_lsn(r), 1);
        mx_wal_reader_close(r);
    }
    /* other files are not segments */
    char p[512];
    const char *junk[] = {"FAULT", "x.tmp", "wal-12.log", "wal-00000000000000000001.log.tmp",
                          "wal-0000000000000000000x.log", "snapshot"};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, junk[i]);
        write_file(p, "garbage garbage garbage");
    }
    VERIFY(dir, 1, 0, small_size, END_CLEAN);
    uint64_t count;
    char err[512];
    ck_assert_int_eq(read_all_records(dir, &count, err, sizeof err), 0);
    ck_assert_uint_eq(count, 0);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(crash_leaves_clean_preallocated_tail)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    write_then_crash(dir, 1 << 16, 1, 100, small_size);
    char p[512];
    seg_path(p, sizeof p, dir, 1);
    ck_assert_uint_eq(file_size(p), 1 << 16);
    VERIFY(dir, 1, 100, small_size, END_CLEAN);
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 16, 101);
    APPEND(w, 101, 120, small_size, 5);
    mx_wal_close(w);
    VERIFY(dir, 1, 120, small_size, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

/* Recovery as the daemon does it: read, cut a torn tail, reopen, append. */
static void recover_and_continue(const char *dir, uint64_t last_good, uint64_t more, int torn)
{
    if (torn)
        VERIFY(dir, 1, last_good, small_size, END_TORN); /* also truncates */
    VERIFY(dir, 1, last_good, small_size, END_CLEAN);
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 16, last_good + 1);
    APPEND(w, last_good + 1, last_good + more, small_size, 4);
    mx_wal_close(w);
    VERIFY(dir, 1, last_good + more, small_size, END_CLEAN);
}

START_TEST(torn_header_only)
{
    FD_BEGIN;
    for (int prealloc = 0; prealloc < 2; prealloc++) {
        char *dir = make_tmpdir();
        char p[512];
        seg_path(p, sizeof p, dir, 1);
        uint64_t end = frame_bytes(1, 40, small_size);
        uint8_t hdr[8] = {200, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef};
        if (prealloc) {
            write_then_crash(dir, 1 << 16, 1, 40, small_size);
            put_at(p, end, hdr, sizeof hdr);
        } else {
            mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 16, 1);
            APPEND(w, 1, 40, small_size, 0);
            mx_wal_close(w);
            /* a clean close keeps one zero length word after the records */
            ck_assert_uint_eq(file_size(p), end + MX_WAL_END_ZEROS);
            append_file(p, hdr, sizeof hdr);
        }
        mx_wal_reader *r = NULL;
        char err[512];
        uint64_t count;
        ck_assert_int_eq(read_all_records(dir, &count, err, sizeof err), 0);
        ck_assert_uint_eq(count, 40);
        ck_assert_int_eq(mx_wal_reader_open(&r, dir, err, sizeof err), 0);
        const void *pl;
        size_t len;
        uint64_t lsn;
        while (mx_wal_reader_next(r, &pl, &len, &lsn, err, sizeof err) == 1)
            ;
        const char *file = NULL;
        uint64_t off = 0;
        ck_assert_int_eq(mx_wal_reader_torn(r, &file, &off), 1);
        ck_assert_str_eq(file, p);
        ck_assert_uint_eq(off, end);
        ck_assert_uint_eq(mx_wal_reader_next_lsn(r), 41);
        ck_assert_int_eq(mx_wal_reader_truncate_tail(r, err, sizeof err), 0);
        ck_assert_int_eq(mx_wal_reader_truncate_tail(r, err, sizeof err), 0);
        mx_wal_reader_close(r);
        ck_assert_uint_eq(file_size(p), end + MX_WAL_END_ZEROS); /* cut after a zero word */
        recover_and_continue(dir, 40, 25, 0); /* already cut */
        drop_tmpdir(dir);
    }
    FD_END;
}
END_TEST

START_TEST(torn_half_payload)
{
    FD_BEGIN;
    for (int prealloc = 0; prealloc < 2; prealloc++) {
        char *dir = make_tmpdir();
        char p[512];
        seg_path(p, sizeof p, dir, 1);
        uint64_t end = frame_bytes(1, 30, small_size);
        uint8_t frame[1100];
        size_t n = make_frame(frame, 31, 1000);
        if (prealloc) {
            write_then_crash(dir, 1 << 16, 1, 30, small_size);
            put_at(p, end, frame, n / 2);
        } else {
            mx_wal *w = open_wal(dir, MX_FSYNC_NO, 1 << 16, 1);
            APPEND(w, 1, 30, small_size, 0);
            mx_wal_close(w);
            append_file(p, frame, n / 2);
        }
        recover_and_continue(dir, 30, 10, 1);
        ck_assert_uint_eq(file_size(p), end + MX_WAL_END_ZEROS);
        drop_tmpdir(dir);
    }
    FD_END;
}
END_TEST

START_TEST(torn_first_record_of_last_segment)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    /* 9 records per 1000-byte segment: LSN 10 opens wal-10 */
    write_then_crash(dir, 1000, 1, 10, fixed100);
    char p[512];
    seg_path(p, sizeof p, dir, 10);
    flip_bit(p, 8 + 50, 0x10);
    VERIFY(dir, 1, 9, fixed100, END_TORN);
    ck_assert_uint_eq(file_size(p), MX_WAL_END_ZEROS);
    mx_wal_reader *r = NULL;
    char err[256];
    ck_assert_int_eq(mx_wal_reader_open(&r, dir, err, sizeof err), 0);
    const void *pl;
    size_t len;
    uint64_t lsn;
    while (mx_wal_reader_next(r, &pl, &len, &lsn, err, sizeof err) == 1)
        ;
    ck_assert_uint_eq(mx_wal_reader_next_lsn(r), 10);
    mx_wal_reader_close(r);
    /* the writer reuses the empty wal-10 */
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1000, 10);
    APPEND(w, 10, 30, fixed100, 2);
    mx_wal_close(w);
    VERIFY(dir, 1, 30, fixed100, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

/* Expect the reader to stop with an error naming `path` and `off`. */
#define EXPECT_CORRUPT(dir, path, off, records)                                                \
    do {                                                                                       \
        char e_[1024], w_[600];                                                                \
        uint64_t c_;                                                                           \
        ck_assert_int_eq(read_all_records((dir), &c_, e_, sizeof e_), -1);                     \
        ck_assert_uint_eq(c_, (records));                                                      \
        snprintf(w_, sizeof w_, "%s: offset %" PRIu64 ": ", (path), (uint64_t)(off));          \
        ck_assert_msg(strncmp(e_, w_, strlen(w_)) == 0, "error '%s' does not start '%s'", e_, \
                      w_);                                                                     \
    } while (0)

START_TEST(bitflip_mid_last_segment)
{
    FD_BEGIN;
    for (int prealloc = 0; prealloc < 2; prealloc++) {
        char *dir = make_tmpdir();
        char p[512];
        seg_path(p, sizeof p, dir, 1);
        if (prealloc) {
            write_then_crash(dir, 1 << 16, 1, 50, small_size);
        } else {
            mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 16, 1);
            APPEND(w, 1, 50, small_size, 0);
            mx_wal_close(w);
        }
        uint64_t off20 = frame_bytes(1, 19, small_size);
        flip_bit(p, off20 + 8 + 3, 0x04); /* payload */
        EXPECT_CORRUPT(dir, p, off20, 19);
        flip_bit(p, off20 + 8 + 3, 0x04);
        VERIFY(dir, 1, 50, small_size, END_CLEAN);
        flip_bit(p, off20 + 5, 0x80); /* stored crc */
        EXPECT_CORRUPT(dir, p, off20, 19);
        flip_bit(p, off20 + 5, 0x80);
        flip_bit(p, off20, 0x01); /* length: 1 byte off */
        EXPECT_CORRUPT(dir, p, off20, 19);
        flip_bit(p, off20, 0x01);
        /* the last record damaged: that is a torn write */
        uint64_t off50 = frame_bytes(1, 49, small_size);
        flip_bit(p, off50 + 9, 0x01);
        VERIFY(dir, 1, 49, small_size, END_TORN);
        drop_tmpdir(dir);
    }
    FD_END;
}
END_TEST

START_TEST(bitflip_non_last_segment)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1000, 1);
    APPEND(w, 1, 30, fixed100, 5);
    mx_wal_close(w);
    char p[512];
    /* the very last record of wal-10 (LSN 18): would look torn in the last
     * segment, but a later segment exists */
    seg_path(p, sizeof p, dir, 10);
    flip_bit(p, 8 * 108 + 8 + 99, 0x40);
    EXPECT_CORRUPT(dir, p, 8 * 108, 17);
    flip_bit(p, 8 * 108 + 8 + 99, 0x40);
    /* the first record of the first segment */
    seg_path(p, sizeof p, dir, 1);
    flip_bit(p, 8, 0x01);
    EXPECT_CORRUPT(dir, p, 0, 0);
    flip_bit(p, 8, 0x01);
    VERIFY(dir, 1, 30, fixed100, END_CLEAN);
    /* a non-last segment that ends early (zeros) leaves a gap */
    seg_path(p, sizeof p, dir, 10);
    uint8_t z[108 * 9];
    memset(z, 0, sizeof z);
    put_at(p, 5 * 108, z, 4 * 108);
    char err[1024];
    uint64_t count;
    ck_assert_int_eq(read_all_records(dir, &count, err, sizeof err), -1);
    ck_assert_uint_eq(count, 14);
    char q[512];
    seg_path(q, sizeof q, dir, 19);
    ck_assert_msg(strstr(err, q) && strstr(err, p), "%s", err);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(zero_header_mid_log)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    char p[512];
    seg_path(p, sizeof p, dir, 1);
    write_then_crash(dir, 1 << 16, 1, 20, small_size);
    uint64_t end = frame_bytes(1, 20, small_size);
    /* zeros where LSN 21 should start, then a valid record */
    uint8_t frame[200];
    size_t n = make_frame(frame, 99, 60);
    put_at(p, end + 8, frame, n);
    EXPECT_CORRUPT(dir, p, end, 20);
    /* zeros overwriting a length word in the middle */
    uint8_t z[200] = {0};
    put_at(p, end + 8, z, n); /* remove the stray frame again */
    VERIFY(dir, 1, 20, small_size, END_CLEAN);
    uint64_t off7 = frame_bytes(1, 6, small_size);
    put_at(p, off7, z, 4);
    EXPECT_CORRUPT(dir, p, off7, 6);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(huge_length)
{
    FD_BEGIN;
    uint8_t huge[8] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    for (int prealloc = 0; prealloc < 2; prealloc++) {
        char *dir = make_tmpdir();
        char p[512];
        seg_path(p, sizeof p, dir, 1);
        uint64_t end = frame_bytes(1, 25, small_size);
        if (prealloc) {
            write_then_crash(dir, 1 << 16, 1, 25, small_size);
            put_at(p, end, huge, sizeof huge);
        } else {
            mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 16, 1);
            APPEND(w, 1, 25, small_size, 0);
            mx_wal_close(w);
            append_file(p, huge, sizeof huge);
        }
        /* at the tail: torn */
        recover_and_continue(dir, 25, 5, 1);
        /* in the middle: corruption */
        uint64_t off10 = frame_bytes(1, 9, small_size);
        put_at(p, off10, huge, 4);
        EXPECT_CORRUPT(dir, p, off10, 9);
        drop_tmpdir(dir);
    }
    FD_END;
}
END_TEST

/* The end-zeros rule (docs/STORAGE.md, "Which cuts are a crash"): the
 * writer keeps a zero length word after the records of every segment, so
 * a last segment cut at a record boundary, inside a record, or to 0 bytes
 * is refused naming the file - records that were acknowledged may be gone -
 * while a crash's torn tail (inside the preallocated file) still reads as
 * one. Without the rule (a data directory of an older movexd) such cuts
 * read as a shorter log, which is how acked records went missing silently. */
START_TEST(end_zeros_rule_refuses_a_cut_last_segment)
{
    FD_BEGIN;
    for (int cut = 0; cut < 5; cut++) {
        char *dir = make_tmpdir();
        /* 9 records per 1000-byte segment: wal-1, wal-10 (records 10..15) */
        write_then_crash(dir, 1000, 1, 15, fixed100);
        char p[512];
        seg_path(p, sizeof p, dir, 10);
        uint64_t recs = 6 * 108;
        char err[1024];
        uint64_t count;
        if (cut == 0) {
            /* as the crash left it: all 15, under either rule */
            ck_assert_int_eq(read_records(dir, 1, &count, err, sizeof err), 0);
            ck_assert_uint_eq(count, 15);
        } else if (cut == 4) {
            /* a crash's torn write: half of record 16 in the preallocated
             * space, zeros after it: a torn tail, not a cut */
            uint8_t frame[200];
            size_t n = make_frame(frame, 16, 100);
            put_at(p, recs, frame, n / 2);
            ck_assert_int_eq(read_records(dir, 1, &count, err, sizeof err), 0);
            ck_assert_uint_eq(count, 15);
        } else {
            /* 1: at the boundary after record 13; 2: inside record 14
             * (its header intact); 3: to 0 bytes */
            uint64_t at = cut == 1 ? 4 * 108 : cut == 2 ? 4 * 108 + 50 : 0;
            ck_assert_int_eq(truncate(p, (off_t)at), 0);
            ck_assert_int_eq(read_records(dir, 1, &count, err, sizeof err), -1);
            ck_assert_msg(strncmp(err, p, strlen(p)) == 0 && strstr(err, "cut short") &&
                              strstr(err, "acknowledged records may be missing"),
                          "cut %d: %s", cut, err);
            /* the old rule took the cut for the end of the log */
            ck_assert_int_eq(read_records(dir, 0, &count, err, sizeof err), 0);
            ck_assert_uint_eq(count, cut == 3 ? 9 : 13);
        }
        drop_tmpdir(dir);
    }
    FD_END;
}
END_TEST

START_TEST(segment_gap)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_NO, 1000, 1);
    APPEND(w, 1, 40, fixed100, 0);
    mx_wal_close(w);
    char p1[512], p10[512], p19[512];
    seg_path(p1, sizeof p1, dir, 1);
    seg_path(p10, sizeof p10, dir, 10);
    seg_path(p19, sizeof p19, dir, 19);
    ck_assert_int_eq(unlink(p10), 0);
    char err[1024];
    uint64_t count;
    ck_assert_int_eq(read_all_records(dir, &count, err, sizeof err), -1);
    ck_assert_uint_eq(count, 9);
    /* names the segment before the gap, the one after, the missing LSNs,
     * and what to do */
    ck_assert_msg(strncmp(err, p1, strlen(p1)) == 0 && strstr(err, p19) &&
                      strstr(err, "LSNs 10..18 are missing") && strstr(err, "restore this segment"),
                  "%s", err);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(remove_before_whole_segments)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_EVERYSEC, 1000, 1);
    APPEND(w, 1, 50, fixed100, 10); /* segments 1, 10, 19, 28, 37, 46 */
    ck_assert_int_eq(mx_wal_flush(w), 0);
    uint64_t segs[16];
    ck_assert_uint_eq(mx_wal_disk_bytes(w), 6000);
    ck_assert_int_eq(mx_wal_remove_before(w, 1), 0);
    ck_assert_int_eq(mx_wal_remove_before(w, 9), 0);
    ck_assert_int_eq(mx_wal_remove_before(w, 10), 1); /* wal-1 holds 1..9 */
    ck_assert_uint_eq(mx_wal_disk_bytes(w), 5000);
    ck_assert_int_eq(mx_wal_remove_before(w, 18), 0);
    ck_assert_int_eq(mx_wal_remove_before(w, 19), 1);
    ck_assert_uint_eq(list_segs(dir, segs, 16), 4);
    ck_assert_uint_eq(segs[0], 19);
    VERIFY(dir, 19, 50, fixed100, END_CLEAN);
    /* never the current segment */
    ck_assert_int_eq(mx_wal_remove_before(w, UINT64_MAX), 3);
    ck_assert_uint_eq(list_segs(dir, segs, 16), 1);
    ck_assert_uint_eq(segs[0], 46);
    ck_assert_uint_eq(mx_wal_disk_bytes(w), 1000);
    ck_assert_int_eq(mx_wal_remove_before(w, UINT64_MAX), 0);
    APPEND(w, 51, 60, fixed100, 0); /* rotates at 55 */
    ck_assert_int_eq(mx_wal_remove_before(w, 55), 1);
    mx_wal_close(w);
    VERIFY(dir, 55, 60, fixed100, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(fsync_always_group_commit)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 20, 1);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 0);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 0);
    for (uint64_t round = 0; round < 5; round++) {
        APPEND(w, 1 + round * 3, 3 + round * 3, small_size, 0);
        ck_assert_uint_eq(mx_wal_written_lsn(w), round * 3);
        ck_assert_int_eq(mx_wal_flush(w), 0);
        ck_assert_uint_eq(mx_wal_written_lsn(w), 3 + round * 3);
        ck_assert_uint_eq(mx_wal_fsyncs(w), round + 1);
        ck_assert_int_eq(mx_wal_flush(w), 0);
        ck_assert_int_eq(mx_wal_tick(w), 0);
        ck_assert_uint_eq(mx_wal_fsyncs(w), round + 1);
    }
    /* sync: nothing new written, nothing to sync */
    ck_assert_int_eq(mx_wal_sync(w), 0);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 5);
    mx_wal_close(w);
    VERIFY(dir, 1, 15, small_size, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(fsync_no_never)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_NO, 1 << 20, 1);
    for (uint64_t round = 0; round < 20; round++) {
        APPEND(w, 1 + round * 5, 5 + round * 5, small_size, 0);
        ck_assert_int_eq(mx_wal_flush(w), 0);
        ck_assert_int_eq(mx_wal_tick(w), 0);
    }
    ck_assert_uint_eq(mx_wal_fsyncs(w), 0);
    /* an explicit sync does sync, once */
    ck_assert_int_eq(mx_wal_sync(w), 0);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 1);
    ck_assert_int_eq(mx_wal_sync(w), 0);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 1);
    mx_wal_close(w);
    VERIFY(dir, 1, 100, small_size, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(fsync_everysec)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mx_wal *w = open_wal(dir, MX_FSYNC_EVERYSEC, 1 << 20, 1);
    APPEND(w, 1, 3, small_size, 0);
    uint64_t c[4];
    ck_assert_int_eq(mx_wal_flush(w), 0); /* last sync (open) < 1 s ago */
    c[0] = mx_wal_fsyncs(w);
    ck_assert_int_eq(mx_wal_tick(w), 0);
    c[1] = mx_wal_fsyncs(w);
    ck_assert_int_eq(mx_wal_tick(w), 0); /* nothing written since */
    c[2] = mx_wal_fsyncs(w);
    APPEND(w, 4, 6, small_size, 0);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    c[3] = mx_wal_fsyncs(w);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* exact counts unless this machine stalled for most of a second */
    if (t1.tv_sec - t0.tv_sec < 1 || (t1.tv_sec - t0.tv_sec == 1 && t1.tv_nsec < t0.tv_nsec)) {
        ck_assert_uint_eq(c[0], 0);
        ck_assert_uint_eq(c[1], 1);
        ck_assert_uint_eq(c[2], 1);
        ck_assert_uint_eq(c[3], 1);
    }
    uint64_t base = mx_wal_fsyncs(w);
    struct timespec ts = {1, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    APPEND(w, 7, 9, small_size, 0);
    ck_assert_int_eq(mx_wal_flush(w), 0); /* more than a second: syncs */
    ck_assert_uint_eq(mx_wal_fsyncs(w), base + 1);
    ck_assert_int_eq(mx_wal_tick(w), 0);
    ck_assert_uint_eq(mx_wal_fsyncs(w), base + 1);
    mx_wal_close(w);
    VERIFY(dir, 1, 9, small_size, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(rotation_syncs_old_segment)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_NO, 1000, 1);
    APPEND(w, 1, 9, fixed100, 0); /* fills wal-1, still buffered */
    ck_assert_uint_eq(mx_wal_pending_bytes(w), 9 * 108);
    ck_assert_int_eq(mx_wal_reserve(w, 100), 0); /* rotates */
    ck_assert_uint_eq(mx_wal_pending_bytes(w), 0);
    ck_assert_uint_eq(mx_wal_written_lsn(w), 9);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 1);
    ck_assert_int_eq(mx_wal_reserve(w, 100), 0); /* fits: no-op */
    ck_assert_uint_eq(mx_wal_fsyncs(w), 1);
    mx_wal_close(w);
    VERIFY(dir, 1, 9, fixed100, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(reserve_and_append_bounds)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_NO, 4096, 7);
    ck_assert_int_eq(mx_wal_reserve(w, 0), MX_EINTERNAL);
    ck_assert_int_eq(mx_wal_reserve(w, (size_t)MX_WAL_MAX_RECORD + 1), MX_ETOO_LARGE);
    ck_assert_uint_eq(mx_wal_append(w, "x", 0), 0);
    ck_assert_uint_eq(mx_wal_next_lsn(w), 7);
    /* a record that fills a whole segment (it gets one with room for the
     * zero length word after it), then one more */
    static uint8_t big[4088];
    fill(big, sizeof big, 7);
    ck_assert_uint_eq(mx_wal_append(w, big, sizeof big), 7);
    ck_assert_uint_eq(mx_wal_append(w, "y", 1), 8);
    mx_wal_close(w);
    uint64_t segs[4];
    ck_assert_uint_eq(list_segs(dir, segs, 4), 2);
    ck_assert_uint_eq(segs[0], 7);
    ck_assert_uint_eq(segs[1], 8);
    char p[512];
    seg_path(p, sizeof p, dir, 7);
    ck_assert_uint_eq(file_size(p), 4096 + MX_WAL_END_ZEROS);
    mx_wal_reader *r = NULL;
    char err[256];
    ck_assert_int_eq(mx_wal_reader_open(&r, dir, err, sizeof err), 0);
    const void *pl;
    size_t len;
    uint64_t lsn;
    ck_assert_int_eq(mx_wal_reader_next(r, &pl, &len, &lsn, err, sizeof err), 1);
    ck_assert_uint_eq(lsn, 7);
    ck_assert_uint_eq(len, sizeof big);
    ck_assert_int_eq(memcmp(pl, big, len), 0);
    ck_assert_int_eq(mx_wal_reader_next(r, &pl, &len, &lsn, err, sizeof err), 1);
    ck_assert_uint_eq(lsn, 8);
    ck_assert_uint_eq(len, 1);
    ck_assert_int_eq(memcmp(pl, "y", 1), 0);
    ck_assert_int_eq(mx_wal_reader_next(r, &pl, &len, &lsn, err, sizeof err), 0);
    ck_assert_uint_eq(mx_wal_reader_next_lsn(r), 9);
    mx_wal_reader_close(r);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

/* ---- atomic files ---- */

static const char MAGIC[8] = {'M', 'X', 'T', 'E', 'S', 'T', '0', '1'};

START_TEST(atomic_roundtrip)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    char err[512];
    size_t sizes[] = {0, 1, 1000, 1 << 20};
    uint8_t *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        fill(buf, sizes[i], i);
        ck_assert_int_eq(mx_atomic_write(dir, "room.snap", MAGIC, buf, sizes[i], err, sizeof err),
                         0);
        void *out = NULL;
        size_t len = 99;
        ck_assert_msg(mx_atomic_read(dir, "room.snap", MAGIC, &out, &len, err, sizeof err) == 0,
                      "%s", err);
        ck_assert_ptr_nonnull(out);
        ck_assert_uint_eq(len, sizes[i]);
        ck_assert_int_eq(memcmp(out, buf, len), 0);
        free(out);
        char p[512];
        snprintf(p, sizeof p, "%s/room.snap", dir);
        ck_assert_uint_eq(file_size(p), 16 + sizes[i]);
        snprintf(p, sizeof p, "%s/room.snap.tmp", dir);
        ck_assert(!exists(p));
    }
    /* a leftover .tmp from a crash changes nothing */
    char p[512];
    snprintf(p, sizeof p, "%s/room.snap.tmp", dir);
    write_file(p, "half a snapshot");
    void *out = NULL;
    size_t len;
    ck_assert_int_eq(mx_atomic_read(dir, "room.snap", MAGIC, &out, &len, err, sizeof err), 0);
    ck_assert_uint_eq(len, 1 << 20);
    free(out);
    ck_assert_int_eq(mx_atomic_write(dir, "room.snap", MAGIC, "ok", 2, err, sizeof err), 0);
    ck_assert(!exists(p));
    ck_assert_int_eq(mx_atomic_write(dir, "a/b", MAGIC, "ok", 2, err, sizeof err), MX_EINTERNAL);
    free(buf);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(n > 0 ? (size_t)n : 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* A payload in pieces (a snapshot written from the log's texts): the file
 * is the one mx_atomic_write makes of their concatenation, byte for byte,
 * through a stage smaller than the payload and than some pieces, with
 * empty pieces, and without a stage. */
START_TEST(atomic_pieces_are_one_payload)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    char err[512];
    enum { TOTAL = 300000, STAGE = 4096 };
    uint8_t *buf = malloc(TOTAL);
    char *stage = malloc(STAGE);
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(stage);
    fill(buf, TOTAL, 7);
    struct iovec iov[600];
    size_t n = 0, at = 0;
    for (size_t k = 0; at < TOTAL && n < 599; k++) {
        size_t len = (k * 7919) % 9000; /* 0 .. 8999: some bigger than the stage, some empty */
        if (len > TOTAL - at)
            len = TOTAL - at;
        iov[n++] = (struct iovec){.iov_base = buf + at, .iov_len = len};
        at += len;
    }
    iov[n++] = (struct iovec){.iov_base = buf + at, .iov_len = TOTAL - at};
    ck_assert_int_eq(mx_atomic_write(dir, "whole.snap", MAGIC, buf, TOTAL, err, sizeof err), 0);
    ck_assert_int_eq(mx_atomic_writev_quiet(dir, "staged.snap", MAGIC, iov, n, stage, STAGE, err, sizeof err), 0);
    ck_assert_int_eq(mx_atomic_writev_quiet(dir, "plain.snap", MAGIC, iov, n, NULL, 0, err, sizeof err), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/whole.snap", dir);
    size_t wl;
    char *whole = slurp(p, &wl);
    ck_assert_uint_eq(wl, 16 + TOTAL);
    const char *names[] = {"staged.snap", "plain.snap"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        size_t l;
        char *got = slurp(p, &l);
        ck_assert_uint_eq(l, wl);
        ck_assert_msg(!memcmp(got, whole, wl), "%s differs from the one-piece file", names[i]);
        free(got);
        void *out = NULL;
        size_t len = 0;
        ck_assert_msg(mx_atomic_read(dir, names[i], MAGIC, &out, &len, err, sizeof err) == 0, "%s", err);
        ck_assert_uint_eq(len, TOTAL);
        free(out);
    }
    free(whole);
    free(stage);
    free(buf);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(atomic_damage_detected)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    char err[512], p[512];
    snprintf(p, sizeof p, "%s/x.snap", dir);
    void *out = (void *)1;
    size_t len;
    ck_assert_int_eq(mx_atomic_read(dir, "x.snap", MAGIC, &out, &len, err, sizeof err),
                     MX_ENO_SUCH_ROOM);
    ck_assert_ptr_null(out);
    static const char text[] = "{\"hello\":\"world\"}";
    ck_assert_int_eq(mx_atomic_write(dir, "x.snap", MAGIC, text, sizeof text, err, sizeof err), 0);
    /* payload bit flip */
    flip_bit(p, 16 + 3, 0x02);
    ck_assert_int_eq(mx_atomic_read(dir, "x.snap", MAGIC, &out, &len, err, sizeof err),
                     MX_EINTERNAL);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(err, p) && strstr(err, "checksum"), "%s", err);
    flip_bit(p, 16 + 3, 0x02);
    ck_assert_int_eq(mx_atomic_read(dir, "x.snap", MAGIC, &out, &len, err, sizeof err), 0);
    free(out);
    /* another magic */
    static const char other[8] = {'M', 'X', 'T', 'E', 'S', 'T', '0', '2'};
    ck_assert_int_eq(mx_atomic_read(dir, "x.snap", other, &out, &len, err, sizeof err),
                     MX_EINTERNAL);
    ck_assert_msg(strstr(err, p) && strstr(err, "magic"), "%s", err);
    /* an extra byte, then a missing byte */
    append_file(p, "!", 1);
    ck_assert_int_eq(mx_atomic_read(dir, "x.snap", MAGIC, &out, &len, err, sizeof err),
                     MX_EINTERNAL);
    ck_assert_msg(strstr(err, p) && strstr(err, "length"), "%s", err);
    ck_assert_int_eq(truncate(p, 16 + sizeof text - 1), 0);
    ck_assert_int_eq(mx_atomic_read(dir, "x.snap", MAGIC, &out, &len, err, sizeof err),
                     MX_EINTERNAL);
    /* shorter than the header */
    ck_assert_int_eq(truncate(p, 10), 0);
    ck_assert_int_eq(mx_atomic_read(dir, "x.snap", MAGIC, &out, &len, err, sizeof err),
                     MX_EINTERNAL);
    ck_assert_msg(strstr(err, p) != NULL, "%s", err);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

/* ---- fault injection ---- */

#ifdef MX_FAULT_INJECTION
static void set_fault(const char *dir, const char *what)
{
    char p[512];
    snprintf(p, sizeof p, "%s/FAULT", dir);
    if (what)
        write_file(p, what);
    else
        ck_assert_int_eq(unlink(p), 0);
}

START_TEST(fault_file_parsing)
{
    char *dir = make_tmpdir();
    ck_assert_int_eq(mx_wal_fault(dir), 0);
    set_fault(dir, "enospc\n");
    ck_assert_int_eq(mx_wal_fault(dir), ENOSPC);
    set_fault(dir, "eio");
    ck_assert_int_eq(mx_wal_fault(dir), EIO);
    set_fault(dir, "edquot\r\n");
    ck_assert_int_eq(mx_wal_fault(dir), EDQUOT);
    set_fault(dir, "");
    ck_assert_int_eq(mx_wal_fault(dir), 0);
    set_fault(dir, "sometimes\n");
    ck_assert_int_eq(mx_wal_fault(dir), 0);
    drop_tmpdir(dir);
}
END_TEST

/* Power cut (src/fault.c): in a child, record 1 is synced, record 2 is
 * written but not synced, then "powercut SEED 1" cuts the power at the
 * next check (the one before mx_wal_sync's fdatasync). Over many seeds:
 * the child always dies by SIGKILL, record 1 always survives, record 2 is
 * sometimes lost, sometimes torn (a torn tail the reader cuts), sometimes
 * kept - and never anything else. */
static int powercut_run(uint32_t seed)
{
    char *dir = make_tmpdir();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct mx_wal_opts o = {.dir = dir, .fsync = MX_FSYNC_NO, .segment_bytes = 4096};
        mx_wal *w;
        char err[256];
        if (mx_wal_open(&w, &o, 1, err, sizeof err) != 0 || mx_wal_append(w, "synced-record", 13) != 1 ||
            mx_wal_sync(w) != 0 || mx_wal_append(w, "unsynced-record-of-some-length", 30) != 2 ||
            mx_wal_flush(w) != 0)
            _exit(3);
        char cmd[64];
        snprintf(cmd, sizeof cmd, "powercut %u 1\n", (unsigned)seed);
        set_fault(dir, cmd);
        mx_wal_sync(w);
        _exit(4); /* not reached: the power cut kills the process */
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "seed %u: child status %d", (unsigned)seed, st);
    set_fault(dir, NULL);
    mx_wal_reader *r;
    char err[512];
    ck_assert_int_eq(mx_wal_reader_open(&r, dir, err, sizeof err), 0);
    const void *p;
    size_t len;
    uint64_t lsn;
    ck_assert_int_eq(mx_wal_reader_next(r, &p, &len, &lsn, err, sizeof err), 1);
    ck_assert(len == 13 && memcmp(p, "synced-record", 13) == 0 && lsn == 1);
    int k = mx_wal_reader_next(r, &p, &len, &lsn, err, sizeof err);
    ck_assert_msg(k >= 0, "seed %u: %s", (unsigned)seed, err);
    int outcome; /* 0 lost, 1 torn, 2 kept */
    if (k == 1) {
        ck_assert(len == 30 && lsn == 2);
        ck_assert_int_eq(mx_wal_reader_next(r, &p, &len, &lsn, err, sizeof err), 0);
        outcome = 2;
    } else {
        outcome = mx_wal_reader_torn(r, NULL, NULL) ? 1 : 0;
    }
    mx_wal_reader_close(r);
    drop_tmpdir(dir);
    return outcome;
}

START_TEST(powercut_loses_or_tears_only_unsynced_writes)
{
    int seen[3] = {0, 0, 0};
    for (uint32_t seed = 1; seed <= 24; seed++)
        seen[powercut_run(seed)]++;
    ck_assert_msg(seen[0] && seen[1] && seen[2], "lost %d torn %d kept %d", seen[0], seen[1], seen[2]);
}
END_TEST

START_TEST(fault_enospc_on_write)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    char p[512];
    seg_path(p, sizeof p, dir, 1);
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 20, 1);
    APPEND(w, 1, 10, small_size, 0);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    uint64_t good = frame_bytes(1, 10, small_size);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 1);

    set_fault(dir, "enospc\n");
    APPEND(w, 11, 20, small_size, 0);
    size_t pending = mx_wal_pending_bytes(w);
    ck_assert_uint_eq(pending, frame_bytes(11, 20, small_size));
    ck_assert_int_eq(mx_wal_flush(w), MX_EUNAVAILABLE);
    /* cut back to the last good offset, and the zero length word after it */
    ck_assert_uint_eq(file_size(p), good + MX_WAL_END_ZEROS);
    ck_assert_uint_eq(mx_wal_pending_bytes(w), pending);
    ck_assert_uint_eq(mx_wal_written_lsn(w), 10);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 1);
    ck_assert_int_eq(mx_wal_flush(w), MX_EUNAVAILABLE); /* still full */
    ck_assert_int_eq(mx_wal_tick(w), 0);
    /* a new record needs a new segment now, which a full disk refuses */
    ck_assert_int_eq(mx_wal_reserve(w, 10), MX_EUNAVAILABLE);
    ck_assert_uint_eq(mx_wal_next_lsn(w), 21);
    VERIFY(dir, 1, 10, small_size, END_CLEAN); /* what a crash now would leave */

    set_fault(dir, NULL);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    ck_assert_uint_eq(mx_wal_written_lsn(w), 20);
    ck_assert_uint_eq(mx_wal_pending_bytes(w), 0);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 2);
    /* the retried write brought the zero length word after it */
    ck_assert_uint_eq(file_size(p), frame_bytes(1, 20, small_size) + MX_WAL_END_ZEROS);
    APPEND(w, 21, 30, small_size, 0); /* into a fresh preallocated segment */
    ck_assert_int_eq(mx_wal_flush(w), 0);
    mx_wal_close(w);
    uint64_t segs[4];
    ck_assert_uint_eq(list_segs(dir, segs, 4), 2);
    ck_assert_uint_eq(segs[1], 21);
    VERIFY(dir, 1, 30, small_size, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(fault_enospc_on_fallocate)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1000, 1);
    APPEND(w, 1, 9, fixed100, 0);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    uint64_t before = mx_wal_disk_bytes(w);
    set_fault(dir, "edquot");
    ck_assert_int_eq(mx_wal_reserve(w, 100), MX_EUNAVAILABLE);
    static const uint8_t rec[100];
    ck_assert_uint_eq(mx_wal_append(w, rec, sizeof rec), 0);
    uint64_t segs[4];
    ck_assert_uint_eq(list_segs(dir, segs, 4), 1); /* the partial file is gone */
    ck_assert_uint_eq(mx_wal_disk_bytes(w), before);
    ck_assert_uint_eq(mx_wal_next_lsn(w), 10);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    set_fault(dir, NULL);
    ck_assert_int_eq(mx_wal_reserve(w, 100), 0);
    ck_assert_uint_eq(list_segs(dir, segs, 4), 2);
    ck_assert_uint_eq(segs[1], 10);
    APPEND(w, 10, 12, fixed100, 0);
    mx_wal_close(w);
    VERIFY(dir, 1, 12, fixed100, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(fault_enospc_at_open)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    set_fault(dir, "enospc");
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 4096, 1);
    uint64_t segs[4];
    ck_assert_uint_eq(list_segs(dir, segs, 4), 0);
    ck_assert_uint_eq(mx_wal_disk_bytes(w), 0);
    ck_assert_int_eq(mx_wal_reserve(w, 10), MX_EUNAVAILABLE);
    ck_assert_uint_eq(mx_wal_append(w, "abc", 3), 0);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    ck_assert_int_eq(mx_wal_tick(w), 0);
    set_fault(dir, NULL);
    APPEND(w, 1, 5, small_size, 0);
    mx_wal_close(w);
    VERIFY(dir, 1, 5, small_size, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(fault_eio_is_sticky)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_ALWAYS, 1 << 20, 1);
    APPEND(w, 1, 5, small_size, 0);
    ck_assert_int_eq(mx_wal_flush(w), 0);
    set_fault(dir, "eio\n");
    APPEND(w, 6, 8, small_size, 0);
    ck_assert_int_eq(mx_wal_flush(w), MX_EINTERNAL);
    set_fault(dir, NULL);
    ck_assert_int_eq(mx_wal_flush(w), MX_EINTERNAL);
    ck_assert_int_eq(mx_wal_sync(w), MX_EINTERNAL);
    ck_assert_int_eq(mx_wal_tick(w), MX_EINTERNAL);
    ck_assert_int_eq(mx_wal_reserve(w, 10), MX_EINTERNAL);
    ck_assert_uint_eq(mx_wal_append(w, "abc", 3), 0);
    ck_assert_int_eq(mx_wal_remove_before(w, 100), -1);
    ck_assert_uint_eq(mx_wal_written_lsn(w), 5);
    mx_wal_close(w);
    VERIFY(dir, 1, 5, small_size, END_CLEAN);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(fault_failed_fdatasync_is_fatal)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    mx_wal *w = open_wal(dir, MX_FSYNC_EVERYSEC, 1 << 20, 1);
    APPEND(w, 1, 5, small_size, 0);
    ck_assert_int_eq(mx_wal_flush(w), 0); /* written, not yet synced */
    ck_assert_uint_eq(mx_wal_fsyncs(w), 0);
    set_fault(dir, "enospc"); /* even ENOSPC from fdatasync is fatal */
    ck_assert_int_eq(mx_wal_tick(w), MX_EINTERNAL);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 1);
    set_fault(dir, NULL);
    ck_assert_int_eq(mx_wal_tick(w), MX_EINTERNAL);
    ck_assert_int_eq(mx_wal_flush(w), MX_EINTERNAL);
    ck_assert_uint_eq(mx_wal_fsyncs(w), 1); /* never retried */
    mx_wal_close(w);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST

START_TEST(fault_atomic_write)
{
    FD_BEGIN;
    char *dir = make_tmpdir();
    char err[512], p[512], tmp[512];
    snprintf(p, sizeof p, "%s/r.snap", dir);
    snprintf(tmp, sizeof tmp, "%s/r.snap.tmp", dir);
    set_fault(dir, "enospc");
    ck_assert_int_eq(mx_atomic_write(dir, "r.snap", MAGIC, "one", 3, err, sizeof err),
                     MX_EUNAVAILABLE);
    ck_assert(!exists(p));
    ck_assert(!exists(tmp));
    set_fault(dir, NULL);
    ck_assert_int_eq(mx_atomic_write(dir, "r.snap", MAGIC, "one", 3, err, sizeof err), 0);
    set_fault(dir, "eio");
    ck_assert_int_eq(mx_atomic_write(dir, "r.snap", MAGIC, "two", 3, err, sizeof err),
                     MX_EINTERNAL);
    ck_assert(!exists(tmp));
    set_fault(dir, NULL);
    void *out;
    size_t len;
    ck_assert_int_eq(mx_atomic_read(dir, "r.snap", MAGIC, &out, &len, err, sizeof err), 0);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(memcmp(out, "one", 3), 0);
    free(out);
    drop_tmpdir(dir);
    FD_END;
}
END_TEST
#endif

Suite *mx_suite_wal(void)
{
    Suite *s = suite_create("wal");
    TCase *tc = tcase_create("crc32c");
    tcase_add_test(tc, crc_known_values);
    tcase_add_test(tc, crc_paths_agree);
    suite_add_tcase(s, tc);

    tc = tcase_create("log");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, roundtrip_many);
    tcase_add_test(tc, early_writeback_per_mib);
    tcase_add_test(tc, sync_handle_for_the_writer_thread);
    tcase_add_test(tc, rotation_names_follow_lsns);
    tcase_add_test(tc, reopen_starts_new_segment);
    tcase_add_test(tc, open_creates_dir);
    tcase_add_test(tc, reader_empty_and_missing);
    tcase_add_test(tc, crash_leaves_clean_preallocated_tail);
    tcase_add_test(tc, torn_header_only);
    tcase_add_test(tc, torn_half_payload);
    tcase_add_test(tc, torn_first_record_of_last_segment);
    tcase_add_test(tc, bitflip_mid_last_segment);
    tcase_add_test(tc, bitflip_non_last_segment);
    tcase_add_test(tc, zero_header_mid_log);
    tcase_add_test(tc, huge_length);
    tcase_add_test(tc, segment_gap);
    tcase_add_test(tc, end_zeros_rule_refuses_a_cut_last_segment);
    tcase_add_test(tc, remove_before_whole_segments);
    tcase_add_test(tc, fsync_always_group_commit);
    tcase_add_test(tc, fsync_no_never);
    tcase_add_test(tc, fsync_everysec);
    tcase_add_test(tc, rotation_syncs_old_segment);
    tcase_add_test(tc, reserve_and_append_bounds);
    suite_add_tcase(s, tc);

    tc = tcase_create("atomic");
    tcase_add_test(tc, atomic_roundtrip);
    tcase_add_test(tc, atomic_pieces_are_one_payload);
    tcase_add_test(tc, atomic_damage_detected);
    suite_add_tcase(s, tc);

#ifdef MX_FAULT_INJECTION
    tc = tcase_create("faults");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, fault_file_parsing);
    tcase_add_test(tc, powercut_loses_or_tears_only_unsynced_writes);
    tcase_add_test(tc, fault_enospc_on_write);
    tcase_add_test(tc, fault_enospc_on_fallocate);
    tcase_add_test(tc, fault_enospc_at_open);
    tcase_add_test(tc, fault_eio_is_sticky);
    tcase_add_test(tc, fault_failed_fdatasync_is_fatal);
    tcase_add_test(tc, fault_atomic_write);
    suite_add_tcase(s, tc);
#endif
    return s;
}
