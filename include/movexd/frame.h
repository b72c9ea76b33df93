/* frame.h - a refcounted outgoing message. A message sent to many
 * connections (a fwd) is encoded once; every send queue holds a reference
 * to the same bytes. MX_FRAME_PRE bytes precede the data so the WebSocket
 * layer can write its frame header in place (server.c checks that this is
 * at least LWS_PRE). */
#ifndef MOVEXD_FRAME_H
#define MOVEXD_FRAME_H

#include <stddef.h>

#include "movexd/buf.h"

#define MX_FRAME_PRE 32

typedef struct mx_frame {
    unsigned refs;
    size_t len;
    char *mem; /* data at mem + MX_FRAME_PRE */
} mx_frame;

/* Take over b's memory (b must have been initialised with MX_FRAME_PRE).
 * Returns a frame with one reference, or NULL on OOM (b is freed). */
mx_frame *mx_frame_from_buf(mx_buf *b);
static inline mx_frame *mx_frame_ref(mx_frame *f) { f->refs++; return f; }
void mx_frame_unref(mx_frame *f);
static inline char *mx_frame_data(mx_frame *f) { return f->mem + MX_FRAME_PRE; }

#endif
