/* json_parse.c - the fast path of inbound JSON (json_parse.h).
 *
 * A recursive-descent parser over the message buffer that builds jansson
 * values directly. Its one invariant: it returns a tree only for input that
 * json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL) parses, and
 * then the very tree json_loadb builds (same types, same doubles, same
 * strings, members in the same order); everything else - errors included -
 * is MX_JP_FALLBACK, so jansson keeps the last word and its error texts.
 * test/fuzz/fuzz_json_parse.c checks exactly that against jansson, and
 * test/unit/test_json_parse.c walks the boundaries (numbers, escapes,
 * UTF-8, duplicates, depth).
 *
 * On request it also hands back the source text of one top-level member
 * when that text is exactly what mx_json_dump_jansson() would write for the
 * value (no whitespace, no "\/" escape, numbers only as plain integers
 * other than -0), so the log entry can copy the client's action instead of encoding
 * it again; fuzz_json_parse checks that equality too.
 *
 * Numbers follow jansson: with JSON_DECODE_INT_AS_REAL every number is read
 * with strtod (C locale). An integer of at most 15 digits is converted
 * exactly by hand instead (it is below 2^53, so the double is the same
 * correctly rounded value strtod gives, sign of zero included).
 */
#include "movexd/json_parse.h"
#include "movexd/alloc.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const unsigned char *p, *end;
    int depth, max_depth;
    int status; /* MX_JP_OK until the first fallback or OOM */
    char *tmp;  /* decode buffer of an escaped string (grown as needed) */
    size_t tmpcap;
    /* source text that mx_json_dump_jansson would not reproduce byte for
     * byte (whitespace, "\/", a number not in its shortest JS form) seen so
     * far; a value's text is canonical when this did not move across it */
    size_t noncanon;
    struct mx_json_raw *raw; /* the top-level member asked for, or NULL */
    struct mx_patch_view *view; /* the "action" member's view asked for, or NULL */
};

static json_t *value(struct parser *ps);

static json_t *fail(struct parser *ps, int status)
{
    if (ps->status == MX_JP_OK)
        ps->status = status;
    return NULL;
}

static void skip_ws_run(struct parser *ps);

/* Most tokens follow one another with no whitespace (a protocol message
 * has none): one compare, inlined, for that case. */
static inline void skip_ws(struct parser *ps)
{
    if (ps->p < ps->end && *ps->p > ' ')
        return;
    skip_ws_run(ps);
}

static void skip_ws_run(struct parser *ps)
{
    const unsigned char *s = ps->p;
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
    ps->noncanon += ps->p != s;
}

/* Bytes of the well-formed UTF-8 sequence at s (2..4) or 0: the sequences
 * jansson's decoder accepts (no overlongs, no surrogates, nothing above
 * U+10FFFF). */
