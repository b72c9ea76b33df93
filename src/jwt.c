/* jwt.c - verifying the compact JWS tokens that clients present in hello.
 *
 * A token is the only thing standing between an anonymous socket and a
 * client id with room rights, so this file refuses anything it does not
 * fully understand, and it looks at the parts in an order that keeps
 * unauthenticated input away from the parsers that matter:
 *
 *   1. shape: at most MX_JWT_MAX_LEN bytes, exactly two dots, no empty part;
 *   2. header: strict base64url (no padding, no '+' or '/', canonical
 *      trailing bits), a JSON object without duplicate keys, "alg" exactly
 *      "HS256" or "EdDSA", "typ" absent or "JWT", no "crit";
 *   3. key: the alg must have its own key configured. The alg never selects
 *      a different key or a different algorithm (no alg confusion): an HS256
 *      token is checked only against the shared secret, an EdDSA token only
 *      against the Ed25519 public key;
 *   4. signature over the ASCII bytes "<part0>.<part1>" (HMAC compared in
 *      constant time; Ed25519 by libsodium, which also refuses small-order
 *      keys and non-canonical signatures);
 *   5. only then the payload: a JSON object without duplicate keys, "sub" a
 *      valid client id, "exp"/"nbf" numbers checked with leeway, "iss" and
 *      "aud" when the keys name an issuer or audience, and the optional
 *      "movex" grants.
 *
 * Invariants: on failure *out holds nothing (all zero, nothing to free) and
 * `why` is one of the fixed strings below - never token bytes, claim values
 * or key material. Decoding works in a stack buffer bounded by the token
 * size limit; the only heap memory is the grant list handed to the caller.
 * The secret and HMAC state are wiped after use.
 *
 * Character sets are repeated here rather than taken from proto.c so the
 * file stands alone (a fuzz harness can link it with nothing else); they
 * must stay in step with mx_proto_client_ok and the room id rules.
 */
#include "movexd/jwt.h"
#include "movexd/alloc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "movexd/err.h"

#define MX_JWT_MAX_LEN 8192
#define MX_SUB_MAX 128
#define MX_PATTERN_MAX 200
#define MX_HS256_MIN 32
#define MX_KEYFILE_MAX 4096

static int set_why(char *why, size_t whylen, const char *msg)
{
    if (why && whylen) {
        size_t n = strlen(msg);
        if (n >= whylen)
            n = whylen - 1;
        memcpy(why, msg, n);
        why[n] = '\0';
    }
    return MX_EUNAUTHORIZED;
}

static int room_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

static int client_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > MX_SUB_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!room_char((unsigned char)s[i]) && s[i] != '@')
            return 0;
    return 1;
}

static int pattern_ok(const char *s, size_t len)
{
    if (len == 0 || len > MX_PATTERN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!room_char((unsigned char)s[i]) && s[i] != '*')
            return 0;
    return 1;
}

static int b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Strict base64url: only the 64 alphabet characters (so no '=' padding,
 * '+', '/' or whitespace), and libsodium's decoder then refuses a length
 * of 1 mod 4 and non-zero trailing bits, so each byte string has exactly
 * one accepted encoding. The alphabet check is ours because libsodium
 * 1.0.18's decoder (the Debian build this runs on) takes every byte >= 0x80
 * for some base64 digit, which would let one token have many spellings. */
static int b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap, size_t *outlen)
{
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!b64url_char((unsigned char)s[i]))
            return -1;
    return sodium_base642bin(out, cap, s, len, NULL, outlen, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0
               ? 0
               : -1;
}

static json_t *decode_json_part(const char *s, size_t len, unsigned char *buf, size_t cap)
{
    size_t n = 0;
    if (b64url_decode(s, len, buf, cap, &n))
        return NULL;
    json_error_t jerr;
    /* numbers as doubles, as JSON and RFC 7519 mean them: an integer
     * NumericDate beyond int64 (exp 9223372036854776000, what JavaScript
     * writes for 2^63) is a number, not a malformed payload */
    int oom; /* out of memory: refused (a failed check, never an altered claim) */
    json_t *j = mx_json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr, &oom);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int str_is(const json_t *v, const char *lit)
{
    size_t n = strlen(lit);
    return json_is_string(v) && json_string_length(v) == n &&
           memcmp(json_string_value(v), lit, n) == 0;
}

