/* Unit tests for cluster_journal_file.c, the cluster journal on disk: what
 * a node wrote comes back at the next open (batches field for field,
 * forgets, the epoch, the incarnation); a torn or damaged tail is ignored and never written
 * behind; old segments go once no batch needs them and the directory stays
 * bounded; another epoch's batches are not read back; one process per
 * directory; movexd -t's directory check. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "movexd/cluster.h"
#include "movexd/cluster_journal.h"
#include "movexd/cluster_journal_file.h"

static char dir[256];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/mx-jfile-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_tmp(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[600];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* The segment files, and the name of the newest one into last. */
static int segments(char *last, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int k = 0;
    if (last)
        last[0] = '\0';
    while (d && (e = readdir(d))) {
        if (!strstr(e->d_name, ".mxj"))
            continue;
        k++;
        if (last && strcmp(e->d_name, last) > 0)
            snprintf(last, n, "%s", e->d_name);
    }
    if (d)
        closedir(d);
    return k;
}

static struct mx_cluster_head H(uint64_t seq, uint64_t sub, const char *sum, const char *hash)
{
    struct mx_cluster_head h;
    memset(&h, 0, sizeof h);
    h.seq = seq;
    h.sub = sub;
    snprintf(h.sum, sizeof h.sum, "%s", sum);
    snprintf(h.hash, sizeof h.hash, "%s", hash);
    return h;
}

static struct mx_jfile *open_ok(struct mx_journal *j, char *epoch, size_t seg, size_t max)
{
    struct mx_jfile *f = NULL;
    char err[512];
    int rc = mx_jfile_open(dir, seg, max, j, epoch, 64, &f, err, sizeof err);
    ck_assert_msg(rc == 0, "open: %s", err);
    return f;
}

/* A new journal (batches kept at most, 1 MiB) with the directory read into it. */
static struct mx_jfile *open_new(struct mx_journal **j, char *epoch, size_t batches, size_t seg, size_t max)
{
    *j = mx_journal_new(batches, 1 << 20);
    return open_ok(*j, epoch, seg, max);
}

static void shut(struct mx_journal *j, struct mx_jfile *f)
{
    mx_jfile_close(f);
    mx_journal_free(j);
}

/* Batch k of a room: one applied action with deps and a body, one
 * recorded reject (no body). */
static void add(struct mx_journal *j, const char *room, uint64_t k)
{
    uint64_t deps[2] = { k, k + 1 };
    char body[32];
    snprintf(body, sizeof body, "[{\"k\":%llu}]", (unsigned long long)k);
    struct mx_cluster_action a[2] = {
        { "alice", k, deps, 2, 1, k - 1, 1, "SUMA", body, strlen(body) },
        { "bob", k + 100, NULL, 0, 0, k - 1, 0, "stale", NULL, 0 },
    };
    struct mx_cluster_head e = H(k - 1, 0, "S", "h0"), after = H(k, 1, "T", "hash-after");
    snprintf(e.inc, sizeof e.inc, "%s", "0123456789abcdef0123456789abcdef");
    snprintf(after.inc, sizeof after.inc, "%s", e.inc);
    ck_assert_int_eq(mx_journal_add(j, room, &e, &after, 64, 1000 + k, a, 2), 0);
}

static void check_batch(const struct mx_journal_batch *b, uint64_t k)
{
    char body[32];
    snprintf(body, sizeof body, "[{\"k\":%llu}]", (unsigned long long)k);
    ck_assert_uint_eq(b->expected.seq, k - 1);
    ck_assert_str_eq(b->expected.sum, "S");
    ck_assert_str_eq(b->expected.hash, "h0");
    ck_assert_uint_eq(b->after.seq, k);
    ck_assert_uint_eq(b->after.sub, 1);
    ck_assert_str_eq(b->after.hash, "hash-after");
    ck_assert_str_eq(b->expected.inc, "0123456789abcdef0123456789abcdef");
    ck_assert_str_eq(b->after.inc, "0123456789abcdef0123456789abcdef");
    ck_assert_uint_eq(b->window, 64);
    ck_assert_uint_eq(b->now_ms, 1000 + k);
    ck_assert_uint_eq(b->n, 2);
    ck_assert_str_eq(b->a[0].client, "alice");
    ck_assert_uint_eq(b->a[0].n, k);
    ck_assert_uint_eq(b->a[0].ndeps, 2);
    ck_assert_uint_eq(b->a[0].deps[1], k + 1);
    ck_assert_int_eq(b->a[0].strict, 1);
    ck_assert_uint_eq(b->a[0].base, k - 1);
    ck_assert_int_eq(b->a[0].applied, 1);
    ck_assert_str_eq(b->a[0].what, "SUMA");
    ck_assert_uint_eq(b->a[0].body_len, strlen(body));
    ck_assert_int_eq(memcmp(b->a[0].body, body, strlen(body)), 0);
    ck_assert_str_eq(b->a[1].client, "bob");
    ck_assert_int_eq(b->a[1].applied, 0);
    ck_assert_str_eq(b->a[1].what, "stale");
    ck_assert_ptr_null(b->a[1].body);
    ck_assert_uint_eq(b->a[1].ndeps, 0);
}

