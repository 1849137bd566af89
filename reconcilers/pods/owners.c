/* owners.c — one namespace's pods sorted into what restarts them (see owners.h). */
#include "reconcilers/pods/owners.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/array.h"
#include "operator/base/json.h"
#include "operator/base/log.h"

#define PAGE 500

/* A ReplicaSet assumed (naming rule) to be workload's Deployment's, and its pods to restart. */
struct km_pods_guess {
    char *rs;
    cJSON *pod; /* {metadata: {labels}} of one of its pods: what the selector must match */
    km_pods_names pods;
    km_pods_guess *next;
};

static const char *const kinds[KM_WL_KINDS] = {"Deployment", "StatefulSet", "DaemonSet"};
static const char *const plurals[KM_WL_KINDS] = {"deployments", "statefulsets", "daemonsets"};

const char *km_wl_name(km_wl_kind k)
{
    return kinds[k];
}

const char *km_wl_plural(km_wl_kind k)
{
    return plurals[k];
}

static km_status oom(km_err *err)
{
    return km_err_set(err, KM_ENOMEM, "pods: out of memory");
}

static km_status names_add(km_pods_names *v, const char *name)
{
    if (km_array_grow(&v->v, v->n, &v->cap, sizeof(*v->v)) != KM_OK || !(v->v[v->n] = strdup(name)))
        return KM_ENOMEM;
    v->n++;
    return KM_OK;
}

static void names_free(km_pods_names *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    memset(v, 0, sizeof(*v));
}

/* ---- the pods -------------------------------------------------------------------------------- */

/* Copies spec[key] (containers / initContainers) as [{volumeMounts: [{name, mountPath}]}] into
 * spec.  0 on success, -1 when out of memory. */
static int slim_mounts(cJSON *spec, const cJSON *pod, const char *key)
{
    const cJSON *cs = KM_JSON_AT(pod, "spec", key);
    if (!cJSON_IsArray(cs))
        return 0;
    cJSON *out = cJSON_AddArrayToObject(spec, key);
    if (!out)
        return -1;
    const cJSON *c;
    cJSON_ArrayForEach(c, cs)
    {
        cJSON *oc = cJSON_CreateObject();
        if (!oc || !cJSON_AddItemToArray(out, oc)) {
            cJSON_Delete(oc);
            return -1;
        }
        const cJSON *vms = KM_JSON_AT(c, "volumeMounts");
        if (!cJSON_IsArray(vms))
            continue;
        cJSON *ovms = cJSON_AddArrayToObject(oc, "volumeMounts");
        if (!ovms)
            return -1;
        const cJSON *vm;
        cJSON_ArrayForEach(vm, vms)
        {
            const char *n = KM_JSON_STR(vm, "name");
            const char *mp = KM_JSON_STR(vm, "mountPath");
            cJSON *o = cJSON_CreateObject();
            if (!o || !cJSON_AddItemToArray(ovms, o)) {
                cJSON_Delete(o);
                return -1;
            }
            if ((n && km_json_set_str(o, "name", n)) || (mp && km_json_set_str(o, "mountPath", mp)))
                return -1;
        }
    }
    return 0;
}

