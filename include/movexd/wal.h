/* wal.h - the write-ahead log: append-only segment files of framed records,
 * group commit, and a verifying reader for recovery.
 *
 * On disk (docs/STORAGE.md): DIR/wal-<first LSN, 20 digits>.log segments.
 * Each record is
 *     u32 len (little endian, 1..MX_WAL_MAX_RECORD)
 *     u32 crc (CRC-32C over the 4 length bytes, then the payload)
 *     payload (len bytes)
 * Records are numbered by LSN (1, 2, ...) in write order across segments; a
 * segment's name is the LSN of its first record. Segments are preallocated
 * (fallocate) so a full disk is noticed when a segment is opened, before any
 * action that would need the space is applied; unwritten space reads as
 * zeros, and a zero length word marks the end of the written records.
 *
 * Writer: mx_wal_append() only buffers; mx_wal_flush() writes the buffer with
 * one write() and then, per the fsync policy, one fdatasync() (group
 * commit). The engine releases acks only after flush returns 0.
 *
 * Reader: walks every segment in LSN order and verifies each record. A bad
 * record in the middle of the log (anything after it still decodes, or it is
 * not in the last segment) is corruption: reading stops with an error naming
 * the file and byte offset. A bad or partial record at the very end of the
 * last segment is a torn write from a crash: it is reported as torn and the
 * writer cuts it off (mx_wal_reader_truncate_tail) before appending.
 */
#ifndef MOVEXD_WAL_H
#define MOVEXD_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/config.h" /* enum mx_fsync_policy */

#define MX_WAL_MAX_RECORD (256u * 1024u * 1024u)
#define MX_WAL_HEADER 8

/* The writer keeps at least this many zero bytes (one zero length word)
 * after the records of every segment, in the file: preallocated space, the
 * end kept by a clean close, or zeros written after the records when the
 * file would otherwise end with them. So a last segment whose records run
 * to the end of the file was cut short, not torn by a crash (the reader
 * refuses it once the data directory says so: wal_state.c). */
#define MX_WAL_END_ZEROS 4

/* CRC-32C (Castagnoli). Start with crc = 0; chaining works:
 * mx_crc32c(mx_crc32c(0, a, n), b, m) is the CRC of a then b.
 * mx_crc32c uses the SSE4.2 instruction when the CPU has it;
 * mx_crc32c_portable is the table-driven version it must agree with
 * (exposed for the unit tests and benchmarks). */
uint32_t mx_crc32c(uint32_t crc, const void *p, size_t n);
uint32_t mx_crc32c_portable(uint32_t crc, const void *p, size_t n);

struct mx_wal_opts {
    const char *dir;              /* created if missing */
    enum mx_fsync_policy fsync;
    size_t segment_bytes;         /* preallocated size of a segment, e.g. 64 MiB;
                                     0 = 64 MiB; at least 64 */
};

typedef struct mx_wal mx_wal;

/* Open for appending. The first record written gets LSN next_lsn (>= 1,
 * normally mx_wal_reader_next_lsn() after recovery); a new segment is
 * always started (an existing segment is never appended to; a segment file
 * already named next_lsn that holds no records, as recovery can leave, is
 * reused). Segment files with a higher LSN, or one named next_lsn that holds
 * records, mean recovery was skipped: MX_EINTERNAL. A full disk is not an
 * error here: open succeeds without a segment (logged) and the first
 * mx_wal_reserve retries. Returns 0, or a negative mx_err with err filled. */
int mx_wal_open(mx_wal **out, const struct mx_wal_opts *o, uint64_t next_lsn, char *err,
                size_t errlen);
/* Flushes and syncs (best effort, whatever the policy), gives back the
 * unused preallocation of the current segment (ftruncate) and closes. */
void mx_wal_close(mx_wal *w);

/* Make sure a record of `len` payload bytes (1..MX_WAL_MAX_RECORD) fits: in
 * the current segment, or by starting a new preallocated one (buffered
 * records are then written and synced to the old segment first, whatever
 * the policy: the buffer never spans two segments, and only the current
 * segment can hold unsynced data). Returns 0, or
 * MX_EUNAVAILABLE when the disk has no room (no record is lost and nothing
 * new is reserved; try again later), MX_ETOO_LARGE for len >
 * MX_WAL_MAX_RECORD, MX_EINTERNAL once the WAL has failed (see flush). */
int mx_wal_reserve(mx_wal *w, size_t len);

/* Buffer one record; returns its LSN, or 0 on failure (allocation, bad len,
 * failed WAL, or no room when mx_wal_reserve(w, len) was not called first -
 * append reserves by itself when the record does not fit). */
uint64_t mx_wal_append(mx_wal *w, const void *payload, size_t len);

/* For a sync made off the loop (snapshot_writer.c): write what is buffered;
 * then, when the current segment holds writes not yet synced, *fd is a new
 * read-only descriptor of it - its own open file description, so an
 * fdatasync error on it is not consumed from the writer's (errseq_t is per
 * description) - and name gets the segment's name; else *fd is -1 (nothing
 * to sync). The caller closes *fd and reports with mx_wal_sync_done.
 * Returns as mx_wal_flush (an open failure: MX_EUNAVAILABLE, not sticky). */
