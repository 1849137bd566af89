/* testpki.c — test PKI helpers (see testpki.h). */
#include "tests/unit/support/testpki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

static void die(const char *what)
{
    fprintf(stderr, "testpki: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    abort();
}

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            die(what);                                                                             \
    } while (0)

EVP_PKEY *testpki_key(const char *type)
{
    EVP_PKEY *k = NULL;
    if (strncmp(type, "rsa", 3) == 0) {
        unsigned int bits = 2048;
        if (type[3] == ':')
            bits = (unsigned int)strtoul(type + 4, NULL, 10);
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    } else if (strncmp(type, "ec", 2) == 0) {
        const char *crv = type[2] == ':' ? type + 3 : "P-256";
        const char *group = strcmp(crv, "P-384") == 0   ? "secp384r1"
                            : strcmp(crv, "P-521") == 0 ? "secp521r1"
                                                        : "prime256v1";
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);
    }
    CHECK(k, "keygen");
    return k;
}

static void set_name(X509_NAME *name, const char *subject)
{
    const char *p = subject;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char part[256];
        CHECK(len < sizeof(part), "subject part length");
        memcpy(part, p, len);
        part[len] = '\0';
        char *eq = strchr(part, '=');
        CHECK(eq, "subject syntax");
        *eq = '\0';
        CHECK(X509_NAME_add_entry_by_txt(name, part, MBSTRING_UTF8, (unsigned char *)(eq + 1), -1,
                                         -1, 0),
              "subject entry");
        p += len;
        if (*p == ',')
            p++;
    }
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    CHECK(e && X509_add_ext(x, e, -1), "extension");
    X509_EXTENSION_free(e);
}

X509 *testpki_cert(const testpki_cert_spec *spec, EVP_PKEY *key)
{
    X509 *x = X509_new();
    CHECK(x, "X509_new");
    CHECK(X509_set_version(x, 2), "version");
    long serial = spec->serial;
    if (serial == 0) {
        unsigned int r = 0;
        CHECK(RAND_bytes((unsigned char *)&r, sizeof(r)) == 1, "rand");
        serial = (long)(r & 0x7fffffff) + 1;
    }
    CHECK(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), "serial");
    time_t nb = spec->not_before ? spec->not_before : time(NULL) - 3600;
    time_t na = spec->not_after ? spec->not_after : nb + 10L * 365 * 86400;
    CHECK(ASN1_TIME_set(X509_getm_notBefore(x), nb), "notBefore");
    CHECK(ASN1_TIME_set(X509_getm_notAfter(x), na), "notAfter");
    set_name(X509_get_subject_name(x), spec->subject);
    X509 *issuer = spec->issuer ? spec->issuer : x;
    CHECK(X509_set_issuer_name(x, X509_get_subject_name(issuer)), "issuer");
    CHECK(X509_set_pubkey(x, key), "pubkey");
    if (spec->ca) {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
    }
    add_ext(x, issuer, NID_subject_key_identifier, "hash");
    EVP_PKEY *signer = spec->issuer_key ? spec->issuer_key : key;
    CHECK(X509_sign(x, signer, EVP_sha256()) > 0, "X509_sign");
    return x;
}

X509 *testpki_ca(const char *subject, time_t not_before, time_t not_after, EVP_PKEY **key_out)
{
    EVP_PKEY *k = testpki_key("ec");
    testpki_cert_spec s = {
        .subject = subject, .not_before = not_before, .not_after = not_after, .ca = 1};
    X509 *x = testpki_cert(&s, k);
    if (key_out)
        *key_out = k;
    else
        EVP_PKEY_free(k);
    return x;
}

static char *bio_take(BIO *b)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *s = malloc((size_t)n + 1);
    CHECK(s, "malloc");
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

char *testpki_cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    CHECK(b && PEM_write_bio_X509(b, x), "PEM_write");
    return bio_take(b);
}

char *testpki_fingerprint(X509 *x, int colons)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    CHECK(X509_digest(x, EVP_sha256(), md, &n), "X509_digest");
    char *s = malloc(n * 3 + 1);
    CHECK(s, "malloc");
    size_t o = 0;
    for (unsigned int i = 0; i < n; i++) {
        if (colons && i)
            s[o++] = ':';
        snprintf(s + o, 3, colons ? "%02X" : "%02x", md[i]);
        o += 2;
    }
    s[o] = '\0';
    return s;
}

