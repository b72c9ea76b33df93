/* http.c - the HTTP routes of the edge.
 *
 * Small fixed routes (/healthz, /readyz, /metrics), the client library and
 * the demo as static files from client_dir, and the admin API's prefix
 * handed to admin.c; everything else is 404. Every response is built whole
 * in memory (struct mx_http .body) and written from
 * LWS_CALLBACK_HTTP_WRITEABLE in pieces of at most 16 KB; the last piece
 * completes the HTTP transaction so a kept-alive connection can carry the
 * next request. Static files are sent by lws itself.
 *
 * Cross-origin: the client library (/movex.js, /movex.d.ts) is meant to be
 * imported by pages of any origin, so those two answer with
 * "access-control-allow-origin: *" and a CORS preflight (OPTIONS) for them
 * gets 204 with the allowed methods. They carry no secrets and no
 * credentials are allowed, so "*" is safe; nothing else is shared.
 *
 * Requests with a body. libwebsockets 4.1.6 cannot take a request body
 * that was pipelined behind an earlier request on the same connection:
 * such a request is parsed from the connection's buffered input (its
 * "buflist"), and lws_http_action() then feeds that same buffered segment,
 * which still starts with the request's own header bytes, to the body
 * reader. The body is read from the wrong bytes, and once Content-Length
 * bytes are counted the connection stays in LRS_BODY with nothing left to
 * read; every further pass delivers LWS_CALLBACK_HTTP_BODY_COMPLETION,
 * consumes nothing and goes round again, inside one lws_service() call:
 * the whole daemon hangs. Returning -1 from the body callbacks there would
 * close the connection twice (the inner and the outer lws_read_h1 both
 * close). So the rules, all decided in LWS_CALLBACK_HTTP, the one callback
 * where refusing is safe:
 *  - a request carries a body when it is a POST, PUT or PATCH or has a
 *    Content-Length or Transfer-Encoding header (what makes lws read one);
 *  - such a request is the last on its connection: its answer says
 *    "connection: close" and the connection closes once it is written
 *    (whatever was pipelined after it is never parsed);
 *  - such a request that is not the first on its connection (it came
 *    behind a kept-alive one, so it may be in the buflist) is answered 400
 *    at once, its body unread, and the connection closed;
 *  - static files are served only to requests without a body.
 * Requests without a body keep keep-alive and pipelining. The count of
 * requests on a connection lives on the wsi (lws_set_opaque_user_data):
 * lws frees the per-session area at every completed transaction.
 */
#include "movexd/http.h"
#include "movexd/alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "movexd/admin.h"
#include "movexd/buf.h"
#include "movexd/json.h"
#include "movexd/heaptrim.h"
#include "movexd/log.h"
#include "movexd/metrics.h"
#include "movexd/version.h"
#include "movexd/server.h"

