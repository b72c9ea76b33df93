/* Unit tests for room.c, the authoritative step, one named test per
 * guarantee of the README that the room itself keeps (the engine-level
 * ones - ordering, durable acks, catch-up replies - are in test_engine.c):
 *   exactly-once: a resent n gets the original ack, or the original reject,
 *     as a duplicate and changes nothing; an n older than the memory (or a
 *     skipped one) is too_old and not recorded;
 *   the rejection cascade: an action whose dep was rejected is after_reject,
 *     transitively; a dep never decided is bad_dep and does not use up n;
 *   strict: base != head is stale, base == head applies;
 *   a reject changes nothing but the exactly-once memory;
 *   catch-up is never partial: the log answers only when it holds every
 *     entry from since + 1 to the head and since's checksum matches;
 *   a batch (cluster mode) rolled back leaves the room exactly as before it
 *     - state, checksum, log, exactly-once memory - with the json and the
 *     Lua reducer; committed, it equals the same decisions made without one.
 * The room is driven directly with the json reducer, no engine. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/json.h"
#include "movexd/oplog.h"
#include "movexd/room.h"
#include "movexd/alloc.h"
#include "movexd/snapshot.h"

#define ID "todo:unit"

static struct mx_room *room(size_t history, size_t window)
{
    struct mx_room_type t;
    memset(&t, 0, sizeof t);
    strcpy(t.name, "todo");
    strcpy(t.reducer, "json");
    t.history = history;
    int err = 0;
    mx_val *state = mx_json_obj();
    ck_assert_ptr_nonnull(state);
    ck_assert_int_eq(mx_digest_refresh(state), 0);
    struct mx_room *r = mx_room_new(ID, strlen(ID), &t, state, window, &err);
    ck_assert_msg(r != NULL, "mx_room_new: %d", err);
    return r;
}

struct opts {
    size_t ndeps;
    uint64_t deps[4];
    int strict;
    int has_base;
    uint64_t base;
    int (*reserve)(void *ctx, size_t bytes);
    void *reserve_ctx;
};

/* Decide action n of `client` with the patch `payload` (JSON text); the
 * outcome's owned parts are released, the rest is returned. */
static struct mx_action_out decide(struct mx_room *r, const char *client, uint64_t n, const char *payload,
                                   const struct opts *o)
{
    json_error_t je;
    json_t *p = json_loads(payload, 0, &je);
    ck_assert_msg(p != NULL, "payload: %s", je.text);
    json_t *action = json_pack("{s:s, s:o}", "type", "patch", "payload", p);
    ck_assert_ptr_nonnull(action);
    struct opts none = {0};
    if (!o)
        o = &none;
    struct mx_action_in in = {.client = client, .clientlen = strlen(client), .n = n,
                              .has_base = o->has_base || o->strict, .strict = o->strict, .base = o->base,
                              .ndeps = o->ndeps, .deps = o->deps, .action = action, .max_depth = 32,
                              .reserve = o->reserve, .reserve_ctx = o->reserve_ctx};
    struct mx_action_out out;
    ck_assert_int_eq(mx_room_decide(r, &in, &out), 0);
    free(out.entry_owned);
    out.entry_owned = NULL;
    json_decref(out.effects);
    out.effects = NULL;
    json_decref(action);
    return out;
}

#define INC "[{\"op\":\"inc\",\"path\":\"/n\",\"value\":1}]"
#define ADD_N "[{\"op\":\"add\",\"path\":\"/n\",\"value\":0}]"
#define FAILS "[{\"op\":\"test\",\"path\":\"/n\",\"value\":12345}]"

/* The room's state, seq and checksum, to compare before/after. */
struct head {
    uint64_t seq;
    uint8_t sum[MX_DIGEST_LEN];
    char *text;
};

static struct head head_of(const struct mx_room *r)
{
    struct head h = {.seq = r->seq};
    memcpy(h.sum, r->checksum, MX_DIGEST_LEN);
    mx_buf b;
    mx_buf_init(&b, 0);
    ck_assert_int_eq(mx_json_dump(r->state, &b), 0);
    h.text = mx_buf_steal(&b);
    return h;
}

static void assert_unchanged(const struct mx_room *r, struct head *h, const char *what)
{
    struct head now = head_of(r);
    ck_assert_msg(now.seq == h->seq, "%s: seq %llu -> %llu", what, (unsigned long long)h->seq,
                  (unsigned long long)now.seq);
    ck_assert_msg(!memcmp(now.sum, h->sum, MX_DIGEST_LEN), "%s: checksum changed", what);
    ck_assert_msg(!strcmp(now.text, h->text), "%s: state %s -> %s", what, h->text, now.text);
    free(now.text);
    free(h->text);
    h->text = NULL;
}

/* An applied action's entry is the log's own copy (no second one), or the
 * caller's when the log keeps nothing (history 0). */
