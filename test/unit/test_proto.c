/* Unit tests for the encoders (proto_encode.c).
 *
 * encoders: each server message's encoder writes exactly the line shown for
 * it in docs/PROTOCOL.md ("Server messages, byte for byte"), and that line
 * is one valid JSON object; the doc and the code cannot drift apart.
 * error_utf8: mx_proto_error always writes one valid JSON object in valid
 * UTF-8, whatever bytes the message holds (invalid sequences become U+FFFD,
 * one per maximal ill-formed subpart, as TextDecoder does), and leaves valid
 * text alone. jansson's parser refuses invalid UTF-8, so every reply is
 * checked by parsing it back. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "movexd/err.h"
#include "movexd/json.h"
#include "movexd/json_parse.h"
#include "movexd/oplog.h"
#include "movexd/proto.h"

#define FFFD "\xEF\xBF\xBD"

/* Encode an error with `msg`, parse it back (failing the test on any
 * invalid JSON or UTF-8) and return the decoded message (malloc'd). */
static char *error_message(int has_id, uint64_t id, int err, const char *msg)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    mx_proto_error(&b, has_id, id, err, msg);
    ck_assert_int_eq(b.oom, 0);
    json_error_t je;
    json_t *j = json_loadb(mx_buf_data(&b), b.len, JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(j != NULL, "reply is not valid JSON/UTF-8 (%s): %s", je.text, mx_buf_data(&b));
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "error");
    ck_assert_str_eq(json_string_value(json_object_get(j, "code")), mx_err_code(err));
    if (has_id)
        ck_assert_int_eq(json_integer_value(json_object_get(j, "id")), (json_int_t)id);
    else
        ck_assert_ptr_null(json_object_get(j, "id"));
    const json_t *m = json_object_get(j, "message");
    ck_assert(json_is_string(m));
    char *out = malloc(json_string_length(m) + 1);
    ck_assert_ptr_nonnull(out);
    memcpy(out, json_string_value(m), json_string_length(m) + 1);
    json_decref(j);
    mx_buf_free(&b);
    return out;
}

/* The message `in` comes back as `want`. */
#define ck_message(in, want)                                                    \
    do {                                                                        \
        char *got_ = error_message(1, 7, MX_EBAD_REQUEST, in);                  \
        ck_assert_msg(strcmp(got_, want) == 0, "message %s: got \"%s\", want \"%s\"", #in, \
                      got_, want);                                              \
        free(got_);                                                             \
    } while (0)

START_TEST(valid_text_unchanged)
{
    ck_message("plain ascii", "plain ascii");
    ck_message("quotes \" and \\ and \n\t\x01 are escaped",
               "quotes \" and \\ and \n\t\x01 are escaped");
    /* U+0080 U+00E9 U+07FF */
    ck_message("\xC2\x80 \xC3\xA9 \xDF\xBF", "\xC2\x80 \xC3\xA9 \xDF\xBF");
    /* U+0800 U+D7FF U+E000 U+FFFF */
    ck_message("\xE0\xA0\x80 \xED\x9F\xBF \xEE\x80\x80 \xEF\xBF\xBF",
               "\xE0\xA0\x80 \xED\x9F\xBF \xEE\x80\x80 \xEF\xBF\xBF");
    /* U+10000 U+1F600 U+10FFFF */
    ck_message("\xF0\x90\x80\x80 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF",
               "\xF0\x90\x80\x80 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF");
    ck_message(FFFD, FFFD);
    /* an empty or absent message is the code's fixed text */
    ck_message("", mx_err_message(MX_EBAD_REQUEST));
    char *m = error_message(0, 0, MX_EUNKNOWN_TYPE, NULL);
    ck_assert_str_eq(m, mx_err_message(MX_EUNKNOWN_TYPE));
    free(m);
}
END_TEST

