/* verify.h — the tokens step's verify hook (reconcilers/step/step.h): every token Secret holds
 * a token the API server's current keys accept, from the server's answers. */
#ifndef KM_TOKENS_VERIFY_H
#define KM_TOKENS_VERIFY_H

#include "operator/base/err.h"
#include "reconcilers/step/step.h"

/* Lists the kubernetes.io/service-account-token Secrets page by page and judges each token with
 * the judge of check.h (JWKS signature and kid, TokenReview where the JWKS is not usable).  Left:
 * a stale token (no current key verifies it) and a Secret still without a token (the tokens
 * controller did not write one).  Not counted: Secrets being deleted or without the
 * service-account annotations (the tokens controller ignores them) and malformed tokens (the
 * step never changes them; named in the message).  Sets ctx's condition ("True"/"False" with the
 * count and the first names).  Failure: the list's or the judge's error (nothing set). */
km_status km_tokens_verify(km_step_ctx *ctx, km_err *err);

#endif
