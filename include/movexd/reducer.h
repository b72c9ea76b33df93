/* reducer.h - the one interface every reducer sits behind.
 *
 * A reducer turns (state, action) into effects: a JSON Patch that the room
 * applies with the shared patch engine, logs and forwards. Rooms, the log
 * and fan-out never know which reducer a room uses. The built-in `json`
 * reducer accepts {"type":"patch","payload":[ops]} and its effects are the
 * payload itself; `lua:PATH` reducers (reducer_lua.c, docs/REDUCERS.md)
 * compute effects from app logic in a sandboxed Lua VM.
 *
 * The core stays pure: time and the random seed are passed in through
 * struct mx_reduce_ctx (the engine reads the clock once per message); a
 * reducer that uses them (uses_ctx) has both logged with the action, so
 * recovery and catch-up apply the logged effects and never re-run it.
 */
#ifndef MOVEXD_REDUCER_H
#define MOVEXD_REDUCER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "movexd/config.h"
#include "movexd/json.h"

struct mx_reduce_ctx {
    const char *client; /* sender's client id ("admin:KEY" for the admin API) */
    size_t clientlen;
    const char *room;
    size_t roomlen;
    uint64_t seq;     /* the seq the action gets if applied (init: 0) */
    uint64_t time_ms; /* server wall time, ms since the epoch */
    uint64_t seed;    /* per-action seed of ctx.random */
    int max_depth;    /* output nesting bound */
    size_t max_ops;   /* effects per action (0 = none) */
    size_t max_bytes; /* serialized output bound (0 = none) */
};

/* A reducer's own reject code (a string matching ^[a-z][a-z0-9_]{0,63}$)
 * travels as code MX_EAPP_REJECT with message "CODE MESSAGE": the
 * exactly-once memory, the WAL and snapshots keep it unchanged, and
 * mx_reducer_reject_code() splits it again for the wire. */
#define MX_REDUCER_CODE_MAX 64

struct mx_reducer {
    const char *name;
    int uses_ctx; /* 1: ctx.time and the seed are logged with each action */
    /* Returns 0 with *effects set (a new reference to a JSON array) and
     * *is_payload = 1 when the effects are exactly the action's payload (then
     * replies need not repeat them); or a negative mx_err with msg filled. */
    int (*reduce)(const struct mx_reducer *self, const mx_val *state, const json_t *action,
                  const struct mx_reduce_ctx *ctx, json_t **effects, int *is_payload, char *msg,
                  size_t msglen);
    /* Optional (NULL: the create's state is the initial state). Returns 0
     * with *state (a new reference) or a negative mx_err with msg filled. */
    int (*init)(const struct mx_reducer *self, const json_t *params,
                const struct mx_reduce_ctx *ctx, json_t **state, char *msg, size_t msglen);
};

/* The reducer of a room whose type (the room id's prefix) is configured by
 * block t (mx_config_room_type): the shared `json` reducer, or block t's
 * Lua VM (one per conf block, shared by every type the block covers;
 * created on first use and kept until mx_reducers_free). NULL with err
 * filled when the reducer cannot be loaded. The pointer stays valid across
 * reloads. */
const struct mx_reducer *mx_reducer_for(const struct mx_room_type *t, char *err, size_t errlen);

/* Compile every Lua reducer the conf names (and run its top level) without
 * installing anything: 0, or -1 with "FILE:LINE: message" in err. movexd
 * -t, start-up and SIGHUP call it before a conf is accepted. */
int mx_reducers_check(const struct mx_config *c, char *err, size_t errlen);

/* SIGHUP: each live Lua reducer reloads its (possibly changed) file with
 * its block's current settings; a file that fails to load is logged and the
 * old reducer kept. */
void mx_reducers_reload(const struct mx_config *c);

/* Lua VMs alive (at most one per conf room block that names lua:PATH). */
size_t mx_reducers_vms(void);

/* Close every Lua VM (exit, tests). Rooms must be gone first. */
void mx_reducers_free(void);

/* 1 when s[0..len) is a valid reducer reject code (^[a-z][a-z0-9_]{0,63}$). */
int mx_reducer_valid_code(const char *s, size_t len);

/* Split a stored MX_EAPP_REJECT message into code and text. */
void mx_reducer_reject_code(const char *stored, const char **code, size_t *codelen,
                            const char **text);

/* The built-in json reducer. */
extern const struct mx_reducer mx_reducer_json;

#endif
