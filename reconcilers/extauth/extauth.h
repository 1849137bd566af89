/* extauth.h — reconcilers/extauth: extauth.h (this file: the step), pem.h (the pure rules:
 * PEM bundles, which CA certificates are expired or superseded).
 *
 * The extensionApiserverAuthentication step: remove old CA certificates from
 * kube-system/extension-apiserver-authentication after a PKI rebuild.
 *
 * Each kube-apiserver merges its CAs into that ConfigMap and keeps the old ones until they
 * expire, so after a rebuild aggregated API servers keep trusting client certificates of the
 * old CA.  The step cleans `client-ca-file` and `requestheader-client-ca-file` (every other key
 * is left exactly as it is; a missing key is fine) with the rules of reconcilers/extauth/pem.h:
 *   current CA(s) = data["ca.crt"] of kube-system/kube-root-ca.crt (404 on 1.19, then only)
 *                   plus ctx->current_ca_pem (the operator's own CA bundle),
 *   pinned        = spec.pinnedFingerprints (SHA-256, hex, colons allowed; an invalid entry
 *                   fails the step before anything is read).
 *
 * Before the first write, the original data is saved once in
 * kube-system/extension-apiserver-authentication-backup-<recovery> (an existing backup is kept,
 * never overwritten: it holds the state before the first cleanup).  The write is a PUT with
 * metadata.resourceVersion; a 409 re-reads, recomputes and retries (at most 5 times).
 * status.extensionApiserverAuthentication: backup, removed [{key, subject, fingerprint,
 * reason expired|superseded}] (max 20), kept, readded [fingerprint], phase.
 *
 * Re-added old CAs: an API server still running with the old CA writes it back.  After a write
 * the step re-reads the ConfigMap after a short delay, and every run checks the fingerprints it
 * removed before: a removed certificate that is back is NOT removed again (no fight in a loop);
 * it is reported — Warning event ReAdded, status readded, condition False reason OldCAReAdded
 * naming the certificate.
 *
 * Left untouched, condition False with a clear reason: the ConfigMap is missing
 * (ConfigMapMissing), has no data object, a key is not a PEM bundle or the rules would remove
 * every certificate of a bundle (UnexpectedContent).
 * Dry run: reports what would be removed (status removed, phase DryRun) and writes nothing. */
#ifndef KM_EXTAUTH_H
#define KM_EXTAUTH_H

#include "operator/base/err.h"
#include "reconcilers/extauth/pem.h"
#include "reconcilers/step/step.h"

#define KM_EXTAUTH_NAMESPACE "kube-system"
#define KM_EXTAUTH_CONFIGMAP "extension-apiserver-authentication"
#define KM_EXTAUTH_BACKUP_PREFIX "extension-apiserver-authentication-backup-"

/* The step (see the file comment); its run: KM_OK with ctx->cond_* set when it ran to its end
 * (including the "left untouched" outcomes); KM_EINVAL for an invalid pinned fingerprint;
 * KM_ECANCELED when cancelled; API/transport errors otherwise (nothing half-written: the PUT
 * is the only change besides the backup). */
extern const km_step_def km_extauth_def;

/* The cluster's current CA(s): data["ca.crt"] of kube-system/kube-root-ca.crt (absent before
 * 1.20) plus ctx->current_ca_pem.  *out (caller frees with km_pem_free) may hold no certificate.
 * Failure: a transport error reading the ConfigMap (an API error only means "absent"),
 * KM_ENOMEM; *out untouched. */
km_status km_extauth_current(km_step_ctx *ctx, km_pem_bundle **out, km_err *err);

/* The step's verify hook (step.h): re-reads the ConfigMap and applies the step's rules (pem.h)
 * with only spec.pinnedFingerprints pinned — so an old CA added back after the cleanup counts.
 * Left: every certificate the rules would remove (key, subject, fingerprint prefix) and a bundle
 * that is not PEM.  A missing ConfigMap holds no old CA (True).  Failure: the read's error. */
km_status km_extauth_verify(km_step_ctx *ctx, km_err *err);

#endif
