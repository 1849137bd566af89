/* replace.c — replacing stale token Secrets while bridged (see replace.h). */
#include "reconcilers/tokens/replace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/base64.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "operator/base/num.h"
#include "operator/base/strmap.h"
#include "reconcilers/bridge/kid.h"
#include "reconcilers/tokens/check.h"

#define NAME_MAX_LEN 253
#define SA_CONFLICTS_MAX 5 /* re-reads of the ServiceAccount after a conflicting patch */
#define PATH_LEN 800

/* ---- pure rules ------------------------------------------------------------------------------ */

int km_tokens_replacement_name(const char *name, char *buf, size_t n)
{
    size_t len = name ? strlen(name) + strlen(KM_TOKENS_REPLACEMENT_SUFFIX) : 0;
    if (n)
        buf[0] = '\0';
    if (!name || !*name || len > NAME_MAX_LEN || len >= n)
        return -1;
    snprintf(buf, n, "%s%s", name, KM_TOKENS_REPLACEMENT_SUFFIX);
    return 0;
}

static int str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

int km_tokens_is_replacement(const cJSON *r, const cJSON *old)
{
    const char *rsa_uid = KM_JSON_STR(r, "metadata", "annotations", KM_SA_ANN_UID);
    const char *osa_uid = KM_JSON_STR(old, "metadata", "annotations", KM_SA_ANN_UID);
    return str_eq(KM_JSON_STR(r, "type"), KM_SA_TOKEN_TYPE) &&
           str_eq(KM_JSON_STR(r, "metadata", "namespace"),
                  KM_JSON_STR(old, "metadata", "namespace")) &&
           str_eq(KM_JSON_STR(r, "metadata", "annotations", KM_TOKENS_REPLACES_ANN),
                  KM_JSON_STR(old, "metadata", "name")) &&
           str_eq(KM_JSON_STR(r, "metadata", "annotations", KM_SA_ANN_NAME),
                  KM_JSON_STR(old, "metadata", "annotations", KM_SA_ANN_NAME)) &&
           (!rsa_uid || !osa_uid || strcmp(rsa_uid, osa_uid) == 0);
}

/* Calls fn(name, user) for every Secret name pod refers to (volumes, projected sources, and the
 * env / envFrom of containers, initContainers, ephemeralContainers) until fn returns non-zero;
 * returns that value, else 0. */
typedef int (*ref_fn)(const char *name, void *user);

static int each_ref(const cJSON *pod, ref_fn fn, void *user)
{
    static const char *const lists[] = {"containers", "initContainers", "ephemeralContainers"};
    const cJSON *v, *src, *c, *e;
    int rc = 0;
    cJSON_ArrayForEach(v, KM_JSON_AT(pod, "spec", "volumes"))
    {
        const char *nm = KM_JSON_STR(v, "secret", "secretName");
        if (nm && (rc = fn(nm, user)))
            return rc;
        cJSON_ArrayForEach(src, KM_JSON_AT(v, "projected", "sources"))
        {
            if ((nm = KM_JSON_STR(src, "secret", "name")) && (rc = fn(nm, user)))
                return rc;
        }
    }
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        cJSON_ArrayForEach(c, KM_JSON_AT(pod, "spec", lists[i]))
        {
            cJSON_ArrayForEach(e, KM_JSON_AT(c, "env"))
            {
                const char *nm = KM_JSON_STR(e, "valueFrom", "secretKeyRef", "name");
                if (nm && (rc = fn(nm, user)))
                    return rc;
            }
            cJSON_ArrayForEach(e, KM_JSON_AT(c, "envFrom"))
            {
                const char *nm = KM_JSON_STR(e, "secretRef", "name");
                if (nm && (rc = fn(nm, user)))
                    return rc;
            }
        }
    }
    return 0;
}

static int is_name(const char *name, void *user)
{
    return strcmp(name, (const char *)user) == 0;
}

int km_tokens_pod_refers(const cJSON *pod, const char *secret)
{
    return secret ? each_ref(pod, is_name, (void *)secret) : 0;
}

