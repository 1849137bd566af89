/* keyrecover.c — public-key recovery from RS256/ES* tokens (see keyrecover.h). */
#include "reconcilers/bridge/keyrecover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmp.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>

#include "reconcilers/bridge/kid.h"
#include "reconcilers/tokens/jwt.h"

#define DEFAULT_MAX_PAIRS 6u
#define DEFAULT_MAX_RSA_BITS 4096u
#define LIMIT_RSA_BITS 8192u
#define MIN_RSA_BYTES 64u /* 512-bit keys; EMSA-PKCS1-v1_5 with SHA-256 needs 62 bytes */
#define SMALL_PRIME_LIMIT 65536u
#define EC_MAX_POINT 133 /* 1 + 2 * 66 (P-521) */
#define KID_LEN 43       /* base64url of 32 bytes, unpadded */

/* ---- tokens -------------------------------------------------------------------------------- */

typedef struct curve_desc {
    const char *alg, *crv, *md;
    int nid;
    size_t bytes; /* coordinate / r / s size */
    unsigned bits;
} curve_desc;

static const curve_desc CURVES[] = {
    {"ES256", "P-256", "SHA256", NID_X9_62_prime256v1, 32, 256},
    {"ES384", "P-384", "SHA384", NID_secp384r1, 48, 384},
    {"ES512", "P-521", "SHA512", NID_secp521r1, 66, 521},
};

typedef enum tok_kind { TOK_REJECTED = 0, TOK_SKIPPED, TOK_RSA, TOK_EC } tok_kind;

typedef struct tok {
    const char *text; /* borrowed */
    size_t len;
    tok_kind kind;
    const curve_desc *curve; /* TOK_EC */
    km_jwt_info info;
    unsigned char *sig;
    size_t sig_len, signed_len;
    unsigned char digest[EVP_MAX_MD_SIZE]; /* of "header.payload" */
    unsigned digest_len;
    long key; /* index into the result's keys, -1 = none */
} tok;

typedef struct rkey {
    km_keyrecover_key pub; /* kid / pem point at the two owned strings below */
    char *kid, *pem;
} rkey;

struct km_keyrecover {
    rkey *keys;
    size_t nkeys, cap;
    long *tok_key;
    size_t ntok, unmatched, rejected;
    int exhausted;
};

typedef struct ctx {
    const km_keyrecover_opts *opts;
    km_keyrecover *res;
    tok *t;
    size_t n;
    unsigned *primes; /* < SMALL_PRIME_LIMIT, for RSA */
    size_t nprimes;
    unsigned pairs_used;
} ctx;

static int same_message(const tok *a, const tok *b)
{
    return a->digest_len == b->digest_len && memcmp(a->digest, b->digest, a->digest_len) == 0;
}

/* Classifies and decodes token i.  Returns KM_OK or KM_ENOMEM. */
static km_status load_token(ctx *c, size_t i, const char *text)
{
    tok *t = &c->t[i];
    t->key = -1;
    t->text = text;
    if (!text)
        return KM_OK;
    t->len = strlen(text);
    if (km_jwt_signature(text, t->len, &t->info, &t->sig, &t->sig_len, &t->signed_len) !=
        KM_JWT_VALID)
        return KM_OK;
    const char *md = NULL;
    if (strcmp(t->info.alg, "RS256") == 0) {
        unsigned max = c->opts->max_rsa_bits ? c->opts->max_rsa_bits : DEFAULT_MAX_RSA_BITS;
        t->kind = t->sig_len >= MIN_RSA_BYTES && t->sig_len * 8 <= max ? TOK_RSA : TOK_SKIPPED;
        md = "SHA256";
    }
    for (size_t k = 0; k < sizeof(CURVES) / sizeof(CURVES[0]); k++)
        if (strcmp(t->info.alg, CURVES[k].alg) == 0) {
            t->kind = TOK_EC;
            t->curve = &CURVES[k];
            md = CURVES[k].md;
        }
    if (!md)
        return KM_OK; /* another algorithm: rejected */
    EVP_MD *m = EVP_MD_fetch(NULL, md, NULL);
    int ok = m && EVP_Digest(text, t->signed_len, t->digest, &t->digest_len, m, NULL) == 1;
    EVP_MD_free(m);
    ERR_clear_error();
    return ok ? KM_OK : KM_ENOMEM;
}

/* ---- encodings ----------------------------------------------------------------------------- */

