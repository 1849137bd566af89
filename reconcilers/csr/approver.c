/* approver.c — the background CSR approver (see approver.h). */
#include "reconcilers/csr/approver.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "operator/base/num.h"
#include "operator/base/strmap.h"
#include "operator/kube/pool.h"
#include "reconcilers/csr/csr.h"
#include "watch/watcher.h"

#define REPORTED_MAX 10000
#define ADDRS_MAX_AGE_S 30.0 /* the Nodes' addresses are listed again when older */

/* The Nodes' address index shared by the deciders: swapped by the watcher thread, freed by the
 * last decider still reading it. */
typedef struct addrs_ref {
    km_csr_addrs *addrs;
    int refs; /* guarded by the approver's set_mu */
} addrs_ref;

struct km_csr_approver {
    km_kube *kube; /* clone; the watcher thread's (the deciders have the pool's clones) */
    km_csr_policy *policy;
    km_watcher *w;
    km_pool *pool; /* the deciders: spec.csr.maxInFlight CSRs decided at once */
    km_csr_hooks hooks;
    km_csr_decider h;
    pthread_mutex_t set_mu; /* guards reported, deciding and addrs */
    km_strmap *reported;    /* names of CSRs reported as left pending (bounded) */
    km_strmap *deciding;    /* names of CSRs handed to a decider and not finished */
    addrs_ref *addrs;       /* current index (NULL until listed) */
    double addrs_at;        /* watcher thread */
    atomic_int stop;
    int has_end;
    time_t ends;
    pthread_t timer;
    int timer_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopped; /* guarded by mu */
};

/* One CSR handed to a decider. */
typedef struct decide_unit {
    cJSON *csr; /* owned copy of the watch event's object */
    char name[256];
} decide_unit;

static void approver_event(void *user, const char *type, const char *reason, const char *message)
{
    km_csr_approver *a = user;
    if (a->hooks.event)
        a->hooks.event(type, reason, message, a->hooks.user);
}

/* Drops one reference (set_mu held); the last one frees the index. */
static void addrs_unref_locked(addrs_ref *r)
{
    if (r && --r->refs == 0) {
        km_csr_addrs_free(r->addrs);
        free(r);
    }
}

/* Watcher thread: lists the Nodes' addresses again when the index is older than
 * ADDRS_MAX_AGE_S (a failed list keeps the old index, logged). */
static void refresh_addrs(km_csr_approver *a)
{
    if (a->addrs && km_clock_mono() - a->addrs_at < ADDRS_MAX_AGE_S)
        return;
    km_csr_addrs *fresh = NULL;
    km_err e;
    km_err_clear(&e);
    if (km_csr_addrs_list(a->kube, &fresh, &e) != KM_OK) {
        char buf[768];
        km_log_warn("csr approver: cannot list the nodes' addresses", "error",
                    km_err_str(&e, buf, sizeof(buf)));
        a->addrs_at = km_clock_mono(); /* retried after ADDRS_MAX_AGE_S, not per CSR */
        return;
    }
    addrs_ref *r = malloc(sizeof(*r));
    if (!r) {
        km_csr_addrs_free(fresh);
        return;
    }
    *r = (addrs_ref){.addrs = fresh, .refs = 1};
    pthread_mutex_lock(&a->set_mu);
    addrs_unref_locked(a->addrs);
    a->addrs = r;
    pthread_mutex_unlock(&a->set_mu);
    a->addrs_at = km_clock_mono();
}

static void unit_free(void *p)
{
    decide_unit *u = p;
    if (u)
        cJSON_Delete(u->csr);
    free(u);
}

/* A decider (pool worker, its own client): decides one CSR.  A failed decision is logged and
 * the CSR left to its next watch event or relist; it never stops the pool (always KM_OK). */
