/* retire.h — reconcilers/bridge: when the bridge (an old service-account key handed back to
 * kube-apiserver) can go.
 *
 * Nothing depends on the old key any more when no token Secret holds a token of a key other than
 * the signing key, and every pod that mounts a service-account token started at or after the PKI
 * rebuild (its token was issued under the new key).  The ClusterRecovery's condition
 * BridgeRetirable says so after the steps ran, while the server is bridged (its JWKS lists more
 * than one key); it is not set on a cluster without a bridge. */
#ifndef KM_BRIDGE_RETIRE_H
#define KM_BRIDGE_RETIRE_H

#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

#define KM_COND_BRIDGE_RETIRABLE "BridgeRetirable"
#define KM_BRIDGE_RETIRED "BridgeRetired" /* its reason once the server trusts one key again */

/* The seconds between two checks of a completed recovery whose bridge is still in place. */
#define KM_BRIDGE_RECHECK_S 60.0

typedef struct km_bridge_retire {
    int bridged;            /* the server trusts more than one key */
    char signing_kid[96];   /* the key new tokens are signed with ("" = unknown) */
    long old_secrets;       /* token Secrets holding a token of another key */
    long old_pods;          /* pods mounting a token, started before the rebuild */
    char first_secret[800]; /* the first 3 of them ("ns/name, ..."), "" = none */
    char first_pod[800];
} km_bridge_retire;

/* Pure: whether a pod (a Pod object) still depends on the old key: it mounts a service-account
 * token (reconcilers/pods/podsel.h; sa, its ServiceAccount or NULL, decides when the spec cannot
 * tell) and started (status.startTime, else creationTimestamp)
 * before rebuilt_at (> 0).  A finished pod (Succeeded/Failed) and a static pod's mirror do not. */
int km_bridge_pod_depends(const cJSON *pod, const cJSON *sa, time_t rebuilt_at);

/* Reads what still depends on the old key (token Secrets and pods, page by page) into *out.
 * rebuilt_at 0 = unknown: every pod with a token counts.  Not bridged (or the signing key unknown):
 * out->bridged 0 and nothing is listed.  Failure: list errors, KM_ENOMEM; *out partly filled. */
km_status km_bridge_retire_check(km_kube *kube, time_t rebuilt_at, km_bridge_retire *out,
                                 km_err *err);

/* Sets the condition BridgeRetirable in status (a ClusterRecovery status, whose rebuild.time
 * gives the rebuild) from the cluster, when the server is bridged; with the exact manifest change
 * when True.  Once set, a server no longer bridged turns it True/BridgeRetired.  Read errors set
 * it Unknown.  Returns -1 on allocation failure, else 0. */
int km_bridge_retire_condition(km_kube *kube, cJSON *status, long long generation);

/* Pure: 1 while status says the server is still bridged (BridgeRetirable set, not
 * BridgeRetired) — the cluster is then not healed: the old key is still trusted. */
int km_bridge_active(const cJSON *status);

#endif
