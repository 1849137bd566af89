/* recovery.c — the ClusterRecovery lifecycle (see recovery.h). */
#include "reconcilers/recovery/recovery.h"

#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/backoff.h"
#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/csr/csr.h"
#include "reconcilers/recovery/persist.h"
#include "reconcilers/recovery/spec.h"
#include "reconcilers/step/conditions.h"
#include "reconcilers/step/step.h"

/* ---- picking the active recovery ------------------------------------------------------------ */

int km_recovery_is_completed(const cJSON *obj)
{
    const char *phase = KM_JSON_STR(obj, "status", "phase");
    return phase && (strcmp(phase, KM_PHASE_SUCCEEDED) == 0 || strcmp(phase, KM_PHASE_FAILED) == 0);
}

static int str_cmp0(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

int km_recovery_pick_active(const cJSON *const *objs, size_t n)
{
    int best = -1, best_running = 0;
    for (size_t i = 0; i < n; i++) {
        const cJSON *o = objs[i];
        if (!o || km_recovery_is_completed(o) || KM_JSON_STR(o, "metadata", "deletionTimestamp"))
            continue;
        const char *phase = KM_JSON_STR(o, "status", "phase");
        int running = phase && strcmp(phase, KM_PHASE_RUNNING) == 0;
        if (best >= 0) {
            const cJSON *b = objs[best];
            if (best_running && !running)
                continue;
            if (running == best_running) {
                /* RFC3339 timestamps of one format compare as strings. */
                int c = str_cmp0(KM_JSON_STR(o, "metadata", "creationTimestamp"),
                                 KM_JSON_STR(b, "metadata", "creationTimestamp"));
                if (c > 0 || (c == 0 && str_cmp0(KM_JSON_STR(o, "metadata", "name"),
                                                 KM_JSON_STR(b, "metadata", "name")) >= 0))
                    continue;
            }
        }
        best = (int)i;
        best_running = running;
    }
    return best;
}

/* ---- the run engine ------------------------------------------------------------------------- */

#define RECENT_MAX 50

struct km_recovery {
    km_recovery_opts o;
    cJSON *obj;  /* the object with our status; owned */
    cJSON *spec; /* defaulted spec; owned */
    cJSON *ref;  /* {apiVersion, metadata{name, uid}} for Events from any thread; owned */
    char name[256];
    char path[512];
    int dry_run;
    atomic_int cancel; /* the steps' cancel flag */
    int deleting;
    const char *cur_step; /* key of the running step, for progress/count callbacks */

    pthread_mutex_t mu; /* guards pending */
    cJSON *pending;     /* approver decisions not yet in status: [{name,node,decision,reason}] */
    km_csr_approver *approver; /* while the window is open */
};

static cJSON *status_obj(km_recovery *r)
{
    return km_json_obj(r->obj, "status");
}

static long long generation(const km_recovery *r)
{
    return (long long)KM_JSON_NUM(r->obj, 0, "metadata", "generation");
}

cJSON *km_recovery_ref(const cJSON *obj)
{
    cJSON *ref = cJSON_CreateObject();
    cJSON *md = ref ? cJSON_AddObjectToObject(ref, "metadata") : NULL;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    const char *uid = KM_JSON_STR(obj, "metadata", "uid");
    if (!md || !cJSON_AddStringToObject(ref, "apiVersion", KM_RECOVERY_API_VERSION) ||
        !cJSON_AddStringToObject(ref, "kind", KM_RECOVERY_KIND) ||
        !cJSON_AddStringToObject(md, "name", name ? name : "run-once") ||
        (uid && !cJSON_AddStringToObject(md, "uid", uid))) {
        cJSON_Delete(ref);
        return NULL;
    }
    return ref;
}

static km_status build_ref(km_recovery *r)
{
    cJSON *ref = km_recovery_ref(r->obj);
    if (!ref)
        return KM_ENOMEM;
    cJSON_Delete(r->ref);
    r->ref = ref;
    return KM_OK;
}

km_status km_recovery_new(const cJSON *obj, const km_recovery_opts *o, km_recovery **out,
                          km_err *err)
{
    km_status st = KM_OK;
    km_recovery *r = calloc(1, sizeof(*r));
    if (!r)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->o = *o;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    snprintf(r->name, sizeof(r->name), "%s", name ? name : "run-once");
    st = km_kube_path(r->path, sizeof(r->path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                      KM_RECOVERY_PLURAL, r->name, NULL);
    if (st != KM_OK) {
        km_err_set(err, st, "recovery %s: name too long", r->name);
        goto fail;
    }
    st = km_recovery_spec_defaults(KM_JSON_AT(obj, "spec"), &r->spec, err);
    if (st != KM_OK) {
        km_err_prefix(err, "ClusterRecovery %s", r->name);
        goto fail;
    }
    r->obj = cJSON_Duplicate(obj, 1);
    r->pending = cJSON_CreateArray();
    if (!r->obj || !r->pending || !status_obj(r) || build_ref(r) != KM_OK) {
        st = km_err_set(err, KM_ENOMEM, "recovery: out of memory");
        goto fail;
    }
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r->obj, "metadata")) &&
        !km_json_obj(r->obj, "metadata")) {
        st = km_err_set(err, KM_ENOMEM, "recovery: out of memory");
        goto fail;
    }
    r->dry_run = o->dry_run || KM_JSON_BOOL(r->spec, 0, "dryRun");
    r->deleting = KM_JSON_STR(r->obj, "metadata", "deletionTimestamp") != NULL;
    *out = r;
    return KM_OK;