static size_t utf8_len(const unsigned char *s, const unsigned char *end)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
        return 0;
    if ((size_t)(end - s) <= need)
        return 0;
    for (size_t i = 1; i <= need; i++) {
        if (s[i] < lo || s[i] > hi)
            return 0;
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

/* 1 for the bytes a string holds as they are: printable ASCII other than
 * '"' and '\\' */
static const unsigned char str_plain[256] = {
#define R8(x) x, x, x, x, x, x, x, x
    R8(0), R8(0), R8(0), R8(0),                      /* 0x00-0x1f: control */
    1, 1, 0, 1, 1, 1, 1, 1, R8(1), R8(1), R8(1),     /* 0x20-0x3f; '"' 0x22 */
    R8(1), R8(1), R8(1), 1, 1, 1, 1, 0, 1, 1, 1,     /* 0x40-0x5f; '\\' 0x5c */
    R8(1), R8(1), R8(1), R8(1),                      /* 0x60-0x7f */
#undef R8
};

/* The string at ps->p (just past its opening quote): its bytes in *s, *n.
 * Plain strings point into the input; escaped ones are decoded into
 * ps->tmp. 0, or -1 with ps->status set. */
static int string(struct parser *ps, const char **s, size_t *n)
{
    const unsigned char *start = ps->p, *q = ps->p;
    int escaped = 0;
    for (;;) {
        /* plain printable ASCII, one table look-up a byte */
        while (q < ps->end && str_plain[*q])
            q++;
        if (q >= ps->end || *q == '"')
            break;
        unsigned char c = *q;
        if (c < 0x20) {
            fail(ps, MX_JP_FALLBACK); /* control character: jansson's error */
            return -1;
        }
        if (c == '\\') {
            if (q + 1 >= ps->end || q[1] == 'u') {
                fail(ps, MX_JP_FALLBACK); /* \uXXXX (surrogates, NUL): jansson decides */
                return -1;
            }
            escaped = 1;
            q += 2;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_len(q, ps->end);
            if (!k) {
                fail(ps, MX_JP_FALLBACK);
                return -1;
            }
            q += k;
            continue;
        }
        q++;
    }
    if (q >= ps->end) {
        fail(ps, MX_JP_FALLBACK);
        return -1;
    }
    ps->p = q + 1;
    if (!escaped) {
        *s = (const char *)start;
        *n = (size_t)(q - start);
        return 0;
    }
    size_t raw = (size_t)(q - start);
    if (raw + 1 > ps->tmpcap) {
        char *t = mx_realloc(ps->tmp, raw + 1);
        if (!t) {
            fail(ps, MX_JP_OOM);
            return -1;
        }
        ps->tmp = t;
        ps->tmpcap = raw + 1;
    }
    size_t o = 0;
    for (const unsigned char *r = start; r < q; r++) {
        if (*r != '\\') {
            ps->tmp[o++] = (char)*r;
            continue;
        }
        char d;
        switch (*++r) {
        case '"': d = '"'; break;
        case '\\': d = '\\'; break;
        case '/':
            d = '/';
            ps->noncanon++; /* dumped as a plain '/' */
            break;
        case 'b': d = '\b'; break;
        case 'f': d = '\f'; break;
        case 'n': d = '\n'; break;
        case 'r': d = '\r'; break;
        case 't': d = '\t'; break;
        default:
            fail(ps, MX_JP_FALLBACK); /* invalid escape: jansson's error */
            return -1;
        }
        ps->tmp[o++] = d;
    }
    *s = ps->tmp;
    *n = o;
    return 0;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* A number in jansson's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static json_t *number(struct parser *ps)
{
    const unsigned char *s = ps->p, *q = ps->p;
    int neg = 0, simple = 1;
    if (q < ps->end && *q == '-') {
        neg = 1;
        q++;
    }
    if (q >= ps->end || !is_digit(*q))
        return fail(ps, MX_JP_FALLBACK);
    const unsigned char *digits = q;
    if (*q == '0') {
        q++;
        if (q < ps->end && is_digit(*q))
            return fail(ps, MX_JP_FALLBACK); /* leading zero */
    } else {
        while (q < ps->end && is_digit(*q))
            q++;
    }
    size_t ndigits = (size_t)(q - digits);
    if (q < ps->end && *q == '.') {
        simple = 0;
        q++;
        if (q >= ps->end || !is_digit(*q))
            return fail(ps, MX_JP_FALLBACK);
        while (q < ps->end && is_digit(*q))
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        simple = 0;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= ps->end || !is_digit(*q))
            return fail(ps, MX_JP_FALLBACK);
        while (q < ps->end && is_digit(*q))
            q++;
    }
    ps->p = q;
    double d;
    if (simple && ndigits <= 15) {
        uint64_t v = 0;
        for (const unsigned char *r = digits; r < q; r++)
            v = v * 10 + (uint64_t)(*r - '0');
        d = (double)v;
        if (neg)
            d = -d; /* "-0" is -0.0, as strtod gives */
    } else {
        char tmp[128];
        size_t n = (size_t)(q - s);
        if (n >= sizeof(tmp))
            return fail(ps, MX_JP_FALLBACK);
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        d = strtod(tmp, NULL);
        if (!isfinite(d))
            return fail(ps, MX_JP_FALLBACK); /* jansson: "real number overflow" */
    }
    /* the dump writes a number in JS form: a plain integer below 2^53 as
     * its digits (so the source is canonical unless it is "-0"); anything
     * else is counted as not canonical, which only costs a re-encode */
    ps->noncanon += !simple || ndigits > 15 || (neg && d == 0);
    json_t *j = json_real(d);
    return j ? j : fail(ps, MX_JP_OOM);
}

static json_t *literal(struct parser *ps, const char *word, size_t n, json_t *v)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, MX_JP_FALLBACK);
    ps->p += n;
    /* "truex" is one invalid token to jansson; anything after a literal
     * other than a delimiter is left to it */
    if (ps->p < ps->end && ((*ps->p >= 'a' && *ps->p <= 'z') || (*ps->p >= 'A' && *ps->p <= 'Z')))
        return fail(ps, MX_JP_FALLBACK);
    return v;
}

