/* recovery.c — the ClusterRecovery lifecycle (see recovery.h). */
#include "reconcilers/recovery/recovery.h"

#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/backoff.h"
#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "operator/base/yamljson.h"
#include "reconcilers/csr/csr.h"
#include "reconcilers/extauth/extauth.h"
#include "reconcilers/pods/pods.h"
#include "reconcilers/recovery/persist.h"
#include "reconcilers/step/conditions.h"
#include "reconcilers/step/step.h"
#include "reconcilers/tokens/tokens.h"

/* ---- spec schema --------------------------------------------------------------------------- */

typedef enum ftype { F_BOOL, F_INT, F_ENUM, F_STRLIST, F_REGEXLIST, F_FPRLIST, F_SELECTOR } ftype;

typedef struct field {
    const char *name;
    ftype type;
    double dflt; /* F_BOOL / F_INT default; NAN = no default */
    double min, max;
    const char *const *values; /* F_ENUM: allowed values (first = default) */
} field;

static const char *const token_modes[] = {"Regenerate", "Delete", NULL};

static const field tokens_fields[] = {
    {"enabled", F_BOOL, 1, 0, 0, NULL},
    {"mode", F_ENUM, 0, 0, 0, token_modes},
    {"verifyTimeoutSeconds", F_INT, 60, 0, 3600, NULL},
    {NULL, F_BOOL, 0, 0, 0, NULL},
};
static const field extauth_fields[] = {
    {"enabled", F_BOOL, 1, 0, 0, NULL},
    {"pinnedFingerprints", F_FPRLIST, NAN, 0, 20, NULL},
    {NULL, F_BOOL, 0, 0, 0, NULL},
};
static const field csr_fields[] = {
    {"enabled", F_BOOL, 1, 0, 0, NULL},
    {"windowSeconds", F_INT, 3600, 1, 1e15, NULL},
    {"continuous", F_BOOL, 0, 0, 0, NULL},
    {"deny", F_BOOL, 1, 0, 0, NULL},
    {"approveKubeletClient", F_BOOL, 0, 0, 0, NULL},
    {"allowedDNSPatterns", F_REGEXLIST, NAN, 0, 50, NULL},
    {"maxExpirationSeconds", F_INT, 31536000, 600, 1e15, NULL},
    {NULL, F_BOOL, 0, 0, 0, NULL},
};
static const field pods_fields[] = {
    {"enabled", F_BOOL, 1, 0, 0, NULL},
    {"includeDefaultServiceAccount", F_BOOL, 0, 0, 0, NULL},
    {"namespaces", F_STRLIST, NAN, 0, 0, NULL},
    {"includeNamespaces", F_STRLIST, NAN, 0, 0, NULL},
    {"excludeNamespaces", F_STRLIST, NAN, 0, 0, NULL},
    {"namespaceSelector", F_SELECTOR, NAN, 0, 0, NULL},
    {"maxConcurrent", F_INT, 5, 1, 100, NULL},
    {"waitForReady", F_BOOL, 1, 0, 0, NULL},
    {"namespaceTimeoutSeconds", F_INT, 600, 1, 2147483647, NULL},
    {"evictionTimeoutSeconds", F_INT, 300, 1, 2147483647, NULL},
    {"deleteOwnerlessPods", F_BOOL, 0, 0, 0, NULL},
    {NULL, F_BOOL, 0, 0, 0, NULL},
};

static const struct step_schema {
    const char *key;
    const field *fields;
} step_schemas[KM_STEP_COUNT] = {
    {"tokens", tokens_fields},
    {"extensionApiserverAuthentication", extauth_fields},
    {"csr", csr_fields},
    {"pods", pods_fields},
};

const char *km_recovery_step_key(int step)
{
    if (step < 0 || step >= KM_STEP_COUNT)
        return NULL;
    return step_schemas[step].key;
}

km_status km_recovery_parse_steps(const char *list, unsigned *mask, km_err *err)
{
    unsigned m = 0;
    const char *p = list ? list : "";
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char name[64];
        if (len == 0 || len >= sizeof(name))
            return km_err_set(err, KM_EINVAL,
                              "--steps: empty or invalid entry in \"%s\" (use "
                              "tokens,extauth,csr,pods)",
                              list ? list : "");
        memcpy(name, p, len);
        name[len] = '\0';
        if (strcmp(name, "tokens") == 0)
            m |= 1u << KM_STEP_TOKENS;
        else if (strcmp(name, "extauth") == 0 ||
                 strcmp(name, "extensionApiserverAuthentication") == 0)
            m |= 1u << KM_STEP_EXTAUTH;
        else if (strcmp(name, "csr") == 0)
            m |= 1u << KM_STEP_CSR;
        else if (strcmp(name, "pods") == 0)
            m |= 1u << KM_STEP_PODS;
        else
            return km_err_set(err, KM_EINVAL,
                              "--steps: unknown step \"%s\" (use tokens,extauth,csr,pods)", name);
        if (!comma)
            break;
        p = comma + 1;
    }
    *mask = m;
    return KM_OK;
}

static int is_integral(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && floor(v->valuedouble) == v->valuedouble;
}

static km_status check_strlist(const cJSON *v, const char *path, km_err *err)
{
    if (!cJSON_IsArray(v))
        return km_err_set(err, KM_EINVAL, "%s: must be a list of strings", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it))
            return km_err_set(err, KM_EINVAL, "%s: must be a list of strings", path);
    }
    return KM_OK;
}

static km_status check_fingerprint(const char *s, const char *path, km_err *err)
{
    /* The CRD's pattern: 64 hex digits, or 32 hex pairs separated by colons. */
    size_t n = strlen(s);
    int ok = n == 64 || n == 95;
    for (size_t i = 0; ok && i < n; i++) {
        char c = s[i];
        int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        ok = n == 64 ? hex : (i % 3 == 2 ? c == ':' : hex);
    }
    if (!ok)
        return km_err_set(err, KM_EINVAL,
                          "%s: \"%s\" is not a SHA-256 fingerprint (64 hex digits, colons allowed "
                          "between pairs)",
                          path, s);
    return KM_OK;
}

