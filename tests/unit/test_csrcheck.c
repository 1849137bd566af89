/* test_csrcheck.c — the CSR approval matrix: one valid kubelet-serving CSR is approved and each
 * check failing alone prevents approval and is named; the client-kubelet signer; the recorded
 * kube-apiserver 1.19 fixture CSR against its recorded Node; a decision's write retries end on
 * cancel (decide.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <stdatomic.h>

#include "operator/kube/kube.h"
#include "operator/kube/kubeconfig.h"
#include "reconcilers/csr/csr.h"
#include "reconcilers/csr/csrcheck.h"
#include "reconcilers/csr/decide.h"
#include "tests/unit/support/kmtest.h"
#include "tests/unit/support/testcsr.h"

/* create-csr-kubelet-serving.json (kube-apiserver 1.19 fixture, verbatim) */
static const char FX_CSR_SERVING[] =
    "{\"kind\":\"CertificateSigningRequest\",\"apiVersion\":\"certificates.k8s.io/v1\",\"metad"
    "ata\":{\"name\":\"fx-node1-serving\",\"selfLink\":\"/apis/certificates.k8s.io/v1/certifi"
    "catesigningrequests/fx-node1-serving\",\"uid\":\"53dc67de-ef9d-454e-be84-d3017b15d43"
    "f\",\"resourceVersion\":\"375\",\"creationTimestamp\":\"2026-11-26T09:54:13Z\",\"managedFi"
    "elds\":[{\"manager\":\"fx-recorder\",\"operation\":\"Update\",\"apiVersion\":\"certificates."
    "k8s.io/v1\",\"time\":\"2026-11-26T09:54:13Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:"
    "spec\":{\"f:request\":{},\"f:signerName\":{},\"f:usages\":{}}}}]},\"spec\":{\"request\":\"LS"
    "0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJQkhUQ0J4QUlCQURBMk1SVXdFd1lEVl"
    "FRS0RBeHplWE4wWlcwNmJtOWtaWE14SFRBYkJnTlZCQU1NRkhONQpjM1JsYlRwdWIyUmxPbVo0TFc1dl"
    "pHVXhNRmt3RXdZSEtvWkl6ajBDQVFZSUtvWkl6ajBEQVFjRFFnQUUyNTdFCjJheG9CNUNYVlRjdjdxWk"
    "FWRU5vb2hMRHdqWU83Nkt4Ly94eWdmRENPVk0xUVZ5S1R3M0cvT044M3N6WWVIMG8KWVB6Y1VIQWIySj"
    "gvZTF2ckNxQXNNQ29HQ1NxR1NJYjNEUUVKRGpFZE1Cc3dHUVlEVlIwUkJCSXdFSUlJWm5ndApibTlrWl"
    "RHSEJNQUFBZ293Q2dZSUtvWkl6ajBFQXdJRFNBQXdSUUloQU1JWHU4Wkl0dU1NUWtKaTh2QisrQVlTCn"
    "FpN3IyOG5BTHNWTFNEdExid1MxQWlCc1VWYzlvZm9UaXF3Vk1WSmlwbzg1dXdLQzNEVlJBUnVZbXBBZF"
    "N0OWIKMXc9PQotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K\",\"signerName\":\"kubern"
    "etes.io/kubelet-serving\",\"usages\":[\"digital signature\",\"key encipherment\",\"serve"
    "r auth\"],\"username\":\"system:node:fx-node1\",\"groups\":[\"system:nodes\",\"system:auth"
    "enticated\"]},\"status\":{}}";
