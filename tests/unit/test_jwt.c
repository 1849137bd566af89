/* test_jwt.c — reconcilers/jwt: JWKS parsing, RS/ES signature checks, kid rules, rejects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "operator/base/json.h"
#include "operator/base/base64.h"
#include "reconcilers/tokens/jwt.h"
#include "tests/unit/support/kmtest.h"
#include "tests/unit/support/testpki.h"

static const char *PAYLOAD = "{\"iss\":\"kubernetes/serviceaccount\","
                             "\"sub\":\"system:serviceaccount:app1:worker\"}";

typedef struct keys {
    EVP_PKEY *rsa_a, *rsa_b, *ec_a, *ec_b;
} keys;

static int setup(void **state)
{
    keys *k = calloc(1, sizeof(*k));
    k->rsa_a = testpki_key("rsa");
    k->rsa_b = testpki_key("rsa");
    k->ec_a = testpki_key("ec");
    k->ec_b = testpki_key("ec");
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    keys *k = *state;
    EVP_PKEY_free(k->rsa_a);
    EVP_PKEY_free(k->rsa_b);
    EVP_PKEY_free(k->ec_a);
    EVP_PKEY_free(k->ec_b);
    free(k);
    return 0;
}

/* A JWKS from up to two keys (NULL = absent) with the given kids. */
static km_jwks *make_set(EVP_PKEY *k1, const char *kid1, EVP_PKEY *k2, const char *kid2)
{
    char *j1 = k1 ? testpki_jwk(k1, kid1) : NULL;
    char *j2 = k2 ? testpki_jwk(k2, kid2) : NULL;
    char doc[10000];
    snprintf(doc, sizeof(doc), "{\"keys\":[%s%s%s]}", j1 ? j1 : "", j1 && j2 ? "," : "",
             j2 ? j2 : "");
    free(j1);
    free(j2);
    km_jwks *s = NULL;
    assert_int_equal(km_jwks_parse(doc, strlen(doc), &s, NULL), KM_OK);
    assert_non_null(s);
    return s;
}

static km_jwt_result verify(const km_jwks *s, const char *tok, km_jwt_info *info)
{
    return km_jwt_verify(s, tok, strlen(tok), info);
}

static void test_valid_rsa_and_ec(void **state)
{
    keys *k = *state;
    km_jwks *s = make_set(k->rsa_a, "rsa-a", k->ec_a, "ec-a");
    assert_int_equal(km_jwks_count(s), 2);
    assert_string_equal(km_jwks_kid(s, 0), "rsa-a");
    assert_null(km_jwks_kid(s, 2));

    char *t = testpki_jwt(k->rsa_a, "RS256", "rsa-a", PAYLOAD);
    km_jwt_info info;
    assert_int_equal(verify(s, t, &info), KM_JWT_VALID);
    assert_string_equal(info.alg, "RS256");
    assert_string_equal(info.kid, "rsa-a");
    free(t);

    t = testpki_jwt(k->ec_a, "ES256", "ec-a", PAYLOAD);
    assert_int_equal(verify(s, t, &info), KM_JWT_VALID);
    assert_string_equal(info.alg, "ES256");
    free(t);

    /* No kid: every key of the matching type is tried. */
    t = testpki_jwt(k->ec_a, "ES256", NULL, PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_VALID);
    free(t);
    t = testpki_jwt(k->rsa_a, "RS256", NULL, PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_VALID);
    free(t);
    km_jwks_free(s);
}

static void test_other_sizes(void **state)
{
    (void)state;
    EVP_PKEY *p384 = testpki_key("ec:P-384");
    EVP_PKEY *p521 = testpki_key("ec:P-521");
    km_jwks *s = make_set(p384, "p384", p521, "p521");
    assert_int_equal(km_jwks_count(s), 2);
    char *t = testpki_jwt(p384, "ES384", "p384", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_VALID);
    free(t);
    t = testpki_jwt(p521, "ES512", "p521", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_VALID);
    free(t);
    /* An ES256 token cannot be checked with P-384/P-521 keys: no key of its type. */
    EVP_PKEY *p256 = testpki_key("ec");
    t = testpki_jwt(p256, "ES256", NULL, PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_UNKNOWN_KEY);
    free(t);
    km_jwks_free(s);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
}

