/* cluster.h — reconcilers/bridge: what the cluster tells about its service-account keys.
 *
 * The current keys (GET /openid/v1/jwks: every --service-account-key-file key, the bridged old
 * one included), the key new tokens are signed with (the kid of a TokenRequest's token), the
 * tokens signed by keys the server no longer lists (token Secrets' data.token, page by page, and
 * the caller's own bearer token), and the snapshot ConfigMap (snapshot.h).  Tokens are kept in
 * memory only as long as the recovery needs them and wiped when freed; they are never logged. */
#ifndef KM_BRIDGE_CLUSTER_H
#define KM_BRIDGE_CLUSTER_H

#include <stddef.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "reconcilers/tokens/jwt.h"

#define KM_BRIDGE_JWKS_PATH "/openid/v1/jwks"

/* GETs the JWKS.  On success *keys is the parsed set (caller frees with km_jwks_free) and *raw
 * (may be NULL) the body (malloc'ed, caller frees).  Failure: KM_EAPI (404 where the
 * ServiceAccountIssuerDiscovery feature is off, 403 ...), transport errors, KM_EPARSE, KM_ENOMEM;
 * outputs untouched. */
km_status km_bridge_current_keys(km_kube *kube, km_jwks **keys, char **raw, km_err *err);

/* 1 when kid names a key of keys (NULL = empty set). */
int km_bridge_keys_have(const km_jwks *keys, const char *kid);

/* The kid of the key the server signs new tokens with: a TokenRequest (10 minutes, the
 * server's minimum) for ServiceAccount ns/sa, its token's kid into kid (size n).  The token is
 * wiped, never kept.  Failure: KM_EAPI (403, 404), transport errors, KM_EPARSE (no token / no
 * kid), KM_ENOMEM; kid untouched. */
km_status km_bridge_signing_kid(km_kube *kube, const char *ns, const char *sa, char *kid, size_t n,
                                km_err *err);

/* Whether the server is bridged and with which key it signs: when the JWKS lists more than one
 * key, the signing kid (km_bridge_signing_kid for the caller's own ServiceAccount, named by its
 * bearer token's sub claim, else default/default) into kid (size n); "" when it lists one key or
 * none (not bridged, or not known: nothing is then classified as bridged).  Failure: transport
 * errors, KM_ECANCELED, KM_ENOMEM (an API error only means ""); kid untouched. */
km_status km_bridge_probe(km_kube *kube, char *kid, size_t n, km_err *err);

/* ---- tokens signed by keys the server no longer lists -------------------------------------- */

typedef struct km_bridge_tokens km_bridge_tokens;

/* A new empty set keeping at most per_kid tokens per kid (0 = 16) for at most 8 kids.  NULL on
 * allocation failure.  Free with km_bridge_tokens_free. */
km_bridge_tokens *km_bridge_tokens_new(size_t per_kid);

/* Adds a copy of token (borrowed) unless it is malformed, its kid is one of current's, the set of
 * its kid is full, or it is already there.  1 when added, 0 when not, -1 on allocation failure. */
int km_bridge_tokens_add(km_bridge_tokens *s, const km_jwks *current, const char *token);

/* Lists the token Secrets (page by page) and adds their tokens (see km_bridge_tokens_add).
 * *scanned (may be NULL) receives the number of token Secrets seen.  Failure: the list's error;
 * what was added stays. */
km_status km_bridge_tokens_from_secrets(km_bridge_tokens *s, km_kube *kube, const km_jwks *current,
                                        long *scanned, km_err *err);

size_t km_bridge_tokens_count(const km_bridge_tokens *s);

/* The tokens as an array of s's strings (borrowed, valid until the next add or free). */
const char *const *km_bridge_tokens_all(const km_bridge_tokens *s);

/* Wipes and frees every token.  Accepts NULL. */
void km_bridge_tokens_free(km_bridge_tokens *s);

#endif
