/* fuzz_spec.c — a ClusterRecovery object validated and defaulted (reconcilers/recovery/spec.h),
 * as the operator reads it from the API server and `run --once -f` from a file; and the --steps
 * list.
 *
 * Input: the object (JSON without duplicate keys) NUL a --steps list.  Checked: a valid object's
 * spec defaults without error; defaulting is idempotent (the defaulted spec defaults to itself) and
 * the defaulted spec still validates; failures leave the outputs untouched with terminated
 * messages; a parsed step mask holds only known steps. */
#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "reconcilers/recovery/spec.h"
#include "tests/fuzz/fuzz.h"

#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

/* Non-zero when an object anywhere in j has a key twice.  Neither source of a ClusterRecovery
 * has them (the API server serializes its objects; km_yaml_parse rejects them in files), but cJSON
 * keeps both and km_json_at sees the first: such inputs are skipped. */
static int has_duplicate_keys(const cJSON *j)
{
    const cJSON *c, *d;
    cJSON_ArrayForEach(c, j)
    {
        if (cJSON_IsObject(j) && c->string)
            for (d = c->next; d; d = d->next)
                if (d->string && strcmp(c->string, d->string) == 0)
                    return 1;
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && has_duplicate_keys(c))
            return 1;
    }
    return 0;
}

static void spec(const cJSON *obj)
{
    km_err err = {0};
    if (km_recovery_validate(obj, &err) != KM_OK) {
        FUZZ_CHECK(TERMINATED(err.message));
        return;
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, "spec");
    cJSON *d = NULL;
    km_status st = km_recovery_spec_defaults(s, &d, &err);
    if (st == KM_ENOMEM)
        return;
    FUZZ_CHECK(st == KM_OK && d != NULL);
    cJSON *again = NULL;
    FUZZ_CHECK(km_recovery_spec_defaults(d, &again, &err) == KM_OK);
    FUZZ_CHECK(cJSON_Compare(d, again, 1));
    cJSON *copy = cJSON_Duplicate(obj, 1);
    FUZZ_CHECK(copy != NULL);
    if (!cJSON_ReplaceItemInObjectCaseSensitive(copy, "spec", d)) /* no spec: {} defaulted */
        FUZZ_CHECK(cJSON_AddItemToObject(copy, "spec", d));
    d = NULL;
    FUZZ_CHECK(km_recovery_validate(copy, &err) == KM_OK);
    cJSON_Delete(copy);
    cJSON_Delete(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parts fp;
    if (fuzz_split(data, size, 2, &fp) != 0)
        return 0;
    cJSON *obj = cJSON_ParseWithLength(fp.p[0], fp.len[0]);
    if (obj && !has_duplicate_keys(obj))
        spec(obj);
    cJSON_Delete(obj);
    if (fp.n > 1) {
        unsigned mask = 0xdead;
        km_err err = {0};
        if (km_recovery_parse_steps(fp.p[1], &mask, &err) == KM_OK)
            FUZZ_CHECK((mask & ~KM_STEPS_ALL) == 0);
        else
            FUZZ_CHECK(mask == 0xdead && TERMINATED(err.message));
    }
    fuzz_parts_free(&fp);
    return 0;
}
