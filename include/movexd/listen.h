/* listen.h - the listening sockets: which address a socket is really bound
 * to and whether that is the configured `listen` address, finding the
 * sockets libwebsockets bound, and sockets passed by systemd (socket
 * activation, the sd_listen_fds(3) protocol, without libsystemd).
 *
 * Why check at all: libwebsockets 4.1 resolves the listen address with
 * getifaddrs(), and when that fails (e.g. a sandbox without AF_NETLINK) it
 * binds every address instead of failing, while its caller believes it is
 * on the configured one. */
#ifndef MOVEXD_LISTEN_H
#define MOVEXD_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* At most this many sockets are taken from systemd. */
#define MX_LISTEN_MAX_FDS 16
/* The first descriptor systemd passes (SD_LISTEN_FDS_START). */
#define MX_LISTEN_FDS_START 3

/* The numeric address of an AF_INET/AF_INET6 socket address ("127.0.0.1",
 * "::1", "0.0.0.0", "::") and its port. 0, or -1 for another family. */
int mx_listen_format(const struct sockaddr *sa, char *addr, size_t addrlen, int *port);

/* 1 when sa is a wildcard address (0.0.0.0 or ::), else 0. */
int mx_listen_is_wildcard(const struct sockaddr *sa);
/* 1 when sa is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z). */
int mx_listen_is_loopback(const struct sockaddr *sa);

/* Is a socket bound to `bound` what `configured` (struct mx_config's
 * listen_addr) asks for? "" (every address): any address. An IPv4 or IPv6
 * address: exactly that address (an IPv4 one also as ::ffff:a.b.c.d). An
 * interface name: not a wildcard, and a loopback address for the loopback
 * names "lo" and "localhost". 1 yes, 0 no (also for non-IP families). */
int mx_listen_addr_matches(const char *configured, const struct sockaddr *bound);

/* The listening TCP (AF_INET/AF_INET6) sockets of this process whose port
 * is `port` (any port when 0), in descriptor order: up to max into fds.
 * Returns how many there are (may exceed max). */
int mx_listen_find(int port, int *fds, int max);

/* The socket-activation variables: how many descriptors were passed to the
 * process `self` (LISTEN_PID must name it), 0 when none or meant for
 * another process, -1 when LISTEN_FDS or LISTEN_PID is malformed. */
int mx_listen_fds_from_env(const char *listen_pid, const char *listen_fds, pid_t self);

/* Sockets passed by systemd: reads and then unsets LISTEN_PID, LISTEN_FDS
 * and LISTEN_FDNAMES (so nothing started later inherits them), marks the
 * descriptors close-on-exec and checks that each is a listening TCP socket.
 * Returns the count (0: not socket-activated) with the descriptors
 * (MX_LISTEN_FDS_START...) in fds, or -1 with why. */
int mx_listen_inherited(int *fds, int max, char *why, size_t whylen);

/* The errno a plain bind() of a TCP socket to addr:port (addr: a numeric
 * address, or ""/NULL for every address) fails with right now, or 0 when it
 * works or addr is not numeric: to say why the listener could not be made
 * ("Address already in use"). */
int mx_listen_probe(const char *addr, int port);

#endif
