/* schema.h — a step's spec block described as data: field names, types, ranges and defaults,
 * mirroring the CRD's structural schema (crds/clusterrecoveries.kubemend.io.yaml), so that
 * `kubemend run --once` without a CRD validates and defaults a spec exactly as the API server
 * would.  Each step declares its fields next to its code (km_step_def.fields, step.h); the
 * defaults are written there once, and tests/unit/test_spec_crd.c holds them against the CRD.
 *
 * Steps read their settings through km_schema_num / _bool / _str (or km_step_int & co.), which
 * fall back to the declared default: no default is written at a call site. */
#ifndef KM_SCHEMA_H
#define KM_SCHEMA_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"

typedef enum km_field_type {
    KM_FIELD_BOOL = 0,  /* true/false; dflt 0 or 1 */
    KM_FIELD_INT,       /* integer in [min, max]; dflt */
    KM_FIELD_ENUM,      /* one of values; the first is the default */
    KM_FIELD_STRLIST,   /* list of at most max strings (0 = any number); no default */
    KM_FIELD_REGEXLIST, /* list of at most max POSIX extended regexes of 1..256 characters */
    KM_FIELD_FPRLIST,   /* list of at most max SHA-256 fingerprints (hex, colons allowed) */
    KM_FIELD_SELECTOR,  /* a metav1.LabelSelector; no default */
} km_field_type;

typedef struct km_field {
    const char *name; /* NULL ends a field list */
    km_field_type type;
    double dflt;               /* BOOL / INT default */
    double min, max;           /* INT range; lists: max entries */
    const char *const *values; /* ENUM: allowed values (NULL-terminated), first = default */
} km_field;

/* The entry that ends a field list. */
#define KM_FIELD_END                                                                               \
    {                                                                                              \
        NULL, KM_FIELD_BOOL, 0, 0, 0, NULL                                                         \
    }

/* The field called name in fields, or NULL. */
const km_field *km_schema_field(const km_field *fields, const char *name);

/* Validates block (the step's spec object, edited in place) against fields — unknown fields,
 * types, ranges, enums, regexes, fingerprints, label selectors — and adds every missing
 * default.  path ("spec.tokens") prefixes the messages.  Failure: KM_EINVAL with
 * "<path>.<field>: <problem>" in err, KM_ENOMEM; block may already hold some defaults. */
km_status km_schema_apply(const km_field *fields, const char *path, cJSON *block, km_err *err);

/* The number (INT) or 0/1 (BOOL) at block[name], else the field's default (0 for an undeclared
 * field or one without a default). */
double km_schema_num(const km_field *fields, const cJSON *block, const char *name);

/* block[name] as a boolean, else the field's default. */
int km_schema_bool(const km_field *fields, const cJSON *block, const char *name);

/* The string at block[name] (borrowed), else an ENUM field's default (static), else NULL. */
const char *km_schema_str(const km_field *fields, const cJSON *block, const char *name);

#endif
