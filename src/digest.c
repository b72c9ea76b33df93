/* digest.c - the state checksum (PROTOCOL.md "Checksum") and the cached
 * per-node digest and serialized size of the mx_val tree.
 *
 * Why it is built this way:
 *
 *  - A container's digest depends only on its children's 16-byte digests
 *    (and, for objects, the keys' digests), never on their bytes. That is
 *    what makes caching sound: a node whose `fresh` is 1 has a dig and jsize
 *    that still describe it exactly, so refresh never descends into it.
 *    The whole scheme rests on json.h's rule that whoever mutates a node
 *    clears `fresh` on it and on every ancestor; a stale flag on an ancestor
 *    would hide the change from refresh and the room would publish a wrong
 *    checksum. Refresh therefore trusts the flags and never re-verifies.
 *
 *  - jsize is cached beside dig because the same walk has all the pieces
 *    (number text is formatted for the digest anyway), and knowing the exact
 *    size of mx_json_dump() output lets callers size frames and enforce
 *    state size limits without serializing. It must match mx_json_dump byte
 *    for byte, so the escape rules below mirror mx_json_dump_string.
 *
 *  - Object members are kept sorted in UTF-16 order by json.c and carry D(key)
 *    from insertion, so rehashing an object is a single pass that streams
 *    32 bytes per member: no sorting, no key hashing, no allocation.
 *
 *  - Children are refreshed before the parent's hash state is set up, and
 *    the hashing lives in a separate, non-inlined function: only one
 *    crypto_generichash_state (a few hundred bytes) is live at a time, so the
 *    stack cost per level of recursion stays small on deep trees.
 *
 *  - -0 never reaches the hash as "-0": mx_numfmt prints it as "0", as
 *    JavaScript does, so 0 and -0 digest alike wherever they come from.
 *
 * mx_digest_jansson is the uncached reference path over a jansson tree (used
 * by tests and tools); it sorts each object's keys itself, so it allocates.
 */
#include "movexd/digest.h"
#include "movexd/alloc.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/numfmt.h"

#if defined(__GNUC__)
#define MX_NOINLINE __attribute__((noinline))
#else
#define MX_NOINLINE
#endif

/* ---- primitives -------------------------------------------------------- */

static const uint8_t TAG_NULL = 'n', TAG_FALSE = 'f', TAG_TRUE = 't';

static void hash_bytes(const void *p, size_t n, uint8_t out[MX_DIGEST_LEN])
{
    crypto_generichash(out, MX_DIGEST_LEN, p, n, NULL, 0);
}

void mx_digest_string(const char *s, size_t len, uint8_t out[MX_DIGEST_LEN])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, MX_DIGEST_LEN);
    crypto_generichash_update(&st, (const unsigned char *)"s", 1);
    crypto_generichash_update(&st, (const unsigned char *)s, len);
    crypto_generichash_final(&st, out, MX_DIGEST_LEN);
}

/* D(number); returns the length of its JSON text (the same text). */
static size_t digest_number(double d, uint8_t out[MX_DIGEST_LEN])
{
    char t[1 + MX_NUMFMT_MAX];
    t[0] = 'd';
    size_t n = mx_numfmt(d, t + 1);
    hash_bytes(t, 1 + n, out);
    return n;
}

/* Streams 16-byte digests into a hash state through a block-sized buffer,
 * so a container with many children costs few update calls. */
typedef struct {
    crypto_generichash_state st;
    size_t n;
    unsigned char buf[8 * MX_DIGEST_LEN];
} dig_stream;

static void ds_init(dig_stream *s, char tag)
{
    crypto_generichash_init(&s->st, NULL, 0, MX_DIGEST_LEN);
    s->buf[0] = (unsigned char)tag;
    s->n = 1;
}

static void ds_put(dig_stream *s, const uint8_t d[MX_DIGEST_LEN])
{
    if (s->n + MX_DIGEST_LEN > sizeof(s->buf)) {
        crypto_generichash_update(&s->st, s->buf, s->n);
        s->n = 0;
    }
    memcpy(s->buf + s->n, d, MX_DIGEST_LEN);
    s->n += MX_DIGEST_LEN;
}

static void ds_final(dig_stream *s, uint8_t out[MX_DIGEST_LEN])
{
    crypto_generichash_update(&s->st, s->buf, s->n);
    crypto_generichash_final(&s->st, out, MX_DIGEST_LEN);
}

/* ---- cached tree ------------------------------------------------------- */

/* Hash and size a container whose children are all fresh. */
static MX_NOINLINE void seal_array(mx_val *v)
{
    dig_stream s;
    size_t n = v->u.arr.len;
    size_t js = 2 + (n ? n - 1 : 0); /* brackets and commas */
    ds_init(&s, 'a');
    for (size_t i = 0; i < n; i++) {
        const mx_val *c = v->u.arr.items[i];
        ds_put(&s, c->dig);
        js += c->jsize;
    }
    ds_final(&s, v->dig);
    v->jsize = js;
}

static MX_NOINLINE void seal_object(mx_val *v)
{
    dig_stream s;
    size_t n = v->u.obj.len;
    size_t js = 2 + (n ? n - 1 : 0) + n; /* braces, commas, colons */
    ds_init(&s, 'o');
    for (size_t i = 0; i < n; i++) {
        const struct mx_member *m = &v->u.obj.m[i];
        ds_put(&s, m->keydig);
        ds_put(&s, m->val->dig);
        js += m->keyjs + m->val->jsize;
    }
    ds_final(&s, v->dig);
    v->jsize = js;
}

