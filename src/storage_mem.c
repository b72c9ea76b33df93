/* storage_mem.c - the in-memory storage: every call succeeds, nothing is
 * kept beyond the process. Durability comes with the write-ahead log. */
#include "movexd/storage.h"

static int mem_room_created(void *ctx, const struct mx_room *r, const mx_val *s) { return 0; }
static int mem_action(void *ctx, const struct mx_room *r, const struct mx_storage_action *a) { return 0; }
static int mem_reject(void *ctx, const struct mx_room *r, const char *c, size_t cl, const struct mx_outcome *o)
{
    return 0;
}
static int mem_flush(void *ctx) { return 0; }
static void mem_close(void *ctx) {}

static const struct mx_storage mem = {
    .ctx = 0,
    .name = "memory",
    .room_created = mem_room_created,
    .action = mem_action,
    .reject = mem_reject,
    .flush = mem_flush,
    .close = mem_close,
};

const struct mx_storage *mx_storage_mem(void) { return &mem; }
