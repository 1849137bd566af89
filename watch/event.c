/* event.c — watch event parsing. */
#include "watch/event.h"

#include <string.h>

#include "operator/base/json.h"
#include "operator/base/num.h"

static const char *const type_names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};

const char *km_event_type_name(km_event_type t)
{
    if ((unsigned)t >= sizeof(type_names) / sizeof(type_names[0]))
        return "UNKNOWN";
    return type_names[t];
}

km_status km_event_parse(const char *line, size_t len, km_event *ev, km_err *err)
{
    km_status st = KM_OK;
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (!doc)
        return km_err_set(err, KM_EPARSE, "watch event: invalid JSON (%zu bytes)", len);
    for (; end && end < line + len; end++) { /* only whitespace may follow the object */
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
            st = km_err_set(err, KM_EPARSE, "watch event: trailing data after the JSON");
            goto out;
        }
    }
    if (!cJSON_IsObject(doc)) {
        st = km_err_set(err, KM_EPARSE, "watch event: not a JSON object");
        goto out;
    }
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "type"));
    if (!type) {
        st = km_err_set(err, KM_EPARSE, "watch event: missing \"type\"");
        goto out;
    }
    size_t t;
    for (t = 0; t < sizeof(type_names) / sizeof(type_names[0]); t++)
        if (strcmp(type, type_names[t]) == 0)
            break;
    if (t == sizeof(type_names) / sizeof(type_names[0])) {
        st = km_err_set(err, KM_EPARSE, "watch event: unknown type \"%.32s\"", type);
        goto out;
    }
    cJSON *obj = cJSON_GetObjectItemCaseSensitive(doc, "object");
    if (!cJSON_IsObject(obj)) {
        st = km_err_set(err, KM_EPARSE, "watch event %s: missing \"object\"", type_names[t]);
        goto out;
    }
    memset(ev, 0, sizeof(*ev));
    ev->type = (km_event_type)t;
    ev->doc = doc;
    ev->object = obj;
    ev->resource_version = KM_JSON_STR(obj, "metadata", "resourceVersion");
    if (ev->type == KM_EV_ERROR) {
        ev->code = KM_JSON_LONG(obj, 0, "code");
        const char *reason = KM_JSON_STR(obj, "reason");
        ev->expired = ev->code == 410 ||
                      (reason && (strcmp(reason, "Expired") == 0 || strcmp(reason, "Gone") == 0));
    }
    return KM_OK;
out:
    cJSON_Delete(doc);
    return st;
}

cJSON *km_event_take_object(km_event *ev)
{
    if (!ev->object)
        return NULL;
    cJSON *obj = cJSON_DetachItemViaPointer(ev->doc, ev->object);
    ev->object = NULL;
    return obj;
}

void km_event_cleanup(km_event *ev)
{
    if (!ev)
        return;
    cJSON_Delete(ev->doc);
    memset(ev, 0, sizeof(*ev));
}
