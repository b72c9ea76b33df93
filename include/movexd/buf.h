/* buf.h - a growable byte buffer for building wire text and records.
 *
 * The buffer keeps `pre` spare bytes in front of the data (libwebsockets
 * needs LWS_PRE bytes before a frame's payload to write its header in
 * place), so a frame can be built once and handed to the send queues
 * without copying. Data is always NUL-terminated for convenience.
 */
#ifndef MOVEXD_BUF_H
#define MOVEXD_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

typedef struct {
    char *mem;  /* allocation; data starts at mem + pre */
    size_t pre; /* reserved bytes before data */
    size_t len; /* bytes of data */
    size_t cap; /* bytes available for data (excluding the NUL) */
    int oom;    /* set once an append failed; later appends are no-ops */
} mx_buf;

void mx_buf_init(mx_buf *b, size_t pre);
void mx_buf_free(mx_buf *b);
void mx_buf_reset(mx_buf *b); /* len = 0, keeps memory */
/* The slow path of mx_buf_reserve: grow the allocation. */
int mx_buf_grow(mx_buf *b, size_t extra);

/* The appends are inline: encoders make a dozen small ones per message
 * (field names, digits, hex), and almost all of them fit. */
static inline int mx_buf_reserve(mx_buf *b, size_t extra)
{
    if (!b->oom && b->mem && b->len + extra <= b->cap)
        return 0;
    return mx_buf_grow(b, extra);
}

static inline int mx_buf_append(mx_buf *b, const void *p, size_t n)
{
    if (mx_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->mem + b->pre + b->len, p, n);
    b->len += n;
    b->mem[b->pre + b->len] = '\0';
    return 0;
}

/* strlen of a literal folds to a constant once inlined */
static inline int mx_buf_puts(mx_buf *b, const char *s) { return mx_buf_append(b, s, strlen(s)); }

static inline int mx_buf_putc(mx_buf *b, char c)
{
    if (mx_buf_reserve(b, 1))
        return -1;
    b->mem[b->pre + b->len++] = c;
    b->mem[b->pre + b->len] = '\0';
    return 0;
}
int mx_buf_printf(mx_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int mx_buf_put_u64(mx_buf *b, unsigned long long v);
int mx_buf_put_hex(mx_buf *b, const unsigned char *p, size_t n);
/* The 2n lowercase hex digits of p[0..n) at out (no NUL). */
void mx_hex_encode(char *out, const unsigned char *p, size_t n);

static inline char *mx_buf_data(const mx_buf *b) { return b->mem ? b->mem + b->pre : (char *)""; }

/* Hand the allocation to the caller (data at returned + pre); b is reset to
 * empty. Returns NULL when empty or after OOM. */
char *mx_buf_steal(mx_buf *b);

#endif
