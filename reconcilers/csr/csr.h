/* csr.h — the CSR approval step and the background approver.
 *
 * Both decide each pending CSR of a handled signer with reconcilers/csr/csrcheck.h
 * (kubelet-serving; kube-apiserver-client-kubelet only with csr.approveKubeletClient) and then:
 *   Approve        PUT .../certificatesigningrequests/<name>/approval with the CSR's current
 *                  object plus {type Approved, status True, reason KubemendApproved, message,
 *                  lastUpdateTime}; Normal Event CSRApproved.
 *   Deny, deny=on  the same with {type Denied, reason KubemendDenied, message "<check>: ..."};
 *                  Warning Event CSRDenied.
 *   Deny, deny=off nothing is written (the CSR stays pending); Warning Event CSRLeftPending.
 * CSRs that already carry an Approved/Denied condition are left alone (idempotent), so a
 * re-run or a second operator never decides a CSR twice.  With dry run everything is decided
 * and reported but nothing is written.  A 409 on the /approval write re-reads the CSR once and
 * retries if it is still undecided.
 * The Node a kubelet-serving CSR names: the step lists the Nodes once per pass (paged, keeping
 * only the named ones; ended early when the pages left would cost more than GETs) when more
 * than one CSR needs a Node, and GETs a Node the list did not show (created since, or no
 * node; also every Node when the list is refused).  The approver GETs the Node per CSR. */
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

typedef struct km_csr_hooks {
    /* A decision was made (decision "Approved", "Denied" or "Pending"; reason as in recent).
     * Called on the approver's thread. */
    void (*decided)(const char *csr, const char *node, const char *decision, const char *reason,
                    void *user);
    /* An Event to record ("Normal"/"Warning", CamelCase reason).  Approver's thread. */
    void (*event)(const char *type, const char *reason, const char *message, void *user);
    void *user;
} km_csr_hooks;

typedef struct km_csr_approver km_csr_approver;

/* Starts a background thread that watches CertificateSigningRequests (watch/watcher.h: list,
 * then watch from the list's resourceVersion, relist on 410) and decides each pending CSR of a
 * handled signer within the watch event that shows it (decided ones are left alone; a CSR left
 * pending is reported once).  kube is borrowed (cloned inside; it must outlive the approver);
 * csr_spec (the spec.csr block; may carry "dryRun": true) and hooks (may be NULL) are copied.
 * It runs until km_csr_approver_stop — or, when csr_spec holds a string "windowEndsAt"
 * (RFC 3339), until then.  On success *out is a running approver the caller stops and frees
 * with km_csr_approver_free.  Failure (KM_EINVAL bad spec, KM_ENOMEM, KM_EIO no thread): *out
 * untouched, nothing left running. */
km_status km_csr_approver_start(km_kube *kube, const cJSON *csr_spec, const km_csr_hooks *hooks,
                                km_csr_approver **out, km_err *err);

/* Stops the approver (cancels in-flight requests) and joins its threads.  Idempotent; accepts
 * NULL. */
void km_csr_approver_stop(km_csr_approver *a);

/* Stops (if needed) and frees.  Accepts NULL. */
void km_csr_approver_free(km_csr_approver *a);

/* Non-zero while the approver's watch runs (0 after stop or after its windowEndsAt). */
int km_csr_approver_running(km_csr_approver *a);

#endif
