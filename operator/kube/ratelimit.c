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
    /* adaptive mode */
    int adaptive;
    double min, max;
    double pause_until; /* no token before this (Retry-After); 0 = none */
    double win_start;   /* the feedback window; < 0 before the first answer */
    double lat_sum, base_lat;
    long win_n, win_ok, win_429, issued;
};

#define WINDOW_S 1.0
#define LATENCY_FLOOR_S 0.05

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

km_ratelimit *km_ratelimit_new_adaptive(double start, double min, double max, int burst)
{
    if (min < 0.1)
        min = 0.1;
    if (min > max)
        return NULL;
    km_ratelimit *rl = km_ratelimit_new(start < min ? min : start > max ? max : start, burst);
    if (!rl)
        return NULL;
    rl->adaptive = 1;
    rl->min = min;
    rl->max = max;
    rl->win_start = -1;
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
    rl->issued++;
    double wait = rl->tokens >= 0 ? 0 : -rl->tokens / rl->qps;
    if (rl->pause_until > now + wait)
        wait = rl->pause_until - now;
    pthread_mutex_unlock(&rl->lock);
    return wait;
}

/* Ends the feedback window at `now`: the AIMD decision; lock held. */
static void adapt(km_ratelimit *rl, double now)
{
    double span = now - rl->win_start;
    double q = rl->qps;
    if (rl->win_429 > 0) {
        q *= 0.5;
        if (rl->tokens > 0)
            rl->tokens = 0;
    } else if (rl->win_ok >= 5) {
        double mean = rl->lat_sum / (double)rl->win_ok;
        if (rl->base_lat <= 0 || mean < rl->base_lat)
            rl->base_lat = mean;
        if (mean > 3 * rl->base_lat && mean > LATENCY_FLOOR_S)
            q *= 0.8;
        else if ((double)rl->issued >= 0.5 * rl->qps * span)
            q += q * 0.1 > 5 ? q * 0.1 : 5;
    }
    rl->qps = q < rl->min ? rl->min : q > rl->max ? rl->max : q;
    rl->win_start = now;
    rl->lat_sum = 0;
    rl->win_n = rl->win_ok = rl->win_429 = rl->issued = 0;
}

void km_ratelimit_feedback_at(km_ratelimit *rl, long code, double seconds, double retry_after,
                              double now)
{
    if (!rl || !rl->adaptive)
        return;
    pthread_mutex_lock(&rl->lock);
    if (rl->win_start < 0)
        rl->win_start = now;
    rl->win_n++;
    if (code == 429) {
        rl->win_429++;
        if (retry_after > 0 && now + retry_after > rl->pause_until)
            rl->pause_until = now + retry_after;
    } else if (code >= 200 && code < 300) {
        rl->win_ok++;
        rl->lat_sum += seconds > 0 ? seconds : 0;
    }
    if (code == 429 || now - rl->win_start >= WINDOW_S)
        adapt(rl, now);
    pthread_mutex_unlock(&rl->lock);
}

double km_ratelimit_rate(km_ratelimit *rl)
{
    if (!rl)
        return 0;
    pthread_mutex_lock(&rl->lock);
    double q = rl->qps;
    pthread_mutex_unlock(&rl->lock);
    return q;
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
