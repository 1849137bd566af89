/* metrics.c — thread-safe Prometheus registry and text exposition (format 0.0.4). */
#include "operator/serve/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/buf.h"
#include "operator/base/strmap.h"

/* One label combination.  Allocated as one block: the struct, the histogram bucket counts
 * (nbuckets + 1, not cumulative; the last one is +Inf), the value pointers, the strings. */
typedef struct series {
    const char **values;
    double value;             /* counter / gauge */
    double sum;               /* histogram */
    unsigned long long count; /* histogram */
    unsigned long long *bucket;
} series;

struct km_metric {
    km_metrics *reg;
    struct km_metric *next;
    km_metric_type type;
    char *name;
    char *help;
    size_t nlabels;
    char *labels[KM_METRICS_MAX_LABELS];
    size_t nbuckets;
    double bounds[KM_METRICS_MAX_BUCKETS];
    pthread_mutex_t mu;
    km_strmap *series; /* series key (see series_key) -> series; owns the series */
};

struct km_metrics {
    pthread_mutex_t mu;
    km_metric *families;
    size_t nfamilies;
    size_t max_series;
    atomic_ullong dropped;
};

/* ---- registry ------------------------------------------------------------------------------ */

km_status km_metrics_new(size_t max_series, km_metrics **out, km_err *err)
{
    km_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return km_err_set(err, KM_ENOMEM, "metrics registry: out of memory");
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return km_err_set(err, KM_ENOMEM, "metrics registry: mutex init failed");
    }
    m->max_series = max_series ? max_series : KM_METRICS_DEFAULT_MAX_SERIES;
    atomic_init(&m->dropped, 0);
    *out = m;
    return KM_OK;
}

static int series_free_one(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    free(val);
    return 0;
}

static void series_free_all(km_metric *f)
{
    km_strmap_each(f->series, series_free_one, NULL);
    km_strmap_free(f->series);
    f->series = NULL;
}

static void family_free(km_metric *f)
{
    if (!f)
        return;
    series_free_all(f);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void km_metrics_free(km_metrics *m)
{
    if (!m)
        return;
    km_metric *f = m->families;
    while (f) {
        km_metric *next = f->next;
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int valid_name(const char *s, int allow_colon)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (allow_colon && c == ':');
        int digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && p != s))
            return 0;
    }
    return 1;
}

static km_status validate(km_metric_type type, const char *name, const char *const *labels,
                          size_t nlabels, const double *buckets, size_t nbuckets, km_err *err)
{
    if (type != KM_METRIC_COUNTER && type != KM_METRIC_GAUGE && type != KM_METRIC_HISTOGRAM)
        return km_err_set(err, KM_EINVAL, "metric: unknown type %d", (int)type);
    if (!valid_name(name, 1))
        return km_err_set(err, KM_EINVAL, "metric: invalid name \"%s\"", name ? name : "");
    if (nlabels > KM_METRICS_MAX_LABELS || (nlabels && !labels))
        return km_err_set(err, KM_EINVAL, "metric %s: bad label list", name);
    for (size_t i = 0; i < nlabels; i++) {
        if (!valid_name(labels[i], 0) || strncmp(labels[i], "__", 2) == 0)
            return km_err_set(err, KM_EINVAL, "metric %s: invalid label name \"%s\"", name,
                              labels[i] ? labels[i] : "");
        if (type == KM_METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0)
            return km_err_set(err, KM_EINVAL, "metric %s: histogram label \"le\" is reserved",
                              name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0)
                return km_err_set(err, KM_EINVAL, "metric %s: duplicate label \"%s\"", name,
                                  labels[i]);
    }
    if (type == KM_METRIC_HISTOGRAM) {
        if (!buckets || nbuckets == 0 || nbuckets > KM_METRICS_MAX_BUCKETS)
            return km_err_set(err, KM_EINVAL, "metric %s: need 1..%d buckets", name,
                              KM_METRICS_MAX_BUCKETS);
        for (size_t i = 0; i < nbuckets; i++) {
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                return km_err_set(err, KM_EINVAL,
                                  "metric %s: buckets must be finite and strictly increasing",
                                  name);
        }
    } else if (buckets || nbuckets) {
        return km_err_set(err, KM_EINVAL, "metric %s: buckets only apply to histograms", name);
    }
    return KM_OK;
}

static series *series_create(km_metric *f, const char *const *values, const char *key);