START_TEST(applied_entry_is_the_logs_copy)
{
    struct mx_room *r = room(4, 16);
    /* the room's field for reply heads, made once at creation */
    char field[256];
    snprintf(field, sizeof field, ",\"room\":\"%s\"", ID);
    ck_assert_uint_eq(r->room_fieldlen, strlen(field));
    ck_assert(memcmp(r->room_field, field, r->room_fieldlen) == 0);
    json_t *action = json_pack("{s:s, s:[{s:s, s:s, s:i}]}", "type", "patch", "payload", "op", "add",
                               "path", "/a", "value", 1);
    struct mx_action_in in = {.client = "c", .clientlen = 1, .n = 1, .action = action, .max_depth = 32};
    struct mx_action_out out;
    ck_assert_int_eq(mx_room_decide(r, &in, &out), 0);
    ck_assert_int_eq(out.decision, MX_DECIDED_APPLIED);
    ck_assert_ptr_null(out.entry_owned);
    const struct mx_oplog_entry *e = mx_oplog_get(r->log, out.seq);
    ck_assert_ptr_eq(out.entry_text, e->text);
    ck_assert_uint_eq(out.entry_len, e->len);
    ck_assert_int_eq(out.entry_text[out.entry_len], '\0');
    mx_room_free(r);

    r = room(0, 16);
    ck_assert_int_eq(mx_room_decide(r, &in, &out), 0);
    ck_assert_int_eq(out.decision, MX_DECIDED_APPLIED);
    ck_assert_ptr_nonnull(out.entry_owned);
    ck_assert_ptr_eq(out.entry_text, out.entry_owned);
    ck_assert_uint_eq(mx_oplog_count(r->log), 0);
    ck_assert_uint_eq(strlen(out.entry_text), out.entry_len);
    free(out.entry_owned);
    mx_room_free(r);
    json_decref(action);
}
END_TEST

START_TEST(exactly_once_duplicate_gets_the_original_ack)
{
    struct mx_room *r = room(16, 8);
    struct mx_action_out a = decide(r, "alice", 1, ADD_N, NULL);
    ck_assert_int_eq(a.decision, MX_DECIDED_APPLIED);
    ck_assert_uint_eq(a.seq, 1);
    struct mx_action_out b = decide(r, "bob", 1, INC, NULL); /* another client's n = 1 is its own */
    ck_assert_int_eq(b.decision, MX_DECIDED_APPLIED);
    struct head h = head_of(r);
    struct mx_action_out d = decide(r, "alice", 1, INC, NULL); /* same n, other payload */
    ck_assert_int_eq(d.decision, MX_DECIDED_DUPLICATE);
    ck_assert_int_eq(d.prior->kind, MX_OUTCOME_ACK);
    ck_assert_uint_eq(d.prior->seq, a.seq);
    ck_assert(!memcmp(d.prior->checksum, a.checksum, MX_DIGEST_LEN));
    ck_assert(!memcmp(d.prior->prev, a.prev, MX_DIGEST_LEN));
    assert_unchanged(r, &h, "a duplicate");
    ck_assert_uint_eq(mx_room_next_n(r, "alice", 5), 2);
    mx_room_free(r);
}
END_TEST

START_TEST(exactly_once_duplicate_replays_the_original_reject)
{
    struct mx_room *r = room(16, 8);
    decide(r, "alice", 1, ADD_N, NULL);
    struct mx_action_out rj = decide(r, "alice", 2, FAILS, NULL);
    ck_assert_int_eq(rj.decision, MX_DECIDED_REJECTED);
    ck_assert_int_eq(rj.code, MX_ETEST_FAILED);
    decide(r, "bob", 1, INC, NULL); /* the head moves on */
    struct head h = head_of(r);
    /* resent with a payload that would now apply: still the original reject */
    struct mx_action_out d = decide(r, "alice", 2, INC, NULL);
    ck_assert_int_eq(d.decision, MX_DECIDED_DUPLICATE);
    ck_assert_int_eq(d.prior->kind, MX_OUTCOME_REJECT);
    ck_assert_int_eq(d.prior->code, MX_ETEST_FAILED);
    ck_assert_uint_eq(d.prior->seq, rj.seq); /* the head at the time of the reject */
    ck_assert(!memcmp(d.prior->checksum, rj.checksum, MX_DIGEST_LEN));
    assert_unchanged(r, &h, "a replayed reject");
    mx_room_free(r);
}
END_TEST

