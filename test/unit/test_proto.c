/* Unit tests for proto.c's error encoder: mx_proto_error always writes one
 * valid JSON object in valid UTF-8, whatever bytes the message holds
 * (invalid sequences become U+FFFD, one per maximal ill-formed subpart, as
 * TextDecoder does), and leaves valid text alone. jansson's parser refuses
 * invalid UTF-8, so every reply is checked by parsing it back. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "movexd/err.h"
#include "movexd/proto.h"

#define FFFD "\xEF\xBF\xBD"

/* Encode an error with `msg`, parse it back (failing the test on any
 * invalid JSON or UTF-8) and return the decoded message (malloc'd). */
static char *error_message(int has_id, uint64_t id, int err, const char *msg)
{
    mx_buf b;
    mx_buf_init(&b, 0);
    mx_proto_error(&b, has_id, id, err, msg);
    ck_assert_int_eq(b.oom, 0);
    json_error_t je;
    json_t *j = json_loadb(mx_buf_data(&b), b.len, JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(j != NULL, "reply is not valid JSON/UTF-8 (%s): %s", je.text, mx_buf_data(&b));
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "error");
    ck_assert_str_eq(json_string_value(json_object_get(j, "code")), mx_err_code(err));
    if (has_id)
        ck_assert_int_eq(json_integer_value(json_object_get(j, "id")), (json_int_t)id);
    else
        ck_assert_ptr_null(json_object_get(j, "id"));
    const json_t *m = json_object_get(j, "message");
    ck_assert(json_is_string(m));
    char *out = malloc(json_string_length(m) + 1);
    ck_assert_ptr_nonnull(out);
    memcpy(out, json_string_value(m), json_string_length(m) + 1);
    json_decref(j);
    mx_buf_free(&b);
    return out;
}

/* The message `in` comes back as `want`. */
#define ck_message(in, want)                                                    \
    do {                                                                        \
        char *got_ = error_message(1, 7, MX_EBAD_REQUEST, in);                  \
        ck_assert_msg(strcmp(got_, want) == 0, "message %s: got \"%s\", want \"%s\"", #in, \
                      got_, want);                                              \
        free(got_);                                                             \
    } while (0)

START_TEST(valid_text_unchanged)
{
    ck_message("plain ascii", "plain ascii");
    ck_message("quotes \" and \\ and \n\t\x01 are escaped",
               "quotes \" and \\ and \n\t\x01 are escaped");
    /* U+0080 U+00E9 U+07FF */
    ck_message("\xC2\x80 \xC3\xA9 \xDF\xBF", "\xC2\x80 \xC3\xA9 \xDF\xBF");
    /* U+0800 U+D7FF U+E000 U+FFFF */
    ck_message("\xE0\xA0\x80 \xED\x9F\xBF \xEE\x80\x80 \xEF\xBF\xBF",
               "\xE0\xA0\x80 \xED\x9F\xBF \xEE\x80\x80 \xEF\xBF\xBF");
    /* U+10000 U+1F600 U+10FFFF */
    ck_message("\xF0\x90\x80\x80 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF",
               "\xF0\x90\x80\x80 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF");
    ck_message(FFFD, FFFD);
    /* an empty or absent message is the code's fixed text */
    ck_message("", mx_err_message(MX_EBAD_REQUEST));
    char *m = error_message(0, 0, MX_EUNKNOWN_TYPE, NULL);
    ck_assert_str_eq(m, mx_err_message(MX_EUNKNOWN_TYPE));
    free(m);
}
END_TEST

START_TEST(invalid_sequences_replaced)
{
    ck_message("a\x80z", "a" FFFD "z");                          /* lone continuation */
    ck_message("\xBF\x80", FFFD FFFD);                           /* two of them */
    ck_message("unknown type \"ab\xC3\"", "unknown type \"ab" FFFD "\"");
    ck_message("cut at the end \xE2\x82", "cut at the end " FFFD); /* truncated: one U+FFFD */
    ck_message("\xF0\x9F\x98" "x", FFFD "x");                    /* truncated 4-byte, then ASCII */
    ck_message("\xC0\xAF", FFFD FFFD);                           /* overlong '/' */
    ck_message("\xC1\xBF", FFFD FFFD);
    ck_message("\xE0\x80\xAF", FFFD FFFD FFFD);                  /* overlong 3-byte */
    ck_message("\xF0\x80\x80\xAF", FFFD FFFD FFFD FFFD);         /* overlong 4-byte */
    ck_message("\xED\xA0\x80", FFFD FFFD FFFD);                  /* surrogate U+D800 */
    ck_message("\xED\xBF\xBF", FFFD FFFD FFFD);                  /* surrogate U+DFFF */
    ck_message("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD);         /* U+110000 */
    ck_message("\xF5\x80\x80\x80", FFFD FFFD FFFD FFFD);
    ck_message("\xF8\xFE\xFF", FFFD FFFD FFFD);
    ck_message("\xE2\x82\xE2\x82\xAC", FFFD "\xE2\x82\xAC");     /* cut €, then a whole € */
    ck_message("\xC3" "\xC3\xA9", FFFD "\xC3\xA9");
    /* escapes still apply around replacements */
    ck_message("\"\x80\n", "\"" FFFD "\n");
}
END_TEST

START_TEST(every_byte_and_random_bytes)
{
    /* every single byte value after an ASCII prefix */
    for (int c = 1; c < 256; c++) {
        char in[4] = {'x', (char)c, 'y', 0};
        char *m = error_message(1, (uint64_t)c, MX_EBAD_JSON, in);
        if (c < 0x80) {
            ck_assert_str_eq(m, in);
        } else {
            ck_assert_str_eq(m, "x" FFFD "y");
        }
        free(m);
    }
    /* random byte strings (no NUL: the message is a C string), biased
     * towards bytes >= 0x80: every reply parses */
    unsigned seed = 12345;
    for (int k = 0; k < 20000; k++) {
        char in[24];
        size_t n = 1 + (size_t)(k % 22);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned v = (seed >> 16) & 0xFF;
            in[i] = (char)(v ? (v & 1 ? (v | 0x80) : v) : 0x80);
        }
        in[n] = '\0';
        free(error_message(1, (uint64_t)k, MX_EBAD_REQUEST, in));
    }
}
END_TEST

Suite *mx_suite_proto(void)
{
    Suite *s = suite_create("proto");
    TCase *tc = tcase_create("error_utf8");
    tcase_add_test(tc, valid_text_unchanged);
    tcase_add_test(tc, invalid_sequences_replaced);
    tcase_add_test(tc, every_byte_and_random_bytes);
    suite_add_tcase(s, tc);
    return s;
}
