/* keys.c — the jobs of `kubemend keys` (break-glass, from a machine with admin credentials):
 *
 *   keys recover -o FILE   the public key(s) the API server lost: first from the snapshot
 *                          (snapshot.h: instant), then recovered from the tokens they signed
 *                          (keyrecover.h: ~1 min per RSA-2048 key); each one proven by the tokens
 *                          it verifies and their kid; written as PEM with the bridge procedure;
 *   keys snapshot          writes the snapshot ConfigMap once (the operator does it by itself).
 *
 * Tokens come from the token Secrets (data.token) and the caller's own bearer token; only those
 * whose key the server does not list (cluster.h) are used.  Nothing in the cluster is changed by
 * `recover`; no token or key material is logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "operator/base/log.h"
#include "operator/cmd/manager.h"
#include "reconcilers/bridge/cluster.h"
#include "reconcilers/bridge/keyrecover.h"
#include "reconcilers/bridge/kid.h"
#include "reconcilers/bridge/snapshot.h"
#include "reconcilers/tokens/check.h"

#define MAX_FOUND 16

typedef struct found {
    char kid[KM_BRIDGE_KID_LEN + 1];
    char alg[8];
    unsigned bits;
    char *pem;
    size_t tokens; /* tokens it verified */
    int proven;    /* a verified token's kid names it */
    const char *source;
} found;

typedef struct keysjob {
    km_job_opts o;
    const char *ns;
    found keys[MAX_FOUND];
    size_t n;
} keysjob;

static void keys_free(void *self)
{
    keysjob *j = self;
    if (!j)
        return;
    for (size_t i = 0; i < j->n; i++)
        free(j->keys[i].pem);
    free(j);
}

static km_status keys_prepare(const km_job_opts *o, void **self, km_err *err)
{
    keysjob *j = calloc(1, sizeof(*j));
    if (!j)
        return km_err_set(err, KM_ENOMEM, "out of memory");
    j->o = *o;
    j->ns = o->ns ? o->ns : KM_BRIDGE_SNAPSHOT_NS;
    if (strcmp(o->job, "keys recover") == 0 && (!o->out_file || !*o->out_file)) {
        free(j);
        return km_err_set(err, KM_EINVAL, "-o FILE is required (where the public key goes)");
    }
    *self = j;
    return KM_OK;
}

static void keys_cancel(void *self)
{
    (void)self; /* the computation is bounded; a second signal exits */
}

/* ---- keys from the snapshot ------------------------------------------------------------------ */

/* Counts the tokens (not yet used) that key (a one-key set of kid) verifies, marking them used.
 * *proven = 1 when one of them names kid. */
static size_t verified_by(const km_jwks *key, const char *kid, const char *const *toks, size_t n,
                          char *used, int *proven)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        char tk[96];
        km_bridge_token_kid(toks[i], tk, sizeof(tk));
        if (used[i] || (tk[0] && strcmp(tk, kid) != 0) ||
            km_jwt_verify(key, toks[i], strlen(toks[i]), NULL) != KM_JWT_VALID)
            continue;
        used[i] = 1;
        c++;
        *proven |= tk[0] != '\0';
    }
    return c;
}

/* One snapshot key (a JWK object): kept when the server does not list it and it verifies tokens
 * (or there are no tokens to check at all). */
