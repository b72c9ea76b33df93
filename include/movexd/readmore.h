/* readmore.h - reading a busy WebSocket connection again in the same loop
 * turn when libwebsockets' small receive buffer filled (see readmore.c). */
#ifndef MOVEXD_READMORE_H
#define MOVEXD_READMORE_H

#include <stddef.h>
#include <sys/types.h>

struct lws_context;
struct ssl_st; /* OpenSSL's SSL */

/* Reads per connection per loop turn at most, the one from poll included:
 * with a 1 KiB receive buffer, 32 KiB, what one read of the former 32 KiB
 * buffer took. */
#define MX_READMORE_ROUNDS 32

/* Bytes read from a plain socket at once (and handed to lws in pieces of
 * what it asks for). */
#define MX_READAHEAD 32768
/* One turn's read-ahead bytes of all connections together, at most (one
 * buffer, reused every turn); past it, a connection is read in lws's size
 * and read again in the same turn while its reads fill lws's buffer. */
#define MX_READMORE_ARENA (256 * 1024)

/* recv() of a WebSocket descriptor (the wrapper in wsmask.c calls this;
 * next is the real recv): hands out the bytes read ahead first, else reads
 * up to MX_READAHEAD from the socket and keeps what does not fit in len,
 * listing fd to be served again. cut (may be NULL) says how much of the
 * bytes available to hand out now (mx_wsmask_cut: whole frames). Same
 * result and errno contract as recv(). */
ssize_t mx_readmore_recv(int fd, void *buf, size_t len, int flags,
                         ssize_t (*next)(int, void *, size_t, int),
                         size_t (*cut)(int fd, const void *p, size_t n, size_t len));
/* An SSL_read (next) of ssl, descriptor fd, returned n > 0 of num bytes
 * into buf (the wrapper in wsmask.c calls this): appends the plaintext of
 * the records already arrived, while buf has room, and returns the total
 * (> 0; an error of the extra reads is left for lws's next SSL_read to
 * meet). When that fills buf, fd is listed: more may be waiting. */
int mx_readmore_ssl(struct ssl_st *ssl, int fd, unsigned char *buf, int n, int num,
                    int (*next)(struct ssl_st *, void *, int));
/* The session stops lws reading fd (backpressure) until
 * mx_readmore_resume: meanwhile mx_readmore_paused(fd) is 1. */
void mx_readmore_pause(int fd);
/* 1 while fd is paused. The SSL_pending() wrapper (wsmask.c) answers 0
 * then: lws 4.1.6 loops on a flow-controlled connection for as long as
 * SSL_pending() is non-zero and its buflist holds the unparsed rest of a
 * read (rops_handle_POLLIN_ws: drain, parse nothing, `goto read`) - a
 * busy loop that never ends. The plaintext waits in OpenSSL; the resume
 * brings the connection back to lws. */
int mx_readmore_paused(int fd);
/* The session lets lws read fd again (end of a backpressure pause): bytes
 * read ahead for it are served at the next round or turn, which comes at
 * once (lws_cancel_service). */
void mx_readmore_resume(int fd, struct lws_context *ctx);
/* fd is closed (or newly opened): drop what was read ahead and any note. */
void mx_readmore_forget(int fd);
/* After lws_service(): let lws read each noted descriptor again, round by
 * round, until no read fills the buffer or MX_READMORE_ROUNDS - 1 extra
 * rounds are done. Returns the number of extra reads asked for. */
unsigned mx_readmore_service(struct lws_context *ctx);
/* Free the tables (at exit, for leak checkers). */
void mx_readmore_free(void);

#endif