/* create-node-fx-node1.json (kube-apiserver 1.19 fixture, verbatim) */
static const char FX_NODE1[] =
    "{\"kind\":\"Node\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"fx-node1\",\"selfLink\":\"/"
    "api/"
    "v1/nodes/fx-node1\",\"uid\":\"7e88cc11-64ef-4f05-91b7-50a4dad64f18\",\"resourceVersion"
    "\":\"389\",\"creationTimestamp\":\"2026-11-26T09:54:53Z\",\"labels\":{\"kubernetes.io/arch"
    "\":\"amd64\",\"kubernetes.io/hostname\":\"fx-node1\",\"kubernetes.io/os\":\"linux\"},\"manag"
    "edFields\":[{\"manager\":\"fx-recorder\",\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time"
    "\":\"2026-11-26T09:54:53Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{\"f:la"
    "bels\":{\".\":{},\"f:kubernetes.io/arch\":{},\"f:kubernetes.io/hostname\":{},\"f:kuberne"
    "tes.io/"
    "os\":{}}},\"f:status\":{\"f:addresses\":{\".\":{},\"k:{\\\"type\\\":\\\"Hostname\\\"}\":{\""
    ".\":{},\"f:address\":{},\"f:type\":{}},\"k:{\\\"type\\\":\\\"InternalIP\\\"}\":{\".\":{},\"f:"
    "addre"
    "ss\":{},\"f:type\":{}}}}}}]},\"spec\":{\"taints\":[{\"key\":\"node.kubernetes.io/not-ready"
    "\",\"effect\":\"NoSchedule\"}]},\"status\":{\"addresses\":[{\"type\":\"InternalIP\","
    "\"address\""
    ":\"192.0.2.10\"},{\"type\":\"Hostname\",\"address\":\"fx-node1\"}],\"daemonEndpoints\":{\"kub"
    "eletEndpoint\":{\"Port\":0}},\"nodeInfo\":{\"machineID\":\"\",\"systemUUID\":\"\",\"bootID\":"
    "\"\""
    ",\"kernelVersion\":\"\",\"osImage\":\"\",\"containerRuntimeVersion\":\"\",\"kubeletVersion\":"
    "\""
    "\",\"kubeProxyVersion\":\"\",\"operatingSystem\":\"\",\"architecture\":\"\"}}}";
/* create-csr-kube-apiserver-client-kubelet.json (kube-apiserver 1.19 fixture, verbatim) */
static const char FX_CSR_CLIENT[] =
    "{\"kind\":\"CertificateSigningRequest\",\"apiVersion\":\"certificates.k8s.io/v1\",\"metad"
    "ata\":{\"name\":\"fx-node1-client\",\"selfLink\":\"/apis/certificates.k8s.io/v1/certific"
    "atesigningrequests/fx-node1-client\",\"uid\":\"2ee2786d-0e01-4a9f-85a8-a729eed5e69e\""
    ",\"resourceVersion\":\"376\",\"creationTimestamp\":\"2026-11-26T09:54:13Z\",\"managedFiel"
    "ds\":[{\"manager\":\"fx-recorder\",\"operation\":\"Update\",\"apiVersion\":\"certificates.k8"
    "s.io/v1\",\"time\":\"2026-11-26T09:54:13Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:sp"
    "ec\":{\"f:request\":{},\"f:signerName\":{},\"f:usages\":{}}}}]},\"spec\":{\"request\":\"LS0t"
    "LS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlId01JR1lBZ0VBTURZeEZUQVRCZ05WQkFv"
    "TURITjVjM1JsYlRwdWIyUmxjekVkTUJzR0ExVUVBd3dVYzNsegpkR1Z0T201dlpHVTZabmd0Ym05a1pU"
    "RXdXVEFUQmdjcWhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBUW96bDMzCmNLeUI2ZGVhV0pabVI2Y25U"
    "WWtvenlXMUNHVEd2cjY0MkFSZG1TSzN1R1NoN21OR2tmbnY5cnpCUGlpNnEvZmQKRTNWcTJvZTBwbk5i"
    "T1hwQm9BQXdDZ1lJS29aSXpqMEVBd0lEUndBd1JBSWdKV1dFZk9PazRTaGtrWUViSmhwYgpDOEtDL3Vk"
    "aFhuSzFDVm9OT3pkUWp4SUNJQkdzYkFPU0NOTEpEVGlFdHpMNVNJakl0dCtXUjA0WUN1QUYvU0ZFCm1X"
    "Y0wKLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0tCg==\",\"signerName\":\"kubernetes.i"
    "o/kube-apiserver-client-kubelet\",\"usages\":[\"digital signature\",\"key encipherment"
    "\",\"client auth\"],\"username\":\"system:node:fx-node1\",\"groups\":[\"system:nodes\",\"sys"
    "tem:authenticated\"]},\"status\":{}}";
