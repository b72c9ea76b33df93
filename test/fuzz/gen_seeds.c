/* gen_seeds.c - writes the WAL, atomic-file and snapshot seeds of
 * test/fuzz/corpus/{wal,snapshot}/ with the real writers: an engine on WAL
 * storage runs a small workload (creates, applied and rejected actions,
 * several clients, a deletion), and the seeds are the segment it wrote,
 * snapshot payloads mx_snapshot_encode made of its rooms, and a snapshot
 * file mx_atomic_write made. Not part of the build; run by hand when the
 * record or snapshot format changes (docs/FUZZING.md):
 *
 *   clang -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude \
 *     test/fuzz/gen_seeds.c $(find src -name '*.c' ! -name main.c) \
 *     $(pkg-config --libs libwebsockets jansson libsodium openssl) -lm \
 *     -o build/fuzz/gen_seeds && build/fuzz/gen_seeds test/fuzz/corpus
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "movexd/engine.h"
#include "movexd/log.h"
#include "movexd/room.h"
#include "movexd/snapshot.h"
#include "movexd/storage.h"
#include "movexd/wal.h"

static void die(const char *what)
{
    fprintf(stderr, "gen_seeds: %s\n", what);
    exit(1);
}

static void deliver(struct mx_conn *c, mx_frame *f)
{
    (void)c;
    (void)f;
}
static void close_conn(struct mx_conn *c, int code, const char *reason)
{
    (void)c;
    fprintf(stderr, "gen_seeds: close %d %s\n", code, reason);
    exit(1);
}

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n)
        die("read");
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* seed file = one flags byte + parts */
static void seed(const char *dir, const char *name, int flags, const void *a, size_t alen,
                 const void *b, size_t blen)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        die(path);
    if (flags >= 0)
        fputc(flags, f);
    fwrite(a, 1, alen, f);
    if (b)
        fwrite(b, 1, blen, f);
    fclose(f);
    printf("%s (%zu bytes)\n", path, alen + blen + (flags >= 0));
}

static const char *const workload[] = {
    "{\"type\":\"hello\",\"client\":\"c1\"}",
    "{\"type\":\"create\",\"id\":1,\"room\":\"t:a\",\"state\":{\"n\":0,\"l\":[],\"s\":\"x\"}}",
    "{\"type\":\"subscribe\",\"id\":2,\"room\":\"t:a\"}",
    "{\"type\":\"action\",\"id\":3,\"room\":\"t:a\",\"n\":1,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"inc\",\"path\":\"/n\",\"value\":1},{\"op\":\"add\",\"path\":\"/l/-\",\"value\":1.5}]}}",
    "{\"type\":\"action\",\"id\":4,\"room\":\"t:a\",\"n\":2,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"test\",\"path\":\"/n\",\"value\":7}]}}",
    "{\"type\":\"action\",\"id\":5,\"room\":\"t:a\",\"n\":3,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"move\",\"from\":\"/s\",\"path\":\"/m\"},{\"op\":\"remove\",\"path\":\"/l/0\"}]}}",
    "{\"type\":\"create\",\"id\":6,\"room\":\"h2:b\",\"state\":[1,2]}",
    "{\"type\":\"subscribe\",\"id\":7,\"room\":\"h2:b\"}",
    "{\"type\":\"action\",\"id\":8,\"room\":\"h2:b\",\"n\":1,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"add\",\"path\":\"/-\",\"value\":{\"k\":null}}]}}",
    "{\"type\":\"action\",\"id\":9,\"room\":\"h2:b\",\"n\":2,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"replace\",\"path\":\"/0\",\"value\":true}]}}",
    "{\"type\":\"action\",\"id\":10,\"room\":\"h2:b\",\"n\":3,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"copy\",\"from\":\"/0\",\"path\":\"/1\"}]}}",
    "{\"type\":\"create\",\"id\":11,\"room\":\"t:gone\"}",
    NULL,
};

static const char *const workload2[] = { /* a second client in t:a */
    "{\"type\":\"hello\",\"client\":\"c2@x\"}",
    "{\"type\":\"subscribe\",\"id\":1,\"room\":\"t:a\"}",
    "{\"type\":\"action\",\"id\":2,\"room\":\"t:a\",\"n\":5,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"inc\",\"path\":\"/n\",\"value\":-2}]}}",
    "{\"type\":\"action\",\"id\":3,\"room\":\"t:a\",\"n\":6,\"dep\":5,\"base\":0,\"strict\":true,"
    "\"action\":{\"type\":\"patch\",\"payload\":[]}}",
    NULL,
};

