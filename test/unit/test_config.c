/* Unit tests for config.c: built-in defaults, every key, value syntax
 * (sizes, durations, booleans, quoting, comments), room-type inheritance in
 * either block order, every error class with its exact "name:LINE:" prefix,
 * listen parsing, room type lookup, and that conf/movexd.conf parses. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "movexd/config.h"

#define MiB ((size_t)1024 * 1024)

/* Parse text that must be accepted. */
static void parse_ok(struct mx_config *c, const char *text)
{
    char err[512];
    int rc = mx_config_parse(c, text, "t.conf", err, sizeof err);
    ck_assert_msg(rc == 0, "unexpected error for:\n%s\n=> %s", text, err);
}

/* Parse text that must fail with an error starting with `prefix` and
 * containing `part`. */
#define ck_parse_err(text, prefix, part)                                                           \
    do {                                                                                           \
        struct mx_config c_;                                                                       \
        char err_[512];                                                                            \
        int rc_ = mx_config_parse(&c_, text, "t.conf", err_, sizeof err_);                        \
        ck_assert_msg(rc_ == -1, "accepted but should fail: %s", text);                            \
        ck_assert_msg(strncmp(err_, prefix, strlen(prefix)) == 0, "error '%s' should start '%s'", \
                      err_, prefix);                                                               \
        ck_assert_msg(strstr(err_, part) != NULL, "error '%s' should contain '%s'", err_, part);  \
        /* a failed parse leaves the defaults behind, and free is safe */                          \
        ck_assert_uint_eq(c_.ntypes, 0);                                                           \
        ck_assert_int_eq(c_.listen_port, 8080);                                                    \
        mx_config_free(&c_);                                                                       \
    } while (0)

static void check_default_room(const struct mx_room_type *t)
{
    ck_assert_str_eq(t->reducer, "json");
    ck_assert_uint_eq(t->history, 1000);
    ck_assert_uint_eq(t->max_state_bytes, 16 * MiB);
    ck_assert_int_eq(t->create_on_subscribe, 0);
    ck_assert_uint_eq(t->max_ops, 1000);
}

static void check_defaults(const struct mx_config *c)
{
    ck_assert_str_eq(c->listen_addr, "127.0.0.1");
    ck_assert_int_eq(c->listen_port, 8080);
    ck_assert_int_eq(c->log_level, MX_LOG_INFO);
    ck_assert_str_eq(c->data_dir, "./data");
    ck_assert_int_eq(c->fsync, MX_FSYNC_ALWAYS);
    ck_assert_uint_eq(c->max_message_bytes, 1 * MiB);
    ck_assert_int_eq(c->max_depth, 64);
    ck_assert_uint_eq(c->max_queue_bytes, 8 * MiB);
    ck_assert_uint_eq(c->max_rooms_per_conn, 256);
    ck_assert_uint_eq(c->max_connections, 10000);
    ck_assert_int_eq(c->hello_timeout_ms, 10000);
    ck_assert_uint_eq(c->dedup_window, 1024);
    ck_assert_str_eq(c->def.name, "default");
    check_default_room(&c->def);
    ck_assert_ptr_null(c->types);
    ck_assert_uint_eq(c->ntypes, 0);
}

START_TEST(defaults)
{
    struct mx_config c;
    mx_config_defaults(&c);
    check_defaults(&c);
    mx_config_free(&c);

    /* an empty file, or one of only comments and blank lines, means the same */
    parse_ok(&c, "");
    check_defaults(&c);
    mx_config_free(&c);
    parse_ok(&c, "\n\n   \t\n# nothing here\n   # indented comment\r\n");
    check_defaults(&c);
    mx_config_free(&c);
    mx_config_free(&c); /* twice is fine */
    mx_config_free(NULL);
}
END_TEST

START_TEST(every_key)
{
    struct mx_config c;
    parse_ok(&c, "listen 0.0.0.0:9000\n"
                 "log_level debug\n"
                 "data_dir /var/lib/movexd\n"
                 "fsync everysec\n"
                 "max_message_bytes 65536\n"
                 "max_depth 10\n"
                 "max_queue_bytes 2m\n"
                 "max_rooms_per_conn 8\n"
                 "max_connections 5\n"
                 "hello_timeout_ms 250\n"
                 "dedup_window 4096\n"
                 "room default {\n"
                 "  reducer json\n"
                 "  history 7\n"
                 "  max_state_bytes 0\n"
                 "  create_on_subscribe yes\n"
                 "  max_ops 0\n"
                 "}\n");
    ck_assert_str_eq(c.listen_addr, "0.0.0.0");
    ck_assert_int_eq(c.listen_port, 9000);
    ck_assert_int_eq(c.log_level, MX_LOG_DEBUG);
    ck_assert_str_eq(c.data_dir, "/var/lib/movexd");
    ck_assert_int_eq(c.fsync, MX_FSYNC_EVERYSEC);
    ck_assert_uint_eq(c.max_message_bytes, 65536);
    ck_assert_int_eq(c.max_depth, 10);
    ck_assert_uint_eq(c.max_queue_bytes, 2 * MiB);
    ck_assert_uint_eq(c.max_rooms_per_conn, 8);
    ck_assert_uint_eq(c.max_connections, 5);
    ck_assert_int_eq(c.hello_timeout_ms, 250);
    ck_assert_uint_eq(c.dedup_window, 4096);
    ck_assert_str_eq(c.def.name, "default");
    ck_assert_str_eq(c.def.reducer, "json");
    ck_assert_uint_eq(c.def.history, 7);
    ck_assert_uint_eq(c.def.max_state_bytes, 0);
    ck_assert_int_eq(c.def.create_on_subscribe, 1);
    ck_assert_uint_eq(c.def.max_ops, 0);
    ck_assert_uint_eq(c.ntypes, 0);
    mx_config_free(&c);

    parse_ok(&c, "fsync no\nlog_level error\n");
    ck_assert_int_eq(c.fsync, MX_FSYNC_NO);
    ck_assert_int_eq(c.log_level, MX_LOG_ERROR);
    mx_config_free(&c);
    parse_ok(&c, "fsync always\nlog_level warn\n");
    ck_assert_int_eq(c.fsync, MX_FSYNC_ALWAYS);
    ck_assert_int_eq(c.log_level, MX_LOG_WARN);
    mx_config_free(&c);
    /* event_loop: auto by default (evloop.c decides), uv or poll on demand */
    parse_ok(&c, "");
    ck_assert_int_eq(c.event_loop, MX_LOOP_AUTO);
    mx_config_free(&c);
    parse_ok(&c, "event_loop poll\n");
    ck_assert_int_eq(c.event_loop, MX_LOOP_POLL);
    mx_config_free(&c);
    parse_ok(&c, "event_loop uv\n");
    ck_assert_int_eq(c.event_loop, MX_LOOP_UV);
    mx_config_free(&c);
    enum mx_event_loop ev = MX_LOOP_POLL;
    ck_assert_int_eq(mx_config_parse_event_loop("auto", &ev), 0);
    ck_assert_int_eq(ev, MX_LOOP_AUTO);
    ck_assert_int_eq(mx_config_parse_event_loop("epoll", &ev), -1);
    ck_assert_int_eq(mx_config_parse_event_loop(NULL, &ev), -1);
    ck_assert_int_eq(ev, MX_LOOP_AUTO);
}
END_TEST

