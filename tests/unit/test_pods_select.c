/* test_pods_select.c — the pure rules of the pod restart step: pod selection (each skip rule
 * alone; stale = created before the PKI rebuild), what proves an owner (controller references,
 * the decoy ReplicaSet), namespace ordering and filtering, label selectors, the restart marker
 * at/after the rebuild, readiness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/clock.h"
#include "reconcilers/pods/podsel.h"

#define REBUILT "2026-11-26T10:00:00Z"

/* t as seconds (a test's own constant: fails the test when it does not parse). */
static time_t T(const char *t)
{
    time_t v = 0;
    if (km_clock_parse(t, &v) != KM_OK)
        fail_msg("bad time in test: %s", t);
    return v;
}

static cJSON *J(const char *s)
{
    cJSON *o = cJSON_Parse(s);
    if (!o)
        fail_msg("bad JSON in test: %s", s);
    return o;
}

/* A pod that must be restarted: SA app-sa, created before the rebuild, Running, the legacy token
 * volume ServiceAccount admission adds (Secret volume + mount at the token path). */
static const char *POD =
    "{\"metadata\":{\"name\":\"p\",\"namespace\":\"app\",\"creationTimestamp\":"
    "\"2026-11-26T09:00:00Z\"},\"spec\":{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":"
    "\"app-sa-token-abcde\",\"secret\":{\"secretName\":\"app-sa-token-abcde\"}}],"
    "\"containers\":[{\"name\":\"c\",\"volumeMounts\":[{\"name\":\"app-sa-token-abcde\","
    "\"mountPath\":\"/var/run/secrets/kubernetes.io/serviceaccount\"}]}]},"
    "\"status\":{\"phase\":\"Running\"}}";

static km_podsel_reason decide(cJSON *pod, const char *sa)
{
    cJSON *s = sa ? J(sa) : NULL;
    km_podsel_reason r = km_podsel_pod(pod, s, T(REBUILT), 0);
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
    /* the spec shows the token: the ServiceAccount is neither needed nor consulted */
    assert_false(km_podsel_needs_sa(pod, T(REBUILT), 0));
    assert_int_equal(decide(pod, "{\"automountServiceAccountToken\":false}"), KM_PODSEL_RESTART);
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
    /* stale = created before the rebuild; the rebuild's own second counts as after it (the new
     * control plane starts seconds after its CA was made, the old one is down by then) */
    set_str(pod, "metadata", "creationTimestamp", REBUILT);
    assert_int_equal(decide(pod, NULL), KM_PODSEL_NEW);
    set_str(pod, "metadata", "creationTimestamp", "2026-11-26T11:00:01+01:00"); /* = 10:00:01Z */
    assert_int_equal(decide(pod, NULL), KM_PODSEL_NEW);
    set_str(pod, "metadata", "creationTimestamp", "2026-11-26T10:59:59+01:00"); /* = 09:59:59Z */
    assert_int_equal(decide(pod, NULL), KM_PODSEL_RESTART);
    /* days before (what the rebuild's old CA era looks like) */
    set_str(pod, "metadata", "creationTimestamp", "2026-10-01T00:00:00Z");
    assert_int_equal(decide(pod, NULL), KM_PODSEL_RESTART);
    /* no usable creationTimestamp: never taken for new (a stale pod must not be missed) */
    set_str(pod, "metadata", "creationTimestamp", "yesterday");
    assert_int_equal(decide(pod, NULL), KM_PODSEL_RESTART);
    /* an unknown rebuild time makes no pod new (the step refuses to run without one) */
    set_str(pod, "metadata", "creationTimestamp", "2026-11-27T00:00:00Z");
    assert_int_equal(km_podsel_pod(pod, NULL, 0, 0), KM_PODSEL_RESTART);
    assert_int_equal(km_podsel_pod(pod, NULL, T(REBUILT), 0), KM_PODSEL_NEW);
    assert_string_equal(km_podsel_reason_str(KM_PODSEL_NEW), "createdAfterRebuild");
    cJSON_Delete(pod);

    pod = J(POD);
    set_str(pod, "spec", "serviceAccountName", "default");
    assert_int_equal(decide(pod, NULL), KM_PODSEL_DEFAULT_SA);
    assert_int_equal(km_podsel_pod(pod, NULL, T(REBUILT), 1), KM_PODSEL_RESTART);
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(pod, "spec"), "serviceAccountName");
    assert_int_equal(decide(pod, NULL), KM_PODSEL_DEFAULT_SA);
    cJSON_Delete(pod);

    /* no token: the same pod as admitted with automount off (its other volumes, no token) */
    pod = J(POD);
    cJSON *spec = cJSON_GetObjectItem(pod, "spec");
    cJSON_ReplaceItemInObject(spec, "volumes",
                              J("[{\"name\":\"cfg\",\"configMap\":{\"name\":\"app\"}}]"));
    cJSON_ReplaceItemInObject(spec, "containers",
                              J("[{\"name\":\"c\",\"volumeMounts\":[{\"name\":\"cfg\","
                                "\"mountPath\":\"/etc/app\"}]}]"));
    assert_int_equal(decide(pod, NULL), KM_PODSEL_NO_TOKEN);
    assert_false(km_podsel_needs_sa(pod, T(REBUILT), 0));
    cJSON_Delete(pod);
}

