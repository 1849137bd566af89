/* schema.c — validating and defaulting a step's spec block (see schema.h). */
#include "reconcilers/step/schema.h"

#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "operator/base/json.h"

typedef km_status (*item_fn)(const char *s, const char *path, km_err *err);

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

/* A list of strings of at most f->max entries (0 = any number), each accepted by item (may be
 * NULL). */
static km_status check_list(const km_field *f, const cJSON *v, const char *path, item_fn item,
                            km_err *err)
{
    km_status st = check_strlist(v, path, err);
    if (st != KM_OK)
        return st;
    if (f->max > 0 && cJSON_GetArraySize(v) > (int)f->max)
        return km_err_set(err, KM_EINVAL, "%s: at most %.0f entries", path, f->max);
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, v)
    {
        char ipath[160];
        snprintf(ipath, sizeof(ipath), "%s[%d]", path, i++); /* the entry's field path */
        if (item && (st = item(it->valuestring, ipath, err)) != KM_OK)
            return st;
    }
    return KM_OK;
}

static km_status check_regex(const char *s, const char *path, km_err *err)
{
    regex_t re;
    size_t len = strlen(s);
    if (len < 1 || len > 256)
        return km_err_set(err, KM_EINVAL, "%s: patterns must be 1..256 characters", path);
    if (regcomp(&re, s, REG_EXTENDED | REG_NOSUB) != 0)
        return km_err_set(err, KM_EINVAL, "%s: \"%s\" is not a valid regular expression", path, s);
    regfree(&re);
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

static km_status check_match_labels(const cJSON *v, const char *path, km_err *err)
{
    if (!cJSON_IsObject(v))
        return km_err_set(err, KM_EINVAL, "%s.matchLabels: must be a map of strings", path);
    const cJSON *l;
    cJSON_ArrayForEach(l, v)
    {
        if (!cJSON_IsString(l))
            return km_err_set(err, KM_EINVAL, "%s.matchLabels.%s: must be a string", path,
                              l->string);
    }
    return KM_OK;
}

/* One matchExpressions entry (index i). */
static km_status check_expression(const cJSON *e, const char *path, int i, km_err *err)
{
    const char *key = KM_JSON_STR(e, "key");
    const char *op = KM_JSON_STR(e, "operator");
    const cJSON *vals = KM_JSON_AT(e, "values");
    if (!key || !*key)
        return km_err_set(err, KM_EINVAL, "%s.matchExpressions[%d].key: required", path, i);
    int set_op = op && (strcmp(op, "In") == 0 || strcmp(op, "NotIn") == 0);
    int ex_op = op && (strcmp(op, "Exists") == 0 || strcmp(op, "DoesNotExist") == 0);
    if (!set_op && !ex_op)
        return km_err_set(err, KM_EINVAL,
                          "%s.matchExpressions[%d].operator: must be In, NotIn, Exists or "
                          "DoesNotExist",
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
                          "%s.matchExpressions[%d].values: must be non-empty for %s", path, i, op);
    if (ex_op && nvals != 0)
        return km_err_set(err, KM_EINVAL, "%s.matchExpressions[%d].values: must be empty for %s",
                          path, i, op);
    return KM_OK;
}

static km_status check_selector(const cJSON *v, const char *path, km_err *err)
{
    if (!cJSON_IsObject(v))
        return km_err_set(err, KM_EINVAL, "%s: must be a label selector object", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        km_status st = KM_OK;
        if (strcmp(it->string, "matchLabels") == 0) {
            st = check_match_labels(it, path, err);
        } else if (strcmp(it->string, "matchExpressions") == 0) {
            if (!cJSON_IsArray(it))
                return km_err_set(err, KM_EINVAL, "%s.matchExpressions: must be a list", path);
            int i = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, it)
            {
                if ((st = check_expression(e, path, i++, err)) != KM_OK)
                    break;
            }
        } else {
            st = km_err_set(err, KM_EINVAL, "%s.%s: unknown field", path, it->string);
        }
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

static km_status check_field(const km_field *f, const cJSON *v, const char *path, km_err *err)
{
    switch (f->type) {
    case KM_FIELD_BOOL:
        if (!cJSON_IsBool(v))
            return km_err_set(err, KM_EINVAL, "%s: must be true or false", path);
        return KM_OK;
    case KM_FIELD_INT:
        if (!is_integral(v))
            return km_err_set(err, KM_EINVAL, "%s: must be an integer", path);
        if (v->valuedouble < f->min || v->valuedouble > f->max)
            return km_err_set(err, KM_EINVAL, "%s: must be between %.0f and %.0f (got %.0f)", path,
                              f->min, f->max, v->valuedouble);
        return KM_OK;
    case KM_FIELD_ENUM:
        if (cJSON_IsString(v))
            for (const char *const *e = f->values; *e; e++)
                if (strcmp(*e, v->valuestring) == 0)
                    return KM_OK;
        return km_err_set(err, KM_EINVAL, "%s: must be one of %s, %s", path, f->values[0],
                          f->values[1]);
    case KM_FIELD_STRLIST:
        return check_list(f, v, path, NULL, err);
    case KM_FIELD_REGEXLIST:
        return check_list(f, v, path, check_regex, err);
    case KM_FIELD_FPRLIST:
        return check_list(f, v, path, check_fingerprint, err);
    case KM_FIELD_SELECTOR:
        return check_selector(v, path, err);
    }
    return KM_OK;
}

const km_field *km_schema_field(const km_field *fields, const char *name)
{
    for (const km_field *f = fields; f && f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

/* A new cJSON item holding f's default, or NULL (no default: lists, selectors). */
static cJSON *default_of(const km_field *f, int *has)
{
    *has = 1;
    switch (f->type) {
    case KM_FIELD_BOOL:
        return f->dflt != 0 ? cJSON_CreateTrue() : cJSON_CreateFalse();
    case KM_FIELD_INT:
        return cJSON_CreateNumber(f->dflt);
    case KM_FIELD_ENUM:
        return cJSON_CreateString(f->values[0]);
    default:
        *has = 0;
        return NULL;
    }
}

km_status km_schema_apply(const km_field *fields, const char *path, cJSON *block, km_err *err)
{
    char sub[128];
    const cJSON *it;
    cJSON_ArrayForEach(it, block)
    {
        const km_field *f = km_schema_field(fields, it->string);
        snprintf(sub, sizeof(sub), "%s.%s", path, it->string);
        if (!f)
            return km_err_set(err, KM_EINVAL, "%s: unknown field", sub);
        km_status st = check_field(f, it, sub, err);
        if (st != KM_OK)
            return st;
    }
    for (const km_field *f = fields; f->name; f++) {
        int has = 0;
        if (cJSON_GetObjectItemCaseSensitive(block, f->name))
            continue;
        cJSON *d = default_of(f, &has);
        if (has && (!d || !cJSON_AddItemToObject(block, f->name, d))) {
            cJSON_Delete(d);
            return km_err_set(err, KM_ENOMEM, "spec defaults: out of memory");
        }
    }
    return KM_OK;
}

double km_schema_num(const km_field *fields, const cJSON *block, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(block, name);
    if (cJSON_IsNumber(v))
        return v->valuedouble;
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v) ? 1 : 0;
    const km_field *f = km_schema_field(fields, name);
    return f && (f->type == KM_FIELD_INT || f->type == KM_FIELD_BOOL) ? f->dflt : 0;
}

int km_schema_bool(const km_field *fields, const cJSON *block, const char *name)
{
    return km_schema_num(fields, block, name) != 0;
}

const char *km_schema_str(const km_field *fields, const cJSON *block, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(block, name);
    if (cJSON_IsString(v))
        return v->valuestring;
    const km_field *f = km_schema_field(fields, name);
    return f && f->type == KM_FIELD_ENUM ? f->values[0] : NULL;
}
