/* test_bridge.c — reconcilers/bridge: the kid rules (kid.h), the token set (cluster.h), the
 * snapshot merge (snapshot.h) and which pods still depend on the old key (retire.h).  The key
 * recovery itself is test_keyrecover.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "operator/base/base64.h"
#include "operator/base/json.h"
#include "reconcilers/bridge/cluster.h"
#include "reconcilers/bridge/kid.h"
#include "reconcilers/bridge/retire.h"
#include "reconcilers/bridge/snapshot.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/recovery/verify.h"
#include "reconcilers/step/conditions.h"
#include "tests/unit/support/kmtest.h"
#include "tests/unit/support/testpki.h"

/* The kid of key as this module computes it from its PEM. */
static void kid_of_key(EVP_PKEY *k, char *kid)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    long n = BIO_get_mem_data(b, &p);
    assert_int_equal(km_bridge_kid_of_pem(p, (size_t)n, kid, KM_BRIDGE_KID_LEN + 1), KM_OK);
    BIO_free(b);
}

/* The real kube-apiserver's JWKS: the kid it published equals the kid of the key's SPKI. */
static void test_kid_matches_the_real_server(void **state)
{
    (void)state;
    size_t n = 0;
    char *text = kmtest_fixture("oidc-jwks.json", &n), kid[KM_BRIDGE_KID_LEN + 1];
    km_jwks *set = NULL;
    unsigned char *der = NULL;
    size_t len = 0;
    assert_int_equal(km_jwks_parse(text, n, &set, NULL), KM_OK);
    assert_true(km_jwks_count(set) >= 1);
    assert_int_equal(km_jwks_spki(set, 0, &der, &len), KM_OK);
    assert_int_equal(km_bridge_kid_of_spki(der, len, kid, sizeof(kid)), KM_OK);
    assert_string_equal(kid, km_jwks_kid(set, 0));
    assert_int_equal(strlen(kid), KM_BRIDGE_KID_LEN);
    assert_int_equal(km_bridge_kid_of_spki(der, len, kid, KM_BRIDGE_KID_LEN), KM_EINVAL);
    char *pem = NULL;
    assert_int_equal(km_bridge_spki_pem(der, len, &pem), KM_OK);
    char kid2[KM_BRIDGE_KID_LEN + 1];
    assert_int_equal(km_bridge_kid_of_pem(pem, strlen(pem), kid2, sizeof(kid2)), KM_OK);
    assert_string_equal(kid2, km_jwks_kid(set, 0));
    assert_int_equal(km_bridge_kid_of_pem("not a pem", 9, kid2, sizeof(kid2)), KM_EPARSE);
    free(pem);
    free(der);
    km_jwks_free(set);
    free(text);
}

