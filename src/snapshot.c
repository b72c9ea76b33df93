/* snapshot.c - encoding a room for the disk and rebuilding it.
 *
 * Layout (little endian, see docs/STORAGE.md):
 *   u64 lsn           WAL records up to this LSN are contained
 *   bytes room id
 *   u64 seq, 16 checksum
 *   bytes state       JSON text (mx_json_dump)
 *   u32 count, then per log entry: u64 seq, 16 prev, 16 checksum, bytes text
 *   u32 count, then per remembered outcome (client by client, oldest first):
 *       bytes client, u64 n, u8 kind, u32 code (two's complement),
 *       u64 seq, 16 prev, 16 checksum, bytes message
 * Decoding verifies what it can: the state's digest against the checksum,
 * the log's consecutive seqs ending at the head, outcomes increasing per
 * client. A snapshot that fails any check is not used.
 */
#include "movexd/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/alloc.h"
#include "movexd/codec.h"
#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/proto.h"

struct count_ctx {
    mx_buf *out;
    uint32_t n;
};

static int put_outcome(void *arg, const char *client, size_t clen, uint64_t highest,
                       const struct mx_outcome *o)
{
    (void)highest;
    struct count_ctx *c = arg;
    mx_put_bytes(c->out, client, clen);
    mx_put_u64(c->out, o->n);
    mx_put_u8(c->out, o->kind);
    mx_put_u32(c->out, (uint32_t)o->code);
    mx_put_u64(c->out, o->seq);
    mx_buf_append(c->out, o->prev, MX_DIGEST_LEN);
    mx_buf_append(c->out, o->checksum, MX_DIGEST_LEN);
    const char *m = o->message ? o->message : "";
    mx_put_bytes(c->out, m, strlen(m));
    c->n++;
    return 0;
}

/* The snapshot of r in file order. With iov == NULL, everything goes into
 * out. Otherwise each log entry's text stays where the log keeps it: out
 * gets the rest (the head and state, then every entry's fixed fields as 44
 * bytes - seq, prev, checksum, text length - then the outcomes), and iov[]
 * lists the pieces in file order. */
static int encode(const struct mx_room *r, uint64_t lsn, mx_buf *out, struct iovec *iov, size_t *niov)
{
    /* room for the state and the whole log at once: grown by doubling, a
     * snapshot of a full log (megabytes) was copied over and over */
    size_t count = mx_oplog_count(r->log);
    mx_buf_reserve(out, 64 + r->idlen + r->state->jsize + (iov ? 0 : mx_oplog_bytes(r->log)) +
                            count * (8 + 2 * MX_DIGEST_LEN + 4));
    mx_put_u64(out, lsn);
    mx_put_bytes(out, r->id, r->idlen);
    mx_put_u64(out, r->seq);
    mx_buf_append(out, r->checksum, MX_DIGEST_LEN);
    size_t at = out->len;
    mx_put_u32(out, 0); /* state length, patched below */
    mx_json_dump(r->state, out);
    size_t slen = out->len - at - 4;
    if (!out->oom) {
        unsigned char *p = (unsigned char *)mx_buf_data(out) + at;
        p[0] = (unsigned char)slen;
        p[1] = (unsigned char)(slen >> 8);
        p[2] = (unsigned char)(slen >> 16);
        p[3] = (unsigned char)(slen >> 24);
    }
    mx_put_u32(out, (uint32_t)count);
    size_t first = out->len, n = 0; /* the entries' fixed fields start here */
    for (uint64_t s = mx_oplog_first_seq(r->log); count && s <= mx_oplog_last_seq(r->log); s++) {
        const struct mx_oplog_entry *e = mx_oplog_get(r->log, s);
        mx_put_u64(out, e->seq);
        mx_buf_append(out, e->prev, MX_DIGEST_LEN);
        mx_buf_append(out, e->checksum, MX_DIGEST_LEN);
        if (!iov) {
            mx_put_bytes(out, e->text, e->len);
            continue;
        }
        mx_put_u32(out, (uint32_t)e->len);
        iov[1 + 2 * n + 1] = (struct iovec){.iov_base = e->text, .iov_len = e->len};
        n++;
    }
    size_t tail = out->len;
    mx_put_u32(out, 0); /* outcome count, patched below */
    struct count_ctx cc = {out, 0};
    mx_dedup_foreach(r->dedup, put_outcome, &cc);
    if (!out->oom) {
        unsigned char *p = (unsigned char *)mx_buf_data(out) + tail;
        p[0] = (unsigned char)cc.n;
        p[1] = (unsigned char)(cc.n >> 8);
        p[2] = (unsigned char)(cc.n >> 16);
        p[3] = (unsigned char)(cc.n >> 24);
    }
    if (out->oom)
        return -1;
    if (iov) {
        /* out is final now: point at its pieces */
        char *b = mx_buf_data(out);
        iov[0] = (struct iovec){.iov_base = b, .iov_len = first};
        for (size_t i = 0; i < n; i++)
            iov[1 + 2 * i] = (struct iovec){.iov_base = b + first + i * MX_SNAPSHOT_ENTRY_FIXED,
                                            .iov_len = MX_SNAPSHOT_ENTRY_FIXED};
        iov[1 + 2 * n] = (struct iovec){.iov_base = b + tail, .iov_len = out->len - tail};
        *niov = 2 + 2 * n;
    }
    return 0;
}

int mx_snapshot_encode(const struct mx_room *r, uint64_t lsn, mx_buf *out)
{
    return encode(r, lsn, out, NULL, NULL);
}

