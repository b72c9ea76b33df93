/* session.c - per-connection edge state.
 *
 * Inbound: WebSocket messages arrive in chunks (of at most libwebsockets'
 * receive buffer, pt_serv_buf_size in src/server.c). A message that arrives whole in one chunk
 * is decoded straight from libwebsockets' buffer; only one that comes in
 * several chunks is reassembled into a buffer of our own, which is freed
 * once the message is handled, so an idle connection holds none. Either
 * way it is refused (close 1009) as soon as the announced or received size
 * passes max_message_bytes, so a huge frame never gets buffered.
 * Outbound: the engine delivers shared frames; the session keeps a ring of
 * references and the total queued bytes. A connection whose queue would pass
 * max_queue_bytes is closed with 4008 and its queue dropped, so one slow
 * reader can never make the server grow without bound or slow the others.
 *
 * The send path (docs/PERFORMANCE.md): each frame already carries its
 * WebSocket header (frame.h), so a write gathers whole queued frames, up to
 * MX_SEND_BUDGET bytes, into one sendmsg() on the socket (one
 * lws_write(LWS_WRITE_RAW) of the gathered copy under TLS); no poll per
 * frame. The first write follows the commit that released the frames at
 * once (mx_session_flush_released, before the storage's housekeeping); what
 * the socket or the budget leaves goes from the writable callback. Invariant: between two of our writes the byte stream is at a frame
 * boundary as far as libwebsockets can tell - when the socket takes only
 * part of a frame, the rest of that frame is handed to lws at once, which
 * keeps it (its buflist_out) and sends it before anything else it writes on
 * this connection (a pong, a close); so lws's own frames never land inside
 * ours, and bytes leave in queue order.
 */
#include "movexd/session.h"
#include "movexd/alloc.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <libwebsockets.h>

#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/map.h"
#include "movexd/metrics.h"
#include "movexd/readmore.h"
#include "movexd/server.h"

_Static_assert(MX_FRAME_PRE >= 10, "frames need room for the longest WebSocket header");

#define MX_SEND_BUDGET MX_SESSION_SEND_BUDGET
/* Frames gathered into one write at most (IOV_MAX is 1024). */
#define MX_SEND_IOV 256

/* Under TLS the gathered frames are copied here and written as one TLS
 * record stream; one event-loop thread, so one buffer serves every
 * connection. */
static char tls_gather[MX_SEND_BUDGET];

static void drop_queue(struct mx_session *s)
{
    while (s->qlen) {
        mx_frame_unref(s->q[s->qhead]);
        s->qhead = (s->qhead + 1) & (s->qcap - 1);
        s->qlen--;
    }
    s->qbytes = 0;
}

/* Arm the connection's timer for when its token expires (mx_token_left,
 * which saturates however far off exp is), at most a day ahead: the timer
 * looks again when it fires early or the clock stepped. Returns the
 * seconds left, 0 when the token has expired (no timer then). */
static int64_t arm_token_timer(struct mx_session *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t left = mx_token_left(&s->conn.token, (int64_t)ts.tv_sec, s->srv->cfg->auth_leeway_ms / 1000);
    if (left)
        lws_set_timer_usecs(s->wsi, (lws_usec_t)(left < 86400 ? left : 86400) * LWS_US_PER_SEC + 1000);
    return left;
}

/* Stop sending and close with code once the queue drains (immediately when
 * `now`: the peer cannot be waited for). */
static void start_close(struct mx_session *s, int code, const char *reason, int now)
{
    if (s->closing)
        return;
    s->closing = 1;
    s->close_now = now;
    if (s->rx_paused) {
        /* read again: the peer's close frame must get through (what else
         * it sends is ignored while closing) */
        s->rx_paused = 0;
        lws_rx_flow_control(s->wsi, 1);
        mx_readmore_resume(lws_get_socket_fd(s->wsi), lws_get_context(s->wsi));
    }
    s->close_code = code;
    snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
    if (now) {
        /* drop what is queued; the close frame goes out at the next
         * writable callback, and a peer too stalled to ever take it is cut
         * off by the timeout (it then sees 1006) */
        drop_queue(s);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_LAGGING, 5);
    }
    lws_callback_on_writable(s->wsi);
}

/* Frames arrive only from mx_engine_commit(), which then calls
 * mx_session_flush_released(): the sessions given frames wait in
 * srv->dirty until then (instead of asking lws for a writable event, which
 * would cost a poll turn before the reply leaves). */
