/* names.h — the names kubemend derives from a ClusterRecovery's name, checked up front.
 *
 * A recovery's name flows into other objects' names: the extauth step's backup ConfigMap
 * (KM_EXTAUTH_BACKUP_PREFIX + name, at most 253 characters).  A name too long for them used to
 * fail only deep inside that step; km_names_check refuses it before any step runs (the operator
 * marks the recovery Failed/InvalidSpec; `run --once` exits 2), and the CRD's root CEL rule
 * refuses it at admission on servers >= 1.25. */
#ifndef KM_RECOVERY_NAMES_H
#define KM_RECOVERY_NAMES_H

#include <stddef.h>

#include "operator/base/err.h"

/* The longest ClusterRecovery name whose derived names all fit (211; the CRD's rule says the
 * same number, tests/unit/test_recovery_spec.c checks). */
#define KM_NAMES_MAX_RECOVERY 211

/* Writes the extauth backup ConfigMap name of recovery into buf.  KM_EINVAL (naming
 * metadata.name and the limit) when it would be longer than 253 characters or buf is too small;
 * buf is then "". */
km_status km_names_backup(const char *recovery, char *buf, size_t n, km_err *err);

/* Checks every name derived from recovery.  KM_OK, or KM_EINVAL with "metadata.name: ..." in
 * err. */
km_status km_names_check(const char *recovery, km_err *err);

#endif
