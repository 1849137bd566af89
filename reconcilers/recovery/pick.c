/* pick.c — which ClusterRecovery may run now, references for Events, completion (see
 * recovery.h); pure functions over objects, apart from the engine. */
#include <string.h>

#include "operator/base/json.h"
#include "reconcilers/recovery/recovery.h"

cJSON *km_recovery_ref(const cJSON *obj)
{
    cJSON *ref = cJSON_CreateObject();
    cJSON *md = ref ? cJSON_AddObjectToObject(ref, "metadata") : NULL;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    const char *uid = KM_JSON_STR(obj, "metadata", "uid");
    if (!md || !cJSON_AddStringToObject(ref, "apiVersion", KM_RECOVERY_API_VERSION) ||
        !cJSON_AddStringToObject(ref, "kind", KM_RECOVERY_KIND) ||
        !cJSON_AddStringToObject(md, "name", name ? name : "run-once") ||
        (uid && !cJSON_AddStringToObject(md, "uid", uid))) {
        cJSON_Delete(ref);
        return NULL;
    }
    return ref;
}

int km_recovery_is_completed(const cJSON *obj)
{
    const char *phase = KM_JSON_STR(obj, "status", "phase");
    return phase && (strcmp(phase, KM_PHASE_SUCCEEDED) == 0 || strcmp(phase, KM_PHASE_FAILED) == 0);
}

static int str_cmp0(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

int km_recovery_pick_active(const cJSON *const *objs, size_t n)
{
    int best = -1, best_running = 0;
    for (size_t i = 0; i < n; i++) {
        const cJSON *o = objs[i];
        if (!o || km_recovery_is_completed(o) || KM_JSON_STR(o, "metadata", "deletionTimestamp"))
            continue;
        const char *phase = KM_JSON_STR(o, "status", "phase");
        int running = phase && strcmp(phase, KM_PHASE_RUNNING) == 0;
        if (best >= 0) {
            const cJSON *b = objs[best];
            if (best_running && !running)
                continue;
            if (running == best_running) {
                /* RFC3339 timestamps of one format compare as strings. */
                int c = str_cmp0(KM_JSON_STR(o, "metadata", "creationTimestamp"),
                                 KM_JSON_STR(b, "metadata", "creationTimestamp"));
                if (c > 0 || (c == 0 && str_cmp0(KM_JSON_STR(o, "metadata", "name"),
                                                 KM_JSON_STR(b, "metadata", "name")) >= 0))
                    continue;
            }
        }
        best = (int)i;
        best_running = running;
    }
    return best;
}
