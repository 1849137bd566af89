/* pods.h — reconcilers/pods: the pod restart step.  Stale pods — they mount a service-account
 * token and were created before the PKI rebuild (km_step_ctx.rebuilt_at: derived from the
 * cluster's CA by reconcilers/recovery/rebuild.h, or spec.rebuildTime / --rebuild-time) — are
 * restarted, namespace by namespace (kube-system first), so they pick up tokens valid for the new
 * key.  Without a rebuild time the step fails naming the field to set; it never guesses.  The
 * folder, in reading order:
 *   pods.h     the step: namespaces in order (kube-system alone, then parallelNamespaces at once),
 *              progress and resume, kubemend's own workload last
 *              (this file);
 *   owners.h   one namespace's stale pods sorted into workloads to restart, pods to evict,
 *              ownerless pods — every target proven from what was read (controller references,
 *              one ReplicaSet list per namespace that needs it, one list per workload kind);
 *   restart.h  guarded rollout restarts (resourceVersion precondition, re-read on 409), readiness
 *              on one watch per kind (watch/wait.h), evictions (uid precondition, PDBs
 *              respected), ownerless pods, the retries of transient faults;
 *   pace.h     what namespaces restarted in parallel share: the status lock, the global budget
 *              of workloads restarting at once (maxConcurrent);
 *   tokengate.h before a namespace's restarts: the wait until the token Secrets its stale pods
 *              mount are refilled (the tokens step's wait for the tokens controller runs at the
 *              end of the recovery, so the two overlap); in parallel, a namespace not refilled
 *              yet is deferred until the others are done;
 *   podsel.h   the pure rules: which pod is stale, what proves an owner, namespace order, the
 *              restart marker at/after the rebuild, readiness.
 *
 * Idempotent by the rebuild, not by the run: a workload whose template carries a restart marker
 * at or after the rebuild time is done (only its readiness is awaited), so any run after any
 * crash, any number of times, restarts each workload at most once — with or without status.
 * status.pods is saved after every workload restart / eviction and after each namespace:
 * namespacesTotal, namespacesDone, currentNamespace, done [ns], restarted, alreadyRestarted,
 * evicted, deleted, manual, stuck, current [{namespace, restarted ["Kind/name"]}] (the namespaces
 * in progress) (a resumed step skips done namespaces and counts a workload once), self {workload,
 * uid, action, message}. kubemend's own workload (the one owning the pod POD_NAMESPACE/POD_NAME,
 * the Deployment's downward-API env) is skipped in the loop: not restarted at all when kubemend's
 * own token is proven valid (its credentials are its pod's in-cluster token and the server accepts
 * them), else restarted by the step's `last` hook once the recovery's status is final (action
 * RestartLast -> Restarted). Dry run: everything is read and decided, counted and reported as what
 * would happen; nothing is written and nothing is waited for. */
#ifndef KM_PODS_H
#define KM_PODS_H

#include "operator/base/err.h"
#include "reconcilers/step/step.h"

/* The step; its run (or resume):  KM_OK when every namespace was handled (condition True /
 * PodsRestarted, or False / WorkloadsStuck when something got stuck).  Failure: KM_ESTATE when
 * the rebuild time is unknown (the message names spec.rebuildTime / --rebuild-time), an API error
 * that is not transient or outlasted the namespace's deadline (the step resumes from status when
 * re-run), KM_ECANCELED when ctx->cancel was set, KM_EINVAL for a bad namespaceSelector. */
extern const km_step_def km_pods_def;

#endif
