/* test_replace.c — reconcilers/tokens/replace.h's pure rules: the replacement's name, what proves
 * a Secret is kubemend's replacement of another, which pods still refer to a Secret, and the
 * ServiceAccount patch that lists the replacement first.  The API calls around them are
 * exercised on apisim (tests/integration/test_bridge.py) and the real servers (make test-bridge).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "reconcilers/tokens/replace.h"

static cJSON *parse(const char *s)
{
    cJSON *o = cJSON_Parse(s);
    assert_non_null(o);
    return o;
}

static void test_replacement_name(void **state)
{
    (void)state;
    char buf[300], longname[260];
    assert_int_equal(km_tokens_replacement_name("app-token-x7k2p", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "app-token-x7k2p-kubemend");
    /* 244 + 9 = 253 fits, 245 + 9 does not (a Secret name's limit) */
    memset(longname, 'a', 244);
    longname[244] = '\0';
    assert_int_equal(km_tokens_replacement_name(longname, buf, sizeof(buf)), 0);
    assert_int_equal(strlen(buf), 253);
    longname[244] = 'a';
    longname[245] = '\0';
    assert_int_equal(km_tokens_replacement_name(longname, buf, sizeof(buf)), -1);
    assert_string_equal(buf, "");
    assert_int_equal(km_tokens_replacement_name("abc", buf, 12), -1); /* buffer too small */
    assert_int_equal(km_tokens_replacement_name("", buf, sizeof(buf)), -1);
    assert_int_equal(km_tokens_replacement_name(NULL, buf, sizeof(buf)), -1);
}

#define OLD                                                                                        \
    "{\"type\":\"kubernetes.io/service-account-token\",\"metadata\":{\"name\":\"app-token-1\","    \
    "\"namespace\":\"shop\",\"annotations\":{\"kubernetes.io/service-account.name\":\"app\","      \
    "\"kubernetes.io/service-account.uid\":\"u1\"}}}"

static cJSON *rep(const char *ns, const char *replaces, const char *sa, const char *uid,
                  const char *type)
{
    cJSON *o = cJSON_CreateObject(), *md = cJSON_AddObjectToObject(o, "metadata");
    cJSON *ann = cJSON_AddObjectToObject(md, "annotations");
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddStringToObject(md, "name", "app-token-1-kubemend");
    cJSON_AddStringToObject(md, "namespace", ns);
    if (replaces)
        cJSON_AddStringToObject(ann, KM_TOKENS_REPLACES_ANN, replaces);
    cJSON_AddStringToObject(ann, "kubernetes.io/service-account.name", sa);
    if (uid)
        cJSON_AddStringToObject(ann, "kubernetes.io/service-account.uid", uid);
    return o;
}

static void test_is_replacement(void **state)
{
    (void)state;
    static const char *tt = "kubernetes.io/service-account-token";
    cJSON *old = parse(OLD);
    struct {
        cJSON *r;
        int want;
    } cases[] = {
        {rep("shop", "app-token-1", "app", "u1", tt), 1},
        {rep("shop", "app-token-1", "app", NULL, tt), 1},  /* not filled in yet: name decides */
        {rep("other", "app-token-1", "app", "u1", tt), 0}, /* another namespace */
        {rep("shop", "app-token-2", "app", "u1", tt), 0},  /* replaces another Secret */
        {rep("shop", NULL, "app", "u1", tt), 0},           /* a user's Secret of that name */
        {rep("shop", "app-token-1", "db", "u1", tt), 0},   /* another ServiceAccount */
        {rep("shop", "app-token-1", "app", "u2", tt), 0},  /* the account was re-created */
        {rep("shop", "app-token-1", "app", "u1", "Opaque"), 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(km_tokens_is_replacement(cases[i].r, old), cases[i].want);
        cJSON_Delete(cases[i].r);
    }
    cJSON_Delete(old);
}

static void test_pod_refers(void **state)
{
    (void)state;
    static const char *const pods[] = {
        /* the legacy admission volume */
        "{\"spec\":{\"volumes\":[{\"name\":\"t\",\"secret\":{\"secretName\":\"S\"}}]}}",
        /* a projected source */
        "{\"spec\":{\"volumes\":[{\"name\":\"p\",\"projected\":{\"sources\":[{\"configMap\":{"
        "\"name\":\"S\"}},{\"secret\":{\"name\":\"S\"}}]}}]}}",
        /* env of an init container */
        "{\"spec\":{\"initContainers\":[{\"env\":[{\"name\":\"T\",\"valueFrom\":{\"secretKeyRef\":{"
        "\"name\":\"S\",\"key\":\"token\"}}}]}]}}",
        /* envFrom of an ephemeral container */
        "{\"spec\":{\"ephemeralContainers\":[{\"envFrom\":[{\"secretRef\":{\"name\":\"S\"}}]}]}}",
    };
    static const char *const others[] = {
        "{\"spec\":{\"volumes\":[{\"name\":\"t\",\"secret\":{\"secretName\":\"S-kubemend\"}}]}}",
        "{\"spec\":{\"volumes\":[{\"name\":\"c\",\"configMap\":{\"name\":\"S\"}}],\"containers\":[{"
        "\"env\":[{\"name\":\"S\",\"value\":\"S\"}],\"envFrom\":[{\"configMapRef\":{\"name\":\"S\"}"
        "}]"
        "}]}}",
        "{\"spec\":{}}",
        "{}",
    };
    for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
        cJSON *p = parse(pods[i]);
        assert_int_equal(km_tokens_pod_refers(p, "S"), 1);
        assert_int_equal(km_tokens_pod_refers(p, "T"), 0);
        assert_int_equal(km_tokens_pod_refers(p, NULL), 0);
        cJSON_Delete(p);
    }
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        cJSON *p = parse(others[i]);
        assert_int_equal(km_tokens_pod_refers(p, "S"), 0);
        cJSON_Delete(p);
    }
}

static void test_secrets_first_patch(void **state)
{
    (void)state;
    int oom = 1;
    cJSON *sa = parse("{\"secrets\":[{\"name\":\"a\"},{\"name\":\"R\"},{\"name\":\"b\"}]}");
    char *p = km_tokens_secrets_first_patch(sa, "R", "42", &oom);
    assert_int_equal(oom, 0);
    assert_non_null(p);
    assert_string_equal(p, "[{\"op\":\"test\",\"path\":\"/metadata/resourceVersion\",\"value\":"
                           "\"42\"},{\"op\":\"add\",\"path\":\"/secrets\",\"value\":[{\"name\":"
                           "\"R\"},{\"name\":\"a\"},{\"name\":\"b\"}]}]");
    free(p);
    cJSON_Delete(sa);
    /* first already: nothing to do */
    sa = parse("{\"secrets\":[{\"name\":\"R\"},{\"name\":\"a\"}]}");
    assert_null(km_tokens_secrets_first_patch(sa, "R", "42", &oom));
    assert_int_equal(oom, 0);
    cJSON_Delete(sa);
    /* no secrets at all: the list is created */
    sa = parse("{}");
    p = km_tokens_secrets_first_patch(sa, "R", "7", &oom);
    assert_non_null(p);
    assert_non_null(strstr(p, "\"value\":[{\"name\":\"R\"}]"));
    free(p);
    cJSON_Delete(sa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replacement_name),
        cmocka_unit_test(test_is_replacement),
        cmocka_unit_test(test_pod_refers),
        cmocka_unit_test(test_secrets_first_patch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
