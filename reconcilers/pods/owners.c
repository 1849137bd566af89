/* owners.c — one namespace's stale pods sorted into what restarts them (see owners.h). */
#include "reconcilers/pods/owners.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/array.h"
#include "operator/base/json.h"
#include "operator/base/log.h"

#define PAGE 500

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

static km_status targets_add(km_pods_targets *v, const char *name, const char *uid)
{
    if (km_array_grow(&v->v, v->n, &v->cap, sizeof(*v->v)) != KM_OK)
        return KM_ENOMEM;
    km_pods_target *t = &v->v[v->n];
    t->name = strdup(name ? name : "");
    t->uid = strdup(uid ? uid : "");
    if (!t->name || !t->uid) {
        free(t->name);
        free(t->uid);
        return KM_ENOMEM;
    }
    v->n++;
    return KM_OK;
}

static void targets_free(km_pods_targets *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->v[i].name);
        free(v->v[i].uid);
    }
    free(v->v);
    memset(v, 0, sizeof(*v));
}

/* The pod as a target (name, uid) of list v. */
static km_status add_pod(km_pods_targets *v, const cJSON *pod, km_err *err)
{
    return targets_add(v, KM_JSON_STR(pod, "metadata", "name"), KM_JSON_STR(pod, "metadata", "uid"))
               ? oom(err)
               : KM_OK;
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
    static const char *const md_keys[] = {
        "name", "uid", "creationTimestamp", "deletionTimestamp", "ownerReferences", "labels"};
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

/* Copies spec.template.metadata.annotations[key] of obj into spec (the template created on
 * demand).  0, or -1 when out of memory. */
static int slim_marker(cJSON *spec, const cJSON *obj, const char *key)
{
    const char *v = KM_JSON_STR(obj, "spec", "template", "metadata", "annotations", key);
    if (!v)
        return 0;
    cJSON *t = km_json_obj(spec, "template");
    cJSON *md = t ? km_json_obj(t, "metadata") : NULL;
    cJSON *ann = md ? km_json_obj(md, "annotations") : NULL;
    return ann && km_json_set_str(ann, key, v) == KM_OK ? 0 : -1;
}

cJSON *km_pods_slim_workload(const cJSON *obj)
{
    static const char *const md_str[] = {"name", "uid", "resourceVersion", "deletionTimestamp"};
    cJSON *o = cJSON_CreateObject();
    cJSON *md = o ? cJSON_AddObjectToObject(o, "metadata") : NULL;
    cJSON *spec = o ? cJSON_AddObjectToObject(o, "spec") : NULL;
    if (!md || !spec)
        goto fail;
    for (size_t i = 0; i < sizeof(md_str) / sizeof(md_str[0]); i++) {
        const char *v = KM_JSON_STR(obj, "metadata", md_str[i]);
        if (v && km_json_set_str(md, md_str[i], v))
            goto fail;
    }
    const cJSON *gen = KM_JSON_AT(obj, "metadata", "generation");
    if (cJSON_IsNumber(gen) && km_json_set_num(md, "generation", gen->valuedouble))
        goto fail;
    const cJSON *v = KM_JSON_AT(obj, "spec", "replicas");
    if (cJSON_IsNumber(v) && km_json_set_num(spec, "replicas", v->valuedouble))
        goto fail;
    v = KM_JSON_AT(obj, "spec", "selector");
    if (v && !cJSON_AddItemToObject(spec, "selector", cJSON_Duplicate(v, 1)))
        goto fail;
    if (slim_marker(spec, obj, KM_RESTARTED_AT_ANNOTATION) ||
        slim_marker(spec, obj, KM_KUBEMEND_RESTARTED_AT_ANNOTATION))
        goto fail;
    v = KM_JSON_AT(obj, "status");
    if (v && !cJSON_AddItemToObject(o, "status", cJSON_Duplicate(v, 1)))
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* The workload kind/name/uid (added once; the first uid stays).  *index (may be NULL) receives
 * its index. */
static km_status add_workload(km_pods_plan *p, km_wl_kind kind, const char *name, const char *uid,
                              km_err *err)
{
    char key[320];
    snprintf(key, sizeof(key), "%s/%.300s", km_wl_name(kind), name);
    if (km_strmap_has(p->index, key))
        return KM_OK;
    if (km_array_grow(&p->workloads, p->nworkloads, &p->capworkloads, sizeof(*p->workloads)))
        return oom(err);
    km_pods_workload *w = &p->workloads[p->nworkloads];
    memset(w, 0, sizeof(*w));
    w->kind = kind;
    if (!(w->name = strdup(name)) || !(w->uid = strdup(uid)) ||
        km_strmap_put(p->index, key, (void *)(uintptr_t)(p->nworkloads + 1), NULL) != KM_OK) {
        free(w->name);
        free(w->uid);
        return oom(err);
    }
    p->nworkloads++;
    return KM_OK;
}

/* The workload of kind `k` a controller reference names (NULL when not in the plan). */
static km_pods_workload *workload_of(km_pods_plan *p, km_wl_kind k, const char *name)
{
    char key[320];
    snprintf(key, sizeof(key), "%s/%.300s", km_wl_name(k), name ? name : "");
    uintptr_t at = (uintptr_t)km_strmap_get(p->index, key);
    return at ? &p->workloads[at - 1] : NULL;
}

typedef struct kind_list {
    km_pods_plan *p;
    km_wl_kind kind;
} kind_list;

/* A page of one workload kind: the plan's workloads get their slim copies (same uid, not being
 * deleted). */
static km_status collect_kind(const km_kube_page *page, void *user)
{
    kind_list *kl = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        km_pods_workload *w = workload_of(kl->p, kl->kind, KM_JSON_STR(it, "metadata", "name"));
        const char *uid = KM_JSON_STR(it, "metadata", "uid");
        if (!w || !uid || strcmp(uid, w->uid) != 0 ||
            KM_JSON_STR(it, "metadata", "deletionTimestamp"))
            continue;
        cJSON *s = km_pods_slim_workload(it);
        if (!s)
            return KM_ENOMEM;
        cJSON_Delete(w->obj); /* a restarted list repeats items */
        w->obj = s;
    }
    return KM_OK;
}

/* One paged list of kind k in the namespace when the plan has workloads of that kind. */
static km_status read_kind(km_pods_plan *p, km_wl_kind k, km_err *err)
{
    char path[768];
    size_t n = 0;
    for (size_t i = 0; i < p->nworkloads; i++)
        n += p->workloads[i].kind == k;
    if (n == 0)
        return KM_OK;
    if (km_kube_path(path, sizeof(path), "apps", "v1", p->ns, km_wl_plural(k), NULL, NULL))
        return km_err_set(err, KM_EINVAL, "namespace name too long");
    kind_list kl = {p, k};
    km_list_opts lo = {.limit = PAGE};
    p->reads++;
    km_status st = km_kube_list(p->kube, path, &lo, collect_kind, &kl, NULL, err);
    if (st == KM_ENOMEM)
        return oom(err);
    if (st != KM_OK)
        km_err_prefix(err, "list %s in %s", km_wl_plural(k), p->ns);
    return st;
}

/* ---- ReplicaSets ---------------------------------------------------------------------------- */

/* What a ReplicaSet's list entry proved: its Deployment (name and uid NULL: standalone). */
typedef struct rs_owner {
    char *name, *uid;
} rs_owner;

static void rs_owner_free(rs_owner *o)
{
    if (o) {
        free(o->name);
        free(o->uid);
        free(o);
    }
}

static int free_rs_owner(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    rs_owner_free(val);
    return 0;
}

/* A page of ReplicaSets: those whose uid is a key of the map (referenced by a stale pod, or by
 * kubemend's own pod) get what their controller reference proves. */
static km_status collect_rs(const km_kube_page *page, void *user)
{
    km_strmap *owners = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *uid = KM_JSON_STR(it, "metadata", "uid");
        if (!uid || !km_strmap_has(owners, uid))
            continue;
        const cJSON *d = km_podsel_rs_deployment(it);
        rs_owner *o = calloc(1, sizeof(*o)), *old = NULL;
        if (!o ||
            (d && (!(o->name = strdup(KM_JSON_STR(d, "name"))) ||
                   !(o->uid = strdup(KM_JSON_STR(d, "uid"))))) ||
            km_strmap_put(owners, uid, o, (void **)&old) != KM_OK) {
            rs_owner_free(o);
            return KM_ENOMEM;
        }
        rs_owner_free(old);
    }
    return KM_OK;
}

