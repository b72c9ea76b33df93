/* server.c - the libwebsockets edge.
 *
 * One protocol, "movex.v1", is protocols[0]: lws binds both plain HTTP
 * requests and WebSocket clients that offer no subprotocol to protocols[0],
 * so making ours the first one serves both without a dead default protocol
 * that would swallow messages. This file owns the context, the listeners
 * and the loop, and dispatches callbacks: HTTP ones to http.c (routes,
 * static files, /metrics; the admin API in admin.c), WebSocket ones to
 * session.c. Certificates are tls.c's.
 *
 * The loop: lws_service() runs one poll turn and dispatches every ready
 * socket; readmore.c reads again the connections whose small receive
 * buffer filled; then mx_engine_commit() makes the turn's decisions durable
 * and releases their replies (group commit), which session.c writes at
 * once. The idle policy (idle.c) runs on the one-second tick. Signals only
 * set a flag and wake the loop.
 */
#include "movexd/server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <uv.h>

#include "movexd/alloc.h"
#include "movexd/err.h"
#include "movexd/evloop.h"
#include "movexd/heaptrim.h"
#include "movexd/http.h"
#include "movexd/listen.h"
#include "movexd/log.h"
#include "movexd/lua_json.h" /* mx_lua_utf8_ok */
#include "movexd/map.h"
#include "movexd/metrics.h"
#include "movexd/httpfail.h"
#include "movexd/notify.h"
#include "movexd/readmore.h"
#include "movexd/redis_adapter.h"
#include "movexd/session.h"
#include "movexd/version.h"
#include "movexd/wsmask.h"

/* Per-connection area: lws allocates one of these for every connection of
 * the protocol, HTTP or WebSocket. The `ws` flag tells which half is live. */
struct pss {
    int ws;
    union {
        struct mx_session sess;
        struct mx_http http;
    } u;
};

/* Socket activation: a listening socket passed by systemd is in the loop as
 * a raw descriptor (lws 4.1 has no API to adopt a listening socket as a
 * listener); readable means connections are waiting. Each one is accepted
 * here and handed to lws as if its own listener had accepted it, so it is
 * served like any other (HTTP, WebSocket, TLS when configured). */
/* Descriptors. A connection accepted when fewer than MX_FD_SPARE
 * descriptors are left is closed at once (FILTER_NETWORK_CONNECTION), so
 * the daemon keeps some for its own files (WAL segments, snapshots, the
 * log) and for the next connection to shed. If accept() still fails for
 * want of a descriptor, the waiting connection stays in the listen queue
 * and the socket readable: poll() returns at once on every turn, and lws
 * logs "accept: errno 24" each time (150,000 lines a second, a core
 * pinned). Then shed_waiting() gives up the spare descriptor, accepts and
 * closes what waits, and takes the spare back. */
#define MX_FD_SPARE 8

static volatile int accept_out_of_fds; /* set from lws_log_emit */

static void shed_waiting(struct mx_server *s, int lfd)
{
    if (s->spare_fd >= 0)
        close(s->spare_fd);
    s->spare_fd = -1;
    unsigned shed = 0;
    for (int i = 0; i < 256; i++) { /* bounded: new ones wait for the next turn */
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        if (poll(&pfd, 1, 0) != 1)
            break;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            break;
        close(fd);
        shed++;
    }
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->fd_refusals += shed;
    mx_warn("event=connections_shed reason=\"out of descriptors\" fd_limit=%ld", s->fd_limit);
}

/* Socket activation: a listening socket passed by systemd is in the loop as
 * a raw descriptor (lws 4.1 has no API to adopt a listening socket as a
 * listener); readable means connections are waiting. Each one is accepted
 * here and handed to lws as if its own listener had accepted it, so it is
 * served like any other (HTTP, WebSocket, TLS when configured). */
