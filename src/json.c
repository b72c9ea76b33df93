/* json.c - the mx_val tree: construction, sorted objects, copy, equality,
 * conversion from/to jansson and JSON.stringify-compatible output.
 *
 * Objects keep members sorted in UTF-16 code unit order so that the digest
 * (digest.c) can hash them in order without sorting, lookups are a binary
 * search, and the output is canonical. Each member caches D(key), so
 * rehashing an object costs one BLAKE2b pass over 32 bytes per member.
 * Every mutating call clears `fresh` on the container it mutates; clearing
 * ancestors is the caller's job (see json.h).
 */
#include "movexd/json.h"
#include "movexd/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/digest.h"
#include "movexd/numfmt.h"

static mx_val *new_val(uint8_t type)
{
    mx_val *v = mx_calloc(1, sizeof(*v));
    if (v)
        v->type = type;
    return v;
}

mx_val *mx_json_null(void) { return new_val(MX_NULL); }
mx_val *mx_json_bool(int b) { return new_val(b ? MX_TRUE : MX_FALSE); }
mx_val *mx_json_arr(void) { return new_val(MX_ARRAY); }
mx_val *mx_json_obj(void) { return new_val(MX_OBJECT); }

mx_val *mx_json_num(double d)
{
    mx_val *v = new_val(MX_NUMBER);
    if (v)
        v->u.num = (d == 0) ? 0.0 : d; /* -0 and 0 are one value */
    return v;
}

mx_val *mx_json_str(const char *s, size_t len)
{
    mx_val *v = new_val(MX_STRING);
    if (!v)
        return NULL;
    v->u.str.s = mx_malloc(len + 1);
    if (!v->u.str.s) {
        free(v);
        return NULL;
    }
    memcpy(v->u.str.s, s, len);
    v->u.str.s[len] = '\0';
    v->u.str.len = len;
    return v;
}

void mx_json_free(mx_val *v)
{
    if (!v)
        return;
    switch (v->type) {
    case MX_STRING:
        free(v->u.str.s);
        break;
    case MX_ARRAY:
        for (size_t i = 0; i < v->u.arr.len; i++)
            mx_json_free(v->u.arr.items[i]);
        free(v->u.arr.items);
        break;
    case MX_OBJECT:
        for (size_t i = 0; i < v->u.obj.len; i++) {
            free(v->u.obj.m[i].key);
            mx_json_free(v->u.obj.m[i].val);
        }
        free(v->u.obj.m);
        break;
    default:
        break;
    }
    free(v);
}

mx_val *mx_json_copy(const mx_val *v)
{
    mx_val *c = mx_malloc(sizeof(*c));
    if (!c)
        return NULL;
    *c = *v;
    switch (v->type) {
    case MX_STRING:
        c->u.str.s = mx_malloc(v->u.str.len + 1);
        if (!c->u.str.s)
            goto fail_shallow;
        memcpy(c->u.str.s, v->u.str.s, v->u.str.len + 1);
        break;
    case MX_ARRAY:
        c->u.arr.cap = v->u.arr.len;
        c->u.arr.items = NULL;
        if (v->u.arr.len) {
            c->u.arr.items = mx_calloc(v->u.arr.len, sizeof(mx_val *));
            if (!c->u.arr.items)
                goto fail_shallow;
        }
        for (size_t i = 0; i < v->u.arr.len; i++) {
            c->u.arr.items[i] = mx_json_copy(v->u.arr.items[i]);
            if (!c->u.arr.items[i]) {
                c->u.arr.len = i;
                mx_json_free(c);
                return NULL;
            }
        }
        break;
    case MX_OBJECT:
        c->u.obj.cap = v->u.obj.len;
        c->u.obj.m = NULL;
        if (v->u.obj.len) {
            c->u.obj.m = mx_calloc(v->u.obj.len, sizeof(struct mx_member));
            if (!c->u.obj.m)
                goto fail_shallow;
        }
        for (size_t i = 0; i < v->u.obj.len; i++) {
            const struct mx_member *sm = &v->u.obj.m[i];
            struct mx_member *dm = &c->u.obj.m[i];
            *dm = *sm;
            dm->key = mx_malloc(sm->keylen + 1);
            dm->val = dm->key ? mx_json_copy(sm->val) : NULL;
            if (!dm->val) {
                free(dm->key);
                c->u.obj.len = i;
                mx_json_free(c);
                return NULL;
            }
            memcpy(dm->key, sm->key, sm->keylen + 1);
        }
        break;
    default:
        break;
    }
    return c;
fail_shallow:
    free(c);
    return NULL;
}