/* The ReplicaSet uid a pod's controller reference names. */
static const char *rs_uid(const cJSON *pod)
{
    return KM_JSON_STR(km_podsel_controller(pod), "uid");
}

/* Resolves the stale pods of ReplicaSets (rs_pods, indexes into p->pods) with one list of the
 * namespace's ReplicaSets: their Deployments join the workloads, the rest is evicted.  *self_uid
 * (when the own pod's ReplicaSet was resolved) becomes the own Deployment's uid (borrowed until
 * owners is freed). */
static km_status resolve_rs(km_pods_plan *p, const cJSON *const *rs_pods, size_t n,
                            const cJSON *self, km_strmap *owners, const char **self_uid,
                            km_err *err)
{
    char path[768];
    for (size_t i = 0; i < n; i++)
        if (km_strmap_put(owners, rs_uid(rs_pods[i]), NULL, NULL) != KM_OK)
            return oom(err);
    if (self && km_podsel_route_of(self) == KM_ROUTE_REPLICASET &&
        km_strmap_put(owners, rs_uid(self), NULL, NULL) != KM_OK)
        return oom(err);
    if (km_kube_path(path, sizeof(path), "apps", "v1", p->ns, "replicasets", NULL, NULL))
        return km_err_set(err, KM_EINVAL, "namespace name too long");
    km_list_opts lo = {.limit = PAGE};
    p->reads++;
    km_status st = km_kube_list(p->kube, path, &lo, collect_rs, owners, NULL, err);
    if (st != KM_OK) {
        if (st == KM_ENOMEM)
            return oom(err);
        km_err_prefix(err, "list replicasets in %s", p->ns);
        return st;
    }
    for (size_t i = 0; i < n && st == KM_OK; i++) {
        const rs_owner *o = km_strmap_get(owners, rs_uid(rs_pods[i]));
        if (o && o->name)
            st = add_workload(p, KM_WL_DEPLOYMENT, o->name, o->uid, err);
        else /* standalone, or gone (the garbage collector deletes its pods anyway) */
            st = add_pod(&p->evict, rs_pods[i], err);
    }
    const rs_owner *so = self ? km_strmap_get(owners, rs_uid(self)) : NULL;
    if (so && so->uid)
        *self_uid = so->uid;
    return st;
}

