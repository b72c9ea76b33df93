/* wsmask.c - refusing unmasked client frames (RFC 6455 section 5.1).
 *
 * A client must mask every frame it sends; a server must close the
 * connection (1002) on an unmasked one. libwebsockets 4.1.6 accepts them
 * silently and tells its callbacks nothing about the mask bit, so movexd
 * watches the bytes lws reads. This file defines recv() and SSL_read()
 * (and SSL_pending(), for readmore.h's pause):
 * libwebsockets reads a plain connection with recv() and a TLS one with
 * SSL_read(), both through its PLT, so the definitions in the executable
 * take their place; each calls the next definition (libc's, libssl's, or a
 * sanitizer's interceptor) and then, for a descriptor being watched, runs
 * the bytes through a small frame-header parser. Watching starts when the
 * WebSocket is established (server.c, LWS_CALLBACK_ESTABLISHED): a client
 * waits for the 101 answer before its first frame (RFC 6455 4.1), so the
 * parser starts on a frame boundary. The first unmasked frame marks the
 * descriptor; server.c closes the connection with 1002 before that frame's
 * payload reaches the session. Messages of masked frames that came before
 * it in the same read are still served (mx_wsmask_receive: the parser
 * counts the data payload bytes before the unmasked frame, server.c the
 * bytes lws hands over). Descriptors not watched pass through with
 * one table lookup; MSG_PEEK reads are not parsed. A watched descriptor is
 * read through readmore.c (reading ahead of lws's 1 KiB buffer; for TLS,
 * filling it from the records already arrived); the parser sees the bytes
 * as lws gets them.
 *
 * Reads of descriptors not watched (HTTP requests, before any upgrade) are
 * reported to httpfail.c, which answers a request lws cannot parse.
 *
 * Invariant: a watched descriptor's parser is at a frame boundary or
 * inside one frame whose remaining header and payload bytes it knows.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include "movexd/wsmask.h"
#include "movexd/alloc.h"
#include "movexd/httpfail.h"
#include "movexd/readmore.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/ssl.h>

enum { AT_OP, AT_LEN, AT_EXTLEN, AT_KEY, AT_PAYLOAD };

struct watch {
    uint8_t on;       /* watched */
    uint8_t unmasked; /* an unmasked frame was seen */
    uint8_t at;       /* where in the frame */
    uint8_t need;     /* header bytes still expected (AT_EXTLEN, AT_KEY) */
    uint8_t data;     /* the frame is a data frame (text, binary, continuation) */
    uint64_t left;    /* payload bytes still expected */
    uint64_t good;    /* data payload bytes of masked frames read (all before any unmasked one) */
    uint64_t given;   /* data payload bytes handed to the session (mx_wsmask_receive) */
};

static struct watch *watches; /* indexed by descriptor */
static size_t nwatches;

static struct watch *watch_of(int fd)
{
    return fd >= 0 && (size_t)fd < nwatches && watches[fd].on ? &watches[fd] : NULL;
}

void mx_wsmask_watch(int fd)
{
    if (fd < 0)
        return;
    if ((size_t)fd >= nwatches) {
        size_t n = (size_t)fd * 2 + 64;
        struct watch *w = mx_realloc(watches, n * sizeof(*w));
        if (!w)
            return; /* out of memory: this connection is not checked */
        memset(w + nwatches, 0, (n - nwatches) * sizeof(*w));
        watches = w;
        nwatches = n;
    }
    memset(&watches[fd], 0, sizeof(watches[fd]));
    watches[fd].on = 1;
}

void mx_wsmask_forget(int fd)
{
    if (fd >= 0 && (size_t)fd < nwatches)
        memset(&watches[fd], 0, sizeof(watches[fd]));
}

int mx_wsmask_unmasked(int fd)
{
    struct watch *w = watch_of(fd);
    return w && w->unmasked;
}

int mx_wsmask_receive(int fd, size_t len)
{
    struct watch *w = watch_of(fd);
    if (!w)
        return 0;
    /* lws hands over a frame's payload in order and never two frames in
     * one chunk; an empty chunk cannot be placed, so it is refused once an
     * unmasked frame was seen */
    if (w->unmasked && !(len && w->given + len <= w->good))
        return 1;
    w->given += len;
    return 0;
}

