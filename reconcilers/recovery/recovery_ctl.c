/* recovery_ctl.c — the ClusterRecovery controller (see recovery_ctl.h). */
#include "reconcilers/recovery/recovery_ctl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/backoff.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/step/conditions.h"
#include "watch/queue.h"
#include "watch/store.h"
#include "watch/watcher.h"

#define CTL_MAX_WORKERS 16
#define CTL_NAME "clusterrecovery"

/* A km_recovery with its own client (cancelled through `cancel`). */
typedef struct holder {
    km_recovery *rec;
    km_kube *kube;
    atomic_int cancel;
    char name[256];
} holder;

struct km_recovery_ctl {
    km_recovery_ctl_opts o;
    km_store *store;
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
    holder *win; /* a completed recovery whose CSR window is open */
};

/* ---- metrics ------------------------------------------------------------------------------- */

static void m_add(km_recovery_ctl *c, const char *family, const char *const *values, double v)
{
    if (!c->o.metrics)
        return;
    km_metric *f = km_metrics_get(c->o.metrics, family);
    if (f)
        km_metric_add(f, values, v);
}

static void step_count(const char *step, const char *counter, long delta, void *user)
{
    km_recovery_ctl *c = user;
    m_add(c, KM_METRIC_STEP_OBJECTS, KM_METRIC_VALUES(step, counter), (double)delta);
}

void km_recovery_ctl_sample_metrics(km_recovery_ctl *c)
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

