/* testcsr.h — build PKCS#10 CSRs and CSR/Node objects in C for unit tests (OpenSSL 3).
 *
 * Test helpers: failures abort the test process (they never return NULL). */
#ifndef KM_TESTCSR_H
#define KM_TESTCSR_H

#include <cjson/cJSON.h>

typedef struct testcsr_spec {
    const char *key_type;       /* "ec" (P-256, default) or "rsa" (2048) */
    const char *const *subject; /* NULL-terminated "CN=..."/"O=..."/"OU=..." entries, in order */
    const char *const *sans;    /* NULL-terminated "DNS:x", "IP:1.2.3.4", "email:x", "URI:x" */
    int bad_signature;          /* sign with a different key than the one in the request */
} testcsr_spec;

/* A CSR as base64(PEM) — the value of a CSR's spec.request.  Caller frees with free(). */
char *testcsr_request_b64(const testcsr_spec *spec);

/* A certificates.k8s.io/v1 CertificateSigningRequest object.  groups and usages are
 * NULL-terminated; request may be NULL (no spec.request); expiration < 0 = absent.  Caller frees
 * with cJSON_Delete. */
cJSON *testcsr_object(const char *name, const char *signer, const char *username,
                      const char *const *groups, const char *const *usages, const char *request,
                      long expiration);

/* A v1 Node with status.addresses given as NULL-terminated "Type=address" strings.  Caller frees
 * with cJSON_Delete. */
cJSON *testcsr_node(const char *name, const char *const *addresses);

/* Reads a whole file (e.g. a fixture) as a parsed JSON document; caller frees. */
cJSON *testcsr_load_json(const char *path);

#endif
