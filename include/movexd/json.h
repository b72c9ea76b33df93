/* json.h - the room state's JSON tree.
 *
 * A room's state is held as an mx_val tree rather than a jansson tree
 * because every node carries a cached digest and a cached serialized size:
 * after a patch, only the nodes on changed paths are recomputed, so an
 * action costs O(what it changed) instead of O(state).
 *
 * Invariants:
 *  - numbers are IEEE-754 doubles and always finite;
 *  - object members are kept sorted by key in UTF-16 code unit order (the
 *    order the checksum needs), keys are unique;
 *  - strings and keys are valid UTF-8 without NUL (checked at the edge);
 *  - `fresh` is 1 only while `dig` and `jsize` describe the node exactly.
 *    Any mutation through this API clears it on the mutated container; the
 *    caller that mutates a deep node clears it on every ancestor (the patch
 *    engine does this as it walks a path).
 */
#ifndef MOVEXD_JSON_H
#define MOVEXD_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "movexd/buf.h"

#define MX_DIGEST_LEN 16

typedef enum {
    MX_NULL = 0,
    MX_FALSE,
    MX_TRUE,
    MX_NUMBER,
    MX_STRING,
    MX_ARRAY,
    MX_OBJECT
} mx_type;

typedef struct mx_val mx_val;

struct mx_member {
    char *key; /* NUL-terminated copy, keylen bytes */
    size_t keylen;
    uint8_t keydig[MX_DIGEST_LEN]; /* D(key as string), computed on insert */
    size_t keyjs;                  /* bytes of the key as a JSON string literal */
    mx_val *val;
};

struct mx_val {
    uint8_t type;
    uint8_t fresh; /* dig and jsize are valid */
    uint8_t dig[MX_DIGEST_LEN];
    size_t jsize; /* bytes of mx_json_dump() output */
    union {
        double num;
        struct {
            char *s;
            size_t len;
        } str;
        struct {
            mx_val **items;
            size_t len, cap;
        } arr;
        struct {
            struct mx_member *m;
            size_t len, cap;
        } obj;
    } u;
};

/* Constructors return NULL only on allocation failure. */
mx_val *mx_json_null(void);
mx_val *mx_json_bool(int b);
mx_val *mx_json_num(double d); /* d must be finite */
mx_val *mx_json_str(const char *s, size_t len);
mx_val *mx_json_arr(void);
mx_val *mx_json_obj(void);

void mx_json_free(mx_val *v);
mx_val *mx_json_copy(const mx_val *v); /* deep copy, caches included */
int mx_json_equal(const mx_val *a, const mx_val *b); /* JSON deep equality */

/* Compare two keys in UTF-16 code unit order (as JavaScript sorts strings).
 * Inputs are valid UTF-8. Returns <0, 0, >0. */
int mx_json_keycmp(const char *a, size_t alen, const char *b, size_t blen);

/* Objects. get returns a borrowed pointer or NULL; idx (optional) receives
 * the member's index when found. set takes ownership of v and frees any
 * value it replaces; take removes the member and hands its value to the
 * caller. set/take return 0 or -1 (allocation failure / missing key). */
mx_val *mx_json_obj_get(const mx_val *o, const char *k, size_t klen);
int mx_json_obj_set(mx_val *o, const char *k, size_t klen, mx_val *v);
mx_val *mx_json_obj_take(mx_val *o, const char *k, size_t klen);

/* Arrays. insert at idx in [0, len] shifts later items up; take removes and
 * returns item idx; replace swaps in v and returns the old item. */
int mx_json_arr_insert(mx_val *a, size_t idx, mx_val *v);
mx_val *mx_json_arr_take(mx_val *a, size_t idx);
mx_val *mx_json_arr_replace(mx_val *a, size_t idx, mx_val *v);

/* Conversion from/to jansson (jansson parses the wire). from_jansson fails
 * (NULL, with *why set to a static message) on non-finite numbers, on
 * nesting deeper than max_depth (0 = unlimited), or on allocation failure.
 * A jansson integer becomes a double. Depth counts containers (the root
 * container is depth 1; scalars add nothing). */
mx_val *mx_json_from_jansson(const json_t *j, int max_depth, const char **why);
json_t *mx_json_to_jansson(const mx_val *v);

/* Serialize as compact JSON the way JavaScript's JSON.stringify would
 * (ECMAScript number text, members in stored order). Returns 0 or -1 on
 * allocation failure. */
int mx_json_dump(const mx_val *v, mx_buf *out);

/* The same for a jansson value (numbers in ECMAScript form, object members in
 * insertion order), so wire text never shows "1.0" or 0.10000000000000001.
 * Fails (-1) on a non-finite real. */
int mx_json_dump_jansson(const json_t *j, mx_buf *out);

/* Bytes mx_json_dump_string writes for s (quotes included). */
size_t mx_json_string_size(const char *s, size_t len);

/* Append a JSON string literal (quotes and escapes) for s. */
int mx_json_dump_string(const char *s, size_t len, mx_buf *out);

/* Container nesting of a jansson value: a scalar is 0, {} or [] is 1,
 * [[1]] is 2. Stops counting once past limit (returns at most limit + 1). */
int mx_json_depth(const json_t *j, int limit);

#endif