static void test_wrong_key(void **state)
{
    keys *k = *state;
    km_jwks *s = make_set(k->rsa_a, "rsa-a", k->ec_a, "ec-a");
    /* Signed by a key that is not in the set, under its own kid: unknown key (stale). */
    char *t = testpki_jwt(k->rsa_b, "RS256", "rsa-b", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_UNKNOWN_KEY);
    assert_true(km_jwt_result_is_stale(KM_JWT_UNKNOWN_KEY));
    free(t);
    /* ... claiming the kid of a current key: invalid signature (stale). */
    t = testpki_jwt(k->rsa_b, "RS256", "rsa-a", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_INVALID_SIGNATURE);
    assert_true(km_jwt_result_is_stale(KM_JWT_INVALID_SIGNATURE));
    free(t);
    /* ... without a kid: keys of its type exist, none verifies. */
    t = testpki_jwt(k->ec_b, "ES256", NULL, PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_INVALID_SIGNATURE);
    free(t);
    t = testpki_jwt(k->ec_b, "ES256", "ec-a", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_INVALID_SIGNATURE);
    free(t);
    /* An empty or absent key set: nothing can verify. */
    t = testpki_jwt(k->rsa_a, "RS256", "rsa-a", PAYLOAD);
    assert_int_equal(verify(NULL, t, NULL), KM_JWT_UNKNOWN_KEY);
    free(t);
    km_jwks_free(s);
}

static void test_unknown_kid(void **state)
{
    keys *k = *state;
    km_jwks *s = make_set(k->rsa_a, "rsa-a", NULL, NULL);
    /* The kube-apiserver ignores kid and tries every key: a current key's signature under a
     * kid the set does not list is still valid (never regenerate a working token). */
    char *t = testpki_jwt(k->rsa_a, "RS256", "renamed", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_VALID);
    free(t);
    t = testpki_jwt(k->rsa_b, "RS256", "renamed", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_UNKNOWN_KEY);
    free(t);
    /* EC token, only RSA keys: unknown key. */
    t = testpki_jwt(k->ec_a, "ES256", "ec-a", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_UNKNOWN_KEY);
    free(t);
    km_jwks_free(s);
}

static void test_tampered(void **state)
{
    keys *k = *state;
    km_jwks *s = make_set(k->rsa_a, "rsa-a", k->ec_a, "ec-a");
    const char *algs[] = {"RS256", "ES256"};
    EVP_PKEY *ks[] = {k->rsa_a, k->ec_a};
    const char *kids[] = {"rsa-a", "ec-a"};
    for (int i = 0; i < 2; i++) {
        char *t = testpki_jwt(ks[i], algs[i], kids[i], PAYLOAD);
        assert_int_equal(verify(s, t, NULL), KM_JWT_VALID);
        /* Swap the payload for another (validly encoded) one. */
        char *dot1 = strchr(t, '.');
        char *dot2 = strchr(dot1 + 1, '.');
        const char *other = "{\"sub\":\"system:serviceaccount:kube-system:admin\"}";
        char *p = testpki_b64url(other, strlen(other));
        char forged[4096];
        snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(dot1 - t), t, p, dot2);
        assert_int_equal(verify(s, forged, NULL), KM_JWT_INVALID_SIGNATURE);
        /* Flip one signature character. */
        size_t last = strlen(t) - 2;
        t[last] = t[last] == 'A' ? 'B' : 'A';
        assert_int_equal(verify(s, t, NULL), KM_JWT_INVALID_SIGNATURE);
        free(p);
        free(t);
    }
    km_jwks_free(s);
}

static void test_bad_alg(void **state)
{
    keys *k = *state;
    km_jwks *s = make_set(k->rsa_a, "rsa-a", NULL, NULL);
    char *t = testpki_jwt(NULL, "none", "rsa-a", PAYLOAD);
    km_jwt_info info;
    assert_int_equal(verify(s, t, &info), KM_JWT_BAD_ALG);
    assert_string_equal(info.alg, "none");
    assert_int_equal(km_jwt_inspect(t, strlen(t), NULL), KM_JWT_BAD_ALG);
    free(t);
    t = testpki_jwt(NULL, "HS256", "rsa-a", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_BAD_ALG);
    free(t);
    t = testpki_jwt(k->rsa_a, "PS999", "rsa-a", PAYLOAD);
    assert_int_equal(verify(s, t, NULL), KM_JWT_BAD_ALG);
    free(t);
    /* No alg at all. */
    const char *h = "{\"kid\":\"rsa-a\"}";
    char *hb = testpki_b64url(h, strlen(h));
    char *pb = testpki_b64url(PAYLOAD, strlen(PAYLOAD));
    char tok[2048];
    snprintf(tok, sizeof(tok), "%s.%s.c2ln", hb, pb);
    assert_int_equal(verify(s, tok, NULL), KM_JWT_BAD_ALG);
    free(hb);
    free(pb);
    km_jwks_free(s);
    assert_string_equal(km_jwt_result_name(KM_JWT_BAD_ALG), "BadAlg");
    assert_false(km_jwt_result_is_stale(KM_JWT_BAD_ALG));
    assert_false(km_jwt_result_is_stale(KM_JWT_MALFORMED));
    assert_false(km_jwt_result_is_stale(KM_JWT_VALID));
}