/* Case-insensitive "none": some libraries once treated "None"/"NONE" as
 * unsigned too, so name them all in the refusal. */
static int is_alg_none(const json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) != 4)
        return 0;
    const char *s = json_string_value(v);
    for (int i = 0; i < 4; i++)
        if ((s[i] | 0x20) != "none"[i])
            return 0;
    return 1;
}

enum alg { ALG_HS256, ALG_EDDSA };

/* Step 2: returns 0 and the alg, or sets why. */
static int check_header(const json_t *h, enum alg *alg, char *why, size_t whylen)
{
    const json_t *a = json_object_get(h, "alg");
    if (!a)
        return set_why(why, whylen, "missing alg");
    if (is_alg_none(a))
        return set_why(why, whylen, "alg none is not accepted");
    if (str_is(a, "HS256"))
        *alg = ALG_HS256;
    else if (str_is(a, "EdDSA"))
        *alg = ALG_EDDSA;
    else
        return set_why(why, whylen, "unknown alg");
    const json_t *typ = json_object_get(h, "typ");
    if (typ && !str_is(typ, "JWT"))
        return set_why(why, whylen, "typ must be JWT");
    if (json_object_get(h, "crit"))
        return set_why(why, whylen, "crit header is not supported");
    return 0;
}

/* Step 4. */
static int check_signature(enum alg alg, const struct mx_jwt_keys *keys, const char *signed_part,
                           size_t signed_len, const char *sig64, size_t sig64len, char *why,
                           size_t whylen)
{
    unsigned char sig[crypto_sign_BYTES];
    size_t siglen = 0;
    if (sig64len == 0)
        return set_why(why, whylen, "missing signature");
    if (b64url_decode(sig64, sig64len, sig, sizeof sig, &siglen))
        return set_why(why, whylen, "malformed signature");
    if (alg == ALG_HS256) {
        if (siglen != crypto_auth_hmacsha256_BYTES)
            return set_why(why, whylen, "bad signature");
        unsigned char mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, keys->hs256, keys->hs256_len);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)signed_part, signed_len);
        crypto_auth_hmacsha256_final(&st, mac);
        int bad = sodium_memcmp(mac, sig, sizeof mac);
        sodium_memzero(&st, sizeof st);
        sodium_memzero(mac, sizeof mac);
        if (bad)
            return set_why(why, whylen, "bad signature");
    } else {
        if (siglen != crypto_sign_BYTES ||
            crypto_sign_verify_detached(sig, (const unsigned char *)signed_part, signed_len,
                                        keys->ed25519) != 0)
            return set_why(why, whylen, "bad signature");
    }
    return 0;
}

/* exp/nbf may be integers or reals (NumericDate allows fractions). The
 * checks run in double: epoch seconds are exact there, and a huge value
 * only loses precision, not order. Stored values are rounded so that a
 * later integer check on the stored value gives the same answer: floor for
 * exp (now > exp), ceil for nbf (now < nbf). */
static int64_t clamp_i64(double d)
{
    if (d >= 9223372036854775807.0)
        return INT64_MAX;
    if (d <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)d;
}

