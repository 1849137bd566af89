/* jwt.c — JWT signature verification against a JWK Set with OpenSSL 3 (see jwt.h). */
#include "reconcilers/jwt.h"

#include "operator/base64.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "operator/json.h"

typedef enum key_type { KEY_RSA = 1, KEY_EC } key_type;

typedef struct jwk {
    EVP_PKEY *pkey;
    key_type type;
    int ec_bytes; /* EC: size of one coordinate / of r and s (32, 48, 66) */
    char kid[96];
} jwk;

struct km_jwks {
    jwk *keys;
    size_t n;
    size_t skipped;
};

typedef struct alg_desc {
    const char *name;
    key_type type;
    const char *md;
    int ec_bytes; /* ES*: 0 for RS* */
} alg_desc;

static const alg_desc ALGS[] = {
    {"RS256", KEY_RSA, "SHA256", 0}, {"RS384", KEY_RSA, "SHA384", 0},
    {"RS512", KEY_RSA, "SHA512", 0}, {"ES256", KEY_EC, "SHA256", 32},
    {"ES384", KEY_EC, "SHA384", 48}, {"ES512", KEY_EC, "SHA512", 66},
};

const char *km_jwt_result_name(km_jwt_result r)
{
    switch (r) {
    case KM_JWT_VALID:
        return "Valid";
    case KM_JWT_INVALID_SIGNATURE:
        return "InvalidSignature";
    case KM_JWT_UNKNOWN_KEY:
        return "UnknownKey";
    case KM_JWT_MALFORMED:
        return "Malformed";
    case KM_JWT_BAD_ALG:
        return "BadAlg";
    }
    return "Unknown";
}

int km_jwt_result_is_stale(km_jwt_result r)
{
    return r == KM_JWT_INVALID_SIGNATURE || r == KM_JWT_UNKNOWN_KEY;
}

/* ---- key sets ------------------------------------------------------------------------------ */

/* Decodes the base64url string member `name` of k; NULL when missing or invalid. */
static unsigned char *b64_member(const cJSON *k, const char *name, size_t *len)
{
    const char *s = KM_JSON_STR(k, name);
    unsigned char *out = NULL;
    if (!s || !*s || km_base64_decode(s, strlen(s), KM_B64_URL, &out, len) != KM_OK)
        return NULL;
    return out;
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    if (pkey) {
        /* Reject EC points off the curve and other inconsistent public keys. */
        EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!chk || EVP_PKEY_public_check(chk) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(chk);
    }
    return pkey;
}

static EVP_PKEY *rsa_key(const cJSON *k)
{
    size_t nl = 0, el = 0;
    unsigned char *nb = b64_member(k, "n", &nl);
    unsigned char *eb = b64_member(k, "e", &el);
    BIGNUM *n = nb ? BN_bin2bn(nb, (int)nl, NULL) : NULL;
    BIGNUM *e = eb ? BN_bin2bn(eb, (int)el, NULL) : NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (n && e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        pkey = pkey_from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(nb);
    free(eb);
    return pkey;
}

static EVP_PKEY *ec_key(const cJSON *k, int *ec_bytes)
{
    const char *crv = KM_JSON_STR(k, "crv");
    const char *group = NULL;
    int bytes = 0;
    if (crv && strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        bytes = 32;
    } else if (crv && strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        bytes = 48;
    } else if (crv && strcmp(crv, "P-521") == 0) {
        group = "secp521r1";
        bytes = 66;
    } else {
        return NULL;
    }
    size_t xl = 0, yl = 0;
    unsigned char *x = b64_member(k, "x", &xl);
    unsigned char *y = b64_member(k, "y", &yl);
    unsigned char *pt = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;
    if (!x || !y || xl != (size_t)bytes || yl != (size_t)bytes)
        goto out;
    pt = malloc(1 + 2 * (size_t)bytes);
    bld = OSSL_PARAM_BLD_new();
    if (!pt || !bld)
        goto out;
    pt[0] = 0x04; /* uncompressed point */
    memcpy(pt + 1, x, xl);
    memcpy(pt + 1 + xl, y, yl);
    if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + xl + yl))
        pkey = pkey_from_params("EC", bld);
    *ec_bytes = bytes;
out:
    OSSL_PARAM_BLD_free(bld);
    free(pt);
    free(x);
    free(y);
    return pkey;
}

