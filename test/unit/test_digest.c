/* Unit tests for digest.c: the checksum vectors of test/vectors/checksum.json
 * (expected values from scripts/gen-checksum-vectors.mjs, an independent
 * JavaScript + Python implementation), the cached jsize, incremental refresh
 * after mutations, and hex formatting/parsing.
 *
 * Vectors are read from $MX_VECTORS_DIR, else test/vectors (tests run from
 * the repository root). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/digest.h"
#include "movexd/json.h"

#define PARSE_FLAGS (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES)

/* ---- helpers ------------------------------------------------------------ */

static json_t *load_vectors(const char *name)
{
    const char *dir = getenv("MX_VECTORS_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "test/vectors", name);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    ck_assert_msg(j != NULL, "cannot load %s: %s (line %d); run from the repo root or set MX_VECTORS_DIR",
                  path, e.text, e.line);
    ck_assert_msg(json_is_array(j), "%s: not an array", path);
    return j;
}

static json_t *parse_j(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, PARSE_FLAGS, &e);
    ck_assert_msg(j != NULL, "parse %s: %s", text, e.text);
    return j;
}

static mx_val *parse(const char *text)
{
    json_t *j = parse_j(text);
    const char *why = NULL;
    mx_val *v = mx_json_from_jansson(j, 0, &why);
    json_decref(j);
    ck_assert_msg(v != NULL, "from_jansson %s: %s", text, why ? why : "?");
    return v;
}

static void clear_fresh_all(mx_val *v)
{
    v->fresh = 0;
    if (v->type == MX_ARRAY)
        for (size_t i = 0; i < v->u.arr.len; i++)
            clear_fresh_all(v->u.arr.items[i]);
    else if (v->type == MX_OBJECT)
        for (size_t i = 0; i < v->u.obj.len; i++)
            clear_fresh_all(v->u.obj.m[i].val);
}

/* Fills garbage into every cache so a refresh that skips a node it should
 * not skip cannot pass by luck. */
static void poison_all(mx_val *v)
{
    memset(v->dig, 0xA5, sizeof(v->dig));
    v->jsize = 12345;
    if (v->type == MX_ARRAY)
        for (size_t i = 0; i < v->u.arr.len; i++)
            poison_all(v->u.arr.items[i]);
    else if (v->type == MX_OBJECT)
        for (size_t i = 0; i < v->u.obj.len; i++)
            poison_all(v->u.obj.m[i].val);
}

static size_t dump_len(const mx_val *v)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    ck_assert_int_eq(mx_json_dump(v, &b), 0);
    size_t n = b.len;
    mx_buf_free(&b);
    return n;
}

/* Number of nodes where a (refreshed incrementally) and b (refreshed from
 * scratch) disagree on dig or jsize, or where a node is not fresh, or where
 * a member's keydig is not D(key), or where jsize is not the dump length. */
static int tree_mismatches(const mx_val *a, const mx_val *b)
{
    int bad = 0;
    if (!a->fresh || !b->fresh || a->type != b->type)
        return 1;
    if (memcmp(a->dig, b->dig, MX_DIGEST_LEN) != 0 || a->jsize != b->jsize)
        bad++;
    if (a->jsize != dump_len(a))
        bad++;
    if (a->type == MX_ARRAY) {
        if (a->u.arr.len != b->u.arr.len)
            return bad + 1;
        for (size_t i = 0; i < a->u.arr.len; i++)
            bad += tree_mismatches(a->u.arr.items[i], b->u.arr.items[i]);
    } else if (a->type == MX_OBJECT) {
        if (a->u.obj.len != b->u.obj.len)
            return bad + 1;
        for (size_t i = 0; i < a->u.obj.len; i++) {
            uint8_t kd[MX_DIGEST_LEN];
            mx_digest_string(a->u.obj.m[i].key, a->u.obj.m[i].keylen, kd);
            if (memcmp(kd, a->u.obj.m[i].keydig, MX_DIGEST_LEN) != 0)
                bad++;
            bad += tree_mismatches(a->u.obj.m[i].val, b->u.obj.m[i].val);
        }
    }
    return bad;
}