static km_status check_selector(const cJSON *v, const char *path, km_err *err)
{
    if (!cJSON_IsObject(v))
        return km_err_set(err, KM_EINVAL, "%s: must be a label selector object", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (strcmp(it->string, "matchLabels") == 0) {
            if (!cJSON_IsObject(it))
                return km_err_set(err, KM_EINVAL, "%s.matchLabels: must be a map of strings", path);
            const cJSON *l;
            cJSON_ArrayForEach(l, it)
            {
                if (!cJSON_IsString(l))
                    return km_err_set(err, KM_EINVAL, "%s.matchLabels.%s: must be a string", path,
                                      l->string);
            }
        } else if (strcmp(it->string, "matchExpressions") == 0) {
            if (!cJSON_IsArray(it))
                return km_err_set(err, KM_EINVAL, "%s.matchExpressions: must be a list", path);
            const cJSON *e;
            int i = 0;
            cJSON_ArrayForEach(e, it)
            {
                const char *key = KM_JSON_STR(e, "key");
                const char *op = KM_JSON_STR(e, "operator");
                const cJSON *vals = KM_JSON_AT(e, "values");
                if (!key || !*key)
                    return km_err_set(err, KM_EINVAL, "%s.matchExpressions[%d].key: required", path,
                                      i);
                int set_op = op && (strcmp(op, "In") == 0 || strcmp(op, "NotIn") == 0);
                int ex_op = op && (strcmp(op, "Exists") == 0 || strcmp(op, "DoesNotExist") == 0);
                if (!set_op && !ex_op)
                    return km_err_set(err, KM_EINVAL,
                                      "%s.matchExpressions[%d].operator: must be In, NotIn, "
                                      "Exists or DoesNotExist",
                                      path, i);
                if (vals) {
                    char sub[256];
                    snprintf(sub, sizeof(sub), "%s.matchExpressions[%d].values", path, i);
                    km_status st = check_strlist(vals, sub, err);
                    if (st != KM_OK)
                        return st;
                }
                int nvals = vals ? cJSON_GetArraySize(vals) : 0;
                if (set_op && nvals == 0)
                    return km_err_set(err, KM_EINVAL,
                                      "%s.matchExpressions[%d].values: must be non-empty for %s",
                                      path, i, op);
                if (ex_op && nvals != 0)
                    return km_err_set(err, KM_EINVAL,
                                      "%s.matchExpressions[%d].values: must be empty for %s", path,
                                      i, op);
                i++;
            }
        } else {
            return km_err_set(err, KM_EINVAL, "%s.%s: unknown field", path, it->string);
        }
    }
    return KM_OK;
}

static km_status check_field(const field *f, const cJSON *v, const char *path, km_err *err)
{
    switch (f->type) {
    case F_BOOL:
        if (!cJSON_IsBool(v))
            return km_err_set(err, KM_EINVAL, "%s: must be true or false", path);
        return KM_OK;
    case F_INT:
        if (!is_integral(v))
            return km_err_set(err, KM_EINVAL, "%s: must be an integer", path);
        if (v->valuedouble < f->min || v->valuedouble > f->max)
            return km_err_set(err, KM_EINVAL, "%s: must be between %.0f and %.0f (got %.0f)", path,
                              f->min, f->max, v->valuedouble);
        return KM_OK;
    case F_ENUM:
        if (cJSON_IsString(v))
            for (const char *const *e = f->values; *e; e++)
                if (strcmp(*e, v->valuestring) == 0)
                    return KM_OK;
        return km_err_set(err, KM_EINVAL, "%s: must be one of %s, %s", path, f->values[0],
                          f->values[1]);
    case F_STRLIST:
        return check_strlist(v, path, err);
    case F_REGEXLIST: {
        km_status st = check_strlist(v, path, err);
        if (st == KM_OK && cJSON_GetArraySize(v) > (int)f->max)
            return km_err_set(err, KM_EINVAL, "%s: at most %.0f entries", path, f->max);
        const cJSON *it;
        if (st != KM_OK)
            return st;
        cJSON_ArrayForEach(it, v)
        {
            regex_t re;
            size_t len = strlen(it->valuestring);
            if (len < 1 || len > 256)
                return km_err_set(err, KM_EINVAL, "%s: patterns must be 1..256 characters", path);
            if (regcomp(&re, it->valuestring, REG_EXTENDED | REG_NOSUB) != 0)
                return km_err_set(err, KM_EINVAL, "%s: \"%s\" is not a valid regular expression",
                                  path, it->valuestring);
            regfree(&re);
        }
        return KM_OK;
    }
    case F_FPRLIST: {
        km_status st = check_strlist(v, path, err);
        if (st == KM_OK && cJSON_GetArraySize(v) > (int)f->max)
            return km_err_set(err, KM_EINVAL, "%s: at most %.0f entries", path, f->max);
        const cJSON *it;
        if (st != KM_OK)
            return st;
        cJSON_ArrayForEach(it, v)
        {
            st = check_fingerprint(it->valuestring, path, err);
            if (st != KM_OK)
                return st;
        }
        return KM_OK;
    }
    case F_SELECTOR:
        return check_selector(v, path, err);
    }
    return KM_OK;
}

/* Validates and defaults one step block in place (blk is the output copy). */
static km_status step_defaults(const struct step_schema *sc, cJSON *blk, km_err *err)
{
    char path[128];
    const cJSON *it;
    cJSON_ArrayForEach(it, blk)
    {
        const field *f = sc->fields;
        while (f->name && strcmp(f->name, it->string) != 0)
            f++;
        snprintf(path, sizeof(path), "spec.%s.%s", sc->key, it->string);
        if (!f->name)
            return km_err_set(err, KM_EINVAL, "%s: unknown field", path);
        km_status st = check_field(f, it, path, err);
        if (st != KM_OK)
            return st;
    }
    for (const field *f = sc->fields; f->name; f++) {
        if (cJSON_GetObjectItemCaseSensitive(blk, f->name))
            continue;
        cJSON *d = NULL;
        if (f->type == F_BOOL)
            d = f->dflt != 0 ? cJSON_CreateTrue() : cJSON_CreateFalse();
        else if (f->type == F_INT)
            d = cJSON_CreateNumber(f->dflt);
        else if (f->type == F_ENUM)
            d = cJSON_CreateString(f->values[0]);
        else
            continue; /* lists and selectors have no default */
        if (!d || !cJSON_AddItemToObject(blk, f->name, d)) {
            cJSON_Delete(d);
            return km_err_set(err, KM_ENOMEM, "spec defaults: out of memory");
        }
    }
    /* The CEL rule: includeNamespaces and excludeNamespaces are disjoint. */
    const cJSON *inc = cJSON_GetObjectItemCaseSensitive(blk, "includeNamespaces");
    const cJSON *exc = cJSON_GetObjectItemCaseSensitive(blk, "excludeNamespaces");
    if (inc && exc) {
        cJSON_ArrayForEach(it, inc)
        {
            if (km_json_array_has_str(exc, it->valuestring))
                return km_err_set(err, KM_EINVAL,
                                  "spec.pods: namespace \"%s\" is both in includeNamespaces and "
                                  "excludeNamespaces",
                                  it->valuestring);
        }
    }
    return KM_OK;
}

