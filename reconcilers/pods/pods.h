/* pods.h — reconcilers/pods: the pod restart step.  Pods that use a non-default service-account
 * token are restarted, namespace by namespace (kube-system first), so they pick up tokens valid
 * for the new key.  The folder, in reading order:
 *   pods.h     the step: namespaces in order, progress and resume (this file);
 *   owners.h   one namespace's pods sorted into workloads to restart, pods to evict, ownerless
 *              pods (the owner resolution);
 *   restart.h  rollout restarts with a readiness wait on one watch per kind (watch/wait.h),
 *              evictions (PodDisruptionBudgets respected), ownerless pods;
 *   podsel.h   the pure rules: which pod needs a restart, namespace order, readiness.
 *
 * status.pods is saved after every workload restart / eviction and after each namespace:
 * namespacesTotal, namespacesDone, currentNamespace, done [ns], restarted, evicted, deleted,
 * manual, stuck, current {namespace, restarted ["Kind/name"]} — a resumed step skips done
 * namespaces and never patches a workload of current.restarted again.
 * Dry run: everything is decided, counted and reported as what would happen; nothing is written
 * and nothing is waited for; owners and restart markers come from one list per kind and namespace
 * (Deployments, and StatefulSets / DaemonSets when pods of theirs need a restart). */
#ifndef KM_PODS_H
#define KM_PODS_H

#include "operator/base/err.h"
#include "reconcilers/step/step.h"

/* The step; its run (or resume):  KM_OK when every namespace was handled (condition True /
 * PodsRestarted, or False / WorkloadsStuck when something got stuck).  Failure: an API error
 * (the step resumes from status when re-run), KM_ECANCELED when ctx->cancel was set, KM_EINVAL
 * for a bad namespaceSelector. */
extern const km_step_def km_pods_def;

#endif