/* Copies the fields the selection needs (the list may be big; we keep only these). */
static cJSON *slim_pod(const cJSON *pod)
{
    static const char *const md_keys[] = {"name", "creationTimestamp", "deletionTimestamp",
                                          "ownerReferences", "labels"};
    static const char *const spec_keys[] = {"serviceAccountName", "automountServiceAccountToken",
                                            "volumes"};
    cJSON *o = cJSON_CreateObject();
    cJSON *md = o ? cJSON_AddObjectToObject(o, "metadata") : NULL;
    cJSON *spec = o ? cJSON_AddObjectToObject(o, "spec") : NULL;
    cJSON *status = o ? cJSON_AddObjectToObject(o, "status") : NULL;
    if (!md || !spec || !status)
        goto fail;
    for (size_t i = 0; i < sizeof(md_keys) / sizeof(md_keys[0]); i++) {
        const cJSON *v = KM_JSON_AT(pod, "metadata", md_keys[i]);
        if (v && !cJSON_AddItemToObject(md, md_keys[i], cJSON_Duplicate(v, 1)))
            goto fail;
    }
    const cJSON *mirror = KM_JSON_AT(pod, "metadata", "annotations", KM_MIRROR_ANNOTATION);
    if (mirror) {
        cJSON *ann = cJSON_AddObjectToObject(md, "annotations");
        if (!ann || !cJSON_AddItemToObject(ann, KM_MIRROR_ANNOTATION, cJSON_Duplicate(mirror, 1)))
            goto fail;
    }
    for (size_t i = 0; i < sizeof(spec_keys) / sizeof(spec_keys[0]); i++) {
        const cJSON *v = KM_JSON_AT(pod, "spec", spec_keys[i]);
        if (v && !cJSON_AddItemToObject(spec, spec_keys[i], cJSON_Duplicate(v, 1)))
            goto fail;
    }
    if (slim_mounts(spec, pod, "containers") || slim_mounts(spec, pod, "initContainers"))
        goto fail;
    const char *phase = KM_JSON_STR(pod, "status", "phase");
    if (phase && km_json_set_str(status, "phase", phase) != KM_OK)
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static km_status collect_pods(const km_kube_page *page, void *user)
{
    km_pods_plan *p = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *name = KM_JSON_STR(it, "metadata", "name");
        int dup = 0;
        const cJSON *q, *seen = page->restarted ? p->pods : NULL; /* a restarted list repeats */
        if (!name)
            continue;
        cJSON_ArrayForEach(q, seen)
        {
            dup |= strcmp(KM_JSON_STR(q, "metadata", "name"), name) == 0;
        }
        cJSON *s = dup ? NULL : slim_pod(it);
        if (!dup && (!s || !cJSON_AddItemToArray(p->pods, s))) {
            cJSON_Delete(s);
            return KM_ENOMEM;
        }
    }
    return KM_OK;
}

/* The pod's ServiceAccount from the namespace cache (GET on a miss).  *out borrowed or NULL. */
static km_status service_account(km_pods_plan *p, const char *name, const cJSON **out, km_err *err)
{
    *out = NULL;
    if (!name || !name[0])
        return KM_OK;
    cJSON *c = km_strmap_get(p->sa, name);
    if (!c) {
        char path[768];
        if (km_kube_path(path, sizeof(path), NULL, "v1", p->ns, "serviceaccounts", name, NULL))
            return km_err_set(err, KM_EINVAL, "serviceaccount name too long");
        km_err e;
        km_err_clear(&e);
        km_status st = km_kube_get(p->kube, path, &c, &e);
        if (st == KM_EAPI && e.http_code == 404) {
            c = cJSON_CreateNull();
        } else if (st != KM_OK) {
            if (err)
                *err = e;
            km_err_prefix(err, "get serviceaccount %s/%s", p->ns, name);
            return st;
        }
        if (!c || km_strmap_put(p->sa, name, c, NULL) != KM_OK) {
            cJSON_Delete(c);
            return oom(err);
        }
    }
    *out = cJSON_IsNull(c) ? NULL : c;
    return KM_OK;
}

/* ---- workloads ------------------------------------------------------------------------------ */

/* Copies what the step needs of a workload: name, generation, selector, replicas, the restart
 * marker and status.  NULL when out of memory. */
cJSON *km_pods_slim_workload(const cJSON *obj)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *md = o ? cJSON_AddObjectToObject(o, "metadata") : NULL;
    cJSON *spec = o ? cJSON_AddObjectToObject(o, "spec") : NULL;
    if (!md || !spec)
        goto fail;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    const cJSON *gen = KM_JSON_AT(obj, "metadata", "generation");
    if ((name && km_json_set_str(md, "name", name)) ||
        (cJSON_IsNumber(gen) && km_json_set_num(md, "generation", gen->valuedouble)))
        goto fail;
    const cJSON *v = KM_JSON_AT(obj, "spec", "replicas");
    if (cJSON_IsNumber(v) && km_json_set_num(spec, "replicas", v->valuedouble))
        goto fail;
    v = KM_JSON_AT(obj, "spec", "selector");
    if (v && !cJSON_AddItemToObject(spec, "selector", cJSON_Duplicate(v, 1)))
        goto fail;
    const char *mark =
        KM_JSON_STR(obj, "spec", "template", "metadata", "annotations", KM_RESTARTED_AT_ANNOTATION);
    if (mark) {
        cJSON *ann = cJSON_AddObjectToObject(
            cJSON_AddObjectToObject(cJSON_AddObjectToObject(spec, "template"), "metadata"),
            "annotations");
        if (!ann || km_json_set_str(ann, KM_RESTARTED_AT_ANNOTATION, mark))
            goto fail;
    }
    v = KM_JSON_AT(obj, "status");
    if (v && !cJSON_AddItemToObject(o, "status", cJSON_Duplicate(v, 1)))
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static km_status collect_listed(const km_kube_page *page, void *user)
{
    km_strmap *m = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *name = KM_JSON_STR(it, "metadata", "name");
        cJSON *s = name ? km_pods_slim_workload(it) : NULL, *old = NULL;
        if (name && (!s || km_strmap_put(m, name, s, (void **)&old) != KM_OK)) {
            cJSON_Delete(s);
            return KM_ENOMEM;
        }
        cJSON_Delete(old);
    }
    return KM_OK;
}

