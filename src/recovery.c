/* recovery.c - start-up of the WAL storage: every WAL record is read and
 * verified once, each room's records are indexed (not applied), and rooms
 * are rebuilt when first needed or by a background pass
 * (docs/STORAGE.md, "Start-up: index now, rebuild later").
 *
 * Invariants:
 *  - a room's chain of logged checksums is checked at indexing: each
 *    action's seq follows the one before and its `prev` is the checksum the
 *    record before it logged; a broken chain stops start-up;
 *  - a rebuilt room's final digest equals the checksum its last record
 *    logged, or the room is marked unrecoverable (refused, records kept);
 *  - a room not rebuilt yet keeps its records: mx_recovery_keep bounds what
 *    a checkpoint may delete; the indexed segments stay mapped until the
 *    background pass is done.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "movexd/codec.h"
#include "movexd/alloc.h"
#include "movexd/digest.h"
#include "movexd/err.h"
#include "movexd/fault.h"
#include "movexd/log.h"
#include "movexd/metrics.h"
#include "movexd/proto.h"
#include "movexd/room.h"
#include "movexd/snapshot.h"
#include "movexd/storage_wal.h"
#include "movexd/wal.h"

/* ---- recovery ----
 *
 * Start-up reads every WAL record once: the reader checks its framing and
 * CRC, and the scan checks each room's chain of logged checksums (every
 * action's seq follows the one before and its `prev` is the checksum the
 * record before it logged). Records are not applied then: each room's
 * records are indexed (pointers into the segments, which stay mapped), and
 * the room is rebuilt (snapshot + its records, with the final state's digest
 * compared to the last logged checksum) when it is first needed, or earlier
 * by the background pass (mx_recovery_background), which rebuilds rooms a slice at
 * a time between client messages and snapshots them in batches. A room that
 * is not rebuilt yet keeps its records: checkpoints never remove a segment
 * one of them needs.
 */

struct prec {
    const uint8_t *p;
    uint32_t len;
    uint64_t lsn;
};

enum { P_WAITING, P_DONE, P_GONE };

struct mx_pending {
    struct prec *recs;
    size_t n, cap, next;    /* next: replay cursor */
    struct mx_room *room;   /* being rebuilt, or rebuilt (P_DONE) */
    uint64_t first_lsn;     /* the WAL must keep everything from here */
    int state, has_snap, broken;
    int linked;             /* last_seq/last_sum are known */
    uint64_t last_seq;
    uint8_t last_sum[MX_DIGEST_LEN];
    size_t idlen;
    char id[];
};

struct scan {
    struct mx_walstore *s;
    mx_map *snaps;  /* ids with a snapshot file at start-up */
    uint64_t records, deleted;
    char *err;
    size_t errlen;
};

#define SFAIL(...)                                                             \
    do {                                                                       \
        snprintf(sc->err, sc->errlen, __VA_ARGS__);                            \
        return -1;                                                             \
    } while (0)

static struct mx_pending *pending_get(struct scan *sc, const char *id, size_t len)
{
    struct mx_walstore *s = sc->s;
    struct mx_pending *pe = mx_map_get(s->pending, id, len);
    if (pe)
        return pe;
    pe = mx_calloc(1, sizeof(*pe) + len + 1);
    if (!pe)
        return NULL;
    memcpy(pe->id, id, len);
    pe->idlen = len;
    pe->has_snap = mx_map_get(sc->snaps, id, len) != NULL;
    if (s->npq == s->cappq) {
        size_t ncap = s->cappq ? s->cappq * 2 : 256;
        struct mx_pending **n = mx_realloc(s->pq, ncap * sizeof(*n));
        if (!n) {
            free(pe);
            return NULL;
        }
        s->pq = n;
        s->cappq = ncap;
    }
    if (mx_map_put(s->pending, id, len, pe)) {
        free(pe);
        return NULL;
    }
    s->pq[s->npq++] = pe;
    return pe;
}

static void pending_clear(struct mx_pending *pe)
{
    free(pe->recs);
    pe->recs = NULL;
    pe->n = pe->cap = pe->next = 0;
    pe->first_lsn = 0;
    pe->linked = 0;
}

/* The LSN a snapshot file covers (read in full: only for deletes). */
static int snapshot_lsn(struct mx_walstore *s, const char *id, size_t len, uint64_t *lsn);

