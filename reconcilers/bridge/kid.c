/* kid.c — the pure rules of the bridge (see kid.h). */
#include "reconcilers/bridge/kid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "reconcilers/tokens/jwt.h"

void km_bridge_token_kid(const char *token, char *kid, size_t n)
{
    km_jwt_info info;
    memset(&info, 0, sizeof(info));
    kid[0] = '\0';
    if (!token || km_jwt_inspect(token, strlen(token), &info) != KM_JWT_VALID)
        return;
    snprintf(kid, n, "%s", info.kid);
}

km_bridge_class km_bridge_classify(const char *token, const char *signing_kid)
{
    char kid[96];
    if (!signing_kid || !*signing_kid)
        return KM_BRIDGE_UNKNOWN;
    km_bridge_token_kid(token, kid, sizeof(kid));
    if (!kid[0])
        return KM_BRIDGE_UNKNOWN;
    return strcmp(kid, signing_kid) == 0 ? KM_BRIDGE_CURRENT : KM_BRIDGE_OLD;
}

km_status km_bridge_kid_of_spki(const unsigned char *der, size_t len, char *kid, size_t n)
{
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned hl = 0;
    char b[64];
    if (n < KM_BRIDGE_KID_LEN + 1)
        return KM_EINVAL;
    EVP_MD *m = EVP_MD_fetch(NULL, "SHA256", NULL);
    int ok = m && EVP_Digest(der, len, h, &hl, m, NULL) == 1 && hl == 32;
    EVP_MD_free(m);
    ERR_clear_error();
    if (!ok)
        return KM_ENOMEM;
    int l = EVP_EncodeBlock((unsigned char *)b, h, (int)hl);
    while (l > 0 && b[l - 1] == '=')
        l--;
    b[l] = '\0';
    for (char *q = b; *q; q++)
        *q = *q == '+' ? '-' : *q == '/' ? '_' : *q;
    snprintf(kid, n, "%s", b);
    return KM_OK;
}

km_status km_bridge_spki_pem(const unsigned char *der, size_t len, char **pem)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL, *out = NULL;
    long n = 0;
    if (b && PEM_write_bio(b, "PUBLIC KEY", "", der, (long)len) > 0 &&
        (n = BIO_get_mem_data(b, &p)) > 0 && (out = malloc((size_t)n + 1))) {
        memcpy(out, p, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(b);
    ERR_clear_error();
    if (!out)
        return KM_ENOMEM;
    *pem = out;
    return KM_OK;
}

km_status km_bridge_kid_of_pem(const char *pem, size_t n, char *kid, size_t kn)
{
    km_status st = KM_EPARSE;
    unsigned char *der = NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)n);
    EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    int len = k ? i2d_PUBKEY(k, &der) : -1;
    if (!b)
        st = KM_ENOMEM;
    else if (len > 0)
        st = km_bridge_kid_of_spki(der, (size_t)len, kid, kn);
    OPENSSL_free(der);
    EVP_PKEY_free(k);
    BIO_free(b);
    ERR_clear_error();
    return st;
}
