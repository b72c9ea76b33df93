/* Unit tests for frame.c: every frame carries its WebSocket header (RFC 6455
 * 5.2: FIN + text opcode, no mask, the shortest length form) right before
 * its payload, so the wire bytes are header then payload, contiguous, at
 * every length boundary (125/126, 65535/65536). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/frame.h"

/* A frame of len bytes of 'x'; checks its wire bytes and frees it. */
static void ck_frame(size_t len, unsigned want_hlen, const unsigned char *want_hdr)
{
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    char *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    memset(p, 'x', len);
    ck_assert_int_eq(mx_buf_append(&b, p, len), 0);
    mx_frame *f = mx_frame_from_buf(&b);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->len, len);
    ck_assert_uint_eq(f->hlen, want_hlen);
    ck_assert_uint_eq(mx_frame_wire_len(f), want_hlen + len);
    const unsigned char *w = (const unsigned char *)mx_frame_wire(f);
    ck_assert_msg(memcmp(w, want_hdr, want_hlen) == 0, "header of a %zu-byte frame", len);
    ck_assert_ptr_eq(w + want_hlen, (const unsigned char *)mx_frame_data(f));
    ck_assert(memcmp(w + want_hlen, p, len) == 0);
    free(p);
    mx_frame_unref(f);
}

START_TEST(header_at_each_length_boundary)
{
    ck_frame(0, 2, (const unsigned char[]){0x81, 0});
    ck_frame(1, 2, (const unsigned char[]){0x81, 1});
    ck_frame(125, 2, (const unsigned char[]){0x81, 125});
    ck_frame(126, 4, (const unsigned char[]){0x81, 126, 0, 126});
    ck_frame(65535, 4, (const unsigned char[]){0x81, 126, 0xff, 0xff});
    ck_frame(65536, 10, (const unsigned char[]){0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0});
    ck_frame(1000003, 10, (const unsigned char[]){0x81, 127, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x43});
}
END_TEST

START_TEST(header_of_any_length)
{
    /* the 64-bit form without allocating: big-endian, top bit clear */
    char h[16];
    ck_assert_uint_eq(mx_frame_header(h + 16, (size_t)0x0123456789ull), 10);
    const unsigned char want[] = {0x81, 127, 0, 0, 0, 0x01, 0x23, 0x45, 0x67, 0x89};
    ck_assert(memcmp(h + 6, want, 10) == 0);
}
END_TEST

START_TEST(oom_buffer_makes_no_frame)
{
    mx_buf b;
    mx_buf_init(&b, MX_FRAME_PRE);
    mx_buf_puts(&b, "{}");
    b.oom = 1;
    ck_assert_ptr_null(mx_frame_from_buf(&b));
    mx_buf_init(&b, 0); /* wrong headroom: no room for a header */
    mx_buf_puts(&b, "{}");
    ck_assert_ptr_null(mx_frame_from_buf(&b));
}
END_TEST

Suite *mx_suite_frame(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("header");
    tcase_add_test(tc, header_at_each_length_boundary);
    tcase_add_test(tc, header_of_any_length);
    tcase_add_test(tc, oom_buffer_makes_no_frame);
    suite_add_tcase(s, tc);
    return s;
}
