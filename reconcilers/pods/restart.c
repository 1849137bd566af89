/* restart.c — rollout restarts, readiness waits, evictions and ownerless pods (see restart.h). */
#include "reconcilers/pods/restart.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/pods/pace.h"

#define LIST_MAX 50
#define CONFLICTS_MAX 20 /* re-reads after a 409 on one object before the 409 is returned */

/* Adds delta to status.pods[status_key] (when given) and to the metrics counter. */
static void count(km_pods_restarter *rs, const char *status_key, const char *counter, long delta)
{
    km_pods_pace_lock(rs->pace);
    if (status_key)
        km_step_counter_add(rs->ctx->status, status_key, delta);
    if (counter)
        km_step_count(rs->ctx, counter, delta);
    km_pods_pace_unlock(rs->pace);
}

/* km_step_save under the status lock. */
static km_status save(km_pods_restarter *rs, km_err *err)
{
    km_pods_pace_lock(rs->pace);
    km_status st = km_step_save(rs->ctx, err);
    km_pods_pace_unlock(rs->pace);
    return st;
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
    km_pods_pace_lock(rs->pace);
    km_status st = km_step_list_add(rs->ctx->status, "stuck", key, LIST_MAX);
    km_pods_pace_unlock(rs->pace);
    return st;
}

/* ---- retries -------------------------------------------------------------------------------- */

int km_pods_transient(km_status st, const km_err *e)
{
    if (st == KM_ETRANSPORT || st == KM_ETIMEOUT)
        return 1;
    return st == KM_EAPI && e && (e->http_code == 429 || e->http_code >= 500);
}

km_status km_pods_retry(km_pods_restarter *rs, km_backoff *bo, const km_err *e, double deadline)
{
    double delay = km_backoff_next(bo, km_backoff_rand());
    if (e && e->retry_after > 0 && (double)e->retry_after > delay)
        delay = (double)e->retry_after;
    if (km_clock_mono() + delay >= deadline)
        return KM_ETIMEOUT;
    km_log_info("pods: transient failure, retrying", "delay", KM_LOG_DBL(delay), "code",
                KM_LOG_INT(e ? e->http_code : 0), "error", e ? e->message : "");
    return km_clock_sleep(delay, rs->ctx->cancel) == KM_OK ? KM_OK : KM_ECANCELED;
}

km_status km_pods_retried(km_pods_restarter *rs, double deadline, km_pods_attempt_fn fn, void *arg,
                          km_err *err)
{
    km_backoff bo;
    km_backoff_init(&bo, 1.0, 15.0, 2.0, 0.2);
    for (;;) {
        km_err e;
        km_err_clear(&e);
        km_status st = fn(rs, arg, &e);
        if (st == KM_OK)
            return KM_OK;
        km_status rt = km_pods_transient(st, &e) ? km_pods_retry(rs, &bo, &e, deadline) : st;
        if (rt == KM_OK)
            continue;
        if (rt == KM_ECANCELED)
            return km_err_set(err, KM_ECANCELED, "pods step cancelled");
        if (err)
            *err = e;
        return st;
    }
}

