/* config.c - conf file text -> struct mx_config, with FILE:LINE errors.
 *
 * The format is line-oriented (docs/CONFIG.md is the user's reference):
 *
 *     key value            # value = rest of line, trimmed
 *     key "quoted # value" # quotes keep spaces and '#'
 *     room TYPE {          # per room-type settings
 *         key value
 *     }
 *
 * Every key is described once, in the tables `global_keys` and `room_keys`
 * below: its name, how its value is read (size, count, duration, boolean,
 * enum, string), its range and where it is stored. The parser, the error
 * messages ("valid keys are ...") and the inheritance step all walk those
 * tables, so adding a key is one table row plus a field in config.h.
 *
 * Invariants:
 * - Parsing never touches the caller's struct until the whole text has been
 *   accepted: it fills a private struct and moves it into place at the end.
 *   On error the caller's struct holds the built-in defaults, so
 *   mx_config_free() is always safe after a parse or load, and a reload that
 *   fails can keep running on the old config.
 * - Every value that reaches struct mx_config has been range-checked; the
 *   rest of the daemon trusts these numbers (bounded everything).
 * - Named room blocks inherit from the default block *as it is at the end
 *   of the file*: while parsing, a named block only records the keys it set
 *   (a bit mask); after the last line each named type starts as a copy of
 *   the final default block with those keys laid on top. So the order of
 *   blocks in the file never changes the result.
 * - `types` is sorted by name so mx_config_room_type() is a binary search;
 *   it is called on every room create/subscribe.
 * - A key may be set once per block (once globally); a second setting is an
 *   error rather than "last one wins", because silent overrides in a long
 *   conf file are a classic source of "why is my change ignored".
 */
#include "movexd/config.h"
#include "movexd/alloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KiB ((uint64_t)1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)

/* Longest value the lexer accepts (data_dir is the longest field). */
#define VALUE_MAX 1023
/* A conf file larger than this is surely not a conf file. */
#define FILE_MAX (16 * MiB)

/* ---------------------------------------------------------------- keys -- */

enum kind {
    K_SIZE,     /* bytes, with optional k/m/g suffix (powers of 1024) -> size_t */
    K_COUNT,    /* plain non-negative integer -> size_t */
    K_INT,      /* plain non-negative integer -> int */
    K_MS,       /* milliseconds, optional "ms" or "s" suffix -> int */
    K_BOOL,     /* yes/no/true/false/on/off -> int 0/1 */
    K_LOGLEVEL, /* error|warn|info|debug */
    K_FSYNC,    /* always|everysec|no */
    K_EVLOOP,   /* auto|uv|poll */
    K_PATH,     /* non-empty string -> char[size] */
    K_LISTEN,   /* ADDR:PORT */
    K_REDUCER,  /* json, or lua:PATH (parse_reducer) -> char[size] + reducer_path */
    K_AUTH,     /* none|jwt -> enum mx_auth_mode */
    K_RIGHTS,   /* none, or a comma list of read,write,create -> unsigned bits */
    K_ENDPOINT, /* HOST:PORT or [v6]:PORT, host and port required -> struct mx_endpoint */
    K_ENDPOINTS,/* 1..MX_CLUSTER_SENTINELS_MAX endpoints, comma separated -> sentinels[] */
    K_NODEID,   /* 1..MX_CLUSTER_NODE_ID_MAX of A-Z a-z 0-9 _ . - -> char[size] */
};

struct key {
    const char *name;
    enum kind kind;
    uint64_t min, max; /* for numeric kinds */
    size_t off, size;  /* field in struct mx_config / struct mx_room_type */
};

#define G(name, kind, min, max, field)                                                             \
    { name, kind, min, max, offsetof(struct mx_config, field), sizeof(((struct mx_config *)0)->field) }
#define R(name, kind, min, max, field)                                                             \
    { name, kind, min, max, offsetof(struct mx_room_type, field),                                  \
      sizeof(((struct mx_room_type *)0)->field) }

static const struct key global_keys[] = {
    G("listen", K_LISTEN, 0, 0, listen_addr),
    G("log_level", K_LOGLEVEL, 0, 0, log_level),
    G("log_file", K_PATH, 0, 0, log_file),
    G("data_dir", K_PATH, 0, 0, data_dir),
    G("client_dir", K_PATH, 0, 0, client_dir),
    G("fsync", K_FSYNC, 0, 0, fsync),
    G("event_loop", K_EVLOOP, 0, 0, event_loop),
    G("max_message_bytes", K_SIZE, 64, 256 * MiB, max_message_bytes),
    G("max_depth", K_INT, 1, 1000, max_depth),
    G("max_queue_bytes", K_SIZE, 1 * KiB, 64 * GiB, max_queue_bytes),
    G("max_rooms_per_conn", K_COUNT, 1, 1000000, max_rooms_per_conn),
    G("max_connections", K_COUNT, 1, 1000000, max_connections),
    G("hello_timeout_ms", K_MS, 1, 3600000, hello_timeout_ms),
    G("dedup_window", K_COUNT, 1024, 1048576, dedup_window),
    G("snapshot_every", K_COUNT, 1, 100000000, snapshot_every),
    G("wal_segment_bytes", K_SIZE, 64 * KiB, 4 * GiB, wal_segment_bytes),
    G("wal_max_bytes", K_SIZE, 1 * MiB, 1024 * GiB, wal_max_bytes),
    G("evict_idle_ms", K_MS, 0, 86400000, evict_idle_ms),
    G("auth", K_AUTH, 0, 0, auth),
    G("auth_hs256_secret_file", K_PATH, 0, 0, auth_hs256_secret_file),
    G("auth_ed25519_public_key_file", K_PATH, 0, 0, auth_ed25519_public_key_file),
    G("auth_leeway_ms", K_MS, 0, 3600000, auth_leeway_ms),
    G("auth_issuer", K_PATH, 0, 0, auth_issuer),
    G("auth_audience", K_PATH, 0, 0, auth_audience),
    G("allow_insecure_listen", K_BOOL, 0, 1, allow_insecure_listen),
    G("allowed_origins", K_PATH, 0, 0, allowed_origins),
    G("max_connections_per_ip", K_COUNT, 1, 1000000, max_connections_per_ip),
    G("rate_messages_per_sec", K_COUNT, 1, 1000000, rate_messages_per_sec),
    G("rate_burst", K_COUNT, 1, 10000000, rate_burst),
    G("rate_close_after", K_COUNT, 1, 1000000, rate_close_after),
    G("idle_timeout_ms", K_MS, 0, 86400000, idle_timeout_ms),
    G("tls_cert_file", K_PATH, 0, 0, tls_cert_file),
    G("tls_key_file", K_PATH, 0, 0, tls_key_file),
    G("tls_chain_file", K_PATH, 0, 0, tls_chain_file),
    G("admin_token_file", K_PATH, 0, 0, admin_token_file),
    G("serve_demo", K_BOOL, 0, 1, serve_demo),
};

