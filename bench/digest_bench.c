/* digest_bench.c - cost of one action as the state grows.
 *
 * Applies {"op":"inc"} to one leaf and recomputes the room checksum, the
 * way room.c does for every action (patch engine + incremental digest), on
 * a ~1 KB and a ~1 MB state in the same run, and reports ns per action and
 * the ratio 1 MB / 1 KB (target <= 2: the digest cache makes an action cost
 * O(what it changed), not O(state)). As a reference it also times a full
 * re-digest of the 1 MB state (what every action would cost without the
 * cache). Each measurement is repeated; medians are printed.
 *
 * The states are shaped like an app's document: nested objects down to small
 * item objects. Two 1 MB shapes are measured: 10-wide (document-like) and
 * 100-wide containers, the costly case, since the digest of a container
 * hashes all its children's digests, so a change re-hashes 32 bytes per
 * member of every container on its path (docs/BENCHMARKS.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "movexd/digest.h"
#include "movexd/json.h"
#include "movexd/patch.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static mx_val *make_item(int i)
{
    char title[64];
    snprintf(title, sizeof(title), "task number %d, with a few words", i);
    mx_val *it = mx_json_obj();
    mx_json_obj_set(it, "title", 5, mx_json_str(title, strlen(title)));
    mx_json_obj_set(it, "done", 4, mx_json_bool(0));
    mx_json_obj_set(it, "votes", 5, mx_json_num(0));
    return it;
}

/* `levels` nested objects of `fanout` members ("k00".."k99"), items at the
 * bottom: fanout^levels items of ~60 bytes. */
static mx_val *make_tree(int fanout, int levels)
{
    if (levels == 0)
        return make_item(fanout);
    mx_val *o = mx_json_obj();
    for (int i = 0; i < fanout; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%02d", i);
        mx_json_obj_set(o, key, strlen(key), make_tree(fanout, levels - 1));
    }
    return o;
}

static mx_val *make_state(int fanout, int levels)
{
    mx_val *root = make_tree(fanout, levels);
    mx_digest_refresh(root);
    return root;
}

/* a path to the middle leaf's votes */
static void leaf_path(int fanout, int levels, char *out, size_t n)
{
    size_t off = 0;
    for (int l = 0; l < levels; l++)
        off += (size_t)snprintf(out + off, n - off, "/k%02d", fanout / 2);
    snprintf(out + off, n - off, "/votes");
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ns per (inc + checksum) on state, median of `reps` runs of `iters`. */
static double time_inc(mx_val **state, const char *path, int reps, int iters)
{
    json_t *patch = json_pack("[{s:s, s:s, s:i}]", "op", "inc", "path", path, "value", 1);
    mx_patch_limits lim = {0};
    double *t = calloc((size_t)reps, sizeof(double));
    uint8_t dig[MX_DIGEST_LEN];
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        for (int i = 0; i < iters; i++) {
            mx_patch_undo *u = NULL;
            mx_patch_error e;
            if (mx_patch_apply(state, patch, &lim, &u, &e)) {
                fprintf(stderr, "patch failed: %s\n", e.message);
                exit(1);
            }
            mx_patch_commit(u);
            mx_digest_of(*state, dig);
        }
        t[r] = (now_ns() - t0) / iters;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    double med = t[reps / 2];
    free(t);
    json_decref(patch);
    return med;
}

/* Mark every node stale so the next digest recomputes the whole tree. */
static void stale(mx_val *v)
{
    v->fresh = 0;
    if (v->type == MX_ARRAY)
        for (size_t i = 0; i < v->u.arr.len; i++)
            stale(v->u.arr.items[i]);
    else if (v->type == MX_OBJECT)
        for (size_t i = 0; i < v->u.obj.len; i++)
            stale(v->u.obj.m[i].val);
}

static double time_full(mx_val *state, int reps)
{
    double *t = calloc((size_t)reps, sizeof(double));
    uint8_t dig[MX_DIGEST_LEN];
    for (int r = 0; r < reps; r++) {
        stale(state);
        double t0 = now_ns();
        mx_digest_of(state, dig);
        t[r] = now_ns() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    double med = t[reps / 2];
    free(t);
    return med;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 11;
    if (sodium_init() < 0)
        return 1;
    struct {
        const char *name;
        int fanout, levels;
    } shapes[] = {
        {"1 KB, 3 x 3 objects", 3, 2},
        {"1 MB, 10-wide, 4 levels", 10, 4},
        {"1 MB, 100-wide, 2 levels", 100, 2},
    };
    double t[3];
    mx_val *big = NULL;
    for (int i = 0; i < 3; i++) {
        mx_val *st = make_state(shapes[i].fanout, shapes[i].levels);
        char path[128];
        leaf_path(shapes[i].fanout, shapes[i].levels, path, sizeof(path));
        t[i] = time_inc(&st, path, reps, 20000);
        printf("inc + checksum, %-26s (%7zu bytes): %6.0f ns/action (median of %d)\n", shapes[i].name,
               st->jsize, t[i], reps);
        if (i == 1)
            big = st;
        else
            mx_json_free(st);
    }
    printf("ratio 1 MB / 1 KB, document-shaped (10-wide): %.2f (target <= 2)\n", t[1] / t[0]);
    printf("ratio 1 MB / 1 KB, wide containers (100-wide): %.2f\n", t[2] / t[0]);
    double tf = time_full(big, reps);
    printf("reference: full re-digest of the 1 MB state: %.0f ns (%.0fx one incremental action)\n", tf,
           tf / t[1]);
    mx_json_free(big);
    return 0;
}
