/* tokens.c — the tokens step (see tokens.h). */
#include "reconcilers/tokens/tokens.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "operator/base/clock.h"
#include "operator/base/base64.h"
#include "operator/base/buf.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/tokens/jwt.h"

#define SA_TOKEN_TYPE "kubernetes.io/service-account-token"
#define SA_TOKEN_SELECTOR "type=" SA_TOKEN_TYPE
#define ANN_NAME "kubernetes.io/service-account.name"
#define ANN_UID "kubernetes.io/service-account.uid"
#define JWKS_PATH "/openid/v1/jwks"
#define TOKENREVIEW_PATH "/apis/authentication.k8s.io/v1/tokenreviews"
#define PAGE_LIMIT 500 /* client-go pager default; a page of token Secrets is ~1.5 MB of JSON */
#define LIST_MAX 50
#define VERIFY_MARK "verify"
#define VERIFY_NAP_S 0.5

/* ---- pure parts ---------------------------------------------------------------------------- */

void km_tokens_token_free(char *token)
{
    if (token) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
}

km_token_check km_tokens_precheck(const cJSON *secret, char **token_out)
{
    const char *type = KM_JSON_STR(secret, "type");
    if (!type || strcmp(type, SA_TOKEN_TYPE) != 0)
        return KM_TOKEN_NOT_TOKEN;
    if (KM_JSON_AT(secret, "metadata", "deletionTimestamp") &&
        !cJSON_IsNull(KM_JSON_AT(secret, "metadata", "deletionTimestamp")))
        return KM_TOKEN_DELETING;
    const char *sa = KM_JSON_STR(secret, "metadata", "annotations", ANN_NAME);
    const char *uid = KM_JSON_STR(secret, "metadata", "annotations", ANN_UID);
    if (!sa || !*sa || !uid || !*uid)
        return KM_TOKEN_UNANNOTATED;
    const cJSON *tok = KM_JSON_AT(secret, "data", "token");
    if (!tok || cJSON_IsNull(tok) || (cJSON_IsString(tok) && tok->valuestring[0] == '\0'))
        return KM_TOKEN_PENDING;
    if (!cJSON_IsString(tok))
        return KM_TOKEN_MALFORMED;
    unsigned char *raw = NULL;
    size_t n = 0;
    if (km_base64_decode(tok->valuestring, strlen(tok->valuestring), 0, &raw, &n) != KM_OK)
        return KM_TOKEN_MALFORMED;
    /* Trailing whitespace/newlines in a hand-made Secret: the server would not accept them
     * either, so they are judged as they are.  Embedded NULs make it malformed. */
    if (strlen((char *)raw) != n || km_jwt_inspect((const char *)raw, n, NULL) != KM_JWT_VALID) {
        OPENSSL_cleanse(raw, n);
        free(raw);
        return KM_TOKEN_MALFORMED;
    }
    *token_out = (char *)raw;
    return KM_TOKEN_CHECK;
}

km_review_verdict km_tokens_review_verdict(const cJSON *review, char *reason, size_t n)
{
    const char *e = KM_JSON_STR(review, "status", "error");
    if (reason && n)
        snprintf(reason, n, "%s", e ? e : "");
    if (KM_JSON_BOOL(review, 0, "status", "authenticated"))
        return KM_REVIEW_VALID;
    if (!e)
        return KM_REVIEW_OTHER;
    /* go-jose v2 ("square/go-jose: ...") and v3 ("go-jose/go-jose: ...") word it the same. */
    if (strstr(e, "error in cryptographic primitive"))
        return KM_REVIEW_STALE;
    if (strstr(e, "compact JWS format") || strstr(e, "illegal base64") ||
        strstr(e, "invalid character"))
        return KM_REVIEW_MALFORMED;
    return KM_REVIEW_OTHER;
}

/* ---- the step ------------------------------------------------------------------------------ */

typedef enum verdict { V_VALID, V_STALE, V_MALFORMED, V_OTHER } verdict;

typedef struct changed {
    char *ns, *name, *sa, *sa_uid, *old_uid;
    int del; /* deleted (else regenerated in place) */
    int done, healed;
    int seen; /* listed by the current verification re-list */
} changed;

/* An open-addressing hash index over run.ch (slot = index + 1, 0 = empty): keyed by "ns/name"
 * (every entry) or by "ns/serviceaccount" (deleted entries; several may share a key). */
typedef enum idx_by { BY_NAME, BY_SA } idx_by;

