/* storage_wal.h - internal to the WAL storage: storage_wal.c (the seam the
 * engine calls at run time: appending records, flush, snapshots,
 * checkpoints) and recovery.c (start-up: indexing the WAL, rebuilding rooms,
 * the background pass) share this state. Nothing else includes it; the
 * engine sees only storage.h. */
#ifndef MOVEXD_STORAGE_WAL_H
#define MOVEXD_STORAGE_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/buf.h"
#include "movexd/map.h"
#include "movexd/room.h"
#include "movexd/snapshot_writer.h"
#include "movexd/storage.h"
#include "movexd/wal.h"

struct mx_pending; /* recovery.c: a room indexed at start-up, not rebuilt yet */

enum mx_rec_type { MX_REC_CREATE = 1, MX_REC_ACTION = 2, MX_REC_REJECT = 3, MX_REC_DELETE = 4 };

struct mx_walstore {
    struct mx_storage iface;
    const struct mx_config *cfg;
    char waldir[1100], snapdir[1100];
    int lockfd;
    mx_wal *wal;
    mx_buf rec;
    struct mx_room **due; /* rooms whose snapshot is due */
    size_t ndue, capdue;
    /* snapshot files of deleted rooms, to unlink after the next flush;
     * one whose unlink failed stays (retried at each flush) and pins the
     * WAL from its DELETE record's LSN on (storage_wal.c) */
    struct mx_unlink {
        char *name;
        uint64_t lsn; /* of the room's DELETE record */
        int warned;   /* its failure was logged (once, not at every flush) */
    } *unlink_after_flush;
    size_t nunlink, capunlink;
    int failed; /* a flush failed for lack of space; cleared by the next good one */
    struct mx_storage_stats st;
    /* recovery: rooms whose WAL records are indexed but not replayed yet */
    mx_map *pending;          /* room id -> struct mx_pending; NULL when none is left */
    struct mx_pending **pq;      /* every entry, in the background pass's order */
    size_t npq, cappq, pqpos;
    struct mx_pending **done;    /* rebuilt by the background pass, snapshot due */
    size_t ndone;
    uint64_t pending_rooms, pending_nosnap, rebuilt_rooms, recovery_start_us;
    int recovery_done;        /* recovery_complete logged */
    size_t bg_batch;          /* snapshots per background batch (halved after a failure) */
    uint64_t checkpoint_floor; /* see st_after_commit */
    mx_wal_reader *rd;        /* keeps the indexed segments mapped */
    uint64_t fold_lsn;        /* LSN snapshots cover while recovery folds the WAL (no writer yet) */
    struct mx_wal_state state; /* wal/STATE as on disk (wal_state.c) */
    int state_known;          /* state holds what the file holds */
    int floor_scanned;        /* start-up read every snapshot header (no usable STATE) */
    /* the snapshot in flight on the writer thread (storage_wal.c, "Off the
     * loop"); job is NULL when none */
    mx_snapwriter *writer;    /* NULL until the first one */
    struct mx_snapjob jobmem, *job;
    struct mx_room *job_room; /* stays in memory until the job is collected */
    uint64_t job_lsn;         /* the LSN it covers */
    uint64_t job_encode_us;   /* time its encoding took on the loop (logged at debug) */
    uint64_t job_after_first, job_after_records; /* job_room's records appended since */
};

/* ---- storage_wal.c, for recovery ---- */
/* fsync a directory (best effort). */
void mx_swal_sync_dir(const char *dir);
/* Rename a damaged ROOM.snap to ROOM.snap.damaged. 0 or an errno value. */
/* Queue snapshot file `name` (of a room deleted by the DELETE record at
 * delete_lsn) for unlinking after the next flush. 0 or MX_ENOMEM. */
int mx_swal_queue_unlink(struct mx_walstore *s, const char *name, uint64_t delete_lsn);
int mx_swal_set_aside_snapshot(struct mx_walstore *s, const char *id, size_t len);
/* 1 when the WAL holds nothing unwritten and is synced (snapshots may go). */
int mx_swal_ready_for_snapshots(struct mx_walstore *s);
/* Collect the snapshot in flight on the writer thread, if it is finished
 * (wait: until it is), and apply its outcome. Every path that touches
 * snapshot files, wal/STATE or segments, or frees a room, waits first. */
void mx_swal_collect(struct mx_walstore *s, int wait);
/* Snapshot the dirty rooms of rooms[0..n) as one batch; how many, from the
 * first on, are loadable from disk now. */
size_t mx_swal_snapshot_batch(struct mx_walstore *s, struct mx_room **rooms, size_t n);
/* Raise wal/STATE's snap_max to lsn (and set its end-zeros flag once the
 * writer has a segment) before a snapshot covering lsn is written. 0 or a
 * negative mx_err: the snapshot must not be written then. */
int mx_swal_state_cover(struct mx_walstore *s, uint64_t lsn);
/* Load a room from its snapshot: 0, MX_ENO_SUCH_ROOM, MX_EUNAVAILABLE
 * (transient), MX_EINTERNAL (damaged; logged). */
int mx_swal_load_snapshot(struct mx_walstore *s, const char *id, size_t len, struct mx_room **out);

/* ---- recovery.c ---- */
struct mx_recovery_counts {
    uint64_t records, deleted;
};
/* Start-up: read and verify the whole WAL, index each room's records, cut
 * a torn tail, make what was read durable. *next_lsn is where the writer
 * continues. 0, or -1 with err filled (the daemon must not start). */
int mx_recovery_start(struct mx_walstore *s, uint64_t *next_lsn, struct mx_recovery_counts *counts,
                      char *err, size_t errlen);
/* A room still only indexed: rebuild it now. 1 when id is no such room
 * (load it from its snapshot), else 0 with *out, or a negative mx_err. */
int mx_recovery_load(struct mx_walstore *s, const char *id, size_t len, struct mx_room **out);
/* Lowest LSN a room not rebuilt yet needs (limit when none). */
uint64_t mx_recovery_keep(const struct mx_walstore *s, uint64_t limit);
/* Snapshot rebuilt rooms waiting for it (one batch); 1 when none is left. */
int mx_recovery_flush_done(struct mx_walstore *s);
/* Free the index, the rebuilt rooms and the mapped segments. */
void mx_recovery_free(struct mx_walstore *s);
/* The seam's drop_unrecoverable and background operations (storage.h). */
int mx_recovery_drop_unrecoverable(void *ctx, const char *id, size_t len);
int mx_recovery_background(void *ctx, uint64_t budget_us);

#endif
