/* proto_encode.c - the server's messages on the wire: one encoder per
 * message type (see proto.h).
 *
 * The engine decides what to say; only this file knows field names and
 * their order. Every encoder appends one complete JSON object and never
 * fails half-way visibly: an allocation failure sets out->oom, and the
 * caller drops the whole buffer. Text that may come from a client (error
 * messages) is made valid UTF-8 here, so every message is valid text. Field
 * order is fixed and matches the examples in docs/PROTOCOL.md, which
 * test_proto.c checks byte for byte.
 */
#include "movexd/proto.h"

#include <stdio.h>
#include <string.h>

#include "movexd/err.h"
#include "movexd/numfmt.h"
#include "movexd/oplog.h"
#include "movexd/reducer.h"

/* {"type":"<type>"[,"id":N][,"room":"<room>"] with no closing brace. */
static void begin(mx_buf *out, const char *type, const struct mx_msg_head *h)
{
    mx_buf_puts(out, "{\"type\":\"");
    mx_buf_puts(out, type);
    mx_buf_putc(out, '"');
    if (h->has_id)
        mx_proto_field_u64(out, "id", h->id);
    if (h->room_field)
        mx_buf_append(out, h->room_field, h->room_fieldlen);
    else if (h->room)
        mx_proto_field_str(out, "room", h->room, h->roomlen);
}

static void field_bool_true(mx_buf *out, const char *name, int v)
{
    if (!v)
        return;
    mx_buf_puts(out, ",\"");
    mx_buf_puts(out, name);
    mx_buf_puts(out, "\":true");
}

static void field_code(mx_buf *out, int code, const char *message);

/* ,"name":<json> for pre-encoded JSON text; nothing when json is NULL. */
static void field_raw(mx_buf *out, const char *name, const char *json, size_t len)
{
    if (!json)
        return;
    mx_buf_puts(out, ",\"");
    mx_buf_puts(out, name);
    mx_buf_puts(out, "\":");
    mx_buf_append(out, json, len);
}

/* `,"name":` at o (namelen + 4 bytes, reserved by the caller). */
static char *put_name(char *o, const char *name, size_t namelen)
{
    o[0] = ',';
    o[1] = '"';
    memcpy(o + 2, name, namelen);
    o[namelen + 2] = '"';
    o[namelen + 3] = ':';
    return o + namelen + 4;
}

void mx_proto_field_u64n(mx_buf *out, const char *name, size_t namelen, uint64_t v)
{
    if (mx_buf_reserve(out, namelen + 4 + 20))
        return;
    char *o = put_name(out->mem + out->pre + out->len, name, namelen);
    o += mx_u64_digits(v, o);
    out->len = (size_t)(o - (out->mem + out->pre));
    *o = '\0';
}

/* The hex text of the last checksums encoded, per thread. An action's
 * checksum goes out up to four times (the entry's, the ack's "prev" and
 * "checksum", the fwd's "prev"), and its "prev" is the action before's
 * checksum: with these few kept, each checksum is encoded about once.
 * Keyed by the digest's bytes (two 64-bit words), so an entry is never
 * stale. */
#define HEX_KEPT 4
_Static_assert(MX_DIGEST_LEN == 16, "the kept digests are compared as two 64-bit words");
static _Thread_local struct {
    uint64_t w0, w1;
    char hex[2 * MX_DIGEST_LEN];
    int used;
} hex_kept[HEX_KEPT];
static _Thread_local unsigned hex_next;

void mx_proto_field_hexn(mx_buf *out, const char *name, size_t namelen, const uint8_t dig[MX_DIGEST_LEN])
{
    if (mx_buf_reserve(out, namelen + 4 + 2 + 2 * MX_DIGEST_LEN))
        return;
    char *o = put_name(out->mem + out->pre + out->len, name, namelen);
    *o++ = '"';
    uint64_t w0, w1;
    memcpy(&w0, dig, 8);
    memcpy(&w1, dig + 8, 8);
    unsigned i = 0;
    while (i < HEX_KEPT && !(hex_kept[i].used && hex_kept[i].w0 == w0 && hex_kept[i].w1 == w1))
        i++;
    if (i < HEX_KEPT) {
        memcpy(o, hex_kept[i].hex, 2 * MX_DIGEST_LEN);
    } else {
        mx_hex_encode(o, dig, MX_DIGEST_LEN);
        unsigned k = hex_next++ % HEX_KEPT;
        hex_kept[k].w0 = w0;
        hex_kept[k].w1 = w1;
        memcpy(hex_kept[k].hex, o, 2 * MX_DIGEST_LEN);
        hex_kept[k].used = 1;
    }
    o += 2 * MX_DIGEST_LEN;
    *o++ = '"';
    out->len = (size_t)(o - (out->mem + out->pre));
    *o = '\0';
}

void mx_proto_field_strn(mx_buf *out, const char *name, size_t namelen, const char *s, size_t len)
{
    if (mx_buf_reserve(out, namelen + 4))
        return;
    put_name(out->mem + out->pre + out->len, name, namelen);
    out->len += namelen + 4;
    mx_json_dump_string(s, len, out); /* terminates the text */
}

