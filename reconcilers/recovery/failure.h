/* failure.h — a ClusterRecovery run that ended on a PERMANENT error (issue 12, known bug (a)):
 * which errors are permanent, and how such an end is recorded so nothing retries it. */
#ifndef KM_RECOVERY_FAILURE_H
#define KM_RECOVERY_FAILURE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/events.h"
#include "operator/kube/kube.h"

#define KM_RECOVERY_FAILED_KEY_MAX 160

/* 1 when a run's error st/e is permanent — resuming would fail the same way: an API answer 4xx
 * other than 401, 408, 409, 429 (client-go's rule; 401 because after a PKI rebuild the
 * operator's own token may be stale and a new one heals it), or a local error other than
 * KM_ENOMEM and KM_ECANCELED.  Transient ones (reconcilers/step/retry.h) are not. */
int km_recovery_error_permanent(km_status st, const km_err *e);

/* Records that obj's run ended on e: an error log line, a Warning Event "Failed" (events may be
 * NULL), and its status written as failed (persist.h km_recovery_write_failed: phase Failed,
 * Succeeded False/PermanentError and the running step's condition naming e).  obj is borrowed
 * (a copy is written).  Never fails visibly: a status that cannot be written is logged
 * ("recovery failure not recorded in status"). */
void km_recovery_record_failure(km_kube *kube, km_events *events, const cJSON *obj,
                                const km_err *e);

/* "uid/generation" of obj into buf (size n >= KM_RECOVERY_FAILED_KEY_MAX): a permanent failure
 * is not retried until the object changes. */
void km_recovery_failed_key(const cJSON *obj, char *buf, size_t n);

#endif