int mx_wal_sync_handle(mx_wal *w, int *fd, char name[32]);
/* The outcome of that fdatasync: counted (fsyncs, the fsync histogram);
 * e != 0 fails the WAL as a failed fdatasync of its own would (sticky). */
void mx_wal_sync_done(mx_wal *w, const char *name, uint64_t us, int e);

/* Write everything buffered and sync per policy: `always` fdatasyncs on
 * every flush that wrote something; `everysec` when the last sync is more
 * than a second old (and from mx_wal_tick); `no` never (only when a full
 * segment is closed, see reserve, and in mx_wal_sync). Returns 0, or a
 * negative mx_err: MX_EUNAVAILABLE when a write failed with ENOSPC/EDQUOT
 * (the partial write was cut off with ftruncate, the buffer is kept; the
 * caller must not ack), MX_EINTERNAL on EIO or a failed fsync (durability can
 * no longer be guaranteed: the caller must stop). MX_EINTERNAL is sticky:
 * the WAL is failed and every later call fails the same way; a failed
 * fdatasync is never retried (its dirty pages may already be dropped). */
int mx_wal_flush(mx_wal *w);

/* For `everysec`: sync if something was written since the last sync. Call
 * about once a second. Returns as mx_wal_flush. */
int mx_wal_tick(mx_wal *w);

/* Write what is buffered and fdatasync now, whatever the policy (before a
 * snapshot is written, so a snapshot never covers records a power cut could
 * still take away). Returns as mx_wal_flush. */
int mx_wal_sync(mx_wal *w);

uint64_t mx_wal_next_lsn(const mx_wal *w);
/* 1 when the writer has a current segment (0 after opening on a full disk). */
int mx_wal_has_segment(const mx_wal *w);
uint64_t mx_wal_written_lsn(const mx_wal *w); /* last LSN handed to write() */
size_t mx_wal_pending_bytes(const mx_wal *w); /* buffered, not yet written */
uint64_t mx_wal_disk_bytes(const mx_wal *w);   /* bytes of all segment files */
uint64_t mx_wal_fsyncs(const mx_wal *w);       /* fdatasync calls so far */
uint64_t mx_wal_writebacks(const mx_wal *w);   /* early writebacks started (not under always) */

/* Delete every segment all of whose records have LSN < lsn (never the one
 * being written, and never the newest file, whose name keeps the next LSN
 * known to recovery). Returns the number deleted, or -1 (logged) on error. */
int mx_wal_remove_before(mx_wal *w, uint64_t lsn);
/* Delete every segment file in DIR (no writer open on it) and fsync DIR:
 * for recovery, once snapshots hold everything the segments held. 0 or -1
 * (err filled). */
int mx_wal_remove_all(const char *dir, char *err, size_t errlen);

/* ---- reading (recovery) ---- */

typedef struct mx_wal_reader mx_wal_reader;

/* Open DIR (a missing or empty DIR reads as an empty log). Files other than
 * wal-<20 digits>.log (FAULT, *.tmp, snapshots) are ignored. */
int mx_wal_reader_open(mx_wal_reader **out, const char *dir, char *err, size_t errlen);
/* Next record: returns 1 with *payload (valid until the next call), *len and
 * *lsn; 0 at the end of the log; -1 on corruption (err: "FILE: offset N:
 * what"). */
int mx_wal_reader_next(mx_wal_reader *r, const void **payload, size_t *len, uint64_t *lsn,
                       char *err, size_t errlen);
/* After next returned 0: 1 if the end was a torn record (then *file, the
 * segment's path, and *offset tell where the valid data ends), else 0. A
 * bad record is torn only when it is in the last segment and no valid
 * record decodes at any later byte offset of that segment. */
int mx_wal_reader_torn(const mx_wal_reader *r, const char **file, uint64_t *offset);
/* Cut a torn tail off (ftruncate + fsync; the file is kept). A no-op when
 * there is no torn tail. 0 or -1 (err filled). */
int mx_wal_reader_truncate_tail(mx_wal_reader *r, char *err, size_t errlen);
/* LSN after the last good record; with no records, the first segment's LSN
 * (1 when there are no segments). */
uint64_t mx_wal_reader_next_lsn(const mx_wal_reader *r);
/* Call before the first next: every payload pointer stays valid until
 * mx_wal_reader_close (segments stay mapped, read-only; recovery indexes
 * records and replays them later). mx_wal_reader_keep_maps_ok is 0 when a
 * segment had to be unmapped after all (out of memory): earlier payload
 * pointers are then invalid. Truncating a torn tail keeps the records
 * before it valid. */
/* fdatasync every segment: what recovery read may have been only in the
 * page cache (written by a process that died before its sync); it must be
 * durable before anything derived from it (snapshots, new LSNs) is. 0 or
 * -1 (err filled). */
