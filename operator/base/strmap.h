/* strmap.h — a small string-keyed hash map (chained, power-of-two buckets, FNV-1a).
 *
 * The one hash map of kubemend (the work queue, the metrics series, the controllers' and steps'
 * small indexes).  Keys are copied; values are opaque
 * pointers the map never frees (the owner frees them, e.g. from km_strmap_each).  Not
 * thread-safe: the users lock around it. */
#ifndef KM_STRMAP_H
#define KM_STRMAP_H

#include <stddef.h>

#include "operator/base/err.h"

typedef struct km_strmap km_strmap;

/* A new empty map the caller frees with km_strmap_free.  NULL on allocation failure. */
km_strmap *km_strmap_new(void);

/* Frees the map and its key copies (not the values).  Accepts NULL. */
void km_strmap_free(km_strmap *m);

/* Number of entries. */
size_t km_strmap_len(const km_strmap *m);

/* The value under key, or NULL when absent (store non-NULL values to tell them apart). */
void *km_strmap_get(const km_strmap *m, const char *key);

/* Non-zero when key is present. */
int km_strmap_has(const km_strmap *m, const char *key);

/* Sets key to val.  *old (may be NULL) receives the previous value (NULL when the key was new),
 * which the caller then owns.  KM_ENOMEM leaves the map unchanged and *old untouched. */
km_status km_strmap_put(km_strmap *m, const char *key, void *val, void **old);

/* Removes key and returns its value (NULL when absent); the caller owns the value. */
void *km_strmap_remove(km_strmap *m, const char *key);

/* Calls fn for every entry (unspecified order) until it returns non-zero.  key is borrowed;
 * fn must not modify the map. */
typedef int (*km_strmap_fn)(const char *key, void *val, void *user);
void km_strmap_each(const km_strmap *m, km_strmap_fn fn, void *user);

#endif
