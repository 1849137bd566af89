/* kube.c — the Kubernetes REST client: libcurl multi handle, retries, 401 handling, lists. */
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

#ifndef KM_VERSION
#define KM_VERSION "0.1.0"
#endif

#define RESP_MAX ((size_t)256 * 1024 * 1024) /* one response body */
#define STREAM_ERR_MAX ((size_t)64 * 1024)   /* a non-2xx body of a stream */
#define POLL_MS 100                          /* cancellation latency */

/* State shared by a client and its clones. */
typedef struct kube_shared {
    atomic_int refs;
    km_kubeconfig *cfg;
    km_ratelimit *rl;
    km_kube_opts opts;
    char *user_agent;
    char *base_url;   /* server, or server with tls-server-name as host */
    char *connect_to; /* "tsn:port:host:port" when tls-server-name is set */
    atomic_int rejected;
    atomic_int logged_401;
} kube_shared;

struct km_kube {
    kube_shared *sh;
    CURLM *multi;
    CURL *easy;
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
    o->qps = 50;
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
    sh->rl = km_ratelimit_new(sh->opts.qps, sh->opts.burst);
    if (!sh->user_agent || !sh->rl) {
        st = km_err_set(err, KM_ENOMEM, "out of memory");
        goto out;
    }
    st = shared_urls(sh, err);
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
    k->multi = curl_multi_init();
    k->easy = curl_easy_init();
    if (!k->multi || !k->easy) {
        curl_multi_cleanup(k->multi);
        curl_easy_cleanup(k->easy);
        free(k);
        return km_err_set(err, KM_ETRANSPORT, "cannot create a libcurl handle");
    }
    curl_multi_setopt(k->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(k->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 4L);
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
    *out = c;
    return KM_OK;
}

void km_kube_free(km_kube *k)
{
    if (!k)
        return;
    curl_easy_cleanup(k->easy);
    curl_multi_cleanup(k->multi);
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

static int canceled(const km_kube *k)
{
    return k->cancel && atomic_load(k->cancel);
}

/* ---- one exchange over libcurl ------------------------------------------------------------ */

typedef struct xfer {
    km_kube *k;
    CURL *h;
    struct curl_slist *hdrs;
    km_buf *body;         /* non-stream: whole body; stream: a non-2xx body */
    km_kube_stream_fn fn; /* stream: 2xx chunks go here */
    void *user;
    km_status cb_status; /* why a callback stopped the transfer */
    long retry_after;
    double last_data;
    long idle_ms;
    char errbuf[CURL_ERROR_SIZE];
} xfer;

static size_t on_header(char *data, size_t size, size_t n, void *user)
{
    xfer *x = user;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
        x->retry_after = 0; /* a new response (after 100-continue or a retry) */
    else if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
        char v[64];
        size_t vl = len - 12 < sizeof(v) - 1 ? len - 12 : sizeof(v) - 1;
        memcpy(v, data + 12, vl);
        v[vl] = '\0';
        x->retry_after = km_apierr_retry_after(v);
    }
    return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *user)
{
    xfer *x = user;
    size_t len = size * n;
    long code = 0;
    x->last_data = km_clock_mono();
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (x->fn && code >= 200 && code < 300) {
        km_status st = x->fn(data, len, x->user);
        if (st != KM_OK) {
            x->cb_status = st;
            return 0;
        }
        return len;
    }
    if (km_buf_append(x->body, data, len) != KM_OK) {
        x->cb_status = KM_ETOOBIG;
        return 0;
    }
    return len;
}

/* TLS and identity options shared by every request. */
static void setup_tls(xfer *x)
{
    km_kubeconfig *cfg = x->k->sh->cfg;
    const char *ca = km_kubeconfig_ca_pem(cfg);
    const char *cert = km_kubeconfig_client_cert_pem(cfg);
    const char *key = km_kubeconfig_client_key_pem(cfg);
    if (ca) {
        struct curl_blob b = {(void *)ca, strlen(ca), CURL_BLOB_NOCOPY};
        curl_easy_setopt(x->h, CURLOPT_CAINFO_BLOB, &b);
    }
    if (km_kubeconfig_insecure(cfg)) {
        curl_easy_setopt(x->h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(x->h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (cert && key) {
        struct curl_blob c = {(void *)cert, strlen(cert), CURL_BLOB_NOCOPY};
        struct curl_blob kb = {(void *)key, strlen(key), CURL_BLOB_NOCOPY};
        curl_easy_setopt(x->h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(x->h, CURLOPT_SSLCERT_BLOB, &c);
        curl_easy_setopt(x->h, CURLOPT_SSLKEYTYPE, "PEM");
        curl_easy_setopt(x->h, CURLOPT_SSLKEY_BLOB, &kb);
    }
}

/* Appends one header line; returns 0 on allocation failure. */
static int add_header(xfer *x, const char *line)
{
    struct curl_slist *l = curl_slist_append(x->hdrs, line);
    if (!l)
        return 0;
    x->hdrs = l;
    return 1;
}

static km_status setup_headers(xfer *x, const km_kube_req *req, const char *token)
{
    char line[256];
    int ok = 1;
    snprintf(line, sizeof(line), "Accept: %s", req->accept ? req->accept : "application/json");
    ok = ok && add_header(x, line);
    if (req->body) {
        snprintf(line, sizeof(line), "Content-Type: %s",
                 req->content_type ? req->content_type : "application/json");
        ok = ok && add_header(x, line) && add_header(x, "Expect:");
    }
    if (ok && token && *token) {
        km_buf auth;
        km_buf_init(&auth, 64 * 1024);
        ok = km_buf_printf(&auth, "Authorization: Bearer %s", token) == KM_OK &&
             add_header(x, km_buf_str(&auth));
        if (auth.data)
            explicit_bzero(auth.data, auth.len);
        km_buf_cleanup(&auth);
    }
    return ok ? KM_OK : KM_ENOMEM;
}

static km_status setup_request(xfer *x, const km_kube_req *req, const char *token,
                               struct curl_slist **connect_to)
{
    kube_shared *sh = x->k->sh;
    km_buf url;
    km_buf_init(&url, 0);
    km_status st = km_buf_printf(&url, "%s%s", sh->base_url, req->path);
    if (st == KM_OK)
        st = setup_headers(x, req, token);
    if (st != KM_OK)
        goto out;
    long timeout = req->timeout_ms > 0 ? req->timeout_ms : sh->opts.timeout_ms;
    CURL *h = x->h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, km_buf_str(&url));
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, sh->user_agent);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout < 10000 ? timeout : 10000L);
    if (!x->fn)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    if (strcmp(req->method, "GET") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    }
    if (sh->connect_to) {
        struct curl_slist *l = curl_slist_append(NULL, sh->connect_to);
        if (!l) {
            st = KM_ENOMEM;
            goto out;
        }
        *connect_to = l;
        curl_easy_setopt(h, CURLOPT_CONNECT_TO, l);
    }
    setup_tls(x);
out:
    km_buf_cleanup(&url); /* libcurl copied the URL */
    return st;
}

/* Runs the transfer on the multi handle until done, canceled or idle. */
static km_status run_transfer(xfer *x, CURLcode *rc)
{
    km_kube *k = x->k;
    km_status st = KM_OK;
    int done = 0, running = 1;
    *rc = CURLE_OK;
    x->last_data = km_clock_mono();
    if (curl_multi_add_handle(k->multi, x->h) != CURLM_OK)
        return KM_ETRANSPORT;
    while (!done) {
        CURLMcode mc = curl_multi_perform(k->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(k->multi, &left)) != NULL) {
            if (m->msg == CURLMSG_DONE && m->easy_handle == x->h) {
                *rc = m->data.result;
                done = 1;
            }
        }
        if (done)
            break;
        if (mc != CURLM_OK || !running) {
            *rc = CURLE_FAILED_INIT;
            break;
        }
        if (canceled(k)) {
            st = KM_ECANCELED;
            break;
        }
        if (x->idle_ms > 0 && (km_clock_mono() - x->last_data) * 1000 > (double)x->idle_ms) {
            st = KM_ETIMEOUT;
            break;
        }
        curl_multi_poll(k->multi, NULL, 0, POLL_MS, NULL);
    }
    curl_multi_remove_handle(k->multi, x->h);
    return st;
}

/* Transport errors that retrying cannot fix (TLS verification, bad URL, ...). */
static int transient(CURLcode rc, const char *errbuf)
{
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_NOT_BUILT_IN:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT:
    case CURLE_TOO_MANY_REDIRECTS:
        return 0;
    default:
        /* a TLS alert from the peer (e.g. client certificate refused) is not transient */
        return !strstr(errbuf, "alert");
    }
}

