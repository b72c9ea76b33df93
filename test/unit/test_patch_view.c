/* Unit tests for the patch view (patch.h, json_parse.h mx_json_parse_action):
 * an action's patch read straight from the message bytes must give exactly
 * what the jansson path gives. Differential, on three sources of input:
 *
 *  - every case of the shared patch vectors (test/vectors/patch.json), sent
 *    as an action message: same status, error code, op index and message,
 *    same resulting document, with and without limits;
 *  - a table of ill-formed ops (the patch engine's validation messages);
 *  - ~24k byte mutations of those messages: the parse with the view
 *    handles exactly what the flat parse handles, with the same members,
 *    depth and raw action text; where it made a view, the view is the
 *    action's tree (each op's members, nothing else) and applies as the
 *    tree does.
 *
 * The tree each view is compared with is the one mx_json_parse builds from
 * the same text (json_parse.h), which test_json_parse checks against
 * jansson's own parser. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json_same.h"
#include "movexd/err.h"
#include "movexd/json.h"
#include "movexd/json_parse.h"
#include "movexd/patch.h"
#include "test_rand.h"

#define JFLAGS (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES)

static const char *DOC = "{\"count\":1,\"a\":[1,2,{\"x\":[true,null]}],\"o\":{\"k\":\"v\",\"n\":2.5}}";

static mx_val *doc_of(const char *text)
{
    json_t *j = json_loads(text, JFLAGS, NULL);
    ck_assert_ptr_nonnull(j);
    mx_val *v = mx_json_from_jansson(j, 0, NULL);
    ck_assert_ptr_nonnull(v);
    json_decref(j);
    return v;
}

/* The view's ops are the tree's payload: the same op objects, member for
 * member (strings, or absent/not a string; the same value), nothing else. */
static void view_is_tree(const struct mx_patch_view *v, const json_t *action)
{
    ck_assert_str_eq(json_string_value(json_object_get(action, "type")), "patch");
    ck_assert_uint_eq(json_object_size(action), 2);
    const json_t *payload = json_object_get(action, "payload");
    ck_assert(json_is_array(payload));
    ck_assert_uint_eq(json_array_size(payload), v->n);
    for (size_t i = 0; i < v->n; i++) {
        const json_t *op = json_array_get(payload, i);
        ck_assert(json_is_object(op));
        size_t members = 0;
        const char *names[] = {"op", "path", "from"};
        const char *vals[] = {v->op[i].op, v->op[i].path, v->op[i].from};
        for (int k = 0; k < 3; k++) {
            const json_t *s = json_object_get(op, names[k]);
            if (!vals[k]) {
                ck_assert_ptr_null(s);
                continue;
            }
            members++;
            ck_assert(json_is_string(s));
            ck_assert_uint_eq(json_string_length(s), strlen(vals[k]));
            ck_assert_str_eq(json_string_value(s), vals[k]);
        }
        const json_t *val = json_object_get(op, "value");
        if (v->op[i].value) {
            members++;
            ck_assert(val && mx_test_json_same(val, v->op[i].value));
        } else {
            ck_assert_ptr_null(val);
        }
        ck_assert_uint_eq(json_object_size(op), members);
    }
}

/* Apply the view and the tree's payload to two copies of doc: the same
 * outcome, error and document. Returns the status. */
static int same_apply(const char *doc, const struct mx_patch_view *v, const json_t *payload,
                      const mx_patch_limits *lim)
{
    mx_val *d1 = doc_of(doc), *d2 = doc_of(doc);
    mx_patch_error e1, e2;
    mx_patch_undo *u1 = NULL, *u2 = NULL;
    int r1 = mx_patch_apply(&d1, payload, lim, &u1, &e1);
    int r2 = mx_patch_apply_view(&d2, v, lim, &u2, &e2);
    ck_assert_int_eq(r1, r2);
    ck_assert_int_eq(e1.code, e2.code);
    ck_assert_uint_eq(e1.op_index, e2.op_index);
    ck_assert_str_eq(e1.message, e2.message);
    ck_assert_msg(mx_json_equal(d1, d2), "documents differ after: %s", e1.message);
    if (!r1) {
        mx_patch_commit(u1);
        mx_patch_commit(u2);
    }
    mx_json_free(d1);
    mx_json_free(d2);
    return r1;
}

/* Parse msg both ways and compare everything. Returns 1 when a view was
 * made (and applied to doc like the tree), 0 otherwise. */