static void mark_dirty(struct mx_session *s)
{
    if (s->dirty)
        return;
    /* at the tail: connections are written in the order the commit gave
     * them their first frame (a writer's ack before the fwds of its
     * action: each loopback send runs the receiver's TCP path) */
    s->dirty = 1;
    mx_dlist_append(&s->srv->dirty, &s->dirty_link);
}

static void unmark_dirty(struct mx_session *s)
{
    if (!s->dirty)
        return;
    mx_dlist_remove(&s->srv->dirty, &s->dirty_link);
    s->dirty = 0;
}

static void conn_deliver(struct mx_conn *c, mx_frame *f)
{
    struct mx_session *s = c->edge;
    if (s->close_now)
        return; /* a graceful close still sends what was decided before it */
    if (s->close_sent)
        return; /* RFC 6455 5.5.1: no data frames after our close frame */
    /* the bound is on what accumulates: one message larger than the bound
     * (a big snapshot) still goes to a connection that has nothing queued */
    if (s->qlen && s->qbytes + f->len > s->srv->cfg->max_queue_bytes) {
        s->srv->slow_closes++;
        mx_warn("event=slow_consumer client=%s queued=%zu limit=%zu", c->clientlen ? c->client : "-",
                s->qbytes, s->srv->cfg->max_queue_bytes);
        start_close(s, 4008, "send queue over max_queue_bytes", 1);
        return;
    }
    if (s->qlen == s->qcap) {
        /* a power of two, so a ring index is a mask, not a division (a
         * few per frame, hundreds of frames per turn) */
        size_t ncap = s->qcap ? s->qcap * 2 : 16;
        mx_frame **n = mx_malloc(ncap * sizeof(*n));
        if (!n) {
            start_close(s, 1011, "server out of memory", 1);
            return;
        }
        for (size_t i = 0; i < s->qlen; i++)
            n[i] = s->q[(s->qhead + i) & (s->qcap - 1)];
        free(s->q);
        s->q = n;
        s->qhead = 0;
        s->qcap = ncap;
    }
    s->q[(s->qhead + s->qlen) & (s->qcap - 1)] = mx_frame_ref(f);
    s->qlen++;
    s->qbytes += f->len;
    if (s->qlen == 1) /* else a write is already on its way */
        mark_dirty(s);
}

static void conn_close(struct mx_conn *c, int code, const char *reason)
{
    struct mx_session *s = c->edge;
    start_close(s, code, reason, code == 4008 || code == 1011);
}

/* The page's origin as the browser sends it ("https://host:port"), checked
 * against allowed_origins; see docs/SECURITY.md for the default policy. */
static int origin_allowed(struct mx_session *s)
{
    const struct mx_config *cfg = s->srv->cfg;
    char origin[256], host[256];
    int n = lws_hdr_copy(s->wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN);
    if (n <= 0)
        return 1; /* not a browser: Origin cannot be trusted or required */
    if (cfg->allowed_origins[0]) {
        const char *p = cfg->allowed_origins;
        size_t olen = strlen(origin);
        while (*p) {
            p += strspn(p, ", ");
            size_t len = strcspn(p, ", ");
            if ((len == 1 && *p == '*') || (len == olen && !strncmp(p, origin, len)))
                return 1;
            p += len;
        }
        return 0;
    }
    if (mx_server_listen_is_loopback(cfg))
        return 1;
    /* default off loopback: same origin only (Origin's host equals Host) */
    if (lws_hdr_copy(s->wsi, host, sizeof(host), WSI_TOKEN_HOST) <= 0)
        return 0;
    const char *h = strstr(origin, "://");
    return h && !strcmp(h + 3, host);
}

static unsigned *ip_count(struct mx_session *s, int create)
{
    mx_map *m = s->srv->per_ip;
    size_t len = strlen(s->peer);
    unsigned *c = mx_map_get(m, s->peer, len);
    if (!c && create) {
        c = mx_calloc(1, sizeof(*c));
        if (c && mx_map_put(m, s->peer, len, c)) {
            free(c);
            c = NULL;
        }
    }
    return c;
}

void mx_session_close(struct mx_session *s, int code, const char *reason)
{
    start_close(s, code, reason, 0);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_LAGGING, 3); /* a stalled peer is not waited for */
}

