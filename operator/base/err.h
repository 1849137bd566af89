/* err.h — operator/base: the foundation every other folder builds on, with no knowledge of
 * Kubernetes.  err.h (this file: the status enum and km_err), buf.h (a bounded growable buffer),
 * array.h (grow-by-doubling arrays), strmap.h (the one string hash map), clock.h (monotonic
 * time, deadlines, the cancellable sleep, RFC 3339), log.h (leveled key=value / JSON logs),
 * json.h (cJSON path helpers), yamljson.h (YAML to cJSON), base64.h, backoff.h.
 *
 * kubemend's one status enum and the optional error-detail struct.
 *
 * Every fallible function returns km_status (KM_OK = 0) and, where callers may want details,
 * takes an optional `km_err *err` (NULL allowed) that is filled on failure only.  Codes are
 * appended, never removed or renumbered. */
#ifndef KM_ERR_H
#define KM_ERR_H

#include <stddef.h>

typedef enum km_status {
    KM_OK = 0,
    KM_ENOMEM,       /* allocation failed */
    KM_EINVAL,       /* invalid argument or option */
    KM_EIO,          /* file or OS I/O failed (errno in message) */
    KM_ECONFIG,      /* invalid configuration (kubeconfig, in-cluster files, flags) */
    KM_EUNSUPPORTED, /* a feature kubemend does not support (exec / auth-provider users) */
    KM_ETRANSPORT,   /* no HTTP response: connect, TLS, timeout, reset */
    KM_EAPI,         /* the API server answered non-2xx; err->http_code/reason/message */
    KM_EPARSE,       /* malformed JSON, YAML, PEM, JWT, watch line ... */
    KM_ETOOBIG,      /* a bounded buffer or object limit was exceeded */
    KM_ECANCELED,    /* stopped by the caller (shutdown, callback asked to stop) */
    KM_ETIMEOUT,     /* a bounded wait ran out (not a transport timeout) */
    KM_EVERIFY,      /* a signature, certificate or precondition did not verify */
    KM_ENOTFOUND,    /* a looked-up item does not exist (local lookups, not HTTP 404) */
    KM_ESTATE,       /* the operation is not valid in the current state */
} km_status;

/* Detail of a failure.  Fixed-size fields: nothing to free, safe to copy. */
typedef struct km_err {
    km_status status;
    long http_code;    /* HTTP status of an API error, 0 otherwise */
    char reason[64];   /* metav1.Status reason ("NotFound", "Conflict", ...) or "" */
    char message[512]; /* Status message or a human-readable description */
    char details[256]; /* compact Status details (kind/name/causes) or "" */
    long retry_after;  /* seconds from Retry-After / details.retryAfterSeconds, 0 = none */
} km_err;

/* Static English description of a status code; never NULL. */
const char *km_strerror(km_status st);

/* Clears *err (if non-NULL) to "no error". */
void km_err_clear(km_err *err);

/* Sets err->status and a printf-formatted message (truncated to fit) and returns st, so callers
 * can write `return km_err_set(err, KM_EIO, "read %s: %s", path, strerror(errno));`.
 * err may be NULL, in which case only st is returned.  Clears the HTTP fields. */
km_status km_err_set(km_err *err, km_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes err->message with "<prefix>: " (keeps the rest).  No-op when err is NULL. */
void km_err_prefix(km_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when err describes an API error with this HTTP code (err may be NULL -> false). */
int km_err_is_http(const km_err *err, long http_code);

/* Formats err as one line ("<strerror>: <message> (HTTP 409 Conflict)") into buf of size n;
 * always NUL-terminates (n > 0).  Returns buf. */
const char *km_err_str(const km_err *err, char *buf, size_t n);

#endif
