/* server.c - the libwebsockets edge.
 *
 * One protocol, "movex.v1", is protocols[0]: lws binds both plain HTTP
 * requests and WebSocket clients that offer no subprotocol to protocols[0],
 * so making ours the first one serves both without a dead default protocol
 * that would swallow messages. HTTP requests are answered here (small fixed
 * routes; everything else 404); WebSocket callbacks go to session.c.
 *
 * The loop: lws_service() runs one poll turn and dispatches every ready
 * socket; then mx_engine_commit() makes the turn's decisions durable and
 * releases their replies (group commit). Signals only set a flag and wake
 * the loop.
 */
#include "movexd/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "movexd/err.h"
#include "movexd/listen.h"
#include "movexd/log.h"
#include "movexd/map.h"
#include "movexd/metrics.h"
#include "movexd/notify.h"
#include "movexd/session.h"
#include "movexd/version.h"

/* Per-connection area: lws allocates one of these for every connection of
 * the protocol, HTTP or WebSocket. The `ws` flag tells which half is live. */
struct pss {
    int ws;
    union {
        struct mx_session sess;
        struct {
            char *body; /* malloc'd response body */
            size_t len;
            size_t sent;
            /* admin API request being served */
            char uri[256];
            char *req; /* request body */
            size_t reqlen;
            int method; /* 0 GET, 1 POST, 2 DELETE, 3 other */
            int awaiting_body; /* an admin POST waits for its body */
            struct mx_conn conn; /* the engine's view of an admin action */
            int conn_open;
            struct lws *wsi;
        } http;
    } u;
};

static unsigned connections;
/* The listening vhost's SSL_CTX (lws hands it over while creating the
 * context); a certificate reload swaps the certificate in it. */
static SSL_CTX *tls_ctx;

/* Answer with status and body (copied). The body is written from
 * LWS_CALLBACK_HTTP_WRITEABLE, in pieces if large. */
static int http_respond_len(struct lws *wsi, struct pss *p, unsigned status, const char *ctype,
                            const char *body, size_t len)
{
    unsigned char hdr[LWS_PRE + 512], *start = &hdr[LWS_PRE], *w = start, *end = &hdr[sizeof(hdr) - 1];
    free(p->u.http.body);
    p->u.http.body = malloc(len + 1);
    if (!p->u.http.body)
        return -1;
    memcpy(p->u.http.body, body, len);
    p->u.http.len = len;
    p->u.http.sent = 0;
    if (lws_add_http_common_headers(wsi, status, ctype, p->u.http.len, &w, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (unsigned char *)"no-store", 8,
                                     &w, end) ||
        lws_finalize_write_http_header(wsi, start, &w, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_respond(struct lws *wsi, struct pss *p, unsigned status, const char *ctype,
                        const char *body)
{
    return http_respond_len(wsi, p, status, ctype, body, strlen(body));
}

static int http_metrics(struct lws *wsi, struct pss *p, struct mx_server *srv)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    mx_engine_metrics(srv->engine, &b);
    mx_metrics_counter(&b, "movexd_bytes_in_total", "WebSocket payload bytes received", mx_metric_bytes_in);
    mx_metrics_counter(&b, "movexd_bytes_out_total", "WebSocket payload bytes sent", mx_metric_bytes_out);
    mx_metrics_counter(&b, "movexd_slow_consumer_closes_total",
                       "connections closed with 4008 (send queue over max_queue_bytes)", srv->slow_closes);
    mx_metrics_counter(&b, "movexd_too_large_closes_total", "connections closed with 1009",
                       srv->too_large_closes);
    mx_metrics_counter(&b, "movexd_origin_refusals_total", "connections closed with 4003 (origin)",
                       srv->origin_refusals);
    mx_metrics_counter(&b, "movexd_address_limit_refusals_total",
                       "connections refused by max_connections_per_ip", srv->ip_refusals);
    mx_metrics_counter(&b, "movexd_rate_limited_total", "messages refused by the rate limit",
                       srv->rate_limited);
    mx_metrics_counter(&b, "movexd_rate_limit_closes_total", "connections closed with 4029",
                       srv->rate_closes);
    int rc = b.oom ? -1
                   : http_respond_len(wsi, p, HTTP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8",
                                      mx_buf_data(&b), b.len);
    mx_buf_free(&b);
    return rc;
}

/* Static files: the client library and the demo, from client_dir. Only
 * names made of [A-Za-z0-9_.-] not starting with '.', so no path can leave
 * the directory. */
static const char *mime_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return "application/octet-stream";
    if (!strcmp(dot, ".js") || !strcmp(dot, ".mjs"))
        return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".html"))
        return "text/html; charset=utf-8";
    if (!strcmp(dot, ".css"))
        return "text/css; charset=utf-8";
    if (!strcmp(dot, ".ts") || !strcmp(dot, ".json"))
        return !strcmp(dot, ".json") ? "application/json" : "text/plain; charset=utf-8";
    if (!strcmp(dot, ".svg"))
        return "image/svg+xml";
    if (!strcmp(dot, ".png"))
        return "image/png";
    return "application/octet-stream";
}

