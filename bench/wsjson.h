/* wsjson.h - the pieces bench/loadgen.c and bench/ceiling.c share: a scanner
 * of a JSON object's top-level members (spans into the message, nothing
 * allocated), the encoding and decoding of a WebSocket frame header, and a
 * realloc that exits when memory runs out (a benchmark has nothing to save).
 *
 * The scanner trusts its input to be JSON from a known peer: it skips nested
 * values by counting brackets outside strings and never validates numbers or
 * escapes; a malformed message makes scan_object() return false, never read
 * past the end. Header-only (static functions): each program is one file.
 */
#ifndef BENCH_WSJSON_H
#define BENCH_WSJSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return q;
}

struct span {
    const char *p;
    uint32_t n;
};

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at '"': returns the byte after the closing quote, or NULL */
static const char *skip_string(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* skips one JSON value; NULL on malformed input */
static const char *skip_value(const char *p, const char *e)
{
    p = skip_ws(p, e);
    if (p >= e)
        return NULL;
    if (*p == '"')
        return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; p < e; p++) {
            if (*p == '"') {
                p = skip_string(p, e);
                if (!p)
                    return NULL;
                p--;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
        }
        return NULL;
    }
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ')
        p++;
    return p;
}

static bool key_is(const char *k, uint32_t kn, const char *lit)
{
    size_t l = strlen(lit);
    return kn == l && !memcmp(k, lit, l);
}

/* Calls back for each top-level member of the object at p..e. */
typedef void (*member_fn)(void *ctx, const char *k, uint32_t kn, const char *v, const char *ve);
static bool scan_object(const char *p, const char *e, member_fn fn, void *ctx)
{
    p = skip_ws(p, e);
    if (p >= e || *p != '{')
        return false;
    p++;
    for (;;) {
        p = skip_ws(p, e);
        if (p < e && *p == '}')
            return true;
        if (p >= e || *p != '"')
            return false;
        const char *k = p + 1, *ke = skip_string(p, e);
        if (!ke)
            return false;
        p = skip_ws(ke, e);
        if (p >= e || *p != ':')
            return false;
        const char *v = skip_ws(p + 1, e), *ve = skip_value(v, e);
        if (!ve)
            return false;
        fn(ctx, k, (uint32_t)(ke - 1 - k), v, ve);
        p = skip_ws(ve, e);
        if (p < e && *p == ',')
            p++;
        else
            return p < e && *p == '}';
    }
}

static struct span str_span(const char *v, const char *ve)
{
    struct span s = {0};
    if (v < ve && *v == '"' && ve - v >= 2) {
        s.p = v + 1;
        s.n = (uint32_t)(ve - v - 2);
    }
    return s;
}

/* Decodes the header at h (avail bytes). Returns false while incomplete;
 * else sets the header length (mask key included), the payload length and
 * where the mask key is (NULL when the frame is not masked). */
static bool ws_frame_head(const unsigned char *h, uint32_t avail, uint32_t *hl, uint64_t *len,
                          const unsigned char **mask)
{
    if (avail < 2)
        return false;
    uint32_t l = 2;
    uint64_t n = h[1] & 0x7f;
    if (n == 126) {
        if (avail < 4)
            return false;
        n = ((uint64_t)h[2] << 8) | h[3];
        l = 4;
    } else if (n == 127) {
        if (avail < 10)
            return false;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = (n << 8) | h[2 + i];
        l = 10;
    }
    *mask = NULL;
    if (h[1] & 0x80) {
        if (avail < l + 4)
            return false;
        *mask = h + l;
        l += 4;
    }
    *hl = l;
    *len = n;
    return true;
}

/* Writes a frame header (FIN set) for n payload bytes; returns its length.
 * With mask non-NULL the 4-byte key follows and the MASK bit is set. */
static uint32_t ws_put_head(unsigned char *h, int opcode, uint64_t n, const unsigned char *mask)
{
    uint32_t l;
    unsigned char m = mask ? 0x80 : 0;
    h[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        h[1] = (unsigned char)(m | n);
        l = 2;
    } else if (n < 65536) {
        h[1] = m | 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        l = 4;
    } else {
        h[1] = m | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)(n >> (56 - 8 * i));
        l = 10;
    }
    if (mask) {
        memcpy(h + l, mask, 4);
        l += 4;
    }
    return l;
}

#endif