static km_status holder_new(km_recovery_ctl *c, const cJSON *obj, holder **out, km_err *err)
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
    km_recovery_opts ro;
    memset(&ro, 0, sizeof(ro));
    ro.kube = h->kube;
    ro.events = c->o.events;
    ro.stop = &c->stop;
    ro.persist = 1;
    ro.current_ca_pem = c->o.current_ca_pem;
    ro.progress = step_progress;
    ro.count = step_count;
    ro.user = c;
    st = km_recovery_new(obj, &ro, &h->rec, err);
    if (st != KM_OK) {
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

/* ---- queue helpers ------------------------------------------------------------------------- */

static int enqueue_visit(const char *key, const cJSON *obj, void *user)
{
    (void)obj;
    km_queue_add(user, key);
    return 0;
}

static void enqueue_all(km_recovery_ctl *c)
{
    km_store_each(c->store, enqueue_visit, c->queue);
}

static void on_event(km_event_type type, const cJSON *obj, void *user)
{
    km_recovery_ctl *c = user;
    (void)type;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    if (!name)
        return;
    /* A deletion or completion may let a waiting recovery start: look at all of them. */
    if (type == KM_EV_DELETED || KM_JSON_STR(obj, "metadata", "deletionTimestamp") ||
        km_recovery_is_completed(obj))
        enqueue_all(c);
    km_queue_add(c->queue, name);
    /* A running recovery being deleted stops at once (its worker then removes the finalizer). */
    if (type == KM_EV_DELETED || KM_JSON_STR(obj, "metadata", "deletionTimestamp")) {
        pthread_mutex_lock(&c->mu);
        if (c->run && strcmp(c->run->name, name) == 0)
            holder_cancel(c->run);
        pthread_mutex_unlock(&c->mu);
    }
}

static void on_synced(void *user)
{
    enqueue_all(user);
}

/* ---- the runner ---------------------------------------------------------------------------- */

static void sleep_cancelable(const atomic_int *a, const atomic_int *b, double s)
{
    for (double t = 0; t < s && !atomic_load(b); t += 0.1)
        if (km_clock_sleep(0.1, a) != KM_OK)
            break;
}

static void *runner_main(void *arg)
{
    km_recovery_ctl *c = arg;
    pthread_mutex_lock(&c->mu);
    holder *h = c->run;
    pthread_mutex_unlock(&c->mu);

    km_backoff bo;
    km_backoff_init(&bo, 1.0, 60.0, 2.0, 0.2);
    char ebuf[768];
    for (;;) {
        km_err e;
        km_err_clear(&e);
        double t0 = km_clock_mono();
        km_status st = km_recovery_run(h->rec, &e);
        double secs = km_clock_mono() - t0;
        if (c->o.metrics) {
            km_metric *d = km_metrics_get(c->o.metrics, KM_METRIC_RECONCILE_DURATION);
            if (d)
                km_metric_observe(d, KM_METRIC_VALUES(CTL_NAME), secs);
        }
        if (st == KM_OK) {
            m_add(c, KM_METRIC_RECONCILE_TOTAL, KM_METRIC_VALUES(CTL_NAME, "success"), 1);
            break;
        }
        if (st == KM_ECANCELED || atomic_load(&h->cancel) || atomic_load(&c->stop)) {
            km_log_info("recovery run stopped", "recovery", h->name, "reason",
                        km_recovery_deleting(h->rec) ? "deleted" : "cancelled");
            break;
        }
        m_add(c, KM_METRIC_RECONCILE_TOTAL, KM_METRIC_VALUES(CTL_NAME, "error"), 1);
        m_add(c, KM_METRIC_RECONCILE_ERRORS, KM_METRIC_VALUES(CTL_NAME), 1);
        if (st == KM_EAPI && e.http_code == 404) {
            km_log_info("recovery gone", "recovery", h->name);
            break;
        }
        double d = km_backoff_next(&bo, km_backoff_rand());
        km_log_warn("recovery interrupted, will resume", "recovery", h->name, "error",
                    km_err_str(&e, ebuf, sizeof(ebuf)), "retry_in", KM_LOG_DBL(d));
        sleep_cancelable(&h->cancel, &c->stop, d);
        if (atomic_load(&h->cancel) || atomic_load(&c->stop))
            break;
        /* Re-read the object (metadata/spec may have changed; our status stays). */
        cJSON *fresh = NULL;
        char path[512];
        km_kube_path(path, sizeof(path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                     KM_RECOVERY_PLURAL, h->name, NULL);
        st = km_kube_get(h->kube, path, &fresh, &e);
        if (st == KM_EAPI && e.http_code == 404)
            break;
        if (st == KM_OK) {
            st = km_recovery_refresh(h->rec, fresh, &e);
            cJSON_Delete(fresh);
            if (st != KM_OK)
                break;
        }
    }

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
    enqueue_all(c);
    return NULL;
}

/* Starts the runner on obj.  Called with c->mu held and no runner active. */
static km_status start_runner(km_recovery_ctl *c, const cJSON *obj, km_err *err)
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

/* ---- reconcile ----------------------------------------------------------------------------- */

typedef struct collect {
    cJSON *arr;
} collect;

static int collect_visit(const char *key, const cJSON *obj, void *user)
{
    (void)key;
    collect *col = user;
    cJSON *copy = cJSON_Duplicate(obj, 1);
    if (copy && !cJSON_AddItemToArray(col->arr, copy))
        cJSON_Delete(copy);
    return 0;
}

/* Name of the recovery that may run now (copied into buf), or "" . */
static void active_name(km_recovery_ctl *c, char *buf, size_t n)
{
    buf[0] = '\0';
    collect col = {cJSON_CreateArray()};
    if (!col.arr)
        return;
    km_store_each(c->store, collect_visit, &col);
    int cnt = cJSON_GetArraySize(col.arr);
    const cJSON **objs = calloc((size_t)(cnt > 0 ? cnt : 1), sizeof(*objs));
    if (objs) {
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, col.arr)
        {
            objs[i++] = it;
        }
        int idx = km_recovery_pick_active(objs, (size_t)cnt);
        if (idx >= 0)
            snprintf(buf, n, "%s", KM_JSON_STR(objs[idx], "metadata", "name"));
        free(objs);
    }
    cJSON_Delete(col.arr);
}

static int has_finalizer(const cJSON *obj)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, KM_JSON_AT(obj, "metadata", "finalizers"))
    {
        if (cJSON_IsString(f) && strcmp(f->valuestring, KM_RECOVERY_FINALIZER) == 0)
            return 1;
    }
    return 0;
}

