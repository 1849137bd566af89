/* csr.c — the CSR approval step (one pass) and the background approver (a CSR watch). */
#include "reconcilers/csr/csr.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/csr/csrcheck.h"
#include "watch/watcher.h"

#define CSR_PATH "/apis/certificates.k8s.io/v1/certificatesigningrequests"
#define RECENT_MAX 50
#define REPORTED_MAX 10000
#define NODE_PAGE 500

/* What happened to one CSR. */
typedef enum outcome {
    OUT_SKIPPED = 0, /* already decided, gone, or not ours to decide */
    OUT_IGNORED,     /* pending, signer not handled */
    OUT_APPROVED,
    OUT_DENIED,
    OUT_PENDING, /* failed a check, left pending (deny off) */
} outcome;

/* Everything needed to handle one CSR; shared by the step and the approver. */
typedef struct handler {
    km_kube *kube;
    const km_csr_policy *policy;
    int deny;
    int dry_run;
    const cJSON *nodes; /* name -> Node listed for this pass (borrowed); NULL = GET each */
    void (*event)(void *user, const char *type, const char *reason, const char *message);
    void *user;
} handler;

typedef struct result {
    outcome out;
    km_csr_decision d;
    char name[256];
    const char *reason; /* for status/hooks: the failed check or "allChecksPassed" */
} result;

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

/* PUTs csr + a condition to /approval.  KM_OK, or the write's error. */
static km_status write_approval(km_kube *k, const cJSON *csr, const char *type, const char *reason,
                                const char *message, km_err *err)
{
    km_status st = KM_ENOMEM;
    char path[512], now[32];
    const char *name = KM_JSON_STR(csr, "metadata", "name");
    cJSON *body = cJSON_Duplicate(csr, 1);
    if (!body)
        return km_err_set(err, KM_ENOMEM, "csr: out of memory");
    if (km_kube_path(path, sizeof(path), "certificates.k8s.io", "v1", NULL,
                     "certificatesigningrequests", name, "approval") != KM_OK) {
        st = km_err_set(err, KM_EINVAL, "csr: name too long");
        goto out;
    }
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
        st = km_err_set(err, KM_ENOMEM, "csr: out of memory");
        goto out;
    }
    if (km_json_set_str(body, "apiVersion", "certificates.k8s.io/v1") ||
        km_json_set_str(body, "kind", "CertificateSigningRequest") ||
        km_json_set_str(c, "type", type) || km_json_set_str(c, "status", "True") ||
        km_json_set_str(c, "reason", reason) || km_json_set_str(c, "message", message) ||
        km_json_set_str(c, "lastUpdateTime", now)) {
        st = km_err_set(err, KM_ENOMEM, "csr: out of memory");
        goto out;
    }
    st = km_kube_update(k, path, body, NULL, err);
out:
    cJSON_Delete(body);
    return st;
}

/* Decides csr and acts on it.  *r is filled.  Failure: a GET/PUT error (r->out then SKIPPED). */
static km_status handle(const handler *h, const cJSON *csr_in, result *r, km_err *err)
{
    km_status st = KM_OK;
    cJSON *node = NULL, *fresh = NULL;
    const cJSON *csr = csr_in;
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s",
             KM_JSON_STR(csr, "metadata", "name") ? KM_JSON_STR(csr, "metadata", "name") : "");
    for (int attempt = 0; attempt < 2; attempt++) {
        r->out = OUT_SKIPPED;
        if (km_csrcheck_is_decided(csr))
            goto out;
        const char *signer = KM_JSON_STR(csr, "spec", "signerName");
        if (!km_csrcheck_handles(h->policy, signer)) {
            r->out = OUT_IGNORED;
            r->reason = "signerNotHandled";
            goto out;
        }
        char node_name[256];
        cJSON_Delete(node);
        node = NULL;
        const cJSON *listed = NULL;
        if (signer && strcmp(signer, KM_CSR_SIGNER_SERVING) == 0 &&
            km_csrcheck_node_name(csr, node_name, sizeof(node_name))) {
            listed = h->nodes ? cJSON_GetObjectItemCaseSensitive(h->nodes, node_name) : NULL;
            /* not listed: GET it (created since the list, or not a node at all) */
            if (!listed && (st = get_node(h->kube, node_name, &node, err)) != KM_OK)
                goto out;
        }
        km_csrcheck_decide(h->policy, csr, listed ? listed : node, &r->d);
        int approve = r->d.verdict == KM_CSR_APPROVE;
        r->reason = approve ? "allChecksPassed" : r->d.check;
        if (!approve && !h->deny) {
            r->out = OUT_PENDING;
            goto out;
        }
        r->out = approve ? OUT_APPROVED : OUT_DENIED;
        if (h->dry_run)
            goto out;
        km_err e;
        km_err_clear(&e);
        st = write_approval(h->kube, csr, approve ? "Approved" : "Denied",
                            approve ? "KubemendApproved" : "KubemendDenied", r->d.message, &e);
        if (st == KM_OK)
            goto out;
        r->out = OUT_SKIPPED;
        if (st == KM_EAPI && e.http_code == 404) { /* deleted meanwhile */
            st = KM_OK;
            goto out;
        }
        if (!(st == KM_EAPI && e.http_code == 409) || attempt > 0) {
            if (err)
                *err = e;
            goto out;
        }
        /* stale resourceVersion: re-read and decide again */
        char path[512];
        cJSON_Delete(fresh);
        fresh = NULL;
        if (km_kube_path(path, sizeof(path), "certificates.k8s.io", "v1", NULL,
                         "certificatesigningrequests", r->name, NULL) != KM_OK)
            goto out;
        km_err_clear(&e);
        st = km_kube_get(h->kube, path, &fresh, &e);
        if (st == KM_EAPI && e.http_code == 404) {
            st = KM_OK;
            goto out;
        }
        if (st != KM_OK) {
            if (err)
                *err = e;
            goto out;
        }
        csr = fresh;
    }
