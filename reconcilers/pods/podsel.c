/* podsel.c — pure selection and ordering rules of the pod restart step (see podsel.h). */
#include "reconcilers/pods/podsel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/buf.h"
#include "operator/base/json.h"
#include "operator/base/num.h"
#include "reconcilers/pods/labels.h"

const char *km_podsel_reason_str(km_podsel_reason r)
{
    switch (r) {
    case KM_PODSEL_RESTART:
        return "restart";
    case KM_PODSEL_DEFAULT_SA:
        return "defaultServiceAccount";
    case KM_PODSEL_NO_TOKEN:
        return "noToken";
    case KM_PODSEL_MIRROR:
        return "mirror";
    case KM_PODSEL_FINISHED:
        return "finished";
    case KM_PODSEL_NEW:
        return "createdAfterRebuild";
    case KM_PODSEL_DELETING:
        return "deleting";
    }
    return "unknown";
}

static int str_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The pod's volume called name, or NULL. */
static const cJSON *find_volume(const cJSON *volumes, const char *name)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, volumes)
    {
        const char *n = KM_JSON_STR(v, "name");
        if (n && name && strcmp(n, name) == 0)
            return v;
    }
    return NULL;
}

/* Non-zero for a mount path naming the token directory (a trailing '/' allowed). */
static int is_sa_mount_path(const char *p)
{
    size_t n = strlen(KM_SA_MOUNT_PATH);
    return p && strncmp(p, KM_SA_MOUNT_PATH, n) == 0 && (p[n] == '\0' || strcmp(p + n, "/") == 0);
}

/* Looks at the volumeMounts of one container list: 1 when one of them puts a token at the SA
 * path; *seen is set when any volumeMount exists. */
static int mounts_token_in(const cJSON *containers, const cJSON *volumes, int *seen)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, containers)
    {
        const cJSON *vm;
        cJSON_ArrayForEach(vm, KM_JSON_AT(c, "volumeMounts"))
        {
            *seen = 1;
            if (!is_sa_mount_path(KM_JSON_STR(vm, "mountPath")))
                continue;
            const cJSON *v = find_volume(volumes, KM_JSON_STR(vm, "name"));
            /* a Secret (legacy token) or a volume we cannot see: a token; an emptyDir /
             * configMap / projected volume without a token source shadows it */
            if (!v || KM_JSON_AT(v, "secret"))
                return 1;
        }
    }
    return 0;
}

int km_podsel_token_from_spec(const cJSON *pod)
{
    const cJSON *spec = KM_JSON_AT(pod, "spec");
    const cJSON *volumes = KM_JSON_AT(spec, "volumes");
    const char *sa_name = KM_JSON_STR(spec, "serviceAccountName");
    int seen = cJSON_GetArraySize(volumes) > 0;
    char prefix[300];
    prefix[0] = '\0';
    if (sa_name && sa_name[0])
        snprintf(prefix, sizeof(prefix), "%.250s-token-", sa_name);
    const cJSON *v;
    cJSON_ArrayForEach(v, volumes)
    {
        const cJSON *src;
        cJSON_ArrayForEach(src, KM_JSON_AT(v, "projected", "sources"))
        {
            if (KM_JSON_AT(src, "serviceAccountToken"))
                return 1;
        }
        const char *secret = KM_JSON_STR(v, "secret", "secretName");
        if (secret && prefix[0] && str_has_prefix(secret, prefix))
            return 1;
    }
    if (mounts_token_in(KM_JSON_AT(spec, "containers"), volumes, &seen) ||
        mounts_token_in(KM_JSON_AT(spec, "initContainers"), volumes, &seen))
        return 1;
    const cJSON *am = KM_JSON_AT(spec, "automountServiceAccountToken");
    if (cJSON_IsFalse(am) || seen)
        return 0;
    return cJSON_IsTrue(am) ? 1 : -1;
}

