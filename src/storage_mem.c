/* storage_mem.c - storage that keeps nothing beyond the process: every call
 * succeeds, rooms never leave memory. Used by unit tests of the engine. */
#include "movexd/err.h"
#include "movexd/room.h"
#include "movexd/storage.h"

static int mem_reserve(void *ctx, size_t bytes) { return 0; }
static int mem_room_created(void *ctx, struct mx_room *r) { return 0; }
static int mem_action(void *ctx, struct mx_room *r, const struct mx_storage_action *a) { return 0; }
static int mem_reject(void *ctx, struct mx_room *r, const char *c, size_t cl, const struct mx_outcome *o)
{
    return 0;
}
static int mem_deleted(void *ctx, struct mx_room *r) { return 0; }
static int mem_flush(void *ctx) { return 0; }
static int mem_load(void *ctx, const char *id, size_t len, struct mx_room **out) { return MX_ENO_SUCH_ROOM; }
static size_t mem_evict(void *ctx, struct mx_room **r, size_t n) { return 0; /* nowhere to keep them */ }
static void mem_after_commit(void *ctx, mx_map *rooms) {}
static int mem_tick(void *ctx) { return 0; }
static void mem_stats(void *ctx, struct mx_storage_stats *out) { *out = (struct mx_storage_stats){0}; }
static void mem_close(void *ctx, mx_map *rooms) {}

static const struct mx_storage mem = {
    .ctx = 0,
    .name = "memory",
    .reserve = mem_reserve,
    .room_created = mem_room_created,
    .action = mem_action,
    .reject = mem_reject,
    .room_deleted = mem_deleted,
    .flush = mem_flush,
    .load = mem_load,
    .evict = mem_evict,
    .after_commit = mem_after_commit,
    .tick = mem_tick,
    .stats = mem_stats,
    .close = mem_close,
};

const struct mx_storage *mx_storage_mem(void) { return &mem; }