char *testpki_b64url(const void *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *in = p;
    char *s = malloc(n / 3 * 4 + 5);
    CHECK(s, "malloc");
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned int v = (unsigned int)in[i] << 16 | (unsigned int)in[i + 1] << 8 | in[i + 2];
        s[o++] = tab[v >> 18 & 63];
        s[o++] = tab[v >> 12 & 63];
        s[o++] = tab[v >> 6 & 63];
        s[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        unsigned int v = (unsigned int)in[i] << 16;
        s[o++] = tab[v >> 18 & 63];
        s[o++] = tab[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned int v = (unsigned int)in[i] << 16 | (unsigned int)in[i + 1] << 8;
        s[o++] = tab[v >> 18 & 63];
        s[o++] = tab[v >> 12 & 63];
        s[o++] = tab[v >> 6 & 63];
    }
    s[o] = '\0';
    return s;
}

char *testpki_b64(const void *p, size_t n)
{
    char *s = testpki_b64url(p, n);
    size_t l = strlen(s);
    char *out = malloc(l + 3);
    CHECK(out, "malloc");
    for (size_t i = 0; i < l; i++)
        out[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    while (l % 4)
        out[l++] = '=';
    out[l] = '\0';
    free(s);
    return out;
}

static char *bn_param_b64url(EVP_PKEY *key, const char *name, size_t pad)
{
    BIGNUM *bn = NULL;
    CHECK(EVP_PKEY_get_bn_param(key, name, &bn), "get_bn_param");
    size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
    unsigned char *buf = malloc(n);
    CHECK(buf && BN_bn2binpad(bn, buf, (int)n) == (int)n, "bn2bin");
    char *s = testpki_b64url(buf, n);
    free(buf);
    BN_free(bn);
    return s;
}

char *testpki_jwk(EVP_PKEY *key, const char *kid)
{
    char kidpart[200] = "";
    if (kid)
        snprintf(kidpart, sizeof(kidpart), "\"kid\":\"%s\",", kid);
    char *out = malloc(4096);
    CHECK(out, "malloc");
    if (EVP_PKEY_is_a(key, "RSA")) {
        char *n = bn_param_b64url(key, OSSL_PKEY_PARAM_RSA_N, 0);
        char *e = bn_param_b64url(key, OSSL_PKEY_PARAM_RSA_E, 0);
        snprintf(out, 4096,
                 "{\"use\":\"sig\",\"kty\":\"RSA\",%s\"alg\":\"RS256\",\"n\":\"%s\",\"e\":\"%s\"}",
                 kidpart, n, e);
        free(n);
        free(e);
    } else {
        char group[32] = "";
        size_t gl = 0;
        CHECK(EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                             &gl),
              "group");
        size_t bytes = strcmp(group, "secp384r1") == 0   ? 48
                       : strcmp(group, "secp521r1") == 0 ? 66
                                                         : 32;
        const char *crv = bytes == 48 ? "P-384" : bytes == 66 ? "P-521" : "P-256";
        const char *alg = bytes == 48 ? "ES384" : bytes == 66 ? "ES512" : "ES256";
        char *x = bn_param_b64url(key, OSSL_PKEY_PARAM_EC_PUB_X, bytes);
        char *y = bn_param_b64url(key, OSSL_PKEY_PARAM_EC_PUB_Y, bytes);
        snprintf(out, 4096,
                 "{\"use\":\"sig\",\"kty\":\"EC\",%s\"alg\":\"%s\",\"crv\":\"%s\",\"x\":\"%s\","
                 "\"y\":\"%s\"}",
                 kidpart, alg, crv, x, y);
        free(x);
        free(y);
    }
    return out;
}

static const char *md_for(const char *alg)
{
    if (strcmp(alg + 2, "384") == 0)
        return "SHA384";
    if (strcmp(alg + 2, "512") == 0)
        return "SHA512";
    return "SHA256";
}

char *testpki_jwt(EVP_PKEY *key, const char *alg, const char *kid, const char *payload_json)
{
    char hdr[256];
    if (kid)
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"kid\":\"%s\"}", alg, kid);
    else
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\"}", alg);
    char *h = testpki_b64url(hdr, strlen(hdr));
    char *p = testpki_b64url(payload_json, strlen(payload_json));
    size_t in_len = strlen(h) + 1 + strlen(p);
    char *input = malloc(in_len + 1);
    CHECK(input, "malloc");
    snprintf(input, in_len + 1, "%s.%s", h, p);
    unsigned char sig[1024];
    size_t sl = 0;
    if (strcmp(alg, "none") == 0) {
        sl = 0;
    } else if (alg[0] == 'H') {
        unsigned int hl = 0;
        CHECK(HMAC(EVP_get_digestbyname(md_for(alg)), "secret", 6, (unsigned char *)input, in_len,
                   sig, &hl),
              "HMAC");
        sl = hl;
    } else {
        unsigned char der[1024];
        size_t dl = sizeof(der);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        CHECK(ctx && EVP_DigestSignInit_ex(ctx, NULL, md_for(alg), NULL, NULL, key, NULL) == 1 &&
                  EVP_DigestSign(ctx, der, &dl, (unsigned char *)input, in_len) == 1,
              "DigestSign");
        EVP_MD_CTX_free(ctx);
        if (alg[0] == 'E') {
            size_t half = strcmp(alg, "ES384") == 0 ? 48 : strcmp(alg, "ES512") == 0 ? 66 : 32;
            const unsigned char *q = der;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)dl);
            CHECK(es, "d2i_ECDSA_SIG");
            CHECK(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)half) == (int)half &&
                      BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + half, (int)half) == (int)half,
                  "r||s");
            ECDSA_SIG_free(es);
            sl = 2 * half;
        } else {
            memcpy(sig, der, dl);
            sl = dl;
        }
    }
    char *s = testpki_b64url(sig, sl);
    size_t total = in_len + 1 + strlen(s) + 1;
    char *tok = malloc(total);
    CHECK(tok, "malloc");
    snprintf(tok, total, "%s.%s", input, s);
    free(h);
    free(p);
    free(s);
    free(input);
    return tok;
}

char *testpki_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    CHECK(buf, "malloc");
    for (;;) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (cap - n - 1 == 0) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            CHECK(nb, "realloc");
            buf = nb;
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}