int mx_json_equal(const mx_val *a, const mx_val *b)
{
    if (a == b)
        return 1;
    if (a->type != b->type)
        return 0;
    if (a->fresh && b->fresh && memcmp(a->dig, b->dig, MX_DIGEST_LEN) != 0)
        return 0; /* different digests: certainly different */
    switch (a->type) {
    case MX_NUMBER:
        return a->u.num == b->u.num;
    case MX_STRING:
        return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case MX_ARRAY:
        if (a->u.arr.len != b->u.arr.len)
            return 0;
        for (size_t i = 0; i < a->u.arr.len; i++)
            if (!mx_json_equal(a->u.arr.items[i], b->u.arr.items[i]))
                return 0;
        return 1;
    case MX_OBJECT:
        /* both sorted the same way, so members pair up by index */
        if (a->u.obj.len != b->u.obj.len)
            return 0;
        for (size_t i = 0; i < a->u.obj.len; i++) {
            const struct mx_member *x = &a->u.obj.m[i], *y = &b->u.obj.m[i];
            if (x->keylen != y->keylen || memcmp(x->key, y->key, x->keylen) != 0)
                return 0;
            if (!mx_json_equal(x->val, y->val))
                return 0;
        }
        return 1;
    default:
        return 1;
    }
}

/* Decode one UTF-8 code point starting at s[*i] (input is valid UTF-8). */
static unsigned decode_cp(const unsigned char *s, size_t len, size_t *i)
{
    unsigned c = s[*i];
    int n = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    unsigned cp = n == 0 ? c : n == 1 ? (c & 0x1F) : n == 2 ? (c & 0x0F) : (c & 0x07);
    (*i)++;
    for (int k = 0; k < n && *i < len; k++, (*i)++)
        cp = (cp << 6) | (s[*i] & 0x3F);
    return cp;
}

int mx_json_keycmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    size_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    if (i == n)
        return alen < blen ? -1 : alen > blen ? 1 : 0;
    /* Byte order equals code point order; UTF-16 order differs only when
     * one side is U+E000..U+FFFF and the other is a supplementary
     * character (encoded as surrogates D800..DFFF). Back up to the start
     * of the differing character and compare code points. */
    while (i > 0 && ((unsigned char)a[i] & 0xC0) == 0x80)
        i--;
    size_t ia = i, ib = i;
    unsigned ca = decode_cp((const unsigned char *)a, alen, &ia);
    unsigned cb = decode_cp((const unsigned char *)b, blen, &ib);
    int sa = ca >= 0x10000, sb = cb >= 0x10000;
    if (sa != sb) {
        unsigned bmp = sa ? cb : ca;
        int bmp_first = bmp < 0xD800;
        return sa ? (bmp_first ? 1 : -1) : (bmp_first ? -1 : 1);
    }
    return ca < cb ? -1 : 1;
}

/* Binary search; returns index of key if found (*found=1), else the index
 * where it would be inserted. */
