/* loadgen.c - load generator for movexd (and bench/ceiling.c): many WebSocket
 * connections driven from one epoll loop, one JSON result line on stdout.
 *
 * It owns its own minimal RFC 6455 client (HTTP upgrade, masked text frames
 * out, unmasked frames in, fragmentation, ping/close) so that the generator's
 * cost per message stays far below the server's: every connection's outgoing
 * frames are gathered in a buffer and written with one send() per loop turn,
 * and replies are read into one shared buffer and decoded by a small scanner
 * of top-level JSON keys (no allocation per message).
 *
 * Roles: W writers (each keeps `window` actions `inc /count` in flight, or
 * paces them to `rate` actions/s in total), S subscribers, spread round-robin
 * over R rooms, and one checker connection that reads each room with `get`
 * at the end. Every connection checks the ordering rule on the way: the seqs
 * of the acks and fwds it receives for its room must follow each other
 * without gap or repeat (`gaps`, `dups` in the result).
 *
 * Invariants: the result's `final_ok` is true only when every room's final
 * counter equals the number of (non-duplicate) acks the writers received for
 * it, nothing was rejected, no connection was lost, and no gap or duplicate
 * was seen; the exit status is 0 exactly then. Latencies are measured only
 * for acks/fwds received inside the measurement window (after the warm-up).
 *
 * Modes besides the throughput run: idle connections (writers 0; the
 * server's memory per connection from /proc/PID/status), and a reconnect
 * storm (--storm-at: every subscriber drops its TCP connection at once and
 * reconnects with `since`; time until all are caught up).
 *
 * Past ~28k connections per address the ephemeral ports run out, so
 * connections are bound round-robin to 127.0.0.1..127.0.0.N (--sources, by
 * default one per 20,000 connections) with IP_BIND_ADDRESS_NO_PORT.
 *
 * --tls batch|frame speaks TLS (OpenSSL, no certificate check: loopback
 * only) after the TCP connect: `batch` writes a connection's gathered bytes
 * with one SSL_write per loop turn (one record per turn, as a batching
 * client would), `frame` with one SSL_write, so one TLS record, per
 * WebSocket frame (as browsers send them). Reads drain OpenSSL until it
 * wants the socket again, so nothing waits in its buffers unseen by epoll.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "wsjson.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { ST_FREE, ST_CONNECTING, ST_TLS, ST_UPGRADE, ST_HELLO, ST_SUB, ST_READY, ST_DEAD };
enum { R_WRITER, R_SUB, R_CHECKER };
enum { ID_SUB = 1, ID_GET_BASE = 100 }; /* request ids; actions use id = n */

#define RDBUF (256 * 1024)
#define NHIST 2048

struct conn {
    int fd;
    SSL *ssl; /* --tls: the connection's TLS session, else NULL */
    uint8_t state, role;
    bool dirty, want_out, storm_pending;
    uint32_t room;
    uint32_t wid; /* writer index / subscriber index */
    char *in;     /* unparsed bytes kept between reads (partial frame) */
    uint32_t in_len, in_cap;
    char *out; /* gathered outgoing frames, written once per loop turn */
    uint32_t out_off, out_len, out_cap;
    char *frag; /* a fragmented message being assembled */
    uint32_t frag_len, frag_cap;
    int64_t seq; /* last seq seen for the room, -1 before the snapshot */
    char checksum[33];
    /* writers */
    uint64_t next_n, acked, sent;
    uint32_t inflight;
    uint64_t *ring_t, *ring_n; /* send time of action n at n & ring_mask */
};

struct room {
    uint64_t acked;    /* acks (not duplicate) for this room */
    int64_t head;      /* highest seq acked by a writer */
    int64_t at_drop;   /* head when the storm began */
    int64_t final;     /* counter read by the checker, -1 until read */
    int64_t final_seq;
};

struct hist {
    uint64_t b[NHIST];
    uint64_t n;
};

static struct {
    /* options */
    const char *host, *path, *prefix;
    int port;
    int ports[16];  /* --ports: connection i goes to ports[i % nports] (several nodes) */
    uint32_t nports;
    int cpu_pids[16]; /* --cpu-pids: more processes whose CPU in the window is reported
                         (cluster mode: the other nodes, redis-server) */
    uint32_t ncpu_pids;
    uint64_t cpu_ticks0[16], cpu_ticks1[16];
    uint32_t writers, subs, rooms, window, sources, connect_batch;
    double duration, warmup, rate, storm_at, drain_timeout, ready_timeout;
    int server_pid;
    int ready_signal; /* sent to server_pid once every connection is ready */
    bool quiet;
    int tls;          /* --tls: 0 plain, 1 batch (a record per turn), 2 frame (a record per frame) */
    SSL_CTX *ssl_ctx; /* --tls */
    /* state */
    int ep;
    struct conn *c;
    uint32_t nconn, next_connect, connecting, ready, dead_unexpected;
    struct room *room;
    uint32_t ring_mask;
    uint32_t *dirty;
    uint32_t ndirty;
    char *rd;
    uint64_t t0, t_ready, t_measure, t_end, t_storm, t_caught;
    bool measuring, stopping, storm_done, storm_active;
    uint32_t storm_left;
    /* counters (window = inside the measurement window) */
    uint64_t acks_win, fwds_win, acks_all, fwds_all, rejects, errors, dup_acks;
    uint64_t gaps, dups, storm_snapshots, storm_actions, gets_left;
    struct hist h_ack, h_fwd;
    char first_problem[300];
    uint64_t rnd;
    /* cpu */
    uint64_t srv_ticks0, srv_ticks1;
    double gen_cpu0, gen_cpu1;
    long srv_rss0, srv_rss1, srv_anon0, srv_anon1;
} G;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd64(void)
{
    /* xorshift64*: mask keys need not be secret here, only varied */
    G.rnd ^= G.rnd >> 12;
    G.rnd ^= G.rnd << 25;
    G.rnd ^= G.rnd >> 27;
    return G.rnd * 0x2545F4914F6CDD1DULL;
}

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
    if (G.first_problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(G.first_problem, sizeof(G.first_problem), fmt, ap);
    va_end(ap);
    if (!G.quiet)
        fprintf(stderr, "loadgen: %s\n", G.first_problem);
}

