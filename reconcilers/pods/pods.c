/* pods.c — the pods step (see pods.h): namespace by namespace, each planned
 * (reconcilers/pods/owners.h) and restarted (reconcilers/pods/restart.h); progress in status. */
#include "reconcilers/pods/pods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/num.h"
#include "operator/base/log.h"
#include "operator/kube/pool.h"
#include "reconcilers/pods/owners.h"
#include "reconcilers/pods/pace.h"
#include "reconcilers/pods/podsel.h"
#include "reconcilers/pods/restart.h"
#include "reconcilers/pods/tokengate.h"
#include "reconcilers/pods/verify.h"

#define GATE_STALL_S 60 /* the token gate goes ahead after this long without progress */

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

/* The namespaces to visit, in order (reconcilers/pods/podsel.h): *order is a new array of
 * names.  Failure: the list's error, KM_EINVAL (bad selector), KM_ENOMEM. */
static km_status list_namespaces(km_step_ctx *ctx, cJSON **order, km_err *err)
{
    char *sel = NULL;
    km_status st = km_podsel_label_selector(KM_JSON_AT(ctx->spec, "namespaceSelector"), &sel, err);
    if (st != KM_OK)
        return st;
    cJSON *names = cJSON_CreateArray();
    if (!names) {
        free(sel);
        return oom(err);
    }
    km_list_opts lo = {.label_selector = sel[0] ? sel : NULL, .limit = 500};
    st = km_kube_list(ctx->kube, "/api/v1/namespaces", &lo, collect_ns, names, NULL, err);
    if (st == KM_OK && (st = km_podsel_order_namespaces(names, ctx->spec, order)) != KM_OK)
        oom(err);
    if (st != KM_OK)
        km_err_prefix(err, "list namespaces");
    cJSON_Delete(names);
    free(sel);
    return st;
}

/* One attempt of list_namespaces (km_pods_retried). */
static km_status namespaces_attempt(km_pods_restarter *rs, void *order, km_err *err)
{
    return list_namespaces(rs->ctx, order, err);
}

/* status.pods.current as an array of {namespace, restarted} (an object from an older status
 * becomes its one entry).  NULL when out of memory. */
static cJSON *current_list(cJSON *status)
{
    cJSON *cur = cJSON_GetObjectItemCaseSensitive(status, "current");
    if (cJSON_IsArray(cur))
        return cur;
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return NULL;
    if (cJSON_IsObject(cur) && KM_JSON_STR(cur, "namespace"))
        cJSON_AddItemToArray(arr, cJSON_DetachItemViaPointer(status, cur));
    cJSON_DeleteItemFromObjectCaseSensitive(status, "current");
    cJSON_AddItemToObject(status, "current", arr);
    return arr;
}

/* status.pods.currentNamespace: the namespaces in progress, comma-separated. */
static void current_names(cJSON *status, cJSON *list)
{
    char names[256] = "";
    size_t len = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        const char *n = KM_JSON_STR(it, "namespace");
        int w = n ? snprintf(names + len, sizeof(names) - len, "%s%s", len ? "," : "", n) : 0;
        if (w < 0 || (size_t)w >= sizeof(names) - len) {
            names[len] = '\0';
            break;
        }
        len += (size_t)w;
    }
    km_json_set_str(status, "currentNamespace", names);
}

static void progress(km_step_ctx *ctx, int done, int total, const char *ns);

/* Marks ns as in progress: its entry in status.pods.current (kept from an earlier attempt, so a
 * workload handled then is counted once), rs->cur; saved.  Under the status lock. */
