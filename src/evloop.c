/* evloop.c - which event loop libwebsockets runs on: libuv (epoll) through
 * lws's evlib plugin, or lws's own poll() loop; the conf key `event_loop`
 * (auto|uv|poll) decides, and this file checks that the plugin is there.
 *
 * Why a check of its own: Debian's lws 4.1.6 is built with
 * LWS_WITH_EVLIB_PLUGINS, so lws_create_context() with
 * LWS_SERVER_OPTION_LIBUV lists the directory LWS_INSTALL_LIBDIR (a
 * constant of the lws build, from lws_config.h), takes each file whose name
 * - cut after its first '_' or '-' and at its first '.' - is "evlib_uv"
 * (libwebsockets-evlib_uv.so), dlopen()s it with RTLD_NOW and looks up its
 * export "evlib_uv" of class "lws_evlib_plugin" (lib/core/context.c,
 * lib/misc/dir.c, lib/plat/unix/unix-plugins.c). When nothing loads, the
 * context creation fails as it does for a bad certificate, so afterwards
 * the daemon cannot tell "no plugin" from a real error. Before any context
 * exists, mx_evloop_uv_available() runs the same lookup through lws's
 * exported lws_plugins_init() on the same directory with the same class
 * and name: when it finds the plugin, lws_create_context() will too, and a
 * failure of the uv context is a real error (server.c reports it; no
 * fallback).
 *
 * Invariants: the check leaves nothing loaded (lws_plugins_destroy
 * dlclose()s what it opened); lws's log lines during the check become the
 * reason instead of reaching the log in lws's format, so the caller must
 * install its own lws log emitter afterwards (server.c does, before it
 * creates the context). */
#include "movexd/evloop.h"
#include "movexd/log.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <string.h>

/* The first error lws logs during a check (e.g. dlopen's message). */
static char check_error[512];

static void capture_lws_log(int level, const char *line)
{
    if (level != LLL_ERR || check_error[0])
        return;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    snprintf(check_error, sizeof check_error, "%.*s", (int)n, line);
}

int mx_evloop_uv_available(char *why, size_t whylen)
{
    static const char *const dirs[] = { LWS_INSTALL_LIBDIR, NULL };
    struct lws_plugin *found = NULL;
    check_error[0] = '\0';
    lws_set_log_level(LLL_ERR, capture_lws_log);
    lws_plugins_init(&found, dirs, "lws_evlib_plugin", "evlib_uv", NULL, NULL);
    if (found) {
        lws_plugins_destroy(&found, NULL, NULL);
        return 1;
    }
    if (check_error[0])
        snprintf(why, whylen, "%s", check_error);
    else
        snprintf(why, whylen, "no libwebsockets-evlib_uv.so in %s", LWS_INSTALL_LIBDIR);
    return 0;
}

int mx_evloop_choose(enum mx_event_loop want, char *err, size_t errlen)
{
    if (want == MX_LOOP_POLL)
        return MX_LOOP_POLL;
    char why[600];
    if (mx_evloop_uv_available(why, sizeof why))
        return MX_LOOP_UV;
    if (want == MX_LOOP_UV) {
        snprintf(err, errlen,
                 "event_loop uv: the libuv plugin of libwebsockets cannot be loaded (%s); install "
                 "the package libwebsockets-evlib-uv, or set event_loop auto or poll",
                 why);
        return -1;
    }
    mx_warn("event=evlib_fallback loop=poll reason=\"the libuv plugin of libwebsockets cannot be "
            "loaded (package libwebsockets-evlib-uv): %s\" note=\"lws's poll loop costs "
            "O(connections) per turn; event_loop poll chooses it without this warning\"",
            why);
    return MX_LOOP_POLL;
}
