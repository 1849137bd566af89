/* persist.h — writing a ClusterRecovery's status back: PUT <object>/status with the object's
 * resourceVersion (optimistic concurrency), keeping OUR status across conflicts. */
#ifndef KM_RECOVERY_PERSIST_H
#define KM_RECOVERY_PERSIST_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

/* Writes obj's status through PUT <path>/status with obj's metadata.resourceVersion.  On 409
 * Conflict it re-GETs the object (<path>), and when it is still the same object (same uid) puts
 * OUR status (obj's) onto the fresh metadata and retries, up to 5 times.  obj (a full
 * ClusterRecovery) is updated in place on success: its metadata is replaced by the server's (new
 * resourceVersion, deletionTimestamp, finalizers ...); its status stays ours.  path is the
 * object's path without "/status".  Empty strings in the status are not sent (the field is left
 * out: it reads the same, and some servers refuse "" - see persist.c).
 * Failure: the API error (KM_EAPI: 404 when the object is gone, 409 after the retries), KM_ESTATE
 * when the object was replaced (another uid); obj is unchanged except possibly its metadata
 * (refreshed by a re-GET). */
km_status km_recovery_write_status(km_kube *kube, const char *path, cJSON *obj, km_err *err);

/* Records a run that ended on a PERMANENT error (nothing retries it): phase Failed, completedAt,
 * condition Succeeded False/PermanentError with message, and step_cond (the condition of the
 * step that was running; NULL = none) False/Error with it, written with
 * km_recovery_write_status.  When the server rejects that status permanently too (what it
 * refuses may be anywhere in it), a minimal status is written instead: phase, startedAt,
 * completedAt, observedGeneration and those conditions.  obj (a full ClusterRecovery) is edited
 * in place.  Failure: the last write's error. */
km_status km_recovery_write_failed(km_kube *kube, const char *path, cJSON *obj,
                                   const char *step_cond, const char *message, km_err *err);

#endif
