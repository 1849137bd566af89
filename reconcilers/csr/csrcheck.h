/* csrcheck.h — pure validation of kubelet CertificateSigningRequests.
 *
 * Given a CSR object (certificates.k8s.io/v1, as the API returns it), the Node it names (or NULL
 * when there is none) and a policy, km_csrcheck_decide() says Approve or Deny and, on Deny, the
 * name of the first failed check plus a human-readable detail.  No I/O: the caller looks the Node
 * up and writes the /approval.
 *
 * kubernetes.io/kubelet-serving — every check must hold (names in evaluation order):
 *   requesterNotNode        spec.username is "system:node:<name>" (<name> non-empty)
 *   requesterGroupMissing   spec.groups contains "system:nodes"
 *   expirationTooLong       spec.expirationSeconds, when set, <= policy max
 *   pemInvalid              spec.request is base64 of one PEM CERTIFICATE REQUEST
 *   signatureInvalid        the CSR's self-signature verifies with its own public key
 *   subjectMismatch         subject is exactly CN=system:node:<name>, O=system:nodes
 *   usageNotAllowed         every usage in {digital signature, key encipherment, server auth}
 *   serverAuthMissing       "server auth" among the usages
 *   emailSANPresent         no email SANs
 *   uriSANPresent           no URI SANs
 *   otherSANPresent         no SANs of other types (otherName, directoryName, ...)
 *   noSANs                  at least one DNS or IP SAN
 *   nodeNotFound            the Node <name> exists
 *   ipAddressNotOwned       every IP SAN is one of the Node's status.addresses
 *   dnsNameNotOwned         every DNS SAN is one of the Node's Hostname/InternalDNS/ExternalDNS
 *                           addresses (case-insensitive) or fully matches an allowed pattern
 *
 * kubernetes.io/kube-apiserver-client-kubelet (only with approve_kubelet_client; otherwise
 * Ignore) — the checks of kube-controller-manager's own approver (sarapprove.go isNodeClientCert)
 * plus who may ask for it:
 *   requesterNotNode        username equals the CSR's CN (node renewing its own cert) with group
 *                           system:nodes, or group system:bootstrappers (a joining node)
 *   expirationTooLong, pemInvalid, signatureInvalid   as above
 *   subjectMismatch         CN starts with "system:node:" and O is exactly [system:nodes]
 *   sansPresent             no SANs of any kind
 *   usageNotAllowed         usages exactly {digital signature, key encipherment, client auth} or
 *                           {digital signature, client auth}
 *
 * Every other signer: Ignore (not ours to decide). */
#ifndef KM_CSRCHECK_H
#define KM_CSRCHECK_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"

#define KM_CSR_SIGNER_SERVING "kubernetes.io/kubelet-serving"
#define KM_CSR_SIGNER_CLIENT "kubernetes.io/kube-apiserver-client-kubelet"

typedef struct km_csr_policy km_csr_policy; /* opaque, immutable once built; thread-safe */

/* Builds a policy.  dns_patterns: n POSIX extended regexes (anchored: a DNS SAN must match a
 * whole pattern); max_expiration_seconds <= 0 = no limit.  On success *out is a new policy the
 * caller frees with km_csr_policy_free.  On failure (KM_EINVAL naming the bad pattern, KM_ENOMEM)
 * *out is untouched. */
km_status km_csr_policy_new(const char *const *dns_patterns, size_t n, long max_expiration_seconds,
                            int approve_kubelet_client, km_csr_policy **out, km_err *err);

/* Frees the policy.  Accepts NULL. */
void km_csr_policy_free(km_csr_policy *p);

typedef enum km_csr_verdict {
    KM_CSR_IGNORE = 0, /* signer not handled by this policy */
    KM_CSR_APPROVE,
    KM_CSR_DENY,
} km_csr_verdict;

typedef struct km_csr_decision {
    km_csr_verdict verdict;
    char check[32];    /* first failed check ("" unless Deny) */
    char node[256];    /* node name the CSR claims ("" when it names none) */
    char message[384]; /* "<check>: <detail>" on Deny, a short summary otherwise */
} km_csr_decision;

/* Non-zero when p decides CSRs of this signer. */
int km_csrcheck_handles(const km_csr_policy *p, const char *signer);

/* The node name the CSR's requester claims (spec.username "system:node:<name>") into buf
 * (always NUL-terminated, n > 0).  Returns buf, or NULL (buf = "") when the requester is not a
 * node or the name does not fit. */
const char *km_csrcheck_node_name(const cJSON *csr, char *buf, size_t n);

/* Non-zero when the CSR already has an Approved or Denied condition (or a certificate). */
int km_csrcheck_is_decided(const cJSON *csr);

/* Decides csr (borrowed) against node (the Node named by the requester; NULL = not found) under
 * p.  Always fills *out; cannot fail (malformed input is a Deny with its check name). */
void km_csrcheck_decide(const km_csr_policy *p, const cJSON *csr, const cJSON *node,
                        km_csr_decision *out);

/* "Approve", "Deny" or "Ignore". */
const char *km_csr_verdict_str(km_csr_verdict v);

#endif
