/* heaptrim.h - giving a connection storm's freed memory back (heaptrim.c). */
#ifndef MOVEXD_HEAPTRIM_H
#define MOVEXD_HEAPTRIM_H

#include <stdint.h>

/* Connections opened or closed after this many since the last trim, then
 * one quiet tick, make a trim. */
#define MX_HEAPTRIM_CHURN 64

/* A WebSocket connection was opened or closed (server.c). */
void mx_heaptrim_churn(void);
/* Once a second (the loop's tick): trims the heap when at least
 * MX_HEAPTRIM_CHURN connections came or went since the last trim and none
 * since the last tick (the storm is over). 1 when it trimmed, else 0. */
int mx_heaptrim_tick(void);
/* Trims so far (movexd_heap_trims_total). */
uint64_t mx_heaptrim_count(void);

#endif