static int safe_name(const char *n)
{
    if (!*n || *n == '.' || strlen(n) > 100)
        return 0;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') ||
              *n == '_' || *n == '.' || *n == '-'))
            return 0;
    return 1;
}

static int serve_file(struct lws *wsi, struct pss *p, const char *dir, const char *sub,
                      const char *name)
{
    char path[1400];
    snprintf(path, sizeof(path), "%s/%s%s", dir, sub, name);
    static const char hdr[] = "cache-control: no-cache\x0d\x0a";
    (void)p;
    /* < 0: failed (lws already answered 404 for a missing file) and the
     * connection closes; otherwise lws sends the file and completes the
     * transaction itself */
    return lws_serve_http_file(wsi, path, mime_of(name), hdr, (int)strlen(hdr)) < 0 ? -1 : 0;
}

static char *slurp(const char *path, size_t *len);

/* ---- admin API ----
 * /admin/rooms                    GET: rooms in memory and on disk
 * /admin/rooms/ROOM               GET: state, seq, checksum; DELETE: delete
 * /admin/rooms/ROOM/actions       POST {"key": K, "action": {...}}: dispatch
 *                                 as the server, exactly once per key
 * Every request needs "Authorization: Bearer <token from admin_token_file>".
 */
int mx_server_load_admin_token(struct mx_server *s, const struct mx_config *cfg, char *err,
                               size_t errlen)
{
    sodium_memzero(s->admin_token, sizeof(s->admin_token));
    s->admin_token_len = 0;
    if (!cfg->admin_token_file[0])
        return 0;
    size_t len = 0;
    char *t = slurp(cfg->admin_token_file, &len);
    if (!t) {
        snprintf(err, errlen, "%s: cannot read the admin token", cfg->admin_token_file);
        return -1;
    }
    while (len && (t[len - 1] == '\n' || t[len - 1] == '\r'))
        len--;
    int ok = len >= 16 && len < sizeof(s->admin_token);
    if (ok) {
        memcpy(s->admin_token, t, len);
        s->admin_token_len = len;
    }
    sodium_memzero(t, len);
    free(t);
    if (!ok)
        snprintf(err, errlen, "%s: the admin token must be 16..255 bytes", cfg->admin_token_file);
    return ok ? 0 : -1;
}

static int admin_authorized(struct lws *wsi, struct mx_server *srv)
{
    char h[300];
    if (lws_hdr_copy(wsi, h, sizeof(h), WSI_TOKEN_HTTP_AUTHORIZATION) <= 7 || strncmp(h, "Bearer ", 7))
        return 0;
    size_t n = strlen(h + 7);
    /* compare digests: constant time whatever the lengths */
    unsigned char a[32], b[32];
    crypto_generichash(a, sizeof(a), (unsigned char *)h + 7, n, NULL, 0);
    crypto_generichash(b, sizeof(b), srv->admin_token, srv->admin_token_len, NULL, 0);
    sodium_memzero(h, sizeof(h));
    return sodium_memcmp(a, b, sizeof(a)) == 0;
}

static int http_json(struct lws *wsi, struct pss *p, unsigned status, const char *code, const char *msg)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    mx_buf_puts(&b, "{\"code\":");
    mx_json_dump_string(code, strlen(code), &b);
    mx_buf_puts(&b, ",\"message\":");
    mx_json_dump_string(msg, strlen(msg), &b);
    mx_buf_puts(&b, "}\n");
    int rc = http_respond_len(wsi, p, status, "application/json", mx_buf_data(&b), b.len);
    mx_buf_free(&b);
    return rc;
}

static unsigned status_of(int err)
{
    switch (err) {
    case MX_ENO_SUCH_ROOM: return HTTP_STATUS_NOT_FOUND;
    case MX_EBAD_ROOM: case MX_EBAD_REQUEST: case MX_EBAD_JSON: return HTTP_STATUS_BAD_REQUEST;
    case MX_EUNAVAILABLE: return HTTP_STATUS_SERVICE_UNAVAILABLE;
    default: return HTTP_STATUS_INTERNAL_SERVER_ERROR;
    }
}

/* The engine's reply to an admin action (after the commit made it durable). */
static void admin_deliver(struct mx_conn *c, mx_frame *f)
{
    struct pss *p = c->edge;
    const char *t = mx_frame_data(f);
    unsigned status = strstr(t, "\"type\":\"ack\"") ? HTTP_STATUS_OK
                      : strstr(t, "\"type\":\"reject\"") ? HTTP_STATUS_CONFLICT
                                                           : HTTP_STATUS_BAD_REQUEST;
    if (strstr(t, "\"code\":\"no_such_room\""))
        status = HTTP_STATUS_NOT_FOUND;
    if (!p->u.http.body && p->u.http.wsi)
        http_respond_len(p->u.http.wsi, p, status, "application/json", t, f->len);
}

