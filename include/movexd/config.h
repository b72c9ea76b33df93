/* config.h - the daemon's configuration (conf/movexd.conf).
 *
 * Format: one `key value` per line, `#` starts a comment, blank lines are
 * ignored; per room-type settings live in blocks
 *
 *     room TYPE {
 *         reducer json
 *         ...
 *     }
 *
 * the optional block `cluster { ... }` (docs/CLUSTER.md) turns on cluster
 * mode, and the block `room default { ... }` applies to every type the file does
 * not name. A named block starts from the default block's values (wherever
 * in the file the default block stands). Unknown keys, bad values and
 * duplicate keys are errors that name file:line.
 */
#ifndef MOVEXD_CONFIG_H
#define MOVEXD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define MX_ROOM_TYPE_MAX 200

enum mx_log_level { MX_LOG_ERROR = 0, MX_LOG_WARN, MX_LOG_INFO, MX_LOG_DEBUG };
enum mx_fsync_policy { MX_FSYNC_ALWAYS = 0, MX_FSYNC_EVERYSEC, MX_FSYNC_NO };
/* `event_loop`: which loop libwebsockets runs on (evloop.h). */
enum mx_event_loop { MX_LOOP_AUTO = 0, MX_LOOP_UV, MX_LOOP_POLL };
enum mx_auth_mode { MX_AUTH_NONE = 0, MX_AUTH_JWT };

/* Rights on a room (also used by jwt.h). */
#ifndef MX_RIGHT_READ
#define MX_RIGHT_READ 1u   /* subscribe, sync, get */
#define MX_RIGHT_WRITE 2u  /* action */
#define MX_RIGHT_CREATE 4u /* create, subscribe that creates */
#endif

struct mx_room_type {
    char name[MX_ROOM_TYPE_MAX + 1]; /* "default" for the default block */
    char reducer[32];                /* "json" or "lua" */
    const char *reducer_path;        /* lua: absolute file path, owned by the config */
    size_t reducer_budget;           /* lua: VM instructions per call */
    size_t reducer_memory;           /* lua: bytes per VM */
    size_t history;                  /* actions kept in the log for catch-up */
    size_t max_state_bytes;          /* serialized state bound; 0 = none */
    int create_on_subscribe;         /* subscribe to a missing room creates it with {} */
    size_t max_ops;                  /* operations per patch action; 0 = none */
    size_t max_presence_bytes;       /* one connection's presence state; 0 = presence off */
    size_t max_presence_room_bytes;  /* all presence states in one room (subscribe reply) */
    unsigned anonymous;              /* rights without a token (auth jwt) */
    unsigned authenticated;          /* rights every valid token adds */
};

/* A Redis (or Sentinel) address of the cluster block: host name or IP
 * address, and a port 1..65535. */
struct mx_endpoint {
    char host[256];
    int port;
};

#define MX_CLUSTER_SENTINELS_MAX 8
#define MX_CLUSTER_NODE_ID_MAX 32

/* The `cluster { ... }` block (docs/CLUSTER.md). enabled = 0 when the conf
 * has no such block: single-node mode with the WAL, exactly as before. */
struct mx_cluster_config {
    int enabled;
    char node_id[MX_CLUSTER_NODE_ID_MAX + 1]; /* unique per node: client ids and presence carry it */
    struct mx_endpoint redis;                 /* `redis ADDR:PORT` (port 0 = not set) */
    struct mx_endpoint sentinels[MX_CLUSTER_SENTINELS_MAX]; /* `sentinels A:P, B:P` */
    size_t nsentinels;
    char master_name[256];     /* Sentinel's name of the primary */
    char key_prefix[64];       /* every Redis key and channel starts with it */
    int connect_timeout_ms;    /* TCP connect + handshake to Redis */
    int command_timeout_ms;    /* a command without reply this long: the link is dropped */
    int reconnect_max_ms;      /* reconnect backoff cap */
    size_t append_retries;     /* head moved under an append: retries on the fresh head */
    int wait_replicas;         /* > 0: each append batch is followed by WAIT N (group commit) */
    int wait_timeout_ms;       /* ... WAIT's timeout; fewer replicas by then: unavailable */
    char journal_dir[1024];    /* the journal on disk; "" = DATA_DIR/cluster-journal */
};

struct mx_config {
    char listen_addr[128];  /* "127.0.0.1", "::1", "lo"; "" = every address ("*" in the conf) */
    int listen_port;        /* 0 = let the kernel pick (printed at start) */
    enum mx_log_level log_level;
    char log_file[1024]; /* "" = stderr (the journal under systemd) */
    char data_dir[1024];
    char client_dir[1024]; /* browser library and demo served over HTTP */
    int serve_demo;        /* serve the demo app at / and /demo/ (the library always) */
    enum mx_fsync_policy fsync;
    enum mx_event_loop event_loop; /* MOVEXD_EVLIB, when set, overrides it (main.c) */

