/* verify.h — the csr step's verify hook (reconcilers/step/step.h): no kubelet CSR of a known
 * Node is left pending, from the server's answers. */
#ifndef KM_CSR_VERIFY_H
#define KM_CSR_VERIFY_H

#include "operator/base/err.h"
#include "reconcilers/step/step.h"

/* Lists the CSRs (paged; CSRs are a small set) and, for every pending one of a signer the step
 * handles (kubelet-serving; kube-apiserver-client-kubelet with approveKubeletClient) whose
 * requester is a node, GETs that Node: a pending CSR of an existing Node is left (False, named);
 * one of a Node that does not exist is not the recovery's to approve.  Sets ctx's condition.
 * Failure: the list's or a GET's error other than 404 (nothing set), KM_ENOMEM. */
km_status km_csr_verify(km_step_ctx *ctx, km_err *err);

#endif
