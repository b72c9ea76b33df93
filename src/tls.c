/* tls.c - the listener's certificate and its reload.
 *
 * lws loads the certificate at start-up and hands the listener's SSL_CTX
 * over in LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS (server.c
 * keeps it in struct mx_server .tls_ctx). A reload (SIGHUP) replaces the
 * certificate, chain and key in that SSL_CTX in one step or not at all:
 * new connections get the new pair, open ones keep theirs, and a failed
 * reload leaves the running certificate serving.
 */
#include "movexd/tls.h"
#include "movexd/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "movexd/log.h"
#include "movexd/server.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (1u << 20)) { /* certificates are small */
                free(buf);
                fclose(f);
                return NULL;
            }
            char *nb = mx_realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Certificate reload. The new certificate, its chain and the key are parsed
 * and checked against each other first, and then set in the listener's
 * SSL_CTX in one call (SSL_CTX_use_cert_and_key), so a reload either
 * switches new connections to the new pair or changes nothing: a broken
 * file, or a certificate whose key has not been replaced yet, never leaves
 * the listener with half a pair (lws_tls_cert_updated() sets the
 * certificate and the key one after the other from the files, and returns
 * 0 whatever happened). A certificate of another key type (EC to RSA) is
 * refused too: see tls_other_key_type. Connections already open keep the
 * SSL they were set up with. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return 0; /* an encrypted key is refused, never prompted for */
}

/* OpenSSL's reason for the first error queued, the root cause (never key
 * material). */
static const char *ssl_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_error());
    return r ? r : "unknown error";
}

/* Leaf certificate and chain from the PEM text of the certificate file,
 * as SSL_CTX_use_certificate_chain_file reads it. 0 or -1 with why. */
static int tls_parse_cert(const char *pem, size_t len, X509 **leaf, STACK_OF(X509) **chain,
                          char *why, size_t whylen)
{
    *leaf = NULL;
    *chain = NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    ERR_clear_error();
    *leaf = PEM_read_bio_X509_AUX(b, NULL, no_passphrase, NULL);
    if (!*leaf) {
        snprintf(why, whylen, "no PEM certificate in the certificate file (%s)", ssl_reason());
        BIO_free(b);
        return -1;
    }
    *chain = sk_X509_new_null();
    if (!*chain) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
        if (!x)
            break;
        if (!sk_X509_push(*chain, x)) {
            X509_free(x);
            snprintf(why, whylen, "out of memory");
            goto fail;
        }
    }
    /* the end of the file reads as "no start line"; anything else is a
     * broken certificate after the first one */
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        snprintf(why, whylen, "a chain certificate in the certificate file is broken (%s)",
                 ssl_reason());
        goto fail;
    }
    ERR_clear_error();
    BIO_free(b);
    return 0;
fail:
    BIO_free(b);
    sk_X509_pop_free(*chain, X509_free);
    X509_free(*leaf);
    *chain = NULL;
    *leaf = NULL;
    return -1;
}

static const char *key_type_name(int id)
{
    switch (id) {
    case EVP_PKEY_RSA: return "RSA";
    case EVP_PKEY_RSA_PSS: return "RSA-PSS";
    case EVP_PKEY_EC: return "EC";
    case EVP_PKEY_ED25519: return "Ed25519";
    case EVP_PKEY_ED448: return "Ed448";
    default: return OBJ_nid2sn(id);
    }
}

/* The key type of a certificate in ctx other than pkey's, or 0. OpenSSL
 * keeps one certificate per key type and has no way to remove one, so
 * after a switch from an EC to an RSA certificate (say) it would go on
 * offering the old EC one to every client that accepts ECDSA. */
static int tls_other_key_type(SSL_CTX *ctx, const EVP_PKEY *pkey)
{
    int other = 0;
    if (SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_FIRST) != 1)
        return 0;
    do {
        X509 *x = SSL_CTX_get0_certificate(ctx);
        EVP_PKEY *k = x ? X509_get0_pubkey(x) : NULL;
        if (k && EVP_PKEY_base_id(k) != EVP_PKEY_base_id(pkey))
            other = EVP_PKEY_base_id(k);
    } while (SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_NEXT) == 1);
    return other;
}

int mx_tls_reload(struct mx_server *s)
{
    const struct mx_config *cfg = s->cfg;
    if (!cfg->tls_cert_file[0])
        return 0;
    const char *keyfile = cfg->tls_key_file[0] ? cfg->tls_key_file : cfg->tls_cert_file;
    size_t clen = 0, klen = 0;
    char *cert = slurp(cfg->tls_cert_file, &clen);
    char *key = slurp(keyfile, &klen);
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *pkey = NULL;
    char why[300] = "";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int other;
    if (!s->tls_ctx)
        snprintf(why, sizeof(why), "the listener has no TLS context");
    else if (!cert)
        snprintf(why, sizeof(why), "cannot read the certificate file");
    else if (!key)
        snprintf(why, sizeof(why), "cannot read the key file");
    else if (!tls_parse_cert(cert, clen, &leaf, &chain, why, sizeof(why))) {
        BIO *kb = BIO_new_mem_buf(key, (int)klen);
        ERR_clear_error();
        pkey = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL) : NULL;
        BIO_free(kb);
        if (!pkey)
            snprintf(why, sizeof(why), "no usable PEM private key in the key file (encrypted "
                                       "keys are not supported)");
        else if (X509_check_private_key(leaf, pkey) != 1)
            snprintf(why, sizeof(why), "the key does not match the certificate");
        else if ((other = tls_other_key_type(s->tls_ctx, pkey)))
            snprintf(why, sizeof(why),
                     "the key type changes from %s to %s: switching key types needs a restart",
                     key_type_name(other), key_type_name(EVP_PKEY_base_id(pkey)));
        else if (SSL_CTX_use_cert_and_key(s->tls_ctx, leaf, pkey, chain, 1) != 1)
            snprintf(why, sizeof(why), "the TLS context refused the certificate (%s)",
                     ssl_reason());
        else if (!X509_digest(leaf, EVP_sha256(), md, &mdlen))
            mdlen = 0;
    }
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    if (key)
        sodium_memzero(key, klen);
    free(cert);
    free(key);
    if (why[0]) {
        mx_err("event=tls_reload_failed cert=%s key=%s reason=\"%s\" "
               "note=\"the running certificate stays\"",
               cfg->tls_cert_file, keyfile, why);
        return -1;
    }
    char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    mx_info("event=tls_reloaded cert=%s sha256=%s", cfg->tls_cert_file, hex);
    return 0;
}

