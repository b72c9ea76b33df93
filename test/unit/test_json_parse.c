/* Unit tests for json_parse.c, the fast path of inbound JSON. Its contract
 * (json_parse.h): a tree only for input jansson accepts, and then jansson's
 * very tree (mx_test_json_same: types, double bits, string bytes, member
 * order); everything else falls back to jansson. The tables walk the
 * boundaries of numbers, strings, escapes, UTF-8, duplicates and depth; the
 * mutation test checks the contract on ~30k corrupted protocol messages;
 * the allocation test (fault-injection builds) makes each allocation fail
 * in turn. test/fuzz/fuzz_json_parse.c checks the same contract with
 * libFuzzer. Every input also goes through mx_json_parse_top, the flat
 * top level (check_top): handled only where the tree is an object, and
 * then its members in order with the same values, depth and raw text. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json_same.h"
#include "movexd/alloc.h"
#include "movexd/buf.h"
#include "movexd/json.h"
#include "movexd/json_parse.h"

#define FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL)

/* mx_json_parse_top on the same input: against the whole-tree parse
 * (fast, st, depth, raw: what check_one got). Returns its status. */
static int check_top(const char *buf, size_t len, int st, const json_t *fast, int depth,
                     const struct mx_json_raw *raw)
{
    struct mx_json_top top;
    struct mx_json_raw rt = {.key = "action", .keylen = 6};
    int dt = -1;
    int stt = mx_json_parse_top(buf, len, &top, &dt, &rt);
    if (stt != MX_JP_OK) {
        ck_assert_int_eq(stt, MX_JP_FALLBACK);
        ck_assert_uint_eq(top.n, 0);
        ck_assert_ptr_null(rt.text);
        return stt;
    }
    ck_assert_msg(st == MX_JP_OK && json_is_object(fast), "top handled what the tree did not: %.*s", (int)len,
                  buf);
    ck_assert_uint_eq(top.n, json_object_size(fast));
    size_t i = 0;
    const char *k;
    size_t kn;
    json_t *v;
    json_object_keylen_foreach((json_t *)fast, k, kn, v)
    {
        ck_assert_msg(top.m[i].keylen == kn && memcmp(top.m[i].key, k, kn) == 0, "key %zu of %.*s", i,
                      (int)len, buf);
        ck_assert_msg(mx_test_json_same(top.m[i].val, v), "value %zu of %.*s", i, (int)len, buf);
        ck_assert_ptr_eq(mx_json_top_get(&top, k), top.m[i].val);
        i++;
    }
    ck_assert_ptr_null(mx_json_top_get(&top, "no such key"));
    ck_assert_int_eq(dt, depth);
    ck_assert_uint_eq(rt.len, raw->len);
    ck_assert(!rt.text == !raw->text && (!rt.text || memcmp(rt.text, raw->text, rt.len) == 0));
    mx_json_top_free(&top);
    ck_assert_uint_eq(top.n, 0);
    return stt;
}

/* Parse with both; the contract must hold. Returns the fast status. */
static int check_one(const char *buf, size_t len)
{
    json_t *fast = NULL;
    int depth = -1;
    struct mx_json_raw raw = {.key = "action", .keylen = 6};
    int st = mx_json_parse(buf, len, &fast, &depth, &raw);
    json_error_t err;
    json_t *ref = json_loadb(buf, len, FLAGS, &err);
    if (st == MX_JP_OK) {
        ck_assert_msg(ref != NULL, "fast parser accepted what jansson refuses (%s): %.*s", err.text,
                      (int)len, buf);
        ck_assert_msg(mx_test_json_same(fast, ref), "trees differ for: %.*s", (int)len, buf);
        ck_assert_int_eq(depth, mx_json_depth(ref, 1 << 20));
        if (raw.text) { /* exactly the encoding of the member */
            mx_buf b;
            mx_buf_init(&b, 0);
            ck_assert_int_eq(mx_json_dump_jansson(json_object_get(ref, "action"), &b), 0);
            ck_assert_msg(b.len == raw.len && memcmp(mx_buf_data(&b), raw.text, b.len) == 0,
                          "raw action text differs from its encoding in: %.*s", (int)len, buf);
            mx_buf_free(&b);
        }
    } else {
        ck_assert_ptr_null(raw.text);
        ck_assert_ptr_null(fast);
        ck_assert_int_eq(st, MX_JP_FALLBACK);
    }
    check_top(buf, len, st, fast, depth, &raw);
    json_decref(fast);
    json_decref(ref);
    return st;
}

