/* snapshot.c — the key snapshot ConfigMap and its operator runnable (see snapshot.h). */
#include "reconcilers/bridge/snapshot.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "operator/cmd/manager.h"
#include "reconcilers/bridge/cluster.h"

#define EXTAUTH_PATH "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
#define PERIOD_S 600.0

/* Appends the keys of text (a JWKS) to out whose kid is not yet there. */
static void merge_keys(cJSON *out, const char *text)
{
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(doc, "keys"))
    {
        const char *kid = KM_JSON_STR(k, "kid");
        int seen = !cJSON_IsObject(k);
        const cJSON *o;
        cJSON_ArrayForEach(o, out) seen |=
            kid && KM_JSON_STR(o, "kid") && strcmp(KM_JSON_STR(o, "kid"), kid) == 0;
        if (!seen && cJSON_GetArraySize(out) < KM_BRIDGE_SNAPSHOT_MAX_KEYS)
            cJSON_AddItemToArray(out, cJSON_Duplicate(k, 1));
    }
    cJSON_Delete(doc);
}

char *km_bridge_snapshot_merge(const char *current, const char *previous)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *keys = doc ? cJSON_AddArrayToObject(doc, "keys") : NULL;
    char *out = NULL;
    if (keys) {
        merge_keys(keys, current);
        merge_keys(keys, previous);
        if (cJSON_GetArraySize(keys) > 0)
            out = cJSON_PrintUnformatted(doc);
    }
    cJSON_Delete(doc);
    return out;
}

static void cm_path(char *buf, size_t n, const char *ns, const char *name)
{
    km_kube_path(buf, n, NULL, "v1", ns, "configmaps", name, NULL);
}

/* GETs ns/name into *out, NULL when it does not exist. */
static km_status get_cm(km_kube *kube, const char *ns, const char *name, cJSON **out, km_err *err)
{
    char path[600];
    cm_path(path, sizeof(path), ns, name);
    km_status st = km_kube_get(kube, path, out, err);
    if (st == KM_EAPI && km_err_is_http(err, 404)) {
        *out = NULL;
        km_err_clear(err);
        return KM_OK;
    }
    return st;
}

/* The snapshot's data (a new object) from the cluster and the previous snapshot (may be NULL). */
static km_status build_data(km_kube *kube, const cJSON *prev, cJSON **data, km_err *err)
{
    char *raw = NULL, src[200];
    km_jwks *keys = NULL;
    cJSON *ext = NULL, *d = cJSON_CreateObject();
    km_err e;
    km_err_clear(&e);
    km_status st = km_bridge_current_keys(kube, &keys, &raw, &e);
    if (st == KM_ETRANSPORT || st == KM_ECANCELED || st == KM_ENOMEM) {
        *err = e;
        goto out;
    }
    km_jwks_free(keys);
    if (st == KM_OK)
        snprintf(src, sizeof(src), "%s", KM_BRIDGE_JWKS_PATH);
    else
        snprintf(src, sizeof(src),
                 "unavailable (%s HTTP %ld%s): CA certificates only; on 1.19-1.20 enable the "
                 "ServiceAccountIssuerDiscovery feature gate",
                 KM_BRIDGE_JWKS_PATH, e.http_code, e.http_code == 0 ? ", no answer" : "");
    if ((st = km_kube_get(kube, EXTAUTH_PATH, &ext, err)) != KM_OK)
        goto out;
    char *jwks = km_bridge_snapshot_merge(raw, KM_JSON_STR(prev, "data", "jwks.json"));
    const char *ca = KM_JSON_STR(ext, "data", "client-ca-file");
    if (!d || (jwks && !cJSON_AddStringToObject(d, "jwks.json", jwks)) ||
        !cJSON_AddStringToObject(d, "jwks-source", src) ||
        (ca && !cJSON_AddStringToObject(d, "ca.crt", ca)))
        st = km_err_set(err, KM_ENOMEM, "out of memory");
    free(jwks);
    if (st == KM_OK) {
        *data = d;
        d = NULL;
    }
out:
    cJSON_Delete(d);
    cJSON_Delete(ext);
    free(raw);
    return st;
}

/* Fills obj (the previous ConfigMap or a new object) to hold data (taken). */
static km_status fill(cJSON *obj, const char *ns, const char *name, cJSON *data, km_err *err)
{
    char when[40];
    cJSON *meta = km_json_obj(obj, "metadata");
    cJSON *ann = meta ? km_json_obj(meta, "annotations") : NULL;
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "data");
    cJSON_AddItemToObject(obj, "data", data);
    if (!meta || !ann || km_json_set_str(obj, "apiVersion", "v1") != KM_OK ||
        km_json_set_str(obj, "kind", "ConfigMap") != KM_OK ||
        km_json_set_str(meta, "name", name) != KM_OK ||
        km_json_set_str(meta, "namespace", ns) != KM_OK ||
        km_json_set_str(ann, "kubemend.io/snapshot-time", km_clock_now_text(when, sizeof(when))) !=
            KM_OK)
        return km_err_set(err, KM_ENOMEM, "out of memory");
    return KM_OK;
}

