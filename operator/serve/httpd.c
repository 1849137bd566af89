/* httpd.c — a bounded HTTP/1.1 server for small GET endpoints (see httpd.h). */
#include "operator/serve/httpd.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "operator/base/clock.h"
#include "operator/base/log.h"

#define ACCEPT_BURST 64 /* connections accepted per loop turn */
#define MAX_RESPONSE_HDR 512
#define MAX_BODY (16u * 1024u * 1024u) /* a /metrics body larger than this is a bug: 500 */

typedef enum conn_state { C_FREE = 0, C_READ, C_WRITE } conn_state;

typedef struct conn {
    int fd;
    conn_state state;
    char *head;      /* max_head + 1 bytes, while open */
    size_t head_len; /* bytes received, possibly several pipelined requests */
    char *out;       /* the response being written (malloc'ed) */
    size_t out_len, out_off;
    int close_after; /* close once the response is written */
    double since;    /* start of the current wait (head or write) */
} conn;

struct km_httpd {
    int lfd;
    int wake[2]; /* self-pipe */
    km_httpd_limits lim;
    km_httpd_handler_fn fn;
    void *user;
    conn *conns;         /* lim.max_conns slots */
    struct pollfd *pfds; /* 2 + max_conns */
    double accept_pause; /* EMFILE: no accept before this time */
};

int km_httpd_default_conns(long nofile)
{
    long n = nofile / 8;
    return n < 4 ? 4 : n > 128 ? 128 : (int)n;
}

/* Closes c and frees its buffers (no-op for a free slot); the slot is free afterwards. */
static void conn_close(conn *c)
{
    if (c->state == C_FREE)
        return;
    close(c->fd);
    free(c->head);
    free(c->out);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

/* The listening socket for host:port.  -1 with err set on failure. */
static int listen_on(const char *host, int port, int *port_out, km_err *err)
{
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    hints.ai_family = *host ? AF_UNSPEC : AF_INET6;
    int rc = getaddrinfo(*host ? host : NULL, ps, &hints, &ai);
    if (rc != 0 && !*host) { /* no IPv6 on this host: all IPv4 interfaces */
        hints.ai_family = AF_INET;
        rc = getaddrinfo(NULL, ps, &hints, &ai);
    }
    if (rc != 0) {
        km_err_set(err, KM_EINVAL, "http server: address %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && !*host && ai->ai_family == AF_INET6) {
        freeaddrinfo(ai);
        ai = NULL;
        hints.ai_family = AF_INET;
        if (getaddrinfo(NULL, ps, &hints, &ai) == 0)
            fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    int one = 1, zero = 0;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6 && !*host)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 512) != 0) {
        km_err_set(err, KM_EIO, "http server: cannot listen on %s:%d: %s", *host ? host : "*", port,
                   strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

km_status km_httpd_new(const char *host, int port, const km_httpd_limits *limits,
                       km_httpd_handler_fn fn, void *user, km_httpd **out, int *port_out,
                       km_err *err)
{
    if (!limits || limits->max_conns < 1 || limits->max_head < 64 || !fn)
        return km_err_set(err, KM_EINVAL, "http server: bad limits");
    km_httpd *d = calloc(1, sizeof(*d));
    km_status st = KM_ENOMEM;
    if (!d)
        return km_err_set(err, KM_ENOMEM, "http server: out of memory");
    d->lfd = d->wake[0] = d->wake[1] = -1;
    d->lim = *limits;
    d->fn = fn;
    d->user = user;
    d->conns = calloc((size_t)limits->max_conns, sizeof(*d->conns));
    d->pfds = calloc((size_t)limits->max_conns + 2, sizeof(*d->pfds));
    if (!d->conns || !d->pfds) {
        km_err_set(err, st, "http server: out of memory");
        goto out;
    }
    for (int i = 0; i < limits->max_conns; i++)
        d->conns[i].fd = -1;
    if (pipe2(d->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        st = km_err_set(err, KM_EIO, "http server: pipe: %s", strerror(errno));
        goto out;
    }
    int bound = port;
    d->lfd = listen_on(host ? host : "", port, &bound, err);
    if (d->lfd < 0) {
        st = err ? err->status : KM_EIO;
        goto out;
    }
    *port_out = bound;
    *out = d;
    return KM_OK;
out:
    km_httpd_free(d);
    return st;
}

void km_httpd_free(km_httpd *d)
{
    if (!d)
        return;
    for (int i = 0; d->conns && i < d->lim.max_conns; i++)
        conn_close(&d->conns[i]);
    if (d->lfd >= 0)
        close(d->lfd);
    if (d->wake[0] >= 0)
        close(d->wake[0]);
    if (d->wake[1] >= 0)
        close(d->wake[1]);
    free(d->conns);
    free(d->pfds);
    free(d);
}

void km_httpd_wake(km_httpd *d)
{
    char b = 1;
    ssize_t n = write(d->wake[1], &b, 1);
    (void)n; /* a full pipe already wakes the loop */
}

/* The slot for a new connection: a free one, else the one waiting longest for a request head,
 * else the oldest writer (closed first). */
static conn *slot_for_new(km_httpd *d)
{
    conn *reader = NULL, *writer = NULL;
    for (int i = 0; i < d->lim.max_conns; i++) {
        conn *c = &d->conns[i];
        if (c->state == C_FREE)
            return c;
        conn **best = c->state == C_READ ? &reader : &writer;
        if (!*best || c->since < (*best)->since)
            *best = c;
    }
    conn *victim = reader ? reader : writer;
    conn_close(victim);
    return victim;
}

/* Accepts up to ACCEPT_BURST waiting connections, each into slot_for_new's slot.  Out of
 * descriptors or memory: logged, and no accept for 100 ms (the listen queue keeps them). */
static void accept_some(km_httpd *d, double now)
{
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(d->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                km_log_warn("http server: cannot accept", "error", strerror(errno));
                d->accept_pause = now + 0.1;
            }
            return;
        }
        conn *c = slot_for_new(d);
        c->head = malloc(d->lim.max_head + 1);
        if (!c->head) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->state = C_READ;
        c->since = now;
    }
}

/* Starts writing a response (status code, body) on c; close_after closes once written.  Out of
 * memory: c is closed. */
static void start_response(conn *c, unsigned code, const char *ctype, const km_buf *body,
                           int close_after, double now)
{
    static const struct {
        unsigned code;
        const char *text;
    } reasons[] = {{200, "OK"},
                   {400, "Bad Request"},
                   {404, "Not Found"},
                   {405, "Method Not Allowed"},
                   {431, "Request Header Fields Too Large"},
                   {500, "Internal Server Error"},
                   {503, "Service Unavailable"}};
    const char *reason = "Unknown";
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].code == code)
            reason = reasons[i].text;
    size_t blen = body->len;
    char *out = malloc(MAX_RESPONSE_HDR + blen);
    if (!out) {
        conn_close(c);
        return;
    }
    int n = snprintf(out, MAX_RESPONSE_HDR,
                     "HTTP/1.1 %u %s\r\nServer: kubemend\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
                     code, reason, ctype, blen, close_after ? "Connection: close\r\n" : "");
    if (n < 0 || n >= MAX_RESPONSE_HDR) {
        free(out);
        conn_close(c);
        return;
    }
    if (blen)
        memcpy(out + n, body->data, blen);
    free(c->out);
    c->out = out;
    c->out_len = (size_t)n + blen;
    c->out_off = 0;
    c->close_after = close_after;
    c->state = C_WRITE;
    c->since = now;
}