static int check_str(const char *s) { return check_one(s, strlen(s)); }

START_TEST(handled_like_jansson)
{
    static const char *const ok[] = {
        "{\"type\":\"action\",\"id\":1,\"room\":\"bench:r0\",\"n\":1,\"action\":{\"type\":\"patch\","
        "\"payload\":[{\"op\":\"inc\",\"path\":\"/count\",\"value\":1}]}}",
        "{}", "[]", " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } }\n ", "[[[[]]]]",
        "{\"a\":true,\"b\":false,\"c\":null}", "[true,false,null]",
        /* numbers: exact integers by hand, everything else through strtod */
        "[0,-0,1,-1,123456789012345,-123456789012345,1234567890123456,99999999999999999999]",
        "[9007199254740993,18446744073709551616,1e2,1E2,1e+2,1e-2,-1.5e-3,0.1,0.30000000000000004]",
        "[1e308,-1e308,1e-400,2.2250738585072014e-308,4.9e-324,0.0,-0.0,1.7976931348623157e308]",
        "[123.456e7,0e0,-0e-0,10,100000000000000]",
        /* strings */
        "{\"\":\"\"}", "[\"a b ~!@#$%^&*()_+-={}[]|:;'<>?,./`\"]",
        "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\",\"x\\ny\",\"\\/\\/\"]",
        "{\"k\\ney\":1,\"k\\tey\":2}",
        "[\"caf\xc3\xa9\",\"\xe2\x82\xac\",\"\xf0\x9f\x98\x80\",\"\xed\x9f\xbf\",\"\xee\x80\x80\",\"\xf4\x8f\xbf\xbf\"]",
        "{\"\xc3\xa9\":1,\"\xe2\x82\xac\":2}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        ck_assert_msg(check_str(ok[i]) == MX_JP_OK, "not handled: %s", ok[i]);
    /* a long escaped key (decoded on the heap) and a long escaped value */
    char big[1024];
    size_t n = (size_t)snprintf(big, sizeof(big), "{\"");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "a\\n");
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\":\"");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "\\tb");
    snprintf(big + n, sizeof(big) - n, "\"}");
    ck_assert_int_eq(check_str(big), MX_JP_OK);
    /* depth up to MX_JP_MAX_DEPTH is handled, one more falls back */
    char deep[2 * MX_JP_MAX_DEPTH + 8];
    for (int d = MX_JP_MAX_DEPTH; d <= MX_JP_MAX_DEPTH + 1; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        ck_assert_int_eq(check_one(deep, 2 * (size_t)d), d <= MX_JP_MAX_DEPTH ? MX_JP_OK : MX_JP_FALLBACK);
    }
}
END_TEST

/* The action's source text is handed back exactly when it is its own
 * encoding: the log entry then copies it instead of encoding it again. */
static const char *raw_action(const char *msg)
{
    static char got[256];
    json_t *j = NULL;
    int depth;
    struct mx_json_raw raw = {.key = "action", .keylen = 6};
    ck_assert_int_eq(mx_json_parse(msg, strlen(msg), &j, &depth, &raw), MX_JP_OK);
    json_decref(j);
    if (!raw.text)
        return NULL;
    snprintf(got, sizeof(got), "%.*s", (int)raw.len, raw.text);
    return got;
}

