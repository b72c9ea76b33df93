/* dircheck.h - a directory the daemon writes (data_dir, the cluster
 * journal): whether it can be used, and making it (dircheck.c). */
#ifndef MOVEXD_DIRCHECK_H
#define MOVEXD_DIRCHECK_H

#include <stddef.h>

/* dir is a readable, writable directory, or can be created (its nearest
 * existing ancestor is a writable directory), and is not on a filesystem
 * that cannot hold files (proc, sysfs, cgroup, ...). Creates nothing; the
 * same check for movexd -t and for start-up, so both refuse a path with
 * one message, which starts with what ("data directory"). 0, or -1 with
 * err. */
int mx_dir_check(const char *what, const char *dir, char *err, size_t errlen);

/* mkdir -p dir (mode 0700 for each level made). 0, or -1 with err. */
int mx_dir_make(const char *dir, char *err, size_t errlen);

#endif
