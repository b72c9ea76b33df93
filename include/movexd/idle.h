/* idle.h - which connections have been quiet too long (idle_timeout_ms),
 * in O(1) per event and per expiry, whatever the number of connections.
 * See src/idle.c. */
#ifndef MOVEXD_IDLE_H
#define MOVEXD_IDLE_H
#include <stddef.h>
#include <stdint.h>

#include "movexd/dlist.h"

/* Embedded in each watched connection. */
struct mx_idle_node {
    struct mx_dlink link; /* first: a link is its node */
    uint64_t since_us; /* last sign of life (as recorded: see mx_idle_alive) */
    int pinged;        /* a ping went out since then */
    int linked;
};

struct mx_idle {
    struct mx_dlist list;          /* of mx_idle_node.link, oldest sign of life first */
    struct mx_idle_node *unpinged; /* first node not pinged yet; all before it are */
    size_t n;
};

/* Signs of life closer together than this move a node only once. */
#define MX_IDLE_GRAIN_US 100000

void mx_idle_add(struct mx_idle *w, struct mx_idle_node *n, uint64_t now_us);
void mx_idle_remove(struct mx_idle *w, struct mx_idle_node *n);
/* The peer sent something (a message, a pong). */
void mx_idle_alive(struct mx_idle *w, struct mx_idle_node *n, uint64_t now_us);
/* Nodes quiet for at least ping_us get ping(n) once; nodes quiet for at
 * least hangup_us are taken out of w and get hangup(n). Returns how many
 * were hung up. */
size_t mx_idle_expire(struct mx_idle *w, uint64_t now_us, uint64_t ping_us, uint64_t hangup_us,
                      void (*ping)(struct mx_idle_node *n, void *ctx),
                      void (*hangup)(struct mx_idle_node *n, void *ctx), void *ctx);
#endif
