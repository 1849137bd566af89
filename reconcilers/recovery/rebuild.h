/* rebuild.h — when the cluster's PKI was rebuilt, derived from the cluster: the one time every
 * step measures "stale" against (km_step_ctx.rebuilt_at; status.rebuild {time, source}).
 *
 * The rebuild time is the notBefore of the current cluster CA, as the rebuilt control plane
 * publishes it:
 *   - kube-system/extension-apiserver-authentication `client-ca-file`: every kube-apiserver
 *     writes its --client-ca-file there when it starts, on every version (1.19 included); after
 *     a rebuild it holds the old CA(s) next to the new one (the apiserver merges);
 *   - kube-system/kube-root-ca.crt `ca.crt` (1.20+: the controller-manager's --root-ca-file)
 *     tells which certificate of that bundle is the cluster CA (the bundle may also carry
 *     foreign client CAs).
 * The certificate of client-ca-file equal to kube-root-ca.crt's (SHA-256 fingerprint) with the
 * latest notBefore wins; without one (1.19, or kube-root-ca.crt not refreshed yet), the latest
 * notBefore of the bundle; when the bundle is missing or empty, kube-root-ca.crt's, else the CA
 * the client trusts (kubeconfig / in-cluster ca.crt).  kubeadm creates the new CA when the PKI
 * is rebuilt, before the new control plane starts: pods it creates are later, pods of the old
 * control plane earlier.  A cluster that was never rebuilt gets its CA's birth, so no pod is
 * older.  Limits (the override is then spec.rebuildTime / --rebuild-time): a CA restored from a
 * backup with only sa.key lost, a CA made long before the rebuild, a foreign client CA newer
 * than the rebuild on a server without kube-root-ca.crt.
 * Certificates are parsed and compared with reconcilers/extauth/pem.h. */
#ifndef KM_REBUILD_H
#define KM_REBUILD_H

#include <time.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

typedef struct km_rebuild {
    time_t at;        /* the rebuild time; 0 = unknown */
    char source[384]; /* where it came from (for status.rebuild.source and an Event) */
} km_rebuild;

/* The choice from the texts (pure: no I/O).  client_ca: client-ca-file, root_ca:
 * kube-root-ca.crt's ca.crt, own_ca: the client's CA bundle (PEM; NULL = missing; unparsable
 * texts count as missing).  Failure: KM_ENOTFOUND when no certificate is there to tell (err says
 * what was missing), KM_EPARSE when client_ca does not parse and nothing else tells; *out
 * untouched. */
km_status km_rebuild_choose(const char *client_ca, const char *root_ca, const char *own_ca,
                            km_rebuild *out, km_err *err);

/* Reads client-ca-file and kube-root-ca.crt (GETs in kube-system; a 404 is "missing") and
 * chooses (km_rebuild_choose) with own_ca (the client's CA bundle, NULL = none).
 * Failure: the GET's error (the client has retried transient ones), or km_rebuild_choose's;
 * *out untouched. */
km_status km_rebuild_derive(km_kube *kube, const char *own_ca, km_rebuild *out, km_err *err);

/* The current cluster CA itself: the certificate km_rebuild_choose picks, as its PEM block
 * (ending in one newline) into *pem (malloc'ed, caller frees).  Pure.  Failure as
 * km_rebuild_choose; *pem untouched. */
km_status km_rebuild_choose_ca(const char *client_ca, const char *root_ca, const char *own_ca,
                               char **pem, km_err *err);

/* km_rebuild_derive's reads and km_rebuild_choose_ca: the current cluster CA (what
 * kube-public/cluster-info must hold).  Failure as km_rebuild_derive; *pem untouched. */
km_status km_rebuild_current_ca(km_kube *kube, const char *own_ca, char **pem, km_err *err);

#endif
