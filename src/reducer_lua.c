/* reducer_lua.c - `reducer lua:PATH`: app logic in a sandboxed Lua VM.
 *
 * One instance per room type: its own VM (lua_sandbox.c), the file's source
 * (to rebuild the VM) and registry references to M.reduce and M.init. A
 * call runs entirely inside mx_lua_vm_run's protected call, under the
 * type's budget and memory cap; what comes back is converted and checked
 * by lua_json.c before anything touches the room.
 *
 * Invariants:
 *  - the file is Lua source (mode "t": bytecode is refused), run once per VM
 *    under the budget; it must return a table with a function `reduce`;
 *  - after a call that ran out of budget or memory the VM is rebuilt from
 *    the source before the next call (it may have been stopped half-way
 *    through changing its own upvalues);
 *  - error messages that reach clients name no path: the chunk is named by
 *    the file's base name only, and messages are cut to 200 valid bytes;
 *  - a reject code is used as given only when it matches
 *    ^[a-z][a-z0-9_]{0,63}$, otherwise the reject is reducer_error.
 */
#include "movexd/reducer_lua.h"
#include "movexd/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/lua_json.h"
#include "movexd/lua_sandbox.h"

#define SOURCE_MAX (4u << 20)
#define MSG_MAX 200

struct lua_reducer {
    struct mx_reducer base;
    struct mx_lua_vm *vm;
    char *src;
    size_t srclen;
    char chunkname[80];
    size_t budget, memory;
    int has_init;
};

/* ------------------------------------------------------------- loading -- */

