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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "movexd/err.h"
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

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct pss *p = user;
    struct mx_server *srv = lws_context_user(lws_get_context(wsi));

    switch (reason) {
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

int mx_server_listen_is_loopback(const struct mx_config *cfg)
{
    const char *a = cfg->listen_addr;
    return !strncmp(a, "127.", 4) || !strcmp(a, "::1") || !strcmp(a, "localhost") || !strcmp(a, "lo");
}

static void free_count(void *p) { free(p); }

int mx_server_start(struct mx_server *s, const struct mx_config *cfg, mx_engine *e)
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
    info.port = cfg->listen_port;
    const char *addr = cfg->listen_addr;
    info.iface = (addr[0] == '\0' || !strcmp(addr, "*")) ? NULL : addr;
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
    s->port = vh ? lws_get_vhost_listen_port(vh) : cfg->listen_port;
    if (s->port <= 0) {
        mx_err("event=listen_failed addr=%s port=%d", addr, cfg->listen_port);
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
        return -1;
    }
    const char *scheme = cfg->tls_cert_file[0] ? "wss" : "ws";
    mx_info("event=listening addr=%s port=%d tls=%s ws=%s://%s:%d/ws", addr[0] ? addr : "*", s->port,
            cfg->tls_cert_file[0] ? "on" : "off", scheme, info.iface ? addr : "localhost", s->port);
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
        if (s->tick_due) {
            s->tick_due = 0;
            /* the tick retries a failed flush; then held acks can go */
            int trc = mx_engine_tick(s->engine);
            rc = trc ? trc : mx_engine_commit(s->engine);
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

int mx_server_reload_tls(struct mx_server *s)
{
    const struct mx_config *cfg = s->cfg;
    if (!cfg->tls_cert_file[0])
        return 0;
    size_t clen = 0, klen = 0;
    char *cert = slurp(cfg->tls_cert_file, &clen);
    char *key = slurp(cfg->tls_key_file[0] ? cfg->tls_key_file : cfg->tls_cert_file, &klen);
    int rc = -1;
    if (cert && key)
        rc = lws_tls_cert_updated(s->ctx, cfg->tls_cert_file,
                                  cfg->tls_key_file[0] ? cfg->tls_key_file : cfg->tls_cert_file, cert,
                                  clen, key, klen);
    if (key)
        sodium_memzero(key, klen);
    free(cert);
    free(key);
    if (rc)
        mx_err("event=tls_reload_failed cert=%s", cfg->tls_cert_file);
    else
        mx_info("event=tls_reloaded cert=%s", cfg->tls_cert_file);
    return rc ? -1 : 0;
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
