/* fuzz_wal.c - libFuzzer harness for the write-ahead-log reader (wal_reader.c),
 * atomic files, CRC-32C (crc32c.c) and, optionally, full recovery
 * (recovery.c: replay of create/action/reject/delete records and
 * snapshots).
 *
 * Input: one flags byte, then the segment bytes. The segment bytes are
 * split on the 4-byte marker "@SEG" into up to 4 segment files in a
 * scratch directory (one per process, under $FUZZ_TMPDIR, else $TMPDIR,
 * else /tmp; emptied after every input). The first segment is
 * wal-00000000000000000001.log; each later one starts with one byte d and
 * is named with the LSN after the previous segment's valid records plus
 * (int8)d, so d = 0 makes the log contiguous and anything else a gap or an
 * overlap.
 *
 *   flags bit 0  fix CRCs: give every record that fits a correct CRC, so
 *                mutations explore lengths and payloads, not checksums
 *   flags bit 1  recovery: mx_storage_wal_open on the directory, an engine
 *                on the recovered rooms runs a small workload (subscribe,
 *                actions, create, delete), a clean shutdown (snapshots),
 *                a second recovery, which must give the same rooms
 *   flags bit 2  atomic file: the rest of the input is a snapshot file for
 *                mx_atomic_read (bit 0 fixes its magic, length and CRC);
 *                what reads back must be written and read again intact
 *
 * Oracles for the reader, beyond the sanitizers: the records it returns
 * are exactly those an independent walk of the same bytes finds (all of
 * them when it ends without error, a prefix when it reports corruption),
 * LSNs are consecutive, a torn tail really has no valid record after it,
 * and after mx_wal_reader_truncate_tail the log reads back cleanly with the
 * same records. mx_crc32c must equal mx_crc32c_portable on every input.
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

#include "movexd/config.h"
#include "movexd/digest.h"
#include "movexd/engine.h"
#include "movexd/log.h"
#include "movexd/map.h"
#include "movexd/proto.h"
#include "movexd/room.h"
#include "movexd/snapshot.h"
#include "movexd/storage.h"
#include "movexd/wal.h"

#define FUZZ_NAME "fuzz_wal"
#include "fuzz_det.h"

#define MAX_INPUT_BYTES (256 * 1024)
#define MAX_SEGS 4
#define MAX_RECS 4096

static char base[512], waldir[600], snapdir[600];

/* ---- scratch directory ---- */

static void clean(void)
{
    fuzz_empty_dir(waldir);
    fuzz_empty_dir(snapdir);
    fuzz_empty_dir(base); /* files only; wal/ and rooms/ stay */
}

static void remove_scratch(void)
{
    clean();
    rmdir(waldir);
    rmdir(snapdir);
    rmdir(base);
}

static void write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "%s: %s", path, strerror(errno));
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        CHECK(k > 0, "%s: write: %s", path, strerror(errno));
        b += k;
        n -= (size_t)k;
    }
    close(fd);
}

static struct mx_config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_det_init();
    fuzz_make_scratch(base, sizeof(base), "fuzz_wal");
    snprintf(waldir, sizeof(waldir), "%s/wal", base);
    snprintf(snapdir, sizeof(snapdir), "%s/rooms", base);
    if (mkdir(waldir, 0700) || mkdir(snapdir, 0700))
        abort();
    atexit(remove_scratch);

    mx_config_defaults(&cfg);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", base);
    cfg.fsync = MX_FSYNC_NO;
    cfg.wal_segment_bytes = 64 * 1024;
    cfg.snapshot_every = 4;
    cfg.def.history = 8;
    cfg.def.create_on_subscribe = 1;

    fuzz_quiet_logs();
    return 0;
}

/* ---- an independent walk of the records ---- */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static uint32_t rec_crc(const uint8_t *rec, uint32_t len)
{
    return mx_crc32c(mx_crc32c(0, rec, 4), rec + MX_WAL_HEADER, len);
}
/* A whole valid record at off? Returns its payload length, or 0. */
static uint32_t valid_at(const uint8_t *m, size_t size, size_t off)
{
    if (size < off + MX_WAL_HEADER + 1)
        return 0;
    uint32_t l = get32(m + off);
    if (l == 0 || l > MX_WAL_MAX_RECORD || l > size - off - MX_WAL_HEADER)
        return 0;
    return get32(m + off + 4) == rec_crc(m + off, l) ? l : 0;
}

struct rec {
    uint32_t len, crc; /* payload length and CRC-32C of the payload */
};

/* Walk a segment's records until the first one that is not valid (fixing
 * CRCs first when fix). Appends to recs (when not NULL); returns how many
 * it found. */