/* Refresh v, then compare every node with a copy refreshed from scratch
 * (all fresh flags cleared, caches poisoned) and the root with the uncached
 * jansson path. Returns the number of disagreements. */
static int check_against_scratch(mx_val *v)
{
    ck_assert_int_eq(mx_digest_refresh(v), 0);
    mx_val *c = mx_json_copy(v);
    ck_assert_ptr_nonnull(c);
    poison_all(c);
    clear_fresh_all(c);
    ck_assert_int_eq(mx_digest_refresh(c), 0);
    int bad = tree_mismatches(v, c);
    mx_json_free(c);
    json_t *j = mx_json_to_jansson(v);
    ck_assert_ptr_nonnull(j);
    uint8_t d[MX_DIGEST_LEN];
    ck_assert_int_eq(mx_digest_jansson(j, d), 0);
    json_decref(j);
    if (memcmp(d, v->dig, MX_DIGEST_LEN) != 0)
        bad++;
    return bad;
}

#define ck_hex_eq(dig, want)                                                    \
    do {                                                                        \
        char h_[MX_CHECKSUM_HEX];                                               \
        mx_digest_hex(dig, h_);                                                 \
        ck_assert_str_eq(h_, want);                                             \
    } while (0)

/* ---- vectors ------------------------------------------------------------ */

START_TEST(vectors_file_sane)
{
    json_t *vs = load_vectors("checksum.json");
    ck_assert_uint_ge(json_array_size(vs), 60);
    size_t i;
    json_t *t;
    json_array_foreach(vs, i, t)
    {
        const char *js = json_string_value(json_object_get(t, "json"));
        const char *sum = json_string_value(json_object_get(t, "checksum"));
        ck_assert_msg(js && sum, "vector %zu lacks json/checksum", i);
        uint8_t d[MX_DIGEST_LEN];
        ck_assert_msg(mx_digest_parse_hex(sum, strlen(sum), d) == 0, "vector %zu: bad checksum %s", i, sum);
        char back[MX_CHECKSUM_HEX];
        mx_digest_hex(d, back);
        ck_assert_str_eq(back, sum); /* stored lowercase */
    }
    json_decref(vs);
}
END_TEST

/* mx_digest_jansson over every vector */
START_TEST(vectors_jansson)
{
    json_t *vs = load_vectors("checksum.json");
    int bad = 0;
    size_t i;
    json_t *t;
    json_array_foreach(vs, i, t)
    {
        const char *js = json_string_value(json_object_get(t, "json"));
        const char *want = json_string_value(json_object_get(t, "checksum"));
        json_t *j = parse_j(js);
        uint8_t d[MX_DIGEST_LEN];
        char got[MX_CHECKSUM_HEX];
        ck_assert_int_eq(mx_digest_jansson(j, d), 0);
        mx_digest_hex(d, got);
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "checksum.json[%zu] %s: jansson digest %s, want %s\n", i, js, got, want);
            bad++;
        }
        json_decref(j);
    }
    json_decref(vs);
    ck_assert_msg(bad == 0, "%d vectors differ (mx_digest_jansson)", bad);
}
END_TEST

