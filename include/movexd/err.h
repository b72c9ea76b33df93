/* err.h - every error the daemon reports, as values, in one list.
 *
 * Functions return 0 or a negative enum mx_err. MX_ERR_MAP below is the
 * only place an error is defined (libuv's UV_ERRNO_MAP is the model): each
 * row gives
 *
 *   NAME    the enum constant MX_E<NAME>
 *   VALUE   its number; stable (it is the reject-counter index, -VALUE,
 *           and clients may have logged it), contiguous from -1
 *   CODE    the protocol code sent in `error` and `reject`
 *   MESSAGE the default human text
 *   HTTP    the admin API's status when this error is the answer (a
 *           `reject` from an admin action is always 409, see ADMIN.md)
 *   CLOSE   the WebSocket close code when this error ends a connection,
 *           0 when it never does by itself
 *
 * and the enum, the table (err.c), the HTTP status mapping and the counter
 * index are generated from it. docs/PROTOCOL.md's error table lists the
 * same rows in the same order; test_err.c compares the two both ways. To
 * add an error: add a row at the end (next VALUE), add it to the docs
 * table, done.
 */
#ifndef MOVEXD_ERR_H
#define MOVEXD_ERR_H

#include <stddef.h>

/* X(NAME, VALUE, CODE, MESSAGE, HTTP, CLOSE) */
#define MX_ERR_MAP(X)                                                                              \
    X(BAD_REQUEST, -1, "bad_request", "the request is malformed", 400, 0)                         \
    X(BAD_JSON, -2, "bad_json", "the message is not a UTF-8 JSON object", 400, 0)                 \
    X(UNKNOWN_TYPE, -3, "unknown_type", "unknown message type", 400, 0)                           \
    X(HELLO_FIRST, -4, "hello_first", "the first message must be hello", 400, 0)                  \
    X(UNAUTHORIZED, -5, "unauthorized", "authentication failed", 401, 4001)                      \
    X(FORBIDDEN, -6, "forbidden", "not allowed", 403, 0)                                          \
    X(NO_SUCH_ROOM, -7, "no_such_room", "no such room", 404, 0)                                   \
    X(ROOM_EXISTS, -8, "room_exists", "the room already exists", 409, 0)                          \
    X(BAD_ROOM, -9, "bad_room", "invalid room id", 400, 0)                                        \
    X(NOT_SUBSCRIBED, -10, "not_subscribed", "not subscribed to this room", 409, 0)               \
    X(TEST_FAILED, -11, "test_failed", "a test operation failed", 409, 0)                         \
    X(BAD_PATCH, -12, "bad_patch", "the patch cannot be applied", 409, 0)                         \
    X(STALE, -13, "stale", "base is not the room's head seq", 409, 0)                             \
    X(AFTER_REJECT, -14, "after_reject", "the action it depends on was rejected", 409, 0)         \
    X(TOO_OLD, -15, "too_old", "n is older than the server remembers", 409, 0)                    \
    X(TOO_LARGE, -16, "too_large", "too large", 413, 1009)                                        \
    X(RATE_LIMITED, -17, "rate_limited", "too many messages", 429, 4029)                          \
    X(BAD_ACTION, -18, "bad_action", "the room's reducer does not accept this action", 409, 0)    \
    X(TOO_DEEP, -19, "too_deep", "JSON nesting is too deep", 400, 0)                              \
    X(LIMIT, -20, "limit", "a connection limit was reached", 429, 1013)                           \
    X(UNAVAILABLE, -21, "unavailable", "the server cannot make actions durable right now", 503, 0) \
    X(NOMEM, -22, "no_memory", "the server is out of memory", 503, 1011)                          \
    X(BAD_DEP, -23, "bad_dep", "dep names an action the server never received", 409, 0)           \
    X(INTERNAL, -24, "internal", "internal error", 500, 0)                                        \
    X(REDUCER_ERROR, -25, "reducer_error", "the room's reducer failed on this action", 409, 0)    \
    X(REDUCER_BUDGET, -26, "reducer_budget", "the room's reducer ran past its instruction budget", \
      409, 0)                                                                                      \
    X(REDUCER_MEMORY, -27, "reducer_memory", "the room's reducer ran past its memory limit", 409, \
      0)                                                                                           \
    X(BAD_EFFECTS, -28, "bad_effects", "the reducer's effects cannot be applied", 409, 0)         \
    X(APP_REJECT, -29, "app_reject", "the reducer rejected the action", 409, 0)

enum mx_err {
    MX_OK = 0,
#define MX__ERR_ENUM(name, value, code, msg, http, close) MX_E##name = value,
    MX_ERR_MAP(MX__ERR_ENUM)
#undef MX__ERR_ENUM
};

/* Entries in the table, MX_OK's slot included: counter arrays are indexed
 * by mx_err_index() in [0, MX_ERR_COUNT). */
enum {
#define MX__ERR_ONE(name, value, code, msg, http, close) +1
    MX_ERR_COUNT = 1 MX_ERR_MAP(MX__ERR_ONE)
#undef MX__ERR_ONE
};

/* An unknown value (positive, or below the last row) reads as MX_EINTERNAL
 * in all of these. */
const char *mx_err_code(int err);     /* "bad_request", ...; "ok" for 0 */
const char *mx_err_message(int err);  /* default human text */
unsigned mx_err_http_status(int err); /* 200 for 0 */
int mx_err_close_code(int err);       /* 0: never closes by itself */
int mx_err_index(int err);            /* -err, in [0, MX_ERR_COUNT) */

/* The error whose protocol code is code[0..len), or 0 when none is. */
int mx_err_from_code(const char *code, size_t len);

#endif
