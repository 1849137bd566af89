/* verify.h — the pods step's verify hook (reconcilers/step/step.h): no pod still runs with a
 * token from before the PKI rebuild, from the server's answers. */
#ifndef KM_PODS_VERIFY_H
#define KM_PODS_VERIFY_H

#include "operator/base/err.h"
#include "reconcilers/step/step.h"

/* Lists every pod (paged, nothing cached but the rare pods whose spec cannot tell about a token,
 * whose ServiceAccount is read afterwards) and applies the step's own rule (podsel.h: not
 * deleting, not a mirror, not finished, created before ctx->rebuilt_at, a token mounted, a
 * non-default ServiceAccount unless includeDefaultServiceAccount), in every namespace.  Not left:
 * the pods for a human (listed in status.pods.manual, or ownerless while deleteOwnerlessPods is
 * off: the step leaves them to a human whether or not it ran) and kubemend's own pod
 * (status.pods.self: its token is valid, or its Deployment is restarted by the step's `last` hook,
 * after this check).  Sets ctx's condition ("False" names what is left).  Failure: KM_ESTATE when
 * the rebuild time is unknown, the list's or a ServiceAccount read's error (nothing set). */
km_status km_pods_verify(km_step_ctx *ctx, km_err *err);

#endif
