/* cluster_journal_file.c - the cluster journal's segments on local disk
 * (include/movexd/cluster_journal_file.h says what is covered and what is
 * not): reading them back into the in-memory journal at start, writing
 * each change as the journal's sink, dropping segments nothing needs.
 *
 * What it owns: the directory's lock, the open segment's descriptor and
 * the list of segment ids and sizes on disk, oldest first.
 *
 * Invariants:
 * - a batch read from or written to segment S carries tag S in the
 *   journal (mx_journal_set_tag follows the open segment), and segment
 *   ids grow, so a segment older than the oldest batch's tag holds no
 *   batch still kept - and no forget that matters (a forget only concerns
 *   batches written before it) - so it can go; the epoch it may hold is
 *   repeated at the start of every later segment;
 * - a record is never appended behind a record that failed to write (a
 *   failed write closes the segment: the next record opens a new one), so
 *   only a segment's tail can be torn;
 * - the segment being written is never deleted.
 */
#include "movexd/cluster_journal_file.h"
#include "movexd/alloc.h"
#include "movexd/cluster_journal.h"
#include "movexd/codec.h"
#include "movexd/dircheck.h"
#include "movexd/log.h"
#include "movexd/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

enum { REC_EPOCH = 'E', REC_BATCH = 'B', REC_FORGET = 'F' };
/* Each segment starts with it: another format is not read (skipped). */
static const char MAGIC[8] = { 'M', 'X', 'J', 'R', 'N', 'L', '0', '1' };
#define HDR 8                     /* u32 length + u32 CRC32C of the payload */
#define REC_MAX (1u << 30)        /* a length beyond this is damage, not a record */

struct seg {
    uint64_t id;
    uint64_t bytes;
};

struct mx_jfile {
    char dir[1024];
    int lockfd, fd;               /* fd: the open segment, -1 when none (after a failure) */
    struct mx_journal *j;
    size_t segment_bytes, max_bytes;
    struct seg *segs;             /* on disk, oldest first; the last one is open when fd >= 0 */
    size_t nsegs, capsegs;
    uint64_t next_id;
    char epoch[64];
    mx_buf rec;
    struct mx_jfile_stats st;
};

static int seg_path(const struct mx_jfile *f, uint64_t id, char *out, size_t n)
{
    return snprintf(out, n, "%s/%020llu.mxj", f->dir, (unsigned long long)id) >= (int)n ? -1 : 0;
}

/* ---- writing ---- */

static void put_head(mx_buf *b, const struct mx_cluster_head *h)
{
    mx_put_u64(b, h->seq);
    mx_put_u64(b, h->sub);
    mx_put_bytes(b, h->sum, strlen(h->sum));
    mx_put_bytes(b, h->hash, strlen(h->hash));
    mx_put_bytes(b, h->inc, strlen(h->inc)); /* the room's incarnation ("" before them) */
}

/* Strings the journal reads with strlen go with their NUL. */
static void put_str0(mx_buf *b, const char *s) { mx_put_bytes(b, s, strlen(s) + 1); }

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int push_seg(struct mx_jfile *f, uint64_t id, uint64_t bytes)
{
    if (f->nsegs == f->capsegs) {
        size_t cap = f->capsegs ? f->capsegs * 2 : 16;
        struct seg *s = mx_realloc(f->segs, cap * sizeof *s);
        if (!s)
            return -1;
        f->segs = s;
        f->capsegs = cap;
    }
    f->segs[f->nsegs++] = (struct seg){ id, bytes };
    f->st.bytes += bytes;
    return 0;
}

static void drop_first_seg(struct mx_jfile *f)
{
    char p[1100];
    if (!seg_path(f, f->segs[0].id, p, sizeof p) && unlink(p) && errno != ENOENT)
        mx_warn("event=cluster_journal_unlink_failed file=%s error=\"%s\"", p, strerror(errno));
    f->st.bytes -= f->segs[0].bytes;
    memmove(f->segs, f->segs + 1, (f->nsegs - 1) * sizeof *f->segs);
    f->nsegs--;
}

