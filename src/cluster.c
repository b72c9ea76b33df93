/* cluster.c - cluster mode's side of Redis (issue #14, docs/CLUSTER.md).
 *
 * Owns, so far, the Redis Function library: its text is src/cluster_fn.lua,
 * turned into a C string at build time (build/VARIANT/cluster_fn.inc) so
 * the binary and the library it loads can never disagree, and loading it
 * with FUNCTION LOAD REPLACE. The commit path, replicas and presence
 * across nodes will live here too (docs/CLUSTER.md, "Not built yet").
 */
#include "movexd/cluster.h"
#include "movexd/alloc.h"
#include "movexd/redis_adapter.h"

#include <hiredis/hiredis.h>
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
