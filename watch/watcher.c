/* watcher.c — list+watch state machine (see watcher.h). */
#include "watch/watcher.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/backoff.h"
#include "operator/base/buf.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "watch/lines.h"

/* How one watch request ended. */
typedef enum outcome {
    W_END = 0, /* the server ended the stream */
    W_EXPIRED, /* 410 Gone: relist */
    W_TOOBIG,  /* an object exceeded max_object_size: relist */
    W_ERROR,   /* anything else: back off, re-watch */
    W_CANCELED,
} outcome;

struct km_watcher {
    km_watch_opts o; /* strings below are owned copies */
    char *path, *name, *label_selector, *field_selector;
    atomic_int stop;
    pthread_t thread;
    int started;

    pthread_mutex_t mu; /* guards stats, wakes sleeps and wait_synced */
    pthread_cond_t cv;
    km_watch_stats stats;

    /* watcher-thread state */
    void *conn;
    char *rv; /* last seen resourceVersion (owned) */
    km_lines *lines;
    km_backoff bo;
    double last_failure;
    km_store_snapshot *snap;     /* during a list with a store */
    int expired_event;           /* the stream carried an ERROR 410 */
    unsigned long stream_events; /* lines handled by the current watch */
    km_err serr;                 /* why the current stream stopped, from the line handler */
};

static const char *const state_names[] = {"init", "listing", "watching", "backoff", "stopped"};

const char *km_watch_state_name(km_watch_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "unknown";
}

void km_watch_opts_init(km_watch_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->page_size = 500;
    o->max_object_size = KM_LINES_DEFAULT_MAX;
    o->timeout_min_s = 300;
    o->timeout_max_s = 600;
    o->idle_grace_ms = 30000;
    o->backoff_initial = 0.8;
    o->backoff_max = 30;
    o->backoff_reset_s = 120;
}

static char *dup_opt(const char *s, int *fail)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

static void set_state(km_watcher *w, km_watch_state s)
{
    pthread_mutex_lock(&w->mu);
    w->stats.state = s;
    pthread_mutex_unlock(&w->mu);
}

/* Adds to one counter under the lock. */
static void count(km_watcher *w, unsigned long long *c, unsigned long long n)
{
    pthread_mutex_lock(&w->mu);
    *c += n;
    pthread_mutex_unlock(&w->mu);
}

/* Replaces the last seen resourceVersion (keeps the old one on allocation failure). */
static void set_rv(km_watcher *w, const char *rv)
{
    if (!rv || !*rv)
        return;
    char *d = strdup(rv);
    if (!d)
        return;
    free(w->rv);
    w->rv = d;
    pthread_mutex_lock(&w->mu);
    snprintf(w->stats.resource_version, sizeof(w->stats.resource_version), "%s", rv);
    pthread_mutex_unlock(&w->mu);
}

static void emit(km_watcher *w, km_event_type type, const cJSON *obj)
{
    count(w, &w->stats.events, 1);
    if (w->o.on_event)
        w->o.on_event(type, obj, w->o.user);
}

/* Sleeps up to seconds; returns early (non-zero) when stopped. */
static int sleep_or_stop(km_watcher *w, double seconds)
{
    double until = km_clock_mono() + seconds;
    struct timespec ts = km_clock_deadline(CLOCK_MONOTONIC, seconds);
    pthread_mutex_lock(&w->mu);
    while (!atomic_load(&w->stop) && km_clock_mono() < until)
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    pthread_mutex_unlock(&w->mu);
    return atomic_load(&w->stop);
}

