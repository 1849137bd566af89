/* step.c — small helpers shared by the recovery steps (see step.h). */
#include "reconcilers/step/step.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "operator/base/json.h"
#include "operator/base/num.h"

long km_step_int(const km_step_ctx *ctx, const char *name)
{
    return km_num_long(km_schema_num(ctx->def ? ctx->def->fields : NULL, ctx->spec, name), 0);
}

int km_step_bool(const km_step_ctx *ctx, const char *name)
{
    return km_schema_bool(ctx->def ? ctx->def->fields : NULL, ctx->spec, name);
}

const char *km_step_str(const km_step_ctx *ctx, const char *name)
{
    return km_schema_str(ctx->def ? ctx->def->fields : NULL, ctx->spec, name);
}

int km_step_cancelled(const km_step_ctx *ctx)
{
    return ctx->cancel && atomic_load(ctx->cancel);
}

km_status km_step_save(km_step_ctx *ctx, km_err *err)
{
    return ctx->save ? ctx->save(ctx, err) : KM_OK;
}

void km_step_event(km_step_ctx *ctx, const char *type, const char *reason, const char *message)
{
    if (ctx->event)
        ctx->event(ctx, type, reason, message);
}

void km_step_eventf(km_step_ctx *ctx, const char *type, const char *reason, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    km_step_event(ctx, type, reason, msg);
}

void km_step_count(km_step_ctx *ctx, const char *counter, long delta)
{
    if (ctx->count)
        ctx->count(ctx, counter, delta);
}

void km_step_set_result(km_step_ctx *ctx, const char *status, const char *reason, const char *fmt,
                        ...)
{
    snprintf(ctx->cond_status, sizeof(ctx->cond_status), "%s", status);
    snprintf(ctx->cond_reason, sizeof(ctx->cond_reason), "%s", reason);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->cond_message, sizeof(ctx->cond_message), fmt, ap);
    va_end(ap);
}

km_status km_step_list_add(cJSON *obj, const char *key, const char *s, int max)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(arr)) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
        arr = cJSON_AddArrayToObject(obj, key);
        if (!arr)
            return KM_ENOMEM;
    }
    if (km_json_array_has_str(arr, s) || cJSON_GetArraySize(arr) >= max)
        return KM_OK;
    cJSON *str = cJSON_CreateString(s);
    if (!str || !cJSON_AddItemToArray(arr, str)) {
        cJSON_Delete(str);
        return KM_ENOMEM;
    }
    return KM_OK;
}

void km_step_counter_add(cJSON *obj, const char *key, long delta)
{
    cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNumber(n)) {
        cJSON_SetNumberValue(n, n->valuedouble + (double)delta);
        return;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    cJSON_AddNumberToObject(obj, key, (double)delta);
}
