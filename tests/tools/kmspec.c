/* kmspec — kubemend's own validation and defaulting of a ClusterRecovery spec, for tests that
 * compare it with what a real API server makes of the CRD (tests/e2e).
 *
 *   kmspec < specs      one spec per line (a JSON object, or null = no spec)
 *
 * For every input line one JSON line on stdout: {"ok":true,"spec":{...}} with every default filled
 * in (km_recovery_spec_defaults), or {"ok":false,"error":"spec.<path>: <problem>"} for a spec
 * kubemend refuses, or {"ok":false,"error":"not JSON"}.  Exit status 0 (1 only when stdin cannot
 * be read or memory runs out). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "operator/base/json.h"
#include "reconcilers/recovery/spec.h"

/* Prints one result line: {"ok":true,"spec":spec} (takes spec) or {"ok":false,"error":msg}. */
static int emit(cJSON *spec, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        cJSON_Delete(spec);
        return -1;
    }
    cJSON_AddBoolToObject(o, "ok", spec != NULL);
    if (spec)
        cJSON_AddItemToObject(o, "spec", spec);
    else
        cJSON_AddStringToObject(o, "error", msg);
    char *s = km_json_print(o);
    cJSON_Delete(o);
    if (!s)
        return -1;
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    return 0;
}

/* Validates and defaults the spec on one line (borrowed); 0, or -1 when out of memory. */
static int one(const char *line, size_t n)
{
    cJSON *in = km_json_parse(line, n);
    if (!in)
        return emit(NULL, "not JSON");
    cJSON *out = NULL;
    km_err err = {0};
    km_status st = km_recovery_spec_defaults(cJSON_IsNull(in) ? NULL : in, &out, &err);
    cJSON_Delete(in);
    if (st == KM_ENOMEM)
        return -1;
    return emit(st == KM_OK ? out : NULL, err.message);
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, stdin)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n > 0 && one(line, (size_t)n) != 0)
            rc = 1;
    }
    if (ferror(stdin))
        rc = 1;
    free(line);
    return rc;
}