km_status km_bridge_snapshot_write(km_kube *kube, const char *ns, const char *name, char *msg,
                                   size_t n, int *changed, km_err *err)
{
    cJSON *obj = NULL, *data = NULL;
    char path[600];
    km_status st = get_cm(kube, ns, name, &obj, err);
    if (st == KM_OK)
        st = build_data(kube, obj, &data, err);
    if (st != KM_OK)
        goto out;
    char src[200];
    snprintf(src, sizeof(src), "%s", KM_JSON_STR(data, "jwks-source"));
    if (obj && cJSON_Compare(cJSON_GetObjectItem(obj, "data"), data, 1)) {
        snprintf(msg, n, "snapshot %s/%s unchanged (JWKS: %s)", ns, name, src);
        if (changed)
            *changed = 0;
        goto out;
    }
    int update = obj != NULL;
    if (!obj && !(obj = cJSON_CreateObject())) {
        st = km_err_set(err, KM_ENOMEM, "out of memory");
        goto out;
    }
    st = fill(obj, ns, name, data, err);
    data = NULL;
    if (st != KM_OK)
        goto out;
    cm_path(path, sizeof(path), ns, update ? name : NULL);
    st = update ? km_kube_update(kube, path, obj, NULL, err)
                : km_kube_create(kube, path, obj, NULL, err);
    if (st != KM_OK)
        goto out;
    snprintf(msg, n, "snapshot %s/%s written (JWKS: %s)", ns, name, src);
    if (changed)
        *changed = 1;
out:
    cJSON_Delete(obj);
    cJSON_Delete(data);
    return st;
}

km_status km_bridge_snapshot_jwks(km_kube *kube, const char *ns, const char *name, char **jwks,
                                  km_err *err)
{
    cJSON *cm = NULL;
    char *copy = NULL;
    km_status st = get_cm(kube, ns, name, &cm, err);
    const char *text = st == KM_OK ? KM_JSON_STR(cm, "data", "jwks.json") : NULL;
    if (text && !(copy = strdup(text)))
        st = km_err_set(err, KM_ENOMEM, "out of memory");
    if (st == KM_OK)
        *jwks = copy;
    else
        free(copy);
    cJSON_Delete(cm);
    return st;
}

/* ---- the operator's runnable: the leader refreshes the snapshot --------------------------------
 */

typedef struct snap {
    const km_runtime *rt;
    km_kube *kube;
    char ns[256];
    pthread_t th;
    int running;
    atomic_int stop;
} snap;

static void *snap_loop(void *arg)
{
    snap *s = arg;
    while (!atomic_load(&s->stop) && !atomic_load(s->rt->stop)) {
        char msg[400], eb[700];
        int changed = 0;
        km_err e;
        km_err_clear(&e);
        if (km_bridge_snapshot_write(s->kube, s->ns, KM_BRIDGE_SNAPSHOT_NAME, msg, sizeof(msg),
                                     &changed, &e) == KM_OK) {
            if (changed)
                km_log_info("keys: snapshot written", "detail", msg);
        } else {
            km_log_warn("keys: snapshot not written", "error", km_err_str(&e, eb, sizeof(eb)));
        }
        km_clock_sleep(PERIOD_S, &s->stop);
    }
    return NULL;
}

static km_status snap_start(const km_runtime *rt, void **self, km_err *err)
{
    snap *s = calloc(1, sizeof(*s));
    if (!s)
        return km_err_set(err, KM_ENOMEM, "out of memory");
    s->rt = rt;
    /* The operator's namespace: POD_NAMESPACE (deploy/deployment.yaml), the in-cluster one, else
     * kubemend-system (a kubeconfig context's namespace is the user's, not the operator's). */
    const char *ns = getenv("POD_NAMESPACE");
    if ((!ns || !*ns) && strcmp(km_kubeconfig_source(rt->config), "in-cluster") == 0)
        ns = km_kubeconfig_namespace(rt->config);
    snprintf(s->ns, sizeof(s->ns), "%s", ns && *ns ? ns : KM_BRIDGE_SNAPSHOT_NS);
    *self = s;
    return KM_OK;
}

static km_status snap_lead(void *self, km_err *err)
{
    snap *s = self;
    km_status st = km_kube_clone(s->rt->kube, &s->kube, err);
    if (st != KM_OK)
        return st;
    if (pthread_create(&s->th, NULL, snap_loop, s) != 0)
        return km_err_set(err, KM_ENOMEM, "keys snapshot: cannot start a thread");
    s->running = 1;
    return KM_OK;
}

static int snap_ready(void *self, char *reason, size_t n)
{
    (void)self;
    (void)reason;
    (void)n;
    return 1;
}

static void snap_stop(void *self)
{
    snap *s = self;
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    if (s->running)
        pthread_join(s->th, NULL);
    km_kube_free(s->kube);
    free(s);
}

static const km_runnable keys_snapshot = {
    .name = "keys-snapshot",
    .start = snap_start,
    .lead = snap_lead,
    .ready = snap_ready,
    .stop = snap_stop,
};

KM_REGISTER_RUNNABLE(keys_snapshot)
