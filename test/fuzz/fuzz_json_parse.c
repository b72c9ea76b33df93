/* fuzz_json_parse.c - libFuzzer harness for the fast JSON parser
 * (json_parse.c) against jansson, the parser it stands in for.
 *
 * Oracle (json_parse.h's contract), on every input:
 *  - MX_JP_OK only if json_loadb(JSON_REJECT_DUPLICATES |
 *    JSON_DECODE_INT_AS_REAL) accepts the input too, and then the two
 *    trees are the same bit for bit (mx_test_json_same: types, double
 *    bits, string bytes, member order) and the reported depth is
 *    mx_json_depth's;
 *  - otherwise MX_JP_FALLBACK (no allocation fails here) and no tree.
 *  - the raw text it hands back for a top-level member (asked for each
 *    member in turn) is exactly mx_json_dump_jansson's encoding of it.
 * So whatever the daemon is sent, it accepts and refuses exactly what
 * jansson alone did, with jansson's error texts, and a log entry that
 * copies a client's action holds what encoding it would have written.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../unit/json_same.h"
#include "movexd/json.h"
#include "movexd/json_parse.h"

#define MAX_INPUT_BYTES (64 * 1024)

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_json_parse: check failed: %s: ", #cond);     \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT_BYTES)
        return 0;
    const char *buf = (const char *)data;
    json_t *fast = NULL;
    int depth = -1;
    int st = mx_json_parse(buf, size, &fast, &depth, NULL);
    json_error_t err;
    json_t *ref = json_loadb(buf, size, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);
    if (st == MX_JP_OK) {
        CHECK(ref != NULL, "accepted what jansson refuses: %s", err.text);
        CHECK(mx_test_json_same(fast, ref), "the trees differ");
        CHECK(depth == mx_json_depth(ref, 1 << 20), "depth %d, jansson's tree %d", depth,
              mx_json_depth(ref, 1 << 20));
        /* the raw text of each top-level member, when given, is exactly what
         * mx_json_dump_jansson writes for it */
        if (json_is_object(ref)) {
            const char *k;
            size_t kn;
            json_t *v;
            json_object_keylen_foreach(ref, k, kn, v)
            {
                struct mx_json_raw raw = {.key = k, .keylen = kn};
                json_t *again = NULL;
                int d2;
                CHECK(mx_json_parse(buf, size, &again, &d2, &raw) == MX_JP_OK, "second parse");
                json_decref(again);
                if (!raw.text)
                    continue;
                mx_buf b;
                mx_buf_init(&b, 0);
                CHECK(mx_json_dump_jansson(v, &b) == 0, "dump");
                CHECK(b.len == raw.len && memcmp(mx_buf_data(&b), raw.text, b.len) == 0,
                      "raw text of \"%.*s\" (%zu bytes) is not its encoding (%zu bytes)", (int)kn, k,
                      raw.len, b.len);
                mx_buf_free(&b);
            }
        }
    } else {
        CHECK(st == MX_JP_FALLBACK, "status %d", st);
        CHECK(fast == NULL, "a tree with status %d", st);
    }
    /* the flat top level: only where the whole-tree parse gives an object,
     * and then its members, in order, with the same values, depth and raw
     * text of "action" */
    struct mx_json_top top;
    struct mx_json_raw rt = {.key = "action", .keylen = 6}, rf = rt;
    int dt = -1;
    int stt = mx_json_parse_top(buf, size, &top, &dt, &rt);
    if (stt == MX_JP_OK) {
        json_t *whole = NULL;
        int dw = -1;
        CHECK(mx_json_parse(buf, size, &whole, &dw, &rf) == MX_JP_OK, "top handled, tree not");
        CHECK(json_is_object(whole) && json_object_size(whole) == top.n, "member count");
        size_t i = 0;
        const char *k;
        size_t kn;
        json_t *v;
        json_object_keylen_foreach(whole, k, kn, v)
        {
            CHECK(top.m[i].keylen == kn && memcmp(top.m[i].key, k, kn) == 0, "key %zu", i);
            CHECK(mx_test_json_same(top.m[i].val, v), "value of key %zu", i);
            i++;
        }
        CHECK(dt == dw, "depth %d vs %d", dt, dw);
        CHECK(rt.len == rf.len && (rt.text == NULL) == (rf.text == NULL) &&
                  (!rt.text || memcmp(rt.text, rf.text, rt.len) == 0),
              "raw action text");
        json_decref(whole);
        mx_json_top_free(&top);
    } else {
        CHECK(stt == MX_JP_FALLBACK, "top status %d", stt);
        CHECK(top.n == 0 && rt.text == NULL, "a list with status %d", stt);
    }
    json_decref(fast);
    json_decref(ref);
    return 0;
}
