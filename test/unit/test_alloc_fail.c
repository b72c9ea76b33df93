/* Allocation-failure tests (SQLite's malloc tests are the model): every
 * script of the engine fuzz corpus (test/fuzz/corpus/engine, format in
 * test/fuzz/fuzz_engine.c) is run in-process on a fresh engine with memory
 * storage, once to count the allocations it makes, then again with the
 * N-th allocation failing (alloc.h; the project's own allocations and
 * jansson's), for a sample of N (every N with MX_ALLOC_FAIL_FULL=1, which
 * `make alloc-fail-full` sets). Each run must:
 *   - not crash, and leak nothing (ASan/LeakSanitizer: the variant that has
 *     MX_FAULT_INJECTION is the asan one);
 *   - deliver only whole JSON objects with a "type";
 *   - when a request is answered `no_memory`, have changed nothing: the
 *     room's seq and checksum are what they were before it, and sending
 *     the same request again (memory is back) is not refused no_memory;
 *   - end with every room consistent: its checksum is the digest of its
 *     state computed from scratch, its cached size is its serialization,
 *     and its log ends at the head.
 * Counting is enabled only inside calls into the engine, so the harness's
 * own allocations (parsing replies, the checks) never fail.
 * MX_FUZZ_CORPUS overrides the corpus directory. Built without
 * MX_FAULT_INJECTION only the check that src/ allocates through the seam
 * runs. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MX_FAULT_INJECTION

#include <jansson.h>

#include "movexd/alloc.h"
#include "movexd/config.h"
#include "movexd/digest.h"
#include "movexd/engine.h"
#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/oplog.h"
#include "movexd/room.h"
#include "movexd/storage.h"
#include "movexd/storage_wal.h"

#include <unistd.h>

#include "../fuzz/engine_script.h"

#define NCONN 3
#define NROOMS 64

/* A small-bounds conf like the fuzz harness's, so limit paths are reached. */
static const char conf_text[] = "max_rooms_per_conn 4\nmax_depth 12\nmax_queue_bytes 4k\nevict_idle_ms 0\n"
                                "room default {\n    history 4\n    max_state_bytes 2k\n"
                                "    create_on_subscribe yes\n    max_ops 8\n    max_presence_bytes 1k\n}\n"
                                "room h0 {\n    history 0\n}\nroom ns {\n    create_on_subscribe no\n}\n"
                                "room big {\n    history 64\n    max_state_bytes 0\n    max_ops 0\n}\n";

struct fake {
    struct mx_conn conn;
    int closed;
    int nomem;         /* a no_memory error arrived for the request being checked */
    uint64_t watch_id; /* that request's id */
    char got[48];      /* "type/code" of its reply ("" when none came) */
    char gotmsg[160];  /* and its message */
};

/* The replies of the run without a failure, per step, to compare the
 * faulted run's reply with at the step where the allocation failed. */
#define NSTEPS 4096
static char ref[NSTEPS][48];

struct run {
    mx_engine *e;
    struct fake conns[NCONN];
    char rooms[NROOMS][MX_ROOM_ID_MAX + 1];
    size_t nrooms;
    unsigned nomem_checked; /* no_memory replies whose room was checked unchanged */
    size_t nstep;           /* watched requests so far */
    int reference;          /* the run without a failure: fill ref[] */
};

static void fake_deliver(struct mx_conn *c, mx_frame *f)
{
    struct fake *fk = c->edge;
    mx_alloc_fault_enable(0); /* the harness's own work */
    json_error_t jerr;
    json_t *j = json_loadb(mx_frame_data(f), f->len, JSON_DECODE_INT_AS_REAL, &jerr);
    ck_assert_msg(j && json_is_object(j), "delivered frame is not a JSON object: %.*s", (int)f->len,
                  mx_frame_data(f));
    const char *type = json_string_value(json_object_get(j, "type"));
    ck_assert_msg(type != NULL, "frame without a type: %.*s", (int)f->len, mx_frame_data(f));
    const char *code = json_string_value(json_object_get(j, "code"));
    const json_t *id = json_object_get(j, "id");
    if (!strcmp(type, "error") && code && !strcmp(code, "no_memory") && json_is_number(id) &&
        (uint64_t)json_number_value(id) == fk->watch_id)
        fk->nomem = 1;
    if (json_is_number(id) && (uint64_t)json_number_value(id) == fk->watch_id && !fk->got[0])
    {
        snprintf(fk->got, sizeof fk->got, "%s/%s", type, code ? code : "");
        const char *m = json_string_value(json_object_get(j, "message"));
        snprintf(fk->gotmsg, sizeof fk->gotmsg, "%s", m ? m : "");
    }
    json_decref(j);
    mx_alloc_fault_enable(1);
}

