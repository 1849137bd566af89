/* store.h — a thread-safe cache of one resource's objects, keyed "namespace/name" (cluster-scoped
 * objects: "name"), like client-go's cache.Store.
 *
 * FOR SMALL SETS ONLY (CertificateSigningRequests, Nodes, ClusterRecoveries): every object is
 * held in memory as a cJSON tree.  Never attach a store to pods or Secrets of a whole cluster;
 * watch those without a store (events only) and process lists page by page.
 *
 * The watcher is the store's single writer (km_store_put / km_store_delete / km_store_replace);
 * any thread may read.  Readers get a deep copy (km_store_get) or a visitor that runs under the
 * lock (km_store_view / km_store_each; visitors must not call back into the store).
 *
 * After a (re)list the watcher builds a km_store_snapshot from the list pages and swaps it in
 * whole with km_store_replace, which reports the difference to the previous contents: keys that
 * vanished as DELETED (deletes missed while disconnected), new keys as ADDED and keys whose
 * resourceVersion changed as MODIFIED. */
#ifndef KM_STORE_H
#define KM_STORE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "watch/event.h"

/* Large enough for any "namespace/name" (63 + 1 + 253) and its NUL. */
#define KM_STORE_KEY_MAX 320

typedef struct km_store km_store;
typedef struct km_store_snapshot km_store_snapshot;

/* Writes obj's key ("ns/name", or "name" without a namespace) into buf of size n.  KM_EINVAL
 * when metadata.name is missing, KM_ETOOBIG when it does not fit (buf then undefined). */
km_status km_store_key(const cJSON *obj, char *buf, size_t n);

/* A new empty store the caller frees with km_store_free.  On failure (KM_ENOMEM) *out is
 * untouched. */
km_status km_store_new(km_store **out);

/* Frees the store and every object in it.  Accepts NULL. */
void km_store_free(km_store *s);

/* Number of objects. */
size_t km_store_len(km_store *s);

/* Inserts or replaces obj under its key; the store takes ownership of obj on KM_OK.  On failure
 * (KM_EINVAL: no metadata.name, KM_ETOOBIG: key too long, KM_ENOMEM) the store is unchanged and
 * the caller still owns obj. */
km_status km_store_put(km_store *s, cJSON *obj);

/* Removes and frees the object under key.  KM_ENOTFOUND when absent. */
km_status km_store_delete(km_store *s, const char *key);

/* A deep copy of the object under key in *out (caller frees with cJSON_Delete).  KM_ENOTFOUND or
 * KM_ENOMEM leave *out untouched. */
km_status km_store_get(km_store *s, const char *key, cJSON **out);

/* Visitor: obj is borrowed and valid only during the call; return non-zero to stop km_store_each.
 */
typedef int (*km_store_visit_fn)(const char *key, const cJSON *obj, void *user);

/* Calls fn on the object under key, under the store's lock.  KM_ENOTFOUND when absent. */
km_status km_store_view(km_store *s, const char *key, km_store_visit_fn fn, void *user);

/* Calls fn for every object (unspecified order) under the store's lock, until fn returns
 * non-zero. */
void km_store_each(km_store *s, km_store_visit_fn fn, void *user);

/* ---- whole-set replacement after a (re)list ---------------------------------------------- */

/* A new empty snapshot the caller passes to km_store_replace or frees with
 * km_store_snapshot_free.  On failure (KM_ENOMEM) *out is untouched. */
km_status km_store_snapshot_new(km_store_snapshot **out);

/* Frees the snapshot and its objects.  Accepts NULL. */
void km_store_snapshot_free(km_store_snapshot *snap);

/* Adds a deep copy of obj (borrowed; e.g. a list page item), replacing an earlier object with the
 * same key.  On failure (KM_EINVAL, KM_ETOOBIG, KM_ENOMEM) the snapshot is unchanged. */
km_status km_store_snapshot_add(km_store_snapshot *snap, const cJSON *obj);

/* Number of objects in the snapshot. */
size_t km_store_snapshot_len(const km_store_snapshot *snap);

/* Reports one difference; obj is borrowed for the call (for DELETED: the last known state). */
typedef void (*km_store_change_fn)(km_event_type type, const cJSON *obj, void *user);

/* Makes snap the store's contents (under the lock; snap is consumed) and then, outside the lock,
 * calls fn (may be NULL) with DELETED for every key that vanished, then ADDED for every new key
 * and MODIFIED for every key whose metadata.resourceVersion changed; unchanged objects are not
 * reported.  Cannot fail.  Must be called from the store's writer thread. */
void km_store_replace(km_store *s, km_store_snapshot *snap, km_store_change_fn fn, void *user);

#endif