static int free_json(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    cJSON_Delete(val);
    return 0;
}

static void json_map_free(km_strmap *m)
{
    km_strmap_each(m, free_json, NULL);
    km_strmap_free(m);
}

km_status km_pods_plan_listed(km_pods_plan *p, km_wl_kind k, const char *name, const cJSON **out,
                              km_err *err)
{
    *out = NULL;
    if (!p->listed[k]) {
        char path[768];
        km_strmap *m = km_strmap_new();
        if (!m)
            return oom(err);
        km_list_opts lo = {.limit = PAGE};
        km_status st = KM_EINVAL;
        if (km_kube_path(path, sizeof(path), "apps", "v1", p->ns, km_wl_plural(k), NULL, NULL))
            km_err_set(err, st, "namespace name too long");
        else if ((st = km_kube_list(p->kube, path, &lo, collect_listed, m, NULL, err)) != KM_OK)
            km_err_prefix(err, "list %s in %s", km_wl_plural(k), p->ns);
        if (st != KM_OK) {
            json_map_free(m);
            return st == KM_ENOMEM ? oom(err) : st;
        }
        p->listed[k] = m;
    }
    *out = km_strmap_get(p->listed[k], name);
    return KM_OK;
}

/* The workload kind/name (added once).  *index (may be NULL) receives its index. */
static km_status add_workload(km_pods_plan *p, km_wl_kind kind, const char *name, size_t *index,
                              km_err *err)
{
    char key[320];
    snprintf(key, sizeof(key), "%s/%.300s", km_wl_name(kind), name);
    uintptr_t at = (uintptr_t)km_strmap_get(p->index, key);
    if (at) {
        if (index)
            *index = at - 1;
        return KM_OK;
    }
    if (km_array_grow(&p->workloads, p->nworkloads, &p->capworkloads, sizeof(*p->workloads)))
        return oom(err);
    km_pods_workload *w = &p->workloads[p->nworkloads];
    memset(w, 0, sizeof(*w));
    w->kind = kind;
    if (!(w->name = strdup(name)) ||
        km_strmap_put(p->index, key, (void *)(uintptr_t)(p->nworkloads + 1), NULL) != KM_OK) {
        free(w->name);
        return oom(err);
    }
    if (index)
        *index = p->nworkloads;
    p->nworkloads++;
    return KM_OK;
}

/* The Deployment the naming rule gives ReplicaSet rs of pod (rs == name + "-" + the pod's
 * pod-template-hash label) into buf.  0 when the rule does not apply. */
static int deploy_guess(const cJSON *pod, const char *rs, char *buf, size_t n)
{
    const char *hash = KM_JSON_STR(pod, "metadata", "labels", KM_POD_TEMPLATE_HASH_LABEL);
    size_t rn = strlen(rs), hn = hash ? strlen(hash) : 0;
    if (hn == 0 || rn <= hn + 1 || rs[rn - hn - 1] != '-' || strcmp(rs + rn - hn, hash) != 0 ||
        rn - hn - 1 >= n)
        return 0;
    memcpy(buf, rs, rn - hn - 1);
    buf[rn - hn - 1] = '\0';
    return 1;
}

/* Caches ReplicaSet rs -> Deployment deploy ("" = none).  KM_ENOMEM. */
static km_status remember_owner(km_pods_plan *p, const char *rs, const char *deploy)
{
    char *d = strdup(deploy), *old = NULL;
    if (!d || km_strmap_put(p->rs_owner, rs, d, (void **)&old) != KM_OK) {
        free(d);
        return KM_ENOMEM;
    }
    free(old);
    return KM_OK;
}

/* The Deployment owning ReplicaSet rs of pod ("" when none), cached: in a dry run by the naming
 * rule against the namespace's listed Deployments, else from the ReplicaSet's own owner
 * reference (GET).  *deploy borrowed from the cache. */
