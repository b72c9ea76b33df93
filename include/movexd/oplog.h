/* oplog.h - a room's bounded, ordered log of applied actions.
 *
 * Entries have consecutive seqs; when the log is full the oldest is dropped.
 * Each entry keeps the checksum before (prev) and after the action, so the
 * checksum the state had at seq s is entry(s+1).prev: catch-up from
 * since{seq, checksum} is possible exactly when entry(since.seq+1) exists and
 * its prev equals since.checksum (then every later entry exists too).
 * The entry text is the pre-encoded JSON object sent in an `actions` reply,
 * encoded once at apply time.
 */
#ifndef MOVEXD_OPLOG_H
#define MOVEXD_OPLOG_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/json.h" /* MX_DIGEST_LEN */

struct mx_oplog_entry {
    uint64_t seq;
    uint8_t prev[MX_DIGEST_LEN];
    uint8_t checksum[MX_DIGEST_LEN];
    char *text; /* owned, NUL-terminated */
    size_t len;
};

typedef struct mx_oplog mx_oplog;

mx_oplog *mx_oplog_new(size_t capacity); /* capacity 0 keeps nothing */
void mx_oplog_free(mx_oplog *l);

/* Append text, taking it over: text is a malloc'd block holding len bytes
 * and a NUL after them (an mx_buf's memory, stolen, with pre 0). Returns 0
 * when the log keeps it (it frees it when the entry goes), 1 when the log
 * keeps nothing (capacity 0: text is still the caller's), -1 on allocation
 * failure or a seq gap (log unchanged, text still the caller's). The room's
 * hot path: the entry it just encoded goes into the log without a copy. */
int mx_oplog_append_take(mx_oplog *l, uint64_t seq, const uint8_t prev[MX_DIGEST_LEN],
                         const uint8_t checksum[MX_DIGEST_LEN], char *text, size_t len);

/* Append a copy of text. seq must be exactly last seq + 1 unless the log is
 * empty. Returns 0, -1 on allocation failure or a seq gap (log unchanged). */
int mx_oplog_append(mx_oplog *l, uint64_t seq, const uint8_t prev[MX_DIGEST_LEN],
                    const uint8_t checksum[MX_DIGEST_LEN], const char *text, size_t len);

/* Entry with this seq, or NULL when not held. */
const struct mx_oplog_entry *mx_oplog_get(const mx_oplog *l, uint64_t seq);

size_t mx_oplog_count(const mx_oplog *l);
uint64_t mx_oplog_first_seq(const mx_oplog *l); /* 0 when empty */
uint64_t mx_oplog_last_seq(const mx_oplog *l);  /* 0 when empty */
size_t mx_oplog_bytes(const mx_oplog *l);       /* sum of text lengths */

/* Change capacity (config reload), dropping the oldest entries if needed. */
int mx_oplog_set_capacity(mx_oplog *l, size_t capacity);

/* Drop every entry (room deleted / reset). */
void mx_oplog_clear(mx_oplog *l);

/* A hold makes the appends from now on undoable (cluster mode's batch,
 * room.h mx_room_batch_begin): entries the ring drops to make room are
 * kept, not freed. mx_oplog_rewind pops every entry appended since the
 * hold and puts the dropped ones back, so the log holds exactly what it
 * held then; mx_oplog_release keeps the appends and frees what was kept.
 * Both end the hold; a new hold releases the previous one. A capacity
 * change or a clear under a hold lets go of what it kept (a rewind then
 * only pops). */
/* A pin keeps every text the log holds now (the ring's, and a hold's kept
 * ones) alive and unchanged until mx_oplog_unpin, whatever happens to the
 * log meanwhile (appends that drop the oldest, clear, rewind, capacity
 * changes): another thread may read them (the snapshot writer writes a
 * room's log straight from its texts). The texts the log lets go of
 * meanwhile are freed at the unpin. One pin at a time; -1 when one is on
 * or out of memory (nothing changed). */
int mx_oplog_pin(mx_oplog *l);
void mx_oplog_unpin(mx_oplog *l);

void mx_oplog_hold(mx_oplog *l);
void mx_oplog_rewind(mx_oplog *l);
void mx_oplog_release(mx_oplog *l);

#endif
