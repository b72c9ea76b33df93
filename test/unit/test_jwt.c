/* Unit tests for jwt.c: token verification (HS256, EdDSA), every refusal
 * path (alg none, alg confusion, wrong key, tampering, base64url and shape
 * errors, header and claim validation, exp/nbf with leeway), grants and
 * rights, '*' pattern matching (including a pathological backtracking
 * case) and key file loading.
 *
 * Tokens are built here in C (crypto_auth_hmacsha256, crypto_sign_detached
 * from fixed seeds), so nothing depends on node. Three kinds of tokens come
 * from independent implementations and are hard-coded: RFC 7515 A.1 and
 * RFC 8037 A.4 examples, and two tokens minted by scripts/make-token.mjs
 * (node:crypto) - see node_cross_check.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "movexd/err.h"
#include "movexd/jwt.h"

#define NOW INT64_C(1700000000)
#define LEEWAY 30

/* The key material the fuzz corpus (test/fuzz/corpus/jwt) is signed with. */
static const char SECRET[] = "movexd-unit-test-hs256-secret-0123456789"; /* 40 bytes */
static unsigned char ed_pk[32], ed_sk[64];                               /* seed bytes 0x01..0x20 */
static unsigned char ed2_pk[32], ed2_sk[64]; /* seed bytes 0xa0..0xbf: "another issuer" */

static void setup_keys(void)
{
    ck_assert_int_ge(sodium_init(), 0);
    unsigned char seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (unsigned char)(i + 1);
    crypto_sign_seed_keypair(ed_pk, ed_sk, seed);
    for (int i = 0; i < 32; i++)
        seed[i] = (unsigned char)(0xa0 + i);
    crypto_sign_seed_keypair(ed2_pk, ed2_sk, seed);
}

static struct mx_jwt_keys keys_hs(void)
{
    struct mx_jwt_keys k;
    memset(&k, 0, sizeof k);
    memcpy(k.hs256, SECRET, sizeof SECRET - 1);
    k.hs256_len = sizeof SECRET - 1;
    return k;
}

static struct mx_jwt_keys keys_ed(void)
{
    struct mx_jwt_keys k;
    memset(&k, 0, sizeof k);
    memcpy(k.ed25519, ed_pk, 32);
    k.has_ed25519 = 1;
    return k;
}

static struct mx_jwt_keys keys_both(void)
{
    struct mx_jwt_keys k = keys_hs();
    memcpy(k.ed25519, ed_pk, 32);
    k.has_ed25519 = 1;
    return k;
}

/* ---- building tokens ---- */

static char *b64u(const void *data, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    sodium_bin2base64(s, cap, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return s;
}

enum sign_kind { SIGN_HS, SIGN_ED, SIGN_EMPTY };

/* "p0.p1.<signature over p0.p1>": SIGN_HS with key/keylen as the HMAC
 * secret, SIGN_ED with key as a 64-byte secret key, SIGN_EMPTY leaves the
 * third part empty. The parts are used as given (no re-encoding), so tests
 * can sign deliberately malformed parts. */
static char *sign_parts(const char *p0, const char *p1, enum sign_kind kind, const void *key,
                        size_t keylen)
{
    size_t l0 = strlen(p0), l1 = strlen(p1);
    char *in = malloc(l0 + l1 + 2);
    ck_assert_ptr_nonnull(in);
    memcpy(in, p0, l0);
    in[l0] = '.';
    memcpy(in + l0 + 1, p1, l1 + 1);
    size_t inlen = l0 + 1 + l1;
    char *sig;
    if (kind == SIGN_HS) {
        unsigned char mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, key, keylen);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)in, inlen);
        crypto_auth_hmacsha256_final(&st, mac);
        sig = b64u(mac, sizeof mac);
    } else if (kind == SIGN_ED) {
        unsigned char s[crypto_sign_BYTES];
        crypto_sign_detached(s, NULL, (const unsigned char *)in, inlen, key);
        sig = b64u(s, sizeof s);
    } else {
        sig = strdup("");
    }
    size_t sl = strlen(sig);
    char *tok = malloc(inlen + 1 + sl + 1);
    ck_assert_ptr_nonnull(tok);
    memcpy(tok, in, inlen);
    tok[inlen] = '.';
    memcpy(tok + inlen + 1, sig, sl + 1);
    free(in);
    free(sig);
    return tok;
}

static char *mint(const char *header, const char *payload, enum sign_kind kind, const void *key,
                  size_t keylen)
{
    char *h = b64u(header, strlen(header));
    char *p = b64u(payload, strlen(payload));
    char *t = sign_parts(h, p, kind, key, keylen);
    free(h);
    free(p);
    return t;
}

#define HS_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define ED_HEADER "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}"

static char *hs(const char *payload)
{
    return mint(HS_HEADER, payload, SIGN_HS, SECRET, sizeof SECRET - 1);
}

static char *ed(const char *payload)
{
    return mint(ED_HEADER, payload, SIGN_ED, ed_sk, 0);
}

/* Verify then free tok. On failure checks that *out was left empty and
 * that why holds no token bytes. */
static int run(char *tok, size_t len, const struct mx_jwt_keys *k, int64_t now,
               struct mx_token *out, char *why, size_t whylen)
{
    int rc = mx_jwt_verify(tok, len, k, now, LEEWAY, out, why, whylen);
    if (rc) {
        ck_assert_ptr_null(out->grants);
        ck_assert_uint_eq(out->ngrants, 0);
        ck_assert_str_eq(out->sub, "");
        ck_assert_uint_gt(strlen(why), 0);
        ck_assert_msg(!strstr(why, "eyJ"), "why leaks token bytes: %s", why);
        if (len > 8)
            ck_assert_msg(!strstr(why, tok + len - 8), "why leaks token bytes: %s", why);
    } else {
        ck_assert_str_eq(why, "");
    }
    free(tok);
    return rc;
}

#define REFUSED_AT(tok, keys, now, frag)                                                           \
    do {                                                                                           \
        struct mx_jwt_keys k_ = (keys);                                                            \
        struct mx_token t_;                                                                        \
        char w_[128];                                                                              \
        char *tk_ = (tok);                                                                         \
        int rc_ = run(tk_, strlen(tk_), &k_, (now), &t_, w_, sizeof w_);                           \
        ck_assert_msg(rc_ == MX_EUNAUTHORIZED, "accepted (rc %d), expected \"%s\"", rc_, (frag));  \
        ck_assert_msg(strstr(w_, (frag)) != NULL, "why \"%s\", expected \"%s\"", w_, (frag));      \
    } while (0)

#define REFUSED(tok, keys, frag) REFUSED_AT(tok, keys, NOW, frag)

#define ACCEPTED_AT(tok, keys, now, out)                                                           \
    do {                                                                                           \
        struct mx_jwt_keys k_ = (keys);                                                            \
        char w_[128];                                                                              \
        char *tk_ = (tok);                                                                         \
        int rc_ = run(tk_, strlen(tk_), &k_, (now), (out), w_, sizeof w_);                         \
        ck_assert_msg(rc_ == 0, "refused: %s", w_);                                                \
    } while (0)

#define ACCEPTED(tok, keys, out) ACCEPTED_AT(tok, keys, NOW, out)

/* Accepted and nothing else to look at. */
#define OK(tok, keys)                                                                              \
    do {                                                                                           \
        struct mx_token o_;                                                                        \
        ACCEPTED(tok, keys, &o_);                                                                  \
        mx_token_free(&o_);                                                                        \
    } while (0)

/* ---- valid tokens ---- */

START_TEST(valid_hs256)
{
    char p[512];
    snprintf(p, sizeof p,
             "{\"sub\":\"alice\",\"exp\":%lld,\"nbf\":%lld,\"iat\":%lld,\"iss\":\"x\","
             "\"movex\":{\"rooms\":[{\"match\":\"todo:*\",\"rights\":[\"read\",\"write\"]},"
             "{\"match\":\"todo:x\",\"rights\":[\"create\"]}]}}",
             (long long)NOW + 60, (long long)NOW - 5, (long long)NOW);
    struct mx_token t;
    ACCEPTED(hs(p), keys_hs(), &t);
    ck_assert_str_eq(t.sub, "alice");
    ck_assert_int_eq(t.exp, NOW + 60);
    ck_assert_int_eq(t.nbf, NOW - 5);
    ck_assert_uint_eq(t.ngrants, 2);
    ck_assert_str_eq(t.grants[0].pattern, "todo:*");
    ck_assert_uint_eq(t.grants[0].rights, MX_RIGHT_READ | MX_RIGHT_WRITE);
    ck_assert_str_eq(t.grants[1].pattern, "todo:x");
    ck_assert_uint_eq(t.grants[1].rights, MX_RIGHT_CREATE);
    ck_assert_uint_eq(mx_token_rights(&t, "todo:x", 6), 7);
    ck_assert_uint_eq(mx_token_rights(&t, "todo:y", 6), MX_RIGHT_READ | MX_RIGHT_WRITE);
    ck_assert_uint_eq(mx_token_rights(&t, "chat:x", 6), 0);
    mx_token_free(&t);
    ck_assert_ptr_null(t.grants);
    mx_token_free(&t); /* idempotent */
    mx_token_free(NULL);

    /* Both keys configured; header without typ; extra header members. */
    OK(hs(p), keys_both());
    OK(mint("{\"alg\":\"HS256\"}", p, SIGN_HS, SECRET, sizeof SECRET - 1), keys_hs());
    OK(mint("{\"kid\":\"k1\",\"alg\":\"HS256\",\"typ\":\"JWT\"}", p, SIGN_HS, SECRET,
            sizeof SECRET - 1),
       keys_hs());
}
END_TEST

