/* events.c — core/v1 Events with client-side aggregation. */
#include "operator/kube/events.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"

#define EVENTS_NS "default" /* for cluster-scoped objects */
#define EVENTS_CACHE 128
/* Events waiting for the sender; more are dropped (client-go: 1000) */
#define EVENTS_QUEUE_MAX 1000
#define EVENTS_DRAIN_S 5.0 /* km_events_free waits this long for the queue to drain */
/* client-go's EventCorrelator defaults: from the AGG_MAX-th different message of the same
 * object, type and reason within AGG_WINDOW_S on, the Events are combined into one; a token bucket
 * of SPAM_BURST Events refilled one per SPAM_REFILL_S limits each object and reason. */
#define AGG_MAX 10
#define AGG_WINDOW_S 600.0
#define SPAM_BURST 25.0
#define SPAM_REFILL_S 300.0
#define FILTERS 256
#define AGG_PREFIX "(combined from similar events): "

/* The correlator's state for one object, type and reason (hashed). */
typedef struct ev_filter {
    unsigned long long hash;          /* 0 = free slot */
    double tokens, refilled_at;       /* spam filter */
    double window_at;                 /* aggregation window start */
    unsigned long long msgs[AGG_MAX]; /* the window's different messages (hashed) */
    int nmsgs;
    unsigned long used; /* LRU stamp */
} ev_filter;

/* One Event waiting for the sender: a copy of what it needs of the object. */
typedef struct ev_item {
    struct ev_item *next;
    cJSON *ref; /* {apiVersion, kind, metadata: {name, namespace, uid, resourceVersion}} */
    char *key;  /* uid \x1f type \x1f reason \x1f message */
    char type[16];
    char reason[128];
    char msg[1024];
    char now[32];
} ev_item;

typedef struct ev_entry {
    char *key;   /* uid \x1f type \x1f reason \x1f message; NULL = free slot */
    char *name;  /* Event name */
    char ns[64]; /* Event namespace */
    long count;
    unsigned long used; /* LRU stamp */
} ev_entry;

struct km_events {
    pthread_mutex_t mu; /* guards the cache and the counters */
    km_kube *kube;      /* owned clone (the sender's), NULL = log only */
    /* the queue and the sender thread (started with a client) */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;   /* an item was queued, or stop */
    pthread_cond_t idle;  /* the queue is empty and nothing is being sent */
    ev_item *head, *tail; /* guarded by qmu */
    size_t queued;        /* guarded by qmu */
    int sending;          /* guarded by qmu */
    int stopping;         /* guarded by qmu */
    atomic_int cancel;    /* the sender's client gives up its request */
    pthread_t sender;
    int sender_started;
    unsigned long dropped;      /* guarded by qmu */
    unsigned long filtered;     /* guarded by qmu: over the spam filter's budget */
    ev_filter filters[FILTERS]; /* guarded by qmu */
    unsigned long fclock;       /* guarded by qmu */
    char component[64];
    ev_entry cache[EVENTS_CACHE];
    unsigned long clock;
    unsigned long created;
    unsigned long aggregated;
    int warned_403; /* the first refused (403) Event was logged at warning level */
};

static void *sender_main(void *arg);

static void item_free(ev_item *it)
{
    if (!it)
        return;
    cJSON_Delete(it->ref);
    free(it->key);
    free(it);
}

km_status km_events_new(km_kube *kube, const char *component, km_events **out, km_err *err)
{
    km_status st = KM_OK;
    km_events *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return km_err_set(err, KM_ENOMEM, "event recorder: out of memory");
    snprintf(ev->component, sizeof(ev->component), "%s", component ? component : "kubemend");
    pthread_mutex_init(&ev->mu, NULL);
    pthread_mutex_init(&ev->qmu, NULL);
    pthread_cond_init(&ev->qcv, NULL);
    km_clock_cond_init(&ev->idle, CLOCK_MONOTONIC); /* km_events_flush's deadlines */
    if (kube) {
        if ((st = km_kube_clone(kube, &ev->kube, err)) != KM_OK)
            goto out;
        km_kube_set_cancel(ev->kube, &ev->cancel);
        if (pthread_create(&ev->sender, NULL, sender_main, ev) != 0) {
            st = km_err_set(err, KM_EIO, "event recorder: cannot create a thread");
            goto out;
        }
        ev->sender_started = 1;
    }
    *out = ev;
    ev = NULL;
out:
    km_events_free(ev);
    return st;
}

