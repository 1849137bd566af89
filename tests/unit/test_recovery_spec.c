/* test_recovery_spec.c — ClusterRecovery spec defaulting, validation messages, recovery
 * files (YAML -> cJSON), and the --steps list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "operator/base/json.h"
#include "operator/base/yamljson.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/recovery/names.h"
#include "reconcilers/recovery/spec.h"

/* The default values themselves are held against the CRD in test_spec_crd.c. */
static void test_defaults_of_empty_spec(void **state)
{
    (void)state;
    cJSON *out = NULL;
    assert_int_equal(km_recovery_spec_defaults(NULL, &out, NULL), KM_OK);
    assert_true(cJSON_IsBool(KM_JSON_AT(out, "dryRun")));
    for (int i = 0; i < KM_STEP_COUNT; i++)
        assert_true(KM_JSON_BOOL(out, 0, km_recovery_step_key(i), "enabled"));
    assert_string_equal(KM_JSON_STR(out, "tokens", "mode"), "Regenerate");
    assert_null(KM_JSON_AT(out, "pods", "namespaces")); /* lists have no default */
    assert_null(KM_JSON_AT(out, "pods", "namespaceSelector"));
    cJSON_Delete(out);
}

static void test_given_values_are_kept(void **state)
{
    (void)state;
    cJSON *in = cJSON_Parse("{\"dryRun\":true,\"tokens\":{\"mode\":\"Delete\"},\"pods\":{"
                            "\"maxConcurrent\":100,\"namespaces\":[\"a\",\"b\"]}}");
    cJSON *out = NULL;
    assert_int_equal(km_recovery_spec_defaults(in, &out, NULL), KM_OK);
    assert_true(KM_JSON_BOOL(out, 0, "dryRun"));
    assert_string_equal(KM_JSON_STR(out, "tokens", "mode"), "Delete");
    assert_true(KM_JSON_BOOL(out, 0, "tokens", "enabled"));
    assert_int_equal((int)KM_JSON_NUM(out, 0, "pods", "maxConcurrent"), 100);
    assert_int_equal(cJSON_GetArraySize(KM_JSON_AT(out, "pods", "namespaces")), 2);
    /* The input is not modified. */
    assert_null(KM_JSON_AT(in, "csr"));
    cJSON_Delete(in);
    cJSON_Delete(out);
}

static void expect_invalid(const char *json, const char *needle)
{
    cJSON *in = cJSON_Parse(json);
    assert_non_null(in);
    cJSON *out = (cJSON *)0x1;
    km_err e;
    km_err_clear(&e);
    assert_int_equal(km_recovery_spec_defaults(in, &out, &e), KM_EINVAL);
    assert_ptr_equal(out, (cJSON *)0x1); /* untouched */
    if (!strstr(e.message, needle))
        fail_msg("message \"%s\" lacks \"%s\"", e.message, needle);
    cJSON_Delete(in);
}

static void test_invalid_specs(void **state)
{
    (void)state;
    expect_invalid("{\"pods\":{\"maxConcurrent\":0}}", "spec.pods.maxConcurrent");
    expect_invalid("{\"pods\":{\"maxConcurrent\":101}}", "between 1 and 100");
    expect_invalid("{\"pods\":{\"maxConcurrent\":2.5}}", "integer");
    expect_invalid("{\"tokens\":{\"mode\":\"Rotate\"}}", "spec.tokens.mode");
    expect_invalid("{\"csr\":{\"windowSeconds\":0}}", "spec.csr.windowSeconds");
    expect_invalid("{\"csr\":{\"maxExpirationSeconds\":599}}", "maxExpirationSeconds");
    expect_invalid("{\"csr\":{\"allowedDNSPatterns\":[\"(\"]}}", "regular expression");
    expect_invalid("{\"dryRun\":\"yes\"}", "spec.dryRun");
    expect_invalid("{\"pods\":{\"enabled\":1}}", "true or false");
    expect_invalid("{\"bogus\":1}", "spec.bogus: unknown field");
    expect_invalid("{\"pods\":{\"bogus\":1}}", "spec.pods.bogus: unknown field");
    expect_invalid("{\"pods\":\"x\"}", "spec.pods: must be an object");
    expect_invalid("{\"pods\":{\"namespaces\":[1]}}", "list of strings");
    expect_invalid("{\"pods\":{\"includeNamespaces\":[\"a\",\"b\"],\"excludeNamespaces\":[\"b\"]}}",
                   "both in includeNamespaces and excludeNamespaces");
    expect_invalid("{\"pods\":{\"namespaceSelector\":{\"matchExpressions\":[{\"key\":\"a\","
                   "\"operator\":\"In\"}]}}}",
                   "must be non-empty");
    expect_invalid("{\"pods\":{\"namespaceSelector\":{\"matchExpressions\":[{\"key\":\"a\","
                   "\"operator\":\"Like\"}]}}}",
                   "operator");
    expect_invalid("{\"extensionApiserverAuthentication\":{\"pinnedFingerprints\":[\"abc\"]}}",
                   "SHA-256");
}

