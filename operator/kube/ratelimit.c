/* ratelimit.c — token bucket. */
#include "operator/kube/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "operator/base/clock.h"

struct km_ratelimit {
    pthread_mutex_t lock;
    double qps;
    double burst;
    double tokens; /* may go negative: reservations not yet covered */
    double last;   /* time of the last refill; < 0 before the first reservation */
};

km_ratelimit *km_ratelimit_new(double qps, int burst)
{
    km_ratelimit *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    pthread_mutex_init(&rl->lock, NULL);
    rl->qps = qps > 0 ? qps : 0;
    rl->burst = burst >= 1 ? burst : 1;
    rl->tokens = rl->burst;
    rl->last = -1;
    return rl;
}

void km_ratelimit_free(km_ratelimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

/* Refills for the time since the last call; lock held. */
static void refill(km_ratelimit *rl, double now)
{
    if (rl->last >= 0 && now > rl->last) {
        rl->tokens += (now - rl->last) * rl->qps;
        if (rl->tokens > rl->burst)
            rl->tokens = rl->burst;
    }
    if (rl->last < 0 || now > rl->last)
        rl->last = now;
}

double km_ratelimit_reserve_at(km_ratelimit *rl, double now)
{
    if (!rl || rl->qps <= 0)
        return 0;
    pthread_mutex_lock(&rl->lock);
    refill(rl, now);
    rl->tokens -= 1;
    double wait = rl->tokens >= 0 ? 0 : -rl->tokens / rl->qps;
    pthread_mutex_unlock(&rl->lock);
    return wait;
}

/* Gives an unused reservation back. */
static void unreserve(km_ratelimit *rl)
{
    pthread_mutex_lock(&rl->lock);
    rl->tokens += 1;
    if (rl->tokens > rl->burst)
        rl->tokens = rl->burst;
    pthread_mutex_unlock(&rl->lock);
}

km_status km_ratelimit_wait(km_ratelimit *rl, const atomic_int *cancel)
{
    if (cancel && atomic_load(cancel))
        return KM_ECANCELED;
    double wait = km_ratelimit_reserve_at(rl, km_clock_mono());
    if (wait <= 0)
        return KM_OK;
    km_status st = km_clock_sleep(wait, cancel);
    if (st != KM_OK)
        unreserve(rl);
    return st;
}