/* Segments older than every batch kept go; past the directory's bound the
 * oldest batches are evicted so their segments can go too (never the
 * segment of `keep`, the batch being added, nor the open one). */
static void drop_old(struct mx_jfile *f, uint64_t keep)
{
    while (f->nsegs > 1 && f->segs[0].id < mx_journal_oldest_tag(f->j))
        drop_first_seg(f);
    while (f->nsegs > 1 && f->st.bytes > f->max_bytes && f->segs[0].id < keep) {
        mx_journal_evict_tag(f->j, f->segs[0].id);
        drop_first_seg(f);
    }
}

static void emit(struct mx_jfile *f, mx_buf *rec);

/* A new segment, starting with the epoch; it becomes the journal's tag. */
static int open_segment(struct mx_jfile *f)
{
    char p[1100];
    uint64_t id = f->next_id++;
    if (seg_path(f, id, p, sizeof p))
        return -1;
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, MAGIC, sizeof MAGIC) || push_seg(f, id, sizeof MAGIC)) {
        if (fd >= 0) {
            close(fd);
            unlink(p);
        }
        return -1;
    }
    f->fd = fd;
    mx_journal_set_tag(f->j, id);
    mx_buf e;
    mx_buf_init(&e, HDR);
    mx_put_u8(&e, REC_EPOCH);
    mx_put_bytes(&e, f->epoch, strlen(f->epoch));
    emit(f, &e);
    mx_buf_free(&e);
    return f->fd >= 0 ? 0 : -1;
}

/* Write rec (the payload) as one record of the open segment. */
static void emit(struct mx_jfile *f, mx_buf *rec)
{
    size_t n = rec->len;
    char *p = mx_buf_data(rec) - HDR; /* the buffer keeps HDR bytes in front */
    unsigned char *h = (unsigned char *)p;
    uint32_t crc = mx_crc32c(0, p + HDR, n);
    for (int i = 0; i < 4; i++) {
        h[i] = (unsigned char)((uint32_t)n >> (8 * i));
        h[4 + i] = (unsigned char)(crc >> (8 * i));
    }
    if (rec->oom || n > REC_MAX || write_all(f->fd, p, n + HDR)) {
        /* what was written of it is a torn tail: nothing goes behind it */
        f->st.write_failures++;
        mx_warn("event=cluster_journal_write_failed dir=%s error=\"%s\" note=\"this change is not on "
                "disk; the next one starts a new segment\"",
                f->dir, rec->oom ? "out of memory" : strerror(errno));
        close(f->fd);
        f->fd = -1;
        return;
    }
    f->segs[f->nsegs - 1].bytes += n + HDR;
    f->st.bytes += n + HDR;
}

/* The open segment for a record: a new one after a failure or once the
 * current one is full. 0, or -1 (counted) when none can be opened. Then
 * f->rec is written. */
static int write_rec(struct mx_jfile *f)
{
    if (f->fd >= 0 && f->segs[f->nsegs - 1].bytes < f->segment_bytes) {
        emit(f, &f->rec);
        return 0;
    }
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (open_segment(f)) {
        if (f->fd < 0)
            f->st.write_failures++;
        return -1;
    }
    emit(f, &f->rec);
    return 0;
}

static void on_added(void *priv, const char *room, const struct mx_journal_batch *b)
{
    struct mx_jfile *f = priv;
    mx_buf_reset(&f->rec);
    mx_put_u8(&f->rec, REC_BATCH);
    mx_put_bytes(&f->rec, room, strlen(room));
    put_head(&f->rec, &b->expected);
    put_head(&f->rec, &b->after);
    mx_put_u64(&f->rec, b->window);
    mx_put_u64(&f->rec, b->now_ms);
    mx_put_u32(&f->rec, (uint32_t)b->n);
    for (size_t i = 0; i < b->n; i++) {
        const struct mx_cluster_action *a = &b->a[i];
        put_str0(&f->rec, a->client);
        mx_put_u64(&f->rec, a->n);
        mx_put_u64(&f->rec, a->base);
        mx_put_u8(&f->rec, (uint8_t)(a->strict != 0));
        mx_put_u8(&f->rec, (uint8_t)(a->applied != 0));
        mx_put_u32(&f->rec, (uint32_t)a->ndeps);
        for (size_t k = 0; k < a->ndeps; k++)
            mx_put_u64(&f->rec, a->deps[k]);
        put_str0(&f->rec, a->what);
        mx_put_u8(&f->rec, (uint8_t)(a->body != NULL));
        mx_put_bytes(&f->rec, a->body ? a->body : "", a->body ? a->body_len : 0);
    }
    /* the batch was tagged with the open segment before this write; when
     * that segment is full or failed the record goes to a new one, which
     * only keeps the older segment a little longer */
    write_rec(f);
    drop_old(f, b->tag);
}

