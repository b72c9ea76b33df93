/* logfmt.h - printf for log lines: values of `key=%s` are quoted and
 * escaped when they need it, so every line stays valid key=value
 * (logfmt.c has the rules). */
#ifndef MOVEXD_LOGFMT_H
#define MOVEXD_LOGFMT_H

#include <stdarg.h>
#include <stddef.h>

/* Format into dst (at most cap - 1 bytes, always NUL-terminated when
 * cap > 0). */
void mx_log_vformat(char *dst, size_t cap, const char *fmt, va_list ap);

#endif
