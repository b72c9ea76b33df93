/* main.c - command line, configuration, signals, reload and exit codes.
 *
 *   movexd -c FILE            run with FILE
 *   movexd -t -c FILE         check FILE and exit 0 (ok) or 1 (error)
 *   --listen ADDR:PORT, --data-dir DIR, --log-level LEVEL override the conf
 *
 * Signals only set flags (the loop acts on them): SIGINT/SIGTERM stop,
 * SIGHUP re-reads the conf, keys and certificates. A conf that fails to
 * load on reload is refused with a logged reason and the running one stays.
 *
 * Exit codes: 0 clean stop, 1 bad configuration or usage, 2 start-up
 * failure (cannot listen, storage cannot recover), 3 fatal runtime error
 * (durability can no longer be guaranteed).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <libwebsockets.h>
#include <sodium.h>

#include "movexd/admin.h"
#include "movexd/cluster_journal_file.h"
#include "movexd/cluster_node.h"
#include "movexd/cluster_presence.h"
#include "movexd/config.h"
#include "movexd/dircheck.h"
#include "movexd/evloop.h"
#include "movexd/engine.h"
#include "movexd/jwt.h"
#include "movexd/listen.h"
#include "movexd/log.h"
#include "movexd/reducer.h"
#include "movexd/server.h"
#include "movexd/storage.h"
#include "movexd/tls.h"
#include "movexd/version.h"

static struct mx_server server;
static struct mx_config cfg; /* the running configuration; everything points here */
static mx_engine *engine;

/* command line */
static const char *conf_path, *opt_listen, *opt_data_dir, *opt_log_level;

static void on_stop(int sig)
{
    (void)sig;
    server.stop = 1;
    mx_server_wake(&server);
}

static void on_hup(int sig)
{
    (void)sig;
    server.reload = 1;
    mx_server_wake(&server);
}

/* Descriptors. Every connection is a descriptor; so are the WAL segment,
 * the data directory, its lock, snapshot files being written, the log, the
 * listeners and the loop's own. At start the soft RLIMIT_NOFILE is raised
 * toward the hard limit to fit max_connections plus what the daemon holds
 * plus MX_FD_MARGIN; if the hard limit is too low, max_connections is
 * lowered to what fits, with a warning, rather than refusing to start:
 * a conf written for a big server (the default is 10000) still runs on a
 * small one, and the warning names both numbers and the fix. Fewer than
 * one connection's worth refuses the start (exit 2). A reload re-applies
 * the limit to the new max_connections (the soft limit is raised at start
 * only: libwebsockets sizes its table then). */
#define MX_FD_MARGIN 32
static long own_fds = -1; /* descriptors open before serving */

static long count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 16; /* no /proc: a guess of what the daemon holds */
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* 0, or -1 when not even one connection fits. */
static int fit_descriptors(struct mx_config *c, int raise)
{
    struct rlimit rl;
    if (own_fds < 0)
        own_fds = count_open_fds();
    if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY)
        return 0;
    rlim_t need = (rlim_t)own_fds + MX_FD_MARGIN + c->max_connections;
    if (raise && rl.rlim_cur < need) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0) {
            mx_info("event=nofile_raised from=%llu to=%llu", (unsigned long long)rl.rlim_cur,
                    (unsigned long long)up.rlim_cur);
            rl.rlim_cur = up.rlim_cur;
        }
    }
    if (rl.rlim_cur >= need)
        return 0;
    long fit = (long)rl.rlim_cur - own_fds - MX_FD_MARGIN;
    if (fit < 1) {
        mx_err("event=start_failed reason=\"too few descriptors: RLIMIT_NOFILE %llu (hard %llu) leaves "
               "none for connections after the %ld the daemon needs; raise LimitNOFILE= or ulimit -n\"",
               (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, own_fds + MX_FD_MARGIN);
        return -1;
    }
    mx_warn("event=max_connections_lowered configured=%zu effective=%ld nofile=%llu nofile_hard=%llu "
            "reason=\"the descriptor limit does not fit max_connections; raise LimitNOFILE= (systemd) "
            "or ulimit -n to at least %llu\"",
            c->max_connections, fit, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
            (unsigned long long)need);
    c->max_connections = (size_t)fit;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: movexd [-c FILE] [-t] [options]\n"
            "  -c, --config FILE      configuration file (default: built-in defaults)\n"
            "  -t, --test-config      check the configuration and exit (0 ok, 1 error)\n"
            "      --listen ADDR:PORT listen address, overrides `listen` (port 0: any free port)\n"
            "      --data-dir DIR     data directory, overrides `data_dir`\n"
            "      --log-level LEVEL  error|warn|info|debug, overrides `log_level`\n"
            "  -h, --help             this text\n"
            "  -V, --version          print the version\n"
            "signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads the configuration\n");
}