START_TEST(invalid_sequences_replaced)
{
    ck_message("a\x80z", "a" FFFD "z");                          /* lone continuation */
    ck_message("\xBF\x80", FFFD FFFD);                           /* two of them */
    ck_message("unknown type \"ab\xC3\"", "unknown type \"ab" FFFD "\"");
    ck_message("cut at the end \xE2\x82", "cut at the end " FFFD); /* truncated: one U+FFFD */
    ck_message("\xF0\x9F\x98" "x", FFFD "x");                    /* truncated 4-byte, then ASCII */
    ck_message("\xC0\xAF", FFFD FFFD);                           /* overlong '/' */
    ck_message("\xC1\xBF", FFFD FFFD);
    ck_message("\xE0\x80\xAF", FFFD FFFD FFFD);                  /* overlong 3-byte */
    ck_message("\xF0\x80\x80\xAF", FFFD FFFD FFFD FFFD);         /* overlong 4-byte */
    ck_message("\xED\xA0\x80", FFFD FFFD FFFD);                  /* surrogate U+D800 */
    ck_message("\xED\xBF\xBF", FFFD FFFD FFFD);                  /* surrogate U+DFFF */
    ck_message("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD);         /* U+110000 */
    ck_message("\xF5\x80\x80\x80", FFFD FFFD FFFD FFFD);
    ck_message("\xF8\xFE\xFF", FFFD FFFD FFFD);
    ck_message("\xE2\x82\xE2\x82\xAC", FFFD "\xE2\x82\xAC");     /* cut €, then a whole € */
    ck_message("\xC3" "\xC3\xA9", FFFD "\xC3\xA9");
    /* escapes still apply around replacements */
    ck_message("\"\x80\n", "\"" FFFD "\n");
}
END_TEST

START_TEST(every_byte_and_random_bytes)
{
    /* every single byte value after an ASCII prefix */
    for (int c = 1; c < 256; c++) {
        char in[4] = {'x', (char)c, 'y', 0};
        char *m = error_message(1, (uint64_t)c, MX_EBAD_JSON, in);
        if (c < 0x80) {
            ck_assert_str_eq(m, in);
        } else {
            ck_assert_str_eq(m, "x" FFFD "y");
        }
        free(m);
    }
    /* random byte strings (no NUL: the message is a C string), biased
     * towards bytes >= 0x80: every reply parses */
    unsigned seed = 12345;
    for (int k = 0; k < 20000; k++) {
        char in[24];
        size_t n = 1 + (size_t)(k % 22);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned v = (seed >> 16) & 0xFF;
            in[i] = (char)(v ? (v & 1 ? (v | 0x80) : v) : 0x80);
        }
        in[n] = '\0';
        free(error_message(1, (uint64_t)k, MX_EBAD_REQUEST, in));
    }
}
END_TEST

/* ---- encoders against docs/PROTOCOL.md ---- */

static char *read_doc(void)
{
    const char *path = "docs/PROTOCOL.md";
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s; run the unit tests from the repository root", path);
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    ck_assert_uint_lt(n, sizeof(doc) - 1);
    doc[n] = '\0';
    return doc;
}

/* b holds exactly one line of the doc's byte-for-byte block, and is one
 * valid JSON object (no duplicate keys). Frees b. */
static void ck_documented(mx_buf *b)
{
    ck_assert_int_eq(b->oom, 0);
    const char *got = mx_buf_data(b);
    char line[4096];
    ck_assert_uint_lt(b->len + 3, sizeof(line));
    snprintf(line, sizeof(line), "\n%s\n", got);
    ck_assert_msg(strstr(read_doc(), line) != NULL, "docs/PROTOCOL.md does not show this message:\n%s",
                  got);
    json_error_t je;
    json_t *j = json_loadb(got, b->len, JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(j && json_is_object(j), "not one JSON object (%s): %s", je.text, got);
    json_decref(j);
    mx_buf_free(b);
}

static const uint8_t SUM_A[MX_DIGEST_LEN] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t SUM_B[MX_DIGEST_LEN] = {16, 17, 18, 19, 20, 21, 22, 23,
                                             24, 25, 26, 27, 28, 29, 30, 31};
#define ROOM "todo:a"
#define HEAD(idv) {.has_id = 1, .id = (idv), .room = ROOM, .roomlen = sizeof(ROOM) - 1}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_INT_AS_REAL, &je);
    ck_assert_msg(j != NULL, "%s: %s", text, je.text);
    return j;
}

