/* test_num.c — checked double -> integer conversion (issue 16 item 6): server-controlled numbers
 * out of range, NaN or infinite never reach a cast (undefined behaviour), they give the default. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/json.h"
#include "operator/base/num.h"
#include "operator/serve/lease.h"
#include "watch/event.h"

static void test_bounds(void **state)
{
    (void)state;
    long long n = 7;
    assert_int_equal(km_num_to_ll(42.9, 0, 100, &n), 1);
    assert_int_equal(n, 42);
    assert_int_equal(km_num_to_ll(-42.9, -100, 100, &n), 1);
    assert_int_equal(n, -42);
    n = 7;
    assert_int_equal(km_num_to_ll(101, 0, 100, &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(km_num_to_ll(NAN, LLONG_MIN, LLONG_MAX, &n), 0);
    assert_int_equal(km_num_to_ll(INFINITY, LLONG_MIN, LLONG_MAX, &n), 0);
    assert_int_equal(km_num_to_ll(-INFINITY, LLONG_MIN, LLONG_MAX, &n), 0);
    assert_int_equal(km_num_to_ll(4e44, LLONG_MIN, LLONG_MAX, &n), 0);
    assert_int_equal(km_num_to_ll(9223372036854775808.0, LLONG_MIN, LLONG_MAX, &n), 0);
    assert_int_equal(km_num_to_ll(-9223372036854775808.0, LLONG_MIN, LLONG_MAX, &n), 1);
    assert_true(n == LLONG_MIN);
    assert_int_equal(km_num_long(-4e44, -1), -1);
    assert_int_equal(km_num_long(12.0, -1), 12);
    assert_true(km_num_llong(1e300, 5) == 5);
}

static void test_json_at(void **state)
{
    (void)state;
    cJSON *doc = cJSON_Parse("{\"a\":{\"n\":4E44,\"m\":-3,\"s\":\"9\",\"t\":1e18}}");
    assert_non_null(doc);
    assert_int_equal(KM_JSON_LONG(doc, -1, "a", "n"), -1);
    assert_int_equal(KM_JSON_LONG(doc, -1, "a", "m"), -3);
    assert_int_equal(KM_JSON_LONG(doc, -1, "a", "s"), -1);
    assert_int_equal(KM_JSON_LONG(doc, -1, "a", "missing"), -1);
    assert_int_equal(KM_JSON_LONG(doc, -1, "a", "n", "deeper"), -1);
    assert_true(KM_JSON_LONG(doc, -1, "a", "t") == 1000000000000000000L);
    cJSON_Delete(doc);
}

/* The line of the issue: an ERROR event whose code is 4E44. */
static void test_watch_error_code(void **state)
{
    (void)state;
    const char *line = "{\"type\":\"ERROR\",\"object\":{\"code\":4E44}}";
    km_event ev;
    assert_int_equal(km_event_parse(line, strlen(line), &ev, NULL), KM_OK);
    assert_int_equal(ev.type, KM_EV_ERROR);
    assert_int_equal(ev.code, 0);
    assert_int_equal(ev.expired, 0);
    km_event_cleanup(&ev);
    const char *nan = "{\"type\":\"ERROR\",\"object\":{\"code\":-1e400}}";
    assert_int_equal(km_event_parse(nan, strlen(nan), &ev, NULL), KM_OK);
    assert_int_equal(ev.code, 0);
    km_event_cleanup(&ev);
}

/* A Lease whose numbers are out of range reads as 0, not as whatever the cast gives. */
static void test_lease_numbers(void **state)
{
    (void)state;
    cJSON *l =
        cJSON_Parse("{\"spec\":{\"leaseTransitions\":1e300,\"leaseDurationSeconds\":-4E44}}");
    assert_non_null(l);
    km_lease_record r;
    assert_int_equal(km_lease_record_from_json(l, &r), KM_OK);
    assert_int_equal(r.transitions, 0);
    assert_int_equal(r.duration_s, 0);
    cJSON_Delete(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_json_at),
        cmocka_unit_test(test_watch_error_code),
        cmocka_unit_test(test_lease_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
