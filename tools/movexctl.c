/* movexctl.c - the command-line client for movexd: watch, read and poke
 * rooms over the WebSocket protocol, mint development tokens, and check a
 * data directory offline (man/movexctl.1).
 *
 * The network commands speak docs/PROTOCOL.md as any client would (hello,
 * then one request, then the reply or a stream of pushes), through one
 * libwebsockets client connection driven by a small state machine in
 * ws_cb(). Server messages are printed exactly as they arrived, one per
 * line, so the output is the protocol's own JSON and scripts can pipe it
 * to jq. Key files are read by jwt.c's loaders and the conf by config.c,
 * so a token minted here is made from the bytes the daemon verifies with.
 * check-data lives in check_data.c.
 *
 * Exit codes: 0 done; 1 the server refused (error, reject) or check-data
 * found damage; 2 usage; 3 connection failure, timeout or unexpected close.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <sodium.h>

#include "movexd/config.h"
#include "movexd/jwt.h"
#include "movexd/proto.h"
#include "movexd/version.h"
#include "movexctl.h"

enum cmd { CMD_WATCH, CMD_GET, CMD_DISPATCH, CMD_PRESENCE };

struct opts {
    const char *url;
    const char *token;
    const char *token_file;
    const char *client;
    int insecure;
    int timeout_s;
    long count; /* watch: stop after this many pushes (0 = never) */
    enum cmd cmd;
    const char *room;
    const char *payload; /* dispatch: the action's payload, JSON text */
    const char *action_type;
    int strict;
    uint64_t n; /* dispatch: 0 = next_n from the server */
    int has_dep;
    uint64_t dep;
    uint64_t max_message; /* largest inbound message kept (reassembled), bytes */
};

/* A subscribe or get reply carries a whole room's state and history; the
 * daemon's own outbound bound (max_queue_bytes, 8 MiB by default) is far
 * below this, so only a broken or hostile server reaches it. */
#define MAX_MESSAGE_DEFAULT ((uint64_t)64 << 20)

struct outmsg {
    unsigned char *buf; /* LWS_PRE bytes of headroom, then the text */
    size_t len;
};

static struct {
    const struct opts *o;
    struct lws_context *ctx;
    struct lws *wsi;
    char *token; /* owned */
    struct outmsg q[4];
    size_t nq;
    char *rx;
    size_t rxlen, rxcap;
    int welcomed;
    long pushes;
    int done;
    int rc;
    lws_sorted_usec_list_t timeout;
} g;

static volatile sig_atomic_t interrupted;

static void finish(int rc)
{
    if (!g.done) {
        g.done = 1;
        g.rc = rc;
    }
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
    if (g.ctx)
        lws_cancel_service(g.ctx);
}

