/* cluster.c - cluster mode's side of Redis (issue #14, docs/CLUSTER.md).
 *
 * Owns, so far, the Redis Function library: its text is src/cluster_fn.lua,
 * turned into a C string at build time (build/VARIANT/cluster_fn.inc) so
 * the binary and the library it loads can never disagree, and loading it
 * with FUNCTION LOAD REPLACE; and the client side of the per-room append:
 * a batch of decided actions -> FCALL movexd_append's arguments, its reply
 * -> a head and one outcome per action. Numbers cross as decimal strings
 * and are parsed strictly (a reply that does not parse is a failed call,
 * never a guess). The commit path, replicas and presence
 * across nodes will live here too (docs/CLUSTER.md, "Not built yet").
 */
#include "movexd/cluster.h"
#include "movexd/alloc.h"
#include "movexd/redis_adapter.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char fn_source[] =
#include "cluster_fn.inc"
    ;

const char *mx_cluster_fn_source(void) { return fn_source; }

struct load {
    mx_cluster_loaded_fn done;
    void *priv;
};

static void on_loaded(struct mx_redis *r, redisReply *rep, void *priv)
{
    struct load l = *(struct load *)priv;
    free(priv);
    if (!rep)
        l.done(0, "link down", l.priv);
    else if (rep->type == REDIS_REPLY_ERROR)
        l.done(0, rep->str, l.priv);
    else if (rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "movexd") == 0)
        l.done(1, NULL, l.priv);
    else
        l.done(0, "unexpected reply to FUNCTION LOAD", l.priv);
}

void mx_cluster_load_library(struct mx_redis *r, mx_cluster_loaded_fn done, void *priv)
{
    struct load *l = mx_malloc(sizeof *l);
    if (!l) {
        done(0, "out of memory", priv);
        return;
    }
    l->done = done;
    l->priv = priv;
    const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", fn_source };
    size_t lens[] = { 8, 4, 7, sizeof fn_source - 1 };
    mx_redis_command(r, 4, argv, lens, on_loaded, l);
}

struct epoch_call {
    mx_cluster_epoch_fn done;
    void *priv;
    char candidate[64];
};

static void on_epoch(struct mx_redis *r, redisReply *rep, void *priv)
{
    struct epoch_call e = *(struct epoch_call *)priv;
    free(priv);
    if (rep && rep->type == REDIS_REPLY_NIL)
        e.done(1, e.candidate, e.priv); /* there was none: ours is it now */
    else if (rep && rep->type == REDIS_REPLY_STRING)
        e.done(1, rep->str, e.priv);
    else
        e.done(0, NULL, e.priv);
}

void mx_cluster_epoch(struct mx_redis *r, const char *prefix, const char *candidate,
                      mx_cluster_epoch_fn done, void *priv)
{
    struct epoch_call *e = mx_malloc(sizeof *e);
    char key[128];
    int kl = snprintf(key, sizeof key, "%sepoch", prefix);
    if (!e || kl < 0 || (size_t)kl >= sizeof key || strlen(candidate) >= sizeof e->candidate) {
        free(e);
        done(0, NULL, priv);
        return;
    }
    e->done = done;
    e->priv = priv;
    snprintf(e->candidate, sizeof e->candidate, "%s", candidate);
    const char *argv[] = { "SET", key, candidate, "NX", "GET" };
    size_t lens[] = { 3, (size_t)kl, strlen(candidate), 2, 3 };
    mx_redis_command(r, 5, argv, lens, on_epoch, e);
}

