/* lua_json.c - JSON in and out of a reducer's Lua VM.
 *
 * In: the action and init params become plain Lua tables (JSON null is
 * movex.null); the room state is NOT copied: mx_lua_push_view pushes a
 * userdata that indexes the mx_val tree lazily, so reading three fields of
 * a 1 MB state costs three lookups. A view carries the VM generation it was
 * made in and refuses to be used once that call has ended (the tree it
 * points into may be gone), so a reducer that keeps `state` in an upvalue
 * gets an error, never a dangling read.
 *
 * Out: mx_lua_to_json walks tables with raw access only (no metamethod, so
 * no reducer code runs outside the budget) and never raises: every value
 * is checked (JSON types, finite numbers, UTF-8 without NUL, string keys,
 * no cycles, depth, total size) and objects are built in UTF-16 key order,
 * so the same table always gives the same text.
 */
#include "movexd/lua_json.h"
#include "movexd/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "movexd/err.h"
#include "movexd/lua_sandbox.h"
#include "movexd/patch.h"

#define VIEW_MT "movex.state"
#define DEPTH_CAP 1000

int mx_lua_utf8_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* ------------------------------------------------------------------ in -- */

/* Integral numbers arrive as Lua integers, so they index arrays and pass
 * math.type(x) == "integer" checks; the rest as floats. */
static void push_number(lua_State *L, double d)
{
    if (d == floor(d) && fabs(d) < 9007199254740992.0)
        lua_pushinteger(L, (lua_Integer)d);
    else
        lua_pushnumber(L, d);
}

void mx_lua_push_json(lua_State *L, const json_t *j)
{
    luaL_checkstack(L, 4, "action nests too deep");
    switch (json_typeof(j)) {
    case JSON_NULL:
        mx_lua_push_null(L);
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_INTEGER:
        push_number(L, (double)json_integer_value(j));
        break;
    case JSON_REAL:
        push_number(L, json_real_value(j));
        break;
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(j), json_string_length(j));
        break;
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        lua_createtable(L, n > 1000000 ? 1000000 : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            mx_lua_push_json(L, json_array_get(j, i));
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        if (n == 0)
            mx_lua_mark(L, -1, 1);
        break;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        lua_createtable(L, 0, (int)(json_object_size(j) > 1000000 ? 1000000 : json_object_size(j)));
        json_object_foreach((json_t *)j, k, v) {
            lua_pushstring(L, k);
            mx_lua_push_json(L, v);
            lua_rawset(L, -3);
        }
        break;
    }
    }
}

struct view {
    const mx_val *v;
    uint32_t gen;
};

static const mx_val *check_view(lua_State *L, int idx)
{
    struct view *w = luaL_checkudata(L, idx, VIEW_MT);
    if (w->gen != mx_lua_vm_of(L)->gen)
        luaL_error(L, "state view used after its reduce call ended (keep values, not views)");
    return w->v;
}

static int view_index(lua_State *L)
{
    const mx_val *v = check_view(L, 1);
    const mx_val *c = NULL;
    if (v->type == MX_ARRAY) {
        int isint = 0;
        lua_Integer i = lua_tointegerx(L, 2, &isint);
        if (isint && i >= 1 && (lua_Unsigned)i <= v->u.arr.len)
            c = v->u.arr.items[i - 1];
    } else if (lua_type(L, 2) == LUA_TSTRING) {
        size_t len;
        const char *k = lua_tolstring(L, 2, &len);
        c = mx_json_obj_get(v, k, len);
    }
    if (!c)
        lua_pushnil(L);
    else
        mx_lua_push_view(L, c);
    return 1;
}

static int view_len(lua_State *L)
{
    const mx_val *v = check_view(L, 1);
    lua_pushinteger(L, v->type == MX_ARRAY ? (lua_Integer)v->u.arr.len : 0);
    return 1;
}

