/* test_pods_select.c — the pure rules of the pod restart step: pod selection (each skip rule
 * alone), namespace ordering and filtering, label selectors, restart marker, readiness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reconcilers/podsel.h"

#define STARTED "2026-11-26T10:00:00Z"

static cJSON *J(const char *s)
{
    cJSON *o = cJSON_Parse(s);
    if (!o)
        fail_msg("bad JSON in test: %s", s);
    return o;
}

/* A pod that must be restarted: SA app-sa, created before the start, Running, legacy token volume.
 */
static const char *POD =
    "{\"metadata\":{\"name\":\"p\",\"namespace\":\"app\",\"creationTimestamp\":"
    "\"2026-11-26T09:00:00Z\"},\"spec\":{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":"
    "\"app-sa-token-abcde\",\"secret\":{\"secretName\":\"app-sa-token-abcde\"}}]},"
    "\"status\":{\"phase\":\"Running\"}}";

static km_podsel_reason decide(cJSON *pod, const char *sa)
{
    cJSON *s = sa ? J(sa) : NULL;
    km_podsel_reason r = km_podsel_pod(pod, s, STARTED, 0);
    cJSON_Delete(s);
    return r;
}

static cJSON *spec(const char *path_json)
{
    return J(path_json);
}

static void set_str(cJSON *o, const char *a, const char *b, const char *v)
{
    cJSON *x = cJSON_GetObjectItem(o, a);
    cJSON_DeleteItemFromObject(x, b);
    cJSON_AddStringToObject(x, b, v);
}

static void test_pod_selected(void **state)
{
    (void)state;
    cJSON *pod = J(POD);
    assert_int_equal(decide(pod, NULL), KM_PODSEL_RESTART);
    assert_int_equal(decide(pod, "{\"automountServiceAccountToken\":true}"), KM_PODSEL_RESTART);
    /* Pending pods are restarted too */
    set_str(pod, "status", "phase", "Pending");
    assert_int_equal(decide(pod, NULL), KM_PODSEL_RESTART);
    cJSON_Delete(pod);
}

static void test_each_skip_rule_alone(void **state)
{
    (void)state;
    cJSON *pod = J(POD);
    set_str(pod, "metadata", "deletionTimestamp", "2026-11-26T09:30:00Z");
    assert_int_equal(decide(pod, NULL), KM_PODSEL_DELETING);
    cJSON_Delete(pod);

    pod = J(POD);
    cJSON_AddItemToObject(cJSON_GetObjectItem(pod, "metadata"), "annotations",
                          J("{\"kubernetes.io/config.mirror\":\"abc\"}"));
    assert_int_equal(decide(pod, NULL), KM_PODSEL_MIRROR);
    cJSON_Delete(pod);

    const char *phases[] = {"Succeeded", "Failed"};
    for (int i = 0; i < 2; i++) {
        pod = J(POD);
        set_str(pod, "status", "phase", phases[i]);
        assert_int_equal(decide(pod, NULL), KM_PODSEL_FINISHED);
        cJSON_Delete(pod);
    }

    pod = J(POD);
    set_str(pod, "metadata", "creationTimestamp", STARTED); /* at the start counts as new */
    assert_int_equal(decide(pod, NULL), KM_PODSEL_NEW);
    set_str(pod, "metadata", "creationTimestamp", "2026-11-26T11:00:01+01:00"); /* = 10:00:01Z */
    assert_int_equal(decide(pod, NULL), KM_PODSEL_NEW);
    set_str(pod, "metadata", "creationTimestamp", "2026-11-26T10:59:59+01:00"); /* = 09:59:59Z */
    assert_int_equal(decide(pod, NULL), KM_PODSEL_RESTART);
    cJSON_Delete(pod);

    pod = J(POD);
    set_str(pod, "spec", "serviceAccountName", "default");
    assert_int_equal(decide(pod, NULL), KM_PODSEL_DEFAULT_SA);
    assert_int_equal(km_podsel_pod(pod, NULL, STARTED, 1), KM_PODSEL_RESTART);
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(pod, "spec"), "serviceAccountName");
    assert_int_equal(decide(pod, NULL), KM_PODSEL_DEFAULT_SA);
    cJSON_Delete(pod);
}

