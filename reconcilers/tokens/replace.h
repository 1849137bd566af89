/* replace.h — reconcilers/tokens: while the API server still trusts the old key (the bridge,
 * reconcilers/bridge/kid.h), a stale token Secret that its ServiceAccount lists is replaced, not
 * regenerated in place.
 *
 * Why: kube-apiserver checks a legacy token against its Secret's current data.token ("Token does
 * not match server's copy"), so regenerating a Secret in place gives every running pod that
 * mounted it 401 until its client re-reads the file or the pod restarts.  While bridged the old
 * token is still valid, so instead:
 *   1. a replacement token Secret "<name>-kubemend" (type kubernetes.io/service-account-token,
 *      the same ServiceAccount name and uid annotations, annotated kubemend.io/replaces=<name>)
 *      is created — the tokens controller writes a token of the current key into it;
 *   2. it is put first in the ServiceAccount's `secrets` (a JSON patch guarded by the
 *      resourceVersion), where ServiceAccount admission (clusters that mount token Secrets)
 *      takes the token of new pods from: the pods step's restarts mount it;
 *   3. the old Secret stays valid until no pod refers to it any more (running or terminating:
 *      a volume, a projected source, env or envFrom), and only then is deleted with a uid
 *      precondition (km_tokens_retire_replaced: at the end of the tokens step, of the recovery
 *      and on every re-verification while bridged).  No backup: the replacement carries the same
 *      ServiceAccount, and the old token is a credential of a key that is being retired.
 * A Secret that its ServiceAccount does not list, or whose replacement name is taken by another
 * object, is regenerated in place as before (the caller's fallback). */
#ifndef KM_TOKENS_REPLACE_H
#define KM_TOKENS_REPLACE_H

#include <stdatomic.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

#define KM_TOKENS_REPLACES_ANN "kubemend.io/replaces"
#define KM_TOKENS_REPLACEMENT_SUFFIX "-kubemend"

/* ---- pure rules (no I/O) -------------------------------------------------------------------- */

/* The replacement's name of token Secret `name` into buf (size n).  0 on success, -1 when it
 * would exceed a Secret name's 253 characters or n (buf then "").  */
int km_tokens_replacement_name(const char *name, char *buf, size_t n);

/* 1 when Secret r (borrowed) is kubemend's replacement of Secret old: same namespace, a token
 * Secret annotated kubemend.io/replaces=<old's name>, for the same ServiceAccount (name and, when
 * both carry it, uid).  0 otherwise. */
int km_tokens_is_replacement(const cJSON *r, const cJSON *old);

/* 1 when pod (borrowed) refers to Secret `secret` of its namespace: a volume's
 * secret.secretName, a projected volume's secret source, a container's (init, ephemeral too)
 * env valueFrom.secretKeyRef or envFrom secretRef.  0 otherwise. */
int km_tokens_pod_refers(const cJSON *pod, const char *secret);

/* The ServiceAccount's secrets with name first and listed once (the others in their order) as
 * the body of a JSON patch guarded by resourceVersion rv: [{"op":"test",...},{"op":"add",
 * "path":"/secrets","value":[...]}].  NULL when name is first already (nothing to do) or on
 * ENOMEM (*oom = 1).  The caller frees the text. */
char *km_tokens_secrets_first_patch(const cJSON *sa, const char *name, const char *rv, int *oom);

/* ---- I/O ----------------------------------------------------------------------------------- */

/* Replaces token Secret `secret` (borrowed; judged stale through the bridge): creates or finds
 * its replacement and puts it first in its ServiceAccount's secrets (conflicts re-read, up to a
 * few times).  *replaced = 1 with the replacement's name in name (size n) on success; 0 when the
 * Secret cannot be replaced (its ServiceAccount is gone, has another uid or does not list it; the
 * name is too long or taken by another object) — the caller regenerates it in place then.
 * Failure: the API's or transport's error (KM_EAPI with details in err), KM_ENOMEM.  A replacement
 * the ServiceAccount refused to list (e.g. 403) is deleted again, never left as an unmounted extra
 * token; one created before a transport failure stays (the next run finds it by name). */
km_status km_tokens_replace(km_kube *kube, const cJSON *secret, int *replaced, char *name, size_t n,
                            km_err *err);

/* What km_tokens_retire_replaced did. */
typedef struct km_tokens_retired {
    long retired; /* old Secrets deleted (their replacement holds a token, no pod refers to them) */
    long waiting; /* old Secrets kept: a pod still refers to them */
} km_tokens_retired;

/* Lists the token Secrets (page by page) and, for each replacement (kubemend.io/replaces) that
 * holds a token, deletes the Secret it replaced (uid precondition) when that one is still there,
 * for the same ServiceAccount, holds a token of another key than the replacement's, and no pod of
 * its namespace refers to it (km_tokens_pod_refers; pods are listed once per namespace).  dry_run:
 * counts only.  *out is set on success.  Failure: the list's error, KM_ECANCELED, KM_ENOMEM; what
 * was deleted stays deleted (a 404 counts as retired). */
km_status km_tokens_retire_replaced(km_kube *kube, int dry_run, const atomic_int *cancel,
                                    km_tokens_retired *out, km_err *err);

/* Records t in status.tokens (tokens_status, borrowed): retired added, retiring set to
 * t->waiting.  Allocation failures leave the fields as they were. */
void km_tokens_retired_record(cJSON *tokens_status, const km_tokens_retired *t);

#endif
