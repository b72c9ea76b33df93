/* Unit tests for the error list (err.h MX_ERR_MAP, err.c): the table in
 * docs/PROTOCOL.md and the list hold the same rows in the same order, with
 * the same HTTP status and close code (checked both ways: a row only in
 * the docs fails, a row only in the code fails), every entry is filled, and
 * out-of-range values read as internal. MX_DOCS_DIR overrides where the
 * docs are looked for (default: docs, the tests run from the repository). */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movexd/engine.h"
#include "movexd/err.h"

struct doc_row {
    char code[64];
    unsigned http;
    int close;
};

/* Rows of the error table (the one headed "| code | sent as |"): lines "| `code` | sent as |
 * HTTP | close | meaning |". Returns the number of rows read. */
static size_t read_doc_table(struct doc_row *rows, size_t cap)
{
    const char *dir = getenv("MX_DOCS_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/PROTOCOL.md", dir && *dir ? dir : "docs");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[1024];
    int in_section = 0;
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "| code | sent as |", 18)) {
            in_section = 1;
            continue;
        }
        if (in_section && !strncmp(line, "|---", 4))
            continue;
        if (in_section && strncmp(line, "| `", 3) != 0)
            break; /* the table ended */
        if (!in_section)
            continue;
        ck_assert_msg(n < cap, "too many rows in the docs' error table");
        struct doc_row *r = &rows[n];
        char close[16];
        int got = sscanf(line, "| `%63[a-z_]` | %*[^|]| %u | %15[-0-9] |", r->code, &r->http, close);
        ck_assert_msg(got == 3, "docs/PROTOCOL.md error table: cannot read row: %s", line);
        r->close = strcmp(close, "-") == 0 ? 0 : atoi(close);
        ck_assert_msg(r->close != 0 || strcmp(close, "-") == 0, "close column must be a code or -: %s",
                      line);
        n++;
    }
    fclose(f);
    return n;
}

START_TEST(docs_table_matches_the_list)
{
    struct doc_row rows[MX_ERR_COUNT + 16];
    size_t n = read_doc_table(rows, sizeof rows / sizeof rows[0]);
    /* docs -> code: every documented code exists, in the same position,
     * with the same status and close code */
    for (size_t i = 0; i < n; i++) {
        int err = mx_err_from_code(rows[i].code, strlen(rows[i].code));
        ck_assert_msg(err != 0, "docs list `%s`, the error list does not", rows[i].code);
        ck_assert_msg(err == -(int)(i + 1), "docs row %zu is `%s`, the list has it at %d", i + 1,
                      rows[i].code, -err);
        ck_assert_msg(mx_err_http_status(err) == rows[i].http, "`%s`: docs say HTTP %u, list %u",
                      rows[i].code, rows[i].http, mx_err_http_status(err));
        ck_assert_msg(mx_err_close_code(err) == rows[i].close, "`%s`: docs say close %d, list %d",
                      rows[i].code, rows[i].close, mx_err_close_code(err));
    }
    /* code -> docs: every error in the list is documented */
#define X(name, value, wire, msg, http, close)                                                     \
    ck_assert_msg(-(value) <= (int)n && strcmp(rows[-(value)-1].code, wire) == 0,                  \
                  "MX_E" #name " (`%s`) is missing from docs/PROTOCOL.md's error table", wire);
    MX_ERR_MAP(X)
#undef X
    ck_assert_int_eq((int)n, MX_ERR_COUNT - 1);
}
END_TEST

START_TEST(every_entry_is_filled_and_unique)
{
    for (int i = 0; i < MX_ERR_COUNT; i++) {
        const char *c = mx_err_code(-i), *m = mx_err_message(-i);
        ck_assert_msg(c && *c && m && *m, "entry %d empty", i);
        ck_assert_int_eq(mx_err_index(-i), i);
        ck_assert_uint_ge(mx_err_http_status(-i), 200);
        ck_assert_uint_lt(mx_err_http_status(-i), 600);
        for (int k = 0; k < i; k++)
            ck_assert_msg(strcmp(c, mx_err_code(-k)) != 0, "code %s twice", c);
        if (i)
            ck_assert_int_eq(mx_err_from_code(c, strlen(c)), -i);
    }
    ck_assert_str_eq(mx_err_code(0), "ok");
    ck_assert_uint_eq(mx_err_http_status(0), 200);
}
END_TEST

START_TEST(out_of_range_reads_as_internal)
{
    int bad[] = {1, 7, -MX_ERR_COUNT, -1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_str_eq(mx_err_code(bad[i]), "internal");
        ck_assert_int_eq(mx_err_index(bad[i]), -MX_EINTERNAL);
        ck_assert_uint_eq(mx_err_http_status(bad[i]), 500);
    }
    ck_assert_int_eq(mx_err_from_code("nope", 4), 0);
    ck_assert_int_eq(mx_err_from_code("bad_request", 3), 0); /* a prefix is not a code */
    ck_assert_int_eq(mx_err_from_code("ok", 2), 0);          /* not an error */
}
END_TEST

START_TEST(stable_values_and_statuses)
{
    /* values clients and counters depend on */
    ck_assert_int_eq(MX_EBAD_REQUEST, -1);
    ck_assert_int_eq(MX_ENOMEM, -22);
    ck_assert_int_eq(MX_EINTERNAL, -24);
    ck_assert_str_eq(mx_err_code(MX_ENOMEM), "no_memory");
    /* the admin API's statuses documented in ADMIN.md */
    ck_assert_uint_eq(mx_err_http_status(MX_ENO_SUCH_ROOM), 404);
    ck_assert_uint_eq(mx_err_http_status(MX_EBAD_ROOM), 400);
    ck_assert_uint_eq(mx_err_http_status(MX_EUNAVAILABLE), 503);
    ck_assert_uint_eq(mx_err_http_status(MX_EINTERNAL), 500);
    /* the engine's close code for a refused token is the list's */
    ck_assert_int_eq(mx_err_close_code(MX_EUNAUTHORIZED), MX_CLOSE_UNAUTHORIZED);
}
END_TEST

Suite *mx_suite_err(void)
{
    Suite *s = suite_create("err");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, docs_table_matches_the_list);
    tcase_add_test(tc, every_entry_is_filled_and_unique);
    tcase_add_test(tc, out_of_range_reads_as_internal);
    tcase_add_test(tc, stable_values_and_statuses);
    suite_add_tcase(s, tc);
    return s;
}
