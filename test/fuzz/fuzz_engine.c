/* fuzz_engine.c - libFuzzer harness for the protocol engine (engine.c,
 * proto.c, room.c, reducer_json.c, patch.c, dedup.c, oplog.c, digest.c).
 *
 * One input is a script of lines ('\n' separated), run on a fresh engine
 * with in-memory storage and three fake connections:
 *
 *   any line not starting with '@'   one inbound text message for the
 *                                    current connection (mx_engine_handle)
 *   @0 @1 @2       switch the current connection
 *   @b             toggle batch mode: off (the default) commits after every
 *                  message; on leaves replies in the outbox until @c
 *   @c             mx_engine_commit
 *   @x             the current connection closes (pending outbox entries
 *                  are dropped) and a new one opens on the same slot
 *   @t             mx_engine_tick
 *   @dROOM         mx_engine_delete_room(ROOM)
 *   @eTEXT         mx_engine_send_error (what the edge does for frames it
 *                  refuses itself)
 *   @yN ROOM       sync ROOM since seq N, with the checksum the room really
 *   @sN ROOM       had at N when known (subscribe for @s), so catch-up
 *                  replies are reachable without guessing BLAKE2b digests
 *   @hCLAIMS       hello with a token the harness signs (HS256) over the
 *                  JSON text CLAIMS, so grants and rights are reachable
 *   @rTEXT         mx_engine_refuse(TEXT) (the edge's rate limit)
 *
 * An input whose first line is "@A" runs with `auth jwt` (HS256 key set;
 * room types: default anonymous read / authenticated read, "pub"
 * anonymous read,write,create, "priv" nothing without a grant); otherwise
 * with `auth none`.
 *
 * Oracles, beyond the sanitizers:
 *  - every delivered frame is one JSON object with a string "type";
 *  - per connection and room, applied seqs arrive in order and without
 *    gaps while subscribed: an ack or fwd carries exactly last seq + 1 and
 *    prev = the checksum last seen, a fresh reject carries the head seq and
 *    checksum (engine.h "Ordering");
 *  - each connection is also a client: it keeps every room's state from
 *    the snapshot (whose text must digest to its checksum) and applies each
 *    fwd's effects, each catch-up entry and, on its own ack, the patch it
 *    sent; the result must digest to the checksum the server sent - the
 *    promise that a client following the protocol stays byte-identical;
 *  - every room's cached checksum equals the digest of its state computed
 *    from scratch, its cached size equals its serialization, the state
 *    respects max_state_bytes, and the log's last entry is the head.
 *
 * Determinism: libsodium's random source is replaced by a PRNG reset per
 * input (anonymous client ids, the map's SipHash key), and no room is ever
 * evicted (evict_idle_ms 0), so wall-clock time does not change behaviour.
 * Log lines go to /dev/null unless MX_FUZZ_LOG=1 (libFuzzer's and the
 * sanitizers' reports are unaffected).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "movexd/config.h"
#include "movexd/digest.h"
#include "movexd/engine.h"
#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/oplog.h"
#include "movexd/patch.h"
#include "movexd/room.h"
#include "movexd/storage.h"

#include "engine_script.h"

#define FUZZ_NAME "fuzz_engine"
#include "fuzz_det.h"

#define MAX_INPUT_BYTES (64 * 1024)
#define NCONN 3
#define NTRACK 16 /* rooms tracked per connection (max_rooms_per_conn is 4) */
#define NSEEN 32  /* room ids remembered for the end-of-input checks */

/* ---- fake connections, each with a client's model of its rooms ---- */

/* What a client knows about one room: the last seq, its checksum, and the
 * state rebuilt from the snapshot plus every fwd, own ack and catch-up
 * entry since (NULL when not known, e.g. after an `actions` reply to a
 * connection that had no snapshot). */
struct track {
    char room[MX_ROOM_ID_MAX + 1];
    uint64_t last;
    char sum[MX_CHECKSUM_HEX];
    mx_val *state;
};

/* Actions this connection sent, so an ack can be applied as a client does. */
#define NSENT 32
struct sent {
    char room[MX_ROOM_ID_MAX + 1];
    uint64_t n;
    json_t *payload;
};

