/* metrics.c - histograms and Prometheus text rendering; see metrics.h.
 * The process_* series follow the names and units of the Prometheus client
 * libraries (seconds, bytes), so standard dashboards and alerts work. */
#include "movexd/metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

const double mx_hist_bounds[MX_HIST_BUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                0.01,    0.025,  0.05,    0.1,    0.25,  1,     5};

struct mx_hist mx_metric_ack_latency, mx_metric_fsync_latency;
uint64_t mx_metric_bytes_in, mx_metric_bytes_out;
uint64_t mx_metric_frames_out, mx_metric_send_calls, mx_metric_send_partials, mx_metric_rx_pauses;
uint64_t mx_metric_reads_again;

uint64_t mx_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void mx_hist_observe(struct mx_hist *h, double seconds)
{
    int i = 0;
    while (i < MX_HIST_BUCKETS && seconds > mx_hist_bounds[i])
        i++;
    h->counts[i]++;
    h->n++;
    h->sum += seconds;
}

static void head(mx_buf *b, const char *name, const char *help, const char *type)
{
    mx_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void mx_metrics_hist(mx_buf *b, const char *name, const char *help, const struct mx_hist *h)
{
    head(b, name, help, "histogram");
    uint64_t cum = 0;
    for (int i = 0; i < MX_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        mx_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, mx_hist_bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[MX_HIST_BUCKETS];
    mx_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    mx_buf_printf(b, "%s_sum %.9f\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->n);
}

void mx_metrics_counter(mx_buf *b, const char *name, const char *help, uint64_t v)
{
    head(b, name, help, "counter");
    mx_buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

void mx_metrics_gauge(mx_buf *b, const char *name, const char *help, double v)
{
    head(b, name, help, "gauge");
    mx_buf_printf(b, "%s %.17g\n", name, v);
}

/* Fields of /proc/self/stat after the command name (which may hold spaces
 * and parentheses, so parsing starts after the last ')'): utime, stime and
 * starttime in clock ticks, vsize in bytes, rss in pages. */
static int proc_stat(unsigned long long *utime, unsigned long long *stime,
                     unsigned long long *start, unsigned long long *vsize, long long *rss)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) cutime cstime priority nice
     * num_threads itrealvalue starttime(22) vsize(23) rss(24) */
    return sscanf(p + 2,
                  "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
                  "%llu %llu %lld",
                  utime, stime, start, vsize, rss) == 5
               ? 0
               : -1;
}

static long long boot_time(void)
{
    char line[256];
    long long bt = -1;
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lld", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the descriptor opendir itself holds */
}

void mx_metrics_process(mx_buf *b, const char *version)
{
    head(b, "movexd_build_info", "the running build (value 1)", "gauge");
    mx_buf_printf(b, "movexd_build_info{version=\"%s\"} 1\n", version);
    unsigned long long ut, st, start, vsize;
    long long rss;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (tick > 0 && page > 0 && proc_stat(&ut, &st, &start, &vsize, &rss) == 0) {
        head(b, "process_cpu_seconds_total", "user and system CPU time spent, in seconds", "counter");
        mx_buf_printf(b, "process_cpu_seconds_total %.2f\n", (double)(ut + st) / (double)tick);
        mx_metrics_gauge(b, "process_resident_memory_bytes", "resident memory size in bytes",
                         (double)rss * (double)page);
        mx_metrics_gauge(b, "process_virtual_memory_bytes", "virtual memory size in bytes", (double)vsize);
        long long bt = boot_time();
        if (bt > 0)
            mx_metrics_gauge(b, "process_start_time_seconds",
                             "start time of the process since the epoch, in seconds",
                             (double)bt + (double)start / (double)tick);
    }
    long fds = open_fds();
    if (fds >= 0)
        mx_metrics_gauge(b, "process_open_fds", "number of open file descriptors", (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        mx_metrics_gauge(b, "process_max_fds", "maximum number of open file descriptors",
                         (double)rl.rlim_cur);
}
