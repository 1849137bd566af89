/* test_kubeconfig.c — kubeconfig parsing: every supported field, resolution order, and an error
 * naming the file and the field for each malformed case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/kube/header.h"
#include "operator/kube/kubeconfig.h"
#include "tests/unit/support/kmtest.h"

#define CA "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n"
/* base64 of CA */
#define CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClEwRT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
#define KEY "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n"
#define KEY_B64 "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tClMwVloKLS0tLS1FTkQgUFJJVkFURSBLRVktLS0tLQo="

static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    kmtest_mkdtemp(g_dir, sizeof(g_dir));
    kmtest_write(g_dir, "ca.crt", CA, NULL);
    kmtest_write(g_dir, "client.key", KEY, NULL);
    kmtest_write(g_dir, "client.crt", CA, NULL);
    kmtest_write(g_dir, "token", "file-token\n", NULL);
    kmtest_write(g_dir, "notpem", "hello\n", NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kmtest_rmdir(g_dir);
    return 0;
}

/* Writes a kubeconfig with one cluster "c", user "u", context "x" (current). */
static void write_kc(char *path, const char *cluster, const char *user, const char *ctx_extra)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
             "clusters:\n- name: other\n  cluster: {server: 'https://other:1'}\n"
             "- name: c\n  cluster:\n%s"
             "users:\n- name: u\n  user:\n%s"
             "contexts:\n- name: x\n  context: {cluster: c, user: u%s}\n"
             "- name: y\n  context: {cluster: other, user: u, namespace: yns}\n",
             cluster, user, ctx_extra);
    kmtest_write(g_dir, "config", text, path);
}

static km_kubeconfig *load_ok(const char *cluster, const char *user, const char *ctx,
                              const char *context)
{
    char path[PATH_MAX];
    km_kubeconfig *cfg = NULL;
    km_err e;
    write_kc(path, cluster, user, ctx);
    km_status st = km_kubeconfig_from_file(path, context, &cfg, &e);
    if (st != KM_OK)
        fail_msg("unexpected error: %s", e.message);
    return cfg;
}

/* Loads a malformed config and checks status and that the message names file and field. */
static void load_fails(const char *cluster, const char *user, const char *ctx, const char *context,
                       km_status want, const char *field, const char *what)
{
    char path[PATH_MAX], expect[PATH_MAX + 256];
    km_kubeconfig *cfg = (km_kubeconfig *)0x1;
    km_err e;
    write_kc(path, cluster, user, ctx);
    assert_int_equal(km_kubeconfig_from_file(path, context, &cfg, &e), want);
    assert_ptr_equal(cfg, (km_kubeconfig *)0x1);
    assert_int_equal(e.status, want);
    snprintf(expect, sizeof(expect), "kubeconfig %s: %s: ", path, field);
    if (strncmp(e.message, expect, strlen(expect)) != 0)
        fail_msg("message \"%s\" does not start with \"%s\"", e.message, expect);
    if (!strstr(e.message, what))
        fail_msg("message \"%s\" does not contain \"%s\"", e.message, what);
}

static void test_all_fields_with_files(void **state)
{
    (void)state;
    km_kubeconfig *cfg = load_ok("    server: https://api.example:6443/\n"
                                 "    certificate-authority: ca.crt\n"
                                 "    tls-server-name: kubernetes.default\n"
                                 "    insecure-skip-tls-verify: false\n",
                                 "    token: static-token\n"
                                 "    client-certificate: client.crt\n"
                                 "    client-key: client.key\n",
                                 ", namespace: team", NULL);
    assert_string_equal(km_kubeconfig_server(cfg), "https://api.example:6443");
    assert_string_equal(km_kubeconfig_namespace(cfg), "team");
    assert_string_equal(km_kubeconfig_ca_pem(cfg), CA);
    assert_string_equal(km_kubeconfig_client_cert_pem(cfg), CA);
    assert_string_equal(km_kubeconfig_client_key_pem(cfg), KEY);
    assert_string_equal(km_kubeconfig_tls_server_name(cfg), "kubernetes.default");
    assert_int_equal(km_kubeconfig_insecure(cfg), 0);
    assert_false(km_kubeconfig_token_from_file(cfg));
    assert_non_null(strstr(km_kubeconfig_source(cfg), "/config"));
    char *tok = NULL;
    int changed = 7;
    assert_int_equal(km_kubeconfig_token(cfg, &tok, &changed), KM_OK);
    assert_string_equal(tok, "static-token");
    assert_int_equal(changed, 0);
    free(tok);
    km_kubeconfig_free(cfg);
}