/* One record of the start-up scan: check it and index it under its room. */
static int scan_record(struct scan *sc, const uint8_t *payload, size_t plen, uint64_t lsn)
{
    struct mx_walstore *s = sc->s;
    mx_cursor c = mx_cursor_of(payload, plen);
    uint8_t type = mx_get_u8(&c);
    size_t idlen;
    const char *id = mx_get_bytes(&c, &idlen);
    if (c.bad || !mx_proto_room_type_len(id, idlen) || idlen > MX_ROOM_ID_MAX)
        SFAIL("WAL record %llu: bad header", (unsigned long long)lsn);
    if (type < MX_REC_CREATE || type > MX_REC_DELETE)
        SFAIL("WAL record %llu: unknown type %u", (unsigned long long)lsn, type);
    struct mx_pending *pe = pending_get(sc, id, idlen);
    if (!pe)
        SFAIL("out of memory indexing the WAL (record %llu)", (unsigned long long)lsn);
    sc->records++;
    if (type == MX_REC_DELETE) {
        if (pe->has_snap) {
            uint64_t snap = 0;
            char path[2400];
            snprintf(path, sizeof(path), "%s/%.*s.snap", s->snapdir, (int)idlen, id);
            int src = snapshot_lsn(s, id, idlen, &snap);
            if (src == MX_EUNAVAILABLE)
                SFAIL("WAL record %llu: room %.*s: its snapshot cannot be read now (out of "
                      "descriptors or memory)",
                      (unsigned long long)lsn, (int)idlen, id);
            if (src) {
                /* Damaged: of the deleted room, or of a later incarnation
                 * whose records (from its create, which follows this
                 * delete) are all in the WAL: neither needs it.
                 * Kept aside for the operator. */
                int e = mx_swal_set_aside_snapshot(s, id, idlen);
                if (e)
                    SFAIL("WAL record %llu: room %.*s: its damaged snapshot cannot be moved aside: %s",
                          (unsigned long long)lsn, (int)idlen, id, strerror(e));
                pe->has_snap = 0;
                mx_map_del(sc->snaps, id, idlen);
                pending_clear(pe);
                sc->deleted++;
                return 0;
            }
            if (snap >= lsn) {
                /* the snapshot is of a later incarnation: everything up to
                 * here is history it replaces */
                pending_clear(pe);
                return 0;
            }
            int e = MX_FAULT_UNLINK(s->snapdir);
            if (!e && unlink(path) == 0) {
                mx_swal_sync_dir(s->snapdir);
                if (s->st.rooms_on_disk)
                    s->st.rooms_on_disk--;
            } else if (e || errno != ENOENT) {
                /* still on disk: retried after each flush, and this DELETE
                 * record is kept in the WAL until it goes (storage_wal.c) */
                mx_warn("event=unlink_failed file=%s error=\"%s\" note=\"retried at the next flush\"",
                        path, strerror(e ? e : errno));
                if (mx_swal_queue_unlink(s, strrchr(path, '/') + 1, lsn))
                    SFAIL("out of memory indexing the WAL (record %llu)", (unsigned long long)lsn);
            }
            pe->has_snap = 0;
            mx_map_del(sc->snaps, id, idlen);
        }
        pending_clear(pe);
        sc->deleted++;
        return 0;
    }
    if (type == MX_REC_CREATE) {
        /* a create after records of the same incarnation is impossible */
        if (pe->n)
            SFAIL("WAL record %llu: create of existing room %.*s", (unsigned long long)lsn,
                  (int)idlen, id);
        pe->linked = 0;
    } else if (type == MX_REC_ACTION) {
        uint64_t seq = mx_get_u64(&c);
        uint8_t prev[MX_DIGEST_LEN], sum[MX_DIGEST_LEN];
        mx_get_raw(&c, prev, MX_DIGEST_LEN);
        mx_get_raw(&c, sum, MX_DIGEST_LEN);
        if (c.bad)
            SFAIL("WAL record %llu: truncated action", (unsigned long long)lsn);
        if (pe->linked && seq != pe->last_seq + 1)
            SFAIL("WAL record %llu: room %.*s: seq %llu does not follow seq %llu",
                  (unsigned long long)lsn, (int)idlen, id, (unsigned long long)seq,
                  (unsigned long long)pe->last_seq);
        if (pe->linked && memcmp(prev, pe->last_sum, MX_DIGEST_LEN) != 0)
            SFAIL("WAL record %llu: room %.*s: seq %llu: its prev checksum is not the checksum "
                  "logged for seq %llu (broken chain)",
                  (unsigned long long)lsn, (int)idlen, id, (unsigned long long)seq,
                  (unsigned long long)pe->last_seq);
        memcpy(pe->last_sum, sum, MX_DIGEST_LEN);
        pe->last_seq = seq;
        pe->linked = 1;
    }
    if (pe->n == pe->cap) {
        size_t ncap = pe->cap ? pe->cap * 2 : 8;
        struct prec *n = mx_realloc(pe->recs, ncap * sizeof(*n));
        if (!n)
            SFAIL("out of memory indexing the WAL (record %llu)", (unsigned long long)lsn);
        pe->recs = n;
        pe->cap = ncap;
    }
    pe->recs[pe->n++] = (struct prec){payload, (uint32_t)plen, lsn};
    if (!pe->first_lsn)
        pe->first_lsn = lsn;
    return 0;
}

