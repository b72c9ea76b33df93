/* notify.h - the systemd notification protocol (sd_notify) without
 * libsystemd: one datagram to $NOTIFY_SOCKET per message. Does nothing when
 * the variable is unset (not started by systemd). */
#ifndef MOVEXD_NOTIFY_H
#define MOVEXD_NOTIFY_H

#include <stdint.h>

/* Send e.g. "READY=1", "STATUS=...", "WATCHDOG=1". Returns 0 when sent or
 * not under systemd, -1 on error (logged once). */
int mx_notify(const char *msg);

/* The watchdog interval systemd expects keep-alives within ($WATCHDOG_USEC,
 * honouring $WATCHDOG_PID), or 0 when there is no watchdog. */
uint64_t mx_notify_watchdog_usec(void);

#endif
