/* pods.h — the pod restart step: restarts pods that use a non-default service-account token,
 * namespace by namespace (kube-system first), so they pick up tokens valid for the new key.
 *
 * Per namespace (order and pod selection: reconcilers/pods/podsel.h):
 *   1. list the namespace's pods page by page (fieldSelector spec.serviceAccountName!=default
 *      unless includeDefaultServiceAccount) and select them; whether a pod mounts a token comes
 *      from its own volumes (ServiceAccount admission already applied automount), the
 *      ServiceAccount is fetched (GET, cached per namespace) only for a pod whose spec has no
 *      volume information at all;
 *   2. resolve owners from the pod alone: Pod -> ReplicaSet -> Deployment by the deployment
 *      controller's naming rule (Deployment = RS name minus "-" + the pod's pod-template-hash),
 *      verified with the PATCH response of step 3 (the Deployment's selector must match the
 *      pod's labels); a ReplicaSet the rule does not cover or the response does not confirm
 *      (404, other selector) is resolved by GET of the ReplicaSet (cached per namespace);
 *      StatefulSet, DaemonSet = named in ownerReferences = rollout restart; other owners (Job,
 *      bare ReplicaSet, unknown kinds) = Eviction; no owner = listed in status.pods.manual +
 *      Warning Event NeedsManualRestart (deleted only with deleteOwnerlessPods);
 *   3. rollout restart: strategic-merge PATCH of spec.template.metadata.annotations
 *      ["kubectl.kubernetes.io/restartedAt"] = the recovery's startedAt by name (no list, no
 *      GET; idempotent: the same value again starts no new rollout), maxConcurrent workloads at
 *      a time, counted once per workload (current.restarted; a workload already there — a
 *      resumed step — is not patched again but GET for the readiness wait); after each batch
 *      (waitForReady) wait without polling on ONE cluster-wide watch per kind for the whole step
 *      (started lazily from the first patch response's resourceVersion, continued from the last
 *      one when the server ends it; 410 -> list limit=1 for a fresh resourceVersion + GET of the
 *      workloads still waited for); only events of waited-for workloads are judged, states
 *      older than the generation our patch produced do not count; until the batch is rolled out
 *      and ready or namespaceTimeoutSeconds passed (-> status.pods.stuck "ns/Kind/name" +
 *      Warning Event WorkloadStuck);
 *   4. evictions: POST pods/<name>/eviction (policy/v1, falling back to policy/v1beta1 on
 *      400/404), never retried by the client; 429 (PodDisruptionBudget) is retried with backoff
 *      up to evictionTimeoutSeconds, then reported (stuck "ns/Pod/name", Warning EvictionBlocked).
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