static int add_grant(struct mx_token *t, const json_t *g, char *why, size_t whylen, int *nomem)
{
    if (!json_is_object(g))
        return set_why(why, whylen, "grant must be an object");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)g, key, v)
    {
        /* A grant must be understood whole: an unknown member might be
         * meant to narrow it. */
        if (strcmp(key, "match") != 0 && strcmp(key, "rights") != 0)
            return set_why(why, whylen, "unknown member in grant");
    }
    const json_t *m = json_object_get(g, "match");
    if (!json_is_string(m) || !pattern_ok(json_string_value(m), json_string_length(m)))
        return set_why(why, whylen, "grant match must be 1..200 bytes of room id characters or *");
    const json_t *r = json_object_get(g, "rights");
    if (!json_is_array(r))
        return set_why(why, whylen, "grant rights must be an array");
    unsigned rights = 0;
    size_t i;
    json_array_foreach(r, i, v)
    {
        if (str_is(v, "read"))
            rights |= MX_RIGHT_READ;
        else if (str_is(v, "write"))
            rights |= MX_RIGHT_WRITE;
        else if (str_is(v, "create"))
            rights |= MX_RIGHT_CREATE;
        else
            return set_why(why, whylen, "unknown right in grant");
    }
    char *p = mx_strdup(json_string_value(m));
    if (!p) {
        *nomem = 1;
        return set_why(why, whylen, "out of memory");
    }
    t->grants[t->ngrants].pattern = p;
    t->grants[t->ngrants].rights = rights;
    t->ngrants++;
    return 0;
}

/* iss and aud, when the keys ask for them (RFC 7519 4.1.1, 4.1.3): one
 * key may sign tokens for several services, and these claims say which one
 * a token is for. */
static int check_iss_aud(const json_t *p, const struct mx_jwt_keys *keys, char *why, size_t whylen)
{
    if (keys->issuer[0]) {
        const json_t *iss = json_object_get(p, "iss");
        if (!iss)
            return set_why(why, whylen, "missing iss");
        if (!json_is_string(iss))
            return set_why(why, whylen, "iss must be a string");
        if (!str_is(iss, keys->issuer))
            return set_why(why, whylen, "wrong issuer");
    }
    if (keys->audience[0]) {
        const json_t *aud = json_object_get(p, "aud");
        if (!aud)
            return set_why(why, whylen, "missing aud");
        if (json_is_string(aud)) {
            if (!str_is(aud, keys->audience))
                return set_why(why, whylen, "wrong audience");
        } else if (json_is_array(aud)) {
            int found = 0;
            size_t i;
            const json_t *v;
            json_array_foreach(aud, i, v)
            {
                if (!json_is_string(v))
                    return set_why(why, whylen, "aud must be a string or an array of strings");
                found |= str_is(v, keys->audience);
            }
            if (!found)
                return set_why(why, whylen, "wrong audience");
        } else {
            return set_why(why, whylen, "aud must be a string or an array of strings");
        }
    }
    return 0;
}

/* Step 5. */
static int read_claims(const json_t *p, const struct mx_jwt_keys *keys, int64_t now, int64_t leeway,
                       struct mx_token *t, char *why, size_t whylen, int *nomem)
{
    const json_t *sub = json_object_get(p, "sub");
    if (!sub)
        return set_why(why, whylen, "missing sub");
    if (!json_is_string(sub) || !client_id_ok(json_string_value(sub), json_string_length(sub)))
        return set_why(why, whylen, "sub must be 1..128 bytes of A-Z a-z 0-9 _ . : @ -");
    if (mx_client_id_reserved(json_string_value(sub), json_string_length(sub)))
        return set_why(why, whylen, "sub may not start with admin: (reserved for the admin API)");
    memcpy(t->sub, json_string_value(sub), json_string_length(sub));
    t->sub[json_string_length(sub)] = '\0';

    double dnow = (double)now, dlee = (double)leeway;
    const json_t *exp = json_object_get(p, "exp");
    if (exp) {
        if (!json_is_number(exp))
            return set_why(why, whylen, "exp must be a number");
        double e = json_number_value(exp);
        if (dnow > e + dlee)
            return set_why(why, whylen, "expired");
        t->exp = clamp_i64(floor(e));
    }
    const json_t *nbf = json_object_get(p, "nbf");
    if (nbf) {
        if (!json_is_number(nbf))
            return set_why(why, whylen, "nbf must be a number");
        double n = json_number_value(nbf);
        if (dnow + dlee < n)
            return set_why(why, whylen, "not yet valid");
        t->nbf = clamp_i64(ceil(n));
    }
    int rc = check_iss_aud(p, keys, why, whylen);
    if (rc)
        return rc;

