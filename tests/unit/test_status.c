/* test_status.c — metav1.Condition semantics of the ClusterRecovery status: one entry per type,
 * lastTransitionTime changes only when status flips, observedGeneration on every write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/json.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/step/status.h"

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
        km_status_cond_set(st, "Succeeded", "Unknown", "Running", "go", 3, "2026-01-01T00:00:00Z"),
        1);
    const cJSON *c = km_status_cond_get(st, "Succeeded");
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
    km_status_cond_set(st, "PodsRestarted", "Unknown", "InProgress", "a", 1, "T1");
    /* Same status, new reason/message/generation: time kept, fields updated. */
    assert_int_equal(km_status_cond_set(st, "PodsRestarted", "Unknown", "Retrying", "b", 2, "T2"),
                     1);
    const cJSON *c = km_status_cond_get(st, "PodsRestarted");
    assert_string_equal(KM_JSON_STR(c, "lastTransitionTime"), "T1");
    assert_string_equal(KM_JSON_STR(c, "reason"), "Retrying");
    assert_string_equal(KM_JSON_STR(c, "message"), "b");
    assert_int_equal((int)KM_JSON_NUM(c, -1, "observedGeneration"), 2);
    /* Flip: time changes. */
    assert_int_equal(km_status_cond_set(st, "PodsRestarted", "True", "Done", "c", 2, "T3"), 1);
    c = km_status_cond_get(st, "PodsRestarted");
    assert_string_equal(KM_JSON_STR(c, "lastTransitionTime"), "T3");
    assert_string_equal(KM_JSON_STR(c, "status"), "True");
    /* Identical write: nothing changes, reported as such. */
    assert_int_equal(km_status_cond_set(st, "PodsRestarted", "True", "Done", "c", 2, "T4"), 0);
    assert_string_equal(KM_JSON_STR(km_status_cond_get(st, "PodsRestarted"), "lastTransitionTime"),
                        "T3");
    assert_int_equal(count_type(st, "PodsRestarted"), 1);
    cJSON_Delete(st);
}

static void test_observed_generation_alone_is_a_change(void **state)
{
    (void)state;
    cJSON *st = cJSON_CreateObject();
    km_status_cond_set(st, "Succeeded", "True", "Completed", "", 1, "T1");
    assert_int_equal(km_status_cond_set(st, "Succeeded", "True", "Completed", "", 2, "T2"), 1);
    const cJSON *c = km_status_cond_get(st, "Succeeded");
    assert_int_equal((int)KM_JSON_NUM(c, -1, "observedGeneration"), 2);
    assert_string_equal(KM_JSON_STR(c, "lastTransitionTime"), "T1");
    cJSON_Delete(st);
}

static void test_several_types_and_queries(void **state)
{
    (void)state;
    cJSON *st = cJSON_CreateObject();
    km_status_cond_set(st, "TokensRegenerated", "True", "Regenerated", NULL, 1, "T");
    km_status_cond_set(st, "Succeeded", "Unknown", "Running", NULL, 1, "T");
    assert_int_equal(cJSON_GetArraySize(KM_JSON_AT(st, "conditions")), 2);
    assert_true(km_status_cond_is(st, "TokensRegenerated", "True"));
    assert_false(km_status_cond_is(st, "TokensRegenerated", "False"));
    assert_false(km_status_cond_is(st, "PodsRestarted", "True"));
    assert_null(km_status_cond_get(st, "PodsRestarted"));
    assert_string_equal(km_status_cond_reason(st, "Succeeded"), "Running");
    assert_string_equal(KM_JSON_STR(km_status_cond_get(st, "Succeeded"), "message"), "");
    cJSON_Delete(st);
}

static void test_conditions_not_an_array_is_replaced(void **state)
{
    (void)state;
    cJSON *st = cJSON_Parse("{\"conditions\":\"junk\"}");
    assert_int_equal(km_status_cond_set(st, "Succeeded", "True", "Completed", "", 1, "T"), 1);
    assert_true(cJSON_IsArray(KM_JSON_AT(st, "conditions")));
    assert_true(km_status_cond_is(st, "Succeeded", "True"));
    cJSON_Delete(st);
}

static cJSON *crec(const char *name, const char *created, const char *phase, int deleting)
{
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"%s\",\"creationTimestamp\":\"%s\"%s},\"status\":{%s%s%s}}",
             name, created, deleting ? ",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"" : "",
             phase ? "\"phase\":\"" : "", phase ? phase : "", phase ? "\"" : "");
    cJSON *o = cJSON_Parse(buf);
    assert_non_null(o);
    return o;
}

static void test_pick_active_oldest_first(void **state)
{
    (void)state;
    cJSON *a = crec("b-newer", "2026-01-02T00:00:00Z", NULL, 0);
    cJSON *b = crec("a-older", "2026-01-01T00:00:00Z", "Waiting", 0);
    cJSON *c = crec("done", "2025-01-01T00:00:00Z", "Succeeded", 0);
    cJSON *d = crec("deleting", "2025-01-01T00:00:00Z", NULL, 1);
    const cJSON *objs[] = {a, b, c, d};
    assert_int_equal(km_recovery_pick_active(objs, 4), 1);
    /* A Running one wins over an older pending one (resume). */
    cJSON *e = crec("running", "2026-02-01T00:00:00Z", "Running", 0);
    const cJSON *objs2[] = {a, b, e};
    assert_int_equal(km_recovery_pick_active(objs2, 3), 2);
    /* Ties on creationTimestamp: by name. */
    cJSON *f = crec("x", "2026-01-01T00:00:00Z", NULL, 0);
    const cJSON *objs3[] = {f, b};
    assert_int_equal(km_recovery_pick_active(objs3, 2), 1);
    const cJSON *objs4[] = {c, d};
    assert_int_equal(km_recovery_pick_active(objs4, 2), -1);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(d);
    cJSON_Delete(e);
    cJSON_Delete(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_condition_has_all_fields),
        cmocka_unit_test(test_transition_time_only_on_flip),
        cmocka_unit_test(test_observed_generation_alone_is_a_change),
        cmocka_unit_test(test_several_types_and_queries),
        cmocka_unit_test(test_conditions_not_an_array_is_replaced),
        cmocka_unit_test(test_pick_active_oldest_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