/* The pod of POD with spec replaced by spec_json. */
static cJSON *pod_with_spec(const char *spec_json)
{
    cJSON *pod = J(POD);
    cJSON_ReplaceItemInObject(pod, "spec", J(spec_json));
    return pod;
}

static int token(const char *spec_json)
{
    cJSON *pod = pod_with_spec(spec_json);
    int t = km_podsel_token_from_spec(pod);
    cJSON_Delete(pod);
    return t;
}

#define SA_PATH "\"/var/run/secrets/kubernetes.io/serviceaccount\""

static void test_token_rules(void **state)
{
    (void)state;
    /* the projected volume admission adds (>= 1.21), mounted or not */
    assert_int_equal(
        token("{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":\"kube-api-"
              "access-x\",\"projected\":{\"sources\":[{\"configMap\":{\"name\":"
              "\"kube-root-ca.crt\"}},{\"serviceAccountToken\":{\"path\":\"token\"}}]}}]}"),
        1);
    /* ... even with automount off on the pod (a hand-written token projection) */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"automountServiceAccountToken\":"
                           "false,\"volumes\":[{\"name\":\"t\",\"projected\":{\"sources\":[{"
                           "\"serviceAccountToken\":{\"path\":\"token\"}}]}}]}"),
                     1);
    /* the legacy Secret volume "<sa>-token-*" alone (containers stripped) */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":\"v\","
                           "\"secret\":{\"secretName\":\"app-sa-token-x1y2z\"}}]}"),
                     1);
    /* another SA's token Secret name is just a Secret */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":\"v\","
                           "\"secret\":{\"secretName\":\"other-token-x1y2z\"}}]}"),
                     0);
    /* a custom-named Secret mounted at the token path, by an initContainer only */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":\"v\","
                           "\"secret\":{\"secretName\":\"custom\"}}],\"containers\":[{\"name\":"
                           "\"c\"}],\"initContainers\":[{\"name\":\"i\",\"volumeMounts\":[{"
                           "\"name\":\"v\",\"mountPath\":" SA_PATH "}]}]}"),
                     1);
    /* ... the same Secret mounted elsewhere is no token */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":\"v\","
                           "\"secret\":{\"secretName\":\"custom\"}}],\"containers\":[{\"name\":"
                           "\"c\",\"volumeMounts\":[{\"name\":\"v\",\"mountPath\":\"/etc/x\"}]}]}"),
                     0);
    /* a mount at the token path (trailing slash) of a volume the spec does not list */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"containers\":[{\"name\":\"c\","
                           "\"volumeMounts\":[{\"name\":\"gone\",\"mountPath\":"
                           "\"/var/run/secrets/kubernetes.io/serviceaccount/\"}]}]}"),
                     1);
    /* an emptyDir over the token path shadows the token (admission then adds none) */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":\"e\","
                           "\"emptyDir\":{}}],\"containers\":[{\"name\":\"c\",\"volumeMounts\":[{"
                           "\"name\":\"e\",\"mountPath\":" SA_PATH "}]}]}"),
                     0);
    /* a path that only starts like the token path */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"containers\":[{\"name\":\"c\","
                           "\"volumeMounts\":[{\"name\":\"gone\",\"mountPath\":"
                           "\"/var/run/secrets/kubernetes.io/serviceaccountx\"}]}]}"),
                     0);
    /* automount off on the pod: no */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"automountServiceAccountToken\":"
                           "false}"),
                     0);
    /* volumes but no token: admission decided "no" (automount off on the SA) */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":\"c\","
                           "\"configMap\":{\"name\":\"x\"}}]}"),
                     0);
    /* no volume information at all: the pod field true says yes, else the SA decides */
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"automountServiceAccountToken\":"
                           "true}"),
                     1);
    assert_int_equal(token("{\"serviceAccountName\":\"app-sa\",\"containers\":[{\"name\":\"c\"}]}"),
                     -1);
}