struct fake {
    struct mx_conn conn;
    int closed; /* the engine asked the edge to close */
    struct track t[NTRACK];
    size_t nt;
    struct sent s[NSENT];
    size_t ns, snext;
    /* the @y/@s requests not yet answered (count and the last one) and
     * whether a hand-written `since` was sent meanwhile: a catch-up is
     * applied to the model only when it surely answers the one request
     * and starts where the model is */
    int pend, raw_since;
    char pend_room[MX_ROOM_ID_MAX + 1];
    uint64_t pend_seq;
    char pend_sum[MX_CHECKSUM_HEX];
};

static void model_free(struct fake *fk)
{
    for (size_t i = 0; i < fk->nt; i++)
        mx_json_free(fk->t[i].state);
    for (size_t i = 0; i < NSENT; i++)
        json_decref(fk->s[i].payload);
}

static struct track *track_find(struct fake *fk, const char *room)
{
    for (size_t i = 0; i < fk->nt; i++)
        if (!strcmp(fk->t[i].room, room))
            return &fk->t[i];
    return NULL;
}

/* Start (or restart) tracking room at seq/sum with state (taken). */
static struct track *track_set(struct fake *fk, const char *room, uint64_t seq, const char *sum,
                               mx_val *state)
{
    struct track *t = track_find(fk, room);
    if (!t) {
        if (fk->nt == NTRACK || strlen(room) > MX_ROOM_ID_MAX) {
            mx_json_free(state);
            return NULL; /* not tracked: checks for this room are skipped */
        }
        t = &fk->t[fk->nt++];
        memset(t, 0, sizeof(*t));
        snprintf(t->room, sizeof(t->room), "%s", room);
    }
    mx_json_free(t->state);
    t->state = state;
    t->last = seq;
    snprintf(t->sum, sizeof(t->sum), "%s", sum ? sum : "");
    return t;
}

static void track_drop(struct fake *fk, const char *room)
{
    struct track *t = track_find(fk, room);
    if (t) {
        mx_json_free(t->state);
        *t = fk->t[--fk->nt];
    }
}

static void remember_sent(struct fake *fk, const json_t *msg)
{
    struct mx_request q;
    char why[64];
    if (!json_is_object(msg) || mx_proto_decode(msg, &q, why, sizeof(why)) || q.type != MX_REQ_ACTION)
        return;
    const char *room = json_string_value(json_object_get(msg, "room"));
    const json_t *n = json_object_get(msg, "n");
    const json_t *payload = json_object_get(json_object_get(msg, "action"), "payload");
    if (!room || !json_is_number(n) || !payload || strlen(room) > MX_ROOM_ID_MAX)
        return;
    struct sent *s = &fk->s[fk->snext];
    fk->snext = (fk->snext + 1) % NSENT;
    json_decref(s->payload);
    snprintf(s->room, sizeof(s->room), "%s", room);
    s->n = (uint64_t)json_number_value(n);
    s->payload = json_incref((json_t *)payload);
}

/* The patch of the action acked as (room, n): only when exactly one sent
 * action matches (the ring drops the oldest first, so when the acked one
 * is gone every older candidate is gone too; with two candidates - the
 * same n sent again, or sent before subscribing - the model gives up). */
static const json_t *find_sent(struct fake *fk, const char *room, uint64_t n)
{
    const json_t *found = NULL;
    for (size_t i = 0; i < NSENT; i++) {
        if (fk->s[i].payload && fk->s[i].n == n && !strcmp(fk->s[i].room, room)) {
            if (found)
                return NULL;
            found = fk->s[i].payload;
        }
    }
    return found;
}