static int check_msg(const char *msg, size_t len, const char *doc)
{
    struct mx_json_top flat, viewed;
    struct mx_json_raw rf = {.key = "action", .keylen = 6}, rv = rf;
    struct mx_patch_view view;
    int df = -1, dv = -1;
    int sf = mx_json_parse_top(msg, len, &flat, &df, &rf);
    int sv = mx_json_parse_action(msg, len, &viewed, &dv, &rv, &view);
    ck_assert_msg(sf == sv, "status %d vs %d: %.*s", sf, sv, (int)len, msg);
    if (sf != MX_JP_OK) {
        ck_assert_ptr_null(viewed.view);
        ck_assert_uint_eq(viewed.n, 0);
        return 0;
    }
    ck_assert_int_eq(df, dv);
    ck_assert_uint_eq(rf.len, rv.len);
    ck_assert(rf.text == rv.text);
    ck_assert_uint_eq(flat.n, viewed.n);
    const json_t *action = NULL;
    for (size_t i = 0; i < flat.n; i++) {
        ck_assert(flat.m[i].keylen == viewed.m[i].keylen &&
                  !memcmp(flat.m[i].key, viewed.m[i].key, flat.m[i].keylen));
        if (!viewed.m[i].val) {
            ck_assert_ptr_eq(viewed.view, &view);
            ck_assert(flat.m[i].keylen == 6 && !memcmp(flat.m[i].key, "action", 6));
            action = flat.m[i].val;
            continue;
        }
        ck_assert(mx_test_json_same(flat.m[i].val, viewed.m[i].val));
    }
    int made = viewed.view != NULL;
    if (made) {
        ck_assert_ptr_nonnull(action);
        /* the tree the view's source text parses to is the action's */
        json_t *tree = NULL;
        int d;
        ck_assert_int_eq(mx_json_parse(view.src, view.srclen, &tree, &d, NULL), MX_JP_OK);
        ck_assert(mx_test_json_same(tree, action));
        json_decref(tree);
        view_is_tree(&view, action);
        const json_t *payload = json_object_get(action, "payload");
        same_apply(doc, &view, payload, NULL);
        same_apply(doc, &view, payload, &(mx_patch_limits){.max_depth = 3, .max_ops = 2});
    }
    mx_json_top_free(&flat);
    mx_json_top_free(&viewed);
    ck_assert_ptr_null(viewed.view);
    return made;
}

static int msg_of(char *out, size_t cap, const char *payload)
{
    int n = snprintf(out, cap, "{\"type\":\"action\",\"id\":7,\"room\":\"r:1\",\"n\":3,"
                               "\"action\":{\"type\":\"patch\",\"payload\":%s}}",
                     payload);
    ck_assert(n > 0 && (size_t)n < cap);
    return n;
}

static json_t *load_vectors(void)
{
    const char *dir = getenv("MX_VECTORS_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/patch.json", dir && *dir ? dir : "test/vectors");
    json_t *v = json_load_file(path, JFLAGS, NULL);
    ck_assert_msg(json_is_array(v), "cannot load %s", path);
    return v;
}

START_TEST(vectors_the_same_through_the_view)
{
    json_t *vec = load_vectors();
    size_t made = 0, failed = 0, n = json_array_size(vec);
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(vec, i);
        char *doc = json_dumps(json_object_get(c, "doc"), JSON_COMPACT | JSON_ENCODE_ANY);
        char *patch = json_dumps(json_object_get(c, "patch"), JSON_COMPACT | JSON_ENCODE_ANY);
        char msg[4096];
        int len = msg_of(msg, sizeof msg, patch);
        int m = check_msg(msg, (size_t)len, doc);
        made += m;
        failed += m && json_object_get(c, "error") != NULL;
        free(doc);
        free(patch);
    }
    json_decref(vec);
    /* most vectors are patches of the view's shape, their errors included */
    ck_assert_msg(made * 2 > n, "only %zu of %zu vectors made a view", made, n);
    ck_assert_uint_gt(failed, 5);
}
END_TEST

