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

#define MX_ROOM_ID_MAX 200
#define MX_CLIENT_ID_MAX 128
#define MX_MAX_SAFE_INT 9007199254740991.0 /* 2^53 - 1: integers JS keeps exact */

enum mx_req_type {
    MX_REQ_HELLO,
    MX_REQ_CREATE,
    MX_REQ_SUBSCRIBE,
    MX_REQ_UNSUBSCRIBE,
    MX_REQ_ACTION,
    MX_REQ_SYNC,
    MX_REQ_GET,
    MX_REQ_PING,
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
    int has_base, has_dep, strict;
    uint64_t base, dep;
    const json_t *action; /* action: the {type, payload} object */
    size_t msglen;        /* bytes of the whole message */
};

/* Decode msg (a JSON object). Returns 0, or a negative mx_err with a message
 * in why; req->has_id/id are set whenever the id itself was valid, so the
 * error reply can echo it. */
int mx_proto_decode(const json_t *msg, struct mx_request *req, char *why, size_t whylen);

/* Room id: 1..200 bytes of [A-Za-z0-9_.:-]; the type is the part before the
 * first ':' (the whole id when there is none) and must not be empty.
 * Returns the type length, or 0 when invalid. */
size_t mx_proto_room_type_len(const char *room, size_t len);

/* Client id: 1..128 bytes of [A-Za-z0-9_.:@-]. */
int mx_proto_client_ok(const char *c, size_t len);

/* Encoders append one complete message to out. */
void mx_proto_error(mx_buf *out, int has_id, uint64_t id, int err, const char *message);
/* Start a reply object: {"type":"<type>"[,"id":N][,"room":"<room>"] and no
 * closing brace; the caller adds fields and '}'. */
void mx_proto_begin(mx_buf *out, const char *type, int has_id, uint64_t id, const char *room,
                    size_t roomlen);
void mx_proto_field_u64(mx_buf *out, const char *name, uint64_t v);
void mx_proto_field_hex(mx_buf *out, const char *name, const uint8_t dig[MX_DIGEST_LEN]);
void mx_proto_field_str(mx_buf *out, const char *name, const char *s, size_t len);

#endif