#define RFAIL(...)                                                             \
    do {                                                                       \
        snprintf(err, errlen, __VA_ARGS__);                                    \
        return -1;                                                             \
    } while (0)
/* out of memory is not a bad record: nothing changed, try again later */
#define NOMEM(...)                                                             \
    do {                                                                       \
        snprintf(err, errlen, __VA_ARGS__);                                    \
        return MX_ENOMEM;                                                      \
    } while (0)

/* Apply one indexed record to pe->room (records its snapshot covers are
 * skipped). 0, -1 with err (the record cannot be applied), or MX_ENOMEM
 * with err (out of memory; nothing changed, the same call may work later). */
static int replay_record(struct mx_walstore *s, struct mx_pending *pe, const struct prec *pr, char *err,
                         size_t errlen)
{
    mx_cursor c = mx_cursor_of(pr->p, pr->len);
    uint8_t type = mx_get_u8(&c);
    size_t idlen;
    const char *id = mx_get_bytes(&c, &idlen);
    uint64_t lsn = pr->lsn;
    struct mx_room *r = pe->room;
    if (r && lsn <= r->disk_snap_lsn) {
        s->st.recovery_records_skipped++;
        return 0; /* its snapshot already holds it */
    }
    if (type == MX_REC_CREATE) {
        if (r)
            RFAIL("WAL record %llu: create of existing room", (unsigned long long)lsn);
        size_t slen;
        const char *stext = mx_get_bytes(&c, &slen);
        json_error_t jerr;
        int oom = 0;
        json_t *j = c.bad ? NULL
                          : mx_json_loadb(stext, slen, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr, &oom);
        const char *why = "out of memory";
        mx_val *state = j ? mx_json_from_jansson(j, 0, &why) : NULL;
        json_decref(j);
        if (oom || (j && !state && !strcmp(why, "out of memory")))
            NOMEM("WAL record %llu: out of memory reading the initial state", (unsigned long long)lsn);
        if (!state)
            RFAIL("WAL record %llu: bad initial state", (unsigned long long)lsn);
        size_t typelen = mx_proto_room_type_len(id, idlen);
        char tname[MX_ROOM_TYPE_MAX + 1];
        memcpy(tname, id, typelen);
        tname[typelen] = '\0';
        int e;
        r = mx_room_new(id, idlen, mx_config_room_type(s->cfg, tname, typelen), state,
                        s->cfg->dedup_window, &e);
        if (!r && e == MX_ENOMEM)
            NOMEM("WAL record %llu: out of memory creating the room", (unsigned long long)lsn);
        if (!r)
            RFAIL("WAL record %llu: cannot rebuild the room", (unsigned long long)lsn);
        pe->room = r;
    } else if (!r) {
        RFAIL("WAL record %llu: the room has no create record or snapshot", (unsigned long long)lsn);
    } else if (type == MX_REC_ACTION) {
        uint64_t seq = mx_get_u64(&c);
        uint8_t prev[MX_DIGEST_LEN], sum[MX_DIGEST_LEN];
        mx_get_raw(&c, prev, MX_DIGEST_LEN);
        mx_get_raw(&c, sum, MX_DIGEST_LEN);
        size_t clen, elen;
        const char *client = mx_get_bytes(&c, &clen);
        uint64_t n = mx_get_u64(&c);
        const char *entry = mx_get_bytes(&c, &elen);
        if (c.bad)
            RFAIL("WAL record %llu: truncated action", (unsigned long long)lsn);
        char why[300];
        int k = mx_room_replay(r, seq, prev, sum, client, clen, n, entry, elen, 0, why, sizeof(why));
        if (k == MX_ENOMEM)
            NOMEM("WAL record %llu: %s", (unsigned long long)lsn, why);
        if (k)
            RFAIL("WAL record %llu: %s", (unsigned long long)lsn, why);
    } else if (type == MX_REC_REJECT) {
        size_t clen, mlen;
        const char *client = mx_get_bytes(&c, &clen);
        struct mx_outcome o;
        memset(&o, 0, sizeof(o));
        o.kind = MX_OUTCOME_REJECT;
        o.n = mx_get_u64(&c);
        o.code = (int)mx_get_u32(&c);
        o.seq = mx_get_u64(&c);
        mx_get_raw(&c, o.checksum, MX_DIGEST_LEN);
        const char *m = mx_get_bytes(&c, &mlen);
        if (c.bad)
            RFAIL("WAL record %llu: truncated reject", (unsigned long long)lsn);
        char msg[256];
        snprintf(msg, sizeof(msg), "%.*s", (int)mlen, m ? m : "");
        o.message = msg;
        if (o.n <= mx_dedup_highest(r->dedup, client, clen))
            RFAIL("WAL record %llu: reject n=%llu is not above the client's highest n",
                  (unsigned long long)lsn, (unsigned long long)o.n);
        if (mx_dedup_record(r->dedup, client, clen, &o))
            NOMEM("WAL record %llu: out of memory recording a reject", (unsigned long long)lsn);
    } else {
        RFAIL("WAL record %llu: unknown type %u", (unsigned long long)lsn, type);
    }
    s->st.recovery_records_replayed++;
    if (!r->disk_first_lsn)
        r->disk_first_lsn = lsn;
    r->disk_records++;
    return 0;
}

