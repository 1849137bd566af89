/* heal.c — the changed token Secrets and the check that they healed (see heal.h). */
#include "reconcilers/tokens/heal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/array.h"
#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/strmap.h"
#include "reconcilers/step/step.h"

#define SA_TOKEN_SELECTOR "type=" KM_SA_TOKEN_TYPE
#define NAP_S 0.5
#define RELIST_NAP_MAX_S 5.0 /* the longest pause between re-list rounds (NAP_S per page) */
#define KEY_MAX 600

typedef struct changed {
    char *ns, *name, *sa, *sa_uid, *old_uid;
    int del; /* deleted (else regenerated in place) */
    int done, healed;
    int seen;                /* listed by the current re-list */
    struct changed *next_sa; /* the next deleted Secret of the same ServiceAccount */
} changed;

struct km_tokens_heal {
    changed **all;
    size_t n, cap;
    km_strmap *by_name; /* "ns/name" -> changed */
    km_strmap *by_sa;   /* "ns/serviceaccount" -> first deleted Secret of it (next_sa chain) */
};

/* One check round's context. */
typedef struct round {
    km_tokens_heal *h;
    const km_tokens_heal_opts *o;
    km_err *err;
} round;

static void changed_free(changed *c)
{
    if (!c)
        return;
    free(c->ns);
    free(c->name);
    free(c->sa);
    free(c->sa_uid);
    free(c->old_uid);
    free(c);
}

km_tokens_heal *km_tokens_heal_new(void)
{
    km_tokens_heal *h = calloc(1, sizeof(*h));
    if (h && (!(h->by_name = km_strmap_new()) || !(h->by_sa = km_strmap_new()))) {
        km_tokens_heal_free(h);
        return NULL;
    }
    return h;
}

void km_tokens_heal_free(km_tokens_heal *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        changed_free(h->all[i]);
    free(h->all);
    km_strmap_free(h->by_name);
    km_strmap_free(h->by_sa);
    free(h);
}

size_t km_tokens_heal_len(const km_tokens_heal *h)
{
    return h->n;
}

static char *dup_or_null(const char *s, int *fail)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *fail = 1;
    return d;
}

/* A new entry (strings copied), or NULL when out of memory. */
static changed *changed_new(const char *ns, const char *name, const char *sa, const char *sa_uid,
                            const char *old_uid, int del)
{
    changed *c = calloc(1, sizeof(*c));
    int fail = !c;
    if (c) {
        c->ns = dup_or_null(ns, &fail);
        c->name = dup_or_null(name, &fail);
        c->sa = dup_or_null(sa, &fail);
        c->sa_uid = dup_or_null(sa_uid, &fail);
        c->old_uid = dup_or_null(old_uid, &fail);
        c->del = del && sa;
    }
    if (fail) {
        changed_free(c);
        return NULL;
    }
    return c;
}

km_status km_tokens_heal_add(km_tokens_heal *h, const char *ns, const char *name, const char *sa,
                             const char *sa_uid, const char *old_uid, int del)
{
    char key[KEY_MAX], sakey[KEY_MAX];
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    if (km_strmap_has(h->by_name, key))
        return KM_OK;
    if (km_array_grow(&h->all, h->n, &h->cap, sizeof(*h->all)) != KM_OK)
        return KM_ENOMEM;
    changed *c = changed_new(ns, name, sa, sa_uid, old_uid, del);
    if (!c || km_strmap_put(h->by_name, key, c, NULL) != KM_OK) {
        changed_free(c);
        return KM_ENOMEM;
    }
    h->all[h->n++] = c;
    if (!c->del)
        return KM_OK;
    snprintf(sakey, sizeof(sakey), "%s/%s", ns, sa);
    c->next_sa = km_strmap_get(h->by_sa, sakey);
    if (km_strmap_put(h->by_sa, sakey, c, NULL) != KM_OK) {
        c->next_sa = NULL;
        c->del = 0; /* still verified by name; freed with the set */
        return KM_ENOMEM;
    }
    return KM_OK;
}

static size_t pending(const km_tokens_heal *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        n += !h->all[i]->done;
    return n;
}

/* Keeps an API error for the next round; returns a transport error / cancel. */
static km_status fatal_only(km_status st, const km_err *e, km_err *err)
{
    if (st == KM_OK || st == KM_EAPI)
        return KM_OK;
    if (err)
        *err = *e;
    return st;
}

/* ---- one Secret at a time ------------------------------------------------------------------ */

