/* test_keyrecover.c — reconcilers/bridge/keyrecover: recovering signing public keys from tokens.
 *
 * RSA with e = 65537 costs one gcd of multi-megabyte numbers per pair (minutes): only three tests
 * do that (2048 and 4096 bits with generated keys, 2048 bits with the real apiserver's tokens);
 * KM_TEST_QUICK=1 skips them; KM_TEST_FILTER='test_rsa4096*' runs only the matching tests (to time
 * one recovery).  The pairing, kid and tampering rules are exercised with e = 3
 * keys (the same code with an exponent whose gcd is instant). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "operator/base64.h"
#include "operator/json.h"
#include "reconcilers/bridge/keyrecover.h"
#include "tests/unit/support/testpki.h"

#define FIXTURES "../shared/fixtures/kube-apiserver-1.19/"

typedef struct keys {
    EVP_PKEY *rsa, *c3, *d3, *ec_e, *ec_f;
} keys;

/* An RSA key with public exponent 3. */
static EVP_PKEY *rsa_e3(unsigned bits)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    BIGNUM *e = BN_new();
    assert_true(ctx && e && BN_set_word(e, 3) && EVP_PKEY_keygen_init(ctx) == 1 &&
                EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) == 1 &&
                EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e) == 1 && EVP_PKEY_keygen(ctx, &k) == 1);
    BN_free(e);
    EVP_PKEY_CTX_free(ctx);
    return k;
}

static int setup(void **state)
{
    keys *k = calloc(1, sizeof(*k));
    k->rsa = testpki_key("rsa");
    k->c3 = rsa_e3(2048);
    k->d3 = rsa_e3(2048);
    k->ec_e = testpki_key("ec");
    k->ec_f = testpki_key("ec");
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    keys *k = *state;
    EVP_PKEY_free(k->rsa);
    EVP_PKEY_free(k->c3);
    EVP_PKEY_free(k->d3);
    EVP_PKEY_free(k->ec_e);
    EVP_PKEY_free(k->ec_f);
    free(k);
    return 0;
}

/* Kubernetes' kid of key: base64url(SHA-256(SPKI DER)), computed here independently. */
static char *kid_of(EVP_PKEY *key)
{
    unsigned char *der = NULL, h[32];
    unsigned hl = 0;
    int n = i2d_PUBKEY(key, &der);
    assert_true(n > 0 && EVP_Digest(der, (size_t)n, h, &hl, EVP_sha256(), NULL) == 1);
    OPENSSL_free(der);
    return testpki_b64url(h, hl);
}

/* A token of key signed over a payload naming sub; kid: 1 = the key's own, 0 = none. */
static char *token(EVP_PKEY *key, const char *alg, int kid, const char *sub)
{
    char payload[256];
    snprintf(payload, sizeof(payload),
             "{\"iss\":\"kubernetes/serviceaccount\",\"sub\":\"system:serviceaccount:%s\"}", sub);
    char *k = kid ? kid_of(key) : NULL;
    char *t = testpki_jwt(key, alg, k, payload);
    free(k);
    return t;
}

/* The token with one character of its signature part changed. */
static char *tamper_sig(const char *tok)
{
    char *t = strdup(tok);
    char *sig = strrchr(t, '.') + 1;
    char *c = sig + strlen(sig) / 2;
    *c = *c == 'A' ? 'B' : 'A';
    return t;
}

/* The token with its payload replaced (header and signature kept). */
static char *tamper_payload(const char *tok)
{
    const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    const char *p = "{\"iss\":\"kubernetes/serviceaccount\",\"sub\":\"system:admin\"}";
    char *b = testpki_b64url(p, strlen(p));
    size_t n = (size_t)(d1 - tok) + strlen(b) + strlen(d2) + 2;
    char *t = malloc(n);
    snprintf(t, n, "%.*s.%s%s", (int)(d1 - tok), tok, b, d2);
    free(b);
    return t;
}