/* Consume byte c if it is next. */
static int take(struct parser *ps, unsigned char c)
{
    if (ps->p < ps->end && *ps->p == c) {
        ps->p++;
        return 1;
    }
    return 0;
}

/* After a member or element: 1 when a ',' says another follows, 0 when
 * `close` ends the container, -1 for anything else. */
static int after_item(struct parser *ps, unsigned char close)
{
    skip_ws(ps);
    if (take(ps, ',')) {
        skip_ws(ps);
        return 1;
    }
    return take(ps, close) ? 0 : -1;
}

/* After a top-level member's value (it began at vstart, with nc
 * non-canonical spots before it): its source text, when it is the member
 * asked for and canonical. */
static void note_raw(struct parser *ps, const char *k, size_t kn, const unsigned char *vstart, size_t nc)
{
    if (ps->raw && ps->depth == 1 && kn == ps->raw->keylen && memcmp(k, ps->raw->key, kn) == 0 &&
        ps->noncanon == nc) {
        ps->raw->text = (const char *)vstart;
        ps->raw->len = (size_t)(ps->p - vstart);
    }
}

static json_t *object(struct parser *ps)
{
    json_t *o = json_object();
    if (!o)
        return fail(ps, MX_JP_OOM);
    skip_ws(ps);
    if (take(ps, '}'))
        return o;
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"')
            goto bad;
        ps->p++;
        const char *k;
        size_t kn;
        if (string(ps, &k, &kn))
            goto out;
        /* a decoded key lives in ps->tmp, which the value may reuse */
        char kbuf[64];
        char *kheap = NULL;
        if (k == ps->tmp) {
            if (kn < sizeof(kbuf)) {
                memcpy(kbuf, k, kn);
                k = kbuf;
            } else {
                kheap = mx_malloc(kn);
                if (!kheap) {
                    fail(ps, MX_JP_OOM);
                    goto out;
                }
                memcpy(kheap, k, kn);
                k = kheap;
            }
        }
        if (json_object_getn(o, k, kn)) {
            free(kheap);
            goto bad; /* duplicate key: jansson refuses it */
        }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            free(kheap);
            goto bad;
        }
        ps->p++;
        skip_ws(ps);
        const unsigned char *vstart = ps->p;
        size_t nc = ps->noncanon;
        json_t *v = value(ps);
        if (!v) {
            free(kheap);
            goto out;
        }
        note_raw(ps, k, kn, vstart, nc);
        int rc = json_object_setn_new_nocheck(o, k, kn, v);
        free(kheap);
        if (rc) {
            fail(ps, MX_JP_OOM);
            goto out;
        }
        int more = after_item(ps, '}');
        if (more < 0)
            goto bad;
        if (!more)
            return o;
    }
bad:
    fail(ps, MX_JP_FALLBACK);
out:
    json_decref(o);
    return NULL;
}

static json_t *array(struct parser *ps)
{
    json_t *a = json_array();
    if (!a)
        return fail(ps, MX_JP_OOM);
    skip_ws(ps);
    if (take(ps, ']'))
        return a;
    for (;;) {
        json_t *v = value(ps);
        if (!v)
            goto out;
        if (json_array_append_new(a, v)) {
            fail(ps, MX_JP_OOM);
            goto out;
        }
        int more = after_item(ps, ']');
        if (more < 0) {
            fail(ps, MX_JP_FALLBACK);
            goto out;
        }
        if (!more)
            return a;
    }
out:
    json_decref(a);
    return NULL;
}

