/* Unit tests for patch.c: the shared vectors (test/vectors/patch.json, or
 * $MX_VECTORS_DIR/patch.json), atomicity (a failed patch leaves the document
 * equal to a copy taken before), rollback and commit after success, the
 * digest-cache invariant (no node left fresh whose content changed), limits
 * and error messages. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/err.h"
#include "movexd/patch.h"

#define JFLAGS (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES)

static json_t *g_vectors;       /* loaded once when the suite is built */
static char g_load_error[1024];

static json_t *jparse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JFLAGS, &e);
    ck_assert_msg(j != NULL, "parse %s: %s", text, e.text);
    return j;
}

static mx_val *conv(const json_t *j)
{
    mx_val *v = mx_json_from_jansson(j, 0, NULL);
    ck_assert_ptr_nonnull(v);
    return v;
}

static mx_val *parse(const char *text)
{
    json_t *j = jparse(text);
    mx_val *v = conv(j);
    json_decref(j);
    return v;
}

/* ---- walking the tree by hand ------------------------------------------ */

static void for_each(mx_val *v, void (*fn)(mx_val *))
{
    fn(v);
    if (v->type == MX_ARRAY)
        for (size_t i = 0; i < v->u.arr.len; i++)
            for_each(v->u.arr.items[i], fn);
    else if (v->type == MX_OBJECT)
        for (size_t i = 0; i < v->u.obj.len; i++)
            for_each(v->u.obj.m[i].val, fn);
}

static void set_fresh(mx_val *v) { v->fresh = 1; }
static void clear_fresh(mx_val *v) { v->fresh = 0; }

/* A stand-in for the digest, independent of digest.c: two FNV-1a hashes of
 * the node's canonical text. Equal values get equal fingerprints. */
static void fingerprint(const mx_val *v, uint8_t out[MX_DIGEST_LEN])
{
    mx_buf b;
    mx_buf_init(&b, 0);
    ck_assert_int_eq(mx_json_dump(v, &b), 0);
    uint64_t h1 = 1469598103934665603ull, h2 = 1099511628211ull * 7;
    for (size_t i = 0; i < b.len; i++) {
        h1 = (h1 ^ (unsigned char)mx_buf_data(&b)[i]) * 1099511628211ull;
        h2 = (h2 ^ (unsigned char)mx_buf_data(&b)[i]) * 1099511628211ull + 1;
    }
    memcpy(out, &h1, 8);
    memcpy(out + 8, &h2, 8);
    mx_buf_free(&b);
}

/* Pretend a digest refresh ran: every node fresh with a valid "digest". */
static void stamp(mx_val *v)
{
    fingerprint(v, v->dig);
    v->fresh = 1;
}

/* Count nodes that claim to be fresh but whose content changed. */
static int stale_lies(const mx_val *v)
{
    int bad = 0;
    if (v->fresh) {
        uint8_t now[MX_DIGEST_LEN];
        fingerprint(v, now);
        bad += memcmp(now, v->dig, MX_DIGEST_LEN) != 0;
    }
    if (v->type == MX_ARRAY)
        for (size_t i = 0; i < v->u.arr.len; i++)
            bad += stale_lies(v->u.arr.items[i]);
    else if (v->type == MX_OBJECT)
        for (size_t i = 0; i < v->u.obj.len; i++)
            bad += stale_lies(v->u.obj.m[i].val);
    return bad;
}

/* Resolve a simple pointer (no escapes) in a test document. */
static mx_val *at(mx_val *v, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *t = strtok_r(buf, "/", &save); t && v; t = strtok_r(NULL, "/", &save)) {
        if (v->type == MX_OBJECT)
            v = mx_json_obj_get(v, t, strlen(t));
        else if (v->type == MX_ARRAY)
            v = (size_t)atoi(t) < v->u.arr.len ? v->u.arr.items[atoi(t)] : NULL;
        else
            v = NULL;
    }
    ck_assert_msg(v != NULL, "no node at %s", path);
    return v;
}

/* ---- the shared vectors ------------------------------------------------ */