/* The value of header `name` in the head (lines after the request line), or NULL; *len its
 * length.  Borrowed from head. */
static const char *header_value(const char *head, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = strchr(head, '\n'); p && p[1]; p = strchr(p + 1, '\n')) {
        const char *line = p + 1;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = v + strcspn(v, "\r\n");
            *len = (size_t)(e - v);
            return v;
        }
    }
    return NULL;
}

/* Answers the complete head (NUL-terminated, hl bytes with its blank line) in c->head. */
static void answer(km_httpd *d, conn *c, size_t hl, double now)
{
    char *head = c->head;
    char method[16] = "", target[1024] = "", version[16] = "";
    unsigned code = 400;
    const char *ctype = "text/plain; charset=utf-8";
    km_buf body;
    km_buf_init(&body, MAX_BODY);
    int ok = sscanf(head, "%15s %1023s %15s", method, target, version) == 3 &&
             strncmp(version, "HTTP/1.", 7) == 0 && target[0] == '/';
    size_t vl = 0;
    const char *te = header_value(head, "transfer-encoding", &vl);
    const char *cl = header_value(head, "content-length", &vl);
    int has_body = te != NULL || (cl && !(vl == 1 && cl[0] == '0'));
    const char *conn_hdr = header_value(head, "connection", &vl);
    int close_after = !ok || has_body || strcmp(method, "GET") != 0 ||
                      strcmp(version, "HTTP/1.1") != 0 ||
                      (conn_hdr && vl == 5 && strncasecmp(conn_hdr, "close", 5) == 0);
    if (ok)
        d->fn(target, strcmp(method, "GET") == 0, &code, &ctype, &body, d->user);
    else
        (void)km_buf_puts(&body, "bad request\n");
    /* keep what follows the head (a pipelined request) unless the connection closes */
    size_t rest = close_after ? 0 : c->head_len - hl;
    memmove(c->head, c->head + hl, rest);
    c->head_len = rest;
    c->head[rest] = '\0';
    start_response(c, code, ctype, &body, close_after, now);
    km_buf_cleanup(&body);
}

