/* apierror.h — the API server's error answer (a metav1.Status body, or anything else) into a
 * km_err.
 *
 * Not to be confused with km_status (kubemend's C return code, operator/base/err.h) or a
 * ClusterRecovery condition (reconcilers/step/conditions.h).  Pure functions over bytes: the
 * client calls them after each exchange, tests call them on the recorded kube-apiserver bodies. */
#ifndef KM_APIERROR_H
#define KM_APIERROR_H

#include <stddef.h>

#include "operator/base/err.h"

/* Fills err (may be NULL) for an API error: status KM_EAPI, http_code = code, and from a Status
 * body its reason, message, compact details ("kind=K group=G name=N causes=[field: message;
 * ...]") and details.retryAfterSeconds; retry_after_hdr (the Retry-After header value, may be
 * NULL) wins over the body.  A body that is not a Status (HTML from a proxy, empty, truncated)
 * gives reason from the HTTP code ("InternalError", "TooManyRequests", ...) and a message with
 * the code and a short printable excerpt of the body.  Cannot fail. */
void km_apierr_parse(long code, const char *body, size_t len, const char *retry_after_hdr,
                     km_err *err);

/* Seconds in a Retry-After header: a non-negative integer or an HTTP-date (relative to now).
 * 0 when value is NULL, malformed or in the past. */
long km_apierr_retry_after(const char *value);

/* The reason kube-apiserver uses for an HTTP code ("NotFound" for 404, ...), "" if none. */
const char *km_apierr_reason(long code);

#endif
