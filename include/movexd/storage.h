/* storage.h - the seam between the engine and durable storage.
 *
 * The engine reports every decision that must survive a restart (room
 * creation and deletion, each applied action, each reject: the exactly-once
 * memory is durable state) and, once per event-loop turn, asks the storage
 * to make everything reported so far durable (group commit). Replies wait
 * in the engine's outbox until that flush succeeds, so no ack or fwd ever
 * goes out before its record is as durable as the policy says.
 *
 * Rooms may leave memory (evict) and come back (load); the storage decides
 * what must be written for that to be safe.
 *
 * Implementations: storage_mem.c (nothing survives the process; unit tests)
 * and storage_wal.c (write-ahead log + snapshots, docs/STORAGE.md).
 */
#ifndef MOVEXD_STORAGE_H
#define MOVEXD_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/config.h"
#include "movexd/dedup.h"
#include "movexd/json.h"
#include "movexd/map.h"

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

struct mx_storage_stats {
    uint64_t wal_bytes, fsyncs, snapshots_written, snapshot_bytes;
    uint64_t flushes, flush_failures;
    /* snapshots of deleted rooms still on disk (their unlink failed or
     * waits for the next flush): each pins the WAL from its DELETE on */
    uint64_t unlinks_pending;
    int failed; /* 1 while the storage cannot accept writes */
    uint64_t rooms_on_disk; /* rooms with a snapshot file, or only WAL records */
    /* recovery: rooms indexed at start-up and not rebuilt yet; records
     * replayed and skipped (a snapshot held them) so far; rooms whose
     * records could not be replayed (refused with `internal`) */
    uint64_t rooms_unreplayed, recovery_records_replayed, recovery_records_skipped;
    uint64_t rooms_unrecoverable;
};

struct mx_storage {
    void *ctx;
    const char *name;
    /* Before deciding an action whose record may take up to `bytes`: 0, or
     * MX_EUNAVAILABLE when it could not be made durable now (the engine then
     * rejects with `unavailable` and does not use up n), or MX_ETOO_LARGE
     * when no free space could ever hold a record that large. */
    int (*reserve)(void *ctx, size_t bytes);
    /* Each returns 0 or a negative mx_err. */
    int (*room_created)(void *ctx, struct mx_room *r);
    int (*action)(void *ctx, struct mx_room *r, const struct mx_storage_action *a);
    int (*reject)(void *ctx, struct mx_room *r, const char *client, size_t clen,
                  const struct mx_outcome *o);
    int (*room_deleted)(void *ctx, struct mx_room *r);
    /* Delete a room that load refused as unrecoverable (a damaged snapshot,
     * a replay that disagrees with its log): logs the deletion, keeps the
     * damaged files aside. 0, MX_ENO_SUCH_ROOM when it is not such a room,
     * or an error. May be NULL. */
    int (*drop_unrecoverable)(void *ctx, const char *id, size_t len);
    /* Make everything reported so far durable per the fsync policy:
     * 0, MX_EUNAVAILABLE (full disk: retry later, nothing may be acked),
     * or MX_EINTERNAL (durability lost: the daemon must stop). */
    int (*flush)(void *ctx);
    /* A room that is not in memory: 0 with *out, MX_ENO_SUCH_ROOM, or an
     * error (logged). */
    int (*load)(void *ctx, const char *id, size_t len, struct mx_room **out);
    /* rooms are about to leave memory: make them loadable (one batch of
     * snapshot writes). Returns how many of them, from the first on, may
     * go; the others stay in memory. */
    size_t (*evict)(void *ctx, struct mx_room **rooms, size_t n);
    /* After a successful flush: write due snapshots, bound the WAL. */
    void (*after_commit)(void *ctx, mx_map *rooms);
    /* About once a second (everysec fsync). Returns as flush. */
    int (*tick)(void *ctx);
    void (*stats)(void *ctx, struct mx_storage_stats *out);
    /* Recovery work left from start-up (rebuilding rooms not yet needed),
     * done for about budget_us. 1 while work is left, 2 when it waits for
     * the disk (snapshots cannot be written now: try again in a second), 0
     * when done. May be NULL (nothing to do). */
    int (*background)(void *ctx, uint64_t budget_us);
    /* Clean shutdown: snapshot every dirty room, close files. */
    void (*close)(void *ctx, mx_map *rooms);
};

/* Storage that keeps nothing beyond the process. */
const struct mx_storage *mx_storage_mem(void);

/* Open the write-ahead log in cfg->data_dir and recover: every record is
 * read and verified (framing, CRC, each room's chain of logged checksums)
 * and indexed by room; rooms are rebuilt from their snapshot plus their
 * records when first loaded, or by `background`. *rooms is a new, empty
 * map. Returns 0, or -1 with err naming the file and offset (or record) of
 * what could not be recovered. */
int mx_storage_wal_open(const struct mx_config *cfg, const struct mx_storage **out, mx_map **rooms,
                        char *err, size_t errlen);

#endif