char *km_tokens_secrets_first_patch(const cJSON *sa, const char *name, const char *rv, int *oom)
{
    const cJSON *refs = KM_JSON_AT(sa, "secrets"), *it;
    char *text = NULL;
    *oom = 0;
    if (str_eq(KM_JSON_STR(cJSON_GetArrayItem(refs, 0), "name"), name))
        return NULL;
    cJSON *patch = cJSON_CreateArray(), *t = NULL, *add = NULL, *list = NULL, *first = NULL;
    int ok = patch && (t = cJSON_CreateObject()) && cJSON_AddItemToArray(patch, t) &&
             cJSON_AddStringToObject(t, "op", "test") &&
             cJSON_AddStringToObject(t, "path", "/metadata/resourceVersion") &&
             cJSON_AddStringToObject(t, "value", rv ? rv : "") && (add = cJSON_CreateObject()) &&
             cJSON_AddItemToArray(patch, add) && cJSON_AddStringToObject(add, "op", "add") &&
             cJSON_AddStringToObject(add, "path", "/secrets") &&
             (list = cJSON_AddArrayToObject(add, "value")) && (first = cJSON_CreateObject()) &&
             cJSON_AddItemToArray(list, first) && cJSON_AddStringToObject(first, "name", name);
    cJSON_ArrayForEach(it, refs)
    {
        cJSON *copy;
        if (!ok || str_eq(KM_JSON_STR(it, "name"), name))
            continue;
        ok = (copy = cJSON_Duplicate(it, 1)) && cJSON_AddItemToArray(list, copy);
    }
    if (ok)
        text = km_json_print(patch);
    cJSON_Delete(patch);
    *oom = !text;
    return text;
}

/* ---- replace --------------------------------------------------------------------------------- */

/* The replacement object of Secret s named name (caller frees), or NULL on ENOMEM. */
static cJSON *replacement_obj(const cJSON *s, const char *name)
{
    cJSON *o = cJSON_CreateObject(), *md, *ann;
    const char *sa_uid = KM_JSON_STR(s, "metadata", "annotations", KM_SA_ANN_UID);
    if (o && cJSON_AddStringToObject(o, "apiVersion", "v1") &&
        cJSON_AddStringToObject(o, "kind", "Secret") &&
        cJSON_AddStringToObject(o, "type", KM_SA_TOKEN_TYPE) &&
        (md = cJSON_AddObjectToObject(o, "metadata")) &&
        cJSON_AddStringToObject(md, "name", name) &&
        cJSON_AddStringToObject(md, "namespace", KM_JSON_STR(s, "metadata", "namespace")) &&
        (ann = cJSON_AddObjectToObject(md, "annotations")) &&
        cJSON_AddStringToObject(ann, KM_SA_ANN_NAME,
                                KM_JSON_STR(s, "metadata", "annotations", KM_SA_ANN_NAME)) &&
        (!sa_uid || cJSON_AddStringToObject(ann, KM_SA_ANN_UID, sa_uid)) &&
        cJSON_AddStringToObject(ann, KM_TOKENS_REPLACES_ANN, KM_JSON_STR(s, "metadata", "name")))
        return o;
    cJSON_Delete(o);
    return NULL;
}

/* GETs path into *out; a 404 gives KM_OK with *out NULL.  Failure: the API's error. */
static km_status get_or_null(km_kube *kube, const char *path, cJSON **out, km_err *err)
{
    *out = NULL;
    km_status st = km_kube_get(kube, path, out, err);
    if (st == KM_EAPI && km_err_is_http(err, 404)) {
        km_err_clear(err);
        return KM_OK;
    }
    return st;
}

/* 1 when ServiceAccount sa lists a Secret named name. */
static int sa_names(const cJSON *sa, const char *name)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, KM_JSON_AT(sa, "secrets"))
    {
        if (str_eq(KM_JSON_STR(it, "name"), name))
            return 1;
    }
    return 0;
}

/* 1 when ServiceAccount sa is the one Secret s belongs to and lists it. */
static int sa_lists(const cJSON *sa, const cJSON *s)
{
    const char *uid = KM_JSON_STR(s, "metadata", "annotations", KM_SA_ANN_UID);
    if (!sa || (uid && !str_eq(uid, KM_JSON_STR(sa, "metadata", "uid"))))
        return 0;
    return sa_names(sa, KM_JSON_STR(s, "metadata", "name"));
}

