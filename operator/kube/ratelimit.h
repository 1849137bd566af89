/* ratelimit.h — client-side token bucket (qps/burst), thread-safe, shared by client clones.
 *
 * The bucket starts full (burst tokens) and refills at qps tokens per second up to burst.  Each
 * request reserves one token; when none is left the reservation goes negative and the caller
 * waits until its token would have been refilled (like golang.org/x/time/rate's Reserve).
 * qps <= 0 disables limiting.  The arithmetic core takes the time as a parameter so tests are
 * exact; km_ratelimit_wait() uses the monotonic clock and km_clock_sleep (operator/base/clock.h).
 */
#ifndef KM_RATELIMIT_H
#define KM_RATELIMIT_H

#include <stdatomic.h>

#include "operator/base/err.h"

typedef struct km_ratelimit km_ratelimit;

/* A new limiter (qps <= 0 = off; burst < 1 is treated as 1).  The caller frees it with
 * km_ratelimit_free.  NULL on allocation failure. */
km_ratelimit *km_ratelimit_new(double qps, int burst);

/* Frees the limiter.  Accepts NULL. */
void km_ratelimit_free(km_ratelimit *rl);

/* Reserves one token at time `now` (seconds on any monotonic scale; time never goes back for a
 * given limiter) and returns how many seconds the caller must wait before using it (0 = now).
 * Cannot fail; always 0 when the limiter is off or rl is NULL. */
double km_ratelimit_reserve_at(km_ratelimit *rl, double now);

/* Reserves a token now and sleeps until it is usable.  Returns KM_OK, or KM_ECANCELED as soon
 * as *cancel (may be NULL) becomes non-zero while waiting (the token is then given back). */
km_status km_ratelimit_wait(km_ratelimit *rl, const atomic_int *cancel);

#endif
