/* crc32c.c - CRC-32C (Castagnoli), the checksum of every WAL record and
 * atomic file.
 *
 * Owns two implementations that must agree bit for bit:
 *   - a portable one, table driven with "slicing by 8" (eight 256-entry
 *     tables let the loop fold 8 input bytes per step with independent
 *     lookups instead of 8 dependent ones);
 *   - on x86-64 with GCC/Clang, the SSE4.2 CRC32 instruction, used only
 *     when the CPU reports SSE4.2 at run time, so one binary stays correct
 *     on every machine.
 * The tables are built once, on first use (pthread_once: the daemon is
 * single threaded, but tests and tools may not be).
 *
 * Convention (as zlib's crc32): pass 0 to start; the running value is
 * inverted on entry and exit, so mx_crc32c(mx_crc32c(0, a, n), b, m) is the
 * CRC of a followed by b. mx_crc32c(0, "123456789", 9) == 0xE3069283.
 */
#include "movexd/wal.h"

#include <pthread.h>
#include <string.h>

#define CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MX_CRC_HW 1
#include <nmmintrin.h>
static int have_sse42;

/* The CRC32 instruction computes exactly the reflected CRC-32C step without
 * the pre/post inversion, which the caller does. Loads go through memcpy so
 * unaligned input is fine (and UBSan-clean). */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p,
                                                           size_t n)
{
    while (n > 0 && ((uintptr_t)p & 7u) != 0) {
        crc = _mm_crc32_u8(crc, *p++);
        n--;
    }
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
    while (n-- > 0)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
}
#endif

static void build_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        table[0][i] = c;
    }
    /* table[k][i]: the CRC contribution of byte i followed by k zero bytes */
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 0xffu];
#ifdef MX_CRC_HW
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

/* Bytes are assembled explicitly, so this is endian neutral; compilers turn
 * it into plain loads on little-endian machines. */
static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                      (uint32_t)p[7] << 24;
        crc = table[7][lo & 0xffu] ^ table[6][(lo >> 8) & 0xffu] ^ table[5][(lo >> 16) & 0xffu] ^
              table[4][lo >> 24] ^ table[3][hi & 0xffu] ^ table[2][(hi >> 8) & 0xffu] ^
              table[1][(hi >> 16) & 0xffu] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = table[0][(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    return crc;
}

uint32_t mx_crc32c_portable(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&table_once, build_tables);
    return ~crc_sw(~crc, p, n);
}

uint32_t mx_crc32c(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&table_once, build_tables);
#ifdef MX_CRC_HW
    if (have_sse42)
        return ~crc_hw(~crc, p, n);
#endif
    return ~crc_sw(~crc, p, n);
}
