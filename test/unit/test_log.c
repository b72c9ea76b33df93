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
    ck_assert_msg(strstr(text, " info event=error client=evil?error event=fatal message=\"a?b?[2Jc?d?e\"") != NULL,
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

Suite *mx_suite_log(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("lines");
    tcase_add_test(tc, control_characters_cannot_split_or_forge_lines);
    tcase_add_test(tc, utf8_text_is_kept);
    suite_add_tcase(s, tc);
    return s;
}
