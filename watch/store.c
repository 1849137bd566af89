/* store.c — thread-safe object cache keyed "namespace/name". */
#include "watch/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/json.h"
#include "operator/base/strmap.h"

typedef struct item {
    cJSON *obj;
    int change; /* during km_store_replace: 0, or 1 + KM_EV_ADDED / KM_EV_MODIFIED */
} item;

struct km_store {
    pthread_mutex_t mu;
    km_strmap *map; /* key -> item* */
};

struct km_store_snapshot {
    km_strmap *map; /* key -> item* */
};

km_status km_store_key(const cJSON *obj, char *buf, size_t n)
{
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    const char *ns = KM_JSON_STR(obj, "metadata", "namespace");
    if (!name || !*name)
        return KM_EINVAL;
    int w = ns && *ns ? snprintf(buf, n, "%s/%s", ns, name) : snprintf(buf, n, "%s", name);
    return w < 0 || (size_t)w >= n ? KM_ETOOBIG : KM_OK;
}

static int free_item_cb(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    item *it = val;
    cJSON_Delete(it->obj);
    free(it);
    return 0;
}

/* Frees a map of items. */
static void free_items(km_strmap *m)
{
    if (!m)
        return;
    km_strmap_each(m, free_item_cb, NULL);
    km_strmap_free(m);
}

/* Puts obj (owned on KM_OK) into a map of items, freeing a replaced item. */
static km_status map_put(km_strmap *m, cJSON *obj)
{
    char key[KM_STORE_KEY_MAX];
    km_status st = km_store_key(obj, key, sizeof(key));
    if (st != KM_OK)
        return st;
    item *it = calloc(1, sizeof(*it));
    if (!it)
        return KM_ENOMEM;
    it->obj = obj;
    void *old = NULL;
    st = km_strmap_put(m, key, it, &old);
    if (st != KM_OK) {
        free(it);
        return st;
    }
    if (old)
        free_item_cb(NULL, old, NULL);
    return KM_OK;
}

km_status km_store_new(km_store **out)
{
    km_store *s = calloc(1, sizeof(*s));
    if (!s)
        return KM_ENOMEM;
    s->map = km_strmap_new();
    if (!s->map) {
        free(s);
        return KM_ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return KM_OK;
}

void km_store_free(km_store *s)
{
    if (!s)
        return;
    free_items(s->map);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

size_t km_store_len(km_store *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = km_strmap_len(s->map);
    pthread_mutex_unlock(&s->mu);
    return n;
}

km_status km_store_put(km_store *s, cJSON *obj)
{
    pthread_mutex_lock(&s->mu);
    km_status st = map_put(s->map, obj);
    pthread_mutex_unlock(&s->mu);
    return st;
}

km_status km_store_delete(km_store *s, const char *key)
{
    pthread_mutex_lock(&s->mu);
    item *it = km_strmap_remove(s->map, key);
    pthread_mutex_unlock(&s->mu);
    if (!it)
        return KM_ENOTFOUND;
    free_item_cb(NULL, it, NULL);
    return KM_OK;
}

km_status km_store_get(km_store *s, const char *key, cJSON **out)
{
    km_status st = KM_OK;
    pthread_mutex_lock(&s->mu);
    item *it = km_strmap_get(s->map, key);
    if (!it) {
        st = KM_ENOTFOUND;
        goto out;
    }
    cJSON *copy = cJSON_Duplicate(it->obj, 1);
    if (!copy) {
        st = KM_ENOMEM;
        goto out;
    }
    *out = copy;
out:
    pthread_mutex_unlock(&s->mu);
    return st;
}

km_status km_store_view(km_store *s, const char *key, km_store_visit_fn fn, void *user)
{
    pthread_mutex_lock(&s->mu);
    item *it = km_strmap_get(s->map, key);
    if (it)
        fn(key, it->obj, user);
    pthread_mutex_unlock(&s->mu);
    return it ? KM_OK : KM_ENOTFOUND;
}

typedef struct each_ctx {
    km_store_visit_fn fn;
    void *user;
} each_ctx;

static int each_cb(const char *key, void *val, void *user)
{
    each_ctx *c = user;
    return c->fn(key, ((item *)val)->obj, c->user);
}

void km_store_each(km_store *s, km_store_visit_fn fn, void *user)
{
    each_ctx c = {fn, user};
    pthread_mutex_lock(&s->mu);
    km_strmap_each(s->map, each_cb, &c);
    pthread_mutex_unlock(&s->mu);
}

/* ---- snapshots ------------------------------------------------------------------------------ */

km_status km_store_snapshot_new(km_store_snapshot **out)
{
    km_store_snapshot *snap = calloc(1, sizeof(*snap));
    if (!snap)
        return KM_ENOMEM;
    snap->map = km_strmap_new();
    if (!snap->map) {
        free(snap);
        return KM_ENOMEM;
    }
    *out = snap;
    return KM_OK;
}

void km_store_snapshot_free(km_store_snapshot *snap)
{
    if (!snap)
        return;
    free_items(snap->map);
    free(snap);
}

km_status km_store_snapshot_add(km_store_snapshot *snap, const cJSON *obj)
{
    cJSON *copy = cJSON_Duplicate(obj, 1);
    if (!copy)
        return KM_ENOMEM;
    km_status st = map_put(snap->map, copy);
    if (st != KM_OK)
        cJSON_Delete(copy);
    return st;
}

size_t km_store_snapshot_len(const km_store_snapshot *snap)
{
    return km_strmap_len(snap->map);
}

/* Marks each new item against the old map and removes its counterpart from the old map, so
 * that what remains in the old map afterwards is exactly the vanished keys. */
static int diff_cb(const char *key, void *val, void *user)
{
    km_strmap *old = user;
    item *it = val;
    item *prev = km_strmap_remove(old, key);
    if (!prev) {
        it->change = 1 + KM_EV_ADDED;
        return 0;
    }
    const char *a = KM_JSON_STR(prev->obj, "metadata", "resourceVersion");
    const char *b = KM_JSON_STR(it->obj, "metadata", "resourceVersion");
    if (!a || !b || strcmp(a, b) != 0)
        it->change = 1 + KM_EV_MODIFIED;
    free_item_cb(NULL, prev, NULL);
    return 0;
}

typedef struct notify_ctx {
    km_store_change_fn fn;
    void *user;
} notify_ctx;

static int notify_deleted_cb(const char *key, void *val, void *user)
{
    (void)key;
    notify_ctx *c = user;
    c->fn(KM_EV_DELETED, ((item *)val)->obj, c->user);
    return 0;
}

static int notify_changed_cb(const char *key, void *val, void *user)
{
    (void)key;
    notify_ctx *c = user;
    item *it = val;
    if (it->change) {
        if (c->fn)
            c->fn((km_event_type)(it->change - 1), it->obj, c->user);
        it->change = 0;
    }
    return 0;
}

void km_store_replace(km_store *s, km_store_snapshot *snap, km_store_change_fn fn, void *user)
{
    pthread_mutex_lock(&s->mu);
    km_strmap *old = s->map;
    km_strmap_each(snap->map, diff_cb, old);
    s->map = snap->map;
    pthread_mutex_unlock(&s->mu);
    free(snap);

    /* Outside the lock: handlers may read the store.  Only this (the writer) thread changes the
     * live map, so iterating it here without the lock is safe against concurrent readers. */
    notify_ctx c = {fn, user};
    if (fn)
        km_strmap_each(old, notify_deleted_cb, &c);
    free_items(old);
    km_strmap_each(s->map, notify_changed_cb, &c);
}
