/* kube.c — the Kubernetes REST client: libcurl multi handle, retries, 401 handling, streams
 * (the JSON verbs and lists on top of it: kube_rest.c). */
#include "operator/base/clock.h"
#include "operator/kube/kube.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "operator/base/backoff.h"
#include "operator/base/json.h"
#include "operator/kube/apierror.h"
#include "operator/base/log.h"
#include "operator/kube/ratelimit.h"
#include "operator/kube/transfer.h"

#ifndef KM_VERSION
#define KM_VERSION "0.1.0"
#endif

#define STREAM_ERR_MAX ((size_t)64 * 1024) /* a non-2xx body of a stream */

/* State shared by a client and its clones. */
typedef struct kube_shared {
    atomic_int refs;
    km_kubeconfig *cfg;
    km_ratelimit *rl;
    km_kube_opts opts;
    char *user_agent;
    char *base_url;            /* server, or server with tls-server-name as host */
    char *connect_to;          /* "tsn:port:host:port" when tls-server-name is set */
    km_transfer_target target; /* what every exchange goes to (points into the above) */
    atomic_int rejected;
    atomic_int logged_401;
    atomic_int inflight; /* exchanges of the family in progress */
} kube_shared;

struct km_kube {
    kube_shared *sh;
    km_transfer *xfer; /* this client's connections */
    const atomic_int *cancel;
    km_kube_observe_fn observe;
    void *observe_user;
    km_kube_transport_fn transport;
    void *transport_user;
};

/* ---- global init, options ------------------------------------------------------------------ */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_FAILED_INIT;

