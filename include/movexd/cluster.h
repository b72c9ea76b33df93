/* cluster.h - cluster mode's side of Redis (issue #14, docs/CLUSTER.md).
 * So far: the Redis Function library the daemon ships (src/cluster_fn.lua,
 * built into the binary) and loading it over a link. */
#ifndef MOVEXD_CLUSTER_H
#define MOVEXD_CLUSTER_H

struct mx_redis;

/* The text of src/cluster_fn.lua as built into this binary. */
const char *mx_cluster_fn_source(void);

/* done(ok, err, priv): ok = 1 when Redis answered "movexd"; otherwise err
 * says why (Redis's error text, or "link down"), valid during the call. */
typedef void (*mx_cluster_loaded_fn)(int ok, const char *err, void *priv);

/* FUNCTION LOAD REPLACE the library over r (a command link that is up);
 * done runs exactly once. Loading is idempotent: every node does it each
 * time its link comes up, so a Redis restarted empty gets it back. */
void mx_cluster_load_library(struct mx_redis *r, mx_cluster_loaded_fn done, void *priv);

#endif
