/* controller.c — the ClusterRecovery controller (see controller.h). */
#include "reconcilers/recovery/controller.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "operator/base/num.h"
#include "operator/base/strmap.h"
#include "operator/cmd/manager.h"
#include "reconcilers/bridge/retire.h"
#include "reconcilers/recovery/finalizer.h"
#include "reconcilers/recovery/failure.h"
#include "reconcilers/recovery/invalid.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/recovery/spec.h"
#include "watch/queue.h"
#include "watch/store.h"
#include "watch/watcher.h"

#define CTL_MAX_WORKERS 16
#define CTL_NAME "clusterrecovery"
#define RETRY_BASE_S 1.0 /* the one retry policy: per key, 1 s doubling up to 60 s */
#define RETRY_MAX_S 60.0

typedef struct ctl_opts {
    km_kube *kube;              /* borrowed; cloned for every thread */
    km_events *events;          /* borrowed, may be NULL */
    km_metrics *metrics;        /* borrowed, may be NULL (a km_metrics_new_default registry) */
    const char *current_ca_pem; /* borrowed, may be NULL */
    int workers;                /* 0 = 2 */
} ctl_opts;

/* A km_recovery with its own client (cancelled through `cancel`). */
typedef struct holder {
    km_recovery *rec;
    km_kube *kube;
    atomic_int cancel;
    char name[256];
} holder;

typedef struct ctl {
    ctl_opts o;
    km_store *store;
    km_strmap *seen; /* name -> decisive state (watcher thread only) */
    km_queue *queue;
    km_watcher *watcher;
    char path[256];
    atomic_int stop;

    pthread_t workers[CTL_MAX_WORKERS];
    int nworkers;

    pthread_mutex_t mu;
    pthread_cond_t cv;   /* runner finished */
    holder *run;         /* the running recovery, NULL when none */
    int run_thread_live; /* a runner thread exists (joinable) */
    pthread_t run_thread;
    holder *win;          /* a completed recovery whose CSR window is open */
    km_strmap *failed;    /* name -> "uid/generation" that ended on a permanent error (under mu) */
    double reverified_at; /* km_clock_mono of the last reverify (under mu) */
} ctl;

/* What a reconcile asks of its worker. */
typedef struct outcome {
    double after; /* > 0: requeue after this many seconds */
    int started;  /* a run started: its result, not this reconcile, resets the key's backoff */
} outcome;

/* ---- metrics ------------------------------------------------------------------------------- */

static void m_add(ctl *c, const char *family, const char *const *values, double v)
{
    km_metric *f = c->o.metrics ? km_metrics_get(c->o.metrics, family) : NULL;
    if (f)
        km_metric_add(f, values, v);
}

static void step_count(const char *step, const char *counter, long delta, void *user)
{
    ctl *c = user;
    m_add(c, KM_METRIC_STEP_OBJECTS, KM_METRIC_VALUES(step, counter), (double)delta);
}

static void ctl_sample(ctl *c)
{
    if (!c->o.metrics)
        return;
    km_metric *f = km_metrics_get(c->o.metrics, KM_METRIC_WORKQUEUE_DEPTH);
    if (f)
        km_metric_set(f, KM_METRIC_VALUES(CTL_NAME), (double)km_queue_len(c->queue));
    km_watch_stats s;
    km_watcher_stats(c->watcher, &s);
    f = km_metrics_get(c->o.metrics, KM_METRIC_WATCH_RESTARTS);
    double cur = 0;
    if (f && km_metric_value(f, KM_METRIC_VALUES(KM_RECOVERY_PLURAL), &cur) != KM_OK)
        cur = 0;
    if (f && (double)s.restarts > cur)
        km_metric_add(f, KM_METRIC_VALUES(KM_RECOVERY_PLURAL), (double)s.restarts - cur);
}

/* ---- holders ------------------------------------------------------------------------------- */

static void holder_free(holder *h)
{
    if (!h)
        return;
    km_recovery_free(h->rec);
    km_kube_free(h->kube);
    free(h);
}

static void step_progress(const char *recovery, const char *step, const char *text, void *user)
{
    (void)user;
    km_log_info("progress", "recovery", recovery, "step", step, "progress", text);
}