km_status km_metrics_register(km_metrics *m, km_metric_type type, const char *name,
                              const char *help, const char *const *labels, size_t nlabels,
                              const double *buckets, size_t nbuckets, km_metric **out, km_err *err)
{
    km_status st = validate(type, name, labels, nlabels, buckets, nbuckets, err);
    if (st != KM_OK)
        return st;
    km_metric *f = calloc(1, sizeof(*f));
    if (!f)
        return km_err_set(err, KM_ENOMEM, "metric %s: out of memory", name);
    if (pthread_mutex_init(&f->mu, NULL) != 0) {
        free(f);
        return km_err_set(err, KM_ENOMEM, "metric %s: mutex init failed", name);
    }
    f->reg = m;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->series = km_strmap_new();
    st = (f->name && f->help && f->series) ? KM_OK : KM_ENOMEM;
    for (size_t i = 0; st == KM_OK && i < nlabels; i++) {
        f->labels[i] = strdup(labels[i]);
        f->nlabels = i + 1; /* so family_free frees what was copied */
        if (!f->labels[i])
            st = KM_ENOMEM;
    }
    if (st == KM_OK && type == KM_METRIC_HISTOGRAM) {
        memcpy(f->bounds, buckets, nbuckets * sizeof(double));
        f->nbuckets = nbuckets;
    }
    if (st == KM_OK && nlabels == 0 && !series_create(f, NULL, "-"))
        st = KM_ENOMEM;
    if (st != KM_OK) {
        km_err_set(err, st, "metric %s: out of memory", name);
        goto out;
    }

    pthread_mutex_lock(&m->mu);
    for (km_metric *g = m->families; g; g = g->next) {
        if (strcmp(g->name, name) == 0) {
            st = km_err_set(err, KM_EINVAL, "metric %s: already registered", name);
            break;
        }
    }
    if (st == KM_OK) {
        f->next = m->families;
        m->families = f;
        m->nfamilies++;
    }
    pthread_mutex_unlock(&m->mu);
out:
    if (st != KM_OK) {
        family_free(f);
        return st;
    }
    if (out)
        *out = f;
    return KM_OK;
}