    size_t max_message_bytes;  /* one inbound WebSocket message */
    int max_depth;             /* JSON nesting of an inbound message */
    size_t max_queue_bytes;    /* send queue per connection before close 4008 */
    size_t max_rooms_per_conn; /* subscriptions per connection */
    size_t max_connections;    /* total */
    int hello_timeout_ms;      /* hello must arrive within this */
    size_t dedup_window;       /* outcomes remembered per (client, room), >= 1024 */

    /* durability (storage_wal.c) */
    size_t snapshot_every;     /* WAL records of a room between its snapshots */
    size_t wal_segment_bytes;  /* preallocated size of one WAL segment */
    size_t wal_max_bytes;      /* past this, dirty rooms are snapshotted and old segments deleted */
    int evict_idle_ms;         /* rooms without subscribers idle this long leave memory; 0 = never */

    /* security */
    enum mx_auth_mode auth;
    char auth_hs256_secret_file[1024];
    char auth_ed25519_public_key_file[1024];
    int auth_leeway_ms;          /* clock skew allowed on exp/nbf */
    char auth_issuer[1024];      /* tokens must have this "iss" ("" = not checked) */
    char auth_audience[1024];    /* tokens' "aud" must name this ("" = not checked) */
    int allow_insecure_listen;   /* auth none on a non-loopback address */
    char allowed_origins[2048];  /* space/comma separated; "" = see docs/SECURITY.md */
    size_t max_connections_per_ip;
    size_t rate_messages_per_sec; /* token bucket refill per connection */
    size_t rate_burst;            /* bucket size */
    size_t rate_close_after;      /* rate-limited messages in a row before close 4029 */
    int idle_timeout_ms;          /* no traffic (incl. pongs) this long: close; 0 = never */
    char tls_cert_file[1024];
    char tls_key_file[1024];
    char tls_chain_file[1024];
    char admin_token_file[1024]; /* bearer token for /admin/ (unset: admin API off) */

    struct mx_cluster_config cluster; /* the `cluster` block; standalone when absent */

    struct mx_room_type def;   /* the `room default` block (or built-in defaults) */
    struct mx_room_type *types;/* named blocks */
    size_t ntypes;
    char **reducer_files;      /* owns every room type's reducer_path */
    size_t nreducer_files;
};

/* Fill c with built-in defaults (what an empty conf file means). */
void mx_config_defaults(struct mx_config *c);

/* Parse a conf file on top of the built-in defaults. c's previous contents
 * are neither read nor freed (free them first). Returns 0, or -1 with
 * "FILE:LINE: message" (or "FILE: message" when the file cannot be read) in
 * err and c left holding the built-in defaults; either way mx_config_free(c)
 * is safe afterwards. docs/CONFIG.md describes the format and every key. */
int mx_config_load(struct mx_config *c, const char *path, char *err, size_t errlen);

/* The same from a string (tests); `name` stands in for the file name. */
int mx_config_parse(struct mx_config *c, const char *text, const char *name, char *err, size_t errlen);

/* The cluster journal's directory: journal_dir, or DATA_DIR/cluster-journal-NODE_ID. */
void mx_config_journal_dir(const struct mx_config *c, char *out, size_t n);

/* Settings for a room type (the named block, or the default block). */
const struct mx_room_type *mx_config_room_type(const struct mx_config *c, const char *type, size_t len);

/* Parse "ADDR:PORT", "[v6]:PORT", "*:PORT" or ":PORT" / "PORT" into c. 0 or
 * -1 (c unchanged). "*" and an omitted address are stored as "" (every
 * address); IPv6 is stored without brackets. */
int mx_config_set_listen(struct mx_config *c, const char *s);

/* Parse a log level name ("error", "warn", "info", "debug"). 0 or -1. */
int mx_config_parse_log_level(const char *s, enum mx_log_level *out);

/* Parse an event loop name ("auto", "uv", "poll"). 0 or -1. */
int mx_config_parse_event_loop(const char *s, enum mx_event_loop *out);

/* The conf names of the settings that differ from a to b, comma-separated
 * into out ("max_depth,todo.history,+room:chat,-room:old": a room key as
 * TYPE.KEY, a room block added as "+room:TYPE", removed as "-room:TYPE"),
 * for the reload log line; "" when nothing differs. Returns the length
 * wanted (out is cut, ending in "...", when it is longer). */
size_t mx_config_diff(const struct mx_config *a, const struct mx_config *b, char *out, size_t outlen);

/* The line of the conf file at path where the top-level key is set, or 0
 * (not set there, or the file cannot be read): for FILE:LINE in messages
 * about values that parse but cannot be used. "cluster.KEY": KEY inside
 * the cluster block. */
int mx_config_key_line(const char *path, const char *key);

void mx_config_free(struct mx_config *c);

#endif