static void test_token_rules(void **state)
{
    (void)state;
    /* no token volume: automount decides (pod field first, then the SA) */
    cJSON *pod =
        J("{\"metadata\":{\"creationTimestamp\":\"2026-11-26T09:00:00Z\"},"
          "\"spec\":{\"serviceAccountName\":\"app-sa\"},\"status\":{\"phase\":\"Running\"}}");
    assert_int_equal(decide(pod, NULL), KM_PODSEL_RESTART);
    assert_int_equal(decide(pod, "{\"automountServiceAccountToken\":false}"), KM_PODSEL_NO_TOKEN);
    cJSON_AddBoolToObject(cJSON_GetObjectItem(pod, "spec"), "automountServiceAccountToken", 1);
    assert_int_equal(decide(pod, "{\"automountServiceAccountToken\":false}"), KM_PODSEL_RESTART);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(pod, "spec"), "automountServiceAccountToken",
                              cJSON_CreateFalse());
    assert_int_equal(decide(pod, NULL), KM_PODSEL_NO_TOKEN);
    assert_int_equal(decide(pod, "{\"automountServiceAccountToken\":true}"), KM_PODSEL_NO_TOKEN);

    /* automount off but a projected token volume: mounted */
    cJSON_AddItemToObject(cJSON_GetObjectItem(pod, "spec"), "volumes",
                          J("[{\"name\":\"kube-api-access-x\",\"projected\":{\"sources\":["
                            "{\"configMap\":{\"name\":\"kube-root-ca.crt\"}},"
                            "{\"serviceAccountToken\":{\"path\":\"token\"}}]}}]"));
    assert_int_equal(decide(pod, NULL), KM_PODSEL_RESTART);
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(pod, "spec"), "volumes");
    /* ... or the legacy token Secret listed in the SA (any name) */
    cJSON_AddItemToObject(cJSON_GetObjectItem(pod, "spec"), "volumes",
                          J("[{\"name\":\"t\",\"secret\":{\"secretName\":\"custom-token\"}}]"));
    assert_int_equal(decide(pod, NULL), KM_PODSEL_NO_TOKEN);
    assert_int_equal(decide(pod, "{\"secrets\":[{\"name\":\"custom-token\"}]}"), KM_PODSEL_RESTART);
    /* ... a non-token secret volume does not count */
    assert_int_equal(decide(pod, "{\"secrets\":[{\"name\":\"other\"}]}"), KM_PODSEL_NO_TOKEN);
    cJSON_Delete(pod);
}

static void expect_order(const char *names, const char *spec_json, const char *want)
{
    cJSON *n = J(names), *s = spec(spec_json), *out = NULL;
    assert_int_equal(km_podsel_order_namespaces(n, s, &out), KM_OK);
    char *got = cJSON_PrintUnformatted(out);
    if (strcmp(got, want) != 0)
        fail_msg("order: got %s want %s", got, want);
    free(got);
    cJSON_Delete(out);
    cJSON_Delete(s);
    cJSON_Delete(n);
}

static void test_namespace_order(void **state)
{
    (void)state;
    const char *all = "[\"zeta\",\"default\",\"app2\",\"kube-system\",\"app1\",\"kube-public\"]";
    expect_order(all, "{}",
                 "[\"kube-system\",\"app1\",\"app2\",\"default\",\"kube-public\",\"zeta\"]");
    expect_order(all, "{\"namespaces\":[\"zeta\",\"missing\",\"app2\",\"zeta\",\"kube-system\"]}",
                 "[\"kube-system\",\"zeta\",\"app2\",\"app1\",\"default\",\"kube-public\"]");
    expect_order(all,
                 "{\"excludeNamespaces\":[\"kube-system\",\"app1\"],\"namespaces\":[\"app1\"]}",
                 "[\"app2\",\"default\",\"kube-public\",\"zeta\"]");
    expect_order(all, "{\"includeNamespaces\":[\"zeta\",\"app1\",\"kube-system\"]}",
                 "[\"kube-system\",\"app1\",\"zeta\"]");
    expect_order(all, "{\"includeNamespaces\":[\"zeta\",\"app1\"],\"namespaces\":[\"zeta\"]}",
                 "[\"zeta\",\"app1\"]");
    /* kube-system filtered out by the selector (absent from the list) is not added back */
    expect_order("[\"b\",\"a\"]", "{\"namespaces\":[\"kube-system\"]}", "[\"a\",\"b\"]");
    expect_order("[]", "{}", "[]");
}

