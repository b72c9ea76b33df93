/* lua_json.h - values between a reducer's Lua VM and JSON (lua_json.c):
 * the action and init params in, the lazy read-only state view, and the
 * validated conversion of what a reducer returns.
 */
#ifndef MOVEXD_LUA_JSON_H
#define MOVEXD_LUA_JSON_H

#include <stddef.h>

#include <jansson.h>
#include <lua.h>

#include "movexd/json.h"

/* Push j as plain Lua values (null: movex.null; an empty array is marked
 * with movex.array). May raise (memory): call inside mx_lua_vm_run. */
void mx_lua_push_json(lua_State *L, const json_t *j);

/* Push a read-only view of v: scalars as Lua values, containers as a lazy
 * userdata indexed on demand. Views die when the call ends (the VM's gen
 * changes). May raise. */
void mx_lua_push_view(lua_State *L, const mx_val *v);

struct mx_lua_out {
    int max_depth;    /* containers (0 = 64) */
    size_t max_bytes; /* serialized size (0 = unlimited) */
    size_t max_ops;   /* effects list length (0 = unlimited) */
};

/* The Lua value at idx as JSON; never raises. NULL with why filled when it
 * is not a JSON value (function, userdata, thread, NaN, inf, cycle, too
 * deep, invalid UTF-8 or NUL, non-string object key, mixed table, too
 * large) or memory ran out. Object members are sorted (UTF-16 order). */
json_t *mx_lua_to_json(lua_State *L, int idx, const struct mx_lua_out *lim, char *why,
                       size_t whylen);

/* The effects list at idx as a JSON array of well-formed patch operations:
 * 0, or MX_EBAD_EFFECTS / MX_ENOMEM with msg naming the effect's index. */
int mx_lua_to_effects(lua_State *L, int idx, const struct mx_lua_out *lim, json_t **out,
                      char *msg, size_t msglen);

/* 1 when s[0..len) is UTF-8 without NUL. */
int mx_lua_utf8_ok(const char *s, size_t len);

#endif
