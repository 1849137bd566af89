/* verify.c — the pods step's verify hook (see verify.h). */
#include "reconcilers/pods/verify.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/json.h"
#include "reconcilers/pods/podsel.h"
#include "reconcilers/step/left.h"

typedef struct vp {
    km_step_ctx *ctx;
    int include_default;
    int delete_ownerless;           /* spec.pods.deleteOwnerlessPods */
    const char *self_ns, *self_pod; /* kubemend's own pod (status.pods.self decided it), or NULL */
    long manual;                    /* stale pods listed for a human */
    km_left left;
    cJSON *ask_sa; /* [{"ns","name","sa","pod"}]: pods whose ServiceAccount decides */
} vp;

/* Forgets what the pages counted (a list restarted after an expired continue). */
static void reset(vp *v)
{
    v->manual = 0;
    v->left = (km_left){0};
    cJSON *fresh = cJSON_CreateArray();
    if (fresh) {
        cJSON_Delete(v->ask_sa);
        v->ask_sa = fresh;
    }
}

/* A stale pod: left unless it is for a human (listed, or ownerless while the step does not
 * delete ownerless pods: a run that did not visit it would list it) or kubemend's own. */
static void stale(vp *v, const cJSON *pod)
{
    char key[512];
    const char *ns = KM_JSON_STR(pod, "metadata", "namespace");
    const char *name = KM_JSON_STR(pod, "metadata", "name");
    snprintf(key, sizeof(key), "%s/%s", ns ? ns : "", name ? name : "");
    if (v->self_pod && ns && name && strcmp(ns, v->self_ns) == 0 && strcmp(name, v->self_pod) == 0)
        return;
    if (km_json_array_has_str(KM_JSON_AT(v->ctx->status, "manual"), key) ||
        (!v->delete_ownerless && km_podsel_route_of(pod) == KM_ROUTE_OWNERLESS)) {
        v->manual++;
        return;
    }
    km_left_add(&v->left, key);
}

/* Remembers a pod whose ServiceAccount decides (its spec cannot tell).  KM_ENOMEM. */
static km_status ask_later(vp *v, const cJSON *pod)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(v->ask_sa, o)) {
        cJSON_Delete(o);
        return KM_ENOMEM;
    }
    cJSON *copy = cJSON_Duplicate(pod, 1);
    if (!copy)
        return KM_ENOMEM;
    cJSON_AddItemToObject(o, "pod", copy);
    return KM_OK;
}

/* One page of pods judged (km_kube_page_fn).  Failure: KM_ECANCELED, KM_ENOMEM; the counts so
 * far stay. */
static km_status page(const km_kube_page *pg, void *user)
{
    vp *v = user;
    const cJSON *pod;
    if (pg->restarted)
        reset(v);
    if (!v->ask_sa)
        return KM_ENOMEM;
    cJSON_ArrayForEach(pod, pg->items)
    {
        if (v->ctx->cancel && atomic_load(v->ctx->cancel))
            return KM_ECANCELED;
        if (km_podsel_needs_sa(pod, v->ctx->rebuilt_at, v->include_default)) {
            if (ask_later(v, pod) != KM_OK)
                return KM_ENOMEM;
            continue;
        }
        if (km_podsel_pod(pod, NULL, v->ctx->rebuilt_at, v->include_default) == KM_PODSEL_RESTART)
            stale(v, pod);
    }
    return KM_OK;
}

/* Decides the pods whose ServiceAccount decides (GET each; 404 = unset).  Failure: the GET's. */
static km_status decide_asked(vp *v, km_err *err)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, v->ask_sa)
    {
        const cJSON *pod = KM_JSON_AT(it, "pod");
        const char *ns = KM_JSON_STR(pod, "metadata", "namespace");
        const char *sa_name = KM_JSON_STR(pod, "spec", "serviceAccountName");
        char path[768];
        cJSON *sa = NULL;
        km_err e;
        km_err_clear(&e);
        if (ns && sa_name && sa_name[0] &&
            km_kube_path(path, sizeof(path), NULL, "v1", ns, "serviceaccounts", sa_name, NULL) ==
                KM_OK) {
            km_status st = km_kube_get(v->ctx->kube, path, &sa, &e);
            if (st != KM_OK && !(st == KM_EAPI && e.http_code == 404)) {
                if (err)
                    *err = e;
                km_err_prefix(err, "verify: GET serviceaccount %s/%s", ns, sa_name);
                return st;
            }
        }
        if (km_podsel_pod(pod, sa, v->ctx->rebuilt_at, v->include_default) == KM_PODSEL_RESTART)
            stale(v, pod);
        cJSON_Delete(sa);
    }
    return KM_OK;
}

/* kubemend's own pod into v when status.pods.self says the step decided it. */
static void own_pod(vp *v)
{
    const char *action = KM_JSON_STR(v->ctx->status, "self", "action");
    const char *ns = getenv("POD_NAMESPACE"), *pod = getenv("POD_NAME");
    if (action && ns && pod && pod[0]) {
        v->self_ns = ns;
        v->self_pod = pod;
    }
}

km_status km_pods_verify(km_step_ctx *ctx, km_err *err)
{
    char text[600];
    if (ctx->rebuilt_at <= 0)
        return km_err_set(err, KM_ESTATE,
                          "the PKI rebuild time is unknown (%s): cannot tell stale "
                          "pods",
                          ctx->rebuild_note ? ctx->rebuild_note : "not derived");
    vp v = {.ctx = ctx,
            .include_default = km_step_bool(ctx, "includeDefaultServiceAccount"),
            .delete_ownerless = km_step_bool(ctx, "deleteOwnerlessPods"),
            .ask_sa = cJSON_CreateArray()};
    own_pod(&v);
    km_list_opts lo = {.limit = 500};
    km_status st = km_kube_list(ctx->kube, "/api/v1/pods", &lo, page, &v, NULL, err);
    if (st == KM_ENOMEM)
        km_err_set(err, st, "pods verify: out of memory");
    else if (st == KM_ECANCELED)
        km_err_set(err, st, "pods verify cancelled");
    else if (st != KM_OK)
        km_err_prefix(err, "verify: list pods");
    if (st == KM_OK)
        st = decide_asked(&v, err);
    if (st == KM_OK && v.left.n)
        km_step_set_result(ctx, "False", "StalePodsRunning",
                           "pods created before the rebuild with a service-account token still "
                           "running: %s",
                           km_left_text(&v.left, text, sizeof(text)));
    else if (st == KM_OK)
        km_step_set_result(ctx, "True", "NoStalePod",
                           "no pod with a token from before the rebuild runs (%ld ownerless ones "
                           "left for a human restart, see status.pods.manual)",
                           v.manual);
    cJSON_Delete(v.ask_sa);
    return st;
}
