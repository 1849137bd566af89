/* backoff.h — exponential backoff with jitter (pure arithmetic; the caller sleeps).
 *
 * delay(n) = min(initial * factor^n, max), then multiplied by a random factor in
 * [1 - jitter, 1 + jitter] (never above max).  Randomness is passed in so tests are exact. */
#ifndef KM_BACKOFF_H
#define KM_BACKOFF_H

typedef struct km_backoff {
    double initial; /* seconds */
    double max;     /* seconds */
    double factor;  /* growth per step, >= 1 */
    double jitter;  /* 0..1 */
    unsigned attempts;
} km_backoff;

/* Initialises b.  Cannot fail (values are clamped to sane ranges). */
void km_backoff_init(km_backoff *b, double initial, double max, double factor, double jitter);

/* Returns the next delay in seconds and advances; rand01 is a uniform sample in [0,1). */
double km_backoff_next(km_backoff *b, double rand01);

/* Back to the first step. */
void km_backoff_reset(km_backoff *b);

/* Uniform sample in [0,1) from a thread-safe process-wide generator. */
double km_backoff_rand(void);

#endif
