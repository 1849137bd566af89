/* test_labels.c — label key/value syntax of spec.pods.namespaceSelector: a ',' or '=' in a value
 * would add terms to the labelSelector query kubemend sends (issue 16 item 1: checked up front). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reconcilers/pods/labels.h"
#include "reconcilers/recovery/spec.h"

static void test_syntax(void **state)
{
    (void)state;
    const char *good_keys[] = {"a", "app.kubernetes.io/name", "kubernetes.io/metadata.name",
                               "example.com/a_b.c", "A9"};
    const char *bad_keys[] = {"",      "a,b", "a b", "Example.com/a", "-a",
                              "a/b/c", "/a",  "a/",  "a=b",           "x.-y.com/a"};
    for (size_t i = 0; i < sizeof(good_keys) / sizeof(*good_keys); i++)
        assert_true(km_labels_key_ok(good_keys[i]));
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(*bad_keys); i++)
        if (km_labels_key_ok(bad_keys[i]))
            fail_msg("key \"%s\" accepted", bad_keys[i]);
    assert_true(km_labels_value_ok(""));
    assert_true(km_labels_value_ok("a-b_c.d"));
    assert_false(km_labels_value_ok("b,c!=d"));
    assert_false(km_labels_value_ok("x y"));
    assert_false(km_labels_value_ok("-a"));
    assert_false(km_labels_value_ok(NULL));
    char v[70];
    memset(v, 'a', sizeof(v));
    v[63] = '\0';
    assert_true(km_labels_value_ok(v));
    v[63] = 'a';
    v[64] = '\0';
    assert_false(km_labels_value_ok(v));
}

/* The spec is refused up front, with the field path. */
static void test_spec_refused(void **state)
{
    (void)state;
    cJSON *spec =
        cJSON_Parse("{\"pods\":{\"namespaceSelector\":{\"matchLabels\":{\"team\":\"a,kubernetes.io/"
                    "metadata.name!=kube-system\"}}}}");
    cJSON *out = NULL;
    km_err e;
    assert_int_equal(km_recovery_spec_defaults(spec, &out, &e), KM_EINVAL);
    assert_null(out);
    assert_non_null(strstr(e.message, "spec.pods: namespaceSelector.matchLabels[team]"));
    cJSON_Delete(spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_spec_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