static const struct key room_keys[] = {
    R("reducer", K_REDUCER, 0, 0, reducer),
    R("history", K_COUNT, 0, 10000000, history),
    R("max_state_bytes", K_SIZE, 0, 64 * GiB, max_state_bytes),
    R("create_on_subscribe", K_BOOL, 0, 1, create_on_subscribe),
    R("max_ops", K_COUNT, 0, 10000000, max_ops),
    R("reducer_budget", K_COUNT, 1000, 1000000000, reducer_budget),
    R("reducer_memory", K_SIZE, 256 * KiB, 4 * GiB, reducer_memory),
    R("max_presence_bytes", K_SIZE, 0, 1 * MiB, max_presence_bytes),
    R("max_presence_room_bytes", K_SIZE, 0, 64 * MiB, max_presence_room_bytes),
    R("anonymous", K_RIGHTS, 0, 0, anonymous),
    R("authenticated", K_RIGHTS, 0, 0, authenticated),
};

#define C(name, kind, min, max, field)                                                             \
    { name, kind, min, max, offsetof(struct mx_cluster_config, field),                             \
      sizeof(((struct mx_cluster_config *)0)->field) }

/* The `cluster { ... }` block. Which combinations are required (node_id;
 * redis, or sentinels with master_name) is checked after the block. */
static const struct key cluster_keys[] = {
    C("node_id", K_NODEID, 0, 0, node_id),
    C("redis", K_ENDPOINT, 0, 0, redis),
    C("sentinels", K_ENDPOINTS, 0, 0, sentinels),
    C("master_name", K_PATH, 0, 0, master_name),
    C("key_prefix", K_PATH, 0, 0, key_prefix),
    C("connect_timeout_ms", K_MS, 10, 600000, connect_timeout_ms),
    C("command_timeout_ms", K_MS, 10, 600000, command_timeout_ms),
    C("reconnect_max_ms", K_MS, 10, 600000, reconnect_max_ms),
    C("append_retries", K_COUNT, 0, 1000, append_retries),
    C("wait_replicas", K_INT, 0, 16, wait_replicas),
    C("wait_timeout_ms", K_MS, 1, 600000, wait_timeout_ms),
    C("journal_dir", K_PATH, 0, 0, journal_dir),
};

#define NGLOBAL (sizeof global_keys / sizeof global_keys[0])
#define NROOM (sizeof room_keys / sizeof room_keys[0])
#define NCLUSTER (sizeof cluster_keys / sizeof cluster_keys[0])

/* Reducers the daemon knows. A conf naming another one is an error now,
 * rather than a room that fails on its first action later. */
static const char *const reducers[] = { "json", "lua:PATH" };
#define NREDUCERS (sizeof reducers / sizeof reducers[0])

static const char *const log_level_names[] = { "error", "warn", "info", "debug" };
static const char *const fsync_names[] = { "always", "everysec", "no" };
static const char *const event_loop_names[] = { "auto", "uv", "poll" }; /* enum mx_event_loop */

/* -------------------------------------------------------------- defaults -- */

static void room_defaults(struct mx_room_type *t)
{
    memset(t, 0, sizeof *t);
    strcpy(t->name, "default");
    strcpy(t->reducer, "json");
    t->history = 1000;
    t->max_state_bytes = 16 * MiB;
    t->create_on_subscribe = 0;
    t->max_ops = 1000;
    t->reducer_path = NULL;
    t->reducer_budget = 1000000;
    t->reducer_memory = 32 * MiB;
    t->max_presence_bytes = 4 * KiB;
    t->max_presence_room_bytes = 1 * MiB;
}

void mx_config_defaults(struct mx_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->listen_addr, "127.0.0.1");
    c->listen_port = 8080;
    c->log_level = MX_LOG_INFO;
    strcpy(c->data_dir, "./data");
    strcpy(c->client_dir, "./client");
    c->serve_demo = 1;
    c->fsync = MX_FSYNC_ALWAYS;
    c->max_message_bytes = 1 * MiB;
    c->max_depth = 64;
    c->max_queue_bytes = 8 * MiB;
    c->max_rooms_per_conn = 256;
    c->max_connections = 10000;
    c->hello_timeout_ms = 10000;
    c->dedup_window = 1024;
    c->snapshot_every = 10000;
    c->wal_segment_bytes = 16 * MiB;
    c->wal_max_bytes = 64 * MiB;
    c->evict_idle_ms = 300000;
    c->auth = MX_AUTH_NONE;
    c->auth_leeway_ms = 30000;
    c->max_connections_per_ip = 256;
    c->rate_messages_per_sec = 1000;
    c->rate_burst = 10000;
    c->rate_close_after = 1000;
    c->idle_timeout_ms = 120000;
    c->cluster.enabled = 0;
    strcpy(c->cluster.key_prefix, "movexd:");
    c->cluster.connect_timeout_ms = 2000;
    c->cluster.command_timeout_ms = 5000;
    c->cluster.reconnect_max_ms = 5000;
    c->cluster.append_retries = 16;
    c->cluster.wait_replicas = 0;
    c->cluster.wait_timeout_ms = 1000;
    room_defaults(&c->def);
    c->types = NULL;
    c->ntypes = 0;
}

void mx_config_free(struct mx_config *c)
{
    if (!c)
        return;
    free(c->types);
    c->types = NULL;
    c->ntypes = 0;
    for (size_t i = 0; i < c->nreducer_files; i++)
        free(c->reducer_files[i]);
    free(c->reducer_files);
    c->reducer_files = NULL;
    c->nreducer_files = 0;
}

/* --------------------------------------------------------- value parsing -- */

/* Each value parser returns NULL on success or a static/formatted reason. The
 * reason is written into `why` (the caller prefixes FILE:LINE: key:). */

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Leading decimal digits of s into *out; returns the number of digits, or
 * -1 on overflow. */
