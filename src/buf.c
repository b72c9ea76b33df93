/* buf.c - growable byte buffer with reserved headroom; see buf.h.
 * Allocation failure is sticky (b->oom) so encoders can append freely and
 * check once at the end. */
#include "movexd/buf.h"
#include "movexd/alloc.h"
#include "movexd/numfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mx_buf_init(mx_buf *b, size_t pre)
{
    memset(b, 0, sizeof(*b));
    b->pre = pre;
}

void mx_buf_free(mx_buf *b)
{
    mx_block_free(b->mem);
    b->mem = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void mx_buf_reset(mx_buf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->mem)
        b->mem[b->pre] = '\0';
}

int mx_buf_grow(mx_buf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra <= b->cap && b->mem)
        return 0;
    /* 256: a protocol reply, a log entry or a fwd fits in the first
     * allocation (growing from 64 cost two or three reallocs per message) */
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + extra) {
        if (ncap > ((size_t)-1) / 4) {
            b->oom = 1;
            return -1;
        }
        ncap *= 2;
    }
    /* a first allocation of a reply, entry or frame size is a block reused
     * from one freed earlier (alloc.h) */
    char *m = b->mem ? mx_realloc(b->mem, b->pre + ncap + 1) : mx_block_alloc(b->pre + ncap + 1);
    if (!m) {
        b->oom = 1;
        return -1;
    }
    b->mem = m;
    b->cap = ncap;
    return 0;
}

int mx_buf_printf(mx_buf *b, const char *fmt, ...)
{
    va_list ap;
    char tmp[256];
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(tmp))
        return mx_buf_append(b, tmp, (size_t)n);
    if (mx_buf_reserve(b, (size_t)n))
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->mem + b->pre + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int mx_buf_put_u64(mx_buf *b, unsigned long long v)
{
    if (mx_buf_reserve(b, 20))
        return -1;
    b->len += mx_u64_digits(v, b->mem + b->pre + b->len);
    b->mem[b->pre + b->len] = '\0';
    return 0;
}

void mx_hex_encode(char *o, const unsigned char *p, size_t n)
{
    /* both hex digits of each byte: one load and one 2-byte store */
    static const char pairs[513] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
                                   "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
                                   "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
                                   "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
                                   "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
                                   "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
                                   "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
                                   "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    for (size_t i = 0; i < n; i++)
        memcpy(o + 2 * i, pairs + 2 * p[i], 2);
}

int mx_buf_put_hex(mx_buf *b, const unsigned char *p, size_t n)
{
    if (mx_buf_reserve(b, n * 2))
        return -1;
    mx_hex_encode(b->mem + b->pre + b->len, p, n);
    b->len += n * 2;
    b->mem[b->pre + b->len] = '\0';
    return 0;
}

char *mx_buf_steal(mx_buf *b)
{
    if (b->oom || !b->mem) {
        mx_buf_free(b);
        return NULL;
    }
    char *m = b->mem;
    b->mem = NULL;
    b->len = b->cap = 0;
    return m;
}
