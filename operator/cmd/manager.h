/* manager.h — the Manager (controller-runtime's, in C): it owns what every controller shares —
 * the Kubernetes client, the metrics registry, the Event recorder, the probe and metrics servers
 * and the leader-election Lease — and starts the runnables through one interface.
 *
 * The Manager knows no resource.  What runs is registered by the modules above it
 * (reconcilers/): a runnable (km_runnable, `kubemend operator`) or the one job (km_job,
 * `kubemend run --once`), each with KM_REGISTER_RUNNABLE / KM_REGISTER_JOB next to its code.
 * The registration runs before main (a constructor), and the binary links every module, so
 * adding a controller needs no edit here or in main.c.
 *
 * `kubemend operator` (km_manager_run):
 *   connect -> metrics, events -> start every runnable (watches and caches: no lease needed) ->
 *   /metrics, /healthz, /readyz -> leader election (or lead at once) -> on the Lease's
 *   started-leading signal: lead() every runnable (workers, writes) -> wait for SIGTERM/SIGINT
 *   or the lost Lease -> stop every runnable (writers first), release the Lease, stop the
 *   servers.  /healthz fails when the API server rejects our credentials (after a PKI rebuild a
 *   restart mounts a fresh token) or the Manager's loop stalls; /readyz needs every runnable
 *   ready and the leader state known.
 * `kubemend run --once` (km_manager_run_job): prepare the job (its options are checked before
 *   any connection), connect, run it, return its exit code; a signal cancels it. */
#ifndef KM_MANAGER_H
#define KM_MANAGER_H

#include <stdatomic.h>
#include <stddef.h>

#include "operator/base/err.h"
#include "operator/kube/events.h"
#include "operator/kube/kube.h"
#include "operator/kube/kubeconfig.h"
#include "operator/serve/families.h"

#define KM_EXIT_FAILED 1       /* a step or the process failed */
#define KM_EXIT_USAGE 2        /* invalid flags or files */
#define KM_EXIT_NOT_VERIFIED 3 /* run --once: every step ran, the cluster is not (shown) healed */

/* What the Manager lends every runnable and job; valid until it is stopped. */
typedef struct km_runtime {
    km_kube *kube;          /* the process's client: clone it for each thread */
    km_kubeconfig *config;  /* where kube came from (CA bundle, namespace) */
    km_metrics *metrics;    /* the default registry; NULL in run --once */
    km_events *events;      /* NULL in run --once: Events go to the log */
    const atomic_int *stop; /* non-zero once the process stops (signal, lost lease) */
    int workers;            /* --workers */
} km_runtime;

/* A controller of `kubemend operator`.  Every function runs on the Manager's thread except
 * ready and collect (the HTTP server's, thread-safe). */
typedef struct km_runnable {
    const char *name;
    /* Starts what needs no lease (watches, caches).  *self is the runnable's state. */
    km_status (*start)(const km_runtime *rt, void **self, km_err *err);
    /* This process leads now: start what writes (workers).  Called once. */
    km_status (*lead)(void *self, km_err *err);
    /* Non-zero when ready (caches synced); otherwise a short reason into reason (size n). */
    int (*ready)(void *self, char *reason, size_t n);
    /* Samples gauges before /metrics is rendered.  May be NULL. */
    void (*collect)(void *self);
    /* Stops everything (writers first; progress is in status) and frees self. */
    void (*stop)(void *self);
} km_runnable;

/* The options of `kubemend run --once`, as given on the command line. */
typedef struct km_job_opts {
    int dry_run;       /* --dry-run */
    const char *file;  /* -f: a ClusterRecovery file, NULL = defaults */
    const char *steps; /* --steps list, NULL = all */
    long csr_window;   /* --csr-window seconds, 0 = none */
    int json;          /* -o json */
    /* appended */
    const char *rebuild_time; /* --rebuild-time (RFC 3339), NULL = spec / derived */
    const char *job;          /* the registered job's name; NULL = "run --once" */
    const char *out_file;     /* keys recover -o: where the recovered PEM goes */
    const char *ns;           /* keys: the snapshot's namespace, NULL = kubemend-system */
} km_job_opts;

/* A job: `kubemend run --once`, `kubemend keys recover|snapshot` (picked by name). */
typedef struct km_job {
    const char *name;
    /* Checks the options before any connection.  Failure: a usage error (exit 2; err says
     * what is wrong). */
    km_status (*prepare)(const km_job_opts *o, void **self, km_err *err);
    /* Runs it to its end; returns the exit code (0, KM_EXIT_FAILED, KM_EXIT_USAGE,
     * KM_EXIT_NOT_VERIFIED). */
    int (*run)(void *self, const km_runtime *rt);
    /* Asks a running job to stop soon (called from the signal thread). */
    void (*cancel)(void *self);
    void (*free)(void *self);
} km_job;

/* Registration (from constructors, before main): the Manager keeps the pointers. */
void km_manager_register(const km_runnable *r);
void km_manager_register_job(const km_job *j);

#define KM_REGISTER_RUNNABLE(def)                                                                  \
    __attribute__((constructor)) static void km_register_runnable_##def(void)                      \
    {                                                                                              \
        km_manager_register(&def);                                                                 \
    }
#define KM_REGISTER_JOB(def)                                                                       \
    __attribute__((constructor)) static void km_register_job_##def(void)                           \
    {                                                                                              \
        km_manager_register_job(&def);                                                             \
    }

/* How the Manager connects and serves (from the command line). */
typedef struct km_manager_opts {
    const char *kubeconfig;   /* NULL = $KUBECONFIG, in-cluster, ~/.kube/config */
    const char *context;      /* NULL = current */
    km_kube_opts client;      /* qps, burst ... */
    const char *ns;           /* Lease namespace; NULL = $POD_NAMESPACE / in-cluster / default */
    const char *lease_name;   /* Lease name */
    int leader_elect;         /* 0 = lead at once */
    const char *metrics_addr; /* "0" or NULL = off */
    const char *health_addr;  /* "0" or NULL = off; equal to metrics_addr = one server */
    int workers;
    const char *version;
} km_manager_opts;

/* Runs `kubemend operator` until a signal or a lost Lease.  Returns the exit code. */
int km_manager_run(const km_manager_opts *o);

/* Runs the registered job named jo->job (NULL = "run --once").  Returns the exit code. */
int km_manager_run_job(const km_manager_opts *o, const km_job_opts *jo);

#endif
