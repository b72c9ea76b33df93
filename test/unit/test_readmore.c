/* Unit tests for readmore.c's read-ahead (mx_readmore_recv): over a real
 * socketpair, lws-sized reads get the socket's bytes in order and whole,
 * from one read of up to MX_READAHEAD; never more than asked for is
 * written (a canary after the caller's buffer stays intact); MSG_PEEK does
 * not consume; EAGAIN and the peer's close come through as recv() gives
 * them; forgetting a descriptor drops what was read ahead; a read of
 * MX_READAHEAD or more is passed straight through; past the arena's room
 * reads are lws-sized, and the end of a turn keeps what lws did not take. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "movexd/readmore.h"
#include "movexd/wsmask.h"

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

/* the end of a test: the descriptor forgotten and closed, buffers freed */
static void finish(int sv[2], void *a, void *b)
{
    mx_readmore_forget(sv[0]);
    close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    free(a);
    free(b);
}

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
        ssize_t n = mx_readmore_recv(sv[0], buf, LWS_LEN, 0, next_read, NULL);
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
    ck_assert_int_eq(mx_readmore_recv(sv[0], buf, LWS_LEN, 0, next_read, NULL), -1);
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
    close(sv[1]);
    ck_assert_int_eq(mx_readmore_recv(sv[0], buf, LWS_LEN, 0, next_read, NULL), 0); /* the peer's close */
    sv[1] = -1;
    finish(sv, src, got);
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
        ssize_t n = mx_readmore_recv(sv[0], got + have, LWS_LEN < total - have ? LWS_LEN : total - have, 0, next_read, NULL);
        ck_assert_int_gt(n, 0);
        have += (size_t)n;
    }
    ck_assert(memcmp(src, got, total) == 0);
    ck_assert_uint_le(calls, 4);
    finish(sv, src, got);
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
    ck_assert_int_eq(mx_readmore_recv(sv[0], a, sizeof(a), 0, next_read, NULL), 100); /* the rest is read ahead */
    ck_assert_int_eq(mx_readmore_recv(sv[0], b, sizeof(b), MSG_PEEK, next_read, NULL), 100);
    ck_assert(memcmp(b, src + 100, 100) == 0);
    ck_assert_int_eq(mx_readmore_recv(sv[0], b, sizeof(b), 0, next_read, NULL), 100);
    ck_assert(memcmp(b, src + 100, 100) == 0); /* the peek took nothing */
    mx_readmore_forget(sv[0]); /* closed: what was read ahead is gone */
    errno = 0;
    ck_assert_int_eq(mx_readmore_recv(sv[0], b, sizeof(b), 0, next_read, NULL), -1);
    ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
    send_all(sv[1], src, 10); /* a new connection on the descriptor starts clean */
    ck_assert_int_eq(mx_readmore_recv(sv[0], b, sizeof(b), 0, next_read, NULL), 10);
    ck_assert(memcmp(b, src, 10) == 0);
    finish(sv, NULL, NULL);
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
    ck_assert_int_eq(mx_readmore_recv(sv[0], buf, MX_READAHEAD, 0, next_read, NULL), 5000);
    ck_assert_uint_eq(calls, 1);
    finish(sv, buf, NULL);
}
END_TEST

/* More connections with data than the arena holds: the first ones are
 * read ahead, the rest in lws's size (and listed, since their reads fill
 * the buffer); every stream arrives whole and in order. */
START_TEST(a_full_arena_falls_back_to_lws_sized_reads)
{
    enum { N = MX_READMORE_ARENA / MX_READAHEAD + 3, LEN = MX_READAHEAD + 5000 };
    int sv[N][2];
    unsigned char *src = malloc(LEN), *got[N];
    for (size_t i = 0; i < LEN; i++)
        src[i] = (unsigned char)(i * 13 + 1);
    for (int c = 0; c < N; c++) {
        pair(sv[c]);
        send_all(sv[c][1], src, LEN);
        got[c] = malloc(LEN);
    }
    size_t have[N] = {0};
    for (int c = 0; c < N; c++) { /* one lws read each, as in one poll turn */
        ssize_t n = mx_readmore_recv(sv[c][0], got[c], LWS_LEN, 0, next_read, NULL);
        ck_assert_int_eq(n, LWS_LEN);
        have[c] = (size_t)n;
    }
    mx_readmore_service(NULL); /* no lws here: the turn's end moves what is left out of the arena */
    for (int c = 0; c < N; c++) {
        while (have[c] < LEN) {
            size_t want = LEN - have[c] < LWS_LEN ? LEN - have[c] : LWS_LEN;
            ssize_t n = mx_readmore_recv(sv[c][0], got[c] + have[c], want, 0, next_read, NULL);
            ck_assert_int_gt(n, 0);
            have[c] += (size_t)n;
        }
        ck_assert_msg(memcmp(src, got[c], LEN) == 0, "connection %d: the stream whole and in order", c);
        finish(sv[c], got[c], NULL);
    }
    free(src);
}
END_TEST

/* n masked text frames of plen payload bytes each (16-bit length form). */
static size_t frames(unsigned char *out, int n, size_t plen)
{
    size_t o = 0;
    for (int f = 0; f < n; f++) {
        out[o++] = 0x81;
        out[o++] = 0x80 | 126;
        out[o++] = (unsigned char)(plen >> 8);
        out[o++] = (unsigned char)plen;
        for (int k = 0; k < 4; k++)
            out[o++] = (unsigned char)(0x11 * (k + 1));
        memset(out + o, 'a' + f, plen);
        o += plen;
    }
    return o;
}

/* lws gets whole frames when they fit its buffer: each piece ends at a
 * frame boundary, so lws delivers each message in one callback (a frame
 * cut by a read boundary would come in two, and be reassembled). */
START_TEST(pieces_end_at_frame_boundaries)
{
    int sv[2];
    pair(sv);
    mx_wsmask_watch(sv[0]);
    unsigned char src[40 * 308];
    size_t total = frames(src, 40, 300); /* 308 bytes each */
    ck_assert_uint_eq(mx_wsmask_cut(sv[0], src, total, 1040), 3 * 308);
    ck_assert_uint_eq(mx_wsmask_cut(sv[0], src, total, 700), 2 * 308);
    ck_assert_uint_eq(mx_wsmask_cut(sv[0], src, total, 200), 200); /* a frame longer than len: len */
    ck_assert_uint_eq(mx_wsmask_cut(sv[0], src, 500, 1040), 308);  /* only what is there */
    send_all(sv[1], src, total);
    unsigned char got[sizeof(src)];
    size_t have = 0;
    while (have < total) {
        ssize_t n = recv(sv[0], got + have, LWS_LEN, 0); /* through wsmask.c's wrapper, as lws reads */
        ck_assert_int_gt(n, 0);
        ck_assert_uint_eq((size_t)n % 308, 0);
        have += (size_t)n;
    }
    ck_assert(memcmp(src, got, total) == 0);
    ck_assert(!mx_wsmask_unmasked(sv[0]));
    mx_wsmask_forget(sv[0]);
    finish(sv, NULL, NULL);
}
END_TEST

static void teardown(void)
{
    mx_readmore_free();
    mx_wsmask_free();
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
    tcase_add_test(tc, a_full_arena_falls_back_to_lws_sized_reads);
    tcase_add_test(tc, pieces_end_at_frame_boundaries);
    suite_add_tcase(s, tc);
    return s;
}
