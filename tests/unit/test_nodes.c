/* test_nodes.c — the pure rules of the nodes step (reconcilers/nodes): the discovery hash (against
 * the value of kubeadm's documented openssl pipeline), the CA replaced in cluster-info's
 * kubeconfig (server and every other byte kept, shapes refused), NotReady nodes and their
 * taints, toleration matching and the eviction countdown, the join command without the token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "reconcilers/nodes/clusterinfo.h"
#include "reconcilers/nodes/jointoken.h"
#include "reconcilers/nodes/notready.h"
#include "tests/unit/support/testpki.h"

/* A P-256 CA made with openssl req -x509; its hash from
 * `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`. */
static const char CA[] = "-----BEGIN CERTIFICATE-----\n"
                         "MIIBfzCCASWgAwIBAgIUbeugVAexS0WUNv7dCqzzgFKdOLEwCgYIKoZIzj0EAwIw\n"
                         "FTETMBEGA1UEAwwKa3ViZXJuZXRlczAeFw0yNjEyMDIxNDA4MDhaFw0zNjExMjkx\n"
                         "NDA4MDhaMBUxEzARBgNVBAMMCmt1YmVybmV0ZXMwWTATBgcqhkjOPQIBBggqhkjO\n"
                         "PQMBBwNCAARuI8h7V9szY3P0M1CeVFk3o70ckt3Fe0SpPMRO8hKUQtMaPbW8fyOi\n"
                         "LKzZRok8SNWwLR9r4049vj/iG4NyKwg+o1MwUTAdBgNVHQ4EFgQU4WnfMkElmxpc\n"
                         "vTLkdY74EAyag2AwHwYDVR0jBBgwFoAU4WnfMkElmxpcvTLkdY74EAyag2AwDwYD\n"
                         "VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiB+vNkn0FEWnqyEhlficPNO\n"
                         "99S5Hw2R8zu7bDNcNzGX1gIhAMgz2HYGj9rYQ7aavVoJHjDeCKiXgaBWGtn8oA3r\n"
                         "7XCy\n"
                         "-----END CERTIFICATE-----\n";
static const char CA_HASH[] =
    "sha256:75123d117fe0ef19098f00cb11afdd9a8c9d48cb7d1e04aa0203d8039e3e9f55";

static char *b64(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(o);
    EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)s, (int)n);
    return o;
}

/* kubeadm's cluster-info kubeconfig (as kubeadm / PyYAML write it) holding ca. */
static char *kubeconfig(const char *ca, const char *server)
{
    char *d = b64(ca);
    size_t n = strlen(d) + 512;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n,
             "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: %s\n"
             "    server: %s\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\n"
             "preferences: {}\nusers: null\n",
             d, server);
    free(d);
    return s;
}

static void test_hash_is_kubeadms(void **state)
{
    (void)state;
    char h[KM_CLUSTERINFO_HASH_MAX];
    assert_int_equal(km_clusterinfo_hash(CA, h, NULL), KM_OK);
    assert_string_equal(h, CA_HASH);
    /* the key's hash, not the certificate's: a re-issued CA with the same key hashes alike */
    EVP_PKEY *key = testpki_key("ec");
    testpki_cert_spec a = {
        .subject = "CN=kubernetes", .ca = 1, .not_before = 1000000, .not_after = 2000000000};
    testpki_cert_spec b = a;
    b.not_before = 2000000;
    X509 *x1 = testpki_cert(&a, key), *x2 = testpki_cert(&b, key);
    char *p1 = testpki_cert_pem(x1), *p2 = testpki_cert_pem(x2);
    char h1[KM_CLUSTERINFO_HASH_MAX], h2[KM_CLUSTERINFO_HASH_MAX];
    assert_int_equal(km_clusterinfo_hash(p1, h1, NULL), KM_OK);
    assert_int_equal(km_clusterinfo_hash(p2, h2, NULL), KM_OK);
    assert_string_equal(h1, h2);
    assert_string_not_equal(h1, CA_HASH);
    km_err e;
    assert_int_equal(km_clusterinfo_hash("not a certificate", h, &e), KM_EPARSE);
    assert_int_equal(km_clusterinfo_hash(NULL, h, &e), KM_EPARSE);
    free(p1);
    free(p2);
    X509_free(x1);
    X509_free(x2);
    EVP_PKEY_free(key);
}

static void test_replace_keeps_the_rest(void **state)
{
    (void)state;
    X509 *x = testpki_ca("CN=kubernetes", 0, 0, NULL);
    char *other = testpki_cert_pem(x);
    X509_free(x);
    char *before = kubeconfig(other, "https://10.0.0.1:6443");
    char *want = kubeconfig(CA, "https://10.0.0.1:6443");
    char *out = NULL;
    assert_int_equal(km_clusterinfo_replace_ca(before, CA, &out, NULL), KM_OK);
    assert_string_equal(out, want); /* byte for byte: only the CA's value changed */
    km_clusterinfo_doc d = {0};
    assert_int_equal(km_clusterinfo_read(out, &d, NULL), KM_OK);
    assert_string_equal(d.server, "https://10.0.0.1:6443");
    assert_string_equal(d.ca_pem, CA);
    km_clusterinfo_doc_cleanup(&d);
    /* idempotent */
    char *again = NULL;
    assert_int_equal(km_clusterinfo_replace_ca(out, CA, &again, NULL), KM_OK);
    assert_string_equal(again, want);
    free(again);
    free(out);
    free(before);
    free(want);
    free(other);
}