/* auth_issuer / auth_audience: free text (a URL may hold '#'), unset by
 * default, at most 1023 bytes like every value. */
START_TEST(auth_claim_keys)
{
    struct mx_config c;
    parse_ok(&c, "");
    ck_assert_str_eq(c.auth_issuer, "");
    ck_assert_str_eq(c.auth_audience, "");
    mx_config_free(&c);
    parse_ok(&c, "auth jwt\n"
                 "auth_issuer \"https://auth.example/#tenant 1\"\n"
                 "auth_audience movexd-prod   # comment\n");
    ck_assert_str_eq(c.auth_issuer, "https://auth.example/#tenant 1");
    ck_assert_str_eq(c.auth_audience, "movexd-prod");
    mx_config_free(&c);
    ck_parse_err("auth_audience \"\"\n", "t.conf:1: ", "auth_audience: missing value");
    ck_parse_err("auth_issuer a\nauth_issuer b\n", "t.conf:2: ", "duplicate key 'auth_issuer'");
    ck_parse_err("room default {\nauth_audience x\n}\n", "t.conf:2: ",
                 "'auth_audience' is a global setting");
    char text[1100];
    memcpy(text, "auth_issuer ", 12);
    memset(text + 12, 'i', 1024);
    text[12 + 1024] = '\0';
    ck_parse_err(text, "t.conf:1: ", "auth_issuer: value too long (at most 1023 bytes)");
}
END_TEST

START_TEST(size_suffixes)
{
    static const struct {
        const char *v;
        size_t want;
    } cases[] = {
        { "64", 64 },           { "100k", 100 * 1024 }, { "100K", 100 * 1024 },
        { "3m", 3 * MiB },      { "3M", 3 * MiB },      { "256m", 256 * MiB },
        { "268435456", 256 * MiB },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[64];
        struct mx_config c;
        snprintf(text, sizeof text, "max_message_bytes %s\n", cases[i].v);
        parse_ok(&c, text);
        ck_assert_uint_eq(c.max_message_bytes, cases[i].want);
        mx_config_free(&c);
    }
    struct mx_config c;
    parse_ok(&c, "max_queue_bytes 1g\nroom default {\nmax_state_bytes 2G\n}\n");
    ck_assert_uint_eq(c.max_queue_bytes, 1024 * MiB);
    ck_assert_uint_eq(c.def.max_state_bytes, 2048 * MiB);
    mx_config_free(&c);

    /* durations: plain ms, "ms", "s" */
    parse_ok(&c, "hello_timeout_ms 1500ms\n");
    ck_assert_int_eq(c.hello_timeout_ms, 1500);
    mx_config_free(&c);
    parse_ok(&c, "hello_timeout_ms 3s\n");
    ck_assert_int_eq(c.hello_timeout_ms, 3000);
    mx_config_free(&c);
    parse_ok(&c, "hello_timeout_ms 3600s\n");
    ck_assert_int_eq(c.hello_timeout_ms, 3600000);
    mx_config_free(&c);

    /* suffixes are for sizes only; counts are plain numbers */
    ck_parse_err("max_message_bytes 1mb\n", "t.conf:1: ", "not a size");
    ck_parse_err("max_message_bytes 1.5m\n", "t.conf:1: ", "not a size");
    ck_parse_err("max_message_bytes m\n", "t.conf:1: ", "not a size");
    ck_parse_err("max_message_bytes -1\n", "t.conf:1: ", "not a size");
    ck_parse_err("max_message_bytes 1 m\n", "t.conf:1: ", "not a size");
    ck_parse_err("max_message_bytes 257m\n", "t.conf:1: ", "out of range (64..256m)");
    ck_parse_err("max_message_bytes 63\n", "t.conf:1: ", "out of range (64..256m)");
    ck_parse_err("max_message_bytes 99999999999999999999999\n", "t.conf:1: ", "out of range");
    ck_parse_err("max_message_bytes 17179869184g\n", "t.conf:1: ", "out of range");
    ck_parse_err("max_depth 10k\n", "t.conf:1: ", "not a non-negative whole number");
    ck_parse_err("hello_timeout_ms 10m\n", "t.conf:1: ", "not a duration");
    ck_parse_err("hello_timeout_ms 3601s\n", "t.conf:1: ", "out of range (1..3600000 ms)");
    ck_parse_err("hello_timeout_ms 0\n", "t.conf:1: ", "out of range");
}
END_TEST

START_TEST(booleans)
{
    static const char *const yes[] = { "yes", "true", "on" };
    static const char *const no[] = { "no", "false", "off" };
    for (int i = 0; i < 3; i++) {
        char text[128];
        struct mx_config c;
        snprintf(text, sizeof text, "room default {\ncreate_on_subscribe %s\n}\n", yes[i]);
        parse_ok(&c, text);
        ck_assert_int_eq(c.def.create_on_subscribe, 1);
        mx_config_free(&c);
        snprintf(text, sizeof text,
                 "room default {\ncreate_on_subscribe yes\n}\nroom x {\ncreate_on_subscribe %s\n}\n",
                 no[i]);
        parse_ok(&c, text);
        ck_assert_int_eq(mx_config_room_type(&c, "x", 1)->create_on_subscribe, 0);
        mx_config_free(&c);
    }
    ck_parse_err("room default {\ncreate_on_subscribe 1\n}\n", "t.conf:2: ",
                 "create_on_subscribe: '1' is not a boolean (yes, no, true, false, on, off)");
    ck_parse_err("room default {\ncreate_on_subscribe YES\n}\n", "t.conf:2: ", "not a boolean");
}
END_TEST

