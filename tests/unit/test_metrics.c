/* test_metrics.c — operator/metrics: registry rules, exposition exactness, concurrency. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/serve/families.h"

static km_metrics *new_reg(size_t max_series)
{
    km_metrics *m = NULL;
    assert_int_equal(km_metrics_new(max_series, &m, NULL), KM_OK);
    assert_non_null(m);
    return m;
}

/* Renders m into a malloc'ed string the caller frees. */
static char *render(km_metrics *m)
{
    km_buf b;
    km_buf_init(&b, 0);
    assert_int_equal(km_metrics_render(m, &b), KM_OK);
    char *s = km_buf_take(&b);
    assert_non_null(s);
    return s;
}

static void test_counter_and_gauge_text(void **state)
{
    (void)state;
    km_metrics *m = new_reg(0);
    const char *lab[] = {"controller", "result"};
    km_metric *c = NULL, *g = NULL;
    assert_int_equal(km_metrics_register(m, KM_METRIC_COUNTER, "b_total", "Things done.", lab, 2,
                                         NULL, 0, &c, NULL),
                     KM_OK);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_GAUGE, "a_up", "Up.", NULL, 0, NULL, 0, &g, NULL), KM_OK);
    assert_ptr_equal(km_metrics_get(m, "b_total"), c);
    assert_null(km_metrics_get(m, "nope"));

    assert_int_equal(KM_METRIC_INC(c, "z", "ok"), KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "a", "ok"), KM_OK);
    assert_int_equal(km_metric_add(c, KM_METRIC_VALUES("a", "error"), 2.5), KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "a", "ok"), KM_OK);
    assert_int_equal(km_metric_set(g, NULL, -3), KM_OK);

    char *s = render(m);
    assert_string_equal(s, "# HELP a_up Up.\n"
                           "# TYPE a_up gauge\n"
                           "a_up -3\n"
                           "# HELP b_total Things done.\n"
                           "# TYPE b_total counter\n"
                           "b_total{controller=\"a\",result=\"error\"} 2.5\n"
                           "b_total{controller=\"a\",result=\"ok\"} 2\n"
                           "b_total{controller=\"z\",result=\"ok\"} 1\n");
    free(s);

    double v = 0;
    assert_int_equal(km_metric_value(c, KM_METRIC_VALUES("a", "ok"), &v), KM_OK);
    assert_true(v == 2.0);
    assert_int_equal(km_metric_value(c, KM_METRIC_VALUES("q", "ok"), &v), KM_ENOTFOUND);
    km_metrics_free(m);
}

static void test_unlabelled_starts_at_zero_and_empty_family(void **state)
{
    (void)state;
    km_metrics *m = new_reg(0);
    const char *lab[] = {"x"};
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "c_total", NULL, NULL, 0, NULL, 0, NULL, NULL),
        KM_OK);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "d_total", "D", lab, 1, NULL, 0, NULL, NULL),
        KM_OK);
    char *s = render(m);
    assert_string_equal(s, "# HELP c_total \n"
                           "# TYPE c_total counter\n"
                           "c_total 0\n"
                           "# HELP d_total D\n"
                           "# TYPE d_total counter\n");
    free(s);
    km_metrics_free(m);
}

