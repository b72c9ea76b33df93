/* presence.h - ephemeral per-connection state in one room ("who is here",
 * cursors): never logged, never durable, not part of seq or checksum.
 *
 * A room's table holds one entry per connection that set a state: its
 * client id, its connection id, and the state as encoded JSON text. Changes
 * are coalesced: an entry changed several times before the next flush is
 * announced once, with its latest state (or as having left), and at most
 * once per `interval_ms` (the rate limit); what is not due yet stays dirty
 * for a later flush. The table is pure data: the engine decides who may
 * set what and whom to tell.
 */
#ifndef MOVEXD_PRESENCE_H
#define MOVEXD_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/proto.h"

struct mx_presence_entry {
    const void *owner; /* the connection (identity only, never dereferenced) */
    uint64_t conn;     /* its server-assigned id (welcome "conn") */
    char client[MX_CLIENT_ID_MAX + 1];
    size_t clientlen;
    char *state; /* encoded JSON; NULL: cleared, "left" not announced yet */
    size_t statelen;
    int dirty;        /* changed since it was last announced */
    int remote;       /* a connection of another cluster node (never re-published) */
    uint64_t sent_ms; /* when it was last announced (0: never) */
};

typedef struct mx_presence mx_presence;

/* Set owner's state to the JSON text state[0..len) (copied), or clear it
 * (state NULL: announced as left at the next flush, then removed). *pp is
 * created on first use. 0, or MX_ENOMEM (nothing changed). Clearing an
 * owner without an entry does nothing. */
int mx_presence_set(mx_presence **pp, const void *owner, uint64_t conn, const char *client,
                    size_t clientlen, const char *state, size_t len);

/* As mx_presence_set, for a connection of another cluster node
 * (cluster_presence.c): the entry is marked remote. */
int mx_presence_set_remote(mx_presence **pp, const void *owner, uint64_t conn, const char *client,
                           size_t clientlen, const char *state, size_t len);

/* Remove owner's entry at once (unsubscribe, disconnect). Returns 1 and
 * copies the entry's identity into *gone (its state NULL) when there was
 * one, so the caller can announce that it left; 0 otherwise. Frees the
 * table (*pp = NULL) when it becomes empty. */
int mx_presence_remove(mx_presence **pp, const void *owner, struct mx_presence_entry *gone);

/* Entries with a state, for a subscribe reply: calls fn for each one
 * except owner `except`. */
void mx_presence_each(const mx_presence *p, const void *except,
                      void (*fn)(void *ctx, const struct mx_presence_entry *en), void *ctx);

/* Announce what is due: fn for each dirty entry last announced at least
 * interval_ms before now_ms (state NULL: it left; the entry is removed
 * after fn). Returns 1 while dirty entries wait for their interval, else
 * 0. Frees the table (*pp = NULL) when it becomes empty. */
int mx_presence_flush(mx_presence **pp, uint64_t now_ms, uint64_t interval_ms,
                      void (*fn)(void *ctx, const struct mx_presence_entry *en), void *ctx);

/* 1 once the table is on the engine's list of tables to flush. */
int *mx_presence_listed(mx_presence *p);

size_t mx_presence_count(const mx_presence *p);
/* Bytes of all the room's presence states except owner's (which a set
 * replaces): what a subscribe reply lists, for max_presence_room_bytes. */
size_t mx_presence_bytes_without(const mx_presence *p, const void *owner);
void mx_presence_free(mx_presence *p);

#endif