km_status km_jwks_parse(const char *json, size_t n, km_jwks **out, km_err *err)
{
    km_status st = KM_OK;
    km_jwks *s = NULL;
    cJSON *doc = km_json_parse(json, n);
    const cJSON *keys = doc ? KM_JSON_AT(doc, "keys") : NULL;
    if (!cJSON_IsArray(keys)) {
        st = km_err_set(err, KM_EPARSE, "JWKS: %s", doc ? "no \"keys\" array" : "not JSON");
        goto out;
    }
    s = calloc(1, sizeof(*s));
    int count = cJSON_GetArraySize(keys);
    if (!s || (count > 0 && !(s->keys = calloc((size_t)count, sizeof(jwk))))) {
        st = km_err_set(err, KM_ENOMEM, "JWKS: out of memory");
        goto out;
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, keys)
    {
        const char *kty = KM_JSON_STR(k, "kty");
        const char *use = KM_JSON_STR(k, "use");
        jwk key = {0};
        if (!kty || (use && strcmp(use, "sig") != 0)) {
            s->skipped++;
            continue;
        }
        if (strcmp(kty, "RSA") == 0) {
            key.type = KEY_RSA;
            key.pkey = rsa_key(k);
        } else if (strcmp(kty, "EC") == 0) {
            key.type = KEY_EC;
            key.pkey = ec_key(k, &key.ec_bytes);
        }
        ERR_clear_error();
        if (!key.pkey) {
            s->skipped++;
            continue;
        }
        const char *kid = KM_JSON_STR(k, "kid");
        snprintf(key.kid, sizeof(key.kid), "%s", kid ? kid : "");
        s->keys[s->n++] = key;
    }
    *out = s;
    s = NULL;
out:
    km_jwks_free(s);
    cJSON_Delete(doc);
    return st;
}

size_t km_jwks_count(const km_jwks *s)
{
    return s ? s->n : 0;
}

size_t km_jwks_skipped(const km_jwks *s)
{
    return s ? s->skipped : 0;
}

const char *km_jwks_kid(const km_jwks *s, size_t i)
{
    return s && i < s->n ? s->keys[i].kid : NULL;
}

km_status km_jwks_spki(const km_jwks *s, size_t i, unsigned char **der, size_t *len)
{
    if (!s || i >= s->n)
        return KM_ENOTFOUND;
    int n = i2d_PUBKEY(s->keys[i].pkey, NULL);
    unsigned char *buf = n > 0 ? malloc((size_t)n) : NULL;
    unsigned char *p = buf;
    if (!buf || i2d_PUBKEY(s->keys[i].pkey, &p) != n) {
        free(buf);
        ERR_clear_error();
        return KM_ENOMEM;
    }
    *der = buf;
    *len = (size_t)n;
    return KM_OK;
}

void km_jwks_free(km_jwks *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        EVP_PKEY_free(s->keys[i].pkey);
    free(s->keys);
    free(s);
}

/* ---- tokens ---------------------------------------------------------------------------------- */

typedef struct parsed {
    const alg_desc *alg;
    size_t signing_len; /* bytes of "header.payload" */
    unsigned char *sig;
    size_t sig_len;
} parsed;

static int is_object_json(const unsigned char *p, size_t n)
{
    cJSON *o = km_json_parse((const char *)p, n);
    int ok = cJSON_IsObject(o);
    cJSON_Delete(o);
    return ok;
}

/* Splits and decodes the token; fills info and *p (p->sig malloc'ed) on KM_JWT_VALID. */
static km_jwt_result parse_token(const char *t, size_t len, km_jwt_info *info, parsed *p)
{
    km_jwt_result r = KM_JWT_MALFORMED;
    unsigned char *hdr = NULL, *pay = NULL, *sig = NULL;
    size_t hl = 0, pl = 0, sl = 0;
    cJSON *h = NULL;
    const char *d1 = memchr(t, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - t)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - t)) || d1 == t)
        goto out;
    if (km_base64_decode(t, (size_t)(d1 - t), KM_B64_URL, &hdr, &hl) != KM_OK ||
        km_base64_decode(d1 + 1, (size_t)(d2 - d1 - 1), KM_B64_URL, &pay, &pl) != KM_OK ||
        km_base64_decode(d2 + 1, len - (size_t)(d2 + 1 - t), KM_B64_URL, &sig, &sl) != KM_OK)
        goto out;
    h = km_json_parse((const char *)hdr, hl);
    if (!cJSON_IsObject(h) || !is_object_json(pay, pl))
        goto out;
    const char *alg = KM_JSON_STR(h, "alg");
    const char *kid = KM_JSON_STR(h, "kid");
    if (info) {
        snprintf(info->alg, sizeof(info->alg), "%s", alg ? alg : "");
        snprintf(info->kid, sizeof(info->kid), "%s", kid ? kid : "");
    }
    if (KM_JSON_AT(h, "kid") && !kid)
        goto out; /* a non-string kid */
    r = KM_JWT_BAD_ALG;
    const alg_desc *a = NULL;
    for (size_t i = 0; alg && i < sizeof(ALGS) / sizeof(ALGS[0]); i++)
        if (strcmp(alg, ALGS[i].name) == 0)
            a = &ALGS[i];
    if (!a)
        goto out;
    r = KM_JWT_MALFORMED;
    if (sl == 0 || (a->type == KEY_EC && sl != 2 * (size_t)a->ec_bytes))
        goto out;
    r = KM_JWT_VALID;
    if (p) {
        p->alg = a;
        p->signing_len = (size_t)(d2 - t);
        p->sig = sig;
        p->sig_len = sl;
        sig = NULL;
    }