/* ------------------------------------------------------------ histogram -- */
/* log-linear: exact below 64 ns, then 32 sub-buckets per power of two (<3%) */
static unsigned hist_idx(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    return 64u + (msb - 6u) * 32u + (unsigned)((v >> (msb - 5u)) & 31u);
}

static double hist_val(unsigned i)
{
    if (i < 64)
        return i;
    unsigned msb = (i - 64u) / 32u + 6u, sub = (i - 64u) % 32u;
    double lo = (double)((uint64_t)(32u + sub) << (msb - 5u));
    return lo + (double)((uint64_t)1 << (msb - 5u)) / 2.0;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->b[hist_idx(v)]++;
    h->n++;
}

static double hist_pct_us(const struct hist *h, double p)
{
    if (!h->n)
        return -1;
    uint64_t want = (uint64_t)ceil(p * (double)h->n), acc = 0;
    if (want < 1)
        want = 1;
    for (unsigned i = 0; i < NHIST; i++) {
        acc += h->b[i];
        if (acc >= want)
            return hist_val(i) / 1000.0;
    }
    return -1;
}

/* ------------------------------------------------------------ /proc ----- */
static uint64_t proc_ticks(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return 0;
    unsigned long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return ut + st;
}

static long proc_status_kb(int pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------ output ---- */
static void mark_dirty(struct conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        G.dirty[G.ndirty++] = (uint32_t)(c - G.c);
    }
}

static void out_reserve(struct conn *c, uint32_t more)
{
    if (c->out_len + more <= c->out_cap)
        return;
    if (c->out_off) { /* compact before growing */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap)
            return;
    }
    uint32_t cap = c->out_cap ? c->out_cap : 512;
    while (cap < c->out_len + more)
        cap *= 2;
    c->out = xrealloc(c->out, cap);
    c->out_cap = cap;
}

static void out_raw(struct conn *c, const char *p, uint32_t n)
{
    out_reserve(c, n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    mark_dirty(c);
}

/* One masked frame (RFC 6455 5.3: every client frame is masked). */
static void out_frame(struct conn *c, int opcode, const char *p, uint32_t n)
{
    out_reserve(c, n + 14);
    unsigned char *h = (unsigned char *)c->out + c->out_len;
    uint32_t key = (uint32_t)rnd64();
    unsigned char mk[4] = {(unsigned char)key, (unsigned char)(key >> 8), (unsigned char)(key >> 16),
                           (unsigned char)(key >> 24)};
    uint32_t hl = ws_put_head(h, opcode, n, mk);
    unsigned char *d = h + hl;
    for (uint32_t i = 0; i < n; i++)
        d[i] = (unsigned char)p[i] ^ mk[i & 3];
    c->out_len += hl + n;
    mark_dirty(c);
}

static void out_text(struct conn *c, const char *p, int n)
{
    out_frame(c, 1, p, (uint32_t)n);
}

static void conn_drop(struct conn *c, bool expected);

/* Length of the (masked, client) frame at p, at most n. */
static uint32_t frame_len(const unsigned char *p, uint32_t n)
{
    if (n < 2)
        return n;
    uint64_t len = p[1] & 0x7f;
    uint32_t hl = 2 + 4;
    if (len == 126 && n >= 4) {
        len = (uint64_t)p[2] << 8 | p[3];
        hl += 2;
    } else if (len == 127 && n >= 10) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        hl += 8;
    }
    return len + hl < n ? (uint32_t)(len + hl) : n;
}

/* send() or SSL_write(): > 0 bytes written, or -1 with errno (EAGAIN: try
 * again when writable). */
static ssize_t io_send(struct conn *c, const char *p, uint32_t n)
{
    if (!c->ssl)
        return send(c->fd, p, n, MSG_NOSIGNAL);
    if (G.tls == 2 && c->state != ST_UPGRADE)
        n = frame_len((const unsigned char *)p, n); /* one record per frame */
    ERR_clear_error();
    int k = SSL_write(c->ssl, p, (int)n);
    if (k > 0)
        return k;
    int e = SSL_get_error(c->ssl, k);
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
    return -1;
}

/* recv() or SSL_read(): as recv (0: the peer closed). */
static ssize_t io_recv(struct conn *c, char *buf, size_t n)
{
    if (!c->ssl)
        return recv(c->fd, buf, n, 0);
    ERR_clear_error();
    int k = SSL_read(c->ssl, buf, n > 1u << 30 ? 1 << 30 : (int)n);
    if (k > 0)
        return k;
    int e = SSL_get_error(c->ssl, k);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : ECONNRESET;
    return -1;
}

static void flush_conn(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t k = io_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (k > 0) {
            c->out_off += (uint32_t)k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - G.c)};
                epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = true;
            }
            return;
        }
        if (k < 0 && errno == EINTR)
            continue;
        conn_drop(c, false);
        return;
    }
    c->out_off = c->out_len = 0;
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - G.c)};
        epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = false;
    }
}

static void flush_all(void)
{
    for (uint32_t i = 0; i < G.ndirty; i++) {
        struct conn *c = &G.c[G.dirty[i]];
        c->dirty = false;
        if (c->state != ST_FREE && c->state != ST_DEAD && c->state != ST_CONNECTING && c->state != ST_TLS)
            flush_conn(c);
    }
    G.ndirty = 0;
}

/* ------------------------------------------------------------ protocol -- */
static void room_name(char *buf, size_t n, uint32_t r)
{
    snprintf(buf, n, "%s:r%u", G.prefix, r);
}

static void send_action(struct conn *c)
{
    char room[160], msg[400];
    room_name(room, sizeof(room), c->room);
    uint64_t n = c->next_n++;
    int len = snprintf(msg, sizeof(msg),
                       "{\"type\":\"action\",\"id\":%" PRIu64 ",\"room\":\"%s\",\"n\":%" PRIu64
                       ",\"action\":{\"type\":\"patch\",\"payload\":[{\"op\":\"inc\",\"path\":\"/count\","
                       "\"value\":1}]}}",
                       n, room, n);
    uint32_t slot = (uint32_t)n & G.ring_mask;
    c->ring_t[slot] = now_ns();
    c->ring_n[slot] = n;
    c->inflight++;
    c->sent++;
    out_text(c, msg, len);
}

static void send_hello(struct conn *c)
{
    char msg[200];
    const char *kind = c->role == R_WRITER ? "w" : c->role == R_SUB ? "s" : "c";
    int len = snprintf(msg, sizeof(msg), "{\"type\":\"hello\",\"client\":\"%s-%s%u\"}", G.prefix, kind, c->wid);
    out_text(c, msg, len);
}

