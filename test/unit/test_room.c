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
 *     entry from since + 1 to the head and since's checksum matches.
 * The room is driven directly with the json reducer, no engine. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/json.h"
#include "movexd/oplog.h"
#include "movexd/room.h"

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
    suite_add_tcase(s, tc);
    return s;
}
