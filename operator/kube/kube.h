/* kube.h — operator/kube: talking to the API server.  kube.h (this file: the REST client;
 * kube.c retries, credentials and the rate limit, transfer.c one libcurl exchange, kube_rest.c the
 * JSON verbs and paged lists), kubeconfig.h (kubeconfig / in-cluster configuration),
 * ratelimit.h (the client-side token bucket), apierror.h (a Status answer into km_err),
 * events.h (the Event recorder).
 *
 * The Kubernetes REST client (libcurl + cJSON).
 *
 * One km_kube = one libcurl multi handle (connection reuse, HTTP/2 when offered) used by ONE
 * thread at a time.  Threads that need their own connection (watches, workers, the lease) take
 * a km_kube_clone(): clones share the configuration, the client-side rate limiter (token bucket,
 * qps/burst), the request observer (metrics) and the "credentials rejected" state.
 *
 * Errors: a non-2xx answer is KM_EAPI with err->http_code and the Status reason/message/details;
 * no answer at all is KM_ETRANSPORT.  Idempotent requests (GET, PUT, DELETE, and list/watch) are
 * retried with exponential backoff + jitter on 429, 5xx and connection errors, honouring
 * Retry-After; POST and PATCH are retried only when the server cannot have applied them (429, or
 * a connection that was never established).  A 401 makes the client re-read a token file once;
 * if that does not help, the error is logged once ("credentials rejected — after a PKI rebuild
 * restart the operator's pod or run with --kubeconfig") and returned without retrying.
 * Nothing in errors or logs ever contains a token, key or request/response body of a Secret. */
#ifndef KM_KUBE_H
#define KM_KUBE_H

#include <stdatomic.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/buf.h"
#include "operator/base/err.h"
#include "operator/kube/kubeconfig.h"

typedef struct km_kube km_kube;

/* The largest response body the client accepts: KM_ETOOBIG beyond, never retried (a pager
 * asks for a smaller page).  Well inside the Deployment's 128 Mi memory limit (deploy/): a
 * body at the cap costs the body plus its parsed cJSON tree, about 2.5 times the cap. */
#define KM_KUBE_BODY_MAX ((size_t)32 * 1024 * 1024)

typedef struct km_kube_opts {
    double qps;             /* client-side rate (ceiling when adaptive); default 0: see adaptive */
    int burst;              /* token bucket size (default 100) */
    long timeout_ms;        /* default per-request timeout (default 30000) */
    int max_retries;        /* retries of retryable failures (default 5) */
    const char *user_agent; /* default "kubemend/<version>" */
    /* appended */
    double backoff_initial; /* first retry delay in seconds (default 0.5; x2 per retry) */
    double backoff_max;     /* longest retry delay (default 30) */
    double retry_after_max; /* cap on a server's Retry-After (default 60) */
    /* 1 (default): the rate adapts to the server (ratelimit.h, adaptive mode) between 1 qps and
     * qps when qps > 0, else KM_KUBE_ADAPTIVE_MAX, starting at KM_KUBE_ADAPTIVE_START (or qps
     * when lower).  0: a fixed token bucket of qps (0 = no client-side limit at all). */
    int adaptive;
} km_kube_opts;

#define KM_KUBE_ADAPTIVE_START 200.0
#define KM_KUBE_ADAPTIVE_MAX 5000.0

/* Fills o with the defaults above. */
void km_kube_opts_default(km_kube_opts *o);

/* Creates a client for cfg (borrowed: it must outlive the client and all its clones); opts NULL
 * = defaults.  On success *out is a new client the caller frees with km_kube_free; on failure
 * *out is untouched. */
km_status km_kube_new(km_kubeconfig *cfg, const km_kube_opts *opts, km_kube **out, km_err *err);

/* A new client for another thread sharing k's config, rate limiter, observer, cancel flag and
 * injected transport (km_kube_set_transport: then it must be thread-safe).
 * Caller frees it with km_kube_free.  On failure *out is untouched. */
km_status km_kube_clone(km_kube *k, km_kube **out, km_err *err);

/* Frees the client (its clones stay valid).  Accepts NULL. */
void km_kube_free(km_kube *k);

/* Requests in flight or waiting (rate limit, retry backoff) on this client end with KM_ECANCELED
 * soon after *flag becomes non-zero.  flag is borrowed and must outlive the client.  Inherited
 * by clones made afterwards. */