/* approve-csr-kubelet-serving.json (kube-apiserver 1.19 fixture, verbatim) */
static const char FX_CSR_APPROVED[] =
    "{\"kind\":\"CertificateSigningRequest\",\"apiVersion\":\"certificates.k8s.io/v1\",\"metad"
    "ata\":{\"name\":\"fx-node1-serving\",\"selfLink\":\"/apis/certificates.k8s.io/v1/certifi"
    "catesigningrequests/fx-node1-serving/approval\",\"uid\":\"53dc67de-ef9d-454e-be84-d3"
    "017b15d43f\",\"resourceVersion\":\"378\",\"creationTimestamp\":\"2026-11-26T09:54:13Z\",\""
    "managedFields\":[{\"manager\":\"fx-recorder\",\"operation\":\"Update\",\"apiVersion\":\"cert"
    "ificates.k8s.io/v1\",\"time\":\"2026-11-26T09:54:24Z\",\"fieldsType\":\"FieldsV1\",\"field"
    "sV1\":{\"f:spec\":{\"f:request\":{},\"f:signerName\":{},\"f:usages\":{}},\"f:status\":{\"f:c"
    "onditions\":{\".\":{},\"k:{\\\"type\\\":\\\"Approved\\\"}\":{\".\":{},\"f:"
    "lastTransitionTime\":{}"
    ",\"f:lastUpdateTime\":{},\"f:message\":{},\"f:reason\":{},\"f:status\":{},\"f:type\":{}}}}"
    "}}]},\"spec\":{\"request\":\"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJQkhU"
    "Q0J4QUlCQURBMk1SVXdFd1lEVlFRS0RBeHplWE4wWlcwNmJtOWtaWE14SFRBYkJnTlZCQU1NRkhONQpj"
    "M1JsYlRwdWIyUmxPbVo0TFc1dlpHVXhNRmt3RXdZSEtvWkl6ajBDQVFZSUtvWkl6ajBEQVFjRFFnQUUy"
    "NTdFCjJheG9CNUNYVlRjdjdxWkFWRU5vb2hMRHdqWU83Nkt4Ly94eWdmRENPVk0xUVZ5S1R3M0cvT044"
    "M3N6WWVIMG8KWVB6Y1VIQWIySjgvZTF2ckNxQXNNQ29HQ1NxR1NJYjNEUUVKRGpFZE1Cc3dHUVlEVlIw"
    "UkJCSXdFSUlJWm5ndApibTlrWlRHSEJNQUFBZ293Q2dZSUtvWkl6ajBFQXdJRFNBQXdSUUloQU1JWHU4"
    "Wkl0dU1NUWtKaTh2QisrQVlTCnFpN3IyOG5BTHNWTFNEdExid1MxQWlCc1VWYzlvZm9UaXF3Vk1WSmlw"
    "bzg1dXdLQzNEVlJBUnVZbXBBZFN0OWIKMXc9PQotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0t"
    "LS0K\",\"signerName\":\"kubernetes.io/kubelet-serving\",\"usages\":[\"digital signature\""
    ",\"key encipherment\",\"server auth\"],\"username\":\"system:node:fx-node1\",\"groups\":[\""
    "system:nodes\",\"system:authenticated\"]},\"status\":{\"conditions\":[{\"type\":\"Approved"
    "\",\"status\":\"True\",\"reason\":\"FxFixtureApproval\",\"message\":\"approved by the fixtur"
    "e recorder\",\"lastUpdateTime\":\"2026-11-26T09:54:24Z\",\"lastTransitionTime\":\"2026-1"
    "1-26T09:54:24Z\"}]}}";

#define SERVING KM_CSR_SIGNER_SERVING
#define CLIENT KM_CSR_SIGNER_CLIENT
#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static const char *const NODE_GROUPS[] = {"system:nodes", "system:authenticated", NULL};
static const char *const SERVING_USAGES[] = {"digital signature", "key encipherment", "server auth",
                                             NULL};
static const char *const GOOD_SUBJECT[] = {"O=system:nodes", "CN=system:node:node1", NULL};
static const char *const GOOD_SANS[] = {"DNS:node1", "IP:10.0.0.5", NULL};

/* One variation of the valid CSR. */
typedef struct variant {
    const char *username;
    const char *const *groups;
    const char *const *usages;
    const char *const *subject;
    const char *const *sans;
    const char *key_type;
    int bad_signature;
    const char *raw_request; /* overrides the generated request */
    long expiration;         /* -1 = absent */
    int no_node;
} variant;

static km_csr_policy *policy(int client)
{
    km_csr_policy *p = NULL;
    const char *pats[] = {"[a-z0-9-]+\\.nodes\\.example\\.com"};
    assert_int_equal(km_csr_policy_new(pats, 1, 86400, client, &p, NULL), KM_OK);
    return p;
}