/* One failure: counts it and sleeps the backoff delay.  Returns non-zero when stopped. */
static int backoff(km_watcher *w)
{
    double now = km_clock_mono();
    if (w->last_failure > 0 && now - w->last_failure > w->o.backoff_reset_s)
        km_backoff_reset(&w->bo);
    double d = km_backoff_next(&w->bo, km_backoff_rand());
    km_watch_state prev;
    pthread_mutex_lock(&w->mu);
    w->stats.errors++;
    prev = w->stats.state;
    w->stats.state = KM_WATCH_BACKOFF;
    pthread_mutex_unlock(&w->mu);
    km_log_debug("watch backing off", "watch", w->name, "seconds", KM_LOG_DBL(d));
    int stopped = sleep_or_stop(w, d);
    w->last_failure = km_clock_mono();
    set_state(w, prev);
    return stopped;
}

/* ---- listing -------------------------------------------------------------------------------- */

static void change_cb(km_event_type type, const cJSON *obj, void *user)
{
    emit(user, type, obj);
}

static km_status page_cb(const km_kube_page *page, void *user)
{
    km_watcher *w = user;
    if (atomic_load(&w->stop))
        return KM_ECANCELED;
    if (page->restarted && w->snap) { /* the list started over: forget the earlier pages */
        km_store_snapshot_free(w->snap);
        w->snap = NULL;
        km_status st = km_store_snapshot_new(&w->snap);
        if (st != KM_OK)
            return st;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, page->items)
    {
        if (!w->snap) {
            emit(w, KM_EV_ADDED, item);
            continue;
        }
        km_status st = km_store_snapshot_add(w->snap, item);
        if (st == KM_ENOMEM)
            return st;
        if (st != KM_OK)
            km_log_warn("watch: list item without a usable name skipped", "watch", w->name);
    }
    return KM_OK;
}

/* The first list completed (or the first resync): synced, on_synced. */
static void mark_synced(km_watcher *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->stats.lists++ > 0)
        w->stats.relists++;
    w->stats.synced = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    km_log_debug("watch listed", "watch", w->name, "resourceVersion", w->rv ? w->rv : "");
    if (w->o.on_synced)
        w->o.on_synced(w->o.user);
}

/* The resync hook instead of a LIST. */
static km_status do_resync(km_watcher *w, km_err *err)
{
    char *rv = NULL;
    set_state(w, KM_WATCH_LISTING);
    km_status st = w->o.resync(&w->o.transport, w->conn, &rv, w->o.user, err);
    if (st == KM_OK && (!rv || !*rv))
        st = km_err_set(err, KM_EPARSE, "watch %s: resync gave no resourceVersion", w->name);
    if (st == KM_OK) {
        set_rv(w, rv);
        mark_synced(w);
    }
    free(rv);
    return st;
}

static km_status do_list(km_watcher *w, km_err *err)
{
    if (w->o.resync)
        return do_resync(w, err);
    set_state(w, KM_WATCH_LISTING);
    km_status st = KM_OK;
    char *rv = NULL;
    if (w->o.store && (st = km_store_snapshot_new(&w->snap)) != KM_OK)
        return km_err_set(err, st, "watch %s: list: out of memory", w->name);
    km_list_opts lo = {
        .label_selector = w->label_selector,
        .field_selector = w->field_selector,
        .limit = w->o.page_size,
        .resource_version = NULL, /* "": consistent, honours limit (see watcher.h) */
    };
    st = w->o.transport.list(w->conn, w->path, &lo, page_cb, w, &rv, err);
    if (st != KM_OK)
        goto out;
    set_rv(w, rv);
    if (w->snap) {
        km_store_replace(w->o.store, w->snap, change_cb, w);
        w->snap = NULL;
    }
    mark_synced(w);
out:
    km_store_snapshot_free(w->snap);
    w->snap = NULL;
    free(rv);
    return st;
}

/* ---- watching ------------------------------------------------------------------------------- */