static json_t *container(struct parser *ps, int is_object)
{
    if (++ps->depth > MX_JP_MAX_DEPTH)
        return fail(ps, MX_JP_FALLBACK);
    if (ps->depth > ps->max_depth)
        ps->max_depth = ps->depth;
    ps->p++;
    json_t *v = is_object ? object(ps) : array(ps);
    ps->depth--;
    return v;
}

/* The value at ps->p (no leading whitespace). */
static json_t *value(struct parser *ps)
{
    if (ps->p >= ps->end)
        return fail(ps, MX_JP_FALLBACK);
    switch (*ps->p) {
    case '{': return container(ps, 1);
    case '[': return container(ps, 0);
    case '"': {
        ps->p++;
        const char *s;
        size_t n;
        if (string(ps, &s, &n))
            return NULL;
        json_t *j = json_stringn_nocheck(s, n);
        return j ? j : fail(ps, MX_JP_OOM);
    }
    case 't': return literal(ps, "true", 4, json_true());
    case 'f': return literal(ps, "false", 5, json_false());
    case 'n': return literal(ps, "null", 4, json_null());
    default: return number(ps);
    }
}

int mx_json_parse(const char *buf, size_t len, json_t **out, int *depth, struct mx_json_raw *raw)
{
    *out = NULL;
    if (raw) {
        raw->text = NULL;
        raw->len = 0;
    }
    struct parser ps = {.p = (const unsigned char *)buf, .end = (const unsigned char *)buf + len, .raw = raw};
    skip_ws(&ps);
    if (ps.p >= ps.end || (*ps.p != '{' && *ps.p != '['))
        return MX_JP_FALLBACK; /* jansson: "'[' or '{' expected" */
    json_t *j = value(&ps);
    free(ps.tmp);
    if (!j) {
        if (raw)
            raw->text = NULL;
        return ps.status;
    }
    skip_ws(&ps);
    if (ps.p != ps.end) {
        json_decref(j); /* trailing bytes: jansson's "end of file expected" */
        if (raw)
            raw->text = NULL;
        return MX_JP_FALLBACK;
    }
    *out = j;
    *depth = ps.max_depth;
    return MX_JP_OK;
}

/* ---- the action as a patch view (patch.h) ------------------------------ */

/* The string at ps->p (past its quote) copied NUL-terminated into the
 * view's text. 1 done, 0 no room (not a view), -1 error (status set). */
static int view_str(struct parser *ps, struct mx_patch_view *v, const char **out)
{
    const char *s;
    size_t n;
    if (string(ps, &s, &n))
        return -1;
    if (n + 1 > sizeof(v->text) - v->used)
        return 0;
    char *t = v->text + v->used;
    memcpy(t, s, n);
    t[n] = '\0';
    v->used += n + 1;
    *out = t;
    return 1;
}

/* The key at ps->p (a '"' expected) and its ':'. 1 read, 0 not a plain
 * key, -1 error. */
static int view_key(struct parser *ps, const char **k, size_t *kn)
{
    if (!take(ps, '"'))
        return 0;
    if (string(ps, k, kn))
        return -1;
    skip_ws(ps);
    if (!take(ps, ':'))
        return 0;
    skip_ws(ps);
    return 1;
}

/* want: a string literal (a compare of known length, inlined) */
#define key_is(k, kn, want) ((kn) == sizeof(want) - 1 && memcmp((k), "" want, sizeof(want) - 1) == 0)

/* The members of an object (ps->p past its '{'), each handed to
 * member(ps, ctx, key, keylen) with ps->p at its value: 1 taken, 0 not a
 * view's shape, -1 error. Returns 1 at the object's end, else what member
 * or the syntax said (anything unexpected is 0: the tree decides). */
