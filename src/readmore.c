/* readmore.c - reading a busy connection past lws's small receive buffer.
 *
 * libwebsockets 4.1.6 reads a WebSocket connection at most rx_ubuf_alloc
 * bytes per POLLIN (rops_handle_POLLIN_ws in lib/roles/ws/ops-ws.c: the read
 * length is the connection's rx buffer, the protocol's rx_buffer_size +
 * LWS_PRE, capped at pt_serv_buf_size) and, on a plain socket, does not
 * read again before the next poll (lws_ssl_pending() is 0 without TLS).
 * Each connection owns that rx buffer for its whole life, so its size is a
 * per-connection memory cost (32 KiB allocated, a page or two resident, at
 * rx_buffer_size 0), while a pipelining writer's burst needs large reads to
 * be decided, group-committed and answered in few turns and few writes.
 * server.c keeps the buffer at 1 KiB; this file gives back the large reads:
 *
 * - Plain sockets: the recv() wrapper (wsmask.c) calls mx_readmore_recv,
 *   which reads up to MX_READAHEAD (32 KiB, what one lws read took before)
 *   into this turn's arena, hands lws what it asked for and keeps the rest
 *   ("read ahead") for lws's next recv() of that descriptor, which gets it
 *   before anything new from the socket: the byte stream lws sees is the
 *   socket's, in order, cut into smaller reads. The descriptor is listed.
 *   When the arena is full, the read is lws's own size, and a read that
 *   filled it lists the descriptor too (the kernel keeps the rest).
 * - TLS: one SSL_read() returns the plaintext of one record at most, and
 *   lws reads on only while SSL_pending() (the rest of that record). A
 *   client that sends a record per message (browsers do) thus had one
 *   message read, decided and answered per loop turn: 10x the CPU per
 *   action of the same load in large records (docs/PERFORMANCE.md "TLS").
 *   The SSL_read() wrapper (wsmask.c) calls mx_readmore_ssl, which appends
 *   the records already in the socket (FIONREAD) or in OpenSSL's buffer
 *   to what lws asked for, up to its length; a read that filled lws's
 *   buffer lists the descriptor, since more records may be waiting.
 *   Nothing is read ahead of lws here: OpenSSL (no read_ahead) leaves
 *   every record it has not returned in the kernel, where poll sees it.
 * - After lws_service(), mx_readmore_service() serves each listed
 *   descriptor with lws_service_fd() and a POLLIN event, in rounds, until
 *   none is listed or MX_READMORE_ROUNDS reads were made in the turn (32 x
 *   1 KiB: a full read-ahead block is handed out within one turn). The
 *   group commit that follows in the loop covers all of it. A descriptor
 *   whose bytes read ahead lws did not take in two rounds (its connection
 *   is paused by flow control) stays listed and is offered again at each
 *   later turn: its socket may be empty, so poll would not report it. When
 *   the session reads it again (session.c flow_check, possibly during the
 *   commit, after this turn's rounds), mx_readmore_resume() lists it and
 *   wakes the loop, so it does not wait for the next event or tick.
 *
 * Why this is safe (lws 4.1.6 source): lws_service_fd() is the public entry
 * of an external poll loop; it finds the connection by descriptor
 * (wsi_from_fd: an unknown or closed descriptor is left alone) and runs the
 * same POLLIN handling as a real event. That handling reads into lws's own
 * per-thread buffer with lws's own length (we only ever copy at most the
 * len lws passed to recv), honours rx flow control (a paused connection is
 * not read), drains its buflist first, treats EAGAIN as "more service
 * later" and a 0-byte read as the peer's close, as for a real POLLIN. No
 * buffer of lws's is written here beyond what recv() may write.
 *
 * Invariants: a descriptor is in the pending list at most once, exactly
 * when its slot's `listed` is set; a descriptor with bytes read ahead is
 * listed (reserve() before reading ahead), so they are always handed out;
 * at the end of mx_readmore_service no slot points into the arena (what
 * is left moved to a block of its own) and the arena is empty again;
 * mx_readmore_forget() (close, and a new connection on the descriptor)
 * drops both. The memory: the arena (MX_READMORE_ARENA, once), and a block
 * of the exact size for a connection that keeps bytes read ahead past the
 * end of a turn (in practice only one paused by backpressure).
 */
#include "movexd/readmore.h"
#include "movexd/alloc.h"
#include "movexd/metrics.h"

#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

enum { LISTED = 1, CARRIED = 2 }; /* slot.listed: 0, or in the pending list */

/* Bytes read from a socket ahead of lws, not yet handed to it: in this
 * turn's arena (heap NULL: arena[off..end)) or, carried past the end of a
 * turn, in a block of their own (heap[off..end)). */
struct slot {
    unsigned char *heap;
    uint32_t off, end;    /* off == end: nothing read ahead */
    unsigned char listed; /* CARRIED: to be served at the next turn, not this one */
    unsigned char idle;   /* rounds of this turn in which lws read none of it */
    unsigned char full;   /* the socket read filled MX_READAHEAD: it may hold more */
    unsigned char paused; /* the session stopped lws reading it (mx_readmore_pause) */
};

