/* Unit tests for Lua reducers (reducer_lua.c, lua_sandbox.c, lua_json.c,
 * reducer.c): the sandbox stops every attack in test/lua/attacks.lua with
 * the documented code and the VM keeps working; the state view, ctx, init,
 * reject codes, value conversion and the conf keys. Run from the repository
 * root (as scripts/run-tests.sh does). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "movexd/config.h"
#include "movexd/err.h"
#include "movexd/reducer.h"
#include "movexd/reducer_lua.h"

#define ATTACKS "test/lua/attacks.lua"

/* A reducer from Lua source text (written to a temporary file). */
static struct mx_reducer *from_source(const char *src, size_t budget, size_t memory, char *err,
                                      size_t errlen)
{
    char path[] = "/tmp/mx-lua-test-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, src, strlen(src)), (ssize_t)strlen(src));
    close(fd);
    struct mx_reducer *r = mx_lua_reducer_new(path, budget, memory, err, errlen);
    unlink(path);
    return r;
}

static mx_val *state_of(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    ck_assert_msg(j != NULL, "%s", e.text);
    mx_val *v = mx_json_from_jansson(j, 64, NULL);
    json_decref(j);
    ck_assert_ptr_nonnull(v);
    return v;
}

/* reduce with {"type": type, "payload": payload}; returns the code, effects
 * dumped into out (or NULL) and the message in msg. */