/* Defaults, then the conf file, then the command line. 0, or -1 with err. */
static int load_config(struct mx_config *c, char *err, size_t errlen)
{
    mx_config_defaults(c);
    if (conf_path && mx_config_load(c, conf_path, err, errlen))
        return -1;
    if (opt_listen && mx_config_set_listen(c, opt_listen)) {
        snprintf(err, errlen, "--listen: expected ADDR:PORT, got '%s'", opt_listen);
        return -1;
    }
    if (opt_data_dir)
        snprintf(c->data_dir, sizeof(c->data_dir), "%s", opt_data_dir);
    if (opt_log_level && mx_config_parse_log_level(opt_log_level, &c->log_level)) {
        snprintf(err, errlen, "--log-level: expected error|warn|info|debug, got '%s'", opt_log_level);
        return -1;
    }
    /* the environment wins over the conf, as the command line does (a
     * systemd drop-in can switch the loop without editing the conf) */
    const char *evlib = getenv("MOVEXD_EVLIB");
    if (evlib && evlib[0] && mx_config_parse_event_loop(evlib, &c->event_loop)) {
        snprintf(err, errlen, "MOVEXD_EVLIB: expected auto|uv|poll, got '%.100s'", evlib);
        return -1;
    }
    /* every lua:PATH reducer must compile and load (FILE:LINE otherwise):
     * at start, for -t, and before a reload is accepted */
    return mx_reducers_check(c, err, errlen);
}

/* "FILE:LINE: " of the conf line that sets key, for messages about a value
 * that parsed but cannot be used ("" without a conf file or such a line). */
static const char *conf_where(const char *key, char *buf, size_t n)
{
    int line = mx_config_key_line(conf_path, key);
    if (line > 0)
        snprintf(buf, n, "%s:%d: ", conf_path, line);
    else
        buf[0] = '\0';
    return buf;
}

/* Prefix err with the conf line of key. */
static void at_key(const char *key, char *err, size_t errlen)
{
    char where[1100], msg[2048];
    snprintf(msg, sizeof msg, "%s", err);
    snprintf(err, errlen, "%s%s", conf_where(key, where, sizeof where), msg);
}

/* Each configured TLS file exists and is readable (movexd -t finds a typo
 * in a path before a restart does). 0, or -1 with "FILE:LINE: ..." in err. */
static int check_tls_files(const struct mx_config *c, char *err, size_t errlen)
{
    const char *keys[] = {"tls_cert_file", "tls_key_file", "tls_chain_file"};
    const char *paths[] = {c->tls_cert_file, c->tls_key_file, c->tls_chain_file};
    for (int i = 0; i < 3; i++) {
        if (!paths[i][0])
            continue;
        FILE *f = fopen(paths[i], "rb");
        int e = f ? 0 : errno;
        if (f) {
            (void)getc(f); /* a directory opens, and fails here with EISDIR */
            if (ferror(f))
                e = errno ? errno : EIO;
            fclose(f);
        }
        if (e) {
            snprintf(err, errlen, "%s %s: %s", keys[i], paths[i], strerror(e));
            at_key(keys[i], err, errlen);
            return -1;
        }
    }
    if (c->tls_cert_file[0] && !c->tls_key_file[0]) {
        snprintf(err, errlen, "tls_cert_file is set but tls_key_file is not: TLS needs the private key");
        at_key("tls_cert_file", err, errlen);
        return -1;
    }
    return 0;
}