typedef struct ns_find {
    round *rd;
    const changed *c;
    int healed;
    km_err e;
} ns_find;

/* Delete mode: a new token Secret of the same ServiceAccount that validates. */
static km_status on_ns_page(const km_kube_page *page, void *user)
{
    ns_find *f = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *sa = KM_JSON_STR(it, "metadata", "annotations", KM_SA_ANN_NAME);
        const char *sa_uid = KM_JSON_STR(it, "metadata", "annotations", KM_SA_ANN_UID);
        const char *uid = KM_JSON_STR(it, "metadata", "uid");
        if (f->healed || !sa || strcmp(sa, f->c->sa) != 0 ||
            (f->c->sa_uid && sa_uid && strcmp(sa_uid, f->c->sa_uid) != 0) ||
            (uid && f->c->old_uid && strcmp(uid, f->c->old_uid) == 0))
            continue;
        int valid = 0;
        km_status st = km_tokens_judge_secret(f->rd->o->judge, it, &valid, &f->e);
        if (st != KM_OK && st != KM_EAPI)
            return st;
        f->healed = st == KM_OK && valid;
    }
    return KM_OK;
}

/* One check of c: sets c->done / c->healed when final. */
static km_status check_one(round *rd, changed *c)
{
    char path[KEY_MAX];
    km_err e;
    km_err_clear(&e);
    km_status st;
    if (c->del) {
        km_kube_path(path, sizeof(path), NULL, "v1", c->ns, "secrets", NULL, NULL);
        km_list_opts o = {.field_selector = SA_TOKEN_SELECTOR, .limit = KM_TOKENS_PAGE_LIMIT};
        ns_find f = {.rd = rd, .c = c};
        km_err_clear(&f.e);
        st = km_kube_list(rd->o->kube, path, &o, on_ns_page, &f, NULL, &e);
        if (st != KM_OK && f.e.status != KM_OK)
            e = f.e;
        if (st == KM_OK && f.healed)
            c->done = c->healed = 1;
        return fatal_only(st, &e, rd->err);
    }
    cJSON *s = NULL;
    km_kube_path(path, sizeof(path), NULL, "v1", c->ns, "secrets", c->name, NULL);
    st = km_kube_get(rd->o->kube, path, &s, &e);
    if (st == KM_EAPI && km_err_is_http(&e, 404)) {
        c->done = 1; /* deleted (e.g. its ServiceAccount is gone): cannot heal */
        return KM_OK;
    }
    int valid = 0;
    if (st == KM_OK)
        st = km_tokens_judge_secret(rd->o->judge, s, &valid, &e);
    if (st == KM_OK && valid)
        c->done = c->healed = 1;
    cJSON_Delete(s);
    return fatal_only(st, &e, rd->err);
}

/* ---- a re-list of the token Secrets --------------------------------------------------------- */

/* The next Secret that listed Secret `it` heals: first the remembered one of its own name
 * (regenerated), then the pending deleted Secrets of its ServiceAccount it replaces. */
static changed *next_healed(const cJSON *it, changed **self, changed **chain)
{
    changed *want = *self;
    *self = NULL;
    if (want)
        return want;
    const char *sa_uid = KM_JSON_STR(it, "metadata", "annotations", KM_SA_ANN_UID);
    const char *uid = KM_JSON_STR(it, "metadata", "uid");
    while ((want = *chain)) {
        *chain = want->next_sa;
        if (!want->done && (!want->sa_uid || !sa_uid || strcmp(sa_uid, want->sa_uid) == 0) &&
            !(uid && want->old_uid && strcmp(uid, want->old_uid) == 0))
            return want;
    }
    return NULL;
}

/* One listed Secret: heals what it heals when its token validates (judged once, lazily). */
static km_status relist_item(round *rd, const cJSON *it)
{
    const char *ns = KM_JSON_STR(it, "metadata", "namespace");
    const char *name = KM_JSON_STR(it, "metadata", "name");
    const char *sa = KM_JSON_STR(it, "metadata", "annotations", KM_SA_ANN_NAME);
    char key[KEY_MAX];
    if (!ns || !name)
        return KM_OK;
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    changed *c = km_strmap_get(rd->h->by_name, key);
    changed *self = c && !c->del && !c->done ? c : NULL, *chain = NULL;
    if (c)
        c->seen = 1;
    if (sa) {
        snprintf(key, sizeof(key), "%s/%s", ns, sa);
        chain = km_strmap_get(rd->h->by_sa, key);
    }
    int judged = 0, valid = 0;
    for (changed *want; (want = next_healed(it, &self, &chain));) {
        if (!judged) {
            km_err e;
            km_err_clear(&e);
            judged = 1;
            km_status st = km_tokens_judge_secret(rd->o->judge, it, &valid, &e);
            if (st != KM_OK)
                return fatal_only(st, &e, rd->err); /* API errors: next round */
        }
        if (!valid)
            return KM_OK;
        want->done = want->healed = 1;
    }
    return KM_OK;
}

