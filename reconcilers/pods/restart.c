/* restart.c — rollout restarts, readiness waits, evictions and ownerless pods (see restart.h). */
#include "reconcilers/pods/restart.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "operator/base/backoff.h"
#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"

#define LIST_MAX 50

static void event(km_pods_restarter *rs, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void event(km_pods_restarter *rs, const char *type, const char *reason, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    km_step_event(rs->ctx, type, reason, msg);
}

/* Adds delta to status.pods[status_key] (when given) and to the metrics counter. */
static void count(km_pods_restarter *rs, const char *status_key, const char *counter, long delta)
{
    if (status_key)
        km_step_counter_add(rs->ctx->status, status_key, delta);
    km_step_count(rs->ctx, counter, delta);
}

static km_status oom(km_err *err)
{
    return km_err_set(err, KM_ENOMEM, "pods: out of memory");
}

/* A workload, pod or key stuck: status.pods.stuck and the metrics counter. */
static km_status stuck(km_pods_restarter *rs, const char *key)
{
    rs->stuck = 1;
    count(rs, NULL, "pods_stuck_total", 1);
    return km_step_list_add(rs->ctx->status, "stuck", key, LIST_MAX);
}

/* ---- readiness ------------------------------------------------------------------------------ */

static int ready(const cJSON *obj, void *user)
{
    return km_podsel_workload_ready(user, obj);
}

/* The readiness wait of kind k (made on first use).  NULL when it cannot be made. */
static km_wait *wait_of(km_pods_restarter *rs, km_wl_kind k, km_err *err)
{
    if (!rs->wait[k]) {
        km_wait_opts o = {"apps",        "v1", km_wl_plural(k), ready, (void *)km_wl_name(k),
                          rs->ctx->kube, NULL};
        if (km_wait_new(&o, &rs->wait[k], err) != KM_OK)
            return NULL;
    }
    return rs->wait[k];
}

typedef struct late_ctx {
    km_pods_restarter *rs;
    km_wl_kind kind;
    km_status st;
} late_ctx;

static void on_late(const char *ns, const char *name, void *user)
{
    late_ctx *l = user;
    char key[1024];
    snprintf(key, sizeof(key), "%s/%s/%s", ns, km_wl_name(l->kind), name);
    if (stuck(l->rs, key) != KM_OK)
        l->st = KM_ENOMEM;
    event(l->rs, "Warning", "WorkloadStuck",
          "%s %s/%s not rolled out and ready within namespaceTimeoutSeconds (%ld s)",
          km_wl_name(l->kind), ns, name, l->rs->ns_timeout);
}

/* Waits for every armed workload until deadline (monotonic); the late ones are stuck. */
static km_status wait_batch(km_pods_restarter *rs, double deadline, km_err *err)
{
    for (int k = 0; k < KM_WL_KINDS; k++) {
        late_ctx l = {rs, (km_wl_kind)k, KM_OK};
        if (!rs->wait[k])
            continue;
        km_status st =
            km_wait_all(rs->wait[k], deadline - km_clock_mono(), rs->ctx->cancel, on_late, &l);
        if (st == KM_ECANCELED)
            return km_err_set(err, KM_ECANCELED, "pods step cancelled");
        if (st != KM_OK || l.st != KM_OK)
            return oom(err);
    }
    return KM_OK;
}

/* Forgets whatever was registered for waiting (after a failure). */
static void wait_forget(km_pods_restarter *rs)
{
    for (int k = 0; k < KM_WL_KINDS; k++)
        if (rs->wait[k])
            km_wait_all(rs->wait[k], 0, NULL, NULL, NULL);
}

void km_pods_restarter_cleanup(km_pods_restarter *rs)
{
    for (int k = 0; k < KM_WL_KINDS; k++) {
        km_wait_free(rs->wait[k]);
        rs->wait[k] = NULL;
    }
}

/* ---- rollout restarts ----------------------------------------------------------------------- */

static cJSON *current(km_pods_restarter *rs)
{
    return km_json_obj(rs->ctx->status, "current");
}

/* Dry run: whether workload w would be restarted; the namespace's list of its kind (no GET)
 * says whether it exists and already carries this recovery's marker.  Nothing is written. */
static km_status restart_dry(km_pods_restarter *rs, km_pods_plan *p, const km_pods_workload *w,
                             km_err *err)
{
    char key[512];
    const cJSON *obj = NULL;
    cJSON *cur = current(rs);
    snprintf(key, sizeof(key), "%s/%.400s", km_wl_name(w->kind), w->name);
    if (!cur)
        return oom(err);
    if (km_json_array_has_str(KM_JSON_AT(cur, "restarted"), key))
        return KM_OK;
    km_status st = km_pods_plan_listed(p, w->kind, w->name, &obj, err);
    if (st != KM_OK)
        return st;
    if (!obj) { /* gone: nothing to restart */
        km_log_info("pods: workload not found, skipped", "namespace", p->ns, "workload", key);
        return KM_OK;
    }
    if (km_step_list_add(cur, "restarted", key, 1 << 30) != KM_OK)
        return oom(err);
    count(rs, "restarted", "pods_restarted_total", 1);
    if (km_podsel_restarted_since(obj, rs->started_at))
        km_log_info("workload already restarted by this recovery", "namespace", p->ns, "workload",
                    key);
    else
        event(rs, "Normal", "WouldRestartWorkload", "would restart %s/%s (dry run)", p->ns, key);
    return km_step_save(rs->ctx, err);
}

/* PATCHes the restart marker (or, resumed, GETs the workload) into *obj. */
static km_status write_marker(km_pods_restarter *rs, const km_pods_plan *p,
                              const km_pods_workload *w, int resumed, cJSON **obj, km_err *err)
{
    char path[768], patch[512];
    if (km_kube_path(path, sizeof(path), "apps", "v1", p->ns, km_wl_plural(w->kind), w->name, NULL))
        return km_err_set(err, KM_EINVAL, "workload name too long");
    if (resumed)
        return km_kube_get(rs->ctx->kube, path, obj, err);
    snprintf(patch, sizeof(patch),
             "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"" KM_RESTARTED_AT_ANNOTATION
             "\":\"%s\"}}}}}",
             rs->started_at);
    return km_kube_patch(rs->ctx->kube, path, KM_PATCH_STRATEGIC, patch, obj, err);
}

/* The patch response of a restart: counted once (current.restarted, saved right after). */
static km_status restarted(km_pods_restarter *rs, const km_pods_plan *p, const char *key,
                           const cJSON *obj, km_err *err)
{
    const char *mark =
        KM_JSON_STR(obj, "spec", "template", "metadata", "annotations", KM_RESTARTED_AT_ANNOTATION);
    if (!mark || strcmp(mark, rs->started_at) != 0)
        km_log_warn("pods: restart marker not in the patch response", "namespace", p->ns,
                    "workload", key);
    if (km_step_list_add(current(rs), "restarted", key, 1 << 30) != KM_OK)
        return oom(err);
    count(rs, "restarted", "pods_restarted_total", 1);
    event(rs, "Normal", "WorkloadRestarted", "rollout restart of %s/%s", p->ns, key);
    return km_step_save(rs->ctx, err);
}

/* Restarts workload i of the plan (or, when current.restarted already names it — a resumed step
 * — reads it for the readiness wait only).  *waiting = 1 when it was armed for the wait. */
static km_status restart_one(km_pods_restarter *rs, km_pods_plan *p, size_t i, int *waiting,
                             km_err *err)
{
    const km_pods_workload w = p->workloads[i]; /* verify may move the array */
    km_wait *wait = NULL;
    char key[512];
    cJSON *obj = NULL;
    km_err e;
    km_err_clear(&e);
    snprintf(key, sizeof(key), "%s/%.400s", km_wl_name(w.kind), w.name);
    int resumed = km_json_array_has_str(KM_JSON_AT(current(rs), "restarted"), key);
    *waiting = 0;
    if (rs->wait_ready && !(wait = wait_of(rs, w.kind, err)))
        return KM_ENOMEM;
    if (wait && km_wait_add(wait, p->ns, w.name, err) != KM_OK)
        return KM_ENOMEM;
    km_status st = write_marker(rs, p, &w, resumed, &obj, &e);
    if (st != KM_OK && wait)
        km_wait_drop(wait, p->ns, w.name);
    if (st == KM_EAPI && e.http_code == 404) {
        km_log_info("pods: workload not found, skipped", "namespace", p->ns, "workload", key);
        return resumed ? KM_OK : km_pods_plan_verify(p, i, NULL, err);
    }
    if (st != KM_OK) {
        if (err)
            *err = e;
        km_err_prefix(err, "%s %s %s/%s", resumed ? "get" : "restart", km_wl_name(w.kind), p->ns,
                      w.name);
        return st;
    }
    if (!resumed && (st = km_pods_plan_verify(p, i, obj, err)) == KM_OK)
        st = restarted(rs, p, key, obj, err);
    else if (resumed)
        km_log_info("workload already restarted by this recovery", "namespace", p->ns, "workload",
                    key);
    /* the rollout starts at the patched generation; older states must not count as ready */
    if (st == KM_OK && wait) {
        *waiting = 1;
        st = km_wait_arm(wait, p->ns, w.name, KM_JSON_NUM(obj, 0, "metadata", "generation"), obj,
                         err);
    }
    cJSON_Delete(obj);
    return st;
}

km_status km_pods_restart(km_pods_restarter *rs, km_pods_plan *p, double deadline, km_err *err)
{
    km_status st = KM_OK;
    /* km_pods_plan_verify may add workloads: the count is read each round */
    for (size_t i = 0; st == KM_OK && i < p->nworkloads; i += (size_t)rs->max_conc) {
        int waiting = 0;
        for (size_t j = i; st == KM_OK && j < p->nworkloads && j < i + (size_t)rs->max_conc; j++) {
            int one = 0; /* 1 when a rollout was started and must be waited for */
            if (km_step_cancelled(rs->ctx))
                st = km_err_set(err, KM_ECANCELED, "pods step cancelled");
            else if (rs->dry_run)
                st = restart_dry(rs, p, &p->workloads[j], err);
            else
                st = restart_one(rs, p, j, &one, err);
            waiting |= one;
        }
        if (st == KM_OK && rs->wait_ready && waiting)
            st = wait_batch(rs, deadline, err);
    }
    if (st != KM_OK)
        wait_forget(rs);
    return st;
}

/* ---- evictions, ownerless pods --------------------------------------------------------------- */

static km_status post_eviction(km_pods_restarter *rs, const char *ns, const char *pod, int v1beta1,
                               long *code, km_err *err)
{
    char path[768], body[1024];
    if (km_kube_path(path, sizeof(path), NULL, "v1", ns, "pods", pod, "eviction"))
        return km_err_set(err, KM_EINVAL, "pod name too long");
    int n = snprintf(body, sizeof(body),
                     "{\"apiVersion\":\"policy/%s\",\"kind\":\"Eviction\",\"metadata\":{\"name\":"
                     "\"%s\",\"namespace\":\"%s\"}}",
                     v1beta1 ? "v1beta1" : "v1", pod, ns);
    km_kube_req req = {
        .method = "POST", .path = path, .body = body, .body_len = (size_t)n, .no_retry = 1};
    *code = 0;
    return km_kube_do(rs->ctx->kube, &req, code, NULL, err);
}

/* One eviction request: policy/v1, or policy/v1beta1 on a server without it (< 1.22 answers the
 * v1 body with 400; a 404 may also be the pod being gone). */
static km_status evict_once(km_pods_restarter *rs, const char *ns, const char *pod, long *code,
                            km_err *e)
{
    km_status st = post_eviction(rs, ns, pod, rs->eviction_v1beta1, code, e);
    if (st == KM_EAPI && !rs->eviction_v1beta1 && (*code == 400 || *code == 404)) {
        km_err_clear(e);
        st = post_eviction(rs, ns, pod, 1, code, e);
        if (st == KM_OK || (st == KM_EAPI && *code != 400 && *code != 404)) {
            rs->eviction_v1beta1 = 1;
            km_log_info("pods: server has no policy/v1 Eviction, using policy/v1beta1");
        }
    }
    return st;
}

km_status km_pods_evict(km_pods_restarter *rs, const km_pods_plan *p, const char *pod, km_err *err)
{
    if (rs->dry_run) {
        count(rs, "evicted", "pods_evicted_total", 1);
        event(rs, "Normal", "WouldEvictPod", "would evict pod %s/%s (dry run)", p->ns, pod);
        return KM_OK;
    }
    km_backoff bo;
    km_backoff_init(&bo, 1.0, 15.0, 2.0, 0.2);
    double deadline = km_clock_mono() + (double)rs->evict_timeout;
    for (;;) {
        km_err e;
        km_err_clear(&e);
        long code = 0;
        km_status st = evict_once(rs, p->ns, pod, &code, &e);
        if (st == KM_OK) {
            count(rs, "evicted", "pods_evicted_total", 1);
            event(rs, "Normal", "PodEvicted", "evicted pod %s/%s", p->ns, pod);
            return km_step_save(rs->ctx, err);
        }
        if (st == KM_EAPI && code == 404)
            return KM_OK; /* already gone */
        if (st != KM_ETRANSPORT && !(st == KM_EAPI && (code == 429 || code >= 500))) {
            if (err)
                *err = e;
            km_err_prefix(err, "evict pod %s/%s", p->ns, pod);
            return st;
        }
        double delay = km_backoff_next(&bo, km_backoff_rand());
        if (e.retry_after > 0 && (double)e.retry_after > delay)
            delay = (double)e.retry_after;
        if (km_clock_mono() + delay >= deadline) {
            char key[1024];
            snprintf(key, sizeof(key), "%s/Pod/%s", p->ns, pod);
            if (stuck(rs, key) != KM_OK)
                return oom(err);
            event(rs, "Warning", "EvictionBlocked",
                  "pod %s/%s could not be evicted within evictionTimeoutSeconds (%ld s): %s", p->ns,
                  pod, rs->evict_timeout, e.message);
            return km_step_save(rs->ctx, err);
        }
        km_log_info("pods: eviction refused, retrying", "namespace", p->ns, "pod", pod, "code",
                    KM_LOG_INT(code), "delay", KM_LOG_DBL(delay));
        if (km_clock_sleep(delay, rs->ctx->cancel) != KM_OK)
            return km_err_set(err, KM_ECANCELED, "pods step cancelled");
    }
}

km_status km_pods_ownerless(km_pods_restarter *rs, const km_pods_plan *p, const char *pod,
                            km_err *err)
{
    char key[1024], path[768];
    snprintf(key, sizeof(key), "%s/%s", p->ns, pod);
    if (!rs->delete_ownerless) {
        if (km_json_array_has_str(KM_JSON_AT(rs->ctx->status, "manual"), key))
            return KM_OK;
        if (km_step_list_add(rs->ctx->status, "manual", key, LIST_MAX) != KM_OK)
            return oom(err);
        count(rs, NULL, "pods_manual_total", 1);
        event(rs, "Warning", "NeedsManualRestart",
              "pod %s has no owner and uses a stale service-account token: restart it by hand "
              "(it would be lost if deleted; spec.pods.deleteOwnerlessPods allows deleting it)",
              key);
        return KM_OK;
    }
    if (rs->dry_run) {
        count(rs, "deleted", "pods_deleted_total", 1);
        event(rs, "Normal", "WouldDeletePod", "would delete ownerless pod %s (dry run)", key);
        return KM_OK;
    }
    if (km_kube_path(path, sizeof(path), NULL, "v1", p->ns, "pods", pod, NULL))
        return km_err_set(err, KM_EINVAL, "pod name too long");
    km_err e;
    km_err_clear(&e);
    km_status st = km_kube_delete(rs->ctx->kube, path, NULL, NULL, &e);
    if (st == KM_EAPI && e.http_code == 404)
        return KM_OK;
    if (st != KM_OK) {
        if (err)
            *err = e;
        km_err_prefix(err, "delete pod %s", key);
        return st;
    }
    count(rs, "deleted", "pods_deleted_total", 1);
    event(rs, "Normal", "OwnerlessPodDeleted", "deleted ownerless pod %s (deleteOwnerlessPods)",
          key);
    return km_step_save(rs->ctx, err);
}
