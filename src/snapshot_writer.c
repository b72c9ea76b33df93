/* snapshot_writer.c - the snapshot writer thread: a room's snapshot is
 * encoded on the event loop (storage_wal.c) - all of it but the log's
 * texts, which the thread writes from where the log keeps them - and
 * everything after that which waits for the disk - the WAL fdatasync the snapshot depends on,
 * wal/STATE, writing the file, its fsync, the rename, the directory fsync
 * (5-16 ms once a second at 10,000 actions/s, docs/PERFORMANCE.md) - runs
 * here, so the loop keeps answering meanwhile.
 *
 * Ownership (the whole of the thread's rules):
 *  - a job belongs to the loop until mx_snapwriter_submit, to the thread
 *    until it marks it done (under the mutex), and to the loop again from
 *    mx_snapwriter_done on. At most one job exists at a time, so the thread
 *    and the loop never touch the same job fields at once: the thread
 *    writes only the outcome fields, the loop reads them after collecting
 *    (the fields the loop set before submitting are only read by both, so
 *    the loop may look at them meanwhile); the mutex hand-off orders the
 *    memory;
 *  - the thread blocks all signals (they stay the loop thread's);
 *  - the thread reads the room's log texts a gathered job points at
 *    (iov): the loop pinned them (mx_oplog_pin) before submitting and
 *    unpins them only after collecting, so they are alive and unchanged
 *    while the thread runs. It touches nothing else of the daemon: no
 *    room, no mx_wal, no storage state, no metrics, no log (log.c and
 *    alloc.c's counter are not thread-safe), no mx_malloc. It does plain system calls on paths and
 *    on the job's own WAL descriptor, through mx_atomic_write_quiet and
 *    the fault hooks (fault.c locks its journal);
 *  - what the outcome means (room's disk_* fields, a failed WAL, the log
 *    lines, the counters) is decided on the loop when it collects the job
 *    (storage_wal.c), and every loop path that touches snapshot files, STATE
 *    or WAL segments, or frees a room, first waits for the job in flight
 *    (eviction and checkpoints instead skip and try again later).
 * Order inside a job, as on the loop before: the WAL is synced before the
 * snapshot that covers it, STATE is raised before the snapshot is
 * written; a failed step stops the job.
 */
#define _GNU_SOURCE
#include "movexd/snapshot_writer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "movexd/alloc.h"
#include "movexd/err.h"
#include "movexd/fault.h"
#include "movexd/snapshot.h"

struct mx_snapwriter {
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* a job was submitted, finished, or stop was asked */
    struct mx_snapjob *job; /* submitted, not collected */
    int done;              /* the job is finished */
    int stop;
    int started;           /* the thread runs */
    int no_thread;         /* could not start one: jobs run on the caller */
    pthread_t tid;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void run_job(struct mx_snapjob *j)
{
    uint64_t t0 = mono_us();
    if (j->wal_fd >= 0) {
        int e = MX_FAULT_DIR(j->waldir);
        if (!e && MX_FDATASYNC(j->wal_fd) != 0)
            e = errno;
        j->sync_errno = e;
        close(j->wal_fd);
        j->wal_fd = -1;
        j->sync_us = mono_us() - t0;
        if (e)
            return; /* the records are not durable: no snapshot may cover them */
    }
    uint64_t t1 = mono_us();
    if (j->write_state) {
        j->state_rc = mx_wal_state_write_quiet(j->waldir, &j->state, j->err, sizeof j->err);
        if (j->state_rc) {
            j->write_us = mono_us() - t1;
            return;
        }
    }
    j->rc = j->niov ? mx_atomic_writev_quiet(j->snapdir, j->name, MX_SNAPSHOT_MAGIC, j->iov, j->niov, j->stage,
                                             MX_SNAPJOB_STAGE, j->err, sizeof j->err)
                    : mx_atomic_write_quiet(j->snapdir, j->name, MX_SNAPSHOT_MAGIC, mx_buf_data(&j->payload),
                                            j->payload.len, j->err, sizeof j->err);
    j->write_us = mono_us() - t1;
}

static void *thread_main(void *arg)
{
    mx_snapwriter *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && (!w->job || w->done))
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop && (!w->job || w->done))
            break;
        struct mx_snapjob *j = w->job;
        pthread_mutex_unlock(&w->mu);
        run_job(j);
        pthread_mutex_lock(&w->mu);
        w->done = 1;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

mx_snapwriter *mx_snapwriter_new(void)
{
    mx_snapwriter *w = mx_calloc(1, sizeof *w);
    if (!w)
        return NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    return w;
}

void mx_snapwriter_submit(mx_snapwriter *w, struct mx_snapjob *job)
{
    job->sync_errno = 0;
    job->sync_us = job->write_us = 0;
    job->state_rc = job->rc = 0;
    job->err[0] = '\0';
    if (!w->started && !w->no_thread) {
        /* the thread blocks every signal: SIGTERM, SIGHUP and SIGINT keep
         * going to the loop thread, whose handlers expect to run there */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&w->tid, NULL, thread_main, w) == 0)
            w->started = 1;
        else
            w->no_thread = 1; /* slower, never wrong: the loop does the work */
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (w->no_thread) {
        run_job(job);
        w->job = job;
        w->done = 1;
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->job = job;
    w->done = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int mx_snapwriter_busy(const mx_snapwriter *w) { return w && w->job != NULL; }

struct mx_snapjob *mx_snapwriter_done(mx_snapwriter *w, int wait)
{
    if (!w || !w->job)
        return NULL;
    struct mx_snapjob *j = NULL;
    pthread_mutex_lock(&w->mu);
    while (wait && !w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    if (w->done) {
        j = w->job;
        w->job = NULL;
        w->done = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return j;
}

void mx_snapwriter_free(mx_snapwriter *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->tid, NULL); /* the thread finishes a job in flight first */
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
