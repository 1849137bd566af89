/* nodes.h — reconcilers/nodes: the workers' re-join after a PKI rebuild, from the cluster's side
 * (what the seed procedure does with `kubeadm init phase bootstrap-token` and `kubeadm token
 * create --print-join-command`).  The folder, in reading order:
 *   nodes.h        the step (this file);
 *   clusterinfo.h  the pure rules of kube-public/cluster-info: the discovery hash, the CA in its
 *                  kubeconfig;
 *   notready.h     the pure rules of NotReady nodes and the taint-based eviction countdown;
 *   jointoken.h    the opt-in bootstrap token and the join command naming it.
 *
 * The nodes step (spec.nodes, status.nodes, condition NodesRejoinReady), after the csr step:
 *  1. cluster-info (spec.nodes.updateClusterInfo, default true): the CA of
 *     kube-public/cluster-info's kubeconfig becomes the current cluster CA (km_step_ctx.
 *     cluster_ca: the certificate the rebuild time is read from).  The original data is saved
 *     once in kube-public/cluster-info-backup-<recovery> (an existing backup is kept); the write
 *     is a PUT with the resourceVersion (a 409 re-reads, at most 5 times); every other key and
 *     the server stay; the controller-manager's bootstrap signer re-signs the jws-kubeconfig-*
 *     entries (a Warning ClusterInfoNotResigned when it has not within 15 s).  No cluster-info
 *     (not a kubeadm cluster): nothing to do.  A kubeconfig of another shape: left untouched,
 *     condition False ClusterInfoUnexpected.
 *     status.nodes.discoveryHash = sha256:<hex of the CA's SubjectPublicKeyInfo> (the
 *     --discovery-token-ca-cert-hash), also an Event DiscoveryHash; clusterInfo {phase Updated|
 *     Current|Missing|DryRun, backup, server}.
 *  2. the join token (spec.nodes.createJoinToken, default false): a bootstrap token Secret
 *     valid spec.nodes.joinTokenTTLSeconds (jointoken.h), once per recovery (reused while it
 *     exists and is valid); status.nodes.joinToken {secret: "kube-system/bootstrap-token-<id>",
 *     expiration}.  Its secret is never in status, Events or logs.
 *  3. NotReady nodes (listed page by page): per node the time its pods are evicted by the taint
 *     manager (the smallest tolerationSeconds of its pods for the node's not-ready/unreachable
 *     NoExecute taint, counted from the taint's timeAdded, else from the Ready condition's last
 *     transition; 300 s when no pod says), status.nodes.notReady [{name, since, taint, pods,
 *     evictionInSeconds (-1: none of its pods is evicted), joinCommand (with the token)}]
 *     (at most 50; notReadyCount the total) and a Warning Event NodesNotReady — the seed's
 *     warning made visible.  The condition stays True (reason NodesNotReady): re-joining is the
 *     admin's work; the CSR window stays open for the listed nodes (csr/window.h).
 * Dry run: everything reported, nothing written, no token.
 *
 * verify: cluster-info holds only the current CA, and no NotReady node has a pending
 * kubelet-serving CSR. */
#ifndef KM_NODES_H
#define KM_NODES_H

#include "reconcilers/step/step.h"

#define KM_CLUSTERINFO_NAMESPACE "kube-public"
#define KM_CLUSTERINFO_CONFIGMAP "cluster-info"
#define KM_CLUSTERINFO_BACKUP_PREFIX "cluster-info-backup-"

/* The step (see the file comment): run KM_OK with ctx's condition set when it ran to its end;
 * KM_ECANCELED when cancelled; the API's errors otherwise (a re-run resumes: the backup is kept,
 * a current CA is not written again, the recorded token is reused). */
extern const km_step_def km_nodes_def;

/* The verify hook (step.h), exposed for tests: reads cluster-info, the NotReady nodes and the
 * pending CSRs; condition True when healed, else False naming what is left.  Failure: a read's
 * error. */
km_status km_nodes_verify(km_step_ctx *ctx, km_err *err);

/* Of the nodes the step listed NotReady (not_ready: status.nodes.notReady, borrowed), how many
 * are still not Ready (GET each; a deleted node counts as done) into *left, their names into
 * names ("a, b", truncated, NUL-terminated; may be NULL).  run --once keeps the CSR approval
 * window open while *left > 0 (until the window ends).  Failure: a GET's error (other than
 * 404); outputs untouched. */
km_status km_nodes_waiting(km_kube *kube, const cJSON *not_ready, long *left, char *names, size_t n,
                           km_err *err);

#endif