/* The loop `event_loop` (or MOVEXD_EVLIB) asks for, if it can run here:
 * MX_LOOP_UV or MX_LOOP_POLL, or -1 with "FILE:LINE: ..." in err. The
 * key's line is named only when the conf chose; else the variable did. */
static int choose_loop(char *err, size_t errlen)
{
    int loop = mx_evloop_choose(cfg.event_loop, err, errlen);
    const char *evlib = getenv("MOVEXD_EVLIB");
    if (loop < 0 && !(evlib && evlib[0]))
        at_key("event_loop", err, errlen);
    return loop;
}

/* movexd -t's line about the loop: which one start-up would run, and what
 * chose it (the conf key or MOVEXD_EVLIB; auto: whether the plugin loads). */
static void print_loop(int loop)
{
    static const char *const want[] = { "auto", "uv", "poll" }; /* enum mx_event_loop */
    const char *evlib = getenv("MOVEXD_EVLIB");
    const char *by = evlib && evlib[0] ? "MOVEXD_EVLIB" : "event_loop";
    const char *why = cfg.event_loop != MX_LOOP_AUTO ? ""
                      : loop == MX_LOOP_UV           ? ": the libuv plugin of libwebsockets loads"
                                                     : ": the libuv plugin of libwebsockets cannot be loaded "
                                                       "(evlib_fallback above)";
    printf("movexd: event loop %s (%s %s%s)\n", loop == MX_LOOP_UV ? "uv" : "poll", by,
           want[cfg.event_loop], why);
}

/* Token keys for c (auth jwt). 0, or -1 with err. */
static int load_keys(const struct mx_config *c, struct mx_jwt_keys *keys, char *err, size_t errlen)
{
    memset(keys, 0, sizeof(*keys));
    if (c->auth != MX_AUTH_JWT)
        return 0;
    if (!c->auth_hs256_secret_file[0] && !c->auth_ed25519_public_key_file[0]) {
        snprintf(err, errlen, "auth jwt needs auth_hs256_secret_file or auth_ed25519_public_key_file");
        at_key("auth", err, errlen);
        return -1;
    }
    /* one file at a time, so the message names the conf line of the bad one */
    if (c->auth_hs256_secret_file[0] &&
        mx_jwt_load_keys(keys, c->auth_hs256_secret_file, NULL, err, errlen)) {
        at_key("auth_hs256_secret_file", err, errlen);
        return -1;
    }
    if (mx_jwt_load_keys(keys, c->auth_hs256_secret_file[0] ? c->auth_hs256_secret_file : NULL,
                         c->auth_ed25519_public_key_file[0] ? c->auth_ed25519_public_key_file : NULL,
                         err, errlen)) {
        at_key("auth_ed25519_public_key_file", err, errlen);
        return -1;
    }
    /* the iss/aud tokens must carry travel with the keys, so a reload
     * swaps them together */
    if (mx_jwt_set_claims(keys, c->auth_issuer, c->auth_audience)) {
        snprintf(err, errlen, "auth_issuer/auth_audience: longer than %d bytes", MX_JWT_CLAIM_MAX);
        return -1;
    }
    return 0;
}

/* Settings bound to what was set up at start (the listening socket, the
 * data directory, the TLS context, the meaning of existing connections):
 * a reload keeps the running values and says a restart is needed. */
