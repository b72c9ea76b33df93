/* fuzz_journal.c - libFuzzer harness for the cluster journal on disk
 * (cluster_journal_file.c): segments read back at a node's start.
 *
 * Input: a flags byte, then the bytes of up to 3 segments separated by
 * "@SEG" (each normally starts with the magic MXJRNL01). Flag 1: every
 * record's CRC is recomputed first, so mutations of the payloads get past
 * the CRC check and reach the decoder.
 *
 * Oracles (beyond ASan/UBSan/leaks):
 * - opening never fails on damaged contents (only the directory itself can
 *   make it fail): a bad record ends its segment;
 * - reading is stable: the directory opened a second time (which adds a
 *   segment holding only the epoch) gives the same journal - the same
 *   rooms, batches, heads, actions and epoch;
 * - what was read survives a round trip through the writer: the batches
 *   added to an empty journal with the file as its sink, in a fresh
 *   directory, read back identical.
 *
 * FUZZ_JOURNAL_SHOW=1 prints what an input reads as.
 *
 * Files are written only in a scratch directory made once per process
 * ($FUZZ_TMPDIR, else $TMPDIR, else /tmp) and emptied after every input.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "movexd/buf.h"
#include "movexd/cluster_journal.h"
#include "movexd/cluster_journal_file.h"
#include "movexd/codec.h"
#include "movexd/log.h"
#include "movexd/wal.h"

#define FUZZ_NAME "fuzz_journal"
#include "fuzz_det.h"

#define MAX_INPUT_BYTES (64 * 1024)
#define MAX_SEGS 3
#define BIG_BATCHES (1u << 20)
#define BIG_BYTES (1u << 30)

static char base[512], dir1[600], dir2[600];

/* ---- scratch directories ---- */

static void remove_scratch(void)
{
    fuzz_empty_dir(dir1);
    fuzz_empty_dir(dir2);
    rmdir(dir1);
    rmdir(dir2);
    rmdir(base);
}

static void write_file(const char *dir, uint64_t id, const unsigned char *p, size_t n)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%020llu.mxj", dir, (unsigned long long)id);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "%s: %s", path, strerror(errno));
    CHECK(n == 0 || write(fd, p, n) == (ssize_t)n, "%s: short write", path);
    close(fd);
}

/* Recompute every record's CRC in place (after the 8-byte magic). */
static void fix_crcs(unsigned char *p, size_t n)
{
    size_t off = n >= 8 ? 8 : n;
    while (n - off >= 8) {
        uint32_t len = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 |
                       (uint32_t)p[off + 3] << 24;
        if (len > n - off - 8)
            break;
        uint32_t crc = mx_crc32c(0, p + off + 8, len);
        for (int i = 0; i < 4; i++)
            p[off + 4 + i] = (unsigned char)(crc >> (8 * i));
        off += 8 + len;
    }
}

/* ---- the journal's contents, in a canonical order ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static const struct mx_cluster_head ZERO;

static void put_head(mx_buf *b, const struct mx_cluster_head *h)
{
    mx_buf_printf(b, "%llu-%llu %s %s %s;", (unsigned long long)h->seq, (unsigned long long)h->sub, h->sum,
                  h->hash, h->inc);
}

/* The room names, sorted (the map's order is its own). */
static size_t room_names(const struct mx_journal *j, char ***out)
{
    size_t it = 0, n = 0, cap = 0;
    const char *room;
    const struct mx_journal_batch *newest;
    char **v = NULL;
    while (mx_journal_next_room(j, &it, &room, &newest)) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = realloc(v, cap * sizeof *v);
            CHECK(v, "out of memory");
        }
        v[n++] = strdup(room);
    }
    if (n)
        qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    return n;
}

/* Every batch of room `name` (all past the zero head), in order, in a
 * calloc'd array the caller frees; *k is how many. */
static const struct mx_journal_batch **room_batches(const struct mx_journal *j, const char *name, size_t *k)
{
    *k = mx_journal_lost(j, name, &ZERO, NULL, 0);
    const struct mx_journal_batch **bs = calloc(*k ? *k : 1, sizeof *bs);
    CHECK(bs, "out of memory");
    mx_journal_lost(j, name, &ZERO, bs, *k);
    return bs;
}

/* Every room's batches with every field, as text. */
static void describe(const struct mx_journal *j, const char *epoch, mx_buf *b)
{
    mx_buf_printf(b, "epoch %s\n", epoch);
    char **names;
    size_t nr = room_names(j, &names);
    for (size_t r = 0; r < nr; r++) {
        size_t k;
        const struct mx_journal_batch **bs = room_batches(j, names[r], &k);
        mx_buf_printf(b, "room %s %zu\n", names[r], k);
        for (size_t i = 0; i < k; i++) {
            put_head(b, &bs[i]->expected);
            put_head(b, &bs[i]->after);
            mx_buf_printf(b, " w%zu t%llu n%zu\n", bs[i]->window, (unsigned long long)bs[i]->now_ms, bs[i]->n);
            for (size_t a = 0; a < bs[i]->n; a++) {
                const struct mx_cluster_action *x = &bs[i]->a[a];
                mx_buf_printf(b, "  %s %llu %llu %d %d %s [", x->client, (unsigned long long)x->n,
                              (unsigned long long)x->base, x->strict, x->applied, x->what);
                for (size_t d = 0; d < x->ndeps; d++)
                    mx_buf_printf(b, "%llu,", (unsigned long long)x->deps[d]);
                mx_buf_printf(b, "] %s", x->body ? "body:" : "nobody");
                if (x->body)
                    mx_put_bytes(b, x->body, x->body_len);
                mx_buf_putc(b, '\n');
            }
        }
        free(bs);
    }
    for (size_t r = 0; r < nr; r++)
        free(names[r]);
    free(names);
    CHECK(!b->oom, "out of memory");
}