static km_status snapshot_key(keysjob *j, const cJSON *jwk, const km_jwks *current,
                              const char *const *toks, size_t n, char *used)
{
    char *doc = NULL, *one = cJSON_PrintUnformatted(jwk);
    km_jwks *set = NULL;
    unsigned char *der = NULL;
    size_t len = 0;
    km_status st = KM_OK;
    found f;
    memset(&f, 0, sizeof(f));
    if (!one || asprintf(&doc, "{\"keys\":[%s]}", one) < 0) {
        doc = NULL;
        st = KM_ENOMEM;
        goto out;
    }
    if (km_jwks_parse(doc, strlen(doc), &set, NULL) != KM_OK || km_jwks_count(set) != 1 ||
        km_jwks_spki(set, 0, &der, &len) != KM_OK ||
        km_bridge_kid_of_spki(der, len, f.kid, sizeof(f.kid)) != KM_OK)
        goto out; /* unusable key: skipped */
    if (km_bridge_keys_have(current, f.kid) || j->n == MAX_FOUND)
        goto out;
    f.tokens = verified_by(set, f.kid, toks, n, used, &f.proven);
    if (f.tokens == 0 && n > 0)
        goto out;
    if ((st = km_bridge_spki_pem(der, len, &f.pem)) != KM_OK)
        goto out;
    const char *kty = cJSON_GetStringValue(cJSON_GetObjectItem(jwk, "kty"));
    const char *crv = cJSON_GetStringValue(cJSON_GetObjectItem(jwk, "crv"));
    snprintf(f.alg, sizeof(f.alg), "%s",
             kty && strcmp(kty, "EC") == 0 ? (crv && strcmp(crv, "P-384") == 0   ? "ES384"
                                              : crv && strcmp(crv, "P-521") == 0 ? "ES512"
                                                                                 : "ES256")
                                           : "RS256");
    f.source = "snapshot";
    j->keys[j->n++] = f;
out:
    free(der);
    km_jwks_free(set);
    free(doc);
    cJSON_free(one);
    return st;
}

static km_status from_snapshot(keysjob *j, const char *text, const km_jwks *current,
                               const char *const *toks, size_t n, char *used)
{
    cJSON *doc = cJSON_Parse(text);
    const cJSON *k;
    km_status st = KM_OK;
    cJSON_ArrayForEach(k, cJSON_GetObjectItem(doc, "keys"))
    {
        if (st == KM_OK)
            st = snapshot_key(j, k, current, toks, n, used);
    }
    cJSON_Delete(doc);
    return st;
}

/* ---- keys recovered from tokens -------------------------------------------------------------- */

static void on_progress(void *user, const km_keyrecover_event *ev)
{
    (void)user;
    if (ev->step == KM_KEYRECOVER_GCD)
        fprintf(stderr,
                "keys: recovering a %u-bit RSA key from two tokens (pair %u of at most %u; about "
                "a minute per 2048 bits)...\n",
                ev->bits, ev->pair, ev->max_pair);
}

static km_status from_tokens(keysjob *j, const char *const *toks, size_t n, const char *used)
{
    const char **left = calloc(n + 1, sizeof(*left));
    size_t m = 0;
    km_keyrecover *r = NULL;
    km_status st = KM_OK;
    if (!left)
        return KM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!used[i])
            left[m++] = toks[i];
    km_keyrecover_opts o = {.progress = on_progress};
    if (m > 0 && (st = km_keyrecover_run(left, m, &o, &r, NULL)) == KM_OK) {
        for (size_t i = 0; i < km_keyrecover_count(r) && j->n < MAX_FOUND; i++) {
            const km_keyrecover_key *k = km_keyrecover_key_at(r, i);
            found *f = &j->keys[j->n];
            memset(f, 0, sizeof(*f));
            if (!(f->pem = strdup(k->pem))) {
                st = KM_ENOMEM;
                break;
            }
            snprintf(f->kid, sizeof(f->kid), "%s", k->kid);
            snprintf(f->alg, sizeof(f->alg), "%s", k->alg);
            f->bits = k->bits;
            f->tokens = k->tokens;
            f->proven = k->proven;
            f->source = "tokens";
            j->n++;
        }
        if (km_keyrecover_unmatched(r) > 0)
            fprintf(stderr, "keys: %zu token(s) fit no recovered key (left out)\n",
                    km_keyrecover_unmatched(r));
    }
    km_keyrecover_free(r);
    free(left);
    return st;
}

/* ---- output ------------------------------------------------------------------------------------
 */

