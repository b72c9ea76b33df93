/* httpfail.c - a clear answer to an HTTP request libwebsockets cannot parse.
 *
 * libwebsockets 4.1.6 closes the connection without any reply when its
 * request parser fails (lib/roles/http/parsers.c): a URL whose %-escape
 * decodes to a NUL byte (`/admin/rooms/x%00`: lws_parse_urldecode returns
 * -1), a request line or headers past its header space ("Ran out of header
 * data space": a 5 KB URL, a 64 KiB header), a WebSocket upgrade it
 * refuses (no Sec-WebSocket-Key, HTTP/1.0, only subprotocols it does not
 * serve). No callback sees the request,
 * and none runs before lws shuts the socket down (the protocol is not bound
 * yet): the parser fails inside lws's read, and lws closes at once with
 * shutdown(fd, SHUT_WR) (plain) or SSL_shutdown() (TLS).
 *
 * So this file defines shutdown() and SSL_shutdown() in the executable
 * (lws calls both through its PLT, as recv() and SSL_read() in wsmask.c),
 * and send() and SSL_write() to see lws write. The recv()/SSL_read()
 * wrappers say which descriptor bytes were last read from (not a
 * WebSocket: watched descriptors are not counted); anything written to it,
 * or a request (or body) reaching the callbacks, or an end or error read on
 * it, clears it. A shutdown of that descriptor while it is still set means
 * lws read bytes, made nothing of them and answered nothing: one JSON error
 * goes out first ("connection: close"; 431 when lws's log said its header
 * space ran out in that read, else 400), then the real shutdown. A reply
 * lws wrote itself (its 403 page for a bad %-escape or an unknown method)
 * cleared it, so nothing is added behind it. Best effort: a socket that
 * cannot take the few hundred bytes at once gets nothing, as before.
 *
 * Only in a process that serves (mx_httpfail_enable, at server start): the
 * daemon's only recv() users are the connections lws accepted (Redis is
 * read with read()), while movexctl's client connections, which lws also
 * shuts down, are never answered into.
 *
 * Not answered: a connection closed by the peer (an end was read) or by a
 * timeout (another descriptor was read since, or nothing new was).
 *
 * Invariant: rx_fd is the descriptor of the last non-WebSocket read that
 * returned bytes, or -1 once it ended, failed, produced a request or had
 * anything written to it.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include "movexd/httpfail.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "movexd/log.h"

static int rx_fd = -1;
static int too_large; /* lws's header space ran out since rx_fd's read */
static int enabled;   /* a server runs in this process: every read is of a connection it accepted */

void mx_httpfail_enable(void) { enabled = 1; }

void mx_httpfail_rx(int fd, ssize_t n)
{
    if (!enabled)
        return;
    if (n > 0) {
        rx_fd = fd;
        too_large = 0;
    } else if (fd == rx_fd) {
        rx_fd = -1;
    }
}

void mx_httpfail_too_large(void) { too_large = 1; }

void mx_httpfail_parsed(int fd)
{
    if (fd == rx_fd)
        rx_fd = -1;
}

/* The answer, into out: its length, or 0. */
static int answer(char *out, size_t n)
{
    const char *status = too_large ? "431 Request Header Fields Too Large" : "400 Bad Request";
    const char *body = too_large
        ? "{\"code\":\"too_large\",\"message\":\"the request line and headers are larger than the "
          "server takes\"}\n"
        : "{\"code\":\"bad_request\",\"message\":\"the request cannot be parsed (a %-escape that "
          "decodes to a NUL byte, a malformed request line or header, or a WebSocket upgrade "
          "that cannot be accepted: no Sec-WebSocket-Key, HTTP/1.0, no subprotocol served)\"}\n";
    int len = snprintf(out, n,
                       "HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
                       "cache-control: no-store\r\nconnection: close\r\n\r\n%s",
                       status, strlen(body), body);
    mx_debug("event=http_unparsed status=%.3s", status);
    return len > 0 && (size_t)len < n ? len : 0;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    static ssize_t (*next)(int, const void *, size_t, int);
    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "send");
    if (fd == rx_fd)
        rx_fd = -1; /* answered */
    return next(fd, buf, len, flags);
}

int SSL_write(SSL *ssl, const void *buf, int num)
{
    static int (*next)(SSL *, const void *, int);
    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "SSL_write");
    if (rx_fd >= 0 && SSL_get_fd(ssl) == rx_fd)
        rx_fd = -1; /* answered */
    return next(ssl, buf, num);
}

int shutdown(int fd, int how)
{
    static int (*next)(int, int);
    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "shutdown");
    if (fd >= 0 && fd == rx_fd) {
        rx_fd = -1;
        char out[640];
        int n = answer(out, sizeof out);
        if (n)
            (void)send(fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    return next(fd, how);
}

int SSL_shutdown(SSL *ssl)
{
    static int (*next)(SSL *);
    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "SSL_shutdown");
    if (rx_fd >= 0 && SSL_get_fd(ssl) == rx_fd) {
        rx_fd = -1;
        char out[640];
        int n = answer(out, sizeof out);
        if (n)
            (void)SSL_write(ssl, out, n);
    }
    return next(ssl);
}
