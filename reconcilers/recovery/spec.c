/* spec.c — the step table and the ClusterRecovery spec (see spec.h). */
#include "reconcilers/recovery/spec.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/yamljson.h"
#include "reconcilers/csr/csr.h"
#include "reconcilers/extauth/extauth.h"
#include "reconcilers/nodes/nodes.h"
#include "reconcilers/pods/pods.h"
#include "reconcilers/recovery/names.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/tokens/tokens.h"

/* The steps in the order they run. */
static const km_step_def *const steps[KM_STEP_COUNT] = {
    [KM_STEP_TOKENS] = &km_tokens_def, [KM_STEP_EXTAUTH] = &km_extauth_def,
    [KM_STEP_CSR] = &km_csr_def,       [KM_STEP_NODES] = &km_nodes_def,
    [KM_STEP_PODS] = &km_pods_def,
};

#define STEP_FLAGS "tokens,extauth,csr,nodes,pods"

const km_step_def *km_recovery_step_def(int step)
{
    return step >= 0 && step < KM_STEP_COUNT ? steps[step] : NULL;
}

const char *km_recovery_step_key(int step)
{
    const km_step_def *d = km_recovery_step_def(step);
    return d ? d->key : NULL;
}

/* The step called name (its spec key, or with flags its --steps name too), or -1. */
static int step_named(const char *name, int flags)
{
    for (int i = 0; i < KM_STEP_COUNT; i++)
        if (strcmp(name, steps[i]->key) == 0 || (flags && strcmp(name, steps[i]->flag) == 0))
            return i;
    return -1;
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
                              "--steps: empty or invalid entry in \"%s\" (use " STEP_FLAGS ")",
                              list ? list : "");
        memcpy(name, p, len);
        name[len] = '\0';
        int step = step_named(name, 1);
        if (step < 0)
            return km_err_set(err, KM_EINVAL, "--steps: unknown step \"%s\" (use " STEP_FLAGS ")",
                              name);
        m |= 1u << step;
        if (!comma)
            break;
        p = comma + 1;
    }
    *mask = m;
    return KM_OK;
}

/* Rejects top-level fields that are neither dryRun, paused, rebuildTime nor a step's key;
 * defaults dryRun and paused (false); rebuildTime (no default) must be an RFC 3339 date-time. */
static km_status check_top(cJSON *s, km_err *err)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, s)
    {
        if (strcmp(it->string, "dryRun") != 0 && strcmp(it->string, "rebuildTime") != 0 &&
            strcmp(it->string, "paused") != 0 && step_named(it->string, 0) < 0)
            return km_err_set(err, KM_EINVAL, "spec.%s: unknown field", it->string);
    }
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(s, "rebuildTime");
    time_t t;
    if (rt && (!cJSON_IsString(rt) || km_clock_parse(rt->valuestring, &t) != KM_OK))
        return km_err_set(err, KM_EINVAL,
                          "spec.rebuildTime: must be an RFC 3339 date-time like "
                          "\"2026-11-26T09:00:00Z\"");
    const cJSON *dry = cJSON_GetObjectItemCaseSensitive(s, "dryRun");
    if (dry && !cJSON_IsBool(dry))
        return km_err_set(err, KM_EINVAL, "spec.dryRun: must be true or false");
    if (!dry && !cJSON_AddFalseToObject(s, "dryRun"))
        return km_err_set(err, KM_ENOMEM, "spec defaults: out of memory");
    const cJSON *paused = cJSON_GetObjectItemCaseSensitive(s, "paused");
    if (paused && !cJSON_IsBool(paused))
        return km_err_set(err, KM_EINVAL, "spec.paused: must be true or false");
    if (!paused && !cJSON_AddFalseToObject(s, "paused"))
        return km_err_set(err, KM_ENOMEM, "spec defaults: out of memory");
    return KM_OK;
}

/* Validates and defaults the block of step i in s (created when missing). */
static km_status step_block(cJSON *s, int i, km_err *err)
{
    const km_step_def *d = steps[i];
    char path[96];
    cJSON *blk = cJSON_GetObjectItemCaseSensitive(s, d->key);
    if (blk && cJSON_IsNull(blk)) {
        cJSON_DeleteItemFromObjectCaseSensitive(s, d->key);
        blk = NULL;
    }
    if (blk && !cJSON_IsObject(blk))
        return km_err_set(err, KM_EINVAL, "spec.%s: must be an object", d->key);
    if (!blk && !(blk = cJSON_AddObjectToObject(s, d->key)))
        return km_err_set(err, KM_ENOMEM, "spec defaults: out of memory");
    snprintf(path, sizeof(path), "spec.%s", d->key);
    km_status st = km_schema_apply(d->fields, path, blk, err);
    if (st == KM_OK && d->check)
        st = d->check(blk, err);
    return st;
}

km_status km_recovery_spec_defaults(const cJSON *spec, cJSON **out, km_err *err)
{
    if (spec && !cJSON_IsNull(spec) && !cJSON_IsObject(spec))
        return km_err_set(err, KM_EINVAL, "spec: must be an object");
    cJSON *s = (spec && cJSON_IsObject(spec)) ? cJSON_Duplicate(spec, 1) : cJSON_CreateObject();
    if (!s)
        return km_err_set(err, KM_ENOMEM, "spec defaults: out of memory");
    km_status st = check_top(s, err);
    for (int i = 0; st == KM_OK && i < KM_STEP_COUNT; i++)
        st = step_block(s, i, err);
    if (st != KM_OK) {
        cJSON_Delete(s);
        return st;
    }
    *out = s;
    return KM_OK;
}

/* metadata.name, when present: a DNS subdomain whose derived names fit (names.h). */
static km_status check_name(const cJSON *obj, km_err *err)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    if (md && !cJSON_IsNull(md) && !cJSON_IsObject(md))
        return km_err_set(err, KM_EINVAL, "metadata: must be an object");
    const cJSON *name = KM_JSON_AT(obj, "metadata", "name");
    if (!name)
        return KM_OK;
    if (!cJSON_IsString(name) || !*name->valuestring || strlen(name->valuestring) > 253)
        return km_err_set(err, KM_EINVAL, "metadata.name: must be a non-empty string");
    for (const char *p = name->valuestring; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return km_err_set(err, KM_EINVAL,
                              "metadata.name: \"%s\" is not a DNS subdomain (lowercase letters, "
                              "digits, '-', '.')",
                              name->valuestring);
    return km_names_check(name->valuestring, err);
}

km_status km_recovery_check(const cJSON *obj, km_err *err)
{
    km_status st = check_name(obj, err);
    if (st != KM_OK)
        return st;
    cJSON *spec = NULL;
    st = km_recovery_spec_defaults(KM_JSON_AT(obj, "spec"), &spec, err);
    cJSON_Delete(spec);
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
    return km_recovery_check(obj, err);
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