START_TEST(quoting_and_comments)
{
    struct mx_config c;
    parse_ok(&c, "data_dir /srv/my data   # trailing comment\n");
    ck_assert_str_eq(c.data_dir, "/srv/my data");
    mx_config_free(&c);

    parse_ok(&c, "data_dir /srv/a#b\n"); /* '#' not after whitespace is data */
    ck_assert_str_eq(c.data_dir, "/srv/a#b");
    mx_config_free(&c);

    parse_ok(&c, "data_dir \"/srv/x # y \"  # comment\n");
    ck_assert_str_eq(c.data_dir, "/srv/x # y ");
    mx_config_free(&c);

    parse_ok(&c, "data_dir \"a\\\"b\\\\c\\d\"\n"); /* \" and \\ are escapes; \d is kept */
    ck_assert_str_eq(c.data_dir, "a\"b\\c\\d");
    mx_config_free(&c);

    parse_ok(&c, "\t max_depth\t 12 \t\r\n"); /* tabs, CRLF */
    ck_assert_int_eq(c.max_depth, 12);
    mx_config_free(&c);

    parse_ok(&c, "log_level \"warn\"\n"); /* quoting is lexical: any value may be quoted */
    ck_assert_int_eq(c.log_level, MX_LOG_WARN);
    mx_config_free(&c);

    parse_ok(&c, "max_depth 7 #x\n#\n   #\nmax_connections 9"); /* no final newline */
    ck_assert_uint_eq(c.max_connections, 9);
    ck_assert_int_eq(c.max_depth, 7);
    mx_config_free(&c);

    ck_parse_err("max_depth 5#\n", "t.conf:1: ", "max_depth: '5#' is not a non-negative whole number");
    ck_parse_err("data_dir \"/srv/x\n", "t.conf:1: ", "data_dir: unterminated quoted value");
    ck_parse_err("data_dir \"/srv/x\" y\n", "t.conf:1: ", "unexpected text after the closing quote");
    ck_parse_err("data_dir \"\"\n", "t.conf:1: ", "data_dir: missing value");
    ck_parse_err("data_dir\n", "t.conf:1: ", "data_dir: missing value");
    ck_parse_err("data_dir    # only a comment\n", "t.conf:1: ", "data_dir: missing value");
}
END_TEST

/* The same named block inherits the same values whether the default block
 * comes before or after it. */
static void check_inherited(const struct mx_config *c)
{
    ck_assert_uint_eq(c->ntypes, 2);
    ck_assert_uint_eq(c->def.history, 50);
    ck_assert_int_eq(c->def.create_on_subscribe, 1);
    ck_assert_uint_eq(c->def.max_ops, 1000); /* not set anywhere: built-in */

    const struct mx_room_type *todo = mx_config_room_type(c, "todo", 4);
    ck_assert_str_eq(todo->name, "todo");
    ck_assert_uint_eq(todo->history, 5000);           /* its own */
    ck_assert_int_eq(todo->create_on_subscribe, 1);   /* from default */
    ck_assert_uint_eq(todo->max_state_bytes, 1 * MiB); /* from default */
    ck_assert_uint_eq(todo->max_ops, 1000);           /* built-in */
    ck_assert_str_eq(todo->reducer, "json");

    const struct mx_room_type *chat = mx_config_room_type(c, "chat", 4);
    ck_assert_str_eq(chat->name, "chat");
    ck_assert_uint_eq(chat->history, 50);             /* from default */
    ck_assert_int_eq(chat->create_on_subscribe, 0);   /* its own, overriding default */
    ck_assert_uint_eq(chat->max_state_bytes, 1 * MiB);
}

START_TEST(inheritance_default_first)
{
    struct mx_config c;
    parse_ok(&c, "room default {\n history 50\n create_on_subscribe yes\n max_state_bytes 1m\n}\n"
                 "room todo {\n history 5000\n}\n"
                 "room chat {\n create_on_subscribe no\n}\n");
    check_inherited(&c);
    mx_config_free(&c);
}
END_TEST

START_TEST(inheritance_default_last)
{
    struct mx_config c;
    parse_ok(&c, "room todo {\n history 5000\n}\n"
                 "room chat {\n create_on_subscribe no\n}\n"
                 "room default {\n history 50\n create_on_subscribe yes\n max_state_bytes 1m\n}\n");
    check_inherited(&c);
    mx_config_free(&c);

    /* default in the middle; global keys between blocks */
    parse_ok(&c, "room todo {\n history 5000\n}\nmax_depth 9\n"
                 "room default {\n history 50\n create_on_subscribe yes\n max_state_bytes 1m\n}\n"
                 "log_level debug\nroom chat {\n create_on_subscribe no\n}\n");
    check_inherited(&c);
    ck_assert_int_eq(c.max_depth, 9);
    ck_assert_int_eq(c.log_level, MX_LOG_DEBUG);
    mx_config_free(&c);

    /* no default block: named blocks start from the built-in defaults */
    parse_ok(&c, "room todo {\n history 5000\n}\n");
    ck_assert_uint_eq(c.ntypes, 1);
    check_default_room(&c.def);
    ck_assert_uint_eq(mx_config_room_type(&c, "todo", 4)->history, 5000);
    ck_assert_uint_eq(mx_config_room_type(&c, "todo", 4)->max_ops, 1000);
    mx_config_free(&c);

    /* an empty block is a type with exactly the default settings */
    parse_ok(&c, "room empty {\n}\nroom default {\n max_ops 3\n}\n");
    ck_assert_str_eq(mx_config_room_type(&c, "empty", 5)->name, "empty");
    ck_assert_uint_eq(mx_config_room_type(&c, "empty", 5)->max_ops, 3);
    mx_config_free(&c);
}
END_TEST

