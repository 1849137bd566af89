/* transfer.h — one HTTP exchange over libcurl, internal to operator/kube: kube.c adds the
 * retries, credentials, rate limit and metrics on top.  A km_transfer owns one libcurl multi
 * handle (connection reuse, HTTP/2 multiplexing when offered) and is used by one thread at a
 * time. */
#ifndef KM_TRANSFER_H
#define KM_TRANSFER_H

#include <stdatomic.h>

#include "operator/base/buf.h"
#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "operator/kube/kubeconfig.h"

typedef struct km_transfer km_transfer;

/* Where and how every request goes (borrowed; must outlive the exchange). */
typedef struct km_transfer_target {
    const char *base_url;   /* "https://host:port" (tls-server-name as host when set) */
    const char *connect_to; /* CURLOPT_CONNECT_TO entry "tsn:port:host:port", NULL = none */
    const char *user_agent;
    km_kubeconfig *cfg; /* TLS material */
    long timeout_ms;    /* per request, unless the request says otherwise */
} km_transfer_target;

/* A new transfer the caller frees with km_transfer_free.  Failure: KM_ENOMEM, KM_ETRANSPORT (no
 * libcurl handle); *out untouched. */
km_status km_transfer_new(km_transfer **out, km_err *err);

/* Frees it (closing its connections).  Accepts NULL. */
void km_transfer_free(km_transfer *t);

/* Performs req once against to with the bearer token (NULL = none).  fn NULL: the body goes to
 * body (bounded by body's max); fn set: a stream — 2xx chunks go to fn, a non-2xx body to body,
 * idle_ms without a byte ends it (KM_ETIMEOUT).  A body that would pass body's max ends the
 * exchange with KM_ETOOBIG: at once when its Content-Length says so, else at the byte that
 * would pass it (never more than max bytes are held).  KM_OK with reply->code (any HTTP status);
 * KM_ETRANSPORT (reply->transient says whether retrying may help), KM_ECANCELED (*cancel set),
 * or the callback's status; err filled then. */
km_status km_transfer_exchange(km_transfer *t, const km_transfer_target *to,
                               const atomic_int *cancel, const km_kube_req *req, const char *token,
                               km_kube_stream_fn fn, void *user, long idle_ms, km_kube_reply *reply,
                               km_buf *body, km_err *err);

#endif
