/* test_tokens.c — reconcilers/tokens pure parts: Secret precheck and TokenReview verdicts on the
 * recorded kube-apiserver 1.19 responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "reconcilers/tokens/check.h"
#include "tests/unit/support/kmtest.h"
#include "tests/unit/support/testpki.h"

static cJSON *fixture(const char *name)
{
    char *text = kmtest_fixture(name, NULL);
    cJSON *o = cJSON_Parse(text);
    free(text);
    return o;
}

static cJSON *secret(const char *annotations, const char *data, const char *extra_meta)
{
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"type\":\"kubernetes.io/service-account-token\",\"metadata\":{\"name\":\"s\","
             "\"namespace\":\"n\"%s%s%s},\"data\":%s}",
             annotations ? ",\"annotations\":" : "", annotations ? annotations : "",
             extra_meta ? extra_meta : "", data);
    cJSON *o = cJSON_Parse(buf);
    assert_non_null(o);
    return o;
}

static void test_precheck(void **state)
{
    (void)state;
    const char *ann = "{\"kubernetes.io/service-account.name\":\"sa\","
                      "\"kubernetes.io/service-account.uid\":\"u1\"}";
    EVP_PKEY *k = testpki_key("ec");
    char *jwt = testpki_jwt(k, "ES256", "kid", "{\"sub\":\"x\"}");
    char *b64 = testpki_b64(jwt, strlen(jwt));
    char data[2048];
    snprintf(data, sizeof(data), "{\"token\":\"%s\"}", b64);

    char *tok = NULL;
    cJSON *s = secret(ann, data, NULL);
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_CHECK);
    assert_string_equal(tok, jwt);
    km_tokens_token_free(tok);
    cJSON_Delete(s);

    tok = NULL;
    s = secret(ann, data, ",\"deletionTimestamp\":\"2026-11-26T10:00:00Z\"");
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_DELETING);
    cJSON_Delete(s);
    s = secret("{\"kubernetes.io/service-account.name\":\"sa\"}", data, NULL);
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_UNANNOTATED);
    cJSON_Delete(s);
    s = secret(NULL, data, NULL);
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_UNANNOTATED);
    cJSON_Delete(s);
    s = secret(ann, "{\"ca.crt\":\"eA==\"}", NULL);
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_PENDING);
    cJSON_Delete(s);
    s = secret(ann, "{\"token\":\"\"}", NULL);
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_PENDING);
    cJSON_Delete(s);
    /* not base64 / base64 of something that is not a JWT / alg none */
    s = secret(ann, "{\"token\":\"!!!\"}", NULL);
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_MALFORMED);
    cJSON_Delete(s);
    s = secret(ann, "{\"token\":\"bm90LWEtand0\"}", NULL); /* "not-a-jwt" */
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_MALFORMED);
    cJSON_Delete(s);
    char *none = testpki_jwt(NULL, "none", NULL, "{\"sub\":\"x\"}");
    char *nb = testpki_b64(none, strlen(none));
    snprintf(data, sizeof(data), "{\"token\":\"%s\"}", nb);
    s = secret(ann, data, NULL);
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_MALFORMED);
    cJSON_Delete(s);
    assert_null(tok);
    cJSON *opaque = cJSON_Parse("{\"type\":\"Opaque\",\"metadata\":{}}");
    assert_int_equal(km_tokens_precheck(opaque, &tok), KM_TOKEN_NOT_TOKEN);
    cJSON_Delete(opaque);
    km_tokens_token_free(NULL);
    free(none);
    free(nb);
    free(b64);
    free(jwt);
    EVP_PKEY_free(k);
}

static void test_review_verdicts(void **state)
{
    (void)state;
    struct {
        const char *file;
        km_review_verdict want;
    } cases[] = {
        {"tokenreview-valid.json", KM_REVIEW_VALID},
        {"tokenreview-bound-token.json", KM_REVIEW_VALID},
        /* signed by the old key: the only "stale" answer */
        {"tokenreview-old-key.json", KM_REVIEW_STALE},
        /* valid signature, Secret deleted meanwhile: not a key problem, never "stale" */
        {"tokenreview-deleted-secret.json", KM_REVIEW_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *o = fixture(cases[i].file);
        assert_non_null(o);
        char why[256];
        assert_int_equal(km_tokens_review_verdict(o, why, sizeof(why)), cases[i].want);
        if (cases[i].want == KM_REVIEW_OTHER)
            assert_non_null(strstr(why, "invalidated"));
        cJSON_Delete(o);
    }
    const char *other[] = {
        "{\"status\":{\"error\":\"[invalid bearer token, Token does not match server's copy]\"}}",
        "{\"status\":{\"error\":\"[invalid bearer token, ServiceAccount a/b has been deleted]\"}}",
        "{\"status\":{\"user\":{}}}",
        "{}",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        cJSON *o = cJSON_Parse(other[i]);
        assert_int_equal(km_tokens_review_verdict(o, NULL, 0), KM_REVIEW_OTHER);
        cJSON_Delete(o);
    }
    cJSON *v3 = cJSON_Parse("{\"status\":{\"error\":\"[invalid bearer token, go-jose/go-jose: "
                            "error in cryptographic primitive]\"}}");
    assert_int_equal(km_tokens_review_verdict(v3, NULL, 0), KM_REVIEW_STALE);
    cJSON_Delete(v3);
    cJSON *m = cJSON_Parse("{\"status\":{\"error\":\"[invalid bearer token, square/go-jose: "
                           "compact JWS format must have three parts]\"}}");
    assert_int_equal(km_tokens_review_verdict(m, NULL, 0), KM_REVIEW_MALFORMED);
    cJSON_Delete(m);
}

static void test_fixture_secrets(void **state)
{
    (void)state;
    cJSON *s = fixture("get-secret-app1-worker-token-after-rotation.json");
    assert_non_null(s);
    char *tok = NULL;
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_CHECK);
    assert_non_null(tok);
    assert_int_equal(strncmp(tok, "eyJ", 3), 0);
    km_tokens_token_free(tok);
    cJSON_Delete(s);
    /* After the guarded patch the Secret has no token: pending, not malformed. */
    s = fixture("patch-sa-token-secret-remove-token.json");
    tok = NULL;
    assert_int_equal(km_tokens_precheck(s, &tok), KM_TOKEN_PENDING);
    assert_null(tok);
    cJSON_Delete(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precheck),
        cmocka_unit_test(test_review_verdicts),
        cmocka_unit_test(test_fixture_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