    const json_t *mv = json_object_get(p, "movex");
    if (!mv)
        return 0;
    if (!json_is_object(mv))
        return set_why(why, whylen, "movex must be an object");
    const json_t *rooms = json_object_get(mv, "rooms");
    if (!rooms)
        return 0;
    if (!json_is_array(rooms))
        return set_why(why, whylen, "movex.rooms must be an array");
    size_t n = json_array_size(rooms);
    if (n == 0)
        return 0;
    /* n is bounded by the token size (each grant takes > 20 bytes). */
    t->grants = mx_calloc(n, sizeof *t->grants);
    if (!t->grants) {
        *nomem = 1;
        return set_why(why, whylen, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        rc = add_grant(t, json_array_get(rooms, i), why, whylen, nomem);
        if (rc)
            return rc;
    }
    return 0;
}

int mx_jwt_verify(const char *token, size_t len, const struct mx_jwt_keys *keys, int64_t now,
                  int64_t leeway, struct mx_token *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (why && whylen)
        why[0] = '\0';
    if (leeway < 0)
        leeway = 0;
    if (!token || len == 0)
        return set_why(why, whylen, "empty token");
    if (len > MX_JWT_MAX_LEN)
        return set_why(why, whylen, "token too large");

    /* Step 1: exactly two dots. memchr, not strchr: a NUL inside [0, len)
     * is just another invalid base64url character. */
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return set_why(why, whylen, "token must have three parts");
    size_t hlen = (size_t)(d1 - token);
    size_t plen = (size_t)(d2 - d1 - 1);
    size_t slen = len - (size_t)(d2 + 1 - token);
    if (hlen == 0 || plen == 0)
        return set_why(why, whylen, "empty token part");

    /* Decoded parts are smaller than the token itself. */
    unsigned char buf[MX_JWT_MAX_LEN];

    /* Step 2. */
    json_t *h = decode_json_part(token, hlen, buf, sizeof buf);
    if (!h)
        return set_why(why, whylen, "malformed header");
    enum alg alg = ALG_HS256;
    int rc = check_header(h, &alg, why, whylen);
    json_decref(h);
    if (rc)
        return rc;

    /* Step 3. */
    if (alg == ALG_HS256 && (keys->hs256_len == 0 || keys->hs256_len > sizeof keys->hs256))
        return set_why(why, whylen, "HS256 is not configured");
    if (alg == ALG_EDDSA && !keys->has_ed25519)
        return set_why(why, whylen, "EdDSA is not configured");

    /* Step 4. */
    rc = check_signature(alg, keys, token, hlen + 1 + plen, d2 + 1, slen, why, whylen);
    if (rc)
        return rc;

    /* Step 5. */
    json_t *p = decode_json_part(d1 + 1, plen, buf, sizeof buf);
    if (!p)
        return set_why(why, whylen, "malformed payload");
    int nomem = 0;
    rc = read_claims(p, keys, now, leeway, out, why, whylen, &nomem);
    json_decref(p);
    if (rc) {
        mx_token_free(out);
        return nomem ? MX_ENOMEM : rc;
    }
    return 0;
}

int mx_client_id_reserved(const char *id, size_t len)
{
    return len >= sizeof MX_ADMIN_CLIENT_PREFIX - 1 &&
           memcmp(id, MX_ADMIN_CLIENT_PREFIX, sizeof MX_ADMIN_CLIENT_PREFIX - 1) == 0;
}

int64_t mx_add_sat_i64(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

int64_t mx_token_left(const struct mx_token *t, int64_t now, int64_t leeway)
{
    if (!t->exp)
        return INT64_MAX;
    if (leeway < 0)
        leeway = 0;
    /* refused from the second exp + leeway + 1 on; every step saturates,
     * so exp = INT64_MAX (a far-future or clamped claim) stays far off */
    int64_t refused_at = mx_add_sat_i64(mx_add_sat_i64(t->exp, leeway), 1);
    if (now >= refused_at)
        return 0;
    /* refused_at > now: the exact difference is below 2^64, so unsigned
     * arithmetic gives it; it saturates to fit int64 */
    uint64_t d = (uint64_t)refused_at - (uint64_t)now;
    return d > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d;
}

void mx_token_free(struct mx_token *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ngrants; i++)
        free(t->grants[i].pattern);
    free(t->grants);
    memset(t, 0, sizeof *t);
}

unsigned mx_token_rights(const struct mx_token *t, const char *room, size_t len)
{
    unsigned r = 0;
    if (!t)
        return 0;
    for (size_t i = 0; i < t->ngrants; i++)
        if ((t->grants[i].rights & ~r) && mx_pattern_match(t->grants[i].pattern, room, len))
            r |= t->grants[i].rights;
    return r;
}

/* Iterative glob with one backtrack point: on a mismatch after a '*', the
 * '*' absorbs one more character and matching resumes just after it.
 * Backtracking only to the most recent '*' is enough because a later '*'
 * can absorb anything an earlier one could, so the worst case is
 * O(strlen(pattern) * len) rather than exponential in the number of '*'. */
int mx_pattern_match(const char *pattern, const char *s, size_t len)
{
    size_t plen = strlen(pattern);
    size_t p = 0, i = 0;
    size_t star = SIZE_MAX, mark = 0;
    while (i < len) {
        if (p < plen && pattern[p] == '*') {
            star = p++;
            mark = i;
        } else if (p < plen && pattern[p] == s[i]) {
            p++;
            i++;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            i = ++mark;
        } else {
            return 0;
        }
    }
    while (p < plen && pattern[p] == '*')
        p++;
    return p == plen;
}

/* ---- key files ---- */

static int key_err(char *err, size_t errlen, const char *path, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", path, msg);
    return -1;
}

/* Read a whole small file. Returns the length, -1 with errno on I/O error,
 * or -2 if it holds more than cap bytes. */
long mx_jwt_read_key_file(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap, f);
    int bad = ferror(f);
    int more = !bad && n == cap && fgetc(f) != EOF;
    int saved = errno;
    fclose(f);
    if (bad) {
        errno = saved ? saved : EIO;
        return -1;
    }
    return more ? -2 : (long)n;
}