static int reduce(struct mx_reducer *r, const mx_val *state, const char *type, const char *payload,
                  char **out, char *msg, size_t msglen, uint64_t seed)
{
    json_t *action = json_pack("{s:s}", "type", type);
    if (payload)
        json_object_set_new(action, "payload", json_loads(payload, JSON_DECODE_ANY, NULL));
    struct mx_reduce_ctx ctx = {.client = "alice", .clientlen = 5, .room = "t:1", .roomlen = 3,
                                .seq = 7, .time_ms = 1700000000123ull, .seed = seed,
                                .max_depth = 64, .max_ops = 1000, .max_bytes = 1 << 20};
    json_t *effects = NULL;
    int is_payload = -1;
    msg[0] = '\0';
    int rc = r->reduce(r, state, action, &ctx, &effects, &is_payload, msg, msglen);
    json_decref(action);
    if (out)
        *out = NULL;
    if (rc == 0) {
        ck_assert_int_eq(is_payload, 0);
        ck_assert_ptr_nonnull(effects);
        if (out)
            *out = json_dumps(effects, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(effects);
    } else {
        ck_assert_ptr_null(effects);
    }
    return rc;
}

static const struct {
    const char *type;
    int code;
    const char *msg; /* substring of the message, or NULL */
} attacks[] = {
    {"loop", MX_EREDUCER_BUDGET, "instruction budget"},
    {"pcall_loop", MX_EREDUCER_BUDGET, NULL},
    {"xpcall_loop", MX_EREDUCER_BUDGET, NULL},
    {"coroutine_loop", MX_EREDUCER_BUDGET, NULL},
    {"coroutine_wrap_loop", MX_EREDUCER_BUDGET, NULL},
    {"coroutine_tree", MX_EREDUCER_BUDGET, "instruction budget"},
    {"coroutine_tree_create", MX_EREDUCER_BUDGET, "instruction budget"},
    {"index_loop", MX_EREDUCER_BUDGET, NULL},
    {"pairs_G_write", MX_EREDUCER_ERROR, "globals are read-only"},
    {"pairs_lib_write", MX_EREDUCER_ERROR, "read-only"},
    {"pairs_lib_walk", 0, NULL}, /* pairs still walks them */
    {"close_loop", MX_EREDUCER_BUDGET, NULL},
    {"memory", MX_EREDUCER_MEMORY, "memory limit"},
    {"memory_pcall", MX_EREDUCER_MEMORY, NULL},
    {"concat_bomb", MX_EREDUCER_MEMORY, NULL},
    {"rep", MX_EREDUCER_MEMORY, NULL},
    {"rep_method", MX_EREDUCER_MEMORY, NULL},
    {"rep_empty", MX_EREDUCER_BUDGET, NULL},
    {"rep_sep", MX_EREDUCER_BUDGET, NULL},
    {"pattern", MX_EREDUCER_BUDGET, NULL},
    {"pattern_gsub", MX_EREDUCER_BUDGET, NULL},
    {"pattern_balance", MX_EREDUCER_BUDGET, NULL},
    {"find_huge", MX_EREDUCER_BUDGET, NULL},
    {"table_move", MX_EREDUCER_BUDGET, NULL},
    {"table_concat", MX_EREDUCER_BUDGET, NULL},
    {"table_unpack", MX_EREDUCER_BUDGET, NULL},
    {"format_huge", MX_EREDUCER_ERROR, "invalid conversion"},
    {"load", MX_EREDUCER_ERROR, "global 'load'"},
    {"loadstring", MX_EREDUCER_ERROR, "global 'loadstring'"},
    {"dofile", MX_EREDUCER_ERROR, "global 'dofile'"},
    {"loadfile", MX_EREDUCER_ERROR, "global 'loadfile'"},
    {"require", MX_EREDUCER_ERROR, "global 'require'"},
    {"os_execute", MX_EREDUCER_ERROR, "global 'os'"},
    {"io_open", MX_EREDUCER_ERROR, "global 'io'"},
    {"debug_sethook", MX_EREDUCER_ERROR, "global 'debug'"},
    {"string_dump", MX_EREDUCER_ERROR, "field 'dump'"},
    {"collectgarbage", MX_EREDUCER_ERROR, "global 'collectgarbage'"},
    {"print", MX_EREDUCER_ERROR, "global 'print'"},
    {"gc", MX_EREDUCER_ERROR, "__gc"},
    {"random", MX_EREDUCER_ERROR, "field 'random'"},
    {"write_state", MX_EREDUCER_ERROR, "read-only"},
    {"write_state_deep", MX_EREDUCER_ERROR, "read-only"},
    {"rawset_state", MX_EREDUCER_ERROR, NULL},
    {"write_global", MX_EREDUCER_ERROR, "globals are read-only"},
    {"write_G", MX_EREDUCER_ERROR, "globals are read-only"},
    {"write_lib", MX_EREDUCER_ERROR, "read-only"},
    {"rawset_G", MX_EREDUCER_ERROR, "protected"},
    {"rawset_lib", MX_EREDUCER_ERROR, "protected"},
    {"string_mt", MX_EREDUCER_ERROR, NULL},
    {"ret_function", MX_EBAD_EFFECTS, "effect 0: a function is not a JSON value"},
    {"ret_coroutine", MX_EBAD_EFFECTS, "thread"},
    {"ret_nan", MX_EBAD_EFFECTS, "NaN"},
    {"ret_huge", MX_EBAD_EFFECTS, "infinity"},
    {"ret_neg_huge", MX_EBAD_EFFECTS, "infinity"},
    {"ret_cycle", MX_EBAD_EFFECTS, "cycle"},
    {"ret_deep", MX_EBAD_EFFECTS, "max_depth"},
    {"ret_bad_utf8", MX_EBAD_EFFECTS, "UTF-8"},
    {"ret_nul", MX_EBAD_EFFECTS, "NUL"},
    {"ret_bad_key", MX_EBAD_EFFECTS, "keys must be strings"},
    {"ret_mixed", MX_EBAD_EFFECTS, "mixes"},
    {"ret_not_list", MX_EREDUCER_ERROR, "list of effects"},
    {"ret_bad_op", MX_EBAD_EFFECTS, "op 0"},
    {"error", MX_EREDUCER_ERROR, "attacks.lua:"},
    {"error_table", MX_EREDUCER_ERROR, "raised a table"},
    {"reject_bad_code", MX_EREDUCER_ERROR, "invalid code"},
    {"reject_no_code", MX_EREDUCER_ERROR, "invalid code"},
};

START_TEST(attacks_are_stopped)
{
    char err[512], msg[256];
    /* 4 MiB: the memory bombs reach the cap well inside the budget */
    struct mx_reducer *r = mx_lua_reducer_new(ATTACKS, 1000000, 4u << 20, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    mx_val *state = state_of("{\"n\":0,\"obj\":{\"k\":1}}");
    char *out;
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        if (getenv("MX_TEST_VERBOSE"))
            fprintf(stderr, "attack %s\n", attacks[i].type);
        int rc = reduce(r, state, attacks[i].type, NULL, &out, msg, sizeof(msg), 1);
        ck_assert_msg(rc == attacks[i].code, "%s: got %s (%s), want %s", attacks[i].type,
                      rc ? mx_err_code(rc) : "ok", msg, mx_err_code(attacks[i].code));
        if (attacks[i].msg)
            ck_assert_msg(strstr(msg, attacks[i].msg), "%s: message '%s' lacks '%s'",
                          attacks[i].type, msg, attacks[i].msg);
        ck_assert_msg(!strchr(msg, '/') || attacks[i].code == MX_EBAD_EFFECTS,
                      "%s: message names a path: %s", attacks[i].type, msg);
        free(out);
        /* after every attack the VM (reset if needed) still serves */
        rc = reduce(r, state, "ok", NULL, &out, msg, sizeof(msg), 1);
        ck_assert_msg(rc == 0, "after %s: %s", attacks[i].type, msg);
        ck_assert_str_eq(out, "[{\"op\":\"inc\",\"path\":\"/n\",\"value\":1.0}]");
        free(out);
    }
    mx_json_free(state);
    mx_lua_reducer_free(r);
}
END_TEST

/* ==, <=, .. on 4 MiB strings and tonumber of one are one VM instruction
 * each: the count alone would let each loop run for minutes (and hold the
 * event loop); the wall-clock limit of the call stops them in about 1 s. */
START_TEST(long_string_work_is_timed)
{
    char err[512], msg[256];
    struct mx_reducer *r = mx_lua_reducer_new(ATTACKS, 1000000, 32u << 20, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    mx_val *state = state_of("{\"n\":0}");
    static const char *const types[] = {"long_eq", "long_lt", "long_concat", "long_tonumber"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = reduce(r, state, types[i], NULL, NULL, msg, sizeof(msg), 1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        ck_assert_msg(rc == MX_EREDUCER_BUDGET || rc == MX_EREDUCER_MEMORY, "%s: got %s (%s)",
                      types[i], rc ? mx_err_code(rc) : "ok", msg);
        /* the limit is 1 s; the slack is for a loaded machine */
        ck_assert_msg(s < 15.0, "%s took %.1f s", types[i], s);
        char *out;
        ck_assert_int_eq(reduce(r, state, "ok", NULL, &out, msg, sizeof(msg), 1), 0);
        free(out);
    }
    mx_json_free(state);
    mx_lua_reducer_free(r);
}
END_TEST

/* ctx is a plain table the reducer may write into; the next call must not
 * read anything back from it (ctx.random = 5 made the next push_ctx take
 * the generator from a number's "upvalue": a NULL pointer, a crash; a
 * closure over a state view gave it the view's 16-byte userdata to write
 * 32 bytes into). */
static const char *CTX_SRC =
    "local M = {}\n"
    "function M.reduce(state, action, ctx)\n"
    "  local t = action.type\n"
    "  if t == 'number' then ctx.random = 5\n"
    "  elseif t == 'closure' then local v = state; ctx.random = function() return v end\n"
    "  elseif t == 'cfunction' then ctx.random = string.len\n"
    "  elseif t == 'metatable' then ctx.random = nil; ctx.client = nil\n"
    "    setmetatable(ctx, {__newindex = function() error('ran') end})\n"
    "  elseif t == 'read' then\n"
    "    return {{op = 'add', path = '/r', value = ctx.random(1, 1000000)},\n"
    "            {op = 'add', path = '/c', value = ctx.client}}\n"
    "  end\n"
    "  return {}\n"
    "end\n"
    "return M\n";

START_TEST(ctx_writes_do_not_reach_the_next_call)
{
    char err[512], msg[256], *out, *first;
    struct mx_reducer *r = from_source(CTX_SRC, 1000000, 8u << 20, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    mx_val *state = state_of("{\"n\":0}");
    ck_assert_int_eq(reduce(r, state, "read", NULL, &first, msg, sizeof(msg), 42), 0);
    static const char *const clobber[] = {"number", "closure", "cfunction", "metatable"};
    for (size_t i = 0; i < sizeof(clobber) / sizeof(clobber[0]); i++) {
        ck_assert_int_eq(reduce(r, state, clobber[i], NULL, &out, msg, sizeof(msg), 42), 0);
        free(out);
        int rc = reduce(r, state, "read", NULL, &out, msg, sizeof(msg), 42);
        ck_assert_msg(rc == 0, "after %s: %s", clobber[i], msg);
        ck_assert_str_eq(out, first); /* same seed, same draw, the real client */
        free(out);
    }
    ck_assert_ptr_nonnull(strstr(first, "\"alice\""));
    free(first);
    mx_json_free(state);
    mx_lua_reducer_free(r);
}
END_TEST

START_TEST(effects_bounds)
{
    char err[512], msg[256];
    /* a budget large enough to build a 10^6-op list: max_ops refuses it */
    struct mx_reducer *r = mx_lua_reducer_new(ATTACKS, 100000000, 64u << 20, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    mx_val *state = state_of("{\"n\":0}");
    ck_assert_int_eq(reduce(r, state, "ret_many", NULL, NULL, msg, sizeof(msg), 1), MX_EBAD_EFFECTS);
    ck_assert_msg(strstr(msg, "1000000 effects, over this room type's max_ops 1000"), "%s", msg);
    /* a valid list whose second op would fail is still well formed here: the
     * room's patch step names the index (test_room / integration) */
    char *out;
    ck_assert_int_eq(reduce(r, state, "ret_second_bad", NULL, &out, msg, sizeof(msg), 1), 0);
    free(out);
    ck_assert_int_eq(reduce(r, state, "format_width", NULL, &out, msg, sizeof(msg), 1), 0);
    ck_assert_ptr_nonnull(strstr(out, "000000001\"}]"));
    free(out);
    mx_json_free(state);
    mx_lua_reducer_free(r);
}
END_TEST

START_TEST(reject_codes_and_messages)
{
    char err[512], msg[256];
    struct mx_reducer *r = mx_lua_reducer_new(ATTACKS, 1000000, 32u << 20, err, sizeof(err));
    ck_assert_ptr_nonnull(r);
    mx_val *state = state_of("{}");
    ck_assert_int_eq(reduce(r, state, "reject", NULL, NULL, msg, sizeof(msg), 1), MX_EAPP_REJECT);
    const char *code, *text;
    size_t codelen;
    mx_reducer_reject_code(msg, &code, &codelen, &text);
    ck_assert_int_eq((int)codelen, 11);
    ck_assert(!strncmp(code, "not_allowed", 11));
    /* cut to 200 bytes without splitting the 2-byte character */
    ck_assert_int_le((int)strlen(text), 200);
    ck_assert_int_eq((int)strlen(text) % 2, 0);
    ck_assert(!strncmp(text, "no, \xc3\xa9", 6));
    mx_json_free(state);
    mx_lua_reducer_free(r);
}
END_TEST

/* The state view: lazy, read-only, #, pairs, ipairs, null; ctx. */
static const char *VIEW_SRC =
    "local M = {}\n"
    "function M.reduce(state, action, ctx)\n"
    "  local keys = {}\n"
    "  for k, v in pairs(state.obj) do keys[#keys + 1] = k .. '=' .. tostring(v) end\n"
    "  local sum = 0\n"
    "  for i, v in ipairs(state.arr) do sum = sum + v * i end\n"
    "  local r1, r2 = ctx.random(), ctx.random(1, 6)\n"
    "  return {{op = 'add', path = '/out', value = {\n"
    "    keys = table.concat(keys, ','), len = #state.arr, sum = sum,\n"
    "    isnull = state.z == movex.null, missing = state.nope == nil,\n"
    "    t = type(state.obj), deep = state.obj.b.c, arr3 = state.arr[3], arr9 = state.arr[9] == nil,\n"
    "    client = ctx.client, room = ctx.room, seq = ctx.seq, time = ctx.time,\n"
    "    r1ok = r1 >= 0 and r1 < 1, r2ok = r2 >= 1 and r2 <= 6, r = r1,\n"
    "    copy = state.obj.b, empty_arr = movex.array(), empty_obj = {},\n"
    "    payload = action.payload,\n"
    "  }}}\n"
    "end\n"
    "return M\n";

START_TEST(state_view_and_ctx)
{
    char err[512], msg[256];
    struct mx_reducer *r = from_source(VIEW_SRC, 1000000, 32u << 20, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    mx_val *state = state_of("{\"obj\":{\"b\":{\"c\":\"d\"},\"a\":1},\"arr\":[10,20,30],\"z\":null}");
    char *out1, *out2, *out3;
    ck_assert_msg(reduce(r, state, "x", "{\"p\":[1,null,{}],\"q\":[]}", &out1, msg, sizeof(msg), 42) == 0, "%s", msg);
    if (getenv("MX_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", out1);
    ck_assert_ptr_nonnull(strstr(out1, "\"keys\":\"a=1,b=movex state object\""));
    ck_assert_ptr_nonnull(strstr(out1, "\"len\":3.0,"));
    ck_assert_ptr_nonnull(strstr(out1, "\"sum\":140.0"));
    ck_assert_ptr_nonnull(strstr(out1, "\"isnull\":true"));
    ck_assert_ptr_nonnull(strstr(out1, "\"missing\":true"));
    ck_assert_ptr_nonnull(strstr(out1, "\"t\":\"userdata\""));
    ck_assert_ptr_nonnull(strstr(out1, "\"deep\":\"d\""));
    ck_assert_ptr_nonnull(strstr(out1, "\"arr3\":30.0"));
    ck_assert_ptr_nonnull(strstr(out1, "\"arr9\":true"));
    ck_assert_ptr_nonnull(strstr(out1, "\"client\":\"alice\""));
    ck_assert_ptr_nonnull(strstr(out1, "\"room\":\"t:1\""));
    ck_assert_ptr_nonnull(strstr(out1, "\"seq\":7.0"));
    ck_assert_ptr_nonnull(strstr(out1, "\"time\":1700000000123.0"));
    ck_assert_ptr_nonnull(strstr(out1, "\"r1ok\":true,\"r2ok\":true"));
    ck_assert_ptr_nonnull(strstr(out1, "\"copy\":{\"c\":\"d\"}"));
    ck_assert_ptr_nonnull(strstr(out1, "\"empty_arr\":[]"));
    ck_assert_ptr_nonnull(strstr(out1, "\"empty_obj\":{}"));
    ck_assert_ptr_nonnull(strstr(out1, "\"payload\":{\"p\":[1.0,null,{}],\"q\":[]}"));
    /* keys sorted whatever the table order */
    ck_assert_ptr_nonnull(strstr(out1, "{\"arr3\":"));
    /* the same seed gives the same randoms; another seed others */
    ck_assert_int_eq(reduce(r, state, "x", NULL, &out2, msg, sizeof(msg), 42), 0);
    ck_assert_int_eq(reduce(r, state, "x", NULL, &out3, msg, sizeof(msg), 43), 0);
    const char *ra = strstr(out1, "\"r\":"), *rb = strstr(out2, "\"r\":"), *rc = strstr(out3, "\"r\":");
    ck_assert(!strncmp(ra, rb, 24));
    ck_assert(strncmp(ra, rc, 24) != 0);
    free(out1);
    free(out2);
    free(out3);
    mx_json_free(state);
    mx_lua_reducer_free(r);
}
END_TEST

/* A view kept in an upvalue dies with its call. */
START_TEST(kept_view_dies)
{
    char err[512], msg[256];
    struct mx_reducer *r = mx_lua_reducer_new(ATTACKS, 1000000, 32u << 20, err, sizeof(err));
    ck_assert_ptr_nonnull(r);
    mx_val *state = state_of("{\"n\":5}");
    ck_assert_int_eq(reduce(r, state, "keep_view", NULL, NULL, msg, sizeof(msg), 1), 0);
    mx_json_free(state);
    state = state_of("{\"n\":6}");
    ck_assert_int_eq(reduce(r, state, "use_kept_view", NULL, NULL, msg, sizeof(msg), 1),
                     MX_EREDUCER_ERROR);
    ck_assert_msg(strstr(msg, "after its reduce call ended"), "%s", msg);
    mx_json_free(state);
    mx_lua_reducer_free(r);
}
END_TEST

static const char *INIT_SRC =
    "local M = {}\n"
    "function M.init(params, ctx)\n"
    "  if params.refuse then return nil, 'no_thanks', 'refused' end\n"
    "  return {size = params.size or 3, by = ctx.client, list = movex.array()}\n"
    "end\n"
    "function M.reduce() return {} end\n"
    "return M\n";

START_TEST(init_and_load_errors)
{
    char err[512], msg[256];
    struct mx_reducer *r = from_source(INIT_SRC, 1000000, 32u << 20, err, sizeof(err));
    ck_assert_msg(r != NULL, "%s", err);
    struct mx_reduce_ctx ctx = {.client = "bob", .clientlen = 3, .max_depth = 64};
    json_t *params = json_pack("{s:i}", "size", 5), *st = NULL;
    ck_assert_int_eq(r->init(r, params, &ctx, &st, msg, sizeof(msg)), 0);
    char *s = json_dumps(st, JSON_COMPACT);
    ck_assert_str_eq(s, "{\"by\":\"bob\",\"list\":[],\"size\":5.0}");
    free(s);
    json_decref(st);
    json_decref(params);
    params = json_pack("{s:b}", "refuse", 1);
    ck_assert_int_eq(r->init(r, params, &ctx, &st, msg, sizeof(msg)), MX_EAPP_REJECT);
    ck_assert_str_eq(msg, "no_thanks refused");
    json_decref(params);
    mx_lua_reducer_free(r);

    /* load errors name FILE:LINE in checks */
    ck_assert_ptr_null(from_source("local x = \n", 1000000, 32u << 20, err, sizeof(err)));
    ck_assert_msg(strstr(err, ":1: unexpected symbol") || strstr(err, ":2:"), "%s", err);
    ck_assert_ptr_null(from_source("return 5\n", 1000000, 32u << 20, err, sizeof(err)));
    ck_assert_msg(strstr(err, "must return a table"), "%s", err);
    ck_assert_ptr_null(from_source("return {}\n", 1000000, 32u << 20, err, sizeof(err)));
    ck_assert_msg(strstr(err, "M.reduce must be a function"), "%s", err);
    ck_assert_ptr_null(from_source("while true do end\n", 1000000, 32u << 20, err, sizeof(err)));
    ck_assert_msg(strstr(err, "reducer_budget"), "%s", err);
    /* bytecode is refused: source only */
    ck_assert_ptr_null(from_source("\x1bLua\x54", 1000000, 32u << 20, err, sizeof(err)));
    ck_assert_msg(strstr(err, "binary") || strstr(err, "text"), "%s", err);
    ck_assert_int_eq(mx_lua_reducer_check("/nonexistent/x.lua", 1000000, 32u << 20, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "/nonexistent/x.lua: cannot open"), "%s", err);
    char path[] = "/tmp/mx-lua-check-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_eq(write(fd, "local M = {}\n\nfunction M.reduce( return M\n", 42), 42);
    close(fd);
    ck_assert_int_eq(mx_lua_reducer_check(path, 1000000, 32u << 20, err, sizeof(err)), -1);
    char want[64];
    snprintf(want, sizeof(want), "%s:3:", path);
    ck_assert_msg(strstr(err, want), "want %s in %s", want, err);
    unlink(path);
}
END_TEST

START_TEST(conf_keys)
{
    struct mx_config c;
    char err[512];
    ck_assert_int_eq(mx_config_parse(&c,
                                     "room default {\n reducer_budget 5000\n}\n"
                                     "room ttt {\n reducer lua:games/ttt.lua\n reducer_memory 1m\n}\n"
                                     "room abs {\n reducer lua:/opt/x.lua\n}\n",
                                     "/etc/movexd/movexd.conf", err, sizeof(err)),
                     0);
    const struct mx_room_type *t = mx_config_room_type(&c, "ttt", 3);
    ck_assert_str_eq(t->reducer, "lua");
    ck_assert_str_eq(t->reducer_path, "/etc/movexd/games/ttt.lua");
    ck_assert_uint_eq(t->reducer_budget, 5000);
    ck_assert_uint_eq(t->reducer_memory, 1u << 20);
    t = mx_config_room_type(&c, "abs", 3);
    ck_assert_str_eq(t->reducer_path, "/opt/x.lua");
    ck_assert_uint_eq(t->reducer_memory, 32u << 20);
    t = mx_config_room_type(&c, "other", 5);
    ck_assert_str_eq(t->reducer, "json");
    ck_assert_ptr_null(t->reducer_path);
    mx_config_free(&c);
    ck_assert_int_eq(mx_config_parse(&c, "room x {\n reducer lua:\n}\n", "t.conf", err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "t.conf:2: reducer: lua: needs a file path"), "%s", err);
    mx_config_free(&c);
    ck_assert_int_eq(mx_config_parse(&c, "room x {\n reducer_budget 10\n}\n", "t.conf", err, sizeof(err)), -1);
    mx_config_free(&c);
    /* mx_reducers_check reports FILE:LINE of a broken file */
    ck_assert_int_eq(mx_config_parse(&c, "room x {\n reducer lua:/nonexistent/r.lua\n}\n", "t.conf",
                                     err, sizeof(err)),
                     0);
    ck_assert_int_eq(mx_reducers_check(&c, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "/nonexistent/r.lua: cannot open"), "%s", err);
    mx_config_free(&c);
}
END_TEST

Suite *mx_suite_lua(void)
{
    Suite *s = suite_create("lua");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, attacks_are_stopped);
    tcase_add_test(tc, long_string_work_is_timed);
    tcase_add_test(tc, ctx_writes_do_not_reach_the_next_call);
    tcase_add_test(tc, effects_bounds);
    tcase_add_test(tc, reject_codes_and_messages);
    tcase_add_test(tc, state_view_and_ctx);
    tcase_add_test(tc, kept_view_dies);
    tcase_add_test(tc, init_and_load_errors);
    tcase_add_test(tc, conf_keys);
    suite_add_tcase(s, tc);
    return s;
}