/* the cached tree over every vector: digest, jsize, dump text */
START_TEST(vectors_tree)
{
    json_t *vs = load_vectors("checksum.json");
    int bad = 0;
    size_t i;
    json_t *t;
    json_array_foreach(vs, i, t)
    {
        const char *js = json_string_value(json_object_get(t, "json"));
        const char *want = json_string_value(json_object_get(t, "checksum"));
        const char *canon = json_string_value(json_object_get(t, "canonical"));
        mx_val *v = parse(js);
        uint8_t d[MX_DIGEST_LEN];
        char got[MX_CHECKSUM_HEX];
        ck_assert_int_eq(mx_digest_of(v, d), 0);
        ck_assert(v->fresh);
        mx_digest_hex(d, got);
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "checksum.json[%zu] %s: tree digest %s, want %s\n", i, js, got, want);
            bad++;
        }
        mx_buf b;
        mx_buf_init(&b, 0);
        ck_assert_int_eq(mx_json_dump(v, &b), 0);
        if (v->jsize != b.len) {
            fprintf(stderr, "checksum.json[%zu] %s: jsize %zu, dump is %zu bytes\n", i, js, v->jsize, b.len);
            bad++;
        }
        if (canon && (strlen(canon) != v->jsize || strcmp(mx_buf_data(&b), canon) != 0)) {
            fprintf(stderr, "checksum.json[%zu] %s: dump %s (jsize %zu), JSON.stringify gives %s\n", i, js,
                    mx_buf_data(&b), v->jsize, canon);
            bad++;
        }
        mx_buf_free(&b);
        /* every node agrees with a from-scratch refresh; a copy keeps caches */
        bad += check_against_scratch(v);
        mx_val *c = mx_json_copy(v);
        ck_assert(c->fresh);
        ck_assert_int_eq(memcmp(c->dig, v->dig, MX_DIGEST_LEN), 0);
        ck_assert_uint_eq(c->jsize, v->jsize);
        mx_json_free(c);
        mx_json_free(v);
    }
    json_decref(vs);
    ck_assert_msg(bad == 0, "%d mismatches (tree digest / jsize)", bad);
}
END_TEST

/* PROTOCOL.md's table, kept here too so the suite does not rest on the file */
START_TEST(protocol_reference)
{
    static const char *const ref[][2] = {
        {"null", "4ee3fdf7a7a38af04951408152eaad1f"},
        {"true", "883e609a05d85c187a019cad93c12237"},
        {"false", "178ae0acf7f5c5ab692c698ac329d4fd"},
        {"0", "25ac9bf16d258838b5c610ca9cb65e58"},
        {"1", "70216ddf1d2e2c57a587dfaad501dc76"},
        {"-1", "da9541d10a9983cdee4a174895f8cd57"},
        {"1.5", "c570ccdd04bce8e8db0307452f8ff934"},
        {"0.1", "8da802d9952c28b5eb2b8a06f6263871"},
        {"1e+21", "6f0d51be25781bf6a8408aec9e3def2b"},
        {"1e-7", "eec57aadb9cad71a892060371c33e9f0"},
        {"1.5e-7", "354e6469bd5d316cabb60300ed6bf70f"},
        {"9007199254740992", "7fd5f04f4890b8b34987a15b546c5232"},
        {"5e-324", "752a53a7668753bb516ef42df6a29464"},
        {"123456789012345680000", "643eaab3368cd97659332d89b162f9cf"},
        {"\"\"", "bbf7769fea5c8d41a9068bd6edbb2c13"},
        {"\"h\xc3\xa9llo\"", "10f29da4fb3ed3235d6b932d1fcc37a5"},
        {"\"\xf0\x9d\x84\x9e\"", "b98f44b507183a41fe6f93bbad9fb992"},
        {"[]", "27c35e6e9373877f29e562464e46497e"},
        {"{}", "4ccbe3a80f8112da36171794db81f2d5"},
        {"[1,[2]]", "15013f84c11459a35ef2f3d16e912c7c"},
        {"{\"b\":1,\"a\":[null]}", "a6b3463d2cf4b3687e768e7432db89f6"},
        {"{\"9\":2,\"10\":1,\"a\":3}", "900981d188517a00b7aefddb98f13199"},
        {"{\"\xef\xbc\x81\":1,\"\xf0\x9f\x98\x80\":2,\"\xc3\xa9\":3}", "4df9674110b5b5ca18f14dd83791204f"},
    };
    for (size_t i = 0; i < sizeof(ref) / sizeof(ref[0]); i++) {
        json_t *j = parse_j(ref[i][0]);
        uint8_t d[MX_DIGEST_LEN];
        char got[MX_CHECKSUM_HEX];
        ck_assert_int_eq(mx_digest_jansson(j, d), 0);
        mx_digest_hex(d, got);
        ck_assert_msg(strcmp(got, ref[i][1]) == 0, "%s: jansson %s, want %s", ref[i][0], got, ref[i][1]);
        json_decref(j);
        mx_val *v = parse(ref[i][0]);
        ck_assert_int_eq(mx_digest_of(v, d), 0);
        mx_digest_hex(d, got);
        ck_assert_msg(strcmp(got, ref[i][1]) == 0, "%s: tree %s, want %s", ref[i][0], got, ref[i][1]);
        mx_json_free(v);
    }
}
END_TEST