START_TEST(exactly_once_too_old_beyond_the_memory_and_skipped_n)
{
    struct mx_room *r = room(64, 4); /* remembers the last 4 outcomes per client */
    for (uint64_t n = 1; n <= 10; n++)
        ck_assert_int_eq(decide(r, "alice", n, n == 1 ? ADD_N : INC, NULL).decision, MX_DECIDED_APPLIED);
    struct head h = head_of(r);
    struct mx_action_out o = decide(r, "alice", 2, INC, NULL);
    ck_assert_int_eq(o.decision, MX_DECIDED_TOO_OLD);
    ck_assert_int_eq(o.code, MX_ETOO_OLD);
    ck_assert_uint_eq(o.seq, r->seq);
    assert_unchanged(r, &h, "too_old");
    /* still remembered: the last 4 */
    ck_assert_int_eq(decide(r, "alice", 7, INC, NULL).decision, MX_DECIDED_DUPLICATE);
    /* a skipped n (never decided, below the highest) is too_old, never applied late */
    ck_assert_int_eq(decide(r, "alice", 20, INC, NULL).decision, MX_DECIDED_APPLIED);
    h = head_of(r);
    ck_assert_int_eq(decide(r, "alice", 15, INC, NULL).decision, MX_DECIDED_TOO_OLD);
    assert_unchanged(r, &h, "a skipped n");
    /* too_old is not recorded: asking again gives the same answer */
    ck_assert_int_eq(decide(r, "alice", 15, INC, NULL).decision, MX_DECIDED_TOO_OLD);
    mx_room_free(r);
}
END_TEST

START_TEST(cascade_rejects_everything_built_on_a_reject)
{
    struct mx_room *r = room(16, 8);
    decide(r, "alice", 1, ADD_N, NULL);
    ck_assert_int_eq(decide(r, "alice", 2, FAILS, NULL).decision, MX_DECIDED_REJECTED);
    struct head h = head_of(r);
    struct opts on2 = {.ndeps = 1, .deps = {2}};
    struct mx_action_out c1 = decide(r, "alice", 3, INC, &on2);
    ck_assert_int_eq(c1.decision, MX_DECIDED_REJECTED);
    ck_assert_int_eq(c1.code, MX_EAFTER_REJECT);
    /* transitively: built on the cascaded one */
    struct opts on3 = {.ndeps = 1, .deps = {3}};
    struct mx_action_out c2 = decide(r, "alice", 4, INC, &on3);
    ck_assert_int_eq(c2.code, MX_EAFTER_REJECT);
    /* one rejected dep among applied ones is enough */
    struct opts mixed = {.ndeps = 2, .deps = {1, 4}};
    ck_assert_int_eq(decide(r, "alice", 5, INC, &mixed).code, MX_EAFTER_REJECT);
    assert_unchanged(r, &h, "cascaded rejects");
    /* the cascade is recorded: a resend is the duplicate reject */
    struct mx_action_out d = decide(r, "alice", 3, INC, NULL);
    ck_assert_int_eq(d.decision, MX_DECIDED_DUPLICATE);
    ck_assert_int_eq(d.prior->code, MX_EAFTER_REJECT);
    /* a dep that was applied lets the action apply */
    struct opts on1 = {.ndeps = 1, .deps = {1}};
    ck_assert_int_eq(decide(r, "alice", 6, INC, &on1).decision, MX_DECIDED_APPLIED);
    mx_room_free(r);
}
END_TEST

START_TEST(cascade_undecided_dep_is_bad_dep_and_keeps_n)
{
    struct mx_room *r = room(16, 8);
    decide(r, "alice", 1, ADD_N, NULL);
    struct head h = head_of(r);
    struct opts on2 = {.ndeps = 1, .deps = {2}};
    struct mx_action_out o = decide(r, "alice", 3, INC, &on2);
    ck_assert_int_eq(o.decision, MX_DECIDED_TOO_OLD); /* refused, not recorded */
    ck_assert_int_eq(o.code, MX_EBAD_DEP);
    assert_unchanged(r, &h, "bad_dep");
    ck_assert_uint_eq(mx_room_next_n(r, "alice", 5), 2);
    /* the dep arrives (it was refused unavailable, say); then the resend applies */
    ck_assert_int_eq(decide(r, "alice", 2, INC, NULL).decision, MX_DECIDED_APPLIED);
    ck_assert_int_eq(decide(r, "alice", 3, INC, &on2).decision, MX_DECIDED_APPLIED);
    mx_room_free(r);
}
END_TEST

START_TEST(strict_base_must_be_the_head)
{
    struct mx_room *r = room(16, 8);
    decide(r, "alice", 1, ADD_N, NULL);
    decide(r, "bob", 1, INC, NULL);
    struct head h = head_of(r);
    struct opts stale = {.strict = 1, .base = 1};
    struct mx_action_out o = decide(r, "alice", 2, INC, &stale);
    ck_assert_int_eq(o.decision, MX_DECIDED_REJECTED);
    ck_assert_int_eq(o.code, MX_ESTALE);
    ck_assert_uint_eq(o.seq, 2);
    assert_unchanged(r, &h, "stale");
    /* not strict: the same base is only informative */
    struct opts loose = {.has_base = 1, .base = 1};
    ck_assert_int_eq(decide(r, "alice", 3, INC, &loose).decision, MX_DECIDED_APPLIED);
    struct opts at_head = {.strict = 1, .base = 3};
    struct mx_action_out ok = decide(r, "alice", 4, INC, &at_head);
    ck_assert_int_eq(ok.decision, MX_DECIDED_APPLIED);
    ck_assert_uint_eq(ok.seq, 4);
    mx_room_free(r);
}
END_TEST

