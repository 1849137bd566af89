/* pods.c — the pod restart step (see pods.h; the pure rules live in podsel.c). */
#include "reconcilers/pods/pods.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/backoff.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/pods/podsel.h"
#include "watch/event.h"
#include "watch/lines.h"

#define LIST_MAX 50
#define WATCH_MAX_S 300
#define NKINDS 3

static const char *const KINDS[NKINDS] = {"Deployment", "StatefulSet", "DaemonSet"};

/* One workload kind of the current namespace, listed at most once: slim copies of the objects
 * (updated by our patches) and where a readiness watch continues. */
typedef struct kind_cache {
    cJSON *objs; /* object: name -> slim workload; NULL until listed */
    char rv[64]; /* resourceVersion a watch continues from; "" = list (again) first */
} kind_cache;

typedef struct rwatch rwatch;

typedef struct run {
    km_step_ctx *ctx;
    km_kube *k;
    cJSON *st; /* ctx->status */
    const char *started_at;
    char started_buf[32];
    int include_default, max_conc, wait_ready, delete_ownerless, dry_run;
    long ns_timeout, evict_timeout;
    int eviction_v1beta1; /* the server has no policy/v1 Eviction */
    int stuck_now;        /* things got stuck in this run */

    /* per namespace */
    const char *ns;
    cJSON *pods;      /* slim copies of the listed pods */
    cJSON *sa_cache;  /* object: SA name -> SA object or null (missing) */
    cJSON *rs_cache;  /* object: RS name -> Deployment name or "" */
    cJSON *workloads; /* array of {kind, name} */
    kind_cache wl[NKINDS];
    cJSON *evict;     /* array of pod names */
    cJSON *ownerless; /* array of pod names */
    long skipped[KM_PODSEL_DELETING + 1];

    /* readiness wait (whole step): one cluster-wide watch per kind, started lazily */
    pthread_mutex_t mu; /* guards pending (shared with the watch threads) */
    pthread_cond_t cv;  /* signalled when an entry of pending becomes ready */
    int sync_ok;        /* mu and cv initialised */
    cJSON *pending;     /* array of {ki, ns, name, gen (-1 = patch not answered yet), ready,
                           latest (slim object seen before gen was known)} */
    rwatch *rw[NKINDS];
} run;

static int cancelled(const run *r)
{
    return km_step_cancelled(r->ctx);
}

static void event(run *r, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void event(run *r, const char *type, const char *reason, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    km_step_event(r->ctx, type, reason, msg);
}

static void count(run *r, const char *status_key, const char *counter, long delta)
{
    if (status_key)
        km_step_counter_add(r->st, status_key, delta);
    km_step_count(r->ctx, counter, delta);
}

static km_status save(run *r, km_err *err)
{
    return km_step_save(r->ctx, err);
}

static km_status oom(km_err *err)
{
    return km_err_set(err, KM_ENOMEM, "pods: out of memory");
}

/* ---- namespaces ------------------------------------------------------------------------------ */

static km_status collect_ns(const km_kube_page *page, void *user)
{
    cJSON *names = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *n = KM_JSON_STR(it, "metadata", "name");
        const char *phase = KM_JSON_STR(it, "status", "phase");
        if (!n || (phase && strcmp(phase, "Terminating") == 0) || km_json_array_has_str(names, n))
            continue;
        cJSON *s = cJSON_CreateString(n);
        if (!s || !cJSON_AddItemToArray(names, s)) {
            cJSON_Delete(s);
            return KM_ENOMEM;
        }
    }
    return KM_OK;
}

static km_status list_namespaces(run *r, cJSON **order, km_err *err)
{
    char *sel = NULL;
    km_status st =
        km_podsel_label_selector(KM_JSON_AT(r->ctx->spec, "namespaceSelector"), &sel, err);
    if (st != KM_OK)
        return st;
    cJSON *names = cJSON_CreateArray();
    if (!names) {
        free(sel);
        return oom(err);
    }
    km_list_opts lo = {.label_selector = sel[0] ? sel : NULL, .limit = 500};
    st = km_kube_list(r->k, "/api/v1/namespaces", &lo, collect_ns, names, NULL, err);
    if (st == KM_OK && (st = km_podsel_order_namespaces(names, r->ctx->spec, order)) != KM_OK)
        oom(err);
    if (st != KM_OK)
        km_err_prefix(err, "list namespaces");
    cJSON_Delete(names);
    free(sel);
    return st;
}

/* ---- pods of one namespace ------------------------------------------------------------------- */

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
    run *r = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *name = KM_JSON_STR(it, "metadata", "name");
        if (!name)
            continue;
        if (page->restarted) { /* a restarted list may repeat pods */
            const cJSON *p;
            int dup = 0;
            cJSON_ArrayForEach(p, r->pods)
            {
                if (strcmp(KM_JSON_STR(p, "metadata", "name"), name) == 0)
                    dup = 1;
            }
            if (dup)
                continue;
        }
        cJSON *s = slim_pod(it);
        if (!s || !cJSON_AddItemToArray(r->pods, s)) {
            cJSON_Delete(s);
            return KM_ENOMEM;
        }
    }
    return KM_OK;
}

/* ---- workloads of one namespace (one list per kind, only when needed) -------------------------
 */

static const char *plural(const char *kind)
{
    if (strcmp(kind, "Deployment") == 0)
        return "deployments";
    if (strcmp(kind, "StatefulSet") == 0)
        return "statefulsets";
    return "daemonsets";
}

static int kind_index(const char *kind)
{
    for (int i = 0; i < NKINDS; i++) {
        if (strcmp(KINDS[i], kind) == 0)
            return i;
    }
    return -1;
}

/* Copies what the step needs of a workload: name, generation, selector, replicas, the restart
 * marker and status.  NULL when out of memory. */
static cJSON *slim_workload(const cJSON *obj)
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

/* Stores (replacing) the slim copy of obj in objs.  KM_ENOMEM on failure (objs unchanged). */
static km_status cache_put(cJSON *objs, const cJSON *obj)
{
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    if (!name)
        return KM_OK;
    cJSON *s = slim_workload(obj);
    if (!s)
        return KM_ENOMEM;
    int ok = cJSON_GetObjectItemCaseSensitive(objs, name)
                 ? cJSON_ReplaceItemInObjectCaseSensitive(objs, name, s)
                 : cJSON_AddItemToObject(objs, name, s);
    if (!ok) {
        cJSON_Delete(s);
        return KM_ENOMEM;
    }
    return KM_OK;
}

static km_status collect_workloads(const km_kube_page *page, void *user)
{
    kind_cache *c = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        if (cache_put(c->objs, it) != KM_OK)
            return KM_ENOMEM;
    }
    if (page->resource_version)
        snprintf(c->rv, sizeof(c->rv), "%s", page->resource_version);
    return KM_OK;
}

