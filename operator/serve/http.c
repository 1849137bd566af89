/* http.c — /healthz, /readyz and /metrics on the bounded server of httpd.h, one service thread. */
#include "operator/serve/http.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "operator/base/buf.h"
#include "operator/base/log.h"
#include "operator/serve/httpd.h"

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define HEAD_MAX 8192      /* request line + headers */
#define HEAD_TIMEOUT 5.0   /* seconds to send a request head */
#define WRITE_TIMEOUT 10.0 /* seconds to read a response */

struct km_http {
    km_httpd *d;
    pthread_t thread;
    atomic_int stop;
    int port;
    char bind[64];
    km_metrics *metrics;
    km_http_check_fn live;
    km_http_check_fn ready;
    void (*collect)(void *user);
    void *user;
};

/* Strips a query string; true when the path part equals want. */
static int path_is(const char *path, const char *want)
{
    size_t n = strlen(want);
    return strncmp(path, want, n) == 0 && (path[n] == '\0' || path[n] == '?');
}

/* Builds the response for path into *code, *ctype and b. */
static void route(km_http *h, const char *path, int is_get, unsigned *code, const char **ctype,
                  km_buf *b)
{
    char reason[256] = "";
    *ctype = TEXT_PLAIN;
    int known = path_is(path, "/healthz") || path_is(path, "/readyz") ||
                (h->metrics && path_is(path, "/metrics"));
    if (!known) {
        *code = 404;
        (void)km_buf_puts(b, "404 page not found\n");
        return;
    }
    if (!is_get) {
        *code = 405;
        (void)km_buf_puts(b, "method not allowed\n");
        return;
    }
    if (path_is(path, "/healthz")) {
        if (!h->live || h->live(reason, sizeof(reason), h->user)) {
            *code = 200;
            (void)km_buf_puts(b, "ok");
        } else {
            reason[sizeof(reason) - 1] = '\0';
            *code = 503;
            (void)km_buf_printf(b, "unhealthy: %s\n", reason[0] ? reason : "unknown");
        }
    } else if (path_is(path, "/readyz")) {
        if (h->ready && h->ready(reason, sizeof(reason), h->user)) {
            *code = 200;
            (void)km_buf_puts(b, "ok");
        } else {
            reason[sizeof(reason) - 1] = '\0';
            *code = 503;
            (void)km_buf_printf(b, "not ready: %s\n",
                                reason[0] ? reason : (h->ready ? "unknown" : "no readiness check"));
        }
    } else {
        if (h->collect)
            h->collect(h->user);
        km_status st = km_metrics_render(h->metrics, b);
        if (st == KM_OK) {
            *code = 200;
            *ctype = KM_METRICS_CONTENT_TYPE;
        } else {
            km_buf_reset(b);
            *code = 500;
            (void)km_buf_printf(b, "metrics: %s\n", km_strerror(st));
        }
    }
}

/* The handler of every request (km_httpd_handler_fn). */
static void handle(const char *path, int is_get, unsigned *code, const char **ctype, km_buf *body,
                   void *user)
{
    route(user, path, is_get, code, ctype, body);
}

static void *serve(void *arg)
{
    km_http *h = arg;
    km_httpd_serve(h->d, &h->stop);
    return NULL;
}

/* The connection cap for this process's descriptor limit. */
static int conn_cap(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return km_httpd_default_conns(1024);
    return km_httpd_default_conns((long)rl.rlim_cur);
}

km_status km_http_start(const km_http_opts *opts, km_http **out, km_err *err)
{
    if (!opts || opts->port < 0 || opts->port > 65535)
        return km_err_set(err, KM_EINVAL, "http server: port must be 0..65535");
    const char *bind = opts->bind_address ? opts->bind_address : "";
    km_http *h = calloc(1, sizeof(*h));
    if (!h)
        return km_err_set(err, KM_ENOMEM, "http server: out of memory");
    km_status st = KM_OK;
    if ((size_t)snprintf(h->bind, sizeof(h->bind), "%s", bind) >= sizeof(h->bind)) {
        st = km_err_set(err, KM_EINVAL, "http server: bind address too long");
        goto out;
    }
    h->port = opts->port;
    h->metrics = opts->metrics;
    h->live = opts->live;
    h->ready = opts->ready;
    h->collect = opts->collect;
    h->user = opts->user;
    atomic_init(&h->stop, 0);

    km_httpd_limits lim = {.max_conns = conn_cap(),
                           .max_head = HEAD_MAX,
                           .head_timeout = HEAD_TIMEOUT,
                           .write_timeout = WRITE_TIMEOUT};
    st = km_httpd_new(h->bind, opts->port, &lim, handle, h, &h->d, &h->port, err);
    if (st != KM_OK)
        goto out;
    int rc = pthread_create(&h->thread, NULL, serve, h);
    if (rc != 0) {
        st = km_err_set(err, KM_EIO, "http server: thread: %s", strerror(rc));
        goto out;
    }
out:
    if (st != KM_OK) {
        km_httpd_free(h->d);
        free(h);
        return st;
    }
    km_log_info("http server listening", "address", h->bind[0] ? h->bind : "*", "port",
                KM_LOG_INT(h->port));
    *out = h;
    return KM_OK;
}

int km_http_port(const km_http *h)
{
    return h->port;
}

void km_http_stop(km_http *h)
{
    if (!h)
        return;
    atomic_store(&h->stop, 1);
    km_httpd_wake(h->d);
    pthread_join(h->thread, NULL);
    km_httpd_free(h->d);
    free(h);
}

km_status km_http_parse_address(const char *s, char *host, size_t hostn, int *port, km_err *err)
{
    if (!s)
        return km_err_set(err, KM_EINVAL, "bind address: empty");
    const char *colon = strrchr(s, ':');
    if (!colon)
        return km_err_set(err, KM_EINVAL, "bind address \"%s\": want [host]:port", s);
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen && s[0] == '[') {
        if (hlen < 2 || s[hlen - 1] != ']')
            return km_err_set(err, KM_EINVAL, "bind address \"%s\": malformed brackets", s);
        h = s + 1;
        hlen -= 2;
    } else if (memchr(s, ':', hlen) || memchr(s, '[', hlen) || memchr(s, ']', hlen)) {
        return km_err_set(err, KM_EINVAL, "bind address \"%s\": IPv6 needs [brackets]", s);
    }
    const char *p = colon + 1;
    if (*p < '0' || *p > '9')
        return km_err_set(err, KM_EINVAL, "bind address \"%s\": bad port", s);
    char *endp = NULL;
    errno = 0;
    long v = strtol(p, &endp, 10);
    if (errno || *endp || v < 0 || v > 65535)
        return km_err_set(err, KM_EINVAL, "bind address \"%s\": bad port", s);
    if (hlen >= hostn)
        return km_err_set(err, KM_EINVAL, "bind address \"%s\": host too long", s);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)v;
    return KM_OK;
}
