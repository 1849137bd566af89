/* test_incluster.c — in-cluster configuration: env, directory override, token reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/kube/kubeconfig.h"
#include "tests/unit/support/kmtest.h"

#define CA "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n"

static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    kmtest_mkdtemp(g_dir, sizeof(g_dir));
    kmtest_write(g_dir, "token", "sa-token-1\n", NULL);
    kmtest_write(g_dir, "ca.crt", CA, NULL);
    kmtest_write(g_dir, "namespace", "kube-system\n", NULL);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kmtest_rmdir(g_dir);
    return 0;
}

static void test_basic(void **state)
{
    (void)state;
    km_kubeconfig *cfg = NULL;
    km_err e;
    char *tok = NULL;
    assert_int_equal(km_kubeconfig_incluster(g_dir, &cfg, &e), KM_OK);
    assert_string_equal(km_kubeconfig_server(cfg), "https://10.96.0.1:443");
    assert_string_equal(km_kubeconfig_namespace(cfg), "kube-system");
    assert_string_equal(km_kubeconfig_source(cfg), "in-cluster");
    assert_string_equal(km_kubeconfig_ca_pem(cfg), CA);
    assert_int_equal(km_kubeconfig_insecure(cfg), 0);
    assert_true(km_kubeconfig_token_from_file(cfg));
    assert_int_equal(km_kubeconfig_token(cfg, &tok, NULL), KM_OK);
    assert_string_equal(tok, "sa-token-1");
    free(tok);
    km_kubeconfig_free(cfg);
}

static void test_ipv6_and_no_namespace(void **state)
{
    (void)state;
    km_kubeconfig *cfg = NULL;
    km_err e;
    char p[PATH_MAX];
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    snprintf(p, sizeof(p), "%s/namespace", g_dir);
    remove(p);
    assert_int_equal(km_kubeconfig_incluster(g_dir, &cfg, &e), KM_OK);
    assert_string_equal(km_kubeconfig_server(cfg), "https://[fd00::1]:6443");
    assert_null(km_kubeconfig_namespace(cfg));
    km_kubeconfig_free(cfg);
    kmtest_write(g_dir, "namespace", "kube-system\n", NULL);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
}

static void expect_fail(const char *needle1, const char *needle2)
{
    km_kubeconfig *cfg = (km_kubeconfig *)0x1;
    km_err e;
    assert_int_equal(km_kubeconfig_incluster(g_dir, &cfg, &e), KM_ECONFIG);
    assert_ptr_equal(cfg, (km_kubeconfig *)0x1);
    if (!strstr(e.message, needle1) || (needle2 && !strstr(e.message, needle2)))
        fail_msg("unexpected message: %s", e.message);
}

static void test_errors(void **state)
{
    (void)state;
    char p[PATH_MAX];
    unsetenv("KUBERNETES_SERVICE_PORT");
    expect_fail("KUBERNETES_SERVICE_PORT", NULL);
    setenv("KUBERNETES_SERVICE_PORT", "https", 1);
    expect_fail("KUBERNETES_SERVICE_PORT: not a port", NULL);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    unsetenv("KUBERNETES_SERVICE_HOST");
    expect_fail("KUBERNETES_SERVICE_HOST", NULL);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    snprintf(p, sizeof(p), "%s/token", g_dir);
    remove(p);
    expect_fail("in-cluster: token", p);
    kmtest_write(g_dir, "token", "sa-token-1\n", NULL);
    snprintf(p, sizeof(p), "%s/ca.crt", g_dir);
    remove(p);
    expect_fail("in-cluster: ca.crt", p);
    kmtest_write(g_dir, "ca.crt", "not a pem", NULL);
    expect_fail("ca.crt", "PEM");
    kmtest_write(g_dir, "ca.crt", CA, NULL);
}

static void test_token_rotation(void **state)
{
    (void)state;
    km_kubeconfig *cfg = NULL;
    km_err e;
    char *tok = NULL;
    int changed = -1;
    assert_int_equal(km_kubeconfig_incluster(g_dir, &cfg, &e), KM_OK);
    km_kubeconfig_set_token_recheck(cfg, 0);
    kmtest_write(g_dir, "token", "sa-token-2\n", NULL);
    assert_int_equal(km_kubeconfig_token(cfg, &tok, &changed), KM_OK);
    assert_string_equal(tok, "sa-token-2");
    assert_int_equal(changed, 1);
    free(tok);
    /* same length, new content: caught by mtime/inode (rename like kubelet's atomic writer) */
    kmtest_write(g_dir, "token.new", "sa-token-3\n", NULL);
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(from, sizeof(from), "%s/token.new", g_dir);
    snprintf(to, sizeof(to), "%s/token", g_dir);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(km_kubeconfig_token(cfg, &tok, &changed), KM_OK);
    assert_string_equal(tok, "sa-token-3");
    assert_int_equal(changed, 1);
    free(tok);
    km_kubeconfig_free(cfg);
    kmtest_write(g_dir, "token", "sa-token-1\n", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_ipv6_and_no_namespace),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_token_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
