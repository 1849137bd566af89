/* http.c — /healthz, /readyz and /metrics on libwebsockets 4.x, one service thread, with a
 * connection table that bounds what clients can hold (see http.h). */
#include "operator/serve/http.h"

#include <errno.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "operator/base/buf.h"
#include "operator/base/log.h"

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define CHUNK 4096                     /* body bytes written per writeable callback */
#define MAX_BODY (16u * 1024u * 1024u) /* a /metrics body larger than this is a bug: 500 */
#define HEAD_MAX 8192                  /* request line + headers (lws max_http_header_data) */
#define HEAD_TIMEOUT 5                 /* seconds to send a request head */
#define WRITE_TIMEOUT 10               /* seconds to read a response */
#define CONNS_MIN 4
#define CONNS_MAX 128
#define FD_SPARE 8 /* lws's own descriptors (listen sockets, event pipe) beyond the connections */

/* What a tracked connection is doing. */
enum conn_state { FREE = 0, WAITING, BUSY };

/* One accepted connection: waiting for a request head since `since`, or answering one. */
typedef struct conn {
    struct lws *wsi; /* borrowed from lws; NULL when the slot is free */
    enum conn_state state;
    lws_usec_t since;
} conn;

struct km_http {
    struct lws_context *ctx;
    pthread_t thread;
    atomic_int stop;
    int port;
    char bind[64];
    km_metrics *metrics;
    km_http_check_fn live;
    km_http_check_fn ready;
    void (*collect)(void *user);
    void *user;
    int cap;     /* connections held at most */
    conn *conns; /* cap + 1 slots (the newcomer before an eviction) */
};

/* Per-transaction state: the response body being written. */
typedef struct session {
    char *body; /* malloc'ed, NULL when idle */
    size_t len;
    size_t off;
} session;

static void session_reset(session *s)
{
    free(s->body);
    s->body = NULL;
    s->len = 0;
    s->off = 0;
}

/* ---- the connection table (service thread only) ---- */

/* The slot of wsi, or NULL when wsi is not a tracked connection. */
static conn *conn_find(km_http *h, const struct lws *wsi)
{
    for (int i = 0; i <= h->cap; i++)
        if (h->conns[i].wsi == wsi)
            return &h->conns[i];
    return NULL;
}

/* Marks c as waiting for a request head from now on (a new connection or the end of a
 * response); lws closes it unless the head is complete HEAD_TIMEOUT seconds after the first of
 * its bytes (timeout_secs_ah_idle: bytes arriving do not extend it) or after this call. */
static void conn_wait(conn *c)
{
    c->state = WAITING;
    c->since = lws_now_usecs();
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_HTTP_KEEPALIVE_IDLE, HEAD_TIMEOUT);
}

/* Marks c as answering a request: lws closes it unless the response is read within
 * WRITE_TIMEOUT seconds. */
static void conn_busy(conn *c)
{
    c->state = BUSY;
    c->since = lws_now_usecs();
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_HTTP_CONTENT, WRITE_TIMEOUT);
}

/* The connection to close for a newcomer: the one waiting longest for its request head, or,
 * when every connection is answering, the oldest answer.  NULL when the table is empty. */
static conn *conn_victim(km_http *h)
{
    conn *best = NULL;
    for (int i = 0; i <= h->cap; i++) {
        conn *c = &h->conns[i];
        if (!c->wsi)
            continue;
        if (!best || (c->state == WAITING && best->state != WAITING) ||
            (c->state == best->state && c->since < best->since))
            best = c;
    }
    return best;
}

/* Tracks a new connection; at the cap, first closes conn_victim's (lws closes it before
 * returning).  Non-zero when no slot is free even then: the caller refuses wsi. */
