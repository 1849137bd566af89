/* pods.c — the pods step (see pods.h): namespace by namespace, each planned
 * (reconcilers/pods/owners.h) and restarted (reconcilers/pods/restart.h); progress in status. */
#include "reconcilers/pods/pods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/pods/owners.h"
#include "reconcilers/pods/podsel.h"
#include "reconcilers/pods/restart.h"

static km_status oom(km_err *err)
{
    return km_err_set(err, KM_ENOMEM, "pods: out of memory");
}

/* ---- namespaces ------------------------------------------------------------------------------ */

static km_status collect_ns(const km_kube_page *page, void *user)
{
    cJSON *names = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *n = KM_JSON_STR(it, "metadata", "name");
        const char *phase = KM_JSON_STR(it, "status", "phase");
        if (!n || (phase && strcmp(phase, "Terminating") == 0) || km_json_array_has_str(names, n))
            continue;
        cJSON *s = cJSON_CreateString(n);
        if (!s || !cJSON_AddItemToArray(names, s)) {
            cJSON_Delete(s);
            return KM_ENOMEM;
        }
    }
    return KM_OK;
}

/* The namespaces to visit, in order (reconcilers/pods/podsel.h): *order is a new array of
 * names.  Failure: the list's error, KM_EINVAL (bad selector), KM_ENOMEM. */
static km_status list_namespaces(km_step_ctx *ctx, cJSON **order, km_err *err)
{
    char *sel = NULL;
    km_status st = km_podsel_label_selector(KM_JSON_AT(ctx->spec, "namespaceSelector"), &sel, err);
    if (st != KM_OK)
        return st;
    cJSON *names = cJSON_CreateArray();
    if (!names) {
        free(sel);
        return oom(err);
    }
    km_list_opts lo = {.label_selector = sel[0] ? sel : NULL, .limit = 500};
    st = km_kube_list(ctx->kube, "/api/v1/namespaces", &lo, collect_ns, names, NULL, err);
    if (st == KM_OK && (st = km_podsel_order_namespaces(names, ctx->spec, order)) != KM_OK)
        oom(err);
    if (st != KM_OK)
        km_err_prefix(err, "list namespaces");
    cJSON_Delete(names);
    free(sel);
    return st;
}

/* Marks ns as the current namespace (current.restarted restarts when it is a new one). */
static km_status enter_namespace(km_step_ctx *ctx, const char *ns, km_err *err)
{
    cJSON *cur = km_json_obj(ctx->status, "current");
    if (!cur)
        return oom(err);
    const char *cur_ns = KM_JSON_STR(cur, "namespace");
    if (!cur_ns || strcmp(cur_ns, ns) != 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(cur, "restarted");
        if (km_json_set_str(cur, "namespace", ns) || !cJSON_AddArrayToObject(cur, "restarted"))
            return oom(err);
    }
    if (km_json_set_str(ctx->status, "currentNamespace", ns))
        return oom(err);
    return km_step_save(ctx, err);
}

/* One namespace: plan, restart the workloads, evict, handle the ownerless pods. */
static km_status do_namespace(km_pods_restarter *rs, const char *ns, km_err *err)
{
    km_step_ctx *ctx = rs->ctx;
    km_pods_plan p = {.kube = ctx->kube,
                      .ns = ns,
                      .started_at = rs->started_at,
                      .include_default = km_step_bool(ctx, "includeDefaultServiceAccount"),
                      .dry_run = rs->dry_run};
    km_status st = enter_namespace(ctx, ns, err);
    double deadline = km_clock_mono() + (double)rs->ns_timeout;
    if (st == KM_OK && (st = km_pods_plan_make(&p, err)) == KM_OK)
        km_log_info("pods: namespace planned", "namespace", ns, "workloads",
                    KM_LOG_INT((long)p.nworkloads), "evictions", KM_LOG_INT((long)p.evict.n),
                    "ownerless", KM_LOG_INT((long)p.ownerless.n), "skippedNoToken",
                    KM_LOG_INT(p.skipped[KM_PODSEL_NO_TOKEN]), "skippedNew",
                    KM_LOG_INT(p.skipped[KM_PODSEL_NEW]));
    if (st == KM_OK)
        st = km_pods_restart(rs, &p, deadline, err);
    for (size_t i = 0; st == KM_OK && i < p.evict.n; i++)
        st = km_step_cancelled(ctx) ? km_err_set(err, KM_ECANCELED, "pods step cancelled")
                                    : km_pods_evict(rs, &p, p.evict.v[i], err);
    for (size_t i = 0; st == KM_OK && i < p.ownerless.n; i++)
        st = km_pods_ownerless(rs, &p, p.ownerless.v[i], err);
    km_pods_plan_cleanup(&p);
    return st;
}