static void test_escaping(void **state)
{
    (void)state;
    km_metrics *m = new_reg(0);
    const char *lab[] = {"path"};
    km_metric *c = NULL;
    assert_int_equal(km_metrics_register(m, KM_METRIC_COUNTER, "e_total",
                                         "Help with \\ backslash\nand \"quotes\".", lab, 1, NULL, 0,
                                         &c, NULL),
                     KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "a\\b\"c\nd"), KM_OK);
    assert_int_equal(km_metric_add(c, KM_METRIC_VALUES(NULL), 1), KM_OK); /* NULL == "" */
    assert_int_equal(KM_METRIC_INC(c, ""), KM_OK);
    char *s = render(m);
    assert_string_equal(s, "# HELP e_total Help with \\\\ backslash\\nand \"quotes\".\n"
                           "# TYPE e_total counter\n"
                           "e_total{path=\"\"} 2\n"
                           "e_total{path=\"a\\\\b\\\"c\\nd\"} 1\n");
    free(s);
    km_metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    km_metrics *m = new_reg(0);
    const char *lab[] = {"verb"};
    const double b[] = {0.1, 0.5, 2};
    km_metric *h = NULL;
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_HISTOGRAM, "h_seconds", "H.", lab, 1, b, 3, &h, NULL),
        KM_OK);
    /* boundaries are inclusive (le) */
    assert_int_equal(km_metric_observe(h, KM_METRIC_VALUES("get"), 0.1), KM_OK);
    assert_int_equal(km_metric_observe(h, KM_METRIC_VALUES("get"), 0.3), KM_OK);
    assert_int_equal(km_metric_observe(h, KM_METRIC_VALUES("get"), 0.5), KM_OK);
    assert_int_equal(km_metric_observe(h, KM_METRIC_VALUES("get"), 7), KM_OK);
    assert_int_equal(km_metric_observe(h, KM_METRIC_VALUES("get"), NAN), KM_EINVAL);
    assert_int_equal(km_metric_add(h, KM_METRIC_VALUES("get"), 1), KM_EINVAL);
    char *s = render(m);
    assert_string_equal(s, "# HELP h_seconds H.\n"
                           "# TYPE h_seconds histogram\n"
                           "h_seconds_bucket{verb=\"get\",le=\"0.1\"} 1\n"
                           "h_seconds_bucket{verb=\"get\",le=\"0.5\"} 3\n"
                           "h_seconds_bucket{verb=\"get\",le=\"2\"} 3\n"
                           "h_seconds_bucket{verb=\"get\",le=\"+Inf\"} 4\n"
                           "h_seconds_sum{verb=\"get\"} 7.9\n"
                           "h_seconds_count{verb=\"get\"} 4\n");
    free(s);
    double v = 0;
    assert_int_equal(km_metric_value(h, KM_METRIC_VALUES("get"), &v), KM_OK);
    assert_true(v == 4.0);
    km_metrics_free(m);
}

static void test_histogram_no_labels(void **state)
{
    (void)state;
    km_metrics *m = new_reg(0);
    const double b[] = {1};
    km_metric *h = NULL;
    assert_int_equal(km_metrics_register(m, KM_METRIC_HISTOGRAM, "x", "X", NULL, 0, b, 1, &h, NULL),
                     KM_OK);
    assert_int_equal(km_metric_observe(h, NULL, 0.25), KM_OK);
    char *s = render(m);
    assert_string_equal(s, "# HELP x X\n# TYPE x histogram\n"
                           "x_bucket{le=\"1\"} 1\n"
                           "x_bucket{le=\"+Inf\"} 1\n"
                           "x_sum 0.25\n"
                           "x_count 1\n");
    free(s);
    km_metrics_free(m);
}