static void admin_close(struct mx_conn *c, int code, const char *reason) { (void)c; (void)code; (void)reason; }

static int admin_action(struct lws *wsi, struct pss *p, struct mx_server *srv, const char *room,
                        size_t roomlen)
{
    json_error_t jerr;
    json_t *j = json_loadb(p->u.http.req ? p->u.http.req : "", p->u.http.reqlen,
                           JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
    const char *key = json_string_value(json_object_get(j, "key"));
    json_t *action = json_object_get(j, "action");
    if (!j || !key || !json_is_object(action)) {
        json_decref(j);
        return http_json(wsi, p, HTTP_STATUS_BAD_REQUEST, "bad_request",
                         "body must be {\"key\": idempotency key, \"action\": {\"type\", \"payload\"}}");
    }
    if (p->u.http.conn_open)
        mx_engine_conn_closed(srv->engine, &p->u.http.conn);
    memset(&p->u.http.conn, 0, sizeof(p->u.http.conn));
    p->u.http.conn.deliver = admin_deliver;
    p->u.http.conn.close = admin_close;
    p->u.http.conn.edge = p;
    p->u.http.wsi = wsi;
    mx_engine_conn_open(srv->engine, &p->u.http.conn);
    p->u.http.conn_open = 1;
    mx_engine_admin_action(srv->engine, &p->u.http.conn, room, roomlen, key, strlen(key), action);
    json_decref(j);
    mx_info("event=admin_action room=%.*s", (int)roomlen, room);
    return 0; /* answered from admin_deliver after the commit */
}

static int admin_route(struct lws *wsi, struct pss *p, struct mx_server *srv)
{
    const char *uri = p->u.http.uri;
    if (!srv->admin_token_len)
        return http_respond(wsi, p, HTTP_STATUS_NOT_FOUND, "text/plain", "not found\n");
    if (!admin_authorized(wsi, srv)) {
        mx_warn("event=admin_unauthorized");
        return http_json(wsi, p, HTTP_STATUS_UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
    }
    const char *rest = uri + strlen("/admin/rooms");
    if (!*rest) {
        if (p->u.http.method != 0)
            return http_json(wsi, p, HTTP_STATUS_METHOD_NOT_ALLOWED, "bad_request", "use GET");
        mx_buf b;
        mx_buf_init(&b, 0);
        mx_engine_rooms_json(srv->engine, &b);
        int rc = http_respond_len(wsi, p, HTTP_STATUS_OK, "application/json", mx_buf_data(&b), b.len);
        mx_buf_free(&b);
        return rc;
    }
    if (*rest != '/')
        return http_respond(wsi, p, HTTP_STATUS_NOT_FOUND, "text/plain", "not found\n");
    const char *room = rest + 1;
    const char *slash = strchr(room, '/');
    size_t roomlen = slash ? (size_t)(slash - room) : strlen(room);
    if (slash) {
        if (strcmp(slash, "/actions") || p->u.http.method != 1)
            return http_json(wsi, p, HTTP_STATUS_NOT_FOUND, "bad_request", "POST /admin/rooms/ROOM/actions");
        return admin_action(wsi, p, srv, room, roomlen);
    }
    if (p->u.http.method == 2) {
        int rc = mx_engine_delete_room(srv->engine, room, roomlen);
        if (rc)
            return http_json(wsi, p, status_of(rc), mx_err_code(rc), mx_err_message(rc));
        mx_info("event=admin_delete room=%.*s", (int)roomlen, room);
        /* the body is written on the next turn, after the commit that makes
         * the delete durable */
        return http_respond(wsi, p, HTTP_STATUS_OK, "application/json", "{\"deleted\":true}\n");
    }
    if (p->u.http.method != 0)
        return http_json(wsi, p, HTTP_STATUS_METHOD_NOT_ALLOWED, "bad_request", "use GET or DELETE");
    mx_buf b;
    mx_buf_init(&b, 0);
    int rc = mx_engine_room_json(srv->engine, room, roomlen, &b);
    if (rc)
        rc = http_json(wsi, p, status_of(rc), mx_err_code(rc), mx_err_message(rc));
    else
        rc = http_respond_len(wsi, p, HTTP_STATUS_OK, "application/json", mx_buf_data(&b), b.len);
    mx_buf_free(&b);
    return rc;
}

static int http_route(struct lws *wsi, struct pss *p, const char *uri)
{
    struct mx_server *srv = lws_context_user(lws_get_context(wsi));
    const char *dir = srv->cfg->client_dir;
    if (!strcmp(uri, "/healthz"))
        return http_respond(wsi, p, HTTP_STATUS_OK, "text/plain", "ok\n");
    if (!strcmp(uri, "/readyz")) {
        if (srv->stopping || !mx_engine_ready(srv->engine))
            return http_respond(wsi, p, HTTP_STATUS_SERVICE_UNAVAILABLE, "text/plain",
                                srv->stopping ? "stopping\n" : "storage failing\n");
        return http_respond(wsi, p, HTTP_STATUS_OK, "text/plain", "ready\n");
    }
    if (!strcmp(uri, "/metrics"))
        return http_metrics(wsi, p, srv);
    if (!strncmp(uri, "/admin/rooms", 12)) {
        snprintf(p->u.http.uri, sizeof(p->u.http.uri), "%s", uri);
        free(p->u.http.req); /* a kept-alive connection's previous request */
        p->u.http.req = NULL;
        p->u.http.reqlen = 0;
        p->u.http.method = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)     ? 1
                           : lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI) ? 2
                           : lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)    ? 0
                                                                               : 3;
        p->u.http.awaiting_body = 0;
        if (p->u.http.method == 3)
            return http_json(wsi, p, HTTP_STATUS_METHOD_NOT_ALLOWED, "bad_request",
                             "use GET, POST or DELETE");
        if (p->u.http.method == 1) {
            if (!srv->admin_token_len || !admin_authorized(wsi, srv))
                return admin_route(wsi, p, srv); /* 404 or 401 before any body */
            if (!lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH))
                return http_json(wsi, p, HTTP_STATUS_BAD_REQUEST, "bad_request",
                                 "a POST needs a Content-Length body");
            p->u.http.awaiting_body = 1;
            return 0; /* the body comes first (LWS_CALLBACK_HTTP_BODY...) */
        }
        return admin_route(wsi, p, srv);
    }
    if (!strcmp(uri, "/") || !strcmp(uri, "/index.html"))
        return serve_file(wsi, p, dir, "demo/", "index.html");
    if (!strcmp(uri, "/movex.js") || !strcmp(uri, "/movex.d.ts"))
        return serve_file(wsi, p, dir, "", uri + 1);
    if (!strncmp(uri, "/demo/", 6) && safe_name(uri + 6))
        return serve_file(wsi, p, dir, "demo/", uri + 6);
    return http_respond(wsi, p, HTTP_STATUS_NOT_FOUND, "text/plain", "not found\n");
}

