/* watcher.h — watch/: keeping up with the cluster.  watcher.h (this file: list+watch of one
 * resource; watcher_kube.c its transport over the client), lines.h (the incremental line
 * splitter of a watch stream), event.h (one watch line parsed), store.h (a small cache),
 * queue.h (the rate-limited work queue: the controllers' one retry policy), wait.h (waiting
 * for named objects to reach a condition on one watch).
 *
 * The list+watch state machine of one resource (client-go's reflector, with
 * explicit states like kube-rs's watcher), running on its own thread with its own connection.
 *
 *   INIT -> LISTING -> WATCHING -> (stream ended) WATCHING again from the last seen RV
 *                         |-> 410 Gone (HTTP status or ERROR event), oversized object -> LISTING
 *                         |-> transport/API/parse error, idle timeout -> BACKOFF -> WATCHING
 *           LISTING failed -> BACKOFF -> LISTING;   stop flag -> STOPPED
 *
 * Two options replace the LIST for a watcher that needs no cache of the whole collection (e.g.
 * waiting for a few named objects, watch/wait.h): initial_rv starts WATCHING at once from that
 * resourceVersion (no first list), and a resync hook runs instead of every LIST: it returns the
 * resourceVersion to watch from and brings what its handler cares about up to date itself.
 *
 * LISTING: paginated (limit=page_size, continue) through the transport's list, from
 *   resourceVersion "" (a consistent read).  client-go's first list uses "0" (served from the
 *   apiserver's watch cache), but with "0" the apiserver ignores `limit` and returns the whole
 *   collection in one response, which would break the memory budget for big resources; "" costs
 *   one etcd read per page and never goes back in time.  With a store attached, pages are built
 *   into a snapshot that is swapped in whole (km_store_replace): handlers get DELETED for objects
 *   that vanished while disconnected, ADDED for new ones and MODIFIED for changed ones; unchanged
 *   objects are not reported again.  Without a store every listed item is passed to on_event as
 *   ADDED page by page (nothing is held) — after every relist too, so events-only handlers must
 *   be idempotent and cannot see deletes missed while disconnected (use on_synced to resync).
 *   After each completed list: on_synced.
 * WATCHING: GET path?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=T
 *   (T uniform in [timeout_min_s, timeout_max_s], default 300-600) with an idle timeout of
 *   T + idle_grace_ms (no byte for that long: reconnect).  The stream is split incrementally
 *   (watch/lines.h, max_object_size) and each line parsed once (watch/event.h).  Every event and
 *   BOOKMARK advances RV; a stream the server ends is re-watched at once from RV.
 * BACKOFF: 0.8 s -> 30 s, factor 2, jitter 20 % (operator/base/backoff.h); reset when the previous
 *   failure is more than backoff_reset_s (120 s) ago.  Sleeps wake up on stop.
 *
 * Handlers run on the watcher thread: on_event(type, obj, user) for ADDED/MODIFIED/DELETED after
 * the store (if any) is updated, obj borrowed for the call (list items carry no kind/apiVersion).
 * They should be quick (enqueue a key into a km_queue). */
#ifndef KM_WATCHER_H
#define KM_WATCHER_H

#include <stdatomic.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "watch/event.h"
#include "watch/store.h"

/* How the watcher talks to the API server; km_watch_transport_kube() (watcher_kube.c) fills it
 * for a km_kube client, tests inject fakes.  Functions other than open run on the watcher thread
 * with the connection open returned. */
typedef struct km_watch_transport {
    /* Opens a connection for the watcher thread that ends requests with KM_ECANCELED soon after
     * *cancel becomes non-zero.  NULL = use ctx as the connection. */
    km_status (*open)(void *ctx, const atomic_int *cancel, void **conn, km_err *err);
    /* Closes what open returned.  NULL = nothing to close. */
    void (*close)(void *conn);
    /* As km_kube_list. */
    km_status (*list)(void *conn, const char *path, const km_list_opts *o, km_kube_page_fn fn,
                      void *user, char **out_rv, km_err *err);
    /* As km_kube_stream. */
    km_status (*stream)(void *conn, const char *path, long idle_timeout_ms, km_kube_stream_fn fn,
                        void *user, km_err *err);
    void *ctx;
    /* appended: as km_kube_get (for resync hooks; NULL when the transport has none). */
    km_status (*get)(void *conn, const char *path, cJSON **out, km_err *err);
} km_watch_transport;

/* Fills t to use k (borrowed; must outlive the watcher): open = km_kube_clone with the watcher's
 * stop flag as cancel flag, close = km_kube_free, list = km_kube_list, stream = km_kube_stream,
 * get = km_kube_get. */
