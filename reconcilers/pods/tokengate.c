/* tokengate.c — the pods step's wait for the token Secrets a namespace's stale pods mount (see
 * tokengate.h). */
#include "reconcilers/pods/tokengate.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "operator/base/strmap.h"
#include "reconcilers/step/retry.h"
#include "reconcilers/tokens/check.h"

#define SEEN_READY ((void *)(uintptr_t)1)
#define SEEN_EMPTY ((void *)(uintptr_t)2)
#define PAGE_LIMIT 500

struct km_pods_gate {
    km_strmap *want;  /* Secret name -> its pod's ServiceAccount (malloc'ed, "" when none) */
    km_strmap *seen;  /* this round: listed token Secret name -> SEEN_READY / SEEN_EMPTY */
    km_strmap *sa_ok; /* this round: ServiceAccount with a listed token Secret holding a token */
};

static int free_val(const char *key, void *val, void *user)
{
    (void)key;
    (void)user;
    free(val);
    return 0;
}

km_pods_gate *km_pods_gate_new(void)
{
    km_pods_gate *g = calloc(1, sizeof(*g));
    if (g && !(g->want = km_strmap_new())) {
        free(g);
        return NULL;
    }
    return g;
}

static void round_reset(km_pods_gate *g)
{
    km_strmap_free(g->seen);
    km_strmap_free(g->sa_ok);
    g->seen = g->sa_ok = NULL;
}

void km_pods_gate_free(km_pods_gate *g)
{
    if (!g)
        return;
    km_strmap_each(g->want, free_val, NULL);
    km_strmap_free(g->want);
    round_reset(g);
    free(g);
}

size_t km_pods_gate_wants(const km_pods_gate *g)
{
    return km_strmap_len(g->want);
}

static km_status want(km_pods_gate *g, const char *name, const char *sa)
{
    if (!name || !*name || km_strmap_has(g->want, name))
        return KM_OK;
    char *v = strdup(sa ? sa : "");
    if (!v || km_strmap_put(g->want, name, v, NULL) != KM_OK) {
        free(v);
        return KM_ENOMEM;
    }
    return KM_OK;
}

km_status km_pods_gate_want_pod(km_pods_gate *g, const cJSON *pod)
{
    const char *sa = KM_JSON_STR(pod, "spec", "serviceAccountName");
    const cJSON *vol, *src;
    cJSON_ArrayForEach(vol, KM_JSON_AT(pod, "spec", "volumes"))
    {
        if (want(g, KM_JSON_STR(vol, "secret", "secretName"), sa) != KM_OK)
            return KM_ENOMEM;
        cJSON_ArrayForEach(src, KM_JSON_AT(vol, "projected", "sources"))
        {
            if (want(g, KM_JSON_STR(src, "secret", "name"), sa) != KM_OK)
                return KM_ENOMEM;
        }
    }
    return KM_OK;
}

km_status km_pods_gate_see_one(km_pods_gate *g, const cJSON *secret)
{
    if (!g->seen && !(g->seen = km_strmap_new()))
        return KM_ENOMEM;
    if (!g->sa_ok && !(g->sa_ok = km_strmap_new()))
        return KM_ENOMEM;
    const char *name = KM_JSON_STR(secret, "metadata", "name");
    const char *sa =
        KM_JSON_STR(secret, "metadata", "annotations", "kubernetes.io/service-account.name");
    const char *token = KM_JSON_STR(secret, "data", "token");
    int ready = token && *token;
    if (!name)
        return KM_OK;
    if (km_strmap_put(g->seen, name, ready ? SEEN_READY : SEEN_EMPTY, NULL) != KM_OK ||
        (ready && sa && km_strmap_put(g->sa_ok, sa, SEEN_READY, NULL) != KM_OK))
        return KM_ENOMEM;
    return KM_OK;
}

km_status km_pods_gate_see(km_pods_gate *g, const cJSON *items)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        if (km_pods_gate_see_one(g, it) != KM_OK)
            return KM_ENOMEM;
    }
    return KM_OK;
}

typedef struct judge {
    km_pods_gate *g;
    size_t missing;
    char *first;
    size_t n;
} judge;

/* A wanted Secret that is not listed: a legacy token volume of its ServiceAccount
 * ("<sa>-token-*") waits for another token Secret of that ServiceAccount with a token. */
