/* lease.c — Lease-based leader election (see lease.h). */
#include "operator/base/clock.h"
#include "operator/serve/lease.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "operator/base/backoff.h"
#include "operator/base/buf.h"
#include "operator/base/json.h"
#include "operator/base/num.h"
#include "operator/base/log.h"

/* ---- pure part ------------------------------------------------------------------------------ */

km_status km_lease_record_from_json(const cJSON *lease, km_lease_record *out)
{
    if (!cJSON_IsObject(lease))
        return KM_EINVAL;
    km_lease_record r;
    memset(&r, 0, sizeof(r));
    const char *s;
    if ((s = KM_JSON_STR(lease, "spec", "holderIdentity")))
        snprintf(r.holder, sizeof(r.holder), "%s", s);
    if ((s = KM_JSON_STR(lease, "spec", "renewTime")))
        snprintf(r.renew_time, sizeof(r.renew_time), "%s", s);
    if ((s = KM_JSON_STR(lease, "spec", "acquireTime")))
        snprintf(r.acquire_time, sizeof(r.acquire_time), "%s", s);
    if ((s = KM_JSON_STR(lease, "metadata", "resourceVersion")))
        snprintf(r.resource_version, sizeof(r.resource_version), "%s", s);
    r.transitions = KM_JSON_LONG(lease, 0, "spec", "leaseTransitions");
    r.duration_s = KM_JSON_LONG(lease, 0, "spec", "leaseDurationSeconds");
    *out = r;
    return KM_OK;
}

int km_lease_record_changed(const km_lease_record *a, const km_lease_record *b)
{
    return strcmp(a->holder, b->holder) != 0 || strcmp(a->renew_time, b->renew_time) != 0 ||
           a->transitions != b->transitions || a->duration_s != b->duration_s;
}

void km_lease_observe(km_lease_observed *o, const km_lease_record *rec, double now)
{
    if (!o->have || km_lease_record_changed(&o->rec, rec))
        o->seen_at = now;
    o->rec = *rec;
    o->have = 1;
}

int km_lease_expired(const km_lease_observed *o, double now, double default_duration)
{
    if (!o->have)
        return 0;
    if (o->rec.holder[0] == '\0')
        return 1;
    double d = o->rec.duration_s > 0 ? (double)o->rec.duration_s : default_duration;
    return now >= o->seen_at + d;
}

int km_lease_renew_overdue(double last_renew_start, double now, double renew_deadline)
{
    return now - last_renew_start >= renew_deadline;
}

double km_lease_request_budget(double last_renew_start, double now, double renew_deadline,
                               double cap)
{
    double left = renew_deadline - (now - last_renew_start);
    if (left > cap)
        left = cap;
    return left < 0.1 ? 0.1 : left;
}

/* ---- the elector ---------------------------------------------------------------------------- */

struct km_lease {
    km_kube *kube; /* owned clone */
    char *ns, *name, *identity;
    km_lease_config cfg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    atomic_int leader;
    atomic_int known;
    atomic_int cancel; /* the clone's cancel flag: set while stopping the thread */
    double last_renew_start;
    km_lease_observed seen;
    char path[512];
    char last_holder[256];
};

static double mono_now(void *user)
{
    (void)user;
    return km_clock_mono();
}

static double now_s(km_lease *l)
{
    return l->cfg.clock(l->cfg.clock_user);
}

static void micro_time(char *buf, size_t n)
{
    km_clock_format(km_clock_wall(), 6, buf, n);
}

const char *km_lease_identity(char *buf, size_t n)
{
    char host[64] = "kubemend";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    unsigned long long a = (unsigned long long)(km_backoff_rand() * 4294967296.0);
    unsigned long long b = (unsigned long long)(km_backoff_rand() * 4294967296.0);
    snprintf(buf, n, "%s_%08llx%08llx", host, a, b);
    return buf;
}

/* One bounded request; *out gets the parsed body on 2xx. */
static km_status lease_do(km_lease *l, const char *method, const char *path, const cJSON *body,
                          double timeout_s, cJSON **out, km_err *err)
{
    char *txt = NULL;
    if (body && !(txt = cJSON_PrintUnformatted(body)))
        return km_err_set(err, KM_ENOMEM, "lease: out of memory");
    km_kube_req req;
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.path = path;
    req.body = txt;
    req.body_len = txt ? strlen(txt) : 0;
    req.timeout_ms = (long)(timeout_s * 1000);
    req.no_retry = 1;
    km_buf resp;
    km_buf_init(&resp, 1 << 20);
    long code = 0;
    km_status st = km_kube_do(l->kube, &req, &code, &resp, err);
    free(txt);
    if (st == KM_OK && out) {
        *out = km_json_parse(resp.data ? resp.data : "", resp.len);
        if (!*out)
            st = km_err_set(err, KM_EPARSE, "lease: unparsable response");
    }
    km_buf_cleanup(&resp);
    return st;
}

