/* lua_sandbox.c - the Lua 5.4 VM reducers run in: what they can reach and
 * how much they can spend.
 *
 * Invariants:
 *  - memory: every allocation of the VM goes through vm_alloc, which keeps
 *    mem_used and refuses growth past mem_limit; after the first refusal in
 *    a call every further growth is refused too (mem_hit), so a call that
 *    keeps hitting the cap stops at once instead of thrashing the GC;
 *  - time: a count hook charges HOOK_STEP instructions to `used` every
 *    HOOK_STEP instructions of every thread (new coroutines inherit the
 *    hook). Once the budget is spent (or memory was refused) the hook
 *    re-arms itself on every instruction and raises again, so pcall, xpcall,
 *    coroutines and __close handlers can catch the error but not run on:
 *    whatever they execute next raises too, until the call unwinds to C.
 *    xpcall's handler runs after the unwinding (w_xpcall): Lua would run
 *    it inside the hook, where hooks are off;
 *  - wall clock: single VM instructions whose cost grows with string size
 *    (==, <, .. on long strings, tonumber of a long string) cost one count
 *    each, so the hook also compares the time with the call's deadline
 *    (mx_lua_time_limit_ns of the budget) and stops the call the same way
 *    when it has passed: no call holds the event loop much longer;
 *  - library functions whose cost the hook cannot see (they loop inside C)
 *    are wrapped: each charges its cost before it runs (string.rep, format,
 *    the pattern functions, table.concat, move, insert, remove, unpack, sort,
 *    utf8.len, ...); a pattern whose worst case on its subject exceeds what
 *    is left of the budget is refused before it starts; coroutine.create
 *    and wrap charge the HOOK_STEP a new thread may run unseen;
 *  - reach: only base (without load, dofile, loadfile, collectgarbage,
 *    print, warn), string (without dump), table, math (without random and
 *    randomseed: ctx.random is the seeded one), utf8, coroutine and the
 *    movex table. The globals are a read-only proxy: the file's top level
 *    may define globals (vm->loading), nothing can after it has run. Library
 *    tables and the string metatable are read-only proxies too, rawset
 *    refuses protected tables, and setmetatable refuses a __gc;
 *  - nothing raises outside mx_lua_vm_run's protected call (no panic).
 */
#include "movexd/lua_sandbox.h"
#include "movexd/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#define HOOK_STEP 1000
#define PROTECTED "protected"

static char null_key, array_mt_key, object_mt_key;

struct mx_lua_vm *mx_lua_vm_of(lua_State *L)
{
    return *(struct mx_lua_vm **)lua_getextraspace(L);
}

/* ------------------------------------------------------------ allocator -- */

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct mx_lua_vm *vm = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        vm->mem_used -= old;
        return NULL;
    }
    if (nsize > old && (vm->mem_hit || nsize - old > vm->mem_limit - vm->mem_used)) {
        vm->mem_hit = 1;
        return NULL;
    }
    void *p = mx_realloc(ptr, nsize);
    if (!p) {
        if (nsize <= old)
            return ptr; /* Lua relies on shrinking never failing */
        vm->mem_hit = 1;
        return NULL;
    }
    vm->mem_used = vm->mem_used - old + nsize;
    return p;
}

/* --------------------------------------------------------------- budget -- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mx_lua_time_limit_ns(uint64_t budget)
{
    /* 1 us per instruction of budget, at least 1 s: about 100 times what
     * the budget takes to run, so only work the count cannot see hits it */
    uint64_t ns = budget > UINT64_MAX / 1000 ? UINT64_MAX : budget * 1000;
    return ns < 1000000000u ? 1000000000u : ns;
}

static void hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct mx_lua_vm *vm = mx_lua_vm_of(L);
    if (!vm->mem_hit && !vm->over) { /* once stopped, the first cause is the answer */
        vm->used += HOOK_STEP;
        if (vm->used > vm->budget) {
            vm->over = 1;
        } else if (now_ns() > vm->deadline_ns) {
            vm->over = 1;
            vm->timed_out = 1;
        }
    }
    if (vm->over || vm->mem_hit) {
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        luaL_error(L, !vm->over        ? "memory limit reached"
                      : vm->timed_out ? "time limit exceeded"
                                      : "instruction budget exceeded");
    }
}