static int view_members(struct parser *ps, int (*member)(struct parser *, void *, const char *, size_t),
                        void *ctx)
{
    skip_ws(ps);
    if (take(ps, '}'))
        return 1;
    for (;;) {
        const char *k;
        size_t kn;
        int rc = view_key(ps, &k, &kn);
        if (rc <= 0 || (rc = member(ps, ctx, k, kn)) <= 0)
            return rc;
        rc = after_item(ps, '}');
        if (rc <= 0)
            return rc < 0 ? 0 : 1;
    }
}

/* A member of an op object: "op", "path", "from" (strings) or "value",
 * each once, into v->op[v->n]. */
static int op_member(struct parser *ps, void *ctx, const char *k, size_t kn)
{
    struct mx_patch_view *v = ctx;
    const char **slot = key_is(k, kn, "op")     ? &v->op[v->n].op
                        : key_is(k, kn, "path") ? &v->op[v->n].path
                        : key_is(k, kn, "from") ? &v->op[v->n].from
                                                : NULL;
    if (slot) {
        if (*slot || !take(ps, '"'))
            return 0; /* a duplicate or not a string: the tree decides */
        return view_str(ps, v, slot);
    }
    if (!key_is(k, kn, "value") || v->op[v->n].value)
        return 0;
    return (v->op[v->n].value = value(ps)) ? 1 : -1;
}

/* One op object (ps->p past its '{'). 1 read into v->op[v->n], 0 not that
 * shape, -1 error. */
static int view_op(struct parser *ps, struct mx_patch_view *v)
{
    memset(&v->op[v->n], 0, sizeof(v->op[0]));
    return view_members(ps, op_member, v);
}

/* Enter a container (ps->p at its bracket), counting depth as container(). */
static void view_enter(struct parser *ps)
{
    ps->p++;
    if (++ps->depth > ps->max_depth)
        ps->max_depth = ps->depth;
}

/* The payload array (ps->p at '['). 1, 0 or -1 as view_op. */
static int view_payload(struct parser *ps, struct mx_patch_view *v)
{
    view_enter(ps);
    skip_ws(ps);
    if (take(ps, ']'))
        goto done;
    for (;;) {
        if (v->n == MX_PATCH_VIEW_OPS || ps->p >= ps->end || *ps->p != '{')
            return 0;
        view_enter(ps);
        int rc = view_op(ps, v);
        v->n++; /* its value (if any) is the view's to free, whatever rc */
        if (rc <= 0)
            return rc;
        ps->depth--;
        rc = after_item(ps, ']');
        if (rc < 0)
            return 0;
        if (!rc)
            break;
    }
done:
    ps->depth--;
    return 1;
}

struct action_seen {
    struct mx_patch_view *v;
    int type, payload;
};

/* A member of the action: "type" (the string "patch") or "payload", each
 * once. */
static int action_member(struct parser *ps, void *ctx, const char *k, size_t kn)
{
    struct action_seen *a = ctx;
    if (key_is(k, kn, "type") && !a->type) {
        a->type = 1;
        const char *t;
        size_t tn;
        if (!take(ps, '"'))
            return 0;
        if (string(ps, &t, &tn))
            return -1;
        return key_is(t, tn, "patch");
    }
    if (!key_is(k, kn, "payload") || a->payload)
        return 0;
    a->payload = 1;
    if (ps->p >= ps->end || *ps->p != '[')
        return 0;
    return view_payload(ps, a->v);
}

/* The action {"type":"patch","payload":[...]} (ps->p at '{'), either
 * order, nothing else. 1, 0 or -1 as view_op. */
static int view_action(struct parser *ps, struct mx_patch_view *v)
{
    struct action_seen a = {.v = v};
    view_enter(ps);
    int rc = view_members(ps, action_member, &a);
    if (rc <= 0)
        return rc;
    ps->depth--;
    return a.type && a.payload;
}

static void view_free(struct mx_patch_view *v)
{
    for (size_t i = 0; i < v->n; i++)
        json_decref(v->op[i].value);
    v->n = 0;
    v->used = 0;
}

/* The top-level "action" member's value at ps->p as ps->view. 1 read, 0
 * not a view (ps as it was: parse it as a tree), -1 error (status set). */
