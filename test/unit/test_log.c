/* log.c: one event per line, whatever text a client put into it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "movexd/log.h"

static char *slurp_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

START_TEST(control_characters_cannot_split_or_forge_lines)
{
    char path[] = "/tmp/mx-log-test-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(mx_log_open(path), 0);
    mx_log_set_level(MX_LOG_DEBUG);
    /* what a hostile client id or message text could carry */
    mx_info("event=error client=%s message=\"%s\"", "evil\nerror event=fatal", "a\rb\x1b[2Jc\x7f" "d\te");
    mx_log_open(NULL);
    mx_log_set_level(MX_LOG_INFO);
    const char *text = slurp_file(path);
    unlink(path);
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
    char path[] = "/tmp/mx-log-test-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(mx_log_open(path), 0);
    mx_info("event=room_created room=%s", "todo:caf\xc3\xa9-\xe2\x82\xac");
    mx_log_open(NULL);
    const char *text = slurp_file(path);
    unlink(path);
    ck_assert_msg(strstr(text, "room=todo:caf\xc3\xa9-\xe2\x82\xac\n") != NULL, "%s", text);
}
END_TEST

/* Every value stays one key=value: `key=%s` values that are not plain
 * tokens are quoted and escaped, values inside quotes the format opened are
 * escaped, other conversions print as printf does. */
START_TEST(values_are_quoted_and_escaped)
{
    char path[] = "/tmp/mx-log-test-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(mx_log_open(path), 0);
    mx_info("event=t a=%s b=%s c=%s d=%s e=\"%s\" f=%.*s g=%zu h=%llu i=%d j=%05d k=%x l=%.2f m=%s%% n=%c",
            "plain:token-1", "two words", "say \"hi\"", "", "in \"q\" \\ x", 3, "abc def", (size_t)42,
            18446744073709551615ull, -7, 42, 255, 1.5, "x=y", 'Z');
    mx_info("event=u path=%s", "/var/lib/my data");
    mx_log_open(NULL);
    const char *text = slurp_file(path);
    unlink(path);
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
    suite_add_tcase(s, tc);
    return s;
}