static void send_subscribe(struct conn *c)
{
    char room[160], msg[400];
    room_name(room, sizeof(room), c->room);
    int len;
    if (c->seq >= 0 && c->checksum[0])
        len = snprintf(msg, sizeof(msg),
                       "{\"type\":\"subscribe\",\"id\":%d,\"room\":\"%s\",\"since\":{\"seq\":%" PRId64
                       ",\"checksum\":\"%s\"}}",
                       ID_SUB, room, c->seq, c->checksum);
    else
        len = snprintf(msg, sizeof(msg), "{\"type\":\"subscribe\",\"id\":%d,\"room\":\"%s\"}", ID_SUB, room);
    out_text(c, msg, len);
}

/* A scanned message: spans into the frame, numbers parsed. */
struct msg {
    struct span type, client, checksum, state, actions, code;
    int64_t id, n, seq, from, to, next_n;
    bool duplicate;
};

static void msg_member(void *ctx, const char *k, uint32_t kn, const char *v, const char *ve)
{
    struct msg *m = ctx;
    switch (k[0]) {
    case 't':
        if (key_is(k, kn, "type") && !m->type.p)
            m->type = str_span(v, ve);
        else if (key_is(k, kn, "to"))
            m->to = strtoll(v, NULL, 10);
        break;
    case 'i':
        if (key_is(k, kn, "id"))
            m->id = strtoll(v, NULL, 10);
        break;
    case 'n':
        if (key_is(k, kn, "n"))
            m->n = strtoll(v, NULL, 10);
        else if (key_is(k, kn, "next_n"))
            m->next_n = strtoll(v, NULL, 10);
        break;
    case 's':
        if (key_is(k, kn, "seq"))
            m->seq = strtoll(v, NULL, 10);
        else if (key_is(k, kn, "state"))
            m->state = (struct span){v, (uint32_t)(ve - v)};
        break;
    case 'c':
        if (key_is(k, kn, "client"))
            m->client = str_span(v, ve);
        else if (key_is(k, kn, "checksum"))
            m->checksum = str_span(v, ve);
        else if (key_is(k, kn, "code"))
            m->code = str_span(v, ve);
        break;
    case 'a':
        if (key_is(k, kn, "actions"))
            m->actions = (struct span){v, (uint32_t)(ve - v)};
        break;
    case 'f':
        if (key_is(k, kn, "from"))
            m->from = strtoll(v, NULL, 10);
        break;
    case 'd':
        if (key_is(k, kn, "duplicate"))
            m->duplicate = (ve - v == 4 && !memcmp(v, "true", 4));
        break;
    }
}

static bool msg_scan(struct msg *m, const char *p, uint32_t n)
{
    memset(m, 0, sizeof(*m));
    m->id = m->n = m->seq = m->from = m->to = -1;
    return scan_object(p, p + n, msg_member, m) && m->type.p;
}

static bool type_is(const struct msg *m, const char *lit)
{
    return key_is(m->type.p, m->type.n, lit);
}

/* the ordering rule, per connection: seqs follow each other */
static void track_seq(struct conn *c, int64_t seq, struct span cs)
{
    if (c->seq >= 0) {
        if (seq <= c->seq) {
            G.dups++;
            problem("conn %u: seq %" PRId64 " after %" PRId64 " (duplicate)", (unsigned)(c - G.c), seq, c->seq);
            return;
        }
        if (seq != c->seq + 1) {
            G.gaps++;
            problem("conn %u: seq %" PRId64 " after %" PRId64 " (gap)", (unsigned)(c - G.c), seq, c->seq);
        }
    }
    c->seq = seq;
    if (cs.p && cs.n < sizeof(c->checksum)) {
        memcpy(c->checksum, cs.p, cs.n);
        c->checksum[cs.n] = 0;
    }
}

static void state_member(void *ctx, const char *k, uint32_t kn, const char *v, const char *ve)
{
    if (key_is(k, kn, "count"))
        *(int64_t *)ctx = strtoll(v, NULL, 10);
}

static void entry_member(void *ctx, const char *k, uint32_t kn, const char *v, const char *ve)
{
    struct msg *m = ctx;
    if (key_is(k, kn, "seq"))
        m->seq = strtoll(v, NULL, 10);
    else if (key_is(k, kn, "checksum"))
        m->checksum = str_span(v, ve);
}

static void storm_check_caught(struct conn *c)
{
    if (c->storm_pending && c->seq >= G.room[c->room].at_drop) {
        c->storm_pending = false;
        if (--G.storm_left == 0) {
            G.t_caught = now_ns();
            G.storm_active = false;
        }
    }
}

static void on_ready(struct conn *c)
{
    c->state = ST_READY;
    G.ready++;
    if (G.connecting)
        G.connecting--;
}