static void fake_close(struct mx_conn *c, int code, const char *reason)
{
    (void)code;
    (void)reason;
    ((struct fake *)c->edge)->closed = 1;
}

static void fake_open(mx_engine *e, struct fake *fk)
{
    memset(fk, 0, sizeof *fk);
    fk->conn.deliver = fake_deliver;
    fk->conn.close = fake_close;
    fk->conn.edge = fk;
    mx_engine_conn_open(e, &fk->conn);
}

static void remember_room(struct run *r, const char *id, size_t len)
{
    if (!len || len > MX_ROOM_ID_MAX || memchr(id, '\0', len) || r->nrooms == NROOMS)
        return;
    for (size_t i = 0; i < r->nrooms; i++)
        if (strlen(r->rooms[i]) == len && !memcmp(r->rooms[i], id, len))
            return;
    memcpy(r->rooms[r->nrooms], id, len);
    r->rooms[r->nrooms++][len] = '\0';
}

static void check_room(const struct mx_room *rm)
{
    uint8_t d[MX_DIGEST_LEN];
    ck_assert_int_eq(mx_digest_of(rm->state, d), 0);
    ck_assert_msg(!memcmp(d, rm->checksum, MX_DIGEST_LEN), "room %s: checksum is not D(state)", rm->id);
    json_t *j = mx_json_to_jansson(rm->state);
    ck_assert_ptr_nonnull(j);
    uint8_t d2[MX_DIGEST_LEN];
    ck_assert_int_eq(mx_digest_jansson(j, d2), 0);
    ck_assert_msg(!memcmp(d2, rm->checksum, MX_DIGEST_LEN), "room %s: cached digests are stale", rm->id);
    json_decref(j);
    mx_buf b;
    mx_buf_init(&b, 0);
    ck_assert_int_eq(mx_json_dump(rm->state, &b), 0);
    ck_assert_msg(b.len == rm->state->jsize, "room %s: jsize %zu, dump %zu", rm->id, rm->state->jsize, b.len);
    mx_buf_free(&b);
    if (mx_oplog_count(rm->log)) {
        ck_assert_uint_eq(mx_oplog_last_seq(rm->log), rm->seq);
        ck_assert(!memcmp(mx_oplog_get(rm->log, rm->seq)->checksum, rm->checksum, MX_DIGEST_LEN));
    }
}

/* One request line on fk, committed unless batching; with `watch`, a
 * no_memory answer to it is checked to have changed nothing, and the same
 * request is sent again and must not be refused no_memory. */