void mx_lua_charge(lua_State *L, uint64_t cost)
{
    struct mx_lua_vm *vm = mx_lua_vm_of(L);
    if (vm->mem_hit) {
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "memory limit reached");
    }
    if (vm->over) { /* spent already: the first cause stays the answer */
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        luaL_error(L, vm->timed_out ? "time limit exceeded" : "instruction budget exceeded");
    }
    if (cost > vm->budget || vm->used + cost > vm->budget) {
        vm->over = 1;
        vm->used = vm->budget + 1;
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "instruction budget exceeded");
    }
    vm->used += cost;
}

/* -------------------------------------------------------------- wrappers -- */

/* Each wrapper is a C closure whose upvalue 1 is the original function. */
static int call_orig(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

static size_t arg_len(lua_State *L, int i)
{
    size_t len = 0;
    if (lua_type(L, i) == LUA_TSTRING)
        lua_tolstring(L, i, &len);
    return len;
}

/* string.rep(s, n [, sep]): n iterations and n * (#s + #sep) bytes; a
 * result past the memory cap is refused before anything is allocated */
static int w_rep(lua_State *L)
{
    size_t l = arg_len(L, 1) + arg_len(L, 3);
    lua_Integer n = luaL_checkinteger(L, 2);
    if (n > 0) {
        double bytes = (double)n * (double)l;
        struct mx_lua_vm *vm = mx_lua_vm_of(L);
        if (bytes > (double)vm->mem_limit) {
            vm->mem_hit = 1;
            lua_sethook(L, hook, LUA_MASKCOUNT, 1);
            return luaL_error(L, "memory limit reached");
        }
        /* one short memcpy per repetition, then the bytes */
        mx_lua_charge(L, (uint64_t)n / 8 + (uint64_t)(bytes / 16) + 1);
    }
    return call_orig(L);
}

/* functions linear in their string arguments (format, upper, lower,
 * reverse, byte, sub, len, utf8.len, utf8.codepoint, utf8.offset, char) */
static int w_linear(lua_State *L)
{
    uint64_t cost = 1;
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++)
        cost += arg_len(L, i) / 16;
    mx_lua_charge(L, cost);
    return call_orig(L);
}

/* Worst case of Lua's backtracking matcher on a subject of n bytes: each
 * start position (one when anchored) times n/i for the i-th quantifier. */
static double pattern_cost(const char *p, size_t plen, size_t n, int anchored_only)
{
    int k = 0;
    int anchored = plen > 0 && p[0] == '^';
    for (size_t i = 0; i < plen; i++) {
        if (p[i] == '%') {
            /* %bxy scans ahead for its closing y like a quantifier does */
            if (i + 1 < plen && p[i + 1] == 'b') {
                k++;
                i += 2;
            }
            i++;
            continue;
        }
        if (p[i] == '[') {
            /* skip the set: ']' right after '[' or '[^' is literal */
            i++;
            if (i < plen && p[i] == '^')
                i++;
            if (i < plen && p[i] == ']')
                i++;
            while (i < plen && p[i] != ']') {
                if (p[i] == '%')
                    i++;
                i++;
            }
            continue;
        }
        if (p[i] == '*' || p[i] == '+' || p[i] == '-' || p[i] == '?')
            k++;
    }
    double est = anchored || anchored_only ? 1.0 : (double)n + 1;
    est *= (double)plen + 1;
    for (int i = 1; i <= k && est < 1e300; i++)
        est *= ((double)n + 1) / i;
    return est;
}

/* find, match, gmatch, gsub: charge the worst case before matching */
static int w_pattern(lua_State *L)
{
    size_t n = arg_len(L, 1), plen = 0;
    const char *p = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &plen) : "";
    /* string.find(s, p, init, plain) with plain: a substring search */
    int plain = lua_toboolean(L, lua_upvalueindex(2)) && lua_toboolean(L, 4);
    double est = plain ? (double)n * ((double)plen + 1) : pattern_cost(p, plen, n, 0);
    double cost = est / 256 + 1 + (double)n / 16;
    struct mx_lua_vm *vm = mx_lua_vm_of(L);
    if (cost > (double)(vm->budget - (vm->used < vm->budget ? vm->used : vm->budget)))
        mx_lua_charge(L, vm->budget + 1); /* raises */
    mx_lua_charge(L, (uint64_t)cost);
    return call_orig(L);
}

