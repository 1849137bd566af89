/* test_verify.c — the Verified condition folded from the steps' verify answers
 * (reconcilers/recovery/verify.h) and what a hook found left (reconcilers/step/left.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "reconcilers/recovery/verify.h"
#include "reconcilers/step/left.h"

static void fold(const km_verify *v, const char **st, const char **reason, char *msg, size_t n)
{
    km_verify_result(v, st, reason, msg, n);
}

static void test_all_true_is_healed(void **state)
{
    (void)state;
    km_verify v;
    const char *st, *reason;
    char msg[4096];
    memset(&v, 0, sizeof(v));
    km_verify_add(&v, "tokens", KM_OK, "True", "12 token Secrets valid (JWKS)", NULL);
    km_verify_add(&v, "pods", KM_OK, "True", "no stale pod", NULL);
    fold(&v, &st, &reason, msg, sizeof(msg));
    assert_string_equal(st, "True");
    assert_string_equal(reason, "Healed");
    assert_string_equal(msg, "tokens: 12 token Secrets valid (JWKS); pods: no stale pod");
}

static void test_one_false_names_what_is_left(void **state)
{
    (void)state;
    km_verify v;
    const char *st, *reason;
    char msg[4096];
    km_err e;
    memset(&v, 0, sizeof(v));
    km_err_set(&e, KM_ETRANSPORT, "connection refused");
    km_verify_add(&v, "tokens", KM_OK, "True", "ok", NULL);
    km_verify_add(&v, "extauth", KM_OK, "False", "client-ca-file: superseded CN=kubernetes", NULL);
    km_verify_add(&v, "csr", KM_ETRANSPORT, "", "", &e);
    fold(&v, &st, &reason, msg, sizeof(msg));
    assert_string_equal(st, "False"); /* something is known to be left: False beats Unknown */
    assert_string_equal(reason, "NotHealed");
    assert_non_null(strstr(msg, "left: extauth: client-ca-file: superseded CN=kubernetes"));
    assert_non_null(strstr(msg, "could not check: csr: "));
    assert_non_null(strstr(msg, "connection refused"));
    assert_null(strstr(msg, "tokens"));
}

static void test_an_unreadable_check_is_unknown(void **state)
{
    (void)state;
    km_verify v;
    const char *st, *reason;
    char msg[4096];
    km_err e;
    memset(&v, 0, sizeof(v));
    km_err_set(&e, KM_EAPI, "forbidden");
    km_verify_add(&v, "tokens", KM_OK, "True", "ok", NULL);
    km_verify_add(&v, "pods", KM_EAPI, NULL, NULL, &e);
    km_verify_add(&v, "csr", KM_OK, "", "", NULL); /* an answer without a status */
    fold(&v, &st, &reason, msg, sizeof(msg));
    assert_string_equal(st, "Unknown");
    assert_string_equal(reason, "VerifyFailed");
    assert_non_null(strstr(msg, "pods: "));
    assert_non_null(strstr(msg, "forbidden"));
    assert_non_null(strstr(msg, "csr: the check gave no answer"));
}

static void test_no_hook_is_healed(void **state)
{
    (void)state;
    km_verify v;
    const char *st, *reason;
    char msg[64];
    memset(&v, 0, sizeof(v));
    fold(&v, &st, &reason, msg, sizeof(msg));
    assert_string_equal(st, "True");
    assert_string_equal(msg, "nothing to verify");
}

static void test_long_answers_are_truncated(void **state)
{
    (void)state;
    km_verify v;
    const char *st, *reason;
    char big[3000], msg[256];
    memset(&v, 0, sizeof(v));
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 5; i++)
        km_verify_add(&v, "pods", KM_OK, "False", big, NULL);
    fold(&v, &st, &reason, msg, sizeof(msg));
    assert_string_equal(st, "False");
    assert_int_equal(strlen(msg), sizeof(msg) - 1);
    assert_int_equal(v.falses, 5);
}

static void test_left_names_and_counts(void **state)
{
    (void)state;
    km_left l = {0};
    char buf[600];
    assert_string_equal(km_left_text(&l, buf, sizeof(buf)), "0");
    km_left_add(&l, "ns/a");
    km_left_add(&l, "ns/b");
    assert_string_equal(km_left_text(&l, buf, sizeof(buf)), "2: ns/a, ns/b");
    char name[200];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    for (int i = 0; i < 10; i++)
        km_left_add(&l, name);
    km_left_add(&l, NULL);
    assert_int_equal(l.n, 13);
    assert_int_equal(l.shown, 4); /* 2 short + 2 of 199 chars fit in 480 */
    km_left_text(&l, buf, sizeof(buf));
    assert_non_null(strstr(buf, "13: ns/a, ns/b, nnn"));
    assert_non_null(strstr(buf, ", and 9 more"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_true_is_healed),
        cmocka_unit_test(test_one_false_names_what_is_left),
        cmocka_unit_test(test_an_unreadable_check_is_unknown),
        cmocka_unit_test(test_no_hook_is_healed),
        cmocka_unit_test(test_long_answers_are_truncated),
        cmocka_unit_test(test_left_names_and_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
