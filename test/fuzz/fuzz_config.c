/* fuzz_config.c - libFuzzer harness for the conf parser (config.c).
 *
 * Input: conf text (up to the first NUL byte, as a file with a NUL is
 * refused before parsing). Also, its first line goes to
 * mx_config_set_listen and mx_config_parse_log_level.
 *
 * Oracles, beyond the sanitizers:
 *  - a failed parse leaves exactly the built-in defaults and an error that
 *    starts with "NAME:";
 *  - a successful parse gives values inside the documented ranges
 *    (docs/CONFIG.md), room types sorted by name, unique, each found by
 *    mx_config_room_type, and parsing the same text again gives the same
 *    configuration byte for byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/config.h"

#define MAX_INPUT_BYTES (64 * 1024)
#define NAME "fuzz.conf"

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_config: check failed: %s: ", #cond);         \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define MiB ((size_t)1 << 20)

static void check_ranges(const struct mx_config *c)
{
    CHECK(c->listen_port >= 0 && c->listen_port <= 65535, "port %d", c->listen_port);
    CHECK(memchr(c->listen_addr, '\0', sizeof(c->listen_addr)), "listen_addr not terminated");
    CHECK(memchr(c->data_dir, '\0', sizeof(c->data_dir)) && c->data_dir[0], "data_dir");
    CHECK(memchr(c->client_dir, '\0', sizeof(c->client_dir)) && c->client_dir[0], "client_dir");
    CHECK(c->log_level >= MX_LOG_ERROR && c->log_level <= MX_LOG_DEBUG, "log_level %d", c->log_level);
    CHECK(c->fsync >= MX_FSYNC_ALWAYS && c->fsync <= MX_FSYNC_NO, "fsync %d", c->fsync);
    CHECK(c->max_message_bytes >= 64 && c->max_message_bytes <= 256 * MiB, "max_message_bytes %zu",
          c->max_message_bytes);
    CHECK(c->max_depth >= 1 && c->max_depth <= 1000, "max_depth %d", c->max_depth);
    CHECK(c->max_queue_bytes >= 1024 && c->max_queue_bytes <= 64 * 1024 * MiB,
          "max_queue_bytes %zu", c->max_queue_bytes);
    CHECK(c->max_rooms_per_conn >= 1 && c->max_rooms_per_conn <= 1000000, "max_rooms_per_conn %zu",
          c->max_rooms_per_conn);
    CHECK(c->max_connections >= 1 && c->max_connections <= 1000000, "max_connections %zu",
          c->max_connections);
    CHECK(c->hello_timeout_ms >= 1 && c->hello_timeout_ms <= 3600000, "hello_timeout_ms %d",
          c->hello_timeout_ms);
    CHECK(c->dedup_window >= 1024 && c->dedup_window <= 1048576, "dedup_window %zu", c->dedup_window);
    CHECK(c->snapshot_every >= 1 && c->snapshot_every <= 100000000, "snapshot_every %zu",
          c->snapshot_every);
    CHECK(c->wal_segment_bytes >= 64 * 1024 && c->wal_segment_bytes <= 4096 * MiB,
          "wal_segment_bytes %zu", c->wal_segment_bytes);
    CHECK(c->wal_max_bytes >= MiB && c->wal_max_bytes <= (size_t)1024 * 1024 * MiB,
          "wal_max_bytes %zu", c->wal_max_bytes);
    CHECK(c->evict_idle_ms >= 0 && c->evict_idle_ms <= 86400000, "evict_idle_ms %d", c->evict_idle_ms);

    const struct mx_room_type *all[1] = {&c->def};
    for (size_t i = 0; i <= c->ntypes; i++) {
        const struct mx_room_type *t = i == c->ntypes ? all[0] : &c->types[i];
        CHECK(memchr(t->name, '\0', sizeof(t->name)) && t->name[0], "room type without a name");
        CHECK(!strcmp(t->reducer, "json") || (!strcmp(t->reducer, "lua") && t->reducer_path),
              "room %s: reducer %.32s", t->name, t->reducer);
        CHECK(t->history <= 10000000, "room %s: history %zu", t->name, t->history);
        CHECK(t->max_state_bytes <= (size_t)64 * 1024 * MiB, "room %s: max_state_bytes %zu", t->name,
              t->max_state_bytes);
        CHECK(t->create_on_subscribe == 0 || t->create_on_subscribe == 1,
              "room %s: create_on_subscribe %d", t->name, t->create_on_subscribe);
        CHECK(t->max_ops <= 10000000, "room %s: max_ops %zu", t->name, t->max_ops);
        if (i < c->ntypes) {
            if (i)
                CHECK(strcmp(c->types[i - 1].name, t->name) < 0, "room types not sorted/unique: %s, %s",
                      c->types[i - 1].name, t->name);
            CHECK(mx_config_room_type(c, t->name, strlen(t->name)) == t, "room type %s not found",
                  t->name);
        }
    }
    CHECK(mx_config_room_type(c, "", 0) == &c->def, "empty type is not the default");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT_BYTES)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    struct mx_config c, again, defaults;
    char err[512], err2[512];
    memset(err, 'X', sizeof(err));
    mx_config_defaults(&defaults);
    int rc = mx_config_parse(&c, text, NAME, err, sizeof(err));
    CHECK(rc == 0 || rc == -1, "parse returned %d", rc);
    CHECK(memchr(err, '\0', sizeof(err)), "error text not terminated");
    if (rc) {
        CHECK(!strncmp(err, NAME ":", strlen(NAME) + 1), "error does not name the file: %s", err);
        CHECK(!memcmp(&c, &defaults, sizeof(c)), "failed parse did not leave the defaults (%s)", err);
    } else {
        check_ranges(&c);
        CHECK(mx_config_parse(&again, text, NAME, err2, sizeof(err2)) == 0, "second parse failed: %s",
              err2);
        struct mx_config a, b;
        memcpy(&a, &c, sizeof(a));
        memcpy(&b, &again, sizeof(b));
        a.types = b.types = NULL;
        CHECK(!memcmp(&a, &b, sizeof(a)), "two parses of the same text differ");
        CHECK(c.ntypes == again.ntypes &&
                  (!c.ntypes || !memcmp(c.types, again.types, c.ntypes * sizeof(*c.types))),
              "two parses give different room types");
        mx_config_free(&again);
    }
    mx_config_free(&c);

    /* the first line as a listen address and as a log level */
    char *nl = strchr(text, '\n');
    if (nl)
        *nl = '\0';
    struct mx_config l;
    mx_config_defaults(&l);
    if (mx_config_set_listen(&l, text) == 0) {
        CHECK(l.listen_port >= 0 && l.listen_port <= 65535, "listen %s: port %d", text, l.listen_port);
        CHECK(memchr(l.listen_addr, '\0', sizeof(l.listen_addr)), "listen %s: address", text);
    } else {
        CHECK(!memcmp(&l, &defaults, sizeof(l)), "failed mx_config_set_listen changed the config");
    }
    enum mx_log_level lv = MX_LOG_INFO;
    if (mx_config_parse_log_level(text, &lv) == 0)
        CHECK(lv >= MX_LOG_ERROR && lv <= MX_LOG_DEBUG, "log level %d", lv);
    free(text);
    return 0;
}
