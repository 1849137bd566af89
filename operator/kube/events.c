/* events.c — core/v1 Events with client-side aggregation. */
#include "operator/kube/events.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"

#define EVENTS_NS "default" /* for cluster-scoped objects */
#define EVENTS_CACHE 128

typedef struct ev_entry {
    char *key;   /* uid \x1f type \x1f reason \x1f message; NULL = free slot */
    char *name;  /* Event name */
    char ns[64]; /* Event namespace */
    long count;
    unsigned long used; /* LRU stamp */
} ev_entry;

struct km_events {
    pthread_mutex_t mu;
    km_kube *kube; /* owned clone, NULL = log only */
    char component[64];
    ev_entry cache[EVENTS_CACHE];
    unsigned long clock;
    unsigned long created;
    unsigned long aggregated;
    int warned_403; /* the first refused (403) Event was logged at warning level */
};

km_status km_events_new(km_kube *kube, const char *component, km_events **out, km_err *err)
{
    km_events *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return km_err_set(err, KM_ENOMEM, "event recorder: out of memory");
    if (kube) {
        km_status st = km_kube_clone(kube, &ev->kube, err);
        if (st != KM_OK) {
            free(ev);
            return st;
        }
    }
    snprintf(ev->component, sizeof(ev->component), "%s", component ? component : "kubemend");
    pthread_mutex_init(&ev->mu, NULL);
    *out = ev;
    return KM_OK;
}

void km_events_free(km_events *ev)
{
    if (!ev)
        return;
    for (int i = 0; i < EVENTS_CACHE; i++) {
        free(ev->cache[i].key);
        free(ev->cache[i].name);
    }
    km_kube_free(ev->kube);
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}

unsigned long km_events_created(km_events *ev)
{
    pthread_mutex_lock(&ev->mu);
    unsigned long n = ev->created;
    pthread_mutex_unlock(&ev->mu);
    return n;
}

unsigned long km_events_aggregated(km_events *ev)
{
    pthread_mutex_lock(&ev->mu);
    unsigned long n = ev->aggregated;
    pthread_mutex_unlock(&ev->mu);
    return n;
}

static ev_entry *cache_find(km_events *ev, const char *key)
{
    for (int i = 0; i < EVENTS_CACHE; i++)
        if (ev->cache[i].key && strcmp(ev->cache[i].key, key) == 0)
            return &ev->cache[i];
    return NULL;
}

static ev_entry *cache_slot(km_events *ev)
{
    ev_entry *best = &ev->cache[0];
    for (int i = 0; i < EVENTS_CACHE; i++) {
        if (!ev->cache[i].key)
            return &ev->cache[i];
        if (ev->cache[i].used < best->used)
            best = &ev->cache[i];
    }
    free(best->key);
    free(best->name);
    best->key = best->name = NULL;
    return best;
}

static void log_event(const char *kind, const char *name, const char *type, const char *reason,
                      const char *message)
{
    if (strcmp(type, "Warning") == 0)
        km_log_warn("event", "kind", kind, "object", name, "type", type, "reason", reason,
                    "message", message);
    else
        km_log_info("event", "kind", kind, "object", name, "type", type, "reason", reason,
                    "message", message);
}

/* Logs a failed Event write.  A 403 (the RBAC does not allow Events) is logged once per recorder
 * at warning level, then at debug level, so a missing rule is visible without flooding the log.
 * Caller holds ev->mu. */
static void log_failure(km_events *ev, const char *what, km_status st, const km_err *e)
{
    char buf[768];
    km_err_str(e, buf, sizeof(buf));
    if (!(st == KM_EAPI && e->http_code == 403))
        km_log_warn("event not recorded", "op", what, "error", buf);
    else if (!ev->warned_403 && (ev->warned_403 = 1))
        km_log_warn("events not recorded: creating Events is forbidden (RBAC); further refusals "
                    "are logged at debug level",
                    "op", what, "error", buf);
    else
        km_log_debug("event not recorded", "op", what, "error", buf);
}

/* PATCHes count/lastTimestamp of an existing Event.  Returns the client status. */
static km_status event_bump(km_events *ev, ev_entry *ent, const char *now, km_err *e)
{
    char path[512];
    if (km_kube_path(path, sizeof(path), NULL, "v1", ent->ns, "events", ent->name, NULL) != KM_OK)
        return KM_EINVAL;
    char patch[256];
    snprintf(patch, sizeof(patch), "{\"count\":%ld,\"lastTimestamp\":\"%s\"}", ent->count + 1, now);
    km_status st = km_kube_patch(ev->kube, path, KM_PATCH_MERGE, patch, NULL, e);
    if (st == KM_OK)
        ent->count++;
    return st;
}

/* The namespace an Event about obj goes to. */
static const char *event_ns(const cJSON *obj)
{
    const char *ns = KM_JSON_STR(obj, "metadata", "namespace");
    return ns && *ns ? ns : EVENTS_NS;
}

