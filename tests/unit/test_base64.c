/* test_base64.c — strict base64 / base64url decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/base64.h"

static void test_base64(void **state)
{
    (void)state;
    unsigned char *out = NULL;
    size_t n = 0;
    assert_int_equal(km_base64_decode("aGk=", 4, 0, &out, &n), KM_OK);
    assert_int_equal(n, 2);
    assert_string_equal((char *)out, "hi");
    free(out);
    assert_int_equal(km_base64_decode("aGk", 3, KM_B64_URL, &out, &n), KM_OK);
    assert_string_equal((char *)out, "hi");
    free(out);
    assert_int_equal(km_base64_decode("-_8", 3, KM_B64_URL, &out, &n), KM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    free(out);
    out = NULL;
    assert_int_equal(km_base64_decode("-_8", 3, 0, &out, &n), KM_EPARSE);
    assert_int_equal(km_base64_decode("+/8", 3, KM_B64_URL, &out, &n), KM_EPARSE);
    assert_int_equal(km_base64_decode("a", 1, 0, &out, &n), KM_EPARSE);
    assert_int_equal(km_base64_decode("aGk==", 5, 0, &out, &n), KM_EPARSE);
    assert_int_equal(km_base64_decode("aGl=", 4, 0, &out, &n), KM_EPARSE); /* non-zero tail */
    assert_int_equal(km_base64_decode("aG k", 4, 0, &out, &n), KM_EPARSE);
    assert_null(out);
    assert_int_equal(km_base64_decode("", 0, 0, &out, &n), KM_OK);
    assert_int_equal(n, 0);
    free(out);
}

static void test_whitespace_and_padding(void **state)
{
    (void)state;
    unsigned char *out = NULL;
    size_t n = 0;
    assert_int_equal(km_base64_decode("aG\nk=\r\n", 7, KM_B64_SKIP_SPACE, &out, &n), KM_OK);
    assert_string_equal((char *)out, "hi");
    free(out);
    out = NULL;
    assert_int_equal(km_base64_decode("aG=k", 4, KM_B64_SKIP_SPACE, &out, &n), KM_EPARSE);
    assert_int_equal(km_base64_decode("aGk===", 6, 0, &out, &n), KM_EPARSE);
    assert_null(out);
    assert_int_equal(km_base64_decode("aGVsbG8gd29ybGQ=", 16, 0, &out, &n), KM_OK);
    assert_int_equal(n, 11);
    assert_memory_equal(out, "hello world", 11);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_whitespace_and_padding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
