/* tokens.c — the tokens step (see tokens.h): one pass over the token Secrets, page by page,
 * fixing the stale ones (reconcilers/tokens/check.h judges, heal.h verifies). */
#include "reconcilers/tokens/tokens.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/num.h"
#include "operator/base/log.h"
#include "operator/kube/pool.h"
#include "reconcilers/bridge/cluster.h"
#include "reconcilers/bridge/kid.h"
#include "reconcilers/tokens/check.h"
#include "reconcilers/step/retry.h"
#include "reconcilers/tokens/heal.h"
#include "reconcilers/tokens/replace.h"
#include "reconcilers/tokens/verify.h"

#define SA_TOKEN_SELECTOR "type=" KM_SA_TOKEN_TYPE
#define LIST_MAX 50
#define VERIFY_MARK "verify"
#define CONFLICTS_MAX 10    /* re-decisions of one Secret after conflicts (and the deadline) */
#define PROGRESS_SAVE_S 2.0 /* the verification's progress persisted at most this often */
#define FIRST_NS "kube-system"

/* What the step's run keeps for its settle (km_step_ctx.keep): the Secrets changed, to verify,
 * and how many were not authenticated for a non-key reason. */
typedef struct kept {
    km_tokens_heal *heal;
    long other;
} kept;

typedef struct run {
    km_step_ctx *ctx;
    cJSON *st; /* ctx->status */
    int del;   /* mode Delete */
    km_tokens_judge *judge;
    km_tokens_heal *heal; /* the Secrets changed, to verify */
    char *marker;         /* resume marker ("ns/name"), NULL = none */
    const char *skip_ns;  /* the namespace already listed (FIRST_NS), skipped in the next list */
    int counting;         /* 0 while re-listing Secrets up to the marker */
    long other;           /* not authenticated for a non-key reason */
    char last[512];       /* key of the last Secret handled */
    km_err *err;          /* the page callback's error output */
    double saved_at;      /* when the verification's progress was last persisted */
    /* The writes of a page run in a bounded window (spec.tokens.maxInFlight, operator/kube/
     * pool.h); the pool is drained before the page's resume marker is saved.  lock guards what
     * the writers share: the status object (st), the judge, the heal set, counters, Events. */
    km_pool *pool;
    pthread_mutex_t lock;
    char signing_kid[96]; /* while bridged: the key new tokens are signed with (bridge/kid.h) */
    int no_replace;       /* replacing was refused (403): regenerate in place (under lock) */
} run;

static void event(run *r, const char *type, const char *reason, const char *msg)
{
    km_step_event(r->ctx, type, reason, msg);
}

static void count(run *r, const char *name, long d)
{
    km_step_count(r->ctx, name, d);
}

static void add(run *r, const char *key, long d)
{
    km_step_counter_add(r->st, key, d);
}

static long num(const run *r, const char *key)
{
    return KM_JSON_LONG(r->st, 0, key);
}

static void set_num(run *r, const char *key, long v)
{
    km_json_set_num(r->st, key, (double)v);
}

static void secret_path(char *buf, size_t n, const char *ns, const char *name)
{
    km_kube_path(buf, n, NULL, "v1", ns, "secrets", name, NULL);
}

static int fatal(km_status st)
{
    return st != KM_OK && st != KM_EAPI;
}

/* Mode Delete: 1 when the Secret's ServiceAccount lists it in .secrets — an auto-generated
 * token Secret that a < 1.24 tokens controller recreates.  A Secret it does not list
 * (user-created, or the ServiceAccount is gone) would be lost for good, so it is regenerated in
 * place instead.  Fails only on transport errors. */
static km_status sa_references(run *r, km_kube *kube, const cJSON *s, int *out, km_err *err)
{
    const char *ns = KM_JSON_STR(s, "metadata", "namespace");
    const char *name = KM_JSON_STR(s, "metadata", "name");
    const char *sa = KM_JSON_STR(s, "metadata", "annotations", KM_SA_ANN_NAME);
    char path[600];
    km_kube_path(path, sizeof(path), NULL, "v1", ns, "serviceaccounts", sa, NULL);
    cJSON *obj = NULL;
    km_err e;
    km_err_clear(&e);
    km_retry rt;
    km_retry_init(&rt, 0, r->ctx->cancel);
    km_status st;
    while ((st = km_kube_get(kube, path, &obj, &e)) != KM_OK && km_retry_again(&rt, st, &e, path))
        km_err_clear(&e);
    *out = 0;
    if (st != KM_OK && st != KM_EAPI) {
        if (err)
            *err = e;
        return st;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, KM_JSON_AT(obj, "secrets"))
    {
        const char *n = KM_JSON_STR(it, "name");
        if (n && strcmp(n, name) == 0)
            *out = 1;
    }
    cJSON_Delete(obj);
    return KM_OK;
}

/* Applies the fix once (del: DELETE, else the guarded patch).  *conflict = 1 when the Secret
 * changed under us (re-read). */
