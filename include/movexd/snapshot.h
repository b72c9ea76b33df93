/* snapshot.h - a room as bytes: state, seq, checksum, the action log and the
 * exactly-once memory, plus the WAL position the snapshot covers. Pure
 * encoding; storage_wal.c writes the bytes with mx_atomic_write. */
#ifndef MOVEXD_SNAPSHOT_H
#define MOVEXD_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "movexd/buf.h"
#include "movexd/config.h"
#include "movexd/room.h"

#define MX_SNAPSHOT_MAGIC "MXSNAP01"

/* Append the encoding of r (covering WAL records up to lsn) to out. 0 / -1 OOM. */
int mx_snapshot_encode(const struct mx_room *r, uint64_t lsn, mx_buf *out);

/* The same bytes as a gather list, without copying the log's texts: out
 * gets everything else (the head and state, each entry's fixed fields -
 * MX_SNAPSHOT_ENTRY_FIXED bytes - and the outcomes), and (*iov)[0..*niov)
 * lists out's pieces and the texts, where the log keeps them, in file
 * order; *iov grows as needed (*iovcap slots; the caller frees it). The
 * list is valid while out is unchanged and the texts are alive
 * (mx_oplog_pin). 0 / -1 OOM. */
#define MX_SNAPSHOT_ENTRY_FIXED (8 + 2 * MX_DIGEST_LEN + 4)
int mx_snapshot_encode_gather(const struct mx_room *r, uint64_t lsn, mx_buf *out, struct iovec **iov,
                              size_t *niov, size_t *iovcap);

/* The payload starts with the LSN it covers: mx_atomic_peek reads this
 * many bytes, mx_snapshot_peek_lsn decodes them. */
#define MX_SNAPSHOT_LSN_BYTES 8
uint64_t mx_snapshot_peek_lsn(const uint8_t p[MX_SNAPSHOT_LSN_BYTES]);

/* Rebuild a room. The state's digest must equal the stored checksum and the
 * log must be consecutive and end at seq; otherwise -1 with err filled.
 * MX_ENOMEM (err filled) when memory ran out: the snapshot is not damaged
 * and decoding it again later may succeed.
 * The room type's settings come from cfg (they may have changed since). */
int mx_snapshot_decode(const void *p, size_t len, const struct mx_config *cfg, struct mx_room **out,
                       uint64_t *lsn, char *err, size_t errlen);

#endif
