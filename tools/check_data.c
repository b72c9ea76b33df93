/* check_data.c - `movexctl check-data DIR`: an offline, read-only check of
 * a movexd data directory (docs/STORAGE.md has the formats).
 *
 * It reads what the daemon's recovery reads, with the daemon's own readers:
 * every snapshot through mx_atomic_read + mx_snapshot_decode (frame CRC, then
 * the state's digest against the stored checksum and the log's continuity),
 * every WAL record through the verifying WAL reader (CRC, framing, torn tail
 * versus corruption in the middle). On top of that it follows each room's
 * checksum chain across the records: a room's first logged action after
 * its snapshot (or its create record) must continue that seq and checksum,
 * and each action's prev must be the checksum logged before it.
 *
 * It never writes: no LOCK is taken, a torn tail is reported and left for
 * the daemon to cut, damaged snapshots are not moved aside. So it is safe
 * on a directory a running daemon uses (the answer is then a moment's
 * picture, and the tail may look torn while a write is in flight).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "movexd/codec.h"
#include "movexd/config.h"
#include "movexd/digest.h"
#include "movexd/map.h"
#include "movexd/proto.h"
#include "movexd/room.h"
#include "movexd/snapshot.h"
#include "movexd/wal.h"
#include "movexctl.h"

/* WAL record types, as storage_wal.c writes them (docs/STORAGE.md). */
enum { REC_CREATE = 1, REC_ACTION = 2, REC_REJECT = 3, REC_DELETE = 4 };

struct room_info {
    int has_snap, snap_ok, linked, deleted, live;
    uint64_t snap_seq, snap_lsn, seq, records;
    uint8_t snap_sum[MX_DIGEST_LEN], sum[MX_DIGEST_LEN];
    size_t idlen;
    char id[];
};

struct check {
    mx_map *rooms;
    struct room_info **all;
    size_t n, cap;
    unsigned long damage;
};

static void emit(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (s)
        puts(s);
    free(s);
    json_decref(j);
}

static void damage(struct check *ck, const char *room, const char *what)
{
    ck->damage++;
    json_t *j = json_pack("{s:s}", "damage", what);
    if (room)
        json_object_set_new(j, "room", json_string(room));
    emit(j);
}

static struct room_info *room_get(struct check *ck, const char *id, size_t len)
{
    struct room_info *ri = mx_map_get(ck->rooms, id, len);
    if (ri)
        return ri;
    if (ck->n == ck->cap) {
        size_t ncap = ck->cap ? ck->cap * 2 : 64;
        struct room_info **a = realloc(ck->all, ncap * sizeof(*a));
        if (!a)
            return NULL;
        ck->all = a;
        ck->cap = ncap;
    }
    ri = calloc(1, sizeof(*ri) + len + 1);
    if (!ri)
        return NULL;
    memcpy(ri->id, id, len);
    ri->idlen = len;
    if (mx_map_put(ck->rooms, ri->id, len, ri)) {
        free(ri);
        return NULL;
    }
    ck->all[ck->n++] = ri;
    return ri;
}

