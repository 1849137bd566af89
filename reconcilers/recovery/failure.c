/* failure.c — a run that ended on a permanent error (see failure.h). */
#include "reconcilers/recovery/failure.h"

#include <stdio.h>
#include <string.h>

#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/recovery/persist.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/recovery/spec.h"
#include "reconcilers/step/retry.h"

int km_recovery_error_permanent(km_status st, const km_err *e)
{
    if (km_retry_transient(st, e) || st == KM_ENOMEM || st == KM_ECANCELED)
        return 0;
    return !(st == KM_EAPI && (e->http_code == 409 || e->http_code == 401));
}

/* The condition of the step the recovery was running, or NULL. */
static const char *running_cond(const cJSON *obj)
{
    const char *cur = KM_JSON_STR(obj, "status", "currentStep");
    for (int i = 0; cur && i < KM_STEP_COUNT; i++)
        if (strcmp(km_recovery_step_key(i), cur) == 0)
            return km_recovery_step_def(i)->cond;
    return NULL;
}

void km_recovery_record_failure(km_kube *kube, km_events *events, const cJSON *obj, const km_err *e)
{
    char ebuf[768], msg[900], path[512];
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    km_err we;
    km_err_clear(&we);
    snprintf(msg, sizeof(msg), "permanent error, not retried: %s",
             km_err_str(e, ebuf, sizeof(ebuf)));
    km_log_error("recovery failed", "recovery", name ? name : "", "error", ebuf);
    cJSON *copy = cJSON_Duplicate(obj, 1);
    cJSON *ref = copy ? km_recovery_ref(copy) : NULL;
    if (ref)
        km_events_record(events, ref, "Warning", "Failed", msg);
    km_kube_path(path, sizeof(path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                 KM_RECOVERY_PLURAL, name ? name : "", NULL);
    if (!copy || km_recovery_write_failed(kube, path, copy, running_cond(copy), msg, &we) != KM_OK)
        km_log_error("recovery failure not recorded in status", "recovery", name ? name : "",
                     "error", copy ? km_err_str(&we, ebuf, sizeof(ebuf)) : "out of memory");
    cJSON_Delete(ref);
    cJSON_Delete(copy);
}

void km_recovery_failed_key(const cJSON *obj, char *buf, size_t n)
{
    const char *uid = KM_JSON_STR(obj, "metadata", "uid");
    snprintf(buf, n, "%s/%.0f", uid ? uid : "", KM_JSON_NUM(obj, 0, "metadata", "generation"));
}