static void on_message(struct conn *c, const char *p, uint32_t n)
{
    struct msg m;
    if (!msg_scan(&m, p, n)) {
        G.errors++;
        problem("conn %u: unreadable message: %.*s", (unsigned)(c - G.c), (int)(n > 200 ? 200 : n), p);
        return;
    }
    uint64_t t = now_ns();
    if (type_is(&m, "fwd")) {
        G.fwds_all++;
        if (G.measuring)
            G.fwds_win++;
        track_seq(c, m.seq, m.checksum);
        if (c->storm_pending)
            storm_check_caught(c);
        /* send -> fwd latency for our own writers' actions ("<prefix>-w<i>") */
        size_t pl = strlen(G.prefix);
        if (G.measuring && m.client.p && m.client.n > pl + 2 && !memcmp(m.client.p, G.prefix, pl) &&
            m.client.p[pl] == '-' && m.client.p[pl + 1] == 'w') {
            uint32_t w = (uint32_t)strtoul(m.client.p + pl + 2, NULL, 10);
            if (w < G.writers && m.n >= 0) {
                struct conn *wc = &G.c[w];
                uint32_t slot = (uint32_t)m.n & G.ring_mask;
                if (wc->ring_n[slot] == (uint64_t)m.n)
                    hist_add(&G.h_fwd, t - wc->ring_t[slot]);
            }
        }
        return;
    }
    if (type_is(&m, "ack")) {
        if (c->role != R_WRITER || m.n < 0) {
            G.errors++;
            problem("unexpected ack on conn %u", (unsigned)(c - G.c));
            return;
        }
        if (m.duplicate) {
            G.dup_acks++;
            problem("duplicate ack for n %" PRId64, m.n);
        } else {
            c->acked++;
            G.acks_all++;
            struct room *r = &G.room[c->room];
            r->acked++;
            if (m.seq > r->head)
                r->head = m.seq;
            track_seq(c, m.seq, m.checksum);
        }
        if (c->inflight)
            c->inflight--;
        uint32_t slot = (uint32_t)m.n & G.ring_mask;
        if (G.measuring) {
            G.acks_win++;
            if (c->ring_n[slot] == (uint64_t)m.n)
                hist_add(&G.h_ack, t - c->ring_t[slot]);
        }
        if (G.rate <= 0 && !G.stopping)
            while (c->inflight < G.window)
                send_action(c);
        return;
    }
    if (type_is(&m, "welcome")) {
        if (c->state != ST_HELLO)
            return;
        if (c->role == R_CHECKER) {
            on_ready(c);
            return;
        }
        c->state = ST_SUB;
        send_subscribe(c);
        return;
    }
    if (type_is(&m, "snapshot") || type_is(&m, "actions")) {
        if (m.id >= ID_GET_BASE && c->role == R_CHECKER) {
            uint32_t r = (uint32_t)(m.id - ID_GET_BASE);
            if (r < G.rooms && G.room[r].final < 0) {
                int64_t count = 0;
                if (m.state.p)
                    scan_object(m.state.p, m.state.p + m.state.n, state_member, &count);
                G.room[r].final = count;
                G.room[r].final_seq = m.seq;
                G.gets_left--;
            }
            return;
        }
        if (m.id != ID_SUB)
            return;
        bool reconnect = c->seq >= 0;
        if (type_is(&m, "snapshot")) {
            if (reconnect)
                G.storm_snapshots++;
            /* a snapshot replaces whatever the connection had */
            c->seq = m.seq;
            if (m.checksum.p && m.checksum.n < sizeof(c->checksum)) {
                memcpy(c->checksum, m.checksum.p, m.checksum.n);
                c->checksum[m.checksum.n] = 0;
            }
        } else {
            G.storm_actions++;
            /* every entry must continue the connection's seq */
            const char *q = m.actions.p, *e = m.actions.p + m.actions.n;
            if (q && *q == '[') {
                q++;
                for (;;) {
                    q = skip_ws(q, e);
                    if (q >= e || *q == ']')
                        break;
                    const char *qe = skip_value(q, e);
                    if (!qe)
                        break;
                    struct msg en;
                    memset(&en, 0, sizeof(en));
                    en.seq = -1;
                    scan_object(q, qe, entry_member, &en);
                    track_seq(c, en.seq, en.checksum);
                    q = skip_ws(qe, e);
                    if (q < e && *q == ',')
                        q++;
                }
            }
            if (m.to > c->seq) {
                G.gaps++;
                problem("actions reply ends at %" PRId64 " but its entries at %" PRId64, m.to, c->seq);
            }
        }
        if (c->role == R_WRITER && m.next_n > 0 && (uint64_t)m.next_n > c->next_n)
            c->next_n = (uint64_t)m.next_n;
        if (c->state == ST_SUB)
            on_ready(c);
        if (c->storm_pending)
            storm_check_caught(c);
        return;
    }
    if (type_is(&m, "reject")) {
        G.rejects++;
        if (c->inflight)
            c->inflight--;
        problem("reject: %.*s", (int)(n > 200 ? 200 : n), p);
        return;
    }
    if (type_is(&m, "error")) {
        G.errors++;
        problem("error: %.*s", (int)(n > 200 ? 200 : n), p);
        return;
    }
    /* pong, unsubscribed, created: nothing to do */
}

/* ------------------------------------------------------------ frames ---- */
/* Parses complete frames from p..p+n; returns the bytes consumed. */
static uint32_t parse_frames(struct conn *c, const char *p, uint32_t n)
{
    uint32_t used = 0;
    while (n - used >= 2 && c->state != ST_DEAD && c->state != ST_FREE) {
        const unsigned char *h = (const unsigned char *)p + used, *mask;
        uint32_t avail = n - used, hl;
        uint64_t len;
        if (!ws_frame_head(h, avail, &hl, &len, &mask))
            break;
        if (len > (1u << 30)) {
            problem("frame of %" PRIu64 " bytes", len);
            conn_drop(c, false);
            return n;
        }
        if (avail < hl + len)
            break;
        char *d = (char *)h + hl; /* our own buffer: unmask in place if needed */
        if (mask)
            for (uint64_t i = 0; i < len; i++)
                d[i] ^= (char)mask[i & 3];
        int op = h[0] & 0x0f;
        bool fin = h[0] & 0x80;
        used += hl + (uint32_t)len;
        if (op == 8) { /* close: the server is going away */
            unsigned code = len >= 2 ? ((unsigned char)d[0] << 8 | (unsigned char)d[1]) : 0;
            problem("server closed conn %u with %u: %.*s", (unsigned)(c - G.c), code,
                    (int)(len > 2 ? len - 2 : 0), d + 2);
            conn_drop(c, false);
            return n;
        }
        if (op == 9) {
            out_frame(c, 10, d, (uint32_t)len);
            continue;
        }
        if (op == 10)
            continue;
        if (op == 1 || op == 2 || op == 0) {
            if (fin && c->frag_len == 0 && op != 0) {
                on_message(c, d, (uint32_t)len);
                continue;
            }
            if (c->frag_len + len > c->frag_cap) {
                c->frag_cap = (uint32_t)(c->frag_len + len) * 2;
                c->frag = xrealloc(c->frag, c->frag_cap);
            }
            memcpy(c->frag + c->frag_len, d, len);
            c->frag_len += (uint32_t)len;
            if (fin) {
                on_message(c, c->frag, c->frag_len);
                c->frag_len = 0;
            }
        }
    }
    return used;
}

