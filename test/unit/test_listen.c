/* Unit tests for listen.c: bound address versus configured address (the
 * check that catches libwebsockets binding every address when it cannot
 * look the configured one up), address formatting, loopback and wildcard
 * tests, the socket-activation variables, and finding a listening socket
 * of this process. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "movexd/listen.h"

/* A socket address from text: "1.2.3.4" or an IPv6 address, and a port. */
static const struct sockaddr *sa_of(struct sockaddr_storage *ss, const char *addr, int port)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
    } else {
        ck_assert_msg(inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1, "bad test address %s", addr);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
    }
    return (const struct sockaddr *)ss;
}

#define MATCHES(conf, bound, want)                                                                 \
    do {                                                                                           \
        struct sockaddr_storage ss_;                                                               \
        ck_assert_msg(mx_listen_addr_matches(conf, sa_of(&ss_, bound, 8080)) == (want),            \
                      "configured '%s', bound %s: expected %s", conf, bound,                       \
                      (want) ? "a match" : "a mismatch");                                          \
    } while (0)

START_TEST(ipv4_address)
{
    MATCHES("127.0.0.1", "127.0.0.1", 1);
    MATCHES("127.0.0.1", "::ffff:127.0.0.1", 1); /* the same address, IPv4-mapped */
    MATCHES("127.0.0.1", "0.0.0.0", 0);          /* lws without getifaddrs() */
    MATCHES("127.0.0.1", "::", 0);
    MATCHES("127.0.0.1", "127.0.0.2", 0);
    MATCHES("127.0.0.1", "::1", 0);
    MATCHES("10.1.2.3", "10.1.2.3", 1);
    MATCHES("10.1.2.3", "10.1.2.4", 0);
    MATCHES("0.0.0.0", "0.0.0.0", 1); /* asked for explicitly */
    MATCHES("0.0.0.0", "127.0.0.1", 0);
}
END_TEST

START_TEST(ipv6_address)
{
    MATCHES("::1", "::1", 1);
    MATCHES("::1", "::", 0); /* lws without getifaddrs() */
    MATCHES("::1", "0.0.0.0", 0);
    MATCHES("::1", "127.0.0.1", 0);
    MATCHES("fd00::5", "fd00::5", 1);
    MATCHES("fd00::5", "fd00::6", 0);
    MATCHES("fd00:0:0::5", "fd00::5", 1); /* compared as addresses, not text */
    MATCHES("::", "::", 1);
}
END_TEST

START_TEST(every_address)
{
    MATCHES("", "0.0.0.0", 1);
    MATCHES("", "::", 1);
    MATCHES("", "127.0.0.1", 1);
    MATCHES("*", "::", 1);
}
END_TEST

START_TEST(interface_names)
{
    MATCHES("lo", "127.0.0.1", 1);
    MATCHES("lo", "::1", 1);
    MATCHES("lo", "0.0.0.0", 0);
    MATCHES("lo", "::", 0);
    MATCHES("lo", "10.0.0.1", 0); /* lo is loopback */
    MATCHES("localhost", "127.0.0.1", 1);
    MATCHES("localhost", "10.0.0.1", 0);
    MATCHES("eth0", "10.0.0.1", 1); /* its address is unknown here, but not a wildcard */
    MATCHES("eth0", "0.0.0.0", 0);
    MATCHES("eth0", "::", 0);
}
END_TEST

START_TEST(other_families_never_match)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    ck_assert_int_eq(mx_listen_addr_matches("", (struct sockaddr *)&ss), 0);
    ck_assert_int_eq(mx_listen_addr_matches("127.0.0.1", (struct sockaddr *)&ss), 0);
    ck_assert_int_eq(mx_listen_addr_matches("127.0.0.1", NULL), 0);
    char a[64];
    ck_assert_int_eq(mx_listen_format((struct sockaddr *)&ss, a, sizeof(a), NULL), -1);
    ck_assert_int_eq(mx_listen_format(NULL, a, sizeof(a), NULL), -1);
}
END_TEST