/* Answers the next complete head in the buffer, 431 when the buffer is full without one. */
static void parse_buffered(km_httpd *d, conn *c, double now)
{
    c->head[c->head_len] = '\0';
    char *end = strstr(c->head, "\r\n\r\n");
    size_t hl = end ? (size_t)(end - c->head) + 4 : 0;
    if (!end && (end = strstr(c->head, "\n\n")) != NULL)
        hl = (size_t)(end - c->head) + 2;
    if (hl) {
        c->head[hl - 1] = '\0'; /* keep the head a string; the byte was the final '\n' */
        answer(d, c, hl, now);
    } else if (c->head_len >= d->lim.max_head || memchr(c->head, '\0', c->head_len)) {
        km_buf b;
        km_buf_init(&b, 64);
        (void)km_buf_puts(&b, "request header fields too large\n");
        start_response(c, 431, "text/plain; charset=utf-8", &b, 1, now);
        km_buf_cleanup(&b);
    }
}

/* Reads what arrived and answers a complete head; EOF or a socket error closes c. */
static void on_readable(km_httpd *d, conn *c, double now)
{
    ssize_t n = recv(c->fd, c->head + c->head_len, d->lim.max_head - c->head_len, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (n < 0)
        return;
    c->head_len += (size_t)n;
    parse_buffered(d, c, now);
}

/* Writes more of the response; done: closes c or waits for its next request.  A socket error
 * closes c. */
static void on_writable(km_httpd *d, conn *c, double now)
{
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->out_off += (size_t)n;
    if (c->out_off < c->out_len)
        return;
    free(c->out);
    c->out = NULL;
    if (c->close_after) {
        conn_close(c);
        return;
    }
    c->state = C_READ;
    c->since = now;
    if (c->head_len)
        parse_buffered(d, c, now); /* a pipelined request */
}

/* Closes the connections past their deadline; returns ms until the next deadline (<= 1000). */
static int expire(km_httpd *d, double now)
{
    double next = now + 1.0;
    for (int i = 0; i < d->lim.max_conns; i++) {
        conn *c = &d->conns[i];
        if (c->state == C_FREE)
            continue;
        double limit = c->since + (c->state == C_READ ? d->lim.head_timeout : d->lim.write_timeout);
        if (limit <= now)
            conn_close(c);
        else if (limit < next)
            next = limit;
    }
    if (d->accept_pause > now && d->accept_pause < next)
        next = d->accept_pause;
    return (int)((next - now) * 1000) + 1;
}

void km_httpd_serve(km_httpd *d, const atomic_int *stop)
{
    while (!atomic_load(stop)) {
        double now = km_clock_mono();
        int timeout = expire(d, now);
        int n = 0;
        d->pfds[n++] = (struct pollfd){.fd = d->wake[0], .events = POLLIN};
        d->pfds[n++] = (struct pollfd){.fd = d->accept_pause > now ? -1 : d->lfd, .events = POLLIN};
        for (int i = 0; i < d->lim.max_conns; i++) {
            conn *c = &d->conns[i];
            d->pfds[n++] = (struct pollfd){.fd = c->state == C_FREE ? -1 : c->fd,
                                           .events = c->state == C_WRITE ? POLLOUT : POLLIN};
        }
        if (poll(d->pfds, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;
        now = km_clock_mono();
        if (d->pfds[0].revents) {
            char drain[64];
            while (read(d->wake[0], drain, sizeof(drain)) > 0)
                ;
        }
        for (int i = 0; i < d->lim.max_conns; i++) {
            conn *c = &d->conns[i];
            short re = d->pfds[i + 2].revents;
            if (c->state == C_FREE || !re)
                continue;
            if (c->state == C_READ && (re & (POLLIN | POLLHUP | POLLERR)))
                on_readable(d, c, now);
            else if (c->state == C_WRITE && (re & (POLLOUT | POLLHUP | POLLERR)))
                on_writable(d, c, now);
        }
        if (d->pfds[1].revents & POLLIN)
            accept_some(d, now);
    }
}
