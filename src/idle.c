/* idle.c - the idle-connection policy (idle_timeout_ms) without a timer per
 * connection.
 *
 * libwebsockets 4.1.6 keeps every timer of every connection in one list
 * sorted by due time, and inserts by walking it from the earliest: its
 * ping/hang-up timer (retry_and_idle_policy), armed for every new
 * connection at "now + the same delay", lands at the end after a walk over
 * all the others - O(connections) per connection, which made a reconnect
 * storm of 10,000 clients spend a third of its CPU in lws_dll2_add_sorted
 * (docs/PERFORMANCE.md). Here the delay is the same for every connection,
 * so one FIFO list ordered by the last sign of life is enough:
 *
 * Invariants: the list is sorted by since_us (a node that shows life moves
 * to the tail with since_us = now, and now never decreases); the nodes
 * before `unpinged` have been pinged since their last sign of life, the
 * ones from it on have not. So expiry looks only at the head (hang-up) and
 * at `unpinged` (ping), each step O(1), and stops at the first node that is
 * not due. A sign of life within MX_IDLE_GRAIN_US of the recorded one is
 * not recorded (the node does not move): the busiest connection costs a
 * few pointer writes ten times a second, and a quiet one is seen as quiet
 * at most that much early.
 */
#include "movexd/idle.h"

static struct mx_idle_node *node(struct mx_dlink *l) { return (struct mx_idle_node *)l; }

static void unlink_node(struct mx_idle *w, struct mx_idle_node *n)
{
    if (w->unpinged == n)
        w->unpinged = node(n->link.next);
    mx_dlist_remove(&w->list, &n->link);
    n->linked = 0;
    w->n--;
}

static void append(struct mx_idle *w, struct mx_idle_node *n, uint64_t now_us)
{
    n->since_us = now_us;
    n->pinged = 0;
    n->linked = 1;
    mx_dlist_append(&w->list, &n->link);
    if (!w->unpinged)
        w->unpinged = n;
    w->n++;
}

void mx_idle_add(struct mx_idle *w, struct mx_idle_node *n, uint64_t now_us)
{
    if (n->linked)
        unlink_node(w, n);
    append(w, n, now_us);
}

void mx_idle_remove(struct mx_idle *w, struct mx_idle_node *n)
{
    if (n->linked)
        unlink_node(w, n);
}

void mx_idle_alive(struct mx_idle *w, struct mx_idle_node *n, uint64_t now_us)
{
    if (!n->linked || (!n->pinged && now_us - n->since_us < MX_IDLE_GRAIN_US))
        return;
    unlink_node(w, n);
    append(w, n, now_us);
}

size_t mx_idle_expire(struct mx_idle *w, uint64_t now_us, uint64_t ping_us, uint64_t hangup_us,
                      void (*ping)(struct mx_idle_node *n, void *ctx),
                      void (*hangup)(struct mx_idle_node *n, void *ctx), void *ctx)
{
    size_t gone = 0;
    while (w->list.head && now_us - node(w->list.head)->since_us >= hangup_us) {
        struct mx_idle_node *n = node(w->list.head);
        unlink_node(w, n);
        gone++;
        hangup(n, ctx);
    }
    while (w->unpinged && now_us - w->unpinged->since_us >= ping_us) {
        struct mx_idle_node *n = w->unpinged;
        w->unpinged = node(n->link.next);
        n->pinged = 1;
        ping(n, ctx);
    }
    return gone;
}
