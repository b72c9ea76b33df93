/* map.h - string-keyed hash map (room registry, per-room client tables).
 *
 * Keys are byte strings chosen by remote clients (room ids, client ids), so
 * the hash is keyed SipHash (libsodium crypto_shorthash) with a per-process
 * random key: nobody can aim collisions at one bucket. Keys are copied;
 * values are borrowed pointers the caller owns.
 */
#ifndef MOVEXD_MAP_H
#define MOVEXD_MAP_H

#include <stddef.h>

typedef struct mx_map mx_map;

mx_map *mx_map_new(void);
/* Frees the map; calls free_val (when not NULL) on every value. */
void mx_map_free(mx_map *m, void (*free_val)(void *));
void *mx_map_get(const mx_map *m, const char *key, size_t len);
/* Insert or replace; returns 0, or -1 on allocation failure (map unchanged).
 * A replaced value is not freed. */
int mx_map_put(mx_map *m, const char *key, size_t len, void *val);
/* Remove; returns the value, or NULL when absent. */
void *mx_map_del(mx_map *m, const char *key, size_t len);
size_t mx_map_len(const mx_map *m);

/* Iteration: start with it = 0; returns 1 and fills key/len/val for each
 * entry, 0 at the end. The map must not change during an iteration except
 * through mx_map_del of the entry just returned. */
int mx_map_next(const mx_map *m, size_t *it, const char **key, size_t *len, void **val);

#endif