static int load_secret(struct mx_jwt_keys *keys, const char *path, char *err, size_t errlen)
{
    unsigned char buf[MX_KEYFILE_MAX];
    long r = mx_jwt_read_key_file(path, buf, sizeof buf);
    if (r == -1)
        return key_err(err, errlen, path, strerror(errno));
    size_t n = r < 0 ? sizeof buf : (size_t)r;
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
    }
    int rc = 0;
    if (r == -2 || n > sizeof keys->hs256)
        rc = key_err(err, errlen, path, "HS256 secret longer than 128 bytes");
    else if (n < MX_HS256_MIN)
        rc = key_err(err, errlen, path, "HS256 secret shorter than 32 bytes");
    else {
        memcpy(keys->hs256, buf, n);
        keys->hs256_len = n;
    }
    sodium_memzero(buf, sizeof buf);
    return rc;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* buf is not NUL-terminated, so no strstr. */
static int contains(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    for (size_t i = 0; i + l <= n; i++)
        if (memcmp(s + i, lit, l) == 0)
            return 1;
    return 0;
}

/* Base64 in any of libsodium's four variants, exactly 32 bytes decoded.
 * ASCII is checked first (see b64url_decode); the variant decoders then
 * refuse characters of the other alphabet. */
static int b64_any32(const char *s, size_t len, unsigned char out[32])
{
    for (size_t i = 0; i < len; i++)
        if (!b64url_char((unsigned char)s[i]) && s[i] != '+' && s[i] != '/' && s[i] != '=')
            return -1;
    static const int variants[] = {
        sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
        sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        size_t n = 0;
        if (sodium_base642bin(out, 32, s, len, NULL, &n, NULL, variants[v]) == 0 && n == 32)
            return 0;
    }
    return -1;
}

/* SubjectPublicKeyInfo for Ed25519 (RFC 8410): SEQUENCE { SEQUENCE { OID
 * 1.3.101.112 }, BIT STRING (0 unused bits) of 32 bytes }. */
static const unsigned char spki_ed25519_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                                      0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