/* The entry of the actions and fwd examples: seq 6 by c2, n 3. */
static void example_entry(mx_buf *b)
{
    json_t *action = parse("{\"type\":\"patch\",\"payload\":[]}");
    struct mx_msg_entry m = {.seq = 6, .checksum = SUM_B, .action = action, .client = "c2",
                             .clientlen = 2, .n = 3};
    ck_assert_int_eq(mx_proto_entry(b, &m), 0);
    json_decref(action);
}

START_TEST(each_message_as_documented)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    mx_proto_welcome(&b, &(struct mx_msg_welcome){
                             .h = {.has_id = 1, .id = 1}, .client = "c1", .clientlen = 2,
                             .conn = 7, .server = "movexd/0.1.0", .max_message_bytes = 1048576, .max_depth = 64,
                             .max_queue_bytes = 4194304, .max_rooms = 100, .dedup_window = 1024});
    ck_documented(&b);

    mx_proto_created(&b, &(struct mx_msg_created){.h = HEAD(1), .seq = 0, .checksum = SUM_A});
    ck_documented(&b);

    json_t *js = parse("{\"count\":2,\"items\":[\"x\"]}");
    const char *why = NULL;
    mx_val *state = mx_json_from_jansson(js, 0, &why);
    ck_assert_ptr_nonnull(state);
    json_decref(js);
    mx_proto_snapshot(&b, &(struct mx_msg_snapshot){.h = HEAD(2), .seq = 9, .checksum = SUM_A,
                                                    .next_n = 4, .state = state});
    mx_json_free(state);
    ck_documented(&b);

    mx_buf entry;
    mx_buf_init(&entry, 0);
    example_entry(&entry);
    mx_oplog *log = mx_oplog_new(8);
    ck_assert_int_eq(mx_oplog_append(log, 6, SUM_A, SUM_B, mx_buf_data(&entry), entry.len), 0);
    mx_proto_actions(&b, &(struct mx_msg_actions){.h = HEAD(5), .from = 5, .to = 6, .next_n = 1,
                                                  .log = log});
    mx_oplog_free(log);
    ck_documented(&b);

    mx_proto_fwd(&b, &(struct mx_msg_fwd){.h = {.room = ROOM, .roomlen = sizeof(ROOM) - 1},
                                          .prev = SUM_A, .entry = mx_buf_data(&entry),
                                          .entrylen = entry.len});
    mx_buf_free(&entry);
    ck_documented(&b);

    for (int dup = 0; dup <= 1; dup++) {
        mx_proto_ack(&b, &(struct mx_msg_ack){.h = HEAD(4), .n = 17, .seq = 10, .prev = SUM_A,
                                              .checksum = SUM_B, .duplicate = dup});
        ck_documented(&b);
    }

    mx_proto_reject(&b, &(struct mx_msg_reject){.h = HEAD(4), .n = 17, .code = MX_ETEST_FAILED,
                                                .message = "test failed at /a", .seq = 9,
                                                .checksum = SUM_A});
    ck_documented(&b);

    mx_proto_pong(&b, &(struct mx_msg_head){.has_id = 1, .id = 7});
    ck_documented(&b);

    mx_proto_unsubscribed(&b, &(struct mx_msg_head)HEAD(3));
    ck_documented(&b);

    mx_proto_error(&b, 1, 4, MX_EBAD_REQUEST, "\"n\" must be a positive integer");
    ck_documented(&b);

    mx_proto_error_msg(&b, &(struct mx_msg_error){.h = {.room = ROOM, .roomlen = sizeof(ROOM) - 1},
                                                  .code = MX_ENO_SUCH_ROOM,
                                                  .message = "the room was deleted"});
    ck_documented(&b);

    /* presence: a state, leaving, the reply, and a subscribe reply's list */
    struct mx_msg_presence p = {.h = {.room = ROOM, .roomlen = sizeof(ROOM) - 1}, .client = "c2",
                                .clientlen = 2, .conn = 8, .state = "{\"editing\":\"x\"}",
                                .statelen = 15};
    mx_proto_presence(&b, &p);
    ck_documented(&b);
    p.state = NULL;
    mx_proto_presence(&b, &p);
    ck_documented(&b);
    mx_proto_presence_ok(&b, &(struct mx_msg_head)HEAD(9));
    ck_documented(&b);
    p.state = "{\"editing\":\"x\"}";
    mx_buf list;
    mx_buf_init(&list, 0);
    mx_buf_putc(&list, '[');
    mx_proto_presence_entry(&list, &p);
    mx_buf_putc(&list, ']');
    js = parse("{}");
    state = mx_json_from_jansson(js, 0, &why);
    json_decref(js);
    mx_proto_snapshot(&b, &(struct mx_msg_snapshot){.h = HEAD(2), .seq = 0, .checksum = SUM_A, .next_n = 1,
                                                    .state = state, .presence = mx_buf_data(&list),
                                                    .presencelen = list.len});
    mx_json_free(state);
    mx_buf_free(&list);
    ck_documented(&b);
}
END_TEST

