/* yamljson.h — YAML (libyaml) to cJSON, for recovery files and manifests.
 *
 * Supports block and flow collections, the YAML 1.2 core schema for plain scalars (null, ~,
 * true/false, integers, floats; quoted scalars and block literals are strings), anchors and
 * aliases (the anchored node is copied), and the merge key is NOT supported (kept as a key "<<").
 * JSON is YAML, so JSON files parse too. */
#ifndef KM_YAMLJSON_H
#define KM_YAMLJSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"

/* Parses n bytes holding exactly one YAML document (empty documents before or after it are
 * ignored).  On success *out is a new cJSON the caller frees with cJSON_Delete (cJSON null for an
 * empty document).  Failure: KM_EPARSE with "line L column C: problem" in err (also for more than
 * one document or duplicate mapping keys, or a non-scalar mapping key), KM_ENOMEM; *out is
 * untouched. */
km_status km_yaml_parse(const char *s, size_t n, cJSON **out, km_err *err);

/* Reads and parses a file (at most 4 MiB).  KM_EIO (with the path and errno text) when it cannot
 * be read; otherwise as km_yaml_parse with the path prefixed to the message. */
km_status km_yaml_parse_file(const char *path, cJSON **out, km_err *err);

#endif