static struct slot *slots; /* indexed by descriptor */
static size_t nslots;
static int *pending, *serving; /* descriptors noted this round / being served */
static size_t npending, cap;
/* This turn's read-ahead bytes, one after the other; emptied at the end of
 * each mx_readmore_service (what lws has not taken by then moves to blocks
 * of its own). A read ahead needs MX_READAHEAD free at the tail; without
 * it the read is lws's own size (the kernel keeps the rest). No allocation
 * per read, and none of glibc's large-request work (a malloc of 1 KiB or
 * more consolidates the fastbins first). */
static unsigned char *arena;
static size_t arena_used;

static int has_ahead(const struct slot *sl)
{
    return sl->off != sl->end;
}

static const unsigned char *ahead_data(const struct slot *sl)
{
    return sl->heap ? sl->heap : arena;
}

static struct slot *slot_of(int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= nslots) {
        size_t n = (size_t)fd * 2 + 64;
        struct slot *t = mx_realloc(slots, n * sizeof(*t));
        if (!t)
            return NULL;
        memset(t + nslots, 0, (n - nslots) * sizeof(*t));
        slots = t;
        nslots = n;
    }
    return &slots[fd];
}

/* Room in the pending list for one more descriptor. */
static int reserve(void)
{
    if (npending < cap)
        return 0;
    size_t n = cap ? cap * 2 : 64;
    int *p = mx_realloc(pending, n * sizeof(*p));
    if (!p)
        return -1;
    pending = p;
    int *s = mx_realloc(serving, n * sizeof(*s));
    if (!s)
        return -1; /* pending is larger already: fine, cap says what both hold */
    serving = s;
    cap = n;
    return 0;
}

static void note(int fd)
{
    struct slot *sl = slot_of(fd);
    if (!sl || sl->listed || reserve() < 0)
        return; /* out of memory: the socket's data waits for the next poll */
    sl->listed = LISTED;
    pending[npending++] = fd;
}

int mx_readmore_ssl(SSL *ssl, int fd, unsigned char *buf, int n, int num,
                    int (*next)(SSL *, void *, int))
{
    int got = n;
    while (got < num) {
        /* only when a record may be complete: else the extra SSL_read
         * would be a failed read() of an empty socket */
        int avail = 0;
        if (!SSL_has_pending(ssl) && (ioctl(fd, FIONREAD, &avail) != 0 || avail <= 0))
            break;
        int k = next(ssl, buf + got, num - got);
        if (k <= 0) {
            /* a partial record (WANT_READ), or an error or a close that
             * OpenSSL keeps: lws's next SSL_read meets it again and acts
             * on it; the queue must not make another connection's
             * SSL_get_error say "error" */
            ERR_clear_error();
            break;
        }
        got += k;
    }
    if (got == num)
        note(fd);
    return got;
}

static void drop_ahead(struct slot *sl)
{
    free(sl->heap);
    sl->heap = NULL;
    sl->off = sl->end = 0;
    sl->full = 0;
}

ssize_t mx_readmore_recv(int fd, void *buf, size_t len, int flags,
                         ssize_t (*next)(int, void *, size_t, int),
                         size_t (*cut)(int fd, const void *p, size_t n, size_t len))
{
    if (len == 0)
        return next(fd, buf, len, flags); /* (lws never asks for 0: 0 would read as the peer's close) */
    struct slot *sl = slot_of(fd);
    if (sl && has_ahead(sl)) {
        /* what was read ahead goes first, in order; the socket is not read
         * until it is all handed out */
        const unsigned char *from = ahead_data(sl) + sl->off;
        size_t k = sl->end - sl->off < len ? sl->end - sl->off : len;
        if (cut)
            k = cut(fd, from, sl->end - sl->off, len);
        memcpy(buf, from, k);
        if (flags & MSG_PEEK)
            return (ssize_t)k;
        sl->off += (uint32_t)k;
        sl->idle = 0;
        if (!has_ahead(sl)) {
            int full = sl->full;
            drop_ahead(sl);
            if (full)
                note(fd); /* the socket may hold more */
        } else {
            note(fd); /* more of it for lws in this turn */
        }
        return (ssize_t)k;
    }
    if (!sl || flags || len >= MX_READAHEAD)
        return next(fd, buf, len, flags);
    if (!arena)
        arena = mx_malloc(MX_READMORE_ARENA);
    /* read ahead only with room in the arena and in the pending list (the
     * bytes left over must be listed to be handed out) */
    if (!arena || MX_READMORE_ARENA - arena_used < MX_READAHEAD || (!sl->listed && reserve() < 0)) {
        ssize_t n = next(fd, buf, len, flags);
        if (n > 0 && (size_t)n == len)
            note(fd); /* the kernel holds the rest: read again this turn */
        return n;
    }
    unsigned char *at = arena + arena_used;
    ssize_t n = next(fd, at, MX_READAHEAD, 0);
    if (n <= 0)
        return n; /* errno is next's */
    size_t k = (size_t)n < len ? (size_t)n : len;
    if (cut)
        k = cut(fd, at, (size_t)n, len);
    memcpy(buf, at, k);
    if ((size_t)n > k) {
        sl->off = (uint32_t)(arena_used + k);
        sl->end = (uint32_t)(arena_used + (size_t)n);
        sl->full = (size_t)n == MX_READAHEAD;
        arena_used += (size_t)n;
        note(fd);
    } else if ((size_t)n == MX_READAHEAD) {
        note(fd);
    }
    return (ssize_t)k;
}

