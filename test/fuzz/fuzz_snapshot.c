/* fuzz_snapshot.c - libFuzzer harness for snapshot decoding (snapshot.c),
 * which rebuilds a room (room.c, oplog.c, dedup.c, json.c, digest.c) from
 * bytes read back from disk.
 *
 * Input: one flags byte, then a snapshot payload (the bytes inside the
 * atomic file, docs/STORAGE.md).
 *   flags bit 0  fix checksums: before decoding, the header's checksum is
 *                set to the digest of the state text and the log entries'
 *                seqs and last checksum are made consistent with it, so
 *                mutations reach the log and the exactly-once memory
 *                instead of stopping at "state does not match its checksum"
 * The room type comes from the room id as in the daemon: "h0:..." keeps no
 * history, "h2:..." two entries, anything else eight.
 *
 * Oracles, beyond the sanitizers: a decoded room's checksum is the digest
 * of its state and the one stored; its log ends at its seq; encoding it and
 * decoding that again always succeeds with the same seq, checksum and LSN,
 * and the encoding is stable (encode(decode(encode(decode(x)))) equals
 * encode(decode(x)); one round may list clients in another order).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "movexd/config.h"
#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/oplog.h"
#include "movexd/room.h"
#include "movexd/snapshot.h"

#include "fuzz_det.h"

#define MAX_INPUT_BYTES (256 * 1024)

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_snapshot: check failed: %s: ", #cond);       \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

static struct mx_config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    randombytes_set_implementation(&det_impl);
    if (sodium_init() < 0)
        abort();
    static const char text[] = "dedup_window 1024\n"
                               "room default {\n    history 8\n}\n"
                               "room h0 {\n    history 0\n}\n"
                               "room h2 {\n    history 2\n}\n";
    char err[256];
    if (mx_config_parse(&cfg, text, "fuzz_snapshot.conf", err, sizeof(err))) {
        fprintf(stderr, "fuzz_snapshot: conf: %s\n", err);
        abort();
    }
    return 0;
}

/* ---- fixing checksums ---- */

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Skip u32-length bytes at *off; 0, or -1 when they do not fit. */
static int skip_bytes(const uint8_t *p, size_t n, size_t *off, size_t *start, size_t *len)
{
    if (n - *off < 4)
        return -1;
    uint64_t l = get_le(p + *off, 4);
    if (l > n - *off - 4)
        return -1;
    *start = *off + 4;
    *len = (size_t)l;
    *off += 4 + (size_t)l;
    return 0;
}

static void fix(uint8_t *p, size_t n)
{
    size_t off = 8, s, l;
    if (n < off || skip_bytes(p, n, &off, &s, &l) || n - off < 24)
        return;
    uint64_t seq = get_le(p + off, 8);
    size_t sum_at = off + 8;
    off += 24;
    if (skip_bytes(p, n, &off, &s, &l))
        return;
    json_t *j = json_loadb((const char *)p + s, l,
                           JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, NULL);
    uint8_t sum[MX_DIGEST_LEN];
    int ok = j && mx_digest_jansson(j, sum) == 0;
    json_decref(j);
    if (!ok)
        return;
    memcpy(p + sum_at, sum, MX_DIGEST_LEN);
    if (n - off < 4)
        return;
    uint64_t nlog = get_le(p + off, 4);
    off += 4;
    for (uint64_t i = 0; i < nlog && n - off >= 40; i++) {
        if (seq + 1 >= nlog - i)
            put_le(p + off, seq + 1 + i - nlog, 8); /* consecutive up to seq */
        if (i + 1 == nlog)
            memcpy(p + off + 24, sum, MX_DIGEST_LEN);
        off += 40;
        if (skip_bytes(p, n, &off, &s, &l))
            return;
    }
}

/* ---- checks ---- */

static int encode(const struct mx_room *r, uint64_t lsn, mx_buf *b)
{
    mx_buf_init(b, 0);
    if (mx_snapshot_encode(r, lsn, b)) {
        mx_buf_free(b);
        return -1;
    }
    return 0;
}

static struct mx_room *decode(const mx_buf *b, uint64_t *lsn, const char *what)
{
    struct mx_room *r = NULL;
    char err[256];
    int rc = mx_snapshot_decode(mx_buf_data(b), b->len, &cfg, &r, lsn, err, sizeof(err));
    CHECK(rc == 0 && r, "decoding %s failed: %s", what, err);
    return r;
}

static void check_room(const struct mx_room *r, const uint8_t *stored)
{
    uint8_t d[MX_DIGEST_LEN];
    if (mx_digest_of(r->state, d) == 0)
        CHECK(!memcmp(d, r->checksum, MX_DIGEST_LEN), "room %s: checksum is not D(state)", r->id);
    if (stored)
        CHECK(!memcmp(stored, r->checksum, MX_DIGEST_LEN), "room %s: checksum is not the stored one",
              r->id);
    if (mx_oplog_count(r->log)) {
        CHECK(mx_oplog_last_seq(r->log) == r->seq, "room %s: log ends at %llu, seq %llu", r->id,
              (unsigned long long)mx_oplog_last_seq(r->log), (unsigned long long)r->seq);
        CHECK(mx_oplog_count(r->log) <= r->type.history, "room %s: %zu log entries, history %zu",
              r->id, mx_oplog_count(r->log), r->type.history);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT_BYTES)
        return 0;
    rng = 0;
    size_t n = size - 1;
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        return 0;
    memcpy(p, data + 1, n);
    if (data[0] & 1)
        fix(p, n);

    struct mx_room *r = NULL;
    uint64_t lsn = 0;
    char err[256];
    memset(err, 'X', sizeof(err));
    int rc = mx_snapshot_decode(p, n, &cfg, &r, &lsn, err, sizeof(err));
    if (rc) {
        CHECK((rc == -1 || rc == MX_ENOMEM) && r == NULL, "failed decode returned %d with a room", rc);
        CHECK(memchr(err, '\0', sizeof(err)) && err[0], "failed decode without a message");
        free(p);
        return 0;
    }
    /* the stored checksum sits after the LSN, the id and the seq */
    size_t idlen = (size_t)get_le(p + 8, 4);
    check_room(r, p + 8 + 4 + idlen + 8);

    mx_buf b1, b2, b3;
    uint64_t l1, l2;
    if (encode(r, lsn, &b1) == 0) {
        struct mx_room *r1 = decode(&b1, &l1, "an encoded room");
        CHECK(l1 == lsn && r1->seq == r->seq && !memcmp(r1->checksum, r->checksum, MX_DIGEST_LEN),
              "room %s changed in an encode/decode round trip", r->id);
        check_room(r1, r->checksum);
        if (encode(r1, l1, &b2) == 0) {
            struct mx_room *r2 = decode(&b2, &l2, "a re-encoded room");
            if (encode(r2, l2, &b3) == 0) {
                CHECK(b3.len == b1.len && !memcmp(mx_buf_data(&b3), mx_buf_data(&b1), b1.len),
                      "room %s: encoding not stable over two round trips", r->id);
                mx_buf_free(&b3);
            }
            CHECK(b2.len == b1.len, "room %s: re-encoding changed the size", r->id);
            mx_room_free(r2);
            mx_buf_free(&b2);
        }
        mx_room_free(r1);
        mx_buf_free(&b1);
    }
    mx_room_free(r);
    free(p);
    return 0;
}