/* Open dir into a new journal and describe it; the file stays open. */
static struct mx_journal *open_dir(const char *dir, struct mx_jfile **f, char *epoch, mx_buf *desc)
{
    char err[1400];
    struct mx_journal *j = mx_journal_new(BIG_BATCHES, BIG_BYTES);
    CHECK(j, "out of memory");
    int rc = mx_jfile_open(dir, 1u << 20, BIG_BYTES, j, epoch, 64, f, err, sizeof err);
    CHECK(rc == 0, "open %s: %s", dir, err);
    describe(j, epoch, desc);
    return j;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_det_init();
    fuzz_make_scratch(base, sizeof(base), "fuzz_journal");
    snprintf(dir1, sizeof dir1, "%s/a", base);
    snprintf(dir2, sizeof dir2, "%s/b", base);
    if (mkdir(dir1, 0700) || mkdir(dir2, 0700))
        abort();
    atexit(remove_scratch);
    fuzz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT_BYTES)
        return 0;
    rng = 0;
    int flags = data[0];
    unsigned char *in = malloc(size);
    CHECK(in, "out of memory");
    memcpy(in, data + 1, size - 1);
    size_t n = size - 1, start = 0;
    for (size_t seg = 0; seg < MAX_SEGS; seg++) {
        size_t end = start;
        while (seg + 1 < MAX_SEGS && end + 4 <= n && memcmp(in + end, "@SEG", 4))
            end++;
        int more = seg + 1 < MAX_SEGS && end + 4 <= n;
        if (!more)
            end = n;
        if (flags & 1)
            fix_crcs(in + start, end - start);
        write_file(dir1, seg + 1, in + start, end - start);
        if (!more)
            break;
        start = end + 4;
    }
    free(in);

    /* read, then read again: the same journal */
    char e1[64], e2[64], e4[64];
    mx_buf d1, d2, d4;
    mx_buf_init(&d1, 0);
    mx_buf_init(&d2, 0);
    mx_buf_init(&d4, 0);
    struct mx_jfile *f1, *f2, *f3, *f4;
    struct mx_journal *j1 = open_dir(dir1, &f1, e1, &d1);
    mx_jfile_close(f1);
    if (getenv("FUZZ_JOURNAL_SHOW")) /* what an input reads as */
        fprintf(fuzz_err, "%s", mx_buf_data(&d1));
    struct mx_journal *j2 = open_dir(dir1, &f2, e2, &d2);
    CHECK(d1.len == d2.len && !memcmp(mx_buf_data(&d1), mx_buf_data(&d2), d1.len), "read twice differs:\n%s\n--\n%s",
          mx_buf_data(&d1), mx_buf_data(&d2));
    mx_jfile_close(f2);
    mx_journal_free(j2);

    /* written anew from what was read, in a fresh directory: the same */
    char err[1400], e3[64];
    struct mx_journal *j3 = mx_journal_new(BIG_BATCHES, BIG_BYTES);
    CHECK(j3, "out of memory");
    CHECK(mx_jfile_open(dir2, 1u << 20, BIG_BYTES, j3, e3, sizeof e3, &f3, err, sizeof err) == 0, "%s", err);
    CHECK(e3[0] == '\0', "a fresh directory has no epoch: %s", e3);
    mx_jfile_epoch(f3, e1);
    char **names;
    size_t nr = room_names(j1, &names);
    for (size_t r = 0; r < nr; r++) {
        size_t k;
        const struct mx_journal_batch **bs = room_batches(j1, names[r], &k);
        for (size_t i = 0; i < k; i++)
            CHECK(mx_journal_add(j3, names[r], &bs[i]->expected, &bs[i]->after, bs[i]->window, bs[i]->now_ms,
                                 bs[i]->a, bs[i]->n) == 0,
                  "room %s batch %zu refused", names[r], i);
        free(bs);
        free(names[r]);
    }
    free(names);
    mx_jfile_close(f3);
    mx_journal_free(j3);
    struct mx_journal *j4 = open_dir(dir2, &f4, e4, &d4);
    CHECK(d1.len == d4.len && !memcmp(mx_buf_data(&d1), mx_buf_data(&d4), d1.len),
          "written anew differs:\n%s\n--\n%s", mx_buf_data(&d1), mx_buf_data(&d4));
    mx_jfile_close(f4);
    mx_journal_free(j4);
    mx_journal_free(j1);
    mx_buf_free(&d1);
    mx_buf_free(&d2);
    mx_buf_free(&d4);
    fuzz_empty_dir(dir1);
    fuzz_empty_dir(dir2);
    return 0;
}
