/* podsel.h — the pure rules of the pod restart step (no I/O): which pods are stale (need a
 * restart), what proves which object owns them, in which order namespaces are visited, when a
 * workload counts as restarted since the PKI rebuild and when as rolled out.
 * reconcilers/pods/{owners,restart,pods}.c do the API calls around them.
 *
 * Stale: a pod that mounts a service-account token and was created before the PKI rebuild
 * (km_step_ctx.rebuilt_at): its token was signed with the old key.  Done: a workload whose pod
 * template carries a restart marker (kubectl.kubernetes.io/restartedAt or
 * kubemend.io/restartedAt) at or after the rebuild time was restarted since, by kubemend or a
 * human, and is not restarted again — so any number of runs restart each workload at most
 * once, without local state. */
#ifndef KM_PODSEL_H
#define KM_PODSEL_H

#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"

#define KM_RESTARTED_AT_ANNOTATION "kubectl.kubernetes.io/restartedAt" /* kubemend writes it */
#define KM_KUBEMEND_RESTARTED_AT_ANNOTATION "kubemend.io/restartedAt"  /* read as well */
#define KM_MIRROR_ANNOTATION "kubernetes.io/config.mirror"

/* Why a pod is (not) restarted. */
typedef enum km_podsel_reason {
    KM_PODSEL_RESTART = 0, /* uses a non-default SA token: restart it */
    KM_PODSEL_DEFAULT_SA,  /* spec.serviceAccountName is "default"/empty (option off) */
    KM_PODSEL_NO_TOKEN,    /* automount off on pod (or SA) and no token volume */
    KM_PODSEL_MIRROR,      /* static pod mirror (annotation kubernetes.io/config.mirror) */
    KM_PODSEL_FINISHED,    /* status.phase Succeeded or Failed */
    KM_PODSEL_NEW,         /* created at or after the PKI rebuild: its token is current */
    KM_PODSEL_DELETING,    /* metadata.deletionTimestamp set */
} km_podsel_reason;

/* "restart", "defaultServiceAccount", "noToken", "mirror", "finished", "createdAfterRebuild",
 * "deleting". */
const char *km_podsel_reason_str(km_podsel_reason r);

#define KM_SA_MOUNT_PATH "/var/run/secrets/kubernetes.io/serviceaccount"

/* Decides one pod.  sa is the pod's ServiceAccount object, consulted only when the pod's spec
 * cannot tell (km_podsel_token_from_spec() < 0; NULL = unknown or missing: its
 * automountServiceAccountToken then counts as unset = true).  rebuilt_at is the PKI rebuild time
 * (<= 0: no pod is "new"); "new" means creationTimestamp >= rebuilt_at (both in whole seconds: a
 * pod created in the rebuild's own second counts as new — the old control plane is down by then,
 * and the new one starts seconds after its CA was made); a missing or malformed
 * creationTimestamp is not new.  Rules in order: deleting, mirror, finished, new, default SA,
 * token. */
km_podsel_reason km_podsel_pod(const cJSON *pod, const cJSON *sa, time_t rebuilt_at,
                               int include_default_sa);

/* What the pod's own spec says about a service-account token (ServiceAccount admission already
 * applied automount when the pod was created):
 *    1  mounted: a projected volume with a serviceAccountToken source, a Secret volume named
 *       "<serviceAccountName>-token-*" (the legacy admission volume), or a container /
 *       initContainer volumeMount at KM_SA_MOUNT_PATH backed by a Secret volume (or by a volume
 *       the spec does not list); the pod field automountServiceAccountToken: true without any
 *       volume information
 *    0  not mounted: automountServiceAccountToken: false on the pod, or the spec has volume
 *       information (volumes or volumeMounts) and none of the above (an emptyDir / configMap
 *       mounted at KM_SA_MOUNT_PATH shadows the token)
 *   -1  cannot tell: no volumes and no volumeMounts at all (e.g. a stripped spec); the
 *       ServiceAccount's automountServiceAccountToken decides. */
int km_podsel_token_from_spec(const cJSON *pod);

/* Non-zero when the pod mounts a service-account token: km_podsel_token_from_spec(), and when
 * that cannot tell, the SA's automountServiceAccountToken (sa NULL or field unset: mounted). */
