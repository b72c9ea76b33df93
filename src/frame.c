/* frame.c - refcounted outgoing messages; see frame.h.
 * Invariant: from mx_frame_from_buf on, the bytes at mx_frame_wire() are one
 * complete WebSocket text frame (RFC 6455 5.2: FIN, opcode 1, no mask, the
 * shortest length encoding) and never change while the frame is alive. */
#include "movexd/frame.h"
#include "movexd/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(MX_FRAME_PRE >= sizeof(mx_frame) + 10,
               "the headroom holds the frame struct and the longest WebSocket header");

mx_frame *mx_frame_from_buf(mx_buf *b)
{
    size_t len = b->len;
    if (b->oom || b->pre != MX_FRAME_PRE) {
        mx_buf_free(b);
        return NULL;
    }
    /* the struct goes at the start of the buffer's headroom (malloc'd
     * memory is aligned for it); the header ends where the payload starts */
    char *mem = mx_buf_steal(b);
    if (!mem)
        return NULL;
    mx_frame *f = (mx_frame *)(void *)mem;
    f->refs = 1;
    f->len = len;
    f->mem = mem;
    f->hlen = mx_frame_header(mem + MX_FRAME_PRE, len);
    return f;
}

unsigned mx_frame_header(char *end, size_t len)
{
    unsigned char h[10];
    unsigned n;
    h[0] = 0x81; /* FIN, text */
    if (len < 126) {
        h[1] = (unsigned char)len;
        n = 2;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    memcpy(end - n, h, n);
    return n;
}

void mx_frame_unref(mx_frame *f)
{
    if (f && --f->refs == 0)
        mx_block_free(f->mem); /* the struct is part of it; reused (alloc.h) */
}
