/* log.c - leveled one-line logging to stderr or a file (log_file). Each line
 * carries a UTC timestamp, except on the journal (stderr with JOURNAL_STREAM
 * set), which stamps lines itself and reads the "<priority>" prefix so that
 * `journalctl -p err` filters. */
#include "movexd/log.h"
#include "movexd/logfmt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static enum mx_log_level level = MX_LOG_INFO;
static const char *names[] = {"error", "warn", "info", "debug"};
static FILE *out;      /* NULL: stderr */
static int journald = -1; /* stderr is the journal: prefix lines with <priority> */

int mx_log_open(const char *path)
{
    FILE *f = NULL;
    if (path && *path) {
        f = fopen(path, "ae");
        if (!f)
            return -1;
        setvbuf(f, NULL, _IOLBF, 0);
    }
    if (out)
        fclose(out);
    out = f;
    return 0;
}

void mx_log_set_level(enum mx_log_level l) { level = l; }
int mx_log_enabled(enum mx_log_level l) { return l <= level; }

void mx_log(enum mx_log_level l, const char *fmt, ...)
{
    if (l > level)
        return;
    char line[2048];
    int off = 0;
    if (journald < 0)
        journald = getenv("JOURNAL_STREAM") != NULL;
    if (journald && !out) {
        static const char prio[] = {'3', '4', '6', '7'}; /* err, warning, info, debug */
        off = snprintf(line, sizeof(line), "<%c>", prio[l]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        off = (int)strftime(line + off, sizeof(line) - (size_t)off, "%Y-%m-%dT%H:%M:%S", &tm);
        off += snprintf(line + off, sizeof(line) - (size_t)off, ".%03ldZ ", ts.tv_nsec / 1000000);
    }
    off += snprintf(line + off, sizeof(line) - (size_t)off, "%s ", names[l]);
    va_list ap;
    va_start(ap, fmt);
    if (off < (int)sizeof(line))
        mx_log_vformat(line + off, sizeof(line) - (size_t)off, fmt, ap); /* quotes values */
    va_end(ap);
    /* one event, one line: text from clients (ids, messages quoting their
     * input) must not start a forged line or steer a terminal */
    for (unsigned char *p = (unsigned char *)line; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
    fprintf(out ? out : stderr, "%s\n", line);
}