static void global_init_once(void)
{
    g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

km_status km_kube_global_init(void)
{
    pthread_once(&g_once, global_init_once);
    return g_init_rc == CURLE_OK ? KM_OK : KM_ETRANSPORT;
}

void km_kube_opts_default(km_kube_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->qps = 0;
    o->adaptive = 1;
    o->burst = 100;
    o->timeout_ms = 30000;
    o->max_retries = 5;
    o->user_agent = NULL;
    o->backoff_initial = 0.5;
    o->backoff_max = 30;
    o->retry_after_max = 60;
}

void km_delete_opts_init(km_delete_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->grace_seconds = -1;
}

/* ---- construction -------------------------------------------------------------------------- */

static void shared_unref(kube_shared *sh)
{
    if (!sh || atomic_fetch_sub(&sh->refs, 1) != 1)
        return;
    km_ratelimit_free(sh->rl);
    free(sh->user_agent);
    free(sh->base_url);
    free(sh->connect_to);
    free(sh);
}

/* base_url and connect_to for a tls-server-name: the URL names tsn (SNI, certificate check,
 * Host) while CURLOPT_CONNECT_TO sends the connection to the real server. */
static km_status shared_urls(kube_shared *sh, km_err *err)
{
    const char *server = km_kubeconfig_server(sh->cfg);
    const char *tsn = km_kubeconfig_tls_server_name(sh->cfg);
    km_status st = KM_OK;
    char *host = NULL, *port = NULL, *url = NULL;
    CURLU *u = NULL;
    if (!server)
        return km_err_set(err, KM_ECONFIG, "%s: no server", km_kubeconfig_source(sh->cfg));
    if (!tsn) {
        sh->base_url = strdup(server);
        return sh->base_url ? KM_OK : km_err_set(err, KM_ENOMEM, "out of memory");
    }
    u = curl_url();
    if (!u || curl_url_set(u, CURLUPART_URL, server, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_HOST, tsn, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK) {
        st = km_err_set(err, KM_ECONFIG, "%s: server %s / tls-server-name %s: not a valid URL",
                        km_kubeconfig_source(sh->cfg), server, tsn);
        goto out;
    }
    size_t n = strlen(url);
    while (n > 8 && url[n - 1] == '/')
        url[--n] = '\0';
    km_buf b;
    km_buf_init(&b, 0);
    if (km_buf_printf(&b, "%s:%s:%s:%s", tsn, port, host, port) != KM_OK ||
        !(sh->connect_to = km_buf_take(&b)) || !(sh->base_url = strdup(url))) {
        km_buf_cleanup(&b);
        st = km_err_set(err, KM_ENOMEM, "out of memory");
    }
out:
    curl_free(host);
    curl_free(port);
    curl_free(url);
    curl_url_cleanup(u);
    return st;
}

static km_status shared_new(km_kubeconfig *cfg, const km_kube_opts *opts, kube_shared **out,
                            km_err *err)
{
    km_status st = KM_OK;
    kube_shared *sh = calloc(1, sizeof(*sh));
    if (!sh)
        return km_err_set(err, KM_ENOMEM, "out of memory");
    atomic_init(&sh->refs, 1);
    sh->cfg = cfg;
    if (opts)
        sh->opts = *opts;
    else
        km_kube_opts_default(&sh->opts);
    if (sh->opts.timeout_ms <= 0)
        sh->opts.timeout_ms = 30000;
    if (sh->opts.max_retries < 0)
        sh->opts.max_retries = 0;
    if (sh->opts.backoff_initial <= 0)
        sh->opts.backoff_initial = 0.5;
    if (sh->opts.backoff_max <= 0)
        sh->opts.backoff_max = 30;
    if (sh->opts.retry_after_max <= 0)
        sh->opts.retry_after_max = 60;
    sh->user_agent = strdup(sh->opts.user_agent ? sh->opts.user_agent : "kubemend/" KM_VERSION);
    sh->opts.user_agent = sh->user_agent;
    if (sh->opts.adaptive) {
        double max = sh->opts.qps > 0 ? sh->opts.qps : KM_KUBE_ADAPTIVE_MAX;
        sh->rl = km_ratelimit_new_adaptive(KM_KUBE_ADAPTIVE_START, 1, max, sh->opts.burst);
    } else {
        sh->rl = km_ratelimit_new(sh->opts.qps, sh->opts.burst);
    }
    if (!sh->user_agent || !sh->rl) {
        st = km_err_set(err, KM_ENOMEM, "out of memory");
        goto out;
    }
    st = shared_urls(sh, err);
    sh->target = (km_transfer_target){sh->base_url, sh->connect_to, sh->user_agent, sh->cfg,
                                      sh->opts.timeout_ms};
out:
    if (st != KM_OK) {
        shared_unref(sh);
        return st;
    }
    *out = sh;
    return KM_OK;
}

/* A client over sh (takes a reference on success). */
static km_status kube_alloc(kube_shared *sh, km_kube **out, km_err *err)
{
    km_kube *k = calloc(1, sizeof(*k));
    if (!k)
        return km_err_set(err, KM_ENOMEM, "out of memory");
    km_status st = km_transfer_new(&k->xfer, err);
    if (st != KM_OK) {
        free(k);
        return st;
    }
    atomic_fetch_add(&sh->refs, 1);
    k->sh = sh;
    *out = k;
    return KM_OK;
}

km_status km_kube_new(km_kubeconfig *cfg, const km_kube_opts *opts, km_kube **out, km_err *err)
{
    kube_shared *sh = NULL;
    km_kube *k = NULL;
    km_status st = km_kube_global_init();
    if (st != KM_OK)
        return km_err_set(err, st, "libcurl initialisation failed");
    if (!cfg)
        return km_err_set(err, KM_EINVAL, "no configuration");
    st = shared_new(cfg, opts, &sh, err);
    if (st != KM_OK)
        return st;
    st = kube_alloc(sh, &k, err);
    shared_unref(sh); /* k holds its own reference */
    if (st != KM_OK)
        return st;
    *out = k;
    return KM_OK;
}

km_status km_kube_clone(km_kube *k, km_kube **out, km_err *err)
{
    km_kube *c = NULL;
    km_status st = kube_alloc(k->sh, &c, err);
    if (st != KM_OK)
        return st;
    c->cancel = k->cancel;
    c->observe = k->observe;
    c->observe_user = k->observe_user;
    c->transport = k->transport;
    c->transport_user = k->transport_user;
    *out = c;
    return KM_OK;
}

void km_kube_free(km_kube *k)
{
    if (!k)
        return;
    km_transfer_free(k->xfer);
    shared_unref(k->sh);
    free(k);
}

void km_kube_set_cancel(km_kube *k, const atomic_int *flag)
{
    k->cancel = flag;
}

void km_kube_set_observer(km_kube *k, km_kube_observe_fn fn, void *user)
{
    k->observe = fn;
    k->observe_user = user;
}

void km_kube_set_transport(km_kube *k, km_kube_transport_fn fn, void *user)
{
    k->transport = fn;
    k->transport_user = user;
}

int km_kube_credentials_rejected(const km_kube *k)
{
    return atomic_load(&k->sh->rejected);
}

km_kubeconfig *km_kube_config(const km_kube *k)
{
    return k->sh->cfg;
}

/* ---- the retry loop ----------------------------------------------------------------------- */

static int idempotent(const char *method)
{
    return strcmp(method, "POST") != 0 && strcmp(method, "PATCH") != 0;
}

/* Audit-log verb of a request: collection GETs are "list". */
static const char *verb_of(const char *method, const char *path)
{
    if (strcmp(method, "POST") == 0)
        return "create";
    if (strcmp(method, "PUT") == 0)
        return "update";
    if (strcmp(method, "PATCH") == 0)
        return "patch";
    if (strcmp(method, "DELETE") == 0)
        return "delete";
    if (strstr(path, "watch=1") || strstr(path, "watch=true"))
        return "watch";
    /* segments after /api/v1 or /apis/G/V: RES or namespaces/NS/RES = collection */
    int core = strncmp(path, "/api/", 5) == 0;
    if (!core && strncmp(path, "/apis/", 6) != 0)
        return "get";
    const char *p = core ? path + 5 : path + 6;
    int skip = core ? 1 : 2, segs = 0;
    const char *first = NULL;
    for (; *p && *p != '?'; p++) {
        if (*p == '/')
            continue;
        if (skip-- <= 0) {
            segs++;
            if (!first)
                first = p;
        }
        while (p[1] && p[1] != '/' && p[1] != '?')
            p++;
    }
    if (segs == 1 || (segs == 3 && first && strncmp(first, "namespaces/", 11) == 0))
        return "list";
    return "get";
}

static void observe(km_kube *k, const char *verb, long code, double t0)
{
    if (k->observe)
        k->observe(verb, code, km_clock_mono() - t0, k->observe_user);
}

void km_kube_pace(km_kube *k, double *qps, int *inflight)
{
    if (qps)
        *qps = k ? km_ratelimit_rate(k->sh->rl) : 0;
    if (inflight)
        *inflight = k ? atomic_load(&k->sh->inflight) : 0;
}

/* The server rejected our credentials for good: remember, log once per client family. */
static km_status credentials_rejected(km_kube *k, km_err *err)
{
    kube_shared *sh = k->sh;
    atomic_store(&sh->rejected, 1);
    if (atomic_exchange(&sh->logged_401, 1) == 0)
        km_log_error(KM_KUBE_CREDENTIALS_REJECTED, "server", km_kubeconfig_server(sh->cfg),
                     "config", km_kubeconfig_source(sh->cfg));
    if (err)
        snprintf(err->message, sizeof(err->message), "%s", KM_KUBE_CREDENTIALS_REJECTED);
    return KM_EAPI;
}

static km_status exchange(km_kube *k, const km_kube_req *req, const char *token,
                          km_kube_reply *reply, km_buf *body, km_err *err)
{
    if (k->transport) {
        memset(reply, 0, sizeof(*reply));
        return k->transport(req, token, reply, body, err, k->transport_user);
    }
    return km_transfer_exchange(k->xfer, &k->sh->target, k->cancel, req, token, NULL, NULL, 0,
                                reply, body, err);
}

typedef struct attempt_state {
    km_backoff bo;
    int attempt;
    int reloaded_401; /* the token was re-read after a 401 already */
} attempt_state;

/* Decides what to do after a failed exchange: 1 = retry after *delay, 0 = give up. */
static int should_retry(km_kube *k, const km_kube_req *req, km_status st, const km_kube_reply *r,
                        const km_err *e, attempt_state *as, double *delay)
{
    const km_kube_opts *o = &k->sh->opts;
    int retry;
    if (req->no_retry || as->attempt >= o->max_retries)
        return 0;
    if (st == KM_EAPI)
        retry = r->code == 429 || (r->code >= 500 && idempotent(req->method));
    else if (st == KM_ETRANSPORT)
        retry = r->transient && (idempotent(req->method) || !r->sent);
    else
        retry = 0;
    if (!retry)
        return 0;
    double bo = km_backoff_next(&as->bo, km_backoff_rand());
    long ra = e ? e->retry_after : 0;
    *delay = ra > 0 ? ((double)ra < o->retry_after_max ? (double)ra : o->retry_after_max) : bo;
    return 1;
}

/* One attempt: token, rate limit, exchange, Status.  KM_OK only for 2xx. */
static km_status attempt_once(km_kube *k, const km_kube_req *req, const char *verb,
                              km_kube_reply *r, km_buf *body, km_err *e)
{
    char *token = NULL;
    km_status st = km_ratelimit_wait(k->sh->rl, k->cancel);
    if (st != KM_OK)
        return km_err_set(e, st, "%s %s: canceled", req->method, req->path);
    if (km_kubeconfig_token(k->sh->cfg, &token, NULL) != KM_OK)
        return km_err_set(e, KM_ENOMEM, "out of memory");
    double t0 = km_clock_mono();
    km_buf_reset(body);
    atomic_fetch_add(&k->sh->inflight, 1);
    st = exchange(k, req, token, r, body, e);
    atomic_fetch_sub(&k->sh->inflight, 1);
    double t1 = km_clock_mono();
    double ra = st == KM_OK ? (double)r->retry_after : 0;
    km_ratelimit_feedback_at(k->sh->rl, st == KM_OK ? r->code : 0, t1 - t0,
                             ra < k->sh->opts.retry_after_max ? ra : k->sh->opts.retry_after_max,
                             t1);
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    observe(k, verb, st == KM_OK ? r->code : 0, t0);
    if (st == KM_OK && (r->code < 200 || r->code >= 300)) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%ld", r->retry_after);
        km_apierr_parse(r->code, body->data, body->len, r->retry_after > 0 ? ra : NULL, e);
        st = KM_EAPI;
    }
    return st;
}

/* After a 401: 1 = retry at once with a re-read token; 0 = rejected for good (err set). */
static int retry_after_401(km_kube *k, attempt_state *as, km_err *e)
{
    char *tok = NULL;
    int changed = 0;
    if (!as->reloaded_401 && km_kubeconfig_token_from_file(k->sh->cfg)) {
        as->reloaded_401 = 1;
        if (km_kubeconfig_token_reload(k->sh->cfg, &tok, &changed) == KM_OK && tok) {
            explicit_bzero(tok, strlen(tok));
            free(tok);
        }
        if (changed)
            return 1;
    }
    credentials_rejected(k, e);
    return 0;
}

static km_status kube_do(km_kube *k, const km_kube_req *req, const char *verb, long *code,
                         km_buf *resp, km_err *err)
{
    const km_kube_opts *o = &k->sh->opts;
    attempt_state as = {.attempt = 0};
    km_kube_reply r = {0};
    km_err e;
    km_buf body;
    km_status st;
    km_err_clear(&e);
    km_buf_init(&body, KM_KUBE_BODY_MAX);
    km_backoff_init(&as.bo, o->backoff_initial, o->backoff_max, 2.0, 0.2);
    if (!req->method || !req->path || req->path[0] != '/') {
        st = km_err_set(&e, KM_EINVAL, "request needs a method and an absolute path");
        goto out;
    }
    for (;;) {
        double delay = 0;
        st = attempt_once(k, req, verb, &r, &body, &e);
        if (st == KM_OK)
            break;
        if (st == KM_EAPI && r.code == 401) {
            if (retry_after_401(k, &as, &e))
                continue;
            break;
        }
        if (!should_retry(k, req, st, &r, &e, &as, &delay))
            break;
        as.attempt++;
        km_log_debug("retrying request", "method", req->method, "path", req->path, "code",
                     KM_LOG_INT(r.code), "attempt", KM_LOG_INT(as.attempt), "delay",
                     KM_LOG_DBL(delay));
        if (km_clock_sleep(delay, k->cancel) != KM_OK) {
            st = km_err_set(&e, KM_ECANCELED, "%s %s: canceled", req->method, req->path);
            break;
        }
    }
    if (st == KM_OK) {
        atomic_store(&k->sh->rejected, 0);
        if (resp && resp->len == 0 && body.len <= resp->max) { /* hand it over: no copy */
            km_buf empty = *resp;
            size_t max = resp->max;
            *resp = body;
            resp->max = max;
            body = empty;
        } else if (resp && km_buf_append(resp, body.data ? body.data : "", body.len) != KM_OK)
            st = km_err_set(&e, KM_ETOOBIG, "%s %s: response does not fit", req->method, req->path);
    }
out:
    km_buf_cleanup(&body);
    if (code && (st == KM_OK || st == KM_EAPI))
        *code = r.code;
    if (st != KM_OK && err)
        *err = e;
    return st;
}

km_status km_kube_do(km_kube *k, const km_kube_req *req, long *code, km_buf *resp, km_err *err)
{
    return kube_do(k, req, verb_of(req->method ? req->method : "GET", req->path ? req->path : ""),
                   code, resp, err);
}

/* ---- streams -------------------------------------------------------------------------------- */

km_status km_kube_stream(km_kube *k, const char *path, long idle_timeout_ms, km_kube_stream_fn fn,
                         void *user, km_err *err)
{
    km_kube_req req = {.method = "GET", .path = path};
    km_kube_reply r;
    km_buf body;
    char *token = NULL;
    km_status st;
    km_buf_init(&body, STREAM_ERR_MAX);
    if (!path || path[0] != '/' || !fn) {
        st = km_err_set(err, KM_EINVAL, "stream: an absolute path and a callback are required");
        goto out;
    }
    if ((st = km_ratelimit_wait(k->sh->rl, k->cancel)) != KM_OK) {
        km_err_set(err, st, "GET %s: canceled", path);
        goto out;
    }
    if ((st = km_kubeconfig_token(k->sh->cfg, &token, NULL)) != KM_OK) {
        km_err_set(err, st, "out of memory");
        goto out;
    }
    double t0 = km_clock_mono();
    st = km_transfer_exchange(k->xfer, &k->sh->target, k->cancel, &req, token, fn, user,
                              idle_timeout_ms, &r, &body, err);
    observe(k, "watch", st == KM_OK ? r.code : 0, t0);
    if (st == KM_OK && (r.code < 200 || r.code >= 300)) {
        km_apierr_parse(r.code, body.data, body.len, NULL, err);
        st = KM_EAPI;
        attempt_state as = {.attempt = 0};
        if (r.code == 401 && retry_after_401(k, &as, err) && err)
            snprintf(err->message, sizeof(err->message), "%s",
                     "Unauthorized with the previous token; the token file changed: reconnect");
    } else if (st == KM_OK) {
        atomic_store(&k->sh->rejected, 0);
    }
out:
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    km_buf_cleanup(&body);
    return st;
}
