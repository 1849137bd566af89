/* invalid.h — a ClusterRecovery kubemend refuses (its spec or name fails kubemend's own checks
 * after passing the CRD's schema, e.g. on a server < 1.25 that ignores the CEL rules, or a
 * regex that does not compile): it completes at once as Failed/InvalidSpec, with the field path
 * and the problem, and never blocks the recoveries after it (it is never the active one). */
#ifndef KM_RECOVERY_INVALID_H
#define KM_RECOVERY_INVALID_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/events.h"
#include "operator/kube/kube.h"

/* The reason of condition Succeeded (and of the Warning Event) for a refused recovery. */
#define KM_REASON_INVALID_SPEC "InvalidSpec"

/* Writes obj's status (obj borrowed: a full ClusterRecovery as read from the API): phase Failed,
 * condition Succeeded False/InvalidSpec with message why, progress, completedAt and
 * observedGeneration; then records a Warning Event (events may be NULL).  Failure: the /status
 * write's error (persist.h; the caller retries), KM_ENOMEM; no Event then. */
km_status km_recovery_mark_invalid(km_kube *kube, km_events *events, const cJSON *obj,
                                   const char *why, km_err *err);

#endif