/* Creates the replacement rname of s, or finds it; its uid into uid (size n).  *ours = 0 when
 * the name is another object's. */
static km_status ensure_replacement(km_kube *kube, const cJSON *s, const char *ns,
                                    const char *rname, int *ours, char *uid, size_t n, km_err *err)
{
    char path[PATH_LEN];
    cJSON *obj = replacement_obj(s, rname), *got = NULL;
    km_status st;
    *ours = 0;
    uid[0] = '\0';
    if (!obj)
        return km_err_set(err, KM_ENOMEM, "tokens: out of memory");
    km_kube_path(path, sizeof(path), NULL, "v1", ns, "secrets", NULL, NULL);
    st = km_kube_create(kube, path, obj, &got, err);
    cJSON_Delete(obj);
    if (st == KM_OK) {
        const char *u = KM_JSON_STR(got, "metadata", "uid");
        snprintf(uid, n, "%s", u ? u : "");
        cJSON_Delete(got);
        *ours = 1;
        km_log_info("tokens: created a replacement token Secret (bridged)", "namespace", ns,
                    "secret", rname, "replaces", KM_JSON_STR(s, "metadata", "name"));
        return KM_OK;
    }
    if (st != KM_EAPI || !km_err_is_http(err, 409))
        return st;
    km_err_clear(err);
    km_kube_path(path, sizeof(path), NULL, "v1", ns, "secrets", rname, NULL);
    if ((st = get_or_null(kube, path, &got, err)) != KM_OK)
        return st;
    *ours = got && km_tokens_is_replacement(got, s) &&
            !KM_JSON_AT(got, "metadata", "deletionTimestamp");
    if (*ours) {
        const char *u = KM_JSON_STR(got, "metadata", "uid");
        snprintf(uid, n, "%s", u ? u : "");
    }
    cJSON_Delete(got);
    return KM_OK;
}

/* The ServiceAccount refused to list replacement rname (e.g. 403: the grant allows creating
 * Secrets but not patching ServiceAccounts): it is deleted again (uid precondition) rather than
 * left as an extra valid token of the account.  Nothing mounts it: admission takes only the
 * Secrets the account lists.  A failure is logged (the caller regenerates in place anyway). */
static void drop_unlisted(km_kube *kube, const char *ns, const char *rname, const char *uid)
{
    char path[PATH_LEN], eb[600];
    km_delete_opts o;
    km_err e;
    km_err_clear(&e);
    km_delete_opts_init(&o);
    o.uid = uid && *uid ? uid : NULL;
    km_kube_path(path, sizeof(path), NULL, "v1", ns, "secrets", rname, NULL);
    km_status st = km_kube_delete(kube, path, &o, NULL, &e);
    if (st != KM_OK && !km_err_is_http(&e, 404))
        km_log_warn("tokens: cannot delete the unlisted replacement token Secret", "namespace", ns,
                    "secret", rname, "error", km_err_str(&e, eb, sizeof(eb)));
}