out:
    if (st == KM_OK && h->event && r->out >= OUT_APPROVED) {
        char msg[1280];
        const char *dry = h->dry_run ? " (dry run: nothing written)" : "";
        const char *node = r->d.node[0] ? r->d.node : "<none>";
        if (r->out == OUT_APPROVED) {
            snprintf(msg, sizeof(msg), "approved CSR %s of node %s%s", r->name, node, dry);
            h->event(h->user, "Normal", "CSRApproved", msg);
        } else if (r->out == OUT_DENIED) {
            snprintf(msg, sizeof(msg), "denied CSR %s of node %s: %s%s", r->name, node,
                     r->d.message, dry);
            h->event(h->user, "Warning", "CSRDenied", msg);
        } else {
            snprintf(msg, sizeof(msg), "CSR %s of node %s fails %s; left pending (csr.deny is off)",
                     r->name, node, r->d.message);
            h->event(h->user, "Warning", "CSRLeftPending", msg);
        }
    }
    if (st == KM_OK && r->out >= OUT_APPROVED)
        km_log_info(r->out == OUT_APPROVED ? "csr approved"
                    : r->out == OUT_DENIED ? "csr denied"
                                           : "csr left pending",
                    "csr", r->name, "node", r->d.node, "check", r->d.check, "dryRun",
                    h->dry_run ? "true" : "false");
    cJSON_Delete(node);
    cJSON_Delete(fresh);
    return st;
}

static const char *decision_str(outcome o)
{
    switch (o) {
    case OUT_APPROVED:
        return "Approved";
    case OUT_DENIED:
        return "Denied";
    case OUT_PENDING:
        return "Pending";
    default:
        return NULL;
    }
}

/* ---- the step ------------------------------------------------------------------------------ */

static const km_field fields[] = {
    {"enabled", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"windowSeconds", KM_FIELD_INT, 3600, 1, 1e15, NULL},
    {"continuous", KM_FIELD_BOOL, 0, 0, 0, NULL},
    {"deny", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"approveKubeletClient", KM_FIELD_BOOL, 0, 0, 0, NULL},
    {"allowedDNSPatterns", KM_FIELD_REGEXLIST, 0, 0, 50, NULL},
    {"maxExpirationSeconds", KM_FIELD_INT, 31536000, 600, 1e15, NULL},
    KM_FIELD_END,
};

km_status km_csr_policy_from_spec(const cJSON *csr_spec, km_csr_policy **out, km_err *err)
{
    const cJSON *pats = KM_JSON_AT(csr_spec, "allowedDNSPatterns");
    long max_exp = (long)km_schema_num(fields, csr_spec, "maxExpirationSeconds");
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
    cJSON *want;  /* node name -> number of pending serving CSRs naming it */
    cJSON *nodes; /* node name -> Node, the wanted ones found by the list */
    long unfound; /* CSRs whose Node the list has not shown yet */
    long pages;
    int stopped; /* the list was ended early on purpose */
} node_list;