START_TEST(room_type_lookup)
{
    struct mx_config c;
    /* many types, declared out of order: lookup is by exact name */
    parse_ok(&c, "room b {\nmax_ops 2\n}\nroom a.x-y_z {\nmax_ops 1\n}\nroom ab {\nmax_ops 3\n}\n"
                 "room Zed {\nmax_ops 4\n}\nroom a {\nmax_ops 5\n}\n");
    ck_assert_uint_eq(c.ntypes, 5);
    ck_assert_uint_eq(mx_config_room_type(&c, "b", 1)->max_ops, 2);
    ck_assert_uint_eq(mx_config_room_type(&c, "a.x-y_z", 7)->max_ops, 1);
    ck_assert_uint_eq(mx_config_room_type(&c, "ab", 2)->max_ops, 3);
    ck_assert_uint_eq(mx_config_room_type(&c, "Zed", 3)->max_ops, 4);
    ck_assert_uint_eq(mx_config_room_type(&c, "a", 1)->max_ops, 5);
    /* the length counts, not a NUL: "ab:room" with len 2 is "ab" */
    ck_assert_uint_eq(mx_config_room_type(&c, "ab:room", 2)->max_ops, 3);
    ck_assert_uint_eq(mx_config_room_type(&c, "abc", 1)->max_ops, 5);
    /* unknown, empty, case-different, default: the default block */
    ck_assert_ptr_eq(mx_config_room_type(&c, "zed", 3), &c.def);
    ck_assert_ptr_eq(mx_config_room_type(&c, "abc", 3), &c.def);
    ck_assert_ptr_eq(mx_config_room_type(&c, "", 0), &c.def);
    ck_assert_ptr_eq(mx_config_room_type(&c, NULL, 0), &c.def);
    ck_assert_ptr_eq(mx_config_room_type(&c, "default", 7), &c.def);
    mx_config_free(&c);

    /* a conf without named types */
    mx_config_defaults(&c);
    ck_assert_ptr_eq(mx_config_room_type(&c, "todo", 4), &c.def);
    mx_config_free(&c);

    /* longest allowed type name */
    char text[512], name[MX_ROOM_TYPE_MAX + 1];
    memset(name, 'n', MX_ROOM_TYPE_MAX);
    name[MX_ROOM_TYPE_MAX] = '\0';
    snprintf(text, sizeof text, "room %s {\nhistory 1\n}\n", name);
    parse_ok(&c, text);
    ck_assert_uint_eq(mx_config_room_type(&c, name, MX_ROOM_TYPE_MAX)->history, 1);
    ck_assert_str_eq(c.types[0].name, name);
    mx_config_free(&c);
    /* one byte longer is an error */
    char longname[MX_ROOM_TYPE_MAX + 2];
    memset(longname, 'n', MX_ROOM_TYPE_MAX + 1);
    longname[MX_ROOM_TYPE_MAX + 1] = '\0';
    snprintf(text, sizeof text, "\nroom %s {\n}\n", longname);
    ck_parse_err(text, "t.conf:2: ", "room type is too long (201 bytes, at most 200)");
}
END_TEST

START_TEST(errors_keys)
{
    /* unknown keys name the valid ones for the context */
    ck_parse_err("max_depth 3\nfoo bar\n", "t.conf:2: ", "unknown key 'foo'");
    ck_parse_err("foo bar\n", "t.conf:1: ",
                 "global keys are: listen, log_level, log_file, data_dir, client_dir, fsync, event_loop, "
                 "max_message_bytes, "
                 "max_depth, max_queue_bytes, max_rooms_per_conn, max_connections, hello_timeout_ms, "
                 "dedup_window, snapshot_every, wal_segment_bytes, wal_max_bytes, evict_idle_ms");
    ck_parse_err("max_dept 3\n", "t.conf:1: ", "unknown key 'max_dept' (did you mean 'max_depth'?)");
    ck_parse_err("room todo {\n  histroy 3\n}\n", "t.conf:2: ",
                 "unknown key 'histroy' in block 'room todo' (did you mean 'history'?); room keys "
                 "are: reducer, history, max_state_bytes, create_on_subscribe, max_ops");
    ck_parse_err("Listen 127.0.0.1:1\n", "t.conf:1: ", "unknown key 'Listen'");
    /* a key in the wrong context says where it belongs */
    ck_parse_err("\n\nhistory 10\n", "t.conf:3: ", "'history' is a room setting");
    ck_parse_err("room default {\nlisten 127.0.0.1:1\n}\n", "t.conf:2: ",
                 "'listen' is a global setting and cannot be set inside block 'room default' (line 1)");
    ck_parse_err("room x {\nmax_depth 3\n}\n", "t.conf:2: ", "inside block 'room x'");
    /* duplicates in the same block */
    ck_parse_err("max_depth 3\n\nmax_depth 4\n", "t.conf:3: ",
                 "duplicate key 'max_depth' (first set at line 1)");
    ck_parse_err("room a {\nhistory 1\nhistory 1\n}\n", "t.conf:3: ",
                 "duplicate key 'history' in block 'room a' (first set at line 2)");
    ck_parse_err("room default {\nmax_ops 1\nmax_ops 2\n}\n", "t.conf:3: ", "duplicate key 'max_ops'");
    /* ...but the same key in different blocks is fine */
    struct mx_config c;
    parse_ok(&c, "room a {\nhistory 1\n}\nroom b {\nhistory 2\n}\nroom default {\nhistory 3\n}\n");
    mx_config_free(&c);
}
END_TEST

START_TEST(errors_values)
{
    ck_parse_err("log_level verbose\n", "t.conf:1: ",
                 "log_level: 'verbose' is not one of: error, warn, info, debug");
    ck_parse_err("log_level INFO\n", "t.conf:1: ", "not one of");
    ck_parse_err("fsync sometimes\n", "t.conf:1: ",
                 "fsync: 'sometimes' is not one of: always, everysec, no");
    ck_parse_err("event_loop epoll\n", "t.conf:1: ",
                 "event_loop: 'epoll' is not one of: auto, uv, poll");
    ck_parse_err("max_depth 0\n", "t.conf:1: ", "max_depth: 0 is out of range (1..1000)");
    ck_parse_err("max_depth 1001\n", "t.conf:1: ", "out of range (1..1000)");
    ck_parse_err("max_depth ten\n", "t.conf:1: ", "max_depth: 'ten' is not a non-negative whole number");
    ck_parse_err("max_depth +3\n", "t.conf:1: ", "not a non-negative whole number");
    ck_parse_err("max_depth 0x10\n", "t.conf:1: ", "not a non-negative whole number");
    ck_parse_err("max_queue_bytes 1000\n", "t.conf:1: ", "max_queue_bytes: 1000 is out of range (1k..64g)");
    ck_parse_err("max_rooms_per_conn 0\n", "t.conf:1: ", "out of range (1..1000000)");
    ck_parse_err("max_connections 0\n", "t.conf:1: ", "out of range (1..1000000)");
    ck_parse_err("dedup_window 1023\n", "t.conf:1: ", "dedup_window: 1023 is out of range (1024..1048576)");
    ck_parse_err("room default {\nhistory 10000001\n}\n", "t.conf:2: ",
                 "history: 10000001 is out of range (0..10000000)");
    ck_parse_err("room default {\nmax_ops 10000001\n}\n", "t.conf:2: ", "max_ops: 10000001 is out of range");
    ck_parse_err("room default {\nmax_state_bytes 65g\n}\n", "t.conf:2: ", "out of range (0..64g)");
    ck_parse_err("room default {\nreducer crdt\n}\n", "t.conf:2: ",
                 "reducer: unknown reducer 'crdt' (known: json, lua:PATH)");
    ck_parse_err("listen localhost\n", "t.conf:1: ", "listen: 'localhost': missing ':PORT'");
    ck_parse_err("listen 80a\n", "t.conf:1: ", "listen: '80a': the port is not a number");
    char text[2048];
    memset(text, 'a', sizeof text);
    memcpy(text, "data_dir ", 9);
    text[9 + 1024] = '\n';
    text[9 + 1025] = '\0';
    ck_parse_err(text, "t.conf:1: ", "data_dir: value too long (at most 1023 bytes)");
    text[9 + 1023] = '\n';
    text[9 + 1024] = '\0';
    struct mx_config c;
    parse_ok(&c, text); /* 1023 bytes: the longest data_dir */
    ck_assert_uint_eq(strlen(c.data_dir), 1023);
    mx_config_free(&c);
}
END_TEST

