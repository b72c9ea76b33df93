/* heaptrim.c - giving the memory of a connection storm back to the system.
 *
 * A TLS handshake allocates ~35 KB that it frees when it completes (OpenSSL's
 * record buffers - lws sets SSL_MODE_RELEASE_BUFFERS -, key shares, the
 * certificate chain), between the blocks that stay live for the connection
 * (~18 KB, OpenSSL's SSL object and cipher contexts). When many handshakes
 * run at once - clients reconnecting after a restart or a network blip -
 * those freed blocks lie between live ones all over the heap: glibc reuses
 * them for later allocations but cannot shrink the heap from its top, so
 * the daemon stays at the storm's peak, 55 KB per idle TLS connection after
 * 1,000 at once instead of ~23 KB (docs/PERFORMANCE.md "TLS").
 * malloc_trim(0) releases the whole free pages inside the heap too
 * (madvise), which gets it back.
 *
 * When: once the storm is over - at a tick (once a second) with no
 * connection opened or closed since the tick before, after at least
 * MX_HEAPTRIM_CHURN of them since the last trim. Never during a storm
 * (its handshakes would fault the pages straight back in), never on a
 * quiet daemon (nothing to give back), at most once a second. A trim walks
 * glibc's free lists: O(free chunks), well under the loop's tick budget at
 * the sizes measured.
 *
 * Invariant: the loop thread only (the counters are plain integers). */
#include "movexd/heaptrim.h"

#include <malloc.h>

static unsigned churn_since_trim; /* connections opened or closed since the last trim */
static unsigned churn_this_tick;  /* ... since the last tick */
static uint64_t trims;

void mx_heaptrim_churn(void)
{
    churn_since_trim++;
    churn_this_tick++;
}

int mx_heaptrim_tick(void)
{
    int quiet = churn_this_tick == 0;
    churn_this_tick = 0;
    if (!quiet || churn_since_trim < MX_HEAPTRIM_CHURN)
        return 0;
    churn_since_trim = 0;
    malloc_trim(0);
    trims++;
    return 1;
}

uint64_t mx_heaptrim_count(void)
{
    return trims;
}