/* ---- scalars, keys, jsize ---------------------------------------------- */

START_TEST(string_and_key_digests)
{
    uint8_t a[MX_DIGEST_LEN], b[MX_DIGEST_LEN];
    mx_digest_string("", 0, a);
    ck_hex_eq(a, "bbf7769fea5c8d41a9068bd6edbb2c13");
    /* a key hashes like the same string value */
    mx_val *o = parse("{\"h\xc3\xa9llo\":\"h\xc3\xa9llo\"}");
    ck_assert_int_eq(mx_digest_refresh(o), 0);
    ck_hex_eq(o->u.obj.m[0].keydig, "10f29da4fb3ed3235d6b932d1fcc37a5");
    ck_hex_eq(o->u.obj.m[0].val->dig, "10f29da4fb3ed3235d6b932d1fcc37a5");
    mx_json_free(o);
    /* embedded bytes count: "ab" differs from "a" */
    mx_digest_string("ab", 1, a);
    mx_digest_string("a", 1, b);
    ck_assert_int_eq(memcmp(a, b, MX_DIGEST_LEN), 0);
    mx_digest_string("ab", 2, b);
    ck_assert_int_ne(memcmp(a, b, MX_DIGEST_LEN), 0);
}
END_TEST

START_TEST(negative_zero_and_integers)
{
    /* -0 stored directly (bypassing mx_json_num's normalisation) still
     * digests and sizes as 0 */
    mx_val *z = mx_json_num(0);
    z->u.num = -0.0;
    uint8_t d[MX_DIGEST_LEN];
    ck_assert_int_eq(mx_digest_of(z, d), 0);
    ck_hex_eq(d, "25ac9bf16d258838b5c610ca9cb65e58");
    ck_assert_uint_eq(z->jsize, 1);
    mx_json_free(z);
    /* jansson integers and reals of one value digest alike */
    json_t *ji = json_integer(9007199254740992LL), *jr = json_real(9007199254740992.0);
    uint8_t d1[MX_DIGEST_LEN], d2[MX_DIGEST_LEN];
    ck_assert_int_eq(mx_digest_jansson(ji, d1), 0);
    ck_assert_int_eq(mx_digest_jansson(jr, d2), 0);
    ck_hex_eq(d1, "7fd5f04f4890b8b34987a15b546c5232");
    ck_hex_eq(d2, "7fd5f04f4890b8b34987a15b546c5232");
    json_decref(ji);
    json_decref(jr);
    json_t *jz = json_real(-0.0);
    ck_assert_int_eq(mx_digest_jansson(jz, d1), 0);
    ck_hex_eq(d1, "25ac9bf16d258838b5c610ca9cb65e58");
    json_decref(jz);
}
END_TEST