/* Fills reply/err after the transfer. */
static km_status finish_transfer(xfer *x, const km_kube_req *req, km_status st, CURLcode rc,
                                 km_kube_reply *reply, km_err *err)
{
    curl_off_t pre = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &reply->code);
    curl_easy_getinfo(x->h, CURLINFO_PRETRANSFER_TIME_T, &pre);
    reply->sent = pre > 0 || reply->code > 0;
    reply->retry_after = x->retry_after;
    if (st == KM_ECANCELED)
        return km_err_set(err, st, "%s %s: canceled", req->method, req->path);
    if (st == KM_ETIMEOUT)
        return km_err_set(err, st, "%s %s: no data for %ld ms", req->method, req->path, x->idle_ms);
    if (st != KM_OK)
        return km_err_set(err, st, "%s %s: libcurl multi handle failed", req->method, req->path);
    if (rc == CURLE_WRITE_ERROR && x->cb_status != KM_OK)
        return km_err_set(err, x->cb_status, "%s %s: %s", req->method, req->path,
                          x->cb_status == KM_ETOOBIG ? "response too large"
                                                     : "stopped by the callback");
    if (rc != CURLE_OK) {
        reply->code = 0;
        reply->transient = transient(rc, x->errbuf);
        return km_err_set(err, KM_ETRANSPORT, "%s %s%s: %s%s%s", req->method, x->k->sh->base_url,
                          req->path, curl_easy_strerror(rc), x->errbuf[0] ? ": " : "", x->errbuf);
    }
    return KM_OK;
}

