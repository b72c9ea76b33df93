/* wal_common.h - what the WAL writer (wal.c), its reader (wal_reader.c),
 * its state file (wal_state.c) and atomic files (atomic.c) share:
 * little-endian words, the record frame's CRC, segment names and listing,
 * paths and directory fsync. Internal to those files; everything else uses
 * wal.h. */
#ifndef MOVEXD_WAL_COMMON_H
#define MOVEXD_WAL_COMMON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "movexd/wal.h"

#define MX_WAL_SEG_NAME_LEN 32 /* "wal-" + 20 digits + ".log" + NUL = 29 */

static inline void mx_le32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t mx_le32_get(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The CRC covers the length word too, so a flipped length is caught even
 * when the new length happens to fit in the file. */
static inline uint32_t mx_wal_frame_crc(const uint8_t len4[4], const void *payload, size_t len)
{
    return mx_crc32c(mx_crc32c(0, len4, 4), payload, len);
}

/* ENOSPC/EDQUOT: the write did not happen and may succeed later. */
static inline int mx_retry_later(int e) { return e == ENOSPC || e == EDQUOT; }

/* snprintf into err (when err is not NULL). */
__attribute__((format(printf, 3, 4))) void mx_wal_errf(char *err, size_t errlen, const char *fmt,
                                                       ...);
/* dir + "/" + name + suffix, malloc'd (NULL when out of memory). */
char *mx_path_join(const char *dir, const char *name, const char *suffix);
/* fsync a directory by path. 0 or an errno value. */
int mx_fsync_dir(const char *dir);

struct mx_wal_seg {
    uint64_t lsn;   /* first LSN, from the name */
    uint64_t bytes; /* file size */
};

void mx_wal_seg_name(char out[MX_WAL_SEG_NAME_LEN], uint64_t lsn);
/* Every wal-<20 digits>.log regular file in dir, sorted by LSN. A missing
 * dir is an empty list. Returns 0 or an errno value. */
int mx_wal_list_segments(const char *dir, struct mx_wal_seg **out, size_t *count);

#endif