static km_status fix_once(km_kube *kube, const cJSON *s, int del, int *conflict, km_err *err)
{
    const char *ns = KM_JSON_STR(s, "metadata", "namespace");
    const char *name = KM_JSON_STR(s, "metadata", "name");
    const char *rv = KM_JSON_STR(s, "metadata", "resourceVersion");
    const char *uid = KM_JSON_STR(s, "metadata", "uid");
    char path[600];
    secret_path(path, sizeof(path), ns, name);
    km_status st;
    *conflict = 0;
    if (del) {
        km_delete_opts o;
        km_delete_opts_init(&o);
        o.uid = uid;
        o.resource_version = rv;
        st = km_kube_delete(kube, path, &o, NULL, err);
        if (st == KM_EAPI && km_err_is_http(err, 404))
            return KM_ENOTFOUND;
        if (st == KM_EAPI && km_err_is_http(err, 409))
            *conflict = 1;
        return st;
    }
    cJSON *patch = cJSON_CreateArray();
    cJSON *t = cJSON_CreateObject();
    cJSON *rm = cJSON_CreateObject();
    char *text = NULL;
    if (!patch || !t || !rm || !cJSON_AddItemToArray(patch, t)) {
        cJSON_Delete(t);
        cJSON_Delete(rm);
        cJSON_Delete(patch);
        return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    }
    if (!cJSON_AddItemToArray(patch, rm)) {
        cJSON_Delete(rm);
        cJSON_Delete(patch);
        return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    }
    if (cJSON_AddStringToObject(t, "op", "test") &&
        cJSON_AddStringToObject(t, "path", "/metadata/resourceVersion") &&
        cJSON_AddStringToObject(t, "value", rv ? rv : "") &&
        cJSON_AddStringToObject(rm, "op", "remove") &&
        cJSON_AddStringToObject(rm, "path", "/data/token"))
        text = km_json_print(patch);
    cJSON_Delete(patch);
    if (!text)
        return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    st = km_kube_patch(kube, path, KM_PATCH_JSON, text, NULL, err);
    free(text);
    if (st == KM_EAPI && km_err_is_http(err, 404))
        return KM_ENOTFOUND;
    /* 409, or 422 from the failed "test" (or from "remove" when the token is already gone): the
     * patch itself is always well-formed, so re-read and decide again. */
    if (st == KM_EAPI && (km_err_is_http(err, 409) || km_err_is_http(err, 422)))
        *conflict = 1;
    return st;
}

/* Applies the fix, retrying transient failures until the unit's deadline (retry.h): both writes
 * are guarded (resourceVersion precondition), so a retry of a write that did apply answers 409 /
 * 422 and the Secret is re-read.  *conflict as fix_once. */
static km_status fix(run *r, km_kube *kube, const cJSON *s, int del, int *conflict, km_err *err)
{
    km_retry rt;
    km_status st;
    km_retry_init(&rt, 0, r->ctx->cancel);
    while ((st = fix_once(kube, s, del, conflict, err)) != KM_OK &&
           km_retry_again(&rt, st, err, KM_JSON_STR(s, "metadata", "name")))
        km_err_clear(err);
    return st;
}

/* Judges one Secret (cur).  *stale = 1 when its token is stale, *bridged = 1 too when the
 * token is valid only through the bridge; everything else is counted here (malformed, skipped,
 * failed: only while counting, except a refused review).  Fails only on transport errors,
 * cancel or ENOMEM. */
static km_status classify(run *r, const cJSON *cur, const char *key, int counting, int *stale,
                          int *bridged_out, km_err *err)
{
    char *token = NULL;
    *stale = 0;
    *bridged_out = 0;
    km_token_check c = km_tokens_precheck(cur, &token);
    if (c == KM_TOKEN_MALFORMED && counting) {
        char msg[700];
        add(r, "malformed", 1);
        km_step_list_add(r->st, "malformedSecrets", key, LIST_MAX);
        snprintf(msg, sizeof(msg), "Secret %s: data.token is not a well-formed JWT; left unchanged",
                 key);
        event(r, "Warning", "MalformedToken", msg);
        km_log_warn("tokens: malformed token", "secret", key);
    }
    if (c != KM_TOKEN_CHECK) {
        if (c != KM_TOKEN_MALFORMED && counting)
            add(r, "skipped", 1);
        return KM_OK;
    }
    km_review_verdict v = KM_REVIEW_VALID;
    char why[256];
    km_retry rt;
    km_retry_init(&rt, 0, r->ctx->cancel);
    km_status st;
    while ((st = km_tokens_judge_token(r->judge, token, &v, why, sizeof(why), err)) != KM_OK &&
           km_retry_again(&rt, st, err, key))
        km_err_clear(err);
    /* Valid only through the bridge (an old key handed back to the server): still stale. */
    int bridged = km_bridge_classify(token, r->signing_kid) == KM_BRIDGE_OLD;
    km_tokens_token_free(token);
    if (st == KM_OK && v == KM_REVIEW_VALID && bridged) {
        v = KM_REVIEW_STALE;
        *bridged_out = 1;
        if (counting)
            add(r, "bridged", 1);
    }
    if (st != KM_OK) {
        if (fatal(st))
            return st;
        /* The TokenReview itself was refused (403 ...): count as failed, go on. */
        char eb[600];
        km_log_warn("tokens: cannot judge token", "secret", key, "error",
                    km_err_str(err, eb, sizeof(eb)));
        add(r, "failed", 1);
        return KM_OK;
    }
    if (v == KM_REVIEW_MALFORMED || v == KM_REVIEW_OTHER) {
        if (counting && v == KM_REVIEW_MALFORMED) {
            add(r, "malformed", 1);
            km_step_list_add(r->st, "malformedSecrets", key, LIST_MAX);
        } else if (counting) {
            add(r, "skipped", 1);
            r->other++;
        }
        km_log_warn("tokens: token not authenticated for a reason a new token would not fix",
                    "secret", key, "reason", why);
    }
    *stale = v == KM_REVIEW_STALE;
    return KM_OK;
}

