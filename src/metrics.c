/* metrics.c - histograms and Prometheus text rendering; see metrics.h. */
#include "movexd/metrics.h"

#include <time.h>

const double mx_hist_bounds[MX_HIST_BUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                0.01,    0.025,  0.05,    0.1,    0.25,  1,     5};

struct mx_hist mx_metric_ack_latency, mx_metric_fsync_latency;
uint64_t mx_metric_bytes_in, mx_metric_bytes_out;
uint64_t mx_metric_frames_out, mx_metric_send_calls, mx_metric_send_partials;

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
