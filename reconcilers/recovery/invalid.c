/* invalid.c — a refused ClusterRecovery completes as Failed/InvalidSpec (see invalid.h). */
#include "reconcilers/recovery/invalid.h"

#include <stdio.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "operator/base/num.h"
#include "reconcilers/recovery/persist.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/step/conditions.h"

km_status km_recovery_mark_invalid(km_kube *kube, km_events *events, const cJSON *obj,
                                   const char *why, km_err *err)
{
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    long long gen = km_num_llong(KM_JSON_NUM(obj, 0, "metadata", "generation"), 0);
    char path[1024], now[KM_CLOCK_TEXT_MAX], msg[1024];
    km_status st = KM_OK;
    cJSON *copy = cJSON_Duplicate(obj, 1), *ref = NULL;
    cJSON *status = copy ? km_json_obj(copy, "status") : NULL;
    if (!name || km_kube_path(path, sizeof(path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                              KM_RECOVERY_PLURAL, name, NULL) != KM_OK) {
        st = km_err_set(err, KM_EINVAL, "ClusterRecovery without a usable metadata.name");
        goto out;
    }
    snprintf(msg, sizeof(msg), "invalid spec, nothing was done: %s", why);
    km_clock_now_text(now, sizeof(now));
    if (!status || km_json_set_str(status, "phase", KM_PHASE_FAILED) != KM_OK ||
        km_json_set_str(status, "progress", "invalid spec") != KM_OK ||
        km_json_set_str(status, "currentStep", "") != KM_OK ||
        km_json_set_str(status, "completedAt", now) != KM_OK ||
        km_json_set_num(status, "observedGeneration", (double)gen) != KM_OK ||
        km_cond_set(status, KM_COND_SUCCEEDED, "False", KM_REASON_INVALID_SPEC, msg, gen, now) <
            0) {
        st = km_err_set(err, KM_ENOMEM, "recovery: out of memory");
        goto out;
    }
    if ((st = km_recovery_write_status(kube, path, copy, err)) != KM_OK)
        goto out;
    km_log_warn("recovery refused: invalid spec", "recovery", name, "error", why);
    if ((ref = km_recovery_ref(copy)))
        km_events_record(events, ref, "Warning", KM_REASON_INVALID_SPEC, msg);
out:
    cJSON_Delete(ref);
    cJSON_Delete(copy);
    return st;
}
