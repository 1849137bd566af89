/* test_ratelimit.c — token bucket arithmetic (injected clock) and cancellation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "operator/kube/ratelimit.h"

static void test_burst_then_rate(void **state)
{
    (void)state;
    km_ratelimit *rl = km_ratelimit_new(10, 3);
    assert_non_null(rl);
    for (int i = 0; i < 3; i++)
        assert_float_equal(km_ratelimit_reserve_at(rl, 100.0), 0, 1e-12);
    assert_float_equal(km_ratelimit_reserve_at(rl, 100.0), 0.1, 1e-9);
    assert_float_equal(km_ratelimit_reserve_at(rl, 100.0), 0.2, 1e-9);
    /* 0.2 s later two tokens came back, both already reserved: the next waits 0.1 s */
    assert_float_equal(km_ratelimit_reserve_at(rl, 100.2), 0.1, 1e-9);
    /* a long idle refills only up to burst */
    for (int i = 0; i < 3; i++)
        assert_float_equal(km_ratelimit_reserve_at(rl, 200.0), 0, 1e-12);
    assert_float_equal(km_ratelimit_reserve_at(rl, 200.0), 0.1, 1e-9);
    /* time going backwards does not add tokens */
    assert_float_equal(km_ratelimit_reserve_at(rl, 150.0), 0.2, 1e-9);
    km_ratelimit_free(rl);
}

static void test_off_and_null(void **state)
{
    (void)state;
    km_ratelimit *rl = km_ratelimit_new(0, 0);
    for (int i = 0; i < 1000; i++)
        assert_float_equal(km_ratelimit_reserve_at(rl, 1.0), 0, 0);
    assert_int_equal(km_ratelimit_wait(rl, NULL), KM_OK);
    km_ratelimit_free(rl);
    assert_float_equal(km_ratelimit_reserve_at(NULL, 1.0), 0, 0);
    km_ratelimit_free(NULL);
    rl = km_ratelimit_new(1, 0); /* burst < 1 acts as 1 */
    assert_float_equal(km_ratelimit_reserve_at(rl, 5.0), 0, 0);
    assert_float_equal(km_ratelimit_reserve_at(rl, 5.0), 1.0, 1e-9);
    km_ratelimit_free(rl);
}

static void test_wait_is_cancelable(void **state)
{
    (void)state;
    atomic_int flag = 0;
    km_ratelimit *rl = km_ratelimit_new(0.001, 1); /* the second token takes 1000 s */
    assert_int_equal(km_ratelimit_wait(rl, &flag), KM_OK);
    atomic_store(&flag, 1);
    assert_int_equal(km_ratelimit_wait(rl, &flag), KM_ECANCELED);
    km_ratelimit_free(rl);
}

/* Feeds `n` answers spread over [t, t + span) with the given code and latency, reserving a token
 * before each (as the client does).  Returns the time after the last one. */
static double feed(km_ratelimit *rl, double t, double span, int n, long code, double lat)
{
    for (int i = 0; i < n; i++) {
        double now = t + span * i / n;
        (void)km_ratelimit_reserve_at(rl, now);
        km_ratelimit_feedback_at(rl, code, lat, 0, now);
    }
    return t + span;
}

static void test_adaptive_grows_while_binding_and_fast(void **state)
{
    (void)state;
    km_ratelimit *rl = km_ratelimit_new_adaptive(100, 1, 150, 10);
    assert_non_null(rl);
    assert_float_equal(km_ratelimit_rate(rl), 100, 1e-9);
    /* 100 quick answers in one second: the limit binds, latency flat -> +10% */
    double t = feed(rl, 10, 1.0, 100, 200, 0.005);
    km_ratelimit_feedback_at(rl, 200, 0.005, 0, t + 0.01); /* closes the window */
    assert_float_equal(km_ratelimit_rate(rl), 110, 1e-6);
    /* capped at max */
    for (int w = 0; w < 10; w++)
        t = feed(rl, t + 0.02, 1.0, 200, 200, 0.005);
    assert_float_equal(km_ratelimit_rate(rl), 150, 1e-6);
    /* a client far below the limit (not binding) does not raise it */
    km_ratelimit *idle = km_ratelimit_new_adaptive(100, 1, 1000, 10);
    t = feed(idle, 10, 1.0, 10, 200, 0.005);
    km_ratelimit_feedback_at(idle, 200, 0.005, 0, t + 0.01);
    assert_float_equal(km_ratelimit_rate(idle), 100, 1e-6);
    km_ratelimit_free(idle);
    km_ratelimit_free(rl);
}

static void test_adaptive_halves_on_429_and_honours_retry_after(void **state)
{
    (void)state;
    km_ratelimit *rl = km_ratelimit_new_adaptive(100, 10, 1000, 10);
    km_ratelimit_feedback_at(rl, 429, 0.001, 5, 50.0);
    assert_float_equal(km_ratelimit_rate(rl), 50, 1e-9);
    /* no token before the Retry-After ends, even with tokens in the bucket */
    assert_true(km_ratelimit_reserve_at(rl, 51.0) >= 4.0 - 1e-9);
    km_ratelimit_feedback_at(rl, 429, 0.001, 0, 52.0);
    km_ratelimit_feedback_at(rl, 429, 0.001, 0, 52.1);
    km_ratelimit_feedback_at(rl, 429, 0.001, 0, 52.2);
    assert_float_equal(km_ratelimit_rate(rl), 10, 1e-9); /* never below min */
    /* a fixed limiter ignores feedback */
    km_ratelimit *fixed = km_ratelimit_new(100, 10);
    km_ratelimit_feedback_at(fixed, 429, 0.001, 5, 1.0);
    assert_float_equal(km_ratelimit_rate(fixed), 100, 1e-9);
    assert_float_equal(km_ratelimit_reserve_at(fixed, 1.0), 0, 1e-12);
    km_ratelimit_free(fixed);
    assert_null(km_ratelimit_new_adaptive(10, 20, 5, 1)); /* min > max */
    km_ratelimit_free(rl);
}

static void test_adaptive_backs_off_on_rising_latency(void **state)
{
    (void)state;
    km_ratelimit *rl = km_ratelimit_new_adaptive(100, 1, 1000, 10);
    double t = feed(rl, 10, 1.0, 20, 200, 0.010); /* baseline 10 ms (not binding: unchanged) */
    km_ratelimit_feedback_at(rl, 200, 0.010, 0, t + 0.01);
    assert_float_equal(km_ratelimit_rate(rl), 100, 1e-6);
    t = feed(rl, t + 0.02, 1.0, 20, 200, 0.200); /* 20x slower: the server struggles -> 80% */
    km_ratelimit_feedback_at(rl, 200, 0.200, 0, t + 0.01);
    assert_float_equal(km_ratelimit_rate(rl), 80, 1e-6);
    km_ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_off_and_null),
        cmocka_unit_test(test_wait_is_cancelable),
        cmocka_unit_test(test_adaptive_grows_while_binding_and_fast),
        cmocka_unit_test(test_adaptive_halves_on_429_and_honours_retry_after),
        cmocka_unit_test(test_adaptive_backs_off_on_rising_latency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