void mx_wsmask_free(void)
{
    free(watches);
    watches = NULL;
    nwatches = 0;
}

/* Parses from p (n > 0 bytes) up to the next change of place in the frame;
 * returns the bytes consumed: 0 only when the frame is unmasked. */
static size_t step(struct watch *w, const uint8_t *p, size_t n)
{
    switch (w->at) {
    case AT_OP:
        w->data = (*p & 0x0f) < 8;
        w->at = AT_LEN;
        return 1;
    case AT_LEN:
        if (!(*p & 0x80)) {
            w->unmasked = 1; /* nothing after it is parsed */
            return 0;
        }
        w->left = *p & 0x7f;
        w->need = w->left == 126 ? 2 : w->left == 127 ? 8 : 0;
        if (w->need)
            w->left = 0;
        w->at = w->need ? AT_EXTLEN : AT_KEY;
        if (!w->need)
            w->need = 4;
        return 1;
    case AT_EXTLEN:
        w->left = (w->left << 8) | *p;
        if (--w->need == 0) {
            w->at = AT_KEY;
            w->need = 4;
        }
        return 1;
    case AT_KEY: {
        size_t k = n < w->need ? n : w->need;
        w->need = (uint8_t)(w->need - k);
        if (!w->need)
            w->at = w->left ? AT_PAYLOAD : AT_OP;
        return k;
    }
    default: { /* AT_PAYLOAD */
        uint64_t k = n < w->left ? n : w->left;
        w->left -= k;
        if (w->data)
            w->good += k;
        if (!w->left)
            w->at = AT_OP;
        return (size_t)k;
    }
    }
}

static void scan(struct watch *w, const uint8_t *p, size_t n)
{
    while (n && !w->unmasked) {
        size_t k = step(w, p, n);
        p += k, n -= k;
    }
}

size_t mx_wsmask_cut(int fd, const void *buf, size_t n, size_t len)
{
    size_t lim = n < len ? n : len;
    struct watch *w = watch_of(fd);
    if (!w)
        return lim;
    struct watch t = *w; /* a copy: the bytes are not handed out yet */
    const uint8_t *p = buf;
    size_t pos = 0, best = 0;
    while (pos < lim && !t.unmasked) {
        pos += step(&t, p + pos, lim - pos);
        if (t.at == AT_OP)
            best = pos;
    }
    return best ? best : lim;
}

void mx_wsmask_scan(int fd, const void *buf, size_t n)
{
    struct watch *w = watch_of(fd);
    if (w)
        scan(w, buf, n);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    static ssize_t (*next)(int, void *, size_t, int);
    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "recv");
    struct watch *w = watch_of(fd);
    if (!w) {
        ssize_t r = next(fd, buf, len, flags);
        if (!(flags & MSG_PEEK))
            mx_httpfail_rx(fd, r); /* an HTTP request's bytes, maybe */
        return r;
    }
    ssize_t n = mx_readmore_recv(fd, buf, len, flags, next, mx_wsmask_cut);
    if (n > 0 && !(flags & MSG_PEEK))
        scan(w, buf, (size_t)n); /* the bytes as lws gets them */
    return n;
}

/* lws asks it after each read, and loops while it is non-zero: not while
 * the session has paused the connection (readmore.h, mx_readmore_paused). */
int SSL_pending(const SSL *ssl)
{
    static int (*next)(const SSL *);
    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "SSL_pending");
    int fd = SSL_get_fd(ssl);
    if (watch_of(fd) && mx_readmore_paused(fd))
        return 0;
    return next(ssl);
}

int SSL_read(SSL *ssl, void *buf, int num)
{
    static int (*next)(SSL *, void *, int);
    if (!next)
        *(void **)&next = dlsym(RTLD_NEXT, "SSL_read");
    int n = next(ssl, buf, num);
    struct watch *w;
    int fd;
    if (n > 0 && (w = watch_of(fd = SSL_get_fd(ssl)))) {
        n = mx_readmore_ssl(ssl, fd, buf, n, num, next);
        scan(w, buf, (size_t)n); /* the bytes as lws gets them */
    } else if (!watch_of(fd = SSL_get_fd(ssl))) {
        mx_httpfail_rx(fd, n); /* an HTTP request's bytes, maybe */
    }
    return n;
}
