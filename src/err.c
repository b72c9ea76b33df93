/* err.c - the table generated from MX_ERR_MAP (err.h): enum mx_err to
 * protocol code, message, HTTP status and close code.
 *
 * Invariant: slot i holds the row whose VALUE is -i, slot 0 is MX_OK, and
 * no slot is empty; the static assertions below refuse a map that breaks
 * it (a gap or a duplicate VALUE), so every lookup is one array index.
 */
#include "movexd/err.h"

#include <string.h>

struct row {
    const char *code;
    const char *msg;
    unsigned http;
    int close;
};

static const struct row table[] = {
    [0] = {"ok", "ok", 200, 0},
#define MX__ERR_ROW(name, value, code, msg, http, close) [-(value)] = {code, msg, http, close},
    MX_ERR_MAP(MX__ERR_ROW)
#undef MX__ERR_ROW
};

/* VALUEs are -1, -2, ... in row order: the k-th row has VALUE -k. */
enum {
    ERR_POS_0 = 0,
#define MX__ERR_POS(name, value, code, msg, http, close) ERR_POS_##name,
    MX_ERR_MAP(MX__ERR_POS)
#undef MX__ERR_POS
};
#define MX__ERR_CHECK(name, value, code, msg, http, close)                                          \
    _Static_assert((value) == -ERR_POS_##name, "MX_ERR_MAP: " #name " is not -(its row number)");
MX_ERR_MAP(MX__ERR_CHECK)
#undef MX__ERR_CHECK
_Static_assert(sizeof table / sizeof table[0] == MX_ERR_COUNT, "MX_ERR_MAP: table size");

int mx_err_index(int err)
{
    /* compared before negating: -INT_MIN would overflow */
    return (err <= 0 && err > -MX_ERR_COUNT) ? -err : -MX_EINTERNAL;
}

const char *mx_err_code(int err) { return table[mx_err_index(err)].code; }
const char *mx_err_message(int err) { return table[mx_err_index(err)].msg; }
unsigned mx_err_http_status(int err) { return table[mx_err_index(err)].http; }
int mx_err_close_code(int err) { return table[mx_err_index(err)].close; }

int mx_err_from_code(const char *code, size_t len)
{
    for (int i = 1; i < MX_ERR_COUNT; i++)
        if (strlen(table[i].code) == len && memcmp(table[i].code, code, len) == 0)
            return -i;
    return 0;
}