/* A spec that cannot tell: the ServiceAccount decides, fetched only when nothing else does. */
static void test_token_from_sa(void **state)
{
    (void)state;
    /* the ambiguous pod through km_podsel_pod: the SA's automount (unknown SA: mounted) */
    cJSON *pod = pod_with_spec("{\"serviceAccountName\":\"app-sa\"}");
    assert_true(km_podsel_needs_sa(pod, T(REBUILT), 0));
    assert_int_equal(decide(pod, NULL), KM_PODSEL_RESTART);
    assert_int_equal(decide(pod, "{}"), KM_PODSEL_RESTART);
    assert_int_equal(decide(pod, "{\"automountServiceAccountToken\":true}"), KM_PODSEL_RESTART);
    assert_int_equal(decide(pod, "{\"automountServiceAccountToken\":false}"), KM_PODSEL_NO_TOKEN);
    /* ... but not when another rule already decides (no SA fetched for skipped pods) */
    assert_false(km_podsel_needs_sa(pod, T("2026-11-26T08:00:00Z"), 0)); /* after the rebuild */
    set_str(pod, "spec", "serviceAccountName", "default");
    assert_false(km_podsel_needs_sa(pod, T(REBUILT), 0));
    assert_true(km_podsel_needs_sa(pod, T(REBUILT), 1));
    cJSON_Delete(pod);
    /* a decided spec ignores the SA either way */
    pod = pod_with_spec("{\"serviceAccountName\":\"app-sa\",\"volumes\":[{\"name\":\"c\","
                        "\"configMap\":{\"name\":\"x\"}}]}");
    assert_int_equal(decide(pod, "{\"automountServiceAccountToken\":true}"), KM_PODSEL_NO_TOKEN);
    cJSON_Delete(pod);
}