/* The error to return after a failure e of `what` that is not retried (any more). */
static km_status give_up(km_status st, const km_err *e, km_err *err, const char *what)
{
    if (err)
        *err = *e;
    km_err_prefix(err, "%s", what);
    return st;
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
        km_wait_opts o = {"apps",   "v1", km_wl_plural(k), ready, (void *)km_wl_name(k),
                          rs->kube, NULL};
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
    km_step_eventf(l->rs->ctx, "Warning", "WorkloadStuck",
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

/* 1 when key was already handled in this namespace (its status.pods.current entry). */
static int seen(km_pods_restarter *rs, const char *key)
{
    km_pods_pace_lock(rs->pace);
    int has = rs->cur && km_json_array_has_str(KM_JSON_AT(rs->cur, "restarted"), key);
    km_pods_pace_unlock(rs->pace);
    return has;
}

static km_status workload_path(char *path, size_t n, const char *ns, km_wl_kind k, const char *name,
                               km_err *err)
{
    if (km_kube_path(path, n, "apps", "v1", ns, km_wl_plural(k), name, NULL))
        return km_err_set(err, KM_EINVAL, "workload name too long");
    return KM_OK;
}

/* The guarded restart: strategic-merge PATCH of the marker (the time of the restart, never before
 * the rebuild) with resourceVersion rv as its precondition; *out the response. */
static km_status patch_marker(km_kube *kube, const char *ns, km_wl_kind k, const char *name,
                              const char *rv, time_t rebuilt_at, cJSON **out, km_err *err)
{
    char path[768], when[KM_CLOCK_TEXT_MAX];
    km_status st = workload_path(path, sizeof(path), ns, k, name, err);
    if (st != KM_OK)
        return st;
    km_clock_format_s(km_podsel_marker_time(time(NULL), rebuilt_at), when, sizeof(when));
    cJSON *patch = cJSON_CreateObject();
    cJSON *md = patch ? km_json_obj(patch, "metadata") : NULL;
    cJSON *spec = patch ? km_json_obj(patch, "spec") : NULL;
    cJSON *t = spec ? km_json_obj(spec, "template") : NULL;
    cJSON *tmd = t ? km_json_obj(t, "metadata") : NULL;
    cJSON *ann = tmd ? km_json_obj(tmd, "annotations") : NULL;
    char *text = NULL;
    if (!md || !ann || km_json_set_str(md, "resourceVersion", rv ? rv : "") != KM_OK ||
        km_json_set_str(ann, KM_RESTARTED_AT_ANNOTATION, when) != KM_OK ||
        !(text = cJSON_PrintUnformatted(patch)))
        st = oom(err);
    else
        st = km_kube_patch(kube, path, KM_PATCH_STRATEGIC, text, out, err);
    free(text);
    cJSON_Delete(patch);
    return st;
}

/* GETs ns/kind/name again (after a conflict): *out a slim copy, or NULL when it is gone (404),
 * being deleted or replaced (not uid).  Transient failures are retried until deadline. */
static km_status reread(km_pods_restarter *rs, const char *ns, km_wl_kind kind, const char *name,
                        const char *uid, double deadline, cJSON **out, km_err *err)
{
    char path[768], what[640];
    km_backoff bo;
    km_backoff_init(&bo, 1.0, 15.0, 2.0, 0.2);
    km_status st = workload_path(path, sizeof(path), ns, kind, name, err);
    snprintf(what, sizeof(what), "get %s %s/%.300s", km_wl_name(kind), ns, name);
    *out = NULL;
    while (st == KM_OK) {
        cJSON *obj = NULL;
        km_err e;
        km_err_clear(&e);
        st = km_kube_get(rs->kube, path, &obj, &e);
        if (st == KM_EAPI && e.http_code == 404)
            return KM_OK;
        if (st == KM_OK) {
            const char *u = KM_JSON_STR(obj, "metadata", "uid");
            int same =
                u && strcmp(u, uid) == 0 && !KM_JSON_STR(obj, "metadata", "deletionTimestamp");
            if (same && !(*out = km_pods_slim_workload(obj)))
                st = oom(err);
            cJSON_Delete(obj);
            return st;
        }
        if (!km_pods_transient(st, &e) || km_pods_retry(rs, &bo, &e, deadline) != KM_OK)
            return give_up(st, &e, err, what);
    }
    return st;
}

/* key ("Kind/name") is handled in this namespace: current.restarted; counted under status_key
 * the first time.  Saved. */
static km_status handled(km_pods_restarter *rs, const char *key, const char *status_key,
                         const char *counter, km_err *err)
{
    cJSON *cur = rs->cur;
    if (!cur)
        return oom(err);
    km_pods_pace_lock(rs->pace);
    km_status st = KM_OK;
    if (!km_json_array_has_str(KM_JSON_AT(cur, "restarted"), key)) {
        if (km_step_list_add(cur, "restarted", key, 1 << 30) != KM_OK)
            st = oom(err);
        else
            count(rs, status_key, counter, 1);
    }
    if (st == KM_OK)
        st = km_step_save(rs->ctx, err);
    km_pods_pace_unlock(rs->pace);
    return st;
}

/* What the workload w's marker says, or the patch does, with its object *obj (borrowed from the
 * plan, or owned re-reads in *fresh): restarted since the rebuild = done; else the guarded PATCH
 * (a 409 re-reads and decides again).  *obj NULL afterwards: gone, nothing to wait for. */
static km_status decide_and_patch(km_pods_restarter *rs, km_pods_plan *p, const km_pods_workload *w,
                                  const char *key, double deadline, const cJSON **obj,
                                  cJSON **fresh, km_err *err)
{
    km_backoff bo;
    km_backoff_init(&bo, 1.0, 15.0, 2.0, 0.2);
    char what[640];
    snprintf(what, sizeof(what), "restart %s %s/%.300s", km_wl_name(w->kind), p->ns, w->name);
    for (int conflicts = 0; *obj;) {
        if (km_podsel_restarted_since(*obj, rs->rebuilt_at)) {
            char when[KM_CLOCK_TEXT_MAX];
            km_clock_format_s(km_podsel_marker(*obj), when, sizeof(when));
            if (!seen(rs, key))
                km_step_eventf(
                    rs->ctx, "Normal", "WorkloadAlreadyRestarted",
                    "%s/%s was restarted at %s, after the PKI rebuild: not restarted again%s",
                    p->ns, key, when, rs->wait_ready ? ", waiting until it is ready" : "");
            return handled(rs, key, "alreadyRestarted", NULL, err);
        }
        if (rs->dry_run) {
            if (!seen(rs, key))
                km_step_eventf(rs->ctx, "Normal", "WouldRestartWorkload",
                               "would restart %s/%s (dry run)", p->ns, key);
            return handled(rs, key, "restarted", "pods_restarted_total", err);
        }
        cJSON *out = NULL, *again = NULL;
        km_err e;
        km_err_clear(&e);
        km_status st = patch_marker(rs->kube, p->ns, w->kind, w->name,
                                    KM_JSON_STR(*obj, "metadata", "resourceVersion"),
                                    rs->rebuilt_at, &out, &e);
        if (st == KM_OK) {
            cJSON_Delete(*fresh);
            *obj = *fresh = out;
            km_step_eventf(rs->ctx, "Normal", "WorkloadRestarted", "rollout restart of %s/%s",
                           p->ns, key);
            return handled(rs, key, "restarted", "pods_restarted_total", err);
        }
        if (st == KM_EAPI && e.http_code == 404) {
            km_log_info("pods: workload not found, skipped", "namespace", p->ns, "workload", key);
            *obj = NULL;
            return KM_OK;
        }
        if (st == KM_EAPI && e.http_code == 409 && ++conflicts <= CONFLICTS_MAX) {
            /* changed since it was read: read it again and decide again */
            if ((st = reread(rs, p->ns, w->kind, w->name, w->uid, deadline, &again, err)) != KM_OK)
                return st;
            if (!again)
                km_log_info("pods: workload gone or replaced since it was read, skipped",
                            "namespace", p->ns, "workload", key);
            cJSON_Delete(*fresh);
            *obj = *fresh = again;
            continue;
        }
        if (!km_pods_transient(st, &e) || km_pods_retry(rs, &bo, &e, deadline) != KM_OK)
            return give_up(st, &e, err, what);
    }
    return KM_OK;
}

/* Restarts workload i of the plan (see restart.h).  *waiting = 1 when it was armed for the
 * readiness wait. */
static km_status restart_one(km_pods_restarter *rs, km_pods_plan *p, size_t i, double deadline,
                             int *waiting, km_err *err)
{
    const km_pods_workload *w = &p->workloads[i];
    km_wait *wait = NULL;
    char key[512];
    *waiting = 0;
    snprintf(key, sizeof(key), "%s/%.400s", km_wl_name(w->kind), w->name);
    if (!w->obj)
        return KM_OK; /* gone since its pods were listed (logged by the plan) */
    if (w->self) {
        if (!rs->self.found) {
            rs->self.found = 1;
            rs->self.kind = w->kind;
            snprintf(rs->self.ns, sizeof(rs->self.ns), "%s", p->ns);
            snprintf(rs->self.name, sizeof(rs->self.name), "%s", w->name);
            snprintf(rs->self.uid, sizeof(rs->self.uid), "%s", w->uid);
        }
        km_log_info("pods: kubemend's own workload, handled after everything else", "namespace",
                    p->ns, "workload", key);
        return KM_OK;
    }
    if (rs->wait_ready && !(wait = wait_of(rs, w->kind, err)))
        return KM_ENOMEM;
    if (wait && km_wait_add(wait, p->ns, w->name, err) != KM_OK)
        return KM_ENOMEM;
    const cJSON *obj = w->obj;
    cJSON *fresh = NULL;
    km_status st = decide_and_patch(rs, p, w, key, deadline, &obj, &fresh, err);
    /* the rollout starts at the patched (or listed) generation: older states do not count */
    if (st == KM_OK && wait && obj) {
        *waiting = 1;
        st = km_wait_arm(wait, p->ns, w->name, KM_JSON_NUM(obj, 0, "metadata", "generation"), obj,
                         err);
    } else if (wait) {
        km_wait_drop(wait, p->ns, w->name);
    }
    cJSON_Delete(fresh);
    return st;
}

km_status km_pods_restart(km_pods_restarter *rs, km_pods_plan *p, double deadline, km_err *err)
{
    km_status st = KM_OK;
    size_t n = 0; /* the batch: as many slots of the global budget as it could take */
    for (size_t i = 0; st == KM_OK && i < p->nworkloads; i += n) {
        int waiting = 0, got = 0;
        size_t left = p->nworkloads - i;
        st = km_pods_pace_take(rs->pace, left < (size_t)rs->max_conc ? (int)left : rs->max_conc,
                               rs->ctx->cancel, &got, err);
        n = (size_t)got;
        for (size_t j = i; st == KM_OK && j < i + n; j++) {
            int one = 0; /* 1 when it was armed for the readiness wait */
            if (km_step_cancelled(rs->ctx))
                st = km_err_set(err, KM_ECANCELED, "pods step cancelled");
            else
                st = restart_one(rs, p, j, deadline, &one, err);
            waiting |= one;
        }
        if (st == KM_OK && rs->wait_ready && waiting)
            st = wait_batch(rs, deadline, err);
        km_pods_pace_give(rs->pace, got);
    }
    if (st != KM_OK)
        wait_forget(rs);
    return st;
}

km_status km_pods_restart_self(km_step_ctx *ctx, time_t rebuilt_at, const km_pods_self *self,
                               int *done, km_err *err)
{
    km_pods_restarter rs = {.ctx = ctx, .kube = ctx->kube, .rebuilt_at = rebuilt_at};
    double deadline = km_clock_mono() + 60.0;
    cJSON *obj = NULL;
    km_status st = KM_OK;
    *done = 0;
    for (int conflicts = 0; st == KM_OK && conflicts <= CONFLICTS_MAX; conflicts++) {
        cJSON_Delete(obj);
        obj = NULL;
        if ((st = reread(&rs, self->ns, self->kind, self->name, self->uid, deadline, &obj, err)))
            break;
        if (!obj) {
            st = km_err_set(err, KM_ESTATE, "%s %s/%s is gone or was replaced",
                            km_wl_name(self->kind), self->ns, self->name);
            break;
        }
        if (km_podsel_restarted_since(obj, rebuilt_at))
            break;
        cJSON *out = NULL;
        km_err e;
        km_err_clear(&e);
        st = patch_marker(ctx->kube, self->ns, self->kind, self->name,
                          KM_JSON_STR(obj, "metadata", "resourceVersion"), rebuilt_at, &out, &e);
        cJSON_Delete(out);
        if (st == KM_OK)
            *done = 1;
        else if (st == KM_EAPI && e.http_code == 409)
            st = KM_OK; /* read again */
        else
            st = give_up(st, &e, err, "restart kubemend's own workload");
        if (*done)
            break;
    }
    cJSON_Delete(obj);
    return st;
}

/* ---- evictions, ownerless pods --------------------------------------------------------------- */

static km_status post_eviction(km_pods_restarter *rs, const char *ns, const km_pods_target *t,
                               int v1beta1, long *code, km_err *err)
{
    char path[768], body[1280], pre[160] = "";
    if (km_kube_path(path, sizeof(path), NULL, "v1", ns, "pods", t->name, "eviction"))
        return km_err_set(err, KM_EINVAL, "pod name too long");
    if (t->uid[0])
        snprintf(pre, sizeof(pre), ",\"deleteOptions\":{\"preconditions\":{\"uid\":\"%.64s\"}}",
                 t->uid);
    int n = snprintf(body, sizeof(body),
                     "{\"apiVersion\":\"policy/%s\",\"kind\":\"Eviction\",\"metadata\":{\"name\":"
                     "\"%s\",\"namespace\":\"%s\"}%s}",
                     v1beta1 ? "v1beta1" : "v1", t->name, ns, pre);
    km_kube_req req = {
        .method = "POST", .path = path, .body = body, .body_len = (size_t)n, .no_retry = 1};
    *code = 0;
    return km_kube_do(rs->kube, &req, code, NULL, err);
}

/* One eviction request: policy/v1, or policy/v1beta1 on a server without it (< 1.22 answers the
 * v1 body with 400; a 404 may also be the pod being gone). */
static km_status evict_once(km_pods_restarter *rs, const char *ns, const km_pods_target *t,
                            long *code, km_err *e)
{
    km_status st = post_eviction(rs, ns, t, rs->eviction_v1beta1, code, e);
    if (st == KM_EAPI && !rs->eviction_v1beta1 && (*code == 400 || *code == 404)) {
        km_err_clear(e);
        st = post_eviction(rs, ns, t, 1, code, e);
        if (st == KM_OK || (st == KM_EAPI && *code != 400 && *code != 404)) {
            rs->eviction_v1beta1 = 1;
            km_log_info("pods: server has no policy/v1 Eviction, using policy/v1beta1");
        }
    }
    return st;
}

/* After a 409 on a uid-guarded write of pod t: 1 when the pod is gone or was replaced (another
 * uid), 0 when it is still the one (a PodDisruptionBudget update conflicted: try again).
 * Failure: the GET's error. */
static km_status pod_replaced(km_pods_restarter *rs, const char *ns, const km_pods_target *t,
                              int *replaced, km_err *err)
{
    char path[768];
    cJSON *pod = NULL;
    km_err e;
    km_err_clear(&e);
    *replaced = 0;
    if (km_kube_path(path, sizeof(path), NULL, "v1", ns, "pods", t->name, NULL))
        return km_err_set(err, KM_EINVAL, "pod name too long");
    km_status st = km_kube_get(rs->kube, path, &pod, &e);
    if (st == KM_EAPI && e.http_code == 404) {
        *replaced = 1;
        return KM_OK;
    }
    if (st != KM_OK)
        return give_up(st, &e, err, "get pod after a conflict");
    const char *uid = KM_JSON_STR(pod, "metadata", "uid");
    *replaced = !uid || strcmp(uid, t->uid) != 0;
    cJSON_Delete(pod);
    return KM_OK;
}

km_status km_pods_evict(km_pods_restarter *rs, const km_pods_plan *p, const km_pods_target *t,
                        km_err *err)
{
    if (rs->dry_run) {
        count(rs, "evicted", "pods_evicted_total", 1);
        km_step_eventf(rs->ctx, "Normal", "WouldEvictPod", "would evict pod %s/%s (dry run)", p->ns,
                       t->name);
        return KM_OK;
    }
    km_backoff bo;
    km_backoff_init(&bo, 1.0, 15.0, 2.0, 0.2);
    double deadline = km_clock_mono() + (double)rs->evict_timeout;
    for (int conflicts = 0;;) {
        km_err e;
        km_err_clear(&e);
        long code = 0;
        km_status st = evict_once(rs, p->ns, t, &code, &e);
        if (st == KM_OK) {
            count(rs, "evicted", "pods_evicted_total", 1);
            km_step_eventf(rs->ctx, "Normal", "PodEvicted", "evicted pod %s/%s", p->ns, t->name);
            return save(rs, err);
        }
        if (st == KM_EAPI && code == 404)
            return KM_OK; /* already gone */
        if (st == KM_EAPI && code == 409 && t->uid[0] && ++conflicts <= CONFLICTS_MAX) {
            int replaced = 0;
            if ((st = pod_replaced(rs, p->ns, t, &replaced, err)) != KM_OK)
                return st;
            if (replaced) {
                km_log_info("pods: pod gone or replaced since it was listed, not evicted",
                            "namespace", p->ns, "pod", t->name);
                return KM_OK;
            }
            continue;
        }
        if (st != KM_ETRANSPORT && !(st == KM_EAPI && (code == 429 || code >= 500))) {
            char what[640];
            snprintf(what, sizeof(what), "evict pod %s/%.300s", p->ns, t->name);
            return give_up(st, &e, err, what);
        }
        double delay = km_backoff_next(&bo, km_backoff_rand());
        if (e.retry_after > 0 && (double)e.retry_after > delay)
            delay = (double)e.retry_after;
        if (km_clock_mono() + delay >= deadline) {
            char key[1024];
            snprintf(key, sizeof(key), "%s/Pod/%s", p->ns, t->name);
            if (stuck(rs, key) != KM_OK)
                return oom(err);
            km_step_eventf(
                rs->ctx, "Warning", "EvictionBlocked",
                "pod %s/%s could not be evicted within evictionTimeoutSeconds (%ld s): %s", p->ns,
                t->name, rs->evict_timeout, e.message);
            return save(rs, err);
        }
        km_log_info("pods: eviction refused, retrying", "namespace", p->ns, "pod", t->name, "code",
                    KM_LOG_INT(code), "delay", KM_LOG_DBL(delay));
        if (km_clock_sleep(delay, rs->ctx->cancel) != KM_OK)
            return km_err_set(err, KM_ECANCELED, "pods step cancelled");
    }
}

km_status km_pods_ownerless(km_pods_restarter *rs, const km_pods_plan *p, const km_pods_target *t,
                            double deadline, km_err *err)
{
    char key[1024], path[768];
    snprintf(key, sizeof(key), "%s/%s", p->ns, t->name);
    if (!rs->delete_ownerless) {
        km_pods_pace_lock(rs->pace);
        int had = km_json_array_has_str(KM_JSON_AT(rs->ctx->status, "manual"), key);
        km_status lst = had ? KM_OK : km_step_list_add(rs->ctx->status, "manual", key, LIST_MAX);
        km_pods_pace_unlock(rs->pace);
        if (had)
            return KM_OK;
        if (lst != KM_OK)
            return oom(err);
        count(rs, NULL, "pods_manual_total", 1);
        km_step_eventf(
            rs->ctx, "Warning", "NeedsManualRestart",
            "pod %s has no owner and uses a stale service-account token: restart it by hand "
            "(it would be lost if deleted; spec.pods.deleteOwnerlessPods allows deleting it)",
            key);
        return KM_OK;
    }
    if (rs->dry_run) {
        count(rs, "deleted", "pods_deleted_total", 1);
        km_step_eventf(rs->ctx, "Normal", "WouldDeletePod",
                       "would delete ownerless pod %s (dry run)", key);
        return KM_OK;
    }
    if (km_kube_path(path, sizeof(path), NULL, "v1", p->ns, "pods", t->name, NULL))
        return km_err_set(err, KM_EINVAL, "pod name too long");
    km_delete_opts o;
    km_delete_opts_init(&o);
    o.uid = t->uid[0] ? t->uid : NULL; /* the pod that was listed, not one created since */
    km_backoff bo;
    km_backoff_init(&bo, 1.0, 15.0, 2.0, 0.2);
    for (;;) {
        km_err e;
        km_err_clear(&e);
        km_status st = km_kube_delete(rs->kube, path, &o, NULL, &e);
        if (st == KM_EAPI && (e.http_code == 404 || e.http_code == 409))
            return KM_OK; /* gone, or replaced by another pod of that name */
        if (st == KM_OK)
            break;
        if (!km_pods_transient(st, &e) || km_pods_retry(rs, &bo, &e, deadline) != KM_OK) {
            char what[1100];
            snprintf(what, sizeof(what), "delete pod %s", key);
            return give_up(st, &e, err, what);
        }
    }
    count(rs, "deleted", "pods_deleted_total", 1);
    km_step_eventf(rs->ctx, "Normal", "OwnerlessPodDeleted",
                   "deleted ownerless pod %s (deleteOwnerlessPods)", key);
    return save(rs, err);
}