static void on_forgot(void *priv, const char *room, uint64_t seq, uint64_t sub)
{
    struct mx_jfile *f = priv;
    mx_buf_reset(&f->rec);
    mx_put_u8(&f->rec, REC_FORGET);
    mx_put_u8(&f->rec, room == NULL);
    mx_put_bytes(&f->rec, room ? room : "", room ? strlen(room) : 0);
    mx_put_u64(&f->rec, seq);
    mx_put_u64(&f->rec, sub);
    write_rec(f);
    drop_old(f, 0);
}

void mx_jfile_epoch(struct mx_jfile *f, const char *epoch)
{
    if (!strcmp(f->epoch, epoch))
        return;
    snprintf(f->epoch, sizeof f->epoch, "%s", epoch);
    mx_buf_reset(&f->rec);
    mx_put_u8(&f->rec, REC_EPOCH);
    mx_put_bytes(&f->rec, f->epoch, strlen(f->epoch));
    if (f->fd >= 0)
        emit(f, &f->rec);
    else
        write_rec(f); /* a new segment: it starts with the epoch anyway */
}

/* ---- reading ---- */

static int get_head(mx_cursor *c, struct mx_cluster_head *h)
{
    size_t sl, hl;
    memset(h, 0, sizeof *h);
    h->seq = mx_get_u64(c);
    h->sub = mx_get_u64(c);
    const char *sum = mx_get_bytes(c, &sl);
    if (c->bad || sl >= sizeof h->sum)
        return -1;
    memcpy(h->sum, sum, sl);
    const char *hash = mx_get_bytes(c, &hl);
    if (c->bad || hl >= sizeof h->hash)
        return -1;
    memcpy(h->hash, hash, hl);
    const char *inc = mx_get_bytes(c, &hl);
    if (c->bad || hl >= sizeof h->inc)
        return -1;
    memcpy(h->inc, inc, hl);
    return 0;
}

/* A string written with its NUL: the bytes end in the only NUL. */
static const char *get_str0(mx_cursor *c)
{
    size_t n;
    const char *s = mx_get_bytes(c, &n);
    return !c->bad && n && s[n - 1] == '\0' && memchr(s, '\0', n) == s + n - 1 ? s : NULL;
}

/* A batch record into the journal. The actions point into the record
 * (mx_journal_add copies them). 0, or -1 when it does not decode. */
