/* fault.c - fault injection for test builds (-DMX_FAULT_INJECTION): before
 * each write, fdatasync and fallocate of a durable file, the WAL writer and
 * atomic files ask whether a file named FAULT in their directory tells them
 * to fail, and with which errno. Reading the file on every call lets a test
 * switch faults on and off while the daemon runs. Release builds compile
 * none of this (fault.h turns the checks into 0).
 *
 * Power cut. A kill -9 keeps the page cache, so it cannot show a missing
 * fdatasync; a power cut loses whatever was written but not synced, or
 * keeps only part of it. So the WAL reports every write (mx_fault_wrote)
 * and every fdatasync (mx_fault_fdatasync, which is the fdatasync itself:
 * removing the call removes the forgetting too), and this file remembers
 * the byte ranges written since their file's last fdatasync. FAULT holding
 * "powercut SEED COUNT" arms a simulated power cut at the COUNT-th check
 * from then on: each remembered range is, by a PRNG seeded with SEED, lost
 * (zeroed, as preallocated space reads), torn (a prefix of random length
 * kept) or kept; then the process kills itself with SIGKILL before doing
 * the operation it was about to do. (SQLite's crash VFS is the model.)
 * Invariant: a range is forgotten only after an fdatasync of its file
 * that started after the range was written returned 0.
 *
 * Threads: the loop writes and syncs the WAL, the snapshot writer's thread
 * (snapshot_writer.c) syncs it and writes snapshot files, both consult
 * FAULT. One mutex guards the journal and the power-cut countdown; no
 * allocation here is counted (alloc.c's counter is the loop's) except
 * mx_fault_wrote's, which only the loop calls.
 */
#include "movexd/fault.h"
#include "movexd/alloc.h"

#ifdef MX_FAULT_INJECTION
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "movexd/log.h"
#include "movexd/wal_common.h"

/* ---- power cut: what was written and not synced ---- */

