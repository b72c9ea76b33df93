/* fuzz_det.h - what the storage and engine harnesses share: libsodium's
 * randomness made deterministic (the maps' SipHash keys, client and room
 * ids), so one input always takes one path and a crash replays exactly; and
 * emptying a scratch directory between inputs. Each harness resets `rng`
 * per input and calls randombytes_set_implementation(&det_impl) once.
 * And the scratch directory itself, made once per process; and, for a
 * harness that defines FUZZ_NAME first, its CHECK oracle, start-up and
 * quiet logs (MX_FUZZ_LOG=1 shows them). */
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

#ifdef FUZZ_NAME
#include "movexd/log.h"

/* A harness that defines FUZZ_NAME before including this header gets its
 * oracle check (a failed promise is a crash, with what was expected) and
 * the common start-up: checks report on fuzz_err, libsodium is made
 * deterministic. */
static FILE *fuzz_err;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(fuzz_err, FUZZ_NAME ": check failed: %s: ", #cond);        \
            fprintf(fuzz_err, __VA_ARGS__);                                    \
            fputc('\n', fuzz_err);                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Every log line is formatted (level debug, so the log code is fuzzed
 * too) but thrown away unless MX_FUZZ_LOG=1: mx_log writes with stdio to
 * `stderr`; libFuzzer and the sanitizers keep their own handles on fd 2,
 * so their reports, and CHECK's on fuzz_err, still show. */
static inline void fuzz_quiet_logs(void)
{
    mx_log_set_level(MX_LOG_DEBUG);
    const char *log = getenv("MX_FUZZ_LOG");
    if (!log || strcmp(log, "1")) {
        FILE *null = fopen("/dev/null", "w");
        if (null)
            stderr = null;
    }
}

static inline void fuzz_det_init(void)
{
    fuzz_err = stderr;
    randombytes_set_implementation(&det_impl);
    if (sodium_init() < 0)
        abort();
}
#endif

#endif
