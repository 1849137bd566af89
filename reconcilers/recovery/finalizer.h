/* finalizer.h — a finalizer on an object: present or not, and adding or removing it with a
 * resourceVersion-guarded merge patch (a stale object gets 409 instead of dropping someone
 * else's finalizer). */
#ifndef KM_FINALIZER_H
#define KM_FINALIZER_H

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

/* 1 when obj's metadata.finalizers holds name. */
int km_finalizer_has(const cJSON *obj, const char *name);

/* Adds (add = 1) or removes name on the object at path, as obj (its resourceVersion and other
 * finalizers) shows it.  Failure: the PATCH's error (KM_EAPI 409 when obj is stale, 404 when it
 * is gone), KM_ENOMEM. */
km_status km_finalizer_set(km_kube *kube, const char *path, const cJSON *obj, const char *name,
                           int add, km_err *err);

#endif