/* Adds (add=1) or removes our finalizer with a resourceVersion-guarded merge patch. */
static km_status patch_finalizer(km_kube *kube, const cJSON *obj, int add, km_err *err)
{
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    const char *rv = KM_JSON_STR(obj, "metadata", "resourceVersion");
    cJSON *patch = cJSON_CreateObject();
    cJSON *md = patch ? cJSON_AddObjectToObject(patch, "metadata") : NULL;
    cJSON *list = md ? cJSON_AddArrayToObject(md, "finalizers") : NULL;
    km_status st = KM_OK;
    char *txt = NULL;
    if (!list || (rv && !cJSON_AddStringToObject(md, "resourceVersion", rv))) {
        st = km_err_set(err, KM_ENOMEM, "controller: out of memory");
        goto out;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, KM_JSON_AT(obj, "metadata", "finalizers"))
    {
        if (cJSON_IsString(f) && strcmp(f->valuestring, KM_RECOVERY_FINALIZER) != 0)
            cJSON_AddItemToArray(list, cJSON_CreateString(f->valuestring));
    }
    if (add)
        cJSON_AddItemToArray(list, cJSON_CreateString(KM_RECOVERY_FINALIZER));
    txt = cJSON_PrintUnformatted(patch);
    if (!txt) {
        st = km_err_set(err, KM_ENOMEM, "controller: out of memory");
        goto out;
    }
    char path[512];
    km_kube_path(path, sizeof(path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                 KM_RECOVERY_PLURAL, name, NULL);
    st = km_kube_patch(kube, path, KM_PATCH_MERGE, txt, NULL, err);
out:
    free(txt);
    cJSON_Delete(patch);
    return st;
}

/* Returns KM_OK, or an error to retry with backoff; *after > 0 asks for a requeue then. */
static km_status reconcile(km_recovery_ctl *c, km_kube *kube, const char *name, double *after,
                           km_err *err)
{
    *after = 0;
    cJSON *obj = NULL;
    km_status st = km_store_get(c->store, name, &obj);
    if (st == KM_ENOTFOUND) {
        pthread_mutex_lock(&c->mu);
        if (c->run && strcmp(c->run->name, name) == 0)
            holder_cancel(c->run);
        holder *w = NULL;
        if (c->win && strcmp(c->win->name, name) == 0) {
            w = c->win;
            c->win = NULL;
        }
        pthread_mutex_unlock(&c->mu);
        holder_free(w);
        return KM_OK;
    }
    if (st != KM_OK)
        return km_err_set(err, st, "store: %s", km_strerror(st));

    if (KM_JSON_STR(obj, "metadata", "deletionTimestamp")) {
        if (!has_finalizer(obj))
            goto out;
        pthread_mutex_lock(&c->mu);
        int was_running = 0;
        while (c->run && strcmp(c->run->name, name) == 0) {
            was_running = 1;
            holder_cancel(c->run);
            pthread_cond_wait(&c->cv, &c->mu);
        }
        holder *w = NULL;
        if (c->win && strcmp(c->win->name, name) == 0) {
            w = c->win;
            c->win = NULL;
        }
        pthread_mutex_unlock(&c->mu);
        holder_free(w);
        if (was_running) {
            cJSON *ref = km_recovery_ref(obj);
            km_events_record(c->o.events, ref, "Normal", "Stopped",
                             "recovery stopped because the ClusterRecovery is being deleted");
            cJSON_Delete(ref);
        }
        st = patch_finalizer(kube, obj, 0, err);
        if (st == KM_EAPI && km_err_is_http(err, 404))
            st = KM_OK;
        if (st == KM_OK)
            km_log_info("finalizer removed", "recovery", name);
        goto out;
    }

    if (!has_finalizer(obj)) {
        st = patch_finalizer(kube, obj, 1, err);
        if (st == KM_EAPI && (km_err_is_http(err, 409) || km_err_is_http(err, 404)))
            st = KM_OK; /* the watch brings the newer object */
        goto out;       /* the MODIFIED event requeues it */
    }

    /* Decide on the authoritative object, not the cache: right after a run completed the
     * watch may still show it Running, and starting it again would redo its last step. */
    {
        char path[512];
        cJSON *fresh = NULL;
        km_kube_path(path, sizeof(path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                     KM_RECOVERY_PLURAL, name, NULL);
        st = km_kube_get(kube, path, &fresh, err);
        if (st == KM_EAPI && km_err_is_http(err, 404)) {
            st = KM_OK;
            goto out;
        }
        if (st != KM_OK)
            goto out;
        cJSON_Delete(obj);
        obj = fresh;
        if (KM_JSON_STR(obj, "metadata", "deletionTimestamp")) {
            km_queue_add(c->queue, name);
            goto out;
        }
    }

    if (km_recovery_is_completed(obj)) {
        pthread_mutex_lock(&c->mu);
        if (c->run) { /* a newer run owns the window now */
            pthread_mutex_unlock(&c->mu);
            goto out;
        }
        holder *h = NULL;
        if (c->win && strcmp(c->win->name, name) == 0) {
            h = c->win;
            c->win = NULL;
            st = km_recovery_refresh(h->rec, obj, err);
        } else if (!c->win) {
            st = holder_new(c, obj, &h, err);
        }
        if (h && st == KM_OK) {
            double next = -1;
            st = km_recovery_window_tick(h->rec, &next, err);
            if (next >= 0 && !c->win) {
                c->win = h; /* keep the approver */
                h = NULL;
                *after = next;
            }
        }
        pthread_mutex_unlock(&c->mu);
        holder_free(h);
        goto out;
    }

    char active[256];
    active_name(c, active, sizeof(active));
    pthread_mutex_lock(&c->mu);
    if (c->run) {
        int self = strcmp(c->run->name, name) == 0;
        char running[256];
        snprintf(running, sizeof(running), "%s", c->run->name);
        pthread_mutex_unlock(&c->mu);
        if (!self) {
            holder *h = NULL;
            st = holder_new(c, obj, &h, err);
            if (st == KM_OK) {
                /* The waiting object uses this worker's client. */
                st = km_recovery_mark_waiting(h->rec, running, err);
                holder_free(h);
            }
        }
        goto out;
    }
    if (active[0] && strcmp(active, name) != 0) {
        pthread_mutex_unlock(&c->mu);
        holder *h = NULL;
        st = holder_new(c, obj, &h, err);
        if (st == KM_OK) {
            st = km_recovery_mark_waiting(h->rec, active, err);
            holder_free(h);
        }
        km_queue_add(c->queue, active);
        goto out;
    }
    st = start_runner(c, obj, err);
    pthread_mutex_unlock(&c->mu);
out:
    cJSON_Delete(obj);
    return st;
}

static void *worker_main(void *arg)
{
    km_recovery_ctl *c = arg;
    km_kube *kube = NULL;
    km_err e;
    if (km_kube_clone(c->o.kube, &kube, &e) != KM_OK) {
        km_log_error("worker: no client", "error", e.message);
        return NULL;
    }
    km_kube_set_cancel(kube, &c->stop);
    for (;;) {
        char *key = NULL;
        if (km_queue_get(c->queue, -1, &key) != KM_OK)
            break;
        double after = 0;
        km_err_clear(&e);
        km_status st = reconcile(c, kube, key, &after, &e);
        if (st == KM_OK) {
            km_queue_forget(c->queue, key);
            if (after > 0)
                km_queue_add_after(c->queue, key, after);
        } else if (!atomic_load(&c->stop)) {
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

/* ---- lifecycle ----------------------------------------------------------------------------- */

km_status km_recovery_ctl_start(const km_recovery_ctl_opts *o, km_recovery_ctl **out, km_err *err)
{
    km_recovery_ctl *c = calloc(1, sizeof(*c));
    if (!c)
        return km_err_set(err, KM_ENOMEM, "controller: out of memory");
    c->o = *o;
    if (c->o.workers <= 0)
        c->o.workers = 2;
    if (c->o.workers > CTL_MAX_WORKERS)
        c->o.workers = CTL_MAX_WORKERS;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    km_status st = km_store_new(&c->store);
    if (st == KM_OK)
        st = km_queue_new(NULL, &c->queue);
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
    st = km_watcher_new(&wo, &c->watcher, err);
    if (st != KM_OK)
        goto fail;
    st = km_watcher_start(c->watcher, err);
    if (st != KM_OK)
        goto fail;
    *out = c;
    return KM_OK;
fail:
    km_watcher_free(c->watcher);
    km_queue_free(c->queue);
    km_store_free(c->store);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    return st;
}

km_status km_recovery_ctl_start_workers(km_recovery_ctl *c, km_err *err)
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

int km_recovery_ctl_synced(km_recovery_ctl *c)
{
    return km_watcher_synced(c->watcher);
}

void km_recovery_ctl_free(km_recovery_ctl *c)
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
    km_watcher_free(c->watcher);
    km_queue_free(c->queue);
    km_store_free(c->store);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}