static int conn_admit(km_http *h, struct lws *wsi)
{
    int n = 0;
    for (int i = 0; i <= h->cap; i++)
        n += h->conns[i].wsi != NULL;
    if (n >= h->cap) {
        conn *v = conn_victim(h);
        if (v)
            lws_set_timeout(v->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
    conn *c = conn_find(h, NULL);
    if (!c)
        return -1;
    c->wsi = wsi;
    conn_wait(c);
    return 0;
}

/* Forgets wsi (closed); nothing when it was not tracked. */
static void conn_forget(km_http *h, const struct lws *wsi)
{
    conn *c = conn_find(h, wsi);
    if (c)
        memset(c, 0, sizeof(*c));
}

/* ---- requests ---- */

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
        *code = HTTP_STATUS_NOT_FOUND;
        (void)km_buf_puts(b, "404 page not found\n");
        return;
    }
    if (!is_get) {
        *code = HTTP_STATUS_METHOD_NOT_ALLOWED;
        (void)km_buf_puts(b, "method not allowed\n");
        return;
    }
    if (path_is(path, "/healthz")) {
        if (!h->live || h->live(reason, sizeof(reason), h->user)) {
            *code = HTTP_STATUS_OK;
            (void)km_buf_puts(b, "ok");
        } else {
            reason[sizeof(reason) - 1] = '\0';
            *code = HTTP_STATUS_SERVICE_UNAVAILABLE;
            (void)km_buf_printf(b, "unhealthy: %s\n", reason[0] ? reason : "unknown");
        }
    } else if (path_is(path, "/readyz")) {
        if (h->ready && h->ready(reason, sizeof(reason), h->user)) {
            *code = HTTP_STATUS_OK;
            (void)km_buf_puts(b, "ok");
        } else {
            reason[sizeof(reason) - 1] = '\0';
            *code = HTTP_STATUS_SERVICE_UNAVAILABLE;
            (void)km_buf_printf(b, "not ready: %s\n",
                                reason[0] ? reason : (h->ready ? "unknown" : "no readiness check"));
        }
    } else {
        if (h->collect)
            h->collect(h->user);
        km_status st = km_metrics_render(h->metrics, b);
        if (st == KM_OK) {
            *code = HTTP_STATUS_OK;
            *ctype = KM_METRICS_CONTENT_TYPE;
        } else {
            km_buf_reset(b);
            *code = HTTP_STATUS_INTERNAL_SERVER_ERROR;
            (void)km_buf_printf(b, "metrics: %s\n", km_strerror(st));
        }
    }
}

/* True when the request announces a body (Transfer-Encoding, or a Content-Length but "0"). */
static int has_body(struct lws *wsi)
{
    char v[32];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return 1;
    int n = lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_CONTENT_LENGTH);
    return n != 0 && strcmp(v, "0") != 0;
}

static int write_body(struct lws *wsi, session *s, km_http *h);

/* Writes the status line and headers and queues the body.  A request that is not a GET or has
 * a body is answered at once and the connection closed, its body never read.  Non-zero: lws
 * closes the connection (also on failure to build or write the answer). */
