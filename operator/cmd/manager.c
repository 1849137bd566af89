/* manager.c — the Manager (see manager.h). */
#include "operator/cmd/manager.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "operator/base/clock.h"
#include "operator/base/log.h"
#include "operator/serve/http.h"
#include "operator/serve/lease.h"

#define MAX_RUNNABLES 8
#define MAX_JOBS 8
#define STALL_S 30.0 /* /healthz fails when the Manager's loop has not turned for this long */
#define BEAT_S 1.0   /* the loop turns at least this often */

static const km_runnable *g_runnables[MAX_RUNNABLES];
static size_t g_nrunnables;
static const km_job *g_jobs[MAX_JOBS];
static size_t g_njobs;
static const km_job *g_job; /* the job running */

void km_manager_register(const km_runnable *r)
{
    if (g_nrunnables < MAX_RUNNABLES)
        g_runnables[g_nrunnables++] = r;
}

void km_manager_register_job(const km_job *j)
{
    if (g_njobs < MAX_JOBS)
        g_jobs[g_njobs++] = j;
}

/* ---- the process: signals, one wake-up ------------------------------------------------------ */

static atomic_int g_stop;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static void *g_job_self; /* run --once: cancelled on a signal (under g_mu) */

/* Wakes the Manager's loop (a signal, a leader transition). */
static void wake(void)
{
    pthread_mutex_lock(&g_mu);
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void stop_process(void)
{
    atomic_store(&g_stop, 1);
    pthread_mutex_lock(&g_mu);
    if (g_job_self && g_job && g_job->cancel)
        g_job->cancel(g_job_self);
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (atomic_load(&g_stop)) {
            fprintf(stderr, "kubemend: second signal, exiting now\n");
            _exit(130);
        }
        km_log_info("signal received, stopping", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        stop_process();
    }
    return NULL;
}

/* Blocks SIGTERM/SIGINT in every thread created afterwards and starts the signal thread;
 * initialises libcurl before any thread uses it. */
static void process_start(void)
{
    static sigset_t set;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t t;
    if (pthread_create(&t, NULL, signal_thread, &set) == 0)
        pthread_detach(t);
}

/* Loads the kubeconfig and makes the client.  0, or an exit code (message printed). */
static int connect_client(const km_manager_opts *o, km_kubeconfig **cfg, km_kube **kube)
{
    km_err e;
    km_err_clear(&e);
    char buf[1024];
    km_kubeconfig_opts co = {o->kubeconfig, o->context, NULL};
    if (km_kubeconfig_load(&co, cfg, &e) != KM_OK) {
        fprintf(stderr, "kubemend: %s\n", km_err_str(&e, buf, sizeof(buf)));
        return KM_EXIT_USAGE;
    }
    if (km_kube_new(*cfg, &o->client, kube, &e) != KM_OK) {
        fprintf(stderr, "kubemend: %s\n", km_err_str(&e, buf, sizeof(buf)));
        km_kubeconfig_free(*cfg);
        *cfg = NULL;
        return KM_EXIT_FAILED;
    }
    km_kube_set_cancel(*kube, &g_stop);
    return 0;
}

/* ---- run --once ----------------------------------------------------------------------------- */

int km_manager_run_job(const km_manager_opts *o, const km_job_opts *jo)
{
    void *self = NULL;
    km_err e;
    km_err_clear(&e);
    const char *name = jo->job ? jo->job : "run --once";
    for (size_t i = 0; i < g_njobs && !g_job; i++)
        if (strcmp(g_jobs[i]->name, name) == 0)
            g_job = g_jobs[i];
    if (!g_job) {
        fprintf(stderr, "kubemend: this build has no job \"%s\"\n", name);
        return KM_EXIT_FAILED;
    }
    if (g_job->prepare(jo, &self, &e) != KM_OK) {
        fprintf(stderr, "kubemend %s: %s\n", jo->job ? name : "run", e.message);
        return KM_EXIT_USAGE;
    }
    process_start();
    km_runtime rt = {.stop = &g_stop, .workers = o->workers};
    int rc = connect_client(o, &rt.config, &rt.kube);
    if (rc == 0) {
        pthread_mutex_lock(&g_mu);
        g_job_self = self;
        pthread_mutex_unlock(&g_mu);
        rc = g_job->run(self, &rt);
        pthread_mutex_lock(&g_mu);
        g_job_self = NULL;
        pthread_mutex_unlock(&g_mu);
    }
    g_job->free(self);
    km_kube_free(rt.kube);
    km_kubeconfig_free(rt.config);
    curl_global_cleanup();
    return rc;
}

/* ---- kubemend operator ---------------------------------------------------------------------- */

typedef struct manager {
    const km_manager_opts *o;
    km_runtime rt;
    void *self[MAX_RUNNABLES]; /* each runnable's state; NULL = not started */
    km_http *hm, *hh;
    km_lease *lease;
    atomic_int leading; /* the Lease says we lead */
    atomic_int lost;    /* the Lease was lost: exit */
    atomic_int led;     /* the runnables lead (lead() called) */
    _Atomic double beat;
} manager;

static void on_started_leading(void *user)
{
    manager *m = user;
    atomic_store(&m->leading, 1);
    wake();
}

static void on_stopped_leading(void *user)
{
    manager *m = user;
    /* Stop acting at once: cancel every request of this process, then exit. */
    atomic_store(&m->lost, 1);
    stop_process();
}

/* Liveness: the loop turns, and the API server still accepts our credentials — after a PKI
 * rebuild a restart is what gives the pod a fresh projected token, so failing is the fix. */
static int live(char *reason, size_t n, void *user)
{
    manager *m = user;
    if (km_kube_credentials_rejected(m->rt.kube)) {
        snprintf(reason, n,
                 "credentials rejected by the API server; a restart mounts a fresh token");
        return 0;
    }
    double idle = km_clock_mono() - atomic_load(&m->beat);
    if (idle > STALL_S) {
        snprintf(reason, n, "main loop stalled for %.0f s", idle);
        return 0;
    }
    return 1;
}

static int ready(char *reason, size_t n, void *user)
{
    manager *m = user;
    for (size_t i = 0; i < g_nrunnables; i++)
        if (!m->self[i] || !g_runnables[i]->ready(m->self[i], reason, n))
            return 0;
    if (m->o->leader_elect && !km_lease_state_known(m->lease)) {
        snprintf(reason, n, "leader state unknown");
        return 0;
    }
    return 1;
}

static void collect(void *user)
{
    manager *m = user;
    km_metric *leader = km_metrics_get(m->rt.metrics, KM_METRIC_LEADER);
    if (leader)
        km_metric_set(leader, NULL, atomic_load(&m->led) && !atomic_load(&m->lost) ? 1 : 0);
    double qps = 0;
    int inflight = 0;
    km_kube_pace(m->rt.kube, &qps, &inflight);
    km_metrics_set_pace(m->rt.metrics, qps, inflight);
    for (size_t i = 0; i < g_nrunnables; i++)
        if (m->self[i] && g_runnables[i]->collect)
            g_runnables[i]->collect(m->self[i]);
}

/* Starts an HTTP server on addr ("0" or NULL = off).  0, or an exit code (message printed). */
static int start_http(manager *m, const char *flag, const char *addr, km_http **out)
{
    char host[128];
    int port = 0;
    km_err e;
    km_err_clear(&e);
    if (!addr || strcmp(addr, "0") == 0)
        return 0;
    if (km_http_parse_address(addr, host, sizeof(host), &port, &e) != KM_OK) {
        fprintf(stderr, "kubemend operator: invalid address: %s\n", flag);
        return KM_EXIT_USAGE;
    }
    km_http_opts ho = {.bind_address = host,
                       .port = port,
                       .metrics = m->rt.metrics,
                       .live = live,
                       .ready = ready,
                       .user = m,
                       .collect = collect};
    if (km_http_start(&ho, out, &e) != KM_OK) {
        char buf[768];
        fprintf(stderr, "kubemend operator: %s %s: %s\n", flag, addr,
                km_err_str(&e, buf, sizeof(buf)));
        return KM_EXIT_FAILED;
    }
    km_log_info("http server listening", "flag", flag, "port", KM_LOG_INT(km_http_port(*out)));
    return 0;
}

/* The Lease namespace: --namespace, $POD_NAMESPACE, the in-cluster namespace, kubemend-system. */
static const char *lease_namespace(const manager *m)
{
    const char *ns = m->o->ns;
    const char *source = km_kubeconfig_source(m->rt.config);
    if (!ns || !*ns)
        ns = getenv("POD_NAMESPACE");
    if ((!ns || !*ns) && source && strcmp(source, "in-cluster") == 0)
        ns = km_kubeconfig_namespace(m->rt.config);
    return ns && *ns ? ns : "kubemend-system";
}

/* This candidate: $POD_NAME_<random> in a pod, else <hostname>_<random>. */
static void lease_identity(char *buf, size_t n)
{
    const char *pod = getenv("POD_NAME");
    char rnd[64];
    km_lease_identity(rnd, sizeof(rnd));
    const char *us = strrchr(rnd, '_');
    if (pod && *pod)
        snprintf(buf, n, "%s%s", pod, us ? us : "");
    else
        snprintf(buf, n, "%s", rnd);
}

/* Leader election, or lead at once without it.  0, or an exit code (message printed). */
static int start_election(manager *m)
{
    if (!m->o->leader_elect) {
        atomic_store(&m->leading, 1);
        return 0;
    }
    char identity[128];
    const char *ns = lease_namespace(m);
    km_err e;
    km_err_clear(&e);
    lease_identity(identity, sizeof(identity));
    km_lease_config lc = {.ns = ns,
                          .name = m->o->lease_name,
                          .identity = identity,
                          .release_on_stop = 1,
                          .on_started_leading = on_started_leading,
                          .on_stopped_leading = on_stopped_leading,
                          .user = m};
    if (km_lease_start(m->rt.kube, &lc, &m->lease, &e) != KM_OK) {
        char buf[768];
        fprintf(stderr, "kubemend operator: %s\n", km_err_str(&e, buf, sizeof(buf)));
        return KM_EXIT_FAILED;
    }
    km_log_info("leader election", "namespace", ns, "lease", m->o->lease_name, "identity",
                identity);
    return 0;
}

/* Connects, makes the registry and the recorder, starts every runnable.  0 or an exit code. */
static int start_runnables(manager *m)
{
    km_err e;
    km_err_clear(&e);
    char buf[768];
    int rc = connect_client(m->o, &m->rt.config, &m->rt.kube);
    if (rc)
        return rc;
    if (km_metrics_new_default(&m->rt.metrics, &e) != KM_OK ||
        km_events_new(m->rt.kube, "kubemend", &m->rt.events, &e) != KM_OK) {
        fprintf(stderr, "kubemend operator: %s\n", km_err_str(&e, buf, sizeof(buf)));
        return KM_EXIT_FAILED;
    }
    km_kube_set_observer(m->rt.kube, km_metrics_observe_api, m->rt.metrics);
    for (size_t i = 0; i < g_nrunnables; i++) {
        if (g_runnables[i]->start(&m->rt, &m->self[i], &e) != KM_OK) {
            fprintf(stderr, "kubemend operator: %s: %s\n", g_runnables[i]->name,
                    km_err_str(&e, buf, sizeof(buf)));
            return KM_EXIT_FAILED;
        }
    }
    return 0;
}

/* Every runnable leads now.  0 or an exit code. */
static int lead(manager *m)
{
    km_err e;
    km_err_clear(&e);
    for (size_t i = 0; i < g_nrunnables; i++) {
        if (g_runnables[i]->lead && g_runnables[i]->lead(m->self[i], &e) != KM_OK) {
            km_log_error("cannot lead", "runnable", g_runnables[i]->name, "error", e.message);
            return KM_EXIT_FAILED;
        }
    }
    atomic_store(&m->led, 1);
    km_log_info("acting as leader: workers started");
    return 0;
}

/* Waits for the Lease's signals and the stop flag, turning at least every BEAT_S (liveness). */
static int wait_loop(manager *m)
{
    pthread_mutex_lock(&g_mu);
    while (!atomic_load(&g_stop)) {
        atomic_store(&m->beat, km_clock_mono());
        if (atomic_load(&m->leading) && !atomic_load(&m->led) && !atomic_load(&m->lost)) {
            pthread_mutex_unlock(&g_mu);
            int rc = lead(m);
            if (rc)
                return rc;
            pthread_mutex_lock(&g_mu);
            continue;
        }
        struct timespec ts = km_clock_deadline(CLOCK_REALTIME, BEAT_S);
        pthread_cond_timedwait(&g_cv, &g_mu, &ts);
    }
    pthread_mutex_unlock(&g_mu);
    if (atomic_load(&m->lost)) {
        km_log_error("leader election lost: exiting");
        return KM_EXIT_FAILED;
    }
    return 0;
}

static void shutdown_all(manager *m)
{
    km_log_info("operator stopping");
    atomic_store(&g_stop, 1);
    for (size_t i = g_nrunnables; i-- > 0;)
        if (m->self[i])
            g_runnables[i]->stop(m->self[i]); /* cancels and joins every writer first */
    km_lease_stop(m->lease); /* releases the Lease only after every writer stopped */
    km_http_stop(m->hm);
    km_http_stop(m->hh);
    km_events_free(m->rt.events);
    km_kube_free(m->rt.kube);
    km_metrics_free(m->rt.metrics);
    km_kubeconfig_free(m->rt.config);
    curl_global_cleanup();
}

int km_manager_run(const km_manager_opts *o)
{
    manager m;
    memset(&m, 0, sizeof(m));
    m.o = o;
    m.rt.stop = &g_stop;
    m.rt.workers = o->workers;
    atomic_store(&m.beat, km_clock_mono());
    process_start();
    int rc = start_runnables(&m);
    if (!rc)
        rc = start_http(&m, "--metrics-bind-address", o->metrics_addr, &m.hm);
    if (!rc && o->health_addr && (!o->metrics_addr || strcmp(o->health_addr, o->metrics_addr)))
        rc = start_http(&m, "--health-probe-bind-address", o->health_addr, &m.hh);
    if (!rc)
        rc = start_election(&m);
    if (!rc) {
        km_log_info("operator started", "version", o->version, "server",
                    km_kubeconfig_server(m.rt.config), "workers", KM_LOG_INT(o->workers));
        rc = wait_loop(&m);
    }
    shutdown_all(&m);
    return rc;
}
