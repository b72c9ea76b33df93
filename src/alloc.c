/* alloc.c - the allocation seam (alloc.h): plain libc in normal builds; in
 * MX_FAULT_INJECTION builds, a counter that makes one chosen allocation
 * fail, so tests can walk every ENOMEM branch the code under test reaches.
 *
 * Invariants: a failed allocation changes nothing (a failed mx_realloc
 * leaves the block as it was, like realloc); at most one allocation fails
 * per reset; nothing is counted while counting is disabled.
 */
#include "movexd/alloc.h"

static uint64_t json_failures;

void *mx_json_malloc(size_t n)
{
    void *p = mx_malloc(n);
    json_failures += !p;
    return p;
}

uint64_t mx_json_alloc_failures(void) { return json_failures; }

json_t *mx_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err, int *oom)
{
    uint64_t before = json_failures;
    json_t *j = json_loadb(buf, len, flags, err);
    *oom = json_failures != before || (!j && json_error_code(err) == json_error_out_of_memory);
    if (*oom) {
        json_decref(j);
        return NULL;
    }
    return j;
}

#ifdef MX_FAULT_INJECTION
static uint64_t fail_at, counted;
static int enabled, fired;

void mx_alloc_fault_reset(uint64_t n)
{
    fail_at = n;
    counted = 0;
    enabled = 0;
    fired = 0;
}

void mx_alloc_fault_enable(int on) { enabled = on; }
uint64_t mx_alloc_fault_count(void) { return counted; }
int mx_alloc_fault_fired(void) { return fired; }

/* 1 when this allocation is the one to fail. */
static int fail_now(void)
{
    if (!enabled)
        return 0;
    if (++counted != fail_at)
        return 0;
    fired = 1;
    return 1;
}

void *mx_malloc(size_t n) { return fail_now() ? NULL : malloc(n); }
void *mx_calloc(size_t n, size_t size) { return fail_now() ? NULL : calloc(n, size); }
void *mx_realloc(void *p, size_t n) { return fail_now() ? NULL : realloc(p, n); }
char *mx_strdup(const char *s) { return fail_now() ? NULL : strdup(s); }
#endif