static void test_malformed(void **state)
{
    keys *k = *state;
    km_jwks *s = make_set(k->rsa_a, "rsa-a", k->ec_a, "ec-a");
    char *good = testpki_jwt(k->rsa_a, "RS256", "rsa-a", PAYLOAD);
    char *dot1 = strchr(good, '.');
    char *dot2 = strchr(dot1 + 1, '.');
    char buf[4096];
    const char *plain[] = {"",  "not-a-jwt", "a.b", "...", "a.b.c.d", "eyJhbGciOiJSUzI1NiJ9..",
                           NULL};
    for (int i = 0; plain[i]; i++) {
        assert_int_equal(verify(s, plain[i], NULL), KM_JWT_MALFORMED);
        assert_int_equal(km_jwt_inspect(plain[i], strlen(plain[i]), NULL), KM_JWT_MALFORMED);
    }
    /* Four parts. */
    snprintf(buf, sizeof(buf), "%s.x", good);
    assert_int_equal(verify(s, buf, NULL), KM_JWT_MALFORMED);
    /* Bad base64url in the payload / signature. */
    snprintf(buf, sizeof(buf), "%.*s.%s", (int)(dot2 - good), good, "ab+/");
    assert_int_equal(verify(s, buf, NULL), KM_JWT_MALFORMED);
    snprintf(buf, sizeof(buf), "%.*s.e30*%s", (int)(dot1 - good), good, dot2);
    assert_int_equal(verify(s, buf, NULL), KM_JWT_MALFORMED);
    /* Payload that is not a JSON object. */
    char *arr = testpki_b64url("[1,2]", 5);
    snprintf(buf, sizeof(buf), "%.*s.%s%s", (int)(dot1 - good), good, arr, dot2);
    assert_int_equal(verify(s, buf, NULL), KM_JWT_MALFORMED);
    free(arr);
    /* Header that is not JSON. */
    char *junk = testpki_b64url("{alg:RS256", 10);
    snprintf(buf, sizeof(buf), "%s%s", junk, dot1);
    assert_int_equal(verify(s, buf, NULL), KM_JWT_MALFORMED);
    free(junk);
    /* Empty signature. */
    snprintf(buf, sizeof(buf), "%.*s.", (int)(dot2 - good), good);
    assert_int_equal(verify(s, buf, NULL), KM_JWT_MALFORMED);
    /* ES256 signature of the wrong length (a DER signature instead of r||s). */
    char *es = testpki_jwt(k->ec_a, "ES256", "ec-a", PAYLOAD);
    char *esd2 = strrchr(es, '.');
    char *longsig = testpki_b64url(
        "0123456789012345678901234567890123456789012345678901234567890123456789", 70);
    snprintf(buf, sizeof(buf), "%.*s.%s", (int)(esd2 - es), es, longsig);
    assert_int_equal(verify(s, buf, NULL), KM_JWT_MALFORMED);
    assert_int_equal(km_jwt_inspect(es, strlen(es), NULL), KM_JWT_VALID);
    /* Non-string kid. */
    const char *h = "{\"alg\":\"RS256\",\"kid\":5}";
    char *hb = testpki_b64url(h, strlen(h));
    snprintf(buf, sizeof(buf), "%s%s", hb, dot1);
    assert_int_equal(verify(s, buf, NULL), KM_JWT_MALFORMED);
    assert_int_equal(km_jwt_verify(s, NULL, 0, NULL), KM_JWT_MALFORMED);
    free(hb);
    free(longsig);
    free(es);
    free(good);
    km_jwks_free(s);
}