static void test_inline_data_and_token_file(void **state)
{
    (void)state;
    char abs[PATH_MAX + 64];
    snprintf(abs, sizeof(abs), "    tokenFile: %s/token\n", g_dir);
    km_kubeconfig *cfg = load_ok("    server: api.example:443\n"
                                 "    certificate-authority-data: " CA_B64 "\n",
                                 "    client-certificate-data: " CA_B64 "\n"
                                 "    client-key-data: " KEY_B64 "\n"
                                 "    tokenFile: token\n",
                                 "", NULL);
    assert_string_equal(km_kubeconfig_server(cfg), "https://api.example:443");
    assert_null(km_kubeconfig_namespace(cfg));
    assert_null(km_kubeconfig_tls_server_name(cfg));
    assert_string_equal(km_kubeconfig_ca_pem(cfg), CA);
    assert_string_equal(km_kubeconfig_client_key_pem(cfg), KEY);
    assert_true(km_kubeconfig_token_from_file(cfg));
    char *tok = NULL;
    assert_int_equal(km_kubeconfig_token(cfg, &tok, NULL), KM_OK);
    assert_string_equal(tok, "file-token");
    free(tok);
    km_kubeconfig_free(cfg);
    cfg = load_ok("    server: https://h\n", abs, "", NULL); /* absolute tokenFile */
    assert_true(km_kubeconfig_token_from_file(cfg));
    km_kubeconfig_free(cfg);
}

static void test_insecure_and_context_choice(void **state)
{
    (void)state;
    km_kubeconfig *cfg = load_ok("    server: http://plain:8080\n"
                                 "    insecure-skip-tls-verify: true\n",
                                 "    {}\n", "", NULL);
    assert_int_equal(km_kubeconfig_insecure(cfg), 1);
    assert_null(km_kubeconfig_ca_pem(cfg));
    assert_null(km_kubeconfig_client_cert_pem(cfg));
    char *tok = (char *)"x";
    assert_int_equal(km_kubeconfig_token(cfg, &tok, NULL), KM_OK);
    assert_null(tok);
    km_kubeconfig_free(cfg);
    cfg = load_ok("    server: https://c\n", "    {}\n", "", "y");
    assert_string_equal(km_kubeconfig_server(cfg), "https://other:1");
    assert_string_equal(km_kubeconfig_namespace(cfg), "yns");
    km_kubeconfig_free(cfg);
}

static void test_malformed_cluster(void **state)
{
    (void)state;
    const char *u = "    {}\n";
    load_fails("    insecure-skip-tls-verify: true\n", u, "", NULL, KM_ECONFIG,
               "clusters[c].cluster.server", "missing");
    load_fails("    server: {a: b}\n", u, "", NULL, KM_ECONFIG, "clusters[c].cluster.server",
               "must be a string");
    load_fails("    server: ftp://x\n", u, "", NULL, KM_ECONFIG, "clusters[c].cluster.server",
               "scheme");
    load_fails("    server: https://x\n    certificate-authority-data: '%%%'\n", u, "", NULL,
               KM_ECONFIG, "clusters[c].cluster.certificate-authority-data", "not valid base64");
    load_fails("    server: https://x\n    certificate-authority-data: QUJD\n", u, "", NULL,
               KM_ECONFIG, "clusters[c].cluster.certificate-authority-data",
               "does not contain a PEM CERTIFICATE");
    load_fails("    server: https://x\n    certificate-authority: missing.crt\n", u, "", NULL,
               KM_ECONFIG, "clusters[c].cluster.certificate-authority", "cannot read");
    load_fails("    server: https://x\n    certificate-authority: notpem\n", u, "", NULL,
               KM_ECONFIG, "clusters[c].cluster.certificate-authority", "PEM");
    load_fails("    server: https://x\n    insecure-skip-tls-verify: maybe\n", u, "", NULL,
               KM_ECONFIG, "clusters[c].cluster.insecure-skip-tls-verify", "not a boolean");
    load_fails("    server: https://x\n    insecure-skip-tls-verify: true\n"
               "    certificate-authority: ca.crt\n",
               u, "", NULL, KM_ECONFIG, "clusters[c].cluster.insecure-skip-tls-verify",
               "certificate-authority");
}

