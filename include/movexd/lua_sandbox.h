/* lua_sandbox.h - a Lua 5.4 VM that runs untrusted reducer code with a hard
 * memory cap, an instruction budget and only the safe libraries
 * (lua_sandbox.c; docs/REDUCERS.md lists what a reducer can reach).
 */
#ifndef MOVEXD_LUA_SANDBOX_H
#define MOVEXD_LUA_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

struct mx_lua_vm {
    lua_State *L;
    size_t mem_used, mem_limit;
    int mem_hit;     /* an allocation was refused during this call */
    uint64_t budget; /* instructions per call */
    uint64_t used;   /* charged during this call (hook steps + wrapper costs) */
    int over;        /* the budget ran out during this call */
    int timed_out;   /* ... because the call's wall-clock limit passed */
    uint64_t deadline_ns; /* CLOCK_MONOTONIC time the running call must end by */
    int loading;     /* the file's top level runs: globals may still be defined */
    uint32_t gen;    /* bumped at every call's start: state views of older calls are dead */
};

/* A VM with the sandboxed globals, the movex table and the budget hook
 * installed. NULL on allocation failure. */
struct mx_lua_vm *mx_lua_vm_new(size_t mem_limit, uint64_t budget);
void mx_lua_vm_free(struct mx_lua_vm *vm);

enum mx_lua_status { MX_LUA_OK = 0, MX_LUA_ERROR, MX_LUA_BUDGET, MX_LUA_MEMORY };

/* Call fn (a C function) in protected mode with ud as its only argument
 * (light userdata), under the budget and memory cap, leaving nresults on the
 * stack (on MX_LUA_ERROR the error object instead). Counters are reset
 * before; after it the VM must be replaced when the result is BUDGET or
 * MEMORY (it may be damaged half-way through an update). */
enum mx_lua_status mx_lua_vm_run(struct mx_lua_vm *vm, lua_CFunction fn, void *ud, int nresults);

/* Close the globals: from now on they are read-only. `chunk` is the stack
 * index of the file's main function, whose _ENV everything shares. */
void mx_lua_vm_freeze(struct mx_lua_vm *vm);

/* Charge cost instructions to the running call; raises a budget error
 * (that pcall cannot swallow) when the budget is spent. */
void mx_lua_charge(lua_State *L, uint64_t cost);

struct mx_lua_vm *mx_lua_vm_of(lua_State *L);

/* The wall-clock limit of one call with this budget (ns): a call running
 * past it stops like one over budget (timed_out set). */
uint64_t mx_lua_time_limit_ns(uint64_t budget);

/* JSON null as a Lua value (movex.null) and the markers of movex.array() /
 * movex.object(). */
void mx_lua_push_null(lua_State *L);
int mx_lua_is_null(lua_State *L, int idx);
/* 1 array, 2 object, 0 unmarked */
int mx_lua_marker(lua_State *L, int idx);
void mx_lua_mark(lua_State *L, int idx, int kind);

#endif