int mx_wal_reader_sync(mx_wal_reader *r, char *err, size_t errlen);
void mx_wal_reader_keep_maps(mx_wal_reader *r);
/* The data directory's segments were all written by a writer that keeps
 * MX_WAL_END_ZEROS zero bytes after the records (wal_state.c says so): a
 * last segment that ends with its records, or inside a record, was cut
 * short, and reading it fails naming the file (docs/STORAGE.md, "Which
 * cuts are a crash"). Call before the first mx_wal_reader_next. */
void mx_wal_reader_require_end_zeros(mx_wal_reader *r);
int mx_wal_reader_keep_maps_ok(const mx_wal_reader *r);
void mx_wal_reader_close(mx_wal_reader *r);

/* ---- atomic files (snapshots) ---- */

/* Write DIR/NAME atomically and durably: DIR/NAME.tmp, fsync, rename, fsync
 * DIR. The content is framed like one WAL record (len, crc, payload) after
 * the 8-byte magic; len may be 0..UINT32_MAX. Returns 0 or a negative mx_err
 * (err filled): MX_EUNAVAILABLE on ENOSPC/EDQUOT, MX_EINTERNAL otherwise.
 * After a failure DIR/NAME is unchanged or (failed directory fsync only)
 * replaced but not known durable; retrying is safe, it writes a new file. */
int mx_atomic_write(const char *dir, const char *name, const char magic[8], const void *payload,
                    size_t len, char *err, size_t errlen);
/* The same without allocating and without logging (err is filled): safe on
 * the snapshot writer's thread (snapshot_writer.c), whose caller logs. */
int mx_atomic_write_quiet(const char *dir, const char *name, const char magic[8],
                          const void *payload, size_t len, char *err, size_t errlen);
/* The same with the payload in pieces, iov[0..niov) in order (the CRC and
 * the file are those of their concatenation). With stage (stagecap > 0
 * bytes of the caller's), many pieces are copied into it and written a
 * stage at a time. */
struct iovec;
int mx_atomic_writev_quiet(const char *dir, const char *name, const char magic[8],
                           const struct iovec *iov, size_t niov, char *stage, size_t stagecap,
                           char *err, size_t errlen);
/* Write n such files in DIR sharing the syncs (one syncfs, one directory
 * fsync): for evicting many rooms at once. Returns how many were made
 * durable, in order (all, or fewer after an error, which is logged and put
 * in err). */
int mx_atomic_write_many(const char *dir, size_t n, char *const names[], const char magic[8],
                         const void *const payloads[], const size_t lens[], char *err, size_t errlen);

/* Read and verify such a file. Returns 0 with *payload (malloc'd, caller
 * frees) or a negative mx_err: MX_ENO_SUCH_ROOM when the file does not
 * exist, MX_EUNAVAILABLE when it cannot be opened for lack of descriptors or
 * memory (transient), MX_ENOMEM, MX_EINTERNAL on a read error or a bad
 * magic/length/crc (err names file). */
int mx_atomic_read(const char *dir, const char *name, const char magic[8], void **payload,
                   size_t *len, char *err, size_t errlen);

/* The first n payload bytes of such a file, checking only its magic and
 * that its length field matches its size (the CRC needs the whole file, so
 * the bytes are not verified: for a quick look, e.g. a snapshot's LSN).
 * Returns as mx_atomic_read. */
int mx_atomic_peek(const char *dir, const char *name, const char magic[8], void *out, size_t n,
                   char *err, size_t errlen);

/* ---- the WAL directory's state file (wal_state.c) ---- */

#define MX_WAL_STATE_END_ZEROS 1u /* every segment keeps MX_WAL_END_ZEROS after its records */

struct mx_wal_state {
    uint32_t flags;    /* MX_WAL_STATE_* */
    uint64_t snap_max; /* no snapshot covers an LSN above this */
};

/* Read WALDIR/STATE. 0, MX_ENO_SUCH_ROOM when there is none (an older
 * data directory), or as mx_atomic_read (damage: MX_EINTERNAL, err names
 * the file). */
int mx_wal_state_read(const char *waldir, struct mx_wal_state *st, char *err, size_t errlen);
/* Replace WALDIR/STATE atomically and durably. As mx_atomic_write. */
int mx_wal_state_write(const char *waldir, const struct mx_wal_state *st, char *err, size_t errlen);
/* The same through mx_atomic_write_quiet (for the snapshot writer's thread). */
int mx_wal_state_write_quiet(const char *waldir, const struct mx_wal_state *st, char *err,
                             size_t errlen);

/* ---- fault injection (test builds only) ----
 * Built with -DMX_FAULT_INJECTION (the asan test variant), the WAL checks
 * for a file named FAULT in its directory before every write(), fdatasync()
 * and fallocate(): while it exists and holds "enospc", "edquot" or "eio"
 * (a trailing newline is fine), that call fails with ENOSPC, EDQUOT or EIO
 * instead of running. mx_atomic_write consults DIR/FAULT the same way
 * before its write() and fsync() calls. Integration tests create and remove
 * the file to simulate a full disk and its recovery. */
#ifdef MX_FAULT_INJECTION
int mx_wal_fault(const char *dir); /* errno to inject now, or 0 */
#endif

#endif
