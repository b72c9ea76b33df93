/* reducer.c - which reducer a room type uses, and the Lua instances' lives.
 *
 * Invariants:
 *  - `json` is one shared, stateless reducer; each conf room block whose
 *    reducer is `lua:PATH` has one instance (one VM), keyed by the block's
 *    name: a named block's VM serves the rooms of that one type, and the
 *    `room default` block's VM is shared by every type the default block
 *    covers. So the number of VMs is bounded by the conf (named Lua blocks
 *    + 1), never by the room types clients invent (each VM may take up to
 *    reducer_memory). An instance is created on its block's first room and
 *    kept until mx_reducers_free: rooms hold plain pointers, and a reload
 *    swaps the VM inside the instance, never the instance;
 *  - a conf is accepted only after mx_reducers_check compiled every file it
 *    names, so a running daemon never meets a broken file on a new room
 *    unless the file changed on disk since (then the room is refused).
 */
#include "movexd/reducer.h"
#include "movexd/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/log.h"
#include "movexd/reducer_lua.h"

struct instance {
    char type[MX_ROOM_TYPE_MAX + 1]; /* the conf block's name ("default" for the default block) */
    struct mx_reducer *r;
};

static struct instance *insts;
static size_t ninsts, capinsts;

const struct mx_reducer *mx_reducer_for(const struct mx_room_type *t, char *err, size_t errlen)
{
    if (strcmp(t->reducer, "json") == 0)
        return &mx_reducer_json;
    if (strcmp(t->reducer, "lua") != 0 || !t->reducer_path) {
        snprintf(err, errlen, "unknown reducer '%s'", t->reducer);
        return NULL;
    }
    /* keyed by the block (t->name), not by the room's type: see above */
    for (size_t i = 0; i < ninsts; i++)
        if (strcmp(insts[i].type, t->name) == 0)
            return insts[i].r;
    if (ninsts == capinsts) {
        size_t ncap = capinsts ? capinsts * 2 : 8;
        struct instance *n = mx_realloc(insts, ncap * sizeof(*n));
        if (!n) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        insts = n;
        capinsts = ncap;
    }
    struct mx_reducer *r =
        mx_lua_reducer_new(t->reducer_path, t->reducer_budget, t->reducer_memory, err, errlen);
    if (!r)
        return NULL;
    snprintf(insts[ninsts].type, sizeof(insts[ninsts].type), "%s", t->name);
    insts[ninsts].r = r;
    ninsts++;
    mx_info("event=reducer_loaded block=%s file=%s", insts[ninsts - 1].type, t->reducer_path);
    return r;
}

static int check_type(const struct mx_room_type *t, char *err, size_t errlen)
{
    if (strcmp(t->reducer, "lua") != 0)
        return 0;
    return mx_lua_reducer_check(t->reducer_path, t->reducer_budget, t->reducer_memory, err, errlen);
}

int mx_reducers_check(const struct mx_config *c, char *err, size_t errlen)
{
    if (check_type(&c->def, err, errlen))
        return -1;
    for (size_t i = 0; i < c->ntypes; i++)
        if (check_type(&c->types[i], err, errlen))
            return -1;
    return 0;
}

void mx_reducers_reload(const struct mx_config *c)
{
    char err[512];
    for (size_t i = 0; i < ninsts; i++) {
        const struct mx_room_type *t = mx_config_room_type(c, insts[i].type, strlen(insts[i].type));
        if (strcmp(t->reducer, "lua") != 0) {
            /* a live room keeps its reducer kind until it is reloaded from disk */
            mx_warn("event=reducer_kept block=%s note=\"the conf no longer names a lua reducer; "
                    "live rooms keep theirs\"", insts[i].type);
            continue;
        }
        if (mx_lua_reducer_reload(insts[i].r, t->reducer_path, t->reducer_budget, t->reducer_memory,
                                  err, sizeof(err)))
            mx_err("event=reducer_reload_refused block=%s reason=\"%s\" note=\"the old reducer stays\"",
                   insts[i].type, err);
        else
            mx_info("event=reducer_reloaded block=%s file=%s", insts[i].type, t->reducer_path);
    }
}

size_t mx_reducers_vms(void)
{
    return ninsts;
}

void mx_reducers_free(void)
{
    for (size_t i = 0; i < ninsts; i++)
        mx_lua_reducer_free(insts[i].r);
    free(insts);
    insts = NULL;
    ninsts = capinsts = 0;
}

int mx_reducer_valid_code(const char *s, size_t len)
{
    if (len < 1 || len > MX_REDUCER_CODE_MAX || s[0] < 'a' || s[0] > 'z')
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

void mx_reducer_reject_code(const char *stored, const char **code, size_t *codelen,
                            const char **text)
{
    const char *sp = stored ? strchr(stored, ' ') : NULL;
    if (!stored || !sp) {
        *code = "reducer_error";
        *codelen = strlen(*code);
        *text = stored ? stored : "";
        return;
    }
    *code = stored;
    *codelen = (size_t)(sp - stored);
    *text = sp + 1;
}