fail:
    km_recovery_free(r);
    return st;
}

static void approver_stop(km_recovery *r);

void km_recovery_free(km_recovery *r)
{
    if (!r)
        return;
    approver_stop(r);
    cJSON_Delete(r->obj);
    cJSON_Delete(r->spec);
    cJSON_Delete(r->ref);
    cJSON_Delete(r->pending);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

const cJSON *km_recovery_object(const km_recovery *r)
{
    return r->obj;
}

void km_recovery_cancel(km_recovery *r)
{
    atomic_store(&r->cancel, 1);
}

int km_recovery_deleting(const km_recovery *r)
{
    return r->deleting;
}

static int stopping(km_recovery *r)
{
    if (r->o.stop && atomic_load(r->o.stop))
        atomic_store(&r->cancel, 1);
    return atomic_load(&r->cancel) != 0;
}

km_status km_recovery_refresh(km_recovery *r, const cJSON *fresh, km_err *err)
{
    const char *uid = KM_JSON_STR(r->obj, "metadata", "uid");
    const char *fuid = KM_JSON_STR(fresh, "metadata", "uid");
    if (uid && (!fuid || strcmp(uid, fuid) != 0))
        return km_err_set(err, KM_ESTATE, "ClusterRecovery %s was replaced", r->name);
    const cJSON *md = KM_JSON_AT(fresh, "metadata");
    const cJSON *spec = KM_JSON_AT(fresh, "spec");
    cJSON *mdc = md ? cJSON_Duplicate(md, 1) : NULL;
    cJSON *specc = spec ? cJSON_Duplicate(spec, 1) : NULL;
    if ((md && !mdc) || (spec && !specc)) {
        cJSON_Delete(mdc);
        cJSON_Delete(specc);
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    }
    if (mdc) {
        cJSON_DeleteItemFromObjectCaseSensitive(r->obj, "metadata");
        cJSON_AddItemToObject(r->obj, "metadata", mdc);
    }
    if (specc) {
        /* The spec the run uses stays the validated one (r->spec); keep the raw one current. */
        cJSON_DeleteItemFromObjectCaseSensitive(r->obj, "spec");
        cJSON_AddItemToObject(r->obj, "spec", specc);
    }
    r->deleting = KM_JSON_STR(r->obj, "metadata", "deletionTimestamp") != NULL;
    if (r->deleting)
        atomic_store(&r->cancel, 1);
    return KM_OK;
}

static void record(km_recovery *r, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void record(km_recovery *r, const char *type, const char *reason, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    km_events_record(r->o.events, r->ref, type, reason, msg);
}

static void set_cond(km_recovery *r, const char *type, const char *cstatus, const char *reason,
                     const char *message)
{
    char now[32];
    km_clock_now_text(now, sizeof(now));
    km_cond_set(status_obj(r), type, cstatus, reason, message, generation(r), now);
}

static void set_progress(km_recovery *r, const char *step, const char *text)
{
    char shortened[257]; /* the CRD's maxLength */
    snprintf(shortened, sizeof(shortened), "%s", text);
    km_json_set_str(status_obj(r), "progress", shortened);
    if (r->o.progress)
        r->o.progress(r->name, step ? step : "", text, r->o.user);
}

/* ---- CSR approval window ------------------------------------------------------------------- */

static time_t parse_time(const char *s)
{
    time_t t;
    return km_clock_parse(s, &t) == KM_OK ? t : (time_t)-1;
}

/* Folds queued approver decisions into status.csr.  Returns 1 when something changed. */
static int flush_decisions(km_recovery *r)
{
    pthread_mutex_lock(&r->mu);
    cJSON *pending = r->pending;
    cJSON *fresh = cJSON_CreateArray();
    if (!fresh || cJSON_GetArraySize(pending) == 0) {
        pthread_mutex_unlock(&r->mu);
        cJSON_Delete(fresh);
        return 0;
    }
    r->pending = fresh;
    pthread_mutex_unlock(&r->mu);

    cJSON *csr = km_json_obj(status_obj(r), "csr");
    cJSON *d;
    cJSON_ArrayForEach(d, pending)
    {
        const char *decision = KM_JSON_STR(d, "decision");
        const char *counter = !decision                           ? "ignored"
                              : strcmp(decision, "Approved") == 0 ? "approved"
                              : strcmp(decision, "Denied") == 0   ? "denied"
                                                                  : "pending";
        if (csr)
            km_step_counter_add(csr, counter, 1);
        if (r->o.count) {
            char name[64];
            snprintf(name, sizeof(name), "csr_%s_total", counter);
            r->o.count("csr", name, 1, r->o.user);
        }
        cJSON *recent = csr ? cJSON_GetObjectItemCaseSensitive(csr, "recent") : NULL;
        if (csr && !cJSON_IsArray(recent)) {
            cJSON_DeleteItemFromObjectCaseSensitive(csr, "recent");
            recent = cJSON_AddArrayToObject(csr, "recent");
        }
        if (recent) {
            while (cJSON_GetArraySize(recent) >= RECENT_MAX)
                cJSON_DeleteItemFromArray(recent, 0);
            cJSON *copy = cJSON_Duplicate(d, 1);
            if (copy && !cJSON_AddItemToArray(recent, copy))
                cJSON_Delete(copy);
        }
    }
    cJSON_Delete(pending);
    return 1;
}

/* Called from the approver's thread. */
static void hook_decided(const char *csr, const char *node, const char *decision,
                         const char *reason, void *user)
{
    km_recovery *r = user;
    cJSON *d = cJSON_CreateObject();
    if (!d)
        return;
    if (!cJSON_AddStringToObject(d, "name", csr ? csr : "") ||
        !cJSON_AddStringToObject(d, "node", node ? node : "") ||
        !cJSON_AddStringToObject(d, "decision", decision ? decision : "") ||
        !cJSON_AddStringToObject(d, "reason", reason ? reason : "")) {
        cJSON_Delete(d);
        return;
    }
    pthread_mutex_lock(&r->mu);
    if (!cJSON_AddItemToArray(r->pending, d))
        cJSON_Delete(d);
    pthread_mutex_unlock(&r->mu);
}

/* Called from the approver's thread: r->ref never changes while the approver runs. */
static void hook_event(const char *type, const char *reason, const char *message, void *user)
{
    km_recovery *r = user;
    km_events_record(r->o.events, r->ref, type, reason, message);
}

/* Starts the background approver (no-op when running).  Failure: logged, the window stays
 * recorded; the next tick retries. */
static km_status approver_start(km_recovery *r, km_err *err)
{
    if (r->approver)
        return KM_OK;
    cJSON *spec = cJSON_Duplicate(KM_JSON_AT(r->spec, "csr"), 1);
    if (!spec)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    int continuous =
        km_schema_bool(km_csr_def.fields, KM_JSON_AT(r->spec, "csr"), "continuous") && !r->o.once;
    const char *ends = KM_JSON_STR(status_obj(r), "csr", "windowEndsAt");
    /* run --once without --csr-window: the approver lives until the run ends. */
    int bounded = !continuous && ends && !(r->o.once && r->o.csr_window <= 0);
    km_status st = KM_OK;
    if (bounded && km_json_set_str(spec, "windowEndsAt", ends) != KM_OK) {
        st = km_err_set(err, KM_ENOMEM, "recovery: out of memory");
        goto out;
    }
    km_csr_hooks hooks = {hook_decided, hook_event, r};
    st = km_csr_approver_start(r->o.kube, spec, &hooks, &r->approver, err);
    if (st == KM_OK)
        km_log_info("CSR approver started", "recovery", r->name, "until",
                    continuous ? "continuous"
                    : bounded  ? ends
                               : "end of run");
out:
    cJSON_Delete(spec);
    return st;
}

static void approver_stop(km_recovery *r)
{
    if (!r->approver)
        return;
    km_csr_approver_free(r->approver);
    r->approver = NULL;
    km_log_info("CSR approver stopped", "recovery", r->name);
}

int km_recovery_window_open(const km_recovery *r)
{
    return r->approver != NULL && km_csr_approver_running(r->approver);
}

/* Whether the window of a recovery whose csr step finished is (still) open at `now`. */
static int window_should_be_open(km_recovery *r, time_t now)
{
    if (r->dry_run || !km_cond_is(status_obj(r), KM_COND_CSR, "True"))
        return 0;
    const char *reason = km_cond_reason(status_obj(r), KM_COND_CSR);
    if (!reason || strcmp(reason, "WindowOpen") != 0)
        return 0;
    if (km_schema_bool(km_csr_def.fields, KM_JSON_AT(r->spec, "csr"), "continuous") && !r->o.once)
        return 1;
    time_t ends = parse_time(KM_JSON_STR(status_obj(r), "csr", "windowEndsAt"));
    return ends != (time_t)-1 && now < ends;
}

/* ---- persisting ---------------------------------------------------------------------------- */

/* Writes the status (operator mode) and notices deletion.  KM_ECANCELED when the object is being
 * deleted or the run was cancelled. */
static km_status save(km_recovery *r, km_err *err)
{
    flush_decisions(r);
    if (r->o.persist) {
        km_status st = km_recovery_write_status(r->o.kube, r->path, r->obj, err);
        if (st != KM_OK)
            return st;
        if (KM_JSON_STR(r->obj, "metadata", "deletionTimestamp")) {
            r->deleting = 1;
            atomic_store(&r->cancel, 1);
        }
    }
    if (stopping(r))
        return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: stopped%s", r->name,
                          r->deleting ? " (being deleted)" : "");
    return KM_OK;
}

static km_status ctx_save(km_step_ctx *ctx, km_err *err)
{
    return save(ctx->user, err);
}

static void ctx_event(km_step_ctx *ctx, const char *type, const char *reason, const char *message)
{
    km_recovery *r = ctx->user;
    km_events_record(r->o.events, r->ref, type, reason, message);
}

static void ctx_progress(km_step_ctx *ctx, const char *text)
{
    km_recovery *r = ctx->user;
    set_progress(r, r->cur_step, text);
}

static void ctx_count(km_step_ctx *ctx, const char *counter, long delta)
{
    km_recovery *r = ctx->user;
    if (r->o.count)
        r->o.count(r->cur_step ? r->cur_step : "", counter, delta, r->o.user);
}

static int transient(km_status st, const km_err *e)
{
    if (st == KM_ETRANSPORT || st == KM_ETIMEOUT)
        return 1;
    if (st == KM_EAPI)
        return e->http_code == 409 || e->http_code == 429 || e->http_code >= 500;
    return 0;
}

/* ---- running ------------------------------------------------------------------------------- */

/* Opens the CSR approval window after the csr step's pass. */
static void open_window(km_recovery *r, km_step_ctx *ctx)
{
    cJSON *csr = km_json_obj(status_obj(r), "csr");
    long secs =
        r->o.csr_window > 0
            ? r->o.csr_window
            : (long)km_schema_num(km_csr_def.fields, KM_JSON_AT(r->spec, "csr"), "windowSeconds");
    time_t now = time(NULL);
    char ends[32];
    km_clock_format_s(now + secs, ends, sizeof(ends));
    if (csr && !KM_JSON_STR(csr, "windowEndsAt"))
        km_json_set_str(csr, "windowEndsAt", ends);
    const char *until = csr ? KM_JSON_STR(csr, "windowEndsAt") : ends;
    char msg[768];
    if (r->dry_run) {
        snprintf(msg, sizeof(msg), "dry run: %s; the background approver is not started",
                 ctx->cond_message);
        set_cond(r, KM_COND_CSR, "True", "DryRun", msg);
        return;
    }
    int continuous =
        km_schema_bool(km_csr_def.fields, KM_JSON_AT(r->spec, "csr"), "continuous") && !r->o.once;
    if (continuous)
        snprintf(msg, sizeof(msg), "%s; approving kubelet CSRs continuously", ctx->cond_message);
    else if (r->o.once && r->o.csr_window <= 0)
        snprintf(msg, sizeof(msg), "%s; approving kubelet CSRs while the pods step runs",
                 ctx->cond_message);
    else
        snprintf(msg, sizeof(msg), "%s; approving kubelet CSRs until %s", ctx->cond_message,
                 until ? until : ends);
    set_cond(r, KM_COND_CSR, "True", "WindowOpen", msg);
    km_err e;
    km_err_clear(&e);
    if (approver_start(r, &e) != KM_OK) {
        char buf[768];
        km_log_warn("CSR approver not started", "recovery", r->name, "error",
                    km_err_str(&e, buf, sizeof(buf)));
        record(r, "Warning", "ApproverNotStarted", "CSR approver not started: %s", e.message);
    } else {
        record(r, "Normal", "WindowOpen", "CSR approval window open: %s", msg);
    }
}

static int step_selected(const km_recovery *r, int step)
{
    return r->o.steps == 0 || (r->o.steps & (1u << step));
}

/* Runs one step to its end.  KM_OK: the condition is final (True/False) and *failed is set when
 * it is False.  Otherwise interrupted (see km_recovery_run). */
static km_status run_step(km_recovery *r, int step, int *failed, km_err *err)
{
    const km_step_def *def = km_recovery_step_def(step);
    const char *key = def->key;
    cJSON *status = status_obj(r);
    char msg[768];

    if (!km_schema_bool(def->fields, KM_JSON_AT(r->spec, key), "enabled") ||
        !step_selected(r, step)) {
        set_cond(r, def->cond, "True", "Disabled",
                 step_selected(r, step) ? "disabled in spec" : "not selected (--steps)");
        snprintf(msg, sizeof(msg), "%s: disabled", key);
        set_progress(r, key, msg);
        return save(r, err);
    }
    r->cur_step = key;
    km_json_set_str(status, "currentStep", key);
    if (!km_cond_is(status, def->cond, "Unknown") ||
        strcmp(km_cond_reason(status, def->cond), "InProgress") != 0) {
        set_cond(r, def->cond, "Unknown", "InProgress", "step running");
        record(r, "Normal", "StepStarted", "step %s started%s", key,
               r->dry_run ? " (dry run)" : "");
    }
    snprintf(msg, sizeof(msg), "%s: running", key);
    set_progress(r, key, msg);
    km_status st = save(r, err);
    if (st != KM_OK)
        return st;

    km_step_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.def = def;
    ctx.kube = r->o.kube;
    ctx.spec = KM_JSON_AT(r->spec, key);
    ctx.status = km_json_obj(status, key);
    ctx.dry_run = r->dry_run;
    ctx.recovery = r->name;
    ctx.started_at = KM_JSON_STR(status, "startedAt");
    ctx.current_ca_pem = r->o.current_ca_pem;
    ctx.cancel = &r->cancel;
    ctx.save = ctx_save;
    ctx.event = ctx_event;
    ctx.progress = ctx_progress;
    ctx.count = ctx_count;
    ctx.user = r;
    if (!ctx.status)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");

    km_backoff bo;
    km_backoff_init(&bo, 1.0, 10.0, 2.0, 0.2);
    for (int attempt = 1;; attempt++) {
        km_err e;
        km_err_clear(&e);
        ctx.cond_status[0] = ctx.cond_reason[0] = ctx.cond_message[0] = '\0';
        st = def->run(&ctx, &e);
        if (st == KM_OK)
            break;
        char ebuf[768];
        km_err_str(&e, ebuf, sizeof(ebuf));
        if (st == KM_ECANCELED || stopping(r)) {
            if (err)
                *err = e;
            return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: stopped in step %s", r->name,
                              key);
        }
        if (r->o.persist && transient(st, &e)) {
            /* Operator mode: the controller retries with backoff, resuming from status. */
            snprintf(msg, sizeof(msg), "will retry: %.700s", ebuf);
            set_cond(r, def->cond, "Unknown", "Retrying", msg);
            record(r, "Warning", "StepRetrying", "step %s: %s", key, ebuf);
            km_err e2;
            save(r, &e2);
            if (err)
                *err = e;
            return st;
        }
        if (!r->o.persist && transient(st, &e) && attempt < 3) {
            km_log_warn("step failed, retrying", "step", key, "error", ebuf);
            double d = km_backoff_next(&bo, km_backoff_rand());
            km_clock_sleep(d, &r->cancel);
            continue;
        }
        set_cond(r, def->cond, "False", "Error", ebuf);
        record(r, "Warning", def->fail_reason, "step %s failed: %s", key, ebuf);
        snprintf(msg, sizeof(msg), "%s: failed", key);
        set_progress(r, key, msg);
        *failed = 2; /* an error: the run ends */
        return save(r, err);
    }

    const char *cst = ctx.cond_status[0] ? ctx.cond_status : "True";
    const char *reason = ctx.cond_reason[0] ? ctx.cond_reason : "Completed";
    if (strcmp(cst, "True") != 0 && strcmp(cst, "False") != 0)
        cst = "False";
    if (step == KM_STEP_CSR && strcmp(cst, "True") == 0) {
        open_window(r, &ctx);
    } else {
        set_cond(r, def->cond, cst, reason, ctx.cond_message);
    }
    if (strcmp(cst, "True") == 0) {
        record(r, "Normal", "StepCompleted", "step %s completed: %s", key, ctx.cond_message);
        snprintf(msg, sizeof(msg), "%s: done", key);
    } else {
        *failed = 1;
        record(r, "Warning", def->fail_reason, "step %s finished unhealthy (%s): %s", key, reason,
               ctx.cond_message);
        snprintf(msg, sizeof(msg), "%s: %s", key, reason);
    }
    set_progress(r, key, msg);
    return save(r, err);
}