/* table functions that walk a range of the table in C */
static lua_Integer range_len(lua_State *L, int first_arg, int last_arg)
{
    lua_Integer f = luaL_optinteger(L, first_arg, 1);
    lua_Integer e = lua_isnoneornil(L, last_arg) ? (lua_Integer)lua_rawlen(L, 1)
                                                 : luaL_checkinteger(L, last_arg);
    if (e < f)
        return 0;
    if (f < 0 && e > LUA_MAXINTEGER + f)
        return LUA_MAXINTEGER;
    return e - f + 1;
}

static int w_concat(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    mx_lua_charge(L, (uint64_t)range_len(L, 3, 4) + arg_len(L, 2) / 16 + 1);
    return call_orig(L);
}

static int w_unpack(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE)
        mx_lua_charge(L, (uint64_t)range_len(L, 2, 3) + 1);
    return call_orig(L);
}

static int w_move(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
    uint64_t n = e >= f ? (uint64_t)e - (uint64_t)f + 1 : 0;
    mx_lua_charge(L, n + 1);
    return call_orig(L);
}

/* insert, remove (shift the tail), sort (n log n) */
static int w_table_len(lua_State *L)
{
    uint64_t n = lua_type(L, 1) == LUA_TTABLE ? (uint64_t)lua_rawlen(L, 1) : 0;
    if (lua_toboolean(L, lua_upvalueindex(2))) { /* sort */
        uint64_t lg = 1;
        while ((1ull << lg) < n && lg < 63)
            lg++;
        n *= lg;
    }
    mx_lua_charge(L, n + 1);
    return call_orig(L);
}

/* coroutine.create and wrap: a new thread starts with a full hook count of
 * its own, so it can run up to HOOK_STEP - 1 instructions that no hook ever
 * charges (a coroutine that ends first). Charged up front, a tree of short
 * coroutines (each spawning more before its own hook fires) pays for what
 * it can run, and none can be made once the budget is spent. */
static int w_thread(lua_State *L)
{
    mx_lua_charge(L, HOOK_STEP);
    return call_orig(L);
}

static void wrap(lua_State *L, int lib, const char *name, lua_CFunction w, int flag)
{
    lua_getfield(L, lib, name);
    lua_pushboolean(L, flag);
    lua_pushcclosure(L, w, 2);
    lua_setfield(L, lib, name);
}

/* ---------------------------------------------------------------- base -- */

static int protected_table(lua_State *L, int idx)
{
    if (luaL_getmetafield(L, idx, "__metatable") == LUA_TNIL)
        return 0;
    lua_pop(L, 1);
    return 1;
}

static int w_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (protected_table(L, 1))
        return luaL_error(L, "rawset on a protected table");
    return call_orig(L);
}

static int w_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "__gc") != LUA_TNIL)
        return luaL_error(L, "__gc metamethods are not allowed in reducers");
    lua_settop(L, 2);
    return call_orig(L);
}

/* xpcall(f, h, ...): Lua runs a message handler at the point of the error,
 * which for an error raised by the budget hook is inside the hook, where
 * hooks are off: a handler that loops would never be stopped. So the
 * handler runs here, after the error has unwound, with the hook live. */
static int w_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checkany(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    for (int i = 3; i <= n; i++)
        lua_pushvalue(L, i);
    int base = n + 1;
    if (lua_pcall(L, n - 2 > 0 ? n - 2 : 0, LUA_MULTRET, 0) == LUA_OK) {
        lua_pushboolean(L, 1);
        lua_insert(L, base);
        return lua_gettop(L) - base + 1;
    }
    lua_pushvalue(L, 2);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

static int readonly(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table (%s)",
                      lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
}

/* __newindex of the globals proxy: defines into the real globals while the
 * file's top level runs, refuses afterwards */
static int globals_newindex(lua_State *L)
{
    if (!mx_lua_vm_of(L)->loading)
        return luaL_error(L, "globals are read-only in a reducer (assigning '%s'); use local",
                          lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
    lua_rawset(L, lua_upvalueindex(1));
    return 0;
}

/* pairs() over a read-only proxy walks the table behind it without
 * handing it out: pairs' second result is the proxy itself (returning the
 * real table there let `local _, g = pairs(_G)` write globals freely) */
static int proxy_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1)))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int proxy_pairs(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, proxy_next, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replace the table at the top of the stack by a read-only proxy of it;
 * newindex (may be NULL) overrides the refusal. */
static void push_proxy(lua_State *L, lua_CFunction newindex)
{
    int real = lua_gettop(L);
    lua_newtable(L);                  /* proxy */
    lua_createtable(L, 0, 4);         /* its metatable */
    lua_pushvalue(L, real);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, real);
    lua_pushcclosure(L, newindex ? newindex : readonly, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, real);
    lua_pushcclosure(L, proxy_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, PROTECTED);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_replace(L, real);
}