START_TEST(valid_eddsa)
{
    struct mx_token t;
    ACCEPTED(ed("{\"sub\":\"bob@example.com:1\"}"), keys_ed(), &t);
    ck_assert_str_eq(t.sub, "bob@example.com:1");
    ck_assert_int_eq(t.exp, 0);
    ck_assert_int_eq(t.nbf, 0);
    ck_assert_uint_eq(t.ngrants, 0);
    ck_assert_ptr_null(t.grants);
    ck_assert_uint_eq(mx_token_rights(&t, "todo:x", 6), 0); /* authenticates, grants nothing */
    mx_token_free(&t);
    OK(ed("{\"sub\":\"bob\"}"), keys_both());
    OK(mint("{\"alg\":\"EdDSA\"}", "{\"sub\":\"bob\"}", SIGN_ED, ed_sk, 0), keys_ed());
}
END_TEST

/* HS256 secrets of every length the loader allows, including longer than
 * the SHA-256 block (64), which HMAC hashes first. */
START_TEST(hs256_secret_lengths)
{
    static const size_t lens[] = {32, 63, 64, 65, 128};
    unsigned char secret[128];
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (unsigned char)(i * 7 + 3);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        struct mx_jwt_keys k;
        memset(&k, 0, sizeof k);
        memcpy(k.hs256, secret, lens[i]);
        k.hs256_len = lens[i];
        OK(mint(HS_HEADER, "{\"sub\":\"a\"}", SIGN_HS, secret, lens[i]), k);
        REFUSED(mint(HS_HEADER, "{\"sub\":\"a\"}", SIGN_HS, secret, lens[i] - 1), k,
                "bad signature");
    }
}
END_TEST

/* ---- independent implementations ---- */

/* RFC 7515 appendix A.1 (HS256, 64-byte key, header with CR LF inside) and
 * RFC 8037 appendix A.4 (EdDSA). Neither payload is a movexd token, so the
 * expected refusal proves the signature was accepted: claims are read only
 * after the signature checks out. */
START_TEST(rfc_examples)
{
    static const char rfc7515_key_hex[] = "0323354b2b0fa5bc837e0665777ba68f5ab328e6f054c928a90f84b2"
                                          "d2502ebfd3fb5a92d20647ef968ab4c377623d223d2e2172052e4f08"
                                          "c0cd9af567d080a3";
    static const char rfc7515_tok[] =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0"
        "cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    static const char rfc8037_pk_hex[] =
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    static const char rfc8037_tok[] =
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    struct mx_jwt_keys k;
    memset(&k, 0, sizeof k);
    ck_assert_int_eq(sodium_hex2bin(k.hs256, sizeof k.hs256, rfc7515_key_hex,
                                    strlen(rfc7515_key_hex), NULL, &k.hs256_len, NULL),
                     0);
    ck_assert_uint_eq(k.hs256_len, 64);
    ck_assert_int_eq(sodium_hex2bin(k.ed25519, 32, rfc8037_pk_hex, 64, NULL, NULL, NULL), 0);
    k.has_ed25519 = 1;

    REFUSED(strdup(rfc7515_tok), k, "missing sub");
    REFUSED(strdup(rfc8037_tok), k, "malformed payload");

    char *bad = strdup(rfc7515_tok);
    size_t at = strlen(bad) - 10;
    bad[at] = bad[at] == 'A' ? 'B' : 'A';
    REFUSED(bad, k, "bad signature");
    bad = strdup(rfc8037_tok);
    bad[30] = bad[30] == 'A' ? 'B' : 'A';
    REFUSED(bad, k, "bad signature");
}
END_TEST

/* Produced while writing this test by:
 *   node scripts/make-token.mjs --gen-secret DIR/secret
 *   node scripts/make-token.mjs --gen-ed25519 DIR/ed
 *   node scripts/make-token.mjs --hs256-secret-file DIR/secret --sub alice@example.com \
 *        --rooms 'todo:*=read,write,create;chat:lobby=read' --now 1700000000 \
 *        --exp-in 3600 --nbf-in -60
 *   node scripts/make-token.mjs --ed25519-private-key-file DIR/ed/ed25519-private.pem \
 *        --sub bob --rooms 'chat:team-*=read,write' --now 1700000000 --exp-in 3600
 * NODE_SECRET_FILE and NODE_PUBLIC_PEM are the contents of DIR/secret and
 * DIR/ed/ed25519-public.pem (the private key was thrown away). The keys are
 * loaded through mx_jwt_load_keys, so this also checks the loader on files
 * written by node. */
static const char NODE_SECRET_FILE[] =
    "UF4NVvU3Ttt9YcRQFnihu29ezNjKtl_-wHXkV5qoMFaifGR6Rxis9-oezbxS1TTn\n";