START_TEST(raw_action_text)
{
    const char *a = "{\"type\":\"patch\",\"payload\":[{\"op\":\"inc\",\"path\":\"/count\",\"value\":1}]}";
    char msg[512];
    snprintf(msg, sizeof(msg), "{\"type\":\"action\",\"id\":1,\"room\":\"r\",\"n\":1,\"action\":%s}", a);
    ck_assert_str_eq(raw_action(msg), a);
    /* whitespace outside the action does not matter */
    snprintf(msg, sizeof(msg), "{ \"action\" : %s , \"n\":1 }", a);
    ck_assert_str_eq(raw_action(msg), a);
    /* escapes that encode back the same, UTF-8, negative and long-ish integers */
    ck_assert_str_eq(raw_action("{\"action\":{\"s\":\"a\\\"b\\\\c\\n\xc3\xa9\",\"k\":[-5,0,123456789012345,true,null,{}]}}"),
                     "{\"s\":\"a\\\"b\\\\c\\n\xc3\xa9\",\"k\":[-5,0,123456789012345,true,null,{}]}");
    /* not its own encoding: re-encoded by the log entry instead */
    static const char *const not_raw[] = {
        "{\"action\":{\"a\": 1}}", "{\"action\":{\"a\":1 }}", "{\"action\":[1,\n2]}",
        "{\"action\":{\"p\":\"\\/x\"}}", "{\"action\":[1.5]}", "{\"action\":[1e2]}", "{\"action\":[-0]}",
        "{\"action\":[1.0]}", "{\"action\":[1234567890123456]}", "{\"other\":1}", "[{\"action\":1}]",
        "{\"x\":{\"action\":1}}",
    };
    for (size_t i = 0; i < sizeof(not_raw) / sizeof(not_raw[0]); i++)
        ck_assert_msg(raw_action(not_raw[i]) == NULL, "raw text for %s", not_raw[i]);
}
END_TEST

START_TEST(falls_back_to_jansson)
{
    static const char *const fb[] = {
        /* not handled here, valid for jansson */
        "[\"\\u0041\"]", "{\"\\u00e9\":1}", "[\"\\ud83d\\ude00\"]", "[1e1000000000000000000]",
        /* errors: jansson's message stands */
        "", " ", "1", "\"s\"", "true", "null", "{", "[", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]",
        "[,1]", "{\"a\":1 \"b\":2}", "{a:1}", "{'a':1}", "{\"a\":1}}", "{\"a\":1} x", "[1][2]",
        "{\"a\":1,\"a\":2}", "{\"a\":{\"b\":1,\"b\":1}}", "[01]", "[-]", "[-a]", "[1.]", "[.5]",
        "[1e]", "[1e+]", "[+1]", "[1.5.3]", "[0x10]", "[Infinity]", "[NaN]", "[1e400]", "[-1e400]",
        "[tru]", "[truex]", "[nul]", "[True]", "[true1]", "[\"a\tb\"]", "[\"a\nb\"]", "[\"\\x\"]",
        "[\"\\u12\"]", "[\"\\", "[\"abc", "[\"\xc3\"]", "[\"\xc0\xaf\"]", "[\"\xe0\x80\xaf\"]",
        "[\"\xed\xa0\x80\"]", "[\"\xf4\x90\x80\x80\"]", "[\"\xf5\x80\x80\x80\"]", "[\"\x80\"]",
        "[\"\xff\"]", "[\xc3\xa9]", "{\"a\":1}\xc3\xa9", "/*c*/{}", "{}//",
    };
    for (size_t i = 0; i < sizeof(fb) / sizeof(fb[0]); i++)
        ck_assert_msg(check_str(fb[i]) == MX_JP_FALLBACK, "handled, should fall back: %s", fb[i]);
    /* a number longer than the parser's 127-byte token buffer: strtod's
     * business through jansson */
    char num[300] = "[0.";
    memset(num + 3, '0', 200);
    strcpy(num + 203, "1]");
    ck_assert_int_eq(check_str(num), MX_JP_FALLBACK);
    /* a NUL byte anywhere */
    ck_assert_int_eq(check_one("{\"a\":\"x\0y\"}", 11), MX_JP_FALLBACK);
    ck_assert_int_eq(check_one("{\"a\":1}\0", 8), MX_JP_FALLBACK);
    ck_assert_int_eq(check_one("{\"a\":1\0}", 8), MX_JP_FALLBACK);
}
END_TEST

