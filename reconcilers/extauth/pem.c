/* pem.c — PEM certificate bundles and the CA keep/remove decision (see pem.h). */
#include "reconcilers/extauth/pem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "operator/base/array.h"

#define BEGIN_MARK "-----BEGIN "
#define BEGIN_CERT "-----BEGIN CERTIFICATE-----"
#define END_CERT "-----END CERTIFICATE-----"

typedef struct pem_cert {
    X509 *x509;
    char fp[65];
    char *subject;
    time_t not_before, not_after;
    char *block; /* original PEM text + "\n" */
    size_t block_len;
} pem_cert;

struct km_pem_bundle {
    pem_cert *certs;
    size_t n, cap;
};

void km_pem_free(km_pem_bundle *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        X509_free(b->certs[i].x509);
        free(b->certs[i].subject);
        free(b->certs[i].block);
    }
    free(b->certs);
    free(b);
}

static int asn1_to_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    *out = timegm(&tm);
    return 1;
}

static char *name_text(const X509_NAME *name)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        s = malloc((size_t)n + 1);
        if (s) {
            memcpy(s, p, (size_t)n);
            s[n] = '\0';
        }
    }
    BIO_free(b);
    return s;
}

/* Decodes one PEM block into c.  KM_EPARSE / KM_ENOMEM; c untouched on failure. */
static km_status load_block(const char *p, size_t n, pem_cert *c)
{
    km_status st = KM_EPARSE;
    BIO *bio = BIO_new_mem_buf(p, (int)n);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    pem_cert tmp = {0};
    if (!x)
        goto out;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    if (!X509_digest(x, EVP_sha256(), md, &ml) || ml != 32 ||
        !asn1_to_time(X509_get0_notBefore(x), &tmp.not_before) ||
        !asn1_to_time(X509_get0_notAfter(x), &tmp.not_after))
        goto out;
    for (unsigned int i = 0; i < ml; i++)
        snprintf(tmp.fp + 2 * i, 3, "%02x", md[i]);
    st = KM_ENOMEM;
    tmp.subject = name_text(X509_get_subject_name(x));
    tmp.block = malloc(n + 2);
    if (!tmp.subject || !tmp.block)
        goto out;
    memcpy(tmp.block, p, n);
    tmp.block[n] = '\n';
    tmp.block[n + 1] = '\0';
    tmp.block_len = n + 1;
    tmp.x509 = x;
    x = NULL;
    *c = tmp;
    memset(&tmp, 0, sizeof(tmp));
    st = KM_OK;
out:
    free(tmp.subject);
    free(tmp.block);
    X509_free(x);
    BIO_free(bio);
    ERR_clear_error();
    return st;
}

km_status km_pem_parse(const char *pem, size_t n, km_pem_bundle **out, km_err *err)
{
    km_status st = KM_OK;
    km_pem_bundle *b = calloc(1, sizeof(*b));
    if (!b)
        return km_err_set(err, KM_ENOMEM, "PEM: out of memory");
    size_t i = 0;
    while (i < n) {
        if (isspace((unsigned char)pem[i])) {
            i++;
            continue;
        }
        size_t rest = n - i;
        if (rest < sizeof(BEGIN_MARK) - 1 || memcmp(pem + i, BEGIN_MARK, sizeof(BEGIN_MARK) - 1)) {
            st = km_err_set(err, KM_EPARSE, "PEM: non-PEM content at byte %zu", i);
            goto out;
        }
        if (rest < sizeof(BEGIN_CERT) - 1 || memcmp(pem + i, BEGIN_CERT, sizeof(BEGIN_CERT) - 1)) {
            st = km_err_set(err, KM_EPARSE, "PEM: block at byte %zu is not a CERTIFICATE", i);
            goto out;
        }
        const char *end = memmem(pem + i, rest, END_CERT, sizeof(END_CERT) - 1);
        const char *next = memmem(pem + i + 1, rest - 1, BEGIN_MARK, sizeof(BEGIN_MARK) - 1);
        if (!end || (next && next < end)) {
            st = km_err_set(err, KM_EPARSE, "PEM: certificate at byte %zu is not terminated", i);
            goto out;
        }
        size_t blen = (size_t)(end - (pem + i)) + sizeof(END_CERT) - 1;
        if (km_array_grow(&b->certs, b->n, &b->cap, sizeof(*b->certs)) != KM_OK) {
            st = km_err_set(err, KM_ENOMEM, "PEM: out of memory");
            goto out;
        }
        st = load_block(pem + i, blen, &b->certs[b->n]);
        if (st != KM_OK) {
            km_err_set(err, st, "PEM: certificate %zu (byte %zu) %s", b->n + 1, i,
                       st == KM_ENOMEM ? "out of memory" : "cannot be decoded");
            goto out;
        }
        b->n++;
        i += blen;
    }
    *out = b;
    b = NULL;
out:
    km_pem_free(b);
    return st;
}

