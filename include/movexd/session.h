/* session.h - one WebSocket connection at the network edge: reassembly of
 * inbound messages under the size bound, and a byte-bounded send queue of
 * shared frames. Only session.c and server.c know about struct lws. */
#ifndef MOVEXD_SESSION_H
#define MOVEXD_SESSION_H

#include <stddef.h>

#include "movexd/engine.h"
#include "movexd/frame.h"
#include "movexd/idle.h"

/* Bytes one connection may send per writable callback (Redis caps a client's
 * writes per event the same way): a reader with a deep queue cannot keep the
 * loop from the others. A frame larger than this goes alone. server.c makes
 * it the protocol's tx_packet_size, so lws passes such a write to the
 * socket whole instead of cutting it at its service buffer size. */
#define MX_SESSION_SEND_BUDGET (64 * 1024)

struct lws;
struct mx_server;

struct mx_session {
    struct mx_conn conn; /* engine-side state; conn.edge points back here */
    struct lws *wsi;
    struct mx_server *srv;
    int is_ws;  /* this per-session area belongs to a WebSocket */
    int opened; /* mx_engine_conn_open was called */

    char *rx; /* message being reassembled; NULL between messages */
    size_t rxlen, rxcap;

    mx_frame **q; /* ring of queued frames */
    size_t qhead, qlen, qcap;
    size_t qbytes;

    char peer[64];  /* remote address, for the per-address connection count */
    int counted;    /* counted in srv->per_ip */
    double tokens;  /* rate limit bucket */
    uint64_t refill_us;
    size_t limited_in_row;

    struct mx_session *next, *prev; /* the server's list of open sessions */
    int linked;

    int rx_paused; /* not reading: its replies fill half of max_queue_bytes */
    int closing; /* no more sends; close with close_code when drained */
    int close_now; /* closing without sending what is queued */
    int close_sent; /* our close frame is out; waiting for the peer's */
    int close_code;
    char close_reason[100];
    /* in the server's list of sessions given frames since the last
     * mx_session_flush_released() */
    struct mx_dlink dirty_link;
    int dirty;
    struct mx_idle_node idle; /* in srv->idle: when the peer last showed life */
    int ping_due;             /* idle: a ping goes out at the next writable callback */
};

void mx_session_open(struct mx_session *s, struct mx_server *srv, struct lws *wsi);
/* A piece of an inbound message; returns -1 when the connection must close now. */
int mx_session_receive(struct mx_session *s, const void *in, size_t len);
/* The socket can take more; returns -1 when the connection must close now. */
int mx_session_writable(struct mx_session *s);
void mx_session_closed(struct mx_session *s);
/* Right after a commit (mx_engine_set_released): write the frames the
 * commit gave each connection now, as a writable callback would on the
 * next turn of the loop; what the socket does not take waits for that
 * callback. ctx is the struct mx_server. */
void mx_session_flush_released(void *ctx);
/* Close gracefully with code (after what is queued). */
void mx_session_close(struct mx_session *s, int code, const char *reason);
/* The peer answered a ping. */
void mx_session_pong(struct mx_session *s);
/* About once a second: ping connections quiet for half of idle_timeout_ms,
 * hang up those quiet for all of it (idle.c; lws's own per-connection
 * idle timer is not used, see there). */
void mx_session_expire_idle(struct mx_server *srv);
/* The per-connection timer fired (token expiry). */
int mx_session_timer(struct mx_session *s);

#endif
