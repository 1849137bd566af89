/* pem.h — PEM certificate bundles (OpenSSL 3): parse, fingerprint, and the keep/remove decision
 * for CA bundles such as kube-system/extension-apiserver-authentication's client-ca-file.
 *
 * The decision is a pure function of the bundle, the current CA(s), the pinned fingerprints and
 * "now":
 *   keep   a certificate equal to a current CA (same DER = same SHA-256 fingerprint),
 *   keep   a pinned certificate (spec pinnedFingerprints),
 *   remove an expired certificate (notAfter < now),
 *   remove a certificate superseded by another unexpired certificate of the bundle with the
 *          same subject and a strictly later notBefore (the old CA after a PKI rebuild) — or
 *          with the same notBefore when that other certificate is a current CA (ties: current
 *          wins; without a current CA a tie supersedes nothing),
 *   keep   everything else (e.g. foreign CAs whose subject nothing newer supersedes).
 * Current beats pinned beats expired beats superseded.  A decision that would remove every
 * certificate of a non-empty bundle is refused (KM_ESTATE): an empty client CA bundle would
 * break authentication for every aggregated API server. */
#ifndef KM_PEM_H
#define KM_PEM_H

#include <stddef.h>
#include <time.h>

#include "operator/base/buf.h"
#include "operator/base/err.h"

typedef struct km_pem_bundle km_pem_bundle;

/* Parses n bytes of concatenated "CERTIFICATE" PEM blocks; only whitespace may surround them.
 * An empty (or all-whitespace) text is a bundle of zero certificates.  On success *out is a new
 * bundle the caller frees with km_pem_free.  On failure *out is untouched: KM_EPARSE (text
 * outside blocks, another block type, an unterminated block, a block OpenSSL cannot decode;
 * err->message says which and where, never echoing the data) or KM_ENOMEM. */
km_status km_pem_parse(const char *pem, size_t n, km_pem_bundle **out, km_err *err);

/* Frees the bundle.  Accepts NULL. */
void km_pem_free(km_pem_bundle *b);

/* Number of certificates. */
size_t km_pem_count(const km_pem_bundle *b);

/* Accessors for certificate i (< count); strings are borrowed from b. */
const char *km_pem_fingerprint(const km_pem_bundle *b, size_t i); /* 64 lower-case hex digits */
const char *km_pem_subject(const km_pem_bundle *b, size_t i);     /* RFC 2253, "CN=kubernetes" */
time_t km_pem_not_before(const km_pem_bundle *b, size_t i);
time_t km_pem_not_after(const km_pem_bundle *b, size_t i);
/* The certificate's PEM block exactly as parsed, ending in one "\n"; *len its length. */
const char *km_pem_block(const km_pem_bundle *b, size_t i, size_t *len);

/* 1 when the bundle holds a certificate with this normalized fingerprint. */
int km_pem_contains(const km_pem_bundle *b, const char *fingerprint);

/* Normalizes a SHA-256 fingerprint ("AB:CD:..." or "abcd...", any case) into out as 64
 * lower-case hex digits.  KM_EINVAL (out untouched) when it is not 32 bytes of hex. */
km_status km_pem_fingerprint_normalize(const char *in, char out[65]);

typedef enum km_pem_verdict {
    KM_PEM_KEEP = 0,          /* nothing newer with its subject */
    KM_PEM_KEEP_CURRENT,      /* equal to a current CA */
    KM_PEM_KEEP_PINNED,       /* pinned by fingerprint */
    KM_PEM_REMOVE_EXPIRED,    /* notAfter in the past */
    KM_PEM_REMOVE_SUPERSEDED, /* an unexpired certificate with its subject is newer */
} km_pem_verdict;

/* "latest", "current", "pinned", "expired", "superseded". */
const char *km_pem_verdict_name(km_pem_verdict v);

/* Non-zero for the REMOVE verdicts. */
int km_pem_verdict_removes(km_pem_verdict v);

typedef struct km_pem_policy {
    const km_pem_bundle *current; /* the cluster's current CA(s); NULL = none known */
    const char *const *pinned;    /* normalized fingerprints (km_pem_fingerprint_normalize) */
    size_t npinned;
    time_t now;
} km_pem_policy;

/* Decides every certificate of b: out must hold km_pem_count(b) entries.  KM_ESTATE when the
 * decision would remove all certificates (out then untouched).  Pure: no I/O, no clock. */
km_status km_pem_decide(const km_pem_bundle *b, const km_pem_policy *p, km_pem_verdict *out,
                        km_err *err);

/* Appends the PEM blocks of the certificates whose verdict keeps them, in their original order,
 * to out.  KM_ENOMEM / KM_ETOOBIG from the buffer (out may then hold part of the text). */
km_status km_pem_encode_kept(const km_pem_bundle *b, const km_pem_verdict *v, km_buf *out);

#endif