static const char NODE_PUBLIC_PEM[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAXQIK7gcyxIgWJgIfD8RfdxYyiX05g7RSZ9STO63PrqE=\n"
    "-----END PUBLIC KEY-----\n";
static const char NODE_HS_TOKEN[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSIsImV4cCI6MTcwMDAwMzYwMCwibmJmIjoxNjk5OTk5OTQwLCJtb3ZleCI6"
    "eyJyb29tcyI6W3sibWF0Y2giOiJ0b2RvOioiLCJyaWdodHMiOlsicmVhZCIsIndyaXRlIiwiY3JlYXRlIl19LHsibWF0"
    "Y2giOiJjaGF0OmxvYmJ5IiwicmlnaHRzIjpbInJlYWQiXX1dfX0.XyEPt-RatSFEWkGvFqKs3fnGzoi8yxNZiDHeJDUm-"
    "fw";
static const char NODE_ED_TOKEN[] =
    "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJib2IiLCJleHAiOjE3MDAwMDM2MDAsIm1vdmV4Ijp7InJvb21zIjpbeyJtYXRjaCI6ImNoYXQ6dGVhbS0q"
    "IiwicmlnaHRzIjpbInJlYWQiLCJ3cml0ZSJdfV19fQ."
    "efGuy-bLeeY-ngu6uz2BXujIuEo4Y46ROIT0lGf08e--7vFaffFRQ-llbaYP6x2yAh8IbdrTrf9hXFF3hXRQCw";

/* ---- key files ---- */

static char tmpdir[64];

static void mk_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/mx-jwt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static char *put(const char *name, const void *data, size_t len)
{
    static char path[4][128];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    return p;
}

static char *puts_file(const char *name, const char *text)
{
    return put(name, text, strlen(text));
}

static void rm_tmpdir(void)
{
    static const char *names[] = {"s", "p", "p2", "missing"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

START_TEST(node_cross_check)
{
    mk_tmpdir();
    struct mx_jwt_keys k;
    char err[256];
    ck_assert_int_eq(mx_jwt_load_keys(&k, puts_file("s", NODE_SECRET_FILE),
                                      puts_file("p", NODE_PUBLIC_PEM), err, sizeof err),
                     0);
    ck_assert_uint_eq(k.hs256_len, 64);
    ck_assert_int_eq(k.has_ed25519, 1);

    struct mx_token t;
    ACCEPTED(strdup(NODE_HS_TOKEN), k, &t);
    ck_assert_str_eq(t.sub, "alice@example.com");
    ck_assert_int_eq(t.exp, NOW + 3600);
    ck_assert_int_eq(t.nbf, NOW - 60);
    ck_assert_uint_eq(t.ngrants, 2);
    ck_assert_uint_eq(mx_token_rights(&t, "todo:a", 6), 7);
    ck_assert_uint_eq(mx_token_rights(&t, "chat:lobby", 10), MX_RIGHT_READ);
    ck_assert_uint_eq(mx_token_rights(&t, "chat:other", 10), 0);
    mx_token_free(&t);

    ACCEPTED(strdup(NODE_ED_TOKEN), k, &t);
    ck_assert_str_eq(t.sub, "bob");
    ck_assert_uint_eq(mx_token_rights(&t, "chat:team-a", 11), MX_RIGHT_READ | MX_RIGHT_WRITE);
    ck_assert_uint_eq(mx_token_rights(&t, "chat:team", 9), 0);
    mx_token_free(&t);

    /* node's tokens expire like ours. */
    REFUSED_AT(strdup(NODE_ED_TOKEN), k, NOW + 3600 + LEEWAY + 1, "expired");
    /* Our own EdDSA key does not verify node's token. */
    REFUSED(strdup(NODE_ED_TOKEN), keys_both(), "bad signature");
    rm_tmpdir();
}
END_TEST

/* ---- alg ---- */

START_TEST(alg_none)
{
    static const char *nones[] = {"none", "None", "NONE", "nOnE"};
    const char *p = "{\"sub\":\"mallory\"}";
    for (size_t i = 0; i < sizeof nones / sizeof nones[0]; i++) {
        char h[64];
        snprintf(h, sizeof h, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", nones[i]);
        REFUSED(mint(h, p, SIGN_EMPTY, NULL, 0), keys_both(), "alg none is not accepted");
        /* with a signature part that is a valid HMAC / Ed25519 signature */
        REFUSED(mint(h, p, SIGN_HS, SECRET, sizeof SECRET - 1), keys_both(),
                "alg none is not accepted");
        REFUSED(mint(h, p, SIGN_ED, ed_sk, 0), keys_both(), "alg none is not accepted");
    }
    /* without the signature part at all: "header.payload" */
    char *t = mint("{\"alg\":\"none\"}", p, SIGN_EMPTY, NULL, 0);
    t[strlen(t) - 1] = '\0';
    REFUSED(t, keys_both(), "three parts");
}
END_TEST

START_TEST(alg_unknown)
{
    static const char *hdrs[] = {
        "{\"alg\":\"HS384\"}",  "{\"alg\":\"HS512\"}",   "{\"alg\":\"RS256\"}",
        "{\"alg\":\"ES256\"}",  "{\"alg\":\"PS256\"}",   "{\"alg\":\"hs256\"}",
        "{\"alg\":\"HS256 \"}", "{\"alg\":\"Ed25519\"}", "{\"alg\":\"eddsa\"}",
        "{\"alg\":5}",          "{\"alg\":null}",        "{\"alg\":[\"HS256\"]}",
        "{\"alg\":\"\"}",
    };
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++)
        REFUSED(mint(hdrs[i], "{\"sub\":\"a\"}", SIGN_HS, SECRET, sizeof SECRET - 1), keys_both(),
                "unknown alg");
}
END_TEST

START_TEST(alg_confusion)
{
    const char *p = "{\"sub\":\"mallory\"}";
    /* A valid EdDSA token when only HS256 is configured, and vice versa. */
    REFUSED(ed(p), keys_hs(), "EdDSA is not configured");
    REFUSED(hs(p), keys_ed(), "HS256 is not configured");
    /* The classic: HS256 signed with the (public) Ed25519 key as secret. */
    REFUSED(mint(HS_HEADER, p, SIGN_HS, ed_pk, 32), keys_ed(), "HS256 is not configured");
    REFUSED(mint(HS_HEADER, p, SIGN_HS, ed_pk, 32), keys_both(), "bad signature");
    /* Header says one alg, the signature is the other's. */
    REFUSED(mint(ED_HEADER, p, SIGN_HS, SECRET, sizeof SECRET - 1), keys_both(), "bad signature");
    REFUSED(mint(HS_HEADER, p, SIGN_ED, ed_sk, 0), keys_both(), "bad signature");
    /* No keys at all. */
    struct mx_jwt_keys none;
    memset(&none, 0, sizeof none);
    REFUSED(hs(p), none, "HS256 is not configured");
    REFUSED(ed(p), none, "EdDSA is not configured");
}
END_TEST

START_TEST(wrong_key)
{
    const char *p = "{\"sub\":\"a\"}";
    static const char other[] = "movexd-unit-test-hs256-secret-012345678X";
    REFUSED(mint(HS_HEADER, p, SIGN_HS, other, sizeof other - 1), keys_both(), "bad signature");
    /* a prefix of the real secret */
    REFUSED(mint(HS_HEADER, p, SIGN_HS, SECRET, sizeof SECRET - 2), keys_both(), "bad signature");
    REFUSED(mint(ED_HEADER, p, SIGN_ED, ed2_sk, 0), keys_both(), "bad signature");
}
END_TEST

START_TEST(tampered)
{
    const char *p =
        "{\"sub\":\"alice\",\"movex\":{\"rooms\":[{\"match\":\"a\",\"rights\":[\"read\"]}]}}";
    for (int kind = 0; kind < 2; kind++) {
        char *good = kind ? ed(p) : hs(p);
        size_t d1 = (size_t)(strchr(good, '.') - good);
        size_t d2 = (size_t)(strrchr(good, '.') - good);

        /* one payload character changed (still valid base64url) */
        char *t = strdup(good);
        size_t at = d1 + 1 + (d2 - d1) / 2;
        t[at] = t[at] == 'A' ? 'B' : 'A';
        REFUSED(t, keys_both(), "bad signature");

        /* one header character changed */
        t = strdup(good);
        t[d1 / 2] = t[d1 / 2] == 'A' ? 'B' : 'A';
        REFUSED(t, keys_both(), "");

        /* the header swapped for another valid one of the same alg */
        char *h2 = b64u(kind ? "{\"alg\":\"EdDSA\"}" : "{\"alg\":\"HS256\"}", 15);
        size_t hl = strlen(h2);
        t = malloc(hl + strlen(good + d1) + 1);
        memcpy(t, h2, hl);
        strcpy(t + hl, good + d1);
        free(h2);
        REFUSED(t, keys_both(), "bad signature");

        /* one signature character changed */
        t = strdup(good);
        at = d2 + 5;
        t[at] = t[at] == 'A' ? 'B' : 'A';
        REFUSED(t, keys_both(), "bad signature");

        /* signature truncated / extended */
        t = strdup(good);
        t[strlen(t) - 4] = '\0';
        REFUSED(t, keys_both(), "");
        t = malloc(strlen(good) + 5);
        strcpy(t, good);
        strcat(t, "AAAA");
        REFUSED(t, keys_both(), "");

        /* signature of another payload */
        t = strdup(good);
        char *other = kind ? ed("{\"sub\":\"bob\"}") : hs("{\"sub\":\"bob\"}");
        size_t od2 = (size_t)(strrchr(other, '.') - other);
        t = realloc(t, d2 + strlen(other + od2) + 1);
        strcpy(t + d2, other + od2);
        free(other);
        REFUSED(t, keys_both(), "bad signature");
        free(good);
    }
}
END_TEST

/* ---- shape and base64url ---- */

START_TEST(shape)
{
    static const char *bad[] = {"",    ".",       "..",   "...",  "abc",
                                "a.b", "a.b.c.d", ".b.c", "a..c", "eyJhbGciOiJIUzI1NiJ9..abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mx_jwt_keys k = keys_both();
        struct mx_token t;
        char w[128];
        char *s = strdup(bad[i]);
        int rc = mx_jwt_verify(s, strlen(s), &k, NOW, LEEWAY, &t, w, sizeof w);
        ck_assert_msg(rc == MX_EUNAUTHORIZED, "accepted \"%s\"", bad[i]);
        ck_assert_ptr_null(t.grants);
        free(s);
    }
    struct mx_token t;
    char w[128];
    struct mx_jwt_keys k = keys_both();
    ck_assert_int_eq(mx_jwt_verify(NULL, 0, &k, NOW, LEEWAY, &t, w, sizeof w), MX_EUNAUTHORIZED);

    /* empty signature part with a real alg */
    REFUSED(mint(HS_HEADER, "{\"sub\":\"a\"}", SIGN_EMPTY, NULL, 0), keys_both(),
            "missing signature");
    /* a valid token with an extra dot, part or trailing dot */
    char *good = hs("{\"sub\":\"a\"}");
    char *t2 = malloc(strlen(good) + 8);
    sprintf(t2, "%s.", good);
    REFUSED(t2, keys_both(), "three parts");
    t2 = malloc(strlen(good) + 8);
    sprintf(t2, "%s.AAAA", good);
    REFUSED(t2, keys_both(), "three parts");
    t2 = malloc(strlen(good) + 8);
    sprintf(t2, ".%s", good);
    REFUSED(t2, keys_both(), "three parts");

    /* len is honoured: the token is not read as a C string */
    size_t gl = strlen(good);
    t2 = malloc(gl + 8);
    memcpy(t2, good, gl);
    memcpy(t2 + gl, "garbage", 8);
    int rc = mx_jwt_verify(t2, gl, &k, NOW, LEEWAY, &t, w, sizeof w);
    ck_assert_int_eq(rc, 0);
    mx_token_free(&t);
    rc = mx_jwt_verify(t2, gl - 1, &k, NOW, LEEWAY, &t, w, sizeof w);
    ck_assert_int_eq(rc, MX_EUNAUTHORIZED);
    /* a NUL inside the token */
    t2[5] = '\0';
    rc = mx_jwt_verify(t2, gl, &k, NOW, LEEWAY, &t, w, sizeof w);
    ck_assert_int_eq(rc, MX_EUNAUTHORIZED);
    free(t2);
    free(good);
}
END_TEST

/* Replace one character of a part and sign the result, so only the
 * base64url decoder can object. */
static char *sign_with_payload_part(const char *ppart)
{
    char *h = b64u(HS_HEADER, strlen(HS_HEADER));
    char *t = sign_parts(h, ppart, SIGN_HS, SECRET, sizeof SECRET - 1);
    free(h);
    return t;
}

START_TEST(bad_base64url)
{
    /* 13 bytes: base64 needs padding ("==") */
    const char *p = "{\"sub\":\"a_b\"}";
    ck_assert_uint_eq(strlen(p) % 3, 1);
    char *pp = b64u(p, strlen(p));
    OK(sign_with_payload_part(pp), keys_hs());

    char buf[256];
    snprintf(buf, sizeof buf, "%s==", pp);
    REFUSED(sign_with_payload_part(buf), keys_hs(), "malformed payload");
    snprintf(buf, sizeof buf, "%s=", pp);
    REFUSED(sign_with_payload_part(buf), keys_hs(), "malformed payload");
    static const char subst[] = {'+', '/', '=', ' ', '\n', '.', '%', '\x80'};
    for (size_t i = 0; i < sizeof subst; i++) {
        if (subst[i] == '.')
            continue; /* would change the shape instead */
        snprintf(buf, sizeof buf, "%s", pp);
        buf[3] = subst[i];
        REFUSED(sign_with_payload_part(buf), keys_hs(), "malformed payload");
    }
    /* a length of 1 mod 4 */
    snprintf(buf, sizeof buf, "%sAAA", pp);
    ck_assert_uint_eq(strlen(buf) % 4, 1);
    REFUSED(sign_with_payload_part(buf), keys_hs(), "malformed payload");
    /* non-canonical: trailing bits set in the last character ('Q' -> 'R') */
    size_t n = strlen(pp);
    snprintf(buf, sizeof buf, "%s", pp);
    ck_assert_int_eq(n % 4, 2); /* last char carries 2 data bits + 4 zero bits */
    buf[n - 1] = (char)(buf[n - 1] + 1);
    REFUSED(sign_with_payload_part(buf), keys_hs(), "malformed payload");

    /* padding on the header part */
    char *h = b64u("{\"alg\":\"HS256\",\"x\":1}", 21); /* 21 bytes: no padding */
    char *hp = b64u("{\"alg\":\"HS256\",\"x\":12}", 22);
    snprintf(buf, sizeof buf, "%s==", hp);
    REFUSED(sign_parts(buf, pp, SIGN_HS, SECRET, sizeof SECRET - 1), keys_hs(), "malformed header");
    OK(sign_parts(h, pp, SIGN_HS, SECRET, sizeof SECRET - 1), keys_hs());
    OK(sign_parts(hp, pp, SIGN_HS, SECRET, sizeof SECRET - 1), keys_hs());
    free(h);
    free(hp);

    /* padding and std alphabet on the signature part */
    char *good = sign_with_payload_part(pp);
    char *t = malloc(strlen(good) + 2);
    sprintf(t, "%s=", good);
    REFUSED(t, keys_hs(), "malformed signature");
    t = strdup(good);
    t[strlen(t) - 3] = '+';
    REFUSED(t, keys_hs(), "malformed signature");
    t = strdup(good);
    t[strlen(t) - 3] = '/';
    REFUSED(t, keys_hs(), "malformed signature");
    /* Bytes >= 0x80 in every part. libsodium 1.0.18's decoder alone takes
     * them for base64 digits, which would give one signature many
     * encodings (a token that differs as a string but still verifies). */
    for (int c = 0x80; c <= 0xff; c++) {
        t = strdup(good);
        t[strlen(t) - 3] = (char)c;
        REFUSED(t, keys_hs(), "malformed signature");
        t = strdup(good);
        t[2] = (char)c;
        REFUSED(t, keys_hs(), "malformed header");
        snprintf(buf, sizeof buf, "%s", pp);
        buf[3] = (char)c;
        REFUSED(sign_with_payload_part(buf), keys_hs(), "malformed payload");
    }
    free(good);
    free(pp);
}
END_TEST

START_TEST(oversize)
{
    struct mx_jwt_keys k = keys_hs();
    char *filler = malloc(8200);
    size_t last_ok = 0;
    int refused = 0;
    for (size_t n = 6000; n < 6300 && !refused; n++) {
        memset(filler, 'x', n);
        filler[n] = '\0';
        char *p = malloc(n + 64);
        sprintf(p, "{\"sub\":\"a\",\"pad\":\"%s\"}", filler);
        char *t = hs(p);
        free(p);
        size_t len = strlen(t);
        struct mx_token out;
        char w[128];
        int rc = mx_jwt_verify(t, len, &k, NOW, LEEWAY, &out, w, sizeof w);
        if (len <= 8192) {
            ck_assert_msg(rc == 0, "len %zu refused: %s", len, w);
            mx_token_free(&out);
            last_ok = len;
        } else {
            ck_assert_int_eq(rc, MX_EUNAUTHORIZED);
            ck_assert_str_eq(w, "token too large");
            refused = 1;
        }
        free(t);
    }
    ck_assert_int_eq(refused, 1);
    ck_assert_uint_ge(last_ok, 8190);
    /* Huge garbage is refused on length alone. */
    char *big = malloc(1 << 20);
    memset(big, 'A', 1 << 20);
    struct mx_token out;
    char w[64];
    ck_assert_int_eq(mx_jwt_verify(big, 1 << 20, &k, NOW, LEEWAY, &out, w, sizeof w),
                     MX_EUNAUTHORIZED);
    ck_assert_str_eq(w, "token too large");
    free(big);
    free(filler);
}
END_TEST

/* ---- header ---- */

START_TEST(header_checks)
{
    const char *p = "{\"sub\":\"a\"}";
#define HS_WITH(h) mint(h, p, SIGN_HS, SECRET, sizeof SECRET - 1)
    REFUSED(HS_WITH("[\"HS256\"]"), keys_hs(), "malformed header");
    REFUSED(HS_WITH("\"HS256\""), keys_hs(), "malformed header");
    REFUSED(HS_WITH("null"), keys_hs(), "malformed header");
    REFUSED(HS_WITH("alg=HS256"), keys_hs(), "malformed header");
    REFUSED(HS_WITH("{\"alg\":\"HS256\"} x"), keys_hs(), "malformed header");
    REFUSED(HS_WITH("{\"alg\":\"HS256\""), keys_hs(), "malformed header");
    REFUSED(HS_WITH("{\"alg\":\"none\",\"alg\":\"HS256\"}"), keys_hs(), "malformed header");
    REFUSED(HS_WITH("{\"alg\":\"HS256\",\"alg\":\"HS256\"}"), keys_hs(), "malformed header");
    REFUSED(HS_WITH("{}"), keys_hs(), "missing alg");
    REFUSED(HS_WITH("{\"typ\":\"JWT\"}"), keys_hs(), "missing alg");
    REFUSED(HS_WITH("{\"alg\":\"HS256\",\"typ\":\"jwt\"}"), keys_hs(), "typ must be JWT");
    REFUSED(HS_WITH("{\"alg\":\"HS256\",\"typ\":\"JWS\"}"), keys_hs(), "typ must be JWT");
    REFUSED(HS_WITH("{\"alg\":\"HS256\",\"typ\":1}"), keys_hs(), "typ must be JWT");
    REFUSED(HS_WITH("{\"alg\":\"HS256\",\"typ\":null}"), keys_hs(), "typ must be JWT");
    REFUSED(HS_WITH("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}"), keys_hs(), "crit");
    REFUSED(HS_WITH("{\"alg\":\"HS256\",\"crit\":[]}"), keys_hs(), "crit");
    REFUSED(HS_WITH("{\"alg\":\"HS256\",\"b64\":false,\"crit\":[\"b64\"]}"), keys_hs(), "crit");
    OK(HS_WITH("{\"alg\":\"HS256\",\"typ\":\"JWT\"}"), keys_hs());
    OK(HS_WITH(" {\"alg\" : \"HS256\"}\r\n"), keys_hs());
#undef HS_WITH
}
END_TEST

/* ---- payload ---- */

START_TEST(payload_checks)
{
    REFUSED(hs("[]"), keys_hs(), "malformed payload");
    REFUSED(hs("1"), keys_hs(), "malformed payload");
    REFUSED(hs("null"), keys_hs(), "malformed payload");
    REFUSED(hs("\"alice\""), keys_hs(), "malformed payload");
    REFUSED(hs("sub=alice"), keys_hs(), "malformed payload");
    REFUSED(hs("{\"sub\":\"alice\"} {}"), keys_hs(), "malformed payload");
    REFUSED(hs("{\"sub\":\"alice\",\"sub\":\"admin\"}"), keys_hs(), "malformed payload");
    REFUSED(hs("{\"sub\":\"al\xff"
               "ce\"}"),
            keys_hs(), "malformed payload"); /* not UTF-8 */
    REFUSED(hs("{\"sub\":\"al\\u0000ice\"}"), keys_hs(), "malformed payload");
    REFUSED(hs("{\"sub\":\"a\",\"n\":1e999}"), keys_hs(), "malformed payload");
}
END_TEST

START_TEST(sub_checks)
{
    REFUSED(hs("{}"), keys_hs(), "missing sub");
    REFUSED(hs("{\"Sub\":\"a\"}"), keys_hs(), "missing sub");
    REFUSED(hs("{\"sub\":5}"), keys_hs(), "sub must be");
    REFUSED(hs("{\"sub\":null}"), keys_hs(), "sub must be");
    REFUSED(hs("{\"sub\":[\"a\"]}"), keys_hs(), "sub must be");
    REFUSED(hs("{\"sub\":\"\"}"), keys_hs(), "sub must be");
    REFUSED(hs("{\"sub\":\"a b\"}"), keys_hs(), "sub must be");
    REFUSED(hs("{\"sub\":\"a/b\"}"), keys_hs(), "sub must be");
    REFUSED(hs("{\"sub\":\"a*\"}"), keys_hs(), "sub must be");
    REFUSED(hs("{\"sub\":\"\xc3\xa9\"}"), keys_hs(), "sub must be");

    char p[300], id[140];
    memset(id, 'a', 128);
    id[128] = '\0';
    snprintf(p, sizeof p, "{\"sub\":\"%s\"}", id);
    struct mx_token t;
    ACCEPTED(hs(p), keys_hs(), &t);
    ck_assert_str_eq(t.sub, id);
    mx_token_free(&t);
    id[128] = 'a';
    id[129] = '\0';
    snprintf(p, sizeof p, "{\"sub\":\"%s\"}", id);
    REFUSED(hs(p), keys_hs(), "sub must be");

    ACCEPTED(hs("{\"sub\":\"A-Z_a.z:0@9\"}"), keys_hs(), &t);
    ck_assert_str_eq(t.sub, "A-Z_a.z:0@9");
    mx_token_free(&t);
}
END_TEST

/* ---- iss / aud (conf auth_issuer, auth_audience) ---- */

#define ISS "https://auth.example/"
#define AUD "movexd-prod"

static struct mx_jwt_keys with_claims(struct mx_jwt_keys k, const char *iss, const char *aud)
{
    ck_assert_int_eq(mx_jwt_set_claims(&k, iss, aud), 0);
    return k;
}

/* {"sub":"a"} plus the given raw JSON members (may be ""). */
static char *hs_with(const char *members)
{
    char p[512];
    snprintf(p, sizeof p, "{\"sub\":\"a\"%s%s}", members[0] ? "," : "", members);
    return hs(p);
}

START_TEST(iss_aud_unset_ignored)
{
    /* nothing configured: iss and aud are not looked at, whatever they hold */
    OK(hs_with(""), keys_hs());
    OK(hs_with("\"iss\":\"anyone\",\"aud\":\"anything\""), keys_hs());
    OK(hs_with("\"iss\":5,\"aud\":[1,{}]"), keys_hs());
    /* only iss configured: aud is not looked at */
    OK(hs_with("\"iss\":\"" ISS "\",\"aud\":5"), with_claims(keys_hs(), ISS, NULL));
    OK(hs_with("\"iss\":\"x\",\"aud\":\"" AUD "\""), with_claims(keys_hs(), "", AUD));
}
END_TEST

START_TEST(iss_checked)
{
    struct mx_jwt_keys k = with_claims(keys_hs(), ISS, NULL);
    OK(hs_with("\"iss\":\"" ISS "\""), k);
    OK(hs_with("\"iss\":\"https:\\/\\/auth.example\\/\""), k); /* JSON escapes decode first */
    REFUSED(hs_with(""), k, "missing iss");
    REFUSED(hs_with("\"Iss\":\"" ISS "\""), k, "missing iss");
    REFUSED(hs_with("\"iss\":\"https://evil.example/\""), k, "wrong issuer");
    /* exact: no case folding */
    REFUSED(hs_with("\"iss\":\"https://Auth.example/\""), k, "wrong issuer");
    REFUSED(hs_with("\"iss\":\"https://auth.example\""), k, "wrong issuer");  /* a prefix */
    REFUSED(hs_with("\"iss\":\"https://auth.example/x\""), k, "wrong issuer"); /* longer */
    REFUSED(hs_with("\"iss\":\"\""), k, "wrong issuer");
    REFUSED(hs_with("\"iss\":null"), k, "iss must be a string");
    REFUSED(hs_with("\"iss\":5"), k, "iss must be a string");
    REFUSED(hs_with("\"iss\":[\"" ISS "\"]"), k, "iss must be a string");
    /* EdDSA the same */
    struct mx_jwt_keys ke = with_claims(keys_ed(), ISS, NULL);
    OK(ed("{\"sub\":\"a\",\"iss\":\"" ISS "\"}"), ke);
    REFUSED(ed("{\"sub\":\"a\",\"iss\":\"other\"}"), ke, "wrong issuer");
    /* the refusal never quotes the claim */
    struct mx_token t;
    char w[128];
    char *tok = hs_with("\"iss\":\"secret-issuer-name\"");
    ck_assert_int_eq(mx_jwt_verify(tok, strlen(tok), &k, NOW, LEEWAY, &t, w, sizeof w),
                     MX_EUNAUTHORIZED);
    ck_assert_ptr_null(strstr(w, "secret-issuer-name"));
    ck_assert_ptr_null(strstr(w, ISS));
    free(tok);
}
END_TEST

START_TEST(aud_checked)
{
    struct mx_jwt_keys k = with_claims(keys_hs(), NULL, AUD);
    /* RFC 7519 4.1.3: a string, or an array of strings holding ours */
    OK(hs_with("\"aud\":\"" AUD "\""), k);
    OK(hs_with("\"aud\":[\"" AUD "\"]"), k);
    OK(hs_with("\"aud\":[\"billing\",\"" AUD "\",\"chat\"]"), k);
    OK(hs_with("\"aud\":[\"" AUD "\",\"" AUD "\"]"), k);
    REFUSED(hs_with(""), k, "missing aud");
    REFUSED(hs_with("\"aud\":\"billing\""), k, "wrong audience");
    REFUSED(hs_with("\"aud\":\"movexd\""), k, "wrong audience");         /* a prefix */
    REFUSED(hs_with("\"aud\":\"movexd-prod2\""), k, "wrong audience");    /* longer */
    REFUSED(hs_with("\"aud\":\"MOVEXD-PROD\""), k, "wrong audience");     /* exact */
    REFUSED(hs_with("\"aud\":\"movexd-prod billing\""), k, "wrong audience"); /* not a list */
    REFUSED(hs_with("\"aud\":[]"), k, "wrong audience");
    REFUSED(hs_with("\"aud\":[\"billing\",\"chat\"]"), k, "wrong audience");
    /* a malformed member refuses the token even when ours is there */
    REFUSED(hs_with("\"aud\":[\"" AUD "\",1]"), k, "aud must be a string or an array of strings");
    REFUSED(hs_with("\"aud\":[[\"" AUD "\"]]"), k, "aud must be");
    REFUSED(hs_with("\"aud\":null"), k, "aud must be");
    REFUSED(hs_with("\"aud\":7"), k, "aud must be");
    REFUSED(hs_with("\"aud\":{\"" AUD "\":true}"), k, "aud must be");
    struct mx_jwt_keys ke = with_claims(keys_ed(), NULL, AUD);
    OK(ed("{\"sub\":\"a\",\"aud\":[\"x\",\"" AUD "\"]}"), ke);
    REFUSED(ed("{\"sub\":\"a\",\"aud\":[\"x\"]}"), ke, "wrong audience");
}
END_TEST

START_TEST(iss_aud_together)
{
    struct mx_jwt_keys k = with_claims(keys_both(), ISS, AUD);
    struct mx_token t;
    ACCEPTED(hs_with("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\","
                     "\"movex\":{\"rooms\":[{\"match\":\"todo:*\",\"rights\":[\"read\"]}]}"),
             k, &t);
    ck_assert_str_eq(t.sub, "a");
    ck_assert_uint_eq(t.ngrants, 1);
    mx_token_free(&t);
    REFUSED(hs_with("\"iss\":\"" ISS "\",\"aud\":\"billing\""), k, "wrong audience");
    REFUSED(hs_with("\"iss\":\"other\",\"aud\":\"" AUD "\""), k, "wrong issuer");
    REFUSED(hs_with("\"aud\":\"" AUD "\""), k, "missing iss");
    REFUSED(hs_with("\"iss\":\"" ISS "\""), k, "missing aud");
    /* the right claims never stand in for a signature, or for exp */
    char *bad = mint(HS_HEADER, "{\"sub\":\"a\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\"}",
                     SIGN_HS, "another-secret-another-secret-12", 32);
    REFUSED(bad, k, "bad signature");
    char p[256];
    snprintf(p, sizeof p, "\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld",
             (long long)NOW - LEEWAY - 1);
    REFUSED(hs_with(p), k, "expired");
}
END_TEST

START_TEST(set_claims)
{
    struct mx_jwt_keys k = keys_hs();
    ck_assert_int_eq(mx_jwt_set_claims(&k, ISS, AUD), 0);
    ck_assert_str_eq(k.issuer, ISS);
    ck_assert_str_eq(k.audience, AUD);
    ck_assert_uint_eq(k.hs256_len, sizeof SECRET - 1); /* the keys stay */
    ck_assert_int_eq(mx_jwt_set_claims(&k, NULL, ""), 0);
    ck_assert_str_eq(k.issuer, "");
    ck_assert_str_eq(k.audience, "");
    char longest[MX_JWT_CLAIM_MAX + 2];
    memset(longest, 'i', MX_JWT_CLAIM_MAX);
    longest[MX_JWT_CLAIM_MAX] = '\0';
    ck_assert_int_eq(mx_jwt_set_claims(&k, longest, longest), 0);
    ck_assert_uint_eq(strlen(k.issuer), MX_JWT_CLAIM_MAX);
    /* too long: nothing is accepted by mistake, the keys are wiped */
    longest[MX_JWT_CLAIM_MAX] = 'i';
    longest[MX_JWT_CLAIM_MAX + 1] = '\0';
    ck_assert_int_eq(mx_jwt_set_claims(&k, ISS, longest), -1);
    ck_assert_uint_eq(k.hs256_len, 0);
    ck_assert_str_eq(k.issuer, "");
    ck_assert_str_eq(k.audience, "");
    REFUSED(hs_with("\"iss\":\"" ISS "\""), k, "HS256 is not configured");
    /* mx_jwt_load_keys starts from nothing: no claims left over */
    mk_tmpdir();
    const char *f = puts_file("s", SECRET);
    char err[256];
    k = with_claims(keys_hs(), ISS, AUD);
    ck_assert_int_eq(mx_jwt_load_keys(&k, f, NULL, err, sizeof err), 0);
    ck_assert_str_eq(k.issuer, "");
    ck_assert_str_eq(k.audience, "");
    rm_tmpdir();
}
END_TEST

/* ---- exp / nbf ---- */

static char *hs_times(const char *exp, const char *nbf)
{
    char p[256];
    int n = snprintf(p, sizeof p, "{\"sub\":\"a\"");
    if (exp)
        n += snprintf(p + n, sizeof p - (size_t)n, ",\"exp\":%s", exp);
    if (nbf)
        n += snprintf(p + n, sizeof p - (size_t)n, ",\"nbf\":%s", nbf);
    snprintf(p + n, sizeof p - (size_t)n, "}");
    return hs(p);
}

static const char *num(char *buf, long long v)
{
    sprintf(buf, "%lld", v);
    return buf;
}

START_TEST(exp_nbf)
{
    char b[32];
    struct mx_token t;
    /* exp: refused iff now > exp + leeway */
    ACCEPTED(hs_times(num(b, NOW + 1), NULL), keys_hs(), &t);
    ck_assert_int_eq(t.exp, NOW + 1);
    mx_token_free(&t);
    OK(hs_times(num(b, NOW), NULL), keys_hs());
    OK(hs_times(num(b, NOW - 1), NULL), keys_hs());      /* within leeway */
    OK(hs_times(num(b, NOW - LEEWAY), NULL), keys_hs()); /* boundary */
    REFUSED(hs_times(num(b, NOW - LEEWAY - 1), NULL), keys_hs(), "expired");
    REFUSED(hs_times(num(b, NOW - 100000), NULL), keys_hs(), "expired");
    REFUSED(hs_times("0", NULL), keys_hs(), "expired");
    REFUSED(hs_times("-1", NULL), keys_hs(), "expired");

    /* nbf: refused iff now + leeway < nbf */
    ACCEPTED(hs_times(NULL, num(b, NOW - 10)), keys_hs(), &t);
    ck_assert_int_eq(t.nbf, NOW - 10);
    mx_token_free(&t);
    OK(hs_times(NULL, num(b, NOW + 1)), keys_hs()); /* within leeway */
    OK(hs_times(NULL, num(b, NOW + LEEWAY)), keys_hs());
    REFUSED(hs_times(NULL, num(b, NOW + LEEWAY + 1)), keys_hs(), "not yet valid");
    REFUSED(hs_times(NULL, num(b, NOW + 100000)), keys_hs(), "not yet valid");

    /* Reals are seconds too; stored rounded so that integer checks on the
     * stored value agree (floor for exp, ceil for nbf). */
    char r[64];
    snprintf(r, sizeof r, "%lld.5", (long long)(NOW - LEEWAY - 1));
    REFUSED(hs_times(r, NULL), keys_hs(), "expired");
    snprintf(r, sizeof r, "%lld.5", (long long)(NOW - LEEWAY));
    ACCEPTED(hs_times(r, NULL), keys_hs(), &t);
    ck_assert_int_eq(t.exp, NOW - LEEWAY);
    mx_token_free(&t);
    snprintf(r, sizeof r, "%lld.5", (long long)(NOW + LEEWAY));
    REFUSED(hs_times(NULL, r), keys_hs(), "not yet valid");
    snprintf(r, sizeof r, "%lld.5", (long long)(NOW + LEEWAY - 1));
    ACCEPTED(hs_times(NULL, r), keys_hs(), &t);
    ck_assert_int_eq(t.nbf, NOW + LEEWAY);
    mx_token_free(&t);
    snprintf(r, sizeof r, "%lld.0", (long long)(NOW + 10));
    ACCEPTED(hs_times(r, NULL), keys_hs(), &t);
    ck_assert_int_eq(t.exp, NOW + 10);
    mx_token_free(&t);

    /* Far future and extreme values */
    ACCEPTED(hs_times("1e300", NULL), keys_hs(), &t);
    ck_assert_int_eq(t.exp, INT64_MAX);
    mx_token_free(&t);
    ACCEPTED(hs_times("9223372036854775807", "-9223372036854775807"), keys_hs(), &t);
    ck_assert_int_eq(t.exp, INT64_MAX);
    mx_token_free(&t);
    REFUSED(hs_times("-1e300", NULL), keys_hs(), "expired");
    REFUSED(hs_times(NULL, "1e300"), keys_hs(), "not yet valid");

    /* Not numbers */
    REFUSED(hs_times("\"1800000000\"", NULL), keys_hs(), "exp must be a number");
    REFUSED(hs_times("null", NULL), keys_hs(), "exp must be a number");
    REFUSED(hs_times("true", NULL), keys_hs(), "exp must be a number");
    REFUSED(hs_times("[1800000000]", NULL), keys_hs(), "exp must be a number");
    REFUSED(hs_times(NULL, "\"0\""), keys_hs(), "nbf must be a number");
    REFUSED(hs_times(NULL, "{}"), keys_hs(), "nbf must be a number");

    /* Leeway 0, and a negative leeway counts as 0. */
    struct mx_jwt_keys k = keys_hs();
    char w[64];
    for (int64_t lw = 0; lw >= -5; lw -= 5) {
        char *tok = hs_times(num(b, NOW - 1), NULL);
        ck_assert_int_eq(mx_jwt_verify(tok, strlen(tok), &k, NOW, lw, &t, w, sizeof w),
                         MX_EUNAUTHORIZED);
        free(tok);
        tok = hs_times(num(b, NOW), num(b + 16, NOW));
        ck_assert_int_eq(mx_jwt_verify(tok, strlen(tok), &k, NOW, lw, &t, w, sizeof w), 0);
        mx_token_free(&t);
        free(tok);
    }
}
END_TEST

/* ---- grants ---- */

START_TEST(grants_union)
{
    struct mx_token t;
    ACCEPTED(hs("{\"sub\":\"a\",\"movex\":{\"rooms\":["
                "{\"match\":\"todo:*\",\"rights\":[\"read\"]},"
                "{\"match\":\"todo:a*\",\"rights\":[\"write\",\"write\"]},"
                "{\"match\":\"*\",\"rights\":[]},"
                "{\"match\":\"todo:abc\",\"rights\":[\"create\"]},"
                "{\"rights\":[\"read\"],\"match\":\"chat:*:admins\"}],\"future\":1}}"),
             keys_hs(), &t);
    ck_assert_uint_eq(t.ngrants, 5);
    ck_assert_uint_eq(t.grants[2].rights, 0);
    ck_assert_uint_eq(mx_token_rights(&t, "todo:abc", 8), 7);
    ck_assert_uint_eq(mx_token_rights(&t, "todo:ab", 7), MX_RIGHT_READ | MX_RIGHT_WRITE);
    ck_assert_uint_eq(mx_token_rights(&t, "todo:b", 6), MX_RIGHT_READ);
    ck_assert_uint_eq(mx_token_rights(&t, "todo:", 5), MX_RIGHT_READ);
    ck_assert_uint_eq(mx_token_rights(&t, "todo", 4), 0);
    ck_assert_uint_eq(mx_token_rights(&t, "chat:x:admins", 13), MX_RIGHT_READ);
    ck_assert_uint_eq(mx_token_rights(&t, "chat:x:admin", 12), 0);
    /* len is honoured: "todo:abc" cut to 7 bytes */
    ck_assert_uint_eq(mx_token_rights(&t, "todo:abcdef", 7), MX_RIGHT_READ | MX_RIGHT_WRITE);
    mx_token_free(&t);
    ck_assert_uint_eq(mx_token_rights(NULL, "x", 1), 0);

    /* No grants: still authenticates. */
    static const char *empty[] = {"{\"sub\":\"a\"}", "{\"sub\":\"a\",\"movex\":{}}",
                                  "{\"sub\":\"a\",\"movex\":{\"rooms\":[]}}",
                                  "{\"sub\":\"a\",\"movex\":{\"other\":true}}"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        ACCEPTED(hs(empty[i]), keys_hs(), &t);
        ck_assert_uint_eq(t.ngrants, 0);
        ck_assert_uint_eq(mx_token_rights(&t, "todo:a", 6), 0);
        mx_token_free(&t);
    }
}
END_TEST

static char *hs_rooms(const char *rooms)
{
    char p[1024];
    snprintf(p, sizeof p, "{\"sub\":\"a\",\"movex\":{\"rooms\":%s}}", rooms);
    return hs(p);
}

START_TEST(grants_refused)
{
    REFUSED(hs("{\"sub\":\"a\",\"movex\":5}"), keys_hs(), "movex must be an object");
    REFUSED(hs("{\"sub\":\"a\",\"movex\":[]}"), keys_hs(), "movex must be an object");
    REFUSED(hs("{\"sub\":\"a\",\"movex\":null}"), keys_hs(), "movex must be an object");
    REFUSED(hs_rooms("{}"), keys_hs(), "rooms must be an array");
    REFUSED(hs_rooms("\"todo:*\""), keys_hs(), "rooms must be an array");
    REFUSED(hs_rooms("[5]"), keys_hs(), "grant must be an object");
    REFUSED(hs_rooms("[\"todo:*\"]"), keys_hs(), "grant must be an object");
    REFUSED(hs_rooms("[{\"rights\":[\"read\"]}]"), keys_hs(), "grant match");
    REFUSED(hs_rooms("[{\"match\":5,\"rights\":[\"read\"]}]"), keys_hs(), "grant match");
    REFUSED(hs_rooms("[{\"match\":\"\",\"rights\":[\"read\"]}]"), keys_hs(), "grant match");
    REFUSED(hs_rooms("[{\"match\":\"todo/x\",\"rights\":[\"read\"]}]"), keys_hs(), "grant match");
    REFUSED(hs_rooms("[{\"match\":\"a b\",\"rights\":[\"read\"]}]"), keys_hs(), "grant match");
    REFUSED(hs_rooms("[{\"match\":\"a@b\",\"rights\":[\"read\"]}]"), keys_hs(), "grant match");
    REFUSED(hs_rooms("[{\"match\":\"todo:*\"}]"), keys_hs(), "rights must be an array");
    REFUSED(hs_rooms("[{\"match\":\"todo:*\",\"rights\":\"read\"}]"), keys_hs(),
            "rights must be an array");
    REFUSED(hs_rooms("[{\"match\":\"todo:*\",\"rights\":[5]}]"), keys_hs(), "unknown right");
    REFUSED(hs_rooms("[{\"match\":\"todo:*\",\"rights\":[\"read\",\"admin\"]}]"), keys_hs(),
            "unknown right");
    REFUSED(hs_rooms("[{\"match\":\"todo:*\",\"rights\":[\"READ\"]}]"), keys_hs(), "unknown right");
    REFUSED(hs_rooms("[{\"match\":\"todo:*\",\"rights\":[\"read\"],\"except\":\"todo:x\"}]"),
            keys_hs(), "unknown member in grant");
    /* A bad grant after good ones: nothing leaks (run() checks out is empty). */
    REFUSED(hs_rooms("[{\"match\":\"a\",\"rights\":[\"read\"]},{\"match\":\"b\",\"rights\":"
                     "[\"read\"]},{\"match\":\"c\",\"rights\":[\"delete\"]}]"),
            keys_hs(), "unknown right");

    /* Pattern length: 200 ok, 201 refused. */
    char pat[210], rooms[300];
    memset(pat, 'a', 200);
    pat[0] = '*';
    pat[200] = '\0';
    snprintf(rooms, sizeof rooms, "[{\"match\":\"%s\",\"rights\":[\"read\"]}]", pat);
    OK(hs_rooms(rooms), keys_hs());
    pat[200] = 'a';
    pat[201] = '\0';
    snprintf(rooms, sizeof rooms, "[{\"match\":\"%s\",\"rights\":[\"read\"]}]", pat);
    REFUSED(hs_rooms(rooms), keys_hs(), "grant match");
}
END_TEST

/* ---- patterns ---- */

static int pm(const char *pattern, const char *s)
{
    return mx_pattern_match(pattern, s, strlen(s));
}

START_TEST(pattern_cases)
{
    ck_assert(pm("todo:a", "todo:a"));
    ck_assert(!pm("todo:a", "todo:ab"));
    ck_assert(!pm("todo:ab", "todo:a"));
    ck_assert(!pm("todo:a", "Todo:a"));
    ck_assert(pm("todo:*", "todo:"));
    ck_assert(pm("todo:*", "todo:x"));
    ck_assert(pm("todo:*", "todo:x:y*z"));
    ck_assert(!pm("todo:*", "todo"));
    ck_assert(!pm("todo:*", "xtodo:a"));
    ck_assert(pm("*:admins", "chat:admins"));
    ck_assert(pm("*:admins", ":admins"));
    ck_assert(!pm("*:admins", "chat:admins2"));
    ck_assert(pm("chat:*-team", "chat:a-team"));
    ck_assert(pm("chat:*-team", "chat:-team"));
    ck_assert(pm("chat:*-team", "chat:a-team-team"));
    ck_assert(!pm("chat:*-team", "chat:a-tea"));
    ck_assert(pm("a*b*c", "abc"));
    ck_assert(pm("a*b*c", "axxbyyc"));
    ck_assert(pm("a*b*c", "abcbc"));
    ck_assert(!pm("a*b*c", "acb"));
    ck_assert(pm("*a*", "bab"));
    ck_assert(!pm("*a*", "bbb"));
    ck_assert(pm("**", ""));
    ck_assert(pm("*", ""));
    ck_assert(pm("*", "anything"));
    ck_assert(pm("", ""));
    ck_assert(!pm("", "a"));
    ck_assert(!pm("a", ""));
    ck_assert(pm("a**b", "ab"));
    ck_assert(pm("*ab", "aab"));   /* needs backtracking into the star */
    ck_assert(pm("*aab", "aaab")); /* restart after a partial match */
    ck_assert(!pm("*aab", "aaba"));
    /* len is honoured */
    ck_assert(mx_pattern_match("todo:a", "todo:abc", 6));
    ck_assert(!mx_pattern_match("todo:abc", "todo:abc", 6));
}
END_TEST

START_TEST(pattern_pathological)
{
    char s[201];
    memset(s, 'a', 200);
    s[200] = '\0';
    /* A naive recursive matcher explores C(200, k) splits for k stars. */
    static const char *pats[] = {"*a*a*a*a*b", "*a*a*a*a*a*a*a*a*a*a*a*a*b",
                                 "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*c"};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int rep = 0; rep < 200; rep++)
        for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
            ck_assert(!mx_pattern_match(pats[i], s, 200));
    /* 200-byte pattern of alternating '*' against 200 bytes */
    char p[201];
    for (int i = 0; i < 200; i++)
        p[i] = (i % 2) ? 'a' : '*';
    p[199] = 'b';
    p[200] = '\0';
    for (int rep = 0; rep < 200; rep++)
        ck_assert(!mx_pattern_match(p, s, 200));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(secs < 2.0, "800 pathological matches took %.2fs", secs);
    s[199] = 'b';
    for (size_t i = 0; i < 2; i++)
        ck_assert(mx_pattern_match(pats[i], s, 200));
    ck_assert(mx_pattern_match(p, s, 200));
}
END_TEST

/* ---- key loading ---- */

static void pem_of(const unsigned char pk[32], char *out, size_t cap, int split)
{
    unsigned char der[44] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                             0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
    memcpy(der + 12, pk, 32);
    char b64[80];
    sodium_bin2base64(b64, sizeof b64, der, sizeof der, sodium_base64_VARIANT_ORIGINAL);
    if (split)
        snprintf(out, cap,
                 "-----BEGIN PUBLIC KEY-----\r\n%.30s\r\n%s\r\n-----END PUBLIC KEY-----\r\n", b64,
                 b64 + 30);
    else
        snprintf(out, cap, "-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----\n", b64);
}

/* Load only an Ed25519 key file and expect it to yield ed_pk. */
static void expect_pk(const char *content, size_t len)
{
    struct mx_jwt_keys k;
    char err[256];
    int rc = mx_jwt_load_keys(&k, NULL, put("p", content, len), err, sizeof err);
    ck_assert_msg(rc == 0, "refused: %s", err);
    ck_assert_int_eq(k.has_ed25519, 1);
    ck_assert_int_eq(memcmp(k.ed25519, ed_pk, 32), 0);
    ck_assert_uint_eq(k.hs256_len, 0);
    OK(ed("{\"sub\":\"a\"}"), k);
}

static void expect_pk_error(const char *content, size_t len, const char *frag)
{
    struct mx_jwt_keys k;
    char err[256];
    char *path = put("p", content, len);
    memset(&k, 0xff, sizeof k);
    ck_assert_int_eq(mx_jwt_load_keys(&k, NULL, path, err, sizeof err), -1);
    ck_assert_msg(strstr(err, path) == err, "err \"%s\" does not name the file", err);
    ck_assert_msg(strstr(err, frag), "err \"%s\", expected \"%s\"", err, frag);
    ck_assert_int_eq(k.has_ed25519, 0);
    ck_assert_uint_eq(k.hs256_len, 0);
}

static void expect_pk_error_s(const char *content, const char *frag)
{
    expect_pk_error(content, strlen(content), frag);
}

START_TEST(load_ed25519)
{
    mk_tmpdir();
    char text[256];
    expect_pk((const char *)ed_pk, 32);
    sodium_bin2hex(text, sizeof text, ed_pk, 32);
    expect_pk(text, 64);
    strcat(text, "\n");
    expect_pk(text, strlen(text));
    for (size_t i = 0; i < 64; i++)
        if (text[i] >= 'a' && text[i] <= 'f')
            text[i] = (char)(text[i] - 32); /* upper-case hex */
    expect_pk(text, strlen(text));
    static const int variants[] = {
        sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
        sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    for (size_t v = 0; v < 4; v++) {
        sodium_bin2base64(text, sizeof text, ed_pk, 32, variants[v]);
        strcat(text, "\n");
        expect_pk(text, strlen(text));
    }
    pem_of(ed_pk, text, sizeof text, 0);
    expect_pk(text, strlen(text));
    pem_of(ed_pk, text, sizeof text, 1);
    expect_pk(text, strlen(text));

    /* errors */
    expect_pk_error("", 0, "not an Ed25519 public key");
    expect_pk_error((const char *)ed_pk, 31, "not an Ed25519 public key");
    expect_pk_error("hello world\n", 12, "not an Ed25519 public key");
    sodium_bin2hex(text, sizeof text, ed_pk, 32);
    text[10] = 'g';
    expect_pk_error(text, 64, "hex");
    sodium_bin2base64(text, sizeof text, ed_pk, 31, sodium_base64_VARIANT_ORIGINAL);
    expect_pk_error(text, strlen(text), "not an Ed25519 public key");
    /* X25519 SPKI (OID 1.3.101.110): same length, different algorithm */
    pem_of(ed_pk, text, sizeof text, 0);
    char *body = strchr(text, '\n') + 1;
    unsigned char der[44];
    size_t dl;
    ck_assert_int_eq(sodium_base642bin(der, sizeof der, body, 60, NULL, &dl, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    der[8] = 0x6e;
    sodium_bin2base64(body, 61, der, 44, sodium_base64_VARIANT_ORIGINAL);
    body[60] = '\n';
    expect_pk_error(text, strlen(text), "not an Ed25519 key");
    expect_pk_error_s("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", "PEM body");
    expect_pk_error_s("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
                      "not an Ed25519 key");
    expect_pk_error_s("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n", "PEM");
    expect_pk_error_s("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAECAwQFBgcICQoLDA0ODxAREhM"
                      "UFRYXGBkaGxwdHh8g\n-----END PRIVATE KEY-----\n",
                      "private key");
    /* non-ASCII bytes in text formats */
    sodium_bin2base64(text, sizeof text, ed_pk, 32, sodium_base64_VARIANT_ORIGINAL);
    text[5] = (char)0xc1;
    expect_pk_error(text, strlen(text), "not an Ed25519 public key");
    pem_of(ed_pk, text, sizeof text, 0);
    text[40] = (char)0xc1;
    expect_pk_error(text, strlen(text), "PEM body");
    /* a small-order point is not a usable public key */
    unsigned char zero[32] = {1}; /* the identity point */
    expect_pk_error((const char *)zero, 32, "not a valid Ed25519 public key");
    char big[5000];
    memset(big, 'A', sizeof big);
    expect_pk_error(big, sizeof big, "too large");
    rm_tmpdir();
}
END_TEST

START_TEST(load_secret)
{
    mk_tmpdir();
    struct mx_jwt_keys k;
    char err[256];
    char buf[200];

    /* "\n" and "\r\n" stripped, once */
    static const char *ends[] = {"", "\n", "\r\n"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(buf, sizeof buf, "%s%s", SECRET, ends[i]);
        ck_assert_int_eq(mx_jwt_load_keys(&k, puts_file("s", buf), NULL, err, sizeof err), 0);
        ck_assert_uint_eq(k.hs256_len, sizeof SECRET - 1);
        ck_assert_int_eq(memcmp(k.hs256, SECRET, sizeof SECRET - 1), 0);
        ck_assert_int_eq(k.has_ed25519, 0);
        OK(hs("{\"sub\":\"a\"}"), k);
        REFUSED(ed("{\"sub\":\"a\"}"), k, "EdDSA is not configured");
    }
    snprintf(buf, sizeof buf, "%s\n\n", SECRET);
    ck_assert_int_eq(mx_jwt_load_keys(&k, puts_file("s", buf), NULL, err, sizeof err), 0);
    ck_assert_uint_eq(k.hs256_len, sizeof SECRET); /* only one newline is stripped */

    /* raw bytes, including NUL and a final byte that is not a newline */
    unsigned char raw[128];
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (unsigned char)(255 - i * 3);
    raw[5] = 0;
    ck_assert_int_eq(mx_jwt_load_keys(&k, put("s", raw, 32), NULL, err, sizeof err), 0);
    ck_assert_uint_eq(k.hs256_len, 32);
    ck_assert_int_eq(mx_jwt_load_keys(&k, put("s", raw, 128), NULL, err, sizeof err), 0);
    ck_assert_uint_eq(k.hs256_len, 128);
    ck_assert_int_eq(memcmp(k.hs256, raw, 128), 0);

    /* lengths */
    char *path = put("s", raw, 31);
    ck_assert_int_eq(mx_jwt_load_keys(&k, path, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_nonnull(strstr(err, "shorter than 32"));
    memcpy(buf, raw, 31);
    buf[31] = '\n';
    ck_assert_int_eq(mx_jwt_load_keys(&k, put("s", buf, 32), NULL, err, sizeof err), -1);
    ck_assert_int_eq(mx_jwt_load_keys(&k, put("s", "", 0), NULL, err, sizeof err), -1);
    memset(buf, 'x', 129);
    ck_assert_int_eq(mx_jwt_load_keys(&k, put("s", buf, 129), NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "longer than 128"));
    buf[128] = '\n';
    ck_assert_int_eq(mx_jwt_load_keys(&k, put("s", buf, 129), NULL, err, sizeof err), 0);
    ck_assert_uint_eq(k.hs256_len, 128);
    char big[5000];
    memset(big, 'x', sizeof big);
    ck_assert_int_eq(mx_jwt_load_keys(&k, put("s", big, sizeof big), NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "longer than 128"));

    /* missing file; the other key is not kept on error */
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing", tmpdir);
    ck_assert_int_eq(mx_jwt_load_keys(&k, missing, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, missing));
    ck_assert_ptr_nonnull(strstr(err, "No such file"));
    ck_assert_int_eq(mx_jwt_load_keys(&k, NULL, missing, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, missing));
    ck_assert_int_eq(mx_jwt_load_keys(&k, puts_file("s", SECRET), missing, err, sizeof err), -1);
    ck_assert_uint_eq(k.hs256_len, 0);
    ck_assert_int_eq(mx_jwt_load_keys(&k, tmpdir, NULL, err, sizeof err), -1); /* a directory */
    ck_assert_uint_eq(k.hs256_len, 0);

    /* both, and neither */
    pem_of(ed_pk, buf, sizeof buf, 0);
    ck_assert_int_eq(
        mx_jwt_load_keys(&k, puts_file("s", SECRET), puts_file("p2", buf), err, sizeof err), 0);
    ck_assert_uint_eq(k.hs256_len, sizeof SECRET - 1);
    ck_assert_int_eq(k.has_ed25519, 1);
    OK(hs("{\"sub\":\"a\"}"), k);
    OK(ed("{\"sub\":\"a\"}"), k);
    ck_assert_int_eq(mx_jwt_load_keys(&k, NULL, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(k.hs256_len, 0);
    ck_assert_int_eq(k.has_ed25519, 0);
    /* err may be NULL */
    ck_assert_int_eq(mx_jwt_load_keys(&k, missing, NULL, NULL, 0), -1);
    rm_tmpdir();
}
END_TEST

/* ---- why ---- */

START_TEST(why_buffer)
{
    struct mx_jwt_keys k = keys_hs();
    struct mx_token t;
    char *tok = hs("{\"sub\":\"a b\"}");
    char w[4] = "zzz";
    ck_assert_int_eq(mx_jwt_verify(tok, strlen(tok), &k, NOW, LEEWAY, &t, w, sizeof w),
                     MX_EUNAUTHORIZED);
    ck_assert_str_eq(w, "sub");
    ck_assert_int_eq(mx_jwt_verify(tok, strlen(tok), &k, NOW, LEEWAY, &t, NULL, 0),
                     MX_EUNAUTHORIZED);
    ck_assert_int_eq(mx_jwt_verify(tok, strlen(tok), &k, NOW, LEEWAY, &t, w, 0), MX_EUNAUTHORIZED);
    ck_assert_str_eq(w, "sub"); /* untouched */
    free(tok);
    /* a secret-bearing failure names no key material */
    tok = mint(HS_HEADER, "{\"sub\":\"a\"}", SIGN_HS, "x", 1);
    char w2[128];
    ck_assert_int_eq(mx_jwt_verify(tok, strlen(tok), &k, NOW, LEEWAY, &t, w2, sizeof w2),
                     MX_EUNAUTHORIZED);
    ck_assert_ptr_null(strstr(w2, "movexd-unit"));
    ck_assert_str_eq(w2, "bad signature");
    free(tok);
}
END_TEST

/* The one saturating helper behind every expiry check: exact in range,
 * pinned at the limits instead of overflowing (UBSan would abort). */
START_TEST(add_sat_limits)
{
    ck_assert_int_eq(mx_add_sat_i64(1, 2), 3);
    ck_assert_int_eq(mx_add_sat_i64(-5, 2), -3);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MAX, 0), INT64_MAX);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MAX, 1), INT64_MAX);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MAX, INT64_MAX), INT64_MAX);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MAX - 1, 1), INT64_MAX);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MAX - 2, 1), INT64_MAX - 1);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MIN, -1), INT64_MIN);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MIN, INT64_MIN), INT64_MIN);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MIN + 1, -1), INT64_MIN);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MIN, INT64_MAX), -1);
    ck_assert_int_eq(mx_add_sat_i64(INT64_MAX, INT64_MIN), -1);
}
END_TEST