/* Keeps the wanted Nodes of a page.  Ends the list (KM_ECANCELED with nl->stopped) as soon as
 * the pages still to come would cost more than GETting the Nodes not found yet. */
static km_status node_page(const km_kube_page *page, void *user)
{
    node_list *nl = user;
    const cJSON *it;
    nl->pages++;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *name = KM_JSON_STR(it, "metadata", "name");
        const cJSON *w = name ? cJSON_GetObjectItemCaseSensitive(nl->want, name) : NULL;
        if (!w || cJSON_GetObjectItemCaseSensitive(nl->nodes, name))
            continue;
        cJSON *copy = cJSON_Duplicate(it, 1);
        if (!copy || !cJSON_AddItemToObject(nl->nodes, name, copy)) {
            cJSON_Delete(copy);
            return KM_ENOMEM;
        }
        nl->unfound -= (long)w->valuedouble;
    }
    long left = page->remaining >= 0 ? (page->remaining + NODE_PAGE - 1) / NODE_PAGE : nl->pages;
    if (page->remaining != 0 && (nl->unfound <= 0 || left >= nl->unfound)) {
        nl->stopped = 1;
        return KM_ECANCELED;
    }
    return KM_OK;
}

/* Lists the Nodes once (paged) when more pending CSRs need a Node than the list would take
 * pages, keeping only the Nodes they name (*out: name -> Node, caller frees; NULL when not
 * listed, so every CSR GETs its Node).  A refused list (API error) also leaves *out NULL.
 * Fails on ENOMEM, transport errors and cancel. */