static void test_register_validation(void **state)
{
    (void)state;
    km_metrics *m = new_reg(0);
    km_err err;
    km_metric *out = (km_metric *)(uintptr_t)0x1;
    const char *bad_label[] = {"9x"};
    const char *reserved[] = {"__x"};
    const char *dup[] = {"a", "a"};
    const char *le[] = {"le"};
    const double inc[] = {1, 1};
    const double inf[] = {1, INFINITY};
    const double ok[] = {1};

    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "1abc", "", NULL, 0, NULL, 0, &out, &err),
        KM_EINVAL);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "a-b", "", NULL, 0, NULL, 0, &out, &err),
        KM_EINVAL);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "", "", NULL, 0, NULL, 0, &out, &err), KM_EINVAL);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "a", "", bad_label, 1, NULL, 0, &out, &err),
        KM_EINVAL);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "a", "", reserved, 1, NULL, 0, &out, &err),
        KM_EINVAL);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "a", "", dup, 2, NULL, 0, &out, &err), KM_EINVAL);
    assert_int_equal(km_metrics_register(m, KM_METRIC_HISTOGRAM, "a", "", le, 1, ok, 1, &out, &err),
                     KM_EINVAL);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_HISTOGRAM, "a", "", NULL, 0, inc, 2, &out, &err),
        KM_EINVAL);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_HISTOGRAM, "a", "", NULL, 0, inf, 2, &out, &err),
        KM_EINVAL);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_HISTOGRAM, "a", "", NULL, 0, NULL, 0, &out, &err),
        KM_EINVAL);
    assert_int_equal(km_metrics_register(m, KM_METRIC_COUNTER, "a", "", NULL, 0, ok, 1, &out, &err),
                     KM_EINVAL);
    assert_ptr_equal(out, (km_metric *)(uintptr_t)0x1); /* untouched on failure */

    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "ns:a_total", "", NULL, 0, NULL, 0, NULL, &err),
        KM_OK);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_GAUGE, "ns:a_total", "", NULL, 0, NULL, 0, NULL, &err),
        KM_EINVAL);
    assert_non_null(strstr(err.message, "already registered"));
    char *s = render(m);
    assert_string_equal(s, "# HELP ns:a_total \n# TYPE ns:a_total counter\nns:a_total 0\n");
    free(s);
    km_metrics_free(m);
}

static void test_type_rules(void **state)
{
    (void)state;
    km_metrics *m = new_reg(0);
    km_metric *c = NULL, *g = NULL;
    assert_int_equal(km_metrics_register(m, KM_METRIC_COUNTER, "c", "", NULL, 0, NULL, 0, &c, NULL),
                     KM_OK);
    assert_int_equal(km_metrics_register(m, KM_METRIC_GAUGE, "g", "", NULL, 0, NULL, 0, &g, NULL),
                     KM_OK);
    assert_int_equal(km_metric_add(c, NULL, -1), KM_EINVAL);
    assert_int_equal(km_metric_add(c, NULL, NAN), KM_EINVAL);
    assert_int_equal(km_metric_set(c, NULL, 5), KM_EINVAL);
    assert_int_equal(km_metric_observe(c, NULL, 5), KM_EINVAL);
    assert_int_equal(km_metric_add(NULL, NULL, 1), KM_EINVAL);
    assert_int_equal(km_metric_add(g, NULL, 5), KM_OK);
    assert_int_equal(km_metric_add(g, NULL, -2), KM_OK);
    double v = 0;
    assert_int_equal(km_metric_value(g, NULL, &v), KM_OK);
    assert_true(v == 3.0);
    assert_int_equal(km_metric_value(c, NULL, &v), KM_OK);
    assert_true(v == 0.0);
    km_metrics_free(m);
}

static void test_series_limit(void **state)
{
    (void)state;
    km_metrics *m = new_reg(2);
    const char *lab[] = {"k"};
    km_metric *c = NULL;
    assert_int_equal(km_metrics_register(m, KM_METRIC_COUNTER, "c", "", lab, 1, NULL, 0, &c, NULL),
                     KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "a"), KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "b"), KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "c"), KM_ETOOBIG);
    assert_int_equal(KM_METRIC_INC(c, "a"), KM_OK); /* existing series still count */
    assert_int_equal(km_metrics_dropped(m), 1);
    char *s = render(m);
    assert_string_equal(s, "# HELP c \n# TYPE c counter\nc{k=\"a\"} 2\nc{k=\"b\"} 1\n");
    free(s);
    km_metrics_free(m);
}

