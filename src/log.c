/* log.c - leveled one-line logging to stderr. Each line carries a UTC
 * timestamp unless stderr goes to journald (JOURNAL_STREAM set), which
 * stamps lines itself. */
#include "movexd/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static enum mx_log_level level = MX_LOG_INFO;
static const char *names[] = {"error", "warn", "info", "debug"};

void mx_log_set_level(enum mx_log_level l) { level = l; }
int mx_log_enabled(enum mx_log_level l) { return l <= level; }

void mx_log(enum mx_log_level l, const char *fmt, ...)
{
    if (l > level)
        return;
    char line[2048];
    int off = 0;
    if (!getenv("JOURNAL_STREAM")) {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        off = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        off += snprintf(line + off, sizeof(line) - (size_t)off, ".%03ldZ ", ts.tv_nsec / 1000000);
    }
    off += snprintf(line + off, sizeof(line) - (size_t)off, "%s ", names[l]);
    va_list ap;
    va_start(ap, fmt);
    if (off < (int)sizeof(line))
        vsnprintf(line + off, sizeof(line) - (size_t)off, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
