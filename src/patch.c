/* patch.c - JSON Patch (RFC 6902, pointers per RFC 6901) plus `inc`,
 * applied in place to an mx_val tree, atomically.
 *
 * Why it is built this way:
 *
 *  - Atomicity without copying. A room's state may be large while an action
 *    touches a few nodes, so copying the state to get all-or-nothing would
 *    make every action O(state). Instead each mutation records a small undo
 *    step (the value it replaced or detached, the index it used, the old
 *    number). When op k fails, or the caller vetoes a successful result
 *    (state too large), the steps are undone newest first.
 *
 *  - Undo is LIFO, so indexes and pointers stay valid: when step k is
 *    undone, every later step has already been undone and the tree is
 *    exactly as step k left it. No value is freed before commit, so a
 *    removed or replaced node comes back as the very same node.
 *
 *  - Undo cannot fail. A rollback that failed halfway would corrupt the
 *    state, so undoing allocates nothing: a removed object member keeps its
 *    key string, and removed items go back into storage that has not
 *    shrunk (json.c never shrinks capacity). Every allocation (step slots,
 *    ancestor slots, new values) happens before the mutation it serves.
 *
 *  - Digest cache. digest.c recomputes only nodes with fresh == 0 and never
 *    descends into fresh ones, so a mutation must clear fresh on every
 *    container from the root down to the mutated one. The walk that finds
 *    the parent records that chain; each step keeps its slice and clears it
 *    both when applied and when undone (the caller may refresh digests
 *    between apply and rollback, e.g. to learn the new state's size).
 *    Moved and copied values keep their own caches: their content is intact.
 *
 *  - Shape first. The whole patch is validated (op names, member types,
 *    pointer syntax) before anything is applied, so a malformed patch is
 *    bad_patch whatever the document, and never starts mutating. Array
 *    index syntax and "-" can only be judged against the document ("01" and
 *    "-" are ordinary object keys), so those are checked while applying.
 *
 *  - `test` is a precondition: a well-formed path that does not resolve
 *    makes it fail with test_failed; a malformed array reference ("-",
 *    leading zeros) is bad_patch as for every other op.
 *
 *  - RFC 6901 gives each pointer a single spelling ("~" and "/" must be
 *    escaped, no other escape exists), so "from is a proper prefix of path"
 *    and "same location" are plain string comparisons.
 *
 *  - Depth: a value placed under k reference tokens sits at depth k + 1, so
 *    it may nest at most max_depth - k levels. A move to a location no
 *    deeper than its source cannot deepen anything and is not walked, so
 *    reordering an array of large items stays O(1) per move.
 */
#include "movexd/patch.h"
#include "movexd/alloc.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/err.h"

enum step_kind {
    ST_ROOT,       /* *root replaced; old = previous root */
    ST_OBJ_INSERT, /* member idx of box is new */
    ST_OBJ_SWAP,   /* member idx of box got a new value; old = previous */
    ST_OBJ_DETACH, /* member idx of box removed; mem = the member */
    ST_ARR_INSERT, /* item idx of box is new */
    ST_ARR_SWAP,   /* item idx of box replaced; old = previous */
    ST_ARR_DETACH, /* item idx of box removed; old = the item */
    ST_NUM,        /* number node box changed; num = previous value */
};

struct step {
    uint8_t kind;
    /* INSERT/SWAP/ROOT: undo frees the value that was placed.
     * DETACH: commit frees the value that was detached.
     * Both are 0 for a move, whose value is detached and placed again. */
    uint8_t owns;
    mx_val *box;
    size_t idx;
    mx_val *old;
    struct mx_member mem;
    double num;
    size_t anc_off, anc_n; /* this step's ancestors in undo->anc */
};

/* A patch of an op or two (the common action) records its steps and
 * ancestors in the undo's own arrays: no allocation beyond the undo. */
#define SMALL_STEPS 4
#define SMALL_ANC 16
#define SMALL_TOK 64

struct mx_patch_undo {
    struct step *steps; /* small_steps until it grows */
    size_t n, cap;
    mx_val **anc; /* ancestor chains, root first, parent last; small_anc until it grows */
    size_t anc_n, anc_cap;
    struct step small_steps[SMALL_STEPS];
    mx_val *small_anc[SMALL_ANC];
};

#define PTR_CLIP 48  /* bytes of a pointer quoted in a message */
#define NAME_CLIP 16 /* bytes of an op name quoted in a message */

