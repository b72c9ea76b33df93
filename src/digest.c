/* digest.c - placeholder until the real tree digest lands. */
#include "movexd/digest.h"
#include <sodium.h>
#include <string.h>
void mx_digest_string(const char *s, size_t len, uint8_t out[MX_DIGEST_LEN])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, MX_DIGEST_LEN);
    crypto_generichash_update(&st, (const unsigned char *)"s", 1);
    crypto_generichash_update(&st, (const unsigned char *)s, len);
    crypto_generichash_final(&st, out, MX_DIGEST_LEN);
}
