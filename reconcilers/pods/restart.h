/* restart.h — what the pods step does to one namespace's plan (reconcilers/pods/owners.h):
 *
 *   rollout restart of a workload the plan proved and read: when its template already carries a
 *     restart marker at or after the rebuild time (km_podsel_restarted_since) it is not patched
 *     — only its readiness is awaited (status.pods.alreadyRestarted); else a strategic-merge PATCH
 *     of spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"] = the time of
 *     the restart (never before the rebuild time) with the listed metadata.resourceVersion as its
 *     precondition (the same object, unchanged since it was read: a replaced object has another
 *     resourceVersion).  409 -> GET and decide again (gone or replaced: skipped; marker now
 *     recent: done); maxConcurrent workloads at a time, each counted once
 *     (status.pods.current[].restarted); maxConcurrent is the GLOBAL budget of workloads restarting
 * at once across namespaces restarted in parallel (pace.h: a batch takes the slots it can).  With
 * waitForReady, after each batch: wait until it is rolled out and ready (km_podsel_workload_ready,
 * states at or after the generation the patch produced or the list showed) or
 * namespaceTimeoutSeconds passed (-> status.pods.stuck "ns/Kind/name" + Warning Event
 * WorkloadStuck) — on ONE cluster-wide watch per kind for the whole step (watch/wait.h).  The
 * workload owning kubemend's own pod is not touched here; eviction: POST pods/<name>/eviction
 * (policy/v1, falling back to policy/v1beta1 on 400/404) with the listed pod's uid as
 * deleteOptions.preconditions (a pod of the same name created since is not evicted: 409 -> GET:
 * gone or replaced = done); 429 (PodDisruptionBudget) is retried with backoff up to
 * evictionTimeoutSeconds, then reported (stuck "ns/Pod/name", Warning EvictionBlocked); ownerless
 * pod: listed in status.pods.manual + Warning Event NeedsManualRestart, deleted (uid precondition)
 * only with deleteOwnerlessPods. Transient failures (no answer, timeouts, 429, 5xx) of these reads
 * and guarded writes are retried with backoff until the namespace's deadline (km_pods_retry); the
 * guards make a retry of a write that did reach the server harmless.  Status is saved after every
 * restart / eviction / deletion.  A dry run decides, counts and reports everything as what would
 * happen and writes nothing. */
#ifndef KM_PODS_RESTART_H
#define KM_PODS_RESTART_H

#include <time.h>

#include "operator/base/backoff.h"
#include "operator/base/err.h"
#include "reconcilers/pods/owners.h"
#include "reconcilers/pods/pace.h"
#include "reconcilers/step/step.h"
#include "watch/wait.h"

/* kubemend's own workload (the one owning its pod), met in the namespace loop. */
typedef struct km_pods_self {
    int found;
    km_wl_kind kind;
    char ns[256], name[256], uid[64];
} km_pods_self;

/* The step's settings and what lasts across namespaces (one per namespace worker when they run
 * in parallel). */
typedef struct km_pods_restarter {
    km_step_ctx *ctx;   /* borrowed: the step's */
    km_kube *kube;      /* borrowed: the client of this worker (ctx->kube, or a clone) */
    km_pods_pace *pace; /* borrowed, NULL when serial: the status lock and the global budget */
    cJSON *cur;         /* borrowed: the namespace's entry in status.pods.current */
    time_t rebuilt_at;
    int dry_run, wait_ready, max_conc, delete_ownerless;
    long ns_timeout, evict_timeout;
    int eviction_v1beta1;       /* the server has no policy/v1 Eviction */
    int stuck;                  /* something got stuck in this run */
    km_wait *wait[KM_WL_KINDS]; /* readiness waits, made on first use */
    km_pods_self self;          /* kubemend's own workload, when met */
} km_pods_restarter;

/* Non-zero for a failure worth retrying: no answer (KM_ETRANSPORT), KM_ETIMEOUT, HTTP 429, 5xx. */
int km_pods_transient(km_status st, const km_err *e);

/* After a transient failure e: sleeps the backoff's next delay (at least the server's
 * Retry-After) and returns KM_OK to try again — or, when that sleep would pass the monotonic
 * deadline, KM_ETIMEOUT at once; KM_ECANCELED when the step is cancelled. */
km_status km_pods_retry(km_pods_restarter *rs, km_backoff *bo, const km_err *e, double deadline);

/* One attempt of a read (or guarded write) for km_pods_retried; arg is the caller's. */
typedef km_status (*km_pods_attempt_fn)(km_pods_restarter *rs, void *arg, km_err *err);

/* Calls fn until it succeeds, fails for good (not km_pods_transient) or a retry would pass the
 * monotonic deadline (km_pods_retry between attempts).  Failure: the last attempt's error,
 * KM_ECANCELED. */
km_status km_pods_retried(km_pods_restarter *rs, double deadline, km_pods_attempt_fn fn, void *arg,
                          km_err *err);

/* Restarts the plan's workloads in batches (waiting for each batch when wait_ready) until the
 * monotonic deadline (km_clock_mono); the self workload is recorded in rs->self, not restarted.
 * Failure: an API error that is not transient, or a transient one past the deadline (404 =
 * gone: skipped), KM_ECANCELED, KM_ENOMEM. */
km_status km_pods_restart(km_pods_restarter *rs, km_pods_plan *p, double deadline, km_err *err);

/* Evicts pod t of p's namespace.  Failure: a non-retryable API error, KM_ECANCELED. */
km_status km_pods_evict(km_pods_restarter *rs, const km_pods_plan *p, const km_pods_target *t,
                        km_err *err);

/* Handles an ownerless pod (listed for a human, or deleted with deleteOwnerlessPods) until the
 * monotonic deadline.  Failure: the DELETE's error, KM_ENOMEM, KM_ECANCELED. */
km_status km_pods_ownerless(km_pods_restarter *rs, const km_pods_plan *p, const km_pods_target *t,
                            double deadline, km_err *err);

/* Restarts kubemend's own workload (ns/kind/name, uid) now: GET, and the guarded PATCH unless its
 * marker is already at or after the rebuild time; no readiness wait (this process is what it
 * replaces).  *done = 1 when it was patched, 0 when it was already restarted.  Failure: the
 * GET's / PATCH's error (KM_ESTATE when the object was replaced: another uid). */
km_status km_pods_restart_self(km_step_ctx *ctx, time_t rebuilt_at, const km_pods_self *self,
                               int *done, km_err *err);

/* Stops the readiness watches.  Accepts a restarter that never waited. */
void km_pods_restarter_cleanup(km_pods_restarter *rs);

#endif
