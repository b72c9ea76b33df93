/* ceiling.c - the simplest batched epoll relay that speaks enough of the
 * movex protocol for bench/loadgen: what this hardware does when a server
 * does nothing but relay. movexd's numbers are read against it.
 *
 * It accepts WebSocket upgrades on any path, answers `hello` with `welcome`,
 * `subscribe` and `get` with a `snapshot` of {"count": C} (a `since` is
 * ignored: always a snapshot), `ping` with `pong`, and applies an `action`
 * by adding the first `"value":` number of its payload to the room's count:
 * `ack` to the sender, one `fwd` encoded and framed once and copied to every
 * other subscriber. No checksums (they are written as ""), no storage, no
 * exactly-once memory, no limits beyond a 64 MiB send queue per connection.
 *
 * The point is the send path: frames are appended to a per-connection buffer
 * and each connection is flushed with one send() per loop turn (after every
 * readable connection of the turn was read). --per-frame sends each frame
 * with its own send() instead, to show what that costs on the same relay.
 *
 * Invariants: a room's subscribers are an array with each connection's index
 * in it stored on the connection, so leaving is O(1); one room per
 * connection (a second subscribe moves it); everything runs on 127.0.0.1.
 * Prints "ceiling port=N" on stderr once listening; SIGTERM/SIGINT exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wsjson.h"

#define RDBUF (256 * 1024)
#define MAX_QUEUE (64u << 20)

struct conn {
    int fd;
    bool ws, dirty, want_out, used;
    int room; /* -1: none */
    uint32_t pos; /* index in the room's subscriber array */
    char client[136];
    char *in;
    uint32_t in_len, in_cap;
    char *out;
    uint32_t out_off, out_len, out_cap;
};

struct room {
    char name[208];
    uint64_t seq;
    double count;
    uint32_t *subs, nsubs, cap;
};

static struct conn *conns;
static uint32_t nconns;
static struct room *rooms;
static uint32_t nrooms;
static uint32_t *dirty, ndirty;
static char *rd;
static int ep;
static bool per_frame;
static volatile sig_atomic_t stop;

static void on_signal(int s)
{
    (void)s;
    stop = 1;
}

static void conn_close(struct conn *c);

static void set_out(struct conn *c, bool on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

static void flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (k > 0) {
            c->out_off += (uint32_t)k;
        } else if (k < 0 && errno == EINTR) {
            continue;
        } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(c, true);
            return;
        } else {
            conn_close(c);
            return;
        }
    }
    c->out_off = c->out_len = 0;
    set_out(c, false);
}

/* Appends bytes to the connection's queue; it leaves at the end of the turn. */
static void queue(struct conn *c, const void *p, uint32_t n)
{
    if (!c->used)
        return;
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + n > MAX_QUEUE) { /* a slow consumer: drop it */
            conn_close(c);
            return;
        }
        if (c->out_len + n > c->out_cap) {
            uint32_t cap = c->out_cap ? c->out_cap : 4096;
            while (cap < c->out_len + n)
                cap *= 2;
            c->out = xrealloc(c->out, cap);
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    if (per_frame) {
        flush(c);
    } else if (!c->dirty) {
        c->dirty = true;
        dirty[ndirty++] = (uint32_t)(c - conns);
    }
}

/* A whole frame (header + payload) built once, so a fwd is framed once. */
static uint32_t frame(char *buf, const char *p, uint32_t n)
{
    uint32_t hl = ws_put_head((unsigned char *)buf, 1, n, NULL);
    memcpy(buf + hl, p, n);
    return hl + n;
}

static void send_text(struct conn *c, const char *p, int n)
{
    char buf[1024];
    if (n < 0 || (size_t)n + 10 > sizeof(buf))
        return;
    queue(c, buf, frame(buf, p, (uint32_t)n));
}

static void room_leave(struct conn *c)
{
    if (c->room < 0)
        return;
    struct room *r = &rooms[c->room];
    uint32_t last = r->subs[--r->nsubs];
    r->subs[c->pos] = last;
    conns[last].pos = c->pos;
    c->room = -1;
}

static void conn_close(struct conn *c)
{
    if (!c->used)
        return;
    room_leave(c);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->used = false;
    c->in_len = c->out_len = c->out_off = 0;
}

static int room_find(struct span name, bool create)
{
    /* linear: the generator uses a handful of rooms */
    for (uint32_t i = 0; i < nrooms; i++)
        if (strlen(rooms[i].name) == name.n && !memcmp(rooms[i].name, name.p, name.n))
            return (int)i;
    if (!create || name.n >= sizeof(rooms[0].name))
        return -1;
    rooms = xrealloc(rooms, (nrooms + 1) * sizeof(*rooms));
    struct room *r = &rooms[nrooms];
    memset(r, 0, sizeof(*r));
    memcpy(r->name, name.p, name.n);
    return (int)nrooms++;
}

