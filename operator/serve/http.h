/* http.h — operator/serve: what the operator serves and how it stays the only actor: http.h
 * (this file: /healthz, /readyz, /metrics), metrics.h (a Prometheus registry), families.h
 * (kubemend's metric families), lease.h (leader election on a Lease).
 *
 * The operator's health and metrics HTTP server (httpd.h: a bounded poll() server, own thread).
 *
 *   GET /healthz  200 "ok" while the live callback says so (no callback: while this server's
 *                 thread answers); 503 "unhealthy: <reason>" otherwise
 *   GET /readyz   200 "ok" only when the ready callback says so (caches synced, leader state
 *                 known); 503 "not ready: <reason>" otherwise (no callback: always 503)
 *   GET /metrics  the registry's text exposition (404 when no registry was given)
 *   anything else 404 "404 page not found"; other methods on the three paths 405.
 *
 * Plain HTTP/1.1 (no TLS), keep-alive allowed.  Bounded against abusive clients (httpd.h): at
 * most RLIMIT_NOFILE/8 connections (4..128; a new one at the cap closes the connection waiting
 * longest for its request, so probes are answered while idle connections pile up, and most
 * descriptors stay for the API client), request heads of at most 8 KiB (431 beyond) complete
 * within 5 s, responses read within 10 s, request bodies never read (any method but GET, or a
 * request with a body, is answered and the connection closed).  The callbacks run on the server
 * thread and must be thread-safe and quick.  km_http_start binds before returning, so the port is
 * known (port 0 picks a free one: read it with km_http_port). */
#ifndef KM_HTTP_H
#define KM_HTTP_H

#include <stddef.h>

#include "operator/base/err.h"
#include "operator/serve/metrics.h"

typedef struct km_http km_http;

/* Returns non-zero for healthy/ready.  Otherwise it may write a short reason (NUL-terminated,
 * at most n bytes including the terminator) into reason, which holds "" on entry. */
typedef int (*km_http_check_fn)(char *reason, size_t n, void *user);

typedef struct km_http_opts {
    const char *bind_address; /* IP literal to bind ("127.0.0.1", "::1"); NULL or "" = all */
    int port;                 /* 0..65535; 0 = a free port chosen by the kernel */
    km_metrics *metrics;      /* borrowed, must outlive the server; NULL: /metrics is 404 */
    km_http_check_fn live;    /* NULL: always live */
    km_http_check_fn ready;   /* NULL: never ready */
    void *user;               /* passed to live, ready and collect */
    /* appended */
    void (*collect)(void *user); /* NULL, or called before each /metrics render (sampled gauges) */
} km_http_opts;

/* Binds, listens and starts the service thread.  opts is copied (bind_address too).  Caller
 * stops and frees the server with km_http_stop.  Failure: KM_EINVAL (bad port), KM_EIO (cannot
 * bind/listen or create the thread), KM_ENOMEM; nothing is left running and *out is untouched. */
km_status km_http_start(const km_http_opts *opts, km_http **out, km_err *err);

/* The port the server listens on (the chosen one when opts.port was 0). */
int km_http_port(const km_http *h);

/* Stops the service thread (waits for it), closes every connection and frees h.  Accepts
 * NULL.  Must not be called from a callback. */
void km_http_stop(km_http *h);

/* Parses a bind address as given to --metrics-bind-address / --health-probe-bind-address:
 * ":8080", "0.0.0.0:8080", "127.0.0.1:0", "[::1]:8080".  host receives the address without
 * brackets ("" for all interfaces; at most hostn bytes with the terminator), *port the port.
 * KM_EINVAL (outputs untouched) for a missing or out-of-range port, a host that does not fit,
 * or malformed brackets. */
km_status km_http_parse_address(const char *s, char *host, size_t hostn, int *port, km_err *err);

#endif
