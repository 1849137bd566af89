/* retry.h — the steps' one retry policy (issue 12): a transient failure is retried with backoff
 * until the unit of work's deadline; anything else is permanent and ends the unit at once (the
 * step's condition names it).
 *
 * Transient (client-go's rule): no answer (KM_ETRANSPORT), KM_ETIMEOUT, and the HTTP answers 408,
 * 429 and 5xx.  Every other 4xx is permanent, and so is every local error (parse, ENOMEM, a
 * repeated continue token ...).  A 409 on a guarded write (a resourceVersion precondition) is
 * neither: the caller re-reads and decides again, pacing itself with km_retry_wait.
 *
 * The client (operator/kube/kube.h) already retries one request a few times; this policy is the
 * layer above it: the step retries the unit (a guarded write, a read, a list) until the deadline,
 * so one 503 or a server restart never fails a recovery. */
#ifndef KM_RETRY_H
#define KM_RETRY_H

#include <stdatomic.h>

#include "operator/base/backoff.h"
#include "operator/base/err.h"

#define KM_RETRY_BUDGET_S 300.0 /* default deadline of one unit of work */
#define KM_RETRY_FIRST_S 0.5    /* first pause; doubles up to KM_RETRY_MAX_S */
#define KM_RETRY_MAX_S 10.0

typedef struct km_retry {
    double deadline;          /* monotonic seconds */
    km_backoff bo;            /* the pauses */
    const atomic_int *cancel; /* may be NULL */
    unsigned tries;           /* pauses taken so far */
} km_retry;

/* 1 when st/e is a transient failure (see the file comment); e may be NULL (then only st). */
int km_retry_transient(km_status st, const km_err *e);

/* Starts a policy for one unit of work: retries until budget_s from now (<= 0:
 * KM_RETRY_BUDGET_S); cancel (borrowed, may be NULL) ends the pauses.  Cannot fail. */
void km_retry_init(km_retry *r, double budget_s, const atomic_int *cancel);

/* After a failure st/e of `what` (for the log): 1 when it is transient and the deadline leaves
 * room — the pause (e->retry_after when the server asked for one, else the backoff; never past
 * the deadline) was slept: try again; 0 when the caller gives up (permanent, deadline passed, or
 * cancelled during the pause). */
int km_retry_again(km_retry *r, km_status st, const km_err *e, const char *what);

/* Sleeps the next pause unconditionally (a conflict's re-decision).  0 when the deadline passed
 * or cancel was set (then give up), else 1. */
int km_retry_wait(km_retry *r, const char *what);

#endif