static size_t walk(uint8_t *m, size_t size, int fix, struct rec *recs, size_t *nrecs)
{
    size_t off = 0, n = 0;
    while (size >= off + MX_WAL_HEADER) {
        uint32_t l = get32(m + off);
        if (l == 0 || l > MX_WAL_MAX_RECORD || l > size - off - MX_WAL_HEADER)
            break;
        if (fix)
            put32(m + off + 4, rec_crc(m + off, l));
        else if (get32(m + off + 4) != rec_crc(m + off, l))
            break;
        if (recs && *nrecs < MAX_RECS)
            recs[(*nrecs)++] = (struct rec){l, mx_crc32c(0, m + off + MX_WAL_HEADER, l)};
        n++;
        off += MX_WAL_HEADER + l;
    }
    return n;
}

/* ---- reader ---- */

static uint8_t *find_mark(uint8_t *p, uint8_t *end)
{
    for (; end - p >= 4; p++)
        if (!memcmp(p, "@SEG", 4))
            return p;
    return NULL;
}

struct seg {
    uint64_t lsn;
    uint8_t *p;
    size_t len;
};

static int read_all(struct rec *got, size_t *ngot, uint64_t first_lsn, int *torn, char *tfile,
                    uint64_t *toff)
{
    mx_wal_reader *r = NULL;
    char err[1024];
    *ngot = 0;
    *torn = 0;
    if (mx_wal_reader_open(&r, waldir, err, sizeof(err)))
        return -1;
    const void *payload;
    size_t len;
    uint64_t lsn, want = first_lsn;
    int rc;
    while ((rc = mx_wal_reader_next(r, &payload, &len, &lsn, err, sizeof(err))) == 1) {
        CHECK(lsn == want, "record LSN %llu, expected %llu", (unsigned long long)lsn,
              (unsigned long long)want);
        CHECK(len >= 1 && len <= MX_WAL_MAX_RECORD, "record of %zu bytes", len);
        uint32_t c = mx_crc32c(0, payload, len);
        CHECK(c == mx_crc32c_portable(0, payload, len), "CRC-32C implementations disagree");
        if (*ngot < MAX_RECS)
            got[(*ngot)++] = (struct rec){(uint32_t)len, c};
        want++;
    }
    if (rc < 0) {
        CHECK(err[0] && strstr(err, "offset"), "corruption without a file and offset: %s", err);
    } else {
        CHECK(mx_wal_reader_next_lsn(r) == want, "next LSN %llu after the last record %llu",
              (unsigned long long)mx_wal_reader_next_lsn(r), (unsigned long long)want - 1);
        const char *file;
        if (mx_wal_reader_torn(r, &file, toff)) {
            *torn = 1;
            snprintf(tfile, 1200, "%s", file);
            CHECK(mx_wal_reader_truncate_tail(r, err, sizeof(err)) == 0, "truncate: %s", err);
        }
    }
    mx_wal_reader_close(r);
    return rc;
}

static void check_reader(struct seg *segs, size_t nsegs, const struct rec *walked, size_t nwalked)
{
    static struct rec got[MAX_RECS], again[MAX_RECS];
    size_t ngot, nagain;
    int torn, torn2;
    char tfile[1200], tfile2[1200];
    uint64_t toff, toff2;
    int rc = read_all(got, &ngot, segs[0].lsn, &torn, tfile, &toff);
    size_t cmp = ngot < nwalked ? ngot : nwalked;
    CHECK(rc < 0 ? ngot <= nwalked : ngot == nwalked,
          "reader returned %zu records (rc %d), the walk found %zu", ngot, rc, nwalked);
    for (size_t i = 0; i < cmp; i++)
        CHECK(got[i].len == walked[i].len && got[i].crc == walked[i].crc,
              "record %zu differs from the walk", i);
    if (rc < 0 || !torn)
        return;
    /* torn: in the last segment, with no valid record at any later offset */
    const struct seg *last = &segs[nsegs - 1];
    CHECK(toff <= last->len, "torn at %llu past the end (%zu)", (unsigned long long)toff, last->len);
    char name[64];
    snprintf(name, sizeof(name), "/wal-%020llu.log", (unsigned long long)last->lsn);
    CHECK(strstr(tfile, name) != NULL, "torn tail in %s, not the last segment %s", tfile, name);
    for (size_t o = (size_t)toff + 1; o < last->len; o++)
        CHECK(!valid_at(last->p, last->len, o), "torn at %llu but a valid record is at %zu",
              (unsigned long long)toff, o);
    /* after the cut, the same records and a clean end */
    rc = read_all(again, &nagain, segs[0].lsn, &torn2, tfile2, &toff2);
    CHECK(rc == 0 && !torn2, "after truncating the torn tail: rc %d torn %d", rc, torn2);
    CHECK(nagain == ngot, "after truncating: %zu records, before %zu", nagain, ngot);
    for (size_t i = 0; i < ngot; i++)
        CHECK(again[i].len == got[i].len && again[i].crc == got[i].crc,
              "record %zu changed by the truncation", i);
}