struct req {
    struct span type, room, client, action;
    const char *id, *n;
    uint32_t idn, nn;
};

static void req_member(void *ctx, const char *k, uint32_t kn, const char *v, const char *ve)
{
    struct req *q = ctx;
    if (key_is(k, kn, "type") && !q->type.p)
        q->type = str_span(v, ve);
    else if (key_is(k, kn, "room"))
        q->room = str_span(v, ve);
    else if (key_is(k, kn, "client"))
        q->client = str_span(v, ve);
    else if (key_is(k, kn, "action"))
        q->action = (struct span){v, (uint32_t)(ve - v)};
    else if (key_is(k, kn, "id")) {
        q->id = v;
        q->idn = (uint32_t)(ve - v);
    } else if (key_is(k, kn, "n")) {
        q->n = v;
        q->nn = (uint32_t)(ve - v);
    }
}

static void reply_snapshot(struct conn *c, const struct req *q, const struct room *r)
{
    char msg[600];
    int n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"snapshot\",\"id\":%.*s,\"room\":\"%s\",\"seq\":%" PRIu64
                     ",\"checksum\":\"\",\"state\":{\"count\":%.17g},\"next_n\":1}",
                     (int)q->idn, q->id ? q->id : "0", r->name, r->seq, r->count);
    send_text(c, msg, n);
}

static void reply_error(struct conn *c, const struct req *q, const char *code)
{
    char msg[200];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"error\",\"id\":%.*s,\"code\":\"%s\",\"message\":\"%s\"}",
                     (int)q->idn, q->id ? q->id : "null", code, code);
    send_text(c, msg, n);
}

static void on_action(struct conn *c, const struct req *q)
{
    if (c->room < 0 || !q->room.p || room_find(q->room, false) != c->room || !q->action.p || !q->n) {
        reply_error(c, q, "not_subscribed");
        return;
    }
    struct room *r = &rooms[c->room];
    const char *v = memmem(q->action.p, q->action.n, "\"value\":", 8);
    r->count += v ? strtod(v + 8, NULL) : 0;
    r->seq++;
    char msg[1024];
    int n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"ack\",\"id\":%.*s,\"room\":\"%s\",\"n\":%.*s,\"seq\":%" PRIu64
                     ",\"prev\":\"\",\"checksum\":\"\"}",
                     (int)q->idn, q->id ? q->id : "0", r->name, (int)q->nn, q->n, r->seq);
    send_text(c, msg, n);
    if (r->nsubs < 2)
        return;
    /* the fwd: encoded and framed once, the same bytes to every subscriber */
    static char *fb;
    static uint32_t fcap;
    uint32_t need = q->action.n + (uint32_t)sizeof(r->name) + sizeof(c->client) + 200;
    if (need > fcap) {
        fcap = need * 2;
        fb = xrealloc(fb, fcap);
    }
    int pn = snprintf(fb + 10, fcap - 10,
                      "{\"type\":\"fwd\",\"room\":\"%s\",\"seq\":%" PRIu64
                      ",\"prev\":\"\",\"checksum\":\"\",\"client\":\"%s\",\"n\":%.*s,\"action\":%.*s}",
                      r->name, r->seq, c->client, (int)q->nn, q->n, (int)q->action.n, q->action.p);
    unsigned char h[10];
    uint32_t hl = ws_put_head(h, 1, (uint64_t)pn, NULL);
    char *f = fb + 10 - hl;
    memcpy(f, h, hl);
    uint32_t self = (uint32_t)(c - conns);
    for (uint32_t i = 0; i < r->nsubs; i++)
        if (r->subs[i] != self)
            queue(&conns[r->subs[i]], f, hl + (uint32_t)pn);
}

