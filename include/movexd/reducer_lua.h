/* reducer_lua.h - Lua reducers (reducer_lua.c); the registry in reducer.c
 * is their only user. */
#ifndef MOVEXD_REDUCER_LUA_H
#define MOVEXD_REDUCER_LUA_H

#include <stddef.h>

#include "movexd/reducer.h"

/* Load PATH into a new VM: the reducer, or NULL with err ("FILE:LINE: ..."
 * for syntax and top-level errors). */
struct mx_reducer *mx_lua_reducer_new(const char *path, size_t budget, size_t memory, char *err,
                                      size_t errlen);

/* Replace r's VM by one running PATH's current text; on failure (-1, err)
 * r keeps its old VM. */
int mx_lua_reducer_reload(struct mx_reducer *r, const char *path, size_t budget, size_t memory,
                          char *err, size_t errlen);

/* Compile and run PATH's top level in a scratch VM; errors name the full
 * path (movexd -t). */
int mx_lua_reducer_check(const char *path, size_t budget, size_t memory, char *err, size_t errlen);

void mx_lua_reducer_free(struct mx_reducer *r);

#endif
