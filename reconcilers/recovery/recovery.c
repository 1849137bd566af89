/* recovery.c — the ClusterRecovery run engine (see recovery.h): the steps of the table
 * (reconcilers/recovery/spec.h) in order, status after every unit, resume from status; the CSR
 * approval window (reconcilers/csr/window.h) after the csr step. */
#include "reconcilers/recovery/recovery.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/num.h"
#include "operator/base/log.h"
#include "reconcilers/bridge/retire.h"
#include "reconcilers/csr/window.h"
#include "reconcilers/recovery/persist.h"
#include "reconcilers/recovery/rebuild.h"
#include "reconcilers/recovery/spec.h"
#include "reconcilers/recovery/verify.h"
#include "reconcilers/step/conditions.h"
#include "reconcilers/step/retry.h"
#include "reconcilers/step/step.h"
#include "reconcilers/tokens/replace.h"

struct km_recovery {
    km_recovery_opts o;
    cJSON *obj;  /* the object with our status; owned */
    cJSON *spec; /* defaulted spec; owned */
    cJSON *ref;  /* {apiVersion, kind, metadata{name, uid}} for Events from any thread; owned */
    char name[256];
    char path[512];
    int dry_run;
    atomic_int cancel; /* the steps' cancel flag */
    atomic_int pause;  /* km_recovery_pause: the cancel is the user's brake (spec.paused) */
    int deleting;
    const char *cur_step;  /* key of the running step, for progress/count callbacks */
    km_csr_window *window; /* the CSR approval window */
    /* Per step: what its run kept for its settle (step.h keep; freed with def->keep_free), and
     * whether its run handed work to the cluster in this process (settle due after the later
     * steps). */
    void *keep[KM_STEP_COUNT];
    int handed[KM_STEP_COUNT];
};

/* How one step ended. */
typedef enum step_end {
    STEP_DONE = 0,  /* condition True */
    STEP_UNHEALTHY, /* finished, condition False: the next steps still run */
    STEP_ERROR,     /* failed with an error: the run ends */
} step_end;

static cJSON *status_obj(km_recovery *r)
{
    return km_json_obj(r->obj, "status");
}

static cJSON *csr_status(km_recovery *r)
{
    return km_json_obj(status_obj(r), "csr");
}

static const char *csr_cond(void)
{
    return km_recovery_step_def(KM_STEP_CSR)->cond;
}

/* The CSR condition's reason while it is True (what the window needs), else NULL. */
static const char *csr_open_reason(km_recovery *r)
{
    cJSON *status = status_obj(r);
    return km_cond_is(status, csr_cond(), "True") ? km_cond_reason(status, csr_cond()) : NULL;
}

