/* decide.c — one pending CSR decided and acted on (see decide.h). */
#include "reconcilers/csr/decide.h"

#include <stdio.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/step/retry.h"
#include "reconcilers/step/step.h"

#define WRITE_RETRY_S 30.0 /* a decision's write retried this long (or until cancelled) */

/* GETs the Node (404 -> *out NULL, KM_OK). */
static km_status get_node(km_kube *k, const char *name, cJSON **out, km_err *err)
{
    char path[512];
    *out = NULL;
    if (km_kube_path(path, sizeof(path), NULL, "v1", NULL, "nodes", name, NULL) != KM_OK)
        return KM_OK; /* a name that long is no node */
    km_err e;
    km_err_clear(&e);
    km_status st = km_kube_get(k, path, out, &e);
    if (st == KM_EAPI && e.http_code == 404)
        return KM_OK;
    if (st != KM_OK && err)
        *err = e;
    return st;
}

static km_status addrs_page(const km_kube_page *page, void *user)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        km_status st = km_csr_addrs_add_node(user, it, NULL);
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

km_status km_csr_addrs_list(km_kube *kube, km_csr_addrs **out, km_err *err)
{
    km_csr_addrs *a = NULL;
    km_list_opts lo = {.limit = 500};
    km_status st = km_csr_addrs_new(&a, err);
    if (st == KM_OK &&
        (st = km_kube_list(kube, "/api/v1/nodes", &lo, addrs_page, a, NULL, err)) != KM_OK)
        km_err_prefix(err, "list nodes (their addresses)");
    if (st == KM_OK) {
        *out = a;
        a = NULL;
    }
    km_csr_addrs_free(a);
    return st;
}

/* Adds {type, status True, reason, message, lastUpdateTime} to body's status.conditions. */
static km_status add_condition(cJSON *body, const char *type, const char *reason,
                               const char *message)
{
    char now[KM_CLOCK_TEXT_MAX];
    km_clock_now_text(now, sizeof(now));
    cJSON *status = km_json_obj(body, "status");
    cJSON *conds = status ? cJSON_GetObjectItemCaseSensitive(status, "conditions") : NULL;
    if (status && !cJSON_IsArray(conds)) {
        cJSON_DeleteItemFromObjectCaseSensitive(status, "conditions");
        conds = cJSON_AddArrayToObject(status, "conditions");
    }
    cJSON *c = cJSON_CreateObject();
    if (!conds || !c || !cJSON_AddItemToArray(conds, c)) {
        cJSON_Delete(c);
        return KM_ENOMEM;
    }
    if (km_json_set_str(body, "apiVersion", "certificates.k8s.io/v1") ||
        km_json_set_str(body, "kind", "CertificateSigningRequest") ||
        km_json_set_str(c, "type", type) || km_json_set_str(c, "status", "True") ||
        km_json_set_str(c, "reason", reason) || km_json_set_str(c, "message", message) ||
        km_json_set_str(c, "lastUpdateTime", now))
        return KM_ENOMEM;
    return KM_OK;
}

/* PUTs csr + a condition to /approval.  KM_OK, or the write's error. */
static km_status write_approval(km_kube *k, const cJSON *csr, int approve, const char *message,
                                const atomic_int *cancel, km_err *err)
{
    char path[512];
    const char *name = KM_JSON_STR(csr, "metadata", "name");
    cJSON *body = cJSON_Duplicate(csr, 1);
    km_status st = KM_OK;
    if (!body)
        return km_err_set(err, KM_ENOMEM, "csr: out of memory");
    if (km_kube_path(path, sizeof(path), "certificates.k8s.io", "v1", NULL,
                     "certificatesigningrequests", name, "approval") != KM_OK)
        st = km_err_set(err, KM_EINVAL, "csr: name too long");
    else if (add_condition(body, approve ? "Approved" : "Denied",
                           approve ? "KubemendApproved" : "KubemendDenied", message) != KM_OK)
        st = km_err_set(err, KM_ENOMEM, "csr: out of memory");
    else {
        km_retry rt; /* guarded by the CSR's resourceVersion: safe to send again */
        km_retry_init(&rt, WRITE_RETRY_S, cancel);
        while ((st = km_kube_update(k, path, body, NULL, err)) != KM_OK &&
               km_retry_again(&rt, st, err, name))
            km_err_clear(err);
    }
    cJSON_Delete(body);
    return st;
}

/* Decides csr once; writes the decision.  *conflict = 1 when the write met a 409 (the caller
 * re-reads).  Failure: the Node GET's or the write's error (r->out then SKIPPED). */
static km_status decide_once(const km_csr_decider *h, const cJSON *csr, km_csr_result *r,
                             int *conflict, km_err *err)
{
    cJSON *node = NULL;
    char node_name[256];
    *conflict = 0;
    r->out = KM_CSR_SKIPPED;
    if (km_csrcheck_is_decided(csr))
        return KM_OK;
    const char *signer = KM_JSON_STR(csr, "spec", "signerName");
    if (!km_csrcheck_handles(h->policy, signer)) {
        r->out = KM_CSR_IGNORED;
        r->reason = "signerNotHandled";
        return KM_OK;
    }
    const cJSON *listed = NULL;
    km_status st = KM_OK;
    if (signer && strcmp(signer, KM_CSR_SIGNER_SERVING) == 0 &&
        km_csrcheck_node_name(csr, node_name, sizeof(node_name))) {
        listed = h->nodes ? km_strmap_get(h->nodes, node_name) : NULL;
        /* not listed: GET it (created since the list, or not a node at all) */
        if (!listed && (st = get_node(h->kube, node_name, &node, err)) != KM_OK)
            return st;
    }
    km_csrcheck_decide_among(h->policy, csr, listed ? listed : node, h->addrs, &r->d);
    cJSON_Delete(node);
    int approve = r->d.verdict == KM_CSR_APPROVE;
    r->reason = approve ? "allChecksPassed" : r->d.check;
    r->out = approve ? KM_CSR_APPROVED : h->deny ? KM_CSR_DENIED : KM_CSR_PENDING;
    if (r->out == KM_CSR_PENDING || h->dry_run)
        return KM_OK;
    km_err e;
    km_err_clear(&e);
    st = write_approval(h->kube, csr, approve, r->d.message, h->cancel, &e);
    if (st == KM_OK)
        return KM_OK;
    r->out = KM_CSR_SKIPPED;
    if (st == KM_EAPI && e.http_code == 404) /* deleted meanwhile */
        return KM_OK;
    *conflict = st == KM_EAPI && e.http_code == 409;
    if (err)
        *err = e;
    return st;
}

