/* log.c - leveled one-line logging to stderr or a file (log_file). Each line
 * carries a UTC timestamp, except on the journal (stderr with JOURNAL_STREAM
 * set), which stamps lines itself and reads the "<priority>" prefix so that
 * `journalctl -p err` filters.
 *
 * Rate limit: a line identical (level and text) to one printed less than a
 * second ago is counted, not printed; the next time it is printed, a second
 * or more later, it ends in " suppressed=N". So a storm of one line (an
 * accept failing on every loop turn, a client retrying a failing request,
 * libwebsockets repeating itself) costs one line a second, and the count
 * says how big it was. The last MX_LOG_RECENT distinct lines are
 * remembered, so two lines alternating are limited too; mx_log_flush()
 * (once a second, from the loop) prints the count of a storm that stopped.
 */
#include "movexd/log.h"
#include "movexd/logfmt.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum mx_log_level level = MX_LOG_INFO;
static const char *names[] = {"error", "warn", "info", "debug"};
static FILE *out;      /* NULL: stderr */
static int journald = -1; /* stderr is the journal: prefix lines with <priority> */

#define MX_LOG_LINE 2048
#define MX_LOG_RECENT 16
#define MX_LOG_INTERVAL_US 1000000

/* A line printed recently: its text, when, and how often since. */
struct recent {
    uint64_t hash;       /* 0: a free slot */
    uint64_t printed_us; /* when it was last printed */
    uint64_t seen_us;    /* when it last occurred (for replacement) */
    unsigned long suppressed;
    enum mx_log_level level;
    char text[MX_LOG_LINE];
};
static struct recent recent[MX_LOG_RECENT];

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
static uint64_t (*now_us)(void) = mono_us;

void mx_log_set_clock(uint64_t (*clock_us)(void)) { now_us = clock_us ? clock_us : mono_us; }

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

/* Print text ("LEVEL event...") as one line with its timestamp or journal
 * priority; suppressed > 0 adds the count. */
static void emit(enum mx_log_level l, const char *text, unsigned long suppressed)
{
    char prefix[64];
    if (journald < 0)
        journald = getenv("JOURNAL_STREAM") != NULL;
    if (journald && !out) {
        static const char prio[] = {'3', '4', '6', '7'}; /* err, warning, info, debug */
        snprintf(prefix, sizeof(prefix), "<%c>", prio[l]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        size_t off = strftime(prefix, sizeof(prefix), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(prefix + off, sizeof(prefix) - off, ".%03ldZ ", ts.tv_nsec / 1000000);
    }
    if (suppressed)
        fprintf(out ? out : stderr, "%s%s suppressed=%lu\n", prefix, text, suppressed);
    else
        fprintf(out ? out : stderr, "%s%s\n", prefix, text);
}

static uint64_t hash_of(enum mx_log_level l, const char *s)
{
    uint64_t h = 1469598103934665603u ^ (uint64_t)l; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h ? h : 1;
}

/* 1 when the line is to be printed now (with *suppressed lines before it). */
static int admit(enum mx_log_level l, const char *text, unsigned long *suppressed)
{
    uint64_t now = now_us(), h = hash_of(l, text);
    struct recent *oldest = &recent[0];
    *suppressed = 0;
    for (int i = 0; i < MX_LOG_RECENT; i++) {
        struct recent *r = &recent[i];
        if (r->hash == h && r->level == l && !strcmp(r->text, text)) {
            r->seen_us = now;
            if (now - r->printed_us < MX_LOG_INTERVAL_US) {
                r->suppressed++;
                return 0;
            }
            *suppressed = r->suppressed;
            r->suppressed = 0;
            r->printed_us = now;
            return 1;
        }
        /* the slot to take if the line is new: a free one, else the one
         * seen least recently */
        if (oldest->hash && (!r->hash || r->seen_us < oldest->seen_us))
            oldest = r;
    }
    /* a line not seen lately takes the slot of the least recent one, whose
     * count (if any) is printed first so that it is not lost */
    if (oldest->hash && oldest->suppressed)
        emit(oldest->level, oldest->text, oldest->suppressed);
    oldest->hash = h;
    oldest->level = l;
    oldest->printed_us = oldest->seen_us = now;
    oldest->suppressed = 0;
    snprintf(oldest->text, sizeof(oldest->text), "%s", text);
    return 1;
}

void mx_log_flush(void)
{
    uint64_t now = now_us();
    for (int i = 0; i < MX_LOG_RECENT; i++) {
        struct recent *r = &recent[i];
        if (r->hash && r->suppressed && now - r->printed_us >= MX_LOG_INTERVAL_US) {
            emit(r->level, r->text, r->suppressed);
            r->suppressed = 0;
            r->printed_us = now;
        }
    }
}

void mx_log(enum mx_log_level l, const char *fmt, ...)
{
    if (l > level)
        return;
    char line[MX_LOG_LINE];
    int off = snprintf(line, sizeof(line), "%s ", names[l]);
    va_list ap;
    va_start(ap, fmt);
    mx_log_vformat(line + off, sizeof(line) - (size_t)off, fmt, ap); /* quotes values */
    va_end(ap);
    /* one event, one line: text from clients (ids, messages quoting their
     * input) must not start a forged line or steer a terminal */
    for (unsigned char *p = (unsigned char *)line; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
    unsigned long suppressed;
    if (admit(l, line, &suppressed))
        emit(l, line, suppressed);
}