static km_status enter_namespace(km_pods_restarter *rs, const char *ns, km_err *err)
{
    km_step_ctx *ctx = rs->ctx;
    km_status st = KM_OK;
    km_pods_pace_lock(rs->pace);
    cJSON *list = current_list(ctx->status), *it, *entry = NULL;
    cJSON_ArrayForEach(it, list)
    {
        const char *n = KM_JSON_STR(it, "namespace");
        if (n && strcmp(n, ns) == 0)
            entry = it;
    }
    if (list && !entry && (entry = cJSON_CreateObject()) != NULL &&
        (km_json_set_str(entry, "namespace", ns) || !cJSON_AddArrayToObject(entry, "restarted") ||
         !cJSON_AddItemToArray(list, entry))) {
        cJSON_Delete(entry);
        entry = NULL;
    }
    if (!list || !entry) {
        st = oom(err);
    } else {
        rs->cur = entry;
        current_names(ctx->status, list);
        progress(ctx, cJSON_GetArraySize(KM_JSON_AT(ctx->status, "done")),
                 (int)KM_JSON_NUM(ctx->status, 0, "namespacesTotal"),
                 KM_JSON_STR(ctx->status, "currentNamespace"));
        st = km_step_save(ctx, err);
    }
    km_pods_pace_unlock(rs->pace);
    return st;
}

/* One attempt of planning namespace p (km_pods_retried): what an earlier one planned is dropped. */
static km_status plan_attempt(km_pods_restarter *rs, void *p, km_err *err)
{
    (void)rs;
    km_pods_plan_cleanup(p);
    return km_pods_plan_make(p, err);
}

/* How a namespace meets the token gate (token_gate). */
typedef enum gate_mode {
    GATE_WAIT,  /* wait for the refill, up to GATE_STALL_S without progress */
    GATE_DEFER, /* look once; not refilled yet: deferred, the gate handed to the caller */
    GATE_LOOK,  /* look once; not refilled yet: go ahead (the wait for it is over) */
} gate_mode;

/* Before namespace p's pods are restarted: waits until the token Secrets its stale pods mount
 * hold a token (tokengate.h; the tokens controller may still be refilling them).  After
 * GATE_STALL_S without progress (GATE_LOOK: at once) it goes ahead (Warning Event
 * TokensNotRefilled).  GATE_DEFER only looks once: when something is not refilled yet *deferred
 * receives the gate with what the namespace wants (caller frees it with km_pods_gate_free) and
 * the caller comes back to the namespace later instead of holding a worker.  Failure: the
 * list's error, KM_ECANCELED, KM_ENOMEM; *deferred untouched. */
static km_status token_gate(km_pods_restarter *rs, km_pods_plan *p, gate_mode mode,
                            km_pods_gate **deferred, km_err *err)
{
    km_step_ctx *ctx = rs->ctx;
    km_status st = KM_OK;
    size_t left = 0;
    char first[256];
    const cJSON *pod;
    if (rs->dry_run || p->nworkloads + p->evict.n + p->ownerless.n == 0)
        return KM_OK;
    km_pods_gate *g = km_pods_gate_new();
    if (!g)
        return oom(err);
    cJSON_ArrayForEach(pod, p->pods)
    {
        if (km_podsel_pod(pod, NULL, p->rebuilt_at, p->include_default) == KM_PODSEL_RESTART &&
            km_pods_gate_want_pod(g, pod) != KM_OK) {
            st = oom(err);
            goto out;
        }
    }
    if (km_pods_gate_wants(g) == 0)
        goto out;
    double t0 = km_clock_mono();
    st = km_pods_gate_wait(g, rs->kube, p->ns, mode == GATE_WAIT ? GATE_STALL_S : 0, ctx->cancel,
                           &left, first, sizeof(first), err);
    if (st != KM_OK)
        goto out;
    if (mode == GATE_DEFER && left > 0) {
        km_log_info("pods: namespace deferred: token Secrets its pods mount not refilled yet",
                    "namespace", p->ns, "notRefilled", KM_LOG_INT((long)left), "example", first);
        *deferred = g;
        g = NULL;
        goto out;
    }
    km_log_info("pods: token Secrets checked", "namespace", p->ns, "mounted",
                KM_LOG_INT((long)km_pods_gate_wants(g)), "notRefilled", KM_LOG_INT((long)left),
                "waitedMs", KM_LOG_INT((long)((km_clock_mono() - t0) * 1000)));
    if (left > 0)
        km_step_eventf(ctx, "Warning", "TokensNotRefilled",
                       "namespace %s: %zu token Secret(s) its stale pods mount still hold no token "
                       "after %ds without progress (e.g. %s); restarting anyway",
                       p->ns, left, GATE_STALL_S, first);
out:
    km_pods_gate_free(g);
    return st;
}

