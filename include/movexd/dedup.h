/* dedup.h - exactly-once memory for one room: per client id, the highest
 * decided n and the outcomes of the last `window` decided actions.
 *
 * An action whose n is not above the client's highest decided n is never
 * applied: it is answered from this memory (the original ack, marked
 * duplicate, or the original reject) or, when older than the window,
 * rejected too_old. The rejection cascade reads it too: an action whose dep
 * names a rejected n is rejected after_reject. Outcomes are recorded in
 * increasing n per client; gaps in n are allowed (a client may skip).
 */
#ifndef MOVEXD_DEDUP_H
#define MOVEXD_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/json.h" /* MX_DIGEST_LEN */

enum mx_outcome_kind { MX_OUTCOME_ACK = 1, MX_OUTCOME_REJECT = 2 };

struct mx_outcome {
    uint64_t n;
    uint8_t kind;       /* enum mx_outcome_kind */
    int code;           /* reject: negative enum mx_err */
    uint64_t seq;       /* ack: the seq it was applied as; reject: head seq then */
    uint8_t prev[MX_DIGEST_LEN];     /* ack: checksum before */
    uint8_t checksum[MX_DIGEST_LEN]; /* ack: checksum after; reject: head checksum */
    char *message;      /* reject: owned copy of the message (may be NULL) */
};

typedef struct mx_dedup mx_dedup;

mx_dedup *mx_dedup_new(size_t window); /* window >= 1 */
void mx_dedup_free(mx_dedup *d);

/* Highest decided n for client (0 when none). */
uint64_t mx_dedup_highest(const mx_dedup *d, const char *client, size_t clen);

/* Look up the outcome of (client, n). Returns:
 *   1 and *out (borrowed, valid until the next record) when remembered,
 *   0 when n was never decided (n > highest, or a skipped n inside the window),
 *  -1 when n is older than the memory (too_old). */
int mx_dedup_find(const mx_dedup *d, const char *client, size_t clen, uint64_t n,
                  const struct mx_outcome **out);

/* Record an outcome; o->n must be > highest for that client. The message is
 * copied. Returns 0, or -1 (allocation failure / n not increasing). */
int mx_dedup_record(mx_dedup *d, const char *client, size_t clen, const struct mx_outcome *o);

/* A hold makes the records from now on undoable (cluster mode's batch,
 * room.h mx_room_batch_begin): an outcome that makes way at the window is
 * kept, not freed. mx_dedup_rewind undoes every record since the hold
 * (newest first: outcomes, highest n, clients made by them - the memory
 * and its iteration order are as they were); mx_dedup_release keeps them.
 * Both end the hold; a new hold releases the previous one. */
void mx_dedup_hold(mx_dedup *d);
void mx_dedup_rewind(mx_dedup *d);
void mx_dedup_release(mx_dedup *d);

size_t mx_dedup_clients(const mx_dedup *d);

/* Outcome slots allocated over all clients (each sizeof(struct mx_outcome),
 * plus its message). Rings grow lazily up to the window, so this is the
 * memory measure for metrics and for tests of that growth. */
size_t mx_dedup_slots(const mx_dedup *d);

/* Visit every remembered outcome, client by client, oldest first (for
 * snapshots). Stops and returns fn's value when fn returns non-zero. */
int mx_dedup_foreach(const mx_dedup *d,
                     int (*fn)(void *arg, const char *client, size_t clen, uint64_t highest,
                               const struct mx_outcome *o),
                     void *arg);

#endif
