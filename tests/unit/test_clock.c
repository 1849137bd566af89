/* test_clock.c — the clock module: RFC 3339 text (format and the one strict parser),
 * deadlines and the cancellable sleep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/clock.h"

static void test_format(void **state)
{
    (void)state;
    char buf[KM_CLOCK_TEXT_MAX];
    struct timespec t = {1795687012, 123456789}; /* 2026-11-26T09:56:52.123456789Z */
    assert_string_equal(km_clock_format(t, 0, buf, sizeof(buf)), "2026-11-26T09:56:52Z");
    assert_string_equal(km_clock_format(t, 3, buf, sizeof(buf)), "2026-11-26T09:56:52.123Z");
    assert_string_equal(km_clock_format(t, 6, buf, sizeof(buf)), "2026-11-26T09:56:52.123456Z");
    assert_string_equal(km_clock_format_s(0, buf, sizeof(buf)), "1970-01-01T00:00:00Z");
    char tiny[8];
    assert_string_equal(km_clock_format(t, 0, tiny, sizeof(tiny)), "");
    assert_int_equal(strlen(km_clock_now_text(buf, sizeof(buf))), 20);
}

static void test_parse_strict(void **state)
{
    (void)state;
    time_t t = 0, t2 = 0;
    assert_int_equal(km_clock_parse("2026-11-26T10:00:00Z", &t), KM_OK);
    assert_int_equal(km_clock_parse("2026-11-26T10:00:00.123456Z", &t2), KM_OK);
    assert_true(t == t2);
    assert_int_equal(km_clock_parse("2026-11-26T11:30:00+01:30", &t2), KM_OK);
    assert_true(t == t2);
    assert_int_equal(km_clock_parse("2026-11-26t10:00:00z", &t2), KM_OK);
    assert_true(t == t2);
    char buf[KM_CLOCK_TEXT_MAX];
    assert_string_equal(km_clock_format_s(t, buf, sizeof(buf)), "2026-11-26T10:00:00Z");
    t2 = 42;
    const char *bad[] = {"2026-11-26 10:00:00",      "garbage",
                         "2026-13-26T10:00:00Z",     "2026-11-26T10:00:00",
                         "2026-11-26T10:00:00Zjunk", "2026-11-26T10:00:00.Z",
                         "2026-11-26T24:00:00Z",     "2026-11-26T10:00:00+1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(km_clock_parse(bad[i], &t2), KM_EPARSE);
    assert_int_equal(km_clock_parse(NULL, &t2), KM_EPARSE);
    assert_true(t2 == 42); /* untouched on failure */
}

static void test_deadline_and_sleep(void **state)
{
    (void)state;
    struct timespec now, d = km_clock_deadline(CLOCK_MONOTONIC, 2.5);
    clock_gettime(CLOCK_MONOTONIC, &now);
    double diff = (double)(d.tv_sec - now.tv_sec) + (double)(d.tv_nsec - now.tv_nsec) / 1e9;
    assert_true(diff > 2.0 && diff <= 2.5);
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    d = km_clock_deadline(CLOCK_REALTIME, -1);
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);

    atomic_int flag = 1;
    assert_int_equal(km_clock_sleep(1000, &flag), KM_ECANCELED);
    assert_int_equal(km_clock_sleep(0, NULL), KM_OK);
    double t0 = km_clock_mono();
    assert_int_equal(km_clock_sleep(0.01, NULL), KM_OK);
    assert_true(km_clock_mono() - t0 >= 0.01);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse_strict),
        cmocka_unit_test(test_deadline_and_sleep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