/* One namespace: plan, restart the workloads, evict, handle the ownerless pods.  With
 * GATE_DEFER, a namespace whose mounted token Secrets are not refilled yet is left at once
 * (*deferred receives its gate, nothing restarted; token_gate). */
static km_status do_namespace(km_pods_restarter *rs, const char *ns, gate_mode mode,
                              km_pods_gate **deferred, km_err *err)
{
    km_step_ctx *ctx = rs->ctx;
    const char *own_ns = getenv("POD_NAMESPACE"), *own_pod = getenv("POD_NAME");
    km_pods_plan p = {
        .kube = rs->kube,
        .ns = ns,
        .rebuilt_at = rs->rebuilt_at,
        .include_default = km_step_bool(ctx, "includeDefaultServiceAccount"),
        .self_pod = own_ns && own_pod && own_pod[0] && strcmp(own_ns, ns) == 0 ? own_pod : NULL};
    km_status st = enter_namespace(rs, ns, err);
    double deadline = km_clock_mono() + (double)rs->ns_timeout;
    if (st == KM_OK && (st = km_pods_retried(rs, deadline, plan_attempt, &p, err)) == KM_OK)
        km_log_info("pods: namespace planned", "namespace", ns, "workloads",
                    KM_LOG_INT((long)p.nworkloads), "evictions", KM_LOG_INT((long)p.evict.n),
                    "ownerless", KM_LOG_INT((long)p.ownerless.n), "ownerReads", KM_LOG_INT(p.reads),
                    "gone", KM_LOG_INT(p.gone), "skippedNoToken",
                    KM_LOG_INT(p.skipped[KM_PODSEL_NO_TOKEN]), "skippedNew",
                    KM_LOG_INT(p.skipped[KM_PODSEL_NEW]));
    if (st == KM_OK)
        st = token_gate(rs, &p, mode, deferred, err);
    if (st == KM_OK && *deferred) {
        km_pods_plan_cleanup(&p);
        return KM_OK;
    }
    if (st == KM_OK)
        st = km_pods_restart(rs, &p, deadline, err);
    for (size_t i = 0; st == KM_OK && i < p.evict.n; i++)
        st = km_step_cancelled(ctx) ? km_err_set(err, KM_ECANCELED, "pods step cancelled")
                                    : km_pods_evict(rs, &p, &p.evict.v[i], err);
    for (size_t i = 0; st == KM_OK && i < p.ownerless.n; i++)
        st = km_pods_ownerless(rs, &p, &p.ownerless.v[i], deadline, err);
    km_pods_plan_cleanup(&p);
    return st;
}

/* ns is done: status.pods.done, namespacesDone, its entry out of current; saved.  Under the
 * status lock. */
static km_status leave_namespace(km_pods_restarter *rs, const char *ns, km_err *err)
{
    km_step_ctx *ctx = rs->ctx;
    km_status st;
    km_pods_pace_lock(rs->pace);
    cJSON *list = current_list(ctx->status);
    if (!list || km_step_list_add(ctx->status, "done", ns, 1 << 30) != KM_OK) {
        st = oom(err);
    } else {
        if (rs->cur)
            cJSON_Delete(cJSON_DetachItemViaPointer(list, rs->cur));
        rs->cur = NULL;
        km_json_set_num(ctx->status, "namespacesDone",
                        cJSON_GetArraySize(KM_JSON_AT(ctx->status, "done")));
        current_names(ctx->status, list);
        st = km_step_save(ctx, err);
    }
    km_pods_pace_unlock(rs->pace);
    return st;
}

static void progress(km_step_ctx *ctx, int done, int total, const char *ns)
{
    char text[512];
    if (ns)
        snprintf(text, sizeof(text), "pods %d/%d namespaces (%.200s)", done, total, ns);
    else
        snprintf(text, sizeof(text), "pods %d/%d namespaces", done, total);
    if (ctx->progress)
        ctx->progress(ctx, text);
}

