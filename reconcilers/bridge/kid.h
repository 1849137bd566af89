/* kid.h — reconcilers/bridge: the pure rules of the zero-downtime bridge (no I/O).
 *
 * After a PKI rebuild the old service-account public key can be handed back to kube-apiserver
 * (a second --service-account-key-file, "the bridge"): tokens signed by the lost key are then
 * valid again.  Such a token is "bridged", not healthy: it must still be regenerated, and the
 * bridge can only go once nothing depends on the old key.  Keys are named by their Kubernetes
 * key id: kid = base64url(SHA-256(SubjectPublicKeyInfo DER)), as kube-apiserver derives it
 * (keyIDFromPublicKey, pkg/serviceaccount/jwt.go).
 *
 * Folder map: kid.h (this file, the rules), keyrecover.h (the public key from tokens it signed),
 * cluster.h (what the cluster tells: current keys, the signing key, old tokens, the snapshot),
 * snapshot.h (the steady-state snapshot ConfigMap and its operator runnable), keys.c (the
 * `kubemend keys` jobs), retire.c (the BridgeRetirable condition). */
#ifndef KM_BRIDGE_KID_H
#define KM_BRIDGE_KID_H

#include <stddef.h>

#include "operator/base/err.h"

#define KM_BRIDGE_KID_LEN 43 /* base64url of 32 bytes, unpadded */

/* How a token stands against the current signing key. */
typedef enum km_bridge_class {
    KM_BRIDGE_UNKNOWN = 0, /* no signing kid known, or the token has no kid / is malformed */
    KM_BRIDGE_CURRENT,     /* its kid is the current signing key's */
    KM_BRIDGE_OLD,         /* its kid names another key: valid only through a bridge */
} km_bridge_class;

/* Classifies token (borrowed, NUL-terminated) by its header's kid against signing_kid (the kid
 * of the key kube-apiserver signs new tokens with; NULL or "" = unknown).  Never fails. */
km_bridge_class km_bridge_classify(const char *token, const char *signing_kid);

/* The kid header of token into kid (size n >= 1); "" when the token is malformed or has none. */
void km_bridge_token_kid(const char *token, char *kid, size_t n);

/* The Kubernetes kid of a SubjectPublicKeyInfo DER (len bytes) into kid (size >= 44).
 * Failure: KM_EINVAL (n too small), KM_ENOMEM (OpenSSL); kid untouched. */
km_status km_bridge_kid_of_spki(const unsigned char *der, size_t len, char *kid, size_t n);

/* The PEM ("-----BEGIN PUBLIC KEY-----") of a SubjectPublicKeyInfo DER.  On success *pem is
 * malloc'ed (caller frees).  Failure: KM_ENOMEM; *pem untouched. */
km_status km_bridge_spki_pem(const unsigned char *der, size_t len, char **pem);

/* The kid of the first public key in a PEM text (n bytes), e.g. sa.pub, into kid (size >= 44).
 * Failure: KM_EPARSE (no PEM public key), KM_ENOMEM; kid untouched. */
km_status km_bridge_kid_of_pem(const char *pem, size_t n, char *kid, size_t kn);

#endif
