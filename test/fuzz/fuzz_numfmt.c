/* fuzz_numfmt.c - libFuzzer harness for ECMAScript number formatting
 * (numfmt.c) and the state digest of arbitrary JSON (digest.c, json.c).
 *
 * Each input is used two ways:
 *  1. every 8-byte window (at offsets 0, 8, 16, ...; at most 16) is a
 *     double; each finite one is formatted with mx_numfmt and checked
 *     against a reference built from glibc's correctly rounded printf:
 *     strtod gives the same double back, no shorter digit string would,
 *     and the text follows Number::toString's layout rules exactly (when
 *     the reference's shortest digits are the correctly rounded ones);
 *  2. the whole input, parsed as JSON the way the server parses messages,
 *     must get the same digest uncached (mx_digest_jansson) and cached
 *     (mx_digest_of on the mx_val tree), serialize to text whose length is
 *     the cached size and that parses back to the same text and digest,
 *     and survive a deep copy (equal, same digest).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "movexd/digest.h"
#include "movexd/json.h"
#include "movexd/numfmt.h"

#define MAX_INPUT_BYTES (64 * 1024)
#define JFLAGS (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES)

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_numfmt: check failed: %s: ", #cond);         \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* ---- numbers ---- */

/* Digits of mantissa m (no trailing zeros) with decimal exponent so that
 * the value is 0.DIGITS * 10^n; returns the digit count k. */
static int digits_of(uint64_t m, int exp10, char *out, int *n)
{
    char tmp[24];
    int len = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)m);
    *n = exp10 + len; /* m * 10^exp10 = 0.tmp * 10^(exp10 + len) */
    while (len > 1 && tmp[len - 1] == '0')
        len--;
    memcpy(out, tmp, (size_t)len);
    out[len] = '\0';
    return len;
}

static int round_trips(uint64_t m, int exp10, double d)
{
    char s[48];
    snprintf(s, sizeof(s), "%llue%d", (unsigned long long)m, exp10);
    return strtod(s, NULL) == d;
}