/* Socket activation: a listening socket passed by systemd is in the loop as
 * a raw descriptor (lws 4.1 has no API to adopt a listening socket as a
 * listener); readable means connections are waiting. Each one is accepted
 * here and handed to lws as if its own listener had accepted it, so it is
 * served like any other (HTTP, WebSocket, TLS when configured). */
static int accept_inherited(struct lws *lwsi)
{
    struct lws_vhost *vh = lws_get_vhost(lwsi);
    int lfd = lws_get_socket_fd(lwsi);
    for (int i = 0; i < 64; i++) { /* then the loop serves the others */
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* e.g. out of descriptors: the socket stays readable, so
                 * say it at most once a second */
                static uint64_t last;
                if (mx_now_us() - last >= 1000000) {
                    last = mx_now_us();
                    mx_warn("event=accept_failed error=\"%s\"", strerror(errno));
                }
            }
            return 0;
        }
        int one = 1;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* as lws does */
        if (!lws_adopt_socket_vhost(vh, fd)) /* lws closed it */
            mx_warn("event=accept_failed error=\"libwebsockets could not adopt the connection\"");
    }
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct pss *p = user;
    struct mx_server *srv = lws_context_user(lws_get_context(wsi));

    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE: /* only the sockets from systemd are raw files */
        return accept_inherited(wsi);
    case LWS_CALLBACK_HTTP:
        return http_route(wsi, p, (const char *)in);
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!p->u.http.body)
            return 0;
        unsigned char buf[LWS_PRE + 16384];
        size_t n = p->u.http.len - p->u.http.sent;
        int final = n <= 16384;
        if (!final)
            n = 16384;
        memcpy(buf + LWS_PRE, p->u.http.body + p->u.http.sent, n);
        if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
            return -1;
        p->u.http.sent += n;
        if (!final) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        free(p->u.http.body);
        p->u.http.body = NULL;
        if (lws_http_transaction_completed(wsi))
            return -1;
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY: {
        if (p->u.http.reqlen + len > srv->cfg->max_message_bytes)
            return -1;
        char *n = realloc(p->u.http.req, p->u.http.reqlen + len + 1);
        if (!n)
            return -1;
        p->u.http.req = n;
        if (len)
            memcpy(n + p->u.http.reqlen, in, len);
        p->u.http.reqlen += len;
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!p->u.http.awaiting_body)
            return 0; /* a body on a route that was answered already */
        p->u.http.awaiting_body = 0;
        return admin_route(wsi, p, srv);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (p && !p->ws) {
            if (p->u.http.conn_open) {
                mx_engine_conn_closed(srv->engine, &p->u.http.conn);
                p->u.http.conn_open = 0;
            }
            p->u.http.wsi = NULL;
            free(p->u.http.body);
            p->u.http.body = NULL;
            free(p->u.http.req);
            p->u.http.req = NULL;
            p->u.http.reqlen = 0;
        }
        break;
    case LWS_CALLBACK_ESTABLISHED:
        p->ws = 1;
        mx_session_open(&p->u.sess, srv, wsi);
        connections++;
        if (connections > srv->cfg->max_connections) {
            static const char why[] = "server at max_connections; try again later";
            lws_close_reason(wsi, (enum lws_close_status)1013, (unsigned char *)why, strlen(why));
            return -1;
        }
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return mx_session_receive(&p->u.sess, in, len);
    case LWS_CALLBACK_TIMER:
        return p && p->ws ? mx_session_timer(&p->u.sess) : 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return mx_session_writable(&p->u.sess);
    case LWS_CALLBACK_CLOSED:
        if (p && p->ws) {
            mx_session_closed(&p->u.sess);
            p->ws = 0;
            connections--;
        }
        return 0;
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        tls_ctx = user; /* the listener's SSL_CTX, for mx_server_reload_tls */
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static struct lws_protocols protocols[] = {
    {.name = "movex.v1", .callback = callback, .per_session_data_size = sizeof(struct pss)},
    {0},
};

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    mx_log(level == LLL_ERR ? MX_LOG_ERROR : level == LLL_WARN ? MX_LOG_WARN : MX_LOG_DEBUG,
           "event=lws message=\"%.*s\"", (int)n, line);
}