/* --------------------------------------------------------------- movex -- */

void mx_lua_push_null(lua_State *L) { lua_pushlightuserdata(L, &null_key); }

int mx_lua_is_null(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &null_key;
}

int mx_lua_marker(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    int kind = 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    if (lua_rawequal(L, -1, -2))
        kind = 1;
    lua_pop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &object_mt_key);
    if (lua_rawequal(L, -1, -2))
        kind = 2;
    lua_pop(L, 2);
    return kind;
}

void mx_lua_mark(lua_State *L, int idx, int kind)
{
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, kind == 1 ? &array_mt_key : &object_mt_key);
    lua_setmetatable(L, idx);
}

static int movex_mark(lua_State *L, int kind)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1) && !mx_lua_marker(L, 1))
        return luaL_error(L, "movex.%s: the table already has a metatable",
                          kind == 1 ? "array" : "object");
    lua_settop(L, 1);
    mx_lua_mark(L, 1, kind);
    return 1;
}

static int movex_array(lua_State *L) { return movex_mark(L, 1); }
static int movex_object(lua_State *L) { return movex_mark(L, 2); }

static void new_marker(lua_State *L, const void *key, const char *name)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, PROTECTED);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* ----------------------------------------------------------------- setup -- */

static int open_sandbox(lua_State *L)
{
    static const char *const drop[] = {"print", "load", "loadstring", "dofile", "loadfile",
                                       "collectgarbage", "require", "warn", "module", NULL};
    luaL_requiref(L, "_G", luaopen_base, 1);
    int G = lua_gettop(L);
    for (const char *const *d = drop; *d; d++) {
        lua_pushnil(L);
        lua_setfield(L, G, *d);
    }
    wrap(L, G, "rawset", w_rawset, 0);
    wrap(L, G, "setmetatable", w_setmetatable, 0);
    lua_pushcfunction(L, w_xpcall);
    lua_setfield(L, G, "xpcall");

    luaL_requiref(L, "string", luaopen_string, 0);
    int S = lua_gettop(L);
    lua_pushnil(L);
    lua_setfield(L, S, "dump");
    wrap(L, S, "rep", w_rep, 0);
    wrap(L, S, "find", w_pattern, 1);
    wrap(L, S, "match", w_pattern, 0);
    wrap(L, S, "gmatch", w_pattern, 0);
    wrap(L, S, "gsub", w_pattern, 0);
    static const char *const slin[] = {"format", "upper", "lower", "reverse", "byte", "sub",
                                       "len", "char", "pack", "unpack", "packsize", NULL};
    for (const char *const *f = slin; *f; f++)
        wrap(L, S, *f, w_linear, 0);

    luaL_requiref(L, "table", luaopen_table, 0);
    int T = lua_gettop(L);
    wrap(L, T, "concat", w_concat, 0);
    wrap(L, T, "move", w_move, 0);
    wrap(L, T, "unpack", w_unpack, 0);
    wrap(L, T, "insert", w_table_len, 0);
    wrap(L, T, "remove", w_table_len, 0);
    wrap(L, T, "sort", w_table_len, 1);

    luaL_requiref(L, "math", luaopen_math, 0);
    int M = lua_gettop(L);
    lua_pushnil(L);
    lua_setfield(L, M, "random");
    lua_pushnil(L);
    lua_setfield(L, M, "randomseed");

    luaL_requiref(L, "utf8", luaopen_utf8, 0);
    int U = lua_gettop(L);
    static const char *const ulin[] = {"len", "codepoint", "offset", "char", NULL};
    for (const char *const *f = ulin; *f; f++)
        wrap(L, U, *f, w_linear, 0);

    luaL_requiref(L, "coroutine", luaopen_coroutine, 0);
    int C = lua_gettop(L);
    wrap(L, C, "create", w_thread, 0);
    wrap(L, C, "wrap", w_thread, 0);

    new_marker(L, &array_mt_key, "movex.array");
    new_marker(L, &object_mt_key, "movex.object");
    lua_createtable(L, 0, 3);
    int X = lua_gettop(L);
    mx_lua_push_null(L);
    lua_setfield(L, X, "null");
    lua_pushcfunction(L, movex_array);
    lua_setfield(L, X, "array");
    lua_pushcfunction(L, movex_object);
    lua_setfield(L, X, "object");

    /* the libraries become read-only proxies in the globals; strings'
     * methods go through the wrapped string table, its metatable locked */
    static const char *const names[] = {"string", "table", "math", "utf8", "coroutine", "movex"};
    int idx[] = {S, T, M, U, C, X};
    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
        lua_pushvalue(L, idx[i]);
        push_proxy(L, NULL);
        if (i == 0) {
            lua_pushliteral(L, "");
            lua_getmetatable(L, -1);
            lua_pushvalue(L, -3);
            lua_setfield(L, -2, "__index");
            lua_pushliteral(L, PROTECTED);
            lua_setfield(L, -2, "__metatable");
            lua_pop(L, 2);
        }
        lua_setfield(L, G, names[i]);
    }
    /* globals: the real table stays reachable only from C */
    lua_pushvalue(L, G);
    push_proxy(L, globals_newindex);
    lua_pushvalue(L, -1);
    lua_setfield(L, G, "_G");
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    return 0;
}

