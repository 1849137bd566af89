/* rebuild.c — the PKI rebuild time from the cluster's CA certificates (see rebuild.h). */
#include "reconcilers/recovery/rebuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "reconcilers/extauth/pem.h"

#define NS "kube-system"
#define EXTAUTH_CM "extension-apiserver-authentication"
#define ROOT_CM "kube-root-ca.crt"

/* Parses pem (NULL or unparsable: *out NULL). */
static km_pem_bundle *parse(const char *pem)
{
    km_pem_bundle *b = NULL;
    if (pem && km_pem_parse(pem, strlen(pem), &b, NULL) != KM_OK)
        b = NULL;
    return b;
}

/* Index of the certificate of b with the latest notBefore (-1 when none); with cur, among those
 * also in cur only. */
static long newest(const km_pem_bundle *b, const km_pem_bundle *cur)
{
    long best = -1;
    for (size_t i = 0; b && i < km_pem_count(b); i++) {
        if (cur && !km_pem_contains(cur, km_pem_fingerprint(b, i)))
            continue;
        if (best < 0 || km_pem_not_before(b, i) > km_pem_not_before(b, (size_t)best))
            best = (long)i;
    }
    return best;
}

/* r = certificate i of b, found in `where`. */
static void chosen(km_rebuild *r, const km_pem_bundle *b, size_t i, const char *where)
{
    char when[KM_CLOCK_TEXT_MAX];
    r->at = km_pem_not_before(b, i);
    snprintf(r->source, sizeof(r->source), "notBefore %s of CA \"%.80s\" (sha256 %.16s...) in %s",
             km_clock_format_s(r->at, when, sizeof(when)), km_pem_subject(b, i),
             km_pem_fingerprint(b, i), where);
}

/* The choice (see rebuild.h) into *out and, when pem is not NULL, the chosen certificate's PEM
 * block into *pem (malloc'ed).  Failure as km_rebuild_choose; outputs untouched. */
static km_status choose(const char *client_ca, const char *root_ca, const char *own_ca,
                        km_rebuild *out, char **pem, km_err *err)
{
    km_pem_bundle *bundle = parse(client_ca), *root = parse(root_ca), *own = parse(own_ca);
    const km_pem_bundle *from = NULL;
    km_status st = KM_OK;
    km_rebuild r = {0};
    long i = root ? newest(bundle, root) : -1;
    if (i >= 0)
        chosen(&r, from = bundle, (size_t)i,
               NS "/" EXTAUTH_CM " client-ca-file, the cluster CA of " NS "/" ROOT_CM);
    else if ((i = newest(bundle, NULL)) >= 0)
        chosen(&r, from = bundle, (size_t)i,
               NS "/" EXTAUTH_CM " client-ca-file (its newest; " ROOT_CM " names none of them)");
    else if ((i = newest(root, NULL)) >= 0)
        chosen(&r, from = root, (size_t)i, NS "/" ROOT_CM " (no client-ca-file)");
    else if ((i = newest(own, NULL)) >= 0)
        chosen(&r, from = own, (size_t)i, "the client's CA (no client-ca-file, no " ROOT_CM ")");
    char *text = NULL;
    size_t len = 0;
    const char *blk = from && pem ? km_pem_block(from, (size_t)i, &len) : NULL;
    if (i < 0 && client_ca && !bundle)
        st = km_err_set(err, KM_EPARSE, NS "/" EXTAUTH_CM " client-ca-file is not PEM");
    else if (i < 0)
        st = km_err_set(err, KM_ENOTFOUND,
                        "no CA certificate to tell: " NS "/" EXTAUTH_CM
                        " has no client-ca-file and no current CA is known");
    else if (blk && !(text = strndup(blk, len)))
        st = km_err_set(err, KM_ENOMEM, "current CA: out of memory");
    if (st == KM_OK) {
        *out = r;
        if (pem)
            *pem = text;
    }
    km_pem_free(bundle);
    km_pem_free(root);
    km_pem_free(own);
    return st;
}

km_status km_rebuild_choose(const char *client_ca, const char *root_ca, const char *own_ca,
                            km_rebuild *out, km_err *err)
{
    return choose(client_ca, root_ca, own_ca, out, NULL, err);
}

km_status km_rebuild_choose_ca(const char *client_ca, const char *root_ca, const char *own_ca,
                               char **pem, km_err *err)
{
    km_rebuild r;
    return choose(client_ca, root_ca, own_ca, &r, pem, err);
}

/* data[key] of ConfigMap kube-system/name into *out (malloc'ed; NULL when the ConfigMap or the
 * key is missing).  Failure: the GET's error other than 404. */
static km_status cm_key(km_kube *kube, const char *name, const char *key, char **out, km_err *err)
{
    char path[256];
    cJSON *cm = NULL;
    km_err e;
    km_err_clear(&e);
    *out = NULL;
    km_kube_path(path, sizeof(path), NULL, "v1", NS, "configmaps", name, NULL);
    km_status st = km_kube_get(kube, path, &cm, &e);
    if (st == KM_EAPI && e.http_code == 404)
        return KM_OK;
    if (st != KM_OK) {
        if (err)
            *err = e;
        km_err_prefix(err, "get configmap " NS "/%s", name);
        return st;
    }
    const char *v = KM_JSON_STR(cm, "data", key);
    if (v && !(*out = strdup(v)))
        st = km_err_set(err, KM_ENOMEM, "rebuild time: out of memory");
    cJSON_Delete(cm);
    return st;
}

/* Reads client-ca-file and kube-root-ca.crt and chooses (see choose). */
static km_status derive(km_kube *kube, const char *own_ca, km_rebuild *out, char **pem, km_err *err)
{
    char *client_ca = NULL, *root_ca = NULL;
    km_status st = cm_key(kube, EXTAUTH_CM, "client-ca-file", &client_ca, err);
    if (st == KM_OK)
        st = cm_key(kube, ROOT_CM, "ca.crt", &root_ca, err);
    if (st == KM_OK)
        st = choose(client_ca, root_ca, own_ca, out, pem, err);
    free(client_ca);
    free(root_ca);
    return st;
}

km_status km_rebuild_derive(km_kube *kube, const char *own_ca, km_rebuild *out, km_err *err)
{
    return derive(kube, own_ca, out, NULL, err);
}

km_status km_rebuild_current_ca(km_kube *kube, const char *own_ca, char **pem, km_err *err)
{
    km_rebuild r;
    return derive(kube, own_ca, &r, pem, err);
}