/* Number::toString layout for positive digits s (k digits) and exponent n. */
static void es_layout(const char *s, int k, int n, char *out, size_t cap)
{
    (void)cap; /* callers pass 64 bytes: at most 17 digits + 21 zeros/6 + sign/exp */
    if (k <= n && n <= 21) {
        memcpy(out, s, (size_t)k);
        memset(out + k, '0', (size_t)(n - k));
        out[n] = '\0';
    } else if (0 < n && n <= 21) {
        snprintf(out, cap, "%.*s.%s", n, s, s + n);
    } else if (-6 < n && n <= 0) {
        memcpy(out, "0.", 2);
        memset(out + 2, '0', (size_t)-n);
        snprintf(out + 2 - n, cap - 2 + (size_t)n, "%s", s);
    } else if (k == 1) {
        snprintf(out, cap, "%se%c%d", s, n - 1 < 0 ? '-' : '+', abs(n - 1));
    } else {
        snprintf(out, cap, "%c.%se%c%d", s[0], s + 1, n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
}

static void check_number(double d)
{
    if (!isfinite(d))
        return;
    char got[MX_NUMFMT_MAX + 8];
    memset(got, 'X', sizeof(got));
    size_t len = mx_numfmt(d, got);
    CHECK(len < MX_NUMFMT_MAX && got[len] == '\0' && strlen(got) == len,
          "length %zu for %.17g", len, d);
    CHECK(strtod(got, NULL) == d, "\"%s\" does not read back as %.17g", got, d);
    if (d == 0) {
        CHECK(!strcmp(got, "0"), "zero printed as \"%s\"", got);
        return;
    }
    double a = fabs(d);
    const char *body = got;
    if (d < 0) {
        CHECK(got[0] == '-', "negative %.17g printed as \"%s\"", d, got);
        body++;
    }
    /* digits the output uses (significant, without trailing zeros) */
    char od[40];
    int ok = 0, seen_nonzero = 0;
    for (const char *q = body; *q && *q != 'e'; q++) {
        if (*q == '.')
            continue;
        CHECK(*q >= '0' && *q <= '9', "\"%s\": unexpected character", got);
        if (*q != '0')
            seen_nonzero = 1;
        if (seen_nonzero && ok < (int)sizeof(od) - 1)
            od[ok++] = *q;
    }
    while (ok > 1 && od[ok - 1] == '0')
        ok--;
    od[ok] = '\0';

    /* shortest reference: for p = 1..17 the correctly rounded p-digit
     * decimal, or one unit in its last place either side (near powers of
     * two the round-trip interval is lopsided) */
    for (int p = 1; p <= 17; p++) {
        char e[48];
        snprintf(e, sizeof(e), "%.*e", p - 1, a);
        uint64_t m = 0;
        const char *q = e;
        for (; *q && *q != 'e'; q++)
            if (*q >= '0' && *q <= '9')
                m = m * 10 + (uint64_t)(*q - '0');
        int exp10 = atoi(q + 1) - (p - 1); /* a ~ m * 10^exp10 */
        uint64_t cand[3] = {m, m - 1, m + 1};
        for (int c = 0; c < 3; c++) {
            if (cand[c] == 0 || !round_trips(cand[c], exp10, a))
                continue;
            char s[24];
            int n;
            int k = digits_of(cand[c], exp10, s, &n);
            CHECK(ok <= k, "\"%s\" has %d digits, %s (%d digits) reads back too", got, ok, s, k);
            if (c == 0) {
                /* the closest shortest digits: the layout must match exactly */
                char want[64];
                es_layout(s, k, n, want, sizeof(want));
                CHECK(!strcmp(body, want), "%.17g printed as \"%s\", Number::toString gives \"%s%s\"",
                      d, got, d < 0 ? "-" : "", want);
            }
            return;
        }
    }
}

/* ---- JSON digest ---- */

static char *dump(const mx_val *v, size_t *len)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    if (mx_json_dump(v, &b)) {
        mx_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    char *s = malloc(b.len + 1);
    if (s)
        memcpy(s, mx_buf_data(&b), b.len + 1);
    mx_buf_free(&b);
    return s;
}

static void check_json(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JFLAGS, NULL);
    if (!j)
        return;
    uint8_t d1[MX_DIGEST_LEN], d2[MX_DIGEST_LEN], d3[MX_DIGEST_LEN];
    CHECK(mx_digest_jansson(j, d1) == 0, "parsed JSON holds a non-finite number");
    const char *why = NULL;
    mx_val *v = mx_json_from_jansson(j, 0, &why);
    if (!v) {
        json_decref(j);
        return;
    }
    if (mx_digest_of(v, d2) == 0)
        CHECK(!memcmp(d1, d2, MX_DIGEST_LEN), "cached and uncached digests differ");

    char hex[MX_CHECKSUM_HEX];
    mx_digest_hex(d2, hex);
    CHECK(strlen(hex) == 32 && mx_digest_parse_hex(hex, 32, d3) == 0 && !memcmp(d2, d3, MX_DIGEST_LEN),
          "hex round trip of %s", hex);

    size_t len1 = 0, len2 = 0;
    char *t1 = dump(v, &len1);
    if (t1) {
        CHECK(len1 == v->jsize, "cached size %zu, serialization %zu bytes: %s", v->jsize, len1, t1);
        json_t *j2 = json_loadb(t1, len1, JFLAGS, NULL);
        CHECK(j2, "own serialization does not parse: %s", t1);
        mx_val *v2 = mx_json_from_jansson(j2, 0, NULL);
        json_decref(j2);
        if (v2) {
            char *t2 = dump(v2, &len2);
            if (t2) {
                CHECK(len1 == len2 && !memcmp(t1, t2, len1), "reparse changed the text:\n%s\n%s", t1, t2);
                free(t2);
            }
            if (mx_digest_of(v2, d3) == 0)
                CHECK(!memcmp(d2, d3, MX_DIGEST_LEN), "reparse changed the digest: %s", t1);
            mx_json_free(v2);
        }
        free(t1);
    }

    /* the jansson serializer (insertion order) digests the same */
    mx_buf b;
    mx_buf_init(&b, 0);
    if (mx_json_dump_jansson(j, &b) == 0) {
        json_t *j3 = json_loadb(mx_buf_data(&b), b.len, JFLAGS, NULL);
        CHECK(j3, "mx_json_dump_jansson output does not parse: %s", mx_buf_data(&b));
        CHECK(mx_digest_jansson(j3, d3) == 0 && !memcmp(d1, d3, MX_DIGEST_LEN),
              "mx_json_dump_jansson text digests differently: %s", mx_buf_data(&b));
        json_decref(j3);
    }
    mx_buf_free(&b);

    mx_val *c = mx_json_copy(v);
    if (c) {
        CHECK(mx_json_equal(v, c), "a deep copy is not equal");
        if (mx_digest_of(c, d3) == 0)
            CHECK(!memcmp(d2, d3, MX_DIGEST_LEN), "a deep copy digests differently");
        mx_json_free(c);
    }
    mx_json_free(v);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT_BYTES)
        return 0;
    for (size_t off = 0; off + 8 <= size && off < 16 * 8; off += 8) {
        double d;
        memcpy(&d, data + off, 8);
        check_number(d);
    }
    check_json(data, size);
    return 0;
}
