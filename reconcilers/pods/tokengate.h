/* tokengate.h — the pods step's wait, per namespace, for the token Secrets its stale pods mount.
 *
 * The tokens step hands the wait for the tokens controller to the end of the recovery (step.h
 * settle), so the pods step starts while new tokens are still being written.  A pod restarted
 * before the token Secret it mounts holds a token again would start without one, so before a
 * namespace's workloads are restarted (and its pods evicted), the step waits until every token
 * Secret the namespace's stale pods mount is refilled.  Pods with projected service-account
 * tokens (the default since 1.22) mount no token Secret: their namespace does not wait.
 *
 *   wanted: every Secret a stale pod mounts (spec.volumes[].secret.secretName and projected
 *     volumes' secret sources), with the pod's ServiceAccount;
 *   ready, from one paged list of the namespace's token Secrets (fieldSelector
 *     type=kubernetes.io/service-account-token):
 *     - listed: ready when its data.token is not empty (regenerated: the tokens controller wrote
 *       a new one; never touched: it kept its own);
 *     - not listed, named "<serviceAccount>-token-*" (the legacy admission volume; mode Delete
 *       deleted it): ready once that ServiceAccount has a listed token Secret with a token
 *       (< 1.24 recreates one, which new pods then mount);
 *     - not listed otherwise: not a token Secret, nothing to wait for.
 *   The wait lists again every KM_PODS_GATE_POLL_S until all are ready, or none became ready
 *   for stall_s (then the restart goes ahead: a pod started early gets its token once the
 *   kubelet syncs the Secret volume; the caller reports it).  stall_s 0 looks once: with
 *   namespaces in parallel the step first defers a namespace that is not ready (its worker
 *   takes the next one).  After the others, the gates of all deferred namespaces are judged
 *   together from one cluster-wide list per poll (km_pods_gates_see_all), and each namespace
 *   goes on once its Secrets are refilled — the tokens controller does not refill in the order
 *   of the writes (after a PKI rebuild it first rewrites every token Secret's ca.crt; a Secret
 *   it passed before kubemend's write goes to the back of its queue).
 *
 * The collection and the judgement are pure (km_pods_gate_want_pod, km_pods_gate_see,
 * km_pods_gate_missing); km_pods_gate_wait does the lists.  One gate serves one namespace. */
#ifndef KM_PODS_TOKENGATE_H
#define KM_PODS_TOKENGATE_H

#include <stdatomic.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/base/strmap.h"
#include "operator/kube/kube.h"

#define KM_PODS_GATE_POLL_S 1.0

typedef struct km_pods_gate km_pods_gate;

/* A new gate with nothing wanted.  Caller frees with km_pods_gate_free; NULL when out of
 * memory. */
km_pods_gate *km_pods_gate_new(void);

/* Frees it.  Accepts NULL. */
void km_pods_gate_free(km_pods_gate *g);

/* Wants the Secrets pod (a stale pod, as listed or slimmed) mounts.  Failure: KM_ENOMEM (what
 * was added before stays). */
km_status km_pods_gate_want_pod(km_pods_gate *g, const cJSON *pod);

/* How many Secrets are wanted. */
size_t km_pods_gate_wants(const km_pods_gate *g);

/* Folds items (a page of the namespace's token Secrets) into the current round.  Failure:
 * KM_ENOMEM (the round must be started again: km_pods_gate_missing resets it). */
km_status km_pods_gate_see(km_pods_gate *g, const cJSON *items);

/* Folds one listed token Secret into the current round (as km_pods_gate_see).  Failure:
 * KM_ENOMEM (as km_pods_gate_see). */
km_status km_pods_gate_see_one(km_pods_gate *g, const cJSON *secret);

/* One round for the gates of several namespaces at once (gates: namespace -> km_pods_gate *,
 * borrowed): one paged cluster-wide list of token Secrets, each folded into the gate of its
 * namespace (Secrets of other namespaces skipped, no page kept).  Then km_pods_gate_missing
 * ends each gate's round.  Failure: the list's error or KM_ENOMEM, every gate's round reset. */
km_status km_pods_gates_see_all(km_kube *kube, km_strmap *gates, km_err *err);

/* Ends the round: how many wanted Secrets are not ready by what the round saw (see above);
 * first (may be NULL) receives the name of one of them ("" when none).  Resets the round. */
size_t km_pods_gate_missing(km_pods_gate *g, char *first, size_t n);

/* A wait's progress: the fewest wanted Secrets seen not ready so far, and since when. */
typedef struct km_pods_gate_progress {
    size_t best;
    double since;
} km_pods_gate_progress;

/* Starts the clock: nothing seen yet. */
void km_pods_gate_progress_start(km_pods_gate_progress *p);

/* After one poll whose list ended with st (e: its error).  A failure that is not transient is
 * returned: the wait ends with it (*stalled untouched).  A transient one is logged (ns, or the
 * whole cluster when NULL) and counts as no progress.  Otherwise missing (how many were not
 * ready) below every earlier poll's restarts the clock.  KM_OK: *stalled = 1 once stall_s passed
 * without progress. */
km_status km_pods_gate_progress_poll(km_pods_gate_progress *p, km_status st, const km_err *e,
                                     const char *ns, size_t missing, double stall_s, int *stalled);

/* Waits (see the file comment) on kube for namespace ns.  *missing receives how many were still
 * not ready when it stopped (0: all ready).  Failure: the list's error (transient ones are
 * retried at the next poll until the stall ends the wait), KM_ECANCELED when *cancel became
 * non-zero, KM_ENOMEM; *missing untouched. */
km_status km_pods_gate_wait(km_pods_gate *g, km_kube *kube, const char *ns, double stall_s,
                            const atomic_int *cancel, size_t *missing, char *first, size_t n,
                            km_err *err);

#endif
