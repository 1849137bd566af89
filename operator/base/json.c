/* json.c — small cJSON helpers. */
#include "operator/base/json.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const cJSON *json_walk(const cJSON *o, va_list ap)
{
    const char *key;
    while (o && (key = va_arg(ap, const char *)) != NULL)
        o = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return o;
}

const cJSON *km_json_at(const cJSON *o, ...)
{
    va_list ap;
    va_start(ap, o);
    const cJSON *r = json_walk(o, ap);
    va_end(ap);
    return r;
}

const char *km_json_str_at(const cJSON *o, ...)
{
    va_list ap;
    va_start(ap, o);
    const cJSON *r = json_walk(o, ap);
    va_end(ap);
    return cJSON_IsString(r) ? r->valuestring : NULL;
}

double km_json_num_at(const cJSON *o, double dflt, ...)
{
    va_list ap;
    va_start(ap, dflt);
    const cJSON *r = json_walk(o, ap);
    va_end(ap);
    return cJSON_IsNumber(r) ? r->valuedouble : dflt;
}

int km_json_bool_at(const cJSON *o, int dflt, ...)
{
    va_list ap;
    va_start(ap, dflt);
    const cJSON *r = json_walk(o, ap);
    va_end(ap);
    return cJSON_IsBool(r) ? cJSON_IsTrue(r) : dflt;
}

int km_json_array_has_str(const cJSON *arr, const char *s)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0)
            return 1;
    }
    return 0;
}

static km_status json_set(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return KM_ENOMEM;
    if (cJSON_GetObjectItemCaseSensitive(obj, key)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item)) {
            cJSON_Delete(item);
            return KM_ENOMEM;
        }
        return KM_OK;
    }
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return KM_ENOMEM;
    }
    return KM_OK;
}

km_status km_json_set_str(cJSON *obj, const char *key, const char *val)
{
    return json_set(obj, key, cJSON_CreateString(val));
}

km_status km_json_set_num(cJSON *obj, const char *key, double val)
{
    return json_set(obj, key, cJSON_CreateNumber(val));
}

km_status km_json_set_bool(cJSON *obj, const char *key, int val)
{
    return json_set(obj, key, cJSON_CreateBool(val));
}

cJSON *km_json_obj(cJSON *obj, const char *key)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsObject(o))
        return o;
    o = cJSON_CreateObject();
    return json_set(obj, key, o) == KM_OK ? o : NULL;
}

char *km_json_print(const cJSON *o)
{
    return cJSON_PrintUnformatted(o);
}

cJSON *km_json_parse(const char *s, size_t n)
{
    return cJSON_ParseWithLength(s, n);
}
