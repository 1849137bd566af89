/* fuzz_csr.c — the CSR approval checks (reconcilers/csr/csrcheck.h): the pure decision on a CSR
 * object and its Node, and how a decision is counted in status.csr (reconcilers/csr/decide.h).
 *
 * Input: CSR (JSON) NUL Node (JSON; absent or not JSON = no such Node).  Checked: a decision is
 * always filled with terminated strings; Deny names its check and starts its message with it; a
 * signer the policy does not handle is Ignored; a serving CSR is never approved without its Node.
 * The status.csr counting of each decision must not fail on any CSR. */
#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "reconcilers/csr/csrcheck.h"
#include "reconcilers/csr/decide.h"
#include "tests/fuzz/fuzz.h"

#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

static km_csr_policy *policy[2];

static void init(void)
{
    if (policy[0])
        return;
    const char *pats[] = {"[a-z0-9-]+\\.nodes\\.example\\.com", "fx-node[0-9]+"};
    for (int client = 0; client < 2; client++)
        FUZZ_CHECK(km_csr_policy_new(pats, 2, 86400, client, &policy[client], NULL) == KM_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    fuzz_parts fp;
    if (fuzz_split(data, size, 2, &fp) != 0)
        return 0;
    cJSON *csr = cJSON_ParseWithLength(fp.p[0], fp.len[0]);
    cJSON *node = fp.len[1] ? cJSON_ParseWithLength(fp.p[1], fp.len[1]) : NULL;
    if (!csr)
        goto out;
    char name[64];
    const char *nn = km_csrcheck_node_name(csr, name, sizeof(name));
    FUZZ_CHECK(TERMINATED(name) && (nn == NULL || nn == name) && (nn || !name[0]));
    (void)km_csrcheck_is_decided(csr);
    const char *signer = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(csr, "spec"), "signerName"));
    cJSON *status = cJSON_CreateObject();
    for (int client = 0; client < 2; client++) {
        km_csr_decision d;
        memset(&d, 'x', sizeof(d));
        km_csrcheck_decide(policy[client], csr, node, &d);
        FUZZ_CHECK(TERMINATED(d.check) && TERMINATED(d.node) && TERMINATED(d.message));
        FUZZ_CHECK(strcmp(km_csr_verdict_str(d.verdict), "") != 0);
        if (d.verdict == KM_CSR_DENY)
            FUZZ_CHECK(d.check[0] != '\0' && strstr(d.message, d.check) == d.message);
        else
            FUZZ_CHECK(d.check[0] == '\0');
        if (d.verdict == KM_CSR_APPROVE) {
            FUZZ_CHECK(signer != NULL);
            if (strcmp(signer, KM_CSR_SIGNER_SERVING) == 0)
                FUZZ_CHECK(node != NULL);
            FUZZ_CHECK(km_csrcheck_handles(policy[client], signer));
        }
        if (!signer || !km_csrcheck_handles(policy[client], signer))
            FUZZ_CHECK(d.verdict == KM_CSR_IGNORE);
        km_csr_result r = {.out = d.verdict == KM_CSR_APPROVE ? KM_CSR_APPROVED
                                  : d.verdict == KM_CSR_DENY  ? KM_CSR_DENIED
                                                              : KM_CSR_IGNORED,
                           .d = d,
                           .reason = d.check[0] ? d.check : "allChecksPassed"};
        snprintf(r.name, sizeof(r.name), "%s", "fuzz");
        km_csr_status_add(status, &r);
    }
    cJSON_Delete(status);
out:
    cJSON_Delete(node);
    cJSON_Delete(csr);
    fuzz_parts_free(&fp);
    return 0;
}