static cJSON *node1(void)
{
    return testcsr_node("node1", L("InternalIP=10.0.0.5", "Hostname=node1",
                                   "InternalDNS=node1.cluster.internal", "InternalIP=fd00::5"));
}

static km_csr_decision decide_variant(const char *signer, const variant *v, int client)
{
    testcsr_spec spec = {
        .key_type = v->key_type,
        .subject = v->subject ? v->subject : GOOD_SUBJECT,
        .sans = v->sans ? v->sans : GOOD_SANS,
        .bad_signature = v->bad_signature,
    };
    char *req = v->raw_request ? NULL : testcsr_request_b64(&spec);
    cJSON *csr =
        testcsr_object("csr-1", signer, v->username ? v->username : "system:node:node1",
                       v->groups ? v->groups : NODE_GROUPS, v->usages ? v->usages : SERVING_USAGES,
                       v->raw_request ? v->raw_request : req, v->expiration);
    cJSON *node = v->no_node ? NULL : node1();
    km_csr_policy *p = policy(client);
    km_csr_decision d;
    km_csrcheck_decide(p, csr, node, &d);
    km_csr_policy_free(p);
    cJSON_Delete(node);
    cJSON_Delete(csr);
    free(req);
    return d;
}

static void expect_deny(const variant *v, const char *check)
{
    km_csr_decision d = decide_variant(SERVING, v, 0);
    if (d.verdict != KM_CSR_DENY || strcmp(d.check, check) != 0)
        fail_msg("expected deny %s, got %s/%s (%s)", check, km_csr_verdict_str(d.verdict), d.check,
                 d.message);
    /* the message names the check first */
    assert_int_equal(strncmp(d.message, check, strlen(check)), 0);
}

static void expect_approve(const variant *v)
{
    km_csr_decision d = decide_variant(SERVING, v, 0);
    if (d.verdict != KM_CSR_APPROVE)
        fail_msg("expected approve, got %s/%s (%s)", km_csr_verdict_str(d.verdict), d.check,
                 d.message);
    assert_string_equal(d.node, "node1");
    assert_string_equal(d.check, "");
}

static void test_valid_approved(void **state)
{
    (void)state;
    expect_approve(&(variant){.expiration = -1});
    /* 1.27+ ECDSA kubelets omit key encipherment */
    expect_approve(&(variant){.expiration = -1, .usages = L("digital signature", "server auth")});
    expect_approve(&(variant){.expiration = -1, .usages = L("server auth")});
    /* RSA key, IP-only, IPv6, DNS from InternalDNS (case-insensitive), pattern match */
    expect_approve(&(variant){.expiration = -1, .key_type = "rsa"});
    expect_approve(&(variant){.expiration = -1, .sans = L("IP:10.0.0.5")});
    expect_approve(&(variant){.expiration = -1, .sans = L("IP:fd00:0::5")});
    expect_approve(&(variant){.expiration = -1, .sans = L("DNS:Node1.Cluster.Internal")});
    expect_approve(&(variant){.expiration = -1, .sans = L("DNS:node1.nodes.example.com")});
    expect_approve(&(variant){.expiration = 86400});
}

