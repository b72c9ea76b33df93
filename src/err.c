/* err.c - the single table from enum mx_err to wire code and message.
 * docs/PROTOCOL.md reproduces it; a unit test checks every entry is set. */
#include "movexd/err.h"

static const struct {
    const char *code;
    const char *msg;
} table[MX_ERR_COUNT] = {
    [0] = {"ok", "ok"},
    [1] = {"bad_request", "the request is malformed"},
    [2] = {"bad_json", "the message is not a UTF-8 JSON object"},
    [3] = {"unknown_type", "unknown message type"},
    [4] = {"hello_first", "the first message must be hello"},
    [5] = {"unauthorized", "authentication failed"},
    [6] = {"forbidden", "not allowed"},
    [7] = {"no_such_room", "no such room"},
    [8] = {"room_exists", "the room already exists"},
    [9] = {"bad_room", "invalid room id"},
    [10] = {"not_subscribed", "not subscribed to this room"},
    [11] = {"test_failed", "a test operation failed"},
    [12] = {"bad_patch", "the patch cannot be applied"},
    [13] = {"stale", "base is not the room's head seq"},
    [14] = {"after_reject", "the action it depends on was rejected"},
    [15] = {"too_old", "n is older than the server remembers"},
    [16] = {"too_large", "too large"},
    [17] = {"rate_limited", "too many messages"},
    [18] = {"bad_action", "the room's reducer does not accept this action"},
    [19] = {"too_deep", "JSON nesting is too deep"},
    [20] = {"limit", "a connection limit was reached"},
    [21] = {"unavailable", "the server cannot make actions durable right now"},
    [22] = {"no_memory", "the server is out of memory"},
    [23] = {"bad_dep", "dep names an action the server never received"},
    [24] = {"internal", "internal error"},
};

static int idx(int err)
{
    int i = -err;
    return (i >= 0 && i < MX_ERR_COUNT) ? i : 24;
}

const char *mx_err_code(int err) { return table[idx(err)].code; }
const char *mx_err_message(int err) { return table[idx(err)].msg; }
