/* test_lease.c — leader-election arithmetic with an injected clock: expiry is judged by when
 * this candidate last SAW the record change (never by remote timestamps), and a leader stops
 * before anyone else may consider the lease expired. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/serve/lease.h"

static km_lease_record rec(const char *holder, const char *renew, long transitions)
{
    km_lease_record r;
    memset(&r, 0, sizeof(r));
    snprintf(r.holder, sizeof(r.holder), "%s", holder);
    snprintf(r.renew_time, sizeof(r.renew_time), "%s", renew);
    r.transitions = transitions;
    r.duration_s = 15;
    return r;
}

static void test_expiry_from_local_observation(void **state)
{
    (void)state;
    km_lease_observed o;
    memset(&o, 0, sizeof(o));
    assert_false(km_lease_expired(&o, 1000, 15)); /* nothing seen yet */
    km_lease_record a = rec("other", "2026-01-01T00:00:00.000000Z", 0);
    km_lease_observe(&o, &a, 100.0);
    assert_false(km_lease_expired(&o, 114.9, 15));
    assert_true(km_lease_expired(&o, 115.0, 15));
    /* Re-reading the SAME record does not refresh the observation time. */
    km_lease_observe(&o, &a, 110.0);
    assert_true(km_lease_expired(&o, 115.0, 15));
    /* A renewal (renewTime changed) does. */
    km_lease_record b = rec("other", "2026-01-01T00:00:02.000000Z", 0);
    km_lease_observe(&o, &b, 112.0);
    assert_false(km_lease_expired(&o, 126.9, 15));
    assert_true(km_lease_expired(&o, 127.0, 15));
}

static void test_remote_timestamps_are_never_compared(void **state)
{
    (void)state;
    /* A renewTime far in the past (skewed clock) is not "expired" while it keeps changing, and
     * one far in the future does not keep a dead leader alive. */
    km_lease_observed o;
    memset(&o, 0, sizeof(o));
    km_lease_record past = rec("other", "1999-01-01T00:00:00.000000Z", 0);
    km_lease_observe(&o, &past, 50.0);
    assert_false(km_lease_expired(&o, 60.0, 15));
    km_lease_record past2 = rec("other", "1999-01-01T00:00:02.000000Z", 0);
    km_lease_observe(&o, &past2, 62.0);
    assert_false(km_lease_expired(&o, 70.0, 15));

    memset(&o, 0, sizeof(o));
    km_lease_record future = rec("other", "2999-01-01T00:00:00.000000Z", 0);
    km_lease_observe(&o, &future, 10.0);
    assert_true(km_lease_expired(&o, 25.0, 15));
}

static void test_other_fields_count_as_change(void **state)
{
    (void)state;
    km_lease_record a = rec("x", "t", 1);
    km_lease_record b = a;
    assert_false(km_lease_record_changed(&a, &b));
    b.transitions = 2;
    assert_true(km_lease_record_changed(&a, &b));
    b = a;
    snprintf(b.holder, sizeof(b.holder), "y");
    assert_true(km_lease_record_changed(&a, &b));
    b = a;
    b.duration_s = 30;
    assert_true(km_lease_record_changed(&a, &b));
    /* resourceVersion alone is not part of the record's identity. */
    b = a;
    snprintf(b.resource_version, sizeof(b.resource_version), "99");
    assert_false(km_lease_record_changed(&a, &b));
}

static void test_free_lease_and_duration(void **state)
{
    (void)state;
    km_lease_observed o;
    memset(&o, 0, sizeof(o));
    km_lease_record free_rec = rec("", "t", 3);
    km_lease_observe(&o, &free_rec, 5.0);
    assert_true(km_lease_expired(&o, 5.0, 15)); /* released: free at once */

    memset(&o, 0, sizeof(o));
    km_lease_record r = rec("x", "t", 0);
    r.duration_s = 0; /* unset: default duration */
    km_lease_observe(&o, &r, 0.0);
    assert_false(km_lease_expired(&o, 29.0, 30));
    assert_true(km_lease_expired(&o, 30.0, 30));
}

static void test_renew_deadline_before_expiry(void **state)
{
    (void)state;
    /* Leader started its last successful renew at t=100 (before the server committed it, so
     * before any other candidate can have seen it). */
    double start = 100.0;
    assert_false(km_lease_renew_overdue(start, 109.9, KM_LEASE_RENEW_DEADLINE));
    assert_true(km_lease_renew_overdue(start, 110.0, KM_LEASE_RENEW_DEADLINE));
    /* The earliest another candidate may take over: it saw the change no earlier than start. */
    km_lease_observed o;
    memset(&o, 0, sizeof(o));
    km_lease_record r = rec("leader", "t", 0);
    km_lease_observe(&o, &r, start);
    double t = start;
    while (!km_lease_renew_overdue(start, t, KM_LEASE_RENEW_DEADLINE))
        t += 0.01;
    assert_false(km_lease_expired(&o, t, KM_LEASE_DURATION)); /* leader stops first */
    assert_true(KM_LEASE_RENEW_DEADLINE < KM_LEASE_DURATION);
}

static void test_request_budget(void **state)
{
    (void)state;
    assert_true(km_lease_request_budget(100, 101, 10, 5) == 5.0);
    assert_true(km_lease_request_budget(100, 107, 10, 5) == 3.0);
    assert_true(km_lease_request_budget(100, 112, 10, 5) == 0.1);
}

static void test_identity(void **state)
{
    (void)state;
    char a[128], b[128];
    km_lease_identity(a, sizeof(a));
    km_lease_identity(b, sizeof(b));
    assert_non_null(strchr(a, '_'));
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expiry_from_local_observation),
        cmocka_unit_test(test_remote_timestamps_are_never_compared),
        cmocka_unit_test(test_other_fields_count_as_change),
        cmocka_unit_test(test_free_lease_and_duration),
        cmocka_unit_test(test_renew_deadline_before_expiry),
        cmocka_unit_test(test_request_budget),
        cmocka_unit_test(test_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
