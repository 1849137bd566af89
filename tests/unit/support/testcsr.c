/* testcsr.c — CSR and Node builders for unit tests (see testcsr.h). */
#include "tests/unit/support/testcsr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static void die(const char *what)
{
    fprintf(stderr, "testcsr: %s failed\n", what);
    abort();
}

static EVP_PKEY *new_key(const char *type)
{
    EVP_PKEY *k = (type && strcmp(type, "rsa") == 0) ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    if (!k)
        die("key generation");
    return k;
}

char *testcsr_request_b64(const testcsr_spec *spec)
{
    EVP_PKEY *key = new_key(spec->key_type);
    EVP_PKEY *signer = spec->bad_signature ? new_key(spec->key_type) : key;
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    if (!req || !name)
        die("alloc");
    for (const char *const *e = spec->subject; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char field[16];
        if (!eq || (size_t)(eq - *e) >= sizeof(field))
            die("subject entry");
        memcpy(field, *e, (size_t)(eq - *e));
        field[eq - *e] = '\0';
        if (!X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, (const unsigned char *)eq + 1,
                                        -1, -1, 0))
            die("subject entry");
    }
    if (!X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key) ||
        !X509_REQ_set_version(req, 0))
        die("request fields");
    if (spec->sans && spec->sans[0]) {
        char buf[2048] = "";
        size_t off = 0;
        for (const char *const *s = spec->sans; *s; s++)
            off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s", off ? "," : "", *s);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, buf);
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        if (!ext || !exts || !sk_X509_EXTENSION_push(exts, ext) ||
            !X509_REQ_add_extensions(req, exts))
            die("SAN extension");
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    if (X509_REQ_sign(req, signer, EVP_sha256()) <= 0)
        die("sign");
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_X509_REQ(bio, req))
        die("PEM write");
    char *pem = NULL;
    long len = BIO_get_mem_data(bio, &pem);
    size_t cap = ((size_t)len + 2) / 3 * 4 + 1;
    char *out = malloc(cap);
    if (!out)
        die("alloc");
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)pem, (int)len);
    BIO_free(bio);
    X509_NAME_free(name);
    X509_REQ_free(req);
    if (signer != key)
        EVP_PKEY_free(signer);
    EVP_PKEY_free(key);
    return out;
}

static cJSON *str_array(const char *const *v)
{
    cJSON *a = cJSON_CreateArray();
    for (; v && *v; v++)
        cJSON_AddItemToArray(a, cJSON_CreateString(*v));
    return a;
}

cJSON *testcsr_object(const char *name, const char *signer, const char *username,
                      const char *const *groups, const char *const *usages, const char *request,
                      long expiration)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "CertificateSigningRequest");
    cJSON_AddStringToObject(o, "apiVersion", "certificates.k8s.io/v1");
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(md, "name", name);
    cJSON *spec = cJSON_AddObjectToObject(o, "spec");
    if (request)
        cJSON_AddStringToObject(spec, "request", request);
    cJSON_AddStringToObject(spec, "signerName", signer);
    if (expiration >= 0)
        cJSON_AddNumberToObject(spec, "expirationSeconds", (double)expiration);
    cJSON_AddItemToObject(spec, "usages", str_array(usages));
    if (username)
        cJSON_AddStringToObject(spec, "username", username);
    cJSON_AddItemToObject(spec, "groups", str_array(groups));
    cJSON_AddObjectToObject(o, "status");
    if (!o)
        die("json");
    return o;
}

cJSON *testcsr_node(const char *name, const char *const *addresses)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "Node");
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "metadata"), "name", name);
    cJSON *addrs = cJSON_AddArrayToObject(cJSON_AddObjectToObject(o, "status"), "addresses");
    for (const char *const *a = addresses; a && *a; a++) {
        const char *eq = strchr(*a, '=');
        if (!eq)
            die("address");
        cJSON *e = cJSON_CreateObject();
        char type[32];
        snprintf(type, sizeof(type), "%.*s", (int)(eq - *a), *a);
        cJSON_AddStringToObject(e, "type", type);
        cJSON_AddStringToObject(e, "address", eq + 1);
        cJSON_AddItemToArray(addrs, e);
    }
    return o;
}

cJSON *testcsr_load_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb)
                die("alloc");
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        if (r == 0)
            break;
        len += r;
    }
    fclose(f);
    buf[len] = '\0';
    cJSON *o = cJSON_Parse(buf);
    free(buf);
    if (!o)
        die("parse json");
    return o;
}
