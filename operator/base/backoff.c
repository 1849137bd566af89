/* backoff.c — exponential backoff with jitter. */
#include "operator/base/backoff.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

void km_backoff_init(km_backoff *b, double initial, double max, double factor, double jitter)
{
    b->initial = initial > 0 ? initial : 0.001;
    b->max = max >= b->initial ? max : b->initial;
    b->factor = factor >= 1 ? factor : 1;
    b->jitter = jitter < 0 ? 0 : jitter > 1 ? 1 : jitter;
    b->attempts = 0;
}

double km_backoff_next(km_backoff *b, double rand01)
{
    double d = b->initial * pow(b->factor, (double)b->attempts);
    if (!(d < b->max)) /* also catches inf */
        d = b->max;
    else
        b->attempts++;
    d *= 1.0 + b->jitter * (2.0 * rand01 - 1.0);
    return d > b->max ? b->max : d;
}

void km_backoff_reset(km_backoff *b)
{
    b->attempts = 0;
}

double km_backoff_rand(void)
{
    /* splitmix64 over an atomic counter seeded from the clock: good enough for jitter. */
    static _Atomic uint64_t state;
    uint64_t s = atomic_load(&state);
    if (s == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t seed = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull + (uint64_t)ts.tv_sec;
        uint64_t zero = 0;
        atomic_compare_exchange_strong(&state, &zero, seed | 1);
    }
    uint64_t z = atomic_fetch_add(&state, 0x9E3779B97F4A7C15ull) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}