/* Rebuild pe->room: its snapshot, then its records, until deadline_us
 * (mx_now_us; 0 = no limit). 1 when rebuilt and verified, 0 when the time
 * ran out (call again), -1 when the room cannot be rebuilt (logged; it is
 * marked broken and its records stay in the WAL), -2 when its snapshot
 * cannot be read now or memory ran out (out of descriptors or memory: not
 * damage; nothing lost, call again later). */
static int pending_replay(struct mx_walstore *s, struct mx_pending *pe, uint64_t deadline_us)
{
    if (pe->broken)
        return -1;
    char err[600];
    if (pe->state == P_DONE)
        return 1;
    if (!pe->room && pe->next == 0 && pe->has_snap) {
        int rc = mx_swal_load_snapshot(s, pe->id, pe->idlen, &pe->room);
        if (rc == MX_EUNAVAILABLE)
            return -2; /* nothing changed: try again later */
        if (rc && pe->n && pe->recs[0].p[0] == MX_REC_CREATE) {
            /* the WAL still holds the room's whole life: rebuild from it */
            mx_warn("event=snapshot_ignored room=%.*s note=\"rebuilt from its WAL records, which "
                    "start at its create record\"",
                    (int)pe->idlen, pe->id);
            /* counted at start-up; counted again when its new one is written */
            if (s->st.rooms_on_disk)
                s->st.rooms_on_disk--;
        } else if (rc) {
            snprintf(err, sizeof(err), "its snapshot cannot be loaded (%s)", mx_err_code(rc));
            goto broken;
        }
    }
    while (pe->next < pe->n) {
        int k = replay_record(s, pe, &pe->recs[pe->next], err, sizeof(err));
        if (k == MX_ENOMEM) {
            /* not damage: what is replayed so far is kept, the next call
             * goes on from this record */
            mx_warn("event=room_rebuild_deferred room=%.*s error=\"%s\"", (int)pe->idlen, pe->id, err);
            return -2;
        }
        if (k)
            goto broken;
        pe->next++;
        if (deadline_us && (pe->next & 63) == 0 && pe->next < pe->n && mx_now_us() >= deadline_us)
            return 0;
    }
    struct mx_room *r = pe->room;
    if (!r) {
        snprintf(err, sizeof(err), "no create record and no snapshot");
        goto broken;
    }
    /* the recomputed state must be the one its last record says (the
     * chain of logged checksums was checked by the scan) */
    uint8_t got[MX_DIGEST_LEN];
    if (r->disk_records && mx_digest_of(r->state, got))
        return -2; /* out of memory computing it: not a mismatch */
    if (r->disk_records && memcmp(got, r->checksum, MX_DIGEST_LEN) != 0) {
        snprintf(err, sizeof(err),
                 "the state rebuilt from the WAL does not match the checksum of its last record (seq %llu)",
                 (unsigned long long)r->seq);
        goto broken;
    }
    pe->state = P_DONE;
    s->rebuilt_rooms++;
    return 1;
broken:
    mx_err("event=room_unrecoverable room=%.*s error=\"%s\" note=\"the room is refused with "
           "`internal`; its WAL records are kept\"",
           (int)pe->idlen, pe->id, err);
    pe->broken = 1;
    s->st.rooms_unrecoverable++;
    mx_room_free(pe->room);
    pe->room = NULL;
    return -1;
}

/* The room is in memory now (handed to the engine) or snapshotted: forget
 * its index entry. The entry itself stays in s->pq until recovery ends. */