static uint64_t num(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? (uint64_t)json_number_value(v) : 0;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* Apply patch to the model and compare with the server's checksum; the
 * model is dropped (NULL) when the patch is unknown. */
static void model_apply(struct track *t, const json_t *patch, const char *sum, const char *what)
{
    if (!t->state)
        return;
    if (!patch) {
        mx_json_free(t->state);
        t->state = NULL;
        return;
    }
    mx_patch_error err;
    mx_patch_undo *undo = NULL;
    int rc = mx_patch_apply(&t->state, patch, NULL, &undo, &err);
    if (rc == MX_ENOMEM) {
        mx_json_free(t->state);
        t->state = NULL;
        return;
    }
    CHECK(rc == 0, "room %s: %s applied by the server fails on the client's copy: %s", t->room, what,
          err.message);
    mx_patch_commit(undo);
    uint8_t d[MX_DIGEST_LEN];
    char hex[MX_CHECKSUM_HEX];
    if (mx_digest_of(t->state, d) == 0) {
        mx_digest_hex(d, hex);
        CHECK(!strcmp(hex, sum), "room %s: client state after %s has checksum %s, server says %s",
              t->room, what, hex, sum);
    }
}

/* An entry of the room's log (fwd or one of `actions`): its effects, or the
 * action's payload when the reducer's effects are the payload itself. */
static const json_t *entry_patch(const json_t *en)
{
    const json_t *e = json_object_get(en, "effects");
    return e ? e : json_object_get(json_object_get(en, "action"), "payload");
}

static void fake_deliver(struct mx_conn *c, mx_frame *f)
{
    struct fake *fk = c->edge;
    json_error_t jerr;
    json_t *j = json_loadb(mx_frame_data(f), f->len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL,
                           &jerr);
    CHECK(j && json_is_object(j), "reply is not a JSON object (%s): %.*s", j ? "" : jerr.text,
          (int)f->len, mx_frame_data(f));
    const char *type = json_string_value(json_object_get(j, "type"));
    CHECK(type, "reply without a type: %.*s", (int)f->len, mx_frame_data(f));
    const char *room = json_string_value(json_object_get(j, "room"));
    int dup = json_is_true(json_object_get(j, "duplicate"));
    if (room) {
        struct track *t = track_find(fk, room);
        if (!strcmp(type, "snapshot")) {
            /* the state text must give back the checksum it comes with */
            const json_t *st = json_object_get(j, "state");
            CHECK(st, "snapshot without a state");
            uint8_t d[MX_DIGEST_LEN];
            char hex[MX_CHECKSUM_HEX];
            CHECK(mx_digest_jansson(st, d) == 0, "snapshot state with a non-finite number");
            mx_digest_hex(d, hex);
            CHECK(!strcmp(hex, str(j, "checksum")), "room %s: snapshot state digests to %s, checksum %s",
                  room, hex, str(j, "checksum"));
            track_set(fk, room, num(j, "seq"), str(j, "checksum"), mx_json_from_jansson(st, 0, NULL));
        } else if (!strcmp(type, "actions")) {
            uint64_t from = num(j, "from"), to = num(j, "to");
            const json_t *list = json_object_get(j, "actions");
            CHECK(json_is_array(list) && json_array_size(list) == to - from,
                  "actions from %llu to %llu with %zu entries", (unsigned long long)from,
                  (unsigned long long)to, json_array_size(list));
            const json_t *lastent = json_array_get(list, json_array_size(list) - 1);
            int sure = fk->pend == 1 && !fk->raw_since && !strcmp(fk->pend_room, room) &&
                       fk->pend_seq == from;
            /* the checksum at `to`, when it is known */
            const char *head = lastent ? str(lastent, "checksum") : sure ? fk->pend_sum : "";
            if (t && t->state && t->last == from && sure && !strcmp(t->sum, fk->pend_sum)) {
                /* the client is at `from`: it catches up entry by entry */
                for (size_t i = 0; i < json_array_size(list); i++) {
                    const json_t *en = json_array_get(list, i);
                    CHECK(num(en, "seq") == from + 1 + i, "actions entry %zu has seq %llu", i,
                          (unsigned long long)num(en, "seq"));
                    model_apply(t, entry_patch(en), str(en, "checksum"), "a catch-up entry");
                    t->last = from + 1 + i;
                    snprintf(t->sum, sizeof(t->sum), "%s", str(en, "checksum"));
                }
            } else if (!(t && t->last == to && head[0] && !strcmp(t->sum, head))) {
                /* not from where the client is (the harness forges `since`,
                 * or the client's copy is of a deleted incarnation): the
                 * client no longer knows the state, only the head */
                track_set(fk, room, to, head, NULL);
            }
        } else if (!strcmp(type, "error") && !strcmp(str(j, "code"), "no_such_room")) {
            track_drop(fk, room); /* deleted (an unsubscribed client keeps its copy) */
        } else if (t && (!strcmp(type, "fwd") || (!strcmp(type, "ack") && !dup))) {
            uint64_t seq = num(j, "seq");
            CHECK(seq == t->last + 1, "%s seq %llu after %llu on room %s: %.*s", type,
                  (unsigned long long)seq, (unsigned long long)t->last, room, (int)f->len,
                  mx_frame_data(f));
            if (t->sum[0])
                CHECK(!strcmp(str(j, "prev"), t->sum), "room %s: %s prev %s, the client is at %s",
                      room, type, str(j, "prev"), t->sum);
            const json_t *patch = !strcmp(type, "fwd") ? entry_patch(j)
                                                       : find_sent(fk, room, num(j, "n"));
            model_apply(t, patch, str(j, "checksum"), type);
            t->last = seq;
            snprintf(t->sum, sizeof(t->sum), "%s", str(j, "checksum"));
        } else if (t && !strcmp(type, "reject") && !dup) {
            uint64_t seq = num(j, "seq");
            CHECK(seq == t->last, "reject at seq %llu, head seen %llu on room %s", (unsigned long long)seq,
                  (unsigned long long)t->last, room);
            if (t->sum[0])
                CHECK(!strcmp(str(j, "checksum"), t->sum), "room %s: reject at checksum %s, head %s",
                      room, str(j, "checksum"), t->sum);
        }
    }
    json_decref(j);
}

static void fake_close(struct mx_conn *c, int code, const char *reason)
{
    struct fake *fk = c->edge;
    (void)code;
    (void)reason;
    fk->closed = 1;
}

/* fk must be zeroed or hold a model (freed here). */
static void fake_open(mx_engine *e, struct fake *fk)
{
    model_free(fk);
    memset(fk, 0, sizeof(*fk));
    fk->conn.deliver = fake_deliver;
    fk->conn.close = fake_close;
    fk->conn.edge = fk;
    mx_engine_conn_open(e, &fk->conn);
}

/* ---- room checks ---- */

static char seen[NSEEN][MX_ROOM_ID_MAX + 1];
static size_t nseen;

static void remember_room(const char *id, size_t len)
{
    if (len == 0 || len > MX_ROOM_ID_MAX || nseen == NSEEN)
        return;
    for (size_t i = 0; i < nseen; i++)
        if (strlen(seen[i]) == len && !memcmp(seen[i], id, len))
            return;
    memcpy(seen[nseen], id, len);
    seen[nseen][len] = '\0';
    nseen++;
}

static void check_room(struct mx_room *r)
{
    uint8_t d[MX_DIGEST_LEN], d2[MX_DIGEST_LEN];
    if (mx_digest_of(r->state, d))
        return; /* out of memory */
    CHECK(!memcmp(d, r->checksum, MX_DIGEST_LEN), "room %s: checksum is not D(state)", r->id);
    json_t *j = mx_json_to_jansson(r->state);
    if (j) {
        CHECK(mx_digest_jansson(j, d2) == 0, "room %s: state has a non-finite number", r->id);
        CHECK(!memcmp(d2, r->checksum, MX_DIGEST_LEN),
              "room %s: cached digest differs from the digest computed from scratch", r->id);
        json_decref(j);
    }
    mx_buf b;
    mx_buf_init(&b, 0);
    if (!mx_json_dump(r->state, &b)) {
        CHECK(b.len == r->state->jsize, "room %s: jsize %zu but dump is %zu bytes", r->id,
              r->state->jsize, b.len);
        CHECK(!r->type.max_state_bytes || b.len <= r->type.max_state_bytes,
              "room %s: state of %zu bytes over max_state_bytes %zu", r->id, b.len,
              r->type.max_state_bytes);
    }
    mx_buf_free(&b);
    if (mx_oplog_count(r->log)) {
        CHECK(mx_oplog_last_seq(r->log) == r->seq, "room %s: log ends at %llu, head %llu", r->id,
              (unsigned long long)mx_oplog_last_seq(r->log), (unsigned long long)r->seq);
        CHECK(!memcmp(mx_oplog_get(r->log, r->seq)->checksum, r->checksum, MX_DIGEST_LEN),
              "room %s: last log entry's checksum is not the head's", r->id);
    }
}

/* ---- setup ---- */

/* Small bounds so the limit paths are reachable; named types cover a room
 * without history, one not created on subscribe and one without bounds. */
static const char conf_text[] =
    "max_rooms_per_conn 4\n"
    "max_depth 12\n"
    "max_queue_bytes 4k\n"
    "evict_idle_ms 0\n"
    "room default {\n"
    "    history 4\n"
    "    max_state_bytes 2k\n"
    "    create_on_subscribe yes\n"
    "    max_ops 8\n"
    "}\n"
    "room h0 {\n    history 0\n}\n"
    "room ns {\n    create_on_subscribe no\n}\n"
    "room big {\n    history 64\n    max_state_bytes 0\n    max_ops 0\n}\n";

static const char conf_auth_text[] =
    "max_rooms_per_conn 4\n"
    "max_depth 12\n"
    "evict_idle_ms 0\n"
    "room default {\n"
    "    history 4\n"
    "    max_state_bytes 2k\n"
    "    create_on_subscribe yes\n"
    "    max_ops 8\n"
    "    anonymous read\n"
    "    authenticated read\n"
    "}\n"
    "room pub {\n    anonymous read,write,create\n}\n"
    "room priv {\n    anonymous none\n    authenticated none\n}\n";

static const char SECRET[] = "movexd-fuzz-engine-hs256-secret-0123456789";

static struct mx_config cfg, cfg_auth;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_det_init();
    char err[256];
    if (mx_config_parse(&cfg, conf_text, "fuzz_engine.conf", err, sizeof(err))) {
        fprintf(stderr, "fuzz_engine: conf: %s\n", err);
        abort();
    }
    if (mx_config_parse(&cfg_auth, conf_auth_text, "fuzz_engine_auth.conf", err, sizeof(err))) {
        fprintf(stderr, "fuzz_engine: conf: %s\n", err);
        abort();
    }
    cfg_auth.auth = MX_AUTH_JWT; /* the key comes from mx_engine_set_keys, not a file */
    fuzz_quiet_logs();
    return 0;
}