/* ---- the plan ------------------------------------------------------------------------------- */

/* Sorts one stale pod by its controller reference; a ReplicaSet's pods are collected in rs_pods
 * for resolve_rs. */
static km_status sort_pod(km_pods_plan *p, const cJSON *pod, const cJSON ***rs_pods, size_t *n,
                          size_t *cap, km_err *err)
{
    const cJSON *c = km_podsel_controller(pod);
    switch (km_podsel_route_of(pod)) {
    case KM_ROUTE_OWNERLESS:
        return add_pod(&p->ownerless, pod, err);
    case KM_ROUTE_STATEFULSET:
        return add_workload(p, KM_WL_STATEFULSET, KM_JSON_STR(c, "name"), KM_JSON_STR(c, "uid"),
                            err);
    case KM_ROUTE_DAEMONSET:
        return add_workload(p, KM_WL_DAEMONSET, KM_JSON_STR(c, "name"), KM_JSON_STR(c, "uid"), err);
    case KM_ROUTE_REPLICASET:
        if (km_array_grow(rs_pods, *n, cap, sizeof(**rs_pods)) != KM_OK)
            return oom(err);
        (*rs_pods)[(*n)++] = pod;
        return KM_OK;
    case KM_ROUTE_EVICT:
        break;
    }
    return add_pod(&p->evict, pod, err);
}

