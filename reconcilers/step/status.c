/* status.c — ClusterRecovery status: conditions, phase, /status writes. */
#include "reconcilers/step/status.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "operator/base/json.h"
#include "operator/base/log.h"

static cJSON *cond_array(cJSON *status)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(status, "conditions");
    if (cJSON_IsArray(arr))
        return arr;
    cJSON_DeleteItemFromObjectCaseSensitive(status, "conditions");
    return cJSON_AddArrayToObject(status, "conditions");
}

const cJSON *km_status_cond_get(const cJSON *status, const char *type)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(status, "conditions");
    const cJSON *c;
    if (!cJSON_IsArray(arr))
        return NULL;
    cJSON_ArrayForEach(c, arr)
    {
        const char *t = KM_JSON_STR(c, "type");
        if (t && strcmp(t, type) == 0)
            return c;
    }
    return NULL;
}

int km_status_cond_is(const cJSON *status, const char *type, const char *cstatus)
{
    const char *s = KM_JSON_STR(km_status_cond_get(status, type), "status");
    return s && strcmp(s, cstatus) == 0;
}

const char *km_status_cond_reason(const cJSON *status, const char *type)
{
    return KM_JSON_STR(km_status_cond_get(status, type), "reason");
}

static int str_eq(const cJSON *o, const char *key, const char *val)
{
    const char *s = KM_JSON_STR(o, key);
    return s && strcmp(s, val) == 0;
}

int km_status_cond_set(cJSON *status, const char *type, const char *cstatus, const char *reason,
                       const char *message, long long generation, const char *now)
{
    if (!message)
        message = "";
    cJSON *arr = cond_array(status);
    if (!arr)
        return -1;
    cJSON *c = (cJSON *)km_status_cond_get(status, type);
    int created = 0;
    if (!c) {
        c = cJSON_CreateObject();
        if (!c || !cJSON_AddItemToArray(arr, c)) {
            cJSON_Delete(c);
            return -1;
        }
        created = 1;
        if (km_json_set_str(c, "type", type) != KM_OK)
            return -1;
    }
    int flipped = created || !str_eq(c, "status", cstatus);
    int changed = flipped || !str_eq(c, "reason", reason) || !str_eq(c, "message", message) ||
                  KM_JSON_NUM(c, -1, "observedGeneration") != (double)generation ||
                  !KM_JSON_STR(c, "lastTransitionTime");
    if (!changed)
        return 0;
    if (km_json_set_str(c, "status", cstatus) != KM_OK ||
        km_json_set_num(c, "observedGeneration", (double)generation) != KM_OK ||
        km_json_set_str(c, "reason", reason) != KM_OK ||
        km_json_set_str(c, "message", message) != KM_OK)
        return -1;
    if (flipped || !KM_JSON_STR(c, "lastTransitionTime"))
        if (km_json_set_str(c, "lastTransitionTime", now) != KM_OK)
            return -1;
    return 1;
}

km_status km_status_set_str(cJSON *status, const char *key, const char *val)
{
    return km_json_set_str(status, key, val);
}

km_status km_status_set_generation(cJSON *status, long long generation)
{
    return km_json_set_num(status, "observedGeneration", (double)generation);
}

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

km_status km_status_write(km_kube *kube, const char *path, cJSON *obj, km_err *err)
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
        st = km_kube_update(kube, spath, obj, &out, &e);
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