km_status km_recovery_spec_defaults(const cJSON *spec, cJSON **out, km_err *err)
{
    if (spec && !cJSON_IsNull(spec) && !cJSON_IsObject(spec))
        return km_err_set(err, KM_EINVAL, "spec: must be an object");
    cJSON *s = (spec && cJSON_IsObject(spec)) ? cJSON_Duplicate(spec, 1) : cJSON_CreateObject();
    km_status st = KM_OK;
    if (!s)
        return km_err_set(err, KM_ENOMEM, "spec defaults: out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, s)
    {
        int known = strcmp(it->string, "dryRun") == 0;
        for (int i = 0; i < KM_STEP_COUNT && !known; i++)
            known = strcmp(it->string, step_schemas[i].key) == 0;
        if (!known) {
            st = km_err_set(err, KM_EINVAL, "spec.%s: unknown field", it->string);
            goto out;
        }
    }
    const cJSON *dry = cJSON_GetObjectItemCaseSensitive(s, "dryRun");
    if (dry && !cJSON_IsBool(dry)) {
        st = km_err_set(err, KM_EINVAL, "spec.dryRun: must be true or false");
        goto out;
    }
    if (!dry && !cJSON_AddFalseToObject(s, "dryRun")) {
        st = km_err_set(err, KM_ENOMEM, "spec defaults: out of memory");
        goto out;
    }
    for (int i = 0; i < KM_STEP_COUNT; i++) {
        cJSON *blk = cJSON_GetObjectItemCaseSensitive(s, step_schemas[i].key);
        if (blk && cJSON_IsNull(blk)) {
            cJSON_DeleteItemFromObjectCaseSensitive(s, step_schemas[i].key);
            blk = NULL;
        }
        if (blk && !cJSON_IsObject(blk)) {
            st = km_err_set(err, KM_EINVAL, "spec.%s: must be an object", step_schemas[i].key);
            goto out;
        }
        if (!blk && !(blk = cJSON_AddObjectToObject(s, step_schemas[i].key))) {
            st = km_err_set(err, KM_ENOMEM, "spec defaults: out of memory");
            goto out;
        }
        st = step_defaults(&step_schemas[i], blk, err);
        if (st != KM_OK)
            goto out;
    }
    *out = s;
    s = NULL;
out:
    cJSON_Delete(s);
    return st;
}

km_status km_recovery_validate(const cJSON *obj, km_err *err)
{
    if (!cJSON_IsObject(obj))
        return km_err_set(err, KM_EINVAL, "not a ClusterRecovery: expected a YAML mapping");
    const char *api = KM_JSON_STR(obj, "apiVersion");
    const char *kind = KM_JSON_STR(obj, "kind");
    if (!api || strcmp(api, KM_RECOVERY_API_VERSION) != 0)
        return km_err_set(err, KM_EINVAL, "apiVersion: expected %s, got %s",
                          KM_RECOVERY_API_VERSION, api ? api : "(none)");
    if (!kind || strcmp(kind, KM_RECOVERY_KIND) != 0)
        return km_err_set(err, KM_EINVAL, "kind: expected %s, got %s", KM_RECOVERY_KIND,
                          kind ? kind : "(none)");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    if (md && !cJSON_IsNull(md) && !cJSON_IsObject(md))
        return km_err_set(err, KM_EINVAL, "metadata: must be an object");
    const cJSON *name = KM_JSON_AT(obj, "metadata", "name");
    if (name) {
        if (!cJSON_IsString(name) || !*name->valuestring || strlen(name->valuestring) > 253)
            return km_err_set(err, KM_EINVAL, "metadata.name: must be a non-empty string");
        for (const char *p = name->valuestring; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
                return km_err_set(err, KM_EINVAL,
                                  "metadata.name: \"%s\" is not a DNS subdomain (lowercase "
                                  "letters, digits, '-', '.')",
                                  name->valuestring);
    }
    cJSON *spec = NULL;
    km_status st = km_recovery_spec_defaults(KM_JSON_AT(obj, "spec"), &spec, err);
    cJSON_Delete(spec);
    return st;
}

km_status km_recovery_load_file(const char *path, cJSON **out, km_err *err)
{
    cJSON *doc = NULL;
    km_status st = km_yaml_parse_file(path, &doc, err);
    if (st != KM_OK)
        return st;
    st = km_recovery_validate(doc, err);
    if (st != KM_OK) {
        km_err_prefix(err, "%s", path);
        goto out;
    }
    if (!KM_JSON_STR(doc, "metadata", "name")) {
        cJSON *md = km_json_obj(doc, "metadata");
        if (!md || km_json_set_str(md, "name", "run-once") != KM_OK) {
            st = km_err_set(err, KM_ENOMEM, "%s: out of memory", path);
            goto out;
        }
    }
    *out = doc;
    doc = NULL;
out:
    cJSON_Delete(doc);
    return st;
}

/* ---- picking the active recovery ------------------------------------------------------------ */

int km_recovery_is_completed(const cJSON *obj)
{
    const char *phase = KM_JSON_STR(obj, "status", "phase");
    return phase && (strcmp(phase, KM_PHASE_SUCCEEDED) == 0 || strcmp(phase, KM_PHASE_FAILED) == 0);
}

static int str_cmp0(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

int km_recovery_pick_active(const cJSON *const *objs, size_t n)
{
    int best = -1, best_running = 0;
    for (size_t i = 0; i < n; i++) {
        const cJSON *o = objs[i];
        if (!o || km_recovery_is_completed(o) || KM_JSON_STR(o, "metadata", "deletionTimestamp"))
            continue;
        const char *phase = KM_JSON_STR(o, "status", "phase");
        int running = phase && strcmp(phase, KM_PHASE_RUNNING) == 0;
        if (best >= 0) {
            const cJSON *b = objs[best];
            if (best_running && !running)
                continue;
            if (running == best_running) {
                /* RFC3339 timestamps of one format compare as strings. */
                int c = str_cmp0(KM_JSON_STR(o, "metadata", "creationTimestamp"),
                                 KM_JSON_STR(b, "metadata", "creationTimestamp"));
                if (c > 0 || (c == 0 && str_cmp0(KM_JSON_STR(o, "metadata", "name"),
                                                 KM_JSON_STR(b, "metadata", "name")) >= 0))
                    continue;
            }
        }
        best = (int)i;
        best_running = running;
    }
    return best;
}

/* ---- the run engine ------------------------------------------------------------------------- */

static const struct step_def {
    const char *cond;        /* condition type */
    const char *title;       /* for messages and events */
    const char *fail_reason; /* Succeeded=False reason when this step failed */
} step_defs[KM_STEP_COUNT] = {
    {KM_COND_TOKENS, "Tokens", "TokensFailed"},
    {KM_COND_EXTAUTH, "ExtensionAuth", "ExtensionAuthFailed"},
    {KM_COND_CSR, "CSR", "CSRFailed"},
    {KM_COND_PODS, "Pods", "PodsFailed"},
};

/* The step entry points linked into this build (NULL = not available yet). */
static km_step_fn step_entry(int step)
{
    switch (step) {
    case KM_STEP_TOKENS:
        return km_tokens_step;
    case KM_STEP_EXTAUTH:
        return km_extauth_step;
    case KM_STEP_CSR:
        return km_csr_step;
    case KM_STEP_PODS:
        return km_pods_step;
    default:
        return NULL;
    }
}

#define RECENT_MAX 50

struct km_recovery {
    km_recovery_opts o;
    cJSON *obj;  /* the object with our status; owned */
    cJSON *spec; /* defaulted spec; owned */
    cJSON *ref;  /* {apiVersion, metadata{name, uid}} for Events from any thread; owned */
    char name[256];
    char path[512];
    int dry_run;
    atomic_int cancel; /* the steps' cancel flag */
    int deleting;
    const char *cur_step; /* key of the running step, for progress/count callbacks */

    pthread_mutex_t mu; /* guards pending */
    cJSON *pending;     /* approver decisions not yet in status: [{name,node,decision,reason}] */
    km_csr_approver *approver; /* while the window is open */
};

static cJSON *status_obj(km_recovery *r)
{
    return km_json_obj(r->obj, "status");
}

static long long generation(const km_recovery *r)
{
    return (long long)KM_JSON_NUM(r->obj, 0, "metadata", "generation");
}

cJSON *km_recovery_ref(const cJSON *obj)
{
    cJSON *ref = cJSON_CreateObject();
    cJSON *md = ref ? cJSON_AddObjectToObject(ref, "metadata") : NULL;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    const char *uid = KM_JSON_STR(obj, "metadata", "uid");
    if (!md || !cJSON_AddStringToObject(ref, "apiVersion", KM_RECOVERY_API_VERSION) ||
        !cJSON_AddStringToObject(ref, "kind", KM_RECOVERY_KIND) ||
        !cJSON_AddStringToObject(md, "name", name ? name : "run-once") ||
        (uid && !cJSON_AddStringToObject(md, "uid", uid))) {
        cJSON_Delete(ref);
        return NULL;
    }
    return ref;
}

static km_status build_ref(km_recovery *r)
{
    cJSON *ref = km_recovery_ref(r->obj);
    if (!ref)
        return KM_ENOMEM;
    cJSON_Delete(r->ref);
    r->ref = ref;
    return KM_OK;
}

km_status km_recovery_new(const cJSON *obj, const km_recovery_opts *o, km_recovery **out,
                          km_err *err)
{
    km_status st = KM_OK;
    km_recovery *r = calloc(1, sizeof(*r));
    if (!r)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->o = *o;
    const char *name = KM_JSON_STR(obj, "metadata", "name");
    snprintf(r->name, sizeof(r->name), "%s", name ? name : "run-once");
    st = km_kube_path(r->path, sizeof(r->path), KM_RECOVERY_GROUP, KM_RECOVERY_VERSION, NULL,
                      KM_RECOVERY_PLURAL, r->name, NULL);
    if (st != KM_OK) {
        km_err_set(err, st, "recovery %s: name too long", r->name);
        goto fail;
    }
    st = km_recovery_spec_defaults(KM_JSON_AT(obj, "spec"), &r->spec, err);
    if (st != KM_OK) {
        km_err_prefix(err, "ClusterRecovery %s", r->name);
        goto fail;
    }
    r->obj = cJSON_Duplicate(obj, 1);
    r->pending = cJSON_CreateArray();
    if (!r->obj || !r->pending || !status_obj(r) || build_ref(r) != KM_OK) {
        st = km_err_set(err, KM_ENOMEM, "recovery: out of memory");
        goto fail;
    }
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r->obj, "metadata")) &&
        !km_json_obj(r->obj, "metadata")) {
        st = km_err_set(err, KM_ENOMEM, "recovery: out of memory");
        goto fail;
    }
    r->dry_run = o->dry_run || KM_JSON_BOOL(r->spec, 0, "dryRun");
    r->deleting = KM_JSON_STR(r->obj, "metadata", "deletionTimestamp") != NULL;
    *out = r;
    return KM_OK;
fail:
    km_recovery_free(r);
    return st;
}