static void test_jwks_parse(void **state)
{
    keys *k = *state;
    km_jwks *s = NULL;
    km_err err;
    assert_int_equal(km_jwks_parse("nope", 4, &s, &err), KM_EPARSE);
    assert_null(s);
    assert_int_equal(km_jwks_parse("{\"kid\":1}", 9, &s, &err), KM_EPARSE);
    assert_null(s);
    assert_non_null(strstr(err.message, "keys"));
    /* Unusable keys are skipped, not fatal. */
    char *good = testpki_jwk(k->ec_a, "ec-a");
    char *enc = testpki_jwk(k->rsa_a, "enc");
    char *encuse = strstr(enc, "\"sig\"");
    memcpy(encuse, "\"enc\"", 5);
    /* An EC point that is not on the curve: replace y by x. */
    char *offcurve = testpki_jwk(k->ec_b, "off");
    char *x = strstr(offcurve, "\"x\":\"") + 5;
    char *y = strstr(offcurve, "\"y\":\"") + 5;
    memcpy(y, x, 43);
    char doc[8192];
    snprintf(
        doc, sizeof(doc),
        "{\"keys\":[%s,%s,%s,{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"},"
        "{\"kty\":\"RSA\",\"n\":\"!!\",\"e\":\"AQAB\"},{\"kty\":\"EC\",\"crv\":\"P-192\"},{}]}",
        good, enc, offcurve);
    assert_int_equal(km_jwks_parse(doc, strlen(doc), &s, &err), KM_OK);
    assert_int_equal(km_jwks_count(s), 1);
    assert_int_equal(km_jwks_skipped(s), 6);
    assert_string_equal(km_jwks_kid(s, 0), "ec-a");
    km_jwks_free(s);
    s = NULL;
    assert_int_equal(km_jwks_parse("{\"keys\":[]}", 11, &s, NULL), KM_OK);
    assert_int_equal(km_jwks_count(s), 0);
    km_jwks_free(s);
    km_jwks_free(NULL);
    free(good);
    free(enc);
    free(offcurve);
}

/* ---- recorded kube-apiserver 1.19 material ---------------------------------------------- */

static char *fixture_token(const char *file, int from_secret)
{
    char *text = kmtest_fixture(file, NULL);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    assert_non_null(doc);
    char *tok = NULL;
    if (from_secret) {
        const char *b64 = KM_JSON_STR(doc, "data", "token");
        assert_non_null(b64);
        unsigned char *raw = NULL;
        size_t n = 0;
        assert_int_equal(km_base64_decode(b64, strlen(b64), 0, &raw, &n), KM_OK);
        tok = (char *)raw;
    } else {
        const char *t = KM_JSON_STR(doc, "spec", "token");
        assert_non_null(t);
        tok = strdup(t);
    }
    cJSON_Delete(doc);
    return tok;
}

static void test_fixtures(void **state)
{
    (void)state;
    size_t n = 0;
    char *jwks = kmtest_fixture("oidc-jwks.json", &n);
    km_jwks *s = NULL;
    assert_int_equal(km_jwks_parse(jwks, n, &s, NULL), KM_OK);
    free(jwks);
    assert_int_equal(km_jwks_count(s), 1);
    assert_string_equal(km_jwks_kid(s, 0), "l9pzQDtEuvptyGz5VvfsFSrd4_50haXFNPu9HnLa0_Q");

    struct {
        const char *file;
        int from_secret;
        km_jwt_result want;
    } cases[] = {
        {"get-secret-fx-sa-token.json", 1, KM_JWT_VALID},
        {"get-sa-token-secret-recreated.json", 1, KM_JWT_VALID},
        {"tokenreview-valid.json", 0, KM_JWT_VALID},
        {"tokenreview-bound-token.json", 0, KM_JWT_VALID},
        /* The token signed by the old service-account key (kid GYcM...). */
        {"get-secret-app1-worker-token-after-rotation.json", 1, KM_JWT_UNKNOWN_KEY},
        {"tokenreview-old-key.json", 0, KM_JWT_UNKNOWN_KEY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = fixture_token(cases[i].file, cases[i].from_secret);
        assert_non_null(tok);
        km_jwt_info info;
        km_jwt_result r = km_jwt_verify(s, tok, strlen(tok), &info);
        if (r != cases[i].want)
            fail_msg("%s: got %s, want %s", cases[i].file, km_jwt_result_name(r),
                     km_jwt_result_name(cases[i].want));
        assert_string_equal(info.alg, "RS256");
        free(tok);
    }
    km_jwks_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_rsa_and_ec), cmocka_unit_test(test_other_sizes),
        cmocka_unit_test(test_wrong_key),        cmocka_unit_test(test_unknown_kid),
        cmocka_unit_test(test_tampered),         cmocka_unit_test(test_bad_alg),
        cmocka_unit_test(test_malformed),        cmocka_unit_test(test_jwks_parse),
        cmocka_unit_test(test_fixtures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