/* The namespace's workloads of KINDS[ki], listed on first use.  *out borrowed (object: name ->
 * slim workload).  Failure: the API error (the kind stays unlisted), KM_ENOMEM. */
static km_status workloads_of(run *r, int ki, const cJSON **out, km_err *err)
{
    kind_cache *c = &r->wl[ki];
    if (!c->objs) {
        char path[768];
        if (km_kube_path(path, sizeof(path), "apps", "v1", r->ns, plural(KINDS[ki]), NULL, NULL))
            return km_err_set(err, KM_EINVAL, "namespace name too long");
        cJSON *objs = cJSON_CreateObject();
        if (!objs)
            return oom(err);
        kind_cache tmp = {.objs = objs};
        km_list_opts lo = {.limit = 500};
        km_status st = km_kube_list(r->k, path, &lo, collect_workloads, &tmp, NULL, err);
        if (st != KM_OK) {
            cJSON_Delete(objs);
            if (st == KM_ENOMEM)
                return oom(err);
            km_err_prefix(err, "list %s in %s", plural(KINDS[ki]), r->ns);
            return st;
        }
        *c = tmp;
    }
    *out = c->objs;
    return KM_OK;
}

/* The pod's ServiceAccount from the namespace cache (GET on a miss).  *out borrowed or NULL. */
static km_status service_account(run *r, const char *name, const cJSON **out, km_err *err)
{
    *out = NULL;
    if (!name || !name[0])
        return KM_OK;
    cJSON *c = cJSON_GetObjectItemCaseSensitive(r->sa_cache, name);
    if (!c) {
        char path[768];
        if (km_kube_path(path, sizeof(path), NULL, "v1", r->ns, "serviceaccounts", name, NULL))
            return km_err_set(err, KM_EINVAL, "serviceaccount name too long");
        km_err e;
        km_err_clear(&e);
        km_status st = km_kube_get(r->k, path, &c, &e);
        if (st == KM_EAPI && e.http_code == 404) {
            c = cJSON_CreateNull();
        } else if (st != KM_OK) {
            if (err)
                *err = e;
            km_err_prefix(err, "get serviceaccount %s/%s", r->ns, name);
            return st;
        }
        if (!c || !cJSON_AddItemToObject(r->sa_cache, name, c)) {
            cJSON_Delete(c);
            return oom(err);
        }
    }
    *out = cJSON_IsNull(c) ? NULL : c;
    return KM_OK;
}

/* The Deployment owning ReplicaSet rs, the controlling owner of pod ("" when none), cached per
 * namespace: by the deployment controller's naming rule against the namespace's Deployments
 * (listed once; only with by_list), else from the ReplicaSet's own owner reference (GET). */
static km_status rs_owner(run *r, const cJSON *pod, const char *rs, int by_list,
                          const char **deploy, km_err *err)
{
    *deploy = "";
    cJSON *c = cJSON_GetObjectItemCaseSensitive(r->rs_cache, rs);
    const char *hash = KM_JSON_STR(pod, "metadata", "labels", KM_POD_TEMPLATE_HASH_LABEL);
    size_t rn = strlen(rs), hn = hash ? strlen(hash) : 0;
    if (!c && by_list && hn > 0 && rn > hn + 1 && rs[rn - hn - 1] == '-' &&
        strcmp(rs + rn - hn, hash) == 0) {
        const cJSON *deps = NULL;
        km_status st = workloads_of(r, 0, &deps, err);
        if (st != KM_OK)
            return st;
        char name[512];
        if (rn - hn - 1 < sizeof(name)) {
            memcpy(name, rs, rn - hn - 1);
            name[rn - hn - 1] = '\0';
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(deps, name);
            if (d && km_podsel_rs_of_deployment(rs, pod, d)) {
                c = cJSON_CreateString(name);
                if (!c || !cJSON_AddItemToObject(r->rs_cache, rs, c)) {
                    cJSON_Delete(c);
                    return oom(err);
                }
            }
        }
    }
    if (!c) {
        char path[768];
        cJSON *obj = NULL;
        if (km_kube_path(path, sizeof(path), "apps", "v1", r->ns, "replicasets", rs, NULL))
            return km_err_set(err, KM_EINVAL, "replicaset name too long");
        km_err e;
        km_err_clear(&e);
        km_status st = km_kube_get(r->k, path, &obj, &e);
        if (st != KM_OK && !(st == KM_EAPI && e.http_code == 404)) {
            if (err)
                *err = e;
            km_err_prefix(err, "get replicaset %s/%s", r->ns, rs);
            return st;
        }
        const cJSON *o = km_podsel_owner(obj);
        const char *kind = KM_JSON_STR(o, "kind");
        const char *name = KM_JSON_STR(o, "name");
        c = (kind && name && strcmp(kind, "Deployment") == 0) ? cJSON_CreateString(name)
                                                              : cJSON_CreateString("");
        cJSON_Delete(obj);
        if (!c || !cJSON_AddItemToObject(r->rs_cache, rs, c)) {
            cJSON_Delete(c);
            return oom(err);
        }
    }
    *deploy = cJSON_IsString(c) ? c->valuestring : "";
    return KM_OK;
}

static km_status add_name(cJSON *arr, const char *name, km_err *err)
{
    cJSON *s = cJSON_CreateString(name);
    if (!s || !cJSON_AddItemToArray(arr, s)) {
        cJSON_Delete(s);
        return oom(err);
    }
    return KM_OK;
}

/* Adds {kind, name} to the namespace's workloads once; *entry (may be NULL) borrows it. */
static km_status add_workload(run *r, const char *kind, const char *name, cJSON **entry,
                              km_err *err)
{
    cJSON *w;
    cJSON_ArrayForEach(w, r->workloads)
    {
        if (strcmp(KM_JSON_STR(w, "kind"), kind) == 0 &&
            strcmp(KM_JSON_STR(w, "name"), name) == 0) {
            if (entry)
                *entry = w;
            return KM_OK;
        }
    }
    cJSON *o = cJSON_CreateObject();
    if (!o || km_json_set_str(o, "kind", kind) || km_json_set_str(o, "name", name) ||
        !cJSON_AddItemToArray(r->workloads, o)) {
        cJSON_Delete(o);
        return oom(err);
    }
    if (entry)
        *entry = o;
    return KM_OK;
}

/* The Deployment name the deployment controller's naming rule gives ReplicaSet rs of pod (rs ==
 * name + "-" + the pod's pod-template-hash label) into buf.  0 when the rule does not apply. */
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

/* Records that pod (of ReplicaSet rs) presumably belongs to Deployment deploy (naming rule, not
 * yet verified): workloads gets {kind: Deployment, name, guesses: {rs: {pod: {metadata:
 * {labels}}, pods: [names]}}}; the patch response verifies it (verify_guesses). */