km_status km_tokens_replace(km_kube *kube, const cJSON *secret, int *replaced, char *name, size_t n,
                            km_err *err)
{
    const char *ns = KM_JSON_STR(secret, "metadata", "namespace");
    const char *sa_name = KM_JSON_STR(secret, "metadata", "annotations", KM_SA_ANN_NAME);
    char rname[NAME_MAX_LEN + 1], path[PATH_LEN], ruid[128];
    cJSON *sa = NULL;
    km_status st = KM_OK;
    int ours = 0;
    *replaced = 0;
    if (!ns || !sa_name ||
        km_tokens_replacement_name(KM_JSON_STR(secret, "metadata", "name"), rname, sizeof(rname)) !=
            0 ||
        strlen(rname) >= n)
        return KM_OK;
    km_kube_path(path, sizeof(path), NULL, "v1", ns, "serviceaccounts", sa_name, NULL);
    if ((st = get_or_null(kube, path, &sa, err)) != KM_OK || !sa_lists(sa, secret))
        goto out;
    if ((st = ensure_replacement(kube, secret, ns, rname, &ours, ruid, sizeof(ruid), err)) !=
            KM_OK ||
        !ours)
        goto out;
    for (int i = 0; i <= SA_CONFLICTS_MAX; i++) {
        int oom = 0;
        char *patch = km_tokens_secrets_first_patch(
            sa, rname, KM_JSON_STR(sa, "metadata", "resourceVersion"), &oom);
        if (oom) {
            st = km_err_set(err, KM_ENOMEM, "tokens: out of memory");
            goto out;
        }
        if (!patch) { /* first already */
            *replaced = 1;
            snprintf(name, n, "%s", rname);
            goto out;
        }
        st = km_kube_patch(kube, path, KM_PATCH_JSON, patch, NULL, err);
        free(patch);
        if (st == KM_OK) {
            *replaced = 1;
            snprintf(name, n, "%s", rname);
            goto out;
        }
        /* 409, or 422 from the failed "test": the ServiceAccount changed; read it again.  Refused
         * otherwise: the replacement is not left behind unlisted. */
        if (st == KM_EAPI && !km_err_is_http(err, 409) && !km_err_is_http(err, 422) &&
            !km_err_is_http(err, 404) && !sa_names(sa, rname))
            drop_unlisted(kube, ns, rname, ruid);
        if (st != KM_EAPI || !(km_err_is_http(err, 409) || km_err_is_http(err, 422)))
            goto out;
        km_err_clear(err);
        cJSON_Delete(sa);
        if ((st = get_or_null(kube, path, &sa, err)) != KM_OK || !sa)
            goto out;
    }
    st =
        km_err_set(err, KM_EAPI, "ServiceAccount %s/%s kept changing under the patch", ns, sa_name);
out:
    cJSON_Delete(sa);
    return st;
}

/* ---- retire ---------------------------------------------------------------------------------- */

typedef struct retire {
    km_kube *kube;
    int dry_run;
    const atomic_int *cancel;
    km_tokens_retired *out;
    km_err *err;
    char ns[256];    /* the namespace whose pods' references are in refs */
    km_strmap *refs; /* names of Secrets the pods of ns refer to (values: the map itself) */
} retire;

/* each_ref callback: the name into the map user (-1 on ENOMEM). */
static int put_ref(const char *name, void *user)
{
    km_strmap *refs = user;
    return km_strmap_put(refs, name, refs, NULL) == KM_OK ? 0 : -1;
}

static km_status on_pods(const km_kube_page *page, void *user)
{
    retire *r = user;
    const cJSON *it;
    if (page->restarted) {
        km_strmap_free(r->refs);
        if (!(r->refs = km_strmap_new()))
            return km_err_set(r->err, KM_ENOMEM, "tokens: out of memory");
    }
    cJSON_ArrayForEach(it, page->items)
    {
        if (each_ref(it, put_ref, r->refs) != 0)
            return km_err_set(r->err, KM_ENOMEM, "tokens: out of memory");
    }
    return KM_OK;
}

/* The Secrets the pods of ns refer to, in r->refs (listed once per namespace in a row). */
static km_status pod_refs(retire *r, const char *ns)
{
    char path[PATH_LEN];
    if (r->refs && strcmp(r->ns, ns) == 0)
        return KM_OK;
    km_strmap_free(r->refs);
    r->ns[0] = '\0';
    if (!(r->refs = km_strmap_new()))
        return km_err_set(r->err, KM_ENOMEM, "tokens: out of memory");
    km_kube_path(path, sizeof(path), NULL, "v1", ns, "pods", NULL, NULL);
    km_list_opts o = {.limit = 500};
    km_status st = km_kube_list(r->kube, path, &o, on_pods, r, NULL, r->err);
    if (st != KM_OK) {
        km_strmap_free(r->refs);
        r->refs = NULL;
        return st;
    }
    snprintf(r->ns, sizeof(r->ns), "%s", ns);
    return KM_OK;
}

