/* json.h — small cJSON helpers: path getters and setters.
 *
 * Paths are lists of object keys (keys may contain dots, like annotation names):
 *   const char *sa = KM_JSON_STR(pod, "spec", "serviceAccountName");
 * Getters return borrowed pointers into the document, or NULL / the default when any step is
 * missing or of the wrong type. */
#ifndef KM_JSON_H
#define KM_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"

/* The item at the NULL-terminated key path, or NULL. */
const cJSON *km_json_at(const cJSON *o, ...);
/* The string at the path, or NULL when missing or not a string. */
const char *km_json_str_at(const cJSON *o, ...);
/* The number at the path, or dflt. */
double km_json_num_at(const cJSON *o, double dflt, ...);
/* The boolean at the path (1/0), or dflt when missing or not a boolean. */
int km_json_bool_at(const cJSON *o, int dflt, ...);

#define KM_JSON_AT(o, ...) km_json_at((o), __VA_ARGS__, (const char *)NULL)
#define KM_JSON_STR(o, ...) km_json_str_at((o), __VA_ARGS__, (const char *)NULL)
#define KM_JSON_NUM(o, dflt, ...) km_json_num_at((o), (dflt), __VA_ARGS__, (const char *)NULL)
#define KM_JSON_BOOL(o, dflt, ...) km_json_bool_at((o), (dflt), __VA_ARGS__, (const char *)NULL)

/* 1 when arr is an array holding the string s, else 0 (arr may be NULL). */
int km_json_array_has_str(const cJSON *arr, const char *s);

/* Sets obj[key] to a copy of val (replacing any existing item).  KM_ENOMEM leaves obj as it was
 * (when replacing, the old item may already be gone: callers treat KM_ENOMEM as fatal). */
km_status km_json_set_str(cJSON *obj, const char *key, const char *val);
km_status km_json_set_num(cJSON *obj, const char *key, double val);
km_status km_json_set_bool(cJSON *obj, const char *key, int val);

/* Returns obj[key] if it is an object, else replaces/creates it as an empty object.  NULL on
 * allocation failure. */
cJSON *km_json_obj(cJSON *obj, const char *key);

/* Compact text of o (malloc'ed, caller frees with free()), or NULL on allocation failure. */
char *km_json_print(const cJSON *o);

/* Parses n bytes (need not be NUL-terminated).  New document the caller frees with cJSON_Delete,
 * or NULL when malformed or on allocation failure. */
cJSON *km_json_parse(const char *s, size_t n);

#endif