/* The flat top level handles the requests clients send and leaves to the
 * whole tree what its list does not hold: an escaped key, more than
 * MX_JP_TOP_MAX members; duplicates and non-objects fall back as before. */
START_TEST(top_level_as_a_list)
{
    static const char *const handled[] = {
        "{}",
        " {\"type\":\"ping\",\"id\":7} ",
        "{\"type\":\"action\",\"id\":4,\"room\":\"todo:a\",\"n\":17,\"base\":5,\"dep\":[15,16],"
        "\"action\":{\"type\":\"patch\",\"payload\":[{\"op\":\"inc\",\"path\":\"/n\",\"value\":1}]}}",
        "{\"type\":\"subscribe\",\"id\":2,\"room\":\"todo:a\",\"since\":{\"seq\":5,\"checksum\":\"ab\"}}",
        "{\"k\\u00e9\":1}", /* not handled: a \\u escape in a key falls back for both */
    };
    for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
        struct mx_json_top top;
        int d;
        int st = mx_json_parse_top(handled[i], strlen(handled[i]), &top, &d, NULL);
        int want = i + 1 < sizeof(handled) / sizeof(handled[0]) ? MX_JP_OK : MX_JP_FALLBACK;
        ck_assert_int_eq(st, want);
        mx_json_top_free(&top);
        check_str(handled[i]);
    }
    struct mx_json_top top;
    int d;
    const char *esc = "{\"a\\tb\":1,\"id\":2}"; /* the tree handles it; the list does not */
    ck_assert_int_eq(check_str(esc), MX_JP_OK);
    ck_assert_int_eq(mx_json_parse_top(esc, strlen(esc), &top, &d, NULL), MX_JP_FALLBACK);
    char many[400] = "{";
    for (int i = 0; i <= MX_JP_TOP_MAX; i++) /* MX_JP_TOP_MAX + 1 members */
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s\"k%d\":%d", i ? "," : "", i, i);
    strcat(many, "}");
    ck_assert_int_eq(check_str(many), MX_JP_OK);
    ck_assert_int_eq(mx_json_parse_top(many, strlen(many), &top, &d, NULL), MX_JP_FALLBACK);
    strcpy(strrchr(many, ',') , "}"); /* exactly MX_JP_TOP_MAX */
    ck_assert_int_eq(mx_json_parse_top(many, strlen(many), &top, &d, NULL), MX_JP_OK);
    ck_assert_uint_eq(top.n, MX_JP_TOP_MAX);
    mx_json_top_free(&top);
    static const char *const fb[] = {"[1]", "{\"a\":1,\"a\":2}", "{\"a\":1,\"b\":{\"c\":1,\"c\":2}}",
                                     "{\"a\":1} x", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":1"};
    for (size_t i = 0; i < sizeof(fb) / sizeof(fb[0]); i++) {
        ck_assert_int_eq(mx_json_parse_top(fb[i], strlen(fb[i]), &top, &d, NULL), MX_JP_FALLBACK);
        ck_assert_uint_eq(top.n, 0);
    }
}
END_TEST

/* xorshift64*: a fixed sequence, so a failure reproduces */
static uint64_t rnd_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 2685821657736338717ull;
}

