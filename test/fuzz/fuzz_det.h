/* fuzz_det.h - what the storage and engine harnesses share: libsodium's
 * randomness made deterministic (the maps' SipHash keys, client and room
 * ids), so one input always takes one path and a crash replays exactly; and
 * emptying a scratch directory between inputs. Each harness resets `rng`
 * per input and calls randombytes_set_implementation(&det_impl) once.
 * And the scratch directory itself, made once per process. */
#ifndef MOVEXD_TEST_FUZZ_DET_H
#define MOVEXD_TEST_FUZZ_DET_H

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng;

/* splitmix64's output step: cheap, and every bit of the state matters */
static uint32_t det_random(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)(z ^ (z >> 31));
}
static void det_buf(void *const buf, const size_t size)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < size; i++)
        p[i] = (unsigned char)det_random();
}
static const char *det_name(void) { return "fuzz-deterministic"; }
static randombytes_implementation det_impl = {
    .implementation_name = det_name, .random = det_random, .buf = det_buf};

/* Unlinks the files directly in dir (not subdirectories); a missing dir is
 * already empty. */
static inline void fuzz_empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char path[1200];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

/* Makes the harness's scratch directory, NAME-XXXXXX under $FUZZ_TMPDIR,
 * else $TMPDIR, else /tmp, into out (aborts when it cannot). */
static inline void fuzz_make_scratch(char *out, size_t size, const char *name)
{
    const char *t = getenv("FUZZ_TMPDIR");
    if (!t || !*t)
        t = getenv("TMPDIR");
    if (!t || !*t)
        t = "/tmp";
    snprintf(out, size, "%s/%s-XXXXXX", t, name);
    if (!mkdtemp(out)) {
        fprintf(stderr, "%s: mkdtemp %s: %s\n", name, out, strerror(errno));
        abort();
    }
}

#endif
