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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_off_and_null),
        cmocka_unit_test(test_wait_is_cancelable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
