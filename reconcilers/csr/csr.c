/* csr.c — the csr step: one pass over the CSRs pending now (see csr.h); each is decided and
 * acted on by reconcilers/csr/decide.h.  The approval window that follows the pass is window.h. */
#include "reconcilers/csr/csr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/json.h"
#include "operator/base/num.h"
#include "operator/base/log.h"
#include "operator/base/strmap.h"
#include "reconcilers/csr/decide.h"
#include "reconcilers/csr/verify.h"

#define NODE_PAGE 500

/* ---- the step ------------------------------------------------------------------------------ */

static const km_field fields[] = {
    {"enabled", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"windowSeconds", KM_FIELD_INT, 3600, 1, 1e15, NULL},
    {"continuous", KM_FIELD_BOOL, 0, 0, 0, NULL},
    {"deny", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"approveKubeletClient", KM_FIELD_BOOL, 0, 0, 0, NULL},
    {"allowedDNSPatterns", KM_FIELD_REGEXLIST, 0, 0, 50, NULL},
    {"maxExpirationSeconds", KM_FIELD_INT, 31536000, 600, 1e15, NULL},
    {"maxInFlight", KM_FIELD_INT, 8, 1, 64, NULL},
    KM_FIELD_END,
};

km_status km_csr_policy_from_spec(const cJSON *csr_spec, km_csr_policy **out, km_err *err)
{
    const cJSON *pats = KM_JSON_AT(csr_spec, "allowedDNSPatterns");
    long max_exp = km_num_long(km_schema_num(fields, csr_spec, "maxExpirationSeconds"), 0);
    int client = km_schema_bool(fields, csr_spec, "approveKubeletClient");
    size_t n = cJSON_IsArray(pats) ? (size_t)cJSON_GetArraySize(pats) : 0;
    const char **v = NULL;
    if (n > 0 && !(v = calloc(n, sizeof(*v))))
        return km_err_set(err, KM_ENOMEM, "csr policy: out of memory");
    size_t i = 0;
    const cJSON *it, *list = n > 0 ? pats : NULL;
    cJSON_ArrayForEach(it, list)
    {
        if (!cJSON_IsString(it)) {
            free(v);
            return km_err_set(err, KM_EINVAL, "csr.allowedDNSPatterns[%zu]: not a string", i);
        }
        v[i++] = it->valuestring;
    }
    km_status st = km_csr_policy_new(v, n, max_exp, client, out, err);
    free(v);
    return st;
}

typedef struct step_state {
    km_step_ctx *ctx;
    cJSON *todo; /* undecided CSRs collected from the list */
    long ignored;
} step_state;

static km_status collect_page(const km_kube_page *page, void *user)
{
    step_state *s = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        if (km_csrcheck_is_decided(it))
            continue;
        const char *name = KM_JSON_STR(it, "metadata", "name");
        /* a list restarted after an expired continue may repeat items */
        int dup = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, s->todo)
        {
            const char *tn = KM_JSON_STR(t, "metadata", "name");
            if (page->restarted && name && tn && strcmp(name, tn) == 0) {
                dup = 1;
                break;
            }
        }
        if (dup)
            continue;
        cJSON *copy = cJSON_Duplicate(it, 1);
        if (!copy || !cJSON_AddItemToArray(s->todo, copy)) {
            cJSON_Delete(copy);
            return KM_ENOMEM;
        }
    }
    return KM_OK;
}

/* ---- the Nodes of one pass ---------------------------------------------------------------- */

typedef struct node_list {
    km_strmap *want;  /* node name -> number of pending serving CSRs naming it (uintptr_t) */
    km_strmap *nodes; /* node name -> Node (cJSON), the wanted ones found by the list */
    long unfound;     /* CSRs whose Node the list has not shown yet */
    long pages;
    km_csr_addrs *addrs; /* every Node's addresses */
} node_list;