void mx_readmore_pause(int fd)
{
    struct slot *sl = slot_of(fd);
    if (sl)
        sl->paused = 1;
}

int mx_readmore_paused(int fd)
{
    return fd >= 0 && (size_t)fd < nslots && slots[fd].paused;
}

void mx_readmore_resume(int fd, struct lws_context *ctx)
{
    /* Served at the next round or turn even with nothing read ahead here:
     * the pause may have come in the middle of a read, whose unparsed rest
     * lws keeps in its own buflist - under TLS a read holds several
     * records (mx_readmore_ssl), so the whole burst may be out of the
     * socket - and neither poll nor lws's own loop brings that connection
     * back by itself. A read with nothing there is an EAGAIN for lws. */
    struct slot *sl = slot_of(fd);
    if (!sl)
        return;
    sl->idle = 0;
    sl->paused = 0;
    if (sl->listed == CARRIED)
        sl->listed = LISTED;
    else if (!sl->listed)
        note(fd);
    /* the loop may be about to wait in poll, which knows nothing of these
     * bytes: make that turn come at once */
    lws_cancel_service(ctx);
}

void mx_readmore_forget(int fd)
{
    if (fd >= 0 && (size_t)fd < nslots) {
        drop_ahead(&slots[fd]);
        slots[fd].listed = 0;
        slots[fd].idle = 0;
        slots[fd].paused = 0;
    }
}

unsigned mx_readmore_service(struct lws_context *ctx)
{
    /* carried from the last turn: served again now */
    for (size_t i = 0; i < npending; i++)
        if ((size_t)pending[i] < nslots && slots[pending[i]].listed == CARRIED) {
            slots[pending[i]].listed = LISTED;
            slots[pending[i]].idle = 0;
        }
    unsigned reads = 0;
    for (int round = 1; round < MX_READMORE_ROUNDS && npending; round++) {
        /* this round's list; reads below may note descriptors for the next */
        size_t n = npending;
        memcpy(serving, pending, n * sizeof(*serving));
        npending = 0;
        for (size_t i = 0; i < n; i++) {
            int fd = serving[i];
            if ((size_t)fd >= nslots || !slots[fd].listed)
                continue; /* closed since the note */
            if (slots[fd].listed == CARRIED) {
                pending[npending++] = fd; /* not again in this turn */
                continue;
            }
            slots[fd].listed = 0;
            struct lws_pollfd p = {.fd = fd, .events = LWS_POLLIN, .revents = LWS_POLLIN};
            lws_service_fd(ctx, &p);
            reads++;
            if (fd < (int)nslots && has_ahead(&slots[fd]) && !slots[fd].listed) {
                /* lws took none of it: it parsed its own buflist instead
                 * (then it reads at the next round), or the connection is
                 * paused by flow control. Its socket may be empty, so poll
                 * will not report it: after two such rounds it waits,
                 * listed, for a later turn (mx_readmore_resume() brings
                 * that turn at once when the session reads again). */
                slots[fd].listed = ++slots[fd].idle >= 2 ? CARRIED : LISTED;
                pending[npending++] = fd;
            }
        }
    }
    /* Left for the next turn: a descriptor whose socket still holds data is
     * reported by poll; one with bytes read ahead stays listed, and its
     * bytes leave the arena for a block of their own (rare: a paused
     * connection), so that the arena starts empty. */
    size_t keep = 0;
    int arena_busy = 0;
    for (size_t i = 0; i < npending; i++) {
        int fd = pending[i];
        if ((size_t)fd >= nslots)
            continue;
        struct slot *sl = &slots[fd];
        if (!sl->listed || !has_ahead(sl)) {
            sl->listed = 0;
            continue;
        }
        if (!sl->heap) {
            unsigned char *h = mx_malloc(sl->end - sl->off);
            if (h) {
                memcpy(h, arena + sl->off, sl->end - sl->off);
                sl->heap = h;
                sl->end -= sl->off;
                sl->off = 0;
            } else {
                arena_busy = 1; /* out of memory: they stay where they are */
            }
        }
        sl->listed = CARRIED;
        pending[keep++] = fd;
    }
    npending = keep;
    if (!arena_busy)
        arena_used = 0;
    mx_metric_reads_again += reads;
    return reads;
}

void mx_readmore_free(void)
{
    for (size_t i = 0; i < nslots; i++)
        free(slots[i].heap);
    free(slots);
    free(pending);
    free(serving);
    free(arena);
    slots = NULL;
    pending = serving = NULL;
    arena = NULL;
    nslots = npending = cap = arena_used = 0;
}