typedef struct chindex {
    size_t *slot;
    size_t cap, used; /* cap is 0 or a power of two */
} chindex;

typedef struct run {
    km_step_ctx *ctx;
    cJSON *st;     /* ctx->status */
    int del;       /* mode Delete */
    km_jwks *jwks; /* NULL: TokenReview */
    char *marker;  /* resume marker ("ns/name"), NULL = none */
    int counting;  /* 0 while re-listing Secrets up to the marker */
    changed *ch;
    size_t nch, capch;
    chindex by_name, by_sa;
    long other;      /* not authenticated for a non-key reason */
    char last[512];  /* key of the last Secret handled */
    int page_change; /* a Secret was changed on this page */
} run;

static int cancelled(const run *r)
{
    return km_step_cancelled(r->ctx);
}

static void event(run *r, const char *type, const char *reason, const char *msg)
{
    km_step_event(r->ctx, type, reason, msg);
}

static void count(run *r, const char *name, long d)
{
    km_step_count(r->ctx, name, d);
}

static km_status save(run *r, km_err *err)
{
    return km_step_save(r->ctx, err);
}

static long num(const run *r, const char *key)
{
    return (long)KM_JSON_NUM(r->st, 0, key);
}

static void set_num(run *r, const char *key, long v)
{
    km_json_set_num(r->st, key, (double)v);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void changed_free(changed *c)
{
    free(c->ns);
    free(c->name);
    free(c->sa);
    free(c->sa_uid);
    free(c->old_uid);
}

static uint64_t key_hash(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a over "a/b" */
    for (const char *p = a; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ (unsigned char)'/') * 1099511628211ULL;
    for (const char *p = b; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static uint64_t entry_hash(const changed *c, idx_by by)
{
    return key_hash(c->ns, by == BY_NAME ? c->name : c->sa);
}

static void idx_place(size_t *slot, size_t cap, uint64_t h, size_t v)
{
    size_t p = (size_t)h & (cap - 1);
    while (slot[p])
        p = (p + 1) & (cap - 1);
    slot[p] = v;
}

/* Adds r->ch[i] to the index (grows it to stay at most half full).  KM_ENOMEM: unchanged. */
static km_status idx_add(run *r, chindex *x, size_t i, idx_by by)
{
    if ((x->used + 1) * 2 > x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        size_t *s = calloc(cap, sizeof(*s));
        if (!s)
            return KM_ENOMEM;
        for (size_t j = 0; j < x->cap; j++)
            if (x->slot[j])
                idx_place(s, cap, entry_hash(&r->ch[x->slot[j] - 1], by), x->slot[j]);
        free(x->slot);
        x->slot = s;
        x->cap = cap;
    }
    idx_place(x->slot, x->cap, entry_hash(&r->ch[i], by), i + 1);
    x->used++;
    return KM_OK;
}

/* The remembered Secret ns/name, or NULL. */
static changed *find_changed(run *r, const char *ns, const char *name)
{
    if (!r->by_name.cap)
        return NULL;
    size_t mask = r->by_name.cap - 1;
    for (size_t p = (size_t)key_hash(ns, name) & mask; r->by_name.slot[p]; p = (p + 1) & mask) {
        changed *c = &r->ch[r->by_name.slot[p] - 1];
        if (strcmp(c->ns, ns) == 0 && strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

/* Remembers a changed Secret for verification (no duplicates).  KM_ENOMEM (a Secret that made
 * it into the list but not into the ServiceAccount index is still freed with the run). */
static km_status remember(run *r, const char *ns, const char *name, const char *sa,
                          const char *sa_uid, const char *old_uid, int del)
{
    if (find_changed(r, ns, name))
        return KM_OK;
    if (r->nch == r->capch) {
        size_t cap = r->capch ? r->capch * 2 : 16;
        changed *n = realloc(r->ch, cap * sizeof(*n));
        if (!n)
            return KM_ENOMEM;
        r->ch = n;
        r->capch = cap;
    }
    changed c = {dup_or_null(ns),
                 dup_or_null(name),
                 dup_or_null(sa),
                 dup_or_null(sa_uid),
                 dup_or_null(old_uid),
                 del,
                 0,
                 0,
                 0};
    if (!c.ns || !c.name || (sa && !c.sa)) {
        changed_free(&c);
        return KM_ENOMEM;
    }
    r->ch[r->nch] = c;
    if (idx_add(r, &r->by_name, r->nch, BY_NAME) != KM_OK) {
        changed_free(&c);
        return KM_ENOMEM;
    }
    r->nch++;
    if (del && c.sa)
        return idx_add(r, &r->by_sa, r->nch - 1, BY_SA);
    return KM_OK;
}

/* Fetches /openid/v1/jwks; leaves r->jwks NULL (TokenReview) when it is not usable.  Fails only
 * on transport errors / cancel. */
static km_status load_keys(run *r, km_err *err)
{
    km_buf body;
    km_buf_init(&body, 4u << 20);
    km_kube_req req = {
        .method = "GET", .path = JWKS_PATH, .accept = "application/jwk-set+json, application/json"};
    long code = 0;
    km_err e;
    km_err_clear(&e);
    km_status st = km_kube_do(r->ctx->kube, &req, &code, &body, &e);
    char why[160] = "";
    if (st == KM_OK) {
        km_jwks *s = NULL;
        if (km_jwks_parse(km_buf_str(&body), body.len, &s, &e) != KM_OK)
            snprintf(why, sizeof(why), "not a JWK set: %.100s", e.message);
        else if (km_jwks_count(s) == 0)
            snprintf(why, sizeof(why), "no usable key (%zu skipped)", km_jwks_skipped(s));
        if (why[0])
            km_jwks_free(s);
        else
            r->jwks = s;
    } else if (st == KM_EAPI) {
        snprintf(why, sizeof(why), "HTTP %ld %s", e.http_code, e.reason);
    } else {
        km_buf_cleanup(&body);
        if (err)
            *err = e;
        km_err_prefix(err, "GET %s", JWKS_PATH);
        return st;
    }
    km_buf_cleanup(&body);
    if (r->jwks) {
        km_log_info("tokens: verifying signatures against the API server's JWKS", "keys",
                    KM_LOG_INT(km_jwks_count(r->jwks)));
        km_json_set_str(r->st, "method", "JWKS");
    } else {
        km_log_info("tokens: JWKS unavailable, falling back to TokenReview", "reason", why);
        km_json_set_str(r->st, "method", "TokenReview");
    }
    return KM_OK;
}

/* Judges a well-formed token.  *why (size n) gets the reason for V_OTHER/V_MALFORMED. */
static km_status judge(run *r, char *token, verdict *out, char *why, size_t n, km_err *err)
{
    why[0] = '\0';
    if (r->jwks) {
        km_jwt_result res = km_jwt_verify(r->jwks, token, strlen(token), NULL);
        *out = res == KM_JWT_VALID ? V_VALID : km_jwt_result_is_stale(res) ? V_STALE : V_MALFORMED;
        snprintf(why, n, "%s", km_jwt_result_name(res));
        return KM_OK;
    }
    km_status st = KM_ENOMEM;
    cJSON *resp = NULL;
    cJSON *body = cJSON_CreateObject();
    cJSON *spec = body ? cJSON_AddObjectToObject(body, "spec") : NULL;
    cJSON *tok = spec ? cJSON_AddStringToObject(spec, "token", token) : NULL;
    if (!tok || !cJSON_AddStringToObject(body, "apiVersion", "authentication.k8s.io/v1") ||
        !cJSON_AddStringToObject(body, "kind", "TokenReview")) {
        km_err_set(err, st, "tokens: out of memory");
        goto out;
    }
    st = km_kube_create(r->ctx->kube, TOKENREVIEW_PATH, body, &resp, err);
    if (st != KM_OK) {
        km_err_prefix(err, "TokenReview");
        goto out;
    }
    switch (km_tokens_review_verdict(resp, why, n)) {
    case KM_REVIEW_VALID:
        *out = V_VALID;
        break;
    case KM_REVIEW_STALE:
        *out = V_STALE;
        break;
    case KM_REVIEW_MALFORMED:
        *out = V_MALFORMED;
        break;
    default:
        *out = V_OTHER;
        break;
    }
out:
    if (tok)
        OPENSSL_cleanse(tok->valuestring, strlen(tok->valuestring));
    cJSON *echo = (cJSON *)KM_JSON_AT(resp, "spec", "token");
    if (cJSON_IsString(echo))
        OPENSSL_cleanse(echo->valuestring, strlen(echo->valuestring));
    cJSON_Delete(body);
    cJSON_Delete(resp);
    return st;
}

static void secret_path(char *buf, size_t n, const char *ns, const char *name)
{
    km_kube_path(buf, n, NULL, "v1", ns, "secrets", name, NULL);
}

/* Mode Delete: 1 when the Secret's ServiceAccount lists it in .secrets — an auto-generated
 * token Secret that a < 1.24 tokens controller recreates.  A Secret it does not list
 * (user-created, or the ServiceAccount is gone) would be lost for good, so it is regenerated in
 * place instead.  Fails only on transport errors. */
static km_status sa_references(run *r, const cJSON *s, int *out, km_err *err)
{
    const char *ns = KM_JSON_STR(s, "metadata", "namespace");
    const char *name = KM_JSON_STR(s, "metadata", "name");
    const char *sa = KM_JSON_STR(s, "metadata", "annotations", ANN_NAME);
    char path[600];
    km_kube_path(path, sizeof(path), NULL, "v1", ns, "serviceaccounts", sa, NULL);
    cJSON *obj = NULL;
    km_err e;
    km_err_clear(&e);
    km_status st = km_kube_get(r->ctx->kube, path, &obj, &e);
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

/* Applies the fix (del: DELETE, else the guarded patch).  *conflict = 1 when the Secret changed
 * under us (re-read). */
static km_status fix(run *r, const cJSON *s, int del, int *conflict, km_err *err)
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
        st = km_kube_delete(r->ctx->kube, path, &o, NULL, err);
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
    st = km_kube_patch(r->ctx->kube, path, KM_PATCH_JSON, text, NULL, err);
    free(text);
    if (st == KM_EAPI && km_err_is_http(err, 404))
        return KM_ENOTFOUND;
    /* 409, or 422 from the failed "test" (or from "remove" when the token is already gone): the
     * patch itself is always well-formed, so re-read and decide again. */
    if (st == KM_EAPI && (km_err_is_http(err, 409) || km_err_is_http(err, 422)))
        *conflict = 1;
    return st;
}

static int fatal(km_status st)
{
    return st != KM_OK && st != KM_EAPI;
}

/* Handles one Secret.  Fails only on transport errors, cancel or ENOMEM. */
static km_status process(run *r, const cJSON *item, km_err *err)
{
    const char *ns = KM_JSON_STR(item, "metadata", "namespace");
    const char *name = KM_JSON_STR(item, "metadata", "name");
    if (!ns || !name)
        return KM_OK;
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    snprintf(r->last, sizeof(r->last), "%s", key);
    int counting = r->counting;
    if (!counting && r->marker && strcmp(r->marker, key) == 0)
        r->counting = 1; /* the marker itself was counted before */
    km_status st = KM_OK;
    cJSON *fresh = NULL;
    const cJSON *cur = item;
    if (counting)
        km_step_counter_add(r->st, "scanned", 1);

    for (int attempt = 0; attempt < 2; attempt++) {
        char *token = NULL;
        km_token_check c = km_tokens_precheck(cur, &token);
        if (c == KM_TOKEN_MALFORMED) {
            if (counting) {
                char msg[700];
                km_step_counter_add(r->st, "malformed", 1);
                km_step_list_add(r->st, "malformedSecrets", key, LIST_MAX);
                snprintf(msg, sizeof(msg),
                         "Secret %s: data.token is not a well-formed JWT; left unchanged", key);
                event(r, "Warning", "MalformedToken", msg);
                km_log_warn("tokens: malformed token", "secret", key);
            }
            break;
        }
        if (c != KM_TOKEN_CHECK) {
            if (counting)
                km_step_counter_add(r->st, "skipped", 1);
            break;
        }
        verdict v = V_VALID;
        char why[256];
        st = judge(r, token, &v, why, sizeof(why), err);
        km_tokens_token_free(token);
        if (st != KM_OK) {
            if (fatal(st))
                goto out;
            /* The TokenReview itself was refused (403 ...): count as failed, go on. */
            char eb[600];
            km_log_warn("tokens: cannot judge token", "secret", key, "error",
                        km_err_str(err, eb, sizeof(eb)));
            km_step_counter_add(r->st, "failed", 1);
            st = KM_OK;
            break;
        }
        if (v == V_VALID)
            break;
        if (v == V_MALFORMED || v == V_OTHER) {
            if (counting) {
                km_step_counter_add(r->st, v == V_MALFORMED ? "malformed" : "skipped", 1);
                if (v == V_MALFORMED)
                    km_step_list_add(r->st, "malformedSecrets", key, LIST_MAX);
                else
                    r->other++;
            }
            km_log_warn("tokens: token not authenticated for a reason a new token would not fix",
                        "secret", key, "reason", why);
            break;
        }
        /* Stale. */
        if (attempt == 0)
            km_step_counter_add(r->st, "stale", 1);
        if (r->ctx->dry_run) {
            km_step_list_add(r->st, "changed", key, LIST_MAX);
            km_log_info("tokens: stale token (dry run, not changed)", "secret", key);
            break;
        }
        int conflict = 0, del = 0;
        km_err e;
        km_err_clear(&e);
        if (r->del && (st = sa_references(r, cur, &del, &e)) != KM_OK) {
            if (err)
                *err = e;
            goto out;
        }
        if (r->del && !del)
            km_log_info("tokens: not listed by its ServiceAccount (would not be recreated), "
                        "regenerating in place instead of deleting",
                        "secret", key);
        st = fix(r, cur, del, &conflict, &e);
        if (st == KM_OK) {
            const char *sa = KM_JSON_STR(cur, "metadata", "annotations", ANN_NAME);
            const char *sa_uid = KM_JSON_STR(cur, "metadata", "annotations", ANN_UID);
            const char *uid = KM_JSON_STR(cur, "metadata", "uid");
            km_step_counter_add(r->st, del ? "deleted" : "regenerated", 1);
            count(r, del ? "tokens_deleted_total" : "tokens_regenerated_total", 1);
            km_step_list_add(r->st, "changed", key, LIST_MAX);
            r->page_change = 1;
            km_log_info(del ? "tokens: deleted stale token Secret"
                            : "tokens: removed stale token (controller writes a new one)",
                        "secret", key);
            st = remember(r, ns, name, sa, sa_uid, uid, del);
            if (st != KM_OK)
                km_err_set(err, st, "tokens: out of memory");
            goto out;
        }
        if (st == KM_ENOTFOUND) { /* gone meanwhile: nothing to fix */
            st = KM_OK;
            break;
        }
        if (fatal(st)) {
            if (err)
                *err = e;
            goto out;
        }
        if (conflict && attempt == 0) {
            char path[600];
            secret_path(path, sizeof(path), ns, name);
            cJSON_Delete(fresh);
            fresh = NULL;
            st = km_kube_get(r->ctx->kube, path, &fresh, &e);
            if (st == KM_EAPI && km_err_is_http(&e, 404)) {
                st = KM_OK;
                break;
            }
            if (st != KM_OK) {
                if (fatal(st)) {
                    if (err)
                        *err = e;
                    goto out;
                }
                st = KM_OK;
                km_step_counter_add(r->st, "failed", 1);
                break;
            }
            km_log_info("tokens: Secret changed meanwhile, deciding again", "secret", key);
            cur = fresh;
            continue;
        }
        char eb[600];
        km_log_warn("tokens: could not fix stale token", "secret", key, "error",
                    km_err_str(&e, eb, sizeof(eb)));
        km_step_counter_add(r->st, "failed", 1);
        count(r, "tokens_failed_total", 1);
        st = KM_OK;
        break;
    }
out:
    cJSON_Delete(fresh);
    return st;
}

typedef struct page_ctx {
    run *r;
    km_err *err;
} page_ctx;

static km_status on_page(const km_kube_page *page, void *user)
{
    page_ctx *pc = user;
    run *r = pc->r;
    if (page->restarted && r->last[0]) {
        /* The list restarted after an expired continue token: do not count again what this
         * pass has already seen. */
        free(r->marker);
        r->marker = strdup(r->last);
        r->counting = 0;
    }
    r->page_change = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        if (cancelled(r))
            return km_err_set(pc->err, KM_ECANCELED, "tokens: cancelled");
        km_status st = process(r, it, pc->err);
        if (st != KM_OK)
            return st;
    }
    if (r->last[0])
        km_json_set_str(r->st, "continue", r->last);
    if (r->ctx->progress) {
        char p[128];
        snprintf(p, sizeof(p), "tokens: %ld scanned, %ld stale", num(r, "scanned"),
                 num(r, "stale"));
        r->ctx->progress(r->ctx, p);
    }
    return save(r, pc->err);
}

typedef struct find_ctx {
    run *r;
    const changed *c;
    int healed;
    km_err *err;
} find_ctx;

/* Delete mode: looks for a new token Secret of the same ServiceAccount that validates. */
static km_status on_ns_page(const km_kube_page *page, void *user)
{
    find_ctx *fc = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        const char *sa = KM_JSON_STR(it, "metadata", "annotations", ANN_NAME);
        const char *sa_uid = KM_JSON_STR(it, "metadata", "annotations", ANN_UID);
        const char *uid = KM_JSON_STR(it, "metadata", "uid");
        if (fc->healed || !sa || !fc->c->sa || strcmp(sa, fc->c->sa) != 0)
            continue;
        if (fc->c->sa_uid && sa_uid && strcmp(sa_uid, fc->c->sa_uid) != 0)
            continue;
        if (uid && fc->c->old_uid && strcmp(uid, fc->c->old_uid) == 0)
            continue;
        char *token = NULL;
        if (km_tokens_precheck(it, &token) != KM_TOKEN_CHECK)
            continue;
        verdict v = V_OTHER;
        char why[256];
        km_status st = judge(fc->r, token, &v, why, sizeof(why), fc->err);
        km_tokens_token_free(token);
        if (fatal(st))
            return st;
        if (st == KM_OK && v == V_VALID)
            fc->healed = 1;
    }
    return KM_OK;
}

/* One check of a changed Secret: sets c->done/c->healed when final.  Fails on transport
 * errors. */
static km_status check_healed(run *r, changed *c, km_err *err)
{
    km_err e;
    km_err_clear(&e);
    km_status st;
    if (c->del) {
        char path[600];
        km_kube_path(path, sizeof(path), NULL, "v1", c->ns, "secrets", NULL, NULL);
        km_list_opts o = {.field_selector = SA_TOKEN_SELECTOR, .limit = PAGE_LIMIT};
        find_ctx fc = {r, c, 0, &e};
        st = km_kube_list(r->ctx->kube, path, &o, on_ns_page, &fc, NULL, &e);
        if (st == KM_OK && fc.healed)
            c->done = c->healed = 1;
    } else {
        char path[600];
        cJSON *s = NULL;
        secret_path(path, sizeof(path), c->ns, c->name);
        st = km_kube_get(r->ctx->kube, path, &s, &e);
        if (st == KM_EAPI && km_err_is_http(&e, 404)) {
            c->done = 1; /* deleted (e.g. its ServiceAccount is gone): cannot heal */
            return KM_OK;
        }
        if (st == KM_OK) {
            char *token = NULL;
            if (km_tokens_precheck(s, &token) == KM_TOKEN_CHECK) {
                verdict v = V_OTHER;
                char why[256];
                st = judge(r, token, &v, why, sizeof(why), &e);
                km_tokens_token_free(token);
                if (st == KM_OK && v == V_VALID)
                    c->done = c->healed = 1;
            }
            cJSON_Delete(s);
        }
    }
    if (fatal(st)) {
        if (err)
            *err = e;
        return st;
    }
    return KM_OK; /* API errors: try again until the deadline */
}

typedef struct relist_ctx {
    run *r;
    km_err *err;
} relist_ctx;

/* Verification re-list, one listed Secret: heals the remembered Secret of that name (Regenerate)
 * and the deleted Secrets of its ServiceAccount it replaces (Delete) when its token validates.
 * Fails on transport errors. */
static km_status verify_item(run *r, const cJSON *it, km_err *err)
{
    const char *ns = KM_JSON_STR(it, "metadata", "namespace");
    const char *name = KM_JSON_STR(it, "metadata", "name");
    if (!ns || !name)
        return KM_OK;
    int judged = 0, valid = 0;
    changed *c = find_changed(r, ns, name);
    changed *self = c && !c->del && !c->done ? c : NULL;
    if (c)
        c->seen = 1;
    const char *sa = KM_JSON_STR(it, "metadata", "annotations", ANN_NAME);
    const char *sa_uid = KM_JSON_STR(it, "metadata", "annotations", ANN_UID);
    const char *uid = KM_JSON_STR(it, "metadata", "uid");
    size_t mask = r->by_sa.cap ? r->by_sa.cap - 1 : 0;
    size_t p = sa && r->by_sa.cap ? (size_t)key_hash(ns, sa) & mask : 0;
    for (;;) {
        changed *want = self;
        self = NULL;
        if (!want) { /* the next pending deleted Secret this one may replace */
            if (!sa || !r->by_sa.cap || !r->by_sa.slot[p])
                break;
            want = &r->ch[r->by_sa.slot[p] - 1];
            p = (p + 1) & mask;
            if (want->done || !want->del || strcmp(want->ns, ns) != 0 ||
                strcmp(want->sa, sa) != 0 ||
                (want->sa_uid && sa_uid && strcmp(sa_uid, want->sa_uid) != 0) ||
                (uid && want->old_uid && strcmp(uid, want->old_uid) == 0))
                continue;
        }
        if (!judged) {
            judged = 1;
            char *token = NULL;
            if (km_tokens_precheck(it, &token) != KM_TOKEN_CHECK)
                return KM_OK;
            verdict v = V_OTHER;
            char why[256];
            km_err e;
            km_err_clear(&e);
            km_status st = judge(r, token, &v, why, sizeof(why), &e);
            km_tokens_token_free(token);
            if (fatal(st)) {
                if (err)
                    *err = e;
                return st;
            }
            valid = st == KM_OK && v == V_VALID; /* API errors: try again next round */
        }
        if (!valid)
            return KM_OK;
        want->done = want->healed = 1;
    }
    return KM_OK;
}

static km_status on_verify_page(const km_kube_page *page, void *user)
{
    relist_ctx *vc = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        if (cancelled(vc->r))
            return km_err_set(vc->err, KM_ECANCELED, "tokens: cancelled");
        km_status st = verify_item(vc->r, it, vc->err);
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

/* One verification round by re-listing the token Secrets: cheaper than one request per pending
 * Secret once more are pending than the list has pages.  A regenerated Secret the list no
 * longer holds was deleted (e.g. with its ServiceAccount) and cannot heal.  API errors leave
 * the Secrets pending (next round); transport errors and cancel are returned. */
static km_status verify_relist(run *r, km_err *err)
{
    km_err e;
    km_err_clear(&e);
    for (size_t i = 0; i < r->nch; i++)
        r->ch[i].seen = 0;
    km_list_opts o = {.field_selector = SA_TOKEN_SELECTOR, .limit = PAGE_LIMIT};
    relist_ctx vc = {r, &e};
    km_status st = km_kube_list(r->ctx->kube, "/api/v1/secrets", &o, on_verify_page, &vc, NULL, &e);
    if (st == KM_OK) {
        for (size_t i = 0; i < r->nch; i++)
            if (!r->ch[i].del && !r->ch[i].done && !r->ch[i].seen)
                r->ch[i].done = 1;
        return KM_OK;
    }
    if (fatal(st)) {
        if (err)
            *err = e;
        return st;
    }
    return KM_OK;
}

static size_t count_pending(const run *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nch; i++)
        n += !r->ch[i].done;
    return n;
}

static km_status verify(run *r, km_err *err)
{
    long timeout = (long)KM_JSON_NUM(r->ctx->spec, 60, "verifyTimeoutSeconds");
    if (timeout < 0)
        timeout = 0;
    double deadline = km_clock_mono() + (double)timeout;
    /* Pages a re-list of the token Secrets takes, estimated from this pass's scan. */
    long scanned = num(r, "scanned");
    size_t pages = scanned > 0 ? (size_t)((scanned + PAGE_LIMIT - 1) / PAGE_LIMIT) : 1;
    /* The tokens controller needs a moment for the Secrets changed last: a first look right
     * away would mostly cost a second round. */
    if (timeout > 0 && km_clock_sleep(VERIFY_NAP_S, r->ctx->cancel) != KM_OK)
        return km_err_set(err, KM_ECANCELED, "tokens: cancelled");
    for (;;) {
        size_t pending = count_pending(r);
        if (pending > pages) {
            km_status st = verify_relist(r, err);
            if (st != KM_OK)
                return st;
        } else {
            for (size_t i = 0; i < r->nch; i++) {
                if (r->ch[i].done)
                    continue;
                km_status st = check_healed(r, &r->ch[i], err);
                if (st != KM_OK)
                    return st;
            }
        }
        if (count_pending(r) == 0 || km_clock_mono() >= deadline)
            break;
        if (km_clock_sleep(VERIFY_NAP_S, r->ctx->cancel) != KM_OK)
            return km_err_set(err, KM_ECANCELED, "tokens: cancelled");
    }
    long healed = 0;
    cJSON_DeleteItemFromObjectCaseSensitive(r->st, "unhealed");
    for (size_t i = 0; i < r->nch; i++) {
        if (r->ch[i].healed) {
            healed++;
            continue;
        }
        char key[512];
        snprintf(key, sizeof(key), "%s/%s", r->ch[i].ns, r->ch[i].name);
        km_step_list_add(r->st, "unhealed", key, LIST_MAX);
    }
    set_num(r, "healed", healed);
    return KM_OK;
}

/* Loads status.changed into the verification list (resume), mode Regenerate only: in mode
 * Delete the ServiceAccount of an already deleted Secret is not known any more, so Secrets
 * changed before the restart are not verified again (logged). */
static km_status preload_changed(run *r)
{
    const cJSON *arr = KM_JSON_AT(r->st, "changed");
    const cJSON *it;
    if (r->del || r->ctx->dry_run)
        return KM_OK;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it))
            continue;
        const char *slash = strchr(it->valuestring, '/');
        if (!slash)
            continue;
        char ns[256];
        snprintf(ns, sizeof(ns), "%.*s", (int)(slash - it->valuestring), it->valuestring);
        km_status st = remember(r, ns, slash + 1, NULL, NULL, NULL, 0);
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

static void reset_pass(run *r)
{
    static const char *const keys[] = {"scanned", "stale",    "regenerated",      "deleted",
                                       "failed",  "skipped",  "malformed",        "healed",
                                       "changed", "unhealed", "malformedSecrets", "continue"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(r->st, keys[i]);
    static const char *const zero[] = {"scanned", "stale",     "regenerated", "deleted",
                                       "failed",  "malformed", "skipped",     "healed"};
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
    long changed = deleted + regenerated;
    char how[96];
    if (deleted && regenerated)
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
    long unhealed = (long)r->nch - num(r, "healed");
    if (unhealed > 0) {
        list_text(r->st, "unhealed", unhealed, names, sizeof(names));
        char msg[512];
        snprintf(msg, sizeof(msg), "%ld token Secret(s) did not get a valid token within %lds: %s",
                 unhealed, (long)KM_JSON_NUM(ctx->spec, 60, "verifyTimeoutSeconds"), names);
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
        event(r, "Normal", deleted ? "TokensDeleted" : "TokensRegenerated", msg);
        km_step_set_result(ctx, "True", deleted ? "Deleted" : "Regenerated", "%s%s", msg, extra);
        return;
    }
    km_step_set_result(ctx, "True", "NoStaleTokens", "%ld token Secrets scanned (%s), none stale%s",
                       scanned, method, extra);
    (void)skipped;
}

km_status km_tokens_step(km_step_ctx *ctx, km_err *err)
{
    run r;
    memset(&r, 0, sizeof(r));
    r.ctx = ctx;
    r.st = ctx->status;
    r.counting = 1;
    const char *mode = KM_JSON_STR(ctx->spec, "mode");
    r.del = mode && strcmp(mode, "Delete") == 0;
    km_status st = KM_OK;

    const char *cont = KM_JSON_STR(r.st, "continue");
    int verify_only = cont && strcmp(cont, VERIFY_MARK) == 0;
    if (cont && *cont && !verify_only) {
        r.marker = strdup(cont);
        if (!r.marker)
            return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
        r.counting = 0;
        km_log_info("tokens: resuming", "after", r.marker);
    } else if (!verify_only) {
        reset_pass(&r);
    }
    if (cont && *cont && r.del)
        km_log_warn("tokens: resumed in mode Delete: Secrets deleted before the restart are not "
                    "verified again");
    if ((cont && *cont) && (st = preload_changed(&r)) != KM_OK) {
        km_err_set(err, st, "tokens: out of memory");
        goto out;
    }

    st = load_keys(&r, err);
    if (st != KM_OK)
        goto out;

    if (!verify_only) {
        km_list_opts o = {.field_selector = SA_TOKEN_SELECTOR, .limit = PAGE_LIMIT};
        page_ctx pc = {&r, err};
        st = km_kube_list(ctx->kube, "/api/v1/secrets", &o, on_page, &pc, NULL, err);
        if (st != KM_OK)
            goto out;
    }
    if (!ctx->dry_run && r.nch > 0) {
        km_json_set_str(r.st, "continue", VERIFY_MARK);
        if (ctx->progress)
            ctx->progress(ctx, "tokens: verifying new tokens");
        if ((st = save(&r, err)) != KM_OK)
            goto out;
        if ((st = verify(&r, err)) != KM_OK)
            goto out;
    } else {
        set_num(&r, "healed", 0);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(r.st, "continue");
    finish(&r);
out:
    for (size_t i = 0; i < r.nch; i++)
        changed_free(&r.ch[i]);
    free(r.ch);
    free(r.by_name.slot);
    free(r.by_sa.slot);
    free(r.marker);
    km_jwks_free(r.jwks);
    return st;
}