void km_kube_set_cancel(km_kube *k, const atomic_int *flag);

/* Called after every HTTP exchange (each retry counts): verb as in the API's audit log ("get",
 * "list", "watch", "create", "update", "patch", "delete"), HTTP code (0 for transport errors)
 * and duration.  Shared with clones made afterwards.  Must be thread-safe. */
typedef void (*km_kube_observe_fn)(const char *verb, long code, double seconds, void *user);
void km_kube_set_observer(km_kube *k, km_kube_observe_fn fn, void *user);

/* Non-zero once the server rejected this client's own credentials (401) for good. */
int km_kube_credentials_rejected(const km_kube *k);

/* The client family's pacing now: its rate limit in qps (0 = none) and the requests of the client
 * and its clones in flight.  Either pointer may be NULL.  Cannot fail. */
void km_kube_pace(km_kube *k, double *qps, int *inflight);

/* The config the client was made from (borrowed). */
km_kubeconfig *km_kube_config(const km_kube *k);

/* ---- raw requests ------------------------------------------------------------------------ */

typedef struct km_kube_req {
    const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *path;   /* absolute path incl. query, e.g. "/api/v1/pods?limit=500" */
    const char *body;   /* NULL = none */
    size_t body_len;
    const char *content_type; /* NULL = application/json when there is a body */
    const char *accept;       /* NULL = application/json */
    long timeout_ms;          /* 0 = client default */
    int no_retry;             /* 1 = never retry (caller handles 429, e.g. eviction) */
} km_kube_req;

/* Performs req.  On 2xx: KM_OK, *code set, the body appended to resp (resp may be NULL to
 * discard).  On non-2xx: KM_EAPI, *code set, err filled from the Status body, resp untouched.
 * Transport failure: KM_ETRANSPORT.  Cancelled: KM_ECANCELED.  code may be NULL. */
km_status km_kube_do(km_kube *k, const km_kube_req *req, long *code, km_buf *resp, km_err *err);

/* ---- JSON helpers on resource paths -------------------------------------------------------
 * out (may be NULL to discard) receives a new cJSON the caller frees with cJSON_Delete; on
 * failure *out is untouched.  Errors as km_kube_do. */

km_status km_kube_get(km_kube *k, const char *path, cJSON **out, km_err *err);
km_status km_kube_create(km_kube *k, const char *path, const cJSON *obj, cJSON **out, km_err *err);
km_status km_kube_update(km_kube *k, const char *path, const cJSON *obj, cJSON **out, km_err *err);

typedef enum km_patch_type {
    KM_PATCH_MERGE = 0, /* application/merge-patch+json */
    KM_PATCH_JSON,      /* application/json-patch+json */
    KM_PATCH_STRATEGIC, /* application/strategic-merge-patch+json (built-in kinds only) */
} km_patch_type;

km_status km_kube_patch(km_kube *k, const char *path, km_patch_type type, const char *patch,
                        cJSON **out, km_err *err);

typedef struct km_delete_opts {
    const char *uid;              /* preconditions.uid, NULL = none */
    const char *resource_version; /* preconditions.resourceVersion, NULL = none */
    const char *propagation;      /* "Foreground", "Background", "Orphan", NULL = server default */
    long grace_seconds;           /* -1 = server default */
    int dry_run;                  /* dryRun=All */
} km_delete_opts;

/* Fills o with "no options" (grace_seconds -1). */
void km_delete_opts_init(km_delete_opts *o);

/* DELETE with a DeleteOptions body (o may be NULL).  out gets what the server returned (a Status
 * or the object with deletionTimestamp). */
km_status km_kube_delete(km_kube *k, const char *path, const km_delete_opts *o, cJSON **out,
                         km_err *err);

/* ---- paginated list -------------------------------------------------------------------------- */

typedef struct km_kube_page {
    const cJSON *items;           /* the page's items array (borrowed, valid during the call) */
    const char *resource_version; /* the list's metadata.resourceVersion */
    int restarted;  /* 1 on the first page of a list restarted after an expired continue (410):
                       items already delivered may be delivered again */
    long remaining; /* metadata.remainingItemCount, -1 when absent */
} km_kube_page;

/* Called once per page; a non-KM_OK return stops the list and is returned by km_kube_list (its
 * err keeps what the callback wrote into it with that status, else says the callback stopped). */
typedef km_status (*km_kube_page_fn)(const km_kube_page *page, void *user);