/* jansson objects keep insertion order; the digest must sort them itself */
START_TEST(jansson_insertion_order)
{
    json_t *o = json_object();
    json_object_set_new(o, "\xef\xbc\x81", json_integer(1));     /* U+FF01 */
    json_object_set_new(o, "\xf0\x9f\x98\x80", json_integer(2)); /* U+1F600 */
    json_object_set_new(o, "\xc3\xa9", json_integer(3));         /* é */
    uint8_t d[MX_DIGEST_LEN];
    ck_assert_int_eq(mx_digest_jansson(o, d), 0);
    ck_hex_eq(d, "4df9674110b5b5ca18f14dd83791204f");
    json_decref(o);
    o = json_object();
    json_object_set_new(o, "a", json_array());
    json_array_append_new(json_object_get(o, "a"), json_null());
    json_object_set_new(o, "b", json_real(1.0));
    ck_assert_int_eq(mx_digest_jansson(o, d), 0);
    ck_hex_eq(d, "a6b3463d2cf4b3687e768e7432db89f6");
    json_decref(o);
}
END_TEST

/* jsize of strings and keys with every escape class */
START_TEST(jsize_escapes)
{
    char s[256];
    size_t n = 0;
    for (int c = 1; c < 256; c++)
        if (c < 0x80)
            s[n++] = (char)c;
    /* plus some multi-byte UTF-8: é, U+2028, U+1F600 */
    const char *mb = "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80";
    memcpy(s + n, mb, strlen(mb));
    n += strlen(mb);
    mx_val *v = mx_json_str(s, n);
    ck_assert_int_eq(mx_digest_refresh(v), 0);
    ck_assert_uint_eq(v->jsize, dump_len(v));
    /* 127 ASCII bytes: 26 \u00xx (6), 5 short controls + quote + backslash
     * (2), the other 94 as is; 9 UTF-8 bytes; 2 quotes */
    ck_assert_uint_eq(v->jsize, 26 * 6 + 7 * 2 + 94 + 9 + 2);
    mx_val *o = mx_json_obj();
    ck_assert_int_eq(mx_json_obj_set(o, s, n, v), 0);
    ck_assert_int_eq(mx_json_obj_set(o, "\"\\\n\x01", 4, mx_json_null()), 0);
    ck_assert_int_eq(mx_digest_refresh(o), 0);
    ck_assert_uint_eq(o->jsize, dump_len(o));
    mx_json_free(o);
}
END_TEST

/* ---- incremental refresh ----------------------------------------------- */

/* A fresh subtree is trusted, not recomputed: proves refresh skips it. */
START_TEST(fresh_subtrees_are_skipped)
{
    mx_val *v = parse("{\"a\":{\"x\":1},\"b\":[2]}");
    uint8_t before[MX_DIGEST_LEN], d[MX_DIGEST_LEN];
    ck_assert_int_eq(mx_digest_of(v, before), 0);
    mx_val *a = mx_json_obj_get(v, "a", 1);
    mx_val *x = mx_json_obj_get(a, "x", 1);
    x->u.num = 5; /* behind the API's back: nothing marked stale */
    v->fresh = 0;
    ck_assert_int_eq(mx_digest_of(v, d), 0);
    ck_assert_int_eq(memcmp(d, before, MX_DIGEST_LEN), 0);
    /* now mark the path stale, as the patch engine would */
    x->fresh = 0;
    a->fresh = 0;
    v->fresh = 0;
    ck_assert_int_eq(mx_digest_of(v, d), 0);
    mx_val *w = parse("{\"b\":[2],\"a\":{\"x\":5}}");
    uint8_t e[MX_DIGEST_LEN];
    ck_assert_int_eq(mx_digest_of(w, e), 0);
    ck_assert_int_eq(memcmp(d, e, MX_DIGEST_LEN), 0);
    ck_assert_uint_eq(v->jsize, w->jsize);
    /* a refresh of an all-fresh tree changes nothing */
    ck_assert_int_eq(mx_digest_of(v, d), 0);
    ck_assert_int_eq(memcmp(d, e, MX_DIGEST_LEN), 0);
    mx_json_free(v);
    mx_json_free(w);
}
END_TEST