/* ns is done: status.pods.done, namespacesDone, no current namespace. */
static km_status leave_namespace(km_step_ctx *ctx, const char *ns, km_err *err)
{
    if (km_step_list_add(ctx->status, "done", ns, 1 << 30) != KM_OK)
        return oom(err);
    cJSON_DeleteItemFromObjectCaseSensitive(ctx->status, "current");
    km_json_set_num(ctx->status, "namespacesDone",
                    cJSON_GetArraySize(KM_JSON_AT(ctx->status, "done")));
    km_json_set_str(ctx->status, "currentNamespace", "");
    return km_step_save(ctx, err);
}

static void progress(km_step_ctx *ctx, int done, int total, const char *ns)
{
    char text[512];
    if (ns)
        snprintf(text, sizeof(text), "pods %d/%d namespaces (%.200s)", done, total, ns);
    else
        snprintf(text, sizeof(text), "pods %d/%d namespaces", done, total);
    if (ctx->progress)
        ctx->progress(ctx, text);
}

/* The step's condition from what status.pods counted. */
static void result(km_step_ctx *ctx, int total)
{
    const cJSON *st = ctx->status;
    long restarted = (long)KM_JSON_NUM(st, 0, "restarted");
    long evicted = (long)KM_JSON_NUM(st, 0, "evicted");
    long deleted = (long)KM_JSON_NUM(st, 0, "deleted");
    int nstuck = cJSON_GetArraySize(KM_JSON_AT(st, "stuck"));
    int nmanual = cJSON_GetArraySize(KM_JSON_AT(st, "manual"));
    const char *dry = ctx->dry_run ? "dry run: would have " : "";
    if (nstuck > 0)
        km_step_set_result(ctx, "False", "WorkloadsStuck",
                           "%srestarted %ld workloads, evicted %ld pods, deleted %ld in %d "
                           "namespaces; %d stuck (see status.pods.stuck), %d need a manual restart",
                           dry, restarted, evicted, deleted, total, nstuck, nmanual);
    else
        km_step_set_result(ctx, "True", ctx->dry_run ? "DryRun" : "PodsRestarted",
                           "%srestarted %ld workloads, evicted %ld pods, deleted %ld in %d "
                           "namespaces; %d ownerless pods need a manual restart",
                           dry, restarted, evicted, deleted, total, nmanual);
}

/* status.pods.done as an array (a resumed step skips those namespaces). */
static cJSON *done_list(km_step_ctx *ctx)
{
    cJSON *done = cJSON_GetObjectItemCaseSensitive(ctx->status, "done");
    if (cJSON_IsArray(done))
        return done;
    cJSON_DeleteItemFromObjectCaseSensitive(ctx->status, "done");
    return cJSON_AddArrayToObject(ctx->status, "done");
}

/* The restart marker's value: the recovery's start (now when none was recorded). */
static const char *marker_time(km_step_ctx *ctx, char *buf, size_t n)
{
    time_t t;
    if (km_clock_parse(ctx->started_at, &t) == KM_OK)
        return ctx->started_at;
    km_clock_now_text(buf, n);
    km_log_warn("pods: recovery has no startedAt, using now", "startedAt", buf);
    return buf;
}