static km_status add_guess(run *r, const char *deploy, const char *rs, const cJSON *pod,
                           km_err *err)
{
    cJSON *w = NULL;
    km_status st = add_workload(r, "Deployment", deploy, &w, err);
    if (st != KM_OK)
        return st;
    cJSON *gs = km_json_obj(w, "guesses");
    cJSON *g = gs ? cJSON_GetObjectItemCaseSensitive(gs, rs) : NULL;
    if (gs && !g) {
        const cJSON *labels = KM_JSON_AT(pod, "metadata", "labels");
        cJSON *md = NULL;
        if (!(g = cJSON_CreateObject()) || !cJSON_AddItemToObject(gs, rs, g))
            goto fail_g;
        if (!(md = cJSON_AddObjectToObject(cJSON_AddObjectToObject(g, "pod"), "metadata")) ||
            !cJSON_AddItemToObject(md, "labels",
                                   labels ? cJSON_Duplicate(labels, 1) : cJSON_CreateObject()) ||
            !cJSON_AddArrayToObject(g, "pods"))
            return oom(err);
    }
    if (!g)
        return oom(err);
    return add_name(cJSON_GetObjectItemCaseSensitive(g, "pods"),
                    KM_JSON_STR(pod, "metadata", "name"), err);
fail_g:
    cJSON_Delete(g);
    return oom(err);
}

