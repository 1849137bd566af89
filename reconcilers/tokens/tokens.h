/* tokens.h — reconcilers/tokens: tokens.h (this file: the step, one pass over the token
 * Secrets), check.h (how one token is judged), heal.h (the check that changed Secrets got a valid
 * token), jwt.h (JWT/JWKS verification with OpenSSL), replace.h (while bridged: a replacement
 * Secret instead of regenerating in place, and the old one's retirement).
 *
 * The tokens step: find service-account token Secrets whose token was signed by a
 * key the API server no longer trusts, and make the tokens controller write a new one.
 *
 * Staleness is decided per token, never by type alone:
 *   JWKS (preferred): GET /openid/v1/jwks once per run; a token is stale when no current key
 *     verifies its signature (reconcilers/tokens/jwt.h; the judge is reconcilers/tokens/check.h).
 *   TokenReview (fallback when the JWKS endpoint answers 404/403/401/5xx, or is not a usable key
 *     set): POST authentication.k8s.io/v1 TokenReview per token.  Only a signature failure
 *     ("... error in cryptographic primitive") counts as stale.  Every other "not
 *     authenticated" reason — "Token has been invalidated" (the Secret was deleted or replaced
 *     between our read and the review), "Token does not match server's copy", a deleted
 *     ServiceAccount or a UID mismatch (the tokens controller deletes such Secrets itself) —
 *     is not a key problem and a new token would not fix it: the Secret is skipped and logged.
 *   status.tokens.method says which was used ("JWKS" / "TokenReview").
 * Skipped, never changed: Secrets being deleted, Secrets without the
 * kubernetes.io/service-account.name/uid annotations, Secrets without a token yet (the
 * controller is about to write one), valid tokens.  Malformed tokens (not base64, not a JWT,
 * alg none/HS*) are reported (status.tokens.malformed, malformedSecrets, Warning event
 * MalformedToken) and never changed.
 *
 * A stale token is fixed per spec.mode:
 *   Regenerate: JSON patch [{"op":"test","path":"/metadata/resourceVersion","value":RV},
 *               {"op":"remove","path":"/data/token"}] — the Secret (name, uid, labels,
 *               annotations) survives, the tokens controller writes a new token into it;
 *   Delete:     DELETE with preconditions {uid, resourceVersion} (clusters < 1.24 recreate the
 *               Secret under a new name).
 * While bridged (the server trusts the old key again, reconcilers/bridge), mode Regenerate replaces
 * a stale Secret that its ServiceAccount lists instead (replace.h: a new "<name>-kubemend" listed
 * first, the old one deleted once no pod refers to it), so the running pods that mounted it keep
 * a valid token; status.tokens.replaced / retired / retiring.
 * A conflict (409, or 422 from the failed "test") re-reads the Secret and decides again (with
 * backoff, until the unit's deadline); transient failures of writes, reads, reviews and the list
 * are retried the same way (reconcilers/step/retry.h): a write with a resourceVersion precondition
 * is safe to send again.
 *
 * Order: kube-system's token Secrets are listed and written first (one namespaced list), then
 * every other namespace's from the cluster-wide list (kube-system's skipped): the tokens
 * controller refills in the order of the writes, and the pods step restarts kube-system first.
 *
 * Afterwards (reconcilers/tokens/heal.h) each changed Secret is polled until it holds a token that
 * validates (Regenerate: the same Secret; Delete: a new token Secret of the same ServiceAccount),
 * in rounds (a short pause first and between rounds) until none healed for
 * spec.verifyTimeoutSeconds (each healed token starts that wait again: the tokens controller
 * refills ~9 Secrets per second on a real 1.19, so 1,000 need ~2 minutes); the progress
 * (status.tokens.healed, the progress text "tokens: verifying, N/M healed") is persisted at most
 * every 2 s.  A round with more Secrets pending than a list of the token Secrets takes pages
 * (estimated from the scan) re-lists them (same fieldSelector, paged) and checks the changed ones
 * against an in-memory index of them (a regenerated Secret missing from the list was deleted: not
 * healed); a round with few pending reads each (Regenerate: GET; Delete: list of its namespace's
 * token Secrets).  Not healed -> Warning event TokensNotHealed and condition False NotHealed naming
 * them.  A per-Secret API failure other than a conflict counts as failed
 * (condition False ChangeFailed); transport errors end the step with the error (the
 * orchestrator retries and the step resumes).
 *
 * That wait is the step's settle (reconcilers/step/step.h): once every write was made, the run
 * ends with condition Unknown/Refilling ("N stale token Secret(s) regenerated; waiting for the
 * tokens controller ...") and keeps the changed Secrets for the settle, which the engine calls
 * after the later steps — the pods step restarts a namespace as soon as the token Secrets its
 * stale pods mount are refilled (reconcilers/pods/tokengate.h) instead of after all of them.  The
 * settle then verifies as described and sets the condition (True, or False/NotHealed), before
 * the recovery's outcome.  A runner without km_step_ctx.keep (none today) gets the wait in run.
 *
 * Resume: status is saved after every page.  status.tokens.continue holds "ns/name" of the last
 * Secret of the last saved page while listing ("verify" from the hand-off to the settle's end)
 * and is removed at the end; a run that finds a key re-lists from the start, kube-system first
 * (healed tokens validate, so nothing is changed twice) without counting Secrets up to that
 * marker again; a run that finds "verify" hands off at once (the settle then verifies the
 * Secrets this process kept, or after a restart those status.tokens.changed lists: mode
 * Regenerate).  A run without it starts a fresh pass (counters reset).
 *
 * Dry run: classifies everything, lists the Secrets that would change in status.tokens.changed,
 * changes nothing and does not verify. */
#ifndef KM_TOKENS_H
#define KM_TOKENS_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "reconcilers/step/step.h"

/* The step (see the file comment); its run: KM_OK when it ran to its end, with ctx->cond_* set;
 * KM_ECANCELED when ctx->cancel was set; an API/transport error otherwise (status holds the
 * progress for a resume). */
extern const km_step_def km_tokens_def;

#endif
