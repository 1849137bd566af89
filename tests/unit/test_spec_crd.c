/* test_spec_crd.c — defaults from one source: the CRD (crds/clusterrecoveries.kubemend.io.yaml,
 * read here, never edited) and the step tables in C (each step's km_step_def.fields) describe the
 * same spec.  Every field the CRD has, C has, with the same type, enum values, default, minimum,
 * maximum and maxItems; and km_recovery_spec_defaults({}) equals what the API server's
 * structural defaulting makes of an empty spec.  Run from the repository root (make test-unit);
 * KM_CRD overrides the path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/json.h"
#include "operator/base/yamljson.h"
#include "reconcilers/recovery/names.h"
#include "reconcilers/recovery/spec.h"

#define CRD_PATH "crds/clusterrecoveries.kubemend.io.yaml"

static cJSON *g_crd;

static int setup(void **state)
{
    (void)state;
    const char *path = getenv("KM_CRD") ? getenv("KM_CRD") : CRD_PATH;
    km_err e;
    if (km_yaml_parse_file(path, &g_crd, &e) != KM_OK) {
        print_error("cannot read the CRD %s: %s\n", path, e.message);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cJSON_Delete(g_crd);
    return 0;
}

/* The CRD's schema of spec. */
static const cJSON *crd_spec(void)
{
    const cJSON *v = cJSON_GetArrayItem(KM_JSON_AT(g_crd, "spec", "versions"), 0);
    const cJSON *s = KM_JSON_AT(v, "schema", "openAPIV3Schema", "properties", "spec");
    assert_non_null(s);
    return s;
}

static const char *crd_type(km_field_type t)
{
    switch (t) {
    case KM_FIELD_BOOL:
        return "boolean";
    case KM_FIELD_INT:
        return "integer";
    case KM_FIELD_ENUM:
        return "string";
    case KM_FIELD_SELECTOR:
        return "object";
    default:
        return "array";
    }
}

/* The CRD property p agrees with the C field f. */
static void check_field(const char *step, const km_field *f, const cJSON *p)
{
    const char *type = KM_JSON_STR(p, "type");
    const cJSON *dflt = KM_JSON_AT(p, "default");
    if (!type || strcmp(type, crd_type(f->type)) != 0)
        fail_msg("spec.%s.%s: CRD type %s, C type %s", step, f->name, type ? type : "?",
                 crd_type(f->type));
    if (f->type == KM_FIELD_BOOL) {
        assert_true(cJSON_IsBool(dflt));
        assert_int_equal(cJSON_IsTrue(dflt), f->dflt != 0);
    } else if (f->type == KM_FIELD_INT) {
        assert_true(cJSON_IsNumber(dflt));
        if (dflt->valuedouble != f->dflt)
            fail_msg("spec.%s.%s: CRD default %.0f, C default %.0f", step, f->name,
                     dflt->valuedouble, f->dflt);
        assert_true(KM_JSON_NUM(p, f->min, "minimum") == f->min);
        assert_true(KM_JSON_NUM(p, f->max, "maximum") == f->max);
        if (strcmp(KM_JSON_STR(p, "format") ? KM_JSON_STR(p, "format") : "", "int32") == 0)
            assert_true(f->max <= 2147483647.0);
    } else if (f->type == KM_FIELD_ENUM) {
        const cJSON *e = KM_JSON_AT(p, "enum");
        int i = 0;
        for (const char *const *v = f->values; *v; v++, i++)
            assert_string_equal(cJSON_GetArrayItem(e, i)->valuestring, *v);
        assert_int_equal(cJSON_GetArraySize(e), i);
        assert_string_equal(cJSON_GetStringValue(dflt), f->values[0]);
    } else {
        assert_null(dflt); /* lists and selectors have no default */
        if (f->type != KM_FIELD_SELECTOR)
            assert_true(KM_JSON_NUM(p, 0, "maxItems") == f->max);
    }
}