static int respond(struct lws *wsi, session *s, km_http *h, const char *path)
{
    int is_get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    int body_sent = has_body(wsi);
    unsigned code = HTTP_STATUS_INTERNAL_SERVER_ERROR;
    const char *ctype = TEXT_PLAIN;
    km_buf b;
    km_buf_init(&b, MAX_BODY);
    if (is_get && body_sent) {
        code = HTTP_STATUS_REQ_ENTITY_TOO_LARGE;
        (void)km_buf_puts(&b, "request bodies are not accepted\n");
    } else {
        route(h, path, is_get, &code, &ctype, &b);
    }
    session_reset(s);
    s->body = km_buf_take(&b);
    km_buf_cleanup(&b);
    if (!s->body)
        return -1;
    s->len = strlen(s->body);

    unsigned char hdr[LWS_PRE + 512];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
    if (lws_add_http_common_headers(wsi, code, ctype, (lws_filepos_t)s->len, &p, end))
        return -1;
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (!is_get || body_sent) {
        /* short answers: written at once, then the connection is closed unread */
        unsigned char buf[LWS_PRE + 256];
        size_t n = s->len < 256 ? s->len : 256;
        memcpy(buf + LWS_PRE, s->body, n);
        (void)lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP_FINAL);
        session_reset(s);
        return -1;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* Writes the next chunk of the body; after the last one the connection waits for its next
 * request head.  Non-zero: lws closes the connection (write failure, or no keep-alive). */
static int write_body(struct lws *wsi, session *s, km_http *h)
{
    if (!s || !s->body)
        return 0;
    unsigned char buf[LWS_PRE + CHUNK];
    size_t n = s->len - s->off;
    if (n > CHUNK)
        n = CHUNK;
    int last = s->off + n == s->len;
    memcpy(buf + LWS_PRE, s->body + s->off, n);
    if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    s->off += n;
    if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    session_reset(s);
    conn *c = conn_find(h, wsi);
    if (c) /* first: a pipelined request may be handled inside transaction_completed */
        conn_wait(c);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    session *s = user;
    km_http *h = lws_context_user(lws_get_context(wsi));
    conn *c;
    switch (reason) {
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        /* a new connection, accepted before any byte of it is read */
        if (h && h->conns && !conn_find(h, wsi) && conn_admit(h, wsi))
            return -1;
        return 0;
    case LWS_CALLBACK_HTTP:
        c = conn_find(h, wsi);
        if (c)
            conn_busy(c);
        return respond(wsi, s, h, in ? (const char *)in : "/");
    case LWS_CALLBACK_HTTP_BODY:
        return -1; /* never asked for (respond closes first); refuse */
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return write_body(wsi, s, h);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (s)
            session_reset(s);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (h && h->conns)
            conn_forget(h, wsi);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {"http", callback, sizeof(session), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_emit(int level, const char *line)
{
    char msg[256];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (n >= sizeof(msg))
        n = sizeof(msg) - 1;
    memcpy(msg, line, n);
    msg[n] = '\0';
    if (level & LLL_ERR)
        km_log_error("http server", "lws", msg);
    else
        km_log_warn("http server", "lws", msg);
}

static void *serve(void *arg)
{
    km_http *h = arg;
    while (!atomic_load(&h->stop)) {
        if (lws_service(h->ctx, 0) < 0)
            break;
    }
    return NULL;
}

/* The connection cap for this process's descriptor limit: an eighth of it, CONNS_MIN..CONNS_MAX,
 * so that most descriptors stay for the API client. */
static int conn_cap(void)
{
    struct rlimit rl;
    long nofile = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        nofile = (long)rl.rlim_cur;
    long n = nofile / 8;
    return n < CONNS_MIN ? CONNS_MIN : n > CONNS_MAX ? CONNS_MAX : (int)n;
}

/* A context listening on h->bind:h->port with lws's own bounds set from h->cap.  NULL on
 * failure (lws logs why). */
static struct lws_context *make_context(km_http *h, int disable_ipv6)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.iface = h->bind[0] ? h->bind : NULL;
    info.port = h->port;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.user = h;
    info.server_string = "kubemend";
    info.keepalive_timeout = HEAD_TIMEOUT;
    info.timeout_secs = WRITE_TIMEOUT;
    info.timeout_secs_ah_idle = HEAD_TIMEOUT;
    info.max_http_header_data = HEAD_MAX;
    info.max_http_header_pool = (unsigned short)(h->cap + 1);
    info.fd_limit_per_thread = (unsigned)(h->cap + 1 + FD_SPARE);
    if (disable_ipv6)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    return lws_create_context(&info);
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
    h->cap = conn_cap();
    h->conns = calloc((size_t)h->cap + 1, sizeof(*h->conns));
    if (!h->conns) {
        st = km_err_set(err, KM_ENOMEM, "http server: out of memory");
        goto out;
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit);
    /* An IPv4 literal binds IPv4 only; "all interfaces" tries dual-stack first and falls back
     * to IPv4 on hosts without IPv6. */
    int v6 = strchr(h->bind, ':') != NULL;
    h->ctx = make_context(h, h->bind[0] && !v6);
    if (!h->ctx && !h->bind[0])
        h->ctx = make_context(h, 1);
    if (!h->ctx) {
        st = km_err_set(err, KM_EIO, "http server: cannot listen on %s:%d",
                        h->bind[0] ? h->bind : "*", opts->port);
        goto out;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(h->ctx, "default");
    int port = vh ? lws_get_vhost_listen_port(vh) : -1;
    if (port <= 0) {
        st = km_err_set(err, KM_EIO, "http server: no listening port on %s:%d",
                        h->bind[0] ? h->bind : "*", opts->port);
        goto out;
    }
    h->port = port;
    int rc = pthread_create(&h->thread, NULL, serve, h);
    if (rc != 0) {
        st = km_err_set(err, KM_EIO, "http server: thread: %s", strerror(rc));
        goto out;
    }
out:
    if (st != KM_OK) {
        if (h->ctx)
            lws_context_destroy(h->ctx);
        free(h->conns);
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
    lws_cancel_service(h->ctx);
    pthread_join(h->thread, NULL);
    lws_context_destroy(h->ctx);
    free(h->conns);
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