/* ---- recovery ---- */

static void free_room(void *r) { mx_room_free(r); }

struct fp {
    char id[MX_ROOM_ID_MAX + 1];
    uint64_t seq;
    uint8_t sum[MX_DIGEST_LEN];
    int gone; /* deleted by the workload */
};

static void nop_deliver(struct mx_conn *c, mx_frame *f)
{
    (void)c;
    (void)f;
}
static void nop_close(struct mx_conn *c, int code, const char *reason)
{
    (void)c;
    (void)code;
    (void)reason;
}

static void send(mx_engine *e, struct mx_conn *c, const char *msg)
{
    mx_engine_handle(e, c, msg, strlen(msg));
    CHECK(mx_engine_commit(e) == 0, "commit failed after recovery");
}

/* The daemon goes on after recovery: a client subscribes to a few of the
 * recovered rooms and changes them, creates one and deletes one, so the
 * writer, snapshots and deletion run on whatever state the log held. */
static void workload(mx_engine *e, struct fp *fps, size_t nfp)
{
    struct mx_conn c;
    memset(&c, 0, sizeof(c));
    c.deliver = nop_deliver;
    c.close = nop_close;
    mx_engine_conn_open(e, &c);
    char msg[512];
    send(e, &c, "{\"type\":\"hello\",\"client\":\"fuzz-recovery\"}");
    for (size_t i = 0; i < nfp && i < 3; i++) {
        snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"id\":1,\"room\":\"%s\"}", fps[i].id);
        send(e, &c, msg);
        for (int n = 1; n <= 5; n++) {
            snprintf(msg, sizeof(msg),
                     "{\"type\":\"action\",\"id\":2,\"room\":\"%s\",\"n\":%d,\"action\":{\"type\":\"patch\","
                     "\"payload\":[{\"op\":\"add\",\"path\":\"\",\"value\":{\"fz\":[%d,\"x\"]}}]}}",
                     fps[i].id, n, n);
            send(e, &c, msg);
        }
    }
    send(e, &c, "{\"type\":\"create\",\"id\":3,\"room\":\"fz:new\",\"state\":[1]}");
    if (nfp >= 2) /* the last recovered room (maybe one just changed) */
        CHECK(mx_engine_delete_room(e, fps[nfp - 1].id, strlen(fps[nfp - 1].id)) == 0, "delete %s",
              fps[nfp - 1].id);
    CHECK(mx_engine_commit(e) == 0, "commit failed after recovery");
    mx_engine_conn_closed(e, &c);
}

static void check_recovery(void)
{
    const struct mx_storage *st = NULL;
    mx_map *rooms = NULL;
    char err[1024];
    if (mx_storage_wal_open(&cfg, &st, &rooms, err, sizeof(err)))
        return;
    static struct fp fps[256];
    size_t nfp = 0, it = 0, len;
    const char *key;
    void *val;
    while (mx_map_next(rooms, &it, &key, &len, &val)) {
        struct mx_room *r = val;
        uint8_t d[MX_DIGEST_LEN];
        if (mx_digest_of(r->state, d) == 0)
            CHECK(!memcmp(d, r->checksum, MX_DIGEST_LEN), "recovered room %s: checksum is not D(state)",
                  r->id);
        if (nfp < 255) {
            snprintf(fps[nfp].id, sizeof(fps[nfp].id), "%s", r->id);
            nfp++;
        }
    }
    snprintf(fps[nfp++].id, sizeof(fps[0].id), "fz:new");

    mx_engine *e = mx_engine_new(&cfg, st, rooms); /* takes over the rooms */
    CHECK(e, "engine");
    workload(e, fps, nfp - 1);
    for (size_t i = 0; i < nfp; i++) {
        struct mx_room *r = mx_engine_room(e, fps[i].id, strlen(fps[i].id));
        fps[i].gone = r == NULL;
        if (r) {
            fps[i].seq = r->seq;
            memcpy(fps[i].sum, r->checksum, MX_DIGEST_LEN);
        }
    }
    mx_engine_close(e); /* clean: snapshots every room with records */
    mx_engine_free(e);

    /* a second recovery from what the clean shutdown left */
    rooms = NULL;
    CHECK(mx_storage_wal_open(&cfg, &st, &rooms, err, sizeof(err)) == 0,
          "recovery after a clean shutdown failed: %s", err);
    for (size_t i = 0; i < nfp; i++) {
        struct mx_room *r = mx_map_get(rooms, fps[i].id, strlen(fps[i].id));
        int loaded = 0;
        if (!r) {
            int rc = st->load(st->ctx, fps[i].id, strlen(fps[i].id), &r);
            if (fps[i].gone) {
                CHECK(rc != 0, "deleted room %s came back", fps[i].id);
                continue;
            }
            CHECK(rc == 0, "room %s lost after a clean shutdown (load: %d)", fps[i].id, rc);
            loaded = 1;
        }
        CHECK(!fps[i].gone, "deleted room %s came back", fps[i].id);
        CHECK(r->seq == fps[i].seq && !memcmp(r->checksum, fps[i].sum, MX_DIGEST_LEN),
              "room %s: seq %llu after the second recovery, %llu before", fps[i].id,
              (unsigned long long)r->seq, (unsigned long long)fps[i].seq);
        if (loaded)
            mx_room_free(r);
    }
    st->close(st->ctx, NULL);
    mx_map_free(rooms, free_room);
}

