/* server.h - the libwebsockets context: one listener serving WebSocket at
 * /ws (subprotocol movex.v1, also the default for clients that offer none)
 * and the HTTP routes (http.h, admin.h) on the same port; one event loop. */
#ifndef MOVEXD_SERVER_H
#define MOVEXD_SERVER_H

#include <stdint.h>

#include <sys/socket.h>

#include "movexd/config.h"
#include "movexd/engine.h"
#include "movexd/idle.h"

struct lws_context;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

struct mx_server {
    const struct mx_config *cfg;
    mx_engine *engine;
    struct lws_context *ctx;
    void *uvloop; /* the libuv loop lws runs on (uv_loop_t), NULL on lws's poll loop */
    int port; /* actual listening port */
    uint64_t slow_closes; /* connections closed 4008 */
    uint64_t too_large_closes;
    volatile int stop;
    volatile int reload;              /* SIGHUP seen */
    void (*on_reload)(struct mx_server *s); /* main.c: re-read the conf */
    int tick_due;
    int background_due; /* a slice of start-up recovery work is due */
    void *per_ip; /* mx_map: peer address -> connection count */
    struct mx_session *sessions; /* open WebSocket sessions */
    struct mx_dlist dirty; /* sessions given frames since the last flush (session.c) */
    struct mx_idle idle;                   /* sessions by last sign of life (idle.c) */
    size_t nsessions;
    int stopping;                /* shutting down: refuse new connections */
    uint64_t watchdog_usec;
    unsigned char admin_token[256]; /* bearer token of the admin API */
    size_t admin_token_len;         /* 0: admin API disabled */
    uint64_t origin_refusals, ip_refusals, rate_limited, rate_closes;
    uint64_t disk_failing_since_ms; /* 0 while storage flushes succeed */
    unsigned connections;            /* open WebSocket connections */
    /* The listening vhost's SSL_CTX (lws hands it over while creating the
     * context); a certificate reload (tls.c) swaps the certificate in it. */
    struct ssl_ctx_st *tls_ctx;
    /* Descriptors (server.c): the soft RLIMIT_NOFILE when the context was
     * made, a spare descriptor given up to shed waiting connections when
     * accept() fails for want of one, and the listening sockets. */
    long fd_limit;
    int spare_fd;
    int listen_fds[8];
    int nlisten_fds;
    /* The listeners to announce (event=listening), and where each came
     * from: logged by mx_server_run once start-up has succeeded, never by
     * a start that fails after binding (server.c). */
    struct mx_server_bound {
        struct sockaddr_storage sa;
        char from[200];
    } bound[8];
    int nbound;
    uint64_t fd_refusals; /* connections closed at accept: too few descriptors left */
};

/* How long acks may stay held by a failing disk before the daemon gives up
 * and exits (for the supervisor to restart it and recover from disk). */
#define MX_DISK_FAIL_EXIT_MS 60000

/* 1 when the listen address is loopback only (127.0.0.0/8, ::1, localhost);
 * once listening, judged by the addresses really bound. */
int mx_server_listen_is_loopback(const struct mx_config *cfg);

/* Create the context and start listening on the configured address; the
 * address really bound is checked against it (event=bind_mismatch) and
 * kept for mx_server_run to log (event=listening). 0 or -1 (logged). */
int mx_server_start(struct mx_server *s, const struct mx_config *cfg, mx_engine *e);
/* The same on the loop `loop` (MX_LOOP_UV or MX_LOOP_POLL, as
 * mx_evloop_choose() returned it; mx_server_start chooses by itself),
 * serving the nfds listening sockets fds (socket activation,
 * mx_listen_inherited()) instead of binding `listen`; nfds 0: binds
 * `listen` as mx_server_start does. */
int mx_server_start_on(struct mx_server *s, const struct mx_config *cfg, mx_engine *e,
                       const int *fds, int nfds, int loop);
/* Serve until s->stop is set (from a signal handler via mx_server_wake).
 * First logs event=listening for each listener and tells systemd READY=1:
 * called only once every other part of start-up has succeeded. */
int mx_server_run(struct mx_server *s);
/* Async-signal-safe: ask the loop to look at s->stop. */
void mx_server_wake(struct mx_server *s);
void mx_server_destroy(struct mx_server *s);

/* Graceful stop: close every connection with 1001 once its queue is sent,
 * serving the loop until all are gone or timeout_ms passed. */
void mx_server_shutdown(struct mx_server *s, int timeout_ms);

#endif