static void test_malformed_user(void **state)
{
    (void)state;
    const char *c = "    server: https://x\n";
    load_fails(c, "    exec: {command: aws}\n", "", NULL, KM_EUNSUPPORTED, "users[u].user.exec",
               "not supported");
    load_fails(c, "    auth-provider: {name: gcp}\n", "", NULL, KM_EUNSUPPORTED,
               "users[u].user.auth-provider", "not supported");
    load_fails(c, "    username: admin\n    password: pw\n", "", NULL, KM_EUNSUPPORTED,
               "users[u].user.username", "basic authentication");
    load_fails(c, "    client-certificate-data: " CA_B64 "\n", "", NULL, KM_ECONFIG,
               "users[u].user.client-key", "missing");
    load_fails(c, "    client-key: client.key\n", "", NULL, KM_ECONFIG,
               "users[u].user.client-certificate", "missing");
    load_fails(c, "    client-certificate-data: " CA_B64 "\n    client-key-data: 'a'\n", "", NULL,
               KM_ECONFIG, "users[u].user.client-key-data", "not valid base64");
    load_fails(c, "    client-certificate: client.crt\n    client-key: ca.crt\n", "", NULL,
               KM_ECONFIG, "users[u].user.client-key", "PRIVATE KEY");
    load_fails(c, "    tokenFile: nope\n", "", NULL, KM_ECONFIG, "users[u].user.tokenFile",
               "cannot read");
    load_fails(c, "    token: [a]\n", "", NULL, KM_ECONFIG, "users[u].user.token",
               "must be a string");
}

static void test_malformed_references(void **state)
{
    (void)state;
    const char *c = "    server: https://x\n", *u = "    {}\n";
    load_fails(c, u, "", "nope", KM_ECONFIG, "contexts", "no entry named \"nope\"");
    char path[PATH_MAX];
    km_kubeconfig *cfg = NULL;
    km_err e;
    kmtest_write(g_dir, "k2",
                 "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
                 "users: [{name: u, user: {}}]\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n",
                 path);
    assert_int_equal(km_kubeconfig_from_file(path, NULL, &cfg, &e), KM_ECONFIG);
    assert_non_null(strstr(e.message, "current-context"));
    assert_non_null(strstr(e.message, path));
    kmtest_write(g_dir, "k3",
                 "current-context: x\nclusters: {}\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n",
                 path);
    assert_int_equal(km_kubeconfig_from_file(path, NULL, &cfg, &e), KM_ECONFIG);
    assert_non_null(strstr(e.message, "clusters: missing or not a list"));
    kmtest_write(g_dir, "k4",
                 "current-context: x\nclusters: [{name: c, cluster: {server: 'https://x'}}]\n"
                 "users: []\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n",
                 path);
    assert_int_equal(km_kubeconfig_from_file(path, NULL, &cfg, &e), KM_ECONFIG);
    assert_non_null(strstr(e.message, ": users: no entry named \"u\""));
    kmtest_write(g_dir, "k5",
                 "current-context: x\nclusters: [{name: c, cluster: {server: 'https://x'}}]\n"
                 "contexts: [{name: x, context: {user: u}}]\n",
                 path);
    assert_int_equal(km_kubeconfig_from_file(path, NULL, &cfg, &e), KM_ECONFIG);
    assert_non_null(strstr(e.message, "contexts[x].context.cluster: missing"));
    kmtest_write(g_dir, "k6",
                 "current-context: x\nclusters: [{name: c, cluster: {server: 'https://x'}}]\n"
                 "contexts: [{name: x, context: {cluster: zz}}]\n",
                 path);
    assert_int_equal(km_kubeconfig_from_file(path, NULL, &cfg, &e), KM_ECONFIG);
    assert_non_null(strstr(e.message, "clusters: no entry named \"zz\""));
    kmtest_write(g_dir, "k7", "current-context: [x\n", path);
    assert_int_equal(km_kubeconfig_from_file(path, NULL, &cfg, &e), KM_ECONFIG);
    assert_non_null(strstr(e.message, "YAML error"));
    assert_non_null(strstr(e.message, path));
    kmtest_write(g_dir, "k8", "", path);
    assert_int_equal(km_kubeconfig_from_file(path, NULL, &cfg, &e), KM_ECONFIG);
    assert_non_null(strstr(e.message, "empty"));
    snprintf(path, sizeof(path), "%s/does-not-exist", g_dir);
    assert_int_equal(km_kubeconfig_from_file(path, NULL, &cfg, &e), KM_ECONFIG);
    assert_non_null(strstr(e.message, path));
    assert_non_null(strstr(e.message, "cannot read"));
}