int km_events_flush(km_events *ev, double timeout_s)
{
    if (!ev)
        return 1;
    struct timespec end = km_clock_deadline(CLOCK_MONOTONIC, timeout_s);
    pthread_mutex_lock(&ev->qmu);
    while ((ev->head || ev->sending) && ev->sender_started &&
           pthread_cond_timedwait(&ev->idle, &ev->qmu, &end) == 0)
        ;
    int done = !ev->head && !ev->sending;
    pthread_mutex_unlock(&ev->qmu);
    return done;
}

void km_events_free(km_events *ev)
{
    if (!ev)
        return;
    if (ev->sender_started) {
        if (!km_events_flush(ev, EVENTS_DRAIN_S))
            km_log_warn("events not recorded: the API server did not take them in time");
        pthread_mutex_lock(&ev->qmu);
        ev->stopping = 1;
        pthread_cond_broadcast(&ev->qcv);
        pthread_mutex_unlock(&ev->qmu);
        atomic_store(&ev->cancel, 1);
        pthread_join(ev->sender, NULL);
    }
    while (ev->head) {
        ev_item *it = ev->head;
        ev->head = it->next;
        item_free(it);
    }
    for (int i = 0; i < EVENTS_CACHE; i++) {
        free(ev->cache[i].key);
        free(ev->cache[i].name);
    }
    km_kube_free(ev->kube);
    pthread_cond_destroy(&ev->idle);
    pthread_cond_destroy(&ev->qcv);
    pthread_mutex_destroy(&ev->qmu);
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}