static int view_member(struct parser *ps)
{
    struct mx_patch_view *v = ps->view;
    struct parser saved = *ps;
    v->n = 0;
    v->used = 0;
    if (ps->p >= ps->end || *ps->p != '{')
        return 0;
    int rc = view_action(ps, v);
    if (rc > 0) {
        v->src = (const char *)saved.p;
        v->srclen = (size_t)(ps->p - saved.p);
        return 1;
    }
    view_free(v);
    if (rc < 0)
        return -1;
    /* not a view: back to where the value began (tmp may have grown) */
    saved.tmp = ps->tmp;
    saved.tmpcap = ps->tmpcap;
    *ps = saved;
    return 0;
}

/* The top-level object of mx_json_parse_top, past its '{': members into
 * top (keys point into the input). 0, or -1 with ps->status set. */
static int top_members(struct parser *ps, struct mx_json_top *top)
{
    skip_ws(ps);
    if (take(ps, '}'))
        return 0;
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"')
            break;
        ps->p++;
        const char *k;
        size_t kn;
        if (string(ps, &k, &kn))
            return -1;
        /* an escaped key (decoded into ps->tmp) or more members than the
         * list holds: the whole-tree path takes it */
        if (k == ps->tmp || top->n == MX_JP_TOP_MAX)
            break;
        for (size_t i = 0; i < top->n; i++)
            if (top->m[i].keylen == kn && memcmp(top->m[i].key, k, kn) == 0)
                goto bad; /* duplicate key: jansson refuses it */
        skip_ws(ps);
        if (!take(ps, ':'))
            break;
        skip_ws(ps);
        const unsigned char *vstart = ps->p;
        size_t nc = ps->noncanon;
        json_t *v = NULL;
        int as_view = 0;
        if (ps->view && !top->view && key_is(k, kn, "action")) {
            if ((as_view = view_member(ps)) < 0)
                return -1;
            if (as_view)
                top->view = ps->view;
        }
        if (!as_view && !(v = value(ps)))
            return -1;
        note_raw(ps, k, kn, vstart, nc);
        top->m[top->n].key = k;
        top->m[top->n].keylen = kn;
        top->m[top->n].val = v;
        top->n++;
        int more = after_item(ps, '}');
        if (more < 0)
            break;
        if (!more)
            return 0;
    }
bad:
    fail(ps, MX_JP_FALLBACK);
    return -1;
}

int mx_json_parse_action(const char *buf, size_t len, struct mx_json_top *top, int *depth,
                         struct mx_json_raw *raw, struct mx_patch_view *view)
{
    top->n = 0;
    top->view = NULL;
    if (raw) {
        raw->text = NULL;
        raw->len = 0;
    }
    struct parser ps = {.p = (const unsigned char *)buf, .end = (const unsigned char *)buf + len, .raw = raw,
                        .view = view};
    skip_ws(&ps);
    if (ps.p >= ps.end || *ps.p != '{')
        return MX_JP_FALLBACK; /* an array, or jansson's error */
    ps.p++;
    ps.depth = ps.max_depth = 1; /* the object itself, as container() counts it */
    int rc = top_members(&ps, top);
    free(ps.tmp);
    if (!rc) {
        skip_ws(&ps);
        if (ps.p != ps.end) { /* trailing bytes */
            fail(&ps, MX_JP_FALLBACK);
            rc = -1;
        }
    }
    if (rc) {
        mx_json_top_free(top);
        if (raw)
            raw->text = NULL;
        return ps.status;
    }
    *depth = ps.max_depth;
    return MX_JP_OK;
}

int mx_json_parse_top(const char *buf, size_t len, struct mx_json_top *top, int *depth, struct mx_json_raw *raw)
{
    return mx_json_parse_action(buf, len, top, depth, raw, NULL);
}

json_t *mx_json_top_get(const struct mx_json_top *top, const char *key)
{
    return mx_json_top_getn(top, key, strlen(key));
}

void mx_json_top_free(struct mx_json_top *top)
{
    for (size_t i = 0; i < top->n; i++)
        json_decref(top->m[i].val);
    top->n = 0;
    if (top->view)
        view_free(top->view);
    top->view = NULL;
}
