/* frame.c - refcounted outgoing messages; see frame.h. */
#include "movexd/frame.h"
#include "movexd/alloc.h"

#include <stdlib.h>

mx_frame *mx_frame_from_buf(mx_buf *b)
{
    size_t len = b->len;
    if (b->oom || b->pre != MX_FRAME_PRE) {
        mx_buf_free(b);
        return NULL;
    }
    mx_frame *f = mx_malloc(sizeof(*f));
    char *mem = f ? mx_buf_steal(b) : NULL;
    if (!mem) {
        free(f);
        mx_buf_free(b);
        return NULL;
    }
    f->refs = 1;
    f->len = len;
    f->mem = mem;
    return f;
}

void mx_frame_unref(mx_frame *f)
{
    if (f && --f->refs == 0) {
        free(f->mem);
        free(f);
    }
}
