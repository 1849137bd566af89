/* jointoken.h — the bootstrap token a worker re-joins with (what `kubeadm token create` makes),
 * and the join command that names it without showing it.
 *
 * The token is a bootstrap.kubernetes.io/token Secret kube-system/bootstrap-token-<id>: token-id
 * [a-z0-9]{6}, token-secret [a-z0-9]{16} (OpenSSL's RNG), expiration, the usages
 * authentication and signing (the bootstrap signer then signs kube-public/cluster-info with it)
 * and the group system:bootstrappers:kubeadm:default-node-token (kubeadm's RBAC lets that group
 * create the node's client CSR, which kube-controller-manager auto-approves).  The secret half
 * lives only in the request body: never in logs, status or Events; the join command reads it
 * from the Secret with kubectl. */
#ifndef KM_JOINTOKEN_H
#define KM_JOINTOKEN_H

#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

#define KM_JOINTOKEN_NAMESPACE "kube-system"
#define KM_JOINTOKEN_PREFIX "bootstrap-token-"
#define KM_JOINTOKEN_GROUP "system:bootstrappers:kubeadm:default-node-token"

/* A fresh token id (6 characters [a-z0-9] + NUL).  Failure: KM_EIO when the RNG fails. */
km_status km_jointoken_new_id(char id[7], km_err *err);

/* Creates the Secret kube-system/bootstrap-token-<id> expiring at `expires`, labelled as
 * kubemend's with the recovery's name.  A 409 (a Secret of this id exists) is KM_OK: the id was
 * recorded before the create, so it is this recovery's.  Failure: the RNG's (KM_EIO) or the
 * create's error; the generated secret is wiped either way. */
km_status km_jointoken_create(km_kube *kube, const char *id, time_t expires, const char *recovery,
                              km_err *err);

/* The exact join command for node (may be NULL: no --node-name) into out (size n, truncated,
 * NUL-terminated): `kubeadm join <host:port> --token "$(kubectl ...)" --discovery-token-ca-cert-
 * hash <hash> [--node-name <node>]`, the token read from the Secret of id by kubectl.  server is
 * cluster-info's (its https:// dropped).  Returns out. */
char *km_jointoken_command(const char *server, const char *id, const char *hash, const char *node,
                           char *out, size_t n);

#endif