START_TEST(errors_blocks)
{
    ck_parse_err("room a {\n}\nroom a {\n}\n", "t.conf:3: ", "duplicate block 'room a' (first at line 1)");
    ck_parse_err("room default {\n}\n\nroom default {\n}\n", "t.conf:4: ",
                 "duplicate block 'room default' (first at line 1)");
    ck_parse_err("max_depth 3\nroom a {\nhistory 1\n", "t.conf:2: ",
                 "block 'room a' is not closed: missing '}'");
    ck_parse_err("room default {\n", "t.conf:1: ", "block 'room default' is not closed");
    ck_parse_err("max_depth 3\n}\n", "t.conf:2: ", "'}' without an open 'room TYPE {' or 'cluster {' block");
    ck_parse_err("room a {\n}\n}\n", "t.conf:3: ", "'}' without an open");
    ck_parse_err("room a {\n  room b {\n  }\n}\n", "t.conf:2: ",
                 "room blocks cannot be nested: block 'room a' (line 1) is still open");
    ck_parse_err("room a\n", "t.conf:1: ", "expected '{' after 'room a'");
    ck_parse_err("room a {}\n", "t.conf:1: ", "unexpected text after '{'");
    ck_parse_err("room a { history 3 }\n", "t.conf:1: ", "unexpected text after '{'");
    ck_parse_err("room a {\n} x\n", "t.conf:2: ", "unexpected text after '}'");
    ck_parse_err("room {\n}\n", "t.conf:1: ", "'room' needs a type");
    ck_parse_err("room\n", "t.conf:1: ", "'room' needs a type");
    ck_parse_err("room to:do {\n}\n", "t.conf:1: ", "invalid room type 'to:do'");
    ck_parse_err("room a/b {\n}\n", "t.conf:1: ", "invalid room type 'a/b'");
    /* what is allowed around braces */
    struct mx_config c;
    parse_ok(&c, "room a{\n}\n  room   b\t{   # comment\n  }   # end\nroom c {\n}#x\n");
    ck_assert_uint_eq(c.ntypes, 3);
    mx_config_free(&c);
}
END_TEST

/* mx_config_set_listen: the address forms, and that a failure changes
 * nothing. */
#define ck_listen(s, addr, port)                                                                   \
    do {                                                                                           \
        struct mx_config c_;                                                                       \
        mx_config_defaults(&c_);                                                                   \
        ck_assert_msg(mx_config_set_listen(&c_, s) == 0, "rejected %s", s);                       \
        ck_assert_str_eq(c_.listen_addr, addr);                                                    \
        ck_assert_int_eq(c_.listen_port, port);                                                    \
    } while (0)
#define ck_listen_bad(s)                                                                           \
    do {                                                                                           \
        struct mx_config c_;                                                                       \
        mx_config_defaults(&c_);                                                                   \
        ck_assert_msg(mx_config_set_listen(&c_, s) == -1, "accepted %s", s);                      \
        ck_assert_str_eq(c_.listen_addr, "127.0.0.1");                                             \
        ck_assert_int_eq(c_.listen_port, 8080);                                                    \
    } while (0)

START_TEST(listen_forms)
{
    ck_listen("127.0.0.1:8080", "127.0.0.1", 8080);
    ck_listen("0.0.0.0:1", "0.0.0.0", 1);
    ck_listen("10.1.2.3:65535", "10.1.2.3", 65535);
    ck_listen("[::1]:9000", "::1", 9000);
    ck_listen("[::]:80", "::", 80);
    ck_listen("[fe80::1:2]:443", "fe80::1:2", 443);
    ck_listen("[::ffff:127.0.0.1]:1", "::ffff:127.0.0.1", 1);
    ck_listen("*:8080", "", 8080);
    ck_listen(":8080", "", 8080);
    ck_listen("8080", "", 8080);
    ck_listen("0", "", 0);
    ck_listen("127.0.0.1:0", "127.0.0.1", 0);
    ck_listen("lo:7000", "lo", 7000);
    ck_listen("eth0.100:7000", "eth0.100", 7000);
    ck_listen("localhost:1", "localhost", 1);

    ck_listen_bad("");
    ck_listen_bad("127.0.0.1");
    ck_listen_bad("127.0.0.1:");
    ck_listen_bad("127.0.0.1:65536");
    ck_listen_bad("127.0.0.1:100000");
    ck_listen_bad("127.0.0.1:-1");
    ck_listen_bad("127.0.0.1:80x");
    ck_listen_bad("127.0.0.1: 80");
    ck_listen_bad("127.0.0.256:80");
    ck_listen_bad("1.2.3:80");
    ck_listen_bad("::1:8080");
    ck_listen_bad("[::1]");
    ck_listen_bad("[::1]8080");
    ck_listen_bad("[::1:8080");
    ck_listen_bad("[nothex::1]:80");
    ck_listen_bad("[127.0.0.1]:80");
    ck_listen_bad("a b:80");
    ck_listen_bad("*x:80");
    ck_listen_bad("99999999999999999999999");
    ck_listen_bad("000080000");
    ck_assert_int_eq(mx_config_set_listen(NULL, "1"), -1);

    /* the same through the conf, with the reason in the message */
    struct mx_config c;
    parse_ok(&c, "listen [::1]:0\n");
    ck_assert_str_eq(c.listen_addr, "::1");
    ck_assert_int_eq(c.listen_port, 0);
    mx_config_free(&c);
    ck_parse_err("listen 127.0.0.1:70000\n", "t.conf:1: ", "listen: '127.0.0.1:70000': port 70000 is out of range (0..65535)");
    ck_parse_err("listen ::1:80\n", "t.conf:1: ", "an IPv6 address needs brackets, e.g. [::1]:8080");
    ck_parse_err("listen 127.0.0.1:\n", "t.conf:1: ", "missing port");
    ck_parse_err("listen 300.0.0.1:80\n", "t.conf:1: ", "'300.0.0.1' is not an IPv4 address");
    ck_parse_err("listen [::g]:80\n", "t.conf:1: ", "'::g' is not an IPv6 address");
}
END_TEST

