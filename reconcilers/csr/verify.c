/* verify.c — the csr step's verify hook (see verify.h). */
#include "reconcilers/csr/verify.h"

#include <stdio.h>
#include <string.h>

#include "operator/base/json.h"
#include "reconcilers/csr/csrcheck.h"
#include "reconcilers/csr/decide.h"
#include "reconcilers/step/left.h"

typedef struct vc {
    int client;   /* csr.approveKubeletClient */
    cJSON *todo;  /* [{"csr": name, "node": name}] pending CSRs of handled signers */
    long pending; /* every pending CSR seen (handled or not) */
} vc;

/* 1 when the step decides CSRs of signer. */
static int handled(const vc *v, const char *signer)
{
    return signer && (strcmp(signer, KM_CSR_SIGNER_SERVING) == 0 ||
                      (v->client && strcmp(signer, KM_CSR_SIGNER_CLIENT) == 0));
}

/* One page of CSRs: the pending ones of handled signers into v->todo (km_kube_page_fn).
 * Failure: KM_ENOMEM (v->todo keeps what was added). */
static km_status page(const km_kube_page *pg, void *user)
{
    vc *v = user;
    const cJSON *it;
    char node[256];
    if (pg->restarted) {
        cJSON_Delete(v->todo);
        if (!(v->todo = cJSON_CreateArray()))
            return KM_ENOMEM;
        v->pending = 0;
    }
    cJSON_ArrayForEach(it, pg->items)
    {
        if (km_csrcheck_is_decided(it))
            continue;
        v->pending++;
        if (!handled(v, KM_JSON_STR(it, "spec", "signerName")) ||
            !km_csrcheck_node_name(it, node, sizeof(node)))
            continue;
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(v->todo, o)) {
            cJSON_Delete(o);
            return KM_ENOMEM;
        }
        const char *name = KM_JSON_STR(it, "metadata", "name");
        if (!cJSON_AddStringToObject(o, "csr", name ? name : "") ||
            !cJSON_AddStringToObject(o, "node", node)) {
            return KM_ENOMEM;
        }
    }
    return KM_OK;
}

/* 1 in *exists when Node name exists.  Failure: the GET's error other than 404. */
static km_status node_exists(km_step_ctx *ctx, const char *name, int *exists, km_err *err)
{
    char path[512];
    cJSON *n = NULL;
    km_err e;
    km_err_clear(&e);
    *exists = 0;
    if (km_kube_path(path, sizeof(path), NULL, "v1", NULL, "nodes", name, NULL) != KM_OK)
        return KM_OK; /* no Node has such a name */
    km_status st = km_kube_get(ctx->kube, path, &n, &e);
    cJSON_Delete(n);
    if (st == KM_EAPI && e.http_code == 404)
        return KM_OK;
    if (st != KM_OK) {
        if (err)
            *err = e;
        km_err_prefix(err, "verify: GET node %s", name);
        return st;
    }
    *exists = 1;
    return KM_OK;
}

km_status km_csr_verify(km_step_ctx *ctx, km_err *err)
{
    vc v = {.client = km_step_bool(ctx, "approveKubeletClient"), .todo = cJSON_CreateArray()};
    km_left left = {0};
    char text[600], entry[600];
    if (!v.todo)
        return km_err_set(err, KM_ENOMEM, "csr verify: out of memory");
    km_list_opts lo = {.limit = 500};
    km_status st = km_kube_list(ctx->kube, KM_CSR_PATH, &lo, page, &v, NULL, err);
    if (st == KM_ENOMEM)
        km_err_set(err, st, "csr verify: out of memory");
    else if (st != KM_OK)
        km_err_prefix(err, "verify: list CSRs");
    const cJSON *it, *todo = st == KM_OK ? v.todo : NULL;
    cJSON_ArrayForEach(it, todo)
    {
        int exists = 0;
        const char *node = KM_JSON_STR(it, "node");
        if ((st = node_exists(ctx, node, &exists, err)) != KM_OK)
            break;
        snprintf(entry, sizeof(entry), "%s (node %s)", KM_JSON_STR(it, "csr"), node);
        if (exists)
            km_left_add(&left, entry);
    }
    if (st == KM_OK && left.n)
        km_step_set_result(ctx, "False", "CSRsPending", "kubelet CSRs of known Nodes pending: %s",
                           km_left_text(&left, text, sizeof(text)));
    else if (st == KM_OK)
        km_step_set_result(ctx, "True", "NoCSRPending",
                           "no kubelet CSR of a known Node pending (%ld pending CSRs of other "
                           "signers or requesters)",
                           v.pending);
    cJSON_Delete(v.todo);
    return st;
}
