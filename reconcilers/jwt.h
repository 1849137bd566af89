/* jwt.h — JSON Web Token signature checks against a JSON Web Key Set (OpenSSL 3).
 *
 * Purpose: decide whether a service-account token was signed by one of the API server's
 * current keys (GET /openid/v1/jwks).  Only the signature is checked — no claims (legacy
 * tokens carry no exp/iat), no issuer.  Supported: RS256/RS384/RS512 with RSA keys and
 * ES256/ES384/ES512 with EC P-256/P-384/P-521 keys (the algorithms the kube-apiserver's token
 * signer uses).  "none", HS* and every other algorithm are rejected (KM_JWT_BAD_ALG).
 *
 * Key selection follows the kube-apiserver: it ignores `kid` and tries every key it trusts, so a
 * token is VALID when ANY key of the algorithm's type verifies it.  The `kid` only decides how a
 * failure is named: the token's kid matched a key (or the token had no kid and keys of its type
 * exist) -> KM_JWT_INVALID_SIGNATURE; a kid that names no key -> KM_JWT_UNKNOWN_KEY.  Both mean
 * "not signed by a current key" (= stale after a service-account key rotation). */
#ifndef KM_JWT_H
#define KM_JWT_H

#include <stddef.h>

#include "operator/err.h"

typedef enum km_jwt_result {
    KM_JWT_VALID = 0,         /* a current key verified the signature */
    KM_JWT_INVALID_SIGNATURE, /* keys of its type exist; none verified it */
    KM_JWT_UNKNOWN_KEY,       /* its kid names no key (or no key of its type exists) */
    KM_JWT_MALFORMED,         /* not three base64url parts / header or payload not JSON ... */
    KM_JWT_BAD_ALG,           /* alg none, HS*, missing or unsupported */
} km_jwt_result;

/* Static name of a result ("Valid", "InvalidSignature", "UnknownKey", "Malformed", "BadAlg"). */
const char *km_jwt_result_name(km_jwt_result r);

/* Non-zero when r means "signed by a key the server no longer trusts". */
int km_jwt_result_is_stale(km_jwt_result r);

/* ---- key sets ----------------------------------------------------------------------------- */

typedef struct km_jwks km_jwks;

/* Parses a JWK Set ({"keys":[...]}) of n bytes.  Keys that cannot be used (unsupported kty or
 * crv, "use" other than "sig", bad base64url, a point not on its curve) are skipped and counted
 * (km_jwks_skipped).  On success *out is a new set the caller frees with km_jwks_free — it may
 * hold zero usable keys, callers must check km_jwks_count.  On failure (not JSON, no "keys"
 * array: KM_EPARSE; KM_ENOMEM) *out is untouched and err says why. */
km_status km_jwks_parse(const char *json, size_t n, km_jwks **out, km_err *err);

/* Number of usable keys / of skipped keys. */
size_t km_jwks_count(const km_jwks *s);
size_t km_jwks_skipped(const km_jwks *s);

/* The kid of key i (borrowed; "" when the key has none), NULL when i is out of range. */
const char *km_jwks_kid(const km_jwks *s, size_t i);

/* The SubjectPublicKeyInfo DER of key i (what Kubernetes hashes into a kid): on success *der is a
 * malloc'ed buffer of *len bytes (caller frees).  On failure (KM_ENOTFOUND: i out of range;
 * KM_ENOMEM) the outputs are untouched. */
km_status km_jwks_spki(const km_jwks *s, size_t i, unsigned char **der, size_t *len);

/* Frees the set.  Accepts NULL. */
void km_jwks_free(km_jwks *s);

/* ---- tokens -------------------------------------------------------------------------------- */

/* What the token's header says (filled by km_jwt_inspect / km_jwt_verify as far as parsing got). */
typedef struct km_jwt_info {
    char alg[16]; /* "" when absent */
    char kid[96]; /* "" when absent (truncated if longer) */
} km_jwt_info;

/* Structural check only: three base64url parts, header and payload JSON objects, a supported
 * alg, a signature of the right length for ES*.  Returns KM_JWT_VALID when the token is
 * well-formed (the signature is NOT checked), else KM_JWT_MALFORMED or KM_JWT_BAD_ALG.  info may
 * be NULL.  On allocation failure it returns KM_JWT_MALFORMED (safe: such tokens are reported,
 * never changed). */
km_jwt_result km_jwt_inspect(const char *token, size_t len, km_jwt_info *info);

/* km_jwt_inspect plus what a signature check needs: on KM_JWT_VALID *sig is a malloc'ed copy of
 * the decoded signature (*sig_len bytes, caller frees) and *signed_len the length of the signed
 * prefix "header.payload" of token.  On any other result the three outputs are untouched. */
km_jwt_result km_jwt_signature(const char *token, size_t len, km_jwt_info *info,
                               unsigned char **sig, size_t *sig_len, size_t *signed_len);

/* Verifies the token (len bytes, need not be NUL-terminated) against keys (see the file comment
 * for the key-selection rules).  info may be NULL.  keys may be NULL (= empty set). */
km_jwt_result km_jwt_verify(const km_jwks *keys, const char *token, size_t len, km_jwt_info *info);

#endif