static void test_classify(void **state)
{
    (void)state;
    EVP_PKEY *a = testpki_key("ec"), *b = testpki_key("rsa");
    char ka[KM_BRIDGE_KID_LEN + 1], kb[KM_BRIDGE_KID_LEN + 1], got[96];
    kid_of_key(a, ka);
    kid_of_key(b, kb);
    assert_string_not_equal(ka, kb);
    char *ta = testpki_jwt(a, "ES256", ka, "{\"sub\":\"system:serviceaccount:a:b\"}");
    char *tb = testpki_jwt(b, "RS256", kb, "{\"sub\":\"system:serviceaccount:a:b\"}");
    char *tn = testpki_jwt(b, "RS256", NULL, "{\"sub\":\"x\"}");
    km_bridge_token_kid(ta, got, sizeof(got));
    assert_string_equal(got, ka);
    assert_int_equal(km_bridge_classify(ta, ka), KM_BRIDGE_CURRENT);
    assert_int_equal(km_bridge_classify(tb, ka), KM_BRIDGE_OLD);
    assert_int_equal(km_bridge_classify(tb, kb), KM_BRIDGE_CURRENT);
    /* unknown: no signing kid, no kid in the token, not a token */
    assert_int_equal(km_bridge_classify(tb, ""), KM_BRIDGE_UNKNOWN);
    assert_int_equal(km_bridge_classify(tb, NULL), KM_BRIDGE_UNKNOWN);
    assert_int_equal(km_bridge_classify(tn, ka), KM_BRIDGE_UNKNOWN);
    assert_int_equal(km_bridge_classify("a.b.c", ka), KM_BRIDGE_UNKNOWN);
    assert_int_equal(km_bridge_classify(NULL, ka), KM_BRIDGE_UNKNOWN);
    km_bridge_token_kid("garbage", got, sizeof(got));
    assert_string_equal(got, "");
    free(ta);
    free(tb);
    free(tn);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

/* The token set keeps old tokens only (not the current key's), without copies, bounded per kid. */
static void test_token_set(void **state)
{
    (void)state;
    EVP_PKEY *cur = testpki_key("ec"), *old = testpki_key("ec");
    char kc[KM_BRIDGE_KID_LEN + 1], ko[KM_BRIDGE_KID_LEN + 1], doc[4096];
    kid_of_key(cur, kc);
    kid_of_key(old, ko);
    char *jwk = testpki_jwk(cur, kc);
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", jwk);
    km_jwks *current = NULL;
    assert_int_equal(km_jwks_parse(doc, strlen(doc), &current, NULL), KM_OK);
    km_bridge_tokens *s = km_bridge_tokens_new(2);
    char *tc = testpki_jwt(cur, "ES256", kc, "{\"n\":1}");
    char *tc_nokid = testpki_jwt(cur, "ES256", NULL, "{\"n\":2}");
    char *t1 = testpki_jwt(old, "ES256", ko, "{\"n\":1}");
    char *t2 = testpki_jwt(old, "ES256", ko, "{\"n\":2}");
    char *t3 = testpki_jwt(old, "ES256", ko, "{\"n\":3}");
    assert_int_equal(km_bridge_tokens_add(s, current, tc), 0);       /* the current key's */
    assert_int_equal(km_bridge_tokens_add(s, current, tc_nokid), 0); /* verified by it */
    assert_int_equal(km_bridge_tokens_add(s, current, "x.y"), 0);
    assert_int_equal(km_bridge_tokens_add(s, current, t1), 1);
    assert_int_equal(km_bridge_tokens_add(s, current, t1), 0); /* a copy */
    assert_int_equal(km_bridge_tokens_add(s, current, t2), 1);
    assert_int_equal(km_bridge_tokens_add(s, current, t3), 0); /* per-kid bound */
    assert_int_equal(km_bridge_tokens_count(s), 2);
    assert_string_equal(km_bridge_tokens_all(s)[0], t1);
    /* without the server's keys every well-formed token is kept */
    km_bridge_tokens *all = km_bridge_tokens_new(0);
    assert_int_equal(km_bridge_tokens_add(all, NULL, tc), 1);
    assert_true(km_bridge_keys_have(current, kc));
    assert_false(km_bridge_keys_have(current, ko));
    assert_false(km_bridge_keys_have(NULL, kc));
    km_bridge_tokens_free(all);
    km_bridge_tokens_free(s);
    km_bridge_tokens_free(NULL);
    free(tc);
    free(tc_nokid);
    free(t1);
    free(t2);
    free(t3);
    free(jwk);
    km_jwks_free(current);
    EVP_PKEY_free(cur);
    EVP_PKEY_free(old);
}

static int nkeys(const char *text)
{
    cJSON *d = cJSON_Parse(text);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(d, "keys"));
    cJSON_Delete(d);
    return n;
}

/* The snapshot keeps a key once seen: the lost key survives the snapshot taken after a rebuild. */
static void test_snapshot_merge(void **state)
{
    (void)state;
    const char *old = "{\"keys\":[{\"kid\":\"A\",\"kty\":\"RSA\"}]}";
    const char *now = "{\"keys\":[{\"kid\":\"B\",\"kty\":\"RSA\"}]}";
    char *m = km_bridge_snapshot_merge(now, old);
    assert_non_null(m);
    assert_int_equal(nkeys(m), 2);
    assert_non_null(strstr(m, "\"A\""));
    char *again = km_bridge_snapshot_merge(now, m); /* idempotent */
    assert_string_equal(again, m);
    free(again);
    free(m);
    m = km_bridge_snapshot_merge(NULL, old); /* 1.19 without the JWKS: the previous keys stay */
    assert_int_equal(nkeys(m), 1);
    free(m);
    assert_null(km_bridge_snapshot_merge(NULL, NULL));
    assert_null(km_bridge_snapshot_merge("not json", "{\"keys\":[]}"));
    /* bounded */
    char big[8192];
    size_t o = (size_t)snprintf(big, sizeof(big), "{\"keys\":[");
    for (int i = 0; i < 40; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "%s{\"kid\":\"k%d\"}", i ? "," : "", i);
    snprintf(big + o, sizeof(big) - o, "]}");
    m = km_bridge_snapshot_merge(now, big);
    assert_int_equal(nkeys(m), KM_BRIDGE_SNAPSHOT_MAX_KEYS);
    assert_non_null(strstr(m, "\"B\"")); /* the current keys first */
    free(m);
}

static cJSON *pod(const char *volumes, const char *start, const char *phase)
{
    char doc[1024];
    snprintf(doc, sizeof(doc),
             "{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\",\"creationTimestamp\":"
             "\"2026-01-01T00:00:00Z\"},\"spec\":{\"serviceAccountName\":\"app\",\"volumes\":%s},"
             "\"status\":{\"phase\":\"%s\"%s%s%s}}",
             volumes, phase, start ? ",\"startTime\":\"" : "", start ? start : "",
             start ? "\"" : "");
    cJSON *p = cJSON_Parse(doc);
    assert_non_null(p);
    return p;
}

