/* main.c - command line, configuration, signals and exit codes.
 *
 *   movexd -c FILE            run with FILE
 *   movexd -t -c FILE         check FILE and exit 0 (ok) or 1 (error)
 *   --listen ADDR:PORT, --data-dir DIR, --log-level LEVEL override the conf
 *
 * Exit codes: 0 clean stop, 1 bad configuration or usage, 2 start-up
 * failure (cannot listen, storage cannot recover), 3 fatal runtime error.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "movexd/config.h"
#include "movexd/engine.h"
#include "movexd/jwt.h"
#include "movexd/log.h"
#include "movexd/server.h"
#include "movexd/storage.h"
#include "movexd/version.h"

static struct mx_server server;

static void on_signal(int sig)
{
    (void)sig;
    server.stop = 1;
    mx_server_wake(&server);
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
            "  -V, --version          print the version\n");
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
    const char *conf_path = NULL, *listen = NULL, *data_dir = NULL, *log_level = NULL;
    int test_only = 0, ch;
    while ((ch = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': conf_path = optarg; break;
        case 't': test_only = 1; break;
        case OPT_LISTEN: listen = optarg; break;
        case OPT_DATA_DIR: data_dir = optarg; break;
        case OPT_LOG_LEVEL: log_level = optarg; break;
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

    static struct mx_config cfg;
    char err[512];
    mx_config_defaults(&cfg);
    if (conf_path && mx_config_load(&cfg, conf_path, err, sizeof(err))) {
        fprintf(stderr, "movexd: %s\n", err);
        mx_config_free(&cfg);
        return 1;
    }
    if (listen && mx_config_set_listen(&cfg, listen)) {
        fprintf(stderr, "movexd: --listen: expected ADDR:PORT, got '%s'\n", listen);
        return 1;
    }
    if (data_dir)
        snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", data_dir);
    if (log_level && mx_config_parse_log_level(log_level, &cfg.log_level)) {
        fprintf(stderr, "movexd: --log-level: expected error|warn|info|debug, got '%s'\n", log_level);
        return 1;
    }
    if (test_only) {
        printf("movexd: configuration %s is valid\n", conf_path ? conf_path : "(built-in defaults)");
        mx_config_free(&cfg);
        return 0;
    }
    mx_log_set_level(cfg.log_level);

    struct mx_jwt_keys keys;
    memset(&keys, 0, sizeof(keys));
    if (cfg.auth == MX_AUTH_JWT) {
        if (!cfg.auth_hs256_secret_file[0] && !cfg.auth_ed25519_public_key_file[0]) {
            fprintf(stderr, "movexd: auth jwt needs auth_hs256_secret_file or auth_ed25519_public_key_file\n");
            return 1;
        }
        if (mx_jwt_load_keys(&keys, cfg.auth_hs256_secret_file[0] ? cfg.auth_hs256_secret_file : NULL,
                             cfg.auth_ed25519_public_key_file[0] ? cfg.auth_ed25519_public_key_file : NULL,
                             err, sizeof(err))) {
            fprintf(stderr, "movexd: %s\n", err);
            return 1;
        }
    } else if (!mx_server_listen_is_loopback(&cfg)) {
        if (!cfg.allow_insecure_listen) {
            mx_err("event=refused reason=\"auth none on a non-loopback address (%s): anyone could read "
                   "and write every room; set auth jwt, or allow_insecure_listen yes if you really mean it\"",
                   cfg.listen_addr[0] ? cfg.listen_addr : "*");
            return 1;
        }
        mx_warn("event=insecure reason=\"auth none on a non-loopback address: anyone who can reach this "
                "port can read and write every room\"");
    }

    const struct mx_storage *st = NULL;
    mx_map *rooms = NULL;
    if (mx_storage_wal_open(&cfg, &st, &rooms, err, sizeof(err))) {
        mx_err("event=start_failed reason=\"recovery failed\" error=\"%s\"", err);
        mx_config_free(&cfg);
        return 2;
    }
    mx_engine *engine = mx_engine_new(&cfg, st, rooms);
    if (!engine) {
        mx_err("event=start_failed reason=\"out of memory\"");
        return 2;
    }
    mx_engine_set_keys(engine, &keys);
    sodium_memzero(&keys, sizeof(keys));
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (mx_server_start(&server, &cfg, engine)) {
        mx_engine_close(engine);
        mx_engine_free(engine);
        mx_config_free(&cfg);
        return 2;
    }
    mx_info("event=started version=%s config=%s storage=%s", MOVEXD_VERSION,
            conf_path ? conf_path : "(defaults)", st->name);
    int rc = mx_server_run(&server);
    mx_info("event=stopping");
    if (rc == 0)
        mx_engine_close(engine); /* final flush and snapshots */
    mx_server_destroy(&server);
    if (rc != 0)
        _exit(3); /* durability lost: write nothing more, let recovery decide */
    mx_engine_free(engine);
    mx_config_free(&cfg);
    mx_info("event=stopped");
    return rc ? 3 : 0;
}
