/* fuzz_jwt.c — service-account tokens (reconcilers/tokens/jwt.h) and the tokens step's pure
 * decisions on them (reconcilers/tokens/check.h).
 *
 * Input: JWKS NUL token NUL Secret (JSON) NUL TokenReview response (JSON); missing parts are "".
 * Checked: the JWK Set parses or fails cleanly and every key's kid and SPKI can be read; the
 * verdicts of inspect / signature / verify agree (a token verify calls VALID is well-formed, and
 * one inspect rejects is never VALID); info strings are terminated; the Secret precheck hands out
 * a token only for KM_TOKEN_CHECK; the TokenReview verdict is one of its four values. */
#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "reconcilers/tokens/check.h"
#include "reconcilers/tokens/jwt.h"
#include "tests/fuzz/fuzz.h"

#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

/* The last key set parsed and its text: a JWKS is parsed only when it changed (OpenSSL's public
 * key check of an RSA key costs milliseconds; most mutations touch the other parts). */
static char *last_json;
static size_t last_len;
static km_jwks *last_set;

static void keys(const char *json, size_t n, km_jwks **out)
{
    char *copy = fuzz_exact(json, n);
    km_err err = {0};
    *out = NULL;
    if (km_jwks_parse(copy, n, out, &err) != KM_OK) {
        FUZZ_CHECK(*out == NULL);
        free(copy);
        return;
    }
    free(copy);
    size_t count = km_jwks_count(*out);
    for (size_t i = 0; i < count; i++) {
        FUZZ_CHECK(km_jwks_kid(*out, i) != NULL);
        unsigned char *der = NULL;
        size_t len = 0;
        if (km_jwks_spki(*out, i, &der, &len) == KM_OK) {
            FUZZ_CHECK(der != NULL && len > 0);
            free(der);
        }
    }
    FUZZ_CHECK(km_jwks_kid(*out, count) == NULL);
}

static void token(const km_jwks *set, const char *t, size_t n)
{
    char *copy = fuzz_exact(t, n);
    km_jwt_info a, b;
    km_jwt_result ins = km_jwt_inspect(copy, n, &a);
    FUZZ_CHECK(TERMINATED(a.alg) && TERMINATED(a.kid));
    unsigned char *sig = NULL;
    size_t sig_len = 0, signed_len = 0;
    km_jwt_result sr = km_jwt_signature(copy, n, &b, &sig, &sig_len, &signed_len);
    FUZZ_CHECK(sr == ins);
    if (sr == KM_JWT_VALID) {
        FUZZ_CHECK(signed_len < n && copy[signed_len] == '.');
        free(sig);
    } else {
        FUZZ_CHECK(sig == NULL);
    }
    km_jwt_info c;
    km_jwt_result vr = km_jwt_verify(set, copy, n, &c);
    FUZZ_CHECK(TERMINATED(c.alg) && TERMINATED(c.kid));
    FUZZ_CHECK(strcmp(km_jwt_result_name(vr), "") != 0);
    if (ins != KM_JWT_VALID)
        FUZZ_CHECK(vr == ins);
    if (vr == KM_JWT_VALID)
        FUZZ_CHECK(set != NULL && km_jwks_count(set) > 0 && !km_jwt_result_is_stale(vr));
    free(copy);
}

static void decisions(const char *secret, size_t sn, const char *review, size_t rn)
{
    cJSON *s = sn ? cJSON_ParseWithLength(secret, sn) : NULL;
    if (s) {
        char *tok = NULL;
        km_token_check c = km_tokens_precheck(s, &tok);
        FUZZ_CHECK((c == KM_TOKEN_CHECK) == (tok != NULL));
        km_tokens_token_free(tok);
        cJSON_Delete(s);
    }
    cJSON *r = rn ? cJSON_ParseWithLength(review, rn) : NULL;
    if (r) {
        char reason[64];
        memset(reason, 'x', sizeof(reason));
        km_review_verdict v = km_tokens_review_verdict(r, reason, sizeof(reason));
        FUZZ_CHECK(v >= KM_REVIEW_VALID && v <= KM_REVIEW_OTHER);
        FUZZ_CHECK(TERMINATED(reason));
        cJSON_Delete(r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parts fp;
    if (fuzz_split(data, size, 4, &fp) != 0)
        return 0;
    if (!last_json || last_len != fp.len[0] || memcmp(last_json, fp.p[0], last_len) != 0) {
        km_jwks_free(last_set);
        free(last_json);
        keys(fp.p[0], fp.len[0], &last_set);
        last_json = fuzz_exact(fp.p[0], fp.len[0]);
        last_len = fp.len[0];
        FUZZ_CHECK(last_json != NULL);
    }
    token(last_set, fp.p[1], fp.len[1]);
    decisions(fp.p[2], fp.len[2], fp.p[3], fp.len[3]);
    fuzz_parts_free(&fp);
    return 0;
}
