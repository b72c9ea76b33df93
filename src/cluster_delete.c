/* cluster_delete.c - the admin API's room deletion in cluster mode (issue
 * #14, docs/CLUSTER.md "Deleting a room"): one FCALL movexd_delete removes
 * every key of the room at once and publishes "delete INC" on its
 * channel; every node holding the room drops it and tells its subscribers
 * exactly as single-node deletion does (error no_such_room "the room was
 * deleted", docs/PROTOCOL.md), and its presence goes with it.
 *
 * What it owns: a room's pending delete (cr->delete_due, del_msg, the
 * answer in del_done/del_err) and the deletes heard from other nodes
 * (deleted_seen, deleted_inc).
 *
 * Invariants:
 * - a delete is sent only while the room is idle with nothing forming
 *   (batches decided before it go first); from the request on, the room's
 *   new requests queue behind it (cn_del_pending), so they are handled on
 *   what the delete left - no such room, or a room created anew;
 * - the engine is touched only from cn_del_drain (drain, cluster_room.h's
 *   threading rule): the callbacks only record;
 * - a delete heard names the incarnation deleted: a node holding another
 *   one (created again since) keeps it - a late message never drops a
 *   newer room.
 */
#include "movexd/alloc.h"
#include "movexd/cluster_journal.h"
#include "movexd/cluster_room.h"
#include "movexd/engine.h"
#include "movexd/err.h"
#include "movexd/log.h"
#include "movexd/redis_adapter.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

int cn_del_pending(const struct cn_room *cr)
{
    return cr->delete_due || cr->del_msg.msg || cr->deleted_seen;
}

int mx_cnode_delete(struct mx_cnode *n, struct mx_conn *c, const char *room, size_t len)
{
    if (!mx_cnode_ready(n))
        return MX_EUNAVAILABLE;
    struct cn_room *cr = cn_room_get(n, room, len, 1);
    if (!cr)
        return MX_ENOMEM;
    if (cr->del_msg.msg)
        return MX_EUNAVAILABLE; /* one delete of a room at a time: the first one's answer says it */
    if (cn_msg_copy(n, &cr->del_msg, c, "delete", 6, 0, 0))
        return MX_ENOMEM;
    cr->delete_due = 1;
    cr->del_done = 0;
    cn_due(n, cr); /* drain sends it once the room is idle */
    return 0;
}

/* Forget everything of the room this node knew: its replica (subscribers
 * told `why`), its journal batches (they belong to a room that is gone;
 * the incarnation would refuse them anyway), its snapshot mark. */
static void forget(struct mx_cnode *n, struct cn_room *cr, int tell)
{
    if (mx_engine_room(n->e, cr->id, cr->idlen)) {
        cr->drop_room = 1;
        cr->drop_tell = tell;
    }
    mx_journal_forget(n->journal, cr->id, UINT64_MAX, 0);
    cr->known = 0;
    cr->fwd_seq = 0;
    cr->snap_seq = 0;
    cr->seen_seq = cr->seen_sub = 0;
    memset(&cr->head, 0, sizeof cr->head);
}

static void on_deleted(struct mx_redis *rd, redisReply *rep, void *priv)
{
    struct cn_room *cr = priv;
    struct mx_cnode *n = cr->node;
    (void)rd;
    cr->busy = CN_IDLE;
    cr->del_done = 1;
    int deleted = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
                  rep->element[0]->type == REDIS_REPLY_STRING && !strcmp(rep->element[0]->str, "deleted");
    int none = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
               rep->element[0]->type == REDIS_REPLY_STRING && !strcmp(rep->element[0]->str, "none");
    if (deleted) {
        mx_info("event=cluster_room_deleted room=%s", cr->id);
        cr->del_err = 0;
        forget(n, cr, MX_FORGET_DELETED);
    } else if (none) {
        cr->del_err = MX_ENO_SUCH_ROOM;
        forget(n, cr, MX_FORGET_GONE); /* a replica of a room Redis no longer has */
    } else {
        /* the outcome is unknown (a timeout says nothing about it): the
         * replica is loaded again before use - a load finding no room
         * drops it then */
        mx_warn("event=cluster_delete_failed room=%s error=\"%s\"", cr->id,
                !rep ? "link down" : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        cr->del_err = MX_EUNAVAILABLE;
        cr->known = 0;
        cn_library_check(n, rep && rep->type == REDIS_REPLY_ERROR ? rep->str : NULL);
    }
    cn_due(n, cr);
}

void cn_del_send(struct mx_cnode *n, struct cn_room *cr)
{
    cr->delete_due = 0;
    cr->busy = CN_DELETING;
    const char *p = n->cfg->cluster.key_prefix;
    static const char *const suffix[] = { "head", "log", "hi", "dd", "snap" };
    char keys[5][300];
    const char *argv[9] = { "FCALL", "movexd_delete", "5" };
    size_t lens[9] = { 5, 13, 1 };
    for (int i = 0; i < 5; i++) {
        snprintf(keys[i], sizeof keys[i], "%s{%s}:%s", p, cr->id, suffix[i]);
        argv[3 + i] = keys[i];
        lens[3 + i] = strlen(keys[i]);
    }
    argv[8] = cr->channel;
    lens[8] = strlen(cr->channel);
    mx_redis_command(n->cmd, 9, argv, lens, on_deleted, cr);
}

void cn_del_message(struct mx_cnode *n, struct cn_room *cr, const char *inc, size_t len)
{
    if (len > MX_CLUSTER_INC_MAX)
        return;
    if (!cr->known && !cr->busy && !mx_engine_room(n->e, cr->id, cr->idlen))
        return; /* nothing of it here: a load finds no room */
    memcpy(cr->deleted_inc, inc, len);
    cr->deleted_inc[len] = '\0';
    cr->deleted_seen = 1;
    cn_due(n, cr);
}

void cn_del_drain(struct mx_cnode *n, struct cn_room *cr)
{
    if (cr->busy)
        return;
    if (cr->deleted_seen) {
        cr->deleted_seen = 0;
        /* a replica of another incarnation (created again since the
         * delete) stays; one of the deleted room, or one not yet known
         * (the load may have read it before the delete), goes */
        if (!cr->known || !strcmp(cr->deleted_inc, cr->head.inc)) {
            mx_info("event=cluster_room_deleted room=%s note=\"deleted by another node\"", cr->id);
            forget(n, cr, MX_FORGET_DELETED);
        }
    }
    if (cr->drop_room) {
        /* subscribers are told before the requester hears it is done */
        cr->drop_room = 0;
        struct mx_room *r = mx_engine_room(n->e, cr->id, cr->idlen);
        if (r)
            mx_engine_forget_room(n->e, r, cr->drop_tell);
    }
    if (cr->del_done && cr->del_msg.msg) {
        cr->del_done = 0;
        if (cr->del_msg.conn)
            mx_engine_admin_deleted(n->e, cr->del_msg.conn, cr->del_err);
        cn_msg_free(n, &cr->del_msg);
    }
    if (cr->delete_due && !cr->nforming)
        cn_mark_dirty(n, cr); /* sent at this flush */
}
