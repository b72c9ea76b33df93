/* log.h - one line per event, "LEVEL event key=value ...", to stderr (which
 * journald captures) or a file. Secrets are never passed to it. */
#ifndef MOVEXD_LOG_H
#define MOVEXD_LOG_H

#include <stdint.h>

#include "movexd/config.h"

void mx_log_set_level(enum mx_log_level l);
/* Log to path (appending; reopened on SIGHUP for logrotate), or to stderr
 * when path is NULL or empty. 0, or -1 (then the previous target stays). */
int mx_log_open(const char *path);
int mx_log_enabled(enum mx_log_level l);
/* One line; a line identical to one printed less than a second ago is
 * counted instead (see log.c), and printed again a second later with
 * " suppressed=N". */
void mx_log(enum mx_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the counts of suppressed lines not printed for a second (call
 * about once a second). */
void mx_log_flush(void);
/* Tests: the monotonic clock in microseconds (NULL: the real one). */
void mx_log_set_clock(uint64_t (*clock_us)(void));

#define mx_err(...) mx_log(MX_LOG_ERROR, __VA_ARGS__)
#define mx_warn(...) mx_log(MX_LOG_WARN, __VA_ARGS__)
#define mx_info(...) mx_log(MX_LOG_INFO, __VA_ARGS__)
#define mx_debug(...)                                                          \
    do {                                                                       \
        if (mx_log_enabled(MX_LOG_DEBUG))                                      \
            mx_log(MX_LOG_DEBUG, __VA_ARGS__);                                 \
    } while (0)

#endif