int mx_http_respond_len(struct lws *wsi, struct mx_http *h, unsigned status, const char *ctype,
                        const char *body, size_t len)
{
    unsigned char hdr[LWS_PRE + 512], *start = &hdr[LWS_PRE], *w = start, *end = &hdr[sizeof(hdr) - 1];
    free(h->body);
    h->body = mx_malloc(len + 1);
    if (!h->body)
        return -1;
    memcpy(h->body, body, len);
    h->len = len;
    h->sent = 0;
    if (lws_add_http_common_headers(wsi, status, ctype, h->len, &w, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (unsigned char *)"no-store", 8,
                                     &w, end) ||
        (h->close_after &&
         lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (unsigned char *)"close", 5, &w, end)) ||
        lws_finalize_write_http_header(wsi, start, &w, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

int mx_http_respond(struct lws *wsi, struct mx_http *h, unsigned status, const char *ctype,
                    const char *body)
{
    return mx_http_respond_len(wsi, h, status, ctype, body, strlen(body));
}

int mx_http_json(struct lws *wsi, struct mx_http *h, unsigned status, const char *code, const char *msg)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    mx_buf_puts(&b, "{\"code\":");
    mx_json_dump_string(code, strlen(code), &b);
    mx_buf_puts(&b, ",\"message\":");
    mx_json_dump_string(msg, strlen(msg), &b);
    mx_buf_puts(&b, "}\n");
    int rc = mx_http_respond_len(wsi, h, status, "application/json", mx_buf_data(&b), b.len);
    mx_buf_free(&b);
    return rc;
}

static int http_metrics(struct lws *wsi, struct mx_http *h, struct mx_server *srv)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    mx_engine_metrics(srv->engine, &b);
    const struct {
        const char *name, *help;
        uint64_t value;
    } counters[] = {
        {"movexd_bytes_in_total", "WebSocket payload bytes received", mx_metric_bytes_in},
        {"movexd_bytes_out_total", "WebSocket payload bytes sent", mx_metric_bytes_out},
        {"movexd_frames_out_total", "WebSocket messages sent", mx_metric_frames_out},
        {"movexd_send_calls_total", "socket writes that carried them (each gathers a connection's queue)",
         mx_metric_send_calls},
        {"movexd_send_partials_total", "socket writes that ended inside a frame (its rest was buffered)",
         mx_metric_send_partials},
        {"movexd_reads_again_total",
         "extra reads of a connection in the same loop turn, after a read that filled the receive buffer",
         mx_metric_reads_again},
        {"movexd_heap_trims_total",
         "times the heap was trimmed (malloc_trim) after a storm of connections opened or closed",
         mx_heaptrim_count()},
        {"movexd_read_pauses_total",
         "times a connection stopped being read until its replies drained (backpressure)",
         mx_metric_rx_pauses},
        {"movexd_slow_consumer_closes_total", "connections closed with 4008 (send queue over max_queue_bytes)",
         srv->slow_closes},
        {"movexd_too_large_closes_total", "connections closed with 1009", srv->too_large_closes},
        {"movexd_origin_refusals_total", "connections closed with 4003 (origin)", srv->origin_refusals},
        {"movexd_address_limit_refusals_total", "connections refused by max_connections_per_ip",
         srv->ip_refusals},
        {"movexd_rate_limited_total", "messages refused by the rate limit", srv->rate_limited},
        {"movexd_rate_limit_closes_total", "connections closed with 4029", srv->rate_closes},
        {"movexd_descriptor_refusals_total", "connections closed at accept: too few descriptors left",
         srv->fd_refusals},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        mx_metrics_counter(&b, counters[i].name, counters[i].help, counters[i].value);
    mx_metrics_process(&b, MOVEXD_VERSION);
    int rc = b.oom ? -1
                   : mx_http_respond_len(wsi, h, HTTP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8",
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

static int serve_file(struct lws *wsi, struct mx_http *h, const char *dir, const char *sub,
                      const char *name, int cors)
{
    if (h->close_after) /* lws would serve the file and keep the connection */
        return mx_http_json(wsi, h, HTTP_STATUS_BAD_REQUEST, "bad_request",
                            "this resource takes no request body");
    char path[1400];
    snprintf(path, sizeof(path), "%s/%s%s", dir, sub, name);
    static const char hdr[] = "cache-control: no-cache\x0d\x0a";
    static const char hdr_cors[] = "cache-control: no-cache\x0d\x0a"
                                   "access-control-allow-origin: *\x0d\x0a";
    const char *extra = cors ? hdr_cors : hdr;
    /* < 0: failed (lws already answered 404 for a missing file) and the
     * connection closes; otherwise lws sends the file and completes the
     * transaction itself */
    return lws_serve_http_file(wsi, path, mime_of(name), extra, (int)strlen(extra)) < 0 ? -1 : 0;
}

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **w,
                      unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name, (const unsigned char *)value,
                                       (int)strlen(value), w, end);
}

/* A CORS preflight for the library: 204, no body. */
static int cors_preflight(struct lws *wsi, struct mx_http *h)
{
    unsigned char buf[LWS_PRE + 512], *start = &buf[LWS_PRE], *w = start, *end = &buf[sizeof(buf) - 1];
    if (lws_add_http_header_status(wsi, HTTP_STATUS_NO_CONTENT, &w, end) ||
        add_header(wsi, "access-control-allow-origin:", "*", &w, end) ||
        add_header(wsi, "access-control-allow-methods:", "GET, HEAD, OPTIONS", &w, end) ||
        add_header(wsi, "access-control-allow-headers:", "*", &w, end) ||
        add_header(wsi, "access-control-max-age:", "86400", &w, end) ||
        lws_add_http_header_content_length(wsi, 0, &w, end) ||
        (h->close_after &&
         lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (unsigned char *)"close", 5, &w, end)) ||
        lws_finalize_write_http_header(wsi, start, &w, end))
        return -1;
    if (h->close_after) /* a body we do not read: close (see the top of the file) */
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Count this request on its connection; 1 for the first. */
static uintptr_t count_request(struct lws *wsi)
{
    uintptr_t n = (uintptr_t)lws_get_opaque_user_data(wsi) + 1;
    lws_set_opaque_user_data(wsi, (void *)n);
    return n;
}

static int carries_body(struct lws *wsi)
{
    return lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) || lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) ||
           lws_hdr_total_length(wsi, WSI_TOKEN_PATCH_URI) ||
           lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) ||
           lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
}

/* An answer written at once, in the callback that refuses the request
 * (the caller then closes): status, "connection: close", an optional extra
 * header, the JSON body. -1 (what the caller returns). */
static int refuse_now(struct lws *wsi, unsigned status, const char *hname, const char *hval, const char *body)
{
    size_t blen = strlen(body);
    unsigned char buf[LWS_PRE + 512 + 256], *start = &buf[LWS_PRE], *w = start;
    unsigned char *end = &buf[LWS_PRE + 512];
    if (blen > 256 ||
        lws_add_http_common_headers(wsi, status, "application/json", blen, &w, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (unsigned char *)"close", 5, &w, end) ||
        (hname && lws_add_http_header_by_name(wsi, (const unsigned char *)hname, (const unsigned char *)hval,
                                              (int)strlen(hval), &w, end)) ||
        lws_finalize_write_http_header(wsi, start, &w, end))
        return -1;
    memcpy(start, body, blen);
    lws_write(wsi, start, blen, LWS_WRITE_HTTP_FINAL);
    return -1;
}