km_metric *km_metrics_get(km_metrics *m, const char *name)
{
    if (!m || !name)
        return NULL;
    km_metric *found = NULL;
    pthread_mutex_lock(&m->mu);
    for (km_metric *f = m->families; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            found = f;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return found;
}

unsigned long long km_metrics_dropped(km_metrics *m)
{
    return m ? atomic_load(&m->dropped) : 0;
}

/* ---- series -------------------------------------------------------------------------------- */

static const char *value_at(const char *const *values, size_t i)
{
    return (values && values[i]) ? values[i] : "";
}

/* The map key of a label combination, each value length-prefixed ("3:get,3:200,") so that no
 * two combinations share a key.  KM_ENOMEM (key then empty). */
static km_status series_key(const km_metric *f, const char *const *values, km_buf *key)
{
    km_status st = KM_OK;
    for (size_t i = 0; st == KM_OK && i < f->nlabels; i++)
        st = km_buf_printf(key, "%zu:%s,", strlen(value_at(values, i)), value_at(values, i));
    if (st == KM_OK && f->nlabels == 0)
        st = km_buf_puts(key, "-");
    return st;
}

/* Creates a zeroed series and adds it under key (caller holds f->mu and checked the limit).
 * NULL on allocation failure, nothing added. */
static series *series_create(km_metric *f, const char *const *values, const char *key)
{
    size_t nb = f->type == KM_METRIC_HISTOGRAM ? f->nbuckets + 1 : 0;
    size_t size = sizeof(series) + nb * sizeof(unsigned long long) + f->nlabels * sizeof(char *);
    size_t strings = 0;
    for (size_t i = 0; i < f->nlabels; i++)
        strings += strlen(value_at(values, i)) + 1;
    series *s = calloc(1, size + strings);
    if (!s)
        return NULL;
    unsigned char *p = (unsigned char *)(s + 1);
    s->bucket = (unsigned long long *)p;
    p += nb * sizeof(unsigned long long);
    s->values = (const char **)(void *)p;
    char *str = (char *)(p + f->nlabels * sizeof(char *));
    for (size_t i = 0; i < f->nlabels; i++) {
        size_t len = strlen(value_at(values, i)) + 1;
        memcpy(str, value_at(values, i), len);
        s->values[i] = str;
        str += len;
    }
    if (km_strmap_put(f->series, key, s, NULL) != KM_OK) {
        free(s);
        return NULL;
    }
    return s;
}

/* Finds or creates the series under f->mu (held by the caller).  On failure counts a drop. */
static km_status series_get(km_metric *f, const char *const *values, series **out)
{
    km_buf key;
    km_buf_init(&key, 0);
    km_status st = series_key(f, values, &key);
    series *s = st == KM_OK ? km_strmap_get(f->series, km_buf_str(&key)) : NULL;
    if (st == KM_OK && !s) {
        if (km_strmap_len(f->series) >= f->reg->max_series)
            st = KM_ETOOBIG;
        else if (!(s = series_create(f, values, km_buf_str(&key))))
            st = KM_ENOMEM;
    }
    km_buf_cleanup(&key);
    if (st != KM_OK) {
        atomic_fetch_add(&f->reg->dropped, 1);
        return st;
    }
    *out = s;
    return KM_OK;
}

km_status km_metric_add(km_metric *f, const char *const *values, double v)
{
    if (!f || f->type == KM_METRIC_HISTOGRAM || isnan(v) || (f->type == KM_METRIC_COUNTER && v < 0))
        return KM_EINVAL;
    series *s;
    pthread_mutex_lock(&f->mu);
    km_status st = series_get(f, values, &s);
    if (st == KM_OK)
        s->value += v;
    pthread_mutex_unlock(&f->mu);
    return st;
}

km_status km_metric_set(km_metric *f, const char *const *values, double v)
{
    if (!f || f->type != KM_METRIC_GAUGE)
        return KM_EINVAL;
    series *s;
    pthread_mutex_lock(&f->mu);
    km_status st = series_get(f, values, &s);
    if (st == KM_OK)
        s->value = v;
    pthread_mutex_unlock(&f->mu);
    return st;
}

km_status km_metric_observe(km_metric *f, const char *const *values, double v)
{
    if (!f || f->type != KM_METRIC_HISTOGRAM || isnan(v))
        return KM_EINVAL;
    series *s;
    pthread_mutex_lock(&f->mu);
    km_status st = series_get(f, values, &s);
    if (st == KM_OK) {
        size_t i = 0;
        while (i < f->nbuckets && v > f->bounds[i])
            i++;
        s->bucket[i]++; /* i == nbuckets: only +Inf */
        s->sum += v;
        s->count++;
    }
    pthread_mutex_unlock(&f->mu);
    return st;
}

km_status km_metric_value(km_metric *f, const char *const *values, double *out)
{
    if (!f)
        return KM_EINVAL;
    km_buf key;
    km_buf_init(&key, 0);
    km_status st = series_key(f, values, &key);
    pthread_mutex_lock(&f->mu);
    const series *s = st == KM_OK ? km_strmap_get(f->series, km_buf_str(&key)) : NULL;
    if (st == KM_OK)
        st = s ? KM_OK : KM_ENOTFOUND;
    if (s)
        *out = f->type == KM_METRIC_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&f->mu);
    km_buf_cleanup(&key);
    return st;
}

/* ---- exposition ---------------------------------------------------------------------------- */

