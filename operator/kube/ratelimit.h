/* ratelimit.h — client-side token bucket (qps/burst), thread-safe, shared by client clones.
 *
 * The bucket starts full (burst tokens) and refills at qps tokens per second up to burst.  Each
 * request reserves one token; when none is left the reservation goes negative and the caller
 * waits until its token would have been refilled (like golang.org/x/time/rate's Reserve).
 * qps <= 0 disables limiting.  The arithmetic core takes the time as a parameter so tests are
 * exact; km_ratelimit_wait() uses the monotonic clock and km_clock_sleep (operator/base/clock.h).
 *
 * Adaptive mode (km_ratelimit_new_adaptive): the rate itself follows the server, AIMD-style, from
 * the answers fed back with km_ratelimit_feedback_at, evaluated once per second of answers:
 *   - any 429: the rate halves at once, and no token is handed out before the largest
 *     Retry-After seen (API Priority and Fairness sheds load this way);
 *   - rising latency (the window's mean above 3x the lowest window mean seen, and above 50 ms):
 *     the rate drops to 80%;
 *   - otherwise, when the window used at least half of its tokens (the limit was binding): the
 *     rate grows by 10% (at least 5 qps);
 * always within [min, max].  A client one request at a time never binds it; many in flight do.
 */
#ifndef KM_RATELIMIT_H
#define KM_RATELIMIT_H

#include <stdatomic.h>

#include "operator/base/err.h"

typedef struct km_ratelimit km_ratelimit;

/* A new limiter (qps <= 0 = off; burst < 1 is treated as 1).  The caller frees it with
 * km_ratelimit_free.  NULL on allocation failure. */
km_ratelimit *km_ratelimit_new(double qps, int burst);

/* A new adaptive limiter (see above) starting at `start` qps, kept within [min, max] (min >= 0.1;
 * start clamped into the range).  The caller frees it with km_ratelimit_free.  NULL on allocation
 * failure or when min > max. */
km_ratelimit *km_ratelimit_new_adaptive(double start, double min, double max, int burst);

/* Feeds one answer back at time `now`: HTTP code (0 = transport error), its latency in seconds and
 * its Retry-After in seconds (0 = none).  Only adaptive limiters change; cannot fail; rl may be
 * NULL. */
void km_ratelimit_feedback_at(km_ratelimit *rl, long code, double seconds, double retry_after,
                              double now);

/* The current rate in qps (0 = the limiter is off or rl is NULL).  Thread-safe. */
double km_ratelimit_rate(km_ratelimit *rl);

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
