/* wsmask.h - noticing unmasked client WebSocket frames, which
 * libwebsockets 4.1.6 accepts (see wsmask.c). */
#ifndef MOVEXD_WSMASK_H
#define MOVEXD_WSMASK_H

#include <stddef.h>

/* Watch the frames read from fd from now on (its WebSocket is established). */
void mx_wsmask_watch(int fd);
/* Stop watching fd (closed). */
void mx_wsmask_forget(int fd);
/* 1 when an unmasked frame was read from fd. */
int mx_wsmask_unmasked(int fd);
/* A data message chunk of len bytes is delivered for fd: 1 when it is not
 * all from masked frames read before the first unmasked one (refuse it and
 * close 1002), 0 when it is (serve it: one read can hold valid messages
 * followed by an unmasked frame, and those came first). */
int mx_wsmask_receive(int fd, size_t len);
/* Parse n bytes read from fd (done by the recv/SSL_read wrappers). */
void mx_wsmask_scan(int fd, const void *buf, size_t n);
/* How many of the n bytes at buf, at most len, to hand lws from fd next so
 * that they end at a frame boundary (readmore.c: lws then delivers each
 * whole frame that fits its buffer in one piece). len (or n) when no
 * boundary comes before: a longer frame arrives in pieces anyway. */
size_t mx_wsmask_cut(int fd, const void *buf, size_t n, size_t len);
/* Free the table (at exit, for leak checkers). */
void mx_wsmask_free(void);

#endif
