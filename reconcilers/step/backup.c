/* backup.c — the backup ConfigMap object (backup.h). */
#include "reconcilers/step/backup.h"

#include "operator/base/json.h"

km_status km_step_backup_object(const cJSON *cm, const char *ns, const char *name,
                                const char *recovery, cJSON **out)
{
    const char *rv = KM_JSON_STR(cm, "metadata", "resourceVersion");
    cJSON *obj = cJSON_CreateObject();
    cJSON *md = obj ? cJSON_AddObjectToObject(obj, "metadata") : NULL;
    cJSON *labels = md ? cJSON_AddObjectToObject(md, "labels") : NULL;
    cJSON *ann = md ? cJSON_AddObjectToObject(md, "annotations") : NULL;
    cJSON *data = cJSON_Duplicate(KM_JSON_AT(cm, "data"), 1);
    if (!ann || !data || !cJSON_AddStringToObject(obj, "apiVersion", "v1") ||
        !cJSON_AddStringToObject(obj, "kind", "ConfigMap") ||
        !cJSON_AddStringToObject(md, "name", name) ||
        !cJSON_AddStringToObject(md, "namespace", ns) ||
        !cJSON_AddStringToObject(labels, "app.kubernetes.io/managed-by", "kubemend") ||
        !cJSON_AddStringToObject(ann, "kubemend.io/recovery", recovery) ||
        !cJSON_AddStringToObject(ann, "kubemend.io/source-resource-version", rv ? rv : "") ||
        !cJSON_AddItemToObject(obj, "data", data)) {
        if (data && !cJSON_GetObjectItemCaseSensitive(obj, "data"))
            cJSON_Delete(data);
        cJSON_Delete(obj);
        return KM_ENOMEM;
    }
    *out = obj;
    return KM_OK;
}