static int panic(lua_State *L)
{
    /* unreachable by design (every call is protected); abort loudly */
    (void)L;
    abort();
}

struct mx_lua_vm *mx_lua_vm_new(size_t mem_limit, uint64_t budget)
{
    struct mx_lua_vm *vm = mx_calloc(1, sizeof(*vm));
    if (!vm)
        return NULL;
    vm->mem_limit = mem_limit;
    vm->budget = budget;
    vm->L = lua_newstate(vm_alloc, vm);
    if (!vm->L) {
        free(vm);
        return NULL;
    }
    lua_atpanic(vm->L, panic);
    *(struct mx_lua_vm **)lua_getextraspace(vm->L) = vm;
    vm->loading = 1;
    if (mx_lua_vm_run(vm, open_sandbox, NULL, 0) != MX_LUA_OK) {
        mx_lua_vm_free(vm);
        return NULL;
    }
    return vm;
}

void mx_lua_vm_free(struct mx_lua_vm *vm)
{
    if (!vm)
        return;
    if (vm->L)
        lua_close(vm->L);
    free(vm);
}

void mx_lua_vm_freeze(struct mx_lua_vm *vm) { vm->loading = 0; }

enum mx_lua_status mx_lua_vm_run(struct mx_lua_vm *vm, lua_CFunction fn, void *ud, int nresults)
{
    lua_State *L = vm->L;
    lua_settop(L, 0);
    vm->used = 0;
    vm->over = 0;
    vm->timed_out = 0;
    vm->mem_hit = 0;
    uint64_t limit = mx_lua_time_limit_ns(vm->budget), start = now_ns();
    vm->deadline_ns = start > UINT64_MAX - limit ? UINT64_MAX : start + limit;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_STEP);
    vm->gen++; /* views of earlier calls die; this call's live until the next */
    int rc = LUA_ERRMEM;
    if (lua_checkstack(L, 2)) {
        lua_pushcfunction(L, fn);
        lua_pushlightuserdata(L, ud);
        rc = lua_pcall(L, 1, nresults, 0);
    }
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_STEP);
    if (vm->over)
        return MX_LUA_BUDGET;
    if (vm->mem_hit || rc == LUA_ERRMEM) {
        vm->mem_hit = 1;
        return MX_LUA_MEMORY;
    }
    vm->mem_hit = 0;
    return rc == LUA_OK ? MX_LUA_OK : MX_LUA_ERROR;
}