static size_t obj_find(const mx_val *o, const char *k, size_t klen, int *found)
{
    size_t lo = 0, hi = o->u.obj.len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct mx_member *m = &o->u.obj.m[mid];
        int c = mx_json_keycmp(m->key, m->keylen, k, klen);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

mx_val *mx_json_obj_get(const mx_val *o, const char *k, size_t klen)
{
    int found;
    size_t i = obj_find(o, k, klen, &found);
    return found ? o->u.obj.m[i].val : NULL;
}

int mx_json_obj_set(mx_val *o, const char *k, size_t klen, mx_val *v)
{
    int found;
    size_t i = obj_find(o, k, klen, &found);
    o->fresh = 0;
    if (found) {
        mx_json_free(o->u.obj.m[i].val);
        o->u.obj.m[i].val = v;
        return 0;
    }
    if (o->u.obj.len == o->u.obj.cap) {
        size_t ncap = o->u.obj.cap ? o->u.obj.cap * 2 : 4;
        struct mx_member *nm = mx_realloc(o->u.obj.m, ncap * sizeof(*nm));
        if (!nm)
            return -1;
        o->u.obj.m = nm;
        o->u.obj.cap = ncap;
    }
    char *key = mx_malloc(klen + 1);
    if (!key)
        return -1;
    memcpy(key, k, klen);
    key[klen] = '\0';
    struct mx_member *m = o->u.obj.m;
    memmove(&m[i + 1], &m[i], (o->u.obj.len - i) * sizeof(*m));
    m[i].key = key;
    m[i].keylen = klen;
    mx_digest_string(k, klen, m[i].keydig);
    m[i].keyjs = mx_json_string_size(k, klen);
    m[i].val = v;
    o->u.obj.len++;
    return 0;
}

mx_val *mx_json_obj_take(mx_val *o, const char *k, size_t klen)
{
    int found;
    size_t i = obj_find(o, k, klen, &found);
    if (!found)
        return NULL;
    struct mx_member *m = o->u.obj.m;
    mx_val *v = m[i].val;
    free(m[i].key);
    memmove(&m[i], &m[i + 1], (o->u.obj.len - i - 1) * sizeof(*m));
    o->u.obj.len--;
    o->fresh = 0;
    return v;
}

int mx_json_arr_insert(mx_val *a, size_t idx, mx_val *v)
{
    if (idx > a->u.arr.len)
        return -1;
    if (a->u.arr.len == a->u.arr.cap) {
        size_t ncap = a->u.arr.cap ? a->u.arr.cap * 2 : 4;
        mx_val **ni = mx_realloc(a->u.arr.items, ncap * sizeof(*ni));
        if (!ni)
            return -1;
        a->u.arr.items = ni;
        a->u.arr.cap = ncap;
    }
    mx_val **it = a->u.arr.items;
    memmove(&it[idx + 1], &it[idx], (a->u.arr.len - idx) * sizeof(*it));
    it[idx] = v;
    a->u.arr.len++;
    a->fresh = 0;
    return 0;
}

mx_val *mx_json_arr_take(mx_val *a, size_t idx)
{
    if (idx >= a->u.arr.len)
        return NULL;
    mx_val **it = a->u.arr.items;
    mx_val *v = it[idx];
    memmove(&it[idx], &it[idx + 1], (a->u.arr.len - idx - 1) * sizeof(*it));
    a->u.arr.len--;
    a->fresh = 0;
    return v;
}

mx_val *mx_json_arr_replace(mx_val *a, size_t idx, mx_val *v)
{
    if (idx >= a->u.arr.len)
        return NULL;
    mx_val *old = a->u.arr.items[idx];
    a->u.arr.items[idx] = v;
    a->fresh = 0;
    return old;
}

static mx_val *from_j(const json_t *j, int depth, int max_depth, const char **why)
{
    if (max_depth > 0 && depth > max_depth && (json_is_array(j) || json_is_object(j))) {
        *why = "nesting too deep";
        return NULL;
    }
    mx_val *v = NULL;
    switch (json_typeof(j)) {
    case JSON_NULL:
        v = mx_json_null();
        break;
    case JSON_TRUE:
        v = mx_json_bool(1);
        break;
    case JSON_FALSE:
        v = mx_json_bool(0);
        break;
    case JSON_INTEGER:
        v = mx_json_num((double)json_integer_value(j));
        break;
    case JSON_REAL: {
        double d = json_real_value(j);
        if (!isfinite(d)) {
            *why = "number is not finite";
            return NULL;
        }
        v = mx_json_num(d);
        break;
    }
    case JSON_STRING:
        v = mx_json_str(json_string_value(j), json_string_length(j));
        break;
    case JSON_ARRAY: {
        v = mx_json_arr();
        if (!v)
            break;
        size_t n = json_array_size(j);
        if (n) {
            v->u.arr.items = mx_malloc(n * sizeof(mx_val *));
            if (!v->u.arr.items) {
                free(v);
                v = NULL;
                break;
            }
            v->u.arr.cap = n;
        }
        for (size_t i = 0; i < n; i++) {
            mx_val *c = from_j(json_array_get(j, i), depth + 1, max_depth, why);
            if (!c) {
                mx_json_free(v);
                return NULL;
            }
            v->u.arr.items[v->u.arr.len++] = c;
        }
        break;
    }
    case JSON_OBJECT: {
        v = mx_json_obj();
        if (!v)
            break;
        const char *k;
        json_t *cj;
        json_object_foreach((json_t *)j, k, cj)
        {
            mx_val *c = from_j(cj, depth + 1, max_depth, why);
            if (!c || mx_json_obj_set(v, k, strlen(k), c)) {
                if (c) {
                    mx_json_free(c);
                    *why = "out of memory";
                }
                mx_json_free(v);
                return NULL;
            }
        }
        break;
    }
    }
    if (!v)
        *why = "out of memory";
    return v;
}

mx_val *mx_json_from_jansson(const json_t *j, int max_depth, const char **why)
{
    const char *dummy;
    return from_j(j, 1, max_depth, why ? why : &dummy);
}

json_t *mx_json_to_jansson(const mx_val *v)
{
    switch (v->type) {
    case MX_NULL:
        return json_null();
    case MX_TRUE:
        return json_true();
    case MX_FALSE:
        return json_false();
    case MX_NUMBER:
        return json_real(v->u.num);
    case MX_STRING:
        return json_stringn(v->u.str.s, v->u.str.len);
    case MX_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; a && i < v->u.arr.len; i++) {
            json_t *c = mx_json_to_jansson(v->u.arr.items[i]);
            if (!c || json_array_append_new(a, c)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case MX_OBJECT: {
        json_t *o = json_object();
        for (size_t i = 0; o && i < v->u.obj.len; i++) {
            json_t *c = mx_json_to_jansson(v->u.obj.m[i].val);
            if (!c || json_object_setn_new(o, v->u.obj.m[i].key, v->u.obj.m[i].keylen, c)) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    }
    return NULL;
}

/* Extra bytes mx_json_dump_string writes for each byte beyond the byte
 * itself: 1 for the two-character escapes, 5 for \u00xx. */
static const uint8_t esc_extra[256] = {
    [0x00] = 5, [0x01] = 5, [0x02] = 5, [0x03] = 5, [0x04] = 5, [0x05] = 5,
    [0x06] = 5, [0x07] = 5, ['\b'] = 1, ['\t'] = 1, ['\n'] = 1, [0x0b] = 5,
    ['\f'] = 1, ['\r'] = 1, [0x0e] = 5, [0x0f] = 5, [0x10] = 5, [0x11] = 5,
    [0x12] = 5, [0x13] = 5, [0x14] = 5, [0x15] = 5, [0x16] = 5, [0x17] = 5,
    [0x18] = 5, [0x19] = 5, [0x1a] = 5, [0x1b] = 5, [0x1c] = 5, [0x1d] = 5,
    [0x1e] = 5, [0x1f] = 5, ['"'] = 1, ['\\'] = 1,
};

size_t mx_json_string_size(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = len + 2;
    for (size_t i = 0; i < len; i++)
        n += esc_extra[p[i]];
    return n;
}

int mx_json_dump_string(const char *s, size_t len, mx_buf *out)
{
    static const char hx[] = "0123456789abcdef";
    if (mx_buf_reserve(out, len + 2))
        return -1;
    mx_buf_putc(out, '"');
    size_t run = 0; /* start of the pending run of plain bytes */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        mx_buf_append(out, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hx[c >> 4];
            esc[5] = hx[c & 15];
            el = 6;
        }
        mx_buf_append(out, esc, el);
    }
    mx_buf_append(out, s + run, len - run);
    return mx_buf_putc(out, '"');
}

static int dump_num(double d, mx_buf *out)
{
    char tmp[MX_NUMFMT_MAX];
    size_t n = mx_numfmt(d, tmp);
    return mx_buf_append(out, tmp, n);
}

int mx_json_dump(const mx_val *v, mx_buf *out)
{
    switch (v->type) {
    case MX_NULL:
        return mx_buf_append(out, "null", 4);
    case MX_TRUE:
        return mx_buf_append(out, "true", 4);
    case MX_FALSE:
        return mx_buf_append(out, "false", 5);
    case MX_NUMBER:
        return dump_num(v->u.num, out);
    case MX_STRING:
        return mx_json_dump_string(v->u.str.s, v->u.str.len, out);
    case MX_ARRAY:
        mx_buf_putc(out, '[');
        for (size_t i = 0; i < v->u.arr.len; i++) {
            if (i)
                mx_buf_putc(out, ',');
            mx_json_dump(v->u.arr.items[i], out);
        }
        return mx_buf_putc(out, ']');
    case MX_OBJECT:
        mx_buf_putc(out, '{');
        for (size_t i = 0; i < v->u.obj.len; i++) {
            if (i)
                mx_buf_putc(out, ',');
            mx_json_dump_string(v->u.obj.m[i].key, v->u.obj.m[i].keylen, out);
            mx_buf_putc(out, ':');
            mx_json_dump(v->u.obj.m[i].val, out);
        }
        return mx_buf_putc(out, '}');
    }
    return -1;
}

int mx_json_dump_jansson(const json_t *j, mx_buf *out)
{
    switch (json_typeof(j)) {
    case JSON_NULL:
        return mx_buf_append(out, "null", 4);
    case JSON_TRUE:
        return mx_buf_append(out, "true", 4);
    case JSON_FALSE:
        return mx_buf_append(out, "false", 5);
    case JSON_INTEGER:
        return dump_num((double)json_integer_value(j), out);
    case JSON_REAL:
        if (!isfinite(json_real_value(j)))
            return -1;
        return dump_num(json_real_value(j), out);
    case JSON_STRING:
        return mx_json_dump_string(json_string_value(j), json_string_length(j), out);
    case JSON_ARRAY: {
        mx_buf_putc(out, '[');
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i)
                mx_buf_putc(out, ',');
            if (mx_json_dump_jansson(json_array_get(j, i), out))
                return -1;
        }
        return mx_buf_putc(out, ']');
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *c;
        int first = 1;
        mx_buf_putc(out, '{');
        json_object_foreach((json_t *)j, k, c)
        {
            if (!first)
                mx_buf_putc(out, ',');
            first = 0;
            mx_json_dump_string(k, strlen(k), out);
            mx_buf_putc(out, ':');
            if (mx_json_dump_jansson(c, out))
                return -1;
        }
        return mx_buf_putc(out, '}');
    }
    }
    return -1;
}

int mx_json_depth(const json_t *j, int limit)
{
    /* containers count, scalars do not: {"a":1} is 1 deep, [[1]] is 2 */
    if (!json_is_array(j) && !json_is_object(j))
        return 0;
    if (limit <= 0)
        return 1; /* already past the limit: the caller only needs "deeper" */
    int best = 0;
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j) && best < limit; i++) {
            int d = mx_json_depth(json_array_get(j, i), limit - 1);
            if (d > best)
                best = d;
        }
    } else {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)j, k, c)
        {
            int d = mx_json_depth(c, limit - 1);
            if (d > best)
                best = d;
            if (best >= limit)
                break;
        }
    }
    return 1 + best;
}
