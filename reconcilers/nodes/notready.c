/* notready.c — NotReady nodes and taint-based eviction (see notready.h). */
#include "reconcilers/nodes/notready.h"

#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"

static time_t parse_time(const char *s)
{
    time_t t;
    return s && km_clock_parse(s, &t) == KM_OK ? t : 0;
}

int km_notready_node(const cJSON *node, time_t *since)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, KM_JSON_AT(node, "status", "conditions"))
    {
        const char *type = KM_JSON_STR(c, "type");
        if (!type || strcmp(type, "Ready") != 0)
            continue;
        const char *st = KM_JSON_STR(c, "status");
        if (since)
            *since = parse_time(KM_JSON_STR(c, "lastTransitionTime"));
        return !st || strcmp(st, "True") != 0;
    }
    if (since)
        *since = 0;
    return 1;
}

const char *km_notready_taint(const cJSON *node, time_t *added)
{
    static const char *const keys[] = {KM_NOTREADY_TAINT, KM_UNREACHABLE_TAINT};
    const cJSON *t;
    cJSON_ArrayForEach(t, KM_JSON_AT(node, "spec", "taints"))
    {
        const char *key = KM_JSON_STR(t, "key");
        const char *effect = KM_JSON_STR(t, "effect");
        if (!key || !effect || strcmp(effect, "NoExecute") != 0)
            continue;
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            if (strcmp(key, keys[i]) != 0)
                continue;
            if (added)
                *added = parse_time(KM_JSON_STR(t, "timeAdded"));
            return keys[i];
        }
    }
    return NULL;
}

/* 1 when toleration tol matches a NoExecute taint with this key and no value. */
static int matches(const cJSON *tol, const char *taint_key)
{
    const char *effect = KM_JSON_STR(tol, "effect");
    const char *key = KM_JSON_STR(tol, "key");
    const char *op = KM_JSON_STR(tol, "operator");
    const char *value = KM_JSON_STR(tol, "value");
    int exists = op && strcmp(op, "Exists") == 0;
    if (effect && *effect && strcmp(effect, "NoExecute") != 0)
        return 0;
    if (!key || !*key)
        return exists;
    if (strcmp(key, taint_key) != 0)
        return 0;
    if (exists)
        return 1;
    return (!op || !*op || strcmp(op, "Equal") == 0) && (!value || !*value);
}

long km_notready_tolerated(const cJSON *pod, const char *taint_key)
{
    long best = 0;
    int any = 0;
    const cJSON *tol;
    cJSON_ArrayForEach(tol, KM_JSON_AT(pod, "spec", "tolerations"))
    {
        if (!matches(tol, taint_key))
            continue;
        const cJSON *secs = cJSON_GetObjectItemCaseSensitive(tol, "tolerationSeconds");
        if (!cJSON_IsNumber(secs))
            return -1;
        long s = secs->valuedouble > 0 ? (long)secs->valuedouble : 0;
        if (!any || s < best)
            best = s;
        any = 1;
    }
    return best;
}

long km_notready_countdown(time_t base, long tolerated, time_t now)
{
    if (tolerated < 0)
        return -1;
    if (base == 0)
        base = now;
    long left = (long)(base - now) + tolerated;
    return left > 0 ? left : 0;
}