/* Keeps the wanted Nodes of a page and indexes every Node's addresses. */
static km_status node_page(const km_kube_page *page, void *user)
{
    node_list *nl = user;
    const cJSON *it;
    nl->pages++;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *name = KM_JSON_STR(it, "metadata", "name");
        uintptr_t w = name ? (uintptr_t)km_strmap_get(nl->want, name) : 0;
        if (km_csr_addrs_add_node(nl->addrs, it, NULL) != KM_OK)
            return KM_ENOMEM;
        if (!w || km_strmap_has(nl->nodes, name))
            continue;
        cJSON *copy = cJSON_Duplicate(it, 1);
        if (!copy || km_strmap_put(nl->nodes, name, copy, NULL) != KM_OK) {
            cJSON_Delete(copy);
            return KM_ENOMEM;
        }
        nl->unfound -= (long)w;
    }
    return KM_OK;
}

static int free_node(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    cJSON_Delete(val);
    return 0;
}

/* Frees a map of Nodes (from list_nodes).  Accepts NULL. */
static void nodes_free(km_strmap *nodes)
{
    if (nodes)
        km_strmap_each(nodes, free_node, NULL);
    km_strmap_free(nodes);
}

/* Lists the Nodes once (paged) when a pending kubelet-serving CSR needs one, keeping the Nodes
 * they name (*out: name -> Node, caller frees with nodes_free) and every Node's addresses
 * (*addrs, caller frees with km_csr_addrs_free: a SAN another Node reports is denied).  Both
 * NULL when not listed; a refused list (API error) also leaves them NULL (every CSR then GETs its
 * Node, and the another-Node checks are not made: logged).  Fails on ENOMEM, transport errors
 * and cancel. */
static km_status list_nodes(km_kube *k, const km_csr_policy *policy, const cJSON *todo,
                            km_strmap **out, km_csr_addrs **addrs, km_err *err)
{
    km_status st = KM_ENOMEM;
    node_list nl = {.want = km_strmap_new(), .nodes = km_strmap_new()};
    const cJSON *csr;
    *out = NULL;
    *addrs = NULL;
    if (!nl.want || !nl.nodes || km_csr_addrs_new(&nl.addrs, NULL) != KM_OK) {
        km_err_set(err, st, "csr: out of memory");
        goto out;
    }
    cJSON_ArrayForEach(csr, todo)
    {
        char name[256];
        const char *signer = KM_JSON_STR(csr, "spec", "signerName");
        if (!signer || strcmp(signer, KM_CSR_SIGNER_SERVING) != 0 ||
            !km_csrcheck_handles(policy, signer) || !km_csrcheck_node_name(csr, name, sizeof(name)))
            continue;
        uintptr_t w = (uintptr_t)km_strmap_get(nl.want, name);
        if (km_strmap_put(nl.want, name, (void *)(w + 1), NULL) != KM_OK) {
            km_err_set(err, st, "csr: out of memory");
            goto out;
        }
        nl.unfound++;
    }
    st = KM_OK;
    if (nl.unfound == 0)
        goto out;
    km_err e;
    km_err_clear(&e);
    km_list_opts lo = {.limit = NODE_PAGE};
    st = km_kube_list(k, "/api/v1/nodes", &lo, node_page, &nl, NULL, &e);
    if (st == KM_EAPI) {
        char buf[768];
        km_log_warn("csr: cannot list nodes, reading them one by one; SANs of other nodes are "
                    "not checked",
                    "error", km_err_str(&e, buf, sizeof(buf)));
        st = KM_OK;
        goto out;
    }
    if (st != KM_OK) {
        if (err)
            *err = e;
        km_err_prefix(err, "list nodes");
        goto out;
    }
    *out = nl.nodes;
    nl.nodes = NULL;
    *addrs = nl.addrs;
    nl.addrs = NULL;
out:
    km_strmap_free(nl.want);
    nodes_free(nl.nodes);
    km_csr_addrs_free(nl.addrs);
    return st;
}

static void step_event(void *user, const char *type, const char *reason, const char *message)
{
    km_step_event(user, type, reason, message);
}

/* Counts a decision in status.csr and the step's metrics counter csr_<counter>_total.  Approved
 * and denied CSRs add to status.csr (a resumed pass adds to what the interrupted one recorded:
 * those CSRs are decided and not listed again); pending and ignored are this pass's, set at its
 * end (pass_result: a CSR left pending is listed again by a resumed pass). */
