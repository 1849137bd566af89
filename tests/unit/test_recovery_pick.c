/* test_recovery_pick.c — which ClusterRecovery may run now: a Running one first (resume), else the
 * oldest, never a completed or deleting one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "reconcilers/recovery/recovery.h"

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
        cmocka_unit_test(test_pick_active_oldest_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