static void print_line(const char *s, size_t len)
{
    fwrite(s, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

/* Queue one text message; it leaves at the next writable callback. */
static void send_text(const char *text)
{
    size_t len = strlen(text);
    if (g.nq == sizeof g.q / sizeof g.q[0]) {
        fprintf(stderr, "movexctl: internal: send queue full\n");
        finish(3);
        return;
    }
    unsigned char *b = malloc(LWS_PRE + len);
    if (!b) {
        fprintf(stderr, "movexctl: out of memory\n");
        finish(3);
        return;
    }
    memcpy(b + LWS_PRE, text, len);
    g.q[g.nq++] = (struct outmsg){b, len};
    lws_callback_on_writable(g.wsi);
}

/* A JSON string literal for s (room ids, client ids, tokens). */
static char *json_str(const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    return t;
}

static void send_hello(void)
{
    char *client = g.o->client ? json_str(g.o->client) : NULL;
    char *token = g.token ? json_str(g.token) : NULL;
    size_t cap = 64 + (client ? strlen(client) : 0) + (token ? strlen(token) : 0);
    char *m = malloc(cap);
    if (m) {
        snprintf(m, cap, "{\"type\":\"hello\"%s%s%s%s}", client ? ",\"client\":" : "",
                 client ? client : "", token ? ",\"token\":" : "", token ? token : "");
        send_text(m);
    }
    free(m);
    free(client);
    free(token);
}

static void send_request(const char *type)
{
    char *room = json_str(g.o->room);
    char m[600];
    snprintf(m, sizeof m, "{\"type\":\"%s\",\"id\":1,\"room\":%s}", type, room ? room : "\"\"");
    free(room);
    send_text(m);
}

static void send_action(uint64_t n, uint64_t base)
{
    const struct opts *o = g.o;
    char *room = json_str(o->room), *type = json_str(o->action_type);
    size_t cap = strlen(o->payload) + 800;
    char *m = malloc(cap);
    if (m && room && type) {
        int k = snprintf(m, cap, "{\"type\":\"action\",\"id\":2,\"room\":%s,\"n\":%llu,\"base\":%llu",
                         room, (unsigned long long)n, (unsigned long long)base);
        if (o->has_dep)
            k += snprintf(m + k, cap - (size_t)k, ",\"dep\":%llu", (unsigned long long)o->dep);
        if (o->strict)
            k += snprintf(m + k, cap - (size_t)k, ",\"strict\":true");
        snprintf(m + k, cap - (size_t)k, ",\"action\":{\"type\":%s,\"payload\":%s}}", type,
                 o->payload);
        send_text(m);
    } else {
        fprintf(stderr, "movexctl: out of memory\n");
        finish(3);
    }
    free(m);
    free(room);
    free(type);
}

/* A field that must be an integer in [0, 2^53-1]; anything else (a hostile
 * or broken server: 1e300, -1, 2.5) is 0, never an out-of-range cast. */
static uint64_t num_field(const json_t *m, const char *name)
{
    const json_t *v = json_object_get(m, name);
    double d = json_is_number(v) ? json_number_value(v) : 0;
    return d > 0 && d <= 9007199254740991.0 && d == (double)(uint64_t)d ? (uint64_t)d : 0;
}

static const char *str_field(const json_t *m, const char *name)
{
    const char *s = json_string_value(json_object_get(m, name));
    return s ? s : "(none)";
}

static void server_error(const json_t *m)
{
    fprintf(stderr, "movexctl: %s: %s\n", str_field(m, "code"), str_field(m, "message"));
}

/* One complete message from the server. */
static void on_message(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *m = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, &jerr);
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!type) {
        fprintf(stderr, "movexctl: the server sent something that is not a message\n");
        json_decref(m);
        finish(3);
        return;
    }
    uint64_t id = num_field(m, "id");
    int has_id = json_object_get(m, "id") != NULL;
    const struct opts *o = g.o;
    if (!strcmp(type, "error")) {
        server_error(m);
        if (o->cmd == CMD_WATCH && !has_id)
            print_line(text, len); /* the room was deleted: watchers see it too */
        finish(1);
    } else if (!strcmp(type, "welcome")) {
        g.welcomed = 1;
        send_request(o->cmd == CMD_GET ? "get" : "subscribe");
    } else if (has_id && id == 1 && (!strcmp(type, "snapshot") || !strcmp(type, "actions"))) {
        switch (o->cmd) {
        case CMD_GET:
            print_line(text, len);
            finish(0);
            break;
        case CMD_WATCH:
            print_line(text, len);
            if (o->count && g.pushes >= o->count)
                finish(0);
            break;
        case CMD_PRESENCE: {
            const json_t *p = json_object_get(m, "presence");
            char *s = json_dumps(p ? p : json_array(), JSON_COMPACT | JSON_ENCODE_ANY);
            if (s)
                print_line(s, strlen(s));
            free(s);
            finish(0);
            break;
        }
        case CMD_DISPATCH:
            if (!o->n && !num_field(m, "next_n")) {
                fprintf(stderr, "movexctl: the server's reply has no valid next_n "
                                "(a positive integer up to 2^53-1); give --n\n");
                finish(3);
                break;
            }
            send_action(o->n ? o->n : num_field(m, "next_n"), num_field(m, "seq"));
            break;
        }
    } else if (has_id && id == 2 && (!strcmp(type, "ack") || !strcmp(type, "reject"))) {
        print_line(text, len);
        finish(!strcmp(type, "ack") ? 0 : 1);
    } else if (o->cmd == CMD_WATCH && (!strcmp(type, "fwd") || !strcmp(type, "presence"))) {
        print_line(text, len);
        if (o->count && ++g.pushes >= o->count)
            finish(0);
    }
    json_decref(m);
}