static km_status list_nodes(km_kube *k, const km_csr_policy *policy, const cJSON *todo, cJSON **out,
                            km_err *err)
{
    km_status st = KM_ENOMEM;
    node_list nl = {.want = cJSON_CreateObject(), .nodes = cJSON_CreateObject()};
    const cJSON *csr;
    *out = NULL;
    if (!nl.want || !nl.nodes) {
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
        cJSON *w = cJSON_GetObjectItemCaseSensitive(nl.want, name);
        if (w)
            cJSON_SetNumberValue(w, w->valuedouble + 1);
        else if (!cJSON_AddNumberToObject(nl.want, name, 1)) {
            km_err_set(err, st, "csr: out of memory");
            goto out;
        }
        nl.unfound++;
    }
    st = KM_OK;
    if (nl.unfound <= 1) /* one GET at most: no cheaper than a list page */
        goto out;
    km_err e;
    km_err_clear(&e);
    km_list_opts lo = {.limit = NODE_PAGE};
    st = km_kube_list(k, "/api/v1/nodes", &lo, node_page, &nl, NULL, &e);
    if (st != KM_OK && nl.stopped)
        st = KM_OK;
    if (st == KM_EAPI) {
        char buf[768];
        km_log_warn("csr: cannot list nodes, reading them one by one", "error",
                    km_err_str(&e, buf, sizeof(buf)));
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
out:
    cJSON_Delete(nl.want);
    cJSON_Delete(nl.nodes);
    return st;
}

static void step_event(void *user, const char *type, const char *reason, const char *message)
{
    km_step_event(user, type, reason, message);
}

static void add_recent(cJSON *status, const result *r)
{
    cJSON *recent = cJSON_GetObjectItemCaseSensitive(status, "recent");
    if (!cJSON_IsArray(recent)) {
        cJSON_DeleteItemFromObjectCaseSensitive(status, "recent");
        recent = cJSON_AddArrayToObject(status, "recent");
        if (!recent)
            return;
    }
    while (cJSON_GetArraySize(recent) >= RECENT_MAX)
        cJSON_DeleteItemFromArray(recent, 0);
    cJSON *e = cJSON_CreateObject();
    if (!e)
        return;
    if (km_json_set_str(e, "name", r->name) || km_json_set_str(e, "node", r->d.node) ||
        km_json_set_str(e, "decision", decision_str(r->out)) ||
        km_json_set_str(e, "reason", r->reason ? r->reason : "") ||
        !cJSON_AddItemToArray(recent, e))
        cJSON_Delete(e);
}

static void count(km_step_ctx *ctx, const char *counter)
{
    char name[64];
    km_step_counter_add(ctx->status, counter, 1);
    snprintf(name, sizeof(name), "csr_%s_total", counter);
    km_step_count(ctx, name, 1);
}

static km_status csr_step(km_step_ctx *ctx, km_err *err)
{
    km_status st;
    km_csr_policy *policy = NULL;
    cJSON *nodes = NULL;
    step_state s = {.ctx = ctx, .todo = cJSON_CreateArray()};
    long n[5] = {0};
    if (!s.todo)
        return km_err_set(err, KM_ENOMEM, "csr: out of memory");
    if ((st = km_csr_policy_from_spec(ctx->spec, &policy, err)) != KM_OK)
        goto out;
    handler h = {
        .kube = ctx->kube,
        .policy = policy,
        .deny = km_step_bool(ctx, "deny"),
        .dry_run = ctx->dry_run,
        .event = step_event,
        .user = ctx,
    };
    km_list_opts lo = {.limit = 500};
    if ((st = km_kube_list(ctx->kube, CSR_PATH, &lo, collect_page, &s, NULL, err)) != KM_OK) {
        km_err_prefix(err, "list certificatesigningrequests");
        goto out;
    }
    if ((st = list_nodes(ctx->kube, policy, s.todo, &nodes, err)) != KM_OK)
        goto out;
    h.nodes = nodes;
    const cJSON *csr;
    cJSON_ArrayForEach(csr, s.todo)
    {
        if (km_step_cancelled(ctx)) {
            st = km_err_set(err, KM_ECANCELED, "csr step cancelled");
            goto out;
        }
        result r;
        if ((st = handle(&h, csr, &r, err)) != KM_OK) {
            km_err_prefix(err, "csr %s", r.name);
            goto out;
        }
        n[r.out]++;
        switch (r.out) {
        case OUT_IGNORED:
            count(ctx, "ignored");
            break;
        case OUT_APPROVED:
            count(ctx, "approved");
            break;
        case OUT_DENIED:
            count(ctx, "denied");
            break;
        case OUT_PENDING:
            count(ctx, "pending");
            break;
        default:
            break;
        }
        if (r.out >= OUT_APPROVED) {
            add_recent(ctx->status, &r);
            if (ctx->save && !ctx->dry_run && (st = ctx->save(ctx, err)) != KM_OK)
                goto out;
        }
    }
    char text[128];
    snprintf(text, sizeof(text), "csr: %ld approved, %ld denied, %ld pending", n[OUT_APPROVED],
             n[OUT_DENIED], n[OUT_PENDING]);
    if (ctx->progress)
        ctx->progress(ctx, text);
    km_step_set_result(ctx, "True", ctx->dry_run ? "DryRun" : "PassCompleted",
                       "%s%ld CSRs approved, %ld denied, %ld left pending, %ld of other signers "
                       "ignored",
                       ctx->dry_run ? "dry run: would have " : "", n[OUT_APPROVED], n[OUT_DENIED],
                       n[OUT_PENDING], n[OUT_IGNORED]);
    st = KM_OK;
out:
    km_csr_policy_free(policy);
    cJSON_Delete(nodes);
    cJSON_Delete(s.todo);
    return st;
}

/* ---- the background approver --------------------------------------------------------------- */

struct km_csr_approver {
    km_kube *kube; /* clone; used on the watcher thread only */
    km_csr_policy *policy;
    km_watcher *w;
    km_csr_hooks hooks;
    handler h;
    cJSON *reported; /* object: names of CSRs reported as left pending (bounded) */
    atomic_int stop;
    int has_end;
    time_t ends;
    pthread_t timer;
    int timer_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopped; /* guarded by mu */
};

static void approver_event(void *user, const char *type, const char *reason, const char *message)
{
    km_csr_approver *a = user;
    if (a->hooks.event)
        a->hooks.event(type, reason, message, a->hooks.user);
}

/* Watcher thread: one watch event. */
static void on_csr_event(km_event_type type, const cJSON *obj, void *user)
{
    km_csr_approver *a = user;
    if ((type != KM_EV_ADDED && type != KM_EV_MODIFIED) || atomic_load(&a->stop))
        return;
    if (km_csrcheck_is_decided(obj) ||
        !km_csrcheck_handles(a->policy, KM_JSON_STR(obj, "spec", "signerName")))
        return;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    if (name && cJSON_GetObjectItemCaseSensitive(a->reported, name))
        return; /* already reported as left pending */
    result r;
    km_err e;
    km_err_clear(&e);
    if (handle(&a->h, obj, &r, &e) != KM_OK) {
        char buf[768];
        km_log_warn("csr approver: decision not written", "csr", r.name, "error",
                    km_err_str(&e, buf, sizeof(buf)));
        return;
    }
    if (r.out < OUT_APPROVED)
        return;
    if (r.out == OUT_PENDING && name && cJSON_GetArraySize(a->reported) < REPORTED_MAX)
        cJSON_AddTrueToObject(a->reported, name);
    if (a->hooks.decided)
        a->hooks.decided(r.name, r.d.node, decision_str(r.out), r.reason, a->hooks.user);
}

/* Timer thread: stops the watcher at windowEndsAt or when asked. */
static void *timer_main(void *arg)
{
    km_csr_approver *a = arg;
    pthread_mutex_lock(&a->mu);
    while (!a->stopped) {
        if (a->has_end) {
            struct timespec ts = {.tv_sec = a->ends, .tv_nsec = 0};
            if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) != 0 && time(NULL) >= a->ends)
                break;
        } else {
            pthread_cond_wait(&a->cv, &a->mu);
        }
    }
    pthread_mutex_unlock(&a->mu);
    atomic_store(&a->stop, 1);
    km_watcher_stop(a->w);
    return NULL;
}