static void check_snapshots(struct check *ck, const char *snapdir, const struct mx_config *cfg)
{
    DIR *dh = opendir(snapdir);
    if (!dh)
        return; /* no snapshots yet */
    struct dirent *de;
    while ((de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        if (l > 9 && !strcmp(de->d_name + l - 9, ".damaged")) {
            char what[600];
            snprintf(what, sizeof what, "%s: a snapshot the daemon set aside as damaged",
                     de->d_name);
            json_t *j = json_pack("{s:s}", "note", what);
            emit(j);
            continue;
        }
        if (l <= 5 || strcmp(de->d_name + l - 5, ".snap"))
            continue;
        struct room_info *ri = room_get(ck, de->d_name, l - 5);
        if (!ri) {
            damage(ck, NULL, "out of memory");
            break;
        }
        ri->has_snap = 1;
        void *p = NULL;
        size_t len = 0;
        char err[600];
        int rc = mx_atomic_read(snapdir, de->d_name, MX_SNAPSHOT_MAGIC, &p, &len, err, sizeof err);
        struct mx_room *r = NULL;
        if (!rc && mx_snapshot_decode(p, len, cfg, &r, &ri->snap_lsn, err, sizeof err))
            rc = -1;
        free(p);
        if (rc) {
            damage(ck, ri->id, err);
            continue;
        }
        ri->snap_ok = ri->live = ri->linked = 1;
        ri->snap_seq = ri->seq = r->seq;
        memcpy(ri->snap_sum, r->checksum, MX_DIGEST_LEN);
        memcpy(ri->sum, r->checksum, MX_DIGEST_LEN);
        mx_room_free(r);
    }
    closedir(dh);
}

/* One WAL record. Returns 0, or -1 when the record itself cannot be read
 * (reported as damage; the scan goes on with the next record). */
static int check_record(struct check *ck, const uint8_t *p, size_t plen, uint64_t lsn)
{
    char what[700];
    mx_cursor c = mx_cursor_of(p, plen);
    uint8_t type = mx_get_u8(&c);
    size_t idlen;
    const char *id = mx_get_bytes(&c, &idlen);
    if (c.bad || !mx_proto_room_type_len(id, idlen) || type < REC_CREATE || type > REC_DELETE) {
        snprintf(what, sizeof what, "WAL record %llu: bad header", (unsigned long long)lsn);
        damage(ck, NULL, what);
        return -1;
    }
    struct room_info *ri = room_get(ck, id, idlen);
    if (!ri) {
        damage(ck, NULL, "out of memory");
        return -1;
    }
    if (ri->has_snap && ri->snap_ok && lsn <= ri->snap_lsn)
        return 0; /* covered by the snapshot */
    ri->records++;
    if (type == REC_DELETE) {
        ri->live = ri->linked = 0;
        ri->deleted = 1;
        ri->has_snap = 0; /* the daemon removes it after the delete */
        return 0;
    }
    if (type == REC_CREATE) {
        uint32_t n = mx_get_u32(&c);
        const unsigned char *text = mx_take(&c, n);
        json_error_t jerr;
        json_t *state = text ? json_loadb((const char *)text, n,
                                          JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr)
                             : NULL;
        if (!state || mx_digest_jansson(state, ri->sum)) {
            json_decref(state);
            snprintf(what, sizeof what, "WAL record %llu: create with an unreadable state",
                     (unsigned long long)lsn);
            damage(ck, ri->id, what);
            ri->live = ri->linked = 0;
            return -1;
        }
        json_decref(state);
        ri->seq = 0;
        ri->live = ri->linked = 1;
        ri->deleted = 0;
        return 0;
    }
    if (type == REC_REJECT)
        return 0; /* changes no state; only the exactly-once memory */
    uint64_t seq = mx_get_u64(&c);
    uint8_t prev[MX_DIGEST_LEN], sum[MX_DIGEST_LEN];
    mx_get_raw(&c, prev, MX_DIGEST_LEN);
    mx_get_raw(&c, sum, MX_DIGEST_LEN);
    if (c.bad) {
        snprintf(what, sizeof what, "WAL record %llu: truncated action", (unsigned long long)lsn);
        damage(ck, ri->id, what);
        return -1;
    }
    if (!ri->linked) {
        snprintf(what, sizeof what,
                 "WAL record %llu: action seq %llu with neither a create record nor a snapshot "
                 "before it",
                 (unsigned long long)lsn, (unsigned long long)seq);
        damage(ck, ri->id, what);
    } else if (seq != ri->seq + 1 || memcmp(prev, ri->sum, MX_DIGEST_LEN)) {
        snprintf(what, sizeof what,
                 "WAL record %llu: action seq %llu does not continue seq %llu (%s)",
                 (unsigned long long)lsn, (unsigned long long)seq, (unsigned long long)ri->seq,
                 seq != ri->seq + 1 ? "seq gap" : "prev checksum differs: broken chain");
        damage(ck, ri->id, what);
    }
    ri->seq = seq;
    memcpy(ri->sum, sum, MX_DIGEST_LEN);
    ri->linked = ri->live = 1;
    return 0;
}

static int by_id(const void *a, const void *b)
{
    const struct room_info *x = *(struct room_info *const *)a, *y = *(struct room_info *const *)b;
    return strcmp(x->id, y->id);
}

int mx_ctl_check_data(const char *dir)
{
    char waldir[1100], snapdir[1100];
    struct stat st;
    snprintf(waldir, sizeof waldir, "%s/wal", dir);
    snprintf(snapdir, sizeof snapdir, "%s/rooms", dir);
    if (stat(dir, &st) || !S_ISDIR(st.st_mode) || (stat(waldir, &st) && stat(snapdir, &st))) {
        fprintf(stderr, "movexctl: %s is not a movexd data directory (no wal/ or rooms/)\n", dir);
        return 2;
    }
    struct mx_config cfg;
    mx_config_defaults(&cfg); /* room-type settings do not matter for decoding */
    struct check ck = {.rooms = mx_map_new()};
    if (!ck.rooms) {
        fprintf(stderr, "movexctl: out of memory\n");
        return 2;
    }
    check_snapshots(&ck, snapdir, &cfg);

    mx_wal_reader *rd = NULL;
    char err[700];
    uint64_t records = 0;
    const char *torn_file = NULL;
    uint64_t torn_off = 0;
    int torn = 0;
    if (mx_wal_reader_open(&rd, waldir, err, sizeof err)) {
        damage(&ck, NULL, err);
    } else {
        /* the daemon's rule for a cut-short last segment (wal/STATE) */
        struct mx_wal_state ws;
        if (mx_wal_state_read(waldir, &ws, err, sizeof err) == 0 && (ws.flags & MX_WAL_STATE_END_ZEROS))
            mx_wal_reader_require_end_zeros(rd);
        const void *p;
        size_t len;
        uint64_t lsn;
        int r;
        while ((r = mx_wal_reader_next(rd, &p, &len, &lsn, err, sizeof err)) == 1) {
            records++;
            check_record(&ck, p, len, lsn);
        }
        if (r < 0)
            damage(&ck, NULL, err);
        else if ((torn = mx_wal_reader_torn(rd, &torn_file, &torn_off))) {
            char what[1300];
            snprintf(what, sizeof what,
                     "%s: offset %llu: torn last record (a write cut short by a crash; the "
                     "daemon cuts it off at start, nothing acknowledged is lost)",
                     torn_file, (unsigned long long)torn_off);
            emit(json_pack("{s:s}", "note", what));
        }
    }

    if (ck.n) /* qsort(NULL, 0, ...) is undefined */
        qsort(ck.all, ck.n, sizeof(*ck.all), by_id);
    size_t live = 0;
    for (size_t i = 0; i < ck.n; i++) {
        struct room_info *ri = ck.all[i];
        if (!ri->live)
            continue;
        live++;
        char hex[MX_CHECKSUM_HEX];
        mx_digest_hex(ri->sum, hex);
        json_t *j = json_pack("{s:s,s:I,s:s,s:I}", "room", ri->id, "seq", (json_int_t)ri->seq,
                              "checksum", hex, "wal_records", (json_int_t)ri->records);
        if (ri->has_snap && ri->snap_ok)
            json_object_set_new(j, "snapshot_seq", json_integer((json_int_t)ri->snap_seq));
        emit(j);
        free(ri);
        ck.all[i] = NULL;
    }
    for (size_t i = 0; i < ck.n; i++)
        free(ck.all[i]);
    free(ck.all);
    mx_map_free(ck.rooms, NULL);
    if (rd)
        mx_wal_reader_close(rd);
    mx_config_free(&cfg);
    emit(json_pack("{s:I,s:I,s:I,s:b}", "rooms", (json_int_t)live, "wal_records",
                   (json_int_t)records, "damage", (json_int_t)ck.damage, "torn_tail", torn));
    return ck.damage ? 1 : 0;
}