static int cond_final(const cJSON *status, const char *type)
{
    return km_cond_is(status, type, "True") || km_cond_is(status, type, "False");
}

km_status km_recovery_run(km_recovery *r, km_err *err)
{
    cJSON *status = status_obj(r);
    char now[32];
    if (!status)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    if (km_recovery_is_completed(r->obj))
        return KM_OK;
    if (stopping(r))
        return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: stopped", r->name);

    const char *phase = KM_JSON_STR(status, "phase");
    int resumed = phase && strcmp(phase, KM_PHASE_RUNNING) == 0;
    km_clock_now_text(now, sizeof(now));
    if (!resumed) {
        if (!KM_JSON_STR(status, "startedAt"))
            km_json_set_str(status, "startedAt", now);
        km_json_set_str(status, "phase", KM_PHASE_RUNNING);
        record(r, "Normal", "Started", "recovery started%s", r->dry_run ? " (dry run)" : "");
    } else {
        record(r, "Normal", "Resumed", "recovery resumed at step %s",
               KM_JSON_STR(status, "currentStep") ? KM_JSON_STR(status, "currentStep") : "?");
    }
    km_json_set_num(status, "observedGeneration", (double)generation(r));
    set_cond(r, KM_COND_SUCCEEDED, "Unknown", "Running",
             r->dry_run ? "recovery running (dry run)" : "recovery running");
    km_status st = save(r, err);
    if (st != KM_OK)
        return st;

    int failed_step = -1;
    int error_end = 0;
    for (int step = 0; step < KM_STEP_COUNT && !error_end; step++) {
        const char *cond = km_recovery_step_def(step)->cond;
        if (cond_final(status, cond)) {
            if (km_cond_is(status, cond, "False") && failed_step < 0) {
                failed_step = step;
                const char *reason = km_cond_reason(status, cond);
                if (reason && strcmp(reason, "Error") == 0)
                    error_end = 1;
            }
            if (step == KM_STEP_CSR && window_should_be_open(r, time(NULL))) {
                km_err e;
                if (approver_start(r, &e) != KM_OK)
                    km_log_warn("CSR approver not restarted", "recovery", r->name, "error",
                                e.message);
            }
            continue;
        }
        int failed = 0;
        st = run_step(r, step, &failed, err);
        r->cur_step = NULL;
        if (st != KM_OK)
            return st;
        if (failed && failed_step < 0)
            failed_step = step;
        if (failed == 2)
            error_end = 1;
    }

    km_clock_now_text(now, sizeof(now));
    km_json_set_str(status, "currentStep", "");
    km_json_set_str(status, "completedAt", now);
    if (failed_step < 0) {
        km_json_set_str(status, "phase", KM_PHASE_SUCCEEDED);
        set_cond(r, KM_COND_SUCCEEDED, "True", "Completed",
                 r->dry_run ? "dry run completed: nothing was changed" : "recovery completed");
        set_progress(r, NULL, r->dry_run ? "done (dry run)" : "done");
        record(r, "Normal", "Completed", "recovery completed%s", r->dry_run ? " (dry run)" : "");
    } else {
        const km_step_def *def = km_recovery_step_def(failed_step);
        const char *key = def->key;
        const char *msgc = KM_JSON_STR(km_cond_get(status, def->cond), "message");
        char msg[768];
        snprintf(msg, sizeof(msg), "step %s failed: %s", key, msgc ? msgc : "");
        km_json_set_str(status, "phase", KM_PHASE_FAILED);
        set_cond(r, KM_COND_SUCCEEDED, "False", def->fail_reason, msg);
        snprintf(msg, sizeof(msg), "failed at %s", key);
        set_progress(r, NULL, msg);
        record(r, "Warning", "Failed", "recovery failed: step %s", key);
    }
    /* Completion must be persisted even when a cancel arrived meanwhile. */
    flush_decisions(r);
    if (r->o.persist)
        return km_recovery_write_status(r->o.kube, r->path, r->obj, err);
    return KM_OK;
}