START_TEST(optional_fields_absent_when_zero)
{
    /* no id, no room, no duplicate: the fields are left out, not null */
    mx_buf b;
    mx_buf_init(&b, 0);
    mx_proto_pong(&b, &(struct mx_msg_head){0});
    ck_assert_str_eq(mx_buf_data(&b), "{\"type\":\"pong\"}");
    mx_buf_reset(&b);
    /* a reject without a message carries the code's fixed text */
    mx_proto_reject(&b, &(struct mx_msg_reject){.n = 1, .code = MX_ESTALE, .checksum = SUM_A});
    json_t *j = parse(mx_buf_data(&b));
    ck_assert_str_eq(json_string_value(json_object_get(j, "message")), mx_err_message(MX_ESTALE));
    ck_assert_ptr_null(json_object_get(j, "duplicate"));
    ck_assert_ptr_null(json_object_get(j, "id"));
    json_decref(j);
    mx_buf_reset(&b);
    /* an entry with effects carries them last */
    json_t *action = parse("{\"type\":\"add\",\"payload\":1}");
    json_t *effects = parse("[{\"op\":\"add\",\"path\":\"/x\",\"value\":1}]");
    struct mx_msg_entry m = {.seq = 1, .checksum = SUM_B, .action = action, .client = "c",
                             .clientlen = 1, .n = 1, .effects = effects};
    ck_assert_int_eq(mx_proto_entry(&b, &m), 0);
    ck_assert_str_eq(mx_buf_data(&b),
                     "{\"seq\":1,\"checksum\":\"101112131415161718191a1b1c1d1e1f\","
                     "\"action\":{\"type\":\"add\",\"payload\":1},\"client\":\"c\",\"n\":1,"
                     "\"effects\":[{\"op\":\"add\",\"path\":\"/x\",\"value\":1}]}");
    mx_buf_reset(&b);
    mx_proto_ack(&b, &(struct mx_msg_ack){.n = 1, .seq = 1, .prev = SUM_A, .checksum = SUM_B,
                                          .effects = effects});
    ck_assert_str_eq(mx_buf_data(&b),
                     "{\"type\":\"ack\",\"n\":1,\"seq\":1,\"prev\":\"000102030405060708090a0b0c0d0e0f\","
                     "\"checksum\":\"101112131415161718191a1b1c1d1e1f\","
                     "\"effects\":[{\"op\":\"add\",\"path\":\"/x\",\"value\":1}]}");
    json_decref(action);
    json_decref(effects);
    mx_buf_free(&b);
}
END_TEST