km_status km_csr_approver_start(km_kube *kube, const cJSON *csr_spec, const km_csr_hooks *hooks,
                                km_csr_approver **out, km_err *err)
{
    km_status st;
    km_csr_approver *a = calloc(1, sizeof(*a));
    if (!a)
        return km_err_set(err, KM_ENOMEM, "csr approver: out of memory");
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_REALTIME);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (hooks)
        a->hooks = *hooks;
    if ((st = km_csr_policy_from_spec(csr_spec, &a->policy, err)) != KM_OK)
        goto fail;
    if (!(a->reported = cJSON_CreateObject())) {
        st = km_err_set(err, KM_ENOMEM, "csr approver: out of memory");
        goto fail;
    }
    if ((st = km_kube_clone(kube, &a->kube, err)) != KM_OK)
        goto fail;
    km_kube_set_cancel(a->kube, &a->stop);
    const char *ends = KM_JSON_STR(csr_spec, "windowEndsAt");
    if (ends && km_clock_parse(ends, &a->ends) == KM_OK)
        a->has_end = 1;
    a->h = (handler){
        .kube = a->kube,
        .policy = a->policy,
        .deny = km_schema_bool(fields, csr_spec, "deny"),
        .dry_run = KM_JSON_BOOL(csr_spec, 0, "dryRun"),
        .event = approver_event,
        .user = a,
    };
    km_watch_opts o;
    km_watch_opts_init(&o);
    o.name = "certificatesigningrequests";
    o.path = CSR_PATH;
    o.on_event = on_csr_event;
    o.user = a;
    km_watch_transport_kube(&o.transport, a->kube);
    if ((st = km_watcher_new(&o, &a->w, err)) != KM_OK)
        goto fail;
    if ((st = km_watcher_start(a->w, err)) != KM_OK)
        goto fail;
    if (pthread_create(&a->timer, NULL, timer_main, a) != 0) {
        st = km_err_set(err, KM_EIO, "csr approver: cannot create a thread");
        goto fail;
    }
    a->timer_started = 1;
    km_log_info("csr approver started", "windowEndsAt", a->has_end ? ends : "", "dryRun",
                a->h.dry_run ? "true" : "false");
    *out = a;
    return KM_OK;
fail:
    km_csr_approver_free(a);
    return st;
}

void km_csr_approver_stop(km_csr_approver *a)
{
    if (!a)
        return;
    atomic_store(&a->stop, 1);
    pthread_mutex_lock(&a->mu);
    a->stopped = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (a->timer_started) {
        pthread_join(a->timer, NULL);
        a->timer_started = 0;
    }
    km_watcher_stop(a->w);
}

int km_csr_approver_running(km_csr_approver *a)
{
    if (!a || atomic_load(&a->stop))
        return 0;
    km_watch_stats s;
    km_watcher_stats(a->w, &s);
    return s.state != KM_WATCH_STOPPED;
}

void km_csr_approver_free(km_csr_approver *a)
{
    if (!a)
        return;
    km_csr_approver_stop(a);
    km_watcher_free(a->w);
    km_kube_free(a->kube);
    cJSON_Delete(a->reported);
    km_csr_policy_free(a->policy);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

const km_step_def km_csr_def = {
    .key = "csr",
    .flag = "csr",
    .cond = "CSRApprovalWindow",
    .fail_reason = "CSRFailed",
    .fields = fields,
    .run = csr_step,
};