static const struct mx_cluster_head ZERO;

START_TEST(what_was_written_comes_back)
{
    mkdir_tmp();
    char epoch[64];
    struct mx_journal *j;
    struct mx_jfile *f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    ck_assert_str_eq(epoch, "");
    mx_jfile_epoch(f, "ep1");
    for (uint64_t k = 1; k <= 5; k++) {
        add(j, "t:a", k);
        add(j, "t:b", k);
    }
    mx_journal_forget(j, "t:a", 2, 1); /* the first two of t:a */
    mx_journal_forget(j, "t:b", UINT64_MAX, 0);
    shut(j, f);

    /* as after kill -9: nothing was closed cleanly (close only closes) */
    f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    ck_assert_str_eq(epoch, "ep1");
    const struct mx_journal_batch *out[8];
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &ZERO, out, 8), 3);
    for (int i = 0; i < 3; i++)
        check_batch(out[i], (uint64_t)i + 3);
    ck_assert_uint_eq(mx_journal_lost(j, "t:b", &ZERO, out, 8), 0);
    /* what is added now goes on from there, and survives another open */
    add(j, "t:a", 6);
    shut(j, f);
    f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &ZERO, out, 8), 4);
    check_batch(out[3], 6);
    struct mx_jfile_stats st;
    mx_jfile_stats(f, &st);
    ck_assert_uint_eq(st.torn, 0);
    shut(j, f);
    rm_tmp();
}
END_TEST

START_TEST(a_torn_tail_is_ignored)
{
    mkdir_tmp();
    char epoch[64], last[300], p[600];
    struct mx_journal *j;
    struct mx_jfile *f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    for (uint64_t k = 1; k <= 4; k++)
        add(j, "t:a", k);
    shut(j, f);
    /* the last record cut short, as a write interrupted by a crash */
    ck_assert_int_eq(segments(last, sizeof last), 1);
    snprintf(p, sizeof p, "%s/%s", dir, last);
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_eq(truncate(p, sb.st_size - 5), 0);

    f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    const struct mx_journal_batch *out[8];
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &ZERO, out, 8), 3);
    check_batch(out[2], 3);
    struct mx_jfile_stats st;
    mx_jfile_stats(f, &st);
    ck_assert_uint_eq(st.torn, 1);
    /* new records go to a new segment, never behind the torn one */
    ck_assert_int_eq(segments(NULL, 0), 2);
    add(j, "t:a", 5);
    shut(j, f);

    /* damage inside a record (a flipped byte): the CRC stops the read there */
    snprintf(p, sizeof p, "%s/%s", dir, last);
    int fd = open(p, O_RDWR);
    ck_assert_int_ge(fd, 0);
    char c;
    ck_assert_int_eq(pread(fd, &c, 1, 60), 1);
    c ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &c, 1, 60), 1);
    close(fd);
    f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    /* the damaged segment held batches 1-3 (its epoch record comes first,
     * so offset 60 is in batch 1): only 5, from the next segment, is left */
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &ZERO, out, 8), 1);
    check_batch(out[0], 5);
    shut(j, f);
    rm_tmp();
}
END_TEST