static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *buf = mx_malloc(SOURCE_MAX + 1);
    size_t n = buf ? fread(buf, 1, SOURCE_MAX + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > SOURCE_MAX) {
        snprintf(err, errlen, "%s: %s", path,
                 !buf ? "out of memory" : bad ? "read error" : "file is larger than 4 MiB");
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

struct load_args {
    const char *src;
    size_t len;
    const char *name;
};

/* Protected: compile and run the file; leaves M.reduce, M.init (or nil). */
static int load_chunk(lua_State *L)
{
    struct load_args *a = lua_touserdata(L, 1);
    if (luaL_loadbufferx(L, a->src, a->len, a->name, "t") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1);
    if (lua_type(L, -1) != LUA_TTABLE)
        return luaL_error(L, "%s: the file must return a table M (with M.reduce)", a->name + 1);
    if (lua_getfield(L, -1, "reduce") != LUA_TFUNCTION)
        return luaL_error(L, "%s: M.reduce must be a function", a->name + 1);
    int t = lua_getfield(L, -2, "init");
    if (t != LUA_TNIL && t != LUA_TFUNCTION)
        return luaL_error(L, "%s: M.init must be a function (or absent)", a->name + 1);
    return 2;
}

/* A fresh VM running src; chunk named `name` ("@path" for checks,
 * "=file.lua" at run time). NULL with err. */
static struct mx_lua_vm *build_vm(const char *src, size_t len, const char *name, size_t budget,
                                  size_t memory, int *has_init, char *err, size_t errlen)
{
    struct mx_lua_vm *vm = mx_lua_vm_new(memory, budget);
    if (!vm) {
        snprintf(err, errlen, "%s: out of memory creating the Lua VM", name + 1);
        return NULL;
    }
    struct load_args a = {src, len, name};
    enum mx_lua_status st = mx_lua_vm_run(vm, load_chunk, &a, 2);
    if (st != MX_LUA_OK) {
        const char *m = lua_type(vm->L, -1) == LUA_TSTRING ? lua_tostring(vm->L, -1) : NULL;
        if (st == MX_LUA_BUDGET)
            snprintf(err, errlen, "%s: the file's top level ran past reducer_budget%s", name + 1,
                     vm->timed_out ? "'s time limit" : "");
        else if (st == MX_LUA_MEMORY)
            snprintf(err, errlen, "%s: the file's top level ran past reducer_memory", name + 1);
        else
            snprintf(err, errlen, "%s", m ? m : "error loading the file");
        mx_lua_vm_free(vm);
        return NULL;
    }
    /* registry slots 1/2 of our own: keep reduce and init out of reach */
    lua_rawsetp(vm->L, LUA_REGISTRYINDEX, &vm->budget); /* init */
    lua_rawsetp(vm->L, LUA_REGISTRYINDEX, &vm->used);   /* reduce */
    lua_settop(vm->L, 0);
    *has_init = lua_rawgetp(vm->L, LUA_REGISTRYINDEX, &vm->budget) == LUA_TFUNCTION;
    lua_settop(vm->L, 0);
    mx_lua_vm_freeze(vm);
    return vm;
}

int mx_lua_reducer_check(const char *path, size_t budget, size_t memory, char *err, size_t errlen)
{
    char *src;
    size_t len;
    if (read_file(path, &src, &len, err, errlen))
        return -1;
    size_t nl = strlen(path) + 2;
    char *name = mx_malloc(nl);
    int has_init, rc = -1;
    if (name) {
        snprintf(name, nl, "@%s", path);
        struct mx_lua_vm *vm = build_vm(src, len, name, budget, memory, &has_init, err, errlen);
        rc = vm ? 0 : -1;
        mx_lua_vm_free(vm);
        free(name);
    } else {
        snprintf(err, errlen, "out of memory");
    }
    free(src);
    return rc;
}

/* ---------------------------------------------------------------- calls -- */

/* The reject/error message as clients see it: at most MSG_MAX bytes of
 * valid UTF-8 (invalid bytes become '?', a cut never splits a character). */
static void clean_message(const char *s, size_t len, char *out, size_t outlen)
{
    size_t cap = outlen - 1 < MSG_MAX ? outlen - 1 : MSG_MAX, o = 0;
    for (size_t i = 0; i < len && o < cap;) {
        size_t n = 1;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xC0)
            n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (c >= 0x80 && (n == 1 || i + n > len || !mx_lua_utf8_ok(s + i, n))) {
            out[o++] = '?';
            i++;
            continue;
        }
        if (c < 0x20 && c != '\n' && c != '\t')
            c = ' ', n = 1;
        if (o + n > cap)
            break;
        if (n == 1)
            out[o] = (char)c;
        else
            memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
}

/* xoshiro256** seeded by splitmix64: ctx.random, the same on every platform */
struct rng {
    uint64_t s[4];
};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* ctx.random() -> [0,1); ctx.random(m) -> [1,m]; ctx.random(m, n) -> [m,n] */
static int ctx_random(lua_State *L)
{
    struct rng *r = lua_touserdata(L, lua_upvalueindex(1));
    uint64_t x = rng_next(r);
    int n = lua_gettop(L);
    if (n == 0) {
        lua_pushnumber(L, (lua_Number)(x >> 11) * (1.0 / 9007199254740992.0));
        return 1;
    }
    lua_Integer lo = 1, hi;
    if (n == 1) {
        hi = luaL_checkinteger(L, 1);
    } else {
        lo = luaL_checkinteger(L, 1);
        hi = luaL_checkinteger(L, 2);
    }
    luaL_argcheck(L, lo <= hi, n, "interval is empty");
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    uint64_t v = span == UINT64_MAX ? x : x % (span + 1);
    lua_pushinteger(L, (lua_Integer)((uint64_t)lo + v));
    return 1;
}

/* ctx is one table per VM, refilled for every call (a table, a closure
 * and a userdata per action showed in the cost of small reducers); a
 * reducer that keeps ctx sees the fields of the latest call. The table is
 * the reducer's to scribble on, so nothing is read back from it: the
 * generator's state and ctx.random live in registry slots of their own,
 * and every field is stored raw (a metatable on ctx runs nothing here). */
static char ctx_key, rng_key, random_key;

static void set_raw(lua_State *L, const char *name)
{
    lua_pushstring(L, name);
    lua_insert(L, -2);
    lua_rawset(L, -3);
}

static void push_ctx(lua_State *L, const struct mx_reduce_ctx *ctx)
{
    struct rng *r;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &rng_key) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        r = lua_newuserdatauv(L, sizeof(struct rng), 0);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &rng_key);
        lua_pushcclosure(L, ctx_random, 1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &random_key);
        lua_createtable(L, 0, 5);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &ctx_key);
    } else {
        r = lua_touserdata(L, -1);
        lua_pop(L, 1);
    }
    uint64_t x = ctx->seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &random_key);
    set_raw(L, "random");
    lua_pushlstring(L, ctx->client ? ctx->client : "", ctx->clientlen);
    set_raw(L, "client");
    lua_pushlstring(L, ctx->room ? ctx->room : "", ctx->roomlen);
    set_raw(L, "room");
    lua_pushinteger(L, (lua_Integer)ctx->seq);
    set_raw(L, "seq");
    lua_pushinteger(L, (lua_Integer)ctx->time_ms);
    set_raw(L, "time");
}