int km_podsel_mounts_token(const cJSON *pod, const cJSON *sa)
{
    int t = km_podsel_token_from_spec(pod);
    if (t >= 0)
        return t;
    return KM_JSON_BOOL(sa, 1, "automountServiceAccountToken");
}

int km_podsel_needs_sa(const cJSON *pod, time_t rebuilt_at, int include_default_sa)
{
    return km_podsel_token_from_spec(pod) < 0 &&
           km_podsel_pod(pod, NULL, rebuilt_at, include_default_sa) == KM_PODSEL_RESTART;
}

km_podsel_reason km_podsel_pod(const cJSON *pod, const cJSON *sa, time_t rebuilt_at,
                               int include_default_sa)
{
    const char *del = KM_JSON_STR(pod, "metadata", "deletionTimestamp");
    if (del && del[0])
        return KM_PODSEL_DELETING;
    if (KM_JSON_AT(pod, "metadata", "annotations", KM_MIRROR_ANNOTATION))
        return KM_PODSEL_MIRROR;
    const char *phase = KM_JSON_STR(pod, "status", "phase");
    if (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
        return KM_PODSEL_FINISHED;
    time_t created;
    if (rebuilt_at > 0 &&
        km_clock_parse(KM_JSON_STR(pod, "metadata", "creationTimestamp"), &created) == KM_OK &&
        created >= rebuilt_at)
        return KM_PODSEL_NEW;
    const char *sa_name = KM_JSON_STR(pod, "spec", "serviceAccountName");
    if (!include_default_sa && (!sa_name || !sa_name[0] || strcmp(sa_name, "default") == 0))
        return KM_PODSEL_DEFAULT_SA;
    if (!km_podsel_mounts_token(pod, sa))
        return KM_PODSEL_NO_TOKEN;
    return KM_PODSEL_RESTART;
}

const cJSON *km_podsel_controller(const cJSON *obj)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, KM_JSON_AT(obj, "metadata", "ownerReferences"))
    {
        if (KM_JSON_BOOL(r, 0, "controller"))
            return r;
    }
    return NULL;
}

/* Non-zero when ref names kind in group apps (or extensions, with old_group) by name and uid. */
static int ref_is(const cJSON *ref, const char *kind, int old_group)
{
    const char *k = KM_JSON_STR(ref, "kind"), *api = KM_JSON_STR(ref, "apiVersion");
    const char *name = KM_JSON_STR(ref, "name"), *uid = KM_JSON_STR(ref, "uid");
    return k && api && name && name[0] && uid && uid[0] && strcmp(k, kind) == 0 &&
           (str_has_prefix(api, "apps/") || (old_group && str_has_prefix(api, "extensions/")));
}

km_podsel_route km_podsel_route_of(const cJSON *obj)
{
    const cJSON *c = km_podsel_controller(obj);
    if (!c)
        return KM_ROUTE_OWNERLESS;
    if (ref_is(c, "ReplicaSet", 1))
        return KM_ROUTE_REPLICASET;
    if (ref_is(c, "StatefulSet", 0))
        return KM_ROUTE_STATEFULSET;
    if (ref_is(c, "DaemonSet", 1))
        return KM_ROUTE_DAEMONSET;
    return KM_ROUTE_EVICT;
}

const cJSON *km_podsel_rs_deployment(const cJSON *rs)
{
    const cJSON *c = km_podsel_controller(rs);
    return ref_is(c, "Deployment", 1) ? c : NULL;
}