/* ---- atomic files ---- */

static void check_atomic(uint8_t *p, size_t n, int fix)
{
    if (fix && n >= 16) {
        memcpy(p, MX_SNAPSHOT_MAGIC, 8);
        put32(p + 8, (uint32_t)(n - 16));
        put32(p + 12, mx_crc32c(mx_crc32c(0, p + 8, 4), p + 16, n - 16));
    }
    write_file(base, "a.snap", p, n);
    void *payload = NULL;
    size_t plen = 0;
    char err[1200];
    int rc = mx_atomic_read(base, "a.snap", MX_SNAPSHOT_MAGIC, &payload, &plen, err, sizeof(err));
    if (rc) {
        CHECK(payload == NULL && err[0], "failed read left a payload or no message");
        return;
    }
    CHECK(n >= 16 && plen == n - 16 && !memcmp(payload, p + 16, plen), "payload differs from the file");
    CHECK(mx_atomic_write(base, "b.snap", MX_SNAPSHOT_MAGIC, payload, plen, err, sizeof(err)) == 0,
          "write: %s", err);
    void *again = NULL;
    size_t alen = 0;
    CHECK(mx_atomic_read(base, "b.snap", MX_SNAPSHOT_MAGIC, &again, &alen, err, sizeof(err)) == 0,
          "read back: %s", err);
    CHECK(alen == plen && !memcmp(again, payload, plen), "atomic write/read changed the payload");
    free(again);
    free(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT_BYTES)
        return 0;
    rng = 0;
    uint8_t flags = data[0];
    uint8_t *buf = malloc(size); /* mutable copy: CRC fixing */
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    size_t n = size - 1;
    CHECK(mx_crc32c(0, buf, n) == mx_crc32c_portable(0, buf, n), "CRC-32C implementations disagree");
    CHECK(mx_crc32c(mx_crc32c(0, buf, n / 2), buf + n / 2, n - n / 2) == mx_crc32c(0, buf, n),
          "CRC-32C chaining");

    if (flags & 4) {
        check_atomic(buf, n, flags & 1);
        free(buf);
        clean();
        return 0;
    }

    /* split into segments, fix CRCs, name them */
    struct seg segs[MAX_SEGS];
    size_t cnt[MAX_SEGS], nsegs = 0;
    uint8_t *p = buf, *end = buf + n;
    while (nsegs < MAX_SEGS) {
        uint8_t *mark = nsegs + 1 < MAX_SEGS ? find_mark(p, end) : NULL;
        uint8_t *stop = mark ? mark : end;
        uint64_t lsn = 1;
        if (nsegs > 0) {
            const struct seg *prev = &segs[nsegs - 1];
            int64_t d = p < stop ? (int8_t)*p++ : 0;
            int64_t want = (int64_t)(prev->lsn + cnt[nsegs - 1]) + d;
            lsn = want > (int64_t)prev->lsn ? (uint64_t)want : prev->lsn + 1; /* names differ */
        }
        segs[nsegs] = (struct seg){lsn, p, (size_t)(stop - p)};
        cnt[nsegs] = walk(p, (size_t)(stop - p), flags & 1, NULL, NULL);
        nsegs++;
        if (!mark)
            break;
        p = mark + 4;
    }
    /* the records a reader must find: those of the segments that continue
     * the log without a gap (it stops with an error at the first that
     * does not) */
    static struct rec walked[MAX_RECS];
    size_t nwalked = 0;
    for (size_t i = 0; i < nsegs; i++) {
        if (i > 0 && segs[i].lsn != segs[i - 1].lsn + cnt[i - 1])
            break;
        walk(segs[i].p, segs[i].len, 0, walked, &nwalked);
    }

    for (size_t i = 0; i < nsegs; i++) {
        char name[64];
        snprintf(name, sizeof(name), "wal-%020llu.log", (unsigned long long)segs[i].lsn);
        write_file(waldir, name, segs[i].p, segs[i].len);
    }
    if (flags & 2)
        check_recovery();
    else
        check_reader(segs, nsegs, walked, nwalked);
    free(buf);
    clean();
    return 0;
}
