/* test_rand.h - the unit tests' deterministic random numbers: xorshift64
 * over a state the test owns, so a failing sequence reproduces run after
 * run and no libc rand() state is shared between tests. */
#ifndef MX_TEST_RAND_H
#define MX_TEST_RAND_H

#include <stdint.h>

static inline uint64_t mx_test_xorshift(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

#endif