int km_podsel_mounts_token(const cJSON *pod, const cJSON *sa);

/* Non-zero when km_podsel_pod()'s answer for this pod depends on its ServiceAccount (every other
 * rule lets it through and the spec cannot tell about the token): only then is the SA fetched. */
int km_podsel_needs_sa(const cJSON *pod, time_t rebuilt_at, int include_default_sa);

/* The object's controller reference (ownerReferences entry with controller: true), or NULL.  A
 * reference without controller: true proves nothing about who recreates the object. */
const cJSON *km_podsel_controller(const cJSON *obj);

/* What restarts a stale pod, from its controller reference alone. */
typedef enum km_podsel_route {
    KM_ROUTE_OWNERLESS = 0, /* no controller: a human restarts it (or deleteOwnerlessPods) */
    KM_ROUTE_REPLICASET,    /* a ReplicaSet: its own controller reference decides */
    KM_ROUTE_STATEFULSET,   /* rollout restart of that StatefulSet */
    KM_ROUTE_DAEMONSET,     /* rollout restart of that DaemonSet */
    KM_ROUTE_EVICT,         /* another controller (Job, ...): evict the pod, it recreates it */
} km_podsel_route;

/* The route of obj (a pod) by its controller's kind and API group (apps, or extensions for
 * ReplicaSet/DaemonSet objects written long ago). */
km_podsel_route km_podsel_route_of(const cJSON *obj);

/* The Deployment that a ReplicaSet's controller reference proves owns it (kind Deployment of
 * group apps/extensions, with a name and uid), or NULL: a standalone ReplicaSet, whose pods are
 * evicted. */
const cJSON *km_podsel_rs_deployment(const cJSON *rs);

/* Orders namespaces for the step.  names: array of namespace names (strings; already filtered
 * by the namespace selector); pods_spec: the step's spec (namespaces, includeNamespaces,
 * excludeNamespaces).  Result: kube-system first (when present and allowed), then
 * spec.namespaces in their order (present and allowed ones), then the rest alphabetically;
 * excluded ones and (with a non-empty include list) ones not included are dropped; no
 * duplicates.  On success *out is a new array of strings the caller frees with cJSON_Delete;
 * KM_ENOMEM leaves *out untouched. */
km_status km_podsel_order_namespaces(const cJSON *names, const cJSON *pods_spec, cJSON **out);

/* Renders a metav1.LabelSelector (matchLabels, matchExpressions with In/NotIn/Exists/
 * DoesNotExist) as a labelSelector query string ("a=b,c in (x,y),!d").  NULL or empty selector
 * -> "".  On success *out is malloc'ed (caller frees); KM_EINVAL (unknown operator, bad values;
 * err says which) or KM_ENOMEM leave *out untouched. */
km_status km_podsel_label_selector(const cJSON *selector, char **out, km_err *err);

/* The workload's restart marker: the later of spec.template.metadata.annotations
 * [kubectl.kubernetes.io/restartedAt] and [kubemend.io/restartedAt] (RFC 3339, any offset);
 * 0 when neither parses. */
time_t km_podsel_marker(const cJSON *workload);

/* Non-zero when the workload carries a restart marker at or after rebuilt_at (> 0): restarted
 * since the rebuild, not to be restarted again. */
int km_podsel_restarted_since(const cJSON *workload, time_t rebuilt_at);

/* The marker a restart writes: now, but never before rebuilt_at (a clock behind the control
 * plane's must not write a marker that a later run would take for "before the rebuild"). */
time_t km_podsel_marker_time(time_t now, time_t rebuilt_at);

/* Non-zero when a Deployment / StatefulSet / DaemonSet (kind) has rolled out and is ready:
 *   Deployment: observedGeneration >= generation, updatedReplicas, availableReplicas and
 *               status.replicas all == spec.replicas (default 1; no old replicas left)
 *   StatefulSet: observedGeneration >= generation, (updateRevision == currentRevision or
 *               updatedReplicas == spec.replicas) and readyReplicas == spec.replicas
 *   DaemonSet:  observedGeneration >= generation, updatedNumberScheduled and numberAvailable
 *               == desiredNumberScheduled
 * Unknown kinds: 1. */
int km_podsel_workload_ready(const char *kind, const cJSON *obj);

#endif