static int unlisted_ready(const km_pods_gate *g, const char *name, const char *sa)
{
    size_t n = strlen(sa);
    if (!n || strncmp(name, sa, n) != 0 || strncmp(name + n, "-token-", 7) != 0)
        return 1;
    return g->sa_ok && km_strmap_has(g->sa_ok, sa);
}

static int judge_one(const char *name, void *val, void *user)
{
    judge *j = user;
    void *seen = j->g->seen ? km_strmap_get(j->g->seen, name) : NULL;
    int ready = seen ? seen == SEEN_READY : unlisted_ready(j->g, name, val);
    if (!ready && j->missing++ == 0 && j->first)
        snprintf(j->first, j->n, "%s", name);
    return 0;
}

size_t km_pods_gate_missing(km_pods_gate *g, char *first, size_t n)
{
    judge j = {.g = g, .first = n ? first : NULL, .n = n};
    if (j.first)
        first[0] = '\0';
    km_strmap_each(g->want, judge_one, &j);
    round_reset(g);
    return j.missing;
}

static km_status on_page(const km_kube_page *page, void *user)
{
    return km_pods_gate_see(user, page->items);
}

void km_pods_gate_progress_start(km_pods_gate_progress *p)
{
    p->best = (size_t)-1;
    p->since = km_clock_mono();
}

km_status km_pods_gate_progress_poll(km_pods_gate_progress *p, km_status st, const km_err *e,
                                     const char *ns, size_t missing, double stall_s, int *stalled)
{
    if (st != KM_OK) {
        if (!km_retry_transient(st, e))
            return st;
        char eb[512];
        km_log_warn("pods: token Secrets list failed, trying again", "namespace", ns ? ns : "(all)",
                    "error", km_err_str(e, eb, sizeof(eb)));
    } else if (missing < p->best) {
        p->best = missing;
        p->since = km_clock_mono();
    }
    *stalled = km_clock_mono() - p->since >= stall_s;
    return KM_OK;
}

km_status km_pods_gate_wait(km_pods_gate *g, km_kube *kube, const char *ns, double stall_s,
                            const atomic_int *cancel, size_t *missing, char *first, size_t n,
                            km_err *err)
{
    char path[512];
    km_list_opts o = {.field_selector = "type=" KM_SA_TOKEN_TYPE, .limit = PAGE_LIMIT};
    km_pods_gate_progress pr;
    size_t left = 0;
    km_pods_gate_progress_start(&pr);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets", ns);
    for (;;) {
        km_err e;
        km_err_clear(&e);
        int stalled = 0;
        km_status listed = km_kube_list(kube, path, &o, on_page, g, NULL, &e);
        if (listed == KM_OK) {
            left = km_pods_gate_missing(g, first, n);
        } else {
            round_reset(g);
            if (pr.best == (size_t)-1)
                left = km_pods_gate_wants(g);
        }
        km_status st = km_pods_gate_progress_poll(&pr, listed, &e, ns, left, stall_s, &stalled);
        if (st != KM_OK) {
            if (err)
                *err = e;
            return st;
        }
        if ((listed == KM_OK && left == 0) || stalled)
            break;
        if (km_clock_sleep(KM_PODS_GATE_POLL_S, cancel) != KM_OK)
            return km_err_set(err, KM_ECANCELED, "pods: cancelled");
    }
    *missing = left;
    return KM_OK;
}

static int reset_one(const char *ns, void *gate, void *user)
{
    (void)ns;
    (void)user;
    round_reset(gate);
    return 0;
}

/* A page of the cluster-wide list: each Secret to the gate of its namespace, if any. */
static km_status on_page_all(const km_kube_page *page, void *user)
{
    const km_strmap *gates = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *ns = KM_JSON_STR(it, "metadata", "namespace");
        km_pods_gate *g = ns ? km_strmap_get(gates, ns) : NULL;
        if (g && km_pods_gate_see_one(g, it) != KM_OK)
            return KM_ENOMEM;
    }
    return KM_OK;
}

km_status km_pods_gates_see_all(km_kube *kube, km_strmap *gates, km_err *err)
{
    km_list_opts o = {.field_selector = "type=" KM_SA_TOKEN_TYPE, .limit = PAGE_LIMIT};
    km_strmap_each(gates, reset_one, NULL);
    km_status st = km_kube_list(kube, "/api/v1/secrets", &o, on_page_all, gates, NULL, err);
    if (st != KM_OK)
        km_strmap_each(gates, reset_one, NULL);
    return st;
}
