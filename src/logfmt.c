/* logfmt.c - printf for log lines that keeps every line valid key=value.
 *
 * Log lines are written as printf formats ("event=x client=%s reason=\"%s\"")
 * and many values come from clients or the file system: a client id, a
 * room, an error text, a path with a space. Formatted naively, a value with
 * a space, an '=' or a quote breaks the line into other keys (`reason=bad
 * sig note=x` reads as two keys). So each %s (and %.*s) is treated by where
 * it stands in the format:
 *  - right after `key=` (unquoted): printed bare when it is a plain token
 *    (non-empty; no space, quote, backslash, '=' or control byte), else
 *    wrapped in double quotes and escaped;
 *  - inside quotes the format opened (`key="%s"`): escaped only;
 *  - anywhere else: as is.
 * Escaping turns `"` and `\` into `\"` and `\\`, and control bytes into
 * \n, \r, \t or \xHH, so a value can never end the line or its quotes.
 * Bytes >= 0x80 (UTF-8) are kept. Other conversions go through vsnprintf one
 * at a time with the argument type their length modifier names. The output
 * is cut at cap - 1 bytes and always NUL-terminated.
 */
#include "movexd/logfmt.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct out {
    char *p;
    size_t cap, len; /* len may pass cap - 1: the rest is dropped */
};

static void put(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, o->len++)
        if (o->len + 1 < o->cap)
            o->p[o->len] = s[i];
}

static int plain(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\' || c == '=')
            return 0;
    }
    return 1;
}

static void put_escaped(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[5];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            put(o, e, 2);
        } else if (c == '\n' || c == '\r' || c == '\t') {
            e[0] = '\\';
            e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            put(o, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(e, sizeof e, "\\x%02x", c);
            put(o, e, 4);
        } else {
            put(o, (const char *)&s[i], 1);
        }
    }
}

/* Is position i of fmt inside a double-quoted value the format opened?
 * Counts unescaped quotes in the literal text before it. */
static int in_quotes(const char *fmt, size_t i)
{
    int q = 0;
    for (size_t k = 0; k < i; k++) {
        if (fmt[k] == '%' && fmt[k + 1] == '%')
            k++;
        else if (fmt[k] == '"')
            q = !q;
    }
    return q;
}

void mx_log_vformat(char *dst, size_t cap, const char *fmt, va_list ap)
{
    struct out o = {dst, cap, 0};
    if (cap == 0)
        return;
    for (size_t i = 0; fmt[i];) {
        if (fmt[i] != '%') {
            put(&o, &fmt[i++], 1);
            continue;
        }
        if (fmt[i + 1] == '%') {
            put(&o, "%", 1);
            i += 2;
            continue;
        }
        /* one conversion: %[flags][width][.precision][length]conv */
        size_t start = i++;
        while (fmt[i] && strchr("-+ #0", fmt[i]))
            i++;
        int width = -1, prec = -1;
        if (fmt[i] == '*') {
            width = va_arg(ap, int);
            i++;
        } else {
            while (fmt[i] >= '0' && fmt[i] <= '9')
                i++;
        }
        if (fmt[i] == '.') {
            i++;
            if (fmt[i] == '*') {
                prec = va_arg(ap, int);
                i++;
            } else {
                prec = 0;
                while (fmt[i] >= '0' && fmt[i] <= '9')
                    prec = prec * 10 + (fmt[i++] - '0');
            }
        }
        char len[3] = {0};
        size_t ll = 0;
        while (fmt[i] && strchr("hlzjtL", fmt[i]) && ll < 2)
            len[ll++] = fmt[i++];
        char conv = fmt[i];
        if (!conv)
            break;
        i++;
        if (conv == 's') {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            size_t n = prec >= 0 ? strnlen(s, (size_t)prec) : strlen(s);
            if (in_quotes(fmt, start))
                put_escaped(&o, s, n);
            else if (start > 0 && fmt[start - 1] == '=' && !plain(s, n)) {
                put(&o, "\"", 1);
                put_escaped(&o, s, n);
                put(&o, "\"", 1);
            } else {
                put(&o, s, n);
            }
            continue;
        }
        /* any other conversion: rebuild its spec with the star arguments
         * already taken, and let vsnprintf's sibling print one value */
        char spec[32], tmp[128];
        size_t sl = 0, k = start + 1;
        spec[sl++] = '%';
        while (strchr("-+ #0", fmt[k]) && sl < 8)
            spec[sl++] = fmt[k++]; /* flags */
        if (width >= 0)
            spec[sl++] = '*'; /* taken above */
        else
            while (fmt[k] >= '0' && fmt[k] <= '9' && sl < 16)
                spec[sl++] = fmt[k++]; /* a literal width */
        if (prec >= 0) { /* literal or star, passed as an argument */
            spec[sl++] = '.';
            spec[sl++] = '*';
        }
        for (size_t m = 0; m < ll; m++)
            spec[sl++] = len[m];
        spec[sl++] = conv;
        spec[sl] = '\0';
        int w = width >= 0 ? width : 0, pr = prec >= 0 ? prec : 0;
        int n = 0;
#define PRINT(T)                                                               \
    do {                                                                       \
        T v_ = va_arg(ap, T);                                                  \
        if (width >= 0 && prec >= 0)                                           \
            n = snprintf(tmp, sizeof tmp, spec, w, pr, v_);                    \
        else if (width >= 0)                                                   \
            n = snprintf(tmp, sizeof tmp, spec, w, v_);                        \
        else if (prec >= 0)                                                    \
            n = snprintf(tmp, sizeof tmp, spec, pr, v_);                       \
        else                                                                   \
            n = snprintf(tmp, sizeof tmp, spec, v_);                           \
    } while (0)
        int isunsigned = strchr("uxXo", conv) != NULL;
        if (strchr("di", conv) || isunsigned) {
            if (!strcmp(len, "ll"))
                {
                if (isunsigned)
                    PRINT(unsigned long long);
                else
                    PRINT(long long);
            }
            else if (!strcmp(len, "l"))
                {
                if (isunsigned)
                    PRINT(unsigned long);
                else
                    PRINT(long);
            }
            else if (!strcmp(len, "z"))
                {
                if (isunsigned)
                    PRINT(size_t);
                else
                    PRINT(ptrdiff_t);
            }
            else if (!strcmp(len, "j"))
                {
                if (isunsigned)
                    PRINT(uintmax_t);
                else
                    PRINT(intmax_t);
            }
            else if (!strcmp(len, "t"))
                PRINT(ptrdiff_t);
            else
                {
                if (isunsigned)
                    PRINT(unsigned);
                else
                    PRINT(int);
            }
        } else if (strchr("fFeEgGaA", conv)) {
            if (!strcmp(len, "L"))
                PRINT(long double);
            else
                PRINT(double);
        } else if (conv == 'c') {
            PRINT(int);
        } else if (conv == 'p') {
            PRINT(void *);
        } else {
            break; /* %n or unknown: stop rather than misread the arguments */
        }
#undef PRINT
        if (n > 0)
            put(&o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
    }
    dst[o.len < cap ? o.len : cap - 1] = '\0';
}
