/* owners.h — the owner resolution of the pods step: one namespace's stale pods sorted into what
 * restarts them, every target proven from what was read (reconcilers/pods/podsel.h says which
 * pods are stale and what a controller reference means).
 *
 *   list the namespace's pods page by page (fieldSelector spec.serviceAccountName!=default unless
 *     includeDefaultServiceAccount), keeping slim copies; a pod's ServiceAccount is fetched (GET,
 *     cached per namespace) only when its spec has no volume information at all;
 *   a stale pod's controller reference (kind, name, uid) decides:
 *     ReplicaSet  -> ONE paged list of the namespace's ReplicaSets, made only when such pods
 *                    exist: the ReplicaSet with that uid; its controller reference proves the
 *                    Deployment (name, uid); a ReplicaSet without one (standalone) or no longer
 *                    there: its stale pods are evicted;
 *     StatefulSet, DaemonSet -> that workload (the pod's reference proves it);
 *     another controller (Job, ...) -> eviction of the pod;  none -> ownerless;
 *   the workloads to restart: one paged list per kind that has some, matched by uid — the
 *     restart marker, resourceVersion (the restart's precondition), generation and status; a
 *     workload gone, being deleted or replaced by another of its name is dropped (its pods' owner
 *     is gone: the garbage collector deletes them).
 * kubemend's own pod (p->self_pod): the workload owning it is marked `self` (the step restarts it
 * last, or not at all).  Everything here lives for one namespace (km_pods_plan_cleanup). */
#ifndef KM_PODS_OWNERS_H
#define KM_PODS_OWNERS_H

#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/base/strmap.h"
#include "operator/kube/kube.h"
#include "reconcilers/pods/podsel.h"

/* The workload kinds a rollout restart applies to. */
typedef enum km_wl_kind {
    KM_WL_DEPLOYMENT = 0,
    KM_WL_STATEFULSET,
    KM_WL_DAEMONSET,
    KM_WL_KINDS
} km_wl_kind;

/* "Deployment", "StatefulSet", "DaemonSet". */
const char *km_wl_name(km_wl_kind k);

/* "deployments", "statefulsets", "daemonsets". */
const char *km_wl_plural(km_wl_kind k);

/* A pod to evict or delete: name and uid (the write's precondition). */
typedef struct km_pods_target {
    char *name, *uid;
} km_pods_target;

/* Pods, in the order they were added. */
typedef struct km_pods_targets {
    km_pods_target *v;
    size_t n, cap;
} km_pods_targets;

/* A workload to restart. */
typedef struct km_pods_workload {
    km_wl_kind kind;
    char *name;
    char *uid;  /* proven by a stale pod's or its ReplicaSet's controller reference */
    cJSON *obj; /* slim copy from the kind's list (km_pods_slim_workload); NULL = gone */
    int self;   /* owns kubemend's own pod */
} km_pods_workload;

/* One namespace's plan.  Fill the inputs, call km_pods_plan_make, km_pods_plan_cleanup after. */
typedef struct km_pods_plan {
    /* inputs (borrowed) */
    km_kube *kube;
    const char *ns;
    time_t rebuilt_at;    /* pods created before it are stale (podsel.h) */
    int include_default;  /* spec.includeDefaultServiceAccount */
    const char *self_pod; /* kubemend's own pod when it runs in ns (POD_NAME), else NULL */
    /* the plan */
    km_pods_workload *workloads;
    size_t nworkloads, capworkloads;
    km_pods_targets evict, ownerless;
    long skipped[KM_PODSEL_DELETING + 1];
    long gone;  /* workloads dropped: gone, being deleted or replaced since the pods were listed */
    long reads; /* lists made to prove owners and read workloads (ReplicaSets, workload kinds) */
    /* this namespace's caches */
    cJSON *pods;      /* slim copies of the listed pods */
    km_strmap *index; /* "Kind/name" -> workload index + 1 */
    km_strmap *sa;    /* ServiceAccount -> object (cJSON null = missing) */
} km_pods_plan;

/* Lists the namespace's pods, sorts the stale ones and reads what proves their owners and the
 * workloads' state (see above).  Failure: an API error (prefixed with what was read), KM_ENOMEM;
 * the plan then holds what was sorted so far (cleanup frees it; make it again to retry). */
km_status km_pods_plan_make(km_pods_plan *p, km_err *err);

/* A slim copy of a workload for the restart decision and the readiness wait: metadata (name,
 * uid, resourceVersion, generation, deletionTimestamp), spec.replicas, spec.selector, the restart
 * markers of the template, status.  NULL when out of memory. */
cJSON *km_pods_slim_workload(const cJSON *obj);

/* Frees the plan's contents (not p) and empties it.  Accepts an empty plan. */
void km_pods_plan_cleanup(km_pods_plan *p);

#endif