/* The step's condition from what status.pods counted. */
static void result(km_step_ctx *ctx, int total)
{
    const cJSON *st = ctx->status;
    long restarted = KM_JSON_LONG(st, 0, "restarted");
    long already = KM_JSON_LONG(st, 0, "alreadyRestarted");
    long evicted = KM_JSON_LONG(st, 0, "evicted");
    long deleted = KM_JSON_LONG(st, 0, "deleted");
    int nstuck = cJSON_GetArraySize(KM_JSON_AT(st, "stuck"));
    int nmanual = cJSON_GetArraySize(KM_JSON_AT(st, "manual"));
    const char *dry = ctx->dry_run ? "dry run: would have " : "";
    const char *self = KM_JSON_STR(st, "self", "action");
    char when[KM_CLOCK_TEXT_MAX], tail[160] = "";
    km_clock_format_s(ctx->rebuilt_at, when, sizeof(when));
    if (self && strcmp(self, "Skipped") != 0)
        snprintf(tail, sizeof(tail), "; kubemend's own %s comes last",
                 KM_JSON_STR(st, "self", "workload"));
    if (nstuck > 0)
        km_step_set_result(ctx, "False", "WorkloadsStuck",
                           "pods created before the rebuild (%s): %srestarted %ld workloads (%ld "
                           "already restarted since), evicted %ld pods, deleted %ld in %d "
                           "namespaces; %d stuck (see status.pods.stuck), %d need a manual "
                           "restart%s",
                           when, dry, restarted, already, evicted, deleted, total, nstuck, nmanual,
                           tail);
    else
        km_step_set_result(ctx, "True", ctx->dry_run ? "DryRun" : "PodsRestarted",
                           "pods created before the rebuild (%s): %srestarted %ld workloads (%ld "
                           "already restarted since), evicted %ld pods, deleted %ld in %d "
                           "namespaces; %d ownerless pods need a manual restart%s",
                           when, dry, restarted, already, evicted, deleted, total, nmanual, tail);
}

/* status.pods.done as an array (a resumed step skips those namespaces). */
static cJSON *done_list(km_step_ctx *ctx)
{
    cJSON *done = cJSON_GetObjectItemCaseSensitive(ctx->status, "done");
    if (cJSON_IsArray(done))
        return done;
    cJSON_DeleteItemFromObjectCaseSensitive(ctx->status, "done");
    return cJSON_AddArrayToObject(ctx->status, "done");
}

/* ---- kubemend's own workload --------------------------------------------------------------- */

/* Non-zero when kubemend's own token is proven valid: its credentials are its pod's in-cluster
 * service-account token and the server accepts them (this step runs on them).  A bound token is
 * refreshed by the kubelet, and a pod started after the rebuild has a new one. */
static int own_token_valid(km_step_ctx *ctx)
{
    const char *src = km_kubeconfig_source(km_kube_config(ctx->kube));
    return src && strcmp(src, "in-cluster") == 0 && !km_kube_credentials_rejected(ctx->kube);
}

/* status.pods.self for the own workload met in the loop: Skipped (own token valid), else
 * RestartLast (the `last` hook restarts it once the recovery's status is final). */
static km_status self_decide(km_step_ctx *ctx, const km_pods_self *self, km_err *err)
{
    char wl[640];
    snprintf(wl, sizeof(wl), "%s/%s/%s", self->ns, km_wl_name(self->kind), self->name);
    cJSON *o = km_json_obj(ctx->status, "self");
    int valid = own_token_valid(ctx);
    const char *action = valid ? "Skipped" : ctx->dry_run ? "WouldRestartLast" : "RestartLast";
    const char *had = KM_JSON_STR(o, "action");
    if (had && strcmp(had, "Restarted") == 0)
        return KM_OK;
    if (!o || km_json_set_str(o, "workload", wl) || km_json_set_str(o, "uid", self->uid) ||
        km_json_set_str(o, "action", action) ||
        km_json_set_str(o, "message",
                        valid ? "kubemend's own token is valid (its in-cluster "
                                "credentials are accepted): not restarted"
                              : "restarted after everything else, once the "
                                "recovery's status is final"))
        return oom(err);
    km_log_info("pods: kubemend's own workload", "workload", wl, "action", action);
    return km_step_save(ctx, err);
}