static cJSON *lease_body(km_lease *l, const cJSON *current, long transitions,
                         const char *acquire_time, const char *holder)
{
    char now[64];
    micro_time(now, sizeof(now));
    cJSON *o = current ? cJSON_Duplicate(current, 1) : cJSON_CreateObject();
    if (!o)
        return NULL;
    if (!current) {
        cJSON *md = km_json_obj(o, "metadata");
        if (!md || km_json_set_str(o, "apiVersion", "coordination.k8s.io/v1") != KM_OK ||
            km_json_set_str(o, "kind", "Lease") != KM_OK ||
            km_json_set_str(md, "name", l->name) != KM_OK ||
            km_json_set_str(md, "namespace", l->ns) != KM_OK)
            goto fail;
    }
    cJSON *spec = km_json_obj(o, "spec");
    if (!spec || km_json_set_str(spec, "holderIdentity", holder) != KM_OK ||
        km_json_set_num(spec, "leaseDurationSeconds", (double)(long)l->cfg.duration) != KM_OK ||
        km_json_set_str(spec, "acquireTime", acquire_time ? acquire_time : now) != KM_OK ||
        km_json_set_str(spec, "renewTime", now) != KM_OK ||
        km_json_set_num(spec, "leaseTransitions", (double)transitions) != KM_OK)
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static void set_leader(km_lease *l, int on)
{
    int was = atomic_exchange(&l->leader, on);
    if (was == on)
        return;
    if (on) {
        km_log_info("became leader", "lease", l->name, "identity", l->identity);
        if (l->cfg.on_started_leading)
            l->cfg.on_started_leading(l->cfg.user);
    } else {
        km_log_warn("stopped leading", "lease", l->name, "identity", l->identity);
        if (l->cfg.on_stopped_leading)
            l->cfg.on_stopped_leading(l->cfg.user);
    }
}

static void note_holder(km_lease *l, const char *holder)
{
    if (strcmp(l->last_holder, holder) == 0)
        return;
    snprintf(l->last_holder, sizeof(l->last_holder), "%s", holder);
    km_log_info("lease holder", "lease", l->name, "holder", holder[0] ? holder : "(none)");
    if (l->cfg.on_new_leader)
        l->cfg.on_new_leader(holder, l->cfg.user);
}

/* One election round. */
static void try_acquire_or_renew(km_lease *l)
{
    double t0 = now_s(l);
    int leading = atomic_load(&l->leader);
    double budget =
        leading ? km_lease_request_budget(l->last_renew_start, t0, l->cfg.renew_deadline, 5.0)
                : 5.0;
    km_err e;
    km_err_clear(&e);
    cJSON *cur = NULL, *body = NULL;
    km_status st = lease_do(l, "GET", l->path, NULL, budget, &cur, &e);
    atomic_store(&l->known, 1);
    if (st == KM_EAPI && e.http_code == 404) {
        body = lease_body(l, NULL, 0, NULL, l->identity);
        char cpath[512];
        km_kube_path(cpath, sizeof(cpath), "coordination.k8s.io", "v1", l->ns, "leases", NULL,
                     NULL);
        if (body && lease_do(l, "POST", cpath, body, budget, NULL, &e) == KM_OK) {
            l->last_renew_start = t0;
            note_holder(l, l->identity);
            set_leader(l, 1);
        }
        goto out;
    }
    if (st != KM_OK) {
        char buf[512];
        km_log_debug("lease read failed", "lease", l->name, "error",
                     km_err_str(&e, buf, sizeof(buf)));
        goto out;
    }
    km_lease_record rec;
    km_lease_record_from_json(cur, &rec);
    km_lease_observe(&l->seen, &rec, t0);
    note_holder(l, rec.holder);
    int mine = strcmp(rec.holder, l->identity) == 0;
    if (!mine && !km_lease_expired(&l->seen, t0, l->cfg.duration)) {
        if (leading) /* someone else holds it: we lost it */
            set_leader(l, 0);
        goto out;
    }
    long transitions = rec.transitions + (mine ? 0 : 1);
    body = lease_body(l, cur, transitions, mine ? rec.acquire_time : NULL, l->identity);
    if (!body)
        goto out;
    budget =
        leading ? km_lease_request_budget(l->last_renew_start, now_s(l), l->cfg.renew_deadline, 5.0)
                : 5.0;
    cJSON *updated = NULL;
    st = lease_do(l, "PUT", l->path, body, budget, &updated, &e);
    if (st == KM_OK) {
        km_lease_record nrec;
        if (km_lease_record_from_json(updated, &nrec) == KM_OK)
            km_lease_observe(&l->seen, &nrec, t0);
        cJSON_Delete(updated);
        l->last_renew_start = t0;
        note_holder(l, l->identity);
        set_leader(l, 1);
    } else {
        char buf[512];
        km_log_debug("lease write failed", "lease", l->name, "error",
                     km_err_str(&e, buf, sizeof(buf)));
    }
out:
    cJSON_Delete(cur);
    cJSON_Delete(body);
    if (atomic_load(&l->leader) &&
        km_lease_renew_overdue(l->last_renew_start, now_s(l), l->cfg.renew_deadline))
        set_leader(l, 0);
}

static void *lease_thread(void *arg)
{
    km_lease *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        pthread_mutex_unlock(&l->mu);
        try_acquire_or_renew(l);
        pthread_mutex_lock(&l->mu);
        if (l->stop)
            break;
        /* Wait one retry period, but wake up for the renew deadline. */
        double wait = l->cfg.retry;
        if (atomic_load(&l->leader)) {
            double left = l->cfg.renew_deadline - (now_s(l) - l->last_renew_start);
            if (left < wait)
                wait = left > 0.05 ? left : 0.05;
        }
        struct timespec ts = km_clock_deadline(CLOCK_MONOTONIC, wait);
        while (!l->stop && pthread_cond_timedwait(&l->cv, &l->mu, &ts) == 0) {
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

km_status km_lease_start(km_kube *kube, const km_lease_config *cfg, km_lease **out, km_err *err)
{
    if (!cfg->ns || !*cfg->ns || !cfg->name || !*cfg->name || !cfg->identity || !*cfg->identity)
        return km_err_set(err, KM_EINVAL, "leader election: namespace, name and identity needed");
    km_lease *l = calloc(1, sizeof(*l));
    if (!l)
        return km_err_set(err, KM_ENOMEM, "lease: out of memory");
    l->cfg = *cfg;
    if (l->cfg.duration <= 0)
        l->cfg.duration = KM_LEASE_DURATION;
    if (l->cfg.renew_deadline <= 0)
        l->cfg.renew_deadline = KM_LEASE_RENEW_DEADLINE;
    if (l->cfg.retry <= 0)
        l->cfg.retry = KM_LEASE_RETRY;
    if (!l->cfg.clock)
        l->cfg.clock = mono_now;
    if (l->cfg.renew_deadline >= l->cfg.duration || l->cfg.retry >= l->cfg.renew_deadline) {
        free(l);
        return km_err_set(err, KM_EINVAL,
                          "leader election: need retry < renew deadline < lease duration");
    }
    km_status st = KM_OK;
    l->ns = strdup(cfg->ns);
    l->name = strdup(cfg->name);
    l->identity = strdup(cfg->identity);
    if (!l->ns || !l->name || !l->identity) {
        st = km_err_set(err, KM_ENOMEM, "lease: out of memory");
        goto fail;
    }
    l->cfg.ns = l->ns;
    l->cfg.name = l->name;
    l->cfg.identity = l->identity;
    st = km_kube_path(l->path, sizeof(l->path), "coordination.k8s.io", "v1", l->ns, "leases",
                      l->name, NULL);
    if (st != KM_OK) {
        km_err_set(err, st, "lease path too long");
        goto fail;
    }
    st = km_kube_clone(kube, &l->kube, err);
    if (st != KM_OK)
        goto fail;
    /* Our own cancel flag: the process-wide one would also cancel the release on shutdown. */
    km_kube_set_cancel(l->kube, &l->cancel);
    pthread_mutex_init(&l->mu, NULL);
    km_clock_cond_init(&l->cv, CLOCK_MONOTONIC);
    if (pthread_create(&l->thread, NULL, lease_thread, l) != 0) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        st = km_err_set(err, KM_EIO, "lease: cannot create thread");
        goto fail;
    }
    *out = l;
    return KM_OK;
fail:
    km_kube_free(l->kube);
    free(l->ns);
    free(l->name);
    free(l->identity);
    free(l);
    return st;
}

int km_lease_is_leader(km_lease *l)
{
    if (!l || !atomic_load(&l->leader))
        return 0;
    return 1;
}

int km_lease_state_known(km_lease *l)
{
    return l && atomic_load(&l->known);
}

void km_lease_stop(km_lease *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    atomic_store(&l->cancel, 1);
    pthread_join(l->thread, NULL);
    atomic_store(&l->cancel, 0);
    int was_leader = atomic_load(&l->leader);
    set_leader(l, 0);
    if (was_leader && l->cfg.release_on_stop) {
        km_err e;
        cJSON *cur = NULL;
        if (lease_do(l, "GET", l->path, NULL, 2.0, &cur, &e) == KM_OK &&
            strcmp(KM_JSON_STR(cur, "spec", "holderIdentity")
                       ? KM_JSON_STR(cur, "spec", "holderIdentity")
                       : "",
                   l->identity) == 0) {
            cJSON *spec = km_json_obj(cur, "spec");
            char now[64];
            micro_time(now, sizeof(now));
            if (spec && km_json_set_str(spec, "holderIdentity", "") == KM_OK &&
                km_json_set_num(spec, "leaseDurationSeconds", 1) == KM_OK &&
                km_json_set_str(spec, "renewTime", now) == KM_OK &&
                lease_do(l, "PUT", l->path, cur, 2.0, NULL, &e) == KM_OK)
                km_log_info("released lease", "lease", l->name);
        }
        cJSON_Delete(cur);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    km_kube_free(l->kube);
    free(l->ns);
    free(l->name);
    free(l->identity);
    free(l);
}
