/* patch.h - JSON Patch (RFC 6902) plus `inc`, applied to an mx_val tree.
 *
 * Every reducer's output ("effects") is a patch, so this engine is shared
 * by all reducers. A patch applies atomically: either every operation
 * applies, or the tree is left exactly as it was (values and caches). To
 * stay O(what changed) it does not copy the state; each operation records
 * how to undo itself, and a failure (or a later veto by the caller, such as
 * a state-size limit) rolls the recorded steps back in reverse order.
 *
 * Nodes along every mutated path are marked not fresh, so a following
 * mx_digest_refresh() recomputes exactly the changed paths.
 */
#ifndef MOVEXD_PATCH_H
#define MOVEXD_PATCH_H

#include <stddef.h>

#include <jansson.h>

#include "movexd/json.h"

typedef struct mx_patch_undo mx_patch_undo; /* opaque undo record */

typedef struct {
    int code;          /* MX_ETEST_FAILED, MX_EBAD_PATCH, MX_ETOO_DEEP, MX_ENOMEM */
    size_t op_index;   /* which operation failed */
    char message[160]; /* human text, e.g. "op 2 (remove): path /a/3 does not exist" */
} mx_patch_error;

typedef struct {
    int max_depth;  /* values added may not nest deeper than this (0 = no limit) */
    size_t max_ops; /* 0 = no limit */
} mx_patch_limits;

/* A patch read straight from a message's bytes (json_parse.h,
 * mx_json_parse_action): the ops of an action {"type":"patch","payload":
 * [...]} whose every op is an object of at most "op", "path", "from"
 * (strings) and "value" (any JSON). The parser builds no jansson tree for
 * the action, its payload array or the op objects - three containers and
 * their strings per op, ~11% of the engine's CPU per action
 * (docs/PERFORMANCE.md, step 11) - only each "value". Anything else (other
 * members, non-string op/path/from, more than MX_PATCH_VIEW_OPS ops, long
 * pointers) is parsed as a tree as before. */
#define MX_PATCH_VIEW_OPS 8
#define MX_PATCH_VIEW_TEXT 320
struct mx_patch_view {
    size_t n;
    struct {
        const char *op, *path, *from; /* NUL-terminated, in text; NULL = absent */
        json_t *value;                /* owned; NULL = absent */
    } op[MX_PATCH_VIEW_OPS];
    const char *src; /* the action's source text (in the message) */
    size_t srclen;
    size_t used; /* bytes of text used */
    char text[MX_PATCH_VIEW_TEXT];
};

/* Apply `patch` (a jansson array of operation objects) to *root. *root may
 * be replaced (an op on path "" replaces the whole document). On success
 * returns 0 and *undo (when undo != NULL) holds what mx_patch_rollback needs;
 * the caller must then call exactly one of mx_patch_rollback or
 * mx_patch_commit. On failure returns a negative mx_err, fills *err, leaves
 * *root unchanged and *undo NULL. */
int mx_patch_apply(mx_val **root, const json_t *patch, const mx_patch_limits *lim,
                   mx_patch_undo **undo, mx_patch_error *err);

/* The same for a view: exactly what mx_patch_apply does with the
 * equivalent jansson array (same checks, same errors, same result). */
int mx_patch_apply_view(mx_val **root, const struct mx_patch_view *patch, const mx_patch_limits *lim,
                        mx_patch_undo **undo, mx_patch_error *err);

/* Undo a successful apply (restores the exact previous tree) and free u. */
void mx_patch_rollback(mx_val **root, mx_patch_undo *u);

/* Keep the result and free u (and the values it held for undo). */
void mx_patch_commit(mx_patch_undo *u);

/* Validate the shape of a patch without applying it (op names, member
 * types, pointer syntax). Returns 0 or MX_EBAD_PATCH with *err filled. */
int mx_patch_validate(const json_t *patch, const mx_patch_limits *lim, mx_patch_error *err);

#endif
