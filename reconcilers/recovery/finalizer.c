/* finalizer.c — adding and removing a finalizer (see finalizer.h). */
#include "reconcilers/recovery/finalizer.h"

#include <stdlib.h>
#include <string.h>

#include "operator/base/json.h"

int km_finalizer_has(const cJSON *obj, const char *name)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, KM_JSON_AT(obj, "metadata", "finalizers"))
    {
        if (cJSON_IsString(f) && strcmp(f->valuestring, name) == 0)
            return 1;
    }
    return 0;
}

/* {"metadata":{"resourceVersion":RV,"finalizers":[the others..., name if add]}} */
static cJSON *patch_body(const cJSON *obj, const char *name, int add)
{
    const char *rv = KM_JSON_STR(obj, "metadata", "resourceVersion");
    cJSON *patch = cJSON_CreateObject();
    cJSON *md = patch ? cJSON_AddObjectToObject(patch, "metadata") : NULL;
    cJSON *list = md ? cJSON_AddArrayToObject(md, "finalizers") : NULL;
    int ok = list && (!rv || cJSON_AddStringToObject(md, "resourceVersion", rv));
    const cJSON *f;
    cJSON_ArrayForEach(f, KM_JSON_AT(obj, "metadata", "finalizers"))
    {
        if (ok && cJSON_IsString(f) && strcmp(f->valuestring, name) != 0)
            ok = cJSON_AddItemToArray(list, cJSON_CreateString(f->valuestring));
    }
    if (ok && add)
        ok = cJSON_AddItemToArray(list, cJSON_CreateString(name));
    if (!ok) {
        cJSON_Delete(patch);
        return NULL;
    }
    return patch;
}

km_status km_finalizer_set(km_kube *kube, const char *path, const cJSON *obj, const char *name,
                           int add, km_err *err)
{
    cJSON *patch = patch_body(obj, name, add);
    char *txt = patch ? cJSON_PrintUnformatted(patch) : NULL;
    km_status st = txt ? km_kube_patch(kube, path, KM_PATCH_MERGE, txt, NULL, err)
                       : km_err_set(err, KM_ENOMEM, "finalizer: out of memory");
    free(txt);
    cJSON_Delete(patch);
    return st;
}
