/* persist.c — the ClusterRecovery /status write (see persist.h). */
#include "reconcilers/recovery/persist.h"

#include <stdio.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/step/conditions.h"
#include "reconcilers/step/retry.h"

/* Replaces obj's metadata with a copy of fresh's.  KM_ENOMEM leaves obj unchanged. */
static km_status take_metadata(cJSON *obj, const cJSON *fresh)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(fresh, "metadata");
    if (!cJSON_IsObject(md))
        return KM_OK;
    cJSON *copy = cJSON_Duplicate(md, 1);
    if (!copy)
        return KM_ENOMEM;
    if (cJSON_GetObjectItemCaseSensitive(obj, "metadata")) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, "metadata", copy)) {
            cJSON_Delete(copy);
            return KM_ENOMEM;
        }
    } else if (!cJSON_AddItemToObject(obj, "metadata", copy)) {
        cJSON_Delete(copy);
        return KM_ENOMEM;
    }
    return KM_OK;
}

/* Removes, recursively, the object members whose value is the empty string (array elements stay):
 * an omitted field reads the same, and a kube-apiserver that vendors go-openapi's zero-value type
 * check (<= 1.22) built with Go >= 1.19 rejects "" for a string field as "null" (seen on the test
 * suites' 1.19 server: 422 "status.currentStep in body must be of type string: \"null\""). */
static void drop_empty_strings(cJSON *o)
{
    cJSON *it = o ? o->child : NULL;
    while (it) {
        cJSON *next = it->next;
        if (it->string && cJSON_IsString(it) && it->valuestring[0] == '\0')
            cJSON_Delete(cJSON_DetachItemViaPointer(o, it));
        else if (cJSON_IsObject(it) || cJSON_IsArray(it))
            drop_empty_strings(it);
        it = next;
    }
}

/* PUT of obj with its status written as drop_empty_strings() leaves it. */
static km_status put_status(km_kube *kube, const char *spath, const cJSON *obj, cJSON **out,
                            km_err *err)
{
    cJSON *body = cJSON_Duplicate(obj, 1);
    if (!body)
        return km_err_set(err, KM_ENOMEM, "status of %s: out of memory", spath);
    drop_empty_strings(cJSON_GetObjectItemCaseSensitive(body, "status"));
    km_status st = km_kube_update(kube, spath, body, out, err);
    cJSON_Delete(body);
    return st;
}

km_status km_recovery_write_status(km_kube *kube, const char *path, cJSON *obj, km_err *err)
{
    char spath[512];
    int n = snprintf(spath, sizeof(spath), "%s/status", path);
    if (n < 0 || (size_t)n >= sizeof(spath))
        return km_err_set(err, KM_EINVAL, "status path too long: %s", path);
    const char *uid = KM_JSON_STR(obj, "metadata", "uid");
    char uidbuf[128];
    snprintf(uidbuf, sizeof(uidbuf), "%s", uid ? uid : "");
    km_status st = KM_OK;
    for (int attempt = 0; attempt < 6; attempt++) {
        cJSON *out = NULL;
        km_err e;
        km_err_clear(&e);
        st = put_status(kube, spath, obj, &out, &e);
        if (st == KM_OK) {
            st = take_metadata(obj, out);
            cJSON_Delete(out);
            if (st != KM_OK)
                return km_err_set(err, st, "status of %s: out of memory", path);
            return KM_OK;
        }
        if (!(st == KM_EAPI && e.http_code == 409) || attempt == 5) {
            if (err)
                *err = e;
            return st;
        }
        km_log_debug("status conflict, re-reading", "path", path);
        cJSON *fresh = NULL;
        st = km_kube_get(kube, path, &fresh, err);
        if (st != KM_OK)
            return st;
        const char *fuid = KM_JSON_STR(fresh, "metadata", "uid");
        if (uidbuf[0] && (!fuid || strcmp(fuid, uidbuf) != 0)) {
            cJSON_Delete(fresh);
            return km_err_set(err, KM_ESTATE, "%s was replaced by another object", path);
        }
        st = take_metadata(obj, fresh);
        cJSON_Delete(fresh);
        if (st != KM_OK)
            return km_err_set(err, st, "status of %s: out of memory", path);
    }
    return st;
}

/* status.phase Failed with the failure's conditions, onto status (edited in place).  KM_ENOMEM. */
static km_status mark_failed(cJSON *status, long long gen, const char *step_cond,
                             const char *message)
{
    char now[KM_CLOCK_TEXT_MAX];
    km_clock_now_text(now, sizeof(now));
    if (km_json_set_str(status, "phase", KM_PHASE_FAILED) != KM_OK ||
        km_json_set_str(status, "completedAt", now) != KM_OK ||
        km_json_set_str(status, "progress", "failed: permanent error") != KM_OK ||
        km_json_set_num(status, "observedGeneration", (double)gen) != KM_OK ||
        km_cond_set(status, KM_COND_SUCCEEDED, "False", "PermanentError", message, gen, now) < 0 ||
        (step_cond && km_cond_set(status, step_cond, "False", "Error", message, gen, now) < 0))
        return KM_ENOMEM;
    cJSON_DeleteItemFromObjectCaseSensitive(status, "currentStep");
    return KM_OK;
}

/* A status holding only what a failure needs (startedAt kept from old). */
static cJSON *minimal_status(const cJSON *old)
{
    cJSON *st = cJSON_CreateObject();
    const char *started = KM_JSON_STR(old, "startedAt");
    if (st && started && km_json_set_str(st, "startedAt", started) != KM_OK) {
        cJSON_Delete(st);
        return NULL;
    }
    return st;
}

km_status km_recovery_write_failed(km_kube *kube, const char *path, cJSON *obj,
                                   const char *step_cond, const char *message, km_err *err)
{
    long long gen = (long long)KM_JSON_NUM(obj, 0, "metadata", "generation");
    cJSON *status = km_json_obj(obj, "status");
    km_err e;
    km_err_clear(&e);
    if (!status || mark_failed(status, gen, step_cond, message) != KM_OK)
        return km_err_set(err, KM_ENOMEM, "status of %s: out of memory", path);
    km_status st = km_recovery_write_status(kube, path, obj, &e);
    if (st == KM_OK || km_retry_transient(st, &e) || st != KM_EAPI) {
        if (st != KM_OK && err)
            *err = e;
        return st;
    }
    km_log_warn("status refused; writing a minimal failed status", "path", path, "error",
                e.message);
    cJSON *min = minimal_status(status);
    if (!min || mark_failed(min, gen, step_cond, message) != KM_OK ||
        !cJSON_ReplaceItemInObjectCaseSensitive(obj, "status", min)) {
        cJSON_Delete(min);
        return km_err_set(err, KM_ENOMEM, "status of %s: out of memory", path);
    }
    return km_recovery_write_status(kube, path, obj, err);
}
