/* listen.c - listening sockets: bound address versus configured address,
 * finding the sockets of this process, and socket activation
 * (LISTEN_PID/LISTEN_FDS as sd_listen_fds(3) defines them). */
#include "movexd/listen.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mx_listen_format(const struct sockaddr *sa, char *addr, size_t addrlen, int *port)
{
    const void *a;
    int p;
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        a = &in->sin_addr;
        p = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        a = &in6->sin6_addr;
        p = ntohs(in6->sin6_port);
    } else {
        return -1;
    }
    if (!inet_ntop(sa->sa_family, a, addr, (socklen_t)addrlen))
        return -1;
    if (port)
        *port = p;
    return 0;
}

/* The IPv4 address of sa, also of an IPv4-mapped IPv6 one. 0 or -1. */
static int ipv4_of(const struct sockaddr *sa, struct in_addr *out)
{
    if (sa->sa_family == AF_INET) {
        *out = ((const struct sockaddr_in *)sa)->sin_addr;
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            memcpy(&out->s_addr, &a6->s6_addr[12], 4);
            return 0;
        }
    }
    return -1;
}

int mx_listen_is_wildcard(const struct sockaddr *sa)
{
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

int mx_listen_is_loopback(const struct sockaddr *sa)
{
    struct in_addr a4;
    if (!sa)
        return 0;
    if (ipv4_of(sa, &a4) == 0)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

int mx_listen_addr_matches(const char *configured, const struct sockaddr *bound)
{
    if (!bound || (bound->sa_family != AF_INET && bound->sa_family != AF_INET6))
        return 0;
    if (!configured || !configured[0] || !strcmp(configured, "*"))
        return 1; /* every address: whatever the kernel says */
    struct in_addr want4, got4;
    struct in6_addr want6;
    if (inet_pton(AF_INET, configured, &want4) == 1)
        return ipv4_of(bound, &got4) == 0 && got4.s_addr == want4.s_addr;
    if (inet_pton(AF_INET6, configured, &want6) == 1) {
        if (bound->sa_family != AF_INET6)
            return 0;
        const struct in6_addr *got6 = &((const struct sockaddr_in6 *)bound)->sin6_addr;
        return memcmp(got6, &want6, sizeof(want6)) == 0;
    }
    /* an interface name: its address cannot be known without the very
     * lookup that may have failed, but a wildcard is never it */
    if (mx_listen_is_wildcard(bound))
        return 0;
    if (!strcmp(configured, "lo") || !strcmp(configured, "localhost"))
        return mx_listen_is_loopback(bound);
    return 1;
}

/* fd is a listening TCP socket of an IP family; its address in sa. */
static int is_tcp_listener(int fd, struct sockaddr_storage *sa)
{
    int v = 0;
    socklen_t len = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) || !v)
        return 0;
    len = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) || v != SOCK_STREAM)
        return 0;
    len = sizeof(*sa);
    if (getsockname(fd, (struct sockaddr *)sa, &len))
        return 0;
    return sa->ss_family == AF_INET || sa->ss_family == AF_INET6;
}

static void consider(int fd, int port, int *fds, int max, int *n)
{
    struct sockaddr_storage sa;
    int p;
    char a[INET6_ADDRSTRLEN];
    if (!is_tcp_listener(fd, &sa) || mx_listen_format((struct sockaddr *)&sa, a, sizeof(a), &p))
        return;
    if (port && p != port)
        return;
    if (*n < max)
        fds[*n] = fd;
    (*n)++;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int mx_listen_find(int port, int *fds, int max)
{
    int n = 0;
    /* /proc/self/fd lists only the open descriptors; without /proc, try
     * every descriptor below the limit */
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int self = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            char *end;
            long fd = strtol(e->d_name, &end, 10);
            if (*end || end == e->d_name || fd < 0 || fd > INT_MAX || fd == self)
                continue;
            consider((int)fd, port, fds, max, &n);
        }
        closedir(d);
        qsort(fds, (size_t)(n < max ? n : max), sizeof(int), cmp_int);
        return n;
    }
    long lim = sysconf(_SC_OPEN_MAX);
    if (lim <= 0 || lim > 1 << 20)
        lim = 1 << 20;
    for (int fd = 0; fd < lim; fd++)
        consider(fd, port, fds, max, &n);
    return n;
}

/* A whole decimal number 0..INT_MAX, nothing else. */
static int parse_count(const char *s, long *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v > INT_MAX)
        return -1;
    *out = v;
    return 0;
}

int mx_listen_fds_from_env(const char *listen_pid, const char *listen_fds, pid_t self)
{
    long pid, n;
    if (!listen_pid || !listen_fds)
        return 0;
    if (parse_count(listen_pid, &pid) || pid == 0 || parse_count(listen_fds, &n))
        return -1;
    if (pid != (long)self)
        return 0; /* meant for the process that started us */
    return (int)n;
}

int mx_listen_inherited(int *fds, int max, char *why, size_t whylen)
{
    const char *pid = getenv("LISTEN_PID"), *count = getenv("LISTEN_FDS");
    int n = mx_listen_fds_from_env(pid, count, getpid());
    int malformed = n < 0;
    char raw[64];
    snprintf(raw, sizeof(raw), "LISTEN_PID=%.20s LISTEN_FDS=%.20s", pid ? pid : "",
             count ? count : "");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (malformed) {
        snprintf(why, whylen, "malformed socket-activation variables (%s)", raw);
        return -1;
    }
    if (n > max) {
        snprintf(why, whylen, "%d sockets passed (LISTEN_FDS); at most %d are supported", n, max);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int fd = MX_LISTEN_FDS_START + i;
        struct sockaddr_storage sa;
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0) {
            snprintf(why, whylen, "descriptor %d (LISTEN_FDS=%d) is not open", fd, n);
            return -1;
        }
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        if (!is_tcp_listener(fd, &sa)) {
            snprintf(why, whylen,
                     "descriptor %d is not a listening TCP socket (the socket unit needs "
                     "ListenStream=ADDRESS:PORT, without Accept=yes)",
                     fd);
            return -1;
        }
        fds[i] = fd;
    }
    return n;
}

int mx_listen_probe(const char *addr, int port)
{
    /* Why could the listener not be made? libwebsockets only logs "ERROR on
     * binding fd N to port P (-1 98)"; binding a socket of our own the same
     * way (SO_REUSEADDR, as lws does) gives the errno to name. */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    char svc[16];
    snprintf(svc, sizeof svc, "%d", port);
    if (getaddrinfo(addr && *addr ? addr : NULL, svc, &hints, &res) != 0)
        return 0; /* an interface name, say: nothing to probe */
    int found = 0;
    for (struct addrinfo *ai = res; ai && !found; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
            found = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return found;
}