static km_status line_cb(const char *line, size_t len, void *user)
{
    km_watcher *w = user;
    if (atomic_load(&w->stop))
        return KM_ECANCELED;
    km_event ev;
    km_status st = km_event_parse(line, len, &ev, &w->serr);
    if (st != KM_OK)
        return st;
    w->stream_events++;
    switch (ev.type) {
    case KM_EV_BOOKMARK:
        count(w, &w->stats.bookmarks, 1);
        set_rv(w, ev.resource_version);
        break;
    case KM_EV_ERROR: {
        const char *msg = KM_JSON_STR(ev.object, "message");
        if (ev.expired) {
            w->expired_event = 1;
            st = km_err_set(&w->serr, KM_EAPI, "watch expired: %s", msg ? msg : "410");
        } else {
            st = km_err_set(&w->serr, KM_EAPI, "watch ERROR event (code %ld): %s", ev.code,
                            msg ? msg : "");
        }
        w->serr.http_code = ev.code;
        break;
    }
    case KM_EV_ADDED:
    case KM_EV_MODIFIED:
    case KM_EV_DELETED:
        if (w->o.store) {
            if (ev.type == KM_EV_DELETED) {
                char key[KM_STORE_KEY_MAX];
                if (km_store_key(ev.object, key, sizeof(key)) == KM_OK)
                    km_store_delete(w->o.store, key);
            } else {
                cJSON *copy = cJSON_Duplicate(ev.object, 1);
                st = copy ? km_store_put(w->o.store, copy) : KM_ENOMEM;
                if (st != KM_OK) {
                    cJSON_Delete(copy);
                    if (st == KM_ENOMEM) {
                        km_err_set(&w->serr, st, "watch: out of memory");
                        break;
                    }
                    km_log_warn("watch: object without a usable name skipped", "watch", w->name);
                    st = KM_OK;
                }
            }
        }
        emit(w, ev.type, ev.object);
        set_rv(w, ev.resource_version);
        break;
    }
    km_event_cleanup(&ev);
    return st;
}

static km_status stream_cb(const char *data, size_t len, void *user)
{
    km_watcher *w = user;
    km_status st = km_lines_feed(w->lines, data, len);
    if (st == KM_ETOOBIG)
        km_err_set(&w->serr, st, "watch event larger than %zu bytes", w->o.max_object_size);
    return st;
}

/* Appends "&key=<percent-encoded value>". */
static km_status append_param(km_buf *b, const char *key, const char *val)
{
    km_status st = km_buf_printf(b, "&%s=", key);
    for (const unsigned char *p = (const unsigned char *)val; st == KM_OK && *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            st = km_buf_append(b, p, 1);
        else
            st = km_buf_printf(b, "%%%02X", *p);
    }
    return st;
}

