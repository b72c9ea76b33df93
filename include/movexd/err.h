/* err.h - every error the daemon reports, as values.
 *
 * Functions return 0 or a negative enum mx_err. One table (err.c) maps each
 * to its protocol code and a default message; docs/PROTOCOL.md lists the
 * same table. Keep the three in step.
 */
#ifndef MOVEXD_ERR_H
#define MOVEXD_ERR_H

enum mx_err {
    MX_OK = 0,
    MX_EBAD_REQUEST = -1,  /* malformed or invalid request */
    MX_EBAD_JSON = -2,     /* not JSON / not an object / not UTF-8 */
    MX_EUNKNOWN_TYPE = -3, /* unknown message type */
    MX_EHELLO_FIRST = -4,  /* request before hello */
    MX_EUNAUTHORIZED = -5,
    MX_EFORBIDDEN = -6,
    MX_ENO_SUCH_ROOM = -7,
    MX_EROOM_EXISTS = -8,
    MX_EBAD_ROOM = -9,     /* room id syntax */
    MX_ENOT_SUBSCRIBED = -10,
    MX_ETEST_FAILED = -11, /* a JSON Patch test op failed */
    MX_EBAD_PATCH = -12,   /* patch cannot apply (path, type, syntax) */
    MX_ESTALE = -13,       /* strict action, base != head */
    MX_EAFTER_REJECT = -14,/* dep was rejected */
    MX_ETOO_OLD = -15,     /* n older than exactly-once memory */
    MX_ETOO_LARGE = -16,   /* message or resulting state too large */
    MX_ERATE_LIMITED = -17,
    MX_EBAD_ACTION = -18,  /* action type not accepted by the reducer */
    MX_ETOO_DEEP = -19,    /* nesting deeper than the limit */
    MX_ELIMIT = -20,       /* a per-connection bound (rooms, ...) */
    MX_EUNAVAILABLE = -21, /* storage cannot make actions durable now */
    MX_ENOMEM = -22,
    MX_EBAD_DEP = -23,     /* dep names an action never decided */
    MX_EINTERNAL = -24,
};

#define MX_ERR_COUNT 25

const char *mx_err_code(int err);    /* "bad_request", ... */
const char *mx_err_message(int err); /* default human text */

#endif