/* Hand-picked mutations of a deep document through the json API. */
START_TEST(incremental_deep_edits)
{
    mx_val *root = parse("{\"room\":{\"players\":[{\"id\":\"p1\",\"pos\":[1,2]},{\"id\":\"p2\",\"pos\":[3,4]}],"
                         "\"meta\":{\"v\":1}},\"tick\":0}");
    ck_assert_int_eq(mx_digest_refresh(root), 0);
    mx_val *room = mx_json_obj_get(root, "room", 4);
    mx_val *players = mx_json_obj_get(room, "players", 7);
    mx_val *p1 = players->u.arr.items[0];
    mx_val *pos = mx_json_obj_get(p1, "pos", 3);

    /* replace a number four levels down */
    mx_json_free(mx_json_arr_replace(pos, 0, mx_json_num(1.5e-7)));
    p1->fresh = players->fresh = room->fresh = root->fresh = 0;
    ck_assert_int_eq(check_against_scratch(root), 0);
    mx_val *want = parse("{\"tick\":0,\"room\":{\"meta\":{\"v\":1},\"players\":[{\"pos\":[1.5e-7,2],\"id\":\"p1\"},"
                         "{\"id\":\"p2\",\"pos\":[3,4]}]}}");
    uint8_t dw[MX_DIGEST_LEN];
    ck_assert_int_eq(mx_digest_of(want, dw), 0);
    ck_assert_int_eq(memcmp(root->dig, dw, MX_DIGEST_LEN), 0);
    mx_json_free(want);

    /* insert a member with a unicode key that sorts between others */
    ck_assert_int_eq(mx_json_obj_set(p1, "\xf0\x9f\x98\x80", 4, mx_json_str("x\ny", 3)), 0);
    ck_assert_int_eq(mx_json_obj_set(p1, "\xef\xbc\x81", 3, mx_json_bool(1)), 0);
    players->fresh = room->fresh = root->fresh = 0;
    ck_assert_int_eq(check_against_scratch(root), 0);

    /* remove an array element, insert another at the front */
    mx_json_free(mx_json_arr_take(players, 1));
    ck_assert_int_eq(mx_json_arr_insert(players, 0, mx_json_arr()), 0);
    room->fresh = root->fresh = 0;
    ck_assert_int_eq(check_against_scratch(root), 0);

    /* take a member, then replace a whole subtree */
    mx_json_free(mx_json_obj_take(room, "meta", 4));
    root->fresh = 0;
    ck_assert_int_eq(check_against_scratch(root), 0);
    ck_assert_int_eq(mx_json_obj_set(root, "room", 4, parse("[null,{\"k\":[]}]")), 0);
    ck_assert_int_eq(check_against_scratch(root), 0);
    want = parse("{\"room\":[null,{\"k\":[]}],\"tick\":0}");
    ck_assert_int_eq(mx_digest_of(want, dw), 0);
    ck_assert_int_eq(memcmp(root->dig, dw, MX_DIGEST_LEN), 0);
    ck_assert_uint_eq(root->jsize, want->jsize);
    mx_json_free(want);
    mx_json_free(root);
}
END_TEST

/* Random mutations of random documents; after each one the incrementally
 * refreshed tree must agree node for node with a from-scratch refresh. */
static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t rnd(size_t n) { return n ? (size_t)(rng() % n) : 0; }

static const char *const KEYS[] = {
    "", "a", "b", "aa", "10", "9", "\xc3\xa9", "\xf0\x9f\x98\x80", "\xef\xbc\x81", "\xee\x80\x80",
    "a\nb", "q\"", "\x01", "long key with spaces",
};
static const char *const STRS[] = {
    "", "x", "h\xc3\xa9llo", "\xf0\x9d\x84\x9e", "tab\there", "\x1f\x01", "quote\"back\\", "\xe2\x80\xa8",
};
static const double NUMS[] = {0, 1, -1, 1.5, 0.1, 1e21, 1e-7, 1.5e-7, 5e-324, 1.7976931348623157e308,
                              9007199254740992.0, 123456789012345680000.0, 100, 1e20, 0.000001, 123.456, -1.5};