static int ns_allowed(const char *ns, const cJSON *spec)
{
    const cJSON *inc = KM_JSON_AT(spec, "includeNamespaces");
    if (km_json_array_has_str(KM_JSON_AT(spec, "excludeNamespaces"), ns))
        return 0;
    if (cJSON_GetArraySize(inc) > 0 && !km_json_array_has_str(inc, ns))
        return 0;
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static km_status push(cJSON *out, const char *ns)
{
    cJSON *s = cJSON_CreateString(ns);
    if (!s || !cJSON_AddItemToArray(out, s)) {
        cJSON_Delete(s);
        return KM_ENOMEM;
    }
    return KM_OK;
}

km_status km_podsel_order_namespaces(const cJSON *names, const cJSON *pods_spec, cJSON **out)
{
    km_status st = KM_ENOMEM;
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, names)
    {
        n++;
    }
    const char **rest = calloc(n ? n : 1, sizeof(*rest));
    cJSON *res = cJSON_CreateArray();
    if (!rest || !res)
        goto out;
    if (km_json_array_has_str(names, "kube-system") && ns_allowed("kube-system", pods_spec) &&
        push(res, "kube-system") != KM_OK)
        goto out;
    cJSON_ArrayForEach(it, KM_JSON_AT(pods_spec, "namespaces"))
    {
        if (!cJSON_IsString(it) || !km_json_array_has_str(names, it->valuestring) ||
            !ns_allowed(it->valuestring, pods_spec) || km_json_array_has_str(res, it->valuestring))
            continue;
        if (push(res, it->valuestring) != KM_OK)
            goto out;
    }
    size_t nr = 0;
    cJSON_ArrayForEach(it, names)
    {
        if (cJSON_IsString(it) && ns_allowed(it->valuestring, pods_spec) &&
            !km_json_array_has_str(res, it->valuestring))
            rest[nr++] = it->valuestring;
    }
    qsort(rest, nr, sizeof(*rest), cmp_str);
    for (size_t i = 0; i < nr; i++) {
        if (i > 0 && strcmp(rest[i], rest[i - 1]) == 0)
            continue;
        if (push(res, rest[i]) != KM_OK)
            goto out;
    }
    *out = res;
    res = NULL;
    st = KM_OK;
out:
    cJSON_Delete(res);
    free(rest);
    return st;
}

/* Appends one matchExpressions item to b as selector syntax ("key", "!key", "key in (a,b)").
 * Failure: KM_EINVAL naming the item (b may hold part of it), or the buffer's error. */
static km_status append_expression(km_buf *b, const cJSON *it, km_err *err)
{
    const char *key = KM_JSON_STR(it, "key");
    const char *op = KM_JSON_STR(it, "operator");
    const cJSON *vals = KM_JSON_AT(it, "values");
    if (!key || !op)
        return km_err_set(err, KM_EINVAL,
                          "namespaceSelector.matchExpressions: key and operator are required");
    if (!km_labels_key_ok(key))
        return km_err_set(err, KM_EINVAL,
                          "namespaceSelector.matchExpressions[%.100s]: not a label key", key);
    const char *sep = b->len ? "," : "";
    if (strcmp(op, "Exists") == 0)
        return km_buf_printf(b, "%s%s", sep, key);
    if (strcmp(op, "DoesNotExist") == 0)
        return km_buf_printf(b, "%s!%s", sep, key);
    if (strcmp(op, "In") != 0 && strcmp(op, "NotIn") != 0)
        return km_err_set(err, KM_EINVAL,
                          "namespaceSelector.matchExpressions[%s]: unknown operator %s", key, op);
    if (cJSON_GetArraySize(vals) == 0)
        return km_err_set(err, KM_EINVAL, "namespaceSelector.matchExpressions[%s]: %s needs values",
                          key, op);
    km_status st = km_buf_printf(b, "%s%s %s (", sep, key, op[0] == 'I' ? "in" : "notin");
    const cJSON *v;
    int first = 1;
    cJSON_ArrayForEach(v, vals)
    {
        if (st != KM_OK)
            return st;
        if (!cJSON_IsString(v) || !km_labels_value_ok(v->valuestring))
            return km_err_set(
                err, KM_EINVAL,
                "namespaceSelector.matchExpressions[%s]: a value that is not a label value", key);
        st = km_buf_printf(b, "%s%s", first ? "" : ",", v->valuestring);
        first = 0;
    }
    return st == KM_OK ? km_buf_puts(b, ")") : st;
}

