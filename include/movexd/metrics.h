/* metrics.h - process-wide counters and latency histograms, rendered in the
 * Prometheus text format at GET /metrics. The daemon has one event loop, so
 * plain integers suffice (no atomics). */
#ifndef MOVEXD_METRICS_H
#define MOVEXD_METRICS_H

#include <stdint.h>

#include "movexd/buf.h"

#define MX_HIST_BUCKETS 14

struct mx_hist {
    uint64_t counts[MX_HIST_BUCKETS + 1]; /* last: +Inf */
    uint64_t n;
    double sum; /* seconds */
};

/* Bucket upper bounds in seconds (50 us .. 5 s). */
extern const double mx_hist_bounds[MX_HIST_BUCKETS];

void mx_hist_observe(struct mx_hist *h, double seconds);

/* Written by the modules that see the events. */
extern struct mx_hist mx_metric_ack_latency;   /* request received -> ack released */
extern struct mx_hist mx_metric_fsync_latency; /* one WAL fdatasync */
extern uint64_t mx_metric_bytes_in, mx_metric_bytes_out;
extern uint64_t mx_metric_frames_out; /* WebSocket messages handed to the socket */
extern uint64_t mx_metric_send_calls; /* gathered writes (sendmsg / lws_write) that carried them */
extern uint64_t mx_metric_send_partials; /* writes the socket took in part (the frame's rest went to lws) */
extern uint64_t mx_metric_reads_again;  /* extra reads in a turn after a full one (readmore.c) */
extern uint64_t mx_metric_rx_pauses;     /* connections that stopped being read (backpressure) */

/* Append "# HELP/# TYPE" and the series of one histogram. */
void mx_metrics_hist(mx_buf *b, const char *name, const char *help, const struct mx_hist *h);
void mx_metrics_counter(mx_buf *b, const char *name, const char *help, uint64_t v);
void mx_metrics_gauge(mx_buf *b, const char *name, const char *help, double v);

/* movexd_build_info{version=...} 1, and the process_* series Prometheus
 * client libraries export (CPU seconds, resident and virtual memory, open
 * and maximum descriptors, start time), read from /proc/self; a series
 * whose source cannot be read is left out. */
void mx_metrics_process(mx_buf *b, const char *version);

uint64_t mx_now_us(void); /* CLOCK_MONOTONIC */

#endif