static void test_each_check_alone(void **state)
{
    (void)state;
    expect_deny(&(variant){.expiration = -1, .username = "system:admin"}, "requesterNotNode");
    expect_deny(&(variant){.expiration = -1, .username = "system:node:"}, "requesterNotNode");
    expect_deny(&(variant){.expiration = -1, .groups = L("system:authenticated")},
                "requesterGroupMissing");
    expect_deny(&(variant){.expiration = 86401}, "expirationTooLong");
    expect_deny(&(variant){.expiration = -1, .raw_request = "bm90IGEgY3NyCg=="}, "pemInvalid");
    expect_deny(&(variant){.expiration = -1, .raw_request = "***"}, "pemInvalid");
    expect_deny(&(variant){.expiration = -1, .raw_request = ""}, "pemInvalid");
    expect_deny(&(variant){.expiration = -1, .bad_signature = 1}, "signatureInvalid");
    expect_deny(
        &(variant){.expiration = -1, .subject = L("O=system:nodes", "CN=system:node:other")},
        "subjectMismatch");
    expect_deny(&(variant){.expiration = -1,
                           .subject = L("O=system:nodes", "OU=x", "CN=system:node:node1")},
                "subjectMismatch");
    expect_deny(
        &(variant){.expiration = -1, .subject = L("O=system:masters", "CN=system:node:node1")},
        "subjectMismatch");
    expect_deny(
        &(variant){.expiration = -1,
                   .subject = L("O=system:nodes", "O=system:masters", "CN=system:node:node1")},
        "subjectMismatch");
    expect_deny(&(variant){.expiration = -1, .subject = L("CN=system:node:node1")},
                "subjectMismatch");
    expect_deny(&(variant){.expiration = -1,
                           .usages = L("digital signature", "key encipherment", "server auth",
                                       "client auth")},
                "usageNotAllowed");
    expect_deny(&(variant){.expiration = -1, .usages = L("server auth", "cert sign")},
                "usageNotAllowed");
    expect_deny(&(variant){.expiration = -1, .usages = L("digital signature", "key encipherment")},
                "serverAuthMissing");
    expect_deny(&(variant){.expiration = -1, .sans = L("DNS:node1", "email:a@node1")},
                "emailSANPresent");
    expect_deny(&(variant){.expiration = -1, .sans = L("DNS:node1", "URI:spiffe://x/node1")},
                "uriSANPresent");
    expect_deny(&(variant){.expiration = -1, .sans = L("DNS:node1", "RID:1.2.3.4")},
                "otherSANPresent");
    expect_deny(&(variant){.expiration = -1, .sans = L(NULL)}, "noSANs");
    expect_deny(&(variant){.expiration = -1, .no_node = 1}, "nodeNotFound");
    expect_deny(&(variant){.expiration = -1, .sans = L("DNS:node1", "IP:10.0.0.6")},
                "ipAddressNotOwned");
    expect_deny(&(variant){.expiration = -1, .sans = L("IP:fd00::6")}, "ipAddressNotOwned");
    expect_deny(&(variant){.expiration = -1, .sans = L("DNS:node1", "DNS:kubernetes.default")},
                "dnsNameNotOwned");
    /* patterns are anchored: a partial match is not enough */
    expect_deny(&(variant){.expiration = -1, .sans = L("DNS:node1.nodes.example.com.evil.io")},
                "dnsNameNotOwned");
    expect_deny(&(variant){.expiration = -1, .sans = L("DNS:evil.io.x.nodes.example.com.y")},
                "dnsNameNotOwned");
}

static void test_ignored_signers(void **state)
{
    (void)state;
    km_csr_decision d =
        decide_variant("kubernetes.io/kube-apiserver-client", &(variant){.expiration = -1}, 1);
    assert_int_equal(d.verdict, KM_CSR_IGNORE);
    /* the client-kubelet signer is off unless approveKubeletClient */
    variant ok = {.expiration = -1,
                  .sans = L(NULL),
                  .usages = L("digital signature", "key encipherment", "client auth")};
    d = decide_variant(CLIENT, &ok, 0);
    assert_int_equal(d.verdict, KM_CSR_IGNORE);
    d = decide_variant(CLIENT, &ok, 1);
    assert_int_equal(d.verdict, KM_CSR_APPROVE);
}

static void expect_client(const variant *v, const char *check)
{
    km_csr_decision d = decide_variant(CLIENT, v, 1);
    if (check == NULL) {
        if (d.verdict != KM_CSR_APPROVE)
            fail_msg("expected approve, got %s (%s)", d.check, d.message);
        return;
    }
    if (d.verdict != KM_CSR_DENY || strcmp(d.check, check) != 0)
        fail_msg("expected deny %s, got %s/%s (%s)", check, km_csr_verdict_str(d.verdict), d.check,
                 d.message);
}