static void test_pod_depends(void **state)
{
    (void)state;
    const char *proj = "[{\"name\":\"kube-api-access-x\",\"projected\":{\"sources\":[{"
                       "\"serviceAccountToken\":{\"path\":\"token\"}}]}}]";
    time_t rebuilt = 1780000000; /* 2026-05-28 */
    struct {
        const char *vols, *start, *phase;
        time_t rebuilt;
        int want;
    } cases[] = {
        {proj, "2026-01-02T00:00:00Z", "Running", rebuilt, 1}, /* started before */
        {proj, "2026-12-01T00:00:00Z", "Running", rebuilt, 0}, /* after */
        {proj, NULL, "Running", rebuilt, 1},                   /* creationTimestamp: before */
        {proj, "2026-01-02T00:00:00Z", "Succeeded", rebuilt, 0},
        {"[{\"name\":\"data\",\"emptyDir\":{}}]", "2026-01-02T00:00:00Z", "Running", rebuilt, 0},
        {proj, "2026-12-01T00:00:00Z", "Running", 0, 1}, /* rebuild unknown: counts */
    };
    /* no volume information: the ServiceAccount's automountServiceAccountToken decides */
    cJSON *bare = pod("[]", "2026-01-02T00:00:00Z", "Running");
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(bare, "spec"), "volumes");
    cJSON *no = cJSON_Parse("{\"automountServiceAccountToken\":false}");
    assert_int_equal(km_bridge_pod_depends(bare, NULL, rebuilt), 1);
    assert_int_equal(km_bridge_pod_depends(bare, no, rebuilt), 0);
    cJSON_Delete(no);
    cJSON_Delete(bare);
    cJSON *mirror = pod(proj, "2026-01-02T00:00:00Z", "Running");
    assert_int_equal(km_bridge_pod_depends(mirror, NULL, rebuilt), 1);
    cJSON *ann = cJSON_AddObjectToObject(cJSON_GetObjectItem(mirror, "metadata"), "annotations");
    cJSON_AddStringToObject(ann, "kubernetes.io/config.mirror", "abc");
    assert_int_equal(km_bridge_pod_depends(mirror, NULL, rebuilt), 0);
    cJSON_Delete(mirror);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *p = pod(cases[i].vols, cases[i].start, cases[i].phase);
        if (km_bridge_pod_depends(p, NULL, cases[i].rebuilt) != cases[i].want)
            fail_msg("case %zu", i);
        cJSON_Delete(p);
    }
}

/* A completed ClusterRecovery with Verified (reason) and, when bridge_reason, BridgeRetirable. */
static cJSON *completed(const char *phase, const char *verified_reason, const char *bridge_reason)
{
    cJSON *o = cJSON_Parse("{\"apiVersion\":\"kubemend.io/v1alpha1\",\"kind\":\"ClusterRecovery\","
                           "\"metadata\":{\"name\":\"r\",\"generation\":1},\"spec\":{},"
                           "\"status\":{}}");
    cJSON *st = cJSON_GetObjectItem(o, "status");
    cJSON_AddStringToObject(st, "phase", phase);
    if (verified_reason)
        assert_int_equal(km_cond_set(st, KM_COND_VERIFIED, "False", verified_reason, "m", 1,
                                     "2026-12-03T00:00:00Z") < 0,
                         0);
    if (bridge_reason)
        assert_int_equal(km_cond_set(st, KM_COND_BRIDGE_RETIRABLE, "True", bridge_reason, "m", 1,
                                     "2026-12-03T00:00:00Z") < 0,
                         0);
    return o;
}

static void test_bridge_active_and_reverify(void **state)
{
    (void)state;
    struct {
        const char *phase, *verified, *bridge;
        int active, reverify;
    } cases[] = {
        {"Succeeded", "Healed", NULL, 0, 0}, /* no bridge: done */
        {"Succeeded", "NotHealed", "NothingDependsOnOldKey", 1,
         KM_REVERIFY_BRIDGED}, /* bridged: check again */
        {"Succeeded", "NotHealed", "OldKeyInUse", 1, KM_REVERIFY_BRIDGED},
        {"Succeeded", "Healed", KM_BRIDGE_RETIRED, 0, 0},             /* the bridge is gone */
        {"Succeeded", "Verifying", NULL, 0, KM_REVERIFY_INTERRUPTED}, /* interrupted verification */
        {"Failed", "Verifying", NULL, 0, KM_REVERIFY_INTERRUPTED},
        {"Running", "Verifying", "OldKeyInUse", 1, 0}, /* not completed: the run does it */
        {"Succeeded", NULL, NULL, 0, 0},               /* completed before Verified existed */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *o = completed(cases[i].phase, cases[i].verified, cases[i].bridge);
        if (km_bridge_active(cJSON_GetObjectItem(o, "status")) != cases[i].active)
            fail_msg("case %zu: active", i);
        if (km_recovery_needs_reverify(o) != cases[i].reverify)
            fail_msg("case %zu: reverify", i);
        cJSON_Delete(o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kid_matches_the_real_server),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_token_set),
        cmocka_unit_test(test_snapshot_merge),
        cmocka_unit_test(test_pod_depends),
        cmocka_unit_test(test_bridge_active_and_reverify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