static void expect_selector(const char *sel, const char *want)
{
    cJSON *s = J(sel);
    char *out = NULL;
    assert_int_equal(km_podsel_label_selector(s, &out, NULL), KM_OK);
    assert_string_equal(out, want);
    free(out);
    cJSON_Delete(s);
}

static void test_label_selector(void **state)
{
    (void)state;
    expect_selector("{}", "");
    expect_selector("{\"matchLabels\":{\"team\":\"a\",\"env\":\"prod\"}}", "team=a,env=prod");
    expect_selector("{\"matchLabels\":{\"a\":\"1\"},\"matchExpressions\":["
                    "{\"key\":\"t\",\"operator\":\"In\",\"values\":[\"x\",\"y\"]},"
                    "{\"key\":\"u\",\"operator\":\"NotIn\",\"values\":[\"z\"]},"
                    "{\"key\":\"e\",\"operator\":\"Exists\"},"
                    "{\"key\":\"d\",\"operator\":\"DoesNotExist\"}]}",
                    "a=1,t in (x,y),u notin (z),e,!d");
    char *out = (char *)0x1;
    km_err err;
    cJSON *bad =
        J("{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"Gt\",\"values\":[\"1\"]}]}");
    assert_int_equal(km_podsel_label_selector(bad, &out, &err), KM_EINVAL);
    assert_ptr_equal(out, (char *)0x1);
    assert_non_null(strstr(err.message, "Gt"));
    cJSON_Delete(bad);
    bad = J("{\"matchExpressions\":[{\"key\":\"t\",\"operator\":\"In\",\"values\":[]}]}");
    assert_int_equal(km_podsel_label_selector(bad, &out, &err), KM_EINVAL);
    cJSON_Delete(bad);
}

static void test_time_and_marker(void **state)
{
    (void)state;
    time_t t = 0;
    assert_int_equal(km_podsel_time("2026-11-26T10:00:00Z", &t), KM_OK);
    time_t t2 = 0;
    assert_int_equal(km_podsel_time("2026-11-26T10:00:00.123456Z", &t2), KM_OK);
    assert_true(t == t2);
    assert_int_equal(km_podsel_time("2026-11-26 10:00:00", &t2), KM_EPARSE);
    assert_int_equal(km_podsel_time("garbage", &t2), KM_EPARSE);
    assert_int_equal(km_podsel_time(NULL, &t2), KM_EPARSE);
    assert_int_equal(km_podsel_time("2026-13-26T10:00:00Z", &t2), KM_EPARSE);

    cJSON *d = J("{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{"
                 "\"kubectl.kubernetes.io/restartedAt\":\"2026-11-26T10:00:00Z\"}}}}}");
    assert_true(km_podsel_restarted_since(d, STARTED));
    assert_true(km_podsel_restarted_since(d, "2026-11-26T09:59:59Z"));
    assert_false(km_podsel_restarted_since(d, "2026-11-26T10:00:01Z"));
    cJSON_Delete(d);
    d = J("{\"spec\":{\"template\":{\"metadata\":{}}}}");
    assert_false(km_podsel_restarted_since(d, STARTED));
    cJSON_Delete(d);
}