static void test_client_kubelet(void **state)
{
    (void)state;
    const char *const *cu = L("digital signature", "key encipherment", "client auth");
    expect_client(&(variant){.expiration = -1, .sans = L(NULL), .usages = cu}, NULL);
    expect_client(&(variant){.expiration = -1,
                             .sans = L(NULL),
                             .usages = L("digital signature", "client auth")},
                  NULL);
    /* a joining node: bootstrap token user, CN is the future node */
    expect_client(&(variant){.expiration = -1,
                             .sans = L(NULL),
                             .usages = cu,
                             .username = "system:bootstrap:abcdef",
                             .groups = L("system:bootstrappers", "system:authenticated")},
                  NULL);
    expect_client(
        &(variant){
            .expiration = -1, .sans = L(NULL), .usages = cu, .username = "system:node:other"},
        "requesterNotNode");
    expect_client(&(variant){.expiration = -1,
                             .sans = L(NULL),
                             .usages = cu,
                             .subject = L("O=system:nodes", "CN=node1")},
                  "requesterNotNode");
    expect_client(&(variant){.expiration = -1,
                             .sans = L(NULL),
                             .usages = cu,
                             .username = "system:bootstrap:abcdef",
                             .groups = L("system:bootstrappers"),
                             .subject = L("O=system:nodes", "CN=admin")},
                  "subjectMismatch");
    expect_client(&(variant){.expiration = -1,
                             .sans = L(NULL),
                             .usages = cu,
                             .subject = L("O=system:masters", "CN=system:node:node1")},
                  "subjectMismatch");
    expect_client(&(variant){.expiration = -1, .usages = cu}, "sansPresent");
    expect_client(&(variant){.expiration = -1,
                             .sans = L(NULL),
                             .usages = L("digital signature", "key encipherment", "server auth")},
                  "usageNotAllowed");
    expect_client(&(variant){.expiration = -1, .sans = L(NULL), .usages = L("client auth")},
                  "usageNotAllowed");
    expect_client(&(variant){.expiration = -1, .sans = L(NULL), .usages = cu, .bad_signature = 1},
                  "signatureInvalid");
    expect_client(&(variant){.expiration = 999999, .sans = L(NULL), .usages = cu},
                  "expirationTooLong");
}

static void test_fixture_serving_csr(void **state)
{
    (void)state;
    cJSON *csr = cJSON_Parse(FX_CSR_SERVING);
    cJSON *node = cJSON_Parse(FX_NODE1);
    cJSON *client = cJSON_Parse(FX_CSR_CLIENT);
    cJSON *approved = cJSON_Parse(FX_CSR_APPROVED);
    assert_non_null(csr);
    assert_non_null(node);
    km_csr_policy *p = NULL;
    assert_int_equal(km_csr_policy_from_spec(NULL, &p, NULL), KM_OK);
    char name[64];
    assert_string_equal(km_csrcheck_node_name(csr, name, sizeof(name)), "fx-node1");
    assert_false(km_csrcheck_is_decided(csr));
    assert_true(km_csrcheck_is_decided(approved));

    km_csr_decision d;
    km_csrcheck_decide(p, csr, node, &d);
    if (d.verdict != KM_CSR_APPROVE)
        fail_msg("fixture CSR: %s", d.message);
    assert_string_equal(d.node, "fx-node1");
    /* the same CSR without its Node, or with the node's IP changed, is denied */
    km_csrcheck_decide(p, csr, NULL, &d);
    assert_string_equal(d.check, "nodeNotFound");
    cJSON *addr = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(node, "status"), "addresses"), 0);
    cJSON_SetValuestring(cJSON_GetObjectItem(addr, "address"), "192.0.2.11");
    km_csrcheck_decide(p, csr, node, &d);
    assert_string_equal(d.check, "ipAddressNotOwned");
    assert_non_null(strstr(d.message, "192.0.2.10"));
    /* the recorded client CSR: ignored by default, approved when enabled */
    km_csrcheck_decide(p, client, NULL, &d);
    assert_int_equal(d.verdict, KM_CSR_IGNORE);
    km_csr_policy_free(p);
    cJSON *spec = cJSON_Parse("{\"approveKubeletClient\":true}");
    assert_int_equal(km_csr_policy_from_spec(spec, &p, NULL), KM_OK);
    km_csrcheck_decide(p, client, NULL, &d);
    if (d.verdict != KM_CSR_APPROVE)
        fail_msg("fixture client CSR: %s", d.message);
    assert_string_equal(d.node, "fx-node1");
    km_csr_policy_free(p);
    cJSON_Delete(spec);
    cJSON_Delete(approved);
    cJSON_Delete(client);
    cJSON_Delete(node);
    cJSON_Delete(csr);
}