static int write_pem(const keysjob *j)
{
    FILE *f = fopen(j->o.out_file, "w");
    int ok = f != NULL;
    for (size_t i = 0; ok && i < j->n; i++)
        ok = fputs(j->keys[i].pem, f) >= 0;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "keys recover: cannot write %s\n", j->o.out_file);
    return ok;
}

static void print_bridge(const keysjob *j)
{
    const char *base = strrchr(j->o.out_file, '/');
    base = base ? base + 1 : j->o.out_file;
    printf("\nwrote %s\n\n"
           "To bridge (tokens signed by the old key are valid again at once), on every "
           "control-plane node:\n"
           "  1. copy %s to /etc/kubernetes/pki/%s\n"
           "  2. in /etc/kubernetes/manifests/kube-apiserver.yaml add, next to the existing\n"
           "     --service-account-key-file=/etc/kubernetes/pki/sa.pub line:\n"
           "       - --service-account-key-file=/etc/kubernetes/pki/%s\n"
           "     (the kubelet restarts kube-apiserver when the manifest changes; keep sa.pub and\n"
           "     --service-account-signing-key-file as they are: new tokens stay signed by the "
           "new key)\n"
           "  3. run the recovery (kubemend run --once, or a ClusterRecovery): tokens signed by "
           "the old\n"
           "     key are reported as bridged; their token Secrets are replaced, the old ones kept "
           "until\n"
           "     no pod uses them (running pods see no 401), pods can be restarted at your pace.\n"
           "     The operator needs: kubectl apply -f deploy/optional/bridge-replace.yaml\n"
           "  4. when the ClusterRecovery's condition BridgeRetirable is True (or run --once says "
           "so),\n"
           "     remove that line again (and the file).\n",
           j->o.out_file, j->o.out_file, base, base);
}

static void report(const keysjob *j, size_t ntok, long scanned, int have_current)
{
    printf("%zu old token(s) found (%ld token Secret(s) scanned%s)\n", ntok, scanned,
           have_current ? "" : "; the API server's JWKS was not readable: no key left out");
    for (size_t i = 0; i < j->n; i++) {
        const found *f = &j->keys[i];
        printf("key kid=%s %s", f->kid, f->alg);
        if (f->bits)
            printf(" %u bits", f->bits);
        printf(" from the %s: ", f->source);
        if (f->tokens)
            printf("verifies %zu token(s)%s\n", f->tokens,
                   f->proven ? ", their kid header names it (kid-proven)" : "");
        else
            printf("no token to prove it (the snapshot's word only)\n");
    }
}

/* ---- the jobs
 * ------------------------------------------------------------------------------------ */

/* Adds the caller's own bearer token (a pod's mounted token, a kubeconfig token) if any. */
static int add_own_token(km_bridge_tokens *ts, const km_runtime *rt, const km_jwks *current)
{
    char *own = NULL;
    if (km_kubeconfig_token(rt->config, &own, NULL) != KM_OK || !own)
        return 0;
    int r = km_bridge_tokens_add(ts, current, own);
    km_tokens_token_free(own);
    return r;
}

/* Without the JWKS, the tokens signed by the current key are told apart by the kid of a fresh
 * token (TokenRequest for default/default): they are marked used. */
static void skip_current(km_kube *kube, const char *const *toks, size_t n, char *used)
{
    char kid[96], tk[96];
    if (km_bridge_signing_kid(kube, "default", "default", kid, sizeof(kid), NULL) != KM_OK) {
        fprintf(stderr, "keys: neither the JWKS nor a TokenRequest tells the current key: every "
                        "token is used\n");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        km_bridge_token_kid(toks[i], tk, sizeof(tk));
        used[i] |= strcmp(tk, kid) == 0;
    }
}

