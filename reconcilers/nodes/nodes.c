/* nodes.c — the nodes step: cluster-info, the join token, the NotReady nodes (see nodes.h). */
#include "reconcilers/nodes/nodes.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/csr/csrcheck.h"
#include "reconcilers/extauth/pem.h"
#include "reconcilers/nodes/clusterinfo.h"
#include "reconcilers/nodes/jointoken.h"
#include "reconcilers/nodes/notready.h"
#include "reconcilers/step/backup.h"

#define MAX_ATTEMPTS 5
#define NOTREADY_MAX 50
#define RESIGN_WAIT_S 15

static const km_field fields[] = {
    {"enabled", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"updateClusterInfo", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"createJoinToken", KM_FIELD_BOOL, 0, 0, 0, NULL},
    {"joinTokenTTLSeconds", KM_FIELD_INT, 3600, 600, 86400, NULL},
    KM_FIELD_END,
};

typedef struct run {
    km_step_ctx *ctx;
    cJSON *st; /* status.nodes */
    char *ca;  /* the current cluster CA (PEM) */
    char hash[KM_CLUSTERINFO_HASH_MAX];
    char *server;      /* cluster-info's server, NULL without one */
    char problem[600]; /* the condition False message (cluster-info left untouched) */
    char token[8];     /* the join token's id, "" without */
} run;

static void run_cleanup(run *r)
{
    free(r->ca);
    free(r->server);
}

/* GET path into *out; *out NULL on 404.  Failure: the GET's error other than 404, prefixed. */
static km_status get_opt(km_kube *kube, const char *path, cJSON **out, km_err *err)
{
    km_err e;
    km_err_clear(&e);
    *out = NULL;
    km_status st = km_kube_get(kube, path, out, &e);
    if (st == KM_EAPI && km_err_is_http(&e, 404))
        return KM_OK;
    if (st != KM_OK) {
        if (err)
            *err = e;
        km_err_prefix(err, "GET %s", path);
    }
    return st;
}

static void ci_path(char *path, size_t n, const char *name)
{
    km_kube_path(path, n, NULL, "v1", KM_CLUSTERINFO_NAMESPACE, "configmaps", name, NULL);
}

/* 1 when pem is exactly one certificate, the one of cur (same DER). */
static int only_ca(const char *pem, const char *cur)
{
    km_pem_bundle *a = NULL, *b = NULL;
    int same = pem && cur && km_pem_parse(pem, strlen(pem), &a, NULL) == KM_OK &&
               km_pem_parse(cur, strlen(cur), &b, NULL) == KM_OK && km_pem_count(a) == 1 &&
               km_pem_count(b) >= 1 &&
               strcmp(km_pem_fingerprint(a, 0), km_pem_fingerprint(b, 0)) == 0;
    km_pem_free(a);
    km_pem_free(b);
    return same;
}

/* ---- cluster-info ---------------------------------------------------------------------------- */

/* Saves cm's data once in kube-public/cluster-info-backup-<recovery> (status backup). */
static km_status backup(run *r, const cJSON *cm, km_err *err)
{
    if (KM_JSON_STR(r->st, "clusterInfo", "backup"))
        return KM_OK;
    const char *rec = r->ctx->recovery ? r->ctx->recovery : "run-once";
    char name[300], path[256];
    int n = snprintf(name, sizeof(name), KM_CLUSTERINFO_BACKUP_PREFIX "%s", rec);
    if (n < 0 || n > 253)
        return km_err_set(err, KM_EINVAL, "backup ConfigMap name for recovery %s is too long", rec);
    cJSON *obj = NULL;
    if (km_step_backup_object(cm, KM_CLUSTERINFO_NAMESPACE, name, rec, &obj) != KM_OK)
        return km_err_set(err, KM_ENOMEM, "nodes: out of memory");
    ci_path(path, sizeof(path), NULL);
    km_err e;
    km_err_clear(&e);
    km_status st = km_kube_create(r->ctx->kube, path, obj, NULL, &e);
    cJSON_Delete(obj);
    if (st == KM_EAPI && km_err_is_http(&e, 409)) {
        km_log_info("nodes: cluster-info backup exists already, keeping it", "configmap", name);
    } else if (st == KM_OK) {
        km_step_eventf(r->ctx, "Normal", "BackupCreated",
                       "saved the original " KM_CLUSTERINFO_CONFIGMAP
                       " data in ConfigMap " KM_CLUSTERINFO_NAMESPACE "/%s",
                       name);
    } else {
        if (err)
            *err = e;
        km_err_prefix(err, "create backup " KM_CLUSTERINFO_NAMESPACE "/%s", name);
        return st;
    }
    cJSON *ci = km_json_obj(r->st, "clusterInfo");
    if (!ci || km_json_set_str(ci, "backup", name) != KM_OK)
        return km_err_set(err, KM_ENOMEM, "nodes: out of memory");
    return km_step_save(r->ctx, err);
}

