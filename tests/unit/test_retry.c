/* test_retry.c — the steps' retry policy: what is transient, and retries ending at the deadline,
 * on a permanent error or on cancel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "operator/base/clock.h"
#include "reconcilers/step/retry.h"

static km_err api(long code)
{
    km_err e;
    km_err_clear(&e);
    e.status = KM_EAPI;
    e.http_code = code;
    return e;
}

static void test_transient_or_permanent(void **state)
{
    (void)state;
    const long transient[] = {408, 429, 500, 503, 504};
    const long permanent[] = {400, 401, 403, 404, 409, 410, 415, 422};
    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++) {
        km_err e = api(transient[i]);
        assert_true(km_retry_transient(KM_EAPI, &e));
    }
    for (size_t i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++) {
        km_err e = api(permanent[i]);
        assert_false(km_retry_transient(KM_EAPI, &e));
    }
    assert_true(km_retry_transient(KM_ETRANSPORT, NULL));
    assert_true(km_retry_transient(KM_ETIMEOUT, NULL));
    assert_false(km_retry_transient(KM_EAPI, NULL));
    assert_false(km_retry_transient(KM_EPARSE, NULL));
    assert_false(km_retry_transient(KM_ESTATE, NULL));
    assert_false(km_retry_transient(KM_ENOMEM, NULL));
    assert_false(km_retry_transient(KM_OK, NULL));
}

static void test_retries_until_the_deadline(void **state)
{
    (void)state;
    km_retry r;
    km_err e = api(503);
    km_retry_init(&r, 0.8, NULL); /* pauses 0.5 s, then what is left of 0.8 s */
    double t0 = km_clock_mono();
    int tries = 0;
    while (km_retry_again(&r, KM_EAPI, &e, "x"))
        tries++;
    assert_int_equal(tries, 2);
    assert_true(km_clock_mono() - t0 >= 0.79);
    /* permanent: no pause at all */
    km_retry_init(&r, 10, NULL);
    e = api(422);
    assert_false(km_retry_again(&r, KM_EAPI, &e, "x"));
    assert_int_equal(r.tries, 0);
}

static void test_cancel_ends_the_pause(void **state)
{
    (void)state;
    atomic_int cancel = 1;
    km_retry r;
    km_err e = api(500);
    km_retry_init(&r, 10, &cancel);
    assert_false(km_retry_again(&r, KM_EAPI, &e, "x"));
    assert_false(km_retry_wait(&r, "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transient_or_permanent),
        cmocka_unit_test(test_retries_until_the_deadline),
        cmocka_unit_test(test_cancel_ends_the_pause),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