void mx_session_open(struct mx_session *s, struct mx_server *srv, struct lws *wsi)
{
    memset(s, 0, sizeof(*s));
    s->wsi = wsi;
    s->srv = srv;
    s->is_ws = 1;
    s->conn.deliver = conn_deliver;
    s->conn.close = conn_close;
    s->conn.edge = s;
    mx_engine_conn_open(srv->engine, &s->conn);
    s->opened = 1;
    s->next = srv->sessions;
    if (s->next)
        s->next->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    s->linked = 1;
    mx_idle_add(&srv->idle, &s->idle, mx_now_us());
    if (srv->stopping) {
        start_close(s, 1001, "server shutting down", 0);
        return;
    }

    s->tokens = (double)srv->cfg->rate_burst;
    s->refill_us = mx_now_us(); /* the clock of mx_session_receive */

    char uri[64];
    int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
    if (n <= 0 || strcmp(uri, "/ws") != 0) {
        start_close(s, 1008, "the WebSocket endpoint is /ws", 0);
        return;
    }
    if (!origin_allowed(s)) {
        srv->origin_refusals++;
        mx_warn("event=origin_refused");
        start_close(s, 4003, "origin not allowed", 1);
        return;
    }
    lws_get_peer_simple(wsi, s->peer, sizeof(s->peer));
    unsigned *cnt = ip_count(s, 1);
    if (cnt) {
        (*cnt)++;
        s->counted = 1;
        if (*cnt > srv->cfg->max_connections_per_ip) {
            srv->ip_refusals++;
            mx_warn("event=too_many_connections_from_address peer=%s limit=%zu", s->peer,
                    srv->cfg->max_connections_per_ip);
            start_close(s, 1013, "too many connections from this address", 1);
            return;
        }
    }
    int secs = (srv->cfg->hello_timeout_ms + 999) / 1000;
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, secs > 0 ? secs : 1);
}

/* Backpressure (docs/SECURITY.md, "Memory per connection"): what one
 * connection's requests make the server hold - replies waiting in the
 * engine's outbox for the commit (conn.pending_bytes) and frames in its send
 * queue - is bounded by reading no more from it while that passes half of
 * max_queue_bytes; it reads again once the queue is down to a quarter.
 * Pipelined requests then wait in the client's and the kernel's buffers,
 * not as answers in the server's memory. (The send queue's own bound, 4008,
 * still applies to fwds caused by other connections.) Checked after each
 * message and after each write. */
static void flow_check(struct mx_session *s)
{
    size_t held = s->conn.pending_bytes + s->qbytes, bound = s->srv->cfg->max_queue_bytes;
    if (!s->rx_paused && held >= bound / 2) {
        s->rx_paused = 1;
        mx_metric_rx_pauses++;
        lws_rx_flow_control(s->wsi, 0);
        mx_readmore_pause(lws_get_socket_fd(s->wsi));
    } else if (s->rx_paused && held <= bound / 4) {
        s->rx_paused = 0;
        lws_rx_flow_control(s->wsi, 1);
        /* its requests may be read ahead already (readmore.c) */
        mx_readmore_resume(lws_get_socket_fd(s->wsi), lws_get_context(s->wsi));
    }
}

static int receive(struct mx_session *s, const void *in, size_t len, uint64_t now_us);

int mx_session_receive(struct mx_session *s, const void *in, size_t len)
{
    /* one clock read per chunk: the idle list, the rate limit and the
     * engine (the message's arrival: ack latency, room activity) share it */
    uint64_t now_us = mx_now_us();
    mx_idle_alive(&s->srv->idle, &s->idle, now_us);
    int rc = receive(s, in, len, now_us);
    if (!rc && !s->closing)
        flow_check(s);
    return rc;
}

/* The reassembly buffer exists only while a message that came in several
 * chunks is being put together: an idle connection holds none (issue #12). */
static void drop_rx(struct mx_session *s)
{
    free(s->rx);
    s->rx = NULL;
    s->rxlen = s->rxcap = 0;
}

static void dispatch(struct mx_session *s, const char *msg, size_t mlen, uint64_t now_us);

