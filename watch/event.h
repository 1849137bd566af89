/* event.h — one line of a Kubernetes watch stream, parsed.
 *
 *   {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}
 *
 * An ERROR event carries a metav1.Status; code 410 (reason "Expired" or "Gone") means the
 * resourceVersion is too old and the caller must relist (ev.expired).  Each line is parsed once,
 * into one cJSON document owned by the event. */
#ifndef KM_EVENT_H
#define KM_EVENT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"

typedef enum km_event_type {
    KM_EV_ADDED = 0,
    KM_EV_MODIFIED,
    KM_EV_DELETED,
    KM_EV_BOOKMARK,
    KM_EV_ERROR,
} km_event_type;

typedef struct km_event {
    km_event_type type;
    cJSON *doc;                   /* the whole parsed line (owned; km_event_cleanup frees it) */
    cJSON *object;                /* doc's "object" (borrowed from doc), always a JSON object */
    const char *resource_version; /* object.metadata.resourceVersion (borrowed) or NULL */
    long code;                    /* ERROR: the Status code (0 when absent) */
    int expired;                  /* ERROR with code 410 (or reason Expired/Gone): relist */
} km_event;

/* "ADDED", "MODIFIED", ... (static); "UNKNOWN" for values out of range. */
const char *km_event_type_name(km_event_type t);

/* Parses one watch line (len bytes, need not be NUL-terminated).  On success *ev is filled and
 * the caller calls km_event_cleanup.  On failure *ev is untouched and err says why without
 * quoting the line (it may hold Secret data): KM_EPARSE for invalid JSON, a missing or unknown
 * "type", or a missing/non-object "object"; KM_ENOMEM. */
km_status km_event_parse(const char *line, size_t len, km_event *ev, km_err *err);

/* Detaches the object from the event: returns it (the caller frees with cJSON_Delete; its
 * resource_version pointer stays valid with it) and leaves ev->object NULL. */
cJSON *km_event_take_object(km_event *ev);

/* Frees the event's document (and the object unless taken).  Accepts NULL / an empty event. */
void km_event_cleanup(km_event *ev);

#endif