static void upgrade_request(struct conn *c)
{
    unsigned char k[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rnd64();
        memcpy(k + i, &r, 8);
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    int o = 0;
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)k[i] << 16 | (uint32_t)k[i + 1] << 8 | k[i + 2];
        key[o++] = b64[v >> 18];
        key[o++] = b64[(v >> 12) & 63];
        key[o++] = b64[(v >> 6) & 63];
        key[o++] = b64[v & 63];
    }
    uint32_t v = (uint32_t)k[15] << 16;
    key[o++] = b64[v >> 18];
    key[o++] = b64[(v >> 12) & 63];
    key[o++] = '=';
    key[o++] = '=';
    key[o] = 0;
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: movex.v1\r\n\r\n",
                     G.path, G.host, G.ports[(uint32_t)(c - G.c) % G.nports], key);
    out_raw(c, req, (uint32_t)n);
}

/* Bytes arrived: the upgrade response first, then frames. */
static void consume(struct conn *c, const char *p, uint32_t n)
{
    if (c->state == ST_UPGRADE) {
        const char *e = memmem(p, n, "\r\n\r\n", 4);
        if (!e)
            goto keep;
        if (n < 12 || memcmp(p, "HTTP/1.1 101", 12)) {
            problem("upgrade refused: %.*s", (int)(n > 100 ? 100 : n), p);
            conn_drop(c, false);
            return;
        }
        uint32_t hl = (uint32_t)(e + 4 - p);
        c->state = ST_HELLO;
        send_hello(c);
        p += hl;
        n -= hl;
    }
    uint32_t used = parse_frames(c, p, n);
    if (c->state == ST_DEAD || c->state == ST_FREE)
        return;
    p += used;
    n -= used;
keep:
    if (n == 0) {
        c->in_len = 0;
        return;
    }
    if (p >= c->in && p < c->in + c->in_cap) { /* the rest is already in c->in */
        memmove(c->in, p, n);
    } else {
        if (n > c->in_cap) {
            c->in_cap = n < 4096 ? 4096 : n * 2;
            c->in = xrealloc(c->in, c->in_cap);
        }
        memcpy(c->in, p, n);
    }
    c->in_len = n;
}

static void on_readable(struct conn *c)
{
    /* TLS: until OpenSSL wants the socket (a record read leaves the next
     * one in the kernel or in OpenSSL's buffer, which epoll cannot see) */
    for (int round = 0; round < 4 || c->ssl; round++) {
        ssize_t k;
        if (c->in_len) {
            if (c->in_cap - c->in_len < 65536) {
                c->in_cap = c->in_len + 131072;
                c->in = xrealloc(c->in, c->in_cap);
            }
            k = io_recv(c, c->in + c->in_len, c->in_cap - c->in_len);
            if (k > 0) {
                uint32_t total = c->in_len + (uint32_t)k;
                consume(c, c->in, total);
            }
        } else {
            k = io_recv(c, G.rd, RDBUF);
            if (k > 0)
                consume(c, G.rd, (uint32_t)k);
        }
        if (k == 0) {
            problem("conn %u: the server closed the TCP connection", (unsigned)(c - G.c));
            conn_drop(c, false);
            return;
        }
        if (k < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                conn_drop(c, false);
            return;
        }
        if (c->state == ST_DEAD || (!c->ssl && (size_t)k < RDBUF / 2))
            return;
    }
}

/* ------------------------------------------------------------ connect --- */
static void conn_start(struct conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        problem("socket: %s", strerror(errno));
        c->state = ST_DEAD;
        G.dead_unexpected++;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint32_t idx = (uint32_t)(c - G.c);
    if (G.sources > 1) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + idx % G.sources);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
            problem("bind 127.0.0.%u: %s", 1 + idx % G.sources, strerror(errno));
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)G.ports[idx % G.nports])};
    inet_pton(AF_INET, G.host, &dst.sin_addr);
    c->fd = fd;
    c->state = ST_CONNECTING;
    G.connecting++;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = idx};
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
        problem("connect: %s", strerror(errno));
        conn_drop(c, false);
        return;
    }
    epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ev);
}

static void tls_step(struct conn *c);

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        problem("connect: %s", strerror(err));
        conn_drop(c, false);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - G.c)};
    epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = false;
    if (G.tls) {
        c->ssl = SSL_new(G.ssl_ctx);
        if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
            problem("SSL_new failed");
            conn_drop(c, false);
            return;
        }
        SSL_set_connect_state(c->ssl);
        c->state = ST_TLS;
        tls_step(c);
        return;
    }
    c->state = ST_UPGRADE;
    upgrade_request(c);
}

/* The TLS handshake, one step per event; then the upgrade request. */
static void tls_step(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    int e = r == 1 ? 0 : SSL_get_error(c->ssl, r);
    if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        char msg[160];
        ERR_error_string_n(ERR_get_error(), msg, sizeof msg);
        problem("TLS handshake: %s", msg);
        conn_drop(c, false);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | (e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)(c - G.c)};
    epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = e == SSL_ERROR_WANT_WRITE;
    if (r == 1) {
        c->state = ST_UPGRADE;
        upgrade_request(c);
    }
}

static void conn_drop(struct conn *c, bool expected)
{
    if (c->state == ST_FREE || c->state == ST_DEAD)
        return;
    if (c->state != ST_READY && G.connecting)
        G.connecting--;
    if (c->state == ST_READY && G.ready)
        G.ready--;
    epoll_ctl(G.ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->fd);
    c->fd = -1;
    c->state = ST_DEAD;
    c->in_len = c->out_len = c->out_off = c->frag_len = 0;
    c->want_out = false;
    if (!expected && !G.stopping)
        G.dead_unexpected++;
}

/* The storm: every subscriber drops at once, then all reconnect (--connect-batch at a time). */
static void storm_begin(void)
{
    G.t_storm = now_ns();
    for (uint32_t r = 0; r < G.rooms; r++)
        G.room[r].at_drop = G.room[r].head;
    G.storm_left = 0;
    for (uint32_t i = G.writers; i < G.writers + G.subs; i++) {
        struct conn *c = &G.c[i];
        if (c->state != ST_READY)
            continue;
        conn_drop(c, true);
        c->state = ST_FREE;
        c->storm_pending = true;
        G.storm_left++;
    }
    G.storm_active = G.storm_left > 0;
    G.storm_done = true;
    G.next_connect = G.writers; /* conns_tick reconnects the FREE ones */
    if (!G.storm_active)
        G.t_caught = G.t_storm;
}

static void conns_tick(void)
{
    while (G.next_connect < G.nconn && G.connecting < G.connect_batch) {
        struct conn *c = &G.c[G.next_connect++];
        if (c->state == ST_FREE)
            conn_start(c);
    }
}

