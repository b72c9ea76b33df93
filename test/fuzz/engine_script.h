/* engine_script.h - pieces of the engine script format (fuzz_engine.c's
 * header describes it) shared by the harnesses that run such scripts:
 * test/fuzz/fuzz_engine.c and test/unit/test_alloc_fail.c. */
#ifndef MOVEXD_TEST_ENGINE_SCRIPT_H
#define MOVEXD_TEST_ENGINE_SCRIPT_H

#include <stdint.h>
#include <string.h>

#include "movexd/digest.h"
#include "movexd/engine.h"
#include "movexd/oplog.h"
#include "movexd/room.h"

/* The next line of the script at *p (before end), '\n' excluded; *p moves
 * past it. 0 when the script is done. */
static inline int mx_script_next_line(const char **p, const char *end, const char **line, size_t *len)
{
    if (*p >= end)
        return 0;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    *len = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    *line = *p;
    *p += *len + (nl ? 1 : 0);
    return 1;
}

/* 1 when the edge drops this line of a connection that is closing: all
 * but the commands that switch, batch, commit, tick, reconnect or delete. */
static inline int mx_script_dropped_when_closing(const char *line, size_t len)
{
    return !(len >= 2 && line[0] == '@' && strchr("012bctxd", line[1]));
}

/* One line of a script, as a harness acts on it. */
struct mx_script_step {
    char cmd;         /* the letter after '@', MX_SCRIPT_REQUEST or MX_SCRIPT_DROPPED */
    const char *arg;  /* an @-command's argument (after the letter) */
    size_t alen;
    const char *line; /* the whole line */
    size_t len;
};
#define MX_SCRIPT_REQUEST '\0' /* a request line, for mx_engine_handle */
#define MX_SCRIPT_DROPPED '\1' /* dropped by the edge: the connection is closing */

/* The next step of the script at *p (before end); `closing`: the current
 * connection is closing. 0 when the script is done. */
static inline int mx_script_next(const char **p, const char *end, int closing, struct mx_script_step *st)
{
    if (!mx_script_next_line(p, end, &st->line, &st->len))
        return 0;
    int cmd = st->len >= 2 && st->line[0] == '@';
    st->cmd = closing && mx_script_dropped_when_closing(st->line, st->len) ? MX_SCRIPT_DROPPED
              : cmd                                                      ? st->line[1]
                                                                         : MX_SCRIPT_REQUEST;
    st->arg = cmd ? st->line + 2 : NULL;
    st->alen = cmd ? st->len - 2 : 0;
    return 1;
}

/* @yN ROOM / @sN ROOM: the checksum room (rlen bytes) had at seq, as hex
 * (zeros when the engine does not know it any more). */
static inline void mx_script_since_checksum(mx_engine *e, const char *room, size_t rlen, uint64_t seq,
                                            char hex[MX_CHECKSUM_HEX])
{
    uint8_t sum[MX_DIGEST_LEN] = {0};
    struct mx_room *r = mx_engine_room(e, room, rlen);
    if (r) {
        const struct mx_oplog_entry *en = mx_oplog_get(r->log, seq + 1);
        if (seq == r->seq)
            memcpy(sum, r->checksum, MX_DIGEST_LEN);
        else if (en)
            memcpy(sum, en->prev, MX_DIGEST_LEN);
    }
    mx_digest_hex(sum, hex);
}

#endif