/* iterator of pairs(view): upvalue 1 = position */
static int view_next(lua_State *L)
{
    const mx_val *v = check_view(L, 1);
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(1));
    size_t len = v->type == MX_ARRAY ? v->u.arr.len : v->u.obj.len;
    if ((size_t)pos >= len)
        return 0;
    lua_pushinteger(L, pos + 1);
    lua_replace(L, lua_upvalueindex(1));
    if (v->type == MX_ARRAY) {
        lua_pushinteger(L, pos + 1);
        mx_lua_push_view(L, v->u.arr.items[pos]);
    } else {
        lua_pushlstring(L, v->u.obj.m[pos].key, v->u.obj.m[pos].keylen);
        mx_lua_push_view(L, v->u.obj.m[pos].val);
    }
    return 2;
}

static int view_pairs(lua_State *L)
{
    check_view(L, 1);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, view_next, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static int view_newindex(lua_State *L)
{
    return luaL_error(L, "the state is read-only: return effects to change it");
}

static int view_tostring(lua_State *L)
{
    const mx_val *v = check_view(L, 1);
    lua_pushfstring(L, "movex state %s", v->type == MX_ARRAY ? "array" : "object");
    return 1;
}

void mx_lua_push_view(lua_State *L, const mx_val *v)
{
    switch (v->type) {
    case MX_NULL:
        mx_lua_push_null(L);
        return;
    case MX_TRUE:
    case MX_FALSE:
        lua_pushboolean(L, v->type == MX_TRUE);
        return;
    case MX_NUMBER:
        push_number(L, v->u.num);
        return;
    case MX_STRING:
        lua_pushlstring(L, v->u.str.s, v->u.str.len);
        return;
    }
    struct view *w = lua_newuserdatauv(L, sizeof(*w), 0);
    w->v = v;
    w->gen = mx_lua_vm_of(L)->gen;
    if (luaL_newmetatable(L, VIEW_MT)) {
        static const luaL_Reg m[] = {{"__index", view_index},       {"__len", view_len},
                                     {"__pairs", view_pairs},       {"__newindex", view_newindex},
                                     {"__tostring", view_tostring}, {NULL, NULL}};
        luaL_setfuncs(L, m, 0);
        lua_pushliteral(L, "protected");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
}

/* ----------------------------------------------------------------- out -- */

struct conv {
    lua_State *L;
    const struct mx_lua_out *lim;
    size_t bytes;
    int depth;
    const void *open[DEPTH_CAP + 1]; /* tables being converted: a cycle check */
    char *why;
    size_t whylen;
};

struct member {
    const char *k;
    size_t len;
    json_t *v;
};

static int cmp_member(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    return mx_json_keycmp(x->k, x->len, y->k, y->len);
}

static json_t *conv_value(struct conv *c, int idx);

static int add_bytes(struct conv *c, size_t n)
{
    c->bytes += n;
    if (c->lim->max_bytes && c->bytes > c->lim->max_bytes) {
        snprintf(c->why, c->whylen, "the value is larger than %zu bytes", c->lim->max_bytes);
        return -1;
    }
    return 0;
}

static json_t *conv_table(struct conv *c, int idx)
{
    lua_State *L = c->L;
    const void *self = lua_topointer(L, idx);
    int maxd = c->lim->max_depth > 0 && c->lim->max_depth < DEPTH_CAP ? c->lim->max_depth : 64;
    for (int i = 0; i < c->depth; i++)
        if (c->open[i] == self) {
            snprintf(c->why, c->whylen, "a table contains itself (cycle)");
            return NULL;
        }
    if (c->depth >= maxd) {
        snprintf(c->why, c->whylen, "nesting deeper than max_depth %d", maxd);
        return NULL;
    }
    if (!lua_checkstack(L, 4)) {
        snprintf(c->why, c->whylen, "out of memory");
        return NULL;
    }
    int kind = mx_lua_marker(L, idx);
    /* count entries and classify keys */
    size_t count = 0, nint = 0, nstr = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        count++;
        if (lua_type(L, -2) == LUA_TSTRING)
            nstr++;
        else if (lua_isinteger(L, -2)) {
            lua_Integer k = lua_tointeger(L, -2);
            if (k >= 1)
                nint++;
        }
        lua_pop(L, 1);
    }
    if (kind == 0)
        kind = count == 0 ? 2 : nint == count ? 1 : 2;
    json_t *out = NULL;
    c->open[c->depth++] = self;
    if (kind == 1) {
        if (nint != count || lua_rawlen(L, idx) != count) {
            snprintf(c->why, c->whylen,
                     nstr ? "a table mixes array items and string keys"
                          : "an array table has holes or keys other than 1..n");
            goto out;
        }
        out = json_array();
        if (!out || add_bytes(c, 2))
            goto fail;
        for (size_t i = 1; i <= count; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            json_t *v = conv_value(c, lua_gettop(L));
            lua_pop(L, 1);
            if (!v || json_array_append_new(out, v) || add_bytes(c, 1))
                goto fail;
        }
        goto out;
    }
    if (nstr != count) {
        snprintf(c->why, c->whylen, "object keys must be strings (a table mixes key types)");
        goto out;
    }
    struct member *m = count ? mx_calloc(count, sizeof(*m)) : NULL;
    if (count && !m) {
        snprintf(c->why, c->whylen, "out of memory");
        goto out;
    }
    size_t n = 0;
    int ok = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (ok && n < count) {
            m[n].k = lua_tolstring(L, -2, &m[n].len); /* a string key: no conversion */
            if (!mx_lua_utf8_ok(m[n].k, m[n].len)) {
                snprintf(c->why, c->whylen, "an object key is not UTF-8 (or contains NUL)");
                ok = 0;
            } else if (add_bytes(c, m[n].len + 4) || !(m[n].v = conv_value(c, lua_gettop(L)))) {
                ok = 0;
            } else {
                n++;
            }
        }
        lua_pop(L, 1);
    }
    if (ok) {
        if (n)
            qsort(m, n, sizeof(*m), cmp_member);
        out = json_object();
        for (size_t i = 0; out && i < n; i++) {
            if (json_object_setn_new_nocheck(out, m[i].k, m[i].len, m[i].v)) {
                m[i].v = NULL;
                json_decref(out);
                out = NULL;
                snprintf(c->why, c->whylen, "out of memory");
                for (size_t j = i + 1; j < n; j++)
                    json_decref(m[j].v);
                break;
            }
            m[i].v = NULL;
        }
        if (!out && n && m[0].v)
            for (size_t j = 0; j < n; j++)
                json_decref(m[j].v);
    } else {
        for (size_t i = 0; i < n; i++)
            json_decref(m[i].v);
    }
    free(m);
    goto out;
fail:
    if (!c->why[0])
        snprintf(c->why, c->whylen, "out of memory");
    json_decref(out);
    out = NULL;
out:
    c->depth--;
    return out;
}