static void test_fingerprint_forms(void **state)
{
    (void)state;
    char hex[65], colons[96];
    memset(hex, 'a', 64);
    hex[64] = '\0';
    for (int i = 0; i < 32; i++) {
        colons[i * 3] = 'A';
        colons[i * 3 + 1] = '0';
        if (i < 31)
            colons[i * 3 + 2] = ':';
    }
    colons[95] = '\0';
    char json[512];
    snprintf(json, sizeof(json),
             "{\"extensionApiserverAuthentication\":{\"pinnedFingerprints\":[\"%s\",\"%s\"]}}", hex,
             colons);
    cJSON *in = cJSON_Parse(json), *out = NULL;
    assert_int_equal(km_recovery_spec_defaults(in, &out, NULL), KM_OK);
    cJSON_Delete(in);
    cJSON_Delete(out);
}

static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/km-test-recovery-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_load_file_ok(void **state)
{
    (void)state;
    const char *p = write_tmp("# a recovery\n"
                              "apiVersion: kubemend.io/v1alpha1\n"
                              "kind: ClusterRecovery\n"
                              "metadata:\n  name: after-rebuild\n"
                              "spec:\n"
                              "  dryRun: true\n"
                              "  pods:\n"
                              "    namespaces: [apps, \"web\"]\n"
                              "    maxConcurrent: 10\n"
                              "    namespaceSelector:\n"
                              "      matchLabels: {team: core}\n");
    cJSON *obj = NULL;
    km_err e;
    km_err_clear(&e);
    assert_int_equal(km_recovery_load_file(p, &obj, &e), KM_OK);
    assert_string_equal(KM_JSON_STR(obj, "metadata", "name"), "after-rebuild");
    assert_true(KM_JSON_BOOL(obj, 0, "spec", "dryRun"));
    assert_int_equal((int)KM_JSON_NUM(obj, 0, "spec", "pods", "maxConcurrent"), 10);
    assert_string_equal(
        KM_JSON_STR(obj, "spec", "pods", "namespaceSelector", "matchLabels", "team"), "core");
    cJSON_Delete(obj);
    unlink(p);

    /* No metadata.name: "run-once". */
    p = write_tmp("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\n");
    assert_int_equal(km_recovery_load_file(p, &obj, NULL), KM_OK);
    assert_string_equal(KM_JSON_STR(obj, "metadata", "name"), "run-once");
    cJSON_Delete(obj);
    unlink(p);
}

static void expect_bad_file(const char *text, km_status want, const char *needle)
{
    const char *p = write_tmp(text);
    cJSON *obj = NULL;
    km_err e;
    km_err_clear(&e);
    assert_int_equal(km_recovery_load_file(p, &obj, &e), want);
    assert_null(obj);
    if (!strstr(e.message, needle))
        fail_msg("message \"%s\" lacks \"%s\"", e.message, needle);
    assert_non_null(strstr(e.message, p)); /* the path is named */
    unlink(p);
}

static void test_load_file_invalid(void **state)
{
    (void)state;
    expect_bad_file("kind: ClusterRecovery\n", KM_EINVAL, "apiVersion");
    expect_bad_file("apiVersion: kubemend.io/v1alpha1\nkind: Pod\n", KM_EINVAL, "kind");
    expect_bad_file("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nspec:\n  pods:\n"
                    "    maxConcurrent: 500\n",
                    KM_EINVAL, "spec.pods.maxConcurrent");
    expect_bad_file("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nmetadata:\n"
                    "  name: Bad_Name\n",
                    KM_EINVAL, "metadata.name");
    expect_bad_file("apiVersion: [unclosed\n", KM_EPARSE, "line");
    expect_bad_file("a: 1\na: 2\n", KM_EPARSE, "duplicate key");
    expect_bad_file("a: 1\n---\nb: 2\n", KM_EPARSE, "more than one");
    expect_bad_file("- 1\n- 2\n", KM_EINVAL, "mapping");
    cJSON *obj = NULL;
    km_err e;
    assert_int_equal(km_recovery_load_file("/nonexistent/recovery.yaml", &obj, &e), KM_EIO);
    assert_null(obj);
}