static void count(km_step_ctx *ctx, const km_csr_result *r)
{
    const char *counter = km_csr_outcome_counter(r->out);
    char name[64];
    if (!counter)
        return;
    if (r->out >= KM_CSR_APPROVED) /* approved, denied, pending (listed in recent) */
        km_csr_status_add(ctx->status, r);
    snprintf(name, sizeof(name), "csr_%s_total", counter);
    km_step_count(ctx, name, 1);
}

/* Decides every collected CSR; n[outcome] counts them.  Failure: a decision's error. */
static km_status decide_all(km_step_ctx *ctx, const km_csr_decider *h, const cJSON *todo, long *n,
                            km_err *err)
{
    const cJSON *csr;
    cJSON_ArrayForEach(csr, todo)
    {
        if (km_step_cancelled(ctx))
            return km_err_set(err, KM_ECANCELED, "csr step cancelled");
        km_csr_result r;
        km_status st = km_csr_decide(h, csr, &r, err);
        if (st != KM_OK) {
            km_err_prefix(err, "csr %s", r.name);
            return st;
        }
        n[r.out]++;
        count(ctx, &r);
        if (r.out >= KM_CSR_APPROVED && !ctx->dry_run && (st = km_step_save(ctx, err)) != KM_OK)
            return st;
    }
    return KM_OK;
}

/* The pass's progress text and condition: approved / denied as status.csr holds them (this pass
 * and an interrupted one it resumed), pending / ignored of this pass (set in status.csr). */
static void pass_result(km_step_ctx *ctx, const long *n)
{
    long approved = (long)KM_JSON_NUM(ctx->status, 0, "approved");
    long denied = (long)KM_JSON_NUM(ctx->status, 0, "denied");
    char text[128];
    km_json_set_num(ctx->status, "pending", (double)n[KM_CSR_PENDING]);
    km_json_set_num(ctx->status, "ignored", (double)n[KM_CSR_IGNORED]);
    snprintf(text, sizeof(text), "csr: %ld approved, %ld denied, %ld pending", approved, denied,
             n[KM_CSR_PENDING]);
    if (ctx->progress)
        ctx->progress(ctx, text);
    km_step_set_result(ctx, "True", ctx->dry_run ? "DryRun" : "PassCompleted",
                       "%s%ld CSRs approved, %ld denied, %ld left pending, %ld of other signers "
                       "ignored",
                       ctx->dry_run ? "dry run: would have " : "", approved, denied,
                       n[KM_CSR_PENDING], n[KM_CSR_IGNORED]);
}

static km_status csr_step(km_step_ctx *ctx, km_err *err)
{
    km_status st;
    km_csr_policy *policy = NULL;
    km_strmap *nodes = NULL;
    km_csr_addrs *addrs = NULL;
    step_state s = {.ctx = ctx, .todo = cJSON_CreateArray()};
    long n[KM_CSR_PENDING + 1] = {0};
    if (!s.todo)
        return km_err_set(err, KM_ENOMEM, "csr: out of memory");
    if ((st = km_csr_policy_from_spec(ctx->spec, &policy, err)) != KM_OK)
        goto out;
    km_list_opts lo = {.limit = 500};
    if ((st = km_kube_list(ctx->kube, KM_CSR_PATH, &lo, collect_page, &s, NULL, err)) != KM_OK) {
        km_err_prefix(err, "list certificatesigningrequests");
        goto out;
    }
    if ((st = list_nodes(ctx->kube, policy, s.todo, &nodes, &addrs, err)) != KM_OK)
        goto out;
    km_csr_decider h = {
        .kube = ctx->kube,
        .policy = policy,
        .deny = km_step_bool(ctx, "deny"),
        .dry_run = ctx->dry_run,
        .nodes = nodes,
        .event = step_event,
        .user = ctx,
        .addrs = addrs,
        .cancel = ctx->cancel,
    };
    if ((st = decide_all(ctx, &h, s.todo, n, err)) != KM_OK)
        goto out;
    pass_result(ctx, n);
out:
    km_csr_policy_free(policy);
    km_csr_addrs_free(addrs);
    nodes_free(nodes);
    cJSON_Delete(s.todo);
    return st;
}

const km_step_def km_csr_def = {
    .key = "csr",
    .flag = "csr",
    .cond = "CSRApprovalWindow",
    .fail_reason = "CSRFailed",
    .fields = fields,
    .run = csr_step,
    .verify = km_csr_verify,
};