static int parse_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;
    for (; is_digit(s[n]); n++) {
        unsigned d = (unsigned)(s[n] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return n;
}

/* Print a byte count the way a user would write it: 256m rather than
 * 268435456 when it is an exact multiple. */
static void fmt_size(char *out, size_t len, uint64_t v)
{
    if (v >= GiB && v % GiB == 0)
        snprintf(out, len, "%llug", (unsigned long long)(v / GiB));
    else if (v >= MiB && v % MiB == 0)
        snprintf(out, len, "%llum", (unsigned long long)(v / MiB));
    else if (v >= KiB && v % KiB == 0)
        snprintf(out, len, "%lluk", (unsigned long long)(v / KiB));
    else
        snprintf(out, len, "%llu", (unsigned long long)v);
}

static void join_names(char *out, size_t len, const char *const *names, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        int w = snprintf(out + used, len - used, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* -1 if s is not one of names, else its index. */
static int pick(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return -1;
}

/* The largest value a key's field can hold, whatever the table says (a
 * 32-bit size_t cannot hold 64g). */
static uint64_t key_max(const struct key *k)
{
    if ((k->kind == K_SIZE || k->kind == K_COUNT) && k->max > SIZE_MAX)
        return SIZE_MAX;
    return k->max;
}

/* Numbers: K_SIZE / K_COUNT / K_INT / K_MS, range-checked. */
static int parse_number(const struct key *k, const char *s, uint64_t *out, char *why, size_t whylen)
{
    uint64_t v = 0, mul = 1;
    int n = parse_digits(s, &v);
    bool overflow = n < 0;
    const char *rest = s + (n > 0 ? n : 0);

    if (n > 0 && k->kind == K_SIZE) {
        if (*rest == 'k' || *rest == 'K')
            mul = KiB, rest++;
        else if (*rest == 'm' || *rest == 'M')
            mul = MiB, rest++;
        else if (*rest == 'g' || *rest == 'G')
            mul = GiB, rest++;
    } else if (n > 0 && k->kind == K_MS) {
        if (strcmp(rest, "ms") == 0)
            rest += 2;
        else if (strcmp(rest, "s") == 0)
            mul = 1000, rest++;
    }
    if (overflow) {
        /* all digits, just too many of them: a range error, not syntax */
        const char *d = s;
        while (is_digit(*d))
            d++;
        overflow = *d == '\0' || (k->kind == K_SIZE && strchr("kKmMgG", *d) && d[1] == '\0') ||
                   (k->kind == K_MS && (strcmp(d, "s") == 0 || strcmp(d, "ms") == 0));
        if (!overflow)
            n = 0;
    }
    if (!overflow && (n == 0 || *rest != '\0')) {
        switch (k->kind) {
        case K_SIZE:
            snprintf(why, whylen,
                     "'%.100s' is not a size (bytes, or a whole number with suffix k, m or g: 64k, 1m, 1g)",
                     s);
            break;
        case K_MS:
            snprintf(why, whylen,
                     "'%.100s' is not a duration (milliseconds, or a whole number with suffix ms or s: "
                     "500, 500ms, 10s)",
                     s);
            break;
        default:
            snprintf(why, whylen, "'%.100s' is not a non-negative whole number", s);
            break;
        }
        return -1;
    }
    uint64_t max = key_max(k);
    if (overflow || v > UINT64_MAX / mul || v * mul < k->min || v * mul > max) {
        char lo[32], hi[32];
        if (k->kind == K_SIZE) {
            fmt_size(lo, sizeof lo, k->min);
            fmt_size(hi, sizeof hi, max);
        } else {
            snprintf(lo, sizeof lo, "%llu", (unsigned long long)k->min);
            snprintf(hi, sizeof hi, "%llu", (unsigned long long)max);
        }
        snprintf(why, whylen, "%.100s is out of range (%s..%s%s)", s, lo, hi,
                 k->kind == K_MS ? " ms" : "");
        return -1;
    }
    *out = v * mul;
    return 0;
}

static bool host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '.' ||
           ch == '-' || ch == '_';
}

/* "ADDR:PORT", "[v6]:PORT", "*:PORT", ":PORT" or "PORT". The address is
 * stored without brackets; "*" and an omitted address are stored as "" (every
 * address), so the server has exactly one spelling to test for. */
static int parse_listen(const char *s, char *addr, size_t addrlen, int *port, char *why,
                        size_t whylen)
{
    const char *host, *host_end, *p;
    bool v6 = false;

    if (s[0] == '[') {
        host = s + 1;
        host_end = strchr(host, ']');
        if (!host_end) {
            snprintf(why, whylen, "'%.100s': missing ']' after the IPv6 address", s);
            return -1;
        }
        if (host_end[1] != ':') {
            snprintf(why, whylen, "'%.100s': expected ':PORT' after ']' (e.g. [::1]:8080)", s);
            return -1;
        }
        p = host_end + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) { /* port only */
            host = host_end = s;
            p = s;
            if (*s && !is_digit(*s)) {
                snprintf(why, whylen,
                         "'%.100s': missing ':PORT' (expected ADDR:PORT, [IPv6]:PORT or *:PORT)", s);
                return -1;
            }
        } else {
            host = s;
            host_end = colon;
            p = colon + 1;
            if (memchr(host, ':', (size_t)(host_end - host))) {
                snprintf(why, whylen, "'%.100s': an IPv6 address needs brackets, e.g. [::1]:8080", s);
                return -1;
            }
        }
    }

    /* port: 1..5 digits, 0..65535 */
    uint64_t pv = 0;
    int n = parse_digits(p, &pv);
    if (n <= 0 || p[n] != '\0') {
        snprintf(why, whylen, "'%.100s': %s (expected ADDR:PORT, [IPv6]:PORT or *:PORT)", s,
                 *p ? "the port is not a number" : "missing port");
        return -1;
    }
    if (n > 5 || pv > 65535) {
        snprintf(why, whylen, "'%.100s': port %.20s is out of range (0..65535)", s, p);
        return -1;
    }

    size_t hl = (size_t)(host_end - host);
    char h[INET6_ADDRSTRLEN + 64];
    if (hl >= sizeof h || hl >= addrlen) {
        snprintf(why, whylen, "'%.100s': the address is too long", s);
        return -1;
    }
    memcpy(h, host, hl);
    h[hl] = '\0';

    if (v6) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, h, &a6) != 1) {
            snprintf(why, whylen, "'%.100s': '%.100s' is not an IPv6 address", s, h);
            return -1;
        }
    } else if (strcmp(h, "*") == 0) {
        h[0] = '\0';
    } else if (hl > 0) {
        bool numeric = true, ok = true;
        for (size_t i = 0; i < hl; i++) {
            ok = ok && host_char(h[i]);
            numeric = numeric && (is_digit(h[i]) || h[i] == '.');
        }
        struct in_addr a4;
        if (numeric && inet_pton(AF_INET, h, &a4) != 1) {
            snprintf(why, whylen, "'%.100s': '%.100s' is not an IPv4 address", s, h);
            return -1;
        }
        if (!ok) {
            snprintf(why, whylen,
                     "'%.100s': '%.100s' is not an address (use an IPv4 address, [IPv6], * or an "
                     "interface name)",
                     s, h);
            return -1;
        }
    }
    memcpy(addr, h, hl + 1);
    *port = (int)pv;
    return 0;
}