/* The ECDSA token with s replaced by order - s: the same signature's malleable twin. */
static char *malleate(const char *tok, EVP_PKEY *key)
{
    const char *d2 = strrchr(tok, '.');
    unsigned char *raw = NULL;
    size_t n = 0;
    assert_int_equal(km_base64_decode(d2 + 1, strlen(d2 + 1), KM_B64_URL, &raw, &n), KM_OK);
    char group[32];
    assert_true(EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                               sizeof(group), NULL));
    EC_GROUP *g = EC_GROUP_new_by_curve_name(OBJ_sn2nid(group));
    BIGNUM *s = BN_bin2bn(raw + n / 2, (int)(n / 2), NULL);
    assert_true(g && s && BN_sub(s, EC_GROUP_get0_order(g), s) &&
                BN_bn2binpad(s, raw + n / 2, (int)(n / 2)) == (int)(n / 2));
    char *sig = testpki_b64url(raw, n);
    size_t len = (size_t)(d2 - tok) + strlen(sig) + 2;
    char *t = malloc(len);
    snprintf(t, len, "%.*s.%s", (int)(d2 - tok), tok, sig);
    free(sig);
    BN_free(s);
    EC_GROUP_free(g);
    free(raw);
    return t;
}

typedef struct progress_log {
    int events[3]; /* per km_keyrecover_step */
    km_keyrecover_event last;
} progress_log;

static void on_progress(void *user, const km_keyrecover_event *ev)
{
    progress_log *p = user;
    p->events[ev->step]++;
    p->last = *ev;
}

static km_keyrecover *run(char **toks, size_t n, km_keyrecover_opts *o)
{
    km_keyrecover *r = NULL;
    km_err err = {0};
    if (km_keyrecover_run((const char *const *)toks, n, o, &r, &err) != KM_OK)
        fail_msg("km_keyrecover_run: %s", err.message);
    assert_non_null(r);
    return r;
}

/* Asserts that key i of r is key (same public key, PEM and kid), with alg and `tokens` tokens. */
static void assert_key(const km_keyrecover *r, size_t i, EVP_PKEY *key, const char *alg,
                       size_t tokens, int proven)
{
    const km_keyrecover_key *k = km_keyrecover_key_at(r, i);
    assert_non_null(k);
    assert_string_equal(k->alg, alg);
    assert_int_equal(k->tokens, tokens);
    assert_int_equal(k->proven, proven);
    char *kid = kid_of(key);
    assert_string_equal(k->kid, kid);
    free(kid);
    assert_non_null(strstr(k->pem, "-----BEGIN PUBLIC KEY-----\n"));
    BIO *b = BIO_new_mem_buf(k->pem, -1);
    EVP_PKEY *got = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    assert_non_null(got);
    assert_int_equal(EVP_PKEY_eq(got, key), 1);
    EVP_PKEY_free(got);
    BIO_free(b);
}

static void free_all(char **toks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(toks[i]);
}