static void on_message(struct conn *c, const char *p, uint32_t n)
{
    struct req q;
    memset(&q, 0, sizeof(q));
    if (!scan_object(p, p + n, req_member, &q) || !q.type.p) {
        reply_error(c, &q, "bad_json");
        return;
    }
    if (key_is(q.type.p, q.type.n, "action")) {
        on_action(c, &q);
    } else if (key_is(q.type.p, q.type.n, "hello")) {
        uint32_t cl = q.client.p && q.client.n < sizeof(c->client) ? q.client.n : 0;
        if (cl)
            memcpy(c->client, q.client.p, cl);
        else
            cl = (uint32_t)snprintf(c->client, sizeof(c->client), "anon-%u", (unsigned)(c - conns));
        c->client[cl] = 0;
        char msg[300];
        int k = snprintf(msg, sizeof(msg),
                         "{\"type\":\"welcome\",\"client\":\"%s\",\"server\":\"ceiling\",\"limits\":{}}", c->client);
        send_text(c, msg, k);
    } else if (key_is(q.type.p, q.type.n, "subscribe") || key_is(q.type.p, q.type.n, "get")) {
        bool sub = q.type.n == 9;
        int ri = q.room.p ? room_find(q.room, sub) : -1;
        if (ri < 0) {
            reply_error(c, &q, "no_such_room");
            return;
        }
        if (sub && c->room != ri) {
            room_leave(c);
            struct room *r = &rooms[ri];
            if (r->nsubs == r->cap) {
                r->cap = r->cap ? r->cap * 2 : 16;
                r->subs = xrealloc(r->subs, r->cap * sizeof(*r->subs));
            }
            c->pos = r->nsubs;
            r->subs[r->nsubs++] = (uint32_t)(c - conns);
            c->room = ri;
        }
        reply_snapshot(c, &q, &rooms[ri]);
    } else if (key_is(q.type.p, q.type.n, "ping")) {
        char msg[64];
        int k = snprintf(msg, sizeof(msg), "{\"type\":\"pong\",\"id\":%.*s}", (int)q.idn, q.id ? q.id : "0");
        send_text(c, msg, k);
    } else {
        reply_error(c, &q, "unknown_type");
    }
}

/* The upgrade: Sec-WebSocket-Accept = base64(SHA-1(key + GUID)). */
static bool upgrade(struct conn *c, const char *req, uint32_t n)
{
    const char *k = NULL, *e = req + n;
    for (const char *l = req; l < e;) {
        const char *nl = memchr(l, '\n', (size_t)(e - l));
        if (!nl)
            break;
        if ((size_t)(nl - l) > 18 && !strncasecmp(l, "Sec-WebSocket-Key:", 18)) {
            k = l + 18;
            while (*k == ' ')
                k++;
            break;
        }
        l = nl + 1;
    }
    if (!k)
        return false;
    char src[128];
    int kl = 0;
    while (k + kl < e && k[kl] != '\r' && k[kl] != '\n' && kl < 60)
        kl++;
    int sl = snprintf(src, sizeof(src), "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", kl, k);
    unsigned char d[20];
    SHA1((const unsigned char *)src, (size_t)sl, d);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char acc[32];
    int o = 0;
    for (int i = 0; i < 20; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < 20 ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < 20 ? d[i + 2] : 0);
        acc[o++] = b64[v >> 18];
        acc[o++] = b64[(v >> 12) & 63];
        acc[o++] = i + 1 < 20 ? b64[(v >> 6) & 63] : '=';
        acc[o++] = i + 2 < 20 ? b64[v & 63] : '=';
    }
    acc[o] = 0;
    bool proto = memmem(req, n, "movex.v1", 8) != NULL;
    char resp[300];
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n%s\r\n",
                      acc, proto ? "Sec-WebSocket-Protocol: movex.v1\r\n" : "");
    queue(c, resp, (uint32_t)rl);
    c->ws = true;
    return true;
}

/* Consumes what it can of p..p+n (our buffer: unmasked in place). */
static uint32_t consume(struct conn *c, char *p, uint32_t n)
{
    uint32_t used = 0;
    if (!c->ws) {
        char *e = memmem(p, n, "\r\n\r\n", 4);
        if (!e)
            return n > 8192 ? (conn_close(c), n) : 0;
        if (!upgrade(c, p, (uint32_t)(e + 4 - p))) {
            conn_close(c);
            return n;
        }
        used = (uint32_t)(e + 4 - p);
    }
    while (c->used) {
        const unsigned char *h = (const unsigned char *)p + used, *mask;
        uint32_t hl;
        uint64_t len;
        if (!ws_frame_head(h, n - used, &hl, &len, &mask))
            break;
        if (len > (1u << 20)) {
            conn_close(c);
            return n;
        }
        if (n - used < hl + len)
            break;
        char *d = (char *)h + hl;
        if (mask)
            for (uint64_t i = 0; i < len; i++)
                d[i] ^= (char)mask[i & 3];
        used += hl + (uint32_t)len;
        int op = h[0] & 0x0f;
        if (op == 8) {
            unsigned char cf[2] = {0x88, 0};
            queue(c, cf, 2);
            flush(c);
            conn_close(c);
            return n;
        }
        if (op == 9) {
            char pong[140];
            if (len <= 125) {
                uint32_t pl = ws_put_head((unsigned char *)pong, 10, len, NULL);
                memcpy(pong + pl, d, len);
                queue(c, pong, pl + (uint32_t)len);
            }
        } else if (op == 1 || op == 2) {
            on_message(c, d, (uint32_t)len); /* the generator never fragments */
        }
    }
    return used;
}

