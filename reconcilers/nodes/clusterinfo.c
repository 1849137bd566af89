/* clusterinfo.c — the pure rules of kube-public/cluster-info (see clusterinfo.h). */
#include "reconcilers/nodes/clusterinfo.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "operator/base/base64.h"
#include "operator/base/buf.h"
#include "operator/base/json.h"
#include "operator/base/yamljson.h"

#define CA_KEY "certificate-authority-data"

km_status km_clusterinfo_hash(const char *ca_pem, char out[KM_CLUSTERINFO_HASH_MAX], km_err *err)
{
    km_status st = KM_OK;
    unsigned char *der = NULL;
    BIO *bio = ca_pem ? BIO_new_mem_buf(ca_pem, -1) : NULL;
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    int n = x ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der) : -1;
    unsigned char md[32];
    if (!x) {
        st = km_err_set(err, KM_EPARSE, "CA: no PEM certificate OpenSSL can read");
        goto out;
    }
    if (n <= 0 || !EVP_Digest(der, (size_t)n, md, NULL, EVP_sha256(), NULL)) {
        st = km_err_set(err, KM_ENOMEM, "CA: cannot encode its public key");
        goto out;
    }
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = "0123456789abcdef"[md[i] >> 4];
        out[8 + 2 * i] = "0123456789abcdef"[md[i] & 15];
    }
    out[71] = '\0';
out:
    OPENSSL_free(der);
    X509_free(x);
    BIO_free(bio);
    return st;
}

void km_clusterinfo_doc_cleanup(km_clusterinfo_doc *d)
{
    if (!d)
        return;
    free(d->server);
    free(d->ca_pem);
    d->server = d->ca_pem = NULL;
}

km_status km_clusterinfo_read(const char *kubeconfig, km_clusterinfo_doc *out, km_err *err)
{
    cJSON *doc = NULL;
    km_err e;
    km_status st =
        km_yaml_parse(kubeconfig ? kubeconfig : "", kubeconfig ? strlen(kubeconfig) : 0, &doc, &e);
    km_clusterinfo_doc d = {0};
    if (st != KM_OK) {
        st = km_err_set(err, st == KM_ENOMEM ? KM_ENOMEM : KM_EPARSE, "kubeconfig: %s", e.message);
        goto out;
    }
    const cJSON *clusters = KM_JSON_AT(doc, "clusters");
    if (!cJSON_IsArray(clusters) || cJSON_GetArraySize(clusters) != 1) {
        st = km_err_set(err, KM_EPARSE, "kubeconfig: expected exactly one cluster");
        goto out;
    }
    const cJSON *c = KM_JSON_AT(cJSON_GetArrayItem(clusters, 0), "cluster");
    const char *server = KM_JSON_STR(c, "server");
    const char *b64 = KM_JSON_STR(c, CA_KEY);
    unsigned char *pem = NULL;
    size_t len = 0;
    if (!server || !b64) {
        st = km_err_set(err, KM_EPARSE, "kubeconfig: the cluster has no server or no " CA_KEY);
        goto out;
    }
    if (km_base64_decode(b64, strlen(b64), KM_B64_SKIP_SPACE, &pem, &len) != KM_OK ||
        strlen((char *)pem) != len) {
        free(pem);
        st = km_err_set(err, KM_EPARSE, "kubeconfig: " CA_KEY " is not base64 of a PEM text");
        goto out;
    }
    d.ca_pem = (char *)pem;
    if (!(d.server = strdup(server))) {
        st = km_err_set(err, KM_ENOMEM, "kubeconfig: out of memory");
        goto out;
    }
    *out = d;
    d = (km_clusterinfo_doc){0};
out:
    km_clusterinfo_doc_cleanup(&d);
    cJSON_Delete(doc);
    return st;
}

/* The one plain-scalar value of CA_KEY in text: [*start, *end).  KM_EPARSE otherwise. */
static km_status find_value(const char *text, const char **start, const char **end, km_err *err)
{
    const char *v = NULL;
    for (const char *p = strstr(text, CA_KEY); p; p = strstr(p + 1, CA_KEY)) {
        const char *c = p + strlen(CA_KEY);
        c += *c == '"' || *c == '\''; /* JSON or quoted key */
        if (*c != ':')
            continue;
        if (v)
            return km_err_set(err, KM_EPARSE, "kubeconfig: " CA_KEY " appears more than once");
        v = c + 1;
    }
    if (!v)
        return km_err_set(err, KM_EPARSE, "kubeconfig: no " CA_KEY " key");
    while (*v == ' ' || *v == '\t')
        v++;
    const char *q = v;
    int quoted = *q == '"' || *q == '\'';
    if (quoted)
        q++;
    const char *s = q;
    while (*q && strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", *q))
        q++;
    const char *e = q;
    if (quoted && *q == *v)
        q++;
    else if (quoted)
        e = s; /* unterminated quote: refused below */
    while (*q == ' ' || *q == '\t')
        q++;
    if (e == s || (*q && *q != '\n' && *q != '\r' && *q != ',' && *q != '}'))
        return km_err_set(err, KM_EPARSE,
                          "kubeconfig: " CA_KEY " is not a plain base64 value on its line");
    *start = s;
    *end = e;
    return KM_OK;
}

km_status km_clusterinfo_replace_ca(const char *kubeconfig, const char *ca_pem, char **out,
                                    km_err *err)
{
    km_clusterinfo_doc before = {0}, after = {0};
    km_buf b;
    km_buf_init(&b, 0);
    char *b64 = NULL, *text = NULL;
    const char *s = NULL, *e = NULL;
    km_status st = km_clusterinfo_read(kubeconfig, &before, err);
    if (st == KM_OK)
        st = find_value(kubeconfig, &s, &e, err);
    if (st != KM_OK)
        goto out;
    size_t n = strlen(ca_pem);
    if (!(b64 = malloc(4 * ((n + 2) / 3) + 1))) {
        st = km_err_set(err, KM_ENOMEM, "kubeconfig: out of memory");
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)ca_pem, (int)n);
    if (km_buf_append(&b, kubeconfig, (size_t)(s - kubeconfig)) != KM_OK ||
        km_buf_append(&b, b64, strlen(b64)) != KM_OK || km_buf_append(&b, e, strlen(e)) != KM_OK ||
        !(text = km_buf_take(&b))) {
        st = km_err_set(err, KM_ENOMEM, "kubeconfig: out of memory");
        goto out;
    }
    st = km_clusterinfo_read(text, &after, err);
    if (st == KM_OK &&
        (strcmp(after.server, before.server) != 0 || strcmp(after.ca_pem, ca_pem) != 0))
        st = km_err_set(err, KM_EPARSE, "kubeconfig: the rewritten text does not read back");
    if (st == KM_OK) {
        *out = text;
        text = NULL;
    }
out:
    free(text);
    free(b64);
    km_buf_cleanup(&b);
    km_clusterinfo_doc_cleanup(&before);
    km_clusterinfo_doc_cleanup(&after);
    return st;
}