static int slow_skipped(void)
{
    const char *q = getenv("KM_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* ---- RSA, e = 65537 (slow) ------------------------------------------------------------------ */

static void test_rsa2048_three_tokens(void **state)
{
    if (slow_skipped())
        skip();
    keys *k = *state;
    EVP_PKEY *other = testpki_key("rsa");
    char *t[8];
    t[0] = token(k->rsa, "RS256", 1, "app1:a");
    t[1] = token(k->rsa, "RS256", 1, "app1:b");
    t[2] = token(k->rsa, "RS256", 1, "app1:c");
    t[3] = token(k->rsa, "RS256", 0, "app1:no-kid"); /* fits: kid-less */
    t[4] = tamper_sig(t[0]);                         /* kid of the key, signature changed */
    t[5] = tamper_payload(t[1]);                     /* kid of the key, payload changed */
    t[6] = token(other, "RS256", 1, "app2:a");       /* one token of another key */
    t[7] = strdup(t[2]);                             /* a copy: attributed, no new message */
    progress_log log = {0};
    km_keyrecover_opts o = {.progress = on_progress, .user = &log};
    km_keyrecover *r = run(t, 8, &o);

    assert_int_equal(km_keyrecover_count(r), 1);
    assert_key(r, 0, k->rsa, "RS256", 5, 1);
    assert_int_equal(km_keyrecover_key_at(r, 0)->bits, 2048);
    assert_int_equal(km_keyrecover_key_at(r, 0)->e, 65537);
    static const long want[] = {0, 0, 0, 0, -1, -1, -1, 0};
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(km_keyrecover_token_key(r, i), want[i]);
    assert_int_equal(km_keyrecover_unmatched(r), 3);
    assert_int_equal(km_keyrecover_rejected(r), 0);
    assert_int_equal(km_keyrecover_exhausted(r), 0);
    /* one pair, announced: two powers, one gcd, one check */
    assert_int_equal(log.events[KM_KEYRECOVER_POWER], 2);
    assert_int_equal(log.events[KM_KEYRECOVER_GCD], 1);
    assert_int_equal(log.events[KM_KEYRECOVER_CHECK], 1);
    assert_int_equal(log.last.bits, 2048);
    assert_int_equal(log.last.pair, 1);
    assert_int_equal(log.last.max_pair, 6);
    km_keyrecover_free(r);
    free_all(t, 8);
    EVP_PKEY_free(other);
}

static void test_rsa4096_two_tokens_without_kid(void **state)
{
    (void)state;
    if (slow_skipped())
        skip();
    EVP_PKEY *key = testpki_key("rsa:4096");
    char *t[2] = {token(key, "RS256", 0, "a:a"), token(key, "RS256", 0, "a:b")};
    km_keyrecover *r = run(t, 2, NULL);
    assert_int_equal(km_keyrecover_count(r), 1);
    assert_key(r, 0, key, "RS256", 2, 0); /* verified by both, but no kid names it */
    assert_int_equal(km_keyrecover_key_at(r, 0)->bits, 4096);
    assert_int_equal(km_keyrecover_unmatched(r), 0);
    km_keyrecover_free(r);
    free_all(t, 2);
    EVP_PKEY_free(key);
}

/* data.token of every item (or of the object itself) in a recorded Secret response. */
static size_t fixture_tokens(const char *file, char **out, size_t n, size_t max)
{
    char path[512];
    snprintf(path, sizeof(path), FIXTURES "%s", file);
    char *text = testpki_read_file(path, NULL);
    assert_non_null(text);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    assert_non_null(doc);
    const cJSON *items = KM_JSON_AT(doc, "items");
    const cJSON *it = NULL;
    for (int i = 0; i < (items ? cJSON_GetArraySize(items) : 1) && n < max; i++) {
        it = items ? cJSON_GetArrayItem(items, i) : doc;
        const char *b64 = KM_JSON_STR(it, "data", "token");
        unsigned char *raw = NULL;
        size_t len = 0;
        if (b64 && km_base64_decode(b64, strlen(b64), 0, &raw, &len) == KM_OK)
            out[n++] = (char *)raw;
    }
    cJSON_Delete(doc);
    return n;
}

/* Tokens a real kube-apiserver 1.19 signed (recorded after the seed's key rotation): the old key
 * comes back from its stale token Secrets, and its computed kid is the one the apiserver wrote
 * into their headers — our kid derivation is Kubernetes'. */
static void test_real_apiserver_tokens(void **state)
{
    (void)state;
    if (slow_skipped())
        skip();
    char *t[16];
    size_t n = 0;
    n = fixture_tokens("get-secret-app1-worker-token-after-rotation.json", t, n, 16);    /* old */
    n = fixture_tokens("list-secrets-kube-system-inconsistent-continue.json", t, n, 16); /* old */
    n = fixture_tokens("get-secret-fx-sa-token.json", t, n, 16);      /* new key */
    n = fixture_tokens("list-secrets-sa-token-page2.json", t, n, 16); /* old + new */
    assert_true(n >= 6);
    /* one attempt: the old key's group comes first; the new key's pair is left (budget) */
    km_keyrecover_opts o = {.max_pairs = 1};
    km_keyrecover *r = run(t, n, &o);
    assert_int_equal(km_keyrecover_count(r), 1);
    const km_keyrecover_key *k = km_keyrecover_key_at(r, 0);
    assert_string_equal(k->kid, "GYcM8N4QxWGCadHaBuNkt08bgkk0famNW0qnOVBaWLE");
    assert_int_equal(k->proven, 1);
    assert_int_equal(k->bits, 2048);
    assert_int_equal(k->e, 65537);
    assert_int_equal(k->tokens, 4); /* app1:worker, two kube-system, default:default */
    assert_int_equal(km_keyrecover_unmatched(r), n - 4);
    assert_int_equal(km_keyrecover_exhausted(r), 1);
    km_keyrecover_free(r);
    free_all(t, n);
}

/* ---- RSA rules (no gcd of note) ---------------------------------------------------------------
 */

static void test_rsa_single_copies_and_kids_never_paired(void **state)
{
    keys *k = *state;
    EVP_PKEY *other = testpki_key("rsa");
    progress_log log = {0};
    km_keyrecover_opts o = {.progress = on_progress, .user = &log};

    char *one[1] = {token(k->rsa, "RS256", 1, "a:a")};
    km_keyrecover *r = run(one, 1, &o); /* one token: no key, not guessed */
    assert_int_equal(km_keyrecover_count(r), 0);
    assert_int_equal(km_keyrecover_unmatched(r), 1);
    assert_int_equal(km_keyrecover_token_key(r, 0), -1);
    km_keyrecover_free(r);

    char *copies[2] = {one[0], strdup(one[0])}; /* the same message twice is one token */
    r = run(copies, 2, &o);
    assert_int_equal(km_keyrecover_count(r), 0);
    assert_int_equal(km_keyrecover_unmatched(r), 2);
    km_keyrecover_free(r);
    free(copies[1]);

    char *kids[2] = {one[0], token(other, "RS256", 1, "a:b")}; /* different kids: no pair */
    r = run(kids, 2, &o);
    assert_int_equal(km_keyrecover_count(r), 0);
    km_keyrecover_free(r);
    free(kids[1]);
    assert_int_equal(log.events[KM_KEYRECOVER_GCD], 0); /* none of that cost a gcd */
    free(one[0]);
    EVP_PKEY_free(other);
}

static void test_rsa_mixed_keys(void **state)
{
    keys *k = *state;
    km_keyrecover_opts o = {.e = 3, .max_pairs = 20};
    for (int kid = 1; kid >= 0; kid--) {
        char *t[5] = {token(k->c3, "RS256", kid, "c:1"), token(k->d3, "RS256", kid, "d:1"),
                      token(k->c3, "RS256", kid, "c:2"), token(k->d3, "RS256", kid, "d:2"),
                      token(k->c3, "RS256", kid, "c:3")};
        km_keyrecover *r = run(t, 5, &o);
        assert_int_equal(km_keyrecover_count(r), 2);
        long c = km_keyrecover_token_key(r, 0), d = km_keyrecover_token_key(r, 1);
        assert_true(c >= 0 && d >= 0 && c != d);
        assert_key(r, (size_t)c, k->c3, "RS256", 3, kid);
        assert_key(r, (size_t)d, k->d3, "RS256", 2, kid);
        assert_int_equal(km_keyrecover_key_at(r, 0)->e, 3);
        static const int owner[] = {0, 1, 0, 1, 0}; /* 0 = c, 1 = d */
        for (size_t i = 0; i < 5; i++)
            assert_int_equal(km_keyrecover_token_key(r, i), owner[i] ? d : c);
        assert_int_equal(km_keyrecover_unmatched(r), 0);
        km_keyrecover_free(r);
        free_all(t, 5);
    }
}

static void test_rsa_tampered_and_misleading(void **state)
{
    keys *k = *state;
    km_keyrecover_opts o = {.e = 3};
    char *good1 = token(k->c3, "RS256", 1, "c:1"), *good2 = token(k->c3, "RS256", 1, "c:2");

    /* tampered tokens first: their pairs fail, the genuine pair still yields the key */
    char *t[4] = {tamper_payload(good1), good1, good2, tamper_sig(good2)};
    km_keyrecover *r = run(t, 4, &o);
    assert_int_equal(km_keyrecover_count(r), 1);
    assert_key(r, 0, k->c3, "RS256", 2, 1);
    assert_int_equal(km_keyrecover_token_key(r, 0), -1);
    assert_int_equal(km_keyrecover_token_key(r, 3), -1);
    assert_int_equal(km_keyrecover_unmatched(r), 2);
    km_keyrecover_free(r);

    /* a tampered token and one genuine token: nothing */
    char *pair[2] = {t[0], good1};
    r = run(pair, 2, &o);
    assert_int_equal(km_keyrecover_count(r), 0);
    assert_int_equal(km_keyrecover_unmatched(r), 2);
    km_keyrecover_free(r);
    free(t[0]);
    free(t[3]);

    /* tokens of key c whose kid names key d: the math finds c, the kid refuses it */
    char *dkid = kid_of(k->d3);
    char *m[2] = {testpki_jwt(k->c3, "RS256", dkid, "{\"sub\":\"x\"}"),
                  testpki_jwt(k->c3, "RS256", dkid, "{\"sub\":\"y\"}")};
    r = run(m, 2, &o);
    assert_int_equal(km_keyrecover_count(r), 0);
    assert_int_equal(km_keyrecover_unmatched(r), 2);
    km_keyrecover_free(r);
    free_all(m, 2);
    free(dkid);
    free(good1);
    free(good2);
}

static void test_rsa_pair_budget(void **state)
{
    keys *k = *state;
    char *t[3] = {token(k->c3, "RS256", 1, "c:1"), token(k->c3, "RS256", 1, "c:2"),
                  token(k->c3, "RS256", 1, "c:3")};
    char *bad = tamper_payload(t[1]);
    free(t[1]);
    t[1] = bad; /* c:1, bad, c:3: neighbours (c:1, bad) and (bad, c:3) fail first */
    km_keyrecover_opts o = {.e = 3, .max_pairs = 2};
    km_keyrecover *r = run(t, 3, &o);
    assert_int_equal(km_keyrecover_count(r), 0);
    assert_int_equal(km_keyrecover_exhausted(r), 1);
    km_keyrecover_free(r);
    o.max_pairs = 3;
    r = run(t, 3, &o);
    assert_int_equal(km_keyrecover_count(r), 1);
    assert_key(r, 0, k->c3, "RS256", 2, 1);
    assert_int_equal(km_keyrecover_exhausted(r), 0);
    km_keyrecover_free(r);
    free_all(t, 3);
}

/* ---- ECDSA ------------------------------------------------------------------------------------
 */

static void test_es256(void **state)
{
    keys *k = *state;
    /* two tokens without kid: the shared candidate */
    char *two[2] = {token(k->ec_e, "ES256", 0, "e:1"), token(k->ec_e, "ES256", 0, "e:2")};
    km_keyrecover *r = run(two, 2, NULL);
    assert_int_equal(km_keyrecover_count(r), 1);
    assert_key(r, 0, k->ec_e, "ES256", 2, 0);
    assert_int_equal(km_keyrecover_key_at(r, 0)->bits, 256);
    assert_int_equal(km_keyrecover_key_at(r, 0)->e, 0);
    km_keyrecover_free(r);

    /* one token: only its kid can pick the candidate */
    char *one[1] = {token(k->ec_e, "ES256", 1, "e:3")};
    r = run(one, 1, NULL);
    assert_int_equal(km_keyrecover_count(r), 1);
    assert_key(r, 0, k->ec_e, "ES256", 1, 1);
    km_keyrecover_free(r);
    r = run(two, 1, NULL); /* one kid-less token: nothing */
    assert_int_equal(km_keyrecover_count(r), 0);
    assert_int_equal(km_keyrecover_unmatched(r), 1);
    km_keyrecover_free(r);

    /* copies and the (r, n - s) twin sign no second message: no key */
    char *same[2] = {two[0], strdup(two[0])};
    char *twin[2] = {two[0], malleate(two[0], k->ec_e)};
    r = run(same, 2, NULL);
    assert_int_equal(km_keyrecover_count(r), 0);
    km_keyrecover_free(r);
    r = run(twin, 2, NULL);
    assert_int_equal(km_keyrecover_count(r), 0);
    assert_int_equal(km_keyrecover_unmatched(r), 2);
    km_keyrecover_free(r);
    free(same[1]);
    free(twin[1]);
    free_all(two, 2);
    free(one[0]);
}

static void test_es256_mixed_and_tampered(void **state)
{
    keys *k = *state;
    char *t[7] = {token(k->ec_e, "ES256", 1, "e:1"),
                  token(k->ec_f, "ES256", 1, "f:1"),
                  token(k->ec_e, "ES256", 0, "e:2"),
                  token(k->ec_f, "ES256", 0, "f:2"),
                  NULL,
                  NULL,
                  token(k->ec_e, "ES256", 0, "e:3")};
    t[4] = tamper_payload(t[0]); /* kid of e, payload changed */
    t[5] = tamper_sig(t[1]);     /* kid of f, signature changed */
    km_keyrecover *r = run(t, 7, NULL);
    assert_int_equal(km_keyrecover_count(r), 2);
    long e = km_keyrecover_token_key(r, 0), f = km_keyrecover_token_key(r, 1);
    assert_true(e >= 0 && f >= 0 && e != f);
    assert_key(r, (size_t)e, k->ec_e, "ES256", 3, 1);
    assert_key(r, (size_t)f, k->ec_f, "ES256", 2, 1);
    static const int owner[] = {0, 1, 0, 1, -1, -1, 0};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(km_keyrecover_token_key(r, i), owner[i] < 0 ? -1 : owner[i] ? f : e);
    assert_int_equal(km_keyrecover_unmatched(r), 2);
    km_keyrecover_free(r);

    /* alone, a tampered token with a kid is refused: no candidate has that kid */
    r = run(t + 4, 2, NULL);
    assert_int_equal(km_keyrecover_count(r), 0);
    km_keyrecover_free(r);
    free_all(t, 7);
}

static void test_es384_es512(void **state)
{
    (void)state;
    static const struct {
        const char *type, *alg;
        unsigned bits;
    } cases[] = {{"ec:P-384", "ES384", 384}, {"ec:P-521", "ES512", 521}};
    for (size_t i = 0; i < 2; i++) {
        EVP_PKEY *key = testpki_key(cases[i].type);
        char *t[2] = {token(key, cases[i].alg, 0, "x:1"), token(key, cases[i].alg, 1, "x:2")};
        km_keyrecover *r = run(t, 2, NULL);
        assert_int_equal(km_keyrecover_count(r), 1);
        assert_key(r, 0, key, cases[i].alg, 2, 1);
        assert_int_equal(km_keyrecover_key_at(r, 0)->bits, cases[i].bits);
        km_keyrecover_free(r);
        free_all(t, 2);
        EVP_PKEY_free(key);
    }
}

/* ---- input ------------------------------------------------------------------------------------
 */

static void test_malformed_and_arguments(void **state)
{
    keys *k = *state;
    char *t[9] = {NULL,
                  strdup(""),
                  strdup("not-a-jwt"),
                  strdup("a.b.c"),
                  testpki_jwt(k->ec_e, "HS256", NULL, "{}"),
                  testpki_jwt(k->ec_e, "none", NULL, "{}"),
                  testpki_jwt(k->rsa, "RS384", NULL, "{\"a\":1}"),
                  testpki_jwt(k->rsa, "RS384", NULL, "{\"a\":2}"),
                  token(k->rsa, "RS256", 1, "a:a")};
    km_keyrecover_opts o = {.max_rsa_bits = 1024}; /* the 2048-bit token is too big: unmatched */
    km_keyrecover *r = run(t, 9, &o);
    assert_int_equal(km_keyrecover_count(r), 0);
    assert_int_equal(km_keyrecover_rejected(r), 8);
    assert_int_equal(km_keyrecover_unmatched(r), 1);
    assert_int_equal(km_keyrecover_token_key(r, 8), -1);
    assert_int_equal(km_keyrecover_token_key(r, 9), -1);
    assert_null(km_keyrecover_key_at(r, 0));
    km_keyrecover_free(r);

    r = run(NULL, 0, NULL);
    assert_int_equal(km_keyrecover_count(r), 0);
    km_keyrecover_free(r);

    static char sentinel;
    km_keyrecover *untouched = (km_keyrecover *)&sentinel;
    km_err err = {0};
    assert_int_equal(km_keyrecover_run(NULL, 1, NULL, &untouched, &err), KM_EINVAL);
    assert_ptr_equal(untouched, (km_keyrecover *)&sentinel);
    o.max_rsa_bits = 16384;
    assert_int_equal(km_keyrecover_run((const char *const *)t, 9, &o, &untouched, &err), KM_EINVAL);
    o = (km_keyrecover_opts){.e = 5};
    assert_int_equal(km_keyrecover_run((const char *const *)t, 9, &o, &untouched, &err), KM_EINVAL);
    assert_non_null(strstr(err.message, "e not 3 or 65537"));
    assert_ptr_equal(untouched, (km_keyrecover *)&sentinel);

    assert_int_equal(km_keyrecover_count(NULL), 0);
    assert_int_equal(km_keyrecover_token_key(NULL, 0), -1);
    assert_int_equal(km_keyrecover_unmatched(NULL), 0);
    assert_int_equal(km_keyrecover_rejected(NULL), 0);
    assert_int_equal(km_keyrecover_exhausted(NULL), 0);
    km_keyrecover_free(NULL);
    free_all(t, 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_and_arguments),
        cmocka_unit_test(test_rsa_single_copies_and_kids_never_paired),
        cmocka_unit_test(test_rsa_mixed_keys),
        cmocka_unit_test(test_rsa_tampered_and_misleading),
        cmocka_unit_test(test_rsa_pair_budget),
        cmocka_unit_test(test_es256),
        cmocka_unit_test(test_es256_mixed_and_tampered),
        cmocka_unit_test(test_es384_es512),
        cmocka_unit_test(test_rsa2048_three_tokens),
        cmocka_unit_test(test_rsa4096_two_tokens_without_kid),
        cmocka_unit_test(test_real_apiserver_tokens),
    };
    const char *filter = getenv("KM_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, setup, teardown);
}