static void step(struct run *r, struct fake *fk, const char *line, size_t len, int batch, int watch)
{
    json_t *j = json_loadb(line, len, JSON_DECODE_INT_AS_REAL, NULL);
    const json_t *room = json_object_get(j, "room");
    const json_t *id = json_object_get(j, "id");
    struct mx_room *rm = NULL;
    uint64_t seq = 0;
    uint8_t sum[MX_DIGEST_LEN] = {0};
    if (json_is_string(room)) {
        remember_room(r, json_string_value(room), json_string_length(room));
        rm = mx_engine_room(r->e, json_string_value(room), json_string_length(room));
        if (rm) {
            seq = rm->seq;
            memcpy(sum, rm->checksum, MX_DIGEST_LEN);
        }
    }
    watch = watch && !batch && json_is_number(id) && json_number_value(id) >= 0;
    fk->nomem = 0;
    fk->got[0] = '\0';
    fk->watch_id = watch ? (uint64_t)json_number_value(id) : UINT64_MAX;
    size_t stepno = r->nstep++;
    int fired_before = mx_alloc_fault_fired();
    mx_alloc_fault_enable(1);
    mx_engine_handle(r->e, &fk->conn, line, len);
    int rc = batch ? 0 : mx_engine_commit(r->e);
    mx_alloc_fault_enable(0);
    ck_assert_msg(rc == 0, "commit failed (%s) with memory storage", mx_err_code(rc));
    if (r->reference && stepno < NSTEPS)
        memcpy(ref[stepno], fk->got, sizeof fk->got);
    else if (watch && stepno < NSTEPS && !fired_before && mx_alloc_fault_fired() && !fk->closed)
        /* the request during which memory ran out gets its normal answer
         * or no_memory (or its connection is closed, 1011), never another
         * error that would blame the client */
        ck_assert_msg(fk->nomem || !strcmp(fk->got, ref[stepno]),
                      "with allocation %llu failing, the reply is \"%s\" (%s) instead of \"%s\" or no_memory: %.*s",
                      (unsigned long long)mx_alloc_fault_count(), fk->got, fk->gotmsg, ref[stepno], (int)len, line);
    if (watch && fk->nomem && !fired_before && mx_alloc_fault_fired()) {
        /* the room, if it existed, is where it was */
        struct mx_room *now = mx_engine_room(r->e, json_string_value(room), json_string_length(room));
        if (rm) {
            ck_assert_msg(now == rm, "room replaced by a failed request: %.*s", (int)len, line);
            ck_assert_msg(rm->seq == seq && !memcmp(rm->checksum, sum, MX_DIGEST_LEN),
                          "a request answered no_memory changed room %s (seq %llu -> %llu): %.*s", rm->id,
                          (unsigned long long)seq, (unsigned long long)rm->seq, (int)len, line);
        }
        r->nomem_checked++;
        /* memory is back: the same request is served */
        fk->nomem = 0;
        if (!fk->closed) {
            mx_alloc_fault_enable(1);
            mx_engine_handle(r->e, &fk->conn, line, len);
            rc = mx_engine_commit(r->e);
            mx_alloc_fault_enable(0);
            ck_assert_int_eq(rc, 0);
            ck_assert_msg(!fk->nomem, "the retry was refused no_memory too: %.*s", (int)len, line);
        }
    }
    json_decref(j);
}

/* "@sN ROOM" / "@yN ROOM": subscribe or sync since seq N with the checksum
 * the room had there (zeros when unknown), as the fuzz harness does. */
static void since_line(struct run *r, struct fake *fk, const char *arg, size_t alen, int sub, uint64_t id,
                       int batch, int watch)
{
    size_t i = 0;
    uint64_t seq = 0;
    while (i < alen && arg[i] >= '0' && arg[i] <= '9' && i < 15)
        seq = seq * 10 + (uint64_t)(arg[i++] - '0');
    while (i < alen && arg[i] == ' ')
        i++;
    size_t rlen = alen - i < MX_ROOM_ID_MAX ? alen - i : MX_ROOM_ID_MAX;
    char hex[MX_CHECKSUM_HEX];
    mx_script_since_checksum(r->e, arg + i, rlen, seq, hex);
    json_t *m = json_pack("{s:s, s:I, s:s%, s:{s:I, s:s}}", "type", sub ? "subscribe" : "sync", "id",
                          (json_int_t)id, "room", arg + i, rlen, "since", "seq", (json_int_t)seq, "checksum", hex);
    if (!m)
        return;
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (text)
        step(r, fk, text, strlen(text), batch, watch);
    free(text);
}

/* Run one script with allocation number fail_at failing (0: none).
 * Returns the number of allocations the engine made. */