static void on_readable(struct conn *c)
{
    for (int round = 0; round < 4 && c->used; round++) {
        ssize_t k;
        char *base;
        uint32_t total;
        if (c->in_len) {
            if (c->in_cap - c->in_len < 65536) {
                c->in_cap = c->in_len + 131072;
                c->in = xrealloc(c->in, c->in_cap);
            }
            k = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
            base = c->in;
            total = c->in_len + (uint32_t)(k > 0 ? k : 0);
        } else {
            k = recv(c->fd, rd, RDBUF, 0);
            base = rd;
            total = (uint32_t)(k > 0 ? k : 0);
        }
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            conn_close(c);
            return;
        }
        if (k < 0)
            return;
        uint32_t used = consume(c, base, total);
        if (!c->used)
            return;
        uint32_t rest = total - used;
        if (rest && base == rd) {
            if (rest > c->in_cap) {
                c->in_cap = rest * 2;
                c->in = xrealloc(c->in, c->in_cap);
            }
            memcpy(c->in, rd + used, rest);
        } else if (rest && used) {
            memmove(c->in, c->in + used, rest);
        }
        c->in_len = rest;
        if ((size_t)k < RDBUF / 2)
            return;
    }
}

static void on_accept(int lfd)
{
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if ((uint32_t)fd >= nconns) {
            uint32_t n = nconns ? nconns : 1024;
            while (n <= (uint32_t)fd)
                n *= 2;
            conns = xrealloc(conns, n * sizeof(*conns));
            memset(conns + nconns, 0, (n - nconns) * sizeof(*conns));
            dirty = xrealloc(dirty, n * sizeof(*dirty));
            nconns = n;
        }
        struct conn *c = &conns[fd]; /* indexed by fd: the kernel reuses the lowest free one */
        char *in = c->in, *out = c->out;
        uint32_t ic = c->in_cap, oc = c->out_cap;
        bool listed = c->dirty; /* a closed conn still in this turn's dirty list */
        memset(c, 0, sizeof(*c));
        c->dirty = listed;
        c->in = in;
        c->in_cap = ic;
        c->out = out;
        c->out_cap = oc;
        c->fd = fd;
        c->used = true;
        c->room = -1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--per-frame"))
            per_frame = true;
        else if (!strcmp(argv[i], "--listen") && i + 1 < argc)
            listen_at = argv[++i];
        else {
            fprintf(stderr, "usage: ceiling [--listen 127.0.0.1:0] [--per-frame]\n");
            return 2;
        }
    }
    char host[64];
    const char *colon = strrchr(listen_at, ':');
    if (!colon || (size_t)(colon - listen_at) >= sizeof(host)) {
        fprintf(stderr, "ceiling: --listen ADDR:PORT\n");
        return 2;
    }
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(lfd, 4096) < 0) {
        perror("ceiling: listen");
        return 1;
    }
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    fprintf(stderr, "ceiling port=%d\n", ntohs(a.sin_port));
    rd = malloc(RDBUF);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event evs[1024];
    while (!stop) {
        int k = epoll_wait(ep, evs, 1024, 200);
        for (int i = 0; i < k; i++) {
            if (evs[i].data.u32 == UINT32_MAX) {
                on_accept(lfd);
                continue;
            }
            struct conn *c = &conns[evs[i].data.u32];
            if (!c->used)
                continue;
            if (evs[i].events & EPOLLOUT)
                flush(c);
            if (c->used && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(c);
        }
        /* the batched send: one write per connection per turn */
        for (uint32_t i = 0; i < ndirty; i++) {
            struct conn *c = &conns[dirty[i]];
            c->dirty = false;
            if (c->used && !c->want_out)
                flush(c);
        }
        ndirty = 0;
    }
    for (uint32_t i = 0; i < nconns; i++) {
        if (conns[i].used)
            conn_close(&conns[i]);
        free(conns[i].in);
        free(conns[i].out);
    }
    for (uint32_t i = 0; i < nrooms; i++)
        free(rooms[i].subs);
    free(rooms);
    free(conns);
    free(dirty);
    free(rd);
    close(lfd);
    close(ep);
    return 0;
}
