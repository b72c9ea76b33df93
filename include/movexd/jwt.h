/* jwt.h - JSON Web Tokens (RFC 7519) as movexd accepts them: compact JWS
 * with alg HS256 (HMAC-SHA-256, shared secret) or EdDSA (Ed25519 public
 * key). Everything else - alg "none", other algorithms, bad signatures,
 * malformed parts - is refused. Claims used: sub (the client id), exp and
 * nbf (with leeway), iss and aud (only when configured), and "movex":
 * {"rooms": [{"match": PATTERN, "rights": ["read","write","create"]}, ...]}
 * granting rooms by pattern.
 *
 * Patterns: a room id where '*' matches any run of characters (possibly
 * empty), e.g. "todo:*", "*", "chat:team-*". Rights: read (subscribe, sync,
 * get), write (action), create (create; subscribe that creates a missing
 * room needs create too).
 */
#ifndef MOVEXD_JWT_H
#define MOVEXD_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "movexd/config.h" /* MX_RIGHT_* */

struct mx_grant {
    char *pattern;   /* owned */
    unsigned rights; /* MX_RIGHT_* bits */
};

struct mx_token {
    char sub[129];   /* validated like a client id: 1..128 of [A-Za-z0-9_.:@-] */
    int64_t exp;     /* seconds since the epoch; 0 = none */
    int64_t nbf;     /* 0 = none */
    struct mx_grant *grants;
    size_t ngrants;
};

#define MX_JWT_CLAIM_MAX 1023 /* longest expected iss / aud */

/* Verification keys (any may be absent), and the iss/aud every token must
 * carry (conf auth_issuer, auth_audience; "" = not checked). */
struct mx_jwt_keys {
    unsigned char hs256[128]; /* shared secret */
    size_t hs256_len;         /* 0 = HS256 not accepted */
    unsigned char ed25519[32];/* public key */
    int has_ed25519;
    char issuer[MX_JWT_CLAIM_MAX + 1];   /* "iss" must equal this */
    char audience[MX_JWT_CLAIM_MAX + 1]; /* "aud" must be this, or an array holding it */
};

/* Verify a compact token and decode its claims. The header must have alg
 * exactly "HS256" or "EdDSA" with that alg's own key configured (never a
 * fallback to the other), typ absent or "JWT", and no crit; base64url must
 * be unpadded and canonical. now: seconds since the
 * epoch; leeway: seconds allowed for exp/nbf clock skew (negative counts as
 * 0): refused if now > exp + leeway or now + leeway < nbf. exp/nbf may be
 * integers or reals; out->exp is stored rounded down and out->nbf rounded
 * up, so re-checking the stored values later gives the same answer.
 * With keys->issuer set, "iss" must be a string equal to it; with
 * keys->audience set, "aud" must be a string equal to it or an array of
 * strings one of which is (RFC 7519 4.1.3); comparisons are exact (bytes,
 * no normalisation), and a missing claim is refused. Unset, iss and aud
 * are not looked at.
 * Returns 0, or MX_EUNAUTHORIZED (MX_ENOMEM if the grant list cannot be
 * allocated) with a short fixed reason in why ("bad signature", "expired",
 * "alg none is not accepted", ...) that never contains the token, claim
 * values or key material; why may be NULL. On failure *out is all zero and
 * needs no mx_token_free; on success it must be released with mx_token_free.
 * Tokens longer than 8 KiB are refused. Unknown claims are ignored, and so
 * are unknown members of "movex"; an unknown right or an unknown member of
 * a grant object refuses the token (it might be meant to narrow the grant). */
int mx_jwt_verify(const char *token, size_t len, const struct mx_jwt_keys *keys, int64_t now,
                  int64_t leeway, struct mx_token *out, char *why, size_t whylen);
void mx_token_free(struct mx_token *t);

/* Client ids beginning with this are the admin API's ("admin:" + its
 * idempotency key, engine.h): a token's sub and a hello's client may not
 * take them, or a client could answer the admin's actions in its place. */
#define MX_ADMIN_CLIENT_PREFIX "admin:"
int mx_client_id_reserved(const char *id, size_t len);

/* a + b, saturating at INT64_MIN / INT64_MAX instead of overflowing. */
int64_t mx_add_sat_i64(int64_t a, int64_t b);

/* Whole seconds from `now` until the token is refused (it is valid while
 * now <= exp + leeway): > 0 while valid, 0 once expired, INT64_MAX when it
 * has no exp. Saturating: exp may be anything up to INT64_MAX (a claim of
 * 1e300 is stored clamped there) without overflow. The one place token
 * expiry is computed (hello, every request, the connection's timer). */
int64_t mx_token_left(const struct mx_token *t, int64_t now, int64_t leeway);

/* Rights the token grants on a room id (union over matching grants). */
unsigned mx_token_rights(const struct mx_token *t, const char *room, size_t len);

/* '*' glob match of a room id (len bytes) against a NUL-terminated
 * pattern; every other byte matches itself. O(strlen(pattern) * len) at
 * worst, never exponential. "" matches only "". */
int mx_pattern_match(const char *pattern, const char *s, size_t len);

/* Load keys from files (conf: auth_hs256_secret_file, auth_ed25519_public_key_file).
 * Secret file: the raw secret bytes (trailing newline stripped), 32..128 bytes.
 * Public key file: 32 raw bytes, or 64 hex characters, or base64/base64url
 * of the 32 bytes, or a PEM "PUBLIC KEY" (SubjectPublicKeyInfo for Ed25519).
 * Either path may be NULL. The Ed25519 key must be a valid point (not of
 * small order). *keys is cleared first and again on error (the secret
 * wiped), so a failed load configures nothing. Returns 0 or -1 with err
 * naming the file. */
int mx_jwt_load_keys(struct mx_jwt_keys *keys, const char *hs256_file, const char *ed25519_file,
                     char *err, size_t errlen);

/* Read a key file of at most cap bytes into buf, as every key loader here
 * does (tokens are signed by tools/movexctl with keys read the same way).
 * Returns the byte count, -1 with errno set when it cannot be read, or -2
 * when the file holds more than cap bytes. */
long mx_jwt_read_key_file(const char *path, unsigned char *buf, size_t cap);

/* ---- signing (jwt_sign.c; development tokens, movexctl token) ---- */

/* Load an Ed25519 private key: a PEM "PRIVATE KEY" (PKCS#8, RFC 8410, as
 * scripts/make-token.mjs --gen-ed25519 and `openssl genpkey -algorithm
 * ed25519` write it) or 64 hex characters of the 32-byte seed. sk gets
 * libsodium's 64-byte secret key. 0, or -1 with err naming the file. */
int mx_jwt_load_ed25519_private(const char *path, unsigned char sk[64], char *err, size_t errlen);

/* Sign a claims object (JSON text) as a compact JWS: with sk set (64 bytes)
 * alg EdDSA, else HS256 with secret/secretlen. *out is malloc'd and
 * NUL-terminated. 0 or MX_ENOMEM. */
int mx_jwt_sign(const char *claims, size_t claimslen, const unsigned char *secret, size_t secretlen,
                const unsigned char *sk, char **out);

/* Set the iss and aud tokens must carry (NULL or "" = not checked). A value
 * longer than MX_JWT_CLAIM_MAX bytes wipes *keys (so nothing is accepted by
 * mistake) and returns -1; else 0. Call after mx_jwt_load_keys, which
 * clears them. */
int mx_jwt_set_claims(struct mx_jwt_keys *keys, const char *issuer, const char *audience);

#endif