/* Shapes the view takes and the ones it leaves to the tree. */
START_TEST(what_makes_a_view)
{
    static const struct {
        const char *payload;
        int view;
    } t[] = {
        {"[{\"op\":\"inc\",\"path\":\"/count\",\"value\":1}]", 1},
        {"[{\"value\":1, \"path\":\"/count\" ,\"op\":\"inc\"}]", 1},
        {"[]", 1},
        {"[{}]", 1},
        {"[{\"op\":\"inc\"}]", 1},
        {"[{\"op\":\"move\",\"from\":\"/a/0\",\"path\":\"/b\"}]", 1},
        {"[{\"op\":\"add\",\"path\":\"/b\",\"value\":{\"deep\":[1,{\"x\":null}]}}]", 1},
        {"[{\"op\":\"add\",\"path\":\"/a\\/b~1\",\"value\":\"t\\n\"}]", 1},
        {"[{\"op\":\"frob\",\"path\":\"/a\",\"value\":1}]", 1},
        {"[{\"op\":\"inc\",\"path\":\"/count\",\"value\":\"x\"}]", 1},
        {"[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]", 1},
        {"[{\"op\":\"inc\",\"path\":\"/count\",\"value\":1,\"extra\":0}]", 0},
        {"[{\"op\":1,\"path\":\"/count\",\"value\":1}]", 0},
        {"[{\"op\":\"inc\",\"path\":[],\"value\":1}]", 0},
        {"[{\"op\":\"inc\",\"path\":\"/count\",\"value\":1,\"value\":2}]", 0},
        {"[1]", 0},
        {"[[]]", 0},
        {"{}", 0},
        {"[{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},"
         "{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},"
         "{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},"
         "{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},{\"op\":\"inc\",\"path\":\"/count\",\"value\":1}]",
         1},
        {"[{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},"
         "{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},"
         "{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},"
         "{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},{\"op\":\"inc\",\"path\":\"/count\",\"value\":1},"
         "{\"op\":\"inc\",\"path\":\"/count\",\"value\":1}]",
         0},
    };
    char msg[4096];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int len = msg_of(msg, sizeof msg, t[i].payload);
        ck_assert_msg(check_msg(msg, (size_t)len, DOC) == t[i].view, "case %zu: %s", i, t[i].payload);
    }
    /* other action shapes: another type, other members, type not first */
    const char *other[] = {
        "{\"type\":\"action\",\"id\":1,\"room\":\"r\",\"n\":1,\"action\":{\"type\":\"inc\",\"payload\":[]}}",
        "{\"type\":\"action\",\"id\":1,\"room\":\"r\",\"n\":1,\"action\":{\"type\":\"patch\"}}",
        "{\"type\":\"action\",\"id\":1,\"room\":\"r\",\"n\":1,\"action\":{\"type\":\"patch\",\"payload\":[],\"x\":1}}",
        "{\"type\":\"action\",\"id\":1,\"room\":\"r\",\"n\":1,\"action\":[]}",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        ck_assert_int_eq(check_msg(other[i], strlen(other[i]), DOC), 0);
    const char *yes = "{\"action\" : { \"payload\" : [ ] , \"type\" : \"patch\" } ,\"type\":\"action\"}";
    ck_assert_int_eq(check_msg(yes, strlen(yes), DOC), 1);
}
END_TEST

/* the same mutations on every run */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void) { return mx_test_xorshift(&rng); }

START_TEST(mutated_messages_the_same)
{
    json_t *vec = load_vectors();
    static const char bytes[] = "{}[]\",:\\/ 0123456789-.eE+tfnulrasopvhxy~";
    size_t made = 0, total = 0, n = json_array_size(vec);
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(vec, i);
        char *doc = json_dumps(json_object_get(c, "doc"), JSON_COMPACT | JSON_ENCODE_ANY);
        char *patch = json_dumps(json_object_get(c, "patch"), JSON_COMPACT | JSON_ENCODE_ANY);
        char base[4096], msg[4096];
        int len = msg_of(base, sizeof base, patch);
        for (int k = 0; k < 120; k++) {
            size_t ml = (size_t)len;
            memcpy(msg, base, ml);
            int edits = 1 + (int)(next_rand() % 3);
            for (int e = 0; e < edits && ml > 1; e++) {
                size_t at = (size_t)(next_rand() % ml);
                switch (next_rand() % 3) {
                case 0: msg[at] = bytes[next_rand() % (sizeof bytes - 1)]; break;
                case 1: memmove(msg + at, msg + at + 1, ml - at - 1); ml--; break;
                default:
                    if (ml + 1 < sizeof msg) {
                        memmove(msg + at + 1, msg + at, ml - at);
                        msg[at] = bytes[next_rand() % (sizeof bytes - 1)];
                        ml++;
                    }
                }
            }
            made += check_msg(msg, ml, doc);
            total++;
        }
        free(doc);
        free(patch);
    }
    json_decref(vec);
    /* a fair share of the mutants still makes a view (different ops,
     * pointers, values) */
    ck_assert_msg(made > total / 20, "%zu views of %zu", made, total);
}
END_TEST

Suite *mx_suite_patch_view(void)
{
    Suite *s = suite_create("patch_view");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, vectors_the_same_through_the_view);
    tcase_add_test(tc, what_makes_a_view);
    tcase_add_test(tc, mutated_messages_the_same);
    suite_add_tcase(s, tc);
    return s;
}
