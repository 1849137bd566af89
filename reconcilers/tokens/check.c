/* check.c — judging one service-account token (see check.h). */
#include "reconcilers/tokens/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "operator/base/base64.h"
#include "operator/base/buf.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/tokens/jwt.h"

#define JWKS_PATH "/openid/v1/jwks"
#define TOKENREVIEW_PATH "/apis/authentication.k8s.io/v1/tokenreviews"

/* ---- pure parts ----------------------------------------------------------------------------- */

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
    if (!type || strcmp(type, KM_SA_TOKEN_TYPE) != 0)
        return KM_TOKEN_NOT_TOKEN;
    if (KM_JSON_AT(secret, "metadata", "deletionTimestamp") &&
        !cJSON_IsNull(KM_JSON_AT(secret, "metadata", "deletionTimestamp")))
        return KM_TOKEN_DELETING;
    const char *sa = KM_JSON_STR(secret, "metadata", "annotations", KM_SA_ANN_NAME);
    const char *uid = KM_JSON_STR(secret, "metadata", "annotations", KM_SA_ANN_UID);
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

/* ---- the judge ------------------------------------------------------------------------------ */

struct km_tokens_judge {
    km_kube *kube; /* borrowed */
    km_jwks *jwks; /* NULL: TokenReview */
};

/* The usable key set in body, or NULL with the reason in why. */
static km_jwks *usable_keys(const km_buf *body, char *why, size_t n)
{
    km_jwks *s = NULL;
    km_err e;
    km_err_clear(&e);
    if (km_jwks_parse(km_buf_str(body), body->len, &s, &e) != KM_OK) {
        snprintf(why, n, "not a JWK set: %.100s", e.message);
        return NULL;
    }
    if (km_jwks_count(s) == 0) {
        snprintf(why, n, "no usable key (%zu skipped)", km_jwks_skipped(s));
        km_jwks_free(s);
        return NULL;
    }
    return s;
}

km_status km_tokens_judge_new(km_kube *kube, km_tokens_judge **out, km_err *err)
{
    km_tokens_judge *j = calloc(1, sizeof(*j));
    if (!j)
        return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    j->kube = kube;
    km_buf body;
    km_buf_init(&body, 4u << 20);
    km_kube_req req = {
        .method = "GET", .path = JWKS_PATH, .accept = "application/jwk-set+json, application/json"};
    long code = 0;
    km_err e;
    km_err_clear(&e);
    km_status st = km_kube_do(kube, &req, &code, &body, &e);
    char why[160] = "";
    if (st == KM_OK) {
        j->jwks = usable_keys(&body, why, sizeof(why));
    } else if (st == KM_EAPI) {
        snprintf(why, sizeof(why), "HTTP %ld %s", e.http_code, e.reason);
    } else {
        km_buf_cleanup(&body);
        free(j);
        if (err)
            *err = e;
        km_err_prefix(err, "GET %s", JWKS_PATH);
        return st;
    }
    km_buf_cleanup(&body);
    if (j->jwks)
        km_log_info("tokens: verifying signatures against the API server's JWKS", "keys",
                    KM_LOG_INT(km_jwks_count(j->jwks)));
    else
        km_log_info("tokens: JWKS unavailable, falling back to TokenReview", "reason", why);
    *out = j;
    return KM_OK;
}

void km_tokens_judge_free(km_tokens_judge *j)
{
    if (!j)
        return;
    km_jwks_free(j->jwks);
    free(j);
}

const char *km_tokens_judge_method(const km_tokens_judge *j)
{
    return j->jwks ? "JWKS" : "TokenReview";
}

/* POSTs a TokenReview of token; *out (caller frees) is the response.  The token is wiped from
 * the request body before it is freed. */
static km_status review(km_tokens_judge *j, const char *token, cJSON **out, km_err *err)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *spec = body ? cJSON_AddObjectToObject(body, "spec") : NULL;
    cJSON *tok = spec ? cJSON_AddStringToObject(spec, "token", token) : NULL;
    km_status st = KM_ENOMEM;
    if (!tok || !cJSON_AddStringToObject(body, "apiVersion", "authentication.k8s.io/v1") ||
        !cJSON_AddStringToObject(body, "kind", "TokenReview")) {
        km_err_set(err, st, "tokens: out of memory");
    } else if ((st = km_kube_create(j->kube, TOKENREVIEW_PATH, body, out, err)) != KM_OK) {
        km_err_prefix(err, "TokenReview");
    }
    if (tok)
        OPENSSL_cleanse(tok->valuestring, strlen(tok->valuestring));
    cJSON_Delete(body);
    return st;
}

km_status km_tokens_judge_token(km_tokens_judge *j, char *token, km_review_verdict *out, char *why,
                                size_t n, km_err *err)
{
    why[0] = '\0';
    if (j->jwks) {
        km_jwt_result res = km_jwt_verify(j->jwks, token, strlen(token), NULL);
        *out = res == KM_JWT_VALID           ? KM_REVIEW_VALID
               : km_jwt_result_is_stale(res) ? KM_REVIEW_STALE
                                             : KM_REVIEW_MALFORMED;
        snprintf(why, n, "%s", km_jwt_result_name(res));
        return KM_OK;
    }
    cJSON *resp = NULL;
    km_status st = review(j, token, &resp, err);
    if (st == KM_OK)
        *out = km_tokens_review_verdict(resp, why, n);
    cJSON *echo = (cJSON *)KM_JSON_AT(resp, "spec", "token");
    if (cJSON_IsString(echo))
        OPENSSL_cleanse(echo->valuestring, strlen(echo->valuestring));
    cJSON_Delete(resp);
    return st;
}

km_status km_tokens_judge_secret(km_tokens_judge *j, const cJSON *secret, int *valid, km_err *err)
{
    char *token = NULL;
    *valid = 0;
    if (km_tokens_precheck(secret, &token) != KM_TOKEN_CHECK)
        return KM_OK;
    km_review_verdict v = KM_REVIEW_OTHER;
    char why[256];
    km_status st = km_tokens_judge_token(j, token, &v, why, sizeof(why), err);
    km_tokens_token_free(token);
    if (st == KM_OK)
        *valid = v == KM_REVIEW_VALID;
    return st;
}