static mx_val *rand_val(int depth)
{
    size_t kind = depth <= 0 ? rnd(5) : rnd(8);
    switch (kind) {
    case 0:
        return mx_json_null();
    case 1:
        return mx_json_bool((int)rnd(2));
    case 2:
        return mx_json_num(NUMS[rnd(sizeof(NUMS) / sizeof(NUMS[0]))]);
    case 3:
        return mx_json_num((double)(int64_t)rng() / 1024.0);
    case 4: {
        const char *s = STRS[rnd(sizeof(STRS) / sizeof(STRS[0]))];
        return mx_json_str(s, strlen(s));
    }
    case 5:
    case 6: {
        mx_val *a = mx_json_arr();
        size_t n = rnd(5);
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(mx_json_arr_insert(a, a->u.arr.len, rand_val(depth - 1)), 0);
        return a;
    }
    default: {
        mx_val *o = mx_json_obj();
        size_t n = rnd(6);
        for (size_t i = 0; i < n; i++) {
            const char *k = KEYS[rnd(sizeof(KEYS) / sizeof(KEYS[0]))];
            ck_assert_int_eq(mx_json_obj_set(o, k, strlen(k), rand_val(depth - 1)), 0);
        }
        return o;
    }
    }
}

static int is_container(const mx_val *v) { return v->type == MX_ARRAY || v->type == MX_OBJECT; }

START_TEST(incremental_random)
{
    rng_state = 0x5eed0000ULL + (uint64_t)_i;
    mx_val *root = mx_json_obj();
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(mx_json_obj_set(root, KEYS[i], strlen(KEYS[i]), rand_val(5)), 0);
    ck_assert_int_eq(check_against_scratch(root), 0);
    for (int step = 0; step < 400; step++) {
        /* walk down to a random container, remembering the path */
        mx_val *path[64];
        size_t depth = 0;
        mx_val *cur = root;
        path[depth++] = cur;
        while (depth < 64 && rnd(3) != 0) {
            size_t n = cur->type == MX_ARRAY ? cur->u.arr.len : cur->u.obj.len;
            if (!n)
                break;
            size_t k = rnd(n);
            mx_val *c = cur->type == MX_ARRAY ? cur->u.arr.items[k] : cur->u.obj.m[k].val;
            if (!is_container(c))
                break;
            cur = path[depth++] = c;
        }
        /* mutate it */
        if (cur->type == MX_ARRAY) {
            size_t n = cur->u.arr.len;
            switch (n ? rnd(3) : 0) {
            case 0:
                ck_assert_int_eq(mx_json_arr_insert(cur, rnd(n + 1), rand_val(3)), 0);
                break;
            case 1:
                mx_json_free(mx_json_arr_take(cur, rnd(n)));
                break;
            default:
                mx_json_free(mx_json_arr_replace(cur, rnd(n), rand_val(3)));
                break;
            }
        } else {
            size_t n = cur->u.obj.len;
            if (n && rnd(3) == 0) {
                const struct mx_member *m = &cur->u.obj.m[rnd(n)];
                char key[64];
                size_t kl = m->keylen;
                memcpy(key, m->key, kl); /* take frees m->key */
                mx_json_free(mx_json_obj_take(cur, key, kl));
            } else {
                const char *k = KEYS[rnd(sizeof(KEYS) / sizeof(KEYS[0]))];
                ck_assert_int_eq(mx_json_obj_set(cur, k, strlen(k), rand_val(3)), 0);
            }
        }
        ck_assert(!cur->fresh); /* the API marks the mutated container */
        for (size_t i = 0; i < depth; i++)
            path[i]->fresh = 0;
        int bad = check_against_scratch(root);
        ck_assert_msg(bad == 0, "seed %d step %d: %d nodes disagree after an edit at depth %zu", _i, step, bad,
                      depth);
    }
    mx_json_free(root);
}
END_TEST

