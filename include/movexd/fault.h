/* fault.h - test-build fault injection for the files that must be durable
 * (the WAL and atomic files). Compiled in only with -DMX_FAULT_INJECTION
 * (the asan variants); in release builds the macros are the constant 0.
 * docs/STORAGE.md "Fault injection" describes the FAULT file. */
#ifndef MOVEXD_FAULT_H
#define MOVEXD_FAULT_H

#include "movexd/wal.h" /* mx_wal_fault */

#ifdef MX_FAULT_INJECTION
/* The errno DIR/FAULT asks to inject now (dirfd: the directory, open). */
int mx_fault_at(int dirfd);
#define MX_FAULT_FD(dirfd) mx_fault_at(dirfd)
#define MX_FAULT_DIR(dir) mx_wal_fault(dir)
#else
#define MX_FAULT_FD(dirfd) 0
#define MX_FAULT_DIR(dir) 0
#endif

#endif