/* The step's `last` hook: restarts kubemend's own workload when status.pods.self says so. */
static km_status pods_last(km_step_ctx *ctx, km_err *err)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(ctx->status, "self");
    const char *action = KM_JSON_STR(o, "action"), *wl = KM_JSON_STR(o, "workload");
    const char *uid = KM_JSON_STR(o, "uid");
    km_pods_self self = {.found = 1};
    char kind[64];
    int done = 0;
    if (!action || strcmp(action, "RestartLast") != 0 || !wl || !uid || ctx->dry_run)
        return KM_OK;
    if (sscanf(wl, "%255[^/]/%63[^/]/%255s", self.ns, kind, self.name) != 3)
        return km_err_set(err, KM_EINVAL, "status.pods.self.workload: %s", wl);
    for (int k = 0; k < KM_WL_KINDS; k++)
        if (strcmp(kind, km_wl_name((km_wl_kind)k)) == 0)
            self.kind = (km_wl_kind)k;
    snprintf(self.uid, sizeof(self.uid), "%s", uid);
    km_err e;
    km_err_clear(&e);
    km_status st = km_pods_restart_self(ctx, ctx->rebuilt_at, &self, &done, &e);
    char msg[700];
    if (st == KM_OK) {
        km_json_set_str(o, "action", done ? "Restarted" : "AlreadyRestarted");
        snprintf(msg, sizeof(msg), "rollout restart of kubemend's own %s, after everything else",
                 wl);
        km_json_set_str(o, "message", msg);
        km_step_event(ctx, "Normal", done ? "OwnWorkloadRestarted" : "OwnWorkloadAlreadyRestarted",
                      msg);
    } else {
        char ebuf[512];
        km_err_str(&e, ebuf, sizeof(ebuf));
        snprintf(msg, sizeof(msg),
                 "kubemend's own %s could not be restarted (%s): restart it by hand", wl, ebuf);
        km_json_set_str(o, "action", "Failed");
        km_json_set_str(o, "message", msg);
        km_step_event(ctx, "Warning", "OwnWorkloadNotRestarted", msg);
        if (err)
            *err = e;
    }
    km_status sst = km_step_save(ctx, st == KM_OK ? err : NULL);
    return st != KM_OK ? st : sst;
}

/* ---- namespaces in parallel ------------------------------------------------------------------ */

/* What the namespace workers share. */
typedef struct par {
    const km_pods_restarter *proto; /* the step's settings */
    km_pods_pace *pace;             /* the status lock, the global budget */
    km_pods_self self;              /* kubemend's own workload, when a worker met it */
    int stuck;
    cJSON *deferred;  /* names deferred in the first round, in order (under the pace's lock) */
    km_strmap *gates; /* deferred name -> its km_pods_gate, until it is handed on (same lock) */
} par;

/* A pool unit: one namespace and how it meets the token gate. */
typedef struct ns_work {
    gate_mode mode;
    char ns[];
} ns_work;

/* A unit for ns (borrowed).  Caller frees it with free(); NULL when out of memory. */
static ns_work *ns_work_new(const char *ns, gate_mode mode)
{
    size_t n = strlen(ns) + 1;
    ns_work *w = malloc(sizeof(*w) + n);
    if (w) {
        w->mode = mode;
        memcpy(w->ns, ns, n);
    }
    return w;
}

static int free_gate(const char *ns, void *gate, void *user)
{
    (void)ns;
    (void)user;
    km_pods_gate_free(gate);
    return 0;
}

/* A deferred namespace (pace lock held) leaves status.pods.current unless an earlier attempt
 * already restarted some of its workloads (then its entry keeps them counted once). */