START_TEST(token_left_at_the_limits)
{
    struct mx_token t;
    memset(&t, 0, sizeof t);
    /* no exp: never expires */
    ck_assert_int_eq(mx_token_left(&t, NOW, LEEWAY), INT64_MAX);
    /* valid while now <= exp + leeway: left counts to the refusing second */
    t.exp = NOW;
    ck_assert_int_eq(mx_token_left(&t, NOW, 0), 1);
    ck_assert_int_eq(mx_token_left(&t, NOW + 1, 0), 0);
    ck_assert_int_eq(mx_token_left(&t, NOW + LEEWAY, LEEWAY), 1);
    ck_assert_int_eq(mx_token_left(&t, NOW + LEEWAY + 1, LEEWAY), 0);
    ck_assert_int_eq(mx_token_left(&t, NOW - 10, LEEWAY), LEEWAY + 11);
    ck_assert_int_eq(mx_token_left(&t, NOW + 1, -5), 0); /* negative leeway counts as 0 */
    /* far future (exp 1e300 is stored as INT64_MAX): never 0, no overflow */
    t.exp = INT64_MAX;
    ck_assert_int_eq(mx_token_left(&t, NOW, LEEWAY), INT64_MAX - NOW);
    ck_assert_int_eq(mx_token_left(&t, NOW, INT64_MAX), INT64_MAX - NOW);
    ck_assert_int_eq(mx_token_left(&t, INT64_MAX, INT64_MAX), 0); /* now at the end of time */
    ck_assert_int_eq(mx_token_left(&t, INT64_MAX - 1, 0), 1);
    ck_assert_int_eq(mx_token_left(&t, -1, LEEWAY), INT64_MAX);
    ck_assert_int_eq(mx_token_left(&t, INT64_MIN, LEEWAY), INT64_MAX);
    t.exp = INT64_C(1000000000000000); /* 1e15: what :272 overflowed on in usecs */
    ck_assert_int_eq(mx_token_left(&t, NOW, LEEWAY), INT64_C(1000000000000000) + LEEWAY + 1 - NOW);
    /* the far past */
    t.exp = INT64_MIN;
    ck_assert_int_eq(mx_token_left(&t, NOW, LEEWAY), 0);
    ck_assert_int_eq(mx_token_left(&t, INT64_MIN, 0), 1);
    /* a verified 1e300 token is valid now and long after */
    struct mx_token v;
    ACCEPTED(hs_times("1e300", NULL), keys_hs(), &v);
    ck_assert_int_gt(mx_token_left(&v, NOW, LEEWAY), INT64_C(1) << 62);
    ck_assert_int_gt(mx_token_left(&v, INT64_MAX - LEEWAY - 2, LEEWAY), 0);
    mx_token_free(&v);
}
END_TEST

