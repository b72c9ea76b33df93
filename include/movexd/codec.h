/* codec.h - little-endian binary fields for WAL records and snapshots.
 *
 * Writers append to an mx_buf (allocation failure is sticky in the buffer).
 * Readers consume a bounded cursor; any read past the end sets `bad` and
 * returns zeros, so a decoder reads every field and checks `bad` once. */
#ifndef MOVEXD_CODEC_H
#define MOVEXD_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "movexd/buf.h"

static inline void mx_put_u8(mx_buf *b, uint8_t v) { mx_buf_append(b, &v, 1); }
static inline void mx_put_u32(mx_buf *b, uint32_t v)
{
    unsigned char t[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    mx_buf_append(b, t, 4);
}
static inline void mx_put_u64(mx_buf *b, uint64_t v)
{
    mx_put_u32(b, (uint32_t)v);
    mx_put_u32(b, (uint32_t)(v >> 32));
}
/* u32 length, then the bytes */
static inline void mx_put_bytes(mx_buf *b, const void *p, size_t n)
{
    mx_put_u32(b, (uint32_t)n);
    mx_buf_append(b, p, n);
}

typedef struct {
    const unsigned char *p;
    size_t left;
    int bad;
} mx_cursor;

static inline mx_cursor mx_cursor_of(const void *p, size_t n)
{
    mx_cursor c = {(const unsigned char *)p, n, 0};
    return c;
}
static inline const unsigned char *mx_take(mx_cursor *c, size_t n)
{
    if (c->bad || c->left < n) {
        c->bad = 1;
        return NULL;
    }
    const unsigned char *r = c->p;
    c->p += n;
    c->left -= n;
    return r;
}
static inline uint8_t mx_get_u8(mx_cursor *c)
{
    const unsigned char *p = mx_take(c, 1);
    return p ? p[0] : 0;
}
static inline uint32_t mx_get_u32(mx_cursor *c)
{
    const unsigned char *p = mx_take(c, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24 : 0;
}
static inline uint64_t mx_get_u64(mx_cursor *c)
{
    uint64_t lo = mx_get_u32(c);
    return lo | (uint64_t)mx_get_u32(c) << 32;
}
/* u32 length + bytes; returns a pointer into the input (not NUL-terminated) */
static inline const char *mx_get_bytes(mx_cursor *c, size_t *n)
{
    *n = mx_get_u32(c);
    const unsigned char *p = mx_take(c, *n);
    if (!p)
        *n = 0;
    return (const char *)p;
}
static inline void mx_get_raw(mx_cursor *c, void *out, size_t n)
{
    const unsigned char *p = mx_take(c, n);
    if (p)
        memcpy(out, p, n);
    else
        memset(out, 0, n);
}

#endif