/* The Event and the log line of a decision. */
static void report(const km_csr_decider *h, const km_csr_result *r)
{
    char msg[1280];
    const char *dry = h->dry_run ? " (dry run: nothing written)" : "";
    const char *node = r->d.node[0] ? r->d.node : "<none>";
    if (r->out < KM_CSR_APPROVED)
        return;
    if (h->event && r->out == KM_CSR_APPROVED) {
        snprintf(msg, sizeof(msg), "approved CSR %s of node %s%s", r->name, node, dry);
        h->event(h->user, "Normal", "CSRApproved", msg);
    } else if (h->event && r->out == KM_CSR_DENIED) {
        snprintf(msg, sizeof(msg), "denied CSR %s of node %s: %s%s", r->name, node, r->d.message,
                 dry);
        h->event(h->user, "Warning", "CSRDenied", msg);
    } else if (h->event) {
        snprintf(msg, sizeof(msg), "CSR %s of node %s fails %s; left pending (csr.deny is off)",
                 r->name, node, r->d.message);
        h->event(h->user, "Warning", "CSRLeftPending", msg);
    }
    km_log_info(r->out == KM_CSR_APPROVED ? "csr approved"
                : r->out == KM_CSR_DENIED ? "csr denied"
                                          : "csr left pending",
                "csr", r->name, "node", r->d.node, "check", r->d.check, "dryRun",
                h->dry_run ? "true" : "false");
}

/* GETs CSR name again into *fresh (NULL when gone). */
static km_status reread(const km_csr_decider *h, const char *name, cJSON **fresh, km_err *err)
{
    char path[512];
    km_err e;
    km_err_clear(&e);
    if (km_kube_path(path, sizeof(path), "certificates.k8s.io", "v1", NULL,
                     "certificatesigningrequests", name, NULL) != KM_OK)
        return KM_OK;
    km_status st = km_kube_get(h->kube, path, fresh, &e);
    if (st == KM_EAPI && e.http_code == 404)
        return KM_OK;
    if (st != KM_OK && err)
        *err = e;
    return st;
}

km_status km_csr_decide(const km_csr_decider *h, const cJSON *csr, km_csr_result *r, km_err *err)
{
    cJSON *fresh = NULL;
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s",
             KM_JSON_STR(csr, "metadata", "name") ? KM_JSON_STR(csr, "metadata", "name") : "");
    int conflict = 0;
    km_status st = decide_once(h, csr, r, &conflict, err);
    if (st != KM_OK && conflict) { /* stale resourceVersion: re-read and decide again */
        st = reread(h, r->name, &fresh, err);
        if (st == KM_OK && fresh)
            st = decide_once(h, fresh, r, &conflict, err);
    }
    if (st == KM_OK)
        report(h, r);
    cJSON_Delete(fresh);
    return st;
}

const char *km_csr_outcome_decision(km_csr_outcome o)
{
    switch (o) {
    case KM_CSR_APPROVED:
        return "Approved";
    case KM_CSR_DENIED:
        return "Denied";
    case KM_CSR_PENDING:
        return "Pending";
    default:
        return NULL;
    }
}

const char *km_csr_outcome_counter(km_csr_outcome o)
{
    switch (o) {
    case KM_CSR_IGNORED:
        return "ignored";
    case KM_CSR_APPROVED:
        return "approved";
    case KM_CSR_DENIED:
        return "denied";
    case KM_CSR_PENDING:
        return "pending";
    default:
        return NULL;
    }
}

void km_csr_status_add(cJSON *csr, const km_csr_result *r)
{
    const char *counter = km_csr_outcome_counter(r->out);
    if (!csr || !counter)
        return;
    km_step_counter_add(csr, counter, 1);
    if (r->out < KM_CSR_APPROVED)
        return;
    cJSON *recent = cJSON_GetObjectItemCaseSensitive(csr, "recent");
    if (!cJSON_IsArray(recent)) {
        cJSON_DeleteItemFromObjectCaseSensitive(csr, "recent");
        if (!(recent = cJSON_AddArrayToObject(csr, "recent")))
            return;
    }
    while (cJSON_GetArraySize(recent) >= KM_CSR_RECENT_MAX)
        cJSON_DeleteItemFromArray(recent, 0);
    cJSON *e = cJSON_CreateObject();
    if (!e || km_json_set_str(e, "name", r->name) || km_json_set_str(e, "node", r->d.node) ||
        km_json_set_str(e, "decision", km_csr_outcome_decision(r->out)) ||
        km_json_set_str(e, "reason", r->reason ? r->reason : "") ||
        !cJSON_AddItemToArray(recent, e))
        cJSON_Delete(e);
}