/* The kid of Secret s's token into kid (size n); "" when it has none or it is malformed. */
static void secret_kid(const cJSON *s, char *kid, size_t n)
{
    char *token = NULL;
    kid[0] = '\0';
    if (km_tokens_precheck(s, &token) == KM_TOKEN_CHECK)
        km_bridge_token_kid(token, kid, n);
    km_tokens_token_free(token);
}

/* One listed replacement rep: the Secret it replaced retired when nothing needs it. */
static km_status retire_one(retire *r, const cJSON *rep)
{
    const char *ns = KM_JSON_STR(rep, "metadata", "namespace");
    const char *old = KM_JSON_STR(rep, "metadata", "annotations", KM_TOKENS_REPLACES_ANN);
    char path[PATH_LEN], rkid[128], okid[128];
    cJSON *s = NULL;
    km_status st;
    secret_kid(rep, rkid, sizeof(rkid));
    if (!ns || !old || !rkid[0] || KM_JSON_AT(rep, "metadata", "deletionTimestamp"))
        return KM_OK; /* no token yet: the old one is still needed */
    km_kube_path(path, sizeof(path), NULL, "v1", ns, "secrets", old, NULL);
    if ((st = get_or_null(r->kube, path, &s, r->err)) != KM_OK || !s)
        return st;
    secret_kid(s, okid, sizeof(okid));
    if (!km_tokens_is_replacement(rep, s) || KM_JSON_AT(s, "metadata", "deletionTimestamp") ||
        strcmp(okid, rkid) == 0)
        goto out; /* not the one replaced any more, or healed by other means: keep it */
    if ((st = pod_refs(r, ns)) != KM_OK)
        goto out;
    if (km_strmap_has(r->refs, old)) {
        r->out->waiting++;
        goto out;
    }
    if (!r->dry_run) {
        km_delete_opts o;
        km_delete_opts_init(&o);
        o.uid = KM_JSON_STR(s, "metadata", "uid");
        st = km_kube_delete(r->kube, path, &o, NULL, r->err);
        if (st == KM_EAPI && (km_err_is_http(r->err, 404) || km_err_is_http(r->err, 409))) {
            km_err_clear(r->err); /* gone, or another object of that name meanwhile */
            st = KM_OK;
        }
        if (st != KM_OK)
            goto out;
        km_log_info("tokens: deleted a replaced token Secret (no pod refers to it)", "namespace",
                    ns, "secret", old, "replacement", KM_JSON_STR(rep, "metadata", "name"));
    }
    r->out->retired++;
out:
    cJSON_Delete(s);
    return st;
}

static km_status on_secrets(const km_kube_page *page, void *user)
{
    retire *r = user;
    const cJSON *it;
    if (page->restarted) /* listed again from the start: what waits is counted again */
        r->out->waiting = 0;
    cJSON_ArrayForEach(it, page->items)
    {
        if (r->cancel && atomic_load(r->cancel))
            return km_err_set(r->err, KM_ECANCELED, "tokens: cancelled");
        if (!KM_JSON_STR(it, "metadata", "annotations", KM_TOKENS_REPLACES_ANN))
            continue;
        km_status st = retire_one(r, it);
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

km_status km_tokens_retire_replaced(km_kube *kube, int dry_run, const atomic_int *cancel,
                                    km_tokens_retired *out, km_err *err)
{
    km_tokens_retired res = {0, 0};
    retire r = {.kube = kube, .dry_run = dry_run, .cancel = cancel, .out = &res, .err = err};
    km_list_opts o = {.field_selector = "type=" KM_SA_TOKEN_TYPE, .limit = 500};
    km_status st = km_kube_list(kube, "/api/v1/secrets", &o, on_secrets, &r, NULL, err);
    km_strmap_free(r.refs);
    if (st == KM_OK)
        *out = res;
    return st;
}

void km_tokens_retired_record(cJSON *tokens_status, const km_tokens_retired *t)
{
    long was = KM_JSON_LONG(tokens_status, 0, "retired");
    km_json_set_num(tokens_status, "retired", (double)(was + t->retired));
    km_json_set_num(tokens_status, "retiring", (double)t->waiting);
}