/* A Redis or Sentinel address: the listen syntax, but the host and a
 * non-zero port are required (there is no "every address" to connect to). */
static int parse_endpoint(const char *s, struct mx_endpoint *e, char *why, size_t whylen)
{
    char host[sizeof e->host] = { 0 }; /* zero-filled: the diff compares whole fields */
    int port = 0;
    if (parse_listen(s, host, sizeof host, &port, why, whylen) < 0)
        return -1;
    if (!host[0] || strcmp(s, "*") == 0 || s[0] == '*') {
        snprintf(why, whylen, "'%.100s': the host is missing (expected HOST:PORT or [IPv6]:PORT)",
                 s);
        return -1;
    }
    if (port == 0) {
        snprintf(why, whylen, "'%.100s': port 0 is not a port to connect to (1..65535)", s);
        return -1;
    }
    memcpy(e->host, host, sizeof e->host);
    e->port = port;
    return 0;
}

int mx_config_set_listen(struct mx_config *c, const char *s)
{
    char why[256];
    if (!c || !s)
        return -1;
    return parse_listen(s, c->listen_addr, sizeof c->listen_addr, &c->listen_port, why,
                        sizeof why);
}

int mx_config_parse_log_level(const char *s, enum mx_log_level *out)
{
    int i = s ? pick(s, log_level_names, 4) : -1;
    if (i < 0)
        return -1;
    *out = (enum mx_log_level)i;
    return 0;
}

int mx_config_parse_event_loop(const char *s, enum mx_event_loop *out)
{
    int i = s ? pick(s, event_loop_names, 3) : -1;
    if (i < 0)
        return -1;
    *out = (enum mx_event_loop)i;
    return 0;
}

/* Store one value into the field k describes inside base (a struct
 * mx_config for global keys, a struct mx_room_type for room keys). */
static int apply_value(const struct key *k, void *base, const char *v, char *why, size_t whylen)
{
    char *field = (char *)base + k->off;
    char names[128];
    uint64_t n;
    int i;

    switch (k->kind) {
    case K_SIZE:
    case K_COUNT:
        if (parse_number(k, v, &n, why, whylen) < 0)
            return -1;
        *(size_t *)(void *)field = (size_t)n;
        return 0;
    case K_INT:
    case K_MS:
        if (parse_number(k, v, &n, why, whylen) < 0)
            return -1;
        *(int *)(void *)field = (int)n;
        return 0;
    case K_BOOL: {
        static const char *const bools[] = { "no", "yes", "false", "true", "off", "on" };
        i = pick(v, bools, 6);
        if (i < 0) {
            snprintf(why, whylen, "'%.100s' is not a boolean (yes, no, true, false, on, off)", v);
            return -1;
        }
        *(int *)(void *)field = i % 2;
        return 0;
    }
    case K_LOGLEVEL: {
        enum mx_log_level lv;
        if (mx_config_parse_log_level(v, &lv) < 0) {
            join_names(names, sizeof names, log_level_names, 4);
            snprintf(why, whylen, "'%.100s' is not one of: %s", v, names);
            return -1;
        }
        *(enum mx_log_level *)(void *)field = lv;
        return 0;
    }
    case K_FSYNC:
    case K_EVLOOP: {
        const char *const *set = k->kind == K_FSYNC ? fsync_names : event_loop_names;
        i = pick(v, set, 3);
        if (i < 0) {
            join_names(names, sizeof names, set, 3);
            snprintf(why, whylen, "'%.100s' is not one of: %s", v, names);
            return -1;
        }
        if (k->kind == K_FSYNC)
            *(enum mx_fsync_policy *)(void *)field = (enum mx_fsync_policy)i;
        else
            *(enum mx_event_loop *)(void *)field = (enum mx_event_loop)i;
        return 0;
    }
    case K_PATH:
        if (strlen(v) >= k->size) {
            snprintf(why, whylen, "too long (at most %zu bytes)", k->size - 1);
            return -1;
        }
        strcpy(field, v);
        return 0;
    case K_LISTEN: {
        struct mx_config *c = base;
        return parse_listen(v, c->listen_addr, sizeof c->listen_addr, &c->listen_port, why,
                            whylen);
    }
    case K_AUTH: {
        static const char *const modes[] = { "none", "jwt" };
        i = pick(v, modes, 2);
        if (i < 0) {
            snprintf(why, whylen, "'%.100s' is not one of: none, jwt", v);
            return -1;
        }
        *(enum mx_auth_mode *)(void *)field = (enum mx_auth_mode)i;
        return 0;
    }
    case K_RIGHTS: {
        unsigned bits = 0;
        if (strcmp(v, "none") != 0) {
            const char *q = v;
            while (*q) {
                size_t len = strcspn(q, ", ");
                if (len == 4 && !strncmp(q, "read", 4))
                    bits |= MX_RIGHT_READ;
                else if (len == 5 && !strncmp(q, "write", 5))
                    bits |= MX_RIGHT_WRITE;
                else if (len == 6 && !strncmp(q, "create", 6))
                    bits |= MX_RIGHT_CREATE;
                else if (len) {
                    snprintf(why, whylen,
                             "'%.100s' is not a list of rights (none, or read,write,create)", v);
                    return -1;
                }
                q += len;
                q += strspn(q, ", ");
            }
        }
        *(unsigned *)(void *)field = bits;
        return 0;
    }
    case K_ENDPOINT:
        return parse_endpoint(v, (struct mx_endpoint *)(void *)field, why, whylen);
    case K_ENDPOINTS: {
        struct mx_cluster_config *cl = base;
        char one[VALUE_MAX + 1];
        size_t cnt = 0;
        const char *q = v;
        while (*q) {
            size_t len = strcspn(q, ", ");
            if (len) {
                if (cnt == MX_CLUSTER_SENTINELS_MAX) {
                    snprintf(why, whylen, "more than %d addresses", MX_CLUSTER_SENTINELS_MAX);
                    return -1;
                }
                memcpy(one, q, len);
                one[len] = '\0';
                if (parse_endpoint(one, &cl->sentinels[cnt], why, whylen) < 0)
                    return -1;
                cnt++;
            }
            q += len;
            q += strspn(q, ", ");
        }
        cl->nsentinels = cnt;
        return 0;
    }
    case K_NODEID: {
        size_t len = strlen(v);
        bool ok = len >= 1 && len <= MX_CLUSTER_NODE_ID_MAX;
        for (size_t j = 0; ok && j < len; j++)
            ok = host_char(v[j]);
        if (!ok) {
            snprintf(why, whylen, "'%.100s' is not a node id (1..%d of A-Z a-z 0-9 _ . -)", v,
                     MX_CLUSTER_NODE_ID_MAX);
            return -1;
        }
        strcpy(field, v);
        return 0;
    }
    case K_REDUCER:
        if (strcmp(v, "json") != 0) {
            join_names(names, sizeof names, reducers, NREDUCERS);
            snprintf(why, whylen, "unknown reducer '%.100s' (known: %s)", v, names);
            return -1;
        }
        strcpy(field, v); /* known names fit the field */
        return 0;
    }
    snprintf(why, whylen, "internal error: unhandled key kind");
    return -1;
}