/* Marks the workload owning kubemend's own pod (uid self_uid, or the pod's own StatefulSet /
 * DaemonSet). */
static void mark_self(km_pods_plan *p, const cJSON *self, const char *self_uid)
{
    km_podsel_route r = self ? km_podsel_route_of(self) : KM_ROUTE_OWNERLESS;
    if (r == KM_ROUTE_STATEFULSET || r == KM_ROUTE_DAEMONSET)
        self_uid = rs_uid(self);
    for (size_t i = 0; self_uid && i < p->nworkloads; i++)
        p->workloads[i].self = strcmp(p->workloads[i].uid, self_uid) == 0;
}

/* Sorts the listed pods: the stale ones into the plan (ReplicaSets resolved, workloads read). */
static km_status sort_pods(km_pods_plan *p, km_err *err)
{
    const cJSON **rs_pods = NULL, *pod, *self = NULL;
    const char *self_uid = NULL;
    size_t n = 0, cap = 0;
    km_status st = KM_OK;
    km_strmap *owners = km_strmap_new();
    if (!owners)
        return oom(err);
    cJSON_ArrayForEach(pod, p->pods)
    {
        const cJSON *sa = NULL;
        const char *name = KM_JSON_STR(pod, "metadata", "name");
        if (p->self_pod && name && strcmp(name, p->self_pod) == 0)
            self = pod;
        if (km_podsel_needs_sa(pod, p->rebuilt_at, p->include_default) &&
            (st = service_account(p, KM_JSON_STR(pod, "spec", "serviceAccountName"), &sa, err)))
            goto out;
        km_podsel_reason why = km_podsel_pod(pod, sa, p->rebuilt_at, p->include_default);
        if (why != KM_PODSEL_RESTART) {
            p->skipped[why]++;
            km_log_debug("pod skipped", "namespace", p->ns, "pod", name, "reason",
                         km_podsel_reason_str(why));
            continue;
        }
        if ((st = sort_pod(p, pod, &rs_pods, &n, &cap, err)) != KM_OK)
            goto out;
    }
    if (n > 0 && (st = resolve_rs(p, rs_pods, n, self, owners, &self_uid, err)) != KM_OK)
        goto out;
    for (int k = 0; k < KM_WL_KINDS && st == KM_OK; k++)
        st = read_kind(p, (km_wl_kind)k, err);
    mark_self(p, self, self_uid);
out:
    km_strmap_each(owners, free_rs_owner, NULL);
    km_strmap_free(owners);
    free(rs_pods);
    return st;
}

km_status km_pods_plan_make(km_pods_plan *p, km_err *err)
{
    char path[512];
    km_status st;
    if (!(p->pods = cJSON_CreateArray()) || !(p->index = km_strmap_new()) ||
        !(p->sa = km_strmap_new()))
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
    if ((st = sort_pods(p, err)) != KM_OK)
        return st;
    for (size_t i = 0; i < p->nworkloads; i++) {
        km_pods_workload *w = &p->workloads[i];
        if (w->obj)
            continue;
        p->gone++;
        km_log_info("pods: owner gone, being deleted or replaced since its pods were listed: "
                    "skipped",
                    "namespace", p->ns, "kind", km_wl_name(w->kind), "name", w->name, "uid",
                    w->uid);
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

void km_pods_plan_cleanup(km_pods_plan *p)
{
    for (size_t i = 0; i < p->nworkloads; i++) {
        free(p->workloads[i].name);
        free(p->workloads[i].uid);
        cJSON_Delete(p->workloads[i].obj);
    }
    free(p->workloads);
    p->workloads = NULL;
    p->nworkloads = p->capworkloads = 0;
    targets_free(&p->evict);
    targets_free(&p->ownerless);
    cJSON_Delete(p->pods);
    p->pods = NULL;
    km_strmap_free(p->index);
    if (p->sa)
        km_strmap_each(p->sa, free_json, NULL);
    km_strmap_free(p->sa);
    p->index = p->sa = NULL;
    memset(p->skipped, 0, sizeof(p->skipped));
    p->gone = p->reads = 0;
}