static int read_batch(struct mx_jfile *f, mx_cursor *c)
{
    size_t rl;
    const char *room = mx_get_bytes(c, &rl);
    struct mx_cluster_head exp, after;
    char name[1024];
    /* a batch ends beyond the head it was decided on: anything else is damage */
    if (c->bad || rl == 0 || rl >= sizeof name || memchr(room, '\0', rl) || get_head(c, &exp) ||
        get_head(c, &after) || mx_cluster_id_cmp(&after, &exp) <= 0)
        return -1;
    memcpy(name, room, rl);
    name[rl] = '\0';
    uint64_t window = mx_get_u64(c), now_ms = mx_get_u64(c);
    uint32_t n = mx_get_u32(c);
    if (c->bad || n == 0 || n > c->left / 16)
        return -1;
    struct mx_cluster_action *a = mx_calloc(n, sizeof *a);
    uint64_t **deps = mx_calloc(n, sizeof *deps);
    int rc = a && deps ? 0 : -1;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        a[i].client = get_str0(c);
        a[i].n = mx_get_u64(c);
        a[i].base = mx_get_u64(c);
        a[i].strict = mx_get_u8(c);
        a[i].applied = mx_get_u8(c);
        uint32_t nd = mx_get_u32(c);
        /* flags are written as 0 or 1: anything else is damage */
        if (!a[i].client || c->bad || a[i].strict > 1 || a[i].applied > 1 || nd > c->left / 8 ||
            (nd && !(deps[i] = mx_calloc(nd, sizeof **deps)))) {
            rc = -1;
            break;
        }
        for (uint32_t k = 0; k < nd; k++)
            deps[i][k] = mx_get_u64(c);
        a[i].deps = deps[i];
        a[i].ndeps = nd;
        a[i].what = get_str0(c);
        int has_body = mx_get_u8(c);
        size_t bl;
        const char *body = mx_get_bytes(c, &bl);
        a[i].body = has_body ? body : NULL;
        a[i].body_len = has_body ? bl : 0;
        if (!a[i].what || c->bad || has_body > 1 || (!has_body && bl))
            rc = -1;
    }
    /* out of order (another epoch's batches went before) is not damage */
    if (rc == 0 && c->left == 0)
        mx_journal_add(f->j, name, &exp, &after, (size_t)window, now_ms, a, n);
    else
        rc = -1;
    for (uint32_t i = 0; deps && i < n; i++)
        free(deps[i]);
    free(deps);
    free(a);
    return rc;
}

static int read_record(struct mx_jfile *f, const unsigned char *p, size_t n)
{
    mx_cursor c = mx_cursor_of(p, n);
    int type = mx_get_u8(&c);
    if (type == REC_BATCH)
        return read_batch(f, &c);
    if (type == REC_FORGET) {
        int all = mx_get_u8(&c);
        size_t rl;
        const char *room = mx_get_bytes(&c, &rl);
        char name[1024];
        uint64_t seq = mx_get_u64(&c), sub = mx_get_u64(&c);
        if (c.bad || c.left || rl >= sizeof name)
            return -1;
        memcpy(name, room, rl);
        name[rl] = '\0';
        mx_journal_forget(f->j, all ? NULL : name, seq, sub);
        return 0;
    }
    if (type == REC_EPOCH) {
        size_t el;
        const char *e = mx_get_bytes(&c, &el);
        if (c.bad || c.left || el >= sizeof f->epoch)
            return -1;
        /* batches of an earlier epoch went with the Redis data they were for */
        if (f->epoch[0] && (strlen(f->epoch) != el || memcmp(f->epoch, e, el)))
            mx_journal_forget(f->j, NULL, UINT64_MAX, 0);
        memcpy(f->epoch, e, el);
        f->epoch[el] = '\0';
        return 0;
    }
    return -1;
}

static int read_file(const char *path, unsigned char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *b = mx_malloc(n ? n : 1);
    while (b && got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!b)
        return -1;
    *out = b;
    *len = got;
    return 0;
}

/* One segment's records into the journal, up to a torn or damaged one. */
static int read_segment(struct mx_jfile *f, uint64_t id, char *err, size_t errlen)
{
    char p[1100];
    unsigned char *b = NULL;
    size_t n = 0, off = 0;
    if (seg_path(f, id, p, sizeof p) || read_file(p, &b, &n)) {
        snprintf(err, errlen, "%s: cannot read: %s", p, strerror(errno));
        return -1;
    }
    mx_journal_set_tag(f->j, id);
    if (n >= sizeof MAGIC && !memcmp(b, MAGIC, sizeof MAGIC)) {
        off = sizeof MAGIC;
    } else {
        mx_warn("event=cluster_journal_unknown_format file=%s note=\"not read\"", p);
        off = n; /* counted as torn below when it has bytes */
    }
    while (n - off >= HDR) {
        const unsigned char *h = b + off;
        uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        uint32_t crc = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
        if (len > n - off - HDR || mx_crc32c(0, h + HDR, len) != crc || read_record(f, h + HDR, len))
            break;
        off += HDR + len;
        f->st.records_read++;
    }
    if (off < n) {
        f->st.torn++;
        mx_warn("event=cluster_journal_torn file=%s offset=%zu size=%zu note=\"the rest of this segment "
                "is ignored (a write cut short)\"",
                p, off, n);
    }
    free(b);
    return push_seg(f, id, n) ? (snprintf(err, errlen, "out of memory"), -1) : 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* 1 when name is a segment's (seg_path's: 20 digits, ".mxj"), its id into
 * *id. Digits only: strtoull/sscanf would also take a sign, leading space
 * or a value past 2^64 - a stray file then stood for a segment whose own
 * name does not exist (the open failed) or for one read twice. */
