/* test_nodes_verify.c — the nodes step's verify hook (km_nodes_verify, reconcilers/nodes/nodes.h)
 * over an injected transport: True when cluster-info holds only the current CA and no NotReady
 * node waits on a kubelet-serving CSR; False naming what is left (a stale or extra CA, the
 * waiting nodes); no cluster-info is nothing to check; a refused read is the hook's error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "operator/base/json.h"
#include "operator/base/log.h"
#include "operator/kube/kube.h"
#include "reconcilers/nodes/nodes.h"
#include "tests/unit/support/kmtest.h"
#include "tests/unit/support/testpki.h"

/* What the fake server answers (NULL = 404). */
typedef struct server {
    char *cluster_info;      /* the ConfigMap */
    const char *csrs;        /* the CSR list */
    const char *nodes[4][2]; /* {name, body} */
    long ci_code;            /* != 0: this status for cluster-info (with a Status body) */
    int requests;
} server;

static km_status fake(const km_kube_req *req, const char *token, km_kube_reply *reply, km_buf *body,
                      km_err *err, void *user)
{
    (void)token;
    (void)err;
    server *s = user;
    const char *p = req->path, *answer = NULL;
    s->requests++;
    assert_string_equal(req->method, "GET"); /* the hook writes nothing */
    reply->sent = 1;
    if (strcmp(p, "/api/v1/namespaces/kube-public/configmaps/cluster-info") == 0) {
        if (s->ci_code) {
            reply->code = s->ci_code;
            km_buf_puts(body,
                        "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"Forbidden\","
                        "\"code\":403,\"message\":\"forbidden\"}");
            return KM_OK;
        }
        answer = s->cluster_info;
    } else if (strncmp(p, "/apis/certificates.k8s.io/v1/certificatesigningrequests", 55) == 0) {
        answer = s->csrs;
    } else {
        for (int i = 0; i < 4 && s->nodes[i][0]; i++) {
            char np[128];
            snprintf(np, sizeof(np), "/api/v1/nodes/%s", s->nodes[i][0]);
            if (strcmp(p, np) == 0)
                answer = s->nodes[i][1];
        }
    }
    reply->code = answer ? 200 : 404;
    km_buf_puts(body, answer
                          ? answer
                          : "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"NotFound\","
                            "\"code\":404}");
    return KM_OK;
}

typedef struct fixture {
    char dir[PATH_MAX];
    km_kubeconfig *cfg;
    km_kube *k;
    server s;
    char *cur, *old; /* CA PEMs */
    cJSON *spec;     /* {}: every setting at its default */
} fixture;

static char *ca(const char *subject, time_t nb)
{
    X509 *x = testpki_ca(subject, nb, nb + 3650L * 86400, NULL);
    char *pem = testpki_cert_pem(x);
    X509_free(x);
    return pem;
}

/* The cluster-info ConfigMap holding pem (one cluster). */
static char *cluster_info(const char *pem)
{
    size_t n = strlen(pem);
    char *b = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(b);
    EVP_EncodeBlock((unsigned char *)b, (const unsigned char *)pem, (int)n);
    size_t len = strlen(b) + 512;
    char *kc = malloc(len);
    assert_non_null(kc);
    snprintf(kc, len,
             "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: %s\n"
             "    server: https://10.0.0.1:6443\n  name: \"\"\nkind: Config\n",
             b);
    cJSON *cm = cJSON_CreateObject();
    cJSON *data = cJSON_AddObjectToObject(cm, "data");
    cJSON_AddStringToObject(data, "kubeconfig", kc);
    char *out = cJSON_PrintUnformatted(cm);
    cJSON_Delete(cm);
    free(kc);
    free(b);
    return out;
}

static km_status stub_ca(km_step_ctx *ctx, char **pem, km_err *err)
{
    (void)err;
    *pem = strdup(ctx->user);
    return KM_OK;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char kc[PATH_MAX];
    kmtest_mkdtemp(f->dir, sizeof(f->dir));
    kmtest_write(f->dir, "token", "tok-1\n", NULL);
    kmtest_write(f->dir, "config",
                 "current-context: c\n"
                 "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                 "users: [{name: u, user: {tokenFile: token}}]\n"
                 "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
                 kc);
    km_err e;
    assert_int_equal(km_kubeconfig_from_file(kc, NULL, &f->cfg, &e), KM_OK);
    km_kube_opts o;
    km_kube_opts_default(&o);
    o.qps = 0;
    o.max_retries = 0;
    assert_int_equal(km_kube_new(f->cfg, &o, &f->k, &e), KM_OK);
    km_kube_set_transport(f->k, fake, &f->s);
    f->cur = ca("CN=kubernetes", 1790000000);
    f->old = ca("CN=kubernetes", 1700000000);
    f->spec = cJSON_CreateObject();
    kmtest_log_start();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kmtest_log_stop();
    km_kube_free(f->k);
    km_kubeconfig_free(f->cfg);
    kmtest_rmdir(f->dir);
    free(f->s.cluster_info);
    free(f->cur);
    free(f->old);
    cJSON_Delete(f->spec);
    free(f);
    return 0;
}

