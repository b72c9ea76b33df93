/* json_parse.h - a fast parser for inbound messages that builds the same
 * jansson tree json_loadb() would, for the common shapes, and says so when
 * it cannot.
 *
 * jansson's own parser reads one byte at a time through a stream layer and
 * copies every token twice; on the per-action path it was a third of the
 * daemon's CPU (docs/PERFORMANCE.md, "The per-action work"). This parser
 * reads the buffer directly. It is not a second JSON grammar with its own
 * errors: it accepts a subset of what json_loadb accepts, and for any input
 * outside that subset (or any invalid input) it answers MX_JP_FALLBACK, and
 * the caller runs json_loadb, whose answer and error message stand. So the
 * daemon accepts and refuses exactly what it did before.
 */
#ifndef MOVEXD_JSON_PARSE_H
#define MOVEXD_JSON_PARSE_H

#include <stddef.h>
#include <string.h>

#include <jansson.h>

#include "movexd/patch.h"

enum {
    MX_JP_OK = 0,       /* *out is the tree */
    MX_JP_FALLBACK = 1, /* not handled here: use json_loadb */
    MX_JP_OOM = -1,     /* an allocation failed (nothing is returned) */
};

/* Deepest nesting handled here; deeper input falls back. */
#define MX_JP_MAX_DEPTH 64

/* Parse buf[0..len) as json_loadb(buf, len, JSON_REJECT_DUPLICATES |
 * JSON_DECODE_INT_AS_REAL) would: a top-level object or array; every number
 * a real, bit for bit the value jansson gives; object members in input
 * order; the jansson singletons for true/false/null. On MX_JP_OK, *depth is
 * the nesting depth as mx_json_depth() counts it (containers count, scalars
 * do not).
 *
 * Handled: any such JSON text whose strings are printable ASCII, the UTF-8
 * that jansson accepts, and the escapes \" \\ \/ \b \f \n \r \t, nesting up
 * to MX_JP_MAX_DEPTH. Falls back on: \u escapes, any syntax or encoding
 * error, duplicate keys, numbers that overflow a double. */
/* The source text of one top-level member, when it is canonical: exactly
 * the bytes mx_json_dump_jansson() writes for its value. */
struct mx_json_raw {
    const char *key; /* in: the member's name */
    size_t keylen;
    const char *text; /* out: into buf; NULL when absent or not canonical */
    size_t len;
};

/* raw: NULL, or the member whose canonical text is wanted (only set when
 * MX_JP_OK is returned). */
int mx_json_parse(const char *buf, size_t len, json_t **out, int *depth, struct mx_json_raw *raw);

/* A request's top level without jansson's object: the members of a
 * top-level object as a flat list (keys point into buf, in input order;
 * each value is the jansson tree mx_json_parse builds for it, owned by
 * the list). Building the object - its hash table, a pair per member -
 * and looking the protocol's fields up in it was ~5% of the daemon's CPU
 * per action (docs/PERFORMANCE.md, step 9). MX_JP_OK only for input on
 * which mx_json_parse returns MX_JP_OK with an object whose members are
 * these; besides mx_json_parse's cases it falls back on more than
 * MX_JP_TOP_MAX members and on a key with an escape (then use
 * mx_json_parse, whose tree is the same thing). *depth and raw as there. */
#define MX_JP_TOP_MAX 16
struct mx_json_top {
    size_t n;
    struct {
        const char *key;
        size_t keylen;
        json_t *val; /* NULL only for the member read as *view */
    } m[MX_JP_TOP_MAX];
    struct mx_patch_view *view; /* mx_json_parse_action: the "action" member's view, else NULL */
};
int mx_json_parse_top(const char *buf, size_t len, struct mx_json_top *top, int *depth, struct mx_json_raw *raw);
/* mx_json_parse_top, with a top-level "action" member of a patch's shape
 * read into *view (patch.h) instead of a tree: then top->view == view and
 * that member's val is NULL. Same result, depth and raw text otherwise;
 * the action's tree, when wanted, is mx_json_parse(view->src, view->srclen)
 * (test_json_parse checks the view against it). */
int mx_json_parse_action(const char *buf, size_t len, struct mx_json_top *top, int *depth,
                         struct mx_json_raw *raw, struct mx_patch_view *view);
/* The member's value, or NULL (key is NUL-terminated). */
json_t *mx_json_top_get(const struct mx_json_top *top, const char *key);
/* The same for kn bytes of key; inline, so a literal key's length and
 * comparison are known at compile time (the decoder looks up ~8 keys per
 * request). */
static inline json_t *mx_json_top_getn(const struct mx_json_top *top, const char *key, size_t kn)
{
    for (size_t i = 0; i < top->n; i++)
        if (top->m[i].keylen == kn && memcmp(top->m[i].key, key, kn) == 0)
            return top->m[i].val;
    return NULL;
}
/* Drop the values and the view's (a list with n == 0 is fine). */
void mx_json_top_free(struct mx_json_top *top);

#endif