km_status km_recovery_mark_waiting(km_recovery *r, const char *running, km_err *err)
{
    cJSON *status = status_obj(r);
    if (!status)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    char msg[512];
    snprintf(msg, sizeof(msg), "waiting for ClusterRecovery %s to finish", running);
    const char *phase = KM_JSON_STR(status, "phase");
    int changed = !phase || strcmp(phase, KM_PHASE_WAITING) != 0;
    char now[32];
    km_clock_now_text(now, sizeof(now));
    km_json_set_str(status, "phase", KM_PHASE_WAITING);
    if (KM_JSON_NUM(status, -1, "observedGeneration") != (double)generation(r)) {
        km_json_set_num(status, "observedGeneration", (double)generation(r));
        changed = 1;
    }
    if (!KM_JSON_STR(status, "progress")) {
        km_json_set_str(status, "progress", "waiting");
        changed = 1;
    }
    int c = km_cond_set(status, KM_COND_SUCCEEDED, "Unknown", "WaitingForOtherRecovery", msg,
                        generation(r), now);
    if (c != 0)
        changed = 1;
    if (!changed)
        return KM_OK;
    if (!r->o.persist) {
        record(r, "Normal", "Waiting", "%s", msg);
        return KM_OK;
    }
    /* One guarded attempt: on a conflict the caller re-reads and decides again (re-applying
     * "Waiting" onto a newer object could overwrite a run's progress). */
    char spath[600];
    snprintf(spath, sizeof(spath), "%s/status", r->path);
    cJSON *out = NULL;
    km_status st = km_kube_update(r->o.kube, spath, r->obj, &out, err);
    cJSON_Delete(out);
    if (st == KM_OK)
        record(r, "Normal", "Waiting", "%s", msg);
    return st;
}

