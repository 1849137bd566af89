/* check.h — judging one service-account token: the pure look at a Secret, the TokenReview
 * verdict, and a judge that verifies a token against the API server's current keys.
 *
 * The judge prefers the JWKS: GET /openid/v1/jwks once, then a token is stale when no current
 * key verifies its signature (reconcilers/tokens/jwt.h), without a request per token.  When the
 * endpoint answers 404/403/401/5xx or is not a usable key set, it falls back to one TokenReview
 * per token, where only a signature failure counts as stale (see tokens.h). */
#ifndef KM_TOKENS_CHECK_H
#define KM_TOKENS_CHECK_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

#define KM_SA_TOKEN_TYPE "kubernetes.io/service-account-token"
#define KM_SA_ANN_NAME "kubernetes.io/service-account.name"
#define KM_SA_ANN_UID "kubernetes.io/service-account.uid"

/* ---- pure parts ----------------------------------------------------------------------------- */

typedef enum km_token_check {
    KM_TOKEN_CHECK = 0,   /* judge the token (*token_out is set) */
    KM_TOKEN_DELETING,    /* metadata.deletionTimestamp set */
    KM_TOKEN_UNANNOTATED, /* no service-account name/uid annotation */
    KM_TOKEN_PENDING,     /* no data.token yet (the controller will write one) */
    KM_TOKEN_MALFORMED,   /* data.token is not base64 of a well-formed JWT */
    KM_TOKEN_NOT_TOKEN,   /* not a kubernetes.io/service-account-token Secret */
} km_token_check;

/* Looks at a Secret without any I/O.  For KM_TOKEN_CHECK, *token_out receives the decoded token
 * (malloc'ed, NUL-terminated; the caller wipes and frees it with km_tokens_token_free).
 * *token_out is untouched otherwise.  KM_TOKEN_MALFORMED on allocation failure (reported, never
 * changed). */
km_token_check km_tokens_precheck(const cJSON *secret, char **token_out);

/* Zeroes and frees a token from km_tokens_precheck.  Accepts NULL. */
void km_tokens_token_free(char *token);

typedef enum km_review_verdict {
    KM_REVIEW_VALID = 0, /* status.authenticated true */
    KM_REVIEW_STALE,     /* the signature did not verify with any current key */
    KM_REVIEW_MALFORMED, /* the server could not parse the token */
    KM_REVIEW_OTHER,     /* not authenticated for another reason (see tokens.h) */
} km_review_verdict;

/* Interprets a TokenReview response.  reason (may be NULL, size n) receives status.error. */
km_review_verdict km_tokens_review_verdict(const cJSON *review, char *reason, size_t n);

/* ---- the judge ------------------------------------------------------------------------------ */

typedef struct km_tokens_judge km_tokens_judge;

/* Fetches the JWKS with kube (borrowed; must outlive the judge) and keeps the usable keys, or
 * settles on TokenReview when there are none (logged).  Caller frees *out with
 * km_tokens_judge_free.  Failure: a transport error or KM_ECANCELED (an API error only means
 * TokenReview), KM_ENOMEM; *out untouched. */
km_status km_tokens_judge_new(km_kube *kube, km_tokens_judge **out, km_err *err);

/* Frees the judge.  Accepts NULL. */
void km_tokens_judge_free(km_tokens_judge *j);

/* "JWKS" or "TokenReview" (static). */
const char *km_tokens_judge_method(const km_tokens_judge *j);

/* Judges a well-formed token (from km_tokens_precheck; borrowed, wiped from every copy made).
 * why (size n) receives the reason of a non-valid verdict.  Failure: the TokenReview's error
 * (KM_EAPI when the review itself was refused, transport errors), KM_ENOMEM; *out untouched. */
km_status km_tokens_judge_token(km_tokens_judge *j, char *token, km_review_verdict *out, char *why,
                                size_t n, km_err *err);

/* 1 in *valid when secret holds a token that km_tokens_judge_token finds valid, else 0 (also for
 * a Secret that km_tokens_precheck does not let through).  Failure: as km_tokens_judge_token. */
km_status km_tokens_judge_secret(km_tokens_judge *j, const cJSON *secret, int *valid, km_err *err);

#endif