START_TEST(reject_changes_nothing_but_the_memory)
{
    struct mx_room *r = room(16, 8);
    decide(r, "alice", 1, "[{\"op\":\"add\",\"path\":\"/a\",\"value\":[1,2]}]", NULL);
    struct head h = head_of(r);
    /* atomic: the first op would apply, the second fails */
    struct mx_action_out o = decide(
        r, "alice", 2, "[{\"op\":\"add\",\"path\":\"/b\",\"value\":1},{\"op\":\"remove\",\"path\":\"/zz\"}]",
        NULL);
    ck_assert_int_eq(o.decision, MX_DECIDED_REJECTED);
    ck_assert_int_eq(o.code, MX_EBAD_PATCH);
    ck_assert_uint_eq(mx_oplog_last_seq(r->log), 1);
    assert_unchanged(r, &h, "an atomic patch that failed half-way");
    ck_assert_uint_eq(mx_room_next_n(r, "alice", 5), 3); /* but n = 2 is used up */
    mx_room_free(r);
}
END_TEST

struct reserve_stub {
    int rc;       /* what the storage answers */
    size_t asked; /* the size it was asked for */
};

static int stub_reserve(void *ctx, size_t bytes)
{
    struct reserve_stub *st = ctx;
    st->asked = bytes;
    return st->rc;
}

/* The record's real size (effects included) is reserved after the reducer
 * ran and before anything is committed; a refusal leaves the room as it
 * was and n unused (unavailable), or rejects too_large. */
START_TEST(reserve_covers_the_record_before_commit)
{
    struct mx_room *r = room(16, 8);
    decide(r, "alice", 1, ADD_N, NULL);
    struct head h = head_of(r);
    char big[20100];
    int len = snprintf(big, sizeof big, "[{\"op\":\"add\",\"path\":\"/big\",\"value\":\"");
    memset(big + len, 'x', 20000);
    strcpy(big + len + 20000, "\"}]");
    struct reserve_stub st = {.rc = MX_EUNAVAILABLE};
    struct opts o = {.reserve = stub_reserve, .reserve_ctx = &st};

    struct mx_action_out out = decide(r, "alice", 2, big, &o);
    ck_assert_int_eq(out.decision, MX_DECIDED_UNAVAILABLE);
    ck_assert_int_eq(out.code, MX_EUNAVAILABLE);
    ck_assert_msg(st.asked >= 20000 + strlen("alice") + strlen(ID), "reserved %zu bytes", st.asked);
    ck_assert_uint_eq(mx_oplog_last_seq(r->log), 1);
    assert_unchanged(r, &h, "a record the storage could not reserve");
    ck_assert_uint_eq(mx_room_next_n(r, "alice", 5), 2); /* n = 2 is not used up */

    st.rc = MX_ETOO_LARGE;
    h = head_of(r);
    out = decide(r, "alice", 2, big, &o);
    ck_assert_int_eq(out.decision, MX_DECIDED_REJECTED);
    ck_assert_int_eq(out.code, MX_ETOO_LARGE);
    assert_unchanged(r, &h, "a record past the log's limit");

    st.rc = 0;
    out = decide(r, "alice", 3, big, &o);
    ck_assert_int_eq(out.decision, MX_DECIDED_APPLIED);
    ck_assert_uint_eq(r->seq, 2);
    mx_room_free(r);
}
END_TEST

START_TEST(catch_up_never_partial)
{
    struct mx_room *r = room(4, 8); /* the log keeps 4 entries */
    uint8_t sums[11][MX_DIGEST_LEN];
    memcpy(sums[0], r->checksum, MX_DIGEST_LEN);
    for (uint64_t n = 1; n <= 10; n++) {
        struct mx_action_out o = decide(r, "alice", n, n == 1 ? ADD_N : INC, NULL);
        ck_assert_int_eq(o.decision, MX_DECIDED_APPLIED);
        memcpy(sums[n], o.checksum, MX_DIGEST_LEN);
    }
    /* covered: since 6..10 (entries 7..10 are in the log), each entry there */
    for (uint64_t s = 6; s <= 10; s++) {
        ck_assert_msg(mx_room_can_catch_up(r, s, sums[s]), "since %llu", (unsigned long long)s);
        for (uint64_t k = s + 1; k <= 10; k++)
            ck_assert_ptr_nonnull(mx_oplog_get(r->log, k));
    }
    /* a gap: entries before 7 are gone, so since 0..5 cannot be answered from the log */
    for (uint64_t s = 0; s <= 5; s++)
        ck_assert_msg(!mx_room_can_catch_up(r, s, sums[s]), "since %llu needs a snapshot", (unsigned long long)s);
    /* a checksum that is not the room's at that seq (another history) */
    ck_assert(!mx_room_can_catch_up(r, 8, sums[7]));
    uint8_t zero[MX_DIGEST_LEN] = {0};
    ck_assert(!mx_room_can_catch_up(r, 10, zero));
    /* ahead of the head */
    ck_assert(!mx_room_can_catch_up(r, 11, sums[10]));
    mx_room_free(r);

    /* history 0: nothing but the head itself can be caught up */
    r = room(0, 8);
    memcpy(sums[0], r->checksum, MX_DIGEST_LEN);
    struct mx_action_out o = decide(r, "alice", 1, ADD_N, NULL);
    ck_assert(!mx_room_can_catch_up(r, 0, sums[0]));
    ck_assert(mx_room_can_catch_up(r, 1, o.checksum));
    mx_room_free(r);
}
END_TEST