struct unsynced {
    dev_t dev;
    ino_t ino;
    char *path; /* to reach the file at the crash: no descriptor is held,
                 * so the journal never shows up as a leak */
    uint64_t off, len;
    uint64_t seq; /* order of the write among all journalled writes */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct unsynced *pending;
static size_t npending, cappending;
static uint64_t next_seq;

void mx_fault_wrote(int fd, uint64_t off, uint64_t len)
{
    struct stat st;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (len == 0 || fstat(fd, &st) != 0 || n <= 0)
        abort(); /* the simulation would lie: stop the test loudly */
    path[n] = '\0';
    pthread_mutex_lock(&lock);
    if (npending == cappending) {
        /* plain realloc/strdup: test machinery, kept out of the
         * allocation-failure count (alloc.h) so it never changes what that
         * test sees */
        size_t ncap = cappending ? cappending * 2 : 64;
        struct unsynced *nv = mx_realloc(pending, ncap * sizeof(*nv));
        if (!nv)
            abort();
        pending = nv;
        cappending = ncap;
    }
    char *p = mx_strdup(path);
    if (!p)
        abort();
    pending[npending++] = (struct unsynced){st.st_dev, st.st_ino, p, off, len, next_seq++};
    pthread_mutex_unlock(&lock);
}

int mx_fault_fdatasync(int fd)
{
    /* only writes made before the call are surely covered by it (another
     * thread may write while it runs) */
    pthread_mutex_lock(&lock);
    uint64_t before = next_seq;
    pthread_mutex_unlock(&lock);
    if (fdatasync(fd) != 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    pthread_mutex_lock(&lock);
    size_t keep = 0;
    for (size_t i = 0; i < npending; i++) {
        if (pending[i].dev == st.st_dev && pending[i].ino == st.st_ino && pending[i].seq < before) {
            free(pending[i].path);
            continue;
        }
        pending[keep++] = pending[i];
    }
    npending = keep;
    pthread_mutex_unlock(&lock);
    return 0;
}

/* A 32-bit mix of a counter (murmur3's finaliser): nearby seeds give
 * unrelated sequences. */
static uint32_t next_random(uint32_t *x)
{
    uint32_t z = (*x += 0x9e3779b9u);
    z = (z ^ (z >> 16)) * 0x85ebca6bu;
    z = (z ^ (z >> 13)) * 0xc2b2ae35u;
    return z ^ (z >> 16);
}

static void zero_range(int fd, uint64_t off, uint64_t len)
{
    static const uint8_t zeros[4096];
    while (len > 0) {
        size_t n = len < sizeof zeros ? (size_t)len : sizeof zeros;
        ssize_t k = pwrite(fd, zeros, n, (off_t)off);
        if (k <= 0)
            return;
        off += (uint64_t)k;
        len -= (uint64_t)k;
    }
}

static _Noreturn void power_cut(uint32_t seed)
{
    uint32_t x = seed;
    uint64_t lost = 0, torn = 0, kept = 0;
    for (size_t i = 0; i < npending; i++) {
        struct unsynced *u = &pending[i];
        uint32_t mode = next_random(&x) % 3;
        uint64_t keep = mode == 0 ? 0 : mode == 1 ? next_random(&x) % u->len : u->len;
        int fd = open(u->path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            zero_range(fd, u->off + keep, u->len - keep);
            close(fd);
        }
        if (keep == 0)
            lost++;
        else if (keep < u->len)
            torn++;
        else
            kept++;
    }
    mx_err("event=fault_powercut unsynced_writes=%zu lost=%llu torn=%llu kept=%llu", npending,
           (unsigned long long)lost, (unsigned long long)torn, (unsigned long long)kept);
    raise(SIGKILL);
    _exit(137);
}

/* "powercut SEED COUNT": count this check; cut the power at the COUNT-th. */
static void powercut_tick(const char *text)
{
    static char armed[32];
    static unsigned long left;
    static uint32_t seed;
    if (strcmp(text, armed) != 0) {
        char *end;
        seed = (uint32_t)strtoul(text + 9, &end, 10);
        left = strtoul(end, NULL, 10);
        snprintf(armed, sizeof armed, "%s", text);
    }
    if (left > 0 && --left == 0)
        power_cut(seed);
}

/* PAUSED: FAULT holds "pause" (see mx_wal_fault) */
#define PAUSED (-1)

static int fault_from_fd(int fd)
{
    if (fd < 0)
        return 0;
    char text[32];
    ssize_t n;
    do
        n = read(fd, text, sizeof text - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return 0;
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' ||
                     text[n - 1] == '\t'))
        n--;
    text[n] = '\0';
    if (strcmp(text, "enospc") == 0)
        return ENOSPC;
    if (strcmp(text, "edquot") == 0)
        return EDQUOT;
    if (strcmp(text, "eio") == 0)
        return EIO;
    if (strcmp(text, "pause") == 0)
        return PAUSED;
    if (strncmp(text, "powercut ", 9) == 0) {
        pthread_mutex_lock(&lock); /* held through a power cut: it never returns */
        powercut_tick(text);
        pthread_mutex_unlock(&lock);
    }
    return 0;
}

int mx_wal_fault(const char *dir)
{
    char p[4200], mark[4300]; /* on the stack: any thread may ask */
    if (snprintf(p, sizeof p, "%s/FAULT", dir) >= (int)sizeof p)
        return 0;
    int e = fault_from_fd(open(p, O_RDONLY | O_CLOEXEC));
    if (e != PAUSED)
        return e;
    /* "pause": a check made off the event-loop thread (the snapshot
     * writer's) waits while FAULT says so, with DIR/FAULT.paused present
     * meanwhile, so a test can act (kill the daemon) while a snapshot is
     * half done; the loop thread reads it as no fault */
    if (syscall(SYS_gettid) == getpid())
        return 0;
    snprintf(mark, sizeof mark, "%s.paused", p);
    int m = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (m >= 0)
        close(m);
    struct timespec step = {0, 5 * 1000 * 1000};
    while ((e = fault_from_fd(open(p, O_RDONLY | O_CLOEXEC))) == PAUSED)
        nanosleep(&step, NULL); /* polls a file a test controls; no timing is assumed */
    unlink(mark);
    return e;
}

int mx_fault_unlink(const char *dir)
{
    char p[4200], text[32];
    if (snprintf(p, sizeof p, "%s/FAULT", dir) >= (int)sizeof p)
        return 0;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    return strncmp(text, "unlink-eio", 10) == 0 ? EIO : 0;
}

int mx_fault_at(int dirfd)
{
    int e = fault_from_fd(openat(dirfd, "FAULT", O_RDONLY | O_CLOEXEC));
    return e == PAUSED ? 0 : e; /* the loop's checks never pause */
}
#endif