static void refresh(mx_val *v)
{
    if (v->fresh)
        return;
    switch (v->type) {
    case MX_NULL:
        hash_bytes(&TAG_NULL, 1, v->dig);
        v->jsize = 4;
        break;
    case MX_FALSE:
        hash_bytes(&TAG_FALSE, 1, v->dig);
        v->jsize = 5;
        break;
    case MX_TRUE:
        hash_bytes(&TAG_TRUE, 1, v->dig);
        v->jsize = 4;
        break;
    case MX_NUMBER:
        v->jsize = digest_number(v->u.num, v->dig);
        break;
    case MX_STRING:
        mx_digest_string(v->u.str.s, v->u.str.len, v->dig);
        v->jsize = mx_json_string_size(v->u.str.s, v->u.str.len);
        break;
    case MX_ARRAY:
        for (size_t i = 0; i < v->u.arr.len; i++)
            if (!v->u.arr.items[i]->fresh)
                refresh(v->u.arr.items[i]);
        seal_array(v);
        break;
    case MX_OBJECT:
        for (size_t i = 0; i < v->u.obj.len; i++)
            if (!v->u.obj.m[i].val->fresh)
                refresh(v->u.obj.m[i].val);
        seal_object(v);
        break;
    }
    v->fresh = 1;
}

int mx_digest_refresh(mx_val *v)
{
    /* Nothing here allocates, so this cannot fail; the -1 in the contract
     * leaves room for an implementation that does. */
    refresh(v);
    return 0;
}

int mx_digest_of(mx_val *v, uint8_t out[MX_DIGEST_LEN])
{
    if (mx_digest_refresh(v))
        return -1;
    memcpy(out, v->dig, MX_DIGEST_LEN);
    return 0;
}

/* ---- uncached, over jansson -------------------------------------------- */

struct jkey {
    const char *k;
    size_t len;
    json_t *v;
};

static int jkey_cmp(const void *a, const void *b)
{
    const struct jkey *x = a, *y = b;
    return mx_json_keycmp(x->k, x->len, y->k, y->len);
}

int mx_digest_jansson(const json_t *j, uint8_t out[MX_DIGEST_LEN])
{
    switch (json_typeof(j)) {
    case JSON_NULL:
        hash_bytes(&TAG_NULL, 1, out);
        return 0;
    case JSON_FALSE:
        hash_bytes(&TAG_FALSE, 1, out);
        return 0;
    case JSON_TRUE:
        hash_bytes(&TAG_TRUE, 1, out);
        return 0;
    case JSON_INTEGER:
        digest_number((double)json_integer_value(j), out);
        return 0;
    case JSON_REAL:
        if (!isfinite(json_real_value(j)))
            return -1;
        digest_number(json_real_value(j), out);
        return 0;
    case JSON_STRING:
        mx_digest_string(json_string_value(j), json_string_length(j), out);
        return 0;
    case JSON_ARRAY: {
        dig_stream s;
        ds_init(&s, 'a');
        for (size_t i = 0; i < json_array_size(j); i++) {
            uint8_t d[MX_DIGEST_LEN];
            if (mx_digest_jansson(json_array_get(j, i), d))
                return -1;
            ds_put(&s, d);
        }
        ds_final(&s, out);
        return 0;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(j), i = 0;
        struct jkey *keys = NULL;
        if (n) {
            keys = mx_malloc(n * sizeof(*keys));
            if (!keys)
                return -1;
        }
        const char *k;
        size_t klen;
        json_t *cv;
        json_object_keylen_foreach((json_t *)j, k, klen, cv)
        {
            keys[i].k = k;
            keys[i].len = klen;
            keys[i].v = cv;
            i++;
        }
        if (n > 1)
            qsort(keys, n, sizeof(*keys), jkey_cmp);
        dig_stream s;
        ds_init(&s, 'o');
        for (i = 0; i < n; i++) {
            uint8_t d[MX_DIGEST_LEN];
            mx_digest_string(keys[i].k, keys[i].len, d);
            ds_put(&s, d);
            if (mx_digest_jansson(keys[i].v, d)) {
                free(keys);
                return -1;
            }
            ds_put(&s, d);
        }
        free(keys);
        ds_final(&s, out);
        return 0;
    }
    }
    return -1;
}

/* ---- hex --------------------------------------------------------------- */

void mx_digest_hex(const uint8_t dig[MX_DIGEST_LEN], char out[MX_CHECKSUM_HEX])
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < MX_DIGEST_LEN; i++) {
        out[2 * i] = hx[dig[i] >> 4];
        out[2 * i + 1] = hx[dig[i] & 15];
    }
    out[2 * MX_DIGEST_LEN] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int mx_digest_parse_hex(const char *hex, size_t len, uint8_t out[MX_DIGEST_LEN])
{
    uint8_t tmp[MX_DIGEST_LEN];
    if (!hex || len != 2 * MX_DIGEST_LEN)
        return -1;
    for (size_t i = 0; i < MX_DIGEST_LEN; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(out, tmp, MX_DIGEST_LEN); /* out untouched on error */
    return 0;
}
