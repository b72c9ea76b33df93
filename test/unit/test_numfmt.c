/* Unit tests for numfmt.c: mx_numfmt must print every double exactly as
 * JavaScript's String(x) does. test/vectors/numbers.json holds ~20000
 * [IEEE-754 bits as 16 hex digits, String(x)] pairs written by Node
 * (scripts/gen-number-vectors.mjs); the named cases below document the
 * layout rules.
 *
 * Vectors are read from $MX_VECTORS_DIR, else test/vectors (tests run from
 * the repository root). */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "movexd/numfmt.h"

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

static double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

/* Parses exactly 16 hex digits; returns 0 or -1. */
static int parse_bits(const char *h, uint64_t *out)
{
    uint64_t v = 0;
    if (!h || strlen(h) != 16)
        return -1;
    for (int i = 0; i < 16; i++) {
        char c = h[i];
        int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (x < 0)
            return -1;
        v = v << 4 | (uint64_t)x;
    }
    *out = v;
    return 0;
}

START_TEST(node_vectors)
{
    json_t *vs = load_vectors("numbers.json");
    ck_assert_uint_ge(json_array_size(vs), 10000);
    int bad = 0;
    size_t i;
    json_t *t;
    json_array_foreach(vs, i, t)
    {
        const char *hex = json_string_value(json_array_get(t, 0));
        const char *want = json_string_value(json_array_get(t, 1));
        uint64_t bits;
        ck_assert_msg(parse_bits(hex, &bits) == 0 && want, "numbers.json[%zu]: malformed entry", i);
        double d = from_bits(bits);
        ck_assert_msg(isfinite(d), "numbers.json[%zu]: %s is not finite", i, hex);
        char got[MX_NUMFMT_MAX];
        memset(got, 0x7f, sizeof(got));
        size_t n = mx_numfmt(d, got);
        if (n != strlen(got) || strcmp(got, want) != 0) {
            if (bad < 50)
                fprintf(stderr, "numbers.json[%zu] bits %s (%.17g): mx_numfmt \"%s\" (len %zu), Node \"%s\"\n", i,
                        hex, d, got, n, want);
            bad++;
        }
    }
    json_decref(vs);
    ck_assert_msg(bad == 0, "%d of the Node number vectors differ from mx_numfmt", bad);
}
END_TEST

