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
 *  - mx_json_parse_action's patch view of "action" is that member's tree
 *    and applies as it does (check_view).
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
#include "movexd/patch.h"

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

/* mx_json_parse_action (the "action" member as a patch view, patch.h):
 * handled exactly where the flat top level is (stt); where it made a view,
 * the view's source text parses to the tree of "action", whose payload
 * holds the view's ops member for member and nothing else, and the view
 * applies to a document exactly as that payload does. */
static void check_view(const char *buf, size_t size, int stt)
{
    struct mx_json_top top;
    struct mx_patch_view view;
    int d = -1;
    int st = mx_json_parse_action(buf, size, &top, &d, NULL, &view);
    CHECK(st == stt, "view status %d, top status %d", st, stt);
    if (st != MX_JP_OK || !top.view) {
        CHECK(!top.view, "a view with status %d", st);
        if (st == MX_JP_OK)
            mx_json_top_free(&top);
        return;
    }
    json_t *action = NULL;
    int da;
    CHECK(mx_json_parse(view.src, view.srclen, &action, &da, NULL) == MX_JP_OK, "view source");
    const json_t *payload = json_object_get(action, "payload");
    CHECK(json_object_size(action) == 2 && json_is_array(payload) && json_array_size(payload) == view.n &&
              !strcmp(json_string_value(json_object_get(action, "type")), "patch"),
          "view shape");
    for (size_t i = 0; i < view.n; i++) {
        const json_t *op = json_array_get(payload, i);
        const char *names[] = {"op", "path", "from"};
        const char *vals[] = {view.op[i].op, view.op[i].path, view.op[i].from};
        size_t members = 0;
        for (int k = 0; k < 3; k++) {
            const json_t *m = json_object_get(op, names[k]);
            CHECK(!vals[k] == !m, "op %zu: %s present in one only", i, names[k]);
            if (!vals[k])
                continue;
            members++;
            CHECK(json_is_string(m) && json_string_length(m) == strlen(vals[k]) &&
                      !strcmp(json_string_value(m), vals[k]),
                  "op %zu: %s differs", i, names[k]);
        }
        const json_t *v = json_object_get(op, "value");
        CHECK(!v == !view.op[i].value && (!v || mx_test_json_same(v, view.op[i].value)), "op %zu value", i);
        members += v != NULL;
        CHECK(json_object_size(op) == members, "op %zu has other members", i);
    }
    static const char *doc = "{\"count\":1,\"a\":[1,{\"b\":[null]}],\"o\":{\"k\":\"v\"}}";
    mx_val *d1 = NULL, *d2 = NULL;
    json_t *dj = json_loads(doc, JSON_DECODE_INT_AS_REAL, NULL);
    d1 = mx_json_from_jansson(dj, 0, NULL);
    d2 = mx_json_from_jansson(dj, 0, NULL);
    json_decref(dj);
    mx_patch_limits lim = {.max_depth = 4, .max_ops = 6};
    mx_patch_error e1, e2;
    int r1 = mx_patch_apply(&d1, payload, &lim, NULL, &e1);
    int r2 = mx_patch_apply_view(&d2, &view, &lim, NULL, &e2);
    CHECK(r1 == r2 && e1.code == e2.code && e1.op_index == e2.op_index && !strcmp(e1.message, e2.message),
          "apply: %d \"%s\" vs %d \"%s\"", r1, e1.message, r2, e2.message);
    CHECK(mx_json_equal(d1, d2), "documents differ after the patch");
    mx_json_free(d1);
    mx_json_free(d2);
    json_decref(action);
    mx_json_top_free(&top);
}

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
    check_view(buf, size, stt);
    json_decref(fast);
    json_decref(ref);
    return 0;
}