/* A fixed Secret: counted, reported and remembered for verification. */
static km_status fixed(run *r, const cJSON *cur, const char *key, int del, km_err *err)
{
    pthread_mutex_lock(&r->lock);
    km_status st = KM_OK;
    add(r, del ? "deleted" : "regenerated", 1);
    count(r, del ? "tokens_deleted_total" : "tokens_regenerated_total", 1);
    km_step_list_add(r->st, "changed", key, LIST_MAX);
    km_log_info(del ? "tokens: deleted stale token Secret"
                    : "tokens: removed stale token (controller writes a new one)",
                "secret", key);
    if (km_tokens_heal_add(r->heal, KM_JSON_STR(cur, "metadata", "namespace"),
                           KM_JSON_STR(cur, "metadata", "name"),
                           KM_JSON_STR(cur, "metadata", "annotations", KM_SA_ANN_NAME),
                           KM_JSON_STR(cur, "metadata", "annotations", KM_SA_ANN_UID),
                           KM_JSON_STR(cur, "metadata", "uid"), del) != KM_OK)
        st = km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    pthread_mutex_unlock(&r->lock);
    return st;
}

/* A stale Secret replaced while bridged (replace.h): counted, reported and its replacement
 * remembered for verification. */
static km_status replaced(run *r, const cJSON *cur, const char *key, const char *rname, km_err *err)
{
    const char *ns = KM_JSON_STR(cur, "metadata", "namespace");
    char rkey[600];
    snprintf(rkey, sizeof(rkey), "%s/%s", ns, rname);
    pthread_mutex_lock(&r->lock);
    km_status st = KM_OK;
    add(r, "replaced", 1);
    count(r, "tokens_replaced_total", 1);
    km_step_list_add(r->st, "changed", rkey, LIST_MAX);
    km_log_info("tokens: replaced a bridged token Secret (kept until no pod refers to it)",
                "secret", key, "replacement", rname);
    if (km_tokens_heal_add(
            r->heal, ns, rname, KM_JSON_STR(cur, "metadata", "annotations", KM_SA_ANN_NAME),
            KM_JSON_STR(cur, "metadata", "annotations", KM_SA_ANN_UID), NULL, 0) != KM_OK)
        st = km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    pthread_mutex_unlock(&r->lock);
    return st;
}

/* While bridged, mode Regenerate: replaces the Secret instead (replace.h).  *done = 1 when it
 * was replaced; 0 when it cannot be (regenerated in place then).  Fails only on transport
 * errors or ENOMEM; an API error is logged and the Secret regenerated in place. */
static km_status try_replace(run *r, km_kube *kube, const cJSON *cur, const char *key, int *done,
                             km_err *err)
{
    char rname[300], eb[600];
    km_err e;
    km_err_clear(&e);
    km_retry rt;
    km_retry_init(&rt, 0, r->ctx->cancel);
    km_status st;
    *done = 0;
    pthread_mutex_lock(&r->lock);
    int refused = r->no_replace;
    pthread_mutex_unlock(&r->lock);
    if (refused)
        return KM_OK;
    while ((st = km_tokens_replace(kube, cur, done, rname, sizeof(rname), &e)) != KM_OK &&
           km_retry_again(&rt, st, &e, key))
        km_err_clear(&e);
    if (st == KM_OK)
        return *done ? replaced(r, cur, key, rname, err) : KM_OK;
    if (fatal(st)) {
        if (err)
            *err = e;
        return st;
    }
    if (km_err_is_http(&e, 403)) {
        pthread_mutex_lock(&r->lock);
        refused = r->no_replace;
        r->no_replace = 1;
        pthread_mutex_unlock(&r->lock);
        if (!refused)
            km_log_warn("tokens: not allowed to create token Secrets or patch ServiceAccounts "
                        "(deploy/optional/bridge-replace.yaml grants it): bridged token Secrets "
                        "are regenerated in place, their running pods get 401 until restarted",
                        "error", km_err_str(&e, eb, sizeof(eb)));
        return KM_OK;
    }
    km_log_warn("tokens: cannot replace the bridged token Secret, regenerating it in place",
                "secret", key, "error", km_err_str(&e, eb, sizeof(eb)));
    return KM_OK;
}

/* Re-reads a Secret that changed under our write into *fresh (NULL when it is gone or the read
 * was refused: counted as failed).  Fails only on transport errors. */
