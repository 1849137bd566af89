/* test_conditions.c — metav1.Condition semantics (reconcilers/step/conditions.h): one entry per
 * type, lastTransitionTime changes only when status flips, observedGeneration on every write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/json.h"
#include "reconcilers/step/conditions.h"

static int count_type(const cJSON *status, const char *type)
{
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, KM_JSON_AT(status, "conditions"))
    {
        const char *t = KM_JSON_STR(c, "type");
        if (t && strcmp(t, type) == 0)
            n++;
    }
    return n;
}

static void test_new_condition_has_all_fields(void **state)
{
    (void)state;
    cJSON *st = cJSON_CreateObject();
    assert_int_equal(
        km_cond_set(st, "Succeeded", "Unknown", "Running", "go", 3, "2026-01-01T00:00:00Z"), 1);
    const cJSON *c = km_cond_get(st, "Succeeded");
    assert_non_null(c);
    assert_string_equal(KM_JSON_STR(c, "status"), "Unknown");
    assert_string_equal(KM_JSON_STR(c, "reason"), "Running");
    assert_string_equal(KM_JSON_STR(c, "message"), "go");
    assert_string_equal(KM_JSON_STR(c, "lastTransitionTime"), "2026-01-01T00:00:00Z");
    assert_int_equal((int)KM_JSON_NUM(c, -1, "observedGeneration"), 3);
    cJSON_Delete(st);
}

static void test_transition_time_only_on_flip(void **state)
{
    (void)state;
    cJSON *st = cJSON_CreateObject();
    km_cond_set(st, "PodsRestarted", "Unknown", "InProgress", "a", 1, "T1");
    /* Same status, new reason/message/generation: time kept, fields updated. */
    assert_int_equal(km_cond_set(st, "PodsRestarted", "Unknown", "Retrying", "b", 2, "T2"), 1);
    const cJSON *c = km_cond_get(st, "PodsRestarted");
    assert_string_equal(KM_JSON_STR(c, "lastTransitionTime"), "T1");
    assert_string_equal(KM_JSON_STR(c, "reason"), "Retrying");
    assert_string_equal(KM_JSON_STR(c, "message"), "b");
    assert_int_equal((int)KM_JSON_NUM(c, -1, "observedGeneration"), 2);
    /* Flip: time changes. */
    assert_int_equal(km_cond_set(st, "PodsRestarted", "True", "Done", "c", 2, "T3"), 1);
    c = km_cond_get(st, "PodsRestarted");
    assert_string_equal(KM_JSON_STR(c, "lastTransitionTime"), "T3");
    assert_string_equal(KM_JSON_STR(c, "status"), "True");
    /* Identical write: nothing changes, reported as such. */
    assert_int_equal(km_cond_set(st, "PodsRestarted", "True", "Done", "c", 2, "T4"), 0);
    assert_string_equal(KM_JSON_STR(km_cond_get(st, "PodsRestarted"), "lastTransitionTime"), "T3");
    assert_int_equal(count_type(st, "PodsRestarted"), 1);
    cJSON_Delete(st);
}

static void test_observed_generation_alone_is_a_change(void **state)
{
    (void)state;
    cJSON *st = cJSON_CreateObject();
    km_cond_set(st, "Succeeded", "True", "Completed", "", 1, "T1");
    assert_int_equal(km_cond_set(st, "Succeeded", "True", "Completed", "", 2, "T2"), 1);
    const cJSON *c = km_cond_get(st, "Succeeded");
    assert_int_equal((int)KM_JSON_NUM(c, -1, "observedGeneration"), 2);
    assert_string_equal(KM_JSON_STR(c, "lastTransitionTime"), "T1");
    cJSON_Delete(st);
}

static void test_several_types_and_queries(void **state)
{
    (void)state;
    cJSON *st = cJSON_CreateObject();
    km_cond_set(st, "TokensRegenerated", "True", "Regenerated", NULL, 1, "T");
    km_cond_set(st, "Succeeded", "Unknown", "Running", NULL, 1, "T");
    assert_int_equal(cJSON_GetArraySize(KM_JSON_AT(st, "conditions")), 2);
    assert_true(km_cond_is(st, "TokensRegenerated", "True"));
    assert_false(km_cond_is(st, "TokensRegenerated", "False"));
    assert_false(km_cond_is(st, "PodsRestarted", "True"));
    assert_null(km_cond_get(st, "PodsRestarted"));
    assert_string_equal(km_cond_reason(st, "Succeeded"), "Running");
    assert_string_equal(KM_JSON_STR(km_cond_get(st, "Succeeded"), "message"), "");
    cJSON_Delete(st);
}

static void test_conditions_not_an_array_is_replaced(void **state)
{
    (void)state;
    cJSON *st = cJSON_Parse("{\"conditions\":\"junk\"}");
    assert_int_equal(km_cond_set(st, "Succeeded", "True", "Completed", "", 1, "T"), 1);
    assert_true(cJSON_IsArray(KM_JSON_AT(st, "conditions")));
    assert_true(km_cond_is(st, "Succeeded", "True"));
    cJSON_Delete(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_condition_has_all_fields),
        cmocka_unit_test(test_transition_time_only_on_flip),
        cmocka_unit_test(test_observed_generation_alone_is_a_change),
        cmocka_unit_test(test_several_types_and_queries),
        cmocka_unit_test(test_conditions_not_an_array_is_replaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
