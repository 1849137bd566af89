/* test_pods_tokengate.c — the pods step's token gate (reconcilers/pods/tokengate.h): which
 * Secrets a stale pod mounts are waited for, and when each counts as refilled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "reconcilers/pods/tokengate.h"

static cJSON *parse(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    return j;
}

/* One round of the gate over a single page (JSON array text): how many wanted are missing. */
static size_t round_of(km_pods_gate *g, const char *page_text, char *first, size_t n)
{
    cJSON *page = parse(page_text);
    assert_int_equal(km_pods_gate_see(g, page), KM_OK);
    cJSON_Delete(page);
    return km_pods_gate_missing(g, first, n);
}

/* A pod of ServiceAccount app mounting its legacy token Secret app-token-abcde, a config Secret
 * and, through a projected volume, the Secret extra-token. */
static const char *POD =
    "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"serviceAccountName\":\"app\",\"volumes\":["
    "{\"name\":\"t\",\"secret\":{\"secretName\":\"app-token-abcde\"}},"
    "{\"name\":\"c\",\"secret\":{\"secretName\":\"config\"}},"
    "{\"name\":\"e\",\"emptyDir\":{}},"
    "{\"name\":\"p\",\"projected\":{\"sources\":[{\"secret\":{\"name\":\"extra-token\"}},"
    "{\"serviceAccountToken\":{\"path\":\"token\"}}]}}]}}";

static void test_wants_the_secrets_a_pod_mounts(void **state)
{
    (void)state;
    km_pods_gate *g = km_pods_gate_new();
    cJSON *pod = parse(POD);
    assert_int_equal(km_pods_gate_want_pod(g, pod), KM_OK);
    assert_int_equal(km_pods_gate_want_pod(g, pod), KM_OK); /* counted once */
    assert_int_equal(km_pods_gate_wants(g), 3);
    cJSON *projected = parse("{\"spec\":{\"serviceAccountName\":\"x\",\"volumes\":[{\"name\":"
                             "\"kube-api-access\",\"projected\":{\"sources\":["
                             "{\"serviceAccountToken\":{\"path\":\"token\"}},"
                             "{\"configMap\":{\"name\":\"kube-root-ca.crt\"}}]}}]}}");
    km_pods_gate *g2 = km_pods_gate_new();
    assert_int_equal(km_pods_gate_want_pod(g2, projected), KM_OK);
    assert_int_equal(km_pods_gate_wants(g2), 0); /* a projected token mounts no Secret */
    cJSON_Delete(projected);
    cJSON_Delete(pod);
    km_pods_gate_free(g2);
    km_pods_gate_free(g);
}

static void test_regenerated_secret_waits_for_its_token(void **state)
{
    (void)state;
    char first[64];
    km_pods_gate *g = km_pods_gate_new();
    cJSON *pod = parse(POD);
    assert_int_equal(km_pods_gate_want_pod(g, pod), KM_OK);
    /* app-token-abcde regenerated (no token yet), extra-token holds one, config is not a token
     * Secret (not listed: nothing to wait for) */
    assert_int_equal(
        round_of(g,
                 "[{\"metadata\":{\"name\":\"app-token-abcde\",\"annotations\":{"
                 "\"kubernetes.io/service-account.name\":\"app\"}},\"data\":{\"ca.crt\":"
                 "\"eA==\"}},{\"metadata\":{\"name\":\"extra-token\"},\"data\":{\"token\":"
                 "\"eA==\"}}]",
                 first, sizeof(first)),
        1);
    assert_string_equal(first, "app-token-abcde");
    /* the tokens controller wrote its token: nothing left to wait for */
    assert_int_equal(
        round_of(g,
                 "[{\"metadata\":{\"name\":\"app-token-abcde\",\"annotations\":{"
                 "\"kubernetes.io/service-account.name\":\"app\"}},\"data\":{\"token\":"
                 "\"eA==\"}},{\"metadata\":{\"name\":\"extra-token\"},\"data\":{"
                 "\"token\":\"eA==\"}}]",
                 first, sizeof(first)),
        0);
    assert_string_equal(first, "");
    cJSON_Delete(pod);
    km_pods_gate_free(g);
}

static void test_deleted_legacy_secret_waits_for_another_of_its_account(void **state)
{
    (void)state;
    km_pods_gate *g = km_pods_gate_new();
    cJSON *pod = parse(POD);
    assert_int_equal(km_pods_gate_want_pod(g, pod), KM_OK);
    /* mode Delete: app-token-abcde is gone; a token Secret of another account does not help */
    assert_int_equal(
        round_of(g,
                 "[{\"metadata\":{\"name\":\"extra-token\",\"annotations\":{"
                 "\"kubernetes.io/service-account.name\":\"other\"}},\"data\":{\"token\":"
                 "\"eA==\"}}]",
                 NULL, 0),
        1);
    /* the tokens controller created app-token-fghij without a token yet: still waiting */
    assert_int_equal(
        round_of(g,
                 "[{\"metadata\":{\"name\":\"extra-token\"},\"data\":{\"token\":\"eA==\"}},"
                 "{\"metadata\":{\"name\":\"app-token-fghij\",\"annotations\":{"
                 "\"kubernetes.io/service-account.name\":\"app\"}},\"data\":{}}]",
                 NULL, 0),
        1);
    /* ... and once it holds a token, the account's new pods mount it: ready */
    assert_int_equal(
        round_of(g,
                 "[{\"metadata\":{\"name\":\"extra-token\"},\"data\":{\"token\":\"eA==\"}},"
                 "{\"metadata\":{\"name\":\"app-token-fghij\",\"annotations\":{"
                 "\"kubernetes.io/service-account.name\":\"app\"}},\"data\":{\"token\":"
                 "\"eA==\"}}]",
                 NULL, 0),
        0);
    cJSON_Delete(pod);
    km_pods_gate_free(g);
}

static void test_free_accepts_null(void **state)
{
    (void)state;
    km_pods_gate_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wants_the_secrets_a_pod_mounts),
        cmocka_unit_test(test_regenerated_secret_waits_for_its_token),
        cmocka_unit_test(test_deleted_legacy_secret_waits_for_another_of_its_account),
        cmocka_unit_test(test_free_accepts_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
