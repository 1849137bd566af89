/* conditions.c — metav1.Condition lists (see conditions.h). */
#include "reconcilers/step/conditions.h"

#include <string.h>

#include "operator/base/json.h"

static cJSON *cond_array(cJSON *status)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(status, "conditions");
    if (cJSON_IsArray(arr))
        return arr;
    cJSON_DeleteItemFromObjectCaseSensitive(status, "conditions");
    return cJSON_AddArrayToObject(status, "conditions");
}

const cJSON *km_cond_get(const cJSON *status, const char *type)
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

int km_cond_is(const cJSON *status, const char *type, const char *cstatus)
{
    const char *s = KM_JSON_STR(km_cond_get(status, type), "status");
    return s && strcmp(s, cstatus) == 0;
}

const char *km_cond_reason(const cJSON *status, const char *type)
{
    return KM_JSON_STR(km_cond_get(status, type), "reason");
}

static int str_eq(const cJSON *o, const char *key, const char *val)
{
    const char *s = KM_JSON_STR(o, key);
    return s && strcmp(s, val) == 0;
}

int km_cond_set(cJSON *status, const char *type, const char *cstatus, const char *reason,
                const char *message, long long generation, const char *now)
{
    if (!message)
        message = "";
    cJSON *arr = cond_array(status);
    if (!arr)
        return -1;
    cJSON *c = (cJSON *)km_cond_get(status, type);
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