static json_t *conv_value(struct conv *c, int idx)
{
    lua_State *L = c->L;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        if (add_bytes(c, 5))
            return NULL;
        return lua_toboolean(L, idx) ? json_true() : json_false();
    case LUA_TNUMBER: {
        double d = lua_isinteger(L, idx) ? (double)lua_tointeger(L, idx) : lua_tonumber(L, idx);
        if (!isfinite(d)) {
            snprintf(c->why, c->whylen, "NaN and infinity are not JSON numbers");
            return NULL;
        }
        if (add_bytes(c, 24))
            return NULL;
        json_t *j = json_real(d);
        if (!j)
            snprintf(c->why, c->whylen, "out of memory");
        return j;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (!mx_lua_utf8_ok(s, len)) {
            snprintf(c->why, c->whylen, "a string is not UTF-8 (or contains NUL)");
            return NULL;
        }
        if (add_bytes(c, len + 2))
            return NULL;
        json_t *j = json_stringn_nocheck(s, len);
        if (!j)
            snprintf(c->why, c->whylen, "out of memory");
        return j;
    }
    case LUA_TLIGHTUSERDATA:
        if (mx_lua_is_null(L, idx)) {
            if (add_bytes(c, 4))
                return NULL;
            return json_null();
        }
        break;
    case LUA_TUSERDATA: {
        struct view *w = luaL_testudata(L, idx, VIEW_MT);
        if (!w)
            break;
        if (w->gen != mx_lua_vm_of(L)->gen) {
            snprintf(c->why, c->whylen, "a state view from an earlier call");
            return NULL;
        }
        if (add_bytes(c, w->v->jsize))
            return NULL;
        json_t *j = mx_json_to_jansson(w->v);
        if (!j)
            snprintf(c->why, c->whylen, "out of memory");
        return j;
    }
    case LUA_TTABLE:
        return conv_table(c, lua_absindex(L, idx));
    case LUA_TNIL:
        snprintf(c->why, c->whylen, "nil is not a JSON value (use movex.null)");
        return NULL;
    default:
        break;
    }
    snprintf(c->why, c->whylen, "a %s is not a JSON value", luaL_typename(L, idx));
    return NULL;
}

