/* families.c — kubemend's metric families (see families.h). */
#include "operator/serve/families.h"

#include <stdio.h>

static const double reconcile_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                           1,     2.5,  5,     10,   30,  60,   300};
static const double api_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                     1,     2.5,  5,     10,   30,  60};

typedef struct family_def {
    km_metric_type type;
    const char *name;
    const char *help;
    const char *labels[2];
    size_t nlabels;
    const double *buckets;
    size_t nbuckets;
} family_def;

static const family_def default_families[] = {
    {KM_METRIC_COUNTER,
     KM_METRIC_RECONCILE_TOTAL,
     "Reconciles by controller and result.",
     {"controller", "result"},
     2,
     NULL,
     0},
    {KM_METRIC_COUNTER,
     KM_METRIC_RECONCILE_ERRORS,
     "Reconciles that ended in an error.",
     {"controller", NULL},
     1,
     NULL,
     0},
    {KM_METRIC_HISTOGRAM,
     KM_METRIC_RECONCILE_DURATION,
     "Time spent in one reconcile, seconds.",
     {"controller", NULL},
     1,
     reconcile_buckets,
     sizeof(reconcile_buckets) / sizeof(reconcile_buckets[0])},
    {KM_METRIC_GAUGE,
     KM_METRIC_WORKQUEUE_DEPTH,
     "Keys waiting in the work queue.",
     {"name", NULL},
     1,
     NULL,
     0},
    {KM_METRIC_COUNTER,
     KM_METRIC_WORKQUEUE_RETRIES,
     "Keys re-queued with backoff.",
     {"name", NULL},
     1,
     NULL,
     0},
    {KM_METRIC_COUNTER,
     KM_METRIC_API_REQUESTS,
     "Kubernetes API requests by verb and HTTP code (<error>: no response).",
     {"verb", "code"},
     2,
     NULL,
     0},
    {KM_METRIC_HISTOGRAM,
     KM_METRIC_API_DURATION,
     "Kubernetes API request duration, seconds.",
     {"verb", NULL},
     1,
     api_buckets,
     sizeof(api_buckets) / sizeof(api_buckets[0])},
    {KM_METRIC_COUNTER,
     KM_METRIC_WATCH_RESTARTS,
     "Watches restarted (reconnect or relist).",
     {"resource", NULL},
     1,
     NULL,
     0},
    {KM_METRIC_COUNTER,
     KM_METRIC_STEP_OBJECTS,
     "Objects handled by recovery steps, by step and counter.",
     {"step", "counter"},
     2,
     NULL,
     0},
    {KM_METRIC_GAUGE,
     KM_METRIC_LEADER,
     "1 while this process holds the leader lease.",
     {NULL, NULL},
     0,
     NULL,
     0},
    {KM_METRIC_GAUGE,
     KM_METRIC_CLIENT_QPS,
     "The API client's current rate limit, requests per second (adaptive; 0 = none).",
     {NULL, NULL},
     0,
     NULL,
     0},
    {KM_METRIC_GAUGE,
     KM_METRIC_API_INFLIGHT,
     "Kubernetes API requests in flight.",
     {NULL, NULL},
     0,
     NULL,
     0},
};

km_status km_metrics_new_default(km_metrics **out, km_err *err)
{
    km_metrics *m = NULL;
    km_status st = km_metrics_new(0, &m, err);
    if (st != KM_OK)
        return st;
    size_t n = sizeof(default_families) / sizeof(default_families[0]);
    for (size_t i = 0; st == KM_OK && i < n; i++) {
        const family_def *d = &default_families[i];
        st = km_metrics_register(m, d->type, d->name, d->help, d->labels, d->nlabels, d->buckets,
                                 d->nbuckets, NULL, err);
    }
    if (st != KM_OK) {
        km_metrics_free(m);
        return st;
    }
    *out = m;
    return KM_OK;
}

void km_metrics_observe_api(const char *verb, long code, double seconds, void *user)
{
    km_metrics *m = user;
    if (!m)
        return;
    char codebuf[24];
    if (code > 0)
        snprintf(codebuf, sizeof(codebuf), "%ld", code);
    else
        snprintf(codebuf, sizeof(codebuf), "<error>");
    const char *v = verb ? verb : "";
    (void)km_metric_add(km_metrics_get(m, KM_METRIC_API_REQUESTS), KM_METRIC_VALUES(v, codebuf),
                        1.0);
    (void)km_metric_observe(km_metrics_get(m, KM_METRIC_API_DURATION), KM_METRIC_VALUES(v),
                            seconds < 0 ? 0 : seconds);
}

void km_metrics_set_pace(km_metrics *m, double qps, int inflight)
{
    if (!m)
        return;
    (void)km_metric_set(km_metrics_get(m, KM_METRIC_CLIENT_QPS), NULL, qps);
    (void)km_metric_set(km_metrics_get(m, KM_METRIC_API_INFLIGHT), NULL, (double)inflight);
}