static uint64_t run_script(const struct mx_config *cfg, const char *data, size_t size, uint64_t fail_at,
                           unsigned *nomem_checked)
{
    static struct run r;
    memset(&r, 0, sizeof r);
    r.reference = fail_at == 0;
    r.e = mx_engine_new(cfg, mx_storage_mem(), NULL);
    ck_assert_ptr_nonnull(r.e);
    for (int i = 0; i < NCONN; i++)
        fake_open(r.e, &r.conns[i]);
    mx_alloc_fault_reset(fail_at);
    struct fake *cur = &r.conns[0];
    int batch = 0;
    uint64_t next_id = 1000000;
    const char *p = data, *end = data + size;
    struct mx_script_step st;
    while (mx_script_next(&p, end, cur->closed, &st)) {
        const char *arg = st.arg;
        size_t alen = st.alen;
        if (st.cmd == MX_SCRIPT_REQUEST) {
            step(&r, cur, st.line, st.len, batch, 1);
        } else if (st.cmd != MX_SCRIPT_DROPPED) {
            int rc = 0;
            mx_alloc_fault_enable(1);
            switch (st.cmd) {
            case '0': case '1': case '2': cur = &r.conns[st.cmd - '0']; break;
            case 'b': batch = !batch; break;
            case 'c': rc = mx_engine_commit(r.e); break;
            case 't': rc = mx_engine_tick(r.e); break;
            case 'x':
                mx_engine_conn_closed(r.e, &cur->conn);
                fake_open(r.e, cur);
                break;
            case 'd':
                mx_engine_delete_room(r.e, arg, alen);
                break;
            case 'e': mx_engine_send_error(r.e, &cur->conn, MX_EBAD_JSON, "binary frame"); break;
            case 'r': mx_engine_refuse(r.e, &cur->conn, arg, alen, MX_ERATE_LIMITED, "rate limited"); break;
            case 'h': mx_engine_handle(r.e, &cur->conn, "{\"type\":\"hello\"}", 16); break;
            default: break;
            }
            mx_alloc_fault_enable(0);
            ck_assert_int_eq(rc, 0);
            if (st.cmd == 's' || st.cmd == 'y')
                since_line(&r, cur, arg, alen, st.cmd == 's', next_id++, batch, 1);
            if (!batch) {
                mx_alloc_fault_enable(1);
                rc = mx_engine_commit(r.e);
                mx_alloc_fault_enable(0);
                ck_assert_int_eq(rc, 0);
            }
        }
        for (int i = 0; i < NCONN; i++) {
            if (r.conns[i].closed) {
                mx_alloc_fault_enable(1);
                mx_engine_conn_closed(r.e, &r.conns[i].conn);
                mx_alloc_fault_enable(0);
                fake_open(r.e, &r.conns[i]);
            }
        }
    }
    mx_alloc_fault_enable(1);
    int rc = mx_engine_commit(r.e);
    mx_alloc_fault_enable(0);
    ck_assert_int_eq(rc, 0);
    uint64_t count = mx_alloc_fault_count();
    for (size_t i = 0; i < r.nrooms; i++) {
        struct mx_room *rm = mx_engine_room(r.e, r.rooms[i], strlen(r.rooms[i]));
        if (rm)
            check_room(rm);
    }
    for (int i = 0; i < NCONN; i++)
        mx_engine_conn_closed(r.e, &r.conns[i].conn);
    mx_engine_close(r.e);
    mx_engine_free(r.e);
    *nomem_checked += r.nomem_checked;
    return count;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    return buf;
}

/* Paths the corpus reaches little: presence, dep arrays, a room without
 * history, unsubscribe and delete with subscribers, catch-up after them. */