typedef struct km_list_opts {
    const char *label_selector;   /* raw, escaped by the client; NULL = none */
    const char *field_selector;   /* raw; NULL = none */
    long limit;                   /* page size; 0 = 500 */
    const char *resource_version; /* NULL = most recent ("") */
} km_list_opts;

/* A list longer than this many pages fails (KM_ESTATE): a server whose continue tokens never end.
 */
#define KM_KUBE_LIST_PAGES_MAX 100000

/* Lists path page by page (limit/continue), calling fn per page, so no caller holds a whole
 * collection.  An expired continue token (410) restarts the list from the beginning (logged)
 * with page->restarted = 1; when a continue token of the restarted list expires too (a compacting
 * etcd), the list is fetched once more without limit (client-go's pager fallback, bounded by the
 * response cap), its page again marked restarted.  A page the response cap refuses (KM_ETOOBIG)
 * is asked again with half the limit.  A continue token the server handed out before in this
 * list (the list would loop) or more than KM_KUBE_LIST_PAGES_MAX pages fail with KM_ESTATE.
 * On success *out_rv (may be NULL) receives the last page's resourceVersion (malloc'ed, caller
 * frees).  On failure *out_rv is untouched. */
km_status km_kube_list(km_kube *k, const char *path, const km_list_opts *o, km_kube_page_fn fn,
                       void *user, char **out_rv, km_err *err);

/* ---- streams (watch) ---------------------------------------------------------------------- */

/* Receives raw body chunks as they arrive; non-KM_OK stops the stream and is returned. */
typedef km_status (*km_kube_stream_fn)(const char *data, size_t len, void *user);

/* GETs path (with its query) and streams the body to fn until the server ends it (KM_OK), no
 * byte arrives for idle_timeout_ms (KM_ETIMEOUT; 0 = none), the cancel flag is set
 * (KM_ECANCELED) or fn stops it.  Non-2xx: KM_EAPI with the Status parsed.  Not retried: the
 * watch state machine owns reconnects. */
km_status km_kube_stream(km_kube *k, const char *path, long idle_timeout_ms, km_kube_stream_fn fn,
                         void *user, km_err *err);

/* ---- paths ------------------------------------------------------------------------------- */

/* Writes "/api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUB]]" (group "" or NULL = core) or
 * "/apis/GROUP/VERSION/..." into buf.  ns, name, sub may be NULL.  KM_ETOOBIG if it does not
 * fit (buf then holds a truncated string). */
km_status km_kube_path(char *buf, size_t n, const char *group, const char *version, const char *ns,
                       const char *resource, const char *name, const char *sub);

/* Percent-encodes s for a URL query value.  Returns a malloc'ed string (caller frees) or NULL
 * on allocation failure. */
char *km_kube_escape(const char *s);

/* ---- additions (appended) ------------------------------------------------------------------ */

/* One-time process-wide libcurl initialisation.  Call from main before threads start (tests
 * call it too); idempotent and thread-safe.  KM_ETRANSPORT when libcurl cannot initialise. */
km_status km_kube_global_init(void);

/* One HTTP exchange as seen by the retry logic (tests replace the transport). */
typedef struct km_kube_reply {
    long code;        /* HTTP status; 0 when there was no response */
    long retry_after; /* Retry-After header in seconds, 0 = none */
    int sent;         /* 1 when the request may have reached the server */
    int transient;    /* transport errors: 1 when retrying may help (not TLS verification) */
} km_kube_reply;

/* Performs one exchange: KM_OK with reply->code (any HTTP status) and the body appended to body,
 * or KM_ETRANSPORT / KM_ECANCELED with err filled.  token (NULL = none) is the bearer token. */
typedef km_status (*km_kube_transport_fn)(const km_kube_req *req, const char *token,
                                          km_kube_reply *reply, km_buf *body, km_err *err,
                                          void *user);

/* Replaces libcurl under km_kube_do / get / list / ... for this client and the clones made from
 * it afterwards (not streams); fn NULL restores libcurl.  For tests. */
void km_kube_set_transport(km_kube *k, km_kube_transport_fn fn, void *user);

/* The message logged once and put in err->message when the server rejects the credentials. */
#define KM_KUBE_CREDENTIALS_REJECTED                                                               \
    "credentials rejected \xe2\x80\x94 after a PKI rebuild restart the operator's pod or run "     \
    "with --kubeconfig"

#endif
