/* proto.h - protocol v1 messages: decoding a parsed JSON object into a
 * typed, validated request, and encoding the server's replies as text.
 *
 * Decoding checks every field's type and range so the engine never sees a
 * malformed request; strings in a request borrow from the jansson value.
 */
#ifndef MOVEXD_PROTO_H
#define MOVEXD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "movexd/buf.h"
#include "movexd/json.h"

struct mx_patch_view; /* patch.h */

#define MX_ROOM_ID_MAX 200
#define MX_CLIENT_ID_MAX 128
#define MX_MAX_SAFE_INT 9007199254740991.0 /* 2^53 - 1: integers JS keeps exact */
#define MX_DEPS_MAX 16 /* entries of an action's "dep" array */
#define MX_N_MAX 9007199254740990ULL /* 2^53 - 2: the largest n, so next_n is <= 2^53 - 1 */

enum mx_req_type {
    MX_REQ_HELLO,
    MX_REQ_CREATE,
    MX_REQ_SUBSCRIBE,
    MX_REQ_UNSUBSCRIBE,
    MX_REQ_ACTION,
    MX_REQ_SYNC,
    MX_REQ_GET,
    MX_REQ_PING,
    MX_REQ_PRESENCE,
};

struct mx_since {
    int present;
    uint64_t seq;
    uint8_t checksum[MX_DIGEST_LEN];
};

struct mx_request {
    enum mx_req_type type;
    int has_id;
    uint64_t id;
    const char *room; /* validated room id */
    size_t roomlen;
    size_t typelen;   /* bytes of the room type prefix */
    const char *client; /* hello: requested client id (NULL = none) */
    size_t clientlen;
    const char *token;  /* hello: token (NULL = none) */
    const json_t *state; /* create: initial state (NULL = {}) */
    struct mx_since since;
    uint64_t n;
    int has_base, strict;
    uint64_t base;
    size_t ndeps;                  /* action: entries of "dep" (0: none) */
    uint64_t deps[MX_DEPS_MAX];    /* each < n */
    const json_t *action; /* action: the {type, payload} object, or NULL when... */
    const struct mx_patch_view *patch; /* ...read as a patch view instead (json_parse.h) */
    const char *action_text; /* its source text when exactly as mx_proto_entry would
                              * encode it (json_parse.h), else NULL; set by the engine */
    size_t action_len;
    const json_t *presence; /* presence: the state (JSON null: clear) */
    size_t msglen;        /* bytes of the whole message */
};

/* Decode msg (a JSON object). Returns 0, or a negative mx_err with a message
 * in why; req->has_id/id are set whenever the id itself was valid, so the
 * error reply can echo it. */
int mx_proto_decode(const json_t *msg, struct mx_request *req, char *why, size_t whylen);
/* The same for a message parsed by mx_json_parse_top (json_parse.h): its
 * members' values are borrowed exactly as from the object. */
struct mx_json_top;
int mx_proto_decode_top(const struct mx_json_top *top, struct mx_request *req, char *why, size_t whylen);

/* Room id: 1..200 bytes of [A-Za-z0-9_.:-]; the type is the part before the
 * first ':' (the whole id when there is none) and must not be empty.
 * Returns the type length, or 0 when invalid. */
size_t mx_proto_room_type_len(const char *room, size_t len);

/* Client id: 1..128 bytes of [A-Za-z0-9_.:@-]. */
int mx_proto_client_ok(const char *c, size_t len);

/* ---- Encoding: one encoder per server message (proto_encode.c) ----
 *
 * mx_proto_<message>(out, &m) appends one complete message, a JSON object,
 * to out (an allocation failure sets out->oom; check once at the end). The
 * engine decides what to say and fills the message's struct; only these
 * encoders know field names and order. Field order is fixed: tests compare
 * bytes, and docs/PROTOCOL.md ("Server messages, byte for byte") shows each
 * one as encoded.
 *
 * Optional fields are absent when their member is zero / NULL. To add one
 * (an ack's `effects`, a welcome's `conn`, ...): add a member here and one
 * line in the encoder; callers that use designated initialisers and do not
 * know the field are unchanged. Members named *_json take pre-encoded JSON
 * text (the engine encodes values once and may reuse them).
 */

/* Who a reply answers: the request's id when it had one, and the room
 * (NULL: no room field). Replies echo "id" then "room" after "type". */
struct mx_msg_head {
    int has_id;
    uint64_t id;
    const char *room;
    size_t roomlen;
    /* optional: room's field `,"room":"<room>"` already encoded
     * (mx_room.room_field), copied instead of escaping room again */
    const char *room_field;
    size_t room_fieldlen;
};

struct mx_msg_welcome {
    struct mx_msg_head h; /* no room */
    const char *client;
    size_t clientlen;
    const char *server; /* "movexd/<version>" */
    uint64_t conn; /* the connection's id, unique per connection (0: absent) */
    uint64_t max_message_bytes, max_depth, max_queue_bytes, max_rooms, dedup_window;
};

struct mx_msg_created {
    struct mx_msg_head h;
    uint64_t seq;
    const uint8_t *checksum;
};