static int segment_id(const char *name, uint64_t *id)
{
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        unsigned d = (unsigned char)name[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (strcmp(name + 20, ".mxj"))
        return 0;
    *id = v;
    return 1;
}

/* The ids of the directory's segments, ascending. */
static int list_segments(const char *dir, uint64_t **ids, size_t *n, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t id;
        if (!segment_id(e->d_name, &id))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *v = mx_realloc(*ids, cap * sizeof *v);
            if (!v) {
                closedir(d);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            *ids = v;
        }
        (*ids)[(*n)++] = id;
    }
    closedir(d);
    if (*n)
        qsort(*ids, *n, sizeof **ids, cmp_u64);
    return 0;
}

int mx_jfile_open(const char *dir, size_t segment_bytes, size_t max_bytes, struct mx_journal *j,
                  char *epoch, size_t epochlen, struct mx_jfile **out, char *err, size_t errlen)
{
    *out = NULL;
    struct mx_jfile *f = mx_calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->lockfd = f->fd = -1;
    f->j = j;
    f->segment_bytes = segment_bytes ? segment_bytes : 1;
    f->max_bytes = max_bytes;
    mx_buf_init(&f->rec, HDR);
    char lockpath[1100];
    uint64_t *ids = NULL;
    size_t n = 0;
    if (strlen(dir) >= sizeof f->dir) {
        snprintf(err, errlen, "%s: path too long", dir);
        goto fail;
    }
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    /* the same check as movexd -t's, so both refuse a path with one message */
    if (mx_jfile_check_dir(dir, err, errlen) || mx_dir_make(dir, err, errlen))
        goto fail;
    snprintf(lockpath, sizeof lockpath, "%s/LOCK", dir);
    f->lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f->lockfd < 0 || flock(f->lockfd, LOCK_EX | LOCK_NB)) {
        snprintf(err, errlen, "%s: %s", lockpath,
                 f->lockfd < 0 ? strerror(errno) : "another movexd is using this journal directory");
        goto fail;
    }
    if (list_segments(dir, &ids, &n, err, errlen))
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (read_segment(f, ids[i], err, errlen))
            goto fail;
    f->next_id = n ? ids[n - 1] + 1 : 1;
    free(ids);
    ids = NULL;
    /* never append to a segment read back: its tail may be torn */
    if (open_segment(f)) {
        snprintf(err, errlen, "%s: cannot write a segment: %s", dir, strerror(errno));
        goto fail;
    }
    drop_old(f, UINT64_MAX);
    mx_journal_set_sink(j, &(struct mx_journal_sink){ .added = on_added, .forgot = on_forgot, .priv = f });
    snprintf(epoch, epochlen, "%s", f->epoch);
    *out = f;
    return 0;
fail:
    free(ids);
    f->j = NULL;
    mx_jfile_close(f);
    return -1;
}

void mx_jfile_close(struct mx_jfile *f)
{
    if (!f)
        return;
    if (f->j)
        mx_journal_set_sink(f->j, NULL);
    if (f->fd >= 0)
        close(f->fd);
    if (f->lockfd >= 0)
        close(f->lockfd);
    free(f->segs);
    mx_buf_free(&f->rec);
    free(f);
}

void mx_jfile_stats(const struct mx_jfile *f, struct mx_jfile_stats *out)
{
    *out = f->st;
    out->segments = f->nsegs;
}

int mx_jfile_check_dir(const char *dir, char *err, size_t errlen)
{
    return mx_dir_check("journal directory", dir, err, errlen);
}