void km_watch_transport_kube(km_watch_transport *t, km_kube *k);

typedef enum km_watch_state {
    KM_WATCH_INIT = 0,
    KM_WATCH_LISTING,
    KM_WATCH_WATCHING,
    KM_WATCH_BACKOFF,
    KM_WATCH_STOPPED,
} km_watch_state;

/* "init", "listing", "watching", "backoff", "stopped". */
const char *km_watch_state_name(km_watch_state s);

typedef void (*km_watch_event_fn)(km_event_type type, const cJSON *obj, void *user);
typedef void (*km_watch_synced_fn)(void *user);
/* Instead of a LIST: called on the watcher thread with its connection (t's functions take it);
 * on KM_OK *rv is the resourceVersion to watch from (malloc'ed; the watcher frees it).  A
 * failure backs off and calls it again. */
typedef km_status (*km_watch_resync_fn)(const km_watch_transport *t, void *conn, char **rv,
                                        void *user, km_err *err);

typedef struct km_watch_opts {
    const char *name;             /* for logs; NULL = path */
    const char *path;             /* collection path (required), e.g. "/api/v1/nodes" */
    const char *label_selector;   /* NULL = none */
    const char *field_selector;   /* NULL = none */
    long page_size;               /* list limit (default 500) */
    size_t max_object_size;       /* longest watch line (default 16 MiB) */
    km_store *store;              /* optional, borrowed, SMALL sets only (see store.h) */
    km_watch_event_fn on_event;   /* optional */
    km_watch_synced_fn on_synced; /* optional */
    void *user;                   /* passed to the handlers */
    km_watch_transport transport; /* required (list and stream), copied */
    int timeout_min_s;            /* watch timeoutSeconds range (default 300..600) */
    int timeout_max_s;
    long idle_grace_ms;     /* idle timeout = timeoutSeconds*1000 + this (default 30000) */
    double backoff_initial; /* seconds (default 0.8) */
    double backoff_max;     /* seconds (default 30) */
    double backoff_reset_s; /* reset the backoff after this long without failure (default 120) */
    /* appended */
    const char *initial_rv;    /* non-NULL: watch from here at once (no first list); copied */
    km_watch_resync_fn resync; /* non-NULL: called instead of every LIST (not with a store) */
} km_watch_opts;

/* Fills o with the defaults (no path, no transport, no handlers). */
void km_watch_opts_init(km_watch_opts *o);

typedef struct km_watch_stats {
    km_watch_state state;
    int synced;                  /* a list has completed */
    unsigned long long lists;    /* completed lists */
    unsigned long long relists;  /* completed lists after the first */
    unsigned long long watches;  /* watch requests made */
    unsigned long long restarts; /* watch requests made after an earlier one ended */
    unsigned long long expired;  /* 410 Gone seen (HTTP status or ERROR event) */
    unsigned long long errors;   /* failed lists/watches (transport, API, parse, idle, size) */
    unsigned long long events;   /* ADDED/MODIFIED/DELETED passed to on_event */
    unsigned long long bookmarks;
    char resource_version[64]; /* last seen ("" before the first list) */
} km_watch_stats;

typedef struct km_watcher km_watcher;

/* Creates a stopped watcher (strings in o are copied; store and transport.ctx are borrowed).  The
 * caller frees it with km_watcher_free.  On failure (KM_EINVAL: no path / transport functions,
 * KM_ENOMEM) *out is untouched and err says why. */
km_status km_watcher_new(const km_watch_opts *o, km_watcher **out, km_err *err);

/* Starts the watcher thread.  KM_ESTATE when already started; KM_EIO when the thread cannot be
 * created. */
km_status km_watcher_start(km_watcher *w, km_err *err);

/* Sets the stop flag (in-flight requests are cancelled, sleeps interrupted) and joins the
 * thread.  Idempotent; a no-op when not started. */
void km_watcher_stop(km_watcher *w);

/* Stops (km_watcher_stop) and frees.  Accepts NULL. */
void km_watcher_free(km_watcher *w);

/* Waits until the first list completed (KM_OK), timeout seconds ran out (KM_ETIMEOUT; < 0 =
 * forever) or the watcher stopped (KM_ECANCELED). */
km_status km_watcher_wait_synced(km_watcher *w, double timeout);

/* Non-zero once the first list completed (for /readyz). */
int km_watcher_synced(km_watcher *w);

/* Copies the counters (thread-safe; for /metrics). */
void km_watcher_stats(km_watcher *w, km_watch_stats *out);

#endif