/* `reducer lua:PATH`: PATH relative to the conf file's directory (absolute
 * allowed). The resolved path is owned by c->reducer_files; whether the
 * file compiles is checked by mx_reducers_check (reducer.c), not here, so
 * the parser stays free of Lua. */
static int set_lua_reducer(struct mx_config *c, const char *conf_name, struct mx_room_type *t,
                           const char *path, char *why, size_t whylen)
{
    if (!*path) {
        snprintf(why, whylen, "lua: needs a file path (reducer lua:PATH)");
        return -1;
    }
    const char *slash = conf_name ? strrchr(conf_name, '/') : NULL;
    size_t dirlen = path[0] == '/' || !slash ? 0 : (size_t)(slash - conf_name) + 1;
    size_t len = dirlen + strlen(path);
    if (len >= 4096) {
        snprintf(why, whylen, "lua: the path is too long");
        return -1;
    }
    char **nf = mx_realloc(c->reducer_files, (c->nreducer_files + 1) * sizeof *nf);
    if (!nf) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    c->reducer_files = nf;
    char *full = mx_malloc(len + 1);
    if (!full) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    memcpy(full, conf_name, dirlen);
    strcpy(full + dirlen, path);
    c->reducer_files[c->nreducer_files++] = full;
    strcpy(t->reducer, "lua");
    t->reducer_path = full;
    return 0;
}

/* ----------------------------------------------------------------- lexer -- */

struct parser {
    const char *name;
    char *err;
    size_t errlen;
};

