/* testpki.h — test PKI in C (OpenSSL 3): keys, CA/leaf certificates with chosen subject and
 * validity, PEM/fingerprint helpers, JWKs and signed JWTs.
 *
 * Test helpers: failures abort the test process (they never return NULL).  Returned OpenSSL
 * objects are freed with EVP_PKEY_free / X509_free, returned strings with free(). */
#ifndef KM_TESTPKI_H
#define KM_TESTPKI_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* A new key: "rsa" (2048 bits), "rsa:BITS", "ec" / "ec:P-256", "ec:P-384", "ec:P-521". */
EVP_PKEY *testpki_key(const char *type);

typedef struct testpki_cert_spec {
    const char *subject;  /* "CN=kubernetes" or "CN=x,O=y,OU=z" (comma-separated, in order) */
    time_t not_before;    /* 0 = now - 1 h */
    time_t not_after;     /* 0 = not_before + 10 years */
    int ca;               /* 1: basicConstraints CA:TRUE + keyCertSign */
    long serial;          /* 0 = random */
    EVP_PKEY *issuer_key; /* NULL = self-signed with the subject's key */
    X509 *issuer;         /* issuer certificate (names the issuer); NULL = self-signed */
} testpki_cert_spec;

/* A certificate for key's public key, signed per spec (SHA-256). */
X509 *testpki_cert(const testpki_cert_spec *spec, EVP_PKEY *key);

/* Shortcut: a self-signed CA with a new EC key (the key is freed; pass *key_out to keep it). */
X509 *testpki_ca(const char *subject, time_t not_before, time_t not_after, EVP_PKEY **key_out);

/* The certificate as PEM text ("-----BEGIN CERTIFICATE-----\n...\n-----END ...-----\n"). */
char *testpki_cert_pem(X509 *x);

/* SHA-256 of the DER as 64 lower-case hex digits (colons = 1: "AB:CD:..." upper-case). */
char *testpki_fingerprint(X509 *x, int colons);

/* The public key as a JWK object text {"kty":..,"kid":kid,"use":"sig","alg":..,...}; kid NULL =
 * no kid member. */
char *testpki_jwk(EVP_PKEY *key, const char *kid);

/* A compact JWS: header {"alg":alg[,"kid":kid]} (kid NULL = none), payload_json as given,
 * signed with key (RS*: PKCS#1 v1.5; ES*: raw r||s).  alg "none" gives an empty signature;
 * "HS256" uses the bytes of kid-less secret "secret". */
char *testpki_jwt(EVP_PKEY *key, const char *alg, const char *kid, const char *payload_json);

/* base64url without padding of n bytes. */
char *testpki_b64url(const void *p, size_t n);

/* Standard base64 with padding of n bytes (a Secret's data value). */
char *testpki_b64(const void *p, size_t n);

/* Reads a whole file; NULL (no abort) when it cannot be opened.  *len (may be NULL) = size. */
char *testpki_read_file(const char *path, size_t *len);

#endif