static void load_vectors(void)
{
    const char *dir = getenv("MX_VECTORS_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/patch.json", dir && *dir ? dir : "test/vectors");
    json_error_t e;
    g_vectors = json_load_file(path, JFLAGS, &e);
    if (!g_vectors)
        snprintf(g_load_error, sizeof g_load_error, "%s:%d: %s", path, e.line, e.text);
    else if (!json_is_array(g_vectors) || json_array_size(g_vectors) == 0)
        snprintf(g_load_error, sizeof g_load_error, "%s: not a non-empty array", path);
}

START_TEST(vectors_load)
{
    ck_assert_msg(g_load_error[0] == '\0', "%s", g_load_error);
}
END_TEST

typedef struct {
    const char *comment;
    json_t *patch;
    const json_t *expected;
    const char *error;
    mx_val *doc, *before;
} vcase;

static void vcase_open(vcase *vc, size_t i)
{
    const json_t *v = json_array_get(g_vectors, i);
    vc->comment = json_string_value(json_object_get(v, "comment"));
    ck_assert_msg(vc->comment != NULL, "vector %zu has no comment", i);
    vc->patch = json_object_get(v, "patch");
    vc->expected = json_object_get(v, "expected");
    vc->error = json_string_value(json_object_get(v, "error"));
    ck_assert_msg(!vc->expected != !vc->error, "vector %zu: exactly one of expected/error", i);
    vc->doc = conv(json_object_get(v, "doc"));
    vc->before = mx_json_copy(vc->doc);
    ck_assert_ptr_nonnull(vc->before);
}

static void vcase_close(vcase *vc)
{
    mx_json_free(vc->doc);
    mx_json_free(vc->before);
}

START_TEST(vector_case)
{
    vcase vc;
    vcase_open(&vc, (size_t)_i);
    mx_patch_undo *u = (mx_patch_undo *)1;
    mx_patch_error err;
    int rc = mx_patch_apply(&vc.doc, vc.patch, NULL, &u, &err);
    if (vc.error) {
        ck_assert_msg(rc != 0, "%s: applied but expected %s", vc.comment, vc.error);
        ck_assert_msg(strcmp(mx_err_code(rc), vc.error) == 0, "%s: got %s (%s), expected %s",
                      vc.comment, mx_err_code(rc), err.message, vc.error);
        ck_assert_int_eq(err.code, rc);
        ck_assert_ptr_null(u);
        ck_assert_msg(mx_json_equal(vc.doc, vc.before), "%s: document changed by a failed patch",
                      vc.comment);
        ck_assert_msg(strncmp(err.message, "op ", 3) == 0 || strstr(err.message, "patch"),
                      "%s: message %s", vc.comment, err.message);
    } else {
        ck_assert_msg(rc == 0, "%s: %s", vc.comment, err.message);
        mx_val *want = conv(vc.expected);
        ck_assert_msg(mx_json_equal(vc.doc, want), "%s: wrong result", vc.comment);
        /* veto: back to the original, then apply again and keep it */
        mx_patch_rollback(&vc.doc, u);
        ck_assert_msg(mx_json_equal(vc.doc, vc.before), "%s: rollback differs", vc.comment);
        ck_assert_int_eq(mx_patch_apply(&vc.doc, vc.patch, NULL, &u, &err), 0);
        mx_patch_commit(u);
        ck_assert_msg(mx_json_equal(vc.doc, want), "%s: wrong result after commit", vc.comment);
        mx_json_free(want);
    }
    vcase_close(&vc);
}
END_TEST

/* The cache invariant on every vector: after apply, after a failed apply,
 * and after a rollback that follows a refresh, no node claims to be fresh
 * while its content differs from what its cache describes. */
START_TEST(vector_fresh)
{
    vcase vc;
    vcase_open(&vc, (size_t)_i);
    for_each(vc.doc, stamp);
    mx_patch_undo *u;
    mx_patch_error err;
    int rc = mx_patch_apply(&vc.doc, vc.patch, NULL, &u, &err);
    ck_assert_msg(stale_lies(vc.doc) == 0, "%s: fresh node with changed content after %s",
                  vc.comment, rc ? "failure" : "apply");
    if (rc == 0) {
        for_each(vc.doc, stamp);
        mx_patch_rollback(&vc.doc, u);
        ck_assert_msg(stale_lies(vc.doc) == 0, "%s: fresh node with changed content after rollback",
                      vc.comment);
    }
    for_each(vc.doc, clear_fresh);
    ck_assert_msg(mx_json_equal(vc.doc, vc.before), "%s: not restored", vc.comment);
    vcase_close(&vc);
}
END_TEST

