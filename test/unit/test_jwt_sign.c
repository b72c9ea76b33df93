/* Unit tests for jwt_sign.c: tokens it signs (HS256, EdDSA) pass jwt.c's
 * verifier with the claims intact and fail with another key; the Ed25519
 * private key loader reads PKCS#8 PEM (the bytes `openssl genpkey` and
 * scripts/make-token.mjs write) and 64 hex, and refuses anything else
 * naming the file. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "movexd/jwt.h"

#define NOW INT64_C(1700000000)

/* RFC 8032 7.1 test 1: seed 9d61b1...7f60 and its public key d75a98...511a. */
static const char SEED_HEX[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char PUB_HEX[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
/* The same seed as PKCS#8 PEM (RFC 8410 layout). */
static const char SEED_PEM[] = "-----BEGIN PRIVATE KEY-----\n"
                               "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
                               "-----END PRIVATE KEY-----\n";

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/mx-jwt-sign-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

START_TEST(hs256_round_trip)
{
    const char secret[] = "0123456789abcdef0123456789abcdef-x";
    const char *claims = "{\"sub\":\"alice\",\"exp\":1700003600,\"movex\":{\"rooms\":[{\"match\":\"todo:*\",\"rights\":[\"read\",\"write\"]}]}}";
    char *tok = NULL;
    ck_assert_int_eq(mx_jwt_sign(claims, strlen(claims), (const unsigned char *)secret, strlen(secret), NULL, &tok), 0);
    struct mx_jwt_keys k;
    memset(&k, 0, sizeof k);
    memcpy(k.hs256, secret, strlen(secret));
    k.hs256_len = strlen(secret);
    struct mx_token t;
    char why[100];
    ck_assert_msg(mx_jwt_verify(tok, strlen(tok), &k, NOW, 0, &t, why, sizeof why) == 0, "%s", why);
    ck_assert_str_eq(t.sub, "alice");
    ck_assert_int_eq(t.exp, 1700003600);
    ck_assert_uint_eq(mx_token_rights(&t, "todo:a", 6), MX_RIGHT_READ | MX_RIGHT_WRITE);
    mx_token_free(&t);
    k.hs256[0] ^= 1; /* another secret */
    ck_assert_int_ne(mx_jwt_verify(tok, strlen(tok), &k, NOW, 0, &t, why, sizeof why), 0);
    ck_assert_str_eq(why, "bad signature");
    free(tok);
}
END_TEST

START_TEST(eddsa_round_trip_from_pem_and_hex)
{
    unsigned char pk[32];
    ck_assert_int_eq(sodium_hex2bin(pk, 32, PUB_HEX, 64, NULL, NULL, NULL), 0);
    const char *texts[] = {SEED_PEM, SEED_HEX, "  " /* replaced below */};
    char hexnl[80];
    snprintf(hexnl, sizeof hexnl, "%s\n", SEED_HEX);
    texts[2] = hexnl;
    for (size_t i = 0; i < 3; i++) {
        char *path = write_tmp(texts[i]);
        unsigned char sk[64];
        char err[300];
        ck_assert_msg(mx_jwt_load_ed25519_private(path, sk, err, sizeof err) == 0, "%s", err);
        unlink(path);
        ck_assert_msg(memcmp(sk + 32, pk, 32) == 0, "text %zu: RFC 8032 public key", i);
        const char *claims = "{\"sub\":\"bob\"}";
        char *tok = NULL;
        ck_assert_int_eq(mx_jwt_sign(claims, strlen(claims), NULL, 0, sk, &tok), 0);
        struct mx_jwt_keys k;
        memset(&k, 0, sizeof k);
        memcpy(k.ed25519, pk, 32);
        k.has_ed25519 = 1;
        struct mx_token t;
        char why[100];
        ck_assert_msg(mx_jwt_verify(tok, strlen(tok), &k, NOW, 0, &t, why, sizeof why) == 0, "%s", why);
        ck_assert_str_eq(t.sub, "bob");
        mx_token_free(&t);
        free(tok);
    }
}
END_TEST

START_TEST(private_key_refusals)
{
    const char *bad[] = {
        "", "hello", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VxBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f6z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *path = write_tmp(bad[i]);
        unsigned char sk[64];
        char err[300];
        ck_assert_msg(mx_jwt_load_ed25519_private(path, sk, err, sizeof err) == -1, "bad key %zu accepted", i);
        ck_assert_msg(strstr(err, path) == err, "error names the file: %s", err);
        unlink(path);
    }
    unsigned char sk[64];
    char err[300];
    ck_assert_int_eq(mx_jwt_load_ed25519_private("/nonexistent/key.pem", sk, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "No such file"));
}
END_TEST

Suite *mx_suite_jwt_sign(void)
{
    Suite *s = suite_create("jwt_sign");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, hs256_round_trip);
    tcase_add_test(tc, eddsa_round_trip_from_pem_and_hex);
    tcase_add_test(tc, private_key_refusals);
    suite_add_tcase(s, tc);
    return s;
}