/* @yN ROOM / @sN ROOM: a sync or subscribe with the checksum the room had
 * at seq N (zeros when unknown). */
static void since_request(mx_engine *e, struct fake *fk, const char *line, size_t len, int sub,
                          uint64_t id)
{
    char text[512];
    size_t i = 0;
    uint64_t seq = 0;
    while (i < len && line[i] >= '0' && line[i] <= '9' && i < 15)
        seq = seq * 10 + (uint64_t)(line[i++] - '0');
    while (i < len && line[i] == ' ')
        i++;
    const char *room = line + i;
    size_t rlen = len - i;
    if (rlen > MX_ROOM_ID_MAX)
        rlen = MX_ROOM_ID_MAX;
    char hex[MX_CHECKSUM_HEX];
    mx_script_since_checksum(e, room, rlen, seq, hex);
    if (rlen <= MX_ROOM_ID_MAX && !memchr(room, '\0', rlen)) {
        fk->pend++;
        memcpy(fk->pend_room, room, rlen);
        fk->pend_room[rlen] = '\0';
        fk->pend_seq = seq;
        memcpy(fk->pend_sum, hex, sizeof(hex));
    }
    json_t *m = json_pack("{s:s, s:I, s:s%, s:{s:I, s:s}}", "type", sub ? "subscribe" : "sync", "id",
                          (json_int_t)id, "room", room, rlen, "since", "seq", (json_int_t)seq,
                          "checksum", hex);
    if (!m)
        return;
    size_t n = json_dumpb(m, text, sizeof(text), JSON_COMPACT);
    json_decref(m);
    if (n > 0 && n <= sizeof(text))
        mx_engine_handle(e, &fk->conn, text, n);
}