START_TEST(log_level_names)
{
    enum mx_log_level lv = MX_LOG_INFO;
    ck_assert_int_eq(mx_config_parse_log_level("error", &lv), 0);
    ck_assert_int_eq(lv, MX_LOG_ERROR);
    ck_assert_int_eq(mx_config_parse_log_level("warn", &lv), 0);
    ck_assert_int_eq(lv, MX_LOG_WARN);
    ck_assert_int_eq(mx_config_parse_log_level("info", &lv), 0);
    ck_assert_int_eq(lv, MX_LOG_INFO);
    ck_assert_int_eq(mx_config_parse_log_level("debug", &lv), 0);
    ck_assert_int_eq(lv, MX_LOG_DEBUG);
    ck_assert_int_eq(mx_config_parse_log_level("warning", &lv), -1);
    ck_assert_int_eq(mx_config_parse_log_level("", &lv), -1);
    ck_assert_int_eq(mx_config_parse_log_level(NULL, &lv), -1);
    ck_assert_int_eq(lv, MX_LOG_DEBUG); /* untouched on failure */
}
END_TEST

START_TEST(error_buffer_and_name)
{
    struct mx_config c;
    char err[16];
    /* a short buffer truncates, never overflows */
    ck_assert_int_eq(mx_config_parse(&c, "foo 1\n", "some/long/name.conf", err, sizeof err), -1);
    ck_assert_uint_eq(strlen(err), sizeof err - 1);
    ck_assert_int_eq(strncmp(err, "some/long/name.", 15), 0);
    mx_config_free(&c);
    /* no buffer at all */
    ck_assert_int_eq(mx_config_parse(&c, "foo 1\n", "x", NULL, 0), -1);
    mx_config_free(&c);
    /* no name */
    char big[256];
    ck_assert_int_eq(mx_config_parse(&c, "foo 1\n", NULL, big, sizeof big), -1);
    ck_assert_int_eq(strncmp(big, "<string>:1: ", 12), 0);
    mx_config_free(&c);
    ck_assert_int_eq(mx_config_parse(&c, NULL, "x", big, sizeof big), -1);
    mx_config_free(&c);
    /* success clears err */
    strcpy(big, "stale");
    ck_assert_int_eq(mx_config_parse(&c, "", "x", big, sizeof big), 0);
    ck_assert_str_eq(big, "");
    mx_config_free(&c);
}
END_TEST

START_TEST(load_files)
{
    struct mx_config c;
    char err[512];
    /* the shipped example conf (tests run from the repo root) */
    int rc = mx_config_load(&c, "conf/movexd.conf", err, sizeof err);
    ck_assert_msg(rc == 0, "conf/movexd.conf: %s", err);
    ck_assert_str_eq(c.listen_addr, "127.0.0.1");
    ck_assert_int_eq(c.listen_port, 8080);
    ck_assert_str_eq(c.data_dir, "./data");
    ck_assert_str_eq(c.def.reducer, "json");
    ck_assert_int_eq(c.def.create_on_subscribe, 1);
    const struct mx_room_type *todo = mx_config_room_type(&c, "todo", 4);
    ck_assert_str_eq(todo->name, "todo");
    ck_assert_uint_eq(todo->history, 5000);
    ck_assert_int_eq(todo->create_on_subscribe, 1); /* inherited */
    mx_config_free(&c);

    /* a file that is not there names the file and the reason */
    rc = mx_config_load(&c, "test/no/such/file.conf", err, sizeof err);
    ck_assert_int_eq(rc, -1);
    ck_assert_str_eq(err, "test/no/such/file.conf: cannot open: No such file or directory");
    mx_config_free(&c);

    /* a directory opens but cannot be read */
    rc = mx_config_load(&c, "conf", err, sizeof err);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strncmp(err, "conf: ", 6) == 0, "%s", err);
    mx_config_free(&c);

    /* errors in a file carry the path and line; NUL bytes are refused */
    char path[] = "/tmp/mx-config-test-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    static const char bad[] = "max_depth 3\n\nfsync sometimes\n";
    ck_assert_int_eq(write(fd, bad, sizeof bad - 1), (int)(sizeof bad - 1));
    rc = mx_config_load(&c, path, err, sizeof err);
    ck_assert_int_eq(rc, -1);
    char want[128];
    snprintf(want, sizeof want, "%s:3: fsync:", path);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
    mx_config_free(&c);

    ck_assert_int_eq(ftruncate(fd, 0), 0);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    static const char nul[] = "max_depth 3\nmax_ops\0 1\n";
    ck_assert_int_eq(write(fd, nul, sizeof nul - 1), (int)(sizeof nul - 1));
    rc = mx_config_load(&c, path, err, sizeof err);
    ck_assert_int_eq(rc, -1);
    snprintf(want, sizeof want, "%s:2: NUL byte", path);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
    mx_config_free(&c);

    /* a good file larger than one read buffer */
    ck_assert_int_eq(ftruncate(fd, 0), 0);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    for (int i = 0; i < 2000; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "# comment line %d, padding padding\n", i);
        ck_assert_int_eq(write(fd, line, (size_t)n), n);
    }
    static const char tail[] = "room big {\nhistory 42\n}\n";
    ck_assert_int_eq(write(fd, tail, sizeof tail - 1), (int)(sizeof tail - 1));
    rc = mx_config_load(&c, path, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_uint_eq(mx_config_room_type(&c, "big", 3)->history, 42);
    mx_config_free(&c);

    close(fd);
    unlink(path);
}
END_TEST