/* Runs the hook on a fresh context; its return. */
static km_status verify(fixture *f, km_step_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->def = &km_nodes_def;
    ctx->kube = f->k;
    ctx->spec = f->spec;
    ctx->cluster_ca = stub_ca;
    ctx->user = f->cur;
    km_err e;
    km_err_clear(&e);
    return km_nodes_verify(ctx, &e);
}

#define NO_CSRS "{\"kind\":\"CertificateSigningRequestList\",\"metadata\":{},\"items\":[]}"
#define NODE(name, ready)                                                                          \
    "{\"metadata\":{\"name\":\"" name "\"},\"status\":{\"conditions\":[{\"type\":\"Ready\","       \
    "\"status\":\"" ready "\"}]}}"
#define CSR(name, node, signer, cond)                                                              \
    "{\"metadata\":{\"name\":\"" name "\"},\"spec\":{\"signerName\":\"" signer "\","               \
    "\"username\":\"system:node:" node "\"},\"status\":{" cond "}}"
#define SERVING "kubernetes.io/kubelet-serving"
#define CLIENT "kubernetes.io/kube-apiserver-client-kubelet"

static void test_healed(void **state)
{
    fixture *f = *state;
    km_step_ctx ctx;
    f->s.cluster_info = cluster_info(f->cur);
    f->s.csrs = NO_CSRS;
    assert_int_equal(verify(f, &ctx), KM_OK);
    assert_string_equal(ctx.cond_status, "True");
}

static void test_stale_or_extra_ca(void **state)
{
    fixture *f = *state;
    km_step_ctx ctx;
    f->s.csrs = NO_CSRS;
    f->s.cluster_info = cluster_info(f->old);
    assert_int_equal(verify(f, &ctx), KM_OK);
    assert_string_equal(ctx.cond_status, "False");
    assert_string_equal(ctx.cond_reason, "ClusterInfoStale");
    /* the current CA next to the old one is not "only the current CA" */
    size_t n = strlen(f->old) + strlen(f->cur) + 1;
    char *both = malloc(n);
    snprintf(both, n, "%s%s", f->cur, f->old);
    free(f->s.cluster_info);
    f->s.cluster_info = cluster_info(both);
    free(both);
    assert_int_equal(verify(f, &ctx), KM_OK);
    assert_string_equal(ctx.cond_reason, "ClusterInfoStale");
}

/* a, b pending serving CSRs of worker-2 (NotReady) and worker-1 (Ready); c decided and d of the
 * client signer, both of worker-3 (NotReady) */
#define CSR_A CSR("a", "worker-2", SERVING, "")
#define CSR_B CSR("b", "worker-1", SERVING, "")
#define CSR_C CSR("c", "worker-3", SERVING, "\"conditions\":[{\"type\":\"Denied\"}]")
#define CSR_D CSR("d", "worker-3", CLIENT, "")
static const char WAITING[] =
    "{\"metadata\":{},\"items\":[" CSR_A "," CSR_B "," CSR_C "," CSR_D "]}";

static void test_not_ready_node_waiting_on_a_csr(void **state)
{
    fixture *f = *state;
    km_step_ctx ctx;
    f->s.cluster_info = cluster_info(f->cur);
    f->s.csrs = WAITING;
    f->s.nodes[0][0] = "worker-1";
    f->s.nodes[0][1] = NODE("worker-1", "True");
    f->s.nodes[1][0] = "worker-2";
    f->s.nodes[1][1] = NODE("worker-2", "Unknown");
    f->s.nodes[2][0] = "worker-3";
    f->s.nodes[2][1] = NODE("worker-3", "False");
    assert_int_equal(verify(f, &ctx), KM_OK);
    assert_string_equal(ctx.cond_status, "False");
    assert_string_equal(ctx.cond_reason, "NodesWaitingOnCSR");
    /* worker-2 only: worker-1 is Ready, worker-3's CSR is decided or not a serving one */
    assert_non_null(strstr(ctx.cond_message, "worker-2"));
    assert_null(strstr(ctx.cond_message, "worker-1"));
    assert_null(strstr(ctx.cond_message, "worker-3"));
}

static void test_no_cluster_info_and_refused_read(void **state)
{
    fixture *f = *state;
    km_step_ctx ctx;
    f->s.csrs = NO_CSRS;
    assert_int_equal(verify(f, &ctx), KM_OK); /* not a kubeadm cluster: nothing to hold */
    assert_string_equal(ctx.cond_status, "True");
    f->s.ci_code = 403;
    assert_int_equal(verify(f, &ctx), KM_EAPI);
}

int main(void)
{
    km_kube_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_healed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_or_extra_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_ready_node_waiting_on_a_csr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_cluster_info_and_refused_read, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
