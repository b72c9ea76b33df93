/* admin.c - the admin HTTP API and its bearer token.
 *
 * /admin/rooms                    GET: rooms in memory and on disk
 * /admin/rooms/ROOM               GET: state, seq, checksum; DELETE: delete
 * /admin/rooms/ROOM/actions       POST {"key": K, "action": {...}}: dispatch
 *                                 as the server, exactly once per key
 * Every request needs "Authorization: Bearer <token from admin_token_file>";
 * the token is compared by digest, in constant time whatever its length.
 * An unauthorized POST is answered before its body is read. An admin action
 * is an engine connection of its own (struct mx_http .conn): its reply comes
 * back through admin_deliver after the commit that made it durable, so a 200
 * is never sent for an action the disk does not hold.
 */
#include "movexd/admin.h"
#include "movexd/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <sodium.h>

#include "movexd/buf.h"
#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/proto.h"
#include "movexd/server.h"

int mx_admin_load_token(struct mx_server *s, const struct mx_config *cfg, char *err, size_t errlen)
{
    sodium_memzero(s->admin_token, sizeof(s->admin_token));
    s->admin_token_len = 0;
    if (!cfg->admin_token_file[0])
        return 0;
    /* a token is at most 255 bytes; room for trailing newlines, and one
     * byte more to tell a longer file */
    unsigned char t[1025];
    FILE *f = fopen(cfg->admin_token_file, "rb");
    size_t len = f ? fread(t, 1, sizeof(t), f) : 0;
    int bad = !f || ferror(f), toolong = len == sizeof(t);
    if (f)
        fclose(f);
    if (bad) {
        sodium_memzero(t, sizeof(t));
        snprintf(err, errlen, "%s: cannot read the admin token", cfg->admin_token_file);
        return -1;
    }
    while (len && (t[len - 1] == '\n' || t[len - 1] == '\r'))
        len--;
    int ok = !toolong && len >= 16 && len < sizeof(s->admin_token);
    if (ok) {
        memcpy(s->admin_token, t, len);
        s->admin_token_len = len;
    }
    sodium_memzero(t, sizeof(t));
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

/* The engine's reply to an admin action (after the commit made it durable). */
static void admin_deliver(struct mx_conn *c, mx_frame *f)
{
    struct mx_http *h = c->edge;
    const char *t = mx_frame_data(f);
    /* a reject is a decision (409 whatever its code, ADMIN.md); an error
     * answers with its code's status from the error list */
    unsigned status = HTTP_STATUS_OK;
    if (!strcmp(t, "{\"deleted\":true}\n"))
        status = HTTP_STATUS_OK; /* a cluster-wide delete, answered by Redis */
    else if (strstr(t, "\"type\":\"reject\""))
        status = HTTP_STATUS_CONFLICT;
    else if (!strstr(t, "\"type\":\"ack\"")) {
        const char *code = strstr(t, "\"code\":\"");
        const char *end = code ? strchr(code + 8, '"') : NULL;
        int err = end ? mx_err_from_code(code + 8, (size_t)(end - code - 8)) : 0;
        status = err ? mx_err_http_status(err) : HTTP_STATUS_BAD_REQUEST;
    }
    if (!h->body && h->wsi && h->method == 2 && status != HTTP_STATUS_OK) {
        /* a cluster-wide delete Redis refused: the same {"code","message"}
         * body as a single-node DELETE's error, not the WebSocket message */
        json_t *m = json_loadb(t, f->len, 0, NULL);
        const char *code = json_string_value(json_object_get(m, "code"));
        const char *msg = json_string_value(json_object_get(m, "message"));
        if (code && msg)
            mx_http_json(h->wsi, h, status, code, msg);
        else
            mx_http_respond_len(h->wsi, h, status, "application/json", t, f->len);
        json_decref(m);
        return;
    }
    if (!h->body && h->wsi)
        mx_http_respond_len(h->wsi, h, status, "application/json", t, f->len);
}

static void admin_close(struct mx_conn *c, int code, const char *reason) { (void)c; (void)code; (void)reason; }

/* The HTTP request's own engine connection, for an answer that comes
 * after this callback (admin_deliver). */
static void admin_conn_open(struct lws *wsi, struct mx_http *h, struct mx_server *srv)
{
    if (h->conn_open)
        mx_engine_conn_closed(srv->engine, &h->conn);
    memset(&h->conn, 0, sizeof(h->conn));
    h->conn.deliver = admin_deliver;
    h->conn.close = admin_close;
    h->conn.edge = h;
    h->wsi = wsi;
    mx_engine_conn_open(srv->engine, &h->conn);
    h->conn_open = 1;
}

static int admin_action(struct lws *wsi, struct mx_http *h, struct mx_server *srv, const char *room,
                        size_t roomlen)
{
    json_error_t jerr;
    int oom;
    json_t *j = mx_json_loadb(h->req ? h->req : "", h->reqlen,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr, &oom);
    if (oom) /* not a bad body: the client may send it again */
        return mx_http_json(wsi, h, mx_err_http_status(MX_ENOMEM), mx_err_code(MX_ENOMEM),
                            mx_err_message(MX_ENOMEM));
    const char *key = json_string_value(json_object_get(j, "key"));
    json_t *action = json_object_get(j, "action");
    if (!j || !key || !json_is_object(action)) {
        json_decref(j);
        return mx_http_json(wsi, h, HTTP_STATUS_BAD_REQUEST, "bad_request",
                            "body must be {\"key\": idempotency key, \"action\": {\"type\", \"payload\"}}");
    }
    admin_conn_open(wsi, h, srv);
    mx_engine_admin_action(srv->engine, &h->conn, room, roomlen, key, strlen(key), action);
    json_decref(j);
    mx_info("event=admin_action room=%.*s", (int)roomlen, room);
    return 0; /* answered from admin_deliver after the commit */
}

int mx_admin_route(struct mx_server *srv, struct lws *wsi, struct mx_http *h)
{
    const char *uri = h->uri;
    if (!srv->admin_token_len)
        return mx_http_respond(wsi, h, HTTP_STATUS_NOT_FOUND, "text/plain", "not found\n");
    if (!admin_authorized(wsi, srv)) {
        mx_warn("event=admin_unauthorized");
        return mx_http_json(wsi, h, HTTP_STATUS_UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
    }
    const char *rest = uri + strlen("/admin/rooms");
    if (!*rest) {
        if (h->method != 0)
            return mx_http_json(wsi, h, HTTP_STATUS_METHOD_NOT_ALLOWED, "bad_request", "use GET");
        mx_buf b;
        mx_buf_init(&b, 0);
        mx_engine_rooms_json(srv->engine, &b);
        int rc = mx_http_respond_len(wsi, h, HTTP_STATUS_OK, "application/json", mx_buf_data(&b), b.len);
        mx_buf_free(&b);
        return rc;
    }
    if (*rest != '/')
        return mx_http_respond(wsi, h, HTTP_STATUS_NOT_FOUND, "text/plain", "not found\n");
    const char *room = rest + 1;
    const char *slash = strchr(room, '/');
    size_t roomlen = slash ? (size_t)(slash - room) : strlen(room);
    /* one answer for a name that cannot be a room, whatever the method:
     * decoded control bytes, invalid UTF-8, ... (GET said bad_room, DELETE
     * no_such_room) */
    if (!mx_proto_room_type_len(room, roomlen))
        return mx_http_json(wsi, h, mx_err_http_status(MX_EBAD_ROOM), mx_err_code(MX_EBAD_ROOM),
                            mx_err_message(MX_EBAD_ROOM));
    if (slash) {
        if (strcmp(slash, "/actions") || h->method != 1)
            return mx_http_json(wsi, h, HTTP_STATUS_NOT_FOUND, "bad_request", "POST /admin/rooms/ROOM/actions");
        return admin_action(wsi, h, srv, room, roomlen);
    }
    if (h->method == 2 && srv->cfg->cluster.enabled) {
        /* every node and Redis: answered from admin_deliver once Redis has
         * deleted it (docs/CLUSTER.md "Deleting a room") */
        admin_conn_open(wsi, h, srv);
        int rc = mx_engine_delete_room_cluster(srv->engine, &h->conn, room, roomlen);
        if (rc)
            return mx_http_json(wsi, h, mx_err_http_status(rc), mx_err_code(rc), mx_err_message(rc));
        mx_info("event=admin_delete room=%.*s", (int)roomlen, room);
        return 0;
    }
    if (h->method == 2) {
        int rc = mx_engine_delete_room(srv->engine, room, roomlen);
        if (rc)
            return mx_http_json(wsi, h, mx_err_http_status(rc), mx_err_code(rc), mx_err_message(rc));
        mx_info("event=admin_delete room=%.*s", (int)roomlen, room);
        /* the body is written on the next turn, after the commit that makes
         * the delete durable */
        return mx_http_respond(wsi, h, HTTP_STATUS_OK, "application/json", "{\"deleted\":true}\n");
    }
    if (h->method != 0)
        return mx_http_json(wsi, h, HTTP_STATUS_METHOD_NOT_ALLOWED, "bad_request", "use GET or DELETE");
    mx_buf b;
    mx_buf_init(&b, 0);
    int rc = mx_engine_room_json(srv->engine, room, roomlen, &b);
    if (rc)
        rc = mx_http_json(wsi, h, mx_err_http_status(rc), mx_err_code(rc), mx_err_message(rc));
    else
        rc = mx_http_respond_len(wsi, h, HTTP_STATUS_OK, "application/json", mx_buf_data(&b), b.len);
    mx_buf_free(&b);
    return rc;
}

int mx_admin_request(struct mx_server *srv, struct lws *wsi, struct mx_http *h, const char *uri)
{
    /* every admin answer ends its connection: a client that keeps
     * connections alive then sends its next request, maybe a POST, on a
     * new one (a body behind an earlier request is refused; http.c) */
    h->close_after = 1;
    snprintf(h->uri, sizeof(h->uri), "%s", uri);
    free(h->req); /* a kept-alive connection's previous request */
    h->req = NULL;
    h->reqlen = 0;
    h->method = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)     ? 1
                : lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI) ? 2
                : lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)    ? 0
                                                                    : 3;
    h->awaiting_body = 0;
    if (h->method == 3)
        return mx_http_json(wsi, h, HTTP_STATUS_METHOD_NOT_ALLOWED, "bad_request",
                            "use GET, POST or DELETE");
    if (h->method == 1) {
        if (!srv->admin_token_len || !admin_authorized(wsi, srv))
            return mx_admin_route(srv, wsi, h); /* 404 or 401 before any body */
        if (!lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH))
            return mx_http_json(wsi, h, HTTP_STATUS_BAD_REQUEST, "bad_request",
                                "a POST needs a Content-Length body");
        /* both framings: which one frames the body is the classic request
         * smuggling question; refused rather than answered (RFC 9112 6.3) */
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING))
            return mx_http_json(wsi, h, HTTP_STATUS_BAD_REQUEST, "bad_request",
                                "a POST with both Content-Length and Transfer-Encoding is refused");
        /* answered before the body, as a 401 is: a body past the bound was
         * cut off with the connection (no answer), and a length lws cannot
         * read (-1, 1e3) left the request waiting for a body never counted */
        char cl[32];
        int cln = lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH);
        char *end = NULL;
        unsigned long long want = cln > 0 && cl[0] >= '0' && cl[0] <= '9' ? strtoull(cl, &end, 10) : 0;
        if (cln <= 0 || !end || *end)
            return mx_http_json(wsi, h, HTTP_STATUS_BAD_REQUEST, "bad_request",
                                "Content-Length must be a decimal number");
        if (want > srv->cfg->max_message_bytes)
            return mx_http_json(wsi, h, mx_err_http_status(MX_ETOO_LARGE), mx_err_code(MX_ETOO_LARGE),
                                "the body is larger than max_message_bytes");
        h->awaiting_body = 1;
        /* lws does not answer "Expect: 100-continue"; a client that waits
         * for it would wait for the body timeout */
        char expect[32];
        if (lws_hdr_copy(wsi, expect, sizeof(expect), WSI_TOKEN_HTTP_EXPECT) > 0 &&
            !strcasecmp(expect, "100-continue")) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            unsigned char buf[LWS_PRE + sizeof(cont)];
            memcpy(buf + LWS_PRE, cont, sizeof(cont) - 1);
            if (lws_write(wsi, buf + LWS_PRE, sizeof(cont) - 1, LWS_WRITE_HTTP_HEADERS_CONTINUATION) < 0)
                return -1;
        }
        return 0; /* the body comes first (LWS_CALLBACK_HTTP_BODY...) */
    }
    return mx_admin_route(srv, wsi, h);
}
