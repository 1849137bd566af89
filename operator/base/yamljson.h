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

/* Bounds of every document (recovery files, manifests, kubeconfigs), checked while parsing,
 * before anything larger is built: nesting depth, and a node budget (nodes and scalar bytes of
 * the result, every alias charged the full size of its copy), so an alias bomb or a huge
 * document is refused in time and memory proportional to the budget, never to its expansion. */
#define KM_YAML_MAX_DEPTH 64
#define KM_YAML_MAX_NODES 500000
#define KM_YAML_MAX_BYTES (8 << 20)

/* Parses n bytes holding exactly one YAML document (empty documents before or after it are
 * ignored).  On success *out is a new cJSON the caller frees with cJSON_Delete (cJSON null for an
 * empty document).  Failure: KM_EPARSE with "line L column C: problem" in err (also for more than
 * one document or duplicate mapping keys, or a non-scalar mapping key, nesting deeper than
 * KM_YAML_MAX_DEPTH, or beyond the node budget), KM_ENOMEM; *out is untouched. */
km_status km_yaml_parse(const char *s, size_t n, cJSON **out, km_err *err);

/* Reads and parses a file (at most 4 MiB).  KM_EIO (with the path and errno text) when it cannot
 * be read; otherwise as km_yaml_parse with the path prefixed to the message. */
km_status km_yaml_parse_file(const char *path, cJSON **out, km_err *err);

/* Checks n bytes of YAML (any number of documents) against the bounds above without building
 * anything (events only; an alias counts as one node: for loaders that do not expand aliases,
 * like libyaml's document loader used for kubeconfigs, which is slow on deep nesting).  KM_OK, or
 * KM_EPARSE with "line L column C: problem" in err (also for malformed YAML). */
km_status km_yaml_check(const char *s, size_t n, km_err *err);

#endif
