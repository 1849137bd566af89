/* test_backoff.c — backoff arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "operator/base/backoff.h"

static void test_sequence_and_cap(void **state)
{
    (void)state;
    km_backoff b;
    km_backoff_init(&b, 0.5, 30, 2, 0.2);
    const double want[] = {0.5, 1, 2, 4, 8, 16, 30, 30};
    for (int i = 0; i < 8; i++) /* rand 0.5 = no jitter */
        assert_float_equal(km_backoff_next(&b, 0.5), want[i], 1e-9);
    km_backoff_reset(&b);
    assert_float_equal(km_backoff_next(&b, 0.5), 0.5, 1e-9);
}

static void test_jitter_bounds(void **state)
{
    (void)state;
    km_backoff b;
    km_backoff_init(&b, 1, 10, 2, 0.5);
    assert_float_equal(km_backoff_next(&b, 0.0), 0.5, 1e-9); /* 1 * (1 - 0.5) */
    assert_float_equal(km_backoff_next(&b, 0.999999), 2 * 1.499999, 1e-5);
    km_backoff_init(&b, 8, 10, 2, 0.5);
    km_backoff_next(&b, 0.5);
    assert_float_equal(km_backoff_next(&b, 0.99), 10, 1e-9); /* never above max */
}

static void test_clamping(void **state)
{
    (void)state;
    km_backoff b;
    km_backoff_init(&b, -1, -5, 0.5, 3);
    assert_true(b.initial > 0);
    assert_true(b.max >= b.initial);
    assert_float_equal(b.factor, 1, 0);
    assert_float_equal(b.jitter, 1, 0);
    km_backoff_init(&b, 1, 1e308, 1e308, 0); /* overflow to inf is capped */
    km_backoff_next(&b, 0.5);
    km_backoff_next(&b, 0.5);
    assert_float_equal(km_backoff_next(&b, 0.5), 1e308, 1e300);
}

static void test_rand_range(void **state)
{
    (void)state;
    double lo = 1, hi = 0;
    for (int i = 0; i < 10000; i++) {
        double r = km_backoff_rand();
        assert_true(r >= 0 && r < 1);
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    assert_true(lo < 0.01 && hi > 0.99);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequence_and_cap),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_clamping),
        cmocka_unit_test(test_rand_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
