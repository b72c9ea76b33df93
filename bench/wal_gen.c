/* wal_gen.c - build a data dir with many logged actions, for timing recovery.
 *
 *   wal_gen DIR [--rooms 10000] [--actions 1000000] [--snapshot-every 1000000]
 *               [--clients 8] [--batch 1000] [--sync 0|1]
 *   wal_gen --drop-cache DIR
 *
 * The second form syncs DIR's file system (syncfs) and drops the pages of
 * every file under DIR from the page cache (posix_fadvise DONTNEED), so the
 * next start reads from disk
 * (recovery.mjs --cold 1). Only those files' pages are affected.
 *
 * Drives the real engine and the real write-ahead-log storage (no network):
 * fake connections send hello, create, subscribe and action requests through
 * mx_engine_handle, committed in batches with mx_engine_commit (one WAL
 * write per batch, like one busy event-loop turn). The fsync policy is `no`
 * (generation speed; the bytes on disk are the same), and the storage is
 * finally closed the way a crash leaves it (st->close(ctx, NULL): no final
 * snapshots), so the daemon's next start has to replay the WAL.
 *
 * Workload: ROOMS rooms "doc:r<i>", each created with
 * {"count":0,"items":{}} and subscribed by two of CLIENTS clients. Actions
 * go round-robin over the rooms (so the rooms' records interleave in the
 * WAL as they would on a busy server), alternating between the room's two
 * clients; each action is a patch that increments a counter and adds (or
 * replaces) one of 16 small item objects:
 *
 *   [{"op":"inc","path":"/count","value":1},
 *    {"op":"add","path":"/items/k7","value":{"title":"item 1234 of r42","done":false,"by":"c3"}}]
 *
 * With --snapshot-every N (e.g. 50), snapshots are written during the
 * generation as the daemon would write them, and recovery replays only the
 * records after each room's last snapshot.
 *
 * fsync()/fdatasync() are no-ops in this program (defined below; the
 * executable's definitions take precedence over libc's for the storage code
 * linked into it) unless --sync 1 is given: the files written are the same,
 * only durability during generation is given up, which would otherwise cost
 * two fsyncs per snapshot file (20000 snapshots: minutes). The directory is
 * synced with syncfs() once at the end.
 *
 * Prints one line of key=value results (rooms, actions, acks, seconds).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "movexd/config.h"
#include "movexd/engine.h"
#include "movexd/frame.h"
#include "movexd/log.h"
#include "movexd/map.h"
#include "movexd/storage.h"

/* Only this program: see the header comment. */
static int real_sync;
int fsync(int fd) { return real_sync ? (int)syscall(SYS_fsync, fd) : 0; }
int fdatasync(int fd) { return real_sync ? (int)syscall(SYS_fdatasync, fd) : 0; }

struct fake {
    struct mx_conn conn;
    unsigned long long acks, errors;
    char last_error[256];
};

static void fake_deliver(struct mx_conn *c, mx_frame *f)
{
    struct fake *fk = c->edge;
    const char *d = mx_frame_data(f);
    /* replies start with {"type":"<kind>" */
    if (f->len > 12 && !memcmp(d, "{\"type\":\"ack\"", 13))
        fk->acks++;
    else if (f->len > 14 && (!memcmp(d, "{\"type\":\"error\"", 15) || !memcmp(d, "{\"type\":\"reject\"", 16))) {
        if (!fk->errors++)
            snprintf(fk->last_error, sizeof(fk->last_error), "%.*s", (int)(f->len < 255 ? f->len : 255), d);
    }
}

static void fake_close(struct mx_conn *c, int code, const char *reason)
{
    (void)c;
    fprintf(stderr, "wal_gen: engine closed a connection: %d %s\n", code, reason);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void commit(mx_engine *e)
{
    int rc = mx_engine_commit(e);
    if (rc) {
        fprintf(stderr, "wal_gen: commit failed: %d\n", rc);
        exit(1);
    }
}

static void handle(mx_engine *e, struct fake *fk, const char *msg, int len)
{
    mx_engine_handle(e, &fk->conn, msg, (size_t)len);
}

/* DONTNEED every regular file under path (their pages must be clean: see
 * main); returns the file count or -1. */
static long drop_cache(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    long n = 0;
    struct dirent *de;
    while (n >= 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        int fd = open(p, O_RDONLY | O_DIRECTORY);
        if (fd >= 0) {
            close(fd);
            long k = drop_cache(p);
            n = k < 0 ? -1 : n + k;
            continue;
        }
        fd = open(p, O_RDONLY);
        if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
            perror(p);
            n = -1;
        } else {
            n++;
        }
        if (fd >= 0)
            close(fd);
    }
    closedir(d);
    return n;
}