static void set_aside(km_pods_restarter *rs)
{
    cJSON *list = current_list(rs->ctx->status);
    if (!list || !rs->cur || cJSON_GetArraySize(KM_JSON_AT(rs->cur, "restarted")) > 0)
        return;
    cJSON_Delete(cJSON_DetachItemViaPointer(list, rs->cur));
    rs->cur = NULL;
    current_names(rs->ctx->status, list);
}

/* A pool unit (an ns_work, freed here) on the worker's own client. */
static km_status ns_unit(km_kube *kube, void *unit, void *user, km_err *err)
{
    par *pa = user;
    ns_work *w = unit;
    km_pods_restarter rs = *pa->proto;
    memset(rs.wait, 0, sizeof(rs.wait)); /* its own readiness watches, on its own client */
    memset(&rs.self, 0, sizeof(rs.self));
    rs.kube = kube;
    rs.pace = pa->pace;
    rs.cur = NULL;
    rs.stuck = 0;
    km_pods_gate *gate = NULL;
    km_status st = km_step_cancelled(rs.ctx) ? km_err_set(err, KM_ECANCELED, "pods step cancelled")
                                             : do_namespace(&rs, w->ns, w->mode, &gate, err);
    if (st == KM_OK && !gate)
        st = leave_namespace(&rs, w->ns, err);
    km_pods_pace_lock(pa->pace);
    if (st == KM_OK && gate) {
        set_aside(&rs);
        if (!cJSON_AddItemToArray(pa->deferred, cJSON_CreateString(w->ns)) ||
            km_strmap_put(pa->gates, w->ns, gate, NULL) != KM_OK)
            st = oom(err);
        else
            gate = NULL;
    }
    if (rs.self.found && !pa->self.found)
        pa->self = rs.self;
    pa->stuck |= rs.stuck;
    km_pods_pace_unlock(pa->pace);
    km_pods_gate_free(gate);
    km_pods_restarter_cleanup(&rs);
    free(w);
    return st;
}

/* Submits namespace ns with mode.  Failure: the pool's (an earlier unit's error), KM_ENOMEM. */
static km_status submit_one(km_pool *pool, const char *ns, gate_mode mode, km_err *err)
{
    ns_work *w = ns_work_new(ns, mode);
    return w ? km_pool_submit(pool, w, err) : oom(err);
}

/* Submits the namespaces from `from` on that are not in done.  Failure: as submit_one. */
static km_status submit_from(km_pool *pool, const cJSON *from, const cJSON *done, gate_mode mode,
                             km_err *err)
{
    km_status st = KM_OK;
    for (const cJSON *ns = from; st == KM_OK && ns; ns = ns->next) {
        if (!km_json_array_has_str(done, ns->valuestring))
            st = submit_one(pool, ns->valuestring, mode, err);
    }
    return st;
}

/* The namespaces deferred in the first round (pa->deferred, pa->gates; the first round is over,
 * no worker adds to them), in the order their token Secrets are refilled: every
 * KM_PODS_GATE_POLL_S one cluster-wide list of token Secrets judges all their gates
 * (km_pods_gates_see_all), and a namespace whose mounted Secrets all hold a token goes to the
 * pool.  The tokens controller's order is not the namespaces': after a PKI rebuild it first
 * rewrites every token Secret's ca.crt, and a Secret it passed before kubemend's write waits at
 * the back of its queue.  After GATE_STALL_S without progress the rest go ahead, each looking
 * once more (GATE_LOOK: Warning TokensNotRefilled for what is still missing).  Failure: a list
 * error that is not transient, an earlier unit's error, KM_ECANCELED, KM_ENOMEM. */