static void test_policy_errors(void **state)
{
    (void)state;
    km_csr_policy *p = (km_csr_policy *)0x1;
    km_err err;
    const char *bad[] = {"ok", "([unclosed"};
    assert_int_equal(km_csr_policy_new(bad, 2, 0, 0, &p, &err), KM_EINVAL);
    assert_ptr_equal(p, (km_csr_policy *)0x1);
    assert_non_null(strstr(err.message, "allowedDNSPatterns[1]"));
    cJSON *spec = cJSON_Parse("{\"allowedDNSPatterns\":[1]}");
    assert_int_equal(km_csr_policy_from_spec(spec, &p, &err), KM_EINVAL);
    cJSON_Delete(spec);
    km_csr_policy_free(NULL);
    char buf[8];
    cJSON *csr = testcsr_object("x", SERVING, "system:node:averylongnodename", NODE_GROUPS,
                                SERVING_USAGES, NULL, -1);
    assert_null(km_csrcheck_node_name(csr, buf, sizeof(buf)));
    assert_string_equal(buf, "");
    cJSON_Delete(csr);
}

/* The valid CSR of node1 with these SANs, decided against node (borrowed) and others. */
static km_csr_decision decide_sans(const char *const *sans, const cJSON *node,
                                   const km_csr_addrs *others)
{
    testcsr_spec spec = {.subject = GOOD_SUBJECT, .sans = sans};
    char *req = testcsr_request_b64(&spec);
    cJSON *csr =
        testcsr_object("csr-1", SERVING, "system:node:node1", NODE_GROUPS, SERVING_USAGES, req, -1);
    km_csr_policy *p = policy(0);
    km_csr_decision d;
    km_csrcheck_decide_among(p, csr, node, others, &d);
    km_csr_policy_free(p);
    cJSON_Delete(csr);
    free(req);
    return d;
}

static void test_ips_compared_as_values(void **state)
{
    (void)state;
    cJSON *n = testcsr_node("node1", L("InternalIP=::1", "ExternalIP=203.0.113.9",
                                       "ExternalDNS=node1.example.org", "Hostname=192.0.2.7",
                                       "Foo=198.51.100.1", "InternalDNS=10.9.9.9"));
    km_csr_decision d = decide_sans(L("IP:0:0::1"), n, NULL);
    assert_int_equal(d.verdict, KM_CSR_APPROVE);
    d = decide_sans(L("IP:0000:0000:0000:0000:0000:0000:0000:0001"), n, NULL);
    assert_int_equal(d.verdict, KM_CSR_APPROVE);
    /* IPv4 and IPv4-mapped IPv6 are the same address */
    d = decide_sans(L("IP:::ffff:203.0.113.9", "DNS:NODE1.example.org"), n, NULL);
    assert_int_equal(d.verdict, KM_CSR_APPROVE);
    /* a Hostname holding an IP literal: the kubelet requests it as an IP SAN */
    d = decide_sans(L("IP:192.0.2.7"), n, NULL);
    assert_int_equal(d.verdict, KM_CSR_APPROVE);
    /* an address type kubelets do not report does not own; a DNS address is not an IP */
    d = decide_sans(L("IP:198.51.100.1"), n, NULL);
    assert_string_equal(d.check, "ipAddressNotOwned");
    d = decide_sans(L("IP:10.9.9.9"), n, NULL);
    assert_string_equal(d.check, "ipAddressNotOwned");
    d = decide_sans(L("IP:::2"), n, NULL);
    assert_string_equal(d.check, "ipAddressNotOwned");
    unsigned char a[16], b[16];
    assert_int_equal(km_csrcheck_ip_canon("fd00::5", NULL, 0, a), 1);
    assert_int_equal(km_csrcheck_ip_canon("fd00:0:0:0::5", NULL, 0, b), 1);
    assert_memory_equal(a, b, 16);
    assert_int_equal(km_csrcheck_ip_canon("10.0.0.1", NULL, 0, a), 1);
    assert_int_equal(km_csrcheck_ip_canon(NULL, (const unsigned char *)"\x0a\0\0\x01", 4, b), 1);
    assert_memory_equal(a, b, 16);
    assert_int_equal(km_csrcheck_ip_canon("node1", NULL, 0, a), 0);
    assert_int_equal(km_csrcheck_ip_canon(NULL, a, 5, b), 0);
    cJSON_Delete(n);
}