/* Selects the namespace's pods and sorts them into workloads / evictions / ownerless. */
static km_status plan_namespace(run *r, km_err *err)
{
    char path[512];
    km_status st;
    if (km_kube_path(path, sizeof(path), NULL, "v1", r->ns, "pods", NULL, NULL))
        return km_err_set(err, KM_EINVAL, "namespace name too long");
    km_list_opts lo = {.limit = 500};
    if (!r->include_default)
        lo.field_selector = "spec.serviceAccountName!=default";
    if ((st = km_kube_list(r->k, path, &lo, collect_pods, r, NULL, err)) != KM_OK) {
        km_err_prefix(err, "list pods in %s", r->ns);
        return st;
    }
    const cJSON *pod;
    cJSON_ArrayForEach(pod, r->pods)
    {
        const char *name = KM_JSON_STR(pod, "metadata", "name");
        const cJSON *sa = NULL;
        if (km_podsel_needs_sa(pod, r->started_at, r->include_default) &&
            (st = service_account(r, KM_JSON_STR(pod, "spec", "serviceAccountName"), &sa, err)))
            return st;
        km_podsel_reason why = km_podsel_pod(pod, sa, r->started_at, r->include_default);
        if (why != KM_PODSEL_RESTART) {
            r->skipped[why]++;
            km_log_debug("pod skipped", "namespace", r->ns, "pod", name, "reason",
                         km_podsel_reason_str(why));
            continue;
        }
        const cJSON *owner = km_podsel_owner(pod);
        const char *kind = KM_JSON_STR(owner, "kind");
        const char *oname = KM_JSON_STR(owner, "name");
        if (!owner || !kind || !oname) {
            st = add_name(r->ownerless, name, err);
        } else if (strcmp(kind, "ReplicaSet") == 0) {
            const char *deploy = "";
            char guess[512];
            if (!r->dry_run && !cJSON_GetObjectItemCaseSensitive(r->rs_cache, oname) &&
                deploy_guess(pod, oname, guess, sizeof(guess))) {
                /* verified by the patch response (no list, no GET) */
                st = add_guess(r, guess, oname, pod, err);
            } else {
                if ((st = rs_owner(r, pod, oname, r->dry_run, &deploy, err)) != KM_OK)
                    return st;
                st = deploy[0] ? add_workload(r, "Deployment", deploy, NULL, err)
                               : add_name(r->evict, name, err);
            }
        } else if (strcmp(kind, "StatefulSet") == 0 || strcmp(kind, "DaemonSet") == 0) {
            st = add_workload(r, kind, oname, NULL, err);
        } else {
            st = add_name(r->evict, name, err);
        }
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

/* ---- rollout restarts --------------------------------------------------------------------------
 */

static cJSON *current_obj(run *r)
{
    return km_json_obj(r->st, "current");
}

/* Dry run: decides whether one workload would be restarted; the namespace's list of its kind (no
 * GET) says whether it still exists and already carries this recovery's marker.  Records it in
 * the current namespace's status and emits a WouldRestartWorkload event; nothing is written to
 * the cluster.  Failure: KM_ENOMEM or the list's error. */
static km_status dry_run_workload(run *r, const char *kind, const char *name, km_err *err)
{
    char key[512];
    km_status st;
    snprintf(key, sizeof(key), "%s/%.400s", kind, name);
    cJSON *cur = current_obj(r);
    if (!cur)
        return oom(err);
    int ki = kind_index(kind);
    const cJSON *objs = NULL;
    if (ki < 0 || km_json_array_has_str(KM_JSON_AT(cur, "restarted"), key))
        return KM_OK;
    if ((st = workloads_of(r, ki, &objs, err)) != KM_OK)
        return st;
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(objs, name);
    if (!obj) { /* gone: nothing to restart */
        km_log_info("pods: workload not found, skipped", "namespace", r->ns, "workload", key);
        return KM_OK;
    }
    if (km_step_list_add(cur, "restarted", key, 1 << 30) != KM_OK)
        return oom(err);
    count(r, "restarted", "pods_restarted_total", 1);
    if (km_podsel_restarted_since(obj, r->started_at))
        km_log_info("workload already restarted by this recovery", "namespace", r->ns, "workload",
                    key);
    else
        event(r, "Normal", "WouldRestartWorkload", "would restart %s/%s (dry run)", r->ns, key);
    return save(r, err);
}

/* ---- waiting for readiness: one cluster-wide watch per kind for the whole step ----------------
 * The watch threads judge events of the workloads in r->pending only (nothing else is held); the
 * step thread registers a workload before patching it (events seen before the patch response
 * arrive are kept as "latest"), sets its generation from the response and waits on r->cv. */

struct rwatch {
    run *r;
    int ki;
    km_kube *k;      /* the thread's own connection */
    atomic_int stop; /* cancel flag of k */
    pthread_t th;
    km_lines *lines;
    char rv[64]; /* where the watch continues; "" = resync (410) first */
    int relist;  /* the stream ended with an ERROR event */
};

/* The pending entry of KINDS[ki] ns/name, or NULL.  Caller holds r->mu. */
static cJSON *pending_find(run *r, int ki, const char *ns, const char *name)
{
    cJSON *it;
    cJSON_ArrayForEach(it, r->pending)
    {
        if ((int)KM_JSON_NUM(it, -1, "ki") == ki && ns && name &&
            strcmp(KM_JSON_STR(it, "ns"), ns) == 0 && strcmp(KM_JSON_STR(it, "name"), name) == 0)
            return it;
    }
    return NULL;
}

/* Judges one observed state of entry e (caller holds r->mu): ready when deleted, or at least at
 * the generation our patch produced and ready by km_podsel_workload_ready; before the patch
 * response (gen -1) the state is kept as latest.  Allocation failures only lose the hint. */
static void judge(run *r, cJSON *e, const cJSON *obj, int deleted)
{
    if (KM_JSON_NUM(e, 0, "ready") != 0)
        return;
    double gen = KM_JSON_NUM(e, -1, "gen");
    if (gen < 0) {
        cJSON *s = deleted ? cJSON_CreateNull() : slim_workload(obj);
        if (!s)
            return;
        if (cJSON_GetObjectItemCaseSensitive(e, "latest"))
            cJSON_ReplaceItemInObjectCaseSensitive(e, "latest", s);
        else if (!cJSON_AddItemToObject(e, "latest", s))
            cJSON_Delete(s);
        return;
    }
    int ki = (int)KM_JSON_NUM(e, 0, "ki");
    if (deleted || (KM_JSON_NUM(obj, 0, "metadata", "generation") >= gen &&
                    km_podsel_workload_ready(KINDS[ki], obj))) {
        km_json_set_num(e, "ready", 1);
        pthread_cond_broadcast(&r->cv);
    }
}

static void observe_obj(run *r, int ki, const cJSON *obj, int deleted)
{
    pthread_mutex_lock(&r->mu);
    cJSON *e = pending_find(r, ki, KM_JSON_STR(obj, "metadata", "namespace"),
                            KM_JSON_STR(obj, "metadata", "name"));
    if (e)
        judge(r, e, obj, deleted);
    pthread_mutex_unlock(&r->mu);
}

static km_status watch_line(const char *line, size_t len, void *user)
{
    rwatch *w = user;
    km_event ev;
    if (km_event_parse(line, len, &ev, NULL) != KM_OK)
        return KM_OK; /* ignore a malformed line */
    if (ev.type == KM_EV_ERROR) {
        w->relist = 1;
        km_event_cleanup(&ev);
        return KM_ECANCELED;
    }
    if (ev.resource_version)
        snprintf(w->rv, sizeof(w->rv), "%s", ev.resource_version);
    if (ev.type != KM_EV_BOOKMARK)
        observe_obj(w->r, w->ki, ev.object, ev.type == KM_EV_DELETED);
    km_event_cleanup(&ev);
    return KM_OK;
}

static km_status watch_chunk(const char *data, size_t len, void *user)
{
    rwatch *w = user;
    if (atomic_load(&w->stop))
        return KM_ECANCELED;
    return km_lines_feed(w->lines, data, len);
}

static km_status first_page_rv(const km_kube_page *page, void *user)
{
    rwatch *w = user;
    snprintf(w->rv, sizeof(w->rv), "%s", page->resource_version ? page->resource_version : "");
    return KM_ECANCELED; /* one page (limit=1) is enough: only its resourceVersion counts */
}

/* After 410: a current resourceVersion (list limit=1), then a GET of every workload of this kind
 * still waited for.  w->rv is set only when all of it worked. */
static void watch_resync(rwatch *w, const char *path)
{
    run *r = w->r;
    km_list_opts lo = {.limit = 1};
    w->rv[0] = '\0';
    km_kube_list(w->k, path, &lo, first_page_rv, w, NULL, NULL);
    if (!w->rv[0])
        return;
    char rv[64];
    memcpy(rv, w->rv, sizeof(rv));
    w->rv[0] = '\0';
    pthread_mutex_lock(&r->mu);
    cJSON *names = cJSON_CreateArray();
    const cJSON *it;
    cJSON_ArrayForEach(it, r->pending)
    {
        if ((int)KM_JSON_NUM(it, -1, "ki") != w->ki || KM_JSON_NUM(it, 0, "ready") != 0)
            continue;
        cJSON *c = cJSON_CreateObject();
        if (!c || km_json_set_str(c, "ns", KM_JSON_STR(it, "ns")) ||
            km_json_set_str(c, "name", KM_JSON_STR(it, "name")) || !cJSON_AddItemToArray(names, c))
            cJSON_Delete(c);
    }
    pthread_mutex_unlock(&r->mu);
    if (!names)
        return;
    int ok = 1;
    cJSON_ArrayForEach(it, names)
    {
        char opath[768];
        if (km_kube_path(opath, sizeof(opath), "apps", "v1", KM_JSON_STR(it, "ns"),
                         plural(KINDS[w->ki]), KM_JSON_STR(it, "name"), NULL))
            continue;
        cJSON *obj = NULL;
        km_err e;
        km_err_clear(&e);
        km_status st = km_kube_get(w->k, opath, &obj, &e);
        if (st == KM_OK) {
            observe_obj(r, w->ki, obj, 0);
        } else if (st == KM_EAPI && e.http_code == 404) {
            cJSON *gone = cJSON_CreateObject();
            cJSON *md = gone ? cJSON_AddObjectToObject(gone, "metadata") : NULL;
            if (md && !km_json_set_str(md, "namespace", KM_JSON_STR(it, "ns")) &&
                !km_json_set_str(md, "name", KM_JSON_STR(it, "name")))
                observe_obj(r, w->ki, gone, 1);
            cJSON_Delete(gone);
        } else {
            ok = 0;
        }
        cJSON_Delete(obj);
    }
    cJSON_Delete(names);
    if (ok)
        memcpy(w->rv, rv, sizeof(rv));
}

static void *watch_main(void *arg)
{
    rwatch *w = arg;
    char path[128], wpath[320];
    snprintf(path, sizeof(path), "/apis/apps/v1/%s", plural(KINDS[w->ki]));
    while (!atomic_load(&w->stop)) {
        if (!w->rv[0]) {
            watch_resync(w, path);
            if (!w->rv[0]) {
                km_clock_sleep(1.0, &w->stop);
                continue;
            }
        }
        snprintf(wpath, sizeof(wpath),
                 "%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d", path,
                 w->rv, WATCH_MAX_S);
        km_lines_reset(w->lines);
        w->relist = 0;
        time_t began = time(NULL);
        km_err e;
        km_err_clear(&e);
        km_status st = km_kube_stream(w->k, wpath, (WATCH_MAX_S + 30) * 1000L, watch_chunk, w, &e);
        if (atomic_load(&w->stop))
            break;
        if (w->relist || (st == KM_EAPI && e.http_code == 410))
            w->rv[0] = '\0'; /* too old: resync the waited-for workloads */
        else if (st != KM_OK && time(NULL) - began < 1)
            km_clock_sleep(1.0,
                           &w->stop); /* a stream that fails at once must not become a busy loop */
    }
    return NULL;
}

/* Starts the watch of KINDS[ki] from rv unless it runs.  Failure: KM_ENOMEM / KM_EIO / the clone's
 * error (nothing started). */
static km_status watch_start(run *r, int ki, const char *rv, km_err *err)
{
    if (r->rw[ki])
        return KM_OK;
    rwatch *w = calloc(1, sizeof(*w));
    if (!w)
        return oom(err);
    w->r = r;
    w->ki = ki;
    atomic_init(&w->stop, 0);
    snprintf(w->rv, sizeof(w->rv), "%s", rv ? rv : "");
    km_status st = km_kube_clone(r->k, &w->k, err);
    if (st != KM_OK)
        goto fail;
    km_kube_set_cancel(w->k, &w->stop);
    if ((st = km_lines_new(0, KM_LINES_SKIP, watch_line, w, &w->lines)) != KM_OK) {
        st = oom(err);
        goto fail;
    }
    if (pthread_create(&w->th, NULL, watch_main, w) != 0) {
        st = km_err_set(err, KM_EIO, "pods: cannot start the readiness watch thread");
        goto fail;
    }
    r->rw[ki] = w;
    return KM_OK;
fail:
    km_lines_free(w->lines);
    km_kube_free(w->k);
    free(w);
    return st;
}

static void watches_stop(run *r)
{
    for (int i = 0; i < NKINDS; i++) {
        rwatch *w = r->rw[i];
        if (!w)
            continue;
        atomic_store(&w->stop, 1);
        pthread_join(w->th, NULL);
        km_lines_free(w->lines);
        km_kube_free(w->k);
        free(w);
        r->rw[i] = NULL;
    }
}

/* Registers KINDS[ki] r->ns/name as waited for (generation unknown until set_gen). */
static km_status pending_add(run *r, int ki, const char *name, km_err *err)
{
    cJSON *e = cJSON_CreateObject();
    if (!e || km_json_set_num(e, "ki", ki) || km_json_set_str(e, "ns", r->ns) ||
        km_json_set_str(e, "name", name) || km_json_set_num(e, "gen", -1) ||
        km_json_set_num(e, "ready", 0)) {
        cJSON_Delete(e);
        return oom(err);
    }
    pthread_mutex_lock(&r->mu);
    int ok = cJSON_AddItemToArray(r->pending, e);
    pthread_mutex_unlock(&r->mu);
    if (!ok) {
        cJSON_Delete(e);
        return oom(err);
    }
    return KM_OK;
}

static void pending_drop(run *r, int ki, const char *name)
{
    pthread_mutex_lock(&r->mu);
    cJSON *e = pending_find(r, ki, r->ns, name);
    if (e)
        cJSON_Delete(cJSON_DetachItemViaPointer(r->pending, e));
    pthread_mutex_unlock(&r->mu);
}

/* The rollout of the entry starts at generation gen; obj (the patch response / GET) and what the
 * watch saw meanwhile are judged. */
static void pending_set_gen(run *r, int ki, const char *name, double gen, const cJSON *obj)
{
    pthread_mutex_lock(&r->mu);
    cJSON *e = pending_find(r, ki, r->ns, name);
    if (e) {
        cJSON *latest = cJSON_DetachItemFromObjectCaseSensitive(e, "latest");
        km_json_set_num(e, "gen", gen);
        judge(r, e, obj, 0);
        if (latest)
            judge(r, e, latest, cJSON_IsNull(latest));
        cJSON_Delete(latest);
    }
    pthread_mutex_unlock(&r->mu);
}

/* Waits until every pending workload is ready or deadline passes; reports the others as stuck
 * and empties pending.  Failure: KM_ECANCELED, KM_ENOMEM. */
static km_status wait_pending(run *r, time_t deadline, km_err *err)
{
    km_status st = KM_OK;
    cJSON *fresh = cJSON_CreateArray();
    if (!fresh)
        return oom(err);
    pthread_mutex_lock(&r->mu);
    for (;;) {
        int all = 1;
        const cJSON *it;
        cJSON_ArrayForEach(it, r->pending)
        {
            if (KM_JSON_NUM(it, 0, "ready") == 0)
                all = 0;
        }
        if (all || time(NULL) >= deadline)
            break;
        if (cancelled(r)) {
            st = KM_ECANCELED;
            break;
        }
        struct timespec ts = km_clock_deadline(CLOCK_REALTIME, 0.2);
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    cJSON *done = r->pending;
    r->pending = fresh;
    pthread_mutex_unlock(&r->mu);
    if (st != KM_OK) {
        cJSON_Delete(done);
        return km_err_set(err, KM_ECANCELED, "pods step cancelled");
    }
    const cJSON *n;
    cJSON_ArrayForEach(n, done)
    {
        if (KM_JSON_NUM(n, 0, "ready") != 0)
            continue;
        char key[1024];
        const char *kind = KINDS[(int)KM_JSON_NUM(n, 0, "ki")];
        const char *name = KM_JSON_STR(n, "name");
        snprintf(key, sizeof(key), "%s/%s/%s", r->ns, kind, name);
        if (km_step_list_add(r->st, "stuck", key, LIST_MAX) != KM_OK)
            st = oom(err);
        r->stuck_now = 1;
        count(r, NULL, "pods_stuck_total", 1);
        event(r, "Warning", "WorkloadStuck",
              "%s %s/%s not rolled out and ready within namespaceTimeoutSeconds (%ld s)", kind,
              r->ns, name, r->ns_timeout);
    }
    cJSON_Delete(done);
    return st;
}

/* ---- rollout restarts without a list: PATCH by name, verify with the response -----------------
 */

/* Checks the naming-rule guesses of Deployment entry w against deploy (the patch response; NULL
 * when it does not exist): a ReplicaSet whose pods deploy's selector does not match is resolved
 * from its own owner reference (GET) — another Deployment joins the namespace's workloads, no
 * Deployment means its pods are evicted. */
static km_status verify_guesses(run *r, const cJSON *w, const cJSON *deploy, km_err *err)
{
    const char *name = KM_JSON_STR(w, "name");
    const cJSON *g;
    cJSON_ArrayForEach(g, KM_JSON_AT(w, "guesses"))
    {
        const cJSON *pod = KM_JSON_AT(g, "pod");
        if (deploy && km_podsel_rs_of_deployment(g->string, pod, deploy))
            continue;
        const char *owner = "";
        km_status st = rs_owner(r, pod, g->string, 0, &owner, err);
        if (st != KM_OK)
            return st;
        if (owner[0] && strcmp(owner, name) == 0)
            continue; /* deploy's after all (adopted), or gone with it */
        if (owner[0]) {
            if ((st = add_workload(r, "Deployment", owner, NULL, err)) != KM_OK)
                return st;
            continue;
        }
        const cJSON *p;
        cJSON_ArrayForEach(p, KM_JSON_AT(g, "pods"))
        {
            if ((st = add_name(r->evict, p->valuestring, err)) != KM_OK)
                return st;
        }
    }
    return KM_OK;
}

/* Restarts workload entry w ({kind, name[, guesses]}) by a strategic-merge PATCH (idempotent: the
 * same marker again changes nothing), or — when current.restarted already names it (a resumed
 * step) — GETs it for the readiness wait only.  *waiting = 1 when it was registered for the
 * readiness wait.  Failure: the API error (404 = gone: skipped), KM_ENOMEM. */
static km_status restart_live(run *r, const cJSON *w, int *waiting, km_err *err)
{
    const char *kind = KM_JSON_STR(w, "kind");
    const char *name = KM_JSON_STR(w, "name");
    char key[512], path[768], patch[512];
    km_status st;
    *waiting = 0;
    int ki = kind_index(kind);
    cJSON *cur = current_obj(r);
    if (!cur)
        return oom(err);
    if (ki < 0)
        return KM_OK;
    snprintf(key, sizeof(key), "%s/%.400s", kind, name);
    if (km_kube_path(path, sizeof(path), "apps", "v1", r->ns, plural(kind), name, NULL))
        return km_err_set(err, KM_EINVAL, "workload name too long");
    int resumed = km_json_array_has_str(KM_JSON_AT(cur, "restarted"), key);
    if (r->wait_ready && (st = pending_add(r, ki, name, err)) != KM_OK)
        return st;
    cJSON *obj = NULL;
    km_err e;
    km_err_clear(&e);
    if (resumed) {
        st = km_kube_get(r->k, path, &obj, &e);
    } else {
        snprintf(
            patch, sizeof(patch),
            "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"" KM_RESTARTED_AT_ANNOTATION
            "\":\"%s\"}}}}}",
            r->started_at);
        st = km_kube_patch(r->k, path, KM_PATCH_STRATEGIC, patch, &obj, &e);
    }
    if (st != KM_OK) {
        pending_drop(r, ki, name);
        if (st == KM_EAPI && e.http_code == 404) {
            km_log_info("pods: workload not found, skipped", "namespace", r->ns, "workload", key);
            return resumed ? KM_OK : verify_guesses(r, w, NULL, err);
        }
        if (err)
            *err = e;
        km_err_prefix(err, "%s %s %s/%s", resumed ? "get" : "restart", kind, r->ns, name);
        return st;
    }
    if (!resumed && (st = verify_guesses(r, w, obj, err)) != KM_OK)
        goto out;
    if (!resumed) {
        const char *mark = KM_JSON_STR(obj, "spec", "template", "metadata", "annotations",
                                       KM_RESTARTED_AT_ANNOTATION);
        if (!mark || strcmp(mark, r->started_at) != 0)
            km_log_warn("pods: restart marker not in the patch response", "namespace", r->ns,
                        "workload", key);
        /* counted once per recovery: current.restarted is saved right after */
        if (km_step_list_add(cur, "restarted", key, 1 << 30) != KM_OK) {
            st = oom(err);
            goto out;
        }
        count(r, "restarted", "pods_restarted_total", 1);
        event(r, "Normal", "WorkloadRestarted", "rollout restart of %s/%s", r->ns, key);
        if ((st = save(r, err)) != KM_OK)
            goto out;
    } else {
        km_log_info("workload already restarted by this recovery", "namespace", r->ns, "workload",
                    key);
    }
    if (r->wait_ready) {
        /* the rollout starts at the patched generation; older states must not count as ready */
        pending_set_gen(r, ki, name, KM_JSON_NUM(obj, 0, "metadata", "generation"), obj);
        *waiting = 1;
        if ((st = watch_start(r, ki, KM_JSON_STR(obj, "metadata", "resourceVersion"), err)) !=
            KM_OK)
            goto out;
    }
    st = KM_OK;
out:
    if (st != KM_OK && !*waiting)
        pending_drop(r, ki, name);
    cJSON_Delete(obj);
    return st;
}

static km_status restart_workloads(run *r, time_t deadline, km_err *err)
{
    km_status st = KM_OK;
    /* verify_guesses may append workloads: the size is read each round */
    for (int i = 0; i < cJSON_GetArraySize(r->workloads); i += r->max_conc) {
        int waiting = 0;
        for (int j = i; j < cJSON_GetArraySize(r->workloads) && j < i + r->max_conc; j++) {
            if (cancelled(r)) {
                st = km_err_set(err, KM_ECANCELED, "pods step cancelled");
                break;
            }
            const cJSON *w = cJSON_GetArrayItem(r->workloads, j);
            int one = 0; /* 1 when a rollout was started and must be waited for */
            if (r->dry_run)
                st = dry_run_workload(r, KM_JSON_STR(w, "kind"), KM_JSON_STR(w, "name"), err);
            else
                st = restart_live(r, w, &one, err);
            if (st != KM_OK)
                break;
            waiting |= one;
        }
        if (st == KM_OK && r->wait_ready && waiting)
            st = wait_pending(r, deadline, err);
        if (st != KM_OK) {
            pthread_mutex_lock(&r->mu);
            cJSON *left = r->pending;
            r->pending = cJSON_CreateArray();
            pthread_mutex_unlock(&r->mu);
            cJSON_Delete(left);
            return st;
        }
    }
    return KM_OK;
}

/* ---- evictions, ownerless pods --------------------------------------------------------------- */

static km_status post_eviction(run *r, const char *pod, int v1beta1, long *code, km_err *err)
{
    char path[768], body[1024];
    if (km_kube_path(path, sizeof(path), NULL, "v1", r->ns, "pods", pod, "eviction"))
        return km_err_set(err, KM_EINVAL, "pod name too long");
    int n = snprintf(body, sizeof(body),
                     "{\"apiVersion\":\"policy/%s\",\"kind\":\"Eviction\",\"metadata\":{\"name\":"
                     "\"%s\",\"namespace\":\"%s\"}}",
                     v1beta1 ? "v1beta1" : "v1", pod, r->ns);
    km_kube_req req = {
        .method = "POST", .path = path, .body = body, .body_len = (size_t)n, .no_retry = 1};
    *code = 0;
    return km_kube_do(r->k, &req, code, NULL, err);
}

static km_status evict_pod(run *r, const char *pod, km_err *err)
{
    char key[1024];
    snprintf(key, sizeof(key), "%s/Pod/%s", r->ns, pod);
    if (r->dry_run) {
        count(r, "evicted", "pods_evicted_total", 1);
        event(r, "Normal", "WouldEvictPod", "would evict pod %s/%s (dry run)", r->ns, pod);
        return KM_OK;
    }
    km_backoff bo;
    km_backoff_init(&bo, 1.0, 15.0, 2.0, 0.2);
    time_t deadline = time(NULL) + r->evict_timeout;
    for (;;) {
        km_err e;
        km_err_clear(&e);
        long code = 0;
        km_status st = post_eviction(r, pod, r->eviction_v1beta1, &code, &e);
        if (st == KM_EAPI && !r->eviction_v1beta1 && (code == 400 || code == 404)) {
            /* no policy/v1 Eviction on this server (< 1.22): the fixture's 400; or the pod is gone
             */
            km_err_clear(&e);
            st = post_eviction(r, pod, 1, &code, &e);
            if (st == KM_OK || (st == KM_EAPI && code != 400 && code != 404)) {
                r->eviction_v1beta1 = 1;
                km_log_info("pods: server has no policy/v1 Eviction, using policy/v1beta1");
            }
        }
        if (st == KM_OK) {
            count(r, "evicted", "pods_evicted_total", 1);
            event(r, "Normal", "PodEvicted", "evicted pod %s/%s", r->ns, pod);
            return save(r, err);
        }
        if (st == KM_EAPI && code == 404)
            return KM_OK; /* already gone */
        int retryable = st == KM_ETRANSPORT || (st == KM_EAPI && (code == 429 || code >= 500));
        if (!retryable) {
            if (err)
                *err = e;
            km_err_prefix(err, "evict pod %s/%s", r->ns, pod);
            return st;
        }
        double delay = km_backoff_next(&bo, km_backoff_rand());
        if (e.retry_after > 0 && (double)e.retry_after > delay)
            delay = (double)e.retry_after;
        time_t now = time(NULL);
        if (now + (time_t)delay >= deadline) {
            if (km_step_list_add(r->st, "stuck", key, LIST_MAX) != KM_OK)
                return oom(err);
            r->stuck_now = 1;
            count(r, NULL, "pods_stuck_total", 1);
            event(r, "Warning", "EvictionBlocked",
                  "pod %s/%s could not be evicted within evictionTimeoutSeconds (%ld s): %s", r->ns,
                  pod, r->evict_timeout, e.message);
            return save(r, err);
        }
        km_log_info("pods: eviction refused, retrying", "namespace", r->ns, "pod", pod, "code",
                    KM_LOG_INT(code), "delay", KM_LOG_DBL(delay));
        if (km_clock_sleep(delay, r->ctx->cancel) != KM_OK)
            return km_err_set(err, KM_ECANCELED, "pods step cancelled");
    }
}

static km_status handle_ownerless(run *r, const char *pod, km_err *err)
{
    char key[1024];
    snprintf(key, sizeof(key), "%s/%s", r->ns, pod);
    if (!r->delete_ownerless) {
        if (km_json_array_has_str(KM_JSON_AT(r->st, "manual"), key))
            return KM_OK;
        if (km_step_list_add(r->st, "manual", key, LIST_MAX) != KM_OK)
            return oom(err);
        count(r, NULL, "pods_manual_total", 1);
        event(r, "Warning", "NeedsManualRestart",
              "pod %s has no owner and uses a stale service-account token: restart it by hand "
              "(it would be lost if deleted; spec.pods.deleteOwnerlessPods allows deleting it)",
              key);
        return KM_OK;
    }
    if (r->dry_run) {
        count(r, "deleted", "pods_deleted_total", 1);
        event(r, "Normal", "WouldDeletePod", "would delete ownerless pod %s (dry run)", key);
        return KM_OK;
    }
    char path[768];
    if (km_kube_path(path, sizeof(path), NULL, "v1", r->ns, "pods", pod, NULL))
        return km_err_set(err, KM_EINVAL, "pod name too long");
    km_err e;
    km_err_clear(&e);
    km_status st = km_kube_delete(r->k, path, NULL, NULL, &e);
    if (st == KM_EAPI && e.http_code == 404)
        return KM_OK;
    if (st != KM_OK) {
        if (err)
            *err = e;
        km_err_prefix(err, "delete pod %s", key);
        return st;
    }
    count(r, "deleted", "pods_deleted_total", 1);
    event(r, "Normal", "OwnerlessPodDeleted", "deleted ownerless pod %s (deleteOwnerlessPods)",
          key);
    return save(r, err);
}

/* ---- the step ----------------------------------------------------------------------------------
 */

static void ns_reset(run *r)
{
    cJSON_Delete(r->pods);
    cJSON_Delete(r->sa_cache);
    cJSON_Delete(r->rs_cache);
    cJSON_Delete(r->workloads);
    cJSON_Delete(r->evict);
    cJSON_Delete(r->ownerless);
    r->pods = r->sa_cache = r->rs_cache = r->workloads = r->evict = r->ownerless = NULL;
    for (int i = 0; i < NKINDS; i++) {
        cJSON_Delete(r->wl[i].objs);
        r->wl[i].objs = NULL;
        r->wl[i].rv[0] = '\0';
    }
}

static km_status do_namespace(run *r, const char *ns, km_err *err)
{
    km_status st;
    r->ns = ns;
    memset(r->skipped, 0, sizeof(r->skipped));
    r->pods = cJSON_CreateArray();
    r->sa_cache = cJSON_CreateObject();
    r->rs_cache = cJSON_CreateObject();
    r->workloads = cJSON_CreateArray();
    r->evict = cJSON_CreateArray();
    r->ownerless = cJSON_CreateArray();
    if (!r->pods || !r->sa_cache || !r->rs_cache || !r->workloads || !r->evict || !r->ownerless)
        return oom(err);
    cJSON *cur = current_obj(r);
    if (!cur)
        return oom(err);
    const char *cur_ns = KM_JSON_STR(cur, "namespace");
    if (!cur_ns || strcmp(cur_ns, ns) != 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(cur, "restarted");
        if (km_json_set_str(cur, "namespace", ns) || !cJSON_AddArrayToObject(cur, "restarted"))
            return oom(err);
    }
    if (km_json_set_str(r->st, "currentNamespace", ns))
        return oom(err);
    if ((st = save(r, err)) != KM_OK)
        return st;
    time_t deadline = time(NULL) + r->ns_timeout;
    if ((st = plan_namespace(r, err)) != KM_OK)
        return st;
    km_log_info("pods: namespace planned", "namespace", ns, "workloads",
                KM_LOG_INT(cJSON_GetArraySize(r->workloads)), "evictions",
                KM_LOG_INT(cJSON_GetArraySize(r->evict)), "ownerless",
                KM_LOG_INT(cJSON_GetArraySize(r->ownerless)), "skippedNoToken",
                KM_LOG_INT(r->skipped[KM_PODSEL_NO_TOKEN]), "skippedNew",
                KM_LOG_INT(r->skipped[KM_PODSEL_NEW]));
    if ((st = restart_workloads(r, deadline, err)) != KM_OK)
        return st;
    const cJSON *p;
    cJSON_ArrayForEach(p, r->evict)
    {
        if (cancelled(r))
            return km_err_set(err, KM_ECANCELED, "pods step cancelled");
        if ((st = evict_pod(r, p->valuestring, err)) != KM_OK)
            return st;
    }
    cJSON_ArrayForEach(p, r->ownerless)
    {
        if ((st = handle_ownerless(r, p->valuestring, err)) != KM_OK)
            return st;
    }
    return KM_OK;
}

static km_status pods_step(km_step_ctx *ctx, km_err *err)
{
    km_status st;
    cJSON *order = NULL;
    run r;
    memset(&r, 0, sizeof(r));
    r.ctx = ctx;
    r.k = ctx->kube;
    r.st = ctx->status;
    r.dry_run = ctx->dry_run;
    r.include_default = km_step_bool(ctx, "includeDefaultServiceAccount");
    r.max_conc = (int)km_step_int(ctx, "maxConcurrent");
    if (r.max_conc < 1)
        r.max_conc = 1;
    r.wait_ready = km_step_bool(ctx, "waitForReady") && !r.dry_run;
    r.delete_ownerless = km_step_bool(ctx, "deleteOwnerlessPods");
    r.ns_timeout = km_step_int(ctx, "namespaceTimeoutSeconds");
    r.evict_timeout = km_step_int(ctx, "evictionTimeoutSeconds");
    r.started_at = ctx->started_at;
    if (!(r.pending = cJSON_CreateArray()))
        return oom(err);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    r.sync_ok = 1;
    time_t t;
    if (km_clock_parse(r.started_at, &t) != KM_OK) {
        /* no start recorded: the restart marker needs one; use now */
        km_clock_now_text(r.started_buf, sizeof(r.started_buf));
        r.started_at = r.started_buf;
        km_log_warn("pods: recovery has no startedAt, using now", "startedAt", r.started_at);
    }

    if ((st = list_namespaces(&r, &order, err)) != KM_OK)
        goto out;
    cJSON *done = cJSON_GetObjectItemCaseSensitive(r.st, "done");
    if (!cJSON_IsArray(done)) {
        cJSON_DeleteItemFromObjectCaseSensitive(r.st, "done");
        if (!(done = cJSON_AddArrayToObject(r.st, "done"))) {
            st = oom(err);
            goto out;
        }
    }
    int total = cJSON_GetArraySize(order);
    if (km_json_set_num(r.st, "namespacesTotal", total) != KM_OK) {
        st = oom(err);
        goto out;
    }
    const cJSON *ns;
    cJSON_ArrayForEach(ns, order)
    {
        if (km_json_array_has_str(done, ns->valuestring))
            continue;
        if (cancelled(&r)) {
            st = km_err_set(err, KM_ECANCELED, "pods step cancelled");
            goto out;
        }
        char text[512];
        snprintf(text, sizeof(text), "pods %d/%d namespaces (%.200s)", cJSON_GetArraySize(done),
                 total, ns->valuestring);
        if (ctx->progress)
            ctx->progress(ctx, text);
        st = do_namespace(&r, ns->valuestring, err);
        ns_reset(&r);
        if (st != KM_OK)
            goto out;
        if (km_step_list_add(r.st, "done", ns->valuestring, 1 << 30) != KM_OK) {
            st = oom(err);
            goto out;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(r.st, "current");
        km_json_set_num(r.st, "namespacesDone", cJSON_GetArraySize(done));
        km_json_set_str(r.st, "currentNamespace", "");
        if ((st = save(&r, err)) != KM_OK)
            goto out;
    }
    km_json_set_num(r.st, "namespacesDone", cJSON_GetArraySize(done));
    km_json_set_str(r.st, "currentNamespace", "");
    char text[128];
    snprintf(text, sizeof(text), "pods %d/%d namespaces", cJSON_GetArraySize(done), total);
    if (ctx->progress)
        ctx->progress(ctx, text);
    long restarted = (long)KM_JSON_NUM(r.st, 0, "restarted");
    long evicted = (long)KM_JSON_NUM(r.st, 0, "evicted");
    long deleted = (long)KM_JSON_NUM(r.st, 0, "deleted");
    int nstuck = cJSON_GetArraySize(KM_JSON_AT(r.st, "stuck"));
    int nmanual = cJSON_GetArraySize(KM_JSON_AT(r.st, "manual"));
    const char *dry = r.dry_run ? "dry run: would have " : "";
    if (nstuck > 0)
        km_step_set_result(ctx, "False", "WorkloadsStuck",
                           "%srestarted %ld workloads, evicted %ld pods, deleted %ld in %d "
                           "namespaces; %d stuck (see status.pods.stuck), %d need a manual restart",
                           dry, restarted, evicted, deleted, total, nstuck, nmanual);
    else
        km_step_set_result(ctx, "True", r.dry_run ? "DryRun" : "PodsRestarted",
                           "%srestarted %ld workloads, evicted %ld pods, deleted %ld in %d "
                           "namespaces; %d ownerless pods need a manual restart",
                           dry, restarted, evicted, deleted, total, nmanual);
    st = save(&r, err);
out:
    watches_stop(&r); /* ends the readiness watches (no thread touches r after this) */
    ns_reset(&r);
    cJSON_Delete(order);
    cJSON_Delete(r.pending);
    if (r.sync_ok) {
        pthread_cond_destroy(&r.cv);
        pthread_mutex_destroy(&r.mu);
    }
    return st;
}

/* The CRD's CEL rule: includeNamespaces and excludeNamespaces are disjoint. */
static km_status check_spec(const cJSON *blk, km_err *err)
{
    const cJSON *exc = cJSON_GetObjectItemCaseSensitive(blk, "excludeNamespaces");
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(blk, "includeNamespaces"))
    {
        if (km_json_array_has_str(exc, it->valuestring))
            return km_err_set(err, KM_EINVAL,
                              "spec.pods: namespace \"%s\" is both in includeNamespaces and "
                              "excludeNamespaces",
                              it->valuestring);
    }
    return KM_OK;
}

static const km_field fields[] = {
    {"enabled", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"includeDefaultServiceAccount", KM_FIELD_BOOL, 0, 0, 0, NULL},
    {"namespaces", KM_FIELD_STRLIST, 0, 0, 1000, NULL},
    {"includeNamespaces", KM_FIELD_STRLIST, 0, 0, 256, NULL},
    {"excludeNamespaces", KM_FIELD_STRLIST, 0, 0, 256, NULL},
    {"namespaceSelector", KM_FIELD_SELECTOR, 0, 0, 0, NULL},
    {"maxConcurrent", KM_FIELD_INT, 5, 1, 100, NULL},
    {"waitForReady", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"namespaceTimeoutSeconds", KM_FIELD_INT, 600, 1, 2147483647, NULL},
    {"evictionTimeoutSeconds", KM_FIELD_INT, 300, 1, 2147483647, NULL},
    {"deleteOwnerlessPods", KM_FIELD_BOOL, 0, 0, 0, NULL},
    KM_FIELD_END,
};

const km_step_def km_pods_def = {
    .key = "pods",
    .flag = "pods",
    .cond = "PodsRestarted",
    .fail_reason = "PodsFailed",
    .fields = fields,
    .check = check_spec,
    .run = pods_step,
};
