/* dlist.h - an intrusive doubly-linked list with a head and a tail: O(1)
 * append and O(1) removal of any member. The link lives inside the listed
 * object (container: offsetof); a member is in at most one list per link. */
#ifndef MOVEXD_DLIST_H
#define MOVEXD_DLIST_H
#include <stddef.h>

struct mx_dlink {
    struct mx_dlink *next, *prev;
};

struct mx_dlist {
    struct mx_dlink *head, *tail;
};

static inline void mx_dlist_append(struct mx_dlist *l, struct mx_dlink *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

static inline void mx_dlist_remove(struct mx_dlist *l, struct mx_dlink *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->next = n->prev = NULL;
}
#endif