/* The checker (the last connection) reads every room's counter with get. */
static void read_counters(void)
{
    struct conn *ck = &G.c[G.nconn - 1];
    G.gets_left = G.rooms;
    for (uint32_t r = 0; r < G.rooms; r++) {
        char room[160], msg[300];
        G.room[r].final = G.room[r].final_seq = -1;
        room_name(room, sizeof(room), r);
        int len = snprintf(msg, sizeof(msg), "{\"type\":\"get\",\"id\":%u,\"room\":\"%s\"}",
                           ID_GET_BASE + r, room);
        if (ck->state == ST_READY)
            out_text(ck, msg, len);
    }
}

/* ------------------------------------------------------------ main ------ */
static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --port P | --ports P1,P2,.. (connections spread over them) [--cpu-pids A,B,..] [--host 127.0.0.1] [--path /ws] [--writers 1] [--window 64]\n"
            "  [--subscribers 10] [--rooms 1] [--duration 5] [--warmup 1] [--rate 0 (actions/s, 0 = as fast as acks)]\n"
            "  [--server-pid PID] [--ready-signal SIG (to PID once all are ready)] [--prefix NAME] [--sources N] [--connect-batch 1000]\n"
            "  [--storm-at S (reconnect storm S s into the window)] [--drain-timeout 20] [--ready-timeout 120]\n"
            "  [--tls batch|frame (TLS; one record per loop turn or per frame)] [--quiet]\n");
    exit(2);
}

static void raise_nofile(uint64_t need)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur >= need)
        return;
    if (rl.rlim_max < need) {
        rl.rlim_max = need; /* works as root (up to fs.nr_open) */
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            return;
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
        fprintf(stderr, "loadgen: only %lu file descriptors allowed, %" PRIu64 " wanted\n",
                (unsigned long)rl.rlim_cur, need);
}

/* connections that have not (yet) seen their room's last seq, as read by the checker */
static uint64_t count_behind(void)
{
    uint64_t behind = 0;
    for (uint32_t i = 0; i < G.writers + G.subs; i++) {
        struct conn *c = &G.c[i];
        if (c->state == ST_READY && G.room[c->room].final_seq >= 0 && c->seq != G.room[c->room].final_seq)
            behind++;
    }
    return behind;
}

static double secs(uint64_t a, uint64_t b)
{
    return (double)(b - a) / 1e9;
}

