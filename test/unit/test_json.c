/* Unit tests for json.c: sorted objects (UTF-16 key order), mutation,
 * copy/equality, jansson conversion and JSON.stringify-compatible output. */
#include <check.h>
#include <string.h>

#include "movexd/json.h"

static mx_val *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, &e);
    ck_assert_msg(j != NULL, "parse %s: %s", text, e.text);
    mx_val *v = mx_json_from_jansson(j, 0, NULL);
    json_decref(j);
    ck_assert_ptr_nonnull(v);
    return v;
}

/* dump(parse(in)) == out */
#define ck_roundtrip(in, out)                                                   \
    do {                                                                        \
        mx_val *v_ = parse(in);                                                 \
        mx_buf b_;                                                              \
        mx_buf_init(&b_, 0);                                                    \
        ck_assert_int_eq(mx_json_dump(v_, &b_), 0);                             \
        ck_assert_str_eq(mx_buf_data(&b_), out);                                \
        mx_buf_free(&b_);                                                       \
        mx_json_free(v_);                                                       \
    } while (0)

START_TEST(dump_sorted_and_numbers)
{
    ck_roundtrip("{\"b\":1,\"a\":[null,true,false]}", "{\"a\":[null,true,false],\"b\":1}");
    ck_roundtrip("[1.0,0.1,1e21,-0.0,5e-324,123456789012345678901]",
                 "[1,0.1,1e+21,0,5e-324,123456789012345680000]");
    ck_roundtrip("\"a\\\"b\\\\c\\n\\u0001\\u001f é\"", "\"a\\\"b\\\\c\\n\\u0001\\u001f é\"");
    /* UTF-16 order: U+FF01 sorts after U+1F600 (surrogates D83D..), é before both */
    ck_roundtrip("{\"！\":1,\"😀\":2,\"é\":3}", "{\"é\":3,\"😀\":2,\"！\":1}");
    ck_roundtrip("{\"10\":1,\"9\":2,\"\":0}", "{\"\":0,\"10\":1,\"9\":2}");
}
END_TEST

START_TEST(keycmp_order)
{
    ck_assert_int_lt(mx_json_keycmp("a", 1, "b", 1), 0);
    ck_assert_int_lt(mx_json_keycmp("a", 1, "ab", 2), 0);
    ck_assert_int_eq(mx_json_keycmp("ab", 2, "ab", 2), 0);
    ck_assert_int_gt(mx_json_keycmp("\xef\xbc\x81", 3, "\xf0\x9f\x98\x80", 4), 0); /* U+FF01 > U+1F600 */
    ck_assert_int_lt(mx_json_keycmp("\xed\x9f\xbf", 3, "\xf0\x9f\x98\x80", 4), 0); /* U+D7FF < U+1F600 */
    ck_assert_int_lt(mx_json_keycmp("\xc3\xa9", 2, "\xef\xbc\x81", 3), 0);
}
END_TEST

START_TEST(object_mutation)
{
    mx_val *o = mx_json_obj();
    ck_assert_int_eq(mx_json_obj_set(o, "b", 1, mx_json_num(2)), 0);
    ck_assert_int_eq(mx_json_obj_set(o, "a", 1, mx_json_num(1)), 0);
    ck_assert_int_eq(mx_json_obj_set(o, "b", 1, mx_json_num(3)), 0); /* replace */
    ck_assert_uint_eq(o->u.obj.len, 2);
    ck_assert_str_eq(o->u.obj.m[0].key, "a");
    ck_assert(mx_json_obj_get(o, "b", 1)->u.num == 3);
    ck_assert_ptr_null(mx_json_obj_get(o, "c", 1));
    mx_val *t = mx_json_obj_take(o, "a", 1);
    ck_assert_ptr_nonnull(t);
    ck_assert(t->u.num == 1);
    mx_json_free(t);
    ck_assert_ptr_null(mx_json_obj_take(o, "a", 1));
    ck_assert_uint_eq(o->u.obj.len, 1);
    mx_json_free(o);
}
END_TEST

