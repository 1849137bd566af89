/* decide.h — one pending CSR decided (reconcilers/csr/csrcheck.h) and acted on, for both the
 * csr step's pass and the background approver; and how a decision is counted in status.csr.
 *
 *   Approve        PUT .../certificatesigningrequests/<name>/approval with the CSR's current
 *                  object plus {type Approved, status True, reason KubemendApproved, message,
 *                  lastUpdateTime}; Normal Event CSRApproved.
 *   Deny, deny=on  the same with {type Denied, reason KubemendDenied, message "<check>: ..."};
 *                  Warning Event CSRDenied.
 *   Deny, deny=off nothing is written (the CSR stays pending); Warning Event CSRLeftPending.
 * A CSR that already carries an Approved/Denied condition is left alone (idempotent).  With dry
 * run everything is decided and reported but nothing is written.  A 409 on the /approval write
 * re-reads the CSR once and decides again if it is still undecided. */
#ifndef KM_CSR_DECIDE_H
#define KM_CSR_DECIDE_H

#include <stdatomic.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/base/strmap.h"
#include "operator/kube/kube.h"
#include "reconcilers/csr/csrcheck.h"

#define KM_CSR_PATH "/apis/certificates.k8s.io/v1/certificatesigningrequests"
#define KM_CSR_RECENT_MAX 50

/* What happened to one CSR. */
typedef enum km_csr_outcome {
    KM_CSR_SKIPPED = 0, /* already decided, gone, or not ours to decide */
    KM_CSR_IGNORED,     /* pending, signer not handled */
    KM_CSR_APPROVED,
    KM_CSR_DENIED,
    KM_CSR_PENDING, /* failed a check, left pending (deny off) */
} km_csr_outcome;

typedef struct km_csr_result {
    km_csr_outcome out;
    km_csr_decision d;
    char name[256];
    const char *reason; /* static: the failed check, "allChecksPassed" or "signerNotHandled" */
} km_csr_result;

/* What deciding needs; shared read-only by the caller's thread. */
typedef struct km_csr_decider {
    km_kube *kube;               /* borrowed; the calling thread's */
    const km_csr_policy *policy; /* borrowed */
    int deny;                    /* spec.csr.deny */
    int dry_run;
    const km_strmap *nodes; /* name -> Node (cJSON) listed for this pass; NULL = GET each */
    /* An Event to record ("Normal"/"Warning", CamelCase reason); may be NULL. */
    void (*event)(void *user, const char *type, const char *reason, const char *message);
    void *user;
    /* appended */
    /* The Nodes' addresses (csrcheck.h), for the "address of another Node" checks of
     * kubelet-serving CSRs; borrowed; NULL = those checks are not made. */
    const km_csr_addrs *addrs;
    /* Ends the pauses between retries of a decision's write (borrowed; NULL = none). */
    const atomic_int *cancel;
} km_csr_decider;

/* Lists the Nodes (paged) into a new address index (caller frees *out with
 * km_csr_addrs_free).  Failure: the list's error or KM_ENOMEM; *out untouched. */
km_status km_csr_addrs_list(km_kube *kube, km_csr_addrs **out, km_err *err);

/* Decides csr (borrowed) and acts on it (see the file comment); *r is always filled.  Failure:
 * a GET/PUT error (r->out is then KM_CSR_SKIPPED), nothing reported. */
km_status km_csr_decide(const km_csr_decider *h, const cJSON *csr, km_csr_result *r, km_err *err);

/* "Approved", "Denied", "Pending" for a decision; NULL otherwise. */
const char *km_csr_outcome_decision(km_csr_outcome o);

/* The status.csr counter of an outcome ("approved", "denied", "pending", "ignored"); NULL for
 * KM_CSR_SKIPPED. */
const char *km_csr_outcome_counter(km_csr_outcome o);

/* Counts one outcome in status.csr (csr may be NULL) and, for a decision, appends {name, node,
 * decision, reason} to its recent list (the latest KM_CSR_RECENT_MAX).  Allocation failures only
 * lose the entry. */
void km_csr_status_add(cJSON *csr, const km_csr_result *r);

#endif