typedef struct {
    mx_val **root;
    int max_depth;
    mx_patch_undo *u;
    mx_patch_error *err;
    size_t index;              /* current op */
    char opname[NAME_CLIP + 4];
    int missing;               /* code for "does not resolve": bad_patch or test_failed */
    char *tok;                 /* decoded reference token (small_tok until it grows) */
    size_t tokcap;
    char small_tok[SMALL_TOK];
} ctx;

/* Where a path leads: the container that holds (or would hold) the target,
 * and the target's decoded last token. */
typedef struct {
    mx_val *parent; /* NULL: the target is the whole document */
    const char *key;
    size_t klen;
    size_t depth;   /* number of reference tokens */
    size_t anc_off; /* start of the recorded chain in undo->anc */
} loc;

/* ---- error messages ---------------------------------------------------- */

/* Copy at most max bytes of s, cut at a UTF-8 character boundary so the
 * message stays valid UTF-8, with "..." when cut. out has max + 4 bytes. */
static void clip(char *out, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) {
        memcpy(out, s, n + 1);
        return;
    }
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    memcpy(out, s, n);
    memcpy(out + n, "...", 4);
}

/* "op N (name): label "ptr"tail", or "op N (name): tail" without a label. */
static int fail(ctx *c, int code, const char *label, const char *ptr, const char *tail)
{
    mx_patch_error *e = c->err;
    e->code = code;
    e->op_index = c->index;
    if (label) {
        char q[PTR_CLIP + 4];
        clip(q, ptr, PTR_CLIP);
        snprintf(e->message, sizeof e->message, "op %zu (%s): %s \"%s\"%s", c->index, c->opname,
                 label, q, tail);
    } else {
        snprintf(e->message, sizeof e->message, "op %zu (%s): %s", c->index, c->opname, tail);
    }
    return code;
}

static int patch_fail(mx_patch_error *e, const char *msg)
{
    e->code = MX_EBAD_PATCH;
    e->op_index = 0;
    snprintf(e->message, sizeof e->message, "%s", msg);
    return MX_EBAD_PATCH;
}

static int oom(ctx *c) { return fail(c, MX_ENOMEM, NULL, NULL, "out of memory"); }

/* ---- growth (only ever before a mutation) ------------------------------ */

/* Grow *p (of *cap elements) to hold need; `small` is the inline array it
 * starts as, which is copied out, never reallocated or freed. */
static int grow(void **p, size_t *cap, size_t need, size_t size, void *small)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need)
        ncap *= 2;
    void *np;
    if (*p == small) {
        np = mx_malloc(ncap * size);
        if (np && *cap)
            memcpy(np, small, *cap * size);
    } else {
        np = mx_realloc(*p, ncap * size);
    }
    if (!np)
        return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

static int steps_reserve(mx_patch_undo *u, size_t extra)
{
    return grow((void **)&u->steps, &u->cap, u->n + extra, sizeof(struct step), u->small_steps);
}

static int anc_reserve(mx_patch_undo *u, size_t extra)
{
    return grow((void **)&u->anc, &u->anc_cap, u->anc_n + extra, sizeof(mx_val *), u->small_anc);
}

/* ---- pointers ---------------------------------------------------------- */

static int pointer_ok(const char *p)
{
    if (*p && *p != '/')
        return 0;
    for (; *p; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return 0;
    return 1;
}

/* Each token is introduced by a '/', and '/' inside a token is escaped. */
static size_t count_tokens(const char *p)
{
    size_t n = 0;
    for (; *p; p++)
        n += *p == '/';
    return n;
}

/* Decode the token starting at p (just past its '/') into out; returns the
 * position of the next '/' or the end. The syntax was checked already;
 * "~01" decodes to "~1" because each escape is read once, left to right. */
static const char *next_token(const char *p, char *out, size_t *len)
{
    size_t n = 0;
    for (; *p && *p != '/'; p++) {
        if (*p == '~')
            out[n++] = *++p == '0' ? '~' : '/';
        else
            out[n++] = *p;
    }
    out[n] = '\0';
    *len = n;
    return p;
}

/* Is `a` a proper prefix of `b` token-wise ("/a" of "/a/b", not of "/ab")? */
static int proper_prefix(const char *a, const char *b)
{
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && b[n] == '/';
}

enum { IX_OK, IX_END, IX_BAD };

/* An array index: "-", or decimal digits without leading zeros. Values too
 * large to represent saturate; they are out of range for any array. */
static int parse_index(const char *t, size_t n, size_t *out)
{
    if (n == 1 && t[0] == '-')
        return IX_END;
    if (n == 0 || (t[0] == '0' && n > 1))
        return IX_BAD;
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return IX_BAD;
        v = v > (SIZE_MAX - 9) / 10 ? SIZE_MAX : v * 10 + (size_t)(t[i] - '0');
    }
    *out = v;
    return IX_OK;
}