static int accept_inherited(struct mx_server *s, struct lws *lwsi)
{
    struct lws_vhost *vh = lws_get_vhost(lwsi);
    int lfd = lws_get_socket_fd(lwsi);
    for (int i = 0; i < 64; i++) { /* then the loop serves the others */
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                shed_waiting(s, lfd);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                mx_warn("event=accept_failed error=\"%s\"", strerror(errno)); /* rate-limited by log.c */
            return 0;
        }
        int one = 1;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        if (fd >= s->fd_limit - MX_FD_SPARE) {
            close(fd);
            s->fd_refusals++;
            mx_warn("event=connection_refused reason=\"too few descriptors left\" fd_limit=%ld", s->fd_limit);
            continue;
        }
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
        return accept_inherited(srv, wsi);
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
        /* the accepted descriptor; descriptors are handed out lowest
         * first, so its number says how many are in use */
        int fd = (int)(intptr_t)in;
        if (fd >= srv->fd_limit - MX_FD_SPARE) {
            srv->fd_refusals++;
            mx_warn("event=connection_refused reason=\"too few descriptors left\" fd_limit=%ld", srv->fd_limit);
            return 1; /* lws closes it */
        }
        return 0;
    }
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return mx_http_ws_version_ok(wsi) ? 0 : 1;
    case LWS_CALLBACK_HTTP:
        mx_httpfail_parsed(lws_get_socket_fd(wsi));
        return mx_http_request(srv, wsi, &p->u.http, (const char *)in);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return mx_http_writeable(wsi, &p->u.http);
    case LWS_CALLBACK_HTTP_BODY:
        mx_httpfail_parsed(lws_get_socket_fd(wsi));
        return mx_http_body(srv, &p->u.http, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return mx_http_body_done(srv, wsi, &p->u.http);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (p && !p->ws)
            mx_http_closed(srv, &p->u.http);
        break;
    case LWS_CALLBACK_ESTABLISHED:
        mx_readmore_forget(lws_get_socket_fd(wsi)); /* nothing of an earlier connection */
        mx_wsmask_watch(lws_get_socket_fd(wsi));
        p->ws = 1;
        mx_session_open(&p->u.sess, srv, wsi);
        srv->connections++;
        mx_heaptrim_churn();
        if (srv->connections > srv->cfg->max_connections) {
            static const char why[] = "server at max_connections; try again later";
            lws_close_reason(wsi, (enum lws_close_status)1013, (unsigned char *)why, strlen(why));
            return -1;
        }
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (mx_wsmask_receive(lws_get_socket_fd(wsi), len)) {
            /* RFC 6455 5.1: a client's frames are masked; close, 1002 -
             * after the replies already decided (acks of committed
             * actions, answers to the masked messages read before it),
             * and the frame itself is never used */
            mx_session_close(&p->u.sess, LWS_CLOSE_STATUS_PROTOCOL_ERR, "unmasked client frame");
            return 0;
        }
        return mx_session_receive(&p->u.sess, in, len);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (mx_wsmask_unmasked(lws_get_socket_fd(wsi))) {
            /* an unmasked close frame too is answered 1002, not echoed */
            static const char why[] = "unmasked client frame";
            lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, (unsigned char *)why, strlen(why));
            return -1;
        }
        /* the peer's close answers ours: lws 4.1.6 does not know we sent
         * one (LWS_WRITE_CLOSE leaves its close state alone) and would echo
         * it - a second close frame (RFC 6455 5.5.1: one each way) */
        if (p && p->ws && p->u.sess.close_sent)
            return -1;
        /* RFC 6455 5.5.1, 7.1.6: a close payload is empty, or a code and a
         * UTF-8 reason. lws 4.1.6 turns a code that is not allowed into
         * 1002 but echoes a 1-byte payload, and a reason that is not
         * UTF-8, back as they came */
        if (len == 1 || (len > 2 && !mx_lua_utf8_ok((const char *)in + 2, len - 2))) {
            static const char why[] = "malformed close frame";
            lws_close_reason(wsi, len == 1 ? LWS_CLOSE_STATUS_PROTOCOL_ERR : LWS_CLOSE_STATUS_INVALID_PAYLOAD,
                             (unsigned char *)why, strlen(why));
            return -1;
        }
        return 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (p && p->ws)
            mx_session_pong(&p->u.sess);
        return 0;
    case LWS_CALLBACK_TIMER:
        return p && p->ws ? mx_session_timer(&p->u.sess) : 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return mx_session_writable(&p->u.sess);
    case LWS_CALLBACK_CLOSED:
        mx_wsmask_forget(lws_get_socket_fd(wsi));
        mx_readmore_forget(lws_get_socket_fd(wsi));
        if (p && p->ws) {
            mx_session_closed(&p->u.sess);
            p->ws = 0;
            srv->connections--;
            mx_heaptrim_churn();
        }
        return 0;
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        srv->tls_ctx = user; /* the listener's SSL_CTX, for mx_tls_reload */
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* libwebsockets' receive buffer, allocated for each WebSocket connection
 * for its whole life (rx_buffer_size + LWS_PRE): 1 KiB instead of the
 * default pt_serv_buf_size (32 KiB, one or two pages resident) takes an
 * idle connection from ~6.3 to ~3.3 KB. lws 4.1.6 also reads at most this
 * much per POLLIN, which alone cost W1 throughput (server CPU per ack 12.8
 * -> 22 us); readmore.c reads a connection whose buffer filled again in the
 * same turn, up to 32 KiB as before. Inbound messages longer than this
 * arrive in chunks that session.c reassembles. docs/PERFORMANCE.md (issue
 * #12). At least 125 (a control frame's payload is delivered whole). */
#define MX_RX_BUFFER 1024
static struct lws_protocols protocols[] = {
    {.name = "movex.v1", .callback = callback, .per_session_data_size = sizeof(struct pss),
     .rx_buffer_size = MX_RX_BUFFER, .tx_packet_size = MX_SESSION_SEND_BUDGET},
    {0}, /* cluster mode's Redis links (mx_redis_protocol), set in mx_server_start_on */
    {0},
};

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    /* lws says so when its listener's accept() fails (EMFILE 24, ENFILE
     * 23); there is no other hook for it */
    if (strstr(line, "accept: errno 24") || strstr(line, "accept: errno 23"))
        accept_out_of_fds = 1;
    if (strstr(line, "Ran out of header data space"))
        mx_httpfail_too_large(); /* the request's answer is 431 (httpfail.c) */
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

/* A listener to announce once start-up has succeeded: a start that fails
 * after binding (a second listener, the cluster journal's lock, ...) must
 * not have said event=listening before its start_failed. */
static void add_bound(struct mx_server *s, const struct sockaddr *sa, socklen_t len, const char *from)
{
    if (s->nbound >= (int)(sizeof s->bound / sizeof s->bound[0]) || len > sizeof s->bound[0].sa)
        return;
    struct mx_server_bound *b = &s->bound[s->nbound++];
    memset(&b->sa, 0, sizeof b->sa);
    memcpy(&b->sa, sa, len);
    snprintf(b->from, sizeof b->from, "%s", from);
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
    const char *host = wild ? "localhost" : a;
    mx_info("event=listening addr=%s port=%d listen=%s tls=%s ws=%s://%s%s%s:%d/ws block_cache=%s loop=%s",
            a, port, from, tls, scheme, v6 ? "[" : "", host, v6 ? "]" : "", port, mx_block_caching() ? "on" : "off",
            s->uvloop ? "uv" : "poll");
    /* what a new user opens first (make run shows it) */
    if (s->cfg->serve_demo)
        mx_info("event=demo url=%s://%s%s%s:%d/ note=\"open it in two windows\"",
                s->cfg->tls_cert_file[0] ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

/* The start-up's listen failure, in the log and, for a new user, on stderr
 * in words. perr is an errno from probing the address, or 0 when only lws
 * knows why. */
static void report_listen_failure(const struct mx_config *cfg, int perr)
{
    const char *why = perr ? strerror(perr) : "libwebsockets could not create the listener (see its lines above)";
    mx_err("event=listen_failed addr=%s port=%d reason=\"%s\"", cfg->listen_addr, cfg->listen_port, why);
    fprintf(stderr, "movexd: cannot listen on %s:%d: %s%s\n", cfg->listen_addr, cfg->listen_port, why,
            perr == EADDRINUSE ? " (another movexd, or another program, is using the port; stop "
                              "it or choose another `listen` port)"
                            : "");
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
        /* on the libuv loop lws creates the context even when the bind
         * failed: ask the address itself why (EADDRINUSE, ...) */
        int perr = mx_listen_probe(cfg->listen_addr, cfg->listen_port);
        if (perr) {
            report_listen_failure(cfg, perr);
            return -1;
        }
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
            add_bound(s, (struct sockaddr *)&sa, len, asked);
    }
    s->port = port;
    for (int i = 0; i < n && i < 8; i++)
        s->listen_fds[s->nlisten_fds++] = fds[i];
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
        add_bound(s, (struct sockaddr *)&sa, len, "systemd");
    }
    bound_loopback = loopback;
    return 0;
}

static void free_count(void *p) { free(p); }

int mx_server_start(struct mx_server *s, const struct mx_config *cfg, mx_engine *e)
{
    char err[1024];
    int loop = mx_evloop_choose(cfg->event_loop, err, sizeof err);
    if (loop < 0) {
        mx_err("event=start_failed reason=\"%s\"", err);
        return -1;
    }
    return mx_server_start_on(s, cfg, e, NULL, 0, loop);
}

/* The libuv loop is not closed after the context: lws_context_destroy
 * unloads its evlib plugin, and turning the loop to run the close callbacks
 * of lws's handles would call into the unloaded code (SIGSEGV). The loop is
 * static, so what it holds stays reachable until the process exits, which
 * follows the destroy. */
static void destroy_context(struct mx_server *s)
{
    if (s->ctx)
        lws_context_destroy(s->ctx);
    s->ctx = NULL;
    s->uvloop = NULL;
}

int mx_server_start_on(struct mx_server *s, const struct mx_config *cfg, mx_engine *e,
                       const int *fds, int nfds, int loop)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->engine = e;
    s->per_ip = mx_map_new();
    if (!s->per_ip)
        return -1;
    lws_set_log_level(LLL_ERR | (mx_log_enabled(MX_LOG_DEBUG) ? LLL_WARN : 0), lws_log_emit);
    /* lws sizes its descriptor table from the same limit (main.c may have
     * raised it toward the hard limit already) */
    struct rlimit rl;
    s->fd_limit = getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX
                      ? INT_MAX
                      : (long)rl.rlim_cur;
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    protocols[1] = mx_redis_protocol; /* Redis sockets are adopted under it (cluster mode) */
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
    /* dead peers: pinged after half of idle_timeout_ms without traffic,
     * hung up after all of it (browsers answer pings by themselves) - by
     * session.c/idle.c on the tick, not by lws: its per-connection timer
     * costs O(connections) to arm (idle.c). A policy without a hang-up time
     * turns lws's off (else it applies its default, 300/310 s). */
    static const lws_retry_bo_t no_lws_idle;
    info.retry_and_idle_policy = &no_lws_idle;
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
    /* The loop: libuv (epoll, O(ready descriptors) per turn) through lws's
     * evlib plugin on a loop we own, or lws's own poll() loop (O(connections)
     * per turn); main.c chose it (evloop.c: uv only when the plugin loads,
     * so a failure here is a real error, never a reason to fall back).
     * docs/PERFORMANCE.md has why not our own epoll. */
    static uv_loop_t uvloop;
    static void *uvloops[1] = {&uvloop};
    if (loop == MX_LOOP_UV) {
        int uerr = uv_loop_init(&uvloop);
        if (uerr) {
            mx_err("event=start_failed reason=\"libuv: cannot create the loop: %s\"", uv_strerror(uerr));
            return -1;
        }
        info.foreign_loops = uvloops;
        info.options |= LWS_SERVER_OPTION_LIBUV;
    }
    s->ctx = lws_create_context(&info);
    if (s->ctx && loop == MX_LOOP_UV) {
        s->uvloop = &uvloop;
        /* With a foreign libuv loop, lws 4.1.6 returns the context even when
         * it failed to make the default vhost (a certificate it cannot use,
         * ...): it has begun destroying it and hands it back for the loop
         * to finish (fatal_exit_defer in lws_create_context). No vhost
         * means that failure (the port in use, ...), not a listener
         * missing for want of an address (check_bound's case). */
        if (!lws_get_vhost_by_name(s->ctx, "default")) {
            destroy_context(s);
            /* s->ctx is NULL now: reported below as on the poll loop */
        }
    }
    if (!s->ctx) {
        report_listen_failure(cfg, nfds > 0 ? 0 : mx_listen_probe(cfg->listen_addr, cfg->listen_port));
        return -1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(s->ctx, "default");
    if (nfds > 0 ? adopt_inherited(s, vh, fds, nfds) : check_bound(s, vh)) {
        destroy_context(s);
        return -1;
    }
    /* a commit's replies are written as soon as it is made (session.c) */
    mx_engine_set_released(e, mx_session_flush_released, s);
    mx_httpfail_enable(); /* a request lws cannot parse gets an answer */
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

/* Presence changes held back by their rate limit go out at the first commit
 * after MX_PRESENCE_INTERVAL_MS: this timer makes sure there is one even
 * when no client sends anything. */
static void on_presence_due(lws_sorted_usec_list_t *sul)
{
    struct tick_timer *t = (struct tick_timer *)sul;
    lws_cancel_service(t->srv->ctx); /* as on_background: wake the poll */
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
    struct tick_timer bg, pres;
    memset(&bg, 0, sizeof(bg));
    bg.srv = s;
    memset(&pres, 0, sizeof(pres));
    pres.srv = s;
    s->background_due = 1;
    s->watchdog_usec = mx_notify_watchdog_usec();
    /* start-up has succeeded: announce, then READY (docs/OPERATIONS.md) */
    for (int i = 0; i < s->nbound; i++)
        log_listening(s, (struct sockaddr *)&s->bound[i].sa, s->bound[i].from);
    char status[160];
    snprintf(status, sizeof(status), "READY=1\nSTATUS=serving on port %d", s->port);
    mx_notify(status);
    uint64_t last_watchdog = 0;
    int ret = 0;
    while (!s->stop) {
        if (s->uvloop)
            uv_run((uv_loop_t *)s->uvloop, UV_RUN_ONCE);
        else if (lws_service(s->ctx, 0) < 0)
            break;
        /* the rest of what busy connections sent, before the commit */
        mx_readmore_service(s->ctx);
        if (accept_out_of_fds) {
            accept_out_of_fds = 0;
            for (int i = 0; i < s->nlisten_fds; i++)
                shed_waiting(s, s->listen_fds[i]);
        }
        int rc = mx_engine_commit(s->engine);
        if (mx_engine_presence_waiting(s->engine))
            lws_sul_schedule(s->ctx, 0, &pres.sul, on_presence_due,
                             (lws_usec_t)MX_PRESENCE_INTERVAL_MS * LWS_US_PER_MS);
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
            mx_log_flush(); /* the counts of log storms that stopped */
            mx_session_expire_idle(s);
            mx_heaptrim_tick(); /* after a connection storm: its freed memory */
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
    lws_sul_cancel(&pres.sul);
    return ret;
}

void mx_server_shutdown(struct mx_server *s, int timeout_ms)
{
    s->stopping = 1;
    mx_notify("STOPPING=1\nSTATUS=closing connections");
    for (struct mx_session *x = s->sessions; x; x = x->next)
        mx_session_close(x, 1001, "server shutting down");
    uint64_t end = mx_now_us() + (uint64_t)timeout_ms * 1000;
    while (s->nsessions && mx_now_us() < end) {
        if (s->uvloop)
            uv_run((uv_loop_t *)s->uvloop, UV_RUN_ONCE);
        else if (lws_service(s->ctx, 0) < 0)
            break;
        mx_readmore_service(s->ctx); /* the peers' close frames may be read ahead */
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
    if (s->engine)
        mx_engine_set_released(s->engine, NULL, NULL);
    mx_wsmask_free();
    mx_readmore_free();
    if (s->spare_fd > 0)
        close(s->spare_fd);
    s->spare_fd = -1;
    destroy_context(s);
    if (s->per_ip)
        mx_map_free(s->per_ip, free_count);
    s->per_ip = NULL;
}