int mx_cluster_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* "CODE" into out->code: 1..MX_CLUSTER_CODE_MAX of a-z, 0-9 and _ (a
 * Lua reducer's own codes have digits: docs/REDUCERS.md). */
static int parse_code(const char *s, struct mx_cluster_outcome *out)
{
    size_t len = strlen(s);
    if (len == 0 || len > MX_CLUSTER_CODE_MAX || strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
        return -1;
    memcpy(out->code, s, len + 1);
    return 0;
}

int mx_cluster_parse_outcome(const char *s, struct mx_cluster_outcome *out)
{
    memset(out, 0, sizeof *out);
    int dup = strncmp(s, "dup ", 4) == 0;
    const char *t = dup ? s + 4 : s;
    if (strncmp(t, "ack ", 4) == 0) {
        out->verdict = dup ? MX_CLUSTER_DUP_ACK : MX_CLUSTER_ACK;
        return mx_cluster_parse_u64(t + 4, strlen(t + 4), &out->seq);
    }
    if (strncmp(t, "reject ", 7) == 0) {
        out->verdict = dup ? MX_CLUSTER_DUP_REJECT : MX_CLUSTER_REJECT;
        return parse_code(t + 7, out);
    }
    if (dup)
        return -1;
    if (strcmp(s, "too_old") == 0)
        out->verdict = MX_CLUSTER_TOO_OLD;
    else if (strcmp(s, "bad_dep") == 0)
        out->verdict = MX_CLUSTER_BAD_DEP;
    else if (strcmp(s, "moved") == 0)
        out->verdict = MX_CLUSTER_MOVED;
    else
        return -1;
    return 0;
}

void mx_cluster_new_inc(char out[MX_CLUSTER_INC_MAX + 1])
{
    unsigned char raw[MX_CLUSTER_INC_MAX / 2];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, MX_CLUSTER_INC_MAX + 1, raw, sizeof raw);
}

/* One append in flight: the FCALL's reply, and with wait the WAIT's that
 * follows it. done runs once, when the last of the two callbacks has. */
struct append {
    mx_cluster_appended_fn done;
    void *priv;
    size_t n;
    int left;   /* callbacks still to come (1, or 2 with WAIT) */
    int wait;   /* replicas WAIT must report; 0 = no WAIT */
    long acked; /* what WAIT reported; -1 = no usable reply */
    int ok;     /* the FCALL's reply parsed */
    char err[128];
    struct mx_cluster_head head;
    struct mx_cluster_outcome *out;
};

static void append_finish(struct append *a)
{
    if (a->ok && a->wait && a->acked < a->wait) {
        a->ok = 0;
        if (a->acked < 0)
            snprintf(a->err, sizeof a->err, "WAIT: no answer (link down)");
        else
            snprintf(a->err, sizeof a->err, "WAIT: %ld of %d replicas", a->acked, a->wait);
    }
    if (a->ok)
        a->done(1, NULL, &a->head, a->out, a->n, a->priv);
    else
        a->done(0, a->err, NULL, NULL, 0, a->priv);
    free(a->out);
    free(a);
}

static void on_waited(struct mx_redis *r, redisReply *rep, void *priv)
{
    struct append *a = priv;
    a->acked = rep && rep->type == REDIS_REPLY_INTEGER ? (long)rep->integer : -1;
    if (--a->left == 0)
        append_finish(a);
}

static int parse_head(redisReply **e, struct mx_cluster_head *h)
{
    for (int i = 0; i < 4; i++)
        if (e[i]->type != REDIS_REPLY_STRING)
            return -1;
    if (mx_cluster_parse_u64(e[0]->str, e[0]->len, &h->seq) < 0 ||
        mx_cluster_parse_u64(e[1]->str, e[1]->len, &h->sub) < 0 ||
        e[2]->len > MX_CLUSTER_SUM_MAX || e[3]->len > 40)
        return -1;
    memcpy(h->sum, e[2]->str, e[2]->len + 1);
    memcpy(h->hash, e[3]->str, e[3]->len + 1);
    return 0;
}

static void on_appended(struct mx_redis *r, redisReply *rep, void *priv)
{
    struct append *a = priv;
    if (!rep) {
        snprintf(a->err, sizeof a->err, "link down");
    } else if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(a->err, sizeof a->err, "%s", rep->str);
    } else {
        a->out = mx_calloc(a->n ? a->n : 1, sizeof *a->out);
        /* the head, the outcomes, then the head's incarnation */
        a->ok = a->out && rep->type == REDIS_REPLY_ARRAY && rep->elements == 5 + a->n &&
                parse_head(rep->element, &a->head) == 0 &&
                rep->element[4 + a->n]->type == REDIS_REPLY_STRING &&
                rep->element[4 + a->n]->len <= MX_CLUSTER_INC_MAX;
        if (a->ok)
            memcpy(a->head.inc, rep->element[4 + a->n]->str, rep->element[4 + a->n]->len + 1);
        for (size_t i = 0; a->ok && i < a->n; i++)
            a->ok = rep->element[4 + i]->type == REDIS_REPLY_STRING &&
                    mx_cluster_parse_outcome(rep->element[4 + i]->str, &a->out[i]) == 0;
        if (!a->ok)
            snprintf(a->err, sizeof a->err, "%s",
                     a->out ? "unexpected reply to movexd_append" : "out of memory");
    }
    if (--a->left == 0)
        append_finish(a);
}

#define FIXED_ARGS 15 /* FCALL movexd_append 4 keys*4 channel window seq sub sum now count, inc */
#define ACTION_ARGS 8
#define NUM_MAX 21    /* a uint64 in decimal, with its NUL */

int mx_cluster_append(struct mx_redis *r, const char *prefix, const char *room,
                      const struct mx_cluster_head *expected, size_t window, uint64_t now_ms,
                      const struct mx_cluster_action *a, size_t n, mx_cluster_appended_fn done,
                      void *priv)
{
    return mx_cluster_append_wait(r, prefix, room, expected, window, now_ms, a, n, 0, 0, done, priv);
}