km_status km_podsel_label_selector(const cJSON *selector, char **out, km_err *err)
{
    km_status st = KM_OK;
    km_buf b;
    km_buf_init(&b, 64 * 1024);
    const cJSON *it;
    cJSON_ArrayForEach(it, KM_JSON_AT(selector, "matchLabels"))
    {
        if (!cJSON_IsString(it)) {
            st = km_err_set(err, KM_EINVAL, "namespaceSelector.matchLabels[%s]: not a string",
                            it->string ? it->string : "");
            goto out;
        }
        if (!km_labels_key_ok(it->string) || !km_labels_value_ok(it->valuestring)) {
            st = km_err_set(err, KM_EINVAL, "namespaceSelector.matchLabels[%.100s]: not a label %s",
                            it->string, km_labels_key_ok(it->string) ? "value" : "key");
            goto out;
        }
        if ((st = km_buf_printf(&b, "%s%s=%s", b.len ? "," : "", it->string, it->valuestring)))
            goto out;
    }
    cJSON_ArrayForEach(it, KM_JSON_AT(selector, "matchExpressions"))
    {
        if ((st = append_expression(&b, it, err)) != KM_OK)
            goto out;
    }
    char *s = km_buf_take(&b);
    if (!s) {
        st = KM_ENOMEM;
        goto out;
    }
    *out = s;
out:
    if (st == KM_ENOMEM || st == KM_ETOOBIG)
        km_err_set(err, st, "namespaceSelector: %s", km_strerror(st));
    km_buf_cleanup(&b);
    return st;
}

time_t km_podsel_marker(const cJSON *workload)
{
    static const char *const keys[] = {KM_RESTARTED_AT_ANNOTATION,
                                       KM_KUBEMEND_RESTARTED_AT_ANNOTATION};
    time_t best = 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        time_t t;
        const char *v =
            KM_JSON_STR(workload, "spec", "template", "metadata", "annotations", keys[i]);
        if (v && km_clock_parse(v, &t) == KM_OK && t > best)
            best = t;
    }
    return best;
}

int km_podsel_restarted_since(const cJSON *workload, time_t rebuilt_at)
{
    time_t m = km_podsel_marker(workload);
    return rebuilt_at > 0 && m > 0 && m >= rebuilt_at;
}

time_t km_podsel_marker_time(time_t now, time_t rebuilt_at)
{
    return now < rebuilt_at ? rebuilt_at : now;
}

static long num(const cJSON *o, const char *a, const char *b, long dflt)
{
    return KM_JSON_LONG(o, dflt, a, b);
}

int km_podsel_workload_ready(const char *kind, const cJSON *obj)
{
    long gen = num(obj, "metadata", "generation", 0);
    long obs = num(obj, "status", "observedGeneration", 0);
    if (!kind)
        return 1;
    if (strcmp(kind, "Deployment") == 0) {
        long want = num(obj, "spec", "replicas", 1);
        return obs >= gen && num(obj, "status", "updatedReplicas", 0) == want &&
               num(obj, "status", "availableReplicas", 0) == want &&
               num(obj, "status", "replicas", 0) == want;
    }
    if (strcmp(kind, "StatefulSet") == 0) {
        long want = num(obj, "spec", "replicas", 1);
        const char *ur = KM_JSON_STR(obj, "status", "updateRevision");
        const char *cr = KM_JSON_STR(obj, "status", "currentRevision");
        int rolled =
            (ur && cr && strcmp(ur, cr) == 0) || num(obj, "status", "updatedReplicas", 0) == want;
        return obs >= gen && rolled && num(obj, "status", "readyReplicas", 0) == want;
    }
    if (strcmp(kind, "DaemonSet") == 0) {
        long want = num(obj, "status", "desiredNumberScheduled", 0);
        return obs >= gen && num(obj, "status", "updatedNumberScheduled", 0) == want &&
               num(obj, "status", "numberAvailable", 0) == want;
    }
    return 1;
}
