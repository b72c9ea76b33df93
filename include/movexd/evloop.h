/* evloop.h - which event loop libwebsockets runs on (evloop.c). */
#ifndef MOVEXD_EVLOOP_H
#define MOVEXD_EVLOOP_H

#include <stddef.h>

#include "movexd/config.h"

/* 1 when lws's libuv plugin can be loaded, found the way
 * lws_create_context() looks for it; else 0 with the reason in why. */
int mx_evloop_uv_available(char *why, size_t whylen);

/* The loop to run for the setting want (the conf key `event_loop`, or
 * MOVEXD_EVLIB over it): MX_LOOP_UV or MX_LOOP_POLL. auto takes uv when the
 * plugin loads and poll otherwise, logging event=evlib_fallback (once per
 * call); uv without the plugin is -1 with the reason in err. */
int mx_evloop_choose(enum mx_event_loop want, char *err, size_t errlen);

#endif
