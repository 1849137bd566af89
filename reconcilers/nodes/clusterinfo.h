/* clusterinfo.h — the pure rules of kube-public/cluster-info (kubeadm's discovery ConfigMap):
 * the discovery hash of a CA and the CA inside the ConfigMap's kubeconfig.  No I/O.
 *
 * kubeadm join --discovery-token-ca-cert-hash sha256:<hex> pins the SHA-256 of the CA
 * certificate's DER SubjectPublicKeyInfo; the joining node fetches cluster-info anonymously,
 * checks its JWS signature (jws-kubeconfig-<token-id>, re-signed by the controller-manager's
 * bootstrap signer whenever data.kubeconfig changes) and that one CA of its kubeconfig matches
 * the pin.  After a PKI rebuild the kubeconfig still holds the lost CA: joins fail. */
#ifndef KM_CLUSTERINFO_H
#define KM_CLUSTERINFO_H

#include <stddef.h>

#include "operator/base/err.h"

/* "sha256:" + 64 hex digits + NUL. */
#define KM_CLUSTERINFO_HASH_MAX 72

/* The discovery hash of the first certificate of ca_pem into out ("sha256:<hex>").
 * Failure: KM_EPARSE (no certificate, or OpenSSL cannot read it; the data is never echoed),
 * KM_ENOMEM; out untouched. */
km_status km_clusterinfo_hash(const char *ca_pem, char out[KM_CLUSTERINFO_HASH_MAX], km_err *err);

/* What a cluster-info kubeconfig says: its one cluster's server and CA.  Strings malloc'ed,
 * freed by km_clusterinfo_doc_cleanup. */
typedef struct km_clusterinfo_doc {
    char *server; /* clusters[0].cluster.server */
    char *ca_pem; /* certificate-authority-data, decoded */
} km_clusterinfo_doc;

/* Frees the strings of d (d itself is the caller's); accepts NULL. */
void km_clusterinfo_doc_cleanup(km_clusterinfo_doc *d);

/* Reads kubeconfig (the YAML or JSON text of data.kubeconfig): exactly one cluster, with a
 * server and base64 certificate-authority-data.  Failure: KM_EPARSE with what is unexpected
 * (not YAML, no or several clusters, certificate-authority instead of -data, bad base64), or
 * KM_ENOMEM; *out untouched. */
km_status km_clusterinfo_read(const char *kubeconfig, km_clusterinfo_doc *out, km_err *err);

/* The kubeconfig text with its CA replaced by ca_pem (base64-encoded into the one
 * certificate-authority-data value; every other byte of the text kept, the server included).
 * The result is read back (km_clusterinfo_read) and must name the same server and ca_pem.
 * On success *out is malloc'ed (caller frees).  Failure: km_clusterinfo_read's errors for the
 * input, KM_EPARSE when the value is not a plain scalar on its key's line (a layout this
 * function does not rewrite), KM_ENOMEM; *out untouched. */
km_status km_clusterinfo_replace_ca(const char *kubeconfig, const char *ca_pem, char **out,
                                    km_err *err);

#endif