static void keep_fixed(struct mx_config *next, const struct mx_config *cur)
{
#define KEEP_STR(f)                                                            \
    if (strcmp(next->f, cur->f)) {                                             \
        mx_warn("event=reload_ignored key=" #f " note=\"needs a restart\"");   \
        memcpy(next->f, cur->f, sizeof(next->f));                              \
    }
#define KEEP_VAL(f)                                                            \
    if (next->f != cur->f) {                                                   \
        mx_warn("event=reload_ignored key=" #f " note=\"needs a restart\"");   \
        next->f = cur->f;                                                      \
    }
    /* one conf key, `listen`, sets both fields */
    if (strcmp(next->listen_addr, cur->listen_addr) || next->listen_port != cur->listen_port) {
        mx_warn("event=reload_ignored key=listen note=\"needs a restart\"");
        memcpy(next->listen_addr, cur->listen_addr, sizeof(next->listen_addr));
        next->listen_port = cur->listen_port;
    }
    KEEP_STR(data_dir)
    KEEP_VAL(fsync)
    KEEP_VAL(event_loop)
    KEEP_VAL(wal_segment_bytes)
    KEEP_VAL(auth)
    KEEP_STR(tls_cert_file)
    KEEP_STR(tls_key_file)
    KEEP_STR(tls_chain_file)
    KEEP_VAL(dedup_window)
    /* the storage mode and this node's identity in Redis are chosen at start */
    if (memcmp(&next->cluster, &cur->cluster, sizeof(next->cluster))) {
        mx_warn("event=reload_ignored key=cluster note=\"needs a restart\"");
        next->cluster = cur->cluster;
    }
#undef KEEP_STR
#undef KEEP_VAL
}

/* Log to path from now on (stderr when empty); on failure the previous
 * target stays and says so. */
static void reopen_log(const char *path)
{
    if (mx_log_open(path)) {
        int e = errno;
        mx_err("event=log_file_failed file=%s error=\"%s\" note=\"logging to the previous "
               "target\"",
               path, strerror(e));
    }
}

static void reload(struct mx_server *s)
{
    static struct mx_config next;
    char err[2048];
    struct mx_jwt_keys keys;
    /* reopen the log first (logrotate has moved the old file away and sent
     * SIGHUP), so that no line of this reload lands in the rotated file,
     * also when the new conf is refused */
    reopen_log(cfg.log_file);
    mx_info("event=reload config=%s", conf_path ? conf_path : "(defaults)");
    if (load_config(&next, err, sizeof(err)) || load_keys(&next, &keys, err, sizeof(err))) {
        mx_err("event=reload_refused reason=\"%s\" note=\"the running configuration stays\"", err);
        mx_config_free(&next);
        return;
    }
    keep_fixed(&next, &cfg);
    /* fitted before the comparison: the running max_connections is the
     * fitted one, so an unchanged conf under an unchanged limit is no change */
    if (fit_descriptors(&next, 0))
        next.max_connections = 1;
    char changed[1024];
    mx_config_diff(&cfg, &next, changed, sizeof changed);
    int log_moved = strcmp(next.log_file, cfg.log_file) != 0;
    mx_config_free(&cfg);
    cfg = next; /* the engine, server and storage read cfg through pointers */
    memset(&next, 0, sizeof(next));
    mx_log_set_level(cfg.log_level);
    if (log_moved)
        reopen_log(cfg.log_file);
    mx_engine_set_keys(engine, &keys);
    sodium_memzero(&keys, sizeof(keys));
    mx_engine_config_changed(engine);
    if (mx_admin_load_token(s, &cfg, err, sizeof(err)))
        mx_err("event=reload_admin_token_failed reason=\"%s\" note=\"admin API disabled\"", err);
    mx_tls_reload(s);
    mx_info("event=reloaded config=%s changed=%s", conf_path ? conf_path : "(defaults)",
            changed[0] ? changed : "none");
}

/* The start line names where the primary is found: the one Redis, or the
 * Sentinels and the primary's name (the Redis address is empty then). */
static void log_cluster_start(const struct mx_cluster_config *cc)
{
    if (!cc->nsentinels) {
        mx_info("event=cluster node=%s redis=%s:%d", cc->node_id, cc->redis.host, cc->redis.port);
        return;
    }
    char list[MX_CLUSTER_SENTINELS_MAX * 270] = "";
    size_t w = 0;
    for (size_t i = 0; i < cc->nsentinels && w < sizeof(list); i++) {
        const struct mx_endpoint *ep = &cc->sentinels[i];
        int v6 = strchr(ep->host, ':') != NULL;
        w += (size_t)snprintf(list + w, sizeof(list) - w, "%s%s%s%s:%d", i ? "," : "", v6 ? "[" : "",
                              ep->host, v6 ? "]" : "", ep->port);
    }
    mx_info("event=cluster node=%s sentinels=%s master_name=%s", cc->node_id, list, cc->master_name);
}

int main(int argc, char **argv)
{
    enum { OPT_LISTEN = 256, OPT_DATA_DIR, OPT_LOG_LEVEL };
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},   {"test-config", no_argument, 0, 't'},
        {"listen", required_argument, 0, OPT_LISTEN}, {"data-dir", required_argument, 0, OPT_DATA_DIR},
        {"log-level", required_argument, 0, OPT_LOG_LEVEL}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {0, 0, 0, 0},
    };
    int test_only = 0, ch;
    while ((ch = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': conf_path = optarg; break;
        case 't': test_only = 1; break;
        case OPT_LISTEN: opt_listen = optarg; break;
        case OPT_DATA_DIR: opt_data_dir = optarg; break;
        case OPT_LOG_LEVEL: opt_log_level = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("movexd %s\n", MOVEXD_VERSION); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "movexd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 1;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "movexd: libsodium failed to initialise\n");
        return 2;
    }

    char err[2048];
    struct mx_jwt_keys keys;
    if (load_config(&cfg, err, sizeof(err)) || load_keys(&cfg, &keys, err, sizeof(err))) {
        fprintf(stderr, "movexd: %s\n", err);
        mx_config_free(&cfg);
        return 1;
    }
    if (cfg.auth == MX_AUTH_NONE && !mx_server_listen_is_loopback(&cfg) && !cfg.allow_insecure_listen) {
        char where[1100];
        fprintf(stderr,
                "movexd: %srefusing to listen on %s with auth none: anyone who can reach the port could "
                "read and write every room. Set `auth jwt` (docs/SECURITY.md), or "
                "`allow_insecure_listen yes` if you really mean it.\n",
                conf_where("listen", where, sizeof where), cfg.listen_addr[0] ? cfg.listen_addr : "every address");
        mx_config_free(&cfg);
        return 1;
    }
    if (check_tls_files(&cfg, err, sizeof(err))) {
        fprintf(stderr, "movexd: %s\n", err);
        mx_config_free(&cfg);
        return 1;
    }
    {
        /* checked before anything listens, and by -t */
        static struct mx_server probe;
        if (mx_admin_load_token(&probe, &cfg, err, sizeof(err))) {
            at_key("admin_token_file", err, sizeof(err));
            fprintf(stderr, "movexd: %s\n", err);
            mx_config_free(&cfg);
            return 1;
        }
        sodium_memzero(&probe, sizeof(probe));
    }
    if (!cfg.cluster.enabled) {
        /* the data directory: what start-up's storage refuses, -t refuses
         * (one check, dircheck.c) */
        if (mx_dir_check("data directory", cfg.data_dir, err, sizeof(err))) {
            if (!opt_data_dir) /* else the command line chose it, not a conf line */
                at_key("data_dir", err, sizeof(err));
            fprintf(stderr, "movexd: %s\n", err);
            mx_config_free(&cfg);
            return 1;
        }
    } else {
        /* the journal's directory must be usable before Redis is relied on */
        char jdir[1100];
        mx_config_journal_dir(&cfg, jdir, sizeof jdir);
        if (mx_jfile_check_dir(jdir, err, sizeof(err))) {
            if (cfg.cluster.journal_dir[0])
                at_key("cluster.journal_dir", err, sizeof(err));
            fprintf(stderr, "movexd: %s\n", err);
            mx_config_free(&cfg);
            return 1;
        }
    }
    if (test_only) {
        /* event_loop uv on a host without the plugin would refuse to start;
         * else the loop start-up would run, by the same check */
        int loop = choose_loop(err, sizeof err);
        if (loop < 0) {
            fprintf(stderr, "movexd: %s\n", err);
            mx_config_free(&cfg);
            return 1;
        }
        printf("movexd: configuration %s is valid\n", conf_path ? conf_path : "(built-in defaults)");
        print_loop(loop);
        if (cfg.cluster.enabled) {
            char jdir[1100];
            mx_config_journal_dir(&cfg, jdir, sizeof jdir);
            printf("movexd: cluster mode: node %s, %s, journal %s\n", cfg.cluster.node_id,
                   cfg.cluster.nsentinels ? "via Sentinel" : "one Redis", jdir);
        }
        sodium_memzero(&keys, sizeof(keys));
        mx_config_free(&cfg);
        return 0;
    }
    /* socket activation: listening sockets passed by systemd take the place
     * of `listen`; auth none is refused on any of them that is not
     * loopback, as it is for the configured address */
    int listen_fds[MX_LISTEN_MAX_FDS];
    int nlisten = mx_listen_inherited(listen_fds, MX_LISTEN_MAX_FDS, err, sizeof(err));
    if (nlisten < 0) {
        fprintf(stderr, "movexd: socket activation: %s\n", err);
        mx_config_free(&cfg);
        return 2;
    }
    int public_socket = 0; /* an inherited socket is not loopback */
    for (int i = 0; i < nlisten; i++) {
        struct sockaddr_storage sa;
        memset(&sa, 0, sizeof(sa));
        socklen_t salen = sizeof(sa);
        char a[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (getsockname(listen_fds[i], (struct sockaddr *)&sa, &salen) == 0)
            mx_listen_format((struct sockaddr *)&sa, a, sizeof(a), &port);
        if (cfg.auth == MX_AUTH_NONE && !cfg.allow_insecure_listen &&
            !mx_listen_is_loopback((struct sockaddr *)&sa)) {
            fprintf(stderr,
                    "movexd: refusing to serve the socket passed by systemd (%s port %d) with auth "
                    "none: it is not a loopback address, so anyone who can reach the port could "
                    "read and write every room. Set `auth jwt` (docs/SECURITY.md), or "
                    "`allow_insecure_listen yes` if you really mean it.\n",
                    a, port);
            mx_config_free(&cfg);
            return 1;
        }
        public_socket |= !mx_listen_is_loopback((struct sockaddr *)&sa);
    }
    mx_log_set_level(cfg.log_level);
    if (mx_log_open(cfg.log_file)) {
        fprintf(stderr, "movexd: log_file %s: cannot open for appending: %s\n", cfg.log_file,
                strerror(errno));
        mx_config_free(&cfg);
        return 1;
    }
    if (cfg.auth == MX_AUTH_NONE && (nlisten ? public_socket : !mx_server_listen_is_loopback(&cfg)))
        mx_warn("event=insecure reason=\"auth none on a non-loopback address: anyone who can reach "
                "this port can read and write every room\"");

    /* before recovery: a loop that cannot run should not wait for it */
    int loop = choose_loop(err, sizeof err);
    if (loop < 0) {
        mx_err("event=start_failed reason=\"%s\"", err);
        if (cfg.log_file[0])
            fprintf(stderr, "movexd: %s\n", err);
        mx_config_free(&cfg);
        return 1;
    }

    const struct mx_storage *st = NULL;
    mx_map *rooms = NULL;
    if (cfg.cluster.enabled) {
        /* cluster mode: Redis holds every room's log; no WAL (docs/CLUSTER.md) */
        st = mx_storage_mem();
    } else if (mx_storage_wal_open(&cfg, &st, &rooms, err, sizeof(err))) {
        mx_err("event=start_failed reason=\"recovery failed\" error=\"%s\"", err);
        mx_config_free(&cfg);
        return 2;
    }
    if (fit_descriptors(&cfg, 1)) {
        mx_config_free(&cfg);
        return 2;
    }
    engine = mx_engine_new(&cfg, st, rooms);
    if (!engine) {
        mx_err("event=start_failed reason=\"out of memory\"");
        return 2;
    }
    mx_engine_set_keys(engine, &keys);
    sodium_memzero(&keys, sizeof(keys));

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (mx_server_start_on(&server, &cfg, engine, listen_fds, nlisten, loop)) {
        mx_engine_close(engine);
        mx_engine_free(engine);
        mx_config_free(&cfg);
        return 2;
    }
    server.on_reload = reload;
    struct mx_cnode *cnode = NULL;
    struct mx_cpres *cpres = NULL;
    if (cfg.cluster.enabled) {
        cnode = mx_cnode_new(&cfg, engine, server.ctx, lws_get_vhost_by_name(server.ctx, "default"));
        if (!cnode) {
            mx_err("event=start_failed reason=\"the cluster node could not start (out of memory, or "
                   "its journal: see above)\"");
            mx_server_destroy(&server);
            return 2;
        }
        mx_engine_set_cluster(engine, cnode);
        /* presence across nodes: links of its own, the engine's seam */
        cpres = mx_cpres_new(server.ctx, lws_get_vhost_by_name(server.ctx, "default"), &cfg.cluster,
                             &(struct mx_cpres_opts){.on_remote = mx_engine_presence_remote,
                                                     .new_conn = mx_engine_new_conn_id,
                                                     .priv = engine});
        if (!cpres) {
            mx_err("event=start_failed reason=\"out of memory\"");
            mx_server_destroy(&server);
            return 2;
        }
        struct mx_engine_presence_hook ph;
        mx_cpres_engine_hook(cpres, &ph);
        mx_engine_set_presence_hook(engine, &ph);
        log_cluster_start(&cfg.cluster);
    }
    if (mx_admin_load_token(&server, &cfg, err, sizeof(err))) {
        mx_err("event=start_failed reason=\"%s\"", err);
        mx_server_destroy(&server);
        mx_engine_close(engine);
        mx_engine_free(engine);
        mx_config_free(&cfg);
        return 1;
    }
    mx_info("event=started version=%s config=%s storage=%s auth=%s", MOVEXD_VERSION,
            conf_path ? conf_path : "(defaults)", st->name, cfg.auth == MX_AUTH_JWT ? "jwt" : "none");
    int rc = mx_server_run(&server);
    mx_info("event=stopping");
    if (cpres)
        mx_cpres_stop(cpres); /* "bye" goes out during the drain: peers clear us at once */
    if (rc == 0) {
        /* in-flight replies go out, clients get 1001, then the final flush
         * and snapshots make the next start quick */
        mx_server_shutdown(&server, 5000);
        mx_engine_close(engine);
    }
    if (cpres) {
        mx_engine_set_presence_hook(engine, &(struct mx_engine_presence_hook){ 0 });
        mx_cpres_free(cpres);
    }
    if (cnode) {
        mx_engine_set_cluster(engine, NULL);
        mx_cnode_free(cnode);
    }
    mx_server_destroy(&server);
    if (rc != 0)
        _exit(3); /* durability lost: write nothing more, let recovery decide */
    mx_engine_free(engine);
    mx_reducers_free();
    mx_config_free(&cfg);
    mx_info("event=stopped");
    return 0;
}
