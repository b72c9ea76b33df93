/* frame.h - a refcounted outgoing message. A message sent to many
 * connections (a fwd) is encoded once; every send queue holds a reference
 * to the same bytes. The frame is complete on the wire from the start: its
 * WebSocket header (a final, unmasked text frame; server frames are never
 * masked, so the header depends on the length only) is built once in the
 * MX_FRAME_PRE bytes of headroom just before the payload, and the frame is
 * immutable afterwards, so the same bytes can be written to any number of
 * sockets, in any slicing, by one gathered write per connection.
 *
 * The frame's own struct lives at the start of that headroom too (one
 * allocation per frame, not two: an action makes an ack and a fwd). */
#ifndef MOVEXD_FRAME_H
#define MOVEXD_FRAME_H

#include <stddef.h>

#include "movexd/buf.h"

#define MX_FRAME_PRE 48 /* the struct mx_frame, then up to 10 header bytes */

typedef struct mx_frame {
    unsigned refs;
    unsigned hlen; /* bytes of WebSocket header, just before the data */
    size_t len;    /* bytes of payload */
    char *mem;     /* the allocation (it starts with this struct); data at mem + MX_FRAME_PRE */
} mx_frame;

/* Take over b's memory (b must have been initialised with MX_FRAME_PRE).
 * Returns a frame with one reference, or NULL on OOM (b is freed). */
mx_frame *mx_frame_from_buf(mx_buf *b);
static inline mx_frame *mx_frame_ref(mx_frame *f) { f->refs++; return f; }
void mx_frame_unref(mx_frame *f);
static inline char *mx_frame_data(mx_frame *f) { return f->mem + MX_FRAME_PRE; }
/* The frame as it goes on the wire: header then payload, contiguous. */
static inline const char *mx_frame_wire(const mx_frame *f) { return f->mem + MX_FRAME_PRE - f->hlen; }
static inline size_t mx_frame_wire_len(const mx_frame *f) { return f->hlen + f->len; }
/* Write the header of a final unmasked text frame of len payload bytes
 * into the 2..10 bytes that end at `end`; returns its length. */
unsigned mx_frame_header(char *end, size_t len);

#endif
