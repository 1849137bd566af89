/* verify.c — the extensionApiserverAuthentication step's verify hook (see extauth.h): no CA the
 * step's rules would remove is left in the ConfigMap's bundles, from a fresh read. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "operator/base/json.h"
#include "reconcilers/extauth/extauth.h"
#include "reconcilers/extauth/pem.h"
#include "reconcilers/step/left.h"

#define PINS_MAX 20

static const char *const KEYS[] = {"client-ca-file", "requestheader-client-ca-file"};
#define NKEYS (sizeof(KEYS) / sizeof(KEYS[0]))

/* Adds the certificates of bundle text `pem` (key k) that the rules remove to left; a bundle that
 * does not parse or would lose every certificate counts as one entry.  KM_ENOMEM. */
static km_status check_key(const char *key, const char *pem, const km_pem_policy *pol,
                           km_left *left)
{
    km_pem_bundle *b = NULL;
    km_err e;
    char entry[512];
    km_err_clear(&e);
    if (km_pem_parse(pem, strlen(pem), &b, &e) != KM_OK) {
        snprintf(entry, sizeof(entry), "%s: not a PEM bundle", key);
        km_left_add(left, entry);
        return KM_OK;
    }
    size_t n = km_pem_count(b);
    km_pem_verdict v[64];
    km_status st = KM_OK;
    if (n > sizeof(v) / sizeof(v[0])) {
        snprintf(entry, sizeof(entry), "%s: %zu certificates (more than kubemend checks)", key, n);
        km_left_add(left, entry);
    } else if (n > 0 && (st = km_pem_decide(b, pol, v, &e)) == KM_ESTATE) {
        snprintf(entry, sizeof(entry), "%s: %.400s", key, e.message);
        km_left_add(left, entry);
        st = KM_OK;
    } else {
        for (size_t i = 0; st == KM_OK && i < n; i++) {
            if (!km_pem_verdict_removes(v[i]))
                continue;
            snprintf(entry, sizeof(entry), "%s: %s %s (sha256 %.16s...)", key,
                     km_pem_verdict_name(v[i]), km_pem_subject(b, i), km_pem_fingerprint(b, i));
            km_left_add(left, entry);
        }
    }
    km_pem_free(b);
    return st;
}

/* The normalized spec.pinnedFingerprints into pins (at most PINS_MAX); their count. */
static size_t load_pins(const km_step_ctx *ctx, char pins[][65])
{
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, KM_JSON_AT(ctx->spec, "pinnedFingerprints"))
    {
        if (n < PINS_MAX && cJSON_IsString(it) &&
            km_pem_fingerprint_normalize(it->valuestring, pins[n]) == KM_OK)
            n++;
    }
    return n;
}

km_status km_extauth_verify(km_step_ctx *ctx, km_err *err)
{
    char path[256], pins[PINS_MAX][65], text[600];
    const char *pinv[PINS_MAX];
    km_pem_bundle *current = NULL;
    cJSON *cm = NULL;
    km_left left = {0};
    km_kube_path(path, sizeof(path), NULL, "v1", KM_EXTAUTH_NAMESPACE, "configmaps",
                 KM_EXTAUTH_CONFIGMAP, NULL);
    km_err e;
    km_err_clear(&e);
    km_status st = km_kube_get(ctx->kube, path, &cm, &e);
    if (st == KM_EAPI && e.http_code == 404) {
        km_step_set_result(ctx, "True", "NoOldCA", "%s/%s does not exist: no old CA in it",
                           KM_EXTAUTH_NAMESPACE, KM_EXTAUTH_CONFIGMAP);
        return KM_OK;
    }
    if (st != KM_OK) {
        if (err)
            *err = e;
        km_err_prefix(err, "verify: GET %s", KM_EXTAUTH_CONFIGMAP);
        return st;
    }
    if ((st = km_extauth_current(ctx, &current, err)) != KM_OK)
        goto out;
    size_t np = load_pins(ctx, pins);
    for (size_t i = 0; i < np; i++)
        pinv[i] = pins[i];
    km_pem_policy pol = {.current = current, .pinned = pinv, .npinned = np, .now = time(NULL)};
    for (size_t k = 0; st == KM_OK && k < NKEYS; k++) {
        const char *pem = KM_JSON_STR(cm, "data", KEYS[k]);
        if (pem)
            st = check_key(KEYS[k], pem, &pol, &left);
    }
    if (st != KM_OK) {
        km_err_set(err, st, "extauth verify: out of memory");
        goto out;
    }
    if (left.n)
        km_step_set_result(ctx, "False", "OldCALeft", "%s/%s still holds old or unexpected CAs: %s",
                           KM_EXTAUTH_NAMESPACE, KM_EXTAUTH_CONFIGMAP,
                           km_left_text(&left, text, sizeof(text)));
    else
        km_step_set_result(ctx, "True", "NoOldCA", "%s/%s holds no expired or superseded CA",
                           KM_EXTAUTH_NAMESPACE, KM_EXTAUTH_CONFIGMAP);
out:
    km_pem_free(current);
    cJSON_Delete(cm);
    return st;
}