static int receive(struct mx_session *s, const void *in, size_t len, uint64_t now_us)
{
    struct lws *wsi = s->wsi;
    mx_metric_bytes_in += len;
    if (lws_is_first_fragment(wsi))
        s->rxlen = 0;
    if (s->closing)
        return 0; /* closing: ignore what the peer still sends */
    size_t limit = s->srv->cfg->max_message_bytes;
    size_t announced = lws_remaining_packet_payload(wsi);
    if (s->rxlen + len + announced > limit) {
        s->srv->too_large_closes++;
        mx_warn("event=message_too_large client=%s limit=%zu", s->conn.clientlen ? s->conn.client : "-",
                limit);
        drop_rx(s);
        /* graceful: the replies decided before this message (acks of
         * committed actions) still go out ahead of the 1009; the rest of
         * the message is read and dropped, never buffered */
        mx_session_close(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message larger than max_message_bytes");
        return 0;
    }
    if (s->rxlen == 0 && lws_is_final_fragment(wsi)) {
        /* the whole message in one chunk: decode it where lws put it
         * (valid for this callback); no copy, no allocation */
        dispatch(s, in, len, now_us);
        return 0;
    }
    if (s->rxlen + len > s->rxcap) {
        /* sized for the rest of the current frame at once, when announced */
        size_t ncap = s->rxcap ? s->rxcap : 4096;
        while (ncap < s->rxlen + len + announced)
            ncap *= 2;
        if (ncap > limit)
            ncap = limit; /* the check above keeps rxlen + len + announced within it */
        char *n = mx_realloc(s->rx, ncap);
        if (!n)
            return -1;
        s->rx = n;
        s->rxcap = ncap;
    }
    memcpy(s->rx + s->rxlen, in, len);
    s->rxlen += len;
    if (!lws_is_final_fragment(wsi))
        return 0;
    dispatch(s, s->rx, s->rxlen, now_us);
    drop_rx(s);
    return 0;
}

/* A complete inbound message (msg is valid only during the call), read
 * at now_us. */
static void dispatch(struct mx_session *s, const char *msg, size_t mlen, uint64_t now_us)
{
    struct lws *wsi = s->wsi;
    if (lws_frame_is_binary(wsi)) {
        mx_engine_send_error(s->srv->engine, &s->conn, MX_EBAD_JSON,
                             "binary frames are not accepted; send text (UTF-8 JSON)");
        return;
    }
    /* token bucket: rate_messages_per_sec, bursts up to rate_burst */
    const struct mx_config *cfg = s->srv->cfg;
    s->tokens += (double)(now_us - s->refill_us) * (double)cfg->rate_messages_per_sec / 1e6;
    if (s->tokens > (double)cfg->rate_burst)
        s->tokens = (double)cfg->rate_burst;
    s->refill_us = now_us;
    if (s->tokens < 1) {
        s->srv->rate_limited++;
        if (++s->limited_in_row > cfg->rate_close_after) {
            s->srv->rate_closes++;
            mx_warn("event=rate_limit_close client=%s", s->conn.clientlen ? s->conn.client : "-");
            /* graceful: the replies to what came before the flood (acks of
             * committed actions) still go out ahead of the 4029; what the
             * peer sends from now on is dropped unread by the engine */
            mx_session_close(s, 4029, "message rate limit exceeded");
            return;
        }
        mx_engine_refuse(s->srv->engine, &s->conn, msg, mlen, MX_ERATE_LIMITED,
                         "too many messages; slow down");
        return;
    }
    s->tokens -= 1;
    s->limited_in_row = 0;
    int had_hello = s->conn.hello;
    mx_engine_handle_at(s->srv->engine, &s->conn, msg, mlen, now_us);
    if (!had_hello && s->conn.hello) {
        lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        if (s->conn.authed && s->conn.token.exp)
            arm_token_timer(s); /* close when the token expires, even if the client goes quiet */
    }
}

/* The head frame has left (to the socket or to lws's buffer). */
static void pop_frame(struct mx_session *s)
{
    mx_frame *f = s->q[s->qhead];
    s->qhead = (s->qhead + 1) & (s->qcap - 1);
    s->qlen--;
    s->qbytes -= f->len;
    mx_metric_bytes_out += f->len;
    mx_metric_frames_out++;
    mx_frame_unref(f);
}

/* Bytes to libwebsockets as they are (no framing): it writes what the
 * socket takes and keeps the rest, which it sends first at the next
 * writable event, before any frame of its own. */
static int lws_raw(struct mx_session *s, const char *p, size_t n)
{
    mx_metric_send_calls++;
    return lws_write(s->wsi, (unsigned char *)p, n, LWS_WRITE_RAW) < 0 ? -1 : 0;
}

/* The queue's head frame at index i of the ring. */
static mx_frame *queued(const struct mx_session *s, size_t i)
{
    return s->q[(s->qhead + i) & (s->qcap - 1)];
}

/* How many whole frames from the head make one gathered write: at least
 * one, then as many as fit in MX_SEND_BUDGET and MX_SEND_IOV; their wire
 * bytes go to iov[] when it is given (one pass: hundreds of frames a turn). */
static size_t gather_count(const struct mx_session *s, size_t *bytes, struct iovec *iov)
{
    size_t n = 0, b = 0;
    while (n < s->qlen && n < MX_SEND_IOV) {
        const mx_frame *f = queued(s, n);
        size_t wl = mx_frame_wire_len(f);
        if (n && b + wl > MX_SEND_BUDGET)
            break;
        if (iov) {
            iov[n].iov_base = (void *)mx_frame_wire(f);
            iov[n].iov_len = wl;
        }
        b += wl;
        n++;
    }
    *bytes = b;
    return n;
}

/* Plain TCP: one sendmsg of the gathered frames straight from their shared
 * buffers (no copy). -1: the connection must close. */
static int send_plain(struct mx_session *s)
{
    struct iovec iov[MX_SEND_IOV];
    size_t total, cnt = gather_count(s, &total, iov);
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = cnt};
    ssize_t n;
    do
        n = sendmsg(lws_get_socket_fd(s->wsi), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    mx_metric_send_calls++;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    size_t done = (size_t)n;
    for (size_t i = 0; i < cnt && done >= iov[i].iov_len; i++) {
        done -= iov[i].iov_len;
        pop_frame(s);
    }
    if (done) {
        /* the socket took part of a frame: its rest goes to lws now, so
         * the stream is at a frame boundary for whatever lws sends next */
        mx_frame *f = queued(s, 0);
        mx_metric_send_partials++;
        if (lws_raw(s, mx_frame_wire(f) + done, mx_frame_wire_len(f) - done))
            return -1;
        pop_frame(s);
    }
    return 0;
}

/* lws kept part of what it was given: the socket was full. */
static void count_partial(const struct mx_session *s)
{
    if (lws_partial_buffered(s->wsi))
        mx_metric_send_partials++;
}

/* TLS: the gathered frames are copied into one buffer and given to lws as
 * one write (one SSL_write), whole frames only; a frame larger than the
 * budget goes alone from its own buffer. lws keeps what the socket does not
 * take and sends it before anything else. -1: the connection must close. */
static int send_tls(struct mx_session *s)
{
    size_t total, cnt = gather_count(s, &total, NULL);
    if (total > MX_SEND_BUDGET) { /* one big frame */
        mx_frame *f = queued(s, 0);
        if (lws_raw(s, mx_frame_wire(f), mx_frame_wire_len(f)))
            return -1;
        count_partial(s);
        pop_frame(s);
        return 0;
    }
    size_t at = 0;
    for (size_t i = 0; i < cnt; i++) {
        mx_frame *f = queued(s, i);
        memcpy(tls_gather + at, mx_frame_wire(f), mx_frame_wire_len(f));
        at += mx_frame_wire_len(f);
    }
    if (lws_raw(s, tls_gather, at))
        return -1;
    count_partial(s);
    while (cnt--)
        pop_frame(s);
    return 0;
}

int mx_session_writable(struct mx_session *s)
{
    if (lws_partial_buffered(s->wsi)) {
        /* lws still holds the tail of an earlier write; it calls back once
         * that has gone */
        lws_callback_on_writable(s->wsi);
        return 0;
    }
    if (s->ping_due && !s->close_sent) {
        /* the idle policy's ping, between two of our frames; lws frames
         * it. Not empty: lws 4.1.6 does not report an empty pong. */
        unsigned char buf[LWS_PRE + 4];
        memcpy(buf + LWS_PRE, "idle", 4);
        s->ping_due = 0;
        if (lws_write(s->wsi, buf + LWS_PRE, 4, LWS_WRITE_PING) < 0)
            return -1;
        if (lws_partial_buffered(s->wsi))
            return 0; /* lws asked for the writable event itself */
    }
    if (s->qlen && (lws_is_ssl(s->wsi) ? send_tls(s) : send_plain(s)))
        return -1;
    if (s->rx_paused)
        flow_check(s);
    if (lws_partial_buffered(s->wsi))
        return 0; /* lws asked for the writable event itself */
    if (s->closing && !s->qlen) {
        if (s->close_sent)
            return 0; /* waiting for the peer's close (or the timeout) */
        /* Send the close frame ourselves and keep reading (and discarding)
         * until the peer answers with its own close: closing the socket
         * while the peer's last messages are still unread would make the
         * kernel reset the connection, and the peer would lose the close
         * code and what was sent just before it. */
        unsigned char buf[LWS_PRE + 2 + sizeof(s->close_reason)];
        size_t rl = strlen(s->close_reason);
        buf[LWS_PRE] = (unsigned char)(s->close_code >> 8);
        buf[LWS_PRE + 1] = (unsigned char)(s->close_code & 0xff);
        memcpy(buf + LWS_PRE + 2, s->close_reason, rl);
        if (lws_write(s->wsi, buf + LWS_PRE, 2 + rl, (enum lws_write_protocol)4 /* LWS_WRITE_CLOSE, private in 4.1 */) < 0)
            return -1;
        s->close_sent = 1;
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
        return 0;
    }
    if (s->qlen)
        lws_callback_on_writable(s->wsi);
    return 0;
}

void mx_session_flush_released(void *ctx)
{
    struct mx_server *srv = ctx;
    while (srv->dirty.head) {
        struct mx_session *s =
            (struct mx_session *)((char *)srv->dirty.head - offsetof(struct mx_session, dirty_link));
        unmark_dirty(s);
        if (!s->qlen)
            continue; /* dropped meanwhile (a close that does not wait) */
        if (lws_partial_buffered(s->wsi) ||
            (lws_is_ssl(s->wsi) ? send_tls(s) : send_plain(s))) {
            /* lws still holds the tail of an earlier write, or the socket
             * failed: the writable callback sends (or closes) as before */
            lws_callback_on_writable(s->wsi);
            continue;
        }
        if (s->rx_paused)
            flow_check(s);
        /* what the budget or the socket left, or the close frame that
         * follows the last queued frame, goes from the writable callback
         * (lws asks for it itself when it kept part of this write) */
        if ((s->qlen || s->closing) && !lws_partial_buffered(s->wsi))
            lws_callback_on_writable(s->wsi);
    }
}

void mx_session_pong(struct mx_session *s)
{
    mx_idle_alive(&s->srv->idle, &s->idle, mx_now_us());
}

static struct mx_session *idle_session(struct mx_idle_node *n)
{
    return (struct mx_session *)((char *)n - offsetof(struct mx_session, idle));
}

static void idle_ping(struct mx_idle_node *n, void *ctx)
{
    struct mx_session *s = idle_session(n);
    s->ping_due = 1;
    lws_callback_on_writable(s->wsi);
}

static void idle_hangup(struct mx_idle_node *n, void *ctx)
{
    struct mx_session *s = idle_session(n);
    mx_debug("event=idle_timeout client=%s", s->conn.clientlen ? s->conn.client : "-");
    /* as lws's own idle policy did: the peer does not answer, so no close
     * handshake; lws closes it from its loop */
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void mx_session_expire_idle(struct mx_server *srv)
{
    uint64_t hangup = (uint64_t)srv->cfg->idle_timeout_ms * 1000;
    if (hangup)
        mx_idle_expire(&srv->idle, mx_now_us(), hangup / 2, hangup, idle_ping, idle_hangup, srv);
}

int mx_session_timer(struct mx_session *s)
{
    if (s->conn.authed && s->conn.token.exp && !arm_token_timer(s)) {
        mx_info("event=token_expired client=%s", s->conn.client);
        start_close(s, MX_CLOSE_UNAUTHORIZED, "token expired", 0);
    }
    return 0;
}

void mx_session_closed(struct mx_session *s)
{
    unmark_dirty(s);
    mx_idle_remove(&s->srv->idle, &s->idle);
    if (s->linked) {
        if (s->prev)
            s->prev->next = s->next;
        else
            s->srv->sessions = s->next;
        if (s->next)
            s->next->prev = s->prev;
        s->srv->nsessions--;
        s->linked = 0;
    }
    if (s->counted) {
        unsigned *cnt = ip_count(s, 0);
        if (cnt && --*cnt == 0)
            free(mx_map_del(s->srv->per_ip, s->peer, strlen(s->peer)));
        s->counted = 0;
    }
    if (s->opened)
        mx_engine_conn_closed(s->srv->engine, &s->conn);
    s->opened = 0;
    drop_queue(s);
    free(s->q);
    s->q = NULL;
    free(s->rx);
    s->rx = NULL;
}