int main(int argc, char **argv)
{
    G.host = "127.0.0.1";
    G.path = "/ws";
    G.writers = 1;
    G.window = 64;
    G.subs = 10;
    G.rooms = 1;
    G.duration = 5;
    G.warmup = 1;
    G.connect_batch = 1000;
    G.storm_at = -1;
    G.drain_timeout = 20;
    G.ready_timeout = 120;
    static char prefix[64];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet")) {
            G.quiet = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--port"))
            G.port = atoi(v);
        else if (!strcmp(a, "--ports") || !strcmp(a, "--cpu-pids")) {
            int *to = a[2] == 'p' ? G.ports : G.cpu_pids;
            uint32_t *nto = a[2] == 'p' ? &G.nports : &G.ncpu_pids;
            for (char *t = (char *)v; *t && *nto < 16;) {
                to[(*nto)++] = atoi(t);
                t += strcspn(t, ",");
                t += *t == ',';
            }
        }
        else if (!strcmp(a, "--host"))
            G.host = v;
        else if (!strcmp(a, "--tls")) {
            G.tls = !strcmp(v, "batch") ? 1 : !strcmp(v, "frame") ? 2 : -1;
            if (G.tls < 0)
                usage();
        }
        else if (!strcmp(a, "--path"))
            G.path = v;
        else if (!strcmp(a, "--writers"))
            G.writers = (uint32_t)atoi(v);
        else if (!strcmp(a, "--window"))
            G.window = (uint32_t)atoi(v);
        else if (!strcmp(a, "--subscribers"))
            G.subs = (uint32_t)atoi(v);
        else if (!strcmp(a, "--rooms"))
            G.rooms = (uint32_t)atoi(v);
        else if (!strcmp(a, "--duration"))
            G.duration = atof(v);
        else if (!strcmp(a, "--warmup"))
            G.warmup = atof(v);
        else if (!strcmp(a, "--rate"))
            G.rate = atof(v);
        else if (!strcmp(a, "--server-pid"))
            G.server_pid = atoi(v);
        else if (!strcmp(a, "--ready-signal"))
            G.ready_signal = atoi(v);
        else if (!strcmp(a, "--prefix"))
            G.prefix = v;
        else if (!strcmp(a, "--sources"))
            G.sources = (uint32_t)atoi(v);
        else if (!strcmp(a, "--connect-batch"))
            G.connect_batch = (uint32_t)atoi(v);
        else if (!strcmp(a, "--storm-at"))
            G.storm_at = atof(v);
        else if (!strcmp(a, "--drain-timeout"))
            G.drain_timeout = atof(v);
        else if (!strcmp(a, "--ready-timeout"))
            G.ready_timeout = atof(v);
        else
            usage();
    }
    if (!G.nports && G.port > 0)
        G.ports[G.nports++] = G.port;
    if (!G.port && G.nports)
        G.port = G.ports[0];
    if (G.port <= 0 || G.rooms < 1 || G.window < 1 || G.connect_batch < 1)
        usage();
    G.rnd = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    if (!G.prefix) { /* fresh rooms per run: every counter starts at 0 */
        snprintf(prefix, sizeof(prefix), "lg%x%04x", (unsigned)getpid(), (unsigned)(rnd64() & 0xffff));
        G.prefix = prefix;
    }
    G.nconn = G.writers + G.subs + 1; /* + the checker, last */
    if (!G.sources)
        G.sources = G.nconn / 20000 + 1;
    raise_nofile((uint64_t)G.nconn + 64);
    signal(SIGPIPE, SIG_IGN);
    if (G.tls) {
        /* loopback benchmarks against a throwaway certificate: no check */
        G.ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!G.ssl_ctx) {
            fprintf(stderr, "loadgen: SSL_CTX_new failed\n");
            return 2;
        }
        SSL_CTX_set_verify(G.ssl_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(G.ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_read_ahead(G.ssl_ctx, 1); /* on_readable drains to WANT_READ */
    }

    uint32_t ring = 4096;
    while (ring < G.window * 256u)
        ring *= 2;
    G.ring_mask = ring - 1;
    G.c = calloc(G.nconn, sizeof(*G.c));
    G.room = calloc(G.rooms, sizeof(*G.room));
    G.dirty = calloc(G.nconn, sizeof(*G.dirty));
    G.rd = malloc(RDBUF);
    if (!G.c || !G.room || !G.dirty || !G.rd)
        return 2;
    for (uint32_t r = 0; r < G.rooms; r++)
        G.room[r].final = G.room[r].final_seq = -1;
    for (uint32_t i = 0; i < G.nconn; i++) {
        struct conn *c = &G.c[i];
        c->fd = -1;
        c->seq = -1;
        c->next_n = 1;
        if (i < G.writers) {
            c->role = R_WRITER;
            c->wid = i;
            c->room = i % G.rooms;
            c->ring_t = calloc(ring, sizeof(uint64_t));
            c->ring_n = calloc(ring, sizeof(uint64_t));
            if (!c->ring_t || !c->ring_n)
                return 2;
        } else if (i < G.writers + G.subs) {
            c->role = R_SUB;
            c->wid = i - G.writers;
            c->room = c->wid % G.rooms;
        } else {
            c->role = R_CHECKER;
        }
    }
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event *evs = calloc(4096, sizeof(*evs));
    double load0[3] = {0};
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf %lf %lf", &load0[0], &load0[1], &load0[2]) != 3)
            load0[0] = -1;
        fclose(lf);
    }
    if (G.server_pid) {
        G.srv_rss0 = proc_status_kb(G.server_pid, "VmRSS");
        G.srv_anon0 = proc_status_kb(G.server_pid, "RssAnon");
    }

    G.t0 = now_ns();
    uint64_t deadline_ready = G.t0 + (uint64_t)(G.ready_timeout * 1e9);
    uint64_t t_warm = 0, t_drain_end = 0, t_get = 0;
    int phase = 0; /* 0 connecting, 1 warm-up, 2 measuring, 3 draining, 4 checking, 5 done */
    uint64_t rate_t0 = 0;
    double per_writer = 0;
    while (phase < 5) {
        conns_tick();
        flush_all();
        int timeout = (phase == 0 || G.rate > 0 || G.storm_active) ? 1 : 20;
        int k = epoll_wait(G.ep, evs, 4096, timeout);
        for (int i = 0; i < k; i++) {
            struct conn *c = &G.c[evs[i].data.u32];
            if (c->state == ST_FREE || c->state == ST_DEAD)
                continue;
            if (c->state == ST_CONNECTING) {
                on_connected(c);
                continue;
            }
            if (c->state == ST_TLS) {
                tls_step(c);
                continue;
            }
            if (evs[i].events & EPOLLOUT)
                flush_conn(c);
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
        }
        uint64_t t = now_ns();
        switch (phase) {
        case 0:
            if (G.ready == G.nconn) {
                G.t_ready = t;
                t_warm = t;
                phase = 1;
                if (G.server_pid) {
                    G.srv_rss1 = proc_status_kb(G.server_pid, "VmRSS");
                    G.srv_anon1 = proc_status_kb(G.server_pid, "RssAnon");
                    if (G.ready_signal) /* bench/idle_bytes.mjs: the allocation count now */
                        kill(G.server_pid, G.ready_signal);
                }
                rate_t0 = t;
                per_writer = G.writers ? G.rate / G.writers : 0;
                if (G.rate <= 0)
                    for (uint32_t w = 0; w < G.writers; w++)
                        while (G.c[w].inflight < G.window)
                            send_action(&G.c[w]);
            } else if (t > deadline_ready || G.dead_unexpected) {
                problem("only %u of %u connections ready after %.1f s", G.ready, G.nconn, secs(G.t0, t));
                phase = 5;
            }
            break;
        case 1:
            if (secs(t_warm, t) >= G.warmup) {
                G.t_measure = t;
                G.measuring = true;
                G.srv_ticks0 = G.server_pid ? proc_ticks(G.server_pid) : 0;
                for (uint32_t q = 0; q < G.ncpu_pids; q++)
                    G.cpu_ticks0[q] = proc_ticks(G.cpu_pids[q]);
                G.gen_cpu0 = self_cpu_s();
                phase = 2;
            }
            break;
        case 2:
            if (G.storm_at >= 0 && !G.storm_done && secs(G.t_measure, t) >= G.storm_at)
                storm_begin();
            if (secs(G.t_measure, t) >= G.duration && !G.storm_active) {
                G.t_end = t;
                G.measuring = false;
                G.srv_ticks1 = G.server_pid ? proc_ticks(G.server_pid) : 0;
                for (uint32_t q = 0; q < G.ncpu_pids; q++)
                    G.cpu_ticks1[q] = proc_ticks(G.cpu_pids[q]);
                G.gen_cpu1 = self_cpu_s();
                G.stopping = true;
                t_drain_end = t + (uint64_t)(G.drain_timeout * 1e9);
                phase = 3;
            }
            break;
        case 3: {
            uint32_t left = 0;
            for (uint32_t w = 0; w < G.writers; w++)
                left += G.c[w].state == ST_READY ? G.c[w].inflight : 0;
            if (left == 0 || t > t_drain_end) {
                if (left)
                    problem("%u actions still unanswered after %.0f s", left, G.drain_timeout);
                read_counters();
                t_get = t;
                t_drain_end = t + (uint64_t)(G.drain_timeout * 1e9);
                phase = 4;
            }
            break;
        }
        case 4: /* the counters are read; every connection must reach the rooms' last seq */
            if ((G.gets_left == 0 && count_behind() == 0) || t > t_drain_end ||
                G.c[G.nconn - 1].state != ST_READY) {
                phase = 5;
            } else if (G.nports > 1 && G.gets_left == 0 && t - t_get > 50 * 1000000ull) {
                /* several nodes: the checker's node may not have applied
                 * the last entries yet (replicas follow through pub/sub):
                 * read again until every connection agrees; a real lost
                 * update stays lost */
                read_counters();
                t_get = t;
            }
            break;
        }
        /* paced writers: each sends what its share of the rate allows by now */
        if (G.rate > 0 && phase >= 1 && phase <= 2) {
            double due = per_writer * secs(rate_t0, t);
            for (uint32_t w = 0; w < G.writers; w++) {
                struct conn *c = &G.c[w];
                while (c->state == ST_READY && (double)c->sent < due && c->inflight < G.window)
                    send_action(c);
            }
        }
    }
    flush_all();

    /* the result */
    double win = G.t_end > G.t_measure ? secs(G.t_measure, G.t_end) : 0;
    uint64_t lost = 0, surplus = 0;
    bool counters_ok = G.gets_left == 0 && phase == 5 && G.t_end;
    for (uint32_t r = 0; r < G.rooms; r++) {
        struct room *rm = &G.room[r];
        if (rm->final < 0) {
            counters_ok = false;
            continue;
        }
        if ((uint64_t)rm->final < rm->acked)
            lost += rm->acked - (uint64_t)rm->final;
        else if ((uint64_t)rm->final > rm->acked)
            surplus += (uint64_t)rm->final - rm->acked;
    }
    uint64_t behind = count_behind();
    if (lost || surplus)
        problem("final counters differ from the acked increments: %" PRIu64 " lost, %" PRIu64 " surplus", lost,
                surplus);
    bool ok = counters_ok && !lost && !surplus && !G.rejects && !G.errors && !G.dup_acks && !G.gaps && !G.dups &&
              !G.dead_unexpected && !behind;
    double srv_cpu_s = G.server_pid ? (double)(G.srv_ticks1 - G.srv_ticks0) / (double)sysconf(_SC_CLK_TCK) : -1;
    double gen_cpu_s = G.gen_cpu1 - G.gen_cpu0;
    uint32_t nconns = G.writers + G.subs;
    printf("{\"tls\":\"%s\",\"writers\":%u,\"subscribers\":%u,\"rooms\":%u,\"window\":%u,\"rate_target\":%.0f,"
           "\"connections\":%u,\"sources\":%u,\"connect_s\":%.3f,\"window_s\":%.3f,"
           "\"acked\":%" PRIu64 ",\"acked_per_s\":%.0f,\"deliveries_per_s\":%.0f,"
           "\"ack_p50_us\":%.1f,\"ack_p99_us\":%.1f,\"ack_p999_us\":%.1f,\"ack_max_us\":%.1f,"
           "\"fwd_p50_us\":%.1f,\"fwd_p99_us\":%.1f,\"fwd_p999_us\":%.1f,",
           G.tls == 1 ? "batch" : G.tls == 2 ? "frame" : "no", G.writers, G.subs, G.rooms, G.window, G.rate, nconns, G.sources,
           G.t_ready ? secs(G.t0, G.t_ready) : -1.0, win, G.acks_all, win > 0 ? (double)G.acks_win / win : 0,
           win > 0 ? (double)G.fwds_win / win : 0, hist_pct_us(&G.h_ack, 0.5), hist_pct_us(&G.h_ack, 0.99),
           hist_pct_us(&G.h_ack, 0.999), hist_pct_us(&G.h_ack, 1.0), hist_pct_us(&G.h_fwd, 0.5), hist_pct_us(&G.h_fwd, 0.99),
           hist_pct_us(&G.h_fwd, 0.999));
    /* one thread: at ~0.9 of a core the generator, not the server, is the limit */
    bool gen_bound = win > 0 && gen_cpu_s / win >= 0.9;
    printf("\"server_cpu_cores\":%.3f,\"server_cpu_us_per_ack\":%.2f,\"gen_cpu_cores\":%.3f,"
           "\"gen_cpu_us_per_ack\":%.2f,\"generator_bound\":%s,",
           srv_cpu_s >= 0 && win > 0 ? srv_cpu_s / win : -1.0,
           srv_cpu_s >= 0 && G.acks_win ? srv_cpu_s * 1e6 / (double)G.acks_win : -1.0, win > 0 ? gen_cpu_s / win : -1.0,
           G.acks_win ? gen_cpu_s * 1e6 / (double)G.acks_win : -1.0, gen_bound ? "true" : "false");
    if (G.ncpu_pids) {
        printf("\"cpu_us_per_ack_by_pid\":{");
        for (uint32_t q = 0; q < G.ncpu_pids; q++)
            printf("%s\"%d\":%.2f", q ? "," : "", G.cpu_pids[q],
                   G.acks_win ? (double)(G.cpu_ticks1[q] - G.cpu_ticks0[q]) / (double)sysconf(_SC_CLK_TCK) * 1e6 /
                                    (double)G.acks_win
                              : -1.0);
        printf("},");
    }
    if (G.server_pid)
        printf("\"server_rss_kb_before\":%ld,\"server_rss_kb_ready\":%ld,\"server_anon_kb_before\":%ld,"
               "\"server_anon_kb_ready\":%ld,\"server_bytes_per_conn\":%.0f,",
               G.srv_rss0, G.srv_rss1, G.srv_anon0, G.srv_anon1,
               nconns ? (double)(G.srv_rss1 - G.srv_rss0) * 1024.0 / nconns : 0);
    if (G.storm_at >= 0)
        printf("\"storm_clients\":%" PRIu64 ",\"storm_catchup_ms\":%.1f,\"storm_actions_replies\":%" PRIu64
               ",\"storm_snapshots\":%" PRIu64 ",",
               G.storm_snapshots + G.storm_actions, G.t_caught ? secs(G.t_storm, G.t_caught) * 1000 : -1.0,
               G.storm_actions, G.storm_snapshots);
    printf("\"rejects\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"dup_acks\":%" PRIu64 ",\"gaps\":%" PRIu64
           ",\"dups\":%" PRIu64 ",\"conns_lost\":%u,\"behind\":%" PRIu64 ",\"lost_updates\":%" PRIu64
           ",\"surplus_updates\":%" PRIu64 ",\"final_ok\":%s,\"loadavg\":%.2f",
           G.rejects, G.errors, G.dup_acks, G.gaps, G.dups, G.dead_unexpected, behind, lost, surplus,
           ok ? "true" : "false", load0[0]);
    if (G.first_problem[0]) {
        printf(",\"problem\":\"");
        for (const char *q = G.first_problem; *q; q++)
            if (*q == '"' || *q == '\\')
                printf("\\%c", *q);
            else if ((unsigned char)*q >= 0x20 && (unsigned char)*q < 0x7f)
                putchar(*q);
        printf("\"");
    }
    printf("}\n");
    fflush(stdout);
    /* the process exits: the kernel closes every socket */
    return ok ? 0 : 1;
}