/* ---- targeted tests ---------------------------------------------------- */

static int apply_text(mx_val **doc, const char *patch, const mx_patch_limits *lim,
                      mx_patch_undo **u, mx_patch_error *err)
{
    json_t *p = jparse(patch);
    int rc = mx_patch_apply(doc, p, lim, u, err);
    json_decref(p);
    return rc;
}

START_TEST(fresh_cleared_on_mutated_paths_only)
{
    mx_val *doc = parse("{\"a\":{\"b\":[1,2,{\"c\":3}]},\"x\":{\"y\":{\"z\":1}},\"n\":{\"m\":1},"
                        "\"k\":{\"j\":[5]}}");
    for_each(doc, set_fresh);
    mx_patch_undo *u;
    mx_patch_error err;
    int rc = apply_text(&doc,
                        "[{\"op\":\"replace\",\"path\":\"/a/b/2/c\",\"value\":4},"
                        "{\"op\":\"move\",\"from\":\"/x/y\",\"path\":\"/n/y2\"},"
                        "{\"op\":\"inc\",\"path\":\"/n/m\",\"value\":1}]",
                        NULL, &u, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    /* every container on a mutated path, root first */
    const char *stale[] = {"", "/a", "/a/b", "/a/b/2", "/x", "/n", "/n/m"};
    for (size_t i = 0; i < sizeof stale / sizeof *stale; i++)
        ck_assert_msg(at(doc, stale[i])->fresh == 0, "%s left fresh", stale[i]);
    /* untouched nodes keep their caches: the cost is O(what changed) */
    const char *kept[] = {"/a/b/0", "/a/b/1", "/k", "/k/j", "/k/j/0", "/n/y2", "/n/y2/z"};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
        ck_assert_msg(at(doc, kept[i])->fresh == 1, "%s lost its cache", kept[i]);
    /* a refresh, then a veto: the same paths must be stale again */
    for_each(doc, set_fresh);
    mx_patch_rollback(&doc, u);
    const char *stale2[] = {"", "/a", "/a/b", "/a/b/2", "/x", "/n", "/n/m"};
    for (size_t i = 0; i < sizeof stale2 / sizeof *stale2; i++)
        ck_assert_msg(at(doc, stale2[i])->fresh == 0, "%s fresh after rollback", stale2[i]);
    ck_assert_int_eq(at(doc, "/k")->fresh, 1);
    for_each(doc, clear_fresh);
    mx_val *orig = parse("{\"a\":{\"b\":[1,2,{\"c\":3}]},\"x\":{\"y\":{\"z\":1}},\"n\":{\"m\":1},"
                         "\"k\":{\"j\":[5]}}");
    ck_assert(mx_json_equal(doc, orig));
    mx_json_free(orig);
    mx_json_free(doc);
}
END_TEST

START_TEST(test_op_touches_nothing)
{
    mx_val *doc = parse("{\"a\":{\"b\":[1,{\"c\":2}]}}");
    for_each(doc, set_fresh);
    mx_patch_error err;
    int rc = apply_text(&doc, "[{\"op\":\"test\",\"path\":\"/a/b/1\",\"value\":{\"c\":2}}]", NULL,
                        NULL, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    ck_assert_int_eq(doc->fresh, 1);
    ck_assert_int_eq(at(doc, "/a")->fresh, 1);
    ck_assert_int_eq(at(doc, "/a/b")->fresh, 1);
    /* a failing op leaves freshness of untouched paths alone too */
    rc = apply_text(&doc, "[{\"op\":\"remove\",\"path\":\"/a/b/7\"}]", NULL, NULL, &err);
    ck_assert_int_eq(rc, MX_EBAD_PATCH);
    ck_assert_int_eq(at(doc, "/a/b")->fresh, 1);
    mx_json_free(doc);
}
END_TEST

START_TEST(rollback_restores_same_nodes)
{
    mx_val *doc = parse("{\"a\":{\"k\":1},\"b\":[1,{\"q\":2},3],\"n\":4}");
    mx_val *root = doc, *a = at(doc, "/a"), *b = at(doc, "/b"), *b1 = at(doc, "/b/1");
    mx_val *n = at(doc, "/n");
    mx_val *copy = mx_json_copy(doc);
    mx_patch_undo *u;
    mx_patch_error err;
    int rc = apply_text(&doc,
                        "[{\"op\":\"remove\",\"path\":\"/a\"},"
                        "{\"op\":\"replace\",\"path\":\"/b/1\",\"value\":9},"
                        "{\"op\":\"move\",\"from\":\"/b/0\",\"path\":\"/z\"},"
                        "{\"op\":\"inc\",\"path\":\"/n\",\"value\":1},"
                        "{\"op\":\"add\",\"path\":\"/b/-\",\"value\":[1]}]",
                        NULL, &u, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    mx_val *want = parse("{\"b\":[9,3,[1]],\"n\":5,\"z\":1}");
    ck_assert(mx_json_equal(doc, want));
    mx_patch_rollback(&doc, u);
    ck_assert(mx_json_equal(doc, copy));
    /* the very same nodes are back, not copies */
    ck_assert_ptr_eq(doc, root);
    ck_assert_ptr_eq(at(doc, "/a"), a);
    ck_assert_ptr_eq(at(doc, "/b"), b);
    ck_assert_ptr_eq(at(doc, "/b/1"), b1);
    ck_assert_ptr_eq(at(doc, "/n"), n);
    ck_assert(n->u.num == 4);
    mx_json_free(want);
    mx_json_free(copy);
    mx_json_free(doc);
}
END_TEST

/* The undo log starts in the undo's own small arrays (a few steps and
 * ancestors, a short path token) and moves to the heap past them: a patch
 * of 12 ops on a path 24 deep (218 bytes) crosses all three, and
 * still applies, rolls back to the very same document, and commits. */
START_TEST(undo_grows_past_its_inline_arrays)
{
    const char *key = "kkkkkkkk";
    char doc_text[4096], path[4096], patch[16384];
    size_t dn = 0, pn = 0;
    for (int i = 0; i < 24; i++) {
        dn += (size_t)snprintf(doc_text + dn, sizeof(doc_text) - dn, "{\"%s\":", key);
        pn += (size_t)snprintf(path + pn, sizeof(path) - pn, "/%s", key);
    }
    dn += (size_t)snprintf(doc_text + dn, sizeof(doc_text) - dn, "{\"n\":0}");
    for (int i = 0; i < 24; i++)
        doc_text[dn++] = '}';
    doc_text[dn] = '\0';
    size_t qn = (size_t)snprintf(patch, sizeof(patch), "[");
    for (int i = 0; i < 12; i++)
        qn += (size_t)snprintf(patch + qn, sizeof(patch) - qn, "%s{\"op\":\"inc\",\"path\":\"%s/n\",\"value\":1}",
                               i ? "," : "", path);
    snprintf(patch + qn, sizeof(patch) - qn, "]");
    mx_val *doc = parse(doc_text);
    mx_val *copy = mx_json_copy(doc);
    mx_patch_undo *u;
    mx_patch_error err;
    ck_assert_msg(apply_text(&doc, patch, NULL, &u, &err) == 0, "%s", err.message);
    char npath[4200];
    snprintf(npath, sizeof(npath), "%s/n", path);
    ck_assert(at(doc, npath)->u.num == 12);
    mx_patch_rollback(&doc, u);
    ck_assert(mx_json_equal(doc, copy));
    ck_assert(apply_text(&doc, patch, NULL, &u, &err) == 0);
    mx_patch_commit(u);
    ck_assert(at(doc, npath)->u.num == 12);
    mx_json_free(copy);
    mx_json_free(doc);
}
END_TEST

START_TEST(rollback_root_replacement)
{
    mx_val *doc = parse("{\"a\":1}");
    mx_val *orig = doc;
    mx_patch_undo *u;
    mx_patch_error err;
    int rc = apply_text(&doc,
                        "[{\"op\":\"replace\",\"path\":\"\",\"value\":[1,2]},"
                        "{\"op\":\"add\",\"path\":\"\",\"value\":{\"b\":[3]}},"
                        "{\"op\":\"move\",\"from\":\"/b\",\"path\":\"\"},"
                        "{\"op\":\"add\",\"path\":\"/-\",\"value\":4}]",
                        NULL, &u, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    mx_val *want = parse("[3,4]");
    ck_assert(mx_json_equal(doc, want));
    ck_assert_ptr_ne(doc, orig);
    mx_patch_rollback(&doc, u);
    ck_assert_ptr_eq(doc, orig);
    mx_val *was = parse("{\"a\":1}");
    ck_assert(mx_json_equal(doc, was));
    /* and committed: the old roots are freed (ASan checks for leaks) */
    rc = apply_text(&doc, "[{\"op\":\"replace\",\"path\":\"\",\"value\":[1]},"
                          "{\"op\":\"copy\",\"from\":\"\",\"path\":\"/-\"}]",
                    NULL, &u, &err);
    ck_assert_msg(rc == 0, "%s", err.message);
    mx_patch_commit(u);
    mx_val *want2 = parse("[1,[1]]");
    ck_assert(mx_json_equal(doc, want2));
    mx_json_free(want2);
    mx_json_free(was);
    mx_json_free(want);
    mx_json_free(doc);
}
END_TEST

START_TEST(failure_restores_root)
{
    mx_val *doc = parse("{\"a\":{\"b\":1}}");
    mx_val *orig = doc, *a = at(doc, "/a");
    mx_patch_undo *u = (mx_patch_undo *)1;
    mx_patch_error err;
    int rc = apply_text(&doc,
                        "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"\"},"
                        "{\"op\":\"test\",\"path\":\"/b\",\"value\":2}]",
                        NULL, &u, &err);
    ck_assert_int_eq(rc, MX_ETEST_FAILED);
    ck_assert_ptr_null(u);
    ck_assert_ptr_eq(doc, orig);
    ck_assert_ptr_eq(at(doc, "/a"), a);
    ck_assert_uint_eq(err.op_index, 1);
    mx_json_free(doc);
}
END_TEST

START_TEST(max_ops_limit)
{
    const char *p = "[{\"op\":\"inc\",\"path\":\"/n\",\"value\":1},"
                    "{\"op\":\"inc\",\"path\":\"/n\",\"value\":1},"
                    "{\"op\":\"inc\",\"path\":\"/n\",\"value\":1}]";
    mx_val *doc = parse("{}");
    mx_patch_error err;
    mx_patch_limits lim = {.max_ops = 2};
    ck_assert_int_eq(apply_text(&doc, p, &lim, NULL, &err), MX_EBAD_PATCH);
    ck_assert_uint_eq(doc->u.obj.len, 0);
    ck_assert_ptr_nonnull(strstr(err.message, "limit"));
    lim.max_ops = 3;
    ck_assert_int_eq(apply_text(&doc, p, &lim, NULL, &err), 0);
    lim.max_ops = 0; /* no limit */
    ck_assert_int_eq(apply_text(&doc, p, &lim, NULL, &err), 0);
    ck_assert(at(doc, "/n")->u.num == 6);
    mx_json_free(doc);
}
END_TEST

/* Apply under a depth limit; on error the document must be unchanged. */
#define ck_depth(doc_, lim_, patch_, code_)                                             \
    do {                                                                                \
        mx_val *d_ = parse(doc_), *c_ = mx_json_copy(d_);                               \
        mx_patch_limits l_ = {.max_depth = (lim_)};                                     \
        mx_patch_error e_;                                                              \
        int rc_ = apply_text(&d_, patch_, &l_, NULL, &e_);                              \
        ck_assert_msg(rc_ == (code_), "%s: rc %d (%s)", patch_, rc_, e_.message);      \
        if (rc_)                                                                        \
            ck_assert_msg(mx_json_equal(d_, c_), "%s: document changed", patch_);      \
        mx_json_free(d_);                                                               \
        mx_json_free(c_);                                                               \
    } while (0)

START_TEST(max_depth_limit)
{
    /* depth counts containers: the root is 1, scalars add nothing */
    const char *doc = "{\"a\":{\"b\":{}}}"; /* depth 3 */
    ck_depth(doc, 3, "[{\"op\":\"add\",\"path\":\"/a/b/c\",\"value\":1}]", 0);
    ck_depth(doc, 3, "[{\"op\":\"add\",\"path\":\"/a/b/c\",\"value\":[]}]", MX_ETOO_DEEP);
    ck_depth(doc, 4, "[{\"op\":\"add\",\"path\":\"/a/b/c\",\"value\":[]}]", 0);
    ck_depth(doc, 4, "[{\"op\":\"add\",\"path\":\"/a/b/c\",\"value\":[1]}]", 0);
    ck_depth(doc, 4, "[{\"op\":\"add\",\"path\":\"/a/b/c\",\"value\":[[1]]}]", MX_ETOO_DEEP);
    ck_depth(doc, 2, "[{\"op\":\"add\",\"path\":\"/a/b/c\",\"value\":1}]", MX_ETOO_DEEP);
    ck_depth(doc, 3, "[{\"op\":\"add\",\"path\":\"/a/x\",\"value\":{\"y\":1}}]", 0);
    ck_depth(doc, 3, "[{\"op\":\"add\",\"path\":\"/a/x\",\"value\":{\"y\":[1]}}]", MX_ETOO_DEEP);
    ck_depth(doc, 3, "[{\"op\":\"replace\",\"path\":\"/a/b\",\"value\":{\"y\":[1]}}]",
             MX_ETOO_DEEP);
    ck_depth(doc, 3, "[{\"op\":\"add\",\"path\":\"\",\"value\":[[[1]]]}]", 0);
    ck_depth(doc, 3, "[{\"op\":\"add\",\"path\":\"\",\"value\":[[[[1]]]]}]", MX_ETOO_DEEP);
    ck_depth(doc, 4, "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/a/b/c\"}]", MX_ETOO_DEEP);
    ck_depth(doc, 4, "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/a/c\"}]", 0);
    ck_depth(doc, 2, "[{\"op\":\"inc\",\"path\":\"/a/b/c\",\"value\":1}]", MX_ETOO_DEEP);
    ck_depth(doc, 3, "[{\"op\":\"inc\",\"path\":\"/a/b/c\",\"value\":1}]", 0);
    const char *two = "{\"p\":{\"q\":{}},\"r\":{\"s\":{}}}";
    ck_depth(two, 4, "[{\"op\":\"move\",\"from\":\"/p\",\"path\":\"/r/s/t\"}]", MX_ETOO_DEEP);
    ck_depth(two, 4, "[{\"op\":\"move\",\"from\":\"/p\",\"path\":\"/r/t\"}]", 0);
    ck_depth(two, 4, "[{\"op\":\"move\",\"from\":\"/r/s\",\"path\":\"/t\"}]", 0);
    /* a too-deep op after good ones undoes them */
    ck_depth(doc, 3,
             "[{\"op\":\"add\",\"path\":\"/z\",\"value\":1},"
             "{\"op\":\"add\",\"path\":\"/a/b/c\",\"value\":[[1]]}]",
             MX_ETOO_DEEP);
    ck_depth(doc, 0, "[{\"op\":\"add\",\"path\":\"/a/b/c\",\"value\":[[[[[[1]]]]]]}]", 0);
}
END_TEST

START_TEST(error_messages)
{
    mx_val *doc = parse("{\"a\":[1]}");
    mx_patch_error err;
    int rc = apply_text(&doc,
                        "[{\"op\":\"test\",\"path\":\"/a/0\",\"value\":1},"
                        "{\"op\":\"add\",\"path\":\"/b\",\"value\":2},"
                        "{\"op\":\"remove\",\"path\":\"/a/3\"}]",
                        NULL, NULL, &err);
    ck_assert_int_eq(rc, MX_EBAD_PATCH);
    ck_assert_int_eq(err.code, MX_EBAD_PATCH);
    ck_assert_uint_eq(err.op_index, 2);
    ck_assert_str_eq(err.message, "op 2 (remove): path \"/a/3\" does not exist");

    rc = apply_text(&doc, "[{\"op\":\"test\",\"path\":\"/a\",\"value\":[2]}]", NULL, NULL, &err);
    ck_assert_int_eq(rc, MX_ETEST_FAILED);
    ck_assert_str_eq(err.message, "op 0 (test): path \"/a\": value differs");

    rc = apply_text(&doc, "[{\"op\":\"add\",\"path\":\"/b\",\"value\":1},{\"op\":\"nope\"}]", NULL,
                    NULL, &err);
    ck_assert_int_eq(rc, MX_EBAD_PATCH);
    ck_assert_uint_eq(err.op_index, 1);
    ck_assert_str_eq(err.message, "op 1 (nope): unknown op");

    rc = apply_text(&doc, "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/0\"}]", NULL, NULL,
                    &err);
    ck_assert_str_eq(err.message, "op 0 (move): path \"/a/0\": cannot move a value into its own child");

    rc = apply_text(&doc, "[{\"op\":\"add\",\"path\":\"/x/y\",\"value\":1}]", NULL, NULL, &err);
    ck_assert_str_eq(err.message, "op 0 (add): path \"/x/y\": parent does not exist");

    /* long pointers are cut at a character boundary: still valid UTF-8 */
    char patch[1024] = "[{\"op\":\"remove\",\"path\":\"/";
    for (int i = 0; i < 100; i++)
        strcat(patch, "\xc3\xa9");
    strcat(patch, "\"}]");
    rc = apply_text(&doc, patch, NULL, NULL, &err);
    ck_assert_int_eq(rc, MX_EBAD_PATCH);
    ck_assert_ptr_nonnull(strstr(err.message, "...\""));
    json_t *s = json_string(err.message);
    ck_assert_msg(s != NULL, "message is not valid UTF-8: %s", err.message);
    json_decref(s);

    mx_val *want = parse("{\"a\":[1]}");
    ck_assert(mx_json_equal(doc, want));
    mx_json_free(want);
    mx_json_free(doc);
}
END_TEST

/* A patch of one op named name on {"a":1,"b":1}: its status, *err set. */
static int apply_named(const char *name, mx_patch_error *err)
{
    mx_val *doc = parse("{\"a\":1,\"b\":1}");
    char patch[160];
    snprintf(patch, sizeof patch, "[{\"op\":\"%s\",\"path\":\"/a\",\"from\":\"/b\",\"value\":1}]", name);
    int rc = apply_text(&doc, patch, NULL, NULL, err);
    mx_json_free(doc);
    return rc;
}

/* Op names are matched whole (find_op looks at the first letters first):
 * prefixes, extensions, other cases and names sharing a first letter. */
START_TEST(op_names_matched_exactly)
{
    static const char *unknown[] = {"", "a", "ad", "addx", "Add", "r", "re", "rem", "rep", "removes",
                                    "replac", "repla", "m", "mov", "c", "cop", "t", "tes", "i", "in",
                                    "incr", "x", "remove\u00e9"};
    mx_patch_error err;
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ck_assert_int_eq(apply_named(unknown[i], &err), MX_EBAD_PATCH);
        ck_assert_msg(strstr(err.message, "unknown op") != NULL, "%s: %s", unknown[i], err.message);
    }
    static const char *known[] = {"add", "remove", "replace", "move", "copy", "test", "inc"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        ck_assert_msg(apply_named(known[i], &err) == 0, "%s: %s", known[i], err.message);
}
END_TEST

START_TEST(patch_must_be_array)
{
    mx_val *doc = parse("{\"a\":1}");
    mx_patch_error err;
    mx_patch_undo *u = (mx_patch_undo *)1;
    ck_assert_int_eq(apply_text(&doc, "{\"op\":\"remove\",\"path\":\"/a\"}", NULL, &u, &err),
                     MX_EBAD_PATCH);
    ck_assert_ptr_null(u);
    ck_assert_int_eq(apply_text(&doc, "\"x\"", NULL, NULL, &err), MX_EBAD_PATCH);
    ck_assert_int_eq(mx_patch_apply(&doc, NULL, NULL, NULL, &err), MX_EBAD_PATCH);
    ck_assert_int_eq(mx_patch_apply(&doc, NULL, NULL, NULL, NULL), MX_EBAD_PATCH);
    ck_assert_ptr_nonnull(mx_json_obj_get(doc, "a", 1));
    mx_json_free(doc);
}
END_TEST

static int validate_text(const char *patch, const mx_patch_limits *lim)
{
    json_t *p = jparse(patch);
    mx_patch_error err;
    int rc = mx_patch_validate(p, lim, &err);
    json_decref(p);
    return rc;
}

START_TEST(validate_shape_only)
{
    /* valid shapes, whatever a document would say */
    ck_assert_int_eq(validate_text("[]", NULL), 0);
    ck_assert_int_eq(validate_text("[{\"op\":\"remove\",\"path\":\"/01/-/~01\"},"
                                   "{\"op\":\"test\",\"path\":\"\",\"value\":null},"
                                   "{\"op\":\"copy\",\"from\":\"\",\"path\":\"/x\"},"
                                   "{\"op\":\"inc\",\"path\":\"/n\",\"value\":-1.5,\"x\":0}]",
                                   NULL),
                     0);
    ck_assert_int_eq(validate_text("{}", NULL), MX_EBAD_PATCH);
    ck_assert_int_eq(validate_text("[1]", NULL), MX_EBAD_PATCH);
    ck_assert_int_eq(validate_text("[{\"op\":\"add\",\"path\":\"/a\"}]", NULL), MX_EBAD_PATCH);
    ck_assert_int_eq(validate_text("[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]", NULL),
                     MX_EBAD_PATCH);
    ck_assert_int_eq(validate_text("[{\"op\":\"add\",\"path\":\"/~\",\"value\":1}]", NULL),
                     MX_EBAD_PATCH);
    ck_assert_int_eq(validate_text("[{\"op\":\"move\",\"path\":\"/a\"}]", NULL), MX_EBAD_PATCH);
    ck_assert_int_eq(validate_text("[{\"op\":\"copy\",\"from\":\"x\",\"path\":\"/a\"}]", NULL),
                     MX_EBAD_PATCH);
    ck_assert_int_eq(validate_text("[{\"op\":\"inc\",\"path\":\"/a\",\"value\":true}]", NULL),
                     MX_EBAD_PATCH);
    ck_assert_int_eq(validate_text("[{\"op\":\"remove\",\"path\":null}]", NULL), MX_EBAD_PATCH);
    mx_patch_limits lim = {.max_ops = 1};
    ck_assert_int_eq(validate_text("[{\"op\":\"remove\",\"path\":\"/a\"}]", &lim), 0);
    ck_assert_int_eq(
        validate_text("[{\"op\":\"remove\",\"path\":\"/a\"},{\"op\":\"remove\",\"path\":\"/b\"}]",
                      &lim),
        MX_EBAD_PATCH);
    /* a NUL inside a pointer (only possible when the parser allows it) */
    json_t *p = json_array();
    json_t *op = json_pack("{s:s,s:s#}", "op", "remove", "path", "/a\0b", (int)4);
    json_array_append_new(p, op);
    mx_patch_error err;
    ck_assert_int_eq(mx_patch_validate(p, NULL, &err), MX_EBAD_PATCH);
    json_decref(p);
}
END_TEST

Suite *mx_suite_patch(void)
{
    Suite *s = suite_create("patch");
    load_vectors();
    TCase *tv = tcase_create("vectors");
    tcase_add_test(tv, vectors_load);
    if (g_vectors && !g_load_error[0]) {
        int n = (int)json_array_size(g_vectors);
        tcase_add_loop_test(tv, vector_case, 0, n);
        tcase_add_loop_test(tv, vector_fresh, 0, n);
    }
    suite_add_tcase(s, tv);

    TCase *tc = tcase_create("engine");
    tcase_add_test(tc, fresh_cleared_on_mutated_paths_only);
    tcase_add_test(tc, test_op_touches_nothing);
    tcase_add_test(tc, rollback_restores_same_nodes);
    tcase_add_test(tc, undo_grows_past_its_inline_arrays);
    tcase_add_test(tc, rollback_root_replacement);
    tcase_add_test(tc, failure_restores_root);
    tcase_add_test(tc, max_ops_limit);
    tcase_add_test(tc, max_depth_limit);
    tcase_add_test(tc, error_messages);
    tcase_add_test(tc, patch_must_be_array);
    tcase_add_test(tc, op_names_matched_exactly);
    tcase_add_test(tc, validate_shape_only);
    suite_add_tcase(s, tc);
    return s;
}