static void test_label_tuple_distinct(void **state)
{
    (void)state;
    km_metrics *m = new_reg(0);
    const char *lab[] = {"a", "b"};
    km_metric *c = NULL;
    assert_int_equal(km_metrics_register(m, KM_METRIC_COUNTER, "c", "", lab, 2, NULL, 0, &c, NULL),
                     KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "x", ""), KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "", "x"), KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "xy", ""), KM_OK);
    assert_int_equal(KM_METRIC_INC(c, "x", "y"), KM_OK);
    char *s = render(m);
    assert_string_equal(s, "# HELP c \n# TYPE c counter\n"
                           "c{a=\"\",b=\"x\"} 1\n"
                           "c{a=\"x\",b=\"\"} 1\n"
                           "c{a=\"x\",b=\"y\"} 1\n"
                           "c{a=\"xy\",b=\"\"} 1\n");
    free(s);
    km_metrics_free(m);
}

static void test_fmt_value(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), 0), "0");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), -0.0), "0");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), 42), "42");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), -7), "-7");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), 1e15), "1000000000000000");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), 0.1), "0.1");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), 0.005), "0.005");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), 2.5), "2.5");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), 1.5e-7), "1.5e-07");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), 1e300), "1e+300");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), INFINITY), "+Inf");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), -INFINITY), "-Inf");
    assert_string_equal(km_metrics_fmt_value(b, sizeof(b), NAN), "NaN");
    double third = 1.0 / 3.0;
    km_metrics_fmt_value(b, sizeof(b), third);
    assert_true(strtod(b, NULL) == third);
}

typedef struct worker_arg {
    km_metric *c;
    km_metric *h;
    int id;
} worker_arg;

#define THREADS 4
#define ITER 20000

static void *worker(void *p)
{
    worker_arg *a = p;
    char key[16];
    for (int i = 0; i < ITER; i++) {
        snprintf(key, sizeof(key), "k%d", i % 3);
        if (KM_METRIC_INC(a->c, key) != KM_OK)
            return (void *)1;
        if (km_metric_observe(a->h, NULL, (i % 2) ? 0.5 : 2.0) != KM_OK)
            return (void *)1;
    }
    return NULL;
}

static void *renderer(void *p)
{
    km_metrics *m = p;
    for (int i = 0; i < 50; i++) {
        km_buf b;
        km_buf_init(&b, 0);
        km_status st = km_metrics_render(m, &b);
        int ok = st == KM_OK && strstr(km_buf_str(&b), "# TYPE conc_total counter\n");
        km_buf_cleanup(&b);
        if (!ok)
            return (void *)1;
    }
    return NULL;
}

static void test_concurrency_smoke(void **state)
{
    (void)state;
    km_metrics *m = new_reg(0);
    const char *lab[] = {"k"};
    const double b[] = {1};
    km_metric *c = NULL, *h = NULL;
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_COUNTER, "conc_total", "", lab, 1, NULL, 0, &c, NULL),
        KM_OK);
    assert_int_equal(
        km_metrics_register(m, KM_METRIC_HISTOGRAM, "conc_h", "", NULL, 0, b, 1, &h, NULL), KM_OK);
    pthread_t t[THREADS + 1];
    worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){c, h, i};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
    }
    assert_int_equal(pthread_create(&t[THREADS], NULL, renderer, m), 0);
    for (int i = 0; i <= THREADS; i++) {
        void *ret = (void *)1;
        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_null(ret);
    }
    double total = 0;
    for (int k = 0; k < 3; k++) {
        char key[16];
        double v = 0;
        snprintf(key, sizeof(key), "k%d", k);
        assert_int_equal(km_metric_value(c, KM_METRIC_VALUES(key), &v), KM_OK);
        total += v;
    }
    assert_true(total == (double)THREADS * ITER);
    char *s = render(m);
    char want[128];
    snprintf(want, sizeof(want), "conc_h_bucket{le=\"1\"} %d\n", THREADS * ITER / 2);
    assert_non_null(strstr(s, want));
    snprintf(want, sizeof(want), "conc_h_count %d\n", THREADS * ITER);
    assert_non_null(strstr(s, want));
    snprintf(want, sizeof(want), "conc_h_sum %d\n", THREADS * ITER / 2 * 5 / 2);
    assert_non_null(strstr(s, want));
    free(s);
    km_metrics_free(m);
}

