/* csr.h — reconcilers/csr: kubelet CSRs after a PKI rebuild.  The folder, in reading order:
 *   csr.h       the step: one pass over the CSRs pending now (this file);
 *   window.h    the approval window the pass opens: a background approver until windowEndsAt;
 *   approver.h  that approver (a CSR watch);
 *   decide.h    one CSR decided and acted on (approve / deny / leave pending), for both;
 *   csrcheck.h  the pure rules: which CSR may be approved (requester, subject, usages, SANs).
 *
 * Both the pass and the approver decide each pending CSR of a handled signer
 * (kubelet-serving; kube-apiserver-client-kubelet only with csr.approveKubeletClient); CSRs that
 * already carry an Approved/Denied condition are left alone, so a re-run or a second operator
 * never decides a CSR twice.
 * The Node a kubelet-serving CSR names: the step lists the Nodes once per pass (paged, keeping
 * the named ones and every Node's addresses: a SAN another Node reports is denied,
 * csrcheck.h) when a CSR needs a Node, and GETs a Node the list did not show (created since,
 * or no node; also every Node when the list is refused).  The approver GETs the Node per CSR
 * and lists the Nodes' addresses again when its index is older than 30 s. */
#ifndef KM_CSR_H
#define KM_CSR_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "reconcilers/csr/csrcheck.h"
#include "reconcilers/step/step.h"

/* The step: one pass over the CSRs pending now (listed page by page); edits ctx->status
 * (status.csr): approved, denied, pending (failed but left pending), ignored (pending CSRs of
 * signers not handled) counters and recent [{name, node, decision (Approved|Denied|Pending), reason
 * (the failed check, or "allChecksPassed")}] (latest 50); Events and ctx->count counters
 * csr_{approved,denied,pending,ignored}_total.  Sets ctx's condition (True/PassCompleted).
 * Failure: the list's or a write's error (already decided CSRs stay decided; a re-run goes
 * on with the rest); KM_EINVAL for a bad spec (allowedDNSPatterns). */
extern const km_step_def km_csr_def;

/* Builds a CSR policy (reconcilers/csr/csrcheck.h) from a spec.csr block: allowedDNSPatterns,
 * maxExpirationSeconds and approveKubeletClient, defaults from the step's schema; csr_spec may be
 * NULL for all defaults.  Failure as km_csr_policy_new. */
km_status km_csr_policy_from_spec(const cJSON *csr_spec, km_csr_policy **out, km_err *err);

#endif
