/* notready.h — the pure rules of NotReady nodes and taint-based eviction.  No I/O, no clock.
 *
 * While the workers re-join one by one after a PKI rebuild they are NotReady, and the
 * controller-manager's node lifecycle controller taints them NoExecute
 * (node.kubernetes.io/not-ready or node.kubernetes.io/unreachable, with timeAdded).  Its taint
 * manager then evicts every pod of the node when the pod's toleration of that taint runs out:
 * at timeAdded + the smallest tolerationSeconds of the pod's matching tolerations; a matching
 * toleration without tolerationSeconds tolerates it for ever; a pod with no matching toleration
 * goes at once.  The DefaultTolerationSeconds admission plugin gives every pod 300 s for both
 * keys unless it says otherwise (DaemonSet pods tolerate them for ever). */
#ifndef KM_NOTREADY_H
#define KM_NOTREADY_H

#include <time.h>

#include <cjson/cJSON.h>

#define KM_NOTREADY_TAINT "node.kubernetes.io/not-ready"
#define KM_UNREACHABLE_TAINT "node.kubernetes.io/unreachable"
#define KM_NOTREADY_DEFAULT_SECONDS 300 /* DefaultTolerationSeconds */

/* 1 when node is not Ready: its Ready condition is False or Unknown, or missing.  *since (may be
 * NULL) = that condition's lastTransitionTime (0 when missing or unparsable). */
int km_notready_node(const cJSON *node, time_t *since);

/* The key of node's NoExecute not-ready/unreachable taint (static string), or NULL when it has
 * none yet.  *added (may be NULL) = its timeAdded (0 when missing or unparsable). */
const char *km_notready_taint(const cJSON *node, time_t *added);

/* How long pod tolerates a NoExecute taint with this key (and no value): -1 for ever, else the
 * seconds (0 = evicted at once: no matching toleration, or tolerationSeconds <= 0).  Toleration
 * matching as Kubernetes does: effect empty or NoExecute; key equal (operator Equal with an empty
 * value, or Exists), or an empty key with operator Exists. */
long km_notready_tolerated(const cJSON *pod, const char *taint_key);

/* Seconds from now until an eviction at base + tolerated (tolerated as km_notready_tolerated;
 * base 0 = unknown, counted from now), never below 0; -1 when tolerated is -1 (never). */
long km_notready_countdown(time_t base, long tolerated, time_t now);

#endif
