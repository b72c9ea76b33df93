/* tls.h - the listener's certificate: reloading it in place (SIGHUP). */
#ifndef MOVEXD_TLS_H
#define MOVEXD_TLS_H

struct mx_server;

/* Re-read the certificate and key files named in the conf and swap them in
 * for new connections (existing ones keep theirs). 0 or -1 (logged). */
int mx_tls_reload(struct mx_server *s);

#endif