/* Once listening: 1 when every listening socket is on a loopback address,
 * 0 when one is not; -1 before (then the conf decides). */
static int bound_loopback = -1;

int mx_server_listen_is_loopback(const struct mx_config *cfg)
{
    if (bound_loopback >= 0)
        return bound_loopback;
    const char *a = cfg->listen_addr;
    return !strncmp(a, "127.", 4) || !strcmp(a, "::1") || !strcmp(a, "localhost") || !strcmp(a, "lo");
}

/* The start-up line: the address and port really bound, and where they
 * came from (the configured listen, or systemd). */
static void log_listening(const struct mx_server *s, const struct sockaddr *sa, const char *from)
{
    char a[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    mx_listen_format(sa, a, sizeof(a), &port);
    int wild = mx_listen_is_wildcard(sa), v6 = sa->sa_family == AF_INET6 && !wild;
    const char *tls = s->cfg->tls_cert_file[0] ? "on" : "off";
    const char *scheme = s->cfg->tls_cert_file[0] ? "wss" : "ws";
    mx_info("event=listening addr=%s port=%d listen=%s tls=%s ws=%s://%s%s%s:%d/ws", a, port, from,
            tls, scheme, v6 ? "[" : "", wild ? "localhost" : a, v6 ? "]" : "", port);
}

/* After lws has bound the port: find the socket and compare the address it
 * is bound to with the configured one. libwebsockets 4.1 looks the address
 * up with getifaddrs() and, when that fails (a sandbox without AF_NETLINK),
 * binds every address without a word; serving there would expose what the
 * conf keeps on one address, so that stops the start. */
static int check_bound(struct mx_server *s, struct lws_vhost *vh)
{
    const struct mx_config *cfg = s->cfg;
    const char *want = cfg->listen_addr[0] ? cfg->listen_addr : "*";
    char asked[200];
    int v6 = strchr(want, ':') != NULL;
    snprintf(asked, sizeof(asked), "%s%s%s:%d", v6 ? "[" : "", want, v6 ? "]" : "",
             cfg->listen_port);
    int port = vh ? lws_get_vhost_listen_port(vh) : -1;
    int fds[8];
    int n = port > 0 ? mx_listen_find(port, fds, 8) : 0;
    if (n <= 0) {
        /* lws defers the listen on an interface that does not exist (yet) */
        mx_err("event=listen_failed listen=%s reason=\"no listening socket: is the address or "
               "interface configured on this host?\"",
               asked);
        return -1;
    }
    int loopback = 1;
    for (int i = 0; i < n && i < 8; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        char got[INET6_ADDRSTRLEN];
        int gport;
        if (getsockname(fds[i], (struct sockaddr *)&sa, &len) ||
            mx_listen_format((struct sockaddr *)&sa, got, sizeof(got), &gport)) {
            mx_err("event=listen_failed listen=%s reason=\"cannot read the bound address\"",
                   asked);
            return -1;
        }
        if (!mx_listen_addr_matches(cfg->listen_addr, (struct sockaddr *)&sa)) {
            mx_err("event=bind_mismatch listen=%s bound=%s port=%d reason=\"libwebsockets bound "
                   "another address than the configured one, probably because it could not look "
                   "the address up (getifaddrs; under systemd allow AF_NETLINK in "
                   "RestrictAddressFamilies=)\"",
                   asked, got, gport);
            return -1;
        }
        loopback &= mx_listen_is_loopback((struct sockaddr *)&sa);
        if (i == 0)
            log_listening(s, (struct sockaddr *)&sa, asked);
    }
    s->port = port;
    bound_loopback = loopback;
    return 0;
}

/* Socket activation: add the sockets systemd passed to the loop. */
static int adopt_inherited(struct mx_server *s, struct lws_vhost *vh, const int *fds, int nfds)
{
    int loopback = 1;
    for (int i = 0; i < nfds; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        char a[INET6_ADDRSTRLEN];
        int port;
        lws_sock_file_fd_type d;
        d.filefd = fds[i];
        if (getsockname(fds[i], (struct sockaddr *)&sa, &len) ||
            mx_listen_format((struct sockaddr *)&sa, a, sizeof(a), &port) || !vh ||
            !lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, d, NULL, NULL)) {
            mx_err("event=listen_failed listen=systemd fd=%d reason=\"cannot serve the socket "
                   "passed by systemd\"",
                   fds[i]);
            return -1;
        }
        if (i == 0)
            s->port = port;
        loopback &= mx_listen_is_loopback((struct sockaddr *)&sa);
        log_listening(s, (struct sockaddr *)&sa, "systemd");
    }
    bound_loopback = loopback;
    return 0;
}

