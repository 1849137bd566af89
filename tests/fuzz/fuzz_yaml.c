/* fuzz_yaml.c — YAML to JSON (operator/base/yamljson.h), the parser of recovery files.
 *
 * Input: the document.  On success the result must print as JSON that cJSON parses back to an
 * equal document (but for .inf/.nan, printed as null); on failure the output must be untouched and
 * the message terminated. */
#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/base/yamljson.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *doc = fuzz_exact((const char *)data, size);
    if (!doc)
        return 0;
    cJSON *out = (cJSON *)&size; /* a sentinel: must stay on failure */
    km_err err = {0};
    km_status st = km_yaml_parse(doc, size, &out, &err);
    free(doc);
    if (st != KM_OK) {
        FUZZ_CHECK(out == (cJSON *)&size);
        FUZZ_CHECK(st == KM_EPARSE || st == KM_ENOMEM || st == KM_ETOOBIG);
        FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
        return 0;
    }
    FUZZ_CHECK(out != NULL);
    char *json = cJSON_PrintUnformatted(out);
    if (json) {
        cJSON *back = cJSON_Parse(json);
        FUZZ_CHECK(back != NULL);
        /* cJSON prints numbers so that they read back equal; only .inf/.nan become null */
        FUZZ_CHECK(cJSON_Compare(out, back, 1) || strstr(json, "null"));
        cJSON_Delete(back);
        free(json);
    }
    cJSON_Delete(out);
    return 0;
}