static void approver_stop(km_recovery *r);

void km_recovery_free(km_recovery *r)
{
    if (!r)
        return;
    approver_stop(r);
    cJSON_Delete(r->obj);
    cJSON_Delete(r->spec);
    cJSON_Delete(r->ref);
    cJSON_Delete(r->pending);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

const cJSON *km_recovery_object(const km_recovery *r)
{
    return r->obj;
}

void km_recovery_cancel(km_recovery *r)
{
    atomic_store(&r->cancel, 1);
}

int km_recovery_deleting(const km_recovery *r)
{
    return r->deleting;
}

static int stopping(km_recovery *r)
{
    if (r->o.stop && atomic_load(r->o.stop))
        atomic_store(&r->cancel, 1);
    return atomic_load(&r->cancel) != 0;
}

km_status km_recovery_refresh(km_recovery *r, const cJSON *fresh, km_err *err)
{
    const char *uid = KM_JSON_STR(r->obj, "metadata", "uid");
    const char *fuid = KM_JSON_STR(fresh, "metadata", "uid");
    if (uid && (!fuid || strcmp(uid, fuid) != 0))
        return km_err_set(err, KM_ESTATE, "ClusterRecovery %s was replaced", r->name);
    const cJSON *md = KM_JSON_AT(fresh, "metadata");
    const cJSON *spec = KM_JSON_AT(fresh, "spec");
    cJSON *mdc = md ? cJSON_Duplicate(md, 1) : NULL;
    cJSON *specc = spec ? cJSON_Duplicate(spec, 1) : NULL;
    if ((md && !mdc) || (spec && !specc)) {
        cJSON_Delete(mdc);
        cJSON_Delete(specc);
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    }
    if (mdc) {
        cJSON_DeleteItemFromObjectCaseSensitive(r->obj, "metadata");
        cJSON_AddItemToObject(r->obj, "metadata", mdc);
    }
    if (specc) {
        /* The spec the run uses stays the validated one (r->spec); keep the raw one current. */
        cJSON_DeleteItemFromObjectCaseSensitive(r->obj, "spec");
        cJSON_AddItemToObject(r->obj, "spec", specc);
    }
    r->deleting = KM_JSON_STR(r->obj, "metadata", "deletionTimestamp") != NULL;
    if (r->deleting)
        atomic_store(&r->cancel, 1);
    return KM_OK;
}

static void record(km_recovery *r, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void record(km_recovery *r, const char *type, const char *reason, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    km_events_record(r->o.events, r->ref, type, reason, msg);
}

static void set_cond(km_recovery *r, const char *type, const char *cstatus, const char *reason,
                     const char *message)
{
    char now[32];
    km_clock_now_text(now, sizeof(now));
    km_cond_set(status_obj(r), type, cstatus, reason, message, generation(r), now);
}

static void set_progress(km_recovery *r, const char *step, const char *text)
{
    char shortened[257]; /* the CRD's maxLength */
    snprintf(shortened, sizeof(shortened), "%s", text);
    km_json_set_str(status_obj(r), "progress", shortened);
    if (r->o.progress)
        r->o.progress(r->name, step ? step : "", text, r->o.user);
}

/* ---- CSR approval window ------------------------------------------------------------------- */

static time_t parse_time(const char *s)
{
    time_t t;
    return km_clock_parse(s, &t) == KM_OK ? t : (time_t)-1;
}

/* Folds queued approver decisions into status.csr.  Returns 1 when something changed. */
static int flush_decisions(km_recovery *r)
{
    pthread_mutex_lock(&r->mu);
    cJSON *pending = r->pending;
    cJSON *fresh = cJSON_CreateArray();
    if (!fresh || cJSON_GetArraySize(pending) == 0) {
        pthread_mutex_unlock(&r->mu);
        cJSON_Delete(fresh);
        return 0;
    }
    r->pending = fresh;
    pthread_mutex_unlock(&r->mu);

    cJSON *csr = km_json_obj(status_obj(r), "csr");
    cJSON *d;
    cJSON_ArrayForEach(d, pending)
    {
        const char *decision = KM_JSON_STR(d, "decision");
        const char *counter = !decision                           ? "ignored"
                              : strcmp(decision, "Approved") == 0 ? "approved"
                              : strcmp(decision, "Denied") == 0   ? "denied"
                                                                  : "pending";
        if (csr)
            km_step_counter_add(csr, counter, 1);
        if (r->o.count) {
            char name[64];
            snprintf(name, sizeof(name), "csr_%s_total", counter);
            r->o.count("csr", name, 1, r->o.user);
        }
        cJSON *recent = csr ? cJSON_GetObjectItemCaseSensitive(csr, "recent") : NULL;
        if (csr && !cJSON_IsArray(recent)) {
            cJSON_DeleteItemFromObjectCaseSensitive(csr, "recent");
            recent = cJSON_AddArrayToObject(csr, "recent");
        }
        if (recent) {
            while (cJSON_GetArraySize(recent) >= RECENT_MAX)
                cJSON_DeleteItemFromArray(recent, 0);
            cJSON *copy = cJSON_Duplicate(d, 1);
            if (copy && !cJSON_AddItemToArray(recent, copy))
                cJSON_Delete(copy);
        }
    }
    cJSON_Delete(pending);
    return 1;
}

/* Called from the approver's thread. */
static void hook_decided(const char *csr, const char *node, const char *decision,
                         const char *reason, void *user)
{
    km_recovery *r = user;
    cJSON *d = cJSON_CreateObject();
    if (!d)
        return;
    if (!cJSON_AddStringToObject(d, "name", csr ? csr : "") ||
        !cJSON_AddStringToObject(d, "node", node ? node : "") ||
        !cJSON_AddStringToObject(d, "decision", decision ? decision : "") ||
        !cJSON_AddStringToObject(d, "reason", reason ? reason : "")) {
        cJSON_Delete(d);
        return;
    }
    pthread_mutex_lock(&r->mu);
    if (!cJSON_AddItemToArray(r->pending, d))
        cJSON_Delete(d);
    pthread_mutex_unlock(&r->mu);
}

/* Called from the approver's thread: r->ref never changes while the approver runs. */
static void hook_event(const char *type, const char *reason, const char *message, void *user)
{
    km_recovery *r = user;
    km_events_record(r->o.events, r->ref, type, reason, message);
}

/* Starts the background approver (no-op when running).  Failure: logged, the window stays
 * recorded; the next tick retries. */
static km_status approver_start(km_recovery *r, km_err *err)
{
    if (r->approver)
        return KM_OK;
    cJSON *spec = cJSON_Duplicate(KM_JSON_AT(r->spec, "csr"), 1);
    if (!spec)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    int continuous = KM_JSON_BOOL(r->spec, 0, "csr", "continuous") && !r->o.once;
    const char *ends = KM_JSON_STR(status_obj(r), "csr", "windowEndsAt");
    /* run --once without --csr-window: the approver lives until the run ends. */
    int bounded = !continuous && ends && !(r->o.once && r->o.csr_window <= 0);
    km_status st = KM_OK;
    if (bounded && km_json_set_str(spec, "windowEndsAt", ends) != KM_OK) {
        st = km_err_set(err, KM_ENOMEM, "recovery: out of memory");
        goto out;
    }
    km_csr_hooks hooks = {hook_decided, hook_event, r};
    st = km_csr_approver_start(r->o.kube, spec, &hooks, &r->approver, err);
    if (st == KM_OK)
        km_log_info("CSR approver started", "recovery", r->name, "until",
                    continuous ? "continuous"
                    : bounded  ? ends
                               : "end of run");
out:
    cJSON_Delete(spec);
    return st;
}

static void approver_stop(km_recovery *r)
{
    if (!r->approver)
        return;
    km_csr_approver_free(r->approver);
    r->approver = NULL;
    km_log_info("CSR approver stopped", "recovery", r->name);
}

int km_recovery_window_open(const km_recovery *r)
{
    return r->approver != NULL && km_csr_approver_running(r->approver);
}

/* Whether the window of a recovery whose csr step finished is (still) open at `now`. */
static int window_should_be_open(km_recovery *r, time_t now)
{
    if (r->dry_run || !km_cond_is(status_obj(r), KM_COND_CSR, "True"))
        return 0;
    const char *reason = km_cond_reason(status_obj(r), KM_COND_CSR);
    if (!reason || strcmp(reason, "WindowOpen") != 0)
        return 0;
    if (KM_JSON_BOOL(r->spec, 0, "csr", "continuous") && !r->o.once)
        return 1;
    time_t ends = parse_time(KM_JSON_STR(status_obj(r), "csr", "windowEndsAt"));
    return ends != (time_t)-1 && now < ends;
}

/* ---- persisting ---------------------------------------------------------------------------- */

/* Writes the status (operator mode) and notices deletion.  KM_ECANCELED when the object is being
 * deleted or the run was cancelled. */
static km_status save(km_recovery *r, km_err *err)
{
    flush_decisions(r);
    if (r->o.persist) {
        km_status st = km_recovery_write_status(r->o.kube, r->path, r->obj, err);
        if (st != KM_OK)
            return st;
        if (KM_JSON_STR(r->obj, "metadata", "deletionTimestamp")) {
            r->deleting = 1;
            atomic_store(&r->cancel, 1);
        }
    }
    if (stopping(r))
        return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: stopped%s", r->name,
                          r->deleting ? " (being deleted)" : "");
    return KM_OK;
}

static km_status ctx_save(km_step_ctx *ctx, km_err *err)
{
    return save(ctx->user, err);
}

static void ctx_event(km_step_ctx *ctx, const char *type, const char *reason, const char *message)
{
    km_recovery *r = ctx->user;
    km_events_record(r->o.events, r->ref, type, reason, message);
}

static void ctx_progress(km_step_ctx *ctx, const char *text)
{
    km_recovery *r = ctx->user;
    set_progress(r, r->cur_step, text);
}

static void ctx_count(km_step_ctx *ctx, const char *counter, long delta)
{
    km_recovery *r = ctx->user;
    if (r->o.count)
        r->o.count(r->cur_step ? r->cur_step : "", counter, delta, r->o.user);
}

static int transient(km_status st, const km_err *e)
{
    if (st == KM_ETRANSPORT || st == KM_ETIMEOUT)
        return 1;
    if (st == KM_EAPI)
        return e->http_code == 409 || e->http_code == 429 || e->http_code >= 500;
    return 0;
}

/* ---- running ------------------------------------------------------------------------------- */

/* Opens the CSR approval window after the csr step's pass. */
static void open_window(km_recovery *r, km_step_ctx *ctx)
{
    cJSON *csr = km_json_obj(status_obj(r), "csr");
    long secs = r->o.csr_window > 0 ? r->o.csr_window
                                    : (long)KM_JSON_NUM(r->spec, 3600, "csr", "windowSeconds");
    time_t now = time(NULL);
    char ends[32];
    km_clock_format_s(now + secs, ends, sizeof(ends));
    if (csr && !KM_JSON_STR(csr, "windowEndsAt"))
        km_json_set_str(csr, "windowEndsAt", ends);
    const char *until = csr ? KM_JSON_STR(csr, "windowEndsAt") : ends;
    char msg[768];
    if (r->dry_run) {
        snprintf(msg, sizeof(msg), "dry run: %s; the background approver is not started",
                 ctx->cond_message);
        set_cond(r, KM_COND_CSR, "True", "DryRun", msg);
        return;
    }
    int continuous = KM_JSON_BOOL(r->spec, 0, "csr", "continuous") && !r->o.once;
    if (continuous)
        snprintf(msg, sizeof(msg), "%s; approving kubelet CSRs continuously", ctx->cond_message);
    else if (r->o.once && r->o.csr_window <= 0)
        snprintf(msg, sizeof(msg), "%s; approving kubelet CSRs while the pods step runs",
                 ctx->cond_message);
    else
        snprintf(msg, sizeof(msg), "%s; approving kubelet CSRs until %s", ctx->cond_message,
                 until ? until : ends);
    set_cond(r, KM_COND_CSR, "True", "WindowOpen", msg);
    km_err e;
    km_err_clear(&e);
    if (approver_start(r, &e) != KM_OK) {
        char buf[768];
        km_log_warn("CSR approver not started", "recovery", r->name, "error",
                    km_err_str(&e, buf, sizeof(buf)));
        record(r, "Warning", "ApproverNotStarted", "CSR approver not started: %s", e.message);
    } else {
        record(r, "Normal", "WindowOpen", "CSR approval window open: %s", msg);
    }
}

static int step_selected(const km_recovery *r, int step)
{
    return r->o.steps == 0 || (r->o.steps & (1u << step));
}

/* Runs one step to its end.  KM_OK: the condition is final (True/False) and *failed is set when
 * it is False.  Otherwise interrupted (see km_recovery_run). */
static km_status run_step(km_recovery *r, int step, int *failed, km_err *err)
{
    const char *key = step_schemas[step].key;
    const struct step_def *def = &step_defs[step];
    cJSON *status = status_obj(r);
    char msg[768];

    if (!KM_JSON_BOOL(r->spec, 1, key, "enabled") || !step_selected(r, step)) {
        set_cond(r, def->cond, "True", "Disabled",
                 step_selected(r, step) ? "disabled in spec" : "not selected (--steps)");
        snprintf(msg, sizeof(msg), "%s: disabled", key);
        set_progress(r, key, msg);
        return save(r, err);
    }
    km_step_fn fn = step_entry(step);
    if (!fn) {
        set_cond(r, def->cond, "False", "NotAvailable", "this kubemend build has no such step");
        record(r, "Warning", def->fail_reason, "%s step is not available in this build", key);
        *failed = 1;
        return save(r, err);
    }

    r->cur_step = key;
    km_json_set_str(status, "currentStep", key);
    if (!km_cond_is(status, def->cond, "Unknown") ||
        strcmp(km_cond_reason(status, def->cond), "InProgress") != 0) {
        set_cond(r, def->cond, "Unknown", "InProgress", "step running");
        record(r, "Normal", "StepStarted", "step %s started%s", key,
               r->dry_run ? " (dry run)" : "");
    }
    snprintf(msg, sizeof(msg), "%s: running", key);
    set_progress(r, key, msg);
    km_status st = save(r, err);
    if (st != KM_OK)
        return st;

    km_step_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.kube = r->o.kube;
    ctx.spec = KM_JSON_AT(r->spec, key);
    ctx.status = km_json_obj(status, key);
    ctx.dry_run = r->dry_run;
    ctx.recovery = r->name;
    ctx.started_at = KM_JSON_STR(status, "startedAt");
    ctx.current_ca_pem = r->o.current_ca_pem;
    ctx.cancel = &r->cancel;
    ctx.save = ctx_save;
    ctx.event = ctx_event;
    ctx.progress = ctx_progress;
    ctx.count = ctx_count;
    ctx.user = r;
    if (!ctx.status)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");

    km_backoff bo;
    km_backoff_init(&bo, 1.0, 10.0, 2.0, 0.2);
    for (int attempt = 1;; attempt++) {
        km_err e;
        km_err_clear(&e);
        ctx.cond_status[0] = ctx.cond_reason[0] = ctx.cond_message[0] = '\0';
        st = fn(&ctx, &e);
        if (st == KM_OK)
            break;
        char ebuf[768];
        km_err_str(&e, ebuf, sizeof(ebuf));
        if (st == KM_ECANCELED || stopping(r)) {
            if (err)
                *err = e;
            return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: stopped in step %s", r->name,
                              key);
        }
        if (r->o.persist && transient(st, &e)) {
            /* Operator mode: the controller retries with backoff, resuming from status. */
            snprintf(msg, sizeof(msg), "will retry: %.700s", ebuf);
            set_cond(r, def->cond, "Unknown", "Retrying", msg);
            record(r, "Warning", "StepRetrying", "step %s: %s", key, ebuf);
            km_err e2;
            save(r, &e2);
            if (err)
                *err = e;
            return st;
        }
        if (!r->o.persist && transient(st, &e) && attempt < 3) {
            km_log_warn("step failed, retrying", "step", key, "error", ebuf);
            double d = km_backoff_next(&bo, km_backoff_rand());
            km_clock_sleep(d, &r->cancel);
            continue;
        }
        set_cond(r, def->cond, "False", "Error", ebuf);
        record(r, "Warning", def->fail_reason, "step %s failed: %s", key, ebuf);
        snprintf(msg, sizeof(msg), "%s: failed", key);
        set_progress(r, key, msg);
        *failed = 2; /* an error: the run ends */
        return save(r, err);
    }

    const char *cst = ctx.cond_status[0] ? ctx.cond_status : "True";
    const char *reason = ctx.cond_reason[0] ? ctx.cond_reason : "Completed";
    if (strcmp(cst, "True") != 0 && strcmp(cst, "False") != 0)
        cst = "False";
    if (step == KM_STEP_CSR && strcmp(cst, "True") == 0) {
        open_window(r, &ctx);
    } else {
        set_cond(r, def->cond, cst, reason, ctx.cond_message);
    }
    if (strcmp(cst, "True") == 0) {
        record(r, "Normal", "StepCompleted", "step %s completed: %s", key, ctx.cond_message);
        snprintf(msg, sizeof(msg), "%s: done", key);
    } else {
        *failed = 1;
        record(r, "Warning", def->fail_reason, "step %s finished unhealthy (%s): %s", key, reason,
               ctx.cond_message);
        snprintf(msg, sizeof(msg), "%s: %s", key, reason);
    }
    set_progress(r, key, msg);
    return save(r, err);
}