START_TEST(broken_inputs_never_make_a_message)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    /* a fwd of something that is not an encoded entry */
    mx_proto_fwd(&b, &(struct mx_msg_fwd){.prev = SUM_A, .entry = "x", .entrylen = 1});
    ck_assert_int_eq(b.oom, 1);
    mx_buf_free(&b);
    /* actions over a range the log does not hold */
    mx_oplog *log = mx_oplog_new(4);
    mx_buf_init(&b, 0);
    mx_proto_actions(&b, &(struct mx_msg_actions){.from = 0, .to = 2, .log = log});
    ck_assert_int_eq(b.oom, 1);
    mx_buf_free(&b);
    mx_oplog_free(log);
}
END_TEST

/* ---- decoding: dep arrays and presence ---- */

static int decode(const char *text, struct mx_request *q, char *why)
{
    json_t *j = parse(text);
    int rc = mx_proto_decode(j, q, why, 200);
    json_decref(j); /* (q's borrowed values are not used after this) */
    return rc;
}

START_TEST(decode_dep_forms)
{
    struct mx_request q;
    char why[200];
    const char *act = "\"action\":{\"type\":\"patch\",\"payload\":[]}";
    char msg[400];
    snprintf(msg, sizeof(msg), "{\"type\":\"action\",\"id\":1,\"room\":\"t:a\",\"n\":9,\"dep\":7,%s}", act);
    ck_assert_int_eq(decode(msg, &q, why), 0);
    ck_assert_uint_eq(q.ndeps, 1);
    ck_assert_uint_eq(q.deps[0], 7);
    snprintf(msg, sizeof(msg), "{\"type\":\"action\",\"id\":1,\"room\":\"t:a\",\"n\":9,\"dep\":[3,8,1],%s}", act);
    ck_assert_int_eq(decode(msg, &q, why), 0);
    ck_assert_uint_eq(q.ndeps, 3);
    ck_assert_uint_eq(q.deps[1], 8);
    snprintf(msg, sizeof(msg), "{\"type\":\"action\",\"id\":1,\"room\":\"t:a\",\"n\":9,\"dep\":[],%s}", act);
    ck_assert_int_eq(decode(msg, &q, why), 0);
    ck_assert_uint_eq(q.ndeps, 0);
    const char *bad[] = {"[9]", "[0]", "[1,\"2\"]", "[1.5]", "{}", "[[1]]",
                         "[1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(msg, sizeof(msg), "{\"type\":\"action\",\"id\":1,\"room\":\"t:a\",\"n\":9,\"dep\":%s,%s}",
                 bad[i], act);
        ck_assert_msg(decode(msg, &q, why) == MX_EBAD_REQUEST, "dep %s accepted", bad[i]);
        ck_assert_int_eq(q.has_id, 1);
    }
    /* sixteen is the bound */
    snprintf(msg, sizeof(msg), "{\"type\":\"action\",\"id\":1,\"room\":\"t:a\",\"n\":99,"
             "\"dep\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],%s}", act);
    ck_assert_int_eq(decode(msg, &q, why), 0);
    ck_assert_uint_eq(q.ndeps, MX_DEPS_MAX);
}
END_TEST

/* The flat list's decoder reads the members once into slots by name
 * (proto.c key_slot): it must decode exactly as the object does, names
 * that differ only in one letter or in length included. */