static void pending_consume(struct mx_walstore *s, struct mx_pending *pe)
{
    mx_map_del(s->pending, pe->id, pe->idlen);
    if (!pe->has_snap && s->pending_nosnap)
        s->pending_nosnap--;
    pending_clear(pe);
    pe->room = NULL;
    pe->state = P_GONE;
    if (s->pending_rooms)
        s->pending_rooms--;
}

/* Delete a room marked unrecoverable: a DELETE record (its records before
 * it are then history, dropped by the next start's scan), the damaged
 * snapshot moved aside as NAME.snap.damaged, the index entry gone (it no
 * longer pins the WAL). */
int mx_recovery_drop_unrecoverable(void *ctx, const char *id, size_t len)
{
    struct mx_walstore *s = ctx;
    struct mx_pending *pe = s->pending ? mx_map_get(s->pending, id, len) : NULL;
    if (!pe || !pe->broken)
        return MX_ENO_SUCH_ROOM;
    mx_buf_reset(&s->rec);
    mx_put_u8(&s->rec, (uint8_t)MX_REC_DELETE);
    mx_put_bytes(&s->rec, id, len);
    if (s->rec.oom)
        return MX_ENOMEM;
    if (mx_wal_reserve(s->wal, s->rec.len))
        return MX_EUNAVAILABLE;
    if (!mx_wal_append(s->wal, mx_buf_data(&s->rec), s->rec.len))
        return MX_ENOMEM;
    if (pe->has_snap)
        mx_swal_set_aside_snapshot(s, id, len); /* a failure leaves the file: logged at load */
    pe->broken = 0;
    if (s->st.rooms_unrecoverable)
        s->st.rooms_unrecoverable--;
    pending_consume(s, pe);
    return 0;
}

/* Hand a rebuilt room over to the engine. */
static struct mx_room *pending_take(struct mx_walstore *s, struct mx_pending *pe)
{
    struct mx_room *r = pe->room;
    pe->room = NULL;
    pending_consume(s, pe);
    return r;
}

int mx_recovery_load(struct mx_walstore *s, const char *id, size_t len, struct mx_room **out)
{
    struct mx_pending *pe = s->pending ? mx_map_get(s->pending, id, len) : NULL;
    if (!pe)
        return 1;
    int k = pending_replay(s, pe, 0);
    if (k == -2)
        return MX_EUNAVAILABLE;
    if (k < 0)
        return MX_EINTERNAL;
    *out = pending_take(s, pe);
    return 0;
}

static int snapshot_lsn(struct mx_walstore *s, const char *id, size_t len, uint64_t *lsn)
{
    struct mx_room *r = NULL;
    int rc = mx_swal_load_snapshot(s, id, len, &r);
    if (rc)
        return rc;
    *lsn = r->disk_snap_lsn;
    mx_room_free(r);
    return 0;
}

/* Lowest LSN a room not rebuilt yet needs (limit when none). */
uint64_t mx_recovery_keep(const struct mx_walstore *s, uint64_t limit)
{
    for (size_t i = 0; i < s->npq; i++) {
        const struct mx_pending *pe = s->pq[i];
        if (pe->state == P_GONE || !pe->first_lsn)
            continue;
        if (pe->state == P_DONE && pe->room && !pe->room->disk_first_lsn)
            continue; /* rebuilt from its snapshot alone */
        if (pe->first_lsn < limit)
            limit = pe->first_lsn;
    }
    return limit;
}

void mx_recovery_free(struct mx_walstore *s)
{
    for (size_t i = 0; i < s->npq; i++) {
        pending_clear(s->pq[i]);
        mx_room_free(s->pq[i]->room);
        free(s->pq[i]);
    }
    free(s->pq);
    s->pq = NULL;
    s->npq = s->cappq = s->pqpos = 0;
    free(s->done);
    s->done = NULL;
    s->ndone = 0;
    mx_map_free(s->pending, NULL);
    s->pending = NULL;
    mx_wal_reader_close(s->rd);
    s->rd = NULL;
}

/* Snapshot the rebuilt rooms waiting in s->done (one batch). 1 when none
 * is left waiting. */
enum { DONE_BATCH = 256 };

