/* Unit tests for readmore.c's read-ahead (mx_readmore_recv): over a real
 * socketpair, lws-sized reads get the socket's bytes in order and whole,
 * from one read of up to MX_READAHEAD; never more than asked for is
 * written (a canary after the caller's buffer stays intact); MSG_PEEK does
 * not consume; EAGAIN and the peer's close come through as recv() gives
 * them; forgetting a descriptor drops what was read ahead; a read of
 * MX_READAHEAD or more is passed straight through. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "movexd/readmore.h"

static unsigned calls; /* reads of the socket itself */

/* the real socket read (recvfrom: not the wrapper in wsmask.c) */
static ssize_t next_read(int fd, void *buf, size_t len, int flags)
{
    calls++;
    return recvfrom(fd, buf, len, flags, NULL, NULL);
}

static void pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
}

static void send_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        ck_assert_int_gt(w, 0);
        p += w, n -= (size_t)w;
    }
}

#define LWS_LEN 1040 /* what lws asks for: 1 KiB + LWS_PRE */

START_TEST(small_reads_get_the_stream_in_order)
{
    int sv[2];
    pair(sv);
    size_t total = 20000;
    unsigned char *src = malloc(total), *got = malloc(total);
    for (size_t i = 0; i < total; i++)
        src[i] = (unsigned char)(i * 7 + i / 251);
    send_all(sv[1], src, total);
    calls = 0;
    size_t have = 0;
    unsigned char buf[LWS_LEN + 16];
    while (have < total) {
        memset(buf + LWS_LEN, 0xA5, 16);
        ssize_t n = mx_readmore_recv(sv[0], buf, LWS_LEN, 0, next_read);
        ck_assert_int_gt(n, 0);
        ck_assert_int_le(n, LWS_LEN);
        for (int i = 0; i < 16; i++)
            ck_assert_uint_eq(buf[LWS_LEN + i], 0xA5); /* nothing past len */
        memcpy(got + have, buf, (size_t)n);
        have += (size_t)n;
    }
    ck_assert(memcmp(src, got, total) == 0);
    ck_assert_uint_eq(calls, 1); /* 20,000 bytes: one read of the socket */
    errno = 0;
    ck_assert_int_eq(mx_readmore_recv(sv[0], buf, LWS_LEN, 0, next_read), -1);
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
    close(sv[1]);
    ck_assert_int_eq(mx_readmore_recv(sv[0], buf, LWS_LEN, 0, next_read), 0); /* the peer's close */
    mx_readmore_forget(sv[0]);
    close(sv[0]);
    free(src);
    free(got);
}
END_TEST

START_TEST(more_than_a_block_takes_several_socket_reads)
{
    int sv[2];
    pair(sv);
    size_t total = MX_READAHEAD * 2 + 123;
    unsigned char *src = malloc(total), *got = malloc(total);
    for (size_t i = 0; i < total; i++)
        src[i] = (unsigned char)(i ^ (i >> 9));
    send_all(sv[1], src, total);
    calls = 0;
    size_t have = 0;
    while (have < total) {
        ssize_t n = mx_readmore_recv(sv[0], got + have, LWS_LEN < total - have ? LWS_LEN : total - have, 0, next_read);
        ck_assert_int_gt(n, 0);
        have += (size_t)n;
    }
    ck_assert(memcmp(src, got, total) == 0);
    ck_assert_uint_le(calls, 4);
    mx_readmore_forget(sv[0]);
    close(sv[0]);
    close(sv[1]);
    free(src);
    free(got);
}
END_TEST

START_TEST(peek_does_not_consume_and_forget_drops)
{
    int sv[2];
    pair(sv);
    unsigned char src[3000];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (unsigned char)i;
    send_all(sv[1], src, sizeof(src));
    unsigned char a[100], b[100];
    ck_assert_int_eq(mx_readmore_recv(sv[0], a, sizeof(a), 0, next_read), 100); /* the rest is read ahead */
    ck_assert_int_eq(mx_readmore_recv(sv[0], b, sizeof(b), MSG_PEEK, next_read), 100);
    ck_assert(memcmp(b, src + 100, 100) == 0);
    ck_assert_int_eq(mx_readmore_recv(sv[0], b, sizeof(b), 0, next_read), 100);
    ck_assert(memcmp(b, src + 100, 100) == 0); /* the peek took nothing */
    mx_readmore_forget(sv[0]); /* closed: what was read ahead is gone */
    errno = 0;
    ck_assert_int_eq(mx_readmore_recv(sv[0], b, sizeof(b), 0, next_read), -1);
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
    send_all(sv[1], src, 10); /* a new connection on the descriptor starts clean */
    ck_assert_int_eq(mx_readmore_recv(sv[0], b, sizeof(b), 0, next_read), 10);
    ck_assert(memcmp(b, src, 10) == 0);
    mx_readmore_forget(sv[0]);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(large_reads_pass_through)
{
    int sv[2];
    pair(sv);
    unsigned char src[5000];
    memset(src, 'q', sizeof(src));
    send_all(sv[1], src, sizeof(src));
    unsigned char *buf = malloc(MX_READAHEAD);
    calls = 0;
    ck_assert_int_eq(mx_readmore_recv(sv[0], buf, MX_READAHEAD, 0, next_read), 5000);
    ck_assert_uint_eq(calls, 1);
    mx_readmore_forget(sv[0]);
    close(sv[0]);
    close(sv[1]);
    free(buf);
}
END_TEST

static void teardown(void)
{
    mx_readmore_free();
}

Suite *mx_suite_readmore(void)
{
    Suite *s = suite_create("readmore");
    TCase *tc = tcase_create("readahead");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, small_reads_get_the_stream_in_order);
    tcase_add_test(tc, more_than_a_block_takes_several_socket_reads);
    tcase_add_test(tc, peek_does_not_consume_and_forget_drops);
    tcase_add_test(tc, large_reads_pass_through);
    suite_add_tcase(s, tc);
    return s;
}
