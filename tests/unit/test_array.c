/* test_array.c — growing heap arrays: room for element n, doubling from 8, unchanged on failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "operator/base/array.h"

static void test_grow(void **state)
{
    (void)state;
    long *v = NULL;
    size_t n = 0, cap = 0;
    for (long i = 0; i < 100; i++) {
        assert_int_equal(km_array_grow(&v, n, &cap, sizeof(*v)), KM_OK);
        assert_true(cap > n);
        v[n++] = i;
    }
    assert_int_equal(cap, 128); /* 8, 16, 32, 64, 128 */
    for (long i = 0; i < 100; i++)
        assert_int_equal(v[i], i);
    size_t before = cap;
    assert_int_equal(km_array_grow(&v, 50, &cap, sizeof(*v)), KM_OK); /* room already */
    assert_int_equal(cap, before);
    long *same = v;
    size_t huge = SIZE_MAX / 2 + 1;
    assert_int_equal(km_array_grow(&v, huge, &huge, sizeof(*v)), KM_ENOMEM);
    assert_ptr_equal(v, same);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