int mx_recovery_flush_done(struct mx_walstore *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->ndone; i++)
        if (s->done[i]->state == P_DONE)
            s->done[n++] = s->done[i];
    s->ndone = n;
    if (!n)
        return 1;
    if (!mx_swal_ready_for_snapshots(s))
        return 0;
    /* a batch is written all or nothing: after a failure (a nearly full
     * disk) try smaller ones, so what fits still goes */
    if (!s->bg_batch)
        s->bg_batch = DONE_BATCH;
    size_t m = n < s->bg_batch ? n : s->bg_batch;
    struct mx_room **rooms = mx_malloc(m * sizeof(*rooms));
    if (!rooms)
        return 0;
    for (size_t i = 0; i < m; i++)
        rooms[i] = s->done[i]->room;
    size_t ok = mx_swal_snapshot_batch(s, rooms, m);
    free(rooms);
    if (ok < m)
        s->bg_batch = s->bg_batch > 1 ? s->bg_batch / 2 : 1;
    else if (s->bg_batch < DONE_BATCH)
        s->bg_batch *= 2;
    for (size_t i = 0; i < ok; i++) {
        struct mx_pending *pe = s->done[i];
        struct mx_room *r = pe->room;
        pending_consume(s, pe);
        mx_room_free(r);
    }
    memmove(s->done, s->done + ok, (n - ok) * sizeof(*s->done));
    s->ndone = n - ok;
    return s->ndone == 0;
}

int mx_recovery_background(void *ctx, uint64_t budget_us)
{
    struct mx_walstore *s = ctx;
    if (!s->pending || s->recovery_done)
        return 0;
    if (s->failed)
        return 2; /* the tick retries the disk; nothing can be snapshotted now */
    uint64_t deadline = mx_now_us() + (budget_us ? budget_us : 1);
    while (s->pqpos < s->npq) {
        if (s->ndone >= DONE_BATCH && !mx_recovery_flush_done(s))
            return 2;
        struct mx_pending *pe = s->pq[s->pqpos];
        if (pe->state != P_WAITING || pe->broken) {
            s->pqpos++;
            continue;
        }
        int k = pending_replay(s, pe, deadline);
        if (k == 0)
            return 1;
        if (k == -2)
            return 2; /* a transient failure (descriptors, memory): in a second */
        s->pqpos++;
        if (k > 0)
            s->done[s->ndone++] = pe;
        if (mx_now_us() >= deadline)
            return 1;
    }
    if (!mx_recovery_flush_done(s))
        return 2;
    uint64_t broken = s->st.rooms_unrecoverable;
    s->recovery_done = 1;
    mx_info("event=recovery_complete rooms_rebuilt=%llu records_replayed=%llu records_in_snapshots=%llu "
            "rooms_unrecoverable=%llu seconds=%.3f",
            (unsigned long long)s->rebuilt_rooms, (unsigned long long)s->st.recovery_records_replayed,
            (unsigned long long)s->st.recovery_records_skipped, (unsigned long long)broken,
            (double)(mx_now_us() - s->recovery_start_us) / 1e6);
    if (!broken) {
        mx_recovery_free(s);
    } else {
        /* broken rooms keep their entries (refused, records kept); the
         * mapped segments are no longer read */
        mx_wal_reader_close(s->rd);
        s->rd = NULL;
    }
    s->pqpos = s->npq;
    return 0;
}

/* ---- start-up, step by step ---- */

/* Count the snapshot files and remember their room ids (a delete record
 * must know whether its room has one). */
static int list_snapshots(struct mx_walstore *s, mx_map *snaps, char *err, size_t errlen)
{
    DIR *dh = opendir(s->snapdir);
    if (!dh)
        return 0;
    struct dirent *de;
    while ((de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".snap")) {
            s->st.rooms_on_disk++;
            if (mx_map_put(snaps, de->d_name, l - 5, s)) {
                closedir(dh);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
    }
    closedir(dh);
    return 0;
}

/* Read every record, check it and index it under its room. */
static int index_wal(struct scan *sc, mx_wal_reader *rd)
{
    const void *payload;
    size_t plen;
    uint64_t lsn;
    int r;
    while ((r = mx_wal_reader_next(rd, &payload, &plen, &lsn, sc->err, sc->errlen)) == 1)
        if (scan_record(sc, payload, plen, lsn))
            return -1;
    if (r < 0)
        return -1;
    if (!mx_wal_reader_keep_maps_ok(rd)) {
        snprintf(sc->err, sc->errlen, "out of memory keeping the WAL segments mapped");
        return -1;
    }
    return 0;
}

/* Entries left without records (deleted, or covered by a later snapshot)
 * need nothing: such rooms load from their snapshot. */
static void drop_empty_entries(struct mx_walstore *s)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->npq; i++) {
        struct mx_pending *pe = s->pq[i];
        if (!pe->n) {
            mx_map_del(s->pending, pe->id, pe->idlen);
            free(pe);
            continue;
        }
        s->pq[keep++] = pe;
        s->pending_rooms++;
        if (!pe->has_snap)
            s->pending_nosnap++;
    }
    s->npq = keep;
}