struct mx_msg_snapshot {
    struct mx_msg_head h;
    uint64_t seq;
    const uint8_t *checksum;
    uint64_t next_n;
    const mx_val *state;
    const char *presence; /* subscribe: a JSON array of mx_proto_presence_entry (NULL: absent) */
    size_t presencelen;
};

struct mx_oplog;
/* entries from+1 .. to of log (each entry's text is one encoded entry) */
struct mx_msg_actions {
    struct mx_msg_head h;
    uint64_t from, to, next_n;
    const struct mx_oplog *log;
    const char *presence; /* as in mx_msg_snapshot */
    size_t presencelen;
};

struct mx_msg_ack {
    struct mx_msg_head h;
    uint64_t n, seq;
    const uint8_t *prev, *checksum;
    int duplicate;
    const json_t *effects; /* NULL: none (the payload is the patch) */
};

struct mx_msg_reject {
    struct mx_msg_head h;
    uint64_t n;
    int code;            /* negative mx_err */
    const char *message; /* NULL or "": the code's fixed text */
    uint64_t seq;
    const uint8_t *checksum;
    int duplicate;
};

/* A fwd is the log entry as applied, with the room and the checksum before
 * it: {"type":"fwd","room":R,"prev":P,<the entry's fields>}. */
struct mx_msg_fwd {
    struct mx_msg_head h; /* room only */
    const uint8_t *prev;
    const char *entry; /* an encoded entry (mx_proto_entry) */
    size_t entrylen;
};

/* An applied action as logged and as carried by `actions` and `fwd`:
 * {"seq","checksum","action","client","n"[,"effects"]}. */
struct mx_msg_entry {
    uint64_t seq;
    const uint8_t *checksum; /* after the action */
    const json_t *action;
    const char *action_text; /* non-NULL: action's encoding, already made (copied as is) */
    size_t action_len;
    const char *client;
    size_t clientlen;
    uint64_t n;
    const json_t *effects; /* NULL: none */
    int has_ctx;           /* app reducer: "time" and "seed" (hex) follow */
    uint64_t time_ms, seed;
};

/* error: the message is made valid UTF-8 (it may quote what a client sent). */
struct mx_msg_error {
    struct mx_msg_head h;
    int code;            /* negative mx_err */
    const char *message; /* NULL or "": the code's fixed text */
};

/* Presence of another connection in a room (presence.h): its state, or
 * {"left":true} when state is NULL. */
struct mx_msg_presence {
    struct mx_msg_head h; /* room only */
    const char *client;
    size_t clientlen;
    uint64_t conn;
    const char *state; /* encoded JSON; NULL: left */
    size_t statelen;
};

void mx_proto_welcome(mx_buf *out, const struct mx_msg_welcome *m);
void mx_proto_created(mx_buf *out, const struct mx_msg_created *m);
void mx_proto_snapshot(mx_buf *out, const struct mx_msg_snapshot *m);
void mx_proto_actions(mx_buf *out, const struct mx_msg_actions *m);
void mx_proto_ack(mx_buf *out, const struct mx_msg_ack *m);
void mx_proto_reject(mx_buf *out, const struct mx_msg_reject *m);
void mx_proto_fwd(mx_buf *out, const struct mx_msg_fwd *m);
void mx_proto_pong(mx_buf *out, const struct mx_msg_head *h);
void mx_proto_unsubscribed(mx_buf *out, const struct mx_msg_head *h);
void mx_proto_presence(mx_buf *out, const struct mx_msg_presence *m);
void mx_proto_presence_ok(mx_buf *out, const struct mx_msg_head *h);
/* One element of a subscribe reply's "presence" array (m->h unused). */
void mx_proto_presence_entry(mx_buf *out, const struct mx_msg_presence *m);
void mx_proto_error_msg(mx_buf *out, const struct mx_msg_error *m);
/* The common case of error: a request's id, no room. */
void mx_proto_error(mx_buf *out, int has_id, uint64_t id, int err, const char *message);
/* 0, or -1 when an action or effects value cannot be encoded (out->oom is
 * not set then: the caller refuses the action). */
int mx_proto_entry(mx_buf *out, const struct mx_msg_entry *m);

/* Field helpers for other JSON the server writes (admin API bodies). */
void mx_proto_field_u64n(mx_buf *out, const char *name, size_t namelen, uint64_t v);
void mx_proto_field_hexn(mx_buf *out, const char *name, size_t namelen, const uint8_t dig[MX_DIGEST_LEN]);
void mx_proto_field_strn(mx_buf *out, const char *name, size_t namelen, const char *s, size_t len);
/* name: a string literal (its length known at compile time: the encoders
 * write a dozen such fields per action) */
#define mx_proto_field_u64(out, name, v) mx_proto_field_u64n((out), "" name, sizeof(name) - 1, (v))
#define mx_proto_field_hex(out, name, dig) mx_proto_field_hexn((out), "" name, sizeof(name) - 1, (dig))
#define mx_proto_field_str(out, name, s, len) mx_proto_field_strn((out), "" name, sizeof(name) - 1, (s), (len))

#endif
