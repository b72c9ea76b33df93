/* numfmt.c - ECMAScript Number::toString(10) for finite doubles.
 *
 * Digits: the shortest decimal that reads back (strtod) as the same double
 * (see shortest() for the search); integers below 2^53 skip the search.
 * Near a rounding boundary the correctly rounded digits can fall outside
 * the double's interval while a neighbour (last digit +-1) falls inside it,
 * and ECMAScript wants the shortest such string (the closest, when several).
 * Layout: ECMA-262 Number::toString steps (integers up to 21 digits plainly,
 * fixed notation down to 1e-7, exponent form with an explicit sign).
 * Relies on the "C" locale, which the daemon never changes.
 */
#include "movexd/numfmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parse "%.*e" output ("d.ddde+XX") into an integer mantissa and exponent. */
static void split_e(const char *s, unsigned long long *m, int *e)
{
    unsigned long long v = 0;
    const char *p = s;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            v = v * 10 + (unsigned long long)(*p - '0');
    *m = v;
    *e = *p == 'e' ? atoi(p + 1) : 0;
}

static int reads_back(unsigned long long m, int e10, double d)
{
    char t[48];
    snprintf(t, sizeof(t), "%llue%d", m, e10);
    return strtod(t, NULL) == d;
}

/* Correctly rounded p-digit mantissa and exponent of d. */
static void rounded(double d, int p, unsigned long long *m, int *e10)
{
    char buf[40];
    int e;
    snprintf(buf, sizeof(buf), "%.*e", p - 1, d);
    split_e(buf, m, &e);
    *e10 = e - (p - 1);
}

/* Shortest digits that read back as d. Reading back is monotonic in p for
 * correctly rounded digits (p + 1 digits are at least as close), so a
 * binary search finds the least such p0. At p0 - 1 a neighbour of the
 * rounded digits can still read back when d's rounding interval is lopsided
 * (d a power of two); below p0 - 1 the digit spacing is too coarse for that
 * (it would make the rounded digits at p0 - 1 read back already). */
static void shortest(double d, unsigned long long *best, int *best_e)
{
    int lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        unsigned long long m;
        int e10;
        rounded(d, mid, &m, &e10);
        if (reads_back(m, e10, d))
            hi = mid;
        else
            lo = mid + 1;
    }
    rounded(d, lo, best, best_e);
    if (lo > 1) {
        unsigned long long m;
        int e10;
        rounded(d, lo - 1, &m, &e10);
        int dn = m > 1 && reads_back(m - 1, e10, d);
        int up = reads_back(m + 1, e10, d);
        if (dn && up) {
            long double dl = fabsl((long double)(m - 1) * powl(10, e10) - d);
            long double dh = fabsl((long double)(m + 1) * powl(10, e10) - d);
            up = dh < dl;
            dn = !up;
        }
        if (dn || up) {
            *best = dn ? m - 1 : m + 1;
            *best_e = e10;
        }
    }
}

/* "00".."99": two digits per division (half the divisions of one at a
 * time; the encoders format 4-6 integers per action) */
static const char DIGITS2[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                 "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                 "8081828384858687888990919293949596979899";

size_t mx_u64_digits(unsigned long long v, char out[20])
{
    char t[20];
    size_t k = sizeof(t);
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        k -= 2;
        memcpy(t + k, DIGITS2 + 2 * r, 2);
    }
    if (v >= 10) {
        k -= 2;
        memcpy(t + k, DIGITS2 + 2 * v, 2);
    } else {
        t[--k] = (char)('0' + v);
    }
    memcpy(out, t + k, sizeof(t) - k);
    return sizeof(t) - k;
}

size_t mx_numfmt(double d, char out[MX_NUMFMT_MAX])
{
    if (d == 0 || !isfinite(d)) { /* -0 prints as 0; non-finite never reaches here */
        strcpy(out, isnan(d) ? "NaN" : d == 0 ? "0" : d > 0 ? "Infinity" : "-Infinity");
        return strlen(out);
    }
    char *o = out;
    if (d < 0) {
        *o++ = '-';
        d = -d;
    }
    unsigned long long best;
    int best_e; /* value = best * 10^best_e */
    if (d < 9007199254740992.0 && d == (double)(unsigned long long)d) {
        /* integers below 2^53 are exact: their digits are the shortest form
         * and print plainly (at most 16 digits); no snprintf on this path,
         * which every counter and index takes */
        o += mx_u64_digits((unsigned long long)d, o);
        *o = '\0';
        return (size_t)(o - out);
    } else {
        shortest(d, &best, &best_e);
    }
    /* digits of best, trailing zeros moved into the exponent */
    while (best % 10 == 0 && best) {
        best /= 10;
        best_e++;
    }
    char dg[24];
    int k = snprintf(dg, sizeof(dg), "%llu", best);
    int n = k + best_e; /* value = 0.dg * 10^n */
    if (k <= n && n <= 21) {
        memcpy(o, dg, (size_t)k);
        o += k;
        for (int i = 0; i < n - k; i++)
            *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, dg, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, dg + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -n; i++)
            *o++ = '0';
        memcpy(o, dg, (size_t)k);
        o += k;
    } else {
        int x = n - 1;
        *o++ = dg[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, dg + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += sprintf(o, "e%c%d", x < 0 ? '-' : '+', x < 0 ? -x : x);
    }
    *o = '\0';
    return (size_t)(o - out);
}