static void test_replace_json_and_quoted(void **state)
{
    (void)state;
    char *d = b64("old");
    char *dn = b64(CA);
    char in[2048], want[2048];
    snprintf(in, sizeof(in),
             "{\"apiVersion\":\"v1\",\"kind\":\"Config\",\"clusters\":[{\"name\":\"\",\"cluster\":"
             "{\"certificate-authority-data\":\"%s\",\"server\":\"https://h:6443\"}}]}",
             d);
    snprintf(want, sizeof(want),
             "{\"apiVersion\":\"v1\",\"kind\":\"Config\",\"clusters\":[{\"name\":\"\",\"cluster\":"
             "{\"certificate-authority-data\":\"%s\",\"server\":\"https://h:6443\"}}]}",
             dn);
    char *out = NULL;
    assert_int_equal(km_clusterinfo_replace_ca(in, CA, &out, NULL), KM_OK);
    assert_string_equal(out, want);
    free(out);
    free(d);
    free(dn);
}

static void test_unexpected_kubeconfigs_refused(void **state)
{
    (void)state;
    km_err e;
    char *out = NULL;
    /* two clusters */
    const char *two = "clusters:\n- cluster: {certificate-authority-data: YQ==, server: s}\n"
                      "- cluster: {certificate-authority-data: YQ==, server: t}\n";
    assert_int_equal(km_clusterinfo_replace_ca(two, CA, &out, &e), KM_EPARSE);
    assert_non_null(strstr(e.message, "exactly one cluster"));
    /* a file path instead of data */
    const char *file = "clusters:\n- cluster:\n    certificate-authority: /etc/ca.crt\n"
                       "    server: https://h\n";
    assert_int_equal(km_clusterinfo_replace_ca(file, CA, &out, &e), KM_EPARSE);
    /* not base64 */
    const char *bad = "clusters:\n- cluster:\n    certificate-authority-data: '%%%'\n"
                      "    server: https://h\n";
    assert_int_equal(km_clusterinfo_replace_ca(bad, CA, &out, &e), KM_EPARSE);
    /* a folded value over two lines: not rewritten */
    char *d = b64("-----BEGIN CERTIFICATE-----\n");
    char folded[512];
    snprintf(folded, sizeof(folded),
             "clusters:\n- cluster:\n    certificate-authority-data: >-\n      %s\n"
             "    server: https://h\n",
             d);
    assert_int_equal(km_clusterinfo_replace_ca(folded, CA, &out, &e), KM_EPARSE);
    assert_null(out);
    free(d);
    assert_int_equal(km_clusterinfo_replace_ca("{:", CA, &out, &e), KM_EPARSE);
    assert_null(out);
}

static cJSON *parse(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    return j;
}

static void test_not_ready_nodes_and_taints(void **state)
{
    (void)state;
    time_t since = 1, added = 1;
    cJSON *ready = parse("{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\","
                         "\"lastTransitionTime\":\"2026-11-26T09:00:00Z\"}]}}");
    cJSON *unknown = parse(
        "{\"spec\":{\"taints\":[{\"key\":\"node.kubernetes.io/unreachable\",\"effect\":"
        "\"NoSchedule\"},{\"key\":\"node.kubernetes.io/unreachable\",\"effect\":\"NoExecute\","
        "\"timeAdded\":\"2026-11-26T09:01:00Z\"}]},\"status\":{\"conditions\":[{\"type\":"
        "\"MemoryPressure\",\"status\":\"False\"},{\"type\":\"Ready\",\"status\":\"Unknown\","
        "\"lastTransitionTime\":\"2026-11-26T09:00:20Z\"}]}}");
    cJSON *bare = parse("{\"metadata\":{\"name\":\"n\"}}");
    assert_int_equal(km_notready_node(ready, &since), 0);
    assert_int_equal(km_notready_node(unknown, &since), 1);
    assert_int_equal(since, 1795683620); /* 2026-11-26T09:00:20Z */
    assert_int_equal(km_notready_node(bare, &since), 1);
    assert_int_equal(since, 0);
    assert_null(km_notready_taint(ready, &added));
    assert_string_equal(km_notready_taint(unknown, &added), KM_UNREACHABLE_TAINT);
    assert_int_equal(added, 1795683660);
    cJSON_Delete(ready);
    cJSON_Delete(unknown);
    cJSON_Delete(bare);
}

