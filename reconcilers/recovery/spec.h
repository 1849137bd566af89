/* spec.h — the ClusterRecovery document: its steps in order (the step table: each step's key,
 * condition, spec schema with defaults, and function — reconcilers/step/step.h), the --steps
 * list, and the validation and defaulting of a spec exactly as the CRD's structural schema and
 * CEL rules do, so that `kubemend run --once` without a CRD behaves like the operator. */
#ifndef KM_RECOVERY_SPEC_H
#define KM_RECOVERY_SPEC_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "reconcilers/step/step.h"

/* Steps, in order: indexes into the step table.  Bits of a step mask are (1u << step). */
typedef enum km_recovery_step {
    KM_STEP_TOKENS = 0,
    KM_STEP_EXTAUTH,
    KM_STEP_CSR,
    KM_STEP_NODES,
    KM_STEP_PODS,
    KM_STEP_COUNT
} km_recovery_step;

#define KM_STEPS_ALL ((1u << KM_STEP_COUNT) - 1)

/* The step table's entry of step (static); NULL for an invalid step. */
const km_step_def *km_recovery_step_def(int step);

/* The status/spec key of a step ("tokens", "extensionApiserverAuthentication", "csr", "nodes",
 * "pods");
 * NULL for an invalid step. */
const char *km_recovery_step_key(int step);

/* Parses a comma-separated step list ("tokens,extauth,csr,pods"; a step's spec key is accepted
 * too) into a mask.  KM_EINVAL with a message naming the bad entry (mask untouched) for unknown
 * or empty entries. */
km_status km_recovery_parse_steps(const char *list, unsigned *mask, km_err *err);

/* Validates spec (may be NULL = {}) against the ClusterRecovery schema (types, enums, ranges,
 * unknown fields, the CEL rules) and returns a new spec with every default filled in (caller
 * frees with cJSON_Delete).  Failure: KM_EINVAL with "spec.<path>: <problem>" in err, KM_ENOMEM;
 * *out untouched. */
km_status km_recovery_spec_defaults(const cJSON *spec, cJSON **out, km_err *err);

/* Validates a whole ClusterRecovery document (apiVersion, kind, metadata.name when present,
 * spec).  KM_EINVAL with a message naming the field on failure. */
km_status km_recovery_validate(const cJSON *obj, km_err *err);

/* Reads a recovery file (YAML or JSON holding one ClusterRecovery) and validates it.  On success
 * *out is the document (caller frees with cJSON_Delete); a missing metadata.name becomes
 * "run-once".  Failure: KM_EIO (cannot read), KM_EPARSE (not YAML), KM_EINVAL (not a valid
 * ClusterRecovery), each with the path in the message; *out untouched. */
km_status km_recovery_load_file(const char *path, cJSON **out, km_err *err);

#endif