START_TEST(array_mutation)
{
    mx_val *a = mx_json_arr();
    ck_assert_int_eq(mx_json_arr_insert(a, 0, mx_json_num(2)), 0);
    ck_assert_int_eq(mx_json_arr_insert(a, 0, mx_json_num(1)), 0);
    ck_assert_int_eq(mx_json_arr_insert(a, 2, mx_json_num(3)), 0);
    mx_val *bad = mx_json_num(9);
    ck_assert_int_eq(mx_json_arr_insert(a, 5, bad), -1);
    mx_json_free(bad);
    mx_val *old = mx_json_arr_replace(a, 1, mx_json_str("x", 1));
    ck_assert(old->u.num == 2);
    mx_json_free(old);
    mx_val *t = mx_json_arr_take(a, 0);
    mx_json_free(t);
    mx_buf b;
    mx_buf_init(&b, 0);
    mx_json_dump(a, &b);
    ck_assert_str_eq(mx_buf_data(&b), "[\"x\",3]");
    mx_buf_free(&b);
    ck_assert_ptr_null(mx_json_arr_take(a, 2));
    mx_json_free(a);
}
END_TEST

START_TEST(copy_equal)
{
    mx_val *a = parse("{\"x\":[1,{\"y\":\"z\"}],\"n\":null}");
    mx_val *b = mx_json_copy(a);
    ck_assert(mx_json_equal(a, b));
    mx_val *c = parse("{\"n\":null,\"x\":[1,{\"y\":\"z\"}]}");
    ck_assert(mx_json_equal(a, c));
    mx_val *d = parse("{\"n\":null,\"x\":[1,{\"y\":\"w\"}]}");
    ck_assert(!mx_json_equal(a, d));
    mx_val *e = parse("{\"n\":null,\"x\":[1.0,{\"y\":\"z\"}]}");
    ck_assert(mx_json_equal(a, e)); /* 1 and 1.0 are one number */
    mx_json_free(a);
    mx_json_free(b);
    mx_json_free(c);
    mx_json_free(d);
    mx_json_free(e);
}
END_TEST

START_TEST(depth_limit)
{
    json_t *j = json_loads("[[[[1]]]]", JSON_DECODE_ANY, NULL);
    /* containers count, scalars do not */
    ck_assert_int_eq(mx_json_depth(j, 10), 4);
    ck_assert_int_eq(mx_json_depth(j, 2), 3);
    json_t *flat = json_loads("{\"a\":1,\"b\":\"x\"}", 0, NULL);
    ck_assert_int_eq(mx_json_depth(flat, 1), 1);
    json_decref(flat);
    json_t *scalar = json_loads("7", JSON_DECODE_ANY, NULL);
    ck_assert_int_eq(mx_json_depth(scalar, 1), 0);
    json_decref(scalar);
    const char *why = NULL;
    ck_assert_ptr_null(mx_json_from_jansson(j, 3, &why));
    ck_assert_ptr_nonnull(why);
    mx_val *v = mx_json_from_jansson(j, 4, &why);
    ck_assert_ptr_nonnull(v);
    mx_json_free(v);
    json_decref(j);
}
END_TEST

START_TEST(dump_jansson_numbers)
{
    json_t *j = json_loads("{\"a\":1.0,\"b\":0.1,\"c\":1e21,\"d\":7}", 0, NULL);
    mx_buf b;
    mx_buf_init(&b, 0);
    ck_assert_int_eq(mx_json_dump_jansson(j, &b), 0);
    ck_assert_str_eq(mx_buf_data(&b), "{\"a\":1,\"b\":0.1,\"c\":1e+21,\"d\":7}");
    mx_buf_free(&b);
    json_decref(j);
}
END_TEST

Suite *mx_suite_json(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, dump_sorted_and_numbers);
    tcase_add_test(tc, keycmp_order);
    tcase_add_test(tc, object_mutation);
    tcase_add_test(tc, array_mutation);
    tcase_add_test(tc, copy_equal);
    tcase_add_test(tc, depth_limit);
    tcase_add_test(tc, dump_jansson_numbers);
    suite_add_tcase(s, tc);
    return s;
}
