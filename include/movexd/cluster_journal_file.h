/* cluster_journal_file.h - the cluster journal (cluster_journal.h) on local
 * disk, so a node killed while Redis loses acknowledged writes can still
 * send its batches again after it restarts (issue #14, docs/CLUSTER.md
 * "The journal on disk").
 *
 * A directory of segments (NNNNNNNNNNNNNNNNNNNN.mxj, numbered upwards),
 * each an 8-byte magic (MXJRNL01) then a run of records `u32 length, u32
 * CRC32C, payload`: a batch as the journal keeps it (both heads with their
 * hash and incarnation), a forget, or Redis's epoch (every segment starts
 * with the current one). Records are written with one write(2) each as the
 * journal changes - before the acks of a batch leave the process - and
 * never fsynced: the page cache survives the process being killed, which
 * is the failure this covers; a machine crash can take the newest records
 * (see CLUSTER.md). A record cut short or damaged ends what is read of its
 * segment (a torn tail is ignored). Old segments go once no batch the
 * journal keeps came from them; the directory holds at most about twice
 * the journal's byte bound (older batches are evicted to keep it so).
 */
#ifndef MOVEXD_CLUSTER_JOURNAL_FILE_H
#define MOVEXD_CLUSTER_JOURNAL_FILE_H

#include <stddef.h>
#include <stdint.h>

struct mx_journal;
struct mx_jfile;

struct mx_jfile_stats {
    uint64_t segments, bytes;   /* on disk now */
    uint64_t records_read;      /* at open */
    uint64_t torn;              /* segments whose tail was cut short or damaged (at open) */
    uint64_t write_failures;    /* records that could not be written (a new segment follows) */
};

/* Check dir as mx_jfile_check_dir does (the same message), open (creating
 * every missing level) and lock directory dir,
 * read every segment into j oldest first (which must be empty and have no
 * sink), then start a new segment and make the file j's sink. epoch gets
 * the newest epoch recorded ("" when none). segment_bytes: a segment is
 * closed past this size; max_bytes: the directory's bound. 0, or -1 with a
 * message in err (the directory cannot be made, another process holds it,
 * a segment cannot be read). */
int mx_jfile_open(const char *dir, size_t segment_bytes, size_t max_bytes, struct mx_journal *j,
                  char *epoch, size_t epochlen, struct mx_jfile **out, char *err, size_t errlen);

/* Record Redis's epoch (the node's journal before it belongs to another
 * epoch: the caller forgets it too). */
void mx_jfile_epoch(struct mx_jfile *f, const char *epoch);

/* Stop being j's sink, close and unlock (the segments stay). */
void mx_jfile_close(struct mx_jfile *f);

void mx_jfile_stats(const struct mx_jfile *f, struct mx_jfile_stats *out);

/* For movexd -t and start-up alike: mx_dir_check (dircheck.h) of dir as
 * the "journal directory". Creates nothing. 0, or -1 with err. */
int mx_jfile_check_dir(const char *dir, char *err, size_t errlen);

#endif