static int cond_final(const cJSON *status, const char *type)
{
    return km_cond_is(status, type, "True") || km_cond_is(status, type, "False");
}

km_status km_recovery_run(km_recovery *r, km_err *err)
{
    cJSON *status = status_obj(r);
    char now[32];
    if (!status)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    if (km_recovery_is_completed(r->obj))
        return KM_OK;
    if (stopping(r))
        return km_err_set(err, KM_ECANCELED, "ClusterRecovery %s: stopped", r->name);

    const char *phase = KM_JSON_STR(status, "phase");
    int resumed = phase && strcmp(phase, KM_PHASE_RUNNING) == 0;
    km_clock_now_text(now, sizeof(now));
    if (!resumed) {
        if (!KM_JSON_STR(status, "startedAt"))
            km_json_set_str(status, "startedAt", now);
        km_json_set_str(status, "phase", KM_PHASE_RUNNING);
        record(r, "Normal", "Started", "recovery started%s", r->dry_run ? " (dry run)" : "");
    } else {
        record(r, "Normal", "Resumed", "recovery resumed at step %s",
               KM_JSON_STR(status, "currentStep") ? KM_JSON_STR(status, "currentStep") : "?");
    }
    km_json_set_num(status, "observedGeneration", (double)generation(r));
    set_cond(r, KM_COND_SUCCEEDED, "Unknown", "Running",
             r->dry_run ? "recovery running (dry run)" : "recovery running");
    km_status st = save(r, err);
    if (st != KM_OK)
        return st;

    int failed_step = -1;
    int error_end = 0;
    for (int step = 0; step < KM_STEP_COUNT && !error_end; step++) {
        const char *cond = step_defs[step].cond;
        if (cond_final(status, cond)) {
            if (km_cond_is(status, cond, "False") && failed_step < 0) {
                failed_step = step;
                const char *reason = km_cond_reason(status, cond);
                if (reason && strcmp(reason, "Error") == 0)
                    error_end = 1;
            }
            if (step == KM_STEP_CSR && window_should_be_open(r, time(NULL))) {
                km_err e;
                if (approver_start(r, &e) != KM_OK)
                    km_log_warn("CSR approver not restarted", "recovery", r->name, "error",
                                e.message);
            }
            continue;
        }
        int failed = 0;
        st = run_step(r, step, &failed, err);
        r->cur_step = NULL;
        if (st != KM_OK)
            return st;
        if (failed && failed_step < 0)
            failed_step = step;
        if (failed == 2)
            error_end = 1;
    }

    km_clock_now_text(now, sizeof(now));
    km_json_set_str(status, "currentStep", "");
    km_json_set_str(status, "completedAt", now);
    if (failed_step < 0) {
        km_json_set_str(status, "phase", KM_PHASE_SUCCEEDED);
        set_cond(r, KM_COND_SUCCEEDED, "True", "Completed",
                 r->dry_run ? "dry run completed: nothing was changed" : "recovery completed");
        set_progress(r, NULL, r->dry_run ? "done (dry run)" : "done");
        record(r, "Normal", "Completed", "recovery completed%s", r->dry_run ? " (dry run)" : "");
    } else {
        const char *key = step_schemas[failed_step].key;
        const char *msgc = KM_JSON_STR(km_cond_get(status, step_defs[failed_step].cond), "message");
        char msg[768];
        snprintf(msg, sizeof(msg), "step %s failed: %s", key, msgc ? msgc : "");
        km_json_set_str(status, "phase", KM_PHASE_FAILED);
        set_cond(r, KM_COND_SUCCEEDED, "False", step_defs[failed_step].fail_reason, msg);
        snprintf(msg, sizeof(msg), "failed at %s", key);
        set_progress(r, NULL, msg);
        record(r, "Warning", "Failed", "recovery failed: step %s", key);
    }
    /* Completion must be persisted even when a cancel arrived meanwhile. */
    flush_decisions(r);
    if (r->o.persist)
        return km_recovery_write_status(r->o.kube, r->path, r->obj, err);
    return KM_OK;
}