START_TEST(applied_entry_chains_prev_to_checksum)
{
    struct mx_room *r = room(8, 8);
    uint8_t prev[MX_DIGEST_LEN];
    memcpy(prev, r->checksum, MX_DIGEST_LEN);
    for (uint64_t n = 1; n <= 5; n++) {
        struct mx_action_out o = decide(r, "c", n, n == 1 ? ADD_N : INC, NULL);
        ck_assert_uint_eq(o.seq, n);
        ck_assert(!memcmp(o.prev, prev, MX_DIGEST_LEN));
        const struct mx_oplog_entry *en = mx_oplog_get(r->log, n);
        ck_assert_ptr_nonnull(en);
        ck_assert(!memcmp(en->prev, prev, MX_DIGEST_LEN));
        ck_assert(!memcmp(en->checksum, o.checksum, MX_DIGEST_LEN));
        uint8_t d[MX_DIGEST_LEN];
        ck_assert_int_eq(mx_digest_of(r->state, d), 0);
        ck_assert(!memcmp(d, o.checksum, MX_DIGEST_LEN));
        memcpy(prev, o.checksum, MX_DIGEST_LEN);
    }
    mx_room_free(r);
}
END_TEST


/* ---- batches (mx_room_batch_*) ---- */

/* Everything a room remembers, as bytes: the snapshot encoding (state,
 * seq, checksum, log entries, outcomes in the memory's order) plus what it
 * leaves out - each client's highest n, and for every n up to it whether
 * the memory knows it, never had it, or forgot it (the `dropped` flag) -
 * and the state's digest recomputed from scratch. */
struct seen {
    mx_buf *b;
    const struct mx_dedup *d;
};

static int seen_outcome(void *arg, const char *client, size_t clen, uint64_t highest,
                        const struct mx_outcome *o)
{
    struct seen *s = arg;
    char line[128];
    snprintf(line, sizeof line, "|%.*s hi=%llu n=%llu:", (int)clen, client, (unsigned long long)highest,
             (unsigned long long)o->n);
    mx_buf_append(s->b, line, strlen(line));
    for (uint64_t n = 1; n <= highest + 1; n++) {
        int f = mx_dedup_find(s->d, client, clen, n, NULL);
        mx_buf_append(s->b, f < 0 ? "-" : f ? "1" : "0", 1);
    }
    return 0;
}

static char *room_bytes(const struct mx_room *r, size_t *len)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    ck_assert_int_eq(mx_snapshot_encode(r, 0, &b), 0);
    struct seen s = {.b = &b, .d = r->dedup};
    mx_dedup_foreach(r->dedup, seen_outcome, &s);
    char line[96];
    snprintf(line, sizeof line, "|log %zu %zu %llu..%llu", mx_oplog_count(r->log), mx_oplog_bytes(r->log),
             (unsigned long long)mx_oplog_first_seq(r->log), (unsigned long long)mx_oplog_last_seq(r->log));
    mx_buf_append(&b, line, strlen(line));
    uint8_t d[MX_DIGEST_LEN];
    mx_val *copy = NULL;
    mx_buf t;
    mx_buf_init(&t, 0);
    ck_assert_int_eq(mx_json_dump(r->state, &t), 0);
    json_t *j = json_loadb(t.mem + t.pre, t.len, JSON_DECODE_INT_AS_REAL, NULL);
    copy = mx_json_from_jansson(j, 0, NULL);
    json_decref(j);
    mx_buf_free(&t);
    ck_assert_int_eq(mx_digest_of(copy, d), 0);
    mx_json_free(copy);
    ck_assert_msg(!memcmp(d, r->checksum, MX_DIGEST_LEN), "the checksum is not the state's digest");
    ck_assert_int_eq(mx_digest_of(r->state, d), 0);
    ck_assert_msg(!memcmp(d, r->checksum, MX_DIGEST_LEN), "the state's digest caches are stale");
    ck_assert(!b.oom);
    *len = b.len;
    return mx_buf_steal(&b);
}

static void assert_same_bytes(const struct mx_room *r, const char *was, size_t wlen, const char *what)
{
    size_t len;
    char *now = room_bytes(r, &len);
    ck_assert_msg(len == wlen && !memcmp(now, was, len), "%s: the room differs (%zu vs %zu bytes)", what, len,
                  wlen);
    free(now);
}

/* A json action: {"type":"patch","payload":...} or, with type set, any
 * {"type":type,"payload":payload} for a Lua reducer. */