START_TEST(old_segments_go_and_the_directory_stays_bounded)
{
    mkdir_tmp();
    char epoch[64];
    /* the journal keeps 4 batches; segments of ~300 bytes (one batch each) */
    struct mx_journal *j;
    struct mx_jfile *f = open_new(&j, epoch, 4, 300, 1 << 20);
    for (uint64_t k = 1; k <= 40; k++)
        add(j, "t:a", k);
    int segs = segments(NULL, 0);
    ck_assert_msg(segs <= 6, "%d segments for 4 batches kept", segs);
    shut(j, f);
    f = open_new(&j, epoch, 4, 300, 1 << 20);
    const struct mx_journal_batch *out[8];
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &ZERO, out, 8), 4);
    check_batch(out[0], 37);
    check_batch(out[3], 40);
    shut(j, f);

    /* the directory's own bound: the journal would keep 1000, the
     * directory holds ~2 KB, so older batches are evicted to keep it so */
    f = open_new(&j, epoch, 1000, 300, 2048);
    for (uint64_t k = 41; k <= 100; k++)
        add(j, "t:a", k);
    struct mx_jfile_stats st;
    mx_jfile_stats(f, &st);
    ck_assert_msg(st.bytes <= 2048 + 600, "%llu bytes on disk", (unsigned long long)st.bytes);
    struct mx_journal_stats js;
    mx_journal_stats(j, &js);
    ck_assert_uint_gt(js.evicted, 0);
    ck_assert_uint_lt(js.batches, 20);
    size_t kept = mx_journal_lost(j, "t:a", &ZERO, NULL, 0);
    shut(j, f);
    f = open_new(&j, epoch, 1000, 300, 2048);
    ck_assert_uint_ge(mx_journal_lost(j, "t:a", &ZERO, NULL, 0), kept); /* read back: at least those */
    ck_assert_uint_eq(mx_journal_newest(j, "t:a")->after.seq, 100);
    shut(j, f);
    rm_tmp();
}
END_TEST

START_TEST(another_epoch_is_not_read_back)
{
    mkdir_tmp();
    char epoch[64];
    struct mx_journal *j;
    struct mx_jfile *f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    mx_jfile_epoch(f, "e1");
    add(j, "t:a", 1);
    /* the node saw a new epoch and died before forgetting: the epoch
     * record alone ends the old batches */
    mx_jfile_epoch(f, "e2");
    add(j, "t:b", 1);
    shut(j, f);
    f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    ck_assert_str_eq(epoch, "e2");
    ck_assert_ptr_null(mx_journal_newest(j, "t:a"));
    ck_assert_ptr_nonnull(mx_journal_newest(j, "t:b"));
    /* forgetting every room is on disk too */
    mx_journal_forget(j, NULL, UINT64_MAX, 0);
    shut(j, f);
    f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    ck_assert_ptr_null(mx_journal_newest(j, "t:b"));
    shut(j, f);
    rm_tmp();
}
END_TEST

START_TEST(one_process_per_directory_and_the_check)
{
    mkdir_tmp();
    char epoch[64], err[512];
    struct mx_journal *j = mx_journal_new(10, 1 << 20), *j2 = mx_journal_new(10, 1 << 20);
    struct mx_jfile *f = open_ok(j, epoch, 1 << 20, 4 << 20), *f2 = NULL;
    ck_assert_int_eq(mx_jfile_open(dir, 1 << 20, 4 << 20, j2, epoch, sizeof epoch, &f2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "another movexd") != NULL, "%s", err);
    ck_assert_ptr_null(f2);
    shut(j, f);
    mx_journal_free(j2);

    char sub[400], file[400];
    ck_assert_int_eq(mx_jfile_check_dir(dir, err, sizeof err), 0);
    snprintf(sub, sizeof sub, "%s/not/yet", dir); /* can be made: its ancestor is writable */
    ck_assert_int_eq(mx_jfile_check_dir(sub, err, sizeof err), 0);
    snprintf(file, sizeof file, "%s/LOCK", dir); /* a file, not a directory */
    ck_assert_int_eq(mx_jfile_check_dir(file, err, sizeof err), -1);
    snprintf(sub, sizeof sub, "%s/LOCK/below", dir);
    ck_assert_int_eq(mx_jfile_check_dir(sub, err, sizeof err), -1);
    rm_tmp();
}
END_TEST

/* A directory start-up would refuse is refused by the check movexd -t runs,
 * with the message start-up gives (mx_jfile_open runs the same check): a
 * path on proc or sysfs, which root's access() calls writable but where
 * mkdir fails. And a path several missing levels deep is made whole (the
 * check accepted it; start-up used to create only one level above it). */
