/* fuzz_jwt.c - libFuzzer harness for token verification (jwt.c): compact
 * JWS parsing, base64url, header and claim validation, grants, patterns,
 * and the key-file loaders.
 *
 * Three input forms, told apart by their first bytes:
 *   "KEY\n" + bytes  the bytes are written to a key file (scratch directory
 *                    under $FUZZ_TMPDIR, else $TMPDIR, else /tmp, one per
 *                    process) and loaded both as an HS256 secret file and
 *                    as an Ed25519 public key file
 *   "{" ...          mint: HEADER '\n' PAYLOAD ['\n' ROOM]. The harness
 *                    base64url-encodes both JSON texts and signs them, with
 *                    the Ed25519 key when HEADER contains "EdDSA", else with
 *                    HMAC-SHA-256, so mutations reach the claim checks
 *                    behind a valid signature
 *   anything else    a compact token as a client would send it (the form of
 *                    the files in corpus/jwt/)
 * Keys are those of test/unit/test_jwt.c (the corpus tokens are signed with
 * them): HS256 secret "movexd-unit-test-hs256-secret-0123456789", Ed25519
 * from seed bytes 0x01..0x20; now = 1700000000, leeway 30 s.
 *
 * Oracles, beyond the sanitizers:
 *  - no alg confusion: a token accepted with both keys is accepted with
 *    exactly one of them alone, the one its header's alg names;
 *  - requiring iss "https://auth.example/" and aud "movexd" only ever
 *    narrows what is accepted;
 *  - on failure *out is all zero and why is a non-empty string;
 *  - an accepted token has a valid sub, exp/nbf within the leeway, and
 *    grants with patterns and rights in MX_RIGHT_*; mx_token_rights on a
 *    room equals the union over grants of an independent glob matcher;
 *  - mx_pattern_match agrees with that matcher (a dynamic-programming one,
 *    unlike jwt.c's backtracking) on the input split at its first '|'.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "movexd/err.h"
#include "movexd/jwt.h"

#include "fuzz_det.h"

#define MAX_INPUT_BYTES (16 * 1024)
#define NOW INT64_C(1700000000)
#define LEEWAY 30

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_jwt: check failed: %s: ", #cond);           \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const char SECRET[] = "movexd-unit-test-hs256-secret-0123456789";
static unsigned char ed_pk[32], ed_sk[64];
static struct mx_jwt_keys both, hs_only, ed_only, claimed;
static char scratch[512], keyfile[600];

static void remove_scratch(void)
{
    unlink(keyfile);
    rmdir(scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        abort();
    unsigned char seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (unsigned char)(i + 1);
    crypto_sign_seed_keypair(ed_pk, ed_sk, seed);
    memset(&both, 0, sizeof(both));
    memcpy(both.hs256, SECRET, sizeof(SECRET) - 1);
    both.hs256_len = sizeof(SECRET) - 1;
    memcpy(both.ed25519, ed_pk, 32);
    both.has_ed25519 = 1;
    hs_only = both;
    hs_only.has_ed25519 = 0;
    memset(hs_only.ed25519, 0, 32);
    ed_only = both;
    ed_only.hs256_len = 0;
    memset(ed_only.hs256, 0, sizeof(ed_only.hs256));
    claimed = both;
    if (mx_jwt_set_claims(&claimed, "https://auth.example/", "movexd"))
        abort();

    fuzz_make_scratch(scratch, sizeof(scratch), "fuzz_jwt");
    snprintf(keyfile, sizeof(keyfile), "%s/key", scratch);
    atexit(remove_scratch);
    return 0;
}

/* ---- an independent glob matcher ---- */

static int ref_match(const char *pat, const char *s, size_t n)
{
    size_t m = strlen(pat);
    /* row[j]: pat[0..i) matches s[0..j) */
    unsigned char *row = calloc(n + 1, 1), *next = calloc(n + 1, 1);
    if (!row || !next) {
        free(row);
        free(next);
        return -1;
    }
    row[0] = 1;
    for (size_t i = 0; i < m; i++) {
        memset(next, 0, n + 1);
        if (pat[i] == '*') {
            unsigned char any = 0;
            for (size_t j = 0; j <= n; j++) {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for (size_t j = 1; j <= n; j++)
                next[j] = row[j - 1] && s[j - 1] == pat[i];
        }
        unsigned char *tmp = row;
        row = next;
        next = tmp;
    }
    int r = row[n];
    free(row);
    free(next);
    return r;
}

/* ---- verification ---- */

static int zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static int client_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-' || c == '@';
}

