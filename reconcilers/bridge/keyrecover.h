/* keyrecover.h — recover a lost service-account signing key's PUBLIC half from tokens it signed.
 *
 * Pure computation (GMP + OpenSSL 3), no I/O.  Input: compact-JWS tokens (e.g. the data.token of
 * stale token Secrets).  Output: the public keys that provably signed them, each as PEM
 * (SubjectPublicKeyInfo) with its Kubernetes key id — kid = base64url(SHA-256(SPKI DER)), as
 * kube-apiserver's keyIDFromPublicKey (pkg/serviceaccount/jwt.go) derives it.
 *
 * RS256: a token's signature s and its encoded message EM (EMSA-PKCS1-v1_5 of the SHA-256 of
 *   "header.payload", as long as s) satisfy s^e = EM (mod n), so n divides s^e - EM.  n is the gcd
 *   of two such numbers with the small primes (< 2^16) divided out; it must then have as many
 *   bytes as the signature and at most 8 * len(s) bits (any cofactor left above 2^16 would make
 *   it longer).  Further tokens only cost a modular power each.  e = 3 is tried first
 *   (microseconds; `openssl genrsa -3` keys are valid --service-account-key-file input), then
 *   e = 65537 (kubeadm's and Go's keys).  s^65537 has 65537 * 8 * len(s) bits: the gcd is the long
 *   step.  Measured per pair (GMP 6.2, one x86-64 core): 2048 bits ~50 s CPU and 160 MB peak RSS,
 *   4096 bits ~2 min CPU and 310 MB.
 *   One token alone never yields an RSA key.
 * ES256/ES384/ES512 (P-256/P-384/P-521): ECDSA public-key recovery gives up to 4 candidate
 *   points per token; a point is a key when it is a candidate of two tokens, or of one token whose
 *   kid header equals the point's kid.
 *
 * Safety: a token is attributed to a key only when the key verifies it (km_jwt_verify, the
 * project's verifier, against the key as a JWK) and the token's kid, when it has one, equals the
 * key's kid.  Only tokens with the same kid (or without one) are ever paired.  A key is returned
 * only when it verifies tokens over two different signed messages ("header.payload"; copies of
 * one token, or an ECDSA signature and its (r, n - s) twin, count once) or a token's kid names it;
 * a wrong pairing (different keys, a tampered token) yields nothing, never a wrong key.
 *
 * `proven` says a token's kid header named the recovered key: the key signed that token.  It
 * does NOT say who made the token — whoever can write a token somewhere the caller reads can sign
 * it with a key of their own and its kid.  Deciding which tokens (and so which keys) to trust
 * before bridging is the caller's job. */
#ifndef KM_KEYRECOVER_H
#define KM_KEYRECOVER_H

#include <stddef.h>

#include "operator/err.h"

/* The long steps announced to the progress callback (RSA only; EC work takes milliseconds). */
typedef enum km_keyrecover_step {
    KM_KEYRECOVER_POWER, /* s^e - EM of one token of the pair (a second or so) */
    KM_KEYRECOVER_GCD,   /* gcd of the pair's two numbers: the long step (minutes) */
    KM_KEYRECOVER_CHECK, /* checking a candidate modulus against the tokens */
} km_keyrecover_step;

typedef struct km_keyrecover_event {
    km_keyrecover_step step;
    unsigned bits;     /* modulus size being worked on (8 * signature length) */
    unsigned pair;     /* 1-based number of this pair attempt */
    unsigned max_pair; /* the attempt budget (opts.max_pairs) */
} km_keyrecover_event;

typedef struct km_keyrecover_opts {
    /* Called before each long step; may be NULL.  Must not call back into this module. */
    void (*progress)(void *user, const km_keyrecover_event *ev);
    void *user;
    /* Budget of RSA pair attempts (with e = 65537 each one is a gcd of minutes); 0 = 6.  When
     * it runs out before every eligible pair was tried, km_keyrecover_exhausted() says so. */
    unsigned max_pairs;
    /* RSA public exponent: 3 or 65537 only; 0 = 3 (free), then 65537. */
    unsigned long e;
    /* Largest RSA key tried, in bits; 0 = 4096, at most 8192.  Larger signatures are counted as
     * unmatched (memory grows with the size: ~150 MB at 2048 bits, ~300 MB at 4096). */
    unsigned max_rsa_bits;
} km_keyrecover_opts;

/* One recovered key.  Strings are borrowed from the result set. */
typedef struct km_keyrecover_key {
    const char *kid; /* base64url(SHA-256(SPKI DER)), 43 characters */
    const char *alg; /* "RS256", "ES256", "ES384" or "ES512" */
    const char *pem; /* "-----BEGIN PUBLIC KEY-----\n...-----END PUBLIC KEY-----\n" */
    unsigned bits;   /* RSA modulus bits; EC field bits (256, 384, 521) */
    unsigned long e; /* RSA public exponent; 0 for EC */
    size_t tokens;   /* tokens attributed to it (each one verified) */
    int proven;      /* 1 when an attributed token's kid header equals kid */
} km_keyrecover_key;

typedef struct km_keyrecover km_keyrecover;

/* Recovers the keys behind tokens[0..n) (borrowed NUL-terminated strings; NULL entries count as
 * malformed).  opts may be NULL (defaults).  On success *out is a new result set (caller frees
 * with km_keyrecover_free); it may hold zero keys — tokens that fit no key are counted, not an
 * error.  On failure (KM_EINVAL: tokens NULL with n > 0, max_rsa_bits > 8192, e not 0, 3 or
 * 65537; KM_ENOMEM) *out is untouched and err says why.  GMP aborts the process if it cannot
 * allocate. */
km_status km_keyrecover_run(const char *const *tokens, size_t n, const km_keyrecover_opts *opts,
                            km_keyrecover **out, km_err *err);

/* Number of recovered keys. */
size_t km_keyrecover_count(const km_keyrecover *r);

/* Key i (borrowed, valid until km_keyrecover_free), NULL when i is out of range. */
const km_keyrecover_key *km_keyrecover_key_at(const km_keyrecover *r, size_t i);

/* The index of the key token i was attributed to, -1 when none (or i out of range). */
long km_keyrecover_token_key(const km_keyrecover *r, size_t i);

/* Well-formed RS256/ES* tokens that fit no recovered key. */
size_t km_keyrecover_unmatched(const km_keyrecover *r);

/* Tokens that are malformed or use another algorithm (none, HS*, RS384, ...). */
size_t km_keyrecover_rejected(const km_keyrecover *r);

/* 1 when the pair budget ran out while untried RSA pairs remained (more tokens might yield more
 * keys with a larger max_pairs), else 0. */
int km_keyrecover_exhausted(const km_keyrecover *r);

/* Frees the result set.  Accepts NULL. */
void km_keyrecover_free(km_keyrecover *r);

#endif