/* mx_config_diff: conf names of what differs, room keys as TYPE.KEY, blocks
 * added/removed as +room:/-room:, "" when equal; cut with "..." when long. */
START_TEST(diff_names_changed_keys)
{
    struct mx_config a, b;
    char err[300], out[256];
    ck_assert_int_eq(mx_config_parse(&a, "listen 127.0.0.1:1\nroom todo {\n history 5\n}\nroom old {\n}\n", "a", err, sizeof err), 0);
    ck_assert_int_eq(mx_config_parse(&b, "listen 127.0.0.1:1\nroom todo {\n history 5\n}\nroom old {\n}\n", "b", err, sizeof err), 0);
    ck_assert_uint_eq(mx_config_diff(&a, &b, out, sizeof out), 0);
    ck_assert_str_eq(out, "");
    mx_config_free(&b);
    ck_assert_int_eq(mx_config_parse(&b, "listen 127.0.0.1:2\nmax_depth 9\nallowed_origins http://x\n"
                                         "room default {\n max_ops 3\n}\nroom todo {\n history 6\n anonymous read\n}\n"
                                         "room chat {\n}\n", "b", err, sizeof err), 0);
    mx_config_diff(&a, &b, out, sizeof out);
    /* room todo inherits default's max_ops, so it changed there too */
    ck_assert_str_eq(out, "listen,max_depth,allowed_origins,default.max_ops,+room:chat,todo.history,todo.max_ops,"
                          "todo.anonymous,-room:old");
    char small[16];
    size_t want = mx_config_diff(&a, &b, small, sizeof small);
    ck_assert_uint_eq(want, strlen(out));
    ck_assert_str_eq(small, "listen,max_d...");
    mx_config_free(&a);
    mx_config_free(&b);
}
END_TEST

/* mx_config_key_line: the top-level line of a key, never one in a room block. */
START_TEST(key_line_of_top_level_keys)
{
    char path[] = "/tmp/mx-conf-line-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "# c\nroom todo {\n    history 5\n}\n  history_x 1\n\tlisten 127.0.0.1:1\nhistory 9\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ck_assert_int_eq(mx_config_key_line(path, "listen"), 6);
    ck_assert_int_eq(mx_config_key_line(path, "history"), 7);
    ck_assert_int_eq(mx_config_key_line(path, "data_dir"), 0);
    ck_assert_int_eq(mx_config_key_line(NULL, "listen"), 0);
    unlink(path);
    ck_assert_int_eq(mx_config_key_line(path, "listen"), 0);
}
END_TEST

/* The cluster block: absent means standalone; every key lands in its field;
 * a Sentinel list; the block's place in the file does not matter. */
START_TEST(cluster_block)
{
    struct mx_config c;
    parse_ok(&c, "max_depth 9\n");
    ck_assert_int_eq(c.cluster.enabled, 0);
    ck_assert_str_eq(c.cluster.key_prefix, "movexd:");
    ck_assert_int_eq(c.cluster.connect_timeout_ms, 2000);
    ck_assert_int_eq(c.cluster.command_timeout_ms, 5000);
    mx_config_free(&c);

    parse_ok(&c, "room default {\n history 5\n}\ncluster {\n  node_id n-1.a_b\n  redis 127.0.0.1:6390\n"
                 "  key_prefix \"t:\"\n  connect_timeout_ms 1s\n  command_timeout_ms 250\n"
                 "  reconnect_max_ms 3s\n  append_retries 4\n}\nmax_depth 7\n");
    ck_assert_int_eq(c.cluster.enabled, 1);
    ck_assert_str_eq(c.cluster.node_id, "n-1.a_b");
    ck_assert_str_eq(c.cluster.redis.host, "127.0.0.1");
    ck_assert_int_eq(c.cluster.redis.port, 6390);
    ck_assert_uint_eq(c.cluster.nsentinels, 0);
    ck_assert_str_eq(c.cluster.key_prefix, "t:");
    ck_assert_int_eq(c.cluster.connect_timeout_ms, 1000);
    ck_assert_int_eq(c.cluster.command_timeout_ms, 250);
    ck_assert_int_eq(c.cluster.reconnect_max_ms, 3000);
    ck_assert_uint_eq(c.cluster.append_retries, 4);
    ck_assert_int_eq(c.cluster.wait_replicas, 0);
    ck_assert_int_eq(c.cluster.wait_timeout_ms, 1000);
    ck_assert_int_eq(c.max_depth, 7);
    ck_assert_uint_eq(c.def.history, 5);
    mx_config_free(&c);

    parse_ok(&c, "cluster {\n node_id a\n sentinels redis-a:26379, [::1]:26380,127.0.0.1:26381\n"
                 " master_name mymaster\n}\n");
    ck_assert_uint_eq(c.cluster.nsentinels, 3);
    ck_assert_str_eq(c.cluster.sentinels[0].host, "redis-a");
    ck_assert_int_eq(c.cluster.sentinels[0].port, 26379);
    ck_assert_str_eq(c.cluster.sentinels[1].host, "::1");
    ck_assert_int_eq(c.cluster.sentinels[1].port, 26380);
    ck_assert_int_eq(c.cluster.sentinels[2].port, 26381);
    ck_assert_str_eq(c.cluster.master_name, "mymaster");
    ck_assert_int_eq(c.cluster.redis.port, 0);
    mx_config_free(&c);

    parse_ok(&c, "cluster {\n node_id a\n redis h:1\n wait_replicas 2\n wait_timeout_ms 4s\n}\n");
    ck_assert_int_eq(c.cluster.wait_replicas, 2);
    ck_assert_int_eq(c.cluster.wait_timeout_ms, 4000);
    mx_config_free(&c);
}
END_TEST

