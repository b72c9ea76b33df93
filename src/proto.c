/* proto.c - decoding and validating protocol v1 requests (the server's
 * replies are encoded in proto_encode.c).
 *
 * Numbers arrive as doubles (the parser uses JSON_DECODE_INT_AS_REAL, as the
 * protocol treats all numbers as doubles), so every integer field is checked
 * to be integral, non-negative and at most 2^53-1, the largest integer a
 * JavaScript client can hold exactly; n at most 2^53-2, so that next_n
 * (n + 1) is one too.
 */
#include "movexd/proto.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/json_parse.h"
#include "movexd/jwt.h"

static int room_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

size_t mx_proto_room_type_len(const char *room, size_t len)
{
    if (len == 0 || len > MX_ROOM_ID_MAX)
        return 0;
    size_t type = len;
    for (size_t i = 0; i < len; i++) {
        if (!room_char((unsigned char)room[i]))
            return 0;
        if (room[i] == ':' && type == len)
            type = i;
    }
    return type;
}

int mx_proto_client_ok(const char *c, size_t len)
{
    if (len == 0 || len > MX_CLIENT_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)c[i];
        if (!(room_char(ch) || ch == '@'))
            return 0;
    }
    return 1;
}

/* get_uint's refusals: not a non-negative integer at all, or one past
 * 2^53-1 (which a client cannot hold exactly), told apart so the message
 * names the bound instead of calling a big integer "not positive". */
enum { NOT_UINT = -1, PAST_MAX = -2 };
#define SAFE_MAX_TEXT "at most 2^53-1 (9007199254740991)"

/* A JSON number that is a non-negative integer no larger than 2^53-1. */
static int get_uint(const json_t *v, uint64_t *out)
{
    double d;
    if (json_is_real(v))
        d = json_real_value(v);
    else if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else
        return NOT_UINT;
    if (!(d >= 0) || floor(d) != d)
        return NOT_UINT;
    if (d > MX_MAX_SAFE_INT)
        return PAST_MAX;
    *out = (uint64_t)d;
    return 0;
}

#define FAIL(...)                                                              \
    do {                                                                       \
        snprintf(why, whylen, __VA_ARGS__);                                    \
        return MX_EBAD_REQUEST;                                                \
    } while (0)

/* The protocol's top-level fields, by slot. */
enum { K_ID, K_TYPE, K_ROOM, K_N, K_BASE, K_DEP, K_STRICT, K_ACTION, K_CLIENT, K_TOKEN, K_SINCE, K_STATE, K_COUNT };
static const char *const KEY_NAME[K_COUNT] = {"id",     "type",   "room",   "n",     "base",  "dep",
                                              "strict", "action", "client", "token", "since", "state"};

/* The request's top-level members: a jansson object, or the flat list of
 * the fast parser (json_parse.h, mx_json_parse_top) - the same values
 * either way. Nested values are always jansson's. The list is read once
 * into slots (the decoder asks for ~8 fields: a walk of the list each was
 * ~500 instructions per action). */
struct view {
    const json_t *obj;
    const struct mx_json_top *top;
    const json_t *slot[K_COUNT];
};

/* The slot of a member name, or -1 for a name the protocol does not use. */
static int key_slot(const char *k, size_t kn)
{
    int c;
    switch (kn) {
    case 1: c = K_N; break;
    case 2: c = K_ID; break;
    case 3: c = K_DEP; break;
    case 4: c = k[0] == 't' ? K_TYPE : k[0] == 'r' ? K_ROOM : K_BASE; break;
    case 5: c = k[1] == 'o' ? K_TOKEN : k[1] == 'i' ? K_SINCE : K_STATE; break;
    case 6: c = k[1] == 't' ? K_STRICT : k[1] == 'c' ? K_ACTION : K_CLIENT; break;
    default: return -1;
    }
    return memcmp(k, KEY_NAME[c], kn) == 0 ? c : -1;
}

static const json_t *get(const struct view *m, int k)
{
    return m->top ? m->slot[k] : json_object_get(m->obj, KEY_NAME[k]);
}