START_TEST(mutated_messages)
{
    static const char *const seeds[] = {
        "{\"type\":\"action\",\"id\":17,\"room\":\"game:1\",\"n\":17,\"base\":3,\"dep\":[1,2],"
        "\"action\":{\"type\":\"patch\",\"payload\":[{\"op\":\"add\",\"path\":\"/a\\/b\",\"value\":"
        "{\"x\":-1.25e-3,\"y\":[true,false,null],\"s\":\"caf\xc3\xa9\\n\"}}]}}",
        "{\"type\":\"subscribe\",\"id\":2,\"room\":\"r\",\"since\":{\"seq\":10,\"checksum\":"
        "\"00112233445566778899aabbccddeeff\"}}",
        "{\"type\":\"hello\",\"id\":1,\"client\":\"c-1\",\"token\":\"eyJ.x.y\"}",
        "[0,-0,1e2,123456789012345678,{\"\":[]}]",
    };
    static const char alphabet[] = "{}[]:,\"\\ -+.0123456789eEtrufalsn/\x80\xc3\xa9\xed\xf4";
    char buf[512];
    int handled = 0;
    for (int it = 0; it < 30000; it++) {
        const char *s = seeds[rnd() % (sizeof(seeds) / sizeof(seeds[0]))];
        size_t len = strlen(s);
        memcpy(buf, s, len);
        int edits = 1 + (int)(rnd() % 3);
        for (int k = 0; k < edits && len > 0; k++) {
            size_t at = (size_t)(rnd() % len);
            char ch = alphabet[rnd() % (sizeof(alphabet) - 1)];
            switch (rnd() % 4) {
            case 0: buf[at] = ch; break; /* replace */
            case 1: /* insert */
                if (len + 1 < sizeof(buf)) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = ch;
                    len++;
                }
                break;
            case 2: /* delete */
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            default: len = at; /* truncate */
            }
        }
        handled += check_one(buf, len) == MX_JP_OK;
    }
    /* many mutations keep the text valid (a digit for a digit, ...) */
    ck_assert_int_gt(handled, 1000);
}
END_TEST

#ifdef MX_FAULT_INJECTION
/* Each allocation the parser makes fails in turn: MX_JP_OOM, nothing
 * leaked (ASan), and the next attempt succeeds. */
START_TEST(allocation_failures)
{
    json_set_alloc_funcs(mx_json_malloc, mx_block_free);
    const char *msg = "{\"type\":\"action\",\"id\":1,\"room\":\"r\",\"n\":1,\"action\":{\"type\":\"patch\","
                      "\"payload\":[{\"op\":\"add\",\"path\":\"/k\",\"value\":\"a\\nb\"}]},"
                      "\"k\\tey\":[1.5,true]}";
    int failed = 0;
    for (uint64_t at = 1;; at++) {
        mx_alloc_fault_reset(at);
        mx_alloc_fault_enable(1);
        json_t *j = NULL;
        int depth;
        int st = mx_json_parse(msg, strlen(msg), &j, &depth, NULL);
        mx_alloc_fault_enable(0);
        if (!mx_alloc_fault_fired()) {
            ck_assert_int_eq(st, MX_JP_OK);
            json_decref(j);
            break;
        }
        ck_assert_int_eq(st, MX_JP_OOM);
        ck_assert_ptr_null(j);
        failed++;
    }
    mx_alloc_fault_reset(0);
    ck_assert_int_gt(failed, 10);
    /* the flat top level too (its keys have no escape) */
    const char *req = "{\"type\":\"action\",\"id\":1,\"room\":\"r\",\"n\":1,\"action\":{\"type\":"
                      "\"patch\",\"payload\":[{\"op\":\"add\",\"path\":\"/k\",\"value\":\"a\\nb\"}]}}";
    failed = 0;
    for (uint64_t at = 1;; at++) {
        mx_alloc_fault_reset(at);
        mx_alloc_fault_enable(1);
        struct mx_json_top top;
        int depth;
        int st = mx_json_parse_top(req, strlen(req), &top, &depth, NULL);
        mx_alloc_fault_enable(0);
        if (!mx_alloc_fault_fired()) {
            ck_assert_int_eq(st, MX_JP_OK);
            ck_assert_uint_eq(top.n, 5);
            mx_json_top_free(&top);
            break;
        }
        ck_assert_int_eq(st, MX_JP_OOM);
        ck_assert_uint_eq(top.n, 0);
        failed++;
    }
    mx_alloc_fault_reset(0);
    ck_assert_int_gt(failed, 10);
}
END_TEST
#endif

Suite *mx_suite_json_parse(void)
{
    Suite *s = suite_create("json_parse");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, handled_like_jansson);
    tcase_add_test(tc, falls_back_to_jansson);
    tcase_add_test(tc, top_level_as_a_list);
    tcase_add_test(tc, raw_action_text);
    tcase_add_test(tc, mutated_messages);
#ifdef MX_FAULT_INJECTION
    tcase_add_test(tc, allocation_failures);
#endif
    suite_add_tcase(s, tc);
    return s;
}
