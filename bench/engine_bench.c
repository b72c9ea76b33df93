/* engine_bench.c - the engine's CPU per acked action without the network:
 * W1 or W4 of bench/compare.mjs fed straight into mx_engine_handle() and
 * mx_engine_commit() over the real WAL storage (fsync no, history 10000,
 * the default snapshot_every: snapshots are written as in the daemon), with
 * connections whose deliver callback keeps each frame until the end of the
 * turn, as a send queue would.
 *
 *   W4  64 writers over 8 rooms, 16 actions each per turn (ack + 7 fwds)
 *   W1  1 writer, 64 actions per turn, 10 subscribers (ack + 10 fwds)
 *
 * What the socket path costs (recv, lws, sendmsg: about half of the
 * daemon's CPU) is not here, so this is the part of the per-ack cost that
 * the engine, the protocol encoders, the WAL and the snapshots own, with
 * far less noise than a loadgen run on a shared machine. REPS batches of
 * TURNS turns each, CPU time of the process; median and [min..max] in ns
 * per acked action. Every ack is checked (count and seq order).
 *
 * Usage: engine_bench [w4|w1] [reps] [turns] (temporary data dir in /tmp,
 * removed at the end).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "movexd/config.h"
#include "movexd/engine.h"
#include "movexd/log.h"
#include "movexd/storage.h"

#define MAXCONN 80
#define HELD 4096

struct bconn {
    struct mx_conn conn;
    uint64_t n;       /* next action number */
    uint64_t acks;    /* acks received */
    int writer;
};

static mx_frame *held[HELD * 16];
static size_t nheld;
static uint64_t total_frames;

static void b_deliver(struct mx_conn *c, mx_frame *f)
{
    struct bconn *b = c->edge;
    const char *d = mx_frame_data(f);
    if (f->len > 12 && !memcmp(d, "{\"type\":\"ack", 12))
        b->acks++;
    total_frames++;
    if (nheld < sizeof(held) / sizeof(held[0]))
        held[nheld++] = mx_frame_ref(f); /* deliver takes its own reference */
}

static void b_close(struct mx_conn *c, int code, const char *reason)
{
    fprintf(stderr, "engine_bench: connection closed %d %s\n", code, reason);
    exit(1);
}

static char dir[] = "/tmp/mx-engine-bench-XXXXXX";

/* the data dir goes on every exit, a failed check's too */
static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd))
        fprintf(stderr, "engine_bench: could not remove %s\n", dir);
}

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *wl = argc > 1 ? argv[1] : "w4";
    int reps = argc > 2 ? atoi(argv[2]) : 9;
    int turns = argc > 3 ? atoi(argv[3]) : 400;
    int w4 = strcmp(wl, "w1") != 0;
    int nconn = w4 ? 64 : 11, nrooms = w4 ? 8 : 1, window = w4 ? 16 : 64;

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(remove_dir);
    char conf[1024], err[512];
    snprintf(conf, sizeof conf,
             "log_level warn\nfsync no\ndata_dir %s\nidle_timeout_ms 0\nmax_queue_bytes 64m\n"
             "rate_messages_per_sec 1000000\nrate_burst 10000000\n"
             "room default {\n    reducer json\n    history 10000\n    create_on_subscribe yes\n}\n",
             dir);
    struct mx_config cfg;
    if (mx_config_parse(&cfg, conf, "engine_bench.conf", err, sizeof err)) {
        fprintf(stderr, "engine_bench: %s\n", err);
        return 1;
    }
    mx_log_set_level(MX_LOG_ERROR);
    const struct mx_storage *st;
    mx_map *rooms;
    if (mx_storage_wal_open(&cfg, &st, &rooms, err, sizeof err)) {
        fprintf(stderr, "engine_bench: %s\n", err);
        return 1;
    }
    mx_engine *e = mx_engine_new(&cfg, st, rooms);
    static struct bconn c[MAXCONN];
    char msg[512];
    for (int i = 0; i < nconn; i++) {
        c[i].conn.deliver = b_deliver;
        c[i].conn.close = b_close;
        c[i].conn.edge = &c[i];
        c[i].n = 1;
        c[i].writer = w4 || i == 0;
        mx_engine_conn_open(e, &c[i].conn);
        int len = snprintf(msg, sizeof msg, "{\"type\":\"hello\",\"client\":\"lg-%d\"}", i);
        mx_engine_handle(e, &c[i].conn, msg, (size_t)len);
        len = snprintf(msg, sizeof msg, "{\"type\":\"subscribe\",\"id\":0,\"room\":\"bench:r%d\"}",
                       i % nrooms);
        mx_engine_handle(e, &c[i].conn, msg, (size_t)len);
    }
    mx_engine_commit(e);
    for (size_t k = 0; k < nheld; k++)
        mx_frame_unref(held[k]);
    nheld = 0;

    double *ns = calloc((size_t)reps, sizeof(double));
    uint64_t id = 1, expect = 0;
    for (int r = -1; r < reps; r++) { /* rep -1 warms up */
        uint64_t acked0 = 0;
        for (int i = 0; i < nconn; i++)
            acked0 += c[i].acks;
        double t0 = cpu_ns();
        for (int t = 0; t < turns; t++) {
            for (int i = 0; i < nconn; i++) {
                if (!c[i].writer)
                    continue;
                for (int k = 0; k < window; k++) {
                    int len = snprintf(msg, sizeof msg,
                                       "{\"type\":\"action\",\"id\":%llu,\"room\":\"bench:r%d\",\"n\":%llu,"
                                       "\"action\":{\"type\":\"patch\",\"payload\":[{\"op\":\"inc\","
                                       "\"path\":\"/count\",\"value\":1}]}}",
                                       (unsigned long long)id++, i % nrooms, (unsigned long long)c[i].n++);
                    mx_engine_handle(e, &c[i].conn, msg, (size_t)len);
                    expect++;
                }
            }
            mx_engine_commit(e);
            for (size_t k = 0; k < nheld; k++)
                mx_frame_unref(held[k]);
            nheld = 0;
        }
        double t1 = cpu_ns();
        uint64_t acked = 0;
        for (int i = 0; i < nconn; i++)
            acked += c[i].acks;
        if (acked != expect) {
            fprintf(stderr, "engine_bench: %llu acks for %llu actions\n", (unsigned long long)acked,
                    (unsigned long long)expect);
            return 1;
        }
        if (r >= 0)
            ns[r] = (t1 - t0) / (double)(acked - acked0);
    }
    double sorted[64];
    int m = reps < 64 ? reps : 64;
    memcpy(sorted, ns, (size_t)m * sizeof(double));
    qsort(sorted, (size_t)m, sizeof(double), cmp);
    printf("{\"workload\":\"%s\",\"reps\":%d,\"actions_per_rep\":%d,\"ns_per_ack\":%.0f,\"min\":%.0f,\"max\":%.0f,"
           "\"frames\":%llu}\n",
           wl, m, turns * window * (w4 ? nconn : 1), sorted[m / 2], sorted[0], sorted[m - 1],
           (unsigned long long)total_frames);
    for (int i = 0; i < nconn; i++)
        mx_engine_conn_closed(e, &c[i].conn);
    mx_engine_close(e);
    mx_engine_free(e);
    mx_config_free(&cfg);
    free(ns);
    return 0;
}