static km_status dispatch_deferred(par *pa, km_kube *kube, km_pool *pool, const atomic_int *cancel,
                                   km_err *err)
{
    km_status st = KM_OK;
    size_t waiting = km_strmap_len(pa->gates);
    km_pods_gate_progress pr;
    km_pods_gate_progress_start(&pr);
    double t0 = pr.since;
    while (waiting > 0) {
        km_err e;
        km_err_clear(&e);
        size_t missing = 0;
        int stalled = 0;
        km_status listed = km_pods_gates_see_all(kube, pa->gates, &e);
        for (const cJSON *n = pa->deferred->child; listed == KM_OK && n; n = n->next) {
            km_pods_gate *g = km_strmap_get(pa->gates, n->valuestring);
            size_t left = g ? km_pods_gate_missing(g, NULL, 0) : 0;
            missing += left;
            if (!g || left > 0)
                continue;
            km_log_info("pods: deferred namespace refilled", "namespace", n->valuestring,
                        "waitedMs", KM_LOG_INT((long)((km_clock_mono() - t0) * 1000)));
            km_pods_gate_free(km_strmap_remove(pa->gates, n->valuestring));
            waiting--;
            if ((st = submit_one(pool, n->valuestring, GATE_WAIT, err)) != KM_OK)
                return st;
        }
        st = km_pods_gate_progress_poll(&pr, listed, &e, NULL, missing, GATE_STALL_S, &stalled);
        if (st != KM_OK) {
            if (err)
                *err = e;
            return st;
        }
        if (waiting == 0 || stalled)
            break;
        if (km_clock_sleep(KM_PODS_GATE_POLL_S, cancel) != KM_OK)
            return km_err_set(err, KM_ECANCELED, "pods step cancelled");
    }
    if (waiting > 0)
        km_log_info("pods: deferred namespaces go ahead: nothing more refilled", "namespaces",
                    KM_LOG_INT((long)waiting), "seconds", KM_LOG_INT(GATE_STALL_S));
    for (const cJSON *n = pa->deferred->child; st == KM_OK && n; n = n->next) {
        km_pods_gate *g = km_strmap_remove(pa->gates, n->valuestring);
        if (g) {
            km_pods_gate_free(g);
            st = submit_one(pool, n->valuestring, GATE_LOOK, err);
        }
    }
    return st;
}

/* The namespaces from `from` on (those not done) by `parallel` workers, each on its own client
 * (operator/kube/pool.h), at most rs->max_conc workloads restarting at once across them
 * (pace.h).  A namespace whose mounted token Secrets are not refilled yet does not hold a
 * worker: it is deferred, and after the others handed on as its Secrets are refilled
 * (dispatch_deferred).  rs->self / rs->stuck get what the workers met.  Failure: the first
 * namespace's error (the others stop at their next unit), KM_ENOMEM, a clone's error. */
static km_status run_parallel(km_pods_restarter *rs, const cJSON *from, const cJSON *done,
                              int parallel, km_err *err)
{
    par pa = {.proto = rs, .deferred = cJSON_CreateArray(), .gates = km_strmap_new()};
    km_pool *pool = NULL;
    km_status st =
        pa.deferred && pa.gates ? km_pods_pace_new(rs->max_conc, &pa.pace, err) : oom(err);
    if (st == KM_OK)
        st = km_pool_new(rs->kube, parallel, ns_unit, free, &pa, &pool, err);
    if (st == KM_OK)
        st = submit_from(pool, from, done, GATE_DEFER, err);
    km_status wst = pool ? km_pool_wait(pool, st == KM_OK ? err : NULL) : KM_OK;
    if (st == KM_OK)
        st = wst;
    if (st == KM_OK && cJSON_GetArraySize(pa.deferred) > 0) {
        km_log_info("pods: the deferred namespaces now, as their token Secrets are refilled",
                    "namespaces", KM_LOG_INT(cJSON_GetArraySize(pa.deferred)));
        st = dispatch_deferred(&pa, rs->kube, pool, rs->ctx->cancel, err);
        wst = km_pool_wait(pool, st == KM_OK ? err : NULL);
        if (st == KM_OK)
            st = wst;
    }
    km_pool_free(pool);
    cJSON_Delete(pa.deferred);
    if (pa.gates)
        km_strmap_each(pa.gates, free_gate, NULL);
    km_strmap_free(pa.gates);
    if (pa.pace)
        km_log_info("pods: namespaces in parallel", "workers", KM_LOG_INT(parallel), "budget",
                    KM_LOG_INT(rs->max_conc), "peakRestarting",
                    KM_LOG_INT(km_pods_pace_peak(pa.pace)));
    km_pods_pace_free(pa.pace);
    if (pa.self.found && !rs->self.found)
        rs->self = pa.self;
    rs->stuck |= pa.stuck;
    return st;
}