int main(int argc, char **argv)
{
    if (argc != 2)
        die("usage: gen_seeds CORPUS_DIR");
    const char *corpus = argv[1];
    char dir[] = "/tmp/gen_seeds-XXXXXX", wal[64], snapdir[80], segpath[160];
    if (!mkdtemp(dir))
        die("mkdtemp");
    mx_log_set_level(MX_LOG_ERROR);

    struct mx_config cfg;
    static const char text[] = "room default {\n    history 8\n}\nroom h2 {\n    history 2\n}\n";
    char err[512];
    if (mx_config_parse(&cfg, text, "gen", err, sizeof(err)))
        die(err);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", dir);
    cfg.fsync = MX_FSYNC_NO;
    cfg.wal_segment_bytes = 64 * 1024;

    const struct mx_storage *st;
    mx_map *rooms = NULL;
    if (mx_storage_wal_open(&cfg, &st, &rooms, err, sizeof(err)))
        die(err);
    mx_engine *e = mx_engine_new(&cfg, st, rooms);
    struct mx_conn c1, c2;
    memset(&c1, 0, sizeof(c1));
    memset(&c2, 0, sizeof(c2));
    c1.deliver = c2.deliver = deliver;
    c1.close = c2.close = close_conn;
    mx_engine_conn_open(e, &c1);
    mx_engine_conn_open(e, &c2);
    for (int i = 0; workload[i]; i++) {
        mx_engine_handle(e, &c1, workload[i], strlen(workload[i]));
        if (mx_engine_commit(e))
            die("commit");
    }
    for (int i = 0; workload2[i]; i++) {
        mx_engine_handle(e, &c2, workload2[i], strlen(workload2[i]));
        if (mx_engine_commit(e))
            die("commit");
    }
    if (mx_engine_delete_room(e, "t:gone", 6) || mx_engine_commit(e))
        die("delete");

    /* snapshot payloads of the live rooms, and one snapshot file */
    char sd[1024], wd[1024];
    snprintf(sd, sizeof(sd), "%s/snapshot", corpus);
    snprintf(wd, sizeof(wd), "%s/wal", corpus);
    const char *ids[] = {"t:a", "h2:b"};
    for (int i = 0; i < 2; i++) {
        struct mx_room *r = mx_engine_room(e, ids[i], strlen(ids[i]));
        mx_buf b;
        mx_buf_init(&b, 0);
        if (!r || mx_snapshot_encode(r, 17, &b))
            die("encode");
        char name[64];
        snprintf(name, sizeof(name), "real-%s", i ? "h2-history-dedup" : "t-log-dedup-2-clients");
        seed(sd, name, 0, mx_buf_data(&b), b.len, NULL, 0);
        snprintf(name, sizeof(name), "fix-%s", i ? "h2" : "t");
        seed(sd, name, 1, mx_buf_data(&b), b.len, NULL, 0);
        if (i == 0) {
            if (mx_atomic_write(dir, "x.snap", MX_SNAPSHOT_MAGIC, mx_buf_data(&b), b.len, err,
                                sizeof(err)))
                die(err);
            char path[160];
            snprintf(path, sizeof(path), "%s/x.snap", dir);
            size_t flen;
            void *file = slurp(path, &flen);
            seed(wd, "atomic-snapshot-file", 4, file, flen, NULL, 0);
            unlink(path);
            free(file);
        }
        mx_buf_free(&b);
    }

    /* the WAL as a crash leaves it (no final snapshots) */
    mx_engine_conn_closed(e, &c1);
    mx_engine_conn_closed(e, &c2);
    st->close(st->ctx, NULL);
    mx_engine_free(e);
    snprintf(wal, sizeof(wal), "%s/wal", dir);
    snprintf(segpath, sizeof(segpath), "%s/wal-%020d.log", wal, 1);
    size_t slen;
    uint8_t *seg = slurp(segpath, &slen);
    seed(wd, "real-segment-reader", 0, seg, slen, NULL, 0);
    seed(wd, "real-segment-recovery", 2, seg, slen, NULL, 0);
    /* torn tail: the last record cut short */
    seed(wd, "torn-tail", 0, seg, slen - 5, NULL, 0);
    /* the same records in two segments: split after the first record */
    size_t first = 8 + (size_t)(seg[0] | seg[1] << 8 | seg[2] << 16 | (uint32_t)seg[3] << 24);
    uint8_t mark[5] = {'@', 'S', 'E', 'G', 0};
    uint8_t *two = malloc(slen + 5);
    memcpy(two, seg, first);
    memcpy(two + first, mark, 5);
    memcpy(two + first + 5, seg + first, slen - first);
    seed(wd, "two-segments-recovery", 3, two, slen + 5, NULL, 0);
    two[first + 4] = 2; /* a gap of two LSNs */
    seed(wd, "two-segments-gap", 1, two, slen + 5, NULL, 0);
    free(two);
    free(seg);

    /* clean up the scratch directory */
    snprintf(snapdir, sizeof(snapdir), "%s/rooms", dir);
    unlink(segpath);
    char p[200];
    snprintf(p, sizeof(p), "%s/LOCK", dir);
    unlink(p);
    rmdir(wal);
    rmdir(snapdir);
    if (rmdir(dir))
        fprintf(stderr, "gen_seeds: %s left behind: %s\n", dir, strerror(errno));
    mx_config_free(&cfg);
    return 0;
}