size_t km_pem_count(const km_pem_bundle *b)
{
    return b ? b->n : 0;
}

const char *km_pem_fingerprint(const km_pem_bundle *b, size_t i)
{
    return b->certs[i].fp;
}

const char *km_pem_subject(const km_pem_bundle *b, size_t i)
{
    return b->certs[i].subject;
}

time_t km_pem_not_before(const km_pem_bundle *b, size_t i)
{
    return b->certs[i].not_before;
}

time_t km_pem_not_after(const km_pem_bundle *b, size_t i)
{
    return b->certs[i].not_after;
}

const char *km_pem_block(const km_pem_bundle *b, size_t i, size_t *len)
{
    if (len)
        *len = b->certs[i].block_len;
    return b->certs[i].block;
}

int km_pem_contains(const km_pem_bundle *b, const char *fingerprint)
{
    for (size_t i = 0; b && i < b->n; i++)
        if (strcmp(b->certs[i].fp, fingerprint) == 0)
            return 1;
    return 0;
}

km_status km_pem_fingerprint_normalize(const char *in, char out[65])
{
    char tmp[65];
    size_t o = 0;
    for (const char *p = in; p && *p; p++) {
        if (*p == ':')
            continue;
        if (!isxdigit((unsigned char)*p) || o == 64)
            return KM_EINVAL;
        tmp[o++] = (char)tolower((unsigned char)*p);
    }
    if (o != 64)
        return KM_EINVAL;
    tmp[64] = '\0';
    memcpy(out, tmp, sizeof(tmp));
    return KM_OK;
}

const char *km_pem_verdict_name(km_pem_verdict v)
{
    switch (v) {
    case KM_PEM_KEEP:
        return "latest";
    case KM_PEM_KEEP_CURRENT:
        return "current";
    case KM_PEM_KEEP_PINNED:
        return "pinned";
    case KM_PEM_REMOVE_EXPIRED:
        return "expired";
    case KM_PEM_REMOVE_SUPERSEDED:
        return "superseded";
    }
    return "unknown";
}

int km_pem_verdict_removes(km_pem_verdict v)
{
    return v == KM_PEM_REMOVE_EXPIRED || v == KM_PEM_REMOVE_SUPERSEDED;
}

static int is_pinned(const km_pem_policy *p, const char *fp)
{
    for (size_t i = 0; i < p->npinned; i++)
        if (p->pinned[i] && strcmp(p->pinned[i], fp) == 0)
            return 1;
    return 0;
}

km_status km_pem_decide(const km_pem_bundle *b, const km_pem_policy *p, km_pem_verdict *out,
                        km_err *err)
{
    size_t n = km_pem_count(b);
    if (n == 0)
        return KM_OK;
    km_pem_verdict *v = calloc(n, sizeof(*v));
    if (!v)
        return km_err_set(err, KM_ENOMEM, "PEM: out of memory");
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const pem_cert *c = &b->certs[i];
        if (km_pem_contains(p->current, c->fp)) {
            v[i] = KM_PEM_KEEP_CURRENT;
        } else if (is_pinned(p, c->fp)) {
            v[i] = KM_PEM_KEEP_PINNED;
        } else if (c->not_after < p->now) {
            v[i] = KM_PEM_REMOVE_EXPIRED;
        } else {
            v[i] = KM_PEM_KEEP;
            for (size_t j = 0; j < n; j++) {
                const pem_cert *o = &b->certs[j];
                /* Newer, or a current CA minted in the same second (current wins ties). */
                int newer = o->not_before > c->not_before ||
                            (o->not_before == c->not_before && km_pem_contains(p->current, o->fp));
                if (j != i && newer && o->not_after >= p->now &&
                    X509_NAME_cmp(X509_get_subject_name(o->x509), X509_get_subject_name(c->x509)) ==
                        0) {
                    v[i] = KM_PEM_REMOVE_SUPERSEDED;
                    break;
                }
            }
        }
        if (!km_pem_verdict_removes(v[i]))
            kept++;
    }
    if (kept == 0) {
        free(v);
        return km_err_set(err, KM_ESTATE,
                          "refusing to remove all %zu certificates of the bundle (none is current, "
                          "pinned or unexpired)",
                          n);
    }
    memcpy(out, v, n * sizeof(*v));
    free(v);
    return KM_OK;
}

km_status km_pem_encode_kept(const km_pem_bundle *b, const km_pem_verdict *v, km_buf *out)
{
    for (size_t i = 0; i < km_pem_count(b); i++) {
        if (km_pem_verdict_removes(v[i]))
            continue;
        km_status st = km_buf_append(out, b->certs[i].block, b->certs[i].block_len);
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}
