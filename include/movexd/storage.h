/* storage.h - the seam between the engine and durable storage.
 *
 * The engine reports every decision that must survive a restart (room
 * creation, each applied action, each reject - the exactly-once memory is
 * durable state) and, once per event-loop turn, asks the storage to make
 * everything reported so far durable (group commit). Replies wait in the
 * engine's outbox until that flush succeeds, so no ack or fwd ever goes out
 * before its record is as durable as the policy says.
 *
 * The in-memory storage (storage_mem.c) does nothing; the write-ahead log
 * implements the same table.
 */
#ifndef MOVEXD_STORAGE_H
#define MOVEXD_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/dedup.h"
#include "movexd/json.h"

struct mx_room;

struct mx_storage_action {
    uint64_t seq;
    const uint8_t *prev;     /* MX_DIGEST_LEN */
    const uint8_t *checksum; /* MX_DIGEST_LEN */
    const char *client;
    size_t clientlen;
    uint64_t n;
    const char *entry; /* the encoded log entry (action, effects, ...) */
    size_t entrylen;
};

struct mx_storage {
    void *ctx;
    const char *name;
    /* Each returns 0 or a negative mx_err (MX_EUNAVAILABLE when it can no
     * longer accept writes). */
    int (*room_created)(void *ctx, const struct mx_room *r, const mx_val *state);
    int (*action)(void *ctx, const struct mx_room *r, const struct mx_storage_action *a);
    int (*reject)(void *ctx, const struct mx_room *r, const char *client, size_t clen,
                  const struct mx_outcome *o);
    /* Make everything reported so far durable per the fsync policy. */
    int (*flush)(void *ctx);
    void (*close)(void *ctx);
};

/* Storage that keeps nothing beyond the process (tests, `data_dir none`). */
const struct mx_storage *mx_storage_mem(void);

#endif
