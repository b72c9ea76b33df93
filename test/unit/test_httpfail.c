/* httpfail: the answer to a request libwebsockets could not parse, written
 * just before lws shuts the socket down (src/httpfail.c). Over a socketpair
 * and this binary's own recv()/send()/shutdown() (the wrappers are linked
 * in, as in the daemon): nothing is written before a server is enabled
 * (movexctl's client connections), a read that produced no request and no
 * reply gets 400, 431 after lws's "header space" line, and a read followed
 * by a reply, by a request reaching the callbacks or by an end gets none. */
#include <check.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "movexd/httpfail.h"

/* What a peer reads after the other end (fds[1]) read `in` from it, maybe
 * answered `reply`, ran `between` and shut down its writing side. */
static void exchange(const char *in, const char *reply, void (*between)(int fd), char *out, size_t n)
{
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    ck_assert_int_eq(write(fds[0], in, strlen(in)), (ssize_t)strlen(in));
    char buf[256];
    ck_assert_int_gt(recv(fds[1], buf, sizeof buf, 0), 0);
    if (reply)
        ck_assert_int_eq(send(fds[1], reply, strlen(reply), 0), (ssize_t)strlen(reply));
    if (between)
        between(fds[1]);
    ck_assert_int_eq(shutdown(fds[1], SHUT_WR), 0);
    size_t got = 0;
    for (ssize_t r; got + 1 < n && (r = read(fds[0], out + got, n - 1 - got)) > 0;)
        got += (size_t)r;
    out[got] = '\0';
    close(fds[0]);
    close(fds[1]);
}

static void parsed(int fd) { mx_httpfail_parsed(fd); }
static void too_large(int fd) { (void)fd; mx_httpfail_too_large(); }
static void peer_end(int fd) { mx_httpfail_rx(fd, 0); /* what the recv() wrapper reports for an end */ }

START_TEST(answers_only_what_lws_left_unanswered)
{
    char out[1024];
    /* no server in this process yet: a client connection gets nothing */
    exchange("GET /x%00 HTTP/1.1\r\n\r\n", NULL, NULL, out, sizeof out);
    ck_assert_str_eq(out, "");

    mx_httpfail_enable();
    exchange("GET /x%00 HTTP/1.1\r\n\r\n", NULL, NULL, out, sizeof out);
    ck_assert_msg(!strncmp(out, "HTTP/1.1 400 Bad Request\r\n", 26), "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "\r\nconnection: close\r\n"));
    ck_assert_ptr_nonnull(strstr(out, "\r\n\r\n{\"code\":\"bad_request\",\"message\":"));

    exchange("GET /aaaa HTTP/1.1\r\n", NULL, too_large, out, sizeof out);
    ck_assert_msg(!strncmp(out, "HTTP/1.1 431 ", 13), "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "{\"code\":\"too_large\""));

    /* lws answered (its 403 page, a route's reply): nothing is added */
    exchange("GET /x%zz HTTP/1.1\r\n\r\n", "HTTP/1.0 403 Forbidden\r\n\r\n", NULL, out, sizeof out);
    ck_assert_str_eq(out, "HTTP/1.0 403 Forbidden\r\n\r\n");
    /* the request reached the callbacks; the peer ended the connection */
    exchange("GET /healthz HTTP/1.1\r\n\r\n", NULL, parsed, out, sizeof out);
    ck_assert_str_eq(out, "");
    exchange("GET /heal", NULL, peer_end, out, sizeof out);
    ck_assert_str_eq(out, "");
    /* the next unparsable read is answered 400 again (431 does not stick) */
    exchange("\r\n\r\n", NULL, NULL, out, sizeof out);
    ck_assert_msg(!strncmp(out, "HTTP/1.1 400 ", 13), "%s", out);
}
END_TEST

Suite *mx_suite_httpfail(void)
{
    Suite *s = suite_create("httpfail");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, answers_only_what_lws_left_unanswered);
    suite_add_tcase(s, tc);
    return s;
}