static km_status holder_new(ctl *c, const cJSON *obj, holder **out, km_err *err)
{
    holder *h = calloc(1, sizeof(*h));
    if (!h)
        return km_err_set(err, KM_ENOMEM, "controller: out of memory");
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    snprintf(h->name, sizeof(h->name), "%s", name ? name : "");
    km_status st = km_kube_clone(c->o.kube, &h->kube, err);
    if (st != KM_OK) {
        free(h);
        return st;
    }
    km_kube_set_cancel(h->kube, &h->cancel);
    km_recovery_opts ro = {
        .kube = h->kube,
        .events = c->o.events,
        .stop = &c->stop,
        .persist = 1,
        .current_ca_pem = c->o.current_ca_pem,
        .progress = step_progress,
        .count = step_count,
        .user = c,
    };
    if ((st = km_recovery_new(obj, &ro, &h->rec, err)) != KM_OK) {
        holder_free(h);
        return st;
    }
    *out = h;
    return KM_OK;
}

static void holder_cancel(holder *h)
{
    if (!h)
        return;
    atomic_store(&h->cancel, 1);
    km_recovery_cancel(h->rec);
}

static int holder_is(const holder *h, const char *name)
{
    return h && strcmp(h->name, name) == 0;
}

/* Takes the window holder of name out (caller frees it).  Caller holds c->mu. */
static holder *take_window(ctl *c, const char *name)
{
    holder *w = NULL;
    if (holder_is(c->win, name)) {
        w = c->win;
        c->win = NULL;
    }
    return w;
}

/* ---- events -------------------------------------------------------------------------------- */

static int enqueue_visit(const char *key, const cJSON *obj, void *user)
{
    (void)obj;
    km_queue_add(user, key);
    return 0;
}

static void enqueue_all(ctl *c)
{
    km_store_each(c->store, enqueue_visit, c->queue);
}

/* What reconcile decides on.  A MODIFIED event that changes none of it (our own status writes)
 * enqueues nothing, so an interrupted run waits for its backoff: controller-runtime's
 * generation-changed predicate, plus deletion, our finalizer and completion. */
typedef struct decisive {
    long long generation;
    int deleting, finalized, completed;
} decisive;

static decisive decisive_of(const cJSON *obj)
{
    decisive d = {km_num_llong(KM_JSON_NUM(obj, 0, "metadata", "generation"), 0),
                  KM_JSON_STR(obj, "metadata", "deletionTimestamp") != NULL,
                  km_finalizer_has(obj, KM_RECOVERY_FINALIZER), km_recovery_is_completed(obj)};
    return d;
}

/* Remembers obj's decisive state (watcher thread).  1 when it is new, changed, deleted or cannot
 * be remembered. */
static int changed(ctl *c, const char *name, const cJSON *obj, int deleted)
{
    decisive *old = km_strmap_remove(c->seen, name);
    decisive now = decisive_of(obj);
    int diff = !old || old->generation != now.generation || old->deleting != now.deleting ||
               old->finalized != now.finalized || old->completed != now.completed;
    free(old);
    if (deleted)
        return 1;
    decisive *keep = malloc(sizeof(*keep));
    if (!keep || km_strmap_put(c->seen, name, keep, NULL) != KM_OK) {
        free(keep);
        return 1;
    }
    *keep = now;
    return diff;
}

static void on_event(km_event_type type, const cJSON *obj, void *user)
{
    ctl *c = user;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    int going = type == KM_EV_DELETED || KM_JSON_STR(obj, "metadata", "deletionTimestamp");
    if (!name || !changed(c, name, obj, type == KM_EV_DELETED))
        return;
    /* A deletion or completion may let a waiting recovery start: look at all of them. */
    if (going || km_recovery_is_completed(obj))
        enqueue_all(c);
    km_queue_add(c->queue, name);
    /* A running recovery being deleted stops at once (its worker then removes the finalizer). */
    if (going) {
        pthread_mutex_lock(&c->mu);
        if (holder_is(c->run, name))
            holder_cancel(c->run);
        pthread_mutex_unlock(&c->mu);
    }
}

static int free_seen(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    free(val);
    return 0;
}

static void on_synced(void *user)
{
    enqueue_all(user);
}

/* ---- the runner ---------------------------------------------------------------------------- */

