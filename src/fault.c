/* fault.c - fault injection for test builds (-DMX_FAULT_INJECTION): before
 * each write, fdatasync and fallocate of a durable file, the WAL writer and
 * atomic files ask whether a file named FAULT in their directory tells them
 * to fail, and with which errno. Reading the file on every call lets a test
 * switch faults on and off while the daemon runs. Release builds compile
 * none of this (fault.h turns the checks into 0).
 */
#include "movexd/fault.h"

#ifdef MX_FAULT_INJECTION
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "movexd/wal_common.h"

static int fault_from_fd(int fd)
{
    if (fd < 0)
        return 0;
    char text[32];
    ssize_t n;
    do
        n = read(fd, text, sizeof text - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return 0;
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' ||
                     text[n - 1] == '\t'))
        n--;
    text[n] = '\0';
    if (strcmp(text, "enospc") == 0)
        return ENOSPC;
    if (strcmp(text, "edquot") == 0)
        return EDQUOT;
    if (strcmp(text, "eio") == 0)
        return EIO;
    return 0;
}

int mx_wal_fault(const char *dir)
{
    char *p = mx_path_join(dir, "FAULT", "");
    if (!p)
        return 0;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    free(p);
    return fault_from_fd(fd);
}

int mx_fault_at(int dirfd) { return fault_from_fd(openat(dirfd, "FAULT", O_RDONLY | O_CLOEXEC)); }
#endif