/* Unpadded base64url of n bytes into out (room for 4 * ceil(n / 3) + 1). */
static void b64url(const unsigned char *p, size_t n, char *out)
{
    int l = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    while (l > 0 && out[l - 1] == '=')
        l--;
    out[l] = '\0';
    for (char *q = out; *q; q++)
        *q = *q == '+' ? '-' : *q == '/' ? '_' : *q;
}

/* ---- candidate keys ------------------------------------------------------------------------ */

/* A candidate key as a one-key JWK Set, with its kid and SPKI DER. */
typedef struct cand {
    km_jwks *set;
    unsigned char *der;
    size_t der_len;
    char kid[KID_LEN + 1];
} cand;

static void cand_clear(cand *k)
{
    km_jwks_free(k->set);
    free(k->der);
    memset(k, 0, sizeof(*k));
}

/* Parses jwk (one key object) into k.  Returns KM_OK with k->set NULL when the project's JWK
 * parser refuses the key (e.g. RSA public check); KM_ENOMEM. */
static km_status cand_from_jwk(const char *jwk, cand *k)
{
    char doc[3200];
    memset(k, 0, sizeof(*k));
    if (snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", jwk) >= (int)sizeof(doc))
        return KM_ENOMEM;
    km_jwks *set = NULL;
    km_status st = km_jwks_parse(doc, strlen(doc), &set, NULL);
    if (st != KM_OK)
        return st == KM_ENOMEM ? KM_ENOMEM : KM_OK;
    if (km_jwks_count(set) != 1) {
        km_jwks_free(set);
        return KM_OK;
    }
    if (km_jwks_spki(set, 0, &k->der, &k->der_len) != KM_OK) {
        km_jwks_free(set);
        return KM_ENOMEM;
    }
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned hl = 0;
    EVP_MD *m = EVP_MD_fetch(NULL, "SHA256", NULL);
    int ok = m && EVP_Digest(k->der, k->der_len, h, &hl, m, NULL) == 1 && hl == 32;
    EVP_MD_free(m);
    ERR_clear_error();
    if (!ok) {
        free(k->der);
        k->der = NULL;
        km_jwks_free(set);
        return KM_ENOMEM;
    }
    b64url(h, hl, k->kid);
    k->set = set;
    return KM_OK;
}

/* 1 when token t may be attributed to candidate k: its kid (if any) names k and k verifies it. */
static int cand_fits(const cand *k, const tok *t)
{
    if (t->info.kid[0] && strcmp(t->info.kid, k->kid) != 0)
        return 0;
    return km_jwt_verify(k->set, t->text, t->len, NULL) == KM_JWT_VALID;
}

/* Checks candidate jwk against the unattributed tokens listed in idx[0..m) and keeps it as a
 * key when it verifies two different messages or one token whose kid names it; those tokens
 * are then attributed to it.  *accepted = 1 when kept.  KM_OK or KM_ENOMEM. */
static km_status try_key(ctx *c, const char *jwk, const char *alg, unsigned bits, unsigned long e,
                         const size_t *idx, size_t m, int *accepted)
{
    km_status st = KM_OK;
    km_keyrecover *r = c->res;
    size_t *fit = NULL, nfit = 0;
    char *kid = NULL, *pem = NULL;
    cand k;
    *accepted = 0;
    if ((st = cand_from_jwk(jwk, &k)) != KM_OK || !k.set)
        goto out;
    fit = malloc((m ? m : 1) * sizeof(*fit));
    if (!fit) {
        st = KM_ENOMEM;
        goto out;
    }
    int proven = 0, two = 0;
    for (size_t j = 0; j < m; j++) {
        const tok *t = &c->t[idx[j]];
        if (t->key >= 0 || !cand_fits(&k, t))
            continue;
        proven |= t->info.kid[0] != '\0';
        two |= nfit > 0 && !same_message(&c->t[fit[0]], t);
        fit[nfit++] = idx[j];
    }
    if (!proven && !two)
        goto out;
    if (r->nkeys == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 4;
        rkey *nk = realloc(r->keys, cap * sizeof(*nk));
        if (!nk) {
            st = KM_ENOMEM;
            goto out;
        }
        r->keys = nk;
        r->cap = cap;
    }
    kid = strdup(k.kid);
    if (!kid || km_bridge_spki_pem(k.der, k.der_len, &pem) != KM_OK) {
        st = KM_ENOMEM;
        goto out;
    }
    rkey *nk = &r->keys[r->nkeys];
    nk->kid = kid;
    nk->pem = pem;
    nk->pub = (km_keyrecover_key){
        .kid = kid, .alg = alg, .pem = pem, .bits = bits, .e = e, .tokens = nfit, .proven = proven};
    kid = pem = NULL;
    for (size_t j = 0; j < nfit; j++)
        c->t[fit[j]].key = (long)r->nkeys;
    r->nkeys++;
    *accepted = 1;
out:
    free(kid);
    free(pem);
    free(fit);
    cand_clear(&k);
    return st;
}

/* ---- RSA ----------------------------------------------------------------------------------- */

static void announce(ctx *c, km_keyrecover_step step, unsigned bits)
{
    if (!c->opts->progress)
        return;
    km_keyrecover_event ev = {.step = step,
                              .bits = bits,
                              .pair = c->pairs_used,
                              .max_pair =
                                  c->opts->max_pairs ? c->opts->max_pairs : DEFAULT_MAX_PAIRS};
    c->opts->progress(c->opts->user, &ev);
}

static km_status sieve(ctx *c)
{
    unsigned char *composite = calloc(SMALL_PRIME_LIMIT, 1);
    c->primes = malloc(SMALL_PRIME_LIMIT / 2 * sizeof(*c->primes));
    if (!composite || !c->primes) {
        free(composite);
        return KM_ENOMEM;
    }
    for (unsigned i = 2; i < SMALL_PRIME_LIMIT; i++) {
        if (composite[i])
            continue;
        c->primes[c->nprimes++] = i;
        if (i < 256) /* 256^2 = SMALL_PRIME_LIMIT */
            for (unsigned j = i * i; j < SMALL_PRIME_LIMIT; j += i)
                composite[j] = 1;
    }
    free(composite);
    return KM_OK;
}

/* em = EMSA-PKCS1-v1_5 encoding of token t's SHA-256 digest, as long as its signature. */
static void rsa_em(mpz_t em, const tok *t)
{
    static const unsigned char sha256_info[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                0x01, 0x05, 0x00, 0x04, 0x20};
    unsigned char buf[LIMIT_RSA_BITS / 8];
    size_t k = t->sig_len, tl = sizeof(sha256_info) + 32;
    memset(buf, 0xff, k);
    buf[0] = 0x00;
    buf[1] = 0x01;
    buf[k - tl - 1] = 0x00;
    memcpy(buf + k - tl, sha256_info, sizeof(sha256_info));
    memcpy(buf + k - 32, t->digest, 32);
    mpz_import(em, k, 1, 1, 1, 0, buf);
}

/* x = s^e - EM for token t (s^e exactly: 8 * e * len(s) bits). */
static void rsa_relation(mpz_t x, const tok *t, unsigned long e)
{
    mpz_t em;
    mpz_init(em);
    rsa_em(em, t);
    mpz_import(x, t->sig_len, 1, 1, 1, 0, t->sig);
    mpz_pow_ui(x, x, e);
    mpz_sub(x, x, em);
    mpz_clear(em);
}

static void strip_small(const ctx *c, mpz_t g)
{
    if (mpz_sgn(g) == 0)
        return;
    for (size_t i = 0; i < c->nprimes; i++)
        while (mpz_divisible_ui_p(g, c->primes[i]))
            mpz_divexact_ui(g, g, c->primes[i]);
}

/* Narrows g with token t's relation taken mod g (one modular power, not a full s^e): keeps
 * gcd(g, s^e - EM mod g) unless that is shorter than a modulus of `bits` (t is then not of g's
 * key and must not spoil it). */
static void rsa_narrow(const ctx *c, mpz_t g, const tok *t, unsigned long e, unsigned bits)
{
    mpz_t x, em;
    mpz_inits(x, em, NULL);
    rsa_em(em, t);
    mpz_import(x, t->sig_len, 1, 1, 1, 0, t->sig);
    mpz_powm_ui(x, x, e, g);
    mpz_sub(x, x, em);
    mpz_gcd(x, x, g);
    strip_small(c, x);
    if (mpz_sizeinbase(x, 2) > bits - 8)
        mpz_swap(x, g);
    mpz_clears(x, em, NULL);
}

/* 1 when token b may be paired with a: same size, another message, kids compatible (pass 1:
 * equal and non-empty; pass 2: at least one absent). */
static int pairable(const tok *a, const tok *b, int pass)
{
    if (b->kind != TOK_RSA || b->key >= 0 || b->sig_len != a->sig_len || same_message(a, b))
        return 0;
    if (pass == 1)
        return a->info.kid[0] && strcmp(a->info.kid, b->info.kid) == 0;
    return !a->info.kid[0] || !b->info.kid[0];
}

/* An unattributed RSA token whose kid names a key already recovered claims a key that did not
 * verify it (tampered or forged): never worth a pair.  Also true for non-RSA and attributed
 * tokens. */
static int out_of_play(const ctx *c, const tok *t)
{
    if (t->kind != TOK_RSA || t->key >= 0)
        return 1;
    for (size_t i = 0; t->info.kid[0] && i < c->res->nkeys; i++)
        if (strcmp(c->res->keys[i].kid, t->info.kid) == 0)
            return 1;
    return 0;
}

/* The unattributed RSA tokens of a's size whose kid is a's or absent, into idx. */
static size_t rsa_pool(const ctx *c, const tok *a, size_t *idx)
{
    size_t m = 0;
    for (size_t i = 0; i < c->n; i++) {
        const tok *t = &c->t[i];
        if (t->kind == TOK_RSA && t->key < 0 && t->sig_len == a->sig_len &&
            (!t->info.kid[0] || !a->info.kid[0] || strcmp(t->info.kid, a->info.kid) == 0))
            idx[m++] = i;
    }
    return m;
}

/* Candidate modulus g from the pair (a, b) with exponent e, narrowed by the pool's other tokens
 * while the pair leaves a cofactor.  1 when g then has the signature's size. */
static int rsa_modulus(ctx *c, size_t a, size_t b, unsigned long e, const size_t *pool, size_t m,
                       mpz_t g)
{
    const tok *ta = &c->t[a], *tb = &c->t[b];
    unsigned bits = (unsigned)ta->sig_len * 8;
    int slow = e > 3;
    mpz_t x, y;
    mpz_inits(x, y, NULL);
    if (slow)
        announce(c, KM_KEYRECOVER_POWER, bits);
    rsa_relation(x, ta, e);
    if (slow)
        announce(c, KM_KEYRECOVER_POWER, bits);
    rsa_relation(y, tb, e);
    if (slow)
        announce(c, KM_KEYRECOVER_GCD, bits);
    mpz_gcd(g, x, y);
    mpz_clears(x, y, NULL);
    strip_small(c, g);
    for (size_t j = 0; j < m && mpz_sizeinbase(g, 2) > bits; j++) {
        const tok *t = &c->t[pool[j]];
        if (!same_message(t, ta) && !same_message(t, tb))
            rsa_narrow(c, g, t, e, bits);
    }
    size_t have = mpz_sizeinbase(g, 2);
    return have > bits - 8 && have <= bits;
}

/* The JWK of an RSA public key (n, e) into out (room for LIMIT_RSA_BITS). */
static void rsa_jwk(const mpz_t n, unsigned long e, char *out, size_t size)
{
    unsigned char nb[LIMIT_RSA_BITS / 8], eb[sizeof(unsigned long)];
    char n64[LIMIT_RSA_BITS / 6 + 8], e64[16];
    size_t nl = 0, el = 0;
    mpz_export(nb, &nl, 1, 1, 1, 0, n);
    for (unsigned long v = e; v; v >>= 8)
        el++;
    for (size_t i = 0; i < el; i++)
        eb[i] = (unsigned char)(e >> (8 * (el - 1 - i)));
    b64url(nb, nl, n64);
    b64url(eb, el, e64);
    snprintf(out, size, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", n64, e64);
}

/* Tries the pair (a, b) with each exponent (opts.e, or 3 then 65537) as one attempt of the
 * budget.  *stop = 1 when the budget was already spent. */
static km_status rsa_try_pair(ctx *c, size_t a, size_t b, size_t *pool, int *stop)
{
    static const unsigned long exps[] = {3, 65537};
    unsigned budget = c->opts->max_pairs ? c->opts->max_pairs : DEFAULT_MAX_PAIRS;
    if (c->pairs_used >= budget) {
        c->res->exhausted = 1;
        *stop = 1;
        return KM_OK;
    }
    c->pairs_used++;
    km_status st = KM_OK;
    unsigned bits = (unsigned)c->t[a].sig_len * 8;
    mpz_t g;
    mpz_init(g);
    for (size_t i = 0; i < sizeof(exps) / sizeof(exps[0]); i++) {
        unsigned long e = exps[i];
        if (c->opts->e && c->opts->e != e)
            continue;
        size_t m = rsa_pool(c, &c->t[a], pool);
        if (!rsa_modulus(c, a, b, e, pool, m, g))
            continue;
        if (e > 3)
            announce(c, KM_KEYRECOVER_CHECK, bits);
        char jwk[LIMIT_RSA_BITS / 6 + 64];
        rsa_jwk(g, e, jwk, sizeof(jwk));
        int accepted = 0;
        if ((st = try_key(c, jwk, "RS256", bits, e, pool, m, &accepted)) != KM_OK || accepted)
            break;
    }
    mpz_clear(g);
    return st;
}

/* Tries the pairs of list[0..m) (token indices) that `pairable` allows in `pass`, neighbours
 * first (distance 1, then 2, ...): one bad token then costs one or two failed attempts, not one
 * per partner. */
static km_status rsa_pairs(ctx *c, const size_t *list, size_t m, int pass, size_t *pool, int *stop)
{
    km_status st = KM_OK;
    for (size_t d = 1; d < m && !*stop && st == KM_OK; d++)
        for (size_t i = 0; i + d < m && !*stop && st == KM_OK; i++) {
            const tok *ta = &c->t[list[i]], *tb = &c->t[list[i + d]];
            if (!out_of_play(c, ta) && !out_of_play(c, tb) && pairable(ta, tb, pass))
                st = rsa_try_pair(c, list[i], list[i + d], pool, stop);
        }
    return st;
}

/* 1 when token j belongs to token i's pairing group: same size and, in pass 1, the same kid. */
static int same_group(const tok *i, const tok *j, int pass)
{
    return j->kind == TOK_RSA && j->sig_len == i->sig_len &&
           (pass == 2 || strcmp(j->info.kid, i->info.kid) == 0);
}

/* Pass 1 pairs the tokens of each (size, kid) group; pass 2 pairs kid-less tokens with the
 * rest of their size. */
static km_status rsa_recover(ctx *c)
{
    km_status st = KM_OK;
    size_t *pool = malloc((c->n ? c->n : 1) * sizeof(*pool));
    size_t *list = malloc((c->n ? c->n : 1) * sizeof(*list));
    int stop = 0;
    if (!pool || !list)
        st = KM_ENOMEM;
    for (int pass = 1; pass <= 2 && !stop && st == KM_OK; pass++)
        for (size_t i = 0; i < c->n && !stop && st == KM_OK; i++) {
            const tok *t = &c->t[i];
            size_t j = 0, m = 0;
            if (t->kind != TOK_RSA || (pass == 1 && !t->info.kid[0]))
                continue;
            while (j < i && !same_group(t, &c->t[j], pass))
                j++;
            if (j < i)
                continue; /* not the first of its group: done with that group */
            for (j = i; j < c->n; j++)
                if (same_group(t, &c->t[j], pass))
                    list[m++] = j;
            st = rsa_pairs(c, list, m, pass, pool, &stop);
        }
    free(list);
    free(pool);
    return st;
}

/* ---- ECDSA --------------------------------------------------------------------------------- */

typedef struct ec_point_entry {
    unsigned char pt[EC_MAX_POINT];
    size_t tok;
} ec_point_entry;

/* Entries compare by point (zero-padded to EC_MAX_POINT), then token index. */
static int entry_cmp(const void *pa, const void *pb)
{
    const ec_point_entry *a = pa, *b = pb;
    int d = memcmp(a->pt, b->pt, EC_MAX_POINT);
    return d ? d : (a->tok > b->tok) - (a->tok < b->tok);
}

/* Appends to out the public keys that make token t's signature valid: Q = r^-1 (s R - e G) for
 * every point R with x = r + j * order < p (j = 0, 1) and either y.  Returns how many (0..4);
 * -1 on allocation failure. */
static int ec_candidates(const EC_GROUP *grp, BN_CTX *bn, const tok *t, ec_point_entry *out,
                         size_t tok_index)
{
    int count = -1;
    size_t cb = t->curve->bytes;
    BN_CTX_start(bn);
    BIGNUM *p = BN_CTX_get(bn), *r = BN_CTX_get(bn), *s = BN_CTX_get(bn), *e = BN_CTX_get(bn);
    BIGNUM *rinv = BN_CTX_get(bn), *u1 = BN_CTX_get(bn), *u2 = BN_CTX_get(bn);
    BIGNUM *x = BN_CTX_get(bn), *zero = BN_CTX_get(bn);
    EC_POINT *R = EC_POINT_new(grp), *Q = EC_POINT_new(grp);
    const BIGNUM *order = EC_GROUP_get0_order(grp);
    if (!zero || !R || !Q || !EC_GROUP_get_curve(grp, p, NULL, NULL, bn) ||
        !BN_bin2bn(t->sig, (int)cb, r) || !BN_bin2bn(t->sig + cb, (int)cb, s) ||
        !BN_bin2bn(t->digest, (int)t->digest_len, e))
        goto out;
    count = 0;
    if (BN_is_zero(r) || BN_is_zero(s) || BN_cmp(r, order) >= 0 || BN_cmp(s, order) >= 0)
        goto out; /* no key makes such a signature valid */
    int excess = (int)t->digest_len * 8 - BN_num_bits(order);
    BN_zero(zero);
    if ((excess > 0 && !BN_rshift(e, e, excess)) || !BN_mod_inverse(rinv, r, order, bn) ||
        !BN_mod_mul(u1, e, rinv, order, bn) || !BN_mod_sub(u1, zero, u1, order, bn) ||
        !BN_mod_mul(u2, s, rinv, order, bn) || !BN_copy(x, r)) {
        count = -1;
        goto out;
    }
    for (int j = 0; j < 2 && BN_cmp(x, p) < 0; j++) {
        for (int y = 0; y < 2; y++) {
            /* fails when x is not on the curve: then neither y exists */
            if (!EC_POINT_set_compressed_coordinates(grp, R, x, y, bn) ||
                !EC_POINT_mul(grp, Q, u1, R, u2, bn) || EC_POINT_is_at_infinity(grp, Q))
                continue;
            ec_point_entry *en = &out[count];
            memset(en, 0, sizeof(*en));
            if (EC_POINT_point2oct(grp, Q, POINT_CONVERSION_UNCOMPRESSED, en->pt, EC_MAX_POINT,
                                   bn) != 1 + 2 * cb)
                continue;
            en->tok = tok_index;
            count++;
        }
        if (!BN_add(x, x, order)) {
            count = -1;
            goto out;
        }
    }
out:
    EC_POINT_free(R);
    EC_POINT_free(Q);
    BN_CTX_end(bn);
    ERR_clear_error();
    return count;
}

/* Tries the candidate point shared by entries [lo, hi) (sorted, same point) as a key.  Pass 1
 * only when two of its unattributed tokens sign different messages; pass 2 when one has a kid. */
static km_status ec_try_point(ctx *c, const curve_desc *cv, const ec_point_entry *en, size_t lo,
                              size_t hi, int pass, size_t *idx)
{
    size_t m = 0;
    int two = 0, kid = 0;
    for (size_t i = lo; i < hi; i++) {
        const tok *t = &c->t[en[i].tok];
        if (t->key >= 0)
            continue;
        two |= m > 0 && !same_message(&c->t[idx[0]], t);
        kid |= t->info.kid[0] != '\0';
        idx[m++] = en[i].tok;
    }
    if (pass == 1 ? !two : !kid)
        return KM_OK;
    char x64[EC_MAX_POINT], y64[EC_MAX_POINT], jwk[2 * EC_MAX_POINT + 96];
    b64url(en[lo].pt + 1, cv->bytes, x64);
    b64url(en[lo].pt + 1 + cv->bytes, cv->bytes, y64);
    snprintf(jwk, sizeof(jwk), "{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", cv->crv,
             x64, y64);
    int accepted = 0;
    return try_key(c, jwk, cv->alg, cv->bits, 0, idx, m, &accepted);
}

static km_status ec_recover(ctx *c, const curve_desc *cv)
{
    km_status st = KM_ENOMEM;
    size_t ntok = 0, ne = 0;
    for (size_t i = 0; i < c->n; i++)
        ntok += c->t[i].kind == TOK_EC && c->t[i].curve == cv && c->t[i].key < 0;
    if (ntok == 0)
        return KM_OK;
    ec_point_entry *en = malloc(4 * ntok * sizeof(*en));
    size_t *idx = malloc(4 * ntok * sizeof(*idx));
    EC_GROUP *grp = EC_GROUP_new_by_curve_name(cv->nid);
    BN_CTX *bn = BN_CTX_new();
    if (!en || !idx || !grp || !bn)
        goto out;
    for (size_t i = 0; i < c->n; i++) {
        if (c->t[i].kind != TOK_EC || c->t[i].curve != cv || c->t[i].key >= 0)
            continue;
        int k = ec_candidates(grp, bn, &c->t[i], en + ne, i);
        if (k < 0)
            goto out;
        ne += (size_t)k;
    }
    qsort(en, ne, sizeof(*en), entry_cmp);
    st = KM_OK;
    for (int pass = 1; pass <= 2 && st == KM_OK; pass++)
        for (size_t lo = 0, hi; lo < ne && st == KM_OK; lo = hi) {
            for (hi = lo + 1; hi < ne && memcmp(en[hi].pt, en[lo].pt, EC_MAX_POINT) == 0; hi++)
                ;
            st = ec_try_point(c, cv, en, lo, hi, pass, idx);
        }
out:
    BN_CTX_free(bn);
    EC_GROUP_free(grp);
    free(idx);
    free(en);
    ERR_clear_error();
    return st;
}

/* ---- result set ---------------------------------------------------------------------------- */

km_status km_keyrecover_run(const char *const *tokens, size_t n, const km_keyrecover_opts *opts,
                            km_keyrecover **out, km_err *err)
{
    static const km_keyrecover_opts defaults = {0};
    km_status st = KM_OK;
    ctx c = {.opts = opts ? opts : &defaults, .n = n};
    const char *bad = !tokens && n > 0                        ? "no token array"
                      : c.opts->max_rsa_bits > LIMIT_RSA_BITS ? "max_rsa_bits above 8192"
                      : c.opts->e && c.opts->e != 3 && c.opts->e != 65537 ? "e not 3 or 65537"
                                                                          : NULL;
    if (bad)
        return km_err_set(err, KM_EINVAL, "key recovery: %s", bad);
    c.res = calloc(1, sizeof(*c.res));
    c.t = calloc(n ? n : 1, sizeof(*c.t));
    if (!c.res || !c.t || !(c.res->tok_key = calloc(n ? n : 1, sizeof(long))))
        goto nomem;
    c.res->ntok = n;
    int rsa = 0;
    for (size_t i = 0; i < n; i++) {
        if (load_token(&c, i, tokens[i]) != KM_OK)
            goto nomem;
        rsa |= c.t[i].kind == TOK_RSA;
    }
    if (rsa && ((st = sieve(&c)) != KM_OK || (st = rsa_recover(&c)) != KM_OK))
        goto nomem;
    for (size_t k = 0; k < sizeof(CURVES) / sizeof(CURVES[0]); k++)
        if ((st = ec_recover(&c, &CURVES[k])) != KM_OK)
            goto nomem;
    for (size_t i = 0; i < n; i++) {
        c.res->tok_key[i] = c.t[i].key;
        if (c.t[i].kind == TOK_REJECTED)
            c.res->rejected++;
        else if (c.t[i].key < 0)
            c.res->unmatched++;
    }
    *out = c.res;
    c.res = NULL;
    goto out;
nomem:
    st = km_err_set(err, KM_ENOMEM, "key recovery: out of memory");
out:
    for (size_t i = 0; c.t && i < n; i++)
        free(c.t[i].sig);
    free(c.t);
    free(c.primes);
    km_keyrecover_free(c.res);
    return st;
}

size_t km_keyrecover_count(const km_keyrecover *r)
{
    return r ? r->nkeys : 0;
}

const km_keyrecover_key *km_keyrecover_key_at(const km_keyrecover *r, size_t i)
{
    return r && i < r->nkeys ? &r->keys[i].pub : NULL;
}

long km_keyrecover_token_key(const km_keyrecover *r, size_t i)
{
    return r && i < r->ntok ? r->tok_key[i] : -1;
}

size_t km_keyrecover_unmatched(const km_keyrecover *r)
{
    return r ? r->unmatched : 0;
}

size_t km_keyrecover_rejected(const km_keyrecover *r)
{
    return r ? r->rejected : 0;
}

int km_keyrecover_exhausted(const km_keyrecover *r)
{
    return r ? r->exhausted : 0;
}

void km_keyrecover_free(km_keyrecover *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nkeys; i++) {
        free(r->keys[i].kid);
        free(r->keys[i].pem);
    }
    free(r->keys);
    free(r->tok_key);
    free(r);
}