static outcome do_watch(km_watcher *w)
{
    set_state(w, KM_WATCH_WATCHING);
    int span = w->o.timeout_max_s - w->o.timeout_min_s;
    long t = w->o.timeout_min_s + (long)(km_backoff_rand() * (span + 1));
    if (t > w->o.timeout_max_s)
        t = w->o.timeout_max_s;
    km_buf path;
    km_buf_init(&path, 0);
    km_status st = km_buf_printf(&path, "%s%swatch=1", w->path, strchr(w->path, '?') ? "&" : "?");
    if (st == KM_OK && w->rv)
        st = append_param(&path, "resourceVersion", w->rv);
    if (st == KM_OK)
        st = km_buf_printf(&path, "&allowWatchBookmarks=true&timeoutSeconds=%ld", t);
    if (st == KM_OK && w->label_selector)
        st = append_param(&path, "labelSelector", w->label_selector);
    if (st == KM_OK && w->field_selector)
        st = append_param(&path, "fieldSelector", w->field_selector);
    if (st != KM_OK) {
        km_buf_cleanup(&path);
        km_log_error("watch: out of memory", "watch", w->name);
        return W_ERROR;
    }
    pthread_mutex_lock(&w->mu);
    if (w->stats.watches++ > 0)
        w->stats.restarts++;
    pthread_mutex_unlock(&w->mu);

    km_err err;
    km_err_clear(&err);
    km_err_clear(&w->serr);
    w->expired_event = 0;
    w->stream_events = 0;
    km_lines_reset(w->lines);
    double started = km_clock_mono();
    st = w->o.transport.stream(w->conn, km_buf_str(&path), t * 1000 + w->o.idle_grace_ms, stream_cb,
                               w, &err);
    km_lines_finish(w->lines, 0); /* a cut stream's partial line is dropped, never half-parsed */
    km_buf_cleanup(&path);
    if (w->serr.status != KM_OK)
        err = w->serr; /* the line handler's reason is the precise one */

    char eb[700];
    if (atomic_load(&w->stop))
        return W_CANCELED;
    if (w->expired_event || (st == KM_EAPI && err.http_code == 410)) {
        count(w, &w->stats.expired, 1);
        km_log_info("watch expired, relisting", "watch", w->name, "resourceVersion",
                    w->rv ? w->rv : "");
        return W_EXPIRED;
    }
    if (st == KM_OK) {
        /* A stream that ends at once without a single line is a server in trouble: back off. */
        if (w->stream_events == 0 && km_clock_mono() - started < 1.0) {
            km_log_debug("watch ended at once", "watch", w->name);
            return W_ERROR;
        }
        return W_END;
    }
    if (st == KM_ETOOBIG) {
        km_log_error("watch event too large, relisting", "watch", w->name, "error",
                     km_err_str(&err, eb, sizeof(eb)));
        return W_TOOBIG;
    }
    if (err.status == KM_OK)
        km_err_set(&err, st, "%s", km_strerror(st));
    km_log_warn("watch failed", "watch", w->name, "error", km_err_str(&err, eb, sizeof(eb)));
    return W_ERROR;
}

/* ---- the thread ----------------------------------------------------------------------------- */