static km_status decide_one(km_kube *kube, void *unit, void *user, km_err *err)
{
    (void)err;
    km_csr_approver *a = user;
    decide_unit *u = unit;
    km_csr_decider h = a->h;
    h.kube = kube;
    pthread_mutex_lock(&a->set_mu);
    addrs_ref *ref = a->addrs;
    if (ref)
        ref->refs++;
    pthread_mutex_unlock(&a->set_mu);
    h.addrs = ref ? ref->addrs : NULL;

    km_csr_result r;
    km_err e;
    km_err_clear(&e);
    km_status st = km_csr_decide(&h, u->csr, &r, &e);
    if (st != KM_OK && !atomic_load(&a->stop)) {
        char buf[768];
        km_log_warn("csr approver: decision not written", "csr", r.name, "error",
                    km_err_str(&e, buf, sizeof(buf)));
    }
    pthread_mutex_lock(&a->set_mu);
    addrs_unref_locked(ref);
    (void)km_strmap_remove(a->deciding, u->name);
    if (st == KM_OK && r.out == KM_CSR_PENDING && km_strmap_len(a->reported) < REPORTED_MAX)
        km_strmap_put(a->reported, u->name, a, NULL); /* a set: any non-NULL value */
    pthread_mutex_unlock(&a->set_mu);
    if (st == KM_OK && r.out >= KM_CSR_APPROVED && a->hooks.decided)
        a->hooks.decided(&r, a->hooks.user);
    unit_free(u);
    return KM_OK;
}

/* Watcher thread: one watch event.  A pending CSR of a handled signer goes to a decider unless
 * one is deciding it already or it was reported as left pending; the hand-off waits while every
 * decider is busy (the watch stream waits with it). */
static void on_csr_event(km_event_type type, const cJSON *obj, void *user)
{
    km_csr_approver *a = user;
    if ((type != KM_EV_ADDED && type != KM_EV_MODIFIED) || atomic_load(&a->stop))
        return;
    if (km_csrcheck_is_decided(obj) ||
        !km_csrcheck_handles(a->policy, KM_JSON_STR(obj, "spec", "signerName")))
        return;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    if (!name || strlen(name) >= sizeof(((decide_unit *)0)->name))
        return; /* no CSR the server accepted */
    decide_unit *u = calloc(1, sizeof(*u));
    if (!u || !(u->csr = cJSON_Duplicate(obj, 1))) {
        unit_free(u);
        km_log_warn("csr approver: out of memory; the CSR waits for the next relist", "csr", name);
        return;
    }
    snprintf(u->name, sizeof(u->name), "%s", name);
    pthread_mutex_lock(&a->set_mu);
    int skip = km_strmap_has(a->reported, name) || km_strmap_has(a->deciding, name) ||
               km_strmap_put(a->deciding, name, a, NULL) != KM_OK;
    pthread_mutex_unlock(&a->set_mu);
    if (skip) {
        unit_free(u);
        return;
    }
    refresh_addrs(a);
    km_err e;
    km_err_clear(&e);
    if (km_pool_submit(a->pool, u, &e) != KM_OK) { /* decide_one never fails: only a stop */
        pthread_mutex_lock(&a->set_mu);
        (void)km_strmap_remove(a->deciding, name);
        pthread_mutex_unlock(&a->set_mu);
    }
}

/* Timer thread: stops the watcher at windowEndsAt or when asked. */
static void *timer_main(void *arg)
{
    km_csr_approver *a = arg;
    pthread_mutex_lock(&a->mu);
    while (!a->stopped) {
        if (a->has_end) {
            struct timespec ts = {.tv_sec = a->ends, .tv_nsec = 0};
            if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) != 0 && time(NULL) >= a->ends)
                break;
        } else {
            pthread_cond_wait(&a->cv, &a->mu);
        }
    }
    pthread_mutex_unlock(&a->mu);
    atomic_store(&a->stop, 1);
    km_watcher_stop(a->w);
    return NULL;
}

