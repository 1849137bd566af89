/* wait.c — waiting for named objects on one watch of their collection (see wait.h). */
#include "watch/wait.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/strmap.h"
#include "watch/watcher.h"

#define KEY_MAX 320
#define SLICE_S 0.2 /* km_wait_all looks at the cancel flag this often */

typedef struct entry {
    char ns[64];
    char name[256];
    double gen; /* the generation the change starts at; -1 until armed */
    int done;
    int seen, seen_deleted, seen_ok; /* the latest state before arming */
    double seen_gen;
} entry;

struct km_wait {
    km_wait_opts o;
    char group[64], version[32], resource[64];
    char path[256];      /* the collection, cluster-wide */
    km_watcher *watcher; /* NULL until the first arm */
    pthread_mutex_t mu;  /* guards entries (the watch thread judges) */
    pthread_cond_t cv;   /* an entry became done */
    km_strmap *entries;  /* "ns/name" -> entry */
};

static void key_of(char *buf, size_t n, const char *ns, const char *name)
{
    snprintf(buf, n, "%s/%s", ns ? ns : "", name ? name : "");
}

/* Judges one observed state of e (caller holds w->mu). */
static void judge(km_wait *w, entry *e, const cJSON *obj, int deleted)
{
    if (e->done)
        return;
    double gen = KM_JSON_NUM(obj, 0, "metadata", "generation");
    int ok = !deleted && w->o.cond(obj, w->o.user);
    if (e->gen < 0) { /* the write's response has not told the generation yet: remember */
        e->seen = 1;
        e->seen_deleted = deleted;
        e->seen_ok = ok;
        e->seen_gen = gen;
        return;
    }
    if (deleted || (gen >= e->gen && ok)) {
        e->done = 1;
        pthread_cond_broadcast(&w->cv);
    }
}

static void observe(km_wait *w, const char *ns, const char *name, const cJSON *obj, int deleted)
{
    char key[KEY_MAX];
    key_of(key, sizeof(key), ns, name);
    pthread_mutex_lock(&w->mu);
    entry *e = km_strmap_get(w->entries, key);
    if (e)
        judge(w, e, obj, deleted);
    pthread_mutex_unlock(&w->mu);
}

/* Watch thread: one event. */
static void on_event(km_event_type type, const cJSON *obj, void *user)
{
    observe(user, KM_JSON_STR(obj, "metadata", "namespace"), KM_JSON_STR(obj, "metadata", "name"),
            obj, type == KM_EV_DELETED);
}

static km_status first_page(const km_kube_page *page, void *user)
{
    char **rv = user;
    free(*rv);
    *rv = page->resource_version ? strdup(page->resource_version) : NULL;
    return KM_ECANCELED; /* one page (limit=1) is enough: only its resourceVersion counts */
}

static int collect_pending(const char *key, void *val, void *user)
{
    const entry *e = val;
    cJSON *c = e->done ? NULL : cJSON_CreateObject();
    if (c && (km_json_set_str(c, "ns", e->ns) || km_json_set_str(c, "name", e->name) ||
              !cJSON_AddItemToArray(user, c)))
        cJSON_Delete(c);
    (void)key;
    return 0;
}

/* GETs one waited-for object and judges it (404 = deleted).  Fails on other errors. */
static km_status regets(km_wait *w, const km_watch_transport *t, void *conn, const char *ns,
                        const char *name, km_err *err)
{
    char path[768];
    cJSON *obj = NULL;
    km_err e;
    km_err_clear(&e);
    if (km_kube_path(path, sizeof(path), w->group[0] ? w->group : NULL, w->version, ns, w->resource,
                     name, NULL) != KM_OK)
        return KM_OK;
    km_status st = t->get(conn, path, &obj, &e);
    if (st == KM_OK || (st == KM_EAPI && e.http_code == 404))
        observe(w, ns, name, obj, st != KM_OK);
    else if (err)
        *err = e;
    cJSON_Delete(obj);
    return st == KM_EAPI && e.http_code == 404 ? KM_OK : st;
}

/* After 410: a fresh resourceVersion (list limit=1), then a GET of every object still waited
 * for.  Failure: any of these requests (the watcher backs off and resyncs again). */
static km_status resync(const km_watch_transport *t, void *conn, char **rv, void *user, km_err *err)
{
    km_wait *w = user;
    char *fresh = NULL;
    km_list_opts lo = {.limit = 1};
    km_status st = t->list(conn, w->path, &lo, first_page, &fresh, NULL, err);
    if (st == KM_ECANCELED && fresh)
        st = KM_OK;
    cJSON *names = st == KM_OK ? cJSON_CreateArray() : NULL;
    if (st == KM_OK && !names)
        st = km_err_set(err, KM_ENOMEM, "wait: out of memory");
    pthread_mutex_lock(&w->mu);
    if (names)
        km_strmap_each(w->entries, collect_pending, names);
    pthread_mutex_unlock(&w->mu);
    const cJSON *it;
    cJSON_ArrayForEach(it, names)
    {
        if (st == KM_OK && t->get)
            st = regets(w, t, conn, KM_JSON_STR(it, "ns"), KM_JSON_STR(it, "name"), err);
    }
    cJSON_Delete(names);
    if (st == KM_OK) {
        *rv = fresh;
        fresh = NULL;
    }
    free(fresh);
    return st;
}