static void test_owner(void **state)
{
    (void)state;
    cJSON *p = J("{\"metadata\":{\"ownerReferences\":[{\"kind\":\"X\",\"name\":\"a\"},"
                 "{\"kind\":\"ReplicaSet\",\"name\":\"rs\",\"controller\":true}]}}");
    assert_string_equal(cJSON_GetObjectItem(km_podsel_owner(p), "name")->valuestring, "rs");
    cJSON_Delete(p);
    p = J("{\"metadata\":{\"ownerReferences\":[{\"kind\":\"Job\",\"name\":\"j\"}]}}");
    assert_string_equal(cJSON_GetObjectItem(km_podsel_owner(p), "name")->valuestring, "j");
    cJSON_Delete(p);
    p = J("{\"metadata\":{}}");
    assert_null(km_podsel_owner(p));
    cJSON_Delete(p);
}

static int ready(const char *kind, const char *json)
{
    cJSON *o = J(json);
    int r = km_podsel_workload_ready(kind, o);
    cJSON_Delete(o);
    return r;
}

static void test_ready(void **state)
{
    (void)state;
    assert_true(ready("Deployment", "{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},"
                                    "\"status\":{\"observedGeneration\":2,\"replicas\":2,"
                                    "\"updatedReplicas\":2,\"availableReplicas\":2}}"));
    /* not yet observed */
    assert_false(ready("Deployment", "{\"metadata\":{\"generation\":3},\"spec\":{\"replicas\":2},"
                                     "\"status\":{\"observedGeneration\":2,\"replicas\":2,"
                                     "\"updatedReplicas\":2,\"availableReplicas\":2}}"));
    /* old replica still there */
    assert_false(ready("Deployment", "{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},"
                                     "\"status\":{\"observedGeneration\":2,\"replicas\":3,"
                                     "\"updatedReplicas\":2,\"availableReplicas\":2}}"));
    /* new replica not available (node down) */
    assert_false(ready("Deployment", "{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":1},"
                                     "\"status\":{\"observedGeneration\":2,\"replicas\":1,"
                                     "\"updatedReplicas\":1,\"availableReplicas\":0}}"));
    /* replicas defaults to 1 */
    assert_true(ready("Deployment", "{\"metadata\":{\"generation\":1},\"status\":{"
                                    "\"observedGeneration\":1,\"replicas\":1,"
                                    "\"updatedReplicas\":1,\"availableReplicas\":1}}"));
    assert_true(ready("StatefulSet", "{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},"
                                     "\"status\":{\"observedGeneration\":2,\"readyReplicas\":2,"
                                     "\"updateRevision\":\"r2\",\"currentRevision\":\"r2\"}}"));
    assert_false(ready("StatefulSet", "{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},"
                                      "\"status\":{\"observedGeneration\":2,\"readyReplicas\":2,"
                                      "\"updatedReplicas\":1,\"updateRevision\":\"r2\","
                                      "\"currentRevision\":\"r1\"}}"));
    assert_false(ready("StatefulSet", "{\"metadata\":{\"generation\":2},\"spec\":{\"replicas\":2},"
                                      "\"status\":{\"observedGeneration\":2,\"readyReplicas\":1,"
                                      "\"updateRevision\":\"r2\",\"currentRevision\":\"r2\"}}"));
    assert_true(ready("DaemonSet", "{\"metadata\":{\"generation\":2},\"status\":{"
                                   "\"observedGeneration\":2,\"desiredNumberScheduled\":3,"
                                   "\"updatedNumberScheduled\":3,\"numberAvailable\":3}}"));
    assert_false(ready("DaemonSet", "{\"metadata\":{\"generation\":2},\"status\":{"
                                    "\"observedGeneration\":2,\"desiredNumberScheduled\":3,"
                                    "\"updatedNumberScheduled\":3,\"numberAvailable\":2}}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pod_selected),   cmocka_unit_test(test_each_skip_rule_alone),
        cmocka_unit_test(test_token_rules),    cmocka_unit_test(test_namespace_order),
        cmocka_unit_test(test_label_selector), cmocka_unit_test(test_time_and_marker),
        cmocka_unit_test(test_owner),          cmocka_unit_test(test_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
