/* wal_common.c - the helpers the WAL writer, reader and atomic files share
 * (wal_common.h): segment names and their listing, path joining, error
 * text, directory fsync. A segment name is exactly "wal-" + 20 decimal
 * digits + ".log"; anything else in the directory (FAULT, *.tmp, editor
 * backups) is not a segment, so the listing never trips over it.
 */
#include "movexd/wal_common.h"
#include "movexd/alloc.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void mx_wal_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

char *mx_path_join(const char *dir, const char *name, const char *suffix)
{
    size_t a = strlen(dir), b = strlen(name), c = strlen(suffix);
    char *p = mx_malloc(a + 1 + b + c + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b);
    memcpy(p + a + 1 + b, suffix, c + 1);
    return p;
}

void mx_wal_seg_name(char out[MX_WAL_SEG_NAME_LEN], uint64_t lsn)
{
    snprintf(out, MX_WAL_SEG_NAME_LEN, "wal-%020" PRIu64 ".log", lsn);
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

/* fsync a directory by path (atomic files, a newly made WAL directory). */
int mx_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int e = fsync(fd) != 0 ? errno : 0;
    close(fd);
    return e;
}

static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct mx_wal_seg *)a)->lsn, y = ((const struct mx_wal_seg *)b)->lsn;
    return x < y ? -1 : x > y;
}

/* Every wal-*.log in dir, sorted by LSN. A missing dir is an empty list.
 * Returns 0 or an errno value. */
int mx_wal_list_segments(const char *dir, struct mx_wal_seg **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : errno;
    struct mx_wal_seg *v = NULL;
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
            struct mx_wal_seg *nv = mx_realloc(v, nc * sizeof *nv);
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

