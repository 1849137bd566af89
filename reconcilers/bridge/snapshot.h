/* snapshot.h — reconcilers/bridge: the steady-state snapshot of the cluster's public key
 * material, so that a later PKI disaster can be bridged without any computation.
 *
 * A ConfigMap (default kubemend-system/kubemend-keys) holding public data only:
 *   jwks.json    the service-account keys: the JWKS (GET /openid/v1/jwks) merged with the keys of
 *                the previous snapshot (a key once seen is kept, at most 16 keys), so the snapshot
 *                taken after a rebuild still holds the lost key;
 *   jwks-source  "/openid/v1/jwks", or why it could not be read (1.19 without the
 *                ServiceAccountIssuerDiscovery feature answers 404: the CA certificates only);
 *   ca.crt       the client CA bundle kube-apiserver publishes
 *                (kube-system/extension-apiserver-authentication, client-ca-file).
 * It is written only when its data changed.  `kubemend keys snapshot` writes it once; in operator
 * mode the leader writes it at start and every 10 minutes (the runnable "keys-snapshot"). */
#ifndef KM_BRIDGE_SNAPSHOT_H
#define KM_BRIDGE_SNAPSHOT_H

#include <stddef.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "reconcilers/tokens/jwt.h"

#define KM_BRIDGE_SNAPSHOT_NAME "kubemend-keys"
#define KM_BRIDGE_SNAPSHOT_NS "kubemend-system"
#define KM_BRIDGE_SNAPSHOT_MAX_KEYS 16

/* Reads the cluster's key material and creates or updates ConfigMap ns/name when it changed.
 * msg (size n) receives one line saying what was written (or that nothing changed) and whether
 * the JWKS was available; *changed (may be NULL) 1 when written.  Failure: API and transport
 * errors (reading the CA bundle, writing the ConfigMap), KM_ENOMEM; nothing written then. */
km_status km_bridge_snapshot_write(km_kube *kube, const char *ns, const char *name, char *msg,
                                   size_t n, int *changed, km_err *err);

/* The JWKS text (jwks.json) of snapshot ns/name.  On success *jwks is a malloc'ed copy (caller
 * frees) or NULL when there is no snapshot or it holds no JWKS.  Failure: API errors other than
 * 404, transport errors, KM_ENOMEM; *jwks untouched. */
km_status km_bridge_snapshot_jwks(km_kube *kube, const char *ns, const char *name, char **jwks,
                                  km_err *err);

/* Pure: the merged JWKS text of current (a JWKS JSON text, may be NULL) and previous (the
 * previous snapshot's jwks.json, may be NULL): current's keys, then previous keys whose kid is
 * not among them, at most KM_BRIDGE_SNAPSHOT_MAX_KEYS.  Returns a malloc'ed JSON text (caller
 * frees), NULL when neither has keys or on allocation failure. */
char *km_bridge_snapshot_merge(const char *current, const char *previous);

#endif