static int decode_room(const struct view *msg, struct mx_request *req, char *why, size_t whylen)
{
    const json_t *r = get(msg, K_ROOM);
    if (!json_is_string(r))
        FAIL("\"room\" must be a string");
    req->room = json_string_value(r);
    req->roomlen = json_string_length(r);
    req->typelen = mx_proto_room_type_len(req->room, req->roomlen);
    if (!req->typelen) {
        snprintf(why, whylen,
                 "invalid room id: 1..200 bytes of A-Z a-z 0-9 _ . : - with a non-empty type before ':'");
        return MX_EBAD_ROOM;
    }
    return 0;
}

static int decode_since(const struct view *msg, struct mx_request *req, int required, char *why,
                        size_t whylen)
{
    const json_t *s = get(msg, K_SINCE);
    if (!s || json_is_null(s)) {
        if (required)
            FAIL("\"since\" is required: {\"seq\": integer, \"checksum\": 32 hex}");
        return 0;
    }
    if (!json_is_object(s))
        FAIL("\"since\" must be an object {\"seq\", \"checksum\"}");
    int rc = get_uint(json_object_get(s, "seq"), &req->since.seq);
    if (rc == PAST_MAX)
        FAIL("\"since.seq\" must be " SAFE_MAX_TEXT);
    if (rc)
        FAIL("\"since.seq\" must be a non-negative integer");
    const json_t *c = json_object_get(s, "checksum");
    if (!json_is_string(c) ||
        mx_digest_parse_hex(json_string_value(c), json_string_length(c), req->since.checksum))
        FAIL("\"since.checksum\" must be 32 hex characters");
    req->since.present = 1;
    return 0;
}

static int decode_action(const struct view *msg, struct mx_request *req, char *why, size_t whylen)
{
    int rc = get_uint(get(msg, K_N), &req->n);
    if (rc == NOT_UINT || (rc == 0 && req->n == 0))
        FAIL("\"n\" must be a positive integer");
    /* the reply's next_n (n + 1) must stay an integer a client holds exactly */
    if (rc == PAST_MAX || req->n > MX_N_MAX)
        FAIL("\"n\" must be at most 2^53-2 (9007199254740990)");
    const json_t *v = get(msg, K_BASE);
    if (v && !json_is_null(v)) {
        rc = get_uint(v, &req->base);
        if (rc == PAST_MAX)
            FAIL("\"base\" must be " SAFE_MAX_TEXT);
        if (rc)
            FAIL("\"base\" must be a non-negative integer");
        req->has_base = 1;
    }
    v = get(msg, K_DEP);
    if (v && !json_is_null(v)) {
        /* one n, or an array of up to MX_DEPS_MAX of them (protocol
         * refinement: an action built on several earlier ones) */
        int one = !json_is_array(v);
        size_t count = one ? 1 : json_array_size(v);
        if (count > MX_DEPS_MAX)
            FAIL("\"dep\" may list at most %d actions", MX_DEPS_MAX);
        for (size_t i = 0; i < count; i++) {
            uint64_t d;
            rc = get_uint(one ? v : json_array_get(v, i), &d);
            if (rc == PAST_MAX)
                FAIL("\"dep\" must be " SAFE_MAX_TEXT);
            if (rc || d == 0)
                FAIL("\"dep\" must be a positive integer or an array of them");
            if (d >= req->n)
                FAIL("\"dep\" must name earlier actions (each dep < n)");
            req->deps[req->ndeps++] = d;
        }
    }
    v = get(msg, K_STRICT);
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v))
            FAIL("\"strict\" must be a boolean");
        req->strict = json_is_true(v);
        if (req->strict && !req->has_base)
            FAIL("a strict action needs \"base\"");
    }
    if (msg->top && msg->top->view) {
        /* read as a patch view (json_parse.h): an object whose type is
         * the string "patch", so both checks below hold */
        req->patch = msg->top->view;
        return 0;
    }
    v = get(msg, K_ACTION);
    if (!json_is_object(v))
        FAIL("\"action\" must be an object {\"type\": string, \"payload\": any}");
    if (!json_is_string(json_object_get(v, "type")))
        FAIL("\"action.type\" must be a string");
    req->action = v;
    return 0;
}