static void free_count(void *p) { free(p); }

int mx_server_start(struct mx_server *s, const struct mx_config *cfg, mx_engine *e)
{
    return mx_server_start_on(s, cfg, e, NULL, 0);
}

int mx_server_start_on(struct mx_server *s, const struct mx_config *cfg, mx_engine *e,
                       const int *fds, int nfds)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->engine = e;
    s->per_ip = mx_map_new();
    if (!s->per_ip)
        return -1;
    lws_set_log_level(LLL_ERR | (mx_log_enabled(MX_LOG_DEBUG) ? LLL_WARN : 0), lws_log_emit);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    /* with sockets from systemd, lws binds nothing: they are added below */
    info.port = nfds > 0 ? CONTEXT_PORT_NO_LISTEN_SERVER : cfg->listen_port;
    const char *addr = cfg->listen_addr;
    info.iface = (nfds > 0 || addr[0] == '\0' || !strcmp(addr, "*")) ? NULL : addr;
    info.protocols = protocols;
    info.user = s;
    info.gid = (gid_t)-1;
    info.uid = (uid_t)-1;
    info.server_string = "movexd/" MOVEXD_VERSION;
    info.pt_serv_buf_size = 32768;
    info.options = LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    if (info.iface && strchr(info.iface, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    /* dead peers: lws pings after half the idle time without traffic and
     * hangs up after all of it (browsers answer pings by themselves) */
    static lws_retry_bo_t idle;
    if (cfg->idle_timeout_ms > 0) {
        int secs = (cfg->idle_timeout_ms + 999) / 1000;
        idle.secs_since_valid_hangup = (uint16_t)(secs > 65535 ? 65535 : secs);
        idle.secs_since_valid_ping = (uint16_t)(idle.secs_since_valid_hangup / 2 ? idle.secs_since_valid_hangup / 2 : 1);
        info.retry_and_idle_policy = &idle;
    }
    if (cfg->tls_cert_file[0]) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg->tls_cert_file;
        info.ssl_private_key_filepath = cfg->tls_key_file[0] ? cfg->tls_key_file : NULL;
        info.ssl_ca_filepath = cfg->tls_chain_file[0] ? cfg->tls_chain_file : NULL;
        /* TLS 1.2+ with forward-secret AEAD suites only; HTTP/1.1 (no h2) */
        info.ssl_options_set = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 |
                               SSL_OP_CIPHER_SERVER_PREFERENCE;
        info.ssl_cipher_list = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                               "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                               "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
        info.alpn = "http/1.1";
    }
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        mx_err("event=listen_failed addr=%s port=%d", addr, cfg->listen_port);
        return -1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(s->ctx, "default");
    if (nfds > 0 ? adopt_inherited(s, vh, fds, nfds) : check_bound(s, vh)) {
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
        return -1;
    }
    return 0;
}

struct tick_timer {
    lws_sorted_usec_list_t sul; /* first: the callback gets its address */
    struct mx_server *srv;
};

static void on_tick(lws_sorted_usec_list_t *sul)
{
    struct tick_timer *t = (struct tick_timer *)sul;
    t->srv->tick_due = 1;
    lws_sul_schedule(t->srv->ctx, 0, &t->sul, on_tick, LWS_US_PER_SEC);
}

/* Start-up recovery left rooms to rebuild: slices of MX_BG_SLICE_US, with a
 * turn of the event loop (client messages first) between them. */
#define MX_BG_SLICE_US 20000

