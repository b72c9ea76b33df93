/* fuzz_lua.c - libFuzzer harness for Lua reducers' value conversion
 * (lua_json.c: JSON -> Lua, the lazy state view, Lua -> JSON) and effect
 * validation, through the real reducer entry point (reducer_lua.c) in the
 * sandbox (lua_sandbox.c).
 *
 * Input: one JSON object {"state": ANY, "action": ANY}. Four fixed reducers
 * run on it:
 *  - echo:   `return action.payload` as effects;
 *  - whole:  `return {{op = "replace", path = "", value = state}}` (a view
 *            returned as a value);
 *  - copy:   walks the state view with pairs, ipairs and # into plain Lua
 *            tables and returns that copy the same way;
 *  - reject: `return nil, action.type, action.payload`.
 *
 * Oracles, beyond the sanitizers and "never panics":
 *  - echo succeeds exactly when the payload is an array of well-formed
 *    operations within max_ops (mx_patch_validate agrees), and its effects
 *    then equal the payload as JSON;
 *  - whole and copy succeed and their value equals the state (so the view
 *    and the conversion lose nothing, and key order does not matter);
 *  - reject gives app_reject only for a code matching ^[a-z][a-z0-9_]{0,63}$
 *    and its message is valid UTF-8 of at most 200 bytes; reducer_error
 *    otherwise;
 *  - the same input twice gives the same text (deterministic key order).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "movexd/err.h"
#include "movexd/json.h"
#include "movexd/lua_json.h"
#include "movexd/patch.h"
#include "movexd/reducer.h"
#include "movexd/reducer_lua.h"

#define MAX_INPUT_BYTES (64 * 1024)

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_lua: check failed: %s: ", #cond);            \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const char *const SOURCES[] = {
    "return {reduce = function(state, action) return action.payload end}\n",
    "return {reduce = function(state) return {{op = 'replace', path = '', value = state}} end}\n",
    "local function copy(v)\n"
    "  if type(v) ~= 'userdata' or v == movex.null then return v end\n"
    "  local out, n = {}, #v\n"
    "  if n > 0 then for i, x in ipairs(v) do out[i] = copy(x) end return out end\n"
    "  local any = false\n"
    "  for k, x in pairs(v) do any = true; out[k] = copy(x) end\n"
    "  if not any and tostring(v) == 'movex state array' then return movex.array() end\n"
    "  return out\n"
    "end\n"
    "return {reduce = function(state) return {{op = 'replace', path = '', value = copy(state)}} end}\n",
    "return {reduce = function(state, action) return nil, action.type, action.payload end}\n",
};
#define NRED (sizeof(SOURCES) / sizeof(SOURCES[0]))
enum { ECHO, WHOLE, COPY, REJECT };

static struct mx_reducer *reducers[NRED];

static struct mx_reducer *load(const char *src)
{
    char path[] = "/tmp/mx-fuzz-lua-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    CHECK(write(fd, src, strlen(src)) == (ssize_t)strlen(src), "write");
    close(fd);
    char err[512];
    struct mx_reducer *r = mx_lua_reducer_new(path, 200000, 16u << 20, err, sizeof(err));
    unlink(path);
    CHECK(r != NULL, "%s", err);
    return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < NRED; i++)
        reducers[i] = load(SOURCES[i]);
    return 0;
}

static int run(int which, const mx_val *state, const json_t *action, json_t **effects, char *msg,
               size_t msglen)
{
    struct mx_reduce_ctx ctx = {.client = "fuzz", .clientlen = 4, .room = "f:1", .roomlen = 3,
                                .seq = 1, .time_ms = 1, .seed = 7, .max_depth = 64,
                                .max_ops = 100, .max_bytes = 1 << 20};
    int is_payload = 0;
    *effects = NULL;
    msg[0] = '\0';
    struct mx_reducer *r = reducers[which];
    return r->reduce(r, state, action, &ctx, effects, &is_payload, msg, msglen);
}

static int code_ok(const char *s, size_t len)
{
    if (len < 1 || len > 64 || s[0] < 'a' || s[0] > 'z')
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* The value of the single replace effect equals state. */
static void check_copy(const char *what, int rc, json_t *effects, const mx_val *state,
                       const char *msg)
{
    if (rc == MX_ENOMEM || rc == MX_EREDUCER_MEMORY || rc == MX_EREDUCER_BUDGET)
        return; /* big states may not fit the fuzzing VM */
    /* depth: the effect list adds two levels above the state */
    if (rc == MX_EBAD_EFFECTS && strstr(msg, "max_depth"))
        return;
    if (rc == MX_EBAD_EFFECTS && (strstr(msg, "larger than") || strstr(msg, "NUL")))
        return; /* (the state may hold "\u0000", which reducers may not emit) */
    CHECK(rc == 0, "%s: %s (%s)", what, mx_err_code(rc), msg);
    json_t *v = json_object_get(json_array_get(effects, 0), "value");
    CHECK(v != NULL, "%s: no value", what);
    mx_val *back = mx_json_from_jansson(v, 0, NULL);
    if (!back)
        return; /* allocation failure */
    CHECK(mx_json_equal(back, state), "%s: the copy differs from the state", what);
    mx_json_free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT_BYTES)
        return 0;
    json_error_t jerr;
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(in)) {
        json_decref(in);
        return 0;
    }
    json_t *jstate = json_object_get(in, "state");
    json_t *action = json_object_get(in, "action");
    if (!jstate || !json_is_object(action)) {
        json_decref(in);
        return 0;
    }
    const char *why = NULL;
    mx_val *state = mx_json_from_jansson(jstate, 60, &why);
    if (!state) {
        json_decref(in);
        return 0;
    }
    char msg[256];
    json_t *effects;

    /* echo: effects are the payload when it is a valid patch */
    int rc = run(ECHO, state, action, &effects, msg, sizeof(msg));
    json_t *payload = json_object_get(action, "payload");
    mx_patch_limits lim = {.max_depth = 64, .max_ops = 100};
    mx_patch_error perr;
    if (rc == 0) {
        CHECK(json_is_array(effects), "echo: effects not an array");
        CHECK(mx_patch_validate(effects, &lim, &perr) == 0, "echo: accepted an invalid patch: %s",
              perr.message);
        CHECK(json_equal(effects, payload) || json_array_size(payload) == 0,
              "echo: effects differ from the payload");
        char *a = json_dumps(effects, JSON_COMPACT);
        json_t *again;
        CHECK(run(ECHO, state, action, &again, msg, sizeof(msg)) == 0, "echo: second run failed");
        char *b = json_dumps(again, JSON_COMPACT);
        CHECK(a && b && !strcmp(a, b), "echo: not deterministic");
        free(a);
        free(b);
        json_decref(again);
        json_decref(effects);
    } else if (json_is_array(payload) && rc != MX_ENOMEM && rc != MX_EREDUCER_MEMORY &&
               rc != MX_EREDUCER_BUDGET) {
        CHECK(rc == MX_EBAD_EFFECTS, "echo: %s (%s)", mx_err_code(rc), msg);
    }

    /* whole / copy: the view and the conversion lose nothing */
    rc = run(WHOLE, state, action, &effects, msg, sizeof(msg));
    check_copy("whole", rc, effects, state, msg);
    json_decref(effects);
    rc = run(COPY, state, action, &effects, msg, sizeof(msg));
    check_copy("copy", rc, effects, state, msg);
    json_decref(effects);

    /* reject: code and message rules */
    rc = run(REJECT, state, action, &effects, msg, sizeof(msg));
    CHECK(effects == NULL || rc == 0, "reject: effects with an error");
    const char *type = json_string_value(json_object_get(action, "type"));
    if (rc == MX_EAPP_REJECT) {
        const char *code, *text;
        size_t codelen;
        mx_reducer_reject_code(msg, &code, &codelen, &text);
        CHECK(code_ok(code, codelen), "reject: code %.*s", (int)codelen, code);
        CHECK(type && strlen(type) == codelen && !memcmp(type, code, codelen), "reject: code changed");
        CHECK(strlen(text) <= 200 && mx_lua_utf8_ok(text, strlen(text)), "reject: message '%s'", text);
    } else if (rc == MX_EREDUCER_ERROR) {
        CHECK(!type || strlen(type) != json_string_length(json_object_get(action, "type")) ||
                  !code_ok(type, strlen(type)),
              "reject: valid code %s refused", type);
    }
    json_decref(effects);

    mx_json_free(state);
    json_decref(in);
    return 0;
}