START_TEST(decode_top_same_as_object)
{
    static const char *msgs[] = {
        "{\"type\":\"hello\",\"client\":\"c1\",\"token\":\"t\"}",
        "{\"token\":\"t\",\"client\":\"c1\",\"type\":\"hello\",\"clients\":1,\"tokens\":2}",
        "{\"type\":\"subscribe\",\"id\":3,\"room\":\"t:a\",\"since\":{\"seq\":2,\"checksum\":\"00\"}}",
        "{\"type\":\"subscribe\",\"id\":3,\"room\":\"t:a\",\"sinse\":5,\"rooms\":1}",
        "{\"type\":\"sync\",\"id\":4,\"room\":\"t:a\"}",
        "{\"type\":\"get\",\"id\":5,\"room\":\"t:a\",\"ids\":1,\"i\":2}",
        "{\"type\":\"create\",\"id\":6,\"room\":\"t:a\",\"state\":{\"x\":1},\"stats\":1}",
        "{\"type\":\"presence\",\"id\":7,\"room\":\"t:a\",\"stale\":1}",
        "{\"type\":\"action\",\"id\":8,\"room\":\"t:a\",\"n\":2,\"base\":1,\"strict\":true,"
        "\"dep\":[1],\"action\":{\"type\":\"x\"}}",
        "{\"type\":\"action\",\"id\":8,\"room\":\"t:a\",\"n\":2,\"bass\":1,\"strict\":true,"
        "\"action\":{\"type\":\"x\"}}",
        "{\"type\":\"action\",\"id\":8,\"room\":\"t:a\",\"m\":2,\"dip\":3,\"strikt\":1,\"acti0n\":{}}",
        "{\"tipe\":\"action\",\"id\":8}",
        "{\"type\":\"ping\",\"id\":9,\"ib\":1,\"typo\":2,\"roam\":3,\"bade\":4,\"tolen\":5,\"slate\":6,"
        "\"strixt\":7,\"actiom\":8,\"clienq\":9}",
        "{\"type\":\"unsubscribe\",\"id\":10,\"room\":\"t:a\"}",
        "{\"type\":\"nope\",\"id\":11}",
    };
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        struct mx_request a, b;
        char wa[200] = "", wb[200] = "";
        json_t *j = parse(msgs[i]);
        int ra = mx_proto_decode(j, &a, wa, sizeof wa);
        struct mx_json_top top;
        int d;
        ck_assert_int_eq(mx_json_parse_top(msgs[i], strlen(msgs[i]), &top, &d, NULL), MX_JP_OK);
        int rb = mx_proto_decode_top(&top, &b, wb, sizeof wb);
        ck_assert_msg(ra == rb, "%s: %d vs %d", msgs[i], ra, rb);
        ck_assert_str_eq(wa, wb);
        ck_assert_int_eq(a.type, b.type);
        ck_assert_int_eq(a.has_id, b.has_id);
        ck_assert_uint_eq(a.id, b.id);
        ck_assert_uint_eq(a.roomlen, b.roomlen);
        ck_assert(!a.room == !b.room && (!a.room || !memcmp(a.room, b.room, a.roomlen)));
        ck_assert(!a.client == !b.client && (!a.client || !strcmp(a.client, b.client)));
        ck_assert(!a.token == !b.token && (!a.token || !strcmp(a.token, b.token)));
        ck_assert_uint_eq(a.n, b.n);
        ck_assert_int_eq(a.has_base, b.has_base);
        ck_assert_uint_eq(a.base, b.base);
        ck_assert_int_eq(a.strict, b.strict);
        ck_assert_uint_eq(a.ndeps, b.ndeps);
        ck_assert(!a.action == !b.action);
        ck_assert(!a.state == !b.state);
        ck_assert(!a.presence == !b.presence);
        ck_assert(memcmp(&a.since, &b.since, sizeof a.since) == 0);
        mx_json_top_free(&top);
        json_decref(j);
    }
}
END_TEST

START_TEST(decode_presence)
{
    struct mx_request q;
    char why[200];
    ck_assert_int_eq(decode("{\"type\":\"presence\",\"id\":2,\"room\":\"t:a\",\"state\":{\"x\":1}}", &q, why), 0);
    ck_assert_int_eq(q.type, MX_REQ_PRESENCE);
    ck_assert_int_eq(decode("{\"type\":\"presence\",\"id\":2,\"room\":\"t:a\",\"state\":null}", &q, why), 0);
    ck_assert_int_eq(decode("{\"type\":\"presence\",\"id\":2,\"room\":\"t:a\"}", &q, why), MX_EBAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(why, "\"state\" is required"));
    ck_assert_int_eq(decode("{\"type\":\"presence\",\"room\":\"t:a\",\"state\":1}", &q, why), MX_EBAD_REQUEST);
    ck_assert_int_eq(decode("{\"type\":\"presence\",\"id\":2,\"room\":\"\",\"state\":1}", &q, why), MX_EBAD_ROOM);
}
END_TEST