static km_status pods_step(km_step_ctx *ctx, km_err *err)
{
    cJSON *order = NULL, *done = NULL;
    if (ctx->rebuilt_at <= 0)
        return km_err_set(err, KM_ESTATE,
                          "the PKI rebuild time is unknown (%s): set spec.rebuildTime (run --once: "
                          "--rebuild-time), e.g. 2026-11-26T09:00:00Z — pods created before it "
                          "are restarted",
                          ctx->rebuild_note ? ctx->rebuild_note : "not derived");
    km_pods_restarter rs = {
        .ctx = ctx,
        .kube = ctx->kube,
        .rebuilt_at = ctx->rebuilt_at,
        .dry_run = ctx->dry_run,
        .wait_ready = km_step_bool(ctx, "waitForReady") && !ctx->dry_run,
        .max_conc = (int)km_step_int(ctx, "maxConcurrent"),
        .delete_ownerless = km_step_bool(ctx, "deleteOwnerlessPods"),
        .ns_timeout = km_step_int(ctx, "namespaceTimeoutSeconds"),
        .evict_timeout = km_step_int(ctx, "evictionTimeoutSeconds"),
    };
    int parallel = (int)km_step_int(ctx, "parallelNamespaces");
    if (rs.max_conc < 1)
        rs.max_conc = 1;
    km_status st = km_pods_retried(&rs, km_clock_mono() + (double)rs.ns_timeout, namespaces_attempt,
                                   &order, err);
    int total = cJSON_GetArraySize(order);
    if (st == KM_OK && (!(done = done_list(ctx)) ||
                        km_json_set_num(ctx->status, "namespacesTotal", total) != KM_OK))
        st = oom(err);
    const cJSON *ns, *todo = st == KM_OK ? order : NULL;
    cJSON_ArrayForEach(ns, todo)
    {
        if (km_json_array_has_str(done, ns->valuestring))
            continue;
        /* kube-system first and alone; the others in parallel when asked for */
        if (parallel > 1 && strcmp(ns->valuestring, "kube-system") != 0)
            break;
        if (km_step_cancelled(ctx))
            st = km_err_set(err, KM_ECANCELED, "pods step cancelled");
        km_pods_gate *deferred = NULL; /* stays NULL: GATE_WAIT never defers */
        if (st == KM_OK &&
            (st = do_namespace(&rs, ns->valuestring, GATE_WAIT, &deferred, err)) == KM_OK)
            st = leave_namespace(&rs, ns->valuestring, err);
        if (st != KM_OK)
            break;
    }
    if (st == KM_OK && ns)
        st = run_parallel(&rs, ns, done, parallel, err);
    if (st == KM_OK && rs.self.found)
        st = self_decide(ctx, &rs.self, err);
    if (st == KM_OK) {
        km_json_set_num(ctx->status, "namespacesDone", cJSON_GetArraySize(done));
        km_json_set_str(ctx->status, "currentNamespace", "");
        progress(ctx, cJSON_GetArraySize(done), total, NULL);
        result(ctx, total);
        st = km_step_save(ctx, err);
    }
    km_pods_restarter_cleanup(&rs); /* ends the readiness watches */
    cJSON_Delete(order);
    return st;
}

/* The CRD's CEL rule: includeNamespaces and excludeNamespaces are disjoint; and the namespace
 * selector's labels well formed (labels.h), up front rather than when the step lists. */
static km_status check_spec(const cJSON *blk, km_err *err)
{
    char *sel = NULL;
    km_status st = km_podsel_label_selector(KM_JSON_AT(blk, "namespaceSelector"), &sel, err);
    if (st != KM_OK) {
        km_err_prefix(err, "spec.pods");
        return st;
    }
    free(sel);
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
    {"parallelNamespaces", KM_FIELD_INT, 4, 1, 16, NULL},
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
    .last = pods_last,
    .verify = km_pods_verify,
};