static cJSON *event_body(km_events *ev, const cJSON *obj, const char *name, const char *type,
                         const char *reason, const char *message, const char *now)
{
    cJSON *b = cJSON_CreateObject();
    cJSON *md = b ? cJSON_AddObjectToObject(b, "metadata") : NULL;
    cJSON *io = b ? cJSON_AddObjectToObject(b, "involvedObject") : NULL;
    cJSON *src = b ? cJSON_AddObjectToObject(b, "source") : NULL;
    if (!md || !io || !src)
        goto fail;
    const char *ns = KM_JSON_STR(obj, "metadata", "namespace");
    const char *rv = KM_JSON_STR(obj, "metadata", "resourceVersion");
    if (!cJSON_AddStringToObject(b, "apiVersion", "v1") ||
        !cJSON_AddStringToObject(b, "kind", "Event") ||
        !cJSON_AddStringToObject(md, "name", name) ||
        !cJSON_AddStringToObject(md, "namespace", event_ns(obj)) ||
        !cJSON_AddStringToObject(io, "apiVersion", KM_JSON_STR(obj, "apiVersion")) ||
        !cJSON_AddStringToObject(io, "kind", KM_JSON_STR(obj, "kind")) ||
        (ns && !cJSON_AddStringToObject(io, "namespace", ns)) ||
        !cJSON_AddStringToObject(io, "name", KM_JSON_STR(obj, "metadata", "name")) ||
        !cJSON_AddStringToObject(io, "uid", KM_JSON_STR(obj, "metadata", "uid")) ||
        (rv && !cJSON_AddStringToObject(io, "resourceVersion", rv)) ||
        !cJSON_AddStringToObject(src, "component", ev->component) ||
        !cJSON_AddStringToObject(b, "type", type) ||
        !cJSON_AddStringToObject(b, "reason", reason) ||
        !cJSON_AddStringToObject(b, "message", message) ||
        !cJSON_AddStringToObject(b, "firstTimestamp", now) ||
        !cJSON_AddStringToObject(b, "lastTimestamp", now) ||
        !cJSON_AddNumberToObject(b, "count", 1) ||
        !cJSON_AddStringToObject(b, "reportingComponent", ev->component))
        goto fail;
    return b;
fail:
    cJSON_Delete(b);
    return NULL;
}

/* Creates a new Event and caches it under key (taken on KM_OK).  Caller holds ev->mu. */
static km_status event_create(km_events *ev, const cJSON *obj, const char *type, const char *reason,
                              const char *msg, const char *now, char *key)
{
    struct timespec ts = km_clock_wall();
    char evname[320];
    km_err e;
    km_err_clear(&e);
    snprintf(evname, sizeof(evname), "%.240s.%llx", KM_JSON_STR(obj, "metadata", "name"),
             (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
    cJSON *body = event_body(ev, obj, evname, type, reason, msg, now);
    if (!body)
        return KM_ENOMEM;
    char path[256];
    km_kube_path(path, sizeof(path), NULL, "v1", event_ns(obj), "events", NULL, NULL);
    km_status st = km_kube_create(ev->kube, path, body, NULL, &e);
    cJSON_Delete(body);
    if (st != KM_OK) {
        log_failure(ev, "create", st, &e);
        return st;
    }
    ev->created++;
    ev_entry *ent = cache_slot(ev);
    if (!(ent->name = strdup(evname)))
        return KM_ENOMEM;
    snprintf(ent->ns, sizeof(ent->ns), "%s", event_ns(obj));
    ent->key = key;
    ent->count = 1;
    ent->used = ++ev->clock;
    return KM_OK;
}

void km_events_record(km_events *ev, const cJSON *obj, const char *type, const char *reason,
                      const char *message)
{
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    const char *uid = KM_JSON_STR(obj, "metadata", "uid");
    const char *kind = KM_JSON_STR(obj, "kind");
    if (!message)
        message = "";
    log_event(kind ? kind : "", name ? name : "", type, reason, message);
    if (!ev || !ev->kube || !name || !uid || !kind || !KM_JSON_STR(obj, "apiVersion"))
        return;

    /* Event messages are capped at 1 KiB by convention; keep the key bounded too. */
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", message);
    size_t klen = strlen(uid) + strlen(type) + strlen(reason) + strlen(msg) + 4;
    char *key = malloc(klen);
    if (!key)
        return;
    snprintf(key, klen, "%s\x1f%s\x1f%s\x1f%s", uid, type, reason, msg);

    char now[32];
    km_clock_now_text(now, sizeof(now));
    km_err e;
    km_err_clear(&e);

    pthread_mutex_lock(&ev->mu);
    ev_entry *ent = cache_find(ev, key);
    if (ent) {
        ent->used = ++ev->clock;
        km_status st = event_bump(ev, ent, now, &e);
        if (st == KM_OK) {
            ev->aggregated++;
            goto out;
        }
        if (!(st == KM_EAPI && e.http_code == 404)) {
            log_failure(ev, "patch", st, &e);
            goto out;
        }
        /* The Event expired (TTL) or was deleted: create a new one. */
        free(ent->key);
        free(ent->name);
        ent->key = ent->name = NULL;
    }

    if (event_create(ev, obj, type, reason, msg, now, key) == KM_OK)
        key = NULL; /* the cache owns it */
out:
    pthread_mutex_unlock(&ev->mu);
    free(key);
}