/* mx_proto_field_hex keeps the hex of the last few checksums (an action's
 * checksum goes out up to four times): whatever the order of digests -
 * repeats, the last few again, long-gone ones, digests one bit apart - the
 * text is always the digest's own hex. */
START_TEST(checksum_hex_kept_is_always_its_own)
{
    uint8_t d[64][MX_DIGEST_LEN];
    uint32_t x = 12345;
    for (int i = 0; i < 64; i++)
        for (int k = 0; k < MX_DIGEST_LEN; k++) {
            x = x * 1103515245u + 12345u;
            d[i][k] = (uint8_t)(x >> 16);
        }
    memcpy(d[1], d[0], MX_DIGEST_LEN);
    d[1][MX_DIGEST_LEN - 1] ^= 1; /* one bit from d[0] */
    for (int step = 0; step < 5000; step++) {
        x = x * 1103515245u + 12345u;
        int i = (x >> 16) % 8 < 6 ? (int)((x >> 8) % 6) : (int)((x >> 8) % 64);
        mx_buf b;
        mx_buf_init(&b, 0);
        mx_proto_field_hex(&b, "checksum", d[i]);
        char want[2 * MX_DIGEST_LEN + 16] = ",\"checksum\":\"";
        char *w = want + strlen(want);
        for (int k = 0; k < MX_DIGEST_LEN; k++)
            w += sprintf(w, "%02x", d[i][k]);
        strcat(want, "\"");
        ck_assert_str_eq(mx_buf_data(&b), want);
        mx_buf_free(&b);
    }
}
END_TEST

/* A head with the room's field made once (mx_room.room_field, what
 * mx_room_new builds with mx_proto_field_str) encodes byte for byte as a
 * head that escapes the room each time. */
START_TEST(room_field_made_once_is_the_same_bytes)
{
    const char *room = "game:lobby-1.x_y";
    mx_buf f, a, b;
    mx_buf_init(&f, 0);
    mx_buf_init(&a, 0);
    mx_buf_init(&b, 0);
    mx_proto_field_str(&f, "room", room, strlen(room));
    ck_assert_str_eq(mx_buf_data(&f), ",\"room\":\"game:lobby-1.x_y\"");
    uint8_t p[MX_DIGEST_LEN] = {1}, c[MX_DIGEST_LEN] = {2};
    struct mx_msg_ack m = {.h = {.has_id = 1, .id = 9, .room = room, .roomlen = strlen(room)},
                           .n = 3, .seq = 4, .prev = p, .checksum = c};
    mx_proto_ack(&a, &m);
    m.h.room_field = mx_buf_data(&f);
    m.h.room_fieldlen = f.len;
    mx_proto_ack(&b, &m);
    ck_assert_str_eq(mx_buf_data(&a), mx_buf_data(&b));
    mx_buf_free(&f);
    mx_buf_free(&a);
    mx_buf_free(&b);
}
END_TEST

Suite *mx_suite_proto(void)
{
    Suite *s = suite_create("proto");
    TCase *tc = tcase_create("error_utf8");
    tcase_add_test(tc, valid_text_unchanged);
    tcase_add_test(tc, invalid_sequences_replaced);
    tcase_add_test(tc, every_byte_and_random_bytes);
    suite_add_tcase(s, tc);
    TCase *enc = tcase_create("encoders");
    tcase_add_test(enc, each_message_as_documented);
    tcase_add_test(enc, optional_fields_absent_when_zero);
    tcase_add_test(enc, broken_inputs_never_make_a_message);
    tcase_add_test(enc, checksum_hex_kept_is_always_its_own);
    tcase_add_test(enc, room_field_made_once_is_the_same_bytes);
    suite_add_tcase(s, enc);
    TCase *dec = tcase_create("decode");
    tcase_add_test(dec, decode_dep_forms);
    tcase_add_test(dec, decode_presence);
    tcase_add_test(dec, decode_top_same_as_object);
    suite_add_tcase(s, dec);
    return s;
}
