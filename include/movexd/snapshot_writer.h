/* snapshot_writer.h - one background thread that does a snapshot's file
 * work for the event loop (snapshot_writer.c): the WAL fdatasync the
 * snapshot depends on, wal/STATE when it must be raised, and the snapshot
 * file itself (write, fsync, rename, directory fsync). storage_wal.c
 * builds a job on the loop, hands it over, and applies the outcome on the
 * loop when it collects the finished job. One job at a time. */
#ifndef MOVEXD_SNAPSHOT_WRITER_H
#define MOVEXD_SNAPSHOT_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

#include "movexd/buf.h"
#include "movexd/proto.h" /* MX_ROOM_ID_MAX */
#include "movexd/wal.h"

struct mx_snapjob {
    /* set by the loop before mx_snapwriter_submit; the thread only reads */
    int wal_fd;        /* own description of the WAL segment to fdatasync first, or -1 */
    char wal_seg[32];  /* its name (for the error) */
    const char *waldir, *snapdir;
    int write_state;   /* raise wal/STATE to `state` before the snapshot */
    struct mx_wal_state state;
    char name[MX_ROOM_ID_MAX + 8];
    mx_buf payload;    /* the encoded snapshot (encoded on the loop) */
    /* when niov > 0 the file is iov[0..niov) instead: payload's pieces and
     * the room's log texts, pinned by the loop until it collects the job
     * (mx_snapshot_encode_gather, mx_oplog_pin) */
    struct iovec *iov;
    size_t niov, iovcap;
    char *stage;       /* MX_SNAPJOB_STAGE bytes the thread writes the pieces through */
    size_t bytes;      /* the snapshot's size (payload.len, or the pieces') */
    /* set by the thread; the loop reads them once it has collected the job */
    int sync_errno;    /* the WAL fdatasync failed: nothing else was done */
    uint64_t sync_us, write_us;
    int state_rc;      /* 0 or a negative mx_err: then the snapshot was not written */
    int rc;            /* the snapshot file: 0 or a negative mx_err */
    char err[600];     /* what failed (state or snapshot) */
};

#define MX_SNAPJOB_STAGE (256u << 10)

typedef struct mx_snapwriter mx_snapwriter;

/* NULL when out of memory. The thread starts with the first job. */
mx_snapwriter *mx_snapwriter_new(void);
/* Hand a job over (none may be in flight: mx_snapwriter_busy is 0). When
 * the thread cannot be started the job runs here, on the caller's thread. */
void mx_snapwriter_submit(mx_snapwriter *w, struct mx_snapjob *job);
/* 1 from submit until the job is collected by mx_snapwriter_done. */
int mx_snapwriter_busy(const mx_snapwriter *w);
/* The submitted job once it is finished (the writer is then idle again),
 * else NULL; with wait, blocks until it is finished. NULL when none. */
struct mx_snapjob *mx_snapwriter_done(mx_snapwriter *w, int wait);
/* Waits for a job in flight (it is not collected: collect it first), stops
 * and joins the thread, frees. */
void mx_snapwriter_free(mx_snapwriter *w);

#endif