static const char extra_script[] =
    "{\"type\":\"hello\",\"client\":\"p1\"}\n"
    "@1\n{\"type\":\"hello\",\"client\":\"p2\"}\n"
    "{\"type\":\"subscribe\",\"id\":1,\"room\":\"t:p\"}\n"
    "@0\n{\"type\":\"subscribe\",\"id\":2,\"room\":\"t:p\"}\n"
    "{\"type\":\"presence\",\"id\":3,\"room\":\"t:p\",\"state\":{\"name\":\"Ann\",\"at\":[1,2]}}\n"
    "{\"type\":\"action\",\"id\":4,\"room\":\"t:p\",\"n\":1,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"add\",\"path\":\"/l\",\"value\":[]}]}}\n"
    "{\"type\":\"action\",\"id\":5,\"room\":\"t:p\",\"n\":2,\"dep\":[1],\"action\":{\"type\":\"patch\","
    "\"payload\":[{\"op\":\"add\",\"path\":\"/l/-\",\"value\":\"x\"}]}}\n"
    "{\"type\":\"action\",\"id\":6,\"room\":\"t:p\",\"n\":3,\"dep\":[1,2],\"action\":{\"type\":\"patch\","
    "\"payload\":[{\"op\":\"test\",\"path\":\"/l/0\",\"value\":\"y\"}]}}\n"
    "{\"type\":\"action\",\"id\":7,\"room\":\"t:p\",\"n\":4,\"dep\":[3,2],\"action\":{\"type\":\"patch\","
    "\"payload\":[]}}\n"
    "@b\n{\"type\":\"presence\",\"id\":8,\"room\":\"t:p\",\"state\":null}\n"
    "@1\n{\"type\":\"action\",\"id\":9,\"room\":\"t:p\",\"n\":1,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"copy\",\"from\":\"/l\",\"path\":\"/m\"}]}}\n"
    "@c\n@b\n@s1 t:p\n@y2 t:p\n"
    "{\"type\":\"create\",\"id\":10,\"room\":\"h0:x\",\"state\":{\"a\":{\"b\":[1,{\"c\":\"d\"}]}}}\n"
    "{\"type\":\"subscribe\",\"id\":11,\"room\":\"h0:x\"}\n"
    "{\"type\":\"action\",\"id\":12,\"room\":\"h0:x\",\"n\":1,\"action\":{\"type\":\"patch\",\"payload\":"
    "[{\"op\":\"move\",\"from\":\"/a/b\",\"path\":\"/z\"}]}}\n"
    "@0\n{\"type\":\"unsubscribe\",\"id\":13,\"room\":\"t:p\"}\n"
    "@dt:p\n@1\n{\"type\":\"get\",\"id\":14,\"room\":\"t:p\"}\n"
    "{\"type\":\"subscribe\",\"id\":15,\"room\":\"t:p\"}\n@x\n@t\n";

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* jansson 2.14 drops a byte of a string when the allocation growing its
 * buffer fails, and parses on; mx_json_loadb must never hand out such a
 * value: with any allocation failing it returns the exact value or NULL
 * with oom set (never a syntax error either). */
START_TEST(json_parse_never_returns_altered_text)
{
    static const char text[] = "{\"type\":\"subscribe\",\"id\":7,\"room\":\"t:a\",\"since\":{\"seq\":0,"
                               "\"checksum\":\"4ccbe3a80f8112da36171794db81f2d5\"},\"k\":[\"abcdefghijklmnop\"]}";
    json_set_alloc_funcs(mx_json_malloc, mx_block_free);
    json_error_t err;
    int oom = 0;
    json_t *want = mx_json_loadb(text, sizeof text - 1, 0, &err, &oom);
    ck_assert_ptr_nonnull(want);
    int failed = 0;
    for (uint64_t n = 1; n < 200; n++) {
        mx_alloc_fault_reset(n);
        mx_alloc_fault_enable(1);
        json_t *j = mx_json_loadb(text, sizeof text - 1, 0, &err, &oom);
        mx_alloc_fault_enable(0);
        if (!mx_alloc_fault_fired()) {
            json_decref(j);
            break;
        }
        failed++;
        ck_assert_msg(!j == !!oom, "allocation %llu failing: %s with oom=%d", (unsigned long long)n,
                      j ? "a value" : "no value", oom);
        ck_assert_msg(!j || json_equal(j, want), "allocation %llu failing altered the parsed value",
                      (unsigned long long)n);
        ck_assert_msg(j || oom, "allocation %llu failing was reported as bad input", (unsigned long long)n);
        json_decref(j);
    }
    ck_assert_int_gt(failed, 10);
    json_decref(want);
    json_set_alloc_funcs(malloc, free);
}
END_TEST