static km_status rs_owner(km_pods_plan *p, const cJSON *pod, const char *rs, const char **deploy,
                          km_err *err)
{
    char guess[512], path[768];
    const cJSON *d = NULL;
    *deploy = km_strmap_get(p->rs_owner, rs);
    if (*deploy)
        return KM_OK;
    km_status st = KM_OK;
    if (p->dry_run && deploy_guess(pod, rs, guess, sizeof(guess)) &&
        (st = km_pods_plan_listed(p, KM_WL_DEPLOYMENT, guess, &d, err)) != KM_OK)
        return st;
    if (d && km_podsel_rs_of_deployment(rs, pod, d)) {
        if (remember_owner(p, rs, guess) != KM_OK)
            return oom(err);
        *deploy = km_strmap_get(p->rs_owner, rs);
        return KM_OK;
    }
    if (km_kube_path(path, sizeof(path), "apps", "v1", p->ns, "replicasets", rs, NULL))
        return km_err_set(err, KM_EINVAL, "replicaset name too long");
    cJSON *obj = NULL;
    km_err e;
    km_err_clear(&e);
    st = km_kube_get(p->kube, path, &obj, &e);
    if (st != KM_OK && !(st == KM_EAPI && e.http_code == 404)) {
        if (err)
            *err = e;
        km_err_prefix(err, "get replicaset %s/%s", p->ns, rs);
        return st;
    }
    const cJSON *o = km_podsel_owner(obj);
    const char *kind = KM_JSON_STR(o, "kind"), *name = KM_JSON_STR(o, "name");
    st = remember_owner(p, rs, kind && name && strcmp(kind, "Deployment") == 0 ? name : "");
    cJSON_Delete(obj);
    if (st != KM_OK)
        return oom(err);
    *deploy = km_strmap_get(p->rs_owner, rs);
    return KM_OK;
}

/* Records that pod (of ReplicaSet rs) presumably belongs to Deployment deploy (naming rule, not
 * yet verified: km_pods_plan_verify). */
static km_status add_guess(km_pods_plan *p, const char *deploy, const char *rs, const cJSON *pod,
                           km_err *err)
{
    size_t i;
    km_status st = add_workload(p, KM_WL_DEPLOYMENT, deploy, &i, err);
    if (st != KM_OK)
        return st;
    km_pods_guess *g = p->workloads[i].guesses;
    while (g && strcmp(g->rs, rs) != 0)
        g = g->next;
    if (!g) {
        const cJSON *labels = KM_JSON_AT(pod, "metadata", "labels");
        g = calloc(1, sizeof(*g));
        cJSON *md = NULL;
        if (!g || !(g->rs = strdup(rs)) || !(g->pod = cJSON_CreateObject()) ||
            !(md = cJSON_AddObjectToObject(g->pod, "metadata")) ||
            !cJSON_AddItemToObject(md, "labels",
                                   labels ? cJSON_Duplicate(labels, 1) : cJSON_CreateObject())) {
            if (g)
                free(g->rs);
            cJSON_Delete(g ? g->pod : NULL);
            free(g);
            return oom(err);
        }
        km_pods_guess **tail = &p->workloads[i].guesses;
        while (*tail)
            tail = &(*tail)->next;
        *tail = g;
    }
    return names_add(&g->pods, KM_JSON_STR(pod, "metadata", "name")) ? oom(err) : KM_OK;
}

/* Sorts one pod that needs a restart by its controlling owner. */
static km_status sort_pod(km_pods_plan *p, const cJSON *pod, km_err *err)
{
    const char *name = KM_JSON_STR(pod, "metadata", "name");
    const cJSON *owner = km_podsel_owner(pod);
    const char *kind = KM_JSON_STR(owner, "kind"), *oname = KM_JSON_STR(owner, "name");
    const char *deploy = "";
    char guess[512];
    if (!owner || !kind || !oname)
        return names_add(&p->ownerless, name) ? oom(err) : KM_OK;
    if (strcmp(kind, "StatefulSet") == 0)
        return add_workload(p, KM_WL_STATEFULSET, oname, NULL, err);
    if (strcmp(kind, "DaemonSet") == 0)
        return add_workload(p, KM_WL_DAEMONSET, oname, NULL, err);
    if (strcmp(kind, "ReplicaSet") != 0)
        return names_add(&p->evict, name) ? oom(err) : KM_OK;
    if (!p->dry_run && !km_strmap_has(p->rs_owner, oname) &&
        deploy_guess(pod, oname, guess, sizeof(guess)))
        return add_guess(p, guess, oname, pod, err); /* verified by the patch response */
    km_status st = rs_owner(p, pod, oname, &deploy, err);
    if (st != KM_OK)
        return st;
    if (deploy[0])
        return add_workload(p, KM_WL_DEPLOYMENT, deploy, NULL, err);
    return names_add(&p->evict, name) ? oom(err) : KM_OK;
}

