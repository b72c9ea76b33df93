/* http.h - the HTTP half of the edge: the fixed routes (/healthz, /readyz,
 * /metrics), static files from client_dir, and the response writer the
 * admin API shares. server.c dispatches the lws HTTP callbacks here; only
 * server.c, http.c, admin.c and session.c know about struct lws. */
#ifndef MOVEXD_HTTP_H
#define MOVEXD_HTTP_H

#include <stddef.h>

#include "movexd/engine.h"

struct lws;
struct mx_server;

/* The HTTP state of one connection (the per-session area's HTTP half). */
struct mx_http {
    char *body; /* malloc'd response body */
    size_t len;
    size_t sent;
    /* admin API request being served */
    char uri[256];
    char *req; /* request body */
    size_t reqlen;
    int method; /* 0 GET, 1 POST, 2 DELETE, 3 other */
    int awaiting_body; /* an admin POST waits for its body */
    int close_after; /* the request carried a body: its answer is the
                      * connection's last (see http.c) */
    struct mx_conn conn; /* the engine's view of an admin action */
    int conn_open;
    struct lws *wsi;
};

/* LWS_CALLBACK_HTTP: route the request for uri. 0, or -1 to close. */
int mx_http_request(struct mx_server *srv, struct lws *wsi, struct mx_http *h, const char *uri);
/* LWS_CALLBACK_HTTP_WRITEABLE: write the next piece of the response. */
int mx_http_writeable(struct lws *wsi, struct mx_http *h);
/* LWS_CALLBACK_HTTP_BODY: a piece of the request body. */
int mx_http_body(struct mx_server *srv, struct mx_http *h, const void *in, size_t len);
/* LWS_CALLBACK_HTTP_BODY_COMPLETION: the whole body is in. */
int mx_http_body_done(struct mx_server *srv, struct lws *wsi, struct mx_http *h);
/* LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: 1 when the upgrade asks for
 * WebSocket version 13; else a 426 naming it is written and 0 returned
 * (the caller refuses the upgrade). */
int mx_http_ws_version_ok(struct lws *wsi);
/* The connection closed or left HTTP: free what h holds. */
void mx_http_closed(struct mx_server *srv, struct mx_http *h);

/* Answer with status and body (copied); written from
 * LWS_CALLBACK_HTTP_WRITEABLE, in pieces if large. 0 or -1. */
int mx_http_respond_len(struct lws *wsi, struct mx_http *h, unsigned status, const char *ctype,
                        const char *body, size_t len);
int mx_http_respond(struct lws *wsi, struct mx_http *h, unsigned status, const char *ctype,
                    const char *body);
/* {"code": code, "message": msg} with status. */
int mx_http_json(struct lws *wsi, struct mx_http *h, unsigned status, const char *code,
                 const char *msg);

#endif