START_TEST(engine_corpus_every_allocation_can_fail)
{
    const char *dir = getenv("MX_FUZZ_CORPUS");
    if (!dir || !*dir)
        dir = "test/fuzz/corpus/engine";
    const char *full = getenv("MX_ALLOC_FAIL_FULL");
    int every = full && !strcmp(full, "1");
    struct mx_config cfg;
    char err[256];
    ck_assert_msg(mx_config_parse(&cfg, conf_text, "alloc_fail.conf", err, sizeof err) == 0, "%s", err);
    json_set_alloc_funcs(mx_json_malloc, mx_block_free);
    mx_log_set_level(MX_LOG_ERROR); /* failed allocations are logged; keep the output short */

    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open the corpus %s", dir);
    char *names[512];
    size_t nnames = 0;
    struct dirent *de;
    while ((de = readdir(d)) && nnames < 512)
        if (de->d_name[0] != '.')
            names[nnames++] = strdup(de->d_name);
    closedir(d);
    qsort(names, nnames, sizeof names[0], by_name);
    ck_assert_uint_gt(nnames, 0);

    uint64_t runs = 0, fired = 0;
    unsigned nomem_checked = 0;
    for (size_t k = 0; k < nnames; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        size_t len;
        char *data = slurp(path, &len);
        unsigned dummy = 0;
        uint64_t total = run_script(&cfg, data, len, 0, &dummy);
        /* make test: about 40 failure points per script, spread over the
         * whole run plus the first ones (set-up paths); full: every one */
        uint64_t stride = every || total <= 40 ? 1 : total / 40;
        for (uint64_t n = 1; n <= total + 1; n += (n <= 8 ? 1 : stride)) {
            run_script(&cfg, data, len, n, &nomem_checked);
            runs++;
            fired += mx_alloc_fault_fired();
        }
        free(data);
        free(names[k]);
    }
    {
        unsigned dummy = 0;
        uint64_t total = run_script(&cfg, extra_script, sizeof extra_script - 1, 0, &dummy);
        for (uint64_t n = 1; n <= total + 1; n++) { /* every one: it is short */
            run_script(&cfg, extra_script, sizeof extra_script - 1, n, &nomem_checked);
            runs++;
            fired += mx_alloc_fault_fired();
        }
    }
    json_set_alloc_funcs(malloc, free);
    mx_config_free(&cfg);
    fprintf(stderr, "alloc_fail: %zu scripts, %llu runs with a failing allocation (%llu fired), "
                    "%u no_memory replies checked%s\n",
            nnames, (unsigned long long)runs, (unsigned long long)fired, nomem_checked,
            every ? " (every allocation)" : " (sampled; make alloc-fail-full for all)");
    ck_assert_uint_gt(fired, 0);
}
END_TEST

/* ---- recovery and snapshots under memory pressure ----
 * A data directory with a snapshotted room (records after the snapshot,
 * a reject among them) and a room only in the WAL is opened with the N-th
 * allocation failing, for every N: start-up may fail, and a room's load
 * may answer unavailable, but running out of memory is never taken for
 * damage - no room is marked unrecoverable, no snapshot is ignored or set
 * aside - and with memory back every room loads with the seq and checksum
 * it had. (Before: the snapshot decoder and the replay reported a failed
 * allocation as a bad snapshot or record, and jansson could drop a byte of
 * a string and return success.) */
static void rec_send(mx_engine *e, struct fake *fk, const char *json)
{
    mx_engine_handle(e, &fk->conn, json, strlen(json));
    ck_assert_int_eq(mx_engine_commit(e), 0);
}

static void rec_fingerprint(struct mx_room *r, char *out, size_t n)
{
    char hex[MX_CHECKSUM_HEX];
    mx_digest_hex(r->checksum, hex);
    snprintf(out, n, "seq=%llu sum=%s", (unsigned long long)r->seq, hex);
}

static void free_room(void *r) { mx_room_free(r); }

/* Open the storage (faults as armed by the caller) and load each room.
 * Returns 1 when the storage opened; fps[i] gets each loaded room's
 * fingerprint ("" when its load failed), and every load failure must be
 * a transient one. */