/* A request with a body behind another one: answer 400 now, in
 * LWS_CALLBACK_HTTP, and close (the caller returns -1 before lws starts
 * reading the body; see the top of the file). */
static int refuse_pipelined_body(struct lws *wsi)
{
    mx_debug("event=http_pipelined_body_refused");
    return refuse_now(wsi, HTTP_STATUS_BAD_REQUEST, NULL, NULL,
                      "{\"code\":\"bad_request\",\"message\":\"a request with a body must be the "
                      "first on its connection; send it on a new connection\"}\n");
}

int mx_http_ws_version_ok(struct lws *wsi)
{
    char v[8];
    if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_VERSION) > 0 && !strcmp(v, "13"))
        return 1;
    /* RFC 6455 4.2.2: a version the server does not speak is refused with
     * the one it does; lws 4.1.6 would answer 101 and speak 13 anyway */
    refuse_now(wsi, 426, "sec-websocket-version:", "13",
               "{\"code\":\"bad_request\",\"message\":\"WebSocket version 13 only "
               "(Sec-WebSocket-Version: 13)\"}\n");
    return 0;
}

int mx_http_request(struct mx_server *srv, struct lws *wsi, struct mx_http *h, const char *uri)
{
    const char *dir = srv->cfg->client_dir;
    int first = count_request(wsi) == 1;
    if (carries_body(wsi)) {
        if (!first)
            return refuse_pipelined_body(wsi);
        h->close_after = 1;
    }
    if (!strcmp(uri, "/healthz"))
        return mx_http_respond(wsi, h, HTTP_STATUS_OK, "text/plain", "ok\n");
    if (!strcmp(uri, "/readyz")) {
        int ready = srv->stopping ? 0 : mx_engine_ready(srv->engine);
        const char *why = srv->stopping ? "stopping\n"
                          : ready == 0  ? "storage failing: acks are held until a write succeeds\n"
                          : ready == -1 ? "disk full: new actions are refused (unavailable)\n"
                          : ready < 0   ? "cluster: Redis not reachable: room requests are refused (unavailable)\n"
                                        : NULL;
        if (why)
            return mx_http_respond(wsi, h, HTTP_STATUS_SERVICE_UNAVAILABLE, "text/plain", why);
        return mx_http_respond(wsi, h, HTTP_STATUS_OK, "text/plain", "ready\n");
    }
    if (!strcmp(uri, "/metrics"))
        return http_metrics(wsi, h, srv);
    if (!strncmp(uri, "/admin/rooms", 12))
        return mx_admin_request(srv, wsi, h, uri);
    if (srv->cfg->serve_demo && (!strcmp(uri, "/") || !strcmp(uri, "/index.html")))
        return serve_file(wsi, h, dir, "demo/", "index.html", 0);
    if (!strcmp(uri, "/movex.js") || !strcmp(uri, "/movex.d.ts")) {
        if (lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI))
            return cors_preflight(wsi, h);
        return serve_file(wsi, h, dir, "", uri + 1, 1);
    }
    if (srv->cfg->serve_demo && !strncmp(uri, "/demo/", 6) && safe_name(uri + 6))
        return serve_file(wsi, h, dir, "demo/", uri + 6, 0);
    return mx_http_respond(wsi, h, HTTP_STATUS_NOT_FOUND, "text/plain", "not found\n");
}

int mx_http_writeable(struct lws *wsi, struct mx_http *h)
{
    if (!h->body)
        return 0;
    unsigned char buf[LWS_PRE + 16384];
    size_t n = h->len - h->sent;
    int final = n <= 16384;
    if (!final)
        n = 16384;
    memcpy(buf + LWS_PRE, h->body + h->sent, n);
    if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    h->sent += n;
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    free(h->body);
    h->body = NULL;
    if (h->close_after) /* written; lws shuts the socket down after it */
        return -1;
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

int mx_http_body(struct mx_server *srv, struct mx_http *h, const void *in, size_t len)
{
    if (!h->awaiting_body)
        return 0; /* a body no route reads: the connection closes after the answer */
    if (h->reqlen + len > srv->cfg->max_message_bytes)
        return -1;
    char *n = mx_realloc(h->req, h->reqlen + len + 1);
    if (!n)
        return -1;
    h->req = n;
    if (len)
        memcpy(n + h->reqlen, in, len);
    h->reqlen += len;
    return 0;
}

int mx_http_body_done(struct mx_server *srv, struct lws *wsi, struct mx_http *h)
{
    if (!h->awaiting_body)
        return 0; /* a body on a route that was answered already */
    h->awaiting_body = 0;
    return mx_admin_route(srv, wsi, h);
}

void mx_http_closed(struct mx_server *srv, struct mx_http *h)
{
    if (h->conn_open) {
        mx_engine_conn_closed(srv->engine, &h->conn);
        h->conn_open = 0;
    }
    h->wsi = NULL;
    free(h->body);
    h->body = NULL;
    free(h->req);
    h->req = NULL;
    h->reqlen = 0;
}