static void test_default_registry(void **state)
{
    (void)state;
    km_metrics *m = NULL;
    assert_int_equal(km_metrics_new_default(&m, NULL), KM_OK);
    const char *names[] = {KM_METRIC_RECONCILE_TOTAL,    KM_METRIC_RECONCILE_ERRORS,
                           KM_METRIC_RECONCILE_DURATION, KM_METRIC_WORKQUEUE_DEPTH,
                           KM_METRIC_WORKQUEUE_RETRIES,  KM_METRIC_API_REQUESTS,
                           KM_METRIC_API_DURATION,       KM_METRIC_WATCH_RESTARTS,
                           KM_METRIC_STEP_OBJECTS,       KM_METRIC_LEADER};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_non_null(km_metrics_get(m, names[i]));

    km_metrics_observe_api("get", 200, 0.02, m);
    km_metrics_observe_api("get", 200, 0.2, m);
    km_metrics_observe_api("list", 0, 1.0, m);
    km_metrics_observe_api("get", 200, 0.02, NULL); /* no-op */
    assert_int_equal(
        KM_METRIC_INC(km_metrics_get(m, KM_METRIC_STEP_OBJECTS), "tokens", "regenerated"), KM_OK);
    assert_int_equal(km_metric_set(km_metrics_get(m, KM_METRIC_LEADER), NULL, 1), KM_OK);

    char *s = render(m);
    assert_non_null(strstr(s, "# TYPE kubemend_api_requests_total counter\n"
                              "kubemend_api_requests_total{verb=\"get\",code=\"200\"} 2\n"
                              "kubemend_api_requests_total{verb=\"list\",code=\"<error>\"} 1\n"));
    assert_non_null(strstr(s, "kubemend_api_request_duration_seconds_bucket{verb=\"get\",le="
                              "\"0.025\"} 1\n"));
    assert_non_null(strstr(s, "kubemend_api_request_duration_seconds_bucket{verb=\"get\",le="
                              "\"0.25\"} 2\n"));
    assert_non_null(strstr(s, "kubemend_api_request_duration_seconds_count{verb=\"get\"} 2\n"));
    assert_non_null(
        strstr(s, "kubemend_step_objects_total{step=\"tokens\",counter=\"regenerated\"} 1\n"));
    assert_non_null(strstr(s, "# TYPE kubemend_leader gauge\nkubemend_leader 1\n"));
    assert_non_null(strstr(s, "# TYPE kubemend_reconcile_duration_seconds histogram\n"));
    /* families appear in name order */
    assert_true(strstr(s, "kubemend_api_request_duration_seconds") <
                strstr(s, "kubemend_api_requests_total"));
    assert_true(strstr(s, "kubemend_watch_restarts_total") >
                strstr(s, "kubemend_step_objects_total"));
    free(s);
    km_metrics_free(m);
    km_metrics_free(NULL);
}

static void test_render_bounded_buffer(void **state)
{
    (void)state;
    km_metrics *m = NULL;
    assert_int_equal(km_metrics_new_default(&m, NULL), KM_OK);
    km_buf b;
    km_buf_init(&b, 64);
    assert_int_equal(km_metrics_render(m, &b), KM_ETOOBIG);
    km_buf_cleanup(&b);
    km_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge_text),
        cmocka_unit_test(test_unlabelled_starts_at_zero_and_empty_family),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_no_labels),
        cmocka_unit_test(test_register_validation),
        cmocka_unit_test(test_type_rules),
        cmocka_unit_test(test_series_limit),
        cmocka_unit_test(test_label_tuple_distinct),
        cmocka_unit_test(test_fmt_value),
        cmocka_unit_test(test_concurrency_smoke),
        cmocka_unit_test(test_default_registry),
        cmocka_unit_test(test_render_bounded_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