static int rec_open_and_load(const struct mx_config *cfg, const char *const ids[], size_t nids,
                             char fps[][128], uint64_t *unrecoverable)
{
    const struct mx_storage *st = NULL;
    mx_map *rooms = NULL;
    char err[600];
    if (mx_storage_wal_open(cfg, &st, &rooms, err, sizeof err))
        return 0;
    for (size_t i = 0; i < nids; i++) {
        struct mx_room *r = NULL;
        int rc = st->load(st->ctx, ids[i], strlen(ids[i]), &r);
        fps[i][0] = '\0';
        if (rc == 0) {
            rec_fingerprint(r, fps[i], 128);
            mx_room_free(r);
        } else {
            ck_assert_msg(rc == MX_EUNAVAILABLE || rc == MX_ENOMEM,
                          "loading %s with allocation %llu failing: %s, not a transient error", ids[i],
                          (unsigned long long)mx_alloc_fault_count(), mx_err_code(rc));
        }
    }
    struct mx_storage_stats ss;
    memset(&ss, 0, sizeof ss);
    st->stats(st->ctx, &ss);
    *unrecoverable = ss.rooms_unrecoverable;
    st->close(st->ctx, NULL); /* like a crash: nothing written at close */
    mx_map_free(rooms, free_room);
    return 1;
}