#define ck_numfmt(d, want)                                                      \
    do {                                                                        \
        char got_[MX_NUMFMT_MAX];                                               \
        size_t n_ = mx_numfmt((d), got_);                                       \
        ck_assert_msg(strcmp(got_, (want)) == 0, "mx_numfmt(%s) = \"%s\", want \"%s\"", #d, got_, (want)); \
        ck_assert_uint_eq(n_, strlen(want));                                    \
    } while (0)

START_TEST(named_cases)
{
    /* zero and sign */
    ck_numfmt(0.0, "0");
    ck_numfmt(-0.0, "0");
    ck_numfmt(1.0, "1");
    ck_numfmt(-1.0, "-1");
    ck_numfmt(-1.5, "-1.5");
    /* plain integers up to 21 digits */
    ck_numfmt(100.0, "100");
    ck_numfmt(1e20, "100000000000000000000");
    ck_numfmt(123456789012345680000.0, "123456789012345680000");
    ck_numfmt(9007199254740992.0, "9007199254740992");
    ck_numfmt(9007199254740991.0, "9007199254740991");
    ck_numfmt(-9007199254740992.0, "-9007199254740992");
    ck_numfmt(18446744073709551616.0, "18446744073709552000");
    /* exponent form from 1e21 */
    ck_numfmt(1e21, "1e+21");
    ck_numfmt(-1e21, "-1e+21");
    ck_numfmt(1.5e21, "1.5e+21");
    ck_numfmt(12345678901234567890123.0, "1.2345678901234568e+22");
    ck_numfmt(1e300, "1e+300");
    ck_numfmt(DBL_MAX, "1.7976931348623157e+308");
    ck_numfmt(-DBL_MAX, "-1.7976931348623157e+308");
    /* fixed notation with a fraction */
    ck_numfmt(0.1, "0.1");
    ck_numfmt(0.1 + 0.2, "0.30000000000000004");
    ck_numfmt(123.456, "123.456");
    ck_numfmt(1.0 / 3.0, "0.3333333333333333");
    ck_numfmt(2.0 / 3.0, "0.6666666666666666");
    ck_numfmt(4.35, "4.35");
    ck_numfmt(3.141592653589793, "3.141592653589793");
    ck_numfmt(100.5, "100.5");
    ck_numfmt(123456789012.5, "123456789012.5");
    /* small numbers: fixed down to 1e-6, exponent below */
    ck_numfmt(0.000001, "0.000001");
    ck_numfmt(0.0000015, "0.0000015");
    ck_numfmt(1e-7, "1e-7");
    ck_numfmt(1.5e-7, "1.5e-7");
    ck_numfmt(-1.5e-7, "-1.5e-7");
    ck_numfmt(9.999999999999997e-7, "9.999999999999997e-7"); /* next double below 1e-6 */
    ck_numfmt(1.2345e-10, "1.2345e-10");
    ck_numfmt(2.2250738585072014e-308, "2.2250738585072014e-308");
    ck_numfmt(5e-324, "5e-324");
    ck_numfmt(-5e-324, "-5e-324");
    ck_numfmt(1e-323, "1e-323");
    /* powers of two where the shortest digits are not printf's rounding */
    ck_numfmt(9007199254740994.0, "9007199254740994");
    ck_numfmt(1.0 / 1024.0, "0.0009765625");
    ck_numfmt(ldexp(1.0, 63), "9223372036854776000");
    ck_numfmt(ldexp(1.0, 70), "1.1805916207174113e+21");
    ck_numfmt(ldexp(1.0, -1074), "5e-324");
    ck_numfmt(ldexp(1.0, -1022), "2.2250738585072014e-308");
    ck_numfmt(ldexp(1.0, 1023), "8.98846567431158e+307");
    ck_numfmt(ldexp(1.0, -30), "9.313225746154785e-10");
    ck_numfmt(ldexp(1.0, 60), "1152921504606847000");
}
END_TEST

/* Whatever the digits, the text must read back as the same double and fit
 * the buffer with room to spare. */
START_TEST(round_trip_and_bounds)
{
    json_t *vs = load_vectors("numbers.json");
    int bad = 0;
    size_t longest = 0;
    size_t i;
    json_t *t;
    json_array_foreach(vs, i, t)
    {
        uint64_t bits;
        ck_assert_int_eq(parse_bits(json_string_value(json_array_get(t, 0)), &bits), 0);
        double d = from_bits(bits);
        char got[MX_NUMFMT_MAX];
        size_t n = mx_numfmt(d, got);
        if (n > longest)
            longest = n;
        if (strtod(got, NULL) != d) {
            if (bad < 20)
                fprintf(stderr, "mx_numfmt(%.17g) = \"%s\" does not read back\n", d, got);
            bad++;
        }
    }
    json_decref(vs);
    ck_assert_msg(bad == 0, "%d values do not round-trip", bad);
    ck_assert_uint_lt(longest, MX_NUMFMT_MAX);
}
END_TEST

/* mx_u64_digits: the integer path of mx_numfmt and of every u64 field. */
START_TEST(u64_digits)
{
    static const struct {
        unsigned long long v;
        const char *text;
    } cases[] = {{0, "0"}, {9, "9"}, {10, "10"}, {9007199254740991ull, "9007199254740991"},
                 {18446744073709551615ull, "18446744073709551615"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[20];
        size_t n = mx_u64_digits(cases[i].v, out);
        ck_assert_uint_eq(n, strlen(cases[i].text));
        ck_assert(memcmp(out, cases[i].text, n) == 0);
    }
    /* two digits at a time: every length, every boundary around a power of
     * ten, and a walk over many values, against snprintf */
    unsigned long long p = 1;
    for (int e = 0; e < 20; e++, p *= 10) {
        unsigned long long vs[] = {p - 1, p, p + 1, p + 9, p + 10, p + 99, p * 2 - 1};
        for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
            char out[20], want[24];
            size_t n = mx_u64_digits(vs[i], out);
            int w = snprintf(want, sizeof want, "%llu", vs[i]);
            ck_assert_uint_eq(n, (size_t)w);
            ck_assert(memcmp(out, want, n) == 0);
        }
    }
    for (unsigned long long v = 0, step = 1; v < 1000000000000000000ull; v += step, step += step / 7 + 1) {
        char out[20], want[24];
        size_t n = mx_u64_digits(v, out);
        int w = snprintf(want, sizeof want, "%llu", v);
        ck_assert_uint_eq(n, (size_t)w);
        ck_assert(memcmp(out, want, n) == 0);
    }
}
END_TEST

Suite *mx_suite_numfmt(void)
{
    Suite *s = suite_create("numfmt");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, named_cases);
    tcase_add_test(tc, u64_digits);
    tcase_add_test(tc, node_vectors);
    tcase_add_test(tc, round_trip_and_bounds);
    suite_add_tcase(s, tc);
    return s;
}
