/* err.c — status strings and error-detail helpers. */
#include "operator/base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *km_strerror(km_status st)
{
    switch (st) {
    case KM_OK:
        return "success";
    case KM_ENOMEM:
        return "out of memory";
    case KM_EINVAL:
        return "invalid argument";
    case KM_EIO:
        return "I/O error";
    case KM_ECONFIG:
        return "invalid configuration";
    case KM_EUNSUPPORTED:
        return "not supported";
    case KM_ETRANSPORT:
        return "transport error";
    case KM_EAPI:
        return "API error";
    case KM_EPARSE:
        return "parse error";
    case KM_ETOOBIG:
        return "too large";
    case KM_ECANCELED:
        return "canceled";
    case KM_ETIMEOUT:
        return "timed out";
    case KM_EVERIFY:
        return "verification failed";
    case KM_ENOTFOUND:
        return "not found";
    case KM_ESTATE:
        return "invalid state";
    }
    return "unknown error";
}

void km_err_clear(km_err *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

km_status km_err_set(km_err *err, km_status st, const char *fmt, ...)
{
    if (!err)
        return st;
    km_err_clear(err);
    err->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return st;
}

void km_err_prefix(km_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char pre[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    char old[sizeof(err->message)];
    memcpy(old, err->message, sizeof(old));
    /* "<pre>: <old>", truncated to fit (snprintf here trips -Wformat-truncation) */
    size_t pl = strnlen(pre, sizeof(err->message) - 3);
    size_t ol = strnlen(old, sizeof(err->message) - 3 - pl);
    memcpy(err->message, pre, pl);
    memcpy(err->message + pl, ": ", 2);
    memcpy(err->message + pl + 2, old, ol);
    err->message[pl + 2 + ol] = '\0';
}

int km_err_is_http(const km_err *err, long http_code)
{
    return err && err->status == KM_EAPI && err->http_code == http_code;
}

const char *km_err_str(const km_err *err, char *buf, size_t n)
{
    if (!n)
        return buf;
    if (!err) {
        snprintf(buf, n, "unknown error");
        return buf;
    }
    if (err->http_code)
        snprintf(buf, n, "%s: %s (HTTP %ld%s%s)", km_strerror(err->status), err->message,
                 err->http_code, err->reason[0] ? " " : "", err->reason);
    else
        snprintf(buf, n, "%s: %s", km_strerror(err->status), err->message);
    return buf;
}