/* Bytes of the well-formed UTF-8 sequence at s (1..4), or 0 with *bad set
 * to the length of its maximal ill-formed subpart (at least 1): a lead
 * byte followed by the continuation bytes that could still have completed
 * it (Unicode §3.9, "U+FFFD substitution of maximal subparts", as
 * TextDecoder does). Overlongs, surrogates and code points above U+10FFFF
 * are ill-formed. */
static size_t utf8_seq(const unsigned char *s, size_t len, size_t *bad)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90; /* no overlongs */
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *bad = 1; /* continuation byte, C0, C1, F5..FF */
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= len || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

/* mx_proto_field_str for text that may not be valid UTF-8: each maximal
 * ill-formed subpart becomes U+FFFD. */
static void field_str_utf8(mx_buf *out, const char *name, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n, bad = 0;
    while (i < len && (n = utf8_seq(p + i, len - i, &bad)))
        i += n;
    if (i == len) {
        mx_proto_field_strn(out, name, strlen(name), s, len);
        return;
    }
    mx_buf t;
    mx_buf_init(&t, 0);
    mx_buf_append(&t, s, i);
    while (i < len) {
        n = utf8_seq(p + i, len - i, &bad);
        if (n) {
            mx_buf_append(&t, s + i, n);
            i += n;
        } else {
            mx_buf_append(&t, "\xEF\xBF\xBD", 3); /* U+FFFD */
            i += bad;
        }
    }
    if (t.oom)
        out->oom = 1; /* never the unchecked text */
    else
        mx_proto_field_strn(out, name, strlen(name), mx_buf_data(&t), t.len);
    mx_buf_free(&t);
}

/* "code" and "message" of an error or reject. The message is often built
 * from what a client sent (a type name, a parser's complaint, text cut at a
 * buffer's end), so it is made valid UTF-8 here: a reply must be valid text
 * whatever the error. */
static void field_code(mx_buf *out, int code, const char *message)
{
    const char *msg = message && *message ? message : mx_err_message(code);
    if (code == MX_EAPP_REJECT) {
        /* a reducer's own code, kept as "CODE MESSAGE" (reducer.h) */
        const char *app;
        size_t applen;
        mx_reducer_reject_code(message, &app, &applen, &msg);
        mx_proto_field_str(out, "code", app, applen);
    } else {
        mx_proto_field_str(out, "code", mx_err_code(code), strlen(mx_err_code(code)));
    }
    field_str_utf8(out, "message", msg, strlen(msg));
}

void mx_proto_welcome(mx_buf *out, const struct mx_msg_welcome *m)
{
    begin(out, "welcome", &m->h);
    mx_proto_field_str(out, "client", m->client, m->clientlen);
    if (m->conn)
        mx_proto_field_u64(out, "conn", m->conn);
    mx_proto_field_str(out, "server", m->server, strlen(m->server));
    mx_buf_puts(out, ",\"limits\":{\"max_message_bytes\":");
    mx_buf_put_u64(out, m->max_message_bytes);
    mx_proto_field_u64(out, "max_depth", m->max_depth);
    mx_proto_field_u64(out, "max_queue_bytes", m->max_queue_bytes);
    mx_proto_field_u64(out, "max_rooms", m->max_rooms);
    mx_proto_field_u64(out, "dedup_window", m->dedup_window);
    mx_buf_puts(out, "}}");
}

void mx_proto_created(mx_buf *out, const struct mx_msg_created *m)
{
    begin(out, "created", &m->h);
    mx_proto_field_u64(out, "seq", m->seq);
    mx_proto_field_hex(out, "checksum", m->checksum);
    mx_buf_putc(out, '}');
}

void mx_proto_snapshot(mx_buf *out, const struct mx_msg_snapshot *m)
{
    begin(out, "snapshot", &m->h);
    mx_proto_field_u64(out, "seq", m->seq);
    mx_proto_field_hex(out, "checksum", m->checksum);
    mx_proto_field_u64(out, "next_n", m->next_n);
    mx_buf_puts(out, ",\"state\":");
    if (mx_json_dump(m->state, out))
        out->oom = 1; /* never a message with half a state */
    field_raw(out, "presence", m->presence, m->presencelen);
    mx_buf_putc(out, '}');
}

void mx_proto_actions(mx_buf *out, const struct mx_msg_actions *m)
{
    begin(out, "actions", &m->h);
    mx_proto_field_u64(out, "from", m->from);
    mx_proto_field_u64(out, "to", m->to);
    mx_proto_field_u64(out, "next_n", m->next_n);
    mx_buf_puts(out, ",\"actions\":[");
    for (uint64_t s = m->from + 1; s <= m->to; s++) {
        const struct mx_oplog_entry *en = mx_oplog_get(m->log, s);
        if (!en) { /* the engine checked the log covers from..to */
            out->oom = 1;
            return;
        }
        if (s > m->from + 1)
            mx_buf_putc(out, ',');
        mx_buf_append(out, en->text, en->len);
    }
    mx_buf_putc(out, ']');
    field_raw(out, "presence", m->presence, m->presencelen);
    mx_buf_putc(out, '}');
}