static void on_background(lws_sorted_usec_list_t *sul)
{
    struct tick_timer *t = (struct tick_timer *)sul;
    t->srv->background_due = 1;
    /* sul callbacks run inside lws_service, before it polls: wake the
     * poll so the loop gets to the work now, not at the next event */
    lws_cancel_service(t->srv->ctx);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A failed flush: a full disk holds acks (retried every tick) until it
 * clears, for at most MX_DISK_FAIL_EXIT_MS; anything else means durability
 * can no longer be promised, and the daemon stops for the supervisor. */
static int storage_failed(struct mx_server *s, int rc)
{
    if (rc == MX_EUNAVAILABLE) {
        uint64_t now = mono_ms();
        if (!s->disk_failing_since_ms)
            s->disk_failing_since_ms = now;
        if (now - s->disk_failing_since_ms < MX_DISK_FAIL_EXIT_MS)
            return 0;
        mx_err("event=fatal reason=\"disk full for %d s with acks held; exiting for the supervisor\"",
               MX_DISK_FAIL_EXIT_MS / 1000);
        return -1;
    }
    mx_err("event=fatal reason=\"storage write or fsync failed (%s); durability cannot be guaranteed\"",
           mx_err_code(rc));
    return -1;
}

int mx_server_run(struct mx_server *s)
{
    struct tick_timer t;
    memset(&t, 0, sizeof(t));
    t.srv = s;
    lws_sul_schedule(s->ctx, 0, &t.sul, on_tick, LWS_US_PER_SEC);
    struct tick_timer bg;
    memset(&bg, 0, sizeof(bg));
    bg.srv = s;
    s->background_due = 1;
    s->watchdog_usec = mx_notify_watchdog_usec();
    char status[160];
    snprintf(status, sizeof(status), "READY=1\nSTATUS=serving on port %d", s->port);
    mx_notify(status);
    uint64_t last_watchdog = 0;
    int ret = 0;
    while (!s->stop) {
        if (lws_service(s->ctx, 0) < 0)
            break;
        int rc = mx_engine_commit(s->engine);
        if (s->reload) {
            s->reload = 0;
            mx_notify("RELOADING=1");
            if (s->on_reload)
                s->on_reload(s);
            mx_notify("READY=1");
        }
        if (s->watchdog_usec && mx_now_us() - last_watchdog >= s->watchdog_usec / 3) {
            /* from the loop itself: a stuck loop stops the keep-alives */
            mx_notify("WATCHDOG=1");
            last_watchdog = mx_now_us();
        }
        if (s->tick_due) {
            s->tick_due = 0;
            /* the tick retries a failed flush; then held acks can go */
            int trc = mx_engine_tick(s->engine);
            rc = trc ? trc : mx_engine_commit(s->engine);
            s->background_due = 1; /* more idle rooms to evict, maybe */
        }
        if (s->background_due && !rc) {
            s->background_due = 0;
            int more = mx_engine_background(s->engine, MX_BG_SLICE_US);
            if (more == 1) {
                /* the next slice after one turn of the loop: wake its poll
                 * (it returns at once when no client has anything) */
                s->background_due = 1;
                lws_cancel_service(s->ctx);
            } else if (more == 2) { /* waiting for the disk */
                lws_sul_schedule(s->ctx, 0, &bg.sul, on_background, LWS_US_PER_SEC);
            }
        }
        if (!rc) {
            s->disk_failing_since_ms = 0;
        } else if (storage_failed(s, rc)) {
            ret = -1;
            break;
        }
    }
    lws_sul_cancel(&t.sul);
    lws_sul_cancel(&bg.sul);
    return ret;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (1u << 20)) { /* certificates are small */
                free(buf);
                fclose(f);
                return NULL;
            }
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Certificate reload. The new certificate, its chain and the key are parsed
 * and checked against each other first, and then set in the listener's
 * SSL_CTX in one call (SSL_CTX_use_cert_and_key), so a reload either
 * switches new connections to the new pair or changes nothing: a broken
 * file, or a certificate whose key has not been replaced yet, never leaves
 * the listener with half a pair (lws_tls_cert_updated() sets the
 * certificate and the key one after the other from the files, and returns
 * 0 whatever happened). A certificate of another key type (EC to RSA) is
 * refused too: see tls_other_key_type. Connections already open keep the
 * SSL they were set up with. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return 0; /* an encrypted key is refused, never prompted for */
}

/* OpenSSL's reason for the first error queued, the root cause (never key
 * material). */
static const char *ssl_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_error());
    return r ? r : "unknown error";
}

/* Leaf certificate and chain from the PEM text of the certificate file,
 * as SSL_CTX_use_certificate_chain_file reads it. 0 or -1 with why. */
static int tls_parse_cert(const char *pem, size_t len, X509 **leaf, STACK_OF(X509) **chain,
                          char *why, size_t whylen)
{
    *leaf = NULL;
    *chain = NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    ERR_clear_error();
    *leaf = PEM_read_bio_X509_AUX(b, NULL, no_passphrase, NULL);
    if (!*leaf) {
        snprintf(why, whylen, "no PEM certificate in the certificate file (%s)", ssl_reason());
        BIO_free(b);
        return -1;
    }
    *chain = sk_X509_new_null();
    if (!*chain) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
        if (!x)
            break;
        if (!sk_X509_push(*chain, x)) {
            X509_free(x);
            snprintf(why, whylen, "out of memory");
            goto fail;
        }
    }
    /* the end of the file reads as "no start line"; anything else is a
     * broken certificate after the first one */
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        snprintf(why, whylen, "a chain certificate in the certificate file is broken (%s)",
                 ssl_reason());
        goto fail;
    }
    ERR_clear_error();
    BIO_free(b);
    return 0;