/* ---- hex ---------------------------------------------------------------- */

START_TEST(hex_format_and_parse)
{
    uint8_t d[MX_DIGEST_LEN], e[MX_DIGEST_LEN];
    for (int i = 0; i < MX_DIGEST_LEN; i++)
        d[i] = (uint8_t)(i * 17 + 3);
    char h[MX_CHECKSUM_HEX];
    mx_digest_hex(d, h);
    ck_assert_uint_eq(strlen(h), 32);
    ck_assert_str_eq(h, "031425364758697a8b9cadbecfe0f102");
    ck_assert_int_eq(mx_digest_parse_hex(h, 32, e), 0);
    ck_assert_int_eq(memcmp(d, e, MX_DIGEST_LEN), 0);
    ck_assert_int_eq(mx_digest_parse_hex("031425364758697A8B9CADBECFE0F102", 32, e), 0);
    ck_assert_int_eq(memcmp(d, e, MX_DIGEST_LEN), 0);
    ck_assert_int_eq(mx_digest_parse_hex("4EE3fdf7a7a38af04951408152eaad1f", 32, e), 0);
    ck_hex_eq(e, "4ee3fdf7a7a38af04951408152eaad1f");

    /* errors leave out untouched */
    uint8_t keep[MX_DIGEST_LEN];
    memcpy(keep, e, MX_DIGEST_LEN);
    ck_assert_int_eq(mx_digest_parse_hex("4ee3fdf7a7a38af04951408152eaad1", 31, e), -1);
    ck_assert_int_eq(mx_digest_parse_hex("4ee3fdf7a7a38af04951408152eaad1f0", 33, e), -1);
    ck_assert_int_eq(mx_digest_parse_hex("4ee3fdf7a7a38af04951408152eaad1g", 32, e), -1);
    ck_assert_int_eq(mx_digest_parse_hex("4ee3fdf7a7a38af04951408152eaad1 ", 32, e), -1);
    ck_assert_int_eq(mx_digest_parse_hex(" ee3fdf7a7a38af04951408152eaad1f", 32, e), -1);
    ck_assert_int_eq(mx_digest_parse_hex("4ee3fdf7a7a38af0-951408152eaad1f", 32, e), -1);
    ck_assert_int_eq(mx_digest_parse_hex("4ee3fdf7a7a38af0\0" "951408152eaad1f", 32, e), -1);
    ck_assert_int_eq(mx_digest_parse_hex("", 0, e), -1);
    ck_assert_int_eq(mx_digest_parse_hex(NULL, 0, e), -1);
    ck_assert_int_eq(memcmp(keep, e, MX_DIGEST_LEN), 0);
    /* len bounds the read: a longer buffer parses its first 32 characters */
    ck_assert_int_eq(mx_digest_parse_hex("4ee3fdf7a7a38af04951408152eaad1fXYZ", 32, e), 0);
    ck_hex_eq(e, "4ee3fdf7a7a38af04951408152eaad1f");
}
END_TEST

Suite *mx_suite_digest(void)
{
    Suite *s = suite_create("digest");
    TCase *tc = tcase_create("vectors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, vectors_file_sane);
    tcase_add_test(tc, vectors_jansson);
    tcase_add_test(tc, vectors_tree);
    tcase_add_test(tc, protocol_reference);
    suite_add_tcase(s, tc);

    tc = tcase_create("core");
    tcase_add_test(tc, string_and_key_digests);
    tcase_add_test(tc, negative_zero_and_integers);
    tcase_add_test(tc, jansson_insertion_order);
    tcase_add_test(tc, jsize_escapes);
    tcase_add_test(tc, hex_format_and_parse);
    suite_add_tcase(s, tc);

    tc = tcase_create("incremental");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fresh_subtrees_are_skipped);
    tcase_add_test(tc, incremental_deep_edits);
    tcase_add_loop_test(tc, incremental_random, 0, 8);
    suite_add_tcase(s, tc);
    return s;
}
