/* restart.h — what the pods step does to one namespace's plan (reconcilers/pods/owners.h):
 *
 *   rollout restart: strategic-merge PATCH of spec.template.metadata.annotations
 *     ["kubectl.kubernetes.io/restartedAt"] = the recovery's startedAt, by name (no list, no
 *     GET; idempotent: the same value again starts no new rollout), maxConcurrent workloads at a
 *     time, each counted once (status.pods.current.restarted; a workload already there — a
 *     resumed step — is not patched again but read for the readiness wait).  With waitForReady,
 *     after each batch: wait until it is rolled out and ready (km_podsel_workload_ready, states
 *     at or after the generation the patch produced) or namespaceTimeoutSeconds passed (->
 *     status.pods.stuck "ns/Kind/name" + Warning Event WorkloadStuck) — on ONE cluster-wide watch
 *     per kind for the whole step (watch/wait.h), started from the first patch response;
 *   eviction: POST pods/<name>/eviction (policy/v1, falling back to policy/v1beta1 on 400/404),
 *     never retried by the client; 429 (PodDisruptionBudget) is retried with backoff up to
 *     evictionTimeoutSeconds, then reported (stuck "ns/Pod/name", Warning EvictionBlocked);
 *   ownerless pod: listed in status.pods.manual + Warning Event NeedsManualRestart, deleted only
 *     with deleteOwnerlessPods.
 * Status is saved after every restart / eviction / deletion.  A dry run decides, counts and
 * reports everything as what would happen and writes nothing. */
#ifndef KM_PODS_RESTART_H
#define KM_PODS_RESTART_H

#include "operator/base/err.h"
#include "reconcilers/pods/owners.h"
#include "reconcilers/step/step.h"
#include "watch/wait.h"

/* The step's settings and what lasts across namespaces. */
typedef struct km_pods_restarter {
    km_step_ctx *ctx;       /* borrowed: the step's */
    const char *started_at; /* the restart marker's value */
    int dry_run, wait_ready, max_conc, delete_ownerless;
    long ns_timeout, evict_timeout;
    int eviction_v1beta1;       /* the server has no policy/v1 Eviction */
    int stuck;                  /* something got stuck in this run */
    km_wait *wait[KM_WL_KINDS]; /* readiness waits, made on first use */
} km_pods_restarter;

/* Restarts the plan's workloads in batches (waiting for each batch when wait_ready) until the
 * monotonic deadline (km_clock_mono).  Failure: an API error (404 = gone: skipped), KM_ECANCELED,
 * KM_ENOMEM. */
km_status km_pods_restart(km_pods_restarter *rs, km_pods_plan *p, double deadline, km_err *err);

/* Evicts pod of p's namespace.  Failure: a non-retryable API error, KM_ECANCELED. */
km_status km_pods_evict(km_pods_restarter *rs, const km_pods_plan *p, const char *pod, km_err *err);

/* Handles an ownerless pod (listed for a human, or deleted with deleteOwnerlessPods).  Failure:
 * the DELETE's error, KM_ENOMEM. */
km_status km_pods_ownerless(km_pods_restarter *rs, const km_pods_plan *p, const char *pod,
                            km_err *err);

/* Stops the readiness watches.  Accepts a restarter that never waited. */
void km_pods_restarter_cleanup(km_pods_restarter *rs);

#endif