static void usage(void)
{
    fprintf(stderr, "usage: wal_gen DIR [--rooms N] [--actions N] [--snapshot-every N] [--clients N] [--batch N] [--sync 0|1]\n"
                    "       wal_gen --drop-cache DIR\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--drop-cache")) {
        /* one syncfs writes every dirty page back (much faster than an
         * fsync per file); DONTNEED drops only clean pages */
        int dfd = open(argv[2], O_RDONLY | O_DIRECTORY);
        if (dfd < 0 || syscall(SYS_syncfs, dfd) != 0) {
            perror(argv[2]);
            return 1;
        }
        close(dfd);
        long n = drop_cache(argv[2]);
        if (n < 0)
            return 1;
        printf("dropped %ld files from the page cache\n", n);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-')
        usage();
    const char *dir = argv[1];
    long rooms = 10000, actions = 1000000, snapshot_every = 1000000, clients = 8, batch = 1000;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        long v = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--sync")) {
            real_sync = v != 0;
            i++;
            continue;
        }
        if (v <= 0)
            usage();
        if (!strcmp(argv[i], "--rooms"))
            rooms = v;
        else if (!strcmp(argv[i], "--actions"))
            actions = v;
        else if (!strcmp(argv[i], "--snapshot-every"))
            snapshot_every = v;
        else if (!strcmp(argv[i], "--clients"))
            clients = v;
        else if (!strcmp(argv[i], "--batch"))
            batch = v;
        else
            usage();
        i++;
    }
    if (clients < 2)
        clients = 2;
    if (sodium_init() < 0)
        return 1;
    mx_log_set_level(MX_LOG_WARN);

    static struct mx_config cfg;
    mx_config_defaults(&cfg);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", dir);
    cfg.fsync = MX_FSYNC_NO;
    cfg.snapshot_every = (size_t)snapshot_every;
    cfg.wal_max_bytes = (size_t)1 << 40; /* no checkpoint: keep every record */
    cfg.max_rooms_per_conn = (size_t)rooms + 1;
    cfg.evict_idle_ms = 0;
    cfg.def.create_on_subscribe = 1;
    cfg.def.history = 1000;

    char err[512];
    const struct mx_storage *st = NULL;
    mx_map *recovered = NULL;
    if (mx_storage_wal_open(&cfg, &st, &recovered, err, sizeof(err))) {
        fprintf(stderr, "wal_gen: %s\n", err);
        return 1;
    }
    if (mx_map_len(recovered)) {
        fprintf(stderr, "wal_gen: %s already holds rooms; give an empty or new directory\n", dir);
        return 1;
    }
    mx_engine *e = mx_engine_new(&cfg, st, recovered);
    struct fake *fk = calloc((size_t)clients, sizeof(*fk));
    unsigned long long *next_n = calloc((size_t)(rooms * 2), sizeof(*next_n));
    if (!e || !fk || !next_n)
        return 1;
    double t0 = now_s();
    char msg[512];
    int len;
    for (long c = 0; c < clients; c++) {
        fk[c].conn.deliver = fake_deliver;
        fk[c].conn.close = fake_close;
        fk[c].conn.edge = &fk[c];
        mx_engine_conn_open(e, &fk[c].conn);
        len = snprintf(msg, sizeof(msg), "{\"type\":\"hello\",\"client\":\"c%ld\"}", c);
        handle(e, &fk[c], msg, len);
    }
    commit(e);
    /* room i: created by client i%C, subscribed by clients i%C and (i+1)%C */
    for (long i = 0; i < rooms; i++) {
        struct fake *a = &fk[i % clients], *b = &fk[(i + 1) % clients];
        len = snprintf(msg, sizeof(msg),
                       "{\"type\":\"create\",\"id\":1,\"room\":\"doc:r%ld\",\"state\":{\"count\":0,\"items\":{}}}", i);
        handle(e, a, msg, len);
        len = snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"id\":2,\"room\":\"doc:r%ld\"}", i);
        handle(e, a, msg, len);
        handle(e, b, msg, len);
        if (i % batch == batch - 1)
            commit(e);
    }
    commit(e);
    double t1 = now_s();
    for (long k = 0; k < actions; k++) {
        long i = k % rooms, round = k / rooms;
        int which = (int)(round & 1);
        long c = (i + which) % clients;
        unsigned long long n = ++next_n[i * 2 + which];
        len = snprintf(msg, sizeof(msg),
                       "{\"type\":\"action\",\"id\":%llu,\"room\":\"doc:r%ld\",\"n\":%llu,\"action\":{\"type\":\"patch\","
                       "\"payload\":[{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},"
                       "{\"op\":\"add\",\"path\":\"/items/k%ld\",\"value\":{\"title\":\"item %ld of r%ld\",\"done\":false,\"by\":\"c%ld\"}}]}}",
                       n, i, n, round % 16, k, i, c);
        handle(e, &fk[c], msg, len);
        if (k % batch == batch - 1)
            commit(e);
    }
    commit(e);
    double t2 = now_s();
    unsigned long long acks = 0, errors = 0;
    for (long c = 0; c < clients; c++) {
        acks += fk[c].acks;
        errors += fk[c].errors;
        if (fk[c].errors)
            fprintf(stderr, "wal_gen: client c%ld: %llu errors, first: %s\n", c, fk[c].errors, fk[c].last_error);
    }
    struct mx_storage_stats ss;
    st->stats(st->ctx, &ss);
    /* leave the files as a crash after the last flush would: no final snapshots */
    for (long c = 0; c < clients; c++)
        mx_engine_conn_closed(e, &fk[c].conn);
    commit(e);
    st->close(st->ctx, NULL);
    mx_engine_free(e);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || syscall(SYS_syncfs, dfd) != 0) {
        perror("wal_gen: syncfs");
        return 1;
    }
    close(dfd);
    double t3 = now_s();
    printf("rooms=%ld actions=%ld acks=%llu errors=%llu snapshot_every=%ld fsync=%s wal_bytes=%llu snapshots_written=%llu "
           "snapshot_bytes=%llu create_s=%.2f actions_s=%.2f close_and_syncfs_s=%.2f\n",
           rooms, actions, acks, errors, snapshot_every, real_sync ? "real" : "skipped", (unsigned long long)ss.wal_bytes,
           (unsigned long long)ss.snapshots_written, (unsigned long long)ss.snapshot_bytes, t1 - t0, t2 - t1,
           t3 - t2);
    free(fk);
    free(next_n);
    mx_config_free(&cfg);
    return errors || acks != (unsigned long long)actions;
}
