/* reducer.h - the one interface every reducer sits behind.
 *
 * A reducer turns (state, action) into effects: a JSON Patch that the room
 * applies with the shared patch engine, logs and forwards. Rooms, the log
 * and fan-out never know which reducer a room uses. The built-in `json`
 * reducer accepts {"type":"patch","payload":[ops]} and its effects are the
 * payload itself; app reducers (later) compute effects from app logic.
 */
#ifndef MOVEXD_REDUCER_H
#define MOVEXD_REDUCER_H

#include <stddef.h>

#include <jansson.h>

#include "movexd/json.h"

struct mx_reducer {
    const char *name;
    /* Returns 0 with *effects set (a new reference to a JSON array) and
     * *is_payload = 1 when the effects are exactly the action's payload (then
     * replies need not repeat them); or a negative mx_err with msg filled. */
    int (*reduce)(const mx_val *state, const json_t *action, json_t **effects, int *is_payload,
                  char *msg, size_t msglen);
};

/* The reducer registered under name, or NULL. */
const struct mx_reducer *mx_reducer_find(const char *name);

#endif
