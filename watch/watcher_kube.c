/* watcher_kube.c — the watcher's transport over the km_kube REST client.  Kept apart from
 * watcher.c so the state machine links (and is unit-tested) without the HTTP client. */
#include "operator/kube/kube.h"
#include "watch/watcher.h"

static km_status kube_open(void *ctx, const atomic_int *cancel, void **conn, km_err *err)
{
    km_kube *c = NULL;
    km_status st = km_kube_clone(ctx, &c, err);
    if (st != KM_OK)
        return st;
    km_kube_set_cancel(c, cancel);
    *conn = c;
    return KM_OK;
}

static void kube_close(void *conn)
{
    km_kube_free(conn);
}

static km_status kube_list(void *conn, const char *path, const km_list_opts *o, km_kube_page_fn fn,
                           void *user, char **out_rv, km_err *err)
{
    return km_kube_list(conn, path, o, fn, user, out_rv, err);
}

static km_status kube_stream(void *conn, const char *path, long idle_timeout_ms,
                             km_kube_stream_fn fn, void *user, km_err *err)
{
    return km_kube_stream(conn, path, idle_timeout_ms, fn, user, err);
}

static km_status kube_get(void *conn, const char *path, cJSON **out, km_err *err)
{
    return km_kube_get(conn, path, out, err);
}

void km_watch_transport_kube(km_watch_transport *t, km_kube *k)
{
    t->get = kube_get;
    t->open = kube_open;
    t->close = kube_close;
    t->list = kube_list;
    t->stream = kube_stream;
    t->ctx = k;
}
