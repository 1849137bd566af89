/* jointoken.c — the bootstrap token and the join command (see jointoken.h). */
#include "reconcilers/nodes/jointoken.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"

static const char ALPHABET[] = "abcdefghijklmnopqrstuvwxyz0123456789";

/* n characters of [a-z0-9] into out (+ NUL), unbiased (bytes >= 252 are drawn again). */
static km_status random_chars(char *out, size_t n, km_err *err)
{
    size_t o = 0;
    while (o < n) {
        unsigned char b[32];
        if (RAND_bytes(b, sizeof(b)) != 1)
            return km_err_set(err, KM_EIO, "bootstrap token: the random generator failed");
        for (size_t i = 0; i < sizeof(b) && o < n; i++)
            if (b[i] < 252)
                out[o++] = ALPHABET[b[i] % 36];
        OPENSSL_cleanse(b, sizeof(b));
    }
    out[n] = '\0';
    return KM_OK;
}

km_status km_jointoken_new_id(char id[7], km_err *err)
{
    return random_chars(id, 6, err);
}

/* The Secret object (secret: its token-secret); NULL when out of memory. */
static cJSON *secret_obj(const char *id, const char *secret, time_t expires, const char *recovery)
{
    char name[64], when[KM_CLOCK_TEXT_MAX];
    snprintf(name, sizeof(name), KM_JOINTOKEN_PREFIX "%s", id);
    km_clock_format_s(expires, when, sizeof(when));
    cJSON *o = cJSON_CreateObject();
    cJSON *md = o ? cJSON_AddObjectToObject(o, "metadata") : NULL;
    cJSON *labels = md ? cJSON_AddObjectToObject(md, "labels") : NULL;
    cJSON *ann = md ? cJSON_AddObjectToObject(md, "annotations") : NULL;
    cJSON *sd = o ? cJSON_AddObjectToObject(o, "stringData") : NULL;
    if (!ann || !sd || !cJSON_AddStringToObject(o, "apiVersion", "v1") ||
        !cJSON_AddStringToObject(o, "kind", "Secret") ||
        !cJSON_AddStringToObject(o, "type", "bootstrap.kubernetes.io/token") ||
        !cJSON_AddStringToObject(md, "name", name) ||
        !cJSON_AddStringToObject(md, "namespace", KM_JOINTOKEN_NAMESPACE) ||
        !cJSON_AddStringToObject(labels, "app.kubernetes.io/managed-by", "kubemend") ||
        !cJSON_AddStringToObject(ann, "kubemend.io/recovery", recovery) ||
        !cJSON_AddStringToObject(sd, "token-id", id) ||
        !cJSON_AddStringToObject(sd, "token-secret", secret) ||
        !cJSON_AddStringToObject(sd, "expiration", when) ||
        !cJSON_AddStringToObject(sd, "usage-bootstrap-authentication", "true") ||
        !cJSON_AddStringToObject(sd, "usage-bootstrap-signing", "true") ||
        !cJSON_AddStringToObject(sd, "auth-extra-groups", KM_JOINTOKEN_GROUP) ||
        !cJSON_AddStringToObject(sd, "description",
                                 "kubemend: re-join of the workers after a PKI rebuild")) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Wipes the token-secret held in o's stringData (cJSON frees without clearing). */
static void wipe(cJSON *o)
{
    const cJSON *s = KM_JSON_AT(o, "stringData", "token-secret");
    if (cJSON_IsString(s))
        OPENSSL_cleanse(s->valuestring, strlen(s->valuestring));
}

km_status km_jointoken_create(km_kube *kube, const char *id, time_t expires, const char *recovery,
                              km_err *err)
{
    char secret[17], path[256];
    km_status st = random_chars(secret, 16, err);
    if (st != KM_OK)
        return st;
    cJSON *obj = secret_obj(id, secret, expires, recovery ? recovery : "run-once");
    OPENSSL_cleanse(secret, sizeof(secret));
    if (!obj)
        return km_err_set(err, KM_ENOMEM, "bootstrap token: out of memory");
    km_kube_path(path, sizeof(path), NULL, "v1", KM_JOINTOKEN_NAMESPACE, "secrets", NULL, NULL);
    km_err e;
    km_err_clear(&e);
    st = km_kube_create(kube, path, obj, NULL, &e);
    wipe(obj);
    cJSON_Delete(obj);
    if (st == KM_EAPI && km_err_is_http(&e, 409))
        return KM_OK;
    if (st != KM_OK) {
        if (err)
            *err = e;
        km_err_prefix(err, "create Secret " KM_JOINTOKEN_NAMESPACE "/" KM_JOINTOKEN_PREFIX "%s",
                      id);
    }
    return st;
}

char *km_jointoken_command(const char *server, const char *id, const char *hash, const char *node,
                           char *out, size_t n)
{
    const char *host = server ? server : "<api-server:6443>";
    if (strncmp(host, "https://", 8) == 0)
        host += 8;
    size_t hl = strcspn(host, "/");
    snprintf(out, n,
             "kubeadm join %.*s --token \"$(kubectl -n " KM_JOINTOKEN_NAMESPACE
             " get secret " KM_JOINTOKEN_PREFIX "%s -o jsonpath='{.data.token-id}' | base64 -d)."
             "$(kubectl -n " KM_JOINTOKEN_NAMESPACE " get secret " KM_JOINTOKEN_PREFIX
             "%s -o jsonpath='{.data.token-secret}' | base64 -d)\" "
             "--discovery-token-ca-cert-hash %s%s%s",
             (int)hl, host, id, id, hash, node ? " --node-name " : "", node ? node : "");
    return out;
}
