/* transfer.c — one HTTP exchange over libcurl (see transfer.h). */
#include "operator/kube/transfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "operator/base/clock.h"
#include "operator/kube/apierror.h"

#define POLL_MS 100 /* cancellation latency */

struct km_transfer {
    CURLM *multi;
    CURL *easy;
};

km_status km_transfer_new(km_transfer **out, km_err *err)
{
    km_transfer *t = calloc(1, sizeof(*t));
    if (!t)
        return km_err_set(err, KM_ENOMEM, "out of memory");
    t->multi = curl_multi_init();
    t->easy = curl_easy_init();
    if (!t->multi || !t->easy) {
        km_transfer_free(t);
        return km_err_set(err, KM_ETRANSPORT, "cannot create a libcurl handle");
    }
    curl_multi_setopt(t->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(t->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 4L);
    *out = t;
    return KM_OK;
}

void km_transfer_free(km_transfer *t)
{
    if (!t)
        return;
    curl_easy_cleanup(t->easy);
    curl_multi_cleanup(t->multi);
    free(t);
}

typedef struct xfer {
    km_transfer *t;
    const km_transfer_target *to;
    const atomic_int *cancel;
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

/* True when a response body of the announced Content-Length (header value v, vl bytes) would not
 * fit where it goes: body's max unless it streams to the callback (2xx with fn). */
static int announced_too_big(xfer *x, const char *v, size_t vl)
{
    long code = 0;
    char num[32];
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (x->fn && code >= 200 && code < 300)
        return 0;
    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    if (vl == 0 || vl >= sizeof(num))
        return vl >= sizeof(num);
    memcpy(num, v, vl);
    num[vl] = '\0';
    char *end = NULL;
    unsigned long long n = strtoull(num, &end, 10);
    return end != num && n > x->body->max;
}

static size_t on_header(char *data, size_t size, size_t n, void *user)
{
    xfer *x = user;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
        x->retry_after = 0; /* a new response (after 100-continue or a retry) */
    else if (len > 15 && strncasecmp(data, "Content-Length:", 15) == 0 &&
             announced_too_big(x, data + 15, strcspn(data + 15, "\r\n"))) {
        x->cb_status = KM_ETOOBIG; /* stop before reading a body that cannot fit */
        return 0;
    } else if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
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
    km_kubeconfig *cfg = x->to->cfg;
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
    const km_transfer_target *to = x->to;
    km_buf url;
    km_buf_init(&url, 0);
    km_status st = km_buf_printf(&url, "%s%s", to->base_url, req->path);
    if (st == KM_OK)
        st = setup_headers(x, req, token);
    if (st != KM_OK)
        goto out;
    long timeout = req->timeout_ms > 0 ? req->timeout_ms : to->timeout_ms;
    CURL *h = x->h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, km_buf_str(&url));
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, to->user_agent);
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
    if (to->connect_to) {
        struct curl_slist *l = curl_slist_append(NULL, to->connect_to);
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
    km_transfer *k = x->t;
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
        if (x->cancel && atomic_load(x->cancel)) {
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
        return x->cb_status == KM_ETOOBIG
                   ? km_err_set(err, KM_ETOOBIG, "%s %s: response too large (over %zu bytes)",
                                req->method, req->path, x->body->max)
                   : km_err_set(err, x->cb_status, "%s %s: stopped by the callback", req->method,
                                req->path);
    if (rc != CURLE_OK) {
        reply->code = 0;
        reply->transient = transient(rc, x->errbuf);
        return km_err_set(err, KM_ETRANSPORT, "%s %s%s: %s%s%s", req->method, x->to->base_url,
                          req->path, curl_easy_strerror(rc), x->errbuf[0] ? ": " : "", x->errbuf);
    }
    return KM_OK;
}

km_status km_transfer_exchange(km_transfer *k, const km_transfer_target *to,
                               const atomic_int *cancel, const km_kube_req *req, const char *token,
                               km_kube_stream_fn fn, void *user, long idle_ms, km_kube_reply *reply,
                               km_buf *body, km_err *err)
{
    xfer x = {.t = k,
              .to = to,
              .cancel = cancel,
              .h = k->easy,
              .body = body,
              .fn = fn,
              .user = user,
              .idle_ms = idle_ms};
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
