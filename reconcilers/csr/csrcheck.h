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
 *   ipAddressNotOwned       every IP SAN is one of the Node's InternalIP/ExternalIP addresses or
 *                           a Hostname holding an IP literal (the kubelet makes those IP SANs),
 *                           compared as parsed values (::1 = 0:0::1; 10.0.0.1 = ::ffff:10.0.0.1)
 *   ipAddressOfOtherNode    (with an address index) no IP SAN is an address of another Node
 *   dnsNameNotOwned         every DNS SAN is one of the Node's Hostname/InternalDNS/ExternalDNS
 *                           addresses (case-insensitive) or fully matches an allowed pattern
 *   dnsNameOfOtherNode      (with an address index) no DNS SAN is an address of another Node
 *                           (a node may report any address in its own status: a SAN another
 *                           Node also reports would let it serve as that node)
 * Address types other than the five kubelets report (InternalIP, ExternalIP, InternalDNS,
 * ExternalDNS, Hostname) are ignored.
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

/* The Nodes' addresses: address -> the Nodes reporting it (IPs by parsed value, DNS names
 * case-insensitive).  Opaque; built by one thread, then read-only (thread-safe to read). */
typedef struct km_csr_addrs km_csr_addrs;

/* An empty index; caller frees *out with km_csr_addrs_free.  Failure: KM_ENOMEM (*out
 * untouched). */
km_status km_csr_addrs_new(km_csr_addrs **out, km_err *err);

/* Frees the index.  Accepts NULL. */
void km_csr_addrs_free(km_csr_addrs *a);

/* Indexes the status.addresses of node (borrowed; the five kubelet types only).  Failure:
 * KM_ENOMEM (the index keeps what was added). */
km_status km_csr_addrs_add_node(km_csr_addrs *a, const cJSON *node, km_err *err);

/* Number of distinct addresses indexed (0 for NULL). */
size_t km_csr_addrs_len(const km_csr_addrs *a);

/* km_csrcheck_decide, and with others (may be NULL: not checked) a kubelet-serving CSR whose
 * SAN another Node of the index reports is denied (ipAddressOfOtherNode/dnsNameOfOtherNode). */
void km_csrcheck_decide_among(const km_csr_policy *p, const cJSON *csr, const cJSON *node,
                              const km_csr_addrs *others, km_csr_decision *out);

/* An IP address as 16 bytes (IPv4 as ::ffff:a.b.c.d): from text (not NULL), else from raw (len 4
 * or 16 bytes, as in an IP SAN).  Returns 1, or 0 when it is no IP (out untouched). */
int km_csrcheck_ip_canon(const char *text, const unsigned char *raw, int len,
                         unsigned char out[16]);

/* "Approve", "Deny" or "Ignore". */
const char *km_csr_verdict_str(km_csr_verdict v);

#endif