/* @hCLAIMS: hello with an HS256 token over CLAIMS. */
static void token_hello(mx_engine *e, struct fake *fk, const char *claims, size_t len)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    if (len > 4096)
        return;
    char tok[6000];
    sodium_bin2base64(tok, sizeof(tok), (const unsigned char *)header, sizeof(header) - 1,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    size_t off = strlen(tok);
    tok[off++] = '.';
    sodium_bin2base64(tok + off, sizeof(tok) - off, (const unsigned char *)claims, len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    off += strlen(tok + off);
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)SECRET, sizeof(SECRET) - 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)tok, off);
    crypto_auth_hmacsha256_final(&st, mac);
    tok[off++] = '.';
    sodium_bin2base64(tok + off, sizeof(tok) - off, mac, sizeof(mac),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    off += strlen(tok + off);
    char msg[6100];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"hello\",\"token\":\"%.*s\"}", (int)off, tok);
    if (n > 0 && (size_t)n < sizeof(msg))
        mx_engine_handle(e, &fk->conn, msg, (size_t)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT_BYTES)
        return 0;
    rng = 0;
    nseen = 0;
    int auth = size >= 2 && data[0] == '@' && data[1] == 'A' && (size == 2 || data[2] == '\n');
    mx_engine *e = mx_engine_new(auth ? &cfg_auth : &cfg, mx_storage_mem(), NULL);
    if (!e)
        return 0;
    if (auth) {
        struct mx_jwt_keys keys;
        memset(&keys, 0, sizeof(keys));
        memcpy(keys.hs256, SECRET, sizeof(SECRET) - 1);
        keys.hs256_len = sizeof(SECRET) - 1;
        mx_engine_set_keys(e, &keys);
    }
    static struct fake conns[NCONN];
    for (int i = 0; i < NCONN; i++)
        fake_open(e, &conns[i]);
    struct fake *cur = &conns[0];
    int batch = 0;
    uint64_t next_id = 1000000;

    const char *p = (const char *)data, *end = p + size;
    struct mx_script_step st;
    while (mx_script_next(&p, end, cur->closed, &st)) {
        const char *arg = st.arg, *line = st.line;
        size_t alen = st.alen, len = st.len;
        if (st.cmd != MX_SCRIPT_REQUEST && st.cmd != MX_SCRIPT_DROPPED) {
            switch (st.cmd) {
            case '0': case '1': case '2': cur = &conns[st.cmd - '0']; break;
            case 'b': batch = !batch; break;
            case 'c': CHECK(mx_engine_commit(e) == 0, "commit failed with memory storage"); break;
            case 't': CHECK(mx_engine_tick(e) == 0, "tick failed with memory storage"); break;
            case 'x':
                mx_engine_conn_closed(e, &cur->conn);
                fake_open(e, cur);
                break;
            case 'd':
                remember_room(arg, alen);
                mx_engine_delete_room(e, arg, alen);
                break;
            case 'e': {
                /* the edge passes fixed ASCII texts */
                char msg[256];
                size_t n = alen < 255 ? alen : 255;
                for (size_t k = 0; k < n; k++)
                    msg[k] = arg[k] >= 0x20 && arg[k] < 0x7f ? arg[k] : '?';
                msg[n] = '\0';
                mx_engine_send_error(e, &cur->conn, MX_EBAD_JSON, msg);
                break;
            }
            case 'h': token_hello(e, cur, arg, alen); break;
            case 'r': mx_engine_refuse(e, &cur->conn, arg, alen, MX_ERATE_LIMITED, "rate limited"); break;
            case 'y':
            case 's':
                since_request(e, cur, arg, alen, st.cmd == 's', next_id++);
                break;
            default:
                break;
            }
        } else if (st.cmd == MX_SCRIPT_REQUEST) {
            mx_engine_handle(e, &cur->conn, line, len);
            /* remember the room a request names, for the final checks */
            json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, NULL);
            const json_t *room = json_object_get(j, "room");
            if (json_is_string(room))
                remember_room(json_string_value(room), json_string_length(room));
            remember_sent(cur, j);
            if (json_object_get(j, "since"))
                cur->raw_since = 1;
            json_decref(j);
        }
        if (!batch)
            CHECK(mx_engine_commit(e) == 0, "commit failed with memory storage");
        if (!batch || st.cmd == 'c')
            for (int i = 0; i < NCONN; i++)
                conns[i].pend = conns[i].raw_since = 0; /* the replies were delivered */
        for (int i = 0; i < NCONN; i++) {
            if (conns[i].closed) {
                mx_engine_conn_closed(e, &conns[i].conn);
                fake_open(e, &conns[i]);
            }
        }
    }
    CHECK(mx_engine_commit(e) == 0, "final commit failed with memory storage");
    CHECK(!mx_engine_has_pending(e), "outbox not empty after commit");
    for (size_t i = 0; i < nseen; i++) {
        struct mx_room *r = mx_engine_room(e, seen[i], strlen(seen[i]));
        if (r)
            check_room(r);
    }
    for (int i = 0; i < NCONN; i++) {
        mx_engine_conn_closed(e, &conns[i].conn);
        model_free(&conns[i]);
        memset(&conns[i], 0, sizeof(conns[i]));
    }
    mx_engine_close(e);
    mx_engine_free(e);
    return 0;
}