static int verify(const char *tok, size_t len, const struct mx_jwt_keys *k, struct mx_token *out)
{
    char why[128];
    memset(why, 'X', sizeof(why));
    int rc = mx_jwt_verify(tok, len, k, NOW, LEEWAY, out, why, sizeof(why));
    if (rc) {
        CHECK(rc == MX_EUNAUTHORIZED || rc == MX_ENOMEM, "verify returned %d", rc);
        CHECK(zero(out, sizeof(*out)), "a refused token left claims behind");
        CHECK(memchr(why, '\0', sizeof(why)) && why[0], "a refused token without a reason");
        return rc;
    }
    CHECK(len <= 8192, "a token of %zu bytes was accepted", len);
    size_t sl = strnlen(out->sub, sizeof(out->sub));
    CHECK(sl >= 1 && sl <= 128, "sub of %zu bytes", sl);
    for (size_t i = 0; i < sl; i++)
        CHECK(client_char((unsigned char)out->sub[i]), "sub \"%s\" is not a client id", out->sub);
    CHECK(out->exp == 0 || mx_add_sat_i64(out->exp, LEEWAY) >= NOW, "expired token accepted (exp %lld)",
          (long long)out->exp);
    CHECK(out->nbf == 0 || mx_add_sat_i64(out->nbf, -LEEWAY) <= NOW, "not-yet-valid token accepted (nbf %lld)",
          (long long)out->nbf);
    CHECK(out->ngrants == 0 || out->grants, "grants missing");
    for (size_t i = 0; i < out->ngrants; i++) {
        CHECK(out->grants[i].pattern, "grant %zu without a pattern", i);
        CHECK(!(out->grants[i].rights & ~(MX_RIGHT_READ | MX_RIGHT_WRITE | MX_RIGHT_CREATE)),
              "grant %zu rights %#x", i, out->grants[i].rights);
    }
    return 0;
}

static void check_rights(const struct mx_token *t, const char *room, size_t len)
{
    unsigned want = 0;
    for (size_t i = 0; i < t->ngrants; i++) {
        int m = ref_match(t->grants[i].pattern, room, len);
        if (m < 0)
            return;
        CHECK(m == mx_pattern_match(t->grants[i].pattern, room, len),
              "pattern \"%s\" on \"%.*s\": mx_pattern_match %d, reference %d", t->grants[i].pattern,
              (int)len, room, !m, m);
        if (m)
            want |= t->grants[i].rights;
    }
    unsigned got = mx_token_rights(t, room, len);
    CHECK(got == want, "rights on \"%.*s\": %#x, reference %#x", (int)len, room, got, want);
}

static const char *alg_of(const char *tok, size_t len, char *hdr, size_t cap)
{
    /* the header as decoded by libsodium (lenient about padding) */
    const char *dot = memchr(tok, '.', len);
    size_t hl = 0;
    if (!dot || sodium_base642bin((unsigned char *)hdr, cap - 1, tok, (size_t)(dot - tok), NULL, &hl,
                                  NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING))
        return NULL;
    hdr[hl] = '\0';
    return hdr;
}

static void check_token(const char *tok, size_t len, const char *room, size_t rlen)
{
    struct mx_token a, h, e;
    int ra = verify(tok, len, &both, &a);
    int rh = verify(tok, len, &hs_only, &h);
    int re = verify(tok, len, &ed_only, &e);
    if (ra == 0) {
        CHECK((rh == 0) != (re == 0), "accepted with both keys; HS256 alone %d, EdDSA alone %d", rh,
              re);
        char hdr[8192];
        const char *hs = alg_of(tok, len, hdr, sizeof(hdr));
        CHECK(hs, "accepted token with an undecodable header");
        CHECK(rh != 0 || strstr(hs, "HS256"), "accepted by the HMAC key, header %s", hs);
        CHECK(re != 0 || strstr(hs, "EdDSA"), "accepted by the Ed25519 key, header %s", hs);
        check_rights(&a, room, rlen);
    } else if (ra == MX_EUNAUTHORIZED) {
        CHECK(rh != 0 && re != 0, "refused with both keys but accepted with one");
    }
    struct mx_token c;
    int rc = verify(tok, len, &claimed, &c);
    CHECK(rc != 0 || ra == 0, "accepted only once iss and aud are required");
    mx_token_free(&c);
    mx_token_free(&a);
    mx_token_free(&h);
    mx_token_free(&e);
    CHECK(zero(&a, sizeof(a)), "mx_token_free left data");
}

