/* httpd.h — internal to operator/serve: a bounded HTTP/1.1 server for small GET endpoints, one
 * poll() loop on one thread (http.c puts /healthz /readyz /metrics on it).
 *
 * Bounded by construction, so that clients cannot starve the probes or the API client:
 *   - at most max_conns connections; a new connection at the cap closes the connection that has
 *     waited longest for its request head (idle keep-alives and slow clients go first; a response
 *     being written goes only when every connection is writing).  A probe that sends its request
 *     at once is answered even while thousands of idle connections keep arriving;
 *   - a request head larger than max_head is answered 431 and closed; a head must be complete
 *     within head_timeout of the connection's start or its previous response (a byte at a time
 *     does not extend it); a response must be written within write_timeout;
 *   - request bodies are never read: a request with a body (or any method but GET) is answered
 *     and the connection closed, so a POST without Content-Length cannot hold it.
 * Memory: max_conns x (max_head + one response). */
#ifndef KM_HTTPD_H
#define KM_HTTPD_H

#include <stdatomic.h>
#include <stddef.h>

#include "operator/base/buf.h"
#include "operator/base/err.h"

typedef struct km_httpd km_httpd;

typedef struct km_httpd_limits {
    int max_conns;        /* concurrent connections (>= 1) */
    size_t max_head;      /* bytes of request line + headers */
    double head_timeout;  /* seconds */
    double write_timeout; /* seconds */
} km_httpd_limits;

/* Builds the answer to one request: *code, *ctype (a static string) and the body appended to
 * body.  is_get is 0 for any other method.  Runs on the server thread. */
typedef void (*km_httpd_handler_fn)(const char *path, int is_get, unsigned *code,
                                    const char **ctype, km_buf *body, void *user);

/* The default connection cap for a process whose descriptor limit is nofile: an eighth of it,
 * between 4 and 128, so that most descriptors stay for the API client. */
int km_httpd_default_conns(long nofile);

/* Binds and listens on host ("" = all interfaces, dual-stack when the host has IPv6) and port
 * (0 = a free one).  On success *out is a new server the caller frees with km_httpd_free and
 * *port_out the bound port.  Failure: KM_EIO (socket, bind or listen; errno in the message),
 * KM_EINVAL (host not an IP literal), KM_ENOMEM; *out untouched. */
km_status km_httpd_new(const char *host, int port, const km_httpd_limits *limits,
                       km_httpd_handler_fn fn, void *user, km_httpd **out, int *port_out,
                       km_err *err);

/* Serves until km_httpd_wake is called after *stop became non-zero.  Call from one thread. */
void km_httpd_serve(km_httpd *d, const atomic_int *stop);

/* Wakes km_httpd_serve (async-signal-safe, any thread). */
void km_httpd_wake(km_httpd *d);

/* Closes every connection and the listening socket and frees d.  Accepts NULL.  Not while
 * km_httpd_serve runs. */
void km_httpd_free(km_httpd *d);

#endif