static void test_yaml_scalars(void **state)
{
    (void)state;
    const char *y = "i: 42\nneg: -7\nf: 1.5\nt: true\nF: false\nn: null\ntilde: ~\ns: hello\n"
                    "q: \"42\"\nsq: 'true'\nver: 1.19.0\nlist: [1, two]\nlit: |\n  a\n  b\n"
                    "anchor: &x {k: v}\nalias: *x\nempty:\n";
    cJSON *o = NULL;
    assert_int_equal(km_yaml_parse(y, strlen(y), &o, NULL), KM_OK);
    assert_int_equal((int)KM_JSON_NUM(o, 0, "i"), 42);
    assert_int_equal((int)KM_JSON_NUM(o, 0, "neg"), -7);
    assert_true(KM_JSON_NUM(o, 0, "f") == 1.5);
    assert_true(KM_JSON_BOOL(o, 0, "t"));
    assert_false(KM_JSON_BOOL(o, 1, "F"));
    assert_true(cJSON_IsNull(KM_JSON_AT(o, "n")));
    assert_true(cJSON_IsNull(KM_JSON_AT(o, "tilde")));
    assert_true(cJSON_IsNull(KM_JSON_AT(o, "empty")));
    assert_string_equal(KM_JSON_STR(o, "s"), "hello");
    assert_string_equal(KM_JSON_STR(o, "q"), "42");
    assert_string_equal(KM_JSON_STR(o, "sq"), "true");
    assert_string_equal(KM_JSON_STR(o, "ver"), "1.19.0");
    assert_string_equal(KM_JSON_STR(o, "lit"), "a\nb\n");
    assert_string_equal(KM_JSON_STR(o, "alias", "k"), "v");
    const cJSON *l = KM_JSON_AT(o, "list");
    assert_int_equal(cJSON_GetArraySize(l), 2);
    assert_string_equal(cJSON_GetArrayItem(l, 1)->valuestring, "two");
    cJSON_Delete(o);

    /* JSON is YAML; an empty document is null. */
    assert_int_equal(km_yaml_parse("{\"a\": [1]}", 10, &o, NULL), KM_OK);
    assert_int_equal(cJSON_GetArraySize(KM_JSON_AT(o, "a")), 1);
    cJSON_Delete(o);
    assert_int_equal(km_yaml_parse("", 0, &o, NULL), KM_OK);
    assert_true(cJSON_IsNull(o));
    cJSON_Delete(o);
    assert_int_equal(km_yaml_parse("a: *nope\n", 9, &o, NULL), KM_EPARSE);
}

static void test_steps_list(void **state)
{
    (void)state;
    unsigned m = 0;
    assert_int_equal(km_recovery_parse_steps("tokens,pods", &m, NULL), KM_OK);
    assert_int_equal(m, (1u << KM_STEP_TOKENS) | (1u << KM_STEP_PODS));
    assert_int_equal(
        km_recovery_parse_steps("extensionApiserverAuthentication,extauth,csr", &m, NULL), KM_OK);
    assert_int_equal(m, (1u << KM_STEP_EXTAUTH) | (1u << KM_STEP_CSR));
    km_err e;
    unsigned keep = 77;
    assert_int_equal(km_recovery_parse_steps("tokens,nope", &keep, &e), KM_EINVAL);
    assert_int_equal(keep, 77);
    assert_non_null(strstr(e.message, "nope"));
    assert_int_equal(km_recovery_parse_steps("tokens,", &keep, NULL), KM_EINVAL);
    assert_int_equal(km_recovery_parse_steps("", &keep, NULL), KM_EINVAL);
}

/* Issue 16 item 1: the names derived from metadata.name are checked up front (the backup
 * ConfigMap of the extauth step used to fail only inside that step), with the field path. */
static void test_derived_names(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'n', sizeof(name));
    name[KM_NAMES_MAX_RECOVERY] = '\0';
    cJSON *o = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(md, "name", name);
    km_err e;
    assert_int_equal(km_recovery_check(o, &e), KM_OK);
    char backup[300];
    assert_int_equal(km_names_backup(name, backup, sizeof(backup), NULL), KM_OK);
    assert_int_equal(strlen(backup), 253);
    name[KM_NAMES_MAX_RECOVERY] = 'n';
    name[230] = '\0';
    cJSON_SetValuestring(cJSON_GetObjectItem(md, "name"), name);
    assert_int_equal(km_recovery_check(o, &e), KM_EINVAL);
    assert_non_null(strstr(e.message, "metadata.name: 230 characters, at most 211"));
    cJSON_AddStringToObject(o, "apiVersion", "kubemend.io/v1alpha1");
    cJSON_AddStringToObject(o, "kind", "ClusterRecovery");
    assert_int_equal(km_recovery_validate(o, &e), KM_EINVAL);
    /* the spec's field path names the list entry */
    cJSON_SetValuestring(cJSON_GetObjectItem(md, "name"), "ok");
    cJSON *spec = cJSON_Parse("{\"csr\":{\"allowedDNSPatterns\":[\"a\",\"(unclosed\"]}}");
    cJSON_AddItemToObject(o, "spec", spec);
    assert_int_equal(km_recovery_check(o, &e), KM_EINVAL);
    assert_non_null(strstr(e.message, "spec.csr.allowedDNSPatterns[1]: \"(unclosed\""));
    cJSON_Delete(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_of_empty_spec), cmocka_unit_test(test_given_values_are_kept),
        cmocka_unit_test(test_invalid_specs),          cmocka_unit_test(test_fingerprint_forms),
        cmocka_unit_test(test_load_file_ok),           cmocka_unit_test(test_load_file_invalid),
        cmocka_unit_test(test_yaml_scalars),           cmocka_unit_test(test_steps_list),
        cmocka_unit_test(test_derived_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