/* One exchange with libcurl; stream mode when fn is set. */
static km_status curl_exchange(km_kube *k, const km_kube_req *req, const char *token,
                               km_kube_stream_fn fn, void *user, long idle_ms, km_kube_reply *reply,
                               km_buf *body, km_err *err)
{
    xfer x = {.k = k, .h = k->easy, .body = body, .fn = fn, .user = user, .idle_ms = idle_ms};
    struct curl_slist *connect_to = NULL;
    CURLcode rc = CURLE_OK;
    memset(reply, 0, sizeof(*reply));
    km_status st = setup_request(&x, req, token, &connect_to);
    if (st != KM_OK) {
        km_err_set(err, st, "%s %s: out of memory", req->method, req->path);
        goto out;
    }
    st = run_transfer(&x, &rc);
    st = finish_transfer(&x, req, st, rc, reply, err);
out:
    curl_easy_setopt(k->easy, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(k->easy, CURLOPT_CONNECT_TO, NULL);
    curl_slist_free_all(x.hdrs);
    curl_slist_free_all(connect_to);
    return st;
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
    return curl_exchange(k, req, token, NULL, NULL, 0, reply, body, err);
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
    st = exchange(k, req, token, r, body, e);
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
    km_buf_init(&body, RESP_MAX);
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
        if (resp && km_buf_append(resp, body.data ? body.data : "", body.len) != KM_OK)
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

/* ---- JSON helpers --------------------------------------------------------------------------- */

/* Performs a request and parses the 2xx body into *out (when out is non-NULL). */
static km_status do_json(km_kube *k, const km_kube_req *req, cJSON **out, km_err *err)
{
    km_buf resp;
    km_buf_init(&resp, RESP_MAX);
    km_status st = km_kube_do(k, req, NULL, out ? &resp : NULL, err);
    if (st == KM_OK && out) {
        cJSON *doc = km_json_parse(resp.data ? resp.data : "", resp.len);
        if (!doc)
            st = km_err_set(err, KM_EPARSE, "%s %s: response is not JSON", req->method, req->path);
        else
            *out = doc;
    }
    km_buf_cleanup(&resp);
    return st;
}

km_status km_kube_get(km_kube *k, const char *path, cJSON **out, km_err *err)
{
    km_kube_req req = {.method = "GET", .path = path};
    return do_json(k, &req, out, err);
}

static km_status send_obj(km_kube *k, const char *method, const char *path, const cJSON *obj,
                          cJSON **out, km_err *err)
{
    char *text = obj ? km_json_print(obj) : NULL;
    if (!text)
        return km_err_set(err, obj ? KM_ENOMEM : KM_EINVAL, "%s %s: no object", method, path);
    km_kube_req req = {.method = method, .path = path, .body = text, .body_len = strlen(text)};
    km_status st = do_json(k, &req, out, err);
    free(text);
    return st;
}

km_status km_kube_create(km_kube *k, const char *path, const cJSON *obj, cJSON **out, km_err *err)
{
    return send_obj(k, "POST", path, obj, out, err);
}

km_status km_kube_update(km_kube *k, const char *path, const cJSON *obj, cJSON **out, km_err *err)
{
    return send_obj(k, "PUT", path, obj, out, err);
}

km_status km_kube_patch(km_kube *k, const char *path, km_patch_type type, const char *patch,
                        cJSON **out, km_err *err)
{
    static const char *const types[] = {"application/merge-patch+json",
                                        "application/json-patch+json",
                                        "application/strategic-merge-patch+json"};
    if (!patch || (unsigned)type > KM_PATCH_STRATEGIC)
        return km_err_set(err, KM_EINVAL, "PATCH %s: no patch or unknown patch type", path);
    km_kube_req req = {.method = "PATCH",
                       .path = path,
                       .body = patch,
                       .body_len = strlen(patch),
                       .content_type = types[type]};
    return do_json(k, &req, out, err);
}

/* The DeleteOptions body for o (never NULL on success). */
static char *delete_body(const km_delete_opts *o)
{
    char *text = NULL;
    cJSON *d = cJSON_CreateObject();
    int ok = d && km_json_set_str(d, "apiVersion", "v1") == KM_OK &&
             km_json_set_str(d, "kind", "DeleteOptions") == KM_OK;
    if (ok && o && (o->uid || o->resource_version)) {
        cJSON *pre = km_json_obj(d, "preconditions");
        ok = pre && (!o->uid || km_json_set_str(pre, "uid", o->uid) == KM_OK) &&
             (!o->resource_version ||
              km_json_set_str(pre, "resourceVersion", o->resource_version) == KM_OK);
    }
    if (ok && o && o->propagation)
        ok = km_json_set_str(d, "propagationPolicy", o->propagation) == KM_OK;
    if (ok && o && o->grace_seconds >= 0)
        ok = km_json_set_num(d, "gracePeriodSeconds", (double)o->grace_seconds) == KM_OK;
    if (ok && o && o->dry_run) {
        cJSON *arr = cJSON_AddArrayToObject(d, "dryRun");
        ok = arr && cJSON_AddItemToArray(arr, cJSON_CreateString("All"));
    }
    if (ok)
        text = km_json_print(d);
    cJSON_Delete(d);
    return text;
}

km_status km_kube_delete(km_kube *k, const char *path, const km_delete_opts *o, cJSON **out,
                         km_err *err)
{
    char *text = delete_body(o);
    if (!text)
        return km_err_set(err, KM_ENOMEM, "DELETE %s: out of memory", path);
    km_kube_req req = {.method = "DELETE", .path = path, .body = text, .body_len = strlen(text)};
    km_status st = do_json(k, &req, out, err);
    free(text);
    return st;
}

/* ---- paths ---------------------------------------------------------------------------------- */

km_status km_kube_path(char *buf, size_t n, const char *group, const char *version, const char *ns,
                       const char *resource, const char *name, const char *sub)
{
    int core = !group || !*group;
    int r = snprintf(buf, n, "%s%s/%s%s%s/%s%s%s%s%s", core ? "/api" : "/apis/", core ? "" : group,
                     version ? version : "v1", ns ? "/namespaces/" : "", ns ? ns : "",
                     resource ? resource : "", name ? "/" : "", name ? name : "",
                     name && sub ? "/" : "", name && sub ? sub : "");
    return r < 0 || (size_t)r >= n ? KM_ETOOBIG : KM_OK;
}

char *km_kube_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ---- paginated list ------------------------------------------------------------------------- */

/* Appends "&key=escaped(value)" (or "?..." first); no-op when value is NULL. */
static km_status put_param(km_buf *b, const char *key, const char *value)
{
    if (!value)
        return KM_OK;
    char *esc = km_kube_escape(value);
    if (!esc)
        return KM_ENOMEM;
    km_status st = km_buf_printf(b, "%s%s=%s", strchr(km_buf_str(b), '?') ? "&" : "?", key, esc);
    free(esc);
    return st;
}

static km_status list_url(km_buf *b, const char *path, const km_list_opts *o, const char *cont)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%ld", o && o->limit > 0 ? o->limit : 500L);
    km_buf_reset(b);
    km_status st = km_buf_puts(b, path);
    if (st == KM_OK)
        st = put_param(b, "limit", lim);
    if (st == KM_OK && o)
        st = put_param(b, "labelSelector", o->label_selector);
    if (st == KM_OK && o)
        st = put_param(b, "fieldSelector", o->field_selector);
    if (st == KM_OK && cont)
        st = put_param(b, "continue", cont);
    else if (st == KM_OK && o && o->resource_version)
        st = put_param(b, "resourceVersion", o->resource_version);
    return st;
}

typedef struct list_state {
    char *cont;     /* continue token of the next page, NULL on the first */
    char *rv;       /* resourceVersion of the last page */
    int restarted;  /* the list was restarted after a 410 */
    int mark_first; /* the next delivered page is the first after a restart */
} list_state;

/* Hands one parsed page to fn and remembers continue / resourceVersion. */
static km_status list_page(const cJSON *doc, list_state *ls, km_kube_page_fn fn, void *user,
                           const char *path, km_err *err)
{
    cJSON *empty = NULL;
    const cJSON *items = KM_JSON_AT(doc, "items");
    if (!cJSON_IsArray(items)) {
        if (items && !cJSON_IsNull(items))
            return km_err_set(err, KM_EPARSE, "list %s: items is not an array", path);
        if (!(empty = cJSON_CreateArray()))
            return km_err_set(err, KM_ENOMEM, "out of memory");
        items = empty;
    }
    const char *rv = KM_JSON_STR(doc, "metadata", "resourceVersion");
    const char *cont = KM_JSON_STR(doc, "metadata", "continue");
    km_kube_page page = {.items = items,
                         .resource_version = rv ? rv : "",
                         .restarted = ls->mark_first,
                         .remaining = (long)KM_JSON_NUM(doc, -1, "metadata", "remainingItemCount")};
    ls->mark_first = 0;
    km_status st = fn(&page, user);
    cJSON_Delete(empty);
    if (st != KM_OK)
        return km_err_set(err, st, "list %s: stopped by the page callback", path);
    char *nrv = strdup(rv ? rv : "");
    char *ncont = cont && *cont ? strdup(cont) : NULL;
    if (!nrv || (cont && *cont && !ncont)) {
        free(nrv);
        free(ncont);
        return km_err_set(err, KM_ENOMEM, "out of memory");
    }
    free(ls->rv);
    free(ls->cont);
    ls->rv = nrv;
    ls->cont = ncont;
    return KM_OK;
}

/* Fetches the page for ls->cont.  KM_OK with *doc, or an error. */
static km_status list_fetch(km_kube *k, const char *path, const km_list_opts *o, list_state *ls,
                            cJSON **doc, km_err *err)
{
    km_buf url, resp;
    km_buf_init(&url, 0);
    km_buf_init(&resp, RESP_MAX);
    km_status st = list_url(&url, path, o, ls->cont);
    if (st != KM_OK) {
        km_err_set(err, st, "list %s: out of memory", path);
        goto out;
    }
    km_kube_req req = {.method = "GET", .path = km_buf_str(&url)};
    st = kube_do(k, &req, "list", NULL, &resp, err);
    if (st != KM_OK)
        goto out;
    *doc = km_json_parse(resp.data ? resp.data : "", resp.len);
    if (!*doc)
        st = km_err_set(err, KM_EPARSE, "list %s: response is not JSON", path);
out:
    km_buf_cleanup(&url);
    km_buf_cleanup(&resp);
    return st;
}

km_status km_kube_list(km_kube *k, const char *path, const km_list_opts *o, km_kube_page_fn fn,
                       void *user, char **out_rv, km_err *err)
{
    list_state ls = {0};
    km_status st = KM_OK;
    km_err e;
    if (!path || !fn)
        return km_err_set(err, KM_EINVAL, "list: path and callback are required");
    for (;;) {
        cJSON *doc = NULL;
        km_err_clear(&e);
        st = list_fetch(k, path, o, &ls, &doc, &e);
        if (st == KM_EAPI && e.http_code == 410 && ls.cont && !ls.restarted) {
            km_log_warn("list continue token expired; restarting the list", "path", path);
            free(ls.cont);
            ls.cont = NULL;
            ls.restarted = ls.mark_first = 1;
            continue;
        }
        if (st == KM_OK)
            st = list_page(doc, &ls, fn, user, path, &e);
        cJSON_Delete(doc);
        if (st != KM_OK || !ls.cont)
            break;
    }
    if (st == KM_OK && out_rv) {
        *out_rv = ls.rv;
        ls.rv = NULL;
    }
    if (st != KM_OK && err)
        *err = e;
    free(ls.cont);
    free(ls.rv);
    return st;
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
    st = curl_exchange(k, &req, token, fn, user, idle_timeout_ms, &r, &body, err);
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
