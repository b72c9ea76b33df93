/* movexctl.h - what the parts of tools/movexctl share. */
#ifndef MOVEXCTL_H
#define MOVEXCTL_H

/* `movexctl check-data DIR`: verify a data directory offline, read-only
 * (check_data.c). Prints one JSON line per room and per damage found, then a
 * summary line. Returns the exit code: 0 intact, 1 damage found, 2 DIR is
 * not a data directory. */
int mx_ctl_check_data(const char *dir);

#endif