START_TEST(admin_namespace_reserved)
{
    REFUSED(hs("{\"sub\":\"admin:nightly-reset\"}"), keys_hs(), "admin:");
    REFUSED(hs("{\"sub\":\"admin:\"}"), keys_hs(), "admin:");
    OK(hs("{\"sub\":\"admin\"}"), keys_hs());
    OK(hs("{\"sub\":\"Admin:x\"}"), keys_hs());
    OK(hs("{\"sub\":\"x-admin:y\"}"), keys_hs());
    ck_assert(mx_client_id_reserved("admin:k", 7));
    ck_assert(mx_client_id_reserved("admin:", 6));
    ck_assert(!mx_client_id_reserved("admin", 5));
    ck_assert(!mx_client_id_reserved("admin:k", 5)); /* length, not the NUL */
}
END_TEST

Suite *mx_suite_jwt(void)
{
    Suite *s = suite_create("jwt");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, setup_keys, NULL);
    tcase_add_test(tc, valid_hs256);
    tcase_add_test(tc, valid_eddsa);
    tcase_add_test(tc, hs256_secret_lengths);
    tcase_add_test(tc, rfc_examples);
    tcase_add_test(tc, node_cross_check);
    tcase_add_test(tc, alg_none);
    tcase_add_test(tc, alg_unknown);
    tcase_add_test(tc, alg_confusion);
    tcase_add_test(tc, wrong_key);
    tcase_add_test(tc, tampered);
    tcase_add_test(tc, shape);
    tcase_add_test(tc, bad_base64url);
    tcase_add_test(tc, oversize);
    tcase_add_test(tc, header_checks);
    tcase_add_test(tc, payload_checks);
    tcase_add_test(tc, sub_checks);
    tcase_add_test(tc, iss_aud_unset_ignored);
    tcase_add_test(tc, iss_checked);
    tcase_add_test(tc, aud_checked);
    tcase_add_test(tc, iss_aud_together);
    tcase_add_test(tc, set_claims);
    tcase_add_test(tc, exp_nbf);
    tcase_add_test(tc, add_sat_limits);
    tcase_add_test(tc, token_left_at_the_limits);
    tcase_add_test(tc, admin_namespace_reserved);
    tcase_add_test(tc, grants_union);
    tcase_add_test(tc, grants_refused);
    tcase_add_test(tc, pattern_cases);
    tcase_add_test(tc, pattern_pathological);
    tcase_add_test(tc, load_ed25519);
    tcase_add_test(tc, load_secret);
    tcase_add_test(tc, why_buffer);
    suite_add_tcase(s, tc);
    return s;
}
