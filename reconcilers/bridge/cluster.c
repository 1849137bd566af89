/* cluster.c — the keys, the signing kid and the old tokens as the cluster tells them (see
 * cluster.h). */
#include "reconcilers/bridge/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "operator/base/array.h"
#include "operator/base/base64.h"
#include "operator/base/buf.h"
#include "operator/base/json.h"
#include "reconcilers/bridge/kid.h"
#include "reconcilers/tokens/check.h"

#define MAX_KIDS 8
#define JWKS_MAX (1 << 20)

km_status km_bridge_current_keys(km_kube *kube, km_jwks **keys, char **raw, km_err *err)
{
    km_buf body;
    km_jwks *set = NULL;
    km_buf_init(&body, JWKS_MAX);
    km_kube_req req = {.method = "GET",
                       .path = KM_BRIDGE_JWKS_PATH,
                       .accept = "application/jwk-set+json, application/json"};
    km_status st = km_kube_do(kube, &req, NULL, &body, err);
    if (st == KM_OK)
        st = km_jwks_parse(km_buf_str(&body), body.len, &set, err);
    if (st == KM_OK && raw && !(*raw = km_buf_take(&body))) {
        km_jwks_free(set);
        st = km_err_set(err, KM_ENOMEM, "out of memory");
    }
    if (st == KM_OK)
        *keys = set;
    km_buf_cleanup(&body);
    return st;
}

int km_bridge_keys_have(const km_jwks *keys, const char *kid)
{
    size_t n = keys ? km_jwks_count(keys) : 0;
    for (size_t i = 0; i < n; i++)
        if (kid && *kid && strcmp(km_jwks_kid(keys, i), kid) == 0)
            return 1;
    return 0;
}