static km_status pods_step(km_step_ctx *ctx, km_err *err)
{
    char now[KM_CLOCK_TEXT_MAX];
    cJSON *order = NULL, *done = NULL;
    km_pods_restarter rs = {
        .ctx = ctx,
        .started_at = marker_time(ctx, now, sizeof(now)),
        .dry_run = ctx->dry_run,
        .wait_ready = km_step_bool(ctx, "waitForReady") && !ctx->dry_run,
        .max_conc = (int)km_step_int(ctx, "maxConcurrent"),
        .delete_ownerless = km_step_bool(ctx, "deleteOwnerlessPods"),
        .ns_timeout = km_step_int(ctx, "namespaceTimeoutSeconds"),
        .evict_timeout = km_step_int(ctx, "evictionTimeoutSeconds"),
    };
    if (rs.max_conc < 1)
        rs.max_conc = 1;
    km_status st = list_namespaces(ctx, &order, err);
    int total = cJSON_GetArraySize(order);
    if (st == KM_OK && (!(done = done_list(ctx)) ||
                        km_json_set_num(ctx->status, "namespacesTotal", total) != KM_OK))
        st = oom(err);
    const cJSON *ns, *todo = st == KM_OK ? order : NULL;
    cJSON_ArrayForEach(ns, todo)
    {
        if (km_json_array_has_str(done, ns->valuestring))
            continue;
        if (km_step_cancelled(ctx))
            st = km_err_set(err, KM_ECANCELED, "pods step cancelled");
        if (st == KM_OK)
            progress(ctx, cJSON_GetArraySize(done), total, ns->valuestring);
        if (st == KM_OK && (st = do_namespace(&rs, ns->valuestring, err)) == KM_OK)
            st = leave_namespace(ctx, ns->valuestring, err);
        if (st != KM_OK)
            break;
    }
    if (st == KM_OK) {
        km_json_set_num(ctx->status, "namespacesDone", cJSON_GetArraySize(done));
        km_json_set_str(ctx->status, "currentNamespace", "");
        progress(ctx, cJSON_GetArraySize(done), total, NULL);
        result(ctx, total);
        st = km_step_save(ctx, err);
    }
    km_pods_restarter_cleanup(&rs); /* ends the readiness watches */
    cJSON_Delete(order);
    return st;
}

/* The CRD's CEL rule: includeNamespaces and excludeNamespaces are disjoint. */
static km_status check_spec(const cJSON *blk, km_err *err)
{
    const cJSON *exc = cJSON_GetObjectItemCaseSensitive(blk, "excludeNamespaces");
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(blk, "includeNamespaces"))
    {
        if (km_json_array_has_str(exc, it->valuestring))
            return km_err_set(err, KM_EINVAL,
                              "spec.pods: namespace \"%s\" is both in includeNamespaces and "
                              "excludeNamespaces",
                              it->valuestring);
    }
    return KM_OK;
}

static const km_field fields[] = {
    {"enabled", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"includeDefaultServiceAccount", KM_FIELD_BOOL, 0, 0, 0, NULL},
    {"namespaces", KM_FIELD_STRLIST, 0, 0, 1000, NULL},
    {"includeNamespaces", KM_FIELD_STRLIST, 0, 0, 256, NULL},
    {"excludeNamespaces", KM_FIELD_STRLIST, 0, 0, 256, NULL},
    {"namespaceSelector", KM_FIELD_SELECTOR, 0, 0, 0, NULL},
    {"maxConcurrent", KM_FIELD_INT, 5, 1, 100, NULL},
    {"waitForReady", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"namespaceTimeoutSeconds", KM_FIELD_INT, 600, 1, 2147483647, NULL},
    {"evictionTimeoutSeconds", KM_FIELD_INT, 300, 1, 2147483647, NULL},
    {"deleteOwnerlessPods", KM_FIELD_BOOL, 0, 0, 0, NULL},
    KM_FIELD_END,
};

const km_step_def km_pods_def = {
    .key = "pods",
    .flag = "pods",
    .cond = "PodsRestarted",
    .fail_reason = "PodsFailed",
    .fields = fields,
    .check = check_spec,
    .run = pods_step,
};