fail:
    BIO_free(b);
    sk_X509_pop_free(*chain, X509_free);
    X509_free(*leaf);
    *chain = NULL;
    *leaf = NULL;
    return -1;
}

static const char *key_type_name(int id)
{
    switch (id) {
    case EVP_PKEY_RSA: return "RSA";
    case EVP_PKEY_RSA_PSS: return "RSA-PSS";
    case EVP_PKEY_EC: return "EC";
    case EVP_PKEY_ED25519: return "Ed25519";
    case EVP_PKEY_ED448: return "Ed448";
    default: return OBJ_nid2sn(id);
    }
}

/* The key type of a certificate in ctx other than pkey's, or 0. OpenSSL
 * keeps one certificate per key type and has no way to remove one, so
 * after a switch from an EC to an RSA certificate (say) it would go on
 * offering the old EC one to every client that accepts ECDSA. */
static int tls_other_key_type(SSL_CTX *ctx, const EVP_PKEY *pkey)
{
    int other = 0;
    if (SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_FIRST) != 1)
        return 0;
    do {
        X509 *x = SSL_CTX_get0_certificate(ctx);
        EVP_PKEY *k = x ? X509_get0_pubkey(x) : NULL;
        if (k && EVP_PKEY_base_id(k) != EVP_PKEY_base_id(pkey))
            other = EVP_PKEY_base_id(k);
    } while (SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_NEXT) == 1);
    return other;
}

int mx_server_reload_tls(struct mx_server *s)
{
    const struct mx_config *cfg = s->cfg;
    if (!cfg->tls_cert_file[0])
        return 0;
    const char *keyfile = cfg->tls_key_file[0] ? cfg->tls_key_file : cfg->tls_cert_file;
    size_t clen = 0, klen = 0;
    char *cert = slurp(cfg->tls_cert_file, &clen);
    char *key = slurp(keyfile, &klen);
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *pkey = NULL;
    char why[300] = "";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int other;
    if (!tls_ctx)
        snprintf(why, sizeof(why), "the listener has no TLS context");
    else if (!cert)
        snprintf(why, sizeof(why), "cannot read the certificate file");
    else if (!key)
        snprintf(why, sizeof(why), "cannot read the key file");
    else if (!tls_parse_cert(cert, clen, &leaf, &chain, why, sizeof(why))) {
        BIO *kb = BIO_new_mem_buf(key, (int)klen);
        ERR_clear_error();
        pkey = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL) : NULL;
        BIO_free(kb);
        if (!pkey)
            snprintf(why, sizeof(why), "no usable PEM private key in the key file (encrypted "
                                       "keys are not supported)");
        else if (X509_check_private_key(leaf, pkey) != 1)
            snprintf(why, sizeof(why), "the key does not match the certificate");
        else if ((other = tls_other_key_type(tls_ctx, pkey)))
            snprintf(why, sizeof(why),
                     "the key type changes from %s to %s: switching key types needs a restart",
                     key_type_name(other), key_type_name(EVP_PKEY_base_id(pkey)));
        else if (SSL_CTX_use_cert_and_key(tls_ctx, leaf, pkey, chain, 1) != 1)
            snprintf(why, sizeof(why), "the TLS context refused the certificate (%s)",
                     ssl_reason());
        else if (!X509_digest(leaf, EVP_sha256(), md, &mdlen))
            mdlen = 0;
    }
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    if (key)
        sodium_memzero(key, klen);
    free(cert);
    free(key);
    if (why[0]) {
        mx_err("event=tls_reload_failed cert=%s key=%s reason=\"%s\" "
               "note=\"the running certificate stays\"",
               cfg->tls_cert_file, keyfile, why);
        return -1;
    }
    char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    mx_info("event=tls_reloaded cert=%s sha256=%s", cfg->tls_cert_file, hex);
    return 0;
}

void mx_server_shutdown(struct mx_server *s, int timeout_ms)
{
    s->stopping = 1;
    mx_notify("STOPPING=1\nSTATUS=closing connections");
    for (struct mx_session *x = s->sessions; x; x = x->next)
        mx_session_close(x, 1001, "server shutting down");
    uint64_t end = mx_now_us() + (uint64_t)timeout_ms * 1000;
    while (s->nsessions && mx_now_us() < end) {
        if (lws_service(s->ctx, 0) < 0)
            break;
        mx_engine_commit(s->engine);
    }
    if (s->nsessions)
        mx_warn("event=shutdown_timeout open_connections=%zu", s->nsessions);
}

void mx_server_wake(struct mx_server *s)
{
    if (s->ctx)
        lws_cancel_service(s->ctx);
}

void mx_server_destroy(struct mx_server *s)
{
    if (s->ctx)
        lws_context_destroy(s->ctx);
    s->ctx = NULL;
    if (s->per_ip)
        mx_map_free(s->per_ip, free_count);
    s->per_ip = NULL;
}