static void test_address_of_another_node(void **state)
{
    (void)state;
    /* node1 reports node2's IP (in another form) and name in its own status */
    cJSON *n1 = testcsr_node("node1", L("InternalIP=10.0.0.5", "Hostname=node1",
                                        "InternalIP=fd00::7", "InternalDNS=node2.internal"));
    cJSON *n2 = testcsr_node(
        "node2", L("InternalIP=fd00:0:0::7", "Hostname=node2", "InternalDNS=Node2.Internal"));
    km_csr_addrs *idx = NULL;
    assert_int_equal(km_csr_addrs_new(&idx, NULL), KM_OK);
    assert_int_equal(km_csr_addrs_add_node(idx, n1, NULL), KM_OK);
    assert_int_equal(km_csr_addrs_add_node(idx, n2, NULL), KM_OK);
    assert_int_equal(km_csr_addrs_add_node(idx, n2, NULL), KM_OK); /* twice: no change */
    assert_int_equal(km_csr_addrs_len(idx), 5); /* fd00::7 and node2.internal shared */
    km_csr_decision d = decide_sans(L("DNS:node1", "IP:10.0.0.5"), n1, idx);
    assert_int_equal(d.verdict, KM_CSR_APPROVE); /* its own addresses: listed, not another's */
    d = decide_sans(L("DNS:node1", "IP:fd00::7"), n1, idx);
    assert_int_equal(d.verdict, KM_CSR_DENY);
    assert_string_equal(d.check, "ipAddressOfOtherNode");
    assert_non_null(strstr(d.message, "node2"));
    d = decide_sans(L("DNS:node2.internal"), n1, idx);
    assert_string_equal(d.check, "dnsNameOfOtherNode");
    /* without the index the same CSR passes: the check needs it */
    d = decide_sans(L("DNS:node1", "IP:fd00::7"), n1, NULL);
    assert_int_equal(d.verdict, KM_CSR_APPROVE);
    km_csr_addrs_free(idx);
    km_csr_addrs_free(NULL);
    cJSON_Delete(n1);
    cJSON_Delete(n2);
}

/* The decision's server: GET of the Node answers it, the /approval PUT 503 + Retry-After 5. */
static km_status unavailable(const km_kube_req *req, const char *token, km_kube_reply *reply,
                             km_buf *body, km_err *err, void *user)
{
    (void)token, (void)err;
    int *puts = user;
    if (strcmp(req->method, "GET") == 0) {
        cJSON *n = node1();
        char *text = cJSON_PrintUnformatted(n);
        km_status st = km_buf_append(body, text, strlen(text));
        free(text);
        cJSON_Delete(n);
        reply->code = 200;
        return st;
    }
    (*puts)++;
    reply->code = 503;
    reply->retry_after = 5;
    reply->sent = 1;
    return km_buf_append(body, "{}", 2);
}

static void test_write_retries_end_on_cancel(void **state)
{
    (void)state;
    char dir[256];
    kmtest_mkdtemp(dir, sizeof(dir));
    km_kubeconfig *cfg = NULL;
    km_kube *k = NULL;
    km_err e;
    km_kube_opts o;
    km_kube_opts_default(&o);
    o.adaptive = 0;
    o.max_retries = 0; /* the decision's own retries only */
    int puts = 0;
    kmtest_fake_client(dir, &o, unavailable, &puts, &cfg, &k);
    testcsr_spec spec = {.subject = GOOD_SUBJECT, .sans = GOOD_SANS};
    char *req = testcsr_request_b64(&spec);
    cJSON *csr =
        testcsr_object("csr-1", SERVING, "system:node:node1", NODE_GROUPS, SERVING_USAGES, req, -1);
    km_csr_policy *p = policy(0);
    atomic_int cancel = 1; /* the approver stopping / the step cancelled */
    km_csr_decider h = {.kube = k, .policy = p, .cancel = &cancel};
    km_csr_result r;
    assert_int_not_equal(km_csr_decide(&h, csr, &r, &e), KM_OK);
    /* one PUT, no pause and retry (30 s of them when the cancel is not consulted) */
    assert_int_equal(puts, 1);
    assert_int_equal(r.out, KM_CSR_SKIPPED);
    km_csr_policy_free(p);
    cJSON_Delete(csr);
    free(req);
    km_kube_free(k);
    km_kubeconfig_free(cfg);
    kmtest_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_approved),
        cmocka_unit_test(test_each_check_alone),
        cmocka_unit_test(test_ignored_signers),
        cmocka_unit_test(test_client_kubelet),
        cmocka_unit_test(test_fixture_serving_csr),
        cmocka_unit_test(test_policy_errors),
        cmocka_unit_test(test_ips_compared_as_values),
        cmocka_unit_test(test_address_of_another_node),
        cmocka_unit_test(test_write_retries_end_on_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