static void test_token_file_reload(void **state)
{
    (void)state;
    char tpath[PATH_MAX], kc[PATH_MAX];
    km_kubeconfig *cfg = NULL;
    km_err e;
    char *tok = NULL;
    int changed = 0;
    kmtest_write(g_dir, "rtoken", "one\n", tpath);
    kmtest_write(g_dir, "rconfig",
                 "current-context: x\nclusters: [{name: c, cluster: {server: 'https://x'}}]\n"
                 "users: [{name: u, user: {tokenFile: rtoken, token: ignored}}]\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n",
                 kc);
    assert_int_equal(km_kubeconfig_from_file(kc, NULL, &cfg, &e), KM_OK);
    km_kubeconfig_set_token_recheck(cfg, 3600); /* no stat within the interval */
    kmtest_write(NULL, tpath, "two-two\n", NULL);
    assert_int_equal(km_kubeconfig_token(cfg, &tok, &changed), KM_OK);
    assert_string_equal(tok, "one");
    assert_int_equal(changed, 0);
    free(tok);
    assert_int_equal(km_kubeconfig_token_reload(cfg, &tok, &changed), KM_OK); /* forced */
    assert_string_equal(tok, "two-two");
    assert_int_equal(changed, 1);
    free(tok);
    km_kubeconfig_set_token_recheck(cfg, 0); /* stat on every call */
    kmtest_write(NULL, tpath, "three\n", NULL);
    assert_int_equal(km_kubeconfig_token(cfg, &tok, &changed), KM_OK);
    assert_string_equal(tok, "three");
    assert_int_equal(changed, 1);
    free(tok);
    assert_int_equal(km_kubeconfig_token(cfg, &tok, &changed), KM_OK);
    assert_int_equal(changed, 0);
    free(tok);
    /* unreadable / empty file: the previous token is kept */
    kmtest_log_start();
    kmtest_write(NULL, tpath, "\n", NULL);
    assert_int_equal(km_kubeconfig_token(cfg, &tok, &changed), KM_OK);
    assert_string_equal(tok, "three");
    free(tok);
    remove(tpath);
    assert_int_equal(km_kubeconfig_token_reload(cfg, &tok, &changed), KM_OK);
    assert_string_equal(tok, "three");
    assert_int_equal(changed, 0);
    free(tok);
    assert_int_equal(kmtest_log_count("cannot re-read the token file"), 2);
    assert_null(strstr(kmtest_log_text(), "three"));
    kmtest_log_stop();
    km_kubeconfig_free(cfg);
}

static void test_load_resolution(void **state)
{
    (void)state;
    char kc[PATH_MAX], env[2 * PATH_MAX + 8], home[PATH_MAX];
    km_kubeconfig *cfg = NULL;
    km_err e;
    write_kc(kc, "    server: https://from-file\n", "    {}\n", "");
    km_kubeconfig_opts o = {.kubeconfig = kc, .context = "y"};
    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(km_kubeconfig_load(&o, &cfg, &e), KM_OK);
    assert_string_equal(km_kubeconfig_server(cfg), "https://other:1");
    km_kubeconfig_free(cfg);
    snprintf(env, sizeof(env), "%s/none:%s", g_dir, kc);
    setenv("KUBECONFIG", env, 1);
    assert_int_equal(km_kubeconfig_load(NULL, &cfg, &e), KM_OK);
    assert_string_equal(km_kubeconfig_server(cfg), "https://from-file");
    km_kubeconfig_free(cfg);
    /* $KUBECONFIG without an existing file, no in-cluster env: ~/.kube/config */
    snprintf(env, sizeof(env), "%s/none", g_dir);
    setenv("KUBECONFIG", env, 1);
    snprintf(home, sizeof(home), "%s/home", g_dir);
    setenv("HOME", home, 1);
    assert_int_equal(km_kubeconfig_load(NULL, &cfg, &e), KM_ECONFIG);
    assert_non_null(strstr(e.message, "no configuration found"));
    /* in-cluster when KUBERNETES_SERVICE_HOST is set: its error names the in-cluster files */
    setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    km_kubeconfig_opts ic = {.incluster_dir = g_dir};
    assert_int_equal(km_kubeconfig_load(&ic, &cfg, &e), KM_OK);
    assert_string_equal(km_kubeconfig_source(cfg), "in-cluster");
    km_kubeconfig_free(cfg);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBECONFIG");
}