static int pem_public(const char *path, const char *s, size_t len, unsigned char out[32], char *err,
                      size_t errlen)
{
    static const char begin[] = "-----BEGIN PUBLIC KEY-----";
    static const char end[] = "-----END PUBLIC KEY-----";
    size_t bl = sizeof begin - 1, el = sizeof end - 1;
    if (len < bl + el || memcmp(s, begin, bl) != 0 || memcmp(s + len - el, end, el) != 0)
        return key_err(err, errlen, path, "PEM must hold one PUBLIC KEY block");
    unsigned char der[64];
    size_t n = 0;
    for (size_t i = bl; i < len - el; i++)
        if ((unsigned char)s[i] >= 0x80)
            return key_err(err, errlen, path, "PEM body is not base64 of an Ed25519 key");
    if (sodium_base642bin(der, sizeof der, s + bl, len - bl - el, " \t\r\n", &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return key_err(err, errlen, path, "PEM body is not base64 of an Ed25519 key");
    if (n != sizeof spki_ed25519_prefix + 32 ||
        memcmp(der, spki_ed25519_prefix, sizeof spki_ed25519_prefix) != 0)
        return key_err(err, errlen, path, "PEM PUBLIC KEY is not an Ed25519 key");
    memcpy(out, der + sizeof spki_ed25519_prefix, 32);
    return 0;
}

static int load_public(struct mx_jwt_keys *keys, const char *path, char *err, size_t errlen)
{
    unsigned char buf[MX_KEYFILE_MAX];
    long r = mx_jwt_read_key_file(path, buf, sizeof buf);
    if (r == -1)
        return key_err(err, errlen, path, strerror(errno));
    if (r == -2)
        return key_err(err, errlen, path, "too large for an Ed25519 public key");
    size_t n = (size_t)r;
    unsigned char pk[32];
    if (n == 32) {
        memcpy(pk, buf, 32); /* raw: no text format is 32 bytes long */
    } else {
        const char *s = (const char *)buf;
        while (n > 0 && is_space(buf[n - 1]))
            n--;
        while (n > 0 && is_space((unsigned char)*s)) {
            s++;
            n--;
        }
        if (n >= 5 && memcmp(s, "-----", 5) == 0) {
            if (contains(s, n, "PRIVATE KEY"))
                return key_err(err, errlen, path, "holds a private key; give the public key");
            if (pem_public(path, s, n, pk, err, errlen))
                return -1;
        } else if (n == 64) {
            if (sodium_hex2bin(pk, 32, s, n, NULL, NULL, NULL) != 0)
                return key_err(err, errlen, path, "not 64 hex characters");
        } else if (b64_any32(s, n, pk) != 0) {
            return key_err(err, errlen, path,
                           "not an Ed25519 public key (32 raw bytes, 64 hex, base64 or PEM)");
        }
    }
    if (!crypto_core_ed25519_is_valid_point(pk))
        return key_err(err, errlen, path, "not a valid Ed25519 public key");
    memcpy(keys->ed25519, pk, 32);
    keys->has_ed25519 = 1;
    return 0;
}

int mx_jwt_load_keys(struct mx_jwt_keys *keys, const char *hs256_file, const char *ed25519_file,
                     char *err, size_t errlen)
{
    sodium_memzero(keys, sizeof *keys);
    if (err && errlen)
        err[0] = '\0';
    if ((hs256_file && load_secret(keys, hs256_file, err, errlen)) ||
        (ed25519_file && load_public(keys, ed25519_file, err, errlen))) {
        sodium_memzero(keys, sizeof *keys);
        return -1;
    }
    return 0;
}

int mx_jwt_set_claims(struct mx_jwt_keys *keys, const char *issuer, const char *audience)
{
    const char *v[2] = {issuer ? issuer : "", audience ? audience : ""};
    char *f[2] = {keys->issuer, keys->audience};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(v[i]);
        if (n > MX_JWT_CLAIM_MAX) {
            sodium_memzero(keys, sizeof *keys);
            return -1;
        }
        memcpy(f[i], v[i], n + 1);
    }
    return 0;
}
