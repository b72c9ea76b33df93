/* reducer_json.c - the built-in `json` reducer: an action of type "patch"
 * carries its own effects (a JSON Patch plus `inc`). Validation of the ops
 * themselves happens when the patch engine applies them. */
#include <stdio.h>
#include <string.h>

#include "movexd/err.h"
#include "movexd/reducer.h"

static int json_reduce(const struct mx_reducer *self, const mx_val *state, const json_t *action,
                       const struct mx_reduce_ctx *ctx, json_t **effects, int *is_payload,
                       char *msg, size_t msglen)
{
    (void)self;
    (void)state;
    (void)ctx;
    const char *type = json_string_value(json_object_get(action, "type"));
    if (!type || strcmp(type, "patch") != 0) {
        snprintf(msg, msglen, "the json reducer accepts only actions of type \"patch\"");
        return MX_EBAD_ACTION;
    }
    json_t *payload = json_object_get(action, "payload");
    if (!json_is_array(payload)) {
        snprintf(msg, msglen, "a patch action's payload must be an array of operations");
        return MX_EBAD_PATCH;
    }
    *effects = json_incref(payload);
    *is_payload = 1;
    return 0;
}

const struct mx_reducer mx_reducer_json = {.name = "json", .uses_ctx = 0, .reduce = json_reduce,
                                           .init = NULL};
