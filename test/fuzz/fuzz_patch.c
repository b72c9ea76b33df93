/* fuzz_patch.c - libFuzzer harness for the JSON Patch engine (patch.c) on
 * the mx_val tree (json.c) with its digest cache (digest.c).
 *
 * Input: one JSON object {"doc": ANY, "patch": ANY} (the shape of the
 * entries of test/vectors/patch.json, whose extra members are ignored),
 * optionally with "max_depth" and "max_ops" integers as limits.
 *
 * Oracles, beyond the sanitizers:
 *  - mx_patch_validate failing means mx_patch_apply fails with the same code;
 *  - a failed apply leaves the document as it was: same serialization, same
 *    digest after a refresh;
 *  - after a successful apply, the incrementally refreshed digest and cached
 *    size equal those computed from scratch, object members are sorted and
 *    unique, and the result nests no deeper than max_depth;
 *  - rollback restores the exact previous document (text and digest);
 *    applying again gives the same result, which commit keeps.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/json.h"
#include "movexd/patch.h"

#define MAX_INPUT_BYTES (64 * 1024)

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_patch: check failed: %s: ", #cond);          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

struct snap {
    char *text; /* serialization (malloc'd) */
    uint8_t dig[MX_DIGEST_LEN];
};

/* Serialize and digest v. 0, or -1 on allocation failure. */
static int take(mx_val *v, struct snap *s)
{
    s->text = NULL;
    if (mx_digest_of(v, s->dig))
        return -1;
    mx_buf b;
    mx_buf_init(&b, 0);
    if (mx_json_dump(v, &b)) {
        mx_buf_free(&b);
        return -1;
    }
    CHECK(b.len == v->jsize, "cached size %zu, serialization %zu bytes", v->jsize, b.len);
    s->text = strdup(mx_buf_data(&b));
    mx_buf_free(&b);
    return s->text ? 0 : -1;
}

static void same(mx_val *v, const struct snap *s, const char *when)
{
    struct snap now;
    if (take(v, &now))
        return;
    CHECK(!strcmp(now.text, s->text), "%s: document changed:\nwas %s\nnow %s", when, s->text,
          now.text);
    CHECK(!memcmp(now.dig, s->dig, MX_DIGEST_LEN), "%s: same text, different digest: %s", when,
          now.text);
    free(now.text);
}

/* Members sorted (UTF-16 order) and unique; returns container depth. */
static int walk(const mx_val *v)
{
    int d = 0;
    if (v->type == MX_ARRAY) {
        for (size_t i = 0; i < v->u.arr.len; i++) {
            int k = walk(v->u.arr.items[i]);
            d = k > d ? k : d;
        }
        return d + 1;
    }
    if (v->type == MX_OBJECT) {
        for (size_t i = 0; i < v->u.obj.len; i++) {
            const struct mx_member *m = &v->u.obj.m[i];
            if (i)
                CHECK(mx_json_keycmp(m[-1].key, m[-1].keylen, m->key, m->keylen) < 0,
                      "object members out of order or duplicated: \"%s\" then \"%s\"", m[-1].key,
                      m->key);
            int k = walk(m->val);
            d = k > d ? k : d;
        }
        return d + 1;
    }
    return 0;
}

static void check_result(mx_val *v, int max_depth)
{
    uint8_t inc[MX_DIGEST_LEN], scratch[MX_DIGEST_LEN];
    if (mx_digest_of(v, inc))
        return;
    json_t *j = mx_json_to_jansson(v);
    if (!j)
        return;
    CHECK(mx_digest_jansson(j, scratch) == 0, "result holds a non-finite number");
    json_decref(j);
    CHECK(!memcmp(inc, scratch, MX_DIGEST_LEN),
          "incremental digest differs from the digest computed from scratch");
    struct snap s;
    if (!take(v, &s))
        free(s.text);
    int depth = walk(v);
    CHECK(!max_depth || depth <= max_depth, "result nests %d deep, max_depth %d", depth, max_depth);
}

static int get_limit(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000)
        return 0;
    return (int)json_integer_value(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT_BYTES)
        return 0;
    json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    const json_t *jdoc = json_object_get(in, "doc");
    const json_t *patch = json_object_get(in, "patch");
    if (!jdoc || !patch) {
        json_decref(in);
        return 0;
    }
    mx_patch_limits lim = {.max_depth = get_limit(in, "max_depth"),
                           .max_ops = (size_t)get_limit(in, "max_ops")};
    mx_val *doc = mx_json_from_jansson(jdoc, 0, NULL);
    if (!doc) { /* non-finite number */
        json_decref(in);
        return 0;
    }
    /* the limit binds only documents that respect it (a room's state does) */
    int doc_depth = walk(doc);
    int depth_bound = lim.max_depth && doc_depth <= lim.max_depth ? lim.max_depth : 0;
    struct snap before;
    if (take(doc, &before)) {
        mx_json_free(doc);
        json_decref(in);
        return 0;
    }

    mx_patch_error verr, err;
    memset(&verr, 0, sizeof(verr));
    memset(&err, 0, sizeof(err));
    int vrc = mx_patch_validate(patch, &lim, &verr);
    CHECK(vrc == 0 || vrc == MX_EBAD_PATCH, "validate returned %d", vrc);
    mx_patch_undo *undo = NULL;
    int rc = mx_patch_apply(&doc, patch, &lim, &undo, &err);
    if (vrc)
        CHECK(rc == vrc, "validate said %d (%s) but apply said %d", vrc, verr.message, rc);
    if (rc) {
        CHECK(rc == MX_ETEST_FAILED || rc == MX_EBAD_PATCH || rc == MX_ETOO_DEEP || rc == MX_ENOMEM,
              "apply returned unexpected code %d", rc);
        CHECK(undo == NULL, "failed apply left an undo record");
        CHECK(memchr(err.message, '\0', sizeof(err.message)) && (err.message[0] || rc == MX_ENOMEM),
              "failed apply without a message");
        same(doc, &before, "after a failed apply");
    } else {
        check_result(doc, depth_bound);
        struct snap after;
        int have_after = take(doc, &after) == 0;
        mx_patch_rollback(&doc, undo);
        same(doc, &before, "after rollback");
        undo = NULL;
        rc = mx_patch_apply(&doc, patch, &lim, &undo, &err);
        CHECK(rc == 0, "apply succeeded, was rolled back, then failed with %d (%s)", rc, err.message);
        if (have_after) {
            same(doc, &after, "after the second apply");
            free(after.text);
        }
        mx_patch_commit(undo);
        check_result(doc, depth_bound);
    }
    free(before.text);
    mx_json_free(doc);
    json_decref(in);
    return 0;
}