int mx_snapshot_encode_gather(const struct mx_room *r, uint64_t lsn, mx_buf *out, struct iovec **iov,
                              size_t *niov, size_t *iovcap)
{
    size_t need = 2 + 2 * mx_oplog_count(r->log);
    if (need > *iovcap) {
        struct iovec *n = mx_realloc(*iov, need * sizeof *n);
        if (!n)
            return -1;
        *iov = n;
        *iovcap = need;
    }
    return encode(r, lsn, out, *iov, niov);
}

#define BAD(...)                                                               \
    do {                                                                       \
        snprintf(err, errlen, __VA_ARGS__);                                    \
        goto fail;                                                             \
    } while (0)
/* out of memory is not damage: the caller tries again later */
#define NOMEM(...)                                                             \
    do {                                                                       \
        rc = MX_ENOMEM;                                                        \
        BAD(__VA_ARGS__);                                                      \
    } while (0)

int mx_snapshot_decode(const void *p, size_t len, const struct mx_config *cfg, struct mx_room **out,
                       uint64_t *lsn, char *err, size_t errlen)
{
    mx_cursor c = mx_cursor_of(p, len);
    struct mx_room *r = NULL;
    json_t *j = NULL;
    int rc = -1;
    *out = NULL;
    *lsn = mx_get_u64(&c);
    size_t idlen, slen;
    const char *id = mx_get_bytes(&c, &idlen);
    uint64_t seq = mx_get_u64(&c);
    uint8_t sum[MX_DIGEST_LEN];
    mx_get_raw(&c, sum, MX_DIGEST_LEN);
    const char *stext = mx_get_bytes(&c, &slen);
    if (c.bad)
        BAD("truncated header");
    size_t typelen = mx_proto_room_type_len(id, idlen);
    if (!typelen)
        BAD("invalid room id");
    json_error_t jerr;
    int oom;
    j = mx_json_loadb(stext, slen, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES,
                      &jerr, &oom);
    if (oom)
        NOMEM("out of memory reading the state");
    if (!j)
        BAD("state is not JSON: %s", jerr.text);
    const char *why = "out of memory";
    mx_val *state = mx_json_from_jansson(j, 0, &why);
    json_decref(j);
    j = NULL;
    if (!state && !strcmp(why, "out of memory"))
        NOMEM("state: %s", why);
    if (!state)
        BAD("state: %s", why);
    char type[MX_ROOM_TYPE_MAX + 1];
    memcpy(type, id, typelen);
    type[typelen] = '\0';
    int nrc;
    r = mx_room_new(id, idlen, mx_config_room_type(cfg, type, typelen), state, cfg->dedup_window, &nrc);
    if (!r && nrc == MX_ENOMEM)
        NOMEM("out of memory building the room");
    if (!r)
        BAD("cannot build the room (%d)", nrc);
    if (memcmp(r->checksum, sum, MX_DIGEST_LEN) != 0)
        BAD("state does not match its checksum");
    r->seq = seq;

    uint32_t nlog = mx_get_u32(&c);
    for (uint32_t i = 0; i < nlog; i++) {
        uint64_t es = mx_get_u64(&c);
        uint8_t prev[MX_DIGEST_LEN], cs[MX_DIGEST_LEN];
        mx_get_raw(&c, prev, MX_DIGEST_LEN);
        mx_get_raw(&c, cs, MX_DIGEST_LEN);
        size_t tl;
        const char *t = mx_get_bytes(&c, &tl);
        if (c.bad)
            BAD("truncated log entry %u", i);
        if (es > seq || es + (nlog - i) - 1 != seq)
            BAD("log entry %u has seq %llu, not consecutive up to %llu", i, (unsigned long long)es,
                (unsigned long long)seq);
        /* a log shorter now (history lowered) keeps the newest entries */
        if (mx_oplog_append(r->log, es, prev, cs, t, tl))
            NOMEM("out of memory");
    }
    if (nlog && memcmp(mx_oplog_get(r->log, seq) ? mx_oplog_get(r->log, seq)->checksum : sum, sum,
                       MX_DIGEST_LEN) != 0)
        BAD("the log's last checksum is not the state's");

    uint32_t nout = mx_get_u32(&c);
    for (uint32_t i = 0; i < nout; i++) {
        size_t cl, ml;
        const char *client = mx_get_bytes(&c, &cl);
        struct mx_outcome o;
        memset(&o, 0, sizeof(o));
        o.n = mx_get_u64(&c);
        o.kind = mx_get_u8(&c);
        o.code = (int)mx_get_u32(&c);
        o.seq = mx_get_u64(&c);
        mx_get_raw(&c, o.prev, MX_DIGEST_LEN);
        mx_get_raw(&c, o.checksum, MX_DIGEST_LEN);
        const char *m = mx_get_bytes(&c, &ml);
        if (c.bad)
            BAD("truncated outcome %u", i);
        char msg[256];
        snprintf(msg, sizeof(msg), "%.*s", (int)ml, m ? m : "");
        o.message = ml ? msg : NULL;
        if (o.n <= mx_dedup_highest(r->dedup, client, cl))
            BAD("outcome %u out of order", i);
        if (mx_dedup_record(r->dedup, client, cl, &o))
            NOMEM("out of memory (outcome %u)", i);
    }
    if (c.left)
        BAD("%zu bytes of trailing data", c.left);
    *out = r;
    return 0;
fail:
    json_decref(j);
    mx_room_free(r);
    return rc;
}

uint64_t mx_snapshot_peek_lsn(const uint8_t p[MX_SNAPSHOT_LSN_BYTES])
{
    mx_cursor c = mx_cursor_of(p, MX_SNAPSHOT_LSN_BYTES);
    return mx_get_u64(&c);
}