static long long generation(const km_recovery *r)
{
    return km_num_llong(KM_JSON_NUM(r->obj, 0, "metadata", "generation"), 0);
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
    char now[KM_CLOCK_TEXT_MAX];
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

static int stopping(km_recovery *r)
{
    if (r->o.stop && atomic_load(r->o.stop))
        atomic_store(&r->cancel, 1);
    return atomic_load(&r->cancel) != 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void window_event(const char *type, const char *reason, const char *message, void *user)
{
    km_recovery *r = user; /* r->ref never changes while the window is open */
    km_events_record(r->o.events, r->ref, type, reason, message);
}

static void window_count(const char *counter, long delta, void *user)
{
    km_recovery *r = user;
    if (r->o.count)
        r->o.count("csr", counter, delta, r->o.user);
}

static km_status window_new(km_recovery *r, km_err *err)
{
    km_csr_window_opts wo = {
        .kube = r->o.kube,
        .spec = KM_JSON_AT(r->spec, "csr"),
        .once = r->o.once,
        .seconds = r->o.csr_window,
        .dry_run = r->dry_run,
        .event = window_event,
        .count = window_count,
        .user = r,
    };
    return km_csr_window_new(&wo, &r->window, err);
}

km_status km_recovery_new(const cJSON *obj, const km_recovery_opts *o, km_recovery **out,
                          km_err *err)
{
    km_status st = KM_OK;
    km_recovery *r = calloc(1, sizeof(*r));
    if (!r)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    r->o = *o;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    snprintf(r->name, sizeof(r->name), "%s", name ? name : "run-once");
    if (km_kube_path(r->path, sizeof(r->path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                     KM_RECOVERY_PLURAL, r->name, NULL) != KM_OK) {
        st = km_err_set(err, KM_ETOOBIG, "recovery %s: name too long", r->name);
        goto fail;
    }
    if ((st = km_recovery_spec_defaults(KM_JSON_AT(obj, "spec"), &r->spec, err)) != KM_OK) {
        km_err_prefix(err, "ClusterRecovery %s", r->name);
        goto fail;
    }
    r->obj = cJSON_Duplicate(obj, 1);
    if (!r->obj || !status_obj(r) || !km_json_obj(r->obj, "metadata") ||
        !(r->ref = km_recovery_ref(r->obj))) {
        st = km_err_set(err, KM_ENOMEM, "recovery: out of memory");
        goto fail;
    }
    r->dry_run = o->dry_run || KM_JSON_BOOL(r->spec, 0, "dryRun");
    r->deleting = KM_JSON_STR(r->obj, "metadata", "deletionTimestamp") != NULL;
    if ((st = window_new(r, err)) != KM_OK)
        goto fail;
    *out = r;
    return KM_OK;
fail:
    km_recovery_free(r);
    return st;
}

void km_recovery_free(km_recovery *r)
{
    if (!r)
        return;
    km_csr_window_free(r->window);
    for (int i = 0; i < KM_STEP_COUNT; i++) {
        const km_step_def *def = km_recovery_step_def(i);
        if (r->keep[i] && def->keep_free)
            def->keep_free(r->keep[i]);
    }
    cJSON_Delete(r->obj);
    cJSON_Delete(r->spec);
    cJSON_Delete(r->ref);
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

void km_recovery_pause(km_recovery *r)
{
    atomic_store(&r->pause, 1);
    atomic_store(&r->cancel, 1);
}

int km_recovery_deleting(const km_recovery *r)
{
    return r->deleting;
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

/* ---- persisting ----------------------------------------------------------------------------- */

/* Writes the status (operator mode) and notices deletion.  KM_ECANCELED when the object is being
 * deleted or the run was cancelled. */
static km_status save(km_recovery *r, km_err *err)
{
    km_csr_window_flush(r->window, csr_status(r));
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

/* ---- the rebuild time ------------------------------------------------------------------------ */

/* status.rebuild = {time, source} (error removed); an Event when it changed. */
static void rebuild_set(km_recovery *r, time_t at, const char *source)
{
    cJSON *rb = km_json_obj(status_obj(r), "rebuild");
    char when[KM_CLOCK_TEXT_MAX];
    km_clock_format_s(at, when, sizeof(when));
    const char *had = KM_JSON_STR(rb, "time"), *had_src = KM_JSON_STR(rb, "source");
    int changed = !had || strcmp(had, when) != 0 || !had_src || strcmp(had_src, source) != 0;
    km_json_set_str(rb, "time", when);
    km_json_set_str(rb, "source", source);
    cJSON_DeleteItemFromObjectCaseSensitive(rb, "error");
    if (changed) {
        km_log_info("PKI rebuild time", "time", when, "source", source);
        record(r, "Normal", "RebuildTime",
               "PKI rebuilt at %s (%s): pods created before it use stale tokens", when, source);
    }
}

/* Settles status.rebuild (see recovery.h): --rebuild-time, spec.rebuildTime, an earlier record,
 * else derived from the cluster.  A time that cannot be derived is recorded as rebuild.error (the
 * steps that need it fail naming the field to set); nothing here fails the run. */
static void rebuild_settle(km_recovery *r)
{
    cJSON *rb = km_json_obj(status_obj(r), "rebuild");
    const char *given = r->o.rebuild_time ? r->o.rebuild_time : KM_JSON_STR(r->spec, "rebuildTime");
    time_t t;
    if (!rb)
        return;
    if (given && km_clock_parse(given, &t) == KM_OK) {
        rebuild_set(r, t, r->o.rebuild_time ? "--rebuild-time" : "spec.rebuildTime");
        return;
    }
    if (km_clock_parse(KM_JSON_STR(rb, "time"), &t) == KM_OK)
        return; /* recorded by an earlier attempt: stays what the run started with */
    km_rebuild d;
    km_err e;
    km_err_clear(&e);
    if (km_rebuild_derive(r->o.kube, r->o.current_ca_pem, &d, &e) == KM_OK) {
        rebuild_set(r, d.at, d.source);
        return;
    }
    char ebuf[600];
    km_err_str(&e, ebuf, sizeof(ebuf));
    if (!KM_JSON_STR(rb, "error"))
        record(r, "Warning", "RebuildTimeUnknown",
               "the PKI rebuild time could not be derived (%s): set spec.rebuildTime (run --once: "
               "--rebuild-time)",
               ebuf);
    km_json_set_str(rb, "error", ebuf);
}

/* ---- one step ------------------------------------------------------------------------------- */

/* The step's retry policy (retry.h), and a conflict the step did not settle itself. */
static int transient(km_status st, const km_err *e)
{
    return km_retry_transient(st, e) || (st == KM_EAPI && e->http_code == 409);
}

static int step_selected(const km_recovery *r, int step)
{
    return r->o.steps == 0 || (r->o.steps & (1u << step));
}

/* A step that is disabled in spec or not selected: True/Disabled.  1 when it is. */
static int step_disabled(km_recovery *r, const km_step_def *def, int step)
{
    if (km_schema_bool(def->fields, KM_JSON_AT(r->spec, def->key), "enabled") &&
        step_selected(r, step))
        return 0;
    char msg[128];
    set_cond(r, def->cond, "True", "Disabled",
             step_selected(r, step) ? "disabled in spec" : "not selected (--steps)");
    snprintf(msg, sizeof(msg), "%s: disabled", def->key);
    set_progress(r, def->key, msg);
    return 1;
}

/* km_step_ctx.cluster_ca: the current cluster CA as rebuild.h chooses it. */
static km_status ctx_cluster_ca(km_step_ctx *ctx, char **pem, km_err *err)
{
    return km_rebuild_current_ca(ctx->kube, ctx->current_ca_pem, pem, err);
}

/* Fills the context of step def (the rebuild time settled if it is not yet).  KM_ENOMEM. */
static km_status step_begin_ctx(km_recovery *r, const km_step_def *def, km_step_ctx *ctx)
{
    cJSON *status = status_obj(r);
    memset(ctx, 0, sizeof(*ctx));
    ctx->def = def;
    ctx->kube = r->o.kube;
    ctx->spec = KM_JSON_AT(r->spec, def->key);
    ctx->status = km_json_obj(status, def->key);
    ctx->dry_run = r->dry_run;
    ctx->recovery = r->name;
    ctx->started_at = KM_JSON_STR(status, "startedAt");
    ctx->current_ca_pem = r->o.current_ca_pem;
    ctx->cancel = &r->cancel;
    ctx->save = ctx_save;
    ctx->event = ctx_event;
    ctx->progress = ctx_progress;
    ctx->count = ctx_count;
    ctx->cluster_ca = ctx_cluster_ca;
    ctx->user = r;
    for (int i = 0; i < KM_STEP_COUNT; i++)
        if (km_recovery_step_def(i) == def)
            ctx->keep = &r->keep[i];
    if (km_clock_parse(KM_JSON_STR(status, "rebuild", "time"), &ctx->rebuilt_at) != KM_OK) {
        rebuild_settle(r); /* not derivable at the start: once more before each step */
        if (km_clock_parse(KM_JSON_STR(status, "rebuild", "time"), &ctx->rebuilt_at) != KM_OK)
            ctx->rebuilt_at = 0;
    }
    ctx->rebuild_note = ctx->rebuilt_at ? KM_JSON_STR(status, "rebuild", "source")
                                        : KM_JSON_STR(status, "rebuild", "error");
    return ctx->status ? KM_OK : KM_ENOMEM;
}

/* Marks the step running (Unknown/InProgress, once) and fills its context. */
static km_status step_begin(km_recovery *r, const km_step_def *def, km_step_ctx *ctx, km_err *err)
{
    cJSON *status = status_obj(r);
    char msg[128];
    r->cur_step = def->key;
    km_json_set_str(status, "currentStep", def->key);
    const char *reason = km_cond_reason(status, def->cond);
    if (!km_cond_is(status, def->cond, "Unknown") || !reason || strcmp(reason, "InProgress")) {
        set_cond(r, def->cond, "Unknown", "InProgress", "step running");
        record(r, "Normal", "StepStarted", "step %s started%s", def->key,
               r->dry_run ? " (dry run)" : "");
    }
    snprintf(msg, sizeof(msg), "%s: running", def->key);
    set_progress(r, def->key, msg);
    if (step_begin_ctx(r, def, ctx) != KM_OK)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    return save(r, err);
}

/* Runs the step's function fn (its run or settle): once in operator mode (a transient error goes
 * back to the controller's queue with the condition Unknown/Retrying), in run --once again with
 * backoff after a transient error until the retry policy's deadline (retry.h; the step resumes from
 * its status).  KM_OK also when it failed for good (*end STEP_ERROR, condition False/Error). */
static km_status step_attempts(km_recovery *r, km_step_ctx *ctx, km_step_fn fn, step_end *end,
                               km_err *err)
{
    const km_step_def *def = ctx->def;
    km_retry rt;
    km_retry_init(&rt, 0, &r->cancel);
    for (;;) {
        km_err e;
        km_err_clear(&e);
        ctx->cond_status[0] = ctx->cond_reason[0] = ctx->cond_message[0] = '\0';
        km_status st = fn(ctx, &e);
        if (st == KM_OK)
            return KM_OK;
        char ebuf[768], msg[800];
        km_err_str(&e, ebuf, sizeof(ebuf));
        if (st == KM_ECANCELED || stopping(r)) {
            if (err)
                *err = e;
            return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: stopped in step %s", r->name,
                              def->key);
        }
        if (r->o.persist && transient(st, &e)) {
            snprintf(msg, sizeof(msg), "will retry: %.700s", ebuf);
            set_cond(r, def->cond, "Unknown", "Retrying", msg);
            record(r, "Warning", "StepRetrying", "step %s: %s", def->key, ebuf);
            km_err ignored;
            save(r, &ignored);
            if (err)
                *err = e;
            return st;
        }
        if (!r->o.persist && transient(st, &e)) {
            km_log_warn("step failed, retrying", "step", def->key, "error", ebuf);
            if (km_retry_wait(&rt, def->key))
                continue;
        }
        set_cond(r, def->cond, "False", "Error", ebuf);
        record(r, "Warning", def->fail_reason, "step %s failed: %s", def->key, ebuf);
        snprintf(msg, sizeof(msg), "%s: failed", def->key);
        set_progress(r, def->key, msg);
        *end = STEP_ERROR;
        return KM_OK;
    }
}

/* Records the step's own result as its condition (the csr step's pass opens the approval
 * window).  A run (not a settle) of a step with settle that ended "Unknown" handed work to the
 * cluster: its condition stays Unknown with the step's reason, settle is due (r->handed). */
static step_end step_result(km_recovery *r, const km_step_ctx *ctx, int step, int settling)
{
    const km_step_def *def = ctx->def;
    const char *cst = ctx->cond_status[0] ? ctx->cond_status : "True";
    const char *reason = ctx->cond_reason[0] ? ctx->cond_reason : "Completed";
    char msg[768];
    if (strcmp(cst, "Unknown") == 0 && def->settle && !settling) {
        reason = ctx->cond_reason[0] ? ctx->cond_reason : "Waiting";
        set_cond(r, def->cond, "Unknown", reason, ctx->cond_message);
        record(r, "Normal", "StepWaiting", "step %s: %s (settled after the later steps)", def->key,
               ctx->cond_message);
        snprintf(msg, sizeof(msg), "%s: %s", def->key, reason);
        set_progress(r, def->key, msg);
        r->handed[step] = 1;
        return STEP_DONE;
    }
    if (strcmp(cst, "True") != 0 && strcmp(cst, "False") != 0)
        cst = "False";
    if (step == KM_STEP_CSR && strcmp(cst, "True") == 0) {
        char wreason[32];
        km_csr_window_open(r->window, csr_status(r), ctx->cond_message, wreason, sizeof(wreason),
                           msg, sizeof(msg));
        set_cond(r, def->cond, "True", wreason, msg);
    } else {
        set_cond(r, def->cond, cst, reason, ctx->cond_message);
    }
    if (strcmp(cst, "True") == 0) {
        record(r, "Normal", "StepCompleted", "step %s completed: %s", def->key, ctx->cond_message);
        snprintf(msg, sizeof(msg), "%s: done", def->key);
    } else {
        record(r, "Warning", def->fail_reason, "step %s finished unhealthy (%s): %s", def->key,
               reason, ctx->cond_message);
        snprintf(msg, sizeof(msg), "%s: %s", def->key, reason);
    }
    set_progress(r, def->key, msg);
    return strcmp(cst, "True") == 0 ? STEP_DONE : STEP_UNHEALTHY;
}

/* The attempts of fn (the step's run, or its settle when settling) on a context that st says
 * was set up, then the step's condition from its result; persisted.  KM_OK: the run ended (a
 * settle: the condition is final), *end says how.  Otherwise interrupted (see km_recovery_run). */
static km_status attempts_to_end(km_recovery *r, km_status st, km_step_ctx *ctx, int step,
                                 int settling, step_end *end, km_err *err)
{
    const km_step_def *def = ctx->def;
    if (st == KM_OK)
        st = step_attempts(r, ctx, settling ? def->settle : def->run, end, err);
    r->cur_step = NULL;
    if (st != KM_OK)
        return st;
    if (settling)
        r->handed[step] = 0;
    if (*end != STEP_ERROR)
        *end = step_result(r, ctx, step, settling);
    return save(r, err);
}

/* Runs one step to its end.  KM_OK: the condition is final (True/False) or, for a step that
 * handed work to the cluster, Unknown with its settle due; *end says how.  Otherwise
 * interrupted (see km_recovery_run). */
static km_status run_step(km_recovery *r, int step, step_end *end, km_err *err)
{
    const km_step_def *def = km_recovery_step_def(step);
    km_step_ctx ctx;
    *end = STEP_DONE;
    if (step_disabled(r, def, step))
        return save(r, err);
    return attempts_to_end(r, step_begin(r, def, &ctx, err), &ctx, step, 0, end, err);
}

/* The settle of a step whose run handed work to the cluster (step.h), to its end: as run_step,
 * with the step's settle.  KM_OK: the condition is final, *end says how. */
static km_status settle_step(km_recovery *r, int step, step_end *end, km_err *err)
{
    const km_step_def *def = km_recovery_step_def(step);
    km_step_ctx ctx;
    char msg[128];
    *end = STEP_DONE;
    r->cur_step = def->key;
    km_json_set_str(status_obj(r), "currentStep", def->key);
    snprintf(msg, sizeof(msg), "%s: settling", def->key);
    set_progress(r, def->key, msg);
    km_status st = step_begin_ctx(r, def, &ctx) != KM_OK
                       ? km_err_set(err, KM_ENOMEM, "recovery: out of memory")
                       : save(r, err);
    return attempts_to_end(r, st, &ctx, step, 1, end, err);
}

/* The settles due (steps whose run handed work to the cluster in this process), in step order,
 * after the later steps ran.  *failed_step becomes the first step in order that failed.
 * Failure: as run_step (interrupted: resumable). */
static km_status run_settles(km_recovery *r, int *failed_step, km_err *err)
{
    for (int step = 0; step < KM_STEP_COUNT; step++) {
        step_end end = STEP_DONE;
        if (!r->handed[step])
            continue;
        km_status st = settle_step(r, step, &end, err);
        if (st != KM_OK)
            return st;
        if (end != STEP_DONE && (*failed_step < 0 || step < *failed_step))
            *failed_step = step;
    }
    return KM_OK;
}

/* ---- the run ------------------------------------------------------------------------------- */

static int cond_final(const cJSON *status, const char *type)
{
    return km_cond_is(status, type, "True") || km_cond_is(status, type, "False");
}

/* Phase Running (a fresh start or a resume), Succeeded Unknown/Running, persisted. */
static km_status run_begin(km_recovery *r, km_err *err)
{
    cJSON *status = status_obj(r);
    char now[KM_CLOCK_TEXT_MAX];
    const char *phase = KM_JSON_STR(status, "phase");
    km_clock_now_text(now, sizeof(now));
    if (!phase || strcmp(phase, KM_PHASE_RUNNING) != 0) {
        if (!KM_JSON_STR(status, "startedAt"))
            km_json_set_str(status, "startedAt", now);
        km_json_set_str(status, "phase", KM_PHASE_RUNNING);
        record(r, "Normal", "Started", "recovery started%s", r->dry_run ? " (dry run)" : "");
    } else {
        const char *cur = KM_JSON_STR(status, "currentStep");
        record(r, "Normal", "Resumed", "recovery resumed at step %s", cur ? cur : "?");
    }
    if (km_cond_is(status, KM_COND_PAUSED, "True"))
        set_cond(r, KM_COND_PAUSED, "False", "UserResumed", "spec.paused is false: running");
    km_json_set_num(status, "observedGeneration", (double)generation(r));
    rebuild_settle(r); /* before any step edits a bundle */
    set_cond(r, KM_COND_SUCCEEDED, "Unknown", "Running",
             r->dry_run ? "recovery running (dry run)" : "recovery running");
    return save(r, err);
}

/* A step finished before (resume): *failed_step / *error_end as it ended; the approval window
 * re-opens when it is still due. */
static void step_finished_before(km_recovery *r, int step, int *failed_step, int *error_end)
{
    cJSON *status = status_obj(r);
    const char *cond = km_recovery_step_def(step)->cond;
    if (km_cond_is(status, cond, "False") && *failed_step < 0) {
        const char *reason = km_cond_reason(status, cond);
        *failed_step = step;
        *error_end = reason && strcmp(reason, "Error") == 0;
    }
    if (step == KM_STEP_CSR)
        km_csr_window_resume(r->window, csr_status(r), csr_open_reason(r));
}

/* The steps' `last` hooks (step.h), after the final status was written: each once, for a step
 * that ran (not disabled); their status changes are persisted again. */
static void run_last(km_recovery *r)
{
    for (int step = 0; step < KM_STEP_COUNT; step++) {
        const km_step_def *def = km_recovery_step_def(step);
        const char *reason = km_cond_reason(status_obj(r), def->cond);
        km_step_ctx ctx;
        km_err e;
        km_err_clear(&e);
        if (!def->last || !cond_final(status_obj(r), def->cond) ||
            (reason && strcmp(reason, "Disabled") == 0))
            continue;
        r->cur_step = def->key;
        if (step_begin_ctx(r, def, &ctx) != KM_OK || def->last(&ctx, &e) != KM_OK) {
            char ebuf[600];
            km_log_warn("step's last action failed", "step", def->key, "error",
                        km_err_str(&e, ebuf, sizeof(ebuf)));
        }
        r->cur_step = NULL;
        if (r->o.persist)
            km_recovery_write_status(r->o.kube, r->path, r->obj, NULL);
    }
}

/* The bridge's answer for Verified: while the server still trusts the old key (BridgeRetirable
 * set, not BridgeRetired) the cluster is not healed; a bridge that could not be read cannot
 * tell.  No answer without a bridge. */
static void verify_bridge(km_recovery *r, km_verify *v)
{
    const cJSON *c = km_cond_get(status_obj(r), KM_COND_BRIDGE_RETIRABLE);
    const char *cs = KM_JSON_STR(c, "status"), *m = KM_JSON_STR(c, "message");
    char text[1024];
    if (!km_bridge_active(status_obj(r)))
        return;
    if (!cs || strcmp(cs, "Unknown") == 0) {
        km_err e;
        km_err_clear(&e);
        km_err_set(&e, KM_EIO, "%.900s", m ? m : "BridgeRetirable unknown");
        km_verify_add(v, "bridge", KM_EIO, NULL, NULL, &e);
        return;
    }
    snprintf(text, sizeof(text),
             "the API server still accepts the old key's tokens (BridgeRetirable %s: %.900s)", cs,
             m ? m : "");
    km_verify_add(v, "bridge", KM_OK, "False", text, NULL);
}

/* The Verified condition (verify.h): every step's verify hook, after the final status was
 * written, and the bridge (verify_bridge); persisted.  Each hook only reads. */
static void run_verify(km_recovery *r)
{
    km_verify v;
    char msg[4096];
    const char *cst, *reason;
    memset(&v, 0, sizeof(v));
    for (int step = 0; step < KM_STEP_COUNT; step++) {
        const km_step_def *def = km_recovery_step_def(step);
        km_step_ctx ctx;
        km_err e;
        km_err_clear(&e);
        if (!def->verify)
            continue;
        r->cur_step = def->key;
        km_status st = step_begin_ctx(r, def, &ctx) != KM_OK
                           ? km_err_set(&e, KM_ENOMEM, "recovery: out of memory")
                           : def->verify(&ctx, &e);
        km_verify_add(&v, def->flag, st, ctx.cond_status, ctx.cond_message, &e);
        r->cur_step = NULL;
    }
    verify_bridge(r, &v);
    km_verify_result(&v, &cst, &reason, msg, sizeof(msg));
    set_cond(r, KM_COND_VERIFIED, cst, reason, msg);
    record(r, strcmp(cst, "True") == 0 ? "Normal" : "Warning", reason, "%.1000s", msg);
    km_log_info("recovery verified", "verified", cst, "reason", reason);
    if (r->o.persist)
        km_recovery_write_status(r->o.kube, r->path, r->obj, NULL);
}

/* Token Secrets this recovery replaced while bridged are deleted once no pod refers to them
 * (reconcilers/tokens/replace.h: after the pods step's restarts, and on each re-verification),
 * before the bridge's condition is computed.  An error is logged: the next re-verification tries
 * again. */
static void retire_replaced(km_recovery *r)
{
    cJSON *tok = cJSON_GetObjectItemCaseSensitive(status_obj(r), "tokens");
    km_tokens_retired t;
    km_err e;
    char eb[600];
    if (r->dry_run || !cJSON_IsObject(tok) || KM_JSON_LONG(tok, 0, "replaced") <= 0)
        return;
    km_err_clear(&e);
    if (km_tokens_retire_replaced(r->o.kube, 0, &r->cancel, &t, &e) == KM_OK)
        km_tokens_retired_record(tok, &t);
    else
        km_log_warn("recovery: cannot retire the replaced token Secrets yet", "error",
                    km_err_str(&e, eb, sizeof(eb)));
}

/* Phase Succeeded, or Failed naming the first step that failed; persisted even after a cancel. */
static km_status run_complete(km_recovery *r, int failed_step, km_err *err)
{
    cJSON *status = status_obj(r);
    char now[KM_CLOCK_TEXT_MAX], msg[768];
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
        const char *msgc = KM_JSON_STR(km_cond_get(status, def->cond), "message");
        snprintf(msg, sizeof(msg), "step %s failed: %s", def->key, msgc ? msgc : "");
        km_json_set_str(status, "phase", KM_PHASE_FAILED);
        set_cond(r, KM_COND_SUCCEEDED, "False", def->fail_reason, msg);
        snprintf(msg, sizeof(msg), "failed at %s", def->key);
        set_progress(r, NULL, msg);
        record(r, "Warning", "Failed", "recovery failed: step %s", def->key);
    }
    set_cond(r, KM_COND_VERIFIED, "Unknown", "Verifying",
             "checking from the server's answers that the cluster is healed");
    retire_replaced(r);
    if (km_bridge_retire_condition(r->o.kube, status, generation(r)) < 0) /* while bridged */
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    km_csr_window_flush(r->window, csr_status(r));
    if (r->o.persist) {
        km_status st = km_recovery_write_status(r->o.kube, r->path, r->obj, err);
        if (st != KM_OK)
            return st;
    }
    run_verify(r);
    run_last(r);
    return KM_OK;
}

int km_recovery_needs_reverify(const cJSON *obj)
{
    const cJSON *status = KM_JSON_AT(obj, "status");
    const char *reason = km_cond_reason(status, KM_COND_VERIFIED);
    if (!km_recovery_is_completed(obj) || !km_cond_get(status, KM_COND_VERIFIED))
        return 0;
    if (reason && strcmp(reason, "Verifying") == 0)
        return KM_REVERIFY_INTERRUPTED;
    return km_bridge_active(status) ? KM_REVERIFY_BRIDGED : 0;
}

km_status km_recovery_reverify(km_recovery *r, double *again_s, km_err *err)
{
    cJSON *status = status_obj(r);
    if (again_s)
        *again_s = -1;
    if (status)
        retire_replaced(r);
    if (!status || km_bridge_retire_condition(r->o.kube, status, generation(r)) < 0)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    run_verify(r);
    if (again_s && km_bridge_active(status))
        *again_s = KM_BRIDGE_RECHECK_S;
    return KM_OK;
}

km_status km_recovery_run(km_recovery *r, km_err *err)
{
    if (!status_obj(r))
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    if (km_recovery_is_completed(r->obj))
        return KM_OK;
    if (KM_JSON_BOOL(r->spec, 0, "paused"))
        km_recovery_pause(r);
    if (atomic_load(&r->pause) && !r->deleting) {
        km_recovery_mark_paused(r, NULL);
        return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: paused (spec.paused)", r->name);
    }
    if (stopping(r))
        return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: stopped", r->name);
    km_status st = run_begin(r, err);
    int failed_step = -1, error_end = 0;
    for (int step = 0; st == KM_OK && step < KM_STEP_COUNT && !error_end; step++) {
        if (cond_final(status_obj(r), km_recovery_step_def(step)->cond)) {
            step_finished_before(r, step, &failed_step, &error_end);
            continue;
        }
        step_end end = STEP_DONE;
        st = run_step(r, step, &end, err);
        if (st == KM_OK && end != STEP_DONE && failed_step < 0)
            failed_step = step;
        error_end = end == STEP_ERROR;
    }
    if (st == KM_OK)
        st = run_settles(r, &failed_step, err);
    if (st == KM_ECANCELED && atomic_load(&r->pause) && !r->deleting) {
        km_recovery_mark_paused(r, NULL); /* the safe point reached: say so */
        return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: paused (spec.paused)", r->name);
    }
    return st == KM_OK ? run_complete(r, failed_step, err) : st;
}

km_status km_recovery_mark_paused(km_recovery *r, km_err *err)
{
    cJSON *status = status_obj(r);
    if (!status)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    if (km_cond_is(status, KM_COND_PAUSED, "True"))
        return KM_OK;
    const char *cur = KM_JSON_STR(status, "currentStep");
    char msg[512];
    snprintf(msg, sizeof(msg),
             "spec.paused is true: stopped at a safe point%s%s; set it to false to resume",
             cur && cur[0] ? " in step " : "", cur && cur[0] ? cur : "");
    set_cond(r, KM_COND_PAUSED, "True", "UserPaused", msg);
    const char *was = KM_JSON_STR(status, "progress");
    char text[300];
    snprintf(text, sizeof(text), "paused%s%.200s", was && was[0] ? ": " : "", was ? was : "");
    set_progress(r, cur && cur[0] ? cur : NULL, text);
    record(r, "Normal", "Paused", "%s", msg);
    km_log_info("recovery paused", "recovery", r->name, "step", cur ? cur : "");
    if (!r->o.persist)
        return KM_OK;
    return km_recovery_write_status(r->o.kube, r->path, r->obj, err);
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

/* ---- the approval window -------------------------------------------------------------------- */

static km_status window_tick(km_recovery *r, int force_close, double *next_s, km_err *err)
{
    char closed[512];
    int changed = km_csr_window_tick(r->window, csr_status(r), csr_open_reason(r), force_close,
                                     next_s, closed, sizeof(closed));
    if (closed[0]) {
        set_cond(r, csr_cond(), "True", "WindowClosed", closed);
        changed = 1;
    }
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

int km_recovery_window_open(const km_recovery *r)
{
    return km_csr_window_running(r->window);
}
