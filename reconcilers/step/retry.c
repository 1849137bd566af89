/* retry.c — the steps' retry policy (see retry.h). */
#include "reconcilers/step/retry.h"

#include "operator/base/clock.h"
#include "operator/base/log.h"

int km_retry_transient(km_status st, const km_err *e)
{
    if (st == KM_ETRANSPORT || st == KM_ETIMEOUT)
        return 1;
    if (st != KM_EAPI || !e)
        return 0;
    return e->http_code == 408 || e->http_code == 429 || e->http_code >= 500;
}

void km_retry_init(km_retry *r, double budget_s, const atomic_int *cancel)
{
    r->deadline = km_clock_mono() + (budget_s > 0 ? budget_s : KM_RETRY_BUDGET_S);
    km_backoff_init(&r->bo, KM_RETRY_FIRST_S, KM_RETRY_MAX_S, 2.0, 0.2);
    r->cancel = cancel;
    r->tries = 0;
}

/* Sleeps delay (capped at the deadline).  0 when there is no time left or cancel was set. */
static int pause(km_retry *r, double delay, const char *what, const km_err *e)
{
    double left = r->deadline - km_clock_mono();
    if (left <= 0 || (r->cancel && atomic_load(r->cancel)))
        return 0;
    if (delay > left)
        delay = left;
    r->tries++;
    km_log_info("retrying", "what", what ? what : "", "attempt", KM_LOG_INT(r->tries + 1), "delay",
                KM_LOG_DBL(delay), "error", e ? e->message : "");
    return km_clock_sleep(delay, r->cancel) == KM_OK;
}

int km_retry_again(km_retry *r, km_status st, const km_err *e, const char *what)
{
    if (!km_retry_transient(st, e))
        return 0;
    double delay = km_backoff_next(&r->bo, km_backoff_rand());
    if (e && e->retry_after > 0 && (double)e->retry_after < KM_RETRY_MAX_S * 6)
        delay = (double)e->retry_after;
    return pause(r, delay, what, e);
}

int km_retry_wait(km_retry *r, const char *what)
{
    return pause(r, km_backoff_next(&r->bo, km_backoff_rand()), what, NULL);
}
