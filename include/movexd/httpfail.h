/* httpfail.h - answering an HTTP request libwebsockets could not parse
 * (httpfail.c), instead of closing the connection without a word. */
#ifndef MOVEXD_HTTPFAIL_H
#define MOVEXD_HTTPFAIL_H

#include <sys/types.h>

/* This process serves HTTP (server.c, at start): until then nothing is
 * tracked or written - movexctl and the tests link the same code, and
 * their client connections must never get an answer written into them. */
void mx_httpfail_enable(void);
/* A read of n bytes (or an end / error: n <= 0) on descriptor fd that is
 * not a WebSocket: called from the recv()/SSL_read() wrappers (wsmask.c). */
void mx_httpfail_rx(int fd, ssize_t n);
/* lws's log said its header space ran out: the answer is 431. */
void mx_httpfail_too_large(void);
/* A request (or its body) on fd reached the callbacks. */
void mx_httpfail_parsed(int fd);

#endif