static km_status reread(run *r, km_kube *kube, const cJSON *cur, const char *key, cJSON **fresh,
                        km_err *err)
{
    char path[600];
    km_err e;
    km_err_clear(&e);
    secret_path(path, sizeof(path), KM_JSON_STR(cur, "metadata", "namespace"),
                KM_JSON_STR(cur, "metadata", "name"));
    km_retry rt;
    km_retry_init(&rt, 0, r->ctx->cancel);
    km_status st;
    while ((st = km_kube_get(kube, path, fresh, &e)) != KM_OK && km_retry_again(&rt, st, &e, key))
        km_err_clear(&e);
    if (st == KM_OK) {
        km_log_info("tokens: Secret changed meanwhile, deciding again", "secret", key);
        return KM_OK;
    }
    if (fatal(st)) {
        if (err)
            *err = e;
        return st;
    }
    if (!km_err_is_http(&e, 404)) {
        pthread_mutex_lock(&r->lock);
        add(r, "failed", 1);
        pthread_mutex_unlock(&r->lock);
    }
    return KM_OK;
}

/* Fixes a stale Secret.  *again = 1 with *fresh (caller frees) when it changed under us and must
 * be decided once more (attempt: the decisions so far; up to CONFLICTS_MAX, after a pause of rt
 * from the second on, while its deadline allows).  Fails only on transport errors or ENOMEM. */
static km_status fix_stale(run *r, km_kube *kube, const cJSON *cur, const char *key, int bridged,
                           int attempt, km_retry *rt, cJSON **fresh, int *again, km_err *err)
{
    int conflict = 0, del = 0, done = 0;
    km_err e;
    km_err_clear(&e);
    *again = 0;
    if (bridged && !r->del) {
        km_status rs = try_replace(r, kube, cur, key, &done, err);
        if (rs != KM_OK || done)
            return rs;
    }
    km_status st = r->del ? sa_references(r, kube, cur, &del, &e) : KM_OK;
    if (st == KM_OK && r->del && !del)
        km_log_info("tokens: not listed by its ServiceAccount (would not be recreated), "
                    "regenerating in place instead of deleting",
                    "secret", key);
    if (st == KM_OK)
        st = fix(r, kube, cur, del, &conflict, &e);
    if (st == KM_OK)
        return fixed(r, cur, key, del, err);
    if (st == KM_ENOTFOUND) /* gone meanwhile: nothing to fix */
        return KM_OK;
    if (fatal(st)) {
        if (err)
            *err = e;
        return st;
    }
    /* the first conflict is re-read at once, the next ones after a pause */
    if (conflict && attempt < CONFLICTS_MAX && (attempt == 0 || km_retry_wait(rt, key))) {
        st = reread(r, kube, cur, key, fresh, err);
        *again = st == KM_OK && *fresh;
        return st;
    }
    char eb[600];
    km_log_warn("tokens: could not fix stale token", "secret", key, "error",
                km_err_str(&e, eb, sizeof(eb)));
    pthread_mutex_lock(&r->lock);
    add(r, "failed", 1);
    count(r, "tokens_failed_total", 1);
    pthread_mutex_unlock(&r->lock);
    return KM_OK;
}

/* classify under the run's lock (the judge and the counters are shared with the writers). */
static km_status classify_locked(run *r, const cJSON *cur, const char *key, int counting,
                                 int *stale, int *bridged, km_err *err)
{
    pthread_mutex_lock(&r->lock);
    km_status st = classify(r, cur, key, counting, stale, bridged, err);
    pthread_mutex_unlock(&r->lock);
    return st;
}

/* One stale Secret to fix, handed to the pool: a copy of the listed object and its key. */
typedef struct fix_unit {
    run *r;
    cJSON *item;
    int counting;
    int bridged; /* valid only through the bridge (replaced, not regenerated) */
    char key[512];
} fix_unit;

static void fix_unit_free(void *p)
{
    fix_unit *u = p;
    if (u)
        cJSON_Delete(u->item);
    free(u);
}

/* Fixes the Secret of unit u (judged stale) on the worker's client, re-deciding it after
 * conflicts (re-read, judged again) up to CONFLICTS_MAX times.  Takes ownership of u.  Fails
 * only on transport errors, cancel or ENOMEM. */
static km_status fix_one(km_kube *kube, void *p, void *user, km_err *err)
{
    fix_unit *u = p;
    run *r = user;
    km_status st = KM_OK;
    cJSON *fresh = NULL;
    const cJSON *cur = u->item;
    km_retry rt; /* conflicts: re-read and decided again until its deadline */
    km_retry_init(&rt, 0, r->ctx->cancel);
    int bridged = u->bridged;
    for (int attempt = 0;; attempt++) {
        int stale = 1, again = 0;
        if (attempt > 0 &&
            ((st = classify_locked(r, cur, u->key, u->counting, &stale, &bridged, err)) != KM_OK ||
             !stale))
            break;
        cJSON *next = NULL;
        st = fix_stale(r, kube, cur, u->key, bridged, attempt, &rt, &next, &again, err);
        if (next) {
            cJSON_Delete(fresh);
            fresh = next;
            cur = fresh;
        }
        if (st != KM_OK || !again)
            break;
    }
    cJSON_Delete(fresh);
    fix_unit_free(u);
    return st;
}

