/* verify.c — the tokens step's verify hook (see verify.h). */
#include "reconcilers/tokens/verify.h"

#include <stdatomic.h>
#include <stdio.h>

#include "operator/base/json.h"
#include "reconcilers/step/left.h"
#include "reconcilers/tokens/check.h"
#include "reconcilers/tokens/heal.h"

typedef struct vt {
    km_tokens_judge *judge;
    const atomic_int *cancel;
    long valid;
    km_left stale, pending, malformed;
    km_err e; /* the judge's error that stopped the list */
} vt;

/* Judges one Secret into v's counts.  Failure: the judge's error. */
static km_status judge_one(vt *v, const cJSON *s)
{
    char key[512], *token = NULL, why[128];
    snprintf(key, sizeof(key), "%s/%s", KM_JSON_STR(s, "metadata", "namespace"),
             KM_JSON_STR(s, "metadata", "name"));
    switch (km_tokens_precheck(s, &token)) {
    case KM_TOKEN_CHECK:
        break;
    case KM_TOKEN_PENDING:
        km_left_add(&v->pending, key);
        return KM_OK;
    case KM_TOKEN_MALFORMED:
        km_left_add(&v->malformed, key);
        return KM_OK;
    default: /* deleting, unannotated, not a token Secret: the tokens controller's business */
        return KM_OK;
    }
    km_review_verdict verdict = KM_REVIEW_OTHER;
    km_status st = km_tokens_judge_token(v->judge, token, &verdict, why, sizeof(why), &v->e);
    km_tokens_token_free(token);
    if (st != KM_OK)
        return st;
    if (verdict == KM_REVIEW_VALID)
        v->valid++;
    else if (verdict == KM_REVIEW_STALE)
        km_left_add(&v->stale, key);
    else
        km_left_add(&v->malformed, key);
    return KM_OK;
}

/* One page of token Secrets judged (km_kube_page_fn).  Failure: KM_ECANCELED, the judge's error
 * (details in v->e); the counts so far stay. */
static km_status page(const km_kube_page *pg, void *user)
{
    vt *v = user;
    const cJSON *s;
    if (pg->restarted) /* the list started again: count every Secret once */
        v->valid = 0, v->stale = v->pending = v->malformed = (km_left){0};
    cJSON_ArrayForEach(s, pg->items)
    {
        if (v->cancel && atomic_load(v->cancel))
            return km_err_set(&v->e, KM_ECANCELED, "tokens verify cancelled");
        km_status st = judge_one(v, s);
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

km_status km_tokens_verify(km_step_ctx *ctx, km_err *err)
{
    vt v = {.cancel = ctx->cancel};
    km_err_clear(&v.e);
    km_status st = km_tokens_judge_new(ctx->kube, &v.judge, err);
    if (st != KM_OK)
        return st;
    km_list_opts o = {.field_selector = "type=" KM_SA_TOKEN_TYPE, .limit = KM_TOKENS_PAGE_LIMIT};
    st = km_kube_list(ctx->kube, "/api/v1/secrets", &o, page, &v, NULL, err);
    if (st != KM_OK && v.e.status != KM_OK && err)
        *err = v.e; /* the judge's error, more precise than the list's */
    if (st != KM_OK) {
        km_err_prefix(err, "verify token Secrets");
        km_tokens_judge_free(v.judge);
        return st;
    }
    char a[600], b[600], c[600];
    const char *method = km_tokens_judge_method(v.judge);
    km_left_text(&v.malformed, c, sizeof(c));
    if (v.stale.n || v.pending.n)
        km_step_set_result(ctx, "False", "TokensNotValid",
                           "token Secrets not valid for the current keys (%s): stale %s; without "
                           "a token %s",
                           method, km_left_text(&v.stale, a, sizeof(a)),
                           km_left_text(&v.pending, b, sizeof(b)));
    else
        km_step_set_result(ctx, "True", "TokensValid", "%ld token Secrets valid (%s)%s%s", v.valid,
                           method, v.malformed.n ? "; malformed, left alone: " : "",
                           v.malformed.n ? c : "");
    km_tokens_judge_free(v.judge);
    return KM_OK;
}