/* ---- mint ---- */

static int memmem_bytes(const uint8_t *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    for (size_t i = 0; i + l <= n; i++)
        if (!memcmp(p + i, lit, l))
            return 1;
    return 0;
}

static void mint(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl)
        return;
    size_t hl = (size_t)(nl - data);
    const uint8_t *pl = nl + 1;
    const uint8_t *nl2 = memchr(pl, '\n', size - hl - 1);
    size_t pll = nl2 ? (size_t)(nl2 - pl) : size - hl - 1;
    const char *room = nl2 ? (const char *)nl2 + 1 : "todo:x";
    size_t rlen = nl2 ? size - (size_t)(nl2 + 1 - data) : 6;
    size_t cap = 2 * (hl + pll) + 200;
    char *tok = malloc(cap);
    if (!tok)
        return;
    size_t off = 0;
    sodium_bin2base64(tok, cap, data, hl, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    off = strlen(tok);
    tok[off++] = '.';
    sodium_bin2base64(tok + off, cap - off, pl, pll, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    off += strlen(tok + off);
    int ed = memmem_bytes(data, hl, "EdDSA");
    unsigned char sig[64];
    size_t siglen;
    if (ed) {
        crypto_sign_detached(sig, NULL, (unsigned char *)tok, off, ed_sk);
        siglen = 64;
    } else {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, (const unsigned char *)SECRET, sizeof(SECRET) - 1);
        crypto_auth_hmacsha256_update(&st, (unsigned char *)tok, off);
        crypto_auth_hmacsha256_final(&st, sig);
        siglen = 32;
    }
    tok[off++] = '.';
    sodium_bin2base64(tok + off, cap - off, sig, siglen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    off += strlen(tok + off);
    check_token(tok, off, room, rlen);
    free(tok);
}

/* ---- key files ---- */

static void load_keys(const uint8_t *p, size_t n)
{
    int fd = open(keyfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "%s: %s", keyfile, strerror(errno));
    CHECK(write(fd, p, n) == (ssize_t)n, "%s: write", keyfile);
    close(fd);
    char err[512];
    struct mx_jwt_keys k;
    memset(&k, 0, sizeof(k));
    if (mx_jwt_load_keys(&k, keyfile, NULL, err, sizeof(err)) == 0)
        CHECK(k.hs256_len >= 32 && k.hs256_len <= 128, "secret of %zu bytes loaded", k.hs256_len);
    else
        CHECK(err[0] && strstr(err, keyfile), "error does not name the file: %s", err);
    memset(&k, 0, sizeof(k));
    if (mx_jwt_load_keys(&k, NULL, keyfile, err, sizeof(err)) == 0)
        CHECK(k.has_ed25519 == 1, "public key loaded without has_ed25519");
    else
        CHECK(err[0] && strstr(err, keyfile), "error does not name the file: %s", err);
    unlink(keyfile);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT_BYTES)
        return 0;
    /* patterns: PATTERN '|' STRING */
    const uint8_t *bar = memchr(data, '|', size);
    if (bar && !memchr(data, '\0', (size_t)(bar - data)) && size <= 1024) {
        char pat[1024];
        size_t pl = (size_t)(bar - data);
        memcpy(pat, data, pl);
        pat[pl] = '\0';
        const char *s = (const char *)bar + 1;
        size_t sl = size - pl - 1;
        int want = ref_match(pat, s, sl);
        if (want >= 0)
            CHECK(mx_pattern_match(pat, s, sl) == want, "pattern \"%s\" on \"%.*s\": reference %d", pat,
                  (int)sl, s, want);
    }
    if (size >= 4 && !memcmp(data, "KEY\n", 4)) {
        load_keys(data + 4, size - 4);
    } else if (size >= 1 && data[0] == '{') {
        mint(data, size);
    } else {
        check_token((const char *)data, size, "todo:list", 9);
        check_token((const char *)data, size, "chat:team-a", 11);
    }
    return 0;
}
