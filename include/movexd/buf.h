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
int mx_buf_reserve(mx_buf *b, size_t extra);
int mx_buf_append(mx_buf *b, const void *p, size_t n);
int mx_buf_puts(mx_buf *b, const char *s);
int mx_buf_putc(mx_buf *b, char c);
int mx_buf_printf(mx_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int mx_buf_put_u64(mx_buf *b, unsigned long long v);
int mx_buf_put_hex(mx_buf *b, const unsigned char *p, size_t n);

static inline char *mx_buf_data(const mx_buf *b) { return b->mem ? b->mem + b->pre : (char *)""; }

/* Hand the allocation to the caller (data at returned + pre); b is reset to
 * empty. Returns NULL when empty or after OOM. */
char *mx_buf_steal(mx_buf *b);

#endif