km_status km_bridge_signing_kid(km_kube *kube, const char *ns, const char *sa, char *kid, size_t n,
                                km_err *err)
{
    char path[600], *esc_ns = km_kube_escape(ns), *esc_sa = km_kube_escape(sa);
    cJSON *req = cJSON_Parse("{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":"
                             "\"TokenRequest\",\"spec\":{\"expirationSeconds\":600}}");
    cJSON *resp = NULL;
    km_status st = KM_OK;
    if (!esc_ns || !esc_sa || !req) {
        st = km_err_set(err, KM_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/serviceaccounts/%s/token", esc_ns, esc_sa);
    if ((st = km_kube_create(kube, path, req, &resp, err)) != KM_OK)
        goto out;
    cJSON *tok = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(resp, "status"), "token");
    char k[96];
    km_bridge_token_kid(cJSON_IsString(tok) ? tok->valuestring : NULL, k, sizeof(k));
    if (cJSON_IsString(tok))
        OPENSSL_cleanse(tok->valuestring, strlen(tok->valuestring));
    if (!k[0]) {
        st = km_err_set(err, KM_EPARSE, "TokenRequest for %s/%s: no token with a kid", ns, sa);
        goto out;
    }
    snprintf(kid, n, "%s", k);
out:
    cJSON_Delete(resp);
    cJSON_Delete(req);
    free(esc_ns);
    free(esc_sa);
    return st;
}

/* The namespace and name of the ServiceAccount of the caller's bearer token ("sub":
 * "system:serviceaccount:NS:NAME"); default/default when there is none. */
static void own_account(km_kube *kube, char *ns, size_t nn, char *sa, size_t sn)
{
    char *tok = NULL, *payload = NULL;
    unsigned char *raw = NULL;
    size_t len = 0;
    snprintf(ns, nn, "default");
    snprintf(sa, sn, "default");
    if (km_kubeconfig_token(km_kube_config(kube), &tok, NULL) != KM_OK || !tok)
        return;
    const char *dot = strchr(tok, '.'), *end = dot ? strchr(dot + 1, '.') : NULL;
    if (end && km_base64_decode(dot + 1, (size_t)(end - dot - 1), KM_B64_URL, &raw, &len) == KM_OK)
        payload = (char *)raw;
    cJSON *doc = payload ? cJSON_Parse(payload) : NULL;
    const char *sub = cJSON_GetStringValue(cJSON_GetObjectItem(doc, "sub"));
    char a[254], b[254];
    if (sub && sscanf(sub, "system:serviceaccount:%253[^:]:%253s", a, b) == 2) {
        snprintf(ns, nn, "%s", a);
        snprintf(sa, sn, "%s", b);
    }
    cJSON_Delete(doc);
    if (raw)
        OPENSSL_cleanse(raw, len);
    free(raw);
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
}

km_status km_bridge_probe(km_kube *kube, char *kid, size_t n, km_err *err)
{
    km_jwks *keys = NULL;
    km_err e;
    char ns[254], sa[254], k[96] = "";
    km_status st = km_bridge_current_keys(kube, &keys, NULL, &e);
    if (st == KM_ETRANSPORT || st == KM_ECANCELED || st == KM_ENOMEM) {
        if (err)
            *err = e;
        return st;
    }
    size_t count = st == KM_OK ? km_jwks_count(keys) : 0;
    km_jwks_free(keys);
    if (count > 1) {
        own_account(kube, ns, sizeof(ns), sa, sizeof(sa));
        st = km_bridge_signing_kid(kube, ns, sa, k, sizeof(k), &e);
        if (st == KM_ETRANSPORT || st == KM_ECANCELED || st == KM_ENOMEM) {
            if (err)
                *err = e;
            return st;
        }
        if (st != KM_OK)
            k[0] = '\0';
    }
    snprintf(kid, n, "%s", k);
    return KM_OK;
}

/* ---- the token set ----------------------------------------------------------------------------
 */

struct km_bridge_tokens {
    size_t per_kid;
    char kids[MAX_KIDS][96];
    size_t per[MAX_KIDS];
    size_t nkids;
    char **tok;
    size_t n, cap;
};

km_bridge_tokens *km_bridge_tokens_new(size_t per_kid)
{
    km_bridge_tokens *s = calloc(1, sizeof(*s));
    if (s)
        s->per_kid = per_kid ? per_kid : 16;
    return s;
}

/* The slot of kid (added when new and there is room), -1 when full. */
static long kid_slot(km_bridge_tokens *s, const char *kid)
{
    for (size_t i = 0; i < s->nkids; i++)
        if (strcmp(s->kids[i], kid) == 0)
            return (long)i;
    if (s->nkids == MAX_KIDS)
        return -1;
    snprintf(s->kids[s->nkids], sizeof(s->kids[0]), "%s", kid);
    return (long)s->nkids++;
}

int km_bridge_tokens_add(km_bridge_tokens *s, const km_jwks *current, const char *token)
{
    km_jwt_info info;
    memset(&info, 0, sizeof(info));
    if (!token || km_jwt_inspect(token, strlen(token), &info) != KM_JWT_VALID)
        return 0;
    if (info.kid[0] ? km_bridge_keys_have(current, info.kid)
                    : km_jwt_verify(current, token, strlen(token), NULL) == KM_JWT_VALID)
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->tok[i], token) == 0)
            return 0;
    long slot = kid_slot(s, info.kid);
    if (slot < 0 || s->per[slot] >= s->per_kid)
        return 0;
    char *copy = strdup(token);
    if (!copy || km_array_grow(&s->tok, s->n + 1, &s->cap, sizeof(char *)) != KM_OK) {
        free(copy);
        return -1;
    }
    s->tok[s->n++] = copy;
    s->per[slot]++;
    return 1;
}

typedef struct list_ctx {
    km_bridge_tokens *s;
    const km_jwks *current;
    long scanned;
} list_ctx;

static km_status on_page(const km_kube_page *page, void *user)
{
    list_ctx *c = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        char *token = NULL;
        c->scanned++;
        if (km_tokens_precheck(it, &token) != KM_TOKEN_CHECK)
            continue;
        int added = km_bridge_tokens_add(c->s, c->current, token);
        km_tokens_token_free(token);
        if (added < 0)
            return KM_ENOMEM;
    }
    return KM_OK;
}

km_status km_bridge_tokens_from_secrets(km_bridge_tokens *s, km_kube *kube, const km_jwks *current,
                                        long *scanned, km_err *err)
{
    list_ctx c = {.s = s, .current = current};
    km_list_opts o = {.field_selector = "type=" KM_SA_TOKEN_TYPE, .limit = 500};
    km_status st = km_kube_list(kube, "/api/v1/secrets", &o, on_page, &c, NULL, err);
    if (st == KM_ENOMEM)
        km_err_set(err, KM_ENOMEM, "out of memory");
    if (scanned)
        *scanned = c.scanned;
    return st;
}

size_t km_bridge_tokens_count(const km_bridge_tokens *s)
{
    return s ? s->n : 0;
}

const char *const *km_bridge_tokens_all(const km_bridge_tokens *s)
{
    return (const char *const *)s->tok;
}

void km_bridge_tokens_free(km_bridge_tokens *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        OPENSSL_cleanse(s->tok[i], strlen(s->tok[i]));
        free(s->tok[i]);
    }
    free(s->tok);
    free(s);
}
