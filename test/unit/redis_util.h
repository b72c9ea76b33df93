/* redis_util.h - what the unit tests that need a real Redis share: an lws
 * loop without listeners (ctx, vh) kept turning by a 5 ms heartbeat, waits
 * on conditions with a generous bound, free loopback ports, redis-server
 * started on one and stopped by PID, and a descriptor count for leak
 * checks. Header-only (static inline) so each suite gets its own copy. */
#ifndef MX_TEST_REDIS_UTIL_H
#define MX_TEST_REDIS_UTIL_H

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "movexd/redis_adapter.h"

#define WAIT_MS 20000 /* generous: a loaded 2-core machine */

static struct lws_context *ctx;
static struct lws_vhost *vh;
static lws_sorted_usec_list_t beat;

/* keeps lws_service() returning while a test waits on a condition */
static void on_beat(lws_sorted_usec_list_t *s)
{
    lws_sul_schedule(ctx, 0, s, on_beat, 5 * 1000);
}

static inline void loop_setup(void)
{
    static const struct lws_protocols protos[] = { { "mx-redis-dummy", NULL, 0, 0, 0, NULL, 0 },
                                                   { NULL, NULL, 0, 0, 0, NULL, 0 },
                                                   { NULL, NULL, 0, 0, 0, NULL, 0 } };
    static struct lws_protocols list[3];
    memcpy(list, protos, sizeof list);
    list[0] = mx_redis_protocol;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = list;
    lws_set_log_level(LLL_ERR, NULL);
    ctx = lws_create_context(&info);
    ck_assert_ptr_nonnull(ctx);
    vh = lws_get_vhost_by_name(ctx, "default");
    ck_assert_ptr_nonnull(vh);
    memset(&beat, 0, sizeof beat);
    on_beat(&beat);
}

static inline void loop_teardown(void)
{
    lws_sul_schedule(ctx, 0, &beat, NULL, LWS_SET_TIMER_USEC_CANCEL);
    lws_context_destroy(ctx);
    ctx = NULL;
}

static inline long long now_ms(void) { return (long long)(lws_now_usecs() / 1000); }

/* Service the loop until *flag is non-zero; ck-fails after WAIT_MS. */
#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        long long until_ = now_ms() + WAIT_MS;                                                     \
        while (!(cond) && now_ms() < until_)                                                       \
            lws_service(ctx, 0);                                                                   \
        ck_assert_msg((cond), "timed out waiting for: %s", #cond);                                \
    } while (0)

/* Service the loop until the link's counter `field` reaches at least n
 * (or WAIT_MS pass); the counters then. */
#define WAIT_STAT(r, field, n, st)                                                                 \
    do {                                                                                           \
        long long until_ = now_ms() + WAIT_MS;                                                     \
        do {                                                                                       \
            lws_service(ctx, 0);                                                                   \
            mx_redis_stats((r), &(st));                                                            \
        } while ((st).field < (n) && now_ms() < until_);                                           \
    } while (0)

/* A few loop turns: lets async closes and writes happen. */
static inline void spin(int n)
{
    for (int i = 0; i < n; i++)
        lws_service(ctx, 0);
}

/* A TCP socket bound to a free loopback port (listening if asked). */
static inline int loopback_socket(int do_listen, int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    if (do_listen)
        ck_assert_int_eq(listen(s, 16), 0);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return s;
}

static inline int free_port(void)
{
    int port;
    close(loopback_socket(0, &port));
    return port;
}

/* argv[0] with its output to /dev/null; its PID. */
static inline pid_t spawn_quiet(char *const argv[])
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* redis-server on port without persistence; a replica of replica_of
 * unless that is 0. */
static inline pid_t start_redis_of(int port, int replica_of)
{
    char p[16], m[16];
    snprintf(p, sizeof p, "%d", port);
    snprintf(m, sizeof m, "%d", replica_of);
    char *argv[] = { "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", "/tmp", "--replicaof", "127.0.0.1", m, NULL };
    if (!replica_of)
        argv[11] = NULL;
    return spawn_quiet(argv);
}

static inline pid_t start_redis(int port) { return start_redis_of(port, 0); }

static inline void stop_redis(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static inline int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

#endif