struct call_args {
    int init;
    const mx_val *state;
    const json_t *arg; /* action, or init params */
    const struct mx_reduce_ctx *ctx;
    struct mx_lua_vm *vm;
};

/* Protected: M.reduce(state, action, ctx) or M.init(params, ctx), three results. */
static int call_fn(lua_State *L)
{
    struct call_args *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, a->init ? (void *)&a->vm->budget : (void *)&a->vm->used);
    if (!a->init)
        mx_lua_push_view(L, a->state);
    mx_lua_push_json(L, a->arg);
    push_ctx(L, a->ctx);
    lua_call(L, a->init ? 2 : 3, 3);
    return 3;
}

static int rebuild(struct lua_reducer *lr, char *err, size_t errlen)
{
    int has_init;
    struct mx_lua_vm *vm = build_vm(lr->src, lr->srclen, lr->chunkname, lr->budget, lr->memory,
                                    &has_init, err, errlen);
    if (!vm)
        return -1;
    mx_lua_vm_free(lr->vm);
    lr->vm = vm;
    lr->has_init = has_init;
    return 0;
}

/* Run one call; 0 with the result value on top of vm->L's stack (effects
 * or new state) or a negative mx_err with msg. */
static int run(struct lua_reducer *lr, struct call_args *a, char *msg, size_t msglen)
{
    char err[256];
    if (!lr->vm && rebuild(lr, err, sizeof(err))) {
        mx_warn("event=reducer_unavailable reason=\"%s\"", err);
        snprintf(msg, msglen, "the room's reducer is unavailable");
        return MX_EREDUCER_ERROR;
    }
    a->vm = lr->vm;
    lua_State *L = lr->vm->L;
    enum mx_lua_status st = mx_lua_vm_run(lr->vm, call_fn, a, 3);
    if (st == MX_LUA_BUDGET || st == MX_LUA_MEMORY) {
        int code = st == MX_LUA_BUDGET ? MX_EREDUCER_BUDGET : MX_EREDUCER_MEMORY;
        if (lr->vm->timed_out)
            snprintf(msg, msglen, "the reducer ran past its time limit (%llu ms)",
                     (unsigned long long)(mx_lua_time_limit_ns(lr->budget) / 1000000u));
        else
            snprintf(msg, msglen, st == MX_LUA_BUDGET
                                      ? "the reducer ran past its instruction budget (%zu)"
                                      : "the reducer ran past its memory limit (%zu bytes)",
                     st == MX_LUA_BUDGET ? lr->budget : lr->memory);
        mx_lua_vm_free(lr->vm); /* may be damaged: rebuilt before the next call */
        lr->vm = NULL;
        if (rebuild(lr, err, sizeof(err)))
            mx_warn("event=reducer_rebuild_failed reason=\"%s\"", err);
        return code;
    }
    if (st == MX_LUA_ERROR) {
        size_t len = 0;
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (m)
            clean_message(m, len, msg, msglen);
        else
            snprintf(msg, msglen, "the reducer raised a %s", luaL_typename(L, -1));
        lua_settop(L, 0);
        return MX_EREDUCER_ERROR;
    }
    /* results at 1..3 */
    if (lua_isnil(L, 1) || (lua_type(L, 1) == LUA_TBOOLEAN && !lua_toboolean(L, 1))) {
        size_t clen = 0, mlen = 0;
        const char *code = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &clen) : NULL;
        const char *m = lua_type(L, 3) == LUA_TSTRING ? lua_tolstring(L, 3, &mlen) : NULL;
        char text[MSG_MAX + 1];
        clean_message(m ? m : "", m ? mlen : 0, text, sizeof(text));
        lua_settop(L, 0);
        if (!code || !mx_reducer_valid_code(code, clen)) {
            snprintf(msg, msglen, "the reducer rejected the action with an invalid code%s%s",
                     text[0] ? ": " : "", text);
            return MX_EREDUCER_ERROR;
        }
        snprintf(msg, msglen, "%.*s %s", (int)clen, code, text);
        return MX_EAPP_REJECT;
    }
    lua_settop(L, 1);
    return 0;
}