/* Finds the keys (snapshot first, then the tokens).  Fails on the Secret list or ENOMEM. */
static km_status find_keys(keysjob *j, const km_runtime *rt, size_t *ntok, long *scanned,
                           int *have_current, km_err *err)
{
    km_jwks *current = NULL;
    char *snap = NULL, *used = NULL, eb[700];
    km_err e;
    km_bridge_tokens *ts = km_bridge_tokens_new(0);
    km_status st = ts ? KM_OK : KM_ENOMEM;
    *have_current = st == KM_OK && km_bridge_current_keys(rt->kube, &current, NULL, &e) == KM_OK;
    if (st == KM_OK && !*have_current)
        fprintf(stderr, "keys: GET %s failed (%s)\n", KM_BRIDGE_JWKS_PATH,
                km_err_str(&e, eb, sizeof(eb)));
    if (st == KM_OK)
        st = km_bridge_tokens_from_secrets(ts, rt->kube, current, scanned, err);
    if (st == KM_OK && add_own_token(ts, rt, current) < 0)
        st = KM_ENOMEM;
    if (st == KM_OK &&
        km_bridge_snapshot_jwks(rt->kube, j->ns, KM_BRIDGE_SNAPSHOT_NAME, &snap, &e) != KM_OK)
        fprintf(stderr, "keys: snapshot %s/%s not read (%s)\n", j->ns, KM_BRIDGE_SNAPSHOT_NAME,
                km_err_str(&e, eb, sizeof(eb)));
    size_t n = km_bridge_tokens_count(ts);
    const char *const *toks = n ? km_bridge_tokens_all(ts) : NULL;
    if (st == KM_OK && !(used = calloc(n + 1, 1)))
        st = KM_ENOMEM;
    if (st == KM_OK && !*have_current)
        skip_current(rt->kube, toks, n, used);
    if (st == KM_OK && snap)
        st = from_snapshot(j, snap, current, toks, n, used);
    if (st == KM_OK)
        st = from_tokens(j, toks, n, used);
    if (st == KM_ENOMEM)
        km_err_set(err, KM_ENOMEM, "out of memory");
    *ntok = n;
    free(used);
    free(snap);
    km_jwks_free(current);
    km_bridge_tokens_free(ts);
    return st;
}

static int recover_run(void *self, const km_runtime *rt)
{
    keysjob *j = self;
    size_t ntok = 0;
    long scanned = 0;
    int have_current = 0;
    char eb[700];
    km_err e;
    km_err_clear(&e);
    if (find_keys(j, rt, &ntok, &scanned, &have_current, &e) != KM_OK) {
        fprintf(stderr, "keys recover: %s\n", km_err_str(&e, eb, sizeof(eb)));
        return KM_EXIT_FAILED;
    }
    report(j, ntok, scanned, have_current);
    if (j->n == 0) {
        printf("no old key recovered: %s\n",
               ntok == 0 ? "no token signed by a key the API server no longer lists was found"
                         : "the old tokens fit no key (an RSA key needs two tokens of it)");
        return KM_EXIT_FAILED;
    }
    if (!write_pem(j))
        return KM_EXIT_FAILED;
    print_bridge(j);
    return 0;
}

static int snapshot_run(void *self, const km_runtime *rt)
{
    keysjob *j = self;
    char msg[400], eb[700];
    km_err e;
    km_err_clear(&e);
    if (km_bridge_snapshot_write(rt->kube, j->ns, KM_BRIDGE_SNAPSHOT_NAME, msg, sizeof(msg), NULL,
                                 &e) != KM_OK) {
        fprintf(stderr, "keys snapshot: %s\n", km_err_str(&e, eb, sizeof(eb)));
        return KM_EXIT_FAILED;
    }
    printf("%s\n", msg);
    return 0;
}

static const km_job keys_recover = {
    .name = "keys recover",
    .prepare = keys_prepare,
    .run = recover_run,
    .cancel = keys_cancel,
    .free = keys_free,
};

static const km_job keys_snapshot_job = {
    .name = "keys snapshot",
    .prepare = keys_prepare,
    .run = snapshot_run,
    .cancel = keys_cancel,
    .free = keys_free,
};

KM_REGISTER_JOB(keys_recover)
KM_REGISTER_JOB(keys_snapshot_job)