/* What proves an owner: the controller reference only (kind, API group, name and uid). */
static void test_controller_routes(void **state)
{
    (void)state;
    struct {
        const char *refs;
        km_podsel_route want;
    } cases[] = {
        {"[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":\"rs\",\"uid\":\"u1\","
         "\"controller\":true}]",
         KM_ROUTE_REPLICASET},
        {"[{\"apiVersion\":\"extensions/v1beta1\",\"kind\":\"ReplicaSet\",\"name\":\"rs\","
         "\"uid\":\"u1\",\"controller\":true}]",
         KM_ROUTE_REPLICASET},
        {"[{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"name\":\"db\",\"uid\":\"u2\","
         "\"controller\":true}]",
         KM_ROUTE_STATEFULSET},
        {"[{\"apiVersion\":\"apps/v1\",\"kind\":\"DaemonSet\",\"name\":\"ds\",\"uid\":\"u3\","
         "\"controller\":true}]",
         KM_ROUTE_DAEMONSET},
        {"[{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"name\":\"j\",\"uid\":\"u4\","
         "\"controller\":true}]",
         KM_ROUTE_EVICT},
        /* a ReplicaSet of another API group is somebody else's kind: evicted, not resolved */
        {"[{\"apiVersion\":\"example.com/v1\",\"kind\":\"ReplicaSet\",\"name\":\"rs\","
         "\"uid\":\"u5\",\"controller\":true}]",
         KM_ROUTE_EVICT},
        /* a reference without controller: true proves nobody recreates the pod */
        {"[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":\"rs\",\"uid\":\"u1\"}]",
         KM_ROUTE_OWNERLESS},
        /* the controller among several references */
        {"[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"x\",\"uid\":\"u6\"},"
         "{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"name\":\"db\",\"uid\":\"u2\","
         "\"controller\":true}]",
         KM_ROUTE_STATEFULSET},
        /* a controller reference without a uid proves nothing to restart */
        {"[{\"apiVersion\":\"apps/v1\",\"kind\":\"DaemonSet\",\"name\":\"ds\","
         "\"controller\":true}]",
         KM_ROUTE_EVICT},
        {"[]", KM_ROUTE_OWNERLESS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *p = J("{\"metadata\":{}}");
        cJSON_AddItemToObject(cJSON_GetObjectItem(p, "metadata"), "ownerReferences",
                              J(cases[i].refs));
        if (km_podsel_route_of(p) != cases[i].want)
            fail_msg("case %zu: route %d, want %d", i, km_podsel_route_of(p), cases[i].want);
        cJSON_Delete(p);
    }
    cJSON *p = J("{\"metadata\":{}}");
    assert_int_equal(km_podsel_route_of(p), KM_ROUTE_OWNERLESS);
    assert_null(km_podsel_controller(p));
    cJSON_Delete(p);
}

/* The decoy: a standalone ReplicaSet named like a Deployment's (decoy-5d8f7c9b4 next to
 * Deployment decoy, its pods labelled pod-template-hash 5d8f7c9b4) is no Deployment's: only a
 * ReplicaSet's controller reference of kind Deployment proves one. */
static void test_decoy_replicaset(void **state)
{
    (void)state;
    cJSON *decoy = J("{\"metadata\":{\"name\":\"decoy-5d8f7c9b4\",\"uid\":\"rs-1\",\"labels\":"
                     "{\"pod-template-hash\":\"5d8f7c9b4\"}},\"spec\":{\"template\":{\"metadata\":"
                     "{\"labels\":{\"pod-template-hash\":\"5d8f7c9b4\"}}}}}");
    assert_null(km_podsel_rs_deployment(decoy));
    cJSON_Delete(decoy);
    /* a non-controller reference to the Deployment does not make it the owner either */
    cJSON *rs = J("{\"metadata\":{\"name\":\"decoy-5d8f7c9b4\",\"ownerReferences\":[{"
                  "\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"name\":\"decoy\","
                  "\"uid\":\"d-1\"}]}}");
    assert_null(km_podsel_rs_deployment(rs));
    cJSON_Delete(rs);
    /* the Deployment's own ReplicaSet: name and uid of the Deployment, whatever the RS's name */
    rs = J("{\"metadata\":{\"name\":\"anything\",\"ownerReferences\":[{\"apiVersion\":"
           "\"apps/v1\",\"kind\":\"Deployment\",\"name\":\"web\",\"uid\":\"d-2\","
           "\"controller\":true}]}}");
    const cJSON *d = km_podsel_rs_deployment(rs);
    assert_non_null(d);
    assert_string_equal(cJSON_GetObjectItem(d, "name")->valuestring, "web");
    assert_string_equal(cJSON_GetObjectItem(d, "uid")->valuestring, "d-2");
    cJSON_Delete(rs);
    /* a ReplicaSet controlled by something else (e.g. an Argo Rollout): standalone for us */
    rs = J("{\"metadata\":{\"ownerReferences\":[{\"apiVersion\":\"argoproj.io/v1alpha1\","
           "\"kind\":\"Rollout\",\"name\":\"web\",\"uid\":\"r-1\",\"controller\":true}]}}");
    assert_null(km_podsel_rs_deployment(rs));
    cJSON_Delete(rs);
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

static void test_restart_marker(void **state)
{
    (void)state;
    cJSON *d = J("{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{"
                 "\"kubectl.kubernetes.io/restartedAt\":\"2026-11-26T10:00:00Z\"}}}}}");
    /* at or after the rebuild: done */
    assert_true(km_podsel_restarted_since(d, T(REBUILT)));
    assert_true(km_podsel_restarted_since(d, T("2026-11-26T09:59:59Z")));
    /* before it: a restart from before the disaster does not count */
    assert_false(km_podsel_restarted_since(d, T("2026-11-26T10:00:01Z")));
    assert_false(km_podsel_restarted_since(d, 0));
    cJSON_Delete(d);
    d = J("{\"spec\":{\"template\":{\"metadata\":{}}}}");
    assert_false(km_podsel_restarted_since(d, T(REBUILT)));
    assert_int_equal(km_podsel_marker(d), 0);
    cJSON_Delete(d);
    /* kubectl writes local time with an offset; kubemend.io/restartedAt counts too; the later
     * of the two decides; an unparsable one is ignored */
    d = J("{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{"
          "\"kubectl.kubernetes.io/restartedAt\":\"2026-11-26T11:30:00+01:00\"}}}}}");
    assert_int_equal(km_podsel_marker(d), T("2026-11-26T10:30:00Z"));
    assert_true(km_podsel_restarted_since(d, T(REBUILT)));
    cJSON_Delete(d);
    d = J("{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{"
          "\"kubectl.kubernetes.io/restartedAt\":\"2026-11-01T00:00:00Z\","
          "\"kubemend.io/restartedAt\":\"2026-11-26T10:00:05Z\"}}}}}");
    assert_int_equal(km_podsel_marker(d), T("2026-11-26T10:00:05Z"));
    assert_true(km_podsel_restarted_since(d, T(REBUILT)));
    cJSON_Delete(d);
    d = J("{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{"
          "\"kubectl.kubernetes.io/restartedAt\":\"soon\","
          "\"kubemend.io/restartedAt\":\"2026-11-01T00:00:00Z\"}}}}}");
    assert_false(km_podsel_restarted_since(d, T(REBUILT)));
    cJSON_Delete(d);
    /* the marker written: now, never before the rebuild (a clock behind the control plane) */
    assert_int_equal(km_podsel_marker_time(T(REBUILT) + 60, T(REBUILT)), T(REBUILT) + 60);
    assert_int_equal(km_podsel_marker_time(T(REBUILT) - 5, T(REBUILT)), T(REBUILT));
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
        cmocka_unit_test(test_pod_selected),     cmocka_unit_test(test_each_skip_rule_alone),
        cmocka_unit_test(test_token_rules),      cmocka_unit_test(test_token_from_sa),
        cmocka_unit_test(test_namespace_order),  cmocka_unit_test(test_label_selector),
        cmocka_unit_test(test_restart_marker),   cmocka_unit_test(test_controller_routes),
        cmocka_unit_test(test_decoy_replicaset), cmocka_unit_test(test_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
