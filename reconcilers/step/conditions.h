/* conditions.h — metav1.Condition lists, as the API conventions kubectl relies on define them.
 *
 * One entry per `type`, each with `status` (True/False/Unknown), `reason` (CamelCase),
 * `message`, `observedGeneration` (always the generation the writer acted on) and
 * `lastTransitionTime`, which changes only when `status` flips (a new reason or message alone
 * keeps the old time).  Pure functions over a status object (cJSON, edited in place).  Times are
 * RFC 3339 UTC strings (operator/base/clock.h).
 *
 * Three words are kept apart in kubemend: a *condition* (this module, km_cond_*), km_status (the
 * C return code, operator/base/err.h) and the API server's Status error body
 * (operator/kube/apierror.h). */
#ifndef KM_CONDITIONS_H
#define KM_CONDITIONS_H

#include <cjson/cJSON.h>

/* Sets condition `type` in status.conditions (the array is created when missing):
 * status/reason/message/observedGeneration are always written; lastTransitionTime is set to
 * `now` when the condition is new or its status differs from cstatus, and kept otherwise.
 * message NULL = "".  Returns 1 when anything changed, 0 when the condition was already exactly
 * so (except that observedGeneration, reason or message may be equal), -1 on allocation failure
 * (the status may then miss the condition; callers treat it as fatal). */
int km_cond_set(cJSON *status, const char *type, const char *cstatus, const char *reason,
                const char *message, long long generation, const char *now);

/* The condition object of `type`, or NULL (borrowed from status). */
const cJSON *km_cond_get(const cJSON *status, const char *type);

/* 1 when condition `type` exists with status cstatus ("True"/"False"/"Unknown"), else 0. */
int km_cond_is(const cJSON *status, const char *type, const char *cstatus);

/* The reason of condition `type`, or NULL (borrowed). */
const char *km_cond_reason(const cJSON *status, const char *type);

#endif
