/* dircheck.c - a directory the daemon writes (data_dir, the cluster
 * journal's journal_dir): whether it can be used, and making it.
 *
 * movexd -t and start-up run the same check (mx_dir_check), so a path
 * start-up would refuse is refused by -t with the same message, without
 * creating anything. Start-up then makes every missing level
 * (mx_dir_make); a failure there is one the check cannot foresee (a race,
 * a full disk, a read-only remount).
 *
 * What the check knows: the nearest existing ancestor decides whether the
 * directory can be made (a writable directory); an existing directory is
 * also read at start (R_OK); and some filesystems look writable to root
 * (access() says yes) but cannot hold files: mkdir fails on proc and
 * sysfs, and on cgroup it makes a kernel object that refuses plain files.
 * They are named by statfs's f_type.
 */
#include "movexd/dircheck.h"

#include <errno.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define PATH_CAP 1024

/* The pseudo filesystem path is on, or NULL. */
static const char *pseudo_fs(const char *path)
{
    static const struct {
        unsigned long magic;
        const char *name;
    } known[] = {
        {PROC_SUPER_MAGIC, "proc"},       {SYSFS_MAGIC, "sysfs"},           {CGROUP_SUPER_MAGIC, "cgroup"},
        {CGROUP2_SUPER_MAGIC, "cgroup2"}, {DEVPTS_SUPER_MAGIC, "devpts"},   {DEBUGFS_MAGIC, "debugfs"},
        {TRACEFS_MAGIC, "tracefs"},       {SECURITYFS_MAGIC, "securityfs"}, {BPF_FS_MAGIC, "bpf"},
        {PSTOREFS_MAGIC, "pstore"},       {EFIVARFS_MAGIC, "efivarfs"},     {SELINUX_MAGIC, "selinuxfs"},
    };
    struct statfs sf;
    if (statfs(path, &sf) != 0)
        return NULL; /* the access check decides */
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if ((unsigned long)sf.f_type == known[i].magic)
            return known[i].name;
    return NULL;
}

int mx_dir_check(const char *what, const char *dir, char *err, size_t errlen)
{
    char p[PATH_CAP];
    if (!dir[0] || strlen(dir) >= sizeof p) {
        snprintf(err, errlen, "%s '%s': empty or too long", what, dir);
        return -1;
    }
    snprintf(p, sizeof p, "%s", dir);
    struct stat st;
    /* the nearest existing ancestor decides whether it can be made */
    while (stat(p, &st) != 0) {
        char *slash = strrchr(p, '/');
        int absent = errno == ENOENT || errno == ENOTDIR; /* ENOTDIR: a file on the way, found above */
        if (!absent || !slash) {
            if (absent) /* a relative name: the current directory */
                snprintf(p, sizeof p, ".");
            else {
                snprintf(err, errlen, "%s %s: %s: %s", what, dir, p, strerror(errno));
                return -1;
            }
        } else if (slash == p) {
            p[1] = '\0';
        } else {
            *slash = '\0';
        }
    }
    const char *fs = pseudo_fs(p);
    if (fs) {
        snprintf(err, errlen, "%s %s: %s is on a %s filesystem, which cannot hold files", what, dir, p, fs);
        return -1;
    }
    int exists = !strcmp(p, dir);
    if (!S_ISDIR(st.st_mode) || access(p, W_OK | X_OK | (exists ? R_OK : 0))) {
        snprintf(err, errlen, "%s %s: %s is not a writable directory", what, dir, p);
        return -1;
    }
    return 0;
}

int mx_dir_make(const char *dir, char *err, size_t errlen)
{
    char p[PATH_CAP];
    if (!dir[0] || strlen(dir) >= sizeof p) {
        snprintf(err, errlen, "%s: empty or too long", dir);
        return -1;
    }
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s: cannot create %s: %s", dir, p, strerror(errno));
            return -1;
        }
        *s = c;
        if (!c)
            return 0;
    }
}