static void fail(const struct parser *ps, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(const struct parser *ps, size_t line, const char *fmt, ...)
{
    if (!ps->err || ps->errlen == 0)
        return;
    int w = line ? snprintf(ps->err, ps->errlen, "%s:%zu: ", ps->name, line)
                 : snprintf(ps->err, ps->errlen, "%s: ", ps->name);
    if (w < 0 || (size_t)w >= ps->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + w, ps->errlen - (size_t)w, fmt, ap);
    va_end(ap);
}

static bool is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v'; }

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/* Only whitespace or a comment between p and end? */
static bool blank_rest(const char *p, const char *end)
{
    p = skip_ws(p, end);
    return p == end || *p == '#';
}

/* Read the value that starts at p (after the key and its whitespace) into
 * out. Unquoted: up to a '#' that follows whitespace, trimmed. Quoted:
 * between the quotes, with \" and \\ as the only escapes. */
static int lex_value(const char *p, const char *end, char *out, size_t outlen, char *why,
                     size_t whylen)
{
    size_t n = 0;
    if (p < end && *p == '"') {
        const char *q = p + 1;
        for (;;) {
            if (q == end) {
                snprintf(why, whylen, "unterminated quoted value (missing closing \")");
                return -1;
            }
            char ch = *q;
            if (ch == '"')
                break;
            if (ch == '\\' && q + 1 < end && (q[1] == '"' || q[1] == '\\'))
                ch = *++q;
            if (n + 1 >= outlen) {
                snprintf(why, whylen, "value too long (at most %zu bytes)", outlen - 1);
                return -1;
            }
            out[n++] = ch;
            q++;
        }
        if (!blank_rest(q + 1, end)) {
            snprintf(why, whylen, "unexpected text after the closing quote");
            return -1;
        }
        out[n] = '\0';
        return 0;
    }
    const char *v_end = end;
    for (const char *q = p; q < end; q++)
        if (*q == '#' && (q == p || is_ws(q[-1]))) {
            v_end = q;
            break;
        }
    while (v_end > p && is_ws(v_end[-1]))
        v_end--;
    n = (size_t)(v_end - p);
    if (n >= outlen) {
        snprintf(why, whylen, "value too long (at most %zu bytes)", outlen - 1);
        return -1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

/* Levenshtein distance, capped; for "did you mean" hints on unknown keys. */
static size_t edit_distance(const char *a, size_t al, const char *b)
{
    size_t bl = strlen(b);
    size_t row[64];
    if (al >= 64 || bl >= 64)
        return 99;
    for (size_t j = 0; j <= bl; j++)
        row[j] = j;
    for (size_t i = 1; i <= al; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= bl; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[bl];
}

/* " (did you mean 'x'?)" or "" */
static void suggest(char *out, size_t len, const char *key, size_t kl, const struct key *keys,
                    size_t n)
{
    size_t best = 3; /* only close misspellings */
    const char *name = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(key, kl, keys[i].name);
        if (d < best)
            best = d, name = keys[i].name;
    }
    if (name)
        snprintf(out, len, " (did you mean '%s'?)", name);
    else
        out[0] = '\0';
}

static void key_list(char *out, size_t len, const struct key *keys, size_t n)
{
    const char *names[64];
    for (size_t i = 0; i < n && i < 64; i++)
        names[i] = keys[i].name;
    join_names(out, len, names, n < 64 ? n : 64);
}

static bool type_char(char ch) { return host_char(ch); }

/* ---------------------------------------------------------------- parser -- */

/* A named room block while parsing: its values, and for each room key the
 * line that set it (0 = not set, so it inherits from the default block). */
struct pending {
    struct mx_room_type t;
    size_t line;
    size_t set[NROOM];
};

/* The cluster block as a whole: who this node is and where Redis is. set[]
 * holds the line of each cluster key (0 = not set). 0, or -1 with why. */
static int check_cluster(const struct mx_cluster_config *cl, const size_t *set, char *why,
                         size_t whylen)
{
    bool redis = set[1] != 0, sentinels = set[2] != 0, master = set[3] != 0;
    if (!set[0]) {
        snprintf(why, whylen, "node_id is required (a name unique to this node, e.g. node_id n1)");
        return -1;
    }
    if (redis == sentinels) {
        snprintf(why, whylen,
                 redis ? "set either redis HOST:PORT or sentinels (with master_name), not both"
                       : "set redis HOST:PORT, or sentinels HOST:PORT,... with master_name");
        return -1;
    }
    if (sentinels && (!master || !cl->master_name[0])) {
        snprintf(why, whylen, "sentinels needs master_name (the primary's name in Sentinel)");
        return -1;
    }
    if (!sentinels && master) {
        snprintf(why, whylen, "master_name only applies with sentinels");
        return -1;
    }
    if (sentinels && cl->nsentinels == 0) {
        snprintf(why, whylen, "sentinels: no address given");
        return -1;
    }
    /* WAIT blocks the command link for up to its timeout: a command
     * timeout at or below it would drop the link under every slow WAIT */
    if (cl->wait_replicas > 0 && cl->wait_timeout_ms >= cl->command_timeout_ms) {
        snprintf(why, whylen,
                 "wait_timeout_ms (%d) must be below command_timeout_ms (%d): the link is dropped "
                 "when WAIT blocks that long",
                 cl->wait_timeout_ms, cl->command_timeout_ms);
        return -1;
    }
    return 0;
}

void mx_config_journal_dir(const struct mx_config *c, char *out, size_t n)
{
    if (c->cluster.journal_dir[0])
        snprintf(out, n, "%s", c->cluster.journal_dir);
    else /* per node: several nodes of one host may share a data_dir (and a
          * conf), but never a journal - its LOCK would stop the second */
        snprintf(out, n, "%s/cluster-journal-%s", c->data_dir, c->cluster.node_id);
}

static int cmp_type(const void *a, const void *b)
{
    return strcmp(((const struct mx_room_type *)a)->name, ((const struct mx_room_type *)b)->name);
}

int mx_config_parse(struct mx_config *c, const char *text, const char *name, char *err,
                    size_t errlen)
{
    struct parser ps = { name ? name : "<string>", err, errlen };
    struct mx_config tmp;
    struct pending *pend = NULL;
    size_t npend = 0, cap = 0;
    size_t gset[NGLOBAL] = { 0 }, dset[NROOM] = { 0 }, cset[NCLUSTER] = { 0 };
    size_t def_line = 0, cluster_line = 0;

    /* the open block: none, the default block, pend[cur] or the cluster block */
    enum { NONE, DEFAULT, NAMED, CLUSTER } block = NONE;
    size_t cur = 0, block_line = 0;

    char val[VALUE_MAX + 1], why[512], hint[64], list[1024];
    size_t line = 0;

    mx_config_defaults(&tmp);
    if (err && errlen)
        err[0] = '\0';
    if (!text) {
        fail(&ps, 0, "no text");
        goto error;
    }

    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        const char *end = eol ? eol : p + strlen(p);
        const char *next = eol ? eol + 1 : end;
        line++;
        const char *s = skip_ws(p, end);
        p = next;

        if (s == end || *s == '#')
            continue;

        const char *bname = block == NAMED ? pend[cur].t.name : "default";

        if (*s == '}') {
            if (block == NONE) {
                fail(&ps, line, "'}' without an open 'room TYPE {' or 'cluster {' block");
                goto error;
            }
            if (!blank_rest(s + 1, end)) {
                fail(&ps, line, "unexpected text after '}' (put it on a line of its own)");
                goto error;
            }
            block = NONE;
            continue;
        }

        const char *k = s;
        while (s < end && !is_ws(*s))
            s++;
        size_t kl = (size_t)(s - k);
        int kshow = kl > 64 ? 64 : (int)kl;
        s = skip_ws(s, end);

        if (kl == 7 && memcmp(k, "cluster", 7) == 0 && block == NONE) {
            if (s == end || *s != '{') {
                fail(&ps, line, "expected '{' after 'cluster' (the '{' goes on the same line)");
                goto error;
            }
            if (!blank_rest(s + 1, end)) {
                fail(&ps, line, "unexpected text after '{' (put each key on a line of its own)");
                goto error;
            }
            if (cluster_line) {
                fail(&ps, line, "duplicate block 'cluster' (first at line %zu)", cluster_line);
                goto error;
            }
            cluster_line = block_line = line;
            tmp.cluster.enabled = 1;
            block = CLUSTER;
            continue;
        }

        if (kl == 4 && memcmp(k, "room", 4) == 0) {
            if (block == CLUSTER) {
                fail(&ps, line,
                     "blocks cannot be nested: block 'cluster' (line %zu) is still open; "
                     "close it with '}' first",
                     block_line);
                goto error;
            }
            if (block != NONE) {
                fail(&ps, line,
                     "room blocks cannot be nested: block 'room %s' (line %zu) is still open; "
                     "close it with '}' first",
                     bname, block_line);
                goto error;
            }
            const char *t = s;
            while (s < end && type_char(*s))
                s++;
            size_t tl = (size_t)(s - t);
            if (tl == 0 || (s < end && !is_ws(*s) && *s != '{')) {
                if (t == end || *t == '{' || *t == '#') {
                    fail(&ps, line, "'room' needs a type: room TYPE {");
                } else {
                    const char *w = t;
                    while (w < end && !is_ws(*w) && *w != '{')
                        w++;
                    fail(&ps, line,
                         "invalid room type '%.*s' (use 1..%d of A-Z a-z 0-9 _ . -, or 'default')",
                         (int)((w - t) > 64 ? 64 : (w - t)), t, MX_ROOM_TYPE_MAX);
                }
                goto error;
            }
            if (tl > MX_ROOM_TYPE_MAX) {
                fail(&ps, line, "room type is too long (%zu bytes, at most %d)", tl,
                     MX_ROOM_TYPE_MAX);
                goto error;
            }
            s = skip_ws(s, end);
            if (s == end || *s != '{') {
                fail(&ps, line,
                     "expected '{' after 'room %.*s' (the '{' goes on the same line)", (int)tl, t);
                goto error;
            }
            if (!blank_rest(s + 1, end)) {
                fail(&ps, line, "unexpected text after '{' (put each key on a line of its own)");
                goto error;
            }
            if (tl == 7 && memcmp(t, "default", 7) == 0) {
                if (def_line) {
                    fail(&ps, line, "duplicate block 'room default' (first at line %zu)",
                         def_line);
                    goto error;
                }
                def_line = line;
                block = DEFAULT;
            } else {
                for (size_t i = 0; i < npend; i++)
                    if (strlen(pend[i].t.name) == tl && memcmp(pend[i].t.name, t, tl) == 0) {
                        fail(&ps, line, "duplicate block 'room %.*s' (first at line %zu)",
                             (int)tl, t, pend[i].line);
                        goto error;
                    }
                if (npend == cap) {
                    size_t ncap = cap ? cap * 2 : 8;
                    struct pending *np = mx_realloc(pend, ncap * sizeof *np);
                    if (!np) {
                        fail(&ps, line, "out of memory");
                        goto error;
                    }
                    pend = np;
                    cap = ncap;
                }
                cur = npend++;
                memset(&pend[cur], 0, sizeof pend[cur]);
                memcpy(pend[cur].t.name, t, tl);
                pend[cur].t.name[tl] = '\0';
                pend[cur].line = line;
                block = NAMED;
            }
            block_line = line;
            continue;
        }

        /* key value */
        const struct key *keys = block == NONE      ? global_keys
                                 : block == CLUSTER ? cluster_keys
                                                    : room_keys;
        size_t nkeys = block == NONE ? NGLOBAL : block == CLUSTER ? NCLUSTER : NROOM;
        const struct key *key = NULL;
        for (size_t i = 0; i < nkeys; i++)
            if (strlen(keys[i].name) == kl && memcmp(keys[i].name, k, kl) == 0)
                key = &keys[i];
        if (!key && block == CLUSTER) {
            suggest(hint, sizeof hint, k, kl, keys, nkeys);
            key_list(list, sizeof list, keys, nkeys);
            fail(&ps, line, "unknown key '%.*s' in block 'cluster'%s; cluster keys are: %s", kshow,
                 k, hint, list);
            goto error;
        }
        if (!key && block == NONE) {
            for (size_t i = 0; i < NCLUSTER; i++)
                if (strlen(cluster_keys[i].name) == kl && memcmp(cluster_keys[i].name, k, kl) == 0) {
                    fail(&ps, line, "'%.*s' is a cluster setting: put it inside the 'cluster { ... }' block",
                         kshow, k);
                    goto error;
                }
        }
        if (!key) {
            const struct key *other = block == NONE ? room_keys : global_keys;
            size_t nother = block == NONE ? NROOM : NGLOBAL;
            bool elsewhere = false;
            for (size_t i = 0; i < nother; i++)
                if (strlen(other[i].name) == kl && memcmp(other[i].name, k, kl) == 0)
                    elsewhere = true;
            if (elsewhere && block == NONE)
                fail(&ps, line,
                     "'%.*s' is a room setting: put it inside a 'room TYPE { ... }' block "
                     "(e.g. 'room default')",
                     kshow, k);
            else if (elsewhere)
                fail(&ps, line,
                     "'%.*s' is a global setting and cannot be set inside block 'room %s' "
                     "(line %zu); close the block with '}' first",
                     kshow, k, bname, block_line);
            else {
                suggest(hint, sizeof hint, k, kl, keys, nkeys);
                key_list(list, sizeof list, keys, nkeys);
                if (block == NONE)
                    fail(&ps, line, "unknown key '%.*s'%s; global keys are: %s, and 'room TYPE {' and 'cluster {' blocks",
                         kshow, k, hint, list);
                else
                    fail(&ps, line, "unknown key '%.*s' in block 'room %s'%s; room keys are: %s",
                         kshow, k, bname, hint, list);
            }
            goto error;
        }

        size_t idx = (size_t)(key - keys);
        size_t *set = block == NONE      ? gset
                      : block == DEFAULT ? dset
                      : block == CLUSTER ? cset
                                         : pend[cur].set;
        if (set[idx]) {
            if (block == CLUSTER)
                fail(&ps, line, "duplicate key '%s' in block 'cluster' (first set at line %zu)",
                     key->name, set[idx]);
            else if (block == NONE)
                fail(&ps, line, "duplicate key '%s' (first set at line %zu)", key->name, set[idx]);
            else
                fail(&ps, line, "duplicate key '%s' in block 'room %s' (first set at line %zu)",
                     key->name, bname, set[idx]);
            goto error;
        }
        if (lex_value(s, end, val, sizeof val, why, sizeof why) < 0) {
            fail(&ps, line, "%s: %s", key->name, why);
            goto error;
        }
        if (val[0] == '\0') {
            fail(&ps, line, "%s: missing value", key->name);
            goto error;
        }
        void *base = block == NONE      ? (void *)&tmp
                     : block == DEFAULT ? (void *)&tmp.def
                     : block == CLUSTER ? (void *)&tmp.cluster
                                        : (void *)&pend[cur].t;
        if (key->kind == K_REDUCER && strncmp(val, "lua:", 4) == 0) {
            if (set_lua_reducer(&tmp, ps.name, (struct mx_room_type *)base, val + 4, why,
                                sizeof why) < 0) {
                fail(&ps, line, "%s: %s", key->name, why);
                goto error;
            }
        } else if (apply_value(key, base, val, why, sizeof why) < 0) {
            fail(&ps, line, "%s: %s", key->name, why);
            goto error;
        }
        set[idx] = line;
    }

    if (block != NONE) {
        fail(&ps, block_line, "block '%s%s' is not closed: missing '}' before the end of the file",
             block == CLUSTER ? "cluster" : "room ",
             block == CLUSTER ? "" : block == NAMED ? pend[cur].t.name : "default");
        goto error;
    }
    if (cluster_line && check_cluster(&tmp.cluster, cset, why, sizeof why) < 0) {
        fail(&ps, cluster_line, "block 'cluster': %s", why);
        goto error;
    }

    /* Inheritance: each named type = final default block + the keys it set. */
    if (npend) {
        tmp.types = mx_calloc(npend, sizeof *tmp.types);
        if (!tmp.types) {
            fail(&ps, 0, "out of memory");
            goto error;
        }
        for (size_t i = 0; i < npend; i++) {
            struct mx_room_type *t = &tmp.types[i];
            *t = tmp.def;
            memcpy(t->name, pend[i].t.name, sizeof t->name);
            for (size_t j = 0; j < NROOM; j++)
                if (pend[i].set[j])
                    memcpy((char *)t + room_keys[j].off, (const char *)&pend[i].t + room_keys[j].off,
                           room_keys[j].size);
            if (pend[i].set[0]) /* room_keys[0] is "reducer": its file goes with it */
                t->reducer_path = pend[i].t.reducer_path;
        }
        tmp.ntypes = npend;
        qsort(tmp.types, tmp.ntypes, sizeof *tmp.types, cmp_type);
    }
    free(pend);
    *c = tmp;
    return 0;

error:
    free(pend);
    mx_config_free(&tmp);
    mx_config_defaults(c);
    return -1;
}

int mx_config_load(struct mx_config *c, const char *path, char *err, size_t errlen)
{
    struct parser ps = { path, err, errlen };
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;

    mx_config_defaults(c);
    if (err && errlen)
        err[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(&ps, 0, "cannot open: %s", strerror(errno));
        return -1;
    }
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *nb = mx_realloc(buf, cap + 1);
            if (!nb) {
                fail(&ps, 0, "out of memory");
                goto out;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len > FILE_MAX) {
            fail(&ps, 0, "file is too large (more than %llu bytes); is this a conf file?",
                 (unsigned long long)FILE_MAX);
            goto out;
        }
        if (got == 0) {
            if (ferror(f)) {
                fail(&ps, 0, "cannot read: %s", strerror(errno));
                goto out;
            }
            break;
        }
    }
    buf[len] = '\0';
    const char *nul = memchr(buf, '\0', len);
    if (nul) {
        size_t line = 1;
        for (const char *q = buf; q < nul; q++)
            line += *q == '\n';
        fail(&ps, line, "NUL byte in the file; is this a conf file?");
        goto out;
    }
    rc = mx_config_parse(c, buf, path, err, errlen);

out:
    free(buf);
    fclose(f);
    return rc;
}

const struct mx_room_type *mx_config_room_type(const struct mx_config *c, const char *type,
                                               size_t len)
{
    size_t lo = 0, hi = c->ntypes;
    if (!type || len == 0 || len > MX_ROOM_TYPE_MAX)
        return &c->def;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *n = c->types[mid].name;
        size_t nl = strlen(n);
        int r = memcmp(n, type, nl < len ? nl : len);
        if (r == 0)
            r = nl < len ? -1 : nl > len ? 1 : 0;
        if (r == 0)
            return &c->types[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return &c->def;
}

int mx_config_key_line(const char *path, const char *key)
{
    /* The file was parsed already (this is for messages about a value that
     * parsed but does not work, a missing TLS file say), so a plain scan
     * suffices: the first top-level line whose first word is the key. */
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return 0;
    /* "cluster.journal_dir": a key of the cluster block */
    int in_cluster = !strncmp(key, "cluster.", 8), inside = 0;
    if (in_cluster)
        key += 8;
    char line[1200];
    int n = 0, found = 0, depth = 0;
    size_t kl = strlen(key);
    while (!found && fgets(line, sizeof line, f)) {
        n++;
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!strncmp(p, key, kl) && (p[kl] == ' ' || p[kl] == '\t') && (in_cluster ? inside : !depth))
            found = n; /* also a block's own line: "cluster {" */
        else if ((!strncmp(p, "room ", 5) || !strncmp(p, "cluster ", 8)) && strchr(p, '{'))
            depth = 1, inside = !strncmp(p, "cluster ", 8);
        else if (*p == '}')
            depth = 0, inside = 0;
        if (!strchr(line, '\n')) { /* a long line: skip its rest */
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n')
                ;
        }
    }
    fclose(f);
    return found;
}

/* Does field k differ between the two structs (strings compared as text)? */
static int field_differs(const struct key *k, const void *a, const void *b)
{
    const char *x = (const char *)a + k->off, *y = (const char *)b + k->off;
    if (k->kind == K_PATH || k->kind == K_REDUCER || k->kind == K_NODEID)
        return strncmp(x, y, k->size) != 0;
    return memcmp(x, y, k->size) != 0;
}

static void add_name(char *out, size_t outlen, size_t *len, const char *prefix, const char *name)
{
    int n = snprintf(out + *len, *len < outlen ? outlen - *len : 0, "%s%s%s", *len ? "," : "",
                     prefix, name);
    if (n > 0)
        *len += (size_t)n;
}

static void room_diff(const struct mx_room_type *a, const struct mx_room_type *b, char *out,
                      size_t outlen, size_t *len)
{
    char prefix[MX_ROOM_TYPE_MAX + 8];
    snprintf(prefix, sizeof prefix, "%s.", b->name);
    for (size_t i = 0; i < NROOM; i++)
        if (field_differs(&room_keys[i], a, b))
            add_name(out, outlen, len, prefix, room_keys[i].name);
}

static const struct mx_room_type *find_type(const struct mx_config *c, const char *name)
{
    for (size_t i = 0; i < c->ntypes; i++)
        if (!strcmp(c->types[i].name, name))
            return &c->types[i];
    return NULL;
}

size_t mx_config_diff(const struct mx_config *a, const struct mx_config *b, char *out, size_t outlen)
{
    size_t len = 0;
    if (outlen)
        out[0] = '\0';
    for (size_t i = 0; i < NGLOBAL; i++) {
        const struct key *k = &global_keys[i];
        int differs = field_differs(k, a, b);
        if (k->kind == K_LISTEN) /* the port is a field of its own */
            differs = differs || a->listen_port != b->listen_port;
        if (differs)
            add_name(out, outlen, &len, "", k->name);
    }
    if (a->cluster.enabled != b->cluster.enabled)
        add_name(out, outlen, &len, b->cluster.enabled ? "+" : "-", "cluster");
    else
        for (size_t i = 0; i < NCLUSTER; i++) {
            const struct key *k = &cluster_keys[i];
            int differs = field_differs(k, &a->cluster, &b->cluster);
            if (k->kind == K_ENDPOINTS)
                differs = differs || a->cluster.nsentinels != b->cluster.nsentinels;
            if (differs)
                add_name(out, outlen, &len, "cluster.", k->name);
        }
    room_diff(&a->def, &b->def, out, outlen, &len);
    for (size_t i = 0; i < b->ntypes; i++) {
        const struct mx_room_type *t = find_type(a, b->types[i].name);
        if (t)
            room_diff(t, &b->types[i], out, outlen, &len);
        else
            add_name(out, outlen, &len, "+room:", b->types[i].name);
    }
    for (size_t i = 0; i < a->ntypes; i++)
        if (!find_type(b, a->types[i].name))
            add_name(out, outlen, &len, "-room:", a->types[i].name);
    if (outlen && len >= outlen) { /* cut: say so rather than end mid-name */
        size_t cut = outlen > 4 ? outlen - 4 : 0;
        snprintf(out + cut, outlen - cut, "...");
    }
    return len;
}