static enum mx_decision decide_any(struct mx_room *r, const char *client, uint64_t n, const char *type,
                                   const char *payload, int strict, uint64_t base)
{
    json_t *p = json_loads(payload, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(p);
    json_t *action = json_pack("{s:s, s:o}", "type", type, "payload", p);
    struct mx_action_in in = {.client = client, .clientlen = strlen(client), .n = n, .has_base = strict,
                              .strict = strict, .base = base, .action = action, .max_depth = 32,
                              .time_ms = 1000 + n, .seed = n};
    struct mx_action_out out;
    ck_assert_int_eq(mx_room_decide(r, &in, &out), 0);
    free(out.entry_owned);
    json_decref(out.effects);
    json_decref(action);
    return out.decision;
}

/* One script of actions, run on a room: before the batch (filling the
 * log past its history and a client's memory past its window, so the
 * batch's appends and records overwrite) and in it (applies, recorded
 * rejects, a duplicate, a stale strict, a new client, more entries than
 * the history holds). */
static void script_json(struct mx_room *r, int part)
{
    if (part == 0) {
        ck_assert_int_eq(decide_any(r, "a", 1, "patch", "[{\"op\":\"add\",\"path\":\"/n\",\"value\":0}]", 0, 0),
                         MX_DECIDED_APPLIED);
        ck_assert_int_eq(decide_any(r, "a", 2, "patch", "[{\"op\":\"add\",\"path\":\"/l\",\"value\":[1,2]}]", 0, 0),
                         MX_DECIDED_APPLIED);
        for (uint64_t n = 3; n <= 6; n++)
            decide_any(r, "a", n, "patch", INC, 0, 0);
        ck_assert_int_eq(decide_any(r, "b", 1, "patch", FAILS, 0, 0), MX_DECIDED_REJECTED);
        ck_assert_int_eq(decide_any(r, "b", 2, "patch", INC, 0, 0), MX_DECIDED_APPLIED);
        return;
    }
    ck_assert_int_eq(decide_any(r, "a", 7, "patch", INC, 0, 0), MX_DECIDED_APPLIED);
    ck_assert_int_eq(decide_any(r, "a", 8, "patch",
                                "[{\"op\":\"remove\",\"path\":\"/l/0\"},{\"op\":\"add\",\"path\":\"/o\","
                                "\"value\":{\"x\":[true,null,\"s\"]}}]", 0, 0),
                     MX_DECIDED_APPLIED);
    ck_assert_int_eq(decide_any(r, "a", 8, "patch", INC, 0, 0), MX_DECIDED_DUPLICATE);
    ck_assert_int_eq(decide_any(r, "b", 3, "patch", FAILS, 0, 0), MX_DECIDED_REJECTED);
    ck_assert_int_eq(decide_any(r, "c", 1, "patch", "[{\"op\":\"move\",\"from\":\"/o/x\",\"path\":\"/m\"}]", 0, 0),
                     MX_DECIDED_APPLIED);
    ck_assert_int_eq(decide_any(r, "c", 2, "patch", INC, 1, 1), MX_DECIDED_REJECTED); /* stale */
    ck_assert_int_eq(decide_any(r, "d", 5, "patch", "[{\"op\":\"replace\",\"path\":\"\",\"value\":{\"z\":1}}]",
                                0, 0),
                     MX_DECIDED_APPLIED);
    ck_assert_int_eq(decide_any(r, "d", 6, "patch", "[{\"op\":\"copy\",\"from\":\"/z\",\"path\":\"/y\"}]", 0, 0),
                     MX_DECIDED_APPLIED);
    for (uint64_t n = 9; n <= 12; n++)
        decide_any(r, "a", n, "patch", "[{\"op\":\"add\",\"path\":\"/k\",\"value\":1}]", 0, 0);
}

static void batch_case(struct mx_room *r, struct mx_room *twin, void (*script)(struct mx_room *, int))
{
    script(r, 0);
    script(twin, 0);
    size_t len;
    char *before = room_bytes(r, &len);
    /* rolled back: as before, byte for byte */
    ck_assert_int_eq(mx_room_batch_begin(r), 0);
    script(r, 1);
    ck_assert_uint_gt(r->seq, twin->seq);
    mx_room_batch_rollback(r);
    ck_assert_ptr_null(r->batch);
    assert_same_bytes(r, before, len, "after a rollback");
    /* twice in a row, the second time committed: the same room as one
     * that decided it all without a batch */
    ck_assert_int_eq(mx_room_batch_begin(r), 0);
    script(r, 1);
    mx_room_batch_commit(r);
    script(twin, 1);
    size_t tlen;
    char *t = room_bytes(twin, &tlen);
    assert_same_bytes(r, t, tlen, "after a commit");
    free(t);
    /* an empty batch changes nothing; one left open goes with the room */
    free(before);
    before = room_bytes(r, &len);
    ck_assert_int_eq(mx_room_batch_begin(r), 0);
    mx_room_batch_rollback(r);
    assert_same_bytes(r, before, len, "after an empty batch");
    free(before);
    ck_assert_int_eq(mx_room_batch_begin(r), 0);
    decide_any(r, "z", 1, "patch", INC, 0, 0); /* json: applied; lua: unknown_action */
}

START_TEST(batch_rollback_restores_the_room_json)
{
    /* history 3 and window 2: the batch overwrites log entries and
     * outcomes of before it */
    struct mx_room *r = room(3, 2), *twin = room(3, 2);
    batch_case(r, twin, script_json);
    mx_room_free(r); /* with its batch open */
    mx_room_free(twin);
}
END_TEST

START_TEST(batch_rollback_restores_the_room_history_0)
{
    struct mx_room *r = room(0, 1), *twin = room(0, 1);
    batch_case(r, twin, script_json);
    mx_room_free(r);
    mx_room_free(twin);
}
END_TEST

/* A Lua reducer that adds, removes, moves, counts and rejects; the
 * rollback never calls it (the undo holds the effects' inverse). */
static const char *LUA_SRC =
    "local M = {}\n"
    "function M.reduce(state, action, ctx)\n"
    "  local p = action.payload\n"
    "  if action.type == 'no' then return nil, 'said_no', 'no ' .. tostring(p) end\n"
    "  if action.type == 'init' then\n"
    "    return {{op = 'add', path = '/items', value = movex.array()},\n"
    "            {op = 'add', path = '/count', value = 0}}\n"
    "  end\n"
    "  if action.type == 'push' then\n"
    "    return {{op = 'add', path = '/items/-', value = {v = p, by = ctx.client, r = ctx.random(1000)}},\n"
    "            {op = 'inc', path = '/count', value = 1}}\n"
    "  end\n"
    "  if action.type == 'shift' then\n"
    "    if #state.items == 0 then return nil, 'empty', 'nothing to shift' end\n"
    "    return {{op = 'move', from = '/items/0', path = '/last'}, {op = 'inc', path = '/count', value = -1}}\n"
    "  end\n"
    "  return nil, 'unknown_action', action.type\n"
    "end\n"
    "return M\n";

static void script_lua(struct mx_room *r, int part)
{
    if (part == 0) {
        ck_assert_int_eq(decide_any(r, "a", 1, "init", "0", 0, 0), MX_DECIDED_APPLIED);
        for (uint64_t n = 2; n <= 5; n++)
            ck_assert_int_eq(decide_any(r, "a", n, "push", "1", 0, 0), MX_DECIDED_APPLIED);
        ck_assert_int_eq(decide_any(r, "b", 1, "no", "1", 0, 0), MX_DECIDED_REJECTED);
        return;
    }
    ck_assert_int_eq(decide_any(r, "a", 6, "shift", "0", 0, 0), MX_DECIDED_APPLIED);
    ck_assert_int_eq(decide_any(r, "b", 2, "push", "\"x\"", 0, 0), MX_DECIDED_APPLIED);
    ck_assert_int_eq(decide_any(r, "b", 3, "no", "2", 0, 0), MX_DECIDED_REJECTED);
    ck_assert_int_eq(decide_any(r, "c", 1, "push", "{\"deep\":[1,2,3]}", 0, 0), MX_DECIDED_APPLIED);
    for (uint64_t n = 7; n <= 11; n++)
        ck_assert_int_eq(decide_any(r, "a", n, "shift", "0", 0, 0), MX_DECIDED_APPLIED);
    ck_assert_int_eq(decide_any(r, "a", 12, "shift", "0", 0, 0), MX_DECIDED_REJECTED); /* empty */
    ck_assert_int_eq(decide_any(r, "a", 12, "push", "0", 0, 0), MX_DECIDED_DUPLICATE);
}

START_TEST(batch_rollback_restores_the_room_lua)
{
    char path[] = "/tmp/mx-batch-lua-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, LUA_SRC, strlen(LUA_SRC)), (ssize_t)strlen(LUA_SRC));
    close(fd);
    struct mx_room_type t;
    memset(&t, 0, sizeof t);
    strcpy(t.name, "batchlua");
    strcpy(t.reducer, "lua");
    t.reducer_path = path;
    t.reducer_budget = 1000000;
    t.reducer_memory = 16u << 20;
    t.history = 4;
    struct mx_room *rr[2];
    for (int i = 0; i < 2; i++) {
        int err = 0;
        mx_val *state = mx_json_obj();
        ck_assert_int_eq(mx_digest_refresh(state), 0);
        rr[i] = mx_room_new("batchlua:1", 10, &t, state, 2, &err);
        ck_assert_msg(rr[i] != NULL, "mx_room_new: %d", err);
    }
    unlink(path);
    ck_assert(rr[0]->reducer->uses_ctx);
    batch_case(rr[0], rr[1], script_lua);
    mx_room_free(rr[0]);
    mx_room_free(rr[1]);
    mx_reducers_free();
}
END_TEST

/* r encoded whole into *whole and, with its log pinned, gathered: the
 * pieces' own bytes in *rest, the list in *iov / *niov. */
static void encode_both(struct mx_room *r, uint64_t lsn, mx_buf *whole, mx_buf *rest, struct iovec **iov,
                        size_t *niov)
{
    size_t cap = 0;
    mx_buf_init(whole, 0);
    mx_buf_init(rest, 0);
    ck_assert_int_eq(mx_snapshot_encode(r, lsn, whole), 0);
    *iov = NULL;
    ck_assert_int_eq(mx_oplog_pin(r->log), 0);
    ck_assert_int_eq(mx_oplog_pin(r->log), -1); /* one pin at a time */
    ck_assert_int_eq(mx_snapshot_encode_gather(r, lsn, rest, iov, niov, &cap), 0);
}

/* The gathered snapshot (storage_wal.c's writer-thread path) is the same
 * bytes as mx_snapshot_encode, and its texts are the log's own blocks,
 * not copies; pinned, they stay intact while the room goes on deciding
 * (its full log drops them) - ASan sees any read of a freed one. */
START_TEST(gathered_snapshot_is_the_encoding)
{
    struct mx_room *r = room(8, 4);
    for (uint64_t n = 1; n <= 12; n++)
        decide(r, n % 2 ? "alice" : "bob", (n + 1) / 2, n == 3 ? FAILS : INC, NULL);
    mx_buf whole, rest;
    struct iovec *iov;
    size_t niov = 0;
    encode_both(r, 77, &whole, &rest, &iov, &niov);
    ck_assert_uint_eq(niov, 2 + 2 * mx_oplog_count(r->log));
    /* the texts are the log's blocks */
    for (size_t i = 0; i < mx_oplog_count(r->log); i++)
        ck_assert_ptr_eq(iov[2 + 2 * i].iov_base, mx_oplog_get(r->log, mx_oplog_first_seq(r->log) + i)->text);
    /* the room goes on: its log (8) drops every pinned entry, and the
     * blocks freed meanwhile are handed out again and scribbled on */
    for (uint64_t n = 13; n <= 40; n++) {
        decide(r, n % 2 ? "alice" : "bob", (n + 1) / 2, INC, NULL);
        char *junk = mx_block_alloc(200);
        memset(junk, 'Z', 200);
        mx_block_free(junk);
    }
    mx_oplog_clear(r->log);
    mx_buf cat;
    mx_buf_init(&cat, 0);
    for (size_t i = 0; i < niov; i++)
        mx_buf_append(&cat, iov[i].iov_base, iov[i].iov_len);
    ck_assert_uint_eq(cat.len, whole.len);
    ck_assert_msg(!memcmp(mx_buf_data(&cat), mx_buf_data(&whole), whole.len), "gathered bytes differ");
    mx_oplog_unpin(r->log);
    mx_oplog_unpin(r->log); /* a second unpin does nothing */
    mx_buf_free(&cat);
    mx_buf_free(&whole);
    mx_buf_free(&rest);
    free(iov);
    mx_room_free(r);
}
END_TEST

/* history 0: no entries, two pieces (head, outcomes). */
START_TEST(gathered_snapshot_of_an_empty_log)
{
    struct mx_room *r = room(0, 4);
    decide(r, "alice", 1, INC, NULL);
    mx_buf whole, rest;
    struct iovec *iov;
    size_t niov = 0;
    encode_both(r, 5, &whole, &rest, &iov, &niov);
    ck_assert_uint_eq(niov, 2);
    ck_assert_uint_eq(iov[0].iov_len + iov[1].iov_len, whole.len);
    ck_assert(!memcmp(iov[0].iov_base, mx_buf_data(&whole), iov[0].iov_len));
    ck_assert(!memcmp(iov[1].iov_base, mx_buf_data(&whole) + iov[0].iov_len, iov[1].iov_len));
    mx_oplog_unpin(r->log);
    mx_buf_free(&whole);
    mx_buf_free(&rest);
    free(iov);
    mx_room_free(r);
}
END_TEST

Suite *mx_suite_room(void)
{
    Suite *s = suite_create("room");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, applied_entry_is_the_logs_copy);
    tcase_add_test(tc, exactly_once_duplicate_gets_the_original_ack);
    tcase_add_test(tc, exactly_once_duplicate_replays_the_original_reject);
    tcase_add_test(tc, exactly_once_too_old_beyond_the_memory_and_skipped_n);
    tcase_add_test(tc, cascade_rejects_everything_built_on_a_reject);
    tcase_add_test(tc, cascade_undecided_dep_is_bad_dep_and_keeps_n);
    tcase_add_test(tc, strict_base_must_be_the_head);
    tcase_add_test(tc, reject_changes_nothing_but_the_memory);
    tcase_add_test(tc, catch_up_never_partial);
    tcase_add_test(tc, applied_entry_chains_prev_to_checksum);
    tcase_add_test(tc, reserve_covers_the_record_before_commit);
    tcase_add_test(tc, batch_rollback_restores_the_room_json);
    tcase_add_test(tc, batch_rollback_restores_the_room_history_0);
    tcase_add_test(tc, batch_rollback_restores_the_room_lua);
    tcase_add_test(tc, gathered_snapshot_is_the_encoding);
    tcase_add_test(tc, gathered_snapshot_of_an_empty_log);
    suite_add_tcase(s, tc);
    return s;
}