km_status km_wait_new(const km_wait_opts *o, km_wait **out, km_err *err)
{
    if (!o->resource || !o->version || !o->cond || (!o->kube && !o->transport))
        return km_err_set(err, KM_EINVAL,
                          "wait: resource, version, cond and a client are required");
    km_wait *w = calloc(1, sizeof(*w));
    if (!w || !(w->entries = km_strmap_new())) {
        free(w);
        return km_err_set(err, KM_ENOMEM, "wait: out of memory");
    }
    w->o = *o;
    snprintf(w->group, sizeof(w->group), "%s", o->group ? o->group : "");
    snprintf(w->version, sizeof(w->version), "%s", o->version);
    snprintf(w->resource, sizeof(w->resource), "%s", o->resource);
    km_kube_path(w->path, sizeof(w->path), o->group, o->version, NULL, o->resource, NULL, NULL);
    pthread_mutex_init(&w->mu, NULL);
    km_clock_cond_init(&w->cv, CLOCK_MONOTONIC);
    *out = w;
    return KM_OK;
}

static int free_entry(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    free(val);
    return 0;
}

void km_wait_free(km_wait *w)
{
    if (!w)
        return;
    km_watcher_free(w->watcher); /* no thread judges after this */
    km_strmap_each(w->entries, free_entry, NULL);
    km_strmap_free(w->entries);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

km_status km_wait_add(km_wait *w, const char *ns, const char *name, km_err *err)
{
    char key[KEY_MAX];
    entry *e = calloc(1, sizeof(*e)), *old = NULL;
    if (!e)
        return km_err_set(err, KM_ENOMEM, "wait: out of memory");
    snprintf(e->ns, sizeof(e->ns), "%s", ns);
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->gen = -1;
    key_of(key, sizeof(key), ns, name);
    pthread_mutex_lock(&w->mu);
    km_status st = km_strmap_put(w->entries, key, e, (void **)&old);
    pthread_mutex_unlock(&w->mu);
    free(old);
    if (st != KM_OK) {
        free(e);
        return km_err_set(err, st, "wait: out of memory");
    }
    return KM_OK;
}

void km_wait_drop(km_wait *w, const char *ns, const char *name)
{
    char key[KEY_MAX];
    key_of(key, sizeof(key), ns, name);
    pthread_mutex_lock(&w->mu);
    free(km_strmap_remove(w->entries, key));
    pthread_mutex_unlock(&w->mu);
}

/* Starts the watch from rv (the first armed write's resourceVersion). */
static km_status watch_start(km_wait *w, const char *rv, km_err *err)
{
    km_watch_opts wo;
    km_watch_opts_init(&wo);
    wo.name = w->path;
    wo.path = w->path;
    wo.on_event = on_event;
    wo.resync = resync;
    wo.initial_rv = rv;
    wo.user = w;
    if (w->o.transport)
        wo.transport = *w->o.transport;
    else
        km_watch_transport_kube(&wo.transport, w->o.kube);
    km_watcher *watcher = NULL;
    km_status st = km_watcher_new(&wo, &watcher, err);
    if (st == KM_OK && (st = km_watcher_start(watcher, err)) != KM_OK)
        km_watcher_free(watcher);
    else if (st == KM_OK)
        w->watcher = watcher;
    return st;
}

km_status km_wait_arm(km_wait *w, const char *ns, const char *name, double gen, const cJSON *obj,
                      km_err *err)
{
    char key[KEY_MAX];
    key_of(key, sizeof(key), ns, name);
    pthread_mutex_lock(&w->mu);
    entry *e = km_strmap_get(w->entries, key);
    if (e) {
        e->gen = gen;
        judge(w, e, obj, 0);
        if (e->seen && !e->done && (e->seen_deleted || (e->seen_gen >= gen && e->seen_ok))) {
            e->done = 1;
            pthread_cond_broadcast(&w->cv);
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (w->watcher)
        return KM_OK;
    return watch_start(w, KM_JSON_STR(obj, "metadata", "resourceVersion"), err);
}

typedef struct sweep {
    int all_done;
    km_wait_late_fn late;
    void *user;
} sweep;

static int check_done(const char *key, void *val, void *user)
{
    (void)key;
    sweep *s = user;
    s->all_done &= ((entry *)val)->done;
    return !s->all_done;
}

static int report_late(const char *key, void *val, void *user)
{
    (void)key;
    sweep *s = user;
    const entry *e = val;
    if (!e->done && s->late)
        s->late(e->ns, e->name, s->user);
    free(val);
    return 0;
}

km_status km_wait_all(km_wait *w, double timeout_s, const atomic_int *cancel, km_wait_late_fn late,
                      void *user)
{
    double deadline = km_clock_mono() + timeout_s;
    km_status st = KM_OK;
    sweep s = {1, late, user};
    km_strmap *fresh = km_strmap_new();
    if (!fresh)
        return KM_ENOMEM;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        s.all_done = 1;
        km_strmap_each(w->entries, check_done, &s);
        double left = deadline - km_clock_mono();
        if (s.all_done || left <= 0)
            break;
        if (cancel && atomic_load(cancel)) {
            st = KM_ECANCELED;
            break;
        }
        struct timespec ts = km_clock_deadline(CLOCK_MONOTONIC, left < SLICE_S ? left : SLICE_S);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    km_strmap *all = w->entries;
    w->entries = fresh;
    pthread_mutex_unlock(&w->mu);
    if (st != KM_OK)
        s.late = NULL;
    km_strmap_each(all, report_late, &s);
    km_strmap_free(all);
    return st;
}
