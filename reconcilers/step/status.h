/* status.h — the ClusterRecovery status object: metav1.Condition lists, phase, progress and
 * the /status write with optimistic concurrency.
 *
 * Conditions follow the API conventions kubectl relies on: one entry per `type`, each with
 * `status` (True/False/Unknown), `reason` (CamelCase), `message`, `observedGeneration` (always
 * the generation the writer acted on) and `lastTransitionTime`, which changes only when
 * `status` flips (a new reason or message alone keeps the old time).
 *
 * All functions here edit a cJSON status object in place and are pure (no I/O) except
 * km_status_write.  Times are RFC3339 UTC strings ("2026-11-26T09:56:52Z"). */
#ifndef KM_RECOVERY_STATUS_H
#define KM_RECOVERY_STATUS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

/* Condition types of a ClusterRecovery. */
#define KM_COND_SUCCEEDED "Succeeded"
#define KM_COND_TOKENS "TokensRegenerated"
#define KM_COND_EXTAUTH "ExtensionAuthCleaned"
#define KM_COND_CSR "CSRApprovalWindow"
#define KM_COND_PODS "PodsRestarted"

/* Phases. */
#define KM_PHASE_PENDING "Pending"
#define KM_PHASE_WAITING "Waiting"
#define KM_PHASE_RUNNING "Running"
#define KM_PHASE_SUCCEEDED "Succeeded"
#define KM_PHASE_FAILED "Failed"

/* Sets condition `type` in status.conditions (the array is created when missing):
 * status/reason/message/observedGeneration are always written; lastTransitionTime is set to
 * `now` when the condition is new or its status differs from cstatus, and kept otherwise.
 * message NULL = "".  Returns 1 when anything changed, 0 when the condition was already exactly
 * so (except that observedGeneration, reason or message may be equal), -1 on allocation failure
 * (the status may then miss the condition; callers treat it as fatal). */
int km_status_cond_set(cJSON *status, const char *type, const char *cstatus, const char *reason,
                       const char *message, long long generation, const char *now);

/* The condition object of `type`, or NULL (borrowed from status). */
const cJSON *km_status_cond_get(const cJSON *status, const char *type);

/* 1 when condition `type` exists with status cstatus ("True"/"False"/"Unknown"), else 0. */
int km_status_cond_is(const cJSON *status, const char *type, const char *cstatus);

/* The reason of condition `type`, or NULL (borrowed). */
const char *km_status_cond_reason(const cJSON *status, const char *type);

/* Sets the string `key` of status (phase, currentStep, progress, startedAt, completedAt ...).
 * KM_ENOMEM on allocation failure. */
km_status km_status_set_str(cJSON *status, const char *key, const char *val);

/* Sets status.observedGeneration.  KM_ENOMEM on allocation failure. */
km_status km_status_set_generation(cJSON *status, long long generation);

/* Writes obj's status through PUT <path>/status with obj's metadata.resourceVersion (optimistic
 * concurrency).  On 409 Conflict it re-GETs the object (<path>), and when it is still the same
 * object (same uid) puts OUR status (obj's) onto the fresh metadata and retries, up to 5 times.
 * obj (a full ClusterRecovery) is updated in place on success: its metadata is replaced by the
 * server's (new resourceVersion, deletionTimestamp, finalizers ...); its status stays ours.
 * path is the object's path without "/status".
 * Failure: the API error (KM_EAPI: 404 when the object is gone, 409 after the retries), the
 * object is unchanged except possibly its metadata (refreshed by a re-GET). */
km_status km_status_write(km_kube *kube, const char *path, cJSON *obj, km_err *err);

#endif