static int decode(const struct view *msg, struct mx_request *req, char *why, size_t whylen)
{
    memset(req, 0, sizeof(*req));
    const json_t *id = get(msg, K_ID);
    int id_bad = 0;
    if (id && !json_is_null(id)) {
        id_bad = get_uint(id, &req->id);
        req->has_id = !id_bad;
    }
    const char *type = json_string_value(get(msg, K_TYPE));
    if (!type)
        FAIL("\"type\" must be a string");
    if (id_bad == PAST_MAX)
        FAIL("\"id\" must be " SAFE_MAX_TEXT);
    if (id_bad)
        FAIL("\"id\" must be a non-negative integer");
    int rc;
    /* the request that comes by the million first: one strcmp, not seven */
    int action = !strcmp(type, "action");
    if (!action && !strcmp(type, "hello")) {
        req->type = MX_REQ_HELLO;
        const json_t *c = get(msg, K_CLIENT);
        if (c && !json_is_null(c)) {
            if (!json_is_string(c) || !mx_proto_client_ok(json_string_value(c), json_string_length(c)))
                FAIL("\"client\" must be 1..128 bytes of A-Z a-z 0-9 _ . : @ -");
            if (mx_client_id_reserved(json_string_value(c), json_string_length(c)))
                FAIL("client ids starting with \"" MX_ADMIN_CLIENT_PREFIX "\" are reserved for the admin API");
            req->client = json_string_value(c);
            req->clientlen = json_string_length(c);
        }
        const json_t *t = get(msg, K_TOKEN);
        if (t && !json_is_null(t)) {
            if (!json_is_string(t))
                FAIL("\"token\" must be a string");
            req->token = json_string_value(t);
        }
        return 0;
    }
    if (!action && !strcmp(type, "ping")) {
        req->type = MX_REQ_PING;
        return 0;
    }
    if (action)
        req->type = MX_REQ_ACTION;
    else if (!strcmp(type, "create"))
        req->type = MX_REQ_CREATE;
    else if (!strcmp(type, "presence"))
        req->type = MX_REQ_PRESENCE;
    else if (!strcmp(type, "subscribe"))
        req->type = MX_REQ_SUBSCRIBE;
    else if (!strcmp(type, "unsubscribe"))
        req->type = MX_REQ_UNSUBSCRIBE;
    else if (!strcmp(type, "sync"))
        req->type = MX_REQ_SYNC;
    else if (!strcmp(type, "get"))
        req->type = MX_REQ_GET;
    else {
        size_t tl = strlen(type);
        if (tl > 40) { /* cut on a UTF-8 character boundary: the reply stays valid text */
            tl = 40;
            while (tl && ((unsigned char)type[tl] & 0xC0) == 0x80)
                tl--;
        }
        snprintf(why, whylen, "unknown message type \"%.*s\"", (int)tl, type);
        return MX_EUNKNOWN_TYPE;
    }
    if (!req->has_id)
        FAIL("\"id\" is required on %s", type);
    if ((rc = decode_room(msg, req, why, whylen)))
        return rc;
    switch (req->type) {
    case MX_REQ_CREATE: {
        const json_t *s = get(msg, K_STATE);
        req->state = s; /* any JSON value; absent means {} */
        return 0;
    }
    case MX_REQ_SUBSCRIBE:
        return decode_since(msg, req, 0, why, whylen);
    case MX_REQ_SYNC:
        return decode_since(msg, req, 1, why, whylen);
    case MX_REQ_ACTION:
        return decode_action(msg, req, why, whylen);
    case MX_REQ_PRESENCE:
        /* any JSON value; null clears (so it must be there, even as null) */
        req->presence = get(msg, K_STATE);
        if (!req->presence)
            FAIL("\"state\" is required (any JSON value; null clears the presence)");
        return 0;
    default:
        return 0;
    }
}

int mx_proto_decode(const json_t *msg, struct mx_request *req, char *why, size_t whylen)
{
    return decode(&(struct view){.obj = msg}, req, why, whylen);
}

int mx_proto_decode_top(const struct mx_json_top *top, struct mx_request *req, char *why, size_t whylen)
{
    struct view v = {.top = top};
    for (size_t i = 0; i < top->n; i++) {
        int k = key_slot(top->m[i].key, top->m[i].keylen);
        if (k >= 0)
            v.slot[k] = top->m[i].val; /* no duplicates: the parser refuses them */
    }
    return decode(&v, req, why, whylen);
}
