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
    char tmp[20];
    return mx_buf_append(b, tmp, mx_u64_digits(v, tmp));
}

int mx_buf_put_hex(mx_buf *b, const unsigned char *p, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    if (mx_buf_reserve(b, n * 2))
        return -1;
    char *o = b->mem + b->pre + b->len;
    for (size_t i = 0; i < n; i++) {
        o[2 * i] = hx[p[i] >> 4];
        o[2 * i + 1] = hx[p[i] & 15];
    }
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