/* Handles one listed Secret: counted and judged here, a stale one fixed by the pool.  Fails
 * only on transport errors, cancel or ENOMEM (also an earlier fix's, reported by the pool). */
static km_status process(run *r, const cJSON *item, km_err *err)
{
    const char *ns = KM_JSON_STR(item, "metadata", "namespace");
    const char *name = KM_JSON_STR(item, "metadata", "name");
    if (!ns || !name || (r->skip_ns && strcmp(ns, r->skip_ns) == 0))
        return KM_OK;
    fix_unit *u = calloc(1, sizeof(*u));
    if (!u)
        return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    snprintf(u->key, sizeof(u->key), "%s/%s", ns, name);
    snprintf(r->last, sizeof(r->last), "%s", u->key);
    int counting = r->counting, stale = 0, bridged = 0;
    if (!counting && r->marker && strcmp(r->marker, u->key) == 0)
        r->counting = 1; /* the marker itself was counted before */
    pthread_mutex_lock(&r->lock);
    if (counting)
        add(r, "scanned", 1);
    km_status st = classify(r, item, u->key, counting, &stale, &bridged, err);
    if (st == KM_OK && stale) {
        add(r, "stale", 1);
        if (r->ctx->dry_run) {
            km_step_list_add(r->st, "changed", u->key, LIST_MAX);
            km_log_info("tokens: stale token (dry run, not changed)", "secret", u->key);
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (st != KM_OK || !stale || r->ctx->dry_run) {
        free(u);
        return st;
    }
    u->r = r;
    u->counting = counting;
    u->bridged = bridged;
    if (!(u->item = cJSON_Duplicate(item, 1))) {
        free(u);
        return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    }
    return km_pool_submit(r->pool, u, err);
}

/* The current list starts again (an expired continue token, a failed list): what it handed
 * this pass before is not counted again (the marker = the last key handled, when that came from
 * this list and not from the namespace listed before it).  Failure: KM_ENOMEM (r unchanged). */
static km_status list_restarted(run *r)
{
    size_t n = r->skip_ns ? strlen(r->skip_ns) : 0;
    if (!r->last[0] || (n && strncmp(r->last, r->skip_ns, n) == 0 && r->last[n] == '/'))
        return KM_OK;
    char *m = strdup(r->last);
    if (!m)
        return KM_ENOMEM;
    free(r->marker);
    r->marker = m;
    r->counting = 0;
    return KM_OK;
}

static km_status on_page(const km_kube_page *page, void *user)
{
    run *r = user;
    if (page->restarted && list_restarted(r) != KM_OK)
        return km_err_set(r->err, KM_ENOMEM, "tokens: out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        if (km_step_cancelled(r->ctx))
            return km_err_set(r->err, KM_ECANCELED, "tokens: cancelled");
        km_status st = process(r, it, r->err);
        if (st != KM_OK)
            return st;
    }
    /* every write of the page finished before its marker is saved */
    km_status st = km_pool_wait(r->pool, r->err);
    if (st != KM_OK)
        return st;
    if (r->last[0])
        km_json_set_str(r->st, "continue", r->last);
    if (r->ctx->progress) {
        char p[128];
        snprintf(p, sizeof(p), "tokens: %ld scanned, %ld stale", num(r, "scanned"),
                 num(r, "stale"));
        r->ctx->progress(r->ctx, p);
    }
    return km_step_save(r->ctx, r->err);
}

/* One list of the pass (path: the collection).  A list that fails transiently (after the
 * client's own retries) is listed again until the unit's deadline, without counting again what
 * this pass has seen (as after an expired continue token).  Failure: the list's or a page's
 * error. */
static km_status scan_list(run *r, const char *path, km_err *err)
{
    km_list_opts o = {.field_selector = SA_TOKEN_SELECTOR, .limit = KM_TOKENS_PAGE_LIMIT};
    km_retry rt;
    km_status st;
    km_retry_init(&rt, 0, r->ctx->cancel);
    while ((st = km_kube_list(r->ctx->kube, path, &o, on_page, r, NULL, err)) != KM_OK &&
           km_retry_again(&rt, st, err, "token Secrets list")) {
        km_err_clear(err);
        if (list_restarted(r) != KM_OK)
            return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    }
    return st;
}

/* The pass over the token Secrets: FIRST_NS's first (the tokens controller refills in the order
 * of the writes, and the pods step restarts kube-system first), then every other namespace's
 * from the cluster-wide list.  The keys keep that order, so the resume marker works across both
 * lists.  Failure: scan_list's. */
static km_status scan(run *r, km_err *err)
{
    km_status st = scan_list(r, "/api/v1/namespaces/" FIRST_NS "/secrets", err);
    r->skip_ns = FIRST_NS;
    if (st == KM_OK)
        st = scan_list(r, "/api/v1/secrets", err);
    r->skip_ns = NULL;
    return st;
}

/* Loads status.changed into the verification set (resume), mode Regenerate only: in mode
 * Delete the ServiceAccount of an already deleted Secret is not known any more, so Secrets
 * changed before the restart are not verified again (logged). */
static km_status preload_changed(run *r)
{
    const cJSON *it;
    if (r->del || r->ctx->dry_run)
        return KM_OK;
    cJSON_ArrayForEach(it, KM_JSON_AT(r->st, "changed"))
    {
        if (!cJSON_IsString(it))
            continue;
        const char *slash = strchr(it->valuestring, '/');
        if (!slash)
            continue;
        char ns[256];
        snprintf(ns, sizeof(ns), "%.*s", (int)(slash - it->valuestring), it->valuestring);
        km_status st = km_tokens_heal_add(r->heal, ns, slash + 1, NULL, NULL, NULL, 0);
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

static void reset_pass(run *r)
{
    static const char *const keys[] = {"scanned",  "stale",    "regenerated",      "deleted",
                                       "failed",   "skipped",  "malformed",        "healed",
                                       "changed",  "unhealed", "malformedSecrets", "continue",
                                       "replaced", "retired",  "retiring"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(r->st, keys[i]);
    static const char *const zero[] = {"scanned",   "stale",   "regenerated", "deleted", "failed",
                                       "malformed", "skipped", "healed",      "replaced"};
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
        set_num(r, zero[i], 0);
}

/* Appends up to max entries of the string array key as "a, b, c (+N more)". */
static void list_text(const cJSON *st, const char *key, long total, char *buf, size_t n)
{
    size_t o = 0;
    int i = 0;
    const cJSON *it;
    buf[0] = '\0';
    cJSON_ArrayForEach(it, KM_JSON_AT(st, key))
    {
        if (!cJSON_IsString(it) || o + strlen(it->valuestring) + 16 >= n)
            break;
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", it->valuestring);
        i++;
    }
    if (total > i && o + 24 < n)
        snprintf(buf + o, n - o, " (+%ld more)", total - i);
}

static void finish(run *r)
{
    km_step_ctx *ctx = r->ctx;
    const char *method = KM_JSON_STR(r->st, "method");
    long scanned = num(r, "scanned"), stale = num(r, "stale"), failed = num(r, "failed");
    long deleted = num(r, "deleted"), regenerated = num(r, "regenerated");
    long repl = num(r, "replaced");
    long changed = deleted + regenerated + repl;
    char how[160];
    if (repl)
        snprintf(how, sizeof(how),
                 "changed (%ld replaced while bridged, the old ones kept until no pod refers to "
                 "them: %ld retired, %ld waiting; %ld regenerated, %ld deleted)",
                 repl, num(r, "retired"), num(r, "retiring"), regenerated, deleted);
    else if (deleted && regenerated)
        snprintf(how, sizeof(how), "changed (%ld deleted and recreated, %ld regenerated)", deleted,
                 regenerated);
    else
        snprintf(how, sizeof(how), "%s", deleted ? "deleted and recreated" : "regenerated");
    long malformed = num(r, "malformed"), skipped = num(r, "skipped");
    char extra[160] = "";
    if (malformed || r->other)
        snprintf(extra, sizeof(extra), "; %ld malformed (left unchanged)%s", malformed,
                 r->other ? "; some not authenticated for other reasons (skipped)" : "");
    char names[360];
    if (ctx->dry_run) {
        list_text(r->st, "changed", stale, names, sizeof(names));
        km_step_set_result(ctx, "True", "DryRun",
                           "dry run (%s): %ld of %ld token Secrets are stale and would be %s%s%s%s",
                           method, stale, scanned, r->del ? "deleted" : "regenerated",
                           stale ? ": " : "", names, extra);
        return;
    }
    long unhealed = (long)km_tokens_heal_len(r->heal) - num(r, "healed");
    if (unhealed > 0) {
        list_text(r->st, "unhealed", unhealed, names, sizeof(names));
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "%ld token Secret(s) did not get a valid token (none healed for %lds, "
                 "spec.tokens.verifyTimeoutSeconds): %s",
                 unhealed, km_step_int(ctx, "verifyTimeoutSeconds"), names);
        event(r, "Warning", "TokensNotHealed", msg);
        km_step_set_result(ctx, "False", "NotHealed", "%s%s%s", msg,
                           r->del ? " (clusters >= 1.24 do not recreate deleted token Secrets; "
                                    "use mode Regenerate)"
                                  : "",
                           extra);
        return;
    }
    if (failed > 0) {
        km_step_set_result(ctx, "False", "ChangeFailed",
                           "%ld stale token Secret(s) could not be fixed (see the operator log); "
                           "%ld %s (%s)%s",
                           failed, changed, how, method, extra);
        return;
    }
    if (changed > 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%ld stale token Secret(s) %s and verified (%s), %ld scanned",
                 changed, how, method, scanned);
        const char *reason = repl ? "Replaced" : deleted ? "Deleted" : "Regenerated";
        event(r, "Normal",
              repl      ? "TokensReplaced"
              : deleted ? "TokensDeleted"
                        : "TokensRegenerated",
              msg);
        km_step_set_result(ctx, "True", reason, "%s%s", msg, extra);
        return;
    }
    km_step_set_result(ctx, "True", "NoStaleTokens", "%ld token Secrets scanned (%s), none stale%s",
                       scanned, method, extra);
    (void)skipped;
}

/* Resume or a fresh pass, from status.tokens.continue.  *verify_only when only the
 * verification is left.  Fails on ENOMEM. */
static km_status start_pass(run *r, int *verify_only, km_err *err)
{
    const char *cont = KM_JSON_STR(r->st, "continue");
    *verify_only = cont && strcmp(cont, VERIFY_MARK) == 0;
    if (cont && *cont && !*verify_only) {
        if (!(r->marker = strdup(cont)))
            return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
        r->counting = 0;
        km_log_info("tokens: resuming", "after", r->marker);
    } else if (!*verify_only) {
        reset_pass(r);
    }
    if (cont && *cont && r->del)
        km_log_warn("tokens: resumed in mode Delete: Secrets deleted before the restart are not "
                    "verified again");
    if (cont && *cont && preload_changed(r) != KM_OK)
        return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    return KM_OK;
}

/* The verification's progress: status.tokens.healed and the progress text ("tokens: verifying,
 * 726/1053 healed", `kubectl get crec`), persisted at most every PROGRESS_SAVE_S. */
static km_status heal_progress(size_t healed, size_t total, void *user, km_err *err)
{
    run *r = user;
    char p[128];
    set_num(r, "healed", (long)healed);
    snprintf(p, sizeof(p), "tokens: verifying, %zu/%zu healed", healed, total);
    if (r->ctx->progress)
        r->ctx->progress(r->ctx, p);
    double now = km_clock_mono();
    if (healed < total && now - r->saved_at < PROGRESS_SAVE_S)
        return KM_OK;
    r->saved_at = now;
    return km_step_save(r->ctx, err);
}

/* While the server trusts more than one key: the signing key's kid (reconcilers/bridge), so that
 * tokens valid only through the bridge are regenerated too (status.tokens.bridged). */
static km_status bridge_start(run *r, int verify_only, km_err *err)
{
    if (!verify_only && r->counting)
        cJSON_DeleteItemFromObjectCaseSensitive(r->st, "bridged");
    km_status st = km_bridge_probe(r->ctx->kube, r->signing_kid, sizeof(r->signing_kid), err);
    if (st == KM_OK && r->signing_kid[0])
        km_log_info("tokens: the API server trusts an old key (bridge): tokens of other keys "
                    "are regenerated",
                    "signingKid", r->signing_kid);
    return st;
}

/* Waits for the changed Secrets to heal (status.tokens.continue = "verify" meanwhile). */
static km_status verify(run *r, km_err *err)
{
    km_json_set_str(r->st, "continue", VERIFY_MARK);
    if (r->ctx->progress)
        r->ctx->progress(r->ctx, "tokens: verifying new tokens");
    km_status st = km_step_save(r->ctx, err);
    km_tokens_heal_opts o = {
        .kube = r->ctx->kube,
        .judge = r->judge,
        .timeout_s = km_step_int(r->ctx, "verifyTimeoutSeconds"),
        .scanned = num(r, "scanned"),
        .cancel = r->ctx->cancel,
        .progress = heal_progress,
        .user = r,
    };
    r->saved_at = km_clock_mono();
    if (st == KM_OK)
        st = km_tokens_heal_check(r->heal, &o, err);
    if (st == KM_OK)
        km_tokens_heal_report(r->heal, r->st, LIST_MAX);
    return st;
}

/* The Secrets replaced while bridged that no pod refers to any more are deleted
 * (status.tokens.retired, .retiring: still referred to).  Only after this recovery replaced
 * some.  Failure: transport errors, cancel, ENOMEM (an API error is logged: the next run or
 * re-verification retires them). */
static km_status retire(run *r, km_err *err)
{
    if (num(r, "replaced") <= 0)
        return KM_OK;
    km_tokens_retired t;
    km_err e;
    km_err_clear(&e);
    km_status st = km_tokens_retire_replaced(r->ctx->kube, 0, r->ctx->cancel, &t, &e);
    if (st == KM_OK) {
        km_tokens_retired_record(r->st, &t);
        return KM_OK;
    }
    if (fatal(st)) {
        if (err)
            *err = e;
        return st;
    }
    char eb[600];
    km_log_warn("tokens: cannot retire the replaced token Secrets yet", "error",
                km_err_str(&e, eb, sizeof(eb)));
    return KM_OK;
}

static void kept_free(void *p)
{
    kept *k = p;
    if (k)
        km_tokens_heal_free(k->heal);
    free(k);
}

/* Sets up r for a run or settle of the step.  Failure: KM_ENOMEM (r must still be cleaned up). */
static km_status run_init(run *r, km_step_ctx *ctx, km_err *err)
{
    memset(r, 0, sizeof(*r));
    r->ctx = ctx;
    r->st = ctx->status;
    r->counting = 1;
    r->err = err;
    r->del = strcmp(km_step_str(ctx, "mode"), "Delete") == 0;
    pthread_mutex_init(&r->lock, NULL);
    if (!(r->heal = km_tokens_heal_new()))
        return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    return KM_OK;
}

static void run_cleanup(run *r)
{
    km_pool_free(r->pool);
    km_tokens_heal_free(r->heal);
    km_tokens_judge_free(r->judge);
    free(r->marker);
    pthread_mutex_destroy(&r->lock);
}

/* The end of the step once every write was made: verification (waiting for the tokens
 * controller), retirement of replaced Secrets, the condition.  Failure: verify's or retire's. */
static km_status conclude(run *r, km_err *err)
{
    km_status st;
    if (!r->ctx->dry_run && km_tokens_heal_len(r->heal) > 0) {
        if ((st = verify(r, err)) != KM_OK)
            return st;
    } else {
        set_num(r, "healed", 0);
    }
    if (!r->ctx->dry_run && (st = retire(r, err)) != KM_OK)
        return st;
    cJSON_DeleteItemFromObjectCaseSensitive(r->st, "continue");
    finish(r);
    return KM_OK;
}

/* The writes are made and the tokens controller has new tokens to write: the wait for them is
 * handed to the step's settle (step.h), so the later steps run meanwhile.  The changed Secrets
 * go to *ctx->keep (one kept from this process's earlier run of the pass is more complete than
 * the status's list after a resume: it stays).  Condition Unknown/Refilling.  Failure: the
 * status save's error, KM_ENOMEM. */
static km_status hand_off(run *r, int verify_only, km_err *err)
{
    km_step_ctx *ctx = r->ctx;
    kept *k = *ctx->keep;
    if (!k || !verify_only) {
        kept *n = calloc(1, sizeof(*n));
        if (!n)
            return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
        n->heal = r->heal;
        n->other = r->other;
        r->heal = NULL;
        kept_free(k);
        *ctx->keep = k = n;
    }
    km_json_set_str(r->st, "continue", VERIFY_MARK);
    long changed = num(r, "regenerated") + num(r, "deleted") + num(r, "replaced");
    km_step_set_result(ctx, "Unknown", "Refilling",
                       "%ld stale token Secret(s) %s (%s); waiting for the tokens controller to "
                       "write %zu new token(s)",
                       changed,
                       num(r, "replaced")  ? "changed"
                       : num(r, "deleted") ? "deleted"
                                           : "regenerated",
                       KM_JSON_STR(r->st, "method") ? KM_JSON_STR(r->st, "method") : "?",
                       km_tokens_heal_len(k->heal));
    if (ctx->progress)
        ctx->progress(ctx, "tokens: waiting for the tokens controller");
    return km_step_save(ctx, err);
}

static km_status tokens_step(km_step_ctx *ctx, km_err *err)
{
    run r;
    int verify_only = 0;
    km_status st = run_init(&r, ctx, err);
    int inflight = ctx->dry_run ? 1 : (int)km_step_int(ctx, "maxInFlight");
    if (st != KM_OK || (st = start_pass(&r, &verify_only, err)) != KM_OK)
        goto out;
    if ((st = km_tokens_judge_new(ctx->kube, &r.judge, err)) != KM_OK)
        goto out;
    km_json_set_str(r.st, "method", km_tokens_judge_method(r.judge));
    if ((st = bridge_start(&r, verify_only, err)) != KM_OK)
        goto out;
    if (!verify_only && ((st = km_pool_new(ctx->kube, inflight, fix_one, fix_unit_free, &r, &r.pool,
                                           err)) != KM_OK ||
                         (st = scan(&r, err)) != KM_OK))
        goto out;
    km_pool_free(r.pool); /* drained: every write of the last page finished */
    r.pool = NULL;
    if (ctx->keep && !ctx->dry_run && km_tokens_heal_len(r.heal) > 0)
        st = hand_off(&r, verify_only, err);
    else
        st = conclude(&r, err);
out:
    run_cleanup(&r);
    return st;
}

/* The step's settle: the wait for the tokens controller that tokens_step handed off, with the
 * Secrets it kept (or, after a restart, those status.tokens.changed names), then the condition
 * as tokens_step sets it.  Failure: as tokens_step. */
static km_status tokens_settle(km_step_ctx *ctx, km_err *err)
{
    run r;
    km_status st = run_init(&r, ctx, err);
    kept *k = ctx->keep ? *ctx->keep : NULL;
    if (st != KM_OK)
        goto out;
    if (k) {
        km_tokens_heal_free(r.heal);
        r.heal = k->heal; /* borrowed: a retry of the settle checks them again */
        r.other = k->other;
    } else if (preload_changed(&r) != KM_OK) {
        st = km_err_set(err, KM_ENOMEM, "tokens: out of memory");
        goto out;
    }
    if ((st = km_tokens_judge_new(ctx->kube, &r.judge, err)) == KM_OK)
        st = conclude(&r, err);
out:
    if (k)
        r.heal = NULL;
    run_cleanup(&r);
    return st;
}

static const char *const modes[] = {"Regenerate", "Delete", NULL};

static const km_field fields[] = {
    {"enabled", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"mode", KM_FIELD_ENUM, 0, 0, 0, modes},
    {"verifyTimeoutSeconds", KM_FIELD_INT, 60, 0, 3600, NULL},
    {"maxInFlight", KM_FIELD_INT, 8, 1, 64, NULL},
    KM_FIELD_END,
};

const km_step_def km_tokens_def = {
    .key = "tokens",
    .flag = "tokens",
    .cond = "TokensRegenerated",
    .fail_reason = "TokensFailed",
    .fields = fields,
    .run = tokens_step,
    .verify = km_tokens_verify,
    .settle = tokens_settle,
    .keep_free = kept_free,
};