/* 1 when obj ended on a permanent error that its status could not record (c->mu held). */
static int failed_before(ctl *c, const cJSON *obj)
{
    char key[KM_RECOVERY_FAILED_KEY_MAX];
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    const char *had = name ? km_strmap_get(c->failed, name) : NULL;
    km_recovery_failed_key(obj, key, sizeof(key));
    return had && strcmp(had, key) == 0;
}

/* A run ended on a permanent error: recorded (phase Failed, the Succeeded condition naming it, a
 * Warning Event), never retried (issue 12, known bug (a)). */
static void run_failed(ctl *c, holder *h, const km_err *e)
{
    km_recovery_record_failure(h->kube, c->o.events, km_recovery_object(h->rec), e);
    char key[KM_RECOVERY_FAILED_KEY_MAX];
    km_recovery_failed_key(km_recovery_object(h->rec), key, sizeof(key));
    char *val = strdup(key), *old = NULL;
    pthread_mutex_lock(&c->mu);
    if (val && km_strmap_put(c->failed, h->name, val, (void **)&old) != KM_OK) {
        free(val);
        old = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    free(old);
}

/* Counts and logs how a run ended.  An interrupted run goes back to the queue, rate limited
 * (the one retry policy), and resumes from status when reconciled again: returns 1 then; a
 * permanent error is recorded instead (run_failed). */
static int run_ended(ctl *c, holder *h, km_status st, const km_err *e)
{
    if (st == KM_OK) {
        m_add(c, KM_METRIC_RECONCILE_TOTAL, KM_METRIC_VALUES(CTL_NAME, "success"), 1);
        km_queue_forget(c->queue, h->name);
        return 0;
    }
    if (st == KM_ECANCELED || atomic_load(&h->cancel) || atomic_load(&c->stop)) {
        km_log_info("recovery run stopped", "recovery", h->name, "reason",
                    km_recovery_deleting(h->rec) ? "deleted" : "cancelled");
        return 0;
    }
    if (st == KM_EAPI && e->http_code == 404) {
        km_log_info("recovery gone", "recovery", h->name);
        return 0;
    }
    char ebuf[768];
    m_add(c, KM_METRIC_RECONCILE_TOTAL, KM_METRIC_VALUES(CTL_NAME, "error"), 1);
    m_add(c, KM_METRIC_RECONCILE_ERRORS, KM_METRIC_VALUES(CTL_NAME), 1);
    if (km_recovery_error_permanent(st, e)) {
        run_failed(c, h, e);
        km_queue_forget(c->queue, h->name);
        return 0;
    }
    m_add(c, KM_METRIC_WORKQUEUE_RETRIES, KM_METRIC_VALUES(CTL_NAME), 1);
    km_log_warn("recovery interrupted, will resume", "recovery", h->name, "error",
                km_err_str(e, ebuf, sizeof(ebuf)));
    km_queue_add_rate_limited(c->queue, h->name);
    return 1;
}

/* The runner thread: runs the recovery once (long: steps with progress in status). */
static void *runner_main(void *arg)
{
    ctl *c = arg;
    pthread_mutex_lock(&c->mu);
    holder *h = c->run;
    pthread_mutex_unlock(&c->mu);
    km_err e;
    km_err_clear(&e);
    double t0 = km_clock_mono();
    km_status st = km_recovery_run(h->rec, &e);
    km_metric *d = c->o.metrics ? km_metrics_get(c->o.metrics, KM_METRIC_RECONCILE_DURATION) : NULL;
    if (d)
        km_metric_observe(d, KM_METRIC_VALUES(CTL_NAME), km_clock_mono() - t0);
    int retrying = run_ended(c, h, st, &e);
    pthread_mutex_lock(&c->mu);
    c->run = NULL;
    holder *old_win = NULL;
    if (km_recovery_window_open(h->rec) && !atomic_load(&h->cancel) && !atomic_load(&c->stop)) {
        old_win = c->win;
        c->win = h; /* keeps its approver running; workers tick it */
        h = NULL;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    holder_free(old_win);
    holder_free(h);
    if (!retrying) /* it ended: a waiting recovery may start now */
        enqueue_all(c);
    return NULL;
}

/* Starts the runner on obj.  Called with c->mu held and no runner active. */
static km_status start_runner(ctl *c, const cJSON *obj, km_err *err)
{
    if (c->run_thread_live) {
        pthread_join(c->run_thread, NULL);
        c->run_thread_live = 0;
    }
    holder *h = NULL;
    km_status st = holder_new(c, obj, &h, err);
    if (st != KM_OK)
        return st;
    /* A newer recovery supersedes an older one's open window. */
    holder *old_win = c->win;
    c->win = NULL;
    c->run = h;
    if (pthread_create(&c->run_thread, NULL, runner_main, c) != 0) {
        c->run = NULL;
        c->win = old_win;
        holder_free(h);
        return km_err_set(err, KM_EIO, "controller: cannot create the runner thread");
    }
    c->run_thread_live = 1;
    holder_free(old_win);
    km_log_info("recovery starting", "recovery", KM_JSON_STR(obj, "metadata", "name"));
    return KM_OK;
}

/* ---- reconcile: one handler per state ------------------------------------------------------ */

/* The object is gone: stop its run, drop its window. */
static km_status on_gone(ctl *c, const char *name)
{
    pthread_mutex_lock(&c->mu);
    if (holder_is(c->run, name))
        holder_cancel(c->run);
    holder *w = take_window(c, name);
    pthread_mutex_unlock(&c->mu);
    holder_free(w);
    return KM_OK;
}

/* Cancels the run of name and waits until the runner let go of it.  1 when one was running. */
static int stop_run(ctl *c, const char *name)
{
    int was_running = 0;
    pthread_mutex_lock(&c->mu);
    while (holder_is(c->run, name)) {
        was_running = 1;
        holder_cancel(c->run);
        pthread_cond_wait(&c->cv, &c->mu);
    }
    holder *w = take_window(c, name);
    pthread_mutex_unlock(&c->mu);
    holder_free(w);
    return was_running;
}

/* deletionTimestamp set: stop everything of it, then let it go (remove our finalizer). */
static km_status on_deleting(ctl *c, km_kube *kube, const cJSON *obj, km_err *err)
{
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    if (!km_finalizer_has(obj, KM_RECOVERY_FINALIZER))
        return KM_OK;
    if (stop_run(c, name)) {
        cJSON *ref = km_recovery_ref(obj);
        km_events_record(c->o.events, ref, "Normal", "Stopped",
                         "recovery stopped because the ClusterRecovery is being deleted");
        cJSON_Delete(ref);
    }
    char path[512];
    km_kube_path(path, sizeof(path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                 KM_RECOVERY_PLURAL, name, NULL);
    km_status st = km_finalizer_set(kube, path, obj, KM_RECOVERY_FINALIZER, 0, err);
    if (st == KM_EAPI && km_err_is_http(err, 404))
        st = KM_OK;
    if (st == KM_OK)
        km_log_info("finalizer removed", "recovery", name);
    return st;
}

/* No finalizer yet: add it; the MODIFIED event brings the object back. */
static km_status ensure_finalizer(km_kube *kube, const cJSON *obj, km_err *err)
{
    char path[512];
    km_kube_path(path, sizeof(path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                 KM_RECOVERY_PLURAL, KM_JSON_STR(obj, "metadata", "name"), NULL);
    km_status st = km_finalizer_set(kube, path, obj, KM_RECOVERY_FINALIZER, 1, err);
    if (st == KM_EAPI && (km_err_is_http(err, 409) || km_err_is_http(err, 404)))
        st = KM_OK; /* the watch brings the newer object */
    return st;
}

/* The authoritative object (not the cache: right after a run completed the watch may still show
 * it Running, and starting it again would redo its last step) into *fresh; NULL when gone. */
static km_status read_fresh(km_kube *kube, const char *name, cJSON **fresh, km_err *err)
{
    char path[512];
    *fresh = NULL;
    km_kube_path(path, sizeof(path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                 KM_RECOVERY_PLURAL, name, NULL);
    km_status st = km_kube_get(kube, path, fresh, err);
    if (st == KM_EAPI && km_err_is_http(err, 404))
        return KM_OK;
    return st;
}

/* A completed recovery whose Verified must be checked again (km_recovery_needs_reverify): checked
 * now on a holder of its own; requeued while the server is still bridged. */
static km_status reverify(ctl *c, const cJSON *obj, int why, outcome *o, km_err *err)
{
    holder *h = NULL;
    double again = -1, now = km_clock_mono();
    int interrupted = why == KM_REVERIFY_INTERRUPTED; /* at once; a bridge once per period */
    pthread_mutex_lock(&c->mu);
    double wait = c->reverified_at + KM_BRIDGE_RECHECK_S - now;
    if (interrupted || c->reverified_at <= 0 || wait <= 0) {
        c->reverified_at = now;
        wait = 0;
    }
    pthread_mutex_unlock(&c->mu);
    if (wait > 0) { /* checked lately (its own status writes bring it back here): later */
        if (o->after <= 0 || wait < o->after)
            o->after = wait;
        return KM_OK;
    }
    km_status st = holder_new(c, obj, &h, err);
    if (st == KM_OK)
        st = km_recovery_reverify(h->rec, &again, err);
    holder_free(h);
    if (again >= 0 && (o->after <= 0 || again < o->after))
        o->after = again;
    return st;
}

/* Completed: keep its CSR approval window ticking (requeue) until it closes, and check Verified
 * again when needed (reverify).  A refused one (InvalidSpec) has no window. */
static km_status on_completed(ctl *c, const cJSON *obj, outcome *o, km_err *err)
{
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    km_status st = KM_OK;
    if (km_recovery_check(obj, NULL) != KM_OK)
        return KM_OK;
    holder *h = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->run) { /* a newer run owns the window now */
        pthread_mutex_unlock(&c->mu);
        return KM_OK;
    }
    if ((h = take_window(c, name)))
        st = km_recovery_refresh(h->rec, obj, err);
    else if (!c->win)
        st = holder_new(c, obj, &h, err);
    double next = -1;
    if (h && st == KM_OK)
        st = km_recovery_window_tick(h->rec, &next, err);
    if (h && next >= 0 && !c->win) {
        c->win = h; /* keep the approver */
        h = NULL;
        o->after = next;
    }
    pthread_mutex_unlock(&c->mu);
    holder_free(h);
    int why = st == KM_OK ? km_recovery_needs_reverify(obj) : 0;
    if (why)
        st = reverify(c, obj, why, o, err);
    return st;
}

/* Collects the recoveries that may become active: not one kubemend refuses (it is marked
 * Failed/InvalidSpec when reconciled, and must not block the others meanwhile). */
static int collect_visit(const char *key, const cJSON *obj, void *user)
{
    (void)key;
    if (km_recovery_check(obj, NULL) != KM_OK)
        return 0;
    cJSON *copy = cJSON_Duplicate(obj, 1);
    if (copy && !cJSON_AddItemToArray(user, copy))
        cJSON_Delete(copy);
    return 0;
}

/* Name of the recovery that may run now (copied into buf), or "". */
static void active_name(ctl *c, char *buf, size_t n)
{
    buf[0] = '\0';
    cJSON *all = cJSON_CreateArray();
    if (!all)
        return;
    km_store_each(c->store, collect_visit, all);
    int cnt = cJSON_GetArraySize(all), i = 0;
    const cJSON **objs = calloc((size_t)(cnt > 0 ? cnt : 1), sizeof(*objs));
    if (!objs) {
        cJSON_Delete(all);
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, all)
    {
        objs[i++] = it;
    }
    int idx = km_recovery_pick_active(objs, (size_t)cnt);
    if (idx >= 0)
        snprintf(buf, n, "%s", KM_JSON_STR(objs[idx], "metadata", "name"));
    free(objs);
    cJSON_Delete(all);
}

/* obj may not run now: phase Waiting for `running`. */
static km_status wait_for(ctl *c, const cJSON *obj, const char *running, km_err *err)
{
    holder *h = NULL;
    km_status st = holder_new(c, obj, &h, err);
    if (st == KM_OK)
        st = km_recovery_mark_waiting(h->rec, running, err);
    holder_free(h);
    return st;
}

/* obj is paused (spec.paused) and nothing runs it: condition Paused True/UserPaused. */
static km_status pause_mark(ctl *c, const cJSON *obj, km_err *err)
{
    holder *h = NULL;
    km_status st = holder_new(c, obj, &h, err);
    st = st == KM_OK ? km_recovery_mark_paused(h->rec, err) : st;
    holder_free(h);
    return st;
}

/* Not completed: one kubemend refuses fails at once (InvalidSpec); otherwise the active one
 * starts (or goes on) when nothing runs, the others wait; a paused one (spec.paused) stops at its
 * next safe point, or does not start. */
static km_status on_pending(ctl *c, km_kube *kube, const cJSON *obj, outcome *o, km_err *err)
{
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    int paused = KM_JSON_BOOL(obj, 0, "spec", "paused");
    char active[256], running[256];
    km_err why;
    if (km_recovery_check(obj, &why) != KM_OK) {
        stop_run(c, name); /* its spec changed while it ran: it stops */
        return km_recovery_mark_invalid(kube, c->o.events, obj, why.message, err);
    }
    active_name(c, active, sizeof(active));
    pthread_mutex_lock(&c->mu);
    if (c->run) {
        int self = holder_is(c->run, name);
        if (self && paused)
            km_recovery_pause(c->run->rec); /* its runner's end re-enqueues it: pause_mark */
        snprintf(running, sizeof(running), "%s", c->run->name);
        pthread_mutex_unlock(&c->mu);
        return self ? KM_OK : wait_for(c, obj, running, err);
    }
    if (active[0] && strcmp(active, name) != 0) {
        pthread_mutex_unlock(&c->mu);
        km_queue_add(c->queue, active);
        return wait_for(c, obj, active, err);
    }
    if (failed_before(c, obj)) { /* until its spec (generation) changes: nothing to retry */
        pthread_mutex_unlock(&c->mu);
        km_log_debug("recovery failed permanently, not restarted", "recovery", name);
        return KM_OK;
    }
    if (paused) {
        pthread_mutex_unlock(&c->mu);
        return pause_mark(c, obj, err);
    }
    km_status st = start_runner(c, obj, err);
    pthread_mutex_unlock(&c->mu);
    o->started = st == KM_OK;
    return st;
}

/* Reconciles one ClusterRecovery by name.  KM_OK, or an error to retry with backoff. */
static km_status reconcile(ctl *c, km_kube *kube, const char *name, outcome *o, km_err *err)
{
    cJSON *obj = NULL, *fresh = NULL;
    km_status st = km_store_get(c->store, name, &obj);
    if (st == KM_ENOTFOUND)
        return on_gone(c, name);
    if (st != KM_OK)
        return km_err_set(err, st, "store: %s", km_strerror(st));
    if (KM_JSON_STR(obj, "metadata", "deletionTimestamp"))
        st = on_deleting(c, kube, obj, err);
    else if (!km_finalizer_has(obj, KM_RECOVERY_FINALIZER))
        st = ensure_finalizer(kube, obj, err);
    else if ((st = read_fresh(kube, name, &fresh, err)) != KM_OK || !fresh)
        ; /* an error to retry, or gone: the DELETED event follows */
    else if (KM_JSON_STR(fresh, "metadata", "deletionTimestamp"))
        km_queue_add(c->queue, name);
    else if (km_recovery_is_completed(fresh))
        st = on_completed(c, fresh, o, err);
    else
        st = on_pending(c, kube, fresh, o, err);
    cJSON_Delete(obj);
    cJSON_Delete(fresh);
    return st;
}

/* ---- workers and lifecycle ------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    ctl *c = arg;
    km_kube *kube = NULL;
    km_err e;
    if (km_kube_clone(c->o.kube, &kube, &e) != KM_OK) {
        km_log_error("worker: no client", "error", e.message);
        return NULL;
    }
    km_kube_set_cancel(kube, &c->stop);
    char *key = NULL;
    while (km_queue_get(c->queue, -1, &key) == KM_OK) {
        outcome o = {0, 0};
        km_err_clear(&e);
        km_status st = reconcile(c, kube, key, &o, &e);
        if (st == KM_OK && !o.started)
            km_queue_forget(c->queue, key);
        if (st == KM_OK && o.after > 0)
            km_queue_add_after(c->queue, key, o.after);
        if (st != KM_OK && !atomic_load(&c->stop)) {
            char buf[768];
            km_log_warn("reconcile failed", "recovery", key, "error",
                        km_err_str(&e, buf, sizeof(buf)));
            m_add(c, KM_METRIC_RECONCILE_ERRORS, KM_METRIC_VALUES(CTL_NAME), 1);
            m_add(c, KM_METRIC_WORKQUEUE_RETRIES, KM_METRIC_VALUES(CTL_NAME), 1);
            km_queue_add_rate_limited(c->queue, key);
        }
        km_queue_done(c->queue, key);
        free(key);
    }
    km_kube_free(kube);
    return NULL;
}

static void ctl_free_parts(ctl *c)
{
    km_watcher_free(c->watcher);
    km_queue_free(c->queue);
    km_store_free(c->store);
    if (c->seen) {
        km_strmap_each(c->seen, free_seen, NULL);
        km_strmap_free(c->seen);
    }
    if (c->failed) {
        km_strmap_each(c->failed, free_seen, NULL);
        km_strmap_free(c->failed);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static km_status ctl_new(const ctl_opts *o, ctl **out, km_err *err)
{
    ctl *c = calloc(1, sizeof(*c));
    if (!c)
        return km_err_set(err, KM_ENOMEM, "controller: out of memory");
    c->o = *o;
    if (c->o.workers <= 0)
        c->o.workers = 2;
    if (c->o.workers > CTL_MAX_WORKERS)
        c->o.workers = CTL_MAX_WORKERS;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    km_queue_opts qo = {RETRY_BASE_S, RETRY_MAX_S};
    km_status st = km_store_new(&c->store);
    if (st == KM_OK)
        st = km_queue_new(&qo, &c->queue);
    if (st == KM_OK && (!(c->seen = km_strmap_new()) || !(c->failed = km_strmap_new())))
        st = KM_ENOMEM;
    if (st != KM_OK) {
        km_err_set(err, st, "controller: out of memory");
        goto fail;
    }
    km_kube_path(c->path, sizeof(c->path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                 KM_RECOVERY_PLURAL, NULL, NULL);
    km_watch_opts wo;
    km_watch_opts_init(&wo);
    wo.name = KM_RECOVERY_PLURAL;
    wo.path = c->path;
    wo.store = c->store;
    wo.on_event = on_event;
    wo.on_synced = on_synced;
    wo.user = c;
    km_watch_transport_kube(&wo.transport, c->o.kube);
    if ((st = km_watcher_new(&wo, &c->watcher, err)) != KM_OK ||
        (st = km_watcher_start(c->watcher, err)) != KM_OK)
        goto fail;
    *out = c;
    return KM_OK;
fail:
    ctl_free_parts(c);
    return st;
}

static km_status ctl_workers(ctl *c, km_err *err)
{
    if (c->nworkers > 0)
        return KM_OK;
    for (int i = 0; i < c->o.workers; i++) {
        if (pthread_create(&c->workers[i], NULL, worker_main, c) != 0)
            return km_err_set(err, KM_EIO, "controller: cannot create worker thread");
        c->nworkers++;
    }
    enqueue_all(c);
    return KM_OK;
}

static int ctl_synced(ctl *c)
{
    return km_watcher_synced(c->watcher);
}

static void ctl_free(ctl *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, 1);
    pthread_mutex_lock(&c->mu);
    holder_cancel(c->run);
    pthread_mutex_unlock(&c->mu);
    km_queue_shutdown(c->queue);
    for (int i = 0; i < c->nworkers; i++)
        pthread_join(c->workers[i], NULL);
    if (c->run_thread_live)
        pthread_join(c->run_thread, NULL);
    holder_free(c->win);
    km_watcher_stop(c->watcher); /* before the seen map goes */
    ctl_free_parts(c);
}

/* ---- the runnable the Manager runs ---------------------------------------------------------- */

static km_status ctl_start(const km_runtime *rt, void **self, km_err *err)
{
    ctl_opts co = {
        .kube = rt->kube,
        .events = rt->events,
        .metrics = rt->metrics,
        .current_ca_pem = km_kubeconfig_ca_pem(rt->config),
        .workers = rt->workers,
    };
    return ctl_new(&co, (ctl **)self, err);
}

static km_status ctl_lead(void *self, km_err *err)
{
    return ctl_workers(self, err);
}

static int ctl_ready(void *self, char *reason, size_t n)
{
    if (ctl_synced(self))
        return 1;
    snprintf(reason, n, "ClusterRecovery cache not synced");
    return 0;
}

static void ctl_collect(void *self)
{
    ctl_sample(self);
}

static void ctl_stop(void *self)
{
    ctl_free(self);
}

const km_runnable km_recovery_controller = {
    .name = "clusterrecovery controller",
    .start = ctl_start,
    .lead = ctl_lead,
    .ready = ctl_ready,
    .collect = ctl_collect,
    .stop = ctl_stop,
};

KM_REGISTER_RUNNABLE(km_recovery_controller)
