/* metrics.h — a small thread-safe Prometheus registry: counters, gauges, histograms.
 *
 * A registry holds metric families.  A family has a name, a help text, a fixed list of label
 * names and (histograms) fixed bucket upper bounds.  Families are registered once at start-up
 * and return a handle; code then updates series by label values:
 *
 *   km_metric *rec = km_metrics_get(m, "kubemend_reconcile_total");
 *   KM_METRIC_INC(rec, "recovery", "success");            // label values in declared order
 *   km_metric_observe(dur, (const char *const[]){"recovery"}, 0.25);
 *
 * Each family holds at most `max_series` label combinations; updates that would create more
 * are dropped (KM_ETOOBIG) and counted (km_metrics_dropped), so a label with unbounded values
 * can never grow memory without bound.  All functions are thread-safe (one mutex per family,
 * one for the family list); handles stay valid until km_metrics_free.
 *
 * km_metrics_render writes text exposition format 0.0.4: families sorted by name, each with
 * "# HELP" and "# TYPE" lines (also when they have no series yet), series sorted by their label
 * values, label values escaped (\\ \" \n), help escaped (\\ \n).  Integral values below 2^53
 * print as integers ("3"), others in the shortest form that reads back exactly ("0.1",
 * "1.5e-07"), plus "+Inf", "-Inf", "NaN".  Histograms print cumulative `_bucket` series with an
 * `le` label (last "+Inf"), then `_sum` and `_count`. */
#ifndef KM_METRICS_H
#define KM_METRICS_H

#include <stddef.h>

#include "operator/base/buf.h"
#include "operator/base/err.h"

/* Content-Type of km_metrics_render output. */
#define KM_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Limits. */
#define KM_METRICS_MAX_LABELS 8   /* label names per family */
#define KM_METRICS_MAX_BUCKETS 32 /* histogram bucket bounds per family (+Inf implied) */
#define KM_METRICS_DEFAULT_MAX_SERIES 512

typedef struct km_metrics km_metrics;
typedef struct km_metric km_metric; /* one family; owned by its registry */

typedef enum km_metric_type {
    KM_METRIC_COUNTER = 0,
    KM_METRIC_GAUGE,
    KM_METRIC_HISTOGRAM,
} km_metric_type;

/* A new empty registry; each family keeps at most max_series series (0 = the default 512).
 * Caller frees it with km_metrics_free.  KM_ENOMEM (out untouched) on failure. */
km_status km_metrics_new(size_t max_series, km_metrics **out, km_err *err);

/* Frees the registry and all its families (handles become invalid).  Accepts NULL. */
void km_metrics_free(km_metrics *m);

/* Registers a family.  name must match [a-zA-Z_:][a-zA-Z0-9_:]*, each label name
 * [a-zA-Z_][a-zA-Z0-9_]* (not starting with "__", no duplicates, at most KM_METRICS_MAX_LABELS,
 * and not "le" for histograms).  Histograms need 1..KM_METRICS_MAX_BUCKETS finite, strictly
 * increasing bounds (+Inf is implied); other types pass NULL/0.  help may be NULL ("").  All
 * arguments are copied.  *out (may be NULL) receives a handle owned by the registry.
 * A family without labels starts with its single series at 0.
 * Failure: KM_EINVAL for invalid names/buckets or a name already registered, KM_ENOMEM; the
 * registry is unchanged and *out untouched. */
km_status km_metrics_register(km_metrics *m, km_metric_type type, const char *name,
                              const char *help, const char *const *labels, size_t nlabels,
                              const double *buckets, size_t nbuckets, km_metric **out, km_err *err);

/* The family registered under name, or NULL.  Borrowed; valid until km_metrics_free. */
km_metric *km_metrics_get(km_metrics *m, const char *name);

/* Updates.  values holds exactly the family's number of label values, in declared order
 * (NULL when the family has no labels; a NULL value means "").  Returns KM_OK, or:
 *   KM_EINVAL  - wrong operation for the type (add with v < 0 or NaN on a counter, set on a
 *                counter or histogram, observe on a non-histogram) or f is NULL;
 *   KM_ETOOBIG - the family already holds max_series series and this is a new one (dropped);
 *   KM_ENOMEM  - could not allocate the new series (dropped).
 * Nothing changes on failure.  Counters: add; gauges: add (any sign) and set; histograms:
 * observe (NaN is ignored with KM_EINVAL). */
km_status km_metric_add(km_metric *f, const char *const *values, double v);
km_status km_metric_set(km_metric *f, const char *const *values, double v);
km_status km_metric_observe(km_metric *f, const char *const *values, double v);

/* Reads the current value of a counter/gauge series (histograms: the observation count) into
 * *out.  KM_ENOTFOUND (out untouched) when that series does not exist, KM_EINVAL for NULL f. */
km_status km_metric_value(km_metric *f, const char *const *values, double *out);

/* Convenience for label values written inline; needs at least one label value. */
#define KM_METRIC_VALUES(...) ((const char *const[]){__VA_ARGS__})
#define KM_METRIC_INC(f, ...) km_metric_add((f), KM_METRIC_VALUES(__VA_ARGS__), 1.0)

/* Number of updates dropped so far because a family was full or memory ran out. */
unsigned long long km_metrics_dropped(km_metrics *m);

/* Appends the exposition text of every family to out.  Failure (KM_ETOOBIG past out's max,
 * KM_ENOMEM): out may hold a partial text; the caller discards it. */
km_status km_metrics_render(km_metrics *m, km_buf *out);

/* Formats a sample value as the exposition does (see above) into buf (at least 32 bytes).
 * Returns buf. */
const char *km_metrics_fmt_value(char *buf, size_t n, double v);

#endif