static void test_tolerations(void **state)
{
    (void)state;
    /* DefaultTolerationSeconds: 300 for both keys */
    cJSON *dflt = parse("{\"spec\":{\"tolerations\":[{\"key\":\"node.kubernetes.io/not-ready\","
                        "\"operator\":\"Exists\",\"effect\":\"NoExecute\",\"tolerationSeconds\":"
                        "300},{\"key\":\"node.kubernetes.io/unreachable\",\"operator\":\"Exists\","
                        "\"effect\":\"NoExecute\",\"tolerationSeconds\":300}]}}");
    assert_int_equal(km_notready_tolerated(dflt, KM_NOTREADY_TAINT), 300);
    /* DaemonSet pods: for ever */
    cJSON *ds = parse("{\"spec\":{\"tolerations\":[{\"key\":\"node.kubernetes.io/not-ready\","
                      "\"operator\":\"Exists\",\"effect\":\"NoExecute\"}]}}");
    assert_int_equal(km_notready_tolerated(ds, KM_NOTREADY_TAINT), -1);
    /* ... but not for the other key */
    assert_int_equal(km_notready_tolerated(ds, KM_UNREACHABLE_TAINT), 0);
    /* the smallest of several; an empty key with Exists matches any key; other effects not */
    cJSON *mix = parse("{\"spec\":{\"tolerations\":[{\"operator\":\"Exists\",\"effect\":"
                       "\"NoExecute\",\"tolerationSeconds\":60},{\"key\":\"node.kubernetes.io/"
                       "not-ready\",\"operator\":\"Exists\",\"tolerationSeconds\":30},{\"key\":"
                       "\"node.kubernetes.io/not-ready\",\"operator\":\"Exists\",\"effect\":"
                       "\"NoSchedule\"}]}}");
    assert_int_equal(km_notready_tolerated(mix, KM_NOTREADY_TAINT), 30);
    assert_int_equal(km_notready_tolerated(mix, KM_UNREACHABLE_TAINT), 60);
    /* Equal with a value does not match a taint without one; negative seconds = at once */
    cJSON *eq = parse("{\"spec\":{\"tolerations\":[{\"key\":\"node.kubernetes.io/not-ready\","
                      "\"operator\":\"Equal\",\"value\":\"x\",\"effect\":\"NoExecute\"},"
                      "{\"key\":\"node.kubernetes.io/unreachable\",\"operator\":\"Equal\","
                      "\"effect\":\"NoExecute\",\"tolerationSeconds\":-5}]}}");
    assert_int_equal(km_notready_tolerated(eq, KM_NOTREADY_TAINT), 0);
    assert_int_equal(km_notready_tolerated(eq, KM_UNREACHABLE_TAINT), 0);
    cJSON_Delete(dflt);
    cJSON_Delete(ds);
    cJSON_Delete(mix);
    cJSON_Delete(eq);
}

static void test_countdown(void **state)
{
    (void)state;
    assert_int_equal(km_notready_countdown(1000, 300, 1088), 212);
    assert_int_equal(km_notready_countdown(1000, 300, 1400), 0); /* already evicted */
    assert_int_equal(km_notready_countdown(0, 300, 5000), 300);  /* not tainted yet */
    assert_int_equal(km_notready_countdown(1000, -1, 5000), -1);
    assert_int_equal(km_notready_countdown(1000, 0, 1000), 0);
}

static void test_join_command_names_the_secret_only(void **state)
{
    (void)state;
    char cmd[900];
    km_jointoken_command("https://10.0.0.1:6443", "abc123", CA_HASH, "worker-1", cmd, sizeof(cmd));
    assert_string_equal(
        cmd, "kubeadm join 10.0.0.1:6443 --token \"$(kubectl -n kube-system get secret "
             "bootstrap-token-abc123 -o jsonpath='{.data.token-id}' | base64 -d).$(kubectl -n "
             "kube-system get secret bootstrap-token-abc123 -o jsonpath='{.data.token-secret}' | "
             "base64 -d)\" --discovery-token-ca-cert-hash "
             "sha256:75123d117fe0ef19098f00cb11afdd9a8c9d48cb7d1e04aa0203d8039e3e9f55 "
             "--node-name worker-1");
    km_jointoken_command(NULL, "abc123", CA_HASH, NULL, cmd, sizeof(cmd));
    assert_non_null(strstr(cmd, "kubeadm join <api-server:6443> --token"));
    assert_null(strstr(cmd, "--node-name"));
    char id[7], id2[7];
    assert_int_equal(km_jointoken_new_id(id, NULL), KM_OK);
    assert_int_equal(km_jointoken_new_id(id2, NULL), KM_OK);
    assert_int_equal(strlen(id), 6);
    assert_int_equal(strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789"), 6);
    assert_string_not_equal(id, id2); /* 36^6: a collision here is a broken RNG */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_is_kubeadms),
        cmocka_unit_test(test_replace_keeps_the_rest),
        cmocka_unit_test(test_replace_json_and_quoted),
        cmocka_unit_test(test_unexpected_kubeconfigs_refused),
        cmocka_unit_test(test_not_ready_nodes_and_taints),
        cmocka_unit_test(test_tolerations),
        cmocka_unit_test(test_countdown),
        cmocka_unit_test(test_join_command_names_the_secret_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