/* Every way a cluster block can be wrong names its line. */
START_TEST(cluster_errors)
{
    ck_parse_err("cluster {\n redis 127.0.0.1:1\n}\n", "t.conf:1: ", "node_id is required");
    ck_parse_err("cluster {\n node_id a\n}\n", "t.conf:1: ", "set redis HOST:PORT, or sentinels");
    ck_parse_err("cluster {\n node_id a\n redis h:1\n sentinels h:2\n master_name m\n}\n", "t.conf:1: ",
                 "not both");
    ck_parse_err("cluster {\n node_id a\n sentinels h:2\n}\n", "t.conf:1: ", "needs master_name");
    ck_parse_err("cluster {\n node_id a\n redis h:1\n master_name m\n}\n", "t.conf:1: ",
                 "master_name only applies with sentinels");
    ck_parse_err("cluster {\n node_id a\n redis 6379\n}\n", "t.conf:3: ", "the host is missing");
    ck_parse_err("cluster {\n node_id a\n redis *:6379\n}\n", "t.conf:3: ", "the host is missing");
    ck_parse_err("cluster {\n node_id a\n redis h:0\n}\n", "t.conf:3: ", "port 0");
    ck_parse_err("cluster {\n node_id a\n redis h:70000\n}\n", "t.conf:3: ", "out of range");
    ck_parse_err("cluster {\n node_id a\n redis ::1:5\n}\n", "t.conf:3: ", "needs brackets");
    ck_parse_err("cluster {\n node_id a b\n redis h:1\n}\n", "t.conf:2: ", "is not a node id");
    ck_parse_err("cluster {\n node_id 123456789012345678901234567890123\n}\n", "t.conf:2: ",
                 "is not a node id");
    ck_parse_err("cluster {\n node_id a\n sentinels a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9\n master_name m\n}\n",
                 "t.conf:3: ", "more than 8");
    ck_parse_err("cluster {\n node_id a\n sentinels a:1,b\n master_name m\n}\n", "t.conf:3: ",
                 "missing ':PORT'");
    ck_parse_err("cluster {\n node_id a\n node_id b\n}\n", "t.conf:3: ",
                 "duplicate key 'node_id' in block 'cluster' (first set at line 2)");
    ck_parse_err("cluster {\n nodeid a\n}\n", "t.conf:2: ", "unknown key 'nodeid' in block 'cluster' (did you mean 'node_id'?)");
    ck_parse_err("cluster {\n max_depth 3\n}\n", "t.conf:2: ", "cluster keys are: node_id, redis");
    ck_parse_err("cluster {\n node_id a\n redis h:1\n", "t.conf:1: ", "block 'cluster' is not closed");
    ck_parse_err("cluster {\n room x {\n", "t.conf:2: ", "block 'cluster' (line 1) is still open");
    ck_parse_err("room x {\n cluster {\n", "t.conf:2: ", "unknown key 'cluster' in block 'room x'");
    ck_parse_err("cluster {\n node_id a\n redis h:1\n}\ncluster {\n}\n", "t.conf:5: ",
                 "duplicate block 'cluster' (first at line 1)");
    ck_parse_err("cluster\n", "t.conf:1: ", "expected '{' after 'cluster'");
    ck_parse_err("cluster { node_id a\n", "t.conf:1: ", "unexpected text after '{'");
    ck_parse_err("cluster {\n node_id a\n redis h:1\n connect_timeout_ms 5\n}\n", "t.conf:4: ",
                 "out of range");
    ck_parse_err("node_id a\n", "t.conf:1: ", "'node_id' is a cluster setting: put it inside the 'cluster");
    ck_parse_err("cluster {\n node_id a\n redis h:1\n wait_replicas 17\n}\n", "t.conf:4: ", "out of range");
    ck_parse_err("cluster {\n node_id a\n redis h:1\n wait_timeout_ms 0\n}\n", "t.conf:4: ", "out of range");
    ck_parse_err("cluster {\n node_id a\n redis h:1\n wait_replicas 1\n wait_timeout_ms 5s\n}\n",
                 "t.conf:1: ", "wait_timeout_ms (5000) must be below command_timeout_ms (5000)");
}
END_TEST

/* A reload's log line names changed cluster keys, and the block coming or
 * going; the key line of the block is its own line. */
START_TEST(cluster_diff_and_line)
{
    struct mx_config a, b, c;
    char out[256], err[256];
    parse_ok(&a, "cluster {\n node_id a\n redis h:1\n}\n");
    parse_ok(&b, "cluster {\n node_id a\n redis h:2\n command_timeout_ms 9s\n}\n");
    parse_ok(&c, "max_depth 5\n");
    mx_config_diff(&a, &b, out, sizeof out);
    ck_assert_str_eq(out, "cluster.redis,cluster.command_timeout_ms");
    mx_config_diff(&a, &a, out, sizeof out);
    ck_assert_str_eq(out, "");
    mx_config_diff(&c, &a, out, sizeof out);
    ck_assert_str_eq(out, "max_depth,+cluster");
    mx_config_diff(&a, &c, out, sizeof out);
    ck_assert_str_eq(out, "max_depth,-cluster");
    mx_config_free(&a);
    mx_config_free(&b);
    mx_config_free(&c);
    ck_assert_int_eq(mx_config_parse(&a, "cluster {\n node_id a\n sentinels h:1\n master_name m\n}\n", "x",
                                     err, sizeof err), 0);
    ck_assert_int_eq(mx_config_parse(&b, "cluster {\n node_id a\n sentinels h:1 h:2\n master_name m\n}\n",
                                     "x", err, sizeof err), 0);
    mx_config_diff(&a, &b, out, sizeof out);
    ck_assert_str_eq(out, "cluster.sentinels");
    mx_config_free(&a);
    mx_config_free(&b);

    char path[] = "/tmp/mx-conf-cl-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "# c\nroom x {\n}\ncluster {\n listen 1\n}\nlisten 127.0.0.1:1\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ck_assert_int_eq(mx_config_key_line(path, "cluster"), 4);
    ck_assert_int_eq(mx_config_key_line(path, "listen"), 7);
    unlink(path);
}
END_TEST

Suite *mx_suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, every_key);
    tcase_add_test(tc, auth_claim_keys);
    tcase_add_test(tc, size_suffixes);
    tcase_add_test(tc, booleans);
    tcase_add_test(tc, quoting_and_comments);
    tcase_add_test(tc, inheritance_default_first);
    tcase_add_test(tc, inheritance_default_last);
    tcase_add_test(tc, room_type_lookup);
    tcase_add_test(tc, errors_keys);
    tcase_add_test(tc, errors_values);
    tcase_add_test(tc, errors_blocks);
    tcase_add_test(tc, listen_forms);
    tcase_add_test(tc, log_level_names);
    tcase_add_test(tc, error_buffer_and_name);
    tcase_add_test(tc, load_files);
    tcase_add_test(tc, diff_names_changed_keys);
    tcase_add_test(tc, key_line_of_top_level_keys);
    tcase_add_test(tc, cluster_block);
    tcase_add_test(tc, cluster_errors);
    tcase_add_test(tc, cluster_diff_and_line);
    suite_add_tcase(s, tc);
    return s;
}