/* Issue 16 item 5: CR/LF in a token would inject a header; refused wherever the token comes from
 * (kubeconfig token:, tokenFile at load, a token file re-read later), and by the header builder. */
static void test_token_header_injection(void **state)
{
    (void)state;
    const char *c = "    server: https://x\n";
    load_fails(c, "    token: \"abc\\r\\nX-Evil: 1\"\n", "", NULL, KM_ECONFIG,
               "users[u].user.token", "control characters");
    load_fails(c, "    token: \"abc\\nX-Evil: 1\"\n", "", NULL, KM_ECONFIG, "users[u].user.token",
               "control characters");
    kmtest_write(g_dir, "evil-token", "abc\r\nX-Evil: 1\n", NULL);
    load_fails(c, "    tokenFile: evil-token\n", "", NULL, KM_ECONFIG, "users[u].user.tokenFile",
               "control characters");

    char tpath[PATH_MAX], kc[PATH_MAX];
    km_kubeconfig *cfg = NULL;
    km_err e;
    char *tok = NULL;
    int changed = 0;
    kmtest_write(g_dir, "itoken", "good\n", tpath);
    kmtest_write(g_dir, "iconfig",
                 "current-context: x\nclusters: [{name: c, cluster: {server: 'https://x'}}]\n"
                 "users: [{name: u, user: {tokenFile: itoken}}]\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n",
                 kc);
    assert_int_equal(km_kubeconfig_from_file(kc, NULL, &cfg, &e), KM_OK);
    kmtest_log_start();
    kmtest_write(NULL, tpath, "bad\nX-Evil: 1\n", NULL);
    assert_int_equal(km_kubeconfig_token_reload(cfg, &tok, &changed), KM_OK);
    assert_string_equal(tok, "good"); /* the previous token is kept */
    free(tok);
    assert_int_equal(kmtest_log_count("cannot re-read the token file"), 1);
    assert_null(strstr(kmtest_log_text(), "X-Evil"));
    kmtest_log_stop();
    km_kubeconfig_free(cfg);

    km_buf b;
    km_buf_init(&b, 4096);
    assert_int_equal(km_header_line(&b, "Authorization", "Bearer a\r\nX: y", &e), KM_EINVAL);
    assert_null(strstr(e.message, "X: y"));
    assert_int_equal(km_header_line(&b, "Authorization", "Bearer a\x7f", NULL), KM_EINVAL);
    assert_int_equal(km_header_line(&b, "Authorization", "Bearer abc.def", NULL), KM_OK);
    assert_string_equal(km_buf_str(&b), "Authorization: Bearer abc.def");
    km_buf_cleanup(&b);
    assert_int_equal(km_header_value_ok(NULL), 0);
}

/* Issue 16 item 3: a deeply nested kubeconfig is refused before libyaml's document loader (which
 * is quadratic on it: 90 s) runs. */
static void test_deep_nesting(void **state)
{
    (void)state;
    char path[PATH_MAX];
    size_t depth = 100000, n = 0;
    char *text = malloc(2 * depth + 64);
    assert_non_null(text);
    n += (size_t)snprintf(text, 64, "clusters: ");
    memset(text + n, '[', depth);
    memset(text + n + depth, ']', depth);
    text[n + 2 * depth] = '\0';
    kmtest_write(g_dir, "deep", text, path);
    free(text);
    km_kubeconfig *cfg = NULL;
    km_err e;
    assert_int_equal(km_kubeconfig_from_file(path, NULL, &cfg, &e), KM_ECONFIG);
    assert_null(cfg);
    assert_non_null(strstr(e.message, "nesting deeper than 64 levels"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_fields_with_files),
        cmocka_unit_test(test_inline_data_and_token_file),
        cmocka_unit_test(test_insecure_and_context_choice),
        cmocka_unit_test(test_malformed_cluster),
        cmocka_unit_test(test_malformed_user),
        cmocka_unit_test(test_malformed_references),
        cmocka_unit_test(test_token_file_reload),
        cmocka_unit_test(test_load_resolution),
        cmocka_unit_test(test_token_header_injection),
        cmocka_unit_test(test_deep_nesting),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