const char *km_metrics_fmt_value(char *buf, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(buf, n, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(buf, n, "0"); /* also -0 */
    } else if (floor(v) == v && fabs(v) < 9007199254740992.0) {
        snprintf(buf, n, "%.0f", v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, n, "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    }
    return buf;
}

static km_status put_escaped(km_buf *out, const char *s, int quote)
{
    km_status st = KM_OK;
    const char *run = s;
    for (const char *p = s; st == KM_OK && *p; p++) {
        const char *rep = NULL;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '\n')
            rep = "\\n";
        else if (quote && *p == '"')
            rep = "\\\"";
        if (!rep)
            continue;
        st = km_buf_append(out, run, (size_t)(p - run));
        if (st == KM_OK)
            st = km_buf_puts(out, rep);
        run = p + 1;
    }
    if (st == KM_OK)
        st = km_buf_puts(out, run);
    return st;
}

/* Writes `name{l1="v1",...[,le="x"]} value\n`. */
static km_status put_sample(km_buf *out, const km_metric *f, const char *suffix, const series *s,
                            const char *le, double value)
{
    char num[32];
    km_status st = km_buf_puts(out, f->name);
    if (st == KM_OK)
        st = km_buf_puts(out, suffix);
    if (st == KM_OK && (f->nlabels || le))
        st = km_buf_puts(out, "{");
    for (size_t i = 0; st == KM_OK && i < f->nlabels; i++) {
        st = km_buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
        if (st == KM_OK)
            st = put_escaped(out, s->values[i], 1);
        if (st == KM_OK)
            st = km_buf_puts(out, "\"");
    }
    if (st == KM_OK && le)
        st = km_buf_printf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    if (st == KM_OK && (f->nlabels || le))
        st = km_buf_puts(out, "}");
    if (st == KM_OK)
        st = km_buf_printf(out, " %s\n", km_metrics_fmt_value(num, sizeof(num), value));
    return st;
}

static km_status put_series(km_buf *out, const km_metric *f, const series *s)
{
    if (f->type != KM_METRIC_HISTOGRAM)
        return put_sample(out, f, "", s, NULL, s->value);
    km_status st = KM_OK;
    unsigned long long cum = 0;
    char le[32];
    for (size_t i = 0; st == KM_OK && i <= f->nbuckets; i++) {
        cum += s->bucket[i];
        if (i < f->nbuckets)
            km_metrics_fmt_value(le, sizeof(le), f->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        st = put_sample(out, f, "_bucket", s, le, (double)cum);
    }
    if (st == KM_OK)
        st = put_sample(out, f, "_sum", s, NULL, s->sum);
    if (st == KM_OK)
        st = put_sample(out, f, "_count", s, NULL, (double)s->count);
    return st;
}

static int cmp_series_n(const series *a, const series *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int c = strcmp(a->values[i], b->values[i]);
        if (c)
            return c;
    }
    return 0;
}

/* qsort has no user pointer, so each entry carries its family's label count. */
typedef struct series_ref {
    const series *s;
    size_t n;
} series_ref;

typedef struct series_refs {
    series_ref *refs;
    size_t n;
    size_t nlabels;
} series_refs;

static int collect_ref(const char *key, void *val, void *user)
{
    (void)key;
    series_refs *sr = user;
    sr->refs[sr->n++] = (series_ref){val, sr->nlabels};
    return 0;
}

static int cmp_series(const void *a, const void *b)
{
    const series_ref *x = a, *y = b;
    return cmp_series_n(x->s, y->s, x->n);
}

static int cmp_family(const void *a, const void *b)
{
    const km_metric *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static const char *type_name(km_metric_type t)
{
    switch (t) {
    case KM_METRIC_COUNTER:
        return "counter";
    case KM_METRIC_GAUGE:
        return "gauge";
    default:
        return "histogram";
    }
}

static km_status render_family(km_metric *f, km_buf *out)
{
    km_status st = km_buf_printf(out, "# HELP %s ", f->name);
    if (st == KM_OK)
        st = put_escaped(out, f->help, 0);
    if (st == KM_OK)
        st = km_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_name(f->type));
    if (st != KM_OK)
        return st;

    pthread_mutex_lock(&f->mu);
    series_ref *refs = NULL;
    size_t total = km_strmap_len(f->series);
    if (total) {
        refs = malloc(total * sizeof(*refs));
        if (!refs)
            st = KM_ENOMEM;
    }
    if (st == KM_OK) {
        series_refs sr = {refs, 0, f->nlabels};
        km_strmap_each(f->series, collect_ref, &sr);
        size_t n = sr.n;
        if (n > 1)
            qsort(refs, n, sizeof(*refs), cmp_series);
        for (size_t i = 0; st == KM_OK && i < n; i++)
            st = put_series(out, f, refs[i].s);
    }
    pthread_mutex_unlock(&f->mu);
    free(refs);
    return st;
}

km_status km_metrics_render(km_metrics *m, km_buf *out)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->nfamilies;
    km_metric **fams = n ? malloc(n * sizeof(*fams)) : NULL;
    if (fams) {
        size_t i = 0;
        for (km_metric *f = m->families; f; f = f->next)
            fams[i++] = f;
    }
    pthread_mutex_unlock(&m->mu);
    if (n && !fams)
        return KM_ENOMEM;
    /* Families are never removed before km_metrics_free, so the pointers stay valid. */
    if (n > 1)
        qsort(fams, n, sizeof(*fams), cmp_family);
    km_status st = KM_OK;
    for (size_t i = 0; st == KM_OK && i < n; i++)
        st = render_family(fams[i], out);
    free(fams);
    return st;
}
