/* admin.h - the admin HTTP API (/admin/rooms...) behind a bearer token
 * read from admin_token_file; see docs/ADMIN.md. */
#ifndef MOVEXD_ADMIN_H
#define MOVEXD_ADMIN_H

#include <stddef.h>

#include "movexd/config.h"
#include "movexd/http.h"

struct lws;
struct mx_server;

/* Read the admin bearer token from cfg->admin_token_file (trailing newline
 * dropped; 16..255 bytes). 0, or -1 with err; no file configured disables
 * the admin API. */
int mx_admin_load_token(struct mx_server *s, const struct mx_config *cfg, char *err, size_t errlen);

/* A request for /admin/rooms...: answered now, or (an authorized POST)
 * after its body, by mx_admin_route from mx_http_body_done. 0 or -1. */
int mx_admin_request(struct mx_server *srv, struct lws *wsi, struct mx_http *h, const char *uri);
/* Route h->uri with h->method (and h->req for a POST). 0 or -1. */
int mx_admin_route(struct mx_server *srv, struct lws *wsi, struct mx_http *h);

#endif
