/* wal_state.c - the WAL directory's small state file, wal/STATE: what
 * start-up must know without reading every file (docs/STORAGE.md, "The
 * state file"). It is an atomic file (atomic.c), so a crash leaves the old
 * or the new one.
 *
 * Invariants, kept by storage_wal.c and recovery.c:
 *  - snap_max is at or above the LSN every snapshot in rooms/ covers: it is
 *    raised (the file written and synced) before a snapshot covering a
 *    higher LSN is written, so recovery can settle the LSN rule from this
 *    one file instead of reading every snapshot's header;
 *  - MX_WAL_STATE_END_ZEROS is set only once the writer of this version has
 *    started the current segment: from then on every segment in wal/ keeps
 *    a zero length word after its records (MX_WAL_END_ZEROS), and the
 *    reader may treat a last segment without one as cut short.
 * A data directory without the file (written by an older movexd) is read
 * the old way: every snapshot header, no end-zeros rule.
 */
#include "movexd/wal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/err.h"
#include "movexd/wal_common.h"

static const char STATE_MAGIC[8] = {'M', 'X', 'W', 'S', 'T', 'A', 'T', '1'};
#define STATE_NAME "STATE"
#define STATE_BYTES 16 /* u32 version, u32 flags, u64 snap_max */

int mx_wal_state_read(const char *waldir, struct mx_wal_state *st, char *err, size_t errlen)
{
    void *p = NULL;
    size_t len = 0;
    int rc = mx_atomic_read(waldir, STATE_NAME, STATE_MAGIC, &p, &len, err, errlen);
    if (rc)
        return rc;
    const uint8_t *b = p;
    if (len != STATE_BYTES || mx_le32_get(b) != 1) {
        mx_wal_errf(err, errlen, "%s/%s: unknown version or size (%zu bytes)", waldir, STATE_NAME, len);
        free(p);
        return MX_EINTERNAL;
    }
    st->flags = mx_le32_get(b + 4);
    st->snap_max = (uint64_t)mx_le32_get(b + 8) | (uint64_t)mx_le32_get(b + 12) << 32;
    free(p);
    return 0;
}

static int state_write(const char *waldir, const struct mx_wal_state *st, char *err, size_t errlen,
                       int quiet)
{
    uint8_t b[STATE_BYTES];
    mx_le32_put(b, 1);
    mx_le32_put(b + 4, st->flags);
    mx_le32_put(b + 8, (uint32_t)st->snap_max);
    mx_le32_put(b + 12, (uint32_t)(st->snap_max >> 32));
    return quiet ? mx_atomic_write_quiet(waldir, STATE_NAME, STATE_MAGIC, b, sizeof b, err, errlen)
                 : mx_atomic_write(waldir, STATE_NAME, STATE_MAGIC, b, sizeof b, err, errlen);
}

int mx_wal_state_write(const char *waldir, const struct mx_wal_state *st, char *err, size_t errlen)
{
    return state_write(waldir, st, err, errlen, 0);
}

int mx_wal_state_write_quiet(const char *waldir, const struct mx_wal_state *st, char *err,
                             size_t errlen)
{
    return state_write(waldir, st, err, errlen, 1);
}