START_TEST(format_loopback_wildcard)
{
    struct sockaddr_storage ss;
    char a[64];
    int port = -1;
    static const struct {
        const char *in, *out;
        int loopback, wildcard;
    } cases[] = {
        {"127.0.0.1", "127.0.0.1", 1, 0},
        {"127.9.8.7", "127.9.8.7", 1, 0},
        {"0.0.0.0", "0.0.0.0", 0, 1},
        {"10.0.0.1", "10.0.0.1", 0, 0},
        {"::1", "::1", 1, 0},
        {"::", "::", 0, 1},
        {"::ffff:127.0.0.1", "::ffff:127.0.0.1", 1, 0},
        {"::ffff:10.0.0.1", "::ffff:10.0.0.1", 0, 0},
        {"fe80::1", "fe80::1", 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct sockaddr *sa = sa_of(&ss, cases[i].in, 40000 + (int)i);
        ck_assert_int_eq(mx_listen_format(sa, a, sizeof(a), &port), 0);
        ck_assert_str_eq(a, cases[i].out);
        ck_assert_int_eq(port, 40000 + (int)i);
        ck_assert_msg(mx_listen_is_loopback(sa) == cases[i].loopback, "loopback %s", cases[i].in);
        ck_assert_msg(mx_listen_is_wildcard(sa) == cases[i].wildcard, "wildcard %s", cases[i].in);
    }
    ck_assert_int_eq(mx_listen_is_loopback(NULL), 0);
    ck_assert_int_eq(mx_listen_is_wildcard(NULL), 0);
}
END_TEST

START_TEST(activation_variables)
{
    ck_assert_int_eq(mx_listen_fds_from_env(NULL, NULL, 42), 0);
    ck_assert_int_eq(mx_listen_fds_from_env("42", NULL, 42), 0);
    ck_assert_int_eq(mx_listen_fds_from_env(NULL, "1", 42), 0);
    ck_assert_int_eq(mx_listen_fds_from_env("42", "1", 42), 1);
    ck_assert_int_eq(mx_listen_fds_from_env("42", "3", 42), 3);
    ck_assert_int_eq(mx_listen_fds_from_env("42", "0", 42), 0);
    ck_assert_int_eq(mx_listen_fds_from_env("41", "1", 42), 0); /* for our parent */
    ck_assert_int_eq(mx_listen_fds_from_env("", "1", 42), -1);
    ck_assert_int_eq(mx_listen_fds_from_env("0", "1", 42), -1);
    ck_assert_int_eq(mx_listen_fds_from_env("42x", "1", 42), -1);
    ck_assert_int_eq(mx_listen_fds_from_env("42", "-1", 42), -1);
    ck_assert_int_eq(mx_listen_fds_from_env("42", "one", 42), -1);
    ck_assert_int_eq(mx_listen_fds_from_env("42", "99999999999999999999", 42), -1);
}
END_TEST

START_TEST(inherited_none)
{
    int fds[4];
    char why[200];
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    ck_assert_int_eq(mx_listen_inherited(fds, 4, why, sizeof(why)), 0);
    /* for another process: ignored, and the variables are gone */
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "x", 1);
    ck_assert_int_eq(mx_listen_inherited(fds, 4, why, sizeof(why)), 0);
    ck_assert_ptr_null(getenv("LISTEN_PID"));
    ck_assert_ptr_null(getenv("LISTEN_FDS"));
    ck_assert_ptr_null(getenv("LISTEN_FDNAMES"));
    setenv("LISTEN_PID", "abc", 1);
    setenv("LISTEN_FDS", "1", 1);
    ck_assert_int_eq(mx_listen_inherited(fds, 4, why, sizeof(why)), -1);
    ck_assert_msg(strstr(why, "LISTEN_PID=abc") != NULL, "%s", why);
}
END_TEST

START_TEST(find_listener)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_storage ss;
    ck_assert_int_eq(bind(s, sa_of(&ss, "127.0.0.1", 0), sizeof(struct sockaddr_in)), 0);
    socklen_t len = sizeof(ss);
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&ss, &len), 0);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    int fds[4];
    ck_assert_int_eq(mx_listen_find(port, fds, 4), 0); /* bound, not listening */
    ck_assert_int_eq(listen(s, 1), 0);
    ck_assert_int_eq(mx_listen_find(port, fds, 4), 1);
    ck_assert_int_eq(fds[0], s);
    ck_assert_int_eq(mx_listen_find(port == 65535 ? 1 : port + 1, fds, 4) >= 0, 1);
    close(s);
    ck_assert_int_eq(mx_listen_find(port, fds, 4), 0);
}
END_TEST

Suite *mx_suite_listen(void)
{
    Suite *s = suite_create("listen");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, ipv4_address);
    tcase_add_test(tc, ipv6_address);
    tcase_add_test(tc, every_address);
    tcase_add_test(tc, interface_names);
    tcase_add_test(tc, other_families_never_match);
    tcase_add_test(tc, format_loopback_wildcard);
    tcase_add_test(tc, activation_variables);
    tcase_add_test(tc, inherited_none);
    tcase_add_test(tc, find_listener);
    suite_add_tcase(s, tc);
    return s;
}