km_status km_pods_plan_make(km_pods_plan *p, km_err *err)
{
    char path[512];
    km_status st;
    if (!(p->pods = cJSON_CreateArray()) || !(p->index = km_strmap_new()) ||
        !(p->rs_owner = km_strmap_new()) || !(p->sa = km_strmap_new()))
        return oom(err);
    if (km_kube_path(path, sizeof(path), NULL, "v1", p->ns, "pods", NULL, NULL))
        return km_err_set(err, KM_EINVAL, "namespace name too long");
    km_list_opts lo = {.limit = PAGE};
    if (!p->include_default)
        lo.field_selector = "spec.serviceAccountName!=default";
    if ((st = km_kube_list(p->kube, path, &lo, collect_pods, p, NULL, err)) != KM_OK) {
        km_err_prefix(err, "list pods in %s", p->ns);
        return st;
    }
    const cJSON *pod;
    cJSON_ArrayForEach(pod, p->pods)
    {
        const cJSON *sa = NULL;
        if (km_podsel_needs_sa(pod, p->started_at, p->include_default) &&
            (st = service_account(p, KM_JSON_STR(pod, "spec", "serviceAccountName"), &sa, err)))
            return st;
        km_podsel_reason why = km_podsel_pod(pod, sa, p->started_at, p->include_default);
        if (why != KM_PODSEL_RESTART) {
            p->skipped[why]++;
            km_log_debug("pod skipped", "namespace", p->ns, "pod",
                         KM_JSON_STR(pod, "metadata", "name"), "reason", km_podsel_reason_str(why));
            continue;
        }
        if ((st = sort_pod(p, pod, err)) != KM_OK)
            return st;
    }
    return KM_OK;
}

km_status km_pods_plan_verify(km_pods_plan *p, size_t i, const cJSON *deploy, km_err *err)
{
    km_status st = KM_OK;
    for (km_pods_guess *g = p->workloads[i].guesses; g && st == KM_OK; g = g->next) {
        const char *owner = "";
        if (deploy && km_podsel_rs_of_deployment(g->rs, g->pod, deploy))
            continue;
        if ((st = rs_owner(p, g->pod, g->rs, &owner, err)) != KM_OK)
            return st;
        if (owner[0] && strcmp(owner, p->workloads[i].name) == 0)
            continue; /* deploy's after all (adopted), or gone with it */
        if (owner[0]) {
            st = add_workload(p, KM_WL_DEPLOYMENT, owner, NULL, err);
            continue; /* p->workloads may have moved: g stays valid (it is not in the array) */
        }
        for (size_t k = 0; k < g->pods.n && st == KM_OK; k++)
            st = names_add(&p->evict, g->pods.v[k]) ? oom(err) : KM_OK;
    }
    return st;
}

static void guesses_free(km_pods_guess *g)
{
    while (g) {
        km_pods_guess *next = g->next;
        free(g->rs);
        cJSON_Delete(g->pod);
        names_free(&g->pods);
        free(g);
        g = next;
    }
}

static int free_str(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    free(val);
    return 0;
}

void km_pods_plan_cleanup(km_pods_plan *p)
{
    for (size_t i = 0; i < p->nworkloads; i++) {
        free(p->workloads[i].name);
        guesses_free(p->workloads[i].guesses);
    }
    free(p->workloads);
    p->workloads = NULL;
    p->nworkloads = p->capworkloads = 0;
    names_free(&p->evict);
    names_free(&p->ownerless);
    cJSON_Delete(p->pods);
    p->pods = NULL;
    km_strmap_free(p->index);
    if (p->rs_owner)
        km_strmap_each(p->rs_owner, free_str, NULL);
    km_strmap_free(p->rs_owner);
    if (p->sa)
        json_map_free(p->sa);
    else
        km_strmap_free(p->sa);
    for (int k = 0; k < KM_WL_KINDS; k++)
        if (p->listed[k])
            json_map_free(p->listed[k]);
    p->index = p->rs_owner = p->sa = NULL;
    memset(p->listed, 0, sizeof(p->listed));
    memset(p->skipped, 0, sizeof(p->skipped));
}