/* A conversion state (its cycle stack is large: heap, not zeroed). */
static struct conv *conv_new(lua_State *L, const struct mx_lua_out *lim, char *why, size_t whylen)
{
    struct conv *c = mx_malloc(sizeof(*c));
    if (!c)
        return NULL;
    c->L = L;
    c->lim = lim;
    c->bytes = 0;
    c->depth = 0;
    c->why = why;
    c->whylen = whylen;
    why[0] = '\0';
    return c;
}

json_t *mx_lua_to_json(lua_State *L, int idx, const struct mx_lua_out *lim, char *why,
                       size_t whylen)
{
    struct conv *c = conv_new(L, lim, why, whylen);
    if (!c) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    json_t *j = conv_value(c, lua_absindex(L, idx));
    free(c);
    return j;
}

int mx_lua_to_effects(lua_State *L, int idx, const struct mx_lua_out *lim, json_t **out,
                      char *msg, size_t msglen)
{
    *out = NULL;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || mx_lua_marker(L, idx) == 2) {
        snprintf(msg, msglen, "reduce must return a list of effects, or nil, code, message");
        return MX_EREDUCER_ERROR;
    }
    size_t n = lua_rawlen(L, idx);
    if (lim->max_ops && n > lim->max_ops) {
        snprintf(msg, msglen, "%zu effects, over this room type's max_ops %zu", n, lim->max_ops);
        return MX_EBAD_EFFECTS;
    }
    char why[160];
    json_t *effects = json_array();
    struct conv *c = conv_new(L, lim, why, sizeof(why));
    if (!effects || !c) {
        json_decref(effects);
        free(c);
        return MX_ENOMEM;
    }
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        count++;
        lua_pop(L, 1);
    }
    if (count != n) {
        json_decref(effects);
        free(c);
        snprintf(msg, msglen, "the effects list has holes or keys other than 1..n");
        return MX_EBAD_EFFECTS;
    }
    /* one conversion state over the whole list: max_bytes bounds the sum */
    for (size_t i = 0; i < n; i++) {
        why[0] = '\0';
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        json_t *op = conv_value(c, lua_gettop(L));
        lua_pop(L, 1);
        if (!op || json_array_append_new(effects, op)) {
            json_decref(effects);
            free(c);
            if (!op && strcmp(why, "out of memory") == 0)
                return MX_ENOMEM;
            snprintf(msg, msglen, "effect %zu: %s", i, op ? "out of memory" : why);
            return MX_EBAD_EFFECTS;
        }
    }
    free(c);
    mx_patch_limits pl = {.max_depth = lim->max_depth, .max_ops = lim->max_ops};
    mx_patch_error perr;
    if (mx_patch_validate(effects, &pl, &perr)) {
        json_decref(effects);
        snprintf(msg, msglen, "effects: %s", perr.message);
        return MX_EBAD_EFFECTS;
    }
    *out = effects;
    return 0;
}