/* The jws-kubeconfig-* entries of cm's data, as one text (to tell whether they changed). */
static char *jws_of(const cJSON *cm)
{
    cJSON *o = cJSON_CreateObject();
    const cJSON *it;
    cJSON_ArrayForEach(it, KM_JSON_AT(cm, "data"))
    {
        if (o && strncmp(it->string, "jws-kubeconfig-", 15) == 0 && cJSON_IsString(it))
            cJSON_AddStringToObject(o, it->string, it->valuestring);
    }
    char *s = o && cJSON_GetArraySize(o) > 0 ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* After the write: waits a little for the bootstrap signer to re-sign the JWS entries (before:
 * their text before the write); a Warning when it does not. */
static km_status await_resign(run *r, const char *before, km_err *err)
{
    char path[256];
    ci_path(path, sizeof(path), KM_CLUSTERINFO_CONFIGMAP);
    for (int i = 0; before && i < RESIGN_WAIT_S; i++) {
        if (km_clock_sleep(1, r->ctx->cancel) != KM_OK)
            return km_err_set(err, KM_ECANCELED, "nodes: cancelled");
        cJSON *cm = NULL;
        if (get_opt(r->ctx->kube, path, &cm, NULL) != KM_OK || !cm) {
            cJSON_Delete(cm);
            continue;
        }
        char *now = jws_of(cm);
        int changed = !now || strcmp(now, before) != 0;
        free(now);
        cJSON_Delete(cm);
        if (changed)
            return KM_OK;
    }
    if (before)
        km_step_eventf(
            r->ctx, "Warning", "ClusterInfoNotResigned",
            KM_CLUSTERINFO_NAMESPACE
            "/" KM_CLUSTERINFO_CONFIGMAP
            " was not re-signed within %d s: is the controller-manager's bootstrapsigner "
            "controller running? kubeadm join checks the jws-kubeconfig-<token-id> signature",
            RESIGN_WAIT_S);
    return KM_OK;
}

/* One attempt: reads cluster-info and writes the current CA into it.  *conflict on a 409. */
static km_status ci_attempt(run *r, int *conflict, km_err *err)
{
    char path[256], *text = NULL, *jws = NULL;
    cJSON *cm = NULL;
    km_clusterinfo_doc doc = {0};
    cJSON *ci = km_json_obj(r->st, "clusterInfo");
    ci_path(path, sizeof(path), KM_CLUSTERINFO_CONFIGMAP);
    km_status st = get_opt(r->ctx->kube, path, &cm, err);
    const char *kc = KM_JSON_STR(cm, "data", "kubeconfig");
    km_err e;
    km_err_clear(&e);
    if (st != KM_OK || !ci)
        goto out;
    if (!cm) {
        km_json_set_str(ci, "phase", "Missing");
        goto out;
    }
    if (km_clusterinfo_read(kc, &doc, &e) != KM_OK) {
        snprintf(r->problem, sizeof(r->problem), "%s/%s: %s; left untouched",
                 KM_CLUSTERINFO_NAMESPACE, KM_CLUSTERINFO_CONFIGMAP, e.message);
        goto out;
    }
    free(r->server);
    r->server = strdup(doc.server);
    km_json_set_str(ci, "server", doc.server);
    if (only_ca(doc.ca_pem, r->ca)) {
        const char *ph = KM_JSON_STR(ci, "phase");
        if (!ph || strcmp(ph, "Updated") != 0)
            km_json_set_str(ci, "phase", "Current");
        goto out;
    }
    if (km_clusterinfo_replace_ca(kc, r->ca, &text, &e) != KM_OK) {
        snprintf(r->problem, sizeof(r->problem), "%s/%s: %s; left untouched",
                 KM_CLUSTERINFO_NAMESPACE, KM_CLUSTERINFO_CONFIGMAP, e.message);
        goto out;
    }
    if (r->ctx->dry_run) {
        km_json_set_str(ci, "phase", "DryRun");
        goto out;
    }
    if ((st = backup(r, cm, err)) != KM_OK)
        goto out;
    jws = jws_of(cm);
    if (km_json_set_str(km_json_obj(cm, "data"), "kubeconfig", text) != KM_OK) {
        st = km_err_set(err, KM_ENOMEM, "nodes: out of memory");
        goto out;
    }
    st = km_kube_update(r->ctx->kube, path, cm, NULL, err);
    *conflict = st == KM_EAPI && km_err_is_http(err, 409);
    if (st != KM_OK)
        goto out;
    km_json_set_str(ci, "phase", "Updated");
    km_step_eventf(r->ctx, "Normal", "ClusterInfoUpdated",
                   KM_CLUSTERINFO_NAMESPACE
                   "/" KM_CLUSTERINFO_CONFIGMAP
                   " now holds the current cluster CA (server %s kept; backup %s)",
                   doc.server, KM_JSON_STR(ci, "backup") ? KM_JSON_STR(ci, "backup") : "?");
    st = km_step_save(r->ctx, err);
    if (st == KM_OK)
        st = await_resign(r, jws, err);
out:
    free(jws);
    free(text);
    km_clusterinfo_doc_cleanup(&doc);
    cJSON_Delete(cm);
    return st;
}

static km_status cluster_info(run *r, km_err *err)
{
    if (!km_step_bool(r->ctx, "updateClusterInfo"))
        return KM_OK;
    for (int attempt = 1;; attempt++) {
        int conflict = 0;
        km_status st = ci_attempt(r, &conflict, err);
        if (!conflict || attempt == MAX_ATTEMPTS)
            return st;
        if (km_step_cancelled(r->ctx))
            return km_err_set(err, KM_ECANCELED, "nodes: cancelled");
    }
}

/* ---- the join token ------------------------------------------------------------------------- */

/* 1 when the token recorded in status still exists and is valid for at least 10 minutes. */
static int token_valid(run *r, const char *id)
{
    time_t exp;
    char path[256], name[64];
    if (km_clock_parse(KM_JSON_STR(r->st, "joinToken", "expiration"), &exp) != KM_OK ||
        exp < time(NULL) + 600)
        return 0;
    snprintf(name, sizeof(name), KM_JOINTOKEN_PREFIX "%s", id);
    km_kube_path(path, sizeof(path), NULL, "v1", KM_JOINTOKEN_NAMESPACE, "secrets", name, NULL);
    cJSON *s = NULL;
    int ok = get_opt(r->ctx->kube, path, &s, NULL) == KM_OK && s;
    cJSON_Delete(s); /* holds the token: never logged, freed at once */
    return ok;
}

static km_status join_token(run *r, km_err *err)
{
    if (!km_step_bool(r->ctx, "createJoinToken") || r->ctx->dry_run)
        return KM_OK;
    const char *sec = KM_JSON_STR(r->st, "joinToken", "secret");
    const char *slash = sec ? strrchr(sec, '/') : NULL;
    const char *old = slash && strncmp(slash + 1, KM_JOINTOKEN_PREFIX, 16) == 0 ? slash + 17 : "";
    if (strlen(old) == 6 && token_valid(r, old)) {
        snprintf(r->token, sizeof(r->token), "%s", old);
        return KM_OK;
    }
    char id[7], name[96], when[KM_CLOCK_TEXT_MAX];
    time_t exp = time(NULL) + km_step_int(r->ctx, "joinTokenTTLSeconds");
    km_status st = km_jointoken_new_id(id, err);
    if (st != KM_OK)
        return st;
    snprintf(name, sizeof(name), KM_JOINTOKEN_NAMESPACE "/" KM_JOINTOKEN_PREFIX "%s", id);
    cJSON *jt = km_json_obj(r->st, "joinToken");
    if (!jt || km_json_set_str(jt, "secret", name) != KM_OK ||
        km_json_set_str(jt, "expiration", km_clock_format_s(exp, when, sizeof(when))) != KM_OK)
        return km_err_set(err, KM_ENOMEM, "nodes: out of memory");
    /* recorded first: a crash after the create leaves a Secret this recovery knows */
    if ((st = km_step_save(r->ctx, err)) != KM_OK ||
        (st = km_jointoken_create(r->ctx->kube, id, exp, r->ctx->recovery, err)) != KM_OK)
        return st;
    snprintf(r->token, sizeof(r->token), "%s", id);
    km_step_eventf(r->ctx, "Normal", "JoinTokenCreated",
                   "bootstrap token Secret %s created, valid until %s (group " KM_JOINTOKEN_GROUP
                   ")",
                   name, when);
    return km_step_save(r->ctx, err);
}

/* ---- NotReady nodes -------------------------------------------------------------------------- */

typedef struct nr_list {
    cJSON *items; /* [{name, since, taint, base}] of the NotReady nodes (first NOTREADY_MAX) */
    long count;
} nr_list;

static km_status nodes_page(const km_kube_page *page, void *user)
{
    nr_list *l = user;
    const cJSON *n;
    cJSON_ArrayForEach(n, page->items)
    {
        time_t since = 0, added = 0;
        const char *name = KM_JSON_STR(n, "metadata", "name");
        if (!name || !km_notready_node(n, &since))
            continue;
        l->count++;
        if (cJSON_GetArraySize(l->items) >= NOTREADY_MAX)
            continue;
        const char *taint = km_notready_taint(n, &added);
        char when[KM_CLOCK_TEXT_MAX];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(l->items, o) || !cJSON_AddStringToObject(o, "name", name) ||
            (since &&
             !cJSON_AddStringToObject(o, "since", km_clock_format_s(since, when, sizeof(when)))) ||
            (taint && !cJSON_AddStringToObject(o, "taint", taint)) ||
            !cJSON_AddNumberToObject(o, "base", (double)(taint && added ? added : since)))
            return KM_ENOMEM;
    }
    return KM_OK;
}