static int ws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len)
{
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[256];
        snprintf(why, sizeof why, "%.*s", in && len ? (int)(len < 255 ? len : 255) : 0,
                 in ? (const char *)in : "");
        fprintf(stderr, "movexctl: cannot connect to %s: %s\n", g.o->url,
                why[0] ? why : "connection failed");
        /* OpenSSL's reason for an untrusted certificate reads as
         * "SSL err 1: error:00000001:lib(0)::reason(1)": say what it
         * most likely is and the two ways past it */
        if (strstr(why, "SSL") && !g.o->insecure)
            fprintf(
                stderr,
                "movexctl: the TLS handshake failed: if the server's certificate is self-signed or "
                "from a CA this machine does not trust, give SSL_CERT_FILE=CA.pem (or --insecure, "
                "for testing only)\n");
        g.wsi = NULL;
        finish(3);
        break;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        send_hello();
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        /* bounded: a server streaming one endless message must not take
         * all of the machine's memory */
        if (len > g.o->max_message || g.rxlen > g.o->max_message - len) {
            fprintf(stderr,
                    "movexctl: a message from the server is larger than --max-message (%llu bytes); "
                    "give a larger --max-message if it is expected\n",
                    (unsigned long long)g.o->max_message);
            finish(3);
            return -1;
        }
        if (g.rxlen + len + 1 > g.rxcap) {
            size_t ncap = (g.rxlen + len + 1) * 2;
            if (ncap > g.o->max_message + 1)
                ncap = (size_t)g.o->max_message + 1;
            char *n = realloc(g.rx, ncap);
            if (!n) {
                fprintf(stderr, "movexctl: out of memory\n");
                finish(3);
                return -1;
            }
            g.rx = n;
            g.rxcap = ncap;
        }
        memcpy(g.rx + g.rxlen, in, len);
        g.rxlen += len;
        if (lws_is_final_fragment(wsi)) {
            size_t n = g.rxlen;
            g.rxlen = 0;
            if (!g.done)
                on_message(g.rx, n);
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (g.nq) {
            struct outmsg m = g.q[0];
            memmove(g.q, g.q + 1, (g.nq - 1) * sizeof g.q[0]);
            g.nq--;
            int w = lws_write(wsi, m.buf + LWS_PRE, m.len, LWS_WRITE_TEXT);
            free(m.buf);
            if (w < (int)m.len) {
                fprintf(stderr, "movexctl: write failed\n");
                finish(3);
                return -1;
            }
            if (g.nq)
                lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (!g.done) {
            const unsigned char *p = in;
            unsigned code = len >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005;
            fprintf(stderr, "movexctl: the server closed the connection: %u %.*s\n", code,
                    len > 2 ? (int)(len - 2) : 0, len > 2 ? (const char *)p + 2 : "");
            finish(code == 1000 && g.o->cmd == CMD_WATCH ? 0 : 3);
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!g.done) {
            fprintf(stderr, "movexctl: the connection closed\n");
            finish(3);
        }
        g.wsi = NULL;
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"movex.v1", ws_cb, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_timeout(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    fprintf(stderr, "movexctl: no answer within %d s\n", g.o->timeout_s);
    finish(3);
}

/* The token's bytes from --token or --token-file (surrounding whitespace and
 * the trailing newline dropped, as the admin token file is read). */
static char *load_token(const struct opts *o)
{
    if (o->token)
        return strdup(o->token);
    if (!o->token_file)
        return NULL;
    unsigned char buf[9000];
    long n = mx_jwt_read_key_file(o->token_file, buf, sizeof buf - 1);
    if (n < 0) {
        fprintf(stderr, "movexctl: %s: %s\n", o->token_file,
                n == -2 ? "too large for a token" : strerror(errno));
        exit(2);
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    return strdup((const char *)buf);
}

static int run_client(const struct opts *o)
{
    g.o = o;
    g.token = load_token(o);
    char url[2048];
    snprintf(url, sizeof url, "%s", o->url);
    const char *prot, *ads, *path;
    int port;
    if (lws_parse_uri(url, &prot, &ads, &port, &path) ||
        (strcmp(prot, "ws") && strcmp(prot, "wss"))) {
        fprintf(stderr, "movexctl: --url must be ws://HOST:PORT/ws or wss://...\n");
        return 2;
    }
    char fullpath[1100];
    snprintf(fullpath, sizeof fullpath, "/%s", path);

    lws_set_log_level(getenv("MOVEXCTL_DEBUG") ? LLL_ERR | LLL_WARN | LLL_NOTICE : 0, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    /* TLS set-up loads the system's CA bundle: only for wss:// */
    info.options = strcmp(prot, "wss") ? 0 : LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    g.ctx = lws_create_context(&info);
    if (!g.ctx) {
        fprintf(stderr, "movexctl: cannot create the libwebsockets context\n");
        return 3;
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = g.ctx;
    ci.address = ads;
    ci.port = port;
    ci.path = fullpath;
    ci.host = ads;
    ci.origin = NULL; /* not a browser: no Origin header */
    ci.protocol = "movex.v1";
    ci.alpn = "http/1.1";
    if (!strcmp(prot, "wss"))
        ci.ssl_connection = LCCSCF_USE_SSL | (o->insecure ? LCCSCF_ALLOW_SELFSIGNED |
                                                                LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK
                                                          : 0);
    ci.pwsi = &g.wsi;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (!lws_client_connect_via_info(&ci) && !g.done) {
        fprintf(stderr, "movexctl: cannot connect to %s\n", o->url);
        finish(3);
    }
    if (o->cmd != CMD_WATCH || o->count)
        lws_sul_schedule(g.ctx, 0, &g.timeout, on_timeout,
                         (lws_usec_t)o->timeout_s * LWS_US_PER_SEC);
    while (!g.done && !interrupted)
        if (lws_service(g.ctx, 0) < 0)
            break;
    if (interrupted && !g.done)
        finish(o->cmd == CMD_WATCH ? 0 : 3);
    lws_sul_schedule(g.ctx, 0, &g.timeout, NULL, LWS_SET_TIMER_USEC_CANCEL);
    lws_context_destroy(g.ctx);
    for (size_t i = 0; i < g.nq; i++)
        free(g.q[i].buf);
    free(g.rx);
    free(g.token);
    return g.done ? g.rc : 3;
}

/* ---- token ---- */

static int add_grants(json_t *grants, const char *spec)
{
    char *copy = strdup(spec), *save = NULL;
    int rc = 0;
    for (char *g1 = strtok_r(copy, ";", &save); g1 && !rc; g1 = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(g1, '=');
        if (!eq || eq == g1) {
            rc = -1;
            break;
        }
        *eq = '\0';
        json_t *rights = json_array();
        char *rs = NULL;
        for (char *r = strtok_r(eq + 1, ",", &rs); r; r = strtok_r(NULL, ",", &rs)) {
            if (strcmp(r, "read") && strcmp(r, "write") && strcmp(r, "create"))
                rc = -1;
            json_array_append_new(rights, json_string(r));
        }
        if (!json_array_size(rights))
            rc = -1;
        json_array_append_new(grants, json_pack("{s:s,s:o}", "match", g1, "rights", rights));
    }
    free(copy);
    return rc;
}

static int cmd_token(int argc, char **argv)
{
    const char *conf = NULL, *secret_file = NULL, *priv_file = NULL, *sub = NULL;
    long long exp_in = 3600;
    int no_exp = 0;
    json_t *grants = json_array();
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = 1;
        if ((!strcmp(a, "-c") || !strcmp(a, "--conf")) && v)
            conf = v;
        else if (!strcmp(a, "--hs256-secret-file") && v)
            secret_file = v;
        else if (!strcmp(a, "--ed25519-private-key-file") && v)
            priv_file = v;
        else if (!strcmp(a, "--sub") && v)
            sub = v;
        else if (!strcmp(a, "--rooms") && v) {
            if (add_grants(grants, v)) {
                fprintf(stderr, "movexctl: --rooms PATTERN=RIGHT[,RIGHT...][;...] with RIGHT "
                                "read|write|create\n");
                json_decref(grants);
                return 2;
            }
        } else if (!strcmp(a, "--exp-in") && v)
            exp_in = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--no-exp"))
            takes_value = 0, no_exp = 1;
        else {
            fprintf(stderr, "movexctl token: unknown or incomplete option %s\n", a);
            json_decref(grants);
            return 2;
        }
        i += takes_value;
    }
    if (!sub || !mx_proto_client_ok(sub, strlen(sub))) {
        fprintf(stderr, "movexctl token: --sub ID is required (1..128 of A-Z a-z 0-9 _ . : @ -)\n");
        json_decref(grants);
        return 2;
    }
    struct mx_config cfg;
    char err[1200];
    mx_config_defaults(&cfg);
    if (conf && mx_config_load(&cfg, conf, err, sizeof err)) {
        fprintf(stderr, "movexctl: %s\n", err);
        mx_config_free(&cfg);
        json_decref(grants);
        return 1;
    }
    if (!secret_file && cfg.auth_hs256_secret_file[0] && !priv_file)
        secret_file = cfg.auth_hs256_secret_file;
    if (!secret_file && !priv_file) {
        fprintf(stderr, "movexctl token: give --hs256-secret-file, --ed25519-private-key-file, or "
                        "-c CONF with auth_hs256_secret_file\n");
        mx_config_free(&cfg);
        json_decref(grants);
        return 2;
    }
    struct mx_jwt_keys keys;
    unsigned char sk[64];
    int rc = 0;
    if (priv_file)
        rc = mx_jwt_load_ed25519_private(priv_file, sk, err, sizeof err);
    else
        rc = mx_jwt_load_keys(&keys, secret_file, NULL, err, sizeof err);
    if (rc) {
        fprintf(stderr, "movexctl: %s\n", err);
        mx_config_free(&cfg);
        json_decref(grants);
        return 1;
    }
    json_t *claims = json_pack("{s:s}", "sub", sub);
    if (!no_exp)
        json_object_set_new(claims, "exp", json_integer((json_int_t)time(NULL) + exp_in));
    if (cfg.auth_issuer[0])
        json_object_set_new(claims, "iss", json_string(cfg.auth_issuer));
    if (cfg.auth_audience[0])
        json_object_set_new(claims, "aud", json_string(cfg.auth_audience));
    json_object_set_new(claims, "movex", json_pack("{s:o}", "rooms", grants));
    char *text = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    char *tok = NULL;
    rc = text ? mx_jwt_sign(text, strlen(text), keys.hs256, priv_file ? 0 : keys.hs256_len,
                            priv_file ? sk : NULL, &tok)
              : -1;
    free(text);
    sodium_memzero(sk, sizeof sk);
    if (!priv_file)
        sodium_memzero(&keys, sizeof keys);
    /* With a conf, check the token the way the daemon will: an EdDSA key
     * that is not the pair of auth_ed25519_public_key_file is caught here. */
    if (!rc && conf && cfg.auth == MX_AUTH_JWT) {
        struct mx_jwt_keys ck;
        struct mx_token t;
        char why[120];
        if (mx_jwt_load_keys(&ck, cfg.auth_hs256_secret_file[0] ? cfg.auth_hs256_secret_file : NULL,
                             cfg.auth_ed25519_public_key_file[0] ? cfg.auth_ed25519_public_key_file
                                                                 : NULL,
                             err, sizeof err) == 0) {
            mx_jwt_set_claims(&ck, cfg.auth_issuer, cfg.auth_audience);
            if (mx_jwt_verify(tok, strlen(tok), &ck, (int64_t)time(NULL), 0, &t, why, sizeof why)) {
                fprintf(stderr, "movexctl: %s would refuse this token: %s\n", conf, why);
                rc = 1;
            } else {
                mx_token_free(&t);
            }
            sodium_memzero(&ck, sizeof ck);
        }
    }
    mx_config_free(&cfg);
    if (rc) {
        free(tok);
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

/* ---- argv ---- */

static void usage(FILE *f)
{
    fputs("usage: movexctl [OPTIONS] COMMAND ...\n"
          "  watch ROOM                 snapshot, then every fwd and presence change (JSON lines)\n"
          "  get ROOM                   the room's snapshot\n"
          "  dispatch ROOM PAYLOAD      apply an action (default type patch; n from next_n)\n"
          "  presence ROOM              who is in the room (JSON array)\n"
          "  token --sub ID [...]       mint a development token (HS256 or EdDSA)\n"
          "  check-data DIR             verify a data directory offline (read-only)\n"
          "options: --url URL (default ws://127.0.0.1:8080/ws), --token JWT, --token-file FILE,\n"
          "  --client ID, --timeout SECONDS (10), --count N (watch), --type T, --n N, --dep N,\n"
          "  --strict (dispatch), --insecure (wss without certificate checks),\n"
          "  --max-message SIZE (64m: the largest message accepted from the server), --help, --version\n"
          "See man movexctl.\n",
          f);
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !*s || *end || *s == '-')
        return -1;
    *out = v;
    return 0;
}

/* SIZE: bytes, or with a k, m or g suffix (binary units, as in the conf). */
static int parse_size(const char *s, uint64_t *out)
{
    char num[32];
    size_t n = strlen(s);
    uint64_t mul = 1;
    if (n && strchr("kKmMgG", s[n - 1])) {
        char c = (char)(s[n - 1] | 0x20);
        mul = c == 'k' ? 1024 : c == 'm' ? 1024 * 1024 : (uint64_t)1024 * 1024 * 1024;
        n--;
    }
    if (!n || n >= sizeof num)
        return -1;
    memcpy(num, s, n);
    num[n] = '\0';
    uint64_t v;
    if (parse_u64(num, &v) || v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {.url = "ws://127.0.0.1:8080/ws", .timeout_s = 10, .action_type = "patch",
                     .max_message = MAX_MESSAGE_DEFAULT};
    const char *env = getenv("MOVEX_URL");
    if (env && *env)
        o.url = env;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("movexctl %s\n", MOVEXD_VERSION);
            return 0;
        } else if (!strcmp(a, "--insecure")) {
            o.insecure = 1;
            continue;
        } else if (!strcmp(a, "--strict")) {
            o.strict = 1;
            continue;
        } else if (!v) {
            break;
        } else if (!strcmp(a, "--url")) {
            o.url = v;
        } else if (!strcmp(a, "--token")) {
            o.token = v;
        } else if (!strcmp(a, "--token-file")) {
            o.token_file = v;
        } else if (!strcmp(a, "--client")) {
            o.client = v;
        } else if (!strcmp(a, "--type")) {
            o.action_type = v;
        } else if (!strcmp(a, "--timeout") && !parse_u64(v, &u) && u > 0 && u < 86400) {
            o.timeout_s = (int)u;
        } else if (!strcmp(a, "--count") && !parse_u64(v, &u) && u < 1000000000) {
            o.count = (long)u;
        } else if (!strcmp(a, "--n") && !parse_u64(v, &u) && u > 0) {
            o.n = u;
        } else if (!strcmp(a, "--max-message") && !parse_size(v, &u) && u >= 1024 &&
                   u <= ((uint64_t)4 << 30)) {
            o.max_message = u;
        } else if (!strcmp(a, "--dep") && !parse_u64(v, &u) && u > 0) {
            o.dep = u;
            o.has_dep = 1;
        } else {
            break;
        }
        i++;
    }
    if (i < argc && argv[i][0] == '-') {
        fprintf(stderr, "movexctl: unknown or incomplete option %s\n", argv[i]);
        usage(stderr);
        return 2;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[i++];
    int rest = argc - i;
    if (!strcmp(c, "token"))
        return cmd_token(rest, argv + i);
    if (!strcmp(c, "check-data")) {
        if (rest != 1) {
            fprintf(stderr, "usage: movexctl check-data DIR\n");
            return 2;
        }
        return mx_ctl_check_data(argv[i]);
    }
    if (!strcmp(c, "watch") && rest == 1)
        o.cmd = CMD_WATCH;
    else if (!strcmp(c, "get") && rest == 1)
        o.cmd = CMD_GET;
    else if (!strcmp(c, "presence") && rest == 1)
        o.cmd = CMD_PRESENCE;
    else if (!strcmp(c, "dispatch") && rest == 2)
        o.cmd = CMD_DISPATCH;
    else {
        fprintf(stderr, "movexctl: unknown command or wrong arguments: %s\n", c);
        usage(stderr);
        return 2;
    }
    o.room = argv[i];
    if (!mx_proto_room_type_len(o.room, strlen(o.room))) {
        fprintf(stderr, "movexctl: invalid room id %s\n", o.room);
        return 2;
    }
    if (o.cmd == CMD_DISPATCH) {
        o.payload = argv[i + 1];
        json_error_t jerr;
        json_t *p = json_loads(o.payload, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL |
                                              JSON_REJECT_DUPLICATES, &jerr);
        if (!p) {
            fprintf(stderr, "movexctl: PAYLOAD is not JSON: %s (column %d)\n", jerr.text,
                    jerr.column);
            return 2;
        }
        int ok = strcmp(o.action_type, "patch") || json_is_array(p);
        json_decref(p);
        if (!ok) {
            fprintf(stderr, "movexctl: a patch PAYLOAD is a JSON Patch array, e.g. "
                            "'[{\"op\":\"inc\",\"path\":\"/n\",\"value\":1}]'\n");
            return 2;
        }
        if (o.has_dep && o.n && o.dep >= o.n) {
            fprintf(stderr, "movexctl: --dep must be below --n\n");
            return 2;
        }
    }
    if (o.token && o.token_file) {
        fprintf(stderr, "movexctl: give --token or --token-file, not both\n");
        return 2;
    }
    return run_client(&o);
}