static void *run(void *arg)
{
    km_watcher *w = arg;
    char eb[700];
    while (!atomic_load(&w->stop) && !w->conn) {
        km_err err;
        km_err_clear(&err);
        if (!w->o.transport.open) {
            w->conn = w->o.transport.ctx;
            break;
        }
        if (w->o.transport.open(w->o.transport.ctx, &w->stop, &w->conn, &err) == KM_OK)
            break;
        km_log_warn("watch: cannot open a connection", "watch", w->name, "error",
                    km_err_str(&err, eb, sizeof(eb)));
        w->conn = NULL;
        backoff(w);
    }
    int listing = !w->rv; /* initial_rv: watch at once */
    if (!listing) {
        pthread_mutex_lock(&w->mu);
        w->stats.synced = 1;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    while (!atomic_load(&w->stop)) {
        if (listing) {
            km_err err;
            km_err_clear(&err);
            km_status st = do_list(w, &err);
            if (st == KM_OK) {
                listing = 0;
                continue;
            }
            if (st == KM_ECANCELED && atomic_load(&w->stop))
                break;
            km_log_warn("watch: list failed", "watch", w->name, "error",
                        km_err_str(&err, eb, sizeof(eb)));
            backoff(w);
            continue;
        }
        switch (do_watch(w)) {
        case W_END:
            break;
        case W_EXPIRED:
            /* Relist at once, unless the watch expired before it delivered anything (the list
             * we just made is already too old: avoid a hot loop). */
            if (w->stream_events <= 1)
                backoff(w);
            listing = 1;
            break;
        case W_TOOBIG:
            backoff(w);
            listing = 1;
            break;
        case W_ERROR:
            backoff(w);
            break;
        case W_CANCELED:
            break;
        }
    }
    if (w->conn && w->o.transport.open && w->o.transport.close)
        w->o.transport.close(w->conn);
    w->conn = NULL;
    pthread_mutex_lock(&w->mu);
    w->stats.state = KM_WATCH_STOPPED;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

km_status km_watcher_new(const km_watch_opts *o, km_watcher **out, km_err *err)
{
    if (!o || !o->path || !*o->path || !o->transport.list || !o->transport.stream)
        return km_err_set(err, KM_EINVAL, "watcher: path and transport list/stream are required");
    if (o->resync && o->store)
        return km_err_set(err, KM_EINVAL, "watcher: a resync hook cannot fill a store");
    if (o->timeout_min_s <= 0 || o->timeout_max_s < o->timeout_min_s)
        return km_err_set(err, KM_EINVAL, "watcher: invalid timeout range %d..%d", o->timeout_min_s,
                          o->timeout_max_s);
    km_watcher *w = calloc(1, sizeof(*w));
    if (!w)
        return km_err_set(err, KM_ENOMEM, "watcher: out of memory");
    pthread_mutex_init(&w->mu, NULL);
    km_clock_cond_init(&w->cv, CLOCK_MONOTONIC);
    w->o = *o;
    if (w->o.page_size <= 0)
        w->o.page_size = 500;
    if (w->o.max_object_size == 0)
        w->o.max_object_size = KM_LINES_DEFAULT_MAX;
    int fail = 0;
    w->path = dup_opt(o->path, &fail);
    w->name = dup_opt(o->name ? o->name : o->path, &fail);
    w->label_selector = dup_opt(o->label_selector, &fail);
    w->field_selector = dup_opt(o->field_selector, &fail);
    w->rv = dup_opt(o->initial_rv && *o->initial_rv ? o->initial_rv : NULL, &fail);
    w->o.path = w->path;
    w->o.name = w->name;
    w->o.label_selector = w->label_selector;
    w->o.field_selector = w->field_selector;
    if (!fail && km_lines_new(w->o.max_object_size, KM_LINES_ABORT, line_cb, w, &w->lines) != KM_OK)
        fail = 1;
    if (fail) {
        km_watcher_free(w); /* not started: frees what was copied */
        return km_err_set(err, KM_ENOMEM, "watcher: out of memory");
    }
    km_backoff_init(&w->bo, o->backoff_initial, o->backoff_max, 2.0, 0.2);
    atomic_init(&w->stop, 0);
    w->stats.state = KM_WATCH_INIT;
    if (w->rv)
        snprintf(w->stats.resource_version, sizeof(w->stats.resource_version), "%s", w->rv);
    *out = w;
    return KM_OK;
}

km_status km_watcher_start(km_watcher *w, km_err *err)
{
    if (w->started)
        return km_err_set(err, KM_ESTATE, "watcher %s: already started", w->name);
    if (pthread_create(&w->thread, NULL, run, w) != 0)
        return km_err_set(err, KM_EIO, "watcher %s: cannot create thread", w->name);
    w->started = 1;
    return KM_OK;
}

void km_watcher_stop(km_watcher *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stop, 1);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void km_watcher_free(km_watcher *w)
{
    if (!w)
        return;
    km_watcher_stop(w);
    km_lines_free(w->lines);
    free(w->rv);
    free(w->path);
    free(w->name);
    free(w->label_selector);
    free(w->field_selector);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

km_status km_watcher_wait_synced(km_watcher *w, double timeout)
{
    double until = km_clock_mono() + timeout;
    struct timespec ts = km_clock_deadline(CLOCK_MONOTONIC, timeout);
    km_status st = KM_OK;
    pthread_mutex_lock(&w->mu);
    while (!w->stats.synced) {
        if (atomic_load(&w->stop) || w->stats.state == KM_WATCH_STOPPED) {
            st = KM_ECANCELED;
            break;
        }
        if (timeout < 0) {
            pthread_cond_wait(&w->cv, &w->mu);
        } else if (km_clock_mono() >= until) {
            st = KM_ETIMEOUT;
            break;
        } else {
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return st;
}

int km_watcher_synced(km_watcher *w)
{
    pthread_mutex_lock(&w->mu);
    int s = w->stats.synced;
    pthread_mutex_unlock(&w->mu);
    return s;
}

void km_watcher_stats(km_watcher *w, km_watch_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}
