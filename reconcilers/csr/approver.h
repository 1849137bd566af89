/* approver.h — the background CSR approver: a CSR watch (watch/watcher.h: list, then watch from
 * the list's resourceVersion, relist on 410) that decides each pending CSR of a handled signer
 * (reconcilers/csr/decide.h) within the watch event that shows it.  Decided CSRs are left alone;
 * a CSR left pending is reported once.  The CSR approval window (window.h) runs it. */
#ifndef KM_CSR_APPROVER_H
#define KM_CSR_APPROVER_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "reconcilers/csr/decide.h"

typedef struct km_csr_hooks {
    /* A decision was made (r->out KM_CSR_APPROVED, _DENIED or _PENDING).  Approver's thread. */
    void (*decided)(const km_csr_result *r, void *user);
    /* An Event to record ("Normal"/"Warning", CamelCase reason).  Approver's thread. */
    void (*event)(const char *type, const char *reason, const char *message, void *user);
    void *user;
} km_csr_hooks;

typedef struct km_csr_approver km_csr_approver;

/* Starts the approver's threads.  kube is borrowed (cloned inside; it must outlive the
 * approver); csr_spec (the spec.csr block; may carry "dryRun": true) and hooks (may be NULL) are
 * copied.  It runs until km_csr_approver_stop — or, when csr_spec holds a string "windowEndsAt"
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
