/* pace.h — what namespaces restarted in parallel share (spec.pods.parallelNamespaces > 1): the
 * lock around status.pods edits and saves (ctx->status is one document, saved whole), and the
 * global budget of workloads restarting at once (spec.pods.maxConcurrent) across them.
 *
 * The budget never deadlocks: a batch takes the slots it can get (at least one) in one go, only
 * while holding none, and gives them all back once the batch is rolled out (or failed). */
#ifndef KM_PODS_PACE_H
#define KM_PODS_PACE_H

#include <stdatomic.h>

#include "operator/base/err.h"

typedef struct km_pods_pace km_pods_pace;

/* A pace with `budget` (>= 1) slots.  Caller frees *out with km_pods_pace_free.  Failure:
 * KM_ENOMEM, KM_EIO (mutex); *out untouched. */
km_status km_pods_pace_new(int budget, km_pods_pace **out, km_err *err);

/* Frees it.  Accepts NULL. */
void km_pods_pace_free(km_pods_pace *p);

/* The status lock (recursive).  Both accept NULL (serial: nothing to lock). */
void km_pods_pace_lock(km_pods_pace *p);
void km_pods_pace_unlock(km_pods_pace *p);

/* Takes between 1 and want slots (as many as are free), waiting while none is; *got the number
 * taken.  NULL p: *got = want at once.  Failure: KM_ECANCELED when *cancel became non-zero while
 * waiting (*got 0). */
km_status km_pods_pace_take(km_pods_pace *p, int want, const atomic_int *cancel, int *got,
                            km_err *err);

/* Gives n slots back.  Accepts NULL. */
void km_pods_pace_give(km_pods_pace *p, int n);

/* The most slots ever taken at once (0 for NULL). */
int km_pods_pace_peak(km_pods_pace *p);

#endif