static int cut_torn_tail(mx_wal_reader *rd, char *err, size_t errlen)
{
    const char *tfile;
    uint64_t toff;
    if (!mx_wal_reader_torn(rd, &tfile, &toff))
        return 0;
    mx_warn("event=wal_torn_tail file=%s offset=%llu note=\"a record cut by a crash was dropped; it "
            "was never acknowledged\"",
            tfile, (unsigned long long)toff);
    return mx_wal_reader_truncate_tail(rd, err, errlen);
}

/* Rooms left to rebuild keep the reader (the index points into its mapped
 * segments); with none, everything recovery held is released. */
static int keep_index(struct mx_walstore *s, mx_wal_reader *rd, char *err, size_t errlen)
{
    if (s->npq) {
        s->rd = rd;
        s->done = mx_malloc(DONE_BATCH * sizeof(*s->done));
        if (!s->done) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    mx_wal_reader_close(rd);
    mx_map_free(s->pending, NULL);
    s->pending = NULL;
    free(s->pq);
    s->pq = NULL;
    s->cappq = 0;
    return 0;
}

/* wal/STATE (wal_state.c): an upper bound of the snapshots' LSNs, and
 * whether segments keep their end zeros. Without one (an older data
 * directory) or with a damaged one, start-up does what it did before the
 * file existed: every snapshot header is read, no end-zeros rule. */
static int read_state(struct mx_walstore *s, char *err, size_t errlen)
{
    char why[600];
    int rc = mx_wal_state_read(s->waldir, &s->state, why, sizeof(why));
    s->state_known = rc == 0;
    if (rc == MX_EUNAVAILABLE || rc == MX_ENOMEM) {
        snprintf(err, errlen, "%s: cannot be read now (out of descriptors or memory); start again", why);
        return -1;
    }
    if (rc && rc != MX_ENO_SUCH_ROOM)
        mx_warn("event=wal_state_ignored error=\"%s\" note=\"every snapshot header is read instead; "
                "the file is written again\"",
                why);
    if (rc)
        memset(&s->state, 0, sizeof(s->state));
    return 0;
}

/* ---- the LSN rule: the next LSN is above every LSN on disk ---- */

/* The highest LSN a snapshot covers, at or above wal_next (0 when none is).
 * Every snapshot's header is peeked (no CRC: one small read per file); one
 * whose LSN is at or above the WAL's next LSN is read and verified in full
 * before it counts, so a damaged header cannot move the LSNs (a damaged
 * snapshot is reported when its room is loaded, as before). */
static int snapshot_floor(struct mx_walstore *s, mx_map *snaps, uint64_t wal_next, uint64_t *floor,
                          char *which, size_t whichlen, char *err, size_t errlen)
{
    size_t it = 0, len;
    const char *id;
    void *v;
    *floor = 0;
    while (mx_map_next(snaps, &it, &id, &len, &v)) {
        char name[MX_ROOM_ID_MAX + 8], why[300];
        snprintf(name, sizeof(name), "%.*s.snap", (int)len, id);
        uint8_t p[MX_SNAPSHOT_LSN_BYTES];
        int rc = mx_atomic_peek(s->snapdir, name, MX_SNAPSHOT_MAGIC, p, sizeof(p), why, sizeof(why));
        uint64_t lsn = rc ? 0 : mx_snapshot_peek_lsn(p);
        if (!rc && lsn >= wal_next && lsn > *floor)
            rc = snapshot_lsn(s, id, len, &lsn); /* verify it before trusting it */
        if (rc == MX_EUNAVAILABLE || rc == MX_ENOMEM) {
            snprintf(err, errlen, "%s/%s: cannot be read now (out of descriptors or memory); start again",
                     s->snapdir, name);
            return -1;
        }
        if (rc || lsn < wal_next || lsn <= *floor)
            continue; /* damaged (its room's load says so), or below the WAL's end */
        *floor = lsn;
        snprintf(which, whichlen, "%s/%s", s->snapdir, name);
    }
    return 0;
}

/* The WAL ends below an LSN a snapshot covers: records are missing from it
 * (segments moved away, as the corruption procedure says, or lost).
 * Continuing at the WAL's end would hand out LSNs that snapshot already
 * covers, and the next recovery would skip those records as covered: acked
 * actions lost without an error. Continuing above the snapshot would leave
 * a hole in the LSNs that the next start cannot tell from a missing
 * segment. So everything the remaining segments hold goes into snapshots
 * covering LSN floor, then the segments are deleted, and the log starts
 * again, contiguous, at floor + 1. Refused when a room in the remaining
 * segments cannot be rebuilt: its records would be lost. */
static int fold_wal(struct mx_walstore *s, uint64_t wal_next, uint64_t floor, const char *which,
                    char *err, size_t errlen)
{
    mx_warn("event=wal_behind_snapshots wal_next_lsn=%llu snapshot_lsn=%llu file=%s "
            "note=\"records are missing from the WAL (segments moved away?); the rest of the WAL "
            "is folded into snapshots and LSNs continue above %llu\"",
            (unsigned long long)wal_next, (unsigned long long)floor, which,
            (unsigned long long)floor);
    uint64_t rooms = s->pending_rooms;
    s->fold_lsn = floor;
    int k;
    while ((k = mx_recovery_background(s, 1000000)) == 1)
        ;
    if (k == 0 && s->st.rooms_unrecoverable) {
        snprintf(err, errlen,
                 "the WAL ends at LSN %llu but %s covers LSN %llu, so records are missing from the "
                 "WAL; %llu room(s) in the remaining segments cannot be rebuilt (see "
                 "event=room_unrecoverable), so they cannot be moved into snapshots, and starting "
                 "would lose their records or reuse LSNs a snapshot covers (later acks lost). Restore "
                 "the missing segments (LSN %llu and up) from a backup, or, accepting the loss of "
                 "those rooms' records, move the remaining wal-*.log files out of %s as well",
                 (unsigned long long)wal_next - 1, which, (unsigned long long)floor,
                 (unsigned long long)s->st.rooms_unrecoverable, (unsigned long long)wal_next,
                 s->waldir);
        return -1;
    }
    if (k != 0) {
        snprintf(err, errlen,
                 "the WAL ends at LSN %llu but %s covers LSN %llu; moving the remaining WAL into "
                 "snapshots failed (disk full or out of descriptors, see above): free space and "
                 "start again",
                 (unsigned long long)wal_next - 1, which, (unsigned long long)floor);
        return -1;
    }
    if (mx_wal_remove_all(s->waldir, err, errlen))
        return -1;
    mx_warn("event=wal_folded rooms_snapshotted=%llu next_lsn=%llu note=\"the remaining WAL is in "
            "snapshots; its segments were deleted\"",
            (unsigned long long)rooms, (unsigned long long)floor + 1);
    return 0;
}

int mx_recovery_start(struct mx_walstore *s, uint64_t *next_lsn, struct mx_recovery_counts *counts,
                      char *err, size_t errlen)
{
    mx_wal_reader *rd = NULL;
    mx_map *snaps = mx_map_new();
    s->recovery_start_us = mx_now_us();
    s->pending = mx_map_new();
    struct scan sc = {.s = s, .snaps = snaps, .err = err, .errlen = errlen};
    int rc = -1;
    if (!snaps || !s->pending) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (list_snapshots(s, snaps, err, errlen) || read_state(s, err, errlen) ||
        mx_wal_reader_open(&rd, s->waldir, err, errlen))
        goto out;
    mx_wal_reader_keep_maps(rd);
    if (s->state_known && (s->state.flags & MX_WAL_STATE_END_ZEROS))
        mx_wal_reader_require_end_zeros(rd);
    if (index_wal(&sc, rd))
        goto out;
    drop_empty_entries(s);
    if (cut_torn_tail(rd, err, errlen))
        goto out;
    /* the records just read may still be only in the page cache (a crash
     * of a daemon running fsync no/everysec): make them durable before
     * snapshots or new records build on them */
    if (mx_wal_reader_sync(rd, err, errlen))
        goto out;
    uint64_t next = mx_wal_reader_next_lsn(rd), floor;
    char which[2400] = "";
    if (s->state_known && s->state.snap_max < next) {
        floor = 0; /* STATE: no snapshot covers an LSN the WAL does not reach */
    } else {
        s->floor_scanned = 1;
        if (snapshot_floor(s, snaps, next, &floor, which, sizeof(which), err, errlen))
            goto out;
    }
    if (floor == UINT64_MAX) {
        snprintf(err, errlen, "%s covers LSN %llu, the last there can be: no LSN is left", which,
                 (unsigned long long)floor);
        goto out;
    }
    mx_wal_reader *kept = rd;
    rd = NULL;
    if (keep_index(s, kept, err, errlen))
        goto out;
    if (floor >= next) {
        if (fold_wal(s, next, floor, which, err, errlen))
            goto out;
        next = floor + 1;
    }
    *next_lsn = next;
    counts->records = sc.records;
    counts->deleted = sc.deleted;
    rc = 0;
out:
    if (rd)
        mx_wal_reader_close(rd);
    if (snaps)
        mx_map_free(snaps, NULL);
    return rc;
}