static km_status on_relist_page(const km_kube_page *page, void *user)
{
    round *rd = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        if (rd->o->cancel && atomic_load(rd->o->cancel))
            return km_err_set(rd->err, KM_ECANCELED, "tokens: cancelled");
        km_status st = relist_item(rd, it);
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

/* One round by re-listing the token Secrets; a regenerated Secret not listed cannot heal. */
static km_status relist(round *rd)
{
    km_err e;
    km_err_clear(&e);
    for (size_t i = 0; i < rd->h->n; i++)
        rd->h->all[i]->seen = 0;
    km_list_opts o = {.field_selector = SA_TOKEN_SELECTOR, .limit = KM_TOKENS_PAGE_LIMIT};
    round sub = {rd->h, rd->o, &e};
    km_status st = km_kube_list(rd->o->kube, "/api/v1/secrets", &o, on_relist_page, &sub, NULL, &e);
    if (st != KM_OK)
        return fatal_only(st, &e, rd->err);
    for (size_t i = 0; i < rd->h->n; i++) {
        changed *c = rd->h->all[i];
        if (!c->del && !c->done && !c->seen)
            c->done = 1;
    }
    return KM_OK;
}

static size_t healed_count(const km_tokens_heal *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        n += h->all[i]->healed;
    return n;
}

km_status km_tokens_heal_check(km_tokens_heal *h, const km_tokens_heal_opts *o, km_err *err)
{
    long timeout = o->timeout_s > 0 ? o->timeout_s : 0;
    double deadline = km_clock_mono() + (double)timeout;
    size_t pages = o->scanned > 0
                       ? (size_t)((o->scanned + KM_TOKENS_PAGE_LIMIT - 1) / KM_TOKENS_PAGE_LIMIT)
                       : 1;
    round rd = {h, o, err};
    /* The tokens controller needs a moment for the Secrets changed last: a first look right
     * away would mostly cost a second round. */
    if (timeout > 0 && km_clock_sleep(NAP_S, o->cancel) != KM_OK)
        return km_err_set(err, KM_ECANCELED, "tokens: cancelled");
    size_t healed = healed_count(h);
    for (;;) {
        km_status st = KM_OK;
        double nap = NAP_S;
        if (pending(h) > pages) {
            /* a re-list costs `pages` requests: pause longer between such rounds */
            nap =
                NAP_S * (double)pages < RELIST_NAP_MAX_S ? NAP_S * (double)pages : RELIST_NAP_MAX_S;
            st = relist(&rd);
        } else {
            for (size_t i = 0; st == KM_OK && i < h->n; i++)
                if (!h->all[i]->done)
                    st = check_one(&rd, h->all[i]);
        }
        if (st != KM_OK)
            return st;
        size_t now_healed = healed_count(h);
        if (now_healed > healed) { /* progress: the wait starts again */
            healed = now_healed;
            deadline = km_clock_mono() + (double)timeout;
            if (o->progress && (st = o->progress(healed, h->n, o->user, err)) != KM_OK)
                return st;
        }
        double left = deadline - km_clock_mono();
        if (pending(h) == 0 || left <= 0)
            return KM_OK;
        if (km_clock_sleep(nap < left ? nap : left, o->cancel) != KM_OK)
            return km_err_set(err, KM_ECANCELED, "tokens: cancelled");
    }
}

long km_tokens_heal_report(const km_tokens_heal *h, cJSON *status, int max)
{
    long healed = 0;
    cJSON_DeleteItemFromObjectCaseSensitive(status, "unhealed");
    for (size_t i = 0; i < h->n; i++) {
        const changed *c = h->all[i];
        char key[KEY_MAX];
        if (c->healed) {
            healed++;
            continue;
        }
        snprintf(key, sizeof(key), "%s/%s", c->ns, c->name);
        km_step_list_add(status, "unhealed", key, max);
    }
    km_json_set_num(status, "healed", (double)healed);
    return (long)h->n - healed;
}
