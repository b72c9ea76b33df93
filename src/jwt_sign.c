/* jwt_sign.c - minting compact JWS tokens (HS256, EdDSA) for development
 * and tests (`movexctl token`), the counterpart of jwt.c's verifier.
 *
 * The daemon never signs anything; this file exists so that a developer
 * can make a token from the same key files the daemon reads, read the same
 * way (mx_jwt_read_key_file, the HS256 secret through mx_jwt_load_keys).
 * The header is fixed ({"alg":...,"typ":"JWT"}) and the parts are unpadded
 * base64url, the only spelling jwt.c accepts. Private key bytes are wiped
 * after use.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "movexd/err.h"
#include "movexd/alloc.h"
#include "movexd/jwt.h"

/* PKCS#8 OneAsymmetricKey for Ed25519 (RFC 8410): SEQUENCE { INTEGER 0,
 * SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32-byte seed) } }. */
static const unsigned char pkcs8_ed25519_prefix[16] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30,
                                                       0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
                                                       0x04, 0x22, 0x04, 0x20};

static int fail(char *err, size_t errlen, const char *path, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", path, msg);
    return -1;
}

static int seed_from_text(const char *s, size_t n, unsigned char seed[32])
{
    static const char begin[] = "-----BEGIN PRIVATE KEY-----";
    static const char end[] = "-----END PRIVATE KEY-----";
    size_t bl = sizeof begin - 1, el = sizeof end - 1;
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 64)
        return sodium_hex2bin(seed, 32, s, n, NULL, NULL, NULL) == 0 ? 0 : -1;
    if (n < bl + el || memcmp(s, begin, bl) != 0 || memcmp(s + n - el, end, el) != 0)
        return -1;
    for (size_t i = bl; i < n - el; i++)
        if ((unsigned char)s[i] >= 0x80)
            return -1;
    unsigned char der[64];
    size_t dl = 0;
    if (sodium_base642bin(der, sizeof der, s + bl, n - bl - el, " \t\r\n", &dl, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        dl != sizeof pkcs8_ed25519_prefix + 32 ||
        memcmp(der, pkcs8_ed25519_prefix, sizeof pkcs8_ed25519_prefix) != 0) {
        sodium_memzero(der, sizeof der);
        return -1;
    }
    memcpy(seed, der + sizeof pkcs8_ed25519_prefix, 32);
    sodium_memzero(der, sizeof der);
    return 0;
}

int mx_jwt_load_ed25519_private(const char *path, unsigned char sk[64], char *err, size_t errlen)
{
    unsigned char buf[4096], seed[32], pk[32];
    long r = mx_jwt_read_key_file(path, buf, sizeof buf);
    if (r == -1)
        return fail(err, errlen, path, strerror(errno));
    if (r == -2)
        return fail(err, errlen, path, "too large for an Ed25519 private key");
    int rc = seed_from_text((const char *)buf, (size_t)r, seed);
    sodium_memzero(buf, sizeof buf);
    if (rc)
        return fail(err, errlen, path,
                    "not an Ed25519 private key (PEM PRIVATE KEY, PKCS#8, or 64 hex of the seed)");
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(seed, sizeof seed);
    return 0;
}

static int put_b64(char *out, size_t cap, const unsigned char *p, size_t n)
{
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return (int)strlen(out);
}

int mx_jwt_sign(const char *claims, size_t claimslen, const unsigned char *secret, size_t secretlen,
                const unsigned char *sk, char **out)
{
    const char *header = sk ? "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}" : "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t hl = strlen(header);
    size_t cap = sodium_base64_ENCODED_LEN(hl, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
                 sodium_base64_ENCODED_LEN(claimslen, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
                 sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_URLSAFE_NO_PADDING) + 4;
    char *t = mx_malloc(cap);
    if (!t)
        return MX_ENOMEM;
    size_t len = (size_t)put_b64(t, cap, (const unsigned char *)header, hl);
    t[len++] = '.';
    len += (size_t)put_b64(t + len, cap - len, (const unsigned char *)claims, claimslen);
    unsigned char sig[64];
    size_t siglen;
    if (sk) {
        crypto_sign_detached(sig, NULL, (const unsigned char *)t, len, sk);
        siglen = 64;
    } else {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, secret, secretlen);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)t, len);
        crypto_auth_hmacsha256_final(&st, sig);
        sodium_memzero(&st, sizeof st);
        siglen = 32;
    }
    t[len++] = '.';
    put_b64(t + len, cap - len, sig, siglen);
    *out = t;
    return 0;
}