km_status km_recovery_mark_waiting(km_recovery *r, const char *running, km_err *err)
{
    cJSON *status = status_obj(r);
    if (!status)
        return km_err_set(err, KM_ENOMEM, "recovery: out of memory");
    char msg[512];
    snprintf(msg, sizeof(msg), "waiting for ClusterRecovery %s to finish", running);
    const char *phase = KM_JSON_STR(status, "phase");
    int changed = !phase || strcmp(phase, KM_PHASE_WAITING) != 0;
    char now[32];
    km_clock_now_text(now, sizeof(now));
    km_json_set_str(status, "phase", KM_PHASE_WAITING);
    if (KM_JSON_NUM(status, -1, "observedGeneration") != (double)generation(r)) {
        km_json_set_num(status, "observedGeneration", (double)generation(r));
        changed = 1;
    }
    if (!KM_JSON_STR(status, "progress")) {
        km_json_set_str(status, "progress", "waiting");
        changed = 1;
    }
    int c = km_cond_set(status, KM_COND_SUCCEEDED, "Unknown", "WaitingForOtherRecovery", msg,
                        generation(r), now);
    if (c != 0)
        changed = 1;
    if (!changed)
        return KM_OK;
    if (!r->o.persist) {
        record(r, "Normal", "Waiting", "%s", msg);
        return KM_OK;
    }
    /* One guarded attempt: on a conflict the caller re-reads and decides again (re-applying
     * "Waiting" onto a newer object could overwrite a run's progress). */
    char spath[600];
    snprintf(spath, sizeof(spath), "%s/status", r->path);
    cJSON *out = NULL;
    km_status st = km_kube_update(r->o.kube, spath, r->obj, &out, err);
    cJSON_Delete(out);
    if (st == KM_OK)
        record(r, "Normal", "Waiting", "%s", msg);
    return st;
}