void mx_proto_ack(mx_buf *out, const struct mx_msg_ack *m)
{
    begin(out, "ack", &m->h);
    mx_proto_field_u64(out, "n", m->n);
    mx_proto_field_u64(out, "seq", m->seq);
    mx_proto_field_hex(out, "prev", m->prev);
    mx_proto_field_hex(out, "checksum", m->checksum);
    field_bool_true(out, "duplicate", m->duplicate);
    if (m->effects) {
        mx_buf_puts(out, ",\"effects\":");
        if (mx_json_dump_jansson(m->effects, out))
            out->oom = 1; /* never an ack with half its effects */
    }
    mx_buf_putc(out, '}');
}

void mx_proto_reject(mx_buf *out, const struct mx_msg_reject *m)
{
    begin(out, "reject", &m->h);
    mx_proto_field_u64(out, "n", m->n);
    field_code(out, m->code, m->message);
    mx_proto_field_u64(out, "seq", m->seq);
    mx_proto_field_hex(out, "checksum", m->checksum);
    field_bool_true(out, "duplicate", m->duplicate);
    mx_buf_putc(out, '}');
}

void mx_proto_fwd(mx_buf *out, const struct mx_msg_fwd *m)
{
    begin(out, "fwd", &m->h);
    mx_proto_field_hex(out, "prev", m->prev);
    if (m->entrylen < 2 || m->entry[0] != '{') {
        out->oom = 1; /* not an encoded entry: never send a broken fwd */
        return;
    }
    mx_buf_putc(out, ',');
    mx_buf_append(out, m->entry + 1, m->entrylen - 1); /* the entry's fields and its '}' */
}

void mx_proto_pong(mx_buf *out, const struct mx_msg_head *h)
{
    begin(out, "pong", h);
    mx_buf_putc(out, '}');
}

void mx_proto_unsubscribed(mx_buf *out, const struct mx_msg_head *h)
{
    begin(out, "unsubscribed", h);
    mx_buf_putc(out, '}');
}

void mx_proto_presence(mx_buf *out, const struct mx_msg_presence *m)
{
    begin(out, "presence", &m->h);
    mx_proto_field_str(out, "client", m->client, m->clientlen);
    mx_proto_field_u64(out, "conn", m->conn);
    if (m->state)
        field_raw(out, "state", m->state, m->statelen);
    else
        field_bool_true(out, "left", 1);
    mx_buf_putc(out, '}');
}

void mx_proto_presence_ok(mx_buf *out, const struct mx_msg_head *h)
{
    begin(out, "presence_ok", h);
    mx_buf_putc(out, '}');
}

void mx_proto_presence_entry(mx_buf *out, const struct mx_msg_presence *m)
{
    mx_buf_puts(out, "{\"client\":");
    mx_json_dump_string(m->client, m->clientlen, out);
    mx_proto_field_u64(out, "conn", m->conn);
    field_raw(out, "state", m->state ? m->state : "null", m->state ? m->statelen : 4);
    mx_buf_putc(out, '}');
}

void mx_proto_error_msg(mx_buf *out, const struct mx_msg_error *m)
{
    begin(out, "error", &m->h);
    field_code(out, m->code, m->message);
    mx_buf_putc(out, '}');
}

void mx_proto_error(mx_buf *out, int has_id, uint64_t id, int err, const char *message)
{
    struct mx_msg_error m = {.h = {.has_id = has_id, .id = id}, .code = err, .message = message};
    mx_proto_error_msg(out, &m);
}

int mx_proto_entry(mx_buf *out, const struct mx_msg_entry *m)
{
    mx_buf_puts(out, "{\"seq\":");
    mx_buf_put_u64(out, m->seq);
    mx_proto_field_hex(out, "checksum", m->checksum);
    mx_buf_puts(out, ",\"action\":");
    if (m->action_text)
        mx_buf_append(out, m->action_text, m->action_len);
    else if (mx_json_dump_jansson(m->action, out))
        return -1;
    mx_proto_field_str(out, "client", m->client, m->clientlen);
    mx_proto_field_u64(out, "n", m->n);
    if (m->has_ctx) {
        /* what an app reducer saw, logged with its effects (seed as text:
         * a 64-bit number does not survive JSON numbers) */
        char hex[17];
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)m->seed);
        mx_proto_field_u64(out, "time", m->time_ms);
        mx_proto_field_str(out, "seed", hex, 16);
    }
    if (m->effects) {
        mx_buf_puts(out, ",\"effects\":");
        if (mx_json_dump_jansson(m->effects, out))
            return -1;
    }
    mx_buf_putc(out, '}');
    return out->oom ? -1 : 0;
}