/* ---- direct member and item surgery (never allocates) ------------------ */

static size_t member_find(const mx_val *o, const char *k, size_t klen, int *found)
{
    size_t lo = 0, hi = o->u.obj.len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct mx_member *m = &o->u.obj.m[mid];
        int cmp = mx_json_keycmp(m->key, m->keylen, k, klen);
        if (cmp == 0) {
            *found = 1;
            return mid;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static struct mx_member member_detach(mx_val *o, size_t i)
{
    struct mx_member *m = o->u.obj.m;
    struct mx_member out = m[i];
    memmove(&m[i], &m[i + 1], (o->u.obj.len - i - 1) * sizeof(*m));
    o->u.obj.len--;
    o->fresh = 0;
    return out;
}

/* Only used by undo, where the slot freed by member_detach is still there. */
static void member_attach(mx_val *o, size_t i, struct mx_member mem)
{
    struct mx_member *m = o->u.obj.m;
    memmove(&m[i + 1], &m[i], (o->u.obj.len - i) * sizeof(*m));
    m[i] = mem;
    o->u.obj.len++;
    o->fresh = 0;
}

/* Likewise for arrays: capacity never shrinks, so there is room. */
static void item_attach(mx_val *a, size_t i, mx_val *v)
{
    mx_val **it = a->u.arr.items;
    memmove(&it[i + 1], &it[i], (a->u.arr.len - i) * sizeof(*it));
    it[i] = v;
    a->u.arr.len++;
    a->fresh = 0;
}

/* ---- undo steps -------------------------------------------------------- */

static void stale(mx_patch_undo *u, const struct step *s)
{
    for (size_t i = 0; i < s->anc_n; i++)
        u->anc[s->anc_off + i]->fresh = 0;
    if (s->box)
        s->box->fresh = 0;
}

/* Record a step (its slot was reserved) and mark its path stale. */
static struct step *step_new(ctx *c, int kind, mx_val *box, size_t idx, const loc *l)
{
    struct step *s = &c->u->steps[c->u->n++];
    memset(s, 0, sizeof(*s));
    s->kind = (uint8_t)kind;
    s->box = box;
    s->idx = idx;
    s->anc_off = l->anc_off;
    s->anc_n = c->u->anc_n - l->anc_off;
    stale(c->u, s);
    return s;
}

static void drop(mx_val *v, int owns)
{
    if (owns)
        mx_json_free(v);
}

static void undo_step(mx_val **root, mx_patch_undo *u, struct step *s)
{
    mx_val *box = s->box;
    switch (s->kind) {
    case ST_ROOT:
        drop(*root, s->owns);
        *root = s->old;
        break;
    case ST_OBJ_INSERT: {
        struct mx_member m = member_detach(box, s->idx);
        free(m.key);
        drop(m.val, s->owns);
        break;
    }
    case ST_OBJ_SWAP:
        drop(box->u.obj.m[s->idx].val, s->owns);
        box->u.obj.m[s->idx].val = s->old;
        break;
    case ST_OBJ_DETACH:
        member_attach(box, s->idx, s->mem);
        break;
    case ST_ARR_INSERT:
        drop(mx_json_arr_take(box, s->idx), s->owns);
        break;
    case ST_ARR_SWAP:
        drop(mx_json_arr_replace(box, s->idx, s->old), s->owns);
        break;
    case ST_ARR_DETACH:
        item_attach(box, s->idx, s->old);
        break;
    case ST_NUM:
        box->u.num = s->num;
        break;
    }
    stale(u, s);
}

static void commit_step(struct step *s)
{
    switch (s->kind) {
    case ST_ROOT:
    case ST_OBJ_SWAP:
    case ST_ARR_SWAP:
        mx_json_free(s->old);
        break;
    case ST_OBJ_DETACH:
        free(s->mem.key);
        drop(s->mem.val, s->owns);
        break;
    case ST_ARR_DETACH:
        drop(s->old, s->owns);
        break;
    default:
        break;
    }
}

static void undo_free(mx_patch_undo *u)
{
    if (u->steps != u->small_steps)
        free(u->steps);
    if (u->anc != u->small_anc)
        free(u->anc);
    mx_block_free(u); /* a block of the cache (alloc.h): the next action's undo */
}

void mx_patch_rollback(mx_val **root, mx_patch_undo *u)
{
    if (!u)
        return;
    for (size_t i = u->n; i-- > 0;)
        undo_step(root, u, &u->steps[i]);
    undo_free(u);
}

void mx_patch_commit(mx_patch_undo *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++)
        commit_step(&u->steps[i]);
    undo_free(u);
}

/* ---- resolving paths --------------------------------------------------- */

/* Descend from cur by one token; 0 or an error code. */
static int child(ctx *c, mx_val *cur, const char *t, size_t n, const char *label,
                 const char *path, mx_val **out)
{
    if (cur->type == MX_OBJECT) {
        *out = mx_json_obj_get(cur, t, n);
        return *out ? 0 : fail(c, c->missing, label, path, ": parent does not exist");
    }
    if (cur->type == MX_ARRAY) {
        size_t i;
        if (parse_index(t, n, &i) != IX_OK)
            return fail(c, MX_EBAD_PATCH, label, path, ": invalid array index");
        if (i >= cur->u.arr.len)
            return fail(c, c->missing, label, path, ": parent does not exist");
        *out = cur->u.arr.items[i];
        return 0;
    }
    return fail(c, c->missing, label, path, ": parent does not exist");
}

/* Walk to the parent of path's target. With record, the containers passed
 * (root first, parent last) are appended to the undo's ancestor list so the
 * step that mutates the parent can mark them stale. */
static int locate(ctx *c, const char *label, const char *path, int record, loc *l)
{
    size_t plen = strlen(path);
    if (grow((void **)&c->tok, &c->tokcap, plen + 1, 1, c->small_tok))
        return oom(c);
    l->depth = count_tokens(path);
    if (record && anc_reserve(c->u, l->depth))
        return oom(c);
    l->anc_off = c->u->anc_n;
    l->parent = NULL;
    l->key = "";
    l->klen = 0;
    mx_val *cur = *c->root;
    const char *p = path;
    while (*p) {
        size_t n;
        p = next_token(p + 1, c->tok, &n);
        if (record)
            c->u->anc[c->u->anc_n++] = cur;
        if (!*p) {
            l->parent = cur;
            l->key = c->tok;
            l->klen = n;
            return 0;
        }
        int rc = child(c, cur, c->tok, n, label, path, &cur);
        if (rc) {
            c->u->anc_n = l->anc_off;
            return rc;
        }
    }
    return 0;
}

/* The existing value at l (and its member/item index). "-" never names an
 * existing value. */
static int target(ctx *c, const char *label, const char *path, const loc *l, mx_val **v,
                  size_t *idx)
{
    mx_val *box = l->parent;
    *idx = 0;
    if (!box) {
        *v = *c->root;
        return 0;
    }
    if (box->type == MX_OBJECT) {
        int found;
        *idx = member_find(box, l->key, l->klen, &found);
        if (!found)
            return fail(c, c->missing, label, path, " does not exist");
        *v = box->u.obj.m[*idx].val;
        return 0;
    }
    if (box->type == MX_ARRAY) {
        if (parse_index(l->key, l->klen, idx) != IX_OK)
            return fail(c, MX_EBAD_PATCH, label, path, ": invalid array index");
        if (*idx >= box->u.arr.len)
            return fail(c, c->missing, label, path, " does not exist");
        *v = box->u.arr.items[*idx];
        return 0;
    }
    return fail(c, c->missing, label, path, " does not exist");
}

/* ---- mutations --------------------------------------------------------- */

/* Replace the existing value at l (index idx from target()) by v. */
static void swap(ctx *c, const loc *l, size_t idx, mx_val *v, int owns)
{
    mx_val *box = l->parent;
    struct step *s;
    if (!box) {
        s = step_new(c, ST_ROOT, NULL, 0, l);
        s->old = *c->root;
        *c->root = v;
    } else if (box->type == MX_OBJECT) {
        s = step_new(c, ST_OBJ_SWAP, box, idx, l);
        s->old = box->u.obj.m[idx].val;
        box->u.obj.m[idx].val = v;
    } else {
        s = step_new(c, ST_ARR_SWAP, box, idx, l);
        s->old = mx_json_arr_replace(box, idx, v);
    }
    s->owns = (uint8_t)owns;
}

/* Place v at l with `add` semantics. On failure v is not consumed. */
static int put(ctx *c, const char *path, const loc *l, mx_val *v, int owns)
{
    mx_val *box = l->parent;
    if (!box) {
        swap(c, l, 0, v, owns);
        return 0;
    }
    if (box->type == MX_OBJECT) {
        int found;
        size_t i = member_find(box, l->key, l->klen, &found);
        if (found) {
            swap(c, l, i, v, owns);
            return 0;
        }
        if (mx_json_obj_set(box, l->key, l->klen, v))
            return oom(c);
        step_new(c, ST_OBJ_INSERT, box, i, l)->owns = (uint8_t)owns;
        return 0;
    }
    if (box->type == MX_ARRAY) {
        size_t i;
        int ix = parse_index(l->key, l->klen, &i);
        if (ix == IX_BAD)
            return fail(c, MX_EBAD_PATCH, "path", path, ": invalid array index");
        if (ix == IX_END)
            i = box->u.arr.len;
        if (i > box->u.arr.len)
            return fail(c, MX_EBAD_PATCH, "path", path, ": index out of range");
        if (mx_json_arr_insert(box, i, v))
            return oom(c);
        step_new(c, ST_ARR_INSERT, box, i, l)->owns = (uint8_t)owns;
        return 0;
    }
    return fail(c, MX_EBAD_PATCH, "path", path, ": parent is not an object or array");
}

/* Remove the existing value at l; returns it (held by the new step). */
static mx_val *detach(ctx *c, const loc *l, size_t idx, int owns)
{
    mx_val *box = l->parent;
    struct step *s;
    if (box->type == MX_OBJECT) {
        s = step_new(c, ST_OBJ_DETACH, box, idx, l);
        s->mem = member_detach(box, idx);
        s->old = s->mem.val;
    } else {
        s = step_new(c, ST_ARR_DETACH, box, idx, l);
        s->old = mx_json_arr_take(box, idx);
    }
    s->owns = (uint8_t)owns;
    return s->old;
}

/* ---- depth ------------------------------------------------------------- */

/* Does v nest more than limit levels (a scalar is 1)? Walks at most limit
 * levels down. */
static int nests_deeper(const mx_val *v, int limit)
{
    if (v->type != MX_ARRAY && v->type != MX_OBJECT)
        return limit < 0; /* scalars add no level */
    if (limit <= 0)
        return 1;
    if (v->type == MX_ARRAY) {
        for (size_t i = 0; i < v->u.arr.len; i++)
            if (nests_deeper(v->u.arr.items[i], limit - 1))
                return 1;
    } else if (v->type == MX_OBJECT) {
        for (size_t i = 0; i < v->u.obj.len; i++)
            if (nests_deeper(v->u.obj.m[i].val, limit - 1))
                return 1;
    }
    return 0;
}

/* Container levels a value placed under `depth` tokens may use (the root
 * container and the depth - 1 containers between count already); INT_MAX =
 * unlimited, -1 = not even a scalar fits. */
static int room_below(const ctx *c, size_t depth)
{
    if (c->max_depth <= 0)
        return INT_MAX;
    if (depth > (size_t)c->max_depth)
        return -1;
    return c->max_depth - (int)depth;
}

static int too_deep(ctx *c, const char *path)
{
    return fail(c, MX_ETOO_DEEP, "path", path, ": value nests deeper than the limit");
}

/* Convert a patch value to be placed under `depth` tokens. */
static int convert(ctx *c, const char *path, const json_t *j, size_t depth, mx_val **out)
{
    int room = room_below(c, depth);
    if (room < 0 || (room != INT_MAX && mx_json_depth(j, room) > room))
        return too_deep(c, path);
    const char *why = "out of memory";
    *out = mx_json_from_jansson(j, 0, &why);
    if (*out)
        return 0;
    if (strstr(why, "memory"))
        return oom(c);
    return fail(c, MX_EBAD_PATCH, "path", path, ": value is not valid");
}

/* ---- operations -------------------------------------------------------- */

/* One operation's members, from a jansson op object or from a view
 * (patch.h): strings NULL when absent or not strings, value NULL when
 * absent. Every check and every op reads only this, so both sources give
 * the same answers. */
struct pop {
    const char *name, *path, *from;
    const json_t *value;
};

static int op_add(ctx *c, const struct pop *op)
{
    const char *path = op->path;
    loc l;
    mx_val *v;
    int rc = locate(c, "path", path, 1, &l);
    if (rc || (rc = convert(c, path, op->value, l.depth, &v)))
        return rc;
    if ((rc = put(c, path, &l, v, 1)))
        mx_json_free(v);
    return rc;
}

static int op_remove(ctx *c, const struct pop *op)
{
    const char *path = op->path;
    loc l;
    mx_val *v;
    size_t idx;
    if (!*path)
        return fail(c, MX_EBAD_PATCH, "path", path, ": cannot remove the whole document");
    int rc = locate(c, "path", path, 1, &l);
    if (rc || (rc = target(c, "path", path, &l, &v, &idx)))
        return rc;
    detach(c, &l, idx, 1);
    return 0;
}

static int op_replace(ctx *c, const struct pop *op)
{
    const char *path = op->path;
    loc l;
    mx_val *old, *v;
    size_t idx;
    int rc = locate(c, "path", path, 1, &l);
    if (rc || (rc = target(c, "path", path, &l, &old, &idx)) ||
        (rc = convert(c, path, op->value, l.depth, &v)))
        return rc;
    swap(c, &l, idx, v, 1);
    return 0;
}

static int op_move(ctx *c, const struct pop *op)
{
    const char *from = op->from, *path = op->path;
    loc lf, lp;
    mx_val *v;
    size_t idx;
    int rc = locate(c, "from", from, strcmp(from, path) != 0, &lf);
    if (rc || (rc = target(c, "from", from, &lf, &v, &idx)))
        return rc;
    if (strcmp(from, path) == 0)
        return 0; /* moving a value onto itself changes nothing */
    if (proper_prefix(from, path))
        return fail(c, MX_EBAD_PATCH, "path", path, ": cannot move a value into its own child");
    size_t to_depth = count_tokens(path);
    if (to_depth > lf.depth && c->max_depth > 0 && nests_deeper(v, room_below(c, to_depth)))
        return too_deep(c, path);
    v = detach(c, &lf, idx, 0);
    /* On failure below, rollback puts v back through the detach step. */
    if ((rc = locate(c, "path", path, 1, &lp)))
        return rc;
    return put(c, path, &lp, v, 0);
}

static int op_copy(ctx *c, const struct pop *op)
{
    const char *from = op->from, *path = op->path;
    loc lf, lp;
    mx_val *src, *v;
    size_t idx;
    int rc = locate(c, "from", from, 0, &lf);
    if (rc || (rc = target(c, "from", from, &lf, &src, &idx)) ||
        (rc = locate(c, "path", path, 1, &lp)))
        return rc;
    if (c->max_depth > 0 && nests_deeper(src, room_below(c, lp.depth)))
        return too_deep(c, path);
    if (!(v = mx_json_copy(src)))
        return oom(c);
    if ((rc = put(c, path, &lp, v, 1)))
        mx_json_free(v);
    return rc;
}

static int op_test(ctx *c, const struct pop *op)
{
    const char *path = op->path;
    loc l;
    mx_val *have, *want;
    size_t idx;
    c->missing = MX_ETEST_FAILED;
    int rc = locate(c, "path", path, 0, &l);
    if (rc || (rc = target(c, "path", path, &l, &have, &idx)))
        return rc;
    const char *why = "out of memory";
    if (!(want = mx_json_from_jansson(op->value, 0, &why)))
        return strstr(why, "memory") ? oom(c)
                                     : fail(c, MX_EBAD_PATCH, "path", path, ": value is not valid");
    int same = mx_json_equal(have, want);
    mx_json_free(want);
    return same ? 0 : fail(c, MX_ETEST_FAILED, "path", path, ": value differs");
}

/* Add delta to the number t (at l). */
static int bump(ctx *c, const char *path, const loc *l, mx_val *t, double delta)
{
    if (t->type != MX_NUMBER)
        return fail(c, MX_EBAD_PATCH, "path", path, " is not a number");
    double r = t->u.num + delta;
    if (!isfinite(r))
        return fail(c, MX_EBAD_PATCH, "path", path, ": result is not a finite number");
    struct step *s = step_new(c, ST_NUM, t, 0, l);
    s->num = t->u.num;
    t->u.num = r == 0 ? 0.0 : r; /* one zero, as mx_json_num keeps it */
    return 0;
}

static int op_inc(ctx *c, const struct pop *op)
{
    const char *path = op->path;
    double delta = json_number_value(op->value);
    loc l;
    mx_val *t;
    size_t idx;
    int rc = locate(c, "path", path, 1, &l);
    if (rc)
        return rc;
    if (l.parent && l.parent->type == MX_OBJECT && !mx_json_obj_get(l.parent, l.key, l.klen)) {
        if (room_below(c, l.depth) < 0)
            return too_deep(c, path);
        mx_val *v = mx_json_num(delta);
        if (!v)
            return oom(c);
        if ((rc = put(c, path, &l, v, 1)))
            mx_json_free(v);
        return rc;
    }
    if ((rc = target(c, "path", path, &l, &t, &idx)))
        return rc;
    return bump(c, path, &l, t, delta);
}

/* ---- dispatch and validation ------------------------------------------- */

struct opdef {
    const char *name;
    int (*apply)(ctx *c, const struct pop *op);
    uint8_t value; /* requires "value" */
    uint8_t from;  /* requires "from" */
};

static const struct opdef OPS[] = {
    {"add", op_add, 1, 0},   {"remove", op_remove, 0, 0}, {"replace", op_replace, 1, 0},
    {"move", op_move, 0, 1}, {"copy", op_copy, 0, 1},     {"test", op_test, 1, 0},
    {"inc", op_inc, 1, 0},
};

/* By the first letters, then one comparison (it runs twice per op: it
 * was ~2% of W4's engine CPU as a strcmp loop over the table) */
static const struct opdef *find_op(const char *name)
{
    const struct opdef *d;
    switch (name[0]) {
    case 'a': d = &OPS[0]; break;
    case 'r': d = name[1] == 'e' && name[2] == 'm' ? &OPS[1] : &OPS[2]; break;
    case 'm': d = &OPS[3]; break;
    case 'c': d = &OPS[4]; break;
    case 't': d = &OPS[5]; break;
    case 'i': d = &OPS[6]; break;
    default: return NULL;
    }
    return strcmp(d->name, name) == 0 ? d : NULL;
}

/* A member that must be a JSON pointer string (s: NULL when it is not a
 * string). */
static int check_pointer(ctx *c, const char *s, const char *name)
{
    char tail[48];
    if (!s) {
        snprintf(tail, sizeof tail, "\"%s\" is missing or not a string", name);
        return fail(c, MX_EBAD_PATCH, NULL, NULL, tail);
    }
    if (!pointer_ok(s))
        return fail(c, MX_EBAD_PATCH, name, s, " is not a JSON pointer");
    return 0;
}

/* A string member of a jansson op, NULL when absent, not a string, or
 * holding a NUL (which no pointer may). */
static const char *member_str(const json_t *op, const char *name)
{
    const json_t *j = json_object_get(op, name);
    const char *s = json_string_value(j);
    return s && strlen(s) == json_string_length(j) ? s : NULL;
}

/* The patch's ops, from either source. */
struct ops {
    const json_t *arr;               /* jansson array, or NULL */
    const struct mx_patch_view *view; /* else this */
    size_t n;
};

/* Op i's members; 0, or -1 when it is not an object (jansson only). */
static int op_at(const struct ops *s, size_t i, struct pop *p)
{
    if (s->view) {
        p->name = s->view->op[i].op;
        p->path = s->view->op[i].path;
        p->from = s->view->op[i].from;
        p->value = s->view->op[i].value;
        return 0;
    }
    const json_t *op = json_array_get(s->arr, i);
    if (!json_is_object(op))
        return -1;
    /* the name as a C string, as before: the op's name up to a NUL */
    p->name = json_string_value(json_object_get(op, "op"));
    p->path = member_str(op, "path");
    p->from = member_str(op, "from");
    p->value = json_object_get(op, "value");
    return 0;
}

static int check_op(ctx *c, const struct ops *s, size_t i, struct pop *op, const struct opdef **def)
{
    strcpy(c->opname, "?");
    if (op_at(s, i, op))
        return fail(c, MX_EBAD_PATCH, NULL, NULL, "operation is not an object");
    if (!op->name)
        return fail(c, MX_EBAD_PATCH, NULL, NULL, "\"op\" is missing or not a string");
    clip(c->opname, op->name, NAME_CLIP);
    if (!(*def = find_op(op->name)))
        return fail(c, MX_EBAD_PATCH, NULL, NULL, "unknown op");
    int rc = check_pointer(c, op->path, "path");
    if (rc || ((*def)->from && (rc = check_pointer(c, op->from, "from"))))
        return rc;
    if ((*def)->value && !op->value)
        return fail(c, MX_EBAD_PATCH, NULL, NULL, "\"value\" is missing");
    if ((*def)->apply == op_inc && !json_is_number(op->value))
        return fail(c, MX_EBAD_PATCH, NULL, NULL, "\"value\" must be a number");
    return 0;
}

static int validate(const struct ops *s, const mx_patch_limits *lim, mx_patch_error *err)
{
    mx_patch_error dummy;
    ctx c = {.err = err ? err : &dummy};
    if (lim && lim->max_ops && s->n > lim->max_ops) {
        char msg[96];
        snprintf(msg, sizeof msg, "patch has %zu operations, the limit is %zu", s->n, lim->max_ops);
        return patch_fail(c.err, msg);
    }
    for (size_t i = 0; i < s->n; i++) {
        const struct opdef *def;
        struct pop op;
        c.index = i;
        int rc = check_op(&c, s, i, &op, &def);
        if (rc)
            return rc;
    }
    return 0;
}

int mx_patch_validate(const json_t *patch, const mx_patch_limits *lim, mx_patch_error *err)
{
    if (!json_is_array(patch))
        return patch_fail(err ? err : &(mx_patch_error){0}, "patch is not an array");
    struct ops s = {.arr = patch, .n = json_array_size(patch)};
    return validate(&s, lim, err);
}

static int apply_ops(mx_val **root, const struct ops *s, const mx_patch_limits *lim,
                     mx_patch_undo **undo, mx_patch_error *err)
{
    mx_patch_error dummy;
    if (!err)
        err = &dummy;
    if (undo)
        *undo = NULL;
    int rc = validate(s, lim, err);
    if (rc)
        return rc;
    ctx c = {.root = root, .max_depth = lim ? lim->max_depth : 0, .err = err};
    c.tok = c.small_tok;
    c.tokcap = sizeof(c.small_tok);
    /* from the small-block cache, and only the header zeroed: the inline
     * steps are cleared one by one as they are used (step_new) and the
     * ancestors written before they are read (a calloc of ~600 bytes per
     * action was ~2% of W4's engine instructions) */
    if (!(c.u = mx_block_alloc(sizeof(*c.u))))
        return oom(&c);
    memset(c.u, 0, offsetof(mx_patch_undo, small_steps));
    c.u->steps = c.u->small_steps;
    c.u->cap = SMALL_STEPS;
    c.u->anc = c.u->small_anc;
    c.u->anc_cap = SMALL_ANC;
    for (size_t i = 0; i < s->n && !rc; i++) {
        struct pop op;
        c.index = i;
        c.missing = MX_EBAD_PATCH;
        op_at(s, i, &op); /* validated above */
        clip(c.opname, op.name, NAME_CLIP);
        const struct opdef *def = find_op(op.name);
        rc = steps_reserve(c.u, 2) ? oom(&c) : def->apply(&c, &op);
    }
    if (c.tok != c.small_tok)
        free(c.tok);
    if (rc) {
        mx_patch_rollback(root, c.u);
        return rc;
    }
    err->code = 0;
    err->op_index = 0;
    err->message[0] = '\0';
    if (undo)
        *undo = c.u;
    else
        mx_patch_commit(c.u);
    return 0;
}

int mx_patch_apply(mx_val **root, const json_t *patch, const mx_patch_limits *lim,
                   mx_patch_undo **undo, mx_patch_error *err)
{
    if (undo)
        *undo = NULL;
    if (!json_is_array(patch))
        return patch_fail(err ? err : &(mx_patch_error){0}, "patch is not an array");
    struct ops s = {.arr = patch, .n = json_array_size(patch)};
    return apply_ops(root, &s, lim, undo, err);
}

int mx_patch_apply_view(mx_val **root, const struct mx_patch_view *patch, const mx_patch_limits *lim,
                        mx_patch_undo **undo, mx_patch_error *err)
{
    struct ops s = {.view = patch, .n = patch->n};
    return apply_ops(root, &s, lim, undo, err);
}
