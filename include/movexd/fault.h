/* fault.h - test-build fault injection for the files that must be durable
 * (the WAL and atomic files). Compiled in only with -DMX_FAULT_INJECTION
 * (the asan variants); in release builds the macros are the constant 0.
 * docs/STORAGE.md "Fault injection" describes the FAULT file. */
#ifndef MOVEXD_FAULT_H
#define MOVEXD_FAULT_H

#include "movexd/wal.h" /* mx_wal_fault */

#include <stdint.h>
#include <unistd.h>

#ifdef MX_FAULT_INJECTION
/* The errno DIR/FAULT asks to inject now (dirfd: the directory, open).
 * With "powercut SEED COUNT" in it, the COUNT-th check from then on
 * simulates a power cut (see fault.c) and never returns. */
int mx_fault_at(int dirfd);
/* The power-cut journal: bytes [off, off+len) of fd were written and are
 * not durable until an fdatasync of the file succeeds. */
void mx_fault_wrote(int fd, uint64_t off, uint64_t len);
/* fdatasync(fd) that also forgets the file's written ranges when it
 * succeeds. -1 with errno set on failure. */
int mx_fault_fdatasync(int fd);
/* The errno the unlink of a deleted room's snapshot in DIR must fail
 * with: EIO while DIR/FAULT holds "unlink-eio" (a word no other check
 * reads, so snapshots keep being written meanwhile), else 0. */
int mx_fault_unlink(const char *dir);
#define MX_FAULT_FD(dirfd) mx_fault_at(dirfd)
#define MX_FAULT_UNLINK(dir) mx_fault_unlink(dir)
#define MX_FAULT_DIR(dir) mx_wal_fault(dir)
#define MX_FAULT_WROTE(fd, off, len) mx_fault_wrote(fd, off, len)
#define MX_FDATASYNC(fd) mx_fault_fdatasync(fd)
#else
#define MX_FAULT_FD(dirfd) 0
#define MX_FAULT_UNLINK(dir) 0
#define MX_FAULT_DIR(dir) 0
#define MX_FAULT_WROTE(fd, off, len) ((void)0)
#define MX_FDATASYNC(fd) fdatasync(fd)
#endif

#endif
