/* families.h — kubemend's metric families in a registry of metrics.h: what the operator exports
 * on /metrics, and the API request observer that fills two of them. */
#ifndef KM_FAMILIES_H
#define KM_FAMILIES_H

#include "operator/base/err.h"
#include "operator/serve/metrics.h"

/* A registry with kubemend's families registered:
 * kubemend_reconcile_total{controller,result}, kubemend_reconcile_errors_total{controller},
 * kubemend_reconcile_duration_seconds{controller} (histogram),
 * kubemend_workqueue_depth{name} (gauge), kubemend_workqueue_retries_total{name},
 * kubemend_api_requests_total{verb,code}, kubemend_api_request_duration_seconds{verb}
 * (histogram), kubemend_watch_restarts_total{resource}, kubemend_step_objects_total{step,
 * counter}, kubemend_leader (gauge, 0/1).  Caller frees it with km_metrics_free.  On failure
 * everything is freed and *out is untouched. */
km_status km_metrics_new_default(km_metrics **out, km_err *err);

/* Matches km_kube_observe_fn: user is a km_metrics registry made by km_metrics_new_default.
 * Counts kubemend_api_requests_total{verb,code} (code "<error>" when code is 0: no response)
 * and observes kubemend_api_request_duration_seconds{verb}.  Never fails visibly (drops are
 * counted by km_metrics_dropped).  user NULL: no-op. */
void km_metrics_observe_api(const char *verb, long code, double seconds, void *user);

/* Sets the client's pacing gauges: its current (adaptive) rate limit in qps (0 = none) and the
 * API requests in flight.  m may be NULL.  Failures (allocation) leave the gauges as they were. */
void km_metrics_set_pace(km_metrics *m, double qps, int inflight);

/* Family names of the default registry, for callers that look handles up. */
#define KM_METRIC_RECONCILE_TOTAL "kubemend_reconcile_total"
#define KM_METRIC_RECONCILE_ERRORS "kubemend_reconcile_errors_total"
#define KM_METRIC_RECONCILE_DURATION "kubemend_reconcile_duration_seconds"
#define KM_METRIC_WORKQUEUE_DEPTH "kubemend_workqueue_depth"
#define KM_METRIC_WORKQUEUE_RETRIES "kubemend_workqueue_retries_total"
#define KM_METRIC_API_REQUESTS "kubemend_api_requests_total"
#define KM_METRIC_API_DURATION "kubemend_api_request_duration_seconds"
#define KM_METRIC_WATCH_RESTARTS "kubemend_watch_restarts_total"
#define KM_METRIC_STEP_OBJECTS "kubemend_step_objects_total"
#define KM_METRIC_LEADER "kubemend_leader"
#define KM_METRIC_CLIENT_QPS "kubemend_client_rate_limit_qps"
#define KM_METRIC_API_INFLIGHT "kubemend_api_requests_in_flight"

#endif