static km_status window_tick(km_recovery *r, int force_close, double *next_s, km_err *err)
{
    cJSON *status = status_obj(r);
    time_t now = time(NULL);
    int changed = flush_decisions(r);
    double next = -1;
    if (!force_close && window_should_be_open(r, now)) {
        if (!r->approver) {
            km_err e;
            km_err_clear(&e);
            if (approver_start(r, &e) != KM_OK)
                km_log_warn("CSR approver not started", "recovery", r->name, "error", e.message);
        }
        next = 10;
        time_t ends = parse_time(KM_JSON_STR(status, "csr", "windowEndsAt"));
        int continuous =
            km_schema_bool(km_csr_def.fields, KM_JSON_AT(r->spec, "csr"), "continuous") &&
            !r->o.once;
        if (!continuous && ends != (time_t)-1 && (double)(ends - now) < next)
            next = (double)(ends - now) + 0.5;
    } else {
        approver_stop(r);
        changed |= flush_decisions(r);
        const char *reason = km_cond_reason(status, KM_COND_CSR);
        if (reason && strcmp(reason, "WindowOpen") == 0 && !r->dry_run) {
            char msg[512];
            char at[32];
            km_clock_now_text(at, sizeof(at));
            snprintf(msg, sizeof(msg), "approval window closed at %s (approved %ld, denied %ld)",
                     at, (long)KM_JSON_NUM(status, 0, "csr", "approved"),
                     (long)KM_JSON_NUM(status, 0, "csr", "denied"));
            set_cond(r, KM_COND_CSR, "True", "WindowClosed", msg);
            record(r, "Normal", "WindowClosed", "%s", msg);
            changed = 1;
        }
    }
    if (next_s)
        *next_s = next;
    if (changed && r->o.persist)
        return km_recovery_write_status(r->o.kube, r->path, r->obj, err);
    return KM_OK;
}

km_status km_recovery_window_tick(km_recovery *r, double *next_s, km_err *err)
{
    return window_tick(r, 0, next_s, err);
}

km_status km_recovery_window_close(km_recovery *r, km_err *err)
{
    return window_tick(r, 1, NULL, err);
}