static km_status window_tick(km_recovery *r, int force_close, double *next_s, km_err *err)
{
    cJSON *status = status_obj(r);
    time_t now = time(NULL);
    int changed = flush_decisions(r);
    double next = -1;
    if (!force_close && window_should_be_open(r, now)) {
        if (!r->approver) {
            km_err e;
            km_err_clear(&e);
            if (approver_start(r, &e) != KM_OK)
                km_log_warn("CSR approver not started", "recovery", r->name, "error", e.message);
        }
        next = 10;
        time_t ends = parse_time(KM_JSON_STR(status, "csr", "windowEndsAt"));
        int continuous = KM_JSON_BOOL(r->spec, 0, "csr", "continuous") && !r->o.once;
        if (!continuous && ends != (time_t)-1 && (double)(ends - now) < next)
            next = (double)(ends - now) + 0.5;
    } else {
        approver_stop(r);
        changed |= flush_decisions(r);
        const char *reason = km_cond_reason(status, KM_COND_CSR);
        if (reason && strcmp(reason, "WindowOpen") == 0 && !r->dry_run) {
            char msg[512];
            char at[32];
            km_clock_now_text(at, sizeof(at));
            snprintf(msg, sizeof(msg), "approval window closed at %s (approved %ld, denied %ld)",
                     at, (long)KM_JSON_NUM(status, 0, "csr", "approved"),
                     (long)KM_JSON_NUM(status, 0, "csr", "denied"));
            set_cond(r, KM_COND_CSR, "True", "WindowClosed", msg);
            record(r, "Normal", "WindowClosed", "%s", msg);
            changed = 1;
        }
    }
    if (next_s)
        *next_s = next;
    if (changed && r->o.persist)
        return km_recovery_write_status(r->o.kube, r->path, r->obj, err);
    return KM_OK;
}

km_status km_recovery_window_tick(km_recovery *r, double *next_s, km_err *err)
{
    return window_tick(r, 0, next_s, err);
}

km_status km_recovery_window_close(km_recovery *r, km_err *err)
{
    return window_tick(r, 1, NULL, err);
}
