/* backup.h — the backup ConfigMap a step saves before it edits one (extauth, nodes): the
 * original's data under a name of its own, labelled as kubemend's and annotated with the
 * recovery and the original's resourceVersion, so a human can restore it with kubectl. */
#ifndef KM_STEP_BACKUP_H
#define KM_STEP_BACKUP_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"

/* The backup object of ConfigMap cm (borrowed) as ns/name for recovery `recovery`.  On success
 * *out is a new object the caller frees with cJSON_Delete.  Failure: KM_ENOMEM, *out untouched. */
km_status km_step_backup_object(const cJSON *cm, const char *ns, const char *name,
                                const char *recovery, cJSON **out);

#endif
