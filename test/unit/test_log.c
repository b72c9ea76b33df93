/* log.c: one event per line, whatever text a client put into it; a storm
 * of one line costs a line a second, with the count. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "movexd/log.h"

static char *slurp_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* A fake monotonic clock, so the one-second window is exact. */
static uint64_t fake_us = 1000000000;
static uint64_t fake_clock(void) { return fake_us; }

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static char log_path[64];
static void log_to_temp(void)
{
    snprintf(log_path, sizeof(log_path), "/tmp/mx-log-test-XXXXXX");
    int fd = mkstemp(log_path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(mx_log_open(log_path), 0);
    mx_log_set_clock(fake_clock);
}

static const char *log_done(void)
{
    mx_log_open(NULL);
    mx_log_set_clock(NULL);
    const char *text = slurp_file(log_path);
    unlink(log_path);
    return text;
}

START_TEST(control_characters_cannot_split_or_forge_lines)
{
    log_to_temp();
    mx_log_set_level(MX_LOG_DEBUG);
    /* what a hostile client id or message text could carry */
    mx_info("event=error client=%s message=\"%s\"", "evil\nerror event=fatal", "a\rb\x1b[2Jc\x7f" "d\te");
    mx_log_set_level(MX_LOG_INFO);
    const char *text = log_done();
    /* exactly one line, ending in its newline */
    const char *nl = strchr(text, '\n');
    ck_assert_ptr_nonnull(nl);
    ck_assert_str_eq(nl + 1, "");
    for (const unsigned char *p = (const unsigned char *)text; p < (const unsigned char *)nl; p++)
        ck_assert_msg(*p >= 0x20 && *p != 0x7f, "control byte 0x%02x in %s", *p, text);
    ck_assert_msg(strstr(text, " info event=error client=\"evil\\nerror event=fatal\" "
                               "message=\"a\\rb\\x1b[2Jc\\x7fd\\te\"") != NULL,
                  "%s", text);
}
END_TEST

START_TEST(utf8_text_is_kept)
{
    log_to_temp();
    mx_info("event=room_created room=%s", "todo:caf\xc3\xa9-\xe2\x82\xac");
    const char *text = log_done();
    ck_assert_msg(strstr(text, "room=todo:caf\xc3\xa9-\xe2\x82\xac\n") != NULL, "%s", text);
}
END_TEST

START_TEST(a_storm_of_one_line_is_one_line_a_second_with_the_count)
{
    log_to_temp();
    for (int i = 0; i < 150000; i++) /* what lws logged per second on EMFILE */
        mx_err("event=lws message=\"accept: errno 24\"");
    fake_us += 999999;
    mx_err("event=lws message=\"accept: errno 24\""); /* still within the second */
    fake_us += 1;
    mx_err("event=lws message=\"accept: errno 24\"");
    mx_info("event=other"); /* another line is printed at once */
    const char *text = log_done();
    ck_assert_int_eq(count_of(text, "\n"), 3);
    ck_assert_int_eq(count_of(text, "accept: errno 24\"\n"), 1);
    ck_assert_msg(strstr(text, "error event=lws message=\"accept: errno 24\" suppressed=150000\n"), "%s", text);
    ck_assert_msg(strstr(text, "info event=other\n"), "%s", text);
}
END_TEST

START_TEST(alternating_lines_are_limited_each)
{
    log_to_temp();
    /* a failing snapshot: two error lines per client attempt */
    for (int i = 0; i < 1000; i++) {
        mx_err("event=snapshot_failed room=todo:a error=\"disk full\"");
        mx_warn("event=subscribe_failed room=todo:a");
    }
    const char *text = log_done();
    ck_assert_int_eq(count_of(text, "\n"), 2);
}
END_TEST

START_TEST(the_count_of_a_storm_that_stopped_is_flushed)
{
    log_to_temp();
    for (int i = 0; i < 10; i++)
        mx_warn("event=accept_failed error=\"Too many open files\"");
    mx_log_flush(); /* less than a second: nothing yet */
    fake_us += 1000000;
    mx_log_flush();
    mx_log_flush(); /* printed once */
    const char *text = log_done();
    ck_assert_int_eq(count_of(text, "\n"), 2);
    ck_assert_msg(strstr(text, "warn event=accept_failed error=\"Too many open files\" suppressed=9\n"), "%s", text);
}
END_TEST

START_TEST(distinct_lines_are_never_suppressed)
{
    log_to_temp();
    for (int i = 0; i < 100; i++)
        mx_info("event=room_created room=todo:%d", i);
    /* a level is part of the line */
    mx_warn("event=same");
    mx_err("event=same");
    const char *text = log_done();
    ck_assert_int_eq(count_of(text, "\n"), 102);
}
END_TEST

/* Every value stays one key=value: `key=%s` values that are not plain
 * tokens are quoted and escaped, values inside quotes the format opened are
 * escaped, other conversions print as printf does. */
START_TEST(values_are_quoted_and_escaped)
{
    log_to_temp();
    mx_info("event=t a=%s b=%s c=%s d=%s e=\"%s\" f=%.*s g=%zu h=%llu i=%d j=%05d k=%x l=%.2f m=%s%% n=%c",
            "plain:token-1", "two words", "say \"hi\"", "", "in \"q\" \\ x", 3, "abc def", (size_t)42,
            18446744073709551615ull, -7, 42, 255, 1.5, "x=y", 'Z');
    mx_info("event=u path=%s", "/var/lib/my data");
    const char *text = log_done();
    ck_assert_msg(strstr(text, " info event=t a=plain:token-1 b=\"two words\" c=\"say \\\"hi\\\"\" d=\"\" "
                               "e=\"in \\\"q\\\" \\\\ x\" f=abc g=42 h=18446744073709551615 i=-7 j=00042 "
                               "k=ff l=1.50 m=\"x=y\"% n=Z\n") != NULL,
                  "%s", text);
    ck_assert_msg(strstr(text, " info event=u path=\"/var/lib/my data\"\n") != NULL, "%s", text);
}
END_TEST

Suite *mx_suite_log(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("lines");
    tcase_add_test(tc, control_characters_cannot_split_or_forge_lines);
    tcase_add_test(tc, utf8_text_is_kept);
    tcase_add_test(tc, values_are_quoted_and_escaped);
    tcase_add_test(tc, a_storm_of_one_line_is_one_line_a_second_with_the_count);
    tcase_add_test(tc, alternating_lines_are_limited_each);
    tcase_add_test(tc, the_count_of_a_storm_that_stopped_is_flushed);
    tcase_add_test(tc, distinct_lines_are_never_suppressed);
    suite_add_tcase(s, tc);
    return s;
}
