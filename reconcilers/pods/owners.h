/* owners.h — the owner resolution of the pods step: one namespace's pods sorted into what
 * restarts them (reconcilers/pods/podsel.h decides which pods need a restart).
 *
 *   list the namespace's pods page by page (fieldSelector spec.serviceAccountName!=default unless
 *     includeDefaultServiceAccount), keeping slim copies; a pod's ServiceAccount is fetched (GET,
 *     cached per namespace) only when its spec has no volume information at all;
 *   Pod -> ReplicaSet -> Deployment by the deployment controller's naming rule (Deployment = RS
 *     name minus "-" + the pod's pod-template-hash): a guess, verified by the restart PATCH's
 *     response (km_pods_plan_verify: the Deployment's selector must match the pod's labels); a
 *     ReplicaSet the rule does not cover or the response does not confirm is resolved by a GET
 *     of the ReplicaSet (cached per namespace).  In a dry run the namespace's Deployments are
 *     listed once instead (nothing is patched, so nothing would verify a guess);
 *   StatefulSet, DaemonSet: named in ownerReferences -> rollout restart;
 *   other owners (Job, bare ReplicaSet, unknown kinds) -> eviction;
 *   no owner -> ownerless (a human restarts it, or deleteOwnerlessPods).
 * Everything here lives for one namespace (km_pods_plan_cleanup). */
#ifndef KM_PODS_OWNERS_H
#define KM_PODS_OWNERS_H

#include <stddef.h>

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

/* A list of names (pods), in the order they were added. */
typedef struct km_pods_names {
    char **v;
    size_t n, cap;
} km_pods_names;

typedef struct km_pods_guess km_pods_guess; /* a ReplicaSet assumed to be a Deployment's */

/* A workload to restart. */
typedef struct km_pods_workload {
    km_wl_kind kind;
    char *name;
    km_pods_guess *guesses; /* Deployments found by the naming rule: verify with the response */
} km_pods_workload;

/* One namespace's plan.  Fill the inputs, call km_pods_plan_make, km_pods_plan_cleanup after. */
typedef struct km_pods_plan {
    /* inputs (borrowed) */
    km_kube *kube;
    const char *ns;
    const char *started_at; /* the recovery's start: pods created later are new */
    int include_default;    /* spec.includeDefaultServiceAccount */
    int dry_run;
    /* the plan */
    km_pods_workload *workloads;
    size_t nworkloads, capworkloads; /* km_pods_plan_verify may add workloads */
    km_pods_names evict, ownerless;
    long skipped[KM_PODSEL_DELETING + 1];
    /* this namespace's caches */
    cJSON *pods;                    /* slim copies of the listed pods */
    km_strmap *index;               /* "Kind/name" -> workload index + 1 */
    km_strmap *rs_owner;            /* ReplicaSet -> its Deployment ("" = none) */
    km_strmap *sa;                  /* ServiceAccount -> object (cJSON null = missing) */
    km_strmap *listed[KM_WL_KINDS]; /* dry run: name -> slim workload; NULL until listed */
} km_pods_plan;

/* Lists the namespace's pods and sorts those that need a restart into workloads, evictions and
 * ownerless pods.  Failure: an API error (prefixed with what was read), KM_ENOMEM; the plan
 * then holds what was sorted so far (cleanup frees it). */
km_status km_pods_plan_make(km_pods_plan *p, km_err *err);

/* Checks the naming-rule guesses of workload i against deploy (the PATCH response; NULL when the
 * Deployment does not exist): a ReplicaSet whose pods deploy's selector does not match is
 * resolved from its own owner reference (GET) — another Deployment joins the workloads, no
 * Deployment sends its pods to the evictions.  Failure: the GET's error, KM_ENOMEM. */
km_status km_pods_plan_verify(km_pods_plan *p, size_t i, const cJSON *deploy, km_err *err);

/* Dry run: the namespace's workload of kind k called name from one list of that kind (listed on
 * first use), slim; *out NULL when it does not exist.  Failure: the list's error, KM_ENOMEM. */
km_status km_pods_plan_listed(km_pods_plan *p, km_wl_kind k, const char *name, const cJSON **out,
                              km_err *err);

/* A slim copy of a workload for judging readiness and the restart marker: name, namespace,
 * generation, spec.replicas, spec.selector, the restart marker and status.  NULL when out of
 * memory. */
cJSON *km_pods_slim_workload(const cJSON *obj);

/* Frees the plan's contents (not p).  Accepts an empty plan. */
void km_pods_plan_cleanup(km_pods_plan *p);

#endif