static void test_every_field_matches_the_crd(void **state)
{
    (void)state;
    const cJSON *props = KM_JSON_AT(crd_spec(), "properties");
    /* spec holds dryRun, paused, rebuildTime and one block per step, nothing else */
    assert_int_equal(cJSON_GetArraySize(props), KM_STEP_COUNT + 3);
    assert_true(cJSON_IsFalse(KM_JSON_AT(props, "dryRun", "default")));
    assert_true(cJSON_IsFalse(KM_JSON_AT(props, "paused", "default")));
    /* rebuildTime: a date-time without default (absent = derived from the cluster) */
    assert_string_equal(KM_JSON_STR(props, "rebuildTime", "format"), "date-time");
    assert_null(KM_JSON_AT(props, "rebuildTime", "default"));
    cJSON *ok = NULL, *spec = cJSON_Parse("{\"rebuildTime\":\"2026-11-26T09:00:00+01:00\"}");
    assert_int_equal(km_recovery_spec_defaults(spec, &ok, NULL), KM_OK);
    cJSON_Delete(ok);
    cJSON_Delete(spec);
    spec = cJSON_Parse("{\"rebuildTime\":\"yesterday\"}");
    km_err e;
    assert_int_equal(km_recovery_spec_defaults(spec, &ok, &e), KM_EINVAL);
    assert_non_null(strstr(e.message, "spec.rebuildTime"));
    cJSON_Delete(spec);
    /* paused: a boolean, false by default */
    spec = cJSON_Parse("{\"paused\":\"yes\"}");
    assert_int_equal(km_recovery_spec_defaults(spec, &ok, &e), KM_EINVAL);
    assert_non_null(strstr(e.message, "spec.paused"));
    cJSON_Delete(spec);
    spec = cJSON_Parse("{}");
    assert_int_equal(km_recovery_spec_defaults(spec, &ok, NULL), KM_OK);
    assert_true(cJSON_IsFalse(KM_JSON_AT(ok, "paused")));
    cJSON_Delete(ok);
    cJSON_Delete(spec);
    for (int i = 0; i < KM_STEP_COUNT; i++) {
        const km_step_def *d = km_recovery_step_def(i);
        const cJSON *blk = KM_JSON_AT(props, d->key);
        if (!blk)
            fail_msg("the CRD has no spec.%s", d->key);
        assert_true(cJSON_IsObject(KM_JSON_AT(blk, "default"))); /* the block defaults to {} */
        int n = 0;
        for (const km_field *f = d->fields; f->name; f++, n++) {
            const cJSON *p = KM_JSON_AT(blk, "properties", f->name);
            if (!p)
                fail_msg("the CRD has no spec.%s.%s", d->key, f->name);
            check_field(d->key, f, p);
        }
        if (cJSON_GetArraySize(KM_JSON_AT(blk, "properties")) != n)
            fail_msg("spec.%s: the CRD has fields C does not know", d->key);
    }
    /* status.currentStep takes exactly the steps' keys, in order, and "" (the server refuses
     * a /status write naming a step the enum lacks) */
    const cJSON *v = cJSON_GetArrayItem(KM_JSON_AT(g_crd, "spec", "versions"), 0);
    const cJSON *en = KM_JSON_AT(v, "schema", "openAPIV3Schema", "properties", "status",
                                 "properties", "currentStep", "enum");
    assert_int_equal(cJSON_GetArraySize(en), KM_STEP_COUNT + 1);
    for (int i = 0; i < KM_STEP_COUNT; i++)
        assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(en, i)),
                            km_recovery_step_key(i));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(en, KM_STEP_COUNT)), "");
}

/* Structural defaulting of `obj` by schema node `sch`: a missing property with a default gets
 * it, then every object property is defaulted in turn (what the API server does). */
static void crd_default(cJSON *obj, const cJSON *sch)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, KM_JSON_AT(sch, "properties"))
    {
        const cJSON *d = KM_JSON_AT(p, "default");
        if (!cJSON_GetObjectItemCaseSensitive(obj, p->string) && d)
            cJSON_AddItemToObject(obj, p->string, cJSON_Duplicate(d, 1));
        cJSON *child = cJSON_GetObjectItemCaseSensitive(obj, p->string);
        if (cJSON_IsObject(child) && KM_JSON_STR(p, "type") &&
            strcmp(KM_JSON_STR(p, "type"), "object") == 0 && KM_JSON_AT(p, "properties") &&
            !KM_JSON_AT(p, "x-kubernetes-map-type"))
            crd_default(child, p);
    }
}

static void test_defaults_of_an_empty_spec_are_the_crds(void **state)
{
    (void)state;
    cJSON *want = cJSON_CreateObject();
    crd_default(want, crd_spec());
    cJSON *got = NULL;
    assert_int_equal(km_recovery_spec_defaults(NULL, &got, NULL), KM_OK);
    if (!cJSON_Compare(want, got, 1)) {
        char *w = cJSON_PrintUnformatted(want), *g = cJSON_PrintUnformatted(got);
        fail_msg("CRD defaults %s\nC defaults   %s", w, g);
    }
    cJSON_Delete(want);
    cJSON_Delete(got);
}

/* The CRD's root CEL rule on metadata.name says the limit names.h checks (issue 16 item 1). */
static void test_name_rule_matches(void **state)
{
    (void)state;
    const cJSON *vers = KM_JSON_AT(g_crd, "spec", "versions");
    const cJSON *rules = KM_JSON_AT(cJSON_GetArrayItem(vers, 0), "schema", "openAPIV3Schema",
                                    "x-kubernetes-validations");
    char want[64];
    snprintf(want, sizeof(want), "size(self.metadata.name) <= %d", KM_NAMES_MAX_RECOVERY);
    int found = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rules)
    {
        const char *rule = KM_JSON_STR(r, "rule");
        found |= rule && strstr(rule, want) != NULL;
    }
    assert_true(found);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_matches_the_crd),
        cmocka_unit_test(test_defaults_of_an_empty_spec_are_the_crds),
        cmocka_unit_test(test_name_rule_matches),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