START_TEST(the_check_is_what_start_up_refuses)
{
    mkdir_tmp();
    char epoch[64], err[512], err2[512];
    struct mx_journal *j = mx_journal_new(10, 1 << 20);
    struct mx_jfile *f = NULL;
    const char *pseudo[][2] = { { "/proc/movexd-unit-journal", "proc" }, { "/sys/movexd-unit-journal", "sysfs" } };
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(mx_jfile_check_dir(pseudo[i][0], err, sizeof err), -1);
        ck_assert_msg(strstr(err, pseudo[i][1]) && strstr(err, "cannot hold"), "%s", err);
        ck_assert_int_eq(mx_jfile_open(pseudo[i][0], 1 << 20, 4 << 20, j, epoch, sizeof epoch, &f, err2, sizeof err2), -1);
        ck_assert_str_eq(err2, err);
        ck_assert_ptr_null(f);
    }
    char deep[400];
    snprintf(deep, sizeof deep, "%s/a/b/c", dir);
    ck_assert_int_eq(mx_jfile_check_dir(deep, err, sizeof err), 0);
    int rc = mx_jfile_open(deep, 1 << 20, 4 << 20, j, epoch, sizeof epoch, &f, err, sizeof err);
    ck_assert_msg(rc == 0, "open %s: %s", deep, err);
    shut(j, f);
    /* rm_tmp removes one level: the files of deep, then its three levels */
    DIR *d = opendir(deep);
    char p[700];
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", deep, e->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
    for (int up = 0; up < 3; up++) {
        ck_assert_int_eq(rmdir(deep), 0);
        *strrchr(deep, '/') = '\0';
    }
    rm_tmp();
}
END_TEST

/* Only names of 20 digits are segments: a stray file whose name strtoull
 * would still read (a sign, a space, more than 2^64) is not one. Read as
 * one, "-0000000000000000001.mxj" was segment 2^64-1 - whose own name does
 * not exist, so the open failed and the node could not start - and
 * "+0000000000000000001.mxj" was segment 1 a second time. */
START_TEST(only_twenty_digit_names_are_segments)
{
    mkdir_tmp();
    char epoch[64], p[600];
    struct mx_journal *j;
    struct mx_jfile *f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    add(j, "t:a", 1);
    shut(j, f);
    static const char *const stray[] = { "-0000000000000000001.mxj", "+0000000000000000001.mxj",
                                         " 0000000000000000001.mxj", "99999999999999999999.mxj" };
    for (size_t i = 0; i < sizeof stray / sizeof *stray; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, stray[i]);
        FILE *fp = fopen(p, "w");
        ck_assert_ptr_nonnull(fp);
        fputs("not a journal segment", fp);
        fclose(fp);
    }
    f = open_new(&j, epoch, 1000, 1 << 20, 4 << 20);
    const struct mx_journal_batch *out[4];
    ck_assert_uint_eq(mx_journal_lost(j, "t:a", &ZERO, out, 4), 1); /* once, not twice */
    check_batch(out[0], 1);
    struct mx_jfile_stats st;
    mx_jfile_stats(f, &st);
    ck_assert_uint_eq(st.torn, 0);
    ck_assert_uint_eq(st.segments, 2); /* the one read back and the new one */
    shut(j, f);
    for (size_t i = 0; i < sizeof stray / sizeof *stray; i++) { /* left alone */
        snprintf(p, sizeof p, "%s/%s", dir, stray[i]);
        ck_assert_int_eq(access(p, F_OK), 0);
    }
    rm_tmp();
}
END_TEST

Suite *mx_suite_cluster_journal_file(void)
{
    Suite *s = suite_create("cluster_journal_file");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, what_was_written_comes_back);
    tcase_add_test(tc, a_torn_tail_is_ignored);
    tcase_add_test(tc, old_segments_go_and_the_directory_stays_bounded);
    tcase_add_test(tc, another_epoch_is_not_read_back);
    tcase_add_test(tc, one_process_per_directory_and_the_check);
    tcase_add_test(tc, the_check_is_what_start_up_refuses);
    tcase_add_test(tc, only_twenty_digit_names_are_segments);
    suite_add_tcase(s, tc);
    return s;
}