unsigned long km_events_dropped(km_events *ev)
{
    pthread_mutex_lock(&ev->qmu);
    unsigned long n = ev->dropped + ev->filtered;
    pthread_mutex_unlock(&ev->qmu);
    return n;
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
static km_status event_bump(km_events *ev, ev_entry *ent, const char *now, const char *message,
                            km_err *e)
{
    char path[512];
    if (km_kube_path(path, sizeof(path), NULL, "v1", ent->ns, "events", ent->name, NULL) != KM_OK)
        return KM_EINVAL;
    cJSON *patch = cJSON_CreateObject();
    char *text = NULL;
    if (!patch || !cJSON_AddNumberToObject(patch, "count", (double)(ent->count + 1)) ||
        !cJSON_AddStringToObject(patch, "lastTimestamp", now) ||
        !cJSON_AddStringToObject(patch, "message", message) ||
        !(text = cJSON_PrintUnformatted(patch))) {
        cJSON_Delete(patch);
        return KM_ENOMEM;
    }
    cJSON_Delete(patch);
    km_status st = km_kube_patch(ev->kube, path, KM_PATCH_MERGE, text, NULL, e);
    free(text);
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

/* A copy of what an Event needs of obj; NULL on allocation failure. */
static cJSON *object_ref(const cJSON *obj)
{
    static const char *const md_keys[] = {"name", "namespace", "uid", "resourceVersion"};
    cJSON *ref = cJSON_CreateObject();
    cJSON *md = ref ? cJSON_AddObjectToObject(ref, "metadata") : NULL;
    if (!md || !cJSON_AddStringToObject(ref, "apiVersion", KM_JSON_STR(obj, "apiVersion")) ||
        !cJSON_AddStringToObject(ref, "kind", KM_JSON_STR(obj, "kind")))
        goto fail;
    for (size_t i = 0; i < sizeof(md_keys) / sizeof(md_keys[0]); i++) {
        const char *v = KM_JSON_STR(obj, "metadata", md_keys[i]);
        if (v && !cJSON_AddStringToObject(md, md_keys[i], v))
            goto fail;
    }
    return ref;
fail:
    cJSON_Delete(ref);
    return NULL;
}

/* Sender thread: writes one Event (a PATCH of a cached one, or a create).  Failures are
 * logged (log_failure) and forgotten. */
static void send_item(km_events *ev, ev_item *it)
{
    km_err e;
    km_err_clear(&e);
    pthread_mutex_lock(&ev->mu);
    ev_entry *ent = cache_find(ev, it->key);
    if (ent) {
        ent->used = ++ev->clock;
        km_status st = event_bump(ev, ent, it->now, it->msg, &e);
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
    if (event_create(ev, it->ref, it->type, it->reason, it->msg, it->now, it->key) == KM_OK)
        it->key = NULL; /* the cache owns it */
out:
    pthread_mutex_unlock(&ev->mu);
}

static void *sender_main(void *arg)
{
    km_events *ev = arg;
    pthread_mutex_lock(&ev->qmu);
    for (;;) {
        while (!ev->head && !ev->stopping)
            pthread_cond_wait(&ev->qcv, &ev->qmu);
        if (ev->stopping)
            break;
        ev_item *it = ev->head;
        if (!(ev->head = it->next))
            ev->tail = NULL;
        ev->queued--;
        ev->sending = 1;
        pthread_mutex_unlock(&ev->qmu);
        send_item(ev, it);
        item_free(it);
        pthread_mutex_lock(&ev->qmu);
        ev->sending = 0;
        if (!ev->head)
            pthread_cond_broadcast(&ev->idle);
    }
    pthread_mutex_unlock(&ev->qmu);
    return NULL;
}

static unsigned long long fnv1a(unsigned long long h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h * 1099511628211ull) | 1; /* never 0: 0 marks a free slot */
}

/* The filter slot of hash (qmu held): found, else a free or the least recently used one. */
static ev_filter *filter_slot(km_events *ev, unsigned long long hash, double now)
{
    ev_filter *best = &ev->filters[0];
    for (int i = 0; i < FILTERS; i++) {
        ev_filter *f = &ev->filters[i];
        if (f->hash == hash) {
            f->used = ++ev->fclock;
            return f;
        }
        if (!f->hash || f->used < best->used)
            best = f;
    }
    *best = (ev_filter){.hash = hash,
                        .tokens = SPAM_BURST,
                        .refilled_at = now,
                        .window_at = now,
                        .used = ++ev->fclock};
    return best;
}

/* client-go's correlator (qmu held): 0 when the spam filter drops the Event; otherwise 1, with
 * *combined set when it joins its similar Events' combined one. */
static int correlate(km_events *ev, const char *uid, const char *type, const char *reason,
                     const char *message, int *combined)
{
    double now = km_clock_mono();
    unsigned long long h = fnv1a(fnv1a(fnv1a(14695981039346656037ull, uid), type), reason);
    ev_filter *f = filter_slot(ev, h, now);
    f->tokens += (now - f->refilled_at) / SPAM_REFILL_S;
    if (f->tokens > SPAM_BURST)
        f->tokens = SPAM_BURST;
    f->refilled_at = now;
    if (f->tokens < 1.0)
        return 0;
    f->tokens -= 1.0;
    if (now - f->window_at > AGG_WINDOW_S) {
        f->window_at = now;
        f->nmsgs = 0;
    }
    unsigned long long mh = fnv1a(14695981039346656037ull, message);
    int seen = 0;
    for (int i = 0; i < f->nmsgs && !seen; i++)
        seen = f->msgs[i] == mh;
    if (!seen && f->nmsgs < AGG_MAX)
        f->msgs[f->nmsgs++] = mh;
    *combined = f->nmsgs >= AGG_MAX; /* client-go: the 10th different message is combined */
    return 1;
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

    int combined = 0;
    pthread_mutex_lock(&ev->qmu);
    int pass = correlate(ev, uid, type, reason, message, &combined);
    if (!pass)
        ev->filtered++;
    pthread_mutex_unlock(&ev->qmu);
    if (!pass)
        return;
    ev_item *it = calloc(1, sizeof(*it));
    if (!it)
        return;
    /* Event messages are capped at 1 KiB by convention; keep the key bounded too.  A combined
     * Event has one key for all its similar Events, so it is created once and then counted. */
    snprintf(it->msg, sizeof(it->msg), "%s%s", combined ? AGG_PREFIX : "", message);
    snprintf(it->type, sizeof(it->type), "%s", type);
    snprintf(it->reason, sizeof(it->reason), "%s", reason);
    km_clock_now_text(it->now, sizeof(it->now));
    const char *kmsg = combined ? AGG_PREFIX : it->msg;
    size_t klen = strlen(uid) + strlen(it->type) + strlen(it->reason) + strlen(kmsg) + 4;
    if (!(it->key = malloc(klen)) || !(it->ref = object_ref(obj))) {
        item_free(it);
        return;
    }
    snprintf(it->key, klen, "%s\x1f%s\x1f%s\x1f%s", uid, it->type, it->reason, kmsg);

    pthread_mutex_lock(&ev->qmu);
    if (ev->queued >= EVENTS_QUEUE_MAX || ev->stopping) {
        if (ev->dropped++ == 0)
            km_log_warn("events dropped: the API server takes them slower than they come", "reason",
                        reason);
        pthread_mutex_unlock(&ev->qmu);
        item_free(it);
        return;
    }
    if (ev->tail)
        ev->tail->next = it;
    else
        ev->head = it;
    ev->tail = it;
    ev->queued++;
    pthread_cond_signal(&ev->qcv);
    pthread_mutex_unlock(&ev->qmu);
}