START_TEST(recovery_out_of_memory_is_not_damage)
{
    char dir[] = "/tmp/mx-allocfail-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct mx_config cfg;
    char err[256];
    ck_assert_msg(mx_config_parse(&cfg, "snapshot_every 6\nroom default {\n    create_on_subscribe yes\n}\n",
                                  "alloc_fail.conf", err, sizeof err) == 0, "%s", err);
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", dir);
    mx_log_set_level(MX_LOG_ERROR);
    static const char *const ids[] = {"t:a", "t:b"};
    char want[2][128], got[2][128];
    {
        const struct mx_storage *st = NULL;
        mx_map *rooms = NULL;
        ck_assert_int_eq(mx_storage_wal_open(&cfg, &st, &rooms, err, sizeof err), 0);
        mx_engine *e = mx_engine_new(&cfg, st, rooms);
        ck_assert_ptr_nonnull(e);
        struct fake fk;
        fake_open(e, &fk);
        rec_send(e, &fk, "{\"type\":\"hello\",\"client\":\"c1\"}");
        rec_send(e, &fk, "{\"type\":\"create\",\"id\":1,\"room\":\"t:a\",\"state\":{\"s\":\"abcdefghijklmnopqrstuvwxyz\",\"l\":[]}}");
        rec_send(e, &fk, "{\"type\":\"subscribe\",\"id\":2,\"room\":\"t:a\"}");
        rec_send(e, &fk, "{\"type\":\"subscribe\",\"id\":3,\"room\":\"t:b\"}");
        char msg[300];
        for (int i = 1; i <= 9; i++) {
            snprintf(msg, sizeof msg,
                     "{\"type\":\"action\",\"id\":%d,\"room\":\"t:a\",\"n\":%d,\"action\":{\"type\":\"patch\","
                     "\"payload\":[{\"op\":\"add\",\"path\":\"/l/-\",\"value\":\"item number %d of the list\"}]}}",
                     10 + i, i, i);
            rec_send(e, &fk, msg);
        }
        rec_send(e, &fk, "{\"type\":\"action\",\"id\":30,\"room\":\"t:a\",\"n\":10,\"action\":{\"type\":\"patch\","
                         "\"payload\":[{\"op\":\"test\",\"path\":\"/s\",\"value\":\"no\"}]}}");
        rec_send(e, &fk, "{\"type\":\"action\",\"id\":31,\"room\":\"t:b\",\"n\":11,\"action\":{\"type\":\"patch\","
                         "\"payload\":[{\"op\":\"add\",\"path\":\"/k\",\"value\":{\"deep\":[\"text to parse\",1.5]}}]}}");
        for (size_t i = 0; i < 2; i++)
            rec_fingerprint(mx_engine_room(e, ids[i], strlen(ids[i])), want[i], sizeof want[i]);
        mx_engine_conn_closed(e, &fk.conn);
        st->close(st->ctx, NULL); /* a crash: t:a has a snapshot at seq 6 and records after it */
        mx_engine_free(e);
    }
    json_set_alloc_funcs(mx_json_malloc, free);
    uint64_t fired = 0, loads_refused = 0;
    for (uint64_t n = 1;; n++) {
        uint64_t unrec = 0;
        mx_alloc_fault_reset(n);
        mx_alloc_fault_enable(1);
        int opened = rec_open_and_load(&cfg, ids, 2, got, &unrec);
        mx_alloc_fault_enable(0);
        int hit = mx_alloc_fault_fired();
        ck_assert_msg(unrec == 0, "allocation %llu failing marked a room unrecoverable", (unsigned long long)n);
        for (size_t i = 0; opened && i < 2; i++) {
            ck_assert_msg(!got[i][0] || !strcmp(got[i], want[i]), "allocation %llu failing: %s loaded as %s, not %s",
                          (unsigned long long)n, ids[i], got[i], want[i]);
            loads_refused += !got[i][0];
        }
        /* memory back: everything is there, nothing was set aside */
        mx_alloc_fault_reset(0);
        ck_assert_int_eq(rec_open_and_load(&cfg, ids, 2, got, &unrec), 1);
        ck_assert_uint_eq(unrec, 0);
        for (size_t i = 0; i < 2; i++)
            ck_assert_msg(!strcmp(got[i], want[i]), "after allocation %llu failed: %s is %s, not %s",
                          (unsigned long long)n, ids[i], got[i], want[i]);
        char path[128];
        snprintf(path, sizeof path, "%s/rooms/t:a.snap.damaged", dir);
        ck_assert_msg(access(path, F_OK) != 0, "allocation %llu failing set the snapshot aside", (unsigned long long)n);
        if (!hit)
            break;
        fired++;
    }
    json_set_alloc_funcs(malloc, free);
    ck_assert_uint_gt(fired, 50);
    ck_assert_uint_gt(loads_refused, 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    mx_config_free(&cfg);
}
END_TEST
#endif

/* The seam only works if nothing goes around it: no src/ file but alloc.c
 * calls malloc, calloc, realloc or strdup itself (in any build). */
START_TEST(every_allocation_in_src_goes_through_the_seam)
{
    DIR *d = opendir("src");
    ck_assert_msg(d != NULL, "run from the repository root");
    struct dirent *de;
    char bad[2048] = "";
    while ((de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (nl < 3 || strcmp(de->d_name + nl - 2, ".c") || !strcmp(de->d_name, "alloc.c"))
            continue;
        char path[512];
        snprintf(path, sizeof path, "src/%s", de->d_name);
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        char line[4096];
        for (int ln = 1; fgets(line, sizeof line, f); ln++) {
            static const char *const fns[] = {"malloc(", "calloc(", "realloc(", "strdup("};
            for (size_t k = 0; k < 4; k++)
                for (const char *p = strstr(line, fns[k]); p; p = strstr(p + 1, fns[k])) {
                    char before = p > line ? p[-1] : ' ';
                    if ((before >= 'a' && before <= 'z') || (before >= 'A' && before <= 'Z') ||
                        (before >= '0' && before <= '9') || before == '_' || before == '.' || before == '>')
                        continue; /* mx_malloc(, a member, another name */
                    size_t used = strlen(bad);
                    snprintf(bad + used, sizeof bad - used, " %s:%d", path, ln);
                }
        }
        fclose(f);
    }
    closedir(d);
    ck_assert_msg(!bad[0], "raw allocations (use mx_malloc & co., include/movexd/alloc.h):%s", bad);
}
END_TEST

Suite *mx_suite_alloc_fail(void)
{
    Suite *s = suite_create("alloc_fail");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, every_allocation_in_src_goes_through_the_seam);
#ifdef MX_FAULT_INJECTION
    tcase_add_test(tc, json_parse_never_returns_altered_text);
    tcase_add_test(tc, engine_corpus_every_allocation_can_fail);
    tcase_add_test(tc, recovery_out_of_memory_is_not_damage);
#endif
    suite_add_tcase(s, tc);
    return s;
}