out:
    cJSON_Delete(h);
    free(hdr);
    free(pay);
    free(sig);
    return r;
}

km_jwt_result km_jwt_inspect(const char *token, size_t len, km_jwt_info *info)
{
    if (info)
        memset(info, 0, sizeof(*info));
    if (!token)
        return KM_JWT_MALFORMED;
    return parse_token(token, len, info, NULL);
}

km_jwt_result km_jwt_signature(const char *token, size_t len, km_jwt_info *info,
                               unsigned char **sig, size_t *sig_len, size_t *signed_len)
{
    if (info)
        memset(info, 0, sizeof(*info));
    if (!token)
        return KM_JWT_MALFORMED;
    parsed p = {0};
    km_jwt_result r = parse_token(token, len, info, &p);
    if (r == KM_JWT_VALID) {
        *sig = p.sig;
        *sig_len = p.sig_len;
        *signed_len = p.signing_len;
    }
    return r;
}

/* Converts a raw r||s ECDSA signature into DER.  Returns a malloc'ed buffer (caller frees with
 * OPENSSL_free) or NULL. */
static unsigned char *ecdsa_raw_to_der(const unsigned char *raw, size_t n, int *der_len)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)(n / 2), NULL);
    BIGNUM *s = BN_bin2bn(raw + n / 2, (int)(n / 2), NULL);
    unsigned char *der = NULL;
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }
    int l = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (l <= 0)
        return NULL;
    *der_len = l;
    return der;
}

/* 1 when key verifies sig over data with md, else 0. */
static int verify_one(const jwk *key, const char *md, const unsigned char *data, size_t n,
                      const unsigned char *sig, size_t sl)
{
    int ok = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestVerifyInit_ex(ctx, NULL, md, NULL, NULL, key->pkey, NULL) == 1)
        ok = EVP_DigestVerify(ctx, sig, sl, data, n) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

km_jwt_result km_jwt_verify(const km_jwks *keys, const char *token, size_t len, km_jwt_info *info)
{
    km_jwt_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof(*info));
    if (!token)
        return KM_JWT_MALFORMED;
    parsed p = {0};
    km_jwt_result r = parse_token(token, len, info, &p);
    if (r != KM_JWT_VALID)
        return r;
    unsigned char *der = NULL;
    int der_len = 0;
    const unsigned char *sig = p.sig;
    size_t sig_len = p.sig_len;
    if (p.alg->type == KEY_EC) {
        der = ecdsa_raw_to_der(p.sig, p.sig_len, &der_len);
        if (!der) {
            r = KM_JWT_MALFORMED;
            goto out;
        }
        sig = der;
        sig_len = (size_t)der_len;
    }
    int kid_matched = 0, candidates = 0, verified = 0;
    size_t nkeys = keys ? keys->n : 0;
    for (size_t i = 0; i < nkeys && !verified; i++) {
        const jwk *k = &keys->keys[i];
        if (k->type != p.alg->type || (k->type == KEY_EC && k->ec_bytes != p.alg->ec_bytes))
            continue;
        candidates++;
        if (info->kid[0] && strcmp(k->kid, info->kid) == 0)
            kid_matched = 1;
        verified =
            verify_one(k, p.alg->md, (const unsigned char *)token, p.signing_len, sig, sig_len);
    }
    if (verified)
        r = KM_JWT_VALID;
    else if (candidates == 0 || (info->kid[0] && !kid_matched))
        r = KM_JWT_UNKNOWN_KEY;
    else
        r = KM_JWT_INVALID_SIGNATURE;
out:
    OPENSSL_free(der);
    free(p.sig);
    return r;
}