km_status km_csr_approver_start(km_kube *kube, const cJSON *csr_spec, const km_csr_hooks *hooks,
                                km_csr_approver **out, km_err *err)
{
    km_status st;
    km_csr_approver *a = calloc(1, sizeof(*a));
    if (!a)
        return km_err_set(err, KM_ENOMEM, "csr approver: out of memory");
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->set_mu, NULL);
    km_clock_cond_init(&a->cv, CLOCK_REALTIME);
    if (hooks)
        a->hooks = *hooks;
    if ((st = km_csr_policy_from_spec(csr_spec, &a->policy, err)) != KM_OK)
        goto fail;
    if (!(a->reported = km_strmap_new()) || !(a->deciding = km_strmap_new())) {
        st = km_err_set(err, KM_ENOMEM, "csr approver: out of memory");
        goto fail;
    }
    if ((st = km_kube_clone(kube, &a->kube, err)) != KM_OK)
        goto fail;
    km_kube_set_cancel(a->kube, &a->stop);
    const char *ends = KM_JSON_STR(csr_spec, "windowEndsAt");
    if (ends && km_clock_parse(ends, &a->ends) == KM_OK)
        a->has_end = 1;
    a->h = (km_csr_decider){
        .kube = a->kube,
        .policy = a->policy,
        .deny = km_schema_bool(km_csr_def.fields, csr_spec, "deny"),
        .dry_run = KM_JSON_BOOL(csr_spec, 0, "dryRun"),
        .event = approver_event,
        .user = a,
        .cancel = &a->stop,
    };
    int deciders = (int)km_num_long(km_schema_num(km_csr_def.fields, csr_spec, "maxInFlight"), 8);
    if ((st = km_pool_new(a->kube, deciders, decide_one, unit_free, a, &a->pool, err)) != KM_OK)
        goto fail;
    km_watch_opts o;
    km_watch_opts_init(&o);
    o.name = "certificatesigningrequests";
    o.path = KM_CSR_PATH;
    o.on_event = on_csr_event;
    o.user = a;
    km_watch_transport_kube(&o.transport, a->kube);
    if ((st = km_watcher_new(&o, &a->w, err)) != KM_OK)
        goto fail;
    if ((st = km_watcher_start(a->w, err)) != KM_OK)
        goto fail;
    if (pthread_create(&a->timer, NULL, timer_main, a) != 0) {
        st = km_err_set(err, KM_EIO, "csr approver: cannot create a thread");
        goto fail;
    }
    a->timer_started = 1;
    char nd[16];
    snprintf(nd, sizeof(nd), "%d", deciders);
    km_log_info("csr approver started", "windowEndsAt", a->has_end ? ends : "", "dryRun",
                a->h.dry_run ? "true" : "false", "maxInFlight", nd);
    *out = a;
    return KM_OK;
fail:
    km_csr_approver_free(a);
    return st;
}

void km_csr_approver_stop(km_csr_approver *a)
{
    if (!a)
        return;
    atomic_store(&a->stop, 1);
    pthread_mutex_lock(&a->mu);
    a->stopped = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (a->timer_started) {
        pthread_join(a->timer, NULL);
        a->timer_started = 0;
    }
    km_watcher_stop(a->w);
}

int km_csr_approver_running(km_csr_approver *a)
{
    if (!a || atomic_load(&a->stop))
        return 0;
    km_watch_stats s;
    km_watcher_stats(a->w, &s);
    return s.state != KM_WATCH_STOPPED;
}

void km_csr_approver_free(km_csr_approver *a)
{
    if (!a)
        return;
    km_csr_approver_stop(a);
    km_watcher_free(a->w); /* no more hand-offs */
    km_pool_free(a->pool); /* waits for the deciders */
    km_kube_free(a->kube);
    km_strmap_free(a->reported);
    km_strmap_free(a->deciding);
    if (a->addrs)
        addrs_unref_locked(a->addrs);
    km_csr_policy_free(a->policy);
    pthread_mutex_destroy(&a->set_mu);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