static int lua_reduce(const struct mx_reducer *self, const mx_val *state, const json_t *action,
                      const struct mx_reduce_ctx *ctx, json_t **effects, int *is_payload,
                      char *msg, size_t msglen)
{
    struct lua_reducer *lr = (struct lua_reducer *)self;
    struct call_args a = {.init = 0, .state = state, .arg = action, .ctx = ctx};
    *is_payload = 0;
    int rc = run(lr, &a, msg, msglen);
    if (rc)
        return rc;
    struct mx_lua_out lim = {.max_depth = ctx->max_depth, .max_bytes = ctx->max_bytes,
                             .max_ops = ctx->max_ops};
    rc = mx_lua_to_effects(lr->vm->L, 1, &lim, effects, msg, msglen);
    lua_settop(lr->vm->L, 0);
    return rc;
}

static int lua_init(const struct mx_reducer *self, const json_t *params,
                    const struct mx_reduce_ctx *ctx, json_t **state, char *msg, size_t msglen)
{
    struct lua_reducer *lr = (struct lua_reducer *)self;
    if (!lr->vm || !lr->has_init) {
        *state = json_incref((json_t *)params);
        return 0;
    }
    struct call_args a = {.init = 1, .arg = params, .ctx = ctx};
    int rc = run(lr, &a, msg, msglen);
    if (rc)
        return rc;
    struct mx_lua_out lim = {.max_depth = ctx->max_depth, .max_bytes = ctx->max_bytes};
    char why[160];
    *state = mx_lua_to_json(lr->vm->L, 1, &lim, why, sizeof(why));
    lua_settop(lr->vm->L, 0);
    if (!*state) {
        if (!strcmp(why, "out of memory"))
            return MX_ENOMEM;
        snprintf(msg, msglen, "init returned a value that is not JSON: %s", why);
        return MX_EREDUCER_ERROR;
    }
    return 0;
}

struct mx_reducer *mx_lua_reducer_new(const char *path, size_t budget, size_t memory, char *err,
                                      size_t errlen)
{
    struct lua_reducer *lr = mx_calloc(1, sizeof(*lr));
    if (!lr) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    lr->base.name = "lua";
    lr->base.uses_ctx = 1;
    lr->base.reduce = lua_reduce;
    lr->base.init = lua_init;
    if (mx_lua_reducer_reload(&lr->base, path, budget, memory, err, errlen)) {
        free(lr);
        return NULL;
    }
    return &lr->base;
}

int mx_lua_reducer_reload(struct mx_reducer *r, const char *path, size_t budget, size_t memory,
                          char *err, size_t errlen)
{
    struct lua_reducer *lr = (struct lua_reducer *)r;
    char *src;
    size_t len;
    if (read_file(path, &src, &len, err, errlen))
        return -1;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char name[sizeof(lr->chunkname)];
    snprintf(name, sizeof(name), "=%s", base);
    int has_init;
    struct mx_lua_vm *vm = build_vm(src, len, name, budget, memory, &has_init, err, errlen);
    if (!vm) {
        free(src);
        return -1;
    }
    mx_lua_vm_free(lr->vm);
    free(lr->src);
    lr->vm = vm;
    lr->src = src;
    lr->srclen = len;
    memcpy(lr->chunkname, name, sizeof(name));
    lr->budget = budget;
    lr->memory = memory;
    lr->has_init = has_init;
    return 0;
}

void mx_lua_reducer_free(struct mx_reducer *r)
{
    struct lua_reducer *lr = (struct lua_reducer *)r;
    if (!lr)
        return;
    mx_lua_vm_free(lr->vm);
    free(lr->src);
    free(lr);
}