typedef struct pod_scan {
    const char *taint;
    long min; /* smallest tolerated seconds, -1 none yet / for ever */
    long pods, evicted;
} pod_scan;

static km_status pods_page(const km_kube_page *page, void *user)
{
    pod_scan *s = user;
    const cJSON *p;
    cJSON_ArrayForEach(p, page->items)
    {
        const char *phase = KM_JSON_STR(p, "status", "phase");
        if (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
            continue;
        s->pods++;
        long t = km_notready_tolerated(p, s->taint);
        if (t < 0)
            continue;
        s->evicted++;
        if (s->min < 0 || t < s->min)
            s->min = t;
    }
    return KM_OK;
}

/* The eviction countdown of one listed node (its pods listed by spec.nodeName, page by page). */
static km_status node_countdown(run *r, cJSON *o, km_err *err)
{
    char path[128], sel[320];
    const char *name = KM_JSON_STR(o, "name");
    pod_scan s = {KM_JSON_STR(o, "taint") ? KM_JSON_STR(o, "taint") : KM_NOTREADY_TAINT, -1, 0, 0};
    km_kube_path(path, sizeof(path), NULL, "v1", NULL, "pods", NULL, NULL);
    snprintf(sel, sizeof(sel), "spec.nodeName=%s", name);
    km_list_opts lo = {.field_selector = sel};
    km_status st = km_kube_list(r->ctx->kube, path, &lo, pods_page, &s, NULL, err);
    if (st != KM_OK) {
        km_err_prefix(err, "list pods on node %s", name);
        return st;
    }
    long tolerated = s.evicted ? s.min : (s.pods ? -1 : KM_NOTREADY_DEFAULT_SECONDS);
    time_t base = (time_t)KM_JSON_NUM(o, 0, "base");
    cJSON_DeleteItemFromObjectCaseSensitive(o, "base");
    if (!cJSON_AddNumberToObject(o, "pods", (double)s.pods) ||
        !cJSON_AddNumberToObject(o, "evictionInSeconds",
                                 (double)km_notready_countdown(base, tolerated, time(NULL))))
        return km_err_set(err, KM_ENOMEM, "nodes: out of memory");
    if (r->token[0]) {
        char cmd[900];
        km_jointoken_command(r->server, r->token, r->hash, name, cmd, sizeof(cmd));
        if (!cJSON_AddStringToObject(o, "joinCommand", cmd))
            return km_err_set(err, KM_ENOMEM, "nodes: out of memory");
    }
    return KM_OK;
}

/* "a (evicted in 212 s), b (not evicted), ..." of the listed nodes into out. */
static void describe(const cJSON *items, long count, char *out, size_t n)
{
    size_t o = 0;
    const cJSON *it;
    out[0] = '\0';
    cJSON_ArrayForEach(it, items)
    {
        long left = (long)KM_JSON_NUM(it, -1, "evictionInSeconds");
        char part[320];
        if (left < 0)
            snprintf(part, sizeof(part), "%s%s (no pod evicted)", o ? ", " : "",
                     KM_JSON_STR(it, "name"));
        else if (left == 0)
            snprintf(part, sizeof(part), "%s%s (%ld pods; being evicted now)", o ? ", " : "",
                     KM_JSON_STR(it, "name"), (long)KM_JSON_NUM(it, 0, "pods"));
        else
            snprintf(part, sizeof(part), "%s%s (%ld pods; evicted in %ld s)", o ? ", " : "",
                     KM_JSON_STR(it, "name"), (long)KM_JSON_NUM(it, 0, "pods"), left);
        if (o + strlen(part) + 16 >= n)
            break;
        memcpy(out + o, part, strlen(part) + 1);
        o += strlen(part);
    }
    if (count > cJSON_GetArraySize(items) && o + 16 < n)
        snprintf(out + o, n - o, " and %ld more", count - cJSON_GetArraySize(items));
}

static km_status not_ready(run *r, km_err *err)
{
    char path[64], text[700];
    nr_list l = {cJSON_CreateArray(), 0};
    if (!l.items)
        return km_err_set(err, KM_ENOMEM, "nodes: out of memory");
    km_kube_path(path, sizeof(path), NULL, "v1", NULL, "nodes", NULL, NULL);
    km_status st = km_kube_list(r->ctx->kube, path, NULL, nodes_page, &l, NULL, err);
    if (st != KM_OK)
        km_err_prefix(err, "list nodes");
    cJSON *it;
    cJSON_ArrayForEach(it, l.items) if (st == KM_OK) st = node_countdown(r, it, err);
    if (st != KM_OK) {
        cJSON_Delete(l.items);
        return st;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(r->st, "notReady");
    cJSON_AddItemToObject(r->st, "notReady", l.items);
    km_json_set_num(r->st, "notReadyCount", (double)l.count);
    if (l.count > 0) {
        describe(l.items, l.count, text, sizeof(text));
        km_step_eventf(
            r->ctx, "Warning", "NodesNotReady",
            "%ld NotReady node(s) — re-join them before the controller-manager evicts their "
            "pods (taint-based eviction): %s",
            l.count, text);
    }
    return km_step_save(r->ctx, err);
}

/* ---- the step ------------------------------------------------------------------------------- */

/* The current CA and its hash into r (an Event with the hash, once per value). */
static km_status current_ca(run *r, km_err *err)
{
    km_status st = r->ctx->cluster_ca
                       ? r->ctx->cluster_ca(r->ctx, &r->ca, err)
                       : km_err_set(err, KM_ENOTFOUND, "no current cluster CA is known");
    if (st == KM_OK)
        st = km_clusterinfo_hash(r->ca, r->hash, err);
    if (st != KM_OK) {
        km_err_prefix(err, "the current cluster CA");
        return st;
    }
    const char *had = KM_JSON_STR(r->st, "discoveryHash");
    if (!had || strcmp(had, r->hash) != 0) {
        km_json_set_str(r->st, "discoveryHash", r->hash);
        km_step_eventf(r->ctx, "Normal", "DiscoveryHash",
                       "workers re-join with kubeadm join --discovery-token-ca-cert-hash %s",
                       r->hash);
    }
    return KM_OK;
}

static void result(run *r)
{
    km_step_ctx *ctx = r->ctx;
    long nr = (long)KM_JSON_NUM(r->st, 0, "notReadyCount");
    const char *ph = KM_JSON_STR(r->st, "clusterInfo", "phase");
    char ci[200];
    snprintf(ci, sizeof(ci), "cluster-info %s", ph ? ph : "not checked");
    if (r->problem[0])
        km_step_set_result(ctx, "False", "ClusterInfoUnexpected", "%s", r->problem);
    else if (nr > 0)
        km_step_set_result(ctx, "True", "NodesNotReady",
                           "%s; discovery hash %s; %ld NotReady node(s) (status.nodes.notReady)",
                           ci, r->hash, nr);
    else
        km_step_set_result(ctx, "True", ctx->dry_run ? "DryRun" : "NodesReady",
                           "%s; discovery hash %s; every node Ready", ci, r->hash);
}

static km_status nodes_run(km_step_ctx *ctx, km_err *err)
{
    run r = {.ctx = ctx, .st = ctx->status};
    if (ctx->progress)
        ctx->progress(ctx, "nodes: cluster-info");
    km_status st = current_ca(&r, err);
    if (st == KM_OK)
        st = cluster_info(&r, err);
    if (st == KM_OK)
        st = join_token(&r, err);
    if (st == KM_OK && ctx->progress)
        ctx->progress(ctx, "nodes: NotReady nodes");
    if (st == KM_OK)
        st = not_ready(&r, err);
    if (st == KM_OK)
        result(&r);
    run_cleanup(&r);
    return st;
}

/* ---- verify ---------------------------------------------------------------------------------- */

typedef struct csr_scan {
    cJSON *nodes; /* names of the nodes with a pending kubelet-serving CSR (first NOTREADY_MAX) */
} csr_scan;

static km_status csr_page(const km_kube_page *page, void *user)
{
    csr_scan *s = user;
    const cJSON *c;
    cJSON_ArrayForEach(c, page->items)
    {
        const char *signer = KM_JSON_STR(c, "spec", "signerName");
        char node[256];
        if (!signer || strcmp(signer, KM_CSR_SIGNER_SERVING) != 0 || km_csrcheck_is_decided(c) ||
            !km_csrcheck_node_name(c, node, sizeof(node)) ||
            km_json_array_has_str(s->nodes, node) || cJSON_GetArraySize(s->nodes) >= NOTREADY_MAX)
            continue;
        if (!cJSON_AddItemToArray(s->nodes, cJSON_CreateString(node)))
            return KM_ENOMEM;
    }
    return KM_OK;
}

/* The NotReady nodes with a pending kubelet-serving CSR, "a, b" into out ("" when none). */
static km_status waiting_nodes(km_step_ctx *ctx, char *out, size_t n, km_err *err)
{
    char path[256];
    csr_scan s = {cJSON_CreateArray()};
    out[0] = '\0';
    if (!s.nodes)
        return km_err_set(err, KM_ENOMEM, "nodes: out of memory");
    km_kube_path(path, sizeof(path), "certificates.k8s.io", "v1", NULL,
                 "certificatesigningrequests", NULL, NULL);
    km_status st = km_kube_list(ctx->kube, path, NULL, csr_page, &s, NULL, err);
    const cJSON *it;
    size_t o = 0;
    cJSON_ArrayForEach(it, s.nodes)
    {
        cJSON *node = NULL;
        if (st != KM_OK)
            break;
        km_kube_path(path, sizeof(path), NULL, "v1", NULL, "nodes", it->valuestring, NULL);
        st = get_opt(ctx->kube, path, &node, err);
        if (st == KM_OK && node && km_notready_node(node, NULL) &&
            o + strlen(it->valuestring) + 3 < n)
            o += (size_t)snprintf(out + o, n - o, "%s%s", o ? ", " : "", it->valuestring);
        cJSON_Delete(node);
    }
    cJSON_Delete(s.nodes);
    return st;
}

km_status km_nodes_verify(km_step_ctx *ctx, km_err *err)
{
    char path[256], waiting[400], ci[300] = "";
    char *ca = NULL;
    cJSON *cm = NULL;
    km_clusterinfo_doc doc = {0};
    km_status st = ctx->cluster_ca
                       ? ctx->cluster_ca(ctx, &ca, err)
                       : km_err_set(err, KM_ENOTFOUND, "no current cluster CA is known");
    ci_path(path, sizeof(path), KM_CLUSTERINFO_CONFIGMAP);
    if (st == KM_OK && km_step_bool(ctx, "updateClusterInfo"))
        st = get_opt(ctx->kube, path, &cm, err);
    if (st == KM_OK && cm &&
        (km_clusterinfo_read(KM_JSON_STR(cm, "data", "kubeconfig"), &doc, NULL) != KM_OK ||
         !only_ca(doc.ca_pem, ca)))
        snprintf(ci, sizeof(ci),
                 KM_CLUSTERINFO_NAMESPACE "/" KM_CLUSTERINFO_CONFIGMAP
                                          " does not hold only the current cluster CA");
    if (st == KM_OK)
        st = waiting_nodes(ctx, waiting, sizeof(waiting), err);
    if (st == KM_OK && (ci[0] || waiting[0]))
        km_step_set_result(ctx, "False", ci[0] ? "ClusterInfoStale" : "NodesWaitingOnCSR",
                           "%s%s%s%s", ci, ci[0] && waiting[0] ? "; " : "",
                           waiting[0] ? "NotReady nodes with a pending kubelet-serving CSR: " : "",
                           waiting);
    else if (st == KM_OK)
        km_step_set_result(ctx, "True", "Healed",
                           "cluster-info holds the current CA; no NotReady node waits on a CSR");
    km_clusterinfo_doc_cleanup(&doc);
    cJSON_Delete(cm);
    free(ca);
    return st;
}

km_status km_nodes_waiting(km_kube *kube, const cJSON *not_ready, long *left, char *names, size_t n,
                           km_err *err)
{
    char path[512], buf[400] = "";
    long count = 0;
    size_t o = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, not_ready)
    {
        const char *name = KM_JSON_STR(it, "name");
        cJSON *node = NULL;
        if (!name ||
            km_kube_path(path, sizeof(path), NULL, "v1", NULL, "nodes", name, NULL) != KM_OK)
            continue;
        km_status st = get_opt(kube, path, &node, err);
        if (st != KM_OK)
            return st;
        if (node && km_notready_node(node, NULL)) {
            count++;
            if (o + strlen(name) + 3 < sizeof(buf))
                o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", o ? ", " : "", name);
        }
        cJSON_Delete(node);
    }
    *left = count;
    if (names && n)
        snprintf(names, n, "%s", buf);
    return KM_OK;
}

const km_step_def km_nodes_def = {
    .key = "nodes",
    .flag = "nodes",
    .cond = "NodesRejoinReady",
    .fail_reason = "NodesFailed",
    .fields = fields,
    .run = nodes_run,
    .verify = km_nodes_verify,
};
