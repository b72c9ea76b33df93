/* reducer_bench.c - the core's CPU per applied action by reducer, without
 * the network: mx_room_decide (dedup, reducer, patch, digest, log entry) on
 * in-memory rooms, side by side in one run.
 *
 *   json   {"type":"patch","payload":[inc /c]} through the json reducer
 *   lua    {"type":"inc"} through a Lua reducer emitting the same inc
 *   small  a Lua reducer reading three fields (state.a, state.nested.b,
 *          state.list[5]) and emitting inc /n, on a ~1 KB state
 *   big    the same on a ~1 MB state (the lazy view: target <= 1.2x small)
 *   ttt    examples/tictactoe.lua: a full game (join x2, 5 moves, reset)
 *
 * Kinds are interleaved, each timed over BATCH actions (CPU time of the
 * process), repeated REPS times; medians in ns per action and the ratios
 * lua/json (target <= 1.5) and big/small are printed. Run from the
 * repository root (it reads examples/tictactoe.lua).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "movexd/config.h"
#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/json.h"
#include "movexd/reducer.h"
#include "movexd/room.h"

#define REPS 9
#define BATCH 20000

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *write_tmp(const char *src)
{
    static char paths[4][64];
    static int n;
    char *p = paths[n++];
    strcpy(p, "/tmp/mx-reducer-bench-XXXXXX");
    int fd = mkstemp(p);
    if (fd < 0 || write(fd, src, strlen(src)) != (ssize_t)strlen(src)) {
        perror("reducer_bench: temp file");
        exit(1);
    }
    close(fd);
    return p;
}

static mx_val *state_of(size_t bytes)
{
    json_t *list = json_array();
    size_t size = 0;
    for (int i = 0; size < bytes; i++) {
        json_t *it = json_pack("{s:i,s:s,s:b}", "id", i, "text",
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "done", i % 2 == 0);
        json_array_append_new(list, it);
        size += 60;
    }
    json_t *j = json_pack("{s:i,s:i,s:{s:s},s:o}", "a", 1, "n", 0, "nested", "b", "here", "list", list);
    mx_val *v = mx_json_from_jansson(j, 0, NULL);
    json_decref(j);
    mx_digest_refresh(v);
    return v;
}

struct kind {
    const char *name;
    struct mx_room *room;
    json_t *action;
    uint64_t n;
    double ns[REPS];
};

static struct mx_room *room_of(const char *id, struct mx_room_type *t, mx_val *state)
{
    int err;
    struct mx_room *r = mx_room_new(id, strlen(id), t, state, 1024, &err);
    if (!r) {
        fprintf(stderr, "reducer_bench: room %s: %d\n", id, err);
        exit(1);
    }
    return r;
}

static void decide(struct mx_room *r, const char *client, uint64_t n, const json_t *action)
{
    struct mx_action_in in = {.client = client, .clientlen = strlen(client), .n = n,
                              .action = action, .max_depth = 64, .time_ms = 1, .seed = n};
    struct mx_action_out o;
    if (mx_room_decide(r, &in, &o) || o.decision != MX_DECIDED_APPLIED) {
        fprintf(stderr, "reducer_bench: %s: not applied: %s %s\n", r->id, mx_err_code(o.code),
                o.message);
        exit(1);
    }
    free(o.entry_owned);
    json_decref(o.effects);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v)
{
    double s[REPS];
    memcpy(s, v, sizeof(s));
    qsort(s, REPS, sizeof(double), cmp);
    return s[REPS / 2];
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    struct mx_room_type base;
    memset(&base, 0, sizeof(base));
    strcpy(base.reducer, "json");
    base.history = 1000;
    base.max_state_bytes = 64u << 20;
    base.max_ops = 1000;
    base.reducer_budget = 1000000;
    base.reducer_memory = 32u << 20;

    struct mx_room_type tj = base, tl = base, tr = base, tt = base;
    strcpy(tl.reducer, "lua");
    tl.reducer_path = write_tmp("return {reduce = function() return {{op = 'inc', path = '/c', value = 1}} end}\n");
    strcpy(tr.reducer, "lua");
    tr.reducer_path = write_tmp(
        "return {reduce = function(state)\n"
        "  local a, b, c = state.a, state.nested.b, state.list[5]\n"
        "  if a == nil or b == nil or c == nil then return nil, 'missing', 'a field is missing' end\n"
        "  return {{op = 'inc', path = '/n', value = 1}}\n"
        "end}\n");
    strcpy(tt.reducer, "lua");
    tt.reducer_path = "examples/tictactoe.lua";

    struct kind k[4] = {
        {.name = "json", .room = room_of("json:1", &tj, state_of(0)),
         .action = json_loads("{\"type\":\"patch\",\"payload\":[{\"op\":\"inc\",\"path\":\"/c\",\"value\":1}]}", 0, NULL)},
        {.name = "lua", .room = room_of("lua:1", &tl, state_of(0)), .action = json_loads("{\"type\":\"inc\"}", 0, NULL)},
        {.name = "small", .room = room_of("small:1", &tr, state_of(1024)), .action = json_loads("{\"type\":\"read\"}", 0, NULL)},
        {.name = "big", .room = room_of("big:1", &tr, state_of(1u << 20)), .action = json_loads("{\"type\":\"read\"}", 0, NULL)},
    };
    /* tic-tac-toe: x and o play X-wins-in-5 then reset, over and over */
    json_t *init = NULL;
    struct mx_action_in iin = {.client = "x", .clientlen = 1, .max_depth = 64};
    mx_val *tstate;
    char msg[256];
    if (mx_room_initial_state(&tt, "ttt:1", 5, NULL, &iin, &tstate, msg, sizeof(msg))) {
        fprintf(stderr, "reducer_bench: ttt init: %s\n", msg);
        return 1;
    }
    json_decref(init);
    struct mx_room *ttt = room_of("ttt:1", &tt, tstate);
    json_t *join = json_loads("{\"type\":\"join\"}", 0, NULL), *reset = json_loads("{\"type\":\"reset\"}", 0, NULL);
    json_t *moves[5];
    static const int sq[5] = {0, 3, 1, 4, 2};
    for (int i = 0; i < 5; i++)
        moves[i] = json_pack("{s:s,s:{s:i}}", "type", "move", "payload", "square", sq[i]);
    uint64_t nx = 1, no = 1;
    decide(ttt, "x", nx++, join);
    decide(ttt, "o", no++, join);
    double ttt_ns[REPS];

    for (int rep = 0; rep < REPS; rep++) {
        for (int i = 0; i < 4; i++) {
            double t0 = cpu_ns();
            for (int j = 0; j < BATCH; j++)
                decide(k[i].room, "c", ++k[i].n, k[i].action);
            k[i].ns[rep] = (cpu_ns() - t0) / BATCH;
        }
        double t0 = cpu_ns();
        int applied = 0;
        for (int g = 0; g < BATCH / 6; g++) {
            for (int m = 0; m < 5; m++) {
                if (m % 2 == 0)
                    decide(ttt, "x", nx++, moves[m]);
                else
                    decide(ttt, "o", no++, moves[m]);
            }
            decide(ttt, "x", nx++, reset);
            applied += 6;
        }
        ttt_ns[rep] = (cpu_ns() - t0) / applied;
    }
    printf("reducer_bench: CPU per applied action (mx_room_decide), median of %d x %d\n", REPS, BATCH);
    for (int i = 0; i < 4; i++)
        printf("  %-6s %8.0f ns\n", k[i].name, median(k[i].ns));
    printf("  %-6s %8.0f ns  (tic-tac-toe actions: moves and resets; %.0f actions/s of one core)\n", "ttt",
           median(ttt_ns), 1e9 / median(ttt_ns));
    printf("  lua/json  %.2f (target <= 1.5)\n", median(k[1].ns) / median(k[0].ns));
    printf("  big/small %.2f (target <= 1.2)\n", median(k[3].ns) / median(k[2].ns));
    for (int i = 0; i < 4; i++) {
        mx_room_free(k[i].room);
        json_decref(k[i].action);
    }
    mx_room_free(ttt);
    json_decref(join);
    json_decref(reset);
    for (int i = 0; i < 5; i++)
        json_decref(moves[i]);
    mx_reducers_free();
    unlink(tl.reducer_path);
    unlink(tr.reducer_path);
    return 0;
}