int mx_cluster_append_wait(struct mx_redis *r, const char *prefix, const char *room,
                           const struct mx_cluster_head *expected, size_t window, uint64_t now_ms,
                           const struct mx_cluster_action *a, size_t n, int wait_replicas,
                           int wait_timeout_ms, mx_cluster_appended_fn done, void *priv)
{
    return mx_cluster_append_turn(r, prefix, room, expected, window, now_ms, a, n, wait_replicas,
                                  wait_timeout_ms, NULL, done, priv);
}

int mx_cluster_append_turn(struct mx_redis *r, const char *prefix, const char *room,
                           const struct mx_cluster_head *expected, size_t window, uint64_t now_ms,
                           const struct mx_cluster_action *a, size_t n, int wait_replicas,
                           int wait_timeout_ms, const char *turn, mx_cluster_appended_fn done,
                           void *priv)
{
    size_t ndeps = 0, keylen = strlen(prefix) + strlen(room) + 8; /* "{" "}:" "head" NUL */
    for (size_t i = 0; i < n; i++)
        ndeps += a[i].ndeps;
    size_t argc = FIXED_ARGS + ACTION_ARGS * n + (turn != NULL);
    size_t text = 5 * keylen + 6 * NUM_MAX + n * (3 * NUM_MAX) + ndeps * NUM_MAX;
    struct append *st = NULL;
    const char **argv = NULL;
    size_t *lens = NULL;
    char *buf = NULL;
    if (n > 100000 || !(st = mx_calloc(1, sizeof *st)) || !(argv = mx_calloc(argc, sizeof *argv)) ||
        !(lens = mx_calloc(argc, sizeof *lens)) || !(buf = mx_malloc(text))) {
        free(st);
        free(argv);
        free(lens);
        free(buf);
        done(0, "out of memory", NULL, NULL, 0, priv);
        return -1;
    }
    char *w = buf;
    size_t k = 0;
#define ARG_STR(s) (argv[k] = (s), lens[k] = strlen(argv[k]), k++)
#define ARG_FMT(...)                                                                               \
    do {                                                                                           \
        int len_ = sprintf(w, __VA_ARGS__);                                                        \
        argv[k] = w, lens[k] = (size_t)len_, k++;                                                  \
        w += len_ + 1;                                                                             \
    } while (0)
    ARG_STR("FCALL");
    ARG_STR("movexd_append");
    ARG_STR("4");
    static const char *const suffix[] = { "head", "log", "hi", "dd", "ch" };
    for (int i = 0; i < 5; i++)
        ARG_FMT("%s{%s}:%s", prefix, room, suffix[i]);
    ARG_FMT("%zu", window);
    ARG_FMT("%" PRIu64, expected->seq);
    ARG_FMT("%" PRIu64, expected->sub);
    ARG_STR(expected->sum);
    ARG_FMT("%" PRIu64, now_ms);
    ARG_FMT("%zu", n);
    for (size_t i = 0; i < n; i++) {
        ARG_STR(a[i].client);
        ARG_FMT("%" PRIu64, a[i].n);
        argv[k] = w;
        char *d0 = w;
        *w = '\0';
        for (size_t j = 0; j < a[i].ndeps; j++)
            w += sprintf(w, "%s%" PRIu64, j ? "," : "", a[i].deps[j]);
        lens[k++] = (size_t)(w - d0);
        w++;
        ARG_STR(a[i].strict ? "1" : "0");
        ARG_FMT("%" PRIu64, a[i].base);
        ARG_STR(a[i].applied ? "a" : "r");
        ARG_STR(a[i].what);
        argv[k] = a[i].applied && a[i].body ? a[i].body : "";
        lens[k++] = a[i].applied && a[i].body ? a[i].body_len : 0;
    }
    ARG_STR(expected->inc); /* the function refuses a batch of another incarnation */
    if (turn)
        ARG_STR(turn); /* the room's turn after a loss (cluster_fn.lua "Taking turns") */
#undef ARG_STR
#undef ARG_FMT
    st->done = done;
    st->priv = priv;
    st->n = n;
    st->left = 1;
    st->acked = -1;
    /* the WAIT goes out right behind the FCALL; if the FCALL could not be
     * sent its callback has already finished the append */
    int rc = mx_redis_command(r, (int)argc, argv, lens, on_appended, st);
    free(argv); /* hiredis has formatted the command */
    free(lens);
    free(buf);
    if (rc == 0 && wait_replicas > 0) {
        char nb[NUM_MAX], tb[NUM_MAX];
        const char *wv[] = { "WAIT", nb, tb };
        size_t wl[] = { 4, (size_t)sprintf(nb, "%d", wait_replicas),
                        (size_t)sprintf(tb, "%d", wait_timeout_ms) };
        st->wait = wait_replicas;
        st->left++;
        mx_redis_command(r, 3, wv, wl, on_waited, st);
    }
    return rc;
}
